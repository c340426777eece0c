/* epmd.c - the Erlang Port Mapper: our client and a built-in server.
 *
 * EPMD maps a node's alive name to the port it listens on. A node registers with
 * ALIVE2_REQ over a connection it keeps open (closing it unregisters), and a node
 * that wants to dial asks PORT_PLEASE2_REQ. Requests are a 2-byte length and a
 * body; replies are not length-prefixed.
 *
 * The registration process (cn__epmd_registrar) connects to EPMD on the local
 * host; when nothing answers it starts the built-in server inside this node, as
 * erl starts epmd, and when the EPMD connection drops (epmd restarted) it
 * registers again after a short pause. The built-in server is a process that
 * accepts connections and runs one small process per connection; it speaks enough
 * of the protocol for erl, elixir and us: ALIVE2, PORT_PLEASE2 and NAMES.
 *
 * Request and reply parsing are pure functions, kept apart from the sockets.
 */
#include "dist_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EPMD_NODE_HIDDEN 72 /* "hidden node (C node)" in ALIVE2_REQ */

static uint16_t be16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* ---------------------------------------------------------------------------------
 * Pure parsers
 * ------------------------------------------------------------------------------ */

int cn__epmd_parse_req(const uint8_t *b, size_t len, cn_epmd_req_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < 1)
        return -EINVAL;
    out->op = b[0];
    switch (b[0]) {
    case EPMD_ALIVE2_REQ: {
        if (len < 13)
            return -EINVAL;
        out->port = be16(b + 1);
        out->type = b[3];
        out->proto = b[4];
        out->hi = be16(b + 5);
        out->lo = be16(b + 7);
        size_t nlen = be16(b + 9);
        if (nlen == 0 || nlen > 255 || 11 + nlen + 2 > len)
            return -EINVAL;
        memcpy(out->name, b + 11, nlen);
        out->name[nlen] = '\0';
        if (memchr(out->name, 0, nlen))
            return -EINVAL;
        size_t elen = be16(b + 11 + nlen);
        if (11 + nlen + 2 + elen != len)
            return -EINVAL;
        out->extra = b + 13 + nlen;
        out->extra_len = (int)elen;
        return 0;
    }
    case EPMD_PORT_PLEASE2_REQ:
        if (len < 2 || len - 1 > 255 || memchr(b + 1, 0, len - 1))
            return -EINVAL;
        memcpy(out->name, b + 1, len - 1);
        out->name[len - 1] = '\0';
        return 0;
    case EPMD_NAMES_REQ:
        return len == 1 ? 0 : -EINVAL;
    default:
        return -EINVAL;
    }
}

int cn__epmd_parse_port2(const uint8_t *b, size_t len, int *port, int *hi, int *lo)
{
    if (len < 2 || b[0] != EPMD_PORT2_RESP)
        return -EINVAL;
    if (b[1] != 0)
        return -ENOENT;
    if (len < 12)
        return -EINVAL;
    *port = be16(b + 2);
    *hi = be16(b + 6);
    *lo = be16(b + 8);
    size_t nlen = be16(b + 10);
    if (12 + nlen + 2 > len)
        return -EINVAL;
    return *port > 0 ? 0 : -EINVAL;
}

int cn__epmd_parse_alive2(const uint8_t *b, size_t len, uint32_t *creation)
{
    if (len < 2)
        return -EINVAL;
    if (b[0] == EPMD_ALIVE2_X_RESP) {
        if (b[1] != 0)
            return -EADDRINUSE;
        if (len < 6)
            return -EINVAL;
        *creation = (uint32_t)b[2] << 24 | (uint32_t)b[3] << 16 | (uint32_t)b[4] << 8 | b[5];
        return 0;
    }
    if (b[0] == EPMD_ALIVE2_RESP) {
        if (b[1] != 0)
            return -EADDRINUSE;
        if (len < 4)
            return -EINVAL;
        *creation = be16(b + 2);
        return 0;
    }
    return -EINVAL;
}

/* ---------------------------------------------------------------------------------
 * Client: PORT_PLEASE2 and the registration process
 * ------------------------------------------------------------------------------ */

/* Read until EOF or `cap` bytes; returns the count or a negative errno. */
static int read_to_eof(int fd, uint8_t *buf, size_t cap, uint64_t deadline)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        uint64_t now = cn_now_ms();
        if (now >= deadline)
            return -ETIMEDOUT;
        int rc = cn_wait_fd(fd, CN_READABLE, (int64_t)(deadline - now));
        if (rc < 0)
            return rc;
    }
    return (int)got;
}

