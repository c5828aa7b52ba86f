/*
** channel.c - per-channel state of the storage role and its operation
** queue.  The first operation on a channel opens it: the metadata log is
** replayed and the log indexed (one sequential read), while later
** operations wait in the queue, so nothing can overtake an earlier request.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "storage.h"

#define OPEN_CHUNK (1u << 20)
/* Messages of one channel in flight at most (more wait in the queue). */
#define FLY_MAX 64

const cps_storage_backend *backend(void)
{
    return API->storage(ST.self, NULL);
}

channel *ch_get(const char *id, bool create)
{
    channel *ch = strmap_get(ST.channels, id);
    if (ch || !create) return ch;
    ch = calloc(1, sizeof *ch);
    if (!ch) return NULL;
    snprintf(ch->id, sizeof ch->id, "%s", id);
    ch->members = json_array();
    hk_index_init(&ch->idx);
    if (strmap_put(ST.channels, id, ch)) { json_decref(ch->members); free(ch); return NULL; }
    return ch;
}

bool ch_is_member(channel *ch, const char *user)
{
    size_t i;
    json_t *m;
    json_array_foreach(ch->members, i, m)
        if (strcmp(json_string_value(json_array_get(m, 0)), user) == 0) return true;
    return false;
}

void ch_forget_state(channel *ch)
{
    json_decref(ch->meta);
    ch->meta = NULL;
    hk_index_free(&ch->idx);
    hk_index_init(&ch->idx);
    ch->state = CH_NEW;
}

static void ch_free(channel *ch)
{
    fly_drop(ch);
    json_decref(ch->members);
    json_decref(ch->meta);
    hk_index_free(&ch->idx);
    free(ch);
}

/* A channel nobody is in, with nothing queued or streaming, is closed:
** its caches are dropped (docs/protocol/history.md §9.3, docs/protocol/netflux.md §8). */
void ch_release(channel *ch)
{
    if (!ch || json_array_size(ch->members) || ch->head || ch->busy || ch->readers || ch->nfly) return;
    strmap_del(ST.channels, ch->id);
    ch_free(ch);
}

/* ---- opening: metadata, then the index ---- */

static void kick(channel *ch);

typedef struct opener { char id[40]; char *meta_log; size_t meta_len; char *legacy; bool exists; } opener;

static void open_finish(opener *o, int status)
{
    channel *ch = ch_get(o->id, false);
    if (ch) {
        ch->open_status = status;
        ch->log_exists = o->exists;
        if (status == CPS_OK) {
            json_decref(ch->meta);
            ch->meta = meta_replay(o->meta_log, o->meta_len, o->legacy, o->legacy ? strlen(o->legacy) : 0);
            if (ch->meta && !meta_valid(ch->meta, ch->id)) { json_decref(ch->meta); ch->meta = NULL; }
        }
        ch->state = CH_OPEN;
        kick(ch);
        ch_release(ch);
    }
    free(o->meta_log);
    free(o->legacy);
    free(o);
}

static void open_read(void *ud, int status, const char *data, size_t len, uint64_t next, bool eof)
{
    opener *o = ud;
    channel *ch = ch_get(o->id, false);
    if (!ch) { open_finish(o, CPS_ECANCELED); return; }
    if (status == CPS_ENOENT) { open_finish(o, CPS_OK); return; }
    if (status != CPS_OK) { open_finish(o, status); return; }
    o->exists = true;
    uint64_t at = next - len;
    if (at == 0 && len && data[0] == '{') {
        const char *nl = memchr(data, '\n', len);
        if (nl) o->legacy = strndup(data, (size_t)(nl - data));
    }
    hk_index_feed(&ch->idx, data, len, at);
    if (eof || len == 0) { open_finish(o, CPS_OK); return; }
    int rc = backend()->channel_read(backend()->state, o->id, next, OPEN_CHUNK, open_read, o);
    if (rc) open_finish(o, rc);
}

