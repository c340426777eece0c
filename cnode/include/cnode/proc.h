/* proc.h - processes: spawn, mailboxes, send, selective receive, timers, links,
 * monitors, exits, waiting on file descriptors and handing off blocking work.
 *
 * A process is a stackful coroutine on its node's scheduler, so ordinary sequential
 * C can "block" in cn_receive(), cn_wait_fd() or cn_blocking() while other processes
 * run. Scheduling is cooperative: a process runs until it blocks, yields or exits.
 * A process that computes for long should call cn_yield() now and then.
 *
 * Stacks. By default a process runs on one of its scheduler's *shared* stacks (1 MiB
 * reserved, committed lazily). When another process needs that stack, the bytes the
 * parked process actually uses are copied out to a buffer of exactly that size and
 * copied back when it resumes: an idle process costs its struct plus a few hundred
 * bytes, less than a BEAM process. The price is a copy on each switch and one rule:
 *
 *   While a shared-stack process is parked, its stack memory is not there. Never
 *   hand a pointer into your stack to another process or keep one in a structure
 *   that others read. Messages are copied, so ordinary message passing is fine, and
 *   cn_blocking() pins the stack for the duration of the call, so pointers to locals
 *   are fine there.
 *
 * A process spawned with CN_SPAWN_OWN_STACK (or a stack_size) gets a dedicated mmap
 * stack with a guard page, committed lazily, and switching to it copies nothing.
 *
 * Every function here must be called from a process (on its node's scheduler
 * thread) unless it says otherwise. Return codes are 0 or a negative errno.
 *
 * Exits. A process exits when its function returns (reason `normal`), when it calls
 * cn_exit(), or when an exit signal kills it. A killed process never runs again: its
 * stack is discarded at the point where it was parked. C has no unwinding, so memory
 * the process owns must be registered with cn_on_exit() to be freed on every path.
 */
#ifndef CNODE_PROC_H
#define CNODE_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

#include "cnode/node.h"
#include "cnode/term.h"

/* ---------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------ */

/* One message: an encoded term (with its version byte) owned by whoever holds it. */
typedef struct cn_msg {
    struct cn_msg *next; /* private: mailbox link */
    char *buf;           /* external term format, starting with the version byte 131 */
    int len;             /* bytes in buf */
    int cap;             /* private: allocated size of buf */
} cn_msg_t;

/* The message's term, for decoding with libei (index points past the version). */
static inline cn_term_t cn_msg_term(const cn_msg_t *m)
{
    cn_term_t t = { m->buf, 1, m->len };
    return t;
}

/* Free a message taken out of a mailbox. NULL is allowed. */
void cn_msg_free(cn_msg_t *m);

/* ---------------------------------------------------------------------------------
 * Spawning and identity
 * ------------------------------------------------------------------------------ */

typedef void (*cn_proc_fn)(void *arg);

enum {
    CN_SPAWN_LINK = 1 << 0,      /* link the new process to the caller */
    CN_SPAWN_MONITOR = 1 << 1,   /* the caller monitors it; the ref goes to *mref */
    CN_SPAWN_OWN_STACK = 1 << 2, /* dedicated stack instead of a shared one */
};

typedef struct cn_spawn_opts {
    int flags;          /* CN_SPAWN_* */
    size_t stack_size;  /* > 0 implies CN_SPAWN_OWN_STACK; rounded up to pages */
    uint32_t max_mailbox; /* 0 = unbounded; else sends beyond this many queued
                             messages fail with -ENOBUFS (the "full mailbox" policy) */
    cn_ref_t *mref;     /* out: monitor reference when CN_SPAWN_MONITOR */
} cn_spawn_opts_t;

