/* timer.c - the node's timers: receive and wait timeouts, and cn_send_after().
 *
 * One binary min-heap ordered by due time (ms on the node clock); each timer keeps
 * its heap index so cancelling is O(log n). Timeouts of parked processes use the
 * timer embedded in the process (allocated on first use). Message timers are
 * allocated per call and named by a handle {slot, generation} in a table, so a
 * stale cn_timer_ref_t can never cancel somebody else's timer.
 */
#include "cnode_int.h"

#include <errno.h>
#include <stdlib.h>

#define NOT_ARMED UINT32_MAX

/* ---------------------------------------------------------------------------------
 * Heap
 * ------------------------------------------------------------------------------ */

static void heap_swap(cn_node_t *n, uint32_t a, uint32_t b)
{
    cn_timer_t *t = n->heap[a];
    n->heap[a] = n->heap[b];
    n->heap[b] = t;
    n->heap[a]->heap_ix = a;
    n->heap[b]->heap_ix = b;
}

static void sift_up(cn_node_t *n, uint32_t i)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (n->heap[parent]->due <= n->heap[i]->due)
            break;
        heap_swap(n, i, parent);
        i = parent;
    }
}

static void sift_down(cn_node_t *n, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n->heap_len && n->heap[l]->due < n->heap[m]->due)
            m = l;
        if (r < n->heap_len && n->heap[r]->due < n->heap[m]->due)
            m = r;
        if (m == i)
            break;
        heap_swap(n, i, m);
        i = m;
    }
}

/* Arming can fail only when the heap must grow and memory is short; callers
 * reserve room first with heap_reserve() so that arming itself never fails. */
