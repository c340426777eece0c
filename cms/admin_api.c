/* admin_api.c - the JSON Admin API under /admin/api/v1/, for scripts and tools:
 * the same operations as the pages, with the same role rules, authenticated by
 * an admin API key (Authorization: Bearer ID.SECRET, made with `oneblog-cms
 * api-key add`) that acts as its user. Session cookies are not accepted here, so
 * the API needs no CSRF token.
 *
 *   GET    /admin/api/v1/me
 *   GET    /admin/api/v1/posts?status=&type=&tag=&author=&page=&per_page=
 *   POST   /admin/api/v1/posts                     {title, markdown, ...} -> 201
 *   GET    /admin/api/v1/posts/:id
 *   PUT    /admin/api/v1/posts/:id                 fields given replace, others stay
 *   DELETE /admin/api/v1/posts/:id
 *   POST   /admin/api/v1/posts/:id/publish | unpublish
 *   POST   /admin/api/v1/posts/:id/schedule        {published_at: ISO 8601 | seconds}
 *   GET    /admin/api/v1/posts/:id/revisions
 *   POST   /admin/api/v1/posts/:id/revisions/:rev/restore
 *   GET    /admin/api/v1/tags          POST /admin/api/v1/tags {name, slug, ...}
 *   GET    /admin/api/v1/users         POST /admin/api/v1/users {email, name, role, password}
 *   PUT    /admin/api/v1/users/:id     {role}
 *   GET    /admin/api/v1/settings      PUT /admin/api/v1/settings {key: value, ...}
 *
 * A post's "status" in POST or PUT ("draft", "published", "scheduled" with
 * published_at) runs the matching workflow step after the save. Errors are
 * {"error": {"code", "message"}} with 400 (not JSON), 401 (no or a bad key), 403
 * (the role may not), 404, 409 (a slug or email taken), 413 (too large), 422
 * (a field is invalid: the message names it).
 */
#include "admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

/* ---------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------ */

static int reply_json(admin_ctx_t *c, int status, json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    int rc = cn_http_reply_json(c->req, status, s ? s : "{}");
    free(s);
    return rc;
}

int admin_api_error(admin_ctx_t *c, int status, const char *code, const char *message)
{
    return reply_json(c, status, json_pack("{s:{s:s,s:s}}", "error", "code", code, "message",
                                           message));
}

static const char *code_of(int status)
{
    switch (status) {
    case 400: return "bad_request";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 409: return "conflict";
    case 413: return "too_large";
    case 422: return "invalid";
    default: return "internal";
    }
}

/* A store error as an API error. */
static int store_error(admin_ctx_t *c, int rc, const char *err)
{
    int st = admin_status_of(rc, err);
    return admin_api_error(c, st, code_of(st), err && *err ? err : cn_strerror(rc));
}

