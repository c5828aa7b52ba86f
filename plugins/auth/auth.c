/*
** auth.c - POST /api/auth (docs/protocol/http.md 9): two-round, Ed25519-signed HTTP
** commands for login blocks, TOTP MFA and upload cookies; the plugin's
** entry point.  Challenges are backend records ("challenges", by txid), so
** a restart keeps them; blocks, MFA settings and sessions are reached
** through the storage node owning the user's key (AUTH_STORE, store.c).
** Section `auth`: challenge_ttl_ms (300000), session_hours (168),
** restrict_registration (false: WRITE_BLOCK then needs a registrationProof),
** and the bounds on what unauthenticated requests may make the server keep:
** max_challenge_bytes (100 KiB + 128), max_challenges (10000),
** max_challenges_per_key (8), totp_failures_per_minute (5)
** (docs/protocol/http.md 9.5).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include "auth.h"
#include "conf.h"
#include "totp.h"

#define MAX_BODY 102400               /* docs/protocol/http.md 9: 100 kB, as body-parser counts it */
#define DEFAULT_TTL_MS 300000         /* "a few minutes" (docs/protocol/http.md 9.2) */
#define DEFAULT_SESSION_HOURS 168     /* otpSessionExpiration */
#define MAX_CONTACT 254
/* Any body the route accepts (100 KiB, as the Node server's JSON limit) can
** be stored, so clients see what they saw there; the count limits bound the
** total.  An operator may lower it: a login block is ~1 kB. */
#define DEFAULT_CHALLENGE_BYTES (102400 + 128)
#define DEFAULT_MAX_CHALLENGES 10000
#define DEFAULT_PER_KEY 8
#define DEFAULT_OTP_FAILS 5           /* per key and minute (docs/protocol/http.md 9.5) */
#define OTP_WINDOW_MS 60000
#define INDEX_KEY "pending_index"     /* record listing this process's outstanding challenges */
#define INDEX_SAVE_MS 1000

auth_state A;
static char MARK;                     /* the value of `answering` entries */

/* ---- shared helpers ----------------------------------------------------- */

long auth_b64(const char *s, unsigned char *out, size_t cap, size_t want)
{
    size_t n = s ? strlen(s) : 0;
    char *t = n ? malloc(n + 1) : NULL;
    if (!t) return -1;
    for (size_t i = 0; i <= n; i++) t[i] = s[i] == '-' ? '/' : s[i];
    long got = b64_decode(t, n, out, cap);
    free(t);
    return want && got != (long)want ? -1 : got;
}

void auth_random_id(char out[TXID_LEN + 1])
{
    unsigned char raw[24];
    randombytes_buf(raw, sizeof raw);
    b64_encode(raw, sizeof raw, out, TXID_LEN + 1);
    for (char *p = out; *p; p++) if (*p == '/') *p = '-';
}

/* storage-fs gains obj_* in parallel with this plugin: until a backend has
** them all, everything touching blocks answers 503. */
const cps_storage_backend *auth_obj_backend(void)
{
    const cps_storage_backend *b = API->storage(A.self, NULL);
    if (!b || !CPS_STORAGE_HAS(b, obj_archive)) return NULL;
    if (!b->obj_write || !b->obj_read || !b->obj_size || !b->obj_archive || !b->obj_delete) return NULL;
    return b;
}

void auth_respond_json(cps_http *r, int status, json_t *v)
{
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_t *h = json_pack("{s s}", "content-type", "application/json; charset=utf-8");
    API->http_respond(r, status, h, text ? text : "", text ? strlen(text) : 0);
    json_decref(h);
    json_decref(v);
    free(text);
}

static void iso_date(uint64_t ms, char out[64])
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

static bool parse_iso(const char *s, uint64_t *ms)
{
    struct tm tm = { 0 };
    int mil;
    char z;
    if (!s || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                     &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &mil, &z) != 8 || z != 'Z')
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t < 0) return false;
    *ms = (uint64_t)t * 1000 + (uint64_t)mil;
    return true;
}

/* JavaScript truthiness, which is how both servers dispatch (docs/protocol/http.md 9). */
static bool truthy(json_t *v)
{
    if (!v || json_is_null(v) || json_is_false(v)) return false;
    if (json_is_string(v)) return json_string_length(v) > 0;
    if (json_is_number(v)) return json_number_value(v) != 0;
    return true;
}

static bool six_digits(const char *s)
{
    return s && strlen(s) == 6 && strspn(s, "0123456789") == 6;
}

/* ---- one request ------------------------------------------------------ */

typedef struct actx actx;

typedef struct cmd_def {
    const char *name;
    /* Format checks of the request (round 1, and again on the stored
    ** challenge in round 2 to fill the context): an error code or CPS_OK. */
    int (*check)(actx *c);
    /* With the storage state of the key (or the ancestor's): an error code
    ** or CPS_OK.  NULL for a command with no such check. */
    int (*check_state)(actx *c, json_t *state);
    /* Round 2: a step machine, first called with (CPS_OK, NULL). */
    void (*complete)(actx *c, int err, json_t *data);
} cmd_def;

struct actx {
    cps_http *req;
    json_t *body;                     /* the request; in round 2 the stored challenge */
    const cmd_def *cmd;
    char pub[IDS_KEY_LEN + 1];            /* publicKey as sent */
    char safe[IDS_KEY_LEN + 1];
    char other[IDS_KEY_LEN + 1];          /* the ancestor block's safe key, if any */
    const char *code;                 /* the TOTP code (borrowed from body) */
    char txid[TXID_LEN + 1];
    char date[64];
    char *text;                       /* the challenge text */
    size_t tlen;
    unsigned char sig[64];
    bool sig_ok;
    bool answering;                   /* holds `txid` in A.answering */
    int step;
    json_t *keep;                     /* MFA settings carried between steps */
};

static actx *ctx_new(cps_http *req, json_t *body)
{
    actx *c = calloc(1, sizeof *c);
    if (!c) { json_decref(body); return NULL; }
    c->req = req;
    c->body = body;
    A.live++;
    return c;
}

static void ctx_free(actx *c)
{
    if (c->answering && A.answering) strmap_del(A.answering, c->txid);
    json_decref(c->body);
    json_decref(c->keep);
    free(c->text);
    free(c);
    A.live--;
}

