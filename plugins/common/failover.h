/*
** failover.h - where a channel is served when storage failover is on
** (docs/protocol/cluster.md §11): the storage node owning its slot if that
** node is up, else the next one up (api->owner_live).  Header only.
*/
#ifndef CPS_COMMON_FAILOVER_H
#define CPS_COMMON_FAILOVER_H
#include "cps.h"

/* The shared setting `storage_failover = true` (storage nodes on one
** shared backend, such as storage-pg). */
static inline bool cps_failover_on(const cps_api *api, cps_plugin *p)
{
    return json_is_true(api->config_get(p, "storage_failover"));
}

/* The storage node to send a channel's commands to: the live owner with
** failover, the owner without (a node that is down then answers
** EUNAVAILABLE, as before). */
static inline const char *cps_channel_storage(const cps_api *api, cps_plugin *p, bool failover,
                                              const char *id, char *buf, size_t n)
{
    return failover && CPS_API_HAS(api, owner_live) ? api->owner_live(p, "storage", id, buf, n)
                                                   : api->owner(p, "storage", id, buf, n);
}

#endif
