/*
** migrate.c - `cpsd migrate --from NAME[:ARG] --to NAME[:ARG]`: copies every
** entry of one storage backend into another through the raw view of
** cps_storage.h, one entry and one chunk at a time (bounded memory whatever
** the store's size), then verifies counts and checksums (docs/operations.md §9).
** Re-running after an interruption resumes: entries already as long as
** their source are skipped, shorter ones continue where they stopped.
*/
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "host.h"

#define CHUNK (1024 * 1024)       /* bytes per read, and so per write */
#define PAGE 256                  /* names per list request */

typedef struct side {
    const cps_storage_backend *b;
    char name[32];                /* backend name: "fs", "pg" */
    char *arg;                    /* after the ':' (a directory, a conninfo), or NULL */
} side;

/* One pass (copy, then verify) walks spaces -> pages of names -> entries. */
enum phase { COPY, VERIFY };

typedef struct {
    uint64_t entries, bytes, skipped, resumed;
} tally;

static struct {
    uv_loop_t loop;
    uv_timer_t progress;
    side from, to;
    int phase;
    bool failed, done;
    /* the walk */
    char **spaces;
    size_t nspaces, si;
    char **page;                  /* names of the current page (owned) */
    size_t npage, pi;
    bool page_end;
    char after[256];
    /* the entry being copied or verified */
    uint64_t src_size, dst_size, off;
    bool dst_missing;
    int retries;
    crypto_generichash_state hs, hd;
    bool hashing_dst;
    /* figures */
    tally copy, verify;
    uint64_t mismatches, dst_count, src_count;
    uint64_t started_ns;
} M;   /* the migration singleton */

static void next_entry(void);
static void next_page(void);
static void next_space(void);

static void fail(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("cpsd migrate: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    M.failed = true;
    M.done = true;
    uv_stop(&M.loop);
}

static const char *space_now(void) { return M.si < M.nspaces ? M.spaces[M.si] : "-"; }
static const char *name_now(void) { return M.pi < M.npage ? M.page[M.pi] : "-"; }

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static char **copy_names(const char *const *v, size_t n)
{
    char **out = calloc(n ? n : 1, sizeof *out);
    for (size_t i = 0; out && i < n; i++)
        if (!(out[i] = strdup(v[i]))) { free_names(out, i); return NULL; }
    return out;
}

static void on_progress(uv_timer_t *t)
{
    (void)t;
    const tally *x = M.phase == COPY ? &M.copy : &M.verify;
    fprintf(stderr, "cpsd migrate: %s %s: %llu entries, %.1f MiB%s\n",
            M.phase == COPY ? "copying" : "verifying", space_now(), (unsigned long long)x->entries,
            (double)x->bytes / (1024.0 * 1024.0), M.phase == COPY && M.copy.skipped ? " (some already there)" : "");
}

/* ---- copying one entry ----------------------------------------------- */

static void copy_read(void);

static void copy_written(void *ud, int status, uint64_t size)
{
    (void)ud;
    if (status != CPS_OK)
        return fail("writing %s %s at %llu to %s: %s", space_now(), name_now(),
                    (unsigned long long)M.off, M.to.name, cps_errname(status));
    M.off = size;
    copy_read();
}

static void copy_chunk(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)ud;
    if (status != CPS_OK)
        return fail("reading %s %s at %llu from %s: %s", space_now(), name_now(),
                    (unsigned long long)M.off, M.from.name, cps_errname(status));
    if (len == 0) {
        if (!eof) return fail("reading %s %s from %s: no progress at %llu", space_now(), name_now(),
                              M.from.name, (unsigned long long)M.off);
        M.copy.entries++;
        M.pi++;
        return next_entry();
    }
    M.copy.bytes += len;
    uint64_t at = M.off;
    (void)next;
    int rc = M.to.b->raw_write(M.to.b->state, space_now(), name_now(), at, data, len, copy_written, NULL);
    if (rc) fail("writing %s %s to %s: %s", space_now(), name_now(), M.to.name, cps_errname(rc));
}

