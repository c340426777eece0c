/* sigv4.c - AWS Signature Version 4: canonical request, string to sign, signing
 * key and Authorization header (contract in cnode/include/cnode/sigv4.h).
 *
 * Reading order: a small growable string, URI encoding, the three parts of the
 * canonical request that need work (path, query, headers), then cn_sigv4_sign,
 * which strings them together and runs the HMAC-SHA256 chain
 *
 *     kDate    = HMAC("AWS4" + secret, YYYYMMDD)
 *     kRegion  = HMAC(kDate, region)
 *     kService = HMAC(kRegion, service)
 *     kSigning = HMAC(kService, "aws4_request")
 *     signature = hex(HMAC(kSigning, string to sign))
 *
 * Everything is pure and allocation goes through cn__malloc, so the unit test can
 * fail every allocation in turn and check that -ENOMEM comes back without leaks.
 */
#include "cnode/sigv4.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cnode_int.h"

/* ---------------------------------------------------------------------------------
 * A growable string; `oom` sticks, so a sequence of appends is checked once.
 * ------------------------------------------------------------------------------ */

typedef struct sb {
    char *p;
    size_t len, cap;
    bool oom;
} sb_t;

static void sb_addn(sb_t *s, const char *p, size_t n)
{
    if (s->oom)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 128;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *q = cn__realloc(s->p, cap);
        if (q == NULL) {
            s->oom = true;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->len, p, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void sb_add(sb_t *s, const char *p)
{
    sb_addn(s, p, strlen(p));
}

static void sb_addc(sb_t *s, char c)
{
    sb_addn(s, &c, 1);
}

/* Hand the string over (an empty string if nothing was added); NULL on OOM. */
static char *sb_take(sb_t *s)
{
    if (!s->oom && s->p == NULL)
        sb_addn(s, "", 0);
    if (s->oom) {
        cn__free(s->p);
        s->p = NULL;
    }
    char *p = s->p;
    memset(s, 0, sizeof(*s));
    return p;
}

/* ---------------------------------------------------------------------------------
 * URI encoding (RFC 3986 unreserved characters stay, the rest is %XX upper case)
 * ------------------------------------------------------------------------------ */

static bool unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '~';
}

static void uri_encode(sb_t *s, const char *p, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (unreserved(c)) {
            sb_addc(s, (char)c);
        } else {
            char e[3] = { '%', hex[c >> 4], hex[c & 15] };
            sb_addn(s, e, 3);
        }
    }
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decode p[0..n) into s (a '%' not followed by two hex digits stays). */
static void uri_decode(sb_t *s, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi, lo;
        if (p[i] == '%' && i + 2 < n && (hi = hexval(p[i + 1])) >= 0 &&
            (lo = hexval(p[i + 2])) >= 0) {
            sb_addc(s, (char)(hi << 4 | lo));
            i += 2;
        } else {
            sb_addc(s, p[i]);
        }
    }
}

static void to_hex(const unsigned char *d, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[2 * n] = '\0';
}

int cn_sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data ? data : "", len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return -ENOMEM;
    to_hex(md, 32, out);
    return 0;
}

static int hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int mlen = 32;
    if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out,
             &mlen) == NULL)
        return -ENOMEM;
    return 0;
}

void cn_sigv4_date(time_t t, char out[CN_SIGV4_DATE_LEN])
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, CN_SIGV4_DATE_LEN, "%Y%m%dT%H%M%SZ", &tm);
}

/* ---------------------------------------------------------------------------------
 * Canonical URI: remove "." and ".." segments and empty segments (repeated
 * slashes), keep a trailing slash, encode each segment once.
 * ------------------------------------------------------------------------------ */

typedef struct seg {
    const char *p;
    size_t n;
} seg_t;

