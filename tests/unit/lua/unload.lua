-- test_lua: an unload hook, and a repeating timer that must stop after it.
local ticks = 0
cps.timer(5, function()
    ticks = ticks + 1
    cps.log("info", "LUA_TICK " .. ticks)
end, 5)
cps.register_rpc("LUA_TICKS", function(args, ctx) return ticks end)
cps.on_unload(function()
    -- still loaded while the hook runs: its own command is there
    cps.log("info", "LUA_UNLOAD_HOOK ran after " .. (ticks > 0 and "some" or "no") .. " ticks")
end)
