/* store_test.c - the content store, on whichever backend the environment picks
 * (see store_helper.h): migrations, save/load, slugs and redirects, validation
 * that loses nothing, listing, search ranking, scheduling, revisions, users,
 * settings, the sitemap and the connection pool under concurrent processes.
 */
#include "store_helper.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

/* ---- helpers ------------------------------------------------------------------- */

static void add_author(cms_store_t *s, const char *slug, const char *name)
{
    cms_user_t u = { 0 };
    char err[CMS_ERR_LEN] = "";
    u.profile.slug = xstrdup(slug);
    u.profile.name = xstrdup(name);
    u.profile.bio = xstrdup("Writes about things.");
    u.role = CMS_ROLE_AUTHOR;
    int rc = cms_user_add(s, &u, 1000, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "user_add %s: %s", slug, err);
    cms_user_clear(&u);
}

/* A post with tags (names) and author slugs, NULL-terminated lists. */
static proto_post_t make_post(const char *title, const char *md, int status,
                              const char *const *tags, const char *const *authors)
{
    proto_post_t p = { 0 };
    p.title = xstrdup(title);
    p.markdown = xstrdup(md);
    p.status = status;
    for (int i = 0; tags && tags[i]; i++) {
        p.tags = xrealloc(p.tags, (size_t)(i + 1) * sizeof(proto_tag_t));
        memset(&p.tags[i], 0, sizeof(proto_tag_t));
        p.tags[i].name = xstrdup(tags[i]);
        p.ntags = i + 1;
    }
    for (int i = 0; authors && authors[i]; i++) {
        p.authors = xrealloc(p.authors, (size_t)(i + 1) * sizeof(proto_author_t));
        memset(&p.authors[i], 0, sizeof(proto_author_t));
        p.authors[i].slug = xstrdup(authors[i]);
        p.nauthors = i + 1;
    }
    return p;
}

static int64_t save(cms_store_t *s, proto_post_t *p, int64_t now, cms_role_t role)
{
    char err[CMS_ERR_LEN] = "";
    cms_save_opts_t o = { .role = role, .now = now };
    int rc = cms_post_save(s, p, &o, NULL, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "save '%s': %d %s", p->title, rc, err);
    return p->id;
}

static int64_t count_posts(cms_store_t *s)
{
    int64_t n = -1;
    ASSERT_EQ(cms_post_count_all(s, &n), 0);
    return n;
}

/* ---- migrations ---------------------------------------------------------------- */

static void sc_migrate(cms_store_t *s, void *arg)
{
    (void)arg;
    int from = -1, to = -1;
    char err[CMS_ERR_LEN];
    /* run_store migrated already: a second run finds nothing to do. */
    ASSERT_EQ(cms_store_migrate(s, &from, &to, err), 0);
    ASSERT_EQ(from, cms_store_latest_version(s));
    ASSERT_EQ(to, cms_store_latest_version(s));
    ASSERT_GE(cms_store_latest_version(s), 2);
    int64_t v = -1;
    ASSERT_EQ(cms_content_version(s, &v), 0);
    ASSERT_EQ(v, 0);
    ASSERT_EQ(count_posts(s), 0);
    ASSERT_STR_EQ(cms_store_backend(s)->name, helper_backend());
}
TEST(migrations_apply_once) { run_store(sc_migrate, NULL); }

/* ---- save and load ------------------------------------------------------------- */