static void copy_read(void)
{
    if (M.off >= M.src_size && M.off > 0) {        /* done (an empty entry was written at 0) */
        M.copy.entries++;
        M.pi++;
        return next_entry();
    }
    int rc = M.from.b->raw_read(M.from.b->state, space_now(), name_now(), M.off, CHUNK, copy_chunk, NULL);
    if (rc) fail("reading %s %s from %s: %s", space_now(), name_now(), M.from.name, cps_errname(rc));
}

static void copy_empty_written(void *ud, int status, uint64_t size)
{
    (void)ud;
    (void)size;
    if (status != CPS_OK)
        return fail("creating %s %s in %s: %s", space_now(), name_now(), M.to.name, cps_errname(status));
    M.copy.entries++;
    M.pi++;
    next_entry();
}

/* Both sizes known: skip, resume or start over. */
static void copy_decide(void)
{
    if (!M.dst_missing && M.dst_size == M.src_size) {
        M.copy.skipped++;
        M.copy.entries++;
        M.pi++;
        return next_entry();
    }
    M.off = 0;
    if (!M.dst_missing && M.dst_size < M.src_size && M.retries == 0) {
        M.off = M.dst_size;        /* an interrupted copy: the prefix is checked by the verify pass */
        M.copy.resumed++;
    }
    if (M.src_size == 0) {
        int rc = M.to.b->raw_write(M.to.b->state, space_now(), name_now(), 0, "", 0, copy_empty_written, NULL);
        if (rc) fail("creating %s %s in %s: %s", space_now(), name_now(), M.to.name, cps_errname(rc));
        return;
    }
    copy_read();
}

/* ---- verifying one entry: both streams hashed in turn ----------------- */

static void verify_read(void);

static void verify_chunk(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)ud;
    const side *s = M.hashing_dst ? &M.to : &M.from;
    if (status != CPS_OK)
        return fail("verifying %s %s in %s: %s", space_now(), name_now(), s->name, cps_errname(status));
    crypto_generichash_update(M.hashing_dst ? &M.hd : &M.hs, (const unsigned char *)data, len);
    M.verify.bytes += len;
    M.off = next;
    if (eof || len == 0) {
        if (!M.hashing_dst) {
            M.hashing_dst = true;
            M.off = 0;
            return verify_read();
        }
        unsigned char a[32], b[32];
        crypto_generichash_final(&M.hs, a, sizeof a);
        crypto_generichash_final(&M.hd, b, sizeof b);
        if (sodium_memcmp(a, b, sizeof a) != 0) {
            if (M.retries++ == 0) {
                /* copy it again from the start, then look once more */
                fprintf(stderr, "cpsd migrate: %s %s differs in %s: copying it again\n", space_now(),
                        name_now(), M.to.name);
                M.phase = COPY;
                M.dst_missing = true;
                M.off = 0;
                return copy_decide();
            }
            M.mismatches++;
            fprintf(stderr, "cpsd migrate: %s %s: checksums differ between %s and %s\n", space_now(),
                    name_now(), M.from.name, M.to.name);
        }
        M.verify.entries++;
        M.pi++;
        return next_entry();
    }
    verify_read();
}

static void verify_read(void)
{
    const side *s = M.hashing_dst ? &M.to : &M.from;
    int rc = s->b->raw_read(s->b->state, space_now(), name_now(), M.off, CHUNK, verify_chunk, NULL);
    if (rc) fail("verifying %s %s in %s: %s", space_now(), name_now(), s->name, cps_errname(rc));
}

/* ---- the walk --------------------------------------------------------- */

