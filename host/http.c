/*
** http.c - HTTP requests other than the websocket upgrade: routes that
** plugins register by method and path prefix, bounded request bodies, and
** answers written from WRITEABLE (so a handler may answer later, from any
** loop callback).  File answers are read on the thread pool one chunk at a
** time, so a large file goes out in bounded memory.
*/
#include <uv.h>
#include <libwebsockets.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "host.h"

#define CHUNK (64 * 1024)
/* An answer's body may take as long as the client needs; only a client
** that takes nothing for this long is dropped.  lws otherwise ends the
** whole transaction after its 5 s content timeout, cutting any download
** that lasts longer (100 MB at 10 MB/s). */
#define SEND_IDLE_S 30
#define MAX_ROUTES 64

typedef struct route {
    char method[8];
    char prefix[128];
    size_t max_body;
    cps_http_fn fn;
    void *ud;
    cps_plugin *owner;
} route;

struct cps_http {
    struct lws *wsi;          /* NULL once the connection is gone */
    struct cps_http *prev, *next;   /* every live request (H.live) */
    char method[8];
    char *path, *query;
    json_t *headers_in;       /* cache of looked-up headers: name -> value */
    char *body;
    size_t body_len;
    size_t body_held;         /* counted in H.body_held until req_free */
    route *rt;
    int port;
    bool answered, in_handler, head;
    bool dispatched;          /* handed to the route's handler */
    /* the answer */
    int status;
    char *hdrs;               /* "name: value\r\n" lines */
    char *out;                /* body to send */
    size_t out_len, out_off;
    int fd;                   /* file answer, or -1 */
    uint64_t file_left;
    uint64_t file_off;
    unsigned char *chunk;     /* read from the file, waiting to go out */
    size_t chunk_len;
    bool reading, headers_sent;
    bool cut;                 /* the body cannot be completed: close, never end short */
    /* streamed answer (http_respond_stream) */
    bool streaming, more_asked;
    void (*more)(cps_http *, void *);
    void *more_ud;
    uint64_t stream_left;
    unsigned char *sbuf;      /* LWS_PRE + a chunk from the plugin */
    size_t slen;
};

static struct {
    route routes[MAX_ROUTES];
    int nroutes;
    cps_counter *c_requests;
    struct cps_http *live;    /* every request not yet freed */
    size_t body_held;         /* bytes reserved for request bodies, all requests */
} H;   /* the HTTP singleton */

/* All request bodies together may hold at most limits.http_body_total bytes
** (docs/operator-guide.md, Limits): each body is bounded by its route, but
** many connections announcing a body and never sending it would otherwise
** hold route limit x connections.  Past it a request gets 503 and is closed. */
#define HTTP_BODY_TOTAL_DEFAULT (64u << 20)

/* ---- routes ---- */

int cps_http_register(cps_plugin *p, const char *method, const char *prefix, size_t max_body,
                      cps_http_fn fn, void *ud)
{
    if (!method || !prefix || prefix[0] != '/' || !fn || strlen(method) >= 8 || strlen(prefix) >= 128)
        return CPS_EINVAL;
    for (int i = 0; i < H.nroutes; i++)
        if (!strcmp(H.routes[i].method, method) && !strcmp(H.routes[i].prefix, prefix)) {
            cps_log("http", CPS_LOG_ERROR, "HTTP route %s %s: registered by plugin '%s', refused for '%s'",
                    method, prefix, H.routes[i].owner ? H.routes[i].owner->name : "?", p ? p->name : "?");
            return CPS_EEXIST;
        }
    if (H.nroutes == MAX_ROUTES) return CPS_EBUSY;
    route *r = &H.routes[H.nroutes++];
    snprintf(r->method, sizeof r->method, "%s", method);
    snprintf(r->prefix, sizeof r->prefix, "%s", prefix);
    r->max_body = max_body;
    r->fn = fn;
    r->ud = ud;
    r->owner = p;
    if (!H.c_requests) H.c_requests = cps_metrics_counter("http_requests_total");
    return 0;
}

void cps_http_forget(cps_plugin *p)
{
    int j = 0;
    for (int i = 0; i < H.nroutes; i++)
        if (p && H.routes[i].owner != p) H.routes[j++] = H.routes[i];
    H.nroutes = j;
}

