/* cpsload: one websocket client connection on raw libuv TCP.  A load generator
 * needs no TLS, extensions or fragmentation on send, so the framing is the few
 * lines of RFC 6455 it uses: an upgrade request, masked text frames, and the
 * unmasked frames a server sends (text, continuation, ping, close). */
#include "cpsload.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

target g_targets[MAX_TARGETS]; int g_ntargets;
uint64_t g_bytes_in, g_frames_in;

/* One read buffer for the whole loop: reads are processed before the next
 * read, and only an incomplete tail is copied into the connection. */
static char *g_rbuf; static size_t g_rbuf_size = 256 * 1024;
void conn_set_read_buffer(size_t size) { g_rbuf_size = size; }

#define MAX_IN (64u * 1024 * 1024)   /* a partial message larger than this closes the connection */
#define MAX_PENDING_WRITES 4096       /* a server that stops reading: give up on the connection */

typedef struct { uv_write_t req; conn *c; size_t len; char data[]; } wreq;

static void on_write(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    w->c->pending_writes--;
    free(w);
}

static int send_raw(conn *c, const char *data, size_t len)
{
    if (c->state == 3) return -1;
    size_t done = 0;
    if (c->pending_writes == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (r > 0) done = (size_t)r;
        else if (r != UV_EAGAIN) return -1;
        if (done == len) return 0;
    }
    if (c->pending_writes >= MAX_PENDING_WRITES) return -1;
    wreq *w = malloc(sizeof *w + (len - done));
    if (!w) return -1;
    w->c = c; w->len = len - done;
    memcpy(w->data, data + done, len - done);
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) { free(w); return -1; }
    c->pending_writes++;
    return 0;
}

/* Masked with the all-zero key: the RFC wants the client to mask, servers
 * check only the mask bit, and a zero key spares an XOR pass over every byte. */
static int send_frame(conn *c, int opcode, const char *msg, size_t len)
{
    char stackbuf[4096];
    size_t hl = len < 126 ? 2 : (len < 65536 ? 4 : 10);
    size_t total = hl + 4 + len;
    char *f = total <= sizeof stackbuf ? stackbuf : malloc(total);
    if (!f) return -1;
    f[0] = (char)(0x80 | opcode);
    if (len < 126) f[1] = (char)(0x80 | len);
    else if (len < 65536) { f[1] = (char)(0x80 | 126); f[2] = (char)(len >> 8); f[3] = (char)len; }
    else { f[1] = (char)(0x80 | 127); for (int i = 0; i < 8; i++) f[2 + i] = (char)((uint64_t)len >> (56 - 8 * i)); }
    memset(f + hl, 0, 4);
    memcpy(f + hl + 4, msg, len);
    int r = send_raw(c, f, total);
    if (f != stackbuf) free(f);
    return r;
}

int conn_send_text(conn *c, const char *msg, size_t len)
{
    if (c->state != 2) return -1;
    return send_frame(c, 1, msg, len);
}

static void on_closed(uv_handle_t *h) { (void)h; }

static void fail(conn *c, const char *why)
{
    if (c->state == 3) return;
    c->state = 3;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
    if (c->on_close) c->on_close(c, why);
}

void conn_close(conn *c) { c->on_close = NULL; fail(c, "closed by us"); }

void conn_free_buffers(conn *c) { free(c->in); c->in = NULL; c->in_len = c->in_cap = 0; }

/* Consumes as many complete frames as `p` holds; returns bytes used or -1.
 * Messages arrive unfragmented from all three servers; a fragmented one is
 * still reassembled by keeping the whole sequence in the input until FIN. */
static long parse_frames(conn *c, const char *p, size_t len)
{
    size_t off = 0;
    while (off + 2 <= len) {
        const unsigned char *h = (const unsigned char *)p + off;
        int fin = h[0] & 0x80, op = h[0] & 0x0f;
        uint64_t pl = h[1] & 0x7f; size_t hl = 2;
        if (h[1] & 0x80) { fail(c, "masked frame from server"); return -1; }
        if (pl == 126) { if (off + 4 > len) break; pl = ((uint64_t)h[2] << 8) | h[3]; hl = 4; }
        else if (pl == 127) {
            if (off + 10 > len) break;
            pl = 0; for (int i = 0; i < 8; i++) pl = (pl << 8) | h[2 + i];
            hl = 10;
        }
        if (pl > MAX_IN) { fail(c, "frame too large"); return -1; }
        if (off + hl + pl > len) break;
        const char *data = p + off + hl;
        if (op == 1 && fin) {
            g_frames_in++;
            if (c->on_frame) c->on_frame(c, data, (size_t)pl);
            if (c->state == 3) return -1;
        } else if (op == 9) {
            send_frame(c, 10, data, (size_t)pl);
        } else if (op == 8) {
            fail(c, "server closed the websocket"); return -1;
        } else if (op == 0 || (op == 1 && !fin)) {
            fail(c, "fragmented frame (unsupported)"); return -1;
        }
        off += hl + (size_t)pl;
    }
    return (long)off;
}

