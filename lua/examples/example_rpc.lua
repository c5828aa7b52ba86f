-- example_rpc.lua - a complete RPC command written in Lua, to copy from.
--
-- EXAMPLE_UPPER answers its string argument in upper case:
--   client: [seq, "MSG", HK, "[\"tx1\", [\"EXAMPLE_UPPER\", \"abc\"]]"]
--   reply:  [0, HK, "MSG", me, "[\"tx1\", null, \"ABC\", null]"]
-- A non-string argument is answered with the error EINVAL.
--
-- A handler gets (args, ctx).  It may return the answer, raise an error
-- whose message is a code ("EINVAL"), or return nothing and answer later
-- with ctx:reply(value) / ctx:error(code) (from a timer or a query callback).
-- ctx.key is the caller's public key for authenticated commands.

cps.register_rpc("EXAMPLE_UPPER", function(args, ctx)
    if type(args) ~= "string" then
        error("EINVAL", 0)          -- level 0: the message is just the code
    end
    return string.upper(args)
end)

cps.log("info", "EXAMPLE_UPPER registered")
