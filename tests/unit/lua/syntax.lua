-- test_lua: does not compile.
cps.register_rpc("LUA_SYNTAX", function(args, ctx) return 1 end
