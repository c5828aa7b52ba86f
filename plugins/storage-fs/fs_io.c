/*
** fs_io.c - the blocking half of storage-fs: every file operation of the
** backend in CryptPad's on-disk layout (docs/protocol/storage.md 1-5, 7, 10, 11).
** Runs on thread-pool threads only; results go back in the request.
*/
#define _GNU_SOURCE   /* memrchr */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include "fs.h"

#define COPY_BUF (64 * 1024)
#define READ_MIN 4096   /* first read when the caller gives max = 0 */

int fs_path_of(char *buf, size_t n, const char *root, const fs_obj *o, int which)
{
    const char *id = o->id;
    int w;
    switch (which) {
    case F_LOG:         w = snprintf(buf, n, "%s/datastore/%.2s/%s.ndjson", root, id, id); break;
    case F_META:        w = snprintf(buf, n, "%s/datastore/%.2s/%s.metadata.ndjson", root, id, id); break;
    case F_OFFSET:      w = snprintf(buf, n, "%s/datastore/%.2s/%s.ndjson.offset", root, id, id); break;
    case F_PLACEHOLDER: w = snprintf(buf, n, "%s/datastore/%.2s/%s.ndjson.placeholder", root, id, id); break;
    case F_TEMP:        w = snprintf(buf, n, "%s/datastore/%.2s/%s.ndjson.temp", root, id, id); break;
    case F_META_TEMP:   w = snprintf(buf, n, "%s/datastore/%.2s/%s.metadata.ndjson.temp", root, id, id); break;
    case F_ARCH_LOG:    w = snprintf(buf, n, "%s/data/archive/datastore/%.2s/%s.ndjson", root, id, id); break;
    case F_ARCH_META:   w = snprintf(buf, n, "%s/data/archive/datastore/%.2s/%s.metadata.ndjson", root, id, id); break;
    case F_PIN:         w = snprintf(buf, n, "%s/data/pins/%.2s/%s.ndjson", root, id, id); break;
    case F_ARCH_PIN:    w = snprintf(buf, n, "%s/data/archive/pins/%.2s/%s.ndjson", root, id, id); break;
    case F_REC:         w = snprintf(buf, n, "%s/data/%s/%.2s/%s", root, o->ns, id, id); break;
    /* Record keys have no '.', so no key can name another key's temp file. */
    case F_REC_TEMP:    w = snprintf(buf, n, "%s/data/%s/%.2s/%s.temp", root, o->ns, id, id); break;
    default:            w = -1;
    }
    if (w < 0 || (size_t)w >= n) { errno = ENAMETOOLONG; return -1; }
    return 0;
}

/* docs/protocol/storage.md 1, 4-6: blobs and login blocks sit at the top of the data
** directory, staged uploads and other stores under data/, as CryptPad's
** blobPath, blockPath, blobStagingPath and archivePath place them.  Two
** stores are flat (no prefix directory): CryptPad's decree log is
** data/decrees/decree.ndjson, the uploaded logo <data_dir>/logo/logo.<ext>
** (where /api/logo looks). */
int fs_store_dir(char *buf, size_t n, const char *root, const char *store, bool archived, bool *flat)
{
    int w;
    *flat = false;
    if (archived) w = snprintf(buf, n, "%s/data/archive/%s", root, store);
    else if (!strcmp(store, "decrees")) { *flat = true; w = snprintf(buf, n, "%s/data/decrees", root); }
    else if (!strcmp(store, "logo")) { *flat = true; w = snprintf(buf, n, "%s/logo", root); }
    else if (!strcmp(store, "blob") || !strcmp(store, "block")) w = snprintf(buf, n, "%s/%s", root, store);
    else w = snprintf(buf, n, "%s/data/%s", root, store);
    if (w < 0 || (size_t)w >= n) { errno = ENAMETOOLONG; return -1; }
    return 0;
}

