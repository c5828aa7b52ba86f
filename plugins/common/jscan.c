/*
** jscan.c - a JSON value skipper (strings with escapes, nested arrays and
** objects, numbers, literals), depth-limited.
*/
#include <stdlib.h>
#include <string.h>
#include "jscan.h"

static const char *ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static const char *value(const char *p, const char *end, int depth)
{
    p = ws(p, end);
    if (p >= end || depth > 64) return NULL;
    if (*p == '"') {
        for (p++; p < end; p++) {
            if (*p == '\\') { p++; continue; }
            if (*p == '"') return p + 1;
        }
        return NULL;
    }
    if (*p == '[' || *p == '{') {
        char close = *p == '[' ? ']' : '}';
        int is_obj = *p == '{';
        p = ws(p + 1, end);
        if (p < end && *p == close) return p + 1;
        for (;;) {
            if (is_obj) {
                p = value(p, end, depth + 1);          /* key */
                if (!p) return NULL;
                p = ws(p, end);
                if (p >= end || *p != ':') return NULL;
                p++;
            }
            p = value(p, end, depth + 1);
            if (!p) return NULL;
            p = ws(p, end);
            if (p < end && *p == ',') { p++; continue; }
            if (p < end && *p == close) return p + 1;
            return NULL;
        }
    }
    /* number or literal: up to a delimiter */
    const char *s = p;
    while (p < end && *p != ',' && *p != ']' && *p != '}' && *p != ' ' && *p != '\t' &&
           *p != '\n' && *p != '\r')
        p++;
    return p > s ? p : NULL;
}

const char *jscan_value(const char *p, const char *end) { return value(p, end, 0); }

static const char *expect(const char *p, const char *end, char c)
{
    p = ws(p, end);
    return p < end && *p == c ? p + 1 : NULL;
}

char *jscan_signed_text(const char *text, size_t n, size_t *len)
{
    const char *end = text + n, *p = text;
    if (!(p = expect(p, end, '['))) return NULL;
    if (!(p = jscan_value(p, end))) return NULL;          /* txid */
    if (!(p = expect(p, end, ','))) return NULL;
    if (!(p = expect(p, end, '['))) return NULL;
    for (int i = 0; i < 2; i++) {                          /* sig, key */
        if (!(p = jscan_value(p, end))) return NULL;
        if (!(p = expect(p, end, ','))) return NULL;
    }
    const char *start = ws(p, end);
    for (int i = 0; i < 3; i++) {                          /* cookie, cmd, args */
        if (!(p = jscan_value(p, end))) return NULL;
        if (i < 2 && !(p = expect(p, end, ','))) return NULL;
    }
    size_t body = (size_t)(p - start);
    char *out = malloc(body + 3);
    if (!out) return NULL;
    out[0] = '[';
    memcpy(out + 1, start, body);
    out[body + 1] = ']';
    out[body + 2] = 0;
    *len = body + 2;
    return out;
}
