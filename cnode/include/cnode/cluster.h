/* cluster.h - the self-forming cluster: discovery, mesh, service registry, routing.
 *
 * cn_cluster_start() turns a distributed node (cn_dist_start first) into a member
 * of a cluster that forms itself:
 *
 *   discovery   one strategy, chosen by name through a table (cluster.c), lists
 *               the node names that should be in the cluster:
 *                 static  a fixed list (ONEBLOG_CLUSTER_NODES), the default
 *                 epmd    every name the EPMD of each listed host knows
 *                 dns     A records (basename@IP) or SRV records (basename@IP of
 *                         the target, the SRV port as distribution port) of a
 *                         name, polled through c-ares with an explicit server
 *                 gossip  UDP broadcast or multicast heartbeats, HMAC-SHA256 with
 *                         a shared secret, timestamp window + nonce against replay
  *                 ecs     the running tasks of an ECS service: ListTasks (every
 *                         nextToken page) + DescribeTasks (by 100), SigV4-signed,
 *                         libcurl on the blocking pool; basename@private IPv4 of
 *                         each task's ENI; zones logged (discovery_ecs.c). Tested
 *                         only against a local fake of the documented API
 *                         (tests/integ/ecs_fake.py): AWS could not be reached
 *                         where it was written. The signer passes AWS's own SigV4
 *                         test vectors; IAM: deploy/ecs/discovery-policy.json
 *   mesh        the `cn_cluster` process connects to every listed node, forgets
 *               (disconnects) nodes that leave the list, and reconnects with
 *               exponential backoff (backoff_min_ms doubling to backoff_max_ms)
 *               while a node whose connection dropped is still listed. The
 *               on_node hook sees every connect and disconnect.
 *   registry    the `cn_pg` process on every node keeps the cluster-wide view of
 *               who runs what: cn_cluster_join("cms", pid, "1.4.2") announces a
 *               local process with its version and this node's zone, and every
 *               node can ask cn_cluster_pick("cms") without configuring any
 *               address. Our nodes are hidden, so OTP's pg would not see them; the
 *               registries speak their own protocol (below), with each other only.
 *   routing     cn_cluster_pick() prefers members in the caller's zone, and among
 *               those the one with the fewest calls outstanding from this node
 *               (round robin between equals); other zones are the fallback.
 *
 * Registry protocol (plain messages to the process registered as `cn_pg` on the
 * peer node; Service is an atom, Version and Zone are binaries):
 *
 *   {'$cn_pg', sync, [{Service, Pid, Version, Zone}]}  on every nodeup, each side
 *        sends every member *local to it*; the receiver replaces all it knew of
 *        the sender's node with that list
 *   {'$cn_pg', join, Service, Pid, Version, Zone}       a local member joined
 *   {'$cn_pg', leave, Service, Pid}                     it left or exited
 *
 * Only a member's own node announces it, over the connection to each peer, so the
 * order of a join and its leave is the connection's order; on nodedown every
 * member of that node is dropped at once. A node that cannot be reached is thus
 * never picked, and when it comes back the nodeup sync brings its members back.
 *
 * Every function here is called on the node's scheduler thread; those that wait
 * must be called from a process. Return codes are 0 or a negative errno.
 *
 * Environment read by cn_cluster_opts_from_env():
 *   ONEBLOG_CLUSTER_STRATEGY        static | epmd | dns | gossip | ecs (static)
 *   ONEBLOG_CLUSTER_ZONE            this node's zone (e.g. eu-west-1a), default ""
 *   ONEBLOG_CLUSTER_POLL_MS         discovery period (5000)
 *   ONEBLOG_CLUSTER_BACKOFF_MIN_MS  first reconnect delay (200)
 *   ONEBLOG_CLUSTER_BACKOFF_MAX_MS  largest reconnect delay (5000)
 *   ONEBLOG_CLUSTER_NODES           static: a@h1,b@h2,...
 *   ONEBLOG_CLUSTER_EPMD_HOSTS      epmd: host[:port],... (port: the EPMD port)
 *   ONEBLOG_CLUSTER_DNS_NAME        dns: the name to query
 *   ONEBLOG_CLUSTER_DNS_TYPE        dns: a | srv (a)
 *   ONEBLOG_CLUSTER_DNS_SERVER      dns: ip[:port] of the server (system's if unset)
 *   ONEBLOG_CLUSTER_BASENAME        dns/ecs: alive part of the names (ours)
 *   ONEBLOG_CLUSTER_GOSSIP_ADDR     gossip: broadcast or multicast (224/4) address
 *   ONEBLOG_CLUSTER_GOSSIP_PORT     gossip: UDP port (45892)
 *   ONEBLOG_CLUSTER_GOSSIP_BIND     gossip: local interface address (the node's IP)
 *   ONEBLOG_CLUSTER_GOSSIP_SECRET   gossip: the shared secret (or ..._SECRET_FILE)
 *   ONEBLOG_CLUSTER_GOSSIP_INTERVAL_MS  heartbeat period (1000); a node silent
 *                                   for 3 periods + 1 s leaves the list
 *   ONEBLOG_CLUSTER_GOSSIP_WINDOW_S accepted clock difference (10)
  *   ONEBLOG_CLUSTER_ECS_CLUSTER, ONEBLOG_CLUSTER_ECS_SERVICE   ecs: what to list
 *   ONEBLOG_CLUSTER_ECS_ENDPOINT    ecs: API URL (https://ecs.REGION.amazonaws.com)
 *   AWS_REGION / AWS_DEFAULT_REGION ecs: the region (required)
 *   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN   ecs: credentials,
 *                                   else the container endpoint (read at start):
 *   AWS_CONTAINER_CREDENTIALS_RELATIVE_URI  (http://169.254.170.2, or
 *                                   ONEBLOG_CLUSTER_ECS_CREDENTIALS_BASE, + URI), or
 *   AWS_CONTAINER_CREDENTIALS_FULL_URI + AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]
 */
