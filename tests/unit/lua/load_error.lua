-- test_lua: registers, then fails while loading: the registration is undone.
cps.register_rpc("LUA_LOAD_ERROR", function(args, ctx) return 1 end)
error("failing on purpose at load")