static int heap_reserve(cn_node_t *n)
{
    if (n->heap_len < n->heap_cap)
        return 0;
    uint32_t cap = n->heap_cap ? n->heap_cap * 2 : 64;
    cn_timer_t **h = cn__realloc(n->heap, cap * sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    n->heap = h;
    n->heap_cap = cap;
    return 0;
}

void cn__timer_arm(cn_node_t *n, cn_timer_t *t, uint64_t due)
{
    if (t->heap_ix != NOT_ARMED)
        cn__timer_disarm(n, t);
    if (heap_reserve(n) < 0) {
        /* Only reachable for wake timers when memory is exhausted: wake at once
         * (a spurious timeout) rather than never. */
        due = n->now_ms;
        if (n->heap_len == n->heap_cap)
            abort();
    }
    t->due = due;
    t->heap_ix = n->heap_len;
    n->heap[n->heap_len++] = t;
    sift_up(n, t->heap_ix);
}

void cn__timer_disarm(cn_node_t *n, cn_timer_t *t)
{
    uint32_t i = t->heap_ix;
    if (i == NOT_ARMED)
        return;
    t->heap_ix = NOT_ARMED;
    n->heap_len--;
    if (i == n->heap_len)
        return;
    n->heap[i] = n->heap[n->heap_len];
    n->heap[i]->heap_ix = i;
    sift_down(n, i);
    sift_up(n, n->heap[i]->heap_ix);
}

int cn__timers_next(cn_node_t *n)
{
    if (n->heap_len == 0)
        return -1;
    uint64_t due = n->heap[0]->due;
    if (due <= n->now_ms)
        return 0;
    uint64_t d = due - n->now_ms;
    return d > 1000000 ? 1000000 : (int)d;
}

/* ---------------------------------------------------------------------------------
 * Message timers
 * ------------------------------------------------------------------------------ */

static void tlist_remove(cn_timer_t *t)
{
    if (t->proc == NULL)
        return;
    if (t->tprev)
        t->tprev->tnext = t->tnext;
    else
        t->proc->send_timers = t->tnext;
    if (t->tnext)
        t->tnext->tprev = t->tprev;
    t->tprev = t->tnext = NULL;
    t->proc = NULL;
}

static void send_timer_free(cn_node_t *n, cn_timer_t *t)
{
    tlist_remove(t);
    n->tslots[t->slot] = NULL;
    n->tgens[t->slot]++;
    n->tfree[n->ntfree++] = t->slot; /* room reserved when the slot was made */
    cn_msg_free(t->msg);
    cn__free(t);
}

int cn_send_after(int64_t ms, cn_pid_t to, ei_x_buff *x, cn_timer_ref_t *out)
{
    cn_node_t *n = cn__cur_node;
    if (out)
        *out = 0;
    if (n == NULL) {
        ei_x_free(x);
        return -EINVAL;
    }
    cn_msg_t *m = cn__msg_from_x(x);
    if (m == NULL)
        return -ENOMEM;
    cn_proc_t *target = NULL;
    if (to.node == 0) {
        target = cn__proc_get(n, to);
        if (target == NULL) {
            cn_msg_free(m);
            return -ESRCH;
        }
    }
    cn_timer_t *t = cn__calloc(1, sizeof(*t));
    if (t == NULL || heap_reserve(n) < 0)
        goto nomem;
    if (n->ntfree == 0) {
        if (n->ntslots == n->captslots) {
            uint32_t cap = n->captslots ? n->captslots * 2 : 64;
            cn_timer_t **ts = cn__realloc(n->tslots, cap * sizeof(*ts));
            if (ts == NULL)
                goto nomem;
            n->tslots = ts;
            uint32_t *gs = cn__realloc(n->tgens, cap * sizeof(*gs));
            if (gs == NULL)
                goto nomem;
            n->tgens = gs;
            uint32_t *fs = cn__realloc(n->tfree, cap * sizeof(*fs));
            if (fs == NULL)
                goto nomem;
            n->tfree = fs;
            n->captslots = cap;
        }
        n->tgens[n->ntslots] = 1;
        n->tfree[n->ntfree++] = n->ntslots++;
    }
    t->slot = n->tfree[--n->ntfree];
    t->gen = n->tgens[t->slot];
    n->tslots[t->slot] = t;
    t->kind = CN_TIMER_SEND;
    t->heap_ix = NOT_ARMED;
    t->msg = m;
    t->to = to;
    if (target) {
        t->proc = target;
        t->tnext = target->send_timers;
        if (t->tnext)
            t->tnext->tprev = t;
        target->send_timers = t;
    }
    n->now_ms = cn__clock_ms();
    cn__timer_arm(n, t, n->now_ms + (uint64_t)(ms < 0 ? 0 : ms));
    if (out)
        *out = ((uint64_t)t->gen << 32) | t->slot;
    return 0;
nomem:
    cn__free(t);
    cn_msg_free(m);
    return -ENOMEM;
}

int64_t cn_cancel_timer(cn_timer_ref_t ref)
{
    cn_node_t *n = cn__cur_node;
    uint32_t slot = (uint32_t)ref, gen = (uint32_t)(ref >> 32);
    if (n == NULL || slot >= n->ntslots || n->tgens[slot] != gen || n->tslots[slot] == NULL)
        return -ENOENT;
    cn_timer_t *t = n->tslots[slot];
    int64_t left = t->due > n->now_ms ? (int64_t)(t->due - n->now_ms) : 0;
    cn__timer_disarm(n, t);
    send_timer_free(n, t);
    return left;
}

void cn__timers_drop_for(cn_node_t *n, cn_proc_t *p)
{
    while (p->send_timers) {
        cn_timer_t *t = p->send_timers;
        cn__timer_disarm(n, t);
        send_timer_free(n, t);
    }
}

int cn__timers_run(cn_node_t *n)
{
    int fired = 0;
    while (n->heap_len > 0 && n->heap[0]->due <= n->now_ms) {
        cn_timer_t *t = n->heap[0];
        cn__timer_disarm(n, t);
        fired++;
        if (t->kind == CN_TIMER_WAKE) {
            cn__make_runnable(n, t->proc, CN_WAKE_TIMEOUT);
        } else {
            cn_msg_t *m = t->msg;
            t->msg = NULL;
            cn_pid_t to = t->to;
            send_timer_free(n, t);
            cn_send_msg(to, m);
        }
    }
    return fired;
}

void cn__timers_free_all(cn_node_t *n)
{
    for (uint32_t i = 0; i < n->ntslots; i++) {
        cn_timer_t *t = n->tslots[i];
        if (t) {
            cn__timer_disarm(n, t);
            send_timer_free(n, t);
        }
    }
    cn__free(n->heap);
    cn__free(n->tslots);
    cn__free(n->tgens);
    cn__free(n->tfree);
    n->heap = NULL;
    n->tslots = NULL;
    n->tgens = NULL;
    n->tfree = NULL;
    n->heap_len = n->heap_cap = n->ntslots = n->captslots = n->ntfree = 0;
}
