/* tpl.c - a Mustache compiler and renderer.
 *
 * Reading order: the node tree a template compiles to; the parser (tags, the
 * "standalone line" rule, set-delimiter tags, section nesting); name lookup in the
 * context stack; the renderer; the template set with its partial cache.
 *
 * The standalone rule: a section, inverted, close, comment, partial or delimiter
 * tag alone on its line (only spaces or tabs around it) removes the whole line
 * from the output. A standalone partial is indented by the whitespace before it,
 * which is applied to every line of the partial's *source* before it is compiled.
 */
#include "tpl.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Nodes
 * ------------------------------------------------------------------------------ */

enum { N_TEXT, N_VAR, N_RAW, N_SECTION, N_INVERTED, N_PARTIAL };

typedef struct node node_t;

typedef struct nodes {
    node_t *v;
    size_t n, cap;
} nodes_t;

struct node {
    int kind;
    char *text;    /* N_TEXT: the text; others: the name as written ("a.b", ".") */
    size_t len;
    tv_key_t *path; /* the name split on dots (keys own their strings); NULL for "." */
    int npath;
    char *indent;  /* N_PARTIAL: indentation of a standalone partial, or "" */
    /* N_PARTIAL: the template it resolved to while the set's generation was
     * `partial_gen` (a lookup by name and indentation is a list walk) */
    struct tpl *partial;
    unsigned long partial_gen;
    nodes_t kids;  /* sections */
};

typedef struct tpl {
    nodes_t root;
    char *error;   /* compile error, or NULL */
} tpl_t;

static node_t *nodes_push(nodes_t *ns)
{
    if (ns->n == ns->cap) {
        ns->cap = ns->cap ? ns->cap * 2 : 8;
        ns->v = xrealloc(ns->v, ns->cap * sizeof(node_t));
    }
    node_t *nd = &ns->v[ns->n++];
    memset(nd, 0, sizeof(*nd));
    return nd;
}

static void nodes_free(nodes_t *ns)
{
    for (size_t i = 0; i < ns->n; i++) {
        node_t *nd = &ns->v[i];
        free(nd->text);
        for (int k = 0; k < nd->npath; k++)
            free((char *)nd->path[k].s);
        free(nd->path);
        free(nd->indent);
        nodes_free(&nd->kids);
    }
    free(ns->v);
    ns->v = NULL;
    ns->n = ns->cap = 0;
}

static void tpl_free(tpl_t *t)
{
    if (t == NULL)
        return;
    nodes_free(&t->root);
    free(t->error);
    free(t);
}

/* ---------------------------------------------------------------------------------
 * Parser
 * ------------------------------------------------------------------------------ */

#define MAX_DEPTH 64
#define MAX_DELIM 16

typedef struct parser {
    const char *src;
    size_t len;
    size_t pos;
    char open[MAX_DELIM], close[MAX_DELIM];
    size_t olen, clen;
    nodes_t *stack[MAX_DEPTH]; /* where nodes go: root, then open sections */
    char *names[MAX_DEPTH];    /* names of the open sections */
    int depth;
    char err[160];
} parser_t;

static int line_of(const parser_t *p, size_t pos)
{
    int line = 1;
    for (size_t i = 0; i < pos && i < p->len; i++)
        line += p->src[i] == '\n';
    return line;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static void trim(const char **s, size_t *len)
{
    while (*len > 0 && (is_blank(**s) || **s == '\r' || **s == '\n')) {
        (*s)++;
        (*len)--;
    }
    while (*len > 0 && (is_blank((*s)[*len - 1]) || (*s)[*len - 1] == '\r' || (*s)[*len - 1] == '\n'))
        (*len)--;
}

static void add_text(parser_t *p, size_t from, size_t to)
{
    if (to <= from)
        return;
    node_t *nd = nodes_push(p->stack[p->depth]);
    nd->kind = N_TEXT;
    nd->text = xstrndup(p->src + from, to - from);
    nd->len = to - from;
}

static void set_name(node_t *nd, const char *name, size_t len)
{
    nd->text = xstrndup(name, len);
    nd->len = len;
    if (len == 1 && name[0] == '.')
        return;
    int parts = 1;
    for (size_t i = 0; i < len; i++)
        parts += name[i] == '.';
    nd->path = xcalloc((size_t)parts, sizeof(tv_key_t));
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || name[i] == '.') {
            /* keyed once here, so a lookup compares lengths and 8-byte heads */
            nd->path[nd->npath++] = tv_key(xstrndup(name + start, i - start), i - start);
            start = i + 1;
        }
    }
}