static json_t *jstr(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *jtime(int64_t t)
{
    char iso[32];
    if (t <= 0)
        return json_null();
    cms_time_iso(t, iso);
    return json_string(iso);
}

static const char *status_name(int s)
{
    return s == PROTO_PUBLISHED ? "published" : s == PROTO_SCHEDULED ? "scheduled" : "draft";
}

static json_t *post_json(const proto_post_t *p, bool full)
{
    json_t *o = json_object(), *tags = json_array(), *authors = json_array();
    json_object_set_new(o, "id", json_integer(p->id));
    json_object_set_new(o, "type", json_string(p->type == PROTO_PAGE ? "page" : "post"));
    json_object_set_new(o, "status", json_string(status_name(p->status)));
    json_object_set_new(o, "title", jstr(p->title));
    json_object_set_new(o, "slug", jstr(p->slug));
    if (full) {
        json_object_set_new(o, "markdown", jstr(p->markdown));
        json_object_set_new(o, "html", jstr(p->html));
    }
    json_object_set_new(o, "custom_excerpt", jstr(p->custom_excerpt));
    json_object_set_new(o, "excerpt", jstr(p->excerpt));
    json_object_set_new(o, "feature_image", jstr(p->feature_image));
    json_object_set_new(o, "feature_image_alt", jstr(p->feature_image_alt));
    json_object_set_new(o, "feature_image_caption", jstr(p->feature_image_caption));
    json_object_set_new(o, "featured", json_boolean(p->featured));
    json_object_set_new(o, "meta_title", jstr(p->meta_title));
    json_object_set_new(o, "meta_description", jstr(p->meta_description));
    json_object_set_new(o, "og_title", jstr(p->og_title));
    json_object_set_new(o, "og_description", jstr(p->og_description));
    json_object_set_new(o, "og_image", jstr(p->og_image));
    json_object_set_new(o, "canonical_url", jstr(p->canonical_url));
    json_object_set_new(o, "created_at", jtime(p->created_at));
    json_object_set_new(o, "updated_at", jtime(p->updated_at));
    json_object_set_new(o, "published_at", jtime(p->published_at));
    for (int i = 0; i < p->ntags; i++)
        json_array_append_new(tags, json_pack("{s:s?,s:s?}", "slug", p->tags[i].slug, "name",
                                              p->tags[i].name));
    for (int i = 0; i < p->nauthors; i++)
        json_array_append_new(authors, json_pack("{s:s?,s:s?}", "slug", p->authors[i].slug,
                                                 "name", p->authors[i].name));
    json_object_set_new(o, "tags", tags);
    json_object_set_new(o, "authors", authors);
    return o;
}

static json_t *user_json(const cms_user_t *u)
{
    return json_pack("{s:I,s:s?,s:s?,s:s?,s:s}", "id", (json_int_t)u->id, "slug",
                     u->profile.slug, "name", u->profile.name, "email", u->email, "role",
                     cms_role_name(u->role));
}

/* ---------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------ */

/* The body as a JSON object, or an error reply already sent (*out NULL). */
static int read_body(admin_ctx_t *c, json_t **out)
{
    json_error_t je;
    char msg[300];
    *out = NULL;
    const char *ct = cn_http_header(c->req, "Content-Type");
    if (ct && strncmp(ct, "application/json", 16) != 0)
        return admin_api_error(c, 415, "unsupported_media_type", "send application/json");
    json_t *j = json_loadb(c->req->body, c->req->body_len, JSON_REJECT_DUPLICATES, &je);
    if (j == NULL) {
        snprintf(msg, sizeof msg, "body is not valid JSON (UTF-8): %s at line %d", je.text,
                 je.line);
        return admin_api_error(c, 400, "bad_json", msg);
    }
    if (!json_is_object(j)) {
        json_decref(j);
        return admin_api_error(c, 400, "bad_json", "body must be a JSON object");
    }
    *out = j;
    return 0;
}

static int64_t param_id(admin_ctx_t *c, const char *name)
{
    const char *s = cn_http_param(c->req, name);
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    return s && *s && *end == '\0' && v > 0 ? v : -1;
}

/* Set *dst from string field k of o when present (null clears it). */
static int take_str(json_t *o, const char *k, char **dst, char *err)
{
    json_t *v = json_object_get(o, k);
    if (v == NULL)
        return 0;
    if (json_is_null(v)) {
        free(*dst);
        *dst = NULL;
        return 0;
    }
    if (!json_is_string(v)) {
        snprintf(err, CMS_ERR_LEN, "%s: must be a string", k);
        return -EINVAL;
    }
    free(*dst);
    *dst = xstrndup(json_string_value(v), json_string_length(v));
    return 0;
}

/* A list of names or slugs: strings, or objects with `key`. */
static int take_list(json_t *o, const char *k, const char *key, buf_t *csv, bool *given, char *err)
{
    json_t *v = json_object_get(o, k), *it;
    size_t i;
    *given = v != NULL;
    if (v == NULL)
        return 0;
    if (!json_is_array(v)) {
        snprintf(err, CMS_ERR_LEN, "%s: must be an array", k);
        return -EINVAL;
    }
    json_array_foreach(v, i, it) {
        const char *s = json_is_string(it) ? json_string_value(it)
                        : json_is_object(it) ? json_string_value(json_object_get(it, key))
                                             : NULL;
        if (s == NULL || strchr(s, ',')) {
            snprintf(err, CMS_ERR_LEN, "%s[%zu]: must be a %s string without commas", k, i, key);
            return -EINVAL;
        }
        buf_printf(csv, "%s%s", i ? "," : "", s);
    }
    return 0;
}

/* Apply the JSON fields to p. *status gets the requested status (-1: none) and
 * *at the schedule time. */
static int post_from_json(admin_ctx_t *c, json_t *o, proto_post_t *p, const proto_post_t *old,
                          int *status, int64_t *at, char *err)
{
    static const struct {
        const char *k;
        size_t off;
    } strs[] = {
#define F(x) { #x, offsetof(proto_post_t, x) }
        F(title), F(slug), F(markdown), F(custom_excerpt), F(feature_image),
        F(feature_image_alt), F(feature_image_caption), F(meta_title), F(meta_description),
        F(og_title), F(og_description), F(og_image), F(canonical_url),
#undef F
    };
    int rc;
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        if ((rc = take_str(o, strs[i].k, (char **)((char *)p + strs[i].off), err)) < 0)
            return rc;
    json_t *v;
    if ((v = json_object_get(o, "featured")) != NULL) {
        if (!json_is_boolean(v)) {
            snprintf(err, CMS_ERR_LEN, "featured: must be true or false");
            return -EINVAL;
        }
        p->featured = json_is_true(v);
    }
    if ((v = json_object_get(o, "type")) != NULL && !old) {
        const char *t = json_string_value(v);
        if (t == NULL || (strcmp(t, "post") != 0 && strcmp(t, "page") != 0)) {
            snprintf(err, CMS_ERR_LEN, "type: must be post or page");
            return -EINVAL;
        }
        p->type = strcmp(t, "page") == 0 ? PROTO_PAGE : PROTO_POST;
    }
    buf_t tags = BUF_INIT, authors = BUF_INIT;
    bool tg, ag;
    if ((rc = take_list(o, "tags", "name", &tags, &tg, err)) < 0 ||
        (rc = take_list(o, "authors", "slug", &authors, &ag, err)) < 0)
        goto out;
    if (tg)
        admin_set_tags(p, tags.data ? tags.data : "");
    if (ag && c->user.role >= CMS_ROLE_EDITOR)
        admin_set_authors(p, authors.data ? authors.data : "");
    *status = -1;
    if ((v = json_object_get(o, "status")) != NULL) {
        const char *s = json_string_value(v);
        *status = s == NULL ? -2 : strcmp(s, "draft") == 0       ? PROTO_DRAFT
                             : strcmp(s, "published") == 0 ? PROTO_PUBLISHED
                             : strcmp(s, "scheduled") == 0 ? PROTO_SCHEDULED
                                                           : -2;
        if (*status == -2) {
            snprintf(err, CMS_ERR_LEN, "status: must be draft, published or scheduled");
            rc = -EINVAL;
            goto out;
        }
    }
    if ((v = json_object_get(o, "published_at")) != NULL && !json_is_null(v)) {
        if (json_is_integer(v))
            *at = json_integer_value(v);
        else if (!json_is_string(v) || cms_time_parse(json_string_value(v), at) < 0) {
            snprintf(err, CMS_ERR_LEN, "published_at: an ISO 8601 time or seconds since 1970");
            rc = -EINVAL;
            goto out;
        }
    }
    if (*status == PROTO_SCHEDULED && *at <= admin_now(c->a)) {
        snprintf(err, CMS_ERR_LEN, "published_at: a schedule must be in the future");
        rc = -EINVAL;
    }
out:
    buf_free(&tags);
    buf_free(&authors);
    return rc;
}

/* Reply with post id as it is now. */
static int reply_post(admin_ctx_t *c, int status, int64_t id)
{
    proto_post_t p = { 0 };
    char err[CMS_ERR_LEN] = "";
    int rc = cms_post_get(c->a->store, id, &p, err);
    if (rc < 0)
        rc = store_error(c, rc, err);
    else
        rc = reply_json(c, status, json_pack("{s:o}", "post", post_json(&p, true)));
    proto_post_clear(&p);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Posts
 * ------------------------------------------------------------------------------ */

static int on_me(admin_ctx_t *c)
{
    return reply_json(c, 200, json_pack("{s:o}", "user", user_json(&c->user)));
}

static int on_posts(admin_ctx_t *c)
{
    const char *status = cn_http_query_get(c->req, "status");
    const char *type = cn_http_query_get(c->req, "type");
    const char *pg = cn_http_query_get(c->req, "page");
    const char *per = cn_http_query_get(c->req, "per_page");
    cms_list_q_t q = { .page = pg ? atoi(pg) : 1, .per_page = per ? atoi(per) : 25,
                       .featured = -1, .status = -1, .staff = true,
                       .tag = cn_http_query_get(c->req, "tag"),
                       .author = cn_http_query_get(c->req, "author") };
    if (q.page < 1 || q.per_page < 1 || q.per_page > PROTO_PER_PAGE_MAX)
        return admin_api_error(c, 400, "bad_request", "page >= 1, per_page 1..100");
    if (status) {
        q.status = strcmp(status, "draft") == 0       ? PROTO_DRAFT
                   : strcmp(status, "scheduled") == 0 ? PROTO_SCHEDULED
                   : strcmp(status, "published") == 0 ? PROTO_PUBLISHED
                                                      : -2;
        if (q.status == -2)
            return admin_api_error(c, 400, "bad_request",
                                   "status: draft, scheduled or published");
    }
    q.pages = type && strcmp(type, "page") == 0;
    if (c->user.role < CMS_ROLE_EDITOR)
        q.author = c->user.profile.slug;
    proto_post_t *v = NULL;
    int n = 0;
    int64_t total = 0;
    char err[CMS_ERR_LEN] = "";
    int rc = cms_post_list(c->a->store, &q, &v, &n, &total, err);
    if (rc < 0) {
        proto_posts_free(v, n);
        return store_error(c, rc, err);
    }
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, post_json(&v[i], false));
    proto_posts_free(v, n);
    return reply_json(c, 200, json_pack("{s:o,s:{s:i,s:i,s:I}}", "posts", arr, "meta", "page",
                                        q.page, "per_page", q.per_page, "total",
                                        (json_int_t)total));
}

/* Load post :id and check the user may `act` on it; on failure the reply is sent
 * and *ok is false. */
static int load_post(admin_ctx_t *c, admin_action_t act, proto_post_t *p, bool *ok)
{
    int64_t id = param_id(c, "id");
    *ok = false;
    if (id < 0 || cms_post_get(c->a->store, id, p, NULL) < 0)
        return admin_api_error(c, 404, "not_found", "no such post");
    if (!admin_may(c, act, p))
        return admin_api_error(c, 403, "forbidden",
                               act == ADMIN_PUBLISH
                                   ? "your role may not publish, schedule or unpublish this post"
                                   : "your role may not change this post");
    *ok = true;
    return 0;
}

/* Run the workflow step a requested status asks for. */
static int apply_status(admin_ctx_t *c, const proto_post_t *p, int was, int status, int64_t at)
{
    if (status < 0 || (status == was && status != PROTO_SCHEDULED))
        return 0;
    const char *op = status == PROTO_PUBLISHED ? "publish"
                     : status == PROTO_SCHEDULED ? "schedule"
                                                 : "unpublish";
    return admin_workflow(c->a, op, p->id, at);
}

static int save(admin_ctx_t *c, const proto_post_t *old)
{
    json_t *body;
    proto_post_t p = { 0 };
    char err[CMS_ERR_LEN] = "";
    int status = -1, rc;
    int64_t at = 0;
    if ((rc = read_body(c, &body)) < 0 || body == NULL)
        return rc;
    if (old) { /* start from the stored post (a fresh copy): absent fields stay */
        if ((rc = cms_post_get(c->a->store, old->id, &p, err)) < 0) {
            rc = store_error(c, rc, err);
            goto out;
        }
        free(p.html);
        p.html = NULL;
    }
    if ((rc = post_from_json(c, body, &p, old, &status, &at, err)) < 0) {
        rc = store_error(c, rc, err);
        goto out;
    }
    if (status >= 0 && (!old || status != old->status) &&
        !admin_may(c, ADMIN_PUBLISH, old)) {
        rc = admin_api_error(c, 403, "forbidden",
                             "your role may not publish, schedule or unpublish");
        goto out;
    }
    if (p.title == NULL && !old) {
        rc = admin_api_error(c, 422, "invalid", "title: required");
        goto out;
    }
    if ((rc = admin_save_post(c, &p, old, err)) < 0) {
        rc = store_error(c, rc, err);
        goto out;
    }
    if ((rc = apply_status(c, &p, old ? old->status : PROTO_DRAFT, status, at)) < 0) {
        rc = store_error(c, rc, "saved, but the status could not be changed");
        goto out;
    }
    rc = reply_post(c, old ? 200 : 201, p.id);
out:
    json_decref(body);
    proto_post_clear(&p);
    return rc;
}

static int on_create(admin_ctx_t *c)
{
    return save(c, NULL);
}

static int on_get(admin_ctx_t *c)
{
    proto_post_t p = { 0 };
    bool ok;
    int rc = load_post(c, ADMIN_VIEW, &p, &ok);
    if (ok)
        rc = reply_json(c, 200, json_pack("{s:o}", "post", post_json(&p, true)));
    proto_post_clear(&p);
    return rc;
}

static int on_update(admin_ctx_t *c)
{
    proto_post_t old = { 0 };
    bool ok;
    int rc = load_post(c, ADMIN_EDIT, &old, &ok);
    if (ok)
        rc = save(c, &old);
    proto_post_clear(&old);
    return rc;
}

static int on_delete(admin_ctx_t *c)
{
    proto_post_t p = { 0 };
    bool ok;
    int rc = load_post(c, ADMIN_DELETE, &p, &ok);
    if (ok) {
        rc = admin_workflow(c->a, "delete", p.id, 0);
        rc = rc < 0 ? store_error(c, rc, "could not delete")
                    : reply_json(c, 200, json_pack("{s:b,s:I}", "deleted", 1, "id",
                                                   (json_int_t)p.id));
    }
    proto_post_clear(&p);
    return rc;
}

static int workflow(admin_ctx_t *c, const char *op)
{
    proto_post_t p = { 0 };
    bool ok;
    int64_t at = 0;
    char err[CMS_ERR_LEN] = "";
    int rc = load_post(c, ADMIN_PUBLISH, &p, &ok);
    if (!ok)
        goto out;
    if (strcmp(op, "schedule") == 0) {
        json_t *body, *v;
        if ((rc = read_body(c, &body)) < 0 || body == NULL)
            goto out;
        v = json_object_get(body, "published_at");
        if (v && json_is_integer(v))
            at = json_integer_value(v);
        else if (!v || !json_is_string(v) || cms_time_parse(json_string_value(v), &at) < 0)
            at = 0;
        json_decref(body);
        if (at <= admin_now(c->a)) {
            rc = admin_api_error(c, 422, "invalid",
                                 "published_at: a time in the future (ISO 8601 or seconds)");
            goto out;
        }
    }
    if ((rc = admin_workflow(c->a, op, p.id, at)) < 0) {
        snprintf(err, sizeof err, "%s failed", op);
        rc = store_error(c, rc, err);
        goto out;
    }
    rc = reply_post(c, 200, p.id);
out:
    proto_post_clear(&p);
    return rc;
}

static int on_publish(admin_ctx_t *c)
{
    return workflow(c, "publish");
}

static int on_unpublish(admin_ctx_t *c)
{
    return workflow(c, "unpublish");
}

static int on_schedule(admin_ctx_t *c)
{
    return workflow(c, "schedule");
}

static int on_revisions(admin_ctx_t *c)
{
    proto_post_t p = { 0 };
    cms_revision_t *v = NULL;
    int n = 0;
    bool ok;
    int rc = load_post(c, ADMIN_EDIT, &p, &ok);
    if (ok) {
        char err[CMS_ERR_LEN] = "";
        if ((rc = cms_revision_list(c->a->store, p.id, &v, &n, err)) < 0) {
            rc = store_error(c, rc, err);
        } else {
            json_t *arr = json_array();
            for (int i = 0; i < n; i++)
                json_array_append_new(arr, json_pack("{s:I,s:s?,s:s?,s:s?,s:o}", "id",
                                                     (json_int_t)v[i].id, "title", v[i].title,
                                                     "markdown", v[i].markdown, "reason",
                                                     v[i].reason, "created_at",
                                                     jtime(v[i].created_at)));
            rc = reply_json(c, 200, json_pack("{s:o}", "revisions", arr));
        }
    }
    cms_revisions_free(v, n);
    proto_post_clear(&p);
    return rc;
}

static int on_restore(admin_ctx_t *c)
{
    proto_post_t p = { 0 };
    bool ok;
    char err[CMS_ERR_LEN] = "";
    int64_t rev = param_id(c, "rev");
    int rc = load_post(c, ADMIN_EDIT, &p, &ok);
    if (ok) {
        if (rev < 0 || (rc = admin_restore(c, p.id, rev, err)) < 0)
            rc = rev < 0 ? admin_api_error(c, 404, "not_found", "no such revision")
                         : store_error(c, rc, err);
        else
            rc = reply_post(c, 200, p.id);
    }
    proto_post_clear(&p);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Tags, users, settings
 * ------------------------------------------------------------------------------ */

static int on_tags(admin_ctx_t *c)
{
    proto_tag_t *v = NULL;
    int n = 0;
    char err[CMS_ERR_LEN] = "";
    int rc = cms_tag_list(c->a->store, true, &v, &n, err);
    if (rc < 0)
        return store_error(c, rc, err);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:I,s:s?,s:s?,s:s?,s:b,s:I}", "id",
                                             (json_int_t)v[i].id, "slug", v[i].slug, "name",
                                             v[i].name, "description", v[i].description,
                                             "internal", v[i].internal, "post_count",
                                             (json_int_t)v[i].post_count));
    cms_tags_free(v, n);
    return reply_json(c, 200, json_pack("{s:o}", "tags", arr));
}

