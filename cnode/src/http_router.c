/* http_router.c - matching a request against the server's static route table.
 *
 * Routes are tried in table order (as redis looks commands up in a table, and as
 * Cowboy's router tries its list). A pattern is a path of segments: literals,
 * ":name" for one segment and a final "*name" for the rest. Matching walks the
 * pattern and the raw path together, segment by segment, without allocating;
 * only a successful match copies its captures (decoded) into the request arena.
 */
#include "http_int.h"

#include <errno.h>
#include <string.h>

#define MAX_CAPTURES 16

typedef struct capture {
    const char *name, *value;
    size_t nlen, vlen;
} capture_t;

static const char *seg_end(const char *s)
{
    const char *e = strchr(s, '/');
    return e ? e : s + strlen(s);
}

/* Match path against pattern; fills caps[0..*ncaps). */
static bool match(const char *p, const char *u, capture_t *caps, int *ncaps)
{
    *ncaps = 0;
    for (;;) {
        if (*p != '/' || *u != '/')
            return *p == '\0' && *u == '\0';
        p++;
        u++;
        if (*p == '*') {
            if (*ncaps == MAX_CAPTURES)
                return false;
            caps[(*ncaps)++] = (capture_t){ p + 1, u, strlen(p + 1), strlen(u) };
            return true;
        }
        const char *pe = seg_end(p), *ue = seg_end(u);
        if (*p == ':') {
            if (ue == u || *ncaps == MAX_CAPTURES)
                return false;
            caps[(*ncaps)++] = (capture_t){ p + 1, u, (size_t)(pe - p - 1), (size_t)(ue - u) };
        } else if (pe - p != ue - u || memcmp(p, u, (size_t)(pe - p)) != 0) {
            return false;
        }
        p = pe;
        u = ue;
    }
}

static bool method_ok(const cn_http_route_t *rt, const cn_http_req_t *r)
{
    if (rt->method == NULL || strcmp(rt->method, "*") == 0)
        return true;
    if (strcmp(rt->method, r->method) == 0)
        return true;
    return r->method_id == HTTP_HEAD && strcmp(rt->method, "GET") == 0;
}

/* Copy the captures into the arena as decoded strings. */
static int set_params(cn_http_req_t *r, const capture_t *caps, int n)
{
    if (n == 0)
        return 0;
    cn_http_kv_t *kv = cn_http_alloc(r, (size_t)n * sizeof(*kv));
    if (kv == NULL)
        return -ENOMEM;
    for (int i = 0; i < n; i++) {
        char *name = cn_http_alloc(r, caps[i].nlen + 1);
        char *val = cn_http_alloc(r, caps[i].vlen + 1);
        if (name == NULL || val == NULL)
            return -ENOMEM;
        memcpy(name, caps[i].name, caps[i].nlen);
        name[caps[i].nlen] = '\0';
        memcpy(val, caps[i].value, caps[i].vlen);
        val[caps[i].vlen] = '\0';
        if (cn_http_urldecode(val, false) < 0)
            return -EINVAL;
        kv[i].name = name;
        kv[i].value = val;
    }
    r->params = kv;
    r->nparams = (size_t)n;
    return 0;
}

int cn__http_route(cn__http_conn_t *c)
{
    cn_http_server_t *s = c->srv;
    cn_http_req_t *r = &c->req;
    capture_t caps[MAX_CAPTURES];
    int ncaps;
    char allow[128];
    size_t alen = 0;
    bool path_hit = false;

    for (size_t i = 0; i < s->cfg.nroutes; i++) {
        const cn_http_route_t *rt = &s->cfg.routes[i];
        if (!match(rt->pattern, r->path, caps, &ncaps))
            continue;
        if (method_ok(rt, r)) {
            int rc = set_params(r, caps, ncaps);
            if (rc == -EINVAL)
                return cn_http_reply_error(r, 400);
            if (rc < 0)
                return rc;
            c->route = rt->pattern;
            return rt->handler(r, rt->udata);
        }
        path_hit = true;
        size_t ml = strlen(rt->method);
        bool dup = false;
        for (size_t k = 0; k + ml <= alen; k++)
            if (memcmp(allow + k, rt->method, ml) == 0 && (k + ml == alen || allow[k + ml] == ','))
                dup = true;
        if (!dup && alen + ml + 12 < sizeof(allow)) {
            if (alen) {
                memcpy(allow + alen, ", ", 2);
                alen += 2;
            }
            memcpy(allow + alen, rt->method, ml);
            alen += ml;
            if (strcmp(rt->method, "GET") == 0) {
                memcpy(allow + alen, ", HEAD", 6);
                alen += 6;
            }
        }
    }
    if (path_hit) {
        allow[alen] = '\0';
        cn_http_set_header(r, "Allow", allow);
        return cn_http_reply_error(r, 405);
    }
    if (s->cfg.fallback)
        return s->cfg.fallback(r, s->cfg.fallback_udata);
    return cn_http_reply_error(r, 404);
}
