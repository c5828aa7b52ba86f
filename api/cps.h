/*
** cps.h - the one header a cpsd plugin includes: the stable plugin ABI.
**
** A plugin is a shared object exporting one symbol, cps_plugin_init, or a
** Lua 5.4 script using the `cps` module (same services, see lua/README.md).
** The host passes a table of function pointers (cps_api) that the plugin
** keeps for its whole life, in the manner of sqlite3_api_routines and
** redismodule.h.  The host knows no CryptPad concept; everything specific to
** CryptPad (netflux, history, RPC commands) lives in plugins.
**
** VERSIONING
**   The table starts with its own size and an ABI major/minor version.
**   Functions are only ever appended: a plugin built against minor M runs on
**   any host with the same major and minor >= M.  A plugin may check
**   api->minor (or api->size) before calling a function added later.  A host
**   refuses, with a clear message, a plugin whose major differs from its own
**   or whose minor is newer than its own.
**
** THREADS
**   Every function in the table must be called on the event-loop thread,
**   except where noted (only the work function given to api->work runs on a
**   thread-pool thread, and it must not call the table).
**
** JSON
**   Messages between nodes are jansson values.  Functions documented as
**   "steals" take over the caller's reference (as json_array_append_new
**   does); "borrowed" values are valid only during the callback: json_incref
**   them to keep them.  In one process a message is handed to the receiver
**   without serialisation, on the next loop turn; across processes it is
**   serialised once per link.  Treat received JSON as read-only.
**
** ERRORS
**   Functions return 0 (CPS_OK) or a negative CPS_E* code.  Errors that
**   travel to another node or a client are strings (e.g. "EINVAL",
**   "ETIMEDOUT"), see cps_strerror.
*/
#ifndef CPS_H
#define CPS_H

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <jansson.h>
#include "cps_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CPS_ABI_MAJOR 1
#define CPS_ABI_MINOR 3

/* Error codes.  cps_api.strerror maps each to a short protocol-style string. */
enum {
    CPS_OK         = 0,
    CPS_ASYNC      = 1,   /* handler return: "I will reply later" */
    CPS_EINVAL     = -1,  /* bad argument */
    CPS_ENOENT     = -2,  /* no such node, command, session */
    CPS_EEXIST     = -3,  /* duplicate registration */
    CPS_ENOMEM     = -4,
    CPS_EBUSY      = -5,  /* a bounded queue is full */
    CPS_ETIMEDOUT  = -6,  /* a query or handler ran out of time */
    CPS_ECANCELED  = -7,  /* shutting down, or the plugin is being unloaded */
    CPS_EVERSION   = -8,  /* ABI mismatch */
    CPS_EINTERNAL  = -9,  /* a handler failed (Lua error, C bug) */
    CPS_EIO        = -10, /* storage or network error */
    CPS_ECLOSED    = -11  /* the session or link is gone */
};

/* Log levels, lowest is most severe. */
enum { CPS_LOG_ERROR = 0, CPS_LOG_WARN = 1, CPS_LOG_INFO = 2, CPS_LOG_DEBUG = 3 };

/* RPC command kinds (client-facing commands; who may call them is decided
** by the plugin that dispatches client requests). */
enum { CPS_RPC_ANON = 0, CPS_RPC_AUTH = 1, CPS_RPC_ADMIN = 2 };

/* Opaque handles.  No layout is visible to plugins. */
typedef struct cps_plugin  cps_plugin;   /* the loaded plugin itself */
typedef struct cps_session cps_session;  /* one client websocket connection */
typedef struct cps_frame   cps_frame;    /* an immutable, refcounted text frame */
typedef struct cps_call    cps_call;     /* an incoming inter-node message */
typedef struct cps_rpc     cps_rpc;      /* one invocation of an RPC command */
typedef struct cps_timer   cps_timer;
typedef struct cps_counter cps_counter;
typedef struct cps_http    cps_http;     /* one HTTP request (1.3) */

/* ---- callbacks ------------------------------------------------------- */

