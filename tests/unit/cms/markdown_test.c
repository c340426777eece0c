/* markdown_test.c - rendering at save: HTML kept for editors and above, escaped for
 * authors and contributors, unsafe URL schemes neutralised, plain text for search. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#include "content.h"
#include "markdown.h"

static void render(const char *md, cms_role_t role, char **html, char **text)
{
    ASSERT_EQ(cms_markdown_render(md, strlen(md), cms_role_allows_html(role), html, text), 0);
}

TEST(raw_html_by_role)
{
    const char *md = "Hello <span class=\"x\">there</span>\n\n<div>block</div>\n\n"
                     "<script>alert(1)</script>\n";
    cms_role_t roles[] = { CMS_ROLE_CONTRIBUTOR, CMS_ROLE_AUTHOR, CMS_ROLE_EDITOR,
                           CMS_ROLE_ADMINISTRATOR, CMS_ROLE_OWNER };
    for (int i = 0; i < 5; i++) {
        char *html, *text;
        render(md, roles[i], &html, &text);
        if (roles[i] >= CMS_ROLE_EDITOR) {
            ASSERT_NOT_NULL(strstr(html, "<span class=\"x\">there</span>"));
            ASSERT_NOT_NULL(strstr(html, "<div>block</div>"));
        } else {
            ASSERT_NULL(strstr(html, "<span"));
            ASSERT_NULL(strstr(html, "<script"));
            ASSERT_NULL(strstr(html, "<div"));
            ASSERT_NOT_NULL(strstr(html, "&lt;span class=&quot;x&quot;&gt;there&lt;/span&gt;"));
            ASSERT_NOT_NULL(strstr(html, "&lt;script&gt;alert(1)&lt;/script&gt;"));
        }
        /* Plain text: markup kept by editors is not text; escaped markup is. */
        if (roles[i] >= CMS_ROLE_EDITOR)
            ASSERT_NULL(strchr(text, '<'));
        else
            ASSERT_NOT_NULL(strstr(text, "<script>alert(1)</script>"));
        free(html);
        free(text);
    }
}

TEST(unsafe_link_schemes_neutralised_for_everyone)
{
    const char *md = "[click](javascript:alert(1)) and [x](JaVaScRiPt:evil) "
                     "![i](data:text/html;base64,AAAA) ![ok](data:image/png;base64,AAAA) "
                     "[fine](https://example.com/)\n";
    char *html, *text;
    render(md, CMS_ROLE_OWNER, &html, &text);
    ASSERT_NULL(strstr(html, "href=\"javascript:"));
    ASSERT_NULL(strstr(html, "href=\"JaVaScRiPt:"));
    ASSERT_NULL(strstr(html, "src=\"data:text"));
    ASSERT_NOT_NULL(strstr(html, "src=\"data:image/png"));
    ASSERT_NOT_NULL(strstr(html, "href=\"https://example.com/\""));
    free(html);
    free(text);
}

TEST(github_dialect_and_plain_text)
{
    const char *md = "# Title\n\nA *b* `c` ~~d~~ &amp; e\n\n| h1 | h2 |\n|----|----|\n| x | y |\n\n"
                     "- [x] done\n\n```c\nint main;\n```\n";
    char *html, *text;
    render(md, CMS_ROLE_AUTHOR, &html, &text);
    ASSERT_NOT_NULL(strstr(html, "<h1>Title</h1>"));
    ASSERT_NOT_NULL(strstr(html, "<del>d</del>"));
    ASSERT_NOT_NULL(strstr(html, "<table>"));
    ASSERT_NOT_NULL(strstr(html, "<code class=\"language-c\">"));
    ASSERT_NOT_NULL(strstr(text, "Title\nA b c d & e\n"));
    ASSERT_NOT_NULL(strstr(text, "int main;"));
    free(html);
    free(text);
}

TEST(derived_excerpt_and_reading_time)
{
    proto_post_t p = { 0 };
    char *words = malloc(600 * 6 + 1);
    words[0] = '\0';
    for (int i = 0; i < 600; i++)
        strcat(words, "word ");
    p.plaintext = words;
    cms_post_derive(&p);
    ASSERT_EQ(p.reading_time, 3); /* 600 words at 265 a minute, rounded up */
    ASSERT_LE(strlen(p.excerpt), CMS_EXCERPT_MAX);
    ASSERT(p.excerpt[strlen(p.excerpt) - 1] != ' ');
    p.custom_excerpt = strdup("Mine.");
    cms_post_derive(&p);
    ASSERT_STR_EQ(p.excerpt, "Mine.");
    proto_post_clear(&p);
}
