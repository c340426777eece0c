/* http_test.c - the HTTP server (cnode/src/http*.c).
 *
 * Two halves. The first feeds bytes through the connection state machine with the
 * memory transport (cn__http_serve_buffer): no node, no sockets, so each case is
 * exact and fast - pipelining, every split of the input, chunked bodies, limits,
 * the router, decoding helpers, gzip, static files and validators. The second runs
 * a node with the server on 127.0.0.1 port 0 and clients on a thread with blocking
 * sockets: timeouts, the connection cap, partial writes, a flood, graceful stop.
 * Socket reads have a 10 s timeout, so a missing feature fails instead of hanging,
 * and no assertion depends on how fast anything ran.
 */
#include "test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <zlib.h>

#include "cnode/http.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode_int.h"
#include "http_int.h"

/* ---------------------------------------------------------------------------------
 * Handlers
 * ------------------------------------------------------------------------------ */

static int on_hello(cn_http_req_t *req, void *u)
{
    (void)u;
    return cn_http_reply_text(req, 200, "hello\n");
}

static int on_echo(cn_http_req_t *req, void *u)
{
    (void)u;
    return cn_http_reply(req, 200, "application/octet-stream", req->body, req->body_len);
}

static int on_post(cn_http_req_t *req, void *u)
{
    (void)u;
    return cn_http_reply_text(req, 200, cn_http_sprintf(req, "slug=%s", cn_http_param(req, "slug")));
}

static int on_files(cn_http_req_t *req, void *u)
{
    (void)u;
    return cn_http_reply_text(req, 200, cn_http_sprintf(req, "rest=%s", cn_http_param(req, "rest")));
}

static int on_query(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *a = cn_http_query_get(req, "a"), *b = cn_http_query_get(req, "b");
    return cn_http_reply_text(req, 200, cn_http_sprintf(req, "a=%s;b=%s", a ? a : "(null)",
                                                        b ? b : "(null)"));
}

static int on_form(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *x = cn_http_form_get(req, "x"), *y = cn_http_form_get(req, "y");
    return cn_http_reply_text(req, 200, cn_http_sprintf(req, "x=%s;y=%s", x ? x : "(null)",
                                                        y ? y : "(null)"));
}

static int on_cookie(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *sid = cn_http_cookie_get(req, "sid");
    cn_http_cookie_attrs_t a = { .max_age = 3600, .path = "/", .http_only = true,
                                 .same_site = "Lax" };
    ASSERT_EQ(cn_http_set_cookie(req, "seen", "1", &a), 0);
    ASSERT_EQ(cn_http_set_cookie(req, "bad", "a b", NULL), -EINVAL);
    return cn_http_reply_text(req, 200, cn_http_sprintf(req, "sid=%s", sid ? sid : "(null)"));
}

static int on_json(cn_http_req_t *req, void *u)
{
    (void)u;
    return cn_http_reply_json(req, 201, "{\"ok\":true}");
}

static int on_redir(cn_http_req_t *req, void *u)
{
    (void)u;
    ASSERT_EQ(cn_http_redirect(req, 200, "/x"), -EINVAL);
    ASSERT_EQ(cn_http_set_header(req, "X-Bad", "a\r\nInjected: 1"), -EINVAL);
    return cn_http_redirect(req, 302, "/hello");
}

static int on_text(cn_http_req_t *req, void *u)
{
    (void)u;
    char *t = cn_http_alloc(req, 8192);
    for (int i = 0; i < 8191; i++)
        t[i] = "abcdefgh\n"[i % 9];
    t[8191] = '\0';
    return cn_http_reply_text(req, 200, t);
}

#define BIG_LEN (4u << 20)

static int on_big(cn_http_req_t *req, void *u)
{
    (void)u;
    char *b = cn_http_alloc(req, BIG_LEN);
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < BIG_LEN; i++)
        b[i] = (char)('a' + i % 26);
    return cn_http_reply(req, 200, "application/octet-stream", b, BIG_LEN);
}

static atomic_int slow_started;
static atomic_int server_stopping; /* the controller has called cn_http_server_stop */

/* A request still in progress when the server is asked to stop: it answers once
 * the stop has begun (10 s at most), not after a fixed 300 ms, which a loaded
 * machine could let pass before the stop, and then no stop was tested. */
static int on_slow(cn_http_req_t *req, void *u)
{
    (void)u;
    atomic_store(&slow_started, 1);
    WAIT_UNTIL(atomic_load(&server_stopping), 10000, cn_sleep(5));
    return cn_http_reply_text(req, 200, "slow\n");
}

static int on_noreply(cn_http_req_t *req, void *u)
{
    (void)req;
    (void)u;
    return -EIO;
}

static int on_hdr(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *v = cn_http_header(req, "x-thing");
    return cn_http_reply_text(req, 200, cn_http_sprintf(req, "[%s]", v ? v : "(null)"));
}

