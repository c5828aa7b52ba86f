/*
** topology.c - a cluster described in one file: the node list, each node's
** configuration derived from it, and the supervisor that starts the nodes
** of this machine and restarts a node that dies (with back-off).
**
** The file is Lua returning { key = <base64 32 bytes> or key_file = "FILE",
** front = {{host=, port=, extra_ports=}, ...}, core = {{host=, port=}, ...},
** storage = {...}, config = { shared settings } } (docs/operator-guide.md,
** "The cluster").  key_file is relative to the topology file's directory;
** the supervisor creates it if missing.  Only fronts take client ports
** beyond their own (the sandbox origin): nodes on one machine must not share
** the default extra port, so listen.extra_ports comes from the node alone.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <limits.h>
#include <sodium.h>
#include "host.h"

static const char *roles[] = { "front", "core", "storage" };

typedef struct child {
    char id[32];
    char role[16];
    int index;
    uv_process_t proc;
    uv_timer_t restart;
    bool running;
    unsigned backoff_ms;
    uint64_t started;
} child;

static struct {
    uv_loop_t loop;
    uv_signal_t sigterm, sigint, sighup;
    child kids[64];
    int nkids;
    bool stopping;
    char exe[PATH_MAX];
    const char *file;
    const char *config_file;
} T;   /* the supervisor singleton */

static bool is_local(const char *host)
{
    return !strcmp(host, "127.0.0.1") || !strcmp(host, "localhost") || !strcmp(host, "::1") ||
           !strncmp(host, "127.", 4);
}

/* The extra client ports node `self` of `role` binds: a front's own, none
** for the other roles (they serve no web app origin). */
static json_t *node_extra_ports(json_t *self, const char *role)
{
    json_t *p = json_object_get(self, "extra_ports");
    return !strcmp(role, "front") && json_is_array(p) ? json_copy(p) : json_array();
}

/* Every node's ports are checked together so that a clash is named before
** six processes start and one of them dies on bind. */
static int check_ports(json_t *topo, char *err, size_t errlen)
{
    json_t *seen = json_object();
    int rc = 0;
    for (size_t r = 0; r < 3 && !rc; r++) {
        size_t i;
        json_t *n;
        json_array_foreach(json_object_get(topo, roles[r]), i, n) {
            const char *host = json_string_value(json_object_get(n, "host")) ?: "127.0.0.1";
            char id[32];
            snprintf(id, sizeof id, "%s:%zu", roles[r], i);
            if (r > 0 && json_object_get(n, "extra_ports")) {
                snprintf(err, errlen, "%s: extra_ports: only fronts take client ports", id);
                rc = -1;
                break;
            }
            json_t *ports = node_extra_ports(n, roles[r]);
            json_t *port = json_object_get(n, "port");
            json_array_insert_new(ports, 0, port ? json_incref(port) : json_integer(0));
            size_t j;
            json_t *p;
            json_array_foreach(ports, j, p) {
                char addr[96];
                snprintf(addr, sizeof addr, "%s:%lld", host, (long long)json_integer_value(p));
                const char *other = json_string_value(json_object_get(seen, addr));
                if (!json_is_integer(p) || json_integer_value(p) <= 0 || json_integer_value(p) > 65535) {
                    snprintf(err, errlen, "%s: ports must be numbers from 1 to 65535", id);
                    rc = -1;
                } else if (other) {
                    snprintf(err, errlen, "%s and %s both bind %s", other, id, addr);
                    rc = -1;
                }
                if (rc) break;
                json_object_set_new(seen, addr, json_string(id));
            }
            json_decref(ports);
            if (rc) break;
        }
    }
    json_decref(seen);
    return rc;
}