static int on_tag_save(admin_ctx_t *c)
{
    json_t *body;
    proto_tag_t t = { 0 };
    char err[CMS_ERR_LEN] = "";
    int rc;
    if (c->user.role < CMS_ROLE_EDITOR)
        return admin_api_error(c, 403, "forbidden", "tags are managed by editors");
    if ((rc = read_body(c, &body)) < 0 || body == NULL)
        return rc;
    if ((rc = take_str(body, "name", &t.name, err)) < 0 ||
        (rc = take_str(body, "slug", &t.slug, err)) < 0 ||
        (rc = take_str(body, "description", &t.description, err)) < 0 ||
        (rc = take_str(body, "feature_image", &t.feature_image, err)) < 0 ||
        (rc = take_str(body, "meta_title", &t.meta_title, err)) < 0 ||
        (rc = take_str(body, "meta_description", &t.meta_description, err)) < 0 ||
        (rc = admin_tag_save(c, &t, err)) < 0)
        rc = store_error(c, rc, err);
    else
        rc = reply_json(c, 200, json_pack("{s:{s:I,s:s?,s:s?}}", "tag", "id", (json_int_t)t.id,
                                          "slug", t.slug, "name", t.name));
    proto_tag_clear(&t);
    json_decref(body);
    return rc;
}

