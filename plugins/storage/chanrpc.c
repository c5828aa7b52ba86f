/*
** chanrpc.c - the channel commands that RPC plugins call on the storage
** node owning the channel (spec docs/protocol/rpc.md §5-§6, docs/protocol/history.md §9-§12): stored
** size, metadata, "is it new", writes to mailboxes, the owners' acts
** (SET_METADATA, clear, remove, trim) and line deletion with the server's
** curve key.  Each runs as an op of the channel's queue, so it is ordered
** with the channel's messages.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "storage.h"
#include "ids.h"
#include "fanout.h"
#include "text.h"

/* ---- helpers ---- */

static void finish(channel *ch, op *o, int err, json_t *data)
{
    API->reply(o->call, err, data);
    o->call = NULL;
    ch_done(ch, o);
}

/* Owners' commands: the signer must be in `owners` (docs/protocol/history.md §10.5).
** CPS_OK, or the error to answer with. */
static int owner_check(channel *ch, const char *key)
{
    json_t *owners = json_object_get(ch->meta, "owners");
    if (!json_is_array(owners)) return CPS_ERR_E_NO_OWNERS;
    size_t i;
    json_t *k;
    json_array_foreach(owners, i, k)
        if (key && json_is_string(k) && strcmp(json_string_value(k), key) == 0) return CPS_OK;
    return CPS_ERR_INSUFFICIENT_PERMISSIONS;
}

/* Queue `run` on the channel named in args.channel (valid 32/33 only). */
static int enqueue_on(cps_call *call, json_t *args, op_fn run, bool allow_admin)
{
    const char *id = json_string_value(json_object_get(args, "channel"));
    enum ids_kind k = ids_classify(id);
    if (k != IDS_PAD && (k != IDS_ADMIN || !allow_admin)) {
        API->reply(call, CPS_ERR_INVALID_CHAN, NULL);
        return CPS_OK;
    }
    channel *ch = ch_get(id, true);
    if (!ch) return CPS_ENOMEM;
    int rc = ch_enqueue(ch, run, call, json_incref(args));
    return rc ? rc : CPS_ASYNC;
}

/* The caller's authenticated keys, then `then(ch, o, keys)`. */
typedef void (*keys_fn)(channel *ch, op *o, json_t *keys);
typedef struct keys_wait { char id[40]; op *o; keys_fn then; } keys_wait;

static void keys_got(void *ud, int error, json_t *data)
{
    keys_wait *w = ud;
    channel *ch = ch_get(w->id, false);
    json_t *keys = error ? NULL : json_object_get(data, "keys");
    if (ch) w->then(ch, w->o, json_is_array(keys) ? keys : NULL);
    free(w);
}

static void with_keys(channel *ch, op *o, keys_fn then)
{
    const char *user = json_string_value(json_object_get(o->args, "user"));
    char core[64];
    keys_wait *w = calloc(1, sizeof *w);
    if (!w || !user || !API->owner(ST.self, "core", user, core, sizeof core)) {
        free(w);
        then(ch, o, NULL);
        return;
    }
    snprintf(w->id, sizeof w->id, "%s", ch->id);
    w->o = o;
    w->then = then;
    API->query(ST.self, core, "GET_AUTH_KEYS", json_pack("{s s}", "user", user), 0, keys_got, w);
}

/* ---- CHANNEL_SIZE {id} -> {size}: log + metadata log (docs/protocol/rpc.md §5) ---- */

typedef struct sizing { cps_call *call; char id[64]; uint64_t log; } sizing;

static void size_meta(void *ud, int status, const char *data, size_t len)
{
    (void)data;
    sizing *z = ud;
    API->reply(z->call, CPS_OK, json_pack("{s I}", "size", (json_int_t)(z->log + (status == CPS_OK ? len : 0))));
    free(z);
}

static void size_log(void *ud, int status, uint64_t size)
{
    sizing *z = ud;
    const cps_storage_backend *b = backend();
    z->log = status == CPS_OK ? size : 0;
    if (!b || b->meta_read(b->state, z->id, size_meta, z)) size_meta(z, CPS_EIO, NULL, 0);
}

/* A blob's size is its file's (docs/protocol/rpc.md 5): 0 when it is missing. */
static void size_blob(void *ud, int status, uint64_t size)
{
    API->reply(ud, CPS_OK, json_pack("{s I}", "size", (json_int_t)(status == CPS_OK ? size : 0)));
}

