/* value.c - the value tree behind templates. */
#include "value.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

static tv_t *make(tv_kind_t k)
{
    tv_t *v = xcalloc(1, sizeof(*v));
    v->kind = k;
    return v;
}

tv_t *tv_null(void)
{
    return make(TV_NULL);
}

tv_t *tv_bool(bool b)
{
    tv_t *v = make(TV_BOOL);
    v->u.b = b;
    return v;
}

tv_t *tv_int(long long i)
{
    tv_t *v = make(TV_INT);
    v->u.i = i;
    return v;
}

tv_t *tv_double(double d)
{
    tv_t *v = make(TV_DOUBLE);
    v->u.d = d;
    return v;
}

tv_t *tv_strn(const char *s, size_t len)
{
    tv_t *v = make(TV_STR);
    v->u.str.s = xstrndup(s, len);
    v->u.str.len = len;
    return v;
}

tv_t *tv_str(const char *s)
{
    return tv_strn(s ? s : "", s ? strlen(s) : 0);
}

tv_t *tv_list(void)
{
    return make(TV_LIST);
}

tv_t *tv_map(void)
{
    return make(TV_MAP);
}

void tv_list_add(tv_t *list, tv_t *item)
{
    if (list->u.list.n == list->u.list.cap) {
        size_t cap = list->u.list.cap ? list->u.list.cap * 2 : 4;
        list->u.list.items = xrealloc(list->u.list.items, cap * sizeof(tv_t *));
        list->u.list.cap = cap;
    }
    list->u.list.items[list->u.list.n++] = item;
}

void tv_map_set(tv_t *map, const char *key, tv_t *val)
{
    for (size_t i = 0; i < map->u.map.n; i++) {
        if (strcmp(map->u.map.keys[i], key) == 0) {
            tv_free(map->u.map.vals[i]);
            map->u.map.vals[i] = val;
            return;
        }
    }
    if (map->u.map.n == map->u.map.cap) {
        size_t cap = map->u.map.cap ? map->u.map.cap * 2 : 8;
        map->u.map.keys = xrealloc(map->u.map.keys, cap * sizeof(char *));
        map->u.map.vals = xrealloc(map->u.map.vals, cap * sizeof(tv_t *));
        map->u.map.cap = cap;
    }
    map->u.map.keys[map->u.map.n] = xstrdup(key);
    map->u.map.vals[map->u.map.n++] = val;
}

void tv_map_str(tv_t *map, const char *key, const char *s)
{
    tv_map_set(map, key, tv_str(s));
}

const tv_t *tv_map_get(const tv_t *map, const char *key)
{
    if (map == NULL || map->kind != TV_MAP)
        return NULL;
    for (size_t i = 0; i < map->u.map.n; i++)
        if (strcmp(map->u.map.keys[i], key) == 0)
            return map->u.map.vals[i];
    return NULL;
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
    if (v == NULL)
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
            free(v->u.map.keys[i]);
            tv_free(v->u.map.vals[i]);
        }
        free(v->u.map.keys);
        free(v->u.map.vals);
        break;
    default:
        break;
    }
    free(v);
}
