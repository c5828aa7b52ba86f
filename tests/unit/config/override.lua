-- Changes a few keys; everything else comes from the embedded default.
return {
    listen = { port = 4000 },
    limits = { router_queue = 50 },
    nodes = { "core:0" },
    front = { ping_after_ms = 1000 },
}
