/*
** test_abi.c - the ABI's own promises: the function table grows only with
** a minor bump (its size at each minor is recorded here), the structs a
** plugin fills carry their size, and every error code keeps its identity
** through its wire name and back.
*/
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include "host.h"

/* The size of cps_api and of cps_storage_backend at each minor of this
** major: the offset past the last member of that minor.  Appending to
** either without bumping CPS_ABI_MINOR and adding a row here fails
** test_table_size; a minor grows at least one of them. */
#define END_OF(fn) (offsetof(cps_api, fn) + sizeof(((cps_api *)0)->fn))
#define BE_END_OF(m) (offsetof(cps_storage_backend, m) + sizeof(((cps_storage_backend *)0)->m))
static const size_t api_size_at_minor[] = {
    [0] = END_OF(http_write),          /* 2.0 */
    [1] = END_OF(owner_live),          /* 2.1 */
    [2] = END_OF(owner_live),          /* 2.2: storage backend only */
    [3] = END_OF(session_pause),       /* 2.3 */
    [4] = END_OF(watch_stop),          /* 2.4 */
};
static const size_t backend_size_at_minor[] = {
    [0] = BE_END_OF(channel_cut),      /* 2.0 */
    [1] = BE_END_OF(lease),            /* 2.1 */
    [2] = BE_END_OF(pin_restore),      /* 2.2 */
    [3] = BE_END_OF(pin_restore),      /* 2.3: cps_api only */
    [4] = BE_END_OF(pin_restore),      /* 2.4: cps_api only */
};

static void test_table_size(void **state)
{
    (void)state;
    assert_int_equal(CPS_ABI_MAJOR, 2);
    assert_true(CPS_ABI_MINOR < (int)(sizeof api_size_at_minor / sizeof *api_size_at_minor));
    assert_true(CPS_ABI_MINOR < (int)(sizeof backend_size_at_minor / sizeof *backend_size_at_minor));
    assert_int_equal(sizeof(cps_api), api_size_at_minor[CPS_ABI_MINOR]);
    assert_int_equal(sizeof(cps_storage_backend), backend_size_at_minor[CPS_ABI_MINOR]);
    assert_int_equal(cps_host_api.size, sizeof(cps_api));
    assert_int_equal(cps_host_api.major, CPS_ABI_MAJOR);
    assert_int_equal(cps_host_api.minor, CPS_ABI_MINOR);
    /* Sizes never shrink, and every minor grows one of the tables. */
    for (int m = 1; m <= CPS_ABI_MINOR; m++) {
        assert_true(api_size_at_minor[m] >= api_size_at_minor[m - 1]);
        assert_true(backend_size_at_minor[m] >= backend_size_at_minor[m - 1]);
        assert_true(api_size_at_minor[m] > api_size_at_minor[m - 1] ||
                    backend_size_at_minor[m] > backend_size_at_minor[m - 1]);
    }
}

static void test_table_complete(void **state)
{
    (void)state;
    /* Every slot of the host's table is filled. */
    const unsigned char *base = (const unsigned char *)&cps_host_api;
    size_t first = offsetof(cps_api, self_node);
    for (size_t off = first; off < sizeof(cps_api); off += sizeof(void (*)(void))) {
        void (*fn)(void);
        memcpy(&fn, base + off, sizeof fn);
        if (!fn) fail_msg("cps_api slot at offset %zu is empty", off);
    }
    assert_true(CPS_API_HAS(&cps_host_api, http_write));
    assert_true(CPS_API_HAS(&cps_host_api, errcode));
    assert_true(CPS_API_HAS(&cps_host_api, rpc_describe));
    assert_true(CPS_API_HAS(&cps_host_api, owner_live));
}

static void test_descriptor_layout(void **state)
{
    (void)state;
    /* Fields only ever appended: the ones the host reads first stay put. */
    assert_int_equal(offsetof(cps_plugin_def, size), 0);
    assert_int_equal(offsetof(cps_session_handler, size), 0);
    assert_int_equal(offsetof(cps_storage_backend, size), 0);
}

#define CHECK_ROW_(name, code) \
    assert_string_equal(cps_errname(code), #name); \
    assert_int_equal(cps_errcode(#name), code);
static void test_error_table(void **state)
{
    (void)state;
    CPS_HOST_ERRORS(CHECK_ROW_)
    CPS_PROTOCOL_ERRORS(CHECK_ROW_)
    assert_string_equal(cps_errname(CPS_OK), "OK");
    assert_int_equal(cps_errcode("OK"), CPS_OK);
    assert_string_equal(cps_errname(CPS_EUNAVAILABLE), "EUNAVAILABLE");
    assert_string_equal(cps_errname(CPS_ERR_INVALID_RPC_CALL), "INVALID_RPC_CALL");
    /* Codes are unique. */
    static const int codes[] = {
#define CODE_(name, code) code,
        CPS_HOST_ERRORS(CODE_) CPS_PROTOCOL_ERRORS(CODE_)
#undef CODE_
    };
    size_t n = sizeof codes / sizeof *codes;
    for (size_t i = 0; i < n; i++) {
        assert_true(codes[i] < 0 && codes[i] > CPS_ERR_DYNAMIC_BASE);
        for (size_t j = i + 1; j < n; j++) assert_int_not_equal(codes[i], codes[j]);
    }
}
#undef CHECK_ROW_

static void test_unknown_survives(void **state)
{
    (void)state;
    /* A name in no table (a plugin's own, or a newer node's) gets a code of
    ** its own, stable, and maps back to the same name. */
    int a = cps_errcode("E_FROM_THE_FUTURE");
    assert_true(a <= CPS_ERR_DYNAMIC_BASE);
    assert_int_equal(cps_errcode("E_FROM_THE_FUTURE"), a);
    assert_string_equal(cps_errname(a), "E_FROM_THE_FUTURE");
    int b = cps_errcode("ANOTHER_ONE");
    assert_int_not_equal(a, b);
    assert_string_equal(cps_errname(b), "ANOTHER_ONE");
    /* A code in no table keeps its number through its name. */
    assert_string_equal(cps_errname(-777), "E-777");
    assert_int_equal(cps_errcode(cps_errname(-777)), -777);
    assert_int_equal(cps_errcode(cps_errname(-123456)), -123456);
    /* Nothing is never silently something else. */
    assert_int_equal(cps_errcode(NULL), CPS_EUNKNOWN);
    assert_int_equal(cps_errcode(""), CPS_EUNKNOWN);
    /* "E-" alone or with junk is a name, not a number. */
    assert_true(cps_errcode("E-12x") <= CPS_ERR_DYNAMIC_BASE);
    cps_errors_reset();
}

static void test_dynamic_bounded(void **state)
{
    (void)state;
    char name[32];
    int last = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "E_DYN_%d", i);
        last = cps_errcode(name);
    }
    /* Past the bound new names are refused as EUNKNOWN (and logged), never
    ** given a code that another name already has. */
    assert_int_equal(last, CPS_EUNKNOWN);
    assert_string_equal(cps_errname(cps_errcode("E_DYN_0")), "E_DYN_0");
    cps_errors_reset();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_size),
        cmocka_unit_test(test_table_complete),
        cmocka_unit_test(test_descriptor_layout),
        cmocka_unit_test(test_error_table),
        cmocka_unit_test(test_unknown_survives),
        cmocka_unit_test(test_dynamic_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
