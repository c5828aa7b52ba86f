/*
** cps.h - the one header a cpsd plugin includes: the stable plugin ABI.
**
** A plugin is a shared object exporting one descriptor, cps_plugin_entry
** (see CPS_PLUGIN_DEFINE at the end), or a Lua 5.4 script using the `cps`
** module (same services, see lua/README.md).  The host passes a table of
** function pointers (cps_api) that the plugin keeps for its whole life, in
** the manner of sqlite3_api_routines and redismodule.h.  The host knows no
** CryptPad concept; everything specific to CryptPad (netflux, history, RPC
** commands) lives in plugins.  docs/plugin-guide.md explains the concepts.
**
** VERSIONING (ABI 2.0)
**   The ABI has a major and a minor number.  The host reads the plugin's
**   descriptor BEFORE running any of its code and refuses it, with a log
**   line saying why, unless:
**     - its major equals the host's (a new major breaks plugins on purpose);
**     - its minor is at most the host's (a plugin built against a newer minor
**       may call functions this host lacks);
**     - the table size it was built against (api_size) is at most the
**       host's sizeof(cps_api), and its descriptor is at least as large as
**       a 2.0 descriptor.
**   So a plugin built against 2.M runs on every host 2.N with N >= M.
**   Rules for maintainers: functions are only ever appended to cps_api;
**   every append (to cps_api or to cps_storage_backend) bumps CPS_ABI_MINOR
**   and adds a row to the table below (tests/unit/test_abi.c records both
**   tables' sizes at each minor and fails otherwise); structs a plugin fills or
**   receives (cps_plugin_def, cps_session_handler, cps_storage_backend)
**   start with their size and are only appended to, so the host reads only
**   the fields the plugin's size covers.  A plugin may test for a function
**   with CPS_API_HAS(api, fn) before calling it.
**
**   function                          since    function                since
**   self_node config config_get       2.0      session_* (all)         2.0
**   data_dir log counter counter_add  2.0      frame_new frame_json    2.0
**   register_command                  2.0      frame_ref frame_unref   2.0
**   register_role_command             2.0      timer_start timer_stop  2.0
**   send query reply call_from        2.0      work now_ms             2.0
**   owner role_count node_is_local    2.0      errname errcode         2.0
**   on_peer_down                      2.0      register_storage        2.0
**   register_rpc rpc_call rpc_kind    2.0      storage                 2.0
**   rpc_reply rpc_error rpc_key       2.0      register_http http_*    2.0
**   rpc_name rpc_caller               2.0      http_respond*           2.0
**   rpc_end_session                   2.0      http_write              2.0
**   rpc_describe                      2.1
**   histogram histogram_observe       2.1
**   instance_set                      2.1
**   on_peer_up node_is_up owner_live  2.1
**   session_pause                     2.3
**   watch_start watch_set watch_stop  2.4
**   cps_storage_backend members (check with CPS_STORAGE_HAS):
**   raw_spaces raw_list raw_size      2.1      obj_restore             2.2
**   raw_read raw_write lease          2.1      pin_restore             2.2
**
** THREADS
**   Every function in the table must be called on the event-loop thread,
**   except errname (any thread).  Only the work function given to
**   api->work runs on a thread-pool thread, and it must not call the table.
**
** OWNERSHIP (one rule per kind of object)
**   JSON: a function that hands a value on (to another node, a client, a
**     handler: send, query, reply, rpc_call, rpc_reply) STEALS the caller's
**     reference, as json_array_append_new does, even when it fails.  A
**     function that only reads a value (frame_json, the headers of
**     http_respond*) BORROWS it.  Values passed to a callback are borrowed:
**     valid during the callback; json_incref to keep one.  Treat received
**     JSON as read-only: in one process it is shared, not copied.
**   Requests the host lends (cps_call, cps_rpc, cps_http): valid from the
**     handler until the plugin answers it exactly once (reply; rpc_reply or
**     rpc_error; http_respond, http_respond_file, or the http_write that
**     ends a stream).  The answer releases it; do not touch it afterwards.
**     A handler that returns without answering and without CPS_ASYNC has
**     the host answer for it.
**   Handles the plugin creates: it owns them until it gives them back with
**     the matching function: frames (frame_new/frame_json -> frame_unref,
**     refcounted with frame_ref), timers (timer_start -> timer_stop; a
**     one-shot timer gives itself back when it fires, so its handle is
**     invalid once its callback returns), watches (watch_start ->
**     watch_stop; the descriptor itself stays the plugin's).  Counters and histograms belong
**     to the host and live as long as the process.  Whatever a plugin
**     still holds when it is unloaded (timers, watches, registrations,
**     pending queries and work) is cancelled and released by the host after
**     fini.
**
** ERRORS
**   Functions return CPS_OK (0) or a negative code from cps_errors.h;
**   callbacks receive the same codes.  Every code has one wire name
**   (api->errname), and api->errcode maps a name back, so an error keeps
**   its identity across nodes, Lua scripts and clients.
*/
#ifndef CPS_H
#define CPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>
#include <jansson.h>
#include "cps_errors.h"
#include "cps_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CPS_ABI_MAJOR 2
#define CPS_ABI_MINOR 4

