/*
** pg.c - the "pg" storage backend (cps_storage.h) on PostgreSQL.  The
** loop-thread half: id checks (the same as storage-fs), one FIFO queue per
** object, batches handed to the thread pool, each one transaction (pg_io.c).
*/
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cps.h"
#include "ids.h"
#include "strmap.h"
#include "pg.h"

/* Requests of one queue handed to the pool at once, run as one transaction:
** appends to a channel that queued up while one was in flight are committed
** together (group commit), and none is acknowledged before that commit. */
#define BATCH_MAX 32

/* One queue per object with requests pending: requests on the same object
** run one batch at a time, in submission order; different objects run in
** parallel on the pool, each on a connection of the bounded pool.  Freed
** as soon as it is idle.  Not a keyqueue (plugins/common): it hands up to
** BATCH_MAX requests to the pool at once rather than one at a time. */
typedef struct pg_queue {
    pg_obj obj;
    char key[2 + 48 + 129];    /* "c:<id>", "p:<key>", "o:<store>/<key>" (records too), "w:<space>/<name>" */
    pg_req *head, *tail;       /* waiting, in order */
    pg_req *batch;             /* on the pool (or its callbacks running) */
    struct pg_queue *rnext;    /* on PG.ready: its batch waits for a train */
    bool failed;               /* the batch's transaction failed (pool thread) */
    bool fenced;               /* ... because its lease epoch is stale (lease.c) */
    char err[256];             /* why, for the log */
} pg_queue;

static struct {
    const cps_api *api;
    cps_plugin *self;
    pg_pool *pool;             /* thread-safe: used by the pool jobs */
    size_t pool_size;          /* connections, and batches on the pool at most */
    size_t limit;              /* requests accepted and not yet completed */
    size_t pending;
    size_t inflight;           /* batches on the pool or waiting for a train */
    pg_queue *ready, *ready_tail;   /* channels whose append batch waits for a train */
    size_t trains;             /* trains on the pool */
    size_t max_trains;         /* storage_pg.append_trains */
    bool trains_on_loop;       /* storage_pg.trains_on_loop */
    struct pg_train *on_loop;  /* trains driven from the loop, in flight */
    bool holding;              /* completing a train: collect, start trains after */
    bool closing;              /* fini ran: refuse, drain, then free */
    strmap *queues;            /* key -> pg_queue */
    /* /metrics: committed transactions with channel appends, and those
    ** appends; fewer transactions than appends is group commit at work. */
    cps_counter *c_commits, *c_appends;
    cps_counter *c_loop;       /* trains sent from the loop (the rest took the pool) */
    cps_storage_backend backend;
} PG;                          /* the plugin singleton */

/* ---- id checks (before any path is built) ----------------------------- */

static bool chars_ok(const char *s, size_t n, const char *extra, bool upper)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (upper && c >= 'A' && c <= 'Z')) continue;
        if (!c || !strchr(extra, c)) return false;
    }
    return true;
}

/* docs/protocol/storage.md 2 says 32 <= len < 50; 48 (a blob id) is the longest in use. */
static bool valid_channel(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 49);
    return n >= 32 && n <= 48 && chars_ok(s, n, "+=-", true);
}

/* Keys reach a backend in their safe form (docs/protocol/netflux.md §3). */
static bool valid_key(const char *s) { return ids_is_safe_key(s); }

static bool valid_ns(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 33);
    return n >= 1 && n <= 32 && chars_ok(s, n, "_-", false);
}

static bool valid_rkey(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 129);
    return n >= 1 && n <= 128 && chars_ok(s, n, "_=+-", true);
}

/* Object stores: [a-z]{1,16}.  "archive" is refused: data/archive/ is the
** archive tree itself, a store of that name would mix with it. */
static bool valid_store(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 17);
    if (n < 1 || n > 16 || !strcmp(s, "archive")) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 'a' || s[i] > 'z') return false;
    return true;
}

/* Object keys: [A-Za-z0-9+=_.-]{1,128} without "..".  A leading '.' is
** refused too: "." would name the prefix directory itself. */
static bool valid_okey(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 129);
    return n >= 1 && n <= 128 && s[0] != '.' && !strstr(s, "..") && chars_ok(s, n, "+=_.-", true);
}

/* ---- queues ----------------------------------------------------------- */

static void req_free(pg_req *r)
{
    free(r->in);
    free(r->out);
    free(r);
}

static const char *kind_name(int kind)
{
    return kind == PG_CHANNEL ? "channel" : kind == PG_PIN ? "pin log" : kind == PG_RECORD ? "record" :
           kind == PG_LEASE ? "lease of slot" : "object";
}

