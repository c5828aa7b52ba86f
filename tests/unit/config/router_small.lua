-- test_router: a small router queue and pending-query table.
return {
    limits = { router_queue = 16, pending_queries = 16 },
}
