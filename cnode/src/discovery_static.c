/* discovery_static.c - the `static` strategy: a fixed list of node names.
 *
 * ONEBLOG_CLUSTER_NODES (opts.nodes) is a comma-separated list of "alive@host"
 * names; blanks around names are ignored and our own name is dropped by the
 * caller. Every poll returns the same list, so the mesh keeps reconnecting to a
 * listed node that is down, with backoff, for as long as the node runs.
 */
#include "cluster_int.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

static int static_init(cn__cluster_t *c, void **state)
{
    *state = NULL;
    if (c->nodes == NULL) {
        cn__cluster_log(c, CN_LOG_WARN, "static discovery: no nodes listed "
                                        "(ONEBLOG_CLUSTER_NODES): this node stays alone");
        return 0;
    }
    cl_names_t l = { 0 };
    int rc = cn__cluster_static_parse(c->nodes, &l);
    cn__names_free(&l);
    if (rc < 0)
        cn__cluster_log(c, CN_LOG_ERROR, "static discovery: bad node list '%s'", c->nodes);
    return rc;
}

int cn__cluster_static_parse(const char *text, cl_names_t *out)
{
    const char *s = text;
    while (*s) {
        while (*s == ',' || isspace((unsigned char)*s))
            s++;
        if (*s == '\0')
            break;
        const char *e = s;
        while (*e && *e != ',' && !isspace((unsigned char)*e))
            e++;
        char name[CN_CLUSTER_NAME_MAX];
        size_t len = (size_t)(e - s);
        const char *at = memchr(s, '@', len);
        if (len >= sizeof(name) || at == NULL || at == s || at == e - 1)
            return -EINVAL;
        memcpy(name, s, len);
        name[len] = '\0';
        int rc = cn__names_add(out, name, 0);
        if (rc < 0)
            return rc;
        s = e;
    }
    return 0;
}

static int static_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    (void)state;
    return c->nodes ? cn__cluster_static_parse(c->nodes, out) : 0;
}

const cn__discovery_t cn__discovery_static = {
    .name = "static",
    .init = static_init,
    .poll = static_poll,
};
