/* main.c - oneblog-recs: a node that runs the `recs` server (and, unless another
 * node owns the event log, the `events` server), under one supervisor.
 *
 *   oneblog-recs            run until SIGINT/SIGTERM
 *
 * DESIGN.md puts `recs` on CMS nodes by default, and `oneblog-cms serve` runs it
 * (with `events`). This is the standalone form, for running recs elsewhere: it
 * reaches `cms` over the distribution (ONEBLOG_RECS_CMS_NODE), joins the cluster
 * (ONEBLOG_CLUSTER_* of cnode/cluster.h) and announces `recs` (and `events` when
 * it runs it) in the registry, where clients find them.
 *
 * Environment:
 *   ONEBLOG_RECS_NODE          this node's name (recs@127.0.0.1)
 *   ONEBLOG_COOKIE ...         the distribution settings of cnode/dist.h
 *   ONEBLOG_RECS_CMS_NODE      where `cms` runs (cms@127.0.0.1)
 *   EVENTS_URL                 the event log (file:./data/events)
 *   ONEBLOG_RECS_EVENTS_NODE   a node whose `events` server owns the log (file
 *                              backend: one owner); unset = start `events` here
 *   ONEBLOG_RECS_V2_SHARE      share of readers answered by recs@2 (0.5)
 *   ONEBLOG_RECS_AB_SALT       the A/B experiment's salt (recs-ab-1)
 *   ONEBLOG_RECS_V1_PARAMS     overrides, e.g. "w_title=2,history_max=5"
 *   ONEBLOG_RECS_V2_PARAMS     e.g. "half_life_days=7,w_popularity=0.3"
 *   ONEBLOG_RECS_SNAPSHOTS     content snapshots for replay (./data/recs/snapshots)
 *   ONEBLOG_RECS_FOLLOW_BACKLOG page.view records read back at start (1000000)
 *   ONEBLOG_RECS_MODULE        start `recs` from this module file (recs-VSN.so)
 *                              instead of the linked-in version
 *   ONEBLOG_CODE_DIR           load module files only from this directory
 *                              (`oneblog-ctl upgrade`, docs/hot-upgrade.md)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "cnode/cluster.h"
#include "cnode/code.h"
#include "cnode/dist.h"
#include "cnode/proc.h"
#include "cnode/supervisor.h"
#include "cnode/telemetry.h"
#include "common/privs.h"
#include "events/events_server.h"
#include "recs/server.h"

/* The version announced with `recs` and `events` in the cluster registry. */
#define RECS_SERVICE_VERSION "0.1.0"

static recs_server_opts_t recs_opts;
static double recs_params[RECS_VERSIONS + 1][RECS_MAX_PARAMS];
static events_server_opts_t ev_opts;
static cn_pid_t sup;
static int sigfd = -1;
static int status;

static int start_events(void *arg, cn_pid_t *out)
{
    (void)arg;
    char err[EV_ERR_LEN] = "", note[sizeof ((ev_store_t *)0)->io_note] = "";
    ev_opts.link = true;
    ev_opts.io_note = note;
    ev_opts.io_note_len = sizeof note;
    int rc = events_server_start(cn_node_self(), &ev_opts, out, err, sizeof err);
    ev_opts.io_note = NULL;
    if (rc < 0)
        fprintf(stderr, "oneblog-recs: events: %s\n", err);
    else
        cn_cluster_join("events", *out, RECS_SERVICE_VERSION); /* every incarnation */
    if (rc == 0 && note[0]) {
        printf("oneblog-recs: events: appends %s\n", note);
        fflush(stdout);
    }
    return rc;
}

static int start_recs(void *arg, cn_pid_t *out)
{
    (void)arg;
    char err[256] = "";
    recs_opts.link = true;
    int rc = recs_server_start(&recs_opts, out, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "oneblog-recs: recs: %s\n", err);
    else
        cn_cluster_join("recs", *out, RECS_SERVICE_VERSION);
    return rc;
}

static void signal_watcher(void *arg)
{
    (void)arg;
    struct signalfd_siginfo si;
    while (cn_wait_fd(sigfd, CN_READABLE, CN_INFINITY) > 0)
        if (read(sigfd, &si, sizeof si) == (ssize_t)sizeof si)
            break;
    cn_gen_server_stop(cn_dest_pid(sup), "shutdown", 10000);
    cn_fd_close(sigfd);
    cn_telemetry_stop(cn_node_self(), 2000); /* flush the spans still queued */
    cn_node_stop(cn_node_self());
}