/* Calls the request's callback once with its outcome, then frees it. */
static void complete(pg_queue *q, pg_req *r, int status)
{
    bool ok = status == CPS_OK;
    switch (r->op) {
    case OP_RAW_SPACES: case OP_RAW_LIST: {
        /* r->out holds r->size NUL-separated names */
        size_t n = ok ? (size_t)r->size : 0;
        const char **names = n ? malloc(n * sizeof *names) : NULL;
        if (n && !names) { status = CPS_ENOMEM; n = 0; }
        const char *p = r->out;
        for (size_t i = 0; i < n; i++) { names[i] = p; p += strlen(p) + 1; }
        if (r->cb.list) r->cb.list(r->ud, status, names, n, status == CPS_OK && r->eof);
        free(names);
        break;
    }
    case OP_APPEND: case OP_SIZE: case OP_META_APPEND: case OP_OBJ_APPEND: case OP_OBJ_SIZE:
    case OP_RAW_SIZE: case OP_RAW_WRITE:
        if (r->cb.size) r->cb.size(r->ud, status, ok || status == CPS_ENOENT ? r->size : 0);
        break;
    case OP_READ: case OP_OBJ_READ: case OP_RAW_READ:
        if (r->cb.read) r->cb.read(r->ud, status, ok ? r->out : NULL, ok ? r->outlen : 0,
                                   ok ? r->next_off : r->arg, ok && r->eof);
        break;
    case OP_LEASE:
        pg_lease_noted(r, status);
        if (r->cb.lease) r->cb.lease(r->ud, status, r->size, r->out ? r->out : "");
        break;
    case OP_PLACEHOLDER: case OP_META_READ: case OP_PIN_READ: case OP_REC_GET:
        if (r->cb.data) r->cb.data(r->ud, status, ok ? r->out : NULL, ok ? r->outlen : 0);
        break;
    default:
        if (r->cb.done) r->cb.done(r->ud, status);
    }
    PG.pending--;
    req_free(r);
}

/* Cancels a detached list of requests that never ran. */
static void cancel_list(pg_queue *q, pg_req *r, int status)
{
    while (r) {
        pg_req *n = r->next;
        complete(q, r, status);
        r = n;
    }
}

static void queue_drop(pg_queue *q)
{
    strmap_del(PG.queues, q->key);
    free(q);
}

static void teardown(void)
{
    if (!PG.queues) return;
    strmap_free(PG.queues, free);   /* empty by now; free() covers a bug */
    PG.queues = NULL;
    pg_pool_close(PG.pool);
    PG.pool = NULL;
}

/* On a pool thread: one transaction on a connection of the pool.  A
** failure on BEGIN means nothing was done, so a connection found dead there
** (the server restarted since its last use) is reconnected and tried once
** more.  false when it failed (*fenced: its lease epoch is stale). */
typedef int (*pool_fn)(PGconn *c, void *arg, char *err, size_t errlen);

static bool pool_run(pool_fn fn, void *arg, char *err, size_t errlen, bool *fenced)
{
    *fenced = false;
    err[0] = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        PGconn *c = pg_pool_take(PG.pool, err, errlen);
        if (!c) break;
        int rc = fn(c, arg, err, errlen);
        bool dead = PQstatus(c) != CONNECTION_OK;
        pg_pool_give(PG.pool, c);
        if (rc == 0) return true;
        *fenced = rc == PG_FENCED;
        if (rc != -2 || !dead) break;
    }
    return false;
}

static int run_batch(PGconn *c, void *arg, char *err, size_t errlen)
{
    pg_queue *q = arg;
    return pg_io_batch(c, &q->obj, q->batch, err, errlen);
}

static void batch_work(void *ud)
{
    pg_queue *q = ud;
    q->failed = !pool_run(run_batch, q, q->err, sizeof q->err, &q->fenced);
}

static void batch_after(void *ud, int status);

static void train_kick(void);

/* A channel's batch of plain appends (the chat case) without a lease
** epoch: it can share a transaction with other channels' (a train).  A
** fenced batch keeps its own, so that a stale epoch fails only its own
** channel's writes. */
static bool train_ok(const pg_queue *q)
{
    if (q->obj.kind != PG_CHANNEL || !pg_io_all_appends(&q->obj, q->batch)) return false;
    for (const pg_req *r = q->batch; r; r = r->next)
        if (r->fenced) return false;
    return true;
}

/* Hands the first requests of q to the pool. */
static int start_batch(pg_queue *q)
{
    pg_req *last = q->head;
    for (int n = 1; n < BATCH_MAX && last->next; n++) last = last->next;
    q->batch = q->head;
    q->head = last->next;
    last->next = NULL;
    if (!q->head) q->tail = NULL;
    PG.inflight++;
    if (train_ok(q)) {
        q->rnext = NULL;
        if (PG.ready_tail) PG.ready_tail->rnext = q; else PG.ready = q;
        PG.ready_tail = q;
        if (!PG.holding) train_kick();
        return 0;
    }
    int rc = PG.api->work(PG.self, batch_work, batch_after, q);
    if (rc) {                  /* put them back in front */
        PG.inflight--;
        last->next = q->head;
        if (!q->head) q->tail = last;
        q->head = q->batch;
        q->batch = NULL;
    }
    return rc;
}

/* A batch came back from the pool (alone, or in a train that counted its
** commit already: `count`). */
static void batch_done(pg_queue *q, int status, bool count)
{
    PG.inflight--;
    if (q->failed) {
        /* Nothing of the batch was committed: no request of it succeeds. */
        PG.api->log(PG.self, q->fenced ? CPS_LOG_WARN : CPS_LOG_ERROR, "%s %s: %s", kind_name(q->obj.kind), q->obj.id,
                    q->err[0] ? q->err : "database error");
        for (pg_req *r = q->batch; r; r = r->next) {
            r->ran = true;
            r->status = q->fenced ? CPS_EUNAVAILABLE : CPS_EIO;
            free(r->out);
            r->out = NULL;
            r->outlen = 0;
        }
    }
    else if (status == CPS_OK && count) {
        int64_t appends = 0;
        for (pg_req *r = q->batch; r; r = r->next) appends += r->op == OP_APPEND;
        if (appends) {
            PG.api->counter_add(PG.c_commits, 1);
            PG.api->counter_add(PG.c_appends, appends);
        }
    }
    /* q->batch stays set during the callbacks: a request made from one
    ** queues behind the others instead of starting a second batch. */
    for (pg_req *r = q->batch, *n; r; r = n) {
        n = r->next;
        /* A request that ran reports what it did even at unload (its bytes
        ** are written); one the host cancelled before it ran says so. */
        complete(q, r, r->ran ? r->status : (status ? status : CPS_ECANCELED));
    }
    q->batch = NULL;
    if (PG.closing) {
        pg_req *rest = q->head;
        q->head = q->tail = NULL;
        cancel_list(q, rest, CPS_ECANCELED);
        queue_drop(q);
        if (PG.inflight == 0) teardown();
        return;
    }
    if (!q->head) { queue_drop(q); return; }
    int rc = start_batch(q);
    if (rc) {
        /* The host's pool queue is full: fail what waits rather than stall.
        ** Detach first, so callbacks that submit again get a fresh queue. */
        pg_req *rest = q->head;
        pg_queue copy = *q;
        queue_drop(q);
        cancel_list(&copy, rest, rc);
    }
}

