/*
** rpc.c - the RPC dispatcher of the core (spec docs/protocol/rpc.md §1-§3): anonymous
** [txid, [CMD, args]] and signed [txid, [sig, key, cookie, CMD, args]]
** calls to the commands registered through the ABI.  It owns the cookie
** sessions (per public key) and the keys each connection authenticated
** with (restricted channels ask for them with GET_AUTH_KEYS).  Signatures
** are checked on the thread pool, over the exact text the client signed.
** ADMIN calls are checked against the live admin list and dispatched to the
** admin commands of the registry (docs/protocol/admin.md §2).
*/
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "core.h"
#include "conf.h"
#include "ids.h"
#include "text.h"

#define SESSION_IDLE_MS (5 * 60 * 1000)
#define COOKIE_MAX_AGE_MS (5 * 60 * 1000)
#define MAX_SESSIONS 100000   /* default of core.max_sessions */
#define MAX_PER_CONNECTION 256  /* default of core.max_sessions_per_connection */

/* `owner`: the connection (netflux user id) whose signed call opened it. */
typedef struct session { uint64_t atime; char token[20]; char owner[40]; } session;

static struct {
    strmap *sessions;     /* safe key -> session */
    strmap *auth;         /* user id -> json array of keys */
    cps_timer *sweep;
    size_t max_sessions;  /* core.max_sessions */
    strmap *opened;       /* user id -> size_t: its sessions still in the table */
    size_t max_per_conn;  /* core.max_sessions_per_connection */
    long pid;
    cps_counter *c_signed, *c_badsig;
} R;

/* ---- replies ---- */

static void answer(cps_call *call, json_t *reply)
{
    char *text = json_dumps(reply, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(reply);
    API->reply(call, CPS_OK, json_pack("{s [s]}", "messages", text ? text : "null"));
    free(text);
}

/* [txid, "ERROR", name]: the client sees the error's wire name. */
static void answer_error(cps_call *call, json_t *txid, int err)
{
    answer(call, json_pack("[O s s]", txid, "ERROR", API->errname(err)));
}

/* ---- cookie sessions (§3.4) ---- */

/* Sessions are kept by safe key: one per key however it is written.  Only
** a verified signed call (or a valid cookie) may create or touch one
** (docs/protocol/rpc.md §3.3): otherwise random keys would fill the table and
** lock every real user out with NO_COOKIE.  Keys cost nothing to make, so
** one connection may also hold only so many sessions at once
** (core.max_sessions_per_connection, §3.4): a flood of fresh keys from one
** connection fills its own share, never the table. */
static size_t *opened_by(const char *user) { return strmap_get(R.opened, user); }

/* Whether `user` may open one more session; counts it if so. */
static bool opened_add(const char *user)
{
    if (!*user) return true;   /* no connection to charge (not a client's call) */
    size_t *n = opened_by(user);
    if (n && *n >= R.max_per_conn) return false;
    if (!n) {
        if (!(n = calloc(1, sizeof *n))) return false;
        if (strmap_put(R.opened, user, n)) { free(n); return false; }
    }
    (*n)++;
    return true;
}

static void opened_drop(const char *user)
{
    size_t *n = opened_by(user);
    if (n && --*n == 0) free(strmap_del(R.opened, user));
}

static void session_free(session *s)
{
    if (!s) return;
    opened_drop(s->owner);
    free(s);
}

static session *session_touch(const char *sk, const char *user)
{
    session *s = strmap_get(R.sessions, sk);
    if (!s) {
        if (strmap_count(R.sessions) >= R.max_sessions) return NULL;
        if (!opened_add(user)) return NULL;
        s = calloc(1, sizeof *s);
        if (!s) { opened_drop(user); return NULL; }
        snprintf(s->owner, sizeof s->owner, "%s", user);
        uint64_t t;
        randombytes_buf(&t, sizeof t);
        snprintf(s->token, sizeof s->token, "%llx", (unsigned long long)(t & ((1ULL << 53) - 1)));
        if (strmap_put(R.sessions, sk, s)) { session_free(s); return NULL; }
    }
    s->atime = API->now_ms();
    return s;
}

static void cookie_of(session *s, char *out, size_t n)
{
    uint64_t now = API->now_ms();
    snprintf(out, n, "%llu|%ld|%s", (unsigned long long)(now - now % 5000), R.pid, s->token);
}

static bool cookie_valid(session *s, const char *cookie)
{
    if (!s || !cookie) return false;
    char buf[128];
    if (strlen(cookie) >= sizeof buf) return false;
    strcpy(buf, cookie);
    char *t = buf, *pid = strchr(t, '|');
    if (!pid) return false;
    *pid++ = 0;
    char *tok = strchr(pid, '|');
    if (!tok) return false;
    *tok++ = 0;
    if (strchr(tok, '|')) return false;
    char *e;
    unsigned long long when = strtoull(t, &e, 10);
    if (!*t || *e) return false;
    uint64_t now = API->now_ms();
    if (when + COOKIE_MAX_AGE_MS < now || when > now + 60000) return false;
    long p = strtol(pid, &e, 10);
    if (!*pid || *e || p != R.pid) return false;
    return strcmp(tok, s->token) == 0;
}

static void sweep(cps_timer *t, void *ud);

typedef struct idle_scan { uint64_t now; json_t *dead; } idle_scan;

static void find_idle(const char *key, void *v, void *ud)
{
    idle_scan *w = ud;
    session *s = v;
    if (w->now - s->atime > SESSION_IDLE_MS) json_array_append_new(w->dead, json_string(key));
}

static void sweep(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    idle_scan w = { API->now_ms(), json_array() };
    strmap_each(R.sessions, find_idle, &w);
    size_t i;
    json_t *k;
    json_array_foreach(w.dead, i, k) session_free(strmap_del(R.sessions, json_string_value(k)));
    json_decref(w.dead);
}

/* ---- authenticated keys per connection (§3.6) ---- */

static void auth_add(const char *user, const char *key)
{
    json_t *keys = strmap_get(R.auth, user);
    if (!keys) { keys = json_array(); if (strmap_put(R.auth, user, keys)) { json_decref(keys); return; } }
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) if (strcmp(json_string_value(k), key) == 0) return;
    if (json_array_size(keys) < 64) json_array_append_new(keys, json_string(key));
}