static void open_meta(void *ud, int status, const char *data, size_t len)
{
    opener *o = ud;
    if (status == CPS_OK && len) {
        o->meta_log = malloc(len + 1);
        if (o->meta_log) { memcpy(o->meta_log, data, len); o->meta_log[len] = 0; o->meta_len = len; }
    } else if (status != CPS_OK && status != CPS_ENOENT) {
        open_finish(o, status);
        return;
    }
    int rc = backend()->channel_read(backend()->state, o->id, 0, OPEN_CHUNK, open_read, o);
    if (rc) open_finish(o, rc);
}

static void ch_open(channel *ch)
{
    const cps_storage_backend *b = backend();
    ch->state = CH_OPENING;
    hk_index_free(&ch->idx);
    hk_index_init(&ch->idx);
    opener *o = calloc(1, sizeof *o);
    int rc = !o ? CPS_ENOMEM : !b ? CPS_EIO : 0;
    if (!rc) {
        snprintf(o->id, sizeof o->id, "%s", ch->id);
        rc = b->meta_read(b->state, ch->id, open_meta, o);
    }
    if (rc) {
        API->log(ST.self, CPS_LOG_ERROR, "channel %s: cannot open: %s", ch->id, API->errname(rc));
        free(o);
        ch->open_status = rc;
        ch->state = CH_OPEN;   /* ops see open_status and fail; kick() goes on */
    }
}

/* ---- the queue ---- */

/* Run ops from the head while none is in progress.  Not re-entered: an op
** that completes synchronously returns here through ch_done. */
static void kick(channel *ch)
{
    if (ch->in_kick) return;
    ch->in_kick = true;
    while (!ch->busy && ch->head) {
        /* With messages in flight only a next message may start (bounded);
        ** anything else sees the channel once they are committed. */
        if (ch->nfly && (ch->nfly >= FLY_MAX || ch->stale || !op_pipelines(ch->head))) break;
        /* failover: reopen from the shared store what another node wrote */
        if (ch->stale && ch->state != CH_OPENING && !ch->readers) { ch_forget_state(ch); ch->stale = false; }
        if (ch->state == CH_NEW) { ch_open(ch); if (ch->state != CH_OPEN) break; continue; }
        if (ch->state == CH_OPENING) break;
        op *o = ch->head;
        ch->head = o->next;
        if (!ch->head) ch->tail = NULL;
        ch->nops--;
        ch->busy = true;
        o->run(ch, o);      /* ends with ch_done(ch, o), now or later */
    }
    /* a failed open is retried by the next op that arrives */
    if (!ch->head && !ch->busy && ch->state == CH_OPEN && ch->open_status != CPS_OK)
        ch->state = CH_NEW;
    ch->in_kick = false;
}

int ch_enqueue(channel *ch, op_fn run, cps_call *call, json_t *args)
{
    if (ch->nops >= ST.max_ops) { json_decref(args); return CPS_EBUSY; }
    op *o = calloc(1, sizeof *o);
    if (!o) { json_decref(args); return CPS_ENOMEM; }
    o->run = run;
    o->call = call;
    o->args = args;
    if (ch->tail) ch->tail->next = o; else ch->head = o;
    ch->tail = o;
    ch->nops++;
    kick(ch);
    ch_release(ch);     /* the caller must not use ch after this */
    return CPS_OK;
}

void ch_done(channel *ch, op *o)
{
    json_decref(o->args);
    free(o);
    ch->busy = false;
    if (ch->in_kick) return;
    kick(ch);
    ch_release(ch);
}

void ch_handoff(channel *ch)
{
    ch->busy = false;
    ch_kick(ch);
}

void ch_kick(channel *ch)
{
    if (ch->in_kick) return;
    kick(ch);
    ch_release(ch);
}

static void free_entry(void *v)
{
    channel *ch = v;
    while (ch->head) {
        op *o = ch->head;
        ch->head = o->next;
        if (o->call) API->reply(o->call, CPS_ECANCELED, NULL);
        json_decref(o->args);
        free(o);
    }
    ch_free(ch);
}

void ch_free_all(void)
{
    strmap_free(ST.channels, free_entry);
    ST.channels = NULL;
}
