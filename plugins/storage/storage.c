/*
** storage.c - the storage role: owns the channels placed on this node
** (membership and the history keeper) and registers its commands.  Channel
** operations that need the channel's metadata (join checks, stores, history)
** go through the channel's serial queue (channel.c).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "storage.h"
#include "ids.h"
#include "fanout.h"
#include "conf.h"

struct storage_role ST;

static bool args_ok(json_t *args, const char **ch, const char **user)
{
    *ch = json_string_value(json_object_get(args, "channel"));
    *user = json_string_value(json_object_get(args, "user"));
    return ids_valid_channel(*ch) && *user;
}

static long find_member(channel *c, const char *user)
{
    size_t i;
    json_t *m;
    json_array_foreach(c->members, i, m)
        if (strcmp(json_string_value(json_array_get(m, 0)), user) == 0) return (long)i;
    return -1;
}

/* Adds a member (copy-on-write) and replies the previous members. */
static void add_member(cps_call *call, channel *c, const char *user, const char *front)
{
    long at = find_member(c, user);
    json_t *before;
    if (at >= 0) {                 /* re-join: no duplicate */
        before = json_copy(c->members);
        json_array_remove(before, (size_t)at);
    } else {
        before = json_incref(c->members);
        json_t *next = json_copy(c->members);
        json_array_append_new(next, json_pack("[s s]", user, front));
        json_decref(c->members);
        c->members = next;
    }
    API->reply(call, CPS_OK, json_pack("{s o}", "members", before));
}

/* ---- self-destructing channels: archived 30 s after the last member
** left, unless someone joins meanwhile (docs/protocol/history.md §9.3) ---- */

#define SELFDESTRUCT_MS 30000

static void ignore_done(void *ud, int status) { (void)ud; (void)status; }

typedef struct doom { char id[40]; cps_timer *t; } doom;

static void doom_fire(cps_timer *t, void *ud)
{
    (void)t;
    doom *d = ud;
    strmap_del(ST.doomed, d->id);
    channel *ch = ch_get(d->id, false);
    if (!ch || !json_array_size(ch->members)) {
        const cps_storage_backend *b = backend();
        if (b) b->channel_archive(b->state, d->id, NULL, ignore_done, NULL);
        if (ch) ch_forget_state(ch);
        API->log(ST.self, CPS_LOG_INFO, "self-destructing channel %s archived", d->id);
    }
    free(d);
}

static void doom_cancel(const char *id)
{
    doom *d = strmap_del(ST.doomed, id);
    if (d) { API->timer_stop(d->t); free(d); }
}

static void doom_schedule(channel *c)
{
    if (json_array_size(c->members) || !json_object_get(c->meta, "selfdestruct") ||
        strmap_get(ST.doomed, c->id))
        return;
    doom *d = calloc(1, sizeof *d);
    if (!d) return;
    snprintf(d->id, sizeof d->id, "%s", c->id);
    d->t = API->timer_start(ST.self, SELFDESTRUCT_MS, 0, doom_fire, d);
    if (!d->t || strmap_put(ST.doomed, d->id, d)) { if (d->t) API->timer_stop(d->t); free(d); }
}

static void doom_free(void *v) { free(v); }   /* timers are stopped by the host */

/* Removes a member; returns the remaining members (a new reference). */
static json_t *remove_member(channel *c, long at)
{
    json_t *rest = json_copy(c->members);
    json_array_remove(rest, (size_t)at);
    json_decref(c->members);
    c->members = json_incref(rest);
    doom_schedule(c);
    return rest;
}

/* ---- JOIN ---- */

typedef struct join_wait { char id[40]; op *o; } join_wait;