static int cmd_channel_size(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "id"));
    /* by length first: a malformed id of a known length is answered 0 */
    enum ids_kind shape = id ? ids_kind_of_len(strlen(id)) : IDS_OTHER;
    if (shape != IDS_PAD && shape != IDS_ADMIN && shape != IDS_BLOB) return CPS_EINVAL;
    enum ids_kind k = ids_classify(id);
    const cps_storage_backend *b = backend();
    if (k == IDS_BLOB && b && CPS_STORAGE_HAS(b, obj_size) && b->obj_size &&
        b->obj_size(b->state, "blob", id, size_blob, call) == CPS_OK)
        return CPS_ASYNC;
    if (!ids_is_stored_channel(id) || !b) {   /* not a channel, or no object store */
        API->reply(call, CPS_OK, json_pack("{s i}", "size", 0));
        return CPS_OK;
    }
    sizing *z = calloc(1, sizeof *z);
    if (!z) return CPS_ENOMEM;
    z->call = call;
    snprintf(z->id, sizeof z->id, "%s", id);
    if (b->channel_size(b->state, id, size_log, z)) { free(z); return CPS_EIO; }
    return CPS_ASYNC;
}

/* ---- GET_METADATA {channel, user} -> {metadata} ---- */

static void meta_answer(channel *ch, op *o, json_t *keys)
{
    json_t *m = ch->meta;
    if (m && json_is_true(json_object_get(m, "restricted")) && !meta_allows(m, keys)) {
        /* main's privacy form: who can grant access, nothing more */
        finish(ch, o, CPS_OK, json_pack("{s {s b s o s b}}", "metadata", "restricted", 1,
                                      "allowed", meta_allow_list(m), "rejected", 1));
        return;
    }
    finish(ch, o, CPS_OK, json_pack("{s O}", "metadata", m ? m : json_null()));
}

static void op_get_metadata(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    if (json_is_true(json_object_get(ch->meta, "restricted"))) with_keys(ch, o, meta_answer);
    else meta_answer(ch, o, NULL);
}

static int cmd_get_metadata(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    return enqueue_on(call, args, op_get_metadata, false);
}

/* ---- IS_NEW {channel} -> {isNew, reason?} ---- */

typedef struct isnew { char id[40]; op *o; } isnew;

static void isnew_placeholder(void *ud, int status, const char *data, size_t len)
{
    isnew *w = ud;
    channel *ch = ch_get(w->id, false);
    json_t *r = json_pack("{s b}", "isNew", 1);
    if (status == CPS_OK) json_object_set_new(r, "reason", json_stringn(data, len));
    if (ch) finish(ch, w->o, CPS_OK, r); else json_decref(r);
    free(w);
}

static void op_is_new(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    if (ch->idx.arrays > 0) { finish(ch, o, CPS_OK, json_pack("{s b}", "isNew", 0)); return; }
    const cps_storage_backend *b = backend();
    isnew *w = calloc(1, sizeof *w);
    if (ch->log_exists || !w || !b) { free(w); finish(ch, o, CPS_OK, json_pack("{s b}", "isNew", 1)); return; }
    snprintf(w->id, sizeof w->id, "%s", ch->id);
    w->o = o;
    if (b->placeholder_read(b->state, ch->id, isnew_placeholder, w)) isnew_placeholder(w, CPS_EIO, NULL, 0);
}

static int cmd_is_new(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    return enqueue_on(call, args, op_is_new, true);
}

/* ---- WRITE_PRIVATE {channel, content, user} -> {time} (docs/protocol/history.md §12) ---- */

static void private_checked(channel *ch, op *o, json_t *keys)
{
    if (json_is_true(json_object_get(ch->meta, "restricted")) && !meta_allows(ch->meta, keys)) {
        finish(ch, o, CPS_ERR_INSUFFICIENT_PERMISSIONS, NULL);
        return;
    }
    json_object_set_new(o->args, "private", json_true());
    json_object_set_new(o->args, "user", json_null());    /* the sender is not stored */
    op_message(ch, o);
}

/* The admin broadcast channel is restricted to the administrators
** (docs/protocol/admin.md §5): the sender's connection must have
** authenticated with a key of the live admin list. */
static void admin_checked(channel *ch, op *o, json_t *keys)
{
    json_t *admins = API->config_get(ST.self, "instance.admin_keys");
    size_t i, j;
    json_t *k, *a;
    json_array_foreach(keys, i, k) {
        char unsafe[64];
        const char *key = json_string_value(k);
        if (!key || strlen(key) >= sizeof unsafe) continue;
        for (size_t c = 0; c <= strlen(key); c++) unsafe[c] = key[c] == '-' ? '/' : key[c];
        json_array_foreach(admins, j, a)
            if (json_is_string(a) && !strcmp(json_string_value(a), unsafe)) {
                json_object_set_new(o->args, "private", json_true());
                json_object_set_new(o->args, "user", json_null());
                op_message(ch, o);
                return;
            }
    }
    finish(ch, o, CPS_ERR_INSUFFICIENT_PERMISSIONS, NULL);
}

static void op_write_private(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_ERR_METADATA_ERR, NULL); return; }
    if (ids_is_admin(ch->id)) { with_keys(ch, o, admin_checked); return; }
    if (json_is_true(json_object_get(ch->meta, "restricted"))) with_keys(ch, o, private_checked);
    else private_checked(ch, o, NULL);
}