static void sc_roundtrip(cms_store_t *s, void *arg)
{
    (void)arg;
    const char *tags[] = { "Databases", "C", "#newsletter", NULL };
    const char *authors[] = { "alice", "bob", NULL };
    add_author(s, "alice", "Alice Liddell");
    add_author(s, "bob", "Bob Builder");
    proto_post_t p = make_post("Hello, World: a first post!",
                               "# Heading\n\nSome *emphasis* and `code`.\n\n- one\n- two\n",
                               PROTO_DRAFT, tags, authors);
    p.custom_excerpt = xstrdup("A short summary.");
    p.feature_image = xstrdup("https://example.com/img.jpg");
    p.feature_image_alt = xstrdup("A picture");
    p.feature_image_caption = xstrdup("Photo by someone");
    p.meta_title = xstrdup("Meta title");
    p.og_title = xstrdup("OG title");
    p.canonical_url = xstrdup("https://example.com/canonical");
    p.featured = true;
    int64_t id = save(s, &p, 5000, CMS_ROLE_EDITOR);
    ASSERT_GT(id, 0);
    ASSERT_STR_EQ(p.slug, "hello-world-a-first-post");
    ASSERT_NOT_NULL(p.preview_token);

    proto_post_t g = { 0 };
    char err[CMS_ERR_LEN];
    ASSERT_EQ(cms_post_get(s, id, &g, err), 0);
    ASSERT_STR_EQ(g.title, "Hello, World: a first post!");
    ASSERT_NOT_NULL(strstr(g.html, "<h1>Heading</h1>"));
    ASSERT_NOT_NULL(strstr(g.html, "<em>emphasis</em>"));
    ASSERT_NOT_NULL(strstr(g.plaintext, "Some emphasis and code."));
    ASSERT_NULL(strstr(g.plaintext, "<"));
    ASSERT_STR_EQ(g.excerpt, "A short summary.");
    ASSERT_STR_EQ(g.feature_image_alt, "A picture");
    ASSERT_STR_EQ(g.feature_image_caption, "Photo by someone");
    ASSERT_STR_EQ(g.canonical_url, "https://example.com/canonical");
    ASSERT_STR_EQ(g.og_title, "OG title");
    ASSERT(g.featured);
    ASSERT_EQ(g.status, PROTO_DRAFT);
    ASSERT_EQ(g.created_at, 5000);
    ASSERT_EQ(g.ntags, 3);
    ASSERT_STR_EQ(g.tags[0].slug, "databases"); /* the primary tag comes first */
    ASSERT_STR_EQ(g.tags[1].slug, "c");
    ASSERT_STR_EQ(g.tags[2].slug, "hash-newsletter");
    ASSERT(g.tags[2].internal);
    ASSERT(!g.tags[0].internal);
    ASSERT_EQ(g.nauthors, 2);
    ASSERT_STR_EQ(g.authors[0].slug, "alice");
    ASSERT_STR_EQ(g.authors[1].name, "Bob Builder");
    ASSERT_EQ(g.reading_time, 1);

    /* A draft is invisible to readers; publishing makes it visible. */
    proto_post_t f = { 0 };
    char *redirect = NULL;
    ASSERT_EQ(cms_post_find(s, PROTO_POST, p.slug, &f, &redirect, err), -ENOENT);
    cms_change_t chg = { 0 };
    ASSERT_EQ(cms_post_publish(s, id, 6000, &chg, err), 0);
    ASSERT(chg.visible);
    ASSERT_EQ(chg.version, 1);
    bool has_tag_path = false, has_internal = false;
    for (int i = 0; i < chg.npaths; i++) {
        has_tag_path |= strcmp(chg.paths[i], "/tag/databases/") == 0;
        has_internal |= strstr(chg.paths[i], "newsletter") != NULL;
    }
    ASSERT(has_tag_path);
    ASSERT(!has_internal);
    cms_change_clear(&chg);
    ASSERT_EQ(cms_post_find(s, PROTO_POST, p.slug, &f, &redirect, err), 0);
    ASSERT_EQ(f.published_at, 6000);
    ASSERT_EQ(f.status, PROTO_PUBLISHED);
    /* Pages and posts are looked up separately. */
    proto_post_t none = { 0 };
    ASSERT_EQ(cms_post_find(s, PROTO_PAGE, p.slug, &none, &redirect, err), -ENOENT);

    /* The preview token finds it whatever its status. */
    proto_post_t pv = { 0 };
    ASSERT_EQ(cms_post_by_preview(s, p.preview_token, &pv, err), 0);
    ASSERT_EQ(pv.id, id);

    /* Tags: the internal one is hidden from readers. */
    proto_tag_t t = { 0 };
    ASSERT_EQ(cms_tag_get(s, "databases", false, &t, err), 0);
    ASSERT_EQ(t.post_count, 1);
    proto_tag_clear(&t);
    ASSERT_EQ(cms_tag_get(s, "hash-newsletter", false, &t, err), -ENOENT);
    ASSERT_EQ(cms_tag_get(s, "hash-newsletter", true, &t, err), 0);
    proto_tag_clear(&t);
    proto_tag_t *tv;
    int nt;
    ASSERT_EQ(cms_tag_list(s, false, &tv, &nt, err), 0);
    ASSERT_EQ(nt, 2);
    cms_tags_free(tv, nt);
    proto_author_t a = { 0 };
    ASSERT_EQ(cms_author_get(s, "bob", &a, err), 0);
    ASSERT_EQ(a.post_count, 1);
    ASSERT_STR_EQ(a.bio, "Writes about things.");
    proto_author_clear(&a);

    proto_post_clear(&p);
    proto_post_clear(&g);
    proto_post_clear(&f);
    proto_post_clear(&pv);
}
TEST(post_roundtrip_tags_authors_publish) { run_store(sc_roundtrip, NULL); }

