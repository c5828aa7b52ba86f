/*
** fs.h - internals shared by the two files of the storage-fs plugin: fs.c
** (the backend table, id checks, per-object queues on the loop thread) and
** fs_io.c (the blocking file operations, run on thread-pool threads).
*/
#ifndef CPS_STORAGE_FS_H
#define CPS_STORAGE_FS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "cps.h"

/* What a queue is keyed by: every request naming one object shares it. */
enum fs_kind { FS_CHANNEL, FS_PIN, FS_RECORD, FS_OBJ, FS_RAW };

enum fs_op {
    OP_APPEND, OP_READ, OP_SIZE, OP_TRIM, OP_TRUNCATE, OP_ARCHIVE, OP_RESTORE,
    OP_DELETE, OP_PLACEHOLDER, OP_META_APPEND, OP_META_READ, OP_META_WRITE,
    OP_PIN_APPEND, OP_PIN_READ, OP_REC_PUT, OP_REC_GET, OP_REC_DEL, OP_PIN_ARCHIVE, OP_PIN_RESTORE,
    /* named objects (blobs, staged uploads, blocks) */
    OP_OBJ_APPEND, OP_OBJ_WRITE, OP_OBJ_READ, OP_OBJ_SIZE, OP_OBJ_MOVE, OP_OBJ_DELETE,
    OP_OBJ_ARCHIVE, OP_OBJ_RESTORE,
    OP_CUT,           /* remove [arg, arg + arg2) of a channel log */
    /* the raw view (fs_raw.c) */
    OP_RAW_SPACES, OP_RAW_LIST, OP_RAW_SIZE, OP_RAW_READ, OP_RAW_WRITE
};

/* The files of one object.  Names follow the main CryptPad server. */
enum fs_which {
    F_LOG, F_META, F_OFFSET, F_PLACEHOLDER, F_TEMP, F_META_TEMP,
    F_ARCH_LOG, F_ARCH_META, F_PIN, F_REC, F_REC_TEMP, F_ARCH_PIN
};

/* The object a queue serialises.  `checked` is touched only by the batch
** running on the pool (one at a time per queue), never by the loop. */
typedef struct fs_obj {
    int kind;
    char id[129];      /* channel id, safe key, record or object key */
    char ns[48];       /* record namespace, object store, or raw space */
    bool checked;      /* torn-line check done in this queue run */
} fs_obj;

typedef struct fs_req {
    struct fs_req *next;
    int op;
    uint64_t arg;      /* read offset, trim `from`, truncate length, cut offset */
    uint64_t arg2;     /* cut length */
    size_t max;        /* read size hint */
    char *in;          /* owned copy of the bytes to write, or the reason */
    size_t inlen;
    bool has_in;       /* archive: a reason was given (possibly "") */
    bool keep_fd;      /* append: hand the open log back (kept_fd) for fs_fdcache.c */
    bool has_fd;
    int kept_fd;
    char to_ns[33];    /* obj_move: the target store and key */
    char to_id[129];
    /* Results, written on the pool thread and read in `after`. */
    bool ran;
    int status;
    int err;           /* errno behind a CPS_EIO, for the log */
    uint64_t size, next_off, cut;
    bool eof;
    char *out;         /* NUL-terminated, outlen bytes */
    size_t outlen;
    union {
        cps_store_done_fn done;
        cps_store_size_fn size;
        cps_store_read_fn read;
        cps_store_data_fn data;
        cps_store_list_fn list;
    } cb;
    void *ud;
} fs_req;

/* Runs one request to completion on a pool thread: fills r->status and the
** results.  Never calls the api table. */
void fs_io_run(const char *root, bool use_fsync, fs_obj *o, fs_req *r);

/* The file of object (store, key) under root, or (archived) its place in
** the archive tree; -1 (ENAMETOOLONG) if it does not fit.  Pure; used by
** the I/O on the pool only (no path leaves the backend). */
int fs_obj_file(char *buf, size_t n, const char *root, const char *store, const char *key, bool archived);
/* The directory of a store's objects; *flat when they lie directly in it
** rather than in prefix directories named by their first two characters. */
int fs_store_dir(char *buf, size_t n, const char *root, const char *store, bool archived, bool *flat);

/* Appends r->in through an open O_APPEND descriptor, on the loop thread
** (fs.c's loop batches): fills r like fs_io_run does; *size is the log's
** size, kept by the caller (no lseek per append). */
void fs_io_append_fd(int fd, uint64_t *size, fs_req *r);

/* fs_fdcache.c: open channel logs by id (loop thread only). */
int  fdc_init(size_t max);             /* max 0: no cache */
/* The descriptor (or -1) and where its log's size is kept up to date. */
int  fdc_get(const char *id, uint64_t **size);
bool fdc_has(const char *id);
void fdc_put(const char *id, int fd, uint64_t size);  /* takes fd (closes it if it cannot keep it) */
void fdc_drop(const char *id);
void fdc_clear(void);

/* The file `which` (enum fs_which) of object o under root; -1 if too long. */
int fs_path_of(char *buf, size_t n, const char *root, const fs_obj *o, int which);

/* Blocking helpers of fs_io.c that fs_raw.c shares (pool threads only). */
int fs_mkdir_parents(const char *file);
int fs_write_all(int fd, const char *buf, size_t len);
ssize_t fs_pread_full(int fd, char *buf, size_t len, uint64_t off);
int fs_read_lines(const char *path, fs_req *r);   /* whole lines from r->arg */
int fs_read_bytes(const char *path, fs_req *r);   /* raw bytes from r->arg */

/* Name checks of fs.c, shared with fs_raw.c. */
bool fs_valid_channel(const char *s);
bool fs_valid_key(const char *s);
bool fs_valid_ns(const char *s);
bool fs_valid_okey(const char *s);

/* The raw view (cps_storage.h raw_*): a space parsed once on the loop. */
typedef struct fs_space {
    int which;         /* F_LOG, F_META, F_PLACEHOLDER, F_PIN and archives, or -1: object */
    bool archived;     /* objects: archive/obj/<store> */
    bool lines;        /* a line space: complete lines only */
    char store[33];    /* objects: the store */
} fs_space;
/* 0 and *out filled if `space` names a raw space, else -1. */
int fs_space_parse(const char *space, fs_space *out);
/* Whether `name` is a valid entry name of that space. */
bool fs_space_name_ok(const fs_space *sp, const char *name);
/* Runs a raw request (o->ns is the space, o->id the name) on a pool thread. */
int fs_raw_run(const char *root, bool use_fsync, fs_obj *o, fs_req *r);

#endif
