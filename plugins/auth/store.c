/*
** store.c - the auth plugin's storage half: operations on one user's login
** block, MFA settings and MFA sessions, run one at a time per key (several
** backend objects change together, so two requests of one user never
** interleave), on the storage node owning the key (AUTH_STORE) or locally
** for GET /block, which the cluster routes to that node.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "auth.h"
#include "keyqueue.h"

#define MAX_SESSIONS 64            /* per block; the oldest go first */
#define MAX_PLACEHOLDER 4096
#define MAX_QUEUE 1000             /* operations waiting per key */

enum op_kind { OP_STATE, OP_GATE, OP_WRITE_BLOCK, OP_REMOVE_BLOCK, OP_MFA_SET, OP_MFA_DEL, OP_SESSION_NEW };

static const struct { const char *name; int kind; bool obj; } OPS[] = {
    { "state", OP_STATE, true },           { "gate", OP_GATE, true },
    { "write_block", OP_WRITE_BLOCK, true }, { "remove_block", OP_REMOVE_BLOCK, true },
    { "mfa_set", OP_MFA_SET, false },      { "mfa_del", OP_MFA_DEL, false },
    { "session_new", OP_SESSION_NEW, false },
};

/* One operation; the head of its key's queue runs, through `step`. */
typedef struct sop {
    char safe[IDS_KEY_LEN + 1];    /* the key, the name of its queue */
    char ph[IDS_KEY_LEN + 16];     /* "<safe>.placeholder" */
    int kind, step;
    json_t *args;                  /* owned reference */
    auth_op_done done;
    void *ud;
    json_t *mfa;                   /* OP_STATE / OP_GATE: the parsed settings */
    json_t *sessions;              /* the parsed sessions record */
    bool bad, exists;
    char sid[TXID_LEN + 1];        /* OP_SESSION_NEW: the new id */
    unsigned char *bytes;          /* OP_WRITE_BLOCK: decoded block */
    size_t blen;
} sop;

static void step(sop *s, int status, const char *data, size_t len);

/* ---- queue ------------------------------------------------------------ */

static void sop_free(sop *s)
{
    json_decref(s->args);
    json_decref(s->mfa);
    json_decref(s->sessions);
    free(s->bytes);
    free(s);
    A.live--;
}

/* Answers the head operation (steals `data`), then runs the next one. */
static void finish(sop *s, int err, json_t *data)
{
    char safe[IDS_KEY_LEN + 1];
    memcpy(safe, s->safe, sizeof safe);
    s->done(s->ud, err, data);
    json_decref(data);
    sop_free(s);
    keyqueue_done(A.keys, safe);
    if (A.closing) auth_store_fini();   /* the last queue frees the map */
}

static void run(void *item, void *ud)
{
    (void)ud;
    step(item, CPS_OK, NULL, 0);
}

static int storage_err(int status)
{
    return status == CPS_ECANCELED ? CPS_ECANCELED : CPS_ERR_STORAGE_FAILURE;
}

/* ---- backend callbacks: all go to step() ---- */

static void on_done(void *ud, int status) { step(ud, status, NULL, 0); }
static void on_size(void *ud, int status, uint64_t size) { (void)size; step(ud, status, NULL, 0); }
static void on_data(void *ud, int status, const char *d, size_t n) { step(ud, status, d, n); }
/* A backend call refused at once completes like a callback would. */
#define CALL(s, expr) do { int rc_ = (expr); if (rc_) { step((s), rc_, NULL, 0); } } while (0)

static const cps_storage_backend *be(void) { return API->storage(A.self, NULL); }

/* ---- the operations ------------------------------------------------------- */

/* Parses the MFA settings record: bad when unparsable or not TOTP. */
static void take_mfa(sop *s, const char *data, size_t len)
{
    s->mfa = json_loadb(data, len, 0, NULL);
    const char *method = json_string_value(json_object_get(s->mfa, "method"));
    const char *secret = json_string_value(json_object_get(s->mfa, "secret"));
    s->bad = !json_is_object(s->mfa) || !secret || !method || strcmp(method, "TOTP");
}

/* The sessions record is one object per block: session id -> content
** (docs/protocol/storage.md 10 has a file per session; records have no listing, and
** TOTP_REVOKE must drop them all). */
static void take_sessions(sop *s, int status, const char *data, size_t len)
{
    json_decref(s->sessions);
    s->sessions = status == CPS_OK ? json_loadb(data, len, 0, NULL) : NULL;
    if (!json_is_object(s->sessions)) { json_decref(s->sessions); s->sessions = json_object(); }
}

