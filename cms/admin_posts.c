/* admin_posts.c - posts and pages in the admin: the list with filters, the editor
 * (Markdown with a server-rendered preview, tags, authors, SEO fields, feature
 * image), saving, publish / schedule / unpublish / delete, revisions and restore;
 * and the rules both the pages and the JSON API apply (who may do what, saving as
 * a user, telling `cms` about changes).
 *
 * Roles, enforced here for every request (the templates only hide buttons):
 *   contributor  writes drafts; edits and deletes only its own drafts; never
 *                publishes; its raw HTML is escaped
 *   author       edits, publishes and deletes only its own posts
 *   editor+      everything on every post; raw HTML kept
 * Authors and contributors cannot change a post's authors: a new post is theirs,
 * an existing one keeps its authors.
 */
#include "admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/gen_server.h"
#include "markdown.h"
#include "util.h"

/* ---------------------------------------------------------------------------------
 * Rules and writes (shared with admin_api.c)
 * ------------------------------------------------------------------------------ */

static bool own_post(const admin_ctx_t *c, const proto_post_t *p)
{
    for (int i = 0; i < p->nauthors; i++)
        if (p->authors[i].id == c->user.id ||
            (p->authors[i].slug && c->user.profile.slug &&
             strcmp(p->authors[i].slug, c->user.profile.slug) == 0))
            return true;
    return false;
}

bool admin_may(const admin_ctx_t *c, admin_action_t act, const proto_post_t *p)
{
    cms_role_t role = c->user.role;
    if (role >= CMS_ROLE_EDITOR)
        return true;
    if (p == NULL) /* a new post: anyone may write one; only authors publish it */
        return act == ADMIN_EDIT || act == ADMIN_VIEW || (act == ADMIN_PUBLISH && role >= CMS_ROLE_AUTHOR);
    if (!own_post(c, p))
        return false;
    switch (act) {
    case ADMIN_VIEW:
        return true;
    case ADMIN_EDIT:
    case ADMIN_DELETE:
        return role >= CMS_ROLE_AUTHOR || p->status == PROTO_DRAFT;
    case ADMIN_PUBLISH:
        return role >= CMS_ROLE_AUTHOR;
    }
    return false;
}

void admin_notify(cms_admin_t *a, const cms_change_t *chg)
{
    ei_x_buff x;
    cn_msg_t *m = NULL;
    cn_term_t t;
    if (chg == NULL || !chg->visible || cn_x_new(&x) < 0)
        return;
    ei_x_encode_tuple_header(&x, 3);
    ei_x_encode_atom(&x, "changed");
    ei_x_encode_longlong(&x, chg->version);
    if (chg->npaths > 0)
        ei_x_encode_list_header(&x, chg->npaths);
    for (int i = 0; i < chg->npaths; i++)
        ei_x_encode_binary(&x, chg->paths[i], (long)strlen(chg->paths[i]));
    ei_x_encode_empty_list(&x);
    int rc = cn_gen_call(cn_dest_name(a->rpc_name), &x, 5000, &m, &t);
    if (rc < 0)
        cms_log(CMS_LOG_WARN, "admin", "notifying `%s` of version %lld: %s", a->rpc_name,
                (long long)chg->version, cn_strerror(rc));
    cn_msg_free(m);
}

int admin_workflow(cms_admin_t *a, const char *op, int64_t id, int64_t at)
{
    ei_x_buff x;
    cn_msg_t *m = NULL;
    cn_term_t t;
    char reason[64] = "";
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    bool sched = strcmp(op, "schedule") == 0;
    ei_x_encode_tuple_header(&x, sched ? 3 : 2);
    ei_x_encode_atom(&x, op);
    ei_x_encode_longlong(&x, id);
    if (sched)
        ei_x_encode_longlong(&x, at);
    int rc = cn_gen_call(cn_dest_name(a->rpc_name), &x, 30000, &m, &t);
    if (rc < 0) {
        cms_log(CMS_LOG_ERROR, "admin", "%s %lld through `%s`: %s", op, (long long)id,
                a->rpc_name, cn_strerror(rc));
        cn_msg_free(m);
        return -EIO;
    }
    int i = t.index, st = proto_decode_reply(t.buf, &i, reason, sizeof reason);
    cn_msg_free(m);
    if (st == PROTO_OK)
        return 0;
    if (strcmp(reason, "not_found") == 0)
        return -ENOENT;
    if (strcmp(reason, "bad_request") == 0)
        return -EINVAL;
    if (strcmp(reason, "conflict") == 0)
        return -EEXIST;
    return -EIO;
}

