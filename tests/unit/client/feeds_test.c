/* feeds_test.c - RSS, Atom, JSON Feed and sitemaps are well-formed for hostile
 * content (checked with xmllint, a real XML parser, and jansson), carry what they
 * should, and sitemaps split into an index past 50,000 URLs. */
#include "test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../../client/feeds.h"

static proto_settings_t site = {
    .title = "Site & <Co>", .description = "About \"things\"", .url = "http://127.0.0.1:8080",
    .locale = "en",
};

static proto_tag_t tags[2] = {
    { .slug = "news", .name = "News & Views" },
    { .slug = "hidden", .name = "#internal", .internal = true },
};
static proto_author_t authors[1] = { { .slug = "ada", .name = "Ada <Lovelace>" } };

static proto_post_t posts[2] = {
    { .slug = "hello-world", .title = "Hello </title> & <script>alert(1)</script>",
      .html = "<p>Body with <b>bold</b> &amp; a \x01 control char and bad \xff\xfe utf-8</p>",
      .excerpt = "Excerpt \x0b with a vertical tab", .published_at = 1795165200,
      .updated_at = 1795168800, .tags = tags, .ntags = 2, .authors = authors, .nauthors = 1 },
    { .slug = "second", .title = "Second \xe2\x9c\x93 post", .html = "<p>2</p>",
      .excerpt = "two", .published_at = 1795078800 },
};

static feed_t make_feed(void)
{
    feed_t f = { .site = &site, .title = "Site & <Co>", .description = "desc",
                 .link = "http://127.0.0.1:8080/", .self_url = "http://127.0.0.1:8080/rss/",
                 .posts = posts, .nposts = 2, .updated = 1795168800 };
    return f;
}

/* Well-formed per xmllint (exit 0); the document is kept in a temp file. */
static void assert_xml_ok(const buf_t *b)
{
    char path[] = "/tmp/feeds_test_XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, b->data, b->len), (long long)b->len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "xmllint --noout %s", path);
    int rc = system(cmd);
    unlink(path);
    ASSERT_EQ(rc, 0);
}

TEST(dates)
{
    char d[40];
    feeds_rfc822(1795165200, d);
    ASSERT_STR_EQ(d, "Fri, 20 Nov 2026 09:00:00 +0000");
    feeds_rfc3339(1795165200, d);
    ASSERT_STR_EQ(d, "2026-11-20T09:00:00Z");
}

/* feeds_rfc3339 and feeds_civil compute dates by hand: the same as gmtime_r and
 * strftime, over leap years, century rules, day ends and times before 1970. */
TEST(dates_by_hand_match_gmtime)
{
    int64_t t = -2208988800LL; /* 1900-01-01 */
    unsigned seed = 1;
    for (int i = 0; i < 200000; i++) {
        char got[40], want[40];
        time_t tt = (time_t)t;
        struct tm tm;
        gmtime_r(&tt, &tm);
        strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%SZ", &tm);
        feeds_rfc3339(t, got);
        ASSERT_STR_EQ(got, want);
        int y, m, dd, secs;
        feeds_civil(t, &y, &m, &dd, &secs);
        ASSERT_EQ(y, tm.tm_year + 1900);
        ASSERT_EQ(m, tm.tm_mon + 1);
        ASSERT_EQ(dd, tm.tm_mday);
        ASSERT_EQ(secs, tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec);
        /* steps of up to ~12 days, with odd seconds, to about 2100 */
        seed = seed * 1103515245u + 12345u;
        t += 86399 + (int64_t)(seed >> 12) % 1000000;
    }
    char d[40];
    feeds_rfc3339(253402300800LL, d); /* year 10000: strftime's way */
    ASSERT_STR_EQ(d, "10000-01-01T00:00:00Z");
}

TEST(escaping_drops_controls_and_repairs_utf8)
{
    buf_t b = BUF_INIT;
    feeds_xml_escape(&b, "a<b>&\"'\x01\t\xff\xe2\x9c\x93");
    ASSERT_STR_EQ(b.data, "a&lt;b&gt;&amp;&quot;&apos;\t\xef\xbf\xbd\xe2\x9c\x93");
    buf_reset(&b);
    /* overlong, surrogate and truncated sequences are replaced too */
    feeds_xml_escape(&b, "\xc0\xaf|\xed\xa0\x80|\xe2\x9c");
    ASSERT(strstr(b.data, "\xc0") == NULL);
    ASSERT(strstr(b.data, "\xed\xa0") == NULL);
    buf_free(&b);
}

