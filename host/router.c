/*
** router.c - delivers inter-node messages (events, queries, responses) to
** the node that should handle them.  In one process a message is queued and
** handed to the local node on the next loop turn without serialisation, so
** local and remote delivery behave alike.  Queue and pending table are
** bounded (limits.router_queue, limits.pending_queries).
*/
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include "host.h"

#define MAX_NODES 64
#define MAX_ROLES 8

typedef struct command {
    char *name;
    cps_command_fn fn;
    void *ud;
    cps_plugin *owner;
    struct command *next;
} command;

typedef struct node {
    char id[32];
    char role[24];
    cps_plugin *owner;
    command *commands;
    bool remote;            /* reached through a link (link.c) */
} node;

enum { ENV_EVENT, ENV_QUERY, ENV_RESPONSE };

typedef struct envelope {
    int type;
    node *dest;             /* EVENT/QUERY */
    char *cmd;
    json_t *args;           /* owned */
    char from[32];
    uint64_t qid;           /* QUERY/RESPONSE */
    int err;                /* RESPONSE: CPS_OK or a code */
    cps_reply_fn cb;        /* RESPONSE to a query that never had a slot */
    void *cb_ud;
    cps_plugin *cb_owner;
    struct envelope *next;
} envelope;

struct cps_call {
    node *dest;
    char from[32];
    uint64_t qid;           /* 0 for an event */
    bool in_handler;
    bool replied;
};

typedef struct pending {
    uint32_t gen;
    bool used;
    char asked[32];         /* only this node may answer */
    uint64_t seq;           /* issue order, to fail queries in that order */
    cps_plugin *owner;
    cps_reply_fn cb;
    void *ud;
    uint64_t deadline;
    uint32_t next_free;
} pending;

static struct {
    uv_loop_t *loop;
    uv_idle_t idle;
    uv_timer_t sweep;
    bool started, closing;
    node nodes[MAX_NODES];
    int nnodes;
    struct { char role[24]; int count; } roles[MAX_ROLES];
    int nroles;
    envelope *head, *tail;
    size_t queued, max_queue;
    pending *slots;
    uint32_t nslots, free_head, npending, max_pending;
    unsigned default_timeout;
    uint64_t next_seq;
    cps_counter *c_msgs, *c_timeouts, *c_busy;
} R;   /* the router singleton */

#define NO_SLOT UINT32_MAX

static void pump(uv_idle_t *h);
static void sweep(uv_timer_t *t);

int cps_router_init(uv_loop_t *loop)
{
    memset(&R, 0, sizeof R);
    R.loop = loop;
    R.max_queue = (size_t)cps_config_int("limits.router_queue", 100000);
    R.max_pending = (uint32_t)cps_config_int("limits.pending_queries", 100000);
    R.default_timeout = (unsigned)cps_config_int("limits.query_timeout_ms", 30000);
    R.free_head = NO_SLOT;
    R.c_msgs = cps_metrics_counter("router_messages_total");
    R.c_timeouts = cps_metrics_counter("router_query_timeouts_total");
    R.c_busy = cps_metrics_counter("router_queue_full_total");
    if (loop) {
        uv_idle_init(loop, &R.idle);
        uv_timer_init(loop, &R.sweep);
        uv_timer_start(&R.sweep, sweep, 250, 250);
        uv_unref((uv_handle_t *)&R.sweep);
        R.started = true;
    }
    return 0;
}

/* ---- nodes and roles ---- */

static node *find_node(const char *id)
{
    for (int i = 0; i < R.nnodes; i++)
        if (strcmp(R.nodes[i].id, id) == 0) return &R.nodes[i];
    return NULL;
}

static node *node_of_plugin(cps_plugin *p)
{
    if (p && p->node) return find_node(p->node);
    return NULL;
}

int cps_router_add_node(const char *id, cps_plugin *owner)
{
    const char *colon = strchr(id, ':');
    if (!colon || colon == id || strlen(id) >= sizeof R.nodes[0].id ||
        (size_t)(colon - id) >= sizeof R.nodes[0].role || !colon[1])
        return CPS_EINVAL;
    if (find_node(id)) return CPS_EEXIST;
    if (R.nnodes == MAX_NODES) return CPS_EBUSY;
    node *n = &R.nodes[R.nnodes++];
    memset(n, 0, sizeof *n);
    snprintf(n->id, sizeof n->id, "%s", id);
    memcpy(n->role, id, (size_t)(colon - id));
    n->owner = owner;
    return 0;
}

