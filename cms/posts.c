/* posts.c - posts and pages in the store: save (validate, render, slug history,
 * tags, authors, revision), reads for readers, the publishing workflow, scheduled
 * publishing, search and revisions. See store.h for the contracts.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "markdown.h"
#include "store_int.h"
#include "util.h"

/* ---------------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------------ */

/* The strings move out of r (their cells become NULL): no copy. */
static void post_from_row(cms_rows_t *r, int i, proto_post_t *p)
{
    p->id = cms_rows_int(r, i, PC_ID);
    p->type = (int)cms_rows_int(r, i, PC_TYPE);
    p->status = (int)cms_rows_int(r, i, PC_STATUS);
    p->title = cms_rows_take(r, i, PC_TITLE);
    p->slug = cms_rows_take(r, i, PC_SLUG);
    p->html = cms_rows_take(r, i, PC_HTML);
    p->plaintext = cms_rows_take(r, i, PC_PLAINTEXT);
    p->custom_excerpt = cms_rows_take(r, i, PC_CUSTOM_EXCERPT);
    p->feature_image = cms_rows_take(r, i, PC_FEATURE_IMAGE);
    p->feature_image_alt = cms_rows_take(r, i, PC_FEATURE_IMAGE_ALT);
    p->feature_image_caption = cms_rows_take(r, i, PC_FEATURE_IMAGE_CAPTION);
    p->featured = cms_rows_int(r, i, PC_FEATURED) != 0;
    p->created_at = cms_rows_int(r, i, PC_CREATED_AT);
    p->updated_at = cms_rows_int(r, i, PC_UPDATED_AT);
    p->published_at = cms_rows_int(r, i, PC_PUBLISHED_AT);
    p->meta_title = cms_rows_take(r, i, PC_META_TITLE);
    p->meta_description = cms_rows_take(r, i, PC_META_DESCRIPTION);
    p->og_title = cms_rows_take(r, i, PC_OG_TITLE);
    p->og_description = cms_rows_take(r, i, PC_OG_DESCRIPTION);
    p->og_image = cms_rows_take(r, i, PC_OG_IMAGE);
    p->canonical_url = cms_rows_take(r, i, PC_CANONICAL_URL);
    p->markdown = cms_rows_take(r, i, PC_MARKDOWN);
    p->preview_token = cms_rows_take(r, i, PC_PREVIEW_TOKEN);
    cms_post_derive(p);
}

/* Attach tags and authors to posts v[0..n) with two queries (not two per post). */
static int load_relations(store_tx_t *tx, proto_post_t *v, int n)
{
    cms_rows_t tr = { 0 }, ar = { 0 };
    int64_t *ids;
    char *json;
    int rc;
    if (n == 0)
        return 0;
    ids = xmalloc((size_t)n * sizeof(int64_t));
    for (int i = 0; i < n; i++)
        ids[i] = v[i].id;
    json = store_ids_json(ids, n);
    if ((rc = RUN(tx, CMS_SQL_POST_TAGS, &tr, V_TEXT(json))) < 0 ||
        (rc = RUN(tx, CMS_SQL_POST_AUTHORS, &ar, V_TEXT(json))) < 0)
        goto out;
    /* Rows come ordered by post id, then position; the post id is in the count
     * column. Posts are few per call, so a scan per row is fine. */
    for (int k = 0; k < tr.nrows; k++) {
        int64_t pid = cms_rows_int(&tr, k, TC_COUNT);
        for (int i = 0; i < n; i++)
            if (v[i].id == pid) {
                proto_post_t *p = &v[i];
                p->tags = xrealloc(p->tags, (size_t)(p->ntags + 1) * sizeof(proto_tag_t));
                memset(&p->tags[p->ntags], 0, sizeof(proto_tag_t));
                store_tag_from_row(&tr, k, &p->tags[p->ntags]);
                p->tags[p->ntags++].post_count = 0;
            }
    }
    for (int k = 0; k < ar.nrows; k++) {
        int64_t pid = cms_rows_int(&ar, k, AC_COUNT);
        for (int i = 0; i < n; i++)
            if (v[i].id == pid) {
                proto_post_t *p = &v[i];
                p->authors =
                    xrealloc(p->authors, (size_t)(p->nauthors + 1) * sizeof(proto_author_t));
                memset(&p->authors[p->nauthors], 0, sizeof(proto_author_t));
                store_author_from_row(&ar, k, &p->authors[p->nauthors]);
                p->authors[p->nauthors++].post_count = 0;
            }
    }
out:
    cms_rows_free(&tr);
    cms_rows_free(&ar);
    free(json);
    free(ids);
    return rc;
}

