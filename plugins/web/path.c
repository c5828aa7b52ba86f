/*
** path.c - turn a request path into a clean path under a static tree: the
** first check against climbing out of it (realpath is the second, in static.c).
*/
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "web.h"

static int hexval(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decode %xx and normalise: empty and "." segments dropped, a trailing '/'
** kept.  NULL (a 400) for a bad escape, a NUL byte or a ".." segment, so no
** path can climb out of a tree; what remains is checked again with
** realpath against the checkout (symbolic links). */
char *web_clean_path(const char *raw)
{
    if (raw[0] != '/') return NULL;
    size_t n = strlen(raw);
    if (n >= PATH_MAX / 2) return NULL;
    char *dec = malloc(n + 1), *out = malloc(n + 2);
    if (!dec || !out) { free(dec); free(out); return NULL; }
    size_t d = 0;
    for (size_t i = 0; i < n; i++) {
        if (raw[i] == '%') {
            int hi = i + 2 < n ? hexval(raw[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(raw[i + 2]) : -1;
            if (hi < 0 || lo < 0) goto bad;
            char c = (char)(hi * 16 + lo);
            if (!c) goto bad;
            dec[d++] = c;
            i += 2;
        } else {
            dec[d++] = raw[i];
        }
    }
    dec[d] = 0;
    size_t o = 0;
    out[o++] = '/';
    const char *s = dec;
    while (*s) {
        while (*s == '/') s++;
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        if (len == 2 && s[0] == '.' && s[1] == '.') goto bad;
        if (len && !(len == 1 && s[0] == '.')) {
            if (o > 1) out[o++] = '/';
            memcpy(out + o, s, len);
            o += len;
        }
        s += len;
    }
    if (d > 1 && dec[d - 1] == '/' && o > 1) out[o++] = '/';
    out[o] = 0;
    free(dec);
    return out;
bad:
    free(dec);
    free(out);
    return NULL;
}
