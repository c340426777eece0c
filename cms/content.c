/* content.c - validation of posts, tags and authors, slugs, derived fields. See
 * content.h. Limits are table-driven: one row per string field.
 */
#include "content.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "util.h"

/* ---- roles -------------------------------------------------------------------- */

static const char *const role_names[] = { "contributor", "author", "editor", "administrator",
                                          "owner" };

int cms_role_parse(const char *name, cms_role_t *out)
{
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, role_names[i]) == 0) {
            *out = (cms_role_t)i;
            return 0;
        }
    return -EINVAL;
}

const char *cms_role_name(cms_role_t role)
{
    return role >= CMS_ROLE_CONTRIBUTOR && role <= CMS_ROLE_OWNER ? role_names[role] : "?";
}

bool cms_role_allows_html(cms_role_t role)
{
    return role >= CMS_ROLE_EDITOR;
}

/* ---- slugs -------------------------------------------------------------------- */

bool cms_slug_valid(const char *slug)
{
    size_t n = slug ? strlen(slug) : 0;
    if (n == 0 || n > PROTO_SLUG_MAX || slug[0] == '-' || slug[n - 1] == '-')
        return false;
    if (!proto_utf8_valid(slug, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)slug[i];
        if (!(c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    return true;
}

char *cms_slugify(const char *text)
{
    buf_t b = BUF_INIT;
    bool dash = false;
    const unsigned char *s = (const unsigned char *)(text ? text : "");
    if (*s == '#') {
        buf_puts(&b, "hash-");
        s++;
    }
    for (; *s; s++) {
        unsigned char c = *s;
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c >= 0x80) {
            if (dash && b.len > 0 && b.data[b.len - 1] != '-')
                buf_putc(&b, '-');
            dash = false;
            buf_putc(&b, (char)c);
        } else if (c >= 'A' && c <= 'Z') {
            if (dash && b.len > 0 && b.data[b.len - 1] != '-')
                buf_putc(&b, '-');
            dash = false;
            buf_putc(&b, (char)(c - 'A' + 'a'));
        } else if (c == '\'') {
            /* "don't" -> "dont", as readers expect */
        } else {
            dash = true;
        }
    }
    /* Cut to the limit on a character boundary, then drop a trailing dash. */
    if (b.len > PROTO_SLUG_MAX) {
        size_t n = PROTO_SLUG_MAX;
        while (n > 0 && ((unsigned char)b.data[n] & 0xC0) == 0x80)
            n--;
        b.len = n;
        b.data[n] = '\0';
    }
    while (b.len > 0 && b.data[b.len - 1] == '-')
        b.data[--b.len] = '\0';
    if (b.len == 0 || !proto_utf8_valid(b.data, b.len)) {
        buf_free(&b);
        return cms_strdup("untitled");
    }
    return buf_take(&b);
}

/* ---- field checks ------------------------------------------------------------- */

typedef struct str_rule {
    const char *name;
    size_t off;
    size_t max;
    bool required;
} str_rule_t;

#define RULE(T, f, max, req) { #f, offsetof(T, f), max, req }

static int check_strings(const void *obj, const str_rule_t *r, int n, const char *prefix,
                         char err[CMS_ERR_LEN])
{
    for (int i = 0; i < n; i++) {
        const char *s = *(char *const *)((const char *)obj + r[i].off);
        size_t len = s ? strlen(s) : 0;
        if (r[i].required && len == 0) {
            snprintf(err, CMS_ERR_LEN, "%s%s: required", prefix, r[i].name);
            return -EINVAL;
        }
        if (s == NULL)
            continue;
        if (!proto_utf8_valid(s, len)) {
            snprintf(err, CMS_ERR_LEN, "%s%s: not valid UTF-8", prefix, r[i].name);
            return -EINVAL;
        }
        if (len > r[i].max) {
            snprintf(err, CMS_ERR_LEN, "%s%s: %zu bytes, at most %zu", prefix, r[i].name, len,
                     r[i].max);
            return -EINVAL;
        }
    }
    return 0;
}

static const str_rule_t post_rules[] = {
    RULE(proto_post_t, title, CMS_TITLE_MAX, true),
    RULE(proto_post_t, slug, PROTO_SLUG_MAX, false),
    RULE(proto_post_t, markdown, CMS_MARKDOWN_MAX, false),
    RULE(proto_post_t, custom_excerpt, CMS_EXCERPT_MAX, false),
    RULE(proto_post_t, feature_image, CMS_URL_MAX, false),
    RULE(proto_post_t, feature_image_alt, CMS_META_TITLE_MAX, false),
    RULE(proto_post_t, feature_image_caption, CMS_META_DESC_MAX, false),
    RULE(proto_post_t, meta_title, CMS_META_TITLE_MAX, false),
    RULE(proto_post_t, meta_description, CMS_META_DESC_MAX, false),
    RULE(proto_post_t, og_title, CMS_META_TITLE_MAX, false),
    RULE(proto_post_t, og_description, CMS_META_DESC_MAX, false),
    RULE(proto_post_t, og_image, CMS_URL_MAX, false),
    RULE(proto_post_t, canonical_url, CMS_URL_MAX, false),
};

static const str_rule_t tag_rules[] = {
    RULE(proto_tag_t, name, CMS_NAME_MAX, true),
    RULE(proto_tag_t, slug, PROTO_SLUG_MAX, false),
    RULE(proto_tag_t, description, CMS_META_DESC_MAX, false),
    RULE(proto_tag_t, feature_image, CMS_URL_MAX, false),
    RULE(proto_tag_t, meta_title, CMS_META_TITLE_MAX, false),
    RULE(proto_tag_t, meta_description, CMS_META_DESC_MAX, false),
};

static const str_rule_t author_rules[] = {
    RULE(proto_author_t, slug, PROTO_SLUG_MAX, true),
    RULE(proto_author_t, name, CMS_NAME_MAX, false),
    RULE(proto_author_t, bio, CMS_BIO_MAX, false),
    RULE(proto_author_t, profile_image, CMS_URL_MAX, false),
    RULE(proto_author_t, website, CMS_URL_MAX, false),
    RULE(proto_author_t, location, CMS_NAME_MAX, false),
};

#define NRULES(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int check_slug(char **slug, const char *from, const char *what, char err[CMS_ERR_LEN])
{
    if (*slug == NULL || **slug == '\0') {
        free(*slug);
        *slug = cms_slugify(from);
    }
    if (!cms_slug_valid(*slug)) {
        snprintf(err, CMS_ERR_LEN,
                 "%s: '%.60s' is not a valid slug (a-z, 0-9 and '-', at most %d bytes)", what,
                 proto_utf8_valid(*slug, strlen(*slug)) ? *slug : "(invalid UTF-8)",
                 PROTO_SLUG_MAX);
        return -EINVAL;
    }
    return 0;
}

int cms_tag_validate(proto_tag_t *t, char err[CMS_ERR_LEN])
{
    int rc = check_strings(t, tag_rules, NRULES(tag_rules), "tag ", err);
    if (rc < 0)
        return rc;
    t->internal = t->name[0] == '#';
    return check_slug(&t->slug, t->name, "tag slug", err);
}

int cms_author_validate(proto_author_t *a, char err[CMS_ERR_LEN])
{
    int rc = check_strings(a, author_rules, NRULES(author_rules), "author ", err);
    if (rc < 0)
        return rc;
    return check_slug(&a->slug, a->name, "author slug", err);
}

int cms_post_validate(proto_post_t *p, char err[CMS_ERR_LEN])
{
    int rc = check_strings(p, post_rules, NRULES(post_rules), "", err);
    if (rc < 0)
        return rc;
    if (p->type != PROTO_POST && p->type != PROTO_PAGE) {
        snprintf(err, CMS_ERR_LEN, "type: must be post or page");
        return -EINVAL;
    }
    if (p->status < PROTO_DRAFT || p->status > PROTO_PUBLISHED) {
        snprintf(err, CMS_ERR_LEN, "status: must be draft, scheduled or published");
        return -EINVAL;
    }
    if (p->status == PROTO_SCHEDULED && p->published_at == 0) {
        snprintf(err, CMS_ERR_LEN, "published_at: required for a scheduled post");
        return -EINVAL;
    }
    if ((rc = check_slug(&p->slug, p->title, "slug", err)) < 0)
        return rc;
    if (p->ntags > CMS_TAGS_MAX || p->nauthors > CMS_AUTHORS_MAX) {
        snprintf(err, CMS_ERR_LEN, "%s: at most %d", p->ntags > CMS_TAGS_MAX ? "tags" : "authors",
                 p->ntags > CMS_TAGS_MAX ? CMS_TAGS_MAX : CMS_AUTHORS_MAX);
        return -EINVAL;
    }
    for (int i = 0; i < p->ntags; i++) {
        if (p->tags[i].name == NULL && p->tags[i].slug)
            p->tags[i].name = cms_strdup(p->tags[i].slug);
        if ((rc = cms_tag_validate(&p->tags[i], err)) < 0)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(p->tags[j].slug, p->tags[i].slug) == 0) {
                snprintf(err, CMS_ERR_LEN, "tags: '%s' given twice", p->tags[i].slug);
                return -EINVAL;
            }
    }
    for (int i = 0; i < p->nauthors; i++) {
        if ((rc = cms_author_validate(&p->authors[i], err)) < 0)
            return rc;
        for (int j = 0; j < i; j++)
            if (strcmp(p->authors[j].slug, p->authors[i].slug) == 0) {
                snprintf(err, CMS_ERR_LEN, "authors: '%s' given twice", p->authors[i].slug);
                return -EINVAL;
            }
    }
    return 0;
}

/* ---- derived values ----------------------------------------------------------- */

void cms_post_derive(proto_post_t *p)
{
    const char *text = p->plaintext ? p->plaintext : "";
    size_t words = 0;
    bool in = false;
    for (const char *s = text; *s; s++) {
        bool space = *s == ' ' || *s == '\n' || *s == '\t' || *s == '\r';
        if (!space && !in)
            words++;
        in = !space;
    }
    p->reading_time = (int)((words + 264) / 265);
    if (p->reading_time < 1)
        p->reading_time = 1;

    free(p->excerpt);
    if (p->custom_excerpt && *p->custom_excerpt) {
        p->excerpt = cms_strdup(p->custom_excerpt);
        return;
    }
    /* Skip leading whitespace, take up to 300 bytes, cut back to a space (or to a
     * character boundary when there is none), and collapse newlines. */
    while (*text == ' ' || *text == '\n')
        text++;
    size_t len = strlen(text), n = len;
    if (len > CMS_EXCERPT_MAX) {
        n = CMS_EXCERPT_MAX;
        size_t k = n;
        while (k > 0 && text[k] != ' ' && text[k] != '\n')
            k--;
        if (k > CMS_EXCERPT_MAX / 2)
            n = k;
        while (n > 0 && ((unsigned char)text[n] & 0xC0) == 0x80)
            n--;
    }
    char *e = xstrndup(text, n);
    for (char *c = e; *c; c++)
        if (*c == '\n')
            *c = ' ';
    while (n > 0 && e[n - 1] == ' ')
        e[--n] = '\0';
    p->excerpt = e;
}

char *cms_random_token(void)
{
    unsigned char r[16];
    char *out = xmalloc(33);
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n <= 0)
            abort(); /* the kernel's CSPRNG does not fail after boot */
        got += (size_t)n;
    }
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
    return out;
}
