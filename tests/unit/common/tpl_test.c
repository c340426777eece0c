/* tpl_test.c - the Mustache engine against the official spec's JSON test files
 * (a copy in tests/data/mustache-spec), plus our own behaviour: errors, escaping,
 * replacement, recursion bounds. */
#include "test.h"

#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "../../../common/tpl.h"
#include "json_tv.h"


/* Run every test of one spec file; return the number of failures. */
static int run_spec(const char *file)
{
    char path[512];
    snprintf(path, sizeof(path), "tests/data/mustache-spec/%s", file);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    ASSERT_NOT_NULL(root);
    json_t *tests = json_object_get(root, "tests");
    ASSERT(json_array_size(tests) > 0);
    int failed = 0;
    size_t i;
    json_t *t;
    json_array_foreach(tests, i, t) {
        const char *name = json_string_value(json_object_get(t, "name"));
        const char *tpl = json_string_value(json_object_get(t, "template"));
        const char *want = json_string_value(json_object_get(t, "expected"));
        tpl_set_t *set = tpl_set_new();
        char err[200];
        json_t *partials = json_object_get(t, "partials");
        if (partials) {
            const char *k;
            json_t *v;
            json_object_foreach(partials, k, v)
                tpl_set_add(set, k, json_string_value(v), json_string_length(v), err, sizeof(err));
        }
        int rc = tpl_set_add(set, "$main", tpl, strlen(tpl), err, sizeof(err));
        /* the data once on the heap, once in an arena (as the client builds pages) */
        for (int in_arena = 0; in_arena < 2; in_arena++) {
            tv_arena_t ar = TV_ARENA_INIT;
            tv_t *data = from_json_in(in_arena ? &ar : NULL, json_object_get(t, "data"));
            buf_t out = BUF_INIT;
            tpl_render(set, "$main", data, &out);
            const char *got = out.data ? out.data : "";
            if (rc != 0 || strcmp(got, want) != 0) {
                fprintf(stderr,
                        "%s: %s (%s)\n  template: %s\n  expected: [%s]\n  got:      [%s]%s%s\n",
                        file, name, in_arena ? "arena" : "heap", tpl, want, got,
                        rc ? "\n  error: " : "", rc ? err : "");
                failed++;
            }
            buf_free(&out);
            tv_free(data);
            tv_arena_free(&ar);
        }
        tpl_set_free(set);
    }
    json_decref(root);
    return failed;
}

TEST(spec_comments)
{
    ASSERT_EQ(run_spec("comments.json"), 0);
}

TEST(spec_delimiters)
{
    ASSERT_EQ(run_spec("delimiters.json"), 0);
}

TEST(spec_interpolation)
{
    ASSERT_EQ(run_spec("interpolation.json"), 0);
}

TEST(spec_inverted)
{
    ASSERT_EQ(run_spec("inverted.json"), 0);
}

TEST(spec_partials)
{
    ASSERT_EQ(run_spec("partials.json"), 0);
}

TEST(spec_sections)
{
    ASSERT_EQ(run_spec("sections.json"), 0);
}

static char *render(tpl_set_t *set, const char *name, tv_t *ctx)
{
    buf_t out = BUF_INIT;
    tpl_render(set, name, ctx, &out);
    return buf_take(&out);
}

TEST(errors_are_reported_and_rendered_visibly)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    ASSERT_EQ(tpl_set_add(set, "a", "x {{#s}} y", 10, err, sizeof(err)), -1);
    ASSERT_STR_EQ(err, "unclosed section 's'");
    ASSERT_EQ(tpl_set_add(set, "b", "line\n{{/nope}}", 14, err, sizeof(err)), -1);
    ASSERT_STR_EQ(err, "line 2: unexpected close tag 'nope'");
    ASSERT_EQ(tpl_set_add(set, "c", "{{name", 6, err, sizeof(err)), -1);
    ASSERT_STR_EQ(err, "line 1: unclosed tag");
    ASSERT_EQ(tpl_set_add(set, "d", "{{= x =}}", 9, err, sizeof(err)), -1);
    char *s = render(set, "b", NULL);
    ASSERT_STR_EQ(s, "<!-- template error: line 2: unexpected close tag &#39;nope&#39; -->");
    free(s);
    buf_t out = BUF_INIT;
    ASSERT_EQ(tpl_render(set, "missing", NULL, &out), -1);
    ASSERT_EQ(out.len, 0);
    tpl_set_free(set);
}

