/*
** jscan.h - find JSON values in text without parsing it, to recover the
** exact bytes a client signed (docs/protocol/rpc.md §3.2: the signature covers the text
** JSON.stringify produced, which a re-serialisation would not reproduce).
*/
#ifndef CPS_JSCAN_H
#define CPS_JSCAN_H
#include <stddef.h>

/* The end of the JSON value starting at p (after whitespace), or NULL. */
const char *jscan_value(const char *p, const char *end);

/* From the text of [txid, [sig, key, cookie, cmd, args]], the text
** "[cookie,cmd,args]" exactly as the client wrote those three elements.
** Returns a malloc'd string (its length in *len), or NULL if the text does
** not have that shape. */
char *jscan_signed_text(const char *text, size_t n, size_t *len);

#endif