/* ---- slugs --------------------------------------------------------------------- */

static void sc_slugs(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    proto_post_t a = make_post("Same", "first body", PROTO_PUBLISHED, NULL, NULL);
    save(s, &a, 100, CMS_ROLE_EDITOR);
    proto_post_t b = make_post("Same", "second body", PROTO_PUBLISHED, NULL, NULL);
    cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = 200 };
    ASSERT_EQ(cms_post_save(s, &b, &o, NULL, err), -EEXIST);
    ASSERT_NOT_NULL(strstr(err, "slug: 'same' is already used"));
    ASSERT_EQ(count_posts(s), 1);
    /* The first is untouched. */
    proto_post_t g = { 0 };
    char *redirect = NULL;
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "same", &g, &redirect, err), 0);
    ASSERT_STR_EQ(g.markdown, "first body");
    proto_post_clear(&g);

    /* Renaming keeps the old slug as a redirect. */
    free(a.slug);
    a.slug = xstrdup("renamed");
    save(s, &a, 300, CMS_ROLE_EDITOR);
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "same", &g, &redirect, err), -EAGAIN);
    ASSERT_STR_EQ(redirect, "renamed");
    free(redirect);
    redirect = NULL;
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "renamed", &g, &redirect, err), 0);
    proto_post_clear(&g);

    /* Now "same" is free for a new post, which wins over the redirect. */
    b.id = 0;
    save(s, &b, 400, CMS_ROLE_EDITOR);
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "same", &g, &redirect, err), 0);
    ASSERT_STR_EQ(g.markdown, "second body");
    ASSERT_NULL(redirect);
    proto_post_clear(&g);

    /* An invalid explicit slug is refused with the field named. */
    proto_post_t c = make_post("Bad slug", "x", PROTO_DRAFT, NULL, NULL);
    c.slug = xstrdup("Not A Slug!");
    ASSERT_EQ(cms_post_save(s, &c, &o, NULL, err), -EINVAL);
    ASSERT_NOT_NULL(strstr(err, "slug"));
    ASSERT_EQ(count_posts(s), 2);
    proto_post_clear(&a);
    proto_post_clear(&b);
    proto_post_clear(&c);
}
TEST(duplicate_slugs_and_redirects) { run_store(sc_slugs, NULL); }

/* ---- hostile input ------------------------------------------------------------- */

