/* poll.c - waiting on file descriptors without blocking the scheduler.
 *
 * Each fd is added to the node's epoll set once, edge-triggered, the first time a
 * process waits on it. Readiness seen while nobody waits is remembered in the fd's
 * record, so a later wait returns at once; a wait that finds nothing parks the
 * process until the next edge. Because registration outlives a single wait, fds
 * must be closed with cn_fd_close(): a plain close() followed by a new fd with the
 * same number would leave a stale record.
 */
#include "cnode_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

int cn__poll_init(cn_node_t *n)
{
    n->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (n->epfd < 0)
        return -errno;
    return 0;
}

void cn__poll_free(cn_node_t *n)
{
    if (n->epfd >= 0)
        close(n->epfd);
    n->epfd = -1;
    cn__free(n->fds);
    n->fds = NULL;
    n->nfds_cap = 0;
}

static int fdrec_reserve(cn_node_t *n, int fd)
{
    if (fd < n->nfds_cap)
        return 0;
    int cap = n->nfds_cap ? n->nfds_cap : 64;
    while (cap <= fd)
        cap *= 2;
    cn_fdrec_t *f = cn__realloc(n->fds, (size_t)cap * sizeof(*f));
    if (f == NULL)
        return -ENOMEM;
    memset(f + n->nfds_cap, 0, (size_t)(cap - n->nfds_cap) * sizeof(*f));
    n->fds = f;
    n->nfds_cap = cap;
    return 0;
}

int cn__epoll_watch(int epfd, int fd, bool in, bool out)
{
    if (!in && !out) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); /* EBADF when the library closed it first */
        return 0;
    }
    struct epoll_event ev = { .data.fd = fd };
    ev.events = (in ? EPOLLIN : 0u) | (out ? EPOLLOUT : 0u);
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    return -errno;
}

int cn_wait_fd(int fd, int events, int64_t timeout_ms)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    if ((events & (CN_READABLE | CN_WRITABLE)) == 0 || (events & ~(CN_READABLE | CN_WRITABLE)))
        return -EINVAL;
    /* A registered fd is open (cn_fd_close() forgets it before closing), so only a
     * new one pays for the check: a system call per wait is a fifth of the system
     * calls of an HTTP keep-alive request. */
    if (fd < 0 || ((fd >= n->nfds_cap || !n->fds[fd].registered) && fcntl(fd, F_GETFD) < 0))
        return -EBADF;
    if (fdrec_reserve(n, fd) < 0)
        return -ENOMEM;
    cn_proc_t *p = n->current;
    cn_fdrec_t *r = &n->fds[fd];

    if (!r->registered) {
        struct epoll_event ev = { 0 };
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.u64 = (uint64_t)fd;
        if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
            return errno == ENOMEM || errno == ENOSPC ? -ENOMEM : -errno;
        r->registered = true;
        r->ready = 0;
    }
    int got = r->ready & events;
    if (got) {
        r->ready &= (uint8_t)~got;
        return got;
    }
    if ((events & CN_READABLE) && r->reader && r->reader != p)
        return -EBUSY;
    if ((events & CN_WRITABLE) && r->writer && r->writer != p)
        return -EBUSY;
    if (timeout_ms == 0)
        return -ETIMEDOUT;
    if (events & CN_READABLE)
        r->reader = p;
    if (events & CN_WRITABLE)
        r->writer = p;
    p->wait_fd = fd;
    p->fd_ready = 0;
    n->nwaiting_fd++;

    int why = cn__park(n, p, CN_P_WAIT_FD, timeout_ms < 0 ? -1 : timeout_ms);

    /* n->fds may have moved while we were parked: look the record up again. */
    cn__poll_forget_proc(n, p);
    if (why == CN_WAKE_BADF)
        return -EBADF;
    if (p->fd_ready)
        return p->fd_ready;
    return -ETIMEDOUT;
}

void cn__poll_forget_proc(cn_node_t *n, cn_proc_t *p)
{
    int fd = p->wait_fd;
    if (fd < 0)
        return;
    cn_fdrec_t *r = &n->fds[fd];
    if (r->reader == p)
        r->reader = NULL;
    if (r->writer == p)
        r->writer = NULL;
    p->wait_fd = -1;
    n->nwaiting_fd--;
}

int cn_fd_forget(int fd)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || fd < 0 || fd >= n->nfds_cap || !n->fds[fd].registered)
        return -ENOENT;
    cn_fdrec_t *r = &n->fds[fd];
    epoll_ctl(n->epfd, EPOLL_CTL_DEL, fd, NULL);
    cn_proc_t *waiters[2] = { r->reader, r->writer };
    for (int i = 0; i < 2; i++) {
        cn_proc_t *w = waiters[i];
        if (w && (i == 0 || w != waiters[0]))
            cn__make_runnable(n, w, CN_WAKE_BADF);
    }
    memset(r, 0, sizeof(*r));
    return 0;
}

int cn_fd_close(int fd)
{
    cn_fd_forget(fd);
    return close(fd) < 0 ? -errno : 0;
}

static void wake_fd(cn_node_t *n, int fd, uint32_t ev)
{
    if (fd >= n->nfds_cap)
        return;
    cn_fdrec_t *r = &n->fds[fd];
    uint8_t bits = 0;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        bits |= CN_READABLE;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        bits |= CN_WRITABLE;
    r->ready |= bits;
    if (r->reader && (r->ready & CN_READABLE)) {
        r->reader->fd_ready |= CN_READABLE;
        r->ready &= (uint8_t)~CN_READABLE;
        cn__make_runnable(n, r->reader, CN_WAKE_FD);
    }
    if (r->writer && (r->ready & CN_WRITABLE)) {
        r->writer->fd_ready |= CN_WRITABLE;
        r->ready &= (uint8_t)~CN_WRITABLE;
        cn__make_runnable(n, r->writer, CN_WAKE_FD);
    }
}

int cn__poll_wait(cn_node_t *n, int timeout_ms)
{
    struct epoll_event evs[256];
    int nev = epoll_wait(n->epfd, evs, 256, timeout_ms);
    if (nev < 0)
        return errno == EINTR ? 0 : -errno;
    n->now_ms = cn__clock_ms();
    int pool_fd = cn__pool_fd(n);
    for (int i = 0; i < nev; i++) {
        int fd = (int)evs[i].data.u64;
        if (fd == pool_fd)
            cn__pool_drain(n);
        else
            wake_fd(n, fd, evs[i].events);
    }
    return 0;
}
