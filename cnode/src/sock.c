/* sock.c - TCP sockets for processes: listen, connect, read and write whole
 * buffers without blocking the scheduler.
 *
 * Every socket is non-blocking; when a call would block, the process parks in
 * cn_wait_fd() until the socket is ready or its deadline (absolute, on the node
 * clock) passes. IPv4 only for now: node names are alive@a.b.c.d or a host name
 * that resolves to IPv4. Writes use MSG_NOSIGNAL, so a peer that went away gives
 * EPIPE instead of killing the node with SIGPIPE.
 *
 * Also the plain transport of distribution connections (cn__tr_plain: read and
 * sendmsg behind the transport table; dist_tls.c is the other one) and the
 * helpers that read, write and wait through any transport.
 */
#include "dist_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int64_t left_ms(uint64_t deadline)
{
    if (deadline == 0)
        return CN_INFINITY;
    uint64_t now = cn_now_ms();
    return now >= deadline ? 0 : (int64_t)(deadline - now);
}

static int wait_ready(int fd, int ev, uint64_t deadline)
{
    int64_t left = left_ms(deadline);
    if (left == 0)
        return -ETIMEDOUT;
    int rc = cn_wait_fd(fd, ev, left);
    return rc < 0 ? rc : 0;
}

int cn__sock_listen(const char *addr, int port, int backlog, int *out_fd, int *out_port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
        return -EINVAL;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    socklen_t sl = sizeof(sa);
    getsockname(fd, (struct sockaddr *)&sa, &sl);
    *out_fd = fd;
    if (out_port)
        *out_port = ntohs(sa.sin_port);
    return 0;
}

int cn__sock_connect(const struct sockaddr_in *sa, uint64_t deadline, int *out_fd)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) < 0) {
        if (errno != EINPROGRESS) {
            int e = errno;
            close(fd);
            return -e;
        }
        int rc = wait_ready(fd, CN_WRITABLE, deadline);
        int err = 0;
        socklen_t el = sizeof(err);
        if (rc == 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
            err = errno;
        if (rc < 0 || err) {
            cn_fd_close(fd);
            return rc < 0 ? rc : -err;
        }
    }
    *out_fd = fd;
    return 0;
}

int cn__sock_read_full(int fd, void *buf, size_t n, uint64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = wait_ready(fd, CN_READABLE, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cn__sock_write_full(int fd, const void *buf, size_t n, uint64_t deadline)
{
    size_t put = 0;
    while (put < n) {
        ssize_t w = send(fd, (const char *)buf + put, n - put, MSG_NOSIGNAL);
        if (w >= 0) {
            put += (size_t)w;
            continue;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = wait_ready(fd, CN_WRITABLE, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

typedef struct resolve_job {
    const char *host;
    struct sockaddr_in *out;
    int rc;
} resolve_job_t;

static void resolve_blocking(void *arg)
{
    resolve_job_t *j = arg;
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    j->rc = -EHOSTUNREACH;
    if (getaddrinfo(j->host, NULL, &hints, &res) == 0 && res) {
        j->out->sin_addr = ((struct sockaddr_in *)res->ai_addr)->sin_addr;
        j->rc = 0;
    }
    if (res)
        freeaddrinfo(res);
}

int cn__sock_resolve(const char *host, struct sockaddr_in *out)
{
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    if (inet_pton(AF_INET, host, &out->sin_addr) == 1)
        return 0;
    resolve_job_t j = { host, out, -EHOSTUNREACH };
    cn_node_t *n = cn_node_self();
    if (n && cn__cur_node->current) {
        /* getaddrinfo blocks: run it on a pool thread (j stays on our stack,
         * which cn_blocking pins). */
        if (cn_blocking(resolve_blocking, &j) < 0)
            return -EHOSTUNREACH;
    } else {
        resolve_blocking(&j);
    }
    return j.rc;
}

void cn__sock_peer_text(int fd, char *buf, size_t len)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    char ip[INET_ADDRSTRLEN];
    if (getpeername(fd, (struct sockaddr *)&sa, &sl) < 0 || sa.sin_family != AF_INET ||
        inet_ntop(AF_INET, &sa.sin_addr, ip, sizeof(ip)) == NULL) {
        snprintf(buf, len, "?");
        return;
    }
    snprintf(buf, len, "%s:%d", ip, ntohs(sa.sin_port));
}

/* ---------------------------------------------------------------------------------
 * The plain transport and the helpers every transport shares
 * ------------------------------------------------------------------------------ */

static ssize_t plain_read(cn_dist_io_t *io, void *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(io->fd, buf, n);
        if (r >= 0) {
            /* A stream socket returns less than asked only when nothing more
             * is queued. */
            io->drained = (size_t)r < n;
            return r;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            io->want = CN_READABLE;
            return -EAGAIN;
        }
        return -errno;
    }
}

static ssize_t plain_writev(cn_dist_io_t *io, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    for (;;) {
        ssize_t w = sendmsg(io->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w >= 0)
            return w;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            io->want = CN_WRITABLE;
            return -EAGAIN;
        }
        return -errno;
    }
}

const cn_dist_tr_t cn__tr_plain = {
    .read = plain_read,
    .writev = plain_writev,
};

void cn__io_plain(cn_dist_io_t *io, int fd)
{
    memset(io, 0, sizeof(*io));
    io->tr = &cn__tr_plain;
    io->fd = fd;
}

int cn__io_wait(cn_dist_io_t *io, int64_t timeout_ms)
{
    int rc = cn_wait_fd(io->fd, io->want, timeout_ms);
    if (rc == -EBUSY) {
        /* The other process of the connection waits for this event already
         * (TLS only: a write that must read first, or a read that must write).
         * It will consume the event; poll again shortly. */
        cn_sleep(1);
        return 0;
    }
    return rc < 0 ? rc : 0;
}

int cn__io_read_full(cn_dist_io_t *io, void *buf, size_t n, uint64_t deadline)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = io->tr->read(io, (char *)buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            return -ECONNRESET;
        if (r != -EAGAIN)
            return (int)r;
        int64_t left = left_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        int rc = cn__io_wait(io, left);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int cn__io_write_full(cn_dist_io_t *io, const void *buf, size_t n, uint64_t deadline)
{
    size_t put = 0;
    while (put < n) {
        struct iovec iov = { (char *)buf + put, n - put };
        ssize_t w = io->tr->writev(io, &iov, 1);
        if (w > 0) {
            put += (size_t)w;
            continue;
        }
        if (w != -EAGAIN)
            return w == 0 ? -EPIPE : (int)w;
        int64_t left = left_ms(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        int rc = cn__io_wait(io, left);
        if (rc < 0)
            return rc;
    }
    return 0;
}