/* A node of another process, reached through its link. */
int cps_router_add_remote(const char *id)
{
    int rc = cps_router_add_node(id, NULL);
    if (rc == 0) R.nodes[R.nnodes - 1].remote = true;
    return rc;
}

bool cps_router_is_local(const char *id)
{
    node *n = find_node(id);
    return n && !n->remote;
}

int cps_router_set_role_count(const char *role, int count)
{
    for (int i = 0; i < R.nroles; i++)
        if (strcmp(R.roles[i].role, role) == 0) { R.roles[i].count = count; return 0; }
    if (R.nroles == MAX_ROLES || strlen(role) >= sizeof R.roles[0].role) return CPS_EBUSY;
    snprintf(R.roles[R.nroles].role, sizeof R.roles[0].role, "%s", role);
    R.roles[R.nroles++].count = count;
    return 0;
}

int cps_router_role_count(const char *role)
{
    for (int i = 0; i < R.nroles; i++)
        if (strcmp(R.roles[i].role, role) == 0) return R.roles[i].count;
    return 0;
}

const char *cps_router_owner(const char *role, const char *key, char *buf, size_t n)
{
    int count = cps_router_role_count(role);
    if (count <= 0 || !buf) return NULL;
    int32_t b = cps_jump_hash(cps_hash_key(key), count);
    int w = snprintf(buf, n, "%s:%d", role, b);
    return (w < 0 || (size_t)w >= n) ? NULL : buf;
}

/* ---- commands ---- */

static int register_on(node *n, cps_plugin *p, const char *name, cps_command_fn fn, void *ud);

int cps_router_register(cps_plugin *p, const char *name, cps_command_fn fn, void *ud)
{
    return register_on(node_of_plugin(p), p, name, fn, ud);
}

int cps_router_register_role(cps_plugin *p, const char *role, const char *name,
                             cps_command_fn fn, void *ud)
{
    for (int i = 0; role && i < R.nnodes; i++)
        if (strcmp(R.nodes[i].role, role) == 0) return register_on(&R.nodes[i], p, name, fn, ud);
    return CPS_ENOENT;
}

static int register_on(node *n, cps_plugin *p, const char *name, cps_command_fn fn, void *ud)
{
    if (!n || !name || !*name || !fn) return CPS_EINVAL;
    for (command *c = n->commands; c; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            cps_log("router", CPS_LOG_ERROR,
                    "command %s on %s: registered by plugin '%s', refused for plugin '%s'",
                    name, n->id, c->owner->name, p->name);
            return CPS_EEXIST;
        }
    }
    command *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) { free(c); return CPS_ENOMEM; }
    c->fn = fn;
    c->ud = ud;
    c->owner = p;
    c->next = n->commands;
    n->commands = c;
    return 0;
}

/* A node's commands are a list kept in order of last use: the command
** found moves to the front, so the few that carry the traffic (a channel
** message, a delivery) are found at once among the dozens a node has
** (perf, a storage node of the cluster: strcmp under the router's pump
** 2.8% of its samples, CHANNEL_MESSAGE being among the first registered). */
static command *find_command(node *n, const char *name)
{
    for (command **pp = &n->commands; *pp; pp = &(*pp)->next) {
        command *c = *pp;
        if (strcmp(c->name, name) != 0) continue;
        if (pp != &n->commands) {
            *pp = c->next;
            c->next = n->commands;
            n->commands = c;
        }
        return c;
    }
    return NULL;
}

/* ---- pending queries ---- */

