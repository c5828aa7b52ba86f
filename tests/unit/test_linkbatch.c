/*
** test_linkbatch.c - the cluster link after the handshake
** (docs/protocol/cluster.md §2.4): a sealed batch of messages is accepted in
** order, a replayed, truncated or wrongly split batch is refused; the link's
** JSON writer and reader agree with jansson.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sodium.h>

#include "host.h"

void cps_link_fuzz_setup(const char *me, const unsigned char key[32], const char *peer);
void cps_link_fuzz_up(const unsigned char rx[32], uint64_t rxn);
int cps_link_fuzz_frame(const unsigned char *data, size_t len);
bool cps_link_fuzz_cipher(bool aes);

static const unsigned char session[32] = { 1, 2, 3 };

/* A batch as the peer seals it: counter nonce, length-prefixed messages. */
static size_t seal(unsigned char *out, uint64_t counter, const char **msgs, int n, bool bad_len)
{
    unsigned char plain[1024];
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(msgs[i]) + (bad_len && i == n - 1 ? 1 : 0);
        plain[at] = (unsigned char)(l >> 24); plain[at + 1] = (unsigned char)(l >> 16);
        plain[at + 2] = (unsigned char)(l >> 8); plain[at + 3] = (unsigned char)l;
        memcpy(plain + at + 4, msgs[i], strlen(msgs[i]));
        at += 4 + strlen(msgs[i]);
    }
    unsigned char nonce[24] = { 0 };
    for (int i = 0; i < 8; i++) nonce[i] = (unsigned char)(counter >> (8 * i));
    crypto_secretbox_easy(out, plain, at, nonce, session);
    return at + crypto_secretbox_MACBYTES;
}

static int setup(void **state)
{
    (void)state;
    static const unsigned char key[32] = { 9 };
    if (sodium_init() < 0 || cps_router_init(NULL)) return -1;
    if (cps_router_add_node("core:0", NULL) || cps_router_add_remote("front:0")) return -1;
    cps_link_fuzz_setup("core:0", key, "front:0");
    cps_link_fuzz_up(session, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    cps_router_shutdown();
    return 0;
}

static void test_batch_accepted_then_replay_refused(void **state)
{
    (void)state;
    const char *msgs[] = { "[\"E\",0,\"core:0\",\"A\",null,{\"n\":1}]", "[\"E\",0,\"core:0\",\"B\",null,[2]]" };
    unsigned char box[1200];
    size_t n = seal(box, 0, msgs, 2, false);
    size_t before = cps_router_queued();
    assert_int_equal(cps_link_fuzz_frame(box, n), 0);
    assert_int_equal(cps_router_queued(), before + 2);         /* both messages, one batch */
    assert_int_equal(cps_link_fuzz_frame(box, n), -1);          /* the same batch again */
    cps_link_fuzz_up(session, 1);
    n = seal(box, 1, msgs, 2, false);
    assert_int_equal(cps_link_fuzz_frame(box, n - 1), -1);      /* cut short: its MAC fails */
    cps_link_fuzz_up(session, 1);
    assert_int_equal(cps_link_fuzz_frame(box, n), 0);           /* the whole one still opens */
    cps_router_drain();
}

static void test_batch_split_checked(void **state)
{
    (void)state;
    const char *msgs[] = { "[\"E\",0,\"core:0\",\"A\",null,1]", "[\"E\",0,\"core:0\",\"B\",null,2]" };
    unsigned char box[1200];
    cps_link_fuzz_up(session, 7);
    size_t n = seal(box, 7, msgs, 2, true);                    /* the last length runs past the end */
    assert_int_equal(cps_link_fuzz_frame(box, n), -1);
    cps_link_fuzz_up(session, 8);
    n = seal(box, 8, msgs, 0, false);                          /* an empty batch */
    assert_int_equal(cps_link_fuzz_frame(box, n), -1);
    const char *notjson[] = { "[\"E\",0,\"core:0\",\"A\",null,1" };
    cps_link_fuzz_up(session, 9);
    n = seal(box, 9, notjson, 1, false);
    assert_int_equal(cps_link_fuzz_frame(box, n), -1);
    cps_router_drain();
}

static void test_json_agrees_with_jansson(void **state)
{
    (void)state;
    const char *ok[] = {
        "[]", "{}", " [1, -2, 0, 9223372036854775807, -9223372036854775808] ",
        "[1.5, -0.25e3, 1E-400, 2.0]", "[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u20ac\\ud83d\\ude00\"]",
        "{\"k\":1,\"k\":2,\"\\u0041\":[true,false,null]}", "[\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"]",
        "[[[[{\"a\":{\"b\":[\"c\"]}}]]]]", "[\"\x7f\"]",
    };
    const char *bad[] = {
        "", "1", "\"s\"", "[1,]", "[01]", "[1.]", "[.5]", "[-]", "[1e]", "[9223372036854775808]",
        "[1e400]", "[\"\\u0000\"]", "[\"\\ud800\"]", "[\"\\udc00\\ud800\"]", "[\"\\x\"]", "[\"\x01\"]",
        "[\"\xc0\x80\"]", "[\"\xed\xa0\x80\"]", "[\"\xff\"]", "[tru]", "{\"a\"}", "{1:2}", "[1] x", "[1",
        "{\"a\":1,}", "[\"abc",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        json_t *mine = cps_jsonr(ok[i], strlen(ok[i]));
        json_t *ref = json_loadb(ok[i], strlen(ok[i]), 0, NULL);
        assert_non_null(ref);
        if (!mine) fail_msg("refused: %s", ok[i]);
        assert_true(json_equal(mine, ref));
        cps_jsonw w = { 0 };
        cps_jsonw_value(&w, mine);
        char *d = json_dumps(mine, JSON_COMPACT);
        assert_false(w.bad);
        assert_int_equal(w.len, strlen(d));
        assert_memory_equal(w.p, d, w.len);
        free(d);
        free(w.p);
        json_decref(mine);
        json_decref(ref);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *mine = cps_jsonr(bad[i], strlen(bad[i]));
        if (mine) fail_msg("accepted: %s", bad[i]);
    }
    /* control characters and NUL inside a string value are escaped */
    json_t *v = json_pack("[s%]", "a\0\x1f\"", (size_t)4);
    cps_jsonw w = { 0 };
    cps_jsonw_value(&w, v);
    char *d = json_dumps(v, JSON_COMPACT);
    assert_int_equal(w.len, strlen(d));
    assert_memory_equal(w.p, d, w.len);
    free(d);
    free(w.p);
    json_decref(v);
    assert_false(cps_utf8_valid("\xe0\x80\x80", 3));
    assert_true(cps_utf8_valid("\xf4\x8f\xbf\xbf", 4));
    assert_false(cps_utf8_valid("\xf4\x90\x80\x80", 4));
}