static void batch_after(void *ud, int status) { batch_done(ud, status, true); }

/* ---- trains -------------------------------------------------------------
** Channels' append batches that are ready at the same time travel in one
** transaction and one round trip (pg_io_appends): with many busy pads, one
** commit serves them all instead of one each.  At most
** storage_pg.append_trains (1) trains are on the pool; what becomes ready
** meanwhile waits on PG.ready and leaves with the next train, so trains grow
** with the load and a lone message leaves at once.  One at a time is the
** classic group commit: on the broadcast benchmark (20 pads) it committed
** ~24 appends per transaction against ~6 with four, and delivered 161k
** msgs/s against 116k (docs/storage-pg.md).  Each channel still has one batch at a time, so order per
** channel holds; a failed train fails every batch in it (nothing of it was
** committed), no ACK for any. */
#define TRAIN_MAX 64

typedef struct pg_train {
    int n;
    pg_queue *q[TRAIN_MAX];
    const pg_obj *objs[TRAIN_MAX];
    pg_req *batches[TRAIN_MAX];
    bool failed, fenced;
    char err[256];
    /* on the loop (below): its connection, pipeline and watch */
    PGconn *c;
    pg_pipe *pipe;
    cps_watch *w;
    struct pg_train *lnext;    /* on PG.on_loop */
} pg_train;

static int run_train(PGconn *c, void *arg, char *err, size_t errlen)
{
    pg_train *t = arg;
    return pg_io_appends(c, t->n, t->objs, t->batches, err, errlen);
}

static void train_work(void *ud)
{
    pg_train *t = ud;
    t->failed = !pool_run(run_train, t, t->err, sizeof t->err, &t->fenced);
}

static void train_after(void *ud, int status);

/* ---- trains on the loop ---------------------------------------------------
** A train whose connection is free in the pool (up, its statements
** prepared) is sent from the loop in libpq's non-blocking pipeline mode and
** its results read as its socket becomes readable (api->watch_start, ABI
** 2.4): no thread-pool job, so neither the hand-off to a pool thread nor
** the wake-up of the loop when it is done (one ACK-paced writer ~15% faster,
** docs/storage-pg.md "Trains on the loop").  Anything unusual
** (no such connection, a failed send or watch) takes the pool path, which
** reconnects and prepares; a train already sent finishes there, with
** blocking calls, as do those still in flight at unload. */

/* Pool thread: the rest of a train already sent on the loop. */
static void train_rest_work(void *ud)
{
    pg_train *t = ud;
    PQsetnonblocking(t->c, 0);
    while (!pg_io_appends_take(t->pipe, PQgetResult(t->c))) {}
    int rc = pg_io_appends_end(t->pipe, t->c);
    t->pipe = NULL;
    t->failed = rc != 0;
    t->fenced = rc == PG_FENCED;
    pg_pool_give(PG.pool, t->c);
    t->c = NULL;
}

static void loop_unlink(pg_train *t)
{
    for (pg_train **p = &PG.on_loop; *p; p = &(*p)->lnext)
        if (*p == t) { *p = t->lnext; break; }
    t->lnext = NULL;
}

static void rest_fire(cps_timer *tm, void *ud)
{
    (void)tm;
    train_rest_work(ud);
    train_after(ud, CPS_OK);
}

/* Hands a sent train to the pool to finish.  If the pool refuses the job
** (its queue is full), it finishes on the next turn here (now if unloading:
** the host stops the plugin's timers after fini), blocking the loop for its
** round trip: a train is never left unanswered. */
static void loop_to_pool(pg_train *t)
{
    if (t->w) { PG.api->watch_stop(t->w); t->w = NULL; }
    loop_unlink(t);
    if (PG.api->work(PG.self, train_rest_work, train_after, t) == 0) return;
    if (!PG.closing && PG.api->timer_start(PG.self, 0, 0, rest_fire, t)) return;
    rest_fire(NULL, t);
}

