/*
** blob.c - encrypted file uploads and downloads (spec docs/protocol/rpc.md 5, 6, 8; docs/protocol/http.md
** 6, 8): the RPC commands UPLOAD_STATUS, UPLOAD, UPLOAD_CANCEL,
** UPLOAD_COMPLETE and OWNED_UPLOAD_COMPLETE, forwarded to the storage node
** owning the user's key (stage.c); POST /upload-blob/ (HTTP chunks signed
** over an upload cookie); GET, HEAD and OPTIONS /blob/<xx>/<id> streamed
** from the storage backend (objserve) in bounded memory, with single byte
** ranges.
*/
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "blob.h"
#include "conf.h"
#include "objserve.h"
#include "text.h"

#define UPLOAD_MAX_BODY (500 * 1024)     /* docs/protocol/http.md 8: body <= 500 kB (express's "500kb") */
#define DEFAULT_MAX_UPLOAD 20971520      /* docs/protocol/rpc.md 7.3: maxUploadSize, 20 MiB */
#define DEFAULT_LIMIT 52428800           /* defaultStorageLimit, 50 MiB */

struct blob_state BL;

/* ---- the RPC half: runs where RPC is dispatched -------------------------- */

static void forwarded(void *ud, int error, json_t *data)
{
    cps_rpc *rpc = ud;
    if (error) API->rpc_error(rpc, error);
    else API->rpc_reply(rpc, data && !json_is_null(data) ? json_incref(data) : NULL);
}

/* Staging is per user key (docs/protocol/rpc.md 8): every upload command goes to the
** storage node owning the caller's safe key.  Steals args. */
static int to_stage(cps_rpc *rpc, const char *cmd, json_t *args)
{
    char unsafe[IDS_KEY_LEN + 1], safe[IDS_KEY_LEN + 1], node[64];
    if (!args) return CPS_ENOMEM;
    if (!ids_key_norm(API->rpc_key(rpc), unsafe, safe)) {
        json_decref(args);
        API->rpc_error(rpc, CPS_ERR_INVALID_SAFEKEY);
        return CPS_OK;
    }
    if (!API->owner(BL.self, "storage", safe, node, sizeof node)) { json_decref(args); return CPS_EIO; }
    json_object_set_new(args, "key", json_string(unsafe));
    int rc = API->query(BL.self, node, cmd, args, 0, forwarded, rpc);
    return rc ? rc : CPS_ASYNC;
}

static int rpc_status(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    return to_stage(rpc, "BLOB_STATUS", json_pack("{s O?}", "size", json_object_get(args, "size")));
}

static int rpc_upload(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    return to_stage(rpc, "BLOB_UPLOAD", json_pack("{s O?}", "chunk", json_object_get(args, "chunk")));
}

static int rpc_cancel(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    /* {id, size}; older clients send the bare size */
    json_t *size = json_is_number(args) ? args : json_object_get(args, "size");
    return to_stage(rpc, "BLOB_CANCEL", json_pack("{s O?}", "size", size));
}

static int rpc_complete(cps_rpc *rpc, json_t *args, void *ud)
{
    bool owned = ud != NULL;
    const char *id = json_string_value(args);
    if (!ids_is_blob(id)) { API->rpc_error(rpc, owned ? CPS_ERR_EINVAL_ID : CPS_ERR_INVALID_ID); return CPS_OK; }
    return to_stage(rpc, "BLOB_COMPLETE", json_pack("{s s s b}", "id", id, "owned", owned));
}

/* ---- HTTP: common headers ------------------------------------------------ */

/* docs/protocol/http.md 4.1: sandboxed iframes read blobs cross-origin.  "*" with
** embedding enabled, else the permitted embedders, else the sandbox origin
** (the shared `instance` section); "*" when none is configured. */
static const char *allowed_origin(void)
{
    if (json_is_true(API->config_get(BL.self, "instance.enable_embedding"))) return "*";
    json_t *v = API->config_get(BL.self, "instance.permitted_embedders");
    if (!json_is_string(v) || !json_string_length(v)) v = API->config_get(BL.self, "instance.sandbox_origin");
    return json_is_string(v) && json_string_length(v) ? json_string_value(v) : "*";
}