/* Run a statement returning posts and load them with their relations. */
static int load_posts(store_tx_t *tx, cms_rows_t *r, proto_post_t **out, int *n)
{
    proto_post_t *v = xcalloc((size_t)r->nrows, sizeof(proto_post_t));
    for (int i = 0; i < r->nrows; i++)
        post_from_row(r, i, &v[i]);
    int rc = load_relations(tx, v, r->nrows);
    if (rc < 0) {
        proto_posts_free(v, r->nrows);
        return rc;
    }
    *out = v;
    *n = r->nrows;
    return 0;
}

/* Load the single post of r into *out (-ENOENT if none). */
static int load_one(store_tx_t *tx, cms_rows_t *r, proto_post_t *out, const char *what)
{
    proto_post_t *v = NULL;
    int n = 0, rc;
    if (r->nrows == 0)
        return store_fail(tx, -ENOENT, "no post %s", what);
    if ((rc = load_posts(tx, r, &v, &n)) < 0)
        return rc;
    *out = v[0];
    free(v);
    return 0;
}

static int get_by_id(store_tx_t *tx, int64_t id, proto_post_t *out)
{
    cms_rows_t r = { 0 };
    char what[32];
    int rc = RUN(tx, CMS_SQL_POST_BY_ID, &r, V_INT(id));
    snprintf(what, sizeof what, "with id %lld", (long long)id);
    if (rc == 0)
        rc = load_one(tx, &r, out, what);
    cms_rows_free(&r);
    return rc;
}

int cms_post_get(cms_store_t *s, int64_t id, proto_post_t *out, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    return store_end(&tx, get_by_id(&tx, id, out));
}

int cms_post_find(cms_store_t *s, int type, const char *slug, proto_post_t *out,
                  char **redirect, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    *redirect = NULL;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_POST_BY_SLUG, &r, V_INT(type), V_TEXT(slug))) < 0)
        goto out;
    if (r.nrows > 0) {
        rc = load_one(&tx, &r, out, slug);
        goto out;
    }
    cms_rows_free(&r);
    if ((rc = RUN(&tx, CMS_SQL_REDIRECT_GET, &r, V_TEXT(slug), V_INT(type))) < 0)
        goto out;
    if (r.nrows > 0) {
        *redirect = cms_rows_dup(&r, 0, 0);
        rc = -EAGAIN;
    } else {
        rc = store_fail(&tx, -ENOENT, "no published %s '%s'",
                        type == PROTO_PAGE ? "page" : "post", slug);
    }
out:
    cms_rows_free(&r);
    /* A redirect is an answer, not a failure: end the read normally. */
    int end = store_end(&tx, rc == -EAGAIN ? 0 : rc);
    return end < 0 ? end : rc;
}

int cms_post_by_preview(cms_store_t *s, const char *token, proto_post_t *out,
                        char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_POST_BY_TOKEN, &r, V_TEXT(token))) == 0)
        rc = load_one(&tx, &r, out, "with this preview token");
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

int cms_post_list(cms_store_t *s, const cms_list_q_t *q, proto_post_t **out, int *n,
                  int64_t *total, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 }, c = { 0 };
    int per = q->per_page > 0 ? q->per_page : 10, page = q->page > 0 ? q->page : 1;
    int status = q->status >= 0 ? q->status : PROTO_PUBLISHED;
    *out = NULL;
    *n = 0;
    *total = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    int list_stmt = CMS_SQL_POST_LIST, count_stmt = CMS_SQL_POST_COUNT;
    if (q->staff) {
        list_stmt = CMS_SQL_POST_STAFF_LIST;
        count_stmt = CMS_SQL_POST_STAFF_COUNT;
    }
    cms_val_t p[] = { V_INT(q->pages ? PROTO_PAGE : PROTO_POST),
                      q->staff && q->status < 0 ? V_NULL : V_INT(status),
                      V_TEXT(q->tag && *q->tag ? q->tag : NULL),
                      V_TEXT(q->author && *q->author ? q->author : NULL),
                      q->featured >= 0 ? V_INT(q->featured) : V_NULL,
                      V_INT(per),
                      V_INT((int64_t)(page - 1) * per) };
    if ((rc = store_run(&tx, count_stmt, p, 5, &c)) < 0 ||
        (rc = store_run(&tx, list_stmt, p, 7, &r)) < 0)
        goto out;
    *total = cms_rows_int(&c, 0, 0);
    rc = load_posts(&tx, &r, out, n);
