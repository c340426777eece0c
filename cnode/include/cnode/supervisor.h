/* supervisor.h - supervisors: start children, watch them, restart what fails.
 *
 * A supervisor is a gen_server that traps exits and links to its children. When a
 * child exits, its restart type decides whether it comes back (permanent: always;
 * transient: unless it exited normal, shutdown or {shutdown, _}; temporary: never),
 * and the strategy decides what else restarts with it (one_for_one: nothing;
 * one_for_all: every other child; rest_for_one: the children started after it).
 * More than `intensity` restarts within `period_s` seconds stop the supervisor with
 * reason `shutdown`, which its own supervisor then sees. Children start in order
 * and are shut down in reverse order: `shutdown` exit signal, then `kill` after the
 * child's shutdown timeout.
 *
 * The supervisor answers OTP's supervisor:which_children/1 and count_children/1
 * calls, so an erl shell can inspect a libcnode supervision tree.
 */
#ifndef CNODE_SUPERVISOR_H
#define CNODE_SUPERVISOR_H

#include <stdint.h>

#include "cnode/gen_server.h"

enum { CN_ONE_FOR_ONE = 1, CN_ONE_FOR_ALL, CN_REST_FOR_ONE };
enum { CN_PERMANENT = 1, CN_TRANSIENT, CN_TEMPORARY };
enum { CN_WORKER = 1, CN_SUPERVISOR };

#define CN_BRUTAL_KILL 0

typedef struct cn_child_spec {
    const char *id;   /* unique among the supervisor's children; copied */
    /* Start the child linked to the calling process (the supervisor), e.g. with
     * cn_gen_server_start(.link = true) or cn_spawn(CN_SPAWN_LINK). Return 0 and
     * *out, or a negative code. Called in the supervisor process. */
    int (*start)(void *arg, cn_pid_t *out);
    void *arg;        /* borrowed: must outlive the child spec */
    int restart;      /* CN_PERMANENT (0 means the same), CN_TRANSIENT, CN_TEMPORARY */
    int64_t shutdown_ms; /* ms to wait after `shutdown` before `kill`; CN_BRUTAL_KILL
                            kills at once; CN_INFINITY waits forever. Note 0 is brutal
                            kill, so set 5000 for OTP's worker default */
    int type;         /* CN_WORKER (0 means the same) or CN_SUPERVISOR */
} cn_child_spec_t;

typedef struct cn_sup_flags {
    int strategy;     /* CN_ONE_FOR_ONE (0 means the same), CN_ONE_FOR_ALL, CN_REST_FOR_ONE */
    int intensity;    /* restarts allowed ... (0 allowed: any restart stops it) */
    int period_s;     /* ... within this many seconds (0 = 5) */
} cn_sup_flags_t;

/* Start a supervisor with `n` children (copied), started in order before this
 * returns. Options as for cn_gen_server_start (name, link; trap_exit is always
 * on). Returns 0 and *out; a child that fails to start stops those already
 * started and the supervisor, and its code is returned. */
int cn_supervisor_start(cn_node_t *node, const cn_sup_flags_t *flags,
                        const cn_child_spec_t *children, int n,
                        const cn_gen_server_opts_t *opts, cn_pid_t *out);

/* Add and start a child (the spec is copied). Returns 0 and *out (may be NULL),
 * -EEXIST if the id is in use, or the start function's code. Local supervisors
 * only (the spec holds C function pointers). */
int cn_supervisor_start_child(cn_dest_t sup, const cn_child_spec_t *spec, cn_pid_t *out);

/* Stop a child (shutdown as configured) and keep its spec. -ENOENT: no such id. */
int cn_supervisor_terminate_child(cn_dest_t sup, const char *id);

/* Start a stopped child again. -ENOENT no such id, -EALREADY it runs. */
int cn_supervisor_restart_child(cn_dest_t sup, const char *id, cn_pid_t *out);

/* Remove a stopped child's spec. -ENOENT no such id, -EBUSY it runs. */
int cn_supervisor_delete_child(cn_dest_t sup, const char *id);

/* The child's current pid; -ENOENT no such id, -ESRCH not running. */
int cn_supervisor_which_child(cn_dest_t sup, const char *id, cn_pid_t *out);

#endif /* CNODE_SUPERVISOR_H */