/* Log levels, lowest is most severe. */
enum { CPS_LOG_ERROR = 0, CPS_LOG_WARN = 1, CPS_LOG_INFO = 2, CPS_LOG_DEBUG = 3 };

/* RPC command kinds: who may call a command is decided by the plugin that
** dispatches client requests, from the kind the command registered with. */
enum {
    CPS_RPC_ANON   = 0,   /* anyone, unsigned */
    CPS_RPC_AUTH   = 1,   /* a signed call by the holder of a key */
    CPS_RPC_ADMIN  = 2,   /* a signed call by an administrator's key */
    CPS_RPC_COOKIE = 3    /* a key's open session (valid cookie), unsigned:
                          ** for bulk data sent in many calls */
};

/* Flags the dispatcher receives with an RPC answer (cps_rpc_done_fn). */
enum {
    CPS_RPC_END_SESSION = 1   /* the handler asked (rpc_end_session) that the
                              ** caller's session end with this answer */
};

/* Opaque handles.  No layout is visible to plugins. */
typedef struct cps_plugin  cps_plugin;   /* the loaded plugin itself */
typedef struct cps_session cps_session;  /* one client websocket connection */
typedef struct cps_frame   cps_frame;    /* an immutable, refcounted text frame */
typedef struct cps_call    cps_call;     /* an incoming inter-node message */
typedef struct cps_rpc     cps_rpc;      /* one invocation of an RPC command */
typedef struct cps_timer   cps_timer;
typedef struct cps_watch   cps_watch;    /* a descriptor watched on the loop (2.4) */
typedef struct cps_counter cps_counter;
typedef struct cps_histogram cps_histogram;   /* a latency histogram (2.1) */
typedef struct cps_http    cps_http;     /* one HTTP request */

/* ---- callbacks ------------------------------------------------------- */

/* Inter-node command handler.  `args` is borrowed.  Return CPS_OK (the
** host replies null to a query if the handler did not reply), CPS_ASYNC (the
** handler keeps `call` and must call api->reply exactly once later), or a
** negative code (the host replies with that error).  Events (api->send)
** are delivered the same way; a handler that returns CPS_ASYNC for an event
** still calls api->reply once (it only releases the call). */
typedef int (*cps_command_fn)(cps_call *call, json_t *args, void *ud);

/* Result of api->query: `err` is CPS_OK on success, else a code such as
** CPS_ETIMEDOUT, CPS_ENOENT (no such node or command), CPS_EUNAVAILABLE
** (the link to that node was lost) or whatever the handler replied; `data`
** is borrowed (may be NULL). */
typedef void (*cps_reply_fn)(void *ud, int err, json_t *data);

/* RPC command handler.  `args` is borrowed.  Same return contract as
** cps_command_fn, replying with api->rpc_reply / api->rpc_error. */
typedef int (*cps_rpc_fn)(cps_rpc *rpc, json_t *args, void *ud);

/* Result of api->rpc_call: `err` is CPS_OK and `value` the answer
** (borrowed; NULL means JSON null), or `err` is the error.  `flags` is a
** set of CPS_RPC_END_SESSION etc. */
typedef void (*cps_rpc_done_fn)(void *ud, int err, json_t *value, unsigned flags);

