/* dist_tls.c - distribution connections over TLS (optional, off by default).
 *
 * With ONEBLOG_DIST_TLS=1 every distribution connection, dialled or accepted, is
 * TLS from its first byte, as with erl's `-proto_dist inet_tls`: TCP connect, TLS
 * handshake, then the usual cookie handshake and frames inside TLS. EPMD stays
 * plain. Both sides present a certificate and both verify the other's against
 * the CA file (mutual authentication); a peer whose certificate does not verify
 * is refused before any distribution byte is read. TLS 1.2 at least; TLS 1.3 is
 * what two of our nodes (and OTP 25) agree on.
 *
 * One SSL_CTX per node holds the certificate, key and CA. A reload (SIGHUP,
 * cn_dist_reload_tls) builds a new context from the same files and swaps it in
 * only if everything loads and our certificate verifies against the CA; each
 * connection's SSL keeps a reference to the context it was made with, so
 * established connections are not touched.
 *
 * The connection's socket stays non-blocking and OpenSSL talks to it through a
 * small BIO of our own (send with MSG_NOSIGNAL, so a vanished peer is EPIPE, not
 * SIGPIPE); SSL_ERROR_WANT_READ / WANT_WRITE become -EAGAIN with io->want set,
 * and the caller parks in cn_wait_fd (cn__io_wait). Reader and writer processes
 * share one SSL: the scheduler is one thread and every SSL call returns without
 * parking, so calls never overlap. Writes are staged in a buffer of their own,
 * so a write that must be retried is retried with the same bytes, as OpenSSL
 * requires, whatever the caller's queue looks like by then.
 */
#include "dist_int.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#define WBUF_CAP (64u << 10) /* plaintext bytes per SSL_write: four records */

struct cn_dist_tls {
    SSL_CTX *ctx;            /* for new connections; each SSL holds its own ref */
    char *cert, *key, *ca;   /* paths, for reloads (owned) */
};

struct cn_tls_conn {
    SSL *ssl;
    int fd;                  /* the connection's socket (borrowed) */
    bool short_read;         /* the last recv returned less than asked */
    char *wbuf;              /* staged plaintext (WBUF_CAP bytes), or NULL */
    size_t wlen;             /* bytes staged and not yet accepted by SSL_write */
    char refused[256];       /* subject of a peer certificate that failed to verify */
};

/* ---------------------------------------------------------------------------------
 * The socket BIO: OpenSSL's own would write() (SIGPIPE on a closed peer).
 * ------------------------------------------------------------------------------ */

static int bio_write(BIO *b, const char *buf, int len)
{
    int fd = ((cn_tls_conn_t *)BIO_get_data(b))->fd;
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t w = send(fd, buf, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0)
            return (int)w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            BIO_set_retry_write(b);
        return -1;
    }
}

static int bio_read(BIO *b, char *buf, int len)
{
    cn_tls_conn_t *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    for (;;) {
        ssize_t r = recv(tc->fd, buf, (size_t)len, MSG_DONTWAIT);
        if (r >= 0) {
            tc->short_read = r < len;
            return (int)r;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            BIO_set_retry_read(b);
        return -1;
    }
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b, (void)num, (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cnode dist");
    if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
        BIO_meth_set_ctrl(m, bio_ctrl))
        bio_method = m;
    else
        BIO_meth_free(m);
}

/* ---------------------------------------------------------------------------------
 * Contexts: load, check, reload
 * ------------------------------------------------------------------------------ */

/* The reason of the first queued OpenSSL error (the queue is emptied). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_get_error();
    ERR_clear_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : "unknown error";
}

static int readable(const char *what, const char *path, char *err, size_t errlen)
{
    if (access(path, R_OK) == 0)
        return 0;
    int e = errno;
    snprintf(err, errlen, "TLS %s %s: %s", what, path, strerror(e));
    return e == ENOENT ? -ENOENT : e == EACCES ? -EACCES : -EINVAL;
}

/* Our certificate must verify against the CA we hold peers to: a node whose own
 * certificate would be refused by its peers is misconfigured. */
static int check_own_cert(SSL_CTX *ctx, const char *cert, const char *ca, char *err,
                          size_t errlen)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    if (vc == NULL || x == NULL ||
        !X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(ctx), x, chain)) {
        X509_STORE_CTX_free(vc);
        snprintf(err, errlen, "TLS: cannot check certificate %s: %s", cert, ssl_reason());
        return -ENOMEM;
    }
    int ok = X509_verify_cert(vc);
    int v = X509_STORE_CTX_get_error(vc);
    X509_STORE_CTX_free(vc);
    ERR_clear_error();
    if (ok == 1)
        return 0;
    snprintf(err, errlen, "TLS certificate %s does not verify against the CA %s: %s", cert, ca,
             X509_verify_cert_error_string(v));
    return -EINVAL;
}

