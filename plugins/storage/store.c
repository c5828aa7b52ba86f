/*
** store.c - storing a broadcast (spec docs/protocol/history.md §3): duplicate checkpoints,
** expiry, signature check on the thread pool, append, then the member list
** to relay to.  The checks run as one op of the channel's queue, so the log
** order is the arrival order; once its append is handed to the backend the
** queue moves on (appends in flight, group commit), and the answers wait in
** ch->fly so each is given after its own commit and in arrival order.
*/
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "storage.h"
#include "ids.h"
#include "text.h"
#include "fanout.h"

typedef struct verify {
    channel *ch;
    op *o;
    unsigned char key[32];
    unsigned char *sm;     /* signature || message */
    size_t smlen;
    bool ok;
    char id[40];
} verify;

static void append_line(channel *ch, op *o);

/* A message in flight (its append handed to the backend), or an answer that
** waits behind those: ch->fly keeps them in arrival order. */
typedef struct appending {
    struct appending *next;
    double started;       /* mono_seconds() when the backend was asked */
    char id[40];
    op *o;
    char *line;           /* without '\n' */
    size_t len;
    json_int_t time;      /* the line's time stamp */
    bool finished;        /* the backend answered (or there was nothing to write) */
    int status;
    uint64_t size;        /* the log's size after this append */
} appending;

static void fly_push(channel *ch, appending *a)
{
    if (ch->fly_tail) ch->fly_tail->next = a; else ch->fly_head = a;
    ch->fly_tail = a;
    ch->nfly++;
}

/* Fails the running op.  With messages in flight the error waits behind
** them, so a client's answers keep the order of its messages. */
static void fail(channel *ch, op *o, int err)
{
    appending *a = ch->fly_head ? calloc(1, sizeof *a) : NULL;
    if (!a) {
        API->reply(o->call, err, NULL);
        ch_done(ch, o);
        return;
    }
    a->o = o;
    a->finished = true;
    a->status = err;
    fly_push(ch, a);
    ch_handoff(ch);
}

/* Whether o may run while earlier messages are in flight: a plain message
** only.  Every other op (joins, history, metadata, trims) and a checkpoint
** (compared with the last stored one) waits until they are committed. */
bool op_pipelines(const op *o)
{
    if (o->run != op_message) return false;
    json_t *c = json_object_get(o->args, "content");
    char cp[64];
    hk_checkpoint_prefix(json_string_value(c), json_string_length(c), cp, sizeof cp);
    return cp[0] == 0;
}

static void verify_work(void *ud)
{
    verify *v = ud;
    v->ok = v->smlen >= crypto_sign_BYTES &&
            crypto_sign_verify_detached(v->sm, v->sm + crypto_sign_BYTES,
                                        v->smlen - crypto_sign_BYTES, v->key) == 0;
}

static void verify_done(void *ud, int status)
{
    verify *v = ud;
    channel *ch = ch_get(v->id, false);   /* kept alive: its op is busy */
    if (status != CPS_OK || !ch) {
        if (ch) fail(ch, v->o, CPS_ECANCELED);
    } else if (!v->ok) {
        fail(ch, v->o, CPS_ERR_FAILED_VALIDATION);
    } else {
        append_line(ch, v->o);
    }
    free(v->sm);
    free(v);
}

/* cpsd_storage_append_seconds: the backend's round trip for one append,
** whatever the backend (docs/operator-guide.md §7.1). */
static cps_histogram *append_hist;

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fly_free(appending *a)
{
    free(a->line);
    free(a);
}

/* [0,user|null,"MSG",channel,content(,time)] as JSON.stringify writes it:
** the stored line (with the time) and the relayed frame are this text. */
static void message_text(tbuf *b, json_t *args, const char *id, const json_int_t *time)
{
    json_t *user = json_object_get(args, "user");
    json_t *content = json_object_get(args, "content");
    tbuf_adds(b, "[0,");
    if (json_is_string(user)) tbuf_json_str(b, json_string_value(user), json_string_length(user));
    else tbuf_adds(b, "null");
    tbuf_adds(b, ",\"MSG\",");
    tbuf_json_str(b, id, strlen(id));
    tbuf_add(b, ",", 1);
    tbuf_json_str(b, json_string_value(content), json_string_length(content));
    if (time) {
        tbuf_add(b, ",", 1);
        tbuf_int(b, *time);
    }
    tbuf_add(b, "]", 1);
}

