/*
** stage.c - the storage half of the blob plugin (spec docs/protocol/rpc.md 8, docs/protocol/storage.md
** 4-5): staged uploads per user key, upload cookies, completion into the
** blob store, blob sizes and owners' removal.  The operations of one key run
** one at a time (a queue per key), so a cookie is checked and replaced, and
** a chunk appended, without racing another request of the same user.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "blob.h"
#include "text.h"

/* What a queued operation does. */
enum { K_STATUS, K_UPLOAD, K_HTTP_CHUNK, K_CANCEL, K_COMPLETE, K_COOKIE };

typedef struct sess sess;

typedef struct bop {
    int kind;
    cps_call *call;
    json_t *args;                  /* owned */
    struct bop *next;
    /* scratch of the running operation */
    unsigned char *buf;            /* the decoded chunk */
    size_t len;
    int64_t size;                  /* UPLOAD_STATUS: the announced size */
    int64_t limit;
    int status;                    /* completion: why the move failed */
    bool plan;                     /* the key has a non-empty plan */
    char id[IDS_BLOB_LEN + 1];
    char cookie[COOKIE_LEN + 1];
    char meta_key[IDS_BLOB_LEN + 32];
} bop;

/* One user key: its upload sizes, its cookie's write time, its queue.  Not
** a keyqueue (plugins/common): the session outlives an empty queue (the
** sizes stay until SESSION_IDLE_MS) and the sweep and fini inspect it. */
struct sess {
    char safe[IDS_KEY_LEN + 1];
    char unsafe[IDS_KEY_LEN + 1];
    char cookie_key[IDS_KEY_LEN + 8];  /* "<safe>.cookie" */
    int64_t pending, current;      /* pending < 0: no UPLOAD_STATUS yet */
    uint64_t atime;
    /* The cookie object holds the 32 characters only (docs/protocol/storage.md 5); its
    ** write time is kept here, where it is checked: the backend has no
    ** mtime.  A restart forgets it, which ends the upload as it also
    ** forgets the sizes (the client starts over). */
    uint64_t cookie_ms;
    bop *head, *tail;
    size_t nops;
    bool running;
    bool in_kick;
};

static struct {
    strmap *sess;                  /* safe key -> sess; NULL: no storage half */
    strmap *completing;            /* blob ids being completed */
    size_t orphans;                /* sessions detached at fini, awaiting a callback */
    cps_timer *sweep;
} ST;

static char MARK;

/* A backend with the named objects (the obj_* members, appended together);
** blobs never need a file path: they are read back with obj_read. */
static const cps_storage_backend *backend(void)
{
    const cps_storage_backend *b = API->storage(BL.self, NULL);
    return b && CPS_STORAGE_HAS(b, obj_archive) && b->obj_append ? b : NULL;
}

/* ---- sessions and their queues ---------------------------------------- */

static void bop_free(bop *o)
{
    json_decref(o->args);
    free(o->buf);
    free(o);
}

static void sess_free(sess *s)
{
    while (s->head) {
        bop *n = s->head->next;
        bop_free(s->head);
        s->head = n;
    }
    free(s);
}

static sess *sess_get(const char *unsafe, const char *safe)
{
    sess *s = strmap_get(ST.sess, safe);
    if (s) return s;
    if (strmap_count(ST.sess) >= BL.conf.max_sessions) return NULL;
    s = calloc(1, sizeof *s);
    if (!s || strmap_put(ST.sess, safe, s) != 0) { free(s); return NULL; }
    memcpy(s->safe, safe, sizeof s->safe);
    memcpy(s->unsafe, unsafe, sizeof s->unsafe);
    snprintf(s->cookie_key, sizeof s->cookie_key, "%s.cookie", safe);
    s->pending = -1;
    return s;
}

static void run_head(sess *s);

static void kick(sess *s)
{
    s->in_kick = true;
    while (s->head && !s->running) {
        s->running = true;
        run_head(s);
    }
    s->in_kick = false;
}

/* Answers the head operation (steals data) and starts the next. */
static void finish(sess *s, int error, json_t *data)
{
    bop *o = s->head;
    s->head = o->next;
    if (!s->head) s->tail = NULL;
    s->nops--;
    s->running = false;
    s->atime = API->now_ms();
    API->reply(o->call, error, data);
    bop_free(o);
    if (!s->in_kick) kick(s);
}

/* A callback arriving after fini: answer, free the key's state. */
static bool abandoned(sess *s)
{
    if (!BL.closing) return false;
    if (s->head) {
        bop *o = s->head;
        s->head = o->next;
        API->reply(o->call, CPS_ECANCELED, NULL);
        bop_free(o);
    }
    sess_free(s);
    ST.orphans--;
    return true;
}

static void sweep(cps_timer *t, void *ud);

/* ---- UPLOAD_STATUS: limit, staging, free space ------------------------- */

static void status_total(void *ud, int error, json_t *data);

