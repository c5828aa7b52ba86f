/*
** fs.c - the "fs" storage backend (cps_storage.h) in CryptPad's own layout
** under data_dir.  The loop-thread half: id checks, one FIFO queue per
** object, batches handed to the thread pool (fs_io.c does the I/O).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cps.h"
#include "ids.h"
#include "strmap.h"
#include "fs.h"

/* Requests of one queue handed to the pool at once: amortises the thread
** hop under load while keeping a batch's memory (read buffers) small. */
#define BATCH_MAX 32

/* One queue per object with requests pending: requests on the same object
** run one batch at a time, in submission order; different objects run in
** parallel on the pool.  Freed as soon as it is idle.  Not a keyqueue
** (plugins/common): it hands up to BATCH_MAX requests to the pool at once
** rather than one at a time. */
typedef struct fs_queue {
    fs_obj obj;
    char key[2 + 48 + 129];    /* "c:<id>", "p:<key>", "r:<ns>/<key>", "o:<store>/<key>", "w:<space>/<name>" */
    fs_req *head, *tail;       /* waiting, in order */
    fs_req *batch;             /* on the pool (or its callbacks running) */
    struct fs_queue *loop_next;  /* in FS.loop_done */
} fs_queue;

static struct {
    const cps_api *api;
    cps_plugin *self;
    char *root;                /* data_dir; read by pool threads, immutable */
    bool fsync;                /* storage-fs.fsync: fdatasync every write */
    size_t limit;              /* requests accepted and not yet completed */
    size_t pending;
    size_t inflight;           /* batches on the pool */
    bool closing;              /* fini ran: refuse, drain, then free */
    strmap *queues;            /* key -> fs_queue */
    bool loop_appends;         /* storage-fs.loop_appends: see start_batch */
    fs_queue *loop_done;       /* loop batches to complete on the next turn */
    cps_timer *loop_timer;     /* the one-shot timer that completes them */
    cps_storage_backend backend;
} FS;                          /* the plugin singleton */

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
bool fs_valid_channel(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 49);
    return n >= 32 && n <= 48 && chars_ok(s, n, "+=-", true);
}

/* Keys reach a backend in their safe form (docs/protocol/netflux.md §3). */
bool fs_valid_key(const char *s) { return ids_is_safe_key(s); }

bool fs_valid_ns(const char *s)
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
bool fs_valid_okey(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 129);
    return n >= 1 && n <= 128 && s[0] != '.' && !strstr(s, "..") && chars_ok(s, n, "+=_.-", true);
}

/* ---- queues ----------------------------------------------------------- */

static void req_free(fs_req *r)
{
    free(r->in);
    free(r->out);
    free(r);
}

static const char *kind_name(int kind)
{
    return kind == FS_CHANNEL ? "channel" : kind == FS_PIN ? "pin log" : kind == FS_RECORD ? "record" : "object";
}

/* Calls the request's callback once with its outcome, then frees it. */
static void complete(fs_queue *q, fs_req *r, int status)
{
    if (status == CPS_OK && r->cut)
        FS.api->log(FS.self, CPS_LOG_WARN, "channel %s: cut a torn last line of %llu bytes",
                    q->obj.id, (unsigned long long)r->cut);
    if (status == CPS_EIO)
        FS.api->log(FS.self, CPS_LOG_ERROR, "%s %s: operation %d failed: %s", kind_name(q->obj.kind),
                    q->obj.id, r->op, strerror(r->err));
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
    case OP_PLACEHOLDER: case OP_META_READ: case OP_PIN_READ: case OP_REC_GET:
        if (r->cb.data) r->cb.data(r->ud, status, ok ? r->out : NULL, ok ? r->outlen : 0);
        break;
    default:
        if (r->cb.done) r->cb.done(r->ud, status);
    }
    FS.pending--;
    req_free(r);
}

/* Cancels a detached list of requests that never ran. */
static void cancel_list(fs_queue *q, fs_req *r, int status)
{
    while (r) {
        fs_req *n = r->next;
        complete(q, r, status);
        r = n;
    }
}

static void queue_drop(fs_queue *q)
{
    strmap_del(FS.queues, q->key);
    free(q);
}

static void teardown(void)
{
    strmap_free(FS.queues, free);   /* empty by now; free() covers a bug */
    FS.queues = NULL;
    free(FS.root);
    FS.root = NULL;
}

