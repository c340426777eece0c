/* http_util.c - decoding what requests carry: headers, route captures, query
 * strings, urlencoded forms, cookies; and the encoders responses need (Set-Cookie,
 * JSON strings).
 *
 * The pure helpers (cn_http_urldecode, cn_http_form_parse, cn_http_cookie_parse,
 * cn_http_cookie_format, cn_http_json_escape) work in place or into a caller
 * buffer and allocate nothing; the request accessors decode lazily into the
 * request arena on first use.
 */
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static inline char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}

bool cn__http_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char ca = lower(a[i]), cb = lower(b[i]);
        if (ca != cb)
            return false;
        if (ca == '\0')
            return true;
    }
    return true;
}

/* ---------------------------------------------------------------------------------
 * Pure helpers
 * ------------------------------------------------------------------------------ */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = lower(ch);
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

int cn_http_urldecode(char *s, bool plus_space)
{
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (*r == '%') {
            int hi = hexval(r[1]), lo = hi >= 0 ? hexval(r[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -EINVAL;
            *w++ = (char)(hi << 4 | lo);
            r += 2;
        } else if (*r == '+' && plus_space) {
            *w++ = ' ';
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return (int)(w - s);
}

int cn_http_form_parse(char *s, cn_http_kv_t *out, size_t max)
{
    size_t n = 0;
    char *p = s;
    while (*p) {
        char *amp = strchr(p, '&');
        char *next = amp ? amp + 1 : p + strlen(p);
        if (amp)
            *amp = '\0';
        if (*p) {
            char *eq = strchr(p, '=');
            char *val = "";
            if (eq) {
                *eq = '\0';
                val = eq + 1;
            }
            if (cn_http_urldecode(p, true) < 0 || (eq && cn_http_urldecode(val, true) < 0))
                return -EINVAL;
            if (n < max) {
                out[n].name = p;
                out[n].value = val;
                n++;
            }
        }
        p = next;
    }
    return (int)n;
}

int cn_http_cookie_parse(char *s, cn_http_kv_t *out, size_t max)
{
    size_t n = 0;
    char *p = s;
    while (*p && n < max) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        if (*p == '\0')
            break;
        char *name = p;
        char *semi = strchr(p, ';');
        char *next = semi ? semi + 1 : p + strlen(p);
        if (semi)
            *semi = '\0';
        char *eq = strchr(name, '=');
        if (eq) {
            *eq = '\0';
            char *val = eq + 1;
            /* Trim: names and values carry no surrounding whitespace. */
            char *e = eq;
            while (e > name && (e[-1] == ' ' || e[-1] == '\t'))
                *--e = '\0';
            while (*val == ' ' || *val == '\t')
                val++;
            size_t vl = strlen(val);
            while (vl > 0 && (val[vl - 1] == ' ' || val[vl - 1] == '\t'))
                val[--vl] = '\0';
            if (vl >= 2 && val[0] == '"' && val[vl - 1] == '"') {
                val[vl - 1] = '\0';
                val++;
            }
            if (*name) {
                out[n].name = name;
                out[n].value = val;
                n++;
            }
        }
        p = next;
    }
    return (int)n;
}

static bool is_token_char(unsigned char ch)
{
    return ch > 32 && ch < 127 && !strchr("()<>@,;:\\\"/[]?={}", ch);
}

/* RFC 6265 cookie-octet. */
static bool is_cookie_octet(unsigned char ch)
{
    return ch == 0x21 || (ch >= 0x23 && ch <= 0x2B) || (ch >= 0x2D && ch <= 0x3A) ||
           (ch >= 0x3C && ch <= 0x5B) || (ch >= 0x5D && ch <= 0x7E);
}

static bool attr_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 32 || *s == ';' || (unsigned char)*s == 127)
            return false;
    return true;
}

int cn_http_cookie_format(char *buf, size_t cap, const char *name, const char *value,
                          const cn_http_cookie_attrs_t *a)
{
    if (*name == '\0')
        return -EINVAL;
    for (const char *p = name; *p; p++)
        if (!is_token_char((unsigned char)*p))
            return -EINVAL;
    for (const char *p = value; *p; p++)
        if (!is_cookie_octet((unsigned char)*p))
            return -EINVAL;
    if (a && ((a->path && !attr_ok(a->path)) || (a->domain && !attr_ok(a->domain))))
        return -EINVAL;
    if (a && a->same_site && strcmp(a->same_site, "Strict") && strcmp(a->same_site, "Lax") &&
        strcmp(a->same_site, "None"))
        return -EINVAL;

    size_t len = 0;
    int n = snprintf(buf, cap, "%s=%s", name, value);
#define ADD(...)                                                          \
    do {                                                                  \
        if (n < 0)                                                        \
            return -EINVAL;                                               \
        len += (size_t)n;                                                 \
        n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, __VA_ARGS__); \
    } while (0)
    if (a) {
        if (a->max_age >= 0)
            ADD("; Max-Age=%lld", (long long)a->max_age);
        if (a->domain)
            ADD("; Domain=%s", a->domain);
        if (a->path)
            ADD("; Path=%s", a->path);
        if (a->secure)
            ADD("; Secure");
        if (a->http_only)
            ADD("; HttpOnly");
        if (a->same_site)
            ADD("; SameSite=%s", a->same_site);
    }
    ADD("%s", "");
