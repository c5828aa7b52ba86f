/*
** server.c - the client-facing listener: libwebsockets on the host's libuv
** loop.  It turns websocket connections into sessions with bounded send
** queues and hands complete text messages to the one plugin that owns
** sessions.  HTTP requests other than the upgrade get GET /metrics or 404.
** The lws traps worked around here are numbered as in docs/libraries.md (G5..G15).
*/
#include <uv.h>               /* before libwebsockets.h: G3 */
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"

#define WRITE_BATCH 64        /* frames per WRITEABLE (G12) */
#define SMALL_FRAME 4096      /* a message this small is handed on from the stack */
#define RX_CHUNK 512          /* lws's read buffer per connection (protocols[]) */

struct cps_session {
    struct lws *wsi;
    uint64_t id;
    void *data;
    char peer[64];
    cps_frame **q;            /* ring of queued frames */
    size_t qhead, qlen, qcap, qbytes;
    char *rx;                 /* fragment reassembly */
    size_t rxlen, rxcap;
    bool closing;             /* no more sends; close after the queue drains */
    bool paused;              /* api->session_pause: not reading */
    bool in_rx;               /* inside lws's RECEIVE callback for it */
    bool want_write;
    bool close_sent;
    int close_code;
    char close_reason[64];
    size_t drain_below;       /* api->session_on_drain watch */
    void (*drain_fn)(cps_session *, void *);
    void *drain_ud;
    struct cps_session *prev, *next;
    bool dirty;               /* on S.dirty: frames to flush after this poll */
    struct cps_session *dprev, *dnext;
};

/* Per-connection storage lws allocates for us. */
typedef struct pss {
    cps_session *s;           /* websocket connections */
    cps_http *http;           /* an HTTP request being handled (http.c) */
    char *body;               /* the /metrics answer not yet written */
    size_t body_len;
} pss;

static struct {
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    const cps_session_handler *h;
    void *h_ud;
    cps_plugin *h_owner;
    cps_session *sessions;
    size_t count, max_frame, max_queue, max_sessions;
    uint64_t next_id;
    const char *ws_path;
    cps_counter *c_in, *c_out, *c_dropped, *c_sessions;
    cps_turn flush;           /* writes what the turn queued (host/turn.c) */
    cps_session *dirty;       /* sessions with frames queued since the last flush */
} S;   /* the server singleton */

/* ---- sessions ---- */