/* Create a process that runs fn(arg) and make it runnable. The caller may be a
 * process of `node` or, before cn_node_run(), the thread that owns the node
 * (LINK and MONITOR need a calling process and fail with -EINVAL otherwise).
 * `arg` is borrowed by the new process: it must outlive the process's use of it,
 * and must not point into a shared stack. Returns 0 and *out (may be NULL), or
 * -ENOMEM, -EINVAL. On failure nothing was spawned and fn is never called.
 *
 * WARNING - stacks are shared and copied (see the top of this file). A process
 * on a shared stack that parks has its stack copied out and another process's
 * copied in at the same addresses, so `&local` of one process, read or written
 * by another (the child given `&counter` as arg, a pointer in a message, a
 * struct on the parent's stack that the child fills in), silently hits the
 * other process's frames: corruption with no crash at the point of the bug.
 * Give a child heap or static memory (or a parent with CN_SPAWN_OWN_STACK,
 * whose stack stays put), and send data, not pointers. */
int cn_spawn(cn_node_t *node, cn_proc_fn fn, void *arg, const cn_spawn_opts_t *opts,
             cn_pid_t *out);

/* The calling process's pid. Outside a process: the nil pid. */
cn_pid_t cn_self(void);

/* True if the pid names a live process of this node. Remote pids: false. */
bool cn_is_alive(cn_pid_t pid);

/* Give other runnable processes a turn. */
void cn_yield(void);

/* ---------------------------------------------------------------------------------
 * Registered names (a node-local registry, as erlang:register/2)
 * ------------------------------------------------------------------------------ */

/* Register `name` (an atom, 1..255 bytes) for a live local pid. Returns 0, -EEXIST if
 * the name is taken, -EBUSY if the process already has a name, -ESRCH if the pid
 * is not alive, -EINVAL for a bad name, -ENOMEM. The name goes when the process exits. */
int cn_register(const char *name, cn_pid_t pid);

/* Remove a registered name. Returns 0 or -ENOENT. */
int cn_unregister(const char *name);

/* Look a name up. Returns 0 and *out, or -ENOENT. */
int cn_whereis(const char *name, cn_pid_t *out);

/* ---------------------------------------------------------------------------------
 * Sending
 * ------------------------------------------------------------------------------ */

/* Send the term in x (made with cn_x_new, version byte first) to pid. The term is
 * data: never encode a pointer to the sender's stack locals in it (a process on a
 * shared stack has them only while it runs; see cn_spawn's warning). The buffer
 * moves into the receiver's mailbox without a copy: on return x is empty again
 * (x->buff == NULL) whatever the result, and the caller may cn_x_new() it again.
 * Returns 0; -ESRCH if the pid is not a live process (as in Erlang, this is not
 * an error for the sender's logic; the message is dropped); -ENOBUFS if the
 * receiver's mailbox is full (dropped); -ENOMEM (dropped). Sending to a remote
 * pid requires the distribution layer and fails with -EHOSTUNREACH without it. */
int cn_send(cn_pid_t to, ei_x_buff *x);

/* As cn_send, to a registered name. -ESRCH if the name is not registered. */
int cn_send_name(const char *name, ei_x_buff *x);

/* As cn_send, to {name, node} (erlang:send({Name, Node}, Msg)); node NULL or this
 * node's name is a local send. Remote: returns 0 once queued for the node (a
 * connection is made on demand; the message is dropped if that fails), or
 * -EHOSTUNREACH without distribution. */
int cn_send_name_at(const char *name, const char *node, ei_x_buff *x);

/* Send a message taken from a mailbox on to another process (forwarding without
 * re-encoding). Takes ownership of m in every case. Returns as cn_send(). */
int cn_send_msg(cn_pid_t to, cn_msg_t *m);

/* ---------------------------------------------------------------------------------
 * Receiving
 * ------------------------------------------------------------------------------ */

/* A match function for selective receive: return true to take the message. It must
 * not block, send or receive. */
typedef bool (*cn_match_cb)(const cn_msg_t *m, void *arg);

#define CN_INFINITY (-1)