static int on_users(admin_ctx_t *c)
{
    cms_user_t *v = NULL;
    int n = 0;
    char err[CMS_ERR_LEN] = "";
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_api_error(c, 403, "forbidden", "staff are managed by administrators");
    int rc = cms_user_list(c->a->store, &v, &n, err);
    if (rc < 0)
        return store_error(c, rc, err);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(arr, user_json(&v[i]));
    cms_users_free(v, n);
    return reply_json(c, 200, json_pack("{s:o}", "users", arr));
}

static int on_user_add(admin_ctx_t *c)
{
    json_t *body;
    cms_user_t u = { 0 };
    char err[CMS_ERR_LEN] = "";
    int rc;
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_api_error(c, 403, "forbidden", "staff are managed by administrators");
    if ((rc = read_body(c, &body)) < 0 || body == NULL)
        return rc;
    rc = admin_user_add(c, json_string_value(json_object_get(body, "email")),
                        json_string_value(json_object_get(body, "name")),
                        json_string_value(json_object_get(body, "role")),
                        json_string_value(json_object_get(body, "password")), &u, err);
    if (rc < 0)
        rc = store_error(c, rc, err);
    else
        rc = reply_json(c, 201, json_pack("{s:o}", "user", user_json(&u)));
    cms_user_clear(&u);
    json_decref(body);
    return rc;
}

