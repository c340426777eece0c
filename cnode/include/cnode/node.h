/* node.h - a libcnode node: one scheduler thread, its processes, timers and pool.
 *
 * A node is what Erlang calls a node: a named runtime that owns processes. Version 1
 * runs one scheduler per node on the thread that calls cn_node_run(): an epoll loop,
 * a timer heap and a run queue, plus a small pool of threads for work that blocks
 * (see cn_blocking() in proc.h). Nothing is global: all state hangs off the node, and
 * the scheduler thread finds its node in a thread-local pointer.
 *
 * Typical use:
 *
 *     cn_node_t *node;
 *     cn_node_opts_t o = { .name = "echo@127.0.0.1" };
 *     if ((rc = cn_node_new(&o, &node)) < 0) ...;
 *     cn_spawn(node, main_proc, arg, NULL, NULL);
 *     cn_node_run(node);           // returns when every process has exited
 *     cn_node_free(node);
 */
#ifndef CNODE_NODE_H
#define CNODE_NODE_H

#include <stddef.h>
#include <stdint.h>

typedef struct cn_node cn_node_t;

typedef struct cn_node_opts {
    const char *name;        /* "alive@host"; NULL = "cnode@localhost" */
    uint32_t creation;       /* 0 = derived from the clock */
    int pool_threads;        /* blocking-work threads; 0 = 4 */
    size_t shared_stack_size; /* bytes reserved per shared stack; 0 = 1 MiB */
    size_t own_stack_size;    /* default for CN_SPAWN_OWN_STACK; 0 = 256 KiB */
} cn_node_opts_t;

/* Create a node. Returns 0 and *out, or -ENOMEM / -EINVAL (bad name) / an errno
 * from epoll or eventfd. Does not start any thread but the pool's. */
int cn_node_new(const cn_node_opts_t *opts, cn_node_t **out);

/* Run the scheduler on the calling thread until every process has exited or
 * cn_node_stop() is called. Returns 0, or a negative errno if the loop failed. */
int cn_node_run(cn_node_t *node);

/* Ask cn_node_run() to return after the current iteration, leaving processes as
 * they are. Call it on the node's scheduler thread (from a process). */
void cn_node_stop(cn_node_t *node);

/* Free a node that is not running. Processes still alive are destroyed without
 * running their exit handlers' side effects on other nodes. NULL is allowed. */
void cn_node_free(cn_node_t *node);

/* The node of the calling scheduler thread, or NULL outside one. */
cn_node_t *cn_node_self(void);

/* This node's name, e.g. "echo@127.0.0.1". Borrowed for the node's lifetime. */
const char *cn_node_name(const cn_node_t *node);

/* Live processes on the node. */
size_t cn_node_process_count(const cn_node_t *node);

/* Milliseconds of the scheduler's monotonic clock (cached per loop iteration). */
uint64_t cn_now_ms(void);

/* Error text for a libcnode return code (negative errno or CN_E*). */
const char *cn_strerror(int rc);

#endif /* CNODE_NODE_H */
