/*
** main.c - the cpsd command line, startup and graceful shutdown.
** Startup: configuration, loop, router, Lua, role plugins, feature plugins,
** scripts, listener.  Shutdown (SIGTERM/SIGINT): close sessions, let them
** drain briefly, unload plugins, then tear down lws and the loop (docs/libraries.md G6).
** SIGHUP reopens the log file and reloads log.level, naming other changed
** settings as needing a restart (docs/operator-guide.md §7).
*/
#include <limits.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"

static const char usage[] =
    "usage: cpsd [--config FILE]        run the server (no file: embedded default,\n"
    "                                   127.0.0.1:3000, data under ./data)\n"
    "       cpsd --check-config FILE    check a configuration file and explain every error\n"
    "       cpsd --print-config [FILE]  print the effective configuration as JSON\n"
    "       cpsd --topology FILE [--list]               run this machine's nodes (or list every node and its ports)\n"
    "       cpsd --topology FILE --role ROLE --index N  run one node of a cluster\n"
    "       cpsd keygen FILE            write a new cluster key file (mode 0600)\n"
    "       cpsd migrate --from NAME[:ARG] --to NAME[:ARG]\n"
    "                                   copy a store between storage backends\n"
    "       cpsd admin [--config FILE] [--json] COMMAND [ARGS...]\n"
    "                                   run an admin command on the running server\n"
    "                                   (`cpsd admin --help`, `cpsd admin help`)\n"
    "       --log-level LEVEL           with any of the above: error, warn, info or debug\n"
    "                                   (overrides log.level)\n"
    "       cpsd --help | --version\n";

static struct {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;
    bool stopping;
    const char *cli_level;    /* --log-level (or CPSD_LOG_LEVEL): wins over log.level */
} M;   /* the process singleton */

static void closed_noop(uv_handle_t *h) { (void)h; }

/* Step 3 of the shutdown: everything that keeps the loop alive goes away. */
static void finish(uv_timer_t *t)
{
    (void)t;
    uv_close((uv_handle_t *)&M.drain, closed_noop);
    cps_control_stop();      /* no new admin commands; running ones are cancelled below */
    cps_link_stop();
    cps_plugins_fini();      /* plugins stop their timers, drop registrations */
    cps_server_forget(NULL); /* CLOSED during destroy must not reach plugins */
    cps_timers_forget(NULL);
    cps_watches_forget(NULL);
    cps_rpc_shutdown();
    cps_router_shutdown();
    cps_server_stop();       /* first lws_context_destroy, in the loop */
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (M.stopping) return;
    M.stopping = true;
    cps_log(NULL, CPS_LOG_INFO, "%s: shutting down (%zu sessions)",
            signum == SIGTERM ? "SIGTERM" : "SIGINT", cps_server_session_count());
    uv_close((uv_handle_t *)&M.sigterm, closed_noop);
    uv_close((uv_handle_t *)&M.sigint, closed_noop);
    uv_close((uv_handle_t *)&M.sighup, closed_noop);
    cps_server_close_sessions(1001, "server shutting down");
    uv_timer_init(&M.loop, &M.drain);
    uv_timer_start(&M.drain, finish, cps_server_session_count() ? 300 : 0, 0);
}

