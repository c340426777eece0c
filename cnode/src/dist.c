/* dist.c - the distribution layer of a node: start-up, peers and the core hooks.
 *
 * Reading order: options and start-up (cn_dist_start installs the hook table that
 * the core calls for remote pids), the peer table (one record per remote node,
 * holding its outgoing queue and the links and monitors that cross to it), the
 * hooks themselves (send, link, monitor, exit signals), what happens when a peer
 * comes up or goes down, and the public helpers (connect, node monitors, cookie
 * reload with SIGHUP). Connections themselves live in dist_conn.c.
 *
 * A peer record outlives its connections: messages sent while a connection is
 * being set up wait in its queue, and whichever connection wins the handshake
 * (ours or theirs, on a simultaneous connect) drains it. When the connection is
 * lost, every link to the node gives `noconnection`, every monitor a DOWN with
 * `noconnection`, and node watchers a {nodedown, Node}.
 */
#include "dist_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const cn_dist_ops_t dist_ops;

/* ---------------------------------------------------------------------------------
 * Options
 * ------------------------------------------------------------------------------ */

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return -EINVAL;
    *out = (int)v;
    return 0;
}

int cn_dist_opts_from_env(cn_dist_opts_t *o, int argc, char **argv)
{
    memset(o, 0, sizeof(*o));
    o->sighup_reload = true;
    const char *v;
    int rc = 0;
    if ((v = getenv("ONEBLOG_NODE")) && *v)
        o->node_name = v;
    if ((v = getenv("ONEBLOG_DIST_PORT")) && *v)
        rc |= parse_int(v, 1, 65535, &o->listen_port);
    if ((v = getenv("ONEBLOG_DIST_PEER_PORT")) && *v)
        rc |= parse_int(v, 1, 65535, &o->peer_port);
    if ((v = getenv("ONEBLOG_EPMD_LESS")) && *v && strcmp(v, "0") != 0)
        o->epmd_less = true;
    if ((v = getenv("ONEBLOG_NET_TICKTIME")) && *v)
        rc |= parse_int(v, 1, 3600, &o->net_ticktime_s);
    if ((v = getenv("ONEBLOG_DIST_TLS")) && *v && strcmp(v, "0") != 0)
        o->tls = true;
    o->tls_cert = getenv("ONEBLOG_DIST_TLS_CERT");
    o->tls_key = getenv("ONEBLOG_DIST_TLS_KEY");
    o->tls_ca = getenv("ONEBLOG_DIST_TLS_CA");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--epmd-less") == 0) {
            o->epmd_less = true;
            continue;
        }
        if (next == NULL)
            continue;
        if (strcmp(a, "--name") == 0)
            o->node_name = next;
        else if (strcmp(a, "--cookie") == 0)
            o->cookie = next;
        else if (strcmp(a, "--cookie-file") == 0)
            o->cookie_file = next;
        else if (strcmp(a, "--dist-port") == 0)
            rc |= parse_int(next, 1, 65535, &o->listen_port);
        else if (strcmp(a, "--epmd-port") == 0)
            rc |= parse_int(next, 1, 65535, &o->epmd_port);
        else if (strcmp(a, "--net-ticktime") == 0)
            rc |= parse_int(next, 1, 3600, &o->net_ticktime_s);
        else
            continue;
        i++;
    }
    return rc ? -EINVAL : 0;
}

/* ---------------------------------------------------------------------------------
 * Logging
 * ------------------------------------------------------------------------------ */

static void default_log(void *ud, int level, const char *msg)
{
    static const char *names[] = { "error", "warn", "info", "debug" };
    const char *node = ud;
    struct timespec ts;
    struct tm tm;
    char when[32];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ %s dist %s: %s\n", when, ts.tv_nsec / 1000000,
            level >= 0 && level <= 3 ? names[level] : "?", node, msg);
}

void cn__dist_log(cn_dist_t *d, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (d->log)
        d->log(d->log_ud, level, msg);
    else if (level < CN_LOG_DEBUG || getenv("ONEBLOG_DIST_DEBUG"))
        default_log(d->node->name, level, msg);
}

cn_dist_t *cn__dist_of(cn_node_t *n)
{
    return n && n->dist_ops == &dist_ops ? n->dist : NULL;
}

/* ---------------------------------------------------------------------------------
 * SIGHUP: a self-pipe per node, written by the handler, read by a process.
 * The handler is process-wide, so the write ends live in a small static table.
 * ------------------------------------------------------------------------------ */

#define HUP_MAX 16
static volatile sig_atomic_t hup_fds[HUP_MAX] = { -1, -1, -1, -1, -1, -1, -1, -1,
                                                  -1, -1, -1, -1, -1, -1, -1, -1 };

static void on_sighup(int sig)
{
    (void)sig;
    int saved = errno;
    for (int i = 0; i < HUP_MAX; i++) {
        int fd = hup_fds[i];
        if (fd >= 0) {
            ssize_t r = write(fd, "h", 1);
            (void)r;
        }
    }
    errno = saved;
}

static void hup_main(void *arg)
{
    cn_dist_t *d = arg;
    for (;;) {
        char buf[64];
        ssize_t r = read(d->hup_rd, buf, sizeof(buf));
        if (r > 0) {
            while (read(d->hup_rd, buf, sizeof(buf)) > 0)
                ;
            int rc = cn_dist_reload_cookies(d->node);
            if (rc == 0)
                cn__dist_log(d, CN_LOG_INFO, "SIGHUP: reloaded %d cookie(s)", d->cookies.n);
            if (d->tls)
                cn_dist_reload_tls(d->node); /* logs either way */
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && errno == EAGAIN && cn_wait_fd(d->hup_rd, CN_READABLE, CN_INFINITY) > 0)
            continue;
        return;
    }
}

