/* theme_test.c - the default theme's templates compile and render the documented
 * context (themes/default/README.md) with sample data from tests/data/theme/.
 * With THEME_PREVIEW_DIR set, the rendered pages are also written there (for a
 * look in a browser or a screenshot). */
#include "test.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../../common/tpl.h"
#include "json_tv.h"

#define THEME "themes/default/templates"


static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ASSERT_NOT_NULL(f);
    buf_t b = BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    *len = b.len;
    return buf_take(&b);
}

/* Load every template of the theme; fail on any compile error. */
static tpl_set_t *load_theme(int *count)
{
    tpl_set_t *set = tpl_set_new();
    DIR *d = opendir(THEME);
    ASSERT_NOT_NULL(d);
    struct dirent *e;
    *count = 0;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 10 || strcmp(e->d_name + nl - 9, ".mustache") != 0)
            continue;
        char path[512], name[256], err[200];
        snprintf(path, sizeof(path), THEME "/%s", e->d_name);
        snprintf(name, sizeof(name), "%.*s", (int)(nl - 9), e->d_name);
        size_t len;
        char *src = slurp(path, &len);
        if (tpl_set_add(set, name, src, len, err, sizeof(err)) != 0) {
            fprintf(stderr, "%s: %s\n", path, err);
            ASSERT(0);
        }
        free(src);
        (*count)++;
    }
    closedir(d);
    return set;
}

/* common.json merged with the page's own sample. */
static tv_t *context(const char *page)
{
    json_error_t jerr;
    json_t *common = json_load_file("tests/data/theme/common.json", 0, &jerr);
    char path[256];
    snprintf(path, sizeof(path), "tests/data/theme/%s.json", page);
    json_t *own = json_load_file(path, 0, &jerr);
    ASSERT_NOT_NULL(common);
    ASSERT_NOT_NULL(own);
    json_object_update(common, own);
    tv_t *ctx = from_json(common);
    json_decref(common);
    json_decref(own);
    return ctx;
}

static char *render_page(tpl_set_t *set, const char *tpl, const char *sample)
{
    tv_t *ctx = context(sample);
    buf_t out = BUF_INIT;
    ASSERT_EQ(tpl_render(set, tpl, ctx, &out), 0);
    tv_free(ctx);
    const char *dir = getenv("THEME_PREVIEW_DIR");
    if (dir) {
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.html", dir, sample);
        FILE *f = fopen(path, "w");
        if (f) {
            fwrite(out.data, 1, out.len, f);
            fclose(f);
        }
    }
    return buf_take(&out);
}

TEST(every_template_compiles)
{
    int n;
    tpl_set_t *set = load_theme(&n);
    ASSERT_GE(n, 8);
    tpl_set_free(set);
}

TEST(list_page)
{
    int n;
    tpl_set_t *set = load_theme(&n);
    char *html = render_page(set, "list", "list");
    ASSERT(strstr(html, "<!doctype html>") == html);
    ASSERT(strstr(html, "<title>The OneBlog Journal</title>") != NULL);
    ASSERT(strstr(html, "<link rel=\"canonical\" href=\"http://127.0.0.1:8080/\">") != NULL);
    /* titles are escaped */
    ASSERT(strstr(html, "Talking to Elixir &lt;over&gt; the wire &amp; back") != NULL);
    ASSERT(strstr(html, "<over>") == NULL);
    /* authors joined with commas, the last without */
    ASSERT(strstr(html, ">Grace Hopper</a>, <a href=\"/author/ada/\">Ada Lovelace</a>\n") != NULL);
    ASSERT(strstr(html, "rel=\"next\"") != NULL);
    /* one featured card only: a card's missing keys don't leak from others */
    const char *f = strstr(html, "card--featured");
    ASSERT_NOT_NULL(f);
    ASSERT_NULL(strstr(f + 1, "card--featured"));
    ASSERT(strstr(html, "rel=\"prev\"") == NULL);
    ASSERT(strstr(html, "No posts yet.") == NULL);
    ASSERT(strstr(html, "template error") == NULL);
    ASSERT(strstr(html, "</html>") != NULL);
    free(html);
    tpl_set_free(set);
}

TEST(post_page)
{
    int n;
    tpl_set_t *set = load_theme(&n);
    char *html = render_page(set, "post", "post");
    /* the body is trusted HTML, rendered as is; JSON-LD in its script tag */
    ASSERT(strstr(html, "<h2>Shared stacks</h2>") != NULL);
    ASSERT(strstr(html, "<script type=\"application/ld+json\">{\"@context\"") != NULL);
    ASSERT(strstr(html, "property=\"og:type\" content=\"article\"") != NULL);
    ASSERT(strstr(html, "article:published_time") != NULL);
    ASSERT(strstr(html, "Read next") != NULL);
    ASSERT(strstr(html, "twitter:card\" content=\"summary\"") != NULL);
    ASSERT(strstr(html, "template error") == NULL);
    free(html);
    tpl_set_free(set);
}

TEST(error_page)
{
    int n;
    tpl_set_t *set = load_theme(&n);
    char *html = render_page(set, "error", "error");
    ASSERT(strstr(html, ">404</p>") != NULL);
    ASSERT(strstr(html, "<meta name=\"robots\" content=\"noindex\">") != NULL);
    ASSERT(strstr(html, "Latest posts") == NULL);
    free(html);
    tpl_set_free(set);
}
