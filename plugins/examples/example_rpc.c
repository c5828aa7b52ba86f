/*
** example_rpc.c - a complete RPC command written in C, to copy from.
**
** It registers EXAMPLE_ECHO, an anonymous command that answers its argument
** unchanged.  A client calls it through the history keeper:
**   [seq, "MSG", HK, "[\"tx1\", [\"EXAMPLE_ECHO\", {\"a\": 1}]]"]
** and gets [0, HK, "MSG", me, "[\"tx1\", null, {\"a\": 1}, null]"].
** With a null argument it answers the error EINVAL: ["tx1", "ERROR", "EINVAL"].
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

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    api = a;
    calls = api->counter(self, "example_echo_calls_total");
    return api->register_rpc(self, "EXAMPLE_ECHO", CPS_RPC_ANON, echo, NULL);
}

CPS_PLUGIN_DEFINE("example_rpc", "1.0.0", plugin_init, NULL);
