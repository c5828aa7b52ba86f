/*
** test_pin.c - the rpc-pin plugin over the storage-fs backend, in a host
** with a real loop and the router nodes storage:0 and core:0, driven through
** cps_rpc_call as the core role would after checking the signature.
** A fake CHANNEL_SIZE on storage:0 answers sizes later (or ENOENT when off).
*/
#define _GNU_SOURCE   /* nftw */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <sys/stat.h>
#include "host.h"
#include "test_util.h"

#ifndef TEST_PLUGIN_DIR_FS
#define TEST_PLUGIN_DIR_FS "plugins"
#endif

#define CALLER "someuserid0000000000000000000000"
#define MIB (1024u * 1024u)
/* 44-character keys in unsafe base64 (with '/'), one per test. */
#define KEY(c) c "z3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E/4r7JH0Ak="
#define KA KEY("A")
#define KB KEY("B")
#define KC KEY("C")
#define KD KEY("D")
#define KL KEY("L")          /* has a configured limit */
#define KR KEY("R")
#define KX KEY("X")
#define KY KEY("Y")
#define KZ KEY("Z")
#define KU KEY("U")
#define BLOCK1 "Bk1lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak="   /* a login block's key */
#define BLOCK2 "Bk2lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E-4r7JH0Ak="

static struct {
    uv_loop_t loop;
    uv_timer_t sizer;          /* answers the fake CHANNEL_SIZE queries */
    char dir[64];
    /* the fake CHANNEL_SIZE */
    bool sizes_on;
    cps_call *waiting[4096];
    json_t *waiting_args[4096];
    size_t nwaiting, max_waiting, size_calls;
    /* answers that asked the dispatcher to end the caller's session */
    int end_sessions;
    char end_key[64];
} T;                           /* the test singleton */

/* Results are static in the tests: a late answer after a failed assertion
** must not write into a dead stack frame. */
typedef struct result { int calls; char error[48]; char *value; char key[64]; } result;

/* ---- the loop ----------------------------------------------------------- */

static void guard_fire(uv_timer_t *t) { *(bool *)t->data = true; }
static void guard_closed(uv_handle_t *h) { (void)h; }

static void run_until(const int *count, int want)
{
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&T.loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, guard_fire, 30000, 0);
    while (*count < want && !expired) uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    uv_close((uv_handle_t *)&guard, guard_closed);
    uv_run(&T.loop, UV_RUN_NOWAIT);
    assert_int_equal(*count, want);
}

/* ---- fakes of the storage role and the core ----------------------------- */

/* Sizes: ids starting with 'e' are 4 MiB, the others 1000 bytes. */
static uint64_t fake_size(const char *id) { return id && id[0] == 'e' ? 4 * MIB : 1000; }

static int fake_channel_size(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    T.size_calls++;
    if (!T.sizes_on) return CPS_ENOENT;   /* what the router answers without it */
    assert_true(T.nwaiting < sizeof T.waiting / sizeof T.waiting[0]);
    T.waiting[T.nwaiting] = call;
    T.waiting_args[T.nwaiting++] = json_incref(args);
    if (T.nwaiting > T.max_waiting) T.max_waiting = T.nwaiting;
    return CPS_ASYNC;
}

/* Answers every waiting size query, a loop turn or so after it came. */
static void sizer_tick(uv_timer_t *t)
{
    (void)t;
    size_t n = T.nwaiting;
    T.nwaiting = 0;
    for (size_t i = 0; i < n; i++) {
        const char *id = json_string_value(json_object_get(T.waiting_args[i], "id"));
        cps_router_reply(T.waiting[i], CPS_OK, json_pack("{s I}", "size", (json_int_t)fake_size(id)));
        json_decref(T.waiting_args[i]);
    }
}


/* ---- calls -------------------------------------------------------------- */

