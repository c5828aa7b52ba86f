/*
** example_note.c - a signed RPC command in C that reaches storage, to copy.
**
** EXAMPLE_NOTE_SET (signed, args: a string of at most 1000 characters)
** keeps a note for the caller's public key; EXAMPLE_NOTE_GET (signed)
** answers it (null if none).  It shows the three things a real command
** does:
**   - read the caller's key: api->rpc_key(rpc) (the host checked the
**     signature and the cookie before calling us);
**   - answer or fail: api->rpc_reply(rpc, value) / return CPS_EINVAL (the
**     client gets [txid, "ERROR", "EINVAL"]);
**   - reach storage the way that also works in a cluster: the RPC half runs
**     where RPC is dispatched (a core), and asks the storage node that owns
**     the key (api->owner) through a command this plugin registers on the
**     storage role (api->register_role_command); that half uses the
**     storage backend's small records.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cps.h"
#include "ids.h"      /* plugins/common: the safe-key rule */

#define NS "example-notes"

static const cps_api *api;
static cps_plugin *me;

/* ---- storage half: runs on the storage node owning the key ---- */

static void put_done(void *ud, int status)
{
    cps_call *call = ud;
    api->reply(call, status, NULL);
}

static void get_done(void *ud, int status, const char *data, size_t len)
{
    cps_call *call = ud;
    if (status == CPS_ENOENT) api->reply(call, CPS_OK, json_pack("{s n}", "note"));
    else if (status) api->reply(call, status, NULL);
    else api->reply(call, CPS_OK, json_pack("{s s%}", "note", data, len));
}

/* {key, note?}: note present = store it, absent = read it. */
static int note_cmd(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *key = json_string_value(json_object_get(args, "key"));
    json_t *note = json_object_get(args, "note");
    const cps_storage_backend *b = api->storage(me, NULL);
    char sk[IDS_KEY_LEN + 1];   /* records are keyed by the key's safe form */
    if (!ids_safe_key(key, sk) || !b) return CPS_EINVAL;
    int rc = json_is_string(note)
        ? b->record_put(b->state, NS, sk, json_string_value(note), json_string_length(note), put_done, call)
        : b->record_get(b->state, NS, sk, get_done, call);
    return rc ? rc : CPS_ASYNC;   /* the backend calls back exactly once */
}

/* ---- RPC half: runs where the client's RPC is dispatched ---- */

static void stored(void *ud, int error, json_t *data)
{
    cps_rpc *rpc = ud;
    if (error) api->rpc_error(rpc, error);
    else if (json_object_get(data, "note")) api->rpc_reply(rpc, json_incref(json_object_get(data, "note")));
    else api->rpc_reply(rpc, json_string("OK"));
}

static int ask_storage(cps_rpc *rpc, json_t *args)
{
    char node[64];
    if (!api->owner(me, "storage", api->rpc_key(rpc), node, sizeof node)) { json_decref(args); return CPS_EIO; }
    api->query(me, node, "EXAMPLE_NOTE", args, 0, stored, rpc);
    return CPS_ASYNC;
}

static int note_set(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    if (!json_is_string(args) || json_string_length(args) > 1000) return CPS_EINVAL;
    return ask_storage(rpc, json_pack("{s s s O}", "key", api->rpc_key(rpc), "note", args));
}

static int note_get(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)args; (void)ud;
    return ask_storage(rpc, json_pack("{s s}", "key", api->rpc_key(rpc)));
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    api = a;
    me = self;
    /* CPS_ENOENT: this process runs no storage node (a cluster's core). */
    int rc = api->register_role_command(self, "storage", "EXAMPLE_NOTE", note_cmd, NULL);
    if (rc && rc != CPS_ENOENT) return rc;
    rc = api->register_rpc(self, "EXAMPLE_NOTE_SET", CPS_RPC_AUTH, note_set, NULL);
    if (!rc) rc = api->register_rpc(self, "EXAMPLE_NOTE_GET", CPS_RPC_AUTH, note_get, NULL);
    return rc;
}

CPS_PLUGIN_DEFINE("example_note", "1.0.0", plugin_init, NULL);
