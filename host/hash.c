/*
** hash.c - placement: the jump consistent hash (Lamping & Veach) with the
** key derivation of cryptpad/scalable-server (docs/protocol/cluster.md 3.1), so that
** a key lands on the same node index as in the prototype.
*/
#include <string.h>
#include "host.h"

/* '/' becomes '-', pad with '0' to 8 bytes, read as little-endian u64. */
uint64_t cps_hash_key(const char *id)
{
    unsigned char k[8];
    size_t n = id ? strlen(id) : 0;
    for (size_t i = 0; i < 8; i++) {
        unsigned char c = i < n ? (unsigned char)id[i] : '0';
        k[i] = c == '/' ? '-' : c;
    }
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | k[i];
    return v;
}

int32_t cps_jump_hash(uint64_t key, int32_t buckets)
{
    int64_t b = -1, j = 0;
    if (buckets <= 0) return -1;
    while (j < buckets) {
        b = j;
        key = key * 2862933555777941757ULL + 1;
        /* multiply by 2^31 first, then divide, in double: bit-exact with JS */
        j = (int64_t)(((double)(b + 1) * 2147483648.0) / (double)((key >> 33) + 1));
    }
    return (int32_t)b;
}
