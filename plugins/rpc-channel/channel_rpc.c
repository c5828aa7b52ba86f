/*
** channel_rpc.c - the RPC commands about channels (spec docs/protocol/rpc.md §5-§6):
** sizes, metadata, "is it new", mailbox writes and line deletion, and the
** owners' commands.  Each validates its arguments and asks the storage node
** that owns the channel (CHANNEL_* commands of the storage role); this
** plugin holds no state, so it runs wherever RPC is dispatched.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cps.h"
#include "ids.h"
#include "failover.h"

#define MAX_IDS 10000

static struct {
    const cps_api *api;
    cps_plugin *self;
} P;

#define API P.api

/* An id RPC may name: a channel (32/33) or a blob (48), [A-Za-z0-9+=-]. */
static bool valid_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    enum ids_kind k = ids_kind_of_len(n);
    return (k == IDS_PAD || k == IDS_ADMIN || k == IDS_BLOB) && ids_safe_chars(id, n);
}

/* ---- forwarding one call to the channel's storage node ---- */

typedef struct fwd {
    cps_rpc *rpc;
    const char *field;      /* the member of the answer to reply; NULL: all of it;
                            ** "": no value */
} fwd;

static void forwarded(void *ud, int error, json_t *data)
{
    fwd *f = ud;
    if (error) API->rpc_error(f->rpc, error);
    else if (!f->field) API->rpc_reply(f->rpc, data ? json_incref(data) : NULL);
    else if (!*f->field) API->rpc_reply(f->rpc, NULL);
    else {
        json_t *v = json_object_get(data, f->field);
        API->rpc_reply(f->rpc, v ? json_incref(v) : json_null());
    }
    free(f);
}

/* The storage node serving channel `id` (the live one with storage
** failover, docs/protocol/cluster.md §11.3). */
static const char *storage_of(const char *id, char *buf, size_t n)
{
    static int failover = -1;
    if (failover < 0) failover = cps_failover_on(API, P.self);
    return cps_channel_storage(API, P.self, failover, id, buf, n);
}

/* Steals args. */
static int forward(cps_rpc *rpc, const char *id, const char *cmd, json_t *args, const char *field)
{
    char node[64];
    if (!storage_of(id, node, sizeof node)) { json_decref(args); return CPS_EINVAL; }
    fwd *f = calloc(1, sizeof *f);
    if (!f) { json_decref(args); return CPS_ENOMEM; }
    f->rpc = rpc;
    f->field = field;
    int rc = API->query(P.self, node, cmd, args, 0, forwarded, f);
    if (rc) free(f);             /* refused: forwarded will not run; the host answers rc */
    return rc ? rc : CPS_ASYNC;
}

static json_t *caller_args(cps_rpc *rpc, const char *channel)
{
    json_t *a = json_pack("{s s}", "channel", channel);
    if (API->rpc_caller(rpc)) json_object_set_new(a, "user", json_string(API->rpc_caller(rpc)));
    if (API->rpc_key(rpc)) json_object_set_new(a, "key", json_string(API->rpc_key(rpc)));
    return a;
}

/* ---- anonymous ---- */

static int get_file_size(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(args);
    if (!valid_id(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_CHAN); return CPS_OK; }
    return forward(rpc, id, "CHANNEL_SIZE", json_pack("{s s}", "id", id), "size");
}

/* Several sizes: one CHANNEL_SIZE query per id, at most MULTI_INFLIGHT of
** them outstanding per call, the next issued as each completes.  A call with
** 10,000 ids used to put 10,000 jobs on the storage node at once, filling
** the router queue and the thread pool so that everyone's appends failed
** (EBUSY); bounded, a big call only takes its share (docs/protocol/rpc.md §5). */
#define MULTI_INFLIGHT 16

typedef struct multi {
    cps_rpc *rpc;
    json_t *ids;            /* the request's array, in order */
    json_t *out;            /* {id: size}; keys pre-set in request order */
    size_t next;            /* next index of ids to query */
    int inflight;
    bool deleted_only;      /* GET_DELETED_PADS: the ids whose size is 0 */
    bool stop;              /* unloading (ECANCELED): issue nothing more */
} multi;

typedef struct multi_one { multi *m; char id[64]; } multi_one;

static void multi_finish(multi *m)
{
    if (m->deleted_only) {
        json_t *list = json_array();
        size_t i;
        json_t *id;
        json_array_foreach(m->ids, i, id) {
            json_t *sz = json_is_string(id) ? json_object_get(m->out, json_string_value(id)) : NULL;
            if (json_is_integer(sz) && json_integer_value(sz) == 0) json_array_append(list, id);
        }
        API->rpc_reply(m->rpc, list);
    } else {
        API->rpc_reply(m->rpc, json_incref(m->out));
    }
    json_decref(m->out);
    json_decref(m->ids);
    free(m);
}