out:
    cms_rows_free(&r);
    cms_rows_free(&c);
    return store_end(&tx, rc);
}

/* Reduce a reader's query to words separated by single spaces: letters, digits and
 * non-ASCII characters only, lower-cased. Both backends take this form (FTS5 as
 * quoted terms, PostgreSQL through plainto_tsquery), so no query syntax of either
 * database can be injected, and both treat the words alike (all must match). */
static char *search_words(const char *q)
{
    buf_t b = BUF_INIT;
    bool gap = false;
    for (const unsigned char *c = (const unsigned char *)q; *c; c++) {
        bool word = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                    (*c >= '0' && *c <= '9') || *c >= 0x80;
        if (!word) {
            gap = true;
            continue;
        }
        if (gap && b.len > 0)
            buf_putc(&b, ' ');
        gap = false;
        buf_putc(&b, (char)(*c >= 'A' && *c <= 'Z' ? *c - 'A' + 'a' : *c));
    }
    return buf_take(&b);
}

int cms_post_search(cms_store_t *s, const char *query, int page, int per_page,
                    proto_post_t **out, int *n, int64_t *total, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 }, c = { 0 };
    char *words = search_words(query ? query : "");
    int per = per_page > 0 ? per_page : 10;
    *out = NULL;
    *n = 0;
    *total = 0;
    if (*words == '\0' || !proto_utf8_valid(words, strlen(words))) {
        free(words);
        *out = xcalloc(1, sizeof(proto_post_t));
        return 0;
    }
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0) {
        free(words);
        return rc;
    }
    cms_val_t p[] = { V_TEXT(words), V_INT(per), V_INT((int64_t)((page > 0 ? page : 1) - 1) * per) };
    if ((rc = store_run(&tx, CMS_SQL_POST_SEARCH_COUNT, p, 1, &c)) < 0 ||
        (rc = store_run(&tx, CMS_SQL_POST_SEARCH, p, 3, &r)) < 0)
        goto out;
    *total = cms_rows_int(&c, 0, 0);
    rc = load_posts(&tx, &r, out, n);
out:
    cms_rows_free(&r);
    cms_rows_free(&c);
    free(words);
    return store_end(&tx, rc);
}

int cms_post_get_many(cms_store_t *s, const int64_t *ids, int nids, proto_post_t **out,
                      int *n, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    proto_post_t *v = NULL;
    int nv = 0;
    char *json = store_ids_json(ids, nids);
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0) {
        free(json);
        return rc;
    }
    if ((rc = RUN(&tx, CMS_SQL_POST_MANY, &r, V_TEXT(json))) < 0 ||
        (rc = load_posts(&tx, &r, &v, &nv)) < 0)
        goto out;
    /* In the order asked, each once. */
    *out = xcalloc((size_t)(nids > 0 ? nids : 1), sizeof(proto_post_t));
    for (int i = 0; i < nids; i++)
        for (int k = 0; k < nv; k++)
            if (v[k].id == ids[i] && v[k].id != 0) {
                (*out)[(*n)++] = v[k];
                memset(&v[k], 0, sizeof(v[k]));
            }
out:
    proto_posts_free(v, nv);
    cms_rows_free(&r);
    free(json);
    return store_end(&tx, rc);
}

int cms_post_count_all(cms_store_t *s, int64_t *out)
{
    return store_read_int(s, CMS_SQL_POST_COUNT_ALL, out);
}