static int hup_install(cn_dist_t *d)
{
    int fds[2];
    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0)
        return -errno;
    int slot = -1;
    for (int i = 0; i < HUP_MAX && slot < 0; i++)
        if (hup_fds[i] < 0)
            slot = i;
    if (slot < 0) {
        close(fds[0]);
        close(fds[1]);
        return -ENOSPC;
    }
    d->hup_rd = fds[0];
    d->hup_wr = fds[1];
    hup_fds[slot] = fds[1];
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sighup;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGHUP, &sa, NULL);
    return cn_spawn(d->node, hup_main, d, NULL, NULL);
}

static void hup_remove(cn_dist_t *d)
{
    if (d->hup_wr < 0)
        return;
    for (int i = 0; i < HUP_MAX; i++)
        if (hup_fds[i] == d->hup_wr)
            hup_fds[i] = -1;
    close(d->hup_rd);
    close(d->hup_wr);
    d->hup_rd = d->hup_wr = -1;
}

/* ---------------------------------------------------------------------------------
 * Start
 * ------------------------------------------------------------------------------ */

static void dist_free(cn_dist_t *d);

/* A private key others may read is worth a warning (not a refusal: secrets
 * mounted by orchestrators are often 0644 inside a private volume). */
static void warn_key_mode(cn_dist_t *d, const char *key)
{
    struct stat st;
    if (stat(key, &st) == 0 && (st.st_mode & 077))
        cn__dist_log(d, CN_LOG_WARN, "TLS key %s is accessible by group or others (mode %03o)",
                     key, (unsigned)(st.st_mode & 0777));
}

static int tls_setup(cn_dist_t *d, const cn_dist_opts_t *o)
{
    char err[600], what[600];
    int rc = cn__tls_new(o->tls_cert, o->tls_key, o->tls_ca, &d->tls, err, sizeof(err));
    if (rc < 0) {
        cn__dist_log(d, CN_LOG_ERROR, "%s", err);
        return rc;
    }
    warn_key_mode(d, o->tls_key);
    cn__tls_describe(d->tls, what, sizeof(what));
    cn__dist_log(d, CN_LOG_INFO, "TLS on: %s", what);
    return 0;
}

