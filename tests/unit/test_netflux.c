/*
** test_netflux.c - the front's pure helpers: nf_parse (client frame
** classification, spec docs/protocol/netflux.md 1, 2, 4), channel id validation, user
** ids (docs/protocol/netflux.md 3) and the string map.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <stdlib.h>
#include <stdio.h>
#include "netflux.h"
#include "ids.h"
#include "strmap.h"

#define CHAN32 "0123456789abcdef0123456789abcdef"
#define CHAN33 "000000000000000000000000000000000"
#define CHAN34 "0000000000000000000000000000000000"

static int parse(const char *text, nf_req *q) { return nf_parse(text, strlen(text), NF_MAX_VALUES, q); }

/* Parses, checks the kind, frees. */
static void expect_kind(const char *text, int kind)
{
    nf_req q;
    int k = parse(text, &q);
    json_decref(q.root);
    if (k != kind || q.kind != kind)
        fail_msg("nf_parse(%s) = %d (q.kind %d), expected %d", text, k, q.kind, kind);
}

static void test_join_leave(void **state)
{
    (void)state;
    nf_req q;
    assert_int_equal(parse("[1,\"JOIN\",\"" CHAN32 "\"]", &q), NF_JOIN);
    assert_non_null(q.root);
    assert_true(json_is_integer(q.seq));
    assert_int_equal(json_integer_value(q.seq), 1);
    assert_string_equal(q.target, CHAN32);
    json_decref(q.root);

    assert_int_equal(parse("[7,\"LEAVE\",\"" CHAN34 "\",null]", &q), NF_LEAVE);
    assert_int_equal(json_integer_value(q.seq), 7);
    assert_string_equal(q.target, CHAN34);
    json_decref(q.root);

    /* JOIN with a missing or non-string channel: EINVAL (with its seq). */
    assert_int_equal(parse("[3,\"JOIN\",42]", &q), NF_EINVAL);
    assert_int_equal(json_integer_value(q.seq), 3);
    json_decref(q.root);
    expect_kind("[3,\"JOIN\"]", NF_EINVAL);
    expect_kind("[3,\"JOIN\",null]", NF_EINVAL);
    expect_kind("[3,\"JOIN\",[\"" CHAN32 "\"]]", NF_EINVAL);
    expect_kind("[3,\"LEAVE\",{}]", NF_EINVAL);
}

static void test_msg(void **state)
{
    (void)state;
    nf_req q;
    assert_int_equal(parse("[2,\"MSG\",\"" CHAN32 "\",\"hello world\"]", &q), NF_MSG);
    assert_int_equal(json_integer_value(q.seq), 2);
    assert_string_equal(q.target, CHAN32);
    assert_string_equal(q.content, "hello world");
    assert_int_equal(q.content_len, 11);
    json_decref(q.root);

    /* Content with an embedded NUL keeps its length. */
    const char nul[] = "[5,\"MSG\",\"0123456789abcdef\",\"a\\u0000b\"]";
    assert_int_equal(nf_parse(nul, sizeof nul - 1, NF_MAX_VALUES, &q), NF_MSG);
    assert_int_equal(q.content_len, 3);
    assert_memory_equal(q.content, "a\0b", 3);
    json_decref(q.root);

    /* Non-string content, missing content, bad targets. */
    expect_kind("[2,\"MSG\",\"" CHAN32 "\",{\"a\":1}]", NF_EINVAL);
    expect_kind("[2,\"MSG\",\"" CHAN32 "\",12]", NF_EINVAL);
    expect_kind("[2,\"MSG\",\"" CHAN32 "\"]", NF_EINVAL);
    expect_kind("[2,\"MSG\",null,\"x\"]", NF_EINVAL);
    expect_kind("[2,\"MSG\",\"\",\"x\"]", NF_EINVAL);
    char big[200];
    snprintf(big, sizeof big, "[2,\"MSG\",\"%065d\",\"x\"]", 0);   /* 65-char target */
    expect_kind(big, NF_EINVAL);
}

