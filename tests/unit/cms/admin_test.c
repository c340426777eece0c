/* admin_test.c - the admin's pure helpers (constant-time comparison, random ids,
 * the role rules, tag lists, error statuses) and the admin server itself on a
 * kernel-picked loopback port: a small blocking HTTP client runs on the blocking
 * pool while the node serves, checks the API's key handling and error bodies, and
 * that an admin publish reaches a `cms` subscriber as {content_changed, V, Paths}.
 * The HTTP flows of the pages are in tests/integ/cms_admin.sh.
 */
#include "store_helper.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin_int.h"
#include "buf.h"
#include "util.h"
#include "cnode/gen_server.h"

/* ---- pure helpers ---------------------------------------------------------------- */

TEST(ct_streq)
{
    ASSERT(admin_ct_streq("abc", "abc"));
    ASSERT(!admin_ct_streq("abc", "abd"));
    ASSERT(!admin_ct_streq("abc", "ab"));
    ASSERT(!admin_ct_streq("", "a"));
    ASSERT(admin_ct_streq("", ""));
}

TEST(random_hex_ids)
{
    char a[ADMIN_SID_HEX + 1], b[ADMIN_SID_HEX + 1];
    admin_random_hex(a);
    admin_random_hex(b);
    ASSERT_EQ(strlen(a), (size_t)64);
    ASSERT_EQ(strspn(a, "0123456789abcdef"), (size_t)64);
    ASSERT(strcmp(a, b) != 0);
}

static proto_post_t post_by(const char *slug, int status)
{
    proto_post_t p = { 0 };
    p.id = 7;
    p.status = status;
    p.authors = xcalloc(1, sizeof(proto_author_t));
    p.authors[0].slug = xstrdup(slug);
    p.authors[0].id = 100;
    p.nauthors = 1;
    return p;
}

static admin_ctx_t as(cms_role_t role, int64_t id, const char *slug)
{
    admin_ctx_t c = { 0 };
    c.user.id = id;
    c.user.role = role;
    c.user.profile.slug = (char *)slug;
    return c;
}

TEST(role_rules)
{
    proto_post_t mine_draft = post_by("me", PROTO_DRAFT), mine_pub = post_by("me", PROTO_PUBLISHED);
    proto_post_t other = post_by("other", PROTO_DRAFT);
    mine_draft.authors[0].id = mine_pub.authors[0].id = 5;
    admin_ctx_t contrib = as(CMS_ROLE_CONTRIBUTOR, 5, "me"), author = as(CMS_ROLE_AUTHOR, 5, "me");
    admin_ctx_t editor = as(CMS_ROLE_EDITOR, 9, "ed");
    /* contributors: own drafts only, never publish */
    ASSERT(admin_may(&contrib, ADMIN_EDIT, NULL));
    ASSERT(!admin_may(&contrib, ADMIN_PUBLISH, NULL));
    ASSERT(admin_may(&contrib, ADMIN_EDIT, &mine_draft));
    ASSERT(!admin_may(&contrib, ADMIN_EDIT, &mine_pub));
    ASSERT(!admin_may(&contrib, ADMIN_PUBLISH, &mine_draft));
    ASSERT(!admin_may(&contrib, ADMIN_EDIT, &other));
    ASSERT(admin_may(&contrib, ADMIN_DELETE, &mine_draft));
    ASSERT(!admin_may(&contrib, ADMIN_DELETE, &mine_pub));
    /* authors: own posts, any status */
    ASSERT(admin_may(&author, ADMIN_PUBLISH, NULL));
    ASSERT(admin_may(&author, ADMIN_EDIT, &mine_pub));
    ASSERT(admin_may(&author, ADMIN_PUBLISH, &mine_draft));
    ASSERT(!admin_may(&author, ADMIN_EDIT, &other));
    ASSERT(!admin_may(&author, ADMIN_PUBLISH, &other));
    ASSERT(!admin_may(&author, ADMIN_VIEW, &other));
    /* editors: everything */
    ASSERT(admin_may(&editor, ADMIN_EDIT, &other));
    ASSERT(admin_may(&editor, ADMIN_PUBLISH, &other));
    ASSERT(admin_may(&editor, ADMIN_DELETE, &mine_pub));
    proto_post_clear(&mine_draft);
    proto_post_clear(&mine_pub);
    proto_post_clear(&other);
}