static void reply(actx *c, int status, json_t *v)
{
    auth_respond_json(c->req, status, v);
    ctx_free(c);
}

/* 500 {"error": msg}: a message, or an error code's name. */
static void fail(actx *c, const char *msg)
{
    reply(c, 500, json_pack("{s s}", "error", msg));
}

/* A completion's failure (docs/protocol/http.md 9.2 step 4, with errorCode). */
static void exec_fail(actx *c, int code)
{
    if (code == CPS_ERR_E_UNAVAILABLE) reply(c, 503, json_pack("{s s}", "error", "Service unavailable"));
    else reply(c, 500, json_pack("{s s s s}", "error", "Execution error", "errorCode", API->errname(code)));
}

/* An empty 200 is a valid answer: the client parses text and tolerates none. */
static void done_empty(actx *c) { reply(c, 200, NULL); }

static void on_step(void *ud, int err, json_t *data)
{
    actx *c = ud;
    c->cmd->complete(c, err, data);
}

/* One AUTH_STORE operation on the storage node owning `safe`; `cb` is
** called once (at once if the query cannot be made).  Steals `args`. */
static void ask(actx *c, const char *safe, json_t *args, cps_reply_fn cb)
{
    char node[64];
    json_object_set_new(args, "key", json_string(safe));
    if (!API->owner(A.self, "storage", safe, node, sizeof node)) {
        json_decref(args);
        cb(c, CPS_ERR_E_UNAVAILABLE, NULL);
        return;
    }
    int rc = API->query(A.self, node, "AUTH_STORE", args, 0, cb, c);
    if (rc) cb(c, rc, NULL);
}

/* ---- block content (docs/protocol/http.md 9.3) ------------------------------------------ */

/* [oldPub, sig] (as JSON text, or already an array): sig is the old key
** signing its own raw bytes.  The old key's safe form in `safe`. */
static bool proof_ok(json_t *proof, char safe[IDS_KEY_LEN + 1])
{
    json_t *arr = json_is_string(proof) ? json_loads(json_string_value(proof), 0, NULL) : json_incref(proof);
    const char *k = json_string_value(json_array_get(arr, 0));
    const char *s = json_string_value(json_array_get(arr, 1));
    unsigned char pk[32], sig[64];
    bool ok = json_is_array(arr) && ids_safe_key(k, safe) && auth_b64(k, pk, sizeof pk, 32) == 32 &&
              s && auth_b64(s, sig, sizeof sig, 64) == 64 &&
              crypto_sign_verify_detached(sig, pk, sizeof pk, pk) == 0;
    json_decref(arr);
    return ok;
}

/* The block's signature: Ed25519 over SHA-512 of the ciphertext bytes. */
static int verify_block(json_t *content)
{
    unsigned char pk[32], sig[64], hash[64];
    const char *ct = json_string_value(json_object_get(content, "ciphertext"));
    if (auth_b64(json_string_value(json_object_get(content, "publicKey")), pk, sizeof pk, 32) != 32)
        return CPS_ERR_E_INVALID_KEY;
    if (auth_b64(json_string_value(json_object_get(content, "signature")), sig, sizeof sig, 64) != 64)
        return CPS_ERR_E_INVALID_SIGNATURE;
    size_t cap = ct ? strlen(ct) / 4 * 3 + 3 : 0;
    unsigned char *bytes = cap ? malloc(cap) : NULL;
    long n = bytes ? auth_b64(ct, bytes, cap, 0) : -1;
    if (n <= 0) { free(bytes); return CPS_ERR_E_INVALID_BLOCK; }
    crypto_hash_sha512(hash, bytes, (unsigned long long)n);
    free(bytes);
    return crypto_sign_verify_detached(sig, hash, sizeof hash, pk) ? CPS_ERR_E_COULD_NOT_VERIFY : CPS_OK;
}

/* ---- commands: format checks ---------------------------------------- */

static int check_none(actx *c) { (void)c; return CPS_OK; }

static int check_write(actx *c)
{
    json_t *content = json_object_get(c->body, "content");
    const char *k = json_string_value(json_object_get(content, "publicKey"));
    if (!json_is_object(content) || !k || strcmp(k, c->pub)) return CPS_ERR_INVALID_KEY;
    return CPS_OK;
}

static int check_setup(actx *c)
{
    unsigned char key[128];
    json_t *contact = json_object_get(c->body, "contact");
    c->code = json_string_value(json_object_get(c->body, "code"));
    if (!six_digits(c->code)) return CPS_ERR_E_INVALID;
    if (contact && !json_is_null(contact) && (!json_is_string(contact) || json_string_length(contact) > MAX_CONTACT))
        return CPS_ERR_INVALID_CONTACT;
    const char *secret = json_string_value(json_object_get(c->body, "secret"));
    if (!secret || base32_decode(secret, key, sizeof key) <= 0) return CPS_ERR_E_INVALID;
    return CPS_OK;
}

static int check_code(actx *c)
{
    c->code = json_string_value(json_object_get(c->body, "code"));
    return six_digits(c->code) ? CPS_OK : CPS_ERR_E_INVALID;
}

static int check_auth(actx *c)
{
    c->code = json_string_value(json_object_get(c->body, "auth"));
    return six_digits(c->code) ? CPS_OK : CPS_ERR_E_INVALID;
}

static int check_revoke(actx *c)
{
    json_t *code = json_object_get(c->body, "code");
    if (truthy(code)) return check_code(c);
    return json_is_string(json_object_get(c->body, "recoveryKey")) ? CPS_OK : CPS_ERR_E_INVALID;
}

static int check_totp_write(actx *c)
{
    int e = check_write(c);
    if (e) return e;
    json_t *content = json_object_get(c->body, "content");
    c->code = json_string_value(json_object_get(content, "auth"));
    if (!six_digits(c->code)) return CPS_ERR_E_INVALID;
    json_t *proof = json_object_get(content, "registrationProof");
    if (!truthy(proof)) return CPS_ERR_MISSING_ANCESTOR;
    return proof_ok(proof, c->other) ? CPS_OK : CPS_ERR_INVALID_ANCESTOR;
}

