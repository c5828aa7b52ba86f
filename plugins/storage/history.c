/*
** history.c - the history keeper's answers (spec docs/protocol/history.md §5-§8):
** GET_HISTORY, GET_HISTORY_RANGE and GET_FULL_HISTORY.  Checks and the
** choice of the start point run as an op of the channel's queue; the lines
** are then streamed to the requester's front in batches, one batch in
** flight, the next read only once the front has room (flow control), so a
** 100 MB log never sits in memory and never blocks writers.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "storage.h"
#include "ids.h"
#include "text.h"

/* Bytes of log per backend read.  Under glibc's mmap threshold (128 KiB):
** a 256 KiB chunk was a fresh mmap per read in the pool thread, and the
** kernel zeroing its pages (clear_page_erms) was 18% of the server's CPU
** while 100 readers streamed history.  Smaller also bounds a reader's
** memory lower; the number of reads per log is no concern at this size. */
#define READ_CHUNK (64u * 1024)

enum { R_HISTORY, R_FULL, R_RANGE };

typedef struct reader {
    int kind;
    char ch[40], user[40], front[32];
    char *txid;            /* JSON text of the txid, or NULL */
    json_t *prio;          /* priority element, or NULL */
    uint64_t pos, end;     /* stream [pos, end) */
    bool skip_legacy;      /* legacy metadata line already sent as metadata */
    json_t *texts;         /* the batch being built */
    size_t bytes;
    json_t *tail;          /* texts to send once the stream is done */
    cps_call *call;        /* the HISTORY query, answered at the end */
    double started;        /* when the stream began (cpsd_history_stream_seconds) */
} reader;

/* ---- frames ---- */

/* [0,HK,"MSG",user,"<parts, concatenated and escaped>"(,prio)] */
#define MAX_RANGE_COUNT 100000

/* A client's number limited to [lo, hi] (0 when it is no number), as a double
** that converts safely: converting a double outside the range of the target
** integer type is undefined behaviour (C11 6.3.1.4), and JSON allows 1e300.
** Written so that a NaN gives lo. */
static double clamped(json_t *v, double lo, double hi)
{
    double d = json_is_number(v) ? json_number_value(v) : 0;
    return !(d >= lo) ? lo : d > hi ? hi : d;
}

static void add_parts(json_t *list, const char *user, const char *const *parts, const size_t *lens,
                      int n, json_t *prio)
{
    tbuf b = { 0 };
    tbuf_adds(&b, "[0,\"" CPS_HK_ID "\",\"MSG\",");
    tbuf_json_str(&b, user, strlen(user));
    tbuf_add(&b, ",\"", 2);
    for (int i = 0; i < n; i++) tbuf_json_esc(&b, parts[i], lens[i]);
    tbuf_add(&b, "\"", 1);
    if (json_is_integer(prio)) {
        char num[32];
        snprintf(num, sizeof num, ",%lld", (long long)json_integer_value(prio));
        tbuf_adds(&b, num);
    }
    tbuf_add(&b, "]", 1);
    if (!b.oom) json_array_append_new(list, json_stringn_nocheck(b.s, b.len));
    tbuf_free(&b);
}

static void add_text(json_t *list, const char *user, const char *content, size_t len, json_t *prio)
{
    add_parts(list, user, &content, &len, 1, prio);
}

static void add_json(json_t *list, const char *user, json_t *v, json_t *prio)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) add_text(list, user, s, strlen(s), prio);
    free(s);
}

/* One user gets an HK message through its front. */
void hk_notify_one(const char *user, const char *front, const char *content)
{
    if (!user || !front) return;
    json_t *texts = json_array();
    add_text(texts, user, content, strlen(content), NULL);
    API->send(ST.self, front, "SEND_TEXTS", json_pack("{s s s o}", "user", user, "texts", texts));
}

/* An access to an expired channel (docs/protocol/history.md §9.1): members are told,
** and if the expiry is more than a day overdue (the scheduled archival
** evidently did not run) the channel is archived with reason EXPIRED. */
static void expired_archived(void *ud, int status) { (void)ud; (void)status; }

