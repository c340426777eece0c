/* proc.c - the process table, spawn, exit and the death of a process.
 *
 * A pid names a slot of the node's process table plus the slot's generation, so a
 * lookup is an array index and a stale pid never reaches a newer process. Death has
 * one path, cn__proc_finish(), run by the scheduler on its own stack: exit
 * handlers, links, monitors, registered name, timers, mailbox, stack - in that
 * order, so handlers can still send and the DOWN/EXIT messages carry the reason.
 * Kills coming from other processes are queued and processed by the scheduler one
 * at a time, so a chain of 100,000 links dies iteratively, not recursively.
 */
#include "cnode_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------
 * Table
 * ------------------------------------------------------------------------------ */

cn_proc_t *cn__proc_get(cn_node_t *n, cn_pid_t pid)
{
    if (pid.node != 0 || pid.num == 0 || pid.num >= n->nslots || pid.creation != n->creation)
        return NULL;
    cn_proc_t *p = n->procs[pid.num];
    if (p == NULL || p->pid.serial != pid.serial || p->state == CN_P_EXITING)
        return NULL;
    return p;
}

static int slot_alloc(cn_node_t *n, uint32_t *out)
{
    if (n->nfree > 0) {
        *out = n->free_slots[--n->nfree];
        return 0;
    }
    if (n->nslots >= n->capslots) {
        uint32_t cap = n->capslots ? n->capslots * 2 : 1024;
        cn_proc_t **procs = cn__realloc(n->procs, cap * sizeof(*procs));
        if (procs == NULL)
            return -ENOMEM;
        n->procs = procs;
        uint32_t *serials = cn__realloc(n->serials, cap * sizeof(*serials));
        if (serials == NULL)
            return -ENOMEM;
        n->serials = serials;
        /* The free-slot stack can hold every slot, so freeing never allocates. */
        uint32_t *fs = cn__realloc(n->free_slots, cap * sizeof(*fs));
        if (fs == NULL)
            return -ENOMEM;
        n->free_slots = fs;
        if (n->capslots == 0) {
            n->procs[0] = NULL;
            n->serials[0] = 0;
        }
        n->capslots = cap;
    }
    n->procs[n->nslots] = NULL;
    n->serials[n->nslots] = 0;
    *out = n->nslots++;
    return 0;
}

static void slot_free(cn_node_t *n, uint32_t slot)
{
    n->procs[slot] = NULL;
    n->serials[slot]++;
    n->free_slots[n->nfree++] = slot;
}

/* ---------------------------------------------------------------------------------
 * Spawn
 * ------------------------------------------------------------------------------ */