/* ---- commands: checks against the stored state ---------------------- */

static int state_nomfa(actx *c, json_t *st)
{
    (void)c;
    bool on = json_is_object(json_object_get(st, "mfa")) || json_is_true(json_object_get(st, "bad"));
    return on ? CPS_ERR_NOT_ALLOWED : CPS_OK;
}

static int state_setup(actx *c, json_t *st)
{
    if (state_nomfa(c, st)) return CPS_ERR_EEXISTS;
    const char *secret = json_string_value(json_object_get(c->body, "secret"));
    return totp_check(secret, c->code, API->now_ms()) ? CPS_OK : CPS_ERR_INVALID_OTP;
}

static int state_code(actx *c, json_t *st)
{
    json_t *mfa = json_object_get(st, "mfa");
    if (json_is_true(json_object_get(st, "bad"))) return CPS_ERR_INVALID_CONFIGURATION;
    if (!json_is_object(mfa)) return CPS_ERR_NO_MFA_CONFIGURED;
    const char *secret = json_string_value(json_object_get(mfa, "secret"));
    return totp_check(secret, c->code, API->now_ms()) ? CPS_OK : CPS_ERR_INVALID_OTP;
}

static int state_revoke(actx *c, json_t *st)
{
    if (c->code) return state_code(c, st);
    json_t *mfa = json_object_get(st, "mfa");
    if (json_is_true(json_object_get(st, "bad"))) return CPS_ERR_INVALID_CONFIGURATION;
    if (!json_is_object(mfa)) return CPS_ERR_NO_MFA_CONFIGURED;
    const char *contact = json_string_value(json_object_get(mfa, "contact"));
    const char *given = json_string_value(json_object_get(c->body, "recoveryKey"));
    if (!contact || strncmp(contact, "secret:", 7)) return CPS_ERR_E_NO_RECOVERY_KEY;
    size_t n = strlen(contact + 7);
    if (!given || strlen(given) != n || sodium_memcmp(given, contact + 7, n)) return CPS_ERR_E_WRONG_RECOVERY_KEY;
    return CPS_OK;
}

/* ---- commands: completions -------------------------------------------- */

static void complete_test(actx *c, int err, json_t *data)
{
    (void)err; (void)data;
    reply(c, 200, json_pack("{s i}", "success", 1));
}

static void complete_empty(actx *c, int err, json_t *data)
{
    (void)err; (void)data;
    done_empty(c);
}

/* The blob plugin's storage half makes the cookie (docs/protocol/rpc.md 8.1). */
static void complete_cookie(actx *c, int err, json_t *data)
{
    if (c->step++ == 0) {
        char node[64];
        json_t *args = json_pack("{s s}", "key", c->pub);
        json_t *id = json_object_get(c->body, "id");
        if (json_is_string(id)) json_object_set(args, "id", id);
        if (!API->owner(A.self, "storage", c->safe, node, sizeof node)) {
            json_decref(args);
            exec_fail(c, CPS_ERR_E_UNAVAILABLE);
            return;
        }
        int rc = API->query(A.self, node, "BLOB_UPLOAD_COOKIE", args, 0, on_step, c);
        if (rc) exec_fail(c, rc);
        return;
    }
    const char *cookie = json_string_value(json_object_get(data, "cookie"));
    if (err == CPS_ENOENT)   /* no blob plugin on that node */
        reply(c, 503, json_pack("{s s s s}", "error", "Service unavailable", "errorCode", API->errname(err)));
    else if (err) exec_fail(c, err);
    else if (!cookie) exec_fail(c, CPS_ERR_E_INTERNAL);
    else reply(c, 200, json_pack("{s s}", "cookie", cookie));
}

static json_t *write_args(actx *c, bool nomfa)
{
    json_t *content = json_object_get(c->body, "content");
    return json_pack("{s s s O s b}", "op", "write_block", "block", json_object_get(content, "ciphertext"),
                     "nomfa", nomfa);
}

static void complete_write(actx *c, int err, json_t *data)
{
    json_t *content = json_object_get(c->body, "content");
    switch (c->step++) {
    case 0: {
        int e = verify_block(content);
        if (e) { exec_fail(c, e); return; }
        /* read at each use: a RESTRICT_REGISTRATION decree changes it live */
        if (json_is_true(API->config_get(A.self, "instance.restrict_registration"))) {
            /* No invitations here: a registration needs the proof of an
            ** existing block (docs/protocol/http.md 9.3 step 2). */
            if (!proof_ok(json_object_get(content, "registrationProof"), c->other)) {
                exec_fail(c, CPS_ERR_E_RESTRICTED);
                return;
            }
            ask(c, c->other, json_pack("{s s}", "op", "state"), on_step);
            return;
        }
        c->step++;
        ask(c, c->safe, write_args(c, true), on_step);
        return;
    }
    case 1:
        if (err == CPS_ERR_E_UNAVAILABLE) { exec_fail(c, err); return; }
        if (err || !json_is_true(json_object_get(data, "block"))) { exec_fail(c, CPS_ERR_E_RESTRICTED); return; }
        ask(c, c->safe, write_args(c, true), on_step);
        return;
    default:
        if (err) exec_fail(c, err);
        else done_empty(c);
    }
}

static json_t *remove_args(actx *c, bool nomfa)
{
    json_t *args = json_pack("{s s s b}", "op", "remove_block", "nomfa", nomfa);
    json_t *reason = json_object_get(c->body, "reason");
    if (json_is_string(reason)) json_object_set(args, "reason", reason);
    return args;
}

static void complete_remove(actx *c, int err, json_t *data)
{
    (void)data;
    if (c->step++ == 0) { ask(c, c->safe, remove_args(c, true), on_step); return; }
    if (err) exec_fail(c, err);
    else done_empty(c);
}

static void bearer_reply(actx *c, int err, json_t *data)
{
    const char *bearer = json_string_value(json_object_get(data, "bearer"));
    if (err) exec_fail(c, err);
    else if (!bearer) exec_fail(c, CPS_ERR_STORAGE_FAILURE);
    else reply(c, 200, json_pack("{s s}", "bearer", bearer));
}

