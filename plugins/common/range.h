/*
** range.h - the one byte range a Range header may ask of a file
** (docs/protocol/http.md): shared by the static tree and the blob downloads.
*/
#ifndef CPS_RANGE_H
#define CPS_RANGE_H
#include <stdint.h>

/* "bytes=a-b", "bytes=a-" or "bytes=-n" (digits only): 1 and the span to
** send, 0 to ignore the header (anything else: the whole file is sent, as
** RFC 9110 §14.2 allows), -1 when the range cannot be satisfied (416). */
int http_byte_range(const char *h, uint64_t size, uint64_t *off, uint64_t *len);

#endif
