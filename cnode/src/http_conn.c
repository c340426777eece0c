/* http_conn.c - one HTTP connection: its process, read buffer, parser and writes.
 *
 * A connection process loops: read into the buffer, feed http_parser, and when a
 * message completes (the parser pauses itself in on_message_complete) run the
 * request's handler, queue its response, and go on with the bytes already
 * buffered - so pipelined requests are answered in order and their responses are
 * written together, in one system call, when the buffer runs dry.
 *
 * The head of the request under way stays where it was read: callbacks record
 * offsets from head_start (the buffer may be compacted while a head is incomplete,
 * which moves it as a block), and on_headers_complete turns them into C strings in
 * place by writing NULs over the bytes the parser has already consumed (the ' '
 * after the target, the ':' after a name, the CR after a value). No copy, no
 * allocation. The body is copied, de-chunked, into the request arena.
 *
 * Timeouts are per-state deadlines: header_timeout from the first byte of a head,
 * body_timeout from the end of the head, idle_timeout between requests (the first
 * request gets header_timeout from accept). A read that would block waits only
 * until the deadline, so a client trickling bytes cannot keep a slot (slowloris).
 *
 * Reading follows nginx: after a short read the socket is drained, so the next
 * read waits for readiness first instead of making a system call that would fail
 * with EAGAIN.
 *
 * The transport is a table of functions: sockets in production, memory for the
 * unit tests and the fuzzer (cn__http_serve_buffer), which drive the same state
 * machine without a node.
 */
#include "http_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cnode_int.h"
#include "telemetry_int.h"

#define LINGER_MS 2000             /* reading what a client still sends after an error */
#define LINGER_MAX_BYTES (1u << 20)
#define OUT_FLUSH_AT 32768         /* pipelined responses are flushed past this */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------------------------
 * Socket transport
 * ------------------------------------------------------------------------------ */