static void status_staged(void *ud, int status, uint64_t size)
{
    (void)size;
    sess *s = ud;
    if (abandoned(s)) return;
    if (status == CPS_OK) { finish(s, CPS_OK, json_true()); return; }   /* an upload is staged */
    if (status != CPS_ENOENT) { finish(s, status, NULL); return; }
    char node[64];
    json_t *q = json_pack("{s s}", "key", s->unsafe);
    if (!API->owner(BL.self, "storage", s->safe, node, sizeof node) ||
        API->query(BL.self, node, "PIN_GET_TOTAL_SIZE", q, 0, status_total, s) != CPS_OK)
        status_total(s, CPS_ENOENT, NULL);
}

static void status_total(void *ud, int error, json_t *data)
{
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    /* Without rpc-pin the usage is unknown: count it as 0. */
    int64_t used = !error && json_is_number(data) ? (int64_t)json_number_value(data) : 0;
    if (o->size >= o->limit - used) { finish(s, CPS_ERR_NOT_ENOUGH_SPACE, NULL); return; }
    s->pending = o->size;
    s->current = 0;
    finish(s, CPS_OK, json_false());
}

static void status_limit(void *ud, int error, json_t *data)
{
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    json_t *l = error ? NULL : json_array_get(data, 0);
    const char *plan = error ? NULL : json_string_value(json_array_get(data, 1));
    o->limit = json_is_number(l) ? (int64_t)json_number_value(l) : (int64_t)BL.conf.default_limit;
    o->plan = plan && *plan;
    /* docs/protocol/rpc.md 8.1: beyond max_upload_size only a plan, and below the premium size. */
    if ((uint64_t)o->size > BL.conf.max_upload &&
        (!o->plan || (uint64_t)o->size >= BL.conf.premium_upload)) {
        finish(s, CPS_ERR_TOO_LARGE, NULL);
        return;
    }
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_size(b->state, "blobstage", s->safe, status_staged, s) : CPS_EIO;
    if (rc) finish(s, rc, NULL);
}

static void do_status(sess *s, bop *o)
{
    json_t *size = json_object_get(o->args, "size");
    if (!json_is_number(size) || json_number_value(size) < 0 || json_number_value(size) > 9e15) {
        finish(s, CPS_ERR_E_INVALID_SIZE, NULL);
        return;
    }
    o->size = (int64_t)json_number_value(size);
    char node[64];
    json_t *q = json_pack("{s s}", "key", s->unsafe);
    if (!API->owner(BL.self, "storage", s->safe, node, sizeof node) ||
        API->query(BL.self, node, "PIN_GET_LIMIT", q, 0, status_limit, s) != CPS_OK)
        status_limit(s, CPS_ENOENT, NULL);
}

/* ---- UPLOAD and HTTP chunks: append to the staging object -------------- */

static void new_cookie(char out[COOKIE_LEN + 1])
{
    unsigned char r[COOKIE_LEN / 2];
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(out, COOKIE_LEN + 1, r, sizeof r);
}

static void cookie_written(void *ud, int status)
{
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    if (status != CPS_OK) { finish(s, status, NULL); return; }
    s->cookie_ms = API->now_ms();
    finish(s, CPS_OK, json_pack("{s s}", "cookie", o->cookie));
}

/* Writes a fresh cookie and answers {cookie} once it is stored. */
static void issue_cookie(sess *s, bop *o)
{
    const cps_storage_backend *b = backend();
    new_cookie(o->cookie);
    int rc = b ? b->obj_write(b->state, "blobstage", s->cookie_key, o->cookie, COOKIE_LEN, cookie_written, s)
               : CPS_EIO;
    if (rc) finish(s, rc, NULL);
}

static void appended(void *ud, int status, uint64_t size)
{
    (void)size;
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    if (status != CPS_OK) { finish(s, status, NULL); return; }
    s->current += (int64_t)o->len;
    if (o->kind == K_HTTP_CHUNK) issue_cookie(s, o);   /* docs/protocol/rpc.md 8.1: a fresh cookie per chunk */
    else finish(s, CPS_OK, json_integer((json_int_t)o->len));
}

/* docs/protocol/rpc.md 8.3: decode, refuse past the announced size, append. */
static void append_chunk(sess *s, bop *o)
{
    json_t *chunk = json_object_get(o->args, "chunk");
    if (!json_is_string(chunk)) { finish(s, CPS_ERR_DECODE_BUFFER, NULL); return; }
    size_t n = json_string_length(chunk);
    o->buf = malloc(n / 4 * 3 + 4);
    if (!o->buf) { finish(s, CPS_ENOMEM, NULL); return; }
    o->len = b64_decode_lenient(json_string_value(chunk), n, o->buf, n / 4 * 3 + 4);
    if (o->len == (size_t)-1) { finish(s, CPS_ERR_DECODE_BUFFER, NULL); return; }
    if (s->pending < 0) { finish(s, CPS_ERR_NOT_READY, NULL); return; }
    /* Checked before the chunk: the last chunk may overshoot. */
    if (s->current > s->pending) { finish(s, CPS_ERR_E_OVER_LIMIT, NULL); return; }
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_append(b->state, "blobstage", s->safe, (const char *)o->buf, o->len, appended, s)
               : CPS_EIO;
    if (rc) finish(s, rc, NULL);
}

