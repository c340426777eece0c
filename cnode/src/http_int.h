/* http_int.h - private structures of the HTTP server, shared by cnode/src/http*.c.
 *
 * Reading order: the arena (per-request memory), the transport (how a connection
 * reads and writes: sockets, or memory for tests and the fuzzer), the server, and
 * the connection, which holds the read buffer, the parser, the request being
 * served and the output buffer. Functions named cn__http_* are internal.
 */
#ifndef CNODE_HTTP_INT_H
#define CNODE_HTTP_INT_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "cnode/http.h"

/* ---------------------------------------------------------------------------------
 * Arena (http_arena.c): bump allocation from an inline first block, then from
 * malloc'd blocks that cn__arena_reset() frees. A request that fits the first
 * block allocates nothing.
 * ------------------------------------------------------------------------------ */

typedef struct cn__arena_blk {
    struct cn__arena_blk *next;
    size_t cap;                  /* bytes in data */
    char data[];
} cn__arena_blk_t;

typedef struct cn__arena {
    char *cur, *end;             /* free space of the current block */
    char *first;                 /* inline block, borrowed */
    size_t first_cap;
    cn__arena_blk_t *blocks;     /* extra blocks, newest first */
} cn__arena_t;

void cn__arena_init(cn__arena_t *a, char *first, size_t cap);
void *cn__arena_alloc(cn__arena_t *a, size_t n);   /* 16-aligned; NULL on ENOMEM */
/* Grow the most recent allocation p (of old bytes) to n bytes, in place when it
 * is the last one and fits; else a new allocation with a copy. NULL on ENOMEM. */
void *cn__arena_grow(cn__arena_t *a, void *p, size_t old, size_t n);
void cn__arena_reset(cn__arena_t *a);              /* back to empty; frees blocks */

/* ---------------------------------------------------------------------------------
 * Transport. The socket one is the default; tests and the fuzzer feed bytes from
 * memory through the same state machine.
 * ------------------------------------------------------------------------------ */

typedef struct cn__http_conn cn__http_conn_t;

typedef struct cn__http_io {
    /* > 0 bytes read, 0 at EOF, -EAGAIN when nothing is there, -errno. */
    ssize_t (*read)(cn__http_conn_t *c, char *buf, size_t len);
    /* Bytes written (may be short), -EAGAIN, -errno. `more`: more data follows
     * at once (MSG_MORE). */
    ssize_t (*writev)(cn__http_conn_t *c, const struct iovec *iov, int n, bool more);
    /* As sendfile(2): bytes sent (may be short), -EAGAIN, -errno. */
    ssize_t (*sendfile)(cn__http_conn_t *c, int fd, off_t *off, size_t len);
    /* Wait for CN_READABLE/CN_WRITABLE: > 0, -ETIMEDOUT, -errno. */
    int (*wait)(cn__http_conn_t *c, int events, int64_t timeout_ms);
} cn__http_io_t;

extern const cn__http_io_t cn__http_sock_io;

/* ---------------------------------------------------------------------------------
 * Server (http_server.c)
 * ------------------------------------------------------------------------------ */

struct cn_http_server {
    cn_node_t *node;
    cn_http_config_t cfg;          /* with defaults applied */
    int lfd;                       /* listening socket, -1 when closed */
    uint16_t port;
    cn_pid_t listener;
    cn__http_conn_t *conns;        /* open connections (socket ones) */
    size_t nconns;
    uint64_t nrequests;            /* served since start */
    bool stopping;
    bool done;                     /* listener exited */
    bool listening;                /* listener spawned */
    uint64_t stop_deadline;        /* ms, node clock */
    time_t date_sec;               /* second the Date header was made for */
    char date_hdr[48];             /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
    size_t date_hdr_len;
    char server_hdr[80];           /* "Server: cnode\r\n", or "" */
    size_t server_hdr_len;
};

/* Create a server with cfg (defaults applied) but no socket: enough for the
 * memory transport. cn_http_server_start() is this + listen + spawn. */
int cn__http_server_new(const cn_http_config_t *cfg, cn_http_server_t **out);
/* The Date header line for now, cached per second. */
const char *cn__http_date_hdr(cn_http_server_t *s, size_t *len);
/* Format t as an IMF-fixdate (29 chars + NUL) into buf[30]. */
void cn__http_fmt_date(time_t t, char *buf);
/* Parse an IMF-fixdate; -1 if it is not one. */
time_t cn__http_parse_date(const char *s);

