/* http_arena.c - the per-request memory arena of the HTTP server.
 *
 * A bump allocator in the style of h2o's req->pool: allocations come from an
 * inline block in the connection (so a typical request mallocs nothing), then from
 * blocks of at least 8 KiB that are freed together when the request ends. Nothing
 * is freed individually. The public cn_http_alloc() family wraps it.
 */
#include "http_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cnode_int.h"

#define ALIGN 16u
#define MIN_BLOCK 8192u

static size_t align_up(size_t n)
{
    return (n + ALIGN - 1) & ~(size_t)(ALIGN - 1);
}

void cn__arena_init(cn__arena_t *a, char *first, size_t cap)
{
    a->first = first;
    a->first_cap = cap;
    a->blocks = NULL;
    a->cur = first;
    a->end = first + cap;
}

void *cn__arena_alloc(cn__arena_t *a, size_t n)
{
    if (n > SIZE_MAX / 2)
        return NULL;
    /* Keep cur aligned: the inline block and malloc'd data are 16-aligned. */
    size_t need = align_up(n ? n : 1);
    if ((size_t)(a->end - a->cur) >= need) {
        void *p = a->cur;
        a->cur += need;
        return p;
    }
    size_t cap = need > MIN_BLOCK ? need : MIN_BLOCK;
    cn__arena_blk_t *b = cn__malloc(sizeof(*b) + cap + ALIGN);
    if (b == NULL)
        return NULL;
    b->cap = cap;
    b->next = a->blocks;
    a->blocks = b;
    char *start = (char *)(((uintptr_t)b->data + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1));
    a->cur = start + need;
    a->end = start + cap;
    return start;
}

void *cn__arena_grow(cn__arena_t *a, void *p, size_t old, size_t n)
{
    if (p != NULL && (char *)p + align_up(old ? old : 1) == a->cur &&
        (size_t)(a->end - (char *)p) >= align_up(n)) {
        a->cur = (char *)p + align_up(n);
        return p;
    }
    void *q = cn__arena_alloc(a, n);
    if (q && p && old)
        memcpy(q, p, old < n ? old : n);
    return q;
}

void cn__arena_reset(cn__arena_t *a)
{
    while (a->blocks) {
        cn__arena_blk_t *b = a->blocks;
        a->blocks = b->next;
        cn__free(b);
    }
    a->cur = a->first;
    a->end = a->first + a->first_cap;
}

/* ---------------------------------------------------------------------------------
 * Public wrappers
 * ------------------------------------------------------------------------------ */

void *cn_http_alloc(cn_http_req_t *req, size_t n)
{
    return cn__arena_alloc(&req->conn->arena, n);
}

char *cn_http_strdup(cn_http_req_t *req, const char *s)
{
    size_t len = strlen(s);
    char *d = cn__arena_alloc(&req->conn->arena, len + 1);
    if (d)
        memcpy(d, s, len + 1);
    return d;
}

char *cn_http_sprintf(cn_http_req_t *req, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (len < 0)
        return NULL;
    char *d = cn__arena_alloc(&req->conn->arena, (size_t)len + 1);
    if (d == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(d, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return d;
}