static void copy_authors(proto_post_t *dst, const proto_post_t *src)
{
    for (int i = 0; i < dst->nauthors; i++)
        proto_author_clear(&dst->authors[i]);
    free(dst->authors);
    dst->authors = xcalloc((size_t)(src->nauthors ? src->nauthors : 1), sizeof(proto_author_t));
    dst->nauthors = src->nauthors;
    for (int i = 0; i < src->nauthors; i++)
        dst->authors[i].slug = cms_strdup(src->authors[i].slug);
}

int admin_save_post(admin_ctx_t *c, proto_post_t *p, const proto_post_t *old,
                    char err[CMS_ERR_LEN])
{
    cms_change_t chg = { 0 };
    if (c->user.role < CMS_ROLE_EDITOR && old) {
        copy_authors(p, old);
    } else if (p->nauthors == 0 || (c->user.role < CMS_ROLE_EDITOR && !old)) {
        proto_post_t me = { 0 };
        proto_author_t a = { .slug = c->user.profile.slug };
        me.authors = &a;
        me.nauthors = 1;
        copy_authors(p, &me);
    }
    cms_save_opts_t o = { .role = c->user.role, .user_id = c->user.id, .reason = "save",
                          .now = admin_now(c->a) };
    int rc = cms_post_save(c->a->store, p, &o, &chg, err);
    if (rc == 0)
        admin_notify(c->a, &chg);
    cms_change_clear(&chg);
    return rc;
}

int admin_restore(admin_ctx_t *c, int64_t post_id, int64_t rev_id, char err[CMS_ERR_LEN])
{
    cms_change_t chg = { 0 };
    cms_save_opts_t o = { .role = c->user.role, .user_id = c->user.id, .now = admin_now(c->a) };
    int rc = cms_revision_restore(c->a->store, post_id, rev_id, &o, &chg, err);
    if (rc == 0)
        admin_notify(c->a, &chg);
    cms_change_clear(&chg);
    return rc;
}

/* Split "a, b ,c" into trimmed non-empty pieces; calls fn for each. At most
 * `max` + 1 pieces are taken (validation then reports "at most"). */
static void split_csv(const char *csv, int max, void (*fn)(proto_post_t *, const char *, size_t),
                      proto_post_t *p)
{
    int n = 0;
    while (csv && *csv && n <= max) {
        const char *e = strchr(csv, ',');
        size_t len = e ? (size_t)(e - csv) : strlen(csv);
        const char *s = csv;
        while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
            s++, len--;
        while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r' ||
                           s[len - 1] == '\n'))
            len--;
        if (len > 0) {
            fn(p, s, len);
            n++;
        }
        csv = e ? e + 1 : NULL;
    }
}

static void add_tag(proto_post_t *p, const char *s, size_t len)
{
    p->tags = xrealloc(p->tags, (size_t)(p->ntags + 1) * sizeof(proto_tag_t));
    memset(&p->tags[p->ntags], 0, sizeof(proto_tag_t));
    p->tags[p->ntags++].name = xstrndup(s, len);
}

static void add_author(proto_post_t *p, const char *s, size_t len)
{
    p->authors = xrealloc(p->authors, (size_t)(p->nauthors + 1) * sizeof(proto_author_t));
    memset(&p->authors[p->nauthors], 0, sizeof(proto_author_t));
    p->authors[p->nauthors++].slug = xstrndup(s, len);
}

void admin_set_tags(proto_post_t *p, const char *csv)
{
    for (int i = 0; i < p->ntags; i++)
        proto_tag_clear(&p->tags[i]);
    free(p->tags);
    p->tags = NULL;
    p->ntags = 0;
    split_csv(csv, CMS_TAGS_MAX, add_tag, p);
}

