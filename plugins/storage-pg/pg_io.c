/*
** pg_io.c - the SQL half of storage-pg: each backend operation as queries on
** the two tables of docs/storage-pg.md (cps_object, cps_chunk).  Runs on
** thread-pool threads; every value reaches SQL as a bound parameter.
*/
#define _GNU_SOURCE   /* memrchr */
#include <endian.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "pg.h"
#include "text.h"

#define READ_MIN 4096      /* first read when the caller gives max = 0 */
#define ROWS_PER_QUERY 256 /* chunks fetched per round trip of a range read */

/* What an object is in the database: a kind letter (docs/storage-pg.md), a
** namespace ("" for channels and pins), an id and live or archived. */
enum { K_LOG = 'L', K_META = 'M', K_PLACEHOLDER = 'H', K_PIN = 'P', K_REC = 'R', K_OBJ = 'O' };

typedef struct okey {
    char kind[2];
    const char *ns, *id;
    bool arch;
} okey;

typedef struct io {
    PGconn *c;
    char *err;
    size_t errlen;
} io;

/* ---- parameters and results ------------------------------------------ */

#define MAXP 10
typedef struct params {
    int n;
    const char *v[MAXP];
    int len[MAXP], fmt[MAXP];
    char num[MAXP][24];        /* text of integer parameters */
} params;

static void p_text(params *p, const char *s) { p->v[p->n] = s; p->len[p->n] = 0; p->fmt[p->n++] = 0; }
static void p_int(params *p, int64_t x)
{
    snprintf(p->num[p->n], sizeof p->num[0], "%lld", (long long)x);
    p_text(p, p->num[p->n]);
}
static void p_bool(params *p, bool b) { p_text(p, b ? "t" : "f"); }
/* Bytes go binary: no escaping, any content. */
static void p_bin(params *p, const char *d, size_t n)
{
    p->v[p->n] = n ? d : "";
    p->len[p->n] = (int)n;
    p->fmt[p->n++] = 1;
}
static void p_key(params *p, const okey *k)
{
    p_text(p, k->kind);
    p_text(p, k->ns);
    p_text(p, k->id);
    p_bool(p, k->arch);
}

/* Runs one statement (binary results); NULL with err set on failure. */
static PGresult *run(io *x, const char *sql, const params *p)
{
    PGresult *res = PQexecParams(x->c, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->len : NULL,
                                 p ? p->fmt : NULL, 1);
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return res;
    snprintf(x->err, x->errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(x->c));
    x->err[strcspn(x->err, "\n")] = 0;
    PQclear(res);
    return NULL;
}

static int64_t get_i64(const PGresult *res, int row, int col)
{
    uint64_t v = 0;
    if (PQgetlength(res, row, col) == 8) memcpy(&v, PQgetvalue(res, row, col), 8);
    return (int64_t)be64toh(v);
}

static okey key_of(int kind, const char *ns, const char *id, bool arch)
{
    okey k = { { (char)kind, 0 }, ns ? ns : "", id, arch };
    return k;
}

/* ---- object primitives -------------------------------------------------- */

/* 1 with oid and size, 0 if there is no such object, -1 on error. */
static int lookup(io *x, const okey *k, int64_t *oid, uint64_t *size)
{
    params p = { 0 };
    p_key(&p, k);
    PGresult *res = run(x, "SELECT oid, size FROM cps_object WHERE kind = $1 AND ns = $2 AND id = $3 AND arch = $4", &p);
    if (!res) return -1;
    int found = PQntuples(res) > 0;
    if (found) {
        if (oid) *oid = get_i64(res, 0, 0);
        if (size) *size = (uint64_t)get_i64(res, 0, 1);
    }
    PQclear(res);
    return found;
}

/* An append as one statement: the object row (created or its size grown)
** and the chunk at the old size; the new size comes back. */
static const char APPEND_SQL[] =
    "WITH o AS (INSERT INTO cps_object (kind, ns, id, arch, size) VALUES ($1, $2, $3, $4, $5) "
    "  ON CONFLICT (kind, ns, id, arch) DO UPDATE SET size = cps_object.size + excluded.size "
    "  RETURNING oid, size), "
    "c AS (INSERT INTO cps_chunk (oid, off, data) SELECT oid, size - $5, $6 FROM o WHERE $5 > 0) "
    "SELECT size FROM o";

static void append_params(params *p, const okey *k, const char *d, size_t n)
{
    p_key(p, k);
    p_int(p, (int64_t)n);
    p_bin(p, d, n);
}

/* Appends bytes (creating the object), in one round trip; *size after. */
static int append(io *x, const okey *k, const char *d, size_t n, uint64_t *size)
{
    params p = { 0 };
    append_params(&p, k, d, n);
    PGresult *res = run(x, APPEND_SQL, &p);
    if (!res) return -1;
    if (size && PQntuples(res) > 0) *size = (uint64_t)get_i64(res, 0, 0);
    PQclear(res);
    return 0;
}

/* Removes an object with its bytes: 1 if there was one, 0 if not.  Its
** chunks go in the same statement (no foreign key cascades since schema
** version 2, pg_conn.c). */
static int drop(io *x, const okey *k)
{
    params p = { 0 };
    p_key(&p, k);
    PGresult *res = run(x, "WITH o AS (DELETE FROM cps_object WHERE kind = $1 AND ns = $2 AND id = $3 AND arch = $4 RETURNING oid), "
                           "c AS (DELETE FROM cps_chunk USING o WHERE cps_chunk.oid = o.oid) SELECT oid FROM o", &p);
    if (!res) return -1;
    int had = PQntuples(res) > 0;
    PQclear(res);
    return had;
}

/* Replaces the whole object (readers in other transactions see old or new). */
static int put(io *x, const okey *k, const char *d, size_t n)
{
    return drop(x, k) < 0 ? -1 : append(x, k, d, n, NULL);
}

/* Renames `from` to `to`, replacing `to`: 1 if `from` existed, 0 if not. */
static int move_replace(io *x, const okey *from, const okey *to)
{
    if (drop(x, to) < 0) return -1;
    params p = { 0 };
    p_key(&p, from);
    p_key(&p, to);
    PGresult *res = run(x, "UPDATE cps_object SET kind = $5, ns = $6, id = $7, arch = $8 "
                           "WHERE kind = $1 AND ns = $2 AND id = $3 AND arch = $4 RETURNING oid", &p);
    if (!res) return -1;
    int had = PQntuples(res) > 0;
    PQclear(res);
    return had;
}

