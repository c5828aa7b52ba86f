/*
** hkindex.c - a hand scanner for stored message lines
** [0,"sender"|null,"MSG","channel","content",time] and the per-channel index.
** Scanning instead of parsing keeps index builds of large logs cheap; lines
** that the scanner does not recognise are classified conservatively.
*/
#include <string.h>
#include <stdlib.h>
#include "hkindex.h"

#define WINDOW_LINES 100   /* "any checkpoint from the last 100 lines" */
#define NOCP_KEEP 100      /* hashes kept for a log without checkpoints */
/* Hashes kept from R on (history.md §4).  R only moves with the second
** checkpoint, so a log with one checkpoint (or none for a long while after
** its last two) would index every later line: unbounded memory per open
** channel.  Beyond 2 * CP_KEEP live hashes the oldest are dropped down to
** CP_KEEP; a lookup that misses is then answered by scanning the log, as for
** a log without checkpoints (hk_index_has_checkpoints). */
#define CP_KEEP 1000

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    return p;
}

/* Skip a JSON string starting at p ('"'); returns the char after it or NULL. */
static const char *skip_string(const char *p, const char *end, bool *escaped)
{
    if (p >= end || *p != '"') return NULL;
    for (p++; p < end; p++) {
        if (*p == '\\') { if (escaped) *escaped = true; p++; continue; }
        if (*p == '"') return p + 1;
    }
    return NULL;
}

static const char *expect(const char *p, const char *end, char c)
{
    p = ws(p, end);
    return p < end && *p == c ? ws(p + 1, end) : NULL;
}

size_t hk_checkpoint_prefix(const char *c, size_t len, char *id, size_t idlen)
{
    if (idlen) id[0] = 0;
    if (len < 3 || memcmp(c, "cp|", 3) != 0) return 0;
    size_t i = 3;
    while (i < len && ((c[i] >= 'A' && c[i] <= 'Z') || (c[i] >= 'a' && c[i] <= 'z') ||
                       (c[i] >= '0' && c[i] <= '9') || c[i] == '+' || c[i] == '/' || c[i] == '='))
        i++;
    if (i > 3 && i < len && c[i] == '|') {
        if (i - 3 < idlen) { memcpy(id, c + 3, i - 3); id[i - 3] = 0; }
        return i + 1;
    }
    return 3;
}

void hk_scan_line(const char *line, size_t len, hk_line *out)
{
    memset(out, 0, sizeof *out);
    const char *p = line, *end = line + len;
    p = ws(p, end);
    if (p == end) return;
    if (*p == '{') { out->kind = HK_LINE_META; return; }
    if (*p != '[') return;
    out->kind = HK_LINE_OTHER;
    p = ws(p + 1, end);
    if (p >= end || *p != '0') return;
    if (!(p = expect(p + 1, end, ','))) return;
    if (end - p >= 4 && memcmp(p, "null", 4) == 0) p += 4;
    else if (!(p = skip_string(p, end, NULL))) return;
    if (!(p = expect(p, end, ','))) return;
    if (end - p < 5 || memcmp(p, "\"MSG\"", 5) != 0) return;
    if (!(p = expect(p + 5, end, ','))) return;
    if (!(p = skip_string(p, end, NULL))) return;
    if (!(p = expect(p, end, ','))) return;
    if (p >= end || *p != '"') return;
    /* content: copy the first 64 characters, decoding simple escapes */
    const char *c = p + 1;
    size_t n = 0;
    bool ok = false;
    while (c < end) {
        char ch = *c;
        if (ch == '"') { ok = true; break; }
        if (n == HK_HASH_LEN) { ok = true; break; }      /* the rest does not matter */
        if (ch == '\\') {
            if (c + 1 >= end) break;
            char e = c[1];
            ch = e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' :
                 e == 'f' ? '\f' : e;
            if (e == 'u') { ok = false; break; }   /* rare: keep no hash */
            c++;
        }
        out->hash[n++] = ch;
        c++;
    }
    if (!ok) { out->hash[0] = 0; return; }
    out->hash[n] = 0;
    out->kind = HK_LINE_MSG;
    if (n >= 3 && memcmp(out->hash, "cp|", 3) == 0) {
        out->checkpoint = true;
        /* the id is within the first 64 characters in practice (12-char base64) */
        hk_checkpoint_prefix(out->hash, n, out->cp_id, sizeof out->cp_id);
    }
}

/* ---- the index ---- */

void hk_index_init(hk_index *x) { memset(x, 0, sizeof *x); }

void hk_index_free(hk_index *x)
{
    free(x->cps);
    free(x->hashes);
    memset(x, 0, sizeof *x);
}

