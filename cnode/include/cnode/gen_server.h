/* gen_server.h - the generic server behaviour, wire-compatible with OTP's.
 *
 * A server is a process running a loop that takes messages from its mailbox and
 * hands them to callbacks:
 *
 *   {'$gen_call', {Pid, Tag}, Request}  -> handle_call, reply {Tag, Reply} to Pid
 *   {'$gen_cast', Request}              -> handle_cast
 *   anything else                       -> handle_info
 *
 * These are the messages OTP's gen_server sends and expects, so an erl or Elixir
 * node can GenServer.call a libcnode server and a libcnode process can call an
 * OTP server. Calls follow OTP 24+: the caller monitors the server (a dead or
 * missing server fails the call at once with `noproc`), and the reply goes to an
 * alias that is deactivated when the call returns, so a late reply is dropped.
 *
 * Differences from OTP, because this is C:
 *   - terminate() runs on every exit of the server, including an untrappable kill,
 *     because it is where the state's memory is freed. On a stop (CN_GS_STOP, the
 *     parent's EXIT when trapping, gen_server_stop) it runs in the server process
 *     and may block; when the server was killed it runs on the scheduler's stack,
 *     where cn_self() is the nil pid and blocking calls fail with -EINVAL.
 *   - A failing init() makes start return an error without taking the caller down
 *     (the new process unlinks before it exits).
 *
 * System messages ({system, From, Msg}, what OTP's sys module sends): `suspend`,
 * `resume`, `get_state`, `get_status`, `{terminate, Reason}` and
 * `{change_code, Module, OldVsn, Extra}` are answered as OTP's gen_server answers
 * them, so `:sys.suspend/1`, `:sys.resume/1`, `:sys.get_state/1` and
 * `:sys.get_status/1` work from erl and Elixir. A suspended server handles only
 * system messages; everything else stays queued in its mailbox, in order, and is
 * handled after `resume`. Two differences: a server suspended by a process that
 * then dies (or whose node disconnects) resumes by itself, so a forgotten suspend
 * cannot stall a service; and `change_code` is accepted while running too (the
 * swap happens between two messages either way). Hot code upgrades with callbacks
 * in shared objects are in code.h.
 */
#ifndef CNODE_GEN_SERVER_H
#define CNODE_GEN_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include <ei.h>

#include "cnode/node.h"
#include "cnode/proc.h"
#include "cnode/term.h"

/* Where a call or cast goes: a pid, a registered name here, or {Name, Node}. */
typedef struct cn_dest {
    int kind;          /* CN_DEST_* */
    cn_pid_t pid;
    const char *name;  /* borrowed */
    const char *node;  /* borrowed; CN_DEST_REMOTE only */
} cn_dest_t;

enum { CN_DEST_PID = 1, CN_DEST_NAME, CN_DEST_REMOTE };

static inline cn_dest_t cn_dest_pid(cn_pid_t pid)
{
    cn_dest_t d = { CN_DEST_PID, pid, NULL, NULL };
    return d;
}

static inline cn_dest_t cn_dest_name(const char *name)
{
    cn_dest_t d = { CN_DEST_NAME, { 0, 0, 0, 0 }, name, NULL };
    return d;
}

static inline cn_dest_t cn_dest_remote(const char *name, const char *node)
{
    cn_dest_t d = { CN_DEST_REMOTE, { 0, 0, 0, 0 }, name, node };
    return d;
}

/* The caller of a handle_call: keep a copy to reply later with cn_gen_reply(). */
#define CN_TAG_MAX 320
typedef struct cn_from {
    cn_pid_t pid;
    int taglen;
    char tag[CN_TAG_MAX]; /* the call's tag as encoded by the caller, echoed back */
} cn_from_t;

/* What a callback asks the loop to do next. */
enum {
    CN_GS_CONTINUE = 0, /* handle_call: the reply term has been appended to `reply` */
    CN_GS_NOREPLY = 1,  /* handle_call: reply later with cn_gen_reply() */
    CN_GS_STOP = 2,     /* stop with the reason set by cn_gen_server_set_reason()
                           (default `normal`); handle_call may append a reply first */
};

typedef struct cn_gen_server {
    /* Set up *state from arg. Return 0, or a negative code to fail the start. */
    int (*init)(void *arg, void **state);
    /* Append exactly one term (the reply) to `reply` and return CN_GS_CONTINUE;
     * or return CN_GS_NOREPLY / CN_GS_STOP. `req` and `from` are borrowed. NULL
     * handle_call: every call gets {error, not_implemented}. */
    int (*handle_call)(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply);
    int (*handle_cast)(void *state, cn_term_t req);    /* NULL: ignored */
    int (*handle_info)(void *state, cn_term_t msg);    /* NULL: ignored */
    /* Free the state. `reason` is the exit reason. May be NULL. */
    void (*terminate)(void *state, cn_term_t reason);
    /* A code change, as OTP's code_change(OldVsn, State, Extra). old_vsn: the
     * version the state comes from (the old module's vsn in an upgrade or a
     * downgrade, code.h; the OldVsn of a sys:change_code as text, "" when it is
     * not an atom, string or binary). May replace *state. Return 0, or a negative
     * code with a reason in err (errlen bytes, may stay empty); on failure *state
     * must still be valid for the code that made it, which keeps running. NULL:
     * every change succeeds and changes nothing. */
    int (*code_change)(const char *old_vsn, void **state, cn_term_t extra, char *err,
                       size_t errlen);
    /* Append one term describing the state to `out` (sys:get_state/1 and
     * sys:get_status/1 show it). Return 0 or a negative code. NULL: the state
     * shows as {cn_state, Module, Vsn} (undefined for a server without module). */
    int (*format_state)(void *state, ei_x_buff *out);
} cn_gen_server_t;