static void batch_work(void *ud)
{
    fs_queue *q = ud;
    for (fs_req *r = q->batch; r; r = r->next) fs_io_run(FS.root, FS.fsync, &q->obj, r);
}

static void batch_after(void *ud, int status);

/* The loop batches of the last turn, completed as a pool batch would be. */
static void loop_batches_done(cps_timer *t, void *ud)
{
    (void)t;
    (void)ud;
    FS.loop_timer = NULL;             /* a one-shot timer gives itself back */
    fs_queue *list = FS.loop_done;
    FS.loop_done = NULL;              /* batches started now go to the next turn */
    while (list) {
        fs_queue *q = list;
        list = q->loop_next;
        q->loop_next = NULL;
        batch_after(q, CPS_OK);
    }
}

/* Appends of a log whose descriptor is open run right here on the loop:
** a buffered write to the page cache costs a few microseconds, while a
** pool round trip costs two thread switches (the broadcast profile:
** finish_task_switch 26%, futex wake/wait; docs/operator-guide.md §3).
** Only appends, only with fsync off, only through a descriptor that a
** pool append opened after the torn-line check.  Their callbacks still
** come on a later turn, in order, like a pool batch's. */
static bool run_on_loop(fs_queue *q)
{
    if (!FS.loop_appends || FS.fsync || q->obj.kind != FS_CHANNEL) return false;
    for (fs_req *r = q->batch; r; r = r->next)
        if (r->op != OP_APPEND) return false;
    uint64_t *size;
    int fd = fdc_get(q->obj.id, &size);
    if (fd < 0) return false;
    if (!FS.loop_timer && !(FS.loop_timer = FS.api->timer_start(FS.self, 0, 0, loop_batches_done, NULL)))
        return false;
    bool failed = false;
    for (fs_req *r = q->batch; r; r = r->next) {
        fs_io_append_fd(fd, size, r);
        failed = failed || r->status != CPS_OK;
    }
    if (failed) fdc_drop(q->obj.id);  /* the next append reopens through the pool */
    q->loop_next = FS.loop_done;
    FS.loop_done = q;
    return true;
}

/* Hands the first requests of q to the pool (or runs them on the loop). */
static int start_batch(fs_queue *q)
{
    fs_req *last = q->head;
    for (int n = 1; n < BATCH_MAX && last->next; n++) last = last->next;
    q->batch = q->head;
    q->head = last->next;
    last->next = NULL;
    if (!q->head) q->tail = NULL;
    FS.inflight++;
    if (run_on_loop(q)) return CPS_OK;
    /* A batch of appends (and reads) on the pool keeps the log open for
    ** the loop path: the last append hands its descriptor back. */
    if (FS.loop_appends && !FS.fsync && q->obj.kind == FS_CHANNEL && !fdc_has(q->obj.id)) {
        fs_req *keep = NULL;
        for (fs_req *r = q->batch; r; r = r->next) {
            if (r->op == OP_APPEND) keep = r;
            else if (r->op != OP_READ && r->op != OP_SIZE) { keep = NULL; break; }
        }
        if (keep) keep->keep_fd = true;
    }
    int rc = FS.api->work(FS.self, batch_work, batch_after, q);
    if (rc) {                  /* put them back in front */
        FS.inflight--;
        last->next = q->head;
        if (!q->head) q->tail = last;
        q->head = q->batch;
        q->batch = NULL;
    }
    return rc;
}

static void batch_after(void *ud, int status)
{
    fs_queue *q = ud;
    FS.inflight--;
    for (fs_req *r = q->batch; r; r = r->next) {
        if (!r->has_fd) continue;
        r->has_fd = false;
        if (FS.closing) close(r->kept_fd);
        else fdc_put(q->obj.id, r->kept_fd, r->size);
    }
    /* q->batch stays set during the callbacks: a request made from one
    ** queues behind the others instead of starting a second batch. */
    for (fs_req *r = q->batch, *n; r; r = n) {
        n = r->next;
        /* A request that ran reports what it did even at unload (its bytes
        ** are written); one the host cancelled before it ran says so. */
        complete(q, r, r->ran ? r->status : (status ? status : CPS_ECANCELED));
    }
    q->batch = NULL;
    if (FS.closing) {
        fs_req *rest = q->head;
        q->head = q->tail = NULL;
        cancel_list(q, rest, CPS_ECANCELED);
        queue_drop(q);
        if (FS.inflight == 0) teardown();
        return;
    }
    if (!q->head) { queue_drop(q); return; }
    int rc = start_batch(q);
    if (rc) {
        /* The host's pool queue is full: fail what waits rather than stall.
        ** Detach first, so callbacks that submit again get a fresh queue. */
        fs_req *rest = q->head;
        fs_queue copy = *q;
        queue_drop(q);
        cancel_list(&copy, rest, rc);
    }
}

