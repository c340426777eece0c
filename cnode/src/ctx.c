/* ctx.c - process stacks and the switch between the scheduler and a process.
 *
 * The switch itself is Boost.Context's fcontext (make_fcontext/jump_fcontext, a few
 * lines of assembly per ABI in libboost-context, which we link statically); we do
 * not write our own. ucontext was measured to be in the way: swapcontext() makes a
 * sigprocmask system call on every switch.
 *
 * What is ours is the stack policy. A shared stack belongs to the scheduler; the
 * process whose frames are on it is its `owner`. Switching to another process
 * bound to the same stack first copies the owner's used bytes - from its saved
 * stack pointer up to the top - into a buffer of exactly that size, then copies the
 * newcomer's bytes back to the same addresses (frames hold absolute pointers, so a
 * process always resumes on the stack it started on). A process in cn_blocking()
 * pins its stack: a pool thread may write into it, so nobody else may use it until
 * the call returns; processes bound to it wait, and new processes go to another
 * shared stack.
 *
 * AddressSanitizer: it must be told about each switch (the fiber API), and since
 * frames of different processes occupy the same addresses in turn, the shadow of a
 * region is cleared before bytes are copied in or out of it.
 */
#include "cnode_int.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CN_ASAN 1
#endif
#endif

#ifdef CN_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* ThreadSanitizer: each process is a fiber; switching with flags 0 makes every
 * switch a synchronisation point, which is what a single-threaded scheduler is. */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
static __thread void *tsan_sched_fiber;
#define TSAN_TO_PROC(p)                                                            \
    do {                                                                           \
        if (tsan_sched_fiber == NULL)                                              \
            tsan_sched_fiber = __tsan_get_current_fiber();                         \
        if ((p)->tsan_fiber == NULL)                                               \
            (p)->tsan_fiber = __tsan_create_fiber(0);                              \
        __tsan_switch_to_fiber((p)->tsan_fiber, 0);                                \
    } while (0)
#define TSAN_TO_SCHED() __tsan_switch_to_fiber(tsan_sched_fiber, 0)
#define TSAN_DESTROY(p)                                                            \
    do {                                                                           \
        if ((p)->tsan_fiber)                                                       \
            __tsan_destroy_fiber((p)->tsan_fiber);                                 \
        (p)->tsan_fiber = NULL;                                                    \
    } while (0)
#else
#define TSAN_TO_PROC(p) ((void)0)
#define TSAN_TO_SCHED() ((void)0)
#define TSAN_DESTROY(p) ((void)0)
#endif

/* Boost.Context's C ABI (boost/context/detail/fcontext.hpp declares it for C++). */
typedef void *fcontext_t;
typedef struct {
    fcontext_t fctx;
    void *data;
} transfer_t;
extern transfer_t jump_fcontext(fcontext_t const to, void *vp);
extern fcontext_t make_fcontext(void *sp, size_t size, void (*fn)(transfer_t));

#ifdef CN_ASAN
/* The scheduler thread's own stack, learnt on the first switch into a process. */
static __thread const void *sched_stack_bottom;
static __thread size_t sched_stack_size;
#endif