/* OpenSSL's verdict stands; we only note whose certificate failed, for the log
 * line (a refused certificate is not kept as the session's peer). */
static int on_verify(int ok, X509_STORE_CTX *vc)
{
    if (ok)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(vc, SSL_get_ex_data_X509_STORE_CTX_idx());
    cn_tls_conn_t *tc = ssl ? SSL_get_app_data(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(vc);
    if (tc && leaf && tc->refused[0] == '\0')
        X509_NAME_oneline(X509_get_subject_name(leaf), tc->refused, sizeof(tc->refused));
    return ok;
}

static int ctx_build(const cn_dist_tls_t *t, SSL_CTX **out, char *err, size_t errlen)
{
    int rc;
    if ((rc = readable("certificate", t->cert, err, errlen)) < 0 ||
        (rc = readable("key", t->key, err, errlen)) < 0 ||
        (rc = readable("CA", t->ca, err, errlen)) < 0)
        return rc;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "TLS: %s", ssl_reason());
        return -ENOMEM;
    }
    rc = -EINVAL;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Connections live long: no resumption (tickets, cache), no renegotiation
     * (a TLS 1.2 write would then have to read, from the reader's socket). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    /* Read whole socket buffers, not a record header then its body: the reader
     * calls SSL_read until WANT_READ before it waits, so nothing is stranded. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert) != 1) {
        snprintf(err, errlen, "TLS certificate %s: %s", t->cert, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH)
            snprintf(err, errlen, "TLS key %s does not match certificate %s", t->key, t->cert);
        else
            snprintf(err, errlen, "TLS key %s: %s", t->key, ssl_reason());
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "TLS key %s does not match certificate %s: %s", t->key, t->cert,
                 ssl_reason());
        goto fail;
    }
    if (SSL_CTX_load_verify_locations(ctx, t->ca, NULL) != 1) {
        snprintf(err, errlen, "TLS CA %s: %s", t->ca, ssl_reason());
        goto fail;
    }
    /* Tell clients which CAs we accept (erl picks its certificate by it). */
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(t->ca);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, on_verify);
    if ((rc = check_own_cert(ctx, t->cert, t->ca, err, errlen)) < 0)
        goto fail;
    *out = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

void cn__tls_free(cn_dist_tls_t *t)
{
    if (t == NULL)
        return;
    SSL_CTX_free(t->ctx);
    free(t->cert);
    free(t->key);
    free(t->ca);
    cn__free(t);
}