static uint64_t pending_add(cps_plugin *p, const char *asked, cps_reply_fn cb, void *ud, unsigned timeout)
{
    if (R.npending >= R.max_pending) return 0;
    uint32_t i;
    if (R.free_head != NO_SLOT) {
        i = R.free_head;
        R.free_head = R.slots[i].next_free;
    } else {
        if (R.nslots == UINT32_MAX - 1) return 0;
        uint32_t cap = R.nslots ? R.nslots * 2 : 64;
        pending *s = realloc(R.slots, cap * sizeof *s);
        if (!s) return 0;
        memset(s + R.nslots, 0, (cap - R.nslots) * sizeof *s);
        R.slots = s;
        for (uint32_t k = cap - 1; k > R.nslots; k--) {
            R.slots[k].next_free = R.free_head;
            R.free_head = k;
        }
        i = R.nslots;
        R.nslots = cap;
    }
    pending *q = &R.slots[i];
    q->gen++;
    q->used = true;
    q->owner = p;
    q->cb = cb;
    q->ud = ud;
    snprintf(q->asked, sizeof q->asked, "%s", asked ? asked : "");
    q->seq = ++R.next_seq;
    q->deadline = (R.loop ? uv_now(R.loop) : 0) + (timeout ? timeout : R.default_timeout);
    R.npending++;
    return ((uint64_t)q->gen << 32) | (i + 1);
}

static pending *pending_get(uint64_t qid)
{
    uint32_t i = (uint32_t)(qid & 0xffffffffu);
    if (i == 0 || i > R.nslots) return NULL;
    pending *q = &R.slots[i - 1];
    if (!q->used || q->gen != (uint32_t)(qid >> 32)) return NULL;
    return q;
}

/* Completes a pending query: frees the slot first so the callback may
** issue new queries freely. */
static void pending_finish(pending *q, int err, json_t *data)
{
    cps_reply_fn cb = q->cb;
    void *ud = q->ud;
    q->used = false;
    q->next_free = R.free_head;
    R.free_head = (uint32_t)(q - R.slots);
    R.npending--;
    if (cb) cb(ud, err, data);
}

static void sweep(uv_timer_t *t)
{
    (void)t;
    uint64_t now = uv_now(R.loop);
    for (uint32_t i = 0; i < R.nslots; i++) {
        pending *q = &R.slots[i];
        if (q->used && q->deadline <= now) {
            cps_metrics_add(R.c_timeouts, 1);
            pending_finish(q, CPS_ETIMEDOUT, NULL);
        }
    }
}

/* ---- the queue ---- */

static void push(envelope *e)
{
    e->next = NULL;
    if (R.tail) R.tail->next = e; else R.head = e;
    R.tail = e;
    R.queued++;
    if (R.started && !uv_is_active((uv_handle_t *)&R.idle))
        uv_idle_start(&R.idle, pump);
}

static void env_free(envelope *e)
{
    json_decref(e->args);
    free(e->cmd);
    free(e);
}

static const char *sender_id(cps_plugin *p)
{
    if (p && p->node) return p->node;
    return R.nnodes ? R.nodes[0].id : "host";
}

static int enqueue(cps_plugin *p, const char *dest, const char *cmd, json_t *args,
                   int type, uint64_t qid)
{
    if (R.closing) { json_decref(args); return CPS_ECANCELED; }
    node *n = dest ? find_node(dest) : NULL;
    if (!n || !cmd) { json_decref(args); return n ? CPS_EINVAL : CPS_ENOENT; }
    if (n->remote) {
        /* serialised once, for the link to that node */
        int rc = cps_link_send(n->id, type == ENV_QUERY ? "Q" : "E", qid, n->id, cmd, CPS_OK, args);
        json_decref(args);
        return rc;
    }
    if (R.queued >= R.max_queue) {
        cps_metrics_add(R.c_busy, 1);
        json_decref(args);
        return CPS_EBUSY;
    }
    envelope *e = calloc(1, sizeof *e);
    if (!e || !(e->cmd = strdup(cmd))) { free(e); json_decref(args); return CPS_ENOMEM; }
    e->type = type;
    e->dest = n;
    e->args = args ? args : json_null();
    e->qid = qid;
    snprintf(e->from, sizeof e->from, "%s", sender_id(p));
    push(e);
    return 0;
}

int cps_router_send(cps_plugin *p, const char *node_id, const char *cmd, json_t *args)
{
    return enqueue(p, node_id, cmd, args, ENV_EVENT, 0);
}