static void cookie_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    const char *given = json_string_value(json_object_get(o->args, "cookie"));
    bool fresh = s->cookie_ms && API->now_ms() - s->cookie_ms < COOKIE_TTL_MS;
    bool match = status == CPS_OK && given && len == COOKIE_LEN && strlen(given) == COOKIE_LEN &&
                 sodium_memcmp(data, given, COOKIE_LEN) == 0;
    if (status != CPS_OK && status != CPS_ENOENT) { finish(s, status, NULL); return; }
    if (!fresh || !match) { finish(s, CPS_ERR_INVALID_COOKIE, NULL); return; }
    s->cookie_ms = 0;              /* single use, whatever happens next */
    append_chunk(s, o);
}

static void do_http_chunk(sess *s)
{
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_read(b->state, "blobstage", s->cookie_key, 0, COOKIE_LEN + 1, cookie_read, s) : CPS_EIO;
    if (rc) finish(s, rc, NULL);
}

/* ---- UPLOAD_CANCEL ------------------------------------------------------ */

static void cancelled(void *ud, int status)
{
    sess *s = ud;
    if (abandoned(s)) return;
    finish(s, status == CPS_OK ? CPS_OK : CPS_ERR_E_UNLINK, NULL);
}

static void do_cancel(sess *s, bop *o)
{
    json_t *size = json_object_get(o->args, "size");
    if (!json_is_number(size) || json_number_value(size) <= 0 || json_number_value(size) > 9e15) {
        finish(s, CPS_ERR_INVALID_FILESIZE, NULL);
        return;
    }
    /* As the Node server: the new sizes hold even if there was no file. */
    s->pending = (int64_t)json_number_value(size);
    s->current = 0;
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_delete(b->state, "blobstage", s->safe, cancelled, s) : CPS_EIO;
    if (rc) finish(s, CPS_ERR_E_UNLINK, NULL);
}

/* ---- UPLOAD_COMPLETE / OWNED_UPLOAD_COMPLETE ----------------------------
** The blob's final place is on the storage node owning the BLOB id, the
** staged bytes on the node owning the user key.  When they are the same
** node (always in one process) the staged file is moved; otherwise it is
** copied to the blob's node in chunks (BLOB_IMPORT) and completed there
** (BLOB_IMPORT_DONE), with the same checks and answers. */

static void complete_end(sess *s, bop *o, int error, json_t *data)
{
    strmap_del(ST.completing, o->id);
    finish(s, error, data);
}

/* The cookie has done its job: gone before the answer, so the client's
** next step never meets it. */
static void cookie_gone(void *ud, int status)
{
    (void)status;                  /* ENOENT: an RPC-only upload had none */
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    complete_end(s, o, CPS_OK, json_string(o->id));
}

static void meta_undone(void *ud, int status)
{
    (void)status;
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    complete_end(s, o, o->status, NULL);
}

static void moved(void *ud, int status)
{
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    bool owned = json_is_true(json_object_get(o->args, "owned"));
    const cps_storage_backend *b = backend();
    if (status == CPS_OK) {
        /* The next upload starts from UPLOAD_STATUS. */
        s->cookie_ms = 0;
        s->pending = -1;
        s->current = 0;
        if (!b || b->obj_delete(b->state, "blobstage", s->cookie_key, cookie_gone, s) != CPS_OK)
            cookie_gone(s, CPS_EIO);
        return;
    }
    API->log(BL.self, status == CPS_EEXIST || status == CPS_ENOENT ? CPS_LOG_DEBUG : CPS_LOG_WARN,
             "completing blob %s for %s: %s", o->id, s->safe, API->errname(status));
    if (!owned) { complete_end(s, o, CPS_ERR_RENAME_ERR, NULL); return; }
    if (status == CPS_EEXIST) { complete_end(s, o, CPS_ERR_EEXISTS, NULL); return; }
    /* Nothing staged (or the move failed): the metadata written for it goes. */
    o->status = status;
    if (!b || b->obj_delete(b->state, "blob", o->meta_key, meta_undone, s) != CPS_OK)
        complete_end(s, o, status, NULL);
}

static void do_move(sess *s, bop *o)
{
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_move(b->state, "blobstage", s->safe, "blob", o->id, moved, s) : CPS_EIO;
    if (rc) moved(s, rc);
}

static void meta_written(void *ud, int status)
{
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    if (status != CPS_OK) { complete_end(s, o, status, NULL); return; }
    do_move(s, o);
}