int cn__epmd_port_please(const struct sockaddr_in *addr, int epmd_port, const char *alive,
                         int64_t timeout_ms)
{
    uint64_t deadline = cn_now_ms() + (uint64_t)timeout_ms;
    struct sockaddr_in sa = *addr;
    sa.sin_port = htons((uint16_t)epmd_port);
    size_t alen = strlen(alive);
    if (alen == 0 || alen > 255)
        return -EINVAL;
    uint8_t req[3 + 255];
    put16(req, (unsigned)(1 + alen));
    req[2] = EPMD_PORT_PLEASE2_REQ;
    memcpy(req + 3, alive, alen);
    int fd, rc;
    if ((rc = cn__sock_connect(&sa, deadline, &fd)) < 0)
        return rc;
    uint8_t resp[600];
    rc = cn__sock_write_full(fd, req, 3 + alen, deadline);
    if (rc == 0)
        rc = read_to_eof(fd, resp, sizeof(resp), deadline);
    cn_fd_close(fd);
    if (rc < 0)
        return rc;
    int port, hi, lo;
    int prc = cn__epmd_parse_port2(resp, (size_t)rc, &port, &hi, &lo);
    if (prc < 0)
        return prc == -ENOENT ? -ENOENT : -EPROTO;
    if (hi < 6 || lo > 6)
        return -EPROTO; /* no common handshake version */
    return port;
}

static void epmd_addr(cn_dist_t *d, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)d->epmd_port);
    const char *a = strcmp(d->listen_addr, "0.0.0.0") == 0 ? "127.0.0.1" : d->listen_addr;
    inet_pton(AF_INET, a, &sa->sin_addr);
}

/* One registration: returns when the EPMD connection is lost (0) or failed. */
static int register_once(cn_dist_t *d, bool *logged)
{
    struct sockaddr_in sa;
    epmd_addr(d, &sa);
    int fd, rc;
    rc = cn__sock_connect(&sa, cn_now_ms() + 3000, &fd);
    if (rc == -ECONNREFUSED && d->builtin_epmd && d->epmd_srv_fd < 0) {
        int src = cn__epmd_server_start(d);
        if (src == 0)
            cn__dist_log(d, CN_LOG_INFO, "no EPMD answered on port %d: started the built-in one",
                         d->epmd_port);
        rc = cn__sock_connect(&sa, cn_now_ms() + 3000, &fd);
    }
    if (rc < 0) {
        if (!*logged)
            cn__dist_log(d, CN_LOG_WARN, "cannot reach EPMD on port %d: %s; retrying",
                         d->epmd_port, cn_strerror(rc));
        *logged = true;
        return rc;
    }
    size_t nlen = strlen(d->alive);
    uint8_t req[2 + 13 + 255];
    put16(req, (unsigned)(13 + nlen));
    req[2] = EPMD_ALIVE2_REQ;
    put16(req + 3, (unsigned)d->listen_port);
    req[5] = EPMD_NODE_HIDDEN;
    req[6] = 0; /* tcp/ipv4 */
    put16(req + 7, 6);
    put16(req + 9, 6);
    put16(req + 11, (unsigned)nlen);
    memcpy(req + 13, d->alive, nlen);
    put16(req + 13 + nlen, 0);
    uint64_t deadline = cn_now_ms() + 5000;
    uint8_t resp[6];
    uint32_t creation = 0;
    rc = cn__sock_write_full(fd, req, 15 + nlen, deadline);
    if (rc == 0)
        rc = cn__sock_read_full(fd, resp, 2, deadline);
    if (rc == 0 && resp[1] == 0)
        rc = cn__sock_read_full(fd, resp + 2, resp[0] == EPMD_ALIVE2_X_RESP ? 4 : 2, deadline);
    if (rc == 0)
        rc = cn__epmd_parse_alive2(resp, resp[1] == 0 ? (resp[0] == EPMD_ALIVE2_X_RESP ? 6 : 4) : 2,
                                   &creation);
    if (rc < 0) {
        if (!*logged)
            cn__dist_log(d, CN_LOG_ERROR, "EPMD on port %d refused to register %s: %s; retrying",
                         d->epmd_port, d->alive,
                         rc == -EADDRINUSE ? "name in use" : cn_strerror(rc));
        *logged = true;
        cn_fd_close(fd);
        return rc;
    }
    *logged = false;
    cn__dist_log(d, CN_LOG_INFO, "registered %s (port %d) with EPMD on port %d",
                 d->alive, d->listen_port, d->epmd_port);
    /* Keep the connection: EPMD forgets us when it closes. Wait for that. */
    for (;;) {
        char junk[64];
        ssize_t r = read(fd, junk, sizeof(junk));
        if (r > 0 || (r < 0 && errno == EINTR))
            continue;
        if (r < 0 && errno == EAGAIN) {
            if (cn_wait_fd(fd, CN_READABLE, CN_INFINITY) < 0)
                break;
            continue;
        }
        break;
    }
    cn_fd_close(fd);
    cn__dist_log(d, CN_LOG_WARN, "lost the EPMD connection; registering again");
    return 0;
}

