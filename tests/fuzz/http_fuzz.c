/* http_fuzz.c - libFuzzer target for the HTTP server's request path: everything a
 * client can send on one connection.
 *
 * The first input byte picks how the rest is cut into reads (0: all at once, else
 * reads of at most that many bytes, modulo 64), so splits across heads, chunk
 * sizes and bodies are explored too. The rest goes through the real connection
 * state machine (cn__http_serve_buffer: http_parser, limits, router, handlers,
 * response writer) with the memory transport, no node and no sockets. The server
 * has small limits (so 431/413 paths are reached), gzip from 16 bytes, an access
 * log callback, and routes that use every request accessor: params, query, form,
 * cookies, headers, Set-Cookie and redirects with values taken from the request,
 * and the static handler over a small temporary directory.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cnode/http.h"
#include "http_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cn_http_server_t *srv;
static cn_http_static_t *files;
static size_t log_bytes;

static int on_echo(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *ct = cn_http_header(req, "Content-Type");
    return cn_http_reply(req, 200, ct && !strpbrk(ct, "\r\n") ? ct : "text/plain", req->body,
                         req->body_len);
}

static int on_params(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *a = cn_http_param(req, "a"), *rest = cn_http_param(req, "rest");
    const char *q = cn_http_query_get(req, "q"), *f = cn_http_form_get(req, "f");
    const char *c = cn_http_cookie_get(req, "c");
    char *j = cn_http_sprintf(req, "{\"a\":\"%s\",\"rest\":\"%s\",\"q\":\"%s\",\"f\":\"%s\",\"c\":\"%s\"}",
                              a ? a : "", rest ? rest : "", q ? q : "", f ? f : "", c ? c : "");
    return cn_http_reply_json(req, 200, j ? j : "{}");
}

static int on_cookie(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *v = cn_http_query_get(req, "v");
    cn_http_cookie_attrs_t a = { .max_age = 60, .path = cn_http_query_get(req, "p"),
                                 .same_site = cn_http_query_get(req, "s"), .http_only = true };
    cn_http_set_cookie(req, "c", v ? v : "", &a);
    cn_http_set_header(req, "X-Echo", cn_http_header(req, "X-In") ? cn_http_header(req, "X-In") : "");
    return cn_http_reply_text(req, 200, "ok\n");
}

static int on_redirect(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *to = cn_http_query_get(req, "to");
    int rc = cn_http_redirect(req, 302, to ? to : "/");
    return rc == -EINVAL ? cn_http_reply_error(req, 400) : rc;
}

static int on_error(cn_http_req_t *req, void *u)
{
    (void)u;
    const char *s = cn_http_param(req, "code");
    return cn_http_reply_error(req, s ? atoi(s) : 500);
}

static const cn_http_route_t routes[] = {
    { "POST", "/echo", on_echo, NULL },
    { "PUT", "/echo", on_echo, NULL },
    { NULL, "/p/:a/*rest", on_params, NULL },
    { "GET", "/cookie", on_cookie, NULL },
    { "GET", "/go", on_redirect, NULL },
    { "GET", "/err/:code", on_error, NULL },
    { "GET", "/static/*path", cn_http_static_handler, NULL }, /* udata set in setup */
};

static cn_http_route_t table[sizeof(routes) / sizeof(routes[0])];

static void on_log(const cn_http_log_entry_t *e, const char *line, void *u)
{
    (void)e;
    (void)u;
    log_bytes += strlen(line);
}

static void put(const char *dir, const char *name, const char *text)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    if (f == NULL)
        abort();
    for (int i = 0; i < 50; i++)
        fputs(text, f);
    fclose(f);
}

static void setup(void)
{
    static char dir[] = "/tmp/http_fuzz.XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    char sub[300];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    mkdir(sub, 0755);
    put(dir, "index.html", "<p>fuzz index</p>\n");
    put(dir, "a.txt", "plain text file\n");
    put(dir, "sub/b.css", "body { color: red }\n");
    cn_http_static_opts_t so = { .root = dir, .gzip = true, .mem_max_bytes = 512 };
    if (cn_http_static_new(&so, &files) < 0)
        abort();
    memcpy(table, routes, sizeof(routes));
    table[sizeof(routes) / sizeof(routes[0]) - 1].udata = files;

    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.routes = table;
    cfg.nroutes = sizeof(table) / sizeof(table[0]);
    cfg.max_header_bytes = 1024;
    cfg.max_headers = 16;
    cfg.max_body_bytes = 4096;
    cfg.max_requests = 50;
    cfg.gzip_min_bytes = 16;
    cfg.log_cb = on_log;
    if (cn__http_server_new(&cfg, &srv) < 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (srv == NULL)
        setup();
    if (size == 0)
        return 0;
    size_t chunk = data[0] % 64;
    char *out = NULL;
    size_t outlen = 0;
    cn__http_serve_buffer(srv, (const char *)data + 1, size - 1, chunk, &out, &outlen);
    /* Every response starts with a status line (or 100 Continue). */
    if (outlen > 0 && (outlen < 12 || memcmp(out, "HTTP/1.1 ", 9) != 0))
        abort();
    free(out);
    return 0;
}