/* Copies object `oid` over `to` (the archive copy made before a rewrite). */
static int copy_to(io *x, int64_t oid, const okey *to)
{
    if (drop(x, to) < 0) return -1;
    params p = { 0 };
    p_int(&p, oid);
    p_text(&p, to->kind);
    p_text(&p, to->ns);
    p_text(&p, to->id);
    p_bool(&p, to->arch);
    PGresult *res = run(x,
        "WITH n AS (INSERT INTO cps_object (kind, ns, id, arch, size) "
        "  SELECT $2::text, $3::text, $4::text, $5::boolean, size FROM cps_object WHERE oid = $1 RETURNING oid) "
        "INSERT INTO cps_chunk (oid, off, data) SELECT n.oid, c.off, c.data FROM n, cps_chunk c WHERE c.oid = $1", &p);
    if (!res) return -1;
    PQclear(res);
    return 0;
}

/* The whole object, NUL-terminated, into r->out. */
static int read_whole(io *x, int64_t oid, uint64_t size, pg_req *r)
{
    params p = { 0 };
    p_int(&p, oid);
    PGresult *res = run(x, "SELECT data FROM cps_chunk WHERE oid = $1 ORDER BY off", &p);
    if (!res) return -1;
    size_t total = 0;
    for (int i = 0; i < PQntuples(res); i++) total += (size_t)PQgetlength(res, i, 0);
    (void)size;
    char *buf = malloc(total + 1);
    if (!buf) { PQclear(res); snprintf(x->err, x->errlen, "out of memory"); return -1; }
    size_t at = 0;
    for (int i = 0; i < PQntuples(res); i++) {
        size_t l = (size_t)PQgetlength(res, i, 0);
        memcpy(buf + at, PQgetvalue(res, i, 0), l);
        at += l;
    }
    buf[at] = 0;
    PQclear(res);
    r->out = buf;
    r->outlen = at;
    return 0;
}

/* Reads an object found by key, or answers ENOENT. */
static int read_key(io *x, const okey *k, pg_req *r)
{
    int64_t oid;
    uint64_t size;
    int f = lookup(x, k, &oid, &size);
    if (f < 0) return -1;
    if (!f) { r->status = CPS_ENOENT; return 0; }
    return read_whole(x, oid, size, r);
}

/* Bytes from r->arg: raw (at most max) or whole lines (about max, at
** least one).  Chunks are fetched by their absolute offsets, so a read
** deep into a long log touches only the chunks it returns. */
static int read_range(io *x, int64_t oid, uint64_t size, pg_req *r, bool lines)
{
    uint64_t off = r->arg;
    r->next_off = off;
    if (off >= size) {
        r->out = calloc(1, 1);
        r->eof = true;
        if (!r->out) { snprintf(x->err, x->errlen, "out of memory"); return -1; }
        return 0;
    }
    uint64_t avail = size - off;
    size_t want = r->max ? r->max : READ_MIN;
    if (want > avail) want = (size_t)avail;
    size_t cap = want, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { snprintf(x->err, x->errlen, "out of memory"); return -1; }
    uint64_t pos = off;
    /* Whole chunks in line mode (each ends a line); raw reads stop at want. */
    while (n < want && pos < size) {
        params p = { 0 };
        p_int(&p, oid);
        p_int(&p, (int64_t)pos);
        p_int(&p, (int64_t)(off + want));
        p_int(&p, lines ? INT32_MAX : (int64_t)(want - n));
        PGresult *res = run(x,
            "SELECT off, substring(data FROM (greatest($2 - off, 0) + 1)::int FOR $4::int) FROM cps_chunk "
            "WHERE oid = $1 AND off >= (SELECT coalesce(max(off), 0) FROM cps_chunk WHERE oid = $1 AND off <= $2) "
            "AND off < $3 ORDER BY off LIMIT " "256", &p);
        if (!res) { free(buf); return -1; }
        int rows = PQntuples(res);
        for (int i = 0; i < rows; i++) {
            size_t l = (size_t)PQgetlength(res, i, 1);
            if (!lines && l > want - n) l = want - n;
            if (n + l > cap) {
                size_t ncap = n + l > cap * 2 ? n + l : cap * 2;
                char *nb = realloc(buf, ncap + 1);
                if (!nb) { PQclear(res); free(buf); snprintf(x->err, x->errlen, "out of memory"); return -1; }
                buf = nb;
                cap = ncap;
            }
            memcpy(buf + n, PQgetvalue(res, i, 1), l);
            n += l;
            pos += l;
        }
        PQclear(res);
        if (rows < ROWS_PER_QUERY) break;
    }
    size_t len = n;
    if (lines) {
        /* As storage-fs: the last line ending within max, or the first
        ** line if it alone is longer. */
        size_t scanned = n < r->max ? n : r->max;
        char *nl = scanned ? memrchr(buf, '\n', scanned) : NULL;
        if (nl) len = (size_t)(nl - buf) + 1;
        else {
            nl = n > scanned ? memchr(buf + scanned, '\n', n - scanned) : NULL;
            len = nl ? (size_t)(nl - buf) + 1 : 0;
        }
    }
    buf[len] = 0;
    r->out = buf;
    r->outlen = len;
    r->next_off = off + len;
    r->eof = r->next_off >= size || (lines && len == 0);
    return 0;
}

/* Whether `pos` starts a line (the byte before it is '\n'). */
static int line_start(io *x, int64_t oid, uint64_t pos, bool *ok)
{
    *ok = true;
    if (pos == 0) return 0;
    params p = { 0 };
    p_int(&p, oid);
    p_int(&p, (int64_t)(pos - 1));
    /* get_byte in the outer query: with a sort under the LIMIT the planner
    ** may compute the target list for every chunk below pos, and get_byte
    ** of an earlier, shorter chunk fails ("index out of valid range"); a
    ** subquery with LIMIT is not flattened, so it sees the one chunk. */
    PGresult *res = run(x, "SELECT get_byte(data, ($2 - off)::int) FROM (SELECT off, data FROM cps_chunk "
                           "WHERE oid = $1 AND off <= $2 ORDER BY off DESC LIMIT 1) AS c", &p);
    if (!res) return -1;
    uint32_t b = 0;
    if (PQntuples(res) > 0 && PQgetlength(res, 0, 0) == 4) memcpy(&b, PQgetvalue(res, 0, 0), 4);
    *ok = PQntuples(res) > 0 && be32toh(b) == '\n';
    PQclear(res);
    return 0;
}

