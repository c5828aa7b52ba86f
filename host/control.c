/*
** control.c - the control socket `cpsd admin` talks to: a unix stream socket
** at <data_dir>/cpsd.sock, mode 0600, answering only its owner (or root).
** It runs admin commands (CPS_RPC_ADMIN in the RPC registry) as the operator;
** a command this process lacks is run by a cluster peer that has it
** (docs/operations.md, "cpsd admin").  Protocol: one JSON object per line.
*/
#ifndef _GNU_SOURCE
#define _GNU_SOURCE            /* struct ucred, SO_PEERCRED */
#endif
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include "host.h"

#define CTL_MAX_CONNS    16         /* clients served at once; more wait in the backlog */
#define CTL_IDLE_MS      30000      /* a client must send its request within this */
#define CTL_LIST_MS      5000       /* a peer must list its commands within this */
#define CTL_MAX_PEERS    64
#define CTL_PEER_CMD     "cpsd.admin"   /* the host's inter-node command */

typedef struct conn conn;

/* One request, from parsing to its answer.  It outlives its connection if
** the client goes away while a command runs: the command's answer then only
** frees it. */
typedef struct request {
    conn *c;                  /* NULL once the client has gone */
    char *cmd;
    json_t *args;             /* array of strings */
    bool help;                /* help/list: gather every node's commands */
    int waiting;              /* peer queries not yet answered */
    json_t *merged;           /* help: name -> summary (or null) */
    json_t *unreachable;      /* peers that did not answer their list */
    int npeers;
    char peers[CTL_MAX_PEERS][32];
    bool has[CTL_MAX_PEERS];  /* run: the peer has the command */
    struct ask { struct request *r; int idx; } asks[CTL_MAX_PEERS];
} request;

struct conn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    int open_handles;         /* freed when both handles have closed */
    bool closing, busy, close_after_write;
    request *req;
    size_t len;
    char buf[CPS_CONTROL_MAX_REQUEST];
    conn *prev, *next;
};

static struct {
    uv_loop_t *loop;
    uv_pipe_t server;
    bool listening, backlogged;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    conn *conns;
    int nconns;
} CTL;   /* the control socket singleton */

static void conn_close(conn *c);
static void process(conn *c);
static void accept_pending(void);

/* ---- the request line ---- */

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64) return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_' || *s == '.' || *s == ':'))
            return false;
    return true;
}

int cps_control_parse(const char *line, size_t len, char **cmd, json_t **args, char *err, size_t n)
{
    *cmd = NULL;
    *args = NULL;
    json_error_t je;
    json_t *req = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    if (!json_is_object(req)) {
        snprintf(err, n, req ? "a request is a JSON object" : "request is not JSON: %s", je.text);
        json_decref(req);
        return CPS_EINVAL;
    }
    const char *k;
    json_t *v;
    json_object_foreach(req, k, v) {
        if (strcmp(k, "cmd") && strcmp(k, "args")) {
            snprintf(err, n, "unknown request key '%.64s' (expected cmd and args)", k);
            json_decref(req);
            return CPS_EINVAL;
        }
    }
    const char *name = json_string_value(json_object_get(req, "cmd"));
    if (!name || !valid_name(name)) {
        snprintf(err, n, "cmd must be a command name (1-64 letters, digits, - _ . :)");
        json_decref(req);
        return CPS_EINVAL;
    }
    json_t *a = json_object_get(req, "args");
    if (a && !json_is_array(a)) {
        snprintf(err, n, "args must be an array of strings");
        json_decref(req);
        return CPS_EINVAL;
    }
    if (json_array_size(a) > CPS_CONTROL_MAX_ARGS) {
        snprintf(err, n, "at most %d arguments", CPS_CONTROL_MAX_ARGS);
        json_decref(req);
        return CPS_EINVAL;
    }
    size_t i;
    json_array_foreach(a, i, v) {
        if (!json_is_string(v)) {
            snprintf(err, n, "args[%zu] is not a string (arguments are the command line's words)", i);
            json_decref(req);
            return CPS_EINVAL;
        }
    }
    *cmd = strdup(name);
    *args = a ? json_incref(a) : json_array();
    json_decref(req);
    if (!*cmd || !*args) {
        free(*cmd);
        json_decref(*args);
        *cmd = NULL;
        *args = NULL;
        snprintf(err, n, "out of memory");
        return CPS_ENOMEM;
    }
    return 0;
}

