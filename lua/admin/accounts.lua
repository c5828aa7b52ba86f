-- admin/accounts.lua - accounts by signing key for the admin panel's
-- account report (docs/protocol/admin.md §3.2, §3.3): pin activity, pin
-- list, storage statistics, pin log status, whether the user is online,
-- the total size of what they pin; login blocks and TOTP (archive a block,
-- disable TOTP).
--
-- A pin log and a login block live on the storage node that owns the
-- key's safe form; the reading runs there (ADMIN_ACCOUNT on every storage
-- node).  Online state is each core's: every core is asked.

local A = cps.array
local TIMEOUT_MS = 10000
-- Account archival reports (what RESTORE_ACCOUNT undoes), records on the
-- storage node owning the key (CryptPad writes archive/accounts/<safeKey>)
local REPORTS = "archived-accounts"

local function valid_key(k)
    return type(k) == "string" and #k == 44 and k:match("^[A-Za-z0-9+/=-]+=$") ~= nil
end
local function safe(k) return (k:gsub("/", "-")) end
local function unsafe(k) return (k:gsub("%-", "/")) end

-- Replay a pin log (docs/protocol/rpc.md §7.1): pinned ids in first-pinned
-- order, without the "#drive" suffix; "#block" entries are the login block.
local function replay(text)
    local order, pinned, first, latest, block = {}, {}, nil, nil, nil
    local function pin(id)
        local base, tag = id:match("^([^#]+)#?(.*)$")
        if not base then return end
        if tag == "block" then block = base; return end
        if not pinned[base] then pinned[base] = true; order[#order + 1] = base end
    end
    local function unpin(id)
        local base = id:match("^([^#]+)")
        if base then pinned[base] = nil end
    end
    for line in text:gmatch("[^\n]+") do
        local v = cps.json_decode(line)
        if type(v) == "table" and type(v[1]) == "string" then
            local t = v[#v]
            if math.type(t) and t ~= 0 then first = first or t; latest = t end
            local ids = type(v[2]) == "table" and v[2] or {}
            if v[1] == "RESET" then
                pinned, order = {}, {}
                for _, id in ipairs(ids) do if type(id) == "string" then pin(id) end end
            elseif v[1] == "PIN" then
                for _, id in ipairs(ids) do if type(id) == "string" then pin(id) end end
            elseif v[1] == "UNPIN" then
                for _, id in ipairs(ids) do if type(id) == "string" then unpin(id) end end
            end
        end
    end
    local list = A()
    for _, id in ipairs(order) do if pinned[id] then list[#list + 1] = id end end
    return { list = list, first = first, latest = latest, block = block }
end

cps.register_role_command("storage", "ADMIN_ACCOUNT", function(args, call)
    local key = args.key
    if not valid_key(key) then error("EINVAL", 0) end
    local sk = safe(key)
    if args.op == "pins" then
        cps.pin_read(sk, function(err, text)
            if err == "ENOENT" then return call:reply({ live = false }) end
            if err then return call:error(err) end
            local r = replay(text or "")
            r.live = true
            call:reply(r)
        end)
    elseif args.op == "disable_mfa" then
        cps.obj_delete("mfa", sk .. ".json", function(err)
            if err then call:error("MFA_ERROR") else call:reply({}) end
        end)
    elseif args.op == "archive_pins" then
        cps.pin_archive(sk, function(err)
            if err then call:error(err) else call:reply({}) end
        end)
    elseif args.op == "report_put" then
        cps.record_put(REPORTS, sk, cps.json_encode(args.report), function(err)
            if err then call:error(err) else call:reply({}) end
        end)
    elseif args.op == "report_get" then
        cps.record_get(REPORTS, sk, function(err, data)
            if err then return call:error(err) end
            local rep = cps.json_decode(data or "")
            if type(rep) ~= "table" then return call:error("EINVAL") end
            call:reply({ report = rep })
        end)
    elseif args.op == "report_del" then
        cps.record_del(REPORTS, sk, function(err)
            if err and err ~= "ENOENT" then call:error(err) else call:reply({}) end
        end)
    elseif args.op == "drop_mfa" then
        cps.obj_delete("mfa", sk .. ".json", function() call:reply({}) end)
    elseif args.op == "archive_block" then
        local text = (args.code or "MODERATION_BLOCK") .. ":" .. tostring(args.reason)
        cps.obj_archive("block", sk, function(err)
            if err then return call:error(err) end
            cps.obj_write("block", sk .. ".placeholder", text, function() call:reply({}) end)
        end)
    elseif args.op == "restore_block" then
        -- never over a live block (EEXIST); the placeholder goes once it is back
        cps.obj_restore("block", sk, function(err)
            if err then return call:error(err) end
            cps.obj_delete("block", sk .. ".placeholder", function() call:reply({}) end)
        end)
    elseif args.op == "pins_archived" then
        local ok, code = cps.store_size("archive/pin", sk, function(err)
            if err and err ~= "ENOENT" then return call:error(err) end
            call:reply({ archived = not err })
        end)
        if not ok then call:error(code or "EIO") end
    elseif args.op == "restore_pins" then
        cps.pin_restore(sk, function(err)
            if err then call:error(err) else call:reply({}) end
        end)
    else
        error("EINVAL", 0)
    end
end)

local function ask(key, args, cb)
    local node = cps.owner("storage", safe(key))
    if not node then return cb("EUNAVAILABLE") end
    args.key = key
    local ok, code = cps.query(node, "ADMIN_ACCOUNT", args, cb, TIMEOUT_MS)
    if not ok then cb(code) end
end

local function pins(key, ctx, then_)
    if not valid_key(key) then error("EINVAL", 0) end
    ask(key, { op = "pins" }, function(err, r)
        if err then return ctx:error(err) end
        then_(r)
    end)
end

cps.admin_command("GET_PIN_ACTIVITY", "first and latest pin times of a key", function(p, ctx)
    pins(p, ctx, function(r)
        if not r.live then return ctx:error("ENOENT") end
        ctx:reply({ first = r.first, latest = r.latest })
    end)
end)

cps.admin_command("GET_PIN_LIST", "the ids a key pins, in first-pinned order", function(p, ctx)
    pins(p, ctx, function(r) ctx:reply(r.live and r.list or A()) end)
end)

cps.admin_command("GET_USER_STORAGE_STATS", "how many channels and files a key pins", function(p, ctx)
    pins(p, ctx, function(r)
        local c, f = 0, 0
        for _, id in ipairs(r.list or {}) do
            if #id == 32 then c = c + 1 elseif #id == 48 then f = f + 1 end
        end
        ctx:reply({ channels = c, files = f })
    end)
end)

-- `archived` through the backend's raw view (the "archive/pin" space); a
-- member whose check failed is omitted (docs/protocol/admin.md §3.2).
cps.admin_command("GET_PIN_LOG_STATUS", "whether a key has a pin log, live and archived", function(p, ctx)
    pins(p, ctx, function(r)
        local st = { live = r.live == true }
        ask(p, { op = "pins_archived" }, function(err, a)
            if not err then st.archived = a.archived end
            ctx:reply(st)
        end)
    end)
end)

-- Sizes asked of the owners PARALLEL at a time: a pin list of thousands of
-- ids must not fill the router's queue of pending queries.
local PARALLEL = 32

cps.admin_command("GET_USER_TOTAL_SIZE", "bytes of everything a key pins", function(p, ctx)
    pins(p, ctx, function(r)
        local list = r.list or {}
        if #list > 100000 then return ctx:error("INVALID_PIN_LIST") end
        local total, next_i, running, finished = 0, 1, 0, false
        local pump
        local function done(err, data)
            if not err and type(data) == "table" and math.type(data.size) then total = total + data.size end
            running = running - 1
            pump()
        end
        pump = function()
            while running < PARALLEL and next_i <= #list do
                local id = list[next_i]
                next_i = next_i + 1
                running = running + 1
                local node = cps.owner("storage", id)
                local ok = node and (#id == 32 or #id == 48) and
                    cps.query(node, "ADMIN_DOC", { op = "size", id = id }, done, TIMEOUT_MS)
                if not ok then running = running - 1 end
            end
            if running == 0 and next_i > #list and not finished then
                finished = true
                ctx:reply(total)
            end
        end
        pump()
    end)
end)

cps.admin_command("IS_USER_ONLINE", "whether a connection is authenticated with a key", function(p, ctx)
    if not valid_key(p) then error("EINVAL", 0) end
    local key = unsafe(p)
    local n = cps.role_count("core")
    local waiting, online, failed = n, false, false
    if n == 0 then return false end
    for i = 0, n - 1 do
        local function done(err, data)
            if err then failed = true elseif type(data) == "table" and data.online then online = true end
            waiting = waiting - 1
            if waiting == 0 then
                if online or not failed then ctx:reply(online) else ctx:error("SERVER_ERROR") end
            end
        end
        local ok = cps.query("core:" .. i, "ADMIN_KEY_ONLINE", { key = key }, done, TIMEOUT_MS)
        if not ok then done("EUNAVAILABLE") end
    end
end)

cps.admin_command("GET_PIN_HISTORY", "not implemented (as CryptPad)", function() error("NOT_IMPLEMENTED", 0) end)
cps.admin_command("ARCHIVE_OWNED_DOCUMENTS", "not implemented (as CryptPad)", function() error("NOT_IMPLEMENTED", 0) end)

-- ---- login blocks and TOTP (§3.3) ----

cps.admin_command("DISABLE_MFA", "remove a login block's TOTP settings", function(p, ctx)
    if not valid_key(p) then error("EINVAL", 0) end
    ask(p, { op = "disable_mfa" }, function(err)
        if err then return ctx:error(err == "EINVAL" and err or "MFA_ERROR") end
        ctx:reply({ success = true })
    end)
end)

cps.admin_command("ARCHIVE_BLOCK", "archive a login block {key, reason}", function(p, ctx)
    if type(p) ~= "table" then error("INVALID_ARGS", 0) end
    if not valid_key(p.key) then error("EINVAL", 0) end
    if p.reason ~= nil and (type(p.reason) ~= "string" or #p.reason > 1000) then error("EINVAL", 0) end
    ask(p.key, { op = "archive_block", reason = p.reason }, function(err)
        if err then return ctx:error(err) end
        ctx:reply(cps.null)
    end)
end)

cps.admin_command("RESTORE_ARCHIVED_BLOCK", "bring an archived login block back {key}", function(p, ctx)
    if type(p) ~= "table" then error("INVALID_ARGS", 0) end
    if not valid_key(p.key) then error("EINVAL", 0) end
    ask(p.key, { op = "restore_block" }, function(err)
        if err then return ctx:error(err) end
        ctx:reply(cps.null)
    end)
end)

-- ---- support (§3.8) ----

cps.admin_command("ARCHIVE_SUPPORT", "archive every document the support key pins", function(p, ctx)
    local key = cps.config("instance.support_pin_key")
    if not valid_key(key) then error("EINVAL", 0) end
    ask(key, { op = "pins" }, function(err, r)
        if err then return ctx:error(err) end
        local list = A()
        for _, id in ipairs(r.list or {}) do list[#list + 1] = id end
        if #list == 0 then return ctx:reply(cps.null) end
        cps.admin_call("ARCHIVE_DOCUMENTS", { list = list, reason = "DISABLE_SUPPORT" }, function(aerr)
            if aerr then ctx:error(aerr) else ctx:reply(cps.null) end
        end)
    end)
end)

-- ---- account archival (§3.2) ----

-- A blob's owners: the first metadata line's `owners`, then its ADD_OWNERS
-- and RM_OWNERS lines (docs/protocol/history.md §10).
cps.register_role_command("storage", "ADMIN_BLOB_OWNERS", function(args, call)
    local id = args.id
    if type(id) ~= "string" or #id ~= 48 or not id:match("^[0-9a-f]+$") then error("EINVAL", 0) end
    cps.obj_read("blob", id .. ".metadata.ndjson", function(err, text)
        local owners = {}
        for line in (text or ""):gmatch("[^\n]+") do
            local v = cps.json_decode(line)
            if type(v) == "table" and type(v.owners) == "table" then
                owners = {}
                for _, k in ipairs(v.owners) do owners[k] = true end
            elseif type(v) == "table" and type(v[2]) == "table" then
                for _, k in ipairs(v[2]) do
                    if v[1] == "ADD_OWNERS" then owners[k] = true elseif v[1] == "RM_OWNERS" then owners[k] = nil end
                end
            end
        end
        local list = A()
        for k in pairs(owners) do if type(k) == "string" then list[#list + 1] = k end end
        call:reply({ owners = list })
    end)
end)

local function query_owner(id, cmd, args, cb)
    local node = cps.owner("storage", id)
    if not node then return cb("EUNAVAILABLE") end
    local ok, code = cps.query(node, cmd, args, cb, TIMEOUT_MS)
    if not ok then cb(code) end
end

-- Run work(item, next) for every item of `items`, PARALLEL at a time, then
-- done().  An item answered at once (a node down) does not recurse: the
-- running loop takes the next one, so thousands of failures cost no stack.
local function run_parallel(items, work, done)
    local i, running, pumping = 1, 0, false
    local pump
    local function one_done() running = running - 1; pump() end
    pump = function()
        if pumping then return end
        pumping = true
        while running < PARALLEL and i <= #items do
            local item = items[i]
            i = i + 1
            running = running + 1
            work(item, one_done)
        end
        pumping = false
        if running == 0 and i > #items and done then
            local d = done
            done = nil
            d()
        end
    end
    pump()
end

-- Archive what `key` owns among its pinned ids: channels whose only owner
-- it is, blobs it owns.  done(channels, blobs).
local function archive_owned(key, list, text, done)
    local channels, blobs = A(), A()
    run_parallel(list, function(id, finish)
        if type(id) ~= "string" then return finish() end
        if #id == 32 then
            query_owner(id, "CHANNEL_ADMIN_METADATA", { channel = id }, function(err, info)
                local owners = not err and type(info) == "table" and type(info.metadata) == "table"
                    and info.metadata.owners
                if type(owners) ~= "table" or #owners ~= 1 or owners[1] ~= key then return finish() end
                query_owner(id, "CHANNEL_ADMIN_ARCHIVE", { channel = id, reason = text }, function(aerr)
                    if not aerr then channels[#channels + 1] = id end
                    finish()
                end)
            end)
        elseif #id == 48 then
            query_owner(id, "ADMIN_BLOB_OWNERS", { id = id }, function(err, r)
                local mine = false
                for _, k in ipairs(not err and r.owners or {}) do mine = mine or k == key end
                if not mine then return finish() end
                query_owner(id, "ADMIN_DOC", { op = "archive", id = id, placeholder = text }, function(aerr)
                    if not aerr then blobs[#blobs + 1] = id end
                    finish()
                end)
            end)
        else
            finish()
        end
    end, function() done(channels, blobs) end)
end

local function valid_reason(r) return r == nil or (type(r) == "string" and #r <= 1000) end

cps.admin_command("ARCHIVE_ACCOUNT", "archive an account {key, block?, reason}: what it alone owns, its pins and block",
    function(p, ctx)
        if type(p) ~= "table" or not valid_key(p.key) or not valid_reason(p.reason)
            or (p.block ~= nil and p.block ~= cps.null and not valid_key(p.block)) then error("EINVAL", 0) end
        local key = unsafe(p.key)
        local text = "MODERATION_ACCOUNT:" .. tostring(p.reason)
        ask(key, { op = "pins" }, function(err, r)
            if err then return ctx:error(err) end
            if #(r.list or {}) > 100000 then return ctx:error("INVALID_PIN_LIST") end
            archive_owned(key, r.list or {}, text, function(channels, blobs)
                local report = { key = safe(key), channels = channels, blobs = blobs, reason = p.reason }
                local function finish()
                    ask(key, { op = "report_put", report = report }, function(rerr)
                        if rerr then return ctx:error(rerr) end
                        ctx:reply({ state = true })
                    end)
                end
                ask(key, { op = "archive_pins" }, function()
                    local block = (type(p.block) == "string" and p.block) or r.block
                    if not valid_key(block) then return finish() end
                    ask(block, { op = "archive_block", code = "MODERATION_ACCOUNT", reason = p.reason }, function(berr)
                        if not berr then report.blockId = block end
                        ask(block, { op = "drop_mfa" }, function() finish() end)
                    end)
                end)
            end)
        end)
    end)

cps.admin_command("GET_ACCOUNT_ARCHIVE_STATUS", "the archival report of an account {key}", function(p, ctx)
    if type(p) ~= "table" or not valid_key(p.key) then error("EINVAL", 0) end
    ask(p.key, { op = "report_get" }, function(err, r)
        if err then return ctx:error(err) end
        ctx:reply(r.report)
    end)
end)

-- Everything the report lists comes back: channels and blobs (on the
-- storage node owning each), the pin log and the login block; what cannot
-- (a live copy in the way, nothing archived) is listed in `errors` (ids;
-- "<safeKey>#pins" and "<blockId>#block" for those two), and the report
-- goes.  TOTP settings deleted at archival stay deleted, as in CryptPad.
cps.admin_command("RESTORE_ACCOUNT", "restore an archived account {key}: {state, errors}", function(p, ctx)
    if type(p) ~= "table" or not valid_key(p.key) then error("EINVAL", 0) end
    ask(p.key, { op = "report_get" }, function(err, r)
        if err then return ctx:error(err) end
        local rep = r.report
        local errors = A()
        local steps = {}
        for _, id in ipairs(type(rep.channels) == "table" and rep.channels or {}) do steps[#steps + 1] = id end
        for _, id in ipairs(type(rep.blobs) == "table" and rep.blobs or {}) do steps[#steps + 1] = id end
        -- then the pin log, the block, and the report goes
        local function finish()
            ask(p.key, { op = "restore_pins" }, function(perr)
                if perr then errors[#errors + 1] = safe(p.key) .. "#pins" end
                local function drop_report()
                    ask(p.key, { op = "report_del" }, function()
                        ctx:reply({ state = true, errors = errors })
                    end)
                end
                if not valid_key(rep.blockId) then return drop_report() end
                ask(rep.blockId, { op = "restore_block" }, function(berr)
                    if berr then errors[#errors + 1] = rep.blockId .. "#block" end
                    drop_report()
                end)
            end)
        end
        -- the documents, PARALLEL at a time
        run_parallel(steps, function(id, one_done)
            if type(id) == "string" and (#id == 32 or #id == 48) then
                query_owner(id, "ADMIN_DOC", { op = "restore", id = id }, function(rerr)
                    if rerr then errors[#errors + 1] = id end
                    one_done()
                end)
            else
                errors[#errors + 1] = tostring(id)
                one_done()
            end
        end, finish)
    end)
end)