static void test_ping_pong(void **state)
{
    (void)state;
    nf_req q;
    assert_int_equal(parse("[9,\"PING\"]", &q), NF_PING);
    assert_int_equal(json_integer_value(q.seq), 9);
    json_decref(q.root);
    /* An odd but non-negative seq is still ACKed, echoed as sent. */
    assert_int_equal(parse("[1.5,\"PING\"]", &q), NF_PING);
    assert_true(json_is_real(q.seq));
    json_decref(q.root);
    /* The client's answer to a server PING (docs/protocol/netflux.md 4, 10). */
    expect_kind("[0,\"\",\"PONG\",1718000030000]", NF_PONG);
}

static void test_seq_normalisation(void **state)
{
    (void)state;
    nf_req q;
    assert_int_equal(parse("[1e6,\"PING\"]", &q), NF_PING);
    assert_true(json_is_integer(q.seq));
    assert_int_equal(json_integer_value(q.seq), 1000000);
    assert_ptr_equal(q.seq, json_array_get(q.root, 0));
    /* Echoed as an integer in a reply built from it. */
    json_t *reply = json_pack("[O s]", q.seq, "ACK");
    char *s = json_dumps(reply, JSON_COMPACT);
    assert_string_equal(s, "[1000000,\"ACK\"]");
    free(s);
    json_decref(reply);
    json_decref(q.root);

    assert_int_equal(parse("[2.0,\"JOIN\",\"" CHAN32 "\"]", &q), NF_JOIN);
    assert_true(json_is_integer(q.seq));
    assert_int_equal(json_integer_value(q.seq), 2);
    json_decref(q.root);

    /* Too big to be exact: left as a real. */
    assert_int_equal(parse("[1e300,\"PING\"]", &q), NF_PING);
    assert_true(json_is_real(q.seq));
    json_decref(q.root);

    /* A negative seq cannot be answered: ignored. */
    expect_kind("[-1,\"PING\"]", NF_IGNORE);
    expect_kind("[-1,\"JOIN\",\"" CHAN32 "\"]", NF_IGNORE);
    expect_kind("[-0.5,\"MSG\",\"" CHAN32 "\",\"x\"]", NF_IGNORE);
    /* A non-number seq: ignored. */
    expect_kind("[\"1\",\"PING\"]", NF_IGNORE);
    expect_kind("[null,\"JOIN\",\"" CHAN32 "\"]", NF_IGNORE);
}

static void test_close(void **state)
{
    (void)state;
    expect_kind("not json", NF_CLOSE);
    expect_kind("", NF_CLOSE);
    expect_kind("[1,\"PING\"", NF_CLOSE);
    expect_kind("{\"a\":1}", NF_CLOSE);
    expect_kind("\"PING\"", NF_CLOSE);
    expect_kind("42", NF_CLOSE);
    expect_kind("null", NF_CLOSE);
    expect_kind("[1,\"PING\"] trailing", NF_CLOSE);
    /* Not NUL terminated, length respected. */
    nf_req q;
    assert_int_equal(nf_parse("[1,\"PING\"]XXXX", 10, NF_MAX_VALUES, &q), NF_PING);
    json_decref(q.root);
    assert_int_equal(nf_parse("[1,\"PING\"]", 5, NF_MAX_VALUES, &q), NF_CLOSE);
    json_decref(q.root);
}

