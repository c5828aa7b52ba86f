-- test_lua: loaded as "core:bind.lua" in a process that runs core:1 (and
-- knows core:0 as a remote node): its commands must land on core:1.
cps.register_command("LUA_BOUND", function(args, call)
    return { node = cps.node(), from = call.from, echo = args }
end)
cps.register_rpc("LUA_BIND_NODE", function(args, ctx)
    return { node = cps.node(), core = cps.node("core"), storage = cps.node("storage") or "none" }
end)