int cms_post_all_ids(cms_store_t *s, int64_t **out, int *n)
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, NULL);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, CMS_SQL_POST_ALL_IDS, &r)) == 0) {
        *out = xcalloc((size_t)(r.nrows ? r.nrows : 1), sizeof(int64_t));
        for (int i = 0; i < r.nrows; i++)
            (*out)[i] = cms_rows_int(&r, i, 0);
        *n = r.nrows;
    }
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

/* ---------------------------------------------------------------------------------
 * Saving
 * ------------------------------------------------------------------------------ */

/* The reader paths a post appears on. */
static void post_paths(cms_change_t *c, const proto_post_t *p)
{
    char path[PROTO_SLUG_MAX + 16];
    if (c == NULL)
        return;
    store_change_path(c, "/");
    snprintf(path, sizeof path, "/%s/", p->slug);
    store_change_path(c, path);
    for (int i = 0; i < p->ntags; i++)
        if (!p->tags[i].internal) {
            snprintf(path, sizeof path, "/tag/%s/", p->tags[i].slug);
            store_change_path(c, path);
        }
    for (int i = 0; i < p->nauthors; i++) {
        snprintf(path, sizeof path, "/author/%s/", p->authors[i].slug);
        store_change_path(c, path);
    }
    store_change_path(c, "/rss/");
    store_change_path(c, "/sitemap.xml");
}

static int save_tags(store_tx_t *tx, proto_post_t *p, int64_t now)
{
    int rc = RUN(tx, CMS_SQL_POST_TAGS_DEL, NULL, V_INT(p->id));
    for (int i = 0; rc == 0 && i < p->ntags; i++) {
        proto_tag_t *t = &p->tags[i];
        cms_rows_t r = { 0 };
        if ((rc = RUN(tx, CMS_SQL_TAG_BY_SLUG, &r, V_TEXT(t->slug))) == 0) {
            if (r.nrows > 0) {
                t->id = cms_rows_int(&r, 0, TC_ID);
            } else {
                cms_rows_free(&r);
                rc = RUN(tx, CMS_SQL_TAG_INSERT, &r, V_TEXT(t->slug), V_TEXT(t->name),
                         V_TEXT(t->description), V_TEXT(t->feature_image),
                         V_TEXT(t->meta_title), V_TEXT(t->meta_description),
                         V_INT(t->internal), V_INT(now));
                if (rc == 0)
                    t->id = cms_rows_int(&r, 0, 0);
            }
        }
        cms_rows_free(&r);
        if (rc == 0)
            rc = RUN(tx, CMS_SQL_POST_TAG_ADD, NULL, V_INT(p->id), V_INT(t->id), V_INT(i));
    }
    return rc;
}

static int save_authors(store_tx_t *tx, proto_post_t *p)
{
    int rc = RUN(tx, CMS_SQL_POST_AUTHORS_DEL, NULL, V_INT(p->id));
    for (int i = 0; rc == 0 && i < p->nauthors; i++) {
        proto_author_t *a = &p->authors[i];
        cms_rows_t r = { 0 };
        if ((rc = RUN(tx, CMS_SQL_AUTHOR_BY_SLUG, &r, V_TEXT(a->slug))) == 0) {
            if (r.nrows == 0) {
                rc = store_fail(tx, -ENOENT, "authors: no author with slug '%s'", a->slug);
            } else {
                a->id = cms_rows_int(&r, 0, AC_ID);
                rc = RUN(tx, CMS_SQL_POST_AUTHOR_ADD, NULL, V_INT(p->id), V_INT(a->id),
                         V_INT(i));
            }
        }
        cms_rows_free(&r);
    }
    return rc;
}

