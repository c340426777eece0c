/* discovery_gossip.c - the `gossip` strategy: authenticated UDP heartbeats.
 *
 * Every node sends a heartbeat every gossip_interval_ms to a broadcast address
 * (e.g. 10.77.0.255, or 127.255.255.255 on loopback) or a multicast group
 * (224.0.0.0/4: joined on the gossip_bind interface, TTL 1, loop on), on one UDP
 * port shared by all (SO_REUSEADDR, bound to 0.0.0.0 so broadcasts arrive).
 * A node heard from within the last 3 intervals + 1 s is listed; a node that
 * stops sending leaves the list. A node heard for the first time makes the
 * discovery poll at once and brings our next heartbeat forward to within
 * EARLY_MS, so a new node is in the mesh within a round trip rather than an
 * interval.
 *
 * Packet (network byte order), version 1:
 *
 *     0  "OBG1"          magic and version
 *     4  u64 time        sender's wall clock, ms since the epoch
 *    12  16 bytes nonce  random per packet
 *    28  u16 port        the sender's distribution port
 *    30  u8 len          length of the node name
 *    31  name            "alive@host"
 *  31+len 32 bytes       HMAC-SHA256(secret, bytes 0 .. 31+len)
 *
 * A packet is accepted only if the HMAC matches (constant-time compare), the
 * time is within gossip_window_s of ours, its time is later than the last one
 * accepted from that name, and its nonce was not seen before (a ring of recent
 * nonces): a captured heartbeat cannot be replayed, in or out of the window. A
 * bad HMAC is logged (at most one line a second, with a count) and ignored.
 * The secret comes from ONEBLOG_CLUSTER_GOSSIP_SECRET or the file named by
 * ONEBLOG_CLUSTER_GOSSIP_SECRET_FILE (trailing newline dropped).
 */
#include "cluster_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define NONCE_RING 4096
#define HB_MAX (31 + 255 + 32)
#define EARLY_MS 20 /* heartbeat delay after a newcomer is heard */

typedef struct gpeer {
    char name[CN_CLUSTER_NAME_MAX];
    int port;
    uint64_t last_seen;      /* node clock, ms */
    uint64_t last_ts;        /* sender's clock of the last accepted packet, ms */
} gpeer_t;

typedef struct gossip {
    cn__cluster_t *c;
    int fd;
    struct sockaddr_in dest;
    char *secret;
    size_t secret_len;
    gpeer_t *peers;
    int npeers, cappeers;
    uint8_t (*nonces)[16];   /* ring of NONCE_RING recent nonces */
    int nonce_next;
    uint64_t next_send;      /* node clock of the next heartbeat */
    uint64_t bad_logged;     /* node clock of the last "bad HMAC" line */
    uint32_t bad_count;      /* bad packets since that line */
    uint64_t sent, accepted, rejected; /* counters for tests and logs */
} gossip_t;

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------
 * Packets (pure: exposed for unit tests through cluster_int.h)
 * ------------------------------------------------------------------------------ */

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

int cn__gossip_build(uint8_t *buf, size_t cap, const char *secret, size_t slen,
                     uint64_t ts, const uint8_t nonce[16], int port, const char *name)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl > 255 || cap < 31 + nl + 32)
        return -EINVAL;
    memcpy(buf, "OBG1", 4);
    put64(buf + 4, ts);
    memcpy(buf + 12, nonce, 16);
    buf[28] = (uint8_t)(port >> 8);
    buf[29] = (uint8_t)port;
    buf[30] = (uint8_t)nl;
    memcpy(buf + 31, name, nl);
    unsigned int mlen = 32;
    if (HMAC(EVP_sha256(), secret, (int)slen, buf, 31 + nl, buf + 31 + nl, &mlen) == NULL)
        return -ENOMEM;
    return (int)(31 + nl + 32);
}

