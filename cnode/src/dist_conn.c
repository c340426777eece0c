/* dist_conn.c - one distribution connection: handshake, reader, writer, dispatch.
 *
 * A connection is a process (the "conn"): it dials (resolving the port through
 * EPMD) or is spawned by the acceptor for an incoming socket, runs the version 6
 * handshake in the matching role, and once it is up spawns a linked writer process
 * and becomes the reader: it reads 4-byte-length frames, answers nothing to ticks,
 * and dispatches control messages to local processes. The writer drains the
 * peer's outgoing queue with vectored non-blocking writes, a bounded chunk at a
 * time with a yield in between, so a 16 MiB message does not hold up the node;
 * when the queue has been empty for a quarter of net_ticktime it sends a tick.
 * A peer that sends nothing for net_ticktime is declared down.
 *
 * Whatever ends the conn (an error, a malformed frame, a kill) runs its exit hook,
 * which takes the peer down if this conn still owns it (cn__dist_peer_down) and
 * closes the socket. Only that connection is affected.
 */
#include "dist_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RB_INITIAL (64u << 10)
#define WRITE_CHUNK (256u << 10) /* bytes per write call at most */
#define YIELD_EVERY (1u << 20)   /* bytes moved between yields */

typedef struct conn {
    cn_dist_t *d;
    dist_peer_t *peer;       /* known at once when dialling; after send_name when accepting */
    int fd;                  /* the socket (owned) */
    cn_dist_io_t io;         /* its transport: plain, or TLS once that is set up */
    bool was_up;
    cn_pid_t self;
    char addr[64];           /* peer address for logs */
    char *rb;                /* read buffer: bytes [rs, re) are unread */
    size_t rcap, rs, re;
    uint64_t last_rx;        /* ms, node clock */
    size_t since_yield;
    bool drained;            /* the last read came back short: the socket is empty */
    uint64_t last_rx_ns;     /* monotonic clock, for the busy-poll window */
} conn_t;

static bool owns(conn_t *c)
{
    return c->peer && cn_pid_eq(c->peer->conn, c->self);
}

static void on_conn_exit(void *arg)
{
    conn_t *c = arg;
    if (owns(c))
        cn__dist_peer_down(c->d, c->peer, c->was_up);
    cn__tls_io_free(&c->io);
    if (c->fd >= 0)
        cn_fd_close(c->fd);
    cn__free(c->rb);
    cn__free(c);
}

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint32_t random32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof(v), 0) != sizeof(v))
        v = (uint32_t)cn_now_ms() * 2654435761u;
    return v;
}

/* ---------------------------------------------------------------------------------
 * Handshake
 * ------------------------------------------------------------------------------ */

/* Handshake messages carry a 2-byte length over TCP and a 4-byte one over TLS
 * (erl's inet_tls_dist sets {packet, 4} from the start). */
static int hs_send(conn_t *c, const uint8_t *body, int len, uint64_t deadline)
{
    uint8_t buf[4 + HS_MAX];
    if (len < 0 || len > HS_MAX)
        return -EINVAL;
    size_t h = c->io.tls ? 4 : 2;
    buf[0] = buf[1] = 0;
    buf[h - 2] = (uint8_t)(len >> 8);
    buf[h - 1] = (uint8_t)len;
    memcpy(buf + h, body, (size_t)len);
    return cn__io_write_full(&c->io, buf, (size_t)len + h, deadline);
}

static int hs_recv(conn_t *c, uint8_t *buf, size_t cap, size_t *len, uint64_t deadline)
{
    uint8_t h[4];
    size_t hl = c->io.tls ? 4 : 2;
    int rc = cn__io_read_full(&c->io, h, hl, deadline);
    if (rc < 0)
        return rc;
    size_t n = 0;
    for (size_t i = 0; i < hl; i++)
        n = n << 8 | h[i];
    if (n == 0 || n > cap)
        return -EPROTO;
    *len = n;
    return cn__io_read_full(&c->io, buf, n, deadline);
}

/* Why rc ended the connection: TLS's detail if it has one. */
static const char *why(conn_t *c, int rc)
{
    return c->io.err[0]         ? c->io.err
           : rc == -ECONNRESET ? "connection closed by peer"
           : rc == -EPROTO     ? "protocol error"
                               : cn_strerror(rc);
}