void cn__epmd_registrar(void *arg)
{
    cn_dist_t *d = arg;
    bool logged = false;
    for (;;) {
        register_once(d, &logged);
        cn_sleep(d->epmd_retry_ms);
    }
}

/* ---------------------------------------------------------------------------------
 * Built-in server
 * ------------------------------------------------------------------------------ */

typedef struct srv_ent {
    struct srv_ent *next;
    cn_pid_t owner;          /* the connection process that registered it */
    char name[256];
    int port, type, proto, hi, lo;
} srv_ent_t;

typedef struct srv {
    srv_ent_t *ents;
    uint32_t creation;
} srv_t;

typedef struct srv_conn {
    cn_dist_t *d;
    int fd;
} srv_conn_t;

static srv_ent_t *srv_find(srv_t *s, const char *name)
{
    for (srv_ent_t *e = s->ents; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

static void on_srv_conn_exit(void *arg)
{
    srv_conn_t *c = arg;
    cn_fd_close(c->fd);
    cn__free(c);
}

/* Drop the entry owned by `owner`. */
static void srv_unregister(srv_t *s, cn_pid_t owner)
{
    for (srv_ent_t **pp = &s->ents; *pp; pp = &(*pp)->next) {
        if (cn_pid_eq((*pp)->owner, owner)) {
            srv_ent_t *e = *pp;
            *pp = e->next;
            cn__free(e);
            return;
        }
    }
}

typedef struct srv_reg {
    srv_t *s;
    cn_pid_t owner;
} srv_reg_t;

static void on_srv_reg_exit(void *arg)
{
    srv_reg_t *r = arg;
    srv_unregister(r->s, r->owner);
    cn__free(r);
}

static void srv_conn_main(void *arg)
{
    srv_conn_t *c = arg;
    cn_dist_t *d = c->d;
    srv_t *s = d->epmd_srv;
    if (cn_on_exit(on_srv_conn_exit, c) < 0) {
        cn_fd_close(c->fd);
        cn__free(c);
        return;
    }
    uint64_t deadline = cn_now_ms() + 10000;
    uint8_t hdr[2], body[1024];
    if (cn__sock_read_full(c->fd, hdr, 2, deadline) < 0)
        return;
    size_t len = be16(hdr);
    if (len == 0 || len > sizeof(body) || cn__sock_read_full(c->fd, body, len, deadline) < 0)
        return;
    cn_epmd_req_t req;
    if (cn__epmd_parse_req(body, len, &req) < 0)
        return;
    uint8_t out[1024];
    size_t olen = 0;
    switch (req.op) {
    case EPMD_ALIVE2_REQ: {
        bool x = req.hi >= 6;
        out[0] = x ? EPMD_ALIVE2_X_RESP : EPMD_ALIVE2_RESP;
        srv_ent_t *e = srv_find(s, req.name) ? NULL : cn__calloc(1, sizeof(*e));
        srv_reg_t *r = e ? cn__malloc(sizeof(*r)) : NULL;
        if (e == NULL || r == NULL) {
            cn__free(e);
            out[1] = 1;
            memset(out + 2, 0, 4);
            cn__sock_write_full(c->fd, out, x ? 6 : 4, deadline);
            return;
        }
        uint32_t cr = ++s->creation;
        if (cr == 0)
            cr = ++s->creation;
        e->owner = cn_self();
        memcpy(e->name, req.name, sizeof(e->name));
        e->port = req.port;
        e->type = req.type;
        e->proto = req.proto;
        e->hi = req.hi;
        e->lo = req.lo;
        e->next = s->ents;
        s->ents = e;
        r->s = s;
        r->owner = e->owner;
        if (cn_on_exit(on_srv_reg_exit, r) < 0) {
            srv_unregister(s, e->owner);
            cn__free(r);
            return;
        }
        out[1] = 0;
        if (x) {
            out[2] = (uint8_t)(cr >> 24);
            out[3] = (uint8_t)(cr >> 16);
            out[4] = (uint8_t)(cr >> 8);
            out[5] = (uint8_t)cr;
        } else {
            put16(out + 2, (cr & 0x3) ? (cr & 0x3) : 1);
        }
        if (cn__sock_write_full(c->fd, out, x ? 6 : 4, deadline) < 0)
            return;
        /* Registered while this connection lasts. */
        for (;;) {
            ssize_t r2 = read(c->fd, body, sizeof(body));
            if (r2 > 0 || (r2 < 0 && errno == EINTR))
                continue;
            if (r2 < 0 && errno == EAGAIN && cn_wait_fd(c->fd, CN_READABLE, CN_INFINITY) > 0)
                continue;
            return;
        }
    }
    case EPMD_PORT_PLEASE2_REQ: {
        srv_ent_t *e = srv_find(s, req.name);
        out[0] = EPMD_PORT2_RESP;
        if (e == NULL) {
            out[1] = 1;
            olen = 2;
        } else {
            size_t nl = strlen(e->name);
            out[1] = 0;
            put16(out + 2, (unsigned)e->port);
            out[4] = (uint8_t)e->type;
            out[5] = (uint8_t)e->proto;
            put16(out + 6, (unsigned)e->hi);
            put16(out + 8, (unsigned)e->lo);
            put16(out + 10, (unsigned)nl);
            memcpy(out + 12, e->name, nl);
            put16(out + 12 + nl, 0);
            olen = 14 + nl;
        }
        cn__sock_write_full(c->fd, out, olen, deadline);
        return;
    }
    case EPMD_NAMES_REQ: {
        uint32_t p = (uint32_t)d->epmd_port;
        uint8_t pb[4] = { (uint8_t)(p >> 24), (uint8_t)(p >> 16), (uint8_t)(p >> 8), (uint8_t)p };
        if (cn__sock_write_full(c->fd, pb, 4, deadline) < 0)
            return;
        for (srv_ent_t *e = s->ents; e; e = e->next) {
            char line[320];
            int n = snprintf(line, sizeof(line), "name %s at port %d\n", e->name, e->port);
            if (cn__sock_write_full(c->fd, line, (size_t)n, deadline) < 0)
                return;
        }
        return;
    }
    default:
        return;
    }
}

static void srv_main(void *arg)
{
    cn_dist_t *d = arg;
    for (;;) {
        int fd = accept4(d->epmd_srv_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) {
                if (errno == EAGAIN && cn_wait_fd(d->epmd_srv_fd, CN_READABLE, CN_INFINITY) < 0)
                    return;
                continue;
            }
            cn__dist_log(d, CN_LOG_ERROR, "built-in EPMD: accept: %s", strerror(errno));
            cn_sleep(100);
            continue;
        }
        srv_conn_t *c = cn__malloc(sizeof(*c));
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->d = d;
        c->fd = fd;
        if (cn_spawn(cn_node_self(), srv_conn_main, c, NULL, NULL) < 0) {
            close(fd);
            cn__free(c);
        }
    }
}

int cn__epmd_server_start(cn_dist_t *d)
{
    int fd, rc;
    if ((rc = cn__sock_listen(d->listen_addr, d->epmd_port, 128, &fd, NULL)) < 0)
        return rc;
    srv_t *s = d->epmd_srv ? d->epmd_srv : cn__calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return -ENOMEM;
    }
    /* Creations handed out start from the clock, so a restarted EPMD does not
     * give a re-registering node the creation it had before. */
    s->creation = (uint32_t)cn_now_ms();
    d->epmd_srv = s;
    d->epmd_srv_fd = fd;
    if ((rc = cn_spawn(cn_node_self(), srv_main, d, NULL, NULL)) < 0) {
        close(fd);
        d->epmd_srv_fd = -1;
        return rc;
    }
    return 0;
}

void cn__epmd_server_free(cn_dist_t *d)
{
    srv_t *s = d->epmd_srv;
    if (s == NULL)
        return;
    while (s->ents) {
        srv_ent_t *e = s->ents;
        s->ents = e->next;
        cn__free(e);
    }
    cn__free(s);
    d->epmd_srv = NULL;
}