static size_t page_size(void)
{
    static size_t ps;
    if (ps == 0)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* ---------------------------------------------------------------------------------
 * Stacks
 * ------------------------------------------------------------------------------ */

int cn__stack_new(cn_node_t *n, size_t size, bool shared, cn_stack_t **out)
{
    (void)n;
    size_t ps = page_size();
    size = (size + ps - 1) / ps * ps;
    cn_stack_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    /* Reserve size + one guard page; pages are committed only when touched. */
    char *m = mmap(NULL, size + ps, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED) {
        cn__free(s);
        return -ENOMEM;
    }
    if (mprotect(m, ps, PROT_NONE) != 0) {
        munmap(m, size + ps);
        cn__free(s);
        return -ENOMEM;
    }
    s->base = m + ps;
    s->size = size;
    s->shared = shared;
#ifdef CN_ASAN
    /* The shadow of an address range outlives munmap: a stack unmapped with a
     * dead process's redzones still poisoned would hand them to whatever is
     * mapped there next (a stack of another size, seen as stack-use-after-scope
     * in a frame that never left its scope). */
    ASAN_UNPOISON_MEMORY_REGION(s->base, size);
#endif
    *out = s;
    return 0;
}

void cn__stack_free(cn_node_t *n, cn_stack_t *s)
{
    (void)n;
    if (s == NULL)
        return;
#ifdef CN_ASAN
    ASAN_UNPOISON_MEMORY_REGION(s->base, s->size); /* see cn__stack_new */
#endif
    munmap(s->base - page_size(), s->size + page_size());
    cn__free(s);
}

static inline char *stack_top(const cn_stack_t *s)
{
    return s->base + s->size;
}

/* Copies that ignore ASan's shadow: the bytes belong to frames of another process. */
static void copy_raw(void *dst, const void *src, size_t len, void *region, size_t rlen)
{
#ifdef CN_ASAN
    ASAN_UNPOISON_MEMORY_REGION(region, rlen);
#else
    (void)region;
    (void)rlen;
#endif
    memcpy(dst, src, len);
}

/* AddressSanitizer: frames that leave a stack without returning (a process
 * switched out or killed while deep in calls) leave their redzones poisoned in
 * the shadow. Instrumented code assumes a fresh frame's shadow is clean, so before
 * another process runs on the same stack the stale part is cleared: everything
 * from the lowest such stack pointer up to the top. */
static void asan_mark_dirty(cn_stack_t *s, char *sp)
{
#ifdef CN_ASAN
    if (s->asan_low == NULL || sp < s->asan_low)
        s->asan_low = sp;
#else
    (void)s;
    (void)sp;
#endif
}

static void asan_clean(cn_stack_t *s)
{
#ifdef CN_ASAN
    if (s->asan_low) {
        ASAN_UNPOISON_MEMORY_REGION(s->asan_low, (size_t)(s->base + s->size - s->asan_low));
        s->asan_low = NULL;
    }
#else
    (void)s;
#endif
}

/* Copy the owner's used bytes out of its shared stack. */
static void save_stack(cn_proc_t *p)
{
    char *sp = p->fctx;
    asan_mark_dirty(p->stack, sp);
    size_t len = (size_t)(stack_top(p->stack) - sp);
    if (len > p->saved_cap) {
        char *b = cn__realloc(p->saved, len);
        if (b == NULL) {
            /* There is no caller to hand -ENOMEM to; like BEAM, whose heap
             * allocator aborts the node, we stop here with the size. */
            fprintf(stderr, "libcnode: out of memory saving a %zu-byte stack\n", len);
            abort();
        }
        p->saved = b;
        p->saved_cap = (uint32_t)len;
    }
    copy_raw(p->saved, sp, len, sp, len);
    p->saved_len = (uint32_t)len;
}

static void restore_stack(cn_proc_t *p)
{
    char *sp = p->fctx;
    copy_raw(sp, p->saved, p->saved_len, sp, p->saved_len);
}

/* Pick the shared stack a new process binds to: the current one unless a blocking
 * call pinned it. */
static cn_stack_t *shared_for_new(cn_node_t *n)
{
    if (n->cur_shared && n->cur_shared->pinned == NULL)
        return n->cur_shared;
    for (cn_stack_t *s = n->shared; s; s = s->next) {
        if (s->pinned == NULL) {
            n->cur_shared = s;
            return s;
        }
    }
    cn_stack_t *s;
    if (cn__stack_new(n, n->shared_stack_size, true, &s) < 0)
        return NULL;
    s->next = n->shared;
    n->shared = s;
    n->cur_shared = s;
    return s;
}

static int own_stack_get(cn_node_t *n, size_t size, cn_stack_t **out)
{
    if (size == n->own_stack_size && n->own_free) {
        *out = n->own_free;
        n->own_free = (*out)->next;
        (*out)->next = NULL;
        n->nown_free--;
        return 0;
    }
    return cn__stack_new(n, size, false, out);
}

static void own_stack_put(cn_node_t *n, cn_stack_t *s)
{
    /* Keep a few default-size stacks for reuse; give their pages back first. */
    if (s->size == n->own_stack_size && n->nown_free < 64) {
        madvise(s->base, s->size, MADV_DONTNEED);
        s->next = n->own_free;
        n->own_free = s;
        n->nown_free++;
        return;
    }
    cn__stack_free(n, s);
}

/* ---------------------------------------------------------------------------------
 * Switching
 * ------------------------------------------------------------------------------ */

static void on_entry(transfer_t t)
{
    cn_proc_t *p = t.data;
    cn_node_t *n = cn__cur_node;
    n->sched_fctx = t.fctx;
#ifdef CN_ASAN
    __sanitizer_finish_switch_fiber(NULL, &sched_stack_bottom, &sched_stack_size);
#endif
    cn__proc_entry(p);
    abort(); /* cn__proc_entry leaves through cn__ctx_leave */
}

void cn__ctx_resume(cn_node_t *n, cn_proc_t *p)
{
    cn_stack_t *s = p->stack;

    if (s == NULL) {
        int rc;
        if (p->own_stack_wanted) {
            rc = own_stack_get(n, p->own_stack_size, &s);
        } else {
            s = shared_for_new(n);
            rc = s ? 0 : -ENOMEM;
        }
        if (rc < 0) {
            /* No stack: the process dies before running, as a failed spawn would. */
            p->state = CN_P_EXITING;
            cn__encode_atom("no_memory", &p->reason, &p->reason_len);
            return;
        }
        p->stack = s;
    }

    if (s->shared) {
        if (s->pinned && s->pinned != p) {
            /* Wait for the blocking call that holds this stack. */
            p->state = CN_P_STACK_WAIT;
            p->rq_next = s->waiting;
            s->waiting = p;
            return;
        }
        if (s->owner != p) {
            if (s->owner)
                save_stack(s->owner);
            asan_clean(s);
            if (p->started)
                restore_stack(p);
            s->owner = p;
        }
    } else if (!p->started) {
        asan_clean(s); /* a reused own stack may hold a dead process's redzones */
    }
    if (!p->started) {
        p->fctx = make_fcontext(stack_top(s), s->size, on_entry);
        p->started = true;
    }

    n->current = p;
#ifdef CN_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, s->base, s->size);
#endif
    TSAN_TO_PROC(p);
    transfer_t t = jump_fcontext(p->fctx, p);
#ifdef CN_ASAN
    __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
    n->current = NULL;
    p->fctx = t.fctx;
}

void cn__ctx_park(cn_proc_t *p)
{
    cn_node_t *n = cn__cur_node;
    (void)p;
#ifdef CN_ASAN
    void *fake = NULL;
    __sanitizer_start_switch_fiber(&fake, sched_stack_bottom, sched_stack_size);
#endif
    TSAN_TO_SCHED();
    transfer_t t = jump_fcontext(n->sched_fctx, NULL);
    n->sched_fctx = t.fctx;
#ifdef CN_ASAN
    __sanitizer_finish_switch_fiber(fake, &sched_stack_bottom, &sched_stack_size);
#endif
}

_Noreturn void cn__ctx_leave(cn_proc_t *p)
{
    cn_node_t *n = cn__cur_node;
    (void)p;
#ifdef CN_ASAN
    /* NULL: this fiber is finished, ASan may drop its fake stack. */
    __sanitizer_start_switch_fiber(NULL, sched_stack_bottom, sched_stack_size);
#endif
    TSAN_TO_SCHED();
    jump_fcontext(n->sched_fctx, NULL);
    abort();
}

void cn__ctx_release(cn_node_t *n, cn_proc_t *p)
{
    cn_stack_t *s = p->stack;
    TSAN_DESTROY(p);
    if (s) {
        if (p->started && p->fctx)
            asan_mark_dirty(s, p->fctx);
        if (s->shared) {
            if (s->owner == p)
                s->owner = NULL;
        } else {
            own_stack_put(n, s);
        }
        p->stack = NULL;
    }
    cn__free(p->saved);
    p->saved = NULL;
    p->saved_len = p->saved_cap = 0;
}
