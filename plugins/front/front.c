/*
** front.c - the front role: owns client websocket sessions and speaks
** netflux to them (spec docs/protocol/netflux.md).  It assigns user ids, answers PING,
** keeps clients alive or drops them, and forwards everything else through
** the router: channels to the core that owns the channel, RPC to the core
** that owns the user.  It keeps each user's set of joined channels.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cps.h"
#include "ids.h"
#include "netflux.h"
#include "strmap.h"
#include "conf.h"
#include "jscan.h"
#include "failover.h"

typedef struct user {
    char id[33];
    cps_session *s;        /* NULL once the connection is gone */
    json_t *waiting;       /* SEND_TEXTS calls to answer when the queue drains */
    json_t *backlog;       /* SEND_TEXTS texts waiting for an empty queue */
    strmap *channels;      /* joined channels (value unused) */
    uint64_t last_rx;
    bool ping_out;
    int refs;              /* the session + each query in flight */
    size_t joining;        /* JOINs sent to a core and not answered yet */
    size_t hk_in_flight;   /* history/RPC requests not answered yet */
    size_t in_flight;      /* queries of every kind not answered yet */
    bool paused;           /* not read until in_flight falls: see query() */
} user;

static struct {
    const cps_api *api;
    cps_plugin *self;
    const char *node;      /* "front:N" */
    strmap *users;         /* id -> user, connected users only */
    cps_timer *keepalive;
    uint64_t ping_after, drop_after;
    size_t max_queue;      /* limits.max_send_queue */
    size_t max_msg;        /* largest MSG content cost accepted (§12) */
    size_t max_channels;   /* front.max_channels_per_session (§12) */
    size_t max_in_flight;  /* front.max_requests_in_flight (§12) */
    size_t max_work;       /* front.max_work_in_flight (§12) */
    size_t max_values, max_request_values;   /* front.max_frame_values, max_request_values */
    cps_counter *c_users, *c_msgs;
    bool failover;         /* storage_failover (docs/protocol/cluster.md §11) */
    uint64_t storage_up;   /* with failover: storage nodes (by index) whose link came up */
} F;

#define API F.api

/* ---- users ---- */

static void user_unref(user *u)
{
    if (--u->refs > 0) return;
    strmap_free(u->channels, NULL);
    json_decref(u->backlog);
    free(u);
}

/* Answer the SEND_TEXTS calls waiting for room (error: the user is gone). */
static void answer_waiting(user *u, int err)
{
    json_t *w = u->waiting;
    u->waiting = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(w, i, c) API->reply((cps_call *)(uintptr_t)json_integer_value(c), err, NULL);
    json_decref(w);
}

/* One serialisation per frame, written straight into it (host/frame.c). */
static cps_frame *frame_of(json_t *v)
{
    return v ? API->frame_json(v) : NULL;
}

static void send_json(user *u, json_t *v)
{
    if (!u->s) { json_decref(v); return; }
    cps_frame *f = frame_of(v);
    json_decref(v);
    if (f) { API->session_send(u->s, f); API->frame_unref(f); }
}

static void reply_error(user *u, json_t *seq, const char *code, json_t *detail)
{
    send_json(u, json_pack("[O s s o]", seq, "ERROR", code, detail ? detail : json_null()));
}

static const char *core_of(const char *key, char *buf, size_t n)
{
    return API->owner(F.self, "core", key, buf, n);
}

static void collect_channel(const char *ch, void *v, void *ud) { (void)v; json_array_append_new(ud, json_string(ch)); }

