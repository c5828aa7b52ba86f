/*
** metadata.c - channel metadata (spec docs/protocol/history.md §10): replaying the
** dedicated metadata log, the commands that change it, and the allow list.
*/
#include <stdlib.h>
#include <string.h>
#include "storage.h"

/* docs/protocol/history.md §10: keys are 44-character strings; only the length is checked. */
static bool valid_key(json_t *k) { return json_is_string(k) && ids_kind_of_len(json_string_length(k)) == IDS_KEY; }

static bool has(json_t *list, json_t *k)
{
    size_t i;
    json_t *x;
    json_array_foreach(list, i, x) if (json_equal(x, k)) return true;
    return false;
}

static void remove_all(json_t *list, json_t *keys)
{
    for (size_t i = json_array_size(list); i > 0; i--)
        if (has(keys, json_array_get(list, i - 1))) json_array_remove(list, i - 1);
}

static json_t *ensure_list(json_t *meta, const char *name)
{
    json_t *l = json_object_get(meta, name);
    if (!json_is_array(l)) { l = json_array(); json_object_set_new(meta, name, l); }
    return l;
}

/* Applies in place; may leave `meta` half-changed on error (see meta_apply). */
static int apply_raw(json_t *meta, const char *cmd, json_t *value)
{
    size_t i;
    json_t *k;
    if (!strcmp(cmd, "RESTRICT_ACCESS") || !strcmp(cmd, "ALLOW_LINE_DELETION")) {
        json_t *b = json_array_get(value, 0);
        if (!json_is_boolean(b)) return CPS_EINVAL;
        const char *field = cmd[0] == 'R' ? "restricted" : "deleteLines";
        if (json_equal(json_object_get(meta, field), b)) return 0;
        json_object_set(meta, field, b);
        if (cmd[0] == 'R' && json_is_true(b)) ensure_list(meta, "allowed");
        return 1;
    }
    if (!strcmp(cmd, "ADD_MAILBOX")) {
        if (!json_is_object(value)) return CPS_EINVAL;
        json_t *owners = json_object_get(meta, "owners");
        json_t *mb = json_object_get(meta, "mailbox");
        if (json_is_string(mb)) {
            json_t *o = json_object();
            if (json_array_size(owners)) json_object_set(o, json_string_value(json_array_get(owners, 0)), mb);
            json_object_set_new(meta, "mailbox", o);
            mb = o;
        }
        if (!json_is_object(mb)) { mb = json_object(); json_object_set_new(meta, "mailbox", mb); }
        const char *key;
        int changed = 0;
        json_object_foreach(value, key, k) {
            json_t *ks = json_string(key);
            if (ks && has(owners, ks) && json_is_string(k)) { json_object_set(mb, key, k); changed = 1; }
            json_decref(ks);
        }
        return changed;
    }
    if (!json_is_array(value)) return CPS_EINVAL;
    if (!strcmp(cmd, "RM_MAILBOX")) {
        json_t *mb = json_object_get(meta, "mailbox");
        if (json_is_string(mb)) { if (!json_array_size(value)) { json_object_del(meta, "mailbox"); return 1; } return 0; }
        int changed = 0;
        json_array_foreach(value, i, k)
            if (json_is_string(k) && !json_object_del(mb, json_string_value(k))) changed = 1;
        return changed;
    }
    json_t *owners = json_object_get(meta, "owners");
    if (!strcmp(cmd, "ADD_PENDING_OWNERS") && !json_is_array(json_object_get(meta, "pending_owners"))) {
        /* a new list takes the keys as given, deduplicated */
        json_t *list = json_array();
        json_array_foreach(value, i, k) if (!has(list, k)) json_array_append(list, k);
        json_object_set_new(meta, "pending_owners", list);
        return 1;
    }
    if (!strcmp(cmd, "ADD_OWNERS") || !strcmp(cmd, "ADD_ALLOWED") || !strcmp(cmd, "ADD_PENDING_OWNERS")) {
        const char *field = cmd[4] == 'O' ? "owners" : cmd[4] == 'A' ? "allowed" : "pending_owners";
        json_t *list = ensure_list(meta, field);
        owners = json_object_get(meta, "owners");
        int changed = 0;
        json_array_foreach(value, i, k) {
            if (!valid_key(k) || has(list, k)) continue;
            if (field[0] == 'a' && has(owners, k)) continue;   /* owners are allowed anyway */
            json_array_append(list, k);
            changed = 1;
        }
        json_t *allowed = json_object_get(meta, "allowed");
        if (list == owners && json_is_array(allowed)) remove_all(allowed, value);
        return changed;
    }
    if (!strcmp(cmd, "RM_OWNERS") || !strcmp(cmd, "RM_ALLOWED") || !strcmp(cmd, "RM_PENDING_OWNERS")) {
        const char *field = cmd[3] == 'O' ? "owners" : cmd[3] == 'A' ? "allowed" : "pending_owners";
        json_t *list = json_object_get(meta, field);
        if (!json_is_array(list)) return field[0] == 'p' ? CPS_EINVAL : 0;
        size_t before = json_array_size(list);
        remove_all(list, value);
        if (list == owners && json_array_size(list) != before) {
            json_t *mb = json_object_get(meta, "mailbox");
            if (json_is_object(mb)) json_array_foreach(value, i, k) if (json_is_string(k)) json_object_del(mb, json_string_value(k));
            if (json_is_string(mb)) json_object_del(meta, "mailbox");
            if (!json_array_size(owners)) json_object_set_new(meta, "restricted", json_false());
        }
        return json_array_size(list) != before;
    }
    if (!strcmp(cmd, "RESET_OWNERS") || !strcmp(cmd, "RESET_ALLOWED")) {
        bool own = cmd[6] == 'O';
        json_t *fresh = json_array();
        json_array_foreach(value, i, k)
            if (valid_key(k) && !has(fresh, k) && (own || !has(owners, k))) json_array_append(fresh, k);
        bool same = json_equal(fresh, json_object_get(meta, own ? "owners" : "allowed"));
        json_object_set_new(meta, own ? "owners" : "allowed", fresh);
        if (own) {
            json_t *allowed = json_object_get(meta, "allowed");
            if (json_is_array(allowed)) remove_all(allowed, fresh);
            if (!json_array_size(fresh)) json_object_set_new(meta, "restricted", json_false());
        }
        return own || !same;   /* RESET_OWNERS always counts as a change */
    }
    return CPS_ENOENT;   /* METADATA_UNSUPPORTED_COMMAND */
}

