-- /etc/cpsd/cpsd.lua - cpsd's production configuration, as the Debian
-- package installs it (a conffile: an upgrade never overwrites your edits,
-- dpkg asks).  The systemd unit cpsd.service runs
--   /usr/bin/cpsd --config /etc/cpsd/cpsd.lua
-- as the user cpsd.  This table is merged over the embedded default
-- (`cpsd --print-config /etc/cpsd/cpsd.lua` shows the result; the source's
-- config/default.lua and docs/operator-guide.md document every key), so it
-- names only what a production server changes.  After an edit:
--   cpsd --check-config /etc/cpsd/cpsd.lua && systemctl restart cpsd
return {
    -- Loopback only: a TLS-terminating proxy (nginx, Caddy) in front
    -- forwards the main origin to port 3000 and the sandbox origin to 3001,
    -- websocket upgrades included (path /cryptpad_websocket).
    listen = { host = "127.0.0.1", port = 3000, extra_ports = { 3001 } },

    -- Everything the server stores.  The package creates it, owned by the
    -- user cpsd, mode 0750; the unit may write nowhere else.
    data_dir = "/var/lib/cpsd",

    log = { level = "info" },       -- to the journal: journalctl -u cpsd

    -- plugins_add = { "?myplugin" },  lua_scripts_add = { "myscript.lua" },
    -- plugin_dirs = { "/usr/local/lib/cpsd/plugins" },
    -- lua_dirs = { "/usr/local/share/cpsd/lua" },

    instance = {
        -- The public origins, as users' browsers see them through the
        -- proxy.  Set both before opening the server to users: without
        -- them the web app is told http://127.0.0.1:3000 and :3001.
        -- main_origin = "https://cryptpad.example.org",
        -- sandbox_origin = "https://sandbox.cryptpad.example.org",
        max_upload_size = 20971520,       -- bytes in one uploaded file
        default_storage_limit = 52428800, -- bytes a user may pin without a plan
        restrict_registration = false,    -- true: no new accounts
    },

    -- The administrators: "[name@host/<public signing key>]" as the web
    -- app's settings page shows it.  With none, the first start prints a
    -- one-time link that makes the first account created with it an admin.
    admin = {
        keys = {},
    },

    web = {
        -- A CryptPad checkout (with www/components installed) to serve the
        -- web app from; the unit can read it anywhere but under /home.
        -- cryptpad_root = "/srv/cryptpad",
        -- admin_email = "admin@example.org",
        -- instance_name = "My CryptPad",
    },
}