/* The connection is gone (closed, dropped, killed): tell the cores so the
** other members get LEAVE, then forget the user. */
static void user_gone(user *u, const char *why)
{
    if (!u->s) return;
    API->session_set_data(u->s, NULL);
    u->s = NULL;
    answer_waiting(u, CPS_ECLOSED);
    json_array_clear(u->backlog);
    strmap_del(F.users, u->id);
    API->counter_add(F.c_users, -1);
    API->log(F.self, CPS_LOG_DEBUG, "user %s gone (%s)", u->id, why);
    json_t *all = json_array();
    strmap_each(u->channels, collect_channel, all);
    /* The core owning the user holds its RPC state (authenticated keys):
    ** it always hears of the drop, with the channels it owns if any. */
    char own[64];
    if (core_of(u->id, own, sizeof own)) {
        bool has = false;
        size_t k;
        json_t *chv;
        char c2[64];
        json_array_foreach(all, k, chv)
            if (core_of(json_string_value(chv), c2, sizeof c2) && !strcmp(c2, own)) has = true;
        if (!has) API->send(F.self, own, "DROP_USER", json_pack("{s s s []}", "user", u->id, "channels"));
    }
    /* one DROP_USER per core, with the channels it owns */
    while (json_array_size(all)) {
        char core[64], other[64];
        const char *first = json_string_value(json_array_get(all, 0));
        if (!core_of(first, core, sizeof core)) break;
        json_t *mine = json_array(), *rest = json_array();
        size_t i;
        json_t *ch;
        json_array_foreach(all, i, ch) {
            const char *c = json_string_value(ch);
            core_of(c, other, sizeof other);
            json_array_append(strcmp(other, core) == 0 ? mine : rest, ch);
        }
        API->send(F.self, core, "DROP_USER", json_pack("{s s s o}", "user", u->id, "channels", mine));
        json_decref(all);
        all = rest;
    }
    json_decref(all);
    user_unref(u);
}

/* The client must reconnect and rejoin: its channels' storage node was lost
** or handed them over (docs/protocol/cluster.md §11.5). */
static void restart_user(user *u, const char *why)
{
    cps_session *s = u->s;
    user_gone(u, why);
    if (s) API->session_close(s, 1012, "service restart");
}

/* With storage failover, EUNAVAILABLE for a channel command means the
** channel is moving to another storage node: after the error, the client
** reconnects and rejoins there. */
static void moving(user *u, int error)
{
    if (F.failover && error == CPS_EUNAVAILABLE && u->s) restart_user(u, "STORAGE_MOVED");
}

/* ---- replies from the cores ---- */

typedef struct pending_req {
    user *u;
    json_t *seq;
    char target[40];
} pending_req;

static pending_req *req_new(user *u, json_t *seq, const char *target)
{
    pending_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->u = u;
    u->refs++;
    r->seq = json_incref(seq);
    snprintf(r->target, sizeof r->target, "%s", target ? target : "");
    return r;
}

static void req_free(pending_req *r)
{
    user *u = r->u;
    u->in_flight--;
    if (u->paused && u->in_flight <= F.max_work / 2) {   /* see query() */
        u->paused = false;
        if (u->s) API->session_pause(u->s, false);
    }
    json_decref(r->seq);
    user_unref(u);
    free(r);
}

static void join_done(void *ud, int error, json_t *data)
{
    pending_req *r = ud;
    user *u = r->u;
    u->joining--;
    if (!u->s) {
        /* Left while joining: undo the membership the core just recorded. */
        char core[64];
        if (!error && core_of(r->target, core, sizeof core))
            API->send(F.self, core, "DROP_USER", json_pack("{s s s [s]}", "user", u->id, "channels", r->target));
    } else if (error) {
        json_t *detail = json_object_get(data, "detail");
        reply_error(u, r->seq, API->errname(error), detail ? json_incref(detail) : json_null());
        moving(u, error);
    } else {
        strmap_put(u->channels, r->target, u);
        send_json(u, json_pack("[O s s]", r->seq, "JACK", r->target));
        send_json(u, json_pack("[i s s s]", 0, CPS_HK_ID, "JOIN", r->target));
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(data, "members"), i, m)
            if (json_is_string(m) && strcmp(json_string_value(m), u->id) != 0)
                send_json(u, json_pack("[i O s s]", 0, m, "JOIN", r->target));
        send_json(u, json_pack("[i s s s]", 0, u->id, "JOIN", r->target));
    }
    req_free(r);
}

