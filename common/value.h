/* value.h - a small tree of values (null, bool, number, string, list, map) that
 * templates render from. The client builds one per page from the CMS's replies;
 * tests build them from JSON. Strings are UTF-8 with an explicit length.
 *
 * Ownership: a tree is owned by its root; tv_free() frees it all. The tv_list_add
 * and tv_map_set functions take ownership of the value they are given.
 *
 * Two ways to allocate. The plain constructors (tv_map(), tv_str() ...) use the
 * heap: every node, key and string is its own allocation, freed by tv_free(). The
 * *_in constructors take a tv_arena_t: nodes, keys, strings and the containers'
 * arrays come from it with a pointer bump, tv_free() of such a value does nothing,
 * and tv_arena_free() releases the whole tree at once (the client builds a page's
 * context this way: a thousand mallocs and frees a page were a fifth of its CPU).
 * A container takes the allocation of its values from itself: tv_map_str() and
 * tv_map_bool()/tv_map_int() on an arena map allocate in that arena. A heap value
 * given to an arena container is adopted (freed with the arena); an arena value
 * must not be given to a heap container.
 *
 * Map keys are compared by length and first 8 bytes before any byte loop
 * (tv_key_t), so a lookup over a dozen keys costs a few integer compares; the
 * template engine keys its names once, at compile time.
 */
#ifndef ONEBLOG_VALUE_H
#define ONEBLOG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { TV_NULL, TV_BOOL, TV_INT, TV_DOUBLE, TV_STR, TV_LIST, TV_MAP } tv_kind_t;

typedef struct tv_arena tv_arena_t;

/* A map key prepared for comparison: length and the first 8 bytes (zero padded). */
typedef struct tv_key {
    const char *s;
    uint32_t len;
    uint64_t head;
} tv_key_t;

typedef struct tv_pair {
    tv_key_t key;      /* key.s NUL-terminated, owned like the map */
    struct tv *val;
} tv_pair_t;

typedef struct tv {
    tv_kind_t kind;
    tv_arena_t *arena; /* where it lives; NULL = the heap */
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
            tv_pair_t *items;
            size_t n, cap;
        } map;
    } u;
} tv_t;

/* A bump allocator for value trees. Zero-initialise (TV_ARENA_INIT), allocate,
 * then tv_arena_free(); the arena is empty and reusable afterwards. Single-owner:
 * not for concurrent use. */
struct tv_arena {
    char *cur, *end;          /* free space in the newest chunk */
    struct tv_chunk *chunks;  /* newest first */
    tv_t **adopted;           /* heap values handed to this arena's containers */
    size_t nadopted, capadopted;
};
#define TV_ARENA_INIT { NULL, NULL, NULL, NULL, 0, 0 }

/* n bytes, 8-aligned, valid until tv_arena_free (aborts when out of memory).
 * Inline below: a page makes a few thousand of these. */
static inline void *tv_arena_alloc(tv_arena_t *a, size_t n);
/* private: a new chunk for tv_arena_alloc */
void *tv__arena_grow(tv_arena_t *a, size_t n);
/* A NUL-terminated copy of s[0..len) in the arena. */
char *tv_arena_strndup(tv_arena_t *a, const char *s, size_t len);
/* Free everything allocated from a (and every value it adopted). */
void tv_arena_free(tv_arena_t *a);

tv_key_t tv_key(const char *s, size_t len);

tv_t *tv_null(void);
tv_t *tv_bool(bool b);
tv_t *tv_int(long long i);
tv_t *tv_double(double d);
tv_t *tv_str(const char *s);             /* copies */
tv_t *tv_strn(const char *s, size_t len); /* copies */
tv_t *tv_list(void);
tv_t *tv_map(void);

/* The same in arena a (a NULL: the heap). */
tv_t *tv_bool_in(tv_arena_t *a, bool b);
tv_t *tv_int_in(tv_arena_t *a, long long i);
tv_t *tv_strn_in(tv_arena_t *a, const char *s, size_t len);
tv_t *tv_str_in(tv_arena_t *a, const char *s);
tv_t *tv_list_in(tv_arena_t *a);
tv_t *tv_map_in(tv_arena_t *a);

void tv_list_add(tv_t *list, tv_t *item);
/* Set key (copied) to val; replaces an existing key's value. */
void tv_map_set(tv_t *map, const char *key, tv_t *val);
/* Convenience: tv_map_set(map, key, <a string/bool/int in map's allocation>). */
void tv_map_str(tv_t *map, const char *key, const char *s);
void tv_map_strn(tv_t *map, const char *key, const char *s, size_t len);
void tv_map_bool(tv_t *map, const char *key, bool b);
void tv_map_int(tv_t *map, const char *key, long long i);
/* Value of key, or NULL. Borrowed. */
const tv_t *tv_map_get(const tv_t *map, const char *key);
const tv_t *tv_map_getk(const tv_t *map, const tv_key_t *key);
/* Mustache's truthiness: false for null, false, empty list, empty string. */
bool tv_truthy(const tv_t *v);
/* Free a heap value and its tree; an arena value is left to its arena. */
void tv_free(tv_t *v);

static inline void *tv_arena_alloc(tv_arena_t *a, size_t n)
{
    n = (n + 7) & ~(size_t)7;
    if (a->cur && (size_t)(a->end - a->cur) >= n) {
        void *p = a->cur;
        a->cur += n;
        return p;
    }
    return tv__arena_grow(a, n);
}

#endif /* ONEBLOG_VALUE_H */
