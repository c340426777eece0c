/* markdown.c - rendering with md4c: HTML through md4c-html, plain text through the
 * md4c parser's callbacks. See markdown.h.
 */
#include "markdown.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <md4c-html.h>
#include <md4c.h>

#include "util.h"

static void on_html(const MD_CHAR *s, MD_SIZE n, void *arg)
{
    buf_append(arg, s, n);
}

/* ---- plain text ----------------------------------------------------------------- */

typedef struct text_ctx {
    buf_t b;
    int in_html; /* nesting of raw HTML blocks (their text is not prose) */
} text_ctx_t;

static void text_break(text_ctx_t *t)
{
    if (t->b.len > 0 && t->b.data[t->b.len - 1] != '\n')
        buf_putc(&t->b, '\n');
}

static int on_enter_block(MD_BLOCKTYPE type, void *detail, void *arg)
{
    (void)detail;
    text_ctx_t *t = arg;
    if (type == MD_BLOCK_HTML)
        t->in_html++;
    return 0;
}

static int on_leave_block(MD_BLOCKTYPE type, void *detail, void *arg)
{
    (void)detail;
    text_ctx_t *t = arg;
    if (type == MD_BLOCK_HTML)
        t->in_html--;
    else if (type == MD_BLOCK_TD || type == MD_BLOCK_TH)
        buf_putc(&t->b, ' ');
    else
        text_break(t);
    return 0;
}

static int on_span(MD_SPANTYPE type, void *detail, void *arg)
{
    (void)type;
    (void)detail;
    (void)arg;
    return 0;
}

static void add_entity(buf_t *b, const char *s, size_t n)
{
    static const struct {
        const char *name, *text;
    } ents[] = { { "&amp;", "&" },   { "&lt;", "<" },   { "&gt;", ">" },  { "&quot;", "\"" },
                 { "&apos;", "'" },  { "&nbsp;", " " }, { "&#39;", "'" }, { "&mdash;", "\xe2\x80\x94" },
                 { "&ndash;", "\xe2\x80\x93" }, { "&hellip;", "\xe2\x80\xa6" } };
    for (size_t i = 0; i < sizeof ents / sizeof ents[0]; i++)
        if (strlen(ents[i].name) == n && memcmp(ents[i].name, s, n) == 0) {
            buf_puts(b, ents[i].text);
            return;
        }
    buf_append(b, s, n);
}

static int on_text(MD_TEXTTYPE type, const MD_CHAR *s, MD_SIZE n, void *arg)
{
    text_ctx_t *t = arg;
    switch (type) {
    case MD_TEXT_HTML:
        break; /* markup, not prose */
    case MD_TEXT_ENTITY:
        add_entity(&t->b, s, n);
        break;
    case MD_TEXT_BR:
    case MD_TEXT_SOFTBR:
        buf_putc(&t->b, t->in_html ? '\n' : ' ');
        break;
    case MD_TEXT_NULLCHAR:
        break;
    default:
        if (!t->in_html)
            buf_append(&t->b, s, n);
        break;
    }
    return 0;
}

/* ---- unsafe URLs ---------------------------------------------------------------- */

/* md4c-html writes URLs as given. Rather than post-process HTML, we check every
 * link and image destination with the parser first and, if one is unsafe, render
 * a copy of the source where its scheme is neutralised. */
typedef struct url_ctx {
    const char *src;
    size_t len;
    bool unsafe;
} url_ctx_t;

static bool url_unsafe(const char *u, size_t n)
{
    char scheme[16];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof scheme - 1; i++) {
        char c = u[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || (unsigned char)c < 0x20)
            continue; /* browsers ignore these inside a scheme */
        if (c == ':')
            break;
        scheme[k++] = c;
    }
    scheme[k] = '\0';
    if (strcasecmp(scheme, "javascript") == 0 || strcasecmp(scheme, "vbscript") == 0)
        return true;
    if (strcasecmp(scheme, "data") == 0) {
        const char *colon = memchr(u, ':', n);
        return !(colon && (size_t)(u + n - colon) > 7 && strncasecmp(colon + 1, "image/", 6) == 0);
    }
    return false;
}

static int on_url_span(MD_SPANTYPE type, void *detail, void *arg)
{
    url_ctx_t *c = arg;
    const MD_ATTRIBUTE *a = NULL;
    if (type == MD_SPAN_A)
        a = &((MD_SPAN_A_DETAIL *)detail)->href;
    else if (type == MD_SPAN_IMG)
        a = &((MD_SPAN_IMG_DETAIL *)detail)->src;
    if (a && a->text && url_unsafe(a->text, a->size))
        c->unsafe = true;
    return 0;
}

static int url_block(MD_BLOCKTYPE t, void *d, void *a)
{
    (void)t, (void)d, (void)a;
    return 0;
}

static int url_text(MD_TEXTTYPE t, const MD_CHAR *s, MD_SIZE n, void *a)
{
    (void)t, (void)s, (void)n, (void)a;
    return 0;
}

/* A copy of md with every "javascript:", "vbscript:" and "data:" (case-insensitive)
 * turned into "unsafe-...:" so no renderer can make a live link of it. */
static char *neutralise(const char *md, size_t len)
{
    static const char *const bad[] = { "javascript:", "vbscript:", "data:" };
    buf_t b = BUF_INIT;
    for (size_t i = 0; i < len;) {
        size_t k;
        for (k = 0; k < 3; k++) {
            size_t bl = strlen(bad[k]);
            if (i + bl <= len && strncasecmp(md + i, bad[k], bl) == 0 &&
                !(k == 2 && i + bl + 6 <= len && strncasecmp(md + i + bl, "image/", 6) == 0))
                break;
        }
        if (k < 3) {
            buf_puts(&b, "unsafe-");
            buf_append(&b, md + i, strlen(bad[k]));
            i += strlen(bad[k]);
        } else {
            buf_putc(&b, md[i++]);
        }
    }
    return buf_take(&b);
}

int cms_markdown_render(const char *md, size_t len, bool allow_html, char **html, char **text)
{
    unsigned flags = MD_DIALECT_GITHUB | (allow_html ? 0 : MD_FLAG_NOHTML);
    buf_t h = BUF_INIT;
    text_ctx_t t = { BUF_INIT, 0 };
    url_ctx_t u = { md, len, false };
    char *copy = NULL;
    int rc = -EINVAL;

    MD_PARSER up = { 0, flags, url_block, url_block, on_url_span, on_url_span, url_text,
                     NULL, NULL };
    if (md_parse(md, (MD_SIZE)len, &up, &u) != 0)
        goto out;
    if (u.unsafe) {
        copy = neutralise(md, len);
        md = copy;
        len = strlen(copy);
    }
    if (md_html(md, (MD_SIZE)len, on_html, &h, flags, 0) != 0)
        goto out;
    MD_PARSER tp = { 0, flags, on_enter_block, on_leave_block, on_span, on_span, on_text,
                     NULL, NULL };
    if (md_parse(md, (MD_SIZE)len, &tp, &t) != 0)
        goto out;
    while (t.b.len > 0 && t.b.data[t.b.len - 1] == '\n')
        t.b.data[--t.b.len] = '\0';
    *html = buf_take(&h);
    *text = buf_take(&t.b);
    rc = 0;
out:
    buf_free(&h);
    buf_free(&t.b);
    free(copy);
    return rc;
}