/* SIGHUP, after the log: read the configuration file again.  log.level is
** applied now (unless --log-level gave one); every other setting is read
** once at start, so a changed section is named as needing a restart rather
** than silently ignored.  A file that no longer loads changes nothing.  A
** cluster node's configuration is the file plus its topology (not re-read
** here): it reloads nothing and says so. */
static void reload_config(void)
{
    if (!cps_cfg) return;
    if (json_object_size(json_object_get(cps_cfg->root, "cluster"))) {
        cps_log(NULL, CPS_LOG_INFO, "SIGHUP: a cluster node reloads no settings (restart it to apply changes)");
        return;
    }
    if (!cps_cfg->file) return;   /* the embedded default: nothing to re-read */
    char *errors = NULL;
    cps_config *fresh = cps_config_load(cps_cfg->file, &errors);
    if (!fresh) {
        char first[256];
        snprintf(first, sizeof first, "%s", errors ? errors : "unknown error");
        first[strcspn(first, "\n")] = 0;
        cps_log(NULL, CPS_LOG_WARN, "SIGHUP: %s does not load (%s): nothing reloaded", cps_cfg->file, first);
        free(errors);
        return;
    }
    const char *level = cps_config_str("log.level", "info");
    json_t *nl = cps_config_path(fresh->root, "log.level");
    if (!M.cli_level && json_is_string(nl) && strcmp(json_string_value(nl), level)) {
        cps_log_set_level(cps_log_level_from_name(json_string_value(nl)));
        json_object_set(json_object_get(cps_cfg->root, "log"), "level", nl);
        cps_log(NULL, CPS_LOG_WARN, "SIGHUP: log.level is now %s", json_string_value(nl));
    }
    /* listen.port 0 was replaced by the port taken (server.c): not a change */
    json_t *fl = json_object_get(fresh->root, "listen"), *ol = json_object_get(cps_cfg->root, "listen");
    if (json_integer_value(json_object_get(fl, "port")) == 0 && json_object_get(ol, "port"))
        json_object_set(fl, "port", json_object_get(ol, "port"));
    char changed[512] = "";
    size_t used = 0;
    const char *k;
    json_t *v;
    json_object_foreach(fresh->root, k, v) {
        json_t *old = json_object_get(cps_cfg->root, k);
        if (old && json_equal(old, v)) continue;
        if (!strcmp(k, "log") && json_equal(json_object_get(old, "file"), json_object_get(v, "file")) &&
            json_equal(json_object_get(old, "format"), json_object_get(v, "format")))
            continue;                              /* only the level: applied above */
        int w = snprintf(changed + used, sizeof changed - used, "%s%s", used ? ", " : "", k);
        if (w > 0 && (size_t)w < sizeof changed - used) used += (size_t)w;
    }
    json_object_foreach(cps_cfg->root, k, v) {
        if (json_object_get(fresh->root, k)) continue;
        int w = snprintf(changed + used, sizeof changed - used, "%s%s", used ? ", " : "", k);
        if (w > 0 && (size_t)w < sizeof changed - used) used += (size_t)w;
    }
    if (used) cps_log(NULL, CPS_LOG_WARN, "SIGHUP: changed in %s, applied only at the next start: %s",
                      cps_cfg->file, changed);
    cps_config_free(fresh);
}

/* SIGHUP: logrotate has renamed the log file; write to a fresh one at the
** configured path (without a log file there is nothing to reopen, but the
** server must not die of the default action either), then reload what can
** be reloaded, as daemons do. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    char err[512];
    if (cps_log_reopen(err, sizeof err)) {
        cps_log(NULL, CPS_LOG_ERROR, "SIGHUP: %s (still writing to the old file)", err);
    } else {
        cps_log(NULL, CPS_LOG_INFO, "SIGHUP: log reopened (%s)", cps_log_path() ? cps_log_path() : "stderr");
    }
    reload_config();
}

/* log.format, log.file and log.level from the configuration; --log-level
** (cli_level, already checked) wins over log.level. */
static int setup_log(const char *cli_level)
{
    const char *level = cli_level ? cli_level : cps_config_str("log.level", "info");
    cps_log_set_level(cps_log_level_from_name(level));
    cps_log_set_format(cps_config_str("log.format", "text"));
    const char *file = cps_config_str("log.file", NULL);
    char err[512];
    if (file && cps_log_open(file, err, sizeof err)) {
        fprintf(stderr, "cpsd: %s\n", err);
        return -1;
    }
    return 0;
}

#ifndef CPS_GIT_REVISION
#define CPS_GIT_REVISION "unknown"
#endif

/* What a bug report needs (docs/operator-guide.md, "Version"): the release,
** the revision it was built from (configure time) and the plugin ABI. */
static int print_version(void)
{
    printf("cpsd %s\nrevision %s\nplugin ABI %d.%d\n", CPS_VERSION, CPS_GIT_REVISION,
           CPS_ABI_MAJOR, CPS_ABI_MINOR);
    return 0;
}

/* `cpsd keygen FILE`: the key a topology's key_file names (keyfile.c). */
static int keygen(int argc, char **argv)
{
    if (argc != 3) { fprintf(stderr, "usage: cpsd keygen FILE\n"); return 2; }
    char err[PATH_MAX + 128];
    if (cps_keyfile_create(argv[2], err, sizeof err)) {
        fprintf(stderr, "cpsd: keygen: %s\n", err);
        return 1;
    }
    printf("wrote a new cluster key to %s (mode 0600); give every node the same file\n", argv[2]);
    return 0;
}

