-- test_lua: the commands of the normal cases.

-- Answers its argument unchanged (JSON -> Lua -> JSON).
cps.register_rpc("LUA_ECHO", function(args, ctx) return args end)

-- Every JSON shape built on the Lua side.
cps.register_rpc("LUA_SHAPES", function(args, ctx)
    return {
        n = cps.null,
        e = cps.array(),
        o = {},
        a = { 1, 2, 3 },
        l = cps.array({ "x", cps.null, 3 }),
        nested = { x = { y = { "z", true, 1.5 } } },
        s = "str",
        f = false,
    }
end)

-- Errors: a code, and a generic Lua error.
cps.register_rpc("LUA_EINVAL", function(args, ctx) error("EINVAL", 0) end)
cps.register_rpc("LUA_BOOM", function(args, ctx) error("boom") end)
cps.register_rpc("LUA_CTX_ERROR", function(args, ctx) ctx:error("ENOPE") end)

-- Never returns: stopped by the instruction budget.
cps.register_rpc("LUA_LOOP", function(args, ctx)
    local i = 0
    while true do i = i + 1 end
end)

-- Allocates beyond lua.max_memory.
cps.register_rpc("LUA_HOG", function(args, ctx)
    return string.rep("x", 64 * 1024 * 1024)
end)

-- Answers later, from a timer.
cps.register_rpc("LUA_ASYNC", function(args, ctx)
    cps.timer(10, function() ctx:reply({ later = args }) end)
end)

-- Configuration and the caller's key (auth command).
cps.register_rpc("LUA_PORT", function(args, ctx) return cps.config("listen.port") end)
cps.register_rpc("LUA_MISSING_CONFIG", function(args, ctx)
    return { v = cps.config("no.such.key") == nil }
end)
cps.register_rpc("LUA_KEY", function(args, ctx) return { key = ctx.key, name = ctx.name } end, "auth")
