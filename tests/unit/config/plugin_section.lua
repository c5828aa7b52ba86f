return {
    plugins = { "myplug", "?optplug" },
    myplug = { a = 1, list = { "x", "y" } },
    optplug = { b = 2 },
}
