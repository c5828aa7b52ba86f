/*
** failover.c - storage failover (docs/protocol/cluster.md §11): with one
** shared backend, this node serves the channels of the slots whose lease it
** holds - its own slot, and the slot of a storage node that is down or
** stopped renewing when this node is the next one up - and refuses the rest.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "storage.h"
#include "failover.h"

#define MAX_SLOTS 64            /* router.c's node table */
#define TICK_MS 500             /* renew and take-over attempts */
#define TTL_MS 2000             /* a lease not renewed for this long is free */
/* After handing a slot back to its node, leave it alone this long: that node
** acquires it meanwhile (unless it is stuck, then we take it again). */
#define YIELD_MS (3 * TTL_MS)
#define MAX_CMDS 32

typedef struct slot {
    bool held;
    bool asking;                /* an acquire or renewal is in flight */
    unsigned gen;               /* bumped when we give the slot up: answers
                                ** to requests made before are stale */
    uint64_t epoch;
    uint64_t renewed_at;        /* last successful renewal (now_ms) */
    uint64_t yield_until;       /* handed back: no take-over before */
    uint64_t asked_release_at;  /* our own slot: when we last asked its holder */
    uint64_t up_since;          /* when the link to the slot's node came up */
} slot;

static struct {
    bool on;
    int me, n;
    char holder[80];            /* "storage:1/<instance>" */
    slot slots[MAX_SLOTS];
    cps_timer *tick;
    uint64_t started_at;        /* no stand-in before the others had a chance */
    cps_counter *c_takeovers, *c_lost;
    struct gate { cps_command_fn fn; } gates[MAX_CMDS];
    int ngates;
} FO;

static int slot_of(const char *id)
{
    char node[64];
    const char *o = API->owner(ST.self, "storage", id, node, sizeof node);
    const char *colon = o ? strchr(o, ':') : NULL;
    long k = colon ? strtol(colon + 1, NULL, 10) : -1;
    return k >= 0 && k < FO.n ? (int)k : -1;
}

static bool up(int k)
{
    char node[32];
    snprintf(node, sizeof node, "storage:%d", k);
    return k == FO.me || API->node_is_up(ST.self, node);
}

/* Whether this node should serve slot k if its lease is free: its own, or
** the first node up after k when k's node is out of the picture (down, or
** up but not renewing: the lease decides, the acquire fails otherwise). */
static bool wanted(int k)
{
    if (k == FO.me) return true;
    for (int i = 1; i < FO.n; i++) {
        int j = (k + i) % FO.n;
        if (up(j)) return j == FO.me;
    }
    return false;
}

bool fo_serves(const char *id)
{
    if (!FO.on) return true;
    int k = slot_of(id);
    return k >= 0 && FO.slots[k].held;
}

/* ---- giving a slot up: its channels' members reconnect elsewhere ---- */

typedef struct dropping { int k; json_t *by_front; size_t n; } dropping;

static void drop_channel(const char *id, void *v, void *ud)
{
    channel *ch = v;
    dropping *d = ud;
    if (slot_of(id) != d->k) return;
    size_t i;
    json_t *m;
    json_array_foreach(ch->members, i, m) {
        const char *front = json_string_value(json_array_get(m, 1));
        json_t *users = json_object_get(d->by_front, front);
        if (!users) { users = json_array(); json_object_set_new(d->by_front, front, users); }
        json_array_append(users, json_array_get(m, 0));
    }
    /* Another node writes it from now on: what we know of it (members,
    ** metadata, index) is stale; a later op reopens it from the store. */
    json_decref(ch->members);          /* copy-on-write: replies may share it */
    ch->members = json_array();
    ch->stale = true;
    d->n++;
}

static void release_empty(const char *id, void *v, void *ud)
{
    (void)id;
    json_array_append_new(ud, json_string(((channel *)v)->id));
}

static void drop_slot(int k, const char *why)
{
    slot *s = &FO.slots[k];
    if (!s->held) return;
    s->held = false;
    s->epoch = 0;
    s->gen++;
    dropping d = { k, json_object(), 0 };
    strmap_each(ST.channels, drop_channel, &d);
    const char *front;
    json_t *users;
    json_object_foreach(d.by_front, front, users)
        API->send(ST.self, front, "RECONNECT_USERS", json_pack("{s O}", "users", users));
    json_decref(d.by_front);
    /* channels left without members and work are closed */
    json_t *ids = json_array();
    strmap_each(ST.channels, release_empty, ids);
    size_t i;
    json_t *idv;
    json_array_foreach(ids, i, idv) ch_release(ch_get(json_string_value(idv), false));
    json_decref(ids);
    API->log(ST.self, CPS_LOG_WARN, "storage slot %d: no longer served by %s (%s); %zu channel(s) dropped", k, ST.node,
             why, d.n);
}