static int on_user_role(admin_ctx_t *c)
{
    json_t *body;
    char err[CMS_ERR_LEN] = "";
    int rc;
    int64_t id = param_id(c, "id");
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_api_error(c, 403, "forbidden", "staff are managed by administrators");
    if ((rc = read_body(c, &body)) < 0 || body == NULL)
        return rc;
    rc = admin_user_set_role(c, id, json_string_value(json_object_get(body, "role")), err);
    json_decref(body);
    if (rc < 0)
        return store_error(c, rc, err);
    cms_user_t u = { 0 };
    if ((rc = cms_user_get(c->a->store, id, &u, err)) < 0)
        rc = store_error(c, rc, err);
    else
        rc = reply_json(c, 200, json_pack("{s:o}", "user", user_json(&u)));
    cms_user_clear(&u);
    return rc;
}

static json_t *settings_json(const proto_settings_t *s)
{
    json_t *nav = json_array();
    for (int i = 0; i < s->nnavigation; i++)
        json_array_append_new(nav, json_pack("{s:s?,s:s?}", "label", s->navigation[i].label,
                                             "url", s->navigation[i].url));
    return json_pack("{s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:i,s:o}", "title", s->title,
                     "description", s->description, "url", s->url, "timezone", s->timezone,
                     "locale", s->locale, "logo", s->logo, "accent_color", s->accent_color,
                     "posts_per_page", s->posts_per_page, "navigation", nav);
}

