-- A cluster of two fronts, two cores and two storage nodes on one machine.
--
--   cpsd --topology config/topology-example.lua --list     one line per node
--   cpsd --topology config/topology-example.lua            run and supervise them
--   cpsd --topology FILE --role core --index 1             run one node (what the
--                                                           supervisor starts)
--
-- Every node listens on its port: fronts for clients (websocket + HTTP),
-- every node for the other nodes' links (path /cpsd-link, authenticated with
-- `key`, encrypted).  Nodes whose host is not a loopback address run on other
-- machines (set `local = true` on a node to start it here anyway).
-- Placement: channels and users go to cores and storage nodes by the jump
-- hash of cryptpad/scalable-server, so each storage node holds its shard
-- under <data_dir>/storage-<index>.
return {
    -- 32 random bytes, base64, the same file on every machine; generate with
    --   head -c 32 /dev/urandom | base64
    key = "REPLACE-ME-WITH-32-RANDOM-BYTES-IN-BASE64====",

    front = {
        { host = "127.0.0.1", port = 3010 },
        { host = "127.0.0.1", port = 3011 },
    },
    core = {
        { host = "127.0.0.1", port = 3020 },
        { host = "127.0.0.1", port = 3021 },
    },
    storage = {
        { host = "127.0.0.1", port = 3030 },
        { host = "127.0.0.1", port = 3031 },
    },

    -- Settings shared by every node (the same keys as a configuration file).
    config = {
        data_dir = "./data",
        log = { level = "info" },
    },
}