bool hk_expired(channel *ch)
{
    json_t *expire = json_object_get(ch->meta, "expire");
    double now = (double)API->now_ms();
    if (!json_is_number(expire) || json_number_value(expire) > now) return false;
    hk_notify_members(ch, NULL);
    if (now - json_number_value(expire) > 24.0 * 3600 * 1000) {
        const cps_storage_backend *b = backend();
        if (b) b->channel_archive(b->state, ch->id, "EXPIRED", expired_archived, NULL);
        API->log(ST.self, CPS_LOG_INFO, "channel %s expired more than a day ago: archived", ch->id);
        ch_forget_state(ch);      /* reopened (as archived) by the next op */
    }
    return true;
}

/* Every member gets a notice as an HK message (EEXPIRED, EDELETED, ...). */
void hk_notify_members(channel *ch, const char *content)
{
    char buf[128];
    if (!content) {
        snprintf(buf, sizeof buf, "{\"error\":\"%s\",\"channel\":\"%s\"}", API->errname(CPS_ERR_EEXPIRED), ch->id);
        content = buf;
    }
    size_t i;
    json_t *m;
    json_array_foreach(ch->members, i, m)
        hk_notify_one(json_string_value(json_array_get(m, 0)), json_string_value(json_array_get(m, 1)), content);
}

/* ---- streaming ---- */

/* cpsd_history_stream_seconds: a GET_HISTORY stream from its start (checks
** done) to the end marker handed to the front (docs/operator-guide.md §7.1). */
static cps_histogram *stream_hist;

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void reader_free(reader *r)
{
    channel *ch = ch_get(r->ch, false);
    if (ch) { ch->readers--; ch_release(ch); }
    free(r->txid);
    json_decref(r->prio);
    json_decref(r->texts);
    json_decref(r->tail);
    free(r);
}

static void reader_next(reader *r);

static void batch_sent(void *ud, int error, json_t *data)
{
    (void)data;
    reader *r = ud;
    if (error) {   /* the requester is gone: stop */
        if (r->call) API->reply(r->call, CPS_OK, json_object());
        reader_free(r);
        return;
    }
    reader_next(r);
}

static void send_batch(reader *r)
{
    json_t *texts = r->texts;
    r->texts = json_array();
    r->bytes = 0;
    API->query(ST.self, r->front, "SEND_TEXTS",
               json_pack("{s s s o}", "user", r->user, "texts", texts), 0, batch_sent, r);
}

static void format_line(reader *r, const char *line, size_t len, uint64_t offset)
{
    hk_line l;
    hk_scan_line(line, len, &l);
    if (l.kind == HK_LINE_BAD) return;
    const char *parts[6];
    size_t lens[6];
    int n = 0;
    json_t *prio = NULL;
#define PART(p, l) (parts[n] = (p), lens[n] = (l), n++)
    if (r->kind == R_FULL) {
        PART("[\"FULL_HISTORY\",", 16); PART(line, len); PART("]", 1);
    } else if (r->kind == R_RANGE) {
        if (l.kind != HK_LINE_MSG) return;
        PART("[\"HISTORY_RANGE\",", 17); PART(r->txid ? r->txid : "null", strlen(r->txid ? r->txid : "null"));
        PART(",", 1); PART(line, len);
        PART("]", 1);
    } else {
        prio = r->prio;
        if (l.kind == HK_LINE_META && offset == 0 && r->skip_legacy) return;
        if (l.kind != HK_LINE_META && r->txid && len > 3 && memcmp(line, "[0,", 3) == 0) {
            /* element 0 becomes the txid: no parse, no re-serialisation */
            PART("[", 1); PART(r->txid, strlen(r->txid)); PART(line + 2, len - 2);
        } else {
            PART(line, len);
        }
    }
#undef PART
    add_parts(r->texts, r->user, parts, lens, n, prio);
    r->bytes += len;
}

static void chunk_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    reader *r = ud;
    if (status != CPS_OK) {
        r->pos = r->end;   /* a log that vanished mid-stream: finish with what we have */
    } else {
        uint64_t at = next - len;
        const char *p = data, *end = data + len;
        while (p < end) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) break;
            uint64_t off = at + (uint64_t)(p - data);
            if (off >= r->end) break;
            format_line(r, p, (size_t)(nl - p), off);
            p = nl + 1;
        }
        r->pos = next < r->end ? next : r->end;
        if (eof || len == 0) r->pos = r->end;
    }
    send_batch(r);
}

