/*
** storage.h - internal declarations of the storage role: channel state
** (members, metadata, history index) with a serial queue of operations per
** channel, so that every step for one channel (join checks, validation,
** append) happens in arrival order even when a step waits for I/O.
*/
#ifndef CPS_STORAGE_ROLE_H
#define CPS_STORAGE_ROLE_H
#include "cps.h"
#include "hkindex.h"
#include "ids.h"
#include "strmap.h"

typedef struct channel channel;
typedef struct op op;
typedef struct appending appending;   /* store.c: a message in flight */
typedef void (*op_fn)(channel *ch, op *o);

struct op {
    op_fn run;            /* runs when the op reaches the head; ends with ch_done */
    cps_call *call;       /* the query being answered, or NULL */
    json_t *args;         /* owned */
    op *next;
};

enum { CH_NEW, CH_OPENING, CH_OPEN };

struct channel {
    char id[40];
    json_t *members;      /* [[user, front], ...], copy-on-write */
    int state;
    json_t *meta;         /* current metadata object, or NULL */
    hk_index idx;         /* of the channel log */
    op *head, *tail;      /* not a keyqueue: the channel (members, metadata)
                          ** outlives an empty queue */
    size_t nops;
    bool busy;            /* the head op is running */
    bool in_kick;         /* kick() is on the stack */
    int readers;          /* history streams holding the channel */
    int open_status;      /* result of the last open */
    bool log_exists;      /* the channel log was found at open */
    bool stale;           /* failover: another node may have written it since
                          ** it was opened; reopened before the next op */
    /* Messages whose append is with the backend (and answers waiting behind
    ** them), in arrival order: the queue goes on with the next message
    ** meanwhile, so appends that arrive together are committed together. */
    appending *fly_head, *fly_tail;
    size_t nfly;
};

extern struct storage_role {
    const cps_api *api;
    cps_plugin *self;
    const char *node;
    strmap *channels;
    strmap *doomed;       /* channel id -> self-destruct timer (docs/protocol/history.md §9.3) */
    char instance[33];    /* this process's id, for self-destructing channels */
    size_t max_ops;       /* per-channel queue bound */
    cps_counter *c_stored, *c_bytes_out, *c_delivered;
} ST;

#define API ST.api

/* channel.c */
const cps_storage_backend *backend(void);
channel *ch_get(const char *id, bool create);
int  ch_enqueue(channel *ch, op_fn run, cps_call *call, json_t *args);
void ch_done(channel *ch, op *o);
/* The running op lives on in ch->fly (store.c): the queue moves on. */
void ch_handoff(channel *ch);
/* Runs what may run now (after ch->fly shrank); ch may be freed. */
void ch_kick(channel *ch);
void ch_release(channel *ch);
void ch_forget_state(channel *ch);   /* drop metadata and index (reopen later) */
bool ch_is_member(channel *ch, const char *user);
void ch_free_all(void);

/* history.c */
int  cmd_history(cps_call *call, json_t *args, void *ud);
void hk_notify_members(channel *ch, const char *content);
void hk_notify_one(const char *user, const char *front, const char *content);
/* Expired (docs/protocol/history.md §9.1)? Then members are told (and an old one archived). */
bool hk_expired(channel *ch);

void ch_find_hash(channel *ch, const char *hash, void (*cb)(channel *, void *, bool, uint64_t), void *ud);

/* chanrpc.c: channel commands behind RPC (sizes, metadata, owners' acts) */
int  chanrpc_register(void);

/* store.c */
int  cmd_channel_message(cps_call *call, json_t *args, void *ud);
void op_message(channel *ch, op *o);   /* store args.content (args.user may be null) */
bool op_pipelines(const op *o);        /* may run while messages are in flight */
void fly_drop(channel *ch);            /* unload: forget what is in flight */

/* failover.c: storage failover (docs/protocol/cluster.md §11) */
int  fo_init(void);
void fo_fini(void);
/* Registers a channel command behind the gate that refuses (EUNAVAILABLE)
** channels of slots this node does not serve now. */
int  fo_register(const char *name, cps_command_fn fn);
bool fo_serves(const char *id);
/* A write of channel `id` was fenced: check the slot's lease now. */
void fo_fenced(const char *id);

/* metadata.c */
/* Apply one metadata log command line to `meta`; 0 or an error code. */
int  meta_apply(json_t *meta, const char *cmd, json_t *value);
/* Replay a dedicated metadata log (and the legacy first line, or NULL). */
json_t *meta_replay(const char *log, size_t len, const char *legacy, size_t legacy_len);
bool meta_valid(json_t *meta, const char *channel);
bool meta_allows(json_t *meta, json_t *keys);
json_t *meta_allow_list(json_t *meta);

#endif
