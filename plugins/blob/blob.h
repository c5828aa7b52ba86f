/*
** blob.h - internals shared by the files of the blob plugin: blob.c (load,
** the RPC half, the HTTP routes) and stage.c (the storage half: uploads).
*/
#ifndef CPS_BLOB_H
#define CPS_BLOB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "cps.h"
#include "ids.h"
#include "strmap.h"

#define COOKIE_LEN 32              /* docs/protocol/rpc.md 8.1: 32 random hex characters */
#define COOKIE_TTL_MS 300000       /* an upload cookie is valid 5 minutes */
#define SESSION_IDLE_MS 300000     /* docs/protocol/rpc.md 8.3: sessions expire after 5 min idle */

typedef struct blob_conf {
    uint64_t max_upload;           /* blob.max_upload_size */
    uint64_t premium_upload;       /* blob.premium_upload_size (>= max_upload) */
    uint64_t default_limit;        /* blob.default_limit: when rpc-pin cannot answer */
    size_t max_queue;              /* operations waiting per key */
    size_t max_sessions;           /* upload sessions kept (one per key) */
} blob_conf;

extern struct blob_state {
    const cps_api *api;
    cps_plugin *self;
    blob_conf conf;
    bool closing;                  /* fini ran: callbacks only release */
} BL;

#define API BL.api


/* The storage half: registers its commands on this process's storage node.
** Returns CPS_ENOENT when there is none (the half is then skipped). */
int stage_init(void);
void stage_fini(void);

#endif