static bool set_delimiters(parser_t *p, const char *s, size_t len)
{
    /* "<% %>" : two words separated by whitespace, neither containing '=' */
    trim(&s, &len);
    size_t i = 0;
    while (i < len && !is_blank(s[i]))
        i++;
    size_t a = i;
    while (i < len && is_blank(s[i]))
        i++;
    size_t b = len - i;
    if (a == 0 || b == 0 || a >= MAX_DELIM || b >= MAX_DELIM)
        return false;
    for (size_t k = i; k < len; k++)
        if (is_blank(s[k]))
            return false;
    memcpy(p->open, s, a);
    p->open[a] = '\0';
    p->olen = a;
    memcpy(p->close, s + i, b);
    p->close[b] = '\0';
    p->clen = b;
    return true;
}

static int parse(parser_t *p)
{
    size_t text_start = 0;
    for (;;) {
        const char *o = p->olen ? memmem(p->src + p->pos, p->len - p->pos, p->open, p->olen) : NULL;
        if (o == NULL)
            break;
        size_t tag_start = (size_t)(o - p->src);
        size_t inner = tag_start + p->olen;
        if (inner >= p->len) {
            snprintf(p->err, sizeof(p->err), "line %d: unclosed tag", line_of(p, tag_start));
            return -1;
        }
        char sigil = p->src[inner];
        /* {{{name}}} (and {name} + close with other delimiters) is unescaped. */
        char closer[MAX_DELIM + 1];
        size_t closer_len = p->clen;
        memcpy(closer, p->close, p->clen + 1);
        if (sigil == '{') {
            closer[0] = '}';
            memcpy(closer + 1, p->close, p->clen + 1);
            closer_len = p->clen + 1;
            inner++;
        } else if (sigil && strchr("#^/!>=&", sigil)) {
            inner++;
        } else {
            sigil = 0;
        }
        const char *c = memmem(p->src + inner, p->len - inner, closer, closer_len);
        if (sigil == '=') {
            /* {{=<% %>=}}: the content ends with '=' before the closer */
            c = NULL;
            for (size_t k = inner; k + 1 + closer_len <= p->len; k++) {
                if (p->src[k] == '=' && memcmp(p->src + k + 1, closer, closer_len) == 0) {
                    c = p->src + k + 1;
                    break;
                }
            }
        }
        if (c == NULL) {
            snprintf(p->err, sizeof(p->err), "line %d: unclosed tag", line_of(p, tag_start));
            return -1;
        }
        size_t content_end = (size_t)(c - p->src);
        size_t tag_end = content_end + closer_len;
        const char *name = p->src + inner;
        size_t nlen = content_end - inner;
        if (sigil == '=')
            nlen--; /* the trailing '=' */

        /* The standalone rule. */
        bool standalone = false;
        size_t line_start = tag_start, after = tag_end;
        if (sigil && strchr("#^/!>=", sigil)) {
            /* Back over blanks only, and not past the text before the tag: a
             * scan to the start of the line would make a long line of tags
             * quadratic (a 400 KB line of comments took 4 s to compile). */
            while (line_start > text_start && is_blank(p->src[line_start - 1]))
                line_start--;
            bool blank_before = line_start == 0 || p->src[line_start - 1] == '\n';
            size_t k = tag_end;
            while (k < p->len && is_blank(p->src[k]))
                k++;
            bool blank_after = false;
            if (k == p->len) {
                blank_after = true;
            } else if (p->src[k] == '\n') {
                blank_after = true;
                k++;
            } else if (p->src[k] == '\r' && k + 1 < p->len && p->src[k + 1] == '\n') {
                blank_after = true;
                k += 2;
            }
            if (blank_before && blank_after) {
                standalone = true;
                after = k;
            }
        }
        add_text(p, text_start, standalone ? line_start : tag_start);

        trim(&name, &nlen);
        node_t *nd;
        switch (sigil) {
        case '!':
            break;
        case '=':
            if (!set_delimiters(p, name, nlen)) {
                snprintf(p->err, sizeof(p->err), "line %d: bad delimiters", line_of(p, tag_start));
                return -1;
            }
            break;
        case '#':
        case '^':
            if (p->depth + 1 >= MAX_DEPTH) {
                snprintf(p->err, sizeof(p->err), "line %d: sections nested too deep",
                         line_of(p, tag_start));
                return -1;
            }
            nd = nodes_push(p->stack[p->depth]);
            nd->kind = sigil == '#' ? N_SECTION : N_INVERTED;
            set_name(nd, name, nlen);
            p->depth++;
            p->stack[p->depth] = &nd->kids;
            p->names[p->depth] = nd->text;
            break;
        case '/':
            if (p->depth == 0 || strlen(p->names[p->depth]) != nlen ||
                memcmp(p->names[p->depth], name, nlen) != 0) {
                snprintf(p->err, sizeof(p->err), "line %d: unexpected close tag '%.*s'",
                         line_of(p, tag_start), (int)(nlen > 40 ? 40 : nlen), name);
                return -1;
            }
            p->depth--;
            break;
        case '>':
            nd = nodes_push(p->stack[p->depth]);
            nd->kind = N_PARTIAL;
            nd->text = xstrndup(name, nlen);
            nd->len = nlen;
            nd->indent = standalone ? xstrndup(p->src + line_start, tag_start - line_start)
                                    : xstrdup("");
            break;
        default:
            nd = nodes_push(p->stack[p->depth]);
            nd->kind = sigil == '&' || sigil == '{' ? N_RAW : N_VAR;
            set_name(nd, name, nlen);
            break;
        }
        p->pos = after;
        text_start = after;
    }
    add_text(p, text_start, p->len);
    if (p->depth != 0) {
        snprintf(p->err, sizeof(p->err), "unclosed section '%s'", p->names[p->depth]);
        return -1;
    }
    return 0;
}