TEST(role_changes)
{
    admin_ctx_t admin = as(CMS_ROLE_ADMINISTRATOR, 2, "ad"), editor = as(CMS_ROLE_EDITOR, 3, "ed");
    cms_user_t owner = { .id = 1, .role = CMS_ROLE_OWNER }, au = { .id = 4, .role = CMS_ROLE_AUTHOR };
    cms_user_t self = { .id = 2, .role = CMS_ROLE_ADMINISTRATOR };
    ASSERT(admin_may_set_role(&admin, &au, CMS_ROLE_EDITOR));
    ASSERT(admin_may_set_role(&admin, NULL, CMS_ROLE_ADMINISTRATOR));
    ASSERT(!admin_may_set_role(&admin, &au, CMS_ROLE_OWNER));
    ASSERT(!admin_may_set_role(&admin, &owner, CMS_ROLE_AUTHOR));
    ASSERT(!admin_may_set_role(&admin, &self, CMS_ROLE_AUTHOR));
    ASSERT(!admin_may_set_role(&editor, &au, CMS_ROLE_CONTRIBUTOR));
}

TEST(tag_lists)
{
    proto_post_t p = { 0 };
    admin_set_tags(&p, " News ,, Release notes,  #internal ,");
    ASSERT_EQ(p.ntags, 3);
    ASSERT_STR_EQ(p.tags[0].name, "News");
    ASSERT_STR_EQ(p.tags[1].name, "Release notes");
    ASSERT_STR_EQ(p.tags[2].name, "#internal");
    admin_set_tags(&p, "");
    ASSERT_EQ(p.ntags, 0);
    admin_set_authors(&p, "a, b");
    ASSERT_EQ(p.nauthors, 2);
    ASSERT_STR_EQ(p.authors[1].slug, "b");
    proto_post_clear(&p);
}

TEST(error_statuses)
{
    ASSERT_EQ(admin_status_of(-EEXIST, "slug: taken"), 409);
    ASSERT_EQ(admin_status_of(-EINVAL, "markdown: 3000000 bytes, at most 2097152"), 413);
    ASSERT_EQ(admin_status_of(-EINVAL, "title: not valid UTF-8"), 422);
    ASSERT_EQ(admin_status_of(-ENOENT, "no post"), 404);
    ASSERT_EQ(admin_status_of(-ENOENT, "authors: no author with slug 'x'"), 422);
    ASSERT_EQ(admin_status_of(-EPERM, ""), 403);
    ASSERT_EQ(admin_status_of(-EIO, ""), 500);
}

/* ---- the server ---------------------------------------------------------------------- */

typedef struct http_job {
    int port;
    const char *method, *path, *auth, *body;
    buf_t resp;
    int status;
} http_job_t;