/* Operations after which an open descriptor would name the wrong file. */
static bool replaces_log(int op)
{
    return op == OP_TRIM || op == OP_TRUNCATE || op == OP_CUT || op == OP_ARCHIVE || op == OP_RESTORE ||
           op == OP_DELETE;
}

/* Takes ownership of r (freed on error). */
static int enqueue(int kind, const char *id, const char *ns, fs_req *r)
{
    /* Earlier appends were written already (or wait in this queue, ahead
    ** of r, and go to the pool once the descriptor is gone). */
    if (kind == FS_CHANNEL && replaces_log(r->op)) fdc_drop(id);
    char key[sizeof ((fs_queue *)0)->key];
    if (kind == FS_RECORD || kind == FS_OBJ || kind == FS_RAW)
        snprintf(key, sizeof key, "%c:%s/%s", kind == FS_OBJ ? 'o' : kind == FS_RAW ? 'w' : 'r', ns, id);
    else snprintf(key, sizeof key, "%c:%s", kind == FS_CHANNEL ? 'c' : 'p', id);
    fs_queue *q = strmap_get(FS.queues, key);
    if (!q) {
        q = calloc(1, sizeof *q);
        if (!q || strmap_put(FS.queues, key, q) != 0) { free(q); req_free(r); return CPS_ENOMEM; }
        q->obj.kind = kind;
        snprintf(q->obj.id, sizeof q->obj.id, "%s", id);
        snprintf(q->obj.ns, sizeof q->obj.ns, "%s", ns ? ns : "");
        memcpy(q->key, key, sizeof key);
    }
    if (q->tail) q->tail->next = r; else q->head = r;
    q->tail = r;
    FS.pending++;
    if (!q->batch) {           /* idle queue: q was just made, r is alone */
        int rc = start_batch(q);
        if (rc) {
            FS.pending--;
            queue_drop(q);
            req_free(r);
            return rc;
        }
    }
    return CPS_OK;
}

/* Checks shared by every entry point; returns a new request or sets *rc. */
static fs_req *req_new(int op, void *ud, int *rc)
{
    if (FS.closing || !FS.queues) { *rc = CPS_ECANCELED; return NULL; }
    if (FS.pending >= FS.limit) { *rc = CPS_EBUSY; return NULL; }
    fs_req *r = calloc(1, sizeof *r);
    if (!r) { *rc = CPS_ENOMEM; return NULL; }
    r->op = op;
    r->ud = ud;
    return r;
}

/* A private copy of the caller's bytes (valid only during its call). */
static int req_copy_in(fs_req *r, const char *data, size_t len)
{
    r->in = malloc(len ? len : 1);
    if (!r->in) { req_free(r); return CPS_ENOMEM; }
    if (len) memcpy(r->in, data, len);
    r->inlen = len;
    return CPS_OK;
}

/* Appends to line logs take whole lines: a log never gains a partial line,
** so a missing final '\n' can only mean a torn write. */
static bool lines_ok(const char *data, size_t len) { return data && len && data[len - 1] == '\n'; }

/* ---- channel logs ----------------------------------------------------- */

static int fs_channel_append(void *st, const char *id, const char *data, size_t len,
                             cps_store_size_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_channel(id) || !lines_ok(data, len)) return CPS_EINVAL;
    fs_req *r = req_new(OP_APPEND, ud, &rc);
    if (!r) return rc;
    if ((rc = req_copy_in(r, data, len))) return rc;
    r->cb.size = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

