/*
** totp.c - a small self-contained SHA-1 + HMAC-SHA1 and RFC 6238 TOTP.
** SHA-1 is here only because TOTP (as every authenticator app does it)
** needs HMAC-SHA1 and libsodium has no SHA-1; it is not used for anything
** else.  Checked against the RFC 3174 / 2202 / 6238 vectors in the tests.
*/
#include <string.h>
#include <sodium.h>
#include "totp.h"

#define ROL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(uint32_t h[5], const unsigned char *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++) w[i] = ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20)      { f = (b & c) | (~b & d);           k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d;                    k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d);  k = 0x8F1BBCDC; }
        else             { f = b ^ c ^ d;                    k = 0xCA62C1D6; }
        uint32_t t = ROL(a, 5) + f + e + k + w[i];
        e = d; d = c; c = ROL(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

void sha1_init(sha1_ctx *c)
{
    static const uint32_t iv[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
    memcpy(c->h, iv, sizeof iv);
    c->len = 0;
    c->used = 0;
}

void sha1_update(sha1_ctx *c, const void *data, size_t n)
{
    const unsigned char *p = data;
    c->len += n;
    while (n) {
        size_t take = 64 - c->used < n ? 64 - c->used : n;
        memcpy(c->buf + c->used, p, take);
        c->used += take; p += take; n -= take;
        if (c->used == 64) { sha1_block(c->h, c->buf); c->used = 0; }
    }
}

void sha1_final(sha1_ctx *c, unsigned char out[20])
{
    uint64_t bits = c->len * 8;
    unsigned char pad = 0x80, zero = 0, lenb[8];
    sha1_update(c, &pad, 1);
    while (c->used != 56) sha1_update(c, &zero, 1);
    for (int i = 0; i < 8; i++) lenb[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha1_update(c, lenb, 8);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(c->h[i] >> 24);
        out[4 * i + 1] = (unsigned char)(c->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(c->h[i] >> 8);
        out[4 * i + 3] = (unsigned char)c->h[i];
    }
    sodium_memzero(c, sizeof *c);
}

void hmac_sha1(const unsigned char *key, size_t klen, const unsigned char *msg, size_t mlen,
               unsigned char out[20])
{
    unsigned char k[64] = { 0 }, pad[64], inner[20];
    sha1_ctx c;
    if (klen > 64) { sha1_init(&c); sha1_update(&c, key, klen); sha1_final(&c, k); }
    else memcpy(k, key, klen);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    sha1_init(&c); sha1_update(&c, pad, 64); sha1_update(&c, msg, mlen); sha1_final(&c, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    sha1_init(&c); sha1_update(&c, pad, 64); sha1_update(&c, inner, 20); sha1_final(&c, out);
    sodium_memzero(k, sizeof k);
    sodium_memzero(pad, sizeof pad);
}

int base32_decode(const char *in, unsigned char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        int v;
        char ch = *p;
        if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
        else if (ch >= 'a' && ch <= 'z') v = ch - 'a';
        else if (ch >= '2' && ch <= '7') v = ch - '2' + 26;
        else if (ch == '=' || ch == ' ') continue;
        else return -1;
        acc = (acc << 5) | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            if (n >= cap) return -1;
            out[n++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    return (int)n;
}

uint32_t hotp6(const unsigned char *key, size_t klen, uint64_t counter)
{
    unsigned char msg[8], mac[20];
    for (int i = 0; i < 8; i++) msg[i] = (unsigned char)(counter >> (56 - 8 * i));
    hmac_sha1(key, klen, msg, 8, mac);
    int off = mac[19] & 0x0f;
    uint32_t bin = (uint32_t)(mac[off] & 0x7f) << 24 | (uint32_t)mac[off + 1] << 16 |
                   (uint32_t)mac[off + 2] << 8 | mac[off + 3];
    return bin % 1000000;
}

bool totp_check(const char *secret, const char *code, uint64_t now_ms)
{
    unsigned char key[128];
    if (!secret || !code || strlen(code) != 6 || strspn(code, "0123456789") != 6) return false;
    int klen = base32_decode(secret, key, sizeof key);
    if (klen <= 0) return false;
    uint32_t want = 0;
    for (int i = 0; i < 6; i++) want = want * 10 + (uint32_t)(code[i] - '0');
    uint64_t step = now_ms / 30000;
    bool ok = false;
    /* Window 1 (docs/protocol/http.md 9.4): clocks drift and users type slowly. */
    for (int d = -1; d <= 1; d++)
        if ((d >= 0 || step > 0) && hotp6(key, (size_t)klen, step + (uint64_t)(int64_t)d) == want) ok = true;
    sodium_memzero(key, sizeof key);
    return ok;
}