TEST(escaping_and_replacement)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    const char *src = "<h1>{{title}}</h1>{{{html}}}";
    ASSERT_EQ(tpl_set_add(set, "p", src, strlen(src), err, sizeof(err)), 0);
    tv_t *ctx = tv_map();
    tv_map_str(ctx, "title", "<script>alert('x')</script> & \"q\"");
    tv_map_str(ctx, "html", "<b>ok</b>");
    char *s = render(set, "p", ctx);
    ASSERT_STR_EQ(s, "<h1>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;</h1>"
                     "<b>ok</b>");
    free(s);
    /* replacing a template (theme reload) takes effect */
    ASSERT_EQ(tpl_set_add(set, "p", "[{{title}}]", 11, err, sizeof(err)), 0);
    tv_map_str(ctx, "title", "t");
    s = render(set, "p", ctx);
    ASSERT_STR_EQ(s, "[t]");
    free(s);
    tv_free(ctx);
    tpl_set_free(set);
}

TEST(recursive_partials_are_bounded)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    ASSERT_EQ(tpl_set_add(set, "r", "x{{>r}}", 7, err, sizeof(err)), 0);
    char *s = render(set, "r", NULL);
    ASSERT_EQ(strlen(s), 65); /* the outer one and 64 levels, then it stops */
    free(s);
    tpl_set_free(set);
}

TEST(list_index_extension)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    const char *src = "{{#items.0}}has{{/items.0}}{{^items.0}}none{{/items.0}}:{{items.1.n}}";
    ASSERT_EQ(tpl_set_add(set, "t", src, strlen(src), err, sizeof(err)), 0);
    tv_t *ctx = tv_map();
    tv_t *items = tv_list();
    tv_map_set(ctx, "items", items);
    char *s = render(set, "t", ctx);
    ASSERT_STR_EQ(s, "none:");
    free(s);
    for (int i = 0; i < 2; i++) {
        tv_t *m = tv_map();
        tv_map_set(m, "n", tv_int(i + 10));
        tv_list_add(items, m);
    }
    s = render(set, "t", ctx);
    ASSERT_STR_EQ(s, "has:11");
    free(s);
    tv_free(ctx);
    tpl_set_free(set);
}

TEST(replaced_partials_are_seen)
{
    /* partial nodes remember what they resolved to; a replaced or new partial
     * must still be found */
    tpl_set_t *set = tpl_set_new();
    char err[200];
    const char *src = "[{{>p}}]\n  {{>p}}\n";
    ASSERT_EQ(tpl_set_add(set, "t", src, strlen(src), err, sizeof(err)), 0);
    char *s = render(set, "t", NULL);
    ASSERT_STR_EQ(s, "[]\n");
    free(s);
    ASSERT_EQ(tpl_set_add(set, "p", "one\n", 4, err, sizeof(err)), 0);
    s = render(set, "t", NULL);
    ASSERT_STR_EQ(s, "[one\n]\n  one\n");
    free(s);
    ASSERT_EQ(tpl_set_add(set, "p", "two\n", 4, err, sizeof(err)), 0);
    s = render(set, "t", NULL);
    ASSERT_STR_EQ(s, "[two\n]\n  two\n");
    free(s);
    tpl_set_free(set);
}