static void owned_target(void *ud, int status, uint64_t size)
{
    (void)size;
    sess *s = ud;
    if (abandoned(s)) return;
    bop *o = s->head;
    if (status == CPS_OK) { complete_end(s, o, CPS_ERR_EEXISTS, NULL); return; }
    if (status != CPS_ENOENT) { complete_end(s, o, status, NULL); return; }
    /* docs/protocol/storage.md 4: the first line of the blob's metadata names its owner. */
    char line[128];
    int n = snprintf(line, sizeof line, "{\"owners\":[\"%s\"]}\n", s->unsafe);
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_write(b->state, "blob", o->meta_key, line, (size_t)n, meta_written, s) : CPS_EIO;
    if (rc) complete_end(s, o, rc, NULL);
}

/* -- completing on another node -- */

static void ignore_done(void *ud, int status) { (void)ud; (void)status; }

#define IMPORT_CHUNK (256u * 1024)

typedef struct import {
    char safe[IDS_KEY_LEN + 1];        /* finds the session again */
    char node[64];
    uint64_t off;
} import;

static sess *sess_of(import *im)
{
    sess *s = strmap_get(ST.sess, im->safe);
    return s && s->head && s->head->kind == K_COMPLETE ? s : NULL;
}

static void import_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof);

static void import_finished(void *ud, int error, json_t *data)
{
    (void)data;
    import *im = ud;
    sess *s = sess_of(im);
    free(im);
    if (!s || abandoned(s)) return;
    bop *o = s->head;
    if (error) { complete_end(s, o, error, NULL); return; }
    /* the copy is the blob now: the staged bytes and the cookie go */
    s->cookie_ms = 0;
    s->pending = -1;
    s->current = 0;
    const cps_storage_backend *b = backend();
    if (b) b->obj_delete(b->state, "blobstage", s->safe, ignore_done, NULL);
    if (!b || b->obj_delete(b->state, "blobstage", s->cookie_key, cookie_gone, s) != CPS_OK)
        cookie_gone(s, CPS_EIO);
}

static void import_sent(void *ud, int error, json_t *data)
{
    (void)data;
    import *im = ud;
    sess *s = sess_of(im);
    const cps_storage_backend *b = backend();
    if (!s || abandoned(s)) { free(im); return; }
    bop *o = s->head;
    if (error || !b) { free(im); complete_end(s, o, error ? error : CPS_EIO, NULL); return; }
    int rc = b->obj_read(b->state, "blobstage", s->safe, im->off, IMPORT_CHUNK, import_read, im);
    if (rc) { free(im); complete_end(s, o, rc, NULL); }
}

static void import_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next;
    import *im = ud;
    sess *s = sess_of(im);
    if (!s || abandoned(s)) { free(im); return; }
    bop *o = s->head;
    bool owned = json_is_true(json_object_get(o->args, "owned"));
    if (status != CPS_OK) {
        free(im);
        complete_end(s, o, status == CPS_ENOENT ? (owned ? CPS_ENOENT : CPS_ERR_RENAME_ERR) : status, NULL);
        return;
    }
    if (len == 0 && eof) {
        int rc = API->query(BL.self, im->node, "BLOB_IMPORT_DONE",
                            json_pack("{s s s b s s}", "id", o->id, "owned", owned, "owner", s->unsafe), 0,
                            import_finished, im);
        if (rc) import_finished(im, rc, NULL);   /* refused: the callback will not run */
        return;
    }
    char *b64 = b64_encode_dup(data, len);
    if (!b64) { free(im); complete_end(s, o, CPS_ENOMEM, NULL); return; }
    json_t *args = json_pack("{s s s I s s}", "id", o->id, "offset", (json_int_t)im->off, "data", b64);
    free(b64);
    im->off += len;
    int rc = API->query(BL.self, im->node, "BLOB_IMPORT", args, 0, import_sent, im);
    if (rc) import_sent(im, rc, NULL);   /* refused: the callback will not run */
}

static void complete_remote(sess *s, bop *o, const char *node)
{
    import *im = calloc(1, sizeof *im);
    const cps_storage_backend *b = backend();
    if (!im || !b) { free(im); complete_end(s, o, CPS_ENOMEM, NULL); return; }
    memcpy(im->safe, s->safe, sizeof im->safe);
    snprintf(im->node, sizeof im->node, "%s", node);
    int rc = b->obj_read(b->state, "blobstage", s->safe, 0, IMPORT_CHUNK, import_read, im);
    if (rc) { free(im); complete_end(s, o, rc, NULL); }
}