static int canonical_path(sb_t *s, const char *path)
{
    if (path == NULL || *path == '\0')
        path = "/";
    size_t nsegs = 1;
    for (const char *q = path; *q; q++)
        nsegs += *q == '/';
    seg_t *st = cn__malloc(nsegs * sizeof(*st));
    if (st == NULL)
        return -ENOMEM;
    size_t top = 0;
    bool trailing = false;
    for (const char *q = path; *q;) {
        while (*q == '/')
            q++;
        if (*q == '\0')
            break; /* the slash(es) ending the path: `trailing` is already set */
        const char *e = strchrnul(q, '/');
        size_t n = (size_t)(e - q);
        trailing = *e == '/' || (n == 1 && q[0] == '.') || (n == 2 && q[0] == '.' && q[1] == '.');
        if (n == 0 || (n == 1 && q[0] == '.')) {
            /* nothing */
        } else if (n == 2 && q[0] == '.' && q[1] == '.') {
            if (top > 0)
                top--;
        } else {
            st[top++] = (seg_t){ q, n };
        }
        q = e;
    }
    sb_addc(s, '/');
    for (size_t i = 0; i < top; i++) {
        if (i > 0)
            sb_addc(s, '/');
        uri_encode(s, st[i].p, st[i].n);
    }
    if (top > 0 && trailing)
        sb_addc(s, '/');
    cn__free(st);
    return s->oom ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------------------------
 * Canonical query: name=value pairs, each side decoded then encoded, sorted by
 * name and then value (byte order); a parameter without '=' has an empty value.
 * ------------------------------------------------------------------------------ */

typedef struct param {
    char *name, *value;          /* encoded */
} param_t;

static int param_cmp(const void *a, const void *b)
{
    const param_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* Decode p[0..n) and encode it again into a new string. */
static char *reencode(const char *p, size_t n)
{
    sb_t d = { 0 }, e = { 0 };
    uri_decode(&d, p, n);
    char *raw = sb_take(&d);
    if (raw == NULL)
        return NULL;
    uri_encode(&e, raw, strlen(raw));
    cn__free(raw);
    return sb_take(&e);
}

static int canonical_query(sb_t *s, const char *query)
{
    if (query == NULL || *query == '\0')
        return 0;
    size_t cap = 1;
    for (const char *q = query; *q; q++)
        cap += *q == '&';
    param_t *v = cn__calloc(cap, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    size_t n = 0;
    int rc = 0;
    for (const char *q = query; *q;) {
        const char *e = strchrnul(q, '&');
        if (e > q) {
            const char *eq = memchr(q, '=', (size_t)(e - q));
            const char *ve = eq ? eq : e;
            v[n].name = reencode(q, (size_t)(ve - q));
            v[n].value = eq ? reencode(eq + 1, (size_t)(e - eq - 1)) : reencode("", 0);
            n++;
            if (v[n - 1].name == NULL || v[n - 1].value == NULL) {
                rc = -ENOMEM;
                goto out;
            }
        }
        q = *e ? e + 1 : e;
    }
    qsort(v, n, sizeof(*v), param_cmp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            sb_addc(s, '&');
        sb_add(s, v[i].name);
        sb_addc(s, '=');
        sb_add(s, v[i].value);
    }
    rc = s->oom ? -ENOMEM : 0;
out:
    for (size_t i = 0; i < n; i++) {
        cn__free(v[i].name);
        cn__free(v[i].value);
    }
    cn__free(v);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Canonical headers and the signed-header list
 * ------------------------------------------------------------------------------ */

typedef struct hdr {
    char *name;                  /* lower case */
    const char *value;           /* borrowed from the request */
    size_t order;                /* position in the request, for a stable sort */
} hdr_t;

static int hdr_cmp(const void *a, const void *b)
{
    const hdr_t *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

/* Trim the value and collapse each run of blanks inside it into one space. */
static void add_trimmed(sb_t *s, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    bool blank = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n') {
            blank = true;
            continue;
        }
        if (blank)
            sb_addc(s, ' ');
        blank = false;
        sb_addc(s, *v);
    }
}

static int canonical_headers(sb_t *s, sb_t *signed_hdrs, const cn_sigv4_header_t *h, size_t n)
{
    if (n == 0)
        return 0;
    hdr_t *v = cn__calloc(n, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(h[i].name);
        if (len == 0 || strchr(h[i].name, ':')) {
            rc = -EINVAL;
            goto out;
        }
        if ((v[i].name = cn__malloc(len + 1)) == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t k = 0; k <= len; k++)
            v[i].name[k] = (char)((h[i].name[k] >= 'A' && h[i].name[k] <= 'Z')
                                      ? h[i].name[k] - 'A' + 'a'
                                      : h[i].name[k]);
        v[i].value = h[i].value ? h[i].value : "";
        v[i].order = i;
    }
    qsort(v, n, sizeof(*v), hdr_cmp);
    for (size_t i = 0; i < n; i++) {
        bool first = i == 0 || strcmp(v[i].name, v[i - 1].name) != 0;
        bool last = i + 1 == n || strcmp(v[i].name, v[i + 1].name) != 0;
        if (first) {
            if (i > 0)
                sb_addc(signed_hdrs, ';');
            sb_add(signed_hdrs, v[i].name);
            sb_add(s, v[i].name);
            sb_addc(s, ':');
        } else {
            sb_addc(s, ','); /* repeated header: values joined in request order */
        }
        add_trimmed(s, v[i].value);
        if (last)
            sb_addc(s, '\n');
    }
    rc = s->oom || signed_hdrs->oom ? -ENOMEM : 0;
out:
    for (size_t i = 0; i < n; i++)
        cn__free(v[i].name);
    cn__free(v);
    return rc;
}

static bool valid_date(const char *d)
{
    if (d == NULL || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------
 * Signing
 * ------------------------------------------------------------------------------ */

void cn_sigv4_sig_free(cn_sigv4_sig_t *s)
{
    if (s == NULL)
        return;
    cn__free(s->creq);
    cn__free(s->sts);
    cn__free(s->authz);
    memset(s, 0, sizeof(*s));
}

int cn_sigv4_sign(const cn_sigv4_req_t *req, const cn_sigv4_creds_t *cr, cn_sigv4_sig_t *out)
{
    memset(out, 0, sizeof(*out));
    if (req == NULL || cr == NULL || req->method == NULL || cr->access_key == NULL ||
        cr->secret_key == NULL || cr->region == NULL || cr->service == NULL ||
        (req->body == NULL && req->body_len > 0))
        return -EINVAL;
    const char *date = NULL;
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name && strcasecmp(req->headers[i].name, "x-amz-date") == 0)
            date = req->headers[i].value;
    if (!valid_date(date))
        return -EINVAL;
    for (size_t i = 0; i < req->nheaders; i++)
        if (req->headers[i].name == NULL)
            return -EINVAL;

    sb_t creq = { 0 }, sh = { 0 }, sts = { 0 }, authz = { 0 }, key = { 0 };
    char payload_hash[65], creq_hash[65], sig[65], scope[160];
    unsigned char k[32], k2[32]; /* the chain alternates between the two */
    int rc;
    snprintf(scope, sizeof(scope), "%.8s/%s/%s/aws4_request", date, cr->region, cr->service);

    /* The canonical request. */
    sb_add(&creq, req->method);
    sb_addc(&creq, '\n');
    if ((rc = canonical_path(&creq, req->path)) < 0)
        goto fail;
    sb_addc(&creq, '\n');
    if ((rc = canonical_query(&creq, req->query)) < 0)
        goto fail;
    sb_addc(&creq, '\n');
    if ((rc = canonical_headers(&creq, &sh, req->headers, req->nheaders)) < 0)
        goto fail;
    sb_addc(&creq, '\n');
    sb_addn(&creq, sh.p ? sh.p : "", sh.len);
    sb_addc(&creq, '\n');
    if ((rc = cn_sigv4_sha256_hex(req->body, req->body_len, payload_hash)) < 0)
        goto fail;
    sb_add(&creq, payload_hash);
    rc = -ENOMEM;
    if (creq.oom || cn_sigv4_sha256_hex(creq.p, creq.len, creq_hash) < 0)
        goto fail;

    /* The string to sign. */
    sb_add(&sts, "AWS4-HMAC-SHA256\n");
    sb_add(&sts, date);
    sb_addc(&sts, '\n');
    sb_add(&sts, scope);
    sb_addc(&sts, '\n');
    sb_add(&sts, creq_hash);

    /* The signing key, then the signature. */
    sb_add(&key, "AWS4");
    sb_add(&key, cr->secret_key);
    char day[9];
    snprintf(day, sizeof(day), "%.8s", date);
    if (sts.oom || key.oom || hmac(key.p, key.len, day, k) < 0 ||
        hmac(k, 32, cr->region, k2) < 0 || hmac(k2, 32, cr->service, k) < 0 ||
        hmac(k, 32, "aws4_request", k2) < 0 || hmac(k2, 32, sts.p, k) < 0)
        goto fail;
    to_hex(k, 32, sig);

    sb_add(&authz, "AWS4-HMAC-SHA256 Credential=");
    sb_add(&authz, cr->access_key);
    sb_addc(&authz, '/');
    sb_add(&authz, scope);
    sb_add(&authz, ", SignedHeaders=");
    sb_addn(&authz, sh.p ? sh.p : "", sh.len);
    sb_add(&authz, ", Signature=");
    sb_add(&authz, sig);
    if (authz.oom)
        goto fail;

    out->creq = sb_take(&creq);
    out->sts = sb_take(&sts);
    out->authz = sb_take(&authz);
    rc = 0;
fail:
    if (key.p)
        OPENSSL_cleanse(key.p, key.len);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(k2, sizeof(k2));
    cn__free(key.p);
    cn__free(creq.p);
    cn__free(sh.p);
    cn__free(sts.p);
    cn__free(authz.p);
    return rc;
}