int cn_dist_start(cn_node_t *node, const cn_dist_opts_t *opts)
{
    cn_dist_opts_t o = { 0 };
    if (opts)
        o = *opts;
    if (node == NULL)
        return -EINVAL;
    if (node->dist_ops)
        return -EALREADY;
    cn_node_t *prev = cn__cur_node;
    if (prev != NULL && prev != node)
        return -EINVAL;
    cn__cur_node = node;

    int rc = -ENOMEM;
    char err[300];
    cn_dist_t *d = cn__calloc(1, sizeof(*d));
    if (d == NULL)
        goto out;
    d->node = node;
    d->listen_fd = d->epmd_srv_fd = d->hup_rd = d->hup_wr = -1;
    d->log = o.log;
    d->log_ud = o.log_ud;
    const char *at = strchr(node->name, '@');
    snprintf(d->alive, sizeof(d->alive), "%.*s", (int)(at - node->name), node->name);
    snprintf(d->host, sizeof(d->host), "%s", at + 1);
    struct in_addr ia;
    if (o.listen_addr)
        snprintf(d->listen_addr, sizeof(d->listen_addr), "%s", o.listen_addr);
    else if (inet_pton(AF_INET, d->host, &ia) == 1)
        snprintf(d->listen_addr, sizeof(d->listen_addr), "%s", d->host);
    else
        snprintf(d->listen_addr, sizeof(d->listen_addr), "0.0.0.0");

    const char *ep = getenv("ERL_EPMD_PORT");
    d->epmd_port = o.epmd_port;
    if (d->epmd_port == 0 && !(ep && parse_int(ep, 1, 65535, &d->epmd_port) == 0))
        d->epmd_port = 4369;
    d->epmd_less = o.epmd_less;
    d->builtin_epmd = !o.no_builtin_epmd;
    d->epmd_retry_ms = o.epmd_retry_ms > 0 ? o.epmd_retry_ms : 1000;
    d->tick_ms = (int64_t)(o.net_ticktime_s > 0 ? o.net_ticktime_s : 60) * 1000;
    d->setup_ms = o.setup_timeout_ms > 0 ? o.setup_timeout_ms : 7000;
    d->max_queue = o.max_queue_bytes ? o.max_queue_bytes : (size_t)64 << 20;
    d->max_frame = o.max_frame_bytes ? o.max_frame_bytes : (size_t)256 << 20;
    int busy_us = o.busy_poll_us;
    const char *bp = getenv("ONEBLOG_DIST_BUSY_POLL_US");
    if (busy_us == 0 && !(bp && *bp && parse_int(bp, 0, 1000000, &busy_us) == 0))
        busy_us = 50;
    d->busy_poll_ns = busy_us > 0 ? (uint64_t)busy_us * 1000u : 0;
    int hs_rate = o.handshake_rate;
    const char *hr = getenv("ONEBLOG_DIST_HANDSHAKE_RATE");
    if (hs_rate == 0 && !(hr && *hr && parse_int(hr, 0, 1000000, &hs_rate) == 0))
        hs_rate = 20;
    if (hs_rate > 0) {
        if ((d->rl = cn__malloc(sizeof(*d->rl))) == NULL)
            goto fail;
        cn__dist_rl_init(d->rl, hs_rate);
    }

    if ((o.cookie && (d->cookie_explicit = strdup(o.cookie)) == NULL) ||
        (o.cookie_file && (d->cookie_file = strdup(o.cookie_file)) == NULL))
        goto fail;
    if ((rc = cn__cookies_load(d->cookie_explicit, d->cookie_file, &d->cookies, err,
                               sizeof(err))) < 0) {
        cn__dist_log(d, CN_LOG_ERROR, "%s", err[0] ? err : "cannot load the cookie");
        goto fail;
    }

    if (o.tls && (rc = tls_setup(d, &o)) < 0)
        goto fail;

    if ((rc = cn__sock_listen(d->listen_addr, o.listen_port, 128, &d->listen_fd,
                              &d->listen_port)) < 0) {
        cn__dist_log(d, CN_LOG_ERROR, "cannot listen on %s:%d: %s", d->listen_addr,
                     o.listen_port, strerror(-rc));
        goto fail;
    }
    /* Any free port (listen_port 0) is the kernel's pick, and the port EPMD is to
     * use is free until an EPMD binds it - which our built-in one does only later,
     * from the registrar. Had the pick been that port, no EPMD could start there,
     * and peers asking "EPMD" would be talking to our handshake (seen in CI: a
     * test's EPMD port, chosen free moments before, taken by a node's listener).
     * So bind again while holding it: the kernel cannot pick it twice. */
    if (!d->epmd_less && o.listen_port == 0 && d->listen_port == d->epmd_port) {
        int taken = d->listen_fd;
        rc = cn__sock_listen(d->listen_addr, 0, 128, &d->listen_fd, &d->listen_port);
        close(taken);
        if (rc < 0) {
            d->listen_fd = -1;
            cn__dist_log(d, CN_LOG_ERROR, "cannot listen on %s: %s", d->listen_addr,
                         strerror(-rc));
            goto fail;
        }
    }
    d->peer_port = o.peer_port > 0 ? o.peer_port : d->listen_port;

    node->dist = d;
    node->dist_ops = &dist_ops;
    if ((rc = cn_spawn(node, cn__dist_acceptor, d, NULL, NULL)) < 0)
        goto fail_installed;
    if (!d->epmd_less && (rc = cn_spawn(node, cn__epmd_registrar, d, NULL, NULL)) < 0)
        goto fail_installed;
    if (o.sighup_reload && (rc = hup_install(d)) < 0)
        cn__dist_log(d, CN_LOG_WARN, "SIGHUP reload not available: %s", strerror(-rc));
    cn__dist_log(d, CN_LOG_INFO, "listening on %s:%d%s%s", d->listen_addr, d->listen_port,
                 d->epmd_less ? " (no EPMD)" : "", d->tls ? " (TLS)" : "");
    rc = 0;
    goto out;

fail_installed:
    /* Processes already spawned keep d; leave it installed for node_free. */
    goto out;
fail:
    dist_free(d);
out:
    cn__cur_node = prev;
    return rc;
}

int cn_dist_listen_port(const cn_node_t *node)
{
    cn_dist_t *d = cn__dist_of((cn_node_t *)node);
    return d ? d->listen_port : -ENOTCONN;
}

/* ---------------------------------------------------------------------------------
 * Peers
 * ------------------------------------------------------------------------------ */