static void auth_remove(const char *user, const char *key)
{
    json_t *keys = strmap_get(R.auth, user);
    for (size_t i = json_array_size(keys); i > 0; i--)
        if (strcmp(json_string_value(json_array_get(keys, i - 1)), key) == 0) json_array_remove(keys, i - 1);
}

void core_forget_user(const char *user)
{
    json_decref(strmap_del(R.auth, user));
}

static int cmd_get_auth_keys(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *user = json_string_value(json_object_get(args, "user"));
    json_t *keys = user ? strmap_get(R.auth, user) : NULL;
    API->reply(call, CPS_OK, json_pack("{s o}", "keys", keys ? json_incref(keys) : json_array()));
    return CPS_OK;
}

/* End a key's cookie session: EXPIRE_SESSION, or a handler that asked for
** it with rpc_end_session (REMOVE_PINS does). */
static void end_session(const char *key)
{
    char sk[IDS_KEY_LEN + 1];
    if (ids_safe_key(key, sk)) session_free(strmap_del(R.sessions, sk));
}

/* ---- admin rights (docs/protocol/admin.md §1.1, §2.1) ---- */

/* Whether `key` (as signed: unsafe, or safe) is in the live admin list,
** instance.admin_keys: canonical unsafe keys, kept by the admin decree
** scripts from admin.keys and the decree log. */
static bool is_admin(const char *key)
{
    char unsafe[64];
    size_t n = strlen(key);
    if (n != 44) return false;
    for (size_t i = 0; i <= n; i++) unsafe[i] = key[i] == '-' ? '/' : key[i];
    json_t *list = API->config_get(C.self, "instance.admin_keys");
    size_t i;
    json_t *k;
    json_array_foreach(list, i, k)
        if (json_is_string(k) && !strcmp(json_string_value(k), unsafe)) return true;
    return false;
}