/* Inter-node command handler.  `args` is borrowed.  Return CPS_OK (the
** host replies null to a query if the handler did not reply), CPS_ASYNC (the
** handler keeps `call` and must call api->reply exactly once later), or a
** negative code (the host replies with that error).  Events (api->send)
** are delivered the same way; replying to an event is a no-op. */
typedef int (*cps_command_fn)(cps_call *call, json_t *args, void *ud);

/* Result of api->query: `error` is NULL on success, else a code string such
** as "ETIMEDOUT", "ENOENT" (no such node or command) or whatever the
** handler replied; `data` is borrowed (may be NULL). */
typedef void (*cps_reply_fn)(void *ud, const char *error, json_t *data);

/* RPC command handler.  `args` is borrowed.  Same return contract as
** cps_command_fn, replying with api->rpc_reply / api->rpc_error. */
typedef int (*cps_rpc_fn)(cps_rpc *rpc, json_t *args, void *ud);

/* Result of api->rpc_call: exactly one of `error` / `value` is meaningful;
** `value` is borrowed (may be NULL, meaning JSON null). */
typedef void (*cps_rpc_done_fn)(void *ud, const char *error, json_t *value);

/* Session events, for the one plugin that owns client connections. */
typedef struct cps_session_handler {
    void (*on_open)(cps_session *s, void *ud);
    /* One complete websocket text message (UTF-8 already validated, at most
    ** limits.max_frame bytes, NUL-terminated for convenience). */
    void (*on_frame)(cps_session *s, const char *data, size_t len, void *ud);
    /* The connection is gone.  `s` is invalid once this returns. */
    void (*on_close)(cps_session *s, void *ud);
} cps_session_handler;

typedef void (*cps_timer_fn)(cps_timer *t, void *ud);
/* Runs on a thread-pool thread: no api calls, no Lua, no loop state. */
typedef void (*cps_work_fn)(void *ud);
/* Runs on the loop thread afterwards; status is CPS_OK or CPS_ECANCELED
** (the host is shutting down: release `ud`, do nothing else). Always called
** exactly once. */
typedef void (*cps_after_work_fn)(void *ud, int status);

/* HTTP route handler (1.3).  The request's body (up to the route's
** max_body) has been read.  Answer with exactly one http_respond or
** http_respond_file, now (return CPS_OK) or later (return CPS_ASYNC); a
** negative return answers with a status for it (EINVAL 400, ENOENT 404,
** EBUSY 503, others 500).  If the client went away meanwhile, the answer
** is discarded. */
typedef int (*cps_http_fn)(cps_http *req, void *ud);

/* ---- the function table ---------------------------------------------- */