dist_peer_t *cn__dist_peer(cn_dist_t *d, const char *name, bool create)
{
    for (dist_peer_t *p = d->peers; p; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    if (!create)
        return NULL;
    const char *at = strchr(name, '@');
    if (at == NULL || at == name || at[1] == '\0' || strlen(name) > 255 ||
        strcmp(name, d->node->name) == 0)
        return NULL;
    dist_peer_t *p = cn__calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->name = strdup(name);
    if (p->name == NULL || cn__node_name_index(d->node, name, &p->ix) < 0) {
        free(p->name);
        cn__free(p);
        return NULL;
    }
    p->fd = -1;
    p->qtail = &p->qhead;
    p->next = d->peers;
    d->peers = p;
    return p;
}

static dist_peer_t *peer_of_pid(cn_dist_t *d, cn_pid_t pid)
{
    return cn__dist_peer(d, cn__node_name_of(d->node, pid.node), true);
}

void cn__dist_enqueue(cn_dist_t *d, dist_peer_t *p, cn_msg_t *hdr, cn_msg_t *payload)
{
    cn_msg_t *ms[2] = { hdr, payload };
    for (int i = 0; i < 2; i++) {
        cn_msg_t *m = ms[i];
        if (m == NULL)
            continue;
        m->next = NULL;
        *p->qtail = m;
        p->qtail = &m->next;
        p->qbytes += (size_t)m->len;
    }
    cn_proc_t *w = p->state == PEER_UP ? cn__proc_get(d->node, p->writer) : NULL;
    if (w && w->state == CN_P_WAIT_MSG)
        cn__make_runnable(d->node, w, CN_WAKE_MSG);
}

static void queue_free(dist_peer_t *p)
{
    while (p->qhead) {
        cn_msg_t *m = p->qhead;
        p->qhead = m->next;
        cn_msg_free(m);
    }
    p->qtail = &p->qhead;
    p->qoff = 0;
    p->qbytes = 0;
}

int cn__dist_send_ctl(cn_dist_t *d, dist_peer_t *p, ei_x_buff *x)
{
    cn__dist_frame_end(x, 0);
    cn_msg_t *m = cn__msg_from_x(x);
    if (m == NULL)
        return -ENOMEM;
    cn__dist_enqueue(d, p, m, NULL);
    return 0;
}

int cn__dist_connect_peer(cn_dist_t *d, dist_peer_t *p)
{
    if (p->state != PEER_DOWN)
        return 0;
    return cn__conn_dial(d, p);
}

int cn__dist_peer_port_of(cn_dist_t *d, const char *name)
{
    for (uint32_t i = 0; i < d->nports; i++)
        if (strcmp(d->ports[i].name, name) == 0)
            return d->ports[i].port;
    return d->epmd_less ? d->peer_port : 0;
}

#define GROW(arr, n, cap)                                                              \
    ((n) < (cap) ? 0 : grow_array((void **)&(arr), &(cap), sizeof(*(arr))))

static int grow_array(void **arr, uint32_t *cap, size_t elem)
{
    uint32_t c = *cap ? *cap * 2 : 4;
    void *a = cn__realloc(*arr, c * elem);
    if (a == NULL)
        return -ENOMEM;
    *arr = a;
    *cap = c;
    return 0;
}

int cn__dist_link_add(dist_peer_t *p, cn_pid_t local, cn_pid_t remote)
{
    for (uint32_t i = 0; i < p->nlinks; i++)
        if (cn_pid_eq(p->links[i].local, local) && cn_pid_eq(p->links[i].remote, remote))
            return 0;
    if (GROW(p->links, p->nlinks, p->caplinks) < 0)
        return -ENOMEM;
    p->links[p->nlinks].local = local;
    p->links[p->nlinks].remote = remote;
    p->nlinks++;
    return 0;
}

bool cn__dist_link_remove(dist_peer_t *p, cn_pid_t local, cn_pid_t remote)
{
    for (uint32_t i = 0; i < p->nlinks; i++) {
        if (cn_pid_eq(p->links[i].local, local) && cn_pid_eq(p->links[i].remote, remote)) {
            p->links[i] = p->links[--p->nlinks];
            return true;
        }
    }
    return false;
}

/* Send {Tag, 'node'} (nodeup / nodedown) to a local pid. */
static void send_node_msg(cn_pid_t to, const char *tag, const char *node)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    if (ei_x_encode_tuple_header(&x, 2) < 0 || ei_x_encode_atom(&x, tag) < 0 ||
        ei_x_encode_atom(&x, node) < 0) {
        ei_x_free(&x);
        return;
    }
    cn_send(to, &x);
}

/* {'DOWN', Ref, process, Item, Reason} to a local watcher; Item is the remote pid
 * or {Name, Node}. reason: encoded term without version byte. */
static void send_down(cn_dist_t *d, dist_peer_t *p, const dist_mon_out_t *m,
                      const char *reason, int len)
{
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    int rc = ei_x_encode_tuple_header(&x, 5) | ei_x_encode_atom(&x, "DOWN") |
             cn_x_encode_ref(&x, &m->ref) | ei_x_encode_atom(&x, "process");
    if (m->name)
        rc |= ei_x_encode_tuple_header(&x, 2) | ei_x_encode_atom(&x, m->name) |
              ei_x_encode_atom(&x, p->name);
    else
        rc |= cn_x_encode_pid(&x, m->target);
    rc |= ei_x_append_buf(&x, reason, len);
    if (rc < 0) {
        ei_x_free(&x);
        return;
    }
    (void)d;
    cn_send(m->watcher, &x);
}

void cn__dist_deliver_down(cn_dist_t *d, dist_peer_t *p, const cn_ref_t *ref,
                           const char *reason, int len)
{
    for (uint32_t i = 0; i < p->nmons_out; i++) {
        dist_mon_out_t *m = &p->mons_out[i];
        if (cn_ref_eq(&m->ref, ref)) {
            dist_mon_out_t copy = *m;
            p->mons_out[i] = p->mons_out[--p->nmons_out];
            send_down(d, p, &copy, reason, len);
            free(copy.name);
            return;
        }
    }
}

void cn__dist_peer_up(cn_dist_t *d, dist_peer_t *p)
{
    cn__dist_log(d, CN_LOG_INFO, "connected to %s at %s", p->name, p->addr);
    for (uint32_t i = 0; i < d->nwatchers; i++)
        send_node_msg(d->node_watchers[i], "nodeup", p->name);
}