static route *match(const char *method, const char *path)
{
    route *best = NULL;
    size_t best_len = 0;
    for (int i = 0; i < H.nroutes; i++) {
        route *r = &H.routes[i];
        bool m = !strcmp(r->method, "*") || !strcmp(r->method, method) ||
                 (!strcmp(method, "HEAD") && !strcmp(r->method, "GET"));
        size_t n = strlen(r->prefix);
        if (m && strncmp(path, r->prefix, n) == 0 && n >= best_len) { best = r; best_len = n; }
    }
    return best;
}

/* ---- request accessors ---- */

const char *cps_http_method(cps_http *r) { return r ? r->method : ""; }
const char *cps_http_path(cps_http *r) { return r ? r->path : ""; }
const char *cps_http_query(cps_http *r) { return r && r->query ? r->query : ""; }
int cps_http_port(cps_http *r) { return r ? r->port : 0; }

const char *cps_http_body(cps_http *r, size_t *len)
{
    if (len) *len = r && r->body ? r->body_len : 0;
    return r && r->body ? r->body : "";
}

const char *cps_http_header(cps_http *r, const char *name)
{
    if (!r || !name) return NULL;
    json_t *v = json_object_get(r->headers_in, name);
    if (v) return json_string_value(v);
    if (!r->wsi) return NULL;
    char want[64], buf[4096];
    int n = snprintf(want, sizeof want, "%s:", name);
    if (n <= 0 || n >= (int)sizeof want) return NULL;
    for (char *c = want; *c; c++) *c = (char)tolower((unsigned char)*c);
    int got = -1;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        const unsigned char *ts = lws_token_to_string((enum lws_token_indexes)t);
        if (ts && !strcmp((const char *)ts, want)) {
            if (lws_hdr_total_length(r->wsi, (enum lws_token_indexes)t) <= 0) return NULL;   /* absent */
            got = lws_hdr_copy(r->wsi, buf, sizeof buf, (enum lws_token_indexes)t);
            break;
        }
    }
    if (got < 0) got = lws_hdr_custom_copy(r->wsi, buf, sizeof buf, want, n);
    if (got < 0) return NULL;
    json_object_set_new(r->headers_in, name, json_stringn(buf, (size_t)got));
    return json_string_value(json_object_get(r->headers_in, name));
}

/* ---- answering ---- */

static void req_free(cps_http *r)
{
    if (r->prev) r->prev->next = r->next; else if (H.live == r) H.live = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->fd >= 0) close(r->fd);
    json_decref(r->headers_in);
    free(r->path);
    free(r->query);
    free(r->body);
    H.body_held -= r->body_held;
    free(r->hdrs);
    free(r->out);
    free(r->chunk);
    free(r->sbuf);
    free(r);
}

static const char *status_text(int s)
{
    switch (s) {
    case 200: return "OK"; case 204: return "No Content"; case 206: return "Partial Content";
    case 301: return "Moved Permanently"; case 302: return "Found"; case 304: return "Not Modified";
    case 400: return "Bad Request"; case 401: return "Unauthorized"; case 403: return "Forbidden";
    case 404: return "Not Found"; case 405: return "Method Not Allowed"; case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable"; case 500: return "Internal Server Error";
    case 503: return "Service Unavailable"; default: return "";
    }
}

static int set_headers(cps_http *r, int status, json_t *headers)
{
    size_t cap = 256, len = 0;
    char *h = malloc(cap);
    if (!h) return CPS_ENOMEM;
    h[0] = 0;
    const char *k;
    json_t *v;
    json_object_foreach(headers, k, v) {
        const char *val = json_string_value(v);
        if (!val || strpbrk(k, "\r\n:") || strpbrk(val, "\r\n")) continue;   /* no header injection */
        size_t need = strlen(k) + strlen(val) + 5;
        if (len + need >= cap) {
            while (len + need >= cap) cap *= 2;
            char *n = realloc(h, cap);
            if (!n) { free(h); return CPS_ENOMEM; }
            h = n;
        }
        len += (size_t)sprintf(h + len, "%s: %s\r\n", k, val);
    }
    r->status = status;
    r->hdrs = h;
    return 0;
}

static void finish_answer(cps_http *r)
{
    r->answered = true;
    if (!r->wsi) { if (!r->in_handler) req_free(r); return; }
    lws_callback_on_writable(r->wsi);
}

