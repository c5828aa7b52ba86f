-- A cluster of two fronts, two cores and two storage nodes on one machine.
-- It runs as shipped, from any working directory:
--
--   cpsd --topology config/topology-example.lua --list     every node and the ports it binds
--   cpsd --topology config/topology-example.lua            run and supervise them
--   cpsd --topology FILE --role core --index 1             run one node (what the
--                                                           supervisor starts)
--
-- Every node listens on its port: fronts for clients (websocket + HTTP),
-- every node for the other nodes' links (path /cpsd-link, authenticated with
-- the cluster key, encrypted).  Only fronts take extra client ports (the
-- sandbox origin of the web app), each its own.  Nodes whose host is not a
-- loopback address run on other machines (set `local = true` on a node to
-- start it here anyway).
-- Placement: channels and users go to cores and storage nodes by the jump
-- hash of cryptpad/scalable-server, so each storage node holds its shard
-- under <data_dir>/storage-<index>.
return {
    -- The shared node key: 32 random bytes in base64, in a file next to this
    -- one.  The supervisor creates it (mode 0600) if it is missing; or make
    -- it with `cpsd keygen config/cluster.key`.  Every machine of the
    -- cluster needs the same file.  (`key = "<base64>"` instead also works.)
    key_file = "cluster.key",

    front = {
        { host = "127.0.0.1", port = 3010, extra_ports = { 3012 } },
        { host = "127.0.0.1", port = 3011, extra_ports = { 3013 } },
    },
    core = {
        { host = "127.0.0.1", port = 3020 },
        { host = "127.0.0.1", port = 3021 },
    },
    storage = {
        { host = "127.0.0.1", port = 3030 },
        { host = "127.0.0.1", port = 3031 },
    },

    -- Settings shared by every node (the same keys as a configuration file;
    -- listen comes from the node lists above).  A relative data_dir is
    -- relative to the working directory of the supervisor.
    config = {
        data_dir = "./data",
        log = { level = "info" },
    },
}