static void leave_done(void *ud, int error, json_t *data)
{
    (void)data;
    pending_req *r = ud;
    if (error) reply_error(r->u, r->seq, API->errname(error), json_string(r->target));
    else send_json(r->u, json_pack("[O s]", r->seq, "ACK"));
    if (error) moving(r->u, error);
    req_free(r);
}

/* MSG to a channel or a remote user: ACK, or ERROR with the core's code. */
static void msg_done(void *ud, int error, json_t *data)
{
    pending_req *r = ud;
    if (!error) send_json(r->u, json_pack("[O s]", r->seq, "ACK"));
    else if (error == CPS_ERR_enoent) reply_error(r->u, r->seq, "enoent", json_string(r->target));
    else send_json(r->u, json_pack("[O s]", r->seq, "ERROR"));   /* spec §7.1: no code */
    /* a channel's message (not a direct one to a user) */
    if (error && r->u->s && strmap_get(r->u->channels, r->target)) moving(r->u, error);
    req_free(r);
}

/* History and RPC answers: zero or more texts sent as HK direct messages,
** after an optional ACK (history) that the core decides. */
static void hk_done(void *ud, int error, json_t *data)
{
    pending_req *r = ud;
    user *u = r->u;
    u->hk_in_flight--;
    if (error && !json_is_object(data)) {
        reply_error(u, r->seq, API->errname(error), json_null());
        if (r->target[0]) moving(u, error);     /* history of a channel, not RPC */
    } else {
        json_t *ack = json_object_get(data, "ack");
        json_t *detail = json_object_get(data, "detail");
        if (json_is_true(ack)) send_json(u, json_pack("[O s]", r->seq, "ACK"));
        else if (json_is_string(ack) && detail)
            reply_error(u, r->seq, json_string_value(ack), json_incref(detail));
        else if (json_is_string(ack))   /* [seq,"ERROR",code]: docs/protocol/history.md §5.1 */
            send_json(u, json_pack("[O s O]", r->seq, "ERROR", ack));
        size_t i;
        json_t *m;
        json_array_foreach(json_object_get(data, "messages"), i, m) {
            if (json_is_string(m)) send_json(u, json_pack("[i s s s O]", 0, CPS_HK_ID, "MSG", u->id, m));
        }
    }
    req_free(r);
}

static void query(user *u, json_t *seq, const char *node, const char *cmd, json_t *args,
                  const char *target, cps_reply_fn cb)
{
    pending_req *r = req_new(u, seq, target);
    if (!r) { json_decref(args); reply_error(u, seq, "ENOMEM", json_null()); return; }
    /* counted here, uncounted by the callback (always called) */
    if (cb == join_done) u->joining++;
    else if (cb == hk_done) u->hk_in_flight++;
    /* A connection's share of the work queues (netflux.md §12): at
    ** front.max_work_in_flight unanswered queries of any kind (JOINs, MSGs,
    ** history, RPC) the connection is not read until half have been
    ** answered.  A flood then waits in its own socket instead of filling
    ** the router's and storage's queues that every user shares; an honest
    ** client is slowed, never refused. */
    if (++u->in_flight >= F.max_work && !u->paused && u->s) {
        u->paused = true;
        API->session_pause(u->s, true);
    }
    API->query(F.self, node, cmd, args, 0, cb, r);   /* cb always called */
}

/* ---- client commands ---- */

static void on_join(user *u, nf_req *q)
{
    char core[64];
    if (!ids_valid_channel(q->target) || !core_of(q->target, core, sizeof core)) {
        reply_error(u, q->seq, "EINVAL", json_null());
        return;
    }
    /* Per-session channel cap (netflux.md §12): joined + joining.  A re-JOIN
    ** of a joined channel adds nothing and is always answered. */
    if (!strmap_get(u->channels, q->target) &&
        strmap_count(u->channels) + u->joining >= F.max_channels) {
        API->log(F.self, CPS_LOG_INFO, "user %s: JOIN over max_channels_per_session (%zu), refused",
                 u->id, F.max_channels);
        reply_error(u, q->seq, "EBUSY", json_string(q->target));
        return;
    }
    query(u, q->seq, core, "JOIN_CHANNEL",
          json_pack("{s s s s s s}", "channel", q->target, "user", u->id, "front", F.node),
          q->target, join_done);
}