/* Session events, for the one plugin that owns client connections.  Set
** `size` to sizeof(cps_session_handler). */
typedef struct cps_session_handler {
    size_t size;
    void (*on_open)(cps_session *s, void *ud);
    /* One complete websocket text message (UTF-8 already validated, at most
    ** limits.max_frame bytes, NUL-terminated for convenience). */
    void (*on_frame)(cps_session *s, const char *data, size_t len, void *ud);
    /* The connection is gone.  `s` is invalid once this returns. */
    void (*on_close)(cps_session *s, void *ud);
} cps_session_handler;

typedef void (*cps_timer_fn)(cps_timer *t, void *ud);
/* A watched descriptor is ready (2.4): `events` is what of CPS_WATCH_READ
** and CPS_WATCH_WRITE it is ready for, or status < 0 (a CPS_E* code: the
** loop could not poll it; events is then 0 and the watch stays as it was). */
typedef void (*cps_watch_fn)(cps_watch *w, int status, int events, void *ud);
#define CPS_WATCH_READ  1
#define CPS_WATCH_WRITE 2
/* Runs on a thread-pool thread: no api calls, no Lua, no loop state. */
typedef void (*cps_work_fn)(void *ud);
/* Runs on the loop thread afterwards; status is CPS_OK or CPS_ECANCELED
** (the host is shutting down: release `ud`, do nothing else). Always called
** exactly once. */
typedef void (*cps_after_work_fn)(void *ud, int status);

/* HTTP route handler.  The request's body (up to the route's
** max_body) has been read.  Answer with exactly one http_respond or
** http_respond_file, now (return CPS_OK) or later (return CPS_ASYNC); a
** negative return answers with a status for it (EINVAL 400, ENOENT 404,
** EFORBIDDEN 403, EBUSY and EUNAVAILABLE 503, others 500).  If the client went away meanwhile, the answer
** is discarded. */
typedef int (*cps_http_fn)(cps_http *req, void *ud);

/* ---- the function table ---------------------------------------------- */

