/* discovery_ecs.c - placeholder, being written. */
#include "cluster_int.h"

#include <errno.h>

static int ecs_init(cn__cluster_t *c, void **state)
{
    (void)c;
    *state = NULL;
    return -ENOSYS;
}

static int ecs_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    (void)c, (void)state, (void)out;
    return -ENOSYS;
}

const cn__discovery_t cn__discovery_ecs = {
    .name = "ecs",
    .init = ecs_init,
    .poll = ecs_poll,
};