/* Returns 1 changed, 0 unchanged, negative CPS error (invalid).  Works on a
** copy so that a refused or no-op command leaves `meta` exactly as it was
** (no-ops are not logged, so they must not change the cached state). */
int meta_apply(json_t *meta, const char *cmd, json_t *value)
{
    json_t *copy = json_deep_copy(meta);
    if (!copy) return CPS_ENOMEM;
    int rc = apply_raw(copy, cmd, value);
    if (rc < 0 || (rc == 0 && !json_equal(copy, meta))) {
        json_decref(copy);
        return rc < 0 ? rc : 0;
    }
    if (rc > 0 || !json_equal(copy, meta)) {
        json_object_clear(meta);
        json_object_update(meta, copy);
        rc = 1;
    }
    json_decref(copy);
    return rc;
}

json_t *meta_replay(const char *log, size_t len, const char *legacy, size_t legacy_len)
{
    json_t *meta = NULL;
    const char *p = log, *end = log ? log + len : NULL;
    bool first = true;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        json_t *v = n ? json_loadb(p, n, JSON_DECODE_ANY, NULL) : NULL;
        if (json_is_object(v)) {
            if (!meta && first) meta = json_incref(v);   /* initial state */
        } else if (json_is_array(v) && json_is_string(json_array_get(v, 0))) {
            if (!meta && first && legacy_len) meta = json_loadb(legacy, legacy_len, 0, NULL);
            if (!meta) meta = json_object();
            meta_apply(meta, json_string_value(json_array_get(v, 0)), json_array_get(v, 1));
        }
        if (v) first = false;
        json_decref(v);
        p = nl ? nl + 1 : end;
    }
    if (!meta && legacy_len) meta = json_loadb(legacy, legacy_len, 0, NULL);
    if (meta && !json_is_object(meta)) { json_decref(meta); meta = NULL; }
    return meta;
}

bool meta_valid(json_t *meta, const char *channel)
{
    (void)channel;   /* like the reference: the field's length is what counts */
    json_t *c = json_object_get(meta, "channel");
    return json_is_string(c) && ids_kind_of_len(json_string_length(c)) == IDS_PAD;
}

json_t *meta_allow_list(json_t *meta)
{
    json_t *out = json_array();
    size_t i;
    json_t *k;
    json_array_foreach(json_object_get(meta, "owners"), i, k) json_array_append(out, k);
    json_array_foreach(json_object_get(meta, "allowed"), i, k) json_array_append(out, k);
    return out;
}

bool meta_allows(json_t *meta, json_t *keys)
{
    if (!json_is_true(json_object_get(meta, "restricted"))) return true;
    json_t *allow = meta_allow_list(meta);
    bool ok = false;
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k) if (has(allow, k)) { ok = true; break; }
    json_decref(allow);
    return ok;
}
