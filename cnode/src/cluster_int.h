/* cluster_int.h - private structures of the cluster module.
 *
 * Reading order: the discovery strategy table entry (one file per strategy,
 * discovery_*.c), the list of names a poll returns, the mesh's record of a
 * listed node, the registry's record of a member, and cn__cluster, the state of
 * one node's cluster, which hangs off cn_node (node->cluster) and is shared by
 * the mesh process (cluster.c), the discovery process (cluster.c), the registry
 * process (pg.c) and any process a strategy runs (the gossip receiver). It is
 * reference counted: each of those processes holds a reference, released by its
 * exit hook, so the state goes with the last of them (also on cn_node_free).
 */
#ifndef CNODE_CLUSTER_INT_H
#define CNODE_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/cluster.h"
#include "cnode_int.h"

typedef struct cn__cluster cn__cluster_t;

/* Node names found by one poll, with an optional distribution port each (from
 * SRV records or gossip heartbeats; 0 = ask EPMD). */
typedef struct cl_names {
    char **v;
    int *port;
    int n, cap;
} cl_names_t;

/* Add a name (copied) unless present. Returns 0 or -ENOMEM. */
int cn__names_add(cl_names_t *l, const char *name, int port);
bool cn__names_has(const cl_names_t *l, const char *name);
void cn__names_free(cl_names_t *l);

/* One discovery strategy. */
typedef struct cn__discovery {
    const char *name;
    /* Check the options and set up *state; may spawn processes that hold a
     * reference on c (cn__cluster_ref). Called from cn_cluster_start, on the
     * node's thread. Returns 0 or a negative errno (logged by the strategy). */
    int (*init)(cn__cluster_t *c, void **state);
    /* One round, in the discovery process (may wait: sockets, cn_blocking): fill
     * `out` with every node name found. Returns 0, or a negative errno, in which
     * case the previous list is kept. */
    int (*poll)(cn__cluster_t *c, void *state, cl_names_t *out);
    /* Free the state (the last reference on c is going). NULL allowed. */
    void (*free)(void *state);
} cn__discovery_t;

extern const cn__discovery_t cn__discovery_static, cn__discovery_epmd,
    cn__discovery_dns, cn__discovery_gossip, cn__discovery_ecs;

enum { CL_DOWN = 0, CL_CONNECTING, CL_UP };

typedef struct cl_peer {        /* a node the discovery lists */
    char *name;
    int state;                  /* CL_* */
    int backoff_ms;             /* delay before the next attempt after a failure */
    bool retry_armed;           /* a {cl_retry, Name} timer is pending */
    bool hooked_up;             /* on_node(up) was called, on_node(down) was not */
} cl_peer_t;

typedef struct cl_member {      /* a registry entry */
    char service[CN_CLUSTER_SVC_MAX];
    cn_pid_t pid;
    char version[CN_CLUSTER_META_MAX];
    char zone[CN_CLUSTER_META_MAX];
    uint32_t outstanding;       /* cn_cluster_call in progress to it */
    cn_ref_t mon;               /* local members: the registry's monitor */
} cl_member_t;

struct cn__cluster {
    cn_node_t *node;
    int refs;
    char *strategy_name, *zone;
    int poll_ms, backoff_min_ms, backoff_max_ms;
    char *nodes, *epmd_hosts, *dns_name, *dns_type, *dns_server, *basename;
    char *gossip_addr, *gossip_bind, *gossip_secret;
    int gossip_port, gossip_interval_ms, gossip_window_s;
    char *ecs_cluster, *ecs_service, *ecs_region, *ecs_endpoint;
    cn_cluster_node_cb on_node;
    void *on_node_ud;
    cn_dist_log_cb log;
    void *log_ud;

    const cn__discovery_t *disc;
    void *disc_state;
    cn_pid_t mesh, discovery, pg;

    cl_names_t listed;          /* the latest successful poll */
    bool listed_valid;          /* a poll has succeeded */
    cl_peer_t *peers;           /* the mesh's view of listed nodes */
    int npeers, cappeers;

    cl_member_t *members;       /* the registry */
    int nmembers, capmembers;
    char **pg_nodes;            /* connected nodes the registry talks to */
    int npg_nodes, cappg_nodes;
    uint32_t rr;                /* round-robin counter of pick */
};

/* cluster.c */
cn__cluster_t *cn__cluster_of(cn_node_t *n);
void cn__cluster_ref(cn__cluster_t *c);
void cn__cluster_unref(void *c); /* a cn_exit_cb */
__attribute__((format(printf, 3, 4)))
void cn__cluster_log(cn__cluster_t *c, int level, const char *fmt, ...);
/* Ask the discovery process to poll now (a strategy saw something new). */
void cn__cluster_poll_now(cn__cluster_t *c);
/* "alive" part of this node's name, and its host part. */
void cn__cluster_self_parts(cn__cluster_t *c, char *alive, size_t alen, char *host,
                            size_t hlen);

/* discovery_static.c: parse "a@h,b@h" into out. 0, -EINVAL, -ENOMEM. */
int cn__cluster_static_parse(const char *text, cl_names_t *out);

/* discovery_epmd.c: parse a NAMES reply (after its 4-byte port) into
 * "name@host" entries. 0 or -ENOMEM; malformed lines are skipped. */
int cn__epmd_parse_names(const char *text, size_t len, const char *host, cl_names_t *out);

/* discovery_gossip.c: heartbeat packets (format in that file). */
typedef struct cn__gossip_hb {
    uint64_t ts;                /* sender's wall clock, ms */
    uint8_t nonce[16];
    int port;                   /* sender's distribution port */
    char name[256];
} cn__gossip_hb_t;
/* Build a heartbeat into buf; returns its length, or -EINVAL (name too long or
 * cap too small), -ENOMEM. */
int cn__gossip_build(uint8_t *buf, size_t cap, const char *secret, size_t slen,
                     uint64_t ts, const uint8_t nonce[16], int port, const char *name);
/* Check and decode one: 0; -EBADMSG wrong HMAC; -EPROTO malformed; -ENOMEM.
 * Time window and replay are the caller's business. */
int cn__gossip_parse(const uint8_t *buf, size_t len, const char *secret, size_t slen,
                     cn__gossip_hb_t *out);

/* discovery_ecs.c: reading the ECS API's answers (pure: exposed for unit tests
 * and the fuzz target). */
struct json_t;
typedef struct cn__ecs_zone {
    char *name;                 /* node name */
    char *zone;                 /* its task's availabilityZone, "" if none */
} cn__ecs_zone_t;
/* A ListTasks page: append its taskArns (the strings among them) to `arns`, and
 * set *next to a copy of its nextToken (malloc'd), NULL on the last page.
 * Returns 0 or -ENOMEM (*next is then NULL). */
int cn__ecs_list_page(const struct json_t *resp, struct json_t *arns, char **next);
/* A DescribeTasks answer: for each task not stopping with an IPv4 ENI address,
 * add "basename@IP" to `out` (unless there already, or too long for a node name)
 * and its name and zone (malloc'd) to z[*nz], z having room for `cap`; a task
 * without an address counts in *skipped. Returns 0 or -ENOMEM (also when more
 * than `cap` tasks would be listed). */
int cn__ecs_describe_tasks(const struct json_t *resp, const char *basename, cl_names_t *out,
                           cn__ecs_zone_t *z, size_t cap, int *nz, int *skipped);

/* pg.c */
int cn__pg_start(cn__cluster_t *c);

#endif /* CNODE_CLUSTER_INT_H */
