/* cnode_int.h - private structures of libcnode shared by its source files.
 *
 * Reading order: cn_node (the scheduler and everything it owns), cn_proc (one
 * process), then the small records hung off processes (monitors, exit handlers,
 * timers). Functions named cn__* are internal to the library.
 */
#ifndef CNODE_CNODE_INT_H
#define CNODE_CNODE_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/term.h"

typedef struct cn_proc cn_proc_t;
typedef struct cn_stack cn_stack_t;
typedef struct cn_timer cn_timer_t;
typedef struct cn_mon cn_mon_t;

/* ---------------------------------------------------------------------------------
 * Allocation (alloc.c). Every library allocation goes through these so tests can
 * make the N-th one fail (cn__alloc_fail_at) and check that -ENOMEM comes back.
 * ------------------------------------------------------------------------------ */

void *cn__malloc(size_t n);
void *cn__calloc(size_t n, size_t size);
void *cn__realloc(void *p, size_t n);
void cn__free(void *p);
/* Test hook: make the n-th allocation from now fail (1 = the next); 0 disables. */
void cn__alloc_fail_at(long n);
long cn__alloc_count(void);

/* ---------------------------------------------------------------------------------
 * Stacks and context switching (ctx.c)
 * ------------------------------------------------------------------------------ */

struct cn_stack {
    char *base;        /* lowest usable address (above the guard page) */
    size_t size;       /* usable bytes */
    cn_proc_t *owner;  /* shared stack: the process whose frames are on it now */
    cn_proc_t *pinned; /* shared stack: a process in cn_blocking() keeps it */
    cn_proc_t *waiting; /* processes bound here that wait for the pin to go */
    cn_stack_t *next;  /* node's list of shared stacks */
    char *asan_low;    /* AddressSanitizer builds: lowest stack pointer of frames
                          that left without returning (their poisoned redzones
                          stay in the shadow until cleared); NULL = clean */
    bool shared;
};

int cn__stack_new(cn_node_t *n, size_t size, bool shared, cn_stack_t **out);
void cn__stack_free(cn_node_t *n, cn_stack_t *s);

/* Switch from the scheduler into p and return when p parks, yields or exits. */
void cn__ctx_resume(cn_node_t *n, cn_proc_t *p);
/* From a process: switch back to the scheduler. Returns when resumed. */
void cn__ctx_park(cn_proc_t *p);
/* From a process that has exited: switch back for good. */
_Noreturn void cn__ctx_leave(cn_proc_t *p);
/* Release p's stack state (saved copy, own stack, ownership of a shared one). */
void cn__ctx_release(cn_node_t *n, cn_proc_t *p);

/* ---------------------------------------------------------------------------------
 * Timers (timer.c): a binary min-heap ordered by due time.
 * ------------------------------------------------------------------------------ */

enum cn_timer_kind {
    CN_TIMER_WAKE = 1, /* wake a parked process (receive/fd/sleep timeout) */
    CN_TIMER_SEND,     /* deliver a message (cn_send_after) */
};

struct cn_timer {
    uint64_t due;      /* ms on the node clock */
    uint32_t heap_ix;  /* position in the heap, UINT32_MAX when not armed */
    uint8_t kind;      /* enum cn_timer_kind */
    cn_proc_t *proc;   /* WAKE: the process; SEND: target (NULL if remote) */
    /* SEND timers only: */
    cn_timer_t *tprev, *tnext; /* in the target's list, for cancel on its exit */
    cn_msg_t *msg;
    cn_pid_t to;
    uint32_t slot, gen; /* handle in the node's timer table */
};

void cn__timer_arm(cn_node_t *n, cn_timer_t *t, uint64_t due);
void cn__timer_disarm(cn_node_t *n, cn_timer_t *t);
/* Fire every timer that is due; returns how many fired. */
int cn__timers_run(cn_node_t *n);
/* ms until the next timer is due: -1 if none, 0 if one is due. */
int cn__timers_next(cn_node_t *n);
/* Cancel and free the SEND timers that target p (p is exiting). */
void cn__timers_drop_for(cn_node_t *n, cn_proc_t *p);
void cn__timers_free_all(cn_node_t *n);