static void join_checked(channel *ch, op *o, json_t *keys)
{
    const char *user = json_string_value(json_object_get(o->args, "user"));
    const char *front = json_string_value(json_object_get(o->args, "front"));
    if (ch->meta && !meta_allows(ch->meta, keys)) {
        json_t *detail = meta_allow_list(ch->meta);
        json_array_insert_new(detail, 0, json_string(CPS_HK_ID));
        API->reply(o->call, CPS_ERR_ERESTRICTED, json_pack("{s o}", "detail", detail));
    } else {
        doom_cancel(ch->id);
        add_member(o->call, ch, user, front);
    }
    ch_done(ch, o);
}

static void join_keys(void *ud, int error, json_t *data)
{
    join_wait *w = ud;
    channel *ch = ch_get(w->id, false);     /* held: its op is busy */
    json_t *keys = error ? NULL : json_object_get(data, "keys");
    if (ch) join_checked(ch, w->o, json_is_array(keys) ? keys : NULL);
    free(w);
}

static void op_join(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { API->reply(o->call, CPS_EIO, NULL); ch_done(ch, o); return; }
    json_t *sd = json_object_get(ch->meta, "selfdestruct");
    if (json_is_string(sd) && strcmp(json_string_value(sd), ST.instance) != 0) {
        /* A self-destructing channel outlived its server instance. */
        const cps_storage_backend *b = backend();
        if (b) b->channel_archive(b->state, ch->id, NULL, ignore_done, NULL);
        ch_forget_state(ch);
        API->reply(o->call, CPS_ERR_ESELFDESTRUCT, NULL);
        ch_done(ch, o);
        return;
    }
    if (!json_is_true(json_object_get(ch->meta, "restricted"))) { join_checked(ch, o, NULL); return; }
    char core[64];
    const char *user = json_string_value(json_object_get(o->args, "user"));
    join_wait *w = calloc(1, sizeof *w);
    if (!w || !API->owner(ST.self, "core", user, core, sizeof core)) {
        free(w);
        join_checked(ch, o, NULL);
        return;
    }
    snprintf(w->id, sizeof w->id, "%s", ch->id);
    w->o = o;
    API->query(ST.self, core, "GET_AUTH_KEYS", json_pack("{s s}", "user", user), 0, join_keys, w);
}

/* JOIN {channel, user, front} -> {members: previous members} */
static int cmd_join(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id, *user;
    if (!args_ok(args, &id, &user) || !json_is_string(json_object_get(args, "front"))) return CPS_EINVAL;
    channel *ch = ch_get(id, true);
    if (!ch) return CPS_ENOMEM;
    if (ids_is_ephemeral(id)) {   /* no metadata, no checks */
        add_member(call, ch, user, json_string_value(json_object_get(args, "front")));
        return CPS_OK;
    }
    int rc = ch_enqueue(ch, op_join, call, json_incref(args));
    return rc ? rc : CPS_ASYNC;
}

/* ---- LEAVE, DROP_USER ---- */

/* LEAVE {channel, user} -> {members: remaining} | ENOENT | NOT_IN_CHAN */
static int cmd_leave(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id, *user;
    if (!args_ok(args, &id, &user)) return CPS_EINVAL;
    channel *ch = ch_get(id, false);
    if (!ch) { API->reply(call, CPS_ENOENT, NULL); return CPS_OK; }
    long at = find_member(ch, user);
    if (at < 0) { API->reply(call, CPS_ERR_NOT_IN_CHAN, NULL); return CPS_OK; }
    API->reply(call, CPS_OK, json_pack("{s o}", "members", remove_member(ch, at)));
    ch_release(ch);
    return CPS_OK;
}

/* DROP_USER {user, channels} -> {channels: {ch: remaining members}} */
static int cmd_drop_user(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *user = json_string_value(json_object_get(args, "user"));
    if (!user) return CPS_EINVAL;
    json_t *out = json_object();
    size_t i;
    json_t *chv;
    json_array_foreach(json_object_get(args, "channels"), i, chv) {
        const char *id = json_string_value(chv);
        channel *ch = id ? ch_get(id, false) : NULL;
        long at = ch ? find_member(ch, user) : -1;
        if (at < 0) continue;
        json_object_set_new(out, id, remove_member(ch, at));
        ch_release(ch);
    }
    API->reply(call, CPS_OK, json_pack("{s o}", "channels", out));
    return CPS_OK;
}