static void reader_next(reader *r)
{
    if (r->pos >= r->end) {
        if (r->tail) {
            json_array_extend(r->texts, r->tail);
            json_decref(r->tail);
            r->tail = NULL;
            send_batch(r);
            return;
        }
        if (r->kind == R_HISTORY && stream_hist) API->histogram_observe(stream_hist, mono_seconds() - r->started);
        if (r->call) API->reply(r->call, CPS_OK, json_object());
        reader_free(r);
        return;
    }
    const cps_storage_backend *b = backend();
    uint64_t want = r->end - r->pos;
    int rc = b ? b->channel_read(b->state, r->ch, r->pos, want < READ_CHUNK ? (size_t)want : READ_CHUNK,
                                 chunk_read, r) : CPS_EIO;
    if (rc) { r->pos = r->end; send_batch(r); }
}

/* [seq,"ACK"] goes first in the stream, so it precedes every line. */
static void add_ack(reader *r, json_t *seq)
{
    char *seqtext = json_dumps(seq ? seq : json_null(), JSON_ENCODE_ANY);
    tbuf ack = { 0 };
    tbuf_adds(&ack, "[");
    tbuf_adds(&ack, seqtext ? seqtext : "null");
    tbuf_adds(&ack, ",\"ACK\"]");
    free(seqtext);
    if (!ack.oom) json_array_append_new(r->texts, json_string_nocheck(ack.s));
    tbuf_free(&ack);
}

static reader *reader_new(channel *ch, int kind, json_t *args)
{
    reader *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->kind = kind;
    snprintf(r->ch, sizeof r->ch, "%s", ch->id);
    snprintf(r->user, sizeof r->user, "%s", json_string_value(json_object_get(args, "user")) ?: "");
    snprintf(r->front, sizeof r->front, "%s", json_string_value(json_object_get(args, "front")) ?: "");
    r->texts = json_array();
    ch->readers++;
    if (!stream_hist && CPS_API_HAS(API, histogram))
        stream_hist = API->histogram(ST.self, "history_stream_seconds",
                                     "Time from the start of a GET_HISTORY stream to its end marker.");
    r->started = mono_seconds();
    return r;
}

/* ---- GET_HISTORY ---- */

static json_t *end_marker(const char *ch, json_t *txid)
{
    json_t *m = json_pack("{s i s s}", "state", 1, "channel", ch);
    if (txid) json_object_set(m, "txid", txid);
    return m;
}

static json_t *error_obj(int err, const char *ch, json_t *txid, const char *message)
{
    json_t *m = json_pack("{s s}", "error", API->errname(err));
    if (message) json_object_set_new(m, "message", json_string(message));
    json_object_set_new(m, "channel", json_string(ch));
    if (txid) json_object_set(m, "txid", txid);
    return m;
}

/* Reply with a complete answer: ACK then these HK messages. */
static void answer(cps_call *call, const char *user, json_t *objs, json_t *prio)
{
    json_t *msgs = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(objs, i, v) {
        char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (s) json_array_append_new(msgs, json_string(s));
        free(s);
    }
    json_decref(objs);
    (void)user; (void)prio;
    API->reply(call, CPS_OK, json_pack("{s b s o}", "ack", 1, "messages", msgs));
}

typedef struct creating { char id[40]; op *o; json_t *meta; reader *r; } creating;

static void created(void *ud, int status, uint64_t size)
{
    (void)size;
    creating *c = ud;
    channel *ch = ch_get(c->id, false);
    if (status == CPS_OK && ch) {
        json_decref(ch->meta);
        ch->meta = json_incref(c->meta);
    }
    /* the new metadata, then the end marker, after the ACK already queued */
    add_json(c->r->tail, c->r->user, c->meta, c->r->prio);
    json_t *cfg = json_array_get(json_object_get(c->o->args, "request"), 2);
    json_t *em = end_marker(c->id, json_object_get(cfg, "txid"));
    add_json(c->r->tail, c->r->user, em, c->r->prio);
    json_decref(em);
    reader_next(c->r);
    json_decref(c->meta);
    if (ch) ch_done(ch, c->o);
    free(c);
}