static int cmd_write_private(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_t *content = json_object_get(args, "content");
    if (!json_is_string(content) || json_string_length(content) == 0) {
        API->reply(call, CPS_ERR_INVALID_MESSAGE, NULL);
        return CPS_OK;
    }
    return enqueue_on(call, args, op_write_private, true);
}

/* ---- SET_METADATA {channel, command, value, key} (docs/protocol/history.md §10.5) ---- */

typedef struct meta_write { char id[40]; op *o; json_t *next; } meta_write;

/* Restricted after the change: each member's authenticated keys decide
** whether it gets the new metadata or is kicked: {"error":"ERESTRICTED"},
** removed from the channel (and its front forgets the channel), and the
** others see it LEAVE (docs/protocol/history.md §8, main's behaviour). */
typedef struct kick { char id[40]; json_t *members; json_t *allowed_of; int waiting; } kick;
typedef struct kick_one { kick *k; char user[40]; } kick_one;

static void kick_finish(kick *k)
{
    channel *ch = ch_get(k->id, false);
    if (ch) ch->readers--;
    if (ch && ch->meta) {
        char *meta = json_dumps(ch->meta, JSON_COMPACT);
        char notice[128];
        snprintf(notice, sizeof notice, "{\"error\":\"%s\",\"channel\":\"%s\"}", API->errname(CPS_ERR_ERESTRICTED), ch->id);
        size_t i;
        json_t *m;
        json_array_foreach(k->members, i, m) {
            const char *user = json_string_value(json_array_get(m, 0));
            json_t *front = json_array_get(m, 1);
            bool ok = json_is_true(json_object_get(k->allowed_of, user));
            hk_notify_one(user, json_string_value(front), ok ? meta : notice);
            if (ok) continue;
            /* drop it from the members (copy-on-write) and tell the rest */
            json_t *rest = json_array();
            size_t j;
            json_t *x;
            json_array_foreach(ch->members, j, x)
                if (strcmp(json_string_value(json_array_get(x, 0)), user)) json_array_append(rest, x);
            json_decref(ch->members);
            ch->members = rest;
            API->send(ST.self, json_string_value(front), "FORGET_CHANNEL",
                      json_pack("{s s s s}", "user", user, "channel", ch->id));
            json_t *leave = json_pack("[i s s s]", 0, user, "LEAVE", ch->id);
            cps_fanout(API, ST.self, ch->members, NULL, leave);
            json_decref(leave);
        }
        free(meta);
    }
    json_decref(k->members);
    json_decref(k->allowed_of);
    free(k);
    if (ch) ch_release(ch);
}

static void kick_keys(void *ud, int error, json_t *data)
{
    kick_one *o = ud;
    kick *k = o->k;
    channel *ch = ch_get(k->id, false);
    json_t *keys = error ? NULL : json_object_get(data, "keys");
    bool ok = ch && ch->meta && meta_allows(ch->meta, keys);
    json_object_set_new(k->allowed_of, o->user, json_boolean(ok));
    free(o);
    if (--k->waiting == 0) kick_finish(k);
}

static void notify_metadata(channel *ch)
{
    if (!json_is_true(json_object_get(ch->meta, "restricted"))) {
        char *text = json_dumps(ch->meta, JSON_COMPACT);
        if (text) hk_notify_members(ch, text);
        free(text);
        return;
    }
    kick *k = calloc(1, sizeof *k);
    if (!k) return;
    snprintf(k->id, sizeof k->id, "%s", ch->id);
    k->members = json_incref(ch->members);
    k->allowed_of = json_object();
    k->waiting = 1;
    ch->readers++;            /* keep the channel while keys are asked */
    size_t i;
    json_t *m;
    json_array_foreach(k->members, i, m) {
        const char *user = json_string_value(json_array_get(m, 0));
        char core[64];
        kick_one *o = calloc(1, sizeof *o);
        if (!o || !user || !API->owner(ST.self, "core", user, core, sizeof core)) { free(o); continue; }
        o->k = k;
        snprintf(o->user, sizeof o->user, "%s", user);
        k->waiting++;
        API->query(ST.self, core, "GET_AUTH_KEYS", json_pack("{s s}", "user", user), 0, kick_keys, o);
    }
    if (--k->waiting == 0) kick_finish(k);
}

static void meta_written(void *ud, int status, uint64_t size)
{
    (void)size;
    meta_write *w = ud;
    channel *ch = ch_get(w->id, false);
    if (ch) {
        if (status != CPS_OK) {
            finish(ch, w->o, CPS_EIO, NULL);
        } else {
            json_decref(ch->meta);
            ch->meta = json_incref(w->next);
            notify_metadata(ch);
            finish(ch, w->o, CPS_OK, json_pack("{s O}", "metadata", ch->meta));
        }
    }
    json_decref(w->next);
    free(w);
}

