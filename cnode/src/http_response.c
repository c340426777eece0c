/* http_response.c - building and sending HTTP responses.
 *
 * A response head is formatted straight into the connection's output buffer;
 * small bodies are copied after it, so a response (or a run of pipelined ones)
 * leaves in one write. Larger bodies go out with writev(head, body), files with
 * sendfile after the head. The server decides Connection: close here, once per
 * response, from the request (HTTP/1.0, Connection header), the server state
 * (stopping, max_requests) and the status (client errors that end a connection).
 * Text bodies are gzip-compressed with zlib when the client accepts it; zlib's
 * state is allocated from the request arena.
 */
#include "http_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "cnode_int.h"

const char *cn_http_status_text(int status)
{
    switch (status) {
#define XX(num, name, string) \
    case num:                 \
        return #string;
        HTTP_STATUS_MAP(XX)
#undef XX
    default:
        return "Unknown";
    }
}

/* "HTTP/1.1 404 Not Found\r\n" for the statuses http_parser knows. */
static const char *status_line(int status, size_t *len)
{
    switch (status) {
#define XX(num, name, string)                                          \
    case num: {                                                        \
        static const char l[] = "HTTP/1.1 " #num " " #string "\r\n";   \
        *len = sizeof(l) - 1;                                          \
        return l;                                                      \
    }
        HTTP_STATUS_MAP(XX)
#undef XX
    default:
        return NULL;
    }
}

/* Statuses after which the rest of the input cannot be trusted. */
static bool ends_connection(int status)
{
    return status == 400 || status == 408 || status == 413 || status == 414 ||
           status == 417 || status == 431 || status == 505;
}

static void out_put(cn__http_conn_t *c, const char *s, size_t n)
{
    memcpy(c->obuf + c->olen, s, n);
    c->olen += n;
    c->out_total += n;
}

#define OUT_LIT(c, lit) out_put((c), (lit), sizeof(lit) - 1)

/* Decimal digits of v into the out buffer (room reserved by the caller). */
static void out_u64(cn__http_conn_t *c, uint64_t v)
{
    char tmp[24];
    int i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    out_put(c, tmp + i, sizeof(tmp) - (size_t)i);
}

