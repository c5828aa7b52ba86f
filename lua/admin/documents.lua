-- admin/documents.lua - documents by id for the admin panel's database tab
-- (docs/protocol/admin.md §3.4): status, size, metadata, archive, restore
-- and removal of channels (32 characters), blobs (48) and login blocks
-- (44, status only); for the operator `pad status|archive|restore ID`.
--
-- A channel, blob or block lives on the storage node that owns its id
-- (cps.owner): the work runs there, as ADMIN_DOC_* commands this script
-- registers on every storage node; archiving a channel goes through the
-- storage role's CHANNEL_ADMIN_ARCHIVE, which also tells its members.

local A = cps.array
local TIMEOUT_MS = 10000

-- ---- ids (validated before anything becomes a path) ----

local function kind(id)
    if type(id) ~= "string" then return nil end
    if #id == 32 and id:match("^[0-9a-fA-F]+$") then return "channel" end
    if #id == 48 and id:match("^[0-9a-f]+$") then return "blob" end
    if #id == 44 and id:match("^[A-Za-z0-9+/=-]+$") then return "block" end
    return nil
end

local function safe(k) return (k:gsub("/", "-")) end

-- ---- the storage half: runs on the id's owner ----

-- Whether an archived copy exists, through the backend's raw view
-- (api/cps_storage.h): cb(true|false), or cb(nil) when it cannot tell
-- (then `archived` is omitted, as a failed check is in CryptPad).
local function in_archive(spaces, name, cb)
    local i = 0
    local function step()
        i = i + 1
        if not spaces[i] then return cb(false) end
        local ok = cps.store_size(spaces[i], name, function(err)
            if not err then return cb(true) end
            if err ~= "ENOENT" then return cb(nil) end
            step()
        end)
        if not ok then cb(nil) end
    end
    step()
end

-- Several backend calls, then one answer: step(done) chains.
local function status_of(id, k, cb)
    local st = {}
    local function archived(spaces, name, after)
        in_archive(spaces, name, function(a)
            st.archived = a
            after()
        end)
    end
    local function with_placeholder(store, key, after)
        local ok = cps.obj_read(store, key, function(err, text)
            if not err and text then st.placeholder = text end
            after()
        end)
        if not ok then after() end
    end
    if k == "channel" then
        cps.channel_size(id, function(err, size)
            local log_live = not err
            cps.meta_read(id, function(merr)
                st.live = log_live or not merr
                cps.placeholder_read(id, function(perr, text)
                    if not perr and text then st.placeholder = text end
                    archived({ "archive/channel", "archive/meta" }, id, function() cb(st) end)
                end)
            end)
        end)
    elseif k == "blob" then
        cps.obj_size("blob", id, function(err)
            st.live = not err
            with_placeholder("blob", id .. ".placeholder", function()
                archived({ "archive/obj/blob" }, id, function() cb(st) end)
            end)
        end)
    else
        local sk = safe(id)
        cps.obj_size("block", sk, function(err)
            st.live = not err
            with_placeholder("block", sk .. ".placeholder", function()
                archived({ "archive/obj/block" }, sk, function()
                    cps.obj_read("mfa", sk .. ".json", function(merr, text)
                        local mfa = not merr and text and cps.json_decode(text)
                        if type(mfa) == "table" then
                            st.totp = { enabled = true }
                            if type(mfa.contact) == "string" then st.totp.recovery = mfa.contact:match("^([^:]*)") end
                        else
                            st.totp = "DISABLED"
                        end
                        cb(st)
                    end)
                end)
            end)
        end)
    end
end

