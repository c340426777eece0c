/* vproc.h - virtual processes: servers addressed by a key that exist whenever
 * they are called ("serverless GenServers", Orleans' virtual actors).
 *
 * A vproc *type* (say `reader_session`) is a set of callbacks registered on the
 * nodes that offer it. A vproc is one key of a type (any small term: an atom, an
 * integer, a binary, a string, or tuples and lists of those). Calling it from any
 * node of the cluster:
 *
 *     cn_vproc_call("reader_session", key, req, 1000, 0, &msg, &reply);
 *
 * routes the call to the key's *owner*: the node, among the live nodes that
 * offer the type, with the highest rendezvous weight hash(node, key) (highest
 * random weight hashing). When that node leaves, only its keys move, each to
 * the node with the next highest weight; when one joins, only the keys it now
 * wins move to it. On the owner, the `vproc` process (one per node) finds the
 * key's activation - a libcnode process of its own - or starts one, which loads
 * the saved state from the store (activate), then serves calls in order
 * (handle_call). After idle_ms without a call the activation ends (deactivate);
 * the next call activates it again from the store.
 *
 * Durability: write-through. A call whose handle_call says it changed the state
 * (CN_VPROC_WRITE) has the state saved to the store *before* its reply leaves,
 * so every answered write survives kill -9 of its node. Each saved state has a
 * version; a save names the version it read and fails when the store holds
 * another one (a newer activation of the key elsewhere wrote meanwhile): the
 * activation then reloads the newer state and runs the request again on it, so
 * two activations of one key during a membership change cannot overwrite each
 * other's writes (the version is the fencing token). Reads are not checked
 * against the store: during a change a read may see the state of the old
 * activation for as long as its node has not seen the change.
 * docs/virtual-processes.md states the guarantees and limits in full.
 *
 * Routing messages (cluster.h's registry carries membership): each node's
 * `vproc` process joins the cluster service "vproc:TYPE" for every type it
 * offers. A call is a gen_server call to {vproc, OwnerNode} with
 *   {'$vp', Type, Key, Req, Hops}
 * answered by the activation with the plain reply, or by the `vproc` process
 * with {'$vp_redirect', Node} when its own view names another owner; the caller
 * follows a redirect (Hops + 1) and, from 2 hops on, the receiving node serves
 * the key whatever its view says, so differing views cannot bounce a call.
 * Erlang and Elixir nodes call GenServer.call({:vproc, AnyNode}, {:call, Type,
 * Key, Req}): that node forwards the call to the owner it sees, keeping the
 * caller's From, so the activation answers the caller directly.
 *
 * Every function here runs on the node's scheduler thread; those that wait must
 * be called from a process. Return codes are 0 or a negative errno.
 */
#ifndef CNODE_VPROC_H
#define CNODE_VPROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/term.h"

#define CN_VPROC_TYPE_MAX 56   /* type names (atoms), with the NUL */
#define CN_VPROC_KEY_MAX 1024  /* canonical key bytes */

/* What handle_call returns. */
enum {
    CN_VPROC_READ = 0,   /* the state did not change: reply at once */
    CN_VPROC_WRITE = 1,  /* the state changed: save it, then reply */
};

typedef struct cn_vproc_type {
    const char *name;    /* an atom, 1..55 bytes; copied at registration */
    int idle_ms;         /* deactivate after this long without a call; 0 = 60000 */
    void *ud;            /* passed to activate */
    /* Build the state of `key` (borrowed) from its saved bytes (`saved`, `len`;
     * NULL and 0 for a key never saved). Runs in the activation process; may
     * block, but if the activation is killed meanwhile (its node stops) what
     * activate allocated so far is its own to free (cn_on_exit, with heap
     * memory: not a pointer into its stack). Return 0 and *state, or a
     * negative code, which fails the call that caused the activation (with
     * {error, activate}). */
    int (*activate)(void *ud, cn_term_t key, const void *saved, size_t len, void **state);
    /* Serve one request (`req` borrowed): append exactly one term, the reply, to
     * `reply`, and return CN_VPROC_READ or CN_VPROC_WRITE. It may run more than
     * once for one request (on a state reloaded after a version conflict), so it
     * must have no effect besides the state and the reply. A negative return
     * answers {error, Code} and leaves the state as it was only if the callback
     * did not change it. */
    int (*handle_call)(void *state, cn_term_t req, ei_x_buff *reply);
    /* Append the state's bytes to `out` (with ei_x_append_buf or ei_x_encode_*).
     * Return 0 or a negative code (the write call then fails with {error,
     * save} and the activation ends, the store keeping the previous state). */
    int (*save)(void *state, ei_x_buff *out);
    /* Free the state. Runs on every end of the activation, also when killed (on
     * the scheduler's stack then: must not block). May be NULL. */
    void (*deactivate)(void *state);
} cn_vproc_type_t;

/* ---------------------------------------------------------------------------------
 * Stores. A store keeps (type, key) -> (version, state bytes). Its functions
 * run in activation processes and may park them (sockets with cn_wait_fd,
 * cn_blocking); several run at once on one node.
 * ------------------------------------------------------------------------------ */

typedef struct cn_vproc_store cn_vproc_store_t;

typedef struct cn_vproc_store_ops {
    /* Load a key's state: append its bytes to out and set *version (>= 1), or
     * return -ENOENT for a key never saved. Other errors: -EIO, -ENOMEM,
     * -EXDEV (a store of another node). */
    int (*load)(cn_vproc_store_t *s, const char *type, const char *key, size_t klen,
                ei_x_buff *out, int64_t *version);
    /* Save state bytes if the key's version is still `expected` (0: never saved),
     * making it expected + 1. Returns 0, -ESTALE (another version is stored: the
     * caller's state is stale), -EIO, -ENOMEM, -EXDEV (as load). */
    int (*save)(cn_vproc_store_t *s, const char *type, const char *key, size_t klen,
                int64_t expected, const char *data, size_t len);
    /* Free the store (no call is running). */
    void (*close)(cn_vproc_store_t *s);
} cn_vproc_store_ops_t;