void cn__dist_peer_down(cn_dist_t *d, dist_peer_t *p, bool was_up)
{
    cn_node_t *n = d->node;
    cn_pid_t nil = { 0, 0, 0, 0 };
    cn_pid_t writer = p->writer;
    p->state = PEER_DOWN;
    p->gen++;
    p->attempts++;
    p->conn = nil;
    p->writer = nil;
    p->fd = -1;
    p->io = NULL;
    p->outgoing = false;
    queue_free(p);
    cn__dist_wake_senders(d, p);
    if (cn__proc_get(n, writer))
        cn_exit_pid(writer, "kill");

    char *nc;
    int nclen;
    if (cn__encode_atom("noconnection", &nc, &nclen) < 0)
        nc = NULL, nclen = 0;

    /* Links: each local end gets an exit signal noconnection from the remote. */
    while (p->nlinks > 0) {
        dist_link_t l = p->links[--p->nlinks];
        cn_proc_t *q = cn__proc_get(n, l.local);
        if (q && cn__link_remove(q, l.remote) && nc)
            cn__exit_signal(n, l.remote, q, nc, nclen, true);
    }
    /* Our monitors of processes there: DOWN noconnection. */
    while (p->nmons_out > 0) {
        dist_mon_out_t m = p->mons_out[--p->nmons_out];
        if (nc)
            send_down(d, p, &m, nc, nclen);
        free(m.name);
    }
    /* Their monitors of our processes: forgotten. */
    while (p->nmons_in > 0) {
        dist_mon_in_t m = p->mons_in[--p->nmons_in];
        cn__free(m.ref);
        cn__free(m.name);
    }
    cn__free(nc);

    for (uint32_t i = 0; i < p->nnode_mons; i++)
        send_node_msg(p->node_mons[i], "nodedown", p->name);
    p->nnode_mons = 0;
    if (was_up) {
        cn__dist_log(d, CN_LOG_WARN, "lost connection to %s", p->name);
        uint32_t k = 0;
        for (uint32_t i = 0; i < d->nwatchers; i++) {
            if (!cn_is_alive(d->node_watchers[i]))
                continue;
            send_node_msg(d->node_watchers[i], "nodedown", p->name);
            d->node_watchers[k++] = d->node_watchers[i];
        }
        d->nwatchers = k;
    }
}

/* ---------------------------------------------------------------------------------
 * The hooks the core calls
 * ------------------------------------------------------------------------------ */

/* Busy peer: a sending process waits until the queue has drained to half the
 * limit (erl suspends a sender on a busy distribution port the same way). The
 * dist layer's own processes and code outside a process never wait. */
static void wait_not_busy(cn_dist_t *d, dist_peer_t *p)
{
    cn_node_t *n = d->node;
    if (p->qbytes <= d->max_queue || n->current == NULL)
        return;
    cn_pid_t self = n->current->pid;
    if (cn_pid_eq(self, p->conn) || cn_pid_eq(self, p->writer))
        return;
    uint32_t gen = p->gen;
    while (p->qbytes > d->max_queue / 2 && p->gen == gen && p->state != PEER_DOWN) {
        /* Parked until the writer (or the peer going down) wakes us; the
         * timeout only bounds a wait if the wake-up were ever missed. Without
         * memory for the list entry, poll as a last resort. */
        if (GROW(p->busy_waiters, p->nbusy_waiters, p->capbusy_waiters) < 0) {
            cn_sleep(1);
            continue;
        }
        p->busy_waiters[p->nbusy_waiters++] = self;
        cn__park(n, n->current, CN_P_SLEEP, 1000);
        for (uint32_t i = 0; i < p->nbusy_waiters; i++) {
            if (cn_pid_eq(p->busy_waiters[i], self)) {
                p->busy_waiters[i] = p->busy_waiters[--p->nbusy_waiters];
                break;
            }
        }
    }
}

void cn__dist_wake_senders(cn_dist_t *d, dist_peer_t *p)
{
    for (uint32_t i = 0; i < p->nbusy_waiters; i++) {
        cn_proc_t *q = cn__proc_get(d->node, p->busy_waiters[i]);
        if (q && q->state == CN_P_SLEEP)
            cn__make_runnable(d->node, q, CN_WAKE_MSG);
    }
    p->nbusy_waiters = 0;
}

static int queue_send(cn_dist_t *d, dist_peer_t *p, ei_x_buff *x, cn_msg_t *m)
{
    cn__dist_frame_end(x, (size_t)m->len);
    cn_msg_t *hdr = cn__msg_from_x(x);
    if (hdr == NULL) {
        cn_msg_free(m);
        return -ENOMEM;
    }
    cn__dist_enqueue(d, p, hdr, m);
    return cn__dist_connect_peer(d, p);
}

static int op_send(cn_node_t *n, cn_pid_t from, cn_pid_t to, cn_msg_t *m)
{
    cn_dist_t *d = n->dist;
    (void)from;
    dist_peer_t *p = peer_of_pid(d, to);
    if (p == NULL) {
        cn_msg_free(m);
        return -EHOSTUNREACH; /* a node name we cannot dial (or no memory) */
    }
    wait_not_busy(d, p);
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 3, DOP_SEND) < 0) {
        cn_msg_free(m);
        return -ENOMEM;
    }
    if (ei_x_encode_atom(&x, "") < 0 || cn_x_encode_pid(&x, to) < 0) {
        ei_x_free(&x);
        cn_msg_free(m);
        return -ENOMEM;
    }
    return queue_send(d, p, &x, m);
}

static int op_reg_send(cn_node_t *n, cn_pid_t from, const char *name, const char *node,
                       cn_msg_t *m)
{
    cn_dist_t *d = n->dist;
    dist_peer_t *p = cn__dist_peer(d, node, true);
    if (p == NULL) {
        cn_msg_free(m);
        return strchr(node, '@') ? -EHOSTUNREACH : -EINVAL;
    }
    wait_not_busy(d, p);
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 4, DOP_REG_SEND) < 0) {
        cn_msg_free(m);
        return -ENOMEM;
    }
    /* A send from outside any process still needs a sender pid: use a nil one of
     * this node, as erl does for a port or a dead sender. */
    if (cn_pid_is_nil(from))
        from.creation = n->creation;
    if (cn_x_encode_pid(&x, from) < 0 || ei_x_encode_atom(&x, "") < 0 ||
        ei_x_encode_atom(&x, name) < 0) {
        ei_x_free(&x);
        cn_msg_free(m);
        return -ENOMEM;
    }
    return queue_send(d, p, &x, m);
}