static int load_all(void)
{
    json_t *root = cps_cfg->root, *v;
    size_t i;
    const char *k;
    json_object_foreach(json_object_get(root, "topology"), k, v)
        cps_router_set_role_count(k, (int)json_integer_value(v));
    /* The backend first: storage_backend = "pg" alone loads storage-pg, and
    ** an unknown name or an unreachable database stops the start here. */
    if (cps_storage_load_configured()) return -1;
    json_array_foreach(json_object_get(root, "nodes"), i, v) {
        const char *id = json_string_value(v);
        char role[32];
        snprintf(role, sizeof role, "%.*s", (int)strcspn(id, ":"), id);
        int idx = atoi(strchr(id, ':') + 1);
        if (idx >= cps_router_role_count(role)) {
            cps_log(NULL, CPS_LOG_ERROR, "node %s: topology.%s has %d node(s)", id, role,
                    cps_router_role_count(role));
            return -1;
        }
        if (cps_router_add_node(id, NULL)) {
            cps_log(NULL, CPS_LOG_ERROR, "node %s: declared twice, or too many nodes", id);
            return -1;
        }
        /* A role node is served by the plugin named after the role. */
        if (cps_plugin_load(role, id, true)) return -1;
    }
    json_array_foreach(json_object_get(root, "plugins"), i, v) {
        const char *name = json_string_value(v);
        bool optional = name[0] == '?';
        if (cps_plugin_load(name + optional, NULL, !optional)) return -1;
    }
    json_array_foreach(json_object_get(root, "lua_scripts"), i, v) {
        const char *name = json_string_value(v);
        bool optional = name[0] == '?';
        if (cps_lua_load(name + optional) && !optional) return -1;
    }
    if (cps_storage_check_configured()) return -1;
    return cps_lua_load_admin();
}

/* Streamed downloads allocate each chunk read on a pool thread and free it
** on the loop.  glibc's default trim threshold (128 KiB) then hands those
** pages back to the kernel and faults them in again at every chunk: 20
** clients reading 100 MB cost 400,000 page faults and about half again the
** CPU.  Keeping up to 8 MiB of free heap per arena avoids that. */
static void tune_allocator(void)
{
#if defined(__GLIBC__) && defined(M_TRIM_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
#endif
}