static void got_dst_size(void *ud, int status, uint64_t size)
{
    (void)ud;
    if (status != CPS_OK && status != CPS_ENOENT)
        return fail("size of %s %s in %s: %s", space_now(), name_now(), M.to.name, cps_errname(status));
    M.dst_missing = status == CPS_ENOENT;
    M.dst_size = M.dst_missing ? 0 : size;
    if (M.phase == COPY) return copy_decide();
    if (M.dst_missing || M.dst_size != M.src_size) {
        if (M.retries++ == 0) {
            fprintf(stderr, "cpsd migrate: %s %s is missing or short in %s: copying it again\n",
                    space_now(), name_now(), M.to.name);
            M.phase = COPY;
            return copy_decide();
        }
        M.mismatches++;
        fprintf(stderr, "cpsd migrate: %s %s: %llu bytes in %s, %llu in %s\n", space_now(), name_now(),
                (unsigned long long)M.src_size, M.from.name, (unsigned long long)M.dst_size, M.to.name);
        M.verify.entries++;
        M.pi++;
        return next_entry();
    }
    crypto_generichash_init(&M.hs, NULL, 0, 32);
    crypto_generichash_init(&M.hd, NULL, 0, 32);
    M.hashing_dst = false;
    M.off = 0;
    verify_read();
}

static void got_src_size(void *ud, int status, uint64_t size)
{
    (void)ud;
    if (status == CPS_ENOENT) {            /* gone since it was listed */
        M.pi++;
        return next_entry();
    }
    if (status != CPS_OK)
        return fail("size of %s %s in %s: %s", space_now(), name_now(), M.from.name, cps_errname(status));
    M.src_size = size;
    int rc = M.to.b->raw_size(M.to.b->state, space_now(), name_now(), got_dst_size, NULL);
    if (rc) fail("size of %s %s in %s: %s", space_now(), name_now(), M.to.name, cps_errname(rc));
}

static void next_entry(void)
{
    if (M.done) return;
    if (M.retries > 0 && M.phase == COPY) {
        /* the verify pass found this entry different and copied it again
        ** (copy_decide from the verify callbacks): verify it once more */
        M.pi--;
        M.copy.entries--;
        M.phase = VERIFY;
        int rc = M.from.b->raw_size(M.from.b->state, space_now(), name_now(), got_src_size, NULL);
        if (rc) fail("size of %s %s in %s: %s", space_now(), name_now(), M.from.name, cps_errname(rc));
        return;
    }
    M.retries = 0;
    if (M.pi >= M.npage) return next_page();
    int rc = M.from.b->raw_size(M.from.b->state, space_now(), name_now(), got_src_size, NULL);
    if (rc) fail("size of %s %s in %s: %s", space_now(), name_now(), M.from.name, cps_errname(rc));
}

static void got_page(void *ud, int status, const char *const *names, size_t n, bool end)
{
    (void)ud;
    if (status != CPS_OK) return fail("listing %s in %s: %s", space_now(), M.from.name, cps_errname(status));
    free_names(M.page, M.npage);
    M.page = copy_names(names, n);
    if (!M.page) return fail("out of memory");
    M.npage = n;
    M.pi = 0;
    M.page_end = end;
    M.src_count += n;
    if (n) snprintf(M.after, sizeof M.after, "%s", names[n - 1]);
    next_entry();
}

static void next_page(void)
{
    if (M.page && M.page_end) {          /* this space is done */
        free_names(M.page, M.npage);
        M.page = NULL;
        M.npage = 0;
        M.si++;
        return next_space();
    }
    int rc = M.from.b->raw_list(M.from.b->state, space_now(), M.after, PAGE, got_page, NULL);
    if (rc) fail("listing %s in %s: %s", space_now(), M.from.name, cps_errname(rc));
}

/* Counting the destination's entries of a space (the verify pass). */
static void counted(void *ud, int status, const char *const *names, size_t n, bool end);

static void count_dst(void)
{
    int rc = M.to.b->raw_list(M.to.b->state, space_now(), M.after, PAGE, counted, NULL);
    if (rc) fail("listing %s in %s: %s", space_now(), M.to.name, cps_errname(rc));
}

static void counted(void *ud, int status, const char *const *names, size_t n, bool end)
{
    (void)ud;
    if (status != CPS_OK) return fail("listing %s in %s: %s", space_now(), M.to.name, cps_errname(status));
    M.dst_count += n;
    if (n) snprintf(M.after, sizeof M.after, "%s", names[n - 1]);
    if (!end) return count_dst();
    M.after[0] = 0;
    next_page();
}

static void start_pass(int phase);