static json_t *base_headers(const char *type)
{
    return json_pack("{s s s s s s s s}", "Content-Type", type, "Access-Control-Allow-Origin", allowed_origin(),
                     "Cross-Origin-Resource-Policy", "cross-origin", "X-Content-Type-Options", "nosniff");
}

/* Steals body. */
static int respond_json(cps_http *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    json_t *h = base_headers("application/json");
    int rc = API->http_respond(req, status, h, text ? text : "{}", text ? strlen(text) : 2);
    json_decref(h);
    free(text);
    return rc;
}

static int not_found(cps_http *req)
{
    json_t *h = base_headers("text/plain");
    API->http_respond(req, 404, h, "Not Found", 9);
    json_decref(h);
    return CPS_OK;
}

/* CORS preflight (docs/protocol/http.md 6, 8). */
static int preflight(cps_http *req, const char *methods)
{
    json_t *h = base_headers("application/octet-stream; charset=utf-8");
    json_object_set_new(h, "Access-Control-Allow-Methods", json_string(methods));
    json_object_set_new(h, "Access-Control-Allow-Headers",
                        json_string("DNT,X-CustomHeader,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,"
                                    "Cache-Control,Content-Type,Content-Range,Range,Access-Control-Allow-Origin"));
    json_object_set_new(h, "Access-Control-Max-Age", json_string("1728000"));
    API->http_respond(req, 204, h, "", 0);
    json_decref(h);
    return CPS_OK;
}

static int blob_options(cps_http *req, void *ud) { (void)ud; return preflight(req, "GET, OPTIONS"); }
static int upload_options(cps_http *req, void *ud) { (void)ud; return preflight(req, "POST, OPTIONS"); }

/* ---- POST /upload-blob/<xx>/<id> (docs/protocol/rpc.md 8.1 step 4) --------------------- */

static void chunk_done(void *ud, int error, json_t *data)
{
    cps_http *req = ud;
    if (error == CPS_ERR_INVALID_COOKIE) respond_json(req, 403, json_pack("{s s}", "error", API->errname(error)));
    else if (error) respond_json(req, 500, json_pack("{s s}", "error", API->errname(error)));
    else respond_json(req, 200, json_pack("{s O?}", "cookie", json_object_get(data, "cookie")));
}