/* The dialling side (A). Returns 0 when the connection may go up. */
static int handshake_out(conn_t *c, uint64_t deadline)
{
    cn_dist_t *d = c->d;
    dist_peer_t *p = c->peer;
    cn_node_t *n = d->node;
    uint8_t buf[HS_MAX];
    size_t len;
    char cookie[512];
    int rc;

    if (strlen(d->cookies.v[0]) >= sizeof(cookie)) {
        cn__dist_log(d, CN_LOG_ERROR, "cookie too long");
        return -EINVAL;
    }
    strcpy(cookie, d->cookies.v[0]);

    int blen = cn__hs_build_name(buf, sizeof(buf), DF_OURS, n->creation, n->name);
    if ((rc = hs_send(c, buf, blen, deadline)) < 0 ||
        (rc = hs_recv(c, buf, sizeof(buf), &len, deadline)) < 0)
        goto io_fail;
    char status[64];
    if (cn__hs_parse_status(buf, len, status, sizeof(status)) < 0) {
        rc = -EPROTO;
        goto io_fail;
    }
    if (!owns(c))
        return -EALREADY;
    if (strcmp(status, "alive") == 0) {
        /* The peer still has a connection from an earlier us: replace it. */
        cn__dist_log(d, CN_LOG_DEBUG, "%s still has a connection from us: replacing it",
                     p->name);
        blen = cn__hs_build_status(buf, sizeof(buf), "true");
        if ((rc = hs_send(c, buf, blen, deadline)) < 0)
            goto io_fail;
    } else if (strcmp(status, "nok") == 0) {
        /* Simultaneous connect and the peer's attempt wins: our acceptor takes
         * the peer over (and ends this process). Wait for that a while. */
        while (owns(c) && cn_now_ms() < deadline)
            cn_sleep(20);
        return -EALREADY;
    } else if (strcmp(status, "ok") != 0 && strcmp(status, "ok_simultaneous") != 0) {
        cn__dist_log(d, CN_LOG_WARN, "%s at %s refused the connection: %s", p->name, c->addr,
                     status);
        return -ECONNREFUSED;
    }

    cn_hs_name_t ch;
    if ((rc = hs_recv(c, buf, sizeof(buf), &len, deadline)) < 0)
        goto io_fail;
    if (cn__hs_parse_challenge(buf, len, &ch) < 0) {
        rc = -EPROTO;
        goto io_fail;
    }
    if (strcmp(ch.name, p->name) != 0) {
        cn__dist_log(d, CN_LOG_ERROR, "dialled %s at %s but it is %s: closing", p->name,
                     c->addr, ch.name);
        return -EPROTO;
    }
    if ((ch.flags & DF_REQUIRED) != DF_REQUIRED) {
        cn__dist_log(d, CN_LOG_ERROR, "%s at %s lacks required distribution flags", p->name,
                     c->addr);
        return -EPROTO;
    }
    uint32_t mine = random32();
    uint8_t digest[16], expect[16];
    if (cn__hs_digest(cookie, ch.challenge, digest) < 0 ||
        cn__hs_digest(cookie, mine, expect) < 0)
        return -ENOMEM;
    blen = cn__hs_build_reply(buf, sizeof(buf), mine, digest);
    if ((rc = hs_send(c, buf, blen, deadline)) < 0)
        goto io_fail;
    rc = hs_recv(c, buf, sizeof(buf), &len, deadline);
    memset(cookie, 0, sizeof(cookie));
    if (rc == -ECONNRESET && !c->io.err[0]) {
        cn__dist_log(d, CN_LOG_ERROR,
                     "%s at %s closed the connection after our challenge reply: "
                     "it does not accept our cookie",
                     p->name, c->addr);
        return rc;
    }
    if (rc < 0)
        goto io_fail;
    if (cn__hs_parse_ack(buf, len, digest) < 0) {
        rc = -EPROTO;
        goto io_fail;
    }
    if (memcmp(digest, expect, 16) != 0) {
        cn__dist_log(d, CN_LOG_ERROR, "refused %s at %s: bad cookie (challenge ack mismatch)",
                     p->name, c->addr);
        return -EACCES;
    }
    if (!owns(c))
        return -EALREADY;
    p->flags = ch.flags;
    p->creation = ch.creation;
    return 0;

io_fail:
    memset(cookie, 0, sizeof(cookie));
    if (owns(c))
        cn__dist_log(d, rc == -EACCES ? CN_LOG_ERROR : CN_LOG_WARN,
                     "handshake with %s at %s failed: %s", p->name, c->addr, why(c, rc));
    return rc;
}

static int send_status(conn_t *c, const char *status, uint64_t deadline)
{
    uint8_t buf[64];
    int blen = cn__hs_build_status(buf, sizeof(buf), status);
    return hs_send(c, buf, blen, deadline);
}

