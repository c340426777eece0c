/* server.h - the `recs` gen_server: recommendations with a durable event per
 * answer. Contract in recs_proto.h.
 *
 * Per request (handle_call):
 *   1. decode; pick the variant: recs@2 for readers whose A/B bucket (ab.h) falls
 *      in the configured share, recs@1 for the others;
 *   2. the reader's recent reads come from the history cache (history.h), fed by
 *      a follower process that reads page.view events from the log;
 *   3. rank with the variant's model over the current index; the request time and
 *      the view counts are inputs (logged), never read inside the model;
 *   4. build the recs.request event: model name, version and params; input
 *      (history, context post, the candidate set's digest = the snapshot digest);
 *      output (slug, score per rank); latency_us (decode to ranked, µs); data:
 *      variant, k, bucket, share, content_version, views_from/views_to (the seq
 *      range of page.view events the view counts were taken from, so replay can
 *      recount them);
 *   5. a worker process appends the event through the `events` server and sends
 *      the reply only once the append is durable ({error, event_log} if it
 *      fails). The server itself never waits for the log, so requests overlap and
 *      their events share group commits.
 *
 * Content: the index is built from the `cms` server (index_cms.h) at start and
 * again after content_changed notifications (debounced), and its snapshot is
 * written to snapshot_dir for replay. The rebuild runs inside the server (calls
 * wait meanwhile; a rebuild of the demo site takes milliseconds). If the cms is
 * unreachable the server starts without an index (requests get
 * {error, unavailable}) and retries every few seconds; it monitors the cms and
 * resubscribes after the cms comes back.
 */
#ifndef ONEBLOG_RECS_SERVER_H
#define ONEBLOG_RECS_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "recs/model.h"

typedef struct recs_server_opts {
    const char *name;          /* registered name; NULL = "recs" */
    const char *cms_node;      /* node of the `cms` server; NULL = this node */
    recs_index_t *index;       /* a fixed index (tests, bench): no cms, no rebuilds.
                                  Ownership moves to the server (also on failure) */
    const char *events_node;   /* node of the `events` server; NULL = this node */
    const char *events_url;    /* store to follow for page.view events (read-only);
                                  NULL = $EVENTS_URL or the default; "" = don't */
    uint64_t follow_backlog;   /* records read back at start; 0 = 1,000,000 */
    int follow_interval_ms;    /* follower pause between reads; 0 = 20 */
    const char *snapshot_dir;  /* NULL = $ONEBLOG_RECS_SNAPSHOTS or
                                  ./data/recs/snapshots; "" = no snapshots */
    double v2_share;           /* 0..1: readers answered by recs@2 */
    const char *ab_salt;       /* NULL = "recs-ab-1" */
    const double *params[RECS_VERSIONS + 1]; /* [v]: params of recs@v; NULL = defaults */
    bool link;                 /* start_link (under a supervisor) */
    const char *module_path;   /* start from this module file (cnode/code.h) unless an
                                  upgrade installed another; NULL = the linked-in
                                  version ($ONEBLOG_RECS_MODULE) */
} recs_server_opts_t;

/* Start the server (from a process). `opts` is copied (strings too; the index
 * moves). The code it runs: the module version an upgrade made current on this
 * node, else opts->module_path, else the version linked in. Returns 0 and *out,
 * -EEXIST, -EINVAL (bad params or share), a module load error, or the follower's
 * store open error; text in err (may be NULL). */
int recs_server_start(const recs_server_opts_t *opts, cn_pid_t *out, char *err, size_t errlen);

/* Fill opts from the environment (ONEBLOG_RECS_*; see recs/main.c). Strings are
 * borrowed from the environment; params point into `params` storage given by the
 * caller. Returns 0 or -EINVAL with text in err. */
int recs_server_opts_from_env(recs_server_opts_t *opts,
                              double params[RECS_VERSIONS + 1][RECS_MAX_PARAMS], char *err,
                              size_t errlen);

#endif /* ONEBLOG_RECS_SERVER_H */