/* ---------------------------------------------------------------------------------
 * Connection (http_conn.c)
 * ------------------------------------------------------------------------------ */

enum cn__http_state {
    CN__H_IDLE = 0,   /* waiting for the first byte of a request */
    CN__H_HEAD,       /* reading the request line and headers */
    CN__H_BODY,       /* reading the body */
    CN__H_HANDLER,    /* the request is complete; its handler runs */
};

typedef struct cn__hdr_off {
    uint32_t noff, nlen;           /* name, relative to head_start */
    uint32_t voff, vlen;           /* value; vlen 0 and voff 0: empty */
    bool folded;                   /* value came in several pieces */
} cn__hdr_off_t;

typedef struct cn__static_file cn__static_file_t; /* http_static.c */

#define CN__HTTP_ARENA_FIRST 4096
#define CN__HTTP_OUT_INLINE 16384  /* bodies up to this are copied into the out buffer */

struct cn__http_conn {
    cn_http_server_t *srv;
    cn__http_conn_t *prev, *next;  /* in srv->conns */
    int fd;                        /* -1 for the memory transport */
    const cn__http_io_t *io;
    void *io_ctx;                  /* the memory transport's state */
    cn_pid_t pid;
    http_parser parser;
    uint8_t state;                 /* enum cn__http_state */
    bool idle_wait;                /* parked waiting for a new request */
    bool rdrained;                 /* last read was short: wait before reading */
    bool close_after;              /* close once this response is out */
    bool io_failed;                /* a write failed: stop serving */

    /* Read buffer: [0, rlen) read, [0, rpos) parsed; the current request's head
     * starts at head_start and stays in place until the request ends. */
    char *rbuf;
    size_t rcap, rlen, rpos, head_start;
    size_t head_end;               /* after headers: offset (from head_start) past them */
    uint64_t deadline;             /* ms: the current state's deadline */

    /* Head being parsed. */
    uint32_t url_off, url_len;
    cn__hdr_off_t *hoff;
    uint32_t nh;                   /* headers seen */
    bool in_value;                 /* last header callback was a value */
    int err_status;                /* status to answer a parse error with (0: 400) */
    size_t body_cap;
    char *body;

    /* The request being served and its response. */
    cn_http_req_t req;
    cn_http_kv_t *hdrs;            /* max_headers entries */
    cn__arena_t arena;
    char *res_hdrs;                /* extra response header lines (arena) */
    size_t res_hdrs_len, res_hdrs_cap;
    int res_status;
    const char *route;             /* pattern of the matched route (telemetry), or NULL */
    /* Of the head being served, found while it is parsed, for telemetry's
     * server span (which would otherwise look them up again): the lengths of
     * req.path and req.query (0 without one), and the first Host,
     * User-Agent and traceparent values (NULL: none) with their lengths. */
    uint32_t path_len, query_len;
    const char *h_host, *h_ua, *h_tp;
    uint32_t h_host_len, h_ua_len, h_tp_len;
    bool replied;
    bool head_only;                /* HEAD: no body on the wire */
    cn_http_kv_t *query_kv, *form_kv, *cookie_kv; /* decoded lazily */
    int nquery, nform, ncookie;    /* -1: not decoded yet */
    uint64_t t_start_ns;           /* request's first byte (only with a log) */
    uint64_t out_total;            /* response bytes queued or sent, ever */
    uint64_t out_mark;             /* out_total when this request began */
    uint32_t nreq;                 /* requests served on this connection */

    /* Output: response heads (and small bodies) waiting to be written. */
    char *obuf;
    size_t olen, ocap;
    cn__static_file_t *file;       /* held while it is being sent */

    struct sockaddr_storage peer;
    socklen_t peerlen;
    uint8_t peer_text_len;         /* bytes of peer_text; 0: not formatted yet */
    char peer_text[48];            /* peer's address as text (telemetry's
                                      client.address), once per connection */
    _Alignas(16) char arena_first[CN__HTTP_ARENA_FIRST];
};

/* Allocate a connection for fd (or -1 with io/io_ctx for memory). NULL on ENOMEM. */
cn__http_conn_t *cn__http_conn_new(cn_http_server_t *s, int fd, const cn__http_io_t *io,
                                   void *io_ctx);
