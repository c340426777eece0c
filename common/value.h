/* value.h - a small tree of values (null, bool, number, string, list, map) that
 * templates render from. The client builds one per page from the CMS's replies;
 * tests build them from JSON. Strings are UTF-8 with an explicit length.
 *
 * Ownership: a tree is owned by its root; tv_free() frees it all. The tv_list_add
 * and tv_map_set functions take ownership of the value they are given.
 */
#ifndef ONEBLOG_VALUE_H
#define ONEBLOG_VALUE_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { TV_NULL, TV_BOOL, TV_INT, TV_DOUBLE, TV_STR, TV_LIST, TV_MAP } tv_kind_t;

typedef struct tv {
    tv_kind_t kind;
    union {
        bool b;
        long long i;
        double d;
        struct {
            char *s;   /* NUL-terminated copy */
            size_t len;
        } str;
        struct {
            struct tv **items;
            size_t n, cap;
        } list;
        struct {
            char **keys;
            struct tv **vals;
            size_t n, cap;
        } map;
    } u;
} tv_t;

tv_t *tv_null(void);
tv_t *tv_bool(bool b);
tv_t *tv_int(long long i);
tv_t *tv_double(double d);
tv_t *tv_str(const char *s);             /* copies */
tv_t *tv_strn(const char *s, size_t len); /* copies */
tv_t *tv_list(void);
tv_t *tv_map(void);
void tv_list_add(tv_t *list, tv_t *item);
/* Set key (copied) to val; replaces an existing key's value. */
void tv_map_set(tv_t *map, const char *key, tv_t *val);
/* Convenience: tv_map_set(map, key, tv_str(s)). */
void tv_map_str(tv_t *map, const char *key, const char *s);
/* Value of key, or NULL. Borrowed. */
const tv_t *tv_map_get(const tv_t *map, const char *key);
/* Mustache's truthiness: false for null, false, empty list, empty string. */
bool tv_truthy(const tv_t *v);
void tv_free(tv_t *v);

#endif /* ONEBLOG_VALUE_H */