static void start(void *arg)
{
    (void)arg;
    int rc;
    /* rest_for_one: when `events` restarts, `recs` (whose follower waits on it)
     * restarts after it; `recs` alone restarts alone. */
    cn_child_spec_t children[2] = {
        { .id = "events", .start = start_events, .shutdown_ms = 5000 },
        { .id = "recs", .start = start_recs, .shutdown_ms = 5000 },
    };
    int n = 0;
    if (recs_opts.events_node == NULL)
        children[n++] = children[0];
    children[n++] = children[1];
    cn_sup_flags_t flags = { .strategy = CN_REST_FOR_ONE, .intensity = 5, .period_s = 10 };
    cn_dist_opts_t d;
    cn_dist_opts_from_env(&d, 0, NULL);
    d.node_name = cn_node_name(cn_node_self());
    /* Distribution first: the first index build calls `cms` on another node. */
    if ((rc = cn_dist_start(cn_node_self(), &d)) < 0) {
        fprintf(stderr, "oneblog-recs: distribution: %s\n", cn_strerror(rc));
        goto fail;
    }
    /* The cluster (ONEBLOG_CLUSTER_*) before the servers, so that they join the
     * registry as they start and clients find them by service name. */
    cn_cluster_opts_t co;
    if ((rc = cn_cluster_opts_from_env(&co)) < 0 ||
        (rc = cn_cluster_start(cn_node_self(), &co)) < 0) {
        fprintf(stderr, "oneblog-recs: cluster: %s\n", cn_strerror(rc));
        goto fail;
    }
    /* Telemetry from the environment (docs/observability.md): metrics always
     * (/metrics on ONEBLOG_METRICS_ADDR), traces when an OTLP endpoint is set. */
    if ((rc = cn_telemetry_start(cn_node_self(), NULL)) < 0) {
        fprintf(stderr, "oneblog-recs: telemetry: %s\n", cn_strerror(rc));
        goto fail;
    }
    /* The code server (`cn_code`): `oneblog-ctl upgrade NODE recs FILE.so`. */
    if ((rc = cn_code_start(cn_node_self(), NULL)) < 0) {
        fprintf(stderr, "oneblog-recs: code server: %s\n", cn_strerror(rc));
        goto fail;
    }
    if ((rc = cn_supervisor_start(cn_node_self(), &flags, children, n, NULL, &sup)) < 0) {
        fprintf(stderr, "oneblog-recs: start: %s\n", cn_strerror(rc));
        goto fail;
    }
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    if ((rc = cn_spawn(cn_node_self(), signal_watcher, NULL, &own, NULL)) < 0)
        goto fail;
    printf("oneblog-recs: node %s serving `recs` (recs@2 share %.2f)%s\n",
           cn_node_name(cn_node_self()), recs_opts.v2_share,
           recs_opts.events_node ? "" : " and `events`");
    fflush(stdout);
    return;
fail:
    status = 1;
    cn_node_stop(cn_node_self());
}

int main(int argc, char **argv)
{
    char err[256] = "";
    cn_node_t *node;
    int rc;
    /* Give root up before anything is opened (common/privs.h). */
    int prc = privs_drop_root(err, sizeof err);
    if (prc != PRIVS_UNCHANGED)
        fprintf(stderr, "oneblog-recs: %s\n", err);
    if (prc < 0)
        return 1;
    err[0] = '\0';
    if (argc > 1) {
        fprintf(argc > 1 && strcmp(argv[1], "help") ? stderr : stdout,
                "usage: oneblog-recs   (configured by the environment: see recs/main.c)\n");
        return argc > 1 && strcmp(argv[1], "help") ? 2 : 0;
    }
    if (recs_server_opts_from_env(&recs_opts, recs_params, err, sizeof err) < 0) {
        fprintf(stderr, "oneblog-recs: %s\n", err);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    const char *name = getenv("ONEBLOG_RECS_NODE");
    cn_node_opts_t no = { .name = name && *name ? name : "recs@127.0.0.1" };
    if ((rc = cn_node_new(&no, &node)) < 0) {
        fprintf(stderr, "oneblog-recs: ONEBLOG_RECS_NODE: %s\n", cn_strerror(rc));
        return 2;
    }
    cn_spawn_opts_t own = { .flags = CN_SPAWN_OWN_STACK };
    if ((rc = cn_spawn(node, start, NULL, &own, NULL)) < 0 || (rc = cn_node_run(node)) < 0) {
        fprintf(stderr, "oneblog-recs: node: %s\n", cn_strerror(rc));
        status = 1;
    }
    cn_node_free(node);
    return status;
}