int cps_router_query(cps_plugin *p, const char *node_id, const char *cmd, json_t *args,
                     unsigned timeout_ms, cps_reply_fn cb, void *ud)
{
    if (R.closing) { json_decref(args); return CPS_ECANCELED; }
    uint64_t qid = pending_add(p, node_id, cb, ud, timeout_ms);
    if (!qid) {
        /* Every slot in use (limits.pending_queries): the caller still
        ** hears CPS_EBUSY through cb, on the next turn, like every other
        ** outcome.  A caller that ignored the return lost its answer. */
        json_decref(args);
        cps_metrics_add(R.c_busy, 1);
        envelope *e = calloc(1, sizeof *e);
        if (!e) return CPS_ENOMEM;
        e->type = ENV_RESPONSE;
        e->err = CPS_EBUSY;
        e->cb = cb;
        e->cb_ud = ud;
        e->cb_owner = p;
        push(e);
        return 0;
    }
    int rc = enqueue(p, node_id, cmd, args, ENV_QUERY, qid);
    if (rc) {
        /* Keep the promise "cb exactly once, later": answer on the next turn. */
        pending *q = pending_get(qid);
        envelope *e = calloc(1, sizeof *e);
        if (!e) { q->cb = NULL; pending_finish(q, CPS_OK, NULL); return CPS_ENOMEM; }
        e->type = ENV_RESPONSE;
        e->qid = qid;
        e->err = rc;
        push(e);
    }
    return 0;
}

void cps_router_reply(cps_call *call, int err, json_t *data)
{
    if (!call) { json_decref(data); return; }
    if (call->replied) {
        cps_log("router", CPS_LOG_WARN, "second reply to one call ignored");
        json_decref(data);
        return;
    }
    call->replied = true;
    node *from = find_node(call->from);
    if (call->qid && !R.closing && from && from->remote) {
        cps_link_send(from->id, "R", call->qid, call->dest->id, "", err, data ? data : json_null());
        json_decref(data);
        data = NULL;
    } else if (call->qid && !R.closing) {
        envelope *e = calloc(1, sizeof *e);
        if (e) {
            e->type = ENV_RESPONSE;
            e->qid = call->qid;
            e->args = data;
            e->err = err;
            push(e);      /* responses are never refused: pending is bounded */
            data = NULL;
        }
    }
    json_decref(data);
    if (!call->in_handler) free(call);
}

const char *cps_router_call_from(cps_call *call) { return call ? call->from : NULL; }

static void deliver(envelope *e)
{
    cps_metrics_add(R.c_msgs, 1);
    if (e->type == ENV_RESPONSE && e->cb) {
        e->cb(e->cb_ud, e->err, NULL);
        return;
    }
    if (e->type == ENV_RESPONSE) {
        pending *q = pending_get(e->qid);
        if (q) pending_finish(q, e->err, e->args);
        return;
    }
    command *c = find_command(e->dest, e->cmd);
    if (!c) {
        node *from = find_node(e->from);
        if (e->type == ENV_QUERY && from && from->remote) {
            /* the asker's query id lives in the asker's table: answer there */
            cps_link_send(from->id, "R", e->qid, e->dest->id, "", CPS_ENOENT, json_null());
        } else if (e->type == ENV_QUERY) {
            pending *q = pending_get(e->qid);
            if (q) pending_finish(q, CPS_ENOENT, NULL);
        } else {
            cps_log("router", CPS_LOG_DEBUG, "event %s for %s: no such command", e->cmd, e->dest->id);
        }
        return;
    }
    cps_call *call = calloc(1, sizeof *call);
    if (!call) return;
    call->dest = e->dest;
    memcpy(call->from, e->from, sizeof call->from);
    call->qid = e->type == ENV_QUERY ? e->qid : 0;
    call->in_handler = true;
    int rc = c->fn(call, e->args, c->ud);
    call->in_handler = false;
    if (call->replied) { free(call); return; }
    if (rc == CPS_ASYNC) return;
    cps_router_reply(call, rc < 0 ? rc : CPS_OK, NULL);
}

/* Drain what was queued before this turn; later messages wait for the next
** turn so I/O is never starved by a chain of local messages. */
static void pump(uv_idle_t *h)
{
    size_t n = R.queued;
    while (n-- > 0 && R.head) {
        envelope *e = R.head;
        R.head = e->next;
        if (!R.head) R.tail = NULL;
        R.queued--;
        deliver(e);
        env_free(e);
    }
    if (!R.head) uv_idle_stop(h);
}