static tpl_t *compile(const char *src, size_t len)
{
    tpl_t *t = xcalloc(1, sizeof(*t));
    parser_t *p = xcalloc(1, sizeof(*p));
    p->src = src;
    p->len = len;
    strcpy(p->open, "{{");
    strcpy(p->close, "}}");
    p->olen = p->clen = 2;
    p->stack[0] = &t->root;
    if (parse(p) < 0) {
        nodes_free(&t->root);
        t->error = xstrdup(p->err);
    }
    free(p);
    return t;
}

/* ---------------------------------------------------------------------------------
 * Context lookup
 * ------------------------------------------------------------------------------ */

/* A render's budget. A template can ask for work exponential in its size: a
 * partial that includes itself twice renders 2^64 times within the depth bound,
 * sections nested over a list cost n^depth. So a render stops after MAX_STEPS
 * nodes or MAX_OUT bytes and ends with an HTML comment saying so, as a template
 * that failed to compile does. A page takes thousands of nodes and kilobytes.
 * These are the defaults of tpl_set_limits. */
#define MAX_STEPS (1L << 20)  /* nodes rendered */
#define MAX_OUT ((size_t)64 << 20) /* bytes appended, 64 MiB */

/* Sections and partials open at once while rendering. Each costs C stack (a few
 * hundred bytes; more under ASan): 64 partials of 63 nested sections each were
 * 4,000 levels, past the 1 MiB stack of a libcnode process. Deeper ones render
 * as nothing, as a partial past MAX_DEPTH does. */
#define MAX_NEST 128

typedef struct ctx {
    const tv_t *stack[MAX_DEPTH * 4];
    int n;
    int nest;       /* sections and partials open, up to MAX_NEST */
    long steps;     /* nodes left to render */
    size_t out_max; /* out->len past which rendering stops */
    bool stopped;   /* the budget ran out */
} ctx_t;

/* A map's key, or - our extension, as in mustache.js - a list's item by its
 * decimal index: {{#posts.0}} tests "has posts" without a separate flag. */
static const tv_t *member(const tv_t *v, const tv_key_t *k)
{
    if (v->kind != TV_LIST)
        return tv_map_getk(v, k);
    const char *key = k->s;
    char *end;
    unsigned long ix = strtoul(key, &end, 10);
    if (*key < '0' || *key > '9' || *end != '\0' || ix >= v->u.list.n)
        return NULL;
    return v->u.list.items[ix];
}

