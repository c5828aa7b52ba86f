-- test_lua: a hook that raises.
cps.on_unload(function() error("EBADHOOK", 0) end)