/* ---- a front node died: its users are gone from every channel ---- */

typedef struct front_loss { const char *front; json_t *hit; } front_loss;

static void find_front_members(const char *id, void *v, void *ud)
{
    channel *ch = v;
    front_loss *f = ud;
    size_t i;
    json_t *m;
    json_array_foreach(ch->members, i, m)
        if (!strcmp(json_string_value(json_array_get(m, 1)), f->front)) { json_array_append_new(f->hit, json_string(id)); return; }
}

static void peer_down(const char *node, void *ud)
{
    (void)ud;
    if (strncmp(node, "front:", 6) != 0) return;
    front_loss f = { node, json_array() };
    strmap_each(ST.channels, find_front_members, &f);
    size_t i;
    json_t *idv;
    json_array_foreach(f.hit, i, idv) {
        channel *ch = ch_get(json_string_value(idv), false);
        if (!ch) continue;
        json_t *gone = json_array(), *rest = json_array();
        size_t j;
        json_t *m;
        json_array_foreach(ch->members, j, m)
            json_array_append(strcmp(json_string_value(json_array_get(m, 1)), node) ? rest : gone, m);
        json_decref(ch->members);
        ch->members = rest;
        json_array_foreach(gone, j, m) {
            json_t *leave = json_pack("[i O s s]", 0, json_array_get(m, 0), "LEAVE", ch->id);
            cps_fanout(API, ST.self, ch->members, NULL, leave);
            json_decref(leave);
        }
        json_decref(gone);
        doom_schedule(ch);
        ch_release(ch);
    }
    if (json_array_size(f.hit)) API->log(ST.self, CPS_LOG_WARN, "%s lost: its users left %zu channel(s)", node, json_array_size(f.hit));
    json_decref(f.hit);
}

/* ---- what the admin commands read (docs/protocol/admin.md §3.1, §3.4) ---- */

static void count_active(const char *id, void *v, void *ud)
{
    (void)id;
    if (json_array_size(((channel *)v)->members)) (*(size_t *)ud)++;
}

/* CHANNEL_ADMIN_INFO {} -> {active, open}: channels with members, channels
** held in memory.  {channel} -> {metadata, members}: a channel held in
** memory, else ENOENT (ch_get does not open it). */
static int cmd_admin_info(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    if (!id) {
        size_t active = 0;
        strmap_each(ST.channels, count_active, &active);
        API->reply(call, CPS_OK, json_pack("{s I s I}", "active", (json_int_t)active,
                                           "open", (json_int_t)strmap_count(ST.channels)));
        return CPS_OK;
    }
    channel *ch = ch_get(id, false);
    if (!ch) return CPS_ENOENT;
    /* a channel open without metadata lines has the implicit {channel} */
    json_t *meta = ch->meta ? json_incref(ch->meta) : json_pack("{s s}", "channel", ch->id);
    json_int_t n = (json_int_t)json_array_size(ch->members);
    ch_release(ch);
    if (!meta) return CPS_ENOMEM;
    API->reply(call, CPS_OK, json_pack("{s o s I}", "metadata", meta, "members", n));
    return CPS_OK;
}

/* CHANNEL_ADMIN_NOTIFY {channel, message} -> {members}: the history
** keeper's message `message` (a text, at most 64 KiB) to every member of
** the channel, as the deletion notices go (docs/protocol/history.md §9.2):
** how an admin script sends to the sessions of a channel. */
static int cmd_admin_notify(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    json_t *msg = json_object_get(args, "message");
    if (!id || !json_is_string(msg) || json_string_length(msg) == 0 || json_string_length(msg) > 65536)
        return CPS_EINVAL;
    channel *ch = ch_get(id, false);
    json_int_t n = 0;
    if (ch) {
        n = (json_int_t)json_array_size(ch->members);
        hk_notify_members(ch, json_string_value(msg));
        ch_release(ch);
    }
    API->reply(call, CPS_OK, json_pack("{s I}", "members", n));
    return CPS_OK;
}