void admin_set_authors(proto_post_t *p, const char *csv)
{
    for (int i = 0; i < p->nauthors; i++)
        proto_author_clear(&p->authors[i]);
    free(p->authors);
    p->authors = NULL;
    p->nauthors = 0;
    split_csv(csv, CMS_AUTHORS_MAX, add_author, p);
}

int admin_status_of(int rc, const char *err)
{
    switch (rc) {
    case -ENOENT:
        return err && strncmp(err, "authors:", 8) == 0 ? 422 : 404;
    case -EEXIST:
        return 409;
    case -EINVAL:
        return err && strncmp(err, "markdown:", 9) == 0 && strstr(err, "at most") ? 413 : 422;
    case -EACCES:
    case -EPERM:
        return 403;
    default:
        return 500;
    }
}

/* ---------------------------------------------------------------------------------
 * Page values
 * ------------------------------------------------------------------------------ */

static const char *status_name(int s)
{
    return s == PROTO_PUBLISHED ? "published" : s == PROTO_SCHEDULED ? "scheduled" : "draft";
}

static char *join_tags(const proto_post_t *p)
{
    buf_t b = BUF_INIT;
    for (int i = 0; i < p->ntags; i++)
        buf_printf(&b, "%s%s", i ? ", " : "", p->tags[i].name ? p->tags[i].name : p->tags[i].slug);
    return b.data ? buf_take(&b) : xstrdup("");
}

static char *join_authors(const proto_post_t *p, bool names)
{
    buf_t b = BUF_INIT;
    for (int i = 0; i < p->nauthors; i++) {
        const char *v = names && p->authors[i].name ? p->authors[i].name : p->authors[i].slug;
        buf_printf(&b, "%s%s", i ? ", " : "", v ? v : "");
    }
    return b.data ? buf_take(&b) : xstrdup("");
}

static void map_opt(tv_t *m, const char *k, const char *v)
{
    tv_map_str(m, k, v ? v : "");
}

/* The post's values for the list and the editor. */
static tv_t *post_value(const admin_ctx_t *c, const proto_post_t *p)
{
    tv_t *m = tv_map();
    char t[32], *s;
    tv_map_set(m, "id", tv_int(p->id));
    map_opt(m, "title", p->title);
    map_opt(m, "slug", p->slug);
    map_opt(m, "markdown", p->markdown);
    map_opt(m, "custom_excerpt", p->custom_excerpt);
    map_opt(m, "feature_image", p->feature_image);
    map_opt(m, "feature_image_alt", p->feature_image_alt);
    map_opt(m, "feature_image_caption", p->feature_image_caption);
    map_opt(m, "meta_title", p->meta_title);
    map_opt(m, "meta_description", p->meta_description);
    map_opt(m, "og_title", p->og_title);
    map_opt(m, "og_description", p->og_description);
    map_opt(m, "og_image", p->og_image);
    map_opt(m, "canonical_url", p->canonical_url);
    map_opt(m, "preview_token", p->preview_token);
    tv_map_set(m, "featured", tv_bool(p->featured));
    tv_map_set(m, "is_page", tv_bool(p->type == PROTO_PAGE));
    tv_map_str(m, "type", p->type == PROTO_PAGE ? "page" : "post");
    tv_map_str(m, "status", status_name(p->status));
    tv_map_set(m, "is_draft", tv_bool(p->status == PROTO_DRAFT));
    tv_map_set(m, "is_published", tv_bool(p->status == PROTO_PUBLISHED));
    tv_map_set(m, "is_scheduled", tv_bool(p->status == PROTO_SCHEDULED));
    admin_time_str(p->updated_at, t);
    tv_map_str(m, "updated", t);
    admin_time_str(p->published_at, t);
    tv_map_str(m, "published", t);
    if (p->published_at > 0) { /* for <input type=datetime-local> */
        t[10] = 'T';
        tv_map_str(m, "published_at_input", t);
    }
    s = join_tags(p);
    tv_map_str(m, "tags", s);
    free(s);
    s = join_authors(p, false);
    tv_map_str(m, "authors", s);
    free(s);
    s = join_authors(p, true);
    tv_map_str(m, "author_names", s);
    free(s);
    tv_map_set(m, "can_edit", tv_bool(p->id == 0 || admin_may(c, ADMIN_EDIT, p)));
    tv_map_set(m, "can_publish", tv_bool(admin_may(c, ADMIN_PUBLISH, p->id ? p : NULL)));
    tv_map_set(m, "can_delete", tv_bool(p->id != 0 && admin_may(c, ADMIN_DELETE, p)));
    return m;
}

