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
#include "cps.h"

/* What a queue is keyed by: every request naming one object shares it. */
enum fs_kind { FS_CHANNEL, FS_PIN, FS_RECORD, FS_OBJ };

enum fs_op {
    OP_APPEND, OP_READ, OP_SIZE, OP_TRIM, OP_TRUNCATE, OP_ARCHIVE, OP_RESTORE,
    OP_DELETE, OP_PLACEHOLDER, OP_META_APPEND, OP_META_READ, OP_META_WRITE,
    OP_PIN_APPEND, OP_PIN_READ, OP_REC_PUT, OP_REC_GET, OP_REC_DEL, OP_PIN_ARCHIVE,
    /* named objects (blobs, staged uploads, blocks) */
    OP_OBJ_APPEND, OP_OBJ_WRITE, OP_OBJ_READ, OP_OBJ_SIZE, OP_OBJ_MOVE, OP_OBJ_DELETE,
    OP_OBJ_ARCHIVE,
    OP_CUT            /* remove [arg, arg + arg2) of a channel log */
};

/* The object a queue serialises.  `checked` is touched only by the batch
** running on the pool (one at a time per queue), never by the loop. */
typedef struct fs_obj {
    int kind;
    char id[129];      /* channel id, safe key, record or object key */
    char ns[33];       /* record namespace, or object store */
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

#endif
