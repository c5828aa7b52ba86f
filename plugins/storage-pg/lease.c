/*
** lease.c - storage failover in storage-pg (docs/protocol/cluster.md §11.4):
** the lease of each slot (one row of cps_lease: holder, epoch, expiry on the
** database's clock) and the fencing of channel writes by the epoch held.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg.h"

#define MAX_SLOTS 256          /* router.c has at most 64 nodes */
#define HOLDER_MAX 64
/* pg_advisory_xact_lock key while creating the table: two processes
** creating it at once would otherwise collide on the catalog. */
#define LEASE_LOCK 0x6370736c
/* A takeover waits at most this long for the row locks of the old holder's
** committing writes, then fails (and is tried again at the next tick). */
#define LOCK_TIMEOUT "1500ms"
/* A fenced write transaction left idle this long (its process paused or
** partitioned) is ended by the server, releasing its lock on the lease. */
#define IDLE_TIMEOUT "2s"

/* Loop thread only (stamps and outcomes), except `holder`, written before
** the first fenced request is queued and never changed afterwards. */
static struct {
    bool active;                    /* a lease was asked for: fence writes */
    char holder[HOLDER_MAX + 1];
    uint64_t held[MAX_SLOTS];       /* epoch held per slot, 0 if none */
} LS;

/* Set once a pool thread created the table (racy reads only repeat the
** idempotent creation). */
static volatile int table_ready;

static bool is_write(int op)
{
    switch (op) {
    case OP_APPEND: case OP_TRIM: case OP_TRUNCATE: case OP_CUT: case OP_ARCHIVE:
    case OP_RESTORE: case OP_DELETE: case OP_META_APPEND: case OP_META_WRITE:
        return true;
    default:
        return false;
    }
}

static bool valid_holder(const char *h)
{
    size_t n = h ? strnlen(h, HOLDER_MAX + 1) : 0;
    if (n < 1 || n > HOLDER_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr(":/_-", c)))
            return false;
    }
    return true;
}

/* ---- loop thread ------------------------------------------------------ */

/* The request of lease(): checked here, queued by the caller on the slot's
** queue.  CPS_OK or an error (then r is not to be queued). */
int pg_lease_prepare(pg_req *r, unsigned slot, const char *holder, unsigned ttl_ms)
{
    if (slot >= MAX_SLOTS || !valid_holder(holder)) return CPS_EINVAL;
    /* One holder name per process: the fence checks that name. */
    if (LS.holder[0] && strcmp(LS.holder, holder) != 0) return CPS_EINVAL;
    if (!LS.holder[0]) snprintf(LS.holder, sizeof LS.holder, "%s", holder);
    LS.active = true;
    r->arg = slot;
    r->arg2 = ttl_ms;
    r->in = strdup(holder);
    if (!r->in) return CPS_ENOMEM;
    r->inlen = strlen(holder);
    return CPS_OK;
}

void pg_lease_stamp(const cps_api *api, cps_plugin *self, const char *id, pg_req *r)
{
    if (!LS.active || !is_write(r->op)) return;
    char node[64];
    const char *o = api->owner(self, "storage", id, node, sizeof node);
    const char *colon = o ? strchr(o, ':') : NULL;
    long slot = colon ? strtol(colon + 1, NULL, 10) : -1;
    r->fenced = true;
    r->fence_slot = slot >= 0 && slot < MAX_SLOTS ? (unsigned)slot : 0;
    /* no such slot: epoch 0, which no lease has, so the write is refused */
    r->fence_epoch = slot >= 0 && slot < MAX_SLOTS ? LS.held[slot] : 0;
}

void pg_lease_noted(pg_req *r, int status)
{
    if (r->op != OP_LEASE || r->arg >= MAX_SLOTS) return;
    if (status == CPS_OK && r->arg2 > 0) LS.held[r->arg] = r->size;
    else if (status == CPS_OK || status == CPS_EBUSY) LS.held[r->arg] = 0;
    /* another error (database unreachable): unknown, keep what we had;
    ** the fence in the database decides */
}

/* ---- pool threads ----------------------------------------------------- */

static PGresult *q(PGconn *c, const char *sql, int n, const char *const *v, char *err, size_t errlen)
{
    PGresult *res = PQexecParams(c, sql, n, NULL, v, NULL, NULL, 0);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return res;
    snprintf(err, errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(c));
    err[strcspn(err, "\n")] = 0;
    PQclear(res);
    return NULL;
}

static bool ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *res = q(c, sql, 0, NULL, err, errlen);
    PQclear(res);
    return res != NULL;
}

int pg_lease_fence(PGconn *c, const pg_req *batch, char *err, size_t errlen)
{
    bool set = false;
    uint64_t checked = UINT64_MAX;
    for (const pg_req *r = batch; r; r = r->next) {
        if (!r->fenced || r->fence_epoch == checked) continue;
        if (!set && !ok(c, "SET LOCAL idle_in_transaction_session_timeout = '" IDLE_TIMEOUT "'", err, errlen))
            return -1;
        set = true;
        char slot[16], epoch[24];
        snprintf(slot, sizeof slot, "%u", r->fence_slot);
        snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)r->fence_epoch);
        const char *v[3] = { slot, LS.holder, epoch };
        /* FOR SHARE: a takeover's update of this row waits for our commit */
        PGresult *res = q(c, "SELECT 1 FROM cps_lease WHERE slot = $1 AND holder = $2 AND epoch = $3 FOR SHARE",
                          3, v, err, errlen);
        if (!res) return -1;
        int rows = PQntuples(res);
        PQclear(res);
        if (rows == 0) {
            snprintf(err, errlen, "fenced: slot %u epoch %llu is no longer held by %s", r->fence_slot,
                     (unsigned long long)r->fence_epoch, LS.holder);
            return PG_FENCED;
        }
        checked = r->fence_epoch;
    }
    return 0;
}

