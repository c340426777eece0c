/* pool.c - a few threads for work that blocks (SQLite, fsync, DNS).
 *
 * A process hands a function to the pool with cn_blocking() and parks. The job
 * record lives on the process's own stack, which stays pinned in place until the
 * function returns (see ctx.c): no allocation per call. Workers put finished jobs
 * on a done list and poke an eventfd that the scheduler polls with everything else.
 */
#include "cnode_int.h"

#include <errno.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct cn_job {
    struct cn_job *next;
    void (*fn)(void *arg);
    void *arg;
    cn_proc_t *proc;
} cn_job_t;

struct cn_pool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cn_job_t *todo, **todo_tail;
    cn_job_t *done;
    int efd;
    bool stop;
    int nthreads;
    pthread_t threads[];
};

static void *worker(void *arg)
{
    cn_pool_t *pool = arg;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (pool->todo == NULL && !pool->stop)
            pthread_cond_wait(&pool->cond, &pool->lock);
        if (pool->todo == NULL)
            break;
        cn_job_t *j = pool->todo;
        pool->todo = j->next;
        if (pool->todo == NULL)
            pool->todo_tail = &pool->todo;
        pthread_mutex_unlock(&pool->lock);

        j->fn(j->arg);

        pthread_mutex_lock(&pool->lock);
        j->next = pool->done;
        pool->done = j;
        uint64_t one = 1;
        /* The counter cannot overflow in practice; a failed write is harmless
         * since the eventfd is then already readable. */
        if (write(pool->efd, &one, sizeof(one)) < 0) {
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

int cn__pool_start(cn_node_t *n, int nthreads)
{
    cn_pool_t *pool = cn__calloc(1, sizeof(*pool) + (size_t)nthreads * sizeof(pthread_t));
    if (pool == NULL)
        return -ENOMEM;
    pool->todo_tail = &pool->todo;
    pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pool->efd < 0) {
        int rc = -errno;
        cn__free(pool);
        return rc;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->cond, NULL);
    struct epoll_event ev = { 0 };
    ev.events = EPOLLIN;
    ev.data.u64 = (uint64_t)pool->efd;
    if (epoll_ctl(n->epfd, EPOLL_CTL_ADD, pool->efd, &ev) < 0) {
        int rc = -errno;
        close(pool->efd);
        cn__free(pool);
        return rc;
    }
    n->pool = pool;
    for (int i = 0; i < nthreads; i++) {
        int rc = pthread_create(&pool->threads[i], NULL, worker, pool);
        if (rc != 0) {
            cn__pool_stop(n);
            return -rc;
        }
        pool->nthreads++;
    }
    return 0;
}

void cn__pool_stop(cn_node_t *n)
{
    cn_pool_t *pool = n->pool;
    if (pool == NULL)
        return;
    pthread_mutex_lock(&pool->lock);
    pool->stop = true;
    pthread_cond_broadcast(&pool->cond);
    pthread_mutex_unlock(&pool->lock);
    for (int i = 0; i < pool->nthreads; i++)
        pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->cond);
    close(pool->efd);
    cn__free(pool);
    n->pool = NULL;
}

int cn__pool_fd(cn_node_t *n)
{
    return n->pool ? n->pool->efd : -1;
}

/* Unpin p's shared stack and let the processes that waited for it run. */
static void unpin(cn_node_t *n, cn_proc_t *p)
{
    cn_stack_t *s = p->stack;
    if (s == NULL || !s->shared || s->pinned != p)
        return;
    s->pinned = NULL;
    cn_proc_t *w = s->waiting;
    s->waiting = NULL;
    while (w) {
        cn_proc_t *next = w->rq_next;
        w->state = CN_P_RUNNABLE;
        /* Keep the reason it was woken for: a process whose own blocking call
         * completed may have had to wait here for the stack, and must still see
         * CN_WAKE_POOL when it finally runs. */
        cn__make_runnable(n, w, w->wake);
        w = next;
    }
}

void cn__pool_drain(cn_node_t *n)
{
    cn_pool_t *pool = n->pool;
    uint64_t cnt;
    if (read(pool->efd, &cnt, sizeof(cnt)) < 0) {
    }
    pthread_mutex_lock(&pool->lock);
    cn_job_t *j = pool->done;
    pool->done = NULL;
    pthread_mutex_unlock(&pool->lock);
    while (j) {
        /* Read the job before the stack it lives on can be reused. */
        cn_job_t *next = j->next;
        cn_proc_t *p = j->proc;
        unpin(n, p);
        n->npool_busy--;
        cn__make_runnable(n, p, CN_WAKE_POOL);
        j = next;
    }
}

int cn_blocking_short(void (*fn)(void *arg), void *arg)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL || fn == NULL)
        return -EINVAL;
    /* Idle: the scheduler would go to epoll_wait as soon as the caller parked.
     * A completion of another pool job would wait behind fn, so that counts as
     * work too. Nothing can be killed while fn runs: kills are handled between
     * resumes. */
    n->now_ms = cn__clock_ms(); /* a timer due by now is work */
    if (n->rq_head == NULL && n->kills == NULL && n->npool_busy == 0 &&
        cn__timers_next(n) != 0) {
        fn(arg);
        return 1;
    }
    return cn_blocking(fn, arg);
}

int cn_blocking(void (*fn)(void *arg), void *arg)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL || fn == NULL)
        return -EINVAL;
    cn_proc_t *p = n->current;
    cn_pool_t *pool = n->pool;
    cn_job_t job = { NULL, fn, arg, p };

    if (p->stack->shared)
        p->stack->pinned = p;
    n->npool_busy++;
    pthread_mutex_lock(&pool->lock);
    *pool->todo_tail = &job;
    pool->todo_tail = &job.next;
    pthread_cond_signal(&pool->cond);
    pthread_mutex_unlock(&pool->lock);

    /* Only the pool's completion wakes a process in CN_P_WAIT_POOL. */
    while (cn__park(n, p, CN_P_WAIT_POOL, -1) != CN_WAKE_POOL) {
    }
    if (p->kill_pending) {
        /* Killed meanwhile; cn__proc_kill left the reason in p->reason. */
        p->state = CN_P_EXITING;
        cn__ctx_leave(p);
    }
    return 0;
}