static double session_exp(json_t *v)
{
    json_t *e = json_object_get(json_object_get(v, "mfa"), "exp");
    return json_is_number(e) ? json_number_value(e) : 0;
}

/* Drops expired sessions, then the soonest to expire beyond MAX_SESSIONS. */
static void prune_sessions(json_t *map, uint64_t now)
{
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(map, tmp, k, v)
        if (session_exp(v) <= (double)now) json_object_del(map, k);
    while (json_object_size(map) > MAX_SESSIONS) {
        const char *oldest = NULL;
        double best = 0;
        json_object_foreach(map, k, v)
            if (!oldest || session_exp(v) < best) { oldest = k; best = session_exp(v); }
        json_object_del(map, oldest);
    }
}

static void put_json(sop *s, const char *ns, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    if (!text) { step(s, CPS_ENOMEM, NULL, 0); return; }
    CALL(s, be()->record_put(be()->state, ns, s->safe, text, strlen(text), on_done, s));
    free(text);
}

static void op_state(sop *s, int status, const char *data, size_t len)
{
    const cps_storage_backend *b = be();
    switch (s->step++) {
    case 0: CALL(s, b->record_get(b->state, NS_MFA, s->safe, on_data, s)); return;
    case 1:
        if (status && status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        if (status == CPS_OK) take_mfa(s, data, len);
        CALL(s, b->obj_size(b->state, STORE_BLOCK, s->safe, on_size, s));
        return;
    default:
        if (status && status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        finish(s, CPS_OK, json_pack("{s O? s b s b}", "mfa", s->bad ? NULL : s->mfa, "bad", s->bad,
                                  "block", status == CPS_OK));
    }
}

/* docs/protocol/http.md 7 steps 2-4: {serve}, {missing} (protected, no block), {deny}. */
static void op_gate(sop *s, int status, const char *data, size_t len)
{
    const cps_storage_backend *b = be();
    const char *bearer = json_string_value(json_object_get(s->args, "bearer"));
    switch (s->step++) {
    case 0: CALL(s, b->record_get(b->state, NS_MFA, s->safe, on_data, s)); return;
    case 1:
        if (status == CPS_ENOENT) { finish(s, CPS_OK, json_pack("{s b}", "serve", 1)); return; }
        if (status) { finish(s, storage_err(status), NULL); return; }
        take_mfa(s, data, len);
        if (!json_is_object(s->mfa)) { finish(s, CPS_ERR_UNEXPECTED_ERROR, NULL); return; }
        CALL(s, b->obj_size(b->state, STORE_BLOCK, s->safe, on_size, s));
        return;
    case 2:
        if (status == CPS_ENOENT) { finish(s, CPS_OK, json_pack("{s b}", "missing", 1)); return; }
        if (status) { finish(s, storage_err(status), NULL); return; }
        if (!bearer) { finish(s, CPS_OK, json_pack("{s b}", "deny", 1)); return; }
        CALL(s, b->record_get(b->state, NS_SESSIONS, s->safe, on_data, s));
        return;
    case 3: {
        if (status && status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        take_sessions(s, status, data, len);
        json_t *v = json_object_get(s->sessions, bearer);
        if (v && session_exp(v) > (double)API->now_ms()) { finish(s, CPS_OK, json_pack("{s b}", "serve", 1)); return; }
        if (!v) { finish(s, CPS_OK, json_pack("{s b}", "deny", 1)); return; }
        /* Expired: forget it (docs/protocol/http.md 7 step 4). */
        json_object_del(s->sessions, bearer);
        put_json(s, NS_SESSIONS, s->sessions);
        return;
    }
    default:
        finish(s, CPS_OK, json_pack("{s b}", "deny", 1));
    }
}

/* {block (base64), nomfa}: archive the live block (placeholder
** PASSWORD_CHANGE), then write the new bytes (docs/protocol/http.md 9.3 step 4). */
static void op_write_block(sop *s, int status, const char *data, size_t len)
{
    (void)data; (void)len;
    const cps_storage_backend *b = be();
    switch (s->step++) {
    case 0: {
        const char *txt = json_string_value(json_object_get(s->args, "block"));
        size_t cap = txt ? strlen(txt) / 4 * 3 + 3 : 0;
        s->bytes = cap ? malloc(cap) : NULL;
        long n = s->bytes ? auth_b64(txt, s->bytes, cap, 0) : -1;
        if (n <= 0) { finish(s, CPS_ERR_E_INVALID_BLOCK, NULL); return; }
        s->blen = (size_t)n;
        if (json_is_true(json_object_get(s->args, "nomfa"))) {
            CALL(s, b->record_get(b->state, NS_MFA, s->safe, on_data, s));
            return;
        }
        status = CPS_ENOENT;
        s->step++;
    }   /* fall through */
    case 1:
        if (status == CPS_OK) { finish(s, CPS_ERR_NOT_ALLOWED, NULL); return; }
        if (status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        CALL(s, b->obj_size(b->state, STORE_BLOCK, s->safe, on_size, s));
        return;
    case 2:
        if (status == CPS_ENOENT) {       /* nothing to archive */
            s->step = 5;
            CALL(s, b->obj_write(b->state, STORE_BLOCK, s->safe, (char *)s->bytes, s->blen, on_done, s));
            return;
        }
        if (status) { finish(s, storage_err(status), NULL); return; }
        CALL(s, b->obj_archive(b->state, STORE_BLOCK, s->safe, on_done, s));
        return;
    case 3:
        /* An archive that fails (an older archived copy in the way) must
        ** not stop a password change: the write below replaces the block. */
        if (status) API->log(A.self, CPS_LOG_WARN, "block %s: archive failed (%s), overwriting",
                             s->safe, API->errname(status));
        CALL(s, b->obj_write(b->state, STORE_BLOCK, s->ph, "PASSWORD_CHANGE", 15, on_done, s));
        return;
    case 4:
        CALL(s, b->obj_write(b->state, STORE_BLOCK, s->safe, (char *)s->bytes, s->blen, on_done, s));
        return;
    default:
        finish(s, status ? storage_err(status) : CPS_OK, NULL);
    }
}

/* {reason?, nomfa}: archive the block, leaving the reason as placeholder. */
static void op_remove_block(sop *s, int status, const char *data, size_t len)
{
    (void)data; (void)len;
    const cps_storage_backend *b = be();
    const char *reason = json_string_value(json_object_get(s->args, "reason"));
    switch (s->step++) {
    case 0:
        if (json_is_true(json_object_get(s->args, "nomfa"))) {
            CALL(s, b->record_get(b->state, NS_MFA, s->safe, on_data, s));
            return;
        }
        status = CPS_ENOENT;
        s->step++;
        /* fall through */
    case 1:
        if (status == CPS_OK) { finish(s, CPS_ERR_NOT_ALLOWED, NULL); return; }
        if (status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        CALL(s, b->obj_archive(b->state, STORE_BLOCK, s->safe, on_done, s));
        return;
    case 2:
        if (status == CPS_ENOENT) { finish(s, CPS_ENOENT, NULL); return; }
        if (status) { finish(s, storage_err(status), NULL); return; }
        if (!reason) { finish(s, CPS_OK, NULL); return; }
        CALL(s, b->obj_write(b->state, STORE_BLOCK, s->ph, reason, strnlen(reason, MAX_PLACEHOLDER), on_done, s));
        return;
    default:
        finish(s, status ? storage_err(status) : CPS_OK, NULL);
    }
}

/* {mfa, exclusive, need_block}: write the MFA settings. */
static void op_mfa_set(sop *s, int status, const char *data, size_t len)
{
    (void)data; (void)len;
    const cps_storage_backend *b = be();
    switch (s->step++) {
    case 0:
        if (json_is_true(json_object_get(s->args, "need_block"))) {
            if (!auth_obj_backend()) { finish(s, CPS_ERR_E_UNAVAILABLE, NULL); return; }
            CALL(s, b->obj_size(b->state, STORE_BLOCK, s->safe, on_size, s));
            return;
        }
        status = CPS_OK;
        s->step++;
        /* fall through */
    case 1:
        if (status == CPS_ENOENT) { finish(s, CPS_ERR_NO_BLOCK, NULL); return; }
        if (status) { finish(s, storage_err(status), NULL); return; }
        if (json_is_true(json_object_get(s->args, "exclusive"))) {
            CALL(s, b->record_get(b->state, NS_MFA, s->safe, on_data, s));
            return;
        }
        status = CPS_ENOENT;
        s->step++;
        /* fall through */
    case 2:
        if (status == CPS_OK) { finish(s, CPS_ERR_EEXISTS, NULL); return; }
        if (status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        if (!json_is_object(json_object_get(s->args, "mfa"))) { finish(s, CPS_EINVAL, NULL); return; }
        put_json(s, NS_MFA, json_object_get(s->args, "mfa"));
        return;
    default:
        finish(s, status ? storage_err(status) : CPS_OK, NULL);
    }
}

/* Drops the MFA settings and every session of the block. */
static void op_mfa_del(sop *s, int status, const char *data, size_t len)
{
    (void)data; (void)len;
    const cps_storage_backend *b = be();
    switch (s->step++) {
    case 0: CALL(s, b->record_del(b->state, NS_MFA, s->safe, on_done, s)); return;
    case 1:
        if (status && status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        CALL(s, b->record_del(b->state, NS_SESSIONS, s->safe, on_done, s));
        return;
    default:
        if (status && status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        finish(s, CPS_OK, json_pack("{s b}", "success", 1));
    }
}

/* A new MFA session (docs/protocol/http.md 9.4 "Sessions") while MFA is configured. */
static void op_session_new(sop *s, int status, const char *data, size_t len)
{
    const cps_storage_backend *b = be();
    switch (s->step++) {
    case 0: CALL(s, b->record_get(b->state, NS_MFA, s->safe, on_data, s)); return;
    case 1:
        if (status == CPS_ENOENT) { finish(s, CPS_ERR_NO_MFA_CONFIGURED, NULL); return; }
        if (status) { finish(s, storage_err(status), NULL); return; }
        CALL(s, b->record_get(b->state, NS_SESSIONS, s->safe, on_data, s));
        return;
    case 2: {
        if (status && status != CPS_ENOENT) { finish(s, storage_err(status), NULL); return; }
        take_sessions(s, status, data, len);
        uint64_t now = API->now_ms();
        prune_sessions(s->sessions, now);
        auth_random_id(s->sid);
        json_object_set_new(s->sessions, s->sid,
                            json_pack("{s {s s s I}}", "mfa", "type", "otp", "exp", (json_int_t)(now + A.session_ms)));
        put_json(s, NS_SESSIONS, s->sessions);
        return;
    }
    default:
        if (status) { finish(s, storage_err(status), NULL); return; }
        finish(s, CPS_OK, json_pack("{s s}", "bearer", s->sid));
    }
}

static void step(sop *s, int status, const char *data, size_t len)
{
    if (s->step == 0 && A.closing) { finish(s, CPS_ECANCELED, NULL); return; }
    switch (s->kind) {
    case OP_STATE:        op_state(s, status, data, len); break;
    case OP_GATE:         op_gate(s, status, data, len); break;
    case OP_WRITE_BLOCK:  op_write_block(s, status, data, len); break;
    case OP_REMOVE_BLOCK: op_remove_block(s, status, data, len); break;
    case OP_MFA_SET:      op_mfa_set(s, status, data, len); break;
    case OP_MFA_DEL:      op_mfa_del(s, status, data, len); break;
    default:              op_session_new(s, status, data, len); break;
    }
}

/* ---- entry ------------------------------------------------------------ */

int auth_store_run(json_t *args, auth_op_done done, void *ud)
{
    const char *op = json_string_value(json_object_get(args, "op"));
    const char *key = json_string_value(json_object_get(args, "key"));
    char safe[IDS_KEY_LEN + 1];
    int kind = -1;
    bool obj = false;
    for (size_t i = 0; op && i < sizeof OPS / sizeof OPS[0]; i++)
        if (!strcmp(OPS[i].name, op)) { kind = OPS[i].kind; obj = OPS[i].obj; }
    const cps_storage_backend *b = be();
    if (A.closing) return CPS_ECANCELED;
    if (kind < 0 || !ids_safe_key(key, safe)) return CPS_EINVAL;
    if (!b || (obj && !auth_obj_backend())) return CPS_ERR_E_UNAVAILABLE;
    sop *s = calloc(1, sizeof *s);
    if (!s) return CPS_ENOMEM;
    memcpy(s->safe, safe, sizeof safe);
    snprintf(s->ph, sizeof s->ph, "%s.placeholder", safe);
    s->kind = kind;
    s->args = json_incref(args);
    s->done = done;
    s->ud = ud;
    A.live++;
    int rc = keyqueue_push(A.keys, safe, s);   /* may run it at once */
    if (rc) sop_free(s);
    return rc;
}

int auth_store_init(void)
{
    A.keys = keyqueue_new(MAX_QUEUE, run, NULL);
    return A.keys ? CPS_OK : CPS_ENOMEM;
}

bool auth_store_idle(void) { return keyqueue_keys(A.keys) == 0; }

/* Queues drain on their own (each running step gets its callback, with
** ECANCELED at unload; the waiting ones then fail at step 0). */
void auth_store_fini(void)
{
    if (A.keys && keyqueue_keys(A.keys) == 0) { keyqueue_free(A.keys); A.keys = NULL; }
}