/* ---- answers ---- */

static void after_write(uv_write_t *w, int status)
{
    conn *c = w->data;
    free(w);
    if (status < 0 || c->close_after_write) { conn_close(c); return; }
    if (!c->closing) process(c);   /* a further request may already be buffered */
}

/* Steals `msg`.  The client reads one line per request. */
static void send_json(conn *c, json_t *msg)
{
    char *text = msg ? json_dumps(msg, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(msg);
    if (!text || c->closing) { free(text); conn_close(c); return; }
    size_t n = strlen(text);
    uv_write_t *w = malloc(sizeof *w + n + 1);
    if (!w) { free(text); conn_close(c); return; }
    char *data = (char *)(w + 1);
    memcpy(data, text, n);
    data[n] = '\n';
    free(text);
    w->data = c;
    uv_buf_t b = uv_buf_init(data, (unsigned)(n + 1));
    if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, after_write) < 0) { free(w); conn_close(c); }
}

static void send_error(conn *c, int err, const char *message, const char *flag)
{
    json_t *m = json_pack("{s:s, s:s}", "error", cps_errname(err), "message", message);
    if (m && flag) json_object_set_new(m, flag, json_true());
    send_json(c, m);
}

/* The request is answered (or its client gone): free it, and let the
** connection read the next one. */
static void request_free(request *r)
{
    free(r->cmd);
    json_decref(r->args);
    json_decref(r->merged);
    json_decref(r->unreachable);
    free(r);
}

static conn *request_done(request *r)
{
    conn *c = r->c;
    if (c) { c->req = NULL; c->busy = false; }
    return c;
}

static void answer_ok(request *r, json_t *value)
{
    conn *c = request_done(r);
    if (c) {
        json_t *m = json_pack("{s:O}", "ok", value ? value : json_null());
        if (m && json_array_size(r->unreachable)) json_object_set(m, "unreachable", r->unreachable);
        send_json(c, m);
    }
    request_free(r);
}

static void answer_error(request *r, int err, const char *message, const char *flag)
{
    conn *c = request_done(r);
    if (c) send_error(c, err, message, flag);
    request_free(r);
}

/* ---- running a command here ---- */

/* This process's admin commands as {name: summary-or-null}. */
static json_t *local_admin_commands(void)
{
    json_t *all = cps_rpc_list(), *out = json_object(), *row;
    size_t i;
    json_array_foreach(all, i, row) {
        if (json_integer_value(json_array_get(row, 1)) != CPS_RPC_ADMIN) continue;
        json_object_set(out, json_string_value(json_array_get(row, 0)), json_array_get(row, 2));
    }
    json_decref(all);
    return out;
}

static bool is_local_admin(const char *cmd)
{
    return cps_rpc_kind(cps_plugins_host(), cmd) == CPS_RPC_ADMIN;
}

static void command_message(char *buf, size_t n, const char *cmd, int err)
{
    if (err == CPS_EINVAL) snprintf(buf, n, "%s: invalid arguments (see `cpsd admin help`)", cmd);
    else if (err == CPS_ETIMEDOUT) snprintf(buf, n, "%s: the command did not answer in time", cmd);
    else if (err == CPS_EUNAVAILABLE) snprintf(buf, n, "%s: the node running it became unreachable", cmd);
    else snprintf(buf, n, "%s: failed with %s", cmd, cps_errname(err));
}

static void run_done(void *ud, int err, json_t *value, unsigned flags)
{
    (void)flags;
    request *r = ud;
    if (err) {
        char msg[256];
        command_message(msg, sizeof msg, r->cmd, err);
        answer_error(r, err, msg, err == CPS_EINVAL ? "usage" : NULL);
        return;
    }
    answer_ok(r, value);
}