static void complete_setup(actx *c, int err, json_t *data)
{
    switch (c->step++) {
    case 0: {
        char now[64];
        iso_date(API->now_ms(), now);
        json_t *mfa = json_pack("{s s s O s s}", "method", "TOTP", "secret", json_object_get(c->body, "secret"),
                                "creation", now);
        json_t *contact = json_object_get(c->body, "contact");
        if (json_is_string(contact)) json_object_set(mfa, "contact", contact);
        ask(c, c->safe, json_pack("{s s s o s b s b}", "op", "mfa_set", "mfa", mfa, "exclusive", 1,
                                  "need_block", 1), on_step);
        return;
    }
    case 1:
        if (err) { exec_fail(c, err); return; }
        ask(c, c->safe, json_pack("{s s}", "op", "session_new"), on_step);
        return;
    default:
        bearer_reply(c, err, data);
    }
}

static void complete_session(actx *c, int err, json_t *data)
{
    if (c->step++ == 0) { ask(c, c->safe, json_pack("{s s}", "op", "session_new"), on_step); return; }
    bearer_reply(c, err, data);
}

static void complete_revoke(actx *c, int err, json_t *data)
{
    (void)data;
    if (c->step++ == 0) { ask(c, c->safe, json_pack("{s s}", "op", "mfa_del"), on_step); return; }
    if (err) exec_fail(c, err != CPS_ERR_E_UNAVAILABLE ? CPS_ERR_MFA_ERROR : err);
    else reply(c, 200, json_pack("{s b}", "success", 1));
}

/* A password change of an MFA account: the new block gets the old one's
** settings and a session (the old block is removed by the client). */
static void complete_totp_write(actx *c, int err, json_t *data)
{
    switch (c->step++) {
    case 0: {
        int e = verify_block(json_object_get(c->body, "content"));
        if (e) { exec_fail(c, e); return; }
        ask(c, c->other, json_pack("{s s}", "op", "state"), on_step);
        return;
    }
    case 1:
        if (err) { exec_fail(c, err); return; }
        if (!json_is_object(json_object_get(data, "mfa"))) { exec_fail(c, CPS_ERR_NO_MFA_CONFIGURED); return; }
        c->keep = json_deep_copy(json_object_get(data, "mfa"));
        ask(c, c->safe, write_args(c, false), on_step);
        return;
    case 2:
        if (err) { exec_fail(c, err != CPS_ERR_E_UNAVAILABLE ? CPS_ERR_BLOCK_WRITE_ERROR : err); return; }
        ask(c, c->safe, json_pack("{s s s O}", "op", "mfa_set", "mfa", c->keep), on_step);
        return;
    case 3:
        if (err) { exec_fail(c, err); return; }
        ask(c, c->safe, json_pack("{s s}", "op", "session_new"), on_step);
        return;
    default:
        bearer_reply(c, err, data);
    }
}

static void complete_totp_remove(actx *c, int err, json_t *data)
{
    (void)data;
    switch (c->step++) {
    case 0: ask(c, c->safe, remove_args(c, false), on_step); return;
    case 1:
        if (err) { exec_fail(c, err); return; }
        ask(c, c->safe, json_pack("{s s}", "op", "mfa_del"), on_step);
        return;
    default:
        if (err) exec_fail(c, err != CPS_ERR_E_UNAVAILABLE ? CPS_ERR_MFA_ERROR : err);
        else reply(c, 200, json_pack("{s b}", "success", 1));
    }
}

/* docs/protocol/http.md 9.4 (SSO_* belong to an SSO plugin). */
static const cmd_def CMDS[] = {
    { "TEST",              check_none,       NULL,         complete_test },
    { "UPLOAD_COOKIE",     check_none,       NULL,         complete_cookie },
    { "MFA_CHECK",         check_none,       state_nomfa,  complete_empty },
    { "WRITE_BLOCK",       check_write,      state_nomfa,  complete_write },
    { "REMOVE_BLOCK",      check_none,       state_nomfa,  complete_remove },
    { "TOTP_SETUP",        check_setup,      state_setup,  complete_setup },
    { "TOTP_VALIDATE",     check_code,       state_code,   complete_session },
    { "TOTP_MFA_CHECK",    check_auth,       state_code,   complete_empty },
    { "TOTP_REVOKE",       check_revoke,     state_revoke, complete_revoke },
    { "TOTP_WRITE_BLOCK",  check_totp_write, state_code,   complete_totp_write },
    { "TOTP_REMOVE_BLOCK", check_auth,       state_code,   complete_totp_remove },
};

static const cmd_def *find_cmd(json_t *name)
{
    const char *s = json_string_value(name);
    for (size_t i = 0; s && i < sizeof CMDS / sizeof CMDS[0]; i++)
        if (!strcmp(CMDS[i].name, s)) return &CMDS[i];
    return NULL;
}

/* The command and key checks, shared by both rounds: a message for the
** client (not an error code), or NULL. */
static const char *check_request(actx *c)
{
    c->cmd = find_cmd(json_object_get(c->body, "command"));
    if (!c->cmd) return "invalid command";
    const char *pub = json_string_value(json_object_get(c->body, "publicKey"));
    if (!ids_safe_key(pub, c->safe)) return "Invalid key";
    memcpy(c->pub, pub, IDS_KEY_LEN + 1);
    return NULL;
}

/* ---- bounds on unauthenticated work (docs/protocol/http.md 9.5) ------------
** Round 1 needs no signature, so what it may make the server store is
** bounded: the size of one challenge, the challenges outstanding per key
** and in total.  `pending` lists them (with their key) until answered or
** expired; it is saved as the record INDEX_KEY at most every second, so a
** restart collects the records of an earlier run too (records cannot be
** listed).  Wrong TOTP codes are limited per key and minute. */

typedef struct pend { uint64_t exp; char safe[IDS_KEY_LEN + 1]; } pend;
typedef struct otp_fail { uint64_t since; uint64_t n; } otp_fail;

static size_t *key_count(const char *safe) { return A.per_key ? strmap_get(A.per_key, safe) : NULL; }

/* Room for one more challenge of `safe`? */
static bool challenge_room(const char *safe)
{
    size_t *n = key_count(safe);
    return A.pending && strmap_count(A.pending) < A.max_challenges && (!n || *n < A.max_per_key);
}

