/*
** pin.c - pinning and quota (docs/protocol/rpc.md 6-7): the authenticated RPC
** commands PIN, UNPIN, RESET, GET_HASH, GET_TOTAL_SIZE, GET_LIMIT,
** UPDATE_LIMITS, REMOVE_PINS, TRIM_PINS and the anonymous IS_CHANNEL_PINNED.
**
** Two halves.  The RPC half checks the arguments and forwards each call to
** the storage node owning the signer's safe key.  The storage half (only
** where this process runs a storage node) keeps the replayed pin set of each
** key in a bounded LRU cache, runs the operations of one key one at a time
** (a queue per key, so two PINs of one user never race), appends to the pin
** log and asks the storage role for channel sizes (CHANNEL_SIZE).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "cps.h"
#include "conf.h"
#include "ids.h"
#include "strmap.h"
#include "text.h"

#define MAX_IDS 10000              /* longer pin lists are refused */
#define SIZE_INFLIGHT 64           /* CHANNEL_SIZE queries in flight per operation */
#define DEFAULT_LIMIT 52428800     /* docs/protocol/rpc.md 7.3: 50 MiB */
#define DEFAULT_CACHED 10000
#define DEFAULT_QUEUE 1000         /* operations waiting per key */

/* What the storage half does; the RPC commands map onto these. */
enum op_kind { OP_PIN, OP_UNPIN, OP_RESET, OP_HASH, OP_TOTAL, OP_LIMIT, OP_REMOVE };

typedef struct cmd_def {
    const char *rpc;           /* client command */
    const char *node_cmd;      /* storage half command */
    int kind;
    bool takes_ids;
} cmd_def;

static const cmd_def CMDS[] = {
    { "PIN",            "PIN_PIN",            OP_PIN,    true },
    { "UNPIN",          "PIN_UNPIN",          OP_UNPIN,  true },
    { "RESET",          "PIN_RESET",          OP_RESET,  true },
    { "GET_HASH",       "PIN_GET_HASH",       OP_HASH,   false },
    { "GET_TOTAL_SIZE", "PIN_GET_TOTAL_SIZE", OP_TOTAL,  false },
    { "GET_LIMIT",      "PIN_GET_LIMIT",      OP_LIMIT,  false },
    /* No accounts server: refreshing the limits is reading them. */
    { "UPDATE_LIMITS",  "PIN_GET_LIMIT",      OP_LIMIT,  false },
    { "REMOVE_PINS",    "PIN_REMOVE_PINS",    OP_REMOVE, false },
};
#define NCMDS (sizeof CMDS / sizeof CMDS[0])

typedef struct pset pset;

/* One queued operation of a key (the head one runs). */
typedef struct pop {
    const cmd_def *def;
    cps_call *call;            /* the query to answer */
    json_t *ids;               /* the raw id list (PIN/UNPIN/RESET), owned */
    json_t *write;             /* raw ids that go to the log line, owned */
    char key[IDS_KEY_LEN + 1];     /* the unsafe key, for the limit table */
    struct pop *next;
} pop;

/* Sizes of a list of ids, at most SIZE_INFLIGHT queries at a time: the
** first `nfirst` ids add to `first`, the others to `rest`. */
typedef struct sizejob sizejob;
typedef struct sizeslot { sizejob *job; size_t idx; } sizeslot;
struct sizejob {
    pset *s;
    char **ids;
    size_t n, nfirst, next, inflight, done;
    uint64_t first, rest;
    sizeslot *slots;
};

/* The state of one key: its replayed pins and its operation queue.  Not a
** keyqueue (plugins/common): the queue lives in the cached pin set, which
** outlives an empty queue (LRU), and fini detaches running sets. */
struct pset {
    char safe[IDS_KEY_LEN + 1];
    strmap *pins;              /* id -> &PINNED (rpc.md 7.1: raw live, stripped on replay); NULL: not loaded */
    pop *head, *tail;
    size_t nops;
    bool running;              /* the head op waits for I/O or sizes */
    bool in_kick;
    sizejob *job;
    pset *prev, *next;         /* LRU list, most recent first */
};

static struct {
    const cps_api *api;
    cps_plugin *self;
    bool closing;              /* fini ran: callbacks only release */
    size_t orphans;            /* keys detached at fini, awaiting a callback */
    strmap *sets;              /* safe key -> pset (storage half only) */
    pset *lru_head, *lru_tail;
    size_t max_cached, max_queue;
    cps_counter *c_writes, *c_over;
} P;                           /* the plugin singleton */

