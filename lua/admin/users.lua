-- admin/users.lua - registration and support records for the admin
-- panel's users and support tabs (docs/protocol/admin.md §3.7, §3.8):
-- invitations, known users, moderators (published as /api/config
-- moderatorKeys on every node).
--
-- Records are kept where CryptPad keeps them, data/<ns>/<xx>/<id> (record
-- namespaces invitations, users, support), on storage:0, which also keeps
-- the list of each namespace in the record admin-index/<ns> (the store
-- cannot list a namespace; records written by another server before are
-- not listed).  Every id that becomes a record name is checked first.

local A = cps.array
local OWNER = "storage:0"
local TIMEOUT_MS = 10000
local MAX_RECORDS = 100000

local function valid_key(k)
    return type(k) == "string" and #k == 44 and k:match("^[A-Za-z0-9+/=-]+=$") ~= nil
end
local function safe(k) return (k:gsub("/", "-")) end
local function unsafe(k) return (k:gsub("%-", "/")) end
local function valid_invite(id) return type(id) == "string" and #id >= 8 and #id <= 64 and id:match("^[0-9a-v]+$") ~= nil end
local function valid_safe(id) return type(id) == "string" and #id == 44 and id:match("^[A-Za-z0-9+=-]+$") ~= nil end

-- ---- storage:0: the records and their lists ----

local here = cps.node("storage") == OWNER
local lists = { invitations = {}, users = {}, support = {} }   -- ns -> {id -> true}
local loaded = false

