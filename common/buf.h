/* buf.h - a growable byte buffer and the services' allocation wrappers.
 *
 * Services (not libcnode) allocate through xmalloc() and friends, which abort with
 * the size on failure (redis zmalloc, h2o h2o_mem_alloc): a service out of memory
 * cannot do anything useful, and checking every small allocation would bury the
 * logic. The buffer is what renderers and encoders append to.
 */
#ifndef ONEBLOG_BUF_H
#define ONEBLOG_BUF_H

#include <stdarg.h>
#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* For long-running services, first thing in main: keep freed heap memory for
 * the next request instead of giving it back to the kernel at once (glibc trims
 * the heap top past 128 KiB and mmaps blocks past 128 KiB, so a page's buffers
 * were fresh pages again, about one page fault per request: several percent of
 * an uncached page's CPU). Up to 32 MiB may stay free in the process. */
void xmalloc_keep_heap(void);

typedef struct buf {
    char *data; /* NUL-terminated after every append (when len > 0 or after buf_reserve) */
    size_t len;
    size_t cap;
} buf_t;

#define BUF_INIT { NULL, 0, 0 }

/* Room for extra more bytes and a NUL: a check inline, the growth in buf.c. */
void buf_grow(buf_t *b, size_t extra);
static inline void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra + 1 > b->cap)
        buf_grow(b, extra);
}
void buf_append(buf_t *b, const char *s, size_t len);
void buf_puts(buf_t *b, const char *s);
void buf_putc(buf_t *b, char c);
void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append s with &, <, >, ", ' replaced by HTML entities. */
void buf_append_html(buf_t *b, const char *s, size_t len);
void buf_reset(buf_t *b);
void buf_free(buf_t *b);
/* Hand the contents over (NUL-terminated, caller frees); b is empty after. */
char *buf_take(buf_t *b);

#endif /* ONEBLOG_BUF_H */
