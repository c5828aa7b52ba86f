/*
** tp.c - the test plugin of test_plugin.c, compiled once per variant.  Each
** variant's descriptor is what a real plugin built that way would export:
**   TP_GOOD       ABI CPS_ABI_MAJOR.CPS_ABI_MINOR, registers RPC TP_CMD
**                 (anonymous, answers its args), logs "tp fini" at unload.
**   TP_OLD_MINOR  an older minor: minor 0 and a table that is a prefix of
**                 today's (it uses nothing past errcode): loads, TP_OLD_CMD.
**   TP_BAD_MAJOR  ABI (major+1).0: must be refused before init runs (init
**                 would register TP_BAD_CMD).
**   TP_NEW_MINOR  ABI major.(minor+1) with a table one function longer:
**                 refused before init runs (TP_NEW_CMD never registered).
**   TP_BIG_TABLE  today's minor but a larger table: cps.h was changed
**                 without a minor bump; refused.
**   TP_SMALL_DEF  a descriptor smaller than 2.0's: refused.
**   TP_V1         an ABI 1.x plugin (exports cps_plugin_init): refused
**                 with a message saying so.
**   TP_DUP        registers TP_DUP_OTHER then TP_CMD (GOOD's), returns the
**                 CPS_EEXIST it gets.
**   TP_FAIL       registers TP_FAIL_CMD, then returns CPS_EINVAL.
*/
#include <stdlib.h>
#include "cps.h"

#if !defined(TP_V1)
static const cps_api *api;

static int echo(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    api->rpc_reply(rpc, json_incref(args));
    return CPS_OK;
}

/* Registers `cmd` (NULL: nothing) and returns `rc`, or the failure. */
static int tp_register(const cps_api *a, cps_plugin *self, const char *cmd, int rc)
{
    api = a;
    int r = cmd ? api->register_rpc(self, cmd, CPS_RPC_ANON, echo, NULL) : CPS_OK;
    return r ? r : rc;
}
#endif

#if defined(TP_GOOD)
static void fini(cps_plugin *self, void *state)
{
    api->log(self, CPS_LOG_INFO, "tp fini called, state=%s", (const char *)state);
}
static int init(const cps_api *a, cps_plugin *self, void **state)
{
    *state = "tp-state";
    return tp_register(a, self, "TP_CMD", CPS_OK);
}
CPS_PLUGIN_DEFINE("tp", "0.0.1", init, fini);

#elif defined(TP_OLD_MINOR)
static int init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    return tp_register(a, self, "TP_OLD_CMD", CPS_OK);
}
CPS_EXPORT const cps_plugin_def cps_plugin_entry = {
    sizeof(cps_plugin_def), CPS_ABI_MAJOR, 0, offsetof(cps_api, errcode) + sizeof(void *),
    "tp", "0.0.1", init, NULL };

#elif defined(TP_BAD_MAJOR) || defined(TP_NEW_MINOR) || defined(TP_BIG_TABLE) || defined(TP_SMALL_DEF)
static int init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    return tp_register(a, self, "TP_BAD_CMD", CPS_OK);   /* must never run */
}
#if defined(TP_BAD_MAJOR)
CPS_EXPORT const cps_plugin_def cps_plugin_entry = {
    sizeof(cps_plugin_def), CPS_ABI_MAJOR + 1, 0, sizeof(cps_api), "tp", "0.0.1", init, NULL };
#elif defined(TP_NEW_MINOR)
CPS_EXPORT const cps_plugin_def cps_plugin_entry = {
    sizeof(cps_plugin_def), CPS_ABI_MAJOR, CPS_ABI_MINOR + 1, sizeof(cps_api) + sizeof(void *),
    "tp", "0.0.1", init, NULL };
#elif defined(TP_BIG_TABLE)
CPS_EXPORT const cps_plugin_def cps_plugin_entry = {
    sizeof(cps_plugin_def), CPS_ABI_MAJOR, CPS_ABI_MINOR, sizeof(cps_api) + sizeof(void *),
    "tp", "0.0.1", init, NULL };
#else
CPS_EXPORT const cps_plugin_def cps_plugin_entry = {
    offsetof(cps_plugin_def, init), CPS_ABI_MAJOR, CPS_ABI_MINOR, sizeof(cps_api),
    "tp", "0.0.1", init, NULL };
#endif

#elif defined(TP_V1)
/* The 1.x entry point: a function, no descriptor. */
CPS_EXPORT int cps_plugin_init(const void *a, void *self, void *info);
CPS_EXPORT int cps_plugin_init(const void *a, void *self, void *info)
{
    (void)a; (void)self; (void)info;
    abort();   /* must never be called */
}

#elif defined(TP_DUP)
static int init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    int rc = tp_register(a, self, "TP_DUP_OTHER", CPS_OK);
    return rc ? rc : tp_register(a, self, "TP_CMD", CPS_OK);
}
CPS_PLUGIN_DEFINE("tp", "0.0.1", init, NULL);

#elif defined(TP_FAIL)
static int init(const cps_api *a, cps_plugin *self, void **state)
{
    (void)state;
    return tp_register(a, self, "TP_FAIL_CMD", CPS_EINVAL);
}
CPS_PLUGIN_DEFINE("tp", "0.0.1", init, NULL);

#else
#error "define one of the TP_* variants listed above"
#endif
