-- test_lua: a name another script owns (LUA_ECHO of ok.lua); the error is
-- a Lua error that the script may catch.
local ok, err = pcall(cps.register_rpc, "LUA_ECHO", function(args, ctx) return "mine" end)
cps.register_rpc("LUA_DUP_RESULT", function(args, ctx)
    return { ok = ok, err = tostring(err) }
end)
