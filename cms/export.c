/* export.c - everything as one JSON document (jansson): settings, tags, authors,
 * and every post and page whatever its status, with its Markdown source, so an
 * export can be imported elsewhere or kept as a backup.
 */
#include "cms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "util.h"

static json_t *jstr_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *jtime(int64_t t)
{
    char iso[32];
    if (t == 0)
        return json_null();
    cms_time_iso(t, iso);
    return json_string(iso);
}

static json_t *post_json(const proto_post_t *p)
{
    static const char *const status[] = { "draft", "scheduled", "published" };
    json_t *o = json_object(), *tags = json_array(), *authors = json_array();
    json_object_set_new(o, "id", json_integer(p->id));
    json_object_set_new(o, "type", json_string(p->type == PROTO_PAGE ? "page" : "post"));
    json_object_set_new(o, "status", json_string(status[p->status % 3]));
    json_object_set_new(o, "title", jstr_or_null(p->title));
    json_object_set_new(o, "slug", jstr_or_null(p->slug));
    json_object_set_new(o, "markdown", jstr_or_null(p->markdown));
    json_object_set_new(o, "html", jstr_or_null(p->html));
    json_object_set_new(o, "custom_excerpt", jstr_or_null(p->custom_excerpt));
    json_object_set_new(o, "feature_image", jstr_or_null(p->feature_image));
    json_object_set_new(o, "feature_image_alt", jstr_or_null(p->feature_image_alt));
    json_object_set_new(o, "feature_image_caption", jstr_or_null(p->feature_image_caption));
    json_object_set_new(o, "featured", json_boolean(p->featured));
    json_object_set_new(o, "created_at", jtime(p->created_at));
    json_object_set_new(o, "updated_at", jtime(p->updated_at));
    json_object_set_new(o, "published_at", jtime(p->published_at));
    json_object_set_new(o, "meta_title", jstr_or_null(p->meta_title));
    json_object_set_new(o, "meta_description", jstr_or_null(p->meta_description));
    json_object_set_new(o, "og_title", jstr_or_null(p->og_title));
    json_object_set_new(o, "og_description", jstr_or_null(p->og_description));
    json_object_set_new(o, "og_image", jstr_or_null(p->og_image));
    json_object_set_new(o, "canonical_url", jstr_or_null(p->canonical_url));
    for (int i = 0; i < p->ntags; i++)
        json_array_append_new(tags, json_string(p->tags[i].slug));
    for (int i = 0; i < p->nauthors; i++)
        json_array_append_new(authors, json_string(p->authors[i].slug));
    json_object_set_new(o, "tags", tags);
    json_object_set_new(o, "authors", authors);
    return o;
}

int cms_export_json(cms_store_t *s, const char *out, char err[CMS_ERR_LEN])
{
    json_t *root = json_object(), *posts = json_array(), *tags = json_array(),
           *authors = json_array(), *settings = json_object();
    int64_t *ids = NULL;
    int nids = 0, rc;
    proto_tag_t *tv = NULL;
    proto_author_t *av = NULL;
    int nt = 0, na = 0;
    proto_settings_t st = { 0 };

    json_object_set_new(root, "format", json_string("oneblog-export"));
    json_object_set_new(root, "version", json_integer(1));
    json_object_set_new(root, "exported_at", jtime(cms_time_now()));
    if ((rc = cms_settings_get(s, &st, err)) < 0 || (rc = cms_tag_list(s, true, &tv, &nt, err)) < 0 ||
        (rc = cms_author_list(s, &av, &na, err)) < 0 || (rc = cms_post_all_ids(s, &ids, &nids)) < 0)
        goto out;
    json_object_set_new(settings, "title", jstr_or_null(st.title));
    json_object_set_new(settings, "description", jstr_or_null(st.description));
    json_object_set_new(settings, "url", jstr_or_null(st.url));
    json_object_set_new(settings, "timezone", jstr_or_null(st.timezone));
    json_object_set_new(settings, "posts_per_page", json_integer(st.posts_per_page));
    for (int i = 0; i < nt; i++) {
        json_t *t = json_object();
        json_object_set_new(t, "slug", json_string(tv[i].slug));
        json_object_set_new(t, "name", json_string(tv[i].name));
        json_object_set_new(t, "description", jstr_or_null(tv[i].description));
        json_array_append_new(tags, t);
    }
    for (int i = 0; i < na; i++) {
        json_t *a = json_object();
        json_object_set_new(a, "slug", json_string(av[i].slug));
        json_object_set_new(a, "name", jstr_or_null(av[i].name));
        json_object_set_new(a, "bio", jstr_or_null(av[i].bio));
        json_object_set_new(a, "profile_image", jstr_or_null(av[i].profile_image));
        json_object_set_new(a, "website", jstr_or_null(av[i].website));
        json_array_append_new(authors, a);
    }
    for (int i = 0; i < nids; i++) {
        proto_post_t p = { 0 };
        if ((rc = cms_post_get(s, ids[i], &p, err)) < 0)
            goto out;
        json_array_append_new(posts, post_json(&p));
        proto_post_clear(&p);
    }
    json_object_set_new(root, "settings", settings);
    json_object_set_new(root, "tags", tags);
    json_object_set_new(root, "authors", authors);
    json_object_set_new(root, "posts", posts);
    settings = tags = authors = posts = NULL; /* owned by root now */
    int flags = JSON_INDENT(2) | JSON_SORT_KEYS;
    if (strcmp(out, "-") == 0 ? json_dumpf(root, stdout, flags) : json_dump_file(root, out, flags)) {
        snprintf(err, CMS_ERR_LEN, "export: cannot write %.200s", out);
        rc = -EIO;
    }
    if (strcmp(out, "-") == 0)
        fputc('\n', stdout);
out:
    json_decref(settings);
    json_decref(tags);
    json_decref(authors);
    json_decref(posts);
    json_decref(root);
    free(ids);
    cms_tags_free(tv, nt);
    cms_authors_free(av, na);
    proto_settings_clear(&st);
    return rc;
}