/* ---------------------------------------------------------------------------------
 * The post list
 * ------------------------------------------------------------------------------ */

static int64_t param_id(admin_ctx_t *c, const char *name)
{
    const char *s = cn_http_param(c->req, name);
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    return s && *s && *end == '\0' && v > 0 ? v : -1;
}

static int on_list(admin_ctx_t *c)
{
    const char *status = cn_http_query_get(c->req, "status");
    const char *type = cn_http_query_get(c->req, "type");
    const char *tag = cn_http_query_get(c->req, "tag");
    const char *author = cn_http_query_get(c->req, "author");
    const char *pg = cn_http_query_get(c->req, "page");
    cms_list_q_t q = { .page = pg ? atoi(pg) : 1, .per_page = 25, .featured = -1,
                       .status = -1, .staff = true };
    if (q.page < 1 || q.page > 100000)
        q.page = 1;
    if (status && strcmp(status, "draft") == 0)
        q.status = PROTO_DRAFT;
    else if (status && strcmp(status, "scheduled") == 0)
        q.status = PROTO_SCHEDULED;
    else if (status && strcmp(status, "published") == 0)
        q.status = PROTO_PUBLISHED;
    q.pages = type && strcmp(type, "page") == 0;
    q.tag = tag && *tag ? tag : NULL;
    q.author = author && *author ? author : NULL;
    /* Authors and contributors see their own posts. */
    if (c->user.role < CMS_ROLE_EDITOR)
        q.author = c->user.profile.slug;
    proto_post_t *v = NULL;
    int n = 0;
    int64_t total = 0;
    char err[CMS_ERR_LEN] = "";
    int rc = cms_post_list(c->a->store, &q, &v, &n, &total, err);
    if (rc < 0) {
        proto_posts_free(v, n);
        return admin_error(c, 500, err);
    }
    tv_t *page = admin_page(c, q.pages ? "Pages" : "Posts");
    tv_t *list = tv_list();
    for (int i = 0; i < n; i++)
        tv_list_add(list, post_value(c, &v[i]));
    proto_posts_free(v, n);
    tv_map_set(page, "posts", list);
    tv_map_set(page, "total", tv_int(total));
    tv_map_set(page, "is_pages", tv_bool(q.pages));
    tv_map_str(page, "f_status", status ? status : "");
    tv_map_str(page, "f_tag", q.tag ? q.tag : "");
    tv_map_str(page, "f_author", author ? author : "");
    tv_map_set(page, "f_" "draft", tv_bool(q.status == PROTO_DRAFT));
    tv_map_set(page, "f_" "scheduled", tv_bool(q.status == PROTO_SCHEDULED));
    tv_map_set(page, "f_" "published", tv_bool(q.status == PROTO_PUBLISHED));
    /* Pagination links keep the filters. */
    char base[600];
    snprintf(base, sizeof base, "/admin/posts?type=%s&status=%s", q.pages ? "page" : "post",
             q.status == PROTO_DRAFT       ? "draft"
             : q.status == PROTO_SCHEDULED ? "scheduled"
             : q.status == PROTO_PUBLISHED ? "published"
                                           : "");
    if (q.page > 1) {
        char *u = xasprintf("%s&page=%d", base, q.page - 1);
        tv_map_str(page, "prev", u);
        free(u);
    }
    if ((int64_t)q.page * q.per_page < total) {
        char *u = xasprintf("%s&page=%d", base, q.page + 1);
        tv_map_str(page, "next", u);
        free(u);
    }
    return admin_render(c, 200, "posts", page);
}

/* ---------------------------------------------------------------------------------
 * The editor
 * ------------------------------------------------------------------------------ */