static int op_alias_send(cn_node_t *n, cn_pid_t from, cn_pid_t owner, const char *ref,
                         int ref_len, cn_msg_t *m)
{
    cn_dist_t *d = n->dist;
    dist_peer_t *p = peer_of_pid(d, owner);
    /* The peer's flags are known once it is up; before that, the pid send. */
    if (p == NULL || p->state != PEER_UP || !(p->flags & DF_ALIAS))
        return -ENOTSUP;
    wait_not_busy(d, p);
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 3, DOP_ALIAS_SEND) < 0) {
        cn_msg_free(m);
        return -ENOMEM;
    }
    if (cn_pid_is_nil(from))
        from.creation = n->creation;
    if (cn_x_encode_pid(&x, from) < 0 || ei_x_append_buf(&x, ref, ref_len) < 0) {
        ei_x_free(&x);
        cn_msg_free(m);
        return -ENOMEM;
    }
    return queue_send(d, p, &x, m);
}

static int op_link(cn_node_t *n, cn_pid_t from, cn_pid_t to)
{
    cn_dist_t *d = n->dist;
    dist_peer_t *p = peer_of_pid(d, to);
    ei_x_buff x;
    if (p == NULL)
        return -EHOSTUNREACH;
    if (cn__dist_link_add(p, from, to) < 0)
        return -ENOMEM;
    if (cn__dist_ctl_begin(&x, 3, DOP_LINK) < 0)
        goto nomem;
    if (cn_x_encode_pid(&x, from) < 0 || cn_x_encode_pid(&x, to) < 0) {
        ei_x_free(&x);
        goto nomem;
    }
    if (cn__dist_send_ctl(d, p, &x) < 0)
        goto nomem;
    return cn__dist_connect_peer(d, p);
nomem:
    cn__dist_link_remove(p, from, to);
    return -ENOMEM;
}

static void op_unlink(cn_node_t *n, cn_pid_t from, cn_pid_t to)
{
    cn_dist_t *d = n->dist;
    dist_peer_t *p = peer_of_pid(d, to);
    if (p == NULL)
        return;
    cn__dist_link_remove(p, from, to);
    if (p->state == PEER_DOWN)
        return;
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 4, DOP_UNLINK_ID) < 0)
        return;
    if (ei_x_encode_ulonglong(&x, ++d->unlink_id) < 0 || cn_x_encode_pid(&x, from) < 0 ||
        cn_x_encode_pid(&x, to) < 0) {
        ei_x_free(&x);
        return;
    }
    cn__dist_send_ctl(d, p, &x);
}

static int op_monitor(cn_node_t *n, cn_pid_t from, cn_pid_t to, const char *name,
                      const char *node, const cn_ref_t *ref)
{
    cn_dist_t *d = n->dist;
    dist_peer_t *p = name ? cn__dist_peer(d, node, true) : peer_of_pid(d, to);
    if (p == NULL)
        return node && !strchr(node, '@') ? -EINVAL : -EHOSTUNREACH;
    if (GROW(p->mons_out, p->nmons_out, p->capmons_out) < 0)
        return -ENOMEM;
    dist_mon_out_t m = { *ref, from, to, NULL };
    if (name && (m.name = strdup(name)) == NULL)
        return -ENOMEM;
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 4, DOP_MONITOR_P) < 0)
        goto nomem;
    if (cn_x_encode_pid(&x, from) < 0 ||
        (name ? ei_x_encode_atom(&x, name) : cn_x_encode_pid(&x, to)) < 0 ||
        cn_x_encode_ref(&x, ref) < 0) {
        ei_x_free(&x);
        goto nomem;
    }
    if (cn__dist_send_ctl(d, p, &x) < 0)
        goto nomem;
    p->mons_out[p->nmons_out++] = m;
    return cn__dist_connect_peer(d, p);
nomem:
    free(m.name);
    return -ENOMEM;
}

static int op_demonitor(cn_node_t *n, cn_pid_t from, const cn_ref_t *ref)
{
    cn_dist_t *d = n->dist;
    for (dist_peer_t *p = d->peers; p; p = p->next) {
        for (uint32_t i = 0; i < p->nmons_out; i++) {
            dist_mon_out_t m = p->mons_out[i];
            if (!cn_ref_eq(&m.ref, ref) || !cn_pid_eq(m.watcher, from))
                continue;
            p->mons_out[i] = p->mons_out[--p->nmons_out];
            ei_x_buff x;
            if (p->state != PEER_DOWN && cn__dist_ctl_begin(&x, 4, DOP_DEMONITOR_P) == 0) {
                if (cn_x_encode_pid(&x, from) < 0 ||
                    (m.name ? ei_x_encode_atom(&x, m.name) : cn_x_encode_pid(&x, m.target)) < 0 ||
                    cn_x_encode_ref(&x, ref) < 0)
                    ei_x_free(&x);
                else
                    cn__dist_send_ctl(d, p, &x);
            }
            free(m.name);
            return 0;
        }
    }
    return -ENOENT;
}