/* A message that came in on the link from `peer` (authenticated by the
** link, so `from` is the peer, whatever the frame says).  Steals args. */
void cps_router_incoming(const char *peer, const char *type, uint64_t qid, const char *dest,
                         const char *cmd, int err, json_t *args)
{
    if (R.closing) { json_decref(args); return; }
    envelope *e = calloc(1, sizeof *e);
    if (!e) { json_decref(args); return; }
    snprintf(e->from, sizeof e->from, "%s", peer);
    e->qid = qid;
    e->args = args ? args : json_null();
    if (type[0] == 'R') {
        pending *q = pending_get(qid);
        /* replies are accepted only from the node that was asked */
        if (!q || strcmp(q->asked, peer) != 0) { env_free(e); return; }
        e->type = ENV_RESPONSE;
        e->err = err;
        push(e);
        return;
    }
    node *n = dest ? find_node(dest) : NULL;
    if (!n || n->remote || !cmd) {
        if (type[0] == 'Q') cps_link_send(peer, "R", qid, dest ? dest : "", "", CPS_ENOENT, json_null());
        env_free(e);
        return;
    }
    e->type = type[0] == 'Q' ? ENV_QUERY : ENV_EVENT;
    e->dest = n;
    e->cmd = strdup(cmd);
    push(e);
}

/* Plugins watching for lost peers. */
typedef struct watcher { cps_plugin *p; void (*fn)(const char *, void *); void *ud; } watcher;
static watcher watchers[16];
static int nwatchers;

int cps_router_on_peer_down(cps_plugin *p, void (*fn)(const char *, void *), void *ud)
{
    if (!fn) return CPS_EINVAL;
    if (nwatchers == 16) return CPS_EBUSY;
    watchers[nwatchers++] = (watcher){ p, fn, ud };
    return 0;
}

/* A pending query to fail at peer_down, with the seq it had when found. */
typedef struct { uint64_t seq; uint32_t slot; } down_ref;

static int down_cmp(const void *a, const void *b)
{
    uint64_t x = ((const down_ref *)a)->seq, y = ((const down_ref *)b)->seq;
    return x < y ? -1 : x > y;
}

/* The link to `peer` is down: its pending queries fail now, watchers hear it. */
void cps_router_peer_down(const char *peer)
{
    /* In the order they were asked, so replies to a client keep its order:
    ** one scan and a sort, not a scan per query (quadratic in up to
    ** limits.pending_queries).  A callback may finish other queries or ask
    ** again: each is failed only if its slot still holds it, and the scan
    ** repeats until none to `peer` is left. */
    for (;;) {
        size_t n = 0;
        for (uint32_t i = 0; i < R.nslots; i++)
            if (R.slots[i].used && strcmp(R.slots[i].asked, peer) == 0) n++;
        if (!n) break;
        down_ref *v = malloc(n * sizeof *v);
        if (!v) {                          /* no memory: the first one, scan again */
            pending *first = NULL;
            for (uint32_t i = 0; i < R.nslots; i++)
                if (R.slots[i].used && strcmp(R.slots[i].asked, peer) == 0 &&
                    (!first || R.slots[i].seq < first->seq))
                    first = &R.slots[i];
            pending_finish(first, CPS_EUNAVAILABLE, NULL);
            continue;
        }
        size_t k = 0;
        for (uint32_t i = 0; i < R.nslots && k < n; i++)
            if (R.slots[i].used && strcmp(R.slots[i].asked, peer) == 0) v[k++] = (down_ref){ R.slots[i].seq, i };
        qsort(v, k, sizeof *v, down_cmp);
        for (size_t j = 0; j < k; j++) {
            pending *q = &R.slots[v[j].slot];
            if (q->used && q->seq == v[j].seq && strcmp(q->asked, peer) == 0) pending_finish(q, CPS_EUNAVAILABLE, NULL);
        }
        free(v);
    }
    for (int i = 0; i < nwatchers; i++) watchers[i].fn(peer, watchers[i].ud);
}

