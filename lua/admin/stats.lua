-- admin/stats.lua - the statistics of the admin panel's stats tab
-- (docs/protocol/admin.md §3.1): sessions, active pads, open files, caches,
-- gathered from every node of a cluster; for the operator `stats` (one row
-- per node, a node that is down says so) and `sessions`.
--
-- Each node answers ADMIN_NODE_STATS about its own process; the command
-- asks every node at once and waits at most TIMEOUT_MS for each, so a dead
-- node makes the answer say so instead of hanging.

local A = cps.array
local TIMEOUT_MS = 3000
local ROLES = { "front", "core", "storage" }

local function nodes_of(role)
    local out = {}
    for i = 0, cps.role_count(role) - 1 do out[#out + 1] = role .. ":" .. i end
    return out
end

-- Ask `cmd` of every node of `roles`; done(answers by node, down nodes).
local function gather(roles, cmd, args, done, timeout_ms)
    local targets = {}
    for _, r in ipairs(roles) do for _, n in ipairs(nodes_of(r)) do targets[#targets + 1] = n end end
    local answers, down, waiting = {}, {}, #targets
    if waiting == 0 then return done(answers, down) end
    local function one(n, err, data)
        if err then down[#down + 1] = n else answers[n] = data end
        waiting = waiting - 1
        if waiting == 0 then table.sort(down); done(answers, down) end
    end
    for _, n in ipairs(targets) do
        local ok, code = cps.query(n, cmd, args or {}, function(err, data) one(n, err, data) end,
            timeout_ms or TIMEOUT_MS)
        if not ok then one(n, code or "EUNAVAILABLE") end
    end
end

for _, role in ipairs(ROLES) do
    cps.register_role_command(role, "ADMIN_NODE_STATS", function(args, call)
        local s, p = cps.sessions(), cps.process()
        local front = role == "front"
        return {
            node = cps.node(role), sessions = front and s.count or 0, unique_peers = front and s.unique_peers or 0,
            fds = p.fds, fd_limit = p.fd_limit, rss = p.rss, lua_memory = p.lua_memory, pid = p.pid,
            timings = cps.timings(),
        }
    end)
end

-- A reply for the panel: the numbers, or EUNAVAILABLE naming the nodes
-- that did not answer (a partial number would be wrong without saying so).
local function unavailable(ctx, down)
    ctx:error("EUNAVAILABLE")
    cps.log("warn", ctx.name .. ": no answer from " .. table.concat(down, ", "))
end

cps.admin_command("ACTIVE_SESSIONS", "open websocket connections and distinct client addresses",
    function(args, ctx)
        gather({ "front" }, "ADMIN_NODE_STATS", {}, function(answers, down)
            if #down > 0 then return unavailable(ctx, down) end
            local total, unique = 0, 0
            for _, a in pairs(answers) do total = total + a.sessions; unique = unique + a.unique_peers end
            ctx:reply(A({ total, unique }))
        end)
    end)

cps.admin_command("ACTIVE_PADS", "channels with at least one member", function(args, ctx)
    gather({ "storage" }, "CHANNEL_ADMIN_INFO", {}, function(answers, down)
        if #down > 0 then return unavailable(ctx, down) end
        local n = 0
        for _, a in pairs(answers) do n = n + (a.active or 0) end
        ctx:reply(n)
    end)
end)

-- Per process, not per node: the nodes of one process share its files.
local function per_process(answers)
    local seen, list = {}, {}
    for _, a in pairs(answers) do
        local id = tostring(a.pid)
        if not seen[id] then seen[id] = true; list[#list + 1] = a end
    end
    return list
end

cps.admin_command("GET_FILE_DESCRIPTOR_COUNT", "open files of the server's processes", function(args, ctx)
    gather(ROLES, "ADMIN_NODE_STATS", {}, function(answers, down)
        if #down > 0 then return unavailable(ctx, down) end
        local n = 0
        for _, a in ipairs(per_process(answers)) do n = n + a.fds end
        ctx:reply(n)
    end)
end)

cps.admin_command("GET_FILE_DESCRIPTOR_LIMIT", "the open-file limit of this process", function(args, ctx)
    return cps.process().fd_limit
end)

cps.admin_command("GET_CACHE_STATS", "channels held in memory and memory use", function(args, ctx)
    gather({ "storage" }, "CHANNEL_ADMIN_INFO", {}, function(answers, down)
        local open = 0
        for _, a in pairs(answers) do open = open + (a.open or 0) end
        local p = cps.process()
        ctx:reply({ metadata = open, metaSize = 0, channel = open, channelSize = 0,
                    memoryUsage = { rss = p.rss, lua = p.lua_memory }, unreachable = A(down) })
    end)
end)

-- CryptPad's worker profile is the seconds spent per kind of work; cpsd's
-- are its latency histograms (RPC calls, channel appends, history
-- streams), summed over every process of the cluster: {name: seconds}.
cps.admin_command("GET_WORKER_PROFILES", "seconds spent per kind of work, over every process", function(args, ctx)
    gather(ROLES, "ADMIN_NODE_STATS", {}, function(answers, down)
        if #down > 0 then return unavailable(ctx, down) end
        local out = {}
        for _, a in ipairs(per_process(answers)) do
            for name, t in pairs(type(a.timings) == "table" and a.timings or {}) do
                if type(t) == "table" and type(t.seconds) == "number" then
                    out[name] = (out[name] or 0) + t.seconds
                end
            end
        end
        ctx:reply(out)
    end)
end)

-- ---- DISK_USAGE: bytes per kind of data, over every storage node ----
-- Each storage node sums the sizes of the entries of its backend's raw
-- view (api/cps_storage.h), whatever the backend: CryptPad's categories
-- are spaces of it, `total` is every space (archives included).  It visits
-- every entry, as CryptPad walks its directories: the panel asks first.
local CATEGORY = { pin = "pin", ["obj/blob"] = "blob", ["obj/blobstage"] = "blobstage",
                   ["obj/block"] = "block", channel = "datastore", meta = "datastore",
                   placeholder = "datastore" }
local SIZE_PARALLEL = 16
local DISK_TIMEOUT_MS = 120000
local LIST_PAGE = 1000

-- done(err, bytes) once every entry of `space` was sized (an entry that
-- vanished meanwhile counts 0).
local function space_bytes(space, done)
    local total, after, names, idx, running, last_page = 0, "", {}, 1, 0, false
    local pump
    local function next_page()
        local ok, code = cps.store_list(space, after, LIST_PAGE, function(err, list, last)
            if err then return done(err) end
            names, idx, last_page = list, 1, last or #list == 0
            if #list > 0 then after = list[#list] end
            pump()
        end)
        if not ok then done(code or "EIO") end
    end
    pump = function()
        while running < SIZE_PARALLEL and idx <= #names do
            local name = names[idx]
            idx = idx + 1
            running = running + 1
            local ok = cps.store_size(space, name, function(err, n)
                running = running - 1
                if not err and n then total = total + n end
                pump()
            end)
            if not ok then running = running - 1 end
        end
        if running == 0 and idx > #names then
            if last_page then return done(nil, total) end
            next_page()
        end
    end
    next_page()
end

cps.register_role_command("storage", "ADMIN_DISK_USAGE", function(args, call)
    local ok, code = cps.store_spaces(function(err, spaces)
        if err then return call:error(err) end
        local out = { total = 0, pin = 0, blob = 0, blobstage = 0, block = 0, datastore = 0,
                      pid = cps.process().pid }
        local i = 0
        local function step()
            i = i + 1
            local space = spaces[i]
            if not space then return call:reply(out) end
            space_bytes(space, function(serr, n)
                if not serr then
                    out.total = out.total + n
                    local c = CATEGORY[space]
                    if c then out[c] = out[c] + n end
                end
                step()
            end)
        end
        step()
    end)
    if not ok then call:error(code or "EIO") end
end)

cps.admin_command("DISK_USAGE", "bytes per kind of data (pin, blob, block, datastore...), every storage node",
    function(args, ctx)
        gather({ "storage" }, "ADMIN_DISK_USAGE", {}, function(answers, down)
            if #down > 0 then return unavailable(ctx, down) end
            local out = {}
            -- once per process: the storage nodes of one process share its backend
            for _, a in ipairs(per_process(answers)) do
                for k, v in pairs(a) do if k ~= "pid" and math.type(v) then out[k] = (out[k] or 0) + v end end
            end
            ctx:reply(out)
        end, DISK_TIMEOUT_MS)
    end)

cps.admin_command("SHUTDOWN", "not implemented (as CryptPad)", function(args, ctx)
    error("E_NOT_IMPLEMENTED", 0)
end)

local last_eviction = cps.now()
cps.admin_command("SET_LAST_EVICTION", "the time of the last eviction run (ms)", function(p, ctx)
    if math.type(p) ~= "integer" then error("INVALID_ARGS", 0) end
    last_eviction = p
    return cps.null
end)

-- ---- operator commands ----

cps.admin_command("stats", "one row per node: sessions, open files, memory (down nodes say so)",
    function(args, ctx)
        gather(ROLES, "ADMIN_NODE_STATS", {}, function(answers, down)
            local rows = A()
            for _, role in ipairs(ROLES) do
                for _, n in ipairs(nodes_of(role)) do
                    local a = answers[n]
                    if a then
                        rows[#rows + 1] = { node = n, status = "up", sessions = a.sessions, fds = a.fds,
                                            rss = a.rss, lua_memory = a.lua_memory }
                    else
                        rows[#rows + 1] = { node = n, status = "down" }
                    end
                end
            end
            ctx:reply(rows)
        end)
    end)

cps.admin_command("sessions", "open websocket connections and distinct client addresses",
    function(args, ctx)
        gather({ "front" }, "ADMIN_NODE_STATS", {}, function(answers, down)
            local total, unique = 0, 0
            for _, a in pairs(answers) do total = total + a.sessions; unique = unique + a.unique_peers end
            local out = { total = total, unique_addresses = unique }
            if #down > 0 then out.down = table.concat(down, ", ") end
            ctx:reply(out)
        end)
    end)

-- The number of accounts is the number of pin logs (CryptPad counts the
-- files of its pin store): each storage node counts its own through the
-- backend's list of the "pin" space, a page at a time.
local PAGE = 1000
local function count_pins(done)
    local n = 0
    local function page(after)
        local ok, code = cps.store_list("pin", after, PAGE, function(err, names, last)
            if err then return done(err) end
            n = n + #names
            if last or #names == 0 then return done(nil, n) end
            page(names[#names])
        end)
        if not ok then done(code or "EIO") end
    end
    page("")
end

cps.register_role_command("storage", "ADMIN_COUNT_PINS", function(args, call)
    count_pins(function(err, n)
        if err then call:error(err) else call:reply({ count = n }) end
    end)
end)

cps.admin_command("REGISTERED_USERS", "number of accounts (pin logs on every storage node)",
    function(args, ctx)
        gather({ "storage" }, "ADMIN_COUNT_PINS", {}, function(answers, down)
            if #down > 0 then return unavailable(ctx, down) end
            local total = 0
            for _, a in pairs(answers) do total = total + a.count end
            ctx:reply({ users = total })
        end)
    end)
