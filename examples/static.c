/* static.c - cnode-static: serve a directory over HTTP/1.1 with libcnode.
 *
 *     cnode-static [--port N] [--host ADDR] [--access-log FILE|-] [--shared-stack]
 *                  [--sendfile-only] DIR
 *
 * The port comes from --port, else $ONEBLOG_HTTP_PORT, else 8080; 0 lets the
 * kernel choose. Once listening it prints "listening on http://HOST:PORT/" and
 * flushes, so scripts can wait for that line (and learn the port). SIGINT or
 * SIGTERM stops it gracefully: requests in progress finish, idle connections
 * close, then the program exits 0. This is what `make bench-http` measures
 * against nginx.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cnode/http.h"
#include "cnode/node.h"
#include "cnode/proc.h"

/* A process that waits for SIGINT/SIGTERM on a signalfd (signals are blocked, so
 * they queue there instead of interrupting the scheduler) and stops the server. */
typedef struct sigwatch {
    int fd;
    cn_http_server_t *srv;
} sigwatch_t;

static void sigwatch_proc(void *arg)
{
    sigwatch_t *w = arg;
    for (;;) {
        struct signalfd_siginfo si;
        ssize_t n = read(w->fd, &si, sizeof(si));
        if (n == (ssize_t)sizeof(si))
            break;
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            break;
        if (cn_wait_fd(w->fd, CN_READABLE, CN_INFINITY) == -EBADF)
            break;
    }
    cn_http_server_stop(w->srv);
    cn_fd_close(w->fd);
}

static void usage(void)
{
    fprintf(stderr, "usage: cnode-static [--port N] [--host ADDR] [--access-log FILE|-] "
                    "[--shared-stack] [--sendfile-only] DIR\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *host = "127.0.0.1", *log_path = NULL;
    const char *port_s = getenv("ONEBLOG_HTTP_PORT");
    bool shared_stack = false;
    /* Files up to 16 KiB leave from memory with their head in one write (measured
     * faster than head + sendfile); larger ones with sendfile. */
    size_t mem_max = 16384;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port_s = argv[++i];
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            host = argv[++i];
        else if (strcmp(argv[i], "--access-log") == 0 && i + 1 < argc)
            log_path = argv[++i];
        else if (strcmp(argv[i], "--sendfile-only") == 0)
            mem_max = 0;
        else if (strcmp(argv[i], "--shared-stack") == 0)
            shared_stack = true;
        else if (argv[i][0] == '-' || dir)
            usage();
        else
            dir = argv[i];
    }
    if (dir == NULL)
        usage();
    char *end;
    long port = port_s ? strtol(port_s, &end, 10) : 8080;
    if (port_s && (*end || port < 0 || port > 65535)) {
        fprintf(stderr, "cnode-static: bad port '%s'\n", port_s);
        return 2;
    }

    /* Block the stop signals before any thread starts (the node's pool inherits
     * the mask), then receive them through a signalfd. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);

    FILE *log = NULL;
    if (log_path)
        log = strcmp(log_path, "-") == 0 ? stdout : fopen(log_path, "a");

    cn_node_t *node;
    int rc = cn_node_new(NULL, &node);
    if (rc < 0 || sfd < 0 || (log_path && log == NULL)) {
        fprintf(stderr, "cnode-static: start-up failed: %s\n",
                rc < 0 ? cn_strerror(rc) : strerror(errno));
        return 1;
    }

    /* Files from DIR, with ETags, 304s and gzip for text. The one route captures
     * the whole path as "path" for the static handler; GET routes also answer
     * HEAD, and other methods get 405. */
    cn_http_static_opts_t so = { .root = dir, .gzip = true, .mem_max_bytes = mem_max };
    cn_http_static_t *st;
    if ((rc = cn_http_static_new(&so, &st)) < 0) {
        fprintf(stderr, "cnode-static: %s: %s\n", dir, cn_strerror(rc));
        return 1;
    }
    const cn_http_route_t routes[] = {
        { "GET", "/*path", cn_http_static_handler, st },
    };

    cn_http_config_t cfg;
    cn_http_config_init(&cfg);
    cfg.host = host;
    cfg.port = (uint16_t)port;
    cfg.routes = routes;
    cfg.nroutes = 1;
    cfg.access_log = log;
    if (shared_stack)
        cfg.conn_spawn_flags = 0;
    cn_http_server_t *srv;
    if ((rc = cn_http_server_start(node, &cfg, &srv)) < 0) {
        fprintf(stderr, "cnode-static: listen on %s:%ld: %s\n", host, port, cn_strerror(rc));
        return 1;
    }
    sigwatch_t w = { sfd, srv };
    cn_spawn(node, sigwatch_proc, &w, NULL, NULL);
    printf("listening on http://%s:%u/\n", host, cn_http_server_port(srv));
    fflush(stdout);

    rc = cn_node_run(node); /* until the stop has drained every connection */
    cn_node_free(node);
    cn_http_server_free(srv);
    cn_http_static_free(st);
    if (log && log != stdout)
        fclose(log);
    return rc < 0 ? 1 : 0;
}
