/* value_test.c - value trees on the heap and in an arena: key comparison (length
 * and 8-byte head, then the rest), replacing a key, heap values adopted by arena
 * containers (LeakSanitizer checks they are freed with the arena), strings larger
 * than a chunk, trees spanning many chunks, and containers growing in place. */
#include "test.h"

#include <stdio.h>
#include <string.h>

#include "../../../common/value.h"

/* Keys that share their first 8 bytes, or are prefixes of each other. */
static const char *const keys[] = { "a", "ab", "abcdefg", "abcdefgh", "abcdefghi",
                                    "abcdefghj", "description", "description_a",
                                    "description_b", "" };
#define NKEYS (sizeof keys / sizeof keys[0])

static void check_keys(tv_t *m)
{
    for (size_t i = 0; i < NKEYS; i++)
        tv_map_int(m, keys[i], (long long)i);
    for (size_t i = 0; i < NKEYS; i++) {
        const tv_t *v = tv_map_get(m, keys[i]);
        ASSERT_NOT_NULL(v);
        ASSERT_EQ(v->kind, TV_INT);
        ASSERT_EQ(v->u.i, (long long)i);
    }
    ASSERT_NULL(tv_map_get(m, "abcdefgi"));
    ASSERT_NULL(tv_map_get(m, "description_c"));
    ASSERT_NULL(tv_map_get(m, "abc"));
    /* replacing keeps one entry per key */
    tv_map_str(m, "description_b", "new");
    ASSERT_EQ(m->u.map.n, NKEYS);
    ASSERT_STR_EQ(tv_map_get(m, "description_b")->u.str.s, "new");
    ASSERT_EQ(tv_map_get(m, "description_a")->u.i, 7);
    tv_key_t k = tv_key("description_a", 13);
    ASSERT_EQ(tv_map_getk(m, &k)->u.i, 7);
}

TEST(keys_on_the_heap_and_in_an_arena)
{
    tv_t *m = tv_map();
    check_keys(m);
    tv_free(m);
    tv_arena_t a = TV_ARENA_INIT;
    m = tv_map_in(&a);
    check_keys(m);
    tv_free(m); /* does nothing: the arena owns it */
    ASSERT_EQ(m->u.map.n, NKEYS);
    tv_arena_free(&a);
    ASSERT_NULL(a.chunks);
    ASSERT_NULL(tv_map_get(NULL, "a"));
    tv_t *l = tv_list();
    ASSERT_NULL(tv_map_get(l, "a"));
    tv_free(l);
}

TEST(heap_values_in_arena_containers_are_adopted)
{
    tv_arena_t a = TV_ARENA_INIT;
    tv_t *m = tv_map_in(&a), *l = tv_list_in(&a);
    tv_map_set(m, "d", tv_double(1.5));
    tv_map_set(m, "h", tv_str("heap"));
    tv_map_set(m, "h", tv_str("heap again")); /* the first one stays adopted */
    tv_t *hm = tv_map();
    tv_map_str(hm, "k", "in a heap map");
    tv_list_add(l, hm);
    tv_list_add(l, tv_null());
    tv_map_set(m, "l", l);
    ASSERT_EQ(a.nadopted, 5);
    ASSERT_STR_EQ(tv_map_get(m, "h")->u.str.s, "heap again");
    ASSERT_STR_EQ(tv_map_get(l->u.list.items[0], "k")->u.str.s, "in a heap map");
    tv_arena_free(&a); /* LeakSanitizer: nothing may be left */
    /* reusable once freed */
    m = tv_map_in(&a);
    tv_map_str(m, "x", "y");
    ASSERT_STR_EQ(tv_map_get(m, "x")->u.str.s, "y");
    tv_arena_free(&a);
}

TEST(big_strings_and_many_chunks)
{
    tv_arena_t a = TV_ARENA_INIT;
    tv_t *root = tv_map_in(&a);
    tv_map_str(root, "before", "small");
    static char big[100000];
    memset(big, 'x', sizeof big - 1);
    tv_map_strn(root, "big", big, sizeof big - 1);
    tv_t *list = tv_list_in(&a);
    tv_map_set(root, "list", list);
    char key[32], val[64];
    for (int i = 0; i < 5000; i++) {
        tv_t *m = tv_map_in(&a);
        snprintf(key, sizeof key, "key_number_%d", i);
        snprintf(val, sizeof val, "value %d", i);
        tv_map_str(m, key, val);
        tv_map_bool(m, "b", i % 2);
        tv_list_add(list, m);
    }
    ASSERT_EQ(tv_map_get(root, "big")->u.str.len, sizeof big - 1);
    ASSERT_EQ(tv_map_get(root, "big")->u.str.s[sizeof big - 2], 'x');
    ASSERT_STR_EQ(tv_map_get(root, "before")->u.str.s, "small");
    ASSERT_EQ(list->u.list.n, 5000);
    for (int i = 0; i < 5000; i += 499) {
        snprintf(key, sizeof key, "key_number_%d", i);
        snprintf(val, sizeof val, "value %d", i);
        ASSERT_STR_EQ(tv_map_get(list->u.list.items[i], key)->u.str.s, val);
        ASSERT_EQ(tv_truthy(tv_map_get(list->u.list.items[i], "b")), i % 2 == 1);
    }
    int chunks = 0;
    for (struct tv_chunk *c = a.chunks; c; c = *(struct tv_chunk **)c)
        chunks++;
    ASSERT(chunks > 4);
    void *p = tv_arena_alloc(&a, 3);
    ASSERT_EQ((uintptr_t)p % 8, 0);
    tv_arena_free(&a);
}