/* `key_file` (relative to the topology file's directory) becomes `key`.
** The supervisor (create) makes a missing file, so that the shipped example
** starts as it is; a single node needs the file every machine shares. */
static int resolve_key(json_t *topo, const char *file, bool create, char *err, size_t errlen)
{
    json_t *kf = json_object_get(topo, "key_file");
    if (!kf) {
        if (cps_key_valid(json_string_value(json_object_get(topo, "key")))) return 0;
        snprintf(err, errlen, "key must be 32 bytes in base64, or give key_file = \"FILE\"");
        return -1;
    }
    if (json_object_get(topo, "key") || !json_is_string(kf) || !json_string_length(kf)) {
        snprintf(err, errlen, "key_file must be a file name, and key left out");
        return -1;
    }
    char path[PATH_MAX], key[CPS_KEY_B64_MAX], why[PATH_MAX + 128];
    const char *name = json_string_value(kf), *slash = strrchr(file, '/');
    if (name[0] == '/' || !slash) snprintf(path, sizeof path, "%s", name);
    else snprintf(path, sizeof path, "%.*s/%s", (int)(slash - file), file, name);
    if (create && access(path, F_OK) != 0) {
        if (cps_keyfile_create(path, why, sizeof why)) {
            snprintf(err, errlen, "key_file: cannot create %.*s", (int)(errlen - 40), why);
            return -1;
        }
        cps_log("supervisor", CPS_LOG_INFO, "created the cluster key file %s (mode 0600): "
                "nodes on other machines need a copy of it", path);
    }
    if (cps_keyfile_read(path, key, sizeof key, why, sizeof why)) {
        snprintf(err, errlen, "key_file: %.*s%s", (int)(errlen - 80), why,
                 create ? "" : " (the supervisor creates it; or run `cpsd keygen FILE`)");
        return -1;
    }
    json_object_set_new(topo, "key", json_string(key));
    sodium_memzero(key, sizeof key);
    return 0;
}

/* The overlay that makes the default configuration into node role:index. */
static json_t *node_overlay(json_t *topo, const char *role, int index, char *err, size_t errlen)
{
    json_t *self = json_array_get(json_object_get(topo, role), (size_t)index);
    if (!json_is_object(self)) {
        snprintf(err, errlen, "the topology has no node %s:%d", role, index);
        return NULL;
    }
    json_t *shared = json_object_get(topo, "config");
    json_t *o = json_is_object(shared) ? json_deep_copy(shared) : json_object();
    char id[32];
    snprintf(id, sizeof id, "%s:%d", role, index);
    json_t *counts = json_object(), *peers = json_object();
    for (size_t r = 0; r < 3; r++) {
        json_t *list = json_object_get(topo, roles[r]);
        json_object_set_new(counts, roles[r], json_integer((json_int_t)json_array_size(list)));
        size_t i;
        json_t *n;
        json_array_foreach(list, i, n) {
            char nid[32], addr[96];
            snprintf(nid, sizeof nid, "%s:%zu", roles[r], i);
            snprintf(addr, sizeof addr, "%s:%lld", json_string_value(json_object_get(n, "host")) ?: "127.0.0.1",
                     (long long)json_integer_value(json_object_get(n, "port")));
            json_object_set_new(peers, nid, json_string(addr));
        }
    }
    json_object_set_new(o, "nodes", json_pack("[s]", id));
    json_object_set_new(o, "topology", counts);
    json_t *listen = json_object_get(o, "listen");
    if (!json_is_object(listen)) { listen = json_object(); json_object_set_new(o, "listen", listen); }
    json_t *host = json_object_get(self, "host");
    json_object_set_new(listen, "host", host ? json_incref(host) : json_string("127.0.0.1"));
    json_object_set(listen, "port", json_object_get(self, "port"));
    json_object_set_new(listen, "extra_ports", node_extra_ports(self, role));
    /* each node stores under its own directory (a storage node's shard) */
    const char *base = json_string_value(json_object_get(o, "data_dir")) ?: "./data";
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/%s-%d", base, role, index);
    json_object_set_new(o, "data_dir", json_string(dir));
    json_object_set_new(o, "cluster", json_pack("{s O s s s o}", "key", json_object_get(topo, "key") ?: json_string(""),
                                                 "self", id, "peers", peers));
    return o;
}