static const cn_http_route_t routes[] = {
    { "GET", "/hello", on_hello, NULL },
    { "POST", "/echo", on_echo, NULL },
    { "PUT", "/echo", on_echo, NULL },
    { "GET", "/post/:slug", on_post, NULL },
    { "GET", "/files/*rest", on_files, NULL },
    { "GET", "/q", on_query, NULL },
    { "POST", "/form", on_form, NULL },
    { "GET", "/cookie", on_cookie, NULL },
    { NULL, "/json", on_json, NULL },
    { "GET", "/redir", on_redir, NULL },
    { "GET", "/text", on_text, NULL },
    { "GET", "/big", on_big, NULL },
    { "GET", "/slow", on_slow, NULL },
    { "GET", "/noreply", on_noreply, NULL },
    { "GET", "/hdr", on_hdr, NULL },
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static void test_config(cn_http_config_t *cfg)
{
    cn_http_config_init(cfg);
    cfg->routes = routes;
    cfg->nroutes = NROUTES;
}

/* ---------------------------------------------------------------------------------
 * Memory transport helpers
 * ------------------------------------------------------------------------------ */

/* Serve `in` as one connection; returns the response bytes, NUL-terminated. */
static char *serve_cfg(const cn_http_config_t *cfg, const char *in, size_t len, size_t chunk,
                       size_t *outlen)
{
    cn_http_server_t *s;
    ASSERT_EQ(cn__http_server_new(cfg, &s), 0);
    char *out = NULL;
    size_t n = 0;
    ASSERT_EQ(cn__http_serve_buffer(s, in, len, chunk, &out, &n), 0);
    cn_http_server_free(s);
    out = realloc(out, n + 1);
    out[n] = '\0';
    if (outlen)
        *outlen = n;
    return out;
}

static char *serve(const char *in, size_t chunk)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    return serve_cfg(&cfg, in, strlen(in), chunk, NULL);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* The status of the i-th response in out (0-based), or -1. */
static int status_of(const char *out, int i)
{
    const char *p = out;
    for (int k = 0; p && k <= i; k++) {
        p = strstr(p, "HTTP/1.1 ");
        if (p == NULL)
            return -1;
        if (k == i)
            return atoi(p + 9);
        p += 9;
    }
    return -1;
}

/* Body of the first response (after the blank line), borrowed from out. */
static const char *body_of(const char *out)
{
    const char *p = strstr(out, "\r\n\r\n");
    return p ? p + 4 : "";
}

/* ---------------------------------------------------------------------------------
 * Requests through the memory transport
 * ------------------------------------------------------------------------------ */

TEST(get_hello)
{
    char *out = serve("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT_NOT_NULL(strstr(out, "Content-Length: 6\r\n"));
    ASSERT_NOT_NULL(strstr(out, "Content-Type: text/plain; charset=utf-8\r\n"));
    ASSERT_NOT_NULL(strstr(out, "Date: "));
    ASSERT_NULL(strstr(out, "Connection: close"));
    ASSERT_STR_EQ(body_of(out), "hello\n");
    free(out);
}

static const char pipelined[] =
    "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nabcde"
    "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3\r\nfoo\r\n4;ext=1\r\nbarz\r\n0\r\nTrailer: x\r\n\r\n"
    "GET /post/hello%20world HTTP/1.1\r\nHost: x\r\n\r\n";

TEST(pipelined_in_order)
{
    char *out = serve(pipelined, 0);
    ASSERT_EQ(count(out, "HTTP/1.1 200 OK"), 4);
    const char *a = strstr(out, "hello\n");
    const char *b = strstr(out, "abcde");
    const char *c = strstr(out, "foobarz");
    const char *d = strstr(out, "slug=hello world");
    ASSERT(a && b && c && d);
    ASSERT(a < b && b < c && c < d);
    free(out);
}

/* Every way of cutting the input into reads gives the same bytes out (Date aside,
 * which is the same second in practice; compare with it blanked). */
static void blank_dates(char *s)
{
    for (char *p = s; (p = strstr(p, "Date: ")) != NULL; p += 6)
        for (char *q = p + 6; *q && *q != '\r'; q++)
            *q = '#';
}

TEST(pipelined_any_split)
{
    char *whole = serve(pipelined, 0);
    blank_dates(whole);
    for (size_t chunk = 1; chunk <= 64; chunk++) {
        char *out = serve(pipelined, chunk);
        blank_dates(out);
        ASSERT_STR_EQ(out, whole);
        free(out);
    }
    free(whole);
}

TEST(head_has_no_body)
{
    char *out = serve("HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_EQ(count(out, "Content-Length: 6\r\n"), 2);
    ASSERT_EQ(count(out, "hello\n"), 1);
    /* The HEAD response ends at its blank line, right before the next one. */
    const char *second = strstr(out + 1, "HTTP/1.1 200");
    ASSERT_NOT_NULL(second);
    ASSERT(second[-1] == '\n' && second[-3] == '\n');
    free(out);
}

TEST(expect_100_continue)
{
    char *out = serve("POST /echo HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                      "Content-Length: 3\r\n\r\nxyz", 0);
    ASSERT(strncmp(out, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
    ASSERT_EQ(status_of(out, 1), 200);
    ASSERT_NOT_NULL(strstr(out, "\r\n\r\nxyz"));
    free(out);
    out = serve("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: something\r\nContent-Length: 3\r\n\r\nxyz", 0);
    ASSERT_EQ(status_of(out, 0), 417);
    free(out);
}

TEST(malformed_is_400_and_closes)
{
    const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET hello HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: t\r\n: novalue\r\n\r\n",
        "GET /hello HTTP/1.1\r\nHost: t\r\nX\x7f: 1\r\n\r\n",
        "GET /he\x01llo HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        "CONNECT example.com:443 HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        /* A good request after the bad one must not be answered. */
        char in[512];
        snprintf(in, sizeof(in), "%sGET /hello HTTP/1.1\r\nHost: t\r\n\r\n", bad[i]);
        char *out = serve(in, 0);
        if (status_of(out, 0) != 400)
            test__fail(__FILE__, __LINE__, "case %zu: got %s", i, out);
        ASSERT_NOT_NULL(strstr(out, "Connection: close\r\n"));
        ASSERT_EQ(count(out, "HTTP/1.1 "), 1);
        free(out);
    }
}

TEST(version_505)
{
    char *out = serve("GET /hello HTTP/2.0\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 505);
    ASSERT_EQ(count(out, "HTTP/1.1 "), 1);
    free(out);
}

TEST(header_limits_431)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.max_header_bytes = 1024;
    cfg.max_headers = 8;
    char in[8192];
    int n = snprintf(in, sizeof(in), "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(in + n, 'a', 2000);
    n += 2000;
    n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\n\r\n");
    for (size_t chunk = 0; chunk <= 700; chunk += 350) {
        char *out = serve_cfg(&cfg, in, (size_t)n, chunk, NULL);
        ASSERT_EQ(status_of(out, 0), 431);
        free(out);
    }
    n = snprintf(in, sizeof(in), "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 9; i++)
        n += snprintf(in + n, sizeof(in) - (size_t)n, "X-%d: v\r\n", i);
    n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\n");
    char *out = serve_cfg(&cfg, in, (size_t)n, 0, NULL);
    ASSERT_EQ(status_of(out, 0), 431);
    free(out);
    /* Just under both limits (Host and 7 more headers): served. */
    n = snprintf(in, sizeof(in), "GET /hello HTTP/1.1\r\nHost: t\r\n");
    for (int i = 0; i < 7; i++)
        n += snprintf(in + n, sizeof(in) - (size_t)n, "X-%d: v\r\n", i);
    n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\n");
    out = serve_cfg(&cfg, in, (size_t)n, 0, NULL);
    ASSERT_EQ(status_of(out, 0), 200);
    free(out);
}

TEST(host_header_is_required_once)
{
    char *out = serve("GET /hello HTTP/1.1\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 400);
    free(out);
    out = serve("GET /hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 400);
    free(out);
    /* HTTP/1.0 needs none */
    out = serve("GET /hello HTTP/1.0\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 200);
    free(out);
}

TEST(body_limit_413)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.max_body_bytes = 10;
    const char *declared = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n01234567890";
    char *out = serve_cfg(&cfg, declared, strlen(declared), 0, NULL);
    ASSERT_EQ(status_of(out, 0), 413);
    ASSERT_NOT_NULL(strstr(out, "Connection: close"));
    free(out);
    /* Refused before the client sends the body: no 100 Continue. */
    const char *expect = "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n";
    out = serve_cfg(&cfg, expect, strlen(expect), 0, NULL);
    ASSERT_EQ(status_of(out, 0), 413);
    ASSERT_NULL(strstr(out, "100 Continue"));
    free(out);
    const char *chunked = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "6\r\n012345\r\n6\r\n012345\r\n0\r\n\r\n";
    out = serve_cfg(&cfg, chunked, strlen(chunked), 0, NULL);
    ASSERT_EQ(status_of(out, 0), 413);
    free(out);
    const char *huge_chunk = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                             "ffffffffffff\r\n0123";
    out = serve_cfg(&cfg, huge_chunk, strlen(huge_chunk), 0, NULL);
    ASSERT_EQ(status_of(out, 0), 413);
    free(out);
    const char *fits = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n";
    out = serve_cfg(&cfg, fits, strlen(fits), 3, NULL);
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT_STR_EQ(body_of(out), "0123456789");
    free(out);
}

TEST(keepalive_rules)
{
    char *out = serve("GET /hello HTTP/1.0\r\n\r\nGET /hello HTTP/1.0\r\n\r\n", 0);
    ASSERT_EQ(count(out, "HTTP/1.1 200"), 1);
    ASSERT_NOT_NULL(strstr(out, "Connection: close"));
    free(out);
    out = serve("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /hello HTTP/1.0\r\n\r\n", 0);
    ASSERT_EQ(count(out, "HTTP/1.1 200"), 2);
    ASSERT_EQ(count(out, "Connection: keep-alive"), 1);
    free(out);
    out = serve("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_EQ(count(out, "HTTP/1.1 200"), 1);
    free(out);
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.max_requests = 2;
    const char *three = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    out = serve_cfg(&cfg, three, strlen(three), 0, NULL);
    ASSERT_EQ(count(out, "HTTP/1.1 200"), 2);
    ASSERT_EQ(count(out, "Connection: close"), 1);
    free(out);
}

TEST(router)
{
    char *out = serve("GET /files/a/b%2Fc.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /files/ HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /post/ HTTP/1.1\r\nHost: t\r\n\r\n"
                      "DELETE /echo HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /nowhere HTTP/1.1\r\nHost: t\r\n\r\n"
                      "PATCH /json HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /noreply HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET /post/x%zz HTTP/1.1\r\nHost: t\r\n\r\n"
                      "GET http://example.com/hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_NOT_NULL(strstr(out, "rest=a/b/c.txt"));
    ASSERT_NOT_NULL(strstr(out, "rest=\r\n") ? out : strstr(out, "rest="));
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT_EQ(status_of(out, 1), 200);
    ASSERT_EQ(status_of(out, 2), 404);
    ASSERT_EQ(status_of(out, 3), 405);
    ASSERT_NOT_NULL(strstr(out, "Allow: POST, PUT\r\n"));
    ASSERT_EQ(status_of(out, 4), 404);
    ASSERT_EQ(status_of(out, 5), 201);
    ASSERT_EQ(status_of(out, 6), 500);
    ASSERT_EQ(status_of(out, 7), 400);
    free(out);
    out = serve("GET http://example.com/hello?x=1 HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 200);
    free(out);
}

TEST(query_form_cookies_headers)
{
    char *out = serve("GET /q?a=1+2&b=%C3%A9&c HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_STR_EQ(body_of(out), "a=1 2;b=\xc3\xa9");
    free(out);
    out = serve("POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 15\r\n\r\nx=hello+w&y=%21", 0);
    ASSERT_STR_EQ(body_of(out), "x=hello w;y=!");
    free(out);
    out = serve("POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\n"
                "Content-Length: 3\r\n\r\nx=1", 0);
    ASSERT_STR_EQ(body_of(out), "x=(null);y=(null)");
    free(out);
    out = serve("GET /cookie HTTP/1.1\r\nHost: t\r\nCookie: a=1; sid=\"abc\"\r\n\r\n", 0);
    ASSERT_STR_EQ(body_of(out), "sid=abc");
    ASSERT_NOT_NULL(strstr(out, "Set-Cookie: seen=1; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax\r\n"));
    free(out);
    out = serve("GET /hdr HTTP/1.1\r\nHost: t\r\nX-THING:   spaced value  \r\n\r\n", 0);
    ASSERT_STR_EQ(body_of(out), "[spaced value]");
    free(out);
    out = serve("GET /hdr HTTP/1.1\r\nHost: t\r\nX-Thing:\r\nOther: 1\r\n\r\n", 0);
    ASSERT_STR_EQ(body_of(out), "[]");
    free(out);
}

TEST(json_redirect_status)
{
    char *out = serve("POST /json HTTP/1.1\r\nHost: t\r\n\r\nGET /redir HTTP/1.1\r\nHost: t\r\n\r\n", 0);
    ASSERT_EQ(status_of(out, 0), 201);
    ASSERT_NOT_NULL(strstr(out, "Content-Type: application/json\r\n"));
    ASSERT_NOT_NULL(strstr(out, "{\"ok\":true}"));
    ASSERT_EQ(status_of(out, 1), 302);
    ASSERT_NOT_NULL(strstr(out, "Location: /hello\r\n"));
    ASSERT_NULL(strstr(out, "Injected"));
    free(out);
    ASSERT_STR_EQ(cn_http_status_text(404), "Not Found");
    ASSERT_STR_EQ(cn_http_status_text(799), "Unknown");
}

static char *gunzip(const char *src, size_t len, size_t *outlen)
{
    size_t cap = 1 << 20;
    char *dst = malloc(cap);
    z_stream z = { 0 };
    ASSERT_EQ(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)dst;
    z.avail_out = (uInt)cap;
    ASSERT_EQ(inflate(&z, Z_FINISH), Z_STREAM_END);
    *outlen = z.total_out;
    inflateEnd(&z);
    return dst;
}

TEST(gzip_negotiation)
{
    size_t n;
    cn_http_config_t cfg;
    test_config(&cfg);
    const char *gz = "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br, gzip;q=0.8\r\n\r\n";
    char *out = serve_cfg(&cfg, gz, strlen(gz), 0, &n);
    ASSERT_NOT_NULL(strstr(out, "Content-Encoding: gzip\r\n"));
    ASSERT_NOT_NULL(strstr(out, "Vary: Accept-Encoding\r\n"));
    const char *body = body_of(out);
    size_t blen = n - (size_t)(body - out);
    ASSERT_LT(blen, 8191);
    ASSERT_EQ(atoi(strstr(out, "Content-Length: ") + 16), blen);
    size_t plain_len;
    char *plain = gunzip(body, blen, &plain_len);
    ASSERT_EQ(plain_len, 8191);
    ASSERT(memcmp(plain, "abcdefgh\nabc", 12) == 0);
    free(plain);
    free(out);
    /* Two Accept-Encoding fields are one comma-joined list (RFC 9110 5.3): gzip
     * named only in the second is taken, refused only in the second is refused. */
    const char *two = "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: br\r\n"
                      "Accept-Encoding: gzip\r\n\r\n";
    out = serve_cfg(&cfg, two, strlen(two), 0, NULL);
    ASSERT_NOT_NULL(strstr(out, "Content-Encoding: gzip\r\n"));
    free(out);
    const char *refused[] = { "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip;q=0\r\n\r\n",
                              "GET /text HTTP/1.1\r\nHost: t\r\n\r\n",
                              "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: identity\r\n\r\n",
                              "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: *\r\n"
                              "Accept-Encoding: gzip;q=0\r\n\r\n",
                              /* q after another parameter, q=0 before a tab (OWS) */
                              "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip;level=1;q=0\r\n\r\n",
                              "GET /text HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip;q=0\t, br\r\n\r\n" };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        out = serve_cfg(&cfg, refused[i], strlen(refused[i]), 0, NULL);
        ASSERT_NULL(strstr(out, "Content-Encoding"));
        ASSERT_NOT_NULL(strstr(out, "Vary: Accept-Encoding\r\n"));
        ASSERT_NOT_NULL(strstr(out, "Content-Length: 8191\r\n"));
        free(out);
    }
    /* Short bodies and non-text types are left alone. */
    out = serve("GET /hello HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n", 0);
    ASSERT_NULL(strstr(out, "Content-Encoding"));
    free(out);
}

static int nlog;
static char last_log[1024];

static void on_log(const cn_http_log_entry_t *e, const char *line, void *u)
{
    (void)u;
    (void)e;
    nlog++;
    snprintf(last_log, sizeof(last_log), "%s", line);
}

TEST(access_log)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.log_cb = on_log;
    const char *in = "GET /q?a=\"x HTTP/1.1\r\nHost: t\r\nUser-Agent: t\"est\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\nBAD\r\n\r\n";
    char *out = serve_cfg(&cfg, in, strlen(in), 0, NULL);
    free(out);
    ASSERT_EQ(nlog, 3);
    ASSERT_NOT_NULL(strstr(last_log, "\"status\":400"));
    cfg.log_cb = NULL;
    char *buf = NULL;
    size_t blen = 0;
    cfg.access_log = open_memstream(&buf, &blen);
    in = "GET /q?a=\"x HTTP/1.1\r\nHost: t\r\nUser-Agent: t\"est\r\n\r\n";
    out = serve_cfg(&cfg, in, strlen(in), 0, NULL);
    free(out);
    fclose(cfg.access_log);
    ASSERT_EQ(count(buf, "\n"), 1);
    ASSERT_NOT_NULL(strstr(buf, "\"method\":\"GET\""));
    ASSERT_NOT_NULL(strstr(buf, "\"path\":\"/q?a=\\\"x\""));
    ASSERT_NOT_NULL(strstr(buf, "\"status\":200"));
    ASSERT_NOT_NULL(strstr(buf, "\"ua\":\"t\\\"est\""));
    ASSERT_NOT_NULL(strstr(buf, "\"bytes\":"));
    ASSERT_NOT_NULL(strstr(buf, "\"duration_us\":"));
    ASSERT_NOT_NULL(strstr(buf, "\"remote\":"));
    ASSERT_NULL(strstr(buf, "\"bytes\":0,"));
    free(buf);
}

/* ---------------------------------------------------------------------------------
 * Pure helpers and the arena
 * ------------------------------------------------------------------------------ */

TEST(urldecode_and_form)
{
    char s[64] = "a%20b+c%2B%7e";
    ASSERT_EQ(cn_http_urldecode(s, true), 7);
    ASSERT_STR_EQ(s, "a b c+~");
    strcpy(s, "a+b");
    cn_http_urldecode(s, false);
    ASSERT_STR_EQ(s, "a+b");
    const char *bad[] = { "%", "%4", "%zz", "%00", "a%g1" };
    for (int i = 0; i < 5; i++) {
        strcpy(s, bad[i]);
        ASSERT_EQ(cn_http_urldecode(s, true), -EINVAL);
    }
    char f[] = "a=1&&b=&c&d=x%3Dy&a=2";
    cn_http_kv_t kv[8];
    ASSERT_EQ(cn_http_form_parse(f, kv, 8), 5);
    ASSERT_STR_EQ(kv[0].name, "a");
    ASSERT_STR_EQ(kv[0].value, "1");
    ASSERT_STR_EQ(kv[1].name, "b");
    ASSERT_STR_EQ(kv[1].value, "");
    ASSERT_STR_EQ(kv[2].name, "c");
    ASSERT_STR_EQ(kv[2].value, "");
    ASSERT_STR_EQ(kv[3].value, "x=y");
    ASSERT_STR_EQ(kv[4].value, "2");
    char g[] = "a=1&b=2&c=3";
    ASSERT_EQ(cn_http_form_parse(g, kv, 2), 2);
    char h[] = "a=%zz";
    ASSERT_EQ(cn_http_form_parse(h, kv, 2), -EINVAL);
}

TEST(cookies)
{
    char c[] = " a=1;b = 2 ; c=\"q v\";;d; e=";
    cn_http_kv_t kv[8];
    ASSERT_EQ(cn_http_cookie_parse(c, kv, 8), 4);
    ASSERT_STR_EQ(kv[0].name, "a");
    ASSERT_STR_EQ(kv[0].value, "1");
    ASSERT_STR_EQ(kv[1].name, "b");
    ASSERT_STR_EQ(kv[1].value, "2");
    ASSERT_STR_EQ(kv[2].value, "q v");
    ASSERT_STR_EQ(kv[3].name, "e");
    ASSERT_STR_EQ(kv[3].value, "");
    char buf[256];
    cn_http_cookie_attrs_t a = { .max_age = 0, .domain = "example.com", .path = "/a",
                                 .secure = true, .same_site = "Strict" };
    ASSERT_GT(cn_http_cookie_format(buf, sizeof(buf), "id", "x1", &a), 0);
    ASSERT_STR_EQ(buf, "id=x1; Max-Age=0; Domain=example.com; Path=/a; Secure; SameSite=Strict");
    cn_http_cookie_attrs_t none = { .max_age = -1 };
    ASSERT_EQ(cn_http_cookie_format(buf, sizeof(buf), "id", "x1", &none), 5);
    ASSERT_EQ(cn_http_cookie_format(buf, sizeof(buf), "i d", "x", NULL), -EINVAL);
    ASSERT_EQ(cn_http_cookie_format(buf, sizeof(buf), "id", "x;y", NULL), -EINVAL);
    ASSERT_EQ(cn_http_cookie_format(buf, sizeof(buf), "", "x", NULL), -EINVAL);
    cn_http_cookie_attrs_t badp = { .max_age = -1, .path = "/;evil" };
    ASSERT_EQ(cn_http_cookie_format(buf, sizeof(buf), "id", "x", &badp), -EINVAL);
    ASSERT_EQ(cn_http_cookie_format(buf, 8, "id", "x1", &a), -ENOSPC);
}

TEST(json_escape)
{
    char buf[64];
    size_t n = cn_http_json_escape(buf, sizeof(buf), "a\"b\\c\n\x01");
    ASSERT_STR_EQ(buf, "a\\\"b\\\\c\\u000a\\u0001");
    ASSERT_EQ(n, strlen(buf));
    ASSERT_EQ(cn_http_json_escape(buf, 4, "abcdef"), 6);
    ASSERT_STR_EQ(buf, "abc");
}

TEST(arena)
{
    char first[256] __attribute__((aligned(16)));
    cn__arena_t a;
    cn__arena_init(&a, first, sizeof(first));
    void *p = cn__arena_alloc(&a, 10);
    ASSERT_PTR_EQ(p, first);
    ASSERT_EQ((uintptr_t)cn__arena_alloc(&a, 1) % 16, 0);
    /* Past the first block: malloc'd blocks, all 16-aligned, then freed. */
    for (int i = 0; i < 1000; i++) {
        char *q = cn__arena_alloc(&a, (size_t)(i * 7 % 3000) + 1);
        ASSERT_NOT_NULL(q);
        ASSERT_EQ((uintptr_t)q % 16, 0);
        memset(q, 0xab, (size_t)(i * 7 % 3000) + 1);
    }
    char *g = cn__arena_alloc(&a, 16);
    memcpy(g, "0123456789abcde", 16);
    char *g2 = cn__arena_grow(&a, g, 16, 64);
    ASSERT_PTR_EQ(g, g2); /* the last allocation grows in place */
    char *g3 = cn__arena_grow(&a, g2, 64, 100000);
    ASSERT_STR_EQ(g3, "0123456789abcde");
    cn__arena_reset(&a);
    ASSERT_PTR_EQ(cn__arena_alloc(&a, 1), first);
    cn__arena_reset(&a);
}

/* ---------------------------------------------------------------------------------
 * Static files
 * ------------------------------------------------------------------------------ */

static char static_dir[64];

static void make_static_dir(void)
{
    strcpy(static_dir, "/tmp/http_test.XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(static_dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/index.html", static_dir);
    FILE *f = fopen(p, "w");
    for (int i = 0; i < 500; i++)
        fprintf(f, "<p>line %d of the index</p>\n", i);
    fclose(f);
    snprintf(p, sizeof(p), "%s/a b.txt", static_dir);
    f = fopen(p, "w");
    fputs("spaced\n", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/sub", static_dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/sub/x.bin", static_dir);
    f = fopen(p, "w");
    fputs("binary", f);
    fclose(f);
}

static void remove_static_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", static_dir);
    ASSERT_EQ(system(cmd), 0);
}

static char *serve_static(cn_http_static_t *st, const char *in, size_t *n)
{
    cn_http_route_t r[] = { { "GET", "/*path", cn_http_static_handler, st } };
    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.routes = r;
    cfg.nroutes = 1;
    return serve_cfg(&cfg, in, strlen(in), 0, n);
}

/* The value of header `name` in the first response, copied to buf. */
static const char *hdr_of(const char *out, const char *name, char *buf, size_t cap)
{
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strstr(out, key);
    if (p == NULL)
        return NULL;
    p += strlen(key);
    size_t n = strcspn(p, "\r");
    snprintf(buf, cap, "%.*s", (int)n, p);
    return buf;
}

TEST(static_files)
{
    make_static_dir();
    cn_http_static_opts_t o = { .root = static_dir, .gzip = true, .max_age_s = 60 };
    cn_http_static_t *st;
    ASSERT_EQ(cn_http_static_new(&o, &st), 0);
    size_t n;
    char *out = serve_static(st, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &n);
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT_NOT_NULL(strstr(out, "Content-Type: text/html; charset=utf-8\r\n"));
    ASSERT_NOT_NULL(strstr(out, "Cache-Control: public, max-age=60\r\n"));
    ASSERT_NOT_NULL(strstr(body_of(out), "<p>line 499 of the index</p>\n"));
    char etag[64], lm[64];
    ASSERT_NOT_NULL(hdr_of(out, "ETag", etag, sizeof(etag)));
    ASSERT_NOT_NULL(hdr_of(out, "Last-Modified", lm, sizeof(lm)));
    free(out);

    char req[512];
    snprintf(req, sizeof(req), "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"zz\", %s\r\n\r\n", etag);
    out = serve_static(st, req, &n);
    ASSERT_EQ(status_of(out, 0), 304);
    ASSERT_NULL(strstr(out, "Content-Length"));
    ASSERT_STR_EQ(body_of(out), "");
    free(out);
    snprintf(req, sizeof(req), "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: %s\r\n\r\n", lm);
    out = serve_static(st, req, &n);
    ASSERT_EQ(status_of(out, 0), 304);
    free(out);
    out = serve_static(st, "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Thu, 01 Jan 1970 00:00:01 GMT\r\n\r\n", &n);
    ASSERT_EQ(status_of(out, 0), 200);
    free(out);
    out = serve_static(st, "GET /index.html HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\"\r\n\r\n", &n);
    ASSERT_EQ(status_of(out, 0), 200);
    free(out);

    /* gzip: a different ETag, decompresses to the file. */
    out = serve_static(st, "GET /index.html HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n", &n);
    ASSERT_NOT_NULL(strstr(out, "Content-Encoding: gzip\r\n"));
    char etag_gz[64];
    hdr_of(out, "ETag", etag_gz, sizeof(etag_gz));
    ASSERT(strcmp(etag_gz, etag) != 0);
    const char *b = body_of(out);
    size_t plain_len;
    char *plain = gunzip(b, n - (size_t)(b - out), &plain_len);
    ASSERT_NOT_NULL(strstr(plain, "<p>line 0 of the index</p>"));
    free(plain);
    free(out);

    out = serve_static(st, "GET /a%20b.txt HTTP/1.1\r\nHost: t\r\n\r\nHEAD /sub/x.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                           "GET /sub HTTP/1.1\r\nHost: t\r\n\r\nGET /nope HTTP/1.1\r\nHost: t\r\n\r\n"
                           "GET /sub/../../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n"
                           "GET /./sub//x.bin HTTP/1.1\r\nHost: t\r\n\r\nPOST /a HTTP/1.1\r\nHost: t\r\n\r\n", &n);
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT_NOT_NULL(strstr(out, "spaced\n"));
    ASSERT_EQ(status_of(out, 1), 200);
    ASSERT_NOT_NULL(strstr(out, "Content-Type: application/octet-stream\r\nContent-Length: 6\r\n"));
    ASSERT_EQ(status_of(out, 2), 301);
    ASSERT_NOT_NULL(strstr(out, "Location: /sub/\r\n"));
    ASSERT_EQ(status_of(out, 3), 404);
    ASSERT_EQ(status_of(out, 4), 403);
    ASSERT_EQ(status_of(out, 5), 404); /* no index.html there, no listing */
    ASSERT_EQ(status_of(out, 6), 200);
    ASSERT_EQ(count(out, "binary"), 1); /* HEAD sent none */
    ASSERT_EQ(status_of(out, 7), 405);
    free(out);

    /* A changed file is served fresh, with a new ETag. */
    char p[128];
    snprintf(p, sizeof(p), "%s/sub/x.bin", static_dir);
    FILE *f = fopen(p, "w");
    fputs("changed!", f);
    fclose(f);
    struct timespec ts[2] = { { 0, UTIME_OMIT }, { 12345, 0 } };
    utimensat(AT_FDCWD, p, ts, 0);
    out = serve_static(st, "GET /sub/x.bin HTTP/1.1\r\nHost: t\r\n\r\n", &n);
    ASSERT_STR_EQ(body_of(out), "changed!");
    free(out);
    cn_http_static_free(st);
    remove_static_dir();
}

/* ---------------------------------------------------------------------------------
 * Sockets: a node serving on 127.0.0.1:0, clients on a thread
 * ------------------------------------------------------------------------------ */

typedef struct harness {
    cn_node_t *node;
    cn_http_server_t *srv;
    uint16_t port;
    atomic_int client_done;
    atomic_int stop_now;      /* the client asks for a graceful stop */
    void (*client)(struct harness *h);
} harness_t;

/* On the node: waits for the client thread, then stops the server. */
static void controller(void *arg)
{
    harness_t *h = arg;
    while (!atomic_load(&h->client_done) && !atomic_load(&h->stop_now))
        cn_sleep(5);
    cn_http_server_stop(h->srv);
    atomic_store(&server_stopping, 1);
}

static void *client_main(void *arg)
{
    harness_t *h = arg;
    h->client(h);
    atomic_store(&h->client_done, 1);
    return NULL;
}

static void run_with(cn_http_config_t *cfg, void (*client)(harness_t *h))
{
    harness_t h = { 0 };
    h.client = client;
    ASSERT_EQ(cn_node_new(NULL, &h.node), 0);
    cfg->port = 0;
    ASSERT_EQ(cn_http_server_start(h.node, cfg, &h.srv), 0);
    h.port = cn_http_server_port(h.srv);
    ASSERT_GT(h.port, 0);
    ASSERT_EQ(cn_spawn(h.node, controller, &h, NULL, NULL), 0);
    pthread_t th;
    ASSERT_EQ(pthread_create(&th, NULL, client_main, &h), 0);
    ASSERT_EQ(cn_node_run(h.node), 0);
    pthread_join(th, NULL);
    ASSERT(cn_http_server_done(h.srv));
    ASSERT_EQ(cn_http_server_connections(h.srv), 0);
    cn_node_free(h.node);
    cn_http_server_free(h.srv);
}

static int dial(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        ASSERT_GT(w, 0);
        s += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/* Read until `n` responses' worth of "HTTP/1.1 " lines and bodies have come, the
 * peer closes, or want bytes arrived. Returns a malloc'd NUL-terminated buffer. */
static char *recv_until(int fd, size_t want, const char *stop_at, bool *closed)
{
    size_t cap = want + 65536, len = 0;
    char *b = malloc(cap + 1);
    *closed = false;
    for (;;) {
        if (len == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
        }
        ssize_t r = recv(fd, b + len, cap - len, 0);
        if (r == 0) {
            *closed = true;
            break;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == ECONNRESET)
                *closed = true;
            break; /* timeout: the caller's assertions fail */
        }
        len += (size_t)r;
        b[len] = '\0';
        if (want && len >= want)
            break;
        if (stop_at && strstr(b, stop_at))
            break;
    }
    b[len] = '\0';
    return b;
}

static void client_pipelined_bytewise(harness_t *h)
{
    int fd = dial(h->port);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    /* One byte per send: heads and bodies arrive in many reads. */
    for (size_t i = 0; i < sizeof(pipelined) - 1; i++)
        send_all(fd, pipelined + i, 1);
    bool closed;
    char *out = recv_until(fd, 0, "slug=hello world", &closed);
    ASSERT_EQ(count(out, "HTTP/1.1 200 OK"), 4);
    ASSERT_NOT_NULL(strstr(out, "foobarz"));
    free(out);
    close(fd);
}

TEST(sock_pipelined_bytewise)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    run_with(&cfg, client_pipelined_bytewise);
}

/* A client reading slowly through a small receive buffer gets all 4 MiB intact:
 * the server's writes are partial and it waits for the socket to drain. */
static void client_big_slow_reader(harness_t *h)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(h->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    const char *req = "GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, req, strlen(req));
    usleep(200000); /* let the server fill the socket and block */
    char buf[4096];
    size_t total = 0;
    char *all = malloc(BIG_LEN + 4096);
    while (total < BIG_LEN + 200) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        ASSERT_GT(r, 0);
        memcpy(all + total, buf, (size_t)r);
        total += (size_t)r;
        all[total] = '\0';
        if (strstr(all + (total > 300 ? total - 300 : 0), "hello\n"))
            break;
    }
    const char *body = strstr(all, "\r\n\r\n") + 4;
    for (size_t i = 0; i < BIG_LEN; i += 4099)
        ASSERT_EQ(body[i], 'a' + (int)(i % 26));
    ASSERT_NOT_NULL(strstr(body + BIG_LEN, "HTTP/1.1 200 OK"));
    free(all);
    close(fd);
}

TEST(sock_partial_writes)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    run_with(&cfg, client_big_slow_reader);
}

/* Slow clients: a head that never completes gets 408 and a close; a body that
 * never completes too; an idle keep-alive connection is closed. */
static void client_slow(harness_t *h)
{
    bool closed;
    int fd = dial(h->port);
    send_str(fd, "GET /hello HTTP/1.1\r\nHost: x\r\n");
    char *out = recv_until(fd, 0, NULL, &closed);
    ASSERT_EQ(status_of(out, 0), 408);
    ASSERT(closed);
    free(out);
    close(fd);

    fd = dial(h->port);
    /* Trickle: one byte every 50 ms does not extend the deadline. */
    const char *slow = "GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for (size_t i = 0; i < strlen(slow); i++) {
        if (send(fd, slow + i, 1, MSG_NOSIGNAL) != 1)
            break;
        usleep(50000);
    }
    out = recv_until(fd, 0, NULL, &closed);
    ASSERT_EQ(status_of(out, 0), 408);
    free(out);
    close(fd);

    fd = dial(h->port);
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    out = recv_until(fd, 0, NULL, &closed);
    ASSERT_EQ(status_of(out, 0), 408);
    free(out);
    close(fd);

    fd = dial(h->port);
    send_str(fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    out = recv_until(fd, 0, NULL, &closed); /* the response, then the idle close */
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT(closed);
    free(out);
    close(fd);
}

TEST(sock_timeouts_408)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.header_timeout_ms = 300;
    cfg.body_timeout_ms = 300;
    cfg.idle_timeout_ms = 300;
    run_with(&cfg, client_slow);
}

/* Past max_connections, new connections get 503 at once; the rest are served. */
static void client_cap(harness_t *h)
{
    int held[4];
    bool closed;
    for (int i = 0; i < 4; i++) {
        held[i] = dial(h->port);
        send_str(held[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        char *out = recv_until(held[i], 0, "hello\n", &closed);
        ASSERT_EQ(status_of(out, 0), 200);
        free(out);
    }
    for (int i = 0; i < 3; i++) {
        int fd = dial(h->port);
        char *out = recv_until(fd, 0, NULL, &closed);
        ASSERT_EQ(status_of(out, 0), 503);
        ASSERT(closed);
        free(out);
        close(fd);
    }
    close(held[0]);
    /* A slot frees up once the server notices the close. */
    bool served = false;
    for (int tries = 0; tries < 1000 && !served; tries++) {
        int fd = dial(h->port);
        send_str(fd, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
        char *out = recv_until(fd, 0, "\r\n\r\n", &closed);
        served = status_of(out, 0) == 200;
        free(out);
        close(fd);
        if (!served)
            usleep(10000);
    }
    ASSERT(served);
    for (int i = 1; i < 4; i++)
        close(held[i]);
}

TEST(sock_connection_cap_503)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.max_connections = 4;
    run_with(&cfg, client_cap);
}

/* A flood within bounds: 300 connections at once, each with two requests. */
#define FLOOD 300

static void client_flood(harness_t *h)
{
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++)
        fds[i] = dial(h->port);
    for (int i = 0; i < FLOOD; i++)
        send_str(fds[i], "GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /post/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < FLOOD; i++) {
        bool closed;
        char *out = recv_until(fds[i], 0, NULL, &closed);
        ASSERT(closed);
        ASSERT_EQ(count(out, "HTTP/1.1 200 OK"), 2);
        ASSERT_NOT_NULL(strstr(out, "slug=x"));
        free(out);
        close(fds[i]);
    }
}

TEST(sock_flood)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    run_with(&cfg, client_flood);
}

TEST(sock_flood_shared_stacks)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.conn_spawn_flags = 0;
    run_with(&cfg, client_flood);
}

/* Graceful stop: a request in progress finishes (with Connection: close), an idle
 * keep-alive connection is closed, new connections are refused, and the node's
 * run returns (run_with checks that nothing is left open). */
static void client_graceful(harness_t *h)
{
    bool closed;
    int idle = dial(h->port);
    send_str(idle, "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    char *out = recv_until(idle, 0, "hello\n", &closed);
    ASSERT_EQ(status_of(out, 0), 200);
    free(out);

    int busy = dial(h->port);
    send_str(busy, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    /* Stop only once the handler runs: the request is then in progress. */
    ASSERT(WAIT_UNTIL(atomic_load(&slow_started), 20000, usleep(1000)));
    atomic_store(&h->stop_now, 1);

    out = recv_until(busy, 0, NULL, &closed);
    ASSERT_EQ(status_of(out, 0), 200);
    ASSERT_NOT_NULL(strstr(out, "Connection: close\r\n"));
    ASSERT_NOT_NULL(strstr(out, "slow\n"));
    ASSERT(closed);
    free(out);
    out = recv_until(idle, 0, NULL, &closed);
    ASSERT(closed);
    ASSERT_STR_EQ(out, "");
    free(out);
    close(idle);
    close(busy);

    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(h->port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_NE(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
}

TEST(sock_graceful_stop)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    run_with(&cfg, client_graceful);
}

/* Two servers share a port with SO_REUSEPORT. */
TEST(sock_reuseport)
{
    cn_node_t *node;
    ASSERT_EQ(cn_node_new(NULL, &node), 0);
    cn_http_config_t cfg;
    test_config(&cfg);
    cfg.reuseport = true;
    cn_http_server_t *a, *b;
    ASSERT_EQ(cn_http_server_start(node, &cfg, &a), 0);
    cfg.port = cn_http_server_port(a);
    ASSERT_EQ(cn_http_server_start(node, &cfg, &b), 0);
    ASSERT_EQ(cn_http_server_port(b), cfg.port);
    cfg.reuseport = false;
    cn_http_server_t *c;
    ASSERT_EQ(cn_http_server_start(node, &cfg, &c), -EADDRINUSE);
    cn_node_free(node);
    cn_http_server_free(a);
    cn_http_server_free(b);
}

/* Small files kept in memory: the same bytes as sendfile, and still revalidated. */
TEST(static_from_memory)
{
    make_static_dir();
    cn_http_static_opts_t o = { .root = static_dir, .mem_max_bytes = 1u << 30 };
    cn_http_static_t *st;
    ASSERT_EQ(cn_http_static_new(&o, &st), 0);
    size_t n;
    char *out = serve_static(st, "GET /sub/x.bin HTTP/1.1\r\nHost: t\r\n\r\nGET /sub/x.bin HTTP/1.1\r\nHost: t\r\n\r\n", &n);
    ASSERT_EQ(count(out, "\r\n\r\nbinary"), 2);
    free(out);
    char p[128];
    snprintf(p, sizeof(p), "%s/sub/x.bin", static_dir);
    FILE *f = fopen(p, "w");
    fputs("other!", f);
    fclose(f);
    struct timespec ts[2] = { { 0, UTIME_OMIT }, { 12345, 0 } };
    utimensat(AT_FDCWD, p, ts, 0);
    out = serve_static(st, "GET /sub/x.bin HTTP/1.1\r\nHost: t\r\n\r\n", &n);
    ASSERT_STR_EQ(body_of(out), "other!");
    free(out);
    /* The index (12 KiB) is under the 16 KiB cap: from memory too. */
    out = serve_static(st, "GET / HTTP/1.1\r\nHost: t\r\n\r\n", &n);
    ASSERT_NOT_NULL(strstr(body_of(out), "<p>line 499 of the index</p>\n"));
    free(out);
    cn_http_static_free(st);
    remove_static_dir();
}

/* The hot path allocates nothing per request: 1600 pipelined requests cost the
 * same library allocations as 400 - the connection's buffers, the output buffer
 * growing to hold a batch of pipelined responses - and none per request. */
static long allocs_for(cn_http_server_t *s, int n)
{
    static const char one[] = "GET /post/abc HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n"
                              "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t len = (sizeof(one) - 1) * (size_t)n;
    char *in = malloc(len);
    for (int i = 0; i < n; i++)
        memcpy(in + (sizeof(one) - 1) * (size_t)i, one, sizeof(one) - 1);
    long before = cn__alloc_count();
    char *out;
    size_t outlen;
    ASSERT_EQ(cn__http_serve_buffer(s, in, len, 0, &out, &outlen), 0);
    long used = cn__alloc_count() - before;
    ASSERT_EQ(count(out, "HTTP/1.1 200 OK"), 2 * n);
    free(out);
    free(in);
    return used;
}

TEST(no_allocation_per_request)
{
    cn_http_config_t cfg;
    test_config(&cfg);
    cn_http_server_t *s;
    ASSERT_EQ(cn__http_server_new(&cfg, &s), 0);
    ASSERT_EQ(allocs_for(s, 200), allocs_for(s, 800));
    cn_http_server_free(s);
}