struct cn_vproc_store {
    const cn_vproc_store_ops_t *ops;
    /* private: the backend's fields follow in its own struct */
};

/* A store in memory, shared by every node of this OS process (a mutex guards
 * it): for tests and single-process use. Nothing survives the process. Returns
 * 0 and *out, or -ENOMEM. */
int cn_vproc_store_mem_new(cn_vproc_store_t **out);

/* PostgreSQL (libpq, asynchronous: the calling process parks on the socket).
 * `conninfo` is a libpq connection string or URL (copied); use an IP address
 * or a name the resolver answers at once, since libpq resolves it blocking.
 * At most `pool` connections (0 = 4), opened on first use; the table
 * cn_vproc_state (type text, key bytea, version bigint, state bytea) is
 * created if missing. Unlike the memory store it has no lock: it belongs to
 * the first node that uses it, and load and save from another node fail with
 * -EXDEV (give each node its own store). Returns 0 and *out, -ENOMEM, -EINVAL.
 * Connection errors appear later, as -EIO from load and save. */
int cn_vproc_store_pg_new(const char *conninfo, int pool, cn_vproc_store_t **out);

/* Free a store made by one of the functions above. NULL is allowed. Call it
 * after the nodes using it have stopped. */
void cn_vproc_store_free(cn_vproc_store_t *s);

/* ---------------------------------------------------------------------------------
 * Nodes
 * ------------------------------------------------------------------------------ */

typedef struct cn_vproc_opts {
    cn_vproc_store_t *store;  /* required; borrowed, must outlive the node */
    int check_ms;             /* how often the node compares the membership of its
                                 types with what it saw last; 0 = 100 */
    int max_activations;      /* activations on this node at most; past it calls
                                 fail with {error, busy}; 0 = 1,000,000 */
} cn_vproc_opts_t;

/* Start the `vproc` process on a node (from the node's thread before
 * cn_node_run, or from one of its processes). With a cluster (cn_cluster_start
 * first) types are offered cluster-wide; without one, calls stay on this node.
 * Returns 0, -EALREADY, -EINVAL (no store), -ENOMEM. */
int cn_vproc_start(cn_node_t *node, const cn_vproc_opts_t *opts);

/* Offer a type on this node (`t` is copied; t->ud and the callbacks must
 * outlive the node). From a process. Returns 0, -EEXIST (offered already),
 * -EINVAL, -ENOTCONN (no cn_vproc_start), -ENOMEM, or cn_cluster_join's code. */
int cn_vproc_register(const cn_vproc_type_t *t);

enum {
    /* Also retry when the owner node was lost while the call was under way
     * (-ECONNABORTED / -EHOSTUNREACH after sending): the request may then run
     * twice (at least once). Without it such a call fails (at most once). */
    CN_VPROC_RETRY_UNKNOWN = 1,
};

/* Call the vproc `key` (a term, borrowed) of `type` with `req` (a term made with
 * cn_x_new; consumed), on whichever node owns it, waiting up to timeout_ms in
 * all. A call that certainly did not reach an activation (no node offers the
 * type yet, the owner is gone, a redirect) is sent again, after a few ms, until
 * the timeout. On success returns 0 with *msg (free it with cn_msg_free) and
 * *reply, the activation's reply (or {error, Reason} from the vproc layer:
 * activate, save, store, busy, badkey, badarg, notype; or {error, Code} when
 * handle_call returned a negative Code). Errors: -EINVAL (bad key or type name),
 * -ENOENT (no node offers the type), -ETIMEDOUT, -ECONNABORTED (the owner was
 * lost during the call, without CN_VPROC_RETRY_UNKNOWN), -ENOMEM. `*node_out`
 * (may be NULL; CN_VPROC_NODE_MAX bytes) gets the node that answered. */
#define CN_VPROC_NODE_MAX 256
int cn_vproc_call(const char *type, cn_term_t key, ei_x_buff *req, int64_t timeout_ms,
                  int flags, cn_msg_t **msg, cn_term_t *reply, char *node_out);

/* The node that owns `key` of `type` in this node's current view (no message).
 * Copies its name into out (CN_VPROC_NODE_MAX bytes). Returns 0, -ENOENT (no
 * node offers the type), -EINVAL. */
int cn_vproc_owner(const char *type, cn_term_t key, char *out);

typedef struct cn_vproc_stats {
    uint64_t active;          /* activations alive now */
    uint64_t activations;     /* started since cn_vproc_start */
    uint64_t idle_stops;      /* ended after idle_ms */
    uint64_t moved_stops;     /* ended because another node owns the key now */
    uint64_t calls;           /* calls served by activations */
    uint64_t writes;          /* states saved */
    uint64_t conflicts;       /* saves refused as stale (then reloaded, rerun) */
    uint64_t redirects;       /* calls answered with a redirect */
    uint64_t forwards;        /* {call, ...} from Erlang forwarded to the owner */
    uint64_t store_errors;    /* load or save failures */
} cn_vproc_stats_t;

/* This node's counters. Returns 0, or -ENOTCONN without cn_vproc_start. */
int cn_vproc_stats(cn_vproc_stats_t *out);

/* Leave gracefully: withdraw every type from the cluster (other nodes route
 * the keys elsewhere from then on) and end every activation (their states are
 * in the store already). Calls arriving afterwards are redirected. From a
 * process; returns 0 or -ENOTCONN. */
int cn_vproc_leave(void);

#endif /* CNODE_VPROC_H */
