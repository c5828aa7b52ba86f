/*
** strmap.h - a small string-keyed hash map for plugins (keys are copied,
** values are the caller's).  Not part of the ABI: plugins link it statically.
*/
#ifndef CPS_STRMAP_H
#define CPS_STRMAP_H
#include <stddef.h>

typedef struct strmap strmap;

strmap *strmap_new(void);
/* Frees the map; calls free_val on every value if not NULL. */
void strmap_free(strmap *m, void (*free_val)(void *));
void *strmap_get(const strmap *m, const char *key);
/* Insert or replace; returns 0, or -1 when out of memory. */
int strmap_put(strmap *m, const char *key, void *val);
/* Remove; returns the value that was there, or NULL. */
void *strmap_del(strmap *m, const char *key);
size_t strmap_count(const strmap *m);
/* Visit every entry.  fn must not add or remove entries. */
void strmap_each(const strmap *m, void (*fn)(const char *key, void *val, void *ud), void *ud);

#endif