/* ---- leases ---- */

typedef struct asking { int k; unsigned ttl; unsigned gen; } asking;

static void ask_release(int k, const char *holder)
{
    /* the holder's node, from "storage:j/<instance>" */
    char node[32];
    size_t n = strcspn(holder, "/");
    if (n == 0 || n >= sizeof node || strncmp(holder, "storage:", 8) != 0) return;
    memcpy(node, holder, n);
    node[n] = 0;
    if (!strncmp(holder, FO.holder, n + 1)) return;  /* our own earlier life: wait for expiry */
    uint64_t now = API->now_ms();
    if (now - FO.slots[k].asked_release_at < TICK_MS * 2) return;
    FO.slots[k].asked_release_at = now;
    API->send(ST.self, node, "SLOT_RELEASE", json_pack("{s i}", "slot", k));
}

static void leased(void *ud, int status, uint64_t epoch, const char *holder)
{
    asking *a = ud;
    int k = a->k;
    unsigned ttl = a->ttl, gen = a->gen;
    free(a);
    if (!FO.on) return;
    slot *s = &FO.slots[k];
    if (ttl == 0) return;                   /* a release: nothing to note */
    s->asking = false;
    /* asked before we gave the slot up: our release is queued behind it */
    if (gen != s->gen) return;
    uint64_t now = API->now_ms();
    if (status == CPS_OK) {
        if (s->held && s->epoch != epoch) drop_slot(k, "the lease changed hands meanwhile");
        if (!s->held) {
            API->log(ST.self, CPS_LOG_INFO, "storage slot %d: served by %s, epoch %llu", k, ST.node,
                     (unsigned long long)epoch);
            if (k != FO.me) API->counter_add(FO.c_takeovers, 1);
        }
        s->held = true;
        s->epoch = epoch;
        s->renewed_at = now;
        return;
    }
    if (status == CPS_EBUSY) {
        if (s->held) { API->counter_add(FO.c_lost, 1); drop_slot(k, "another node took the lease"); }
        if (k == FO.me && holder && *holder) ask_release(k, holder);
        return;
    }
    /* The database did not answer: keep serving while the lease we renewed
    ** last is valid (fencing refuses our writes anyway if it was taken). */
    if (s->held && now - s->renewed_at >= TTL_MS) drop_slot(k, API->errname(status));
}

static void ask(int k, unsigned ttl)
{
    const cps_storage_backend *b = backend();
    asking *a = calloc(1, sizeof *a);
    if (!a || !b) { free(a); return; }
    a->k = k;
    a->ttl = ttl;
    a->gen = FO.slots[k].gen;
    if (ttl) FO.slots[k].asking = true;
    int rc = b->lease(b->state, (unsigned)k, FO.holder, ttl, leased, a);
    if (rc) {
        if (ttl) FO.slots[k].asking = false;
        free(a);
        API->log(ST.self, CPS_LOG_WARN, "storage slot %d: lease request refused: %s", k, API->errname(rc));
    }
}

static void check_slots(void)
{
    uint64_t now = API->now_ms();
    for (int k = 0; k < FO.n; k++) {
        slot *s = &FO.slots[k];
        if (s->asking) continue;
        if (s->held) ask(k, TTL_MS);                               /* renew */
        else if (wanted(k) && (k == FO.me || (now >= s->yield_until && now >= FO.started_at + TTL_MS &&
                                              !(up(k) && now < s->up_since + TTL_MS))))
            ask(k, TTL_MS);
    }
}

static void tick(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    check_slots();
}

/* A storage node's link went down: take its slot over as soon as its lease
** lets us (the next ticks retry until it expires), even if we handed it
** back to that node a moment ago. */
static void peer_down(const char *node, void *ud)
{
    (void)ud;
    if (!FO.on || strncmp(node, "storage:", 8) != 0) return;
    long k = strtol(node + 8, NULL, 10);
    if (k >= 0 && k < FO.n && !API->node_is_up(ST.self, node)) FO.slots[k].yield_until = 0;
    check_slots();
}