static void do_complete(sess *s, bop *o)
{
    bool owned = json_is_true(json_object_get(o->args, "owned"));
    const char *id = json_string_value(json_object_get(o->args, "id"));
    if (!ids_is_blob(id)) { finish(s, owned ? CPS_ERR_EINVAL_ID : CPS_ERR_INVALID_ID, NULL); return; }
    char node[64];
    if (API->owner(BL.self, "storage", id, node, sizeof node) && !API->node_is_local(BL.self, node)) {
        memcpy(o->id, id, sizeof o->id);
        complete_remote(s, o, node);
        return;
    }
    /* Two users completing one id at once: the second loses at once
    ** rather than race the metadata of the first. */
    if (strmap_get(ST.completing, id)) { finish(s, owned ? CPS_ERR_EEXISTS : CPS_ERR_RENAME_ERR, NULL); return; }
    if (strmap_put(ST.completing, id, &MARK)) { finish(s, CPS_ENOMEM, NULL); return; }
    memcpy(o->id, id, sizeof o->id);
    snprintf(o->meta_key, sizeof o->meta_key, "%s.metadata.ndjson", id);
    if (!owned) { do_move(s, o); return; }
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_size(b->state, "blob", id, owned_target, s) : CPS_EIO;
    if (rc) complete_end(s, o, rc, NULL);
}

static void run_head(sess *s)
{
    bop *o = s->head;
    s->atime = API->now_ms();
    switch (o->kind) {
    case K_STATUS: do_status(s, o); break;
    case K_UPLOAD: append_chunk(s, o); break;
    case K_HTTP_CHUNK: do_http_chunk(s); break;
    case K_CANCEL: do_cancel(s, o); break;
    case K_COMPLETE: do_complete(s, o); break;
    case K_COOKIE: issue_cookie(s, o); break;
    default: finish(s, CPS_EINVAL, NULL);
    }
}

/* ---- the commands of the key's queue ------------------------------------ */

static const struct { const char *name; int kind; } KEYED[] = {
    { "BLOB_STATUS", K_STATUS }, { "BLOB_UPLOAD", K_UPLOAD }, { "BLOB_HTTP_CHUNK", K_HTTP_CHUNK },
    { "BLOB_CANCEL", K_CANCEL }, { "BLOB_COMPLETE", K_COMPLETE }, { "BLOB_UPLOAD_COOKIE", K_COOKIE },
};

/* {key, ...}: queued on the key's session. */
static int keyed_cmd(cps_call *call, json_t *args, void *ud)
{
    int kind = (int)(intptr_t)ud;
    char unsafe[IDS_KEY_LEN + 1], safe[IDS_KEY_LEN + 1];
    if (BL.closing || !ST.sess) return CPS_ECANCELED;
    if (!ids_key_norm(json_string_value(json_object_get(args, "key")), unsafe, safe)) {
        API->reply(call, CPS_ERR_INVALID_SAFEKEY, NULL);
        return CPS_OK;
    }
    if (!backend()) return CPS_EIO;
    sess *s = sess_get(unsafe, safe);
    if (!s) return CPS_EBUSY;
    if (s->nops >= BL.conf.max_queue) return CPS_EBUSY;
    bop *o = calloc(1, sizeof *o);
    if (!o) return CPS_ENOMEM;
    o->kind = kind;
    o->call = call;
    o->args = json_incref(args);
    if (s->tail) s->tail->next = o; else s->head = o;
    s->tail = o;
    s->nops++;
    s->atime = API->now_ms();
    if (!s->running && !s->in_kick) kick(s);
    return CPS_ASYNC;
}

/* ---- BLOB_SIZE {id} -> {size} ------------------------------------------- */

static void sized(void *ud, int status, uint64_t size)
{
    cps_call *call = ud;
    if (status != CPS_OK && status != CPS_ENOENT) API->reply(call, status, NULL);
    else API->reply(call, CPS_OK, json_pack("{s I}", "size", (json_int_t)(status == CPS_OK ? size : 0)));
}

static int cmd_size(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "id"));
    const cps_storage_backend *b = backend();
    if (!ids_is_blob(id)) return CPS_EINVAL;
    if (!b) { API->reply(call, CPS_OK, json_pack("{s i}", "size", 0)); return CPS_OK; }
    int rc = b->obj_size(b->state, "blob", id, sized, call);
    return rc ? rc : CPS_ASYNC;
}

/* ---- BLOB_READ {id, offset, max} -> {size, data (base64)} ----------------
** For a node that serves /blob for an id it does not own (a cluster): the
** blob's bytes, a chunk at a time, as base64 since messages are JSON. */

#define READ_MAX (256u * 1024)

typedef struct reading { cps_call *call; char id[IDS_BLOB_LEN + 1]; uint64_t offset; size_t max; uint64_t size; } reading;

static void read_got(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    reading *r = ud;
    if (status != CPS_OK) { API->reply(r->call, status, NULL); free(r); return; }
    char *b64 = b64_encode_dup(data, len);
    if (!b64) { API->reply(r->call, CPS_ENOMEM, NULL); free(r); return; }
    API->reply(r->call, CPS_OK, json_pack("{s I s s}", "size", (json_int_t)r->size, "data", b64));
    free(b64);
    free(r);
}