/* netflux.md §12: too many values or too deep is closed before parsing;
** commas and brackets inside strings do not count. */
static void test_shape_caps(void **state)
{
    (void)state;
    char buf[4096];
    size_t n = (size_t)snprintf(buf, sizeof buf, "[1,\"PING\",[0");
    for (int i = 0; i < NF_MAX_VALUES; i++) n += (size_t)snprintf(buf + n, sizeof buf - n, ",0");
    snprintf(buf + n, sizeof buf - n, "]]");
    assert_false(nf_shape_within(buf, strlen(buf), NF_MAX_VALUES, NF_MAX_DEPTH));
    expect_kind(buf, NF_CLOSE);
    /* front.max_frame_values raises the value cap */
    nf_req q;
    assert_int_equal(nf_parse(buf, strlen(buf), NF_MAX_VALUES + 8, &q), NF_PING);
    json_decref(q.root);
    expect_kind("[1,\"PING\",[[[[0]]]]]", NF_CLOSE);          /* depth 5 */
    expect_kind("[1,\"PING\",[[[0]]]]", NF_PING);              /* depth 4 */
    expect_kind("[1,\"PING\",{\"a\":[[{}]]}]", NF_CLOSE);
    /* a content full of separators, brackets and escaped quotes is one value */
    char big[8192];
    n = (size_t)snprintf(big, sizeof big, "[1,\"MSG\",\"" CHAN32 "\",\"");
    for (int i = 0; i < 1000; i++) n += (size_t)snprintf(big + n, sizeof big - n, ",[{\\\"");
    snprintf(big + n, sizeof big - n, "\"]");
    assert_true(nf_shape_within(big, strlen(big), NF_MAX_VALUES, NF_MAX_DEPTH));
    expect_kind(big, NF_MSG);
    /* the HK content caps: larger, still a cap */
    assert_true(nf_shape_within(buf, strlen(buf), NF_HK_MAX_VALUES, NF_HK_MAX_DEPTH));
    assert_false(nf_shape_within("[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]", 35, NF_HK_MAX_VALUES, NF_HK_MAX_DEPTH));
    assert_false(nf_shape_within("[0,0,0,0]", 9, 3, 4));
    assert_true(nf_shape_within("[0,0,0,0]", 9, 4, 4));
    /* malformed brackets are left to jansson, which refuses them */
    expect_kind("]]]][1,\"PING\"]", NF_CLOSE);
    expect_kind("[1,\"PING\"\\", NF_CLOSE);
}

/* The cost of a content in its most escaped form (netflux.md §12). */
static void test_content_cost(void **state)
{
    (void)state;
    assert_int_equal(nf_content_cost("cp|QUJD+/==", 11), 11);
    assert_int_equal(nf_content_cost("\"", 1), 8);
    assert_int_equal(nf_content_cost("\\", 1), 8);
    assert_int_equal(nf_content_cost("\n", 1), 5);
    assert_int_equal(nf_content_cost("\x01", 1), 9);
    assert_int_equal(nf_content_cost("\xc3\xa9", 2), 2);        /* UTF-8 is kept raw */
    assert_int_equal(nf_content_cost("", 0), 0);
}

static void test_ignore(void **state)
{
    (void)state;
    expect_kind("[]", NF_IGNORE);
    expect_kind("[1]", NF_IGNORE);
    expect_kind("[1,\"NOPE\"]", NF_IGNORE);
    expect_kind("[1,\"ping\"]", NF_IGNORE);
    expect_kind("[1,\"GET_HISTORY\",\"" CHAN32 "\"]", NF_IGNORE);
    /* Server-only verbs sent by a client. */
    expect_kind("[0,\"\",\"IDENT\",\"" CHAN32 "\"]", NF_IGNORE);
    expect_kind("[1,\"IDENT\",\"x\"]", NF_IGNORE);
    expect_kind("[1,\"ACK\"]", NF_IGNORE);
    expect_kind("[1,\"JACK\",\"" CHAN32 "\"]", NF_IGNORE);
    expect_kind("[1,2,3]", NF_IGNORE);
}

static void test_channel_ids(void **state)
{
    (void)state;
    assert_true(ids_valid_channel(CHAN32));
    assert_true(ids_valid_channel(CHAN33));
    assert_true(ids_valid_channel(CHAN34));
    assert_true(ids_valid_channel("abcdefabcdefabcdefabcdefabcdefab"));
    assert_false(ids_valid_channel("0123456789ABCDEF0123456789abcdef"));   /* uppercase */
    assert_false(ids_valid_channel("0123456789abcdef"));                   /* 16: the HK */
    assert_false(ids_valid_channel("0123456789abcdef0123456789abcde"));    /* 31 */
    assert_false(ids_valid_channel("0123456789abcdef0123456789abcdef012")); /* 35 */
    assert_false(ids_valid_channel("0123456789abcdef0123456789abcdeg"));   /* non-hex */
    assert_false(ids_valid_channel("0123456789abcdef0123456789abcde "));
    assert_false(ids_valid_channel(""));
    assert_false(ids_valid_channel(NULL));
    char huge[100001];
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = 0;
    assert_false(ids_valid_channel(huge));
    assert_true(ids_is_hex("00ff", 4));
    assert_false(ids_is_hex("00ff", 3));
    assert_false(ids_is_hex(NULL, 0));
}

