-- test_lua: registers one name twice; the second raises at load.
cps.register_rpc("LUA_DUP", function(args, ctx) return 1 end)
cps.register_rpc("LUA_DUP", function(args, ctx) return 2 end)