static void forget_pending(const char *txid)
{
    pend *p = A.pending ? strmap_del(A.pending, txid) : NULL;
    if (!p) return;
    size_t *n = key_count(p->safe);
    if (n && --*n == 0) free(strmap_del(A.per_key, p->safe));
    free(p);
    A.index_dirty = true;
}

static int pend_add(const char *txid, const char *safe, uint64_t exp)
{
    forget_pending(txid);       /* a txid is listed once */
    pend *p = malloc(sizeof *p);
    size_t *n = key_count(safe);
    size_t *fresh = n ? NULL : calloc(1, sizeof *fresh);
    if (!p || (!n && (!fresh || strmap_put(A.per_key, safe, fresh)))) { free(p); free(fresh); return CPS_ENOMEM; }
    if (!n) n = fresh;
    p->exp = exp;
    snprintf(p->safe, sizeof p->safe, "%s", safe);
    if (strmap_put(A.pending, txid, p)) {
        free(p);
        if (!*n) free(strmap_del(A.per_key, safe));
        return CPS_ENOMEM;
    }
    ++*n;
    A.index_dirty = true;
    return CPS_OK;
}

/* A key with otp_max_fails wrong codes in the current minute is refused
** without checking, with the code CryptPad gives a wrong one (INVALID_OTP). */
static bool otp_locked(const char *safe)
{
    otp_fail *f = A.otp_fails ? strmap_get(A.otp_fails, safe) : NULL;
    return f && API->now_ms() - f->since < OTP_WINDOW_MS && f->n >= A.otp_max_fails;
}

static void otp_failed(const char *safe)
{
    uint64_t now = API->now_ms();
    otp_fail *f = A.otp_fails ? strmap_get(A.otp_fails, safe) : NULL;
    if (!f) {
        if (!A.otp_fails || !(f = calloc(1, sizeof *f))) return;
        if (strmap_put(A.otp_fails, safe, f)) { free(f); return; }
    }
    if (now - f->since >= OTP_WINDOW_MS) { f->since = now; f->n = 0; }
    f->n++;
}

/* ---- round 1 ------------------------------------------------------------ */

static void on_put(void *ud, int status)
{
    actx *c = ud;
    if (status) {
        API->log(A.self, CPS_LOG_ERROR, "challenge %s: %s", c->txid, API->errname(status));
        forget_pending(c->txid);
        fail(c, "Internal server error 6250");
        return;
    }
    reply(c, 200, json_pack("{s s s s}", "txid", c->txid, "date", c->date));
}

/* ---- where challenges live: the storage node owning the txid -------------
** (docs/protocol/cluster.md 3.8: round 2 may come to another front than round 1).  In one
** process that node is here and the records are written directly. */

static bool txid_chars(const char *s);

static bool txid_remote(const char *txid, char *node, size_t n)
{
    return API->owner(A.self, "storage", txid, node, n) && !API->node_is_local(A.self, node);
}

static void on_take_remote(void *ud, int error, json_t *data);

static void remote_put_done(void *ud, int error, json_t *data)
{
    (void)data;
    on_put(ud, error ? CPS_EIO : CPS_OK);
}

/* AUTH_CHALLENGE {op: "put"|"take"|"del", txid, text?} on the txid's node;
** "take" answers the text and deletes it in one step (answerable once). */
typedef struct ctake { cps_call *call; char txid[TXID_LEN + 1]; char *text; size_t len; } ctake;

static void take_deleted(void *ud, int status)
{
    ctake *t = ud;
    if (status && status != CPS_ENOENT) API->reply(t->call, CPS_EIO, NULL);
    else API->reply(t->call, CPS_OK, json_pack("{s s%}", "text", t->text, t->len));
    free(t->text);
    free(t);
}

static void take_got(void *ud, int status, const char *data, size_t len)
{
    ctake *t = ud;
    const cps_storage_backend *b = API->storage(A.self, NULL);
    if (status || !b) { API->reply(t->call, status == CPS_ENOENT ? CPS_ENOENT : CPS_EIO, NULL); free(t); return; }
    t->text = malloc(len + 1);
    if (!t->text) { API->reply(t->call, CPS_ENOMEM, NULL); free(t); return; }
    memcpy(t->text, data, len);
    t->text[len] = 0;
    t->len = len;
    if (b->record_del(b->state, NS_CHALLENGES, t->txid, take_deleted, t)) take_deleted(t, CPS_EIO);
}

static void simple_done(void *ud, int status) { API->reply(ud, status, NULL); }

static int challenge_cmd(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *op = json_string_value(json_object_get(args, "op"));
    const char *txid = json_string_value(json_object_get(args, "txid"));
    json_t *text = json_object_get(args, "text");
    const cps_storage_backend *b = API->storage(A.self, NULL);
    if (!op || !txid || strlen(txid) != TXID_LEN || !txid_chars(txid) || !b) return CPS_EINVAL;
    int rc;
    if (!strcmp(op, "put") && json_is_string(text)) {
        rc = b->record_put(b->state, NS_CHALLENGES, txid, json_string_value(text), json_string_length(text), simple_done, call);
    } else if (!strcmp(op, "del")) {
        rc = b->record_del(b->state, NS_CHALLENGES, txid, simple_done, call);
    } else if (!strcmp(op, "take")) {
        ctake *t = calloc(1, sizeof *t);
        if (!t) return CPS_ENOMEM;
        t->call = call;
        memcpy(t->txid, txid, TXID_LEN + 1);
        rc = b->record_get(b->state, NS_CHALLENGES, txid, take_got, t);
        if (rc) free(t);
    } else {
        return CPS_EINVAL;
    }
    return rc ? rc : CPS_ASYNC;
}

