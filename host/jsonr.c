/*
** jsonr.c - the JSON reader of the cluster links.  Every message a node
** receives from another is parsed once; jansson's json_loadb reads through
** a character stream and was a quarter of the cluster's CPU.  This reads
** the buffer directly and accepts exactly what json_loadb(flags 0) accepts
** for an array or object (UTF-8 checked, no \u0000, surrogates paired,
** integers that fit json_int_t, nesting at most 2048, nothing after the
** value); a duplicate key keeps its last value, as jansson does.  A raw
** NUL byte outside a string is refused (jansson's stream skips it).
*/
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "swar.h"

#define MAX_DEPTH 2048

typedef struct rd {
    const unsigned char *p, *end;
    char *tmp;              /* unescaped string bytes */
    size_t tcap;
} rd;

static void ws(rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int hex4(const unsigned char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v << 4 | d;
    }
    return v;
}

static bool tput(rd *r, size_t at, const void *s, size_t n)
{
    if (at + n > r->tcap) {
        size_t cap = r->tcap ? r->tcap : 256;
        while (cap < at + n) cap *= 2;
        char *t = realloc(r->tmp, cap);
        if (!t) return false;
        r->tmp = t;
        r->tcap = cap;
    }
    memcpy(r->tmp + at, s, n);
    return true;
}

/* A string at r->p (after the opening quote).  Sets *out and *len to the bytes:
** the input itself when it has no escape, else r->tmp. */
static bool string(rd *r, const char **out, size_t *len)
{
    const unsigned char *start = r->p;
    bool escaped = false;
    const unsigned char *q = r->p;
    for (;;) {
        while (r->end - q >= 8 && !swar_special(swar_load(q))) q += 8;   /* plain ASCII words */
        if (q == r->end || *q == '"') break;
        if (*q < 0x20) return false;
        if (*q == '\\') { escaped = true; if (++q == r->end) return false; }
        q++;
    }
    if (q == r->end) return false;
    if (!escaped) {
        if (!cps_utf8_valid((const char *)start, (size_t)(q - start))) return false;
        *out = (const char *)start;
        *len = (size_t)(q - start);
        r->p = q + 1;
        return true;
    }
    size_t at = 0;
    const unsigned char *p = start;
    while (p < q) {
        const unsigned char *run = p;
        while (p < q && *p != '\\') p++;
        if (p > run) {
            if (!cps_utf8_valid((const char *)run, (size_t)(p - run)) || !tput(r, at, run, (size_t)(p - run))) return false;
            at += (size_t)(p - run);
        }
        if (p == q) break;
        p++;   /* the backslash */
        char c;
        switch (*p) {
        case '"': c = '"'; break;
        case '\\': c = '\\'; break;
        case '/': c = '/'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'n': c = '\n'; break;
        case 'r': c = '\r'; break;
        case 't': c = '\t'; break;
        case 'u': {
            if (q - p < 5) return false;
            int32_t cp = hex4(p + 1);
            p += 5;
            if (cp < 0) return false;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (q - p < 6 || p[0] != '\\' || p[1] != 'u') return false;
                int32_t lo = hex4(p + 2);
                if (lo < 0xdc00 || lo > 0xdfff) return false;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                p += 6;
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                return false;
            }
            if (cp == 0) return false;            /* jansson without JSON_ALLOW_NUL */
            unsigned char u[4];
            size_t n;
            if (cp < 0x80) { u[0] = (unsigned char)cp; n = 1; }
            else if (cp < 0x800) { u[0] = (unsigned char)(0xc0 | cp >> 6); u[1] = (unsigned char)(0x80 | (cp & 0x3f)); n = 2; }
            else if (cp < 0x10000) {
                u[0] = (unsigned char)(0xe0 | cp >> 12); u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
                u[2] = (unsigned char)(0x80 | (cp & 0x3f)); n = 3;
            } else {
                u[0] = (unsigned char)(0xf0 | cp >> 18); u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
                u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)); u[3] = (unsigned char)(0x80 | (cp & 0x3f)); n = 4;
            }
            if (!tput(r, at, u, n)) return false;
            at += n;
            continue;
        }
        default: return false;
        }
        if (!tput(r, at, &c, 1)) return false;
        at++;
        p++;
    }
    *out = r->tmp ? r->tmp : "";
    *len = at;
    r->p = q + 1;
    return true;
}

static json_t *number(rd *r)
{
    const unsigned char *s = r->p, *p = s;
    bool real = false;
    if (p < r->end && *p == '-') p++;
    if (p == r->end) return NULL;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (p < r->end && *p >= '0' && *p <= '9') p++;
    else return NULL;
    if (p < r->end && *p == '.') {
        real = true;
        if (++p == r->end || *p < '0' || *p > '9') return NULL;
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < r->end && (*p == 'e' || *p == 'E')) {
        real = true;
        if (++p < r->end && (*p == '+' || *p == '-')) p++;
        if (p == r->end || *p < '0' || *p > '9') return NULL;
        while (p < r->end && *p >= '0' && *p <= '9') p++;
    }
    char buf[64];
    size_t n = (size_t)(p - s);
    char *text = n < sizeof buf ? buf : malloc(n + 1);
    if (!text) return NULL;
    memcpy(text, s, n);
    text[n] = 0;
    json_t *v = NULL;
    errno = 0;
    if (!real) {
        char *e;
        long long x = strtoll(text, &e, 10);
        if (errno != ERANGE && e == text + n) v = json_integer((json_int_t)x);
    } else {
        char *e;
        double d = strtod(text, &e);
        /* jansson refuses an overflow, accepts an underflow to 0 */
        if (e == text + n && !(errno == ERANGE && (d > 1 || d < -1))) v = json_real(d);
    }
    if (text != buf) free(text);
    r->p = p;
    return v;
}

