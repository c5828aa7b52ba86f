/*
** test_util.h - small helpers shared by the cmocka unit tests (header only).
** Include after <cmocka.h> (docs/libraries.md G19).
*/
#ifndef CPS_TEST_UTIL_H
#define CPS_TEST_UTIL_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- capture of stderr (the host logs there) ---- */

typedef struct capture { int saved; char path[64]; } capture;

static inline void capture_start(capture *c)
{
    fflush(stderr);
    snprintf(c->path, sizeof c->path, "/tmp/cps_unit_err_XXXXXX");
    int fd = mkstemp(c->path);
    assert_true(fd >= 0);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    close(fd);
}

/* Restores stderr and returns what was written (malloc'd). */
static inline char *capture_end(capture *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "rb");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = 0;
    fclose(f);
    unlink(c->path);
    /* Echo it so the test output still shows the log. */
    fputs(buf, stderr);
    return buf;
}

/* ---- temporary files ---- */

/* Write `text` to a new temporary file whose name ends in `suffix`;
** path receives the name (>= 64 bytes). */
static inline void write_temp(char *path, size_t n, const char *suffix, const char *text)
{
    snprintf(path, n, "/tmp/cps_unit_XXXXXX%s", suffix);
    int fd = mkstemps(path, (int)strlen(suffix));
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

#endif