/* The challenge text is the client's own body with txid and date appended
** as its last members: exactly what the client signs (docs/protocol/http.md 9.2). */
static void issue(actx *c)
{
    const cps_storage_backend *b = API->storage(A.self, NULL);
    if (!challenge_room(c->safe)) {   /* too many outstanding: the client may retry later */
        reply(c, 429, json_pack("{s s}", "error", "EBUSY"));
        return;
    }
    auth_random_id(c->txid);
    iso_date(API->now_ms(), c->date);
    if (pend_add(c->txid, c->safe, API->now_ms() + A.ttl_ms)) { fail(c, "Internal server error 6250"); return; }
    int w = snprintf(c->text + c->tlen, 128, ",\"txid\":\"%s\",\"date\":\"%s\"}", c->txid, c->date);
    c->tlen += (size_t)w;
    char node[64];
    if (txid_remote(c->txid, node, sizeof node)) {
        int rc = API->query(A.self, node, "AUTH_CHALLENGE",
                            json_pack("{s s s s s s%}", "op", "put", "txid", c->txid, "text", c->text, c->tlen),
                            0, remote_put_done, c);
        if (rc) remote_put_done(c, rc, NULL);   /* refused: the callback will not run */
        return;
    }
    int rc = b ? b->record_put(b->state, NS_CHALLENGES, c->txid, c->text, c->tlen, on_put, c) : CPS_EIO;
    if (rc) on_put(c, rc);
}

static void on_state(void *ud, int err, json_t *data)
{
    actx *c = ud;
    if (err == CPS_ERR_E_UNAVAILABLE) {
        reply(c, 503, json_pack("{s s}", "error", "Service unavailable"));
        return;
    }
    const char *key = c->other[0] ? c->other : c->safe;   /* the key whose code is checked */
    if (!err && c->code && otp_locked(key)) { fail(c, API->errname(CPS_ERR_INVALID_OTP)); return; }
    int e = err ? err : c->cmd->check_state(c, data);
    if (e == CPS_ERR_INVALID_OTP) otp_failed(key);
    if (e) { fail(c, API->errname(e)); return; }
    issue(c);
}

static void round1(cps_http *req, json_t *body, const char *raw, size_t len)
{
    actx *c = ctx_new(req, body);
    if (!c) { auth_respond_json(req, 500, NULL); return; }
    /* Members named like the appended ones would make the signed text
    ** ambiguous; the clients never send them in round 1. */
    if (json_object_get(body, "txid") || json_object_get(body, "date")) { fail(c, "invalid request"); return; }
    const char *msg = check_request(c);
    if (msg) { fail(c, msg); return; }
    int e = c->cmd->check(c);
    if (e) { fail(c, API->errname(e)); return; }
    while (len && (raw[len - 1] == ' ' || raw[len - 1] == '\n' || raw[len - 1] == '\r' || raw[len - 1] == '\t')) len--;
    if (len + 128 > A.max_challenge_bytes) {   /* what an unsigned request may have stored */
        reply(c, 413, json_pack("{s s}", "error", "Request too large"));
        return;
    }
    c->text = malloc(len + 128);
    if (!c->text || !len || raw[len - 1] != '}') { fail(c, "invalid request"); return; }
    memcpy(c->text, raw, len - 1);
    c->tlen = len - 1;
    if (!c->cmd->check_state) { issue(c); return; }
    ask(c, c->other[0] ? c->other : c->safe, json_pack("{s s}", "op", "state"), on_state);
}

/* ---- round 2 ------------------------------------------------------------ */

static void on_del(void *ud, int status)
{
    actx *c = ud;
    if (status && status != CPS_ENOENT) { fail(c, "Unexpected response"); return; }
    forget_pending(c->txid);
    json_decref(c->body);
    c->body = json_loadb(c->text, c->tlen, JSON_REJECT_DUPLICATES, NULL);
    uint64_t issued, now = API->now_ms();
    if (!json_is_object(c->body) || !parse_iso(json_string_value(json_object_get(c->body, "date")), &issued)) {
        fail(c, "Unexpected response");
        return;
    }
    if (now > issued && now - issued > A.ttl_ms) { fail(c, "Expired challenge"); return; }
    if (check_request(c)) { fail(c, "Unexpected response"); return; }
    unsigned char pk[32];
    /* One Ed25519 check of a text under 100 kB takes tens of microseconds:
    ** cheap enough for the loop, no thread hop. */
    if (!c->sig_ok || auth_b64(c->pub, pk, sizeof pk, 32) != 32 ||
        crypto_sign_verify_detached(c->sig, (const unsigned char *)c->text, c->tlen, pk)) {
        fail(c, "Failed signature validation");
        return;
    }
    int e = c->cmd->check(c);
    if (e) { exec_fail(c, e); return; }
    c->step = 0;
    c->cmd->complete(c, CPS_OK, NULL);
}

static void on_get(void *ud, int status, const char *data, size_t len)
{
    actx *c = ud;
    if (status) { fail(c, "Unexpected response"); return; }
    c->text = malloc(len + 1);
    if (!c->text) { fail(c, "Unexpected response"); return; }
    memcpy(c->text, data, len);
    c->text[len] = 0;
    c->tlen = len;
    /* Single use: gone before the signature is even looked at. */
    const cps_storage_backend *b = API->storage(A.self, NULL);
    int rc = b->record_del(b->state, NS_CHALLENGES, c->txid, on_del, c);
    if (rc) on_del(c, rc);
}

static bool txid_chars(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '+' || *s == '-' || *s == '='))
            return false;
    return true;
}

static void round2(cps_http *req, json_t *body)
{
    actx *c = ctx_new(req, body);
    if (!c) { auth_respond_json(req, 500, NULL); return; }
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
        if (strcmp(k, "sig") && strcmp(k, "txid")) { fail(c, "extraneous parameters"); return; }
    const char *txid = json_string_value(json_object_get(body, "txid"));
    const char *sig = json_string_value(json_object_get(body, "sig"));
    if (!txid || strlen(txid) != TXID_LEN) { fail(c, "Invalid txid"); return; }
    if (!sig || strlen(sig) != 88) { fail(c, "Missing signature"); return; }
    const cps_storage_backend *b = API->storage(A.self, NULL);
    /* A txid is a record name: nothing outside the issued alphabet, and
    ** one answer at a time (the second would read it before the delete). */
    if (!txid_chars(txid) || !b || !A.answering || strmap_get(A.answering, txid)) {
        fail(c, "Unexpected response");
        return;
    }
    memcpy(c->txid, txid, TXID_LEN + 1);
    if (strmap_put(A.answering, c->txid, &MARK)) { fail(c, "Unexpected response"); return; }
    c->answering = true;
    c->sig_ok = auth_b64(sig, c->sig, sizeof c->sig, 64) == 64;
    char node[64];
    if (txid_remote(c->txid, node, sizeof node)) {
        int rc = API->query(A.self, node, "AUTH_CHALLENGE", json_pack("{s s s s}", "op", "take", "txid", c->txid),
                            0, on_take_remote, c);
        if (rc) on_take_remote(c, rc, NULL);   /* refused: the callback will not run */
        return;
    }
    int rc = b->record_get(b->state, NS_CHALLENGES, c->txid, on_get, c);
    if (rc) on_get(c, rc, NULL, 0);
}

