-- admin_api.lua - the cps functions of the admin commands (test_lua.c).
cps.admin_command("T_ADMIN", "sets a live setting and reports helpers", function(args, ctx)
    cps.instance_set("t_flag", args)
    return {
        live = cps.config("instance.t_flag"),
        key = ctx.key or "operator",
        dec = cps.json_decode('[1,{"a":2}]'),
        enc = cps.json_encode(cps.array({ 1, "x" })),
        bad = select(2, cps.json_decode("{")) ~= nil,
        b64 = cps.base64_decode("aGk="),
        b64bad = cps.base64_decode("a@") == nil,
        eq = cps.equal("same", "same"), neq = cps.equal("same", "sane"),
        hex = #cps.random_hex(32),
        b64enc = cps.base64_encode("hi!?") .. "|" .. cps.base64_encode(""),
        bytes = #cps.base64_encode(cps.random_bytes(32)),
    }
end)

cps.admin_command("T_LOOP", "never ends", function() while true do end end)

-- Runs another admin command from inside a handler; the answer comes later.
cps.admin_command("T_NEST", "calls a command as the operator", function(args, ctx)
    local ok, code = cps.admin_call(args, cps.array({ "w" }), function(err, value)
        ctx:reply({ err = err, value = value })
    end)
    if not ok then return { refused = code } end
    -- the budget left after the nested call is the same budget: a loop here
    -- after a looping nested call is still bounded (no hook lost)
end)