static void read_sized(void *ud, int status, uint64_t size)
{
    reading *r = ud;
    const cps_storage_backend *b = backend();
    if (status != CPS_OK || !b) { API->reply(r->call, status ? status : CPS_EIO, NULL); free(r); return; }
    r->size = size;
    if (r->max == 0 || r->offset >= size) {      /* just the size */
        API->reply(r->call, CPS_OK, json_pack("{s I s s}", "size", (json_int_t)size, "data", ""));
        free(r);
        return;
    }
    int rc = b->obj_read(b->state, "blob", r->id, r->offset, r->max, read_got, r);
    if (rc) { API->reply(r->call, rc, NULL); free(r); }
}

static int cmd_read(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "id"));
    json_t *off = json_object_get(args, "offset"), *max = json_object_get(args, "max");
    const cps_storage_backend *b = backend();
    if (!ids_is_blob(id) || !json_is_integer(off) || json_integer_value(off) < 0 || !json_is_integer(max) ||
        json_integer_value(max) < 0)
        return CPS_EINVAL;
    if (!b || !CPS_STORAGE_HAS(b, obj_read) || !b->obj_read) return CPS_EIO;
    reading *r = calloc(1, sizeof *r);
    if (!r) return CPS_ENOMEM;
    r->call = call;
    memcpy(r->id, id, IDS_BLOB_LEN + 1);
    r->offset = (uint64_t)json_integer_value(off);
    r->max = json_integer_value(max) > READ_MAX ? READ_MAX : (size_t)json_integer_value(max);
    int rc = b->obj_size(b->state, "blob", id, read_sized, r);
    if (rc) { free(r); return rc; }
    return CPS_ASYNC;
}

/* ---- BLOB_IMPORT {id, offset, data} / BLOB_IMPORT_DONE {id, owned, owner} --
** The blob's node receives an upload staged on another node, as
** blobstage/<id>.import, then completes it with the usual rules. */

static void import_done(void *ud, int status, uint64_t size)
{
    (void)size;
    API->reply(ud, status, NULL);
}

static void import_done2(void *ud, int status) { import_done(ud, status, 0); }

static int cmd_import(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "id"));
    const char *b64 = json_string_value(json_object_get(args, "data"));
    json_t *off = json_object_get(args, "offset");
    const cps_storage_backend *b = backend();
    if (!ids_is_blob(id) || !b64 || !json_is_integer(off)) return CPS_EINVAL;
    size_t n = 0;
    unsigned char *bin = b64_decode_dup(b64, strlen(b64), &n);
    if (!bin) return CPS_EINVAL;
    char key[IDS_BLOB_LEN + 16];
    snprintf(key, sizeof key, "%s.import", id);
    /* the first chunk replaces what an earlier, aborted import left */
    int rc = json_integer_value(off) == 0
        ? b->obj_write(b->state, "blobstage", key, (const char *)bin, n, import_done2, call)
        : b->obj_append(b->state, "blobstage", key, (const char *)bin, n, import_done, call);
    free(bin);
    return rc ? rc : CPS_ASYNC;
}

typedef struct landing {
    cps_call *call;
    char id[IDS_BLOB_LEN + 1];
    char key[IDS_BLOB_LEN + 16];    /* blobstage/<id>.import */
    char meta[IDS_BLOB_LEN + 32];   /* blob/<id>.metadata.ndjson */
    char line[128];                /* its first line, for an owned blob */
    bool owned;
    int status;
} landing;

static void landing_end(landing *l, int error)
{
    API->reply(l->call, error, NULL);
    free(l);
}

static void landing_cleaned(void *ud, int status) { (void)status; landing *l = ud; landing_end(l, l->status); }

static void landed(void *ud, int status)
{
    landing *l = ud;
    const cps_storage_backend *b = backend();
    if (status == CPS_OK) { landing_end(l, CPS_OK); return; }
    l->status = status;
    int code = status == CPS_EEXIST ? (l->owned ? CPS_ERR_EEXISTS : CPS_ERR_RENAME_ERR) : status;
    if (l->owned && status != CPS_EEXIST && b) {        /* the metadata written for it goes */
        if (b->obj_delete(b->state, "blob", l->meta, landing_cleaned, l) == CPS_OK) return;
    }
    if (b) b->obj_delete(b->state, "blobstage", l->key, ignore_done, NULL);
    landing_end(l, code);
}

static void land(landing *l)
{
    const cps_storage_backend *b = backend();
    int rc = b ? b->obj_move(b->state, "blobstage", l->key, "blob", l->id, landed, l) : CPS_EIO;
    if (rc) landed(l, rc);
}

static void landing_meta(void *ud, int status)
{
    landing *l = ud;
    if (status != CPS_OK) { landing_end(l, status); return; }
    land(l);
}

