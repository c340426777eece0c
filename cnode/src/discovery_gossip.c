/* discovery_gossip.c - placeholder, being written. */
#include "cluster_int.h"

#include <errno.h>

static int gossip_init(cn__cluster_t *c, void **state)
{
    (void)c;
    *state = NULL;
    return -ENOSYS;
}

static int gossip_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    (void)c, (void)state, (void)out;
    return -ENOSYS;
}

const cn__discovery_t cn__discovery_gossip = {
    .name = "gossip",
    .init = gossip_init,
    .poll = gossip_poll,
};