static void done(void *ud, int err, json_t *value, unsigned flags)
{
    result *r = ud;
    r->calls++;
    if (flags & CPS_RPC_END_SESSION) {
        T.end_sessions++;
        snprintf(T.end_key, sizeof T.end_key, "%s", r->key);
    }
    snprintf(r->error, sizeof r->error, "%s", err ? cps_errname(err) : "");
    free(r->value);
    r->value = value ? json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
}

static void result_clear(result *r) { free(r->value); memset(r, 0, sizeof *r); }

/* Starts `name` for `key` with args (JSON text, NULL for none), no wait. */
static void start(const char *name, int kind, const char *key, const char *args_json, result *r)
{
    result_clear(r);
    json_t *args = NULL;
    if (args_json) {
        json_error_t e;
        args = json_loads(args_json, JSON_DECODE_ANY, &e);
        if (!args) fail_msg("bad test JSON %s: %s", args_json, e.text);
    }
    snprintf(r->key, sizeof r->key, "%s", key ? key : "");
    assert_int_equal(cps_rpc_call(NULL, name, kind, key, CALLER, args, done, r), 0);
}

/* Calls and waits; returns the error ("" for none). */
static const char *call(const char *name, const char *key, const char *args_json, result *r)
{
    start(name, CPS_RPC_AUTH, key, args_json, r);
    run_until(&r->calls, 1);
    return r->error;
}

/* Calls a command that must succeed with `want` (compact JSON). */
static void call_ok(const char *name, const char *key, const char *args_json, const char *want)
{
    static result r;
    const char *err = call(name, key, args_json, &r);
    if (*err) fail_msg("%s %s: error %s", name, args_json ? args_json : "", err);
    if (!r.value || strcmp(r.value, want) != 0)
        fail_msg("%s %s: got %s, want %s", name, args_json ? args_json : "", r.value ? r.value : "(none)", want);
    result_clear(&r);
}

static void call_err(const char *name, const char *key, const char *args_json, const char *want)
{
    static result r;
    const char *err = call(name, key, args_json, &r);
    if (strcmp(err, want) != 0)
        fail_msg("%s %.80s: error '%s', want '%s'", name, args_json ? args_json : "", err, want);
    result_clear(&r);
}

/* ---- expected values, computed independently --------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* "\"<GET_HASH>\"": base64(SHA-512) of the JSON text `["a","b"]` of the
** sorted ids, built by hand. */
static char *hash_of(const char **ids, size_t n)
{
    const char **s = malloc((n ? n : 1) * sizeof *s);
    if (n) memcpy(s, ids, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_str);
    size_t cap = 3;
    for (size_t i = 0; i < n; i++) cap += strlen(s[i]) + 3;
    char *text = malloc(cap), *p = text;
    *p++ = '[';
    for (size_t i = 0; i < n; i++) p += sprintf(p, "%s\"%s\"", i ? "," : "", s[i]);
    *p++ = ']';
    unsigned char d[64];
    crypto_hash_sha512(d, (unsigned char *)text, (size_t)(p - text));
    char b64[100];
    sodium_bin2base64(b64, sizeof b64, d, sizeof d, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(strlen(b64) + 3);
    sprintf(out, "\"%s\"", b64);
    free(text);
    free(s);
    return out;
}

static void expect_hash(const char *key, const char **ids, size_t n)
{
    char *want = hash_of(ids, n);
    call_ok("GET_HASH", key, "\"ignored\"", want);
    free(want);
}

/* 32 hex characters: `c` then n in hex. */
static const char *mkid(char *buf, char c, unsigned n)
{
    snprintf(buf, 33, "%c%031x", c, n);
    return buf;
}

/* ---- files -------------------------------------------------------------- */

static void pin_path(char *out, size_t n, const char *area, const char *key)
{
    char safe[45];
    snprintf(safe, sizeof safe, "%s", key);
    for (char *c = safe; *c; c++) if (*c == '/') *c = '-';
    snprintf(out, n, "%s/data/%s/%.2s/%s.ndjson", T.dir, area, safe, safe);
}

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

static void append_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "ab");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int count_lines(const char *p)
{
    char *s = slurp(p);
    if (!s) return -1;
    int n = 0;
    for (char *c = s; *c; c++) n += *c == '\n';
    free(s);
    return n;
}