int cn__gossip_parse(const uint8_t *buf, size_t len, const char *secret, size_t slen,
                     cn__gossip_hb_t *out)
{
    if (len < 31 + 1 + 32 || memcmp(buf, "OBG1", 4) != 0)
        return -EPROTO;
    size_t nl = buf[30];
    if (nl == 0 || len != 31 + nl + 32)
        return -EPROTO;
    uint8_t mac[32];
    unsigned int mlen = 32;
    if (HMAC(EVP_sha256(), secret, (int)slen, buf, 31 + nl, mac, &mlen) == NULL)
        return -ENOMEM;
    if (CRYPTO_memcmp(mac, buf + 31 + nl, 32) != 0)
        return -EBADMSG;
    out->ts = get64(buf + 4);
    memcpy(out->nonce, buf + 12, 16);
    out->port = buf[28] << 8 | buf[29];
    memcpy(out->name, buf + 31, nl);
    out->name[nl] = '\0';
    if (memchr(out->name, '\0', nl) || !strchr(out->name, '@'))
        return -EPROTO;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * The gossip process
 * ------------------------------------------------------------------------------ */

static void send_hb(gossip_t *g)
{
    uint8_t buf[HB_MAX], nonce[16];
    if (getrandom(nonce, sizeof(nonce), 0) != sizeof(nonce))
        return;
    int n = cn__gossip_build(buf, sizeof(buf), g->secret, g->secret_len, wall_ms(), nonce,
                             cn_dist_listen_port(g->c->node), g->c->node->name);
    if (n < 0)
        return;
    if (sendto(g->fd, buf, (size_t)n, 0, (struct sockaddr *)&g->dest, sizeof(g->dest)) == n)
        g->sent++;
}

static bool nonce_seen(gossip_t *g, const uint8_t nonce[16])
{
    for (int i = 0; i < NONCE_RING; i++)
        if (memcmp(g->nonces[i], nonce, 16) == 0)
            return true;
    memcpy(g->nonces[g->nonce_next], nonce, 16);
    g->nonce_next = (g->nonce_next + 1) % NONCE_RING;
    return false;
}

static gpeer_t *gpeer(gossip_t *g, const char *name, bool create)
{
    for (int i = 0; i < g->npeers; i++)
        if (strcmp(g->peers[i].name, name) == 0)
            return &g->peers[i];
    if (!create)
        return NULL;
    if (g->npeers == g->cappeers) {
        int cap = g->cappeers ? g->cappeers * 2 : 16;
        gpeer_t *a = cn__realloc(g->peers, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return NULL;
        g->peers = a;
        g->cappeers = cap;
    }
    gpeer_t *p = &g->peers[g->npeers++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    return p;
}

static uint64_t expiry_ms(gossip_t *g)
{
    return 3 * (uint64_t)g->c->gossip_interval_ms + 1000;
}

static void on_packet(gossip_t *g, const uint8_t *buf, size_t len, const struct sockaddr_in *from)
{
    cn__cluster_t *c = g->c;
    cn__gossip_hb_t hb;
    char src[64];
    inet_ntop(AF_INET, &from->sin_addr, src, sizeof(src));
    int rc = cn__gossip_parse(buf, len, g->secret, g->secret_len, &hb);
    if (rc == -EBADMSG || rc == -EPROTO) {
        g->rejected++;
        g->bad_count++;
        uint64_t now = cn_now_ms();
        if (g->bad_logged == 0 || now - g->bad_logged >= 1000) {
            cn__cluster_log(c, CN_LOG_WARN,
                            "gossip: %s packet from %s:%d (%zu bytes), ignored (%u since last report)",
                            rc == -EBADMSG ? "bad HMAC in" : "malformed", src,
                            ntohs(from->sin_port), len, g->bad_count);
            g->bad_logged = now;
            g->bad_count = 0;
        }
        return;
    }
    if (rc < 0 || strcmp(hb.name, c->node->name) == 0)
        return; /* our own echo */
    uint64_t now_wall = wall_ms(), window = (uint64_t)c->gossip_window_s * 1000;
    uint64_t skew = hb.ts > now_wall ? hb.ts - now_wall : now_wall - hb.ts;
    gpeer_t *p = gpeer(g, hb.name, false);
    const char *why = skew > window                 ? "outside the time window"
                      : p && hb.ts <= p->last_ts    ? "older than the last one (replay)"
                      : nonce_seen(g, hb.nonce)     ? "nonce seen before (replay)"
                                                    : NULL;
    if (why) {
        g->rejected++;
        cn__cluster_log(c, CN_LOG_DEBUG, "gossip: heartbeat of %s from %s %s, ignored", hb.name,
                        src, why);
        return;
    }
    bool is_new = p == NULL || cn_now_ms() - p->last_seen > expiry_ms(g);
    if (p == NULL && (p = gpeer(g, hb.name, true)) == NULL)
        return;
    p->last_ts = hb.ts;
    p->last_seen = cn_now_ms();
    p->port = hb.port;
    g->accepted++;
    if (is_new) {
        cn__cluster_log(c, CN_LOG_DEBUG, "gossip: new node %s at %s", hb.name, src);
        cn__cluster_poll_now(c);
        /* Let the newcomer learn about us now rather than at our next beat: its
         * own first heartbeat may have gone out before our socket existed. A
         * burst of newcomers shares one early heartbeat. */
        if (g->next_send > cn_now_ms() + EARLY_MS)
            g->next_send = cn_now_ms() + EARLY_MS;
    }
}

static void gossip_main(void *arg)
{
    gossip_t *g = arg;
    cn__cluster_t *c = g->c;
    if (cn_on_exit(cn__cluster_unref, c) < 0) {
        cn__cluster_unref(c);
        return;
    }
    g->next_send = cn_now_ms();
    for (;;) {
        uint64_t now = cn_now_ms();
        if (now >= g->next_send) {
            send_hb(g);
            g->next_send = now + (uint64_t)c->gossip_interval_ms;
        }
        for (int errs = 0;;) {
            uint8_t buf[2048];
            struct sockaddr_in from;
            socklen_t fl = sizeof(from);
            ssize_t r = recvfrom(g->fd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    break;
                /* A pending socket error (an ICMP report after a link went down)
                 * is returned once; packets may be queued behind it, and with an
                 * edge-triggered wait they must be read now. */
                if (errno == EINTR || ++errs < 8)
                    continue;
                break;
            }
            on_packet(g, buf, (size_t)r, &from);
        }
        now = cn_now_ms();
        if (g->next_send > now) {
            int rc = cn_wait_fd(g->fd, CN_READABLE, (int64_t)(g->next_send - now));
            if (rc == -EBADF)
                return; /* the socket was closed: discovery is stopping */
            if (rc < 0 && rc != -ETIMEDOUT) {
                cn__cluster_log(c, CN_LOG_WARN, "gossip discovery: waiting on the socket: %s",
                                cn_strerror(rc));
                cn_sleep(100);
            }
        }
    }
}

/* ---------------------------------------------------------------------------------
 * Strategy
 * ------------------------------------------------------------------------------ */

static void gossip_free(void *state)
{
    gossip_t *g = state;
    if (g == NULL)
        return;
    if (g->fd >= 0)
        cn_fd_close(g->fd);
    if (g->secret)
        OPENSSL_cleanse(g->secret, g->secret_len);
    free(g->secret);
    cn__free(g->peers);
    cn__free(g->nonces);
    cn__free(g);
}

static char *read_secret_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    char *s = n ? strdup(buf) : NULL;
    OPENSSL_cleanse(buf, sizeof(buf));
    return s;
}

static int gossip_init(cn__cluster_t *c, void **state)
{
    *state = NULL;
    const char *sf = getenv("ONEBLOG_CLUSTER_GOSSIP_SECRET_FILE");
    char *secret = c->gossip_secret ? strdup(c->gossip_secret)
                   : sf && *sf      ? read_secret_file(sf)
                                    : NULL;
    if (secret == NULL || *secret == '\0') {
        cn__cluster_log(c, CN_LOG_ERROR, "gossip discovery: no shared secret "
                                         "(ONEBLOG_CLUSTER_GOSSIP_SECRET or _SECRET_FILE)");
        free(secret);
        return -EINVAL;
    }
    gossip_t *g = cn__calloc(1, sizeof(*g));
    int rc = -ENOMEM;
    if (g == NULL) {
        free(secret);
        return rc;
    }
    g->c = c;
    g->fd = -1;
    g->secret = secret;
    g->secret_len = strlen(secret);
    if ((g->nonces = cn__calloc(NONCE_RING, sizeof(*g->nonces))) == NULL)
        goto fail;

    const char *dst = c->gossip_addr ? c->gossip_addr : "255.255.255.255";
    g->dest.sin_family = AF_INET;
    g->dest.sin_port = htons((uint16_t)c->gossip_port);
    char alive[256], host[256];
    cn__cluster_self_parts(c, alive, sizeof(alive), host, sizeof(host));
    struct in_addr ifaddr = { htonl(INADDR_ANY) };
    const char *bind_text = c->gossip_bind ? c->gossip_bind : host;
    if (inet_pton(AF_INET, dst, &g->dest.sin_addr) != 1 ||
        (c->gossip_bind && inet_pton(AF_INET, c->gossip_bind, &ifaddr) != 1)) {
        cn__cluster_log(c, CN_LOG_ERROR, "gossip discovery: bad address '%s' or '%s'", dst,
                        c->gossip_bind ? c->gossip_bind : "");
        rc = -EINVAL;
        goto fail;
    }
    if (!c->gossip_bind && inet_pton(AF_INET, bind_text, &ifaddr) != 1)
        ifaddr.s_addr = htonl(INADDR_ANY);

    g->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (g->fd < 0) {
        rc = -errno;
        goto fail;
    }
    int one = 1;
    setsockopt(g->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(g->fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one));
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = g->dest.sin_port,
                              .sin_addr = { htonl(INADDR_ANY) } };
    if (bind(g->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        rc = -errno;
        cn__cluster_log(c, CN_LOG_ERROR, "gossip discovery: bind port %d: %s", c->gossip_port,
                        strerror(errno));
        goto fail;
    }
    if (IN_MULTICAST(ntohl(g->dest.sin_addr.s_addr))) {
        struct ip_mreq mr = { .imr_multiaddr = g->dest.sin_addr, .imr_interface = ifaddr };
        unsigned char ttl = 1, loop = 1;
        if (setsockopt(g->fd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &mr, sizeof(mr)) < 0) {
            rc = -errno;
            cn__cluster_log(c, CN_LOG_ERROR, "gossip discovery: join %s: %s", dst,
                            strerror(errno));
            goto fail;
        }
        setsockopt(g->fd, IPPROTO_IP, IP_MULTICAST_IF, &ifaddr, sizeof(ifaddr));
        setsockopt(g->fd, IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof(ttl));
        setsockopt(g->fd, IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof(loop));
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 64 << 10 };
    cn__cluster_ref(c);
    if ((rc = cn_spawn(c->node, gossip_main, g, &so, NULL)) < 0) {
        cn__cluster_unref(c);
        goto fail;
    }
    *state = g;
    return 0;
fail:
    gossip_free(g);
    return rc;
}

static int gossip_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    gossip_t *g = state;
    (void)c;
    uint64_t now = cn_now_ms();
    for (int i = 0; i < g->npeers; i++) {
        gpeer_t *p = &g->peers[i];
        if (now - p->last_seen <= expiry_ms(g)) {
            int rc = cn__names_add(out, p->name, p->port);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

const cn__discovery_t cn__discovery_gossip = {
    .name = "gossip",
    .init = gossip_init,
    .poll = gossip_poll,
    .free = gossip_free,
};