static bool is_in(json_t *list, const char *key)
{
    size_t i;
    json_t *k;
    json_array_foreach(list, i, k) if (json_is_string(k) && strcmp(json_string_value(k), key) == 0) return true;
    return false;
}

static void op_set_metadata(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    const char *key = json_string_value(json_object_get(o->args, "key"));
    const char *cmd = json_string_value(json_object_get(o->args, "command"));
    json_t *value = json_object_get(o->args, "value");
    if (!cmd) { finish(ch, o, CPS_ERR_INVALID_COMMAND, NULL); return; }
    if (!json_is_array(json_object_get(ch->meta, "owners"))) { finish(ch, o, CPS_ERR_E_NO_OWNERS, NULL); return; }
    bool owner = is_in(json_object_get(ch->meta, "owners"), key);
    bool pending = is_in(json_object_get(ch->meta, "pending_owners"), key);
    if (!owner) {
        /* a pending owner may only accept or decline, for itself */
        bool self_only = json_is_array(value) && json_array_size(value) == 1 &&
                         json_is_string(json_array_get(value, 0)) &&
                         strcmp(json_string_value(json_array_get(value, 0)), key) == 0;
        if (!pending || !self_only || (strcmp(cmd, "ADD_OWNERS") && strcmp(cmd, "RM_PENDING_OWNERS"))) {
            finish(ch, o, CPS_ERR_INSUFFICIENT_PERMISSIONS, NULL);
            return;
        }
    }
    json_t *next = json_deep_copy(ch->meta);
    int rc = meta_apply(next, cmd, value);
    if (rc < 0) {
        json_decref(next);
        finish(ch, o, rc == CPS_ENOENT ? CPS_ERR_UNSUPPORTED_COMMAND : CPS_ERR_INVALID_ARGS, NULL);
        return;
    }
    if (rc == 0) {   /* nothing changed: not written, still answered */
        json_decref(next);
        finish(ch, o, CPS_OK, json_pack("{s O}", "metadata", ch->meta));
        return;
    }
    json_t *line = json_pack("[s O I]", cmd, value, (json_int_t)API->now_ms());
    char *text = json_dumps(line, JSON_COMPACT);
    json_decref(line);
    meta_write *w = calloc(1, sizeof *w);
    const cps_storage_backend *b = backend();
    size_t n = text ? strlen(text) : 0;
    char *buf = text ? realloc(text, n + 2) : NULL;
    if (!w || !buf || !b) { free(w); free(buf ? buf : text); json_decref(next); finish(ch, o, CPS_ENOMEM, NULL); return; }
    buf[n] = '\n';
    buf[n + 1] = 0;
    snprintf(w->id, sizeof w->id, "%s", ch->id);
    w->o = o;
    w->next = next;
    int wrc = b->meta_append(b->state, ch->id, buf, n + 1, meta_written, w);
    free(buf);
    if (wrc) meta_written(w, wrc, 0);
}

static int cmd_set_metadata(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    return enqueue_on(call, args, op_set_metadata, false);
}

/* ---- CLEAR_OWNED {channel, key} (docs/protocol/history.md §9.4) ---- */

typedef struct act { char id[40]; op *o; char *text; } act;

static act *act_new(channel *ch, op *o)
{
    act *a = calloc(1, sizeof *a);
    if (a) { snprintf(a->id, sizeof a->id, "%s", ch->id); a->o = o; }
    return a;
}

static void cleared(void *ud, int status)
{
    act *a = ud;
    channel *ch = ch_get(a->id, false);
    if (ch) {
        ch_forget_state(ch);
        if (status == CPS_OK) {
            char buf[128];
            snprintf(buf, sizeof buf, "{\"error\":\"%s\",\"channel\":\"%s\"}", API->errname(CPS_ERR_ECLEARED), ch->id);
            hk_notify_members(ch, buf);
        }
        finish(ch, a->o, status == CPS_OK ? CPS_OK : CPS_EIO, NULL);
    }
    free(a);
}

static void op_clear(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    int why = owner_check(ch, json_string_value(json_object_get(o->args, "key")));
    if (why) { finish(ch, o, why, NULL); return; }
    /* keep a legacy metadata first line, drop everything else */
    uint64_t keep = ch->idx.legacy_len;
    const cps_storage_backend *b = backend();
    act *a = act_new(ch, o);
    if (!a || !b) { free(a); finish(ch, o, CPS_ENOMEM, NULL); return; }
    int rc = ch->log_exists ? b->channel_truncate(b->state, ch->id, keep, cleared, a) : CPS_OK;
    if (!ch->log_exists) cleared(a, CPS_OK);
    else if (rc) cleared(a, rc);
}

static int cmd_clear(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *id = json_string_value(json_object_get(args, "channel"));
    if (ids_kind_of_len(id ? strlen(id) : 0) != IDS_PAD) { API->reply(call, CPS_ERR_INVALID_ARGUMENTS, NULL); return CPS_OK; }
    return enqueue_on(call, args, op_clear, false);
}