typedef struct cps_api {
    size_t   size;          /* sizeof(cps_api) as the host built it */
    uint16_t major;         /* CPS_ABI_MAJOR of the host */
    uint16_t minor;         /* CPS_ABI_MINOR of the host */

    /* -- identity and configuration -- */

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

    /* -- logging and metrics -- */
    void (*log)(cps_plugin *p, int level, const char *fmt, ...)
#if defined(__GNUC__)
        __attribute__((format(printf, 3, 4)))
#endif
        ;
    /* A named counter, created on first use, shared by name host-wide and
    ** shown at GET /metrics.  Never NULL. */
    cps_counter *(*counter)(cps_plugin *p, const char *name);
    void (*counter_add)(cps_counter *c, int64_t delta);

    /* -- inter-node messaging through the router -- */

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
    ** later loop turn: with the reply, or with CPS_ENOENT, CPS_ETIMEDOUT,
    ** CPS_EBUSY, CPS_ECANCELED, CPS_EUNAVAILABLE.  timeout_ms 0 = the
    ** configured default.  A negative return means `cb` will not be called:
    ** only CPS_ECANCELED while the process stops, or CPS_ENOMEM.  (Before
    ** 2.3 a full table of pending queries returned CPS_EBUSY here instead of
    ** through `cb`: check the return if you may run on such a host.) */
    int (*query)(cps_plugin *p, const char *node, const char *cmd, json_t *args,
                 unsigned timeout_ms, cps_reply_fn cb, void *ud);
    /* Answer a call (once): `err` CPS_OK with `data` (stolen, may be NULL),
    ** or a negative code.  The call is released by this function. */
    void (*reply)(cps_call *call, int err, json_t *data);
    /* The node that sent `call` ("front:0"). */
    const char *(*call_from)(cps_call *call);
    /* The node of `role` that owns `key` (jump consistent hash over the
    ** role's node count, key derived as docs/protocol/cluster.md 3.1).  Writes into
    ** buf (>= 32 bytes) and returns it, or NULL if the role has no nodes. */
    const char *(*owner)(cps_plugin *p, const char *role, const char *key,
                         char *buf, size_t buflen);
    /* Number of nodes of a role in the topology (0 if none). */
    int (*role_count)(cps_plugin *p, const char *role);

    /* -- client RPC commands -- */

    /* Register a client RPC command by name (host-wide registry).  A
    ** duplicate name is refused (CPS_EEXIST) with a log line naming both
    ** plugins. */
    int (*register_rpc)(cps_plugin *p, const char *name, int kind,
                        cps_rpc_fn fn, void *ud);
    /* Invoke a registered RPC command (for the plugin that dispatches client
    ** requests).  `key` is the caller's authenticated public key or NULL;
    ** `caller` an opaque string the dispatcher chooses (the netflux user
    ** id), readable by the handler with rpc_caller(); both are copied.
    ** Steals `args`.  `done` is called exactly once, possibly before
    ** rpc_call returns.  Returns CPS_ENOENT (done not called) if no such
    ** command, or if its kind is not `kind`. */
    int (*rpc_call)(cps_plugin *p, const char *name, int kind, const char *key,
                    const char *caller, json_t *args, cps_rpc_done_fn done, void *ud);
    /* The kind (CPS_RPC_*) of a registered RPC command, or CPS_ENOENT. */
    int (*rpc_kind)(cps_plugin *p, const char *name);
    void (*rpc_reply)(cps_rpc *rpc, json_t *value);          /* steals value */
    void (*rpc_error)(cps_rpc *rpc, int err);
    const char *(*rpc_key)(cps_rpc *rpc);   /* caller's public key or NULL */
    const char *(*rpc_name)(cps_rpc *rpc);
    const char *(*rpc_caller)(cps_rpc *rpc);
    /* Ask the dispatcher to end the caller's session (its cookie) once this
    ** call is answered: the answer carries CPS_RPC_END_SESSION. */
    void (*rpc_end_session)(cps_rpc *rpc);

    /* -- client sessions -- */

    /* Become the owner of client websocket sessions.  One plugin per
    ** process; a second is refused with CPS_EEXIST. */
    int (*session_handler)(cps_plugin *p, const cps_session_handler *h, void *ud);
    /* Queue a frame (takes its own reference).  CPS_ECLOSED if the session is
    ** closing.  An empty queue takes one frame of any size (the limit
    ** bounds the backlog, not a message); otherwise a session whose queue
    ** would exceed limits.max_send_queue is dropped (on_close follows) and
    ** CPS_EBUSY returned. */
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

    /* -- timers and the thread pool -- */

    /* A timer owned by the plugin (stopped for it at unload).  repeat_ms 0 =
    ** one shot; a one-shot timer is freed after its callback runs. */
    cps_timer *(*timer_start)(cps_plugin *p, uint64_t after_ms, uint64_t repeat_ms,
                              cps_timer_fn fn, void *ud);
    void (*timer_stop)(cps_timer *t);               /* frees it */
    /* Run `work` on the thread pool, then `after` on the loop. */
    int (*work)(cps_plugin *p, cps_work_fn work, cps_after_work_fn after, void *ud);
    uint64_t (*now_ms)(void);                       /* wall clock, ms since epoch */

    /* The wire name of an error code ("EINVAL", "E_OVER_LIMIT"), never NULL;
    ** and the code of a wire name (see cps_errors.h: names outside the table
    ** get a code of their own; CPS_EUNKNOWN only for NULL/empty or once the
    ** bounded table of such names is full). */
    const char *(*errname)(int code);
    int (*errcode)(const char *name);

    /* -- storage backends, see cps_storage.h -- */

    /* Make a backend available under b->name.  `b` must stay valid until the
    ** plugin is unloaded.  CPS_EEXIST for a name already registered,
    ** CPS_EVERSION if b->size or b->version is not one this host knows. */
    int (*register_storage)(cps_plugin *p, const cps_storage_backend *b);
    /* The backend called `name`, or with NULL the one the configuration
    ** selects (`storage_backend`); NULL if there is none. */
    const cps_storage_backend *(*storage)(cps_plugin *p, const char *name);

    /* -- flow control -- */

    /* Call `fn` once, on the loop, as soon as the session has at most
    ** `below` bytes queued (at once if it already has).  One watch per
    ** session: a new one replaces the previous.  Never called if the
    ** session closes first (on_close is). */
    int (*session_on_drain)(cps_session *s, size_t below,
                            void (*fn)(cps_session *s, void *ud), void *ud);

    /* -- feature plugins spanning roles -- */

    /* Register an inter-node command on this process's node of `role`
    ** (a feature plugin's storage half, say).  CPS_ENOENT if this process
    ** runs no node of that role: the plugin then simply skips that half. */
    int (*register_role_command)(cps_plugin *p, const char *role, const char *name,
                                 cps_command_fn fn, void *ud);

    /* -- HTTP: routes beside the websocket, on every listening port -- */

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
    ** pending queries have failed with CPS_EUNAVAILABLE already): e.g. forget
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
    ** not use `req` after any of these.  more() is never called for HEAD.
    ** A client that goes away while the host holds no more() call gets
    ** one more() call anyway, so the plugin's next http_write sees
    ** CPS_ECLOSED and the plugin can release its side of the stream. */
    int (*http_respond_stream)(cps_http *r, int status, json_t *headers, uint64_t len,
                               void (*more)(cps_http *r, void *ud), void *ud);
    int (*http_write)(cps_http *r, const char *data, size_t n);

    /* ---- since 2.1 (check with CPS_API_HAS) ---- */

    /* Give a registered RPC command a one-line description (copied), shown
    ** by listings such as `cpsd admin help`.  CPS_ENOENT if no such command;
    ** a later call replaces the text. */
    int (*rpc_describe)(cps_plugin *p, const char *name, const char *summary);

    /* A latency histogram, created on first use and shared by name host-wide
    ** like counters (the same name gives the same histogram, whichever
    ** plugin asks), shown at GET /metrics as the family cpsd_<name>, so name
    ** it for what it times and its unit, e.g. "storage_append_seconds".
    ** help is one line for the HELP text (copied; the first creator's stays;
    ** NULL for a generic one).  The buckets are fixed, 1 ms to 10 s, the same
    ** for every histogram (docs/plugin-guide.md).  NULL only for a NULL or
    ** empty name.  Like counters, it belongs to the host and lives as long as
    ** the process. */
    cps_histogram *(*histogram)(cps_plugin *p, const char *name, const char *help);
    /* Count one observation of `seconds` (negative or NaN counts as 0).
    ** A NULL histogram is ignored. */
    void (*histogram_observe)(cps_histogram *h, double seconds);
    /* Set a live instance setting: from now on config_get("instance.<key>")
    ** (and a Lua script's cps.config) returns `value` instead of the
    ** configuration's, in this process.  `key` is [a-z0-9_]{1,64}; steals
    ** `value`; NULL or JSON null removes the live value (the configured one
    ** shows again).  CPS_EINVAL for a bad key, CPS_EBUSY beyond 256 keys.
    ** What changes at run time (admin decrees: restrict_registration,
    ** admin_keys, custom_limits ...) is read through config_get at each use,
    ** never cached at init.  Only this process sees it: the admin decree
    ** scripts (lua/admin/decrees.lua) apply every decree on every node of a
    ** cluster, each node setting its own values (docs/plugin-guide.md). */
    int (*instance_set)(cps_plugin *p, const char *key, json_t *value);
    /* Liveness, as this process sees it (docs/protocol/cluster.md §11.2): a
    ** node of this process is always up, another one while its link is
    ** established.  Be told when a link to another node comes up (the
    ** counterpart of on_peer_down).  Several watchers may register. */
    int (*on_peer_up)(cps_plugin *p, void (*fn)(const char *node, void *ud), void *ud);
    /* Whether `node` is up now (false for an unknown node). */
    bool (*node_is_up)(cps_plugin *p, const char *node);
    /* Like owner, but skipping nodes that are down: the owner if it is up,
    ** else the first node of the role up after it in index order (wrapping
    ** around), else the owner.  Processes that see the same nodes up agree.
    ** Writes into buf (>= 32 bytes); NULL if the role has no nodes. */
    const char *(*owner_live)(cps_plugin *p, const char *role, const char *key,
                              char *buf, size_t buflen);

    /* ---- since 2.3 (check with CPS_API_HAS) ---- */

    /* Stop (paused = true) or resume reading a connection.  While paused
    ** no on_frame is called for it: its bytes wait in the kernel, and TCP
    ** makes the client wait in turn.  Sending and closing are unaffected.
    ** Frames already read when it is paused may still arrive.  This is how
    ** a plugin bounds the work one connection can have in flight without
    ** refusing an honest client (docs/plugin-guide.md §5).  Idempotent; a
    ** NULL or closing session is ignored. */
    void (*session_pause)(cps_session *s, bool paused);

    /* ---- since 2.4 (check with CPS_API_HAS) ---- */

    /* Watch a descriptor the plugin owns (a database client's socket, a
    ** pipe) on the loop, so that a library with a non-blocking API can be
    ** driven without a thread: fn runs on the loop whenever fd is ready for
    ** one of `events` (CPS_WATCH_READ, CPS_WATCH_WRITE, or both), until the
    ** watch is stopped.  Level-triggered: fn runs again on the next turn
    ** while the descriptor stays ready.  One watch per descriptor.  NULL if
    ** fd is not one the loop can poll (a regular file) or out of memory.
    ** Stopped by the host at unload, after fini (docs/plugin-guide.md §7). */
    cps_watch *(*watch_start)(cps_plugin *p, int fd, int events, cps_watch_fn fn, void *ud);
    /* Change what the watch waits for; 0 pauses it.  CPS_OK, or CPS_EINVAL
    ** for a NULL watch or bits other than the two above. */
    int (*watch_set)(cps_watch *w, int events);
    /* Stop and free the watch; from now on fn is not called and the
    ** descriptor may be closed.  NULL is ignored.  Also from within fn. */
    void (*watch_stop)(cps_watch *w);
} cps_api;