int fs_obj_file(char *buf, size_t n, const char *root, const char *store, const char *key, bool archived)
{
    char dir[PATH_MAX];
    bool flat;
    if (fs_store_dir(dir, sizeof dir, root, store, archived, &flat)) return -1;
    int w = flat ? snprintf(buf, n, "%s/%s", dir, key) : snprintf(buf, n, "%s/%.2s/%s", dir, key, key);
    if (w < 0 || (size_t)w >= n) { errno = ENAMETOOLONG; return -1; }
    return 0;
}

/* mkdir -p of the directory holding `file`. */
int fs_mkdir_parents(const char *file)
{
    char p[PATH_MAX];
    size_t n = strlen(file);
    if (n >= sizeof p) { errno = ENAMETOOLONG; return -1; }
    memcpy(p, file, n + 1);
    char *slash = strrchr(p, '/');
    if (!slash || slash == p) return 0;
    *slash = 0;
    for (char *s = p + 1; ; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0755) != 0 && errno != EEXIST) return -1;
            *s = c;
            if (!c) break;
        }
    }
    return 0;
}

/* open(2) with O_CREAT that creates missing directories on demand: the
** common case (the prefix directory exists) costs one syscall. */
static int open_create(const char *path, int flags)
{
    int fd = open(path, flags | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && errno == ENOENT) {
        if (fs_mkdir_parents(path) != 0) return -1;
        fd = open(path, flags | O_CREAT | O_CLOEXEC, 0644);
    }
    return fd;
}

