/* http_server.c - the HTTP server: configuration, the listening socket, the
 * listener process, the connection cap and graceful shutdown.
 *
 * The listener accepts until accept4() would block, then parks on the listening
 * socket. Each accepted socket gets a connection record (http_conn.c) and its own
 * process; past max_connections the socket is answered 503 at once, without a
 * process, and closed. The server keeps a list of its connections so that a stop
 * can find the idle ones and, at the deadline, the stragglers.
 *
 * Stopping: cn_http_server_stop() marks the server, wakes the listener by shutting
 * its socket down (a Linux listening socket wakes its waiters on shutdown), and
 * shuts the read side of idle keep-alive connections, whose processes then see EOF
 * and exit. Busy connections finish their request with Connection: close. The
 * listener closes its socket, waits for the connections up to the deadline, then
 * shuts the rest down, and as a last resort kills their processes (their exit
 * hooks free them).
 */
#include "http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cnode_int.h"

void cn_http_config_init(cn_http_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->host = "127.0.0.1";
    cfg->backlog = 511;
    cfg->max_header_bytes = 8192;
    cfg->max_headers = 64;
    cfg->max_body_bytes = 1u << 20;
    cfg->max_connections = 10000;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->write_timeout_ms = 30000;
    cfg->shutdown_timeout_ms = 10000;
    cfg->gzip = true;
    cfg->gzip_min_bytes = 1024;
    cfg->server_name = "cnode";
    cfg->conn_spawn_flags = CN_SPAWN_OWN_STACK;
}

/* Fill zero fields with defaults, check the rest. */
static int config_fix(cn_http_config_t *c)
{
    cn_http_config_t d;
    cn_http_config_init(&d);
    if (c->host == NULL)
        c->host = d.host;
    if (c->backlog <= 0)
        c->backlog = d.backlog;
    if (c->max_header_bytes == 0)
        c->max_header_bytes = d.max_header_bytes;
    if (c->max_headers == 0)
        c->max_headers = d.max_headers;
    if (c->max_body_bytes == 0)
        c->max_body_bytes = d.max_body_bytes;
    if (c->max_connections == 0)
        c->max_connections = d.max_connections;
    if (c->header_timeout_ms <= 0)
        c->header_timeout_ms = d.header_timeout_ms;
    if (c->body_timeout_ms <= 0)
        c->body_timeout_ms = d.body_timeout_ms;
    if (c->idle_timeout_ms <= 0)
        c->idle_timeout_ms = d.idle_timeout_ms;
    if (c->write_timeout_ms <= 0)
        c->write_timeout_ms = d.write_timeout_ms;
    if (c->shutdown_timeout_ms <= 0)
        c->shutdown_timeout_ms = d.shutdown_timeout_ms;
    if (c->server_name == NULL)
        c->server_name = d.server_name;
    if (c->max_header_bytes < 256 || c->max_header_bytes > (64u << 20) ||
        c->max_headers > 100000 || (c->nroutes && c->routes == NULL) ||
        strlen(c->server_name) > 60 || strpbrk(c->server_name, "\r\n"))
        return -EINVAL;
    for (size_t i = 0; i < c->nroutes; i++)
        if (c->routes[i].pattern == NULL || c->routes[i].pattern[0] != '/' ||
            c->routes[i].handler == NULL)
            return -EINVAL;
    return 0;
}