static void kill_now(cps_session *s)
{
    /* G15: a stalled peer never becomes writable: kill asynchronously. */
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void queue_clear(cps_session *s)
{
    while (s->qlen) {
        cps_frame_unref(s->q[s->qhead]);
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qlen--;
    }
    s->qbytes = 0;
}

static void want_write(cps_session *s)
{
    if (!s->want_write) {     /* G12a: one request per writable cycle */
        s->want_write = true;
        lws_callback_on_writable(s->wsi);
    }
}

static void dirty_unlink(cps_session *s)
{
    if (!s->dirty) return;
    if (s->dprev) s->dprev->dnext = s->dnext; else S.dirty = s->dnext;
    if (s->dnext) s->dnext->dprev = s->dprev;
    s->dprev = s->dnext = NULL;
    s->dirty = false;
}

/* Frames are written when the loop's poll phase ends (flush), not through
** a writable request per frame: see write_batch. */
static void mark_dirty(cps_session *s)
{
    if (s->dirty || s->want_write) return;
    /* Frames queued outside the poll phase (a router reply delivered from
    ** its idle handle, a timer) must not wait in a blocking poll for the
    ** next I/O event: an active idle handle makes that poll return at once,
    ** so flush runs in this turn.  Without it a lone writer's ACK waited
    ** for the router's 250 ms sweep timer (cpsload history: 4 appends/s). */
    cps_turn_want(&S.flush);
    s->dirty = true;
    s->dprev = NULL;
    s->dnext = S.dirty;
    if (S.dirty) S.dirty->dprev = s;
    S.dirty = s;
}

int cps_session_send(cps_session *s, cps_frame *f)
{
    if (!s || !f) return CPS_EINVAL;
    if (s->closing) return CPS_ECLOSED;
    /* The bound limits the backlog, not one frame: an empty queue takes any
    ** frame, so a history line near the message limit never drops its
    ** reader (docs/protocol/netflux.md §12). */
    if (s->qlen && s->qbytes + f->len > S.max_queue) {
        cps_log("server", CPS_LOG_WARN, "session %llu (%s): send queue over %zu bytes, dropping it",
                (unsigned long long)s->id, s->peer, S.max_queue);
        cps_metrics_add(S.c_dropped, 1);
        s->closing = true;
        queue_clear(s);
        kill_now(s);
        return CPS_EBUSY;
    }
    if (s->qlen == s->qcap) {
        size_t cap = s->qcap ? s->qcap * 2 : 4;   /* most sessions never queue more */
        cps_frame **q = malloc(cap * sizeof *q);
        if (!q) return CPS_ENOMEM;
        for (size_t i = 0; i < s->qlen; i++) q[i] = s->q[(s->qhead + i) % s->qcap];
        free(s->q);
        s->q = q;
        s->qhead = 0;
        s->qcap = cap;
    }
    s->q[(s->qhead + s->qlen) % s->qcap] = cps_frame_ref(f);
    s->qlen++;
    s->qbytes += f->len;
    mark_dirty(s);
    return 0;
}

void cps_session_close(cps_session *s, int code, const char *reason)
{
    if (!s || s->close_sent) return;
    if (code <= 0) {          /* abort: no close frame */
        s->closing = true;
        queue_clear(s);
        kill_now(s);
        return;
    }
    s->closing = true;
    s->close_code = code;
    snprintf(s->close_reason, sizeof s->close_reason, "%s", reason ? reason : "");
    want_write(s);
}

uint64_t cps_session_id(cps_session *s) { return s ? s->id : 0; }
void cps_session_set_data(cps_session *s, void *d) { if (s) s->data = d; }
void *cps_session_data(cps_session *s) { return s ? s->data : NULL; }
const char *cps_session_peer(cps_session *s) { return s ? s->peer : ""; }
size_t cps_session_queued(cps_session *s) { return s ? s->qbytes : 0; }

/* lws applies a change made inside the connection's own RECEIVE callback
** when the callback returns, keeping the rest of what it read; from
** anywhere else the change must be asked to apply now. */
void cps_session_pause(cps_session *s, bool paused)
{
    if (!s || s->closing || s->paused == paused) return;
    s->paused = paused;
    int how = paused ? 0 : 1;
    if (!s->in_rx) how |= LWS_RXFLOW_REASON_FLAG_PROCESS_NOW;
    lws_rx_flow_control(s->wsi, how);
}
size_t cps_server_session_count(void) { return S.count; }

static int cmp_peer(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Distinct peer addresses of the open sessions (ACTIVE_SESSIONS of the
** admin commands): sorted, so O(n log n) for any number of sessions. */
size_t cps_server_unique_peers(void)
{
    if (!S.count) return 0;
    const char **v = malloc(S.count * sizeof *v);
    if (!v) return 0;
    size_t n = 0, distinct = 0;
    for (cps_session *s = S.sessions; s && n < S.count; s = s->next) v[n++] = s->peer;
    qsort(v, n, sizeof *v, cmp_peer);
    for (size_t i = 0; i < n; i++) if (i == 0 || strcmp(v[i], v[i - 1])) distinct++;
    free(v);
    return distinct;
}

int cps_server_set_handler(cps_plugin *p, const cps_session_handler *h, void *ud)
{
    /* The struct carries its size (api/cps.h VERSIONING): a 2.0 handler has
    ** at least its three callbacks; later fields would be read only if
    ** h->size covers them. */
    if (!h || h->size < offsetof(cps_session_handler, on_close) + sizeof h->on_close) {
        cps_log("server", CPS_LOG_ERROR, "plugin '%s': session handler without a valid size, refused",
                p ? p->name : "?");
        return CPS_EVERSION;
    }
    if (S.h) {
        cps_log("server", CPS_LOG_ERROR, "sessions already owned by plugin '%s', refused for '%s'",
                S.h_owner ? S.h_owner->name : "?", p ? p->name : "?");
        return CPS_EEXIST;
    }
    S.h = h;
    S.h_ud = ud;
    S.h_owner = p;
    return 0;
}

void cps_server_forget(cps_plugin *p)
{
    if (S.h && (!p || S.h_owner == p)) { S.h = NULL; S.h_ud = NULL; S.h_owner = NULL; }
}

void cps_server_close_sessions(int code, const char *reason)
{
    for (cps_session *s = S.sessions; s; s = s->next) cps_session_close(s, code, reason);
}

/* ---- flow control ---- */

static void fire_drain(cps_session *s)
{
    void (*fn)(cps_session *, void *) = s->drain_fn;
    s->drain_fn = NULL;
    fn(s, s->drain_ud);
}

/* Fired from the next WRITEABLE (also when nothing is queued), so the
** callback never runs inside the caller. */
int cps_session_on_drain(cps_session *s, size_t below, void (*fn)(cps_session *, void *), void *ud)
{
    if (!s || !fn) return CPS_EINVAL;
    if (s->closing) return CPS_ECLOSED;
    s->drain_below = below;
    s->drain_fn = fn;
    s->drain_ud = ud;
    want_write(s);
    return 0;
}

/* ---- writing ---- */

/* Queued frames go out coalesced: their websocket headers are written here
** and up to WRITE_BYTES of frames leave in one raw write (one send() per
** writable cycle instead of one per frame, and no TCP_CORK toggling: the
** profile of the broadcast scenario had setsockopt at 11%, send 6.5% and
** poll 3% for lws_send_pipe_choked).  Server frames are never masked
** (RFC 6455 §5.1); extensions are off, so lws adds nothing to a frame.  A
** frame over COALESCE_MAX is written by lws from its own buffer (no copy). */
#define WRITE_BYTES (256 * 1024)
#define COALESCE_MAX (64 * 1024)

static struct {
    unsigned char *buf;       /* LWS_PRE + room, reused by every session */
    size_t cap;
} W;

/* Room for `need` bytes of frames after LWS_PRE. */
static unsigned char *wbuf(size_t need)
{
    if (LWS_PRE + need > W.cap) {
        size_t cap = W.cap ? W.cap : 64 * 1024;
        while (cap < LWS_PRE + need) cap *= 2;
        unsigned char *b = realloc(W.buf, cap);
        if (!b) return NULL;
        W.buf = b;
        W.cap = cap;
    }
    return W.buf + LWS_PRE;
}

/* A websocket frame's header (FIN set, `opcode`, `len` bytes of payload)
** into h (CPS_WS_HDR_MAX bytes); returns its size.  `masked` sets the mask
** bit with the all-zero key, which RFC 6455 allows a client: the payload is
** then sent as it is (the links' dialer, host/link.c). */
size_t cps_ws_header(unsigned char *h, size_t len, unsigned char opcode, bool masked)
{
    size_t n = 2;
    h[0] = (unsigned char)(0x80 | opcode);
    if (len < 126) h[1] = (unsigned char)len;
    else if (len < 65536) { h[1] = 126; h[2] = (unsigned char)(len >> 8); h[3] = (unsigned char)len; n = 4; }
    else {
        h[1] = 127;
        for (int i = 0; i < 8; i++) h[2 + i] = (unsigned char)((uint64_t)len >> (56 - 8 * i));
        n = 10;
    }
    if (masked) { h[1] |= 0x80; memset(h + n, 0, 4); n += 4; }
    return n;
}

static void pop(cps_session *s)
{
    cps_frame *f = s->q[s->qhead];
    s->qhead = (s->qhead + 1) % s->qcap;
    s->qlen--;
    s->qbytes -= f->len;
    cps_frame_unref(f);
    cps_metrics_add(S.c_out, 1);
}

/* Writes up to WRITE_BYTES of queued frames; -1 if the connection failed. */
static int write_batch(cps_session *s)
{
    size_t used = 0, n = 0;
    while (s->qlen && n < WRITE_BATCH && used < WRITE_BYTES) {
        cps_frame *f = s->q[s->qhead];
        size_t len = f->len;
        if (len > COALESCE_MAX) {
            if (used) break;                      /* send what is gathered first */
            int w = lws_write(s->wsi, cps_frame_payload(f), len, LWS_WRITE_TEXT);
            pop(s);
            if (w < (int)len) return -1;
            n++;
            break;                                /* one big frame per cycle */
        }
        unsigned char *b = wbuf(used + CPS_WS_HDR_MAX + len);
        if (!b) return -1;
        used += cps_ws_header(b + used, len, 0x1, false);    /* text */
        memcpy(b + used, cps_frame_payload(f), len);
        used += len;
        pop(s);
        n++;
    }
    /* LWS_WRITE_HTTP is lws's raw write: the bytes go out as they are, and
    ** what the socket does not take now lws keeps and sends first. */
    if (used && lws_write(s->wsi, W.buf + LWS_PRE, used, LWS_WRITE_HTTP) < (int)used) return -1;
    return 0;
}

/* After the poll phase: write each dirty session's frames at once unless
** lws still buffers part of an earlier write, else ask for WRITEABLE as
** before.  This saves the two epoll_ctl calls of a writable cycle per
** burst (the broadcast profile: epoll_ctl 9%) and the poll() of
** lws_send_pipe_choked (3%).  lws's own buffer stays bounded: it is only
** written to when it is empty, with at most one batch. */
static void flush(void)
{
    while (S.dirty) {
        cps_session *s = S.dirty;
        dirty_unlink(s);
        if (s->closing || s->want_write || !s->qlen) continue;
        /* lws still holds part of an earlier write: wait for WRITEABLE.  So
        ** lws never buffers more than one batch (WRITE_BYTES). */
        if (lws_partial_buffered(s->wsi)) { want_write(s); continue; }
        if (write_batch(s) < 0) {
            s->closing = true;
            queue_clear(s);
            kill_now(s);
            continue;
        }
        if (s->drain_fn && s->qbytes <= s->drain_below) fire_drain(s);
        if (s->qlen) want_write(s);
    }
}

static int on_writable(cps_session *s)
{
    s->want_write = false;
    dirty_unlink(s);
    if (write_batch(s) < 0) return -1;
    if (s->drain_fn && s->qbytes <= s->drain_below) fire_drain(s);
    if (s->qlen) { want_write(s); return 0; }
    if (s->closing && !s->close_sent && s->close_code > 0) {
        /* G7: a close from WRITEABLE must be written by hand (4 = LWS_WRITE_CLOSE). */
        unsigned char buf[LWS_PRE + 2 + 64];
        size_t rl = strlen(s->close_reason);
        buf[LWS_PRE] = (unsigned char)(s->close_code >> 8);
        buf[LWS_PRE + 1] = (unsigned char)(s->close_code & 0xff);
        memcpy(buf + LWS_PRE + 2, s->close_reason, rl);
        s->close_sent = true;
        lws_write(s->wsi, buf + LWS_PRE, 2 + rl, (enum lws_write_protocol)4);
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
    }
    return 0;
}

/* ---- reading ---- */

/* Close a connection that broke the protocol (docs/protocol/netflux.md §12).
** The close frame goes out through on_writable and the socket stays open
** while the rest of the offending frame is read and dropped: closing it
** with unread bytes in the kernel buffer makes the kernel answer with a
** reset, which can overtake the close frame, and the client then sees 1006
** instead of the code that says why.  The timeout bounds a client that
** neither reads nor stops sending. */
static int refuse(cps_session *s, int code, const char *reason)
{
    queue_clear(s);
    cps_session_close(s, code, reason);
    lws_set_timeout(s->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
    return 0;
}

static int on_receive(struct lws *wsi, cps_session *s, const char *in, size_t len)
{
    /* A closing session reads on but keeps nothing: see refuse. */
    if (s->closing) return 0;
    if (lws_is_first_fragment(wsi)) s->rxlen = 0;
    size_t remain = lws_remaining_packet_payload(wsi);
    if (s->rxlen + len + remain > S.max_frame)            /* G13 */
        return refuse(s, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "too big");
    if (lws_frame_is_binary(wsi))
        return refuse(s, LWS_CLOSE_STATUS_UNACCEPTABLE_OPCODE, "text only");
    if (s->rxlen == 0 && lws_is_final_fragment(wsi) && !remain && len < SMALL_FRAME) {
        /* A whole small message in one read (the common case): no buffer is
        ** kept per connection for it, an idle connection holds none. */
        char one[SMALL_FRAME];
        memcpy(one, in, len);
        one[len] = 0;
        cps_metrics_add(S.c_in, 1);
        if (!s->closing && S.h && S.h->on_frame) S.h->on_frame(s, one, len, S.h_ud);
        return 0;
    }
    if (s->rxlen + len + 1 > s->rxcap) {
        size_t cap = s->rxcap ? s->rxcap : 4096;
        while (cap < s->rxlen + len + remain + 1) cap *= 2;
        char *r = realloc(s->rx, cap);
        if (!r) return -1;
        s->rx = r;
        s->rxcap = cap;
    }
    memcpy(s->rx + s->rxlen, in, len);
    s->rxlen += len;
    if (!lws_is_final_fragment(wsi) || remain) return 0;
    s->rx[s->rxlen] = 0;
    size_t n = s->rxlen;
    s->rxlen = 0;
    cps_metrics_add(S.c_in, 1);
    if (!s->closing && S.h && S.h->on_frame) S.h->on_frame(s, s->rx, n, S.h_ud);
    /* Not kept: an idle connection holds no buffer (messages that need one,
    ** over lws's read chunk, are rare enough to pay a malloc each). */
    free(s->rx);
    s->rx = NULL;
    s->rxcap = 0;
    return 0;
}

/* ---- HTTP (everything that is not the upgrade) ---- */

/* Whether this peer may read /metrics: its address is one of `metrics.from`
** (default loopback only: the counters are not for the public,
** docs/operator-guide.md §7.1).  An IPv4 peer on a dual-stack socket is
** compared without its "::ffff:" prefix. */
static bool metrics_allowed(struct lws *wsi)
{
    json_t *from = cps_config_path(cps_cfg ? cps_cfg->root : NULL, "metrics.from");
    char peer[64] = "";
    lws_get_peer_simple(wsi, peer, sizeof peer);
    const char *ip = strncmp(peer, "::ffff:", 7) ? peer : peer + 7;
    if (!json_is_array(from)) return !strcmp(ip, "127.0.0.1") || !strcmp(ip, "::1");
    size_t i;
    json_t *v;
    json_array_foreach(from, i, v) {
        if (json_is_string(v) && (!strcmp(json_string_value(v), "*") || !strcmp(json_string_value(v), ip)))
            return true;
    }
    return false;
}

static int http_request(struct lws *wsi, pss *ps, const char *uri)
{
    unsigned char buf[LWS_PRE + 512], *p = buf + LWS_PRE, *end = buf + sizeof buf - 1;
    /* Not allowed: answered as any unknown path (404), revealing nothing. */
    if (strcmp(uri, "/metrics") != 0 || lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0 ||
        !metrics_allowed(wsi))
        return cps_http_begin(wsi, &ps->http, uri);
    ps->body = cps_metrics_text();
    ps->body_len = ps->body ? strlen(ps->body) : 0;
    if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, "text/plain; version=0.0.4",
                                    ps->body_len, &p, end) ||
        lws_finalize_write_http_header(wsi, buf + LWS_PRE, &p, end))
        return -1;
    lws_callback_on_writable(wsi);
    return 0;
}

static int http_writable(struct lws *wsi, pss *ps)
{
    if (!ps->body) return 0;
    unsigned char *b = malloc(LWS_PRE + ps->body_len + 1);
    if (!b) return -1;
    memcpy(b + LWS_PRE, ps->body, ps->body_len);
    int w = lws_write(wsi, b + LWS_PRE, ps->body_len, LWS_WRITE_HTTP_FINAL);
    free(b);
    free(ps->body);
    ps->body = NULL;
    if (w < (int)ps->body_len) return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* ---- the lws callback ---- */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                    void *in, size_t len)
{
    pss *ps = user;
    cps_session *s = ps ? ps->s : NULL;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[256];
        /* G10: lws does not route upgrades by path. */
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0) return 1;
        char *q = strchr(uri, '?');
        if (q) *q = 0;
        if (strcmp(uri, S.ws_path) != 0 || !S.h) return 1;
        if (S.count >= S.max_sessions) {
            cps_log("server", CPS_LOG_WARN, "refusing a connection: limits.max_sessions reached");
            return 1;
        }
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        s = calloc(1, sizeof *s);
        if (!s) return -1;
        s->wsi = wsi;
        s->id = ++S.next_id;
        lws_get_peer_simple(wsi, s->peer, sizeof s->peer);
        ps->s = s;
        s->next = S.sessions;
        if (S.sessions) S.sessions->prev = s;
        S.sessions = s;
        S.count++;
        cps_metrics_add(S.c_sessions, 1);
        if (S.h && S.h->on_open) S.h->on_open(s, S.h_ud);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE: {
        if (!s) return -1;
        s->in_rx = true;
        int rc = on_receive(wsi, s, in, len);
        s->in_rx = false;
        return rc;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!s) return 0;
        return on_writable(s);
    case LWS_CALLBACK_CLOSED:
        if (!s) return 0;     /* G11: CLOSED without ESTABLISHED */
        ps->s = NULL;
        dirty_unlink(s);
        if (S.h && S.h->on_close) S.h->on_close(s, S.h_ud);
        if (s->prev) s->prev->next = s->next; else S.sessions = s->next;
        if (s->next) s->next->prev = s->prev;
        S.count--;
        cps_metrics_add(S.c_sessions, -1);
        queue_clear(s);
        free(s->q);
        free(s->rx);
        free(s);
        return 0;
    case LWS_CALLBACK_HTTP:
        return http_request(wsi, ps, in ? (const char *)in : "/");
    case LWS_CALLBACK_HTTP_BODY:
        return ps ? cps_http_body_chunk(ps->http, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (ps) cps_http_body_done(ps->http);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (ps && ps->http) return cps_http_writable(wsi, &ps->http);
        return ps ? http_writable(wsi, ps) : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (ps) cps_http_closed(&ps->http);
        if (ps && ps->body) { free(ps->body); ps->body = NULL; }
        return 0;
    default:
        break;
    }
    /* G9: unanswered HTTP gets lws's default handling (404), never a hang. */
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static int link_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
                         void *in, size_t len)
{
    return cps_link_callback(wsi, (int)reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    /* rx: the buffer lws allocates per connection (64 KiB cost resident
    ** pages on every idle connection); tx: write_batch's largest send. */
    { "cpsd", callback, sizeof(pss), RX_CHUNK, 0, NULL, WRITE_BYTES + 16 },
    { "cpsd-link", link_callback, sizeof(void *), 65536, 0, NULL, 0 },   /* link.c */
    { NULL, NULL, 0, 0, 0, NULL, 0 }   /* G8: no LWS_PROTOCOL_LIST_TERM in 4.1 */
};

/* lws reports some client mistakes as errors: a request head too large for
** its arena (docs/libraries.md G13b).  Those are no server error, and any
** client could fill the log at error level with them: info. */
static int lws_line_level(int level, const char *line)
{
    if (strstr(line, "Ran out of header data space") || strstr(line, "More hdr frags than we can deal with"))
        return CPS_LOG_INFO;
    return level == LLL_ERR ? CPS_LOG_ERROR : CPS_LOG_WARN;
}

static void lws_log(int level, const char *line)
{
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    cps_log("lws", lws_line_level(level, line), "%.*s", (int)n, line);
}

int cps_server_start(uv_loop_t *loop)
{
    S.max_frame = (size_t)cps_config_int("limits.max_frame", 8388608);
    S.max_queue = (size_t)cps_config_int("limits.max_send_queue", 8388608);
    S.max_sessions = (size_t)cps_config_int("limits.max_sessions", 100000);
    if (S.max_frame > S.max_queue) {
        /* A frame the queues cannot hold could be stored and never be
        ** loaded again (netflux.md §12): clients are held to the queue. */
        cps_log("server", CPS_LOG_WARN, "limits.max_frame (%zu) is over limits.max_send_queue (%zu): "
                "client frames are limited to %zu bytes", S.max_frame, S.max_queue, S.max_queue);
        S.max_frame = S.max_queue;
    }
    S.ws_path = cps_config_str("websocket_path", "/cryptpad_websocket");
    cps_turn_init(&S.flush, loop, flush);
    S.c_in = cps_metrics_counter("frames_in_total");
    S.c_out = cps_metrics_counter("frames_out_total");
    S.c_dropped = cps_metrics_counter("sessions_dropped_slow_total");
    S.c_sessions = cps_metrics_counter("sessions");
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);

    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    void *loops[] = { loop };
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS |
                   LWS_SERVER_OPTION_VALIDATE_UTF8 | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.pt_serv_buf_size = 65536;     /* read chunk size (docs/libraries.md G13) */
    info.max_http_header_data = CPS_HTTP_HEAD_ARENA;   /* room to answer 414/431 (http.c) */
    info.pcontext = &S.ctx;            /* lws clears it when really freed */
    S.ctx = lws_create_context(&info);
    if (!S.ctx) {
        cps_log("server", CPS_LOG_ERROR, "cannot create the libwebsockets context "
                "(is the libwebsockets-evlib-uv package installed?)");
        return CPS_EINVAL;
    }
    /* listen.port, then each of listen.extra_ports: one vhost each, same
    ** protocols (the plugins tell requests apart by api->http_port). */
    json_t *extra = cps_config_path(cps_cfg ? cps_cfg->root : NULL, "listen.extra_ports");
    for (size_t i = 0; i <= json_array_size(extra); i++) {
        memset(&info, 0, sizeof info);
        info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
                       LWS_SERVER_OPTION_DISABLE_IPV6;
        info.port = i == 0 ? (int)cps_config_int("listen.port", 3000)
                           : (int)json_integer_value(json_array_get(extra, i - 1));
        info.iface = cps_config_str("listen.host", "127.0.0.1");
        info.protocols = protocols;
        info.vhost_name = i == 0 ? "cpsd" : "cpsd-extra";
        info.keepalive_timeout = 5;
        struct lws_vhost *vh = lws_create_vhost(S.ctx, &info);    /* G5: check the bind */
        if (!vh) {
            cps_log("server", CPS_LOG_ERROR, "cannot listen on %s:%d (address in use, or not available)",
                    info.iface, info.port);
            return CPS_EIO;
        }
        if (i == 0) { S.vhost = vh; cps_link_setup(S.ctx, vh); }
        /* port 0 picked a free port: listen.port says which, so that what
        ** plugins and scripts build from it (the origin) is reachable */
        json_t *listen = cps_cfg ? json_object_get(cps_cfg->root, "listen") : NULL;
        if (i == 0 && info.port == 0 && json_is_object(listen))
            json_object_set_new(listen, "port", json_integer(lws_get_vhost_listen_port(vh)));
        cps_log("server", CPS_LOG_INFO, "listening on %s:%d", info.iface, lws_get_vhost_listen_port(vh));
    }
    return 0;
}

/* G6: the first destroy, inside the loop, closes lws's handles. */
void cps_server_stop(void)
{
    if (S.ctx) lws_context_destroy(S.ctx);
    cps_turn_stop(&S.flush);
    while (S.dirty) dirty_unlink(S.dirty);
}

/* G6: the second destroy, after uv_run returned, frees the context. */
void cps_server_free(void)
{
    if (S.ctx) lws_context_destroy(S.ctx);
    S.ctx = NULL;
    free(W.buf);
    W.buf = NULL;
    W.cap = 0;
}
