/* admin_site.c - the site around the posts: tags (editors and above), staff and
 * roles, and the site settings (administrators and the owner).
 *
 * Role changes follow Ghost's rules: nobody changes their own role or the
 * owner's, nobody hands out a role above their own, and ownership is not
 * transferred here (there is one owner, made by `oneblog-cms init`).
 */
#include "admin_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---------------------------------------------------------------------------------
 * Tags
 * ------------------------------------------------------------------------------ */

static int tags_page(admin_ctx_t *c, int status, const char *error, const proto_tag_t *edit)
{
    proto_tag_t *v = NULL;
    int n = 0;
    if (cms_tag_list(c->a->store, true, &v, &n, NULL) < 0)
        return admin_error(c, 500, "Tags could not be read.");
    tv_t *page = admin_page(c, "Tags");
    tv_t *list = tv_list();
    for (int i = 0; i < n; i++) {
        tv_t *t = tv_map();
        tv_map_str(t, "slug", v[i].slug);
        tv_map_str(t, "name", v[i].name);
        tv_map_str(t, "description", v[i].description ? v[i].description : "");
        tv_map_set(t, "internal", tv_bool(v[i].internal));
        tv_map_set(t, "count", tv_int(v[i].post_count));
        tv_list_add(list, t);
    }
    cms_tags_free(v, n);
    tv_map_set(page, "tags", list);
    if (edit) {
        tv_t *t = tv_map();
        tv_map_str(t, "slug", edit->slug ? edit->slug : "");
        tv_map_str(t, "name", edit->name ? edit->name : "");
        tv_map_str(t, "description", edit->description ? edit->description : "");
        tv_map_str(t, "feature_image", edit->feature_image ? edit->feature_image : "");
        tv_map_str(t, "meta_title", edit->meta_title ? edit->meta_title : "");
        tv_map_str(t, "meta_description", edit->meta_description ? edit->meta_description : "");
        tv_map_set(page, "edit", t);
    }
    if (error)
        tv_map_str(page, "error", error);
    return admin_render(c, status, "tags", page);
}

static int on_tags(admin_ctx_t *c)
{
    if (c->user.role < CMS_ROLE_EDITOR)
        return admin_error(c, 403, "Tags are managed by editors.");
    const char *slug = cn_http_query_get(c->req, "edit");
    proto_tag_t t = { 0 };
    if (slug && cms_tag_get(c->a->store, slug, true, &t, NULL) < 0) {
        proto_tag_clear(&t);
        return admin_error(c, 404, "No such tag.");
    }
    int rc = tags_page(c, 200, NULL, slug ? &t : NULL);
    proto_tag_clear(&t);
    return rc;
}

/* After a write the store versioned without telling us what changed (tags,
 * settings): announce the current version with the given paths. */
static void notify_paths(admin_ctx_t *c, const char *p1, const char *p2)
{
    cms_change_t chg = { .visible = true };
    if (cms_content_version(c->a->store, &chg.version) < 0)
        return;
    char *paths[2] = { (char *)p1, (char *)p2 };
    chg.paths = paths;
    chg.npaths = p2 ? 2 : 1;
    admin_notify(c->a, &chg);
}

int admin_tag_save(admin_ctx_t *c, proto_tag_t *t, char err[CMS_ERR_LEN])
{
    int rc = cms_tag_save(c->a->store, t, err);
    if (rc == 0) {
        char path[PROTO_SLUG_MAX + 16];
        snprintf(path, sizeof path, "/tag/%s/", t->slug);
        notify_paths(c, path, "/");
    }
    return rc;
}

static char *form_opt(admin_ctx_t *c, const char *name)
{
    const char *v = admin_form(c, name);
    return v && *v ? xstrdup(v) : NULL;
}