static void op_exit(cn_node_t *n, cn_pid_t from, cn_pid_t to, const char *reason, int len,
                    bool link)
{
    cn_dist_t *d = n->dist;
    dist_peer_t *p = peer_of_pid(d, to);
    if (p == NULL)
        return;
    if (link) {
        /* A link's exit only travels on the connection the link lives on. */
        if (!cn__dist_link_remove(p, from, to) || p->state == PEER_DOWN)
            return;
    }
    if (cn_pid_is_nil(from))
        from.creation = n->creation;
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 4, link ? DOP_EXIT : DOP_EXIT2) < 0)
        return;
    if (cn_x_encode_pid(&x, from) < 0 || cn_x_encode_pid(&x, to) < 0 ||
        ei_x_append_buf(&x, reason, len) < 0) {
        ei_x_free(&x);
        return;
    }
    if (cn__dist_send_ctl(d, p, &x) == 0 && !link)
        cn__dist_connect_peer(d, p);
}

static void op_proc_exit(cn_node_t *n, cn_proc_t *q)
{
    cn_dist_t *d = n->dist;
    const char *reason = q->reason;
    int len = q->reason_len;
    static const char no_memory[] = { 'w', 9, 'n', 'o', '_', 'm', 'e', 'm', 'o', 'r', 'y' };
    if (reason == NULL) {
        reason = no_memory;
        len = (int)sizeof(no_memory);
    }
    for (dist_peer_t *p = d->peers; p; p = p->next) {
        for (uint32_t i = 0; i < p->nmons_in;) {
            dist_mon_in_t m = p->mons_in[i];
            if (!cn_pid_eq(m.target, q->pid)) {
                i++;
                continue;
            }
            p->mons_in[i] = p->mons_in[--p->nmons_in];
            ei_x_buff x;
            if (p->state != PEER_DOWN && cn__dist_ctl_begin(&x, 5, DOP_MONITOR_P_EXIT) == 0) {
                if ((m.name ? ei_x_encode_atom(&x, m.name) : cn_x_encode_pid(&x, q->pid)) < 0 ||
                    cn_x_encode_pid(&x, m.watcher) < 0 ||
                    ei_x_append_buf(&x, m.ref, m.ref_len) < 0 ||
                    ei_x_append_buf(&x, reason, len) < 0)
                    ei_x_free(&x);
                else
                    cn__dist_send_ctl(d, p, &x);
            }
            cn__free(m.ref);
            cn__free(m.name);
        }
        /* Monitors it held on remote processes: tell the peer to drop them. */
        for (uint32_t i = 0; i < p->nmons_out;) {
            if (cn_pid_eq(p->mons_out[i].watcher, q->pid)) {
                cn_ref_t ref = p->mons_out[i].ref;
                op_demonitor(n, q->pid, &ref);
            } else {
                i++;
            }
        }
        for (uint32_t i = 0; i < p->nlinks;) {
            if (cn_pid_eq(p->links[i].local, q->pid))
                p->links[i] = p->links[--p->nlinks];
            else
                i++;
        }
    }
}

static void dist_free(cn_dist_t *d)
{
    if (d == NULL)
        return;
    while (d->peers) {
        dist_peer_t *p = d->peers;
        d->peers = p->next;
        queue_free(p);
        for (uint32_t i = 0; i < p->nmons_out; i++)
            free(p->mons_out[i].name);
        for (uint32_t i = 0; i < p->nmons_in; i++) {
            cn__free(p->mons_in[i].ref);
            cn__free(p->mons_in[i].name);
        }
        cn__free(p->links);
        cn__free(p->mons_out);
        cn__free(p->mons_in);
        cn__free(p->node_mons);
        cn__free(p->busy_waiters);
        free(p->name);
        cn__free(p);
    }
    for (uint32_t i = 0; i < d->nports; i++)
        free(d->ports[i].name);
    cn__free(d->ports);
    cn__free(d->node_watchers);
    cn__cookies_free(&d->cookies);
    free(d->cookie_explicit);
    free(d->cookie_file);
    cn__free(d->rl);
    cn__tls_free(d->tls);
    cn__epmd_server_free(d);
    /* Plain close(): this runs after the node's processes were destroyed, so the
     * poller's records of waiters must not be touched (cn_fd_close would wake
     * them); the poller is freed right after us. */
    if (d->epmd_srv_fd >= 0)
        close(d->epmd_srv_fd);
    if (d->listen_fd >= 0)
        close(d->listen_fd);
    hup_remove(d);
    cn__free(d);
}

static void op_node_free(cn_node_t *n)
{
    dist_free(n->dist);
    n->dist = NULL;
    n->dist_ops = NULL;
}

static const cn_dist_ops_t dist_ops = {
    .send = op_send,
    .reg_send = op_reg_send,
    .alias_send = op_alias_send,
    .link = op_link,
    .unlink = op_unlink,
    .monitor = op_monitor,
    .demonitor = op_demonitor,
    .exit = op_exit,
    .proc_exit = op_proc_exit,
    .node_free = op_node_free,
};

/* ---------------------------------------------------------------------------------
 * Public helpers
 * ------------------------------------------------------------------------------ */