static int fs_channel_read(void *st, const char *id, uint64_t offset, size_t max,
                           cps_store_read_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    fs_req *r = req_new(OP_READ, ud, &rc);
    if (!r) return rc;
    r->arg = offset;
    r->max = max;
    r->cb.read = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

/* The size of the channel log only (not the metadata log, unlike the Node
** store's getChannelSize): callers add meta_read's length when they need
** docs/protocol/storage.md's sum.  CPS_ENOENT (size 0) when there is no log. */
static int fs_channel_size(void *st, const char *id, cps_store_size_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    fs_req *r = req_new(OP_SIZE, ud, &rc);
    if (!r) return rc;
    r->cb.size = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

/* Channel operations that carry a number and answer a status. */
static int channel_simple(int op, const char *id, uint64_t arg, cps_store_done_fn done, void *ud)
{
    int rc;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    fs_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    r->arg = arg;
    r->cb.done = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

/* `from` and `len` must be line boundaries (CPS_EINVAL otherwise, also
** beyond the end): a cut mid-line would corrupt the log. */
static int fs_channel_trim(void *st, const char *id, uint64_t from, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_TRIM, id, from, done, ud);
}

static int fs_channel_truncate(void *st, const char *id, uint64_t len, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_TRUNCATE, id, len, done, ud);
}

/* Line deletion: same boundary rules as trim, checked on the pool. */
static int fs_channel_cut(void *st, const char *id, uint64_t offset, uint64_t len,
                          cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    fs_req *r = req_new(OP_CUT, ud, &rc);
    if (!r) return rc;
    r->arg = offset;
    r->arg2 = len;
    r->cb.done = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

static int fs_channel_archive(void *st, const char *id, const char *reason,
                              cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    fs_req *r = req_new(OP_ARCHIVE, ud, &rc);
    if (!r) return rc;
    if (reason) {
        if ((rc = req_copy_in(r, reason, strlen(reason)))) return rc;
        r->has_in = true;
    }
    r->cb.done = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

static int fs_channel_restore(void *st, const char *id, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_RESTORE, id, 0, done, ud);
}

static int fs_channel_delete(void *st, const char *id, cps_store_done_fn done, void *ud)
{
    (void)st;
    return channel_simple(OP_DELETE, id, 0, done, ud);
}

/* Reads of a whole small file of an object. */
static int read_whole(int kind, int op, const char *id, const char *ns, cps_store_data_fn done, void *ud)
{
    int rc;
    fs_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    r->cb.data = done;
    return enqueue(kind, id, ns, r);
}

static int fs_placeholder_read(void *st, const char *id, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    return read_whole(FS_CHANNEL, OP_PLACEHOLDER, id, NULL, done, ud);
}

/* ---- metadata logs (same queue as the channel: ordered with trims) ----- */

static int fs_meta_append(void *st, const char *id, const char *data, size_t len,
                          cps_store_size_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_channel(id) || !lines_ok(data, len)) return CPS_EINVAL;
    fs_req *r = req_new(OP_META_APPEND, ud, &rc);
    if (!r) return rc;
    if ((rc = req_copy_in(r, data, len))) return rc;
    r->cb.size = done;
    return enqueue(FS_CHANNEL, id, NULL, r);
}

static int fs_meta_read(void *st, const char *id, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    return read_whole(FS_CHANNEL, OP_META_READ, id, NULL, done, ud);
}

/* Writes that answer a status and carry bytes. */
static int write_simple(int kind, int op, const char *id, const char *ns, const char *data, size_t len,
                        cps_store_done_fn done, void *ud)
{
    int rc;
    if (!data && len) return CPS_EINVAL;
    fs_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    if ((rc = req_copy_in(r, data, len))) return rc;
    r->cb.done = done;
    return enqueue(kind, id, ns, r);
}

static int fs_meta_write(void *st, const char *id, const char *data, size_t len,
                         cps_store_done_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_channel(id)) return CPS_EINVAL;
    return write_simple(FS_CHANNEL, OP_META_WRITE, id, NULL, data, len, done, ud);
}

/* ---- pin logs --------------------------------------------------------- */

static int fs_pin_append(void *st, const char *key, const char *data, size_t len,
                         cps_store_done_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_key(key) || !lines_ok(data, len)) return CPS_EINVAL;
    return write_simple(FS_PIN, OP_PIN_APPEND, key, NULL, data, len, done, ud);
}

