/* log.c - the client's log lines: "TIME LEVEL client/MODULE: message" on stderr.
 *
 * client_log() (client.h) checks the level before formatting, as redis serverLog().
 */
#include "client.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>


int client_log_level = CLIENT_LOG_INFO;

void client_log_write(int level, const char *module, const char *fmt, ...)
{
    static const char *const names[] = { "error", "warn", "info", "debug" };
    char ts[32];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ %s client/%s: %s\n", ts, now.tv_nsec / 1000000,
            names[level < 0 ? 0 : level > 3 ? 3 : level], module, msg);
}

