/*
** fuzz_auth.c - libFuzzer target: any bytes as the body of POST /api/auth
** go through the auth plugin's own route (JSON, command, key, proof and
** block checks) and are answered, without a crash, a leak or a request
** left unanswered.  The plugin runs on a fake host table: no storage node,
** so a request that passes the checks ends at "Service unavailable".
** Inputs whose first byte is odd are a GET /block/ instead: the path and
** the Authorization header (a bearer token) come from the input, the block
** lives on a remote node whose query fails (docs/protocol/http.md, login
** blocks).
*/
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "fakehost.h"

extern const cps_plugin_def cps_plugin_entry;

struct cps_timer { int unused; };

static cps_http_fn route, block_route;
static bool remote_block;   /* owner() names a remote node: the block request's query runs */
static struct cps_timer timer;

static int register_http(cps_plugin *p, const char *method, const char *prefix, size_t max_body,
                         cps_http_fn fn, void *ud)
{
    (void)p; (void)max_body; (void)ud;
    if (!strcmp(method, "POST") && !strcmp(prefix, "/api/auth")) route = fn;
    if (!strcmp(method, "GET") && !strcmp(prefix, "/block/")) block_route = fn;
    return CPS_OK;
}
static cps_timer *timer_start(cps_plugin *p, uint64_t a, uint64_t r, cps_timer_fn fn, void *ud)
{
    (void)p; (void)a; (void)r; (void)fn; (void)ud;
    return &timer;                       /* never fires */
}
static void timer_stop(cps_timer *t) { (void)t; }
static const char *owner(cps_plugin *p, const char *role, const char *key, char *out, size_t n)
{
    (void)p; (void)role; (void)key;
    if (!remote_block) return NULL;
    snprintf(out, n, "storage:1");
    return out;
}
static const cps_storage_backend *storage(cps_plugin *p, const char *name) { (void)p; (void)name; return NULL; }
static int query(cps_plugin *p, const char *node, const char *cmd, json_t *args, unsigned ms, cps_reply_fn cb, void *ud)
{
    (void)p; (void)node; (void)cmd; (void)ms; (void)cb; (void)ud;
    json_decref(args);
    return CPS_ENOENT;
}
static int send_(cps_plugin *p, const char *node, const char *cmd, json_t *args)
{
    (void)p; (void)node; (void)cmd;
    json_decref(args);
    return CPS_ENOENT;
}
static bool node_is_local(cps_plugin *p, const char *node) { (void)p; (void)node; return !remote_block; }
static const char *http_path(cps_http *r) { return r->path; }
static const char *http_header(cps_http *r, const char *name)
{
    return !strcmp(name, "authorization") ? r->auth : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cps_api api;
    if (!route) {
        fakehost_fill(&api);
        api.register_http = register_http;
        api.timer_start = timer_start;
        api.timer_stop = timer_stop;
        api.owner = owner;
        api.storage = storage;
        api.query = query;
        api.send = send_;
        api.node_is_local = node_is_local;
        api.http_path = http_path;
        api.http_header = http_header;
        void *state = NULL;
        if (cps_plugin_entry.init(&api, (cps_plugin *)&api, &state) != CPS_OK || !route) abort();
    }
    if (size == 0 || !(data[0] & 1)) {
        struct cps_http req = { (const char *)data, size, 0, 0, "/api/auth", NULL };
        route(&req, NULL);
        if (req.answers != 1) abort();   /* every request answered, once */
        return 0;
    }
    if (!block_route) abort();
    /* GET /block/: with bit 1 set the path is a well-formed one (so the
    ** fuzzer spends its time on the header), else it is the input up to a
    ** newline; the Authorization header is the rest, as the host hands it
    ** over (a C string). */
    static const char key[] = "Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg=";
    const char *rest = (const char *)data + 1;
    size_t rlen = size - 1;
    char path[256], *auth;
    if (data[0] & 2) {
        snprintf(path, sizeof path, "/block/%.2s/%s", key, key);
        auth = strndup(rest, rlen);
    } else {
        const char *nl = memchr(rest, '\n', rlen);
        size_t plen = nl ? (size_t)(nl - rest) : rlen;
        snprintf(path, sizeof path, "/block/%.*s", (int)(plen < 200 ? plen : 200), rest);
        auth = nl ? strndup(nl + 1, rlen - plen - 1) : NULL;
    }
    remote_block = true;
    struct cps_http req = { NULL, 0, 0, 0, path, auth };
    int rc = block_route(&req, NULL);
    remote_block = false;
    if (rc != CPS_OK && rc != CPS_ASYNC) abort();   /* the route answers its own errors */
    if (req.answers != 1) abort();
    free(auth);
    return 0;
}