/* The text came from the txid's node, already deleted there. */
static void on_take_remote(void *ud, int error, json_t *data)
{
    actx *c = ud;
    json_t *text = json_object_get(data, "text");
    if (error || !json_is_string(text)) { fail(c, "Unexpected response"); return; }
    c->tlen = json_string_length(text);
    c->text = malloc(c->tlen + 1);
    if (!c->text) { fail(c, "Unexpected response"); return; }
    memcpy(c->text, json_string_value(text), c->tlen + 1);
    on_del(c, CPS_OK);
}

/* ---- the route ------------------------------------------------------------ */

static int auth_post(cps_http *req, void *ud)
{
    (void)ud;
    const char *path = API->http_path(req);
    if (strcmp(path, "/api/auth") && strcmp(path, "/api/auth/")) return CPS_ENOENT;
    size_t len = 0;
    const char *raw = API->http_body(req, &len);
    json_t *body = raw && len ? json_loadb(raw, len, JSON_REJECT_DUPLICATES, NULL) : NULL;
    if (!body) {
        auth_respond_json(req, 400, json_pack("{s s}", "error", "Invalid JSON"));
        return CPS_OK;
    }
    if (json_is_object(body) && truthy(json_object_get(body, "txid"))) round2(req, body);
    else if (json_is_object(body) && truthy(json_object_get(body, "command"))) round1(req, body, raw, len);
    else {
        json_decref(body);
        auth_respond_json(req, 500, json_pack("{s s}", "error", "invalid request"));
    }
    return CPS_ASYNC;    /* every path above answers, now or later */
}

/* ---- the storage half's command ------------------------------------------ */

static void store_replied(void *ud, int err, json_t *data)
{
    API->reply(ud, err, data ? json_incref(data) : NULL);
}

static int store_cmd(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    int err = auth_store_run(args, store_replied, call);
    if (!err) return CPS_ASYNC;
    API->reply(call, err, NULL);
    return CPS_OK;
}

/* ---- abandoned challenges ------------------------------------------------- */

typedef struct gcl { char (*ids)[TXID_LEN + 1]; size_t n; uint64_t now; } gcl;

static void gc_collect(const char *key, void *val, void *ud)
{
    gcl *l = ud;
    if (((pend *)val)->exp <= l->now) memcpy(l->ids[l->n++], key, TXID_LEN + 1);
}

static void gc_done(void *ud, int status) { (void)ud; (void)status; }

/* Delete one challenge record where it lives. */
static void challenge_del(const char *txid)
{
    const cps_storage_backend *b = API->storage(A.self, NULL);
    char node[64];
    if (txid_remote(txid, node, sizeof node))
        API->send(A.self, node, "AUTH_CHALLENGE", json_pack("{s s s s}", "op", "del", "txid", txid));
    else if (b)
        b->record_del(b->state, NS_CHALLENGES, txid, gc_done, NULL);   /* refused: nothing to do */
}

/* Keys whose minute of wrong TOTP codes is over. */
typedef struct okl { char (*keys)[IDS_KEY_LEN + 1]; size_t n; uint64_t now; } okl;

static void otp_collect(const char *key, void *val, void *ud)
{
    okl *l = ud;
    if (l->now - ((otp_fail *)val)->since >= OTP_WINDOW_MS) snprintf(l->keys[l->n++], IDS_KEY_LEN + 1, "%s", key);
}

static void otp_gc(void)
{
    size_t n = A.otp_fails ? strmap_count(A.otp_fails) : 0;
    okl l = { n ? malloc(n * sizeof *l.keys) : NULL, 0, API->now_ms() };
    if (!l.keys) return;
    strmap_each(A.otp_fails, otp_collect, &l);
    for (size_t i = 0; i < l.n; i++) free(strmap_del(A.otp_fails, l.keys[i]));
    free(l.keys);
}

/* Expired challenges (of this run, and of earlier ones once the index
** record is loaded) are deleted; a late answer would be refused anyway. */
static void gc_tick(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    otp_gc();
    size_t n = strmap_count(A.pending);
    if (!n) return;
    gcl l = { malloc(n * sizeof *l.ids), 0, API->now_ms() };
    if (!l.ids) return;
    strmap_each(A.pending, gc_collect, &l);
    for (size_t i = 0; i < l.n; i++) {
        challenge_del(l.ids[i]);
        forget_pending(l.ids[i]);
    }
    free(l.ids);
}

/* ---- the index of outstanding challenges (record INDEX_KEY) ---------------
** {txid: [expiry ms, safe key]}, rewritten when it changed, one write at a
** time.  Loaded once at start-up: expired entries are deleted at once, the
** others collected when they expire. */

static void index_fill(const char *key, void *val, void *ud)
{
    pend *p = val;
    json_object_set_new(ud, key, json_pack("[I s]", (json_int_t)p->exp, p->safe));
}

static void index_saved(void *ud, int status)
{
    (void)ud;
    A.index_saving = false;
    if (status && !A.closing) {
        A.index_dirty = true;       /* retried at the next tick */
        API->log(A.self, CPS_LOG_WARN, "saving the challenge index: %s", API->errname(status));
    }
}

