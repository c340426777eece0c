/* fuzz_frame.c - libFuzzer target for everything a connected peer can send: the
 * input is one frame body (after the 4-byte length). It is parsed
 * (cn__dist_parse_frame: the bounds-checked term walk, then libei) and, when
 * accepted, dispatched for real (cn__dist_dispatch) against a node with two local
 * processes (pids <fuzz@127.0.0.1.1.0> and .2.0, creation 1234, the second
 * registered as `echo`) and a connected peer `peer@127.0.0.1`: sends land in
 * mailboxes, links and monitors go into the peer's tables, replies into its
 * queue. Between inputs the peer is taken down and mailboxes are emptied, so each
 * input starts from the same state. A message the parser accepts is also printed
 * with libei: what it accepts must be safe to decode. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/dist.h"
#include "dist_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cn_node_t *node;
static cn_dist_t *dist;
static cn_proc_t *procs[2];

static void idle(void *arg)
{
    (void)arg;
}

static void setup(void)
{
    cn_node_opts_t o = { .name = "fuzz@127.0.0.1", .creation = 1234, .pool_threads = 1 };
    cn_dist_opts_t d = { .cookie = "fuzz", .epmd_less = true, .listen_addr = "127.0.0.1" };
    cn_pid_t pid;
    if (cn_node_new(&o, &node) < 0)
        abort();
    /* Ours first, so they take slots 1 and 2 (the pids the seeds name). The node
     * never runs: they stay parked-new, with mailboxes we empty ourselves. */
    for (int i = 0; i < 2; i++) {
        if (cn_spawn(node, idle, NULL, NULL, &pid) < 0 || pid.num != (uint32_t)i + 1)
            abort();
        procs[i] = node->procs[pid.num];
        procs[i]->trap_exit = true;
    }
    if (cn_dist_start(node, &d) < 0)
        abort();
    cn__cur_node = node;
    if (cn_register("echo", procs[1]->pid) < 0)
        abort();
    dist = cn__dist_of(node);
}

/* Back to the starting state: no kills pending, empty mailboxes, peer down. */
static void reset(dist_peer_t *p)
{
    cn__dist_peer_down(dist, p, false);
    while (node->kills) {
        cn_kill_t *k = node->kills;
        node->kills = k->next;
        cn__free(k->reason);
        cn__free(k);
    }
    node->kills_tail = &node->kills;
    for (int i = 0; i < 2; i++) {
        cn__mbox_free(procs[i]);
        procs[i]->nlinks = 0;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (node == NULL)
        setup();
    if (size > (1u << 20))
        return 0;
    /* An exact-size copy, so reads past the end are caught. */
    char *buf = malloc(size ? size : 1);
    memcpy(buf, data, size);
    cn_dist_ctl_t c;
    int rc = cn__dist_parse_frame(buf, (int)size, &c);
    if (rc == 0) {
        if (c.payload_len > 0) {
            char *s = NULL;
            int i = c.payload_off + 1;
            /* libei may still refuse it (an atom that is not UTF-8, say), but
             * it must not read outside the buffer doing so (ASan). */
            ei_s_print_term(&s, buf, &i);
            free(s);
        }
        dist_peer_t *p = cn__dist_peer(dist, "peer@127.0.0.1", true);
        p->state = PEER_UP;
        cn__dist_dispatch(dist, p, buf, (int)size, &c);
        reset(p);
    }
    free(buf);
    return 0;
}
