return {
    listen = { port = "abc" },
    limits = { max_frame = -5 },
    bogus_key = true,
    log = { level = "loud" },
}