/* Keeps [0, keep) and [from, size) of object oid.  The changed pieces are
** written first at negative offsets, the old chunks they replace deleted,
** then flipped back: no two rows ever share (oid, off) mid-statement. */
static int splice(io *x, int64_t oid, uint64_t size, uint64_t keep, uint64_t from)
{
    static const char *const sql[] = {
        "INSERT INTO cps_chunk (oid, off, data) "
        "SELECT oid, -off - 1, substring(data FROM 1 FOR ($2::bigint - off)::int) FROM cps_chunk "
        "  WHERE oid = $1 AND off >= 0 AND off < $2::bigint AND off + length(data) > $2::bigint "
        "UNION ALL "
        "SELECT oid, -(greatest(off, $3::bigint) - $3::bigint + $2::bigint) - 1, "
        "  substring(data FROM (greatest($3::bigint - off, 0) + 1)::int) "
        "  FROM cps_chunk WHERE oid = $1 AND off >= 0 AND off + length(data) > $3::bigint",
        "DELETE FROM cps_chunk WHERE oid = $1 AND off >= 0 AND off + length(data) > $2::bigint",
        "UPDATE cps_chunk SET off = -off - 1 WHERE oid = $1 AND off < 0",
        "UPDATE cps_object SET size = $2::bigint WHERE oid = $1",
    };
    /* Which parameters each statement takes after the oid. */
    const int64_t args[][2] = {
        { (int64_t)keep, (int64_t)from }, { (int64_t)keep, -1 }, { -1, -1 },
        { (int64_t)(size - (from - keep)), -1 },
    };
    for (size_t i = 0; i < sizeof sql / sizeof sql[0]; i++) {
        params p = { 0 };
        p_int(&p, oid);
        for (int j = 0; j < 2; j++)
            if (args[i][j] >= 0) p_int(&p, args[i][j]);
        PGresult *res = run(x, sql[i], &p);
        if (!res) return -1;
        PQclear(res);
    }
    return 0;
}

/* ---- channel operations ------------------------------------------------ */

/* Trim, cut and truncate: checks (ENOENT, EINVAL as storage-fs), then the
** archive copies (trim and cut only), then the splice. */
static int rewrite(io *x, const pg_obj *o, pg_req *r, uint64_t keep, uint64_t from, bool truncating)
{
    okey log = key_of(K_LOG, NULL, o->id, false);
    int64_t oid;
    uint64_t size;
    int f = lookup(x, &log, &oid, &size);
    if (f <= 0) { if (f == 0) r->status = CPS_ENOENT; return f; }
    if (truncating) from = size;
    if (from > size || keep > from) { r->status = CPS_EINVAL; return 0; }
    bool ok = true;
    if (line_start(x, oid, keep, &ok) < 0) return -1;
    if (ok && from < size && line_start(x, oid, from, &ok) < 0) return -1;
    if (!ok) { r->status = CPS_EINVAL; return 0; }
    if (!truncating) {
        okey alog = key_of(K_LOG, NULL, o->id, true), meta = key_of(K_META, NULL, o->id, false),
             ameta = key_of(K_META, NULL, o->id, true);
        int64_t moid;
        if (copy_to(x, oid, &alog) < 0 || (f = lookup(x, &meta, &moid, NULL)) < 0) return -1;
        if (f && copy_to(x, moid, &ameta) < 0) return -1;
    }
    if (keep == from && (truncating || keep == size)) return 0;   /* nothing removed */
    return splice(x, oid, size, keep, from);
}

/* Moves live to archive if it exists, else drops a stale archived copy so
** the archived log and metadata log always belong together. */
static int archive_one(io *x, int kind, const char *id, bool *had)
{
    okey live = key_of(kind, NULL, id, false), arch = key_of(kind, NULL, id, true);
    int m = move_replace(x, &live, &arch);
    if (m < 0) return -1;
    *had = m;
    return 0;
}

static int channel_archive(io *x, const pg_obj *o, pg_req *r)
{
    okey log = key_of(K_LOG, NULL, o->id, false), meta = key_of(K_META, NULL, o->id, false);
    int a = lookup(x, &log, NULL, NULL), b = a < 0 ? -1 : lookup(x, &meta, NULL, NULL);
    if (a < 0 || b < 0) return -1;
    if (!a && !b) { r->status = CPS_ENOENT; return 0; }
    bool had;
    if (archive_one(x, K_LOG, o->id, &had) < 0 || archive_one(x, K_META, o->id, &had) < 0) return -1;
    if (!r->has_in) return 0;
    okey ph = key_of(K_PLACEHOLDER, NULL, o->id, false);
    return put(x, &ph, r->in, r->inlen);
}

static int channel_restore(io *x, const pg_obj *o, pg_req *r)
{
    okey log = key_of(K_LOG, NULL, o->id, false), meta = key_of(K_META, NULL, o->id, false),
         alog = key_of(K_LOG, NULL, o->id, true), ameta = key_of(K_META, NULL, o->id, true),
         ph = key_of(K_PLACEHOLDER, NULL, o->id, false);
    int a = lookup(x, &log, NULL, NULL), b = a < 0 ? -1 : lookup(x, &meta, NULL, NULL);
    if (a < 0 || b < 0) return -1;
    if (a || b) { r->status = CPS_EEXIST; return 0; }
    a = move_replace(x, &alog, &log);
    b = a < 0 ? -1 : move_replace(x, &ameta, &meta);
    if (a < 0 || b < 0) return -1;
    if (!a && !b) { r->status = CPS_ENOENT; return 0; }
    return drop(x, &ph) < 0 ? -1 : 0;
}

static int channel_delete(io *x, const pg_obj *o, pg_req *r)
{
    okey log = key_of(K_LOG, NULL, o->id, false), meta = key_of(K_META, NULL, o->id, false),
         ph = key_of(K_PLACEHOLDER, NULL, o->id, false);
    int a = drop(x, &log), b = a < 0 ? -1 : drop(x, &meta);
    if (a < 0 || b < 0 || drop(x, &ph) < 0) return -1;
    if (!a && !b) r->status = CPS_ENOENT;
    return 0;
}

