/*
** pg_conn.c - the bounded pool of libpq connections storage-pg uses from
** thread-pool jobs, the schema (created and upgraded here, versioned in
** cps_schema_version), and reconnection with back-off after a loss.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "pg.h"

#define SCHEMA_VERSION 2
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
/* pg_advisory_xact_lock key: two processes creating the schema at once wait. */
#define SCHEMA_LOCK 0x63707364

struct pg_pool {
    pthread_mutex_t mu;
    pthread_cond_t freed;
    int n;
    PGconn **conns;
    bool *taken;
    char *conninfo;
    char name[256];            /* host/port/dbname/user, never the password */
    uint64_t retry_at_ms;      /* no reconnection attempt before this */
    uint64_t backoff_ms;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* libpq prints server notices ("relation ... already exists, skipping") to
** stderr by default: they are not the operator's business. */
static void quiet(void *arg, const char *message) { (void)arg; (void)message; }

/* Defaults first: the operator's conninfo (or libpq's PG* environment when
** it is empty) overrides them. */
static PGconn *connect_one(const char *conninfo)
{
    const char *const keys[] = { "connect_timeout", "application_name", "dbname", NULL };
    const char *const vals[] = { "5", "cpsd", conninfo, NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (c) PQsetNoticeProcessor(c, quiet, NULL);   /* kept across PQreset */
    return c;
}

static void describe(PGconn *c, char *buf, size_t n)
{
    const char *host = c ? PQhost(c) : NULL, *port = c ? PQport(c) : NULL;
    const char *db = c ? PQdb(c) : NULL, *user = c ? PQuser(c) : NULL;
    snprintf(buf, n, "host=%s port=%s dbname=%s user=%s", host && *host ? host : "?",
             port && *port ? port : "?", db && *db ? db : "?", user && *user ? user : "?");
}

static bool exec_ok(PGconn *c, const char *sql, char *err, size_t errlen)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        err[strcspn(err, "\n")] = 0;
    }
    PQclear(r);
    return ok;
}

/* Version 1 (docs/storage-pg.md): every stored thing is an object (kind,
** namespace, id, live or archived) whose bytes are chunks at absolute
** offsets, one chunk per append. */
static const char *const schema_v1 =
    "CREATE TABLE cps_object ("
    "  oid bigserial PRIMARY KEY,"
    "  kind text NOT NULL,"
    "  ns text NOT NULL,"
    "  id text NOT NULL,"
    "  arch boolean NOT NULL,"
    "  size bigint NOT NULL,"
    "  UNIQUE (kind, ns, id, arch));"
    "CREATE TABLE cps_chunk ("
    "  oid bigint NOT NULL REFERENCES cps_object (oid) ON DELETE CASCADE,"
    "  off bigint NOT NULL,"
    "  data bytea NOT NULL,"
    "  PRIMARY KEY (oid, off));"
    "INSERT INTO cps_schema_version (version) VALUES (1);";

/* Version 2: no foreign key from a chunk to its object.  Its check ran for
** every chunk inserted (a query per row under each append: a fifth of
** PostgreSQL's CPU on the broadcast benchmark, docs/storage-pg.md); the one
** place that deletes an object (pg_io.c drop) deletes its chunks in the same
** statement, which the cascade did before.  Version 1 created the key with
** PostgreSQL's default name. */
static const char *const schema_v2 =
    "ALTER TABLE cps_chunk DROP CONSTRAINT IF EXISTS cps_chunk_oid_fkey;"
    "UPDATE cps_schema_version SET version = 2;";

static bool schema_ensure(PGconn *c, char *err, size_t errlen)
{
    char lock[96];
    snprintf(lock, sizeof lock, "SELECT pg_advisory_xact_lock(%d)", SCHEMA_LOCK);
    if (!exec_ok(c, "BEGIN", err, errlen)) return false;
    if (!exec_ok(c, lock, err, errlen) ||
        !exec_ok(c, "CREATE TABLE IF NOT EXISTS cps_schema_version (version integer NOT NULL)", err, errlen))
        goto fail;
    PGresult *r = PQexec(c, "SELECT coalesce(max(version), 0) FROM cps_schema_version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(err, errlen, "%s", PQresultErrorMessage(r));
        PQclear(r);
        goto fail;
    }
    int v = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    if (v > SCHEMA_VERSION) {
        snprintf(err, errlen, "the database has schema version %d, this storage-pg knows up to %d "
                 "(a newer cpsd made it)", v, SCHEMA_VERSION);
        goto fail;
    }
    /* One step per version, in order: a new database goes through them all. */
    if (v < 1 && !exec_ok(c, schema_v1, err, errlen)) goto fail;
    if (v < 2 && !exec_ok(c, schema_v2, err, errlen)) goto fail;
    return exec_ok(c, "COMMIT", err, errlen);
fail:
    err[strcspn(err, "\n")] = 0;
    PQclear(PQexec(c, "ROLLBACK"));
    return false;
}