static char PINNED;            /* the value of every pin set entry */

#define API P.api

/* ---- ids and keys ------------------------------------------------------ */

/* A pinned id: a channel (32, 33 or 34 hex) or a blob (48 hex), with an
** optional `#suffix` as the client marks its drive (`#drive`).  A login block
** (`#block`) is the block's key, 44 characters of base64, not hex. */
static bool id_ok(const char *s)
{
    if (!s) return false;
    const char *hash = strchr(s, '#');
    size_t n = hash ? (size_t)(hash - s) : strlen(s);
    if (hash) {
        const char *suf = hash + 1;
        size_t sl = strlen(suf);
        if (sl < 1 || sl > 32) return false;
        for (size_t i = 0; i < sl; i++)
            if (!((suf[i] >= 'a' && suf[i] <= 'z') || (suf[i] >= 'A' && suf[i] <= 'Z') ||
                  (suf[i] >= '0' && suf[i] <= '9') || suf[i] == '_' || suf[i] == '-'))
                return false;
    }
    char head[IDS_BLOB_LEN + 1];
    if (n >= sizeof head) return false;
    memcpy(head, s, n);
    head[n] = 0;
    enum ids_kind k = ids_classify(head);
    if (k == IDS_KEY) return hash && !strcmp(hash + 1, "block");
    return k != IDS_OTHER;
}

static bool list_ok(json_t *ids)
{
    if (!json_is_array(ids) || json_array_size(ids) > MAX_IDS) return false;
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v)
        if (!id_ok(json_string_value(v))) return false;
    return true;
}

/* The replay rules of docs/protocol/rpc.md 7.1 (lib/pins.js): an id loses its `#suffix`;
** `#block` names the login block, which is never pinned.  Only replay uses
** this: the live set keeps ids as sent (7.1).
** Writes the bare id into `out` (>= 128 bytes); false if it is too long. */
static bool normalise(const char *raw, char *out, size_t cap, bool *is_block)
{
    const char *hash = strchr(raw, '#');
    size_t n = hash ? (size_t)(hash - raw) : strlen(raw);
    *is_block = hash && !strcmp(hash + 1, "block");
    if (n >= cap) return false;
    memcpy(out, raw, n);
    out[n] = 0;
    return n > 0;
}

/* ---- limits ------------------------------------------------------------ */

/* [limit, plan, note] of a key from the SET_QUOTA decrees, or the `limits`
** table of the section (by unsafe key, or its safe form), else [instance.default_storage_limit, "",
** ""] (shared with blob, and published by /api/config). */
static json_t *limit_of(const char *key)
{
    json_t *cfg = API->config(P.self);
    json_t *def = API->config_get(P.self, "instance.default_storage_limit");
    json_int_t limit = json_is_number(def) ? (json_int_t)json_number_value(def) : DEFAULT_LIMIT;
    const char *plan = "", *note = "";
    json_t *table = json_object_get(cfg, "limits");
    char safe[IDS_KEY_LEN + 1];
    json_t *e = json_object_get(table, key);
    if (!e && ids_safe_key(key, safe)) e = json_object_get(table, safe);
    /* a SET_QUOTA decree (docs/protocol/admin.md §4.5) wins over the
    ** configuration: the live table is by canonical (unsafe) key */
    char unsafe[IDS_KEY_LEN + 1];
    if (strlen(key) == IDS_KEY_LEN) {
        for (size_t i = 0; i <= IDS_KEY_LEN; i++) unsafe[i] = key[i] == '-' ? '/' : key[i];
        json_t *d = json_object_get(API->config_get(P.self, "instance.custom_limits"), unsafe);
        if (json_is_object(d)) e = d;
    }
    if (json_is_object(e)) {
        json_t *l = json_object_get(e, "limit");
        if (json_is_number(l)) limit = (json_int_t)json_number_value(l);
        if (json_is_string(json_object_get(e, "plan"))) plan = json_string_value(json_object_get(e, "plan"));
        if (json_is_string(json_object_get(e, "note"))) note = json_string_value(json_object_get(e, "note"));
    }
    return json_pack("[I s s]", limit, plan, note);
}

/* ---- the RPC half ------------------------------------------------------- */

typedef struct fwd { cps_rpc *rpc; const cmd_def *def; } fwd;