/* ---- REMOVE_OWNED {channel, key, reason} (docs/protocol/history.md §9.2) ---- */

static void removed(void *ud, int status)
{
    act *a = ud;
    channel *ch = ch_get(a->id, false);
    if (ch) {
        if (status == CPS_OK) {
            json_t *notice = json_pack("{s s s s s s}", "error", API->errname(CPS_ERR_EDELETED), "message", a->text,
                                       "channel", ch->id);
            char *text = json_dumps(notice, JSON_COMPACT);
            json_decref(notice);
            if (text) hk_notify_members(ch, text);
            free(text);
        }
        ch_forget_state(ch);
        finish(ch, a->o, status == CPS_OK ? CPS_OK : CPS_EIO, status == CPS_OK ? json_pack("{s s}", "result", "OK") : NULL);
    }
    free(a->text);
    free(a);
}

static void op_remove(channel *ch, op *o)
{
    /* an administrator's archival (CHANNEL_ADMIN_ARCHIVE) needs no owner,
    ** and archiving nothing succeeds (docs/protocol/admin.md §3.4) */
    bool admin = json_is_true(json_object_get(o->args, "admin"));
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    if (!ch->log_exists && !ch->meta) {
        finish(ch, o, admin ? CPS_OK : CPS_ENOENT, admin ? json_pack("{s s}", "result", "NONE") : NULL);
        return;
    }
    int why = admin ? CPS_OK : owner_check(ch, json_string_value(json_object_get(o->args, "key")));
    if (why) { finish(ch, o, why, NULL); return; }
    const char *reason = json_string_value(json_object_get(o->args, "reason"));
    const cps_storage_backend *b = backend();
    act *a = act_new(ch, o);
    if (!a || !b || !(a->text = strdup(reason && *reason ? reason : "ARCHIVE_OWNED"))) {
        if (a) free(a->text);
        free(a);
        finish(ch, o, CPS_ENOMEM, NULL);
        return;
    }
    int rc = b->channel_archive(b->state, ch->id, a->text, removed, a);
    if (rc) removed(a, rc);
}

static int cmd_remove(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    return enqueue_on(call, args, op_remove, true);
}

/* CHANNEL_ADMIN_ARCHIVE {channel, reason}: REMOVE_OWNED for an
** administrator (ARCHIVE_DOCUMENT): the members get the same notice. */
static int cmd_admin_archive(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    const char *reason = json_string_value(json_object_get(args, "reason"));
    json_t *a = json_pack("{s O s s s b}", "channel", json_object_get(args, "channel"),
                          "reason", reason ? reason : "MODERATION_PAD:undefined", "admin", 1);
    if (!a) return CPS_EINVAL;
    int rc = enqueue_on(call, a, op_remove, false);
    json_decref(a);
    return rc;
}

/* ---- TRIM_OWNED {channel, key, hash} (docs/protocol/history.md §9.5) ---- */

static void trim_meta_written(void *ud, int status)
{
    act *a = ud;
    channel *ch = ch_get(a->id, false);
    if (ch) {
        ch_forget_state(ch);
        finish(ch, a->o, status == CPS_OK ? CPS_OK : CPS_EIO, status == CPS_OK ? json_pack("{s s}", "result", "OK") : NULL);
    }
    free(a->text);
    free(a);
}

static void trimmed(void *ud, int status)
{
    act *a = ud;
    const cps_storage_backend *b = backend();
    if (status != CPS_OK || !b || !a->text) { trim_meta_written(a, status ? status : CPS_EIO); return; }
    /* the metadata log becomes one line: the current state */
    int rc = b->meta_write(b->state, a->id, a->text, strlen(a->text), trim_meta_written, a);
    if (rc) trim_meta_written(a, rc);
}

static void trim_found(channel *ch, void *ud, bool found, uint64_t off)
{
    op *o = ud;
    if (!found) { finish(ch, o, CPS_ERR_HASH_NOT_FOUND, NULL); return; }
    const cps_storage_backend *b = backend();
    act *a = act_new(ch, o);
    char *meta = ch->meta ? json_dumps(ch->meta, JSON_COMPACT) : NULL;
    if (!a || !b) { free(meta); free(a); finish(ch, o, CPS_ENOMEM, NULL); return; }
    if (meta) {
        size_t n = strlen(meta);
        a->text = malloc(n + 2);
        if (a->text) { memcpy(a->text, meta, n); a->text[n] = '\n'; a->text[n + 1] = 0; }
        free(meta);
    }
    int rc = b->channel_trim(b->state, ch->id, off, trimmed, a);
    if (rc) trimmed(a, rc);
}

static void op_trim(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    int why = owner_check(ch, json_string_value(json_object_get(o->args, "key")));
    if (why) { finish(ch, o, why, NULL); return; }
    ch_find_hash(ch, json_string_value(json_object_get(o->args, "hash")), trim_found, o);
}