/* Close the fd, leave the server's list, free everything. NULL is allowed. */
void cn__http_conn_free(cn__http_conn_t *c);
/* Serve requests until the connection should close. */
void cn__http_conn_serve(cn__http_conn_t *c);
/* The process entry of a socket connection (arg: the conn, which it owns). */
void cn__http_conn_proc(void *arg);

/* Write everything in iov (after what obuf holds) or fail: 0 or -errno. */
int cn__http_conn_writev(cn__http_conn_t *c, struct iovec *iov, int n, bool more);
int cn__http_conn_flush(cn__http_conn_t *c, bool more);
/* Reserve n bytes at the end of obuf; NULL on ENOMEM. */
char *cn__http_out_reserve(cn__http_conn_t *c, size_t n);
int cn__http_conn_sendfile(cn__http_conn_t *c, int fd, off_t off, size_t len);

/* Serve `in` through the memory transport, delivered in reads of at most `chunk`
 * bytes (0: all at once), as one connection; the response bytes go to a malloc'd
 * *out (caller frees) of *outlen bytes. For tests and the fuzzer. 0 or -ENOMEM. */
int cn__http_serve_buffer(cn_http_server_t *s, const char *in, size_t len, size_t chunk,
                          char **out, size_t *outlen);

/* ---------------------------------------------------------------------------------
 * Responses (http_response.c), router (http_router.c), log (http_log.c)
 * ------------------------------------------------------------------------------ */

/* Drop the connection's hold on a cached file (http_static.c). NULL is allowed. */
void cn__http_static_release(cn__static_file_t *f);

/* Answer an error status outside any handler (parse errors, timeouts, limits) and
 * mark the connection to close. */
void cn__http_reply_early(cn__http_conn_t *c, int status);
/* Start the head of a response into obuf: status line, Server, Date, Connection,
 * extra headers; the caller adds its own lines and the final CRLF. */
int cn__http_head_begin(cn__http_conn_t *c, int status);
/* cn_http_reply, with gzip negotiation only if `negotiate` (a body that is
 * already encoded sets its own Content-Encoding and Vary). */
int cn__http_reply_body(cn_http_req_t *req, int status, const char *ctype, const void *body,
                        size_t len, bool negotiate);
/* True if the request accepts gzip. */
/* True if a content type is worth compressing. */
bool cn__http_compressible(const char *ctype);

/* Route the request: run the matching handler (or fallback/405). Returns its rc. */
int cn__http_route(cn__http_conn_t *c);

/* Write the access-log line of the finished request (if a log is configured). */
void cn__http_log(cn__http_conn_t *c);

/* ASCII case-insensitive comparison of n bytes / of strings. */
bool cn__http_ieq(const char *a, const char *b, size_t n);
static inline bool cn__http_hname_is(const char *h, const char *lit, size_t n);

/* Whether the n bytes of header name h (4 <= n) are lit (lower-case letters
 * and '-'), in any case: for the few names the parser looks for in every
 * request's headers, inline and a word at a time (cn__http_ieq goes byte by
 * byte, and called for every header it cost ~150 instructions a request). OR
 * with 0x20 folds a letter's case and leaves '-' alone; of the bytes a header
 * name may hold (http_parser lets tokens only), no other one becomes a
 * lower-case letter or '-'. Overlapping loads: n - 8 or n - 4 bytes again. */
static inline bool cn__http_hname_is(const char *h, const char *lit, size_t n)
{
    if (n >= 8) {
        uint64_t a, b, x, y;
        memcpy(&a, h, 8);
        memcpy(&b, h + n - 8, 8);
        memcpy(&x, lit, 8);
        memcpy(&y, lit + n - 8, 8);
        return (((a | 0x2020202020202020ull) ^ x) | ((b | 0x2020202020202020ull) ^ y)) == 0;
    }
    uint32_t a, b, x, y;
    memcpy(&a, h, 4);
    memcpy(&b, h + n - 4, 4);
    memcpy(&x, lit, 4);
    memcpy(&y, lit + n - 4, 4);
    return (((a | 0x20202020u) ^ x) | ((b | 0x20202020u) ^ y)) == 0;
}

#endif /* CNODE_HTTP_INT_H */