/* ---------------------------------------------------------------------------------
 * Processes
 * ------------------------------------------------------------------------------ */

enum cn_proc_state {
    CN_P_RUNNABLE = 1, /* in the run queue, or running */
    CN_P_WAIT_MSG,     /* parked in receive (maybe with a timer) */
    CN_P_WAIT_FD,      /* parked in cn_wait_fd */
    CN_P_SLEEP,        /* parked in cn_sleep */
    CN_P_WAIT_POOL,    /* parked in cn_blocking: a pool thread uses its stack */
    CN_P_STACK_WAIT,   /* runnable, but its shared stack is pinned by another */
    CN_P_EXITING,      /* exit decided; resources released by the scheduler */
};

/* Why a parked process was woken. */
enum cn_wake {
    CN_WAKE_NONE = 0,
    CN_WAKE_MSG,
    CN_WAKE_TIMEOUT,
    CN_WAKE_FD,
    CN_WAKE_BADF,
    CN_WAKE_POOL,
};

typedef struct cn_exit_hook {
    struct cn_exit_hook *next;
    cn_exit_cb fn;
    void *arg;
    long id;
} cn_exit_hook_t;

/* A monitor of a local process: lives in the target's list and the watcher's. */
struct cn_mon {
    cn_ref_t ref;
    cn_proc_t *watcher, *target;
    cn_mon_t *w_prev, *w_next; /* in watcher->mons_out */
    cn_mon_t *t_prev, *t_next; /* in target->mons_in */
};

struct cn_proc {
    void *fctx;              /* saved context while not running */
    cn_stack_t *stack;       /* bound at first run; shared or own */
    char *saved;             /* copy of the used part of a shared stack */
    uint32_t saved_len;      /* bytes in saved */
    uint32_t saved_cap;      /* bytes allocated for saved */

#if defined(__SANITIZE_THREAD__)
    void *tsan_fiber;        /* ThreadSanitizer's record of this coroutine */
#endif
    cn_pid_t pid;
    uint8_t state;           /* enum cn_proc_state */
    uint8_t wake;            /* enum cn_wake: why it was last woken */
    bool started : 1;        /* has run at least once */
    bool trap_exit : 1;
    bool in_rq : 1;          /* linked in the run queue */
    bool kill_pending : 1;   /* killed while in cn_blocking: die on return */
    bool own_stack_wanted : 1;
    bool alias_active : 1;   /* a gen_server call waits for a reply to `alias` */
    bool dist_ref : 1;       /* has remote links or monitors: tell dist on exit */
    cn_proc_t *rq_next;      /* run queue / stack wait list */

    cn_proc_fn fn;
    void *arg;
    uint32_t own_stack_size; /* bytes, when own_stack_wanted */

    cn_msg_t *mq_head;       /* mailbox, oldest first */
    cn_msg_t **mq_tail;      /* &last->next, or &mq_head */
    uint32_t mq_len;
    uint32_t mq_max;         /* 0 = unbounded */

    cn_timer_t *wtimer;      /* receive/fd/sleep timeout, allocated on demand */
    cn_timer_t *send_timers; /* SEND timers that target this process */
    int wait_fd;             /* fd in CN_P_WAIT_FD */
    int fd_ready;            /* CN_READABLE/CN_WRITABLE seen when woken */

    cn_pid_t *links;         /* linked processes (local or remote) */
    uint32_t nlinks, caplinks;
    cn_mon_t *mons_out;      /* monitors this process holds */
    cn_mon_t *mons_in;       /* monitors on this process */

    cn_ref_t alias;          /* the reply alias of the call in progress */
    struct cn_span *span;    /* telemetry: the current span, or NULL (trace.c) */
    char *name;              /* registered name, or NULL */
    cn_exit_hook_t *hooks;   /* cn_on_exit handlers, newest first */
    char *reason;            /* exit reason, encoded term without version byte */
    int reason_len;
};

/* The per-fd poller record (poll.c). */
typedef struct cn_fdrec {
    cn_proc_t *reader, *writer;
    uint8_t ready;      /* CN_READABLE/CN_WRITABLE seen and not yet consumed */
    bool registered;    /* added to epoll */
} cn_fdrec_t;

