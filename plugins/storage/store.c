/*
** store.c - storing a broadcast (spec docs/protocol/history.md §3): duplicate checkpoints,
** expiry, signature check on the thread pool, append, then the member list
** to relay to.  All of it runs as one op of the channel's queue, so the log
** order is the arrival order, also while a check waits for the pool.
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

static void fail(channel *ch, op *o, int err)
{
    API->reply(o->call, err, NULL);
    ch_done(ch, o);
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

typedef struct appending {
    double started;       /* mono_seconds() when the backend was asked */
    char id[40];
    op *o;
    char *line;           /* without '\n' */
    size_t len;
    uint64_t offset;
    json_t *msg;
} appending;

static void append_done(void *ud, int status, uint64_t size)
{
    appending *a = ud;
    if (append_hist) API->histogram_observe(append_hist, mono_seconds() - a->started);
    channel *ch = ch_get(a->id, false);
    if (ch) {
        if (status != CPS_OK) {
            API->log(ST.self, CPS_LOG_ERROR, "channel %s: append failed: %s", a->id, API->errname(status));
            fail(ch, a->o, CPS_EIO);
        } else {
            hk_index_add(&ch->idx, a->line, a->len, a->offset);
            ch->idx.size = size;
            ch->log_exists = true;
            API->counter_add(ST.c_stored, 1);
            if (json_is_true(json_object_get(a->o->args, "private"))) {
                /* WRITE_PRIVATE_MESSAGE: every member gets it, the caller the time */
                cps_fanout(API, ST.self, ch->members, NULL, a->msg);
                API->reply(a->o->call, CPS_OK, json_pack("{s O}", "time", json_array_get(a->msg, 5)));
            } else {
                API->reply(a->o->call, CPS_OK, json_pack("{s O s O}", "members", ch->members, "msg", a->msg));
            }
            ch_done(ch, a->o);
        }
    }
    json_decref(a->msg);
    free(a->line);
    free(a);
}

/* [0,user|null,"MSG",channel,content,time] as JSON.stringify writes it. */
static void append_line(channel *ch, op *o)
{
    json_t *user = json_object_get(o->args, "user");
    json_t *content = json_object_get(o->args, "content");
    json_int_t now = (json_int_t)API->now_ms();
    tbuf b = { 0 };
    char num[32];
    tbuf_adds(&b, "[0,");
    if (json_is_string(user)) tbuf_json_str(&b, json_string_value(user), json_string_length(user));
    else tbuf_adds(&b, "null");
    tbuf_adds(&b, ",\"MSG\",");
    tbuf_json_str(&b, ch->id, strlen(ch->id));
    tbuf_add(&b, ",", 1);
    tbuf_json_str(&b, json_string_value(content), json_string_length(content));
    snprintf(num, sizeof num, ",%lld]\n", (long long)now);
    tbuf_adds(&b, num);
    appending *a = calloc(1, sizeof *a);
    if (b.oom || !a) { tbuf_free(&b); free(a); fail(ch, o, CPS_ENOMEM); return; }
    snprintf(a->id, sizeof a->id, "%s", ch->id);
    a->o = o;
    a->line = b.s;
    a->len = b.len - 1;
    a->offset = ch->idx.size;
    a->msg = json_pack("[i O s s O I]", 0, user ? user : json_null(), "MSG", ch->id, content, now);
    const cps_storage_backend *be = backend();
    if (!append_hist && CPS_API_HAS(API, histogram))
        append_hist = API->histogram(ST.self, "storage_append_seconds",
                                     "Time the storage backend took to append one message to a channel log.");
    a->started = mono_seconds();
    int rc = be ? be->channel_append(be->state, ch->id, b.s, b.len, append_done, a) : CPS_EIO;
    if (rc) {
        json_decref(a->msg);
        free(a->line);
        free(a);
        fail(ch, o, CPS_EIO);
    }
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
    if (ephemeral) {
        API->reply(call, CPS_OK, json_pack("{s o}", "members", ch ? json_incref(ch->members) : json_array()));
        return CPS_OK;
    }
    if (!ch) return CPS_ENOMEM;
    int rc = ch_enqueue(ch, op_message, call, json_incref(args));
    return rc ? rc : CPS_ASYNC;
}
