/*
** fuzz_linkbatch.c - libFuzzer target for what a cluster link reads after
** the handshake: the JSON reader (host/jsonr.c) against json_loadb, which it
** must agree with value for value, and the split of an opened batch into
** its length-prefixed messages (host/link.c, docs/protocol/cluster.md §2.4).
*/
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include "host.h"

void cps_link_fuzz_setup(const char *me, const unsigned char key[32], const char *peer);
int cps_link_fuzz_batch(const unsigned char *plain, size_t len);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        static const unsigned char key[32] = { 7 };
        if (sodium_init() < 0) abort();
        cps_router_init(NULL);
        cps_link_fuzz_setup("b", key, "a");
        ready = true;
    }
    if (size < 1) return 0;
    if (data[0] & 1) {                    /* a batch's plaintext */
        cps_link_fuzz_batch(data + 1, size - 1);
        cps_router_drain();
        return 0;
    }
    /* the reader: accepts what json_loadb accepts (as an array or object),
    ** with equal values.  One known difference: jansson's reader skips a
    ** raw NUL byte outside strings (its stream marks a buffer's end with
    ** one); ours refuses it, and no writer puts one there. */
    const char *text = (const char *)data + 1;
    bool nul = memchr(text, 0, size - 1) != NULL;
    json_t *mine = cps_jsonr(text, size - 1);
    json_t *ref = json_loadb(text, size - 1, 0, NULL);
    if (ref && !json_is_array(ref) && !json_is_object(ref)) { json_decref(ref); ref = NULL; }
    if (mine && (!ref || !json_equal(mine, ref))) abort();
    if (ref && !mine && !nul) abort();
    /* and the writer writes what json_dumps writes */
    if (mine) {
        cps_jsonw w = { 0 };
        cps_jsonw_value(&w, mine);
        char *d = json_dumps(mine, JSON_COMPACT);
        if (!w.bad && d && (strlen(d) != w.len || memcmp(d, w.p, w.len))) abort();
        free(d);
        free(w.p);
    }
    json_decref(mine);
    json_decref(ref);
    return 0;
}