static void loop_ready(cps_watch *w, int status, int events, void *ud)
{
    pg_train *t = ud;
    PGconn *c = t->c;
    bool bad = status < 0;
    if (!bad && (events & CPS_WATCH_WRITE)) {
        int f = PQflush(c);
        bad = f < 0;
        if (f == 0) PG.api->watch_set(w, CPS_WATCH_READ);
    }
    if (!bad && (events & CPS_WATCH_READ)) bad = PQconsumeInput(c) != 1;
    bool done = bad;
    while (!done && !PQisBusy(c)) done = pg_io_appends_take(t->pipe, PQgetResult(c));
    if (!done) return;
    if (bad && PQstatus(c) == CONNECTION_OK) {
        /* the watch failed, not the connection: read the rest blocking */
        loop_to_pool(t);
        return;
    }
    if (bad) pg_io_appends_lost(t->pipe);
    PG.api->watch_stop(w);
    t->w = NULL;
    loop_unlink(t);
    int rc = pg_io_appends_end(t->pipe, c);
    t->pipe = NULL;
    t->failed = rc != 0;
    t->fenced = rc == PG_FENCED;
    PQsetnonblocking(c, 0);
    pg_pool_give(PG.pool, c);
    t->c = NULL;
    train_after(t, CPS_OK);
}

/* Sends t from the loop: true if it is on its way (and will end in
** train_after), false if it should take the pool path instead. */
static bool loop_start(pg_train *t)
{
    if (!PG.trains_on_loop || PG.closing) return false;
    PGconn *c = pg_pool_try_take(PG.pool);
    if (!c) return false;
    if (!pg_io_prepared(c) || PQsetnonblocking(c, 1) != 0) {
        pg_pool_give(PG.pool, c);
        return false;
    }
    t->err[0] = 0;
    pg_pipe *pp = pg_io_appends_send(c, t->n, t->objs, t->batches, t->err, sizeof t->err);
    if (!pp || pg_io_appends_unsent(pp)) {
        /* nothing sent: the pool path tries it */
        if (pp) pg_io_appends_end(pp, c);
        PQsetnonblocking(c, 0);
        pg_pool_give(PG.pool, c);
        return false;
    }
    PG.api->counter_add(PG.c_loop, 1);
    t->c = c;
    t->pipe = pp;
    t->lnext = PG.on_loop;
    PG.on_loop = t;
    int f = PQflush(c);
    if (f >= 0) t->w = PG.api->watch_start(PG.self, PQsocket(c), CPS_WATCH_READ | (f ? CPS_WATCH_WRITE : 0), loop_ready, t);
    if (!t->w) loop_to_pool(t);
    return true;
}

static void train_after(void *ud, int status)
{
    pg_train *t = ud;
    PG.trains--;
    if (!t->failed && status == CPS_OK) {
        int64_t appends = 0;
        for (int i = 0; i < t->n; i++)
            for (pg_req *r = t->batches[i]; r; r = r->next) appends++;
        PG.api->counter_add(PG.c_commits, 1);
        PG.api->counter_add(PG.c_appends, appends);
    }
    /* batches made ready by these callbacks gather for the next train */
    bool held = PG.holding;
    PG.holding = true;
    for (int i = 0; i < t->n; i++) {
        pg_queue *q = t->q[i];
        q->failed = t->failed;
        q->fenced = t->fenced;
        snprintf(q->err, sizeof q->err, "%s", t->err);
        batch_done(q, status, false);
    }
    PG.holding = held;
    free(t);
    if (!held) train_kick();
}

/* The first object waiting for a train, taken off PG.ready. */
static pg_queue *ready_pop(void)
{
    pg_queue *q = PG.ready;
    PG.ready = q->rnext;
    if (!PG.ready) PG.ready_tail = NULL;
    return q;
}

static void train_kick(void)
{
    while (PG.ready && PG.trains < PG.max_trains) {
        pg_train *t = calloc(1, sizeof *t);
        while (t && t->n < TRAIN_MAX && PG.ready) {
            pg_queue *q = ready_pop();
            t->q[t->n] = q;
            t->objs[t->n] = &q->obj;
            t->batches[t->n++] = q->batch;
        }
        if (t) PG.trains++;
        if (t && loop_start(t)) continue;
        int rc = t ? PG.api->work(PG.self, train_work, train_after, t) : CPS_ENOMEM;
        if (rc == 0) continue;
        if (t) PG.trains--;
        /* Not run: its batches fail (the host's pool queue is full, or no
        ** memory for the train: then the first waiting batch). */
        if (!t) {
            pg_queue *q = ready_pop();
            q->failed = false;
            batch_done(q, rc, false);
            continue;
        }
        for (int i = 0; i < t->n; i++) {
            t->q[i]->failed = false;
            batch_done(t->q[i], rc, false);
        }
        free(t);
    }
}

/* Takes ownership of r (freed on error). */
static int enqueue(int kind, const char *id, const char *ns, pg_req *r)
{
    char key[sizeof ((pg_queue *)0)->key];
    /* a record is the object of the same name: one queue keeps their order */
    if (kind == PG_RECORD || kind == PG_OBJ || kind == PG_RAW)
        snprintf(key, sizeof key, "%c:%s/%s", kind == PG_RAW ? 'w' : 'o', ns, id);
    else snprintf(key, sizeof key, "%c:%s", kind == PG_CHANNEL ? 'c' : kind == PG_LEASE ? 'l' : 'p', id);
    if (kind == PG_CHANNEL) pg_lease_stamp(PG.api, PG.self, id, r);
    pg_queue *q = strmap_get(PG.queues, key);
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q || strmap_put(PG.queues, key, q) != 0) { free(q); req_free(r); return CPS_ENOMEM; }
        q->obj.kind = kind;
        snprintf(q->obj.id, sizeof q->obj.id, "%s", id);
        snprintf(q->obj.ns, sizeof q->obj.ns, "%s", ns ? ns : "");
        memcpy(q->key, key, sizeof key);
    }
    if (q->tail) q->tail->next = r; else q->head = r;
    q->tail = r;
    PG.pending++;
    if (!q->batch) {           /* idle queue: q was just made, r is alone */
        int rc = start_batch(q);
        if (rc) {
            PG.pending--;
            queue_drop(q);
            req_free(r);
            return rc;
        }
    }
    return CPS_OK;
}

