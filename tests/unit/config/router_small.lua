-- test_router: a small router queue.
return {
    limits = { router_queue = 16 },
}
