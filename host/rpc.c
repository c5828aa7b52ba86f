/*
** rpc.c - the host-wide registry of client RPC commands.  The host does not
** know what the commands mean or how clients frame them: a dispatcher plugin
** calls cps_rpc_call, and the registered handler (C or Lua) answers through
** rpc_reply / rpc_error, now or later.  A handler that does not answer within
** limits.rpc_timeout_ms is answered ETIMEDOUT for it.
*/
#include <stdlib.h>
#include <string.h>
#include "host.h"

#define RPC_BUCKETS 256

typedef struct rpc_cmd {
    char *name;
    char *summary;              /* rpc_describe's text, or NULL */
    int kind;
    cps_rpc_fn fn;
    void *ud;
    cps_plugin *owner;
    struct rpc_cmd *next;
} rpc_cmd;

struct cps_rpc {
    rpc_cmd *cmd;
    char *key;
    char *caller;
    cps_rpc_done_fn done;
    void *ud;
    uint64_t deadline;
    uint64_t started_ns;        /* uv_hrtime at the call, for the latency histogram */
    bool in_handler, answered;
    unsigned flags;             /* CPS_RPC_END_SESSION ... */
    json_t *args;               /* kept until the call is freed: a handler
                                ** answering later may still read them */
    struct cps_rpc *prev, *next;   /* outstanding list */
};

static struct {
    rpc_cmd *buckets[RPC_BUCKETS];
    cps_rpc *outstanding;
    uv_timer_t sweep;
    bool sweeping;
    cps_counter *c_calls, *c_errors;
} RPC;   /* the RPC registry singleton */

static unsigned bucket(const char *s)
{
    unsigned h = 2166136261u;
    while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
    return h % RPC_BUCKETS;
}

static rpc_cmd *find(const char *name)
{
    for (rpc_cmd *c = RPC.buckets[bucket(name)]; c; c = c->next)
        if (strcmp(c->name, name) == 0) return c;
    return NULL;
}

static void sweep(uv_timer_t *t);

int cps_rpc_register(cps_plugin *p, const char *name, int kind, cps_rpc_fn fn, void *ud)
{
    if (!name || !*name || !fn || kind < CPS_RPC_ANON || kind > CPS_RPC_COOKIE)
        return CPS_EINVAL;
    rpc_cmd *old = find(name);
    if (old) {
        cps_log("rpc", CPS_LOG_ERROR,
                "RPC command %s: already registered by plugin '%s', refused for plugin '%s'",
                name, old->owner ? old->owner->name : "?", p ? p->name : "?");
        return CPS_EEXIST;
    }
    rpc_cmd *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) { free(c); return CPS_ENOMEM; }
    c->kind = kind;
    c->fn = fn;
    c->ud = ud;
    c->owner = p;
    unsigned b = bucket(name);
    c->next = RPC.buckets[b];
    RPC.buckets[b] = c;
    if (!RPC.c_calls) {
        RPC.c_calls = cps_metrics_counter("rpc_calls_total");
        RPC.c_errors = cps_metrics_counter("rpc_errors_total");
    }
    return 0;
}

static void unlink_rpc(cps_rpc *r)
{
    if (r->prev) r->prev->next = r->next; else if (RPC.outstanding == r) RPC.outstanding = r->next;
    if (r->next) r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void rpc_free(cps_rpc *r)
{
    free(r->key);
    free(r->caller);
    json_decref(r->args);
    free(r);
}

/* Deliver the answer once; the object lives on until the handler is done
** with it (it may still hold it after a timeout answered for it). */
static void answer(cps_rpc *r, int err, json_t *value)
{
    if (r->answered) return;
    r->answered = true;
    if (err) cps_metrics_add(RPC.c_errors, 1);
    /* Measured up to the answer, not the free: a handler may hold the call
    ** after a timeout answered for it. */
    cps_metrics_observe_rpc((double)(uv_hrtime() - r->started_ns) / 1e9);
    if (r->done) r->done(r->ud, err, value, r->flags);
}

void cps_rpc_reply(cps_rpc *r, json_t *value)
{
    if (!r) { json_decref(value); return; }
    answer(r, CPS_OK, value ? value : json_null());
    json_decref(value);
    unlink_rpc(r);
    if (!r->in_handler) rpc_free(r);
}

void cps_rpc_error(cps_rpc *r, int err)
{
    if (!r) return;
    answer(r, err < 0 ? err : CPS_EINTERNAL, NULL);
    unlink_rpc(r);
    if (!r->in_handler) rpc_free(r);
}

const char *cps_rpc_key(cps_rpc *r) { return r ? r->key : NULL; }
const char *cps_rpc_name(cps_rpc *r) { return r ? r->cmd->name : NULL; }
const char *cps_rpc_caller(cps_rpc *r) { return r ? r->caller : NULL; }
void cps_rpc_end_session(cps_rpc *r) { if (r) r->flags |= CPS_RPC_END_SESSION; }

int cps_rpc_describe(cps_plugin *p, const char *name, const char *summary)
{
    (void)p;
    rpc_cmd *c = name ? find(name) : NULL;
    if (!c) return CPS_ENOENT;
    char *t = summary ? strdup(summary) : NULL;
    if (summary && !t) return CPS_ENOMEM;
    free(c->summary);
    c->summary = t;
    return CPS_OK;
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(rpc_cmd *const *)a)->name, (*(rpc_cmd *const *)b)->name);
}

