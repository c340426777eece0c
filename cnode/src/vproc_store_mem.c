/* vproc_store_mem.c - the in-memory vproc store: (type, key) -> (version,
 * state) in a chained hash table under a mutex, so several nodes running in
 * threads of one OS process can share it (the unit tests do). Nothing survives
 * the process: for tests and for single-process use where losing the states
 * on exit is fine. Calls never park.
 */
#include "vproc_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_row {
    struct mem_row *next;
    uint64_t hash;
    int64_t version;
    char *data;
    size_t len;
    size_t idlen;              /* type, NUL, key */
    char id[];
} mem_row_t;

typedef struct mem_store {
    cn_vproc_store_t base;
    pthread_mutex_t mu;
    mem_row_t **b;
    size_t nb, n;
} mem_store_t;

/* The row id: type name, NUL, canonical key. */
static size_t make_id(char *out, const char *type, const char *key, size_t klen)
{
    size_t tl = strlen(type) + 1;
    memcpy(out, type, tl);
    memcpy(out + tl, key, klen);
    return tl + klen;
}

static mem_row_t **find(mem_store_t *s, const char *id, size_t idlen, uint64_t h)
{
    mem_row_t **pp = &s->b[h & (s->nb - 1)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->hash == h && (*pp)->idlen == idlen && memcmp((*pp)->id, id, idlen) == 0)
            break;
    return pp;
}

static int grow(mem_store_t *s)
{
    size_t nb = s->nb * 2;
    mem_row_t **b = cn__calloc(nb, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < s->nb; i++) {
        for (mem_row_t *r = s->b[i], *next; r; r = next) {
            next = r->next;
            r->next = b[r->hash & (nb - 1)];
            b[r->hash & (nb - 1)] = r;
        }
    }
    cn__free(s->b);
    s->b = b;
    s->nb = nb;
    return 0;
}

static int mem_load(cn_vproc_store_t *base, const char *type, const char *key, size_t klen,
                    ei_x_buff *out, int64_t *version)
{
    mem_store_t *s = (mem_store_t *)base;
    char id[CN_VPROC_TYPE_MAX + CN_VPROC_KEY_MAX + 1];
    if (strlen(type) >= CN_VPROC_TYPE_MAX || klen > CN_VPROC_KEY_MAX)
        return -EINVAL;
    size_t idlen = make_id(id, type, key, klen);
    uint64_t h = cn__vproc_hash(id, idlen);
    int rc = -ENOENT;
    pthread_mutex_lock(&s->mu);
    mem_row_t *r = *find(s, id, idlen, h);
    if (r) {
        rc = ei_x_append_buf(out, r->data, (int)r->len) < 0 ? -ENOMEM : 0;
        *version = r->version;
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

static int mem_save(cn_vproc_store_t *base, const char *type, const char *key, size_t klen,
                    int64_t expected, const char *data, size_t len)
{
    mem_store_t *s = (mem_store_t *)base;
    char id[CN_VPROC_TYPE_MAX + CN_VPROC_KEY_MAX + 1];
    if (strlen(type) >= CN_VPROC_TYPE_MAX || klen > CN_VPROC_KEY_MAX)
        return -EINVAL;
    size_t idlen = make_id(id, type, key, klen);
    uint64_t h = cn__vproc_hash(id, idlen);
    char *copy = cn__malloc(len ? len : 1);
    if (copy == NULL)
        return -ENOMEM;
    if (len)
        memcpy(copy, data, len); /* data may be NULL for an empty state */
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    mem_row_t **pp = find(s, id, idlen, h);
    mem_row_t *r = *pp;
    if ((r ? r->version : 0) != expected) {
        rc = -ESTALE;
    } else if (r == NULL) {
        if ((s->n + 1 > s->nb && grow(s) < 0) ||
            (r = cn__calloc(1, sizeof(*r) + idlen)) == NULL) {
            rc = -ENOMEM;
        } else {
            r->hash = h;
            r->idlen = idlen;
            memcpy(r->id, id, idlen);
            pp = &s->b[h & (s->nb - 1)];
            r->next = *pp;
            *pp = r;
            s->n++;
        }
    }
    if (rc == 0) {
        cn__free(r->data);
        r->data = copy;
        r->len = len;
        r->version = expected + 1;
        copy = NULL;
    }
    pthread_mutex_unlock(&s->mu);
    cn__free(copy);
    return rc;
}

static void mem_close(cn_vproc_store_t *base)
{
    mem_store_t *s = (mem_store_t *)base;
    for (size_t i = 0; i < s->nb; i++) {
        for (mem_row_t *r = s->b[i], *next; r; r = next) {
            next = r->next;
            cn__free(r->data);
            cn__free(r);
        }
    }
    cn__free(s->b);
    pthread_mutex_destroy(&s->mu);
    cn__free(s);
}

static const cn_vproc_store_ops_t mem_ops = { mem_load, mem_save, mem_close };

int cn_vproc_store_mem_new(cn_vproc_store_t **out)
{
    mem_store_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->nb = 256;
    if ((s->b = cn__calloc(s->nb, sizeof(*s->b))) == NULL) {
        cn__free(s);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->mu, NULL);
    s->base.ops = &mem_ops;
    *out = &s->base;
    return 0;
}