/* ---- the supervisor ---- */

static void start_child(child *c);

static void restart_fire(uv_timer_t *t)
{
    child *c = t->data;
    if (!T.stopping) start_child(c);
}

static void proc_closed(uv_handle_t *h) { (void)h; }

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
    child *c = p->data;
    c->running = false;
    uv_close((uv_handle_t *)p, proc_closed);
    if (T.stopping) return;
    /* a node that ran a while restarts at once, one that keeps dying waits longer */
    uint64_t ran = uv_now(&T.loop) - c->started;
    c->backoff_ms = ran > 30000 ? 500 : (c->backoff_ms ? (c->backoff_ms * 2 > 30000 ? 30000 : c->backoff_ms * 2) : 500);
    cps_log("supervisor", CPS_LOG_WARN, "node %s exited (status %lld, signal %d); restarting in %u ms",
            c->id, (long long)status, sig, c->backoff_ms);
    uv_timer_start(&c->restart, restart_fire, c->backoff_ms, 0);
}

static void start_child(child *c)
{
    char idx[16];
    snprintf(idx, sizeof idx, "%d", c->index);
    char *args[12];
    int n = 0;
    args[n++] = T.exe;
    args[n++] = "--topology";
    args[n++] = (char *)T.file;
    args[n++] = "--role";
    args[n++] = c->role;
    args[n++] = "--index";
    args[n++] = idx;
    if (T.config_file) { args[n++] = "--config"; args[n++] = (char *)T.config_file; }
    args[n] = NULL;
    uv_process_options_t opt;
    memset(&opt, 0, sizeof opt);
    uv_stdio_container_t io[3] = { { .flags = UV_IGNORE }, { .flags = UV_INHERIT_FD, .data.fd = 1 },
                                   { .flags = UV_INHERIT_FD, .data.fd = 2 } };
    opt.file = T.exe;
    opt.args = args;
    opt.exit_cb = child_exit;
    opt.stdio = io;
    opt.stdio_count = 3;
    c->proc.data = c;
    int rc = uv_spawn(&T.loop, &c->proc, &opt);
    if (rc) {
        cps_log("supervisor", CPS_LOG_ERROR, "cannot start node %s: %s", c->id, uv_strerror(rc));
        uv_timer_start(&c->restart, restart_fire, 2000, 0);
        return;
    }
    c->running = true;
    c->started = uv_now(&T.loop);
    cps_log("supervisor", CPS_LOG_INFO, "node %s started, pid %d", c->id, c->proc.pid);
}

static void timer_closed(uv_handle_t *h) { (void)h; }

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (T.stopping) return;
    T.stopping = true;
    cps_log("supervisor", CPS_LOG_INFO, "signal %d: stopping %d node(s)", signum, T.nkids);
    for (int i = 0; i < T.nkids; i++) {
        uv_timer_stop(&T.kids[i].restart);
        uv_close((uv_handle_t *)&T.kids[i].restart, timer_closed);
        if (T.kids[i].running) uv_process_kill(&T.kids[i].proc, SIGTERM);
    }
    uv_close((uv_handle_t *)&T.sigterm, NULL);
    uv_close((uv_handle_t *)&T.sigint, NULL);
    uv_close((uv_handle_t *)&T.sighup, NULL);
}

/* SIGHUP (logrotate, `systemctl reload`): the supervisor's own log is
** reopened and the signal passed to every node, each of which reopens its
** log and says what it reloads (operations.md).  Its default action would
** have killed the supervisor and left the nodes without one. */
static void on_sighup(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
    char err[512];
    if (cps_log_reopen(err, sizeof err))
        cps_log("supervisor", CPS_LOG_ERROR, "SIGHUP: %s (still writing to the old file)", err);
    int n = 0;
    for (int i = 0; i < T.nkids; i++)
        if (T.kids[i].running && uv_process_kill(&T.kids[i].proc, SIGHUP) == 0) n++;
    cps_log("supervisor", CPS_LOG_INFO, "SIGHUP: passed to %d node(s)", n);
}

