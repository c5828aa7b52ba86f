/*
** example_rpc.c - a complete RPC command written in C, to copy from.
**
** It registers EXAMPLE_ECHO, an anonymous command that answers its argument
** unchanged.  A client calls it through the history keeper:
**   [seq, "MSG", HK, "[\"tx1\", [\"EXAMPLE_ECHO\", {\"a\": 1}]]"]
** and gets [0, HK, "MSG", me, "[\"tx1\", null, {\"a\": 1}, null]"].
** With a null argument it answers the error EINVAL: ["tx1", "ERROR", "EINVAL"].
**
** It also registers EXAMPLE_ECHO_CALLS, an admin command (kind
** CPS_RPC_ADMIN): an administrator's ADMIN ["EXAMPLE_ECHO_CALLS", null]
** and the operator's `cpsd admin EXAMPLE_ECHO_CALLS` both get how many
** echoes this process answered; any other key gets FORBIDDEN from the core.
**
** Build it as a MODULE library with hidden visibility (see CMakeLists.txt,
** cps_plugin()) and name it in `plugins` in the configuration.
*/
#include "cps.h"

static const cps_api *api;   /* kept for the plugin's whole life */
static cps_counter *calls;

/* `args` is borrowed: take a reference to hand it back. */
static int echo(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    api->counter_add(calls, 1);
    if (json_is_null(args)) return CPS_EINVAL;   /* the host answers "EINVAL" */
    api->rpc_reply(rpc, json_incref(args));      /* rpc_reply steals the value */
    return CPS_OK;
}

static int64_t echoes;

/* An admin command: rpc_key is the administrator's key, or NULL when the
** operator runs it from the command line (then args are its words). */
static int echo_calls(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)args; (void)ud;
    const char *who = api->rpc_key(rpc);
    api->rpc_reply(rpc, json_pack("{s I s s}", "echoes", (json_int_t)echoes, "asked_by", who ? who : "operator"));
    return CPS_OK;
}

static int counted_echo(cps_rpc *rpc, json_t *args, void *ud)
{
    int rc = echo(rpc, args, ud);
    if (rc == CPS_OK) echoes++;
    return rc;
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    api = a;
    calls = api->counter(self, "example_echo_calls_total");
    int rc = api->register_rpc(self, "EXAMPLE_ECHO", CPS_RPC_ANON, counted_echo, NULL);
    if (!rc) rc = api->register_rpc(self, "EXAMPLE_ECHO_CALLS", CPS_RPC_ADMIN, echo_calls, NULL);
    /* 2.1: a summary for `cpsd admin help` (absent from an older host) */
    if (!rc && CPS_API_HAS(api, rpc_describe))
        api->rpc_describe(self, "EXAMPLE_ECHO_CALLS", "how many EXAMPLE_ECHO calls were answered");
    return rc;
}

CPS_PLUGIN_DEFINE("example_rpc", "1.0.0", plugin_init, NULL);
