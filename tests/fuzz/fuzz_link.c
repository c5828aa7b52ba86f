/*
** fuzz_link.c - libFuzzer target for the cluster link handshake: any bytes
** as the HELLO a listener reads, and HELLOs sealed with the right key from
** fuzzed names, times and bindings; only the one true HELLO is accepted.
*/
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "host.h"

void cps_link_fuzz_setup(const char *me, const unsigned char key[32], const char *peer);
char *cps_link_fuzz_seal(const char *from, const char *to, uint64_t t, const char *extra);
bool cps_link_fuzz_hello(const char *text, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        static const unsigned char key[32] = { 7 };
        if (sodium_init() < 0) abort();
        cps_link_fuzz_setup("b", key, "a");
        ready = true;
    }
    if (size < 1) return 0;
    if (!(data[0] & 1)) {                 /* raw bytes */
        cps_link_fuzz_hello((const char *)data + 1, size - 1);
        return 0;
    }
    /* "from\0to\0extra" and a time offset in seconds, sealed properly */
    char buf[256] = { 0 };
    size_t n = size - 1 < sizeof buf - 3 ? size - 1 : sizeof buf - 3;
    memcpy(buf, data + 1, n);
    const char *from = buf, *to = from + strlen(from) + 1, *extra = to + strlen(to) + 1;
    if (extra >= buf + sizeof buf) extra = "";
    int8_t dt = (int8_t)data[0] >> 1;
    uint64_t t = cps_now_ms() + (uint64_t)((int64_t)dt * 1000);
    char *hello = cps_link_fuzz_seal(from, to, t, extra);
    if (!hello) return 0;
    bool ok = cps_link_fuzz_hello(hello, strlen(hello));
    /* a fresh nonce each time: never accepted unless it names a -> b,
    ** binds nothing and is within the window (30 s back, 5 s ahead; a
    ** second of slack at either edge) */
    bool could = !strcmp(from, "a") && !strcmp(to, "b") && !*extra && dt >= -31 && dt <= 6;
    bool must = !strcmp(from, "a") && !strcmp(to, "b") && !*extra && dt >= -29 && dt <= 4;
    if ((ok && !could) || (must && !ok)) abort();
    free(hello);
    return 0;
}
