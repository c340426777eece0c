/* sched.c - the node and its scheduler loop.
 *
 * One thread runs the loop: run every runnable process once (in FIFO order),
 * process queued kills, fire due timers, then poll file descriptors - without
 * waiting if there is more to run, else until the next timer. The loop ends when no
 * process is left (or on cn_node_stop()).
 */
#include "cnode_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread cn_node_t *cn__cur_node;

uint64_t cn__clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t cn_now_ms(void)
{
    cn_node_t *n = cn__cur_node;
    return n ? n->now_ms : cn__clock_ms();
}

static bool valid_node_name(const char *name)
{
    const char *at = strchr(name, '@');
    size_t len = strlen(name);
    return at && at != name && at[1] != '\0' && len < MAXATOMLEN && strchr(at + 1, '@') == NULL;
}

int cn_node_new(const cn_node_opts_t *opts, cn_node_t **out)
{
    cn_node_opts_t o = { 0 };
    if (opts)
        o = *opts;
    const char *name = o.name ? o.name : "cnode@localhost";
    if (!valid_node_name(name))
        return -EINVAL;

    int rc = -ENOMEM;
    cn_node_t *n = cn__calloc(1, sizeof(*n));
    if (n == NULL)
        return -ENOMEM;
    n->epfd = -1;
    n->kills_tail = &n->kills;
    n->name = strdup(name);
    if (n->name == NULL)
        goto fail;
    /* Creation distinguishes incarnations of a node name; erl uses a 32-bit value
     * that is never 0 (OTP 23+ "big creation"). */
    n->creation = o.creation ? o.creation : (uint32_t)(time(NULL) & 0x7fffffff) | 1u;
    n->shared_stack_size = o.shared_stack_size ? o.shared_stack_size : 1u << 20;
    n->own_stack_size = o.own_stack_size ? o.own_stack_size : 256u << 10;
    n->pool_threads = o.pool_threads > 0 ? o.pool_threads : 4;
    n->now_ms = cn__clock_ms();
    n->nslots = 1; /* slot 0 is never a process: the nil pid has num 0 */

    uint32_t ix;
    if ((rc = cn__node_name_index(n, n->name, &ix)) < 0)
        goto fail;
    if ((rc = cn__reg_init(n)) < 0)
        goto fail;
    if ((rc = cn__poll_init(n)) < 0)
        goto fail;
    if ((rc = cn__pool_start(n, n->pool_threads)) < 0)
        goto fail;
    *out = n;
    return 0;
fail:
    cn_node_free(n);
    return rc;
}

void cn_node_stop(cn_node_t *n)
{
    n->stop = true;
}

cn_node_t *cn_node_self(void)
{
    return cn__cur_node;
}

const char *cn_node_name(const cn_node_t *n)
{
    return n->name;
}

size_t cn_node_process_count(const cn_node_t *n)
{
    return n->nprocs;
}

void cn__make_runnable(cn_node_t *n, cn_proc_t *p, int wake)
{
    if (p->in_rq)
        return;
    if (p->state != CN_P_EXITING) {
        p->state = CN_P_RUNNABLE;
        p->wake = (uint8_t)wake;
    }
    if (p->wtimer)
        cn__timer_disarm(n, p->wtimer);
    p->in_rq = true;
    p->rq_next = NULL;
    if (n->rq_tail)
        n->rq_tail->rq_next = p;
    else
        n->rq_head = p;
    n->rq_tail = p;
}

int cn__park(cn_node_t *n, cn_proc_t *p, int state, int64_t timeout_ms)
{
    p->state = (uint8_t)state;
    p->wake = CN_WAKE_NONE;
    if (timeout_ms >= 0) {
        if (p->wtimer == NULL) {
            p->wtimer = cn__calloc(1, sizeof(*p->wtimer));
            if (p->wtimer == NULL) {
                /* Can't arm a timeout: report it as expired rather than hang. */
                p->state = CN_P_RUNNABLE;
                return CN_WAKE_TIMEOUT;
            }
            p->wtimer->kind = CN_TIMER_WAKE;
            p->wtimer->heap_ix = UINT32_MAX;
            p->wtimer->proc = p;
        }
        n->now_ms = cn__clock_ms(); /* a stale loop time would shorten the wait */
        cn__timer_arm(n, p->wtimer, n->now_ms + (uint64_t)timeout_ms);
    }
    cn__ctx_park(p);
    return p->wake;
}

void cn_yield(void)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return;
    cn_proc_t *p = n->current;
    cn__make_runnable(n, p, CN_WAKE_NONE);
    cn__ctx_park(p);
}

/* Run processes until the queue is empty or a budget of resumes is spent, then
 * return so that timers and I/O get their turn. Polling epoll after every resume
 * would cost a system call per message; after at most CN_RUN_BUDGET resumes it
 * adds a few hundred microseconds of latency at worst. */
