/*
** fs_fdcache.c - open channel logs kept for the loop-thread append path of
** fs.c: a bounded LRU of descriptors opened O_APPEND by a pool append (after
** the torn-line check), closed when evicted, at unload, or as soon as an
** operation that replaces or moves the log is queued.  Loop thread only.
*/
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "strmap.h"
#include "fs.h"

typedef struct fdc_ent {
    int fd;
    uint64_t size;                   /* the log's size: every write goes through us */
    char *id;                        /* the map's key, for removal on eviction */
    struct fdc_ent *prev, *next;     /* most recently used first */
} fdc_ent;

static struct {
    strmap *map;
    fdc_ent *head, *tail;
    size_t n, max;
} C;   /* the cache singleton */

static void unlink_ent(fdc_ent *e)
{
    if (e->prev) e->prev->next = e->next; else C.head = e->next;
    if (e->next) e->next->prev = e->prev; else C.tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(fdc_ent *e)
{
    e->next = C.head;
    if (C.head) C.head->prev = e;
    C.head = e;
    if (!C.tail) C.tail = e;
}

static void drop_ent(fdc_ent *e)
{
    unlink_ent(e);
    strmap_del(C.map, e->id);
    close(e->fd);
    free(e->id);
    free(e);
    C.n--;
}

int fdc_init(size_t max)
{
    memset(&C, 0, sizeof C);
    C.max = max;
    return max && !(C.map = strmap_new()) ? -1 : 0;
}

int fdc_get(const char *id, uint64_t **size)
{
    fdc_ent *e = C.map ? strmap_get(C.map, id) : NULL;
    if (!e) return -1;
    if (C.head != e) { unlink_ent(e); push_front(e); }
    *size = &e->size;
    return e->fd;
}

bool fdc_has(const char *id) { return C.map && strmap_get(C.map, id); }

void fdc_put(const char *id, int fd, uint64_t size)
{
    if (!C.map) { close(fd); return; }
    fdc_ent *old = strmap_get(C.map, id);
    if (old) drop_ent(old);
    while (C.n >= C.max && C.tail) drop_ent(C.tail);
    fdc_ent *e = calloc(1, sizeof *e);
    if (!e || !(e->id = strdup(id)) || strmap_put(C.map, id, e) != 0) {
        if (e) free(e->id);
        free(e);
        close(fd);
        return;
    }
    e->fd = fd;
    e->size = size;
    push_front(e);
    C.n++;
}

void fdc_drop(const char *id)
{
    fdc_ent *e = C.map ? strmap_get(C.map, id) : NULL;
    if (e) drop_ent(e);
}

void fdc_clear(void)
{
    while (C.head) drop_ent(C.head);
    strmap_free(C.map, NULL);
    C.map = NULL;
}