static int fs_pin_read(void *st, const char *key, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_key(key)) return CPS_EINVAL;
    return read_whole(FS_PIN, OP_PIN_READ, key, NULL, done, ud);
}

/* Same queue as the appends: an archive lands after every earlier append. */
static int fs_pin_archive(void *st, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_key(key)) return CPS_EINVAL;
    fs_req *r = req_new(OP_PIN_ARCHIVE, ud, &rc);
    if (!r) return rc;
    r->cb.done = done;
    return enqueue(FS_PIN, key, NULL, r);
}

static int fs_pin_restore(void *st, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_key(key)) return CPS_EINVAL;
    fs_req *r = req_new(OP_PIN_RESTORE, ud, &rc);
    if (!r) return rc;
    r->cb.done = done;
    return enqueue(FS_PIN, key, NULL, r);
}

/* ---- records ---------------------------------------------------------- */

static int fs_record_put(void *st, const char *ns, const char *key, const char *data,
                         size_t len, cps_store_done_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_ns(ns) || !valid_rkey(key)) return CPS_EINVAL;
    return write_simple(FS_RECORD, OP_REC_PUT, key, ns, data, len, done, ud);
}

static int fs_record_get(void *st, const char *ns, const char *key, cps_store_data_fn done, void *ud)
{
    (void)st;
    if (!fs_valid_ns(ns) || !valid_rkey(key)) return CPS_EINVAL;
    return read_whole(FS_RECORD, OP_REC_GET, key, ns, done, ud);
}

static int fs_record_del(void *st, const char *ns, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    int rc;
    if (!fs_valid_ns(ns) || !valid_rkey(key)) return CPS_EINVAL;
    fs_req *r = req_new(OP_REC_DEL, ud, &rc);
    if (!r) return rc;
    r->cb.done = done;
    return enqueue(FS_RECORD, key, ns, r);
}

/* ---- named objects (blobs, staged uploads, blocks) ---------------------- */

/* One queue per (store, key), like the other kinds.  A move is queued on
** its source: it is ordered after every earlier request on the source. */
static int obj_req(int op, const char *store, const char *key, fs_req **out, void *ud)
{
    int rc;
    if (!valid_store(store) || !fs_valid_okey(key)) return CPS_EINVAL;
    fs_req *r = req_new(op, ud, &rc);
    if (!r) return rc;
    *out = r;
    return CPS_OK;
}

static int fs_obj_append(void *st, const char *store, const char *key, const char *data, size_t len,
                         cps_store_size_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    if (!data && len) return CPS_EINVAL;
    int rc = obj_req(OP_OBJ_APPEND, store, key, &r, ud);
    if (rc || (rc = req_copy_in(r, data, len))) return rc;
    r->cb.size = done;
    return enqueue(FS_OBJ, key, store, r);
}

static int fs_obj_write(void *st, const char *store, const char *key, const char *data, size_t len,
                        cps_store_done_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    if (!data && len) return CPS_EINVAL;
    int rc = obj_req(OP_OBJ_WRITE, store, key, &r, ud);
    if (rc || (rc = req_copy_in(r, data, len))) return rc;
    r->cb.done = done;
    return enqueue(FS_OBJ, key, store, r);
}

static int fs_obj_read(void *st, const char *store, const char *key, uint64_t offset, size_t max,
                       cps_store_read_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    int rc = obj_req(OP_OBJ_READ, store, key, &r, ud);
    if (rc) return rc;
    r->arg = offset;
    r->max = max;
    r->cb.read = done;
    return enqueue(FS_OBJ, key, store, r);
}

static int fs_obj_size(void *st, const char *store, const char *key, cps_store_size_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    int rc = obj_req(OP_OBJ_SIZE, store, key, &r, ud);
    if (rc) return rc;
    r->cb.size = done;
    return enqueue(FS_OBJ, key, store, r);
}

static int fs_obj_move(void *st, const char *from_store, const char *from_key, const char *to_store,
                       const char *to_key, cps_store_done_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    if (!valid_store(to_store) || !fs_valid_okey(to_key)) return CPS_EINVAL;
    int rc = obj_req(OP_OBJ_MOVE, from_store, from_key, &r, ud);
    if (rc) return rc;
    snprintf(r->to_ns, sizeof r->to_ns, "%s", to_store);
    snprintf(r->to_id, sizeof r->to_id, "%s", to_key);
    r->cb.done = done;
    return enqueue(FS_OBJ, from_key, from_store, r);
}