static void forwarded(void *ud, int error, json_t *data)
{
    fwd *f = ud;
    cps_rpc *rpc = f->rpc;
    const cmd_def *def = f->def;
    free(f);
    if (error) { API->rpc_error(rpc, error); return; }
    /* docs/protocol/rpc.md 6: removing the pins also ends the signer's cookie session,
    ** which the dispatcher (the core) ends when it gets this answer. */
    if (def->kind == OP_REMOVE) API->rpc_end_session(rpc);
    API->rpc_reply(rpc, json_incref(data));
}

static int rpc_forward(cps_rpc *rpc, json_t *args, void *ud)
{
    const cmd_def *def = ud;
    const char *key = API->rpc_key(rpc);
    char safe[IDS_KEY_LEN + 1], node[64];
    if (!ids_safe_key(key, safe)) { API->rpc_error(rpc, CPS_ERR_INVALID_MESSAGE_OR_PUBLIC_KEY); return CPS_OK; }
    if (def->takes_ids && !list_ok(args)) { API->rpc_error(rpc, CPS_ERR_INVALID_PIN_LIST); return CPS_OK; }
    if (!API->owner(P.self, "storage", safe, node, sizeof node)) return CPS_EIO;
    json_t *q = json_pack("{s s}", "key", key);
    fwd *f = malloc(sizeof *f);
    if (!q || !f) { json_decref(q); free(f); return CPS_ENOMEM; }
    if (def->takes_ids) json_object_set(q, "ids", args);
    f->rpc = rpc;
    f->def = def;
    int rc = API->query(P.self, node, def->node_cmd, q, 0, forwarded, f);
    if (rc) { free(f); return rc; }
    return CPS_ASYNC;
}

static int rpc_trim_pins(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)args; (void)ud;
    API->rpc_error(rpc, CPS_ERR_NOT_IMPLEMENTED);
    return CPS_OK;
}

/* Main's answer: pinning is not tracked per channel. */
static int rpc_is_pinned(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)args; (void)ud;
    API->rpc_reply(rpc, json_true());
    return CPS_OK;
}

/* IS_PREMIUM edPublic: true iff the key's limit entry names a plan (docs/protocol/rpc.md §5). */
static int rpc_is_premium(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *key = json_string_value(args);
    if (!key) { API->rpc_reply(rpc, json_false()); return CPS_OK; }
    json_t *l = limit_of(key);
    const char *plan = json_string_value(json_array_get(l, 1));
    API->rpc_reply(rpc, json_boolean(plan && *plan));
    json_decref(l);
    return CPS_OK;
}

/* ---- the storage half: key states and the LRU cache --------------------- */

static void pop_free(pop *o)
{
    json_decref(o->ids);
    json_decref(o->write);
    free(o);
}

static void set_unload(pset *s)
{
    strmap_free(s->pins, NULL);
    s->pins = NULL;
}

static void pset_free(pset *s)
{
    set_unload(s);
    free(s);
}

static void lru_unlink(pset *s)
{
    if (s->prev) s->prev->next = s->next; else if (P.lru_head == s) P.lru_head = s->next;
    if (s->next) s->next->prev = s->prev; else if (P.lru_tail == s) P.lru_tail = s->prev;
    s->prev = s->next = NULL;
}

static void lru_touch(pset *s)
{
    lru_unlink(s);
    s->next = P.lru_head;
    if (P.lru_head) P.lru_head->prev = s;
    P.lru_head = s;
    if (!P.lru_tail) P.lru_tail = s;
}

/* Drops the least recently used idle keys beyond max_cached, except
** `keep` (a key with operations queued stays too: its state is in use, so
** the cache exceeds the bound by at most the keys being worked on). */
static void evict(pset *keep)
{
    pset *s = P.lru_tail;
    while (s && strmap_count(P.sets) > P.max_cached) {
        pset *prev = s->prev;
        if (s != keep && !s->head && !s->running) {
            lru_unlink(s);
            strmap_del(P.sets, s->safe);
            pset_free(s);
        }
        s = prev;
    }
}

static pset *set_get(const char *safe)
{
    pset *s = strmap_get(P.sets, safe);
    if (s) { lru_touch(s); return s; }
    s = calloc(1, sizeof *s);
    if (!s || strmap_put(P.sets, safe, s) != 0) { free(s); return NULL; }
    memcpy(s->safe, safe, sizeof s->safe);
    lru_touch(s);
    evict(s);
    return s;
}

