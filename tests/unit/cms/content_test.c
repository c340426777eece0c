/* content_test.c - slugs, roles, validation messages. */
#include "test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "content.h"

TEST(slugify)
{
    struct {
        const char *in, *out;
    } cases[] = {
        { "Hello, World!", "hello-world" },
        { "  Leading and trailing  ", "leading-and-trailing" },
        { "Don't Panic", "dont-panic" },
        { "#internal", "hash-internal" },
        { "C++ & Rust -- 2024", "c-rust-2024" },
        { "Café crème", "café-crème" },
        { "!!!", "untitled" },
        { "", "untitled" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = cms_slugify(cases[i].in);
        ASSERT_STR_EQ(s, cases[i].out);
        ASSERT(cms_slug_valid(s));
        free(s);
    }
    char big[600];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    char *s = cms_slugify(big);
    ASSERT_EQ(strlen(s), PROTO_SLUG_MAX);
    free(s);
}

TEST(slug_validity)
{
    ASSERT(cms_slug_valid("a-b-c"));
    ASSERT(!cms_slug_valid("-a"));
    ASSERT(!cms_slug_valid("a-"));
    ASSERT(!cms_slug_valid("A"));
    ASSERT(!cms_slug_valid("a b"));
    ASSERT(!cms_slug_valid("a/b"));
    ASSERT(!cms_slug_valid("a\xff"));
    ASSERT(!cms_slug_valid(""));
}

TEST(roles)
{
    cms_role_t r;
    ASSERT_EQ(cms_role_parse("editor", &r), 0);
    ASSERT_EQ(r, CMS_ROLE_EDITOR);
    ASSERT_EQ(cms_role_parse("root", &r), -EINVAL);
    ASSERT(cms_role_allows_html(CMS_ROLE_EDITOR));
    ASSERT(cms_role_allows_html(CMS_ROLE_OWNER));
    ASSERT(!cms_role_allows_html(CMS_ROLE_AUTHOR));
    ASSERT(!cms_role_allows_html(CMS_ROLE_CONTRIBUTOR));
    ASSERT_STR_EQ(cms_role_name(CMS_ROLE_ADMINISTRATOR), "administrator");
}

TEST(validation_messages)
{
    char err[CMS_ERR_LEN];
    proto_post_t p = { 0 };
    ASSERT_EQ(cms_post_validate(&p, err), -EINVAL);
    ASSERT_STR_EQ(err, "title: required");
    p.title = strdup("Fine title");
    p.status = PROTO_SCHEDULED;
    ASSERT_EQ(cms_post_validate(&p, err), -EINVAL);
    ASSERT_STR_EQ(err, "published_at: required for a scheduled post");
    p.status = PROTO_DRAFT;
    ASSERT_EQ(cms_post_validate(&p, err), 0);
    ASSERT_STR_EQ(p.slug, "fine-title");
    p.type = 7;
    ASSERT_EQ(cms_post_validate(&p, err), -EINVAL);
    ASSERT_STR_EQ(err, "type: must be post or page");
    p.type = PROTO_POST;
    p.ntags = 2;
    p.tags = calloc(2, sizeof(proto_tag_t));
    p.tags[0].name = strdup("Same");
    p.tags[1].name = strdup("same");
    ASSERT_EQ(cms_post_validate(&p, err), -EINVAL);
    ASSERT_STR_EQ(err, "tags: 'same' given twice");
    proto_post_clear(&p);
}