static void run_local(request *r)
{
    /* key NULL: the operator (api/cps.h, CPS_RPC_ADMIN handlers) */
    int rc = cps_rpc_call(cps_plugins_host(), r->cmd, CPS_RPC_ADMIN, NULL, "cli",
                          json_incref(r->args), run_done, r);
    if (rc) run_done(r, rc, NULL, 0);
}

/* ---- reaching the rest of a cluster ---- */

/* The nodes of other processes (cluster.peers), in id order. */
static void find_peers(request *r)
{
    json_t *peers = cps_config_path(cps_cfg ? cps_cfg->root : NULL, "cluster.peers");
    const char *id;
    json_t *v;
    r->npeers = 0;
    json_object_foreach(peers, id, v) {
        if (r->npeers == CTL_MAX_PEERS || strlen(id) >= sizeof r->peers[0] || cps_router_is_local(id)) continue;
        int at = r->npeers++;
        while (at > 0 && strcmp(r->peers[at - 1], id) > 0) {
            memcpy(r->peers[at], r->peers[at - 1], sizeof r->peers[0]);
            at--;
        }
        snprintf(r->peers[at], sizeof r->peers[0], "%s", id);
    }
}

static void unknown_command(request *r)
{
    char msg[256];
    if (json_array_size(r->unreachable))
        snprintf(msg, sizeof msg, "unknown command '%s' on every reachable node (%zu node(s) did not answer); "
                 "`cpsd admin help` lists the commands", r->cmd, json_array_size(r->unreachable));
    else
        snprintf(msg, sizeof msg, "unknown command '%s'; `cpsd admin help` lists the commands", r->cmd);
    /* a node that did not answer may have it: not a usage error then */
    bool partial = json_array_size(r->unreachable) > 0;
    answer_error(r, partial ? CPS_EUNAVAILABLE : CPS_ENOENT, msg, partial ? NULL : "usage");
}

static void help_answer(request *r)
{
    json_t *rows = json_array();
    json_array_append_new(rows, json_pack("{s:s, s:s}", "command", "help",
                                          "description", "list the admin commands (also: list)"));
    const char *name;
    json_t *summary;
    /* json objects iterate in insertion order: sort by name for a stable listing */
    size_t n = json_object_size(r->merged), i = 0;
    const char **names = n ? malloc(n * sizeof *names) : NULL;
    json_object_foreach(r->merged, name, summary) if (names) names[i++] = name;
    for (size_t a = 1; names && a < n; a++)
        for (size_t b = a; b > 0 && strcmp(names[b - 1], names[b]) > 0; b--) {
            const char *t = names[b]; names[b] = names[b - 1]; names[b - 1] = t;
        }
    for (i = 0; names && i < n; i++) {
        if (!strcmp(names[i], "help") || !strcmp(names[i], "list")) continue;   /* ours win */
        json_t *s = json_object_get(r->merged, names[i]);
        json_array_append_new(rows, json_pack("{s:s, s:O}", "command", names[i], "description",
                                              json_is_string(s) ? s : json_null()));
    }
    free(names);
    answer_ok(r, rows);
    json_decref(rows);
}

static void run_remote_done(void *ud, int err, json_t *data)
{
    run_done(ud, err, data, 0);
}

/* After every peer listed its commands: help answers, a command runs on the
** first peer (in id order) that has it. */
static void lists_complete(request *r)
{
    if (!r->c) { request_free(r); return; }   /* the client has gone: run nothing */
    if (r->help) { help_answer(r); return; }
    for (int i = 0; i < r->npeers; i++) {
        if (!r->has[i]) continue;
        json_t *a = json_pack("{s:s, s:s, s:O}", "op", "run", "cmd", r->cmd, "args", r->args);
        unsigned t = (unsigned)cps_config_int("limits.rpc_timeout_ms", 30000) + 5000;
        int rc = cps_router_query(cps_plugins_host(), r->peers[i], CTL_PEER_CMD, a, t, run_remote_done, r);
        if (rc) run_done(r, rc, NULL, 0);
        return;
    }
    unknown_command(r);
}