static int cmd_trim(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    json_t *hash = json_object_get(args, "hash");
    if (!json_is_string(hash) || json_string_length(hash) != 64) {
        API->reply(call, CPS_ERR_INVALID_ARGS, NULL);
        return CPS_OK;
    }
    return enqueue_on(call, args, op_trim, false);
}

/* ---- the server's curve key pair (docs/protocol/history.md §9.6, docs/protocol/http.md §5.2) ----
** One pair for the whole deployment, so that /api/broadcast (web plugin,
** any process) publishes the key whose secret opens the proofs on every
** storage node, across restarts.  storage:0 keeps it as the record
** server/curve, created on first use; other storage nodes ask storage:0. */

#define B64_32 sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)

typedef void (*curve_fn)(void *ud, bool ok);
typedef struct curve_wait { curve_fn fn; void *ud; struct curve_wait *next; } curve_wait;

static struct {
    bool have, loading;
    unsigned char pk[crypto_box_PUBLICKEYBYTES], sk[crypto_box_SECRETKEYBYTES];
    char pub[B64_32], sec[B64_32];
    curve_wait *waiting;
} CV;

static void curve_flush(bool ok)
{
    curve_wait *w = CV.waiting;
    CV.waiting = NULL;
    CV.loading = false;     /* a failure is retried by the next caller */
    while (w) {
        curve_wait *n = w->next;
        w->fn(w->ud, ok);
        free(w);
        w = n;
    }
}

/* Takes {public, secret} if they are a matching pair. */
static bool curve_take(json_t *o)
{
    unsigned char pk[32], sk[32], derived[32];
    bool ok = b64_decode_exact(json_string_value(json_object_get(o, "public")), pk, 32) &&
              b64_decode_exact(json_string_value(json_object_get(o, "secret")), sk, 32) &&
              crypto_scalarmult_base(derived, sk) == 0 && sodium_memcmp(derived, pk, 32) == 0;
    if (ok) {
        memcpy(CV.pk, pk, 32);
        memcpy(CV.sk, sk, 32);
        b64_encode(pk, 32, CV.pub, sizeof CV.pub);
        b64_encode(sk, 32, CV.sec, sizeof CV.sec);
        CV.have = true;
    }
    sodium_memzero(sk, sizeof sk);
    return ok;
}

static void curve_stored(void *ud, int status)
{
    (void)ud;
    if (status == CPS_OK) CV.have = true;
    else API->log(ST.self, CPS_LOG_ERROR, "storing the server curve key: %s", API->errname(status));
    curve_flush(CV.have);
}

static void curve_record(void *ud, int status, const char *data, size_t len)
{
    (void)ud;
    const cps_storage_backend *b = backend();
    if (status == CPS_OK) {
        json_t *o = json_loadb(data, len, 0, NULL);
        /* a damaged record is not replaced: its key may be published */
        if (!curve_take(o)) API->log(ST.self, CPS_LOG_ERROR, "the record server/curve is not a curve key pair");
        json_decref(o);
        curve_flush(CV.have);
        return;
    }
    if (status != CPS_ENOENT || !b || sodium_init() < 0) { curve_flush(false); return; }
    crypto_box_keypair(CV.pk, CV.sk);
    b64_encode(CV.pk, 32, CV.pub, sizeof CV.pub);
    b64_encode(CV.sk, 32, CV.sec, sizeof CV.sec);
    char text[160];
    snprintf(text, sizeof text, "{\"public\":\"%s\",\"secret\":\"%s\"}", CV.pub, CV.sec);
    int rc = b->record_put(b->state, "server", "curve", text, strlen(text), curve_stored, NULL);
    sodium_memzero(text, sizeof text);
    if (rc) curve_stored(NULL, rc);
}

static void curve_answer(void *ud, int error, json_t *data)
{
    (void)ud;
    if (error || !curve_take(data))
        API->log(ST.self, CPS_LOG_WARN, "asking %s for the server curve key: %s", IDS_CURVE_NODE, error ? API->errname(error) : "bad answer");
    curve_flush(CV.have);
}

/* Calls fn(ud, ok) once the key is known (at once if it is). */
static void curve_need(curve_fn fn, void *ud)
{
    if (CV.have) { fn(ud, true); return; }
    curve_wait *w = calloc(1, sizeof *w);
    if (!w) { fn(ud, false); return; }
    w->fn = fn;
    w->ud = ud;
    w->next = CV.waiting;
    CV.waiting = w;
    if (CV.loading) return;
    CV.loading = true;
    const cps_storage_backend *b = backend();
    if (strcmp(ST.node, IDS_CURVE_NODE) != 0) {
        API->query(ST.self, IDS_CURVE_NODE, "SERVER_CURVE_SECRET", json_object(), 0, curve_answer, NULL);
    } else if (!b || b->record_get(b->state, "server", "curve", curve_record, NULL) != CPS_OK) {
        curve_flush(false);
    }
}