/* Checks shared by every entry point; returns a new request or sets *rc. */
static pg_req *req_new(int op, void *ud, int *rc)
{
    if (PG.closing || !PG.queues) { *rc = CPS_ECANCELED; return NULL; }
    if (PG.pending >= PG.limit) { *rc = CPS_EBUSY; return NULL; }
    pg_req *r = calloc(1, sizeof *r);
    if (!r) { *rc = CPS_ENOMEM; return NULL; }
    r->op = op;
    r->ud = ud;
    return r;
}

/* A private copy of the caller's bytes (valid only during its call). */
static int req_copy_in(pg_req *r, const char *data, size_t len)
{
    r->in = malloc(len ? len : 1);
    if (!r->in) { req_free(r); return CPS_ENOMEM; }
    if (len) memcpy(r->in, data, len);
    r->inlen = len;
    return CPS_OK;
}

/* Appends to line logs take whole lines (as storage-fs): a log never gains
** a partial line, and every chunk of a channel log ends one (pg_io.c's
** line reads rely on it). */
static bool lines_ok(const char *data, size_t len) { return data && len && data[len - 1] == '\n'; }

/* ---- channel logs ----------------------------------------------------- */

static int pg_channel_append(void *st, const char *id, const char *data, size_t len,
                             cps_store_size_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_channel(id) || !lines_ok(data, len)) return CPS_EINVAL;
    pg_req *r = req_new(OP_APPEND, ud, &rc);
    if (!r) return rc;
    if ((rc = req_copy_in(r, data, len))) return rc;
    r->cb.size = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

static int pg_channel_read(void *st, const char *id, uint64_t offset, size_t max,
                           cps_store_read_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_channel(id)) return CPS_EINVAL;
    pg_req *r = req_new(OP_READ, ud, &rc);
    if (!r) return rc;
    r->arg = offset;
    r->max = max;
    r->cb.read = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

/* The size of the channel log only (not the metadata log, unlike the Node
** store's getChannelSize): callers add meta_read's length when they need
** docs/protocol/storage.md's sum.  CPS_ENOENT (size 0) when there is no log. */
static int pg_channel_size(void *st, const char *id, cps_store_size_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_channel(id)) return CPS_EINVAL;
    pg_req *r = req_new(OP_SIZE, ud, &rc);
    if (!r) return rc;
    r->cb.size = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

/* Channel operations that carry a number and answer a status. */
static int channel_simple(int op, const char *id, uint64_t arg, cps_store_done_fn done, void *ud)
{
    int rc;
    if (!valid_channel(id)) return CPS_EINVAL;
    pg_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    r->arg = arg;
    r->cb.done = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

/* `from` and `len` must be line boundaries (CPS_EINVAL otherwise, also
** beyond the end): a cut mid-line would corrupt the log. */
static int pg_channel_trim(void *st, const char *id, uint64_t from, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_TRIM, id, from, done, ud);
}

static int pg_channel_truncate(void *st, const char *id, uint64_t len, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_TRUNCATE, id, len, done, ud);
}

/* Line deletion: same boundary rules as trim, checked on the pool. */
static int pg_channel_cut(void *st, const char *id, uint64_t offset, uint64_t len,
                          cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_channel(id)) return CPS_EINVAL;
    pg_req *r = req_new(OP_CUT, ud, &rc);
    if (!r) return rc;
    r->arg = offset;
    r->arg2 = len;
    r->cb.done = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

static int pg_channel_archive(void *st, const char *id, const char *reason,
                              cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_channel(id)) return CPS_EINVAL;
    pg_req *r = req_new(OP_ARCHIVE, ud, &rc);
    if (!r) return rc;
    if (reason) {
        if ((rc = req_copy_in(r, reason, strlen(reason)))) return rc;
        r->has_in = true;
    }
    r->cb.done = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

static int pg_channel_restore(void *st, const char *id, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_RESTORE, id, 0, done, ud);
}

static int pg_channel_delete(void *st, const char *id, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_DELETE, id, 0, done, ud);
}

/* Reads of a whole small object (metadata log, placeholder, pin log, record). */
static int read_whole(int kind, int op, const char *id, const char *ns, cps_store_data_fn done, void *ud)
{
    int rc;
    pg_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    r->cb.data = done;
    return enqueue(kind, id, ns, r);
}

static int pg_placeholder_read(void *st, const char *id, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!valid_channel(id)) return CPS_EINVAL;
    return read_whole(PG_CHANNEL, OP_PLACEHOLDER, id, NULL, done, ud);
}

/* ---- metadata logs (same queue as the channel: ordered with trims) ----- */

static int pg_meta_append(void *st, const char *id, const char *data, size_t len,
                          cps_store_size_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_channel(id) || !lines_ok(data, len)) return CPS_EINVAL;
    pg_req *r = req_new(OP_META_APPEND, ud, &rc);
    if (!r) return rc;
    if ((rc = req_copy_in(r, data, len))) return rc;
    r->cb.size = done;
    return enqueue(PG_CHANNEL, id, NULL, r);
}

static int pg_meta_read(void *st, const char *id, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!valid_channel(id)) return CPS_EINVAL;
    return read_whole(PG_CHANNEL, OP_META_READ, id, NULL, done, ud);
}