int cn_spawn(cn_node_t *n, cn_proc_fn fn, void *arg, const cn_spawn_opts_t *opts,
             cn_pid_t *out)
{
    cn_spawn_opts_t o = { 0 };
    if (opts)
        o = *opts;
    if (n == NULL || fn == NULL)
        return -EINVAL;
    cn_node_t *prev = cn__cur_node;
    if (prev != NULL && prev != n)
        return -EINVAL; /* spawning on another node's thread */
    cn_proc_t *caller = n->current;
    if ((o.flags & (CN_SPAWN_LINK | CN_SPAWN_MONITOR)) && caller == NULL)
        return -EINVAL;
    if ((o.flags & CN_SPAWN_MONITOR) && o.mref == NULL)
        return -EINVAL;

    cn__cur_node = n;
    int rc = -ENOMEM;
    uint32_t slot;
    cn_proc_t *p = cn__calloc(1, sizeof(*p));
    if (p == NULL)
        goto out;
    if ((rc = slot_alloc(n, &slot)) < 0) {
        cn__free(p);
        goto out;
    }
    if (o.flags & CN_SPAWN_LINK) {
        /* Reserve link room on both sides before anything is visible. */
        p->links = cn__malloc(4 * sizeof(*p->links));
        if (p->links == NULL) {
            slot_free(n, slot);
            cn__free(p);
            rc = -ENOMEM;
            goto out;
        }
        p->caplinks = 4;
    }
    p->pid.num = slot;
    p->pid.serial = n->serials[slot];
    p->pid.creation = n->creation;
    p->pid.node = 0;
    p->fn = fn;
    p->arg = arg;
    p->mq_tail = &p->mq_head;
    p->mq_max = o.max_mailbox;
    p->wait_fd = -1;
    if (o.stack_size > 0 || (o.flags & CN_SPAWN_OWN_STACK)) {
        size_t sz = o.stack_size ? o.stack_size : n->own_stack_size;
        if (sz < 16384)
            sz = 16384;
        if (sz > (1u << 30)) {
            slot_free(n, slot);
            cn__free(p->links);
            cn__free(p);
            rc = -EINVAL;
            goto out;
        }
        p->own_stack_wanted = true;
        p->own_stack_size = (uint32_t)sz;
    }
    n->procs[slot] = p;
    n->nprocs++;

    if (o.flags & CN_SPAWN_LINK) {
        p->links[p->nlinks++] = caller->pid;
        if (cn_link(p->pid) < 0) {
            /* The caller's side could not grow: undo as if never spawned. */
            n->procs[slot] = NULL;
            n->nprocs--;
            slot_free(n, slot);
            cn__free(p->links);
            cn__free(p);
            rc = -ENOMEM;
            goto out;
        }
    }
    if (o.flags & CN_SPAWN_MONITOR) {
        if ((rc = cn_monitor(p->pid, o.mref)) < 0) {
            if (o.flags & CN_SPAWN_LINK)
                cn_unlink(p->pid);
            n->procs[slot] = NULL;
            n->nprocs--;
            slot_free(n, slot);
            cn__free(p->links);
            cn__free(p);
            goto out;
        }
    }
    p->state = CN_P_RUNNABLE;
    cn__make_runnable(n, p, CN_WAKE_NONE);
    if (out)
        *out = p->pid;
    rc = 0;
out:
    cn__cur_node = prev;
    return rc;
}

cn_pid_t cn_self(void)
{
    cn_node_t *n = cn__cur_node;
    cn_pid_t nil = { 0, 0, 0, 0 };
    return n && n->current ? n->current->pid : nil;
}

bool cn_is_alive(cn_pid_t pid)
{
    cn_node_t *n = cn__cur_node;
    return n && cn__proc_get(n, pid) != NULL;
}

/* ---------------------------------------------------------------------------------
 * Exit
 * ------------------------------------------------------------------------------ */

void cn__proc_entry(cn_proc_t *p)
{
    p->fn(p->arg);
    cn_exit("normal");
}

static _Noreturn void exit_with(cn_proc_t *p, char *reason, int len)
{
    cn__free(p->reason);
    p->reason = reason;
    p->reason_len = len;
    p->state = CN_P_EXITING;
    cn__ctx_leave(p);
}

_Noreturn void cn_exit(const char *reason)
{
    cn_node_t *n = cn__cur_node;
    cn_proc_t *p = n->current;
    char *buf = NULL;
    int len = 0;
    cn__encode_atom(reason, &buf, &len); /* on ENOMEM: reason left NULL = no_memory */
    exit_with(p, buf, len);
}

_Noreturn void cn_exit_term(ei_x_buff *x)
{
    cn_node_t *n = cn__cur_node;
    cn_proc_t *p = n->current;
    char *buf = NULL;
    int len = 0;
    if (x->buff && x->index > 1) {
        buf = cn__malloc((size_t)x->index - 1);
        if (buf) {
            memcpy(buf, x->buff + 1, (size_t)x->index - 1);
            len = x->index - 1;
        }
    }
    ei_x_free(x);
    exit_with(p, buf, len);
}

/* Remove p from the wait list of the pinned stack it is queued on. */
static void stack_wait_remove(cn_proc_t *p)
{
    cn_stack_t *s = p->stack;
    cn_proc_t **pp = &s->waiting;
    while (*pp && *pp != p)
        pp = &(*pp)->rq_next;
    if (*pp)
        *pp = p->rq_next;
    p->rq_next = NULL;
}