static void sc_hostile(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    cms_save_opts_t o = { .role = CMS_ROLE_AUTHOR, .now = 100 };

    /* SQL metacharacters are data. */
    const char *evil = "Robert'); DROP TABLE posts;-- \"quoted\" \\ % _ ?1 $1";
    proto_post_t a = make_post(evil, "body with ' and \" and ; and --", PROTO_PUBLISHED, NULL,
                               NULL);
    ASSERT_EQ(cms_post_save(s, &a, &o, NULL, err), 0);
    proto_post_t g = { 0 };
    ASSERT_EQ(cms_post_get(s, a.id, &g, err), 0);
    ASSERT_STR_EQ(g.title, evil);
    ASSERT_STR_EQ(g.markdown, "body with ' and \" and ; and --");
    proto_post_clear(&g);

    /* A script tag in a title is stored as text (escaping is the renderer's job)
     * and in an author's body it is escaped. */
    proto_post_t b = make_post("<script>alert(1)</script>", "<script>alert(2)</script>",
                               PROTO_DRAFT, NULL, NULL);
    ASSERT_EQ(cms_post_save(s, &b, &o, NULL, err), 0);
    ASSERT_EQ(cms_post_get(s, b.id, &g, err), 0);
    ASSERT_STR_EQ(g.title, "<script>alert(1)</script>");
    ASSERT_STR_EQ(g.slug, "script-alert-1-script");
    ASSERT_NULL(strstr(g.html, "<script>"));
    ASSERT_NOT_NULL(strstr(g.html, "&lt;script&gt;"));
    proto_post_clear(&g);

    /* Invalid UTF-8, anywhere, is refused and names the field. */
    proto_post_t c = make_post("bad \xff\xfe title", "x", PROTO_DRAFT, NULL, NULL);
    ASSERT_EQ(cms_post_save(s, &c, &o, NULL, err), -EINVAL);
    ASSERT_STR_EQ(err, "title: not valid UTF-8");
    proto_post_t d = make_post("fine", "overlong \xc0\xaf slash", PROTO_DRAFT, NULL, NULL);
    ASSERT_EQ(cms_post_save(s, &d, &o, NULL, err), -EINVAL);
    ASSERT_STR_EQ(err, "markdown: not valid UTF-8");
    const char *badtag[] = { "ok", "\xed\xa0\x80surrogate", NULL };
    proto_post_t e = make_post("fine", "x", PROTO_DRAFT, badtag, NULL);
    ASSERT_EQ(cms_post_save(s, &e, &o, NULL, err), -EINVAL);
    ASSERT_STR_EQ(err, "tag name: not valid UTF-8");

    /* Oversized fields. */
    char big[400];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    proto_post_t f = make_post(big, "x", PROTO_DRAFT, NULL, NULL);
    ASSERT_EQ(cms_post_save(s, &f, &o, NULL, err), -EINVAL);
    ASSERT_STR_EQ(err, "title: 399 bytes, at most 255");
    proto_post_t h = make_post("fine", "x", PROTO_DRAFT, NULL, NULL);
    h.meta_description = xmalloc(CMS_META_DESC_MAX + 2);
    memset(h.meta_description, 'm', CMS_META_DESC_MAX + 1);
    h.meta_description[CMS_META_DESC_MAX + 1] = '\0';
    ASSERT_EQ(cms_post_save(s, &h, &o, NULL, err), -EINVAL);
    ASSERT_NOT_NULL(strstr(err, "meta_description: 501 bytes"));
    proto_post_t k = make_post("", "x", PROTO_DRAFT, NULL, NULL);
    ASSERT_EQ(cms_post_save(s, &k, &o, NULL, err), -EINVAL);
    ASSERT_STR_EQ(err, "title: required");

    /* An unknown author fails the whole save: no half-written post. */
    const char *nobody[] = { "nobody", NULL };
    const char *tg[] = { "fresh-tag", NULL };
    proto_post_t m = make_post("Orphan", "x", PROTO_PUBLISHED, tg, nobody);
    ASSERT_EQ(cms_post_save(s, &m, &o, NULL, err), -ENOENT);
    ASSERT_STR_EQ(err, "authors: no author with slug 'nobody'");
    proto_tag_t t = { 0 };
    ASSERT_EQ(cms_tag_get(s, "fresh-tag", true, &t, err), -ENOENT);

    /* Nothing of the above was lost or half-stored. */
    ASSERT_EQ(count_posts(s), 2);
    int64_t v = 0;
    ASSERT_EQ(cms_content_version(s, &v), 0);
    ASSERT_EQ(v, 1); /* only the published save of `a` */
    proto_post_t *pv[] = { &a, &b, &c, &d, &e, &f, &h, &k, &m };
    for (size_t i = 0; i < sizeof pv / sizeof pv[0]; i++)
        proto_post_clear(pv[i]);
}
TEST(hostile_input_clear_errors_nothing_lost) { run_store(sc_hostile, NULL); }

/* ---- listing ------------------------------------------------------------------- */

