/* http.h - an HTTP/1.1 server on libcnode processes (the Cowboy model).
 *
 * A server is a listening socket, a listener process that accepts connections, and
 * one process per connection that reads requests, runs their handlers and writes
 * the responses, one request after another (keep-alive and pipelining). Request
 * heads and chunked bodies are parsed by nodejs's http_parser (libhttp-parser);
 * nothing here parses HTTP by hand.
 *
 * A handler is ordinary sequential C running in the connection's process: it may
 * block (cn_receive, gen_server calls, cn_blocking) while other connections run. It
 * answers with one of the cn_http_reply* functions. Everything a handler gets from
 * the request (path, headers, body, params) and everything it allocates with
 * cn_http_alloc() lives in the request's arena and is freed when the request ends.
 *
 * Typical use:
 *
 *     static int on_hello(cn_http_req_t *req, void *udata) {
 *         return cn_http_reply_text(req, 200, "hello\n");
 *     }
 *     static const cn_http_route_t routes[] = {
 *         { "GET", "/hello", on_hello, NULL },
 *         { "GET", "/post/:slug", on_post, NULL },
 *     };
 *     cn_http_config_t cfg;
 *     cn_http_config_init(&cfg);          // documented defaults
 *     cfg.port = 8080;
 *     cfg.routes = routes;
 *     cfg.nroutes = 2;
 *     cn_http_server_t *srv;
 *     if ((rc = cn_http_server_start(node, &cfg, &srv)) < 0) ...;
 *     cn_node_run(node);                  // until cn_http_server_stop() and the drain
 *     cn_http_server_free(srv);
 *
 * Limits and the status each one answers with (all in cn_http_config_t):
 *   request head larger than max_header_bytes, or more than max_headers   -> 431
 *   body larger than max_body_bytes (declared, or while reading chunks)   -> 413
 *   head not complete header_timeout_ms after its first byte              -> 408
 *   body not complete body_timeout_ms after the head                      -> 408
 *   no new request idle_timeout_ms after the last response                -> close
 *   client not reading the response for write_timeout_ms                  -> close
 *   more than max_connections open connections                            -> 503
 *   anything http_parser rejects, a bad target, CONNECT, a bad chunk size -> 400
 * Every error status closes the connection after the response. Timeouts are
 * deadlines for the whole head or body, so a client that trickles one byte at a
 * time cannot extend them (slowloris).
 *
 * Threads: everything here runs on the node's scheduler thread (in processes of
 * that node), except the pure helpers in "Decoding helpers", which are reentrant.
 * Several nodes (threads or programs) can serve one port with reuseport = true.
 */
#ifndef CNODE_HTTP_H
#define CNODE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "cnode/node.h"
#include "cnode/proc.h"

typedef struct cn_http_server cn_http_server_t;
typedef struct cn_http_req cn_http_req_t;
typedef struct cn_http_static cn_http_static_t;

/* A handler: answer req (with a cn_http_reply* call) and return 0, or return a
 * negative errno. If it returns without having replied, the server answers 500
 * (or 503 for -EAGAIN/-EBUSY). `udata` is the route's. */
typedef int (*cn_http_handler_cb)(cn_http_req_t *req, void *udata);

/* One route of the static routing table, tried in order.
 *   method   "GET", "POST", ...: exact; NULL or "*": any method. A GET route also
 *            answers HEAD (the body is not sent).
 *   pattern  segments separated by '/': a literal segment matches itself
 *            (case-sensitive), ":name" matches one non-empty segment, and a final
 *            "*name" matches the rest of the path (possibly empty). Captures are
 *            percent-decoded and read with cn_http_param().
 * A path that matches some pattern but no method answers 405 with Allow; a path
 * that matches nothing goes to cfg.fallback (default 404). */
typedef struct cn_http_route {
    const char *method;
    const char *pattern;
    cn_http_handler_cb handler;
    void *udata;
} cn_http_route_t;

/* One finished request, for the access log. Strings are borrowed until the
 * callback returns. */
typedef struct cn_http_log_entry {
    const char *method;
    const char *path;        /* request target as received, query included */
    int status;
    uint64_t bytes;          /* response bytes written, head included */
    uint64_t duration_us;    /* first byte of the request to last byte of the response */
    const char *remote;      /* "127.0.0.1:51234" or "[::1]:51234" */
    const char *user_agent;  /* "" if none */
} cn_http_log_entry_t;

