/* util.h - the CMS's small shared helpers on top of common/buf.h (whose xmalloc()
 * family aborts with the size on failure, the services' one allocation wrapper):
 * a NULL-tolerant string copy, a clock, and the log macro.
 */
#ifndef CMS_UTIL_H
#define CMS_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* A copy of s through xstrdup(); NULL in, NULL out. */
char *cms_strdup(const char *s);
/* A new string from printf arguments. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds since the epoch, UTC. */
int64_t cms_time_now(void);
/* Format t as "2024-05-01T12:00:00Z" into out. */
void cms_time_iso(int64_t t, char out[32]);
/* Parse "YYYY-MM-DD", "YYYY-MM-DDTHH:MM[:SS][.fff][Z|+HH:MM]" or "YYYY-MM-DD HH:MM[:SS]"
 * (UTC unless an offset is given). Returns 0 and *out, or -EINVAL. */
int cms_time_parse(const char *s, int64_t *out);

/* Log levels; the level comes from ONEBLOG_LOG_LEVEL (error, warn, info, debug). */
enum { CMS_LOG_ERROR = 0, CMS_LOG_WARN, CMS_LOG_INFO, CMS_LOG_DEBUG };
extern int cms_log_level;
void cms_log_write(int level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* One line per event on stderr: time, level, module, message. The level is checked
 * before the arguments are formatted. */
#define cms_log(level, module, ...)                                        \
    do {                                                                   \
        if ((level) <= cms_log_level)                                      \
            cms_log_write((level), (module), __VA_ARGS__);                 \
    } while (0)

#endif /* CMS_UTIL_H */