/* Writes that answer a status and carry bytes. */
static int write_simple(int kind, int op, const char *id, const char *ns, const char *data, size_t len,
                        cps_store_done_fn done, void *ud)
{
    int rc;
    if (!data && len) return CPS_EINVAL;
    pg_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    if ((rc = req_copy_in(r, data, len))) return rc;
    r->cb.done = done;
    return enqueue(kind, id, ns, r);
}

static int pg_meta_write(void *st, const char *id, const char *data, size_t len,
                         cps_store_done_fn done, void *ud)
{
    (void)st;
    if (!valid_channel(id)) return CPS_EINVAL;
    return write_simple(PG_CHANNEL, OP_META_WRITE, id, NULL, data, len, done, ud);
}

/* ---- pin logs --------------------------------------------------------- */

static int pg_pin_append(void *st, const char *key, const char *data, size_t len,
                         cps_store_done_fn done, void *ud)
{
    (void)st;
    if (!valid_key(key) || !lines_ok(data, len)) return CPS_EINVAL;
    return write_simple(PG_PIN, OP_PIN_APPEND, key, NULL, data, len, done, ud);
}

static int pg_pin_read(void *st, const char *key, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!valid_key(key)) return CPS_EINVAL;
    return read_whole(PG_PIN, OP_PIN_READ, key, NULL, done, ud);
}

/* Same queue as the appends: an archive lands after every earlier append. */
static int pg_pin_archive(void *st, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_key(key)) return CPS_EINVAL;
    pg_req *r = req_new(OP_PIN_ARCHIVE, ud, &rc);
    if (!r) return rc;
    r->cb.done = done;
    return enqueue(PG_PIN, key, NULL, r);
}

static int pg_pin_restore(void *st, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_key(key)) return CPS_EINVAL;
    pg_req *r = req_new(OP_PIN_RESTORE, ud, &rc);
    if (!r) return rc;
    r->cb.done = done;
    return enqueue(PG_PIN, key, NULL, r);
}

/* ---- records ---------------------------------------------------------- */

static int pg_record_put(void *st, const char *ns, const char *key, const char *data,
                         size_t len, cps_store_done_fn done, void *ud)
{
    (void)st;
    if (!valid_ns(ns) || !valid_rkey(key)) return CPS_EINVAL;
    return write_simple(PG_RECORD, OP_REC_PUT, key, ns, data, len, done, ud);
}

static int pg_record_get(void *st, const char *ns, const char *key, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!valid_ns(ns) || !valid_rkey(key)) return CPS_EINVAL;
    return read_whole(PG_RECORD, OP_REC_GET, key, ns, done, ud);
}

static int pg_record_del(void *st, const char *ns, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!valid_ns(ns) || !valid_rkey(key)) return CPS_EINVAL;
    pg_req *r = req_new(OP_REC_DEL, ud, &rc);
    if (!r) return rc;
    r->cb.done = done;
    return enqueue(PG_RECORD, key, ns, r);
}

/* ---- named objects (blobs, staged uploads, blocks) ---------------------- */

/* One queue per (store, key), like the other kinds.  A move is queued on
** its source: it is ordered after every earlier request on the source. */
static int obj_req(int op, const char *store, const char *key, pg_req **out, void *ud)
{
    int rc;
    if (!valid_store(store) || !valid_okey(key)) return CPS_EINVAL;
    pg_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    *out = r;
    return CPS_OK;
}

static int pg_obj_append(void *st, const char *store, const char *key, const char *data, size_t len,
                         cps_store_size_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    if (!data && len) return CPS_EINVAL;
    int rc = obj_req(OP_OBJ_APPEND, store, key, &r, ud);
    if (rc || (rc = req_copy_in(r, data, len))) return rc;
    r->cb.size = done;
    return enqueue(PG_OBJ, key, store, r);
}

static int pg_obj_write(void *st, const char *store, const char *key, const char *data, size_t len,
                        cps_store_done_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    if (!data && len) return CPS_EINVAL;
    int rc = obj_req(OP_OBJ_WRITE, store, key, &r, ud);
    if (rc || (rc = req_copy_in(r, data, len))) return rc;
    r->cb.done = done;
    return enqueue(PG_OBJ, key, store, r);
}

static int pg_obj_read(void *st, const char *store, const char *key, uint64_t offset, size_t max,
                       cps_store_read_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    int rc = obj_req(OP_OBJ_READ, store, key, &r, ud);
    if (rc) return rc;
    r->arg = offset;
    r->max = max;
    r->cb.read = done;
    return enqueue(PG_OBJ, key, store, r);
}

static int pg_obj_size(void *st, const char *store, const char *key, cps_store_size_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    int rc = obj_req(OP_OBJ_SIZE, store, key, &r, ud);
    if (rc) return rc;
    r->cb.size = done;
    return enqueue(PG_OBJ, key, store, r);
}

static int pg_obj_move(void *st, const char *from_store, const char *from_key, const char *to_store,
                       const char *to_key, cps_store_done_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    if (!valid_store(to_store) || !valid_okey(to_key)) return CPS_EINVAL;
    int rc = obj_req(OP_OBJ_MOVE, from_store, from_key, &r, ud);
    if (rc) return rc;
    snprintf(r->to_ns, sizeof r->to_ns, "%s", to_store);
    snprintf(r->to_id, sizeof r->to_id, "%s", to_key);
    r->cb.done = done;
    return enqueue(PG_OBJ, from_key, from_store, r);
}

