/* value.c - the value tree behind templates, on the heap or in an arena. */
#include "value.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* ---------------------------------------------------------------------------------
 * Arena
 * ------------------------------------------------------------------------------ */

#define CHUNK_BYTES (32 * 1024) /* a home page's context fits in about one */

struct tv_chunk {
    struct tv_chunk *next;
    size_t size;        /* bytes of data */
    _Alignas(16) char data[];
};

static void *chunk_alloc(tv_arena_t *a, size_t n)
{
    size_t size = n > CHUNK_BYTES / 4 ? n : CHUNK_BYTES;
    struct tv_chunk *c = xmalloc(sizeof(*c) + size);
    c->size = size;
    c->next = a->chunks;
    a->chunks = c;
    if (size != CHUNK_BYTES) {
        /* A big one (a post's HTML) on its own; keep bumping in the current chunk.
         * Put it second so that the current chunk stays first. */
        if (c->next) {
            a->chunks = c->next;
            c->next = a->chunks->next;
            a->chunks->next = c;
        } else {
            a->cur = a->end = NULL;
        }
        return c->data;
    }
    a->cur = c->data + n;
    a->end = c->data + size;
    return c->data;
}

void *tv__arena_grow(tv_arena_t *a, size_t n)
{
    return chunk_alloc(a, n);
}