static long parse_http(conn *c, const char *p, size_t len)
{
    for (size_t i = 3; i < len; i++) {
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') {
            if (len < 12 || memcmp(p + 9, "101", 3) != 0) { fail(c, "upgrade refused"); return -1; }
            c->state = 2;
            if (c->on_open) c->on_open(c);
            if (c->state == 3) return -1;
            long r = parse_frames(c, p + i + 1, len - i - 1);
            return r < 0 ? -1 : (long)(i + 1) + r;
        }
    }
    if (len > 8192) { fail(c, "overlong HTTP answer"); return -1; }
    return 0;
}

static void alloc_cb(uv_handle_t *h, size_t sug, uv_buf_t *b)
{
    if (!g_rbuf) g_rbuf = malloc(g_rbuf_size);
    *b = uv_buf_init(g_rbuf, g_rbuf ? (unsigned)g_rbuf_size : 0);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    conn *c = (conn *)s->data;
    if (n < 0) { fail(c, n == UV_EOF ? "EOF" : uv_strerror((int)n)); return; }
    if (n == 0) return;
    g_bytes_in += (uint64_t)n;
    const char *p = b->base; size_t len = (size_t)n;
    if (c->in_len) {   /* a tail is waiting: append and parse from the connection's buffer */
        if (c->in_len + len > c->in_cap) {
            size_t cap = c->in_cap ? c->in_cap : 4096;
            while (cap < c->in_len + len) cap *= 2;
            if (cap > MAX_IN + 16) { fail(c, "input too large"); return; }
            char *ni = realloc(c->in, cap);
            if (!ni) { fail(c, "out of memory"); return; }
            c->in = ni; c->in_cap = cap;
        }
        memcpy(c->in + c->in_len, p, len);
        c->in_len += len;
        p = c->in; len = c->in_len;
    }
    long used = c->state == 1 ? parse_http(c, p, len) : parse_frames(c, p, len);
    if (used < 0) return;
    size_t rest = len - (size_t)used;
    if (p == c->in) {
        if (rest) memmove(c->in, c->in + used, rest);
        c->in_len = rest;
        if (!rest && c->in_cap > 65536) { free(c->in); c->in = NULL; c->in_cap = 0; }
    } else if (rest) {
        if (rest > c->in_cap) {
            size_t cap = 4096; while (cap < rest) cap *= 2;
            char *ni = realloc(c->in, cap);
            if (!ni) { fail(c, "out of memory"); return; }
            c->in = ni; c->in_cap = cap;
        }
        memcpy(c->in, p + used, rest);
        c->in_len = rest;
    }
}

static void on_connect(uv_connect_t *req, int status)
{
    conn *c = (conn *)req->data;
    if (status < 0) { fail(c, uv_strerror(status)); return; }
    c->state = 1;
    uv_tcp_nodelay(&c->tcp, 1);
    char rq[512];
    int n = snprintf(rq, sizeof rq,
        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: Y3BzbG9hZC1jcHNsb2FkMQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        g_targets[c->target].path, g_targets[c->target].host, g_targets[c->target].port);
    if (send_raw(c, rq, (size_t)n) != 0) { fail(c, "cannot send upgrade"); return; }
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, read_cb);
}

int conn_start(uv_loop_t *loop, conn *c)
{
    struct sockaddr_storage sa;
    c->state = 0; c->in = NULL; c->in_len = c->in_cap = 0; c->pending_writes = 0; c->seq = 1;
    const target *t = &g_targets[c->target];
    if (uv_ip4_addr(t->host, t->port, (struct sockaddr_in *)&sa) != 0 &&
        uv_ip6_addr(t->host, t->port, (struct sockaddr_in6 *)&sa) != 0) return -1;
    if (uv_tcp_init(loop, &c->tcp) != 0) return -1;
    c->tcp.data = c; c->creq.data = c;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&sa, on_connect) != 0) {
        c->state = 3; uv_close((uv_handle_t *)&c->tcp, on_closed); return -1;
    }
    return 0;
}
