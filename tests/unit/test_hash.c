/*
** test_hash.c - placement: key derivation and jump consistent hash against
** every test vector of docs/protocol/cluster.md 3.1, and cps_router_owner on top.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "host.h"

/* docs/protocol/cluster.md 3.1: id, u64 (LE) key, buckets for n = 1,2,3,4,5,8,16. */
static const int ncols[7] = { 1, 2, 3, 4, 5, 8, 16 };
static const struct vec {
    const char *id;
    uint64_t key;
    int b[7];
} vectors[] = {
    { "0123456789abcdef0123456789abcdef", UINT64_C(0x3736353433323130), { 0, 0, 0, 0, 0, 5, 11 } },
    { "ffffffffffffffffffffffffffffffff", UINT64_C(0x6666666666666666), { 0, 1, 2, 2, 2, 2, 14 } },
    { "deadbeefcafebabe0000000000000000", UINT64_C(0x6665656264616564), { 0, 0, 2, 2, 2, 5, 5 } },
    { "9MESY9hRN6s7T8M94+vxhS69Z9Hu+uQaXtlKFuxxFY0=", UINT64_C(0x5268395953454d39), { 0, 1, 1, 1, 1, 1, 1 } },
    { "ab/cd/efgh", UINT64_C(0x66652d64632d6261), { 0, 1, 1, 1, 1, 7, 13 } },
    { "", UINT64_C(0x3030303030303030), { 0, 1, 1, 1, 4, 4, 13 } },
    { "abc", UINT64_C(0x3030303030636261), { 0, 0, 0, 3, 3, 3, 14 } },
};
#define NVEC (sizeof vectors / sizeof vectors[0])

static void test_hash_key_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVEC; i++) {
        uint64_t k = cps_hash_key(vectors[i].id);
        if (k != vectors[i].key)
            fail_msg("cps_hash_key(\"%s\") = 0x%016llx, expected 0x%016llx", vectors[i].id,
                     (unsigned long long)k, (unsigned long long)vectors[i].key);
    }
}

static void test_hash_key_rules(void **state)
{
    (void)state;
    /* Only the first 8 characters matter. */
    assert_true(cps_hash_key("abcdefgh") == cps_hash_key("abcdefghXYZ"));
    /* '/' and '-' are the same (safe and unsafe public keys). */
    assert_true(cps_hash_key("a/b/c") == cps_hash_key("a-b-c"));
    /* NULL is the empty id: eight '0'. */
    assert_true(cps_hash_key(NULL) == UINT64_C(0x3030303030303030));
    /* Little-endian: the first character is the low byte. */
    assert_true((cps_hash_key("z") & 0xff) == 'z');
    assert_true((cps_hash_key("z") >> 56) == '0');
    /* "undefined" (core routing of an undefined id) keeps "undefine". */
    assert_true(cps_hash_key("undefined") == cps_hash_key("undefine"));
}

static void test_jump_hash_vectors(void **state)
{
    (void)state;
    for (size_t i = 0; i < NVEC; i++)
        for (int c = 0; c < 7; c++) {
            int32_t b = cps_jump_hash(vectors[i].key, ncols[c]);
            if (b != vectors[i].b[c])
                fail_msg("jump(\"%s\", n=%d) = %d, expected %d", vectors[i].id, ncols[c], b,
                         vectors[i].b[c]);
            /* And through the key derivation. */
            assert_int_equal(cps_jump_hash(cps_hash_key(vectors[i].id), ncols[c]), vectors[i].b[c]);
        }
}

static void test_jump_hash_properties(void **state)
{
    (void)state;
    assert_int_equal(cps_jump_hash(12345, 0), -1);
    assert_int_equal(cps_jump_hash(12345, -3), -1);
    /* In range, and monotone: growing n moves a key only to the new bucket. */
    for (uint64_t k = 1; k < 2000; k++) {
        uint64_t key = k * UINT64_C(0x9E3779B97F4A7C15);
        int32_t prev = cps_jump_hash(key, 1);
        assert_int_equal(prev, 0);
        for (int32_t n = 2; n <= 40; n++) {
            int32_t b = cps_jump_hash(key, n);
            assert_true(b >= 0 && b < n);
            assert_true(b == prev || b == n - 1);
            prev = b;
        }
    }
}