/* Keep the last two checkpoints and those of the last WINDOW_LINES lines. */
static void prune_cps(hk_index *x)
{
    size_t keep_from = 0;
    while (keep_from + 2 < x->ncps && x->cps[keep_from].line + WINDOW_LINES <= x->lines)
        keep_from++;
    if (keep_from) {
        memmove(x->cps, x->cps + keep_from, (x->ncps - keep_from) * sizeof *x->cps);
        x->ncps -= keep_from;
    }
}

uint64_t hk_index_start(const hk_index *x)
{
    /* Pruning is done on every add, so cps[0] is R when there are >= 2. */
    return x->ncps >= 2 ? x->cps[0].offset : 0;
}

/* A miss in the index is final (EUNKNOWN, history.md §5.3) only when the log
** has checkpoints and the index still holds every hash from R on; otherwise
** the caller scans the log for the hash. */
bool hk_index_has_checkpoints(const hk_index *x)
{
    return x->total_cps > 0 && x->dropped_to <= hk_index_start(x);
}

/* Keep the newest `keep` hashes; remember up to where lines may be missing. */
static void drop_oldest(hk_index *x, size_t keep)
{
    x->hstart = x->nhash - keep;
    x->dropped_to = x->hashes[x->hstart].offset;
}

/* Drop hashes older than R (checkpointed logs), then beyond NOCP_KEEP (no
** checkpoint) or CP_KEEP (see above). */
static void prune_hashes(hk_index *x)
{
    if (x->total_cps >= 2) {
        uint64_t r = hk_index_start(x);
        while (x->hstart < x->nhash && x->hashes[x->hstart].offset < r) x->hstart++;
    }
    size_t live = x->nhash - x->hstart;
    if (x->total_cps == 0 && live > 2 * NOCP_KEEP) drop_oldest(x, NOCP_KEEP);
    else if (x->total_cps > 0 && live > 2 * CP_KEEP) drop_oldest(x, CP_KEEP);
    if (x->hstart > 1024 && x->hstart * 2 > x->nhash) {   /* compact */
        memmove(x->hashes, x->hashes + x->hstart, (x->nhash - x->hstart) * sizeof *x->hashes);
        x->nhash -= x->hstart;
        x->hstart = 0;
    }
}

void hk_index_add(hk_index *x, const char *line, size_t len, uint64_t offset)
{
    hk_line l;
    hk_scan_line(line, len, &l);
    x->lines++;
    x->size = offset + len + 1;
    if (l.kind == HK_LINE_MSG || l.kind == HK_LINE_OTHER) x->arrays++;
    if (l.kind == HK_LINE_META && offset == 0) x->legacy_len = len + 1;
    if (l.kind != HK_LINE_MSG) {   /* still a line: the 100-line window moves */
        prune_cps(x);
        prune_hashes(x);
        return;
    }
    if (l.checkpoint) {
        if (x->ncps == x->cpcap) {
            size_t cap = x->cpcap ? x->cpcap * 2 : 8;
            hk_cp *n = realloc(x->cps, cap * sizeof *n);
            if (!n) return;
            x->cps = n;
            x->cpcap = cap;
        }
        x->cps[x->ncps].offset = offset;
        x->cps[x->ncps].line = x->lines;
        x->ncps++;
        x->total_cps++;
        memcpy(x->last_cp_id, l.cp_id, sizeof x->last_cp_id);
    }
    prune_cps(x);
    if (l.hash[0]) {
        if (x->nhash == x->hashcap) {
            size_t cap = x->hashcap ? x->hashcap * 2 : 64;
            hk_hash *n = realloc(x->hashes, cap * sizeof *n);
            if (!n) return;
            x->hashes = n;
            x->hashcap = cap;
        }
        memcpy(x->hashes[x->nhash].hash, l.hash, sizeof l.hash);
        x->hashes[x->nhash].offset = offset;
        x->nhash++;
    }
    prune_hashes(x);
}

void hk_index_feed(hk_index *x, const char *data, size_t len, uint64_t offset)
{
    const char *p = data, *end = data + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) break;
        hk_index_add(x, p, (size_t)(nl - p), offset + (uint64_t)(p - data));
        p = nl + 1;
    }
}

int hk_index_find(const hk_index *x, const char *hash, uint64_t *off)
{
    /* newest first: a hash repeated in the log resolves to the latest line */
    for (size_t i = x->nhash; i > x->hstart; i--) {
        if (strcmp(x->hashes[i - 1].hash, hash) == 0) {
            *off = x->hashes[i - 1].offset;
            if (x->ncps >= 2 && *off < hk_index_start(x)) return -1;
            return 1;
        }
    }
    return 0;
}