static int http_upload(cps_http *req, void *ud)
{
    (void)ud;
    size_t len;
    const char *body = API->http_body(req, &len);
    json_t *j = json_loadb(body, len, 0, NULL);
    if (!j) return respond_json(req, 400, json_pack("{s s}", "error", "INVALID_JSON"));
    json_t *chunk = json_object_get(j, "chunk");
    const char *sig = json_string_value(json_object_get(j, "sig"));
    const char *pub = json_string_value(json_object_get(j, "edPublic"));
    if (!json_is_string(chunk)) {
        json_decref(j);
        return respond_json(req, 500, json_pack("{s s}", "error", "EINVAL"));
    }
    /* An attached signature: 64 bytes of signature, then the cookie text.
    ** One verification of a short message takes microseconds: done here. */
    unsigned char sm[64 + 128], msg[sizeof sm], pk[40];
    unsigned long long mlen = 0;
    size_t sl = sig ? b64_decode_lenient(sig, strnlen(sig, 512), sm, sizeof sm) : 0;
    size_t kl = pub ? b64_decode_lenient(pub, strnlen(pub, 128), pk, sizeof pk) : 0;
    if (!sig || !pub || strlen(sig) > 512 || strlen(pub) > 60 || sl == (size_t)-1 || sl < 64 || kl != 32 ||
        crypto_sign_open(msg, &mlen, sm, sl, pk) != 0) {
        json_decref(j);
        return respond_json(req, 403, json_pack("{s s}", "error", "INVALID_KEY"));
    }
    char cookie[COOKIE_LEN + 1];
    bool shape = mlen == COOKIE_LEN;
    for (unsigned long long i = 0; shape && i < mlen; i++) shape = isxdigit(msg[i]) != 0;
    if (!shape) {
        json_decref(j);
        return respond_json(req, 403, json_pack("{s s}", "error", "INVALID_COOKIE"));
    }
    memcpy(cookie, msg, COOKIE_LEN);
    cookie[COOKIE_LEN] = 0;
    char unsafe[IDS_KEY_LEN + 1], safe[IDS_KEY_LEN + 1], node[64];
    b64_encode(pk, IDS_KEY_BYTES, unsafe, sizeof unsafe);
    ids_safe_key(unsafe, safe);
    json_t *q = json_pack("{s s s s s O}", "key", unsafe, "cookie", cookie, "chunk", chunk);
    json_decref(j);
    if (!q || !API->owner(BL.self, "storage", safe, node, sizeof node)) {
        json_decref(q);
        return respond_json(req, 500, json_pack("{s s}", "error", "EIO"));
    }
    int rc = API->query(BL.self, node, "BLOB_HTTP_CHUNK", q, 0, chunk_done, req);
    if (rc) return respond_json(req, 500, json_pack("{s s}", "error", API->errname(rc)));
    return CPS_ASYNC;
}

/* ---- GET / HEAD /blob/<xx>/<id> (docs/protocol/http.md 6) ------------------------------ */

/* The headers of a blob download (docs/protocol/http.md §6). */
static json_t *download_headers(void)
{
    json_t *h = base_headers("application/octet-stream");
    json_t *cc = json_object_get(API->config(BL.self), "cache_control");
    json_object_set_new(h, "Accept-Ranges", json_string("bytes"));
    json_object_set_new(h, "Cache-Control", json_string(json_is_string(cc) ? json_string_value(cc)
                                                                          : "public, max-age=31536000"));
    json_object_set_new(h, "Access-Control-Allow-Headers", json_string("Content-Length"));
    json_object_set_new(h, "Access-Control-Expose-Headers", json_string("Content-Length"));
    return h;
}

/* The blob cannot be served (it is missing, or the backend failed) and
** nothing was answered yet. */
static void blob_fail(cps_http *req, int status, void *ud)
{
    (void)ud;
    if (status == CPS_ENOENT) { not_found(req); return; }
    respond_json(req, status == CPS_ECANCELED ? 503 : 500, json_pack("{s s}", "error", API->errname(status)));
}

/* ---- serving a blob this process does not hold: from its storage node ---- */

#define FWD_CHUNK (256 * 1024)

typedef struct remote {
    cps_http *req;
    char id[IDS_BLOB_LEN + 1];
    char node[64];
    char range[128];
    bool has_range;
    uint64_t off, left;
    unsigned char *buf;
} remote;

static void remote_free(remote *f) { free(f->buf); free(f); }

static void remote_more(cps_http *req, void *ud);

static void remote_chunk(void *ud, int error, json_t *data)
{
    remote *f = ud;
    const char *b64 = json_string_value(json_object_get(data, "data"));
    size_t n = 0;
    if (!error && b64 && f->buf &&
        (n = (size_t)b64_decode(b64, strlen(b64), f->buf, FWD_CHUNK)) != (size_t)-1 &&
        n > 0 && n <= f->left) {
        f->off += n;
        f->left -= n;
        bool last = f->left == 0;
        int rc = API->http_write(f->req, (const char *)f->buf, n);
        if (rc || last) remote_free(f);          /* released with the request */
        return;
    }
    API->http_write(f->req, NULL, 0);            /* the node failed mid-way: abort */
    remote_free(f);
}