/* Size or range read of an object found by key (ENOENT if none). */
static int size_of(io *x, const okey *k, pg_req *r)
{
    int f = lookup(x, k, NULL, &r->size);
    if (f == 0) { r->status = CPS_ENOENT; r->size = 0; }
    return f < 0 ? -1 : 0;
}

static int range_of(io *x, const okey *k, pg_req *r, bool lines)
{
    int64_t oid;
    uint64_t size;
    int f = lookup(x, k, &oid, &size);
    if (f <= 0) { if (f == 0) r->status = CPS_ENOENT; return f; }
    return read_range(x, oid, size, r, lines);
}

/* Archive-or-move of a whole object that must exist (pin logs, objects). */
static int archive_existing(io *x, const okey *live, pg_req *r)
{
    okey arch = *live;
    arch.arch = true;
    int m = move_replace(x, live, &arch);
    if (m == 0) r->status = CPS_ENOENT;
    return m < 0 ? -1 : 0;
}

/* The undo of archive_existing (pin logs, objects): nothing moves over a
** live one. */
static int restore_existing(io *x, const okey *live, pg_req *r)
{
    okey arch = *live;
    arch.arch = true;
    int a = lookup(x, &arch, NULL, NULL), l = a <= 0 ? 0 : lookup(x, live, NULL, NULL);
    if (a < 0 || l < 0) return -1;
    if (!a) { r->status = CPS_ENOENT; return 0; }
    if (l) { r->status = CPS_EEXIST; return 0; }
    return move_replace(x, &arch, live) < 0 ? -1 : 0;
}

static int obj_move(io *x, const pg_obj *o, pg_req *r)
{
    okey from = key_of(K_OBJ, o->ns, o->id, false), to = key_of(K_OBJ, r->to_ns, r->to_id, false);
    int f = lookup(x, &from, NULL, NULL), t = f <= 0 ? 0 : lookup(x, &to, NULL, NULL);
    if (f < 0 || t < 0) return -1;
    if (!f) { r->status = CPS_ENOENT; return 0; }
    if (t) { r->status = CPS_EEXIST; return 0; }
    return move_replace(x, &from, &to) < 0 ? -1 : 0;
}

/* ---- the raw view (cps_storage.h raw_*; docs/storage-pg.md) -------------- */

/* The object kind, namespace and archive flag of a raw space; -1 if none. */
static int raw_key(const char *space, const char *name, okey *k, bool *lines)
{
    static const struct { const char *space; char kind; bool arch; } fixed[] = {
        { "channel", K_LOG, false }, { "meta", K_META, false }, { "placeholder", K_PLACEHOLDER, false },
        { "pin", K_PIN, false }, { "archive/channel", K_LOG, true }, { "archive/meta", K_META, true },
        { "archive/pin", K_PIN, true },
    };
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
        if (strcmp(space, fixed[i].space) != 0) continue;
        *k = key_of(fixed[i].kind, NULL, name, fixed[i].arch);
        *lines = fixed[i].kind != K_PLACEHOLDER;
        return 0;
    }
    bool arch = !strncmp(space, "archive/obj/", 12);
    if (!arch && strncmp(space, "obj/", 4) != 0) return -1;
    *k = key_of(K_OBJ, space + (arch ? 12 : 4), name, arch);
    *lines = false;
    return 0;
}

