-- example_note.lua - a signed RPC command in Lua that reaches storage, to copy.
--
-- EXAMPLE_LUA_NOTE_SET (signed, a string argument) keeps a note for the
-- caller's public key; EXAMPLE_LUA_NOTE_GET (signed) answers it, or null.
--   ctx.key          the caller's public key (signature and cookie checked)
--   return v         answer v;  error("EINVAL", 0): answer that error code
--   ctx:reply(v)     answer later, from a callback (return nothing first)
-- Storage is reached the way that also works in a cluster: the RPC half asks
-- the storage node owning the key (cps.owner) through a command registered
-- on the storage role (cps.register_role_command), which uses the backend's
-- small records (cps.record_get / cps.record_put).

local NS = "example-lua-notes"

local function safe(key) return (key:gsub("/", "-")) end

-- storage half (returns false in a process without a storage node)
cps.register_role_command("storage", "EXAMPLE_LUA_NOTE", function(args, call)
    if type(args.key) ~= "string" or #args.key ~= 44 then error("EINVAL", 0) end
    if args.note ~= nil then
        cps.record_put(NS, safe(args.key), args.note, function(err)
            if err then call:error(err) else call:reply({ ok = true }) end
        end)
    else
        cps.record_get(NS, safe(args.key), function(err, data)
            if err == "ENOENT" then call:reply({ note = cps.null })
            elseif err then call:error(err)
            else call:reply({ note = data }) end
        end)
    end
    -- nothing returned: the answer comes from the callback
end)

local function ask(ctx, args)
    local node = cps.owner("storage", ctx.key)
    cps.query(node, "EXAMPLE_LUA_NOTE", args, function(err, data)
        if err then ctx:error(err)
        elseif data.ok then ctx:reply("OK")
        else ctx:reply(data.note) end
    end)
end

cps.register_rpc("EXAMPLE_LUA_NOTE_SET", function(args, ctx)
    if type(args) ~= "string" or #args > 1000 then error("EINVAL", 0) end
    ask(ctx, { key = ctx.key, note = args })
end, "auth")

cps.register_rpc("EXAMPLE_LUA_NOTE_GET", function(args, ctx)
    ask(ctx, { key = ctx.key })
end, "auth")