static void history_from(channel *ch, op *o, uint64_t start);

/* An error object instead of the history (§5.2), after the ACK. */
static void fail_with(channel *ch, op *o, int err)
{
    json_t *cfg = json_array_get(json_object_get(o->args, "request"), 2);
    json_t *txid = json_is_object(cfg) ? json_object_get(cfg, "txid") : NULL;
    answer(o->call, NULL, json_pack("[o]", error_obj(err, ch->id, txid, NULL)), NULL);
    ch_done(ch, o);
}

/* The log is missing: EDELETED with the archive reason if a placeholder
** says it was archived (unless the client forces re-creation), else with a
** lastKnownHash EDELETED, else an ordinary (empty or new) history. */
typedef struct del_wait { char id[40]; op *o; bool had_hash; } del_wait;

static void placeholder_done(void *ud, int status, const char *data, size_t len)
{
    del_wait *w = ud;
    channel *ch = ch_get(w->id, false);   /* held: the op is busy */
    if (ch) {
        json_t *cfg = json_array_get(json_object_get(w->o->args, "request"), 2);
        json_t *meta = json_is_object(cfg) ? json_object_get(cfg, "metadata") : NULL;
        bool force = json_is_true(json_object_get(meta, "forcePlaceholder"));
        if (status == CPS_OK && !force) {
            json_t *txid = json_object_get(cfg, "txid");
            char *reason = strndup(data, len);
            answer(w->o->call, NULL, json_pack("[o]", error_obj(CPS_ERR_EDELETED, ch->id, txid, reason)), NULL);
            free(reason);
            ch_done(ch, w->o);
        } else if (w->had_hash) {
            fail_with(ch, w->o, CPS_ERR_EDELETED);
        } else {
            history_from(ch, w->o, 0);
        }
    }
    free(w);
}

static void deleted(channel *ch, op *o, bool had_hash)
{
    const cps_storage_backend *b = backend();
    del_wait *w = calloc(1, sizeof *w);
    if (!w || !b) { free(w); if (had_hash) fail_with(ch, o, CPS_ERR_EDELETED); else history_from(ch, o, 0); return; }
    snprintf(w->id, sizeof w->id, "%s", ch->id);
    w->o = o;
    w->had_hash = had_hash;
    int rc = b->placeholder_read(b->state, ch->id, placeholder_done, w);
    if (rc) placeholder_done(w, rc, NULL, 0);
}

/* Find the first line whose hash is `hash` by scanning the whole log (logs
** without checkpoints keep only recent hashes in their index; trims). */
typedef struct hash_scan {
    char id[40];
    char hash[HK_HASH_LEN + 1];
    bool found;
    uint64_t off;
    void (*cb)(channel *ch, void *ud, bool found, uint64_t off);
    void *ud;
} hash_scan;

static void hash_scan_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    hash_scan *h = ud;
    if (status == CPS_OK) {
        uint64_t at = next - len;
        const char *p = data, *end = data + len;
        while (p < end && !h->found) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) break;
            hk_line l;
            hk_scan_line(p, (size_t)(nl - p), &l);
            if (l.kind == HK_LINE_MSG && strcmp(l.hash, h->hash) == 0) { h->found = true; h->off = at + (uint64_t)(p - data); }
            p = nl + 1;
        }
    }
    const cps_storage_backend *b = backend();
    if (status == CPS_OK && !h->found && !eof && len && b &&
        b->channel_read(b->state, h->id, next, READ_CHUNK, hash_scan_read, h) == CPS_OK)
        return;
    channel *ch = ch_get(h->id, false);   /* held by the caller's busy op */
    if (ch) h->cb(ch, h->ud, h->found, h->off);
    free(h);
}

void ch_find_hash(channel *ch, const char *hash, void (*cb)(channel *, void *, bool, uint64_t), void *ud)
{
    const cps_storage_backend *b = backend();
    hash_scan *h = calloc(1, sizeof *h);
    if (!h || !b) { free(h); cb(ch, ud, false, 0); return; }
    snprintf(h->id, sizeof h->id, "%s", ch->id);
    snprintf(h->hash, sizeof h->hash, "%s", hash);
    h->cb = cb;
    h->ud = ud;
    if (b->channel_read(b->state, ch->id, 0, READ_CHUNK, hash_scan_read, h)) hash_scan_read(h, CPS_EIO, NULL, 0, 0, true);
}