/* The raw space of (kind, ns, arch), written to buf; -1 if the kind has none. */
static int space_of(char kind, const char *ns, bool arch, char *buf, size_t n)
{
    const char *base = kind == K_LOG ? "channel" : kind == K_META ? "meta" : kind == K_PIN ? "pin" :
                       kind == K_PLACEHOLDER ? "placeholder" : NULL;
    int w;
    if (base && kind == K_PLACEHOLDER && arch) return -1;
    if (base) w = snprintf(buf, n, "%s%s", arch ? "archive/" : "", base);
    else if (kind == K_OBJ) w = snprintf(buf, n, "%sobj/%s", arch ? "archive/" : "", ns);
    else return -1;
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

/* Appends a name to r->out (NUL-separated), counting in r->size. */
static int put_name(pg_req *r, const char *name, size_t *cap)
{
    size_t l = strlen(name) + 1;
    if (r->outlen + l + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 4096) + l;
        char *nb = realloc(r->out, nc);
        if (!nb) return -1;
        r->out = nb;
        *cap = nc;
    }
    memcpy(r->out + r->outlen, name, l);
    r->outlen += l;
    r->size++;
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int raw_spaces(io *x, pg_req *r)
{
    /* arch as text: results come in binary, where a boolean is one byte */
    PGresult *res = run(x, "SELECT DISTINCT kind, ns, arch::text FROM cps_object", NULL);
    if (!res) return -1;
    int n = PQntuples(res);
    char **v = calloc((size_t)n + 1, sizeof *v);
    size_t k = 0, cap = 0;
    for (int i = 0; v && i < n; i++) {
        char sp[64];
        if (space_of(PQgetvalue(res, i, 0)[0], PQgetvalue(res, i, 1), PQgetvalue(res, i, 2)[0] == 't',
                     sp, sizeof sp) == 0 && (v[k] = strdup(sp))) k++;
    }
    PQclear(res);
    if (!v) return -1;
    if (k) qsort(v, k, sizeof *v, cmp_names);
    int rc = 0;
    r->size = 0;
    for (size_t i = 0; i < k && rc == 0; i++) rc = put_name(r, v[i], &cap);
    for (size_t i = 0; i < k; i++) free(v[i]);
    free(v);
    r->eof = true;
    if (rc == 0 && !r->out && !(r->out = calloc(1, 1))) rc = -1;
    return rc;
}

/* Names in byte order (COLLATE "C"), after r->in, at most r->max. */
static int raw_list(io *x, const pg_obj *o, pg_req *r)
{
    okey k;
    bool lines;
    if (raw_key(o->ns, "", &k, &lines)) { r->status = CPS_EINVAL; return 0; }
    size_t max = r->max ? r->max : 256;
    params p = { 0 };
    p_text(&p, k.kind);
    p_text(&p, k.ns);
    p_bool(&p, k.arch);
    p_text(&p, r->in ? r->in : "");
    p_int(&p, (int64_t)max + 1);
    PGresult *res = run(x, "SELECT id FROM cps_object WHERE kind = $1 AND ns = $2 AND arch = $3 "
                           "AND id COLLATE \"C\" > $4 ORDER BY id COLLATE \"C\" LIMIT $5", &p);
    if (!res) return -1;
    int n = PQntuples(res);
    size_t cap = 0;
    int rc = 0;
    r->size = 0;
    for (int i = 0; i < n && (size_t)i < max && rc == 0; i++) rc = put_name(r, PQgetvalue(res, i, 0), &cap);
    r->eof = (size_t)n <= max;
    PQclear(res);
    if (rc == 0 && !r->out && !(r->out = calloc(1, 1))) rc = -1;
    return rc;
}

static int raw_one(io *x, const pg_obj *o, pg_req *r)
{
    if (r->op == OP_RAW_SPACES) return raw_spaces(x, r);
    if (r->op == OP_RAW_LIST) return raw_list(x, o, r);
    okey k;
    bool lines;
    if (raw_key(o->ns, o->id, &k, &lines)) { r->status = CPS_EINVAL; return 0; }
    switch (r->op) {
    case OP_RAW_SIZE: return size_of(x, &k, r);
    case OP_RAW_READ: return range_of(x, &k, r, lines);
    case OP_RAW_WRITE: {
        /* whole lines only; an empty write at 0 creates an empty entry */
        if (lines && (r->inlen ? r->in[r->inlen - 1] != '\n' : r->arg != 0)) { r->status = CPS_EINVAL; return 0; }
        if (r->arg == 0) {
            if (put(x, &k, r->in, r->inlen) < 0) return -1;
            r->size = r->inlen;
            return 0;
        }
        uint64_t size = 0;
        int f = lookup(x, &k, NULL, &size);
        if (f < 0) return -1;
        if (!f || size != r->arg) { r->status = CPS_EINVAL; return 0; }
        return append(x, &k, r->in, r->inlen, &r->size);
    }
    }
    snprintf(x->err, x->errlen, "unknown raw operation %d", r->op);
    return -1;
}

/* One request; r->status is its logical outcome, -1 a database error. */
static int run_one(io *x, const pg_obj *o, pg_req *r)
{
    if (o->kind == PG_RAW) return raw_one(x, o, r);
    const char *id = o->id;
    okey log = key_of(K_LOG, NULL, id, false), meta = key_of(K_META, NULL, id, false);
    /* a record is the object of the same namespace and key (cps_storage.h, the raw view) */
    okey pin = key_of(K_PIN, NULL, id, false), rec = key_of(K_OBJ, o->ns, id, false);
    okey obj = key_of(K_OBJ, o->ns, id, false), ph = key_of(K_PLACEHOLDER, NULL, id, false);
    int f;
    switch (r->op) {
    case OP_APPEND:       return append(x, &log, r->in, r->inlen, &r->size);
    case OP_READ:         return range_of(x, &log, r, true);
    case OP_SIZE:         return size_of(x, &log, r);
    case OP_TRIM:         return rewrite(x, o, r, 0, r->arg, false);
    case OP_TRUNCATE:     return rewrite(x, o, r, r->arg, 0, true);
    case OP_CUT:
        if (r->arg2 == 0 || r->arg + r->arg2 < r->arg) { r->status = CPS_EINVAL; return 0; }
        return rewrite(x, o, r, r->arg, r->arg + r->arg2, false);
    case OP_ARCHIVE:      return channel_archive(x, o, r);
    case OP_RESTORE:      return channel_restore(x, o, r);
    case OP_DELETE:       return channel_delete(x, o, r);
    case OP_PLACEHOLDER:  return read_key(x, &ph, r);
    case OP_META_APPEND:  return append(x, &meta, r->in, r->inlen, &r->size);
    case OP_META_READ:    return read_key(x, &meta, r);
    case OP_META_WRITE:   return put(x, &meta, r->in, r->inlen);
    case OP_PIN_APPEND:   return append(x, &pin, r->in, r->inlen, NULL);
    case OP_PIN_READ:     return read_key(x, &pin, r);
    case OP_PIN_ARCHIVE:  return archive_existing(x, &pin, r);
    case OP_PIN_RESTORE:  return restore_existing(x, &pin, r);
    case OP_REC_PUT:      return put(x, &rec, r->in, r->inlen);
    case OP_REC_GET:      return read_key(x, &rec, r);
    case OP_REC_DEL:
        if ((f = drop(x, &rec)) == 0) r->status = CPS_ENOENT;
        return f < 0 ? -1 : 0;
    case OP_OBJ_APPEND:   return append(x, &obj, r->in, r->inlen, &r->size);
    case OP_OBJ_WRITE:    return put(x, &obj, r->in, r->inlen);
    case OP_OBJ_READ:     return range_of(x, &obj, r, false);
    case OP_OBJ_SIZE:     return size_of(x, &obj, r);
    case OP_OBJ_MOVE:     return obj_move(x, o, r);
    case OP_OBJ_DELETE:
        if ((f = drop(x, &obj)) == 0) r->status = CPS_ENOENT;
        return f < 0 ? -1 : 0;
    case OP_OBJ_ARCHIVE:  return archive_existing(x, &obj, r);
    case OP_OBJ_RESTORE:  return restore_existing(x, &obj, r);
    }
    snprintf(x->err, x->errlen, "unknown operation %d", r->op);
    return -1;
}

static void exec_quiet(PGconn *c, const char *sql) { PQclear(PQexec(c, sql)); }

/* ---- appends in one round trip (libpq pipeline mode) ------------------- */

/* The key an append request writes, or false for any other request. */
static bool append_key(const pg_obj *o, const pg_req *r, okey *k)
{
    switch (r->op) {
    case OP_APPEND:       *k = key_of(K_LOG, NULL, o->id, false); return true;
    case OP_META_APPEND:  *k = key_of(K_META, NULL, o->id, false); return true;
    case OP_PIN_APPEND:   *k = key_of(K_PIN, NULL, o->id, false); return true;
    case OP_OBJ_APPEND:   *k = key_of(K_OBJ, o->ns, o->id, false); return true;
    default:              return false;
    }
}

static bool all_appends(const pg_obj *o, const pg_req *batch)
{
    okey k;
    if (o->kind == PG_RAW) return false;
    for (const pg_req *r = batch; r; r = r->next)
        if (!append_key(o, r, &k)) return false;
    return true;
}

/* The append statement is prepared once per server session (parsed and
** planned once, not per message): which sessions have it, by connection and
** backend pid (a reconnected connection is a new session).  A full table
** only means sending the text as before. */
#define PREP_MAX 64
#define APPEND_STMT "cps_append"
static pthread_mutex_t prep_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { const PGconn *c; int pid; } prep[PREP_MAX];

static bool prep_has(const PGconn *c)
{
    int pid = PQbackendPID(c);
    bool has = false;
    pthread_mutex_lock(&prep_mu);
    for (int i = 0; i < PREP_MAX && !has; i++) has = prep[i].c == c && prep[i].pid == pid;
    pthread_mutex_unlock(&prep_mu);
    return has;
}

static void prep_note(const PGconn *c)
{
    int pid = PQbackendPID(c), at = -1;
    pthread_mutex_lock(&prep_mu);
    for (int i = 0; i < PREP_MAX; i++) {
        if (prep[i].c == c) { at = i; break; }
        if (at < 0 && !prep[i].c) at = i;
    }
    if (at >= 0) { prep[at].c = c; prep[at].pid = pid; }
    pthread_mutex_unlock(&prep_mu);
}

static bool send(PGconn *c, const char *sql, const params *p)
{
    return PQsendQueryParams(c, sql, p ? p->n : 0, NULL, p ? p->v : NULL, p ? p->len : NULL,
                             p ? p->fmt : NULL, 1) == 1;
}

/* The appends of a train (several objects) as one statement: each object's
** bytes are one element of arrays bound in binary, its row upserted and its
** chunk inserted as APPEND_SQL does one at a time; the rows come back with
** their new size.  One statement instead of one per object. */
static const char APPEND_MANY_SQL[] =
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::bytea[]) "
    "  AS v(kind, ns, id, n, data)), "
    "o AS (INSERT INTO cps_object (kind, ns, id, arch, size) SELECT kind, ns, id, false, n FROM v "
    "  ON CONFLICT (kind, ns, id, arch) DO UPDATE SET size = cps_object.size + excluded.size "
    "  RETURNING oid, kind, ns, id, size), "
    "c AS (INSERT INTO cps_chunk (oid, off, data) SELECT o.oid, o.size - v.n, v.data "
    "  FROM o JOIN v ON o.kind = v.kind AND o.ns = v.ns AND o.id = v.id WHERE v.n > 0) "
    "SELECT kind, id, size FROM o";