/* Take the first message in the mailbox that `match` accepts (every message if
 * match is NULL), waiting up to timeout_ms (CN_INFINITY: forever; 0: don't wait).
 * Messages it skips stay in the mailbox in order. Returns 0 and *out (the caller
 * owns it: cn_msg_free), or -ETIMEDOUT. */
int cn_receive(cn_match_cb match, void *arg, int64_t timeout_ms, cn_msg_t **out);

/* A position in the mailbox: messages that arrive after cn_mbox_mark() are the
 * only candidates of cn_receive_mark(). This is how a call that waits for the reply
 * to its fresh reference avoids rescanning a long mailbox (BEAM does the same).
 * A mark is valid until the process's next receive of any kind. */
typedef struct cn_mark {
    cn_msg_t **pos; /* private */
} cn_mark_t;

cn_mark_t cn_mbox_mark(void);
int cn_receive_mark(cn_mark_t mark, cn_match_cb match, void *arg, int64_t timeout_ms,
                    cn_msg_t **out);

/* Messages waiting in the caller's mailbox. */
size_t cn_mbox_len(void);

/* Sleep for ms milliseconds without touching the mailbox. */
void cn_sleep(int64_t ms);

/* ---------------------------------------------------------------------------------
 * Timers
 * ------------------------------------------------------------------------------ */

typedef uint64_t cn_timer_ref_t; /* 0 is never a valid timer */

/* Deliver x to pid after ms milliseconds (erlang:send_after/3). Takes ownership of
 * x's buffer as cn_send does. If `to` is a local process that is not alive now, or
 * exits before the timer fires, the timer is cancelled and the message dropped.
 * Returns 0 and *out (may be NULL), -ESRCH if `to` is not alive (dropped),
 * -ENOMEM. Callable from a process or from the node's thread before cn_node_run. */
int cn_send_after(int64_t ms, cn_pid_t to, ei_x_buff *x, cn_timer_ref_t *out);

/* Cancel a timer. Returns the milliseconds that were left (>= 0) or -ENOENT if the
 * timer already fired, was cancelled or never existed. */
int64_t cn_cancel_timer(cn_timer_ref_t ref);

/* ---------------------------------------------------------------------------------
 * Exits, links and monitors
 * ------------------------------------------------------------------------------ */

/* Exit the calling process with an atom reason ("normal", "shutdown", ...) or any
 * term (cn_exit_term takes ownership of x's buffer). Never returns. Exit handlers
 * (cn_on_exit) run, links get exit signals, monitors get DOWN messages. */
_Noreturn void cn_exit(const char *reason);
_Noreturn void cn_exit_term(ei_x_buff *reason);

/* Send an exit signal to pid, as erlang:exit/2: reason "kill" kills even a
 * trapping process (links then see `killed`); "normal" is ignored by a process that
 * does not trap exits (unless pid is the caller). Returns 0 or -ESRCH. */
int cn_exit_pid(cn_pid_t pid, const char *reason);
int cn_exit_pid_term(cn_pid_t pid, ei_x_buff *reason);

/* Turn trapping of exit signals on or off; returns the previous setting. While on,
 * exit signals arrive as {'EXIT', From, Reason} messages. */
bool cn_trap_exit(bool on);

/* Link the caller and pid. Linking to a process that is not alive fails with
 * -ESRCH (erlang:link/1 raises noproc) and, if the caller traps exits, also
 * delivers {'EXIT', Pid, noproc}. Linking twice is one link. Returns 0, -ESRCH or
 * -ENOMEM. */
int cn_link(cn_pid_t pid);

/* Remove a link (both sides). Returns 0 even if there was no link. */
int cn_unlink(cn_pid_t pid);

/* Monitor pid: when it exits (or is not alive now) the caller receives
 * {'DOWN', Ref, process, Pid, Reason} (reason `noproc` if it was already gone).
 * Returns 0 and *out, or -ENOMEM. */
int cn_monitor(cn_pid_t pid, cn_ref_t *out);