void cn__proc_kill(cn_node_t *n, cn_proc_t *p, const char *reason, int reason_len)
{
    if (p->state == CN_P_EXITING)
        return;
    char *r = reason_len > 0 ? cn__malloc((size_t)reason_len) : NULL;
    if (r)
        memcpy(r, reason, (size_t)reason_len);
    cn__free(p->reason);
    p->reason = r;
    p->reason_len = r ? reason_len : 0;

    if (p->state == CN_P_WAIT_POOL) {
        /* A pool thread may be writing into its stack: die when it returns. */
        p->kill_pending = true;
        return;
    }
    if (p->state == CN_P_STACK_WAIT)
        stack_wait_remove(p);
    if (p->state == CN_P_WAIT_FD)
        cn__poll_forget_proc(n, p);
    p->state = CN_P_EXITING;
    /* The scheduler finishes it when it comes off the run queue. */
    cn__make_runnable(n, p, CN_WAKE_NONE);
}

void cn__kills_run(cn_node_t *n)
{
    while (n->kills) {
        cn_kill_t *k = n->kills;
        n->kills = k->next;
        if (n->kills == NULL)
            n->kills_tail = &n->kills;
        cn_proc_t *p = k->proc;
        if (n->procs[p->pid.num] == p && p->pid.serial == k->serial)
            cn__proc_kill(n, p, k->reason, k->reason_len);
        cn__free(k->reason);
        cn__free(k);
    }
}

void cn__proc_finish(cn_node_t *n, cn_proc_t *p)
{
    if (p->reason == NULL)
        cn__encode_atom("no_memory", &p->reason, &p->reason_len);

    /* 1. Exit handlers, newest first; they may still send. A process woken by
     * readiness and killed before it ran is still its fd's waiter: forget that
     * first, or a handler closing the fd would queue the dying process again. */
    n->current = NULL;
    cn__poll_forget_proc(n, p);
    while (p->hooks) {
        cn_exit_hook_t *h = p->hooks;
        p->hooks = h->next;
        h->fn(h->arg);
        cn__free(h);
    }
    /* 2. Signals to links and monitors, with the reason. */
    cn__links_notify(n, p);
    /* 3. Everything the process held. */
    cn__reg_drop_proc(n, p);
    cn__alias_deactivate(n, p);
    if (p->wtimer) {
        cn__timer_disarm(n, p->wtimer);
        cn__free(p->wtimer);
        p->wtimer = NULL;
    }
    cn__timers_drop_for(n, p);
    cn__poll_forget_proc(n, p);
    cn__mbox_free(p);
    cn__ctx_release(n, p);
    cn__tel_proc_exit(p);

    n->procs[p->pid.num] = NULL;
    slot_free(n, p->pid.num);
    n->nprocs--;
    cn__free(p->links);
    cn__free(p->reason);
    cn__free(p);
}

/* ---------------------------------------------------------------------------------
 * Exit handlers
 * ------------------------------------------------------------------------------ */

static long hook_add(cn_proc_t *p, cn_exit_cb fn, void *arg)
{
    static __thread long next_id;
    cn_exit_hook_t *h = cn__malloc(sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->fn = fn;
    h->arg = arg;
    h->id = ++next_id;
    h->next = p->hooks;
    p->hooks = h;
    return h->id;
}

long cn_on_exit(cn_exit_cb fn, void *arg)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    return hook_add(n->current, fn, arg);
}

long cn__on_exit_of(cn_node_t *n, cn_pid_t pid, cn_exit_cb fn, void *arg)
{
    cn_proc_t *p = cn__proc_get(n, pid);
    return p ? hook_add(p, fn, arg) : -ESRCH;
}

void cn_on_exit_cancel(long id)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return;
    for (cn_exit_hook_t **pp = &n->current->hooks; *pp; pp = &(*pp)->next) {
        if ((*pp)->id == id) {
            cn_exit_hook_t *h = *pp;
            *pp = h->next;
            cn__free(h);
            return;
        }
    }
}
