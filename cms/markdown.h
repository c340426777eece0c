/* markdown.h - Markdown to HTML and plain text, once, when a post is saved (md4c,
 * GitHub dialect: tables, strikethrough, task lists, autolinks).
 *
 * Raw HTML is kept only when `allow_html` is true (editors and above, see
 * cms_role_allows_html); otherwise md4c treats it as text and it comes out
 * escaped. Link and image URLs with a javascript:, vbscript: or data: (other than
 * data:image/) scheme are dropped for everyone.
 */
#ifndef CMS_MARKDOWN_H
#define CMS_MARKDOWN_H

#include <stdbool.h>
#include <stddef.h>

/* Render md[0..len). On success returns 0 with *html and *text (new strings; the
 * text has one line per block and no markup). Returns -EINVAL if md4c fails. */
int cms_markdown_render(const char *md, size_t len, bool allow_html, char **html,
                        char **text);

#endif /* CMS_MARKDOWN_H */