static void remote_more(cps_http *req, void *ud)
{
    (void)req;
    remote *f = ud;
    uint64_t want = f->left < FWD_CHUNK ? f->left : FWD_CHUNK;
    int rc = API->query(BL.self, f->node, "BLOB_READ",
                        json_pack("{s s s I s I}", "id", f->id, "offset", (json_int_t)f->off, "max", (json_int_t)want),
                        0, remote_chunk, f);
    if (rc) remote_chunk(f, rc, NULL);   /* refused: abort the stream now */
}

static void remote_sized(void *ud, int error, json_t *data)
{
    remote *f = ud;
    cps_http *req = f->req;
    json_t *sz = json_object_get(data, "size");
    if (error || !json_is_integer(sz)) {
        if (error == CPS_ENOENT) not_found(req);
        else respond_json(req, 503, json_pack("{s s}", "error", API->errname(error ? error : CPS_EIO)));
        remote_free(f);
        return;
    }
    uint64_t size = (uint64_t)json_integer_value(sz), off = 0, len = size;
    json_t *h = download_headers();
    int pr = f->has_range ? objserve_range(f->range, size, &off, &len) : 0;
    char cr[96];
    if (pr < 0) {
        json_object_set_new(h, "Content-Range", json_string(objserve_content_range(cr, sizeof cr, 0, 0, size)));
        json_object_set_new(h, "Content-Type", json_string("text/plain"));
        API->http_respond(req, 416, h, "", 0);
        json_decref(h);
        remote_free(f);
        return;
    }
    if (pr > 0) json_object_set_new(h, "Content-Range", json_string(objserve_content_range(cr, sizeof cr, off, len, size)));
    f->off = off;
    f->left = len;
    f->buf = malloc(FWD_CHUNK);
    bool head = !strcmp(API->http_method(req), "HEAD");
    int rc = f->buf ? API->http_respond_stream(req, pr > 0 ? 206 : 200, h, len, remote_more, f) : CPS_ENOMEM;
    json_decref(h);
    if (rc) respond_json(req, 500, json_pack("{s s}", "error", API->errname(rc)));
    if (rc || head || len == 0) remote_free(f);   /* more() never comes */
}

static int forward_blob(cps_http *req, const char *id, const char *node)
{
    remote *f = calloc(1, sizeof *f);
    if (!f) return CPS_ENOMEM;
    f->req = req;
    memcpy(f->id, id, IDS_BLOB_LEN + 1);
    snprintf(f->node, sizeof f->node, "%s", node);
    const char *range = API->http_header(req, "range");
    if (range && strlen(range) < sizeof f->range) { f->has_range = true; strcpy(f->range, range); }
    int rc = API->query(BL.self, node, "BLOB_READ", json_pack("{s s s i s i}", "id", id, "offset", 0, "max", 0),
                        0, remote_sized, f);
    if (rc) { remote_free(f); return rc; }   /* refused: the host answers rc */
    return CPS_ASYNC;
}

/* A blob is read from this process's backend when this process runs the
** storage node that owns it (always so in one process); any other node
** (a front, another storage node of a cluster) streams it from the owner,
** so a reverse proxy may send /blob requests to any node. */
static int http_blob(cps_http *req, void *ud)
{
    (void)ud;
    const char *rest = API->http_path(req) + strlen("/blob/");
    /* Exactly <xx>/<48 lowercase hex>, xx its first two: anything else
    ** (dot segments, encoded slashes, other lengths) names no blob. */
    if (strlen(rest) != 3 + IDS_BLOB_LEN || rest[2] != '/' || !ids_is_blob(rest + 3) || strncmp(rest, rest + 3, 2))
        return not_found(req);
    char owner[64];
    if (API->owner(BL.self, "storage", rest + 3, owner, sizeof owner) && !API->node_is_local(BL.self, owner))
        return forward_blob(req, rest + 3, owner);
    const cps_storage_backend *b = API->storage(BL.self, NULL);
    if (!b) return not_found(req);
    json_t *h = download_headers();
    objserve_opts o = { .store = "blob", .key = rest + 3, .headers = h, .ranges = true, .fail = blob_fail };
    int rc = objserve(API, BL.self, b, req, &o);
    json_decref(h);
    if (rc == CPS_EUNAVAILABLE) return not_found(req);    /* a backend without objects */
    return rc ? rc : CPS_ASYNC;
}

