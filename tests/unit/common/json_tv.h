/* json_tv.h - test helper: a jansson JSON value as a template value tree (tv_t),
 * for the Mustache spec files and the theme's sample contexts. Header-only. */
#ifndef ONEBLOG_TEST_JSON_TV_H
#define ONEBLOG_TEST_JSON_TV_H

#include <jansson.h>

#include "../../../common/value.h"

static tv_t *from_json(const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        tv_t *m = tv_map();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) tv_map_set(m, k, from_json(v));
        return m;
    }
    case JSON_ARRAY: {
        tv_t *l = tv_list();
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) tv_list_add(l, from_json(v));
        return l;
    }
    case JSON_STRING:
        return tv_strn(json_string_value(j), json_string_length(j));
    case JSON_INTEGER:
        return tv_int(json_integer_value(j));
    case JSON_REAL:
        return tv_double(json_real_value(j));
    case JSON_TRUE:
        return tv_bool(true);
    case JSON_FALSE:
        return tv_bool(false);
    default:
        return tv_null();
    }
}

#endif /* ONEBLOG_TEST_JSON_TV_H */