int cn__http_head_begin(cn__http_conn_t *c, int status)
{
    cn_http_server_t *s = c->srv;
    cn_http_req_t *r = &c->req;
    bool keep = !c->close_after && !s->stopping && !c->parser.upgrade &&
                HTTP_PARSER_ERRNO(&c->parser) == HPE_OK && http_should_keep_alive(&c->parser) &&
                (s->cfg.max_requests == 0 || c->nreq < s->cfg.max_requests) &&
                !ends_connection(status);
    if (!keep)
        c->close_after = true;

    size_t dlen;
    const char *date = cn__http_date_hdr(s, &dlen);
    /* Status line, Date, Server, Connection, the handler's headers, and room for
     * the caller's Content-Type/Length lines (ctype lengths are bounded by it). */
    size_t need = 64 + dlen + s->server_hdr_len + 32 + c->res_hdrs_len + 256;
    if (cn__http_out_reserve(c, need) == NULL)
        return -ENOMEM;
    size_t sl;
    const char *line = status_line(status, &sl);
    if (line) {
        out_put(c, line, sl);
    } else {
        int n = snprintf(c->obuf + c->olen, 64, "HTTP/1.1 %03d Unknown\r\n", status);
        c->olen += (size_t)n;
        c->out_total += (size_t)n;
    }
    out_put(c, s->server_hdr, s->server_hdr_len);
    out_put(c, date, dlen);
    if (!keep)
        OUT_LIT(c, "Connection: close\r\n");
    else if (r->http_major == 1 && r->http_minor == 0)
        OUT_LIT(c, "Connection: keep-alive\r\n");
    if (c->res_hdrs_len)
        out_put(c, c->res_hdrs, c->res_hdrs_len);
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Headers
 * ------------------------------------------------------------------------------ */

static bool header_safe(const char *s, bool is_name)
{
    if (is_name && *s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\r' || ch == '\n')
            return false;
        if (is_name && (ch <= ' ' || ch == ':' || ch >= 127))
            return false;
    }
    return true;
}

static int add_header(cn__http_conn_t *c, const char *name, size_t nlen, const char *value,
                      size_t vlen)
{
    size_t need = c->res_hdrs_len + nlen + vlen + 4;
    if (need > c->res_hdrs_cap) {
        size_t cap = c->res_hdrs_cap ? c->res_hdrs_cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        char *b = cn__arena_grow(&c->arena, c->res_hdrs, c->res_hdrs_cap, cap);
        if (b == NULL)
            return -ENOMEM;
        c->res_hdrs = b;
        c->res_hdrs_cap = cap;
    }
    char *o = c->res_hdrs + c->res_hdrs_len;
    memcpy(o, name, nlen);
    o += nlen;
    *o++ = ':';
    *o++ = ' ';
    memcpy(o, value, vlen);
    o += vlen;
    *o++ = '\r';
    *o++ = '\n';
    c->res_hdrs_len = (size_t)(o - c->res_hdrs);
    return 0;
}

int cn_http_set_header(cn_http_req_t *req, const char *name, const char *value)
{
    cn__http_conn_t *c = req->conn;
    if (c->replied)
        return -EALREADY;
    if (!header_safe(name, true) || !header_safe(value, false))
        return -EINVAL;
    return add_header(c, name, strlen(name), value, strlen(value));
}

int cn_http_set_cookie(cn_http_req_t *req, const char *name, const char *value,
                       const cn_http_cookie_attrs_t *attrs)
{
    char buf[1024];
    int n = cn_http_cookie_format(buf, sizeof(buf), name, value, attrs);
    if (n == -ENOSPC) {
        size_t cap = strlen(name) + strlen(value) + 512;
        char *big = cn_http_alloc(req, cap);
        if (big == NULL)
            return -ENOMEM;
        if ((n = cn_http_cookie_format(big, cap, name, value, attrs)) < 0)
            return n;
        return cn_http_set_header(req, "Set-Cookie", big);
    }
    if (n < 0)
        return n;
    return cn_http_set_header(req, "Set-Cookie", buf);
}

/* ---------------------------------------------------------------------------------
 * Compression
 * ------------------------------------------------------------------------------ */

bool cn__http_compressible(const char *ct)
{
    if (cn__http_ieq(ct, "text/", 5) || cn__http_ieq(ct, "image/svg+xml", 13))
        return true;
    if (!cn__http_ieq(ct, "application/", 12))
        return false;
    const char *sub = ct + 12;
    return cn__http_ieq(sub, "json", 4) || cn__http_ieq(sub, "javascript", 10) ||
           cn__http_ieq(sub, "xml", 3) || cn__http_ieq(sub, "xhtml+xml", 9) ||
           cn__http_ieq(sub, "rss+xml", 7) || cn__http_ieq(sub, "atom+xml", 8) ||
           cn__http_ieq(sub, "manifest+json", 13) || cn__http_ieq(sub, "ld+json", 7);
}

/* Is the q-value among a coding's parameters ("gzip;q=0.5", "gzip;level=1;q=0")
 * zero? Parameters other than q are skipped. */
static bool q_zero(const char *p, const char *end)
{
    for (;;) {
        while (p < end && *p != ';')
            p++;
        if (p >= end)
            return false;
        p++;
        while (p < end && (*p == ' ' || *p == '\t'))
            p++;
        if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=')
            break;
    }
    p += 2;
    if (p >= end || *p != '0')
        return false;
    for (p++; p < end && *p != ' ' && *p != '\t' && *p != ';'; p++)
        if (*p != '.' && *p != '0')
            return false;
    return true;
}

/* Read one Accept-Encoding field value into *gzip and *star (-1 not named, 0
 * refused, 1 taken); a later mention overrides an earlier one. */
static void scan_codings(const char *ae, int *gzip, int *star)
{
    const char *p = ae;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *tok = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ' && *p != '\t')
            p++;
        size_t tl = (size_t)(p - tok);
        const char *end = p;
        while (*end && *end != ',')
            end++;
        bool zero = q_zero(p, end);
        if ((tl == 4 && cn__http_ieq(tok, "gzip", 4)) || (tl == 6 && cn__http_ieq(tok, "x-gzip", 6)))
            *gzip = !zero;
        else if (tl == 1 && *tok == '*')
            *star = !zero;
        p = end;
    }
}

bool cn_http_accepts_gzip(const cn_http_req_t *req)
{
    int gzip = -1, star = -1;
    /* Several Accept-Encoding fields are one list joined by commas (RFC 9110
     * section 5.3), so each is read in order into the same state. */
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *n = req->headers[i].name;
        if (cn__http_ieq(n, "Accept-Encoding", 15) && n[15] == '\0')
            scan_codings(req->headers[i].value, &gzip, &star);
    }
    return gzip == 1 || (gzip == -1 && star == 1);
}

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
    return cn__arena_alloc(opaque, (size_t)items * size);
}

static void z_free(voidpf opaque, voidpf p)
{
    (void)opaque;
    (void)p; /* the arena frees everything at the end of the request */
}

/* Compress body into the arena; false if it fails or does not get smaller. */
static bool gzip_body(cn__http_conn_t *c, const void *body, size_t len, void **out,
                      size_t *outlen)
{
    z_stream z = { 0 };
    z.zalloc = z_alloc;
    z.zfree = z_free;
    z.opaque = &c->arena;
    if (len > UINT32_MAX)
        return false;
    /* windowBits 15 + 16: a gzip wrapper; memLevel 8 is zlib's default. */
    if (deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return false;
    uLong bound = deflateBound(&z, (uLong)len);
    char *dst = cn__arena_alloc(&c->arena, bound);
    bool ok = false;
    if (dst) {
        z.next_in = (Bytef *)body;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)dst;
        z.avail_out = (uInt)bound;
        if (deflate(&z, Z_FINISH) == Z_STREAM_END && z.total_out < len) {
            *out = dst;
            *outlen = z.total_out;
            ok = true;
        }
    }
    deflateEnd(&z);
    return ok;
}

