-- greet.lua - GREET "name" answers "Hello, name!".
local greeted = 0

cps.register_rpc("GREET", function(args, ctx)
    if type(args) ~= "string" or #args == 0 or #args > 100 then
        error("EINVAL", 0)          -- the client gets [txid, "ERROR", "EINVAL"]
    end
    greeted = greeted + 1
    return "Hello, " .. args .. "!"
end)

cps.on_unload(function()
    cps.log("info", "greet.lua: greeted " .. greeted .. " time(s)")
end)

cps.log("info", "GREET registered")