json_t *cps_rpc_list(void)
{
    size_t n = 0;
    for (int b = 0; b < RPC_BUCKETS; b++)
        for (rpc_cmd *c = RPC.buckets[b]; c; c = c->next) n++;
    rpc_cmd **v = n ? malloc(n * sizeof *v) : NULL;
    json_t *out = json_array();
    if (n && !v) return out;
    size_t i = 0;
    for (int b = 0; b < RPC_BUCKETS; b++)
        for (rpc_cmd *c = RPC.buckets[b]; c; c = c->next) v[i++] = c;
    qsort(v, n, sizeof *v, by_name);
    for (i = 0; i < n; i++)
        json_array_append_new(out, json_pack("[sis?]", v[i]->name, v[i]->kind, v[i]->summary));
    free(v);
    return out;
}

int cps_rpc_kind(cps_plugin *p, const char *name)
{
    (void)p;
    rpc_cmd *c = name ? find(name) : NULL;
    return c ? c->kind : CPS_ENOENT;
}

/* Steals args (api/cps.h OWNERSHIP). */
int cps_rpc_call(cps_plugin *p, const char *name, int kind, const char *key,
                 const char *caller, json_t *args, cps_rpc_done_fn done, void *ud)
{
    (void)p;
    rpc_cmd *c = name ? find(name) : NULL;
    if (!c || c->kind != kind) { json_decref(args); return CPS_ENOENT; }
    cps_rpc *r = calloc(1, sizeof *r);
    if (!r) { json_decref(args); return CPS_ENOMEM; }
    r->cmd = c;
    r->key = key ? strdup(key) : NULL;
    r->caller = caller ? strdup(caller) : NULL;
    r->done = done;
    r->ud = ud;
    r->started_ns = uv_hrtime();
    cps_metrics_add(RPC.c_calls, 1);
    r->in_handler = true;
    r->args = args ? args : json_null();
    int rc = c->fn(r, r->args, c->ud);
    r->in_handler = false;
    if (r->answered) { rpc_free(r); return 0; }
    if (rc == CPS_ASYNC) {
        r->deadline = cps_now_ms() + (uint64_t)cps_config_int("limits.rpc_timeout_ms", 30000);
        r->next = RPC.outstanding;
        if (r->next) r->next->prev = r;
        RPC.outstanding = r;
        if (!RPC.sweeping && cps_loop()) {
            uv_timer_init(cps_loop(), &RPC.sweep);
            uv_timer_start(&RPC.sweep, sweep, 500, 500);
            uv_unref((uv_handle_t *)&RPC.sweep);
            RPC.sweeping = true;
        }
        return 0;
    }
    if (rc < 0) answer(r, rc, NULL);
    else answer(r, CPS_OK, json_null());
    rpc_free(r);
    return 0;
}

static void sweep(uv_timer_t *t)
{
    (void)t;
    uint64_t now = cps_now_ms();
    for (cps_rpc *r = RPC.outstanding; r; r = r->next)
        if (!r->answered && r->deadline <= now) {
            cps_log("rpc", CPS_LOG_WARN, "RPC %s timed out", r->cmd->name);
            answer(r, CPS_ETIMEDOUT, NULL);
        }
}

void cps_rpc_forget(cps_plugin *p)
{
    /* Outstanding calls of the plugin's commands: answer, then free. */
    cps_rpc *r = RPC.outstanding;
    while (r) {
        cps_rpc *n = r->next;
        if (!p || r->cmd->owner == p) {
            answer(r, CPS_ECANCELED, NULL);
            unlink_rpc(r);
            rpc_free(r);
        }
        r = n;
    }
    for (int b = 0; b < RPC_BUCKETS; b++) {
        rpc_cmd **pp = &RPC.buckets[b];
        while (*pp) {
            rpc_cmd *c = *pp;
            if (!p || c->owner == p) { *pp = c->next; free(c->name); free(c->summary); free(c); }
            else pp = &c->next;
        }
    }
}

static void noop_close(uv_handle_t *h) { (void)h; }

void cps_rpc_shutdown(void)
{
    cps_rpc_forget(NULL);
    if (RPC.sweeping) {
        uv_timer_stop(&RPC.sweep);
        uv_close((uv_handle_t *)&RPC.sweep, noop_close);
        RPC.sweeping = false;
    }
}
