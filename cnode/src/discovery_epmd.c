/* discovery_epmd.c - the `epmd` strategy: every name the EPMD of each listed host
 * knows.
 *
 * ONEBLOG_CLUSTER_EPMD_HOSTS (opts.epmd_hosts) lists "host[:port]" entries (the
 * port is EPMD's, default the node's EPMD port). Each poll connects to every
 * EPMD in turn and sends NAMES_REQ; the reply is EPMD's port (4 bytes) and then
 * lines "name NAME at port PORT\n" until EPMD closes. Each NAME becomes
 * "NAME@host", with host spelled as in the list: EPMD does not know the host
 * part of names, so nodes must be named after the address or host name the
 * list uses (erl's epmd-based discovery has the same rule). A host that does
 * not answer is skipped for that round; the poll fails only when none answers.
 */
#include "cluster_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dist_int.h"

#define NAMES_MAX (64 << 10) /* bytes of reply we read at most */

int cn__epmd_parse_names(const char *text, size_t len, const char *host, cl_names_t *out)
{
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (nl == NULL)
            break; /* a partial last line is ignored */
        char line[512], name[256];
        int port;
        size_t n = (size_t)(nl - p);
        if (n < sizeof(line)) {
            memcpy(line, p, n);
            line[n] = '\0';
            if (sscanf(line, "name %255s at port %d", name, &port) == 2 &&
                strlen(name) + strlen(host) + 2 <= CN_CLUSTER_NAME_MAX) {
                char full[2 * CN_CLUSTER_NAME_MAX];
                snprintf(full, sizeof(full), "%s@%s", name, host);
                int rc = cn__names_add(out, full, 0);
                if (rc < 0)
                    return rc;
            }
        }
        p = nl + 1;
    }
    return 0;
}

/* Ask one EPMD. Returns 0 or a negative errno. */
static int ask(cn__cluster_t *c, const char *host, int port, cl_names_t *out)
{
    struct sockaddr_in sa;
    int rc = cn__sock_resolve(host, &sa);
    if (rc < 0)
        return rc;
    sa.sin_port = htons((uint16_t)port);
    uint64_t deadline = cn_now_ms() + 2000;
    int fd;
    if ((rc = cn__sock_connect(&sa, deadline, &fd)) < 0)
        return rc;
    static const uint8_t req[3] = { 0, 1, EPMD_NAMES_REQ };
    char *buf = cn__malloc(NAMES_MAX);
    size_t len = 0;
    if (buf == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = cn__sock_write_full(fd, req, sizeof(req), deadline)) < 0 ||
        (rc = cn__sock_read_full(fd, buf, 4, deadline)) < 0)
        goto out;
    /* Read to EOF (EPMD closes after the list). */
    for (;;) {
        ssize_t r = read(fd, buf + len, NAMES_MAX - 1 - len);
        if (r > 0) {
            len += (size_t)r;
            if (len == NAMES_MAX - 1)
                break;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN) {
            rc = -errno;
            goto out;
        }
        uint64_t now = cn_now_ms();
        if (now >= deadline || (rc = cn_wait_fd(fd, CN_READABLE, (int64_t)(deadline - now))) < 0) {
            rc = -ETIMEDOUT;
            goto out;
        }
    }
    rc = cn__epmd_parse_names(buf, len, host, out);
out:
    if (rc < 0)
        cn__cluster_log(c, CN_LOG_DEBUG, "epmd discovery: %s:%d: %s", host, port,
                        cn_strerror(rc));
    cn__free(buf);
    cn_fd_close(fd);
    return rc;
}

/* Split "host[:port]" into host and port (default dflt). */
static int split(const char *item, size_t len, char *host, size_t hcap, int dflt, int *port)
{
    const char *colon = memchr(item, ':', len);
    size_t hl = colon ? (size_t)(colon - item) : len;
    if (hl == 0 || hl >= hcap)
        return -EINVAL;
    memcpy(host, item, hl);
    host[hl] = '\0';
    *port = dflt;
    if (colon) {
        char num[8];
        size_t nl = len - hl - 1;
        if (nl == 0 || nl >= sizeof(num))
            return -EINVAL;
        memcpy(num, colon + 1, nl);
        num[nl] = '\0';
        char *end;
        long v = strtol(num, &end, 10);
        if (*end || v < 1 || v > 65535)
            return -EINVAL;
        *port = (int)v;
    }
    return 0;
}

static int epmd_default_port(cn__cluster_t *c)
{
    cn_dist_t *d = cn__dist_of(c->node);
    return d ? d->epmd_port : 4369;
}

/* Walk the list: each(c, host, port, arg) for every entry; stop on error. */
static int each_host(cn__cluster_t *c, int (*fn)(cn__cluster_t *, const char *, int, void *),
                     void *arg)
{
    const char *s = c->epmd_hosts;
    int dflt = epmd_default_port(c);
    while (*s) {
        while (*s == ',' || *s == ' ')
            s++;
        if (*s == '\0')
            break;
        const char *e = s;
        while (*e && *e != ',' && *e != ' ')
            e++;
        char host[256];
        int port, rc;
        if (split(s, (size_t)(e - s), host, sizeof(host), dflt, &port) < 0)
            return -EINVAL;
        if ((rc = fn(c, host, port, arg)) < 0)
            return rc;
        s = e;
    }
    return 0;
}

static int check_one(cn__cluster_t *c, const char *host, int port, void *arg)
{
    (void)c, (void)host, (void)port, (void)arg;
    return 0;
}

static int epmd_init(cn__cluster_t *c, void **state)
{
    *state = NULL;
    if (c->epmd_hosts == NULL || each_host(c, check_one, NULL) < 0) {
        cn__cluster_log(c, CN_LOG_ERROR, "epmd discovery: ONEBLOG_CLUSTER_EPMD_HOSTS "
                                         "missing or malformed (host[:port],...)");
        return -EINVAL;
    }
    return 0;
}

typedef struct poll_ctx {
    cl_names_t *out;
    int answered;
    int last_err;
} poll_ctx_t;

static int poll_one(cn__cluster_t *c, const char *host, int port, void *arg)
{
    poll_ctx_t *p = arg;
    int rc = ask(c, host, port, p->out);
    if (rc == 0)
        p->answered++;
    else if (rc == -ENOMEM)
        return rc;
    else
        p->last_err = rc;
    return 0;
}

static int epmd_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    (void)state;
    poll_ctx_t p = { out, 0, 0 };
    int rc = each_host(c, poll_one, &p);
    if (rc < 0)
        return rc;
    return p.answered ? 0 : (p.last_err ? p.last_err : 0);
}

const cn__discovery_t cn__discovery_epmd = {
    .name = "epmd",
    .init = epmd_init,
    .poll = epmd_poll,
};