int fs_write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Reads exactly len bytes at off unless the file ends first; returns the
** count read or -1. */
ssize_t fs_pread_full(int fd, char *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int sync_fd(int fd, bool use_fsync) { return use_fsync ? fdatasync(fd) : 0; }

/* A whole small file, NUL-terminated. */
static int read_file(const char *path, char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { close(fd); return -1; }
    size_t cap = (size_t)st.st_size;
    char *buf = malloc(cap + 1);
    if (!buf) { close(fd); errno = ENOMEM; return -1; }
    ssize_t n = fs_pread_full(fd, buf, cap, 0);
    int e = errno;
    close(fd);
    if (n < 0) { free(buf); errno = e; return -1; }
    buf[n] = 0;
    *out = buf;
    *outlen = (size_t)n;
    return 0;
}

/* Replace `path` atomically: readers see the old or the new content. */
static int write_atomic(const char *path, const char *tmp, const char *data, size_t len, bool use_fsync)
{
    int fd = open_create(tmp, O_WRONLY | O_TRUNC);
    if (fd < 0) return -1;
    if (fs_write_all(fd, data, len) != 0 || sync_fd(fd, use_fsync) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return 0;
}

/* Copies [from, end of file) of `in` into the new file `tmp`. */
/* Writes bytes [0, keep) and [from, end of file) of `in` to `tmp`: a whole
** copy (0, 0), a trim (0, from) or a cut of one span (keep < from). */
static int copy_parts(int in, uint64_t keep, uint64_t from, const char *tmp, bool use_fsync)
{
    int out = open_create(tmp, O_WRONLY | O_TRUNC);
    if (out < 0) return -1;
    char *buf = malloc(COPY_BUF);   /* not on the stack: pool threads have small ones */
    if (!buf) { close(out); unlink(tmp); errno = ENOMEM; return -1; }
    int rc = 0;
    for (uint64_t off = keep ? 0 : from, end = keep ? keep : UINT64_MAX; ; ) {
        size_t want = end - off < COPY_BUF ? (size_t)(end - off) : COPY_BUF;
        ssize_t n = want ? fs_pread_full(in, buf, want, off) : 0;
        if (n < 0 || (n > 0 && fs_write_all(out, buf, (size_t)n) != 0)) { rc = -1; break; }
        off += (uint64_t)(n > 0 ? n : 0);
        if (n == 0 || off >= end) {
            if (end == UINT64_MAX) break;
            off = from;             /* the kept head is done: on to the tail */
            end = UINT64_MAX;
        }
    }
    if (rc == 0 && sync_fd(out, use_fsync) != 0) rc = -1;
    int e = errno;
    free(buf);
    if (close(out) != 0 && rc == 0) { rc = -1; e = errno; }
    if (rc != 0) { unlink(tmp); errno = e; }
    return rc;
}

/* Copies the file `src` over `dst` (through a temporary file beside it, so
** `dst` is never half-written).  Fails with ENOENT if src does not exist. */
static int copy_file(const char *src, const char *dst, bool use_fsync)
{
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.temp", dst) >= (int)sizeof tmp) { errno = ENAMETOOLONG; return -1; }
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) return -1;
    int rc = copy_parts(in, 0, 0, tmp, use_fsync);
    int e = errno;
    close(in);
    if (rc == 0 && rename(tmp, dst) != 0) { e = errno; unlink(tmp); rc = -1; }
    errno = e;
    return rc;
}

/* rename(2), creating the target directory, and copying across file
** systems (the archive may be mounted elsewhere). */
static int move_file(const char *src, const char *dst, bool use_fsync)
{
    if (rename(src, dst) == 0) return 0;
    if (errno == ENOENT) {
        struct stat st;
        if (stat(src, &st) != 0) return -1;          /* no source: ENOENT */
        if (fs_mkdir_parents(dst) != 0) return -1;
        if (rename(src, dst) == 0) return 0;
    }
    if (errno != EXDEV) return -1;
    if (copy_file(src, dst, use_fsync) != 0) return -1;
    return unlink(src);
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int unlink_quiet(const char *path) { return unlink(path) != 0 && errno != ENOENT ? -1 : 0; }

/* Cuts a torn last line (a crash mid-write): the log must end in '\n'.
** Returns 0 (bytes cut in *cut) or -1; a missing log is fine. */
static int repair(const char *path, uint64_t *cut)
{
    *cut = 0;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : -1;
    struct stat st;
    char last;
    int rc = 0;
    if (fstat(fd, &st) != 0) rc = -1;
    else if (st.st_size > 0) {
        uint64_t size = (uint64_t)st.st_size;
        if (fs_pread_full(fd, &last, 1, size - 1) != 1) rc = -1;
        else if (last != '\n') {
            /* Walk back block by block to the last newline. */
            char *buf = malloc(COPY_BUF);
            uint64_t keep = 0, end = size;
            if (!buf) { errno = ENOMEM; rc = -1; }
            while (buf && end > 0) {
                uint64_t start = end > COPY_BUF ? end - COPY_BUF : 0;
                ssize_t n = fs_pread_full(fd, buf, (size_t)(end - start), start);
                if (n < 0) { rc = -1; break; }
                char *nl = memrchr(buf, '\n', (size_t)n);
                if (nl) { keep = start + (uint64_t)(nl - buf) + 1; break; }
                end = start;
            }
            free(buf);
            if (rc == 0 && ftruncate(fd, (off_t)keep) != 0) rc = -1;
            if (rc == 0) *cut = size - keep;
        }
    }
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* Reads complete lines from r->arg, about r->max bytes, at least one line. */
int fs_read_lines(const char *path, fs_req *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); errno = e; return -1; }
    uint64_t size = (uint64_t)st.st_size, off = r->arg;
    r->next_off = off;
    if (off >= size) {             /* nothing (more) to read */
        close(fd);
        r->out = calloc(1, 1);
        r->eof = true;
        if (!r->out) { errno = ENOMEM; return -1; }
        return 0;
    }
    /* The file size caps every buffer, so a huge max costs nothing. */
    uint64_t avail = size - off;
    size_t max = r->max;
    size_t want = max ? max : READ_MIN;
    if (want > avail) want = (size_t)avail;
    size_t cap = want, n = 0, len = 0;
    char *buf = malloc(cap + 1);
    if (!buf) { close(fd); errno = ENOMEM; return -1; }
    ssize_t got = fs_pread_full(fd, buf, cap, off);
    if (got < 0) goto fail;
    n = (size_t)got;
    size_t scanned = n < max ? n : max;
    char *nl = scanned ? memrchr(buf, '\n', scanned) : NULL;
    if (nl) len = (size_t)(nl - buf) + 1;
    /* No complete line within max: one line longer than max, read on to
    ** its end.  Growth by half keeps copies linear and the slack small. */
    while (!len) {
        nl = n > scanned ? memchr(buf + scanned, '\n', n - scanned) : NULL;
        if (nl) { len = (size_t)(nl - buf) + 1; break; }
        scanned = n;
        if (n < cap || n == avail) break;           /* end of file, no newline */
        size_t grow = cap / 2 > COPY_BUF ? cap / 2 : COPY_BUF;
        size_t ncap = (uint64_t)cap + grow > avail ? (size_t)avail : cap + grow;
        char *nb = realloc(buf, ncap + 1);
        if (!nb) { errno = ENOMEM; goto fail; }
        buf = nb;
        cap = ncap;
        got = fs_pread_full(fd, buf + n, cap - n, off + n);
        if (got < 0) goto fail;
        n += (size_t)got;
    }
    close(fd);
    r->next_off = off + len;
    /* eof: nothing but (at most) an incomplete line follows what we return
    ** (only another writer could leave one: ours was cut at the start). */
    r->eof = r->next_off >= size || (off + n >= size && !memchr(buf + len, '\n', n - len));
    buf[len] = 0;
    r->out = buf;
    r->outlen = len;
    return 0;
fail:;
    int e = errno;
    free(buf);
    close(fd);
    errno = e;
    return -1;
}

/* Appends r->in to `path`; r->size = the file's size after. */
static int append(const char *path, fs_req *r, bool use_fsync)
{
    int fd = open_create(path, O_WRONLY | O_APPEND);
    if (fd < 0) return -1;
    int rc = fs_write_all(fd, r->in, r->inlen);
    if (rc == 0) rc = sync_fd(fd, use_fsync);
    if (rc == 0) {
        /* With O_APPEND the offset after our write is the end we wrote. */
        off_t end = lseek(fd, 0, SEEK_CUR);
        if (end < 0) rc = -1; else r->size = (uint64_t)end;
    }
    int e = errno;
    if (rc == 0 && r->keep_fd) {
        r->kept_fd = fd;
        r->has_fd = true;
    } else {
        close(fd);
    }
    errno = e;
    return rc;
}

void fs_io_append_fd(int fd, uint64_t *size, fs_req *r)
{
    r->ran = true;
    r->status = CPS_OK;
    if (fs_write_all(fd, r->in, r->inlen) != 0) {
        r->err = errno;
        r->status = CPS_EIO;
        return;
    }
    *size += r->inlen;
    r->size = *size;
}

/* A cut is allowed only at a line boundary. */
static int at_line_start(int fd, uint64_t pos, bool *ok)
{
    char c;
    *ok = true;
    if (pos == 0) return 0;
    if (fs_pread_full(fd, &c, 1, pos - 1) != 1) return -1;
    *ok = c == '\n';
    return 0;
}

/* docs/protocol/storage.md 3.4 trim and docs/protocol/history.md 9.6 line deletion: the bytes [0,
** keep) and [from, end) go to .temp, the old log and metadata log are
** copied to the archive, then .temp replaces the log.  Both cut points
** must be line boundaries: a cut mid-line would corrupt the log. */
static int rewrite(const char *root, fs_obj *o, fs_req *r, uint64_t keep, uint64_t from, bool use_fsync)
{
    char log[PATH_MAX], tmp[PATH_MAX], meta[PATH_MAX], alog[PATH_MAX], ameta[PATH_MAX], offp[PATH_MAX];
    if (fs_path_of(log, sizeof log, root, o, F_LOG) || fs_path_of(tmp, sizeof tmp, root, o, F_TEMP) ||
        fs_path_of(meta, sizeof meta, root, o, F_META) || fs_path_of(alog, sizeof alog, root, o, F_ARCH_LOG) ||
        fs_path_of(ameta, sizeof ameta, root, o, F_ARCH_META) || fs_path_of(offp, sizeof offp, root, o, F_OFFSET))
        return -1;
    int fd = open(log, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    bool ok = false;
    int rc = fstat(fd, &st);
    if (rc == 0 && (from > (uint64_t)st.st_size || keep > from)) { close(fd); r->status = CPS_EINVAL; return 0; }
    if (rc == 0) rc = at_line_start(fd, keep, &ok);
    if (rc == 0 && ok) rc = at_line_start(fd, from, &ok);
    if (rc == 0 && !ok) { close(fd); r->status = CPS_EINVAL; return 0; }
    if (rc == 0) rc = copy_parts(fd, keep, from, tmp, use_fsync);
    int e = errno;
    close(fd);
    errno = e;
    if (rc != 0) return -1;
    if (fs_mkdir_parents(alog) != 0 || copy_file(log, alog, use_fsync) != 0 ||
        (copy_file(meta, ameta, use_fsync) != 0 && errno != ENOENT) || rename(tmp, log) != 0) {
        e = errno;
        unlink(tmp);
        errno = e;
        return -1;
    }
    return unlink_quiet(offp);
}

static int trim(const char *root, fs_obj *o, fs_req *r, bool use_fsync)
{
    return rewrite(root, o, r, 0, r->arg, use_fsync);
}

/* Removing nothing (len 0) is refused: the caller meant a line. */
static int cut(const char *root, fs_obj *o, fs_req *r, bool use_fsync)
{
    if (r->arg2 == 0 || r->arg + r->arg2 < r->arg) { r->status = CPS_EINVAL; return 0; }
    return rewrite(root, o, r, r->arg, r->arg + r->arg2, use_fsync);
}

static int truncate_log(const char *root, fs_obj *o, fs_req *r)
{
    char log[PATH_MAX], offp[PATH_MAX];
    if (fs_path_of(log, sizeof log, root, o, F_LOG) || fs_path_of(offp, sizeof offp, root, o, F_OFFSET)) return -1;
    int fd = open(log, O_RDWR | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    bool ok = false;
    int rc = fstat(fd, &st);
    if (rc == 0 && r->arg > (uint64_t)st.st_size) { close(fd); r->status = CPS_EINVAL; return 0; }
    if (rc == 0) rc = at_line_start(fd, r->arg, &ok);
    if (rc == 0 && !ok) { close(fd); r->status = CPS_EINVAL; return 0; }
    if (rc == 0) rc = ftruncate(fd, (off_t)r->arg);
    int e = errno;
    close(fd);
    errno = e;
    return rc == 0 ? unlink_quiet(offp) : -1;
}

/* Moves `live` to `arch` if it exists; else drops a stale `arch` so the
** archived pair always belongs together.  *had = whether live existed. */
static int archive_one(const char *live, const char *arch, bool *had, bool use_fsync)
{
    *had = exists(live);
    if (*had) return move_file(live, arch, use_fsync);
    return unlink_quiet(arch);
}

static int archive(const char *root, fs_obj *o, fs_req *r, bool use_fsync)
{
    char log[PATH_MAX], meta[PATH_MAX], alog[PATH_MAX], ameta[PATH_MAX], offp[PATH_MAX], ph[PATH_MAX], tmp[PATH_MAX];
    if (fs_path_of(log, sizeof log, root, o, F_LOG) || fs_path_of(meta, sizeof meta, root, o, F_META) ||
        fs_path_of(alog, sizeof alog, root, o, F_ARCH_LOG) || fs_path_of(ameta, sizeof ameta, root, o, F_ARCH_META) ||
        fs_path_of(offp, sizeof offp, root, o, F_OFFSET) || fs_path_of(ph, sizeof ph, root, o, F_PLACEHOLDER))
        return -1;
    if (!exists(log) && !exists(meta)) { r->status = CPS_ENOENT; return 0; }
    bool had_log, had_meta;
    if (archive_one(log, alog, &had_log, use_fsync) != 0 || archive_one(meta, ameta, &had_meta, use_fsync) != 0 ||
        unlink_quiet(offp) != 0)
        return -1;
    if (!r->has_in) return 0;
    if (snprintf(tmp, sizeof tmp, "%s.temp", ph) >= (int)sizeof tmp) { errno = ENAMETOOLONG; return -1; }
    return write_atomic(ph, tmp, r->in, r->inlen, use_fsync);
}

static int restore(const char *root, fs_obj *o, fs_req *r, bool use_fsync)
{
    char log[PATH_MAX], meta[PATH_MAX], alog[PATH_MAX], ameta[PATH_MAX], ph[PATH_MAX];
    if (fs_path_of(log, sizeof log, root, o, F_LOG) || fs_path_of(meta, sizeof meta, root, o, F_META) ||
        fs_path_of(alog, sizeof alog, root, o, F_ARCH_LOG) || fs_path_of(ameta, sizeof ameta, root, o, F_ARCH_META) ||
        fs_path_of(ph, sizeof ph, root, o, F_PLACEHOLDER))
        return -1;
    if (exists(log) || exists(meta)) { r->status = CPS_EEXIST; return 0; }
    bool a_log = exists(alog), a_meta = exists(ameta);
    if (!a_log && !a_meta) { r->status = CPS_ENOENT; return 0; }
    if ((a_log && move_file(alog, log, use_fsync) != 0) || (a_meta && move_file(ameta, meta, use_fsync) != 0))
        return -1;
    return unlink_quiet(ph);
}

static int delete_channel(const char *root, fs_obj *o, fs_req *r)
{
    char log[PATH_MAX], meta[PATH_MAX], offp[PATH_MAX], ph[PATH_MAX], tmp[PATH_MAX];
    if (fs_path_of(log, sizeof log, root, o, F_LOG) || fs_path_of(meta, sizeof meta, root, o, F_META) ||
        fs_path_of(offp, sizeof offp, root, o, F_OFFSET) || fs_path_of(ph, sizeof ph, root, o, F_PLACEHOLDER) ||
        fs_path_of(tmp, sizeof tmp, root, o, F_TEMP))
        return -1;
    bool had_log = unlink(log) == 0;
    if (!had_log && errno != ENOENT) return -1;
    bool had_meta = unlink(meta) == 0;
    if (!had_meta && errno != ENOENT) return -1;
    if (unlink_quiet(offp) || unlink_quiet(ph) || unlink_quiet(tmp)) return -1;
    if (!had_log && !had_meta) r->status = CPS_ENOENT;
    return 0;
}

/* docs/protocol/storage.md 7: the pin log moves to the archive (replacing an older
** archived one: the newest removal is the one worth keeping). */
static int archive_pins(const char *root, fs_obj *o, fs_req *r, bool use_fsync)
{
    char live[PATH_MAX], arch[PATH_MAX];
    if (fs_path_of(live, sizeof live, root, o, F_PIN) || fs_path_of(arch, sizeof arch, root, o, F_ARCH_PIN)) return -1;
    if (!exists(live)) { r->status = CPS_ENOENT; return 0; }
    return move_file(live, arch, use_fsync);
}

static int move_noreplace(const char *src, const char *dst, fs_req *r, bool use_fsync);

/* The undo of archive_pins: never over a live pin log (EEXIST). */
static int restore_pins(const char *root, fs_obj *o, fs_req *r, bool use_fsync)
{
    char live[PATH_MAX], arch[PATH_MAX];
    if (fs_path_of(live, sizeof live, root, o, F_PIN) || fs_path_of(arch, sizeof arch, root, o, F_ARCH_PIN)) return -1;
    if (!exists(arch)) { r->status = CPS_ENOENT; return 0; }
    return move_noreplace(arch, live, r, use_fsync);
}

static int stat_size(const char *path, fs_req *r)
{
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    r->size = (uint64_t)st.st_size;
    return 0;
}

/* Raw bytes of an object from r->arg, at most r->max (READ_MIN if 0). */
int fs_read_bytes(const char *path, fs_req *r)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); errno = e; return -1; }
    uint64_t size = (uint64_t)st.st_size, off = r->arg;
    size_t want = r->max ? r->max : READ_MIN;
    if (off >= size) want = 0;
    else if (want > size - off) want = (size_t)(size - off);   /* the file caps the buffer */
    char *buf = malloc(want + 1);
    if (!buf) { close(fd); errno = ENOMEM; return -1; }
    ssize_t got = want ? fs_pread_full(fd, buf, want, off) : 0;
    int e = errno;
    close(fd);
    if (got < 0) { free(buf); errno = e; return -1; }
    buf[got] = 0;
    r->out = buf;
    r->outlen = (size_t)got;
    r->next_off = off + (uint64_t)got;
    r->eof = r->next_off >= size;
    return 0;
}