int cn__tls_new(const char *cert, const char *key, const char *ca, cn_dist_tls_t **out,
                char *err, size_t errlen)
{
    err[0] = '\0';
    if (cert == NULL || key == NULL || ca == NULL || !*cert || !*key || !*ca) {
        snprintf(err, errlen, "TLS needs a certificate, a key and a CA file "
                              "(ONEBLOG_DIST_TLS_CERT, ONEBLOG_DIST_TLS_KEY, "
                              "ONEBLOG_DIST_TLS_CA)");
        return -EINVAL;
    }
    pthread_once(&bio_once, bio_method_init);
    if (bio_method == NULL) {
        snprintf(err, errlen, "TLS: cannot create the socket BIO");
        return -ENOMEM;
    }
    cn_dist_tls_t *t = cn__calloc(1, sizeof(*t));
    if (t == NULL || (t->cert = strdup(cert)) == NULL || (t->key = strdup(key)) == NULL ||
        (t->ca = strdup(ca)) == NULL) {
        cn__tls_free(t);
        snprintf(err, errlen, "TLS: out of memory");
        return -ENOMEM;
    }
    int rc = ctx_build(t, &t->ctx, err, errlen);
    if (rc < 0) {
        cn__tls_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int cn__tls_reload(cn_dist_tls_t *t, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    err[0] = '\0';
    int rc = ctx_build(t, &ctx, err, errlen);
    if (rc < 0)
        return rc;
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    return 0;
}

void cn__tls_describe(const cn_dist_tls_t *t, char *buf, size_t len)
{
    X509 *x = SSL_CTX_get0_certificate(t->ctx);
    char subject[256] = "?", until[32] = "?";
    struct tm tm;
    if (x) {
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
        if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
            strftime(until, sizeof(until), "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    snprintf(buf, len, "certificate %s (%s, valid until %s), CA %s", t->cert, subject, until,
             t->ca);
}

/* ---------------------------------------------------------------------------------
 * Errors of a connection
 * ------------------------------------------------------------------------------ */

static bool cert_alert(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return true;
    default:
        return false;
    }
}

/* Map the outcome r of an SSL call on io: -EAGAIN with io->want, 0 for the end
 * of the stream, or a negative errno with io->err saying why. */
static int ssl_fail(cn_dist_io_t *io, int r)
{
    int saved = errno;
    SSL *ssl = io->tls->ssl;
    int e = SSL_get_error(ssl, r);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        io->want = CN_READABLE;
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        io->want = CN_WRITABLE;
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved == 0 || saved == ECONNRESET)
            return 0; /* closed without close_notify */
        snprintf(io->err, sizeof(io->err), "%s", strerror(saved));
        return -saved;
    default:
        break;
    }
    unsigned long err = ERR_peek_error();
    int reason = ERR_GET_REASON(err);
    const char *text = ssl_reason();
    if (reason == SSL_R_UNEXPECTED_EOF_WHILE_READING)
        return 0;
    if (reason == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        long v = SSL_get_verify_result(ssl);
        snprintf(io->err, sizeof(io->err), "peer certificate refused: %s (subject %s)",
                 v != X509_V_OK ? X509_verify_cert_error_string(v) : text,
                 io->tls->refused[0] ? io->tls->refused : "?");
        return -EACCES;
    }
    if (reason == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        snprintf(io->err, sizeof(io->err), "peer sent no certificate (it may have none issued by our CA)");
        return -EACCES;
    }
    if (reason >= SSL_AD_REASON_OFFSET) {
        int alert = reason - SSL_AD_REASON_OFFSET;
        snprintf(io->err, sizeof(io->err), "%s%s", cert_alert(alert) ?
                 "the peer refused our certificate: " : "TLS alert from the peer: ", text);
        return cert_alert(alert) ? -EACCES : -EPROTO;
    }
    if (reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
        reason == SSL_R_HTTP_REQUEST) {
        snprintf(io->err, sizeof(io->err), "not TLS (%s): is TLS on at both ends?", text);
        return -EPROTO;
    }
    snprintf(io->err, sizeof(io->err), "TLS: %s", text);
    return -EPROTO;
}

/* ---------------------------------------------------------------------------------
 * The TLS transport
 * ------------------------------------------------------------------------------ */