static void next_space(void)
{
    if (M.done) return;
    if (M.si >= M.nspaces) {
        if (M.phase == COPY) return start_pass(VERIFY);
        M.done = true;
        uv_stop(&M.loop);
        return;
    }
    M.after[0] = 0;
    M.page_end = false;
    if (M.phase == VERIFY) return count_dst();
    next_page();
}

static void got_spaces(void *ud, int status, const char *const *names, size_t n, bool end)
{
    (void)ud;
    (void)end;
    if (status != CPS_OK) return fail("listing the spaces of %s: %s", M.from.name, cps_errname(status));
    free_names(M.spaces, M.nspaces);
    M.spaces = copy_names(names, n);
    if (!M.spaces) return fail("out of memory");
    M.nspaces = n;
    M.si = 0;
    next_space();
}

static void start_pass(int phase)
{
    M.phase = phase;
    M.src_count = M.dst_count = 0;
    int rc = M.from.b->raw_spaces(M.from.b->state, got_spaces, NULL);
    if (rc) fail("listing the spaces of %s: %s", M.from.name, cps_errname(rc));
}

/* ---- command line and set-up ------------------------------------------ */

static int parse_side(const char *spec, side *s)
{
    const char *colon = strchr(spec, ':');
    size_t n = colon ? (size_t)(colon - spec) : strlen(spec);
    if (n == 0 || n >= sizeof s->name) return -1;
    for (size_t i = 0; i < n; i++)
        if (spec[i] < 'a' || spec[i] > 'z') return -1;
    memcpy(s->name, spec, n);
    s->name[n] = 0;
    s->arg = colon ? strdup(colon + 1) : NULL;
    return 0;
}

static const char migrate_usage[] =
    "usage: cpsd migrate --from NAME[:ARG] --to NAME[:ARG] [--config FILE]\n"
    "  NAME is a storage backend (plugin storage-NAME); ARG is its place:\n"
    "  fs:DIR (a data directory in CryptPad's layout), pg[:CONNINFO] (libpq's\n"
    "  conninfo; without it, PGHOST, PGDATABASE... from the environment).\n"
    "  Stop the server first.  Re-running resumes an interrupted migration.\n";

/* The configuration of a migration run: only the two backends. */
static int configure(const char *config)
{
    char *errors = NULL;
    cps_cfg = cps_config_load(config, &errors);
    if (!cps_cfg) {
        fprintf(stderr, "cpsd migrate: configuration errors:\n%s", errors ? errors : "(unknown)\n");
        free(errors);
        return -1;
    }
    json_t *root = cps_cfg->root;
    json_object_set_new(root, "nodes", json_array());
    json_object_set_new(root, "lua_scripts", json_array());
    json_object_del(root, "topology");
    json_t *plugins = json_array();
    const side *sides[2] = { &M.from, &M.to };
    for (int i = 0; i < 2; i++) {
        const side *s = sides[i];
        json_array_append_new(plugins, json_sprintf("storage-%s", s->name));
        if (!s->arg) continue;
        if (!strcmp(s->name, "fs")) {
            json_object_set_new(root, "data_dir", json_string(s->arg));
        } else {
            /* other backends read a connection string from their section */
            char section[48];
            snprintf(section, sizeof section, "storage_%s", s->name);
            json_t *sec = json_object_get(root, section);
            if (!json_is_object(sec)) json_object_set_new(root, section, sec = json_object());
            json_object_set_new(sec, "conninfo", json_string(s->arg));
        }
    }
    json_object_set_new(root, "plugins", plugins);
    return 0;
}

