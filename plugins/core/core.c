/*
** core.c - the core role: the routing hub between fronts and storage.
** Channel commands go to the storage node that owns the channel (which
** keeps membership) and the core fans the results out to the fronts of the
** members, one DELIVER per front.  Client RPC is dispatched here to the
** commands registered through the ABI (C plugins and Lua scripts alike).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "core.h"
#include "fanout.h"
#include "ids.h"
#include "failover.h"

struct core_role C;

/* With storage failover, the live node serving the channel's slot
** (docs/protocol/cluster.md §11.3). */
static const char *storage_of(const char *key, char *buf, size_t n)
{
    static int failover = -1;
    if (failover < 0) failover = cps_failover_on(API, C.self);
    return cps_channel_storage(API, C.self, failover, key, buf, n);
}

static void fan_out(json_t *members, const char *except, json_t *msg)
{
    API->counter_add(C.c_fanout, (int64_t)cps_fanout(API, C.self, members, except, msg));
}

/* A query relayed to storage; `call` is answered when storage answers. */
typedef struct relay {
    cps_call *call;
    char channel[40];
    char user[40];
} relay;

static relay *relay_new(cps_call *call, json_t *args)
{
    relay *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->call = call;
    snprintf(r->channel, sizeof r->channel, "%s", json_string_value(json_object_get(args, "channel")) ?: "");
    snprintf(r->user, sizeof r->user, "%s", json_string_value(json_object_get(args, "user")) ?: "");
    return r;
}

static int to_storage(cps_call *call, json_t *args, const char *key, const char *cmd, cps_reply_fn cb)
{
    char st[64];
    if (!key || !storage_of(key, st, sizeof st)) return CPS_EINVAL;
    relay *r = relay_new(call, args);
    if (!r) return CPS_ENOMEM;
    API->query(C.self, st, cmd, json_incref(args), 0, cb, r);
    return CPS_ASYNC;
}

static bool valid_channel_args(json_t *args)
{
    return ids_valid_channel(json_string_value(json_object_get(args, "channel"))) &&
           json_is_string(json_object_get(args, "user"));
}

/* ---- JOIN ---- */

static void join_done(void *ud, int error, json_t *data)
{
    relay *r = ud;
    if (error) { API->reply(r->call, error, json_incref(data)); free(r); return; }
    json_t *members = json_object_get(data, "members");
    json_t *msg = json_pack("[i s s s]", 0, r->user, "JOIN", r->channel);
    fan_out(members, r->user, msg);
    json_decref(msg);
    json_t *ids = json_array();
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m) json_array_append(ids, json_array_get(m, 0));
    API->reply(r->call, CPS_OK, json_pack("{s o}", "members", ids));
    free(r);
}

static int cmd_join(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    if (!valid_channel_args(args)) return CPS_EINVAL;
    const char *ch = json_string_value(json_object_get(args, "channel"));
    /* The admin broadcast channel (33) keeps no member list. */
    if (ids_is_admin(ch)) { API->reply(call, CPS_OK, json_pack("{s []}", "members")); return CPS_OK; }
    return to_storage(call, args, ch, "JOIN", join_done);
}

/* ---- LEAVE and DROP_USER ---- */

static void leave_done(void *ud, int error, json_t *data)
{
    relay *r = ud;
    if (!error) {
        json_t *msg = json_pack("[i s s s]", 0, r->user, "LEAVE", r->channel);
        fan_out(json_object_get(data, "members"), r->user, msg);
        json_decref(msg);
    }
    API->reply(r->call, error, NULL);
    free(r);
}

static int cmd_leave(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    if (!valid_channel_args(args)) return CPS_EINVAL;
    const char *ch = json_string_value(json_object_get(args, "channel"));
    if (ids_is_admin(ch)) return CPS_OK;
    return to_storage(call, args, ch, "LEAVE", leave_done);
}

static void drop_done(void *ud, int error, json_t *data)
{
    relay *r = ud;
    const char *ch;
    json_t *members;
    if (!error) {
        json_object_foreach(json_object_get(data, "channels"), ch, members) {
            json_t *msg = json_pack("[i s s s]", 0, r->user, "LEAVE", ch);
            fan_out(members, r->user, msg);
            json_decref(msg);
        }
    }
    API->reply(r->call, error, NULL);
    free(r);
}