static void list_reply(void *ud, int err, json_t *data)
{
    struct ask *a = ud;
    request *r = a->r;
    if (err || !json_is_object(data)) {
        json_array_append_new(r->unreachable, json_string(r->peers[a->idx]));
        cps_log("control", CPS_LOG_WARN, "admin: node %s did not list its commands (%s)",
                r->peers[a->idx], err ? cps_errname(err) : "bad answer");
    } else if (r->help) {
        json_object_update_missing(r->merged, data);
    } else {
        r->has[a->idx] = json_object_get(data, r->cmd) != NULL;
    }
    if (--r->waiting == 0) lists_complete(r);
}

static void ask_peers(request *r)
{
    r->unreachable = json_array();
    r->waiting = r->npeers + 1;    /* held until every query is sent */
    for (int i = 0; i < r->npeers; i++) {
        r->asks[i] = (struct ask){ r, i };
        json_t *q = json_pack("{s:s}", "op", "list");
        int rc = cps_router_query(cps_plugins_host(), r->peers[i], CTL_PEER_CMD, q, CTL_LIST_MS,
                                  list_reply, &r->asks[i]);
        if (rc) list_reply(&r->asks[i], rc, NULL);
    }
    if (--r->waiting == 0) lists_complete(r);
}

static void start_request(conn *c, char *cmd, json_t *args)
{
    request *r = calloc(1, sizeof *r);
    if (!r) { free(cmd); json_decref(args); send_error(c, CPS_ENOMEM, "out of memory", NULL); return; }
    r->c = c;
    r->cmd = cmd;
    r->args = args;
    c->req = r;
    c->busy = true;
    r->help = !strcmp(cmd, "help") || !strcmp(cmd, "list");
    if (!r->help && is_local_admin(cmd)) { run_local(r); return; }
    find_peers(r);
    if (r->help) r->merged = local_admin_commands();
    if (r->npeers) { ask_peers(r); return; }
    if (r->help) help_answer(r);
    else unknown_command(r);
}

/* Peer side: another process asks for our list, or to run one of ours. */
static void peer_run_done(void *ud, int err, json_t *value, unsigned flags)
{
    (void)flags;
    cps_router_reply(ud, err, err ? NULL : json_incref(value ? value : json_null()));
}

static int on_peer_admin(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *op = json_string_value(json_object_get(args, "op"));
    if (op && !strcmp(op, "list")) {
        cps_router_reply(call, CPS_OK, local_admin_commands());
        return CPS_ASYNC;
    }
    const char *cmd = json_string_value(json_object_get(args, "cmd"));
    json_t *a = json_object_get(args, "args");
    if (!op || strcmp(op, "run") || !cmd || !json_is_array(a)) return CPS_EINVAL;
    cps_log("control", CPS_LOG_INFO, "admin command %s from node %s", cmd, cps_router_call_from(call));
    int rc = cps_rpc_call(cps_plugins_host(), cmd, CPS_RPC_ADMIN, NULL, "cli", json_incref(a),
                          peer_run_done, call);
    if (rc) cps_router_reply(call, rc, NULL);
    return CPS_ASYNC;
}

int cps_control_register(void)
{
    json_t *nodes = json_object_get(cps_cfg ? cps_cfg->root : NULL, "nodes"), *v;
    size_t i;
    json_array_foreach(nodes, i, v) {
        const char *id = json_string_value(v);
        char role[32];
        snprintf(role, sizeof role, "%.*s", (int)strcspn(id ? id : "", ":"), id ? id : "");
        int rc = cps_router_register_role(cps_plugins_host(), role, CTL_PEER_CMD, on_peer_admin, NULL);
        if (rc && rc != CPS_EEXIST) return rc;   /* EEXIST: a second node of the role */
    }
    return 0;
}

/* ---- connections ---- */

