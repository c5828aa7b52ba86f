/* lwsbare: the machine's reference for relay cost.  A bare libwebsockets
 * broadcast relay on libuv with just enough netflux (IDENT, JOIN, MSG, LEAVE,
 * PING; docs/protocol/netflux.md §4-§8) for cpsload's broadcast scenario: no
 * storage, no history keeper, the best batching (many frames per WRITEABLE
 * inside TCP_CORK).  What cpsd costs above this is the price of its features.
 *   lwsbare [PORT]    (127.0.0.1, path /cryptpad_websocket; SIGTERM stops it) */
#include <uv.h>
#include <libwebsockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include "../cpsload/cpsload.h"        /* nf_scan: the same frame scanner as the load generator */

#define HK_ID "0123456789abcdef"
#define MAX_QUEUE_BYTES (8u << 20)     /* a client that stops reading is dropped past this */
#define MAX_MSG (8u << 20)
#define BATCH 64                       /* frames per WRITEABLE */
#define NBUCKETS 65536

typedef struct msg { int refs; size_t len; unsigned char buf[]; } msg;   /* LWS_PRE + payload */
typedef struct sess sess;
typedef struct chan { char name[35]; sess **m; int n, cap; struct chan *next; } chan;
struct sess {
    struct lws *wsi; char id[33]; int established, killed;
    msg **q; unsigned qh, qn, qcap; size_t qbytes;
    char *rx; size_t rxlen, rxcap;
    chan **ch; int nch, capch;
};

static chan *buckets[NBUCKETS];
static uv_loop_t loop;
static struct lws_context *ctx;
static uv_signal_t sigterm, sigint;

static unsigned hash(const char *s, size_t n) { unsigned h = 2166136261u; while (n--) h = (h ^ (unsigned char)*s++) * 16777619u; return h % NBUCKETS; }

static chan *chan_get(const char *name, size_t n, int create)
{
    unsigned h = hash(name, n);
    for (chan *c = buckets[h]; c; c = c->next) if (strlen(c->name) == n && memcmp(c->name, name, n) == 0) return c;
    if (!create) return NULL;
    chan *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    memcpy(c->name, name, n); c->name[n] = 0;
    c->next = buckets[h]; buckets[h] = c;
    return c;
}

static void chan_drop_if_empty(chan *c)
{
    if (c->n) return;
    unsigned h = hash(c->name, strlen(c->name));
    for (chan **pp = &buckets[h]; *pp; pp = &(*pp)->next) if (*pp == c) { *pp = c->next; break; }
    free(c->m); free(c);
}

static msg *msg_new(const char *data, size_t len)
{
    msg *m = malloc(sizeof *m + LWS_PRE + len);
    if (!m) return NULL;
    m->refs = 0; m->len = len;
    memcpy(m->buf + LWS_PRE, data, len);
    return m;
}
static void msg_unref(msg *m) { if (--m->refs <= 0) free(m); }