/* ---- liveness (docs/protocol/cluster.md §11.2): a local node is up; a
** remote one while its link is established.  Generic: the host only
** knows nodes and links, a plugin decides what a node's absence means. ---- */

static watcher up_watchers[16];
static int nup_watchers;

int cps_router_on_peer_up(cps_plugin *p, void (*fn)(const char *, void *), void *ud)
{
    if (!fn) return CPS_EINVAL;
    if (nup_watchers == 16) return CPS_EBUSY;
    up_watchers[nup_watchers++] = (watcher){ p, fn, ud };
    return 0;
}

void cps_router_peer_up(const char *peer)
{
    for (int i = 0; i < nup_watchers; i++) up_watchers[i].fn(peer, up_watchers[i].ud);
}

bool cps_router_node_is_up(const char *id)
{
    node *n = id ? find_node(id) : NULL;
    return n && (!n->remote || cps_link_is_up(id));
}

/* The owner of `key` if it is up, else the first node up after it in index
** order (wrapping), else the owner: so every process that sees the same
** nodes up picks the same one. */
const char *cps_router_owner_live(const char *role, const char *key, char *buf, size_t n)
{
    int count = cps_router_role_count(role);
    if (count <= 0 || !buf) return NULL;
    int32_t b = cps_jump_hash(cps_hash_key(key), count);
    for (int i = 0; i < count; i++) {
        int w = snprintf(buf, n, "%s:%d", role, (b + i) % count);
        if (w < 0 || (size_t)w >= n) return NULL;
        if (cps_router_node_is_up(buf)) return buf;
    }
    return cps_router_owner(role, key, buf, n);
}

size_t cps_router_queued(void) { return R.queued; }

size_t cps_router_pending(void) { return R.npending; }

bool cps_router_node_at(int i, const char **id, const char **role, bool *remote)
{
    if (i < 0 || i >= R.nnodes) return false;
    *id = R.nodes[i].id;
    *role = R.nodes[i].role;
    *remote = R.nodes[i].remote;
    return true;
}

/* Run the queue to empty (tests, and shutdown). */
void cps_router_drain(void)
{
    while (R.head) pump(&R.idle);
}

void cps_router_forget(cps_plugin *p)
{
    int j = 0;
    for (int i = 0; i < nwatchers; i++) if (p && watchers[i].p != p) watchers[j++] = watchers[i];
    nwatchers = j;
    j = 0;
    for (int i = 0; i < nup_watchers; i++) if (p && up_watchers[i].p != p) up_watchers[j++] = up_watchers[i];
    nup_watchers = j;
    for (int i = 0; i < R.nnodes; i++) {
        command **pp = &R.nodes[i].commands;
        while (*pp) {
            command *c = *pp;
            if (!p || c->owner == p) {
                *pp = c->next;
                free(c->name);
                free(c);
            } else {
                pp = &c->next;
            }
        }
    }
    for (uint32_t i = 0; i < R.nslots; i++)
        if (R.slots[i].used && (!p || R.slots[i].owner == p))
            pending_finish(&R.slots[i], CPS_ECANCELED, NULL);
    /* answers queued for queries that never had a slot: cancelled the same */
    for (envelope *e = R.head; e; e = e->next) {
        if (e->type != ENV_RESPONSE || !e->cb || (p && e->cb_owner != p)) continue;
        cps_reply_fn cb = e->cb;
        e->cb = NULL;
        cb(e->cb_ud, CPS_ECANCELED, NULL);
    }
}

static void noop_close(uv_handle_t *h) { (void)h; }

void cps_router_shutdown(void)
{
    R.closing = true;
    cps_router_forget(NULL);   /* every callback still owed is called, cancelled */
    while (R.head) {
        envelope *e = R.head;
        R.head = e->next;
        env_free(e);
    }
    R.tail = NULL;
    R.queued = 0;
    free(R.slots);
    R.slots = NULL;
    R.nslots = 0;
    if (R.started) {
        uv_idle_stop(&R.idle);
        uv_close((uv_handle_t *)&R.idle, noop_close);
        uv_timer_stop(&R.sweep);
        uv_close((uv_handle_t *)&R.sweep, noop_close);
        R.started = false;
    }
    R.nnodes = 0;
    R.nroles = 0;
}
