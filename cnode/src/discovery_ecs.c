/* discovery_ecs.c - the `ecs` strategy: not implemented yet.
 *
 * Planned (issue 8): ListTasks (every page) and DescribeTasks (batches of 100)
 * of ONEBLOG_CLUSTER_ECS_CLUSTER / _SERVICE through libcurl on the blocking pool,
 * SigV4-signed (sigv4.c, checked against the AWS test vectors), credentials from
 * the ECS container endpoint or the AWS_* variables; names BASENAME@privateIPv4.
 * Until then the strategy is in the table so that the name is recognised, and
 * its init fails with -ENOSYS (logged).
 */
#include "cluster_int.h"

#include <errno.h>

static int ecs_init(cn__cluster_t *c, void **state)
{
    *state = NULL;
    cn__cluster_log(c, CN_LOG_ERROR, "ecs discovery is not implemented yet");
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