TEST(numbers_interpolate)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    const char *src = "{{a}} {{b}} {{c}} {{d}} {{e}}";
    ASSERT_EQ(tpl_set_add(set, "n", src, strlen(src), err, sizeof(err)), 0);
    tv_t *ctx = tv_map();
    tv_map_set(ctx, "a", tv_int(0));
    tv_map_set(ctx, "b", tv_int(-42));
    tv_map_set(ctx, "c", tv_int(9223372036854775807LL));
    tv_map_set(ctx, "d", tv_int(-9223372036854775807LL - 1));
    tv_map_set(ctx, "e", tv_double(1.5));
    char *s = render(set, "n", ctx);
    ASSERT_STR_EQ(s, "0 -42 9223372036854775807 -9223372036854775808 1.5");
    free(s);
    tv_free(ctx);
    tpl_set_free(set);
}

/* Found by common_tpl_fuzz: "{{>r}}{{>r}}" stays within the partial depth bound
 * but renders 2^64 times (it hung the renderer); sections nested over a list cost
 * n^depth the same way. A render now stops after a budget of nodes and says so. */
TEST(partial_fanout_is_bounded)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    ASSERT_EQ(tpl_set_add(set, "r", "x{{>r}}{{>r}}", 13, err, sizeof(err)), 0);
    char *s = render(set, "r", NULL);
    size_t n = strlen(s);
    ASSERT(n > 1000);
    ASSERT(n < (2u << 20));
    ASSERT_NOT_NULL(strstr(s + n - 120, "<!-- template error: "));
    free(s);

    /* 2 items, 40 sections deep over them: 2^40 without the budget */
    buf_t src = BUF_INIT;
    for (int i = 0; i < 40; i++)
        buf_puts(&src, "{{#l}}");
    buf_puts(&src, "y");
    for (int i = 0; i < 40; i++)
        buf_puts(&src, "{{/l}}");
    ASSERT_EQ(tpl_set_add(set, "l", src.data, src.len, err, sizeof(err)), 0);
    tv_t *ctx = tv_map(), *l = tv_list();
    tv_list_add(l, tv_int(1));
    tv_list_add(l, tv_int(2));
    tv_map_set(ctx, "l", l);
    s = render(set, "l", ctx);
    n = strlen(s);
    ASSERT(n < (2u << 20));
    ASSERT_NOT_NULL(strstr(s + n - 120, "<!-- template error: "));
    free(s);
    buf_free(&src);
    tv_free(ctx);
    tpl_set_free(set);
}

/* The budget also bounds the bytes: a large text rendered many times. */
TEST(render_output_is_bounded)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    buf_t src = BUF_INIT;
    for (int i = 0; i < 1 << 16; i++)
        buf_putc(&src, 'z');
    buf_puts(&src, "{{>big}}{{>big}}");
    ASSERT_EQ(tpl_set_add(set, "big", src.data, src.len, err, sizeof(err)), 0);
    char *s = render(set, "big", NULL);
    size_t n = strlen(s);
    ASSERT(n < (65u << 20) + (1u << 16));
    ASSERT_NOT_NULL(strstr(s + n - 120, "<!-- template error: "));
    free(s);
    buf_free(&src);

    /* a set's own limits, exactly: 11 nodes (6 texts, 5 names); with 10, the
     * last text is not rendered */
    const char *ten = "0{{z}}1{{z}}2{{z}}3{{z}}4{{z}}5";
    tpl_set_limits(set, 10, 0);
    ASSERT_EQ(tpl_set_add(set, "ten", ten, strlen(ten), err, sizeof(err)), 0);
    s = render(set, "ten", NULL);
    ASSERT_EQ(strncmp(s, "01234<!-- template error: ten: ", 31), 0);
    free(s);
    tpl_set_limits(set, 11, 0);
    s = render(set, "ten", NULL);
    ASSERT_STR_EQ(s, "012345");
    free(s);
    tpl_set_limits(set, 0, 3);
    s = render(set, "ten", NULL);
    ASSERT_EQ(strncmp(s, "0123<!-- template error: ", 25), 0);
    free(s);
    tpl_set_limits(set, 0, 0);

    /* and a page within the budget renders whole, with no comment */
    ASSERT_EQ(tpl_set_add(set, "ok", "{{#l}}{{>item}}{{/l}}", 21, err, sizeof(err)), 0);
    ASSERT_EQ(tpl_set_add(set, "item", "<li>{{.}}</li>", 14, err, sizeof(err)), 0);
    tv_t *ctx = tv_map(), *l = tv_list();
    for (int i = 0; i < 10000; i++)
        tv_list_add(l, tv_int(i));
    tv_map_set(ctx, "l", l);
    s = render(set, "ok", ctx);
    ASSERT_NULL(strstr(s, "template error"));
    ASSERT_NOT_NULL(strstr(s, "<li>9999</li>"));
    free(s);
    tv_free(ctx);
    tpl_set_free(set);
}

