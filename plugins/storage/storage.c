/*
** storage.c - the storage role: the authoritative member list of every
** channel it owns (placement by channel id), and the history keeper's end
** of GET_HISTORY.  Until the history keeper lands, nothing is written to
** disk: every channel is relayed like an ephemeral one and histories are
** empty (answered with the protocol's end markers).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cps.h"
#include "ids.h"
#include "strmap.h"

/* The member list is copy-on-write: a change builds a new array, so a list
** handed to another node by reference is a stable snapshot. */
typedef struct channel {
    json_t *members;     /* [[user id, front node], ...] in join order */
} channel;

static struct {
    const cps_api *api;
    cps_plugin *self;
    strmap *channels;
} ST;

#define API ST.api

static void channel_free(void *v)
{
    channel *c = v;
    json_decref(c->members);
    free(c);
}

static long find_member(channel *c, const char *user)
{
    size_t i;
    json_t *m;
    json_array_foreach(c->members, i, m)
        if (strcmp(json_string_value(json_array_get(m, 0)), user) == 0) return (long)i;
    return -1;
}

static bool args_ok(json_t *args, const char **ch, const char **user)
{
    *ch = json_string_value(json_object_get(args, "channel"));
    *user = json_string_value(json_object_get(args, "user"));
    return ids_valid_channel(*ch) && *user;
}

/* JOIN {channel, user, front} -> {members: previous members} */
static int cmd_join(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *ch, *user, *front = json_string_value(json_object_get(args, "front"));
    if (!args_ok(args, &ch, &user) || !front) return CPS_EINVAL;
    channel *c = strmap_get(ST.channels, ch);
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c || !(c->members = json_array()) || strmap_put(ST.channels, ch, c)) {
            if (c) json_decref(c->members);
            free(c);
            return CPS_ENOMEM;
        }
    }
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
    API->reply(call, NULL, json_pack("{s o}", "members", before));
    return CPS_OK;
}

/* Removes a member; returns the remaining members (a new reference). */
static json_t *remove_member(const char *ch, channel *c, long at)
{
    json_t *rest = json_copy(c->members);
    json_array_remove(rest, (size_t)at);
    json_decref(c->members);
    c->members = json_incref(rest);
    if (json_array_size(rest) == 0) channel_free(strmap_del(ST.channels, ch));
    return rest;
}

/* LEAVE {channel, user} -> {members: remaining} | ENOENT | NOT_IN_CHAN */
static int cmd_leave(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *ch, *user;
    if (!args_ok(args, &ch, &user)) return CPS_EINVAL;
    channel *c = strmap_get(ST.channels, ch);
    if (!c) { API->reply(call, "ENOENT", NULL); return CPS_OK; }
    long at = find_member(c, user);
    if (at < 0) { API->reply(call, "NOT_IN_CHAN", NULL); return CPS_OK; }
    API->reply(call, NULL, json_pack("{s o}", "members", remove_member(ch, c, at)));
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
        const char *ch = json_string_value(chv);
        channel *c = ch ? strmap_get(ST.channels, ch) : NULL;
        long at = c ? find_member(c, user) : -1;
        if (at < 0) continue;
        json_object_set_new(out, ch, remove_member(ch, c, at));
    }
    API->reply(call, NULL, json_pack("{s o}", "channels", out));
    return CPS_OK;
}

/* CHANNEL_MESSAGE {channel, user, content} -> {members} to relay to. */
static int cmd_channel_message(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *ch, *user;
    if (!args_ok(args, &ch, &user)) return CPS_EINVAL;
    channel *c = strmap_get(ST.channels, ch);
    API->reply(call, NULL, json_pack("{s o}", "members", c ? json_incref(c->members) : json_array()));
    return CPS_OK;
}

/* HISTORY {user, request: [CMD, channel, opts...]} -> {ack, messages}.
** Histories are empty until the history keeper lands: only end markers. */
static int cmd_history(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_t *req = json_object_get(args, "request");
    const char *cmd = json_string_value(json_array_get(req, 0));
    const char *ch = json_string_value(json_array_get(req, 1));
    if (!cmd || !ids_valid_channel(ch)) return CPS_EINVAL;
    json_t *marker;
    if (strcmp(cmd, "GET_HISTORY") == 0) {
        json_t *opts = json_array_get(req, 2);
        json_t *txid = json_object_get(opts, "txid");
        marker = json_pack("{s i s s}", "state", 1, "channel", ch);
        if (txid) json_object_set(marker, "txid", txid);
    } else if (strcmp(cmd, "GET_HISTORY_RANGE") == 0) {
        json_t *txid = json_object_get(json_array_get(req, 2), "txid");
        if (!txid) { API->reply(call, NULL, json_pack("{s s}", "ack", "INVALID_ARGS")); return CPS_OK; }
        marker = json_pack("[s O s]", "HISTORY_RANGE_END", txid, ch);
    } else {
        marker = json_pack("[s s]", "FULL_HISTORY_END", ch);
    }
    char *text = json_dumps(marker, JSON_COMPACT);
    json_decref(marker);
    API->reply(call, NULL, json_pack("{s b s [s]}", "ack", 1, "messages", text ? text : "null"));
    free(text);
    return CPS_OK;
}

static void fini(cps_plugin *self, void *state)
{
    (void)self; (void)state;
    strmap_free(ST.channels, channel_free);
    ST.channels = NULL;
}

CPS_EXPORT int cps_plugin_init(const cps_api *api, cps_plugin *self, cps_plugin_info *info)
{
    info->name = "storage";
    info->version = "0.1.0";
    info->abi_major = CPS_ABI_MAJOR;
    info->abi_minor = CPS_ABI_MINOR;
    if (CPS_API_CHECK(api)) return CPS_EVERSION;
    info->fini = fini;
    ST.api = api;
    ST.self = self;
    if (!api->self_node(self)) {
        api->log(self, CPS_LOG_ERROR, "the storage plugin serves a node: list it in `nodes`");
        return CPS_EINVAL;
    }
    ST.channels = strmap_new();
    static const struct { const char *name; cps_command_fn fn; } cmds[] = {
        { "JOIN", cmd_join }, { "LEAVE", cmd_leave }, { "DROP_USER", cmd_drop_user },
        { "CHANNEL_MESSAGE", cmd_channel_message }, { "HISTORY", cmd_history },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = api->register_command(self, cmds[i].name, cmds[i].fn, NULL);
        if (rc) return rc;
    }
    return CPS_OK;
}