static void landing_target(void *ud, int status, uint64_t size)
{
    (void)size;
    landing *l = ud;
    const cps_storage_backend *b = backend();
    if (status == CPS_OK) { if (b) b->obj_delete(b->state, "blobstage", l->key, ignore_done, NULL); landing_end(l, CPS_ERR_EEXISTS); return; }
    if (status != CPS_ENOENT) { landing_end(l, status); return; }
    int rc = b ? b->obj_write(b->state, "blob", l->meta, l->line, strlen(l->line), landing_meta, l) : CPS_EIO;
    if (rc) landing_end(l, rc);
}

static int cmd_import_done(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "id"));
    const char *owner = json_string_value(json_object_get(args, "owner"));
    const cps_storage_backend *b = backend();
    if (!ids_is_blob(id) || !ids_is_key(owner) || !b) return CPS_EINVAL;
    landing *l = calloc(1, sizeof *l);
    if (!l) return CPS_ENOMEM;
    l->call = call;
    memcpy(l->id, id, sizeof l->id);
    snprintf(l->key, sizeof l->key, "%s.import", id);
    snprintf(l->meta, sizeof l->meta, "%s.metadata.ndjson", id);
    l->owned = json_is_true(json_object_get(args, "owned"));
    if (!l->owned) { land(l); return CPS_ASYNC; }
    /* docs/protocol/storage.md 4: the first line of the blob's metadata names its owner;
    ** written once the blob is known not to exist yet */
    snprintf(l->line, sizeof l->line, "{\"owners\":[\"%s\"]}\n", owner);
    int rc = b->obj_size(b->state, "blob", id, landing_target, l);
    if (rc) { free(l); return rc; }
    return CPS_ASYNC;
}

/* ---- BLOB_REMOVE {id, key, reason?} -> "OK" (docs/protocol/rpc.md 8.4) ---------------- */

typedef struct removal {
    cps_call *call;
    char id[IDS_BLOB_LEN + 1];
    char meta_key[IDS_BLOB_LEN + 32];
    char key[IDS_KEY_LEN + 1];         /* the caller, unsafe form */
} removal;

static void removal_end(removal *r, int error, json_t *data)
{
    API->reply(r->call, error, data);
    free(r);
}

static void meta_archived(void *ud, int status)
{
    removal *r = ud;
    if (status != CPS_OK && status != CPS_ENOENT) {
        API->log(BL.self, CPS_LOG_WARN, "blob %s: archiving its metadata: %s", r->id, API->errname(status));
    }
    removal_end(r, CPS_OK, json_string("OK"));
}

static void blob_archived(void *ud, int status)
{
    removal *r = ud;
    const cps_storage_backend *b = backend();
    if (status != CPS_OK) { removal_end(r, status, NULL); return; }
    if (!b || b->obj_archive(b->state, "blob", r->meta_key, meta_archived, r) != CPS_OK) meta_archived(r, CPS_EIO);
}

/* The owners after replaying the metadata log: the first line's object,
** then ADD_OWNERS / RM_OWNERS lines (docs/protocol/history.md 10). */
static bool is_owner(const char *data, size_t len, const char *key)
{
    bool owner = false, first = true;
    const char *end = data + len;
    while (data < end) {
        const char *nl = memchr(data, '\n', (size_t)(end - data));
        size_t n = nl ? (size_t)(nl - data) : (size_t)(end - data);
        json_t *line = n ? json_loadb(data, n, 0, NULL) : NULL;
        json_t *list = NULL;
        int sign = 0;
        if (first && json_is_object(line)) { list = json_object_get(line, "owners"); sign = 1; }
        else if (json_is_array(line)) {
            const char *cmd = json_string_value(json_array_get(line, 0));
            list = json_array_get(line, 1);
            sign = cmd && !strcmp(cmd, "ADD_OWNERS") ? 1 : cmd && !strcmp(cmd, "RM_OWNERS") ? -1 : 0;
        }
        size_t i;
        json_t *k;
        char ku[IDS_KEY_LEN + 1], ks[IDS_KEY_LEN + 1];
        if (json_is_array(list) && sign)
            json_array_foreach(list, i, k)
                if (ids_key_norm(json_string_value(k), ku, ks) && !strcmp(ku, key)) owner = sign > 0;
        if (n) first = false;
        json_decref(line);
        data += n + 1;
    }
    return owner;
}

static void meta_read_done(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    removal *r = ud;
    const cps_storage_backend *b = backend();
    /* No metadata: nobody owns it (main answers the same for a missing blob). */
    if (status == CPS_ENOENT || (status == CPS_OK && !is_owner(data, len, r->key))) {
        removal_end(r, CPS_ERR_INSUFFICIENT_PERMISSIONS, NULL);
        return;
    }
    if (status != CPS_OK) { removal_end(r, status, NULL); return; }
    int rc = b ? b->obj_archive(b->state, "blob", r->id, blob_archived, r) : CPS_EIO;
    if (rc) blob_archived(r, rc);
}