static const tv_t *lookup(const ctx_t *c, const node_t *nd)
{
    if (nd->path == NULL)
        return c->n > 0 ? c->stack[c->n - 1] : NULL;
    const tv_t *v = NULL;
    for (int i = c->n - 1; i >= 0; i--) {
        v = tv_map_getk(c->stack[i], &nd->path[0]);
        if (v)
            break;
    }
    /* Dotted names: once the first part is found, the rest must resolve in it. */
    for (int k = 1; v && k < nd->npath; k++)
        v = member(v, &nd->path[k]);
    return v;
}

static void put_value(buf_t *out, const tv_t *v, bool escape)
{
    char num[64];
    switch (v ? v->kind : TV_NULL) {
    case TV_NULL:
        return;
    case TV_BOOL:
        buf_puts(out, v->u.b ? "true" : "false");
        return;
    case TV_INT: {
        /* by hand: snprintf is a few hundred instructions a number */
        unsigned long long u = v->u.i < 0 ? 0ull - (unsigned long long)v->u.i
                                          : (unsigned long long)v->u.i;
        char *e = num + sizeof(num), *p = e;
        do {
            *--p = (char)('0' + u % 10);
            u /= 10;
        } while (u);
        if (v->u.i < 0)
            *--p = '-';
        buf_append(out, p, (size_t)(e - p));
        return;
    }
    case TV_DOUBLE:
        /* the shortest form that reads back as the same number */
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(num, sizeof(num), "%.*g", prec, v->u.d);
            if (strtod(num, NULL) == v->u.d)
                break;
        }
        buf_puts(out, num);
        return;
    case TV_STR:
        if (escape)
            buf_append_html(out, v->u.str.s, v->u.str.len);
        else
            buf_append(out, v->u.str.s, v->u.str.len);
        return;
    default:
        return; /* lists and maps have no text */
    }
}

/* ---------------------------------------------------------------------------------
 * Template set and rendering
 * ------------------------------------------------------------------------------ */

typedef struct entry {
    char *name;
    char *indent;  /* "" for the template itself */
    char *src;     /* the source (with indentation applied for partial copies) */
    size_t len;
    tpl_t *tpl;
    struct entry *next;
} entry_t;

struct tpl_set {
    entry_t *entries;
    unsigned long gen; /* bumped when a template is added or replaced */
    int depth; /* partial recursion guard while rendering */
    long max_steps;   /* a render's budget: nodes (tpl_set_limits) */
    size_t max_out;   /* ... and bytes */
};

tpl_set_t *tpl_set_new(void)
{
    tpl_set_t *set = xcalloc(1, sizeof(tpl_set_t));
    tpl_set_limits(set, 0, 0);
    return set;
}

void tpl_set_limits(tpl_set_t *set, long max_nodes, size_t max_bytes)
{
    set->max_steps = max_nodes > 0 ? max_nodes : MAX_STEPS;
    set->max_out = max_bytes > 0 ? max_bytes : MAX_OUT;
}

void tpl_set_free(tpl_set_t *set)
{
    if (set == NULL)
        return;
    entry_t *e = set->entries;
    while (e) {
        entry_t *next = e->next;
        free(e->name);
        free(e->indent);
        free(e->src);
        tpl_free(e->tpl);
        free(e);
        e = next;
    }
    free(set);
}

static entry_t *find(tpl_set_t *set, const char *name, const char *indent)
{
    for (entry_t *e = set->entries; e; e = e->next)
        if (strcmp(e->name, name) == 0 && strcmp(e->indent, indent) == 0)
            return e;
    return NULL;
}

int tpl_set_add(tpl_set_t *set, const char *name, const char *src, size_t len, char *err,
                size_t errlen)
{
    /* Replacing a template drops its indented partial copies too. */
    for (entry_t **pp = &set->entries; *pp;) {
        entry_t *e = *pp;
        if (strcmp(e->name, name) == 0) {
            *pp = e->next;
            free(e->name);
            free(e->indent);
            free(e->src);
            tpl_free(e->tpl);
            free(e);
        } else {
            pp = &e->next;
        }
    }
    set->gen++; /* partials resolved before may be gone */
    entry_t *e = xcalloc(1, sizeof(*e));
    e->name = xstrdup(name);
    e->indent = xstrdup("");
    e->src = xstrndup(src, len);
    e->len = len;
    e->tpl = compile(e->src, e->len);
    e->next = set->entries;
    set->entries = e;
    if (e->tpl->error) {
        if (err && errlen)
            snprintf(err, errlen, "%s", e->tpl->error);
        return -1;
    }
    return 0;
}