int cms_post_save(cms_store_t *s, proto_post_t *p, const cms_save_opts_t *o,
                  cms_change_t *chg, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    proto_post_t old = { 0 };
    cms_rows_t r = { 0 };
    char scratch[CMS_ERR_LEN];
    char *html = NULL, *text = NULL;
    int64_t now = o && o->now ? o->now : cms_time_now();
    cms_role_t role = o ? o->role : CMS_ROLE_CONTRIBUTOR;
    int rc;

    if (err == NULL)
        err = scratch;
    if ((rc = cms_post_validate(p, err)) < 0)
        return rc;
    if (cms_markdown_render(p->markdown ? p->markdown : "",
                            p->markdown ? strlen(p->markdown) : 0,
                            cms_role_allows_html(role), &html, &text) < 0) {
        snprintf(err, CMS_ERR_LEN, "markdown: could not be rendered");
        return -EINVAL;
    }
    free(p->html);
    free(p->plaintext);
    p->html = html;
    p->plaintext = text;

    /* Publishing in the future is scheduling; publishing without a date is now. */
    if (p->status == PROTO_PUBLISHED && p->published_at > now)
        p->status = PROTO_SCHEDULED;
    if (p->status == PROTO_PUBLISHED && p->published_at == 0)
        p->published_at = now;

    if ((rc = store_begin(s, true, &tx, err)) < 0)
        return rc;
    if (p->id != 0) {
        if ((rc = get_by_id(&tx, p->id, &old)) < 0)
            goto out;
        p->created_at = old.created_at;
        if (p->preview_token == NULL)
            p->preview_token = cms_strdup(old.preview_token);
    } else {
        p->created_at = p->created_at ? p->created_at : now;
        if (p->preview_token == NULL)
            p->preview_token = cms_random_token();
    }
    p->updated_at = now;

    /* A clear message for the common case; the unique index still decides races. */
    if ((rc = RUN(&tx, CMS_SQL_POST_ID_BY_SLUG, &r, V_TEXT(p->slug))) < 0)
        goto out;
    if (r.nrows > 0 && cms_rows_int(&r, 0, 0) != p->id) {
        rc = store_fail(&tx, -EEXIST, "slug: '%s' is already used by another post or page",
                        p->slug);
        goto out;
    }
    cms_rows_free(&r);

    cms_val_t v[] = { V_INT(p->type), V_INT(p->status), V_TEXT(p->title), V_TEXT(p->slug),
                      V_TEXT(p->markdown ? p->markdown : ""), V_TEXT(p->html),
                      V_TEXT(p->plaintext), V_TEXT(p->custom_excerpt),
                      V_TEXT(p->feature_image), V_TEXT(p->feature_image_alt),
                      V_TEXT(p->feature_image_caption), V_INT(p->featured),
                      V_INT(p->created_at), V_INT(p->updated_at),
                      p->published_at ? V_INT(p->published_at) : V_NULL,
                      V_TEXT(p->meta_title), V_TEXT(p->meta_description), V_TEXT(p->og_title),
                      V_TEXT(p->og_description), V_TEXT(p->og_image),
                      V_TEXT(p->canonical_url), V_TEXT(p->preview_token), V_INT(p->id) };
    if (p->id == 0) {
        rc = store_run(&tx, CMS_SQL_POST_INSERT, v, 22, &r);
        if (rc == 0)
            p->id = cms_rows_int(&r, 0, 0);
    } else {
        rc = store_run(&tx, CMS_SQL_POST_UPDATE, v, 23, NULL);
    }
    if (rc == -EEXIST)
        store_fail(&tx, rc, "slug: '%s' is already used by another post or page", p->slug);
    if (rc < 0)
        goto out;

    /* Slug history: the live slug never redirects; a replaced one does. */
    if ((rc = RUN(&tx, CMS_SQL_REDIRECT_DEL, NULL, V_TEXT(p->slug))) < 0)
        goto out;
    if (old.slug && strcmp(old.slug, p->slug) != 0 &&
        (rc = RUN(&tx, CMS_SQL_REDIRECT_PUT, NULL, V_TEXT(old.slug), V_INT(p->id))) < 0)
        goto out;
    if ((rc = save_tags(&tx, p, now)) < 0 || (rc = save_authors(&tx, p)) < 0)
        goto out;
    if ((rc = RUN(&tx, CMS_SQL_REVISION_ADD, NULL, V_INT(p->id), V_TEXT(p->title),
                  V_TEXT(p->markdown ? p->markdown : ""),
                  o && o->user_id ? V_INT(o->user_id) : V_NULL,
                  V_TEXT(o && o->reason ? o->reason : "save"), V_INT(now))) < 0)
        goto out;
    if (old.status == PROTO_PUBLISHED || p->status == PROTO_PUBLISHED) {
        if ((rc = store_bump_version(&tx, chg)) < 0)
            goto out;
        if (old.id)
            post_paths(chg, &old);
        post_paths(chg, p);
    }
    cms_post_derive(p);
out:
    cms_rows_free(&r);
    proto_post_clear(&old);
    rc = store_end(&tx, rc);
    if (rc < 0 && chg)
        cms_change_clear(chg);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Workflow
 * ------------------------------------------------------------------------------ */

static int set_status(cms_store_t *s, int64_t id, int status, int64_t at, int64_t now,
                      cms_change_t *chg, char *err)
{
    store_tx_t tx;
    proto_post_t old = { 0 };
    int rc = store_begin(s, true, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = get_by_id(&tx, id, &old)) < 0)
        goto out;
    if (status == PROTO_PUBLISHED)
        at = old.published_at && old.published_at <= now ? old.published_at : now;
    else if (status == PROTO_DRAFT)
        at = old.published_at;
    if ((rc = RUN(&tx, CMS_SQL_POST_SET_STATUS, NULL, V_INT(id), V_INT(status),
                  at ? V_INT(at) : V_NULL, V_INT(now))) < 0)
        goto out;
    if (old.status == PROTO_PUBLISHED || status == PROTO_PUBLISHED) {
        if ((rc = store_bump_version(&tx, chg)) < 0)
            goto out;
        post_paths(chg, &old);
    }
out:
    proto_post_clear(&old);
    rc = store_end(&tx, rc);
    if (rc < 0 && chg)
        cms_change_clear(chg);
    return rc;
}