/* A long line of tags compiles in linear time: the standalone rule scanned back
 * to the start of the line for every tag, so a 400 KB line of comment tags took
 * 4 s to compile and one the size of the theme's file limit (4 MiB) minutes. */
TEST(long_line_of_tags_compiles_in_linear_time)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    buf_t src = BUF_INIT;
    for (int i = 0; i < (4 << 20) / 5; i++)
        buf_puts(&src, "{{!}}");
    buf_puts(&src, "  {{#t}}\n  x\n  {{/t}}\n");
    ASSERT_EQ(tpl_set_add(set, "long", src.data, src.len, err, sizeof(err)), 0);
    tv_t *ctx = tv_map();
    tv_map_bool(ctx, "t", true);
    char *s = render(set, "long", ctx);
    ASSERT_STR_EQ(s, "  \n  x\n"); /* not standalone: other tags on its line */
    free(s);
    buf_free(&src);
    tv_free(ctx);
    tpl_set_free(set);
}
TEST_TIMEOUT(long_line_of_tags_compiles_in_linear_time, 20);

/* Found reading the renderer while fuzzing it: a partial that includes itself
 * inside 63 nested sections nests 64 x 64 renders, about 4,000 C frames, which
 * overflowed half a MiB of stack (a libcnode process has 1 MiB, shared; ASan
 * builds overflowed that too). Sections and partials open at once are now
 * bounded (MAX_NEST), so the render fits in 256 KiB. */
static void *render_deep(void *arg)
{
    tpl_set_t *set = arg;
    tv_t *ctx = tv_map();
    tv_map_bool(ctx, "t", true);
    buf_t out = BUF_INIT;
    tpl_render(set, "deep", ctx, &out);
    tpl_render(set, "inv", ctx, &out);
    buf_free(&out);
    tv_free(ctx);
    return NULL;
}

TEST(nesting_fits_a_small_stack)
{
    tpl_set_t *set = tpl_set_new();
    char err[200];
    buf_t src = BUF_INIT;
    for (int i = 0; i < 63; i++)
        buf_puts(&src, "{{#t}}");
    buf_puts(&src, "{{>deep}}");
    for (int i = 0; i < 63; i++)
        buf_puts(&src, "{{/t}}");
    ASSERT_EQ(tpl_set_add(set, "deep", src.data, src.len, err, sizeof(err)), 0);
    buf_reset(&src);
    for (int i = 0; i < 63; i++)
        buf_puts(&src, "{{^f}}");
    buf_puts(&src, "{{>inv}}");
    for (int i = 0; i < 63; i++)
        buf_puts(&src, "{{/f}}");
    ASSERT_EQ(tpl_set_add(set, "inv", src.data, src.len, err, sizeof(err)), 0);
    pthread_attr_t a;
    pthread_t t;
    pthread_attr_init(&a);
    ASSERT_EQ(pthread_attr_setstacksize(&a, 256 << 10), 0);
    ASSERT_EQ(pthread_create(&t, &a, render_deep, set), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    pthread_attr_destroy(&a);
    buf_free(&src);
    tpl_set_free(set);
}