#ifndef CNODE_CLUSTER_H
#define CNODE_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "cnode/dist.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/term.h"

#define CN_CLUSTER_NAME_MAX 256 /* node names, with the NUL */
#define CN_CLUSTER_SVC_MAX 64   /* service names (atoms), with the NUL */
#define CN_CLUSTER_META_MAX 64  /* versions and zones, with the NUL */

/* Called by the mesh process when a connection to a listed node comes up
 * (up = true) or goes down. `node` is borrowed for the call. It runs inside the
 * mesh process: it may send, but should not block for long. */
typedef void (*cn_cluster_node_cb)(void *ud, const char *node, bool up);

typedef struct cn_cluster_opts {
    const char *strategy;        /* NULL = "static" */
    const char *zone;            /* this node's zone; NULL = "" */
    int poll_ms;                 /* discovery period; 0 = 5000 */
    int backoff_min_ms;          /* 0 = 200 */
    int backoff_max_ms;          /* 0 = 5000 */
    /* static */
    const char *nodes;           /* "a@h1,b@h2" */
    /* epmd */
    const char *epmd_hosts;      /* "h1,h2:4369" */
    /* dns */
    const char *dns_name;
    const char *dns_type;        /* "a" (NULL) or "srv" */
    const char *dns_server;      /* "127.0.0.1:5353"; NULL = the system's */
    const char *basename;        /* dns/ecs: alive part of node names; NULL = ours */
    /* gossip */
    const char *gossip_addr;     /* NULL = 255.255.255.255 */
    int gossip_port;             /* 0 = 45892 */
    const char *gossip_bind;     /* interface address; NULL = the node's host if
                                    it is an IPv4 address, else 0.0.0.0 */
    const char *gossip_secret;   /* required for gossip */
    int gossip_interval_ms;      /* 0 = 1000 */
    int gossip_window_s;         /* 0 = 10 */
    /* ecs (credentials always come from the environment, see above) */
    const char *ecs_cluster, *ecs_service;
    const char *ecs_region;      /* NULL = $AWS_REGION */
    const char *ecs_endpoint;    /* NULL = https://ecs.<region>.amazonaws.com */

    cn_cluster_node_cb on_node;  /* NULL = none */
    void *on_node_ud;
    cn_dist_log_cb log;          /* NULL: one line to stderr (debug lines only
                                    with ONEBLOG_CLUSTER_DEBUG set) */
    void *log_ud;
} cn_cluster_opts_t;

