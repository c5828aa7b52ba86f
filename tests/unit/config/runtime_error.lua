local t = nil
return { listen = { port = t.x } }
