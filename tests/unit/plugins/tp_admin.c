/*
** tp_admin.c - a test plugin with one admin command and its one-line
** summary (ABI 2.1 rpc_describe), for tests/integration/admin-cli.test.js:
** `cpsd admin help` must show the summary, and a call the handler's answer.
*/
#include <string.h>
#include "cps.h"

static const cps_api *api;

/* The operator's call (key NULL) gets the words it was given back. */
static int plugin_stats(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    if (!json_is_array(args)) return CPS_EINVAL;
    if (json_array_size(args) == 1 && !strcmp(json_string_value(json_array_get(args, 0)) ?: "", "fail"))
        return CPS_EIO;
    api->rpc_reply(rpc, json_pack("{s:s, s:O, s:b}", "answered_by", "tp_admin", "args", args,
                                  "operator", api->rpc_key(rpc) == NULL));
    return CPS_OK;
}

static int plugin_init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    api = a;
    int rc = api->register_rpc(self, "test-plugin-stats", CPS_RPC_ADMIN, plugin_stats, NULL);
    if (rc) return rc;
    return api->rpc_describe(self, "test-plugin-stats", "answers its arguments (test plugin)");
}

CPS_PLUGIN_DEFINE("tp_admin", "1.0.0", plugin_init, NULL);