/* A channel message a front sent here (`deliver`: docs/protocol/cluster.md
** §3.4) goes to every member but its sender, one DELIVER per front, as the
** frame's text (the fronts then neither parse it into values nor write it
** out again: perf of a front, ~10% of its samples). */
static void deliver(json_t *members, json_t *args, const char *text, size_t len)
{
    const char *sender = json_string_value(json_object_get(args, "user"));
    API->counter_add(ST.c_delivered, (int64_t)cps_fanout_text(API, ST.self, members, sender, text, len));
}

/* Answers the finished entries at the head of ch->fly, in order: the index
** grows by each committed line (at the offset the backend reports, so a
** failed append before it leaves no hole), then ACK and relay. */
static void fly_flush(channel *ch)
{
    while (ch->fly_head && ch->fly_head->finished) {
        appending *a = ch->fly_head;
        ch->fly_head = a->next;
        if (!ch->fly_head) ch->fly_tail = NULL;
        ch->nfly--;
        op *o = a->o;
        if (!a->line) {
            API->reply(o->call, a->status, NULL);           /* a failure queued by fail() */
        } else if (a->status != CPS_OK) {
            API->log(ST.self, CPS_LOG_ERROR, "channel %s: append failed: %s", a->id, API->errname(a->status));
            if (a->status == CPS_EUNAVAILABLE) {
                /* fenced (failover): another node serves it now; retryable */
                ch->stale = true;
                fo_fenced(a->id);
            }
            API->reply(o->call, a->status == CPS_EUNAVAILABLE ? a->status : CPS_EIO, NULL);
        } else {
            uint64_t line_bytes = a->len + 1;
            hk_index_add(&ch->idx, a->line, a->len, a->size >= line_bytes ? a->size - line_bytes : 0);
            ch->idx.size = a->size;
            ch->log_exists = true;
            API->counter_add(ST.c_stored, 1);
            if (json_is_true(json_object_get(o->args, "private"))) {
                /* WRITE_PRIVATE_MESSAGE: every member gets it, the caller the time */
                cps_fanout_text(API, ST.self, ch->members, NULL, a->line, a->len);
                API->reply(o->call, CPS_OK, json_pack("{s I}", "time", a->time));
            } else if (json_is_true(json_object_get(o->args, "deliver"))) {
                /* from a front: relay to the other members, then answer (the
                ** answer follows the DELIVER to the sender's front) */
                deliver(ch->members, o->args, a->line, a->len);
                API->reply(o->call, CPS_OK, NULL);
            } else {
                /* the relayed array, as a value, only for this older caller */
                json_t *user = json_object_get(o->args, "user");
                API->reply(o->call, CPS_OK,
                           json_pack("{s O s [i O s s O I]}", "members", ch->members, "msg", 0,
                                     user ? user : json_null(), "MSG", ch->id,
                                     json_object_get(o->args, "content"), a->time));
            }
        }
        json_decref(o->args);
        free(o);
        fly_free(a);
    }
}

static void append_done(void *ud, int status, uint64_t size)
{
    appending *a = ud;
    if (append_hist) API->histogram_observe(append_hist, mono_seconds() - a->started);
    a->finished = true;
    a->status = status;
    a->size = size;
    channel *ch = ch_get(a->id, false);   /* kept while ch->fly is not empty */
    if (!ch) {                            /* dropped at unload (fly_drop) */
        json_decref(a->o->args);
        free(a->o);
        fly_free(a);
        return;
    }
    fly_flush(ch);
    ch_kick(ch);     /* ch may be gone after this */
}

/* The stored line: the message with its time, then '\n'. */
static void append_line(channel *ch, op *o)
{
    json_int_t now = (json_int_t)API->now_ms();
    tbuf b = { 0 };
    message_text(&b, o->args, ch->id, &now);
    tbuf_add(&b, "\n", 1);
    appending *a = calloc(1, sizeof *a);
    if (b.oom || !a) { tbuf_free(&b); free(a); fail(ch, o, CPS_ENOMEM); return; }
    snprintf(a->id, sizeof a->id, "%s", ch->id);
    a->o = o;
    a->line = b.s;
    a->len = b.len - 1;
    a->time = now;
    const cps_storage_backend *be = backend();
    if (!append_hist && CPS_API_HAS(API, histogram))
        append_hist = API->histogram(ST.self, "storage_append_seconds",
                                     "Time the storage backend took to append one message to a channel log.");
    a->started = mono_seconds();
    /* In ch->fly before the call: a backend may answer before it returns. */
    fly_push(ch, a);
    int rc = be ? be->channel_append(be->state, ch->id, b.s, b.len, append_done, a) : CPS_EIO;
    if (rc) {
        /* never reached the backend: the entry is the last one, unfinished */
        appending **pp = &ch->fly_head, *prev = NULL;
        while (*pp != a) { prev = *pp; pp = &(*pp)->next; }
        *pp = NULL;
        ch->fly_tail = prev;
        ch->nfly--;
        fly_free(a);
        fail(ch, o, CPS_EIO);
        return;
    }
    ch_handoff(ch);   /* the next message may go while this one is in flight */
}