TEST(rss)
{
    feed_t f = make_feed();
    buf_t b = BUF_INIT;
    feeds_rss(&b, &f);
    assert_xml_ok(&b);
    ASSERT(strstr(b.data, "<title>Hello &lt;/title&gt; &amp; &lt;script&gt;") != NULL);
    ASSERT(strstr(b.data, "<link>http://127.0.0.1:8080/hello-world/</link>") != NULL);
    ASSERT(strstr(b.data, "<pubDate>Fri, 20 Nov 2026 09:00:00 +0000</pubDate>") != NULL);
    ASSERT(strstr(b.data, "<category>News &amp; Views</category>") != NULL);
    ASSERT(strstr(b.data, "#internal") == NULL);
    ASSERT(strstr(b.data, "<dc:creator>Ada &lt;Lovelace&gt;</dc:creator>") != NULL);
    ASSERT(strstr(b.data, "rel=\"self\"") != NULL);
    buf_free(&b);
}

TEST(atom)
{
    feed_t f = make_feed();
    buf_t b = BUF_INIT;
    feeds_atom(&b, &f);
    assert_xml_ok(&b);
    ASSERT(strstr(b.data, "<updated>2026-11-20T10:00:00Z</updated>") != NULL);
    ASSERT(strstr(b.data, "<content type=\"html\">&lt;p&gt;Body") != NULL);
    ASSERT(strstr(b.data, "<category term=\"News &amp; Views\"/>") != NULL);
    buf_free(&b);
}

TEST(json_feed)
{
    feed_t f = make_feed();
    buf_t b = BUF_INIT;
    feeds_json(&b, &f);
    json_error_t err;
    json_t *j = json_loads(b.data, 0, &err);
    ASSERT_NOT_NULL(j);
    ASSERT_STR_EQ(json_string_value(json_object_get(j, "version")), "https://jsonfeed.org/version/1.1");
    json_t *items = json_object_get(j, "items");
    ASSERT_EQ(json_array_size(items), 2);
    json_t *first = json_array_get(items, 0);
    ASSERT_STR_EQ(json_string_value(json_object_get(first, "title")),
                  "Hello </title> & <script>alert(1)</script>");
    ASSERT_STR_EQ(json_string_value(json_object_get(first, "date_published")),
                  "2026-11-20T09:00:00Z");
    ASSERT_EQ(json_array_size(json_object_get(first, "tags")), 1);
    /* invalid UTF-8 in the body was repaired, not dropped or fatal */
    ASSERT(strstr(json_string_value(json_object_get(first, "content_html")), "\xef\xbf\xbd") != NULL);
    json_decref(j);
    buf_free(&b);
}

TEST(sitemap_splits_past_fifty_thousand)
{
    int n = 60000;
    proto_sitemap_entry_t *e = calloc((size_t)n, sizeof(*e));
    char (*paths)[32] = calloc((size_t)n, 32);
    for (int i = 0; i < n; i++) {
        snprintf(paths[i], 32, "/post-%d/", i);
        e[i].path = paths[i];
        e[i].lastmod = 1795165200;
        e[i].kind = "post";
    }
    ASSERT_EQ(feeds_sitemap_pages(10), 1);
    ASSERT_EQ(feeds_sitemap_pages(50000), 1);
    ASSERT_EQ(feeds_sitemap_pages(n), 2);
    buf_t b = BUF_INIT;
    feeds_sitemap_index(&b, "http://x", 2, 1795165200);
    assert_xml_ok(&b);
    ASSERT(strstr(b.data, "<loc>http://x/sitemap-2.xml</loc>") != NULL);
    buf_reset(&b);
    feeds_sitemap(&b, "http://x", e, n, 2);
    assert_xml_ok(&b);
    ASSERT(strstr(b.data, "<loc>http://x/post-50000/</loc>") != NULL);
    ASSERT(strstr(b.data, "<loc>http://x/post-49999/</loc>") == NULL);
    ASSERT(strstr(b.data, "<loc>http://x/post-59999/</loc><lastmod>2026-11-20T09:00:00Z</lastmod>") != NULL);
    buf_reset(&b);
    feeds_sitemap(&b, "http://x", e, 3, 1);
    assert_xml_ok(&b);
    buf_free(&b);
    free(e);
    free(paths);
}