static void on_leave(user *u, nf_req *q)
{
    char core[64];
    if (!ids_valid_channel(q->target) || !core_of(q->target, core, sizeof core)) {
        reply_error(u, q->seq, "EINVAL", json_string(q->target));
        return;
    }
    strmap_del(u->channels, q->target);
    query(u, q->seq, core, "LEAVE_CHANNEL",
          json_pack("{s s s s}", "channel", q->target, "user", u->id), q->target, leave_done);
}

static void on_hk_message(user *u, nf_req *q)
{
    char core[64];
    /* Shape first, as for frames (netflux.md §12): no tree of millions of values. */
    json_t *parsed = nf_shape_within(q->content, q->content_len, F.max_request_values, NF_HK_MAX_DEPTH)
                     ? json_loadb(q->content, q->content_len, JSON_DECODE_ANY, NULL) : NULL;
    const char *first = json_string_value(json_array_get(parsed, 0));
    if (!json_is_array(parsed) || !first) {
        /* Not a history command nor [txid, payload] with a string txid. */
        reply_error(u, q->seq, "EINVAL", json_null());
        json_decref(parsed);
        return;
    }
    /* Per-session bound on history/RPC requests awaiting an answer
    ** (netflux.md §7.3, §12): the excess is refused, not forwarded. */
    if (u->hk_in_flight >= F.max_in_flight) {
        API->log(F.self, CPS_LOG_DEBUG, "user %s: over max_requests_in_flight (%zu), refused",
                 u->id, F.max_in_flight);
        reply_error(u, q->seq, "EBUSY", json_null());
        json_decref(parsed);
        return;
    }
    if (!strcmp(first, "GET_HISTORY") || !strcmp(first, "GET_HISTORY_RANGE") ||
        !strcmp(first, "GET_FULL_HISTORY")) {
        const char *ch = json_string_value(json_array_get(parsed, 1));
        if (!ids_valid_channel(ch) || !core_of(ch, core, sizeof core)) {
            reply_error(u, q->seq, "EINVAL", json_null());
            json_decref(parsed);
            return;
        }
        query(u, q->seq, core, "HISTORY",
              json_pack("{s s s s s O s o}", "user", u->id, "front", F.node, "seq", q->seq,
                        "request", parsed), ch, hk_done);
        return;
    }
    /* RPC: ACK at once (docs/protocol/rpc.md §1), the answer follows as an HK message. */
    send_json(u, json_pack("[O s]", q->seq, "ACK"));
    if (!core_of(u->id, core, sizeof core)) { json_decref(parsed); return; }
    json_t *args = json_pack("{s s s s s o}", "user", u->id, "front", F.node, "request", parsed);
    if (json_array_size(json_array_get(parsed, 1)) == 5) {
        /* the exact text the client signed, for the signature check */
        size_t n;
        char *signed_text = jscan_signed_text(q->content, q->content_len, &n);
        if (signed_text) json_object_set_new(args, "signed", json_stringn(signed_text, n));
        free(signed_text);
    }
    query(u, q->seq, core, "RPC", args, NULL, hk_done);
}

static void deliver_local(user *to, const char *from, nf_req *q)
{
    /* [0, from, "MSG", to, content, ...anything the client appended] */
    json_t *m = json_pack("[i s s s]", 0, from, "MSG", to->id);
    for (size_t i = 3; i < json_array_size(q->root); i++) json_array_append(m, json_array_get(q->root, i));
    send_json(to, m);
}

