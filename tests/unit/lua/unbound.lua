-- test_lua: register_command in a script bound to no node is an error.
local ok, err = pcall(cps.register_command, "LUA_UNBOUND", function() return 1 end)
cps.register_rpc("LUA_UNBOUND_RESULT", function(args, ctx) return { ok = ok, err = tostring(err) } end)
