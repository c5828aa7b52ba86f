/*
** text.c - buffers, JSON string escaping and base64 (strict through
** libsodium, lenient by hand).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "text.h"

static bool reserve(tbuf *b, size_t more);

void tbuf_add(tbuf *b, const char *s, size_t n)
{
    if (!reserve(b, n)) return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = 0;
}

void tbuf_adds(tbuf *b, const char *s) { tbuf_add(b, s, strlen(s)); }

/* Bytes that JSON.stringify escapes: '"', '\\' and the controls. */
static const unsigned char needs_escape[256] = {
    1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,
    0,0,1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,1,0,0,0,
};

static bool reserve(tbuf *b, size_t more)
{
    if (b->oom) return false;
    if (b->len + more + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more + 1) cap *= 2;
    char *p = realloc(b->s, cap);
    if (!p) { b->oom = true; return false; }
    b->s = p;
    b->cap = cap;
    return true;
}

void tbuf_json_str(tbuf *b, const char *s, size_t n)
{
    tbuf_add(b, "\"", 1);
    tbuf_json_esc(b, s, n);
    tbuf_add(b, "\"", 1);
}

void tbuf_json_esc(tbuf *b, const char *s, size_t n)
{
    /* room for the common case; grown below if escapes pile up */
    if (!reserve(b, n + n / 4 + 16)) return;
    char *o = b->s + b->len;
    char *lim = b->s + b->cap - 8;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (o >= lim) {             /* many escapes: grow and go on */
            b->len = (size_t)(o - b->s);
            if (!reserve(b, (n - i) * 6 + 16)) return;
            o = b->s + b->len;
            lim = b->s + b->cap - 8;
        }
        if (!needs_escape[c]) { *o++ = (char)c; continue; }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default: {
            static const char hex[] = "0123456789abcdef";
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = hex[c >> 4]; *o++ = hex[c & 15];
        }
        }
    }
    *o = 0;
    b->len = (size_t)(o - b->s);
}

void tbuf_int(tbuf *b, long long v)
{
    char t[24];
    size_t n = sizeof t;
    unsigned long long u = v < 0 ? 0 - (unsigned long long)v : (unsigned long long)v;
    do { t[--n] = (char)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) t[--n] = '-';
    tbuf_add(b, t + n, sizeof t - n);
}

void tbuf_free(tbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof *b);
}

static int b64val(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+' || c == '-') return 62;
    if (c == '/' || c == '_') return 63;
    return -1;
}

size_t b64_decode_lenient(const char *in, size_t n, unsigned char *out, size_t cap)
{
    unsigned acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '=') break;          /* padding ends the data */
        int v = b64val((unsigned char)in[i]);
        if (v < 0) continue;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= cap) return (size_t)-1;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o;
}

long b64_decode(const char *s, size_t n, unsigned char *out, size_t cap)
{
    size_t got = 0;
    if (!s || sodium_base642bin(out, cap, s, n, NULL, &got, NULL, sodium_base64_VARIANT_ORIGINAL))
        return -1;
    return (long)got;
}

bool b64_decode_exact(const char *s, unsigned char *out, size_t want)
{
    return s && b64_decode(s, strlen(s), out, want) == (long)want;
}

unsigned char *b64_decode_dup(const char *s, size_t n, size_t *len)
{
    unsigned char *out = s ? malloc(n + 1) : NULL;   /* + 1: "" is valid, malloc(0) is not */
    long got = out ? b64_decode(s, n, out, n + 1) : -1;
    if (got >= 0) { *len = (size_t)got; return out; }
    free(out);
    return NULL;
}

bool b64_encode(const void *in, size_t n, char *out, size_t cap)
{
    /* libsodium aborts the process on a short buffer: check first */
    if (cap < sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL)) return false;
    sodium_bin2base64(out, cap, in, n, sodium_base64_VARIANT_ORIGINAL);
    return true;
}

char *b64_encode_dup(const void *in, size_t n)
{
    size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
    char *out = malloc(cap);
    if (out) b64_encode(in, n, out, cap);
    return out;
}