/* Line `i` (from 0) of the log is `<prefix><13-digit time>]`. */
static void assert_line(const char *p, int i, const char *prefix)
{
    char *s = slurp(p);
    if (!s) fail_msg("no file %s", p);
    char *line = s;
    for (int k = 0; k < i && line; k++) {
        line = strchr(line, '\n');
        if (line) line++;
    }
    if (!line || !*line) fail_msg("%s: no line %d", p, i);
    char *end = strchr(line, '\n');
    assert_non_null(end);                    /* every line ends in '\n' */
    *end = 0;
    size_t pl = strlen(prefix);
    if (strncmp(line, prefix, pl) != 0) fail_msg("line %d is %s, want %s...", i, line, prefix);
    const char *t = line + pl;
    assert_int_equal(strlen(t), 14);
    for (int k = 0; k < 13; k++) assert_true(t[k] >= '0' && t[k] <= '9');
    assert_int_equal(t[13], ']');
    free(s);
}

static bool file_exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

/* ---- tests -------------------------------------------------------------- */

static void test_pin_unpin_reset(void **state)
{
    (void)state;
    char a[33], b[33], c[33], d[33], x[33];
    mkid(a, 'a', 1); mkid(b, 'b', 1); mkid(c, 'c', 1); mkid(d, 'd', 1); mkid(x, 'f', 9);
    char p[512], args[512], want[512];
    pin_path(p, sizeof p, "pins", KA);

    expect_hash(KA, NULL, 0);                                /* no log: hash of [] */
    assert_false(file_exists(p));

    snprintf(args, sizeof args, "[\"%s\",\"%s\"]", b, a);
    call_ok("PIN", KA, args, "null");
    expect_hash(KA, (const char *[]){ a, b }, 2);
    snprintf(want, sizeof want, "[\"PIN\",[\"%s\",\"%s\"],", b, a);   /* as given */
    assert_line(p, 0, want);

    snprintf(args, sizeof args, "[\"%s\"]", a);
    call_ok("PIN", KA, args, "null");                         /* pinned already: nothing written */
    assert_int_equal(count_lines(p), 1);

    snprintf(args, sizeof args, "[\"%s\",\"%s\"]", a, x);
    call_ok("UNPIN", KA, args, "null");                       /* x is not pinned: not written */
    expect_hash(KA, (const char *[]){ b }, 1);
    snprintf(want, sizeof want, "[\"UNPIN\",[\"%s\"],", a);
    assert_line(p, 1, want);

    call_ok("UNPIN", KA, args, "null");                       /* nothing pinned of these */
    assert_int_equal(count_lines(p), 2);

    snprintf(args, sizeof args, "[\"%s\",\"%s\",\"%s\"]", d, c, d);
    call_ok("RESET", KA, args, "null");
    expect_hash(KA, (const char *[]){ c, d }, 2);             /* de-duplicated */
    snprintf(want, sizeof want, "[\"RESET\",[\"%s\",\"%s\",\"%s\"],", d, c, d);
    assert_line(p, 2, want);

    call_ok("RESET", KA, "[]", "null");                       /* nothing written, set kept */
    expect_hash(KA, (const char *[]){ c, d }, 2);
    assert_int_equal(count_lines(p), 3);

    call_ok("GET_TOTAL_SIZE", KA, NULL, "0");                 /* no CHANNEL_SIZE: errors count 0 */
    assert_true(T.size_calls >= 2);
}