static void sc_list(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    add_author(s, "alice", "Alice");
    add_author(s, "bob", "Bob");
    const char *even[] = { "even", "all", NULL }, *odd[] = { "odd", "all", NULL };
    const char *al[] = { "alice", NULL }, *bo[] = { "bob", NULL };
    for (int i = 0; i < 25; i++) {
        char title[32];
        snprintf(title, sizeof title, "Post %02d", i);
        proto_post_t p = make_post(title, "text", PROTO_PUBLISHED, i % 2 ? odd : even,
                                   i % 5 == 0 ? bo : al);
        p.published_at = 1000 + i;
        p.featured = i % 10 == 0;
        save(s, &p, 2000, CMS_ROLE_EDITOR);
        proto_post_clear(&p);
    }
    proto_post_t d = make_post("A draft", "text", PROTO_DRAFT, even, al);
    save(s, &d, 2000, CMS_ROLE_EDITOR);
    proto_post_t pg = make_post("About", "about us", PROTO_PUBLISHED, NULL, NULL);
    pg.type = PROTO_PAGE;
    save(s, &pg, 2000, CMS_ROLE_EDITOR);

    proto_post_t *v;
    int n;
    int64_t total;
    cms_list_q_t q = { .page = 1, .per_page = 10, .featured = -1, .status = -1 };
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(n, 10);
    ASSERT_EQ(total, 25);
    ASSERT_STR_EQ(v[0].title, "Post 24"); /* newest first */
    ASSERT_STR_EQ(v[9].title, "Post 15");
    ASSERT_EQ(v[0].ntags, 2);
    proto_posts_free(v, n);
    q.page = 3;
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(n, 5);
    ASSERT_STR_EQ(v[4].title, "Post 00");
    proto_posts_free(v, n);
    q.page = 4;
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(n, 0);
    ASSERT_EQ(total, 25);
    proto_posts_free(v, n);

    q = (cms_list_q_t){ .page = 1, .per_page = 100, .tag = "odd", .featured = -1, .status = -1 };
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(total, 12);
    proto_posts_free(v, n);
    q.tag = NULL;
    q.author = "bob";
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(total, 5);
    proto_posts_free(v, n);
    q.author = NULL;
    q.featured = 1;
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(total, 3);
    proto_posts_free(v, n);
    q.featured = -1;
    q.tag = "all";
    q.author = "alice";
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(total, 20);
    proto_posts_free(v, n);
    q = (cms_list_q_t){ .page = 1, .per_page = 10, .featured = -1, .pages = true, .status = -1 };
    ASSERT_EQ(cms_post_list(s, &q, &v, &n, &total, err), 0);
    ASSERT_EQ(total, 1);
    ASSERT_STR_EQ(v[0].slug, "about");
    proto_posts_free(v, n);

    /* get_many keeps the order asked and skips unknown and unpublished ids. */
    int64_t ids[] = { 5, 999, d.id, 2, 5 };
    ASSERT_EQ(cms_post_get_many(s, ids, 5, &v, &n, err), 0);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(v[0].id, 5);
    ASSERT_EQ(v[1].id, 2);
    proto_posts_free(v, n);

    proto_sitemap_entry_t *sm;
    int ns;
    ASSERT_EQ(cms_sitemap(s, &sm, &ns, err), 0);
    ASSERT_EQ(ns, 26 + 3 + 2); /* 25 posts + 1 page, tags even/odd/all, 2 authors */
    bool about = false;
    for (int i = 0; i < ns; i++)
        about |= strcmp(sm[i].path, "/about/") == 0 && strcmp(sm[i].kind, "page") == 0;
    ASSERT(about);
    cms_sitemap_free(sm, ns);
    proto_post_clear(&d);
    proto_post_clear(&pg);
}
TEST(list_pagination_and_filters) { run_store(sc_list, NULL); }

/* ---- search -------------------------------------------------------------------- */