/* The template `name` as used with `indent`: compiled once per indentation. */
static tpl_t *get_partial(tpl_set_t *set, const char *name, const char *indent)
{
    entry_t *e = find(set, name, indent);
    if (e)
        return e->tpl;
    entry_t *base = find(set, name, "");
    if (base == NULL)
        return NULL;
    buf_t b = BUF_INIT;
    size_t ilen = strlen(indent);
    buf_append(&b, indent, ilen);
    for (size_t i = 0; i < base->len; i++) {
        buf_putc(&b, base->src[i]);
        if (base->src[i] == '\n' && i + 1 < base->len)
            buf_append(&b, indent, ilen);
    }
    e = xcalloc(1, sizeof(*e));
    e->name = xstrdup(name);
    e->indent = xstrdup(indent);
    e->len = b.len;
    e->src = buf_take(&b);
    e->tpl = compile(e->src, e->len);
    e->next = set->entries;
    set->entries = e;
    return e->tpl;
}

static void render_nodes(tpl_set_t *set, const nodes_t *ns, ctx_t *c, buf_t *out);

static void render_tpl(tpl_set_t *set, const tpl_t *t, ctx_t *c, buf_t *out)
{
    if (t->error) {
        buf_puts(out, "<!-- template error: ");
        buf_append_html(out, t->error, strlen(t->error));
        buf_puts(out, " -->");
        return;
    }
    render_nodes(set, &t->root, c, out);
}

static void push(ctx_t *c, const tv_t *v)
{
    c->stack[c->n++] = v;
}

static void render_nodes(tpl_set_t *set, const nodes_t *ns, ctx_t *c, buf_t *out)
{
    if (c->nest >= MAX_NEST)
        return;
    c->nest++;
    for (size_t i = 0; i < ns->n; i++) {
        const node_t *nd = &ns->v[i];
        const tv_t *v;
        if (--c->steps < 0 || out->len > c->out_max) {
            c->stopped = true;
            break;
        }
        switch (nd->kind) {
        case N_TEXT:
            buf_append(out, nd->text, nd->len);
            break;
        case N_VAR:
        case N_RAW:
            put_value(out, lookup(c, nd), nd->kind == N_VAR);
            break;
        case N_SECTION:
            v = lookup(c, nd);
            if (!tv_truthy(v) || c->n + 1 >= (int)(sizeof(c->stack) / sizeof(c->stack[0])))
                break;
            if (v->kind == TV_LIST) {
                for (size_t k = 0; k < v->u.list.n; k++) {
                    push(c, v->u.list.items[k]);
                    render_nodes(set, &nd->kids, c, out);
                    c->n--;
                }
            } else {
                push(c, v);
                render_nodes(set, &nd->kids, c, out);
                c->n--;
            }
            break;
        case N_INVERTED:
            if (!tv_truthy(lookup(c, nd)))
                render_nodes(set, &nd->kids, c, out);
            break;
        case N_PARTIAL: {
            /* Recursive partials are allowed by the spec; bound the depth. */
            if (set->depth >= MAX_DEPTH)
                break;
            tpl_t *t;
            if (nd->partial && nd->partial_gen == set->gen) {
                t = nd->partial;
            } else {
                t = get_partial(set, nd->text, nd->indent);
                /* compiled templates are owned by the set; nodes are ours to annotate */
                ((node_t *)nd)->partial = t;
                ((node_t *)nd)->partial_gen = set->gen;
            }
            if (t == NULL)
                break;
            set->depth++;
            render_tpl(set, t, c, out);
            set->depth--;
            break;
        }
        }
    }
    c->nest--;
}

int tpl_render(tpl_set_t *set, const char *name, const tv_t *ctx, buf_t *out)
{
    entry_t *e = find(set, name, "");
    if (e == NULL)
        return -1;
    ctx_t c;
    c.n = 0;
    c.nest = 0;
    c.steps = set->max_steps;
    c.out_max = out->len + set->max_out;
    c.stopped = false;
    if (ctx)
        push(&c, ctx);
    render_tpl(set, e->tpl, &c, out);
    if (c.stopped) {
        buf_puts(out, "<!-- template error: ");
        buf_append_html(out, name, strlen(name));
        buf_printf(out, ": rendering stopped after %ld nodes or %zu bytes "
                        "(recursive partials?) -->",
                   set->max_steps, set->max_out);
    }
    return 0;
}