#define APPEND_MANY_STMT "cps_append_many"

/* A one-dimensional array in PostgreSQL's binary format (array_send):
** ndim, has-nulls, element type, then length and lower bound, then each
** element as its length and bytes, all big-endian; built in a tbuf
** (plugins/common/text.h), whose oom flag says whether it is whole. */
static void pa_u32(tbuf *a, uint32_t v) { v = htobe32(v); tbuf_add(a, (const char *)&v, 4); }
static void pa_begin(tbuf *a, uint32_t elem_oid, uint32_t count)
{
    pa_u32(a, 1);              /* one dimension */
    pa_u32(a, 0);              /* no NULLs */
    pa_u32(a, elem_oid);
    pa_u32(a, count);
    pa_u32(a, 1);              /* lower bound */
}
static void pa_text(tbuf *a, const char *s) { size_t n = strlen(s); pa_u32(a, (uint32_t)n); tbuf_add(a, s, n); }
static void pa_i64(tbuf *a, int64_t v) { uint64_t b = htobe64((uint64_t)v); pa_u32(a, 8); tbuf_add(a, (const char *)&b, 8); }
#define OID_BYTEA 17
#define OID_INT8 20
#define OID_TEXT 25

/* The append statements are prepared once per server session, before its
** first pipeline (two round trips, once): in a pipeline a failed prepare
** would abort what follows it.  "Already exists" (a session this table
** lost track of) is as good as done. */
static int ensure_prepared(io *x)
{
    static const struct { const char *name, *sql; } st[] = {
        { APPEND_STMT, APPEND_SQL }, { APPEND_MANY_STMT, APPEND_MANY_SQL },
    };
    if (prep_has(x->c)) return 0;
    for (size_t i = 0; i < sizeof st / sizeof *st; i++) {
        PGresult *res = PQprepare(x->c, st[i].name, st[i].sql, 0, NULL);
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        bool good = PQresultStatus(res) == PGRES_COMMAND_OK || (state && !strcmp(state, "42P05"));
        if (!good) {
            snprintf(x->err, x->errlen, "%s", res ? PQresultErrorMessage(res) : PQerrorMessage(x->c));
            x->err[strcspn(x->err, "\n")] = 0;
        }
        PQclear(res);
        if (!good) return -2;
    }
    prep_note(x->c);
    return 0;
}

/* Whether every batch holds appends of one kind only (a channel's log, not
** its metadata too): each is then one row of the train's one statement. */
static bool one_kind_each(int nobj, const pg_obj *const *objs, pg_req *const *batches)
{
    for (int b = 0; b < nobj; b++) {
        okey k = { .ns = "", .id = "" }, k2 = { .ns = "", .id = "" };
        append_key(objs[b], batches[b], &k);
        for (const pg_req *r = batches[b]->next; r; r = r->next)
            if (!append_key(objs[b], r, &k2) || k2.kind[0] != k.kind[0]) return false;
    }
    return true;
}

/* Batches of appends only (the common case: chat messages), of one object
** or of several (a train, pg.c): the statements (with BEGIN, the fence
** checks and COMMIT when there are checks) are sent at once and their
** results read after one sync, so the whole costs one round trip and one
** commit instead of two round trips per request plus two.  Nothing depends
** on an earlier result: a failed statement aborts the rest, which the server
** skips, and nothing of any batch is committed.
**
** In three steps, so that the loop can drive it without a thread (pg.c,
** trains on the loop): pg_io_appends_send sends it all, pg_io_appends_take
** takes each value PQgetResult returns until the sync, pg_io_appends_end
** leaves pipeline mode and says how it went.  pg_io_appends does the three
** with blocking calls. */
struct pg_pipe {
    int nobj;
    const pg_obj *const *objs;
    pg_req *const *batches;
    /* what each statement sent is: an append (its request), a fence check
    ** (fence[i]), or neither (BEGIN, SET LOCAL, COMMIT) */
    pg_req **who;
    int *group;
    bool *fence;
    int sent;
    int next;                  /* the statement whose result comes next */
    bool want_null;            /* the NULL that ends statement next-1's results */
    bool synced, block, lost, fenced;
    int rc, first_bad;
    char *err;
    size_t errlen;
};

static void pipe_free(pg_pipe *pp)
{
    free(pp->who);
    free(pp->group);
    free(pp->fence);
    free(pp);
}