int cn__http_server_new(const cn_http_config_t *cfg, cn_http_server_t **out)
{
    cn_http_server_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    if (cfg)
        s->cfg = *cfg;
    else
        cn_http_config_init(&s->cfg);
    int rc = config_fix(&s->cfg);
    if (rc < 0) {
        cn__free(s);
        return rc;
    }
    s->lfd = -1;
    if (s->cfg.server_name[0])
        s->server_hdr_len = (size_t)snprintf(s->server_hdr, sizeof(s->server_hdr),
                                             "Server: %s\r\n", s->cfg.server_name);
    *out = s;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * Dates
 * ------------------------------------------------------------------------------ */

static const char wdays[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

void cn__http_fmt_date(time_t t, char *buf)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    /* By hand rather than strftime: %a and %b follow the locale. */
    int y = (tm.tm_year + 1900) % 10000;
    memcpy(buf, wdays[tm.tm_wday % 7], 3);
    buf[3] = ',';
    buf[4] = ' ';
    buf[5] = (char)('0' + tm.tm_mday / 10);
    buf[6] = (char)('0' + tm.tm_mday % 10);
    buf[7] = ' ';
    memcpy(buf + 8, months[tm.tm_mon % 12], 3);
    buf[11] = ' ';
    buf[12] = (char)('0' + y / 1000);
    buf[13] = (char)('0' + y / 100 % 10);
    buf[14] = (char)('0' + y / 10 % 10);
    buf[15] = (char)('0' + y % 10);
    buf[16] = ' ';
    buf[17] = (char)('0' + tm.tm_hour / 10);
    buf[18] = (char)('0' + tm.tm_hour % 10);
    buf[19] = ':';
    buf[20] = (char)('0' + tm.tm_min / 10);
    buf[21] = (char)('0' + tm.tm_min % 10);
    buf[22] = ':';
    buf[23] = (char)('0' + tm.tm_sec / 10 % 10);
    buf[24] = (char)('0' + tm.tm_sec % 10);
    memcpy(buf + 25, " GMT", 5);
}

time_t cn__http_parse_date(const char *s)
{
    /* IMF-fixdate only: "Sun, 06 Nov 1994 08:49:37 GMT" (what we send, and what
     * clients echo back in If-Modified-Since). */
    char wd[4], mon[4];
    int d, y, h, mi, sec, n = 0;
    if (sscanf(s, "%3s, %2d %3s %4d %2d:%2d:%2d GMT%n", wd, &d, mon, &y, &h, &mi, &sec, &n) != 7 ||
        n == 0)
        return -1;
    int m = -1;
    for (int i = 0; i < 12; i++)
        if (strcmp(mon, months[i]) == 0)
            m = i;
    if (m < 0 || d < 1 || d > 31 || y < 1970 || h > 23 || mi > 59 || sec > 60)
        return -1;
    struct tm tm = { 0 };
    tm.tm_year = y - 1900;
    tm.tm_mon = m;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return timegm(&tm);
}

const char *cn__http_date_hdr(cn_http_server_t *s, size_t *len)
{
    time_t now = time(NULL);
    if (now != s->date_sec || s->date_hdr_len == 0) {
        char d[30];
        cn__http_fmt_date(now, d);
        s->date_hdr_len = (size_t)snprintf(s->date_hdr, sizeof(s->date_hdr), "Date: %s\r\n", d);
        s->date_sec = now;
    }
    *len = s->date_hdr_len;
    return s->date_hdr;
}

/* ---------------------------------------------------------------------------------
 * Listening and accepting
 * ------------------------------------------------------------------------------ */

static int listen_socket(cn_http_server_t *s)
{
    struct sockaddr_storage ss = { 0 };
    socklen_t slen;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, s->cfg.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons(s->cfg.port);
        slen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, s->cfg.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons(s->cfg.port);
        slen = sizeof(*a6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    int rc = 0;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        (s->cfg.reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
        bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, s->cfg.backlog) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    slen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    s->port = ntohs(ss.ss_family == AF_INET ? a4->sin_port : a6->sin6_port);
    s->lfd = fd;
    return 0;
}

/* Past the connection cap: answer 503 without a process and close. The write is
 * best effort (a fresh socket's buffer has room for it). */
static void refuse(cn_http_server_t *s, int fd)
{
    size_t dlen;
    const char *date = cn__http_date_hdr(s, &dlen);
    static const char body[] = "503 Service Unavailable\n";
    char buf[256];
    int n = snprintf(buf, sizeof(buf),
                     "HTTP/1.1 503 Service Unavailable\r\n%s%.*sRetry-After: 1\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     s->server_hdr, (int)dlen, date, sizeof(body) - 1, body);
    if (n > 0 && send(fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* Nothing to do: the client goes away either way. */
    }
    close(fd);
}

static void accepted(cn_http_server_t *s, int fd, const struct sockaddr_storage *peer,
                     socklen_t plen)
{
    if (s->nconns >= s->cfg.max_connections) {
        refuse(s, fd);
        return;
    }
    int one = 1;
    /* One write per response already: Nagle would only add latency. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    cn__http_conn_t *c = cn__http_conn_new(s, fd, NULL, NULL);
    if (c == NULL) {
        refuse(s, fd);
        return;
    }
    memcpy(&c->peer, peer, plen);
    c->peerlen = plen;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    cn_spawn_opts_t o = { 0 };
    o.flags = s->cfg.conn_spawn_flags & CN_SPAWN_OWN_STACK;
    o.stack_size = s->cfg.conn_stack_size;
    if (cn_spawn(s->node, cn__http_conn_proc, c, &o, NULL) < 0) {
        c->fd = -1; /* not registered with the poller yet: a plain close */
        cn__http_conn_free(c);
        refuse(s, fd);
    }
}

/* Wait for the connections to go, then cut them, then kill them. */
static void drain(cn_http_server_t *s)
{
    while (s->nconns > 0 && cn_now_ms() < s->stop_deadline)
        cn_sleep(10);
    for (cn__http_conn_t *c = s->conns; c; c = c->next)
        if (c->fd >= 0)
            shutdown(c->fd, SHUT_RDWR);
    for (int i = 0; i < 100 && s->nconns > 0; i++)
        cn_sleep(10);
    /* Still there: stuck in a handler that does no I/O. Their exit hooks free
     * them when the scheduler carries out the kills. */
    for (cn__http_conn_t *c = s->conns; c; c = c->next)
        cn_exit_pid(c->pid, "kill");
    for (int i = 0; i < 1000 && s->nconns > 0; i++)
        cn_yield();
}

static void listener_proc(void *arg)
{
    cn_http_server_t *s = arg;
    int batch = 0;
    while (!s->stopping) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        int fd = accept4(s->lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            accepted(s, fd, &peer, plen);
            /* Let the new connections run now and then during a flood. */
            if (++batch % 64 == 0)
                cn_yield();
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            batch = 0;
            int rc = cn_wait_fd(s->lfd, CN_READABLE, CN_INFINITY);
            if (rc < 0 && rc != -ETIMEDOUT)
                break;
        } else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            cn_sleep(10); /* out of descriptors or memory: let connections close */
        } else if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO) {
            break; /* EINVAL after a stop's shutdown(), or a real error */
        }
    }
    if (!s->stopping) {
        s->stopping = true;
        s->stop_deadline = cn_now_ms() + (uint64_t)s->cfg.shutdown_timeout_ms;
    }
    cn_fd_close(s->lfd);
    s->lfd = -1;
    drain(s);
    s->done = true;
}

