/*
** host.h - internal declarations shared by the files of host/.
** Plugins never include this; they see only api/cps.h.  Each subsystem
** keeps its state in one named singleton (see the `cps_host` struct).
*/
#ifndef CPS_HOST_H
#define CPS_HOST_H

#include <uv.h>
#include <stdbool.h>
#include "../api/cps.h"

#define CPS_VERSION "0.1.0"

/* ---- plugins (plugin.c) ---- */
struct cps_plugin {
    char *name;
    char *path;            /* .so path, or script path for Lua, or "<host>" */
    void *dl;              /* dlopen handle, NULL for Lua/host */
    char *node;            /* node id served, or NULL */
    const cps_plugin_def *def; /* the .so's descriptor (NULL for Lua and the host) */
    void *state;           /* set by def->init, passed to fini */
    void (*fini)(cps_plugin *self, void *state);   /* def->fini, or a script's */
    const char *version;   /* shown in logs */
    bool is_lua;
    bool unloading;
    struct cps_plugin *next;
};

extern const cps_api cps_host_api;        /* api.c */
cps_plugin *cps_plugin_new(const char *name, const char *path, const char *node);
void cps_plugin_free(cps_plugin *p);
/* Load a .so found in the plugin dirs; `node` is the role node it serves
** or NULL.  Returns 0 or a negative code, with a log line saying why. */
int cps_plugin_load(const char *name, const char *node, bool required);
/* Call fini of every plugin and drop their registrations (reverse order). */
int  cps_plugin_load_path(const char *name, const char *path, const char *node);
void cps_plugins_fini(void);
void cps_plugins_close(void);   /* dlclose everything; after the loop ended */
cps_plugin *cps_plugins_host(void); /* the pseudo-plugin of the host itself */
/* Undo every registration a plugin made (commands, rpc, timers, handler). */
void cps_plugin_forget(cps_plugin *p);

/* ---- finding plugin and script files (search.c) ---- */
/* Writes the path of the .so or script the loaders would use into out;
** false if there is none.  `root` is the configuration (NULL: defaults). */
bool cps_search_plugin(json_t *root, const char *name, char *out, size_t n);
bool cps_search_script(json_t *root, const char *name, char *out, size_t n);
const char *cps_search_exe_dir(void);
const char *cps_search_plugin_dir(void);   /* the installed plugins', beside the binary */
const char *cps_search_lua_dir(void);      /* the built-in scripts' */
bool cps_search_in_build_tree(void);       /* running from the build tree */

/* ---- configuration (config.c) ---- */
typedef struct cps_config {
    json_t *root;          /* merged defaults + file */
    char *file;            /* NULL for the embedded default */
} cps_config;
/* Load the embedded default, then merge `file` over it (NULL = none).
** On error returns NULL and writes every error, one per line, to *errors
** (malloc'd).  Top-level keys named like a role or plugin in use are
** accepted as that plugin's section. */
extern cps_config *cps_cfg;   /* the singleton, set by main */
cps_config *cps_config_load(const char *file, char **errors);
cps_config *cps_config_load_with(const char *file, json_t *overlay, char **errors);
json_t *cps_config_eval_file(const char *file, char **errors);
/* Every plugin (.so) and Lua script `c` names that the loaders would not
** find, one error per line in *errors (malloc'd, NULL if none); returns the
** number of errors.  Optional ("?name") entries may be missing. */
int cps_config_check_files(const cps_config *c, char **errors);
void cps_config_free(cps_config *c);
json_t *cps_config_path(json_t *root, const char *path);  /* dotted lookup */
const char *cps_config_str(const char *path, const char *def);
int64_t cps_config_int(const char *path, int64_t def);