static void on_msg(user *u, nf_req *q)
{
    char core[64];
    API->counter_add(F.c_msgs, 1);
    if (nf_content_cost(q->content, q->content_len) > F.max_msg) {
        /* It could never be delivered nor loaded from history without
        ** overflowing a send queue: refused, not stored (netflux.md §7.1, §12). */
        API->log(F.self, CPS_LOG_INFO, "user %s: MSG of %zu bytes over the message limit, refused",
                 u->id, q->content_len);
        send_json(u, json_pack("[O s]", q->seq, "ERROR"));
        return;
    }
    if (strcmp(q->target, CPS_HK_ID) == 0) { on_hk_message(u, q); return; }
    if (strmap_get(u->channels, q->target)) {
        /* Straight to the storage node serving the channel, which stores it,
        ** DELIVERs it to the other members' fronts and then answers: the
        ** answer follows the DELIVER to this front on the same link, so the
        ** ACK still comes after the other members here got the message
        ** (docs/protocol/cluster.md §3.4; the admin channel is written
        ** through RPC only). */
        char st[64];
        if (ids_is_admin(q->target) ||
            !cps_channel_storage(API, F.self, F.failover, q->target, st, sizeof st)) {
            send_json(u, json_pack("[O s]", q->seq, "ERROR"));
            return;
        }
        query(u, q->seq, st, "CHANNEL_MESSAGE",
              json_pack("{s s s s s s% s b}", "channel", q->target, "user", u->id, "content",
                        q->content, q->content_len, "deliver", 1),
              q->target, msg_done);
        return;
    }
    user *to = strmap_get(F.users, q->target);
    if (to) {
        deliver_local(to, u->id, q);
        send_json(u, json_pack("[O s]", q->seq, "ACK"));
        return;
    }
    /* Maybe on another front: the core owning the target asks them all. */
    if (API->role_count(F.self, "front") > 1 && ids_is_hex(q->target, 32) &&
        core_of(q->target, core, sizeof core)) {
        json_t *m = json_pack("[i s s s]", 0, u->id, "MSG", q->target);
        for (size_t i = 3; i < json_array_size(q->root); i++) json_array_append(m, json_array_get(q->root, i));
        query(u, q->seq, core, "USER_MESSAGE",
              json_pack("{s s s o}", "target", q->target, "msg", m), q->target, msg_done);
        return;
    }
    reply_error(u, q->seq, "enoent", json_string(q->target));
}

/* ---- sessions ---- */

static void on_open(cps_session *s, void *ud)
{
    (void)ud;
    user *u = calloc(1, sizeof *u);
    if (!u || !(u->channels = strmap_new())) { free(u); API->session_close(s, 1011, "out of memory"); return; }
    do ids_random_user(u->id); while (strmap_get(F.users, u->id));
    u->s = s;
    u->refs = 1;
    u->last_rx = API->now_ms();
    strmap_put(F.users, u->id, u);
    API->session_set_data(s, u);
    API->counter_add(F.c_users, 1);
    send_json(u, json_pack("[i s s s]", 0, "", "IDENT", u->id));
}

static void on_frame(cps_session *s, const char *data, size_t len, void *ud)
{
    (void)ud;
    user *u = API->session_data(s);
    if (!u) return;
    u->last_rx = API->now_ms();
    u->ping_out = false;
    nf_req q;
    switch (nf_parse(data, len, F.max_values, &q)) {
    case NF_CLOSE:
        API->log(F.self, CPS_LOG_DEBUG, "user %s: frame is not a JSON array, closing", u->id);
        user_gone(u, "BAD_MESSAGE");
        API->session_close(s, 1003, "BAD_MESSAGE");
        break;
    case NF_PING: send_json(u, json_pack("[O s]", q.seq, "ACK")); break;
    case NF_JOIN: on_join(u, &q); break;
    case NF_LEAVE: on_leave(u, &q); break;
    case NF_MSG: on_msg(u, &q); break;
    case NF_EINVAL: reply_error(u, q.seq, "EINVAL", json_null()); break;
    default: break;   /* PONG counts as activity; unknown verbs are ignored */
    }
    json_decref(q.root);
}