static void push(sess *s, msg *m)
{
    if (s->killed) return;
    if (s->qbytes + m->len > MAX_QUEUE_BYTES) {
        s->killed = 1;
        lws_set_timeout(s->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
        return;
    }
    if (s->qn == s->qcap) {
        unsigned cap = s->qcap ? s->qcap * 2 : 16;
        msg **nq = malloc(cap * sizeof *nq);
        if (!nq) return;
        for (unsigned i = 0; i < s->qn; i++) nq[i] = s->q[(s->qh + i) % s->qcap];
        free(s->q); s->q = nq; s->qcap = cap; s->qh = 0;
    }
    m->refs++;
    s->q[(s->qh + s->qn++) % s->qcap] = m;
    s->qbytes += m->len;
    if (s->qn == 1) lws_callback_on_writable(s->wsi);   /* already requested when the queue was not empty */
}

static void send_text(sess *s, const char *txt, size_t len)
{
    msg *m = msg_new(txt, len);
    if (!m) return;
    push(s, m);
    if (m->refs == 0) free(m);
}

static int valid_chan(const char *p, size_t n)
{
    if (n < 32 || n > 34) return 0;
    for (size_t i = 0; i < n; i++) if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f'))) return 0;
    return 1;
}

static void leave(sess *s, chan *c)
{
    for (int i = 0; i < c->n; i++) if (c->m[i] == s) { c->m[i] = c->m[--c->n]; break; }
    for (int i = 0; i < s->nch; i++) if (s->ch[i] == c) { s->ch[i] = s->ch[--s->nch]; break; }
    char b[128];
    int n = snprintf(b, sizeof b, "[0,\"%s\",\"LEAVE\",\"%s\"]", s->id, c->name);
    msg *m = msg_new(b, (size_t)n);
    if (m) { for (int i = 0; i < c->n; i++) push(c->m[i], m); if (!m->refs) free(m); }
    chan_drop_if_empty(c);
}

static int joined(sess *s, chan *c) { for (int i = 0; i < s->nch; i++) if (s->ch[i] == c) return 1; return 0; }

static void handle(sess *s, const char *in, size_t len)
{
    nf_frame f;
    char b[512];
    if (nf_scan(in, len, &f) != 0 || f.n < 2 || f.type[1] != NF_STR) return;
    int sl = (int)f.len[0]; const char *seq = f.p[0];
    if (nf_is(&f, 1, "PING")) { int n = snprintf(b, sizeof b, "[%.*s,\"ACK\"]", sl, seq); send_text(s, b, (size_t)n); return; }
    if (f.n < 3 || f.type[2] != NF_STR) return;
    if (nf_is(&f, 1, "JOIN")) {
        if (!valid_chan(f.p[2], f.len[2])) { int n = snprintf(b, sizeof b, "[%.*s,\"ERROR\",\"EINVAL\",null]", sl, seq); send_text(s, b, (size_t)n); return; }
        chan *c = chan_get(f.p[2], f.len[2], 1);
        if (!c) return;
        int n = snprintf(b, sizeof b, "[%.*s,\"JACK\",\"%s\"]", sl, seq, c->name); send_text(s, b, (size_t)n);
        n = snprintf(b, sizeof b, "[0,\"" HK_ID "\",\"JOIN\",\"%s\"]", c->name); send_text(s, b, (size_t)n);
        for (int i = 0; i < c->n; i++) if (c->m[i] != s) { n = snprintf(b, sizeof b, "[0,\"%s\",\"JOIN\",\"%s\"]", c->m[i]->id, c->name); send_text(s, b, (size_t)n); }
        if (!joined(s, c)) {
            n = snprintf(b, sizeof b, "[0,\"%s\",\"JOIN\",\"%s\"]", s->id, c->name);
            msg *m = msg_new(b, (size_t)n);
            if (m) { for (int i = 0; i < c->n; i++) push(c->m[i], m); if (!m->refs) free(m); }
            if (c->n == c->cap) { int cap = c->cap ? c->cap * 2 : 8; sess **nm = realloc(c->m, (size_t)cap * sizeof *nm); if (!nm) return; c->m = nm; c->cap = cap; }
            if (s->nch == s->capch) { int cap = s->capch ? s->capch * 2 : 4; chan **nc = realloc(s->ch, (size_t)cap * sizeof *nc); if (!nc) return; s->ch = nc; s->capch = cap; }
            c->m[c->n++] = s; s->ch[s->nch++] = c;
        }
        send_text(s, b, (size_t)snprintf(b, sizeof b, "[0,\"%s\",\"JOIN\",\"%s\"]", s->id, c->name));
        return;
    }
    if (nf_is(&f, 1, "LEAVE")) {
        chan *c = chan_get(f.p[2], f.len[2], 0);
        if (c && joined(s, c)) leave(s, c);
        int n = snprintf(b, sizeof b, "[%.*s,\"ACK\"]", sl, seq); send_text(s, b, (size_t)n);
        return;
    }
    if (nf_is(&f, 1, "MSG") && f.n >= 4 && f.type[3] == NF_STR) {
        chan *c = valid_chan(f.p[2], f.len[2]) ? chan_get(f.p[2], f.len[2], 0) : NULL;
        if (c && joined(s, c)) {
            /* [0,U,"MSG",C,content,time]: the shape cpsd relays on a stored channel */
            size_t cap = f.len[3] + 128;
            msg *m = malloc(sizeof *m + LWS_PRE + cap);
            if (!m) return;
            char *o = (char *)m->buf + LWS_PRE;
            int h = snprintf(o, cap, "[0,\"%s\",\"MSG\",\"%s\",\"", s->id, c->name);
            memcpy(o + h, f.p[3], f.len[3]);
            int t = snprintf(o + h + f.len[3], 32, "\",%llu]", (unsigned long long)uv_now(&loop));
            m->refs = 0; m->len = (size_t)h + f.len[3] + (size_t)t;
            for (int i = 0; i < c->n; i++) if (c->m[i] != s) push(c->m[i], m);
            if (!m->refs) free(m);
        } else if (!(f.len[2] == 16 && memcmp(f.p[2], HK_ID, 16) == 0)) {
            int n = snprintf(b, sizeof b, "[%.*s,\"ERROR\",\"enoent\",\"%.*s\"]", sl, seq, (int)(f.len[2] < 64 ? f.len[2] : 64), f.p[2]);
            send_text(s, b, (size_t)n); return;
        }
        int n = snprintf(b, sizeof b, "[%.*s,\"ACK\"]", sl, seq); send_text(s, b, (size_t)n);
    }
}

static void cork(struct lws *wsi, int on)
{
    int fd = lws_get_socket_fd(wsi);
    if (fd >= 0) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
}

static int cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    sess *s = (sess *)user;
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || strcmp(uri, "/cryptpad_websocket") != 0) return 1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        memset(s, 0, sizeof *s);
        s->wsi = wsi; s->established = 1;
        unsigned char r[16];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return -1;
        for (int i = 0; i < 16; i++) sprintf(s->id + 2 * i, "%02x", r[i]);
        char b[96];
        int n = snprintf(b, sizeof b, "[0,\"\",\"IDENT\",\"%s\"]", s->id);
        send_text(s, b, (size_t)n);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE: {
        if (lws_is_first_fragment(wsi) && lws_is_final_fragment(wsi) && !s->rxlen) { handle(s, in, len); return 0; }
        if (s->rxlen + len > MAX_MSG) return -1;
        if (s->rxlen + len > s->rxcap) {
            size_t cap = s->rxcap ? s->rxcap : 4096;
            while (cap < s->rxlen + len) cap *= 2;
            char *nr = realloc(s->rx, cap);
            if (!nr) return -1;
            s->rx = nr; s->rxcap = cap;
        }
        memcpy(s->rx + s->rxlen, in, len); s->rxlen += len;
        if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) { handle(s, s->rx, s->rxlen); s->rxlen = 0; }
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: {
        if (!s->qn) return 0;
        cork(wsi, 1);
        for (int k = 0; k < BATCH && s->qn; k++) {
            msg *m = s->q[s->qh];
            size_t ml = m->len;
            int w = lws_write(wsi, m->buf + LWS_PRE, ml, LWS_WRITE_TEXT);
            s->qh = (s->qh + 1) % s->qcap; s->qn--; s->qbytes -= ml;
            msg_unref(m);
            if (w < (int)ml) { cork(wsi, 0); return -1; }
            if (lws_send_pipe_choked(wsi)) break;
        }
        cork(wsi, 0);
        if (s->qn) lws_callback_on_writable(wsi);
        return 0;
    }
    case LWS_CALLBACK_CLOSED:
        if (!s->established) return 0;
        while (s->nch) leave(s, s->ch[s->nch - 1]);
        while (s->qn) { msg_unref(s->q[s->qh]); s->qh = (s->qh + 1) % s->qcap; s->qn--; }
        free(s->q); free(s->rx); free(s->ch);
        s->established = 0;
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static void on_signal(uv_signal_t *h, int sig)
{
    uv_signal_stop(&sigterm); uv_signal_stop(&sigint);
    uv_close((uv_handle_t *)&sigterm, NULL); uv_close((uv_handle_t *)&sigint, NULL);
    lws_context_destroy(ctx);          /* first destroy, inside the loop */
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 3097;
    if (argc > 1 && (!strcmp(argv[1], "--help") || port <= 0 || port > 65535)) {
        fprintf(argc > 1 && !strcmp(argv[1], "--help") ? stdout : stderr, "usage: lwsbare [PORT]  (listens on 127.0.0.1, /cryptpad_websocket)\n");
        return argc > 1 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    static const struct lws_protocols protocols[] = {
        { "netflux", cb, sizeof(sess), 65536, 0, NULL, 0 },
        { NULL, NULL, 0, 0, 0, NULL, 0 },
    };
    lws_set_log_level(LLL_ERR, NULL);
    uv_loop_init(&loop);
    void *loops[] = { &loop, NULL };
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DISABLE_IPV6;
    info.foreign_loops = loops;
    info.pcontext = &ctx;
    ctx = lws_create_context(&info);
    if (!ctx) { fprintf(stderr, "lwsbare: cannot create the lws context\n"); return 1; }
    info.port = port;
    info.iface = "127.0.0.1";
    info.protocols = protocols;
    info.pt_serv_buf_size = 65536;
    if (!lws_create_vhost(ctx, &info)) { fprintf(stderr, "lwsbare: cannot listen on 127.0.0.1:%d\n", port); lws_context_destroy(ctx); return 1; }
    uv_signal_init(&loop, &sigterm); uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_init(&loop, &sigint); uv_signal_start(&sigint, on_signal, SIGINT);
    fprintf(stderr, "lwsbare: listening on 127.0.0.1:%d\n", port);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (ctx) lws_context_destroy(ctx); /* second destroy frees the context */
    uv_loop_close(&loop);
    return 0;
}
