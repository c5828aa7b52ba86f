/*
** hkindex.h - what the history keeper needs to know about a channel log
** without parsing it as JSON: per line, whether it is a message, its hash
** (first 64 characters of the content) and checkpoint id; per channel, the
** offsets of recent checkpoints and of hashes (spec docs/protocol/history.md §2, §4, §5.3).
** Pure code, unit-tested on its own.
*/
#ifndef CPS_HKINDEX_H
#define CPS_HKINDEX_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HK_HASH_LEN 64

typedef enum { HK_LINE_BAD = 0, HK_LINE_MSG, HK_LINE_META, HK_LINE_OTHER } hk_line_kind;

typedef struct hk_line {
    hk_line_kind kind;
    char hash[HK_HASH_LEN + 1];   /* MSG: first 64 characters of the content */
    bool checkpoint;              /* MSG: content starts with "cp|" */
    char cp_id[64];               /* checkpoint id ("" if none or too long) */
} hk_line;

/* Classify one line (without its '\n'). */
void hk_scan_line(const char *line, size_t len, hk_line *out);

/* The checkpoint id of a content string (group 2 of ^cp\|(([A-Za-z0-9+/=]+)\|)?),
** or "" ; returns the length of the prefix to strip before verifying. */
size_t hk_checkpoint_prefix(const char *content, size_t len, char *id, size_t idlen);

typedef struct hk_cp { uint64_t offset; uint64_t line; } hk_cp;
typedef struct hk_hash { char hash[HK_HASH_LEN + 1]; uint64_t offset; } hk_hash;

typedef struct hk_index {
    uint64_t size;        /* bytes of log indexed = offset of the next line */
    uint64_t lines;       /* lines seen */
    uint64_t arrays;      /* lines that are JSON arrays (messages) */
    uint64_t legacy_len;  /* bytes of a legacy metadata first line, '\n' included */
    hk_cp *cps;           /* relevant checkpoints, oldest first */
    size_t ncps, cpcap;
    uint64_t total_cps;   /* checkpoints seen in the whole log */
    hk_hash *hashes;      /* known hashes, oldest first (a window, see .c) */
    size_t nhash, hashcap, hstart;
    uint64_t dropped_to;  /* hashes of lines before this offset may be missing
                          ** (dropped to bound the window), 0: none dropped */
    char last_cp_id[64];  /* id of the last checkpoint stored */
} hk_index;

void hk_index_init(hk_index *x);
void hk_index_free(hk_index *x);
/* Account for the line starting at `offset` (len without '\n'). */
void hk_index_add(hk_index *x, const char *line, size_t len, uint64_t offset);
/* Feed a chunk of complete lines read at `offset`. */
void hk_index_feed(hk_index *x, const char *data, size_t len, uint64_t offset);
/* R of §5.3: where a history without lastKnownHash starts. */
uint64_t hk_index_start(const hk_index *x);
/* Offset of a known hash: 1 found (*off set), 0 unknown to the index,
** -1 known but older than R (EUNKNOWN). */
int hk_index_find(const hk_index *x, const char *hash, uint64_t *off);
/* True when a miss (0) is final: the log has checkpoints and the index holds
** every hash from R on.  False: the caller must scan the log for the hash
** (no checkpoints, or the window of hashes was bounded, see hkindex.c). */
bool hk_index_has_checkpoints(const hk_index *x);

#endif
