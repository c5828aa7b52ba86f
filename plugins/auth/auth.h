/*
** auth.h - what the files of the auth plugin share: the plugin singleton,
** key helpers, and the storage half's per-key operations (store.c).
*/
#ifndef CPS_AUTH_H
#define CPS_AUTH_H
#include <stdbool.h>
#include "cps.h"
#include "ids.h"
#include "strmap.h"
#include "text.h"

#define TXID_LEN 32                /* base64 of 24 random bytes */
#define NS_CHALLENGES "challenges"
#define NS_MFA "mfa"
#define NS_SESSIONS "sessions"
#define STORE_BLOCK "block"
/* The storage half answers CPS_ERR_E_UNAVAILABLE while the backend lacks
** named objects (obj_*): answered 503 to clients. */

typedef struct auth_state {
    const cps_api *api;
    cps_plugin *self;
    bool closing;                  /* fini ran: finish what runs, start nothing */
    uint64_t ttl_ms;               /* challenges older than this are refused */
    uint64_t session_ms;           /* lifetime of an MFA session */
    bool restrict_registration;    /* WRITE_BLOCK needs a registrationProof */
    strmap *pending;               /* txid -> pend: challenges to collect (auth.c) */
    strmap *per_key;               /* safe key -> size_t: its entries in `pending` */
    strmap *otp_fails;             /* safe key -> otp_fail: recent wrong TOTP codes */
    uint64_t max_challenge_bytes;  /* a stored challenge's text */
    uint64_t max_challenges;       /* outstanding challenges, in total */
    uint64_t max_per_key;          /* outstanding challenges of one key */
    uint64_t otp_max_fails;        /* wrong codes per key per minute */
    bool index_loaded, index_loading, index_dirty, index_saving;
    cps_timer *saver;
    strmap *answering;             /* txids whose round 2 is in progress */
    struct keyqueue *keys;         /* storage half: an operation queue per safe key */
    size_t live;                   /* requests in progress (HTTP and storage) */
    cps_timer *gc;
} auth_state;

extern auth_state A;
#define API A.api

/* Strict (padded, standard alphabet, '-' read as '/') base64 into exactly
** `want` bytes, or any length up to `cap` when want is 0; -1 on error. */
long auth_b64(const char *s, unsigned char *out, size_t cap, size_t want);
/* base64 of 24 random bytes with '/' -> '-': txids and session ids. */
void auth_random_id(char out[TXID_LEN + 1]);
/* The backend, if it has what blocks need (obj_*), else NULL. */
const cps_storage_backend *auth_obj_backend(void);
/* JSON with the usual content type; `v` is stolen. */
void auth_respond_json(cps_http *r, int status, json_t *v);

/* The storage half (store.c).  `args` {op, key, ...} is borrowed.  Returns
** CPS_OK when queued: then `done` gets an error code or CPS_OK and a
** borrowed result, exactly once, later; else an error code (`done` is not
** called). */
typedef void (*auth_op_done)(void *ud, int error, json_t *data);
/* block.c: AUTH_BLOCK_READ on the key's storage node */
int auth_block_read_cmd(cps_call *call, json_t *args, void *ud);
int auth_store_init(void);
void auth_store_fini(void);
int auth_store_run(json_t *args, auth_op_done done, void *ud);
bool auth_store_idle(void);

/* GET /block (block.c). */
int auth_block_get(cps_http *req, void *ud);
#endif