static void resume_found(channel *ch, void *ud, bool found, uint64_t off)
{
    op *o = ud;
    /* A hash before the start point is as unknown as a missing one (the
    ** scan also runs when the bounded index dropped lines after it,
    ** docs/protocol/history.md §4). */
    if (found && off >= hk_index_start(&ch->idx)) history_from(ch, o, off);
    else fail_with(ch, o, CPS_EUNKNOWN);
}

static void op_get_history(channel *ch, op *o)
{
    json_t *req = json_object_get(o->args, "request");
    json_t *cfg = json_array_get(req, 2);
    if (!json_is_object(cfg)) cfg = NULL;
    json_t *txid = json_object_get(cfg, "txid");
    json_t *prio = json_object_get(cfg, "priority");
    json_t *lkh = json_object_get(cfg, "lastKnownHash");
    const char *user = json_string_value(json_object_get(o->args, "user"));
    bool admin = ids_is_admin(ch->id);

    if (ch->open_status != CPS_OK) {
        answer(o->call, user, json_pack("[o]", error_obj(CPS_ERR_ERROR, ch->id, txid, NULL)), prio);
        ch_done(ch, o);
        return;
    }
    if (hk_expired(ch)) {
        answer(o->call, user, json_pack("[o]", error_obj(CPS_ERR_EEXPIRED, ch->id, txid, NULL)), prio);
        ch_done(ch, o);
        return;
    }
    if (ch->meta && json_is_true(json_object_get(ch->meta, "restricted")) &&
        !meta_allows(ch->meta, json_object_get(o->args, "keys"))) {
        API->reply(o->call, CPS_OK, json_pack("{s s s s}", "ack", API->errname(CPS_ERR_ERESTRICTED), "detail", CPS_HK_ID));
        ch_done(ch, o);
        return;
    }
    /* Where to start (§5.3). */
    if (json_is_integer(lkh) && json_integer_value(lkh) == -1) {
        history_from(ch, o, 0);
    } else if (json_is_string(lkh) && json_string_length(lkh) > 0) {
        if (!ch->log_exists) { deleted(ch, o, true); return; }
        uint64_t off;
        int found = hk_index_find(&ch->idx, json_string_value(lkh), &off);
        if (found > 0) history_from(ch, o, off);
        else if (found == 0 && !hk_index_has_checkpoints(&ch->idx)) ch_find_hash(ch, json_string_value(lkh), resume_found, o);
        else fail_with(ch, o, CPS_EUNKNOWN);
    } else if (!ch->log_exists && !ch->meta && !admin) {
        deleted(ch, o, false);
    } else {
        history_from(ch, o, hk_index_start(&ch->idx));
    }
}