/* ADMIN_KEY_ONLINE {key} -> {online}: whether a connection of this core
** authenticated with the key (IS_USER_ONLINE of the admin commands). */
typedef struct online_scan { const char *key; bool found; } online_scan;

static void find_key(const char *user, void *v, void *ud)
{
    (void)user;
    online_scan *w = ud;
    size_t i;
    json_t *k;
    json_array_foreach((json_t *)v, i, k)
        if (!strcmp(json_string_value(k), w->key)) w->found = true;
}

static int cmd_key_online(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *key = json_string_value(json_object_get(args, "key"));
    if (!key) return CPS_EINVAL;
    online_scan w = { key, false };
    strmap_each(R.auth, find_key, &w);
    API->reply(call, CPS_OK, json_pack("{s b}", "online", w.found));
    return CPS_OK;
}

/* ---- dispatch ---- */

typedef struct call_state {
    cps_call *call;
    json_t *txid;
    char user[40];
    char key[64];
    char cmd[64];
    json_t *args;
    /* signature check */
    unsigned char sig[64], pub[32];
    char *text;
    size_t text_len;
    bool ok;
} call_state;

static void state_free(call_state *c)
{
    json_decref(c->txid);
    json_decref(c->args);
    free(c->text);
    free(c);
}

static void anon_done(void *ud, int error, json_t *value, unsigned flags)
{
    (void)flags;   /* an anonymous caller has no session to end */
    call_state *c = ud;
    if (error) answer_error(c->call, c->txid, error);
    else answer(c->call, json_pack("[O n O n]", c->txid, value ? value : json_null()));
    state_free(c);
}

/* [txid, cookie, ...value]: an array value is flattened one level (§3.5). */
static void auth_done(void *ud, int error, json_t *value, unsigned flags)
{
    call_state *c = ud;
    if (error) {
        answer_error(c->call, c->txid, error);
    } else {
        char cookie[96], sk[IDS_KEY_LEN + 1];
        session *s = ids_safe_key(c->key, sk) ? session_touch(sk, c->user) : NULL;
        if (!s && !strcmp(c->cmd, "COOKIE")) {   /* no room: say so, not an empty cookie */
            answer_error(c->call, c->txid, CPS_EBUSY);
            state_free(c);
            return;
        }
        if (s) cookie_of(s, cookie, sizeof cookie); else cookie[0] = 0;
        json_t *reply = json_pack("[O s]", c->txid, cookie);
        if (json_is_array(value)) json_array_extend(reply, value);
        else if (value && !json_is_null(value)) json_array_append(reply, value);
        answer(c->call, reply);
    }
    /* After the answer (which touched the session for its cookie): the
    ** next call must open a new one. */
    if (flags & CPS_RPC_END_SESSION) end_session(c->key);
    state_free(c);
}

static void verify_work(void *ud)
{
    call_state *c = ud;
    c->ok = crypto_sign_verify_detached(c->sig, (const unsigned char *)c->text, c->text_len, c->pub) == 0;
}

