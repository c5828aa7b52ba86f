/*
** cps_storage.h - the storage backend interface (included by cps.h).
**
** A storage backend is a table of asynchronous functions with a name, in
** the manner of sqlite3_vfs: a plugin registers it with
** api->register_storage(), and the plugins that store data get the active
** one (configuration key `storage_backend`) with api->storage().
**
** CONTRACT (every backend; tests/unit/test_storage_contract.c checks it)
**   - Every function returns CPS_OK once the request is queued, or a
**     negative code (then `done` is never called).  `done` is called exactly
**     once, on the loop thread, on a later loop turn.  A backend never
**     blocks the loop: file or network I/O runs on the thread pool
**     (api->work) or is non-blocking.
**   - Requests naming the same object (same kind and id) complete in the
**     order they were made.  So an append acknowledged to a client is after
**     every earlier append of that channel, and a read made after an append
**     sees it.
**   - An append's `done` with CPS_OK means the bytes were handed to the
**     operating system (a process killed afterwards does not lose them).
**   - Ids are validated by the backend before any use as a name: channel
**     ids are 32 to 48 characters of [A-Za-z0-9+=-] (lowercase hex for
**     pads); keys ("safe" base64: '/' replaced by '-') are 44 characters.
**     Anything else (empty, "../", "/", NUL, other lengths or characters)
**     is refused with CPS_EINVAL.
**   - A channel log is a sequence of complete lines ending in '\n'.  A torn
**     last line (a crash mid-write) is never returned by a read: the backend
**     detects it and repairs the log (cuts the partial line) before the
**     first read or append of that channel in this process.
**   - Data passed to a callback is valid only during the callback.
*/
#ifndef CPS_STORAGE_H
#define CPS_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CPS_STORAGE_VERSION 1

/* status: CPS_OK or a negative CPS_E* code (CPS_ENOENT: no such object). */
typedef void (*cps_store_done_fn)(void *ud, int status);
/* status plus a size in bytes (the log's size after an append). */
typedef void (*cps_store_size_fn)(void *ud, int status, uint64_t size);
/* A chunk of complete lines read from an offset: `data` (NUL-terminated,
** `len` bytes, possibly 0), the offset just after it, and whether the end
** of the log was reached.  ENOENT if the log does not exist. */
typedef void (*cps_store_read_fn)(void *ud, int status, const char *data, size_t len,
                                  uint64_t next, bool eof);
/* A whole small object (metadata log, pin log, placeholder, record). */
typedef void (*cps_store_data_fn)(void *ud, int status, const char *data, size_t len);
/* A page of names in ascending byte order (valid during the callback);
** `end` once there are no more after the last one given. */
typedef void (*cps_store_list_fn)(void *ud, int status, const char *const *names, size_t n,
                                  bool end);
/* A lease (storage failover): the epoch held, or with CPS_EBUSY the epoch
** and name of the holder whose lease is live ("" if none). */
typedef void (*cps_store_lease_fn)(void *ud, int status, uint64_t epoch, const char *holder);

