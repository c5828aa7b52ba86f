/*
** fuzz_blob.c - libFuzzer target for the body of POST /upload-blob/ (the
** blob plugin's own parsing: JSON, chunk, attached signature, cookie shape)
** on a fake host table.  Half the inputs are wrapped in a correctly signed
** envelope so that the fuzzed chunk and cookie reach the storage query,
** whose answer (error or data) is fuzzed too; every request is answered once.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "fakehost.h"

extern const cps_plugin_def cps_plugin_entry;


static cps_http_fn upload;
static unsigned char pk[32], sk[64];
static int answer_err;                   /* what the fake storage node answers */

static int register_rpc(cps_plugin *p, const char *name, int kind, cps_rpc_fn fn, void *ud)
{
    (void)p; (void)name; (void)kind; (void)fn; (void)ud;
    return CPS_OK;
}
static int register_http(cps_plugin *p, const char *method, const char *prefix, size_t max_body,
                         cps_http_fn fn, void *ud)
{
    (void)p; (void)max_body; (void)ud;
    if (!strcmp(method, "POST") && !strcmp(prefix, "/upload-blob/")) upload = fn;
    return CPS_OK;
}
static const char *owner(cps_plugin *p, const char *role, const char *key, char *out, size_t n)
{
    (void)p; (void)role; (void)key;
    snprintf(out, n, "storage:0");
    return out;
}
/* The storage node answers at once: an error, or data with or without a cookie. */
static int query(cps_plugin *p, const char *node, const char *cmd, json_t *args, unsigned ms, cps_reply_fn cb, void *ud)
{
    (void)p; (void)node; (void)cmd; (void)ms;
    json_decref(args);
    json_t *data = answer_err == 1 ? json_pack("{s s}", "cookie", "0123") : answer_err == 2 ? json_null() : NULL;
    cb(ud, answer_err > 2 ? (answer_err & 1 ? CPS_ERR_INVALID_COOKIE : CPS_EIO) : 0, data);
    json_decref(data);
    return CPS_OK;
}
static bool node_is_local(cps_plugin *p, const char *node) { (void)p; (void)node; return true; }
static const char *http_path(cps_http *r) { (void)r; return "/upload-blob/"; }
static const char *http_method(cps_http *r) { (void)r; return "POST"; }
static const char *http_header(cps_http *r, const char *name) { (void)r; (void)name; return NULL; }

/* {"chunk": <text>, "sig": <signed cookie>, "edPublic": <key>}, the cookie
** and the chunk both taken from the input. */
static char *envelope(const uint8_t *data, size_t size)
{
    size_t cl = size < 48 ? size : 48;
    unsigned char sm[64 + 48];
    unsigned long long sl = 0;
    crypto_sign(sm, &sl, data, cl, sk);
    char sig[sizeof sm * 2], pub[64];
    sodium_bin2base64(sig, sizeof sig, sm, (size_t)sl, sodium_base64_VARIANT_ORIGINAL);
    sodium_bin2base64(pub, sizeof pub, pk, sizeof pk, sodium_base64_VARIANT_ORIGINAL);
    json_t *j = json_pack("{s s% s s s s}", "chunk", (const char *)data + cl, size - cl, "sig", sig, "edPublic", pub);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static cps_api api;
    if (!upload) {
        fakehost_fill(&api);
        api.register_rpc = register_rpc;
        api.register_http = register_http;
        api.owner = owner;
        api.query = query;
        api.node_is_local = node_is_local;
        api.http_path = http_path;
        api.http_method = http_method;
        api.http_header = http_header;
        void *state = NULL;
        if (cps_plugin_entry.init(&api, (cps_plugin *)&api, &state) != CPS_OK || !upload) abort();
        crypto_sign_keypair(pk, sk);
    }
    if (size < 1) return 0;
    answer_err = data[0] >> 1 & 7;
    char *wrapped = data[0] & 1 ? envelope(data + 1, size - 1) : NULL;
    struct cps_http req = { wrapped ? wrapped : (const char *)data + 1, wrapped ? strlen(wrapped) : size - 1, 0, 0, "/upload-blob/", NULL };
    upload(&req, NULL);
    free(wrapped);
    if (req.answers != 1) abort();       /* every request answered, once */
    return 0;
}
