-- test_lua: hooks that fail or never end are logged, not fatal; the last
-- cps.on_unload wins.
cps.on_unload(function() cps.log("info", "LUA_REPLACED_HOOK ran") end)
cps.on_unload(function() while true do end end)
