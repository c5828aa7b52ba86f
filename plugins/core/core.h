/*
** core.h - internal declarations of the core role: routing (core.c) and
** the RPC dispatcher with its cookie sessions (rpc.c).
*/
#ifndef CPS_CORE_ROLE_H
#define CPS_CORE_ROLE_H
#include "cps.h"
#include "strmap.h"

extern struct core_role {
    const cps_api *api;
    cps_plugin *self;
    cps_counter *c_fanout;
} C;

#define API C.api

int  core_rpc_init(void);
void core_rpc_fini(cps_plugin *self, void *state);
/* A user disconnected: forget the keys it authenticated with. */
void core_forget_user(const char *user);

#endif
