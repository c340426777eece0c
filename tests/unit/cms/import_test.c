/* import_test.c - importing the demo folder (Markdown + YAML front matter) and a
 * small Ghost export (cms/testdata/ghost-export.json); both idempotent. Run from
 * the repository root (as make test does). */
#include "store_helper.h"

#include <errno.h>
#include <string.h>

#include "cms.h"
#include "util.h"

static void sc_demo(cms_store_t *s, void *arg)
{
    (void)arg;
    cms_import_stats_t st;
    char err[CMS_ERR_LEN] = "";
    int rc = cms_import_dir(s, "cms/demo", &st, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "import: %s", err);
    ASSERT_GE(st.posts, 24);
    ASSERT_EQ(st.pages, 1);
    ASSERT_EQ(st.authors, 4);
    /* Again: nothing new. */
    ASSERT_EQ(cms_import_dir(s, "cms/demo", &st, err), 0);
    ASSERT_EQ(st.posts + st.pages, 0);
    ASSERT_GE(st.skipped, 25);

    proto_post_t p = { 0 };
    char *redirect = NULL;
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "a-gentle-introduction-to-gen-server", &p, &redirect,
                            err), 0);
    ASSERT_EQ(p.ntags, 2);
    ASSERT_STR_EQ(p.tags[0].name, "Erlang");
    ASSERT_STR_EQ(p.authors[0].slug, "tom-okafor");
    ASSERT_STR_EQ(p.authors[0].name, "Tom Okafor");
    ASSERT_NOT_NULL(strstr(p.html, "<code class=\"language-erlang\">"));
    ASSERT_NOT_NULL(p.feature_image_alt);
    proto_post_clear(&p);
    ASSERT_EQ(cms_post_find(s, PROTO_PAGE, "about", &p, &redirect, err), 0);
    proto_post_clear(&p);
    /* The draft and the scheduled post are not public. */
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "coming-soon-comments", &p, &redirect, err), -ENOENT);
    int64_t at = 0;
    ASSERT_EQ(cms_post_next_due(s, &at), 0);
    ASSERT_GT(at, cms_time_now());
    /* An #internal tag stays internal. */
    proto_tag_t t = { 0 };
    ASSERT_EQ(cms_tag_get(s, "hash-internal", false, &t, err), -ENOENT);
}
TEST(import_demo_folder) { run_store(sc_demo, NULL); }

static void sc_ghost(cms_store_t *s, void *arg)
{
    (void)arg;
    cms_import_stats_t st;
    char err[CMS_ERR_LEN] = "";
    int rc = cms_import_ghost(s, "cms/testdata/ghost-export.json", &st, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "ghost import: %s", err);
    ASSERT_EQ(st.posts, 3);
    ASSERT_EQ(st.pages, 1);
    ASSERT_EQ(st.authors, 2);
    proto_post_t p = { 0 };
    char *redirect = NULL;
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "welcome", &p, &redirect, err), 0);
    ASSERT_STR_EQ(p.markdown, "# Welcome\n\nThis post came from **Ghost**.");
    ASSERT_NOT_NULL(strstr(p.html, "<strong>Ghost</strong>"));
    ASSERT_STR_EQ(p.custom_excerpt, "Hello from Ghost.");
    ASSERT(p.featured);
    int64_t when = 0;
    cms_time_parse("2023-11-01T10:00:00Z", &when);
    ASSERT_EQ(p.published_at, when);
    ASSERT_EQ(p.ntags, 3);
    ASSERT_STR_EQ(p.tags[0].slug, "getting-started"); /* sort_order 0 is primary */
    ASSERT_STR_EQ(p.tags[1].slug, "news");
    ASSERT(p.tags[2].internal);
    ASSERT_EQ(p.nauthors, 2);
    ASSERT_STR_EQ(p.authors[0].slug, "ghost-writer");
    ASSERT_STR_EQ(p.authors[1].slug, "second");
    proto_post_clear(&p);
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "html-only", &p, &redirect, err), 0);
    ASSERT_NOT_NULL(strstr(p.html, "<em>Koenig</em>")); /* raw HTML kept (editor import) */
    proto_post_clear(&p);
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "unfinished", &p, &redirect, err), -ENOENT);
    ASSERT_EQ(cms_post_find(s, PROTO_PAGE, "contact", &p, &redirect, err), 0);
    proto_post_clear(&p);
    cms_user_t u = { 0 };
    ASSERT_EQ(cms_user_by_email(s, "writer@example.com", &u, err), 0);
    ASSERT_STR_EQ(u.profile.bio, "Imported from Ghost.");
    cms_user_clear(&u);
    ASSERT_EQ(cms_import_ghost(s, "cms/testdata/ghost-export.json", &st, err), 0);
    ASSERT_EQ(st.posts + st.pages, 0);
    ASSERT_EQ(st.skipped, 4);
    ASSERT_EQ(cms_import_ghost(s, "cms/demo/authors.yml", &st, err), -EINVAL);
}
TEST(import_ghost_export) { run_store(sc_ghost, NULL); }