static void curve_reply(void *ud, bool ok)
{
    cps_call *call = ud;
    if (!ok) API->reply(call, CPS_ERR_E_NO_KEY, NULL);
    else API->reply(call, CPS_OK, json_pack("{s s}", "public", CV.pub));
}

/* SERVER_CURVE_PUBLIC {} -> {public} (for /api/broadcast) */
static int cmd_curve_public(cps_call *call, json_t *args, void *ud)
{
    (void)args; (void)ud;
    curve_need(curve_reply, call);
    return CPS_ASYNC;
}

static void curve_reply_secret(void *ud, bool ok)
{
    cps_call *call = ud;
    if (!ok) API->reply(call, CPS_ERR_E_NO_KEY, NULL);
    else API->reply(call, CPS_OK, json_pack("{s s s s}", "public", CV.pub, "secret", CV.sec));
}

/* SERVER_CURVE_SECRET {} -> {public, secret}: only for storage nodes. */
static int cmd_curve_secret(cps_call *call, json_t *args, void *ud)
{
    (void)args; (void)ud;
    const char *from = API->call_from(call);
    if (!from || strncmp(from, "storage:", 8) != 0) { API->reply(call, CPS_EFORBIDDEN, NULL); return CPS_OK; }
    curve_need(curve_reply_secret, call);
    return CPS_ASYNC;
}

/* ---- DELETE_LINE {channel, hash, proof} (docs/protocol/history.md §9.6) ---- */


/* proof = <base64 nonce>|<base64 box>.  Malformed (EINVAL) is what Node's
** decoding refuses; sizes that cannot open anything are merely false. */
typedef struct proof { unsigned char *nonce, *box; size_t nlen, blen; } proof;

static void proof_free(proof *p) { free(p->nonce); free(p->box); }

static bool proof_parse(const char *text, proof *p)
{
    memset(p, 0, sizeof *p);
    const char *bar = text ? strchr(text, '|') : NULL;
    if (!bar || strchr(bar + 1, '|')) return false;
    p->nonce = b64_decode_dup(text, (size_t)(bar - text), &p->nlen);
    p->box = b64_decode_dup(bar + 1, strlen(bar + 1), &p->blen);
    if (p->nonce && p->box) return true;
    proof_free(p);
    return false;
}

typedef struct del_line { char id[40]; op *o; uint64_t off, len; char *meta; } del_line;

static void del_end(del_line *d, int err)
{
    channel *ch = ch_get(d->id, false);     /* held: its op is busy */
    if (ch) finish(ch, d->o, err, NULL);
    free(d->meta);
    free(d);
}

static void del_meta_written(void *ud, int status)
{
    del_line *d = ud;
    channel *ch = ch_get(d->id, false);
    if (ch) ch_forget_state(ch);            /* the index and metadata are rebuilt */
    del_end(d, status == CPS_OK ? CPS_OK : CPS_EIO);
}

static void del_cut(void *ud, int status)
{
    del_line *d = ud;
    const cps_storage_backend *b = backend();
    if (status != CPS_OK || !b || !d->meta) { del_meta_written(d, status ? status : CPS_EIO); return; }
    /* the metadata log becomes one line: the current state (as a trim) */
    int rc = b->meta_write(b->state, d->id, d->meta, strlen(d->meta), del_meta_written, d);
    if (rc) del_meta_written(d, rc);
}

/* Whether `line` (a stored message) carries a sender key that opens the
** proof to the hash: content = base64(signature 64, nonce 24, key 32, ...). */
static bool proof_ok(const char *line, size_t len, const char *hash, const char *text)
{
    unsigned char plain[HK_HASH_LEN];
    json_t *msg = json_loadb(line, len, 0, NULL);
    const char *content = json_string_value(json_array_get(msg, 4));
    size_t rawlen = 0;
    unsigned char *raw = content ? b64_decode_dup(content, strlen(content), &rawlen) : NULL;
    proof p;
    bool parsed = proof_parse(text, &p);
    bool ok = raw && parsed && rawlen >= 64 + 24 + 32 && p.nlen == crypto_box_NONCEBYTES &&
              p.blen == crypto_box_MACBYTES + HK_HASH_LEN &&
              crypto_box_open_easy(plain, p.box, p.blen, p.nonce, raw + 64 + 24, CV.sk) == 0 &&
              memcmp(plain, hash, HK_HASH_LEN) == 0;
    if (parsed) proof_free(&p);
    free(raw);
    json_decref(msg);
    return ok;
}

