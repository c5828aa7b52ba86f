-- test_lua: registrations aimed at nodes this process does not run.
-- core:0 is remote: a Lua error naming it.
local ok, err = pcall(cps.register_role_command, "core:0", "LUA_REMOTE", function() return 1 end)
-- No storage node here (storage:0 is remote): false, nothing registered.
local role_ok, role_result = pcall(cps.register_role_command, "storage", "LUA_REMOTE_ROLE", function() return 1 end)
-- This process's own core node, by role and by id.
local by_role = cps.register_role_command("core", "LUA_LOCAL_ROLE", function() return "by role" end)
local by_id = cps.register_role_command("core:1", "LUA_LOCAL_ID", function() return "by id" end)
cps.register_rpc("LUA_REMOTE_RESULT", function(args, ctx)
    return { ok = ok, err = tostring(err), role_ok = role_ok, role = role_result,
             by_role = by_role, by_id = by_id }
end)