/* Stream the history of `ch` from `start` (the checks are done). */
static void history_from(channel *ch, op *o, uint64_t start)
{
    json_t *req = json_object_get(o->args, "request");
    json_t *cfg = json_array_get(req, 2);
    if (!json_is_object(cfg)) cfg = NULL;
    json_t *txid = json_object_get(cfg, "txid");
    json_t *prio = json_object_get(cfg, "priority");
    const char *user = json_string_value(json_object_get(o->args, "user"));
    bool admin = ids_is_admin(ch->id);
    reader *r = reader_new(ch, R_HISTORY, o->args);
    if (!r) { API->reply(o->call, CPS_ENOMEM, NULL); ch_done(ch, o); return; }
    if (txid) r->txid = json_dumps(txid, JSON_COMPACT | JSON_ENCODE_ANY);
    r->prio = json_incref(prio);
    r->pos = start;
    r->end = ch->idx.size;
    r->tail = json_array();
    /* The query is answered now: the stream, ACK included, goes straight to
    ** the front and may outlast any query timeout. */
    API->reply(o->call, CPS_OK, json_object());
    o->call = NULL;
    /* ACK first, through the same path as the lines (order). */
    add_ack(r, json_object_get(o->args, "seq"));
    if (ch->meta && !admin) {
        add_json(r->texts, r->user, ch->meta, prio);
        r->skip_legacy = true;
    }
    /* Creation on first access by a member (§5.4). */
    json_t *want = json_object_get(cfg, "metadata");
    if (!admin && ch->idx.size == 0 && !ch->meta && json_is_object(want) && ch_is_member(ch, user)) {
        creating *c = calloc(1, sizeof *c);
        json_t *meta = json_deep_copy(want);
        json_t *exp = json_object_get(meta, "expire");
        /* seconds from now (§5.4), bounded so that the sum converts: 1e13 s is
        ** beyond any date a client means, 9e15 ms is exact in a double */
        if (json_is_number(exp))
            json_object_set_new(meta, "expire", json_integer((json_int_t)(
                (double)API->now_ms() + clamped(exp, -1e13, 1e13) * 1000)));
        if (json_is_true(json_object_get(meta, "selfdestruct")) || json_is_string(json_object_get(meta, "selfdestruct")))
            json_object_set_new(meta, "selfdestruct", json_string(ST.instance));
        json_object_del(meta, "forcePlaceholder");
        json_object_set_new(meta, "channel", json_string(ch->id));
        json_object_set_new(meta, "created", json_integer((json_int_t)API->now_ms()));
        char *line = json_dumps(meta, JSON_COMPACT);
        const cps_storage_backend *b = backend();
        if (c && line && b) {
            snprintf(c->id, sizeof c->id, "%s", ch->id);
            c->o = o;
            c->meta = meta;
            c->r = r;
            tbuf lb = { 0 };
            tbuf_adds(&lb, line);
            tbuf_add(&lb, "\n", 1);
            int rc = lb.oom ? CPS_ENOMEM : b->meta_append(b->state, ch->id, lb.s, lb.len, created, c);
            tbuf_free(&lb);
            free(line);
            if (rc == CPS_OK) return;   /* created() ends the op */
            created(c, rc, 0);
            return;
        }
        free(line);
        free(c);
        json_decref(meta);
    }
    json_t *em = end_marker(ch->id, txid);
    add_json(r->tail, r->user, em, prio);
    json_decref(em);
    ch_done(ch, o);    /* the stream goes on without holding the queue */
    reader_next(r);
}

/* ---- GET_FULL_HISTORY ---- */

static void op_full_history(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK || (ch->meta && json_is_true(json_object_get(ch->meta, "restricted")) &&
                                      !meta_allows(ch->meta, json_object_get(o->args, "keys")))) {
        API->reply(o->call, CPS_OK, json_pack("{s s s s}", "ack",
                   API->errname(ch->open_status != CPS_OK ? CPS_EIO : CPS_ERR_ERESTRICTED), "detail", CPS_HK_ID));
        ch_done(ch, o);
        return;
    }
    reader *r = reader_new(ch, R_FULL, o->args);
    if (!r) { API->reply(o->call, CPS_ENOMEM, NULL); ch_done(ch, o); return; }
    r->pos = 0;
    r->end = ch->idx.size;
    add_ack(r, json_object_get(o->args, "seq"));
    r->tail = json_array();
    json_t *em = json_pack("[s s]", "FULL_HISTORY_END", ch->id);
    add_json(r->tail, r->user, em, NULL);
    json_decref(em);
    /* The query is answered now: the stream, ACK included, goes straight to
    ** the front and may outlast any query timeout. */
    API->reply(o->call, CPS_OK, json_object());
    o->call = NULL;
    ch_done(ch, o);
    reader_next(r);
}

/* ---- GET_HISTORY_RANGE: a first pass finds [start, end], a second streams ---- */

typedef struct ranger {
    reader *r;
    char from[HK_HASH_LEN + 1], to[HK_HASH_LEN + 1];
    bool has_from, has_to, to_none;
    long count, cp_count;
    uint64_t *ring;        /* offsets of the last `count` messages / cp_count checkpoints */
    size_t ringcap, ringn, ringhead;
    bool started, done;    /* `to` seen / `from` seen */
    uint64_t start, stop;
} ranger;

static void ring_push(ranger *g, uint64_t off)
{
    if (!g->ringcap) return;
    g->ring[(g->ringhead + g->ringn) % g->ringcap] = off;
    if (g->ringn < g->ringcap) g->ringn++;
    else g->ringhead = (g->ringhead + 1) % g->ringcap;
}

