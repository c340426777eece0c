/* alloc.c - the library's allocation wrappers and their fault-injection hook.
 *
 * The library returns -ENOMEM rather than aborting, so it stays embeddable; to prove
 * that, tests make the N-th allocation fail (SQLite's test_malloc.c idea) and run a
 * scenario failing at every point in turn. The counter is per thread: pool threads
 * and other nodes' schedulers are unaffected.
 */
#include "cnode_int.h"

#include <stdlib.h>

static __thread long fail_at;  /* 0 = off; else allocations left until the failing one */
static __thread long n_allocs; /* allocations made on this thread */

static bool should_fail(void)
{
    n_allocs++;
    if (fail_at == 0)
        return false;
    if (--fail_at == 0)
        return true;
    return false;
}

void *cn__malloc(size_t n)
{
    return should_fail() ? NULL : malloc(n);
}

void *cn__calloc(size_t n, size_t size)
{
    return should_fail() ? NULL : calloc(n, size);
}

void *cn__realloc(void *p, size_t n)
{
    return should_fail() ? NULL : realloc(p, n);
}

void cn__free(void *p)
{
    free(p);
}

void cn__alloc_fail_at(long n)
{
    fail_at = n;
}

long cn__alloc_count(void)
{
    return n_allocs;
}