/* ---- load and unload ------------------------------------------------------ */

static void blob_fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    BL.closing = true;
    stage_fini();
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    if (sodium_init() < 0) return CPS_EINTERNAL;
    memset(&BL, 0, sizeof BL);
    BL.api = a;
    BL.self = self;
    json_t *cfg = a->config(self);
    /* Limits that /api/config also publishes and rpc-pin also enforces
    ** live in the shared `instance` section. */
    json_t *inst = a->config_get(self, "instance");
    BL.conf.max_upload = conf_positive(inst, "max_upload_size", DEFAULT_MAX_UPLOAD);
    BL.conf.premium_upload = conf_positive(inst, "premium_upload_size", BL.conf.max_upload);
    if (BL.conf.premium_upload < BL.conf.max_upload) BL.conf.premium_upload = BL.conf.max_upload;
    BL.conf.default_limit = conf_positive(inst, "default_storage_limit", DEFAULT_LIMIT);
    BL.conf.max_queue = (size_t)conf_positive(cfg, "max_queue_per_key", 16);
    BL.conf.max_sessions = (size_t)conf_positive(cfg, "max_sessions", 100000);

    int rc = stage_init();               /* CPS_ENOENT: no storage node in this process */
    bool storage = rc == CPS_OK;
    if (rc && rc != CPS_ENOENT) return rc;
    /* UPLOAD carries the file's chunks: authenticated by the session's
    ** cookie alone, not signed, so that a large file does not cost one
    ** signature per chunk (docs/protocol/rpc.md §3.7). */
    static const struct { const char *name; int kind; cps_rpc_fn fn; void *ud; } rpcs[] = {
        { "UPLOAD_STATUS", CPS_RPC_AUTH, rpc_status, NULL }, { "UPLOAD", CPS_RPC_COOKIE, rpc_upload, NULL },
        { "UPLOAD_CANCEL", CPS_RPC_AUTH, rpc_cancel, NULL },
        { "UPLOAD_COMPLETE", CPS_RPC_AUTH, rpc_complete, NULL },
        { "OWNED_UPLOAD_COMPLETE", CPS_RPC_AUTH, rpc_complete, (void *)1 },
    };
    rc = 0;
    for (size_t i = 0; i < sizeof rpcs / sizeof rpcs[0] && !rc; i++)
        rc = a->register_rpc(self, rpcs[i].name, rpcs[i].kind, rpcs[i].fn, rpcs[i].ud);
    if (!rc) rc = a->register_http(self, "GET", "/blob/", 0, http_blob, NULL);
    if (!rc) rc = a->register_http(self, "OPTIONS", "/blob/", 0, blob_options, NULL);
    if (!rc) rc = a->register_http(self, "POST", "/upload-blob/", UPLOAD_MAX_BODY, http_upload, NULL);
    if (!rc) rc = a->register_http(self, "OPTIONS", "/upload-blob/", 0, upload_options, NULL);
    if (rc) { stage_fini(); return rc; }   /* a refusal unloads us without fini */
    a->log(self, CPS_LOG_INFO, "blobs%s: uploads up to %llu bytes", storage ? " (with the storage half)" : "",
           (unsigned long long)BL.conf.max_upload);
    return CPS_OK;
}

CPS_PLUGIN_DEFINE("blob", "1.0.0", plugin_init, blob_fini);