/* ---- the entry point ------------------------------------------------- */

/* What a plugin exports, as the constant object `cps_plugin_entry`: the
** host reads it before running any of the plugin's code, checks the ABI
** (see VERSIONING), then calls init.  Use CPS_PLUGIN_DEFINE to fill it. */
typedef struct cps_plugin_def {
    size_t size;            /* sizeof(cps_plugin_def) as the plugin was built */
    uint16_t abi_major;     /* CPS_ABI_MAJOR it was built with */
    uint16_t abi_minor;     /* CPS_ABI_MINOR it was built with */
    size_t api_size;        /* sizeof(cps_api) it was built with */
    const char *name;       /* short name, e.g. "front" */
    const char *version;    /* the plugin's own version */
    /* Registers what the plugin provides.  May set *state, which is passed
    ** to fini.  Return CPS_OK, or a negative code to refuse loading (the
    ** host then undoes whatever it registered; fini is not called). */
    int (*init)(const cps_api *api, cps_plugin *self, void **state);
    /* Called at unload, on the loop, before the shared object is closed;
    ** may be NULL.  Pending queries, timers and work are cancelled by the
    ** host afterwards. */
    void (*fini)(cps_plugin *self, void *state);
} cps_plugin_def;

#define CPS_PLUGIN_SYMBOL "cps_plugin_entry"

#if defined(__GNUC__)
#define CPS_EXPORT __attribute__((visibility("default")))
#else
#define CPS_EXPORT
#endif

/* In exactly one file of a plugin:
**     CPS_PLUGIN_DEFINE("hello", "1.0", hello_init, hello_fini);          */
#define CPS_PLUGIN_DEFINE(plugin_name, plugin_version, init_fn, fini_fn) \
    CPS_EXPORT const cps_plugin_def cps_plugin_entry = { \
        sizeof(cps_plugin_def), CPS_ABI_MAJOR, CPS_ABI_MINOR, sizeof(cps_api), \
        (plugin_name), (plugin_version), (init_fn), (fini_fn) }

/* Whether the host's table has function `fn` (for a plugin that uses a
** function newer than the minor it requires, when the host has it). */
#define CPS_API_HAS(api, fn) \
    ((api)->size >= offsetof(cps_api, fn) + sizeof((api)->fn))

#ifdef __cplusplus
}
#endif
#endif /* CPS_H */