static int reply_settings(admin_ctx_t *c)
{
    proto_settings_t s = { 0 };
    char err[CMS_ERR_LEN] = "";
    int rc = cms_settings_get(c->a->store, &s, err);
    rc = rc < 0 ? store_error(c, rc, err)
                : reply_json(c, 200, json_pack("{s:o}", "settings", settings_json(&s)));
    proto_settings_clear(&s);
    return rc;
}

static int on_settings(admin_ctx_t *c)
{
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_api_error(c, 403, "forbidden", "settings are managed by administrators");
    return reply_settings(c);
}

/* Settings values from a JSON object: strings as they are, numbers and arrays
 * (navigation) as JSON text. The texts live in the `keep` array. */
typedef struct json_get {
    json_t *body;
    char *keep[16];
    int nkeep;
} json_get_t;

static const char *json_setting(void *arg, const char *key)
{
    json_get_t *g = arg;
    json_t *v = json_object_get(g->body, key);
    if (v == NULL || g->nkeep == 16)
        return NULL;
    if (json_is_string(v))
        return json_string_value(v);
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    g->keep[g->nkeep++] = s;
    return s;
}

static int on_settings_save(admin_ctx_t *c)
{
    json_t *body;
    char err[CMS_ERR_LEN] = "";
    int rc;
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_api_error(c, 403, "forbidden", "settings are managed by administrators");
    if ((rc = read_body(c, &body)) < 0 || body == NULL)
        return rc;
    json_get_t g = { .body = body };
    rc = admin_settings_apply(c, json_setting, &g, err);
    for (int i = 0; i < g.nkeep; i++)
        free(g.keep[i]);
    json_decref(body);
    return rc < 0 ? store_error(c, rc, err) : reply_settings(c);
}

