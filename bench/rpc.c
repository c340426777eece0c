/* rpc.c - the C halves of `make bench-rpc` (bench/rpc.sh runs them interleaved with
 * bench/beam/rpc_bench.erl and prints the ratios).
 *
 *   bench-rpc tcp-server          raw TCP: one epoll thread answers every 4-byte-length
 *                                 request frame with the reply frame; prints `port: N`
 *   bench-rpc tcp-client PORT     ping-pong: p50/p99 over 1 connection (blocking
 *                                 socket), round trips/s over 64 connections (epoll)
 *   bench-rpc cnode-server        libcnode node (ONEBLOG_NODE, ONEBLOG_COOKIE, ...)
 *                                 with gen_server `bench` answering every call
 *   bench-rpc cnode-client NODE   gen_server:call({bench, NODE}, {get, 42}): p50/p99
 *                                 with 1 caller, calls/s with 64 caller processes
 *
 * Everywhere the request is the term {get, 42} and the reply a 1 KiB binary whose
 * byte i is i mod 256 (the raw TCP frames carry the same encoded terms). Clients
 * print `p50_us`, `p99_us` and `calls_per_s_64` on stdout, nothing else.
 *
 * Environment: BENCH_RPC_SAMPLES (timed single calls, default 20000; a tenth as
 * many again to warm up), BENCH_RPC_CALLS (calls per concurrent caller, 1000).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"

#define REPLY_BYTES 1024
#define CALLERS 64

static long samples_n = 20000;
static long calls_each = 1000;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static _Noreturn void die(const char *what, const char *why)
{
    fprintf(stderr, "bench-rpc: %s: %s\n", what, why);
    exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sort the latencies (ns) and print p50/p99 by nearest rank, as the Erlang side. */
static void print_latency(uint64_t *lat, long n)
{
    qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
    printf("p50_us: %.3f\n", (double)lat[(n * 50 + 99) / 100 - 1] / 1000.0);
    printf("p99_us: %.3f\n", (double)lat[(n * 99 + 99) / 100 - 1] / 1000.0);
}

static void reply_bytes(char *out)
{
    for (int i = 0; i < REPLY_BYTES; i++)
        out[i] = (char)(i & 0xff);
}

/* ---------------------------------------------------------------------------------
 * Raw TCP: frames are a 4-byte big-endian length and the encoded term.
 * ------------------------------------------------------------------------------ */

static char req_frame[64];
static int req_len;
static char rep_frame[4 + 6 + REPLY_BYTES];
static int rep_len;

static void put32(char *p, uint32_t v)
{
    p[0] = (char)(v >> 24);
    p[1] = (char)(v >> 16);
    p[2] = (char)(v >> 8);
    p[3] = (char)v;
}

static uint32_t get32(const char *p)
{
    const uint8_t *u = (const uint8_t *)p;
    return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static void make_frames(void)
{
    int i = 4;
    ei_encode_version(req_frame, &i);
    ei_encode_tuple_header(req_frame, &i, 2);
    ei_encode_atom(req_frame, &i, "get");
    ei_encode_long(req_frame, &i, 42);
    put32(req_frame, (uint32_t)(i - 4));
    req_len = i;
    char bin[REPLY_BYTES];
    reply_bytes(bin);
    i = 4;
    ei_encode_version(rep_frame, &i);
    ei_encode_binary(rep_frame, &i, bin, REPLY_BYTES);
    put32(rep_frame, (uint32_t)(i - 4));
    rep_len = i;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Write all of buf to a socket that may be non-blocking. */
static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
            fd_set ws;
            FD_ZERO(&ws);
            FD_SET(fd, &ws);
            select(fd + 1, NULL, &ws, NULL, NULL);
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

typedef struct tconn {
    int fd;
    size_t have;           /* bytes of the current incoming frame in buf */
    char buf[4096];
} tconn_t;

/* Consume complete frames in c->buf; return how many. -1 for a malformed one. */
static int frames_in(tconn_t *c)
{
    int k = 0;
    size_t off = 0;
    while (c->have - off >= 4) {
        size_t len = get32(c->buf + off);
        if (len > sizeof(c->buf) - 4)
            return -1;
        if (c->have - off < 4 + len)
            break;
        off += 4 + len;
        k++;
    }
    memmove(c->buf, c->buf + off, c->have - off);
    c->have -= off;
    return k;
}

static _Noreturn void tcp_server(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 256) < 0)
        die("listen", strerror(errno));
    socklen_t sl = sizeof(sa);
    getsockname(lfd, (struct sockaddr *)&sa, &sl);
    printf("port: %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        struct epoll_event evs[128];
        int n = epoll_wait(ep, evs, 128, -1);
        for (int i = 0; i < n; i++) {
            tconn_t *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                nodelay(fd);
                c = calloc(1, sizeof(*c));
                c->fd = fd;
                struct epoll_event cev = { .events = EPOLLIN, .data.ptr = c };
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
                continue;
            }
            ssize_t r = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            int k = r > 0 ? (c->have += (size_t)r, frames_in(c)) : -1;
            for (int j = 0; j < k; j++)
                if (write_all(c->fd, rep_frame, (size_t)rep_len) < 0)
                    k = -1;
            if (k < 0) {
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                free(c);
            }
        }
    }
}