static void verified(void *ud, int status)
{
    call_state *c = ud;
    if (status != CPS_OK) { answer_error(c->call, c->txid, CPS_ECANCELED); state_free(c); return; }
    if (!c->ok) {
        API->counter_add(R.c_badsig, 1);
        answer_error(c->call, c->txid, CPS_ERR_INVALID_SIGNATURE_OR_PUBLIC_KEY);
        state_free(c);
        return;
    }
    API->counter_add(R.c_signed, 1);
    if (!strcmp(c->cmd, "DESTROY")) {            /* no reply at all (§3.3 step 7) */
        auth_remove(c->user, c->key);
        API->reply(c->call, CPS_OK, json_object());
        state_free(c);
        return;
    }
    auth_add(c->user, c->key);
    if (!strcmp(c->cmd, "COOKIE")) { auth_done(c, CPS_OK, NULL, 0); return; }
    if (!strcmp(c->cmd, "ADMIN")) {
        /* FORBIDDEN before anything else is looked at (admin.md §2.1) */
        if (!is_admin(c->key)) { answer_error(c->call, c->txid, API->errcode("FORBIDDEN")); state_free(c); return; }
        const char *sub = json_string_value(json_array_get(c->args, 0));
        if (!sub || API->rpc_kind(C.self, sub) != CPS_RPC_ADMIN) {
            answer_error(c->call, c->txid, API->errcode("UNHANDLED_ADMIN_COMMAND"));
            state_free(c);
            return;
        }
        json_t *p = json_array_get(c->args, 1);
        int rc = API->rpc_call(C.self, sub, CPS_RPC_ADMIN, c->key, c->user, p ? json_incref(p) : json_null(),
                               auth_done, c);
        if (rc) { answer_error(c->call, c->txid, API->errcode("UNHANDLED_ADMIN_COMMAND")); state_free(c); }
        return;
    }
    if (!strcmp(c->cmd, "EXPIRE_SESSION")) {
        end_session(c->key);
        json_t *ok = json_string("OK");
        auth_done(c, CPS_OK, ok, 0);
        json_decref(ok);
        return;
    }
    int rc = API->rpc_call(C.self, c->cmd, CPS_RPC_AUTH, c->key, c->user, json_incref(c->args), auth_done, c);
    if (rc) { answer_error(c->call, c->txid, CPS_ERR_INVALID_RPC_CALL); state_free(c); }
}

static bool builtin(const char *cmd)
{
    return !strcmp(cmd, "COOKIE") || !strcmp(cmd, "DESTROY") || !strcmp(cmd, "EXPIRE_SESSION") ||
           !strcmp(cmd, "ADMIN");
}

static void signed_call(cps_call *call, json_t *txid, json_t *payload, json_t *args_obj)
{
    json_t *jkey = json_array_get(payload, 1), *jcookie = json_array_get(payload, 2);
    const char *cmd = json_string_value(json_array_get(payload, 3));
    const char *key = json_string_value(jkey);
    const char *user = json_string_value(json_object_get(args_obj, "user"));
    if (!key || json_string_length(jkey) > 60) { answer_error(call, txid, CPS_ERR_INVALID_MESSAGE_OR_PUBLIC_KEY); return; }
    if (!cmd || strlen(cmd) >= 64) { answer_error(call, txid, CPS_ERR_INVALID_RPC_CALL); return; }
    /* Look the session up without creating it: a COOKIE call gets its
    ** session in auth_done, once its signature verified (docs/protocol/rpc.md §3.3). */
    char sk[IDS_KEY_LEN + 1];
    session *s = ids_safe_key(key, sk) ? strmap_get(R.sessions, sk) : NULL;
    if (strcmp(cmd, "COOKIE") != 0 && !cookie_valid(s, json_string_value(jcookie))) {
        answer_error(call, txid, CPS_ERR_NO_COOKIE);
        return;
    }
    int kind = builtin(cmd) ? CPS_RPC_AUTH : API->rpc_kind(C.self, cmd);
    if (kind != CPS_RPC_AUTH && kind != CPS_RPC_COOKIE) {
        answer_error(call, txid, CPS_ERR_INVALID_RPC_CALL);
        return;
    }
    call_state *c = calloc(1, sizeof *c);
    if (!c) { answer_error(call, txid, CPS_ENOMEM); return; }
    c->call = call;
    c->txid = json_incref(txid);
    snprintf(c->user, sizeof c->user, "%s", user ? user : "");
    snprintf(c->key, sizeof c->key, "%s", key);
    snprintf(c->cmd, sizeof c->cmd, "%s", cmd);
    c->args = json_incref(json_array_get(payload, 4));
    if (kind == CPS_RPC_COOKIE) {              /* unsigned, cookie only (§3.7) */
        int rc = API->rpc_call(C.self, cmd, kind, c->key, c->user, json_incref(c->args), auth_done, c);
        if (rc) { answer_error(call, txid, CPS_ERR_INVALID_RPC_CALL); state_free(c); }
        return;
    }
    const char *sig = json_string_value(json_array_get(payload, 0));
    const char *text = json_string_value(json_object_get(args_obj, "signed"));
    unsigned char buf[96];
    size_t sl = sig ? b64_decode_lenient(sig, strlen(sig), buf, sizeof buf) : 0;
    size_t kl = b64_decode_lenient(key, strlen(key), c->pub, sizeof c->pub);
    if (sl != 64 || kl != 32 || !ids_is_key(key) || !text) {
        answer_error(call, txid, CPS_ERR_INVALID_SIGNATURE_OR_PUBLIC_KEY);
        state_free(c);
        return;
    }
    memcpy(c->sig, buf, 64);
    c->text_len = json_string_length(json_object_get(args_obj, "signed"));
    c->text = malloc(c->text_len + 1);
    if (!c->text) { answer_error(call, txid, CPS_ENOMEM); state_free(c); return; }
    memcpy(c->text, text, c->text_len + 1);
    if (API->work(C.self, verify_work, verified, c)) { answer_error(call, txid, CPS_EBUSY); state_free(c); }
}