/* The head of a link message is read into fixed fields; the message must
** be exactly [type, integer, dest, cmd, null|error, args]. */
static void test_link_head(void **state)
{
    (void)state;
    cps_link_head h;
    const char *m = " [\"Q\", -9223372036854775808 ,\"st\\u0061ge:1\",\"CHANNEL_MESSAGE\",null,{\"a\":[1,\"x\"]}] ";
    json_t *args = cps_jsonr_link(m, strlen(m), &h);
    assert_non_null(args);
    assert_string_equal(h.type, "Q");
    assert_true(h.qid == INT64_MIN);
    assert_string_equal(h.dest, "stage:1");
    assert_string_equal(h.cmd, "CHANNEL_MESSAGE");
    assert_false(h.has_error);
    json_t *want = json_pack("{s[is]}", "a", 1, "x");
    assert_true(json_equal(args, want));
    json_decref(want);
    json_decref(args);
    m = "[\"R\",7,\"\",\"\",\"EUNAVAILABLE\",null]";
    args = cps_jsonr_link(m, strlen(m), &h);
    assert_true(json_is_null(args));
    assert_true(h.has_error && !strcmp(h.error, "EUNAVAILABLE") && h.qid == 7 && !strcmp(h.type, "R"));
    json_decref(args);
    char longdest[200];
    snprintf(longdest, sizeof longdest, "[\"E\",1,\"%0100d\",\"X\",null,1]", 0);
    const char *bad[] = {
        "[\"E\",1,\"d\",\"c\",null]", "[\"E\",1,\"d\",\"c\",null,1,2]", "[\"E\",1.5,\"d\",\"c\",null,1]",
        "[1,1,\"d\",\"c\",null,1]", "[\"E\",1,\"d\",\"c\",7,1]", "[\"E\",1,\"d\",\"c\",null,1] x",
        "{\"E\":1}", "[\"E\",1,null,\"c\",null,1]", "[\"E\",1,\"d\",\"c\",null,[1,]]", longdest, "",
        "[\"E\",1,\"d\",\"c\",null,\"\\u0000\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        args = cps_jsonr_link(bad[i], strlen(bad[i]), &h);
        if (args) fail_msg("accepted: %s", bad[i]);
    }
}

