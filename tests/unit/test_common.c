/*
** test_common.c - the helpers plugins share (plugins/common): the id
** classifier and safe-key rule, base64, and the per-key queue.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "cps_errors.h"
#include "ids.h"
#include "keyqueue.h"
#include "objserve.h"
#include "text.h"

static void test_classify(void **st)
{
    (void)st;
    assert_int_equal(ids_classify("0123456789abcdef0123456789abcdef"), IDS_PAD);
    assert_int_equal(ids_classify("000000000000000000000000000000000"), IDS_ADMIN);
    assert_int_equal(ids_classify("0000000000000000000000000000000000"), IDS_EPHEMERAL);
    assert_int_equal(ids_classify("0123456789abcdef0123456789abcdef0123456789abcdef"), IDS_BLOB);
    assert_int_equal(ids_classify("0123456789ABCDEF0123456789abcdef"), IDS_OTHER);
    assert_int_equal(ids_classify(NULL), IDS_OTHER);
    const char *key = "ab/+cdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO=";
    char safe[IDS_KEY_LEN + 1];
    assert_int_equal(ids_classify(key), IDS_KEY);
    assert_true(ids_safe_key(key, safe));
    assert_string_equal(safe, "ab-+cdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO=");
    assert_true(ids_is_safe_key(safe));
    assert_false(ids_is_safe_key(key));
    assert_false(ids_safe_key("ab cdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP=", safe));
    assert_true(ids_is_stored_channel("000000000000000000000000000000000"));
    assert_false(ids_is_stored_channel("0000000000000000000000000000000000"));
}

static void test_key_norm(void **st)
{
    (void)st;
    char u1[IDS_KEY_LEN + 1], s1[IDS_KEY_LEN + 1], u2[IDS_KEY_LEN + 1], s2[IDS_KEY_LEN + 1];
    /* the same 32 bytes, padded standard and unpadded url-safe */
    assert_true(ids_key_norm("/////////////////////////////////////////w8=", u1, s1));
    assert_true(ids_key_norm("_________________________________________w8", u2, s2));
    assert_string_equal(u1, u2);
    assert_string_equal(s1, "-----------------------------------------w8=");
    assert_false(ids_key_norm("short", u1, s1));
}

static void test_base64(void **st)
{
    (void)st;
    unsigned char out[8];
    assert_int_equal(b64_decode("aGk=", 4, out, sizeof out), 2);
    assert_int_equal(b64_decode("aGk", 3, out, sizeof out), -1);        /* strict: padding */
    assert_int_equal(b64_decode_lenient("aGk", 3, out, sizeof out), 2);  /* lenient: none needed */
    assert_true(b64_decode_exact("aGk=", out, 2));
    assert_false(b64_decode_exact("aGk=", out, 3));
    char enc[5];
    assert_true(b64_encode("hi", 2, enc, sizeof enc));
    assert_string_equal(enc, "aGk=");
    assert_false(b64_encode("hi", 2, enc, 4));
}

static int ran[16], nran;
static keyqueue *KQ;
static bool sync_done;

static void run(void *item, void *ud)
{
    (void)ud;
    ran[nran++] = (int)(intptr_t)item;
    if (sync_done) keyqueue_done(KQ, "k");
}

static void test_keyqueue(void **st)
{
    (void)st;
    KQ = keyqueue_new(2, run, NULL);
    assert_int_equal(keyqueue_push(KQ, "k", (void *)1), CPS_OK);   /* runs now */
    assert_int_equal(keyqueue_push(KQ, "k", (void *)2), CPS_OK);   /* waits */
    assert_int_equal(keyqueue_push(KQ, "k", (void *)3), CPS_EBUSY);
    assert_int_equal(keyqueue_push(KQ, "j", (void *)4), CPS_OK);   /* other key: runs */
    assert_int_equal(nran, 2);
    keyqueue_done(KQ, "k");                                        /* 2 runs */
    assert_int_equal(nran, 3);
    assert_int_equal(ran[2], 2);
    keyqueue_done(KQ, "k");
    keyqueue_done(KQ, "j");
    assert_int_equal(keyqueue_keys(KQ), 0);
    sync_done = true;                                              /* done inside run */
    assert_int_equal(keyqueue_push(KQ, "k", (void *)5), CPS_OK);
    assert_int_equal(nran, 4);
    assert_int_equal(keyqueue_keys(KQ), 0);
    keyqueue_free(KQ);
}

/* One Range header against a size (objserve.c, also the static tree's):
** digits only, clamped. */
static void test_byte_range(void **st)
{
    (void)st;
    uint64_t off = 0, len = 0;
    assert_int_equal(objserve_range("bytes=0-99", 1000, &off, &len), 1);
    assert_true(off == 0 && len == 100);
    assert_int_equal(objserve_range("bytes=990-", 1000, &off, &len), 1);
    assert_true(off == 990 && len == 10);
    assert_int_equal(objserve_range("bytes=-5", 1000, &off, &len), 1);
    assert_true(off == 995 && len == 5);
    assert_int_equal(objserve_range("bytes=5-99999", 10, &off, &len), 1);
    assert_true(off == 5 && len == 5);
    assert_int_equal(objserve_range("bytes=1000-", 1000, &off, &len), -1);
    assert_int_equal(objserve_range("bytes=-0", 1000, &off, &len), -1);
    /* signs and blanks are not numbers (the static tree's own parser took
    ** "bytes=0--7" as the whole file) */
    const char *ignored[] = { "bytes=0--7", "bytes=-+5", "bytes= 1-2", "bytes=1- 2", "bytes=+1-2", "bytes=1-2,3-4",
                              "bytes=5-1", "bytes=", "bytes=-", "items=1-2" };
    for (size_t i = 0; i < sizeof ignored / sizeof ignored[0]; i++)
        assert_int_equal(objserve_range(ignored[i], 1000, &off, &len), 0);
}

static void test_tbuf_int(void **state)
{
    (void)state;
    const long long v[] = { 0, 7, -7, 1733364000123LL, -9223372036854775807LL - 1, 9223372036854775807LL };
    const char *want = "0,7,-7,1733364000123,-9223372036854775808,9223372036854775807";
    tbuf b = { 0 };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        if (i) tbuf_add(&b, ",", 1);
        tbuf_int(&b, v[i]);
    }
    assert_false(b.oom);
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.s, want, b.len);
    tbuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_key_norm),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_keyqueue),
        cmocka_unit_test(test_byte_range),
        cmocka_unit_test(test_tbuf_int),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