/* RPC {user, front, request: [txid, payload], signed?} */
static int cmd_rpc(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_t *req = json_object_get(args, "request");
    json_t *txid = json_array_get(req, 0), *payload = json_array_get(req, 1);
    if (!json_is_string(txid)) return CPS_EINVAL;
    if (!json_is_array(payload)) { answer_error(call, txid, CPS_ERR_INVALID_ARG_FORMAT); return CPS_OK; }
    size_t n = json_array_size(payload);
    if (n == 0) { answer_error(call, txid, CPS_ERR_INSUFFICIENT_ARGS); return CPS_OK; }
    if (n == 5) { signed_call(call, txid, payload, args); return CPS_ASYNC; }
    const char *cmd = json_string_value(json_array_get(payload, 0));
    if (n != 2 || !cmd) { answer_error(call, txid, CPS_ERR_INVALID_ARG_FORMAT); return CPS_OK; }
    call_state *c = calloc(1, sizeof *c);
    if (!c) return CPS_ENOMEM;
    c->call = call;
    c->txid = json_incref(txid);
    const char *user = json_string_value(json_object_get(args, "user"));
    int rc = API->rpc_call(C.self, cmd, CPS_RPC_ANON, NULL, user, json_incref(json_array_get(payload, 1)),
                           anon_done, c);
    if (rc) { answer_error(call, txid, CPS_ERR_INVALID_ANON_RPC_COMMAND); state_free(c); return CPS_OK; }
    return CPS_ASYNC;
}

static void free_json(void *v) { json_decref(v); }

void core_rpc_fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    if (R.sweep) API->timer_stop(R.sweep);
    R.sweep = NULL;
    strmap_free(R.sessions, free);
    strmap_free(R.opened, free);
    strmap_free(R.auth, free_json);
    R.sessions = R.auth = R.opened = NULL;
}

int core_rpc_init(void)
{
    if (sodium_init() < 0) return CPS_EINTERNAL;
    R.pid = (long)getpid();
    R.max_sessions = (size_t)conf_positive(API->config(C.self), "max_sessions", MAX_SESSIONS);
    R.max_per_conn = (size_t)conf_positive(API->config(C.self), "max_sessions_per_connection", MAX_PER_CONNECTION);
    R.sessions = strmap_new();
    R.opened = strmap_new();
    R.auth = strmap_new();
    R.c_signed = API->counter(C.self, "rpc_signed_calls_total");
    R.c_badsig = API->counter(C.self, "rpc_bad_signatures_total");
    R.sweep = API->timer_start(C.self, 60000, 60000, sweep, NULL);
    int rc = API->register_command(C.self, "RPC", cmd_rpc, NULL);
    if (!rc) rc = API->register_command(C.self, "GET_AUTH_KEYS", cmd_get_auth_keys, NULL);
    if (!rc) rc = API->register_command(C.self, "ADMIN_KEY_ONLINE", cmd_key_online, NULL);
    return rc;
}
