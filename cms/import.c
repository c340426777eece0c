/* import.c - loading content: a folder of Markdown files with YAML front matter
 * (libyaml), and a Ghost JSON export (jansson). Both build proto_post_t values and
 * save them through the store, so imported content is validated and rendered like
 * anything an editor saves. Imports run as an editor (raw HTML kept) and are
 * idempotent: a post whose slug exists is skipped.
 *
 * Front matter keys: title, slug, date (published_at), tags (list or string),
 * authors (list or string), draft (bool), featured (bool), excerpt, feature_image,
 * feature_image_alt, feature_image_caption, meta_title, meta_description,
 * canonical_url, type (post | page). DIR/authors.yml maps author slugs to
 * {name, bio, profile_image, website, location}; authors used but not described
 * are created with their slug as name.
 */
#include "cms.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <yaml.h>

#include "util.h"

/* ---------------------------------------------------------------------------------
 * Files and YAML
 * ------------------------------------------------------------------------------ */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    buf_t b = BUF_INIT;
    char chunk[65536];
    size_t n;
    if (f == NULL)
        return NULL;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    if (len)
        *len = b.len;
    return buf_take(&b);
}

/* A scalar node's value, or NULL. */
static const char *scalar(yaml_document_t *d, yaml_node_t *n)
{
    (void)d;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *map_get(yaml_document_t *d, yaml_node_t *map, const char *key)
{
    if (map == NULL || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(d, yaml_document_get_node(d, p->key));
        if (k && strcmp(k, key) == 0)
            return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static const char *map_str(yaml_document_t *d, yaml_node_t *map, const char *key)
{
    return scalar(d, map_get(d, map, key));
}

static bool yaml_true(const char *v)
{
    return v && (strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0);
}

/* A list or a single string: call fn for each item. */
static void for_each_str(yaml_document_t *d, yaml_node_t *n, void (*fn)(void *, const char *),
                         void *arg)
{
    if (n == NULL)
        return;
    if (n->type == YAML_SCALAR_NODE) {
        fn(arg, scalar(d, n));
        return;
    }
    if (n->type != YAML_SEQUENCE_NODE)
        return;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        const char *v = scalar(d, yaml_document_get_node(d, *it));
        if (v)
            fn(arg, v);
    }
}

static void add_tag(void *arg, const char *name)
{
    proto_post_t *p = arg;
    p->tags = xrealloc(p->tags, (size_t)(p->ntags + 1) * sizeof(proto_tag_t));
    memset(&p->tags[p->ntags], 0, sizeof(proto_tag_t));
    p->tags[p->ntags++].name = xstrdup(name);
}

static void add_author(void *arg, const char *slug)
{
    proto_post_t *p = arg;
    p->authors = xrealloc(p->authors, (size_t)(p->nauthors + 1) * sizeof(proto_author_t));
    memset(&p->authors[p->nauthors], 0, sizeof(proto_author_t));
    p->authors[p->nauthors++].slug = cms_slugify(slug);
}

static int load_yaml(const char *text, size_t len, yaml_document_t *doc)
{
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    int ok = yaml_parser_load(&parser, doc);
    yaml_parser_delete(&parser);
    return ok ? 0 : -EINVAL;
}

/* Create the author `slug` unless it exists, from authors.yml when described. */
static int ensure_author(cms_store_t *s, const char *slug, yaml_document_t *authors,
                         cms_import_stats_t *st, char *err)
{
    proto_author_t a = { 0 };
    int rc = cms_author_get(s, slug, &a, NULL);
    proto_author_clear(&a);
    if (rc != -ENOENT)
        return rc;
    cms_user_t u = { 0 };
    yaml_node_t *desc = authors ? map_get(authors, yaml_document_get_root_node(authors), slug)
                                : NULL;
    u.profile.slug = xstrdup(slug);
    u.profile.name = xstrdup(desc && map_str(authors, desc, "name") ? map_str(authors, desc, "name")
                                                                   : slug);
    u.profile.bio = cms_strdup(desc ? map_str(authors, desc, "bio") : NULL);
    u.profile.profile_image = cms_strdup(desc ? map_str(authors, desc, "profile_image") : NULL);
    u.profile.website = cms_strdup(desc ? map_str(authors, desc, "website") : NULL);
    u.profile.location = cms_strdup(desc ? map_str(authors, desc, "location") : NULL);
    u.role = CMS_ROLE_AUTHOR;
    rc = cms_user_add(s, &u, cms_time_now(), err);
    if (rc == 0)
        st->authors++;
    cms_user_clear(&u);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * A folder of Markdown files
 * ------------------------------------------------------------------------------ */

static int import_md(cms_store_t *s, const char *path, yaml_document_t *authors,
                     cms_import_stats_t *st, char *err)
{
    size_t len;
    char *text = read_file(path, &len);
    proto_post_t p = { 0 };
    yaml_document_t doc;
    bool have_doc = false;
    int rc = 0;
    if (text == NULL) {
        snprintf(err, CMS_ERR_LEN, "%.120s: %.120s", path, strerror(errno));
        return -EIO;
    }
    const char *body = text;
    if (strncmp(text, "---\n", 4) == 0) {
        char *end = strstr(text + 4, "\n---");
        if (end == NULL) {
            snprintf(err, CMS_ERR_LEN, "%.120s: front matter has no closing ---", path);
            rc = -EINVAL;
            goto out;
        }
        if ((rc = load_yaml(text + 4, (size_t)(end - text - 4 + 1), &doc)) < 0) {
            snprintf(err, CMS_ERR_LEN, "%.120s: front matter is not valid YAML", path);
            goto out;
        }
        have_doc = true;
        body = end + 4;
        body += strspn(body, "-");
        if (*body == '\n')
            body++;
    }
    yaml_node_t *fm = have_doc ? yaml_document_get_root_node(&doc) : NULL;
    const char *title = have_doc ? map_str(&doc, fm, "title") : NULL;
    if (title == NULL) {
        snprintf(err, CMS_ERR_LEN, "%.120s: front matter needs a title", path);
        rc = -EINVAL;
        goto out;
    }
    p.title = xstrdup(title);
    p.slug = cms_strdup(map_str(&doc, fm, "slug"));
    p.markdown = xstrdup(body);
    p.custom_excerpt = cms_strdup(map_str(&doc, fm, "excerpt"));
    p.feature_image = cms_strdup(map_str(&doc, fm, "feature_image"));
    p.feature_image_alt = cms_strdup(map_str(&doc, fm, "feature_image_alt"));
    p.feature_image_caption = cms_strdup(map_str(&doc, fm, "feature_image_caption"));
    p.meta_title = cms_strdup(map_str(&doc, fm, "meta_title"));
    p.meta_description = cms_strdup(map_str(&doc, fm, "meta_description"));
    p.canonical_url = cms_strdup(map_str(&doc, fm, "canonical_url"));
    p.featured = yaml_true(map_str(&doc, fm, "featured"));
    const char *type = map_str(&doc, fm, "type");
    p.type = type && strcmp(type, "page") == 0 ? PROTO_PAGE : PROTO_POST;
    p.status = yaml_true(map_str(&doc, fm, "draft")) ? PROTO_DRAFT : PROTO_PUBLISHED;
    const char *date = map_str(&doc, fm, "date");
    if (date && cms_time_parse(date, &p.published_at) < 0) {
        snprintf(err, CMS_ERR_LEN, "%.120s: date: '%.40s' is not YYYY-MM-DD[THH:MM[:SS]]", path,
                 date);
        rc = -EINVAL;
        goto out;
    }
    for_each_str(&doc, map_get(&doc, fm, "tags"), add_tag, &p);
    for_each_str(&doc, map_get(&doc, fm, "authors"), add_author, &p);
    for (int i = 0; i < p.nauthors; i++)
        if ((rc = ensure_author(s, p.authors[i].slug, authors, st, err)) < 0)
            goto out;
    cms_save_opts_t o = { .role = CMS_ROLE_EDITOR, .reason = "import" };
    if (p.published_at && p.status != PROTO_DRAFT)
        o.now = 0;
    rc = cms_post_save(s, &p, &o, NULL, err);
    if (rc == -EEXIST) {
        st->skipped++; /* imported before */
        rc = 0;
    } else if (rc == 0) {
        if (p.type == PROTO_PAGE)
            st->pages++;
        else
            st->posts++;
        st->tags += p.ntags;
    } else {
        char inner[CMS_ERR_LEN];
        snprintf(inner, sizeof inner, "%s", err);
        snprintf(err, CMS_ERR_LEN, "%.120s: %.120s", path, inner);
    }
out:
    if (have_doc)
        yaml_document_delete(&doc);
    proto_post_clear(&p);
    free(text);
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cms_import_dir(cms_store_t *s, const char *dir, cms_import_stats_t *st,
                   char err[CMS_ERR_LEN])
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char **names = NULL, path[4096];
    int n = 0, rc = 0;
    yaml_document_t authors;
    bool have_authors = false;
    memset(st, 0, sizeof(*st));
    if (d == NULL) {
        snprintf(err, CMS_ERR_LEN, "import: %.120s: %.120s", dir, strerror(errno));
        return -ENOENT;
    }
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 3 && strcmp(e->d_name + l - 3, ".md") == 0) {
            names = xrealloc(names, (size_t)(n + 1) * sizeof(char *));
            names[n++] = xstrdup(e->d_name);
        }
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(char *), cmp_names); /* a stable, readable order */
    snprintf(path, sizeof path, "%s/authors.yml", dir);
    size_t len;
    char *ay = read_file(path, &len);
    if (ay) {
        if (load_yaml(ay, len, &authors) < 0) {
            snprintf(err, CMS_ERR_LEN, "%.120s: not valid YAML", path);
            rc = -EINVAL;
        } else {
            have_authors = true;
        }
        free(ay);
    }
    for (int i = 0; rc == 0 && i < n; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        rc = import_md(s, path, have_authors ? &authors : NULL, st, err);
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (have_authors)
        yaml_document_delete(&authors);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * A Ghost export
 * ------------------------------------------------------------------------------ */

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Markdown from a Ghost post: the markdown card of its mobiledoc if there is one,
 * else its HTML (kept as raw HTML: Markdown passes HTML blocks through). */
static char *ghost_markdown(json_t *post)
{
    const char *md = jstr(post, "mobiledoc");
    if (md) {
        json_t *doc = json_loads(md, 0, NULL);
        json_t *cards = json_object_get(doc, "cards");
        buf_t b = BUF_INIT;
        size_t i;
        json_t *card;
        json_array_foreach(cards, i, card)
        {
            const char *kind = json_string_value(json_array_get(card, 0));
            json_t *payload = json_array_get(card, 1);
            if (kind && strcmp(kind, "markdown") == 0 && jstr(payload, "markdown")) {
                if (b.len)
                    buf_puts(&b, "\n\n");
                buf_puts(&b, jstr(payload, "markdown"));
            }
        }
        json_decref(doc);
        if (b.len)
            return buf_take(&b);
        buf_free(&b);
    }
    return xstrdup(jstr(post, "html") ? jstr(post, "html") : "");
}

static int64_t ghost_time(json_t *o, const char *key)
{
    int64_t t = 0;
    const char *v = jstr(o, key);
    return v && cms_time_parse(v, &t) == 0 ? t : 0;
}

/* The object of `list` whose "id" is `id`. */
static json_t *by_id(json_t *list, const char *id)
{
    size_t i;
    json_t *o;
    json_array_foreach(list, i, o)
    {
        const char *oid = jstr(o, "id");
        if (oid && id && strcmp(oid, id) == 0)
            return o;
    }
    return NULL;
}

/* Link rows (posts_tags / posts_authors) of post `pid`, ordered by sort_order. */
static int links_for(json_t *rows, const char *pid, const char *key, const char **out, int max)
{
    int n = 0;
    for (int want = 0; want < 1000 && n < max; want++) {
        size_t i;
        json_t *r;
        bool any = false;
        json_array_foreach(rows, i, r)
        {
            const char *p = jstr(r, "post_id");
            json_int_t so = json_integer_value(json_object_get(r, "sort_order"));
            if (p && strcmp(p, pid) == 0 && so == want && n < max) {
                out[n++] = jstr(r, key);
                any = true;
            }
        }
        if (!any && want > 0)
            break;
    }
    return n;
}

int cms_import_ghost(cms_store_t *s, const char *file, cms_import_stats_t *st,
                     char err[CMS_ERR_LEN])
{
    json_error_t je;
    json_t *root = json_load_file(file, 0, &je);
    int rc = 0;
    memset(st, 0, sizeof(*st));
    if (root == NULL) {
        snprintf(err, CMS_ERR_LEN, "%.120s:%d: %.120s", file, je.line, je.text);
        return -EINVAL;
    }
    json_t *data = json_object_get(json_array_get(json_object_get(root, "db"), 0), "data");
    json_t *posts = json_object_get(data, "posts"), *tags = json_object_get(data, "tags");
    json_t *users = json_object_get(data, "users");
    json_t *pt = json_object_get(data, "posts_tags"), *pa = json_object_get(data, "posts_authors");
    if (!json_is_array(posts)) {
        snprintf(err, CMS_ERR_LEN, "%.120s: no db[0].data.posts: not a Ghost export", file);
        json_decref(root);
        return -EINVAL;
    }
    /* Users first: posts name them as authors. */
    size_t i;
    json_t *o;
    json_array_foreach(users, i, o)
    {
        const char *slug = jstr(o, "slug");
        proto_author_t a = { 0 };
        if (slug == NULL || cms_author_get(s, slug, &a, NULL) == 0) {
            proto_author_clear(&a);
            continue;
        }
        cms_user_t u = { 0 };
        u.profile.slug = xstrdup(slug);
        u.profile.name = xstrdup(jstr(o, "name") ? jstr(o, "name") : slug);
        u.profile.bio = cms_strdup(jstr(o, "bio"));
        u.profile.profile_image = cms_strdup(jstr(o, "profile_image"));
        u.profile.website = cms_strdup(jstr(o, "website"));
        u.profile.location = cms_strdup(jstr(o, "location"));
        u.email = cms_strdup(jstr(o, "email"));
        u.role = CMS_ROLE_AUTHOR;
        if ((rc = cms_user_add(s, &u, cms_time_now(), err)) == 0)
            st->authors++;
        cms_user_clear(&u);
        if (rc < 0)
            goto out;
    }
    json_array_foreach(posts, i, o)
    {
        proto_post_t p = { 0 };
        const char *pid = jstr(o, "id"), *links[CMS_TAGS_MAX];
        const char *status = jstr(o, "status"), *type = jstr(o, "type");
        p.title = cms_strdup(jstr(o, "title"));
        p.slug = cms_strdup(jstr(o, "slug"));
        p.markdown = ghost_markdown(o);
        p.custom_excerpt = cms_strdup(jstr(o, "custom_excerpt"));
        p.feature_image = cms_strdup(jstr(o, "feature_image"));
        p.meta_title = cms_strdup(jstr(o, "meta_title"));
        p.meta_description = cms_strdup(jstr(o, "meta_description"));
        p.og_title = cms_strdup(jstr(o, "og_title"));
        p.og_description = cms_strdup(jstr(o, "og_description"));
        p.og_image = cms_strdup(jstr(o, "og_image"));
        p.canonical_url = cms_strdup(jstr(o, "canonical_url"));
        /* Older exports write 0/1, newer ones true/false. */
        p.featured = json_is_true(json_object_get(o, "featured")) ||
                     json_integer_value(json_object_get(o, "featured")) == 1;
        p.type = type && strcmp(type, "page") == 0 ? PROTO_PAGE : PROTO_POST;
        p.status = status && strcmp(status, "published") == 0   ? PROTO_PUBLISHED
                   : status && strcmp(status, "scheduled") == 0 ? PROTO_SCHEDULED
                                                                : PROTO_DRAFT;
        p.published_at = ghost_time(o, "published_at");
        p.created_at = ghost_time(o, "created_at");
        int n = pid ? links_for(pt, pid, "tag_id", links, CMS_TAGS_MAX) : 0;
        for (int k = 0; k < n; k++) {
            json_t *t = by_id(tags, links[k]);
            if (t == NULL || jstr(t, "name") == NULL)
                continue;
            add_tag(&p, jstr(t, "name"));
            p.tags[p.ntags - 1].slug = cms_strdup(jstr(t, "slug"));
            p.tags[p.ntags - 1].description = cms_strdup(jstr(t, "description"));
            st->tags++;
        }
        n = pid ? links_for(pa, pid, "author_id", links, CMS_AUTHORS_MAX) : 0;
        for (int k = 0; k < n; k++) {
            json_t *u = by_id(users, links[k]);
            if (u && jstr(u, "slug"))
                add_author(&p, jstr(u, "slug"));
        }
        cms_save_opts_t so = { .role = CMS_ROLE_EDITOR, .reason = "ghost import" };
        rc = cms_post_save(s, &p, &so, NULL, err);
        if (rc == -EEXIST) {
            st->skipped++;
            rc = 0;
        } else if (rc == 0) {
            if (p.type == PROTO_PAGE)
                st->pages++;
            else
                st->posts++;
        } else {
            char inner[CMS_ERR_LEN];
            snprintf(inner, sizeof inner, "%s", err);
            snprintf(err, CMS_ERR_LEN, "%.80s: post '%.40s': %.120s", file,
                     jstr(o, "slug") ? jstr(o, "slug") : "?", inner);
        }
        proto_post_clear(&p);
        if (rc < 0)
            goto out;
    }
out:
    json_decref(root);
    return rc;
}
