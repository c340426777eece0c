/* mbox.c - messages, mailboxes, send and selective receive.
 *
 * A message is a malloc'd External Term Format buffer plus a small header; a send
 * links the header into the receiver's mailbox (a singly linked FIFO with a tail
 * pointer), so a local send never copies the term. Selective receive scans from the
 * oldest message, or from a mark taken before a request was sent, and a process
 * parked in receive resumes scanning where it stopped: only new arrivals are looked
 * at again.
 */
#include "cnode_int.h"

#include <errno.h>
#include <string.h>

/* The External Term Format version byte (ei.h does not export its name). */
#define ETF_VERSION 131

void cn_msg_free(cn_msg_t *m)
{
    if (m == NULL)
        return;
    cn__free(m->buf);
    cn__free(m);
}

cn_msg_t *cn__msg_from_x(ei_x_buff *x)
{
    cn_msg_t *m = cn__malloc(sizeof(*m));
    if (m == NULL) {
        ei_x_free(x);
        return NULL;
    }
    m->next = NULL;
    m->buf = x->buff;
    m->len = x->index;
    m->cap = x->buffsz;
    x->buff = NULL;
    x->buffsz = x->index = 0;
    return m;
}

cn_msg_t *cn__msg_from_term(const char *buf, int len)
{
    cn_msg_t *m = cn__malloc(sizeof(*m));
    if (m == NULL)
        return NULL;
    m->buf = cn__malloc((size_t)len + 1);
    if (m->buf == NULL) {
        cn__free(m);
        return NULL;
    }
    m->buf[0] = (char)ETF_VERSION;
    memcpy(m->buf + 1, buf, (size_t)len);
    m->len = m->cap = len + 1;
    m->next = NULL;
    return m;
}

void cn__mbox_push(cn_node_t *n, cn_proc_t *p, cn_msg_t *m)
{
    m->next = NULL;
    *p->mq_tail = m;
    p->mq_tail = &m->next;
    p->mq_len++;
    if (p->state == CN_P_WAIT_MSG)
        cn__make_runnable(n, p, CN_WAKE_MSG);
}

void cn__mbox_free(cn_proc_t *p)
{
    cn_msg_t *m = p->mq_head;
    while (m) {
        cn_msg_t *next = m->next;
        cn_msg_free(m);
        m = next;
    }
    p->mq_head = NULL;
    p->mq_tail = &p->mq_head;
    p->mq_len = 0;
}

/* ---------------------------------------------------------------------------------
 * Send
 * ------------------------------------------------------------------------------ */

int cn_send_msg(cn_pid_t to, cn_msg_t *m)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL) {
        cn_msg_free(m);
        return -EINVAL;
    }
    if (to.node != 0) {
        /* Remote delivery belongs to the distribution layer, when started. */
        if (n->dist_ops == NULL) {
            cn_msg_free(m);
            return -EHOSTUNREACH;
        }
        cn_pid_t from = n->current ? n->current->pid : (cn_pid_t){ 0, 0, 0, 0 };
        return n->dist_ops->send(n, from, to, m);
    }
    cn_proc_t *p = cn__proc_get(n, to);
    if (p == NULL) {
        cn_msg_free(m);
        return -ESRCH;
    }
    if (p->mq_max && p->mq_len >= p->mq_max) {
        cn_msg_free(m);
        return -ENOBUFS;
    }
    cn__mbox_push(n, p, m);
    return 0;
}

int cn_send(cn_pid_t to, ei_x_buff *x)
{
    cn_msg_t *m = cn__msg_from_x(x);
    if (m == NULL)
        return -ENOMEM;
    return cn_send_msg(to, m);
}

int cn_send_name(const char *name, ei_x_buff *x)
{
    cn_pid_t pid;
    if (cn_whereis(name, &pid) < 0) {
        ei_x_free(x);
        x->buff = NULL;
        x->buffsz = x->index = 0;
        return -ESRCH;
    }
    return cn_send(pid, x);
}