#define API "/admin/api/v1"
const admin_route_t cms_admin_api_routes[] = {
    { "GET", API "/me", on_me, ADMIN_API },
    { "GET", API "/posts", on_posts, ADMIN_API },
    { "POST", API "/posts", on_create, ADMIN_API },
    { "GET", API "/posts/:id", on_get, ADMIN_API },
    { "PUT", API "/posts/:id", on_update, ADMIN_API },
    { "DELETE", API "/posts/:id", on_delete, ADMIN_API },
    { "POST", API "/posts/:id/publish", on_publish, ADMIN_API },
    { "POST", API "/posts/:id/unpublish", on_unpublish, ADMIN_API },
    { "POST", API "/posts/:id/schedule", on_schedule, ADMIN_API },
    { "GET", API "/posts/:id/revisions", on_revisions, ADMIN_API },
    { "POST", API "/posts/:id/revisions/:rev/restore", on_restore, ADMIN_API },
    { "GET", API "/tags", on_tags, ADMIN_API },
    { "POST", API "/tags", on_tag_save, ADMIN_API },
    { "GET", API "/users", on_users, ADMIN_API },
    { "POST", API "/users", on_user_add, ADMIN_API },
    { "PUT", API "/users/:id", on_user_role, ADMIN_API },
    { "GET", API "/settings", on_settings, ADMIN_API },
    { "PUT", API "/settings", on_settings_save, ADMIN_API },
    { NULL, NULL, NULL, 0 },
};