static void add_choices(admin_ctx_t *c, tv_t *page)
{
    proto_tag_t *tags = NULL;
    proto_author_t *authors = NULL;
    int nt = 0, na = 0;
    tv_t *tl = tv_list(), *al = tv_list();
    if (cms_tag_list(c->a->store, true, &tags, &nt, NULL) == 0)
        for (int i = 0; i < nt; i++)
            tv_list_add(tl, tv_str(tags[i].name));
    if (cms_author_list(c->a->store, &authors, &na, NULL) == 0)
        for (int i = 0; i < na; i++) {
            tv_t *a = tv_map();
            tv_map_str(a, "slug", authors[i].slug);
            tv_map_str(a, "name", authors[i].name);
            tv_list_add(al, a);
        }
    cms_tags_free(tags, nt);
    cms_authors_free(authors, na);
    tv_map_set(page, "all_tags", tl);
    tv_map_set(page, "all_authors", al);
    tv_map_set(page, "may_set_authors", tv_bool(c->user.role >= CMS_ROLE_EDITOR));
}

static int editor_page(admin_ctx_t *c, int status, const proto_post_t *p, const char *error,
                       const char *preview_html)
{
    tv_t *page = admin_page(c, p->id ? "Edit" : "New");
    tv_map_set(page, "post", post_value(c, p));
    tv_map_set(page, "is_new", tv_bool(p->id == 0));
    if (error)
        tv_map_str(page, "error", error);
    if (preview_html)
        tv_map_str(page, "preview_html", preview_html);
    add_choices(c, page);
    return admin_render(c, status, "editor", page);
}

static int on_new(admin_ctx_t *c)
{
    const char *type = cn_http_query_get(c->req, "type");
    proto_post_t p = { 0 };
    p.type = type && strcmp(type, "page") == 0 ? PROTO_PAGE : PROTO_POST;
    return editor_page(c, 200, &p, NULL, NULL);
}

static int on_edit(admin_ctx_t *c)
{
    int64_t id = param_id(c, "id");
    proto_post_t p = { 0 };
    if (id < 0 || cms_post_get(c->a->store, id, &p, NULL) < 0) {
        proto_post_clear(&p);
        return admin_error(c, 404, "No such post.");
    }
    if (!admin_may(c, ADMIN_EDIT, &p)) {
        proto_post_clear(&p);
        return admin_error(c, 403, "You may not edit this post.");
    }
    int rc = editor_page(c, 200, &p, NULL, NULL);
    proto_post_clear(&p);
    return rc;
}

/* An optional text field: NULL when empty. */
static char *form_str(admin_ctx_t *c, const char *name)
{
    const char *v = admin_form(c, name);
    return v && *v ? xstrdup(v) : NULL;
}

/* The post as the form describes it, on top of `old` (NULL for a new one). */
static void post_from_form(admin_ctx_t *c, proto_post_t *p, const proto_post_t *old)
{
    const char *type = admin_form(c, "type");
    p->id = old ? old->id : 0;
    p->status = old ? old->status : PROTO_DRAFT;
    p->published_at = old ? old->published_at : 0;
    p->preview_token = old ? cms_strdup(old->preview_token) : NULL;
    p->type = old ? old->type : type && strcmp(type, "page") == 0 ? PROTO_PAGE : PROTO_POST;
    const char *title = admin_form(c, "title");
    p->title = xstrdup(title ? title : "");
    p->slug = form_str(c, "slug");
    const char *md = admin_form(c, "markdown");
    p->markdown = xstrdup(md ? md : "");
    p->custom_excerpt = form_str(c, "custom_excerpt");
    p->feature_image = form_str(c, "feature_image");
    p->feature_image_alt = form_str(c, "feature_image_alt");
    p->feature_image_caption = form_str(c, "feature_image_caption");
    p->meta_title = form_str(c, "meta_title");
    p->meta_description = form_str(c, "meta_description");
    p->og_title = form_str(c, "og_title");
    p->og_description = form_str(c, "og_description");
    p->og_image = form_str(c, "og_image");
    p->canonical_url = form_str(c, "canonical_url");
    p->featured = admin_form(c, "featured") != NULL;
    admin_set_tags(p, admin_form(c, "tags"));
    if (old && c->user.role < CMS_ROLE_EDITOR)
        copy_authors(p, old);
    else
        admin_set_authors(p, admin_form(c, "authors"));
}

