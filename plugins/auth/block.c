/*
** block.c - GET /block/<xx>/<safeKey> (docs/protocol/http.md 7): the login block's bytes,
** a 404 with a small JSON body while there is none (registration expects
** it), and the MFA gate (a Bearer session) when the block has MFA.  Any
** node answers: one that does not run the key's storage node asks it
** (AUTH_STORE for the gate, AUTH_BLOCK_READ for the bytes).
*/
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "auth.h"
#include "objserve.h"

#define MAX_BLOCK (16u << 20)      /* AUTH_BLOCK_READ: a block sent whole to another node */

typedef struct bget {
    cps_http *req;
    char safe[IDS_KEY_LEN + 1];
    char ph[IDS_KEY_LEN + 16];
    char node[64];                 /* the key's storage node when not local */
    bool asked_placeholder;        /* remote: the block was missing */
} bget;

static void bget_free(bget *g) { free(g); A.live--; }

static void respond_err(cps_http *req, int status, json_t *body)
{
    auth_respond_json(req, status, body);
}

static void remote_read(bget *g, bool placeholder);

/* 404 {"reason"?, "code":404}, the reason from the placeholder. */
static void on_placeholder(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    bget *g = ud;
    json_t *body = json_object();
    json_t *reason = status == CPS_OK ? json_stringn(data, len) : NULL;   /* NULL if not UTF-8 */
    if (reason) json_object_set_new(body, "reason", reason);
    json_object_set_new(body, "code", json_integer(404));
    respond_err(g->req, 404, body);
    bget_free(g);
}

/* ---- the bytes from another node (base64 over the link) ---- */

static void remote_got(void *ud, int error, json_t *data)
{
    bget *g = ud;
    const char *b64 = json_string_value(json_object_get(data, "data"));
    bool placeholder = g->asked_placeholder;
    size_t n = 0;
    unsigned char *bin = error ? NULL : b64_decode_dup(b64, b64 ? strlen(b64) : 0, &n);
    int st = error ? (error == CPS_ENOENT ? CPS_ENOENT : CPS_EIO) : !bin ? CPS_EIO : CPS_OK;
    if (placeholder) on_placeholder(g, st, (const char *)bin, n, 0, true);
    else if (st == CPS_ENOENT) { free(bin); remote_read(g, true); return; }   /* the reason, if any */
    else if (st) { respond_err(g->req, 503, json_pack("{s i s s}", "code", 503, "error", "UNAVAILABLE")); bget_free(g); }
    else {
        json_t *h = json_pack("{s s s s}", "content-type", "application/octet-stream", "cache-control", "public, max-age=0");
        API->http_respond(g->req, 200, h, (const char *)bin, n);
        json_decref(h);
        bget_free(g);
    }
    free(bin);
}

static void remote_read(bget *g, bool placeholder)
{
    g->asked_placeholder = placeholder;
    int rc = API->query(A.self, g->node, "AUTH_BLOCK_READ",
                        json_pack("{s s s b}", "key", g->safe, "placeholder", placeholder), 0, remote_got, g);
    /* refused: remote_got will not run, so answer now; a missing node is
    ** not a missing block */
    if (rc) remote_got(g, rc == CPS_ENOENT ? CPS_EIO : rc, NULL);
}

typedef struct bread { cps_call *call; bool placeholder; } bread;

static void bread_got(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    bread *r = ud;
    if (status) { API->reply(r->call, status, NULL); free(r); return; }
    char *b64 = b64_encode_dup(data, len);
    if (!b64) { API->reply(r->call, CPS_ENOMEM, NULL); free(r); return; }
    API->reply(r->call, CPS_OK, json_pack("{s s s b}", "data", b64, "placeholder", r->placeholder));
    free(b64);
    free(r);
}

/* AUTH_BLOCK_READ {key, placeholder}: on the key's storage node. */
int auth_block_read_cmd(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    char safe[IDS_KEY_LEN + 1], name[IDS_KEY_LEN + 16];
    const cps_storage_backend *b = auth_obj_backend();
    if (!ids_safe_key(json_string_value(json_object_get(args, "key")), safe)) return CPS_EINVAL;
    if (!b) return CPS_EIO;
    bread *r = calloc(1, sizeof *r);
    if (!r) return CPS_ENOMEM;
    r->call = call;
    r->placeholder = json_is_true(json_object_get(args, "placeholder"));
    snprintf(name, sizeof name, r->placeholder ? "%s.placeholder" : "%s", safe);
    int rc = b->obj_read(b->state, STORE_BLOCK, name, 0, r->placeholder ? 4096 : MAX_BLOCK, bread_got, r);
    if (rc) { free(r); return rc; }
    return CPS_ASYNC;
}

static void not_found(bget *g)
{
    if (g->node[0]) { remote_read(g, true); return; }
    const cps_storage_backend *b = auth_obj_backend();
    int rc = b ? b->obj_read(b->state, STORE_BLOCK, g->ph, 0, 4096, on_placeholder, g) : CPS_EIO;
    if (rc) on_placeholder(g, rc, NULL, 0, 0, true);
}