int cps_migrate_main(int argc, char **argv)
{
    const char *from = NULL, *to = NULL, *config = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(argv[i], "--to") && i + 1 < argc) to = argv[++i];
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { fputs(migrate_usage, stdout); return 0; }
        else { fprintf(stderr, "cpsd migrate: unknown argument '%s'\n%s", argv[i], migrate_usage); return 2; }
    }
    memset(&M, 0, sizeof M);
    if (!from || !to || parse_side(from, &M.from) || parse_side(to, &M.to)) {
        fputs(migrate_usage, stderr);
        free(M.from.arg);
        free(M.to.arg);
        return 2;
    }
    int rc = 1;
    if (!strcmp(M.from.name, M.to.name)) {
        fprintf(stderr, "cpsd migrate: --from and --to are both '%s': give two different backends\n", M.from.name);
        rc = 2;
        goto args;
    }
    if (!strcmp(M.from.name, "fs") && !M.from.arg) {
        fprintf(stderr, "cpsd migrate: --from fs needs a directory: fs:DIR\n");
        rc = 2;
        goto args;
    }
    if (!strcmp(M.to.name, "fs") && !M.to.arg) {
        fprintf(stderr, "cpsd migrate: --to fs needs a directory: fs:DIR\n");
        rc = 2;
        goto args;
    }
    if (sodium_init() < 0 || configure(config)) goto args;
    uv_loop_init(&M.loop);
    cps_timers_init(&M.loop);
    cps_router_init(&M.loop);
    const side *sides[2] = { &M.from, &M.to };
    bool loaded = true;
    for (int i = 0; i < 2 && loaded; i++) {
        char plugin[48];
        snprintf(plugin, sizeof plugin, "storage-%s", sides[i]->name);
        if (cps_plugin_load(plugin, NULL, true)) loaded = false;
    }
    if (loaded) {
        M.from.b = cps_storage_get(M.from.name);
        M.to.b = cps_storage_get(M.to.name);
        if (!M.from.b || !M.to.b) {
            fprintf(stderr, "cpsd migrate: backend '%s' not registered by its plugin\n",
                    M.from.b ? M.to.name : M.from.name);
        } else if (!CPS_STORAGE_HAS(M.from.b, raw_write) || !CPS_STORAGE_HAS(M.to.b, raw_write) ||
                   !M.from.b->raw_read || !M.to.b->raw_write) {
            fprintf(stderr, "cpsd migrate: backend '%s' has no raw view (built against ABI 2.0)\n",
                    CPS_STORAGE_HAS(M.from.b, raw_write) ? M.to.name : M.from.name);
        } else {
            M.started_ns = uv_hrtime();
            uv_timer_init(&M.loop, &M.progress);
            uv_timer_start(&M.progress, on_progress, 1000, 1000);
            fprintf(stderr, "cpsd migrate: from %s to %s\n", from, M.to.name);
            start_pass(COPY);
            if (!M.done) uv_run(&M.loop, UV_RUN_DEFAULT);
            uv_timer_stop(&M.progress);
            uv_close((uv_handle_t *)&M.progress, NULL);
            double secs = (double)(uv_hrtime() - M.started_ns) / 1e9;
            if (!M.failed) {
                printf("copied %llu entries (%.1f MiB; %llu already there, %llu resumed); "
                       "verified %llu entries (%.1f MiB read) in %.1f s\n",
                       (unsigned long long)M.copy.entries, (double)M.copy.bytes / (1024.0 * 1024.0),
                       (unsigned long long)M.copy.skipped, (unsigned long long)M.copy.resumed,
                       (unsigned long long)M.verify.entries, (double)M.verify.bytes / (1024.0 * 1024.0), secs);
                if (M.mismatches) {
                    printf("%llu entries differ: see above\n", (unsigned long long)M.mismatches);
                } else if (M.dst_count != M.src_count) {
                    printf("the destination has %llu entries in these spaces, the source %llu: "
                           "it held data before the migration\n",
                           (unsigned long long)M.dst_count, (unsigned long long)M.src_count);
                } else {
                    printf("counts and checksums equal\n");
                    rc = 0;
                }
            }
        }
    }
    free_names(M.spaces, M.nspaces);
    free_names(M.page, M.npage);
    cps_plugins_fini();
    cps_timers_forget(NULL);
    cps_watches_forget(NULL);
    cps_router_shutdown();
    uv_run(&M.loop, UV_RUN_DEFAULT);
    cps_plugins_close();
    uv_loop_close(&M.loop);
    cps_metrics_free();
    cps_errors_reset();
    cps_config_free(cps_cfg);
    cps_cfg = NULL;
args:
    free(M.from.arg);
    free(M.to.arg);
    return rc;
}