static int tcp_dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("connect", strerror(errno));
    nodelay(fd);
    return fd;
}

/* One blocking round trip: the request out, the whole reply frame in. */
static void tcp_round_trip(int fd)
{
    char buf[sizeof(rep_frame)];
    if (write_all(fd, req_frame, (size_t)req_len) < 0)
        die("write", strerror(errno));
    size_t have = 0;
    while (have < 4 || have < 4 + (size_t)get32(buf)) {
        ssize_t r = read(fd, buf + have, sizeof(buf) - have);
        if (r <= 0)
            die("read", r == 0 ? "closed" : strerror(errno));
        have += (size_t)r;
    }
    if ((int)have != rep_len || memcmp(buf, rep_frame, have) != 0)
        die("reply", "unexpected bytes");
}

static int tcp_client(int port)
{
    int fd = tcp_dial(port);
    for (long i = 0; i < samples_n / 10; i++)
        tcp_round_trip(fd);
    uint64_t *lat = malloc((size_t)samples_n * sizeof(*lat));
    for (long i = 0; i < samples_n; i++) {
        uint64_t t0 = now_ns();
        tcp_round_trip(fd);
        lat[i] = now_ns() - t0;
    }
    close(fd);
    print_latency(lat, samples_n);
    free(lat);

    /* 64 connections, one request in flight on each, one thread. */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    tconn_t *cs = calloc(CALLERS, sizeof(*cs));
    long left[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        cs[i].fd = tcp_dial(port);
        left[i] = calls_each;
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    uint64_t t0 = now_ns();
    for (int i = 0; i < CALLERS; i++)
        write_all(cs[i].fd, req_frame, (size_t)req_len);
    int active = CALLERS;
    while (active > 0) {
        struct epoll_event evs[CALLERS];
        int n = epoll_wait(ep, evs, CALLERS, -1);
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u32;
            tconn_t *c = &cs[i];
            ssize_t r = read(c->fd, c->buf + c->have, sizeof(c->buf) - c->have);
            if (r <= 0) {
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                die("read", r == 0 ? "closed" : strerror(errno));
            }
            c->have += (size_t)r;
            int k = frames_in(c);
            if (k < 0)
                die("reply", "malformed frame");
            for (int j = 0; j < k; j++) {
                if (--left[i] > 0)
                    write_all(c->fd, req_frame, (size_t)req_len);
                else
                    active--;
            }
        }
    }
    uint64_t t = now_ns() - t0;
    for (int i = 0; i < CALLERS; i++)
        close(cs[i].fd);
    free(cs);
    close(ep);
    printf("calls_per_s_64: %.0f\n", (double)CALLERS * (double)calls_each / ((double)t / 1e9));
    return 0;
}

/* ---------------------------------------------------------------------------------
 * libcnode: gen_server `bench` and its callers
 * ------------------------------------------------------------------------------ */

static char reply_bin[REPLY_BYTES];

static int bench_init(void *arg, void **state)
{
    *state = arg;
    return 0;
}

static int bench_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)state;
    (void)req;
    (void)from;
    ei_x_encode_binary(reply, reply_bin, REPLY_BYTES);
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t bench_cb = { .init = bench_init, .handle_call = bench_call };