local function size_of(id, k, cb)
    if k == "blob" then
        return cps.obj_size("blob", id, function(err, n) cb(err and 0 or n) end)
    end
    cps.channel_size(id, function(err, n)
        local total = err and 0 or n
        cps.meta_read(id, function(merr, text)
            cb(total + ((not merr and text) and #text or 0))
        end)
    end)
end

-- The time of the last message of a channel log: the last line's last
-- element (history lines end with their time).
local function last_time(id, cb)
    cps.channel_size(id, function(err, size)
        if err then return cb("ENOENT") end
        if size == 0 then return cb("ENOENT") end
        local from = math.max(0, size - 65536)
        cps.channel_read(id, from, 65536, function(rerr, text)
            if rerr then return cb(rerr) end
            local last
            for line in text:gmatch("[^\n]+") do last = line end
            local v = last and cps.json_decode(last)
            if type(v) == "table" and math.type(v[#v]) then return cb(nil, v[#v]) end
            cb("ENOENT")
        end)
    end)
end

local function metadata_lines(id, cb)
    local read = kind(id) == "blob" and function(f) cps.obj_read("blob", id .. ".metadata.ndjson", f) end
        or function(f) cps.meta_read(id, f) end
    read(function(err, text)
        local out = A()
        if not err and text then
            for line in text:gmatch("[^\n]+") do
                local v = cps.json_decode(line)
                if v ~= nil then out[#out + 1] = v end
            end
        end
        cb(out)
    end)
end

cps.register_role_command("storage", "ADMIN_DOC", function(args, call)
    local id, op = args.id, args.op
    local k = kind(id)
    if not k then error("EINVAL", 0) end
    if op == "status" then
        status_of(id, k, function(st) call:reply(st) end)
    elseif op == "size" then
        size_of(id, k, function(n) call:reply({ size = n }) end)
    elseif op == "last_time" then
        last_time(id, function(err, t) if err then call:error(err) else call:reply({ time = t }) end end)
    elseif op == "meta_lines" then
        metadata_lines(id, function(lines) call:reply({ lines = lines }) end)
    elseif op == "restore" and k == "channel" then
        cps.channel_restore(id, function(err)
            if err ~= "EEXIST" then
                if err then return call:error(err) end
                return call:reply({})
            end
            -- CryptPad names which live file is in the way
            cps.channel_size(id, function(serr)
                call:error(serr and "UNARCHIVE_METADATA_CONFLICT" or "UNARCHIVE_CHANNEL_CONFLICT")
            end)
        end)
    elseif op == "remove" and k == "channel" then
        cps.channel_size(id, function(err)
            cps.meta_read(id, function(merr)
                if err and merr then return call:error("E_REMOVE_CHANNEL") end
                cps.channel_delete(id, function(derr)
                    if derr then call:error("E_REMOVE_CHANNEL") else call:reply({}) end
                end)
            end)
        end)
    elseif op == "remove" and k == "blob" then
        -- for good, as CryptPad: the blob goes, its metadata log stays
        cps.obj_delete("blob", id, function(err)
            if err then call:error(err) else call:reply({}) end
        end)
    elseif op == "archive" and k == "blob" then
        local text = args.placeholder
        cps.obj_archive("blob", id, function(err)
            local function placeholder()
                -- as CryptPad: the placeholder is written even when the blob was missing
                cps.obj_write("blob", id .. ".placeholder", text, function()
                    if err then call:error(err) else call:reply({}) end
                end)
            end
            if err then return placeholder() end
            -- its metadata goes with it, as CryptPad's archive does (a blob
            -- without one is fine: ENOENT is no failure here)
            cps.obj_archive("blob", id .. ".metadata.ndjson", function() placeholder() end)
        end)
    elseif op == "restore" and k == "blob" then
        -- the blob first: nothing archived (ENOENT) or a live one in the
        -- way (EEXIST) leaves everything as it is
        cps.obj_restore("blob", id, function(err)
            if err then return call:error(err) end
            cps.obj_restore("blob", id .. ".metadata.ndjson", function()
                cps.obj_delete("blob", id .. ".placeholder", function() call:reply({}) end)
            end)
        end)
    else
        error("EINVAL", 0)
    end
end)

-- ---- the admin side ----

local function ask(id, args, cb)
    local node = cps.owner("storage", kind(id) == "block" and safe(id) or id)
    if not node then return cb("EUNAVAILABLE") end
    args.id = id
    local ok, code = cps.query(node, "ADMIN_DOC", args, function(err, data) cb(err, data) end, TIMEOUT_MS)
    if not ok then cb(code) end
end

local function doc_id(p)
    if type(p) == "table" then return p.id, p.reason end
    return p, nil
end

cps.admin_command("GET_DOCUMENT_STATUS", "live, archived, placeholder (and TOTP for a block) of an id",
    function(p, ctx)
        if not kind(p) then error("EINVAL", 0) end
        ask(p, { op = "status" }, function(err, st)
            if err then return ctx:error(err) end
            ctx:reply(st)
        end)
    end)

local function chan_or_blob(id)
    local k = kind(id)
    return k == "channel" or k == "blob"
end

cps.admin_command("GET_DOCUMENT_SIZE", "stored bytes of a channel (log and metadata) or blob", function(p, ctx)
    if not chan_or_blob(p) then error("INVALID_CHAN", 0) end
    ask(p, { op = "size" }, function(err, r)
        if err then return ctx:error(err) end
        ctx:reply(r.size)
    end)
end)

cps.admin_command("GET_LAST_CHANNEL_TIME", "time of a channel's last message", function(p, ctx)
    if kind(p) ~= "channel" then error("EINVAL", 0) end
    ask(p, { op = "last_time" }, function(err, r)
        if err then return ctx:error(err) end
        ctx:reply(r.time)
    end)
end)

cps.admin_command("GET_METADATA_HISTORY", "every metadata line of a channel or blob", function(p, ctx)
    if not chan_or_blob(p) then error("INVALID_CHAN", 0) end
    ask(p, { op = "meta_lines" }, function(err, r)
        if err then return ctx:error(err) end
        ctx:reply(r.lines)
    end)
end)

-- A blob's metadata from its metadata log: the first object line, then its
-- owner changes (the only commands a blob's metadata log receives,
-- docs/protocol/history.md §10).  nil without a log.
local function blob_metadata(lines)
    local md
    for _, v in ipairs(lines) do
        if type(v) == "table" and v[1] == nil and md == nil then
            md = v
        elseif md and type(v) == "table" and type(v[2]) == "table" and type(md.owners) == "table" then
            local owners = A()
            for _, k in ipairs(md.owners) do
                local dropped = false
                if v[1] == "RM_OWNERS" then for _, r in ipairs(v[2]) do dropped = dropped or r == k end end
                if not dropped then owners[#owners + 1] = k end
            end
            if v[1] == "ADD_OWNERS" then
                for _, k in ipairs(v[2]) do
                    local seen = false
                    for _, o in ipairs(owners) do seen = seen or o == k end
                    if not seen and type(k) == "string" then owners[#owners + 1] = k end
                end
            end
            md.owners = owners
        end
    end
    return md
end

cps.admin_command("GET_STORED_METADATA", "the current metadata of a channel or blob", function(p, ctx)
    if kind(p) == "blob" then
        return ask(p, { op = "meta_lines" }, function(err, r)
            if err then return ctx:error(err) end
            local md = blob_metadata(r.lines)
            if md then return ctx:reply(md) end
            -- an archived blob answers its placeholder, as a channel does
            ask(p, { op = "status" }, function(serr, st)
                if not serr and st.placeholder then return ctx:error(st.placeholder) end
                ctx:reply(cps.null)
            end)
        end)
    end
    if kind(p) ~= "channel" then error("INVALID_CHAN", 0) end
    local node = cps.owner("storage", p)
    if not node then error("EUNAVAILABLE", 0) end
    local ok, code = cps.query(node, "CHANNEL_ADMIN_METADATA", { channel = p }, function(err, data)
        if err == "ENOENT" then
            -- an archived channel answers its placeholder, as CryptPad does
            return ask(p, { op = "status" }, function(serr, st)
                if not serr and st.placeholder then return ctx:error(st.placeholder) end
                ctx:reply(cps.null)
            end)
        end
        if err then return ctx:error(err) end
        ctx:reply(data.metadata)
    end, TIMEOUT_MS)
    if not ok then ctx:error(code) end
end)

cps.admin_command("GET_CACHED_CHANNEL_METADATA", "the metadata of a channel held in memory", function(p, ctx)
    if kind(p) ~= "channel" or not cps.owner("storage", p) then error("EINVAL", 0) end
    local ok, code = cps.query(cps.owner("storage", p), "CHANNEL_ADMIN_INFO", { channel = p }, function(err, data)
        if err then return ctx:error(err) end
        ctx:reply(data.metadata)
    end, TIMEOUT_MS)
    if not ok then ctx:error(code) end
end)

-- The storage role drops its caches on its own (idle channels are closed);
-- there is no separate index object to show.
cps.admin_command("CLEAR_CACHED_CHANNEL_METADATA", "no-op: channels leave memory when idle", function(p, ctx)
    if kind(p) ~= "channel" then error("EINVAL", 0) end
    return cps.null
end)
cps.admin_command("CLEAR_CACHED_CHANNEL_INDEX", "no-op: channels leave memory when idle", function(p, ctx)
    if kind(p) ~= "channel" then error("EINVAL", 0) end
    return cps.null
end)
cps.admin_command("GET_CACHED_CHANNEL_INDEX", "not kept apart from the channel: ENOENT", function(p, ctx)
    if kind(p) ~= "channel" then error("EINVAL", 0) end
    error("ENOENT", 0)
end)

-- Archive one document; cb(err).
local function archive(id, reason, cb)
    local k = kind(id)
    local text = "MODERATION_PAD:" .. tostring(reason)
    if k == "channel" then
        local node = cps.owner("storage", id)
        if not node then return cb("EUNAVAILABLE") end
        local ok, code = cps.query(node, "CHANNEL_ADMIN_ARCHIVE", { channel = id, reason = text },
            function(err) cb(err) end, TIMEOUT_MS)
        if not ok then cb(code) end
    elseif k == "blob" then
        ask(id, { op = "archive", placeholder = text }, function(err) cb(err) end)
    else
        cb("INVALID_ID_LENGTH")
    end
end

local function valid_reason(r) return r == nil or (type(r) == "string" and #r <= 1000) end

cps.admin_command("ARCHIVE_DOCUMENT", "archive a channel or blob {id, reason}; members are told", function(p, ctx)
    local id, reason = doc_id(p)
    if type(id) ~= "string" then error("EINVAL", 0) end
    if not valid_reason(reason) then error("EINVAL", 0) end
    if not chan_or_blob(id) then error("INVALID_ID_LENGTH", 0) end
    archive(id, reason, function(err)
        if err then return ctx:error(err) end
        ctx:reply(cps.null)
    end)
end)

cps.admin_command("ARCHIVE_DOCUMENTS", "archive a list {list, reason}: {state, failed}", function(p, ctx)
    if type(p) ~= "table" or type(p.list) ~= "table" or not valid_reason(p.reason) then error("EINVAL", 0) end
    if #p.list > 10000 then error("E_TOO_LARGE", 0) end
    local failed, waiting = A(), #p.list
    if waiting == 0 then return { state = true, failed = failed } end
    for _, id in ipairs(p.list) do
        local function done(err)
            -- as CryptPad: a channel that is not there is no failure, a blob is
            if err and (err ~= "ENOENT" or kind(id) ~= "channel") then failed[#failed + 1] = id end
            waiting = waiting - 1
            if waiting == 0 then ctx:reply({ state = true, failed = failed }) end
        end
        if type(id) == "string" and chan_or_blob(id) then archive(id, p.reason, done) else done("EINVAL") end
    end
end)

cps.admin_command("RESTORE_ARCHIVED_DOCUMENT", "bring an archived channel or blob back {id}", function(p, ctx)
    local id = doc_id(p)
    if not chan_or_blob(id) then error("EINVAL", 0) end
    ask(id, { op = "restore" }, function(err)
        if err then return ctx:error(err) end
        ctx:reply(cps.null)
    end)
end)

-- A deleted channel's members are told, as an archived one's are
-- (docs/protocol/history.md §9.2), with MODERATION_DESTROY:<reason>.
cps.admin_command("REMOVE_DOCUMENT", "delete a channel or blob for good {id, reason}", function(p, ctx)
    local id, reason = doc_id(p)
    if type(id) ~= "string" or #id < 32 or not valid_reason(reason) then error("EINVAL", 0) end
    if not chan_or_blob(id) then
        error(#id == 48 and "INVALID_ID" or (#id == 32 and "EINVAL" or "INVALID_ID_LENGTH"), 0)
    end
    ask(id, { op = "remove" }, function(err)
        if err then return ctx:error(err) end
        if kind(id) ~= "channel" then return ctx:reply(cps.null) end
        local notice = cps.json_encode({ error = "EDELETED", message = "MODERATION_DESTROY:" .. tostring(reason),
                                         channel = id })
        local ok = cps.query(cps.owner("storage", id), "CHANNEL_ADMIN_NOTIFY", { channel = id, message = notice },
            function() ctx:reply(cps.null) end, TIMEOUT_MS)
        if not ok then ctx:reply(cps.null) end
    end)
end)

-- Send the members of a channel a history keeper message (how a script
-- reaches the sessions of a channel): {channel, message} -> members told.
cps.admin_command("NOTIFY_CHANNEL", "send the members of a channel a message {channel, message}", function(p, ctx)
    if type(p) ~= "table" or kind(p.channel) ~= "channel" then error("EINVAL", 0) end
    if type(p.message) ~= "string" or #p.message == 0 or #p.message > 65536 then error("EINVAL", 0) end
    local ok, code = cps.query(cps.owner("storage", p.channel), "CHANNEL_ADMIN_NOTIFY",
        { channel = p.channel, message = p.message }, function(err, r)
            if err then return ctx:error(err) end
            ctx:reply(r.members)
        end, TIMEOUT_MS)
    if not ok then ctx:error(code) end
end)

-- ---- operator command ----

cps.admin_command("pad", "pad status ID | pad archive ID [REASON] | pad restore ID", function(args, ctx)
    local w = {}
    if type(args) == "table" then
        for i, x in ipairs(args) do
            if type(x) ~= "string" then error("EINVAL: arguments are words", 0) end
            w[i] = x
        end
    end
    local op, id = w[1], w[2]
    if not chan_or_blob(id) then error("EINVAL: usage: pad status|archive|restore ID (32 or 48 characters)", 0) end
    if op == "status" then
        ask(id, { op = "status" }, function(err, st)
            if err then return ctx:error(err) end
            st.id = id
            ctx:reply(st)
        end)
    elseif op == "archive" then
        if w[3] and #w[3] > 1000 then error("EINVAL: reason too long", 0) end
        archive(id, w[3] or "cli", function(err)
            if err then return ctx:error(err) end
            ctx:reply({ id = id, archived = true })
        end)
    elseif op == "restore" then
        ask(id, { op = "restore" }, function(err)
            if err then return ctx:error(err) end
            ctx:reply({ id = id, restored = true })
        end)
    else
        error("EINVAL: usage: pad status|archive|restore ID", 0)
    end
end)
