/* content.h - the content model's rules: roles, slugs, field limits, UTF-8 validity,
 * and the values derived from a post's text (excerpt, reading time).
 *
 * Everything that enters the store goes through cms_post_validate() (or the tag and
 * user variants) first, so the store can assume valid UTF-8 within the limits and
 * the RPC layer can hand strings to readers as they are. Errors name the field:
 * "title: 300 bytes, at most 255".
 */
#ifndef CMS_CONTENT_H
#define CMS_CONTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/proto.h"

#define CMS_ERR_LEN 256 /* bytes of an error message buffer */

/* Staff roles, least to most privileged (the order is used in comparisons). */
typedef enum cms_role {
    CMS_ROLE_CONTRIBUTOR = 0,
    CMS_ROLE_AUTHOR = 1,
    CMS_ROLE_EDITOR = 2,
    CMS_ROLE_ADMINISTRATOR = 3,
    CMS_ROLE_OWNER = 4,
} cms_role_t;

/* "owner" ... "contributor" <-> enum. Returns 0 and *out, or -EINVAL. */
int cms_role_parse(const char *name, cms_role_t *out);
const char *cms_role_name(cms_role_t role);
/* Editors and above may keep raw HTML in Markdown; authors and contributors get it
 * escaped. */
bool cms_role_allows_html(cms_role_t role);

/* Field limits, in bytes. */
#define CMS_TITLE_MAX 255
#define CMS_EXCERPT_MAX 300
#define CMS_META_TITLE_MAX 300
#define CMS_META_DESC_MAX 500
#define CMS_URL_MAX 2000
#define CMS_NAME_MAX 191
#define CMS_BIO_MAX 2000
#define CMS_MARKDOWN_MAX (2 * 1024 * 1024)
#define CMS_TAGS_MAX 50
#define CMS_AUTHORS_MAX 20

/* A slug: 1..PROTO_SLUG_MAX bytes of a-z, 0-9, '-' and non-ASCII UTF-8 letters,
 * not starting or ending with '-'. */
bool cms_slug_valid(const char *slug);

/* Make a slug from any UTF-8 text (a title, a tag name): lower-case ASCII letters
 * and digits kept, other ASCII runs become one '-', non-ASCII characters kept;
 * a leading '#' becomes "hash-" (Ghost's convention for internal tags). Returns a
 * new string; "untitled" when nothing is left. */
char *cms_slugify(const char *text);

/* Check a post before saving: required fields, UTF-8, limits, slugs of its tags and
 * authors, status and type values. Fills a missing slug from the title, and tag
 * slugs from tag names. Returns 0, or -EINVAL with a message naming the field. */
int cms_post_validate(proto_post_t *p, char err[CMS_ERR_LEN]);

/* The same for a tag (slug filled from the name when missing; `internal` set from
 * a leading '#') and an author/user's public fields. */
int cms_tag_validate(proto_tag_t *t, char err[CMS_ERR_LEN]);
int cms_author_validate(proto_author_t *a, char err[CMS_ERR_LEN]);

/* Derived values for readers, recomputed when a post is loaded: p->excerpt (the
 * custom excerpt, else the first ~300 bytes of plaintext cut at a word boundary)
 * and p->reading_time. */
void cms_post_derive(proto_post_t *p);

/* A random token of 32 hex characters (for preview links). */
char *cms_random_token(void);

#endif /* CMS_CONTENT_H */
