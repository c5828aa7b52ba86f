-- admin/decrees.lua - who is an admin, the decree log and every decree
-- (docs/protocol/admin.md §1, §4), the first-admin onboarding (§1.4, §6),
-- and the admin commands that read or change that state: INSTANCE_STATUS,
-- ADMIN_DECREE, FLUSH_CACHE, CHANGE_COLOR, ADD_FIRST_ADMIN; for the
-- operator `decree`, `admin`, `install-link`, `flush-cache`.
--
-- The state lives in every process of a cluster; what C plugins need is
-- published as live instance settings (cps.instance_set).  storage:0 owns
-- the log (data/decrees/decree.ndjson): it checks and appends each decree,
-- then sends it, numbered, to every node, and answers once they applied it
-- (or were found down).  Each process replays the log at start from
-- storage:0 and keeps serving its state while storage:0 is down.

local WRITER = "storage:0"
local LOG_STORE, LOG_KEY = "decrees", "decree.ndjson"
local APPLY_TIMEOUT_MS = 5000      -- a node's answer to a decree broadcast
local WRITE_TIMEOUT_MS = 12000     -- the writer's answer (after its broadcast)
local PAGE = 5000                  -- log lines per ADMIN_DECREE_LOG answer

local A = cps.array

-- ---- keys (admin.md §0) ----

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- A 32-byte Ed25519 key in standard base64: 43 characters and '=', the
-- last character carrying only 4 bits (main accepts any 44 characters).
local function valid_unsafe(k)
    if type(k) ~= "string" or #k ~= 44 or not k:match("^[A-Za-z0-9+/]+=$") then return false end
    local last = B64:find(k:sub(43, 43), 1, true) - 1
    return last % 4 == 0
end

-- The canonical (unsafe) key of a key, safe key or user id string, or nil.
local function canonical(s)
    if type(s) ~= "string" or #s > 400 then return nil end
    local k
    if #s == 44 then
        k = s
    else
        local inner = s:match("^%[(.+)%]$")
        if inner then
            local name, host, key = inner:match("^(.+)@([^@]+)/([A-Za-z0-9+-]+=)$")
            if name and #key == 44 and #name > 0 and #host > 0 then k = key end
        end
        if not k then
            local key = s:match("^https?://[^/]+/user/#/1/[^/]+/([A-Za-z0-9+-]+=)$")
            if key and #key == 44 then k = key end
        end
    end
    if not k then return nil end
    k = k:gsub("%-", "/")
    if not valid_unsafe(k) then return nil end
    return k
end

local function user_name(s)
    local inner = type(s) == "string" and s:match("^%[(.+)%]$")
    return inner and inner:match("^(.+)@[^@]+/[A-Za-z0-9+-]+=$") or nil
end

-- ---- the state ----

local function conf(path, default)
    local v = cps.config(path)
    if v == nil then return default end
    return v
end