int cms_post_publish(cms_store_t *s, int64_t id, int64_t now, cms_change_t *chg,
                     char err[CMS_ERR_LEN])
{
    return set_status(s, id, PROTO_PUBLISHED, 0, now, chg, err);
}

int cms_post_unpublish(cms_store_t *s, int64_t id, int64_t now, cms_change_t *chg,
                       char err[CMS_ERR_LEN])
{
    return set_status(s, id, PROTO_DRAFT, 0, now, chg, err);
}

int cms_post_schedule(cms_store_t *s, int64_t id, int64_t at, int64_t now,
                      cms_change_t *chg, char err[CMS_ERR_LEN])
{
    if (at <= now) {
        if (err)
            snprintf(err, CMS_ERR_LEN, "published_at: a schedule must be in the future");
        return -EINVAL;
    }
    return set_status(s, id, PROTO_SCHEDULED, at, now, chg, err);
}

int cms_post_delete(cms_store_t *s, int64_t id, cms_change_t *chg, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    proto_post_t old = { 0 };
    int rc = store_begin(s, true, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = get_by_id(&tx, id, &old)) < 0 ||
        (rc = RUN(&tx, CMS_SQL_POST_DELETE, NULL, V_INT(id))) < 0)
        goto out;
    if (old.status == PROTO_PUBLISHED) {
        if ((rc = store_bump_version(&tx, chg)) < 0)
            goto out;
        post_paths(chg, &old);
    }
out:
    proto_post_clear(&old);
    rc = store_end(&tx, rc);
    if (rc < 0 && chg)
        cms_change_clear(chg);
    return rc;
}

int cms_post_publish_due(cms_store_t *s, int64_t now, int *published, cms_change_t *chg,
                         char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t due = { 0 };
    *published = 0;
    int rc = store_begin(s, true, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_POST_DUE, &due, V_INT(now))) < 0)
        goto out;
    for (int i = 0; i < due.nrows; i++) {
        int64_t id = cms_rows_int(&due, i, 0);
        cms_rows_t r = { 0 };
        /* Conditional on still being scheduled: of several nodes racing, one
         * changes the row and the others see zero rows. */
        rc = RUN(&tx, CMS_SQL_POST_PUBLISH_DUE, &r, V_INT(id), V_INT(now));
        int won = rc == 0 && r.nrows == 1;
        cms_rows_free(&r);
        if (rc < 0)
            goto out;
        if (!won)
            continue;
        proto_post_t p = { 0 };
        if ((rc = get_by_id(&tx, id, &p)) < 0)
            goto out;
        post_paths(chg, &p);
        cms_log(CMS_LOG_INFO, "scheduler", "published '%s' (id %lld) as scheduled", p.slug,
                (long long)id);
        proto_post_clear(&p);
        (*published)++;
    }
    if (*published > 0)
        rc = store_bump_version(&tx, chg);