/* The accepting side (B). Returns 0 when the connection may go up. */
static int handshake_in(conn_t *c, uint64_t deadline)
{
    cn_dist_t *d = c->d;
    cn_node_t *n = d->node;
    uint8_t buf[HS_MAX];
    size_t len;
    int rc;
    cn_hs_name_t nm;

    if ((rc = hs_recv(c, buf, sizeof(buf), &len, deadline)) < 0) {
        cn__dist_log(d, CN_LOG_WARN, "handshake from %s failed: %s", c->addr, why(c, rc));
        return rc;
    }
    if (cn__hs_parse_name(buf, len, &nm) < 0) {
        cn__dist_log(d, CN_LOG_WARN, "malformed handshake from %s: closing", c->addr);
        return -EPROTO;
    }
    dist_peer_t *p = (nm.flags & DF_REQUIRED) == DF_REQUIRED ? cn__dist_peer(d, nm.name, true)
                                                             : NULL;
    if (p == NULL) {
        cn__dist_log(d, CN_LOG_WARN, "refused %s at %s: not allowed (flags or name)", nm.name,
                     c->addr);
        send_status(c, "not_allowed", deadline);
        return -EPROTO;
    }

    if (p->state == PEER_UP) {
        /* We think we are connected: the peer may have restarted. Ask. */
        if ((rc = send_status(c, "alive", deadline)) < 0 ||
            (rc = hs_recv(c, buf, sizeof(buf), &len, deadline)) < 0)
            return rc;
        char answer[16];
        if (cn__hs_parse_status(buf, len, answer, sizeof(answer)) < 0 ||
            strcmp(answer, "true") != 0)
            return -EALREADY;
        if (p->state == PEER_UP) {
            cn_pid_t old = p->conn;
            cn__dist_peer_down(d, p, true);
            cn_exit_pid(old, "kill");
        }
        if (p->state != PEER_DOWN)
            return -EALREADY;
    } else if (p->state == PEER_PENDING) {
        /* Simultaneous connect: the greater name keeps its own attempt. */
        if (!p->outgoing || strcmp(n->name, nm.name) > 0) {
            cn__dist_log(d, CN_LOG_DEBUG, "simultaneous connect with %s: keeping ours",
                         nm.name);
            send_status(c, "nok", deadline);
            return -EALREADY;
        }
        cn__dist_log(d, CN_LOG_DEBUG, "simultaneous connect with %s: taking theirs",
                     nm.name);
        cn_pid_t old = p->conn;
        p->conn = c->self;
        p->outgoing = false;
        c->peer = p;
        cn_exit_pid(old, "kill");
        if ((rc = send_status(c, "ok_simultaneous", deadline)) < 0)
            return rc;
    }
    if (p->state == PEER_DOWN) {
        p->state = PEER_PENDING;
        p->conn = c->self;
        p->outgoing = false;
        c->peer = p;
        if ((rc = send_status(c, "ok", deadline)) < 0)
            return rc;
    }
    if (!owns(c))
        return -EALREADY;

    uint32_t mine = random32();
    int blen = cn__hs_build_challenge(buf, sizeof(buf), DF_OURS, mine, n->creation, n->name);
    if ((rc = hs_send(c, buf, blen, deadline)) < 0 ||
        (rc = hs_recv(c, buf, sizeof(buf), &len, deadline)) < 0) {
        cn__dist_log(d, CN_LOG_WARN, "handshake with %s at %s failed: %s", nm.name, c->addr,
                     why(c, rc));
        return rc;
    }
    uint32_t theirs;
    uint8_t got[16], want[16];
    if (cn__hs_parse_reply(buf, len, &theirs, got) < 0) {
        cn__dist_log(d, CN_LOG_WARN, "malformed challenge reply from %s at %s", nm.name,
                     c->addr);
        return -EPROTO;
    }
    /* Any of our cookies will do (rotation); answer with the one that matched. */
    int k;
    for (k = 0; k < d->cookies.n; k++) {
        if (cn__hs_digest(d->cookies.v[k], mine, want) < 0)
            return -ENOMEM;
        if (memcmp(got, want, 16) == 0)
            break;
    }
    if (k == d->cookies.n) {
        cn__dist_log(d, CN_LOG_ERROR, "refused connection from %s at %s: bad cookie",
                     nm.name, c->addr);
        return -EACCES;
    }
    if (cn__hs_digest(d->cookies.v[k], theirs, want) < 0)
        return -ENOMEM;
    blen = cn__hs_build_ack(buf, sizeof(buf), want);
    if ((rc = hs_send(c, buf, blen, deadline)) < 0)
        return rc;
    if (!owns(c))
        return -EALREADY;
    p->flags = nm.flags;
    p->creation = nm.creation;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Writer
 * ------------------------------------------------------------------------------ */

static cn_msg_t *tick_msg(void)
{
    cn_msg_t *m = cn__malloc(sizeof(*m));
    if (m == NULL)
        return NULL;
    m->buf = cn__calloc(1, 4);
    if (m->buf == NULL) {
        cn__free(m);
        return NULL;
    }
    m->len = m->cap = 4;
    m->next = NULL;
    return m;
}

/* Drop w written bytes from the head of the queue. */
static void consume(dist_peer_t *p, size_t w)
{
    p->qbytes -= w;
    while (w > 0) {
        cn_msg_t *m = p->qhead;
        size_t rem = (size_t)m->len - p->qoff;
        if (w < rem) {
            p->qoff += w;
            return;
        }
        w -= rem;
        p->qoff = 0;
        p->qhead = m->next;
        if (p->qhead == NULL)
            p->qtail = &p->qhead;
        cn_msg_free(m);
    }
}

static void writer_main(void *arg)
{
    dist_peer_t *p = arg;
    cn_node_t *n = cn_node_self();
    cn_dist_t *d = cn__dist_of(n);
    cn_pid_t self = cn_self();
    cn_dist_io_t *io = p->io;
    uint64_t tick_every = (uint64_t)(d->tick_ms / 4 > 0 ? d->tick_ms / 4 : 1);
    uint64_t last_tx = cn_now_ms();
    size_t since_yield = 0;

    for (;;) {
        if (!cn_pid_eq(p->writer, self))
            return; /* the connection is gone */
        if (p->qhead == NULL) {
            uint64_t now = cn_now_ms();
            if (now >= last_tx + tick_every) {
                cn_msg_t *t = tick_msg();
                if (t)
                    cn__dist_enqueue(d, p, t, NULL);
                else
                    cn_sleep(10);
                continue;
            }
            cn__park(n, n->current, CN_P_WAIT_MSG, (int64_t)(last_tx + tick_every - now));
            continue;
        }
        struct iovec iov[64];
        int k = 0;
        size_t total = 0, off = p->qoff;
        for (cn_msg_t *m = p->qhead; m && k < 64 && total < WRITE_CHUNK; m = m->next) {
            size_t l = (size_t)m->len - off;
            if (l > WRITE_CHUNK - total)
                l = WRITE_CHUNK - total;
            iov[k].iov_base = m->buf + off;
            iov[k].iov_len = l;
            total += l;
            off = 0;
            k++;
        }
        ssize_t w = io->tr->writev(io, iov, k);
        if (w <= 0) {
            if (w == -EAGAIN) {
                /* Parked: the connection may end meanwhile; the loop's first
                 * test sees that before io is touched again. */
                int rc = cn__io_wait(io, CN_INFINITY);
                if (rc < 0 && cn_pid_eq(p->writer, self))
                    cn_exit("write_error");
                continue;
            }
            if (cn_pid_eq(p->writer, self))
                cn__dist_log(d, CN_LOG_WARN, "write to %s failed: %s", p->name,
                             io->err[0] ? io->err : cn_strerror(w < 0 ? (int)w : -EPIPE));
            cn_exit("write_error");
        }
        consume(p, (size_t)w);
        if (p->nbusy_waiters && p->qbytes <= d->max_queue / 2)
            cn__dist_wake_senders(d, p);
        last_tx = cn_now_ms();
        since_yield += (size_t)w;
        if (since_yield >= YIELD_EVERY) {
            since_yield = 0;
            cn_yield();
        }
    }
}

/* ---------------------------------------------------------------------------------
 * Dispatch of incoming control messages
 * ------------------------------------------------------------------------------ */

static int pid_in(cn_node_t *n, const erlang_pid *ep, cn_pid_t *out)
{
    uint32_t ix;
    if (cn__node_name_index(n, ep->node, &ix) < 0)
        return -ENOMEM;
    out->num = ep->num;
    out->serial = ep->serial;
    out->creation = ep->creation;
    out->node = ix;
    return 0;
}

/* EXIT {3, From, To, Reason-atom} back to the peer. */
static void send_exit_atom(cn_dist_t *d, dist_peer_t *p, cn_pid_t from, cn_pid_t to,
                           const char *atom)
{
    ei_x_buff x;
    if (cn__dist_ctl_begin(&x, 4, DOP_EXIT) < 0)
        return;
    if (cn_x_encode_pid(&x, from) < 0 || cn_x_encode_pid(&x, to) < 0 ||
        ei_x_encode_atom(&x, atom) < 0) {
        ei_x_free(&x);
        return;
    }
    cn__dist_send_ctl(d, p, &x);
}

static void deliver(cn_dist_t *d, cn_pid_t to, const char *buf, const cn_dist_ctl_t *c)
{
    (void)d;
    if (to.node != 0)
        return; /* not ours to route */
    cn_msg_t *m = cn__msg_from_term(buf + c->payload_off + 1, c->payload_len - 1);
    if (m)
        cn_send_msg(to, m);
}

int cn__dist_dispatch(cn_dist_t *d, dist_peer_t *p, const char *buf, int len,
                      const cn_dist_ctl_t *c)
{
    cn_node_t *n = d->node;
    cn_pid_t from = { 0, 0, 0, 0 }, to = { 0, 0, 0, 0 };
    (void)len;
    switch (c->op) {
    case DOP_SEND:
        if (pid_in(n, &c->to, &to) == 0)
            deliver(d, to, buf, c);
        return 0;
    case DOP_REG_SEND: {
        cn_pid_t pid;
        if (cn_whereis(c->name, &pid) == 0)
            deliver(d, pid, buf, c);
        return 0;
    }
    case DOP_ALIAS_SEND: {
        /* Only to an alias that is active now: a reply to a call that has
         * returned (timed out) is dropped, as BEAM drops it. */
        cn_ref_t ref;
        int i = c->ref_off;
        if (cn_decode_ref(buf, &i, &ref) < 0 || ref.node != 0)
            return 0;
        cn_proc_t *q = cn__alias_find(n, &ref);
        if (q)
            deliver(d, q->pid, buf, c);
        return 0;
    }
    default:
        break;
    }

    /* The rest involve a pid of the peer. */
    bool from_pid = !(c->op == DOP_MONITOR_P_EXIT && c->from_is_name);
    if (from_pid && pid_in(n, &c->from, &from) < 0)
        return 0;
    if (pid_in(n, &c->to, &to) < 0)
        return 0;

    switch (c->op) {
    case DOP_LINK: {
        if (from.node != p->ix)
            return 0;
        cn_proc_t *q = cn__proc_get(n, to);
        if (q == NULL) {
            send_exit_atom(d, p, to, from, "noproc");
            return 0;
        }
        if (cn__link_add(q, from) < 0 || cn__dist_link_add(p, to, from) < 0) {
            cn__link_remove(q, from);
            send_exit_atom(d, p, to, from, "no_memory");
            return 0;
        }
        q->dist_ref = true;
        return 0;
    }
    case DOP_UNLINK:
    case DOP_UNLINK_ID: {
        cn_proc_t *q = cn__proc_get(n, to);
        if (q)
            cn__link_remove(q, from);
        cn__dist_link_remove(p, to, from);
        if (c->op == DOP_UNLINK_ID) {
            ei_x_buff x;
            if (cn__dist_ctl_begin(&x, 4, DOP_UNLINK_ID_ACK) < 0)
                return 0;
            if (ei_x_encode_ulonglong(&x, c->id) < 0 || cn_x_encode_pid(&x, to) < 0 ||
                cn_x_encode_pid(&x, from) < 0)
                ei_x_free(&x);
            else
                cn__dist_send_ctl(d, p, &x);
        }
        return 0;
    }
    case DOP_UNLINK_ID_ACK:
        return 0;
    case DOP_EXIT: {
        cn_proc_t *q = cn__proc_get(n, to);
        /* A link's exit without the link (unlinked meanwhile) is ignored. */
        if (q && cn__link_remove(q, from)) {
            cn__dist_link_remove(p, to, from);
            cn__exit_signal(n, from, q, buf + c->reason_off, c->reason_len, true);
        }
        return 0;
    }
    case DOP_EXIT2: {
        cn_proc_t *q = cn__proc_get(n, to);
        if (q)
            cn__exit_signal(n, from, q, buf + c->reason_off, c->reason_len, false);
        return 0;
    }
    case DOP_MONITOR_P: {
        if (from.node != p->ix)
            return 0;
        cn_pid_t target = to;
        if (c->to_is_name && cn_whereis(c->name, &target) < 0)
            target = (cn_pid_t){ 0, 0, 0, 0 };
        cn_proc_t *q = cn_pid_is_nil(target) ? NULL : cn__proc_get(n, target);
        dist_mon_in_t m = { target, from, NULL, c->ref_len, NULL };
        if (q && p->nmons_in == p->capmons_in) {
            uint32_t cap = p->capmons_in ? p->capmons_in * 2 : 8;
            dist_mon_in_t *a = cn__realloc(p->mons_in, cap * sizeof(*a));
            if (a) {
                p->mons_in = a;
                p->capmons_in = cap;
            }
        }
        if (q && p->nmons_in < p->capmons_in && (m.ref = cn__malloc((size_t)c->ref_len)) &&
            (!c->to_is_name || (m.name = cn__malloc(strlen(c->name) + 1)))) {
            memcpy(m.ref, buf + c->ref_off, (size_t)c->ref_len);
            if (m.name)
                strcpy(m.name, c->name);
            p->mons_in[p->nmons_in++] = m;
            q->dist_ref = true;
            return 0;
        }
        cn__free(m.ref);
        /* Gone (or no memory to watch it): MONITOR_P_EXIT noproc right away. */
        ei_x_buff x;
        if (cn__dist_ctl_begin(&x, 5, DOP_MONITOR_P_EXIT) < 0)
            return 0;
        if ((c->to_is_name ? ei_x_encode_atom(&x, c->name) : cn_x_encode_pid(&x, to)) < 0 ||
            cn_x_encode_pid(&x, from) < 0 ||
            ei_x_append_buf(&x, buf + c->ref_off, c->ref_len) < 0 ||
            ei_x_encode_atom(&x, q ? "no_memory" : "noproc") < 0)
            ei_x_free(&x);
        else
            cn__dist_send_ctl(d, p, &x);
        return 0;
    }
    case DOP_DEMONITOR_P:
        for (uint32_t i = 0; i < p->nmons_in; i++) {
            dist_mon_in_t *m = &p->mons_in[i];
            if (cn_pid_eq(m->watcher, from) && m->ref_len == c->ref_len &&
                memcmp(m->ref, buf + c->ref_off, (size_t)c->ref_len) == 0) {
                cn__free(m->ref);
                cn__free(m->name);
                p->mons_in[i] = p->mons_in[--p->nmons_in];
                break;
            }
        }
        return 0;
    case DOP_MONITOR_P_EXIT: {
        cn_ref_t ref;
        int i = c->ref_off;
        if (to.node != 0 || cn_decode_ref(buf, &i, &ref) < 0)
            return 0;
        cn__dist_deliver_down(d, p, &ref, buf + c->reason_off, c->reason_len);
        return 0;
    }
    default:
        return 0;
    }
}

/* ---------------------------------------------------------------------------------
 * Reader
 * ------------------------------------------------------------------------------ */

/* Make n unread bytes available in c->rb, reading as needed. */
static int rb_need(conn_t *c, size_t n)
{
    cn_dist_t *d = c->d;
    while (c->re - c->rs < n) {
        if (c->rcap - c->rs < n) {
            memmove(c->rb, c->rb + c->rs, c->re - c->rs);
            c->re -= c->rs;
            c->rs = 0;
            if (c->rcap < n) {
                size_t cap = c->rcap * 2 > n ? c->rcap * 2 : n;
                char *b = cn__realloc(c->rb, cap);
                if (b == NULL)
                    return -ENOMEM;
                c->rb = b;
                c->rcap = cap;
            }
        }
        /* A short read emptied the socket (a stream socket returns less than
         * asked only when nothing more is queued), so the next read would only
         * say EAGAIN: wait for the next edge right away, saving a system call
         * per incoming batch. */
        if (!c->drained) {
            size_t room = c->rcap - c->re;
            ssize_t r = c->io.tr->read(&c->io, c->rb + c->re, room);
            if (r > 0) {
                c->re += (size_t)r;
                c->drained = c->io.drained;
                c->last_rx = cn_now_ms();
                if (d->busy_poll_ns)
                    c->last_rx_ns = mono_ns();
                c->since_yield += (size_t)r;
                if (c->since_yield >= YIELD_EVERY) {
                    c->since_yield = 0;
                    cn_yield();
                }
                continue;
            }
            if (r == 0)
                return -ECONNRESET;
            if (r != -EAGAIN)
                return (int)r;
        } else {
            c->io.want = CN_READABLE;
        }
        c->drained = false;
        /* Busy poll: shortly after traffic, the next frame is likely to follow
         * soon (a reply to what we just delivered). Going to sleep in epoll now
         * would let the CPU idle, and waking an idle CPU costs more than the
         * round trip itself on many machines; so keep polling, giving every
         * other process its turn between tries, until the window has passed
         * (BEAM's schedulers busy-wait the same way). */
        if (d->busy_poll_ns && mono_ns() - c->last_rx_ns < d->busy_poll_ns) {
            cn_yield();
            continue;
        }
        uint64_t now = cn_now_ms();
        uint64_t due = c->last_rx + (uint64_t)d->tick_ms;
        if (now >= due)
            return -ETIMEDOUT;
        int rc = cn__io_wait(&c->io, (int64_t)(due - now));
        if (rc < 0 && rc != -ETIMEDOUT)
            return rc;
    }
    return 0;
}

static void read_loop(conn_t *c)
{
    cn_dist_t *d = c->d;
    dist_peer_t *p = c->peer;
    int rc;
    c->last_rx = cn_now_ms();
    for (;;) {
        if ((rc = rb_need(c, 4)) < 0)
            break;
        const uint8_t *h = (const uint8_t *)c->rb + c->rs;
        size_t len = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
        if (len == 0) {
            c->rs += 4; /* a tick */
            continue;
        }
        if (len > d->max_frame || len > INT32_MAX) {
            cn__dist_log(d, CN_LOG_ERROR, "frame of %zu bytes from %s exceeds the limit: closing",
                         len, p->name);
            return;
        }
        if ((rc = rb_need(c, 4 + len)) < 0)
            break;
        const char *f = c->rb + c->rs + 4;
        cn_dist_ctl_t ctl;
        int prc = cn__dist_parse_frame(f, (int)len, &ctl);
        if (prc == -EINVAL) {
            cn__dist_log(d, CN_LOG_ERROR, "malformed frame from %s at %s: closing", p->name,
                         c->addr);
            return;
        }
        if (prc == 0 && cn__dist_dispatch(d, p, f, (int)len, &ctl) < 0)
            return;
        c->rs += 4 + len;
        if (c->rs == c->re) {
            c->rs = c->re = 0;
            if (c->rcap > 4 * RB_INITIAL) {
                char *b = cn__realloc(c->rb, RB_INITIAL);
                if (b) {
                    c->rb = b;
                    c->rcap = RB_INITIAL;
                }
            }
        }
    }
    if (rc == -ETIMEDOUT)
        cn__dist_log(d, CN_LOG_WARN, "%s at %s sent nothing for %lld s (net_ticktime): down",
                     p->name, c->addr, (long long)(d->tick_ms / 1000));
    else
        cn__dist_log(d, CN_LOG_INFO, "connection to %s at %s ended: %s", p->name, c->addr,
                     why(c, rc));
}

/* The handshake succeeded: the peer is up, the writer drains its queue, this
 * process reads until the connection ends. */
static void run_up(conn_t *c)
{
    cn_dist_t *d = c->d;
    dist_peer_t *p = c->peer;
    c->rcap = RB_INITIAL;
    c->rb = cn__malloc(c->rcap);
    if (c->rb == NULL)
        return;
    p->state = PEER_UP;
    p->fd = c->fd;
    p->io = &c->io;
    snprintf(p->addr, sizeof(p->addr), "%s", c->addr);
    c->was_up = true;
    /* OpenSSL's record layer wants more stack than a plain write. */
    cn_spawn_opts_t so = { .flags = CN_SPAWN_LINK | CN_SPAWN_OWN_STACK,
                           .stack_size = c->io.tls ? 0 : 64 << 10 };
    if (cn_spawn(d->node, writer_main, p, &so, &p->writer) < 0)
        return;
    if (c->io.tls) {
        char t[400];
        cn__tls_conn_text(&c->io, t, sizeof(t));
        cn__dist_log(d, CN_LOG_INFO, "%s at %s: %s", p->name, c->addr, t);
    }
    cn__dist_peer_up(d, p);
    read_loop(c);
}

/* ---------------------------------------------------------------------------------
 * Connection processes
 * ------------------------------------------------------------------------------ */

static void dial_main(void *arg)
{
    conn_t *c = arg;
    cn_dist_t *d = c->d;
    dist_peer_t *p = c->peer;
    uint64_t deadline = cn_now_ms() + (uint64_t)d->setup_ms;
    char alive[256];
    const char *at = strchr(p->name, '@');
    snprintf(alive, sizeof(alive), "%.*s", (int)(at - p->name), p->name);
    struct sockaddr_in sa;
    int rc;
    if ((rc = cn__sock_resolve(at + 1, &sa)) < 0) {
        cn__dist_log(d, CN_LOG_WARN, "cannot connect to %s: unknown host %s", p->name, at + 1);
        return;
    }
    int port = cn__dist_peer_port_of(d, p->name);
    if (port == 0) {
        port = cn__epmd_port_please(&sa, d->epmd_port, alive, d->setup_ms);
        if (port < 0) {
            cn__dist_log(d, CN_LOG_WARN, "cannot connect to %s: EPMD at %s:%d: %s", p->name,
                         at + 1, d->epmd_port,
                         port == -ENOENT ? "name not registered" : cn_strerror(port));
            return;
        }
    }
    sa.sin_port = htons((uint16_t)port);
    snprintf(c->addr, sizeof(c->addr), "%s:%d", at + 1, port);
    if ((rc = cn__sock_connect(&sa, deadline, &c->fd)) < 0) {
        c->fd = -1;
        if (owns(c))
            cn__dist_log(d, CN_LOG_WARN, "cannot connect to %s at %s: %s", p->name, c->addr,
                         cn_strerror(rc));
        return;
    }
    cn__io_plain(&c->io, c->fd);
    if (d->tls && (rc = cn__tls_start(d->tls, &c->io, true, deadline)) < 0) {
        if (owns(c))
            cn__dist_log(d, rc == -EACCES ? CN_LOG_ERROR : CN_LOG_WARN,
                         "TLS handshake with %s at %s failed: %s", p->name, c->addr,
                         why(c, rc));
        return;
    }
    if (handshake_out(c, deadline) < 0)
        return;
    run_up(c);
}

static void accept_main(void *arg)
{
    conn_t *c = arg;
    cn_dist_t *d = c->d;
    uint64_t deadline = cn_now_ms() + (uint64_t)d->setup_ms;
    cn__sock_peer_text(c->fd, c->addr, sizeof(c->addr));
    int rc;
    if (d->tls && (rc = cn__tls_start(d->tls, &c->io, false, deadline)) < 0) {
        if (rc == -EACCES)
            cn__dist_log(d, CN_LOG_ERROR, "refused TLS connection from %s: %s", c->addr,
                         why(c, rc));
        else
            cn__dist_log(d, CN_LOG_WARN, "TLS handshake from %s failed: %s", c->addr,
                         why(c, rc));
        return;
    }
    if (handshake_in(c, deadline) < 0)
        return;
    run_up(c);
}

static conn_t *conn_new(cn_dist_t *d, dist_peer_t *p, int fd)
{
    conn_t *c = cn__calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->d = d;
    c->peer = p;
    c->fd = fd;
    cn__io_plain(&c->io, fd);
    snprintf(c->addr, sizeof(c->addr), "?");
    return c;
}

/* Spawn fn(c) with on_conn_exit as its exit hook from the start: a connection
 * process may be killed before it first runs (a simultaneous connect kills the
 * losing dial at once), and c must still be freed. On failure nothing runs and
 * c is freed. */
static int conn_spawn(cn_dist_t *d, cn_proc_fn fn, conn_t *c, cn_pid_t *out)
{
    cn_exit_hook_t *h = cn__malloc(sizeof(*h));
    if (h == NULL) {
        cn__free(c);
        return -ENOMEM;
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
    int rc = cn_spawn(d->node, fn, c, &so, &c->self);
    cn_proc_t *q = rc == 0 ? cn__proc_get(d->node, c->self) : NULL;
    if (q == NULL) {
        cn__free(h);
        cn__free(c);
        return rc < 0 ? rc : -ENOMEM;
    }
    h->fn = on_conn_exit;
    h->arg = c;
    h->id = 0; /* never cancelled */
    h->next = q->hooks;
    q->hooks = h;
    if (out)
        *out = c->self;
    return 0;
}

int cn__conn_dial(cn_dist_t *d, dist_peer_t *p)
{
    conn_t *c = conn_new(d, p, -1);
    if (c == NULL)
        return -ENOMEM;
    cn_pid_t pid;
    int rc = conn_spawn(d, dial_main, c, &pid);
    if (rc < 0)
        return rc;
    p->state = PEER_PENDING;
    p->conn = pid;
    p->outgoing = true;
    return 0;
}

int cn__conn_accept(cn_dist_t *d, int fd)
{
    conn_t *c = conn_new(d, NULL, fd);
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    int rc = conn_spawn(d, accept_main, c, NULL);
    if (rc < 0)
        close(fd);
    return rc;
}

void cn__dist_acceptor(void *arg)
{
    cn_dist_t *d = arg;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof ss;
        int fd = accept4(d->listen_fd, (struct sockaddr *)&ss, &sslen,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN) {
                if (cn_wait_fd(d->listen_fd, CN_READABLE, CN_INFINITY) < 0)
                    return;
                continue;
            }
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            cn__dist_log(d, CN_LOG_ERROR, "accept: %s", strerror(errno));
            cn_sleep(100); /* EMFILE and friends: don't spin */
            continue;
        }
        if (d->rl && !cn__dist_rl_allow(d, d->rl, (struct sockaddr *)&ss, sslen, cn_now_ms())) {
            close(fd); /* over this address's handshake rate */
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        cn__conn_accept(d, fd);
    }
}
