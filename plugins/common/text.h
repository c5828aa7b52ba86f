/*
** text.h - small text helpers shared by plugins: a growable byte buffer,
** JSON string escaping (as JavaScript's JSON.stringify writes it), and
** lenient base64 decoding (as Node's Buffer.from(s, 'base64') reads it).
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
void tbuf_free(tbuf *b);

/* Decode base64 in either alphabet (+/ or -_), padding optional, other
** characters ignored.  Returns the decoded length, or (size_t)-1 if `out`
** (of `cap` bytes) is too small. */
size_t b64_decode_lenient(const char *in, size_t n, unsigned char *out, size_t cap);

#endif
