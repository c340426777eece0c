/* events_writer.c - helper of tests/integ/events_crash.sh: a node running the
 * `events` server on $EVENTS_URL and WRITER_APPENDERS processes (default 8) that
 * append page.view events until WRITER_MAX (default 400) were acknowledged. Each
 * acknowledgement is printed as "SEQ ID\n" with one write(2) right after the
 * durable append returned, so every line in the output names an event the log
 * promised to keep, whenever the process is killed. Exit 0 when done, 1 if the
 * server cannot start, 3 on an append error.
 *
 * WRITER_SPLIT_WRITES=1 makes the store write in 61-byte pieces, one system call
 * each, so that a kill lands inside a batch and leaves a torn tail: a single
 * pwrite(2) of a batch to the page cache is never cut short by SIGKILL. The
 * store's direct appends (O_DIRECT) go in 512-byte pieces, the smallest a direct
 * write may be on a disk of 512-byte sectors (4096 where 512 is refused): a
 * direct write torn at sector granularity, its block's head rewritten first.
 *
 * WRITER_PACE_MS=N makes each appender wait N ms before each append (paced
 * appends, as a node idle between requests makes them: tests/integ/events_flush.sh). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "events/events_server.h"
#include "events/store_file.h"

static ssize_t split_pwrite(int fd, const void *p, size_t n, off_t off)
{
    static size_t sector = 512;
    usleep(20); /* widen the window a kill can land in */
    if (!(fcntl(fd, F_GETFL) & O_DIRECT))
        return pwrite(fd, p, n < 61 ? n : 61, off);
    ssize_t w = pwrite(fd, p, n < sector ? n : sector, off);
    if (w < 0 && errno == EINVAL && sector < 4096) {
        sector = 4096; /* a disk of 4096-byte logical blocks */
        w = pwrite(fd, p, n < sector ? n : sector, off);
    }
    return w;
}

static int appenders_left;
static int acked, max_acks, pace_ms;
static int status;

static void appender(void *arg)
{
    (void)arg;
    while (acked < max_acks) {
        ev_event_t *ev;
        uint64_t seq;
        char line[96];
        if (pace_ms > 0)
            cn_sleep(pace_ms);
        if (ev_event_new("page.view", &ev) < 0)
            break;
        ev_event_set_actor(ev, "crash-test");
        BSON_APPEND_UTF8(ev_event_data(ev), "post", "a-post-with-a-long-enough-slug");
        int rc = events_append_event(cn_dest_name("events"), ev, 30000, &seq);
        if (rc < 0) {
            fprintf(stderr, "events_writer: append: %s\n", cn_strerror(rc));
            status = 3;
            ev_event_free(ev);
            break;
        }
        int n = snprintf(line, sizeof line, "%" PRIu64 " %s\n", seq, ev_event_id(ev));
        if (write(1, line, (size_t)n) != n)
            status = 3;
        ev_event_free(ev);
        acked++;
    }
    if (--appenders_left == 0)
        cn_node_stop(cn_node_self());
}

static void main_proc(void *arg)
{
    (void)arg;
    char err[EV_ERR_LEN];
    cn_pid_t pid;
    int n = getenv("WRITER_APPENDERS") ? atoi(getenv("WRITER_APPENDERS")) : 8;
    int rc = events_server_start(cn_node_self(), NULL, &pid, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "events_writer: %s\n", err);
        status = 1;
        cn_node_stop(cn_node_self());
        return;
    }
    appenders_left = n;
    for (int i = 0; i < n; i++)
        cn_spawn(cn_node_self(), appender, NULL, NULL, NULL);
}

int main(void)
{
    cn_node_t *node;
    cn_node_opts_t o = { .name = "events_writer@127.0.0.1" };
    max_acks = getenv("WRITER_MAX") ? atoi(getenv("WRITER_MAX")) : 400;
    pace_ms = getenv("WRITER_PACE_MS") ? atoi(getenv("WRITER_PACE_MS")) : 0;
    if (getenv("WRITER_SPLIT_WRITES") && atoi(getenv("WRITER_SPLIT_WRITES")))
        ev_store_file_set_io(split_pwrite, NULL);
    if (cn_node_new(&o, &node) < 0)
        return 1;
    cn_spawn(node, main_proc, NULL, NULL, NULL);
    cn_node_run(node);
    cn_node_free(node);
    return status;
}
