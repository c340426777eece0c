/* test.h - header-only unit-test harness: registration, assertions, runner.
 *
 * A test file includes this header, defines its tests with TEST(), and has no
 * main() of its own; this header provides one (define TEST_NO_MAIN before the
 * include to write your own main that calls test_main()). One *_test.c file
 * is one binary: the Makefile builds tests/unit/cnode/proc_test.c into
 * build/tests/cnode/proc_test.
 *
 *     #include "test.h"
 *
 *     TEST(spawn_and_exit) {
 *         int rc = do_something();
 *         ASSERT_EQ(rc, 0);
 *     }
 *
 *     TEST(slow_thing) { ... }
 *     TEST_TIMEOUT(slow_thing, 120);   (seconds; default 60 or $TEST_TIMEOUT_S)
 *
 * Running the binary:
 *     proc_test              run every test, each in a forked child with a
 *                            timeout; one line per test, then a summary
 *                            "<file>: N passed, N failed"; exit 1 on failure
 *     proc_test --list       print the test names
 *     proc_test NAME         run NAME in this process, no fork, no timeout
 *                            (for gdb: `break test__fail`)
 *
 * The runner in the style of libuv test/runner.c: each child gets its own
 * process group (so helpers it spawns, like erl, are killed with it), stdin
 * from /dev/null, and stdout/stderr captured in a temporary file that is shown
 * only when the test fails. A test fails when an assertion fails, when it is
 * killed by a signal, when it runs past its timeout, or when it exits
 * non-zero - which is how ASan, UBSan and LeakSanitizer report (LSan's leak
 * check runs at exit(), so a passing test returns through exit(0), never
 * _exit()).
 *
 * Tests that spawn libcnode processes: processes share copied stacks (see
 * cnode/proc.h, cn_spawn), so never give a child process `&local` of the
 * spawning process (a result slot, a counter, a job struct) unless that
 * process runs with CN_SPAWN_OWN_STACK: make such shared variables `static` or
 * heap-allocated, and send data, not pointers. A test that breaks this rule
 * usually still passes, reading or writing another process's frames.
 */
#ifndef ONEBLOG_TEST_H
#define ONEBLOG_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TEST_DEFAULT_TIMEOUT_S 60

/* ------------------------------------------------------------------------ */
/* Registration                                                             */
/* ------------------------------------------------------------------------ */

typedef struct test_case test_case_t;
struct test_case {
    const char *name;
    const char *file;   /* __FILE__ of the TEST() */
    int line;           /* tests run in (file, line) order */
    void (*fn)(void);
    int timeout_s;      /* 0: the default */
    test_case_t *next;
};

/* The registry, one per binary (this header is included by one .c). */
static test_case_t *test__list;
/* The test running in this process, for failure messages. */
static const test_case_t *test__current;
/* Where the forked child writes its failure reason; -1 when in-process. */
static int test__reason_fd = -1;

__attribute__((unused)) static void test__register(test_case_t *tc)
{
    test_case_t **pp = &test__list;

    /* Keep the list sorted by source position whatever order the
     * constructors run in. */
    while (*pp && (strcmp((*pp)->file, tc->file) < 0 ||
                   (strcmp((*pp)->file, tc->file) == 0 && (*pp)->line < tc->line)))
        pp = &(*pp)->next;
    tc->next = *pp;
    *pp = tc;
}

/* TEST(name) { body } defines static void test_<name>(void) and registers it
 * from a constructor, before main() runs. */
