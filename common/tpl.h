/* tpl.h - Mustache templates: logic-less, HTML-escaping by default.
 *
 * No maintained C Mustache library is packaged in Debian (there are C++, Perl and
 * Erlang ones), so this is ours; it passes the official spec's required modules
 * (comments, delimiters, interpolation, inverted, partials, sections), which the
 * unit tests run from the spec's own JSON files. Lambdas and inheritance (optional
 * spec modules) are not supported.
 *
 * A template set holds named template sources (a theme: "home", "post", partials
 * like "header"); each is compiled once, on first use, and partials are compiled
 * per indentation they are used with. Rendering never fails: a missing name
 * renders as nothing, as the spec says, and a template that failed to compile
 * renders its error as an HTML comment (so a broken theme is visible, not fatal).
 */
#ifndef ONEBLOG_TPL_H
#define ONEBLOG_TPL_H

#include <stddef.h>

#include "buf.h"
#include "value.h"

typedef struct tpl_set tpl_set_t;

tpl_set_t *tpl_set_new(void);
void tpl_set_free(tpl_set_t *set);

/* Add (or replace) a named template; the source is copied. It is compiled now:
 * returns 0, or -1 with a message "line N: ..." in err (errlen bytes) - the
 * template is kept (rendering shows the error) so that callers may go on. */
int tpl_set_add(tpl_set_t *set, const char *name, const char *src, size_t len, char *err,
                size_t errlen);

/* A render's budget: one that runs past max_nodes nodes rendered or max_bytes
 * bytes appended stops and ends with an error comment (exponential templates:
 * a partial including itself twice). 0 = the default, 1M nodes and 64 MiB, far
 * past any page; tests and the fuzz target set smaller ones. */
void tpl_set_limits(tpl_set_t *set, long max_nodes, size_t max_bytes);

/* Render template `name` with `ctx` as the root context, appending to out.
 * Returns 0, or -1 if no template has that name (nothing appended). A render
 * that runs past the set's limits stops and ends with an error comment. */
int tpl_render(tpl_set_t *set, const char *name, const tv_t *ctx, buf_t *out);

#endif /* ONEBLOG_TPL_H */
