/* A tiny unit-test harness. A test file defines TEST(name) functions and a
 * main() that calls RUN(name) for each, then returns test_summary().
 * Output, one line per test: "PASS name" / "FAIL name: file:line: expr" /
 * "SKIP name: reason"; tests/run.sh counts those lines. */
#ifndef KVMBOX_TEST_H
#define KVMBOX_TEST_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

static int test_failed_flag, test_skipped_flag;
static char test_skip_reason[256];
static int tests_run, tests_failed;

#define TEST(name) static void name(void)

/* Send stdout and stderr to files (NULL: /dev/null) around a noisy call:
 * test_redirect(saved, out, err) ... test_restore(saved). */
__attribute__((unused))
static void test_redirect(int saved[2], const char *out, const char *err)
{
    const char *path[2] = { out ? out : "/dev/null", err ? err : "/dev/null" };
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 2; i++) {
        saved[i] = dup(1 + i);
        int fd = open(path[i], O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
        if (fd >= 0) {
            dup2(fd, 1 + i);
            close(fd);
        }
    }
}

__attribute__((unused))
static void test_restore(const int saved[2])
{
    fflush(stdout);
    fflush(stderr);
    for (int i = 0; i < 2; i++) {
        dup2(saved[i], 1 + i);
        close(saved[i]);
    }
}

/* Run a shell command (printf-formatted): its exit status, -1 if it did
 * not exit (tests that drive qemu-img & co). */
__attribute__((format(printf, 1, 2), unused))
static int test_sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define CHECK(expr)                                                        \
    do {                                                                   \
        if (!(expr)) {                                                     \
            printf("    %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #expr); \
            test_failed_flag = 1;                                          \
            return;                                                        \
        }                                                                  \
    } while (0)

#define CHECK_EQ(a, b)                                                     \
    do {                                                                   \
        long long _a = (long long)(a), _b = (long long)(b);                \
        if (_a != _b) {                                                    \
            printf("    %s:%d: CHECK_EQ(%s, %s): %lld != %lld (0x%llx != 0x%llx)\n", \
                   __FILE__, __LINE__, #a, #b, _a, _b,                     \
                   (unsigned long long)_a, (unsigned long long)_b);        \
            test_failed_flag = 1;                                          \
            return;                                                        \
        }                                                                  \
    } while (0)

#define CHECK_STR(a, b)                                                    \
    do {                                                                   \
        const char *_a = (a), *_b = (b);                                   \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                           \
            printf("    %s:%d: CHECK_STR(%s, %s): \"%s\" != \"%s\"\n",     \
                   __FILE__, __LINE__, #a, #b, _a ? _a : "(null)",         \
                   _b ? _b : "(null)");                                    \
            test_failed_flag = 1;                                          \
            return;                                                        \
        }                                                                  \
    } while (0)

#define SKIP(...)                                                          \
    do {                                                                   \
        snprintf(test_skip_reason, sizeof test_skip_reason, __VA_ARGS__);  \
        test_skipped_flag = 1;                                             \
        return;                                                            \
    } while (0)

#define RUN(name)                                                          \
    do {                                                                   \
        test_failed_flag = test_skipped_flag = 0;                          \
        name();                                                            \
        tests_run++;                                                       \
        if (test_failed_flag) {                                            \
            tests_failed++;                                                \
            printf("FAIL %s\n", #name);                                    \
        } else if (test_skipped_flag) {                                    \
            printf("SKIP %s: %s\n", #name, test_skip_reason);              \
        } else {                                                           \
            printf("PASS %s\n", #name);                                    \
        }                                                                  \
        fflush(stdout);                                                    \
    } while (0)

static inline int test_summary(void) { return tests_failed ? 1 : 0; }

#endif