/* One request with Connection: close, on a pool thread (plain blocking sockets). */
static void do_http(void *arg)
{
    http_job_t *j = arg;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)j->port) };
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    j->status = -1;
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        if (fd >= 0)
            close(fd);
        return;
    }
    buf_t req = BUF_INIT;
    buf_printf(&req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n", j->method,
               j->path);
    if (j->auth)
        buf_printf(&req, "Authorization: Bearer %s\r\n", j->auth);
    if (j->body)
        buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                   strlen(j->body));
    buf_puts(&req, "\r\n");
    if (j->body)
        buf_puts(&req, j->body);
    size_t off = 0;
    while (off < req.len) {
        ssize_t n = write(fd, req.data + off, req.len - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    buf_free(&req);
    char chunk[4096];
    ssize_t n;
    while ((n = read(fd, chunk, sizeof chunk)) > 0)
        buf_append(&j->resp, chunk, (size_t)n);
    close(fd);
    if (j->resp.len > 12)
        j->status = atoi(j->resp.data + 9);
}

static int http(http_job_t *j)
{
    ASSERT_EQ(cn_blocking(do_http, j), 0);
    return j->status;
}

static cms_rpc_opts_t rpc_opts; /* outlives the server */

static bool match_changed(const cn_msg_t *m, void *arg)
{
    (void)arg;
    cn_term_t t = cn_msg_term(m);
    int i = t.index, arity;
    return ei_decode_tuple_header(t.buf, &i, &arity) == 0 && arity == 3 &&
           cn_decode_atom_is(t.buf, &i, "content_changed");
}

static void server_scenario(cms_store_t *s, void *arg)
{
    (void)arg;
    char err[CMS_ERR_LEN] = "";
    cms_admin_t *a = NULL;
    rpc_opts = (cms_rpc_opts_t){ .store = s };
    ASSERT_EQ(cms_rpc_start(&rpc_opts, NULL), 0);
    cms_admin_opts_t o = { .store = s, .port = 0, .dir = "cms" };
    int rc = cms_admin_start(&o, &a, err);
    if (rc < 0)
        test__fail(__FILE__, __LINE__, "cms_admin_start: %s", err);
    int port = cms_admin_port(a);
    ASSERT(port > 0);

    /* An owner with a key, and this process subscribed to `cms`. */
    cms_user_t u = { 0 };
    u.email = xstrdup("o@example.com");
    u.profile.name = xstrdup("Owner");
    u.role = CMS_ROLE_OWNER;
    ASSERT_EQ(cms_admin_hash_password("a password of length", &u.password_hash), 0);
    ASSERT(strncmp(u.password_hash, "$argon2id$v=19$m=65536,t=2,p=1$", 31) == 0);
    ASSERT(admin_password_ok(u.password_hash, "a password of length"));
    ASSERT(!admin_password_ok(u.password_hash, "a password of lengtH"));
    ASSERT_EQ(cms_user_add(s, &u, cms_time_now(), err), 0);
    char *key = NULL;
    ASSERT_EQ(cms_admin_apikey_create(s, "t", u.id, &key, err), 0);
    proto_req_t sub;
    memset(&sub, 0, sizeof sub);
    sub.kind = PROTO_REQ_SUBSCRIBE;
    sub.pid = cn_self();
    ei_x_buff x;
    cn_msg_t *m = NULL;
    cn_term_t t;
    cn_x_new(&x);
    ASSERT_EQ(proto_req_encode(&x, &sub), 0);
    ASSERT_EQ(cn_gen_call(cn_dest_name("cms"), &x, 5000, &m, &t), 0);
    cn_msg_free(m);

    /* The API: no key, a bad key, then a post published at creation. */
    http_job_t j1 = { .port = port, .method = "GET", .path = "/admin/api/v1/me" };
    ASSERT_EQ(http(&j1), 401);
    ASSERT_NOT_NULL(strstr(j1.resp.data, "{\"error\":{\"code\":\"unauthorized\""));
    buf_free(&j1.resp);
    char bad[128];
    snprintf(bad, sizeof bad, "%.*s0", (int)strlen(key) - 1, key);
    if (key[strlen(key) - 1] == '0')
        bad[strlen(bad) - 1] = '1';
    http_job_t j2 = { .port = port, .method = "GET", .path = "/admin/api/v1/me", .auth = bad };
    ASSERT_EQ(http(&j2), 401);
    buf_free(&j2.resp);
    http_job_t j3 = { .port = port, .method = "GET", .path = "/admin/api/v1/me", .auth = key };
    ASSERT_EQ(http(&j3), 200);
    ASSERT_NOT_NULL(strstr(j3.resp.data, "\"role\":\"owner\""));
    buf_free(&j3.resp);
    http_job_t j4 = { .port = port, .method = "POST", .path = "/admin/api/v1/posts", .auth = key,
                      .body = "{\"title\":\"Admin news\",\"markdown\":\"hi\",\"status\":\"published\"}" };
    ASSERT_EQ(http(&j4), 201);
    ASSERT_NOT_NULL(strstr(j4.resp.data, "\"status\":\"published\""));
    buf_free(&j4.resp);

    /* Saved, then published through `cms`: both reach the subscriber; the
     * second names the post's path. */
    bool saw_path = false;
    for (int k = 0; k < 4 && !saw_path; k++) {
        cn_msg_t *cm = NULL;
        if (cn_receive(match_changed, NULL, 5000, &cm) < 0)
            break;
        cn_term_t ct = cn_msg_term(cm);
        int i = ct.index, arity, n;
        long long v;
        ei_decode_tuple_header(ct.buf, &i, &arity);
        ei_skip_term(ct.buf, &i);
        ASSERT_EQ(ei_decode_longlong(ct.buf, &i, &v), 0);
        ASSERT(v > 0);
        ASSERT_EQ(ei_decode_list_header(ct.buf, &i, &n), 0);
        for (int p = 0; p < n; p++) {
            char path[256];
            long len;
            if (ei_decode_binary(ct.buf, &i, path, &len) == 0) {
                path[len] = '\0';
                saw_path |= strcmp(path, "/admin-news/") == 0;
            }
        }
        cn_msg_free(cm);
    }
    ASSERT(saw_path);

    /* A bad body: a JSON error, nothing written. */
    http_job_t j5 = { .port = port, .method = "POST", .path = "/admin/api/v1/posts", .auth = key,
                      .body = "[1,2" };
    ASSERT_EQ(http(&j5), 400);
    ASSERT_NOT_NULL(strstr(j5.resp.data, "\"code\":\"bad_json\""));
    buf_free(&j5.resp);
    int64_t total = 0;
    ASSERT_EQ(cms_post_count_all(s, &total), 0);
    ASSERT_EQ(total, 1);

    /* Pages need a session. */
    http_job_t j6 = { .port = port, .method = "GET", .path = "/admin/posts" };
    ASSERT_EQ(http(&j6), 303);
    ASSERT_NOT_NULL(strstr(j6.resp.data, "Location: /admin/login"));
    buf_free(&j6.resp);

    free(key);
    cms_user_clear(&u);
    cms_admin_stop(a);
    cms_admin_free(a);
    ASSERT_EQ(cn_gen_server_stop(cn_dest_name("cms"), "normal", 5000), 0);
}

TEST(server_api_and_notifications)
{
    run_store(server_scenario, NULL);
}
TEST_TIMEOUT(server_api_and_notifications, 120);
