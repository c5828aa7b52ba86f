/*
** text.h - small text helpers shared by plugins: a growable byte buffer,
** JSON string escaping (as JavaScript's JSON.stringify writes it), and the
** one set of base64 helpers every plugin uses: strict ones over libsodium
** (padded standard base64, what tweetnacl-util reads and writes) and a
** lenient decoder (what Node's Buffer.from(s, 'base64') accepts, which
** libsodium refuses: mixed alphabets, missing padding, stray characters).
*/
#ifndef CPS_TEXT_H
#define CPS_TEXT_H
#include <stdbool.h>
#include <stddef.h>

typedef struct tbuf { char *s; size_t len, cap; bool oom; } tbuf;

void tbuf_add(tbuf *b, const char *s, size_t n);
void tbuf_adds(tbuf *b, const char *s);
/* Append s as a JSON string literal, quotes included. */
void tbuf_json_str(tbuf *b, const char *s, size_t n);
/* The same without the quotes (to escape a string built from parts). */
void tbuf_json_esc(tbuf *b, const char *s, size_t n);
/* Append v in decimal. */
void tbuf_int(tbuf *b, long long v);
void tbuf_free(tbuf *b);

/* Decode base64 in either alphabet (+/ or -_), padding optional, other
** characters ignored.  Returns the decoded length, or (size_t)-1 if `out`
** (of `cap` bytes) is too small. */
size_t b64_decode_lenient(const char *in, size_t n, unsigned char *out, size_t cap);

/* Strict decoding of `n` characters of padded standard base64 into `out`
** (of `cap` bytes).  Returns the decoded length, or -1 if `s` is not such
** base64 or does not fit. */
long b64_decode(const char *s, size_t n, unsigned char *out, size_t cap);
/* The same for a whole string that must decode to exactly `want` bytes. */
bool b64_decode_exact(const char *s, unsigned char *out, size_t want);
/* The same into a malloc'd buffer (length in *len), or NULL. */
unsigned char *b64_decode_dup(const char *s, size_t n, size_t *len);
/* Padded standard base64 of `n` bytes into `out` (NUL-terminated); false,
** out untouched, if `cap` is too small. */
bool b64_encode(const void *in, size_t n, char *out, size_t cap);
/* The same, malloc'd (NULL when out of memory). */
char *b64_encode_dup(const void *in, size_t n);

#endif
