/* buf.c - growable buffers and aborting allocation wrappers for the services. */
#include "buf.h"

#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n)
{
    fprintf(stderr, "oneblog: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

void xmalloc_keep_heap(void)
{
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    mallopt(M_TOP_PAD, 1 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
}

void buf_grow(buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    b->data[b->len] = '\0';
}

void buf_append(buf_t *b, const char *s, size_t len)
{
    buf_reserve(b, len);
    memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void buf_puts(buf_t *b, const char *s)
{
    buf_append(b, s, strlen(s));
}

void buf_putc(buf_t *b, char c)
{
    buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void buf_printf(buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

/* Bytes that need an entity: & < > " ' */
static const unsigned char html_special[256] = {
    ['&'] = 1, ['<'] = 1, ['>'] = 1, ['"'] = 1, ['\''] = 1,
};

/* 16 bytes at a time with the compiler's vector extension (SSE2 on x86-64, NEON
 * on arm64; GCC and clang): does the block hold any byte needing an entity? */
typedef unsigned char v16 __attribute__((vector_size(16)));

static inline int block_special(const char *p)
{
    v16 x;
    memcpy(&x, p, 16);
    v16 hit = (v16)(x == (v16){ 0 } + '&') | (v16)(x == (v16){ 0 } + '<') |
              (v16)(x == (v16){ 0 } + '>') | (v16)(x == (v16){ 0 } + '"') |
              (v16)(x == (v16){ 0 } + '\'');
    uint64_t w[2];
    memcpy(w, &hit, 16);
    return (w[0] | w[1]) != 0;
}

void buf_append_html(buf_t *b, const char *s, size_t len)
{
    /* Room for the usual case (few or no entities) at once. */
    buf_reserve(b, len + 16);
    size_t start = 0, i = 0;
    for (;;) {
        /* Skip clean blocks: most text has no entity at all (this loop was the
         * client's hottest on a home page of excerpts). */
        while (i + 16 <= len && !block_special(s + i))
            i += 16;
        size_t stop = i + 16 <= len ? i + 16 : len;
        while (i < stop && !html_special[(unsigned char)s[i]])
            i++;
        if (i >= len)
            break;
        if (i == stop)
            continue;
        const char *rep;
        size_t rlen;
        switch (s[i]) {
        case '&': rep = "&amp;", rlen = 5; break;
        case '<': rep = "&lt;", rlen = 4; break;
        case '>': rep = "&gt;", rlen = 4; break;
        case '"': rep = "&quot;", rlen = 6; break;
        default: rep = "&#39;", rlen = 5; break;
        }
        buf_append(b, s + start, i - start);
        buf_append(b, rep, rlen);
        start = ++i;
    }
    /* the clean rest, usually the whole string: room was reserved above */
    size_t n = len - start;
    if (b->len + n + 1 > b->cap)
        buf_reserve(b, n);
    memcpy(b->data + b->len, s + start, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void buf_reset(buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_take(buf_t *b)
{
    char *d = b->data ? b->data : xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