static void test_router_owner(void **state)
{
    (void)state;
    char buf[32];
    assert_int_equal(cps_router_init(NULL), 0);
    /* No such role: NULL. */
    assert_null(cps_router_owner("storage", "abc", buf, sizeof buf));
    assert_int_equal(cps_router_role_count("storage"), 0);

    for (int c = 0; c < 7; c++) {
        assert_int_equal(cps_router_set_role_count("storage", ncols[c]), 0);
        assert_int_equal(cps_router_role_count("storage"), ncols[c]);
        for (size_t i = 0; i < NVEC; i++) {
            char want[32];
            snprintf(want, sizeof want, "storage:%d", vectors[i].b[c]);
            const char *got = cps_router_owner("storage", vectors[i].id, buf, sizeof buf);
            assert_non_null(got);
            assert_ptr_equal(got, buf);
            assert_string_equal(got, want);
        }
    }
    /* Roles are independent. */
    assert_int_equal(cps_router_set_role_count("core", 3), 0);
    assert_string_equal(cps_router_owner("core", "ffffffffffffffffffffffffffffffff", buf, sizeof buf), "core:2");
    assert_string_equal(cps_router_owner("storage", "ffffffffffffffffffffffffffffffff", buf, sizeof buf), "storage:14");
    /* A buffer too small for the answer gives NULL, not a truncated id. */
    char tiny[8];
    assert_null(cps_router_owner("storage", "abc", tiny, sizeof tiny));
    assert_null(cps_router_owner("storage", "abc", NULL, 0));
    /* A count of 0 means no nodes. */
    assert_int_equal(cps_router_set_role_count("core", 0), 0);
    assert_null(cps_router_owner("core", "abc", buf, sizeof buf));
    cps_router_shutdown();
    assert_int_equal(cps_router_role_count("storage"), 0);
}

/* owner_live skips nodes that are down (docs/protocol/cluster.md §11.2):
** here storage:0 is of this process (up) and storage:1, storage:2 are
** remote without links (down). */
static void test_router_owner_live(void **state)
{
    (void)state;
    char buf[32];
    assert_int_equal(cps_router_init(NULL), 0);
    assert_null(cps_router_owner_live("storage", "abc", buf, sizeof buf));
    assert_int_equal(cps_router_set_role_count("storage", 3), 0);
    /* Nobody up: the owner, as owner() says. */
    assert_int_equal(cps_router_add_remote("storage:1"), 0);
    assert_int_equal(cps_router_add_remote("storage:2"), 0);
    assert_string_equal(cps_router_owner_live("storage", "ffffffffffffffffffffffffffffffff", buf, sizeof buf), "storage:2");
    assert_int_equal(cps_router_add_node("storage:0", NULL), 0);
    assert_true(cps_router_node_is_up("storage:0"));
    assert_false(cps_router_node_is_up("storage:1"));
    assert_false(cps_router_node_is_up("storage:9"));
    /* Owner up: the owner. */
    assert_string_equal(cps_router_owner_live("storage", "0123456789abcdef0123456789abcdef", buf, sizeof buf), "storage:0");
    /* Owner 2 down: wraps to 0.  Owner 1 down, 2 down: 0. */
    assert_string_equal(cps_router_owner_live("storage", "ffffffffffffffffffffffffffffffff", buf, sizeof buf), "storage:0");
    assert_string_equal(cps_router_owner_live("storage", "9MESY9hRN6s7T8M94+vxhS69Z9Hu+uQaXtlKFuxxFY0=", buf, sizeof buf), "storage:0");
    char tiny[8];
    assert_null(cps_router_owner_live("storage", "abc", tiny, sizeof tiny));
    cps_router_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_key_vectors),
        cmocka_unit_test(test_hash_key_rules),
        cmocka_unit_test(test_jump_hash_vectors),
        cmocka_unit_test(test_jump_hash_properties),
        cmocka_unit_test(test_router_owner),
        cmocka_unit_test(test_router_owner_live),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cps_metrics_free();
    return rc;
}