/* A log written by another server, replayed by docs/protocol/rpc.md 7.1's rules; and a key
** evicted from the cache (max_cached_keys = 2) is read again. */
static void test_replay_and_eviction(void **state)
{
    (void)state;
    char x[6][33], p[512], text[2048], args[256];
    for (int i = 1; i <= 5; i++) mkid(x[i], 'a', 100u + (unsigned)i);
    pin_path(p, sizeof p, "pins", KB);
    snprintf(text, sizeof text,
             "[\"PIN\",[\"%s\"],1718000000000]\n"
             "[\"RESET\",[\"%s\",\"%s#drive\"],1718000000001]\n"
             "this is no JSON\n"
             "[\"PIN\",[\"%s\",\"" BLOCK1 "#block\",7],1718000000002]\n"
             "[\"FOO\",[\"%s\"],1718000000003]\n"
             "{\"PIN\":1}\n"
             "\n"
             "[\"UNPIN\",[\"%s#drive\"],1718000000004]\n"
             "[\"PIN\",[\"%s\",\"%s\"],1718000000005]\n",
             x[1], x[2], x[3], x[4], x[5], x[2], x[5], x[3]);
    put_file(p, text);
    expect_hash(KB, (const char *[]){ x[3], x[4], x[5] }, 3);

    /* The replayed set holds no `#block` id: pinning the block again writes
    ** it, and the live set keeps it as sent (rpc.md 7.1, as CryptPad). */
    call_ok("PIN", KB, "[\"" BLOCK1 "#block\"]", "null");
    assert_line(p, 9, "[\"PIN\",[\"" BLOCK1 "#block\"],");
    expect_hash(KB, (const char *[]){ x[3], x[4], x[5], BLOCK1 "#block" }, 4);
    call_ok("PIN", KB, "[\"" BLOCK1 "#block\"]", "null");  /* now in the live set */
    assert_int_equal(count_lines(p), 10);

    /* Two more keys push KB out of the cache; an edit made behind its back
    ** is then seen, as the log is read again. */
    expect_hash(KC, NULL, 0);
    expect_hash(KD, NULL, 0);
    snprintf(text, sizeof text, "[\"UNPIN\",[\"%s\"],1718000000009]\n", x[4]);
    append_file(p, text);
    expect_hash(KB, (const char *[]){ x[3], x[5] }, 2);
    /* Still cached (most recent): its own appends keep it right. */
    snprintf(args, sizeof args, "[\"%s\"]", x[1]);
    call_ok("PIN", KB, args, "null");
    expect_hash(KB, (const char *[]){ x[1], x[3], x[5] }, 3);
}

/* Drops KC's cached set: two other keys push it out (max_cached_keys = 2). */
static void drop_kc(void)
{
    expect_hash(KEY("E"), NULL, 0);
    expect_hash(KEY("F"), NULL, 0);
}