/* ---- the storage half: replay ------------------------------------------ */

/* `live`: the set follows its own append and keeps the ids as sent, suffix
** and all, as CryptPad's session list does; otherwise (replay of the log)
** the suffix is stripped and `#block` ids are not pinned (rpc.md 7.1). */
static void pins_add(pset *s, const char *raw, bool live)
{
    char id[128];
    bool block;
    if (live) { if (*raw) strmap_put(s->pins, raw, &PINNED); return; }
    if (normalise(raw, id, sizeof id, &block) && !block) strmap_put(s->pins, id, &PINNED);
}

static void pins_remove(pset *s, const char *raw, bool live)
{
    char id[128];
    bool block;
    if (live) strmap_del(s->pins, raw);
    else if (normalise(raw, id, sizeof id, &block)) strmap_del(s->pins, id);
}

/* Applies one log line (parsed); unknown commands and bad shapes are
** skipped as lib/pins.js does. */
static void apply(pset *s, json_t *line, bool live)
{
    const char *cmd = json_string_value(json_array_get(line, 0));
    json_t *ids = json_array_get(line, 1);
    if (!cmd) return;
    bool reset = !strcmp(cmd, "RESET");
    if (reset) {
        strmap_free(s->pins, NULL);
        s->pins = strmap_new();
    }
    if (!json_is_array(ids)) return;
    size_t i;
    json_t *v;
    if (reset || !strcmp(cmd, "PIN")) {
        json_array_foreach(ids, i, v)
            if (json_is_string(v)) pins_add(s, json_string_value(v), live);
    } else if (!strcmp(cmd, "UNPIN")) {
        json_array_foreach(ids, i, v)
            if (json_is_string(v)) pins_remove(s, json_string_value(v), live);
    }
}

static void replay(pset *s, const char *data, size_t len)
{
    s->pins = strmap_new();
    const char *end = data + len;
    while (data < end) {
        const char *nl = memchr(data, '\n', (size_t)(end - data));
        size_t n = nl ? (size_t)(nl - data) : (size_t)(end - data);
        if (n) {
            json_t *line = json_loadb(data, n, 0, NULL);
            if (json_is_array(line)) apply(s, line, false);
            json_decref(line);
        }
        data += n + 1;
    }
}

/* ---- the storage half: running the operations of a key ----------------- */

static void run_head(pset *s);
static void kick(pset *s);

/* Answers the head operation and starts the next. */
static void op_finish(pset *s, int err, json_t *data)
{
    pop *o = s->head;
    s->head = o->next;
    if (!s->head) s->tail = NULL;
    s->nops--;
    s->running = false;
    API->reply(o->call, err, data);
    pop_free(o);
    if (!s->in_kick) kick(s);
}

static void kick(pset *s)
{
    s->in_kick = true;
    while (s->head && !s->running) {
        s->running = true;
        run_head(s);
    }
    s->in_kick = false;
}

/* A callback arriving after fini: answer and free what the key held. */
static void abandon(pset *s)
{
    if (s->head) op_finish(s, CPS_ECANCELED, NULL);   /* the rest were answered at fini */
    pset_free(s);
    P.orphans--;
}

static const cps_storage_backend *backend(void) { return API->storage(P.self, NULL); }

static void loaded(void *ud, int status, const char *data, size_t len)
{
    pset *s = ud;
    if (P.closing) { abandon(s); return; }
    if (status == CPS_OK) replay(s, data, len);
    else if (status == CPS_ENOENT) s->pins = strmap_new();    /* no log yet: nothing pinned */
    if (!s->pins) {
        API->log(P.self, CPS_LOG_ERROR, "pin log %s: read failed: %s", s->safe, API->errname(status));
        op_finish(s, status, NULL);
        return;
    }
    run_head(s);
}