static int on_tag_save(admin_ctx_t *c)
{
    char err[CMS_ERR_LEN] = "";
    if (c->user.role < CMS_ROLE_EDITOR)
        return admin_error(c, 403, "Tags are managed by editors.");
    proto_tag_t t = { 0 };
    t.name = form_opt(c, "name");
    t.slug = form_opt(c, "slug");
    t.description = form_opt(c, "description");
    t.feature_image = form_opt(c, "feature_image");
    t.meta_title = form_opt(c, "meta_title");
    t.meta_description = form_opt(c, "meta_description");
    int rc = admin_tag_save(c, &t, err);
    if (rc < 0)
        rc = tags_page(c, admin_status_of(rc, err), err, &t);
    else
        rc = admin_redirect(c, "/admin/tags?notice=saved");
    proto_tag_clear(&t);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Staff and roles
 * ------------------------------------------------------------------------------ */

bool admin_may_set_role(const admin_ctx_t *c, const cms_user_t *target, cms_role_t role)
{
    if (c->user.role < CMS_ROLE_ADMINISTRATOR || role == CMS_ROLE_OWNER || role > c->user.role)
        return false;
    if (target && (target->id == c->user.id || target->role == CMS_ROLE_OWNER ||
                   target->role > c->user.role))
        return false;
    return true;
}

static int staff_page(admin_ctx_t *c, int status, const char *error)
{
    cms_user_t *v = NULL;
    int n = 0;
    if (cms_user_list(c->a->store, &v, &n, NULL) < 0)
        return admin_error(c, 500, "Staff could not be read.");
    tv_t *page = admin_page(c, "Staff");
    tv_t *list = tv_list();
    static const cms_role_t roles[] = { CMS_ROLE_CONTRIBUTOR, CMS_ROLE_AUTHOR, CMS_ROLE_EDITOR,
                                        CMS_ROLE_ADMINISTRATOR };
    for (int i = 0; i < n; i++) {
        tv_t *u = tv_map(), *opts = tv_list();
        tv_map_set(u, "id", tv_int(v[i].id));
        tv_map_str(u, "name", v[i].profile.name);
        tv_map_str(u, "slug", v[i].profile.slug);
        tv_map_str(u, "email", v[i].email ? v[i].email : "");
        tv_map_str(u, "role", cms_role_name(v[i].role));
        tv_map_set(u, "can_login", tv_bool(v[i].email && v[i].password_hash));
        bool any = false;
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            if (admin_may_set_role(c, &v[i], roles[k])) {
                tv_t *o = tv_map();
                tv_map_str(o, "name", cms_role_name(roles[k]));
                tv_map_set(o, "selected", tv_bool(roles[k] == v[i].role));
                tv_list_add(opts, o);
                any = true;
            }
        tv_map_set(u, "roles", opts);
        tv_map_set(u, "can_change", tv_bool(any));
        tv_list_add(list, u);
    }
    cms_users_free(v, n);
    tv_map_set(page, "users", list);
    tv_t *opts = tv_list();
    for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
        if (admin_may_set_role(c, NULL, roles[k])) {
            tv_t *o = tv_map();
            tv_map_str(o, "name", cms_role_name(roles[k]));
            tv_list_add(opts, o);
        }
    tv_map_set(page, "new_roles", opts);
    if (error)
        tv_map_str(page, "error", error);
    return admin_render(c, status, "staff", page);
}

static int on_staff(admin_ctx_t *c)
{
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_error(c, 403, "Staff are managed by administrators.");
    return staff_page(c, 200, NULL);
}

/* Add a staff user with a password (at least 10 characters). Shared with the API. */
int admin_user_add(admin_ctx_t *c, const char *email, const char *name, const char *role,
                   const char *password, cms_user_t *out, char err[CMS_ERR_LEN])
{
    cms_role_t r;
    if (role == NULL || cms_role_parse(role, &r) < 0) {
        snprintf(err, CMS_ERR_LEN, "role: not contributor, author, editor or administrator");
        return -EINVAL;
    }
    if (!admin_may_set_role(c, NULL, r)) {
        snprintf(err, CMS_ERR_LEN, "role: you may not give the role %s", cms_role_name(r));
        return -EPERM;
    }
    if (email == NULL || name == NULL || !*email || !*name) {
        snprintf(err, CMS_ERR_LEN, "email and name: required");
        return -EINVAL;
    }
    if (password == NULL || strlen(password) < 10 || strlen(password) > 1024) {
        snprintf(err, CMS_ERR_LEN, "password: 10 to 1024 characters");
        return -EINVAL;
    }
    memset(out, 0, sizeof(*out));
    out->email = xstrdup(email);
    out->profile.name = xstrdup(name);
    out->role = r;
    if (cms_admin_hash_password(password, &out->password_hash) < 0) {
        snprintf(err, CMS_ERR_LEN, "password: could not be hashed");
        return -EIO;
    }
    return cms_user_add(c->a->store, out, admin_now(c->a), err);
}

static int on_staff_add(admin_ctx_t *c)
{
    char err[CMS_ERR_LEN] = "";
    cms_user_t u = { 0 };
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_error(c, 403, "Staff are managed by administrators.");
    int rc = admin_user_add(c, admin_form(c, "email"), admin_form(c, "name"),
                            admin_form(c, "role"), admin_form(c, "password"), &u, err);
    cms_user_clear(&u);
    if (rc < 0)
        return staff_page(c, admin_status_of(rc, err), err);
    return admin_redirect(c, "/admin/staff?notice=created");
}

int admin_user_set_role(admin_ctx_t *c, int64_t id, const char *role, char err[CMS_ERR_LEN])
{
    cms_user_t u = { 0 };
    cms_role_t r;
    int rc;
    if (role == NULL || cms_role_parse(role, &r) < 0) {
        snprintf(err, CMS_ERR_LEN, "role: not contributor, author, editor or administrator");
        return -EINVAL;
    }
    if ((rc = cms_user_get(c->a->store, id, &u, err)) < 0)
        goto out;
    if (!admin_may_set_role(c, &u, r)) {
        snprintf(err, CMS_ERR_LEN, "role: you may not make %s %s", u.profile.slug,
                 cms_role_name(r));
        rc = -EPERM;
        goto out;
    }
    rc = cms_user_set_role(c->a->store, id, r, err);
out:
    cms_user_clear(&u);
    return rc;
}

static int on_staff_role(admin_ctx_t *c)
{
    char err[CMS_ERR_LEN] = "", *end;
    const char *ids = cn_http_param(c->req, "id");
    long long id = ids ? strtoll(ids, &end, 10) : 0;
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_error(c, 403, "Staff are managed by administrators.");
    int rc = admin_user_set_role(c, id, admin_form(c, "role"), err);
    if (rc < 0)
        return staff_page(c, admin_status_of(rc, err), err);
    return admin_redirect(c, "/admin/staff?notice=updated");
}

/* ---------------------------------------------------------------------------------
 * Settings
 * ------------------------------------------------------------------------------ */

static const char *const setting_keys[] = { "title", "description", "url", "timezone", "locale",
                                            "logo", "accent_color", "posts_per_page",
                                            "navigation" };

static char *navigation_json(const proto_settings_t *s)
{
    buf_t b = BUF_INIT;
    buf_putc(&b, '[');
    for (int i = 0; i < s->nnavigation; i++) {
        char l[1024], u[4096];
        cn_http_json_escape(l, sizeof l, s->navigation[i].label ? s->navigation[i].label : "");
        cn_http_json_escape(u, sizeof u, s->navigation[i].url ? s->navigation[i].url : "");
        buf_printf(&b, "%s{\"label\":\"%s\",\"url\":\"%s\"}", i ? "," : "", l, u);
    }
    buf_putc(&b, ']');
    return buf_take(&b);
}

static int settings_page(admin_ctx_t *c, int status, const char *error)
{
    proto_settings_t s = { 0 };
    if (cms_settings_get(c->a->store, &s, NULL) < 0) {
        proto_settings_clear(&s);
        return admin_error(c, 500, "Settings could not be read.");
    }
    tv_t *page = admin_page(c, "Settings"), *m = tv_map();
    tv_map_str(m, "title", s.title ? s.title : "");
    tv_map_str(m, "description", s.description ? s.description : "");
    tv_map_str(m, "url", s.url ? s.url : "");
    tv_map_str(m, "timezone", s.timezone ? s.timezone : "");
    tv_map_str(m, "locale", s.locale ? s.locale : "");
    tv_map_str(m, "logo", s.logo ? s.logo : "");
    tv_map_str(m, "accent_color", s.accent_color ? s.accent_color : "");
    tv_map_set(m, "posts_per_page", tv_int(s.posts_per_page));
    char *nav = navigation_json(&s);
    tv_map_str(m, "navigation", nav);
    free(nav);
    proto_settings_clear(&s);
    tv_map_set(page, "settings", m);
    if (error)
        tv_map_str(page, "error", error);
    return admin_render(c, status, "settings", page);
}

static int on_settings(admin_ctx_t *c)
{
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_error(c, 403, "Settings are managed by administrators.");
    return settings_page(c, 200, NULL);
}

/* Set each given key; stops at the first error. Shared with the API (get(key)
 * returns the new value or NULL). */
int admin_settings_apply(admin_ctx_t *c, const char *(*get)(void *, const char *), void *arg,
                         char err[CMS_ERR_LEN])
{
    cms_change_t all = { 0 };
    int rc = 0;
    for (size_t k = 0; k < sizeof setting_keys / sizeof setting_keys[0]; k++) {
        const char *v = get(arg, setting_keys[k]);
        cms_change_t chg = { 0 };
        if (v == NULL)
            continue;
        if ((rc = cms_settings_set(c->a->store, setting_keys[k], v, &chg, err)) < 0) {
            cms_change_clear(&chg);
            break;
        }
        all.visible = true;
        all.version = chg.version;
        cms_change_clear(&chg);
    }
    if (all.visible) {
        char *paths[1] = { "/" };
        all.paths = paths;
        all.npaths = 1;
        admin_notify(c->a, &all);
    }
    return rc;
}

static const char *form_get(void *arg, const char *key)
{
    return admin_form(arg, key);
}

static int on_settings_save(admin_ctx_t *c)
{
    char err[CMS_ERR_LEN] = "";
    if (c->user.role < CMS_ROLE_ADMINISTRATOR)
        return admin_error(c, 403, "Settings are managed by administrators.");
    int rc = admin_settings_apply(c, form_get, c, err);
    if (rc < 0)
        return settings_page(c, admin_status_of(rc, err), err);
    return admin_redirect(c, "/admin/settings?notice=saved");
}

const admin_route_t cms_admin_site_routes[] = {
    { "GET", "/admin/tags", on_tags, 0 },
    { "POST", "/admin/tags", on_tag_save, 0 },
    { "GET", "/admin/staff", on_staff, 0 },
    { "POST", "/admin/staff", on_staff_add, 0 },
    { "POST", "/admin/staff/:id/role", on_staff_role, 0 },
    { "GET", "/admin/settings", on_settings, 0 },
    { "POST", "/admin/settings", on_settings_save, 0 },
    { NULL, NULL, NULL, 0 },
};