typedef struct cn_pool cn_pool_t;

/* A pending kill, processed by the scheduler outside any process. */
typedef struct cn_kill {
    struct cn_kill *next;
    cn_proc_t *proc;
    uint32_t serial;   /* of proc->pid, in case the slot was reused */
    char *reason;      /* encoded term without version byte, owned */
    int reason_len;
} cn_kill_t;

typedef struct cn_reg cn_reg_t; /* registry.c */

/* Distribution hooks. cn_dist_start() (dist.c) installs them; the core calls them
 * for pids and names of other nodes and so stays independent of the dist code.
 * All run on the scheduler thread, from a process or from the scheduler. */
typedef struct cn_dist_ops {
    /* Deliver m (ownership taken) to a pid of another node; connects on demand. */
    int (*send)(cn_node_t *n, cn_pid_t from, cn_pid_t to, cn_msg_t *m);
    /* Deliver m (ownership taken) to {name, node}. */
    int (*reg_send)(cn_node_t *n, cn_pid_t from, const char *name, const char *node,
                    cn_msg_t *m);
    /* Local `from` linked to remote `to` (from's side is already recorded). */
    int (*link)(cn_node_t *n, cn_pid_t from, cn_pid_t to);
    void (*unlink)(cn_node_t *n, cn_pid_t from, cn_pid_t to);
    /* Local `from` monitors remote pid `to`, or {name, node} when name != NULL;
     * the DOWN for `ref` comes later (noconnection if the node is unreachable). */
    int (*monitor)(cn_node_t *n, cn_pid_t from, cn_pid_t to, const char *name,
                   const char *node, const cn_ref_t *ref);
    /* Returns 0 if `ref` was a remote monitor of `from` (now removed), else -ENOENT. */
    int (*demonitor)(cn_node_t *n, cn_pid_t from, const cn_ref_t *ref);
    /* Exit signal from local `from` to remote `to`: a link's EXIT when link is
     * true, else erlang:exit/2. reason: encoded term without version byte. */
    void (*exit)(cn_node_t *n, cn_pid_t from, cn_pid_t to, const char *reason, int len,
                 bool link);
    /* Deliver m (ownership taken) to the alias `ref` (encoded, no version byte)
     * of `owner`, a remote pid, with ALIAS_SEND. -ENOTSUP (m not taken) if the
     * owner's node does not take aliases; the caller then sends to the pid. */
    int (*alias_send)(cn_node_t *n, cn_pid_t from, cn_pid_t owner, const char *ref,
                      int ref_len, cn_msg_t *m);
    /* Local p (dist_ref set) is exiting with p->reason. */
    void (*proc_exit)(cn_node_t *n, cn_proc_t *p);
    /* The node is being freed, after its processes. */
    void (*node_free)(cn_node_t *n);
} cn_dist_ops_t;

struct cn_node {
    char *name;               /* "alive@host" */
    uint32_t creation;

    /* process table: slot i holds the process with pid.num == i (slot 0 unused) */
    cn_proc_t **procs;
    uint32_t *serials;        /* generation per slot */
    uint32_t nslots, capslots;
    uint32_t *free_slots;     /* stack of free slot numbers */
    uint32_t nfree, capfree;
    size_t nprocs;            /* live processes */

    cn_proc_t *current;       /* the running process, or NULL in the scheduler */
    cn_proc_t *rq_head, *rq_tail;
    cn_kill_t *kills, **kills_tail;
    void *sched_fctx;         /* the scheduler's context while a process runs */

    /* stacks */
    cn_stack_t *shared;       /* list of shared stacks */
    cn_stack_t *cur_shared;   /* where new shared-stack processes are bound */
    size_t shared_stack_size, own_stack_size;
    cn_stack_t *own_free;     /* cache of released own stacks (default size) */
    int nown_free;

    /* time */
    uint64_t now_ms;
    cn_timer_t **heap;
    uint32_t heap_len, heap_cap;
    cn_timer_t **tslots;      /* handle table for SEND timers */
    uint32_t *tgens;
    uint32_t ntslots, captslots;
    uint32_t *tfree;
    uint32_t ntfree, captfree;

    /* refs */
    uint32_t ref_n[3];