int cn_dist_reload_cookies(cn_node_t *node)
{
    cn_dist_t *d = cn__dist_of(node);
    if (d == NULL)
        return -ENOTCONN;
    char err[300];
    cn_cookies_t c = { NULL, 0 };
    int rc = cn__cookies_load(d->cookie_explicit, d->cookie_file, &c, err, sizeof(err));
    if (rc < 0) {
        cn__dist_log(d, CN_LOG_ERROR, "cookie reload failed, keeping the old cookies: %s",
                     err[0] ? err : strerror(-rc));
        return rc;
    }
    cn__cookies_free(&d->cookies);
    d->cookies = c;
    return 0;
}

int cn_dist_reload_tls(cn_node_t *node)
{
    cn_dist_t *d = cn__dist_of(node);
    if (d == NULL)
        return -ENOTCONN;
    if (d->tls == NULL)
        return -ENOTSUP;
    char err[600];
    int rc = cn__tls_reload(d->tls, err, sizeof(err));
    if (rc < 0) {
        cn__dist_log(d, CN_LOG_ERROR, "TLS reload failed, keeping the old certificate: %s", err);
        return rc;
    }
    cn__tls_describe(d->tls, err, sizeof(err));
    cn__dist_log(d, CN_LOG_INFO, "TLS reloaded: %s", err);
    return 0;
}

int cn_dist_set_peer_port(cn_node_t *node, const char *peer, int port)
{
    cn_dist_t *d = cn__dist_of(node);
    if (d == NULL)
        return -ENOTCONN;
    if (peer == NULL || strchr(peer, '@') == NULL || port <= 0 || port > 65535)
        return -EINVAL;
    for (uint32_t i = 0; i < d->nports; i++) {
        if (strcmp(d->ports[i].name, peer) == 0) {
            d->ports[i].port = port;
            return 0;
        }
    }
    dist_port_t *a = cn__realloc(d->ports, (d->nports + 1) * sizeof(*a));
    if (a == NULL)
        return -ENOMEM;
    d->ports = a;
    if ((a[d->nports].name = strdup(peer)) == NULL)
        return -ENOMEM;
    a[d->nports++].port = port;
    return 0;
}

int cn_dist_connect(const char *node, int64_t timeout_ms)
{
    cn_node_t *n = cn__cur_node;
    cn_dist_t *d = cn__dist_of(n);
    if (d == NULL)
        return -ENOTCONN;
    if (n->current == NULL || node == NULL)
        return -EINVAL;
    dist_peer_t *p = cn__dist_peer(d, node, true);
    if (p == NULL)
        return -EINVAL;
    uint32_t attempts = p->attempts;
    if (p->state == PEER_DOWN && cn__dist_connect_peer(d, p) < 0)
        return -ENOMEM;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : cn_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (p->state == PEER_UP)
            return 0;
        if (p->state == PEER_DOWN && p->attempts != attempts)
            return -EHOSTUNREACH;
        if (cn_now_ms() >= deadline)
            return -ETIMEDOUT;
        cn_sleep(5);
    }
}

bool cn_dist_is_connected(const char *node)
{
    cn_dist_t *d = cn__dist_of(cn__cur_node);
    dist_peer_t *p = d && node ? cn__dist_peer(d, node, false) : NULL;
    return p && p->state == PEER_UP;
}

int cn_dist_disconnect(const char *node)
{
    cn_node_t *n = cn__cur_node;
    cn_dist_t *d = cn__dist_of(n);
    dist_peer_t *p = d && node ? cn__dist_peer(d, node, false) : NULL;
    if (p == NULL || p->state == PEER_DOWN || cn__proc_get(n, p->conn) == NULL)
        return -ENOTCONN;
    /* The connection process's exit hook takes the peer down. */
    return cn_exit_pid(p->conn, "kill");
}

int cn_monitor_node(const char *node, bool on)
{
    cn_node_t *n = cn__cur_node;
    cn_dist_t *d = cn__dist_of(n);
    if (d == NULL)
        return -ENOTCONN;
    if (n->current == NULL || node == NULL)
        return -EINVAL;
    dist_peer_t *p = cn__dist_peer(d, node, true);
    if (p == NULL)
        return -EINVAL;
    cn_pid_t self = n->current->pid;
    if (!on) {
        for (uint32_t i = 0; i < p->nnode_mons; i++) {
            if (cn_pid_eq(p->node_mons[i], self)) {
                p->node_mons[i] = p->node_mons[--p->nnode_mons];
                break;
            }
        }
        return 0;
    }
    if (GROW(p->node_mons, p->nnode_mons, p->capnode_mons) < 0)
        return -ENOMEM;
    p->node_mons[p->nnode_mons++] = self;
    return cn__dist_connect_peer(d, p);
}

int cn_dist_monitor_nodes(bool on)
{
    cn_node_t *n = cn__cur_node;
    cn_dist_t *d = cn__dist_of(n);
    if (d == NULL)
        return -ENOTCONN;
    if (n->current == NULL)
        return -EINVAL;
    cn_pid_t self = n->current->pid;
    for (uint32_t i = 0; i < d->nwatchers; i++) {
        if (cn_pid_eq(d->node_watchers[i], self)) {
            if (!on)
                d->node_watchers[i] = d->node_watchers[--d->nwatchers];
            return 0;
        }
    }
    if (!on)
        return 0;
    if (GROW(d->node_watchers, d->nwatchers, d->capwatchers) < 0)
        return -ENOMEM;
    d->node_watchers[d->nwatchers++] = self;
    return 0;
}