pg_pipe *pg_io_appends_send(PGconn *c, int nobj, const pg_obj *const *objs, pg_req *const *batches,
                            char *err, size_t errlen)
{
    size_t cap = 3;
    for (int b = 0; b < nobj; b++)
        for (const pg_req *r = batches[b]; r; r = r->next) cap += 3;   /* append, fence, SET LOCAL */
    pg_pipe *pp = calloc(1, sizeof *pp);
    if (pp) {
        pp->who = calloc(cap, sizeof *pp->who);
        pp->group = calloc(cap, sizeof *pp->group);
        pp->fence = calloc(cap, sizeof *pp->fence);
    }
    if (!pp || !pp->who || !pp->group || !pp->fence) {
        if (pp) pipe_free(pp);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pp->nobj = nobj;
    pp->objs = objs;
    pp->batches = batches;
    pp->err = err;
    pp->errlen = errlen;
    pp->first_bad = -1;
    if (PQenterPipelineMode(c) != 1) {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
        err[strcspn(err, "\n")] = 0;
        pp->rc = -2;           /* nothing was sent */
        return pp;
    }
    pg_req **who = pp->who;
    int *group = pp->group;
    bool *fence = pp->fence;
    int sent = 0;
    bool ok = true, many = nobj > 1 && one_kind_each(nobj, objs, batches);
    /* Without a lease check the pipeline's own transaction is enough: its
    ** statements run as one implicit transaction, committed at the sync
    ** and rolled back whole if one fails.  The checks need a transaction
    ** block (SET LOCAL, the row lock held to the commit). */
    bool block = false;
    for (int b = 0; b < nobj; b++)
        for (const pg_req *r = batches[b]; r; r = r->next) block = block || r->fenced;
    if (ok && block && (ok = send(c, "BEGIN", NULL))) sent++;
    for (int b = 0; ok && b < nobj; b++) {
        if (objs[b]->kind == PG_CHANNEL) {
            int f = pg_lease_send_fence(c, batches[b]);
            ok = f >= 0;
            for (int k = 0; ok && k < f; k++) fence[sent++] = true;
        }
        /* Consecutive appends to one object are one statement, their bytes
        ** one chunk (whole lines still: each append is whole lines): the
        ** object row is updated once per batch, not once per message.  A
        ** train of one-kind batches sends them all as one statement, below. */
        for (pg_req *r = batches[b]; ok && !many && r; ) {
            okey k, k2;
            append_key(objs[b], r, &k);
            int n = 1;
            size_t len = r->inlen;
            pg_req *end = r->next;
            while (end && append_key(objs[b], end, &k2) && k2.kind[0] == k.kind[0]) {
                len += end->inlen;
                n++;
                end = end->next;
            }
            char *joined = NULL;
            if (n > 1 && !(joined = malloc(len ? len : 1))) { ok = false; break; }
            if (joined) {
                size_t at = 0;
                for (pg_req *m = r; m != end; m = m->next) { memcpy(joined + at, m->in, m->inlen); at += m->inlen; }
            }
            params p = { 0 };
            append_params(&p, &k, joined ? joined : r->in, len);
            ok = PQsendQueryPrepared(c, APPEND_STMT, p.n, p.v, p.len, p.fmt, 1) == 1;
            free(joined);              /* libpq copied the parameters */
            if (ok) { who[sent] = r; group[sent++] = n; }
            r = end;
        }
    }
    if (ok && many) {
        tbuf kinds = { 0 }, nss = { 0 }, ids = { 0 }, lens = { 0 }, data = { 0 };
        pa_begin(&kinds, OID_TEXT, (uint32_t)nobj);
        pa_begin(&nss, OID_TEXT, (uint32_t)nobj);
        pa_begin(&ids, OID_TEXT, (uint32_t)nobj);
        pa_begin(&lens, OID_INT8, (uint32_t)nobj);
        pa_begin(&data, OID_BYTEA, (uint32_t)nobj);
        for (int b = 0; b < nobj; b++) {
            okey k = { .ns = "", .id = "" };
            append_key(objs[b], batches[b], &k);
            uint32_t len = 0;
            for (const pg_req *r = batches[b]; r; r = r->next) len += (uint32_t)r->inlen;
            pa_text(&kinds, k.kind);
            pa_text(&nss, k.ns);
            pa_text(&ids, k.id);
            pa_i64(&lens, (int64_t)len);
            pa_u32(&data, len);
            for (const pg_req *r = batches[b]; r; r = r->next) tbuf_add(&data, r->in, r->inlen);
        }
        ok = !(kinds.oom || nss.oom || ids.oom || lens.oom || data.oom);
        if (ok) {
            const char *v[5] = { kinds.s, nss.s, ids.s, lens.s, data.s };
            int len[5] = { (int)kinds.len, (int)nss.len, (int)ids.len, (int)lens.len, (int)data.len };
            int fmt[5] = { 1, 1, 1, 1, 1 };
            ok = PQsendQueryPrepared(c, APPEND_MANY_STMT, 5, v, len, fmt, 1) == 1;
            if (ok) group[sent++] = -1;  /* the train's rows */
        } else {
            snprintf(err, errlen, "out of memory");
        }
        tbuf_free(&kinds); tbuf_free(&nss); tbuf_free(&ids); tbuf_free(&lens); tbuf_free(&data);   /* libpq copied them */
    }
    if (ok && block && (ok = send(c, "COMMIT", NULL))) sent++;
    /* Sent even after a failed send, so that what was sent is answered; the
    ** server ends an explicit transaction only at COMMIT, so an incomplete
    ** batch is rolled back below, never committed. */
    bool synced = PQpipelineSync(c) == 1;
    if (!ok || !synced) {
        if (!err[0]) snprintf(err, errlen, "%s", PQerrorMessage(c));
        err[strcspn(err, "\n")] = 0;
    }
    pp->sent = sent;
    pp->synced = synced;
    pp->block = block;
    pp->rc = ok && synced ? 0 : -1;
    return pp;
}

/* Statement i's result (not NULL): a failure noted, the requests' sizes
** after their appends set. */
static void pipe_result(pg_pipe *pp, int i, PGresult *res)
{
    int nobj = pp->nobj;
    const pg_obj *const *objs = pp->objs;
    pg_req *const *batches = pp->batches;
    pg_req **who = pp->who;
    int *group = pp->group;
    ExecStatusType st = PQresultStatus(res);
    bool good = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!good && pp->first_bad < 0 && st != PGRES_PIPELINE_ABORTED) {
        pp->first_bad = i;
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        pp->fenced = pp->fence[i] && state && !strcmp(state, PG_FENCE_SQLSTATE);
        snprintf(pp->err, pp->errlen, "%s", PQresultErrorMessage(res));
        pp->err[strcspn(pp->err, "\n")] = 0;
    }
    if (!good) pp->rc = -1;
    if (!who[i] && group[i] == -1) {   /* the train's rows: kind, id, size after */
        for (int row = 0; good && row < PQntuples(res); row++) {
            char kind = PQgetlength(res, row, 0) == 1 ? PQgetvalue(res, row, 0)[0] : 0;
            const char *id = PQgetvalue(res, row, 1);
            uint64_t at = (uint64_t)get_i64(res, row, 2);
            for (int b = 0; b < nobj; b++) {
                okey k = { .ns = "", .id = "" };
                append_key(objs[b], batches[b], &k);
                if (k.kind[0] != kind || strcmp(objs[b]->id, id)) continue;
                for (const pg_req *r = batches[b]; r; r = r->next) at -= r->inlen;
                for (pg_req *r = batches[b]; r; r = r->next) {
                    r->ran = true;
                    r->status = CPS_OK;
                    at += r->inlen;
                    r->size = at;
                }
            }
        }
    }
    if (who[i]) {                    /* appends' result: the size after the last */
        uint64_t after = good && PQntuples(res) > 0 ? (uint64_t)get_i64(res, 0, 0) : 0, len = 0;
        pg_req *m = who[i];
        for (int g = 0; g < group[i]; g++, m = m->next) len += m->inlen;
        uint64_t at = after - len;  /* each one's own size after it */
        m = who[i];
        for (int g = 0; g < group[i]; g++, m = m->next) {
            m->ran = true;
            m->status = CPS_OK;
            at += m->inlen;
            m->size = after ? at : 0;
        }
    }
}