int main(int argc, char **argv)
{
    tune_allocator();
    const char *config = NULL, *topology = NULL, *role = NULL, *log_level = NULL;
    int mode = 0;   /* 0 run, 1 check, 2 print */
    int index = 0;
    bool list = false;
    if (argc > 1 && !strcmp(argv[1], "keygen")) return keygen(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "migrate")) return cps_migrate_main(argc, argv);
    if (argc > 1 && !strcmp(argv[1], "admin")) return cps_admin_main(argc, argv);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(usage, stdout); return 0; }
        if (!strcmp(argv[i], "--version")) return print_version();
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "--check-config")) && i + 1 < argc) {
            if (!strcmp(argv[i], "--check-config")) mode = 1;
            config = argv[++i];
            continue;
        }
        if (!strcmp(argv[i], "--topology") && i + 1 < argc) { topology = argv[++i]; continue; }
        if (!strcmp(argv[i], "--role") && i + 1 < argc) { role = argv[++i]; continue; }
        if (!strcmp(argv[i], "--index") && i + 1 < argc) { index = atoi(argv[++i]); continue; }
        if (!strcmp(argv[i], "--list")) { list = true; continue; }
        if (!strcmp(argv[i], "--log-level") && i + 1 < argc) {
            log_level = argv[++i];
            if (cps_log_level_from_name(log_level) < 0) {
                fprintf(stderr, "cpsd: --log-level: expected error, warn, info or debug, got '%s'\n", log_level);
                return 2;
            }
            continue;
        }
        if (!strcmp(argv[i], "--print-config")) {
            mode = 2;
            if (i + 1 < argc && argv[i + 1][0] != '-') config = argv[++i];
            continue;
        }
        fprintf(stderr, "cpsd: unknown or incomplete argument '%s'\n%s", argv[i], usage);
        return 2;
    }

    char *errors = NULL;
    if (log_level) {
        /* The supervisor's own lines, and its nodes: they inherit the
        ** environment, not the command line (docs/operator-guide.md §7). */
        cps_log_set_level(cps_log_level_from_name(log_level));
        setenv("CPSD_LOG_LEVEL", log_level, 1);
    } else if (getenv("CPSD_LOG_LEVEL") && cps_log_level_from_name(getenv("CPSD_LOG_LEVEL")) >= 0) {
        log_level = getenv("CPSD_LOG_LEVEL");
    }
    if (topology && !role && !list) {
        /* Not killed by a SIGHUP before its handler is installed: the
        ** supervisor passes SIGHUP on to its nodes (host/topology.c), as
        ** `systemctl reload` signals only the main process. */
        signal(SIGHUP, SIG_IGN);
    }
    if (topology) {
        /* --list, the supervisor, or this process becomes one node */
        int trc = cps_topology_main(topology, role, index, list, config);
        if (trc >= 0) return trc;
    } else if (role) {
        fprintf(stderr, "cpsd: --role needs --topology FILE\n");
        return 2;
    } else {
        cps_cfg = cps_config_load(config, &errors);
    }
    if (!cps_cfg) {
        fprintf(stderr, "cpsd: configuration errors:\n%s", errors ? errors : "(unknown)\n");
        free(errors);
        return 1;
    }
    if (mode == 1) {
        /* The loaders would stop at the first missing file: name them all. */
        if (cps_config_check_files(cps_cfg, &errors)) {
            fprintf(stderr, "cpsd: configuration errors:\n%s", errors);
            free(errors);
            cps_config_free(cps_cfg);
            return 1;
        }
        printf("%s: OK\n", config);
        cps_config_free(cps_cfg);
        return 0;
    }
    if (mode == 2) {
        json_dumpf(cps_cfg->root, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
        putchar('\n');
        cps_config_free(cps_cfg);
        return 0;
    }
    int rc = 1;
    M.cli_level = log_level;
    if (setup_log(log_level)) {
        cps_config_free(cps_cfg);
        return 1;
    }
    uv_loop_init(&M.loop);
    /* SIGHUP's default action kills: catch it before anything is started. */
    uv_signal_init(&M.loop, &M.sighup);
    uv_signal_start(&M.sighup, on_sighup, SIGHUP);
    cps_timers_init(&M.loop);
    cps_router_init(&M.loop);
    if (cps_lua_init()) goto out;
    /* The listener first: with the context up, plugins may register the
    ** session handler; upgrades are refused until one has. */
    if (cps_server_start(&M.loop)) goto out;
    /* Before plugins load: its file is created under a umask (control.c),
    ** which must not meet a plugin's file creation on another thread. */
    if (cps_control_start(&M.loop)) goto out;
    if (load_all()) goto out;
    if (cps_link_start()) goto out;
    if (cps_control_register()) goto out;
    uv_signal_init(&M.loop, &M.sigterm);
    uv_signal_init(&M.loop, &M.sigint);
    uv_signal_start(&M.sigterm, on_signal, SIGTERM);
    uv_signal_start(&M.sigint, on_signal, SIGINT);
    cps_log(NULL, CPS_LOG_INFO, "cpsd %s ready (%s; admin socket %s)", CPS_VERSION,
            cps_cfg->file ? cps_cfg->file : "embedded default configuration", cps_control_path());
    uv_run(&M.loop, UV_RUN_DEFAULT);
    rc = 0;
out:
    if (!M.stopping) {       /* startup failed: unwind what was set up */
        uv_close((uv_handle_t *)&M.sighup, closed_noop);
        cps_control_stop();
        cps_plugins_fini();
        cps_server_forget(NULL);
        cps_timers_forget(NULL);
        cps_watches_forget(NULL);
        cps_rpc_shutdown();
        cps_router_shutdown();
        cps_server_stop();
        uv_run(&M.loop, UV_RUN_DEFAULT);
    }
    cps_server_free();       /* second lws_context_destroy (G6) */
    cps_http_shutdown();
    cps_lua_close();
    cps_instance_free();
    cps_plugins_close();
    if (uv_loop_close(&M.loop) != 0) {
        cps_log(NULL, CPS_LOG_WARN, "loop closed with handles still open");
    }
    cps_metrics_free();
    cps_errors_reset();
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
    cps_log_close();
    return rc;
}