/* json_line is the entry as one JSON object without the newline. */
typedef void (*cn_http_log_cb)(const cn_http_log_entry_t *e, const char *json_line,
                               void *udata);

typedef struct cn_http_config {
    /* Listening. */
    const char *host;           /* numeric address to bind; default "127.0.0.1" */
    uint16_t port;              /* default 0: the kernel picks (cn_http_server_port) */
    int backlog;                /* listen(2) backlog; default 511 */
    bool reuseport;             /* SO_REUSEPORT, so several nodes share the port;
                                   default false */
    /* Limits (see the table above). */
    size_t max_header_bytes;    /* request line + headers; default 8192 -> 431 */
    uint32_t max_headers;       /* header fields; default 64 -> 431 */
    size_t max_body_bytes;      /* decoded body; default 1 MiB -> 413 */
    uint32_t max_connections;   /* open connections; default 10000 -> 503 */
    uint32_t max_requests;      /* per connection, then close; default 0 = no limit */
    /* Timeouts, ms; 0 selects the default. */
    int64_t header_timeout_ms;  /* default 10000 -> 408 */
    int64_t body_timeout_ms;    /* default 30000 -> 408 */
    int64_t idle_timeout_ms;    /* keep-alive wait for the next request; default 60000 */
    int64_t write_timeout_ms;   /* a blocked write; default 30000 -> close */
    int64_t shutdown_timeout_ms; /* graceful stop deadline; default 10000 */
    /* Requests. */
    const cn_http_route_t *routes; /* borrowed for the server's lifetime */
    size_t nroutes;
    cn_http_handler_cb fallback;   /* no route matched; default: 404 */
    void *fallback_udata;
    /* Responses. */
    bool gzip;                  /* compress text responses for clients that accept
                                   gzip (Vary: Accept-Encoding); default true */
    size_t gzip_min_bytes;      /* smaller bodies are sent as they are; default 1024 */
    const char *server_name;    /* Server header; default "cnode"; "" = none */
    /* Access log: one JSON line per request to access_log (a FILE*, flushed per
       line) and/or log_cb. Both NULL (the default): no log, and no cost. */
    FILE *access_log;
    cn_http_log_cb log_cb;
    void *log_udata;
    /* Connection processes: CN_SPAWN_* flags. Default CN_SPAWN_OWN_STACK: a
       dedicated stack, so a handler parked deep in its call stack (a gen_server
       call from a template) is not copied out and back on every switch. For the
       static benchmark both cost the same CPU per request (7.4 vs 7.3 us, wrk
       against cnode-static --shared-stack); shared stacks (0) use less memory
       per idle keep-alive connection. */
    int conn_spawn_flags;
    size_t conn_stack_size;     /* with OWN_STACK; 0 = the node's default */
} cn_http_config_t;

/* Fill cfg with the defaults documented above (routes none: every request 404s). */
void cn_http_config_init(cn_http_config_t *cfg);

/* ---------------------------------------------------------------------------------
 * Server
 * ------------------------------------------------------------------------------ */

/* Bind and listen on cfg->host:cfg->port, then spawn the listener process on
 * `node`. Call from a process of `node` or from its thread before cn_node_run().
 * cfg is copied; what it points to (routes, strings, FILE*) is borrowed for the
 * server's lifetime. Returns 0 and *out, or -EINVAL (bad config or host),
 * -EADDRINUSE, -ENOMEM, or another errno from socket/bind/listen. */
int cn_http_server_start(cn_node_t *node, const cn_http_config_t *cfg,
                         cn_http_server_t **out);

/* The bound port (useful with port 0). */
uint16_t cn_http_server_port(const cn_http_server_t *srv);

/* Graceful stop, from any process of the server's node: stop accepting (the
 * listening socket closes), close idle keep-alive connections, let requests in
 * progress finish (their responses carry Connection: close), and after
 * shutdown_timeout_ms cut the connections that remain. The listener process exits
 * when no connection is left. Returns 0, or -EALREADY if already stopping. */
int cn_http_server_stop(cn_http_server_t *srv);

/* Open connections right now. */
size_t cn_http_server_connections(const cn_http_server_t *srv);

/* True once the listener has exited (after a stop and its drain). */
bool cn_http_server_done(const cn_http_server_t *srv);

/* Free a server after cn_node_free() of its node (connection processes still
 * alive then are freed by the node, and they use the server), or once
 * cn_http_server_done() is true. NULL is allowed. */