/* Issue 12 item 8, docs/protocol/rpc.md 7.1: as CryptPad's session list, the
** live set keeps ids as sent (`id#drive`, `id#block`); only a replay of the
** log strips the suffix (and drops `#block` ids). */
static void test_drive_and_block(void **state)
{
    (void)state;
    char y[33], z[33], yd[40], p[512], args[512], want[512];
    mkid(y, 'b', 7); mkid(z, 'c', 7);
    snprintf(yd, sizeof yd, "%s#drive", y);
    pin_path(p, sizeof p, "pins", KC);

    /* PIN ["<id>#drive"] then GET_HASH in the same session: the list as pinned. */
    snprintf(args, sizeof args, "[\"%s\"]", yd);
    call_ok("PIN", KC, args, "null");
    expect_hash(KC, (const char *[]){ yd }, 1);
    snprintf(want, sizeof want, "[\"PIN\",[\"%s\"],", yd);
    assert_line(p, 0, want);
    call_ok("PIN", KC, args, "null");                         /* already pinned as sent */
    assert_int_equal(count_lines(p), 1);
    /* The cache dropped, the log replayed: the suffix is stripped. */
    drop_kc();
    expect_hash(KC, (const char *[]){ y }, 1);
    /* After the replay `id#drive` is not in the set: UNPIN of it writes
    ** nothing, PIN of it writes it again, and the live set holds both. */
    call_ok("UNPIN", KC, args, "null");
    assert_int_equal(count_lines(p), 1);
    expect_hash(KC, (const char *[]){ y }, 1);
    call_ok("PIN", KC, args, "null");
    assert_int_equal(count_lines(p), 2);
    expect_hash(KC, (const char *[]){ y, yd }, 2);
    /* UNPIN compares as sent: `id` removes `id` only. */
    snprintf(args, sizeof args, "[\"%s\"]", y);
    call_ok("UNPIN", KC, args, "null");
    expect_hash(KC, (const char *[]){ yd }, 1);
    drop_kc();                                                 /* PIN y#drive, PIN y#drive, UNPIN y */
    expect_hash(KC, NULL, 0);

    /* PIN of `id#drive` and a login block in one session, then `id`. */
    snprintf(args, sizeof args, "[\"%s\",\"" BLOCK1 "#block\"]", yd);
    call_ok("PIN", KC, args, "null");
    expect_hash(KC, (const char *[]){ yd, BLOCK1 "#block" }, 2);
    snprintf(args, sizeof args, "[\"%s\"]", y);
    call_ok("PIN", KC, args, "null");                         /* `id` is new beside `id#drive` */
    snprintf(want, sizeof want, "[\"PIN\",[\"%s\"],", y);
    assert_line(p, 4, want);
    expect_hash(KC, (const char *[]){ y, yd, BLOCK1 "#block" }, 3);
    snprintf(args, sizeof args, "[\"%s\"]", yd);
    call_ok("UNPIN", KC, args, "null");
    expect_hash(KC, (const char *[]){ y, BLOCK1 "#block" }, 2);
    drop_kc();                                  /* the replayed UNPIN `y#drive` strips to `y` */
    expect_hash(KC, NULL, 0);

    /* RESET: the live set is the list as sent; the replay strips it. */
    snprintf(args, sizeof args, "[\"%s\",\"%s\",\"" BLOCK1 "#block\"]", yd, z);
    call_ok("RESET", KC, args, "null");
    expect_hash(KC, (const char *[]){ yd, z, BLOCK1 "#block" }, 3);
    drop_kc();
    expect_hash(KC, (const char *[]){ y, z }, 2);
    snprintf(args, sizeof args, "[\"%s#block\"]", z);       /* not in the set as sent */
    call_ok("UNPIN", KC, args, "null");
    expect_hash(KC, (const char *[]){ y, z }, 2);
    /* A log line UNPIN `z#block` (written by CryptPad) strips to `z` on replay. */
    snprintf(want, sizeof want, "[\"UNPIN\",[\"%s#block\"],1718000000000]\n", z);
    append_file(p, want);
    drop_kc();
    expect_hash(KC, (const char *[]){ y }, 1);
}

static void test_limits(void **state)
{
    (void)state;
    call_ok("GET_LIMIT", KA, NULL, "[52428800,\"\",\"\"]");
    call_ok("GET_LIMIT", KL, "\"whatever\"", "[10485760,\"team\",\"a note\"]");
    call_ok("UPDATE_LIMITS", KL, NULL, "[10485760,\"team\",\"a note\"]");
    call_ok("UPDATE_LIMITS", KA, NULL, "[52428800,\"\",\"\"]");
}