static int supervise(json_t *topo)
{
    ssize_t n = readlink("/proc/self/exe", T.exe, sizeof T.exe - 1);
    if (n <= 0) return 1;
    T.exe[n] = 0;
    uv_loop_init(&T.loop);
    for (size_t r = 0; r < 3; r++) {
        size_t i;
        json_t *node;
        json_array_foreach(json_object_get(topo, roles[r]), i, node) {
            const char *host = json_string_value(json_object_get(node, "host")) ?: "127.0.0.1";
            if (!is_local(host) && !json_is_true(json_object_get(node, "local"))) continue;
            if (T.nkids == 64) break;
            child *c = &T.kids[T.nkids++];
            snprintf(c->id, sizeof c->id, "%s:%zu", roles[r], i);
            snprintf(c->role, sizeof c->role, "%s", roles[r]);
            c->index = (int)i;
            uv_timer_init(&T.loop, &c->restart);
            c->restart.data = c;
            start_child(c);
        }
    }
    if (!T.nkids) { cps_log("supervisor", CPS_LOG_ERROR, "no node of the topology runs on this machine"); return 1; }
    uv_signal_init(&T.loop, &T.sigterm);
    uv_signal_init(&T.loop, &T.sigint);
    uv_signal_start(&T.sigterm, on_signal, SIGTERM);
    uv_signal_start(&T.sigint, on_signal, SIGINT);
    uv_signal_init(&T.loop, &T.sighup);
    uv_signal_start(&T.sighup, on_sighup, SIGHUP);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    uv_loop_close(&T.loop);
    return 0;
}

/* ---- entry ---- */

/* --list: one line per node, its id and every address it binds (its port
** first, then a front's extra ports). */
static void list_nodes(json_t *topo)
{
    for (size_t r = 0; r < 3; r++) {
        size_t i, j;
        json_t *n, *p;
        json_array_foreach(json_object_get(topo, roles[r]), i, n) {
            const char *host = json_string_value(json_object_get(n, "host")) ?: "127.0.0.1";
            printf("%s:%zu %s:%lld", roles[r], i, host, (long long)json_integer_value(json_object_get(n, "port")));
            json_t *extra = node_extra_ports(n, roles[r]);
            json_array_foreach(extra, j, p) printf(" %s:%lld", host, (long long)json_integer_value(p));
            json_decref(extra);
            putchar('\n');
        }
    }
}

int cps_topology_main(const char *file, const char *role, int index, bool list, const char *config_file)
{
    char *errors = NULL;
    json_t *topo = cps_config_eval_file(file, &errors);
    if (!json_is_object(topo) || !json_is_array(json_object_get(topo, "core"))) {
        fprintf(stderr, "cpsd: topology %s: %s\n", file, errors ? errors : "expected a table with front, core and storage lists");
        free(errors);
        json_decref(topo);
        return 1;
    }
    free(errors);
    char err[PATH_MAX + 256];
    if (check_ports(topo, err, sizeof err) || (!list && resolve_key(topo, file, !role, err, sizeof err))) {
        fprintf(stderr, "cpsd: topology %s: %s\n", file, err);
        json_decref(topo);
        return 1;
    }
    int rc = 0;
    if (list) {
        list_nodes(topo);
    } else if (!role) {
        T.file = file;
        T.config_file = config_file;
        rc = supervise(topo);
    } else {
        json_t *overlay = node_overlay(topo, role, index, err, sizeof err);
        if (!overlay) { fprintf(stderr, "cpsd: %s\n", err); rc = 1; }
        else {
            cps_cfg = cps_config_load_with(config_file, overlay, &errors);
            json_decref(overlay);
            if (!cps_cfg) {
                fprintf(stderr, "cpsd: configuration errors:\n%s", errors ? errors : "(unknown)\n");
                free(errors);
                rc = 1;
            } else {
                rc = -1;   /* the caller runs the node */
            }
        }
    }
    json_decref(topo);
    return rc;
}