static void handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    if (--c->open_handles > 0) return;
    if (c->prev) c->prev->next = c->next; else CTL.conns = c->next;
    if (c->next) c->next->prev = c->prev;
    CTL.nconns--;
    free(c);
    /* a client held back by the bound may come in now */
    if (CTL.backlogged && CTL.listening) {
        CTL.backlogged = false;
        accept_pending();
    }
}

static void conn_close(conn *c)
{
    if (c->closing) return;
    c->closing = true;
    if (c->req) { c->req->c = NULL; c->req = NULL; }   /* its answer will only free it */
    uv_close((uv_handle_t *)&c->pipe, handle_closed);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
}

static void idle_timeout(uv_timer_t *t)
{
    conn *c = t->data;
    if (!c->busy) conn_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *b)
{
    (void)hint;
    conn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    conn *c = s->data;
    if (n < 0) {
        if (n == UV_ENOBUFS) {
            uv_read_stop(s);
            c->close_after_write = true;
            send_error(c, CPS_EINVAL, "request longer than the limit (" CPS_CONTROL_MAX_REQUEST_TEXT " bytes)", NULL);
        } else {
            conn_close(c);
        }
        return;
    }
    c->len += (size_t)n;
    process(c);
}

/* Run the first complete line in the buffer, or read on. */
static void process(conn *c)
{
    if (c->busy || c->closing) return;
    char *nl = memchr(c->buf, '\n', c->len);
    if (!nl) {
        if (c->len == sizeof c->buf) {
            c->close_after_write = true;
            uv_read_stop((uv_stream_t *)&c->pipe);
            send_error(c, CPS_EINVAL, "request longer than the limit (" CPS_CONTROL_MAX_REQUEST_TEXT " bytes)", NULL);
            return;
        }
        uv_timer_start(&c->timer, idle_timeout, CTL_IDLE_MS, 0);
        uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, on_read);
        return;
    }
    size_t line = (size_t)(nl - c->buf);
    char *cmd;
    json_t *args;
    char err[256];
    int rc = cps_control_parse(c->buf, line, &cmd, &args, err, sizeof err);
    c->len -= line + 1;
    memmove(c->buf, nl + 1, c->len);
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_timer_stop(&c->timer);
    if (rc) { send_error(c, rc, err, NULL); return; }
    start_request(c, cmd, args);
}

/* Only the server's own user and root: the mode 0600 of the socket already
** says so, this holds even if someone loosens the mode. */
static bool peer_allowed(conn *c, char *why, size_t n)
{
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len)) {
        snprintf(why, n, "cannot check the connecting user: %s", strerror(errno));
        return false;
    }
    if (cred.uid == geteuid() || cred.uid == 0) return true;
    snprintf(why, n, "refused: uid %u is neither the server's user (uid %u) nor root; "
             "run cpsd admin as the user cpsd runs as", (unsigned)cred.uid, (unsigned)geteuid());
    cps_log("control", CPS_LOG_WARN, "control socket: connection from uid %u (pid %d) refused",
            (unsigned)cred.uid, (int)cred.pid);
    return false;
}

static void accept_pending(void)
{
    if (!CTL.listening) return;
    if (CTL.nconns >= CTL_MAX_CONNS) { CTL.backlogged = true; return; }
    conn *c = calloc(1, sizeof *c);
    if (!c) { CTL.backlogged = true; return; }
    uv_pipe_init(CTL.loop, &c->pipe, 0);
    uv_timer_init(CTL.loop, &c->timer);
    c->pipe.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = CTL.conns;
    if (c->next) c->next->prev = c;
    CTL.conns = c;
    CTL.nconns++;
    if (uv_accept((uv_stream_t *)&CTL.server, (uv_stream_t *)&c->pipe)) { conn_close(c); return; }
    char why[256];
    if (!peer_allowed(c, why, sizeof why)) {
        c->close_after_write = true;
        send_error(c, CPS_EFORBIDDEN, why, "refused");
        return;
    }
    process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    (void)server;
    if (status < 0) {
        cps_log("control", CPS_LOG_WARN, "control socket: accept: %s", uv_strerror(status));
        return;
    }
    accept_pending();
}

