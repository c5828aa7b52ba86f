/*
** ids.c - validation of channel ids and generation of user ids.
*/
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
#include "ids.h"

bool ids_is_hex(const char *s, size_t len)
{
    if (!s || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

bool ids_valid_channel(const char *s)
{
    if (!s) return false;
    size_t n = strnlen(s, 35);
    return n >= 32 && n <= 34 && ids_is_hex(s, n);
}

void ids_random_user(char out[33])
{
    unsigned char b[16];
    size_t got = 0;
    while (got < sizeof b) {
        ssize_t r = getrandom(b + got, sizeof b - got, 0);
        if (r > 0) got += (size_t)r;
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", b[i]);
}
