/*
** ids.c - what kind of channel, object or key an id is, the safe form of
** public keys, and generation of user ids.
*/
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
#include "ids.h"
#include "text.h"

bool ids_is_hex(const char *s, size_t len)
{
    if (!s || strlen(s) != len) return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

/* Either base64 alphabet, and '=' (padding): the characters of a key. */
static bool key_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/' || c == '-' || c == '='))
            return false;
    }
    return true;
}

enum ids_kind ids_kind_of_len(size_t n)
{
    switch (n) {
    case IDS_PAD_LEN: return IDS_PAD;
    case IDS_ADMIN_LEN: return IDS_ADMIN;
    case IDS_EPHEMERAL_LEN: return IDS_EPHEMERAL;
    case IDS_BLOB_LEN: return IDS_BLOB;
    case IDS_KEY_LEN: return IDS_KEY;
    default: return IDS_OTHER;
    }
}

enum ids_kind ids_classify(const char *id)
{
    if (!id) return IDS_OTHER;
    size_t n = strnlen(id, IDS_BLOB_LEN + 1);
    enum ids_kind k = ids_kind_of_len(n);
    if (k == IDS_KEY) return key_chars(id, n) ? k : IDS_OTHER;
    return k != IDS_OTHER && ids_is_hex(id, n) ? k : IDS_OTHER;
}

bool ids_valid_channel(const char *s)
{
    enum ids_kind k = ids_classify(s);
    return k == IDS_PAD || k == IDS_ADMIN || k == IDS_EPHEMERAL;
}

bool ids_safe_key(const char *key, char safe[IDS_KEY_LEN + 1])
{
    if (ids_classify(key) != IDS_KEY) return false;
    for (int i = 0; i <= IDS_KEY_LEN; i++) safe[i] = key[i] == '/' ? '-' : key[i];
    return true;
}

bool ids_safe_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] == '/' || !key_chars(s + i, 1)) return false;
    return true;
}

bool ids_is_safe_key(const char *key)
{
    return ids_classify(key) == IDS_KEY && ids_safe_chars(key, IDS_KEY_LEN);
}

bool ids_key_norm(const char *key, char unsafe[IDS_KEY_LEN + 1], char safe[IDS_KEY_LEN + 1])
{
    unsigned char raw[IDS_KEY_BYTES + 8];
    if (!key || strnlen(key, 61) > 60) return false;
    if (b64_decode_lenient(key, strlen(key), raw, sizeof raw) != IDS_KEY_BYTES) return false;
    b64_encode(raw, IDS_KEY_BYTES, unsafe, IDS_KEY_LEN + 1);
    return ids_safe_key(unsafe, safe);
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
