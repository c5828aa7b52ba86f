/* cpsload: the netflux frame scanner.  Server frames are short JSON arrays
 * (docs/protocol/netflux.md §2, §5); the load generator only needs where each
 * of the first elements starts and ends, so it scans instead of parsing. */
#include "cpsload.h"
#include <string.h>
#include <stdlib.h>

/* end of a JSON string body starting after its opening quote; NULL if unterminated */
static const char *str_end(const char *p, const char *e)
{
    while (p < e) {
        const char *q = memchr(p, '"', (size_t)(e - p));
        if (!q) return NULL;
        /* count the backslashes before the quote: odd means escaped */
        const char *b = q; size_t n = 0;
        while (b > p && b[-1] == '\\') { b--; n++; }
        if ((n & 1) == 0) return q;
        p = q + 1;
    }
    return NULL;
}

/* skip a nested value ({...} or [...]) with strings; NULL if unterminated */
static const char *skip_nested(const char *p, const char *e)
{
    int depth = 0;
    while (p < e) {
        char ch = *p;
        if (ch == '"') { p = str_end(p + 1, e); if (!p) return NULL; p++; continue; }
        if (ch == '[' || ch == '{') depth++;
        else if (ch == ']' || ch == '}') { if (--depth == 0) return p + 1; }
        p++;
    }
    return NULL;
}

int nf_scan(const char *s, size_t len, nf_frame *f)
{
    const char *p = s, *e = s + len;
    f->n = 0;
    while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
    if (p >= e || *p != '[') return -1;
    p++;
    for (;;) {
        while (p < e && (*p == ' ' || *p == ',' || *p == '\n')) p++;
        if (p >= e) return -1;
        if (*p == ']') return 0;
        if (f->n >= NF_MAX_EL) return 0;            /* enough for us */
        int i = f->n;
        if (*p == '"') {
            const char *q = str_end(p + 1, e);
            if (!q) return -1;
            f->type[i] = NF_STR; f->p[i] = p + 1; f->len[i] = (size_t)(q - p - 1);
            p = q + 1;
        } else if (*p == '[' || *p == '{') {
            const char *q = skip_nested(p, e);
            if (!q) return -1;
            f->type[i] = NF_OTHER; f->p[i] = p; f->len[i] = (size_t)(q - p);
            p = q;
        } else {
            const char *q = p;
            while (q < e && *q != ',' && *q != ']') q++;
            f->type[i] = (*p == 'n') ? NF_NULL : ((*p == '-' || (*p >= '0' && *p <= '9')) ? NF_NUM : NF_OTHER);
            f->p[i] = p; f->len[i] = (size_t)(q - p);
            p = q;
        }
        f->n++;
    }
}

int nf_is(const nf_frame *f, int i, const char *lit)
{
    size_t l = strlen(lit);
    return i < f->n && f->type[i] == NF_STR && f->len[i] == l && memcmp(f->p[i], lit, l) == 0;
}

long long nf_num(const nf_frame *f, int i)
{
    if (i >= f->n || f->type[i] != NF_NUM) return -1;
    long long v = 0;
    for (size_t k = 0; k < f->len[i]; k++) {
        char ch = f->p[i][k];
        if (ch < '0' || ch > '9') break;
        v = v * 10 + (ch - '0');
    }
    return v;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* out must hold len bytes; \uXXXX becomes UTF-8 (surrogate pairs kept as two
 * 3-byte sequences: only byte counts and ASCII content matter here) */
size_t nf_unescape(const char *s, size_t len, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch != '\\' || i + 1 >= len) { out[o++] = ch; continue; }
        ch = s[++i];
        switch (ch) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'u':
            if (i + 4 < len) {
                int v = 0, ok = 1;
                for (int k = 1; k <= 4; k++) { int h = hexval(s[i + k]); if (h < 0) ok = 0; v = v * 16 + (h < 0 ? 0 : h); }
                if (ok) {
                    i += 4;
                    if (v < 0x80) out[o++] = (char)v;
                    else if (v < 0x800) { out[o++] = (char)(0xc0 | (v >> 6)); out[o++] = (char)(0x80 | (v & 0x3f)); }
                    else { out[o++] = (char)(0xe0 | (v >> 12)); out[o++] = (char)(0x80 | ((v >> 6) & 0x3f)); out[o++] = (char)(0x80 | (v & 0x3f)); }
                    break;
                }
            }
            out[o++] = 'u'; break;
        default: out[o++] = ch; break;     /* \" \\ \/ */
        }
    }
    return o;
}