#define TEST(name)                                                            \
    static void test_##name(void);                                            \
    static test_case_t test__case_##name = {                                  \
        #name, __FILE__, __LINE__, test_##name, 0, NULL};                     \
    __attribute__((constructor)) static void test__register_##name(void)      \
    {                                                                         \
        test__register(&test__case_##name);                                   \
    }                                                                         \
    static void test_##name(void)

/* TEST_TIMEOUT(name, seconds); at file scope, before or after TEST(name).
 * A misspelled name fails to compile or link (test_<name> is undefined).
 * The static initialiser of the test case runs at load time, so setting the
 * field from a constructor works in either constructor order. */
#define TEST_TIMEOUT(name, seconds)                                           \
    static void test_##name(void);                                            \
    static test_case_t test__case_##name;                                     \
    __attribute__((constructor)) static void test__timeout_##name(void)       \
    {                                                                         \
        test__case_##name.fn = test_##name; /* same value; a real use */      \
        test__case_##name.timeout_s = (seconds);                              \
    }                                                                         \
    static test_case_t test__case_##name

/* ------------------------------------------------------------------------ */
/* Failure reporting                                                        */
/* ------------------------------------------------------------------------ */

/* "tests/unit/cnode/proc_test.c" -> "cnode/proc_test.c". */
static const char *test__short_file(const char *file)
{
    const char *p = strstr(file, "tests/unit/");

    return p ? p + strlen("tests/unit/") : file;
}

static void test__write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* Report a failed assertion and end the test: print "file:line: message" to
 * stderr, hand the message to the parent runner, and _exit(1). Not abort():
 * the parent tells a failed assertion from a crash by the exit status.
 * Break here in gdb to stop at the failing assertion. */
__attribute__((noreturn, format(printf, 3, 4), unused))
static void test__fail(const char *file, int line, const char *fmt, ...)
{
    char msg[2048];
    int off;
    va_list ap;

    off = snprintf(msg, sizeof msg, "%s:%d: ", test__short_file(file), line);
    if (off < 0 || (size_t)off >= sizeof msg)
        off = 0;
    va_start(ap, fmt);
    vsnprintf(msg + off, sizeof msg - (size_t)off, fmt, ap);
    va_end(ap);

    fflush(stdout);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
    if (test__reason_fd >= 0) {
        test__write_all(test__reason_fd, msg, strlen(msg));
    } else if (test__current) {
        printf("FAIL %s:%s: %s\n", test__short_file(test__current->file),
               test__current->name, msg);
        fflush(stdout);
    }
    _exit(1);
}

/* ------------------------------------------------------------------------ */
/* Assertions: each operand is evaluated once; both values are printed.     */
/* ------------------------------------------------------------------------ */

#define ASSERT(cond)                                                          \
    do {                                                                      \
        if (!(cond))                                                          \
            test__fail(__FILE__, __LINE__, "ASSERT(%s) failed", #cond);       \
    } while (0)

/* Integer comparison, values shown as long long. `notop` is printed
 * between the values when the check fails: "-110 != 0". */
#define TEST__CMP(macro, a, op, notop, b)                                     \
    do {                                                                      \
        long long test__a = (long long)(a);                                   \
        long long test__b = (long long)(b);                                   \
        if (!(test__a op test__b))                                            \
            test__fail(__FILE__, __LINE__,                                    \
                       "%s(%s, %s) failed: %lld %s %lld", macro, #a, #b,      \
                       test__a, notop, test__b);                              \
    } while (0)

#define ASSERT_EQ(a, b) TEST__CMP("ASSERT_EQ", a, ==, "!=", b)
#define ASSERT_NE(a, b) TEST__CMP("ASSERT_NE", a, !=, "==", b)
#define ASSERT_LT(a, b) TEST__CMP("ASSERT_LT", a, <, ">=", b)
#define ASSERT_LE(a, b) TEST__CMP("ASSERT_LE", a, <=, ">", b)
#define ASSERT_GT(a, b) TEST__CMP("ASSERT_GT", a, >, "<=", b)
#define ASSERT_GE(a, b) TEST__CMP("ASSERT_GE", a, >=, "<", b)

/* Pointer identity, shown as %p. */
#define ASSERT_PTR_EQ(a, b)                                                   \
    do {                                                                      \
        const void *test__a = (a);                                            \
        const void *test__b = (b);                                            \
        if (test__a != test__b)                                               \
            test__fail(__FILE__, __LINE__,                                    \
                       "ASSERT_PTR_EQ(%s, %s) failed: %p != %p", #a, #b,      \
                       test__a, test__b);                                     \
    } while (0)

#define ASSERT_PTR_NE(a, b)                                                   \
    do {                                                                      \
        const void *test__a = (a);                                            \
        const void *test__b = (b);                                            \
        if (test__a == test__b)                                               \
            test__fail(__FILE__, __LINE__,                                    \
                       "ASSERT_PTR_NE(%s, %s) failed: %p == %p", #a, #b,      \
                       test__a, test__b);                                     \
    } while (0)

/* NUL-terminated strings; NULL compares equal only to NULL. */
#define ASSERT_STR_EQ(a, b)                                                   \
    do {                                                                      \
        const char *test__a = (a);                                            \
        const char *test__b = (b);                                            \
        if (!(test__a == test__b ||                                           \
              (test__a && test__b && strcmp(test__a, test__b) == 0)))         \
            test__fail(__FILE__, __LINE__,                                    \
                       "ASSERT_STR_EQ(%s, %s) failed: %s%s%s != %s%s%s",      \
                       #a, #b, test__a ? "\"" : "",                           \
                       test__a ? test__a : "NULL", test__a ? "\"" : "",        \
                       test__b ? "\"" : "", test__b ? test__b : "NULL",        \
                       test__b ? "\"" : "");                                  \
    } while (0)

/* `len` bytes; the message gives the first differing offset and bytes. */
#define ASSERT_MEM_EQ(a, b, len)                                              \
    do {                                                                      \
        const unsigned char *test__a = (const unsigned char *)(a);            \
        const unsigned char *test__b = (const unsigned char *)(b);            \
        size_t test__len = (size_t)(len);                                     \
        if (memcmp(test__a, test__b, test__len) != 0) {                       \
            size_t test__i = 0;                                               \
            while (test__a[test__i] == test__b[test__i])                      \
                test__i++;                                                    \
            test__fail(__FILE__, __LINE__,                                    \
                       "ASSERT_MEM_EQ(%s, %s, %s) failed: at offset %zu of "  \
                       "%zu: 0x%02x != 0x%02x", #a, #b, #len, test__i,        \
                       test__len, test__a[test__i], test__b[test__i]);        \
        }                                                                     \
    } while (0)

#define ASSERT_NULL(p)                                                        \
    do {                                                                      \
        const void *test__p = (p);                                            \
        if (test__p != NULL)                                                  \
            test__fail(__FILE__, __LINE__,                                    \
                       "ASSERT_NULL(%s) failed: %p", #p, test__p);            \
    } while (0)

#define ASSERT_NOT_NULL(p)                                                    \
    do {                                                                      \
        if ((p) == NULL)                                                      \
            test__fail(__FILE__, __LINE__, "ASSERT_NOT_NULL(%s) failed", #p); \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Waiting for another thread, node or process                              */
/* ------------------------------------------------------------------------ */

/* WAIT_UNTIL(cond, ms, pause) evaluates cond until it holds, running `pause`
 * between tries (cn_sleep(5) inside a libcnode process, usleep(5000) on a plain
 * thread); true once it holds, false if it still does not after ms of wall-clock
 * time. For something that must happen the limit is generous (10-30 s): CI runs
 * under ASan on 2 loaded vCPUs, and the wait ends as soon as cond holds. A sleep
 * is not a way to wait for another thread, node or process; a short wait is
 * right only to show that something does NOT happen. */
#define WAIT_UNTIL(cond, ms, pause)                                           \
    ({                                                                        \
        long long test__until = test__now_ms() + (ms);                        \
        int test__held;                                                       \
        while (!(test__held = !!(cond)) && test__now_ms() < test__until)      \
            pause;                                                            \
        test__held;                                                           \
    })

/* ------------------------------------------------------------------------ */
/* Runner                                                                   */
/* ------------------------------------------------------------------------ */

static long long test__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* An unlinked temporary file, closed on exec so helpers a test spawns do not
 * keep it. */
static int test__tmpfile(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    int fd;

    snprintf(path, sizeof path, "%s/unit-test.XXXXXX", dir && *dir ? dir : "/tmp");
    fd = mkstemp(path);
    if (fd < 0) {
        perror("test: mkstemp");
        exit(2);
    }
    unlink(path);
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

static void test__reset(int fd)
{
    if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
        perror("test: truncating capture file");
        exit(2);
    }
}

/* Read up to cap-1 bytes of fd from `from` into buf; returns the length. */
static size_t test__pread(int fd, char *buf, size_t cap, off_t from)
{
    size_t len = 0;

    while (len + 1 < cap) {
        ssize_t n = pread(fd, buf + len, cap - 1 - len, from + (off_t)len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

/* Copy the captured output of a failed test to stdout, indented, keeping
 * only the tail of very long output (sanitizer reports come last). */
static void test__show_output(int fd)
{
    enum { SHOW_MAX = 64 * 1024 };
    static char buf[SHOW_MAX + 1];
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > SHOW_MAX ? size - SHOW_MAX : 0;
    size_t len;
    char *line, *nl;

    if (size <= 0)
        return;
    len = test__pread(fd, buf, sizeof buf, from);
    line = buf;
    if (from > 0) {
        printf("    [... %lld bytes of output omitted ...]\n", (long long)from);
        nl = memchr(line, '\n', len);
        line = nl ? nl + 1 : line;
    }
    while (line < buf + len) {
        nl = memchr(line, '\n', (size_t)(buf + len - line));
        if (nl)
            *nl = '\0';
        printf("    %s\n", line);
        if (!nl)
            break;
        line = nl + 1;
    }
}

/* A sanitizer's one-line verdict, if the output has one: a better failure
 * reason than the bare exit status. UBSan's "file:line:col: runtime error:
 * ..." comes first (it prints no SUMMARY when combined with ASan), else the
 * last "SUMMARY: AddressSanitizer: ..." line. */
static int test__find_summary(int fd, char *out, size_t cap)
{
    enum { SCAN_MAX = 64 * 1024 };
    static char buf[SCAN_MAX + 1];
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > SCAN_MAX ? size - SCAN_MAX : 0;
    char *p, *found = NULL, *nl;
    size_t len;

    test__pread(fd, buf, sizeof buf, from);
    if ((p = strstr(buf, ": runtime error: ")) != NULL) {
        while (p > buf && p[-1] != '\n')
            p--;
        found = p;
    } else {
        for (p = buf; (p = strstr(p, "SUMMARY: ")) != NULL; p++)
            found = p;
    }
    if (!found)
        return 0;
    nl = strchr(found, '\n');
    if (nl)
        *nl = '\0';
    len = strlen(found);
    if (len >= cap)
        len = cap - 1;
    memcpy(out, found, len);
    out[len] = '\0';
    return 1;
}

static int test__timeout_for(const test_case_t *tc)
{
    const char *env = getenv("TEST_TIMEOUT_S");

    if (tc->timeout_s > 0)
        return tc->timeout_s;
    if (env && atoi(env) > 0)
        return atoi(env);
    return TEST_DEFAULT_TIMEOUT_S;
}

/* Child side: isolate, redirect, run the test, exit through exit(0) so
 * LeakSanitizer's at-exit check runs. */
__attribute__((noreturn))
static void test__child(const test_case_t *tc, int out_fd, int reason_fd,
                        const sigset_t *oldmask)
{
    int devnull;

    setpgid(0, 0);
    /* If the runner dies (^C), do not outlive it. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sigprocmask(SIG_SETMASK, oldmask, NULL);

    devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) {
        dup2(devnull, STDIN_FILENO);
        close(devnull);
    }
    dup2(out_fd, STDOUT_FILENO);
    dup2(out_fd, STDERR_FILENO);
    /* Unbuffered, so output printed before a crash is not lost. */
    setvbuf(stdout, NULL, _IONBF, 0);

    test__reason_fd = reason_fd;
    test__current = tc;
    tc->fn();
    exit(0);
}

/* Run one test in a forked child. Returns 1 if it passed. */
static int test__run_forked(const test_case_t *tc, int out_fd, int reason_fd)
{
    int timeout_s = test__timeout_for(tc);
    long long start = test__now_ms(), deadline = start + timeout_s * 1000LL;
    char reason[2048] = "";
    sigset_t chld, oldmask;
    siginfo_t info;
    int status = 0, timed_out = 0;
    pid_t pid;

    test__reset(out_fd);
    test__reset(reason_fd);

    /* SIGCHLD stays blocked so sigtimedwait() can wait for it with a
     * timeout; the child restores the old mask. */
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &oldmask);

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        perror("test: fork");
        exit(2);
    }
    if (pid == 0)
        test__child(tc, out_fd, reason_fd, &oldmask);
    /* Also from the parent, so the group exists before any kill(-pid). */
    setpgid(pid, pid);

    for (;;) {
        long long left = deadline - test__now_ms();
        struct timespec ts;

        /* Look without reaping, so the pid (and its process group id) stays
         * ours until the group is cleaned up below. */
        memset(&info, 0, sizeof info);
        if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
            info.si_pid == pid)
            break;
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        ts.tv_sec = (time_t)(left / 1000);
        ts.tv_nsec = (long)(left % 1000) * 1000000L;
        sigtimedwait(&chld, NULL, &ts);
    }

    /* Whatever the outcome, nothing the test started survives it. */
    kill(-pid, SIGKILL);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    sigprocmask(SIG_SETMASK, &oldmask, NULL);

    if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        printf("ok   %s:%s (%lld ms)\n", test__short_file(tc->file), tc->name,
               test__now_ms() - start);
        fflush(stdout);
        return 1;
    }

    if (timed_out) {
        snprintf(reason, sizeof reason, "timed out after %d s", timeout_s);
    } else if (WIFSIGNALED(status)) {
        snprintf(reason, sizeof reason, "killed by signal %d (%s)",
                 WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else if (test__pread(reason_fd, reason, sizeof reason, 0) == 0) {
        char summary[1024];
        int code = WEXITSTATUS(status);

        if (test__find_summary(out_fd, summary, sizeof summary))
            snprintf(reason, sizeof reason, "exit status %d: %s", code, summary);
        else
            snprintf(reason, sizeof reason, "exit status %d", code);
    }
    printf("FAIL %s:%s: %s\n", test__short_file(tc->file), tc->name, reason);
    test__show_output(out_fd);
    fflush(stdout);
    return 0;
}

static const char *test__binary_file(const char *argv0)
{
    const char *slash = strrchr(argv0, '/');

    if (test__list)
        return test__short_file(test__list->file);
    return slash ? slash + 1 : argv0;
}

/* The whole runner; see the top of this file for the arguments. */
__attribute__((unused)) static int test_main(int argc, char **argv)
{
    const test_case_t *tc;
    int passed = 0, failed = 0, out_fd, reason_fd;

    if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 ||
                                   strcmp(argv[1], "--help") == 0))) {
        fprintf(stderr, "usage: %s [--list | TEST_NAME]\n", argv[0]);
        return 2;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (tc = test__list; tc; tc = tc->next)
            printf("%s\n", tc->name);
        return 0;
    }
    if (argc == 2) {
        for (tc = test__list; tc; tc = tc->next)
            if (strcmp(tc->name, argv[1]) == 0)
                break;
        if (!tc) {
            fprintf(stderr, "%s: no test named '%s' (try --list)\n", argv[0], argv[1]);
            return 2;
        }
        test__current = tc;
        long long start = test__now_ms();
        tc->fn();
        printf("ok   %s:%s (%lld ms)\n", test__short_file(tc->file), tc->name,
               test__now_ms() - start);
        return 0;
    }

    out_fd = test__tmpfile();
    reason_fd = test__tmpfile();
    for (tc = test__list; tc; tc = tc->next) {
        if (test__run_forked(tc, out_fd, reason_fd))
            passed++;
        else
            failed++;
    }
    close(out_fd);
    close(reason_fd);
    printf("%s: %d passed, %d failed\n", test__binary_file(argv[0]), passed, failed);
    return failed ? 1 : 0;
}

#ifndef TEST_NO_MAIN
int main(int argc, char **argv)
{
    return test_main(argc, argv);
}
#endif

#endif /* ONEBLOG_TEST_H */