/* One value PQgetResult returned (NULL too), in order; true once the sync
** came back or the connection was found lost (then nothing more comes). */
bool pg_io_appends_take(pg_pipe *pp, PGresult *res)
{
    if (!pp->synced) { PQclear(res); return true; }
    if (pp->want_null) {           /* the end of statement next-1's results */
        pp->want_null = res != NULL;
        PQclear(res);
        return false;
    }
    if (!res) {                    /* a result, or the sync, was due: lost */
        pp->lost = true;
        pp->rc = -1;
        if (pp->first_bad < 0 && pp->next < pp->sent) pp->first_bad = pp->next;
        return true;
    }
    if (pp->next < pp->sent) {
        pipe_result(pp, pp->next++, res);
        pp->want_null = true;
        PQclear(res);
        return false;
    }
    bool sync = PQresultStatus(res) == PGRES_PIPELINE_SYNC;
    PQclear(res);
    return sync;
}

bool pg_io_appends_unsent(const pg_pipe *pp) { return pp->rc == -2; }

void pg_io_appends_lost(pg_pipe *pp)
{
    pp->lost = true;
    pp->rc = -1;
}

int pg_io_appends_end(pg_pipe *pp, PGconn *c)
{
    char *err = pp->err;
    size_t errlen = pp->errlen;
    if (pp->lost && !err[0]) {
        snprintf(err, errlen, "%s", PQerrorMessage(c));
        err[strcspn(err, "\n")] = 0;
    }
    if (PQpipelineStatus(c) != PQ_PIPELINE_OFF) PQexitPipelineMode(c);
    int rc = pp->rc, sent = pp->sent, first_bad = pp->first_bad;
    bool block = pp->block, fenced = pp->fenced;
    pipe_free(pp);
    if (rc == 0 || rc == -2) return rc;    /* -2: pipeline mode refused, nothing sent */
    /* BEGIN failed: nothing was done (retried once if the connection was
    ** found dead). */
    if (first_bad == 0 || sent == 0) rc = -2;
    else if (fenced) {
        snprintf(err, errlen, "fenced: a lease epoch of this batch is no longer held");
        rc = PG_FENCED;
    }
    /* An explicit transaction that failed stays open, aborted, after the
    ** sync (an implicit one is rolled back already). */
    if (block) exec_quiet(c, "ROLLBACK");
    return rc;
}

int pg_io_appends(PGconn *c, int n, const pg_obj *const *objs, pg_req *const *batches, char *err, size_t errlen)
{
    io x = { c, err, errlen };
    if (ensure_prepared(&x) != 0) return -2;
    pg_pipe *pp = pg_io_appends_send(c, n, objs, batches, err, errlen);
    if (!pp) return -2;
    while (!pg_io_appends_take(pp, PQgetResult(c))) {}
    return pg_io_appends_end(pp, c);
}

bool pg_io_prepared(const PGconn *c) { return prep_has(c); }

bool pg_io_all_appends(const pg_obj *o, const pg_req *batch) { return all_appends(o, batch); }

int pg_io_batch(PGconn *c, const pg_obj *o, pg_req *batch, char *err, size_t errlen)
{
    if (o->kind == PG_LEASE) return pg_lease_batch(c, batch, err, errlen);
    io x = { c, err, errlen };
    if (all_appends(o, batch)) return pg_io_appends(c, 1, &o, &batch, err, errlen);
    PGresult *res = run(&x, "BEGIN", NULL);
    if (!res) return -2;       /* nothing sent yet that could have counted */
    PQclear(res);
    /* storage failover: the writes' lease epoch is checked (and the lease
    ** row locked) in this transaction, before any write */
    if (o->kind == PG_CHANNEL) {
        int f = pg_lease_fence(c, batch, err, errlen);
        if (f) { exec_quiet(c, "ROLLBACK"); return f; }
    }
    for (pg_req *r = batch; r; r = r->next) {
        r->ran = true;
        r->status = CPS_OK;
        if (run_one(&x, o, r) != 0) { exec_quiet(c, "ROLLBACK"); return -1; }
        if (r->status != CPS_OK) { free(r->out); r->out = NULL; r->outlen = 0; }
    }
    /* The one commit of the batch: the appends that queued up together are
    ** made durable together (group commit), and none is acknowledged before. */
    res = run(&x, "COMMIT", NULL);
    if (!res) return -1;
    PQclear(res);
    return 0;
}