int cn_send_name_at(const char *name, const char *node, ei_x_buff *x)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || name == NULL) {
        ei_x_free(x);
        x->buff = NULL;
        x->buffsz = x->index = 0;
        return -EINVAL;
    }
    if (node == NULL || strcmp(node, n->name) == 0)
        return cn_send_name(name, x);
    cn_msg_t *m = cn__msg_from_x(x);
    if (m == NULL)
        return -ENOMEM;
    if (n->dist_ops == NULL) {
        cn_msg_free(m);
        return -EHOSTUNREACH;
    }
    cn_pid_t from = n->current ? n->current->pid : (cn_pid_t){ 0, 0, 0, 0 };
    return n->dist_ops->reg_send(n, from, name, node, m);
}

/* ---------------------------------------------------------------------------------
 * Receive
 * ------------------------------------------------------------------------------ */

static int receive_from(cn_node_t *n, cn_proc_t *p, cn_msg_t **pp, cn_match_cb match,
                        void *arg, int64_t timeout_ms, cn_msg_t **out)
{
    /* The cached loop time may be a few ms old: a timeout must never be short. */
    if (timeout_ms > 0)
        n->now_ms = cn__clock_ms();
    uint64_t deadline = timeout_ms > 0 ? n->now_ms + (uint64_t)timeout_ms : 0;

    for (;;) {
        while (*pp) {
            cn_msg_t *m = *pp;
            if (match == NULL || match(m, arg)) {
                *pp = m->next;
                if (p->mq_tail == &m->next)
                    p->mq_tail = pp;
                p->mq_len--;
                m->next = NULL;
                *out = m;
                return 0;
            }
            pp = &m->next;
        }
        if (timeout_ms == 0)
            return -ETIMEDOUT;
        int64_t left = -1;
        if (timeout_ms > 0) {
            if (n->now_ms >= deadline)
                return -ETIMEDOUT;
            left = (int64_t)(deadline - n->now_ms);
        }
        /* Messages only ever get appended while we are parked, and only this
         * process removes them, so pp stays valid: it points at the last slot
         * examined. */
        int why = cn__park(n, p, CN_P_WAIT_MSG, left);
        if (why == CN_WAKE_TIMEOUT && *pp == NULL)
            return -ETIMEDOUT;
    }
}

int cn_receive(cn_match_cb match, void *arg, int64_t timeout_ms, cn_msg_t **out)
{
    cn_node_t *n = cn__cur_node;
    *out = NULL;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    cn_proc_t *p = n->current;
    return receive_from(n, p, &p->mq_head, match, arg, timeout_ms, out);
}

cn_mark_t cn_mbox_mark(void)
{
    cn_mark_t mk = { NULL };
    cn_node_t *n = cn__cur_node;
    if (n && n->current)
        mk.pos = n->current->mq_tail;
    return mk;
}

int cn_receive_mark(cn_mark_t mark, cn_match_cb match, void *arg, int64_t timeout_ms,
                    cn_msg_t **out)
{
    cn_node_t *n = cn__cur_node;
    *out = NULL;
    if (n == NULL || n->current == NULL)
        return -EINVAL;
    cn_proc_t *p = n->current;
    return receive_from(n, p, mark.pos ? mark.pos : &p->mq_head, match, arg, timeout_ms,
                        out);
}

size_t cn_mbox_len(void)
{
    cn_node_t *n = cn__cur_node;
    return n && n->current ? n->current->mq_len : 0;
}

void cn_sleep(int64_t ms)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || n->current == NULL)
        return;
    n->now_ms = cn__clock_ms();
    uint64_t deadline = n->now_ms + (uint64_t)(ms < 0 ? 0 : ms);
    while (n->now_ms < deadline)
        cn__park(n, n->current, CN_P_SLEEP, (int64_t)(deadline - n->now_ms));
}
