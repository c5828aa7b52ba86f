/*
** fs_raw.c - the raw view of storage-fs (cps_storage.h raw_*): every entry
** of CryptPad's directory tree as (space, name) -> bytes, for `cpsd migrate`
** (docs/operations.md §9).  Space parsing is pure; the rest runs on pool threads.
*/
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "fs.h"

/* The spaces that map onto one file of a channel or pin log. */
static const struct { const char *space; int which; } FIXED[] = {
    { "channel", F_LOG },            { "meta", F_META },
    { "placeholder", F_PLACEHOLDER }, { "pin", F_PIN },
    { "archive/channel", F_ARCH_LOG }, { "archive/meta", F_ARCH_META },
    { "archive/pin", F_ARCH_PIN },
};
#define NFIXED (sizeof FIXED / sizeof *FIXED)

/* Directories under data/ (and data/archive/) that are not object stores. */
static bool reserved_store(const char *s, bool archived)
{
    if (!strcmp(s, "archive") || !strcmp(s, "pins") || !strcmp(s, "logs")) return true;
    /* blobs and blocks live at the top of the tree, not under data/ */
    if (!archived && (!strcmp(s, "blob") || !strcmp(s, "block"))) return false;
    return archived && !strcmp(s, "datastore");
}

int fs_space_parse(const char *space, fs_space *out)
{
    memset(out, 0, sizeof *out);
    if (!space) return -1;
    for (size_t i = 0; i < NFIXED; i++) {
        if (!strcmp(space, FIXED[i].space)) {
            out->which = FIXED[i].which;
            out->lines = FIXED[i].which != F_PLACEHOLDER;
            return 0;
        }
    }
    const char *store = NULL;
    if (!strncmp(space, "obj/", 4)) store = space + 4;
    else if (!strncmp(space, "archive/obj/", 12)) { store = space + 12; out->archived = true; }
    if (!store || !fs_valid_ns(store) || reserved_store(store, out->archived)) return -1;
    out->which = -1;
    snprintf(out->store, sizeof out->store, "%s", store);
    return 0;
}

bool fs_space_name_ok(const fs_space *sp, const char *name)
{
    switch (sp->which) {
    case F_PIN: case F_ARCH_PIN: return fs_valid_key(name);
    case -1:                     return fs_valid_okey(name);
    default:                     return fs_valid_channel(name);
    }
}

/* The file of entry `name` in space `sp`. */
static int raw_path(char *buf, size_t n, const char *root, const fs_space *sp, const char *name)
{
    if (sp->which < 0) return fs_obj_file(buf, n, root, sp->store, name, sp->archived);
    fs_obj o;
    memset(&o, 0, sizeof o);
    snprintf(o.id, sizeof o.id, "%s", name);
    return fs_path_of(buf, n, root, &o, sp->which);
}

/* The directory holding a space's prefix directories, and the suffix its
** file names carry after the entry name ("" for objects). */
static int space_dir(char *buf, size_t n, const char *root, const fs_space *sp, const char **suffix)
{
    /* Derived from the path of a two-character name "xx": <dir>/xx/xx<suffix>. */
    char p[PATH_MAX];
    const char *probe = "xx";
    fs_obj o;
    memset(&o, 0, sizeof o);
    snprintf(o.id, sizeof o.id, "%s", probe);
    int rc = sp->which < 0 ? fs_obj_file(p, sizeof p, root, sp->store, probe, sp->archived)
                           : fs_path_of(p, sizeof p, root, &o, sp->which);
    if (rc) return -1;
    char *last = strrchr(p, '/');            /* .../xx/xx<suffix> */
    const char *at = last ? strstr(last, "xx") : NULL;
    if (!at) return -1;
    /* a pointer to a constant: the path buffer is about to go */
    static const char *const suffixes[] = { "", ".ndjson", ".metadata.ndjson", ".ndjson.placeholder" };
    *suffix = NULL;
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++)
        if (!strcmp(at + 2, suffixes[i])) *suffix = suffixes[i];
    if (!*suffix) return -1;
    *last = 0;                               /* .../xx */
    char *pre = strrchr(p, '/');
    if (!pre) return -1;
    *pre = 0;
    if ((size_t)snprintf(buf, n, "%s", p) >= n) return -1;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The sorted names of a directory's entries accepted by `keep`, or NULL