static int obj_simple(int op, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    fs_req *r = NULL;
    int rc = obj_req(op, store, key, &r, ud);
    if (rc) return rc;
    r->cb.done = done;
    return enqueue(FS_OBJ, key, store, r);
}

static int fs_obj_delete(void *st, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    return obj_simple(OP_OBJ_DELETE, store, key, done, ud);
}

static int fs_obj_archive(void *st, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    return obj_simple(OP_OBJ_ARCHIVE, store, key, done, ud);
}

static int fs_obj_restore(void *st, const char *store, const char *key, cps_store_done_fn done, void *ud)
{
    (void)st;
    return obj_simple(OP_OBJ_RESTORE, store, key, done, ud);
}

/* ---- the raw view (fs_raw.c runs it) --------------------------------- */

static int raw_req(int op, const char *space, const char *name, fs_req **out, void *ud)
{
    fs_space sp;
    if (fs_space_parse(space, &sp) || (name && !fs_space_name_ok(&sp, name))) return CPS_EINVAL;
    int rc;
    if (!(*out = req_new(op, ud, &rc))) return rc;
    return CPS_OK;
}

static int fs_raw_spaces(void *st, cps_store_list_fn done, void *ud)
{
    (void)st;
    int rc;
    fs_req *r = req_new(OP_RAW_SPACES, ud, &rc);
    if (!r) return rc;
    r->cb.list = done;
    return enqueue(FS_RAW, "", "", r);
}

static int fs_raw_list(void *st, const char *space, const char *after, size_t max,
                       cps_store_list_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    if (!after || strlen(after) > 128) return CPS_EINVAL;
    int rc = raw_req(OP_RAW_LIST, space, NULL, &r, ud);
    if (rc || (rc = req_copy_in(r, after, strlen(after) + 1))) return rc;
    r->max = max;
    r->cb.list = done;
    return enqueue(FS_RAW, "", space, r);
}

static int fs_raw_size(void *st, const char *space, const char *name, cps_store_size_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    int rc = raw_req(OP_RAW_SIZE, space, name, &r, ud);
    if (rc) return rc;
    r->cb.size = done;
    return enqueue(FS_RAW, name, space, r);
}

static int fs_raw_read(void *st, const char *space, const char *name, uint64_t offset, size_t max,
                       cps_store_read_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    int rc = raw_req(OP_RAW_READ, space, name, &r, ud);
    if (rc) return rc;
    r->arg = offset;
    r->max = max;
    r->cb.read = done;
    return enqueue(FS_RAW, name, space, r);
}

static int fs_raw_write(void *st, const char *space, const char *name, uint64_t offset,
                        const char *data, size_t len, cps_store_size_fn done, void *ud)
{
    (void)st;
    fs_req *r = NULL;
    if (!data && len) return CPS_EINVAL;
    int rc = raw_req(OP_RAW_WRITE, space, name, &r, ud);
    if (rc || (rc = req_copy_in(r, data, len))) return rc;
    if (!strcmp(space, "channel")) fdc_drop(name);   /* the open log's size would be stale */
    r->arg = offset;
    r->cb.size = done;
    return enqueue(FS_RAW, name, space, r);
}

/* ---- load and unload -------------------------------------------------- */

static void collect(const char *key, void *val, void *ud)
{
    (void)key;
    fs_queue ***at = ud;
    *(*at)++ = val;
}