static void multi_got(void *ud, int error, json_t *data);

/* Issue queries until MULTI_INFLIGHT are outstanding or the ids run out. */
static void multi_pump(multi *m)
{
    size_t n = json_array_size(m->ids);
    while (!m->stop && m->inflight < MULTI_INFLIGHT && m->next < n) {
        const char *id = json_string_value(json_array_get(m->ids, m->next++));
        char node[64];
        if (!valid_id(id) || !storage_of(id, node, sizeof node)) continue;
        multi_one *o = calloc(1, sizeof *o);
        if (!o) continue;
        o->m = m;
        snprintf(o->id, sizeof o->id, "%s", id);
        m->inflight++;
        int rc = API->query(P.self, node, "CHANNEL_SIZE", json_pack("{s s}", "id", id), 0, multi_got, o);
        if (rc) { m->inflight--; free(o); }   /* refused: that id's error (0 / omitted) */
    }
    if (m->inflight == 0 && (m->stop || m->next >= n)) multi_finish(m);
}

static void multi_got(void *ud, int error, json_t *data)
{
    multi_one *o = ud;
    multi *m = o->m;
    json_t *sz = error ? NULL : json_object_get(data, "size");
    /* per-id errors count as 0 (docs/protocol/rpc.md §5); GET_DELETED_PADS omits them */
    if (!error) json_object_set_new(m->out, o->id, json_is_integer(sz) ? json_incref(sz) : json_integer(0));
    if (error == CPS_ECANCELED) m->stop = true;
    free(o);
    m->inflight--;
    multi_pump(m);
}

static int sizes(cps_rpc *rpc, json_t *args, bool deleted_only)
{
    /* at most MAX_IDS ids per call; more is the malformed-list error */
    if (!json_is_array(args) || json_array_size(args) > MAX_IDS) {
        API->rpc_error(rpc, CPS_ERR_INVALID_LIST);
        return CPS_OK;
    }
    multi *m = calloc(1, sizeof *m);
    if (!m) return CPS_ENOMEM;
    m->rpc = rpc;
    m->ids = json_incref(args);
    m->out = json_object();
    m->deleted_only = deleted_only;
    if (!deleted_only) {    /* the answer's keys in request order; failures stay 0 */
        size_t i;
        json_t *v;
        json_array_foreach(args, i, v) {
            const char *id = json_string_value(v);
            if (id && strlen(id) < 256 && !json_object_get(m->out, id))
                json_object_set_new(m->out, id, json_integer(0));
        }
    }
    multi_pump(m);
    return CPS_ASYNC;
}

static int get_multiple_file_size(cps_rpc *rpc, json_t *args, void *ud) { (void)ud; return sizes(rpc, args, false); }
static int get_deleted_pads(cps_rpc *rpc, json_t *args, void *ud) { (void)ud; return sizes(rpc, args, true); }

static int is_new_channel(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(args);
    if (!ids_is_stored_channel(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_CHAN); return CPS_OK; }
    return forward(rpc, id, "CHANNEL_IS_NEW", json_pack("{s s}", "channel", id), NULL);
}

static int get_metadata(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(args);
    if (!id) { API->rpc_error(rpc, CPS_ERR_INVALID_CHAN); return CPS_OK; }
    if (!ids_is_stored_channel(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_CHAN_LENGTH); return CPS_OK; }
    return forward(rpc, id, "CHANNEL_METADATA", caller_args(rpc, id), "metadata");
}

static int write_private_message(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    if (!json_is_array(args)) { API->rpc_error(rpc, CPS_EINVAL); return CPS_OK; }
    const char *id = json_string_value(json_array_get(args, 0));
    json_t *content = json_array_get(args, 1);
    if (!json_is_string(content) || json_string_length(content) == 0) {
        API->rpc_error(rpc, CPS_ERR_INVALID_MESSAGE);
        return CPS_OK;
    }
    if (!ids_is_stored_channel(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_CHAN); return CPS_OK; }
    json_t *a = caller_args(rpc, id);
    json_object_set(a, "content", content);
    return forward(rpc, id, "CHANNEL_WRITE_PRIVATE", a, "time");
}