/* ---- the socket file ---- */

/* A socket file left by a run that crashed is removed; one a live server
** answers on, or a file that is not a socket, is left alone. */
static int clear_stale(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : -1;
    if (!S_ISSOCK(st.st_mode)) {
        cps_log("control", CPS_LOG_ERROR, "control socket %s: a file that is not a socket is in the way "
                "(not removed)", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int e = errno;
    close(fd);
    if (rc == 0) {
        cps_log("control", CPS_LOG_ERROR, "control socket %s: another cpsd is running with this data_dir", path);
        return -1;
    }
    if (e != ECONNREFUSED) {
        cps_log("control", CPS_LOG_ERROR, "control socket %s: cannot tell whether it is in use: %s", path, strerror(e));
        return -1;
    }
    if (unlink(path) != 0 && errno != ENOENT) {
        cps_log("control", CPS_LOG_ERROR, "control socket %s: cannot remove the stale socket: %s", path, strerror(errno));
        return -1;
    }
    cps_log("control", CPS_LOG_INFO, "control socket %s: removed the stale socket of an earlier run", path);
    return 0;
}

static int mkdir_p(const char *dir)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) return -1;
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int cps_control_socket_path(const char *data_dir, char *out, size_t n)
{
    char cwd[PATH_MAX];
    const char *dir = data_dir && *data_dir ? data_dir : "./data";
    int w;
    if (dir[0] == '/') w = snprintf(out, n, "%s/cpsd.sock", dir);
    else if (getcwd(cwd, sizeof cwd)) w = snprintf(out, n, "%s/%s/cpsd.sock", cwd, dir[0] == '.' && dir[1] == '/' ? dir + 2 : dir);
    else return CPS_EIO;
    return w < 0 || (size_t)w >= n ? CPS_EINVAL : 0;
}

const char *cps_control_path(void) { return CTL.listening ? CTL.path : NULL; }

int cps_control_start(uv_loop_t *loop)
{
    char path[PATH_MAX];
    const char *data_dir = cps_config_str("data_dir", "./data");
    if (cps_control_socket_path(data_dir, path, sizeof path) || strlen(path) >= sizeof CTL.path) {
        cps_log("control", CPS_LOG_ERROR, "control socket %s/cpsd.sock: the path is longer than a unix "
                "socket allows (%zu bytes); use a shorter data_dir", data_dir, sizeof CTL.path - 1);
        return CPS_EINVAL;
    }
    if (mkdir_p(data_dir) != 0) {
        cps_log("control", CPS_LOG_ERROR, "data_dir %s: %s", data_dir, strerror(errno));
        return CPS_EIO;
    }
    if (clear_stale(path)) return CPS_EEXIST;
    CTL.loop = loop;
    uv_pipe_init(loop, &CTL.server, 0);
    /* Born 0600: the umask covers the moment between bind and chmod.  This
    ** runs before any plugin could create files from another thread. */
    mode_t old = umask(0177);
    int rc = uv_pipe_bind(&CTL.server, path);
    umask(old);
    if (rc == 0) rc = chmod(path, 0600) ? uv_translate_sys_error(errno) : 0;
    if (rc == 0) rc = uv_listen((uv_stream_t *)&CTL.server, CTL_MAX_CONNS, on_connection);
    if (rc) {
        cps_log("control", CPS_LOG_ERROR, "control socket %s: %s", path, uv_strerror(rc));
        uv_close((uv_handle_t *)&CTL.server, NULL);
        unlink(path);
        return CPS_EIO;
    }
    memcpy(CTL.path, path, strlen(path) + 1);   /* the length was checked above */
    CTL.listening = true;
    return 0;
}

void cps_control_stop(void)
{
    if (!CTL.listening) return;
    CTL.listening = false;
    uv_close((uv_handle_t *)&CTL.server, NULL);
    for (conn *c = CTL.conns; c; c = c->next) conn_close(c);
    unlink(CTL.path);   /* ours: clear_stale refused to start beside a live one */
}
