-- test_lua: loaded as "storage:bind_other.lua" in a process that runs no
-- storage node: it must not run at all.
cps.register_rpc("LUA_OTHER_LOADED", function(args, ctx) return true end)