local function save_list(ns, cb)
    local ids = A()
    for id in pairs(lists[ns]) do ids[#ids + 1] = id end
    table.sort(ids)
    cps.record_put("admin-index", ns, cps.json_encode(ids), cb or function() end)
end

-- Read every record of a namespace: cb({id -> record}).
local function read_all(ns, cb)
    local out, waiting = {}, 0
    for _ in pairs(lists[ns]) do waiting = waiting + 1 end
    if waiting == 0 then return cb(out) end
    for id in pairs(lists[ns]) do
        local ok = cps.record_get(ns, id, function(err, data)
            if not err then
                local v = cps.json_decode(data or "")
                out[id] = v ~= nil and v or { error = "EINVAL" }
            elseif err ~= "ENOENT" then
                out[id] = { error = err }
            else
                lists[ns][id] = nil        -- deleted behind our back
            end
            waiting = waiting - 1
            if waiting == 0 then cb(out) end
        end)
        if not ok then waiting = waiting - 1; if waiting == 0 then cb(out) end end
    end
end

local function moderator_keys()
    local keys = A()
    for id in pairs(lists.support) do keys[#keys + 1] = unsafe(id) end
    table.sort(keys)
    return keys
end

local function others()
    local out = {}
    for _, role in ipairs({ "front", "core", "storage" }) do
        local mine = cps.node(role)
        for i = 0, cps.role_count(role) - 1 do
            local n = role .. ":" .. i
            if n ~= mine then out[#out + 1] = n end
        end
    end
    return out
end

-- moderatorKeys of /api/config, on every node; cb once all answered.
local function publish_moderators(cb)
    local keys = moderator_keys()
    cps.instance_set("moderator_keys", keys)
    local targets = others()
    local waiting = #targets
    if waiting == 0 then return cb and cb() end
    for _, n in ipairs(targets) do
        local ok = cps.query(n, "ADMIN_MODERATORS", { keys = keys }, function()
            waiting = waiting - 1
            if waiting == 0 and cb then cb() end
        end, 5000)
        if not ok then waiting = waiting - 1; if waiting == 0 and cb then cb() end end
    end
end

-- Create (exclusive) or replace a record, and list it.
local function put(ns, id, rec, exclusive, cb)
    if exclusive and lists[ns][id] then return cb("EEXIST") end
    local n = 0
    for _ in pairs(lists[ns]) do n = n + 1 end
    if not lists[ns][id] and n >= MAX_RECORDS then return cb("E_TOO_LARGE") end
    local ok, code = cps.record_put(ns, id, cps.json_encode(rec), function(err)
        if err then return cb(err) end
        lists[ns][id] = true
        save_list(ns, function() cb() end)
    end)
    if not ok then cb(code) end
end

local function del(ns, id, cb)
    local ok, code = cps.record_del(ns, id, function(err)
        if err and err ~= "ENOENT" then return cb(err) end
        lists[ns][id] = nil
        save_list(ns, function() cb() end)
    end)
    if not ok then cb(code) end
end

local OPS = {}

OPS.list = function(a, call)
    local ns = a.ns
    if not lists[ns] then error("EINVAL", 0) end
    read_all(ns, function(all)
        local out = {}
        for id, rec in pairs(all) do out[ns == "support" and unsafe(id) or id] = rec end
        call:reply({ records = out })
    end)
end

OPS.create_invitation = function(a, call)
    -- 120 random bits; hex digits are within CryptPad's id alphabet [0-9a-v]
    local id = cps.random_hex(15)
    put("invitations", id, { alias = a.alias, email = a.email, createdBy = a.by, time = cps.now() }, true,
        function(err) if err then call:error(err) else call:reply({ id = id }) end end)
end

OPS.delete_invitation = function(a, call)
    if not valid_invite(a.id) then error("EINVAL", 0) end
    del("invitations", a.id, function(err) if err then call:error(err) else call:reply({}) end end)
end

OPS.add_user = function(a, call)
    local r = a.record
    put("users", safe(r.edPublic), r, true, function(err) if err then call:error(err) else call:reply({}) end end)
end

OPS.delete_user = function(a, call)
    if not valid_safe(a.id) then error("EINVAL", 0) end
    del("users", a.id, function(err) if err then call:error(err) else call:reply({}) end end)
end

OPS.update_user = function(a, call)
    if not valid_safe(a.id) then error("EINVAL", 0) end
    cps.record_get("users", a.id, function(err, data)
        if err == "ENOENT" then return call:reply({}) end
        if err then return call:error(err) end
        local rec = cps.json_decode(data or "")
        if type(rec) ~= "table" then return call:error("EINVAL") end
        for k, v in pairs(a.changes) do
            if v == false then rec[k] = nil else rec[k] = v end
        end
        put("users", a.id, rec, false, function(perr) if perr then call:error(perr) else call:reply({}) end end)
    end)
end

OPS.add_moderator = function(a, call)
    local r = a.record
    put("support", safe(r.edPublic), r, true, function(err)
        if err then return call:error(err) end
        publish_moderators(function() call:reply({}) end)
    end)
end

OPS.remove_moderator = function(a, call)
    if not valid_key(a.key) then error("EINVAL", 0) end
    del("support", safe(a.key), function(err)
        if err then return call:error(err) end
        publish_moderators(function() call:reply({}) end)
    end)
end

OPS.moderators = function(a, call) return { keys = moderator_keys() } end

if here then
    cps.register_role_command(OWNER, "ADMIN_USERS", function(args, call)
        if not loaded then error("NOT_READY", 0) end
        local f = type(args) == "table" and OPS[args.op]
        if not f then error("EINVAL", 0) end
        return f(args, call)
    end)
    local pending = 0
    for ns in pairs(lists) do
        pending = pending + 1
        cps.record_get("admin-index", ns, function(err, data)
            local ids = not err and cps.json_decode(data or "") or nil
            if type(ids) == "table" then
                for _, id in ipairs(ids) do if type(id) == "string" then lists[ns][id] = true end end
            end
            pending = pending - 1
            if pending == 0 then loaded = true; publish_moderators() end
        end)
    end
end

-- ---- every node: moderatorKeys ----

for _, role in ipairs({ "front", "core", "storage" }) do
    cps.register_role_command(role, "ADMIN_MODERATORS", function(args)
        if type(args.keys) ~= "table" then error("EINVAL", 0) end
        cps.instance_set("moderator_keys", A(args.keys))
        return {}
    end)
end

if not here and cps.role_count("storage") > 0 then
    local function fetch()
        local ok = cps.query(OWNER, "ADMIN_USERS", { op = "moderators" }, function(err, data)
            if err or type(data) ~= "table" then return cps.timer(2000, fetch) end
            cps.instance_set("moderator_keys", A(data.keys or {}))
        end, 10000)
        if not ok then cps.timer(2000, fetch) end
    end
    cps.timer(0, fetch)
end

-- ---- the admin commands ----

local function ask(args, ctx, then_)
    local ok, code = cps.query(OWNER, "ADMIN_USERS", args, function(err, data)
        if err == "ETIMEDOUT" then err = "EUNAVAILABLE" end
        if err then return ctx:error(err) end
        then_(data)
    end, TIMEOUT_MS)
    if not ok then ctx:error(code == "ENOENT" and "EUNAVAILABLE" or code) end
end

local function text_ok(v, max) return v == nil or (type(v) == "string" and #v <= (max or 300)) end

cps.admin_command("GET_ALL_INVITATIONS", "every invitation: {id: {alias, email, createdBy, time}}", function(p, ctx)
    ask({ op = "list", ns = "invitations" }, ctx, function(d) ctx:reply(d.records) end)
end)

cps.admin_command("CREATE_INVITATION", "a registration link {alias, email}: its id", function(p, ctx)
    if type(p) ~= "table" or not text_ok(p.alias) or not text_ok(p.email) then error("EINVAL", 0) end
    ask({ op = "create_invitation", alias = p.alias, email = p.email, by = ctx.key or "cli" }, ctx,
        function(d) ctx:reply(d.id) end)
end)

cps.admin_command("DELETE_INVITATION", "delete an invitation by id", function(p, ctx)
    if not valid_invite(p) then error("EINVAL", 0) end
    ask({ op = "delete_invitation", id = p }, ctx, function() ctx:reply(true) end)
end)

cps.admin_command("GET_ALL_USERS", "every known user: {safeKey: record}", function(p, ctx)
    ask({ op = "list", ns = "users" }, ctx, function(d) ctx:reply(d.records) end)
end)

cps.admin_command("ADD_KNOWN_USER", "record a known user {edPublic, block?, alias, email?, name?}", function(p, ctx)
    if type(p) ~= "table" or not valid_key(p.edPublic) or (p.block ~= nil and not valid_key(p.block))
        or not text_ok(p.alias) or not text_ok(p.email) or not text_ok(p.name) then error("EINVAL", 0) end
    local rec = { edPublic = p.edPublic, block = p.block, alias = p.alias, email = p.email, name = p.name,
                  type = "manual", createdBy = ctx.key or "cli", time = cps.now() }
    ask({ op = "add_user", record = rec }, ctx, function() ctx:reply(cps.null) end)
end)

cps.admin_command("DELETE_KNOWN_USER", "forget a known user by its listed (safe) key", function(p, ctx)
    if not valid_safe(p) then error("EINVAL", 0) end
    ask({ op = "delete_user", id = p }, ctx, function() ctx:reply(true) end)
end)

cps.admin_command("UPDATE_KNOWN_USER", "change a known user {edPublic, changes}", function(p, ctx)
    if type(p) ~= "table" or not valid_safe(p.edPublic) or type(p.changes) ~= "table" then error("EINVAL", 0) end
    for k, v in pairs(p.changes) do
        if type(k) ~= "string" or #k > 64 then error("EINVAL", 0) end
        if v ~= false and #cps.json_encode(v) > 300 then error("E_TOO_LONG", 0) end
    end
    ask({ op = "update_user", id = p.edPublic, changes = p.changes }, ctx, function() ctx:reply(cps.null) end)
end)

cps.admin_command("GET_MODERATORS", "the support team: {edPublic: record}", function(p, ctx)
    ask({ op = "list", ns = "support" }, ctx, function(d) ctx:reply(d.records) end)
end)

cps.admin_command("ADD_MODERATOR", "add to the support team {name, edPublic, curvePublic, mailbox, profile}",
    function(p, ctx)
        if type(p) ~= "table" or not valid_key(p.edPublic) or (p.curvePublic ~= nil and not valid_key(p.curvePublic))
            or not text_ok(p.name) or not text_ok(p.profile, 1000) then error("EINVAL", 0) end
        if p.mailbox ~= nil and type(p.mailbox) ~= "string" and type(p.mailbox) ~= "table" then error("EINVAL", 0) end
        local rec = { name = p.name, edPublic = unsafe(p.edPublic), curvePublic = p.curvePublic, mailbox = p.mailbox,
                      profile = p.profile, createdBy = ctx.key or "cli", time = cps.now() }
        ask({ op = "add_moderator", record = rec }, ctx, function() ctx:reply(cps.null) end)
    end)

cps.admin_command("REMOVE_MODERATOR", "remove from the support team by edPublic", function(p, ctx)
    if not valid_key(p) then error("EINVAL", 0) end
    ask({ op = "remove_moderator", key = p }, ctx, function() ctx:reply(true) end)
end)