static ssize_t sock_read(cn__http_conn_t *c, char *buf, size_t len)
{
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t sock_writev(cn__http_conn_t *c, const struct iovec *iov, int n, bool more)
{
    struct msghdr m = { 0 };
    m.msg_iov = (struct iovec *)iov;
    m.msg_iovlen = (size_t)n;
    for (;;) {
        ssize_t r = sendmsg(c->fd, &m, MSG_NOSIGNAL | (more ? MSG_MORE : 0));
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t sock_sendfile(cn__http_conn_t *c, int fd, off_t *off, size_t len)
{
    for (;;) {
        ssize_t r = sendfile(c->fd, fd, off, len);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static int sock_wait(cn__http_conn_t *c, int events, int64_t timeout_ms)
{
    return cn_wait_fd(c->fd, events, timeout_ms);
}

const cn__http_io_t cn__http_sock_io = { sock_read, sock_writev, sock_sendfile, sock_wait };

/* ---------------------------------------------------------------------------------
 * Writing
 * ------------------------------------------------------------------------------ */

char *cn__http_out_reserve(cn__http_conn_t *c, size_t n)
{
    if (c->ocap - c->olen < n) {
        size_t cap = c->ocap ? c->ocap : 4096;
        while (cap - c->olen < n)
            cap *= 2;
        char *b = cn__realloc(c->obuf, cap);
        if (b == NULL)
            return NULL;
        c->obuf = b;
        c->ocap = cap;
    }
    return c->obuf + c->olen;
}

/* Write all of iov[0..n), waiting up to write_timeout_ms whenever the socket is
 * full. Consumes iov. */
static int write_all(cn__http_conn_t *c, struct iovec *iov, int n, bool more)
{
    while (n > 0 && iov[0].iov_len == 0) {
        iov++;
        n--;
    }
    while (n > 0) {
        ssize_t r = c->io->writev(c, iov, n, more);
        if (r == -EAGAIN) {
            int rc = c->io->wait(c, CN_WRITABLE, c->srv->cfg.write_timeout_ms);
            if (rc < 0) {
                c->io_failed = true;
                return rc;
            }
            continue;
        }
        if (r <= 0) {
            c->io_failed = true;
            return r < 0 ? (int)r : -EPIPE;
        }
        size_t left = (size_t)r;
        while (n > 0 && left >= iov[0].iov_len) {
            left -= iov[0].iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + left;
            iov[0].iov_len -= left;
        }
    }
    return 0;
}

int cn__http_conn_writev(cn__http_conn_t *c, struct iovec *iov, int n, bool more)
{
    if (c->io_failed)
        return -EPIPE;
    struct iovec v[8];
    int k = 0;
    for (int i = 0; i < n; i++)
        c->out_total += iov[i].iov_len;
    if (c->olen)
        v[k++] = (struct iovec){ c->obuf, c->olen };
    for (int i = 0; i < n && k < 8; i++)
        v[k++] = iov[i];
    int rc = write_all(c, v, k, more);
    c->olen = 0;
    return rc;
}

int cn__http_conn_flush(cn__http_conn_t *c, bool more)
{
    if (c->olen == 0)
        return 0;
    return cn__http_conn_writev(c, NULL, 0, more);
}

int cn__http_conn_sendfile(cn__http_conn_t *c, int fd, off_t off, size_t len)
{
    int rc = cn__http_conn_flush(c, len > 0);
    if (rc < 0)
        return rc;
    c->out_total += len;
    while (len > 0) {
        ssize_t r = c->io->sendfile(c, fd, &off, len);
        if (r == -EAGAIN) {
            if ((rc = c->io->wait(c, CN_WRITABLE, c->srv->cfg.write_timeout_ms)) < 0) {
                c->io_failed = true;
                return rc;
            }
            continue;
        }
        if (r <= 0) {
            /* 0: the file shrank under us. The head promised len bytes, so the
             * connection cannot be reused. */
            c->io_failed = true;
            return r < 0 ? (int)r : -EIO;
        }
        len -= (size_t)r;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Parser callbacks
 * ------------------------------------------------------------------------------ */

static uint32_t head_off(cn__http_conn_t *c, const char *at)
{
    return (uint32_t)(at - (c->rbuf + c->head_start));
}

static int on_message_begin(http_parser *p)
{
    cn__http_conn_t *c = p->data;
    c->state = CN__H_HEAD;
    c->deadline = cn_now_ms() + (uint64_t)c->srv->cfg.header_timeout_ms;
    if (c->srv->cfg.access_log || c->srv->cfg.log_cb)
        c->t_start_ns = mono_ns();
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t len)
{
    cn__http_conn_t *c = p->data;
    uint32_t off = head_off(c, at);
    if (c->url_len == 0)
        c->url_off = off;
    c->url_len = off + (uint32_t)len - c->url_off;
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    cn__http_conn_t *c = p->data;
    if (c->state == CN__H_BODY)
        return 0; /* a chunked body's trailer fields: not kept */
    uint32_t off = head_off(c, at);
    cn__hdr_off_t *h = c->nh ? &c->hoff[c->nh - 1] : NULL;
    /* A name split across two reads arrives in two adjacent pieces; anything
     * else starts a new header (after a value, or after a name with no value). */
    if (h && !c->in_value && off == h->noff + h->nlen) {
        h->nlen += (uint32_t)len;
        return 0;
    }
    if (c->nh >= c->srv->cfg.max_headers) {
        c->err_status = 431;
        return -1;
    }
    h = &c->hoff[c->nh++];
    h->noff = off;
    h->nlen = (uint32_t)len;
    h->voff = h->vlen = 0;
    h->folded = false;
    c->in_value = false;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    cn__http_conn_t *c = p->data;
    if (c->state == CN__H_BODY)
        return 0;
    if (c->nh == 0)
        return -1;
    uint32_t off = head_off(c, at);
    cn__hdr_off_t *h = &c->hoff[c->nh - 1];
    if (!c->in_value || h->vlen == 0) {
        h->voff = off;
        h->vlen = (uint32_t)len;
    } else {
        if (off != h->voff + h->vlen)
            h->folded = true; /* obs-fold: the pieces are joined with spaces below */
        h->vlen = off + (uint32_t)len - h->voff;
    }
    c->in_value = true;
    return 0;
}

/* "100-continue" and only that (RFC 9110 10.1.1); anything else is 417. */
static int handle_expect(cn__http_conn_t *c, const char *v)
{
    if (!cn__http_ieq(v, "100-continue", 13))
        return 417;
    if (c->parser.http_major == 1 && c->parser.http_minor == 0)
        return 0; /* HTTP/1.0 clients don't wait for it */
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
    char *o = cn__http_out_reserve(c, sizeof(cont) - 1);
    if (o == NULL)
        return 500;
    memcpy(o, cont, sizeof(cont) - 1);
    c->olen += sizeof(cont) - 1;
    if (cn__http_conn_flush(c, false) < 0)
        return -1;
    return 0;
}

static int on_headers_complete(http_parser *p)
{
    cn__http_conn_t *c = p->data;
    cn_http_server_t *s = c->srv;
    char *h0 = c->rbuf + c->head_start;
    cn_http_req_t *r = &c->req;

    c->state = CN__H_BODY;
    c->deadline = cn_now_ms() + (uint64_t)s->cfg.body_timeout_ms;

    /* Where the head's strings end: the NULs written below stay inside it. */
    size_t end = (size_t)c->url_off + c->url_len + 1;
    if (c->nh) {
        cn__hdr_off_t *h = &c->hoff[c->nh - 1];
        size_t e = h->vlen ? (size_t)h->voff + h->vlen + 1 : (size_t)h->noff + h->nlen + 1;
        if (e > end)
            end = e;
    }
    if (end > s->cfg.max_header_bytes) {
        c->err_status = 431;
        return -1;
    }
    c->head_end = end;
    if (c->url_len == 0) {
        c->err_status = 400;
        return -1;
    }

    /* The target: origin-form "/p?q", absolute-form "http://h/p?q", or "*". */
    char *url = h0 + c->url_off;
    url[c->url_len] = '\0';
    char *hash = memchr(url, '#', c->url_len);
    if (hash)
        *hash = '\0';
    char *q = strchr(url, '?');
    /* The target's end: http_parser lets no NUL into a URL, so these are
     * the strings' lengths. */
    char *url_end = hash ? hash : url + c->url_len;
    c->query_len = 0;
    if (q) {
        *q = '\0';
        r->query = q + 1;
        c->query_len = (uint32_t)(url_end - (q + 1));
        url_end = q;
    }
    if (url[0] == '/' || (url[0] == '*' && url[1] == '\0' && p->method == HTTP_OPTIONS)) {
        r->path = url;
        c->path_len = (uint32_t)(url_end - url);
    } else if (cn__http_ieq(url, "http://", 7) || cn__http_ieq(url, "https://", 8)) {
        char *slash = strchr(strstr(url, "//") + 2, '/');
        r->path = slash ? slash : "/";
        c->path_len = (uint32_t)strlen(r->path);
    } else {
        c->err_status = 400;
        return -1;
    }
    if (p->http_major != 1) {
        c->err_status = 505;
        return -1;
    }
    if (p->method == HTTP_CONNECT) {
        c->err_status = 400;
        return -1;
    }

    /* Headers: NUL-terminate in place, trim trailing whitespace, unfold. */
    const char *expect = NULL;
    uint32_t nhost = 0, ntp = 0;
    c->h_host = c->h_ua = c->h_tp = NULL;
    for (uint32_t i = 0; i < c->nh; i++) {
        cn__hdr_off_t *h = &c->hoff[i];
        char *name = h0 + h->noff;
        name[h->nlen] = '\0';
        char *v = "";
        size_t vl = 0; /* http_parser lets no NUL into a value: strlen(v) */
        if (h->vlen) {
            v = h0 + h->voff;
            vl = h->vlen;
            if (h->folded) {
                for (size_t k = 0; k < vl; k++)
                    if (v[k] == '\r' || v[k] == '\n')
                        v[k] = ' ';
            }
            while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
                vl--;
            v[vl] = '\0';
        }
        c->hdrs[i].name = name;
        c->hdrs[i].value = v;
        switch (h->nlen) {
        case 4:
            if (cn__http_hname_is(name, "host", 4) && nhost++ == 0) {
                c->h_host = v;
                c->h_host_len = (uint32_t)vl;
            }
            break;
        case 6:
            if (cn__http_hname_is(name, "expect", 6))
                expect = v;
            break;
        case 10:
            if (!c->h_ua && cn__http_hname_is(name, "user-agent", 10)) {
                c->h_ua = v;
                c->h_ua_len = (uint32_t)vl;
            }
            break;
        case 11:
            if (cn__http_hname_is(name, "traceparent", 11) && ntp++ == 0) {
                c->h_tp = v;
                c->h_tp_len = (uint32_t)vl;
            }
            break;
        }
    }
    /* Two traceparent fields are ambiguous (which is the parent?): neither is
     * taken, and the request starts a trace (the W3C conformance suite's
     * test_traceparent_duplicated). */
    if (ntp > 1)
        c->h_tp = NULL;
    /* RFC 9112 3.2: an HTTP/1.1 request without a Host, or with several, is a 400. */
    if ((p->http_minor >= 1 && nhost == 0) || nhost > 1) {
        c->err_status = 400;
        return -1;
    }
    r->headers = c->hdrs;
    r->nheaders = c->nh;
    r->method = http_method_str((enum http_method)p->method);
    r->method_id = p->method;
    r->http_major = p->http_major;
    r->http_minor = p->http_minor;
    c->head_only = p->method == HTTP_HEAD;

    bool chunked = (p->flags & F_CHUNKED) != 0;
    bool has_len = !chunked && p->content_length != ULLONG_MAX && p->content_length > 0;
    if (has_len && p->content_length > s->cfg.max_body_bytes) {
        c->err_status = 413;
        return -1;
    }
    if (expect && (chunked || has_len)) {
        int st = handle_expect(c, expect);
        if (st != 0) {
            c->err_status = st > 0 ? st : 0;
            return -1;
        }
    }
    if (has_len) {
        c->body = cn__arena_alloc(&c->arena, (size_t)p->content_length + 1);
        if (c->body == NULL) {
            c->err_status = 503;
            return -1;
        }
        c->body_cap = (size_t)p->content_length + 1;
    }
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    cn__http_conn_t *c = p->data;
    cn_http_req_t *r = &c->req;
    if (len > c->srv->cfg.max_body_bytes - r->body_len) {
        c->err_status = 413;
        return -1;
    }
    size_t need = r->body_len + len + 1;
    if (need > c->body_cap) {
        size_t cap = c->body_cap ? c->body_cap : 1024;
        while (cap < need)
            cap *= 2;
        char *b = cn__arena_grow(&c->arena, c->body, c->body_cap, cap);
        if (b == NULL) {
            c->err_status = 503;
            return -1;
        }
        c->body = b;
        c->body_cap = cap;
    }
    memcpy(c->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int on_chunk_header(http_parser *p)
{
    cn__http_conn_t *c = p->data;
    /* A declared chunk that cannot fit is refused before its bytes arrive. */
    if (p->content_length > c->srv->cfg.max_body_bytes - c->req.body_len) {
        c->err_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(http_parser *p)
{
    cn__http_conn_t *c = p->data;
    c->state = CN__H_HANDLER;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
    .on_chunk_header = on_chunk_header,
};

/* ---------------------------------------------------------------------------------
 * Requests
 * ------------------------------------------------------------------------------ */

static void request_reset(cn__http_conn_t *c)
{
    cn__arena_reset(&c->arena);
    memset(&c->req, 0, sizeof(c->req));
    c->req.conn = c;
    c->req.body = "";
    c->url_off = c->url_len = 0;
    c->nh = 0;
    c->in_value = false;
    c->err_status = 0;
    c->body = NULL;
    c->body_cap = 0;
    c->head_end = 0;
    c->res_hdrs = NULL;
    c->res_hdrs_len = c->res_hdrs_cap = 0;
    c->res_status = 0;
    c->replied = false;
    c->head_only = false;
    c->query_kv = c->form_kv = c->cookie_kv = NULL;
    c->nquery = c->nform = c->ncookie = -1;
    c->out_mark = c->out_total;
    c->state = CN__H_IDLE;
    c->head_start = c->rpos;
    c->deadline = cn_now_ms() + (uint64_t)c->srv->cfg.idle_timeout_ms;
}

/* Run the complete request's handler. Returns 0 to go on, 1 to close. */
static int dispatch(cn__http_conn_t *c)
{
    cn_http_server_t *s = c->srv;
    cn_http_req_t *r = &c->req;
    if (c->body)
        c->body[r->body_len] = '\0';
    r->body = c->body ? c->body : "";
    c->nreq++;
    s->nrequests++;

    /* Telemetry (telemetry.h): a server span around the handler, which becomes
     * the handler's current span, and the request metrics. */
    cn_node_t *tn = cn__cur_node;
    bool tel = tn && tn->telemetry;
    cn_span_t *span = NULL;
    uint64_t t0 = 0;
    if (tel)
        span = cn__tel_http_begin(c, &t0);
    int rc = cn__http_route(c);
    if (!c->replied && !c->io_failed)
        cn_http_reply_error(r, rc == -EAGAIN || rc == -EBUSY ? 503 : 500);
    if (tel)
        cn__tel_http_end(c, span, t0);
    if (s->cfg.access_log || s->cfg.log_cb)
        cn__http_log(c);
    if (c->file) {
        cn__http_static_release(c->file);
        c->file = NULL;
    }
    bool close = c->close_after || c->io_failed;
    request_reset(c);
    if (close)
        return 1;
    /* Pipelined requests already here are answered before anything is written,
     * so their responses leave together. */
    if ((c->rpos == c->rlen || c->olen >= OUT_FLUSH_AT) && cn__http_conn_flush(c, false) < 0)
        return 1;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Reading and the connection loop
 * ------------------------------------------------------------------------------ */

/* Read more bytes into the buffer (everything before was parsed). Returns bytes
 * read (> 0), 0 at EOF or when a stopping server closes an idle connection,
 * -ETIMEDOUT at the state's deadline, -E2BIG when a head outgrows the buffer. */
static int fill(cn__http_conn_t *c)
{
    cn_http_server_t *s = c->srv;
    if (c->state == CN__H_IDLE) {
        /* Nothing of the next request is here: start at the front again. */
        c->rlen = c->rpos = c->head_start = 0;
    } else if (c->state == CN__H_BODY) {
        /* Body bytes are copied out as parsed: keep only the head. */
        size_t keep = c->head_start + c->head_end;
        if (c->rlen > keep)
            c->rlen = c->rpos = keep;
    } else if (c->head_start > 0) {
        size_t n = c->rlen - c->head_start;
        memmove(c->rbuf, c->rbuf + c->head_start, n);
        c->rlen = c->rpos = n;
        c->head_start = 0;
    }
    if (c->rlen == c->rcap)
        return -E2BIG;
    if (c->olen && cn__http_conn_flush(c, false) < 0)
        return -EPIPE;

    for (;;) {
        if (!c->rdrained) {
            size_t want = c->rcap - c->rlen;
            ssize_t n = c->io->read(c, c->rbuf + c->rlen, want);
            if (n > 0) {
                c->rlen += (size_t)n;
                c->rdrained = (size_t)n < want;
                return (int)n;
            }
            if (n != -EAGAIN)
                return (int)n;
        }
        uint64_t now = cn_now_ms();
        if (c->deadline <= now)
            return -ETIMEDOUT;
        bool idle = c->state == CN__H_IDLE;
        if (idle && s->stopping)
            return 0;
        c->idle_wait = idle;
        int rc = c->io->wait(c, CN_READABLE, (int64_t)(c->deadline - now));
        c->idle_wait = false;
        if (rc < 0)
            return rc;
        c->rdrained = false;
    }
}

/* After an error response: stop sending, then read and drop what the client still
 * sends for a while, so closing does not reset the connection before the client
 * has read the response (nginx's lingering close). */
static void linger(cn__http_conn_t *c)
{
    if (c->fd < 0 || c->io_failed)
        return;
    shutdown(c->fd, SHUT_WR);
    uint64_t deadline = cn_now_ms() + LINGER_MS;
    size_t total = 0;
    while (total < LINGER_MAX_BYTES) {
        ssize_t n = c->io->read(c, c->rbuf, c->rcap);
        if (n > 0) {
            total += (size_t)n;
            continue;
        }
        if (n != -EAGAIN)
            break;
        uint64_t now = cn_now_ms();
        if (now >= deadline || c->io->wait(c, CN_READABLE, (int64_t)(deadline - now)) < 0)
            break;
    }
}

void cn__http_conn_serve(cn__http_conn_t *c)
{
    cn_http_server_t *s = c->srv;
    int early = 0;
    for (;;) {
        if (c->rpos == c->rlen) {
            int rc = fill(c);
            if (rc <= 0) {
                if (rc == -E2BIG)
                    early = 431;
                else if (rc == -ETIMEDOUT && c->state != CN__H_IDLE)
                    early = 408;
                /* EOF, an error, or an idle timeout: close quietly. */
                break;
            }
        }
        size_t avail = c->rlen - c->rpos;
        size_t n = http_parser_execute(&c->parser, &settings, c->rbuf + c->rpos, avail);
        c->rpos += n;
        enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
        if (e == HPE_PAUSED) {
            http_parser_pause(&c->parser, 0);
            if (dispatch(c) != 0)
                break;
            continue;
        }
        if (e != HPE_OK || n != avail) {
            early = c->io_failed ? 0 : c->err_status ? c->err_status : 400;
            break;
        }
        if (c->state == CN__H_HEAD && c->rlen - c->head_start > s->cfg.max_header_bytes) {
            early = 431;
            break;
        }
    }
    if (early) {
        cn__http_reply_early(c, early);
        if (s->cfg.access_log || s->cfg.log_cb)
            cn__http_log(c);
    }
    cn__http_conn_flush(c, false);
    if (early || c->state != CN__H_IDLE)
        linger(c);
}

/* ---------------------------------------------------------------------------------
 * Life cycle
 * ------------------------------------------------------------------------------ */

cn__http_conn_t *cn__http_conn_new(cn_http_server_t *s, int fd, const cn__http_io_t *io,
                                   void *io_ctx)
{
    cn__http_conn_t *c = cn__calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->srv = s;
    c->fd = fd;
    c->io = io ? io : &cn__http_sock_io;
    c->io_ctx = io_ctx;
    /* Room for the largest head plus body reads after it. */
    c->rcap = s->cfg.max_header_bytes + 4096;
    c->rbuf = cn__malloc(c->rcap);
    c->hoff = cn__malloc(s->cfg.max_headers * sizeof(*c->hoff));
    c->hdrs = cn__malloc(s->cfg.max_headers * sizeof(*c->hdrs));
    if (c->rbuf == NULL || c->hoff == NULL || c->hdrs == NULL) {
        c->fd = -1; /* the caller still owns fd */
        cn__http_conn_free(c);
        return NULL;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    cn__arena_init(&c->arena, c->arena_first, sizeof(c->arena_first));
    request_reset(c);
    c->deadline = cn_now_ms() + (uint64_t)s->cfg.header_timeout_ms;
    return c;
}

void cn__http_conn_free(cn__http_conn_t *c)
{
    if (c == NULL)
        return;
    cn_http_server_t *s = c->srv;
    if (c->fd >= 0) {
        cn_fd_close(c->fd);
        c->fd = -1;
    }
    if (c->prev || c->next || s->conns == c) {
        if (c->prev)
            c->prev->next = c->next;
        else
            s->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        s->nconns--;
    }
    cn__http_static_release(c->file);
    cn__arena_reset(&c->arena);
    cn__free(c->rbuf);
    cn__free(c->hoff);
    cn__free(c->hdrs);
    cn__free(c->obuf);
    cn__free(c);
}

static void on_conn_exit(void *arg)
{
    cn__http_conn_free(arg);
}

void cn__http_conn_proc(void *arg)
{
    cn__http_conn_t *c = arg;
    c->pid = cn_self();
    /* The hook frees the connection on every exit, including a kill while parked. */
    if (cn_on_exit(on_conn_exit, c) < 0) {
        cn__http_conn_free(c);
        return;
    }
    cn__http_conn_serve(c);
}

/* ---------------------------------------------------------------------------------
 * Memory transport (tests, fuzzer)
 * ------------------------------------------------------------------------------ */

typedef struct mem_io {
    const char *in;
    size_t len, pos, chunk;
    char *out;
    size_t olen, ocap;
    bool oom;
} mem_io_t;

static bool mem_room(mem_io_t *m, size_t n)
{
    if (m->ocap - m->olen >= n)
        return true;
    size_t cap = m->ocap ? m->ocap : 4096;
    while (cap - m->olen < n)
        cap *= 2;
    char *b = realloc(m->out, cap);
    if (b == NULL) {
        m->oom = true;
        return false;
    }
    m->out = b;
    m->ocap = cap;
    return true;
}

static ssize_t mem_read(cn__http_conn_t *c, char *buf, size_t len)
{
    mem_io_t *m = c->io_ctx;
    size_t n = m->len - m->pos;
    if (m->chunk && n > m->chunk)
        n = m->chunk;
    if (n > len)
        n = len;
    memcpy(buf, m->in + m->pos, n);
    m->pos += n;
    return (ssize_t)n;
}

static ssize_t mem_writev(cn__http_conn_t *c, const struct iovec *iov, int n, bool more)
{
    (void)more;
    mem_io_t *m = c->io_ctx;
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (!mem_room(m, iov[i].iov_len))
            return -ENOMEM;
        memcpy(m->out + m->olen, iov[i].iov_base, iov[i].iov_len);
        m->olen += iov[i].iov_len;
        total += iov[i].iov_len;
    }
    return (ssize_t)total;
}

static ssize_t mem_sendfile(cn__http_conn_t *c, int fd, off_t *off, size_t len)
{
    mem_io_t *m = c->io_ctx;
    if (!mem_room(m, len))
        return -ENOMEM;
    ssize_t r = pread(fd, m->out + m->olen, len, *off);
    if (r < 0)
        return -errno;
    m->olen += (size_t)r;
    *off += r;
    return r;
}

static int mem_wait(cn__http_conn_t *c, int events, int64_t timeout_ms)
{
    (void)c;
    (void)timeout_ms;
    return events; /* memory is always ready */
}

static const cn__http_io_t mem_io = { mem_read, mem_writev, mem_sendfile, mem_wait };

int cn__http_serve_buffer(cn_http_server_t *s, const char *in, size_t len, size_t chunk,
                          char **out, size_t *outlen)
{
    mem_io_t m = { .in = in, .len = len, .chunk = chunk };
    cn__http_conn_t *c = cn__http_conn_new(s, -1, &mem_io, &m);
    if (c == NULL)
        return -ENOMEM;
    cn__http_conn_serve(c);
    cn__http_conn_free(c);
    *out = m.out;
    *outlen = m.olen;
    return m.oom ? -ENOMEM : 0;
}