** and *n = 0 when it does not exist. */
static char **read_sorted(const char *dir, bool (*keep)(const char *, const struct dirent *, void *),
                          void *ud, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    size_t cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !keep(dir, e, ud)) continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            char **nv = realloc(v, nc * sizeof *nv);
            if (!nv) break;
            v = nv;
            cap = nc;
        }
        if (!(v[*n] = strdup(e->d_name))) break;
        (*n)++;
    }
    closedir(d);
    if (*n) qsort(v, *n, sizeof *v, cmp_str);
    return v;
}

static void free_names(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

static bool is_dir(const char *dir, const struct dirent *e)
{
    if (e->d_type == DT_DIR) return true;
    if (e->d_type != DT_UNKNOWN) return false;
    char p[PATH_MAX];
    struct stat st;
    return (size_t)snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < sizeof p && stat(p, &st) == 0 &&
           S_ISDIR(st.st_mode);
}

static bool keep_prefix_dir(const char *dir, const struct dirent *e, void *ud)
{
    (void)ud;
    return strlen(e->d_name) == 2 && is_dir(dir, e);
}

static bool keep_any(const char *dir, const struct dirent *e, void *ud)
{
    (void)dir; (void)e; (void)ud;
    return true;
}

/* Appends `name` to the NUL-separated list in r->out. */
static int put_name(fs_req *r, const char *name, size_t *cap)
{
    size_t l = strlen(name) + 1;
    if (r->outlen + l + 1 > *cap) {
        size_t nc = (*cap ? *cap * 2 : 4096) + l;
        char *nb = realloc(r->out, nc);
        if (!nb) { errno = ENOMEM; return -1; }
        r->out = nb;
        *cap = nc;
    }
    memcpy(r->out + r->outlen, name, l);
    r->outlen += l;
    r->size++;
    return 0;
}

/* The entries of `sp` after r->in (may be ""), at most r->max, in byte
** order.  A prefix directory is named by its entries' first two
** characters, so walking the sorted directories in turn keeps the order. */
static int list_space(const char *root, const fs_space *sp, fs_req *r)
{
    char dir[PATH_MAX];
    const char *suffix;
    if (space_dir(dir, sizeof dir, root, sp, &suffix)) { errno = ENAMETOOLONG; return -1; }
    const char *after = r->in ? r->in : "";
    size_t max = r->max ? r->max : 256, cap = 0, ndirs = 0;
    r->size = 0;
    r->eof = true;
    char **dirs = read_sorted(dir, keep_prefix_dir, NULL, &ndirs);
    size_t sl = strlen(suffix);
    int rc = 0;
    for (size_t i = 0; i < ndirs && rc == 0; i++) {
        if (*after && strncmp(dirs[i], after, 2) < 0) continue;
        if (r->size >= max) { r->eof = false; break; }
        char sub[PATH_MAX];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, dirs[i]) >= sizeof sub) continue;
        size_t nf = 0;
        char **files = read_sorted(sub, keep_any, NULL, &nf);
        /* Names without their suffix; sorting the stripped names keeps
        ** "a.metadata" after "a" the same way for every space. */
        for (size_t k = 0; k < nf; k++) {
            size_t fl = strlen(files[k]);
            if (fl <= sl || strcmp(files[k] + fl - sl, suffix) != 0) { files[k][0] = 0; continue; }
            files[k][fl - sl] = 0;
        }
        if (nf) qsort(files, nf, sizeof *files, cmp_str);
        for (size_t k = 0; k < nf && rc == 0; k++) {
            const char *name = files[k];
            if (!*name || strncmp(name, dirs[i], 2) != 0 || !fs_space_name_ok(sp, name)) continue;
            if (strcmp(name, after) <= 0) continue;
            if (r->size >= max) { r->eof = false; break; }
            rc = put_name(r, name, &cap);
        }
        free_names(files, nf);
    }
    free_names(dirs, ndirs);
    if (rc == 0 && !r->out && !(r->out = calloc(1, 1))) { errno = ENOMEM; return -1; }
    return rc;
}

static bool space_has_entries(const char *root, const fs_space *sp)
{
    fs_req probe;
    memset(&probe, 0, sizeof probe);
    probe.max = 1;
    bool has = list_space(root, sp, &probe) == 0 && probe.size > 0;
    free(probe.out);
    return has;
}

static bool keep_store_dir(const char *dir, const struct dirent *e, void *ud)
{
    return fs_valid_ns(e->d_name) && !reserved_store(e->d_name, *(bool *)ud) && is_dir(dir, e);
}

