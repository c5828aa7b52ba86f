/*
** test_storage_contract.c - the contract of cps_storage.h that every storage
** backend must keep, run against "fs" (or $CPS_CONTRACT_BACKEND), plus the
** on-disk layout checks that only apply to "fs" (CryptPad's own layout).
*/
#define _GNU_SOURCE   /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <sys/stat.h>
#include "host.h"
#include "test_util.h"

#ifndef TEST_PLUGIN_DIR_FS
#define TEST_PLUGIN_DIR_FS "plugins"
#endif

/* ASan keeps freed memory in a 256 MiB quarantine, which would count as
** resident memory in the streaming test; a small one keeps RSS honest. */
#if defined(__SANITIZE_ADDRESS__)
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "quarantine_size_mb=16"; }
#endif

#define CH1 "a1b2c3d4e5f60718293a4b5c6d7e8f90"
#define KEY1 "Vz3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak="   /* 44, safe base64 */
#define MIB (1024u * 1024u)

static struct {
    uv_loop_t loop;
    uv_timer_t tick;           /* wakes uv_run while waiting on the pool */
    char top[64];              /* the temporary tree: top/x/y/z/d is data_dir */
    char dir[128];
    const cps_storage_backend *b;
    bool fs;                   /* the backend is "fs": layout checks apply */
    char name[32], plugin[64], so[512];
} T;                           /* the test singleton */

#define B T.b
#define S T.b->state

/* ---- driving the loop ------------------------------------------------- */

static void tick(uv_timer_t *t) { (void)t; }

/* Runs the loop until *calls reaches want (or 60 s pass). */
static void wait_until(const int *calls, int want)
{
    uint64_t deadline = uv_hrtime() + 60ull * 1000000000ull;
    uv_timer_start(&T.tick, tick, 10, 10);
    while (*calls < want && uv_hrtime() < deadline) uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&T.tick);
    assert_int_equal(*calls, want);
}

typedef struct res {
    int calls, status;
    uint64_t size, next;
    bool eof;
    char *data;                /* copy of what the callback got, or NULL */
    size_t len;
    int order;                 /* order of completion among a group */
} res;

static int completions;        /* global completion counter for ordering */

static void res_clear(res *r) { free(r->data); memset(r, 0, sizeof *r); }

static void keep(res *r, const char *d, size_t len)
{
    free(r->data);
    r->data = NULL;
    r->len = len;
    if (d) {
        assert_int_equal(d[len], 0);   /* NUL-terminated */
        r->data = malloc(len + 1);
        memcpy(r->data, d, len + 1);
    }
}

static void on_done(void *ud, int st) { res *r = ud; r->calls++; r->status = st; r->order = completions++; }
static void on_size(void *ud, int st, uint64_t size)
{
    res *r = ud;
    r->calls++; r->status = st; r->size = size; r->order = completions++;
}
static void on_read(void *ud, int st, const char *d, size_t len, uint64_t next, bool eof)
{
    res *r = ud;
    r->calls++; r->status = st; r->next = next; r->eof = eof;
    keep(r, d, len);
}
static void on_data(void *ud, int st, const char *d, size_t len)
{
    res *r = ud;
    r->calls++; r->status = st;
    keep(r, d, len);
}

/* Each helper queues one request, checks `done` is not called before the
** next loop turn, and waits for it. */
#define RUN(r, call) do { res_clear(r); assert_int_equal((call), CPS_OK); \
                          assert_int_equal((r)->calls, 0); wait_until(&(r)->calls, 1); } while (0)

static int append(const char *id, const char *text, uint64_t *size)
{
    res r = { 0 };
    RUN(&r, B->channel_append(S, id, text, strlen(text), on_size, &r));
    if (size) *size = r.size;
    return r.status;
}

/* The whole log, read in one go (malloc'd, NULL on error). */
static char *read_all(const char *id, int *status)
{
    res r = { 0 };
    RUN(&r, B->channel_read(S, id, 0, 1 << 30, on_read, &r));
    *status = r.status;
    if (r.status == CPS_OK) assert_true(r.eof);
    return r.data;
}

static int simple(int (*fn)(void *, const char *, cps_store_done_fn, void *), const char *id)
{
    res r = { 0 };
    RUN(&r, fn(S, id, on_done, &r));
    return r.status;
}

static char *get_data(int (*fn)(void *, const char *, cps_store_data_fn, void *), const char *id, int *status)
{
    res r = { 0 };
    RUN(&r, fn(S, id, on_data, &r));
    *status = r.status;
    if (r.status != CPS_OK) assert_null(r.data);
    return r.data;
}

static int archive(const char *id, const char *reason)
{
    res r = { 0 };
    RUN(&r, B->channel_archive(S, id, reason, on_done, &r));
    return r.status;
}

static int trim_or_truncate(bool trim, const char *id, uint64_t at)
{
    res r = { 0 };
    if (trim) RUN(&r, B->channel_trim(S, id, at, on_done, &r));
    else RUN(&r, B->channel_truncate(S, id, at, on_done, &r));
    return r.status;
}

/* ---- files ------------------------------------------------------------ */