static void on_close(cps_session *s, void *ud)
{
    (void)ud;
    user *u = API->session_data(s);
    if (u) user_gone(u, "SOCKET_CLOSED");
}

/* ---- keep-alive (docs/protocol/netflux.md §10) ---- */

typedef struct sweep { uint64_t now; user **drop; size_t n, cap; json_t *ping; } sweep;

static void check_user(const char *id, void *v, void *ud)
{
    (void)id;
    user *u = v;
    sweep *w = ud;
    if (w->now - u->last_rx > F.drop_after) {
        if (w->n < w->cap) w->drop[w->n++] = u;
    } else if (w->now - u->last_rx > F.ping_after && !u->ping_out) {
        u->ping_out = true;
        send_json(u, json_incref(w->ping));
    }
}

static void keepalive(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    sweep w = { .now = API->now_ms(), .cap = 256 };
    user *drop[256];
    w.drop = drop;
    w.ping = json_pack("[i s s I]", 0, "", "PING", (json_int_t)w.now);
    strmap_each(F.users, check_user, &w);
    json_decref(w.ping);
    for (size_t i = 0; i < w.n; i++) {
        cps_session *s = drop[i]->s;
        user_gone(drop[i], "INACTIVITY");
        API->session_close(s, 1001, "INACTIVITY");
    }
}

/* ---- events from the cores ---- */

/* {users: [ids], msg: frame value} or {users, text: the frame's JSON text
** (a stored line)}: one frame shared by every recipient */
static int cmd_deliver(cps_call *call, json_t *args, void *ud)
{
    (void)call; (void)ud;
    json_t *text = json_object_get(args, "text");
    cps_frame *f = json_is_string(text) ? API->frame_new(json_string_value(text), json_string_length(text))
                                        : frame_of(json_object_get(args, "msg"));
    if (!f) return CPS_EINVAL;
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(args, "users"), i, id) {
        user *u = json_is_string(id) ? strmap_get(F.users, json_string_value(id)) : NULL;
        if (u && u->s) API->session_send(u->s, f);
    }
    API->frame_unref(f);
    return CPS_OK;
}

/* {user, channel}: the user was removed from the channel (kicked by an
** allow-list change): its messages must not reach the channel any more. */
static int cmd_forget_channel(cps_call *call, json_t *args, void *ud)
{
    (void)call; (void)ud;
    const char *id = json_string_value(json_object_get(args, "user"));
    const char *ch = json_string_value(json_object_get(args, "channel"));
    user *u = id ? strmap_get(F.users, id) : NULL;
    if (u && ch) strmap_del(u->channels, ch);
    return CPS_OK;
}

/* {users}: a storage node stopped serving channels these users are in
** (docs/protocol/cluster.md §11.5): they reconnect and rejoin. */
static int cmd_reconnect_users(cps_call *call, json_t *args, void *ud)
{
    (void)call; (void)ud;
    size_t i, n = 0;
    json_t *id;
    json_array_foreach(json_object_get(args, "users"), i, id) {
        user *u = json_is_string(id) ? strmap_get(F.users, json_string_value(id)) : NULL;
        if (u && u->s) { restart_user(u, "STORAGE_MOVED"); n++; }
    }
    if (n) API->log(F.self, CPS_LOG_INFO, "%s moved channels: %zu client(s) reconnect", API->call_from(call), n);
    return CPS_OK;
}

/* {target, msg}: deliver if the user is here; reply {delivered: bool} */
static int cmd_deliver_user(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "target"));
    user *u = id ? strmap_get(F.users, id) : NULL;
    if (u && u->s) send_json(u, json_incref(json_object_get(args, "msg")));
    API->reply(call, CPS_OK, json_pack("{s b}", "delivered", u != NULL));
    return CPS_OK;
}