#undef ADD
    if (len >= cap)
        return -ENOSPC;
    return (int)len;
}

size_t cn_http_json_escape(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
#define PUT(ch)                \
    do {                       \
        if (n + 1 < cap)       \
            buf[n] = (ch);     \
        n++;                   \
    } while (0)
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            PUT('\\');
            PUT((char)ch);
        } else if (ch < 0x20 || ch == 0x7f) {
            static const char hex[] = "0123456789abcdef";
            PUT('\\');
            PUT('u');
            PUT('0');
            PUT('0');
            PUT(hex[ch >> 4]);
            PUT(hex[ch & 15]);
        } else {
            PUT((char)ch);
        }
    }
#undef PUT
    if (cap > 0)
        buf[n < cap ? n : cap - 1] = '\0';
    return n;
}

/* ---------------------------------------------------------------------------------
 * Request accessors
 * ------------------------------------------------------------------------------ */

const char *cn_http_header(const cn_http_req_t *req, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const char *n = req->headers[i].name;
        if (cn__http_ieq(n, name, len) && n[len] == '\0')
            return req->headers[i].value;
    }
    return NULL;
}

const char *cn_http_param(const cn_http_req_t *req, const char *name)
{
    for (size_t i = 0; i < req->nparams; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

static const char *kv_find(const cn_http_kv_t *kv, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(kv[i].name, name) == 0)
            return kv[i].value;
    return NULL;
}

/* Decode a form-encoded copy of src into the arena: *kv and *n (0 on failure). */
static void decode_form(cn_http_req_t *req, const char *src, size_t len, cn_http_kv_t **kv,
                        int *n)
{
    *n = 0;
    char *copy = cn_http_alloc(req, len + 1);
    if (copy == NULL)
        return;
    memcpy(copy, src, len);
    copy[len] = '\0';
    size_t max = 1;
    for (size_t i = 0; i < len; i++)
        max += copy[i] == '&';
    *kv = cn_http_alloc(req, max * sizeof(**kv));
    if (*kv == NULL)
        return;
    int rc = cn_http_form_parse(copy, *kv, max);
    *n = rc > 0 ? rc : 0;
}

const char *cn_http_query_get(cn_http_req_t *req, const char *name)
{
    cn__http_conn_t *c = req->conn;
    if (c->nquery < 0) {
        c->nquery = 0;
        if (req->query)
            decode_form(req, req->query, strlen(req->query), &c->query_kv, &c->nquery);
    }
    return kv_find(c->query_kv, c->nquery, name);
}

const char *cn_http_form_get(cn_http_req_t *req, const char *name)
{
    cn__http_conn_t *c = req->conn;
    if (c->nform < 0) {
        c->nform = 0;
        const char *ct = cn_http_header(req, "Content-Type");
        static const char form[] = "application/x-www-form-urlencoded";
        if (ct && cn__http_ieq(ct, form, sizeof(form) - 1) &&
            (ct[sizeof(form) - 1] == '\0' || ct[sizeof(form) - 1] == ';' ||
             ct[sizeof(form) - 1] == ' '))
            decode_form(req, req->body, req->body_len, &c->form_kv, &c->nform);
    }
    return kv_find(c->form_kv, c->nform, name);
}

const char *cn_http_cookie_get(cn_http_req_t *req, const char *name)
{
    cn__http_conn_t *c = req->conn;
    if (c->ncookie < 0) {
        c->ncookie = 0;
        size_t max = 0, total = 0;
        for (size_t i = 0; i < req->nheaders; i++) {
            if (cn__http_ieq(req->headers[i].name, "cookie", 7)) {
                const char *v = req->headers[i].value;
                total += strlen(v) + 1;
                max += 1;
                for (; *v; v++)
                    max += *v == ';';
            }
        }
        if (max == 0)
            return NULL;
        c->cookie_kv = cn_http_alloc(req, max * sizeof(*c->cookie_kv));
        char *copy = cn_http_alloc(req, total);
        if (c->cookie_kv == NULL || copy == NULL)
            return NULL;
        for (size_t i = 0; i < req->nheaders; i++) {
            if (!cn__http_ieq(req->headers[i].name, "cookie", 7))
                continue;
            size_t l = strlen(req->headers[i].value);
            memcpy(copy, req->headers[i].value, l + 1);
            c->ncookie += cn_http_cookie_parse(copy, c->cookie_kv + c->ncookie,
                                               max - (size_t)c->ncookie);
            copy += l + 1;
        }
    }
    return kv_find(c->cookie_kv, c->ncookie, name);
}

const char *cn_http_remote(cn_http_req_t *req)
{
    cn__http_conn_t *c = req->conn;
    char host[INET6_ADDRSTRLEN];
    unsigned port = 0;
    if (c->peer.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&c->peer;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
        return cn_http_sprintf(req, "%s:%u", host, port);
    }
    if (c->peer.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&c->peer;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
        return cn_http_sprintf(req, "[%s]:%u", host, port);
    }
    return "-";
}