typedef struct cps_api {
    size_t   size;          /* sizeof(cps_api) as the host built it */
    uint16_t major;         /* CPS_ABI_MAJOR of the host */
    uint16_t minor;         /* CPS_ABI_MINOR of the host */

    /* -- identity and configuration (1.0) -- */

    /* The node this plugin serves ("core:0"), or NULL for a feature plugin
    ** that is not a role. */
    const char *(*self_node)(cps_plugin *p);
    /* This plugin's configuration section (the top-level key named like the
    ** plugin), borrowed; an empty object if absent.  Never NULL. */
    json_t *(*config)(cps_plugin *p);
    /* A host-wide value by dotted path ("limits.max_frame"), borrowed, or
    ** NULL. */
    json_t *(*config_get)(cps_plugin *p, const char *path);
    /* The directory under which plugins keep their data (config data_dir). */
    const char *(*data_dir)(cps_plugin *p);

    /* -- logging and metrics (1.0) -- */
    void (*log)(cps_plugin *p, int level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* A named counter, created on first use, shared by name host-wide and
    ** shown at GET /metrics.  Never NULL. */
    cps_counter *(*counter)(cps_plugin *p, const char *name);
    void (*counter_add)(cps_counter *c, int64_t delta);

    /* -- inter-node messaging through the router (1.0) -- */

    /* Register a command on this plugin's node (role plugins only).  A
    ** second registration of a name on the same node is refused (CPS_EEXIST)
    ** and logged naming both plugins. */
    int (*register_command)(cps_plugin *p, const char *name, cps_command_fn fn,
                            void *ud);
    /* Fire-and-forget to `node` ("front:0").  Steals `args`.  Delivered on a
    ** later loop turn, in order per (sender, destination).  CPS_ENOENT if no
    ** such node, CPS_EBUSY if the router queue is full. */
    int (*send)(cps_plugin *p, const char *node, const char *cmd, json_t *args);
    /* Request/response.  Steals `args`.  `cb` is called exactly once, on a
    ** later loop turn: with the reply, or with "ENOENT", "ETIMEDOUT",
    ** "EBUSY", "ECANCELED".  timeout_ms 0 = the configured default. */
    int (*query)(cps_plugin *p, const char *node, const char *cmd, json_t *args,
                 unsigned timeout_ms, cps_reply_fn cb, void *ud);
    /* Reply to a query (once).  `error` NULL for success; steals `data`
    ** (may be NULL).  The call is freed by this function. */
    void (*reply)(cps_call *call, const char *error, json_t *data);
    /* The node that sent `call` ("front:0"). */
    const char *(*call_from)(cps_call *call);
    /* The node of `role` that owns `key` (jump consistent hash over the
    ** role's node count, key derived as spec/cluster.md 3.1).  Writes into
    ** buf (>= 32 bytes) and returns it, or NULL if the role has no nodes. */
    const char *(*owner)(cps_plugin *p, const char *role, const char *key,
                         char *buf, size_t buflen);
    /* Number of nodes of a role in the topology (0 if none). */
    int (*role_count)(cps_plugin *p, const char *role);

    /* -- client RPC commands (1.0) -- */

    /* Register a client RPC command by name (host-wide registry).  A
    ** duplicate name is refused (CPS_EEXIST) with a log line naming both
    ** plugins. */
    int (*register_rpc)(cps_plugin *p, const char *name, int kind,
                        cps_rpc_fn fn, void *ud);
    /* Invoke a registered RPC command (for the plugin that dispatches client
    ** requests).  `key` is the caller's authenticated public key or NULL.
    ** `args` borrowed.  `done` is called exactly once, possibly before
    ** rpc_call returns.  Returns CPS_ENOENT (done not called) if no such
    ** command, or if its kind is not `kind`. */
    int (*rpc_call)(cps_plugin *p, const char *name, int kind, const char *key,
                    json_t *args, cps_rpc_done_fn done, void *ud);
    void (*rpc_reply)(cps_rpc *rpc, json_t *value);          /* steals value */
    void (*rpc_error)(cps_rpc *rpc, const char *code);
    const char *(*rpc_key)(cps_rpc *rpc);   /* caller's public key or NULL */
    const char *(*rpc_name)(cps_rpc *rpc);

    /* -- client sessions (1.0) -- */

    /* Become the owner of client websocket sessions.  One plugin per
    ** process; a second is refused with CPS_EEXIST. */
    int (*session_handler)(cps_plugin *p, const cps_session_handler *h, void *ud);
    /* Queue a frame (takes its own reference).  CPS_ECLOSED if the session is
    ** closing; a session whose queue exceeds limits.max_send_queue is
    ** dropped (on_close follows) and CPS_EBUSY returned. */
    int (*session_send)(cps_session *s, cps_frame *f);
    /* Close with a websocket close code after the queued frames. */
    void (*session_close)(cps_session *s, int code, const char *reason);
    uint64_t (*session_id)(cps_session *s);        /* unique per process */
    void (*session_set_data)(cps_session *s, void *data);
    void *(*session_data)(cps_session *s);
    /* Peer address as text ("127.0.0.1"), for logs. */
    const char *(*session_peer)(cps_session *s);
    size_t (*session_queued)(cps_session *s);      /* bytes waiting to go out */

    /* Frames: built once, shared by every session that sends them. */
    cps_frame *(*frame_new)(const char *text, size_t len);  /* copies text */
    cps_frame *(*frame_json)(json_t *v);  /* compact JSON; borrowed; NULL on error */
    cps_frame *(*frame_ref)(cps_frame *f);
    void (*frame_unref)(cps_frame *f);

    /* -- timers and the thread pool (1.0) -- */

    /* A timer owned by the plugin (stopped for it at unload).  repeat_ms 0 =
    ** one shot; a one-shot timer is freed after its callback runs. */
    cps_timer *(*timer_start)(cps_plugin *p, uint64_t after_ms, uint64_t repeat_ms,
                              cps_timer_fn fn, void *ud);
    void (*timer_stop)(cps_timer *t);               /* frees it */
    /* Run `work` on the thread pool, then `after` on the loop. */
    int (*work)(cps_plugin *p, cps_work_fn work, cps_after_work_fn after, void *ud);
    uint64_t (*now_ms)(void);                       /* wall clock, ms since epoch */

    const char *(*strerror)(int code);              /* "EINVAL", ... */

    /* -- storage backends (1.1), see cps_storage.h -- */

    /* Make a backend available under b->name.  `b` must stay valid until the
    ** plugin is unloaded.  CPS_EEXIST for a name already registered,
    ** CPS_EVERSION if b->version is not one this host knows. */
    int (*register_storage)(cps_plugin *p, const cps_storage_backend *b);
    /* The backend called `name`, or with NULL the one the configuration
    ** selects (`storage_backend`); NULL if there is none. */
    const cps_storage_backend *(*storage)(cps_plugin *p, const char *name);

    /* -- flow control (1.1) -- */

    /* Call `fn` once, on the loop, as soon as the session has at most
    ** `below` bytes queued (at once if it already has).  One watch per
    ** session: a new one replaces the previous.  Never called if the
    ** session closes first (on_close is). */
    int (*session_on_drain)(cps_session *s, size_t below,
                            void (*fn)(cps_session *s, void *ud), void *ud);

    /* -- feature plugins spanning roles (1.2) -- */

    /* Register an inter-node command on this process's node of `role`
    ** (a feature plugin's storage half, say).  CPS_ENOENT if this process
    ** runs no node of that role: the plugin then simply skips that half. */
    int (*register_role_command)(cps_plugin *p, const char *role, const char *name,
                                 cps_command_fn fn, void *ud);
    /* rpc_call with the caller's identity: `caller` is an opaque string the
    ** dispatcher chooses (the netflux user id), readable by the handler
    ** with rpc_caller(). */
    int (*rpc_call_as)(cps_plugin *p, const char *name, int kind, const char *key,
                       const char *caller, json_t *args, cps_rpc_done_fn done, void *ud);
    const char *(*rpc_caller)(cps_rpc *rpc);
    /* The kind (CPS_RPC_*) of a registered RPC command, or CPS_ENOENT. */
    int (*rpc_kind)(cps_plugin *p, const char *name);

    /* -- HTTP (1.3): routes beside the websocket, on every listening port -- */

    /* Route requests whose path starts with `prefix` ("/api/", or "/" for a
    ** fallback) and whose method is `method` ("GET" also takes HEAD; "*"
    ** any).  The longest matching prefix wins; a second registration of the
    ** same method and prefix is refused (CPS_EEXIST).  Bodies longer than
    ** max_body are refused with 413 before the handler runs. */
    int (*register_http)(cps_plugin *p, const char *method, const char *prefix,
                         size_t max_body, cps_http_fn fn, void *ud);
    const char *(*http_method)(cps_http *r);     /* "GET", "HEAD", "POST", ... */
    /* The path without the query, already %-decoded, "//" collapsed and
    ** ".." resolved by the HTTP layer (a decoded NUL is refused with 400). */
    const char *(*http_path)(cps_http *r);
    const char *(*http_query)(cps_http *r);      /* after '?' (still encoded), or "" */
    /* A request header by lowercase name ("range"), or NULL. */
    const char *(*http_header)(cps_http *r, const char *name);
    const char *(*http_body)(cps_http *r, size_t *len);
    int (*http_port)(cps_http *r);               /* the local port it came to */
    /* Answer with a body (copied).  `headers` (borrowed, may be NULL) is an
    ** object name -> string value; Content-Length is set by the host, and a
    ** HEAD request gets the headers only. */
    int (*http_respond)(cps_http *r, int status, json_t *headers, const char *body, size_t len);
    /* Answer with `len` bytes of the file at `path` from `offset` (len
    ** UINT64_MAX: to the end), read on the thread pool a chunk at a time, so
    ** any size goes out in bounded memory.  CPS_ENOENT if it cannot be
    ** opened (then the request still needs an answer). */
    int (*http_respond_file)(cps_http *r, int status, json_t *headers, const char *path,
                             uint64_t offset, uint64_t len);

    /* Be told when the link to another node of the cluster is lost (its
    ** pending queries have failed with "EUNAVAILABLE" already): e.g. forget
    ** the users of a front that died.  Several watchers may register. */
    int (*on_peer_down)(cps_plugin *p, void (*fn)(const char *node, void *ud), void *ud);

    /* Whether `node` ("storage:1") runs in this process. */
    bool (*node_is_local)(cps_plugin *p, const char *node);

    /* Answer with `len` bytes that the plugin produces as it goes (bytes
    ** fetched from another node, say): after the headers, the host calls
    ** more(req, ud) each time it can send another chunk, and the plugin
    ** answers each call with one http_write (now or later).  The request is
    ** released by the http_write that completes `len`, by an http_write
    ** with n = 0 (abort: the connection is closed), or by the http_write
    ** that finds the client gone (it returns CPS_ECLOSED): the plugin must
    ** not use `req` after any of these.  more() is never called for HEAD. */
    int (*http_respond_stream)(cps_http *r, int status, json_t *headers, uint64_t len,
                               void (*more)(cps_http *r, void *ud), void *ud);
    int (*http_write)(cps_http *r, const char *data, size_t n);
} cps_api;

/* ---- the entry point ------------------------------------------------- */

/* What a plugin tells the host about itself, filled in by cps_plugin_init. */
typedef struct cps_plugin_info {
    const char *name;          /* short name, e.g. "front" */
    const char *version;       /* the plugin's own version */
    uint16_t abi_major;        /* CPS_ABI_MAJOR it was built with */
    uint16_t abi_minor;        /* CPS_ABI_MINOR it was built with */
    /* Called at unload, on the loop, before the shared object is closed.
    ** Pending queries and work are cancelled by the host afterwards. */
    void (*fini)(cps_plugin *self, void *state);
    void *state;               /* passed to fini */
} cps_plugin_info;

/* Every .so plugin exports exactly this symbol.  It first fills `info`
** (with at least abi_major/abi_minor = CPS_ABI_*), and returns CPS_EVERSION
** if `api` is too old for it; then it registers what it provides.  Return
** CPS_OK, or a negative code to refuse loading. */
#define CPS_PLUGIN_ENTRY "cps_plugin_init"
typedef int (*cps_plugin_init_fn)(const cps_api *api, cps_plugin *self,
                                  cps_plugin_info *info);

#if defined(__GNUC__)
#define CPS_EXPORT __attribute__((visibility("default")))
#else
#define CPS_EXPORT
#endif

/* Convenience for plugin authors: what every cps_plugin_init states first
** (its name, its version, the ABI it was built against)... */
#define CPS_PLUGIN_INFO(info, plugin_name, plugin_version) \
    ((info)->name = (plugin_name), (info)->version = (plugin_version), \
     (info)->abi_major = CPS_ABI_MAJOR, (info)->abi_minor = CPS_ABI_MINOR)

/* ...and the standard version check. */
#define CPS_API_CHECK(api) \
    ((api)->major != CPS_ABI_MAJOR || (api)->minor < CPS_ABI_MINOR)

#ifdef __cplusplus
}
#endif
#endif /* CPS_H */