static bool lower_hex32(const char *s)
{
    if (strlen(s) != 32) return false;
    for (int i = 0; i < 32; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
    return true;
}

static void test_random_user(void **state)
{
    (void)state;
    char a[33], b[33];
    memset(a, 'X', sizeof a);
    memset(b, 'X', sizeof b);
    ids_random_user(a);
    ids_random_user(b);
    assert_int_equal(a[32], 0);
    assert_true(lower_hex32(a));
    assert_true(lower_hex32(b));
    assert_string_not_equal(a, b);
    /* Never the HK's length (16), which clients use to find the HK. */
    assert_int_not_equal(strlen(a), strlen(CPS_HK_ID));
}

static void count_each(const char *k, void *v, void *ud)
{
    (void)k;
    size_t *n = ud;
    (*n) += (size_t)(intptr_t)v;
}

static void test_strmap(void **state)
{
    (void)state;
    strmap *m = strmap_new();
    assert_non_null(m);
    assert_int_equal(strmap_count(m), 0);
    assert_null(strmap_get(m, "a"));
    int x = 1, y = 2;
    assert_int_equal(strmap_put(m, "a", &x), 0);
    assert_int_equal(strmap_put(m, "b", &y), 0);
    assert_int_equal(strmap_count(m), 2);
    assert_ptr_equal(strmap_get(m, "a"), &x);
    assert_ptr_equal(strmap_get(m, "b"), &y);
    /* Replace keeps the count. */
    assert_int_equal(strmap_put(m, "a", &y), 0);
    assert_int_equal(strmap_count(m), 2);
    assert_ptr_equal(strmap_get(m, "a"), &y);
    /* Keys are copied. */
    char key[8] = "tmp";
    assert_int_equal(strmap_put(m, key, &x), 0);
    strcpy(key, "zzz");
    assert_ptr_equal(strmap_get(m, "tmp"), &x);
    assert_null(strmap_get(m, "zzz"));
    /* Delete. */
    assert_ptr_equal(strmap_del(m, "a"), &y);
    assert_null(strmap_del(m, "a"));
    assert_null(strmap_get(m, "a"));
    assert_int_equal(strmap_count(m), 2);
    assert_null(strmap_del(m, "never"));
    strmap_free(m, NULL);

    /* Growth past 1000 entries, then deletes. */
    m = strmap_new();
    char k[32];
    for (intptr_t i = 1; i <= 5000; i++) {
        snprintf(k, sizeof k, "key-%ld", (long)i);
        assert_int_equal(strmap_put(m, k, (void *)i), 0);
    }
    assert_int_equal(strmap_count(m), 5000);
    for (intptr_t i = 1; i <= 5000; i++) {
        snprintf(k, sizeof k, "key-%ld", (long)i);
        assert_ptr_equal(strmap_get(m, k), (void *)i);
    }
    size_t sum = 0;
    strmap_each(m, count_each, &sum);
    assert_int_equal(sum, (size_t)5000 * 5001 / 2);
    for (intptr_t i = 1; i <= 5000; i += 2) {
        snprintf(k, sizeof k, "key-%ld", (long)i);
        assert_ptr_equal(strmap_del(m, k), (void *)i);
    }
    assert_int_equal(strmap_count(m), 2500);
    for (intptr_t i = 1; i <= 5000; i++) {
        snprintf(k, sizeof k, "key-%ld", (long)i);
        if (i % 2) assert_null(strmap_get(m, k));
        else assert_ptr_equal(strmap_get(m, k), (void *)i);
    }
    strmap_free(m, NULL);

    /* free_val is called on every value. */
    m = strmap_new();
    for (int i = 0; i < 1500; i++) {
        snprintf(k, sizeof k, "v%d", i);
        assert_int_equal(strmap_put(m, k, strdup(k)), 0);
    }
    assert_int_equal(strmap_count(m), 1500);
    strmap_free(m, free);   /* ASan reports a leak if a value is missed */
    assert_int_equal(strmap_count(NULL), 0);
    strmap_free(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_leave),
        cmocka_unit_test(test_msg),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_seq_normalisation),
        cmocka_unit_test(test_close),
        cmocka_unit_test(test_shape_caps),
        cmocka_unit_test(test_content_cost),
        cmocka_unit_test(test_ignore),
        cmocka_unit_test(test_channel_ids),
        cmocka_unit_test(test_random_user),
        cmocka_unit_test(test_strmap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