static json_t *block_headers(void)
{
    return json_pack("{s s s s}", "content-type", "application/octet-stream",
                     "cache-control", "public, max-age=0");
}

/* The block cannot be served: missing (the placeholder's reason, if any,
** goes into the 404) or unreadable. */
static void block_fail(cps_http *req, int status, void *ud)
{
    (void)req;
    bget *g = ud;
    if (status == CPS_ENOENT) { not_found(g); return; }
    respond_err(g->req, 500, json_pack("{s i s s}", "code", 500, "error", "UNEXPECTED_ERROR"));
    bget_free(g);
}

static void block_end(void *ud) { bget_free(ud); }

/* The bytes: streamed through the backend by the helper the blob
** downloads use too; no Range here (docs/protocol/http.md 7). */
static void serve(bget *g)
{
    if (g->node[0]) { remote_read(g, false); return; }
    json_t *h = block_headers();
    objserve_opts o = { .store = STORE_BLOCK, .key = g->safe, .headers = h, .fail = block_fail, .end = block_end, .ud = g };
    int rc = objserve(API, A.self, auth_obj_backend(), g->req, &o);
    json_decref(h);
    if (rc) block_fail(g->req, rc, g);
}

static void on_gate(void *ud, int error, json_t *data)
{
    bget *g = ud;
    if (error == CPS_ERR_E_UNAVAILABLE) {
        respond_err(g->req, 503, json_pack("{s i s s}", "code", 503, "error", "UNAVAILABLE"));
    } else if (error) {
        respond_err(g->req, 500, json_pack("{s i s s}", "code", 500, "error", "UNEXPECTED_ERROR"));
    } else if (json_is_true(json_object_get(data, "serve"))) {
        serve(g);
        return;
    } else if (json_is_true(json_object_get(data, "missing"))) {
        not_found(g);
        return;
    } else {
        /* The client asks for a TOTP code on this answer. */
        respond_err(g->req, 401, json_pack("{s b s s s i}", "sso", 0, "method", "TOTP", "code", 401));
    }
    bget_free(g);
}

int auth_block_get(cps_http *req, void *ud)
{
    (void)ud;
    /* "/block/<xx>/<44 chars>", nothing else: the key becomes a file name. */
    char rest[2 * IDS_KEY_LEN];
    const char *path = API->http_path(req) + strlen("/block/");
    /* The host hands over the path percent-decoded, with '+' turned into
    ** ' ' (libwebsockets does that); a space is in no key, a '+' in many. */
    size_t n = strnlen(path, sizeof rest);
    for (size_t i = 0; i < n; i++) rest[i] = path[i] == ' ' ? '+' : path[i];
    rest[n < sizeof rest ? n : 0] = 0;
    const char *slash = strchr(rest, '/');
    const char *key = slash ? slash + 1 : NULL;
    if (!slash || slash - rest != 2 || !ids_is_safe_key(key) ||
        strncmp(rest, key, 2)) {
        auth_respond_json(req, 404, json_pack("{s s}", "error", "INVALID_ID"));
        return CPS_OK;
    }
    char node[64] = "";
    bool remote = API->owner(A.self, "storage", key, node, sizeof node) && !API->node_is_local(A.self, node);
    if (!remote && !auth_obj_backend()) {
        auth_respond_json(req, 503, json_pack("{s i s s}", "code", 503, "error", "UNAVAILABLE"));
        return CPS_OK;
    }
    bget *g = calloc(1, sizeof *g);
    if (!g) return CPS_ENOMEM;
    A.live++;
    g->req = req;
    if (remote) snprintf(g->node, sizeof g->node, "%s", node);
    memcpy(g->safe, key, IDS_KEY_LEN);
    snprintf(g->ph, sizeof g->ph, "%s.placeholder", g->safe);
    const char *auth = API->http_header(req, "authorization");
    const char *bearer = auth && !strncasecmp(auth, "Bearer ", 7) ? auth + 7 : NULL;
    while (bearer && *bearer == ' ') bearer++;
    json_t *args = json_pack("{s s s s}", "op", "gate", "key", g->safe);
    /* A token that cannot be a session id is no token (and never a key). */
    if (bearer && strlen(bearer) == TXID_LEN && ids_safe_chars(bearer, TXID_LEN))
        json_object_set_new(args, "bearer", json_string(bearer));
    if (g->node[0]) {                 /* the gate runs where the block is */
        int rc = API->query(A.self, g->node, "AUTH_STORE", args, 0, on_gate, g);
        if (rc) on_gate(g, rc, NULL);   /* refused: on_gate will not run; answers now */
        return CPS_ASYNC;
    }
    int err = auth_store_run(args, on_gate, g);
    json_decref(args);
    if (err) on_gate(g, err, NULL);   /* answers now */
    return CPS_ASYNC;
}