/* Frees the entries of a channel being dropped at unload; one whose append
** is still out is freed by its append_done, which then finds no channel. */
void fly_drop(channel *ch)
{
    while (ch->fly_head) {
        appending *a = ch->fly_head;
        ch->fly_head = a->next;
        if (a->finished) {
            json_decref(a->o->args);
            free(a->o);
            fly_free(a);
        } else {
            a->id[0] = 0;   /* its append_done finds no channel */
        }
    }
    ch->fly_tail = NULL;
    ch->nfly = 0;
}

void op_message(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { fail(ch, o, CPS_EIO); return; }
    /* only members broadcast (a restarted node forgot its members: they
    ** must rejoin first); mailbox writes have no sender */
    const char *sender = json_string_value(json_object_get(o->args, "user"));
    if (sender && !ch_is_member(ch, sender)) { fail(ch, o, CPS_ERR_ENOTMEMBER); return; }
    const char *content = json_string_value(json_object_get(o->args, "content"));
    size_t clen = json_string_length(json_object_get(o->args, "content"));
    char cp[64];
    size_t strip = hk_checkpoint_prefix(content, clen, cp, sizeof cp);
    /* A checkpoint identical to the last stored one: ACK, neither store nor relay. */
    if (cp[0] && strcmp(cp, ch->idx.last_cp_id) == 0) {
        API->reply(o->call, CPS_OK, json_pack("{s [] s b}", "members", "duplicate", 1));
        ch_done(ch, o);
        return;
    }
    if (hk_expired(ch)) {
        fail(ch, o, CPS_ERR_EEXPIRED);
        return;
    }
    const char *vkey = json_string_value(json_object_get(ch->meta, "validateKey"));
    if (!vkey) { append_line(ch, o); return; }
    verify *v = calloc(1, sizeof *v);
    if (!v) { fail(ch, o, CPS_ENOMEM); return; }
    v->o = o;
    snprintf(v->id, sizeof v->id, "%s", ch->id);
    if (b64_decode_lenient(vkey, strlen(vkey), v->key, sizeof v->key) != 32) {
        free(v);
        fail(ch, o, CPS_ERR_E_BADKEY);
        return;
    }
    v->sm = malloc(clen);
    v->smlen = v->sm ? b64_decode_lenient(content + strip, clen - strip, v->sm, clen) : 0;
    if (!v->sm || v->smlen == (size_t)-1) { free(v->sm); free(v); fail(ch, o, CPS_ERR_E_BAD_MESSAGE); return; }
    if (API->work(ST.self, verify_work, verify_done, v)) { free(v->sm); free(v); fail(ch, o, CPS_EBUSY); }
}

/* CHANNEL_MESSAGE {channel, user, content} -> {members, msg} */
int cmd_channel_message(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    if (!ids_valid_channel(id) || !json_is_string(json_object_get(args, "content"))) return CPS_EINVAL;
    bool ephemeral = ids_is_ephemeral(id);   /* relayed only, never stored */
    channel *ch = ch_get(id, !ephemeral);
    if (ephemeral && json_is_true(json_object_get(args, "deliver"))) {
        if (ch) {
            tbuf b = { 0 };
            message_text(&b, args, id, NULL);
            if (!b.oom) deliver(ch->members, args, b.s, b.len);
            tbuf_free(&b);
        }
        return CPS_OK;
    }
    if (ephemeral) {
        API->reply(call, CPS_OK, json_pack("{s o}", "members", ch ? json_incref(ch->members) : json_array()));
        return CPS_OK;
    }
    if (!ch) return CPS_ENOMEM;
    int rc = ch_enqueue(ch, op_message, call, json_incref(args));
    return rc ? rc : CPS_ASYNC;
}