static void index_loaded(void *ud, int status, const char *data, size_t len)
{
    (void)ud;
    A.index_loading = false;
    if (A.closing) return;
    A.index_loaded = true;
    json_t *idx = status ? NULL : json_loadb(data, len, 0, NULL);
    uint64_t now = API->now_ms();
    size_t dropped = 0;
    const char *txid;
    json_t *v;
    json_object_foreach(idx, txid, v) {
        json_int_t exp = json_integer_value(json_array_get(v, 0));
        const char *safe = json_string_value(json_array_get(v, 1));
        if (strlen(txid) != TXID_LEN || !txid_chars(txid) || !safe || strlen(safe) != IDS_KEY_LEN) continue;
        if (exp <= 0 || (uint64_t)exp <= now) { challenge_del(txid); dropped++; }
        else if (!strmap_get(A.pending, txid)) pend_add(txid, safe, (uint64_t)exp);
    }
    /* Rewrite the index only if it changed: a server that never issued a
    ** challenge writes nothing. */
    if (dropped) {
        A.index_dirty = true;
        API->log(A.self, CPS_LOG_INFO, "collected %zu expired challenges of an earlier run", dropped);
    }
    json_decref(idx);
}

static void saver_tick(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    const cps_storage_backend *b = API->storage(A.self, NULL);
    if (!b) return;             /* a front without storage: nothing to keep */
    if (!A.index_loaded) {
        if (!A.index_loading) {
            A.index_loading = true;
            if (b->record_get(b->state, NS_CHALLENGES, INDEX_KEY, index_loaded, NULL)) index_loaded(NULL, CPS_EIO, NULL, 0);
        }
        return;
    }
    if (!A.index_dirty || A.index_saving) return;
    json_t *idx = json_object();
    strmap_each(A.pending, index_fill, idx);
    char *text = json_dumps(idx, JSON_COMPACT);
    json_decref(idx);
    if (!text) return;
    A.index_dirty = false;
    A.index_saving = true;
    if (b->record_put(b->state, NS_CHALLENGES, INDEX_KEY, text, strlen(text), index_saved, NULL)) index_saved(NULL, CPS_EIO);
    free(text);
}

/* ---- load and unload ------------------------------------------------------ */

/* RFC 6238 appendix B at T = 59 s: 94287082, whose last 6 digits are
** 287082; RFC 2202 test 2 for HMAC-SHA1 itself. */
static bool self_test(void)
{
    static const unsigned char want[20] = { 0xef, 0xfc, 0xdf, 0x6a, 0xe5, 0xeb, 0x2f, 0xa2, 0xd2, 0x74,
                                            0x16, 0xd5, 0xf1, 0x84, 0xdf, 0x9c, 0x25, 0x9a, 0x7c, 0x79 };
    unsigned char mac[20];
    hmac_sha1((const unsigned char *)"Jefe", 4, (const unsigned char *)"what do ya want for nothing?", 28, mac);
    return !memcmp(mac, want, 20) &&
           hotp6((const unsigned char *)"12345678901234567890", 20, 59 / 30) == 287082 &&
           totp_check("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "287082", 59000);
}

static void auth_fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    A.closing = true;
    if (A.live) API->log(A.self, CPS_LOG_INFO, "%zu requests still finishing at unload", A.live);
    if (A.gc) { API->timer_stop(A.gc); A.gc = NULL; }
    if (A.saver) { API->timer_stop(A.saver); A.saver = NULL; }
    if (A.pending) { strmap_free(A.pending, free); A.pending = NULL; }
    if (A.per_key) { strmap_free(A.per_key, free); A.per_key = NULL; }
    if (A.otp_fails) { strmap_free(A.otp_fails, free); A.otp_fails = NULL; }
    if (A.answering) { strmap_free(A.answering, NULL); A.answering = NULL; }
    auth_store_fini();
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    if (A.keys) return CPS_EBUSY;     /* an earlier instance still drains */
    if (sodium_init() < 0) return CPS_EINTERNAL;
    memset(&A, 0, sizeof A);
    A.api = a;
    A.self = self;
    if (!self_test()) {
        a->log(self, CPS_LOG_ERROR, "TOTP self-test failed");
        return CPS_EINTERNAL;
    }
    json_t *cfg = a->config(self);
    A.ttl_ms = conf_positive(cfg, "challenge_ttl_ms", DEFAULT_TTL_MS);
    A.session_ms = conf_positive(cfg, "session_hours", DEFAULT_SESSION_HOURS) * 3600000;
    A.restrict_registration = json_is_true(a->config_get(self, "instance.restrict_registration"));
    A.max_challenge_bytes = conf_positive(cfg, "max_challenge_bytes", DEFAULT_CHALLENGE_BYTES);
    A.max_challenges = conf_positive(cfg, "max_challenges", DEFAULT_MAX_CHALLENGES);
    A.max_per_key = conf_positive(cfg, "max_challenges_per_key", DEFAULT_PER_KEY);
    A.otp_max_fails = conf_positive(cfg, "totp_failures_per_minute", DEFAULT_OTP_FAILS);
    A.pending = strmap_new();
    A.answering = strmap_new();
    A.per_key = strmap_new();
    A.otp_fails = strmap_new();
    int rc = A.pending && A.answering && A.per_key && A.otp_fails ? auth_store_init() : CPS_ENOMEM;
    /* CPS_ENOENT: no storage node in this process (a cluster's front). */
    if (!rc) rc = a->register_role_command(self, "storage", "AUTH_STORE", store_cmd, NULL);
    if (!rc) rc = a->register_role_command(self, "storage", "AUTH_BLOCK_READ", auth_block_read_cmd, NULL);
    if (!rc) rc = a->register_role_command(self, "storage", "AUTH_CHALLENGE", challenge_cmd, NULL);
    if (rc == CPS_ENOENT) rc = CPS_OK;
    if (!rc) rc = a->register_http(self, "POST", "/api/auth", MAX_BODY, auth_post, NULL);
    if (!rc) rc = a->register_http(self, "GET", "/block/", 0, auth_block_get, NULL);
    uint64_t every = A.ttl_ms < 1000 ? 1000 : A.ttl_ms > 60000 ? 60000 : A.ttl_ms;
    if (!rc && !(A.gc = a->timer_start(self, every, every, gc_tick, NULL))) rc = CPS_ENOMEM;
    /* the first tick loads the index of an earlier run (the backend is up by then) */
    if (!rc && !(A.saver = a->timer_start(self, 50, INDEX_SAVE_MS, saver_tick, NULL))) rc = CPS_ENOMEM;
    if (rc) { auth_fini(self, NULL); A.closing = false; }
    return rc;
}

CPS_PLUGIN_DEFINE("auth", "1.0.0", plugin_init, auth_fini);
