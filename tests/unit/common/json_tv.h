/* json_tv.h - test helper: a jansson JSON value as a template value tree (tv_t),
 * for the Mustache spec files and the theme's sample contexts. Header-only. */
#ifndef ONEBLOG_TEST_JSON_TV_H
#define ONEBLOG_TEST_JSON_TV_H

#include <jansson.h>

#include "../../../common/value.h"

/* In arena a (NULL: the heap). Doubles and nulls have no arena constructor: they
 * come from the heap and the arena adopts them, which is tested that way too. */
static inline tv_t *from_json_in(tv_arena_t *a, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        tv_t *m = tv_map_in(a);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) tv_map_set(m, k, from_json_in(a, v));
        return m;
    }
    case JSON_ARRAY: {
        tv_t *l = tv_list_in(a);
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) tv_list_add(l, from_json_in(a, v));
        return l;
    }
    case JSON_STRING:
        return tv_strn_in(a, json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return tv_int_in(a, json_integer_value(j));
    case JSON_REAL:
        return tv_double(json_real_value(j));
    case JSON_TRUE:
        return tv_bool_in(a, true);
    case JSON_FALSE:
        return tv_bool_in(a, false);
    default:
        return tv_null();
    }
}

static inline tv_t *from_json(const json_t *j)
{
    return from_json_in(NULL, j);
}

#endif /* ONEBLOG_TEST_JSON_TV_H */