static void range_scan(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof);

static void range_go(ranger *g)
{
    reader *r = g->r;
    if (g->has_to) {
        if (!g->started) g->start = g->stop = 0;
    } else {
        /* count: the oldest of the last `count` messages; cpCount: the
        ** cpCount-th most recent checkpoint, else the first message */
        size_t k = g->count > 0 ? g->ringn : (size_t)g->cp_count;
        g->start = (k > 0 && g->ringn >= k) ? g->ring[(g->ringhead + g->ringn - k) % g->ringcap] : 0;
    }
    r->pos = g->start;
    r->end = g->stop;
    free(g->ring);
    free(g);
    reader_next(r);
}

static void range_scan(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    ranger *g = ud;
    if (status == CPS_OK) {
        uint64_t at = next - len;
        const char *p = data, *end = data + len;
        while (p < end && !g->done) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            if (!nl) break;
            uint64_t off = at + (uint64_t)(p - data), lend = at + (uint64_t)(nl - data) + 1;
            hk_line l;
            hk_scan_line(p, (size_t)(nl - p), &l);
            p = nl + 1;
            if (l.kind != HK_LINE_MSG) continue;
            bool is_from = g->has_from && strcmp(l.hash, g->from) == 0;
            if (g->has_to) {
                if (!g->started && (g->to_none || strcmp(l.hash, g->to) == 0)) { g->started = true; g->start = off; }
                if (g->started) { g->stop = lend; if (is_from) g->done = true; }
                continue;
            }
            /* cpCount counts checkpoints strictly before `from` */
            if (g->count > 0 || (l.checkpoint && !is_from)) ring_push(g, off);
            g->stop = lend;
            if (is_from) g->done = true;
        }
    }
    if (status != CPS_OK || g->done || eof || len == 0) { range_go(g); return; }
    const cps_storage_backend *b = backend();
    if (b->channel_read(b->state, g->r->ch, next, READ_CHUNK, range_scan, g)) range_go(g);
}

static void op_history_range(channel *ch, op *o)
{
    json_t *cfg = json_array_get(json_object_get(o->args, "request"), 2);
    int err = CPS_OK;
    if (ch->meta && json_is_true(json_object_get(ch->meta, "restricted")) &&
        !meta_allows(ch->meta, json_object_get(o->args, "keys"))) err = CPS_ERR_ERESTRICTED;
    else if (!json_is_object(cfg)) err = CPS_ERR_INVALID_ARGS;
    else if (!json_is_number(json_object_get(cfg, "count")) && !json_is_number(json_object_get(cfg, "cpCount")) &&
             !json_object_get(cfg, "to")) err = CPS_ERR_UNSPECIFIED_COUNT;
    else if (!json_object_get(cfg, "txid")) err = CPS_ERR_NO_TXID;
    if (err) {
        API->reply(o->call, CPS_OK, json_pack("{s s s s}", "ack", API->errname(err), "detail", CPS_HK_ID));
        ch_done(ch, o);
        return;
    }
    reader *r = reader_new(ch, R_RANGE, o->args);
    ranger *g = calloc(1, sizeof *g);
    if (!r || !g) { free(g); if (r) reader_free(r); API->reply(o->call, CPS_ENOMEM, NULL); ch_done(ch, o); return; }
    json_t *txid = json_object_get(cfg, "txid");
    r->txid = json_dumps(txid, JSON_COMPACT | JSON_ENCODE_ANY);
    add_ack(r, json_object_get(o->args, "seq"));
    r->tail = json_array();
    json_t *em = json_pack("[s O s]", "HISTORY_RANGE_END", txid, ch->id);
    add_json(r->tail, r->user, em, NULL);
    json_decref(em);
    /* The query is answered now: the stream, ACK included, goes straight to
    ** the front and may outlast any query timeout. */
    API->reply(o->call, CPS_OK, json_object());
    o->call = NULL;
    g->r = r;
    const char *from = json_string_value(json_object_get(cfg, "from"));
    const char *to = json_string_value(json_object_get(cfg, "to"));
    if (from) { g->has_from = true; snprintf(g->from, sizeof g->from, "%.64s", from); }
    if (to) { g->has_to = true; g->to_none = strcmp(to, "NONE") == 0; snprintf(g->to, sizeof g->to, "%.64s", to); }
    /* bounded memory; a count below 1 asks for nothing (docs/protocol/history.md §6) */
    g->count = (long)clamped(json_object_get(cfg, "count"), 0, MAX_RANGE_COUNT);
    g->cp_count = (long)clamped(json_object_get(cfg, "cpCount"), 0, MAX_RANGE_COUNT);
    g->ringcap = (size_t)(g->count > 0 ? g->count : g->cp_count > 0 ? g->cp_count + 1 : 0);
    if (g->ringcap) g->ring = calloc(g->ringcap, sizeof *g->ring);
    ch_done(ch, o);
    const cps_storage_backend *b = backend();
    if (!b || b->channel_read(b->state, r->ch, 0, READ_CHUNK, range_scan, g)) range_go(g);
}