/* Every space with an entry: the fixed ones, then the object stores found
** under data/, data/archive/ and at the top (blob, block). */
static int list_spaces(const char *root, fs_req *r)
{
    size_t cap = 0;
    r->size = 0;
    r->eof = true;
    fs_space sp;
    for (size_t i = 0; i < NFIXED; i++) {
        fs_space_parse(FIXED[i].space, &sp);
        if (space_has_entries(root, &sp) && put_name(r, FIXED[i].space, &cap)) return -1;
    }
    for (int archived = 0; archived < 2; archived++) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, archived ? "%s/data/archive" : "%s/data", root);
        bool arch = archived;
        size_t n = 0;
        char **stores = read_sorted(dir, keep_store_dir, &arch, &n);
        /* blob and block sit at the top of the live tree */
        const char *top[] = { "blob", "block" };
        for (size_t t = 0; !archived && t < 2; t++) {
            char p[PATH_MAX];
            struct stat st;
            snprintf(p, sizeof p, "%s/%s", root, top[t]);
            if (stat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                char **nv = realloc(stores, (n + 1) * sizeof *nv);
                if (!nv) break;
                stores = nv;
                if (!(stores[n] = strdup(top[t]))) break;
                n++;
            }
        }
        if (n) qsort(stores, n, sizeof *stores, cmp_str);
        for (size_t i = 0; i < n; i++) {
            if (i && !strcmp(stores[i], stores[i - 1])) continue;
            char space[64];
            snprintf(space, sizeof space, "%s%s", archived ? "archive/obj/" : "obj/", stores[i]);
            if (fs_space_parse(space, &sp) == 0 && space_has_entries(root, &sp) && put_name(r, space, &cap)) {
                free_names(stores, n);
                return -1;
            }
        }
        free_names(stores, n);
    }
    if (!r->out && !(r->out = calloc(1, 1))) { errno = ENOMEM; return -1; }
    return 0;
}

/* The size of a line entry: up to its last '\n' (a torn tail is left out). */
static int line_size(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); errno = e; return -1; }
    uint64_t end = (uint64_t)st.st_size;
    char buf[8192];
    *size = 0;
    while (end > 0) {
        size_t want = end > sizeof buf ? sizeof buf : (size_t)end;
        ssize_t got = fs_pread_full(fd, buf, want, end - want);
        if (got != (ssize_t)want) { int e = got < 0 ? errno : EIO; close(fd); errno = e; return -1; }
        char *nl = memrchr(buf, '\n', want);
        if (nl) { *size = end - want + (uint64_t)(nl - buf) + 1; break; }
        end -= want;
    }
    close(fd);
    return 0;
}

static int raw_write(const char *path, const fs_space *sp, fs_req *r, bool use_fsync)
{
    /* whole lines only; an empty write at 0 creates an empty entry */
    if (sp->lines && (r->inlen ? r->in[r->inlen - 1] != '\n' : r->arg != 0)) { r->status = CPS_EINVAL; return 0; }
    if (fs_mkdir_parents(path) != 0) return -1;
    int fd;
    if (r->arg == 0) {
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    } else {
        fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT) { r->status = CPS_EINVAL; return 0; }
    }
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) goto fail;
    if ((uint64_t)st.st_size != r->arg) { close(fd); r->status = CPS_EINVAL; return 0; }
    if (fs_write_all(fd, r->in, r->inlen) != 0 || (use_fsync && fdatasync(fd) != 0)) goto fail;
    r->size = r->arg + r->inlen;
    return close(fd);
fail:;
    int e = errno;
    close(fd);
    errno = e;
    return -1;
}

int fs_raw_run(const char *root, bool use_fsync, fs_obj *o, fs_req *r)
{
    if (r->op == OP_RAW_SPACES) return list_spaces(root, r);
    fs_space sp;
    if (fs_space_parse(o->ns, &sp)) { r->status = CPS_EINVAL; return 0; }
    if (r->op == OP_RAW_LIST) return list_space(root, &sp, r);
    char p[PATH_MAX];
    if (raw_path(p, sizeof p, root, &sp, o->id)) { errno = ENAMETOOLONG; return -1; }
    switch (r->op) {
    case OP_RAW_SIZE: {
        if (sp.lines) return line_size(p, &r->size);
        struct stat st;
        if (stat(p, &st) != 0) return -1;
        r->size = (uint64_t)st.st_size;
        return 0;
    }
    case OP_RAW_READ:
        return sp.lines ? fs_read_lines(p, r) : fs_read_bytes(p, r);
    case OP_RAW_WRITE:
        return raw_write(p, &sp, r, use_fsync);
    }
    errno = EINVAL;
    return -1;
}
