/*
** pg.h - internals shared by the files of the storage-pg plugin: pg.c (the
** backend table, id checks, per-object queues on the loop thread), pg_io.c
** (the SQL of each operation, on thread-pool threads) and pg_conn.c (the
** bounded connection pool, the schema, reconnection with back-off).
*/
#ifndef CPS_STORAGE_PG_H
#define CPS_STORAGE_PG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <libpq-fe.h>
#include "cps.h"

/* What a queue is keyed by: every request naming one object shares it. */
enum pg_kind { PG_CHANNEL, PG_PIN, PG_RECORD, PG_OBJ, PG_LEASE, PG_RAW };

enum pg_op {
    OP_APPEND, OP_READ, OP_SIZE, OP_TRIM, OP_TRUNCATE, OP_ARCHIVE, OP_RESTORE,
    OP_DELETE, OP_PLACEHOLDER, OP_META_APPEND, OP_META_READ, OP_META_WRITE,
    OP_PIN_APPEND, OP_PIN_READ, OP_REC_PUT, OP_REC_GET, OP_REC_DEL, OP_PIN_ARCHIVE, OP_PIN_RESTORE,
    OP_OBJ_APPEND, OP_OBJ_WRITE, OP_OBJ_READ, OP_OBJ_SIZE, OP_OBJ_MOVE, OP_OBJ_DELETE,
    OP_OBJ_ARCHIVE, OP_OBJ_RESTORE,
    OP_CUT,
    OP_LEASE,      /* lease.c: arg slot, arg2 ttl_ms, in holder */
    /* the raw view (cps_storage.h raw_*): o->ns is the space, o->id the name */
    OP_RAW_SPACES, OP_RAW_LIST, OP_RAW_SIZE, OP_RAW_READ, OP_RAW_WRITE
};

typedef struct pg_obj {
    int kind;
    char id[129];      /* channel id, safe key, record or object key */
    char ns[48];       /* record namespace, object store, or raw space */
} pg_obj;

typedef struct pg_req {
    struct pg_req *next;
    int op;
    uint64_t arg;      /* read offset, trim `from`, truncate length, cut offset */
    uint64_t arg2;     /* cut length */
    size_t max;        /* read size hint */
    char *in;          /* owned copy of the bytes to write, or the reason */
    size_t inlen;
    bool has_in;       /* archive: a reason was given (possibly "") */
    char to_ns[33];    /* obj_move: the target store and key */
    char to_id[129];
    /* A fenced channel write (lease.c): the slot and the epoch this process
    ** held for it when the write was requested (0: none). */
    bool fenced;
    unsigned fence_slot;
    uint64_t fence_epoch;
    /* Results, written on the pool thread and read in `after`. */
    bool ran;
    int status;
    uint64_t size, next_off;
    bool eof;
    char *out;         /* NUL-terminated, outlen bytes */
    size_t outlen;
    union {
        cps_store_done_fn done;
        cps_store_size_fn size;
        cps_store_read_fn read;
        cps_store_data_fn data;
        cps_store_list_fn list;
        cps_store_lease_fn lease;
    } cb;
    void *ud;
} pg_req;

/* ---- pg_conn.c: the pool (thread-safe) ---- */

typedef struct pg_pool pg_pool;

/* Connects `n` connections (blocking: called at load, before serving),
** creates or upgrades the schema.  NULL with a message in err on failure
** (the conninfo it names has no password). */
pg_pool *pg_pool_open(const char *conninfo, int n, char *err, size_t errlen);
void pg_pool_close(pg_pool *p);
/* Takes a connection (waits while all are taken), reconnecting a lost one
** if its back-off allows; NULL if the database is unreachable now. */
PGconn *pg_pool_take(pg_pool *p, char *err, size_t errlen);
/* A free connection that is up, without waiting or reconnecting (the loop
** may call it); NULL if there is none right now. */
PGconn *pg_pool_try_take(pg_pool *p);
/* Gives it back (a lost one is reconnected by a later pg_pool_take). */
void pg_pool_give(pg_pool *p, PGconn *c);
/* "host=... port=... dbname=... user=..." of the pool, for messages. */
const char *pg_pool_name(const pg_pool *p);

/* ---- pg_io.c ---- */

/* Runs a batch (a list linked by next) of requests on one object in one
** transaction, on a pool thread.  A database error fails every request of
** the batch with CPS_EIO (nothing of it is committed); the text goes in
** err.  Returns 0 or -1 (the error). */
int pg_io_batch(PGconn *c, const pg_obj *o, pg_req *batch, char *err, size_t errlen);
/* Whether a batch holds appends only (it can then travel in a train). */
bool pg_io_all_appends(const pg_obj *o, const pg_req *batch);
/* Runs the append-only batches of n objects in one transaction and one
** round trip (a train, pg.c); the same outcomes as pg_io_batch, for all of
** them together. */
int pg_io_appends(PGconn *c, int n, const pg_obj *const *objs, pg_req *const *batches, char *err, size_t errlen);
/* The same in steps, for a connection in non-blocking mode driven from the
** loop (pg.c, trains on the loop), whose session has the append statements
** prepared (pg_io_prepared): _send enters pipeline mode and sends it all
** (NULL: out of memory, in err); _take takes each value PQgetResult
** returns, NULL too, while PQisBusy is false, until it returns true; _end
** leaves pipeline mode, frees the pipe and returns what pg_io_appends
** would have.  Nothing of it blocks but _end after a failed explicit
** transaction (fenced batches, which trains never hold). */
typedef struct pg_pipe pg_pipe;
pg_pipe *pg_io_appends_send(PGconn *c, int n, const pg_obj *const *objs, pg_req *const *batches,
                            char *err, size_t errlen);
bool pg_io_appends_take(pg_pipe *pp, PGresult *res);
int pg_io_appends_end(pg_pipe *pp, PGconn *c);
/* Nothing of it went out (pipeline mode refused): another connection may
** try it.  And: the connection failed while driving it (no more results). */
bool pg_io_appends_unsent(const pg_pipe *pp);
void pg_io_appends_lost(pg_pipe *pp);
/* Whether this connection's session has the append statements prepared. */
bool pg_io_prepared(const PGconn *c);

/* ---- lease.c: storage failover leases and fencing ---- */

/* Loop thread: stamps a channel request with its slot's epoch (writes only,
** once this process has taken a lease); takes note of a lease's outcome. */
int  pg_lease_prepare(pg_req *r, unsigned slot, const char *holder, unsigned ttl_ms);
void pg_lease_stamp(const cps_api *api, cps_plugin *self, const char *id, pg_req *r);
void pg_lease_noted(pg_req *r, int status);
/* Pool thread, inside the batch's transaction: 0, -1 (database error) or
** PG_FENCED when a write's epoch is no longer current. */
#define PG_FENCED (-3)
int pg_lease_fence(PGconn *c, const pg_req *batch, char *err, size_t errlen);
/* Pool thread, in pipeline mode after BEGIN: sends the same checks as
** statements that fail with PG_FENCE_SQLSTATE when an epoch is no longer
** current (aborting the transaction).  How many were sent, -1 on error. */
#define PG_FENCE_SQLSTATE "22012"    /* division_by_zero: see lease.c */
int pg_lease_send_fence(PGconn *c, const pg_req *batch);
/* Pool thread: runs a batch of lease requests of one slot. */
int pg_lease_batch(PGconn *c, pg_req *batch, char *err, size_t errlen);

#endif
