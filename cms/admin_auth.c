/* admin_auth.c - who may use the admin: argon2id passwords, sessions, CSRF tokens,
 * login rate limiting, and the Admin API's keys.
 *
 * Sessions are random 256-bit ids (getrandom) kept in this node's memory with an
 * idle and an absolute expiry; the cookie is HttpOnly, SameSite=Strict, Path=/admin
 * and Secure when ONEBLOG_ADMIN_SECURE_COOKIE is set. A restart logs everybody
 * out, which is acceptable for an admin on one node. Each session has its own
 * CSRF token, put in every form and checked on every POST; the login form, before
 * there is a session, uses a double-submit cookie. Ids and tokens are compared in
 * constant time, and never logged.
 *
 * Login limits: failures are counted per account (5 a minute) and per client
 * address (20 a minute, since several editors may share one). Reaching a limit
 * locks that account or address for 60 s, doubling with each further lockout (up
 * to 2^10 x) until a successful login. A locked login is refused (429) before the
 * password is checked, so lockouts also cap the CPU an attacker can spend.
 * Unknown emails are checked against a dummy hash, so timing tells nothing.
 *
 * API keys are "ID.SECRET" with a 256-bit random secret; the store keeps
 * "sha256$HEX" of the secret. A fast hash is enough for a random 256-bit secret
 * (nothing to brute-force); argon2id at 64 MiB per API call would only give
 * callers a way to exhaust the server.
 */
#include "admin_int.h"

#include <argon2.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include <openssl/sha.h>

#include "cnode/proc.h"
#include "util.h"

/* ---------------------------------------------------------------------------------
 * Randomness, comparisons, hashing
 * ------------------------------------------------------------------------------ */