static void test_quota(void **state)
{
    (void)state;
    char e1[33], e2[33], e3[33], s1[33], p[512], args[512];
    mkid(e1, 'e', 1); mkid(e2, 'e', 2); mkid(e3, 'e', 3); mkid(s1, 'a', 77);
    pin_path(p, sizeof p, "pins", KL);
    T.sizes_on = true;
    snprintf(args, sizeof args, "[\"%s\"]", e1);
    call_ok("PIN", KL, args, "null");                         /* 4 MiB of 10 */
    snprintf(args, sizeof args, "[\"%s\"]", e2);
    call_ok("PIN", KL, args, "null");                         /* 8 MiB of 10 */
    snprintf(args, sizeof args, "[\"%s\",\"%s\"]", s1, e3);
    call_err("PIN", KL, args, "E_OVER_LIMIT");                /* 8 + 4 MiB: refused whole */
    assert_int_equal(count_lines(p), 2);
    expect_hash(KL, (const char *[]){ e1, e2 }, 2);
    char want[32];
    snprintf(want, sizeof want, "%u", 8 * MIB);
    call_ok("GET_TOTAL_SIZE", KL, NULL, want);
    snprintf(args, sizeof args, "[\"%s\"]", s1);
    call_ok("PIN", KL, args, "null");                         /* 1000 bytes still fit */
    snprintf(want, sizeof want, "%u", 8 * MIB + 1000);
    call_ok("GET_TOTAL_SIZE", KL, NULL, want);

    /* 300 pinned ids: sizes are asked at most 64 at a time. */
    static char ids[300][33];
    char *list = malloc(300 * 36 + 3), *at = list;
    *at++ = '[';
    for (unsigned i = 0; i < 300; i++) at += sprintf(at, "%s\"%s\"", i ? "," : "", mkid(ids[i], '1', i));
    *at++ = ']';
    *at = 0;
    call_ok("RESET", KY, list, "null");
    free(list);
    T.max_waiting = 0;
    call_ok("GET_TOTAL_SIZE", KY, NULL, "300000");
    assert_true(T.max_waiting <= 64);
    assert_true(T.max_waiting > 1);
    T.sizes_on = false;
}

static void test_remove_pins(void **state)
{
    (void)state;
    char r1[33], p[512], ap[512], args[128], want[256];
    mkid(r1, 'd', 5);
    pin_path(p, sizeof p, "pins", KR);
    pin_path(ap, sizeof ap, "archive/pins", KR);
    snprintf(args, sizeof args, "[\"%s\"]", r1);
    call_ok("PIN", KR, args, "null");
    assert_true(file_exists(p));
    T.end_sessions = 0;
    call_ok("REMOVE_PINS", KR, NULL, "\"OK\"");
    assert_false(file_exists(p));
    snprintf(want, sizeof want, "[\"PIN\",[\"%s\"],", r1);
    assert_line(ap, 0, want);
    run_until(&T.end_sessions, 1);                            /* flagged on the answer */
    assert_string_equal(T.end_key, KR);
    expect_hash(KR, NULL, 0);
    call_ok("REMOVE_PINS", KR, NULL, "\"OK\"");               /* no log: still OK */
    run_until(&T.end_sessions, 2);
    call_ok("PIN", KR, args, "null");                         /* a fresh log */
    expect_hash(KR, (const char *[]){ r1 }, 1);
    assert_int_equal(count_lines(p), 1);
}