typedef struct cps_storage_backend {
    size_t size;            /* sizeof(cps_storage_backend) as built */
    int version;            /* CPS_STORAGE_VERSION */
    const char *name;       /* "fs", ... */
    void *state;            /* the backend's own, passed back to every call */

    /* -- channel logs -- */
    /* Append one or more complete lines. */
    int (*channel_append)(void *state, const char *id, const char *data, size_t len,
                          cps_store_size_fn done, void *ud);
    /* Read complete lines from `offset`, at most about `max` bytes (at least
    ** one whole line even if longer). */
    int (*channel_read)(void *state, const char *id, uint64_t offset, size_t max,
                        cps_store_read_fn done, void *ud);
    int (*channel_size)(void *state, const char *id, cps_store_size_fn done, void *ud);
    /* Keep only the bytes from `from` on (an atomic rewrite: the old log is
    ** copied to the archive first). */
    int (*channel_trim)(void *state, const char *id, uint64_t from, cps_store_done_fn done, void *ud);
    /* Keep only the first `len` bytes (clearing a channel). */
    int (*channel_truncate)(void *state, const char *id, uint64_t len, cps_store_done_fn done, void *ud);
    /* Move the log and metadata log to the archive; with a non-NULL reason a
    ** placeholder holding it is left in the live store. */
    int (*channel_archive)(void *state, const char *id, const char *reason,
                           cps_store_done_fn done, void *ud);
    /* Bring an archived channel back (CPS_EEXIST if a live one exists). */
    int (*channel_restore)(void *state, const char *id, cps_store_done_fn done, void *ud);
    /* Remove the log, metadata log and placeholder for good. */
    int (*channel_delete)(void *state, const char *id, cps_store_done_fn done, void *ud);
    /* The placeholder text of an archived channel (ENOENT if none). */
    int (*placeholder_read)(void *state, const char *id, cps_store_data_fn done, void *ud);

    /* -- the channel's dedicated metadata log (small) -- */
    int (*meta_append)(void *state, const char *id, const char *data, size_t len,
                       cps_store_size_fn done, void *ud);
    int (*meta_read)(void *state, const char *id, cps_store_data_fn done, void *ud);
    /* Replace the whole metadata log. */
    int (*meta_write)(void *state, const char *id, const char *data, size_t len,
                      cps_store_done_fn done, void *ud);

    /* -- pin logs, by safe key -- */
    int (*pin_append)(void *state, const char *key, const char *data, size_t len,
                      cps_store_done_fn done, void *ud);
    int (*pin_read)(void *state, const char *key, cps_store_data_fn done, void *ud);

    /* -- small records: `ns` is a namespace ("tasks", "decrees", ...),
    **    [a-z0-9_-]{1,32}; `key` is [A-Za-z0-9_=+-]{1,128} -- */
    int (*record_put)(void *state, const char *ns, const char *key, const char *data,
                      size_t len, cps_store_done_fn done, void *ud);
    int (*record_get)(void *state, const char *ns, const char *key, cps_store_data_fn done,
                      void *ud);
    int (*record_del)(void *state, const char *ns, const char *key, cps_store_done_fn done,
                      void *ud);

    /* -- appended later: check `size` before calling (offsetof the member
    **    must be below b->size) -- */

    /* Move the pin log to the archive (a user removing their account's
    ** pins); ENOENT if there is none. */
    int (*pin_archive)(void *state, const char *key, cps_store_done_fn done, void *ud);

    /* -- named objects (blobs, staged uploads, login blocks...), appended
    **    after the first version (check with CPS_STORAGE_HAS(b, obj_append)) --
    ** An object is bytes under (store, key).  `store` is [a-z]{1,16}
    ** ("blob", "blobstage", "block"); `key` is [A-Za-z0-9+=_.-]{1,128}
    ** without "..", the file store puts it at <store dir>/<key[0..2]>/<key>.
    ** Requests on one (store, key) complete in order. */
    int (*obj_append)(void *state, const char *store, const char *key, const char *data,
                      size_t len, cps_store_size_fn done, void *ud);
    /* Replace the whole object (atomically: temp file and rename). */
    int (*obj_write)(void *state, const char *store, const char *key, const char *data,
                     size_t len, cps_store_done_fn done, void *ud);
    /* Raw bytes from `offset`, at most `max` (not line-aligned).  The way
    ** every consumer reads an object, however large: a chunk at a time
    ** (HTTP downloads ask for 64 KiB). */
    int (*obj_read)(void *state, const char *store, const char *key, uint64_t offset,
                    size_t max, cps_store_read_fn done, void *ud);
    int (*obj_size)(void *state, const char *store, const char *key, cps_store_size_fn done, void *ud);
    /* Move an object to another (store, key); CPS_EEXIST if the target
    ** exists (then nothing moves), CPS_ENOENT if the source does not. */
    int (*obj_move)(void *state, const char *from_store, const char *from_key,
                    const char *to_store, const char *to_key, cps_store_done_fn done, void *ud);
    int (*obj_delete)(void *state, const char *store, const char *key, cps_store_done_fn done, void *ud);
    /* Move to the archive (kept for restore); CPS_ENOENT if none. */
    int (*obj_archive)(void *state, const char *store, const char *key, cps_store_done_fn done, void *ud);
    /* DEPRECATED since ABI 2.1: always NULL; consumers use obj_size and
    ** obj_read.  No path leaves a backend (a backend may have no files at
    ** all); the member only keeps the struct's layout (append-only).  A
    ** backend sets it to NULL (one that still fills it must return NULL)
    ** and a consumer never calls it. */
    const char *(*obj_path)(void *state, const char *store, const char *key, char *buf, size_t n);

    /* -- appended for line deletion (docs/protocol/history.md §9.6; check with
    **    CPS_STORAGE_HAS(b, channel_cut)) --
    ** Remove the bytes [offset, offset + len) of the log, which must start
    ** and end on line boundaries (len > 0; CPS_EINVAL otherwise, also past
    ** the end).  Atomic like channel_trim: the old log and metadata log are
    ** copied to the archive first, the rest is written to a temporary file
    ** that replaces the log. */
    int (*channel_cut)(void *state, const char *id, uint64_t offset, uint64_t len,
                       cps_store_done_fn done, void *ud);

    /* -- appended in ABI 2.1: the raw view (check with CPS_STORAGE_HAS(b,
    **    raw_write)), for copying a whole store between backends (`cpsd
    **    migrate`, docs/operations.md) and for tools.  It is meant for a
    **    store no server is using: raw requests are not ordered with the
    **    operations above. --
    ** Everything a backend keeps is a set of entries (space, name) -> bytes:
    **   "channel" "meta" "placeholder" "pin"     live channel logs, metadata
    **                                            logs, placeholders, pin logs
    **   "archive/channel" "archive/meta" "archive/pin"   their archived copies
    **   "obj/<store>" "archive/obj/<store>"      named objects, live and
    **                                            archived; a record (ns, key)
    **                                            is the object (ns, key)
    ** <store> is [a-z0-9_-]{1,32}.  Names follow the rules of their kind
    ** (channel ids, safe keys, object keys).  In the line spaces (channel,
    ** meta, pin and their archives) an entry is complete lines: a torn last
    ** line is not part of it (raw_size and raw_read leave it out) and
    ** raw_write takes complete lines only. */
    /* Every space holding at least one entry (one page, `end` true). */
    int (*raw_spaces)(void *state, cps_store_list_fn done, void *ud);
    /* The names of `space` after `after` ("" from the start), at most `max`. */
    int (*raw_list)(void *state, const char *space, const char *after, size_t max,
                    cps_store_list_fn done, void *ud);
    int (*raw_size)(void *state, const char *space, const char *name, cps_store_size_fn done,
                    void *ud);
    /* Bytes from `offset`, at most about `max` (in a line space, whole lines:
    ** at least one even if longer); `eof` once the end is reached. */
    int (*raw_read)(void *state, const char *space, const char *name, uint64_t offset,
                    size_t max, cps_store_read_fn done, void *ud);
    /* Write at `offset`: 0 creates or replaces the entry, the entry's size
    ** appends, anything else is CPS_EINVAL.  `done` gets the new size, once
    ** the bytes are as durable as an append's. */
    int (*raw_write)(void *state, const char *space, const char *name, uint64_t offset,
                     const char *data, size_t len, cps_store_size_fn done, void *ud);
    /* -- appended for storage failover (docs/protocol/cluster.md §11.4; check
    **    with CPS_STORAGE_HAS(b, lease) and that it is not NULL: a backend
    **    whose data other nodes cannot reach, like storage-fs, leaves it NULL) --
    ** Storage nodes sharing one backend take turns serving a slot (a
    ** channel's slot is the index of its owner, api->owner(p, "storage",
    ** id)) under a lease kept by the backend: holder, epoch, expiry on the
    ** backend's clock.
    ** lease(slot, holder, ttl_ms > 0) acquires or renews: CPS_OK with the
    ** epoch held when the slot is free, expired, or already `holder`'s (a
    ** renewal keeps the epoch, any change of holder increases it);
    ** CPS_EBUSY with the live holder's name otherwise.  ttl_ms = 0 releases
    ** it if `holder` has it (CPS_OK either way).  `holder` is
    ** [A-Za-z0-9:/_-]{1,64}, unique per process.
    ** Fencing: once a process called lease(), each channel write it makes
    ** (append, trim, truncate, cut, archive, restore, delete, meta_append,
    ** meta_write) carries the epoch its process held for the channel's slot
    ** when the write was requested (none if it held none), and succeeds only
    ** if that epoch and holder are still current in the same transaction as
    ** the write; otherwise nothing of it is written and it fails with
    ** CPS_EUNAVAILABLE.  A takeover waits for writes under the old epoch
    ** that are committing, so no write of an old holder lands after it. */
    int (*lease)(void *state, unsigned slot, const char *holder, unsigned ttl_ms,
                 cps_store_lease_fn done, void *ud);

    /* -- appended in ABI 2.2 (check with CPS_STORAGE_HAS(b, pin_restore)) --
    ** obj_restore brings an object back from its archive (the undo of obj_archive: an
    ** admin restoring a blob or a login block, docs/protocol/admin.md).
    ** CPS_ENOENT if there is no archived copy, CPS_EEXIST if a live object
    ** exists (then nothing moves).  The archived copy is gone afterwards. */
    int (*obj_restore)(void *state, const char *store, const char *key, cps_store_done_fn done, void *ud);
    /* The undo of pin_archive, with the same errors as obj_restore (an admin
    ** restoring an archived account). */
    int (*pin_restore)(void *state, const char *key, cps_store_done_fn done, void *ud);
} cps_storage_backend;

/* Whether backend `b` has member `m` (built against a header that had it). */
#define CPS_STORAGE_HAS(b, m) ((b)->size > offsetof(cps_storage_backend, m))

#endif /* CPS_STORAGE_H */