/* Monitor the process registered as `name` on `node` (NULL: this node), as
 * erlang:monitor(process, {Name, Node}). A missing name gives DOWN `noproc`; an
 * unreachable node gives DOWN `noconnection`. Returns 0 and *out, -ENOMEM,
 * -EINVAL, -EHOSTUNREACH (no distribution). */
int cn_monitor_name_at(const char *name, const char *node, cn_ref_t *out);

enum { CN_DEMONITOR_FLUSH = 1 };

/* Stop monitoring. With CN_DEMONITOR_FLUSH a DOWN message for this ref already in
 * the mailbox is removed. Returns 0, or -ENOENT if the monitor was not active
 * (it fired already or never existed). */
int cn_demonitor(const cn_ref_t *ref, int flags);

/* Make a fresh reference. Callable from any code on the node's thread. */
cn_ref_t cn_make_ref(void);

/* Run fn(arg) when the calling process exits, for any reason, including being
 * killed while parked. Handlers run in reverse order of registration, on the
 * scheduler's stack: they may free memory and send messages but must not block.
 * Returns a handle for cn_on_exit_cancel (>0), or -ENOMEM. */
typedef void (*cn_exit_cb)(void *arg);
long cn_on_exit(cn_exit_cb fn, void *arg);
void cn_on_exit_cancel(long handle);

/* ---------------------------------------------------------------------------------
 * File descriptors and blocking work
 * ------------------------------------------------------------------------------ */

enum { CN_READABLE = 1, CN_WRITABLE = 2 };

/* Park the caller until fd is readable or writable (per `events`), or timeout_ms
 * passes. Call it after an I/O call failed with EAGAIN (readiness is edge-driven:
 * an event seen earlier and not consumed by a wait is remembered).
 * Returns CN_READABLE / CN_WRITABLE bits that are ready (> 0); -ETIMEDOUT;
 * -EBADF if fd is not open or was closed with cn_fd_close() while waiting;
 * -EBUSY if another process already waits on fd for the same event;
 * -EPERM if fd cannot be polled (a regular file). The fd must be non-blocking. */
int cn_wait_fd(int fd, int events, int64_t timeout_ms);

/* Forget fd in the poller, wake its waiters with -EBADF, and close it. Use this
 * rather than close() for any fd that was passed to cn_wait_fd(). Returns close()'s
 * result (0 or -errno). Callable from any code on the node's thread. */
int cn_fd_close(int fd);

/* As cn_fd_close() without the close: for an fd that a library closes itself
 * (libpq's socket). Call it before the library closes the fd, or a new fd with
 * the same number would inherit a stale registration. Returns 0, or -ENOENT if
 * fd was not registered. */
int cn_fd_forget(int fd);

/* Run fn(arg) on a pool thread and park the caller until it returns. The caller's
 * stack stays in place meanwhile, so arg may point to its locals. fn must not call
 * libcnode. If the process is killed meanwhile, it dies when fn has returned.
 * Returns 0, or -ENOMEM. */
int cn_blocking(void (*fn)(void *arg), void *arg);

/* As cn_blocking(), for a call the caller knows to be short (it bounds it, e.g.
 * by what the same call took last time): when the node has nothing else to do -
 * no other process runnable, no kill queued, no timer due, no other pool job in
 * flight - fn runs right here on the scheduler's thread, and the node does
 * nothing else until it returns; otherwise it goes to the pool as with
 * cn_blocking(). Running it here saves two thread wake-ups (the pool thread's,
 * then the scheduler's when the job is done): tens of microseconds where waking
 * an idle CPU is slow, as on a VM. What arrives meanwhile (a message from
 * another node, a connection) waits for fn, so keep the bound short. Same
 * contract for fn as cn_blocking() (fn must not call libcnode). Returns 1 when
 * fn ran on this thread, 0 when on the pool, or -EINVAL / -ENOMEM as
 * cn_blocking(). */
int cn_blocking_short(void (*fn)(void *arg), void *arg);

#endif /* CNODE_PROC_H */