/* Requests not yet on the pool are cancelled now; a batch on the pool
** finishes and its `after` (CPS_ECANCELED from the host) completes it, the
** last one freeing the rest.  Every `done` is called exactly once. */
static void fs_fini(cps_plugin *self, void *state)
{
    (void)self;
    (void)state;
    if (FS.closing || !FS.queues) return;
    FS.closing = true;
    /* Loop batches ran already: report them now, the timer is going away. */
    if (FS.loop_timer) { FS.api->timer_stop(FS.loop_timer); FS.loop_timer = NULL; }
    while (FS.loop_done) {
        fs_queue *q = FS.loop_done;
        FS.loop_done = q->loop_next;
        q->loop_next = NULL;
        batch_after(q, CPS_OK);
    }
    fdc_clear();
    if (!FS.queues) return;           /* that was the last batch: torn down */
    size_t n = strmap_count(FS.queues);
    fs_queue **all = n ? malloc(n * sizeof *all) : NULL, **at = all;
    if (n && !all) {
        /* No memory for the list: leak nothing reachable, just wait for the
        ** batches; waiting requests stay and are cancelled by their after. */
        return;
    }
    strmap_each(FS.queues, collect, &at);
    for (size_t i = 0; i < n; i++) {
        fs_queue *q = all[i];
        fs_req *rest = q->head;
        q->head = q->tail = NULL;
        if (!q->batch) {       /* cannot happen (idle queues are freed) */
            fs_queue copy = *q;
            queue_drop(q);
            cancel_list(&copy, rest, CPS_ECANCELED);
        } else {
            cancel_list(q, rest, CPS_ECANCELED);
        }
    }
    free(all);
    if (FS.inflight == 0) teardown();
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    if (FS.queues) return CPS_EBUSY;     /* an earlier instance is still draining */
    memset(&FS, 0, sizeof FS);
    FS.api = a;
    FS.self = self;
    FS.root = strdup(a->data_dir(self));
    FS.fsync = json_is_true(json_object_get(a->config(self), "fsync"));
    json_t *la = json_object_get(a->config(self), "loop_appends");
    FS.loop_appends = !json_is_false(la);
    json_t *of = json_object_get(a->config(self), "open_files");
    size_t open_files = json_is_integer(of) && json_integer_value(of) >= 0 ? (size_t)json_integer_value(of) : 256;
    if (fdc_init(FS.loop_appends ? open_files : 0)) { free(FS.root); FS.root = NULL; return CPS_ENOMEM; }
    json_t *lim = a->config_get(self, "limits.work_queue");
    FS.limit = json_is_integer(lim) && json_integer_value(lim) > 0 ? (size_t)json_integer_value(lim) : 10000;
    FS.queues = strmap_new();
    if (!FS.root || !FS.queues) { teardown(); return CPS_ENOMEM; }
    FS.backend = (cps_storage_backend){
        .size = sizeof(cps_storage_backend),
        .version = CPS_STORAGE_VERSION,
        .name = "fs",
        .state = NULL,          /* everything is in the FS singleton */
        .channel_append = fs_channel_append,
        .channel_read = fs_channel_read,
        .channel_size = fs_channel_size,
        .channel_trim = fs_channel_trim,
        .channel_truncate = fs_channel_truncate,
        .channel_archive = fs_channel_archive,
        .channel_restore = fs_channel_restore,
        .channel_delete = fs_channel_delete,
        .placeholder_read = fs_placeholder_read,
        .meta_append = fs_meta_append,
        .meta_read = fs_meta_read,
        .meta_write = fs_meta_write,
        .pin_append = fs_pin_append,
        .pin_read = fs_pin_read,
        .record_put = fs_record_put,
        .record_get = fs_record_get,
        .record_del = fs_record_del,
        .pin_archive = fs_pin_archive,
        .obj_append = fs_obj_append,
        .obj_write = fs_obj_write,
        .obj_read = fs_obj_read,
        .obj_size = fs_obj_size,
        .obj_move = fs_obj_move,
        .obj_delete = fs_obj_delete,
        .obj_archive = fs_obj_archive,
        .obj_path = NULL,       /* no path leaves the backend: objects are read with obj_read */
        .channel_cut = fs_channel_cut,
        .raw_spaces = fs_raw_spaces,
        .raw_list = fs_raw_list,
        .raw_size = fs_raw_size,
        .raw_read = fs_raw_read,
        .raw_write = fs_raw_write,
        .lease = NULL,          /* no other process reaches these files */
        .obj_restore = fs_obj_restore,
        .pin_restore = fs_pin_restore,
    };
    int rc = a->register_storage(self, &FS.backend);
    if (rc) { teardown(); return rc; }
    a->log(self, CPS_LOG_INFO, "storage backend 'fs' at %s%s", FS.root, FS.fsync ? " (fdatasync on)" : "");
    return CPS_OK;
}

CPS_PLUGIN_DEFINE("storage-fs", "1.0.0", plugin_init, fs_fini);
