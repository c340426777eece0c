/* vproc_int.h - private structures of the virtual-process module.
 *
 * Reading order: the routing helpers (vproc_route.c: canonical keys, hashes,
 * rendezvous over the cluster registry), a type as offered by this node, an
 * entry of the key table (key -> activation pid), and cn__vproc, the state of
 * one node's vproc layer. It hangs off cn_node (node->vproc) and is shared by
 * the `vproc` process and every activation; it is reference counted (each of
 * them holds a reference, released by its exit hook), so it goes with the last.
 */
#ifndef CNODE_VPROC_INT_H
#define CNODE_VPROC_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/vproc.h"
#include "cnode_int.h"

/* ---------------------------------------------------------------------------------
 * Routing (vproc_route.c): pure functions but the last, which reads the registry.
 * ------------------------------------------------------------------------------ */

/* Decode the term at buf[*index] and append its canonical encoding to out (no
 * version byte): the bytes libei writes for the decoded values, so the same key
 * sent by erl, Elixir or libcnode gives the same bytes. Atoms, integers (up to
 * 64 bits), binaries, strings, tuples and proper lists of those; at most
 * CN_VPROC_KEY_MAX bytes and 16 levels. Advances *index past the term. Returns 0,
 * -EINVAL (another kind of term, or too big), -ENOMEM. */
int cn__vproc_key_canon(const char *buf, int *index, ei_x_buff *out);

/* 64-bit hash of bytes (FNV-1a, then a splitmix64 finaliser for avalanche). */
uint64_t cn__vproc_hash(const void *p, size_t n);

/* The rendezvous weight of a key (by its hash) on a node (by name). */
uint64_t cn__vproc_weight(uint64_t key_hash, const char *node);

/* Of n node names, the index of the one with the highest weight for key_hash
 * (ties, which need equal names, go to the first). -1 when n == 0. */
int cn__vproc_pick(uint64_t key_hash, const char *const *nodes, int n);

/* The owner of key_hash among the nodes whose members offer `service` in this
 * node's registry (cluster_int.h); *out borrows the node's name from the node
 * table. Returns 0 or -ENOENT. Without a cluster: -ENOTCONN. */
int cn__vproc_owner_of(cn_node_t *n, const char *service, uint64_t key_hash,
                       const char **out);

/* A signature of the set of nodes offering `service` (changes when a node
 * joins or leaves it). */
uint64_t cn__vproc_view_sig(cn_node_t *n, const char *service);

/* ---------------------------------------------------------------------------------
 * State
 * ------------------------------------------------------------------------------ */

typedef struct vp_type {
    cn_vproc_type_t cb;              /* copy of the registration (name repointed) */
    char name[CN_VPROC_TYPE_MAX];
    char service[CN_VPROC_TYPE_MAX + 8]; /* "vproc:NAME", the cluster service */
    uint64_t view_sig;               /* membership signature seen last */
} vp_type_t;

typedef struct vp_entry {            /* one key with an activation here */
    struct vp_entry *next;           /* bucket chain */
    uint64_t hash;                   /* cn__vproc_hash of the canonical key */
    int type;                        /* index in cn__vproc.types */
    cn_pid_t pid;                    /* the activation */
    bool stopping;                   /* told to stop; a new call starts a successor */
    size_t klen;
    char key[];                      /* canonical key bytes */
} vp_entry_t;

typedef struct cn__vproc {
    cn_node_t *node;
    int refs;
    cn_vproc_store_t *store;         /* borrowed */
    int check_ms, max_activations;
    cn_pid_t router;                 /* the `vproc` process */
    bool leaving;                    /* cn_vproc_leave was called */

    vp_type_t **types;               /* each allocated on its own: stable */
    int ntypes, captypes;

    vp_entry_t **buckets;            /* key table, chained; size a power of two */
    size_t nbuckets, nentries;

    ei_x_buff kx;                    /* the router's scratch buffer for keys */

    cn_vproc_stats_t st;
} cn__vproc_t;

#endif /* CNODE_VPROC_INT_H */