/* ---------------------------------------------------------------------------------
 * Replies
 * ------------------------------------------------------------------------------ */

static bool status_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

/* Finish the head (Content-Type, Content-Length, blank line) after head_begin. */
static int head_finish(cn__http_conn_t *c, int status, const char *ctype, size_t len,
                       const char *extra, size_t extra_len)
{
    size_t ctl = ctype ? strlen(ctype) : 0;
    if (cn__http_out_reserve(c, ctl + extra_len + 64) == NULL)
        return -ENOMEM;
    if (ctype) {
        OUT_LIT(c, "Content-Type: ");
        out_put(c, ctype, ctl);
        OUT_LIT(c, "\r\n");
    }
    if (status_has_body(status)) {
        OUT_LIT(c, "Content-Length: ");
        out_u64(c, len);
        OUT_LIT(c, "\r\n");
    }
    if (extra_len)
        out_put(c, extra, extra_len);
    OUT_LIT(c, "\r\n");
    return 0;
}

static int begin_reply(cn_http_req_t *req, int status, const char *ctype)
{
    cn__http_conn_t *c = req->conn;
    if (c->replied)
        return -EALREADY;
    if (status < 100 || status > 999)
        return -EINVAL;
    if (ctype && !header_safe(ctype, false))
        return -EINVAL;
    c->replied = true;
    c->res_status = status;
    return 0;
}

int cn__http_reply_body(cn_http_req_t *req, int status, const char *ctype, const void *body,
                        size_t len, bool negotiate)
{
    cn__http_conn_t *c = req->conn;
    int rc = begin_reply(req, status, ctype);
    if (rc < 0)
        return rc;
    const char *extra = "";
    size_t extra_len = 0;
    if (negotiate && c->srv->cfg.gzip && ctype && status_has_body(status) &&
        cn__http_compressible(ctype)) {
        static const char vary[] = "Vary: Accept-Encoding\r\n";
        static const char vary_gz[] = "Vary: Accept-Encoding\r\nContent-Encoding: gzip\r\n";
        extra = vary;
        extra_len = sizeof(vary) - 1;
        void *z;
        size_t zlen;
        if (len >= c->srv->cfg.gzip_min_bytes && cn_http_accepts_gzip(req) &&
            gzip_body(c, body, len, &z, &zlen)) {
            body = z;
            len = zlen;
            extra = vary_gz;
            extra_len = sizeof(vary_gz) - 1;
        }
    }
    if ((rc = cn__http_head_begin(c, status)) < 0 ||
        (rc = head_finish(c, status, ctype, len, extra, extra_len)) < 0)
        return rc;
    if (c->head_only || !status_has_body(status) || len == 0)
        return 0;
    if (len <= CN__HTTP_OUT_INLINE) {
        if (cn__http_out_reserve(c, len) == NULL)
            return -ENOMEM;
        out_put(c, body, len);
        return 0;
    }
    struct iovec v = { (void *)body, len };
    return cn__http_conn_writev(c, &v, 1, false);
}

int cn_http_reply(cn_http_req_t *req, int status, const char *ctype, const void *body,
                  size_t len)
{
    return cn__http_reply_body(req, status, ctype, body, len, true);
}

int cn_http_reply_text(cn_http_req_t *req, int status, const char *text)
{
    return cn_http_reply(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

int cn_http_reply_json(cn_http_req_t *req, int status, const char *json)
{
    return cn_http_reply(req, status, "application/json", json, strlen(json));
}

int cn_http_redirect(cn_http_req_t *req, int status, const char *location)
{
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308)
        return -EINVAL;
    if (req->conn->replied)
        return -EALREADY;
    int rc = cn_http_set_header(req, "Location", location);
    if (rc < 0)
        return rc;
    return cn_http_reply(req, status, "text/plain; charset=utf-8", "redirecting\n", 12);
}

int cn_http_reply_error(cn_http_req_t *req, int status)
{
    char body[96];
    int n = snprintf(body, sizeof(body), "%d %s\n", status, cn_http_status_text(status));
    if (ends_connection(status))
        req->conn->close_after = true;
    return cn_http_reply(req, status, "text/plain; charset=utf-8", body, (size_t)n);
}

int cn_http_reply_file(cn_http_req_t *req, int status, const char *ctype, int fd, off_t off,
                       size_t len)
{
    cn__http_conn_t *c = req->conn;
    int rc = begin_reply(req, status, ctype);
    if (rc < 0)
        return rc;
    if ((rc = cn__http_head_begin(c, status)) < 0 ||
        (rc = head_finish(c, status, ctype, len, NULL, 0)) < 0)
        return rc;
    if (c->head_only || !status_has_body(status) || len == 0)
        return 0;
    return cn__http_conn_sendfile(c, fd, off, len);
}

bool cn_http_replied(const cn_http_req_t *req)
{
    return req->conn->replied;
}

void cn__http_reply_early(cn__http_conn_t *c, int status)
{
    if (c->replied)
        return;
    c->close_after = true;
    c->head_only = false;
    c->res_hdrs_len = 0; /* nothing a handler added belongs to this answer */
    cn_http_reply_error(&c->req, status);
}