/* {user, channels}: one DROP_USER query per storage node concerned. */
static int cmd_drop_user(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *user = json_string_value(json_object_get(args, "user"));
    json_t *channels = json_object_get(args, "channels");
    if (!user || !json_is_array(channels)) return CPS_EINVAL;
    core_forget_user(user);
    json_t *by_storage = json_object();
    size_t i;
    json_t *ch;
    json_array_foreach(channels, i, ch) {
        char st[64];
        const char *c = json_string_value(ch);
        if (!ids_valid_channel(c) || ids_is_admin(c) || !storage_of(c, st, sizeof st)) continue;
        json_t *list = json_object_get(by_storage, st);
        if (!list) { list = json_array(); json_object_set_new(by_storage, st, list); }
        json_array_append(list, ch);
    }
    const char *st;
    json_t *list;
    json_object_foreach(by_storage, st, list) {
        relay *r = relay_new(NULL, args);
        if (!r) continue;
        API->query(C.self, st, "DROP_USER", json_pack("{s s s O}", "user", user, "channels", list), 0, drop_done, r);
    }
    json_decref(by_storage);
    return CPS_OK;
}

/* ---- channel messages ---- */

typedef struct msg_relay { relay r; json_t *msg; } msg_relay;

static void message_done(void *ud, int error, json_t *data)
{
    msg_relay *m = ud;
    /* a stored message comes back with its time: relay that one */
    json_t *stored = json_object_get(data, "msg");
    if (!error) fan_out(json_object_get(data, "members"), m->r.user, stored ? stored : m->msg);
    /* The ACK travels after the DELIVERs on the same ordered path. */
    API->reply(m->r.call, error, NULL);
    json_decref(m->msg);
    free(m);
}

static int cmd_channel_message(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    if (!valid_channel_args(args) || !json_is_string(json_object_get(args, "content"))) return CPS_EINVAL;
    const char *ch = json_string_value(json_object_get(args, "channel"));
    if (ids_is_admin(ch)) return CPS_EINVAL;  /* admin channel: written through RPC only */
    char st[64];
    if (!storage_of(ch, st, sizeof st)) return CPS_EINVAL;
    msg_relay *m = calloc(1, sizeof *m);
    if (!m) return CPS_ENOMEM;
    m->r.call = call;
    snprintf(m->r.channel, sizeof m->r.channel, "%s", ch);
    snprintf(m->r.user, sizeof m->r.user, "%s", json_string_value(json_object_get(args, "user")));
    m->msg = json_pack("[i O s s O]", 0, json_object_get(args, "user"), "MSG", ch, json_object_get(args, "content"));
    API->query(C.self, st, "CHANNEL_MESSAGE", json_incref(args), 0, message_done, m);
    return CPS_ASYNC;
}

/* ---- direct messages to users on other fronts ---- */

typedef struct user_msg { cps_call *call; int waiting; bool delivered; } user_msg;

static void user_msg_done(void *ud, int error, json_t *data)
{
    user_msg *u = ud;
    if (!error && json_is_true(json_object_get(data, "delivered"))) u->delivered = true;
    if (--u->waiting > 0) return;
    API->reply(u->call, u->delivered ? CPS_OK : CPS_ERR_enoent, NULL);
    free(u);
}

static int cmd_user_message(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    int n = API->role_count(C.self, "front");
    if (!json_is_string(json_object_get(args, "target")) || n <= 0) return CPS_EINVAL;
    user_msg *u = calloc(1, sizeof *u);
    if (!u) return CPS_ENOMEM;
    u->call = call;
    u->waiting = n;
    for (int i = 0; i < n; i++) {
        char front[32];
        snprintf(front, sizeof front, "front:%d", i);
        API->query(C.self, front, "DELIVER_USER", json_incref(args), 0, user_msg_done, u);
    }
    return CPS_ASYNC;
}

/* ---- history (stored by the storage role) ---- */

static void history_done(void *ud, int error, json_t *data)
{
    relay *r = ud;
    API->reply(r->call, error, json_incref(data));
    free(r);
}

static int cmd_history(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *ch = json_string_value(json_array_get(json_object_get(args, "request"), 1));
    if (!ids_valid_channel(ch)) return CPS_EINVAL;
    return to_storage(call, args, ch, "HISTORY", history_done);
}

static int plugin_init(const cps_api *api, cps_plugin *self, void **state)
{
    (void)state;
    C.api = api;
    C.self = self;
    if (!api->self_node(self)) {
        api->log(self, CPS_LOG_ERROR, "the core plugin serves a node: list it in `nodes`");
        return CPS_EINVAL;
    }
    C.c_fanout = api->counter(self, "core_deliveries_total");
    static const struct { const char *name; cps_command_fn fn; } cmds[] = {
        { "JOIN_CHANNEL", cmd_join }, { "LEAVE_CHANNEL", cmd_leave },
        { "DROP_USER", cmd_drop_user }, { "CHANNEL_MESSAGE", cmd_channel_message },
        { "USER_MESSAGE", cmd_user_message }, { "HISTORY", cmd_history },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = api->register_command(self, cmds[i].name, cmds[i].fn, NULL);
        if (rc) return rc;
    }
    return core_rpc_init();
}

CPS_PLUGIN_DEFINE("core", "0.1.0", plugin_init, core_rpc_fini);