/* ---- the command ---- */

typedef struct auth_wait { cps_call *call; json_t *args; op_fn run; } auth_wait;

static void got_keys(void *ud, int error, json_t *data)
{
    auth_wait *w = ud;
    json_t *keys = error ? NULL : json_object_get(data, "keys");
    json_object_set_new(w->args, "keys", json_is_array(keys) ? json_incref(keys) : json_array());
    const char *id = json_string_value(json_array_get(json_object_get(w->args, "request"), 1));
    channel *ch = ch_get(id, true);
    int rc = ch ? ch_enqueue(ch, w->run, w->call, w->args) : CPS_ENOMEM;
    if (rc) API->reply(w->call, rc, NULL);
    free(w);
}

/* HISTORY {user, front, seq, request: [CMD, channel, ...]} */
int cmd_history(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_t *req = json_object_get(args, "request");
    const char *cmd = json_string_value(json_array_get(req, 0));
    const char *id = json_string_value(json_array_get(req, 1));
    const char *user = json_string_value(json_object_get(args, "user"));
    if (!cmd || !ids_valid_channel(id) || !user) return CPS_EINVAL;
    json_t *cfg = json_array_get(req, 2);
    op_fn run = !strcmp(cmd, "GET_HISTORY") ? op_get_history :
                !strcmp(cmd, "GET_FULL_HISTORY") ? op_full_history :
                !strcmp(cmd, "GET_HISTORY_RANGE") ? op_history_range : NULL;
    if (!run) return CPS_EINVAL;
    if (run == op_get_history) {
        const char *vk = json_string_value(json_object_get(json_object_get(cfg, "metadata"), "validateKey"));
        unsigned char key[64];
        if (json_is_object(cfg) && json_object_get(json_object_get(cfg, "metadata"), "validateKey") &&
            (!vk || b64_decode_lenient(vk, strlen(vk), key, sizeof key) != 32)) {
            API->reply(call, CPS_OK, json_pack("{s s}", "ack", API->errname(CPS_ERR_HK_INVALID_KEY)));
            return CPS_OK;
        }
    }
    if (ids_is_ephemeral(id)) {   /* nothing stored, ever */
        json_t *txid = json_object_get(cfg, "txid");
        json_t *e = run == op_get_history ? error_obj(CPS_EINVAL, id, txid, NULL) :
                    run == op_full_history ? json_pack("[s s s]", "ERROR", id, API->errname(CPS_EINVAL)) :
                    json_pack("[s O s]", "HISTORY_RANGE_END", txid ? txid : json_null(), id);
        answer(call, user, json_pack("[o]", e), NULL);
        return CPS_OK;
    }
    /* The requester's authenticated keys, for restricted channels, come from
    ** the core that owns the user (its RPC sessions). */
    char core[64];
    auth_wait *w = calloc(1, sizeof *w);
    if (!w) return CPS_ENOMEM;
    w->call = call;
    w->args = json_deep_copy(args);
    w->run = run;
    if (!API->owner(ST.self, "core", user, core, sizeof core)) { json_decref(w->args); free(w); return CPS_EINVAL; }
    API->query(ST.self, core, "GET_AUTH_KEYS", json_pack("{s s}", "user", user), 0, got_keys, w);
    return CPS_ASYNC;
}