/* The word-at-a-time scans: a special byte at every offset of a string
** longer than a few words is still found (writer, reader, UTF-8 check). */
static void test_words(void **state)
{
    (void)state;
    const char *specials[] = { "\"", "\\", "\x1f", "\xc3\xa9", "\x7f" };
    for (size_t k = 0; k < sizeof specials / sizeof *specials; k++) {
        for (size_t at = 0; at < 26; at++) {
            char text[64];
            memset(text, 'a', 30);
            size_t sl = strlen(specials[k]);
            memcpy(text + at, specials[k], sl);
            text[30] = 0;
            json_t *v = json_pack("[s]", text);
            assert_non_null(v);
            cps_jsonw w = { 0 };
            cps_jsonw_value(&w, v);
            char *d = json_dumps(v, JSON_COMPACT);
            assert_int_equal(w.len, strlen(d));
            assert_memory_equal(w.p, d, w.len);
            json_t *back = cps_jsonr(w.p, w.len);
            assert_non_null(back);
            assert_true(json_equal(back, v));
            json_decref(back);
            free(d);
            free(w.p);
            json_decref(v);
            assert_true(cps_utf8_valid(text, 30));
            text[at] = (char)0xff;                 /* never valid UTF-8 */
            assert_false(cps_utf8_valid(text, 30));
            char raw[80];                          /* a raw control byte in a string is refused */
            memset(text + at, 'a', sl);
            text[at] = 0x01;
            int n = snprintf(raw, sizeof raw, "[\"%s\"]", text);
            assert_null(cps_jsonr(raw, (size_t)n));
        }
    }
}

/* With AES-256-GCM agreed (docs/protocol/cluster.md §2.4): a batch sealed
** with the tag in front and the counter nonce is accepted; the same batch
** again (an old counter), a flipped bit, or one sealed with secretbox is
** refused.  In-place sealing gives what sealing to another buffer gives. */
static void test_batch_aes(void **state)
{
    (void)state;
    if (!cps_link_fuzz_cipher(true)) skip();
    crypto_aead_aes256gcm_state st;
    crypto_aead_aes256gcm_beforenm(&st, session);
    const char *m = "[\"E\",0,\"core:0\",\"NOPE\",null,{}]";
    size_t n = strlen(m);
    unsigned char buf[256], other[256], nonce[24] = { 0 };
    /* the counter is where test_batch_accepted_then_replay_refused left it: resync at 100 */
    cps_link_fuzz_up(session, 100);
    assert_true(cps_link_fuzz_cipher(true));
    nonce[0] = 100;
    unsigned char *plain = buf + 16;
    plain[0] = plain[1] = plain[2] = 0;
    plain[3] = (unsigned char)n;
    memcpy(plain + 4, m, n);
    crypto_aead_aes256gcm_encrypt_detached_afternm(other + 16, other, NULL, plain, n + 4, NULL, 0, NULL, nonce, &st);
    crypto_aead_aes256gcm_encrypt_detached_afternm(plain, buf, NULL, plain, n + 4, NULL, 0, NULL, nonce, &st);
    assert_memory_equal(buf, other, n + 20);
    assert_int_equal(cps_link_fuzz_frame(buf, n + 20), 0);
    assert_int_equal(cps_link_fuzz_frame(buf, n + 20), -1);          /* replay: counter 100 again */
    cps_link_fuzz_up(session, 101);
    nonce[0] = 101;
    memcpy(plain + 4, m, n);
    plain[0] = plain[1] = plain[2] = 0;
    plain[3] = (unsigned char)n;
    crypto_aead_aes256gcm_encrypt_detached_afternm(plain, buf, NULL, plain, n + 4, NULL, 0, NULL, nonce, &st);
    buf[20] ^= 1;
    assert_int_equal(cps_link_fuzz_frame(buf, n + 20), -1);          /* tampered */
    const char *msgs[] = { m };
    cps_link_fuzz_up(session, 102);
    size_t len = seal(buf, 102, msgs, 1, false);
    assert_int_equal(cps_link_fuzz_frame(buf, len), -1);             /* secretbox: not the agreed cipher */
    cps_link_fuzz_cipher(false);
    cps_link_fuzz_up(session, 102);
    assert_int_equal(cps_link_fuzz_frame(buf, len), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_accepted_then_replay_refused),
        cmocka_unit_test(test_batch_split_checked),
        cmocka_unit_test(test_json_agrees_with_jansson),
        cmocka_unit_test(test_link_head),
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_batch_aes),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