void cn_http_server_free(cn_http_server_t *srv);

/* ---------------------------------------------------------------------------------
 * Requests. Fields are read-only for handlers; strings are NUL-terminated and
 * live until the request ends.
 * ------------------------------------------------------------------------------ */

typedef struct cn_http_kv {
    const char *name;
    const char *value;
} cn_http_kv_t;

struct cn_http_req {
    const char *method;         /* "GET" */
    int method_id;              /* http_parser's enum http_method (HTTP_GET = 1) */
    const char *path;           /* raw path, not decoded, without the query: "/a%20b" */
    const char *query;          /* raw query after '?', or NULL */
    int http_major, http_minor;
    const cn_http_kv_t *headers; /* in order received; names as sent */
    size_t nheaders;
    const char *body;           /* decoded (de-chunked) body, NUL-terminated; "" if none */
    size_t body_len;
    const cn_http_kv_t *params; /* route captures, decoded */
    size_t nparams;
    /* private */
    struct cn__http_conn *conn;
};

/* The value of the first header named `name` (case-insensitive), or NULL. */
const char *cn_http_header(const cn_http_req_t *req, const char *name);

/* True when the request's Accept-Encoding takes gzip: "gzip" or "x-gzip" with a
 * non-zero q, or "*" with a non-zero q and gzip not named ("gzip;q=0" refuses).
 * Several Accept-Encoding fields are read as one comma-joined list. */
bool cn_http_accepts_gzip(const cn_http_req_t *req);

/* A route capture ("slug" for "/post/:slug"), decoded, or NULL. */
const char *cn_http_param(const cn_http_req_t *req, const char *name);

/* A query-string parameter, decoded ('+' is a space), or NULL. The first call
 * decodes the whole query into the arena. */
const char *cn_http_query_get(cn_http_req_t *req, const char *name);

/* A field of an application/x-www-form-urlencoded body, decoded, or NULL (also
 * NULL when the body has another content type). */
const char *cn_http_form_get(cn_http_req_t *req, const char *name);

/* A cookie from the Cookie header(s), or NULL. */
const char *cn_http_cookie_get(cn_http_req_t *req, const char *name);

/* The peer's address, "127.0.0.1:51234". Arena string. */
const char *cn_http_remote(cn_http_req_t *req);

/* Per-request arena: n bytes aligned to 16, freed when the request ends (never
 * free them yourself). NULL on ENOMEM. */