static cn_node_t *start_node(int argc, char **argv, const char *default_name)
{
    cn_dist_opts_t d;
    cn_dist_opts_from_env(&d, argc, argv);
    cn_node_opts_t o = { .name = d.node_name ? d.node_name : default_name };
    cn_node_t *node;
    int rc;
    if ((rc = cn_node_new(&o, &node)) < 0)
        die("node", cn_strerror(rc));
    if ((rc = cn_dist_start(node, &d)) < 0)
        die("dist", cn_strerror(rc));
    return node;
}

static int cnode_server(int argc, char **argv)
{
    cn_node_t *node = start_node(argc, argv, "rpcsrv@127.0.0.1");
    cn_gen_server_opts_t go = { .name = "bench" };
    int rc = cn_gen_server_start(node, &bench_cb, NULL, &go, NULL);
    if (rc < 0)
        die("start bench", cn_strerror(rc));
    rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0;
}

static const char *server_node;
static cn_pid_t client_main;

static void one_call(void)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t r;
    cn_x_new(&x);
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "get");
    ei_x_encode_long(&x, 42);
    int rc = cn_gen_call(cn_dest_remote("bench", server_node), &x, 10000, &m, &r);
    if (rc < 0)
        die("call", cn_strerror(rc));
    int type, size;
    if (ei_get_type(r.buf, &r.index, &type, &size) < 0 || type != ERL_BINARY_EXT ||
        size != REPLY_BYTES)
        die("call", "the reply is not a 1 KiB binary");
    cn_msg_free(m);
}

static void send_atom(cn_pid_t to, const char *atom)
{
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, atom);
    cn_send(to, &x);
}

static void caller(void *arg)
{
    (void)arg;
    cn_msg_t *m;
    cn_receive(NULL, NULL, CN_INFINITY, &m); /* go */
    cn_msg_free(m);
    for (long i = 0; i < calls_each; i++)
        one_call();
    send_atom(client_main, "done");
}

static void client_proc(void *arg)
{
    (void)arg;
    cn_node_t *node = cn_node_self();
    client_main = cn_self();
    int rc = cn_dist_connect(server_node, 10000);
    if (rc < 0)
        die("connect", cn_strerror(rc));
    for (long i = 0; i < samples_n / 10; i++)
        one_call();
    uint64_t *lat = malloc((size_t)samples_n * sizeof(*lat));
    for (long i = 0; i < samples_n; i++) {
        uint64_t t0 = now_ns();
        one_call();
        lat[i] = now_ns() - t0;
    }
    print_latency(lat, samples_n);
    free(lat);

    cn_pid_t callers[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        if ((rc = cn_spawn(node, caller, NULL, NULL, &callers[i])) < 0)
            die("spawn", cn_strerror(rc));
    uint64_t t0 = now_ns();
    for (int i = 0; i < CALLERS; i++)
        send_atom(callers[i], "go");
    for (int i = 0; i < CALLERS; i++) {
        cn_msg_t *m;
        cn_receive(NULL, NULL, CN_INFINITY, &m);
        cn_msg_free(m);
    }
    uint64_t t = now_ns() - t0;
    printf("calls_per_s_64: %.0f\n", (double)CALLERS * (double)calls_each / ((double)t / 1e9));
    fflush(stdout);
    cn_node_stop(node);
}

static int cnode_client(int argc, char **argv)
{
    cn_node_t *node = start_node(argc, argv, "rpccli@127.0.0.1");
    server_node = argv[2];
    cn_spawn(node, client_proc, NULL, NULL, NULL);
    int rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0;
}

int main(int argc, char **argv)
{
    const char *v;
    if ((v = getenv("BENCH_RPC_SAMPLES")) && atol(v) >= 10)
        samples_n = atol(v);
    if ((v = getenv("BENCH_RPC_CALLS")) && atol(v) > 0)
        calls_each = atol(v);
    reply_bytes(reply_bin);
    make_frames();
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 2 && strcmp(argv[1], "tcp-server") == 0)
        tcp_server();
    if (argc == 3 && strcmp(argv[1], "tcp-client") == 0)
        return tcp_client(atoi(argv[2]));
    if (argc >= 2 && strcmp(argv[1], "cnode-server") == 0)
        return cnode_server(argc, argv);
    if (argc >= 3 && strcmp(argv[1], "cnode-client") == 0)
        return cnode_client(argc, argv);
    fprintf(stderr, "usage: bench-rpc tcp-server | tcp-client PORT | cnode-server | "
                    "cnode-client NODE\n");
    return 2;
}