    /* poller */
    int epfd;
    cn_fdrec_t *fds;
    int nfds_cap;
    int nwaiting_fd;

    /* blocking-work pool */
    cn_pool_t *pool;
    int pool_threads;
    int npool_busy;           /* processes parked in cn_blocking */

    /* registry */
    cn_reg_t *reg;

    /* active aliases of gen_server calls (alias.c): hash by reference */
    cn_proc_t **alias_tab;
    uint32_t alias_cap, alias_n;

    /* node names for remote pids: names[0] is this node */
    char **node_names;
    uint32_t nnode_names, capnode_names;

    /* distribution (dist.c), NULL until cn_dist_start() */
    const cn_dist_ops_t *dist_ops;
    void *dist;

    /* cluster (cluster.c): a cn__cluster_t, NULL until cn_cluster_start(); freed
     * by the exit hooks of the cluster's processes */
    void *cluster;

    /* telemetry (trace.c): a cn__tel_t, NULL until cn_telemetry_start() or the
     * first metric; the core's instrumentation runs only when it is set */
    void *telemetry;

    /* virtual processes (vproc.c): a cn__vproc_t, NULL until cn_vproc_start();
     * freed by the exit hooks of the `vproc` process and its activations */
    void *vproc;

    /* code loading (code.c): a cn__code_t, NULL until first used */
    void *code;

    bool stop;
    bool running;
};

extern __thread cn_node_t *cn__cur_node;

/* sched.c */
void cn__make_runnable(cn_node_t *n, cn_proc_t *p, int wake);
/* Park the calling process in `state` until something wakes it; returns the wake
 * reason. timeout_ms < 0 = none. */
int cn__park(cn_node_t *n, cn_proc_t *p, int state, int64_t timeout_ms);
uint64_t cn__clock_ms(void);

/* proc.c */
cn_proc_t *cn__proc_get(cn_node_t *n, cn_pid_t pid); /* local live process or NULL */
/* cn_on_exit for another live local process, e.g. one just spawned that may be
 * killed before it first runs (and so before it could register a handler).
 * Returns the handle (> 0), -ESRCH, -ENOMEM. */
long cn__on_exit_of(cn_node_t *n, cn_pid_t pid, cn_exit_cb fn, void *arg);
void cn__proc_entry(cn_proc_t *p);                    /* runs on the process stack */
/* Kill p with reason (encoded term, no version byte; copied). Processes the exit
 * now if called from the scheduler, or queues it. */
void cn__proc_kill(cn_node_t *n, cn_proc_t *p, const char *reason, int reason_len);
/* Release everything of a process that exited (state EXITING). */
void cn__proc_finish(cn_node_t *n, cn_proc_t *p);
void cn__kills_run(cn_node_t *n);

/* mbox.c */
void cn__mbox_push(cn_node_t *n, cn_proc_t *p, cn_msg_t *m);
void cn__mbox_free(cn_proc_t *p);
/* Wrap an ei buffer into a message (takes x->buff). NULL on ENOMEM (buffer freed). */
cn_msg_t *cn__msg_from_x(ei_x_buff *x);
/* Make a message from an encoded term without version byte (copied). */
cn_msg_t *cn__msg_from_term(const char *buf, int len);

/* gen_server.c */
/* Deliver {Tag, Reply} (x holds it, version byte first) to pid, honouring an
 * alias tag [alias|Ref]: a local caller that no longer waits gets nothing. */
int cn__reply_send(cn_node_t *n, cn_pid_t pid, const char *tag, int taglen, ei_x_buff *x);
/* Send {system, {Self, [alias|Ref]}, Msg} (msg: version byte + Msg, consumed) and
 * wait for the reply. 0 with *out (free it) and *reply inside it, -ESRCH (the
 * server is gone), -ETIMEDOUT, -ENOMEM, -EINVAL (not in a process). */
int cn__sys_call(cn_dest_t dest, ei_x_buff *msg, int64_t timeout_ms, cn_msg_t **out,
                 cn_term_t *reply);
/* Decode From = {Pid, Tag} at buf[*i] (of a call or a system message) into
 * *from, the tag as the caller encoded it; *i moves past it. 0, or -EINVAL when
 * malformed or the tag is longer than CN_TAG_MAX. gen_server.c and vproc.c. */
