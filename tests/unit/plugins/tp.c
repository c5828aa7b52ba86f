/*
** tp.c - the test plugin of test_plugin.c, compiled once per variant:
**   TP_GOOD       ABI CPS_ABI_MAJOR.CPS_ABI_MINOR, registers RPC TP_CMD
**                 (anonymous, answers its args) and logs "tp fini" at unload.
**   TP_OLD_MINOR  ABI major.0, uses only the 1.0 part of the table (it
**                 checks api->size covers what it calls), registers TP_OLD_CMD.
**   TP_BAD_MAJOR  ABI (major+1).0: registers TP_BAD_CMD anyway, then returns
**                 CPS_EVERSION (CPS_OK if TP_BAD_MAJOR_SAYS_OK is set); the
**                 host must refuse it and undo TP_BAD_CMD.
**   TP_NEW_MINOR  ABI major.(minor+1), registers TP_NEW_CMD and returns OK
**                 (no check of its own): the host must refuse it by itself.
**   TP_DUP        registers TP_DUP_OTHER then TP_CMD (GOOD's), returns the
**                 CPS_EEXIST it gets.
**   TP_FAIL       registers TP_FAIL_CMD, then returns CPS_EINVAL.
*/
#include <stdlib.h>
#include "cps.h"

static const cps_api *api;

/* The 1.0 table ends with strerror. */
#define API_1_0_SIZE (offsetof(cps_api, strerror) + sizeof(((cps_api *)0)->strerror))

static int echo(cps_rpc *rpc, json_t *args, void *ud)
{
    (void)ud;
    api->rpc_reply(rpc, json_incref(args));
    return CPS_OK;
}

#if defined(TP_GOOD)
static void fini(cps_plugin *self, void *state)
{
    api->log(self, CPS_LOG_INFO, "tp fini called, state=%s", (const char *)state);
}
#endif

CPS_EXPORT int cps_plugin_init(const cps_api *a, cps_plugin *self, cps_plugin_info *info)
{
    info->name = "tp";
    info->version = "0.0.1";
    info->abi_major = CPS_ABI_MAJOR;
    info->abi_minor = CPS_ABI_MINOR;
    api = a;
#if defined(TP_GOOD)
    if (CPS_API_CHECK(a)) return CPS_EVERSION;
    info->fini = fini;
    info->state = "tp-state";
    return api->register_rpc(self, "TP_CMD", CPS_RPC_ANON, echo, NULL);
#elif defined(TP_OLD_MINOR)
    info->abi_minor = 0;
    if (a->major != CPS_ABI_MAJOR || a->size < API_1_0_SIZE) return CPS_EVERSION;
    return api->register_rpc(self, "TP_OLD_CMD", CPS_RPC_ANON, echo, NULL);
#elif defined(TP_BAD_MAJOR)
    info->abi_major = CPS_ABI_MAJOR + 1;
    info->abi_minor = 0;
    /* Misbehaves on purpose: registers before giving up. */
    api->register_rpc(self, "TP_BAD_CMD", CPS_RPC_ANON, echo, NULL);
    /* With TP_BAD_MAJOR_SAYS_OK in the environment it does not even refuse
    ** itself: the host's own check of abi_major must. */
    if (getenv("TP_BAD_MAJOR_SAYS_OK")) return CPS_OK;
    return CPS_EVERSION;
#elif defined(TP_NEW_MINOR)
    info->abi_minor = CPS_ABI_MINOR + 1;
    return api->register_rpc(self, "TP_NEW_CMD", CPS_RPC_ANON, echo, NULL);
#elif defined(TP_DUP)
    int rc = api->register_rpc(self, "TP_DUP_OTHER", CPS_RPC_ANON, echo, NULL);
    if (rc) return rc;
    return api->register_rpc(self, "TP_CMD", CPS_RPC_ANON, echo, NULL);
#elif defined(TP_FAIL)
    api->register_rpc(self, "TP_FAIL_CMD", CPS_RPC_ANON, echo, NULL);
    return CPS_EINVAL;
#else
#error "define one of TP_GOOD TP_OLD_MINOR TP_BAD_MAJOR TP_NEW_MINOR TP_DUP TP_FAIL"
#endif
}