static void sc_search(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    proto_post_t a = make_post("Running PostgreSQL in production",
                               "Notes on backups and vacuum.", PROTO_PUBLISHED, NULL, NULL);
    proto_post_t b = make_post("Weekend notes",
                               "We tried postgresql for the first time, and sqlite too.",
                               PROTO_PUBLISHED, NULL, NULL);
    proto_post_t c = make_post("Gardening", "Tomatoes and basil.", PROTO_PUBLISHED, NULL, NULL);
    proto_post_t d = make_post("PostgreSQL draft", "postgresql postgresql", PROTO_DRAFT, NULL,
                               NULL);
    save(s, &b, 100, CMS_ROLE_EDITOR); /* saved first, so not ranked first by date */
    save(s, &a, 100, CMS_ROLE_EDITOR);
    save(s, &c, 100, CMS_ROLE_EDITOR);
    save(s, &d, 100, CMS_ROLE_EDITOR);

    proto_post_t *v;
    int n;
    int64_t total;
    ASSERT_EQ(cms_post_search(s, "postgresql", 1, 10, &v, &n, &total, err), 0);
    ASSERT_EQ(total, 2);
    ASSERT_EQ(n, 2);
    ASSERT_EQ(v[0].id, a.id); /* in the title ranks above in the body */
    ASSERT_EQ(v[1].id, b.id);
    proto_posts_free(v, n);
    /* Stemming and case: "Tomato" finds "Tomatoes". */
    ASSERT_EQ(cms_post_search(s, "TOMATO", 1, 10, &v, &n, &total, err), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(v[0].id, c.id);
    proto_posts_free(v, n);
    /* All words must match. */
    ASSERT_EQ(cms_post_search(s, "postgresql sqlite", 1, 10, &v, &n, &total, err), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(v[0].id, b.id);
    proto_posts_free(v, n);
    /* Query syntax of either database is just text. */
    const char *weird[] = { "\"unbalanced", "postgresql OR NEAR(a b)", "* - ^ : ( ) ' ;",
                            "a' OR '1'='1", "" };
    for (size_t i = 0; i < sizeof weird / sizeof weird[0]; i++) {
        int rc = cms_post_search(s, weird[i], 1, 10, &v, &n, &total, err);
        if (rc != 0)
            test__fail(__FILE__, __LINE__, "search '%s': %d %s", weird[i], rc, err);
        proto_posts_free(v, n);
    }
    proto_post_clear(&a);
    proto_post_clear(&b);
    proto_post_clear(&c);
    proto_post_clear(&d);
}
TEST(search_ranks_titles_above_bodies) { run_store(sc_search, NULL); }

/* ---- scheduling ---------------------------------------------------------------- */

static void sc_schedule(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    int published = -1;
    int64_t at = 0, v0 = 0, v1 = 0;
    proto_post_t p = make_post("Later", "soon", PROTO_DRAFT, NULL, NULL);
    save(s, &p, 1000, CMS_ROLE_EDITOR);
    ASSERT_EQ(cms_post_next_due(s, &at), -ENOENT);
    ASSERT_EQ(cms_post_schedule(s, p.id, 900, 1000, NULL, err), -EINVAL); /* the past */
    ASSERT_EQ(cms_post_schedule(s, p.id, 1100, 1000, NULL, err), 0);
    ASSERT_EQ(cms_post_next_due(s, &at), 0);
    ASSERT_EQ(at, 1100);
    ASSERT_EQ(cms_content_version(s, &v0), 0);

    cms_change_t chg = { 0 };
    ASSERT_EQ(cms_post_publish_due(s, 1050, &published, &chg, err), 0);
    ASSERT_EQ(published, 0);
    ASSERT(!chg.visible);
    ASSERT_EQ(cms_post_publish_due(s, 1100, &published, &chg, err), 0);
    ASSERT_EQ(published, 1);
    ASSERT(chg.visible);
    ASSERT_EQ(chg.npaths > 0, 1);
    cms_change_clear(&chg);
    ASSERT_EQ(cms_post_publish_due(s, 1200, &published, &chg, err), 0);
    ASSERT_EQ(published, 0);
    ASSERT_EQ(cms_content_version(s, &v1), 0);
    ASSERT_EQ(v1, v0 + 1);
    proto_post_t g = { 0 };
    ASSERT_EQ(cms_post_get(s, p.id, &g, err), 0);
    ASSERT_EQ(g.status, PROTO_PUBLISHED);
    ASSERT_EQ(g.published_at, 1100);
    proto_post_clear(&g);

    /* Saving as published with a future date schedules. */
    proto_post_t f = make_post("Future", "x", PROTO_PUBLISHED, NULL, NULL);
    f.published_at = 5000;
    save(s, &f, 1000, CMS_ROLE_EDITOR);
    ASSERT_EQ(f.status, PROTO_SCHEDULED);
    ASSERT_EQ(cms_post_next_due(s, &at), 0);
    ASSERT_EQ(at, 5000);
    /* Unpublish takes a published post back to draft. */
    ASSERT_EQ(cms_post_unpublish(s, p.id, 1300, &chg, err), 0);
    ASSERT(chg.visible);
    cms_change_clear(&chg);
    char *redirect = NULL;
    ASSERT_EQ(cms_post_find(s, PROTO_POST, "later", &g, &redirect, err), -ENOENT);
    /* Delete. */
    ASSERT_EQ(cms_post_delete(s, f.id, &chg, err), 0);
    ASSERT(!chg.visible); /* it was never public */
    ASSERT_EQ(cms_post_get(s, f.id, &g, err), -ENOENT);
    ASSERT_EQ(cms_post_delete(s, f.id, &chg, err), -ENOENT);
    proto_post_clear(&p);
    proto_post_clear(&f);
}
TEST(schedule_publishes_exactly_once) { run_store(sc_schedule, NULL); }

/* ---- revisions ----------------------------------------------------------------- */

static void sc_revisions(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    proto_post_t p = make_post("Draft one", "version one", PROTO_DRAFT, NULL, NULL);
    save(s, &p, 100, CMS_ROLE_EDITOR);
    free(p.markdown);
    p.markdown = xstrdup("version two");
    save(s, &p, 200, CMS_ROLE_EDITOR);
    free(p.markdown);
    free(p.title);
    p.markdown = xstrdup("version three");
    p.title = xstrdup("Draft three");
    save(s, &p, 300, CMS_ROLE_EDITOR);

    cms_revision_t *rv;
    int n;
    ASSERT_EQ(cms_revision_list(s, p.id, &rv, &n, err), 0);
    ASSERT_EQ(n, 3);
    ASSERT_STR_EQ(rv[0].markdown, "version three");
    ASSERT_STR_EQ(rv[2].markdown, "version one");
    int64_t first = rv[2].id;
    cms_revisions_free(rv, n);

    cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = 400 };
    ASSERT_EQ(cms_revision_restore(s, p.id, first, &o, NULL, err), 0);
    proto_post_t g = { 0 };
    ASSERT_EQ(cms_post_get(s, p.id, &g, err), 0);
    ASSERT_STR_EQ(g.markdown, "version one");
    ASSERT_STR_EQ(g.title, "Draft one");
    ASSERT_NOT_NULL(strstr(g.html, "version one"));
    proto_post_clear(&g);
    ASSERT_EQ(cms_revision_list(s, p.id, &rv, &n, err), 0);
    ASSERT_EQ(n, 4);
    ASSERT_NOT_NULL(strstr(rv[0].reason, "restore"));
    cms_revisions_free(rv, n);
    ASSERT_EQ(cms_revision_restore(s, p.id, 9999, &o, NULL, err), -ENOENT);
    proto_post_clear(&p);
}
TEST(revisions_kept_and_restorable) { run_store(sc_revisions, NULL); }

/* ---- users, keys, settings ---------------------------------------------------- */

static void sc_users_settings(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    cms_user_t u = { 0 };
    u.profile.name = xstrdup("Olivia Owner");
    u.email = xstrdup("owner@example.com");
    u.password_hash = xstrdup("$argon2id$v=19$m=65536,t=2,p=1$c2FsdA$aGFzaA");
    u.role = CMS_ROLE_OWNER;
    ASSERT_EQ(cms_user_add(s, &u, 100, err), 0);
    ASSERT_STR_EQ(u.profile.slug, "olivia-owner");
    cms_user_t dup = { 0 };
    dup.profile.name = xstrdup("Other");
    dup.email = xstrdup("owner@example.com");
    ASSERT_EQ(cms_user_add(s, &dup, 100, err), -EEXIST);
    cms_user_t got = { 0 };
    ASSERT_EQ(cms_user_by_email(s, "owner@example.com", &got, err), 0);
    ASSERT_EQ(got.role, CMS_ROLE_OWNER);
    ASSERT_STR_EQ(got.password_hash, u.password_hash);
    int64_t n = 0, kid = 0;
    ASSERT_EQ(cms_user_count(s, &n), 0);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(cms_apikey_add(s, "client", "content", "hash", u.id, 100, &kid, err), 0);
    ASSERT_GT(kid, 0);
    ASSERT_EQ(cms_apikey_add(s, "x", "root", "hash", u.id, 100, &kid, err), -EINVAL);

    proto_settings_t st = { 0 };
    ASSERT_EQ(cms_settings_get(s, &st, err), 0);
    ASSERT_STR_EQ(st.title, "OneBlog");
    ASSERT_EQ(st.posts_per_page, 10);
    ASSERT_EQ(st.nnavigation, 2);
    ASSERT_STR_EQ(st.navigation[1].url, "/about/");
    proto_settings_clear(&st);
    cms_change_t chg = { 0 };
    ASSERT_EQ(cms_settings_set(s, "title", "My 'Blog'; --", &chg, err), 0);
    ASSERT(chg.visible);
    cms_change_clear(&chg);
    ASSERT_EQ(cms_settings_set(s, "posts_per_page", "500", NULL, err), -EINVAL);
    ASSERT_EQ(cms_settings_set(s, "navigation", "{not json", NULL, err), -EINVAL);
    ASSERT_EQ(cms_settings_set(s, "colour", "red", NULL, err), -EINVAL);
    ASSERT_STR_EQ(err, "settings: unknown key 'colour'");
    ASSERT_EQ(cms_settings_get(s, &st, err), 0);
    ASSERT_STR_EQ(st.title, "My 'Blog'; --");
    proto_settings_clear(&st);
    cms_user_clear(&u);
    cms_user_clear(&dup);
    cms_user_clear(&got);
}
TEST(users_keys_settings) { run_store(sc_users_settings, NULL); }

/* ---- the pool under concurrent processes -------------------------------------- */

typedef struct conc {
    cms_store_t *s;
    int done;
    int failures;
} conc_t;

static void reader(void *arg)
{
    conc_t *c = arg;
    for (int i = 0; i < 20; i++) {
        proto_post_t *v;
        int n;
        int64_t total;
        cms_list_q_t q = { .page = 1, .per_page = 5, .featured = -1, .status = -1 };
        if (cms_post_list(c->s, &q, &v, &n, &total, NULL) < 0)
            c->failures++;
        proto_posts_free(v, n);
    }
    c->done++;
}

static void writer(void *arg)
{
    conc_t *c = arg;
    static int writers;
    int w = writers++;
    for (int i = 0; i < 10; i++) {
        char title[32];
        snprintf(title, sizeof title, "Concurrent %d %d", w, i);
        proto_post_t p = make_post(title, "x", PROTO_PUBLISHED, NULL, NULL);
        cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .now = 100 + i };
        if (cms_post_save(c->s, &p, &o, NULL, NULL) < 0)
            c->failures++;
        proto_post_clear(&p);
    }
    c->done++;
}

static void sc_concurrent(cms_store_t *s, void *arg)
{
    (void)arg;
    /* Shared with other processes, so not on this process's stack. */
    conc_t *c = xcalloc(1, sizeof(*c));
    c->s = s;
    /* More processes than connections: some wait for a free one. */
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    for (int i = 0; i < 8; i++)
        ASSERT_EQ(cn_spawn(cn_node_self(), reader, c, &own, NULL), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), writer, c, &own, NULL), 0);
    ASSERT_EQ(cn_spawn(cn_node_self(), writer, c, &own, NULL), 0);
    for (int i = 0; i < 10000 && c->done < 10; i++)
        cn_sleep(5);
    ASSERT_EQ(c->done, 10);
    ASSERT_EQ(c->failures, 0);
    free(c);
    ASSERT_EQ(count_posts(s), 20);
}
TEST(pool_serves_concurrent_processes) { run_store(sc_concurrent, NULL); }
