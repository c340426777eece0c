/* otlp_sink.c - a discarding OTLP/HTTP receiver for make bench-trace.
 *
 * bench/trace.sh pins it with wrk on the load CPU; whatever CPU the sink takes
 * there is taken from wrk, and only the traced side pays it, so it must cost
 * as little as a receiver can: one epoll thread, each POST's head read for its
 * Content-Length, the body skipped, "200 {}" sent back on the kept-alive
 * connection. It does not decode anything (tests/otel/receiver.js checks the
 * exports against the official schema; this only measures). The node sink it
 * replaces spent about a microsecond of the load CPU per exported span.
 *
 *   bench-otlp_sink PORT      prints "sink listening" when ready; counts on SIGTERM
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { HEAD_MAX = 8192 };

typedef struct conn {
    int fd;
    size_t head_len;      /* bytes of the request head collected */
    size_t body_left;     /* bytes of the body still to skip */
    bool in_body;
    char head[HEAD_MAX];
} conn_t;

static volatile sig_atomic_t stop;
static unsigned long long posts, bytes;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            "Content-Length: 2\r\n\r\n{}";

/* A complete head in c->head: its Content-Length, or -1 when it has none. */
static long content_length(const conn_t *c)
{
    const char *p = c->head, *end = c->head + c->head_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            return strtol(p + 15, NULL, 10);
        p = eol + 1;
    }
    return -1;
}

/* Consume what is readable; false when the connection is done. */
static bool serve(conn_t *c)
{
    char buf[65536];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof buf, 0);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        bytes += (size_t)n;
        size_t off = 0;
        while (off < (size_t)n) {
            if (c->in_body) {
                size_t k = (size_t)n - off < c->body_left ? (size_t)n - off : c->body_left;
                c->body_left -= k;
                off += k;
            } else {
                /* The head's bytes (the body may follow in the same read). */
                size_t k = (size_t)n - off;
                if (k > HEAD_MAX - c->head_len)
                    k = HEAD_MAX - c->head_len;
                memcpy(c->head + c->head_len, buf + off, k);
                char *e = memmem(c->head, c->head_len + k, "\r\n\r\n", 4);
                if (e == NULL) {
                    c->head_len += k;
                    off += k;
                    if (c->head_len == HEAD_MAX)
                        return false; /* a head this long is not a collector client's */
                    continue;
                }
                size_t used = (size_t)(e + 4 - c->head) - c->head_len; /* of this read */
                c->head_len = (size_t)(e + 4 - c->head);
                long cl = content_length(c);
                if (cl < 0)
                    return false;
                /* A client that waits for the go-ahead (curl's Expect: 100-continue). */
                if (memmem(c->head, c->head_len, "100-continue", 12) &&
                    send(c->fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL) < 0)
                    return false;
                off += used;
                c->in_body = true;
                c->body_left = (size_t)cl;
            }
            if (c->in_body && c->body_left == 0) {
                posts++;
                if (send(c->fd, reply, sizeof reply - 1, MSG_NOSIGNAL) < 0)
                    return false;
                c->in_body = false;
                c->head_len = 0;
            }
        }
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 64) < 0) {
        perror("otlp_sink: listen");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    printf("sink listening\n");
    fflush(stdout);
    while (!stop) {
        struct epoll_event evs[16];
        int n = epoll_wait(ep, evs, 16, 200);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c == NULL) {
                int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                if (fd < 0)
                    continue;
                conn_t *nc = calloc(1, sizeof *nc);
                if (nc == NULL) {
                    close(fd);
                    continue;
                }
                nc->fd = fd;
                struct epoll_event ce = { .events = EPOLLIN, .data.ptr = nc };
                epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                continue;
            }
            if (!serve(c)) {
                close(c->fd); /* closing removes it from the epoll set */
                free(c);
            }
        }
    }
    fprintf(stderr, "otlp_sink: %llu posts, %llu bytes\n", posts, bytes);
    return 0;
}