static ssize_t tls_read(cn_dist_io_t *io, void *buf, size_t n)
{
    cn_tls_conn_t *tc = io->tls;
    ERR_clear_error();
    tc->short_read = false;
    int r = SSL_read(tc->ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    if (r <= 0)
        return ssl_fail(io, r);
    /* Drained when OpenSSL's last recv (read-ahead asks for a whole buffer)
     * came back short and it holds nothing more, processed or not: then the
     * next SSL_read would only recv EAGAIN, and the reader may wait at once,
     * as it does after a short plain read. */
    io->drained = tc->short_read && !SSL_has_pending(tc->ssl);
    return r;
}

static ssize_t tls_writev(cn_dist_io_t *io, const struct iovec *iov, int iovcnt)
{
    cn_tls_conn_t *tc = io->tls;
    if (tc->wlen == 0) {
        /* Stage the next bytes. Until SSL_write takes them the caller consumes
         * nothing, so a retry's iovecs start with these same bytes. */
        if (tc->wbuf == NULL && (tc->wbuf = cn__malloc(WBUF_CAP)) == NULL)
            return -ENOMEM;
        for (int i = 0; i < iovcnt && tc->wlen < WBUF_CAP; i++) {
            size_t l = iov[i].iov_len;
            if (l > WBUF_CAP - tc->wlen)
                l = WBUF_CAP - tc->wlen;
            memcpy(tc->wbuf + tc->wlen, iov[i].iov_base, l);
            tc->wlen += l;
        }
        if (tc->wlen == 0)
            return 0;
    }
    ERR_clear_error();
    int r = SSL_write(tc->ssl, tc->wbuf, (int)tc->wlen);
    if (r > 0) {
        size_t done = tc->wlen; /* without partial writes, all of it */
        tc->wlen = 0;
        return (ssize_t)done;
    }
    int rc = ssl_fail(io, r);
    return rc == 0 ? -EPIPE : rc;
}

static const cn_dist_tr_t tr_tls = {
    .read = tls_read,
    .writev = tls_writev,
};

int cn__tls_start(cn_dist_tls_t *t, cn_dist_io_t *io, bool client, uint64_t deadline)
{
    io->err[0] = '\0';
    cn_tls_conn_t *tc = cn__calloc(1, sizeof(*tc));
    if (tc == NULL)
        return -ENOMEM;
    ERR_clear_error();
    SSL *ssl = SSL_new(t->ctx);
    BIO *b = ssl ? BIO_new(bio_method) : NULL;
    if (b == NULL) {
        SSL_free(ssl);
        cn__free(tc);
        ERR_clear_error();
        snprintf(io->err, sizeof(io->err), "TLS: out of memory");
        return -ENOMEM;
    }
    tc->fd = io->fd;
    BIO_set_data(b, tc);
    BIO_set_init(b, 1);
    SSL_set_bio(ssl, b, b);
    SSL_set_app_data(ssl, tc);
    if (client)
        SSL_set_connect_state(ssl);
    else
        SSL_set_accept_state(ssl);
    tc->ssl = ssl;
    io->tls = tc;
    for (;;) {
        ERR_clear_error();
        int r = SSL_do_handshake(ssl);
        if (r == 1)
            break;
        int rc = ssl_fail(io, r);
        if (rc == 0) {
            snprintf(io->err, sizeof(io->err),
                     "connection closed during the TLS handshake (the peer refused us, "
                     "or does not speak TLS)");
            return -ECONNRESET;
        }
        if (rc != -EAGAIN)
            return rc;
        uint64_t now = cn_now_ms();
        rc = now >= deadline ? -ETIMEDOUT : cn__io_wait(io, (int64_t)(deadline - now));
        if (rc < 0) {
            snprintf(io->err, sizeof(io->err), "TLS handshake: %s",
                     rc == -ETIMEDOUT ? "timed out" : strerror(-rc));
            return rc;
        }
    }
    io->tr = &tr_tls;
    return 0;
}

void cn__tls_conn_text(const cn_dist_io_t *io, char *buf, size_t len)
{
    SSL *ssl = io->tls ? io->tls->ssl : NULL;
    if (ssl == NULL) {
        snprintf(buf, len, "plain");
        return;
    }
    X509 *x = SSL_get0_peer_certificate(ssl);
    char subject[256] = "?";
    if (x)
        X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
    snprintf(buf, len, "%s %s, peer certificate %s", SSL_get_version(ssl),
             SSL_get_cipher_name(ssl), subject);
}

void cn__tls_io_free(cn_dist_io_t *io)
{
    cn_tls_conn_t *tc = io->tls;
    if (tc == NULL)
        return;
    SSL_free(tc->ssl); /* and its BIO; the fd is the connection's */
    cn__free(tc->wbuf);
    cn__free(tc);
    io->tls = NULL;
    io->tr = &cn__tr_plain;
}