/* {user, texts}: frames built elsewhere (history streams); the reply
** comes once the session's queue is below the low-water mark, which paces
** the sender: one batch in flight per stream. */
#define LOW_WATER (512u * 1024)

static void drained(cps_session *s, void *ud);

/* Queue the backlog's texts in order.  A text that would overflow a queue
** that is not empty waits for it to drain: the queue limit bounds the
** backlog, never the size of one line (netflux.md §12).  false: dropped. */
static bool pump(user *u)
{
    while (u->s && json_array_size(u->backlog)) {
        json_t *t = json_array_get(u->backlog, 0);
        size_t len = json_string_length(t), queued = API->session_queued(u->s);
        if (queued && queued + len > F.max_queue) return true;
        cps_frame *f = API->frame_new(json_string_value(t), len);
        int rc = f ? API->session_send(u->s, f) : 0;
        if (f) API->frame_unref(f);
        json_array_remove(u->backlog, 0);
        if (rc) return false;           /* dropped (slow consumer) */
    }
    return u->s != NULL;
}

/* Answer now (CPS_OK), or once the queue is low and the backlog sent. */
static int pace(user *u, cps_call *call)
{
    bool rest = json_array_size(u->backlog) > 0;
    if (!rest && API->session_queued(u->s) <= LOW_WATER) return CPS_OK;
    if (call) {
        if (!u->waiting) u->waiting = json_array();
        json_array_append_new(u->waiting, json_integer((json_int_t)(uintptr_t)call));
    }
    API->session_on_drain(u->s, rest ? 0 : LOW_WATER, drained, u);
    return CPS_ASYNC;
}

static void drained(cps_session *s, void *ud)
{
    (void)s;
    user *u = ud;
    if (!pump(u)) { answer_waiting(u, CPS_ECLOSED); return; }
    if (pace(u, NULL) == CPS_OK) answer_waiting(u, CPS_OK);
}

static int cmd_send_texts(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "user"));
    user *u = id ? strmap_get(F.users, id) : NULL;
    if (!u || !u->s) return CPS_ECLOSED;
    if (!u->backlog) u->backlog = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(args, "texts"), i, t)
        if (json_is_string(t)) json_array_append(u->backlog, t);
    if (!pump(u)) return CPS_ECLOSED;
    return pace(u, call);
}

/* ---- a storage node was lost: it forgot who is in its channels ---- */

typedef struct loss { const char *node; user **hit; size_t n, cap; } loss;

static void check_user_loss(const char *id, void *v, void *ud)
{
    (void)id;
    user *u = v;
    loss *l = ud;
    json_t *all = json_array();
    strmap_each(u->channels, collect_channel, all);
    size_t i;
    json_t *ch;
    json_array_foreach(all, i, ch) {
        char st[64];
        /* with failover, also channels whose home node is down: the node
        ** lost may have been serving them in its stead */
        if (API->owner(F.self, "storage", json_string_value(ch), st, sizeof st) &&
            (!strcmp(st, l->node) || (F.failover && !API->node_is_up(F.self, st)))) {
            if (l->n < l->cap) l->hit[l->n++] = u;
            break;
        }
    }
    json_decref(all);
}

/* Its members would silently miss messages after it restarts: close their
** connections, so the clients reconnect, rejoin and catch up from history. */
static int storage_index(const char *node)
{
    if (strncmp(node, "storage:", 8) != 0) return -1;
    long i = strtol(node + 8, NULL, 10);
    return i >= 0 && i < 64 ? (int)i : -1;
}

static void peer_up(const char *node, void *ud)
{
    (void)ud;
    int i = storage_index(node);
    if (i >= 0) F.storage_up |= (uint64_t)1 << i;
}