/* A storage node (re)started: it gets one lease lifetime to take its own
** slot back before we would stand in again, so that a quick restart does
** not move its clients twice. */
static void peer_up(const char *node, void *ud)
{
    (void)ud;
    if (!FO.on || strncmp(node, "storage:", 8) != 0) return;
    long k = strtol(node + 8, NULL, 10);
    if (k >= 0 && k < FO.n) FO.slots[k].up_since = API->now_ms();
    check_slots();
}

void fo_fenced(const char *id)
{
    int k = FO.on ? slot_of(id) : -1;
    if (k >= 0 && FO.slots[k].held && !FO.slots[k].asking) ask(k, TTL_MS);   /* find out now */
}

/* SLOT_RELEASE {slot}: the node owning the slot is back and asks for it
** (docs/protocol/cluster.md §11.5).  Only that node may ask. */
static int cmd_slot_release(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_int_t k = json_integer_value(json_object_get(args, "slot"));
    char want[32];
    snprintf(want, sizeof want, "storage:%lld", (long long)k);
    if (!FO.on || k < 0 || k >= FO.n || k == FO.me || strcmp(API->call_from(call), want) != 0)
        return CPS_EFORBIDDEN;
    slot *s = &FO.slots[k];
    s->yield_until = API->now_ms() + YIELD_MS;
    if (s->held) {
        drop_slot((int)k, "handed back to its node");
        ask((int)k, 0);
    }
    return CPS_OK;
}

/* ---- the gate in front of channel commands ---- */

static const char *channel_of(json_t *args)
{
    const char *id = json_string_value(json_object_get(args, "channel"));
    if (!id) id = json_string_value(json_object_get(args, "id"));
    if (!id) id = json_string_value(json_array_get(json_object_get(args, "request"), 1));
    return id;
}

static int gate(cps_call *call, json_t *args, void *ud)
{
    struct gate *g = ud;
    const char *id = FO.on ? channel_of(args) : NULL;
    /* retryable: the client reconnects and its front routes it anew */
    if (id && ids_valid_channel(id) && !fo_serves(id)) return CPS_EUNAVAILABLE;
    return g->fn(call, args, NULL);
}

int fo_register(const char *name, cps_command_fn fn)
{
    if (FO.ngates == MAX_CMDS) return CPS_EBUSY;
    struct gate *g = &FO.gates[FO.ngates++];
    g->fn = fn;
    return API->register_command(ST.self, name, gate, g);
}

/* ---- life cycle ---- */

int fo_init(void)
{
    memset(&FO, 0, sizeof FO);
    if (!cps_failover_on(API, ST.self)) return CPS_OK;
    const cps_storage_backend *b = backend();
    if (!b || !CPS_STORAGE_HAS(b, lease) || !b->lease) {
        API->log(ST.self, CPS_LOG_ERROR, "storage_failover needs a storage backend that every storage node "
                 "shares and that keeps leases (storage_backend = \"pg\"); '%s' does not", b ? b->name : "none");
        return CPS_EINVAL;
    }
    if (!CPS_API_HAS(API, owner_live)) return CPS_EVERSION;
    const char *colon = strchr(ST.node, ':');
    FO.me = colon ? atoi(colon + 1) : 0;
    FO.n = API->role_count(ST.self, "storage");
    if (FO.n <= 0 || FO.n > MAX_SLOTS || FO.me >= FO.n) return CPS_EINVAL;
    snprintf(FO.holder, sizeof FO.holder, "%s/%s", ST.node, ST.instance);
    FO.on = true;
    FO.c_takeovers = API->counter(ST.self, "storage_slot_takeovers_total");
    FO.c_lost = API->counter(ST.self, "storage_slot_leases_lost_total");
    int rc = API->register_command(ST.self, "SLOT_RELEASE", cmd_slot_release, NULL);
    if (rc) return rc;
    API->on_peer_down(ST.self, peer_down, NULL);
    API->on_peer_up(ST.self, peer_up, NULL);
    FO.started_at = API->now_ms();
    FO.tick = API->timer_start(ST.self, TICK_MS, TICK_MS, tick, NULL);
    check_slots();
    API->log(ST.self, CPS_LOG_INFO, "storage failover on: %s serves slot %d and stands in for others", FO.holder, FO.me);
    return CPS_OK;
}

/* Hand our slots back at a clean stop, so the next holder need not wait
** for the lease to expire. */
void fo_fini(void)
{
    if (!FO.on) return;
    const cps_storage_backend *b = backend();
    for (int k = 0; k < FO.n; k++)
        if (FO.slots[k].held && b) b->lease(b->state, (unsigned)k, FO.holder, 0, NULL, NULL);
    FO.on = false;
}
