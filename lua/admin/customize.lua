-- admin/customize.lua - the instance's logo (docs/protocol/admin.md §7):
-- UPLOAD_LOGO {dataURL} and REMOVE_LOGO, as the admin panel's customize
-- tab and the install page send them.  The logo is <data_dir>/logo/logo.<ext>
-- (object store "logo"), where /api/logo finds it; every process of a
-- cluster keeps its own copy, so whichever front answers /api/logo has it.
-- Only image types are accepted (CryptPad takes any type and serves it
-- from the main origin).

local A = cps.array
local MAX_DATA_URL = 273090          -- 200 KiB of bytes as base64, and the prefix
local TYPES = { ["image/png"] = "png", ["image/jpeg"] = "jpg", ["image/gif"] = "gif",
                ["image/webp"] = "webp", ["image/svg+xml"] = "svg" }
local EXTS = { "png", "jpg", "jpeg", "svg", "gif", "webp" }

-- On every node: replace (or remove, with ext nil) this process's logo.
local function set_logo(ext, bytes, done)
    local pending = #EXTS + 1
    local removed = false
    local function step()
        pending = pending - 1
        if pending == 0 then
            if not ext then return done(nil, removed) end
            local ok, code = cps.obj_write("logo", "logo." .. ext, bytes, function(err) done(err, removed) end)
            if not ok then done(code, removed) end
        end
    end
    for _, e in ipairs(EXTS) do
        if e == ext then
            step()
        else
            local ok = cps.obj_delete("logo", "logo." .. e, function(err)
                if not err then removed = true end
                step()
            end)
            if not ok then step() end
        end
    end
    step()
end

for _, role in ipairs({ "front", "core", "storage" }) do
    cps.register_role_command(role, "ADMIN_LOGO", function(args, call)
        if args.ext ~= nil and not (type(args.ext) == "string" and args.ext:match("^%a+$")) then error("EINVAL", 0) end
        local bytes = args.data and cps.base64_decode(args.data) or ""
        set_logo(args.ext, bytes, function(err, removed)
            if err then call:error(err) else call:reply({ removed = removed }) end
        end)
    end)
end

-- Every node, once each (nodes of one process write the same file).
local function everywhere(args, done)
    local targets = {}
    for _, role in ipairs({ "front", "core", "storage" }) do
        for i = 0, cps.role_count(role) - 1 do targets[#targets + 1] = role .. ":" .. i end
    end
    local waiting, failed, removed = #targets, {}, false
    for _, n in ipairs(targets) do
        local ok = cps.query(n, "ADMIN_LOGO", args, function(err, data)
            if err and err ~= "ENOENT" then failed[#failed + 1] = n end
            if type(data) == "table" and data.removed then removed = true end
            waiting = waiting - 1
            if waiting == 0 then done(failed, removed) end
        end, 10000)
        if not ok then
            failed[#failed + 1] = n
            waiting = waiting - 1
            if waiting == 0 then done(failed, removed) end
        end
    end
end

local function decree(ctx, cmd, arg, cb)
    cps.admin_call("ADMIN_DECREE_AS", { decree = A({ cmd, A({ arg }) }), key = ctx.key or "cli" }, cb)
end

cps.admin_command("UPLOAD_LOGO", "set the instance logo {dataURL: data:image/...;base64,...}", function(p, ctx)
    if type(p) ~= "table" then error("EINVAL", 0) end
    local url = p.dataURL
    if type(url) ~= "string" or #url > MAX_DATA_URL then error("E_TOO_LARGE", 0) end
    local mime, data = url:match("^data:([^;,]+);base64,(.*)$")
    if not mime or #data == 0 then error("EINVAL", 0) end
    local ext = TYPES[mime:lower()]
    if not ext then error("EINVAL", 0) end
    if not cps.base64_decode(data) then error("EINVAL", 0) end
    everywhere({ ext = ext, data = data }, function(failed)
        if #failed > 0 then
            cps.log("warn", "UPLOAD_LOGO: not written on " .. table.concat(failed, ", "))
            return ctx:error("EUNAVAILABLE")
        end
        decree(ctx, "SET_LOGO_MIME", mime:lower(), function()
            decree(ctx, "HAS_CUSTOM_LOGO", true, function()
                cps.admin_call("FLUSH_CACHE", cps.null, function() ctx:reply(true) end)
            end)
        end)
    end)
end)

cps.admin_command("REMOVE_LOGO", "back to the default logo", function(p, ctx)
    everywhere({}, function(failed, removed)
        if #failed > 0 then return ctx:error("EUNAVAILABLE") end
        if not removed then return ctx:error("ENOENT") end
        decree(ctx, "HAS_CUSTOM_LOGO", false, function()
            cps.admin_call("FLUSH_CACHE", cps.null, function() ctx:reply(cps.null) end)
        end)
    end)
end)