static void peer_down(const char *node, void *ud)
{
    (void)ud;
    if (strncmp(node, "storage:", 8) != 0 || !F.users) return;
    if (F.failover) {
        /* Every failed redial reports the node down again: with failover
        ** its channels' users may have rejoined elsewhere meanwhile, so
        ** only the loss of a link that was up counts. */
        int i = storage_index(node);
        if (i < 0 || !(F.storage_up & ((uint64_t)1 << i))) return;
        F.storage_up &= ~((uint64_t)1 << i);
    }
    loss l = { node, NULL, 0, strmap_count(F.users) };
    l.hit = calloc(l.cap ? l.cap : 1, sizeof *l.hit);
    if (!l.hit) return;
    strmap_each(F.users, check_user_loss, &l);
    for (size_t i = 0; i < l.n; i++) restart_user(l.hit[i], "STORAGE_LOST");
    if (l.n) API->log(F.self, CPS_LOG_WARN, "%s lost: %zu client(s) reconnected", node, l.n);
    free(l.hit);
}

/* ---- life cycle ---- */

static const cps_session_handler handler = { sizeof handler, on_open, on_frame, on_close };

static void drop_user_entry(void *v)
{
    user *u = v;
    u->s = NULL;
    answer_waiting(u, CPS_ECANCELED);
    user_unref(u);
}

static void fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    if (F.keepalive) API->timer_stop(F.keepalive);
    strmap_free(F.users, drop_user_entry);
    F.users = NULL;
}

static int plugin_init(const cps_api *api, cps_plugin *self, void **state)
{
    (void)state;
    F.api = api;
    F.self = self;
    F.node = api->self_node(self);
    if (!F.node) {
        api->log(self, CPS_LOG_ERROR, "the front plugin serves a node: list it in `nodes`");
        return CPS_EINVAL;
    }
    json_t *conf = api->config(self);
    uint64_t every = conf_positive(conf, "check_every_ms", 5000);
    F.ping_after = conf_positive(conf, "ping_after_ms", 15000);
    F.drop_after = conf_positive(conf, "drop_after_ms", 60000);
    /* A message must fit a send queue in its largest form (a history line),
    ** with an eighth of the queue left for the backlog: netflux.md §12. */
    json_t *mq = api->config_get(self, "limits.max_send_queue");
    F.max_queue = json_is_integer(mq) && json_integer_value(mq) > 0 ? (size_t)json_integer_value(mq) : 8388608;
    F.max_msg = F.max_queue - F.max_queue / 8;
    F.max_channels = conf_positive(conf, "max_channels_per_session", 10000);
    F.max_in_flight = conf_positive(conf, "max_requests_in_flight", 1024);
    F.max_work = conf_positive(conf, "max_work_in_flight", 256);
    F.max_values = conf_positive(conf, "max_frame_values", NF_MAX_VALUES);
    F.max_request_values = conf_positive(conf, "max_request_values", NF_HK_MAX_VALUES);
    F.failover = json_is_true(api->config_get(self, "storage_failover"));
    F.users = strmap_new();
    F.c_users = api->counter(self, "front_users");
    F.c_msgs = api->counter(self, "front_msg_total");
    int rc = api->session_handler(self, &handler, NULL);
    if (!rc) rc = api->register_command(self, "DELIVER", cmd_deliver, NULL);
    if (!rc) rc = api->register_command(self, "DELIVER_USER", cmd_deliver_user, NULL);
    if (!rc) rc = api->register_command(self, "SEND_TEXTS", cmd_send_texts, NULL);
    if (!rc) rc = api->register_command(self, "FORGET_CHANNEL", cmd_forget_channel, NULL);
    if (!rc) rc = api->register_command(self, "RECONNECT_USERS", cmd_reconnect_users, NULL);
    if (rc) return rc;
    api->on_peer_down(self, peer_down, NULL);
    if (F.failover && CPS_API_HAS(api, on_peer_up)) api->on_peer_up(self, peer_up, NULL);
    F.keepalive = api->timer_start(self, every, every, keepalive, NULL);
    return CPS_OK;
}

CPS_PLUGIN_DEFINE("front", "0.1.0", plugin_init, fini);