/* The pipelined form of pg_lease_fence: no result can be looked at before
** the writes are sent, so the check itself must abort the transaction.
** 1 / count(*) over the locked row divides by zero when the row is not
** there (the epoch moved on); count(*) is not a constant, so the planner
** cannot fold the division away or raise it early. */
int pg_lease_send_fence(PGconn *c, const pg_req *batch)
{
    int sent = 0;
    uint64_t checked = UINT64_MAX;
    for (const pg_req *r = batch; r; r = r->next) {
        if (!r->fenced || r->fence_epoch == checked) continue;
        if (!sent) {
            if (PQsendQueryParams(c, "SET LOCAL idle_in_transaction_session_timeout = '" IDLE_TIMEOUT "'",
                                  0, NULL, NULL, NULL, NULL, 0) != 1) return -1;
            sent++;
        }
        char slot[16], epoch[24];
        snprintf(slot, sizeof slot, "%u", r->fence_slot);
        snprintf(epoch, sizeof epoch, "%llu", (unsigned long long)r->fence_epoch);
        const char *v[3] = { slot, LS.holder, epoch };
        if (PQsendQueryParams(c, "SELECT 1 / count(*)::int FROM (SELECT 1 FROM cps_lease "
                                 "WHERE slot = $1 AND holder = $2 AND epoch = $3 FOR SHARE) AS held",
                              3, NULL, v, NULL, NULL, 0) != 1) return -1;
        sent++;
        checked = r->fence_epoch;
    }
    return sent;
}

/* One lease request in its own transaction. */
static int lease_one(PGconn *c, pg_req *r, char *err, size_t errlen)
{
    char slot[16], ttl[16];
    snprintf(slot, sizeof slot, "%u", (unsigned)r->arg);
    snprintf(ttl, sizeof ttl, "%u", (unsigned)r->arg2);
    const char *v[3] = { slot, r->in, ttl };
    if (!ok(c, "BEGIN", err, errlen)) return -1;
    if (!ok(c, "SET LOCAL lock_timeout = '" LOCK_TIMEOUT "'", err, errlen)) goto fail;
    if (!table_ready) {
        char lock[64];
        snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%d)", LEASE_LOCK);
        if (!ok(c, lock, err, errlen) ||
            !ok(c, "CREATE TABLE IF NOT EXISTS cps_lease (slot integer PRIMARY KEY, holder text NOT NULL,"
                   " epoch bigint NOT NULL, expiry timestamptz NOT NULL)", err, errlen))
            goto fail;
    }
    PGresult *res;
    if (r->arg2 == 0) {
        /* release: the holder becomes "", so whoever takes it next (even
        ** the same process) gets a new epoch */
        res = q(c, "UPDATE cps_lease SET holder = '', expiry = clock_timestamp() WHERE slot = $1 AND holder = $2",
                2, v, err, errlen);
        if (!res) goto fail;
        PQclear(res);
        r->status = CPS_OK;
    } else {
        res = q(c,
            "INSERT INTO cps_lease AS l (slot, holder, epoch, expiry)"
            " VALUES ($1, $2, 1, clock_timestamp() + $3::int * interval '1 millisecond')"
            " ON CONFLICT (slot) DO UPDATE SET"
            "  epoch = CASE WHEN l.holder = excluded.holder THEN l.epoch ELSE l.epoch + 1 END,"
            "  holder = excluded.holder, expiry = excluded.expiry"
            " WHERE l.holder = excluded.holder OR l.expiry < clock_timestamp()"
            " RETURNING epoch", 3, v, err, errlen);
        if (!res) goto fail;
        if (PQntuples(res) == 1) {
            r->status = CPS_OK;
            r->size = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
            PQclear(res);
        } else {
            PQclear(res);
            res = q(c, "SELECT holder, epoch FROM cps_lease WHERE slot = $1", 1, v, err, errlen);
            if (!res) goto fail;
            r->status = CPS_EBUSY;
            if (PQntuples(res) == 1) {
                r->out = strdup(PQgetvalue(res, 0, 0));
                r->outlen = r->out ? strlen(r->out) : 0;
                r->size = strtoull(PQgetvalue(res, 0, 1), NULL, 10);
            }
            PQclear(res);
        }
    }
    if (!ok(c, "COMMIT", err, errlen)) return -1;
    table_ready = 1;
    return 0;
fail:
    PQclear(PQexec(c, "ROLLBACK"));
    return -1;
}

int pg_lease_batch(PGconn *c, pg_req *batch, char *err, size_t errlen)
{
    for (pg_req *r = batch; r; r = r->next) {
        r->ran = true;
        if (lease_one(c, r, err, errlen) != 0) return -1;
    }
    return 0;
}
