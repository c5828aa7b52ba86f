/*
** jsonw.c - a compact JSON writer for the cluster links.  Every message a
** node sends another is written once; jansson's json_dumps goes through a
** callback per run of characters and a growing string buffer, and was a
** fifth of the cluster's CPU.  This writes into one growing buffer and
** copies runs of plain string bytes at once; the text is what json_dumps
** with JSON_COMPACT writes, so the reader (json_loadb) sees the same values.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "host.h"
#include "swar.h"

#define MAX_DEPTH 2048          /* jansson's parser refuses deeper input anyway */

static bool grow(cps_jsonw *w, size_t more)
{
    if (w->bad) return false;
    if (w->len + more <= w->cap) return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < w->len + more) {
        if (cap > SIZE_MAX / 2) { w->bad = true; return false; }
        cap *= 2;
    }
    char *p = realloc(w->p, cap);
    if (!p) { w->bad = true; return false; }
    w->p = p;
    w->cap = cap;
    return true;
}

void cps_jsonw_raw(cps_jsonw *w, const char *s, size_t n)
{
    if (!grow(w, n)) return;
    memcpy(w->p + w->len, s, n);
    w->len += n;
}

static void putc1(cps_jsonw *w, char c)
{
    if (!grow(w, 1)) return;
    w->p[w->len++] = c;
}

/* Strings are valid UTF-8 (jansson checks them); only '"', '\\' and the
** control characters need escaping, as json_dumps does without
** JSON_ENSURE_ASCII.  '/' is left as is (no JSON_ESCAPE_SLASH). */
void cps_jsonw_str(cps_jsonw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";   /* as jansson: \u001F */
    putc1(w, '"');
    size_t run = 0;
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n; i++) {
        /* a word of plain ASCII at once (perf of the cluster: this scan, a
        ** byte at a time, was 4% of all samples) */
        while (n - i >= 8 && !swar_special(swar_load(u + i))) i += 8;
        if (i == n) break;
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        cps_jsonw_raw(w, s + run, i - run);
        run = i + 1;
        char e[6] = { '\\', 0 };
        size_t el = 2;
        switch (c) {
        case '"': e[1] = '"'; break;
        case '\\': e[1] = '\\'; break;
        case '\b': e[1] = 'b'; break;
        case '\f': e[1] = 'f'; break;
        case '\n': e[1] = 'n'; break;
        case '\r': e[1] = 'r'; break;
        case '\t': e[1] = 't'; break;
        default:
            e[1] = 'u'; e[2] = '0'; e[3] = '0'; e[4] = hex[c >> 4]; e[5] = hex[c & 15];
            el = 6;
        }
        cps_jsonw_raw(w, e, el);
    }
    cps_jsonw_raw(w, s + run, n - run);
    putc1(w, '"');
}

/* Whether `s` is UTF-8 as jansson accepts it (no overlong forms, no
** surrogates, nothing past U+10FFFF): C strings written with
** cps_jsonw_str must pass it, or the peer's parser refuses the message. */
bool cps_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;
    while (p < end) {
        while (end - p >= 8 && !(swar_load(p) & SWAR_HIGHS)) p += 8;   /* ASCII words */
        if (p == end) break;
        unsigned c = *p;
        if (c < 0x80) { p++; continue; }
        size_t k = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc2 ? 1 : 0;
        if (!k || c > 0xf4 || (size_t)(end - p) <= k) return false;
        uint32_t cp = c & (0x3f >> k);
        for (size_t i = 1; i <= k; i++) {
            if ((p[i] & 0xc0) != 0x80) return false;
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += k + 1;
    }
    return true;
}

/* An integer in decimal, as jansson writes it (no snprintf: the links
** write a query id in every message). */
void cps_jsonw_int(cps_jsonw *w, int64_t v)
{
    char t[24];
    size_t n = sizeof t;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do { t[--n] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) t[--n] = '-';
    cps_jsonw_raw(w, t + n, sizeof t - n);
}

static void put_value(cps_jsonw *w, json_t *v, int depth)
{
    if (depth > MAX_DEPTH) { w->bad = true; return; }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        putc1(w, '{');
        bool first = true;
        for (void *it = json_object_iter(v); it; it = json_object_iter_next(v, it)) {
            if (!first) putc1(w, ',');
            first = false;
            cps_jsonw_str(w, json_object_iter_key(it), json_object_iter_key_len(it));
            putc1(w, ':');
            put_value(w, json_object_iter_value(it), depth + 1);
        }
        putc1(w, '}');
        break;
    }
    case JSON_ARRAY: {
        putc1(w, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++) {
            if (i) putc1(w, ',');
            put_value(w, json_array_get(v, i), depth + 1);
        }
        putc1(w, ']');
        break;
    }
    case JSON_STRING:
        cps_jsonw_str(w, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        cps_jsonw_int(w, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL: {
        /* as jansson writes a real: shortest %.17g, and always a '.' or an
        ** exponent so it reads back as a real */
        char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        if (!text) { w->bad = true; return; }
        cps_jsonw_raw(w, text, strlen(text));
        free(text);
        break;
    }
    case JSON_TRUE: cps_jsonw_raw(w, "true", 4); break;
    case JSON_FALSE: cps_jsonw_raw(w, "false", 5); break;
    default: cps_jsonw_raw(w, "null", 4); break;
    }
}

void cps_jsonw_value(cps_jsonw *w, json_t *v)
{
    if (v) put_value(w, v, 0);
    else cps_jsonw_raw(w, "null", 4);
}