/* 20 PINs issued at once (with sizes answered later, so they overlap) all
** land, one line each, and the set has them all. */
static void test_concurrent_pins(void **state)
{
    (void)state;
    enum { N = 20 };
    static result r[N];
    static char ids[N][33];
    const char *all[N];
    char p[512], args[64];
    pin_path(p, sizeof p, "pins", KX);
    T.sizes_on = true;
    for (int i = 0; i < N; i++) {
        all[i] = mkid(ids[i], '9', 1000u - (unsigned)i);
        snprintf(args, sizeof args, "[\"%.32s\"]", ids[i]);
        start("PIN", CPS_RPC_AUTH, KX, args, &r[i]);
    }
    int answered = 0;
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&T.loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, guard_fire, 30000, 0);
    while (!expired) {
        answered = 0;
        for (int i = 0; i < N; i++) answered += r[i].calls;
        if (answered == N) break;
        uv_run(&T.loop, UV_RUN_ONCE);
    }
    uv_timer_stop(&guard);
    uv_close((uv_handle_t *)&guard, guard_closed);
    assert_int_equal(answered, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(r[i].error, "");
        assert_string_equal(r[i].value, "null");
        result_clear(&r[i]);
    }
    T.sizes_on = false;
    assert_int_equal(count_lines(p), N);
    expect_hash(KX, all, N);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    const char *bad[] = {
        "\"a1b2c3d4e5f60718293a4b5c6d7e8f90\"", "{\"a\":1}", "null", "[1]", "[null]", "[[]]",
        "[\"zz\"]", "[\"../../../../etc/passwd\"]", "[\"a1b2c3d4e5f60718293a4b5c6d7e8f9\"]",
        "[\"a1b2c3d4e5f60718293a4b5c6d7e8f90a\", \"a1b2c3d4e5f60718293a4b5c6d7e8f9g\"]",
        "[\"a1b2c3d4e5f60718293a4b5c6d7e8f90#\"]", "[\"a1b2c3d4e5f60718293a4b5c6d7e8f90#a/b\"]",
        "[\"" BLOCK1 "\"]", "[\"" BLOCK1 "#drive\"]", "[\"#block\"]", "[\"\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        call_err("PIN", KZ, bad[i], "INVALID_PIN_LIST");
        call_err("UNPIN", KZ, bad[i], "INVALID_PIN_LIST");
        call_err("RESET", KZ, bad[i], "INVALID_PIN_LIST");
    }
    call_err("PIN", KZ, NULL, "INVALID_PIN_LIST");

    /* 10000 ids are accepted, 10001 are not. */
    static char ids[10001][33];
    char *list = malloc(10001 * 36 + 3), *at = list;
    *at++ = '[';
    for (unsigned i = 0; i < 10000; i++) at += sprintf(at, "%s\"%s\"", i ? "," : "", mkid(ids[i], 'c', i));
    char *close = at;
    strcpy(at, "]");
    call_ok("RESET", KZ, list, "null");
    const char **all = malloc(10000 * sizeof *all);
    for (int i = 0; i < 10000; i++) all[i] = ids[i];
    expect_hash(KZ, all, 10000);
    free(all);
    sprintf(close, ",\"%s\"]", mkid(ids[10000], 'c', 10000));
    call_err("RESET", KZ, list, "INVALID_PIN_LIST");
    free(list);

    /* The signer's key must be one. */
    call_err("GET_HASH", "short", NULL, "INVALID_MESSAGE_OR_PUBLIC_KEY");
    call_err("PIN", "Vz3lV9m0mSPr8l7kZ0dM6u2cHfhW+Q2x1E/4r7JH0Ak", "[]", "INVALID_MESSAGE_OR_PUBLIC_KEY");
    call_err("TRIM_PINS", KZ, NULL, "NOT_IMPLEMENTED");

    static result r;
    start("IS_CHANNEL_PINNED", CPS_RPC_ANON, NULL, "\"a1b2c3d4e5f60718293a4b5c6d7e8f90\"", &r);
    run_until(&r.calls, 1);
    assert_string_equal(r.error, "");
    assert_string_equal(r.value, "true");
    result_clear(&r);
    /* Authenticated commands are not reachable anonymously. */
    assert_int_equal(cps_rpc_call(NULL, "PIN", CPS_RPC_ANON, NULL, CALLER, NULL, done, &r), CPS_ENOENT);
    assert_int_equal(r.calls, 0);
}