pg_pool *pg_pool_open(const char *conninfo, int n, char *err, size_t errlen)
{
    pg_pool *p = calloc(1, sizeof *p);
    if (!p) { snprintf(err, errlen, "out of memory"); return NULL; }
    p->n = n;
    p->conns = calloc((size_t)n, sizeof *p->conns);
    p->taken = calloc((size_t)n, sizeof *p->taken);
    p->conninfo = strdup(conninfo ? conninfo : "");
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->freed, NULL);
    p->backoff_ms = BACKOFF_MIN_MS;
    if (!p->conns || !p->taken || !p->conninfo) { snprintf(err, errlen, "out of memory"); pg_pool_close(p); return NULL; }
    for (int i = 0; i < n; i++) {
        p->conns[i] = connect_one(p->conninfo);
        if (i == 0) describe(p->conns[0], p->name, sizeof p->name);
        if (!p->conns[i] || PQstatus(p->conns[i]) != CONNECTION_OK) {
            char why[256];
            snprintf(why, sizeof why, "%s", p->conns[i] ? PQerrorMessage(p->conns[i]) : "out of memory");
            why[strcspn(why, "\n")] = 0;
            snprintf(err, errlen, "cannot connect to PostgreSQL (%s): %s", p->name, why);
            pg_pool_close(p);
            return NULL;
        }
        if (i == 0) {
            char why[256] = "";
            if (!schema_ensure(p->conns[0], why, sizeof why)) {
                snprintf(err, errlen, "PostgreSQL (%s): cannot set up the schema: %s", p->name, why);
                pg_pool_close(p);
                return NULL;
            }
        }
    }
    return p;
}

void pg_pool_close(pg_pool *p)
{
    if (!p) return;
    for (int i = 0; p->conns && i < p->n; i++) PQfinish(p->conns[i]);
    free(p->conns);
    free(p->taken);
    free(p->conninfo);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->freed);
    free(p);
}

const char *pg_pool_name(const pg_pool *p) { return p->name; }

PGconn *pg_pool_take(pg_pool *p, char *err, size_t errlen)
{
    pthread_mutex_lock(&p->mu);
    int i;
    for (;;) {
        for (i = 0; i < p->n && p->taken[i]; i++) {}
        if (i < p->n) break;
        pthread_cond_wait(&p->freed, &p->mu);
    }
    p->taken[i] = true;
    PGconn *c = p->conns[i];
    if (PQstatus(c) == CONNECTION_OK) { pthread_mutex_unlock(&p->mu); return c; }
    /* A lost connection: one attempt per back-off period (doubling up to
    ** BACKOFF_MAX_MS while the database stays away), failing fast between. */
    uint64_t now = now_ms();
    bool attempt = now >= p->retry_at_ms;
    if (attempt) p->retry_at_ms = now + p->backoff_ms;   /* others fail fast meanwhile */
    pthread_mutex_unlock(&p->mu);
    if (attempt) {
        PQreset(c);
        pthread_mutex_lock(&p->mu);
        if (PQstatus(c) == CONNECTION_OK) {
            p->backoff_ms = BACKOFF_MIN_MS;
            p->retry_at_ms = 0;
        } else {
            p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
        }
        pthread_mutex_unlock(&p->mu);
        if (PQstatus(c) == CONNECTION_OK) return c;
        snprintf(err, errlen, "database unreachable (%s): %s", p->name, PQerrorMessage(c));
        err[strcspn(err, "\n")] = 0;
    } else {
        snprintf(err, errlen, "database unreachable (%s), reconnecting", p->name);
    }
    pg_pool_give(p, c);
    return NULL;
}

PGconn *pg_pool_try_take(pg_pool *p)
{
    PGconn *c = NULL;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n && !c; i++) {
        if (p->taken[i] || PQstatus(p->conns[i]) != CONNECTION_OK) continue;
        p->taken[i] = true;
        c = p->conns[i];
    }
    pthread_mutex_unlock(&p->mu);
    return c;
}

void pg_pool_give(pg_pool *p, PGconn *c)
{
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->conns[i] == c) p->taken[i] = false;
    pthread_cond_signal(&p->freed);
    pthread_mutex_unlock(&p->mu);
}