int cn_http_server_start(cn_node_t *node, const cn_http_config_t *cfg, cn_http_server_t **out)
{
    if (node == NULL)
        return -EINVAL;
    cn_http_server_t *s;
    int rc = cn__http_server_new(cfg, &s);
    if (rc < 0)
        return rc;
    s->node = node;
    if ((rc = listen_socket(s)) < 0)
        goto fail;
    if ((rc = cn_spawn(node, listener_proc, s, NULL, &s->listener)) < 0)
        goto fail;
    s->listening = true;
    *out = s;
    return 0;
fail:
    if (s->lfd >= 0)
        close(s->lfd);
    cn__free(s);
    return rc;
}

uint16_t cn_http_server_port(const cn_http_server_t *s)
{
    return s->port;
}

size_t cn_http_server_connections(const cn_http_server_t *s)
{
    return s->nconns;
}

bool cn_http_server_done(const cn_http_server_t *s)
{
    return s->done;
}

int cn_http_server_stop(cn_http_server_t *s)
{
    if (s->stopping)
        return -EALREADY;
    s->stopping = true;
    s->stop_deadline = cn_now_ms() + (uint64_t)s->cfg.shutdown_timeout_ms;
    if (s->lfd >= 0)
        shutdown(s->lfd, SHUT_RDWR); /* wakes the listener; it closes the socket */
    for (cn__http_conn_t *c = s->conns; c; c = c->next)
        if (c->idle_wait && c->fd >= 0)
            shutdown(c->fd, SHUT_RD);
    return 0;
}

void cn_http_server_free(cn_http_server_t *s)
{
    if (s == NULL)
        return;
    /* Connections left (the node was freed with them parked) are freed by their
     * processes' exit hooks; none should remain once the node is gone. */
    if (s->lfd >= 0)
        close(s->lfd);
    cn__free(s);
}