/* {channel, hash, proof}: the sender of a form response deletes it
** (docs/protocol/history.md §9.6); the storage node checks the proof with the server's
** curve key and answers EINVAL, EFORBIDDEN, HASH_NOT_FOUND or nothing. */
static int delete_mailbox_message(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    json_t *hash = json_object_get(args, "hash"), *proof = json_object_get(args, "proof");
    if (!json_is_string(hash) || !json_is_string(proof) || !ids_is_pad(id)) {
        API->rpc_error(rpc, CPS_EINVAL);
        return CPS_OK;
    }
    json_t *a = json_pack("{s s s O s O}", "channel", id, "hash", hash, "proof", proof);
    return forward(rpc, id, "CHANNEL_DELETE_LINE", a, "");
}

/* ---- authenticated: the owners' commands ---- */

static int set_metadata(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    const char *cmd = json_string_value(json_object_get(args, "command"));
    if (!ids_is_pad(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_CHAN); return CPS_OK; }
    if (!cmd) { API->rpc_error(rpc, CPS_ERR_INVALID_COMMAND); return CPS_OK; }
    json_t *a = caller_args(rpc, id);
    json_object_set_new(a, "command", json_string(cmd));
    json_object_set(a, "value", json_object_get(args, "value") ? json_object_get(args, "value") : json_null());
    return forward(rpc, id, "CHANNEL_SET_METADATA", a, "metadata");
}

static int clear_owned_channel(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(args);
    if (!ids_is_pad(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_ARGUMENTS); return CPS_OK; }
    return forward(rpc, id, "CHANNEL_CLEAR", caller_args(rpc, id), "");
}

static int remove_owned_channel(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    /* {channel, reason}; older clients send the bare channel id */
    const char *id = json_is_string(args) ? json_string_value(args) : json_string_value(json_object_get(args, "channel"));
    if (!id) { API->rpc_error(rpc, CPS_ERR_RPC_EARGS); return CPS_OK; }
    json_t *reason = json_object_get(args, "reason");
    if (ids_is_blob(id)) {      /* a blob (docs/protocol/rpc.md 8.4): the blob plugin's storage half */
        json_t *b = json_pack("{s s s s?}", "id", id, "key", API->rpc_key(rpc));
        if (b && json_is_string(reason)) json_object_set(b, "reason", reason);
        return forward(rpc, id, "BLOB_REMOVE", b, NULL);
    }
    if (!ids_is_stored_channel(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_ARGUMENTS); return CPS_OK; }
    json_t *a = caller_args(rpc, id);
    if (json_is_string(reason)) json_object_set(a, "reason", reason);
    return forward(rpc, id, "CHANNEL_REMOVE", a, "result");
}

static int trim_history(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    json_t *hash = json_object_get(args, "hash");
    if (!id) { API->rpc_error(rpc, CPS_ERR_RPC_EARGS); return CPS_OK; }
    if (!json_is_string(hash) || json_string_length(hash) != 64) { API->rpc_error(rpc, CPS_ERR_INVALID_ARGS); return CPS_OK; }
    if (!ids_is_pad(id)) { API->rpc_error(rpc, CPS_ERR_INVALID_ARGS); return CPS_OK; }
    json_t *a = caller_args(rpc, id);
    json_object_set(a, "hash", hash);
    return forward(rpc, id, "CHANNEL_TRIM", a, "result");
}

static int plugin_init(const cps_api *api, cps_plugin *self, void **state)
{
    (void)state;
    P.api = api;
    P.self = self;
    static const struct { const char *name; int kind; cps_rpc_fn fn; } cmds[] = {
        { "GET_FILE_SIZE", CPS_RPC_ANON, get_file_size },
        { "GET_MULTIPLE_FILE_SIZE", CPS_RPC_ANON, get_multiple_file_size },
        { "GET_DELETED_PADS", CPS_RPC_ANON, get_deleted_pads },
        { "IS_NEW_CHANNEL", CPS_RPC_ANON, is_new_channel },
        { "GET_METADATA", CPS_RPC_ANON, get_metadata },
        { "WRITE_PRIVATE_MESSAGE", CPS_RPC_ANON, write_private_message },
        { "DELETE_MAILBOX_MESSAGE", CPS_RPC_ANON, delete_mailbox_message },
        { "SET_METADATA", CPS_RPC_AUTH, set_metadata },
        { "CLEAR_OWNED_CHANNEL", CPS_RPC_AUTH, clear_owned_channel },
        { "REMOVE_OWNED_CHANNEL", CPS_RPC_AUTH, remove_owned_channel },
        { "TRIM_HISTORY", CPS_RPC_AUTH, trim_history },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = api->register_rpc(self, cmds[i].name, cmds[i].kind, cmds[i].fn, NULL);
        if (rc) return rc;
    }
    return CPS_OK;
}

CPS_PLUGIN_DEFINE("rpc-channel", "1.0.0", plugin_init, NULL);