/* Last: unloading answers what is in flight (a size batch, a PIN queued
** behind it) with ECANCELED, and frees everything (ASan checks). */
static void test_unload_cancels(void **state)
{
    (void)state;
    static result total, pin;
    char q[33], args[64];
    T.sizes_on = true;
    start("GET_TOTAL_SIZE", CPS_RPC_AUTH, KY, NULL, &total);
    snprintf(args, sizeof args, "[\"%s\"]", mkid(q, 'a', 4242));
    start("PIN", CPS_RPC_AUTH, KY, args, &pin);
    /* Until the sizes are being asked. */
    size_t before = T.size_calls;
    uv_timer_t guard;
    bool expired = false;
    uv_timer_init(&T.loop, &guard);
    guard.data = &expired;
    uv_timer_start(&guard, guard_fire, 10000, 0);
    while (T.size_calls == before && !expired) uv_run(&T.loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    uv_close((uv_handle_t *)&guard, guard_closed);
    assert_true(T.size_calls > before);
    cps_plugins_fini();
    run_until(&total.calls, 1);
    run_until(&pin.calls, 1);
    assert_string_equal(total.error, "ECANCELED");
    assert_string_equal(pin.error, "ECANCELED");
    result_clear(&total);
    result_clear(&pin);
    T.sizes_on = false;
}

/* ---- setup -------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(T.dir, sizeof T.dir, "/tmp/cps_pin_XXXXXX");
    if (!mkdtemp(T.dir)) return -1;
    char cfg[128];
    snprintf(cfg, sizeof cfg, "%s/cfg.lua", T.dir);
    FILE *f = fopen(cfg, "w");
    if (!f) return -1;
    fprintf(f,
            "return {\n"
            "    data_dir = \"%s\",\n"
            "    plugins = { \"storage-fs\", \"rpc-pin\" },\n"
            "    [\"storage-fs\"] = { fsync = false },\n"
            "    instance = { default_storage_limit = 52428800 },\n"
            "    [\"rpc-pin\"] = {\n"
            "        max_cached_keys = 2,\n"
            "        limits = { [\"" KL "\"] = { limit = 10485760, plan = \"team\", note = \"a note\" } },\n"
            "    },\n"
            "}\n", T.dir);
    fclose(f);
    char *errors = NULL;
    cps_cfg = cps_config_load(cfg, &errors);
    if (!cps_cfg) { fprintf(stderr, "config: %s\n", errors); free(errors); return -1; }
    if (sodium_init() < 0) return -1;
    uv_loop_init(&T.loop);
    cps_timers_init(&T.loop);
    cps_router_init(&T.loop);
    if (cps_router_add_node("storage:0", NULL) || cps_router_add_node("core:0", NULL) ||
        cps_router_set_role_count("storage", 1) || cps_router_set_role_count("core", 1))
        return -1;
    if (cps_router_register_role(NULL, "storage", "CHANNEL_SIZE", fake_channel_size, NULL))
        return -1;
    uv_timer_init(&T.loop, &T.sizer);
    uv_timer_start(&T.sizer, sizer_tick, 1, 1);
    uv_unref((uv_handle_t *)&T.sizer);
    if (cps_plugin_load_path("storage-fs", TEST_PLUGIN_DIR_FS "/storage-fs.so", NULL) != 0) return -1;
    if (cps_plugin_load_path("rpc-pin", TEST_PLUGIN_DIR_FS "/rpc-pin.so", NULL) != 0) return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cps_plugins_fini();
    sizer_tick(&T.sizer);          /* answer (or, once closed, free) what waits */
    cps_rpc_shutdown();
    cps_router_shutdown();
    uv_close((uv_handle_t *)&T.sizer, NULL);
    uv_run(&T.loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&T.loop);
    cps_plugins_close();
    cps_metrics_free();
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
    cps_timers_init(NULL);
    nftw(T.dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    /* In order, sharing one loaded plugin; the unload test is last. */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pin_unpin_reset),
        cmocka_unit_test(test_replay_and_eviction),
        cmocka_unit_test(test_drive_and_block),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_quota),
        cmocka_unit_test(test_remove_pins),
        cmocka_unit_test(test_concurrent_pins),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_unload_cancels),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
