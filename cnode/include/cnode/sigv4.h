/* sigv4.h - AWS Signature Version 4 (header-based, HMAC-SHA256).
 *
 * cn_sigv4_sign() turns a request into the three artefacts of the AWS process:
 * the canonical request, the string to sign and the Authorization header value.
 * The caller sends the request with exactly the headers it passed (plus the
 * Authorization header), so everything it wants signed must be in the list:
 * Host and X-Amz-Date always, X-Amz-Security-Token with temporary credentials,
 * and for the JSON APIs Content-Type and X-Amz-Target.
 *
 * Canonicalisation follows the AWS documentation for services other than S3:
 * the path is normalised (RFC 3986 dot segments, repeated slashes) and each
 * segment URI-encoded; query parameters are decoded, re-encoded and sorted by
 * name then value; header names are lower-cased, values trimmed with inner runs
 * of spaces collapsed, repeated headers joined with ',' in the order given, and
 * headers sorted by name. The signer passes every case of AWS's published test
 * suite (tests/unit/cnode/sigv4_test.c, data in tests/data/aws-sigv4/).
 *
 * Pure functions: no I/O, no clock (the date comes from the X-Amz-Date header),
 * callable from any thread. Return codes are 0 or a negative errno.
 */
#ifndef CNODE_SIGV4_H
#define CNODE_SIGV4_H

#include <stddef.h>
#include <time.h>

#define CN_SIGV4_DATE_LEN 17 /* "20150830T123600Z" with the NUL */

typedef struct cn_sigv4_header {
    const char *name;            /* any case */
    const char *value;           /* untrimmed is fine */
} cn_sigv4_header_t;

typedef struct cn_sigv4_req {
    const char *method;          /* "GET", "POST" */
    const char *path;            /* as sent, not percent-encoded; NULL or "" = "/" */
    const char *query;           /* after the '?', without it; NULL = none */
    const cn_sigv4_header_t *headers; /* every header to sign (Host, X-Amz-Date...) */
    size_t nheaders;
    const void *body;            /* the payload (NULL with body_len 0 = empty) */
    size_t body_len;             /* bytes */
} cn_sigv4_req_t;

typedef struct cn_sigv4_creds {
    const char *access_key;      /* AKID... */
    const char *secret_key;
    const char *region;          /* "eu-west-1" */
    const char *service;         /* "ecs" */
} cn_sigv4_creds_t;

/* The results, NUL-terminated, owned by the struct: free with cn_sigv4_sig_free. */
typedef struct cn_sigv4_sig {
    char *creq;                  /* canonical request */
    char *sts;                   /* string to sign */
    char *authz;                 /* value of the Authorization header */
} cn_sigv4_sig_t;

/* Sign `req` with `cr`. The request date is its X-Amz-Date header (basic ISO
 * 8601, "YYYYMMDDTHHMMSSZ"), the credential scope date its first 8 characters.
 * Fills *out (zeroed first). Returns 0; -EINVAL no or malformed X-Amz-Date, a
 * missing field, a header name that is empty or has a ':'; -ENOMEM (then *out
 * holds nothing to free, though freeing it is harmless). */
int cn_sigv4_sign(const cn_sigv4_req_t *req, const cn_sigv4_creds_t *cr, cn_sigv4_sig_t *out);

/* Free what cn_sigv4_sign put in *s and zero it. NULL and a zeroed struct are fine. */
void cn_sigv4_sig_free(cn_sigv4_sig_t *s);

/* Format `t` (UTC) as an X-Amz-Date value into out. */
void cn_sigv4_date(time_t t, char out[CN_SIGV4_DATE_LEN]);

/* Lower-case hex SHA-256 of data into out (65 bytes with the NUL). 0 or -ENOMEM. */
int cn_sigv4_sha256_hex(const void *data, size_t len, char out[65]);

#endif /* CNODE_SIGV4_H */