/* The pin set's ids, sorted by bytes (JavaScript's default sort for these
** ASCII ids), borrowed from the set.  `*n` gets the count; NULL only when
** out of memory. */
static void collect_id(const char *key, void *val, void *ud)
{
    (void)val;
    const char ***at = ud;
    *(*at)++ = key;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static const char **sorted_ids(pset *s, size_t *n)
{
    *n = strmap_count(s->pins);
    const char **all = malloc((*n ? *n : 1) * sizeof *all), **at = all;
    if (!all) return NULL;
    strmap_each(s->pins, collect_id, &at);
    qsort(all, *n, sizeof *all, cmp_str);
    return all;
}

/* docs/protocol/rpc.md 7.2: base64(SHA-512(JSON.stringify(sorted list))). */
static void do_hash(pset *s)
{
    size_t n;
    const char **ids = sorted_ids(s, &n);
    tbuf b = { 0 };
    tbuf_add(&b, "[", 1);
    for (size_t i = 0; ids && i < n; i++) {
        if (i) tbuf_add(&b, ",", 1);
        tbuf_json_str(&b, ids[i], strlen(ids[i]));
    }
    tbuf_add(&b, "]", 1);
    bool oom = !ids || b.oom;
    free(ids);
    if (oom) { tbuf_free(&b); op_finish(s, CPS_ENOMEM, NULL); return; }
    unsigned char digest[crypto_hash_sha512_BYTES];
    crypto_hash_sha512(digest, (const unsigned char *)b.s, b.len);
    tbuf_free(&b);
    char *b64 = b64_encode_dup(digest, sizeof digest);
    op_finish(s, b64 ? CPS_OK : CPS_ENOMEM, b64 ? json_string(b64) : NULL);
    free(b64);
}

/* -- sizes -- */

static void sizes_done(pset *s);
static void size_issue(sizejob *j);

static void job_free(sizejob *j)
{
    for (size_t i = 0; i < j->n; i++) free(j->ids[i]);
    free(j->ids);
    free(j->slots);
    free(j);
}

/* One id's size.  Any error (no CHANNEL_SIZE on that node yet, a timeout)
** counts as 0, as GET_FILE_SIZE's errors do (docs/protocol/rpc.md 7.3). */
static void size_add(sizejob *j, size_t idx, json_t *data)
{
    json_t *v = json_object_get(data, "size");
    double d = json_is_number(v) ? json_number_value(v) : 0;
    uint64_t size = d > 0 ? (uint64_t)d : 0;
    if (idx < j->nfirst) j->first += size; else j->rest += size;
}

static void size_reply(void *ud, int error, json_t *data)
{
    sizeslot *slot = ud;
    sizejob *j = slot->job;
    j->inflight--;
    j->done++;
    if (P.closing) {
        if (j->inflight == 0) {         /* the last one: nothing more is issued */
            pset *s = j->s;
            s->job = NULL;
            job_free(j);
            abandon(s);
        }
        return;
    }
    if (!error) size_add(j, slot->idx, data);
    size_issue(j);
}

static void size_issue(sizejob *j)
{
    while (j->next < j->n && j->inflight < SIZE_INFLIGHT) {
        size_t i = j->next++;
        char node[64];
        j->slots[i].job = j;
        j->slots[i].idx = i;
        /* an `id#suffix` (live set) is no valid id for a size: 0, as CryptPad */
        json_t *q = strchr(j->ids[i], '#') ? NULL : json_pack("{s s}", "id", j->ids[i]);
        if (q && API->owner(P.self, "storage", j->ids[i], node, sizeof node)) {
            j->inflight++;
            if (API->query(P.self, node, "CHANNEL_SIZE", q, 0, size_reply, &j->slots[i]) == CPS_OK) continue;
            j->inflight--;
        } else {
            json_decref(q);
        }
        j->done++;                      /* not asked: counts as 0 */
    }
    if (j->done == j->n && j->inflight == 0) sizes_done(j->s);
}

/* Starts sizing ids (owned: freed with the job); the first `nfirst` add to
** job->first.  sizes_done runs when all are in. */
static void sizes_start(pset *s, char **ids, size_t n, size_t nfirst)
{
    sizejob *j = calloc(1, sizeof *j);
    sizeslot *slots = calloc(n ? n : 1, sizeof *slots);
    if (!j || !slots) {
        for (size_t i = 0; i < n; i++) free(ids[i]);
        free(ids);
        free(j);
        free(slots);
        op_finish(s, CPS_ENOMEM, NULL);
        return;
    }
    j->s = s;
    j->ids = ids;
    j->n = n;
    j->nfirst = nfirst;
    j->slots = slots;
    s->job = j;
    size_issue(j);
}

/* The ids of the pin set (copies) followed by room for `extra` more. */
static char **pinned_copy(pset *s, size_t extra, size_t *n)
{
    const char **sorted = sorted_ids(s, n);
    char **ids = malloc((*n + extra + 1) * sizeof *ids);
    if (!sorted || !ids) { free(sorted); free(ids); return NULL; }
    for (size_t i = 0; i < *n; i++)
        if (!(ids[i] = strdup(sorted[i]))) {
            while (i--) free(ids[i]);
            free(ids);
            free(sorted);
            return NULL;
        }
    free(sorted);
    return ids;
}

/* -- writes -- */

/* `["PIN",["id",...],timeMs]\n`, written as JSON.stringify writes it. */
static char *log_line(const char *cmd, json_t *ids, size_t *len)
{
    tbuf b = { 0 };
    char tail[32];
    tbuf_adds(&b, "[\"");
    tbuf_adds(&b, cmd);
    tbuf_adds(&b, "\",[");
    size_t i;
    json_t *v;
    json_array_foreach(ids, i, v) {
        if (i) tbuf_add(&b, ",", 1);
        tbuf_json_str(&b, json_string_value(v), json_string_length(v));
    }
    snprintf(tail, sizeof tail, "],%llu]\n", (unsigned long long)API->now_ms());
    tbuf_adds(&b, tail);
    if (b.oom) { tbuf_free(&b); return NULL; }
    *len = b.len;
    return b.s;
}

static void written(void *ud, int status)
{
    pset *s = ud;
    if (P.closing) { abandon(s); return; }
    pop *o = s->head;
    if (status != CPS_OK) {
        API->log(P.self, CPS_LOG_ERROR, "pin log %s: append failed: %s", s->safe, API->errname(status));
        op_finish(s, status, NULL);
        return;
    }
    API->counter_add(P.c_writes, 1);
    /* The cache follows its own appends, only once they are on disk. */
    json_t *line = json_pack("[s O]", o->def->kind == OP_PIN ? "PIN" : o->def->kind == OP_UNPIN ? "UNPIN" : "RESET",
                             o->write);
    if (line) apply(s, line, true);
    else set_unload(s);                 /* cannot follow: re-read next time */
    json_decref(line);
    op_finish(s, CPS_OK, NULL);
}

static void write_line(pset *s, const char *cmd, json_t *ids)
{
    const cps_storage_backend *b = backend();
    size_t len = 0;
    char *text = log_line(cmd, ids, &len);
    int rc = !b ? CPS_EIO : !text ? CPS_ENOMEM : b->pin_append(b->state, s->safe, text, len, written, s);
    free(text);
    if (rc) op_finish(s, rc, NULL);
}

/* -- the operations -- */

/* PIN: only ids not in the set, compared as sent (rpc.md 7.1: `id#drive` is
** new even when `id` is pinned), are written; the quota is checked on the
** sizes of the new ids (a suffixed id counts 0, as in CryptPad). */
static void do_pin(pset *s, pop *o)
{
    strmap *seen = strmap_new();
    char **ids = NULL;
    size_t npinned = 0, nnew = 0, i;
    json_t *v;
    o->write = json_array();
    if (!o->write || !seen) goto oom;
    json_array_foreach(o->ids, i, v) {
        const char *id = json_string_value(v);
        if (!*id || strmap_get(seen, id) || strmap_get(s->pins, id)) continue;
        if (strmap_put(seen, id, &PINNED) || json_array_append(o->write, v)) goto oom;
    }
    strmap_free(seen, NULL);
    seen = NULL;
    if (json_array_size(o->write) == 0) { op_finish(s, CPS_OK, NULL); return; }
    /* docs/protocol/rpc.md 7.1: sizes of the new ids must fit in limit - total. */
    ids = pinned_copy(s, json_array_size(o->write), &npinned);
    if (!ids) goto oom;
    json_array_foreach(o->write, i, v) {
        if (!(ids[npinned + nnew] = strdup(json_string_value(v)))) goto oom;
        nnew++;
    }
    sizes_start(s, ids, npinned + nnew, npinned);
    return;
oom:
    if (ids)
        for (size_t k = 0; k < npinned + nnew; k++) free(ids[k]);
    free(ids);
    strmap_free(seen, NULL);
    op_finish(s, CPS_ENOMEM, NULL);
}

static void pin_sized(pset *s, uint64_t total, uint64_t extra)
{
    pop *o = s->head;
    json_t *lim = limit_of(o->key);
    int64_t limit = (int64_t)json_integer_value(json_array_get(lim, 0));
    json_decref(lim);
    if ((int64_t)extra > limit - (int64_t)total) {
        API->counter_add(P.c_over, 1);
        op_finish(s, CPS_ERR_E_OVER_LIMIT, NULL);
        return;
    }
    write_line(s, "PIN", o->write);
}

/* UNPIN: only ids in the set, compared as sent (rpc.md 7.1), are written. */
static void do_unpin(pset *s, pop *o)
{
    o->write = json_array();
    strmap *seen = strmap_new();
    size_t i;
    json_t *v;
    if (!o->write || !seen) { strmap_free(seen, NULL); op_finish(s, CPS_ENOMEM, NULL); return; }
    json_array_foreach(o->ids, i, v) {
        const char *id = json_string_value(v);
        if (!strmap_get(s->pins, id) || strmap_get(seen, id)) continue;
        strmap_put(seen, id, &PINNED);
        json_array_append(o->write, v);
    }
    strmap_free(seen, NULL);
    if (json_array_size(o->write) == 0) { op_finish(s, CPS_OK, NULL); return; }
    write_line(s, "UNPIN", o->write);
}

static void archived(void *ud, int status)
{
    pset *s = ud;
    if (P.closing) { abandon(s); return; }
    if (status != CPS_OK && status != CPS_ENOENT) {
        op_finish(s, status, NULL);
        return;
    }
    set_unload(s);                      /* read again (ENOENT: empty) on next use */
    op_finish(s, CPS_OK, json_string("OK"));
}

/* REMOVE_PINS: the log goes to the archive.  A backend without pin_archive
** gets a `RESET []` line instead, which empties the set on replay. */
static void do_remove(pset *s)
{
    const cps_storage_backend *b = backend();
    int rc;
    if (b && CPS_STORAGE_HAS(b, pin_archive) && b->pin_archive) {
        rc = b->pin_archive(b->state, s->safe, archived, s);
    } else if (b) {
        char line[64];
        int n = snprintf(line, sizeof line, "[\"RESET\",[],%llu]\n", (unsigned long long)API->now_ms());
        rc = b->pin_append(b->state, s->safe, line, (size_t)n, archived, s);
    } else {
        rc = CPS_EIO;
    }
    if (rc) op_finish(s, rc, NULL);
}

static void sizes_done(pset *s)
{
    sizejob *j = s->job;
    uint64_t first = j->first, rest = j->rest;
    s->job = NULL;
    job_free(j);
    if (s->head->def->kind == OP_PIN) pin_sized(s, first, rest);
    else op_finish(s, CPS_OK, json_integer((json_int_t)first));
}

static void run_head(pset *s)
{
    pop *o = s->head;
    int kind = o->def->kind;
    if (kind == OP_REMOVE) { do_remove(s); return; }
    if (kind == OP_RESET && json_array_size(o->ids) == 0) {
        op_finish(s, CPS_OK, NULL);       /* docs/protocol/rpc.md 7.1: nothing written, set kept */
        return;
    }
    if (!s->pins) {
        const cps_storage_backend *b = backend();
        int rc = b ? b->pin_read(b->state, s->safe, loaded, s) : CPS_EIO;
        if (rc) op_finish(s, rc, NULL);
        return;
    }
    switch (kind) {
    case OP_PIN: do_pin(s, o); break;
    case OP_UNPIN: do_unpin(s, o); break;
    case OP_RESET:
        o->write = json_incref(o->ids);
        write_line(s, "RESET", o->write);
        break;
    case OP_HASH: do_hash(s); break;
    case OP_TOTAL: {
        size_t n;
        char **ids = pinned_copy(s, 0, &n);
        if (!ids) { op_finish(s, CPS_ENOMEM, NULL); break; }
        sizes_start(s, ids, n, n);
        break;
    }
    default: op_finish(s, CPS_EINVAL, NULL);
    }
}

/* A storage half command: {key, ids?} -> the value of the RPC command. */
static int node_cmd(cps_call *call, json_t *args, void *ud)
{
    const cmd_def *def = ud;
    const char *key = json_string_value(json_object_get(args, "key"));
    json_t *ids = json_object_get(args, "ids");
    char safe[IDS_KEY_LEN + 1];
    if (!ids_safe_key(key, safe)) return CPS_EINVAL;
    if (def->takes_ids && !list_ok(ids)) { API->reply(call, CPS_ERR_INVALID_PIN_LIST, NULL); return CPS_OK; }
    if (def->kind == OP_LIMIT) { API->reply(call, CPS_OK, limit_of(key)); return CPS_OK; }
    pset *s = set_get(safe);
    if (!s) return CPS_ENOMEM;
    if (s->nops >= P.max_queue) return CPS_EBUSY;
    pop *o = calloc(1, sizeof *o);
    if (!o) return CPS_ENOMEM;
    o->def = def;
    o->call = call;
    o->ids = def->takes_ids ? json_incref(ids) : NULL;
    memcpy(o->key, key, sizeof o->key);
    if (s->tail) s->tail->next = o; else s->head = o;
    s->tail = o;
    s->nops++;
    if (!s->running && !s->in_kick) kick(s);
    return CPS_ASYNC;
}

/* ---- load and unload ---------------------------------------------------- */

static void collect_set(const char *key, void *val, void *ud)
{
    (void)key;
    pset ***at = ud;
    *(*at)++ = val;
}

/* Waiting operations are answered ECANCELED now.  A key whose head operation
** waits for the backend or for sizes stays allocated, detached, until that
** callback (which the backend and router always make, with ECANCELED at
** unload) frees it. */
static void pin_fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    P.closing = true;
    if (!P.sets) return;
    size_t n = strmap_count(P.sets);
    pset **all = malloc((n ? n : 1) * sizeof *all), **at = all;
    if (all) strmap_each(P.sets, collect_set, &at);
    for (size_t i = 0; all && i < n; i++) {
        pset *s = all[i];
        pop *rest = s->running ? s->head->next : s->head;
        if (s->running) { s->head->next = NULL; s->tail = s->head; s->nops = 1; }
        else { s->head = s->tail = NULL; s->nops = 0; }
        while (rest) {
            pop *next = rest->next;
            API->reply(rest->call, CPS_ECANCELED, NULL);
            pop_free(rest);
            rest = next;
        }
        if (s->running) P.orphans++;
        else pset_free(s);
    }
    free(all);
    strmap_free(P.sets, NULL);
    P.sets = NULL;
    P.lru_head = P.lru_tail = NULL;
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    if (P.sets || P.orphans) return CPS_EBUSY;   /* an earlier instance still drains */
    if (sodium_init() < 0) return CPS_EINTERNAL;
    memset(&P, 0, sizeof P);
    P.api = a;
    P.self = self;
    json_t *cfg = a->config(self);
    P.max_cached = conf_positive(cfg, "max_cached_keys", DEFAULT_CACHED);
    P.max_queue = conf_positive(cfg, "max_queue_per_key", DEFAULT_QUEUE);
    P.c_writes = a->counter(self, "pin_log_writes_total");
    P.c_over = a->counter(self, "pin_over_limit_total");

    /* The storage half, where this process runs a storage node. */
    P.sets = strmap_new();
    if (!P.sets) return CPS_ENOMEM;
    bool storage = true;
    for (size_t i = 0; i < NCMDS && storage; i++) {
        if (i && !strcmp(CMDS[i].node_cmd, CMDS[i - 1].node_cmd)) continue;   /* UPDATE_LIMITS */
        int rc = a->register_role_command(self, "storage", CMDS[i].node_cmd, node_cmd, (void *)&CMDS[i]);
        if (rc == CPS_ENOENT) storage = false;
        else if (rc) { strmap_free(P.sets, NULL); P.sets = NULL; return rc; }
    }
    if (!storage) { strmap_free(P.sets, NULL); P.sets = NULL; }

    /* The RPC half.  A refusal unloads us without fini: free the cache. */
    int rc = 0;
    for (size_t i = 0; i < NCMDS && !rc; i++)
        rc = a->register_rpc(self, CMDS[i].rpc, CPS_RPC_AUTH, rpc_forward, (void *)&CMDS[i]);
    if (!rc) rc = a->register_rpc(self, "TRIM_PINS", CPS_RPC_AUTH, rpc_trim_pins, NULL);
    if (!rc) rc = a->register_rpc(self, "IS_CHANNEL_PINNED", CPS_RPC_ANON, rpc_is_pinned, NULL);
    if (!rc) rc = a->register_rpc(self, "IS_PREMIUM", CPS_RPC_ANON, rpc_is_premium, NULL);
    if (rc) { strmap_free(P.sets, NULL); P.sets = NULL; return rc; }
    a->log(self, CPS_LOG_INFO, "pinning and quota%s", storage ? " (with the storage half)" : "");
    return CPS_OK;
}

CPS_PLUGIN_DEFINE("rpc-pin", "1.0.0", plugin_init, pin_fini);