/* ---- logging (log.c) ---- */
void cps_log_set_level(int level);
int  cps_log_set_format(const char *name);   /* "text" or "json"; -1 if neither */
int  cps_log_open(const char *path, char *err, size_t n);   /* log to a file from now on */
int  cps_log_reopen(char *err, size_t n);    /* the same path again (SIGHUP); 0 without a file */
const char *cps_log_path(void);             /* the log file, or NULL for stderr */
void cps_log_close(void);
int  cps_log_level_from_name(const char *name);
void cps_logv(const char *who, int level, const char *fmt, va_list ap);
void cps_log(const char *who, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- metrics (metrics.c) ---- */
cps_counter *cps_metrics_counter(const char *name);
cps_counter *cps_metrics_counter_of(const char *name, const char *owner); /* owner: plugin name */
void cps_metrics_add(cps_counter *c, int64_t delta);
char *cps_metrics_text(void);             /* malloc'd Prometheus text */
/* cpsd_rpc_duration_seconds: one RPC call's time from call to answer. */
void cps_metrics_observe_rpc(double seconds);
/* A latency histogram shared by name (api->histogram); help may be NULL. */
cps_histogram *cps_metrics_histogram(const char *name, const char *help, const char *owner);
void cps_metrics_observe(cps_histogram *h, double seconds);
/* Each latency histogram's name, observation count and total seconds, in
** creation order (what the admin panel's worker profile shows). */
void cps_metrics_each_histogram(void (*fn)(const char *name, uint64_t count, double sum, void *ud), void *ud);
void cps_metrics_free(void);

/* ---- placement (hash.c) ---- */
uint64_t cps_hash_key(const char *id);
int32_t  cps_jump_hash(uint64_t key, int32_t buckets);

/* ---- router (router.c) ---- */
int  cps_router_init(uv_loop_t *loop);
void cps_router_shutdown(void);   /* cancel queued and pending, close handles */
/* Declare a local node (one per role in a process). */
int  cps_router_add_node(const char *node_id, cps_plugin *owner);
int  cps_router_set_role_count(const char *role, int n);
int  cps_router_role_count(const char *role);
int  cps_router_register(cps_plugin *p, const char *name, cps_command_fn fn, void *ud);
/* Register on the local node of `role` (CPS_ENOENT if none). */
int  cps_router_register_role(cps_plugin *p, const char *role, const char *name,
                              cps_command_fn fn, void *ud);
void cps_router_forget(cps_plugin *p);
int  cps_router_send(cps_plugin *p, const char *node, const char *cmd, json_t *args);
int  cps_router_query(cps_plugin *p, const char *node, const char *cmd, json_t *args,
                      unsigned timeout_ms, cps_reply_fn cb, void *ud);
void cps_router_reply(cps_call *call, int err, json_t *data);
const char *cps_router_call_from(cps_call *call);
const char *cps_router_owner(const char *role, const char *key, char *buf, size_t n);
size_t cps_router_queued(void);
size_t cps_router_pending(void);      /* queries waiting for their answer */
/* The i-th node the router knows (0, 1, ...): false past the last. */
bool cps_router_node_at(int i, const char **id, const char **role, bool *remote);
int  cps_router_add_remote(const char *id);
bool cps_router_is_local(const char *id);
void cps_router_incoming(const char *peer, const char *type, uint64_t qid, const char *dest,
                         const char *cmd, int err, json_t *args);
void cps_router_peer_down(const char *peer);
int  cps_router_on_peer_down(cps_plugin *p, void (*fn)(const char *, void *), void *ud);
/* Liveness as this process sees it (docs/protocol/cluster.md §11.2). */
void cps_router_peer_up(const char *peer);
int  cps_router_on_peer_up(cps_plugin *p, void (*fn)(const char *, void *), void *ud);
bool cps_router_node_is_up(const char *id);
const char *cps_router_owner_live(const char *role, const char *key, char *buf, size_t n);

/* ---- the links' compact JSON writer (jsonw.c) ---- */
/* A growing buffer; `bad` once an allocation failed or the value nests too
** deep (then the text is incomplete and must not be used).  Start it
** zeroed, or with `len` bytes reserved in front; free `p`. */
typedef struct cps_jsonw { char *p; size_t len, cap; bool bad; } cps_jsonw;
void cps_jsonw_raw(cps_jsonw *w, const char *s, size_t n);
void cps_jsonw_int(cps_jsonw *w, int64_t v);
void cps_jsonw_str(cps_jsonw *w, const char *s, size_t n);
void cps_jsonw_value(cps_jsonw *w, json_t *v);    /* as json_dumps(JSON_COMPACT) */
bool cps_utf8_valid(const char *s, size_t n);
/* ---- the links' JSON reader (jsonr.c): what json_loadb(text, len, 0)
** accepts for an array or object, the same values; NULL otherwise ---- */
json_t *cps_jsonr(const char *text, size_t len);
/* A link message [type, qid, dest, cmd, error|null, args]: the head read
** into fixed fields without building values (a malloc per string saved per
** message), args returned as a value; NULL if the text has another shape. */
typedef struct cps_link_head {
    char type[16], dest[64], cmd[256], error[64];
    bool has_error;
    json_int_t qid;
} cps_link_head;
json_t *cps_jsonr_link(const char *text, size_t len, cps_link_head *h);

/* ---- links between nodes of a cluster (link.c) ---- */
/* Start dialling / accepting the peers named in the configuration. */
int  cps_link_start(void);
/* What /metrics shows of one link (metrics.c). */
typedef struct cps_link_stats {
    const char *peer;
    bool up;
    uint64_t queue_bytes;                 /* plaintext waiting to be sent */
    uint64_t msgs_out, bytes_out, msgs_in, bytes_in;   /* since the process started */
} cps_link_stats;
/* The i-th link (0, 1, ...): false past the last. */
bool cps_link_stats_at(int i, cps_link_stats *out);
struct lws_context;
struct lws_vhost;
int  cps_link_setup(struct lws_context *ctx, struct lws_vhost *vh);
void cps_link_stop(void);
bool cps_link_is_up(const char *peer);
/* Send one router message to a remote node; does not steal args.
** type "E" event, "Q" query, "R" response. */
int  cps_link_send(const char *peer, const char *type, uint64_t qid, const char *from_or_dest,
                   const char *cmd, int err, json_t *args);
/* libwebsockets callback of the link protocol (server.c lists it). */
struct lws;
int  cps_link_callback(struct lws *wsi, int reason, void *user, void *in, size_t len);
void cps_router_drain(void);       /* run the queue to empty (tests) */

/* ---- RPC registry (rpc.c) ---- */
int  cps_rpc_register(cps_plugin *p, const char *name, int kind, cps_rpc_fn fn, void *ud);
int  cps_rpc_call(cps_plugin *p, const char *name, int kind, const char *key,
                  const char *caller, json_t *args, cps_rpc_done_fn done, void *ud);
void cps_rpc_reply(cps_rpc *r, json_t *value);
void cps_rpc_error(cps_rpc *r, int err);
const char *cps_rpc_key(cps_rpc *r);
const char *cps_rpc_name(cps_rpc *r);
const char *cps_rpc_caller(cps_rpc *r);
void cps_rpc_end_session(cps_rpc *r);
int  cps_rpc_kind(cps_plugin *p, const char *name);
int  cps_rpc_describe(cps_plugin *p, const char *name, const char *summary);
/* Every registered command as [[name, kind, summary-or-null], ...] sorted by
** name (new reference), for listings of the host's own (control socket). */
json_t *cps_rpc_list(void);
void cps_rpc_forget(cps_plugin *p);
void cps_rpc_shutdown(void);

/* ---- frames (frame.c) ---- */
struct cps_frame {
    int refs;
    size_t len;
    unsigned char buf[];   /* LWS_PRE headroom, then len bytes, then NUL */
};
cps_frame *cps_frame_new(const char *text, size_t len);
cps_frame *cps_frame_json(json_t *v);
cps_frame *cps_frame_ref(cps_frame *f);
void cps_frame_unref(cps_frame *f);
unsigned char *cps_frame_payload(cps_frame *f);
size_t cps_frame_pre(void);

/* ---- websocket server and sessions (server.c) ---- */
int  cps_server_start(uv_loop_t *loop);  /* 0 or error (bind failure logged) */
/* A websocket frame header written by us: FIN, `opcode` (1 text, 2
** binary), the length, and with `masked` the all-zero mask key. */
#define CPS_WS_HDR_MAX 14
size_t cps_ws_header(unsigned char *h, size_t len, unsigned char opcode, bool masked);
void cps_server_close_sessions(int code, const char *reason);
size_t cps_server_session_count(void);
void cps_server_stop(void);              /* first lws_context_destroy, in loop */
void cps_server_free(void);              /* second destroy, after the loop */
int  cps_server_set_handler(cps_plugin *p, const cps_session_handler *h, void *ud);
void cps_server_forget(cps_plugin *p);
int  cps_session_send(cps_session *s, cps_frame *f);
void cps_session_close(cps_session *s, int code, const char *reason);
uint64_t cps_session_id(cps_session *s);
void cps_session_set_data(cps_session *s, void *d);
void *cps_session_data(cps_session *s);
const char *cps_session_peer(cps_session *s);
size_t cps_session_queued(cps_session *s);
void cps_session_pause(cps_session *s, bool paused);
int  cps_session_on_drain(cps_session *s, size_t below, void (*fn)(cps_session *, void *), void *ud);

/* ---- HTTP routes and answers (http.c) ---- */
struct lws;
int  cps_http_register(cps_plugin *p, const char *method, const char *prefix, size_t max_body,
                       cps_http_fn fn, void *ud);
void cps_http_forget(cps_plugin *p);
void cps_http_shutdown(void);   /* frees what lws tore down silently; after the loop */
const char *cps_http_method(cps_http *r);
const char *cps_http_path(cps_http *r);
const char *cps_http_query(cps_http *r);
const char *cps_http_header(cps_http *r, const char *name);
const char *cps_http_body(cps_http *r, size_t *len);
int  cps_http_port(cps_http *r);
int  cps_http_respond(cps_http *r, int status, json_t *headers, const char *body, size_t len);
int  cps_http_respond_file(cps_http *r, int status, json_t *headers, const char *path,
                           uint64_t offset, uint64_t len);
int  cps_http_respond_stream(cps_http *r, int status, json_t *headers, uint64_t len,
                             void (*more)(cps_http *, void *), void *ud);
int  cps_http_write(cps_http *r, const char *data, size_t n);
/* Request heads (docs/protocol/http.md §12): lws parses the request line
** and headers into an arena of CPS_HTTP_HEAD_ARENA bytes and closes without
** an answer when it fills; below that, cpsd answers a target over
** CPS_HTTP_MAX_TARGET with 414 and headers over CPS_HTTP_MAX_HEADERS with 431. */
#define CPS_HTTP_HEAD_ARENA 32768
#define CPS_HTTP_MAX_TARGET 8192
#define CPS_HTTP_MAX_HEADERS 16384
/* The status a request's framing earns (Transfer-Encoding present, the
** Content-Length text and length, -1 if absent), or 0. */
int  cps_http_framing(bool te, const char *cl, int cl_len);
int  cps_http_head_status(size_t target_len, size_t headers_len);
/* from server.c's lws callback */
int  cps_http_begin(struct lws *wsi, cps_http **slot, const char *uri);
int  cps_http_body_chunk(cps_http *r, const void *in, size_t len);
void cps_http_body_done(cps_http *r);
int  cps_http_writable(struct lws *wsi, cps_http **slot);
void cps_http_closed(cps_http **slot);

/* ---- timers and work (timer.c) ---- */
/* host/turn.c: fn runs after the poll phase of a turn in which
** cps_turn_want was called (and that poll does not block). */
typedef struct cps_turn {
    uv_check_t check;
    uv_idle_t kick;
    void (*fn)(void);
    bool on, wanted;
} cps_turn;
void cps_turn_init(cps_turn *t, uv_loop_t *loop, void (*fn)(void));
void cps_turn_want(cps_turn *t);
void cps_turn_stop(cps_turn *t);

int  cps_timers_init(uv_loop_t *loop);
cps_timer *cps_timer_start(cps_plugin *p, uint64_t after, uint64_t repeat,
                           cps_timer_fn fn, void *ud);
void cps_timer_stop(cps_timer *t);
void cps_timers_forget(cps_plugin *p);
/* watch.c: descriptors watched for plugins (api->watch_*) */
cps_watch *cps_watch_start(cps_plugin *p, int fd, int events, cps_watch_fn fn, void *ud);
int  cps_watch_set(cps_watch *w, int events);
void cps_watch_stop(cps_watch *w);
void cps_watches_forget(cps_plugin *p);
int  cps_work(cps_plugin *p, cps_work_fn w, cps_after_work_fn a, void *ud);
uint64_t cps_now_ms(void);
uv_loop_t *cps_loop(void);

/* ---- storage backend registry (storage.c) ---- */
int  cps_storage_register(cps_plugin *p, const cps_storage_backend *b);
const cps_storage_backend *cps_storage_get(const char *name);
void cps_storage_forget(cps_plugin *p);
/* Loads storage-<storage_backend> unless `plugins` lists it (logs why not). */
int  cps_storage_load_configured(void);
/* After loading: the configured backend is registered (else logs the
** available ones and fails). */
int  cps_storage_check_configured(void);
/* "fs, pg": registered backends and storage-*.so in the plugin directories. */
void cps_storage_available(char *buf, size_t n);

/* ---- topologies: one node's configuration, the supervisor (topology.c) ---- */
/* Load FILE; with --list print the nodes; with role/index build that node's
** overlay; with neither run every local node under a supervisor. */
int  cps_topology_main(const char *file, const char *role, int index, bool list,
                       const char *config_file);

/* ---- the cluster key file (keyfile.c) ---- */
#define CPS_KEY_B64_MAX 45   /* base64 of 32 bytes, with its NUL */
bool cps_key_valid(const char *b64);
/* A fresh key in a new file, mode 0600; -1 (and err) if it exists. */
int  cps_keyfile_create(const char *path, char *err, size_t errlen);
/* The key of the file, checked, into out (CPS_KEY_B64_MAX bytes). */
int  cps_keyfile_read(const char *path, char *out, size_t n, char *err, size_t errlen);

/* ---- Lua (lua_host.c) ---- */
int  cps_lua_init(void);
/* Load a script by name (searched in lua_dirs) or path. */
int  cps_lua_load(const char *name);
/* Load every admin/NAME.lua of lua_dirs and the built-in dir (admin.autoload). */
int  cps_lua_load_admin(void);
void cps_lua_close(void);

/* ---- the control socket and `cpsd admin` (control.c, admin_cli.c) ---- */
#define CPS_CONTROL_MAX_REQUEST 65536       /* bytes in one request line */
#define CPS_CONTROL_MAX_REQUEST_TEXT "65536"
#define CPS_CONTROL_MAX_ARGS 64
/* Listen on <data_dir>/cpsd.sock (mode 0600); before plugins load. */
int  cps_control_start(uv_loop_t *loop);
/* The inter-node command that lets other processes of a cluster list and
** run this process's admin commands; after the nodes are declared. */
int  cps_control_register(void);
void cps_control_stop(void);           /* close every handle, remove the file */
const char *cps_control_path(void);    /* the socket listened on, or NULL */
/* <data_dir>/cpsd.sock made absolute against the working directory. */
int  cps_control_socket_path(const char *data_dir, char *out, size_t n);
/* One request line {"cmd": NAME, "args": [STRING...]}: 0 with *cmd
** (malloc'd) and *args (an array), or a code with a message in err. */
int  cps_control_parse(const char *line, size_t len, char **cmd, json_t **args, char *err, size_t n);
/* `cpsd admin ...` (argv[1] is "admin"); returns the exit status. */
int  cps_admin_main(int argc, char **argv);
/* How `cpsd admin` prints an answer (malloc'd text ending in a newline). */
char *cps_admin_render(json_t *v, bool as_json);
int64_t cps_metrics_value(const char *name);   /* metrics.c; 0 if none */
size_t cps_server_unique_peers(void);          /* server.c */

/* ---- live instance settings (instance.c) ---- */
int cps_instance_set(cps_plugin *p, const char *key, json_t *value);   /* steals value */
json_t *cps_config_live(const char *path);   /* config_get: live `instance.` values first */
uint64_t cps_instance_generation(void);
void cps_instance_free(void);

const char *cps_errname(int code);   /* errors.c */
int cps_migrate_main(int argc, char **argv);   /* migrate.c: `cpsd migrate` */
int cps_errcode(const char *name);
void cps_errors_reset(void);         /* frees the names met at run time */

#endif