/* The answer cannot be completed (the plugin aborted its stream, a file
** shrank): the connection is closed from the next WRITEABLE, at once.
** (lws's own kill timer waits while output is buffered, so the client
** would hang until a timeout instead of seeing the cut.) */
static void cut_answer(cps_http *r)
{
    r->cut = true;
    r->streaming = false;
    lws_set_timeout(r->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
    lws_callback_on_writable(r->wsi);
}

int cps_http_respond(cps_http *r, int status, json_t *headers, const char *body, size_t len)
{
    if (!r || r->answered) return CPS_EINVAL;
    int rc = set_headers(r, status, headers);
    if (!rc && len && !r->head) {
        r->out = malloc(len);
        if (!r->out) rc = CPS_ENOMEM; else memcpy(r->out, body, len);
    }
    r->out_len = len;   /* Content-Length also for HEAD */
    finish_answer(r);
    return rc;
}

int cps_http_respond_file(cps_http *r, int status, json_t *headers, const char *path,
                          uint64_t offset, uint64_t len)
{
    if (!r || r->answered || !path) return CPS_EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) close(fd);
        return CPS_ENOENT;
    }
    uint64_t size = (uint64_t)st.st_size;
    if (offset > size) offset = size;
    if (len > size - offset) len = size - offset;
    int rc = set_headers(r, status, headers);
    if (rc) { close(fd); return rc; }
    r->fd = fd;
    r->file_off = offset;
    r->file_left = len;
    r->out_len = (size_t)len;
    if (r->head) { close(fd); r->fd = -1; r->file_left = 0; }
    finish_answer(r);
    return 0;
}

int cps_http_respond_stream(cps_http *r, int status, json_t *headers, uint64_t len,
                            void (*more)(cps_http *, void *), void *ud)
{
    if (!r || r->answered || !more) return CPS_EINVAL;
    int rc = set_headers(r, status, headers);
    if (rc) return rc;
    r->out_len = (size_t)len;
    r->streaming = !r->head && len > 0;
    r->stream_left = len;
    r->more = more;
    r->more_ud = ud;
    finish_answer(r);
    return 0;
}

int cps_http_write(cps_http *r, const char *data, size_t n)
{
    if (!r || !r->streaming) return CPS_EINVAL;
    r->more_asked = false;
    if (!r->wsi) { req_free(r); return CPS_ECLOSED; }
    if (n == 0 || n > r->stream_left || !data) {    /* abort: never a short body */
        cut_answer(r);
        return n == 0 ? CPS_OK : CPS_EINVAL;
    }
    unsigned char *b = realloc(r->sbuf, LWS_PRE + n);
    if (!b) { cut_answer(r); return CPS_ENOMEM; }
    r->sbuf = b;
    memcpy(b + LWS_PRE, data, n);
    r->slen = n;
    lws_callback_on_writable(r->wsi);
    return CPS_OK;
}

/* ---- file chunks on the pool ---- */

static void read_chunk(void *ud)
{
    cps_http *r = ud;
    size_t want = r->file_left < CHUNK ? (size_t)r->file_left : CHUNK;
    ssize_t n = pread(r->fd, r->chunk + LWS_PRE, want, (off_t)r->file_off);
    r->chunk_len = n > 0 ? (size_t)n : 0;
}

static void chunk_ready(void *ud, int status)
{
    cps_http *r = ud;
    r->reading = false;
    if (!r->wsi || status != CPS_OK) { if (!r->wsi) req_free(r); return; }
    if (r->chunk_len == 0) { r->file_left = 0; cut_answer(r); return; }
    lws_callback_on_writable(r->wsi);
}

/* ---- the lws side (called from server.c) ---- */

static int method_of(struct lws *wsi, char *m, size_t n)
{
    static const struct { int tok; const char *name; } ms[] = {
        { WSI_TOKEN_GET_URI, "GET" }, { WSI_TOKEN_POST_URI, "POST" }, { WSI_TOKEN_HEAD_URI, "HEAD" },
        { WSI_TOKEN_OPTIONS_URI, "OPTIONS" }, { WSI_TOKEN_PUT_URI, "PUT" }, { WSI_TOKEN_DELETE_URI, "DELETE" },
        { WSI_TOKEN_PATCH_URI, "PATCH" },
    };
    for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++)
        if (lws_hdr_total_length(wsi, (enum lws_token_indexes)ms[i].tok) > 0) {
            snprintf(m, n, "%s", ms[i].name);
            return ms[i].tok;
        }
    return -1;
}

