/* args.c - option values naming a place in the event log (args.h). */
#include "events/args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool ev_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    /* strtoull skips white space and takes a sign ("-1", " -1" are
     * ULLONG_MAX): a number here starts with its first digit. */
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool ev_parse_time(const char *s, int64_t *ms)
{
    uint64_t v;
    struct tm tm;
    const char *end;

    if (ev_parse_u64(s, &v)) {
        if (v > INT64_MAX)
            return false; /* would be a time before the epoch */
        *ms = (int64_t)v;
        return true;
    }
    memset(&tm, 0, sizeof tm);
    if ((end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL &&
        (end = strptime(s, "%Y-%m-%d", &tm)) == NULL)
        return false;
    if (*end == 'Z')
        end++;
    if (*end)
        return false;
    *ms = (int64_t)timegm(&tm) * 1000;
    return true;
}