/* CHANNEL_ADMIN_METADATA {channel} -> {metadata}: the current metadata of
** a channel, from memory or its metadata log (replayed, not kept), whoever
** may see it; ENOENT if it has none (GET_STORED_METADATA, account
** archival's owner check).  A channel's legacy first-line metadata is not
** read here. */
typedef struct admin_meta { cps_call *call; char id[64]; } admin_meta;

static void admin_meta_read(void *ud, int status, const char *data, size_t len)
{
    admin_meta *m = ud;
    json_t *meta = status == CPS_OK ? meta_replay(data, len, NULL, 0) : NULL;
    if (meta && json_object_size(meta)) API->reply(m->call, CPS_OK, json_pack("{s o}", "metadata", meta));
    else { json_decref(meta); API->reply(m->call, status == CPS_OK || status == CPS_ENOENT ? CPS_ENOENT : status, NULL); }
    free(m);
}

static int cmd_admin_metadata(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    size_t n = id ? strlen(id) : 0;
    if (n != 32 && n != 33) return CPS_EINVAL;
    channel *ch = ch_get(id, false);
    if (ch) {
        json_t *meta = ch->meta ? json_incref(ch->meta) : NULL;
        ch_release(ch);
        if (meta) { API->reply(call, CPS_OK, json_pack("{s o}", "metadata", meta)); return CPS_OK; }
    }
    const cps_storage_backend *b = backend();
    admin_meta *m = calloc(1, sizeof *m);
    if (!b || !m) { free(m); return CPS_ENOMEM; }
    m->call = call;
    snprintf(m->id, sizeof m->id, "%s", id);
    /* the backend checks the id before it becomes a path */
    int rc = b->meta_read(b->state, id, admin_meta_read, m);
    if (rc) { free(m); return rc; }
    return CPS_ASYNC;
}

/* ---- life cycle ---- */

static void fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    fo_fini();
    ch_free_all();
    strmap_free(ST.doomed, doom_free);
    ST.doomed = NULL;
}

static int plugin_init(const cps_api *api, cps_plugin *self, void **state)
{
    (void)state;
    ST.api = api;
    ST.self = self;
    ST.node = api->self_node(self);
    if (!ST.node) {
        api->log(self, CPS_LOG_ERROR, "the storage plugin serves a node: list it in `nodes`");
        return CPS_EINVAL;
    }
    ids_random_user(ST.instance);
    ST.max_ops = (size_t)conf_positive(api->config(self), "max_queue_per_channel", 10000);
    ST.channels = strmap_new();
    ST.doomed = strmap_new();
    ST.c_stored = api->counter(self, "storage_messages_stored_total");
    ST.c_delivered = api->counter(self, "storage_deliveries_total");
    static const struct { const char *name; cps_command_fn fn; } cmds[] = {
        { "JOIN", cmd_join }, { "LEAVE", cmd_leave }, { "DROP_USER", cmd_drop_user },
        { "CHANNEL_MESSAGE", cmd_channel_message }, { "HISTORY", cmd_history },
        { "CHANNEL_ADMIN_INFO", cmd_admin_info }, { "CHANNEL_ADMIN_METADATA", cmd_admin_metadata },
        { "CHANNEL_ADMIN_NOTIFY", cmd_admin_notify },
    };
    int rc = fo_init();
    if (rc) return rc;
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        rc = fo_register(cmds[i].name, cmds[i].fn);
        if (rc) return rc;
    }
    api->on_peer_down(self, peer_down, NULL);
    return chanrpc_register();
}

CPS_PLUGIN_DEFINE("storage", "0.2.0", plugin_init, fini);
