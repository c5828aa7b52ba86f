return {
    plugins = { "myplug" },
    myplug = 5,
}