out:
    cms_rows_free(&due);
    rc = store_end(&tx, rc);
    if (rc < 0) {
        *published = 0;
        if (chg)
            cms_change_clear(chg);
    }
    return rc;
}

int cms_post_next_due(cms_store_t *s, int64_t *at)
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    int rc = store_begin(s, false, &tx, NULL);
    if (rc < 0)
        return rc;
    if ((rc = RUN0(&tx, CMS_SQL_POST_NEXT_DUE, &r)) == 0) {
        if (cms_rows_str(&r, 0, 0) == NULL)
            rc = -ENOENT;
        else
            *at = cms_rows_int(&r, 0, 0);
    }
    cms_rows_free(&r);
    int end = store_end(&tx, rc == -ENOENT ? 0 : rc);
    return end < 0 ? end : rc;
}

/* ---------------------------------------------------------------------------------
 * Revisions
 * ------------------------------------------------------------------------------ */

int cms_revision_list(cms_store_t *s, int64_t post_id, cms_revision_t **out, int *n,
                      char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    *out = NULL;
    *n = 0;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_REVISION_LIST, &r, V_INT(post_id))) == 0) {
        /* id, post_id, title, markdown, user_id, reason, created_at */
        cms_revision_t *v = xcalloc((size_t)(r.nrows ? r.nrows : 1), sizeof(*v));
        for (int i = 0; i < r.nrows; i++) {
            v[i].id = cms_rows_int(&r, i, 0);
            v[i].post_id = cms_rows_int(&r, i, 1);
            v[i].title = cms_rows_dup(&r, i, 2);
            v[i].markdown = cms_rows_dup(&r, i, 3);
            v[i].user_id = cms_rows_int(&r, i, 4);
            v[i].reason = cms_rows_dup(&r, i, 5);
            v[i].created_at = cms_rows_int(&r, i, 6);
        }
        *out = v;
        *n = r.nrows;
    }
    cms_rows_free(&r);
    return store_end(&tx, rc);
}

void cms_revisions_free(cms_revision_t *v, int n)
{
    for (int i = 0; v && i < n; i++) {
        free(v[i].title);
        free(v[i].markdown);
        free(v[i].reason);
    }
    free(v);
}

int cms_revision_restore(cms_store_t *s, int64_t post_id, int64_t rev_id,
                         const cms_save_opts_t *o, cms_change_t *chg, char err[CMS_ERR_LEN])
{
    store_tx_t tx;
    cms_rows_t r = { 0 };
    proto_post_t p = { 0 };
    char *title = NULL, *markdown = NULL;
    int rc = store_begin(s, false, &tx, err);
    if (rc < 0)
        return rc;
    if ((rc = RUN(&tx, CMS_SQL_REVISION_GET, &r, V_INT(rev_id), V_INT(post_id))) == 0) {
        if (r.nrows == 0) {
            rc = store_fail(&tx, -ENOENT, "no revision %lld of post %lld", (long long)rev_id,
                            (long long)post_id);
        } else {
            title = cms_rows_dup(&r, 0, 0);
            markdown = cms_rows_dup(&r, 0, 1);
        }
    }
    cms_rows_free(&r);
    if ((rc = store_end(&tx, rc)) < 0)
        goto out;
    /* Load, replace, save: the save validates, renders and records a revision. */
    if ((rc = cms_post_get(s, post_id, &p, err)) < 0)
        goto out;
    free(p.title);
    free(p.markdown);
    p.title = title;
    p.markdown = markdown;
    title = markdown = NULL;
    cms_save_opts_t so = o ? *o : (cms_save_opts_t){ 0 };
    char reason[64];
    snprintf(reason, sizeof reason, "restore revision %lld", (long long)rev_id);
    so.reason = reason;
    rc = cms_post_save(s, &p, &so, chg, err);
out:
    free(title);
    free(markdown);
    proto_post_clear(&p);
    return rc;
}