char *tv_arena_strndup(tv_arena_t *a, const char *s, size_t len)
{
    char *d = tv_arena_alloc(a, len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

void tv_arena_free(tv_arena_t *a)
{
    for (size_t i = 0; i < a->nadopted; i++)
        tv_free(a->adopted[i]);
    free(a->adopted);
    struct tv_chunk *c = a->chunks;
    while (c) {
        struct tv_chunk *next = c->next;
        free(c);
        c = next;
    }
    memset(a, 0, sizeof(*a));
}

/* A heap value given to an arena container: freed with the arena. */
static void adopt(tv_arena_t *a, tv_t *v)
{
    if (a->nadopted == a->capadopted) {
        a->capadopted = a->capadopted ? a->capadopted * 2 : 8;
        a->adopted = xrealloc(a->adopted, a->capadopted * sizeof(*a->adopted));
    }
    a->adopted[a->nadopted++] = v;
}

/* ---------------------------------------------------------------------------------
 * Keys
 * ------------------------------------------------------------------------------ */

tv_key_t tv_key(const char *s, size_t len)
{
    tv_key_t k = { s, (uint32_t)len, 0 };
    memcpy(&k.head, s, len < 8 ? len : 8);
    return k;
}

static bool key_eq(const tv_key_t *a, const tv_key_t *b)
{
    return a->head == b->head && a->len == b->len &&
           (a->len <= 8 || memcmp(a->s + 8, b->s + 8, a->len - 8) == 0);
}

/* ---------------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------------ */

static tv_t *make(tv_arena_t *a, tv_kind_t k)
{
    tv_t *v;
    if (a) {
        v = tv_arena_alloc(a, sizeof(*v));
        memset(v, 0, sizeof(*v));
    } else {
        v = xcalloc(1, sizeof(*v));
    }
    v->kind = k;
    v->arena = a;
    return v;
}

/* Grow an array of a container in the container's allocation. */
static void *grow(tv_arena_t *a, void *old, size_t n, size_t cap, size_t elem)
{
    if (a == NULL)
        return xrealloc(old, cap * elem);
    void *p = tv_arena_alloc(a, cap * elem);
    if (n)
        memcpy(p, old, n * elem);
    return p;
}

tv_t *tv_null(void)
{
    return make(NULL, TV_NULL);
}

tv_t *tv_bool_in(tv_arena_t *a, bool b)
{
    tv_t *v = make(a, TV_BOOL);
    v->u.b = b;
    return v;
}

tv_t *tv_bool(bool b)
{
    return tv_bool_in(NULL, b);
}

tv_t *tv_int_in(tv_arena_t *a, long long i)
{
    tv_t *v = make(a, TV_INT);
    v->u.i = i;
    return v;
}

tv_t *tv_int(long long i)
{
    return tv_int_in(NULL, i);
}

tv_t *tv_double(double d)
{
    tv_t *v = make(NULL, TV_DOUBLE);
    v->u.d = d;
    return v;
}

tv_t *tv_strn_in(tv_arena_t *a, const char *s, size_t len)
{
    tv_t *v = make(a, TV_STR);
    v->u.str.s = a ? tv_arena_strndup(a, s, len) : xstrndup(s, len);
    v->u.str.len = len;
    return v;
}

tv_t *tv_str_in(tv_arena_t *a, const char *s)
{
    return tv_strn_in(a, s ? s : "", s ? strlen(s) : 0);
}

tv_t *tv_strn(const char *s, size_t len)
{
    return tv_strn_in(NULL, s, len);
}

tv_t *tv_str(const char *s)
{
    return tv_str_in(NULL, s);
}

tv_t *tv_list_in(tv_arena_t *a)
{
    return make(a, TV_LIST);
}

tv_t *tv_list(void)
{
    return tv_list_in(NULL);
}

tv_t *tv_map_in(tv_arena_t *a)
{
    return make(a, TV_MAP);
}

tv_t *tv_map(void)
{
    return tv_map_in(NULL);
}

/* A value going into container c: an arena container adopts a heap value. */
static void take(tv_t *c, tv_t *v)
{
    if (c->arena && v->arena == NULL)
        adopt(c->arena, v);
    /* an arena value in a heap container would be freed twice or never */
    if (c->arena == NULL && v->arena != NULL)
        abort();
}

void tv_list_add(tv_t *list, tv_t *item)
{
    take(list, item);
    if (list->u.list.n == list->u.list.cap) {
        size_t cap = list->u.list.cap ? list->u.list.cap * 2 : 4;
        list->u.list.items = grow(list->arena, list->u.list.items, list->u.list.n, cap,
                                  sizeof(tv_t *));
        list->u.list.cap = cap;
    }
    list->u.list.items[list->u.list.n++] = item;
}

void tv_map_set(tv_t *map, const char *key, tv_t *val)
{
    size_t len = strlen(key);
    tv_key_t k = tv_key(key, len);
    take(map, val);
    for (size_t i = 0; i < map->u.map.n; i++) {
        tv_pair_t *p = &map->u.map.items[i];
        if (key_eq(&p->key, &k)) {
            if (map->arena == NULL) /* an arena map's old value stays with the arena */
                tv_free(p->val);
            p->val = val;
            return;
        }
    }
    if (map->u.map.n == map->u.map.cap) {
        size_t cap = map->u.map.cap ? map->u.map.cap * 2 : 8;
        map->u.map.items = grow(map->arena, map->u.map.items, map->u.map.n, cap,
                                sizeof(tv_pair_t));
        map->u.map.cap = cap;
    }
    tv_pair_t *p = &map->u.map.items[map->u.map.n++];
    k.s = map->arena ? tv_arena_strndup(map->arena, key, len) : xstrndup(key, len);
    p->key = k;
    p->val = val;
}

void tv_map_strn(tv_t *map, const char *key, const char *s, size_t len)
{
    tv_map_set(map, key, tv_strn_in(map->arena, s, len));
}

void tv_map_str(tv_t *map, const char *key, const char *s)
{
    tv_map_set(map, key, tv_str_in(map->arena, s));
}

void tv_map_bool(tv_t *map, const char *key, bool b)
{
    tv_map_set(map, key, tv_bool_in(map->arena, b));
}

void tv_map_int(tv_t *map, const char *key, long long i)
{
    tv_map_set(map, key, tv_int_in(map->arena, i));
}

const tv_t *tv_map_getk(const tv_t *map, const tv_key_t *key)
{
    if (map == NULL || map->kind != TV_MAP)
        return NULL;
    const tv_pair_t *p = map->u.map.items;
    for (size_t i = 0, n = map->u.map.n; i < n; i++)
        if (key_eq(&p[i].key, key))
            return p[i].val;
    return NULL;
}

const tv_t *tv_map_get(const tv_t *map, const char *key)
{
    tv_key_t k = tv_key(key, strlen(key));
    return tv_map_getk(map, &k);
}

bool tv_truthy(const tv_t *v)
{
    if (v == NULL)
        return false;
    switch (v->kind) {
    case TV_NULL: return false;
    case TV_BOOL: return v->u.b;
    case TV_LIST: return v->u.list.n > 0;
    case TV_STR: return v->u.str.len > 0;
    default: return true;
    }
}

void tv_free(tv_t *v)
{
    if (v == NULL || v->arena)
        return;
    switch (v->kind) {
    case TV_STR:
        free(v->u.str.s);
        break;
    case TV_LIST:
        for (size_t i = 0; i < v->u.list.n; i++)
            tv_free(v->u.list.items[i]);
        free(v->u.list.items);
        break;
    case TV_MAP:
        for (size_t i = 0; i < v->u.map.n; i++) {
            free((char *)v->u.map.items[i].key.s);
            tv_free(v->u.map.items[i].val);
        }
        free(v->u.map.items);
        break;
    default:
        break;
    }
    free(v);
}
