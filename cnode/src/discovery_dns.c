/* discovery_dns.c - the `dns` strategy: A or SRV records of a name, polled with
 * c-ares against an explicit server.
 *
 *   a    ONEBLOG_CLUSTER_DNS_NAME resolves to one A record per node; each
 *        address gives "BASENAME@IP" (BASENAME: ONEBLOG_CLUSTER_BASENAME, default
 *        our own alive name), and the port comes from EPMD as usual.
 *   srv  the name has SRV records; each target is resolved to its A records with
 *        the same server (targets need not be resolvable by the system
 *        resolver), giving "BASENAME@IP", and the SRV port is taken as the
 *        node's distribution port (cn_dist_set_peer_port: no EPMD needed).
 *
 * ONEBLOG_CLUSTER_DNS_SERVER ("127.0.0.1:5353") replaces the servers of
 * /etc/resolv.conf. A name that does not exist or has no records gives an empty
 * list (every node leaves); a timeout or server failure keeps the previous list.
 *
 * c-ares runs inside the discovery process, on the scheduler, not in the blocking
 * pool: its sockets are put (by its socket-state callback) into a private epoll
 * set, whose single fd the process waits on with cn_wait_fd(), with c-ares's own
 * timeout as the wait's bound. After each wake every ready socket is handed to
 * ares_process_fd() until the set reports nothing, so the edge-triggered outer
 * wait cannot miss data left in a socket. Queries are small and few (one per
 * poll, plus one per SRV target), so no thread is worth it.
 */
#include "cluster_int.h"

#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <ares.h>

typedef struct dns {
    cn__cluster_t *c;
    ares_channel ch;
    int epfd;
    bool srv;
    char basename[256];
} dns_t;

typedef struct query {
    dns_t *s;
    cl_names_t *out;
    int *pending;      /* queries in flight (shared by the queries of one poll) */
    int status;        /* first hard failure (ARES_*), or ARES_SUCCESS */
    int port;          /* A queries of an SRV target: the target's port */
} query_t;

typedef struct srv_answer {
    int *pending;
    int status;
    unsigned char *buf; /* a copy of the raw answer (malloc) */
    int len;
} srv_answer_t;

static void on_sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    dns_t *s = data;
    cn__epoll_watch(s->epfd, fd, readable, writable); /* a failure: the query times out */
}

static void dns_free(void *state)
{
    dns_t *s = state;
    if (s == NULL)
        return;
    if (s->ch)
        ares_destroy(s->ch);
    if (s->epfd >= 0)
        cn_fd_close(s->epfd);
    cn__free(s);
}

static int dns_init(cn__cluster_t *c, void **state)
{
    *state = NULL;
    if (c->dns_name == NULL) {
        cn__cluster_log(c, CN_LOG_ERROR, "dns discovery: ONEBLOG_CLUSTER_DNS_NAME is not set");
        return -EINVAL;
    }
    bool srv = c->dns_type && strcasecmp(c->dns_type, "srv") == 0;
    if (c->dns_type && !srv && strcasecmp(c->dns_type, "a") != 0) {
        cn__cluster_log(c, CN_LOG_ERROR, "dns discovery: type '%s' is neither a nor srv",
                        c->dns_type);
        return -EINVAL;
    }
    int rc = ares_library_init(ARES_LIB_INIT_ALL);
    if (rc != ARES_SUCCESS)
        return -ENOMEM;
    dns_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->c = c;
    s->srv = srv;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        rc = -errno;
        cn__free(s);
        return rc;
    }
    if (c->basename) {
        snprintf(s->basename, sizeof(s->basename), "%s", c->basename);
    } else {
        char host[256];
        cn__cluster_self_parts(c, s->basename, sizeof(s->basename), host, sizeof(host));
    }
    struct ares_options o;
    memset(&o, 0, sizeof(o));
    o.sock_state_cb = on_sock_state;
    o.sock_state_cb_data = s;
    o.timeout = 1000; /* ms per try */
    o.tries = 2;
    rc = ares_init_options(&s->ch, &o, ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS |
                                            ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        cn__cluster_log(c, CN_LOG_ERROR, "dns discovery: c-ares: %s", ares_strerror(rc));
        s->ch = NULL;
        dns_free(s);
        return -ENOMEM;
    }
    if (c->dns_server && (rc = ares_set_servers_ports_csv(s->ch, c->dns_server)) != ARES_SUCCESS) {
        cn__cluster_log(c, CN_LOG_ERROR, "dns discovery: bad server '%s': %s", c->dns_server,
                        ares_strerror(rc));
        dns_free(s);
        return -EINVAL;
    }
    *state = s;
    return 0;
}

/* A "no such name / no records" answer is an empty list, not a failure. */
static bool hard_failure(int status)
{
    return status != ARES_SUCCESS && status != ARES_ENOTFOUND && status != ARES_ENODATA;
}

