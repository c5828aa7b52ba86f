/*
** swar.h - eight bytes at a time: the JSON reader and writer of the links
** skip the plain runs of a string (no quote, backslash, control byte or
** non-ASCII byte) a word at a time instead of a byte at a time.
*/
#ifndef CPS_SWAR_H
#define CPS_SWAR_H
#include <stdint.h>
#include <string.h>

#define SWAR_ONES  0x0101010101010101ULL
#define SWAR_HIGHS 0x8080808080808080ULL

static inline uint64_t swar_load(const unsigned char *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* Non-zero iff some byte of x is below n (n <= 0x80); exact as a test of
** "any byte", which is all it is used for. */
static inline uint64_t swar_below(uint64_t x, unsigned n)
{
    return (x - SWAR_ONES * n) & ~x & SWAR_HIGHS;
}

/* Non-zero iff some byte of x equals c. */
static inline uint64_t swar_has(uint64_t x, unsigned char c)
{
    return swar_below(x ^ (SWAR_ONES * c), 1);
}

/* Non-zero iff the word holds a byte a JSON string cannot carry as it is:
** a quote, a backslash, a control byte, or a byte of a multi-byte UTF-8
** character (which the callers check one by one). */
static inline uint64_t swar_special(uint64_t x)
{
    return (x & SWAR_HIGHS) | swar_below(x, 0x20) | swar_has(x, '"') | swar_has(x, '\\');
}

#endif