/* Markdown to HTML as this user's role may (raw HTML for editors and above). */
static int render_preview(admin_ctx_t *c, const char *md, char **html, char *err)
{
    char *text = NULL;
    size_t len = md ? strlen(md) : 0;
    if (len > CMS_MARKDOWN_MAX) {
        snprintf(err, CMS_ERR_LEN, "markdown: %zu bytes, at most %d", len, CMS_MARKDOWN_MAX);
        return -EINVAL;
    }
    if (md && !proto_utf8_valid(md, len)) {
        snprintf(err, CMS_ERR_LEN, "markdown: not valid UTF-8");
        return -EINVAL;
    }
    if (cms_markdown_render(md ? md : "", len, cms_role_allows_html(c->user.role), html,
                            &text) < 0) {
        snprintf(err, CMS_ERR_LEN, "markdown: could not be rendered");
        return -EINVAL;
    }
    free(text);
    return 0;
}

static int on_save(admin_ctx_t *c)
{
    int64_t id = cn_http_param(c->req, "id") ? param_id(c, "id") : 0;
    const char *action = admin_form(c, "action");
    proto_post_t old = { 0 }, p = { 0 };
    char err[CMS_ERR_LEN] = "", path[64];
    int64_t at = 0, now = admin_now(c->a);
    int rc = 0;
    const char *notice = "saved";
    if (action == NULL)
        action = "save";
    if (id < 0 || (id > 0 && cms_post_get(c->a->store, id, &old, NULL) < 0)) {
        rc = admin_error(c, 404, "No such post.");
        goto out;
    }
    post_from_form(c, &p, id ? &old : NULL);
    if (strcmp(action, "preview") == 0) {
        char *html = NULL;
        if (render_preview(c, p.markdown, &html, err) < 0)
            rc = editor_page(c, admin_status_of(-EINVAL, err), &p, err, NULL);
        else
            rc = editor_page(c, 200, &p, NULL, html);
        free(html);
        goto out;
    }
    if (id && !admin_may(c, ADMIN_EDIT, &old)) {
        rc = admin_error(c, 403, "You may not edit this post.");
        goto out;
    }
    bool publish = strcmp(action, "publish") == 0, schedule = strcmp(action, "schedule") == 0,
         unpublish = strcmp(action, "unpublish") == 0;
    if (!publish && !schedule && !unpublish && strcmp(action, "save") != 0) {
        rc = editor_page(c, 400, &p, "Unknown action.", NULL);
        goto out;
    }
    if ((publish || schedule || unpublish) && !admin_may(c, ADMIN_PUBLISH, id ? &old : NULL)) {
        rc = editor_page(c, 403, &p, "Your role may not publish, schedule or unpublish: "
                                     "an editor will publish it.", NULL);
        goto out;
    }
    if (schedule) {
        const char *when = admin_form(c, "published_at");
        if (when == NULL || cms_time_parse(when, &at) < 0 || at <= now) {
            rc = editor_page(c, 422, &p, "published_at: give a date and time in the future "
                                         "(UTC) to schedule.", NULL);
            goto out;
        }
    }
    if ((rc = admin_save_post(c, &p, id ? &old : NULL, err)) < 0) {
        rc = editor_page(c, admin_status_of(rc, err), &p, err, NULL);
        goto out;
    }
    if (publish || schedule || unpublish) {
        rc = admin_workflow(c->a, publish ? "publish" : schedule ? "schedule" : "unpublish",
                            p.id, at);
        if (rc < 0) {
            rc = admin_error(c, 500, "Saved, but the status could not be changed.");
            goto out;
        }
        notice = publish ? "published" : schedule ? "scheduled" : "unpublished";
    }
    snprintf(path, sizeof path, "/admin/posts/%lld?notice=%s", (long long)p.id, notice);
    rc = admin_redirect(c, path);
out:
    proto_post_clear(&old);
    proto_post_clear(&p);
    return rc;
}