static void path(char *out, size_t n, const char *fmt, ...)
{
    char rel[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    assert_true(snprintf(out, n, "%s/%s", T.dir, rel) < (int)n);
}

static bool file_exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

static char *slurp(const char *p)
{
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    s[n] = 0;
    fclose(f);
    return s;
}

static void put_file(const char *p, const char *text)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s", p);
    for (char *s = dir + 1; *s; s++)
        if (*s == '/') { *s = 0; mkdir(dir, 0755); *s = '/'; }
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void assert_file(const char *p, const char *want)
{
    if (!T.fs) return;
    char *got = slurp(p);
    if (!got) fail_msg("missing file %s", p);
    assert_string_equal(got, want);
    free(got);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

/* ---- tests ------------------------------------------------------------ */

static void test_layout_and_roundtrip(void **state)
{
    (void)state;
    uint64_t size = 0;
    const char *l1 = "[0,\"9f8e7d6c5b4a39281706f5e4d3c2b1a0\",\"MSG\",\"" CH1 "\",\"cp|G3xk|0m9v\",1718000005000]\n";
    const char *l2 = "[0,null,\"MSG\",\"" CH1 "\",\"Zx1\",1718000007000]\n";
    assert_int_equal(append(CH1, l1, &size), CPS_OK);
    assert_int_equal(size, strlen(l1));
    assert_int_equal(append(CH1, l2, &size), CPS_OK);
    assert_int_equal(size, strlen(l1) + strlen(l2));

    char p[512], want[512];
    path(p, sizeof p, "datastore/a1/" CH1 ".ndjson");
    snprintf(want, sizeof want, "%s%s", l1, l2);
    if (T.fs) assert_true(file_exists(p));
    assert_file(p, want);

    int st;
    char *all = read_all(CH1, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(all, want);
    free(all);

    res r = { 0 };
    RUN(&r, B->channel_size(S, CH1, on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, strlen(want));   /* the log only, not the metadata log */

    /* Metadata log: append (size after), read, replace. */
    const char *m1 = "{\"channel\":\"" CH1 "\",\"created\":1718000000000}\n";
    const char *m2 = "[\"ADD_OWNERS\",[\"7eEq\"],1718000100000]\n";
    RUN(&r, B->meta_append(S, CH1, m1, strlen(m1), on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, strlen(m1));
    RUN(&r, B->meta_append(S, CH1, m2, strlen(m2), on_size, &r));
    assert_int_equal(r.size, strlen(m1) + strlen(m2));
    RUN(&r, B->meta_read(S, CH1, on_data, &r));
    assert_int_equal(r.status, CPS_OK);
    snprintf(want, sizeof want, "%s%s", m1, m2);
    assert_string_equal(r.data, want);
    path(p, sizeof p, "datastore/a1/" CH1 ".metadata.ndjson");
    assert_file(p, want);
    RUN(&r, B->meta_write(S, CH1, m1, strlen(m1), on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->meta_read(S, CH1, on_data, &r));
    assert_string_equal(r.data, m1);
    assert_file(p, m1);
    /* The size still counts the log only. */
    RUN(&r, B->channel_size(S, CH1, on_size, &r));
    assert_int_equal(r.size, strlen(l1) + strlen(l2));
    res_clear(&r);
}

static void test_missing(void **state)
{
    (void)state;
    const char *id = "00112233445566778899aabbccddeeff";
    int st;
    res r = { 0 };
    RUN(&r, B->channel_read(S, id, 0, 4096, on_read, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    assert_null(r.data);
    RUN(&r, B->channel_size(S, id, on_size, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    assert_int_equal(r.size, 0);
    assert_null(get_data(B->meta_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_null(get_data(B->placeholder_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_int_equal(trim_or_truncate(true, id, 0), CPS_ENOENT);
    assert_int_equal(trim_or_truncate(false, id, 0), CPS_ENOENT);
    assert_int_equal(archive(id, "gone"), CPS_ENOENT);
    assert_null(get_data(B->placeholder_read, id, &st));   /* no placeholder for nothing */
    assert_int_equal(simple(B->channel_restore, id), CPS_ENOENT);
    assert_int_equal(simple(B->channel_delete, id), CPS_ENOENT);
    assert_null(get_data(B->pin_read, KEY1, &st));
    assert_int_equal(st, CPS_ENOENT);
    RUN(&r, B->record_get(S, "tasks", "nothing", on_data, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    RUN(&r, B->record_del(S, "tasks", "nothing", on_done, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    res_clear(&r);
}

static void test_archive_restore(void **state)
{
    (void)state;
    const char *id = "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf";
    const char *meta = "{\"channel\":\"b0b1b2b3b4b5b6b7b8b9babbbcbdbebf\"}\n";
    int st;
    char p[512];
    res r = { 0 };
    assert_int_equal(append(id, "[1]\n", NULL), CPS_OK);
    RUN(&r, B->meta_append(S, id, meta, strlen(meta), on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    if (T.fs) { path(p, sizeof p, "datastore/b0/%s.ndjson.offset", id); put_file(p, "{\"start\":0}"); }

    /* With a reason: files move to the archive, a placeholder stays. */
    assert_int_equal(archive(id, "OWNER_DELETED:by the owner"), CPS_OK);
    char *ph = get_data(B->placeholder_read, id, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(ph, "OWNER_DELETED:by the owner");
    free(ph);
    free(read_all(id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_null(get_data(B->meta_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);
    path(p, sizeof p, "data/archive/datastore/b0/%s.ndjson", id);
    assert_file(p, "[1]\n");
    path(p, sizeof p, "data/archive/datastore/b0/%s.metadata.ndjson", id);
    assert_file(p, meta);
    path(p, sizeof p, "datastore/b0/%s.ndjson.placeholder", id);
    assert_file(p, "OWNER_DELETED:by the owner");
    path(p, sizeof p, "datastore/b0/%s.ndjson.offset", id);
    if (T.fs) assert_false(file_exists(p));

    /* Restore: back in place, placeholder gone. */
    assert_int_equal(simple(B->channel_restore, id), CPS_OK);
    char *log = read_all(id, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(log, "[1]\n");
    free(log);
    char *m = get_data(B->meta_read, id, &st);
    assert_string_equal(m, meta);
    free(m);
    assert_null(get_data(B->placeholder_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_int_equal(simple(B->channel_restore, id), CPS_EEXIST);   /* it is live again */

    /* Without a reason: no placeholder. */
    assert_int_equal(archive(id, NULL), CPS_OK);
    assert_null(get_data(B->placeholder_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);

    /* A live channel of the same id blocks the restore. */
    assert_int_equal(append(id, "[2]\n", NULL), CPS_OK);
    assert_int_equal(simple(B->channel_restore, id), CPS_EEXIST);
    log = read_all(id, &st);
    assert_string_equal(log, "[2]\n");
    free(log);
    assert_int_equal(simple(B->channel_delete, id), CPS_OK);
    assert_int_equal(simple(B->channel_restore, id), CPS_OK);
    log = read_all(id, &st);
    assert_string_equal(log, "[1]\n");
    free(log);
    res_clear(&r);
}

static void test_trim_truncate_delete(void **state)
{
    (void)state;
    const char *id = "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf";
    const char *meta = "{\"channel\":\"c0c1c2c3c4c5c6c7c8c9cacbcccdcecf\"}\n";
    int st;
    char p[512];
    res r = { 0 };
    assert_int_equal(append(id, "{\"legacy\":1}\n[\"l2\"]\n", NULL), CPS_OK);
    assert_int_equal(append(id, "[\"l3\"]\n", NULL), CPS_OK);
    RUN(&r, B->meta_append(S, id, meta, strlen(meta), on_size, &r));
    path(p, sizeof p, "datastore/c0/%s.ndjson.offset", id);
    if (T.fs) put_file(p, "{\"start\":13}");

    assert_int_equal(trim_or_truncate(true, id, 5), CPS_EINVAL);     /* mid-line */
    assert_int_equal(trim_or_truncate(true, id, 1000), CPS_EINVAL);  /* past the end */
    assert_int_equal(trim_or_truncate(true, id, 13), CPS_OK);
    char *log = read_all(id, &st);
    assert_string_equal(log, "[\"l2\"]\n[\"l3\"]\n");
    free(log);
    if (T.fs) assert_false(file_exists(p));
    path(p, sizeof p, "data/archive/datastore/c0/%s.ndjson", id);
    assert_file(p, "{\"legacy\":1}\n[\"l2\"]\n[\"l3\"]\n");    /* the old log, whole */
    path(p, sizeof p, "data/archive/datastore/c0/%s.metadata.ndjson", id);
    assert_file(p, meta);
    path(p, sizeof p, "datastore/c0/%s.ndjson.temp", id);
    if (T.fs) assert_false(file_exists(p));
    RUN(&r, B->channel_size(S, id, on_size, &r));
    assert_int_equal(r.size, 14);

    assert_int_equal(trim_or_truncate(false, id, 3), CPS_EINVAL);    /* mid-line */
    assert_int_equal(trim_or_truncate(false, id, 99), CPS_EINVAL);
    assert_int_equal(trim_or_truncate(false, id, 7), CPS_OK);
    log = read_all(id, &st);
    assert_string_equal(log, "[\"l2\"]\n");
    free(log);
    assert_int_equal(trim_or_truncate(false, id, 0), CPS_OK);
    log = read_all(id, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(log, "");
    free(log);

    if (T.fs) { path(p, sizeof p, "datastore/c0/%s.ndjson.placeholder", id); put_file(p, "x"); }
    assert_int_equal(simple(B->channel_delete, id), CPS_OK);
    free(read_all(id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_null(get_data(B->meta_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_null(get_data(B->placeholder_read, id, &st));
    assert_int_equal(st, CPS_ENOENT);
    assert_int_equal(simple(B->channel_delete, id), CPS_ENOENT);
    /* A channel with only a metadata log can be deleted too. */
    RUN(&r, B->meta_append(S, id, meta, strlen(meta), on_size, &r));
    assert_int_equal(simple(B->channel_delete, id), CPS_OK);
    res_clear(&r);
}

static int cut(const char *id, uint64_t off, uint64_t len)
{
    res r = { 0 };
    RUN(&r, B->channel_cut(S, id, off, len, on_done, &r));
    return r.status;
}

/* channel_cut (docs/protocol/history.md 9.6): one span of whole lines goes, the rest is
** byte-identical, the old log is archived and .offset dropped. */
static void test_cut(void **state)
{
    (void)state;
    assert_true(CPS_STORAGE_HAS(B, channel_cut));
    const char *id = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
    const char *meta = "{\"channel\":\"d0d1d2d3d4d5d6d7d8d9dadbdcdddedf\"}\n";
    const char *text = "[\"l1\"]\n[\"line2\"]\n[\"l3\"]\n";   /* lines at 0, 7, 17; 24 bytes */
    int st;
    char p[512];
    res r = { 0 };
    assert_int_equal(cut(id, 0, 7), CPS_ENOENT);
    assert_int_equal(append(id, text, NULL), CPS_OK);
    RUN(&r, B->meta_append(S, id, meta, strlen(meta), on_size, &r));
    path(p, sizeof p, "datastore/d0/%s.ndjson.offset", id);
    if (T.fs) put_file(p, "{\"start\":7}");

    assert_int_equal(cut(id, 3, 4), CPS_EINVAL);      /* starts mid-line */
    assert_int_equal(cut(id, 7, 5), CPS_EINVAL);      /* ends mid-line */
    assert_int_equal(cut(id, 7, 0), CPS_EINVAL);      /* nothing */
    assert_int_equal(cut(id, 17, 8), CPS_EINVAL);     /* past the end */
    assert_int_equal(cut(id, UINT64_MAX - 2, 10), CPS_EINVAL);   /* wraps */
    char *log = read_all(id, &st);
    assert_string_equal(log, text);                   /* refusals change nothing */
    free(log);

    assert_int_equal(cut(id, 7, 10), CPS_OK);         /* the middle line */
    log = read_all(id, &st);
    assert_string_equal(log, "[\"l1\"]\n[\"l3\"]\n");
    free(log);
    if (T.fs) assert_false(file_exists(p));
    path(p, sizeof p, "data/archive/datastore/d0/%s.ndjson", id);
    assert_file(p, text);                             /* the old log, whole */
    path(p, sizeof p, "data/archive/datastore/d0/%s.metadata.ndjson", id);
    assert_file(p, meta);
    path(p, sizeof p, "datastore/d0/%s.ndjson.temp", id);
    if (T.fs) assert_false(file_exists(p));
    char *m = get_data(B->meta_read, id, &st);
    assert_string_equal(m, meta);                     /* the metadata log is the caller's */
    free(m);

    assert_int_equal(cut(id, 7, 7), CPS_OK);          /* the last line */
    log = read_all(id, &st);
    assert_string_equal(log, "[\"l1\"]\n");
    free(log);
    assert_int_equal(cut(id, 0, 7), CPS_OK);          /* the only line */
    log = read_all(id, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(log, "");
    free(log);

    /* a first line, and a span longer than the copy buffer */
    const char *big_id = "e0e1e2e3e4e5e6e7e8e9eaebecedeeef";
    size_t n = 200 * 1024;
    char *big = malloc(n + 2);
    memset(big, 'x', n);
    big[0] = '[';
    big[n - 1] = ']';
    big[n] = '\n';
    big[n + 1] = 0;
    assert_int_equal(append(big_id, "[\"first\"]\n", NULL), CPS_OK);
    assert_int_equal(append(big_id, big, NULL), CPS_OK);
    assert_int_equal(append(big_id, big, NULL), CPS_OK);
    assert_int_equal(cut(big_id, 0, 10), CPS_OK);
    assert_int_equal(cut(big_id, 0, n + 1), CPS_OK);
    log = read_all(big_id, &st);
    assert_string_equal(log, big);
    free(log);
    assert_int_equal(append(big_id, "[\"mid\"]\n", NULL), CPS_OK);
    assert_int_equal(append(big_id, big, NULL), CPS_OK);
    assert_int_equal(cut(big_id, n + 1, 8), CPS_OK);   /* a head longer than the buffer */
    RUN(&r, B->channel_size(S, big_id, on_size, &r));
    assert_int_equal(r.size, 2 * (n + 1));
    log = read_all(big_id, &st);
    assert_memory_equal(log, big, n + 1);
    assert_string_equal(log + n + 1, big);
    free(log);
    free(big);
    assert_int_equal(simple(B->channel_delete, big_id), CPS_OK);
    assert_int_equal(simple(B->channel_delete, id), CPS_OK);
    res_clear(&r);
}

static void test_200_appends_in_order(void **state)
{
    (void)state;
    const char *id = "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf";
    enum { N = 200 };
    res *r = calloc(N, sizeof *r);
    int total = 0;
    completions = 0;
    char line[64];
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof line, "[%d,\"%0*d\"]\n", i, i % 17 + 1, i);
        assert_int_equal(B->channel_append(S, id, line, strlen(line), on_size, &r[i]), CPS_OK);
    }
    for (int i = 0; i < N; i++) assert_int_equal(r[i].calls, 0);
    /* Wait for every one: sum of calls. */
    uv_timer_start(&T.tick, tick, 10, 10);
    for (uint64_t end = uv_hrtime() + 30000000000ull; uv_hrtime() < end;) {
        total = 0;
        for (int i = 0; i < N; i++) total += r[i].calls;
        if (total == N) break;
        uv_run(&T.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&T.tick);
    assert_int_equal(total, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, CPS_OK);
        assert_int_equal(r[i].order, i);                   /* completed in order */
        if (i) assert_true(r[i].size > r[i - 1].size);    /* and written in order */
    }
    int st;
    char *log = read_all(id, &st);
    char *at = log;
    for (int i = 0; i < N; i++) {
        snprintf(line, sizeof line, "[%d,\"%0*d\"]\n", i, i % 17 + 1, i);
        assert_memory_equal(at, line, strlen(line));
        at += strlen(line);
    }
    assert_int_equal(*at, 0);
    assert_int_equal((uint64_t)(at - log), r[N - 1].size);
    free(log);
    free(r);
}

static void test_20_channels_interleaved(void **state)
{
    (void)state;
    enum { C = 20, N = 30 };
    res *r = calloc(C * N, sizeof *r);
    char ids[C][33], line[64];
    for (int c = 0; c < C; c++) snprintf(ids[c], sizeof ids[c], "e%031d", c);
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) {
            snprintf(line, sizeof line, "[%d,%d]\n", c, i);
            assert_int_equal(B->channel_append(S, ids[c], line, strlen(line), on_size, &r[i * C + c]), CPS_OK);
        }
    int total = 0;
    uv_timer_start(&T.tick, tick, 10, 10);
    for (uint64_t end = uv_hrtime() + 30000000000ull; uv_hrtime() < end;) {
        total = 0;
        for (int k = 0; k < C * N; k++) total += r[k].calls;
        if (total == C * N) break;
        uv_run(&T.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&T.tick);
    assert_int_equal(total, C * N);
    for (int c = 0; c < C; c++) {
        char want[4096] = "";
        size_t w = 0;
        for (int i = 0; i < N; i++) {
            assert_int_equal(r[i * C + c].status, CPS_OK);
            if (i) assert_true(r[i * C + c].order > r[(i - 1) * C + c].order);
            w += (size_t)snprintf(want + w, sizeof want - w, "[%d,%d]\n", c, i);
        }
        int st;
        char *log = read_all(ids[c], &st);
        assert_string_equal(log, want);
        free(log);
    }
    free(r);
}

/* Walks a log in chunks of at most about max bytes. */
static void walk(const char *id, size_t max, const char *want)
{
    size_t wl = strlen(want), got = 0;
    uint64_t off = 0;
    res r = { 0 };
    for (int guard = 0; guard < 10000; guard++) {
        RUN(&r, B->channel_read(S, id, off, max, on_read, &r));
        assert_int_equal(r.status, CPS_OK);
        assert_int_equal(r.next, off + r.len);
        if (r.len) {
            assert_int_equal(r.data[r.len - 1], '\n');                 /* complete lines only */
            /* Within max, unless the first line alone is longer. */
            const char *nl = memchr(r.data, '\n', r.len);
            if (r.len > max) assert_true(nl == r.data + r.len - 1);
            assert_memory_equal(r.data, want + got, r.len);
            got += r.len;
        }
        off = r.next;
        if (r.eof) break;
        assert_true(r.len > 0);
    }
    assert_int_equal(got, wl);
    assert_int_equal(off, wl);
    /* Reading at the end: nothing, eof. */
    RUN(&r, B->channel_read(S, id, off, max, on_read, &r));
    assert_int_equal(r.len, 0);
    assert_true(r.eof);
    assert_int_equal(r.next, off);
    res_clear(&r);
}

static void test_small_max_reads(void **state)
{
    (void)state;
    const char *id = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    char *want = calloc(1, 8192);
    size_t w = 0;
    for (int i = 0; i < 60; i++) {
        char line[128];
        int n = snprintf(line, sizeof line, "[%d,\"%.*s\"]\n", i, (i * 7) % 50, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        assert_int_equal(append(id, line, NULL), CPS_OK);
        memcpy(want + w, line, (size_t)n);
        w += (size_t)n;
    }
    walk(id, 0, want);
    walk(id, 1, want);
    walk(id, 10, want);
    walk(id, 100, want);
    walk(id, 4096, want);
    walk(id, 1 << 20, want);
    free(want);
}

static void test_torn_line_repaired(void **state)
{
    (void)state;
    if (!T.fs) skip();
    const char *id = "1a2b3c4d5e6f708192a3b4c5d6e7f801";
    char p[512];
    int st;
    path(p, sizeof p, "datastore/1a/%s.ndjson", id);
    put_file(p, "[\"one\"]\n[\"two\"]\n[\"thr");           /* crash mid-write */
    char *log = read_all(id, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(log, "[\"one\"]\n[\"two\"]\n");
    free(log);
    uint64_t size;
    assert_int_equal(append(id, "[\"three\"]\n", &size), CPS_OK);
    assert_file(p, "[\"one\"]\n[\"two\"]\n[\"three\"]\n");
    assert_int_equal(size, 26);

    /* Before a first append, and a log holding only a partial line. */
    const char *id2 = "1a2b3c4d5e6f708192a3b4c5d6e7f802";
    path(p, sizeof p, "datastore/1a/%s.ndjson", id2);
    put_file(p, "[\"partial");
    assert_int_equal(append(id2, "[\"fresh\"]\n", &size), CPS_OK);
    assert_int_equal(size, 10);
    assert_file(p, "[\"fresh\"]\n");

    /* A size query sees the repaired log too. */
    const char *id3 = "1a2b3c4d5e6f708192a3b4c5d6e7f803";
    path(p, sizeof p, "datastore/1a/%s.ndjson", id3);
    put_file(p, "[1]\n[2");
    res r = { 0 };
    RUN(&r, B->channel_size(S, id3, on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, 4);
    res_clear(&r);
}

/* Every entry point refuses a bad id synchronously, without a callback. */
static void refuse_channel(const char *id)
{
    res r = { 0 };
    const char *l = "[1]\n";
    assert_int_equal(B->channel_append(S, id, l, 4, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->channel_read(S, id, 0, 100, on_read, &r), CPS_EINVAL);
    assert_int_equal(B->channel_size(S, id, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->channel_trim(S, id, 0, on_done, &r), CPS_EINVAL);
    assert_int_equal(B->channel_truncate(S, id, 0, on_done, &r), CPS_EINVAL);
    assert_int_equal(B->channel_archive(S, id, "x", on_done, &r), CPS_EINVAL);
    assert_int_equal(B->channel_restore(S, id, on_done, &r), CPS_EINVAL);
    assert_int_equal(B->channel_delete(S, id, on_done, &r), CPS_EINVAL);
    assert_int_equal(B->placeholder_read(S, id, on_data, &r), CPS_EINVAL);
    assert_int_equal(B->meta_append(S, id, l, 4, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->meta_read(S, id, on_data, &r), CPS_EINVAL);
    assert_int_equal(B->meta_write(S, id, l, 4, on_done, &r), CPS_EINVAL);
    assert_int_equal(r.calls, 0);
}

static void refuse_key(const char *key)
{
    res r = { 0 };
    assert_int_equal(B->pin_append(S, key, "[1]\n", 4, on_done, &r), CPS_EINVAL);
    assert_int_equal(B->pin_read(S, key, on_data, &r), CPS_EINVAL);
    assert_int_equal(r.calls, 0);
}

static void refuse_record(const char *ns, const char *key)
{
    res r = { 0 };
    assert_int_equal(B->record_put(S, ns, key, "x", 1, on_done, &r), CPS_EINVAL);
    assert_int_equal(B->record_get(S, ns, key, on_data, &r), CPS_EINVAL);
    assert_int_equal(B->record_del(S, ns, key, on_done, &r), CPS_EINVAL);
    assert_int_equal(r.calls, 0);
}

static const char *dir_rule_fail;   /* set by check_entry on an unexpected path */

static bool id_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+=-_", s[i])) return false;
    return true;
}

/* The only paths the backend may create under the temporary tree. */
static int check_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)f;
    static char bad[600];
    size_t tl = strlen(T.top);
    const char *rel = p + tl;
    bool dir = S_ISDIR(st->st_mode);
    (void)flag;
    if (!*rel) return 0;
    rel++;
    if (!strcmp(rel, "cfg.lua") || !strcmp(rel, "x") || !strcmp(rel, "x/y") || !strcmp(rel, "x/y/z") ||
        !strcmp(rel, "x/y/z/d"))
        return 0;
    if (strncmp(rel, "x/y/z/d/", 8) != 0) goto bad;
    rel += 8;
    /* Split into at most 5 components. */
    char buf[512], *c[6] = { 0 };
    int n = 0;
    snprintf(buf, sizeof buf, "%s", rel);
    for (char *s = strtok(buf, "/"); s && n < 6; s = strtok(NULL, "/")) c[n++] = s;
    const char *prefix_dir = NULL, *file = NULL;
    int depth_dir;   /* components before the prefix directory */
    if (!strcmp(c[0], "datastore")) depth_dir = 1;
    else if (!strcmp(c[0], "data") && n >= 2 && !strcmp(c[1], "archive") && n >= 3 && !strcmp(c[2], "datastore")) depth_dir = 3;
    else if (!strcmp(c[0], "data") && n >= 2 && !strcmp(c[1], "archive") && n >= 3 && !strcmp(c[2], "pins")) depth_dir = 3;
    else if (!strcmp(c[0], "data") && n >= 2 && !strcmp(c[1], "archive")) { if (n == 2 && dir) return 0; goto bad; }
    else if (!strcmp(c[0], "data") && n >= 2 && !strcmp(c[1], "pins")) depth_dir = 2;
    else if (!strcmp(c[0], "data") && n >= 2) {
        for (const char *s = c[1]; *s; s++) if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", *s)) goto bad;
        depth_dir = 2;
    } else if (!strcmp(c[0], "data") && n == 1 && dir) return 0;
    else goto bad;
    if (n < depth_dir) goto bad;
    if (n == depth_dir) { if (dir) return 0; goto bad; }
    prefix_dir = c[depth_dir];
    size_t pl = strlen(prefix_dir);
    if (pl < 1 || pl > 2 || !id_chars(prefix_dir, pl)) goto bad;
    if (n == depth_dir + 1) { if (dir) return 0; goto bad; }
    if (n != depth_dir + 2 || dir) goto bad;
    file = c[depth_dir + 1];
    if (strncmp(file, prefix_dir, pl) != 0 || strstr(file, "..")) goto bad;
    return 0;
bad:
    snprintf(bad, sizeof bad, "unexpected %s %s", dir ? "directory" : "file", p);
    dir_rule_fail = bad;
    return 0;
}

static void test_bad_ids_refused(void **state)
{
    (void)state;
    char nul[40] = "a1b2c3d4e5f6";          /* "a1b2...\0rest": just short */
    memcpy(nul + 13, "0718293a4b5c6d7e8f90abc", 23);
    const char *bad[] = {
        "", "../../etc/passwd", "/abs", "/a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "ab/cdef0123456789abcdef012345678", "a1b2c3d4e5f60718293a4b5c6d7e8f9.",
        "../a1b2c3d4e5f60718293a4b5c6d7e8", "..a1b2c3d4e5f60718293a4b5c6d7e8f",
        "a1b2c3d4e5f60718293a4b5c6d7e8f9",                       /* 31 */
        "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607182",     /* 49 */
        "a1b2c3d4e5f60718293a4b5c6d7e8f9_", "a1b2c3d4e5f60718293a4b5c6d7e8f9 ",
        "a1b2c3d4e5f60718293a4b5c6d7e8f9\xc3\xa9", nul,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) refuse_channel(bad[i]);
    refuse_channel(NULL);
    refuse_key(NULL);
    refuse_key("");
    refuse_key("Vz3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak");           /* 43 */
    refuse_key("Vz3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak==");         /* 45 */
    refuse_key("Vz3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E/4r7JH0Ak=");          /* unsafe '/' */
    refuse_key("../../../../../../../../../../../../etc/pass");
    refuse_record("", "k");
    refuse_record("Tasks", "k");
    refuse_record("a/b", "k");
    refuse_record("..", "k");
    refuse_record("abcdefghijklmnopqrstuvwxyz0123456", "k");           /* 33 */
    refuse_record(NULL, "k");
    refuse_record("tasks", NULL);
    refuse_record("tasks", "");
    refuse_record("tasks", "..");
    refuse_record("tasks", "a/b");
    refuse_record("tasks", "a.b");
    char longkey[130];
    memset(longkey, 'k', 129);
    longkey[129] = 0;
    refuse_record("tasks", longkey);

    /* Appends take whole lines. */
    res r = { 0 };
    assert_int_equal(B->channel_append(S, CH1, "[1]", 3, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->channel_append(S, CH1, "", 0, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->channel_append(S, CH1, NULL, 4, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->meta_append(S, CH1, "[1]", 3, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->pin_append(S, KEY1, "[1]", 3, on_done, &r), CPS_EINVAL);
    assert_int_equal(r.calls, 0);

    /* Valid edge cases: uppercase and + = -, 33, 48 characters. */
    assert_int_equal(append("ABCDEFabcdef0123456789+=-ABCDEFG", "[1]\n", NULL), CPS_OK);
    assert_int_equal(append("-bcdef0123456789abcdef0123456789a", "[1]\n", NULL), CPS_OK);
    assert_int_equal(append("a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718", "[1]\n", NULL), CPS_OK);

    /* Nothing outside the data dir, nothing unexpected inside it. */
    if (T.fs) {
        dir_rule_fail = NULL;
        assert_int_equal(nftw(T.top, check_entry, 16, FTW_PHYS), 0);
        if (dir_rule_fail) fail_msg("%s", dir_rule_fail);
        char p[512];
        path(p, sizeof p, "datastore/AB/ABCDEFabcdef0123456789+=-ABCDEFG.ndjson");
        assert_true(file_exists(p));
    }
}

static void test_pins_and_records(void **state)
{
    (void)state;
    int st;
    res r = { 0 };
    const char *p1 = "[\"PIN\",[\"" CH1 "\"],1718000000000]\n";
    const char *p2 = "[\"RESET\",[],1718000001000]\n";
    RUN(&r, B->pin_append(S, KEY1, p1, strlen(p1), on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->pin_append(S, KEY1, p2, strlen(p2), on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    char *pins = get_data(B->pin_read, KEY1, &st);
    assert_int_equal(st, CPS_OK);
    char want[256];
    snprintf(want, sizeof want, "%s%s", p1, p2);
    assert_string_equal(pins, want);
    free(pins);
    char p[512];
    path(p, sizeof p, "data/pins/Vz/" KEY1 ".ndjson");
    assert_file(p, want);

    /* Archiving a pin log (REMOVE_PINS): gone from the live store, kept
    ** under data/archive/pins; a second archive replaces the first. */
    if (CPS_STORAGE_HAS(B, pin_archive)) {
        char ap[512];
        path(ap, sizeof ap, "data/archive/pins/Vz/" KEY1 ".ndjson");
        RUN(&r, B->pin_archive(S, KEY1, on_done, &r));
        assert_int_equal(r.status, CPS_OK);
        if (T.fs) assert_false(file_exists(p));
        assert_file(ap, want);
        assert_null(get_data(B->pin_read, KEY1, &st));
        assert_int_equal(st, CPS_ENOENT);
        RUN(&r, B->pin_archive(S, KEY1, on_done, &r));
        assert_int_equal(r.status, CPS_ENOENT);
        /* Queued behind an append of the same key: the archive sees it. */
        res a = { 0 };
        assert_int_equal(B->pin_append(S, KEY1, p2, strlen(p2), on_done, &a), CPS_OK);
        RUN(&r, B->pin_archive(S, KEY1, on_done, &r));
        assert_int_equal(a.calls, 1);
        assert_int_equal(a.status, CPS_OK);
        assert_int_equal(r.status, CPS_OK);
        assert_file(ap, p2);
        assert_int_equal(B->pin_archive(S, "../../etc/passwd", on_done, &r), CPS_EINVAL);
        assert_int_equal(B->pin_archive(S, NULL, on_done, &r), CPS_EINVAL);

        /* Restore (ABI 2.2, an admin restoring an account): the archived
        ** log comes back once, never over a live one (EEXIST, both kept). */
        assert_true(CPS_STORAGE_HAS(B, pin_restore) && B->pin_restore);
        RUN(&r, B->pin_restore(S, KEY1, on_done, &r));
        assert_int_equal(r.status, CPS_OK);
        char *back = get_data(B->pin_read, KEY1, &st);
        assert_string_equal(back, p2);
        free(back);
        if (T.fs) assert_false(file_exists(ap));
        RUN(&r, B->pin_restore(S, KEY1, on_done, &r));
        assert_int_equal(r.status, CPS_ENOENT);
        RUN(&r, B->pin_archive(S, KEY1, on_done, &r));
        assert_int_equal(r.status, CPS_OK);
        RUN(&r, B->pin_append(S, KEY1, p1, strlen(p1), on_done, &r));
        RUN(&r, B->pin_restore(S, KEY1, on_done, &r));
        assert_int_equal(r.status, CPS_EEXIST);
        back = get_data(B->pin_read, KEY1, &st);
        assert_string_equal(back, p1);
        free(back);
        assert_file(ap, p2);
        assert_int_equal(B->pin_restore(S, "../../etc/passwd", on_done, &r), CPS_EINVAL);
    }

    RUN(&r, B->record_put(S, "tasks", "Task_1=+-", "v1", 2, on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->record_put(S, "tasks", "Task_1=+-", "value 2", 7, on_done, &r));   /* replaces */
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->record_get(S, "tasks", "Task_1=+-", on_data, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.len, 7);
    assert_string_equal(r.data, "value 2");
    path(p, sizeof p, "data/tasks/Ta/Task_1=+-");
    assert_file(p, "value 2");
    RUN(&r, B->record_put(S, "x", "k", "", 0, on_done, &r));                    /* empty record, 1-char key */
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->record_get(S, "x", "k", on_data, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.len, 0);
    assert_string_equal(r.data, "");
    RUN(&r, B->record_del(S, "tasks", "Task_1=+-", on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->record_get(S, "tasks", "Task_1=+-", on_data, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    RUN(&r, B->record_del(S, "tasks", "Task_1=+-", on_done, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    res_clear(&r);
}

/* ---- named objects ---------------------------------------- */

#define BLOB1 "0123456789abcdef0123456789abcdef0123456789abcdef"

static int obj_append(const char *store, const char *key, const char *data, size_t len, uint64_t *size)
{
    res r = { 0 };
    RUN(&r, B->obj_append(S, store, key, data, len, on_size, &r));
    if (size) *size = r.size;
    return r.status;
}

static int obj_simple(int (*fn)(void *, const char *, const char *, cps_store_done_fn, void *),
                      const char *store, const char *key)
{
    res r = { 0 };
    RUN(&r, fn(S, store, key, on_done, &r));
    return r.status;
}

static int obj_move(const char *fs_, const char *fk, const char *ts, const char *tk)
{
    res r = { 0 };
    RUN(&r, B->obj_move(S, fs_, fk, ts, tk, on_done, &r));
    return r.status;
}

/* No path leaves a backend: obj_path (deprecated since ABI 2.1) is NULL, or
** at least never gives a path. */
static bool no_path(const char *store, const char *key)
{
    char buf[512];
    return !CPS_STORAGE_HAS(B, obj_path) || !B->obj_path || !B->obj_path(S, store, key, buf, sizeof buf);
}

static void test_objects(void **state)
{
    (void)state;
    if (!CPS_STORAGE_HAS(B, obj_append) || !B->obj_append) skip();
    res r = { 0 };
    uint64_t size = 0;
    char p[512], q[512];

    /* Append: raw bytes (no line rule, binary, NUL included), size after. */
    const char bin[] = { 'a', 0, '\n', (char)0xff, 'z' };
    assert_int_equal(obj_append("blobstage", KEY1, bin, sizeof bin, &size), CPS_OK);
    assert_int_equal(size, sizeof bin);
    assert_int_equal(obj_append("blobstage", KEY1, "tail", 4, &size), CPS_OK);
    assert_int_equal(size, sizeof bin + 4);
    RUN(&r, B->obj_size(S, "blobstage", KEY1, on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, sizeof bin + 4);
    if (T.fs) { path(p, sizeof p, "data/blobstage/Vz/" KEY1); assert_true(file_exists(p)); }

    /* Read: from an offset, at most max, raw (not line-aligned). */
    RUN(&r, B->obj_read(S, "blobstage", KEY1, 1, 3, on_read, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.data, bin + 1, 3);
    assert_int_equal(r.next, 4);
    assert_false(r.eof);
    RUN(&r, B->obj_read(S, "blobstage", KEY1, 4, 1 << 20, on_read, &r));
    assert_int_equal(r.len, 5);
    assert_memory_equal(r.data, "ztail", 5);
    assert_true(r.eof);
    RUN(&r, B->obj_read(S, "blobstage", KEY1, 100, 10, on_read, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.len, 0);
    assert_true(r.eof);

    /* Missing objects. */
    RUN(&r, B->obj_size(S, "blob", BLOB1, on_size, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    assert_int_equal(r.size, 0);
    RUN(&r, B->obj_read(S, "blob", BLOB1, 0, 10, on_read, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    assert_null(r.data);
    assert_int_equal(obj_simple(B->obj_delete, "blob", BLOB1), CPS_ENOENT);
    assert_int_equal(obj_simple(B->obj_archive, "blob", BLOB1), CPS_ENOENT);
    assert_int_equal(obj_move("blob", BLOB1, "blob", "0123456789abcdef0123456789abcdef0123456789abcdee"), CPS_ENOENT);

    /* Move: staging -> blob; the source is gone, the target has the bytes. */
    assert_int_equal(obj_move("blobstage", KEY1, "blob", BLOB1), CPS_OK);
    RUN(&r, B->obj_size(S, "blobstage", KEY1, on_size, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    RUN(&r, B->obj_size(S, "blob", BLOB1, on_size, &r));
    assert_int_equal(r.size, sizeof bin + 4);
    if (T.fs) {
        path(p, sizeof p, "blob/01/" BLOB1);
        assert_true(file_exists(p));
    }
    /* No path leaves a backend (obj_path is deprecated, always NULL): the
    ** moved object is read back through obj_read, whole and by ranges. */
    assert_true(no_path("blob", BLOB1));
    if (T.fs) assert_true(B->obj_path == NULL);   /* storage-fs: the member itself */
    RUN(&r, B->obj_read(S, "blob", BLOB1, 0, 1 << 20, on_read, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.len, sizeof bin + 4);
    assert_memory_equal(r.data, bin, sizeof bin);
    assert_true(r.eof);
    RUN(&r, B->obj_read(S, "blob", BLOB1, sizeof bin + 3, 10, on_read, &r));
    assert_int_equal(r.len, 1);
    assert_int_equal(r.next, sizeof bin + 4);
    assert_true(r.eof);
    /* A target that exists: EEXIST and nothing moves. */
    assert_int_equal(obj_append("blobstage", KEY1, "new", 3, NULL), CPS_OK);
    assert_int_equal(obj_move("blobstage", KEY1, "blob", BLOB1), CPS_EEXIST);
    RUN(&r, B->obj_read(S, "blob", BLOB1, 0, 100, on_read, &r));
    assert_int_equal(r.len, sizeof bin + 4);
    assert_memory_equal(r.data, bin, sizeof bin);
    RUN(&r, B->obj_read(S, "blobstage", KEY1, 0, 100, on_read, &r));
    assert_string_equal(r.data, "new");

    /* Write: whole replacement (atomic), empty allowed; delete. */
    const char *cookie = "0123456789abcdef0123456789abcdef";
    RUN(&r, B->obj_write(S, "blobstage", KEY1 ".cookie", "x", 1, on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->obj_write(S, "blobstage", KEY1 ".cookie", cookie, 32, on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->obj_read(S, "blobstage", KEY1 ".cookie", 0, 0, on_read, &r));
    assert_string_equal(r.data, cookie);
    if (T.fs) {
        path(p, sizeof p, "data/blobstage/Vz/" KEY1 ".cookie");
        assert_file(p, cookie);
        path(q, sizeof q, "data/blobstage/Vz/" KEY1 ".cookie~tmp");
        assert_false(file_exists(q));
    }
    RUN(&r, B->obj_write(S, "block", "k", "", 0, on_done, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->obj_size(S, "block", "k", on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, 0);
    if (T.fs) { path(p, sizeof p, "block/k/k"); assert_true(file_exists(p)); }
    assert_int_equal(obj_simple(B->obj_delete, "blobstage", KEY1 ".cookie"), CPS_OK);
    assert_int_equal(obj_simple(B->obj_delete, "blobstage", KEY1 ".cookie"), CPS_ENOENT);
    /* Other stores go under data/. */
    assert_int_equal(obj_append("challenges", "Ab_1.x", "c", 1, NULL), CPS_OK);
    if (T.fs) { path(p, sizeof p, "data/challenges/Ab/Ab_1.x"); assert_file(p, "c"); }

    /* Archive: gone from the live store, kept under data/archive/<store>;
    ** a second archive of a new object replaces the archived one. */
    assert_int_equal(obj_simple(B->obj_archive, "blob", BLOB1), CPS_OK);
    RUN(&r, B->obj_size(S, "blob", BLOB1, on_size, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    if (T.fs) {
        path(p, sizeof p, "data/archive/blob/01/" BLOB1);
        assert_true(file_exists(p));
        path(p, sizeof p, "blob/01/" BLOB1);
        assert_false(file_exists(p));
    }
    assert_int_equal(obj_move("blobstage", KEY1, "blob", BLOB1), CPS_OK);   /* "new" */
    assert_int_equal(obj_simple(B->obj_archive, "blob", BLOB1), CPS_OK);
    if (T.fs) { path(p, sizeof p, "data/archive/blob/01/" BLOB1); assert_file(p, "new"); }

    /* Restore (ABI 2.2): the archived copy comes back, once; never over a
    ** live object (EEXIST, both copies kept); ENOENT without an archive. */
    assert_true(CPS_STORAGE_HAS(B, obj_restore) && B->obj_restore);
    assert_int_equal(obj_simple(B->obj_restore, "blob", BLOB1), CPS_OK);
    RUN(&r, B->obj_read(S, "blob", BLOB1, 0, 64, on_read, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.len, 3);
    assert_memory_equal(r.data, "new", 3);
    if (T.fs) {
        path(p, sizeof p, "data/archive/blob/01/" BLOB1);
        assert_false(file_exists(p));
        path(p, sizeof p, "blob/01/" BLOB1);
        assert_file(p, "new");
    }
    assert_int_equal(obj_simple(B->obj_restore, "blob", BLOB1), CPS_ENOENT);
    assert_int_equal(obj_simple(B->obj_archive, "blob", BLOB1), CPS_OK);
    assert_int_equal(obj_append("blob", BLOB1, "live", 4, NULL), CPS_OK);
    assert_int_equal(obj_simple(B->obj_restore, "blob", BLOB1), CPS_EEXIST);
    RUN(&r, B->obj_size(S, "blob", BLOB1, on_size, &r));
    assert_int_equal(r.size, 4);
    assert_int_equal(obj_simple(B->obj_delete, "blob", BLOB1), CPS_OK);
    assert_int_equal(obj_simple(B->obj_restore, "blob", BLOB1), CPS_OK);
    RUN(&r, B->obj_size(S, "blob", BLOB1, on_size, &r));
    assert_int_equal(r.size, 3);
    assert_int_equal(obj_simple(B->obj_archive, "blob", BLOB1), CPS_OK);
    assert_int_equal(obj_simple(B->obj_restore, "nosuch", BLOB1), CPS_ENOENT);

    /* Order: appends, a move and a size on one object complete in order. */
    res a[20] = { 0 }, mv = { 0 }, sz = { 0 };
    completions = 0;
    for (int i = 0; i < 20; i++)
        assert_int_equal(B->obj_append(S, "blobstage", KEY1, "0123456789", 10, on_size, &a[i]), CPS_OK);
    assert_int_equal(B->obj_move(S, "blobstage", KEY1, "blob", BLOB1, on_done, &mv), CPS_OK);
    assert_int_equal(B->obj_size(S, "blobstage", KEY1, on_size, &sz), CPS_OK);
    wait_until(&sz.calls, 1);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(a[i].status, CPS_OK);
        assert_int_equal(a[i].size, 10u * (unsigned)(i + 1));
        assert_int_equal(a[i].order, i);
    }
    assert_int_equal(mv.status, CPS_OK);
    assert_int_equal(mv.order, 20);
    assert_int_equal(sz.status, CPS_ENOENT);
    RUN(&r, B->obj_size(S, "blob", BLOB1, on_size, &r));
    assert_int_equal(r.size, 200);
    res_clear(&r);
}

/* A big object (more than a few read chunks, not a multiple of one) read
** back with obj_read alone, the way HTTP downloads stream it: 256 KiB
** chunks cover every byte exactly once, and reads at ranges that straddle
** chunk boundaries, at the last byte and past the end return exactly the
** bytes asked for.  (No path is needed, nor offered.) */
static unsigned char big_byte(uint64_t i) { return (unsigned char)((i * 2654435761u) >> 13); }

static void test_objects_big_reads(void **state)
{
    (void)state;
    if (!CPS_STORAGE_HAS(B, obj_append) || !B->obj_append) skip();
    const char *key = "big.obj";
    const size_t piece = 1 << 20, chunk = 256 * 1024;
    const uint64_t total = 5 * (uint64_t)piece + 12345;
    unsigned char *buf = malloc(piece);
    assert_non_null(buf);
    uint64_t size = 0;
    for (uint64_t off = 0; off < total; off += piece) {
        size_t n = total - off < piece ? (size_t)(total - off) : piece;
        for (size_t i = 0; i < n; i++) buf[i] = big_byte(off + i);
        assert_int_equal(obj_append("blob", key, (const char *)buf, n, &size), CPS_OK);
    }
    free(buf);
    assert_int_equal(size, total);
    assert_true(no_path("blob", key));

    res r = { 0 };
    uint64_t off = 0;
    int steps = 0;
    bool same = true;
    while (off < total && steps++ < 1000) {
        RUN(&r, B->obj_read(S, "blob", key, off, chunk, on_read, &r));
        assert_int_equal(r.status, CPS_OK);
        assert_true(r.len > 0 && r.len <= chunk);
        for (size_t i = 0; i < r.len && same; i++) same = (unsigned char)r.data[i] == big_byte(off + i);
        assert_true(same);
        assert_int_equal(r.next, off + r.len);
        off += r.len;
        assert_int_equal(r.eof, off == total);
    }
    assert_int_equal(off, total);

    const struct { uint64_t off; size_t max; size_t want; } spans[] = {
        { chunk - 7, 100, 100 }, { 3 * chunk - 1, chunk, chunk }, { 2 * (uint64_t)piece + 1, 3 * chunk + 5, 3 * chunk + 5 },
        { total - 1, 10, 1 }, { total - 300, 4096, 300 }, { total, 10, 0 }, { total + 99, 10, 0 },
    };
    for (size_t k = 0; k < sizeof spans / sizeof spans[0]; k++) {
        RUN(&r, B->obj_read(S, "blob", key, spans[k].off, spans[k].max, on_read, &r));
        assert_int_equal(r.status, CPS_OK);
        assert_int_equal(r.len, spans[k].want);
        for (size_t i = 0; i < r.len && same; i++) same = (unsigned char)r.data[i] == big_byte(spans[k].off + i);
        assert_true(same);
        assert_int_equal(r.eof, spans[k].off + r.len >= total);
    }
    /* Deleted: the next read of a stream in progress says so. */
    assert_int_equal(obj_simple(B->obj_delete, "blob", key), CPS_OK);
    RUN(&r, B->obj_read(S, "blob", key, chunk, chunk, on_read, &r));
    assert_int_equal(r.status, CPS_ENOENT);
    res_clear(&r);
}

/* Stores and keys that could name anything outside their place. */
static void test_objects_refused(void **state)
{
    (void)state;
    if (!CPS_STORAGE_HAS(B, obj_append) || !B->obj_append) skip();
    res r = { 0 };
    char longkey[130];
    memset(longkey, 'k', 129);
    longkey[129] = 0;
    const char *bad_keys[] = {
        NULL, "", "..", "../x", "a/../b", "..a", "a..", "/etc/passwd", "a/b", ".", ".hidden",
        "a b", "a\\b", "a\xc3\xa9", "a~tmp", "a%2fb", longkey,
    };
    const char *bad_stores[] = { NULL, "", "Blob", "blob/..", "..", "a1", "archive", "abcdefghijklmnopq", "b-c" };
    for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
        const char *k = bad_keys[i];
        assert_int_equal(B->obj_append(S, "blob", k, "x", 1, on_size, &r), CPS_EINVAL);
        assert_int_equal(B->obj_write(S, "blob", k, "x", 1, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_read(S, "blob", k, 0, 1, on_read, &r), CPS_EINVAL);
        assert_int_equal(B->obj_size(S, "blob", k, on_size, &r), CPS_EINVAL);
        assert_int_equal(B->obj_delete(S, "blob", k, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_archive(S, "blob", k, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_move(S, "blob", k, "blob", BLOB1, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_move(S, "blob", BLOB1, "blob", k, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_read(S, "blob", k, 100, 1 << 20, on_read, &r), CPS_EINVAL);
    }
    for (size_t i = 0; i < sizeof bad_stores / sizeof bad_stores[0]; i++) {
        const char *st = bad_stores[i];
        assert_int_equal(B->obj_append(S, st, BLOB1, "x", 1, on_size, &r), CPS_EINVAL);
        assert_int_equal(B->obj_write(S, st, BLOB1, "x", 1, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_move(S, "blob", BLOB1, st, BLOB1, on_done, &r), CPS_EINVAL);
        assert_int_equal(B->obj_read(S, st, BLOB1, 0, 1, on_read, &r), CPS_EINVAL);
        assert_int_equal(B->obj_size(S, st, BLOB1, on_size, &r), CPS_EINVAL);
    }
    assert_int_equal(B->obj_append(S, "blob", BLOB1, NULL, 1, on_size, &r), CPS_EINVAL);
    assert_int_equal(r.calls, 0);
    /* Nothing was created by any of them. */
    if (T.fs) {
        char p[512];
        struct stat st;
        path(p, sizeof p, "blob/a~/a~tmp");
        assert_int_not_equal(stat(p, &st), 0);
        path(p, sizeof p, "etc");
        assert_int_not_equal(stat(p, &st), 0);
    }
}

/* Beyond limits.work_queue requests waiting, a request is refused. */
static void test_queue_bound(void **state)
{
    (void)state;
    const char *id = "99887766554433221100ffeeddccbbaa";
    size_t limit = (size_t)cps_config_int("limits.work_queue", 10000);
    res extra = { 0 };
    size_t n = 0;
    for (; n < limit; n++)
        assert_int_equal(B->channel_append(S, id, "[0]\n", 4, on_size, &extra), CPS_OK);
    assert_int_equal(B->channel_append(S, id, "[0]\n", 4, on_size, &extra), CPS_EBUSY);
    assert_int_equal(B->channel_read(S, CH1, 0, 10, on_read, &extra), CPS_EBUSY);
    wait_until(&extra.calls, (int)n);
    res r = { 0 };
    RUN(&r, B->channel_size(S, id, on_size, &r));
    assert_int_equal(r.size, 4 * limit);
    res_clear(&r);
    res_clear(&extra);
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t fl = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, fl) && line[fl] == ':') v = strtol(line + fl + 1, NULL, 10);
    if (f) fclose(f);
    return v;
}

typedef struct stream {
    int calls, status;
    uint64_t total, next, maxchunk;
    bool eof, bad;
    int lines;
} stream;

static void on_stream(void *ud, int st, const char *d, size_t len, uint64_t next, bool eof)
{
    stream *s = ud;
    s->calls++;
    s->status = st;
    s->next = next;
    s->eof = eof;
    if (st != CPS_OK) return;
    if (len > s->maxchunk) s->maxchunk = len;
    /* Line i is 1 MiB of the letter 'a' + i % 26 ending in '\n'. */
    for (size_t at = 0; at < len; at += MIB) {
        char c = (char)('a' + s->lines % 26);
        if (len - at < MIB || d[at] != c || d[at + MIB - 2] != c || d[at + MIB - 1] != '\n') s->bad = true;
        s->lines++;
    }
    s->total += len;
}

static void test_100mb_streams(void **state)
{
    (void)state;
    const char *id = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
    enum { LINES = 100, BATCH = 8 };
    char *line = malloc(MIB);
    res r[BATCH];
    memset(r, 0, sizeof r);
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < LINES; i += BATCH) {
        int k = 0;
        int calls = 0;
        for (; k < BATCH && i + k < LINES; k++) {
            memset(line, 'a' + (i + k) % 26, MIB - 1);
            line[MIB - 1] = '\n';
            r[k].calls = 0;
            assert_int_equal(B->channel_append(S, id, line, MIB, on_size, &r[k]), CPS_OK);
        }
        uv_timer_start(&T.tick, tick, 10, 10);
        for (uint64_t end = uv_hrtime() + 60000000000ull; uv_hrtime() < end;) {
            calls = 0;
            for (int j = 0; j < k; j++) calls += r[j].calls;
            if (calls == k) break;
            uv_run(&T.loop, UV_RUN_ONCE);
        }
        uv_timer_stop(&T.tick);
        assert_int_equal(calls, k);
        for (int j = 0; j < k; j++) {
            assert_int_equal(r[j].status, CPS_OK);
            assert_int_equal(r[j].size, (uint64_t)(i + j + 1) * MIB);
        }
    }
    free(line);
    uint64_t t1 = uv_hrtime();

    /* Peak RSS from here on: reset the high-water mark if the kernel lets us. */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    if (cr) { fputs("5", cr); fclose(cr); }
    long hwm0 = status_kb("VmHWM"), rss0 = status_kb("VmRSS");
    const size_t max = 256 * 1024;
    stream s = { 0 };
    uint64_t off = 0;
    while (!s.eof) {
        int before = s.calls;
        assert_int_equal(B->channel_read(S, id, off, max, on_stream, &s), CPS_OK);
        wait_until(&s.calls, before + 1);
        assert_int_equal(s.status, CPS_OK);
        off = s.next;
        assert_true(s.calls < 1000);
    }
    long hwm1 = status_kb("VmHWM"), rss1 = status_kb("VmRSS");
    print_message("100 MiB: append %.2fs, read %.2fs in %d chunks (max %llu B); VmHWM %ld -> %ld kB, VmRSS %ld -> %ld kB\n",
                  (double)(t1 - t0) / 1e9, (double)(uv_hrtime() - t1) / 1e9, s.calls,
                  (unsigned long long)s.maxchunk, hwm0, hwm1, rss0, rss1);
    assert_false(s.bad);
    assert_int_equal(s.lines, LINES);
    assert_int_equal(s.total, (uint64_t)LINES * MIB);
    assert_int_equal(off, (uint64_t)LINES * MIB);
    assert_true(s.maxchunk <= max + MIB);
    if (hwm0 > 0 && hwm1 > 0) assert_true(hwm1 - hwm0 < 64 * 1024);
    if (rss0 > 0 && rss1 > 0) assert_true(rss1 - rss0 < 64 * 1024);
    if (T.fs) {
        res d = { 0 };
        RUN(&d, B->channel_delete(S, id, on_done, &d));   /* give the disk back */
        assert_int_equal(d.status, CPS_OK);
    }
}

/* Appends after an operation that replaces or moves the log land in the
** new log (storage-fs keeps logs open for appends: the descriptor must not
** outlive the file it was opened on). */
static void test_append_after_replace(void **state)
{
    (void)state;
    res r = { 0 };
    int st;
    for (int op = 0; op < 5; op++) {
        char id[33];
        snprintf(id, sizeof id, "9%031d", op);
        /* several appends, queued together and one by one */
        for (int i = 0; i < 3; i++) assert_int_equal(append(id, "[\"a\"]\n", NULL), CPS_OK);
        res q[3];
        memset(q, 0, sizeof q);
        for (int i = 0; i < 3; i++) assert_int_equal(B->channel_append(S, id, "[\"b\"]\n", 6, on_size, &q[i]), CPS_OK);
        wait_until(&q[2].calls, 1);
        const char *want = NULL;
        switch (op) {
        case 0: RUN(&r, B->channel_trim(S, id, 6 * 5, on_done, &r)); want = "[\"b\"]\n[\"c\"]\n"; break;
        case 1: RUN(&r, B->channel_truncate(S, id, 6, on_done, &r)); want = "[\"a\"]\n[\"c\"]\n"; break;
        case 2: RUN(&r, B->channel_cut(S, id, 0, 6 * 5, on_done, &r)); want = "[\"b\"]\n[\"c\"]\n"; break;
        case 3:
            RUN(&r, B->channel_archive(S, id, NULL, on_done, &r));
            assert_int_equal(r.status, CPS_OK);
            RUN(&r, B->channel_restore(S, id, on_done, &r));
            want = "[\"a\"]\n[\"a\"]\n[\"a\"]\n[\"b\"]\n[\"b\"]\n[\"b\"]\n[\"c\"]\n";
            break;
        case 4: RUN(&r, B->channel_delete(S, id, on_done, &r)); want = "[\"c\"]\n"; break;
        }
        assert_int_equal(r.status, CPS_OK);
        assert_int_equal(append(id, "[\"c\"]\n", NULL), CPS_OK);
        char *all = read_all(id, &st);
        assert_int_equal(st, CPS_OK);
        assert_string_equal(all, want);
        free(all);
    }
    res_clear(&r);
}

/* ---- the raw view (cps_storage.h raw_*, ABI 2.1) ------------------------ */

typedef struct names {
    int calls, status;
    bool end;
    size_t n;
    char **v;
} names;

static void on_names(void *ud, int st, const char *const *v, size_t n, bool end)
{
    names *x = ud;
    x->calls++; x->status = st; x->end = end;
    for (size_t i = 0; i < n; i++) {
        x->v = realloc(x->v, (x->n + 1) * sizeof *x->v);
        x->v[x->n++] = strdup(v[i]);
    }
}

static void names_free(names *x)
{
    for (size_t i = 0; i < x->n; i++) free(x->v[i]);
    free(x->v);
    memset(x, 0, sizeof *x);
}

static bool names_has(const names *x, const char *s)
{
    for (size_t i = 0; i < x->n; i++) if (!strcmp(x->v[i], s)) return true;
    return false;
}

/* Every name of `space`, listed `page` at a time; checks the order. */
static void list_all(const char *space, size_t page, names *out)
{
    memset(out, 0, sizeof *out);
    char after[256] = "";
    for (int guard = 0; guard < 10000; guard++) {
        int before = out->calls;
        size_t had = out->n;
        assert_int_equal(B->raw_list(S, space, after, page, on_names, out), CPS_OK);
        assert_int_equal(out->calls, before);
        wait_until(&out->calls, before + 1);
        assert_int_equal(out->status, CPS_OK);
        assert_true(out->n - had <= page);
        if (out->n > had) snprintf(after, sizeof after, "%s", out->v[out->n - 1]);
        if (out->end) break;
    }
    assert_true(out->end);
    for (size_t i = 1; i < out->n; i++) assert_true(strcmp(out->v[i - 1], out->v[i]) < 0);
}

static void test_raw_view(void **state)
{
    (void)state;
    if (!CPS_STORAGE_HAS(B, raw_write)) skip();
    const char *ch[3] = { "ab000000000000000000000000000001", "ab000000000000000000000000000002",
                          "cd000000000000000000000000000003" };
    res r = { 0 };
    for (int i = 0; i < 3; i++) assert_int_equal(append(ch[i], "[\"raw\",1]\n[\"raw\",2]\n", NULL), CPS_OK);
    RUN(&r, B->meta_write(S, ch[0], "{\"m\":1}\n", 8, on_done, &r));
    RUN(&r, B->record_put(S, "rawns", "Rec_1", "record", 6, on_done, &r));
    RUN(&r, B->obj_write(S, "blob", "ab0000000000000000000000000000000000000000000001", "BLOB", 4, on_done, &r));
    const char *arch = "ef000000000000000000000000000004";
    assert_int_equal(append(arch, "[\"gone\"]\n", NULL), CPS_OK);
    RUN(&r, B->channel_archive(S, arch, "ARCHIVED", on_done, &r));
    assert_int_equal(r.status, CPS_OK);

    /* spaces */
    names sp = { 0 };
    assert_int_equal(B->raw_spaces(S, on_names, &sp), CPS_OK);
    assert_int_equal(sp.calls, 0);
    wait_until(&sp.calls, 1);
    assert_int_equal(sp.status, CPS_OK);
    assert_true(sp.end);
    const char *want[] = { "channel", "meta", "placeholder", "archive/channel", "obj/rawns", "obj/blob" };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!names_has(&sp, want[i])) fail_msg("raw_spaces lacks %s", want[i]);
    names_free(&sp);

    /* paging: one at a time gives the same as all at once, in order */
    names a, b;
    list_all("channel", 1, &a);
    list_all("channel", 1000, &b);
    assert_int_equal(a.n, b.n);
    for (size_t i = 0; i < a.n; i++) assert_string_equal(a.v[i], b.v[i]);
    for (int i = 0; i < 3; i++) assert_true(names_has(&a, ch[i]));
    assert_false(names_has(&a, arch));
    names_free(&a); names_free(&b);
    list_all("archive/channel", 7, &a);
    assert_true(names_has(&a, arch));
    names_free(&a);
    list_all("obj/rawns", 7, &a);
    assert_true(names_has(&a, "Rec_1"));
    names_free(&a);

    /* size and read match the semantic view */
    RUN(&r, B->raw_size(S, "channel", ch[1], on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, 20);
    RUN(&r, B->raw_read(S, "channel", ch[1], 0, 5, on_read, &r));   /* whole lines: at least one */
    assert_int_equal(r.status, CPS_OK);
    assert_string_equal(r.data, "[\"raw\",1]\n");
    assert_int_equal(r.next, 10);
    assert_false(r.eof);
    RUN(&r, B->raw_read(S, "placeholder", arch, 0, 1 << 20, on_read, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_non_null(strstr(r.data, "ARCHIVED"));
    RUN(&r, B->raw_size(S, "channel", "ff000000000000000000000000000009", on_size, &r));
    assert_int_equal(r.status, CPS_ENOENT);

    /* write: create, append at the size, refuse anything else */
    const char *nw = "ab000000000000000000000000000009";
    RUN(&r, B->raw_write(S, "channel", nw, 0, "[1]\n", 4, on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_int_equal(r.size, 4);
    RUN(&r, B->raw_write(S, "channel", nw, 4, "[2]\n", 4, on_size, &r));
    assert_int_equal(r.size, 8);
    RUN(&r, B->raw_write(S, "channel", nw, 4, "[3]\n", 4, on_size, &r));
    assert_int_equal(r.status, CPS_EINVAL);
    RUN(&r, B->raw_write(S, "channel", nw, 8, "[3]", 3, on_size, &r));      /* not a whole line */
    assert_int_equal(r.status, CPS_EINVAL);
    int st;
    char *all = read_all(nw, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(all, "[1]\n[2]\n");
    free(all);
    /* a record is the object of the same name */
    RUN(&r, B->raw_write(S, "obj/rawns", "Rec_2", 0, "two", 3, on_size, &r));
    assert_int_equal(r.status, CPS_OK);
    RUN(&r, B->record_get(S, "rawns", "Rec_2", on_data, &r));
    assert_int_equal(r.status, CPS_OK);
    assert_string_equal(r.data, "two");
    res_clear(&r);

    /* bad spaces and names never reach a path or a query */
    const char *bad_spaces[] = { "", "obj/", "obj/../x", "obj/archive", "archive", "channels", "obj/A",
                                 "archive/obj/", "../channel", "obj/x/y" };
    for (size_t i = 0; i < sizeof bad_spaces / sizeof *bad_spaces; i++) {
        assert_int_equal(B->raw_size(S, bad_spaces[i], ch[0], on_size, &r), CPS_EINVAL);
        assert_int_equal(B->raw_list(S, bad_spaces[i], "", 10, on_names, &sp), CPS_EINVAL);
    }
    const char *bad_names[] = { "", "../../etc/passwd", "ab", "AB000000000000000000000000000001/x" };
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++)
        assert_int_equal(B->raw_write(S, "channel", bad_names[i], 0, "[1]\n", 4, on_size, &r), CPS_EINVAL);
    assert_int_equal(B->raw_write(S, "obj/blob", "..", 0, "x", 1, on_size, &r), CPS_EINVAL);
    assert_int_equal(r.calls, 0);
    assert_int_equal(sp.calls, 0);

    if (T.fs) {
        /* a torn tail is not part of the entry */
        char p[512];
        snprintf(p, sizeof p, "%s/datastore/ab/%s.ndjson", T.dir, nw);
        FILE *f = fopen(p, "a");
        assert_non_null(f);
        fputs("[\"torn", f);
        fclose(f);
        RUN(&r, B->raw_size(S, "channel", nw, on_size, &r));
        assert_int_equal(r.size, 8);
        RUN(&r, B->raw_read(S, "channel", nw, 0, 1 << 20, on_read, &r));
        assert_string_equal(r.data, "[1]\n[2]\n");
        assert_true(r.eof);
        res_clear(&r);
    }
}

/* storage-pg: after every delete, replace, move and archive the tests above
** made, no chunk outlives its object (schema version 2 has no foreign key to
** cascade; docs/storage-pg.md), and the schema is that version.  Counted
** with psql, on the PG* environment the backend uses. */
static long pg_count(const char *q)
{
    char cmd[600], out[64] = "";
    snprintf(cmd, sizeof cmd, "psql -X -q -At -v ON_ERROR_STOP=1 -c \"%s\"", q);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, sizeof out, f));
    assert_int_equal(pclose(f), 0);
    return strtol(out, NULL, 10);
}

static void test_no_orphan_chunks(void **state)
{
    (void)state;
    if (T.fs) return;
    assert_int_equal(pg_count("SELECT max(version) FROM cps_schema_version"), 2);
    assert_int_equal(pg_count("SELECT count(*) FROM pg_constraint WHERE conrelid = 'cps_chunk'::regclass AND contype = 'f'"), 0);
    assert_true(pg_count("SELECT count(*) FROM cps_chunk") > 0);
    assert_int_equal(pg_count("SELECT count(*) FROM cps_chunk c WHERE NOT EXISTS "
                              "(SELECT 1 FROM cps_object o WHERE o.oid = c.oid)"), 0);
}

/* Last: unloading cancels what waits; what already runs reports its result. */
static void test_unload_cancels(void **state)
{
    (void)state;
    enum { C = 3, N = 20 };
    res r[C * N];
    memset(r, 0, sizeof r);
    char ids[C][33];
    for (int c = 0; c < C; c++) {
        snprintf(ids[c], sizeof ids[c], "7%031d", c);
        for (int i = 0; i < N; i++)
            assert_int_equal(B->channel_append(S, ids[c], "[\"u\"]\n", 6, on_size, &r[c * N + i]), CPS_OK);
    }
    const cps_storage_backend *b = B;
    cps_plugins_fini();
    assert_null(cps_storage_get(b->name));
    res late = { 0 };
    assert_int_equal(b->channel_append(b->state, CH1, "[1]\n", 4, on_size, &late), CPS_ECANCELED);
    int total = 0;
    uv_timer_start(&T.tick, tick, 10, 10);
    for (uint64_t end = uv_hrtime() + 30000000000ull; uv_hrtime() < end;) {
        total = 0;
        for (int k = 0; k < C * N; k++) total += r[k].calls;
        if (total == C * N) break;
        uv_run(&T.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&T.tick);
    assert_int_equal(total, C * N);
    for (int c = 0; c < C; c++) {
        bool cancelled = false;
        for (int i = 0; i < N; i++) {
            res *x = &r[c * N + i];
            assert_int_equal(x->calls, 1);
            assert_true(x->status == CPS_OK || x->status == CPS_ECANCELED);
            if (x->status == CPS_ECANCELED) cancelled = true;
            else assert_false(cancelled);          /* the ones that ran come first */
        }
        /* The first request of an idle queue was on the pool already. */
        assert_int_equal(r[c * N].status, CPS_OK);
        assert_true(cancelled);
    }
    assert_int_equal(late.calls, 0);
    T.b = NULL;
}

/* ---- leases and fencing (docs/protocol/cluster.md §11.4) ---------------- */

typedef struct lres { int calls, status; uint64_t epoch; char holder[80]; } lres;

static void on_lease(void *ud, int st, uint64_t epoch, const char *holder)
{
    lres *r = ud;
    r->calls++;
    r->status = st;
    r->epoch = epoch;
    snprintf(r->holder, sizeof r->holder, "%s", holder ? holder : "(null)");
}

static lres lease(unsigned slot, const char *holder, unsigned ttl)
{
    lres r = { 0 };
    assert_int_equal(B->lease(S, slot, holder, ttl, on_lease, &r), CPS_OK);
    assert_int_equal(r.calls, 0);
    wait_until(&r.calls, 1);
    return r;
}

/* Changes the lease row behind the backend's back, as another process
** would (psql, with the same PG* environment). */
static void sql(const char *fmt, ...)
{
    char q[512], cmd[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(q, sizeof q, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "psql -q -v ON_ERROR_STOP=1 -c \"%s\" >/dev/null", q);
    assert_int_equal(system(cmd), 0);
}

/* Last: once a process took a lease its channel writes are fenced, which
** the other tests do not expect.  The backend is loaded again (the unload
** test unloaded it). */
static void test_lease_and_fence(void **state)
{
    (void)state;
    if (!T.b) {
        assert_int_equal(cps_plugin_load_path(T.plugin, T.so, NULL), 0);
        T.b = cps_storage_get(T.name);
        assert_non_null(T.b);
    }
    assert_true(CPS_STORAGE_HAS(B, lease));
    if (T.fs) {                /* files no other node reaches: no leases */
        assert_null(B->lease);
        return;
    }
    /* A channel of slot s: its owner among 250 storage nodes. */
    assert_int_equal(cps_router_set_role_count("storage", 250), 0);
    char id[33], node[32], me[64], other[64];
    unsigned char rnd[16];
    FILE *u = fopen("/dev/urandom", "rb");
    assert_non_null(u);
    assert_int_equal(fread(rnd, 1, sizeof rnd, u), sizeof rnd);
    fclose(u);
    for (int i = 0; i < 16; i++) snprintf(id + 2 * i, 3, "%02x", rnd[i]);
    assert_non_null(cps_router_owner("storage", id, node, sizeof node));
    unsigned s = (unsigned)atoi(node + 8);
    snprintf(me, sizeof me, "storage:0/test-%.8s", id);
    snprintf(other, sizeof other, "storage:1/test-%.8s", id);

    /* bad requests */
    lres none = { 0 };
    assert_int_equal(B->lease(S, 9999, me, 1000, on_lease, &none), CPS_EINVAL);
    assert_int_equal(B->lease(S, s, "bad holder", 1000, on_lease, &none), CPS_EINVAL);
    assert_int_equal(B->lease(S, s, "", 1000, on_lease, &none), CPS_EINVAL);

    /* acquire (an earlier run's lease of this slot expires within 2 s) */
    lres a = { 0 };
    for (int i = 0; i < 30; i++) {
        a = lease(s, me, 2000);
        if (a.status == CPS_OK) break;
        usleep(100000);
    }
    assert_int_equal(a.status, CPS_OK);
    uint64_t e1 = a.epoch;
    assert_true(e1 >= 1);
    /* one holder per process: the fence checks that name */
    assert_int_equal(B->lease(S, s, other, 1000, on_lease, &none), CPS_EINVAL);
    /* a renewal keeps the epoch */
    a = lease(s, me, 2000);
    assert_int_equal(a.status, CPS_OK);
    assert_int_equal(a.epoch, e1);

    /* writes under the epoch held pass the fence */
    assert_int_equal(append(id, "[1]\n", NULL), CPS_OK);

    /* another holder takes over: our writes fail, nothing of them lands */
    sql("UPDATE cps_lease SET holder = '%s', epoch = epoch + 1, expiry = clock_timestamp() + interval '30 s' WHERE slot = %u",
        other, s);
    assert_int_equal(append(id, "[2]\n", NULL), CPS_EUNAVAILABLE);
    res r = { 0 };
    RUN(&r, B->meta_append(S, id, "[\"x\"]\n", 6, on_size, &r));
    assert_int_equal(r.status, CPS_EUNAVAILABLE);
    res_clear(&r);
    int st;
    char *all = read_all(id, &st);
    assert_int_equal(st, CPS_OK);
    assert_string_equal(all, "[1]\n");
    free(all);
    /* and a renewal says who holds it */
    a = lease(s, me, 2000);
    assert_int_equal(a.status, CPS_EBUSY);
    assert_string_equal(a.holder, other);
    assert_int_equal(a.epoch, e1 + 1);

    /* once that lease expired we take it back, with a new epoch */
    sql("UPDATE cps_lease SET expiry = clock_timestamp() - interval '1 s' WHERE slot = %u", s);
    a = lease(s, me, 2000);
    assert_int_equal(a.status, CPS_OK);
    assert_int_equal(a.epoch, e1 + 2);
    assert_int_equal(append(id, "[3]\n", NULL), CPS_OK);
    all = read_all(id, &st);
    assert_string_equal(all, "[1]\n[3]\n");
    free(all);

    /* released: our writes are refused; taking it again is a new epoch */
    a = lease(s, me, 0);
    assert_int_equal(a.status, CPS_OK);
    assert_int_equal(append(id, "[4]\n", NULL), CPS_EUNAVAILABLE);
    a = lease(s, me, 2000);
    assert_int_equal(a.status, CPS_OK);
    assert_int_equal(a.epoch, e1 + 3);
    a = lease(s, me, 0);
    assert_int_equal(a.status, CPS_OK);
    assert_int_equal(simple(B->channel_delete, id), CPS_EUNAVAILABLE);
    cps_router_set_role_count("storage", 0);
}

/* ---- setup ------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    snprintf(T.top, sizeof T.top, "/tmp/cps_storage_XXXXXX");
    if (!mkdtemp(T.top)) return -1;
    char p[256];
    snprintf(p, sizeof p, "%s/x", T.top); mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/x/y", T.top); mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/x/y/z", T.top); mkdir(p, 0755);
    snprintf(T.dir, sizeof T.dir, "%s/x/y/z/d", T.top);
    /* The backend under test is the plugin storage-<name>; "pg" connects
    ** through libpq's PG* environment (tests/pg/pg_env.sh). */
    const char *name = getenv("CPS_CONTRACT_BACKEND");
    if (!name || !*name) name = "fs";
    T.fs = strcmp(name, "fs") == 0;
    char *plugin = T.plugin, *so = T.so;
    snprintf(T.name, sizeof T.name, "%s", name);
    snprintf(plugin, sizeof T.plugin, "storage-%s", name);
    snprintf(so, sizeof T.so, "%s/%s.so", TEST_PLUGIN_DIR_FS, plugin);
    snprintf(p, sizeof p, "%s/cfg.lua", T.top);
    FILE *f = fopen(p, "w");
    if (!f) return -1;
    fprintf(f, "return { data_dir = \"%s\", plugins = { \"%s\" }%s }\n", T.dir, plugin,
            T.fs ? ", [\"storage-fs\"] = { fsync = false }" : "");
    fclose(f);
    char *errors = NULL;
    cps_cfg = cps_config_load(p, &errors);
    if (!cps_cfg) { fprintf(stderr, "config: %s\n", errors); free(errors); return -1; }
    uv_loop_init(&T.loop);
    uv_timer_init(&T.loop, &T.tick);
    cps_timers_init(&T.loop);
    cps_router_init(&T.loop);
    if (cps_plugin_load_path(plugin, so, NULL) != 0) return -1;
    T.b = cps_storage_get(name);
    if (!T.b) { fprintf(stderr, "no storage backend '%s'\n", name); return -1; }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cps_plugins_fini();
    cps_router_shutdown();
    uv_close((uv_handle_t *)&T.tick, NULL);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&T.loop);
    cps_plugins_close();
    cps_metrics_free();
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
    nftw(T.top, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    /* In order, sharing one loaded backend; the unload test is last. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout_and_roundtrip),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_archive_restore),
        cmocka_unit_test(test_trim_truncate_delete),
        cmocka_unit_test(test_cut),
        cmocka_unit_test(test_200_appends_in_order),
        cmocka_unit_test(test_20_channels_interleaved),
        cmocka_unit_test(test_small_max_reads),
        cmocka_unit_test(test_torn_line_repaired),
        cmocka_unit_test(test_bad_ids_refused),
        cmocka_unit_test(test_pins_and_records),
        cmocka_unit_test(test_objects),
        cmocka_unit_test(test_objects_refused),
        cmocka_unit_test(test_objects_big_reads),
        cmocka_unit_test(test_queue_bound),
        cmocka_unit_test(test_append_after_replace),
        cmocka_unit_test(test_raw_view),
        cmocka_unit_test(test_100mb_streams),
        cmocka_unit_test(test_no_orphan_chunks),
        cmocka_unit_test(test_unload_cancels),
        cmocka_unit_test(test_lease_and_fence),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