static int obj_simple(int op, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    pg_req *r = NULL;
    int rc = obj_req(op, store, key, &r, ud);
    if (rc) return rc;
    r->cb.done = done;
    return enqueue(PG_OBJ, key, store, r);
}

static int pg_obj_delete(void *st, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    return obj_simple(OP_OBJ_DELETE, store, key, done, ud);
}

static int pg_obj_archive(void *st, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    return obj_simple(OP_OBJ_ARCHIVE, store, key, done, ud);
}

static int pg_obj_restore(void *st, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    return obj_simple(OP_OBJ_RESTORE, store, key, done, ud);
}

/* No files here: objects are streamed with obj_read. */
static const char *pg_obj_path(void *st, const char *store, const char *key, char *buf, size_t n)
{
    (void)st; (void)store; (void)key; (void)buf; (void)n;
    return NULL;
}

/* ---- the raw view (pg_io.c runs it; cps_storage.h, docs/storage-pg.md) ---- */

/* Whether `space` is a raw space and `name` (if not NULL) a name of it: the
** same rules as the operations on those objects. */
static bool raw_ok(const char *space, const char *name)
{
    static const char *const chan[] = { "channel", "meta", "placeholder", "archive/channel", "archive/meta" };
    if (!space) return false;
    for (size_t i = 0; i < sizeof chan / sizeof *chan; i++)
        if (!strcmp(space, chan[i])) return !name || valid_channel(name);
    if (!strcmp(space, "pin") || !strcmp(space, "archive/pin")) return !name || valid_key(name);
    const char *store = !strncmp(space, "obj/", 4) ? space + 4 : !strncmp(space, "archive/obj/", 12) ? space + 12 : NULL;
    if (!store || !valid_ns(store) || !strcmp(store, "archive") || !strcmp(store, "pins")) return false;
    return !name || valid_okey(name);
}

static int raw_req(int op, const char *space, const char *name, pg_req **out, void *ud)
{
    if (!raw_ok(space, name) || (op != OP_RAW_LIST && !name)) return CPS_EINVAL;
    int rc;
    return (*out = req_new(op, ud, &rc)) ? CPS_OK : rc;
}

static int pg_raw_spaces(void *st, cps_store_list_fn done, void *ud)
{
    (void)st;
    int rc;
    pg_req *r = req_new(OP_RAW_SPACES, ud, &rc);
    if (!r) return rc;
    r->cb.list = done;
    return enqueue(PG_RAW, "", "", r);
}

static int pg_raw_list(void *st, const char *space, const char *after, size_t max,
                       cps_store_list_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    if (!after || strlen(after) > 128) return CPS_EINVAL;
    int rc = raw_req(OP_RAW_LIST, space, NULL, &r, ud);
    if (rc || (rc = req_copy_in(r, after, strlen(after) + 1))) return rc;
    r->max = max;
    r->cb.list = done;
    return enqueue(PG_RAW, "", space, r);
}

static int pg_raw_size(void *st, const char *space, const char *name, cps_store_size_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    int rc = raw_req(OP_RAW_SIZE, space, name, &r, ud);
    if (rc) return rc;
    r->cb.size = done;
    return enqueue(PG_RAW, name, space, r);
}

static int pg_raw_read(void *st, const char *space, const char *name, uint64_t offset, size_t max,
                       cps_store_read_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    int rc = raw_req(OP_RAW_READ, space, name, &r, ud);
    if (rc) return rc;
    r->arg = offset;
    r->max = max;
    r->cb.read = done;
    return enqueue(PG_RAW, name, space, r);
}

static int pg_raw_write(void *st, const char *space, const char *name, uint64_t offset,
                        const char *data, size_t len, cps_store_size_fn done, void *ud)
{
    (void)st;
    pg_req *r = NULL;
    if (!data && len) return CPS_EINVAL;
    int rc = raw_req(OP_RAW_WRITE, space, name, &r, ud);
    if (rc || (rc = req_copy_in(r, data, len))) return rc;
    r->arg = offset;
    r->cb.size = done;
    return enqueue(PG_RAW, name, space, r);
}

/* ---- storage failover: leases (lease.c) -------------------------------- */

static int pg_lease(void *st, unsigned slot, const char *holder, unsigned ttl_ms,
                    cps_store_lease_fn done, void *ud)
{
    (void)st;
    int rc;
    pg_req *r = req_new(OP_LEASE, ud, &rc);
    if (!r) return rc;
    if ((rc = pg_lease_prepare(r, slot, holder, ttl_ms))) { req_free(r); return rc; }
    r->cb.lease = done;
    char id[16];
    snprintf(id, sizeof id, "%u", slot);
    return enqueue(PG_LEASE, id, NULL, r);
}

/* ---- load and unload -------------------------------------------------- */

static void collect(const char *key, void *val, void *ud)
{
    (void)key;
    pg_queue ***at = ud;
    *(*at)++ = val;
}

