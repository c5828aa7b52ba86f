-- cpsd default configuration, embedded in the binary.
--
-- A configuration file is a Lua file that returns one table.  The table of
-- a file given with --config is merged over this one key by key (tables are
-- merged, lists and values replaced), so a file only names what it changes.
-- `cpsd --check-config FILE` checks a file and names every error, among
-- them an unknown key, top-level or in a section ("unknown key
-- limits.max_fram"), and a plugin or Lua script that is not found.  The
-- server refuses to start on the same errors.
--
-- The keys a section takes are the ones set below, and the optional ones
-- shown commented out (host/config.c lists those, as they have no default).
-- The section of a plugin this host does not know is not checked.

return {
    -- Where clients connect (websocket and HTTP).  port 0 picks a free port;
    -- the actual address is logged as "listening on HOST:PORT".
    -- extra_ports: more HTTP listeners on the same host (CryptPad's sandbox
    -- origin is the second port of the same server).
    listen = { host = "127.0.0.1", port = 3000, extra_ports = { 3001 } },

    -- The websocket upgrade is accepted on this path only.
    websocket_path = "/cryptpad_websocket",

    -- Root of everything the server stores.
    data_dir = "./data",

    -- The storage backend the storing plugins use, by the name its plugin
    -- registers ("fs": CryptPad's own on-disk layout under data_dir; "pg":
    -- PostgreSQL, docs/storage-pg.md).  The plugin storage-<name> is loaded
    -- even when `plugins` does not list it; an unknown name stops the start.
    storage_backend = "fs",

    -- storage-pg's database: a libpq conninfo ("host=... dbname=... user=...");
    -- absent, libpq's environment (PGHOST, PGPORT, PGDATABASE, PGUSER,
    -- PGPASSWORD) says.  `pool`: connections per process (1 to 64).
    -- `append_trains`: transactions of channel appends in flight at once
    -- (at most `pool`); appends of every channel that arrive meanwhile are
    -- committed together by the next (docs/storage-pg.md).  `trains_on_loop`:
    -- send them from the event loop with libpq's non-blocking API (false:
    -- through a pool thread, as every other operation).
    storage_pg = {
        -- conninfo = "host=/run/postgresql dbname=cpsd user=cpsd",
        pool = 4,
        append_trains = 1,
        trains_on_loop = true,
    },

    -- In a cluster whose storage nodes share one backend ("pg"): when a
    -- storage node is down, another one serves its channels, under leases
    -- kept in that backend (docs/protocol/cluster.md §11).
    storage_failover = false,

    -- Extra directories searched for .so plugins and Lua scripts, before the
    -- built-in ones: <binary's dir>/plugins, then the install's
    -- lib/cpsd/plugins and share/cpsd/lua found from the binary's place
    -- (the source tree's lua/ for a binary in its build tree).
    plugin_dirs = {},
    lua_dirs = {},

    -- The nodes this process runs (one per role), and how many nodes of
    -- each role the topology has (placement hashes over these counts).
    -- A role node loads the plugin of the same name.
    nodes = { "front:0", "core:0", "storage:0" },
    topology = { front = 1, core = 1, storage = 1 },

    -- Feature plugins (.so, by name) and Lua scripts (by file name) loaded
    -- after the role plugins.  A name prefixed with "?" is optional: if it
    -- fails to load the server logs it and carries on.
    --
    -- A file can edit these lists instead of restating them; the edits are
    -- applied after the file's other keys are merged over this default:
    --   plugins_add = { "example_rpc", "?myplugin" },  plugins_remove = { "blob" },
    --   lua_scripts_add = { "examples/example_rpc.lua" },  lua_scripts_remove = { ... },
    -- Names compare without their "?".  Adding a name already in the list
    -- changes nothing (an add means "make sure it is loaded"); removing a
    -- name that is not in the list is an error, as it is most likely a typo.
    --
    -- The examples (plugins example_rpc, example_note, example_http; scripts
    -- examples/example_rpc.lua, examples/example_note.lua) are built and
    -- installed but not loaded: add them as above to try them.
    plugins = { "storage-fs", "rpc-channel", "rpc-pin", "blob", "web", "auth" },
    lua_scripts = {},

    limits = {
        -- Bytes in one websocket message (8 MiB).  The Node servers took
        -- 100 MiB (the `ws` default), but a message must also fit the
        -- receivers' send queues: anything over max_send_queue was stored
        -- and could never be loaded again, so no working client ever sent
        -- more.  CryptPad's largest messages (checkpoints of big pads) are
        -- a few MB.  At most max_send_queue (larger values are clamped with
        -- a warning); a MSG whose content, escaped as in a history line, is
        -- over 7/8 of max_send_queue is refused (netflux.md §12).
        max_frame = 8388608,
        max_send_queue = 8388608,   -- bytes queued for one client before it is dropped
        router_queue = 100000,      -- messages waiting for delivery between nodes
        pending_queries = 100000,   -- inter-node queries awaiting a reply
        query_timeout_ms = 30000,   -- default inter-node query timeout
        rpc_timeout_ms = 30000,     -- an RPC handler must answer within this
        work_queue = 10000,         -- jobs waiting for the thread pool
        max_sessions = 100000,      -- client connections
        link_queue = 67108864,      -- bytes waiting for one link to another node
        http_body_total = 67108864, -- bytes held for HTTP request bodies, all together
    },

    -- Set by `cpsd --topology FILE --role R --index N` for a node of a
    -- cluster: { key = <shared node key, base64>, self = "core:1",
    -- peers = { ["front:0"] = "host:port", ... } }.  Empty: one process.
    cluster = {},

    -- GET /metrics answers only peers whose address is listed ("*": any);
    -- others get 404.  Behind a proxy on the same machine every request
    -- comes from loopback: keep the proxy from forwarding /metrics.
    metrics = {
        from = { "127.0.0.1", "::1" },
    },

    log = {
        level = "info",             -- error | warn | info | debug (--log-level overrides)
        format = "text",            -- "text": time level [who] message; "json": one object a line
        -- file = "/var/log/cpsd/cpsd.log",  -- append here instead of stderr; SIGHUP reopens it
    },

    lua = {
        max_instructions = 10000000, -- per handler call; beyond, it fails with ETIMEDOUT
        max_memory = 268435456,      -- bytes for the whole Lua state
    },

    -- Settings several plugins share, each read through the API
    -- (api->config_get("instance.<key>")): what the server enforces and what
    -- /api/config tells the web app come from the same value.  No plugin
    -- reads another plugin's section.
    instance = {
        -- main_origin: the origin users open (default http://<listen.host>:
        -- <listen.port>).  sandbox_origin: the origin of the app iframes
        -- (default: the same host on listen.extra_ports[1]; both ports serve
        -- the same files and headers).  Behind a proxy, give the public ones.
        -- main_origin = "http://127.0.0.1:3000",
        -- sandbox_origin = "http://127.0.0.1:3001",
        enable_embedding = false,     -- true: Access-Control-Allow-Origin *
        -- permitted_embedders = nil, -- Access-Control-Allow-Origin; default the sandbox origin
        max_upload_size = 20971520,   -- bytes in one uploaded file (blob)
        -- premium_upload_size = nil, -- for keys with a plan; at least max_upload_size
        default_storage_limit = 52428800, -- bytes a key may pin without a plan (rpc-pin, blob)
        restrict_registration = false,    -- refuse new accounts (auth)
    },

    -- Administration (docs/protocol/admin.md).  keys: the administrators'
    -- CryptPad public signing keys, each "[name@host/<edPublic>]" (as the
    -- web app's settings page shows it) or the bare 44-character edPublic;
    -- admins added by decrees (the admin panel, `cpsd admin admin add`)
    -- come on top.  With no admin at all, a one-time link to create the
    -- first admin account is printed at start.  autoload: load every
    -- admin/NAME.lua found in lua_dirs and the built-in Lua directory (the
    -- admin commands; a file in lua_dirs/admin/ adds or replaces one).
    admin = {
        keys = {},
        autoload = true,
    },

    -- Role sections: read by the plugin of that name.
    front = {
        ping_after_ms = 15000,      -- ping a client silent for this long
        drop_after_ms = 60000,      -- drop a client silent for this long
        check_every_ms = 5000,
        -- Channels one connection may have joined (or be joining) at once;
        -- a JOIN beyond is answered [seq,"ERROR","EBUSY",channel] and opens
        -- nothing (LEAVE frees room).  The web app joins one channel per
        -- open pad, shared folder, mailbox and team, plus a few ephemeral
        -- ones: a large drive reaches some hundreds, so 10000 is never hit
        -- by a real client, but bounds what one socket can make the storage
        -- nodes open and index.
        max_channels_per_session = 10000,
        -- History and RPC requests (messages to the history keeper) one
        -- connection may have awaiting their answer; beyond, a request is
        -- answered [seq,"ERROR","EBUSY",null] and not forwarded.  The web app's
        -- start-up pipelines one history request per shared folder and team
        -- plus a few RPCs, so a drive with some hundreds of shared folders
        -- stays under 1024; a pending request costs the server a few
        -- hundred bytes and a place in a channel's queue.
        max_requests_in_flight = 1024,
        -- Queries of every kind (JOINs, MSGs, history, RPC) one connection
        -- may have unanswered: its share of the queues every user shares
        -- (limits.work_queue, limits.pending_queries, a channel's queue).
        -- At this many the connection is not read until half are answered,
        -- so a flood waits in its own socket; a client is slowed, never
        -- refused (docs/protocol/netflux.md §12).
        max_work_in_flight = 256,
        -- Values (array elements and object members) in one client frame,
        -- and in the content of one history/RPC request; a frame beyond
        -- the first is closed (1003), a request beyond the second answered
        -- EINVAL, before either is parsed into a tree (netflux.md §12).
        -- Netflux frames hold at most 5; a PIN of a large drive a few
        -- thousand ids.
        max_frame_values = 64,
        max_request_values = 100000,
    },
    core = {
        -- max_sessions = 100000,   -- signed-RPC cookie sessions, one per key
        --                          -- whose signature verified (docs/protocol/rpc.md §3.4)
        -- max_sessions_per_connection = 256,  -- of those, opened by one connection and
        --                          -- still open: a drive's own key and one per team
    },
    storage = {
        -- max_queue_per_channel = 10000,  -- operations waiting on one channel
    },

    -- Sections of the feature plugins, all keys optional (defaults shown):
    -- ["storage-fs"] = { fsync = false },     -- fsync every append
    -- (their shared limits are in `instance` above)
    -- blob = { max_queue_per_key = 16, max_sessions = 100000,
    --          cache_control = "public, max-age=31536000" },
    -- auth = { challenge_ttl_ms = 300000, session_hours = 168,
    --         max_challenge_bytes = 102528,     -- a stored round-1 challenge
    --         max_challenges = 10000,           -- outstanding challenges, in total (429 beyond)
    --         max_challenges_per_key = 8,       -- outstanding challenges of one key (429 beyond)
    --         totp_failures_per_minute = 5 },   -- wrong codes per key, then INVALID_OTP for the minute
    -- ["rpc-pin"] = { max_cached_keys = 10000, max_queue_per_key = 1000,
    --                 limits = { [edPublic] = { limit = bytes, plan = "", note = "" } } },

    -- The web side (plugin `web`, docs/protocol/http.md): the CryptPad web app's two
    -- origins, its static files, and /api/config, /api/broadcast,
    -- /api/instance, /extensions.js, /api/logo.  Every key is optional.
    web = {
        -- The origins, embedding and the limits it publishes are in
        -- `instance`.

        -- A CryptPad checkout (with www/components installed) whose
        -- customize/www, www, src/common, customize and customize.dist trees
        -- are served.  nil: `/` shows how to set it, the API still answers.
        -- cryptpad_root = "/srv/cryptpad",

        -- Asset URLs carry ?ver=<version>-<fresh_key>: version defaults to
        -- the checkout's package.json, fresh_key to the start time (a restart
        -- flushes browser caches).  dev_mode adds the time of each request.
        -- version = "2026.2.2", fresh_key = "1", dev_mode = false,

        -- /api/config (docs/protocol/http.md §5.1); adminKeys come from
        -- admin.keys and decrees, moderatorKeys from ADD_MODERATOR
        -- (docs/protocol/admin.md).  Each value below is the starting value
        -- of the admin decree that changes it at run time.
        restrict_sso_registration = false,
        inactive_time = 90,           -- days before inactive data is archived
        apps_to_disable = {},
        list_my_instance = false,
        remove_donate_button = false,
        -- admin_email, support_mailbox, support_mailbox_key, accounts_api,
        -- file_host, websocket_url (public websocket URL), enforce_mfa: strings
        -- (a boolean for enforce_mfa), left out of /api/config when unset.
        -- onlyoffice_versions: the installed OnlyOffice builds ({ "v8" }, or
        -- false); default: the v* directories of www/common/onlyoffice/dist.

        -- /api/instance (§5.3): a string, or { default = "...", fr = "..." }
        -- instance_name = "My CryptPad", instance_description = "...",
        -- instance_jurisdiction = "...", instance_notice = "...",
        -- accent_color = "#0087FF",

        -- /api/broadcast (§5.2); curvePublic is a key pair made at start-up
        last_broadcast_hash = "",
        -- survey_url = "https://...", maintenance = { start = ms, ["end"] = ms },

        -- /extensions.js (§5.4): client plugin names
        extensions = {},
        styles = {},
    },
}
