-- test_lua: the load itself never ends.
cps.register_rpc("LUA_LOOP_AT_LOAD", function(args, ctx) return 1 end)
while true do end
