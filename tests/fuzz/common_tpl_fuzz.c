/* common_tpl_fuzz.c - libFuzzer target for the Mustache engine (common/tpl.c):
 * the compiler on any template source (tags, set-delimiter tags, the standalone
 * rule, section nesting) and the renderer on what compiles (name lookup, dotted
 * names and list indexes, sections over lists and maps, partials, indentation of
 * standalone partials, recursion).
 *
 * The input is up to four templates separated by NUL bytes, named "main", "a",
 * "b" and "c", so that each can use the others (and itself) as partials; "main"
 * and "a" are rendered with a small fixed context that has every kind of value,
 * on a thread with a 1 MiB stack (a libcnode process's), so deep recursion shows
 * as a stack overflow. Nothing may crash, leak, read out of bounds or run away
 * (libFuzzer's -timeout and -rss_limit_mb catch blow-ups). Seeds:
 * tests/fuzz/corpus/common_tpl_fuzz/. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tpl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tv_t *ctx;

/* {s, html, n, neg, d, t, f, e, z, l: [{x, l: [1, 2]}, {x}], el: [], m: {a: {b}}} */
static tv_t *make_ctx(void)
{
    tv_t *root = tv_map();
    tv_map_str(root, "s", "text");
    tv_map_str(root, "html", "<b>&\"'</b>");
    tv_map_int(root, "n", 42);
    tv_map_int(root, "neg", -9223372036854775807LL - 1);
    tv_map_set(root, "d", tv_double(1.5));
    tv_map_bool(root, "t", true);
    tv_map_bool(root, "f", false);
    tv_map_str(root, "e", "");
    tv_map_set(root, "z", tv_null());
    tv_t *l = tv_list();
    for (int i = 0; i < 2; i++) {
        tv_t *item = tv_map();
        tv_map_str(item, "x", i ? "two" : "one");
        if (i == 0) {
            tv_t *inner = tv_list();
            tv_list_add(inner, tv_int(1));
            tv_list_add(inner, tv_int(2));
            tv_map_set(item, "l", inner);
        }
        tv_list_add(l, item);
    }
    tv_map_set(root, "l", l);
    tv_map_set(root, "el", tv_list());
    tv_t *b = tv_map();
    tv_map_str(b, "b", "deep");
    tv_t *m = tv_map();
    tv_map_set(m, "a", b);
    tv_map_set(root, "m", m);
    return root;
}

static const char *const names[] = { "main", "a", "b", "c" };

static void *render_all(void *arg)
{
    tpl_set_t *set = arg;
    for (int i = 0; i < 2; i++) {
        buf_t out = BUF_INIT;
        tpl_render(set, names[i], ctx, &out);
        buf_free(&out);
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static pthread_attr_t attr;
    if (ctx == NULL) {
        ctx = make_ctx(); /* kept for the process: read only */
        pthread_attr_init(&attr);
        pthread_attr_setstacksize(&attr, 1 << 20);
    }
    tpl_set_t *set = tpl_set_new();
    /* a smaller budget than a page's, so that the runaway templates the fuzzer
     * soon finds (and keeps) cost milliseconds, not a tenth of a second */
    tpl_set_limits(set, 1 << 14, 1 << 20);
    const char *p = (const char *)data, *end = p + size;
    for (int i = 0; i < 4 && p <= end; i++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        size_t n = nul ? (size_t)(nul - p) : (size_t)(end - p);
        /* its own allocation: ASan sees a read past the template's end */
        char *src = malloc(n ? n : 1);
        char err[200];
        if (src == NULL)
            break;
        memcpy(src, p, n);
        tpl_set_add(set, names[i], src, n, err, sizeof(err));
        free(src);
        if (nul == NULL)
            break;
        p = nul + 1;
    }
    pthread_t t;
    if (pthread_create(&t, &attr, render_all, set) != 0 || pthread_join(t, NULL) != 0)
        abort();
    tpl_set_free(set);
    return 0;
}
