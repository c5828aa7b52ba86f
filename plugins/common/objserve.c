/*
** objserve.c - serve a stored object over HTTP through the backend's
** obj_size and obj_read (no file path ever leaves a backend): one chunk read
** at a time, handed to http_respond_stream / http_write, so memory per
** request stays bounded whatever the object's size (docs/protocol/http.md §6).
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "objserve.h"

typedef struct serving {
    const cps_api *api;
    const cps_storage_backend *b;
    cps_http *req;
    char store[17], key[129];
    json_t *headers;
    char range[128];
    bool has_range;
    uint64_t off, left;            /* the bytes still to send */
    cps_counter *c_bytes, *c_aborted;
    void (*fail)(cps_http *, int, void *);
    void (*end)(void *);
    void *ud;
} serving;

static void finish(serving *s)
{
    if (s->end) s->end(s->ud);
    json_decref(s->headers);
    free(s);
}

static void failed(serving *s, int status)
{
    s->fail(s->req, status, s->ud);
    json_decref(s->headers);
    free(s);
}

/* Never a short body that looks complete: an object that fails, shrinks
** or disappears mid-way closes the connection (the client sees fewer bytes
** than Content-Length). */
static void abort_stream(serving *s)
{
    s->api->counter_add(s->c_aborted, 1);
    s->api->http_write(s->req, NULL, 0);
    finish(s);
}

static void more(cps_http *req, void *ud);

static void got(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    serving *s = ud;
    if (status != CPS_OK || len == 0 || len > s->left) { abort_stream(s); return; }
    s->api->counter_add(s->c_bytes, (int64_t)len);
    s->off += len;
    s->left -= len;
    bool last = s->left == 0;
    /* The write that completes the answer, or that finds the client gone
    ** (CPS_ECLOSED), releases the request: then we are done too. */
    int rc = s->api->http_write(s->req, data, len);
    if (rc || last) finish(s);
}

/* The host can send another chunk (or the client has gone, and the write
** that answers this call will say so). */
static void more(cps_http *req, void *ud)
{
    (void)req;
    serving *s = ud;
    size_t want = s->left < OBJSERVE_CHUNK ? (size_t)s->left : OBJSERVE_CHUNK;
    int rc = s->b->obj_read(s->b->state, s->store, s->key, s->off, want, got, s);
    if (rc) abort_stream(s);
}

static void sized(void *ud, int status, uint64_t size)
{
    serving *s = ud;
    if (status != CPS_OK) { failed(s, status); return; }
    uint64_t off = 0, len = size;
    int pr = s->has_range ? objserve_range(s->range, size, &off, &len) : 0;
    char cr[96];
    if (pr < 0) {
        json_object_set_new(s->headers, "Content-Range", json_string(objserve_content_range(cr, sizeof cr, 0, 0, size)));
        json_object_set_new(s->headers, "Content-Type", json_string("text/plain"));
        s->api->http_respond(s->req, 416, s->headers, "", 0);   /* answered even if it fails */
        finish(s);
        return;
    }
    if (pr > 0)
        json_object_set_new(s->headers, "Content-Range", json_string(objserve_content_range(cr, sizeof cr, off, len, size)));
    s->off = off;
    s->left = len;
    bool head = !strcmp(s->api->http_method(s->req), "HEAD");
    int rc = s->api->http_respond_stream(s->req, pr > 0 ? 206 : 200, s->headers, len, more, s);
    if (rc) { failed(s, rc); return; }
    if (head || len == 0) finish(s);     /* more() never comes */
}

int objserve(const cps_api *api, cps_plugin *self, const cps_storage_backend *b, cps_http *req,
             const objserve_opts *o)
{
    if (!api || !b || !req || !o || !o->store || !o->key || !o->fail) return CPS_EINVAL;
    if (!CPS_STORAGE_HAS(b, obj_size) || !b->obj_size || !b->obj_read) return CPS_EUNAVAILABLE;
    if (strlen(o->store) >= sizeof ((serving *)0)->store || strlen(o->key) >= sizeof ((serving *)0)->key)
        return CPS_EINVAL;
    serving *s = calloc(1, sizeof *s);
    if (!s) return CPS_ENOMEM;
    s->api = api;
    s->b = b;
    s->req = req;
    strcpy(s->store, o->store);
    strcpy(s->key, o->key);
    s->headers = o->headers ? json_copy(o->headers) : json_object();
    s->fail = o->fail;
    s->end = o->end;
    s->ud = o->ud;
    s->c_bytes = api->counter(self, "objserve_bytes_read_total");
    s->c_aborted = api->counter(self, "objserve_streams_aborted_total");
    /* Read while the request is in the handler: kept for the sized step. */
    const char *range = o->ranges ? api->http_header(req, "range") : NULL;
    if (range && strlen(range) < sizeof s->range) {
        s->has_range = true;
        strcpy(s->range, range);
    }
    int rc = s->headers ? b->obj_size(b->state, s->store, s->key, sized, s) : CPS_ENOMEM;
    if (rc) {
        json_decref(s->headers);
        free(s);
        return rc;
    }
    return CPS_OK;
}

int objserve_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len)
{
    char *end;
    if (!h || strncmp(h, "bytes=", 6) != 0) return 0;
    const char *p = h + 6;
    if (strchr(p, ',')) return 0;
    if (*p == '-') {                           /* the last n bytes */
        if (!isdigit((unsigned char)p[1])) return 0;
        unsigned long long n = strtoull(p + 1, &end, 10);
        if (*end) return 0;
        if (n == 0 || size == 0) return -1;
        if (n > size) n = size;
        *off = size - n;
        *len = n;
        return 1;
    }
    if (!isdigit((unsigned char)*p)) return 0;
    unsigned long long a = strtoull(p, &end, 10), b = UINT64_MAX;
    if (*end != '-') return 0;
    p = end + 1;
    if (*p) {
        if (!isdigit((unsigned char)*p)) return 0;
        b = strtoull(p, &end, 10);
        if (*end || b < a) return 0;
    }
    if (a >= size) return -1;
    if (b >= size) b = size - 1;
    *off = a;
    *len = b - a + 1;
    return 1;
}

const char *objserve_content_range(char *buf, size_t n, uint64_t off, uint64_t len, uint64_t size)
{
    if (len == 0) snprintf(buf, n, "bytes */%llu", (unsigned long long)size);
    else snprintf(buf, n, "bytes %llu-%llu/%llu", (unsigned long long)off, (unsigned long long)(off + len - 1),
                  (unsigned long long)size);
    return buf;
}