static json_t *value(rd *r, int depth);

static json_t *container(rd *r, int depth)
{
    if (depth > MAX_DEPTH) return NULL;
    bool obj = *r->p == '{';
    char close = obj ? '}' : ']';
    r->p++;
    json_t *c = obj ? json_object() : json_array();
    if (!c) return NULL;
    ws(r);
    if (r->p < r->end && *r->p == close) { r->p++; return c; }
    for (;;) {
        ws(r);
        if (obj) {
            const char *k;
            size_t kl;
            if (r->p == r->end || *r->p != '"') goto bad;
            r->p++;
            if (!string(r, &k, &kl)) goto bad;
            /* the key may sit in r->tmp, which the value reuses: copy it */
            char kb[128], *key = kl < sizeof kb ? kb : malloc(kl + 1);
            if (!key) goto bad;
            memcpy(key, k, kl);
            key[kl] = 0;
            ws(r);
            json_t *v = NULL;
            if (r->p < r->end && *r->p == ':') { r->p++; v = value(r, depth + 1); }
            int rc = v ? json_object_setn_new_nocheck(c, key, kl, v) : -1;
            if (key != kb) free(key);
            if (rc) goto bad;
        } else {
            json_t *v = value(r, depth + 1);
            if (!v || json_array_append_new(c, v)) goto bad;
        }
        ws(r);
        if (r->p == r->end) goto bad;
        if (*r->p == ',') { r->p++; continue; }
        if (*r->p == close) { r->p++; return c; }
        goto bad;
    }
bad:
    json_decref(c);
    return NULL;
}

static json_t *value(rd *r, int depth)
{
    ws(r);
    if (r->p == r->end) return NULL;
    size_t left = (size_t)(r->end - r->p);
    switch (*r->p) {
    case '{': case '[': return container(r, depth);
    case '"': {
        const char *s;
        size_t n;
        r->p++;
        return string(r, &s, &n) ? json_stringn_nocheck(s, n) : NULL;
    }
    case 't': if (left >= 4 && !memcmp(r->p, "true", 4)) { r->p += 4; return json_true(); } return NULL;
    case 'f': if (left >= 5 && !memcmp(r->p, "false", 5)) { r->p += 5; return json_false(); } return NULL;
    case 'n': if (left >= 4 && !memcmp(r->p, "null", 4)) { r->p += 4; return json_null(); } return NULL;
    default: return number(r);
    }
}

/* The unescaping buffer is kept between calls (the loop's thread only):
** a relayed frame arrives as an escaped string, and a malloc, a realloc
** and a free per message showed in the profile of a front. */
#define TMP_KEEP (64 * 1024)
static char *tmp_kept;
static size_t tmp_kept_cap;

static rd rd_open(const char *text, size_t len)
{
    return (rd){ (const unsigned char *)text, (const unsigned char *)text + len, tmp_kept, tmp_kept_cap };
}

static void rd_close(rd *r)
{
    if (r->tcap > TMP_KEEP) { free(r->tmp); r->tmp = NULL; r->tcap = 0; }
    tmp_kept = r->tmp;
    tmp_kept_cap = r->tcap;
}

json_t *cps_jsonr(const char *text, size_t len)
{
    rd r = rd_open(text, len);
    ws(&r);
    json_t *v = NULL;
    if (r.p < r.end && (*r.p == '[' || *r.p == '{')) v = container(&r, 1);
    if (v) {
        ws(&r);
        if (r.p != r.end) { json_decref(v); v = NULL; }
    }
    rd_close(&r);
    return v;
}

/* One head field: a string copied into out[cap] (NUL-terminated). */
static bool head_str(rd *r, char *out, size_t cap)
{
    const char *v;
    size_t n;
    ws(r);
    if (r->p == r->end || *r->p != '"') return false;
    r->p++;
    if (!string(r, &v, &n) || n >= cap || memchr(v, 0, n)) return false;
    memcpy(out, v, n);
    out[n] = 0;
    return true;
}

static bool comma(rd *r)
{
    ws(r);
    if (r->p == r->end || *r->p != ',') return false;
    r->p++;
    return true;
}

json_t *cps_jsonr_link(const char *text, size_t len, cps_link_head *h)
{
    rd r = rd_open(text, len);
    json_t *args = NULL, *qid = NULL;
    memset(h, 0, sizeof *h);
    ws(&r);
    if (r.p == r.end || *r.p != '[') goto out;
    r.p++;
    if (!head_str(&r, h->type, sizeof h->type) || !comma(&r)) goto out;
    ws(&r);
    if (!(qid = number(&r)) || !json_is_integer(qid) || !comma(&r)) goto out;
    h->qid = json_integer_value(qid);
    if (!head_str(&r, h->dest, sizeof h->dest) || !comma(&r) ||
        !head_str(&r, h->cmd, sizeof h->cmd) || !comma(&r))
        goto out;
    ws(&r);
    if ((size_t)(r.end - r.p) >= 4 && !memcmp(r.p, "null", 4)) r.p += 4;
    else if (head_str(&r, h->error, sizeof h->error)) h->has_error = true;
    else goto out;
    if (!comma(&r) || !(args = value(&r, 2))) goto out;
    ws(&r);
    if (r.p == r.end || *r.p != ']') { json_decref(args); args = NULL; goto out; }
    r.p++;
    ws(&r);
    if (r.p != r.end) { json_decref(args); args = NULL; }
out:
    json_decref(qid);
    rd_close(&r);
    return args;
}