/* Requests not yet on the pool are cancelled now; a batch on the pool
** finishes and its `after` (CPS_ECANCELED from the host) completes it, the
** last one freeing the rest.  Every `done` is called exactly once. */
static void pg_fini(cps_plugin *self, void *state)
{
    (void)self;
    (void)state;
    if (PG.closing || !PG.queues) return;
    PG.closing = true;
    /* The host stops the plugin's watches after fini: trains sent from the
    ** loop finish on the pool, like those already there. */
    while (PG.on_loop) loop_to_pool(PG.on_loop);
    size_t n = strmap_count(PG.queues);
    pg_queue **all = n ? malloc(n * sizeof *all) : NULL, **at = all;
    if (n && !all) {
        /* No memory for the list: leak nothing reachable, just wait for the
        ** batches; waiting requests stay and are cancelled by their after. */
        return;
    }
    strmap_each(PG.queues, collect, &at);
    for (size_t i = 0; i < n; i++) {
        pg_queue *q = all[i];
        pg_req *rest = q->head;
        q->head = q->tail = NULL;
        if (!q->batch) {       /* cannot happen (idle queues are freed) */
            pg_queue copy = *q;
            queue_drop(q);
            cancel_list(&copy, rest, CPS_ECANCELED);
        } else {
            cancel_list(q, rest, CPS_ECANCELED);
        }
    }
    free(all);
    /* Batches waiting for a train were handed on like those on the pool:
    ** they leave now, all at once (the host cancels them if it no longer
    ** runs work, and their `after` completes them). */
    PG.max_trains = SIZE_MAX;
    train_kick();
    if (PG.inflight == 0) teardown();
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    if (PG.queues) return CPS_EBUSY;     /* an earlier instance is still draining */
    memset(&PG, 0, sizeof PG);
    PG.api = a;
    PG.self = self;
    json_t *lim = a->config_get(self, "limits.work_queue");
    PG.limit = json_is_integer(lim) && json_integer_value(lim) > 0 ? (size_t)json_integer_value(lim) : 10000;
    PG.queues = strmap_new();
    if (!PG.queues) return CPS_ENOMEM;
    PG.c_commits = a->counter(self, "storage_pg_append_transactions_total");
    PG.c_appends = a->counter(self, "storage_pg_channel_appends_total");
    PG.c_loop = a->counter(self, "storage_pg_loop_trains_total");
    /* libpq (and the TLS and Kerberos libraries under it) keep per-thread
    ** state in the pool threads that ran queries; unloading them with this
    ** plugin would leave those threads pointing into unmapped code at exit.
    ** Pin libpq for the life of the process (the handle is never closed). */
    if (!dlopen("libpq.so.5", RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE))
        a->log(self, CPS_LOG_WARN, "cannot pin libpq.so.5 in memory: %s", dlerror());
    /* storage_pg.conninfo, or libpq's PG* environment when absent. */
    json_t *ci = a->config_get(self, "storage_pg.conninfo");
    json_t *ps = a->config_get(self, "storage_pg.pool");
    PG.pool_size = json_is_integer(ps) && json_integer_value(ps) > 0 && json_integer_value(ps) <= 64
                   ? (size_t)json_integer_value(ps) : 4;
    json_t *ts = a->config_get(self, "storage_pg.append_trains");
    PG.max_trains = json_is_integer(ts) && json_integer_value(ts) > 0 ? (size_t)json_integer_value(ts) : 1;
    if (PG.max_trains > PG.pool_size) PG.max_trains = PG.pool_size;
    json_t *tl = a->config_get(self, "storage_pg.trains_on_loop");
    PG.trains_on_loop = !json_is_false(tl);
    char err[512];
    PG.pool = pg_pool_open(json_is_string(ci) ? json_string_value(ci) : "", (int)PG.pool_size, err, sizeof err);
    if (!PG.pool) {
        a->log(self, CPS_LOG_ERROR, "storage backend 'pg': %s", err);
        teardown();
        return CPS_EIO;
    }
    PG.backend = (cps_storage_backend){
        .size = sizeof(cps_storage_backend),
        .version = CPS_STORAGE_VERSION,
        .name = "pg",
        .state = NULL,          /* everything is in the PG singleton */
        .channel_append = pg_channel_append,
        .channel_read = pg_channel_read,
        .channel_size = pg_channel_size,
        .channel_trim = pg_channel_trim,
        .channel_truncate = pg_channel_truncate,
        .channel_archive = pg_channel_archive,
        .channel_restore = pg_channel_restore,
        .channel_delete = pg_channel_delete,
        .placeholder_read = pg_placeholder_read,
        .meta_append = pg_meta_append,
        .meta_read = pg_meta_read,
        .meta_write = pg_meta_write,
        .pin_append = pg_pin_append,
        .pin_read = pg_pin_read,
        .record_put = pg_record_put,
        .record_get = pg_record_get,
        .record_del = pg_record_del,
        .pin_archive = pg_pin_archive,
        .obj_append = pg_obj_append,
        .obj_write = pg_obj_write,
        .obj_read = pg_obj_read,
        .obj_size = pg_obj_size,
        .obj_move = pg_obj_move,
        .obj_delete = pg_obj_delete,
        .obj_archive = pg_obj_archive,
        .obj_path = pg_obj_path,
        .channel_cut = pg_channel_cut,
        .raw_spaces = pg_raw_spaces,
        .raw_list = pg_raw_list,
        .raw_size = pg_raw_size,
        .raw_read = pg_raw_read,
        .raw_write = pg_raw_write,
        .lease = pg_lease,
        .obj_restore = pg_obj_restore,
        .pin_restore = pg_pin_restore,
    };
    int rc = a->register_storage(self, &PG.backend);
    if (rc) { teardown(); return rc; }
    a->log(self, CPS_LOG_INFO, "storage backend 'pg' on %s (%zu connections)", pg_pool_name(PG.pool), PG.pool_size);
    return CPS_OK;
}

CPS_PLUGIN_DEFINE("storage-pg", "1.0.0", plugin_init, pg_fini);