static int plain(struct lws *wsi, int status)
{
    return lws_return_http_status(wsi, (unsigned)status, NULL) || lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* An answer (lws writes a small HTML body with the status) after which the
** connection closes: the bytes that follow the headers cannot be framed, so
** reading them as the next request would desync (docs/protocol/http.md §12). */
static int refuse_and_close(struct lws *wsi, int status)
{
    lws_return_http_status(wsi, (unsigned)status, NULL);
    return -1;
}

/* Request framing (docs/protocol/http.md §12, RFC 9112 §6.1, §6.3): lws 4.1
** frames a request body by Content-Length only, so Transfer-Encoding is
** refused: with a Content-Length, 400 (the two disagree on where the body
** ends); alone (chunked), 411 Length Required.  A Content-Length that is not
** one decimal number (a sign, junk, two headers "2,30") is 400: we and lws
** could read different lengths.  Returns the status, or 0.  Apart from
** lws, so the fuzz target (tests/fuzz/fuzz_http.c) can call it. */
int cps_http_framing(bool te, const char *cl, int cl_len)
{
    if (te) return cl_len > 0 ? 400 : 411;
    if (cl_len <= 0) return 0;
    if (!cl || cl_len > 19) return 400;
    for (int i = 0; i < cl_len; i++) if (cl[i] < '0' || cl[i] > '9') return 400;
    return 0;
}

static int framing_error(struct lws *wsi)
{
    bool te = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    int cl_len = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    char cl[32];
    bool copied = cl_len > 0 && cl_len <= 19 &&
                  lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) == cl_len;
    return cps_http_framing(te, copied ? cl : NULL, cl_len);
}

/* 414 for a request target (path and query) over CPS_HTTP_MAX_TARGET, 431
** for headers over CPS_HTTP_MAX_HEADERS (RFC 9110 §15.5.15, RFC 6585 §5), or
** 0.  The headers lws kept are counted, name and value; those it has no
** token for count only if lws keeps them (the arena still bounds the total). */
int cps_http_head_status(size_t target_len, size_t headers_len)
{
    if (target_len > CPS_HTTP_MAX_TARGET) return 414;
    if (headers_len > CPS_HTTP_MAX_HEADERS) return 431;
    return 0;
}

static int head_error(struct lws *wsi, int tok)
{
    size_t target = (size_t)lws_hdr_total_length(wsi, (enum lws_token_indexes)tok) +
                    (size_t)lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    size_t headers = 0;
    for (int t = 0; t < WSI_TOKEN_COUNT; t++) {
        int n = lws_hdr_total_length(wsi, (enum lws_token_indexes)t);
        const unsigned char *name = lws_token_to_string((enum lws_token_indexes)t);
        if (n > 0 && t != tok && t != WSI_TOKEN_HTTP_URI_ARGS)
            headers += (size_t)n + (name ? strlen((const char *)name) : 0);
    }
    return cps_http_head_status(target, headers);
}

static void dispatch(cps_http *r)
{
    cps_metrics_add(H.c_requests, 1);
    r->dispatched = true;
    r->in_handler = true;     /* the request is not freed under the handler */
    int rc = r->rt->fn(r, r->rt->ud);
    if (!r->answered && rc < 0) {
        int st = rc == CPS_EINVAL ? 400 : rc == CPS_ENOENT ? 404 : rc == CPS_EBUSY ? 503 : 500;
        const char *text = status_text(st);
        cps_http_respond(r, st, NULL, text, strlen(text));
    } else if (!r->answered && rc != CPS_ASYNC) {
        cps_log("http", CPS_LOG_WARN, "%s %s: the handler returned without an answer", r->method, r->path);
        cps_http_respond(r, 500, NULL, "", 0);
    }
    r->in_handler = false;
    if (r->answered && !r->wsi) req_free(r);
}