void *cn_http_alloc(cn_http_req_t *req, size_t n);
char *cn_http_strdup(cn_http_req_t *req, const char *s);
char *cn_http_sprintf(cn_http_req_t *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------------------------
 * Responses. One reply per request; a second returns -EALREADY. Each reply
 * writes (or queues, when pipelined requests wait) the whole response before it
 * returns, so `body` is borrowed only for the call. For HEAD the body is not sent
 * but Content-Length is. Returns 0, -EALREADY, -ENOMEM, -EINVAL, or a negative
 * errno of the write (the connection is then closed after the handler).
 * ------------------------------------------------------------------------------ */

/* Add a response header for the coming reply (copied). Names and values may not
 * contain CR, LF or NUL (-EINVAL). Content-Length, Date, Server and Connection are
 * the server's. */
int cn_http_set_header(cn_http_req_t *req, const char *name, const char *value);

typedef struct cn_http_cookie_attrs {
    int64_t max_age;            /* seconds; < 0: no Max-Age (a session cookie) */
    const char *path;           /* NULL: none */
    const char *domain;         /* NULL: none */
    const char *same_site;      /* "Strict", "Lax", "None", or NULL */
    bool secure, http_only;
} cn_http_cookie_attrs_t;

/* Add a Set-Cookie header. The value must be cookie-octets (no space, '"', ',',
 * ';', '\\', controls): encode it first if needed. -EINVAL otherwise. attrs may
 * be NULL (a session cookie with no attributes). */
int cn_http_set_cookie(cn_http_req_t *req, const char *name, const char *value,
                       const cn_http_cookie_attrs_t *attrs);

/* Reply with a body. content_type NULL means none. When the config enables gzip,
 * the request accepts it and the type is text (text/, json, javascript, xml, svg),
 * a body of at least gzip_min_bytes is sent gzip-compressed. */
int cn_http_reply(cn_http_req_t *req, int status, const char *content_type,
                  const void *body, size_t len);

/* text/plain; charset=utf-8 and application/json bodies from C strings. */
int cn_http_reply_text(cn_http_req_t *req, int status, const char *text);
int cn_http_reply_json(cn_http_req_t *req, int status, const char *json);

/* A redirect (301, 302, 303, 307, 308) to `location` (checked as a header value). */
int cn_http_redirect(cn_http_req_t *req, int status, const char *location);

/* An error page: "404 Not Found\n" as text/plain. Status >= 400 also closes the
 * connection when it is a client error the server cannot recover from (400, 408,
 * 413, 431). */
int cn_http_reply_error(cn_http_req_t *req, int status);

/* Reply with len bytes of file fd from offset off, with sendfile(2). fd is
 * borrowed for the call. */
int cn_http_reply_file(cn_http_req_t *req, int status, const char *content_type,
                       int fd, off_t off, size_t len);

/* True once the request has been answered. */
bool cn_http_replied(const cn_http_req_t *req);

/* "Not Found" for 404; "Unknown" for codes outside the map. */
const char *cn_http_status_text(int status);

/* ---------------------------------------------------------------------------------
 * Static files
 * ------------------------------------------------------------------------------ */

typedef struct cn_http_static_opts {
    const char *root;           /* directory served (required) */
    const char *index;          /* file for a path ending in '/'; default "index.html" */
    int max_age_s;              /* Cache-Control: max-age; default 0 ("no-cache",
                                   i.e. always revalidate with ETag); < 0: no header */
    bool gzip;                  /* serve text files gzip-compressed when accepted
                                   (compressed once, cached); false = off */
    size_t cache_entries;       /* open files kept (fd, stat, ETag); default 256 */
    size_t mem_max_bytes;       /* files up to this size are also kept in memory and
                                   written with the head in one system call instead
                                   of head + sendfile; 0 = off (always sendfile).
                                   At most 16384 (larger values are capped). */
} cn_http_static_opts_t;

/* Open a static file server for `opts->root`. It is used from one node only (its
 * cache is not locked). Returns 0 and *out, or -ENOENT/-ENOTDIR/-EACCES for the
 * root, -EINVAL, -ENOMEM. */
int cn_http_static_new(const cn_http_static_opts_t *opts, cn_http_static_t **out);
void cn_http_static_free(cn_http_static_t *st);

/* A handler (udata = the cn_http_static_t *) serving GET and HEAD for the file
 * named by the route's "*path" capture if there is one, else by the request path.
 * Answers 200 (sendfile), 304 for a matching If-None-Match / If-Modified-Since,
 * 301 for a directory without its '/', 404, 403 for ".." or unreadable files,
 * 405 for other methods. ETag and Last-Modified are derived from the file's
 * size and mtime; a changed inode, mtime or size invalidates the cached file
 * (checked with one fstatat per request). Symbolic links inside the root are
 * followed (as nginx's default); no directory listings, no Range requests. */
int cn_http_static_handler(cn_http_req_t *req, void *udata);

/* ---------------------------------------------------------------------------------
 * Decoding helpers (pure, reentrant, no allocation)
 * ------------------------------------------------------------------------------ */

/* Percent-decode s in place (and '+' to space if plus_space). Returns the new
 * length (s is NUL-terminated), or -EINVAL for a bad %XX escape or a decoded NUL. */
int cn_http_urldecode(char *s, bool plus_space);

/* Split an application/x-www-form-urlencoded string (also a query string) in
 * place into up to max pairs (decoded). Empty pieces are skipped; a piece without
 * '=' has value "". Returns the number of pairs (> max pairs are ignored), or
 * -EINVAL for a bad escape. */
int cn_http_form_parse(char *s, cn_http_kv_t *out, size_t max);

/* Split a Cookie header value ("a=1; b=2") in place into up to max pairs. Values
 * in double quotes lose the quotes; nothing is percent-decoded. Returns the count. */
int cn_http_cookie_parse(char *s, cn_http_kv_t *out, size_t max);

/* Format a Set-Cookie value (without the header name) into buf. Returns its length,
 * -EINVAL for an invalid name, value or attribute, -ENOSPC if cap is too small. */
int cn_http_cookie_format(char *buf, size_t cap, const char *name, const char *value,
                          const cn_http_cookie_attrs_t *attrs);

/* Escape s as the inside of a JSON string into buf (always NUL-terminated when
 * cap > 0). Returns the length it needs (like snprintf). */
size_t cn_http_json_escape(char *buf, size_t cap, const char *s);

#endif /* CNODE_HTTP_H */
