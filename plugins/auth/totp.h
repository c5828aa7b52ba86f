/*
** totp.h - SHA-1, HMAC-SHA1 and TOTP (RFC 3174, 2104, 6238) for the auth
** plugin: libsodium has no SHA-1, and TOTP authenticators all use it.
*/
#ifndef CPS_AUTH_TOTP_H
#define CPS_AUTH_TOTP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sha1_ctx {
    uint32_t h[5];
    uint64_t len;              /* bytes hashed so far */
    unsigned char buf[64];
    size_t used;
} sha1_ctx;

void sha1_init(sha1_ctx *c);
void sha1_update(sha1_ctx *c, const void *data, size_t n);
void sha1_final(sha1_ctx *c, unsigned char out[20]);
void hmac_sha1(const unsigned char *key, size_t klen, const unsigned char *msg, size_t mlen,
               unsigned char out[20]);

/* RFC 4648 base32 (either case, '=' padding and spaces ignored).  Returns
** the decoded length, or -1 on a character outside the alphabet or if `out`
** is too small. */
int base32_decode(const char *in, unsigned char *out, size_t cap);

/* The 6-digit code of `key` for time step `counter` (RFC 4226 truncation). */
uint32_t hotp6(const unsigned char *key, size_t klen, uint64_t counter);

/* Whether `code` (6 ASCII digits) is the code of base32 `secret` at
** now_ms's 30-second step or the one before or after. */
bool totp_check(const char *secret, const char *code, uint64_t now_ms);
#endif