/* Headers are in: route the request.  Returns nonzero to close. */
int cps_http_begin(struct lws *wsi, cps_http **slot, const char *uri)
{
    char method[8];
    int tok = method_of(wsi, method, sizeof method);
    if (tok < 0) return plain(wsi, 405);
    int bad = head_error(wsi, tok);
    if (!bad) bad = framing_error(wsi);
    if (bad) return refuse_and_close(wsi, bad);
    /* lws has decoded %xx already: a %00 would cut the path short */
    if (lws_hdr_total_length(wsi, (enum lws_token_indexes)tok) > (int)strlen(uri)) return plain(wsi, 400);
    route *rt = match(method, uri);
    if (!rt) return plain(wsi, 404);
    cps_http *r = calloc(1, sizeof *r);
    if (!r) return -1;
    r->next = H.live;         /* on the live list until req_free */
    if (H.live) H.live->prev = r;
    H.live = r;
    r->wsi = wsi;
    r->fd = -1;
    r->rt = rt;
    snprintf(r->method, sizeof r->method, "%s", method);
    r->head = !strcmp(method, "HEAD");
    r->path = strdup(uri);
    r->headers_in = json_object();
    r->port = lws_get_vhost_listen_port(lws_get_vhost(wsi));
    /* lws keeps each argument as a fragment: join them back with '&' */
    int qn = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (qn > 0 && (r->query = malloc((size_t)qn * 2 + 2))) {
        size_t at = 0;
        r->query[0] = 0;
        for (int frag = 0; frag < 64; frag++) {
            int n = lws_hdr_copy_fragment(wsi, r->query + at, qn + 1, WSI_TOKEN_HTTP_URI_ARGS, frag);
            if (n <= 0) break;
            at += (size_t)n;
            r->query[at++] = '&';
            r->query[at] = 0;
        }
        if (at) r->query[at - 1] = 0;
    }
    *slot = r;
    bool has_body = !strcmp(method, "POST") || !strcmp(method, "PUT") || !strcmp(method, "PATCH");
    if (has_body) {
        const char *cl = cps_http_header(r, "content-length");   /* digits: framing_error */
        unsigned long long n = cl ? strtoull(cl, NULL, 10) : 0;
        if (n > rt->max_body) { *slot = NULL; req_free(r); return plain(wsi, 413); }
        size_t total = (size_t)cps_config_int("limits.http_body_total", HTTP_BODY_TOTAL_DEFAULT);
        if (n + 1 > total || H.body_held > total - (n + 1)) {
            *slot = NULL;
            req_free(r);
            cps_log("http", CPS_LOG_INFO, "request body refused: limits.http_body_total (%zu bytes) held", total);
            return refuse_and_close(wsi, 503);
        }
        r->body_held = n + 1;
        H.body_held += r->body_held;
        r->body = malloc(n + 1);
        if (!r->body) { *slot = NULL; req_free(r); return -1; }
        r->body[0] = 0;
        /* No Content-Length: an empty body (RFC 9112 §6.3), and lws would
        ** never signal its end. */
        if (cl) return 0;   /* wait for the body */
    }
    dispatch(r);
    return 0;
}

int cps_http_body_chunk(cps_http *r, const void *in, size_t len)
{
    if (!r || !r->body || !len) return 0;
    if (r->dispatched) return -1;                     /* a body after the handler ran */
    /* The buffer was reserved at the announced Content-Length (counted in
    ** limits.http_body_total): more than that is refused, never grown into. */
    if (r->body_len + len + 1 > r->body_held) return -1;
    memcpy(r->body + r->body_len, in, len);
    r->body_len += len;
    r->body[r->body_len] = 0;
    return 0;
}

void cps_http_body_done(cps_http *r)
{
    if (r && !r->dispatched && !r->answered) dispatch(r);
}

/* Bytes went out: the client gets another SEND_IDLE_S to take the next. */
static void progress(struct lws *wsi)
{
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, SEND_IDLE_S);
}