local function list_of(v)
    local out = {}
    if type(v) == "table" then for _, x in ipairs(v) do out[#out + 1] = x end end
    return out
end

local S = {
    admins = {}, admins_data = {},     -- canonical keys; the strings as given
    config_admins = {},                -- canonical key -> true
    limits = {},                       -- canonical key -> {limit, plan, note, users?, origin}
    install_token = nil,
    bearer_secret = nil,
    proofs_migrated = false,
    seq = 0,                           -- log lines applied (the line number)
    ready = false,                     -- the log was replayed
    launch = cps.now(),
    env = {},
}

local E = S.env
E.restrictRegistration = conf("instance.restrict_registration", false) == true
E.enableEmbedding = conf("instance.enable_embedding", false) == true
E.defaultStorageLimit = conf("instance.default_storage_limit", 52428800)
E.maxUploadSize = conf("instance.max_upload_size", 20971520)
E.premiumUploadSize = conf("instance.premium_upload_size", nil)
E.inactiveTime = conf("web.inactive_time", 90)
E.archiveRetentionTime = 90
E.disableIntegratedEviction = true
E.disableIntegratedTasks = false
E.enableProfiling = false
E.profilingWindow = 10000
E.consentToContact, E.listMyInstance, E.provideAggregateStatistics = false, false, false
E.blockDailyCheck = false
-- What the web section configures is the starting value of its decree
-- (docs/protocol/admin.md §3.3): a decree changes it, a restart without
-- decrees keeps it.
local function texts(key)
    local v = cps.config("web." .. key)
    if type(v) == "string" then return { default = v } end
    local out = {}
    if type(v) == "table" then for k, t in pairs(v) do if type(t) == "string" then out[k] = t end end end
    return out
end
local function web_bool(key)
    local v = cps.config("web." .. key)
    if v == true or v == false then return v end
end
local function web_str(key)
    local v = cps.config("web." .. key)
    if type(v) == "string" then return v end
end
E.instanceName, E.instanceDescription = texts("instance_name"), texts("instance_description")
E.instanceJurisdiction, E.instanceNotice = texts("instance_jurisdiction"), texts("instance_notice")
E.lastBroadcastHash = web_str("last_broadcast_hash") or ""
E.surveyURL = web_str("survey_url")
local m = cps.config("web.maintenance")
if type(m) == "table" and next(m) ~= nil then E.maintenance = m end
E.adminEmail = web_str("admin_email")
E.accentColor = web_str("accent_color")
E.supportMailbox, E.supportMailboxKey = web_str("support_mailbox"), web_str("support_mailbox_key")
E.enforceMFA = web_bool("enforce_mfa")
E.listMyInstance = web_bool("list_my_instance") or false
E.removeDonateButton = web_bool("remove_donate_button")
E.restrictSsoRegistration = web_bool("restrict_sso_registration")
local apps = cps.config("web.apps_to_disable")
if type(apps) == "table" and #apps > 0 then E.appsToDisable = A(list_of(apps)) end
-- a configured fresh key is kept (web.fresh_key); else a new one per start
local FIXED_FRESH_KEY = web_str("fresh_key")
E.freshKey = FIXED_FRESH_KEY or cps.now()

for _, raw in ipairs(list_of(cps.config("admin.keys"))) do
    local k = canonical(raw)
    S.admins_data[#S.admins_data + 1] = raw
    if k then
        S.config_admins[k] = true
        local seen = false
        for _, a in ipairs(S.admins) do seen = seen or a == k end
        if not seen then S.admins[#S.admins + 1] = k end
    else
        cps.log("warn", "admin.keys: '" .. tostring(raw) .. "' is not a public signing key, ignored")
    end
end

-- ---- publishing to C plugins and HTTP (admin.md §4.6) ----

local function translations_copy(t)
    local o = {}
    for k, v in pairs(t) do o[k] = v end
    return o
end

local function publish()
    cps.instance_set("admin_keys", A(list_of(S.admins)))
    cps.instance_set("restrict_registration", E.restrictRegistration)
    cps.instance_set("enable_embedding", E.enableEmbedding)
    cps.instance_set("default_storage_limit", E.defaultStorageLimit)
    cps.instance_set("max_upload_size", E.maxUploadSize)
    cps.instance_set("premium_upload_size", E.premiumUploadSize)
    cps.instance_set("restrict_sso_registration", E.restrictSsoRegistration)
    cps.instance_set("apps_to_disable", E.appsToDisable)
    cps.instance_set("enforce_mfa", E.enforceMFA)
    cps.instance_set("list_my_instance", E.listMyInstance)
    cps.instance_set("remove_donate_button", E.removeDonateButton)
    cps.instance_set("admin_email", E.adminEmail)
    cps.instance_set("inactive_time", E.inactiveTime)
    cps.instance_set("support_mailbox", E.supportMailbox)
    cps.instance_set("support_mailbox_key", E.supportMailboxKey)
    cps.instance_set("support_pin_key", E.supportPinKey)
    cps.instance_set("instance_name", translations_copy(E.instanceName))
    cps.instance_set("instance_description", translations_copy(E.instanceDescription))
    cps.instance_set("instance_jurisdiction", translations_copy(E.instanceJurisdiction))
    cps.instance_set("instance_notice", translations_copy(E.instanceNotice))
    cps.instance_set("accent_color", E.accentColor)
    cps.instance_set("logo_mime", E.logoMimeType)
    cps.instance_set("last_broadcast_hash", E.lastBroadcastHash)
    cps.instance_set("survey_url", E.surveyURL)
    cps.instance_set("maintenance", E.maintenance)
    cps.instance_set("fresh_key", tostring(E.freshKey))
    local limits = {}
    for k, v in pairs(S.limits) do limits[k] = v end
    cps.instance_set("custom_limits", limits)
end

-- ---- decree handlers (admin.md §4.4, §4.5) ----
-- h(args, commit) -> "changed" | "same" | nil, error code.  With commit
-- false nothing changes: the writer checks a decree before logging it.

local function is_int(v) return math.type(v) == "integer" or (type(v) == "number" and v == math.floor(v) and v == v and v ~= math.huge and v ~= -math.huge) end

local function setter(field, check)
    return function(args, commit)
        if type(args) ~= "table" or not check(args[1]) then return nil, "INVALID_ARGS" end
        if E[field] == args[1] then return "same" end
        if commit then E[field] = args[1] end
        return "changed"
    end
end

local function boolean(v) return v == true or v == false end
local function string_(v) return type(v) == "string" end
local function integer(v) return is_int(v) end
local function positive(v) return is_int(v) and v > 0 end
local function anything(v) return true end

local function translated(field)
    return function(args, commit)
        if type(args) ~= "table" then return nil, "INVALID_ARGS" end
        local v = args[1]
        if type(v) == "string" then
            if commit then E[field].default = v end
            return "changed"
        elseif type(v) == "table" then
            for lang, text in pairs(v) do
                if type(lang) ~= "string" or type(text) ~= "string" then return nil, "INVALID_ARGS" end
            end
            if commit then for lang, text in pairs(v) do E[field][lang] = text end end
            return "changed"
        end
        return "same"
    end
end

local function one_arg(args)
    return type(args) == "table" and #args == 1 and args[1] and args[1] ~= cps.null
end

local function admin_index(k)
    for i, a in ipairs(S.admins) do if a == k then return i end end
end

local H = {}
H.ENABLE_EMBEDDING = setter("enableEmbedding", boolean)
H.ENFORCE_MFA = setter("enforceMFA", boolean)
H.RESTRICT_REGISTRATION = setter("restrictRegistration", boolean)
H.RESTRICT_SSO_REGISTRATION = setter("restrictSsoRegistration", boolean)
H.DISABLE_STORE_INVITED_USERS = setter("dontStoreInvitedUsers", boolean)
H.DISABLE_STORE_SSO_USERS = setter("dontStoreSSOUsers", boolean)
H.DISABLE_INTEGRATED_EVICTION = setter("disableIntegratedEviction", boolean)
H.DISABLE_INTEGRATED_TASKS = setter("disableIntegratedTasks", boolean)
H.CONSENT_TO_CONTACT = setter("consentToContact", boolean)
H.LIST_MY_INSTANCE = setter("listMyInstance", boolean)
H.PROVIDE_AGGREGATE_STATISTICS = setter("provideAggregateStatistics", boolean)
H.REMOVE_DONATE_BUTTON = setter("removeDonateButton", boolean)
H.BLOCK_DAILY_CHECK = setter("blockDailyCheck", boolean)
H.ENABLE_PROFILING = setter("enableProfiling", boolean)
H.HAS_CUSTOM_LOGO = setter("customLogo", boolean)
H.SET_LOGO_MIME = setter("logoMimeType", string_)
H.SET_ACCENT_COLOR = setter("accentColor", string_)
H.SET_PROFILING_WINDOW = setter("profilingWindow", positive)
H.SET_MAX_UPLOAD_SIZE = setter("maxUploadSize", integer)
H.SET_PREMIUM_UPLOAD_SIZE = setter("premiumUploadSize", integer)
H.UPDATE_DEFAULT_STORAGE = setter("defaultStorageLimit", integer)
H.SET_INACTIVE_TIME = setter("inactiveTime", integer)
H.SET_ARCHIVE_RETENTION_TIME = setter("archiveRetentionTime", integer)
H.SET_ACCOUNT_RETENTION_TIME = setter("accountRetentionTime", integer)
H.SET_ADMIN_EMAIL = setter("adminEmail", string_)
H.SET_SUPPORT_MAILBOX = setter("supportMailbox", function(v) return type(v) == "string" and #v == 44 end)
H.SET_INSTANCE_PURPOSE = setter("instancePurpose", string_)
H.SET_LAST_BROADCAST_HASH = setter("lastBroadcastHash", anything)
H.SET_SURVEY_URL = setter("surveyURL", anything)
H.SET_INSTANCE_NAME = translated("instanceName")
H.SET_INSTANCE_DESCRIPTION = translated("instanceDescription")
H.SET_INSTANCE_JURISDICTION = translated("instanceJurisdiction")
H.SET_INSTANCE_NOTICE = translated("instanceNotice")

H.SET_MAINTENANCE = function(args, commit)
    if type(args) ~= "table" then return nil, "INVALID_ARGS" end
    local m = args[1]
    local ok = type(m) == "string" or
        (type(m) == "table" and type(m.start) == "number" and type(m["end"]) == "number")
    if not ok then return nil, "INVALID_ARGS" end
    if commit then E.maintenance = m end
    return "changed"
end

H.SET_SUPPORT_KEYS = function(args, commit)
    if type(args) ~= "table" then return nil, "INVALID_ARGS" end
    local c, e = args[1], args[2]
    local function ok(v) return type(v) == "string" and (#v == 0 or #v == 44) end
    if not ok(c) or not ok(e) then return nil, "INVALID_ARGS" end
    if E.supportMailboxKey == c and E.supportPinKey == e then return "same" end
    if commit then E.supportMailboxKey, E.supportPinKey = c, e end
    return "changed"
end

H.DISABLE_APPS = function(args, commit)
    if type(args) ~= "table" then return nil, "INVALID_ARGS" end
    for _, v in pairs(args) do if type(v) ~= "string" then return nil, "INVALID_ARGS" end end
    local new = cps.json_encode(A(list_of(args)))
    if E.appsToDisable and cps.json_encode(A(list_of(E.appsToDisable))) == new then return "same" end
    if commit then E.appsToDisable = A(list_of(args)) end
    return "changed"
end

local LIMIT_MEMBERS = { limit = true, plan = true, note = true, users = true, origin = true }

H.SET_QUOTA = function(args, commit)
    if type(args) ~= "table" or #args ~= 2 then return nil, "INVALID_ARGS" end
    local k, l = canonical(args[1]), args[2]
    if not k then return nil, "INVALID_ARGS" end
    if type(l) ~= "table" or not is_int(l.limit) or l.limit < 0 or type(l.plan) ~= "string"
        or type(l.note) ~= "string" then return nil, "INVALID_ARGS" end
    for m in pairs(l) do if not LIMIT_MEMBERS[m] then return nil, "INVALID_ARGS" end end
    if l.users ~= nil then
        if type(l.users) ~= "table" then return nil, "INVALID_ARGS" end
        for _, u in pairs(l.users) do if type(u) ~= "string" then return nil, "INVALID_ARGS" end end
    end
    if #l.plan > 256 or #l.note > 1000 then return nil, "INVALID_ARGS" end
    l.origin = "decree"       -- written decorated, as CryptPad does
    if commit then S.limits[k] = l end
    return "changed"
end

H.RM_QUOTA = function(args, commit)
    if type(args) ~= "table" or #args ~= 1 then return nil, "INVALID_ARGS" end
    local k = canonical(args[1])
    if not k then return nil, "INVALID_ARGS" end
    if not S.limits[k] then return nil, "ENOENT" end
    if commit then S.limits[k] = nil end
    return "changed"
end

H.ADD_INSTALL_TOKEN = function(args, commit)
    if not one_arg(args) or type(args[1]) ~= "string" or not args[1]:match("^%x+$") or #args[1] ~= 64 then
        return nil, "INVALID_ARGS"
    end
    if commit then S.install_token = args[1] end
    return "changed"
end

H.ADD_ADMIN_KEY = function(args, commit)
    if not one_arg(args) then return nil, "INVALID_ARGS" end
    local k = canonical(args[1])
    if not k then return nil, "INVALID_KEY" end
    if admin_index(k) then return "same" end
    if commit then
        S.admins[#S.admins + 1] = k
        S.admins_data[#S.admins_data + 1] = args[1]
        S.token_spent = true      -- an admin was added: onboarding is over for good
    end
    return "changed"
end

H.RM_ADMIN_KEY = function(args, commit)
    if not one_arg(args) then return nil, "INVALID_ARGS" end
    local k = canonical(args[1])
    if not k then return nil, "INVALID_KEY" end
    local i = admin_index(k)
    if not i then return "same" end
    if S.config_admins[k] then return nil, "CANT_REMOVE_CONFIG" end
    if #S.admins == 1 then return nil, "CANT_REMOVE_LAST_ADMIN" end
    if commit then
        table.remove(S.admins, i)
        for j = #S.admins_data, 1, -1 do
            if canonical(S.admins_data[j]) == k then table.remove(S.admins_data, j) end
        end
    end
    return "changed"
end

H.PROOFS_MIGRATED = function(args, commit)
    if args ~= 1 then return nil, "INVALID_ARGS" end
    if commit then S.proofs_migrated = true end
    return "changed"
end

H.SET_BEARER_SECRET = function(args, commit)
    if not one_arg(args) or type(args[1]) ~= "string" or #args[1] == 0 then return nil, "INVALID_ARGS" end
    if commit then S.bearer_secret = args[1] end
    return "changed"
end

H.TEST_DECREE = function(args, commit)
    if type(args) ~= "string" then return nil, "INVALID_ARGS" end
    if commit then S.test_decree = args end
    return "changed"
end

-- Apply a decree [CMD, args, author, time]: "changed" | "same" | nil, err.
local function run(decree, commit)
    if type(decree) ~= "table" or type(decree[1]) ~= "string" then return nil, "INVALID_DECREE" end
    local h = H[decree[1]]
    if not h then return nil, "DECREE_UNSUPPORTED_COMMAND" end
    local ok, res, err = pcall(h, decree[2], commit)
    if not ok then return nil, "INVALID_ARGS" end
    return res, err
end

-- One line of the log, in order (admin.md §4.3): never fatal.
local function replay_line(line, n)
    S.seq = n
    if line == "" then return end
    local d, why = cps.json_decode(line)
    if d == nil then
        cps.log("warn", "DECREE_LINE_ERR: line " .. n .. ": " .. tostring(why))
        return
    end
    if type(d) ~= "table" or d[1] == nil then
        cps.log("warn", "DECREE_HANDLER_WEIRD_LINE: line " .. n)
        return
    end
    local res, err = run(d, true)
    if not res then cps.log("warn", "DECREE_COMMAND_ERR: line " .. n .. ": " .. tostring(d[1]) .. ": " .. err) end
end

local function split_lines(text)
    local lines = {}
    for line in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = line end
    local tail = text:match("([^\n]+)$")          -- a torn last line
    if tail then lines[#lines + 1] = tail end
    return lines
end

-- ---- the writer (storage:0) ----

local is_writer = cps.node("storage") == WRITER
local log_lines = {}         -- the writer's copy of the log, line by line

local function nodes_elsewhere()
    local out = {}
    for _, role in ipairs({ "front", "core", "storage" }) do
        local here = cps.node(role)
        for i = 0, cps.role_count(role) - 1 do
            local n = role .. ":" .. i
            if n ~= here then out[#out + 1] = n end
        end
    end
    return out
end

-- Send line `seq` to every node of other processes; done(unreached) once
-- each answered or failed.
local function broadcast(seq, line, done)
    local targets = nodes_elsewhere()
    local waiting, unreached = #targets, {}
    if waiting == 0 then return done(unreached) end
    for _, n in ipairs(targets) do
        local ok = cps.query(n, "ADMIN_DECREE_APPLY", { seq = seq, line = line }, function(err)
            if err and err ~= "ENOENT" then unreached[#unreached + 1] = n end
            waiting = waiting - 1
            if waiting == 0 then done(unreached) end
        end, APPLY_TIMEOUT_MS)
        if not ok then
            unreached[#unreached + 1] = n
            waiting = waiting - 1
            if waiting == 0 then done(unreached) end
        end
    end
end

local write_queue, writing = {}, false

local function write_next()
    if writing or #write_queue == 0 then return end
    writing = true
    local job = table.remove(write_queue, 1)
    local function finish(err, res)
        writing = false
        job.cb(err, res)
        write_next()
    end
    local res, err = run(job.decree, false)
    if not res then return finish(err) end
    if res == "same" then return finish(nil, { changed = false }) end
    local line = cps.json_encode(job.decree)
    local ok, code = cps.obj_append(LOG_STORE, LOG_KEY, line .. "\n", function(aerr)
        if aerr then
            cps.log("error", "decree log append failed: " .. aerr)
            return finish("EIO")
        end
        log_lines[#log_lines + 1] = line
        run(job.decree, true)
        S.seq = #log_lines
        publish()
        broadcast(S.seq, line, function(unreached)
            if #unreached > 0 then
                cps.log("warn", "decree " .. job.decree[1] .. " not applied yet on " .. table.concat(unreached, ", "))
            end
            finish(nil, { changed = true, unreached = A(unreached) })
        end)
    end)
    if not ok then finish(code) end
end

-- Queue a decree for checking and writing, in order (one append at a time).
local function write_local(decree, cb)
    if not S.ready then return cb("NOT_READY") end
    if S.readonly then return cb("EIO") end
    if #write_queue >= 1000 then return cb("EBUSY") end
    write_queue[#write_queue + 1] = { decree = decree, cb = cb }
    write_next()
end

-- Any node: have storage:0 write a decree; cb(err, {changed, unreached}).
local function submit(decree, cb)
    if is_writer then return write_local(decree, cb) end
    -- the decree's own error comes in the answer; a failed query means
    -- that the writer cannot be reached
    -- a writer that was stopped and wakes up after the deadline must not
    -- apply what its caller already reported as failed
    local expires = cps.now() + WRITE_TIMEOUT_MS - 1000
    local ok, code = cps.query(WRITER, "ADMIN_DECREE_WRITE", { decree = decree, expires = expires }, function(err, data)
        if err then return cb("EUNAVAILABLE") end
        if type(data) ~= "table" then return cb("EINTERNAL") end
        if data.error then return cb(data.error) end
        cb(nil, data)
    end, WRITE_TIMEOUT_MS)
    if not ok then cb("EUNAVAILABLE") end
end

if is_writer then
    cps.register_role_command(WRITER, "ADMIN_DECREE_WRITE", function(args, call)
        if math.type(args.expires) and cps.now() > args.expires then
            cps.log("warn", "decree " .. tostring(type(args.decree) == "table" and args.decree[1]) .. " arrived too late: dropped")
            return { error = "EUNAVAILABLE" }
        end
        write_local(args.decree, function(err, res)
            call:reply(err and { error = err } or res)
        end)
    end)
    cps.register_role_command(WRITER, "ADMIN_DECREE_LOG", function(args, call)
        if not S.ready then error("NOT_READY", 0) end
        local from = math.tointeger(args.from) or 0
        local out = A()
        for i = from + 1, math.min(#log_lines, from + PAGE) do out[#out + 1] = log_lines[i] end
        return { lines = out, total = #log_lines }
    end)
end

-- ---- every process: applying what the writer sends ----

local catching_up = false
local fetch_log

local function apply_remote(seq, line)
    if seq ~= S.seq + 1 then return false end
    replay_line(line, seq)
    publish()
    return true
end

-- APPLY calls answered once this node holds their line: the writer answers
-- the decree only when every node applied it, so the caller's next request
-- sees it wherever it lands.  A node that missed lines (its start-up read of
-- the log still pending) answers after catching up, not before.  At most
-- MAX_WAITERS wait; the writer gives up on one after APPLY_TIMEOUT_MS.
local MAX_WAITERS = 256
local waiters = {}

local function answer_waiters()
    local keep = {}
    for _, w in ipairs(waiters) do
        if w.seq <= S.seq then w.call:reply({}) else keep[#keep + 1] = w end
    end
    waiters = keep
end

-- Calls still waiting when the script goes are answered, not dropped.
cps.on_unload(function()
    for _, w in ipairs(waiters) do w.call:error("ECANCELED") end
    waiters = {}
end)

for _, role in ipairs({ "front", "core", "storage" }) do
    cps.register_role_command(role, "ADMIN_DECREE_APPLY", function(args, call)
        local seq = math.tointeger(args.seq)
        if not seq or type(args.line) ~= "string" then error("EINVAL", 0) end
        if seq <= S.seq then return {} end             -- had it (another node of this process)
        if apply_remote(seq, args.line) then return {} end
        -- missed some: catch up, and answer then
        if #waiters >= MAX_WAITERS then error("EBUSY", 0) end
        waiters[#waiters + 1] = { seq = seq, call = call }
        fetch_log()
        return nil
    end)
end

-- Non-writers: read the log from storage:0, from what we have, page by
-- page; retried every 2 s while it cannot answer.
fetch_log = function()
    if catching_up then return end
    catching_up = true
    local function again() cps.timer(2000, function() catching_up = false; fetch_log() end) end
    local ok = cps.query(WRITER, "ADMIN_DECREE_LOG", { from = S.seq }, function(err, data)
        if err or type(data) ~= "table" or type(data.lines) ~= "table" then return again() end
        for i, line in ipairs(data.lines) do replay_line(line, S.seq + 1) end
        S.ready = true
        publish()
        answer_waiters()
        catching_up = false
        if (math.tointeger(data.total) or 0) > S.seq then fetch_log() end
    end, 10000)
    if not ok then again() end
end

-- ---- start: replay, then onboarding (admin.md §4.3, §1.4, §1.5) ----

local function origin()
    local o = cps.config("instance.main_origin")
    if type(o) ~= "string" then
        local host = cps.config("listen.host") or "localhost"
        if host == "0.0.0.0" or host == "::" or host == "" then host = "localhost" end
        o = "http://" .. host .. ":" .. tostring(cps.config("listen.port"))
    end
    return (o:gsub("/+$", ""))
end

local function install_link()
    return origin() .. "/install/#" .. S.install_token
end

-- On standard output as CryptPad prints it; through the log when the log
-- is a file or JSON records (a log shipper must not meet bare lines, and
-- a service's standard output may go nowhere).
local function print_link()
    if cps.config("log.format") == "json" or type(cps.config("log.file")) == "string" then
        cps.log("warn", "Create your first admin account and customize your instance by visiting " .. install_link())
        return
    end
    cps.print("=============================")
    cps.print("Create your first admin account and customize your instance by visiting")
    cps.print(install_link())
    cps.print("=============================")
end

local function onboarding()
    if #S.admins == 0 and not S.token_spent then
        if S.install_token then
            print_link()
        else
            write_local({ "ADD_INSTALL_TOKEN", A({ cps.random_hex(32) }), "", cps.now() }, function(err)
                if err then cps.log("error", "could not record the install token: " .. err)
                else print_link() end
            end)
        end
        cps.log("info", "NO_ADMIN_CONFIGURED: open the link above to create the first admin")
    end
    if not S.bearer_secret then
        local secret = cps.base64_encode(cps.random_bytes(32))   -- 44 characters, as CryptPad
        write_local({ "SET_BEARER_SECRET", A({ secret }), "INTERNAL", cps.now() }, function() end)
    end
    if not S.proofs_migrated then
        write_local({ "PROOFS_MIGRATED", 1, "server", cps.now() }, function() end)
    end
end

publish()
if is_writer then
    local function started()
        S.ready = true
        if not FIXED_FRESH_KEY then E.freshKey = cps.now() end
        publish()
        cps.log("info", "decree log replayed: " .. #log_lines .. " line(s), " .. #S.admins .. " admin(s)")
        if not S.readonly then onboarding() end
    end
    local ok, code = cps.obj_read(LOG_STORE, LOG_KEY, function(err, text)
        if err and err ~= "ENOENT" then
            -- appending to a log we could not read would renumber it and
            -- lose its state at the next start: serve, but write nothing
            cps.log("error", "decree log unreadable (" .. err .. "): decrees are read-only until it is fixed")
            S.readonly = true
            return started()
        end
        text = text or ""
        for i, line in ipairs(split_lines(text)) do
            log_lines[i] = line
            replay_line(line, i)
        end
        -- a torn last line (a crash mid-append) is ended, so that the next
        -- decree starts a line of its own (it stays a skipped line)
        if #text > 0 and text:sub(-1) ~= "\n" then
            cps.log("warn", "decree log: the last line was torn; it is ended and skipped")
            local aok = cps.obj_append(LOG_STORE, LOG_KEY, "\n", function(aerr)
                if aerr then cps.log("error", "decree log: cannot end the torn line (" .. aerr .. ")"); S.readonly = true end
                started()
            end)
            if not aok then S.readonly = true; started() end
            return
        end
        started()
    end)
    if not ok then
        cps.log("error", "decree log cannot be read (" .. tostring(code) .. "): decrees are read-only")
        S.readonly = true
        started()
    end
elseif cps.role_count("storage") > 0 then
    cps.timer(0, fetch_log)
end

-- ---- the commands ----

local function key_of(ctx) return ctx.key end

local function error_text(code)
    -- main's thrown errors read "Error: CODE" (admin.md §3.6)
    if code == "INVALID_ARGS" or code == "INVALID_KEY" or code == "ENOENT" or code == "CANT_REMOVE_CONFIG"
        or code == "CANT_REMOVE_LAST_ADMIN" or code == "DECREE_UNSUPPORTED_COMMAND" then
        return "Error: " .. code
    end
    return code
end

local function status()
    local admins = A()
    for _, raw in ipairs(S.admins_data) do
        local k = canonical(raw)
        if k and admin_index(k) then
            local e = { edPublic = k, hardcoded = S.config_admins[k] == true }
            if #raw == 44 then e.first = true else e.name = user_name(raw) end
            admins[#admins + 1] = e
        end
    end
    return {
        appsToDisable = E.appsToDisable,
        restrictRegistration = E.restrictRegistration,
        restrictSsoRegistration = E.restrictSsoRegistration,
        dontStoreSSOUsers = E.dontStoreSSOUsers,
        dontStoreInvitedUsers = E.dontStoreInvitedUsers,
        enableEmbedding = E.enableEmbedding,
        launchTime = S.launch,
        currentTime = cps.now(),
        inactiveTime = E.inactiveTime,
        accountRetentionTime = E.accountRetentionTime,
        archiveRetentionTime = E.archiveRetentionTime,
        defaultStorageLimit = E.defaultStorageLimit,
        lastEviction = S.launch,
        evictionReport = {},
        disableIntegratedEviction = E.disableIntegratedEviction,
        disableIntegratedTasks = E.disableIntegratedTasks,
        enableProfiling = E.enableProfiling,
        profilingWindow = E.profilingWindow,
        maxUploadSize = E.maxUploadSize,
        premiumUploadSize = E.premiumUploadSize or false,
        consentToContact = E.consentToContact,
        listMyInstance = E.listMyInstance,
        provideAggregateStatistics = E.provideAggregateStatistics,
        removeDonateButton = E.removeDonateButton,
        blockDailyCheck = E.blockDailyCheck,
        instancePurpose = E.instancePurpose,
        instanceDescription = translations_copy(E.instanceDescription),
        instanceJurisdiction = translations_copy(E.instanceJurisdiction),
        instanceName = translations_copy(E.instanceName),
        instanceNotice = translations_copy(E.instanceNotice),
        enforceMFA = E.enforceMFA,
        admins = admins,
    }
end

cps.admin_command("INSTANCE_STATUS", "settings, decrees and admins of the instance", function(args, ctx)
    return status()
end)

-- ADMIN_DECREE [CMD, args] (admin.md §3.6)
cps.admin_command("ADMIN_DECREE", "apply and record a decree [COMMAND, args]", function(p, ctx)
    if type(p) ~= "table" or type(p[1]) ~= "string" or #p[1] > 64 then error("INVALID_DECREE", 0) end
    local decree = A({ p[1], p[2] == nil and cps.null or p[2], ctx.key or "cli", cps.now() })
    submit(decree, function(err)
        if err then ctx:error(error_text(err)) else ctx:reply(cps.null) end
    end)
end)

-- For other scripts (cps.admin_call): a decree on behalf of an admin, as
-- UPLOAD_LOGO records SET_LOGO_MIME.  Not for the ADMIN RPC: an admin
-- sends ADMIN_DECREE.
cps.admin_command("ADMIN_DECREE_AS", "scripts: record a decree {decree, key} for an admin", function(p, ctx)
    if ctx.key then error("FORBIDDEN", 0) end
    if type(p) ~= "table" or type(p.decree) ~= "table" or type(p.decree[1]) ~= "string" then error("INVALID_DECREE", 0) end
    local author = type(p.key) == "string" and #p.key <= 64 and p.key or "cli"
    submit(A({ p.decree[1], p.decree[2] == nil and cps.null or p.decree[2], author, cps.now() }), function(err, res)
        if err then return ctx:error(err) end
        ctx:reply({ changed = res and res.changed or false })
    end)
end)

local function bump_fresh_key(cb)
    -- not a decree in CryptPad: every process bumps its own, through a
    -- FLUSH_CACHE of every node (admin.md §3.1)
    E.freshKey = cps.now()
    publish()
    local targets = nodes_elsewhere()
    local waiting = #targets
    if waiting == 0 then return cb() end
    for _, n in ipairs(targets) do
        local ok = cps.query(n, "ADMIN_FLUSH_CACHE", { key = E.freshKey }, function()
            waiting = waiting - 1
            if waiting == 0 then cb() end
        end, APPLY_TIMEOUT_MS)
        if not ok then waiting = waiting - 1; if waiting == 0 then cb() end end
    end
end

for _, role in ipairs({ "front", "core", "storage" }) do
    cps.register_role_command(role, "ADMIN_FLUSH_CACHE", function(args)
        if math.tointeger(args.key) and args.key ~= E.freshKey then E.freshKey = args.key; publish() end
        return {}
    end)
end

cps.admin_command("FLUSH_CACHE", "make clients reload every static file", function(args, ctx)
    bump_fresh_key(function() ctx:reply(true) end)
end)

cps.admin_command("CHANGE_COLOR", "set the accent colour {color}", function(p, ctx)
    if type(p) ~= "table" then error("EINVAL", 0) end
    if type(p.color) ~= "string" or #p.color > 64 then return ctx:error("Error: INVALID_ARGS") end
    submit(A({ "SET_ACCENT_COLOR", A({ p.color }), ctx.key or "cli", cps.now() }), function(err)
        if err then return ctx:error(error_text(err)) end
        bump_fresh_key(function() ctx:reply(true) end)
    end)
end)

cps.admin_command("CHECK_TEST_DECREE", "the value of the last TEST_DECREE", function(args, ctx)
    return S.test_decree or cps.null
end)

-- The limits rpc-pin applies: the configured table (rpc-pin.limits, by
-- key in either form, origin "config"), with the SET_QUOTA decrees over it.
local function effective_limits()
    local out = {}
    local cfg = cps.config("rpc-pin.limits")
    if type(cfg) == "table" then
        for key, l in pairs(cfg) do
            local k = canonical(key)
            if k and type(l) == "table" and math.type(l.limit) then
                out[k] = { limit = l.limit, plan = type(l.plan) == "string" and l.plan or "",
                           note = type(l.note) == "string" and l.note or "", origin = "config" }
            end
        end
    end
    for k, v in pairs(S.limits) do out[k] = v end
    return out
end

cps.admin_command("GET_LIMITS", "the custom storage limits, by key", function(args, ctx)
    return effective_limits()
end)

-- ADD_FIRST_ADMIN {token, edPublic}: anonymous (admin.md §1.4).  Better
-- than CryptPad: the token is spent once an admin exists and compared in
-- constant time, and the key must really be a key.
cps.register_rpc("ADD_FIRST_ADMIN", function(p, ctx)
    if not S.install_token then error("EINVAL", 0) end
    if type(p) ~= "table" then error("MISSING_ARGS", 0) end
    local token, key = p.token, p.edPublic
    if type(token) ~= "string" or type(key) ~= "string" or token == "" or key == "" then
        error("MISSING_ARGS", 0)
    end
    if #token ~= 64 or #key ~= 44 then error("INVALID_ARGS", 0) end
    if not cps.equal(token, S.install_token) then error("FORBIDDEN", 0) end
    if #S.admins > 0 or S.token_spent then error("EEXISTS", 0) end
    if not canonical(key) then error("INVALID_ARGS", 0) end
    submit(A({ "ADD_ADMIN_KEY", A({ key }), "", cps.now() }), function(err)
        if err then return ctx:error(error_text(err)) end
        bump_fresh_key(function() ctx:reply(cps.null) end)
    end)
end)

-- ---- operator commands (cpsd admin ...) ----

local function words(args)
    if type(args) ~= "table" then return {} end
    local out = {}
    for i, w in ipairs(args) do
        if type(w) ~= "string" then error("EINVAL: arguments are words", 0) end
        out[i] = w
    end
    return out
end

-- A command-line word as a decree argument: JSON if it parses, else the
-- string itself ("true" -> true, "1048576" -> 1048576, "Pad" -> "Pad").
local function word_value(w)
    local v = cps.json_decode(w)
    if v == nil then return w end
    return v
end

cps.admin_command("decree", "decree list | decree set NAME ARGS...", function(args, ctx)
    local w = words(args)
    if w[1] == "list" then
        local out = A()
        for name in pairs(H) do out[#out + 1] = name end
        table.sort(out)
        local rows = A()
        for _, n in ipairs(out) do rows[#rows + 1] = { decree = n } end
        return rows
    elseif w[1] == "set" and w[2] and w[2]:match("^[A-Z_]+$") then
        local list = A()
        for i = 3, #w do list[#list + 1] = word_value(w[i]) end
        submit(A({ w[2], list, "cli", cps.now() }), function(err, res)
            if err then return ctx:error(err) end
            ctx:reply({ decree = w[2], changed = res and res.changed or false })
        end)
        return
    end
    error("EINVAL: usage: decree list | decree set NAME ARGS...", 0)
end)

cps.admin_command("admin", "admin list | admin add KEY | admin remove KEY", function(args, ctx)
    local w = words(args)
    if w[1] == "list" or w[1] == nil then
        return status().admins
    elseif (w[1] == "add" or w[1] == "remove") and w[2] then
        if not canonical(w[2]) then error("INVALID_KEY: not a public signing key", 0) end
        local cmd = w[1] == "add" and "ADD_ADMIN_KEY" or "RM_ADMIN_KEY"
        submit(A({ cmd, A({ w[2] }), "cli", cps.now() }), function(err, res)
            if err then return ctx:error(err) end
            ctx:reply({ key = canonical(w[2]), changed = res and res.changed or false })
        end)
        return
    end
    error("EINVAL: usage: admin list | admin add KEY | admin remove KEY", 0)
end)

cps.admin_command("install-link", "the one-time link that creates the first admin", function(args, ctx)
    if #S.admins > 0 then error("EEXISTS: the instance has an admin already", 0) end
    if not S.install_token then error("ENOENT: no install token yet", 0) end
    return { link = install_link() }
end)

cps.admin_command("flush-cache", "make clients reload every static file", function(args, ctx)
    bump_fresh_key(function() ctx:reply({ fresh_key = E.freshKey }) end)
end)

cps.admin_command("quota", "quota get KEY | quota set KEY BYTES [PLAN] | quota rm KEY", function(args, ctx)
    local w = words(args)
    local k = w[2] and canonical(w[2])
    if not k then error("EINVAL: usage: quota get KEY | quota set KEY BYTES [PLAN] | quota rm KEY", 0) end
    if w[1] == "get" then
        local l = effective_limits()[k]
        if l then return { key = k, limit = l.limit, plan = l.plan, note = l.note } end
        return { key = k, limit = E.defaultStorageLimit, plan = "", note = "" }
    elseif w[1] == "set" and w[3] then
        local bytes = math.tointeger(tonumber(w[3]))
        if not bytes or bytes < 0 then error("EINVAL: BYTES must be a whole number", 0) end
        local lim = { limit = bytes, plan = w[4] or "custom", note = "" }
        submit(A({ "SET_QUOTA", A({ k, lim }), "cli", cps.now() }), function(err)
            if err then return ctx:error(err) end
            ctx:reply({ key = k, limit = bytes, plan = lim.plan })
        end)
        return
    elseif w[1] == "rm" then
        submit(A({ "RM_QUOTA", A({ k }), "cli", cps.now() }), function(err)
            if err then return ctx:error(err) end
            ctx:reply({ key = k, removed = true })
        end)
        return
    end
    error("EINVAL: usage: quota get KEY | quota set KEY BYTES [PLAN] | quota rm KEY", 0)
end)

cps.admin_command("GET_USER_QUOTA", "a key's storage limit: limit, plan, note", function(p, ctx)
    if type(p) ~= "string" or #p ~= 44 then error("EINVAL", 0) end
    local k = canonical(p)
    local l = k and effective_limits()[k]
    if l then return A({ l.limit, l.plan, l.note }) end
    return A({ E.defaultStorageLimit, "", "" })
end)