/* Moves src to dst unless dst exists (then r->status = CPS_EEXIST and
** nothing moves).  RENAME_NOREPLACE makes the check and the move one step;
** file systems without it get link+unlink, which also never replaces. */
static int move_noreplace(const char *src, const char *dst, fs_req *r, bool use_fsync)
{
    struct stat st;
    if (stat(src, &st) != 0) return -1;                      /* ENOENT: no source */
    if (exists(dst)) { r->status = CPS_EEXIST; return 0; }
    if (fs_mkdir_parents(dst) != 0) return -1;
    if (renameat2(AT_FDCWD, src, AT_FDCWD, dst, RENAME_NOREPLACE) == 0) return 0;
    if (errno == EINVAL || errno == ENOSYS) {
        if (link(src, dst) == 0) return unlink(src);
    }
    if (errno == EEXIST) { r->status = CPS_EEXIST; return 0; }
    if (errno != EXDEV && errno != EPERM) return -1;
    /* Another file system (the archive may be mounted elsewhere). */
    if (exists(dst)) { r->status = CPS_EEXIST; return 0; }
    if (copy_file(src, dst, use_fsync) != 0) return -1;
    return unlink(src);
}

static int run_obj(const char *root, bool use_fsync, fs_obj *o, fs_req *r)
{
    char p[PATH_MAX], t[PATH_MAX];
    if (fs_obj_file(p, sizeof p, root, o->ns, o->id, false) != 0) return -1;
    switch (r->op) {
    case OP_OBJ_APPEND:
        return append(p, r, use_fsync);
    case OP_OBJ_WRITE:
        /* '~' is no key character: the temporary file is nobody's key. */
        if (snprintf(t, sizeof t, "%s~tmp", p) >= (int)sizeof t) { errno = ENAMETOOLONG; return -1; }
        return write_atomic(p, t, r->in, r->inlen, use_fsync);
    case OP_OBJ_READ:
        return fs_read_bytes(p, r);
    case OP_OBJ_SIZE:
        return stat_size(p, r);
    case OP_OBJ_MOVE:
        if (fs_obj_file(t, sizeof t, root, r->to_ns, r->to_id, false) != 0) return -1;
        return move_noreplace(p, t, r, use_fsync);
    case OP_OBJ_DELETE:
        return unlink(p);
    case OP_OBJ_ARCHIVE:
        /* Replaces an older archived copy, as pin logs do: the newest
        ** removal is the one worth keeping. */
        if (!exists(p)) { r->status = CPS_ENOENT; return 0; }
        if (fs_obj_file(t, sizeof t, root, o->ns, o->id, true) != 0) return -1;
        return move_file(p, t, use_fsync);
    case OP_OBJ_RESTORE:
        /* Never over a live object (EEXIST); the archived copy moves back. */
        if (fs_obj_file(t, sizeof t, root, o->ns, o->id, true) != 0) return -1;
        if (!exists(t)) { r->status = CPS_ENOENT; return 0; }
        return move_noreplace(t, p, r, use_fsync);
    }
    errno = EINVAL;
    return -1;
}