/* One registered process as seen from this node. */
typedef struct cn_cluster_member {
    cn_pid_t pid;
    char node[CN_CLUSTER_NAME_MAX];
    char service[CN_CLUSTER_SVC_MAX];
    char version[CN_CLUSTER_META_MAX];
    char zone[CN_CLUSTER_META_MAX];
    uint32_t outstanding;        /* calls from this node in progress (cn_cluster_call) */
} cn_cluster_member_t;

/* Fill *o from the environment (see the top of this file). Strings are borrowed
 * from the environment. Returns 0 or -EINVAL for a malformed number. */
int cn_cluster_opts_from_env(cn_cluster_opts_t *o);

/* Start the registry (`cn_pg`), the mesh (`cn_cluster`) and the discovery of
 * the chosen strategy on a node whose distribution is started. Call it before
 * cn_node_run from the node's thread, or from one of its processes. The options
 * are copied. Returns 0; -ENOTCONN no distribution; -EALREADY; -ENOENT unknown
 * strategy; -EINVAL a setting the strategy needs is missing or malformed (the log
 * says which); -ENOMEM; or the strategy's socket error. */
int cn_cluster_start(cn_node_t *node, const cn_cluster_opts_t *opts);

/* Announce that local process `pid` provides `service` (an atom, 1..63 bytes) in
 * `version` (NULL = ""). The registry monitors it: when it exits it leaves. From
 * a process. Returns 0 (also when already joined), -ENOTCONN (no cluster),
 * -EINVAL, -ESRCH (not alive), -ENOMEM. */
int cn_cluster_join(const char *service, cn_pid_t pid, const char *version);

/* Withdraw a local process from `service`. Returns 0 or -ENOENT. From a process. */
int cn_cluster_leave(const char *service, cn_pid_t pid);

/* Choose a member of `service`: same zone as this node first, then fewest calls
 * outstanding, then round robin; members in other zones only when none is in
 * ours. Fills *out. Returns 0, -ENOENT (nobody provides it), -ENOTCONN. */
int cn_cluster_pick(const char *service, cn_cluster_member_t *out);

/* Copy up to `max` members of `service` (NULL = every service) into out, local
 * node first, then by node name. Returns the total number of members (which may
 * exceed max), or -ENOTCONN. */
int cn_cluster_members(const char *service, cn_cluster_member_t *out, int max);

/* cn_gen_call() to a member picked by cn_cluster_pick(), counted as outstanding
 * meanwhile. If the member is gone (-ESRCH, -EHOSTUNREACH) before answering,
 * another one is tried, up to 3 in all. `req` is consumed; on success *msg and
 * *reply as cn_gen_call, and *who (may be NULL) the member that answered.
 * Returns cn_gen_call's codes, or -ENOENT when nobody provides the service. */
int cn_cluster_call(const char *service, ei_x_buff *req, int64_t timeout_ms,
                    cn_msg_t **msg, cn_term_t *reply, cn_cluster_member_t *who);

/* The node names the discovery lists now (without ours) and, for each, whether
 * it is connected. Copies up to max names into names[i] (CN_CLUSTER_NAME_MAX
 * bytes each) and up[i]. Returns the total listed, or -ENOTCONN. */
int cn_cluster_nodes(char (*names)[CN_CLUSTER_NAME_MAX], bool *up, int max);

#endif /* CNODE_CLUSTER_H */