typedef struct cn_gen_server_opts {
    const char *name;      /* register the server under this name (fails with
                              -EEXIST if taken); NULL = unnamed */
    bool link;             /* start_link: link to the caller */
    bool trap_exit;        /* the server traps exits (sees its parent's EXIT and
                              shuts down with its reason, as OTP does) */
    int64_t timeout_ms;    /* how long to wait for init; 0 = 5000 */
    cn_spawn_opts_t spawn; /* stack size, mailbox limit (flags LINK/MONITOR ignored) */
} cn_gen_server_opts_t;

/* Start a server and wait until its init() has returned. `cb` and `arg` must
 * outlive the server. From a process: returns 0 and *out once init succeeded,
 * -EEXIST if the name is registered, the init's negative code if it failed,
 * -ETIMEDOUT if init did not finish in time (the server is killed), -ENOMEM.
 * Outside a process (before cn_node_run): the server is spawned without waiting
 * and init errors only show as its exit; `link` must be false there. */
int cn_gen_server_start(cn_node_t *node, const cn_gen_server_t *cb, void *arg,
                        const cn_gen_server_opts_t *opts, cn_pid_t *out);

/* Call a server and wait for its reply up to timeout_ms (CN_INFINITY allowed).
 * `req` (a term made with cn_x_new) is consumed. On success returns 0 with *msg
 * (the caller frees it with cn_msg_free) and *reply, the reply term inside it.
 * Errors: -ESRCH the server does not exist (noproc); -ECONNABORTED it exited
 * during the call (then *msg holds the DOWN message and *reply its reason);
 * -ETIMEDOUT; -EHOSTUNREACH the node is not connected; -ENOMEM; -EINVAL (also
 * for a `req` that is not a version byte and a term, as ei_x_new makes). */
int cn_gen_call(cn_dest_t dest, ei_x_buff *req, int64_t timeout_ms, cn_msg_t **msg,
                cn_term_t *reply);

/* Send a cast ({'$gen_cast', Req}); `req` (as cn_gen_call's) is consumed.
 * Returns 0, or -ESRCH / -EHOSTUNREACH / -ENOMEM when it could not be delivered
 * (OTP ignores those), -EINVAL for a `req` that is not a version byte and a
 * term. */
int cn_gen_cast(cn_dest_t dest, ei_x_buff *req);

/* Reply to a call that returned CN_GS_NOREPLY. `reply` (version byte + one term)
 * is consumed. Returns 0, or -ESRCH if the caller is gone, -ENOMEM, -EINVAL
 * (a `reply` without its version byte or term). A reply to a
 * call that already timed out is dropped, as OTP drops it. */
int cn_gen_reply(const cn_from_t *from, ei_x_buff *reply);

/* From inside a callback: the reason for a CN_GS_STOP that follows (an atom). */
void cn_gen_server_set_reason(const char *atom);

/* Stop a server as OTP's gen_server:stop/3: it runs terminate() with `reason` and
 * exits; waits up to timeout_ms for it to be gone. Returns 0, -ESRCH, -ETIMEDOUT. */
int cn_gen_server_stop(cn_dest_t dest, const char *reason, int64_t timeout_ms);

/* Ask a server to run its code_change callback with `extra` (consumed; may be
 * NULL), as sys:change_code/4 does (OldVsn `undefined`, so old_vsn is ""; the
 * callbacks stay the same: a change of code is cn_code_upgrade, code.h).
 * Returns the callback's result, -ESRCH, -ETIMEDOUT. */
int cn_gen_server_code_change(cn_dest_t dest, ei_x_buff *extra, int64_t timeout_ms);

/* sys:suspend/2 and sys:resume/2: the server stops handling anything but system
 * messages (the others wait in its mailbox) until resumed, or until the process
 * that suspended it exits. Return 0, -ESRCH, -ETIMEDOUT, -ENOMEM, -EINVAL (from
 * outside a process). */
int cn_gen_server_suspend(cn_dest_t dest, int64_t timeout_ms);
int cn_gen_server_resume(cn_dest_t dest, int64_t timeout_ms);

#endif /* CNODE_GEN_SERVER_H */