static int on_delete(admin_ctx_t *c)
{
    int64_t id = param_id(c, "id");
    proto_post_t old = { 0 };
    int rc;
    if (id < 0 || cms_post_get(c->a->store, id, &old, NULL) < 0)
        rc = admin_error(c, 404, "No such post.");
    else if (!admin_may(c, ADMIN_DELETE, &old))
        rc = admin_error(c, 403, "You may not delete this post.");
    else if (admin_workflow(c->a, "delete", id, 0) < 0)
        rc = admin_error(c, 500, "The post could not be deleted.");
    else
        rc = admin_redirect(c, "/admin/posts?notice=deleted");
    proto_post_clear(&old);
    return rc;
}

/* The live preview (editor.js): Markdown in, an HTML fragment out. */
static int on_preview(admin_ctx_t *c)
{
    char *html = NULL, err[CMS_ERR_LEN];
    if (render_preview(c, admin_form(c, "markdown"), &html, err) < 0)
        return cn_http_reply(c->req, admin_status_of(-EINVAL, err), "text/plain; charset=utf-8",
                             err, strlen(err));
    int rc = cn_http_reply(c->req, 200, "text/html; charset=utf-8", html, strlen(html));
    free(html);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Revisions
 * ------------------------------------------------------------------------------ */

static int on_revisions(admin_ctx_t *c)
{
    int64_t id = param_id(c, "id");
    proto_post_t p = { 0 };
    cms_revision_t *v = NULL;
    int n = 0, rc;
    if (id < 0 || cms_post_get(c->a->store, id, &p, NULL) < 0) {
        rc = admin_error(c, 404, "No such post.");
        goto out;
    }
    if (!admin_may(c, ADMIN_EDIT, &p)) {
        rc = admin_error(c, 403, "You may not edit this post.");
        goto out;
    }
    if (cms_revision_list(c->a->store, id, &v, &n, NULL) < 0) {
        rc = admin_error(c, 500, "Revisions could not be read.");
        goto out;
    }
    tv_t *page = admin_page(c, "Revisions");
    tv_map_set(page, "post", post_value(c, &p));
    tv_t *list = tv_list();
    for (int i = 0; i < n; i++) {
        tv_t *r = tv_map();
        char t[32];
        tv_map_set(r, "id", tv_int(v[i].id));
        admin_time_str(v[i].created_at, t);
        tv_map_str(r, "created", t);
        map_opt(r, "title", v[i].title);
        map_opt(r, "markdown", v[i].markdown);
        map_opt(r, "reason", v[i].reason);
        tv_map_set(r, "current", tv_bool(i == 0));
        tv_list_add(list, r);
    }
    tv_map_set(page, "revisions", list);
    rc = admin_render(c, 200, "revisions", page);
out:
    cms_revisions_free(v, n);
    proto_post_clear(&p);
    return rc;
}

static int on_restore(admin_ctx_t *c)
{
    int64_t id = param_id(c, "id"), rev = param_id(c, "rev");
    proto_post_t p = { 0 };
    char err[CMS_ERR_LEN] = "", path[80];
    int rc;
    if (id < 0 || rev < 0 || cms_post_get(c->a->store, id, &p, NULL) < 0)
        rc = admin_error(c, 404, "No such post.");
    else if (!admin_may(c, ADMIN_EDIT, &p))
        rc = admin_error(c, 403, "You may not edit this post.");
    else if ((rc = admin_restore(c, id, rev, err)) < 0)
        rc = admin_error(c, admin_status_of(rc, err), err);
    else {
        snprintf(path, sizeof path, "/admin/posts/%lld?notice=restored", (long long)id);
        rc = admin_redirect(c, path);
    }
    proto_post_clear(&p);
    return rc;
}

const admin_route_t cms_admin_post_routes[] = {
    { "GET", "/admin/posts", on_list, 0 },
    { "GET", "/admin/posts/new", on_new, 0 },
    { "POST", "/admin/posts", on_save, 0 },
    { "GET", "/admin/posts/:id", on_edit, 0 },
    { "POST", "/admin/posts/:id", on_save, 0 },
    { "POST", "/admin/posts/:id/delete", on_delete, 0 },
    { "GET", "/admin/posts/:id/revisions", on_revisions, 0 },
    { "POST", "/admin/posts/:id/revisions/:rev/restore", on_restore, 0 },
    { "POST", "/admin/preview", on_preview, 0 },
    { NULL, NULL, NULL, 0 },
};