#define CN_RUN_BUDGET 1024

static void run_queue(cn_node_t *n)
{
    for (int budget = CN_RUN_BUDGET; n->rq_head && budget > 0; budget--) {
        cn_proc_t *p = n->rq_head;
        n->rq_head = p->rq_next;
        if (n->rq_head == NULL)
            n->rq_tail = NULL;
        p->in_rq = false;
        p->rq_next = NULL;

        if (p->state != CN_P_EXITING)
            cn__ctx_resume(n, p);
        if (p->state == CN_P_EXITING)
            cn__proc_finish(n, p);
        if (n->kills)
            cn__kills_run(n);
        if (n->stop)
            break;
    }
}

int cn_node_run(cn_node_t *n)
{
    if (n->running)
        return -EBUSY;
    cn_node_t *prev = cn__cur_node;
    cn__cur_node = n;
    n->running = true;
    n->stop = false;
    int rc = 0;

    while (!n->stop) {
        n->now_ms = cn__clock_ms();
        if (n->kills)
            cn__kills_run(n);
        run_queue(n);
        if (n->stop)
            break;
        if (n->nprocs == 0)
            break;
        n->now_ms = cn__clock_ms();
        cn__timers_run(n);
        int timeout = n->rq_head ? 0 : cn__timers_next(n);
        if (timeout < 0 && n->nwaiting_fd == 0 && n->npool_busy == 0 && n->rq_head == NULL) {
            /* Every process waits for a message that nobody can send: the node is
             * deadlocked unless the distribution layer brings something. Keep
             * polling, as erl keeps running; cn_node_stop() ends it. */
        }
        rc = cn__poll_wait(n, timeout);
        if (rc < 0)
            break;
        rc = 0;
    }
    n->running = false;
    cn__cur_node = prev;
    return rc;
}

void cn_node_free(cn_node_t *n)
{
    if (n == NULL)
        return;
    cn_node_t *prev = cn__cur_node;
    cn__cur_node = n;
    cn__pool_stop(n);
    /* Destroy what is left without notifying anyone. */
    for (uint32_t i = 1; i < n->nslots; i++) {
        cn_proc_t *p = n->procs ? n->procs[i] : NULL;
        if (p == NULL)
            continue;
        cn_exit_hook_t *h = p->hooks;
        p->hooks = NULL;
        while (h) {
            cn_exit_hook_t *next = h->next;
            h->fn(h->arg);
            cn__free(h);
            h = next;
        }
        while (p->mons_out) {
            cn_mon_t *m = p->mons_out;
            p->mons_out = m->w_next;
            if (m->target)
                cn__mon_unlink_target(m);
            cn__free(m);
        }
    }
    for (uint32_t i = 1; i < n->nslots; i++) {
        cn_proc_t *p = n->procs ? n->procs[i] : NULL;
        if (p == NULL)
            continue;
        while (p->mons_in) {
            cn_mon_t *m = p->mons_in;
            p->mons_in = m->t_next;
            cn__free(m);
        }
        /* Timers that would deliver to p point back at it: drop them first. */
        cn__timers_drop_for(n, p);
        /* A process parked in a receive with a timeout still has its wake timer in
         * the heap: take it out before freeing it, or the next disarm above
         * (another process's message timers) would sift through freed memory. */
        if (p->wtimer)
            cn__timer_disarm(n, p->wtimer);
        cn__mbox_free(p);
        cn__ctx_release(n, p);
        cn__free(p->wtimer);
        cn__free(p->links);
        cn__free(p->name);
        cn__free(p->reason);
        cn__tel_proc_exit(p);
        cn__free(p);
    }
    while (n->kills) {
        cn_kill_t *k = n->kills;
        n->kills = k->next;
        cn__free(k->reason);
        cn__free(k);
    }
    if (n->dist_ops && n->dist_ops->node_free)
        n->dist_ops->node_free(n); /* after the processes: their exit hooks use it */
    cn__telemetry_free(n);         /* after the processes: the exporter's hook uses it */
    cn__code_free(n);
    cn__timers_free_all(n);
    while (n->shared) {
        cn_stack_t *s = n->shared;
        n->shared = s->next;
        cn__stack_free(n, s);
    }
    while (n->own_free) {
        cn_stack_t *s = n->own_free;
        n->own_free = s->next;
        cn__stack_free(n, s);
    }
    cn__reg_free(n);
    cn__alias_free(n);
    cn__poll_free(n);
    cn__node_names_free(n);
    cn__free(n->procs);
    cn__free(n->serials);
    cn__free(n->free_slots);
    free(n->name);
    cn__free(n);
    cn__cur_node = prev == n ? NULL : prev;
}