/* WRITEABLE: headers, then the body or file chunks. */
int cps_http_writable(struct lws *wsi, cps_http **slot)
{
    cps_http *r = *slot;
    if (!r || !r->answered) return 0;
    if (r->cut) return -1;
    if (!r->headers_sent) {
        size_t hl = r->hdrs ? strlen(r->hdrs) : 0;
        unsigned char *buf = malloc(LWS_PRE + 1024 + hl);
        if (!buf) return -1;
        unsigned char *p = buf + LWS_PRE, *end = p + 1024 + hl;
        if (lws_add_http_header_status(wsi, (unsigned)r->status, &p, end) ||
            lws_add_http_header_content_length(wsi, r->out_len, &p, end)) { free(buf); return -1; }
        const char *h = r->hdrs;
        while (h && *h) {
            const char *colon = strchr(h, ':'), *eol = strstr(h, "\r\n");
            if (!colon || !eol) break;
            char name[128];
            snprintf(name, sizeof name, "%.*s:", (int)(colon - h), h);
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)name, (const unsigned char *)colon + 2,
                                            (int)(eol - colon - 2), &p, end)) { free(buf); return -1; }
            h = eol + 2;
        }
        if (lws_finalize_http_header(wsi, &p, end)) { free(buf); return -1; }
        int w = lws_write(wsi, buf + LWS_PRE, (size_t)(p - (buf + LWS_PRE)), LWS_WRITE_HTTP_HEADERS);
        free(buf);
        if (w < 0) return -1;
        progress(wsi);
        r->headers_sent = true;
        if (r->head || (r->fd < 0 && r->out_len == 0) || (r->fd >= 0 && r->file_left == 0)) goto done;
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (r->more) {                             /* a streamed answer */
        if (!r->streaming) return -1;          /* aborted by the plugin */
        if (r->slen) {
            size_t n = r->slen;
            bool last = n == r->stream_left;
            int w = lws_write(wsi, r->sbuf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
            r->slen = 0;
            if (w < (int)n) return -1;
            progress(wsi);
            r->stream_left -= n;
            if (last) goto done;
        }
        if (!r->more_asked) {
            r->more_asked = true;
            r->more(r, r->more_ud);            /* answered by http_write */
        }
        return 0;
    }
    if (r->fd >= 0) {
        if (r->reading) return 0;
        if (r->chunk_len) {
            size_t n = r->chunk_len;
            bool last = n >= r->file_left;
            int w = lws_write(wsi, r->chunk + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
            if (w < (int)n) return -1;
            progress(wsi);
            r->file_off += n;
            r->file_left -= n;
            r->chunk_len = 0;
            if (last) goto done;
        }
        if (!r->chunk && !(r->chunk = malloc(LWS_PRE + CHUNK))) return -1;
        r->reading = true;
        if (cps_work(NULL, read_chunk, chunk_ready, r)) { r->reading = false; return -1; }
        return 0;
    }
    {
        size_t left = r->out_len - r->out_off, n = left < CHUNK ? left : CHUNK;
        unsigned char *b = malloc(LWS_PRE + n);
        if (!b) return -1;
        memcpy(b + LWS_PRE, r->out + r->out_off, n);
        int w = lws_write(wsi, b + LWS_PRE, n, n == left ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP);
        free(b);
        if (w < (int)n) return -1;
        progress(wsi);
        r->out_off += n;
        if (r->out_off < r->out_len) { lws_callback_on_writable(wsi); return 0; }
    }
done:
    *slot = NULL;
    req_free(r);
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* The connection is gone: the request lives on until it is answered (and
** until a pool read in flight comes back). */
void cps_http_closed(cps_http **slot)
{
    cps_http *r = *slot;
    if (!r) return;
    *slot = NULL;
    r->wsi = NULL;
    if (r->reading || r->in_handler) return;
    if (r->streaming) {
        /* The plugin holds state for this stream until an http_write
        ** releases it: a more() already asked is answered by that write;
        ** otherwise ask once now, so that the write finds the client gone
        ** (CPS_ECLOSED) and the plugin stops and frees its side. */
        if (!r->more_asked) {
            r->more_asked = true;
            r->more(r, r->more_ud);
        }
        return;                                  /* freed by the plugin's http_write */
    }
    if (r->answered || r->rt == NULL) { req_free(r); return; }
    /* Still waiting for its body: no handler has it, nothing will answer. */
    if (!r->dispatched) { req_free(r); return; }
    /* not answered yet: freed by the answer */
}

/* After the last lws_context_destroy, when no callback can come any more: a
** request whose connection lws tore down without telling us (a file read was
** in flight at shutdown) can never be answered, so free it here. */
void cps_http_shutdown(void)
{
    while (H.live) req_free(H.live);
}