int cn__decode_from(const char *buf, int *i, cn_from_t *from);

/* code.c */
struct cn_module;
/* The loaded module at this index of the process's table, or NULL. */
const struct cn_module *cn__code_module_at(long index);
/* Release the node's code state (the table of current modules); loaded objects
 * stay mapped (see code.c). At cn_node_free, after every process. */
void cn__code_free(cn_node_t *n);

/* alias.c */
/* Make ref p's active alias (replacing any); 0 or -ENOMEM (then none is active). */
int cn__alias_activate(cn_node_t *n, cn_proc_t *p, const cn_ref_t *ref);
void cn__alias_deactivate(cn_node_t *n, cn_proc_t *p);
/* The process whose active alias is ref, or NULL. */
cn_proc_t *cn__alias_find(cn_node_t *n, const cn_ref_t *ref);
void cn__alias_free(cn_node_t *n);

/* trace.c (telemetry_int.h has the rest) */
/* Free p's open spans (p is exiting; they are not exported). */
void cn__tel_proc_exit(cn_proc_t *p);
/* Free the node's telemetry, after its processes. NULL telemetry is fine. */
void cn__telemetry_free(cn_node_t *n);

/* link.c */
/* Deliver the exit signal `reason` from `from` to local process p. */
void cn__exit_signal(cn_node_t *n, cn_pid_t from, cn_proc_t *p, const char *reason,
                     int reason_len, bool from_link);
/* Tell links and monitors that p exits with p->reason. */
void cn__links_notify(cn_node_t *n, cn_proc_t *p);
/* Add or remove pid in p's link set (for links made by a remote peer). */
int cn__link_add(cn_proc_t *p, cn_pid_t pid);
bool cn__link_remove(cn_proc_t *p, cn_pid_t pid);
/* A cn_match_cb: m is {'DOWN', Ref, ...} for the monitor whose ref arg
 * (a const cn_ref_t *) points to. */
bool cn__match_down(const cn_msg_t *m, void *arg);
/* Take monitor m out of its target's list (m->target->mons_in). */
void cn__mon_unlink_target(cn_mon_t *m);

/* poll.c */
int cn__poll_init(cn_node_t *n);
void cn__poll_free(cn_node_t *n);
/* Wait for I/O events up to timeout_ms (-1 forever) and wake processes. */
int cn__poll_wait(cn_node_t *n, int timeout_ms);
void cn__poll_forget_proc(cn_node_t *n, cn_proc_t *p);
/* A library's socket in a private epoll set (c-ares's, curl's, waited on as one
 * fd with cn_wait_fd): watched for in/out as asked, taken out when neither.
 * 0, or -errno when it could not be added. */
int cn__epoll_watch(int epfd, int fd, bool in, bool out);

/* pool.c */
int cn__pool_start(cn_node_t *n, int nthreads);
void cn__pool_stop(cn_node_t *n);
/* The eventfd the pool signals completions on; the poller owns its callback. */
int cn__pool_fd(cn_node_t *n);
void cn__pool_drain(cn_node_t *n);

/* registry.c */
int cn__reg_init(cn_node_t *n);
void cn__reg_free(cn_node_t *n);
void cn__reg_drop_proc(cn_node_t *n, cn_proc_t *p);

/* term.c */
int cn__node_name_index(cn_node_t *n, const char *name, uint32_t *out);
const char *cn__node_name_of(cn_node_t *n, uint32_t ix);
void cn__node_names_free(cn_node_t *n);
/* A pid or a ref into buf at *index, as ei_encode_pid/ref (buf NULL: only
 * advance *index by the size). The caller made the room: 16 bytes and twice
 * the node name's length for a pid, 24 and twice the name for a ref. Returns
 * 0 or -EINVAL. */
int cn__encode_pid(char *buf, int *index, cn_pid_t pid);
int cn__encode_ref(char *buf, int *index, const cn_ref_t *ref);
/* Encode an atom reason into a fresh allocation (no version byte). */
int cn__encode_atom(const char *atom, char **out, int *outlen);

#endif /* CNODE_CNODE_INT_H */