static void del_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    (void)next; (void)eof;
    del_line *d = ud;
    channel *ch = ch_get(d->id, false);
    const char *nl = status == CPS_OK && data ? memchr(data, '\n', len) : NULL;
    if (!ch || !nl) { del_end(d, status == CPS_OK ? CPS_ERR_HASH_NOT_FOUND : CPS_EIO); return; }
    json_t *args = d->o->args;
    const char *hash = json_string_value(json_object_get(args, "hash"));
    if (!proof_ok(data, (size_t)(nl - data), hash, json_string_value(json_object_get(args, "proof")))) {
        del_end(d, CPS_ERR_HASH_NOT_FOUND);
        return;
    }
    const cps_storage_backend *b = backend();
    d->len = (uint64_t)(nl - data) + 1;
    char *meta = ch->meta ? json_dumps(ch->meta, JSON_COMPACT) : NULL;
    if (meta) {
        size_t n = strlen(meta);
        d->meta = malloc(n + 2);
        if (d->meta) { memcpy(d->meta, meta, n); d->meta[n] = '\n'; d->meta[n + 1] = 0; }
        free(meta);
    }
    int rc = b ? b->channel_cut(b->state, d->id, d->off, d->len, del_cut, d) : CPS_EIO;
    if (rc) del_cut(d, rc);
}

static void del_found(channel *ch, void *ud, bool found, uint64_t off)
{
    op *o = ud;
    const cps_storage_backend *b = backend();
    del_line *d = found ? calloc(1, sizeof *d) : NULL;
    if (!found) { finish(ch, o, CPS_ERR_HASH_NOT_FOUND, NULL); return; }
    if (!d || !b) { free(d); finish(ch, o, CPS_ENOMEM, NULL); return; }
    snprintf(d->id, sizeof d->id, "%s", ch->id);
    d->o = o;
    d->off = off;
    /* max 1: exactly the one line there */
    int rc = b->channel_read(b->state, ch->id, off, 1, del_read, d);
    if (rc) del_read(d, rc, NULL, 0, off, true);
}

typedef struct del_wait { char id[40]; op *o; } del_wait;

static void del_keyed(void *ud, bool ok)
{
    del_wait *w = ud;
    channel *ch = ch_get(w->id, false);
    if (ch && !ok) finish(ch, w->o, CPS_ERR_E_NO_KEY, NULL);
    else if (ch) ch_find_hash(ch, json_string_value(json_object_get(w->o->args, "hash")), del_found, w->o);
    free(w);
}

static void op_delete_line(channel *ch, op *o)
{
    if (ch->open_status != CPS_OK) { finish(ch, o, CPS_EIO, NULL); return; }
    if (!json_is_true(json_object_get(ch->meta, "deleteLines"))) { finish(ch, o, CPS_EFORBIDDEN, NULL); return; }
    const cps_storage_backend *b = backend();
    if (!b || !CPS_STORAGE_HAS(b, channel_cut)) { finish(ch, o, CPS_EIO, NULL); return; }
    if (!ch->log_exists) { finish(ch, o, CPS_ERR_HASH_NOT_FOUND, NULL); return; }
    del_wait *w = calloc(1, sizeof *w);
    if (!w) { finish(ch, o, CPS_ENOMEM, NULL); return; }
    snprintf(w->id, sizeof w->id, "%s", ch->id);
    w->o = o;
    curve_need(del_keyed, w);
}

static int cmd_delete_line(cps_call *call, json_t *args, void *ud)
{
    (void)ud;
    proof p;
    json_t *hash = json_object_get(args, "hash");
    if (!json_is_string(hash) || !proof_parse(json_string_value(json_object_get(args, "proof")), &p)) {
        API->reply(call, CPS_EINVAL, NULL);
        return CPS_OK;
    }
    proof_free(&p);
    /* the scan compares whole hashes: another length is never found */
    if (json_string_length(hash) != HK_HASH_LEN) { API->reply(call, CPS_ERR_HASH_NOT_FOUND, NULL); return CPS_OK; }
    return enqueue_on(call, args, op_delete_line, false);
}

int chanrpc_register(void)
{
    static const struct { const char *name; cps_command_fn fn; } cmds[] = {
        { "CHANNEL_SIZE", cmd_channel_size }, { "CHANNEL_METADATA", cmd_get_metadata },
        { "CHANNEL_IS_NEW", cmd_is_new }, { "CHANNEL_WRITE_PRIVATE", cmd_write_private },
        { "CHANNEL_SET_METADATA", cmd_set_metadata }, { "CHANNEL_CLEAR", cmd_clear },
        { "CHANNEL_REMOVE", cmd_remove }, { "CHANNEL_TRIM", cmd_trim },
        { "CHANNEL_DELETE_LINE", cmd_delete_line }, { "SERVER_CURVE_PUBLIC", cmd_curve_public },
        { "SERVER_CURVE_SECRET", cmd_curve_secret }, { "CHANNEL_ADMIN_ARCHIVE", cmd_admin_archive },
    };
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        int rc = API->register_command(ST.self, cmds[i].name, cmds[i].fn, NULL);
        if (rc) return rc;
    }
    return CPS_OK;
}