static void on_a(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    query_t *q = arg;
    (void)timeouts;
    (*q->pending)--;
    if (status != ARES_SUCCESS) {
        if (hard_failure(status) && q->status == ARES_SUCCESS)
            q->status = status;
        return;
    }
    struct ares_addrttl a[64];
    int n = 64;
    if ((status = ares_parse_a_reply(abuf, alen, NULL, a, &n)) != ARES_SUCCESS) {
        if (hard_failure(status) && q->status == ARES_SUCCESS)
            q->status = status;
        return;
    }
    for (int i = 0; i < n; i++) {
        char ip[INET_ADDRSTRLEN], name[CN_CLUSTER_NAME_MAX + INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a[i].ipaddr, ip, sizeof(ip));
        snprintf(name, sizeof(name), "%s@%s", q->s->basename, ip);
        if (strlen(name) < CN_CLUSTER_NAME_MAX && cn__names_add(q->out, name, q->port) < 0)
            q->status = ARES_ENOMEM;
    }
}

/* Drive c-ares until no query of q is pending. */
static void run(dns_t *s, int *pending)
{
    while (*pending > 0) {
        struct timeval tv, *tvp = ares_timeout(s->ch, NULL, &tv);
        int64_t ms = tvp ? (int64_t)tvp->tv_sec * 1000 + tvp->tv_usec / 1000 : 1000;
        if (ms < 1)
            ms = 1;
        int rc = cn_wait_fd(s->epfd, CN_READABLE, ms);
        if (rc < 0 && rc != -ETIMEDOUT) {
            ares_cancel(s->ch); /* callbacks run with ARES_ECANCELLED */
            return;
        }
        /* Hand every ready socket to c-ares, until none is ready. */
        for (;;) {
            struct epoll_event ev[16];
            int n = epoll_wait(s->epfd, ev, 16, 0);
            if (n <= 0)
                break;
            for (int i = 0; i < n; i++)
                ares_process_fd(s->ch,
                                ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP) ? ev[i].data.fd
                                                                               : ARES_SOCKET_BAD,
                                ev[i].events & EPOLLOUT ? ev[i].data.fd : ARES_SOCKET_BAD);
        }
        /* Timeouts (and retries) are processed by a call with no socket. */
        ares_process_fd(s->ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    }
}

/* The SRV callback keeps a copy of the raw answer for dns_poll to parse. */
static void on_srv(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    srv_answer_t *r = arg;
    (void)timeouts;
    (*r->pending)--;
    r->status = status;
    if (status == ARES_SUCCESS && (r->buf = malloc((size_t)alen)) != NULL) {
        memcpy(r->buf, abuf, (size_t)alen);
        r->len = alen;
    } else if (status == ARES_SUCCESS) {
        r->status = ARES_ENOMEM;
    }
}

/* SRV, then A of each target (their status merged into *status). */
static void poll_srv(dns_t *s, cl_names_t *out, int *status)
{
    int pending = 1;
    srv_answer_t r = { &pending, ARES_SUCCESS, NULL, 0 };
    ares_query(s->ch, s->c->dns_name, ns_c_in, ns_t_srv, on_srv, &r);
    run(s, &pending);
    struct ares_srv_reply *srv = NULL;
    int rc = r.status;
    if (rc == ARES_SUCCESS)
        rc = ares_parse_srv_reply(r.buf, r.len, &srv);
    free(r.buf);
    if (rc != ARES_SUCCESS) {
        *status = hard_failure(rc) ? rc : ARES_SUCCESS;
        return;
    }
    int n = 0;
    for (struct ares_srv_reply *p = srv; p; p = p->next)
        n++;
    query_t *tq = cn__calloc((size_t)n + 1, sizeof(*tq));
    if (tq == NULL) {
        *status = ARES_ENOMEM;
        ares_free_data(srv);
        return;
    }
    int k = 0;
    for (struct ares_srv_reply *p = srv; p; p = p->next, k++) {
        tq[k] = (query_t){ s, out, &pending, ARES_SUCCESS, p->port };
        pending++;
        ares_query(s->ch, p->host, ns_c_in, ns_t_a, on_a, &tq[k]);
    }
    run(s, &pending);
    for (int i = 0; i < k; i++)
        if (tq[i].status != ARES_SUCCESS && *status == ARES_SUCCESS)
            *status = tq[i].status;
    cn__free(tq);
    ares_free_data(srv);
}

static int dns_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    dns_t *s = state;
    int pending = 1;
    query_t q = { s, out, &pending, ARES_SUCCESS, 0 };
    if (s->srv) {
        poll_srv(s, out, &q.status);
    } else {
        ares_query(s->ch, c->dns_name, ns_c_in, ns_t_a, on_a, &q);
        run(s, &pending);
    }
    if (q.status != ARES_SUCCESS) {
        cn__cluster_log(c, CN_LOG_DEBUG, "dns discovery: %s: %s", c->dns_name,
                        ares_strerror(q.status));
        return q.status == ARES_ENOMEM ? -ENOMEM : -EAGAIN;
    }
    return 0;
}

const cn__discovery_t cn__discovery_dns = {
    .name = "dns",
    .init = dns_init,
    .poll = dns_poll,
    .free = dns_free,
};