void admin_random_hex(char out[ADMIN_SID_HEX + 1])
{
    unsigned char r[ADMIN_SID_HEX / 2];
    size_t got = 0;
    while (got < sizeof r) {
        ssize_t n = getrandom(r + got, sizeof r - got, 0);
        if (n < 0 && errno != EINTR)
            abort(); /* no randomness: never hand out guessable ids */
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof r; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

bool admin_ct_streq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char d = la != lb;
    for (size_t i = 0; i < la; i++)
        d |= (unsigned char)a[i] ^ (unsigned char)b[i < lb ? i : 0];
    return d == 0;
}

typedef struct hash_job {
    const char *password, *encoded;
    char out[256];
    int rc;
} hash_job_t;

/* argon2id with 64 MiB and 2 passes (OWASP's minimum is 19 MiB, 2 passes); the
 * one place passwords are hashed (the CLI's --password-stdin comes here too). */
static void do_hash(void *arg)
{
    hash_job_t *j = arg;
    unsigned char salt[16];
    if (getrandom(salt, sizeof salt, 0) != (ssize_t)sizeof salt) {
        j->rc = -EIO;
        return;
    }
    j->rc = argon2id_hash_encoded(2, 1 << 16, 1, j->password, strlen(j->password), salt,
                                  sizeof salt, 32, j->out, sizeof j->out) == ARGON2_OK
                ? 0
                : -EINVAL;
}

static void do_verify(void *arg)
{
    hash_job_t *j = arg;
    j->rc = argon2id_verify(j->encoded, j->password, strlen(j->password)) == ARGON2_OK ? 0
                                                                                       : -EACCES;
}

/* Hashing takes ~100 ms of CPU and 64 MiB: off the scheduler thread. The job is
 * on the heap, as the pool thread writes it while this process is parked. */
static int run_job(void (*fn)(void *), hash_job_t *j)
{
    if (cn_blocking(fn, j) < 0)
        fn(j);
    return j->rc;
}

int cms_admin_hash_password(const char *password, char **out)
{
    hash_job_t *j = xcalloc(1, sizeof(*j));
    j->password = password;
    int rc = run_job(do_hash, j);
    *out = rc == 0 ? xstrdup(j->out) : NULL;
    memset(j, 0, sizeof(*j));
    free(j);
    return rc;
}

bool admin_password_ok(const char *encoded, const char *password)
{
    if (encoded == NULL || password == NULL || strncmp(encoded, "$argon2id$", 10) != 0)
        return false;
    hash_job_t *j = xcalloc(1, sizeof(*j));
    j->password = password;
    j->encoded = encoded;
    int rc = run_job(do_verify, j);
    free(j);
    return rc == 0;
}

static void sha256_hex(const char *s, char out[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

int admin_auth_init(cms_admin_t *a)
{
    char pw[ADMIN_SID_HEX + 1];
    admin_random_hex(pw);
    return cms_admin_hash_password(pw, &a->dummy_hash);
}

void admin_auth_free(cms_admin_t *a)
{
    free(a->dummy_hash);
    free(a->sessions);
    free(a->limits);
}

/* ---------------------------------------------------------------------------------
 * Sessions
 * ------------------------------------------------------------------------------ */

static bool session_live(const admin_session_t *s, int64_t now)
{
    return now - s->seen < ADMIN_SESSION_IDLE_S && now - s->created < ADMIN_SESSION_MAX_S;
}

static void sessions_prune(cms_admin_t *a, int64_t now)
{
    for (int i = 0; i < a->nsessions;)
        if (!session_live(&a->sessions[i], now))
            a->sessions[i] = a->sessions[--a->nsessions];
        else
            i++;
}

static admin_session_t *session_new(cms_admin_t *a, int64_t user_id)
{
    int64_t now = admin_now(a);
    sessions_prune(a, now);
    if (a->nsessions == ADMIN_SESSIONS_MAX) {
        /* Full: the least recently used goes. */
        int old = 0;
        for (int i = 1; i < a->nsessions; i++)
            if (a->sessions[i].seen < a->sessions[old].seen)
                old = i;
        a->sessions[old] = a->sessions[--a->nsessions];
    }
    if (a->nsessions == a->capsessions) {
        a->capsessions = a->capsessions ? 2 * a->capsessions : 16;
        a->sessions = xrealloc(a->sessions, (size_t)a->capsessions * sizeof(admin_session_t));
    }
    admin_session_t *s = &a->sessions[a->nsessions++];
    memset(s, 0, sizeof(*s));
    admin_random_hex(s->id);
    admin_random_hex(s->csrf);
    s->user_id = user_id;
    s->created = s->seen = now;
    return s;
}

/* The live session with this id, or -1. Every entry is compared (in constant
 * time), so the time taken does not depend on where or whether it matches. */
static int session_find(cms_admin_t *a, const char *sid)
{
    int found = -1;
    int64_t now = admin_now(a);
    if (sid == NULL || strlen(sid) != ADMIN_SID_HEX)
        return -1;
    for (int i = 0; i < a->nsessions; i++)
        if (admin_ct_streq(a->sessions[i].id, sid))
            found = i;
    if (found >= 0 && !session_live(&a->sessions[found], now)) {
        a->sessions[found] = a->sessions[--a->nsessions];
        found = -1;
    }
    return found;
}

int admin_session_load(admin_ctx_t *c)
{
    cms_admin_t *a = c->a;
    int i = session_find(a, cn_http_cookie_get(c->req, ADMIN_SESSION_COOKIE));
    if (i < 0)
        return -ENOENT;
    admin_session_t *s = &a->sessions[i];
    s->seen = admin_now(a);
    memcpy(c->sid, s->id, sizeof c->sid);
    memcpy(c->csrf, s->csrf, sizeof c->csrf);
    int64_t uid = s->user_id;
    /* s may move while the store parks this process: nothing below uses it. */
    if (cms_user_get(a->store, uid, &c->user, NULL) < 0 || c->user.email == NULL) {
        cms_user_clear(&c->user);
        return -ENOENT;
    }
    return 0;
}

bool admin_csrf_ok(admin_ctx_t *c)
{
    const char *t = admin_form(c, "_csrf");
    if (t == NULL)
        t = cn_http_header(c->req, "X-CSRF-Token");
    return t && c->csrf[0] && admin_ct_streq(t, c->csrf);
}

void admin_sessions_drop_user(cms_admin_t *a, int64_t user_id)
{
    for (int i = 0; i < a->nsessions;)
        if (a->sessions[i].user_id == user_id)
            a->sessions[i] = a->sessions[--a->nsessions];
        else
            i++;
}

static void session_cookie(admin_ctx_t *c, const char *value, int64_t max_age)
{
    cn_http_cookie_attrs_t at = { .max_age = max_age, .path = "/admin", .same_site = "Strict",
                                  .secure = c->a->secure_cookie, .http_only = true };
    cn_http_set_cookie(c->req, ADMIN_SESSION_COOKIE, value, &at);
}

/* ---------------------------------------------------------------------------------
 * Login limits
 * ------------------------------------------------------------------------------ */

static admin_limit_t *limit_get(cms_admin_t *a, const char *key, bool create, int64_t now)
{
    for (int i = 0; i < a->nlimits; i++)
        if (strcmp(a->limits[i].key, key) == 0)
            return &a->limits[i];
    if (!create)
        return NULL;
    if (a->nlimits >= ADMIN_LIMITS_MAX) {
        /* Forget entries that are neither locked nor recently failing. */
        for (int i = 0; i < a->nlimits;)
            if (a->limits[i].locked_until <= now &&
                now - a->limits[i].last_fail > 86400 / 24)
                a->limits[i] = a->limits[--a->nlimits];
            else
                i++;
        if (a->nlimits >= ADMIN_LIMITS_MAX)
            a->limits[0] = a->limits[--a->nlimits];
    }
    if (a->nlimits == a->caplimits) {
        a->caplimits = a->caplimits ? 2 * a->caplimits : 16;
        a->limits = xrealloc(a->limits, (size_t)a->caplimits * sizeof(admin_limit_t));
    }
    admin_limit_t *l = &a->limits[a->nlimits++];
    memset(l, 0, sizeof(*l));
    snprintf(l->key, sizeof l->key, "%s", key);
    return l;
}

/* Seconds until `key` may try again, or 0. */
static int64_t limit_wait(cms_admin_t *a, const char *key, int64_t now)
{
    admin_limit_t *l = limit_get(a, key, false, now);
    return l && l->locked_until > now ? l->locked_until - now : 0;
}

static void limit_fail(cms_admin_t *a, const char *key, int max, int64_t now)
{
    admin_limit_t *l = limit_get(a, key, true, now);
    if (now - l->window_start >= ADMIN_LOGIN_WINDOW_S) {
        l->window_start = now;
        l->fails = 0;
    }
    l->last_fail = now;
    if (++l->fails >= max) {
        int shift = l->lockouts < 10 ? l->lockouts : 10;
        l->locked_until = now + ((int64_t)ADMIN_LOCKOUT_BASE_S << shift);
        l->lockouts++;
        l->fails = 0;
        l->window_start = now;
        cms_log(CMS_LOG_WARN, "admin", "login locked for %lld s: %s",
                (long long)(l->locked_until - now), key);
    }
}

static void limit_reset(cms_admin_t *a, const char *key)
{
    for (int i = 0; i < a->nlimits; i++)
        if (strcmp(a->limits[i].key, key) == 0) {
            a->limits[i] = a->limits[--a->nlimits];
            return;
        }
}

/* "ip:ADDR" of the peer, without the port. */
static void ip_key(cn_http_req_t *req, char out[200])
{
    const char *r = cn_http_remote(req);
    const char *colon = r ? strrchr(r, ':') : NULL;
    int len = colon ? (int)(colon - r) : (int)strlen(r ? r : "");
    snprintf(out, 200, "ip:%.*s", len > 150 ? 150 : len, r ? r : "");
}

static void acct_key(const char *email, char out[200])
{
    int n = snprintf(out, 200, "acct:%.180s", email);
    for (int i = 5; i < n && i < 200; i++)
        out[i] = (char)((out[i] >= 'A' && out[i] <= 'Z') ? out[i] - 'A' + 'a' : out[i]);
}

/* ---------------------------------------------------------------------------------
 * Login and logout pages
 * ------------------------------------------------------------------------------ */

static int login_page(admin_ctx_t *c, int status, const char *error, const char *email)
{
    char token[ADMIN_SID_HEX + 1];
    admin_random_hex(token);
    cn_http_cookie_attrs_t at = { .max_age = 3600, .path = "/admin", .same_site = "Strict",
                                  .secure = c->a->secure_cookie, .http_only = true };
    cn_http_set_cookie(c->req, ADMIN_LOGIN_COOKIE, token, &at);
    tv_t *p = admin_page(c, "Sign in");
    tv_map_str(p, "login_csrf", token);
    if (error)
        tv_map_str(p, "error", error);
    if (email)
        tv_map_str(p, "email", email);
    return admin_render(c, status, "login", p);
}

static int on_login_form(admin_ctx_t *c)
{
    if (admin_session_load(c) == 0)
        return admin_redirect(c, "/admin/posts");
    return login_page(c, 200, NULL, NULL);
}

static int on_login(admin_ctx_t *c)
{
    cms_admin_t *a = c->a;
    const char *email = admin_form(c, "email"), *pw = admin_form(c, "password");
    const char *token = admin_form(c, "_csrf"), *cookie = cn_http_cookie_get(c->req,
                                                                             ADMIN_LOGIN_COOKIE);
    char ipk[200], ack[200], msg[160];
    int64_t now = admin_now(a), wait;
    if (token == NULL || cookie == NULL || !admin_ct_streq(token, cookie))
        return admin_error(c, 403, "The sign-in form's security token is missing or out of "
                                   "date. Reload the page and try again.");
    if (email == NULL || pw == NULL || !*email || !*pw)
        return login_page(c, 400, "Enter your email and password.", email);
    if (strlen(email) > CMS_NAME_MAX || strlen(pw) > 1024 ||
        !proto_utf8_valid(email, strlen(email)))
        return login_page(c, 400, "Wrong email or password.", NULL);
    ip_key(c->req, ipk);
    acct_key(email, ack);
    wait = limit_wait(a, ipk, now);
    int64_t w2 = limit_wait(a, ack, now);
    if (w2 > wait)
        wait = w2;
    if (wait > 0) {
        char ra[24];
        snprintf(ra, sizeof ra, "%lld", (long long)wait);
        cn_http_set_header(c->req, "Retry-After", ra);
        snprintf(msg, sizeof msg, "Too many failed sign-ins. Try again in %lld seconds.",
                 (long long)wait);
        return login_page(c, 429, msg, email);
    }
    cms_user_t u = { 0 };
    bool found = cms_user_by_email(a->store, email, &u, NULL) == 0 && u.password_hash;
    /* Unknown users cost the same time as known ones. */
    bool ok = admin_password_ok(found ? u.password_hash : a->dummy_hash, pw) && found;
    if (!ok) {
        limit_fail(a, ipk, ADMIN_LOGIN_IP_MAX, now);
        limit_fail(a, ack, ADMIN_LOGIN_ACCOUNT_MAX, now);
        cms_user_clear(&u);
        cms_log(CMS_LOG_INFO, "admin", "failed sign-in from %s", ipk + 3);
        return login_page(c, 401, "Wrong email or password.", email);
    }
    limit_reset(a, ack);
    /* Always a new session id: a planted cookie never becomes a login. */
    admin_session_t *s = session_new(a, u.id);
    session_cookie(c, s->id, -1);
    cn_http_cookie_attrs_t gone = { .max_age = 0, .path = "/admin" };
    cn_http_set_cookie(c->req, ADMIN_LOGIN_COOKIE, "x", &gone);
    cms_log(CMS_LOG_INFO, "admin", "%s signed in (%s)", u.profile.slug, cms_role_name(u.role));
    cms_user_clear(&u);
    return admin_redirect(c, "/admin/posts");
}

static int on_logout(admin_ctx_t *c)
{
    int i = session_find(c->a, c->sid);
    if (i >= 0)
        c->a->sessions[i] = c->a->sessions[--c->a->nsessions];
    session_cookie(c, "x", 0);
    return admin_redirect(c, "/admin/login?notice=loggedout");
}

const admin_route_t cms_admin_auth_routes[] = {
    { "GET", "/admin/login", on_login_form, ADMIN_PUBLIC },
    { "POST", "/admin/login", on_login, ADMIN_PUBLIC },
    { "POST", "/admin/logout", on_logout, 0 },
    { NULL, NULL, NULL, 0 },
};

/* ---------------------------------------------------------------------------------
 * API keys
 * ------------------------------------------------------------------------------ */

int cms_admin_apikey_create(cms_store_t *s, const char *name, int64_t user_id, char **key,
                            char err[CMS_ERR_LEN])
{
    char secret[ADMIN_SID_HEX + 1], hex[65], stored[80];
    int64_t id = 0;
    admin_random_hex(secret);
    sha256_hex(secret, hex);
    snprintf(stored, sizeof stored, "sha256$%s", hex);
    int rc = cms_apikey_add(s, name, "admin", stored, user_id, cms_time_now(), &id, err);
    *key = rc == 0 ? xasprintf("%lld.%s", (long long)id, secret) : NULL;
    memset(secret, 0, sizeof secret);
    return rc;
}

int admin_api_auth(admin_ctx_t *c)
{
    const char *h = cn_http_header(c->req, "Authorization");
    char *kind = NULL, *stored = NULL, *end;
    char hex[65], want[80];
    int64_t uid = 0;
    int rc = -EACCES;
    if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
        return -EACCES;
    h += 7;
    long long id = strtoll(h, &end, 10);
    if (end == h || *end != '.' || id <= 0 || strlen(end + 1) != ADMIN_SID_HEX)
        return -EACCES;
    if (cms_apikey_get(c->a->store, id, &kind, &stored, &uid, NULL) < 0) {
        sha256_hex(end + 1, hex); /* the same work as a known key */
        return -EACCES;
    }
    sha256_hex(end + 1, hex);
    snprintf(want, sizeof want, "sha256$%s", hex);
    if (!admin_ct_streq(want, stored ? stored : ""))
        goto out;
    if (kind == NULL || strcmp(kind, "admin") != 0 || uid == 0) {
        rc = -EPERM;
        goto out;
    }
    if (cms_user_get(c->a->store, uid, &c->user, NULL) < 0) {
        cms_user_clear(&c->user);
        goto out;
    }
    rc = 0;
out:
    free(kind);
    free(stored);
    return rc;
}