static int run(const char *root, bool use_fsync, fs_obj *o, fs_req *r)
{
    if (o->kind == FS_OBJ) return run_obj(root, use_fsync, o, r);
    if (o->kind == FS_RAW) return fs_raw_run(root, use_fsync, o, r);
    char p[PATH_MAX], t[PATH_MAX];
    switch (r->op) {
    case OP_APPEND:
        return fs_path_of(p, sizeof p, root, o, F_LOG) ? -1 : append(p, r, use_fsync);
    case OP_READ:
        return fs_path_of(p, sizeof p, root, o, F_LOG) ? -1 : fs_read_lines(p, r);
    case OP_SIZE:
        return fs_path_of(p, sizeof p, root, o, F_LOG) ? -1 : stat_size(p, r);
    case OP_TRIM:
        return trim(root, o, r, use_fsync);
    case OP_TRUNCATE:
        return truncate_log(root, o, r);
    case OP_CUT:
        return cut(root, o, r, use_fsync);
    case OP_ARCHIVE:
        return archive(root, o, r, use_fsync);
    case OP_RESTORE:
        return restore(root, o, r, use_fsync);
    case OP_DELETE:
        return delete_channel(root, o, r);
    case OP_PLACEHOLDER:
        return fs_path_of(p, sizeof p, root, o, F_PLACEHOLDER) ? -1 : read_file(p, &r->out, &r->outlen);
    case OP_META_APPEND:
        return fs_path_of(p, sizeof p, root, o, F_META) ? -1 : append(p, r, use_fsync);
    case OP_META_READ:
        return fs_path_of(p, sizeof p, root, o, F_META) ? -1 : read_file(p, &r->out, &r->outlen);
    case OP_META_WRITE:
        if (fs_path_of(p, sizeof p, root, o, F_META) || fs_path_of(t, sizeof t, root, o, F_META_TEMP)) return -1;
        return write_atomic(p, t, r->in, r->inlen, use_fsync);
    case OP_PIN_APPEND:
        return fs_path_of(p, sizeof p, root, o, F_PIN) ? -1 : append(p, r, use_fsync);
    case OP_PIN_READ:
        return fs_path_of(p, sizeof p, root, o, F_PIN) ? -1 : read_file(p, &r->out, &r->outlen);
    case OP_PIN_ARCHIVE:
        return archive_pins(root, o, r, use_fsync);
    case OP_PIN_RESTORE:
        return restore_pins(root, o, r, use_fsync);
    case OP_REC_PUT:
        if (fs_path_of(p, sizeof p, root, o, F_REC) || fs_path_of(t, sizeof t, root, o, F_REC_TEMP)) return -1;
        return write_atomic(p, t, r->in, r->inlen, use_fsync);
    case OP_REC_GET:
        return fs_path_of(p, sizeof p, root, o, F_REC) ? -1 : read_file(p, &r->out, &r->outlen);
    case OP_REC_DEL:
        return fs_path_of(p, sizeof p, root, o, F_REC) ? -1 : unlink(p);
    }
    errno = EINVAL;
    return -1;
}

static bool touches_log(int op)
{
    return op == OP_APPEND || op == OP_READ || op == OP_SIZE || op == OP_TRIM || op == OP_TRUNCATE ||
           op == OP_CUT;
}

void fs_io_run(const char *root, bool use_fsync, fs_obj *o, fs_req *r)
{
    r->ran = true;
    r->status = CPS_OK;
    /* Before the first use of a log in this queue run (the queue is freed
    ** when idle, so this is one pread per burst of activity). */
    if (o->kind == FS_CHANNEL && touches_log(r->op) && !o->checked) {
        char p[PATH_MAX];
        if (fs_path_of(p, sizeof p, root, o, F_LOG) || repair(p, &r->cut) != 0) {
            r->err = errno;
            r->status = CPS_EIO;
            return;
        }
        o->checked = true;
    }
    if (run(root, use_fsync, o, r) != 0) {
        r->err = errno;
        r->status = errno == ENOENT ? CPS_ENOENT : errno == ENOMEM ? CPS_ENOMEM : CPS_EIO;
        free(r->out);
        r->out = NULL;
        r->outlen = 0;
    }
}
