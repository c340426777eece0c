/* log.c - structured logs: one JSON object per line.
 *
 *   {"time":"2024-05-01T12:00:00.123456Z","level":"warn","module":"store",
 *    "msg":"statement 3: disk I/O error","node":"cms@127.0.0.1",
 *    "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7"}
 *
 * The level is checked before anything is formatted (redis serverLog()). The
 * level and the output fd are process-wide settings, read from ONEBLOG_LOG_LEVEL
 * once; they are plain ints written rarely, read with relaxed atomics. A line is
 * built in a stack buffer and written with one write(2) (O_APPEND files and pipes
 * keep lines whole up to PIPE_BUF, and in practice far beyond for files).
 */
#include "telemetry_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define MSG_MAX_BYTES 2048                     /* longer messages are cut */
#define LINE_MAX_BYTES (MSG_MAX_BYTES * 6 + 1024) /* escaping grows text 6x at most */

static int log_level = -2; /* -2: not read from the environment yet */
static int log_fd = 2;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

int cn_log_level_parse(const char *s)
{
    if (s == NULL)
        return -EINVAL;
    for (int i = 0; i <= CN_LOG_DEBUG; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    if (strcasecmp(s, "warning") == 0)
        return CN_LOG_WARN;
    if (strcasecmp(s, "off") == 0 || strcasecmp(s, "none") == 0)
        return CN_LOG_OFF;
    return -EINVAL;
}

int cn_log_level(void)
{
    int l = __atomic_load_n(&log_level, __ATOMIC_RELAXED);
    if (l == -2) {
        const char *e = getenv("ONEBLOG_LOG_LEVEL");
        l = e ? cn_log_level_parse(e) : CN_LOG_INFO;
        if (l == -EINVAL)
            l = CN_LOG_INFO;
        __atomic_store_n(&log_level, l, __ATOMIC_RELAXED);
    }
    return l;
}

void cn_log_set_level(int level)
{
    if (level >= CN_LOG_OFF && level <= CN_LOG_DEBUG)
        __atomic_store_n(&log_level, level, __ATOMIC_RELAXED);
}

void cn_log_set_fd(int fd)
{
    __atomic_store_n(&log_fd, fd, __ATOMIC_RELAXED);
}

/* Append a JSON string (quoted) to buf at *off, keeping room for the closing
 * brace. The buffers are sized so that a message escapes whole (6 bytes per
 * byte at worst); a string that still does not fit is written as "". */
static void put_str(char *buf, size_t cap, size_t *off, const char *s)
{
    size_t o = *off;
    if (o + 5 >= cap)
        return;
    size_t room = cap - o - 4; /* quotes, brace, NUL */
    size_t need = cn_http_json_escape(buf + o + 1, room, s);
    buf[o] = '"';
    if (need >= room)
        need = 0;
    buf[o + 1 + need] = '"';
    buf[o + 2 + need] = '\0';
    *off = o + 2 + need;
}

static void put_raw(char *buf, size_t cap, size_t *off, const char *s)
{
    size_t l = strlen(s);
    if (*off + l + 2 >= cap)
        return;
    memcpy(buf + *off, s, l + 1);
    *off += l;
}

size_t cn_log_format(char *buf, size_t cap, int level, const char *module, const char *msg)
{
    if (cap < 64) {
        if (cap)
            buf[0] = '\0';
        return 0;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char tbuf[64];
    snprintf(tbuf, sizeof tbuf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000);
    size_t off = 0;
    buf[0] = '\0';
    put_raw(buf, cap, &off, "{\"time\":\"");
    put_raw(buf, cap, &off, tbuf);
    put_raw(buf, cap, &off, "\",\"level\":\"");
    put_raw(buf, cap, &off, level_names[level >= 0 && level <= CN_LOG_DEBUG ? level : CN_LOG_ERROR]);
    put_raw(buf, cap, &off, "\"");
    if (module) {
        put_raw(buf, cap, &off, ",\"module\":");
        put_str(buf, cap, &off, module);
    }
    /* The node, trace and span go before the message, which may be cut. */
    cn_node_t *n = cn__cur_node;
    if (n) {
        put_raw(buf, cap, &off, ",\"node\":");
        put_str(buf, cap, &off, cn_node_name(n));
        cn_span_ctx_t ctx;
        if (cn_trace_current(&ctx) == 0) {
            char tid[33], sid[17];
            cn_hex(ctx.trace_id, 16, tid);
            cn_hex(ctx.span_id, 8, sid);
            put_raw(buf, cap, &off, ",\"trace_id\":\"");
            put_raw(buf, cap, &off, tid);
            put_raw(buf, cap, &off, "\",\"span_id\":\"");
            put_raw(buf, cap, &off, sid);
            put_raw(buf, cap, &off, "\"");
        }
    }
    put_raw(buf, cap, &off, ",\"msg\":");
    put_str(buf, cap, &off, msg ? msg : "");
    buf[off++] = '}';
    buf[off] = '\0';
    return off;
}

void cn_log(int level, const char *module, const char *fmt, ...)
{
    if (level > cn_log_level() || level < 0)
        return;
    char msg[MSG_MAX_BYTES];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[LINE_MAX_BYTES];
    size_t n = cn_log_format(line, sizeof line - 1, level, module, msg);
    line[n++] = '\n';
    int fd = __atomic_load_n(&log_fd, __ATOMIC_RELAXED);
    for (size_t off = 0; off < n;) {
        ssize_t w = write(fd, line + off, n - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
}