static int cmd_remove(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "id"));
    char unsafe[IDS_KEY_LEN + 1], safe[IDS_KEY_LEN + 1];
    const cps_storage_backend *b = backend();
    if (!ids_is_blob(id)) return CPS_EINVAL;
    if (!ids_key_norm(json_string_value(json_object_get(args, "key")), unsafe, safe)) {
        API->reply(call, CPS_ERR_INSUFFICIENT_PERMISSIONS, NULL);
        return CPS_OK;
    }
    if (!b) return CPS_EIO;
    removal *r = calloc(1, sizeof *r);
    if (!r) return CPS_ENOMEM;
    r->call = call;
    memcpy(r->id, id, sizeof r->id);
    memcpy(r->key, unsafe, sizeof r->key);
    snprintf(r->meta_key, sizeof r->meta_key, "%s.metadata.ndjson", id);
    int rc = b->obj_read(b->state, "blob", r->meta_key, 0, 1 << 20, meta_read_done, r);
    if (rc) { free(r); return rc; }
    return CPS_ASYNC;
}

/* ---- expiry, load, unload ------------------------------------------------ */

typedef struct sweep_ctx { sess **victims; size_t n; uint64_t now; } sweep_ctx;

static void sweep_one(const char *key, void *val, void *ud)
{
    (void)key;
    sess *s = val;
    sweep_ctx *c = ud;
    if (!s->head && !s->running && c->now - s->atime > SESSION_IDLE_MS) c->victims[c->n++] = s;
}

/* docs/protocol/rpc.md 8.3: sessions idle for 5 minutes go (their staged bytes stay,
** for UPLOAD_STATUS to report). */
static void sweep(cps_timer *t, void *ud)
{
    (void)t; (void)ud;
    if (!ST.sess || !strmap_count(ST.sess)) return;
    sweep_ctx c = { malloc(strmap_count(ST.sess) * sizeof(sess *)), 0, API->now_ms() };
    if (!c.victims) return;
    strmap_each(ST.sess, sweep_one, &c);
    for (size_t i = 0; i < c.n; i++) {
        strmap_del(ST.sess, c.victims[i]->safe);
        sess_free(c.victims[i]);
    }
    free(c.victims);
}

int stage_init(void)
{
    /* the Node server's answer to an undecodable chunk */
    ST.sess = strmap_new();
    ST.completing = strmap_new();
    if (!ST.sess || !ST.completing) { stage_fini(); return CPS_ENOMEM; }
    for (size_t i = 0; i < sizeof KEYED / sizeof KEYED[0]; i++) {
        int rc = API->register_role_command(BL.self, "storage", KEYED[i].name, keyed_cmd,
                                            (void *)(intptr_t)KEYED[i].kind);
        if (rc) { stage_fini(); return rc; }   /* CPS_ENOENT: no storage node here */
    }
    int rc = API->register_role_command(BL.self, "storage", "BLOB_SIZE", cmd_size, NULL);
    if (!rc) rc = API->register_role_command(BL.self, "storage", "BLOB_REMOVE", cmd_remove, NULL);
    if (!rc) rc = API->register_role_command(BL.self, "storage", "BLOB_READ", cmd_read, NULL);
    if (!rc) rc = API->register_role_command(BL.self, "storage", "BLOB_IMPORT", cmd_import, NULL);
    if (!rc) rc = API->register_role_command(BL.self, "storage", "BLOB_IMPORT_DONE", cmd_import_done, NULL);
    if (rc) { stage_fini(); return rc; }
    ST.sweep = API->timer_start(BL.self, 60000, 60000, sweep, NULL);
    return CPS_OK;
}

static void collect(const char *key, void *val, void *ud)
{
    (void)key;
    sess ***at = ud;
    *(*at)++ = val;
}

/* Waiting operations are answered ECANCELED now; a key whose head
** operation waits for the backend or a query stays, detached, until that
** callback (always made, with ECANCELED at unload) frees it. */
void stage_fini(void)
{
    if (ST.sess) {
        size_t n = strmap_count(ST.sess);
        sess **all = malloc((n ? n : 1) * sizeof *all), **at = all;
        if (all) strmap_each(ST.sess, collect, &at);
        for (size_t i = 0; all && i < n; i++) {
            sess *s = all[i];
            bop *rest = s->running ? s->head->next : s->head;
            if (s->running) { s->head->next = NULL; s->tail = s->head; s->nops = 1; }
            else { s->head = s->tail = NULL; s->nops = 0; }
            while (rest) {
                bop *next = rest->next;
                API->reply(rest->call, CPS_ECANCELED, NULL);
                bop_free(rest);
                rest = next;
            }
            if (s->running) ST.orphans++;
            else sess_free(s);
        }
        free(all);
        strmap_free(ST.sess, NULL);
    }
    strmap_free(ST.completing, NULL);
    ST.sess = NULL;
    ST.completing = NULL;
    ST.sweep = NULL;               /* the host stops the plugin's timers */
}
