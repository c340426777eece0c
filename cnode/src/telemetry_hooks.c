/* telemetry_hooks.c - what the core calls to trace and measure itself: the
 * caller and server sides of gen_server calls, and HTTP requests.
 *
 * The core calls these only when n->telemetry is set (a pointer test otherwise),
 * except cn__tel_unwrap, which every server runs on every call: a node with
 * tracing off must still serve a wrapped request from a node with tracing on.
 * Its fast path is a compare of the first bytes of the request.
 *
 * The wrapper {'$cn_trace', Traceparent, Request} and the rule for sending it
 * (the peer is a libcnode node) are described in telemetry.h.
 */
#include "telemetry_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cnode/cluster.h"
#include "http_int.h"

/* ---------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------ */

/* Copy s into out[cap], cut if longer. */
static void scopy(char *out, size_t cap, const char *s)
{
    size_t l = strlen(s);
    if (l >= cap)
        l = cap - 1;
    memcpy(out, s, l);
    out[l] = '\0';
}

/* Name an RPC span "service/method" straight into its arena (no intermediate
 * buffer, no second copy). Returns the method within the name
 * (its tail, NUL-terminated, ml bytes) for rpc.method to borrow, or NULL when
 * it was cut or the span does not record. Cut as snprintf("%s/%s") into 160
 * bytes would, which the spans were named with before. */
static const char *rpc_span_name(cn_span_t *s, const char *svc, size_t sl, const char *m,
                                 size_t ml)
{
    enum { CAP = 160 };
    if (s == NULL || !s->recording)
        return NULL;
    if (sl > CAP - 1)
        sl = CAP - 1;
    if (sl + 1 >= CAP) {
        cn__span_set_name2n(s, svc, sl, '/', NULL, 0);
        return NULL;
    }
    bool whole = ml <= CAP - 2 - sl;
    if (!whole)
        ml = CAP - 2 - sl;
    cn__span_set_name2n(s, svc, sl, '/', m, ml);
    return whole && s->name ? s->name + sl + 1 : NULL;
}

/* The request's name: its first atom (`get`, or get_post in {get_post, Slug}).
 * Returns its length. */
static size_t request_name(const char *buf, int i, char *out, size_t cap)
{
    int arity;
    char atom[MAXATOMLEN_UTF8];
    int j = i;
    if (ei_decode_tuple_header(buf, &j, &arity) == 0 && arity > 0)
        i = j;
    if (ei_decode_atom(buf, &i, atom) == 0)
        scopy(out, cap, atom);
    else
        snprintf(out, cap, "_");
    return strlen(out);
}

/* True when calls to `node` may carry the wrapper: named in the peer list, or it
 * has a member in the cluster registry (only libcnode nodes join it). Registry
 * answers are cached for a second. */
static bool peer_is_cnode(cn__tel_t *t, const char *node)
{
    for (int i = 0; i < t->npeers; i++)
        if (strcmp(t->peers[i], node) == 0)
            return true;
    cn_node_t *n = t->node;
    if (n->cluster == NULL)
        return false;
    uint64_t now = cn_now_ms();
    for (int i = 0; i < (int)(sizeof(t->pcache) / sizeof(t->pcache[0])); i++) {
        struct peer_cache *c = &t->pcache[i];
        if (c->at_ms && now - c->at_ms < 1000 && strcmp(c->name, node) == 0)
            return c->ours;
    }
    enum { MAXM = 64 };
    cn_cluster_member_t *m = cn__malloc(MAXM * sizeof(*m));
    bool ours = false;
    if (m) {
        int k = cn_cluster_members(NULL, m, MAXM);
        for (int i = 0; i < k && !ours; i++)
            ours = strcmp(m[i].node, node) == 0;
        cn__free(m);
    }
    if (strlen(node) < sizeof(t->pcache[0].name)) {
        struct peer_cache *c = &t->pcache[t->pcache_next];
        t->pcache_next = (t->pcache_next + 1) % (int)(sizeof(t->pcache) / sizeof(t->pcache[0]));
        scopy(c->name, sizeof c->name, node);
        c->ours = ours;
        c->at_ms = now ? now : 1;
    }
    return ours;
}

/* ---------------------------------------------------------------------------------
 * Caller side
 * ------------------------------------------------------------------------------ */

void cn__tel_call_begin(cn_node_t *n, cn_dest_t dest, const ei_x_buff *req, cn__tel_call_t *tc)
{
    cn__tel_t *t = n->telemetry;
    tc->span = NULL;
    tc->wrap = false;
    tc->t0_ns = cn__tel_mono_ns();
    size_t ml = 1;
    if (req->buff && req->index > 1)
        ml = request_name(req->buff, 1, tc->method, sizeof tc->method);
    else
        memcpy(tc->method, "_", 2);
    const char *peer = NULL, *service = NULL;
    if (dest.kind == CN_DEST_REMOTE) {
        peer = dest.node;
        service = dest.name;
    } else if (dest.kind == CN_DEST_NAME) {
        service = dest.name;
    } else if (dest.pid.node != 0) {
        peer = cn__node_name_of(n, dest.pid.node);
    }
    bool remote = peer && strcmp(peer, n->name) != 0;
    scopy(tc->peer, sizeof tc->peer, remote ? peer : n->name);
    if (!t->tracing)
        return;
    /* Local calls are traced only inside a trace; a remote call always is (a new
     * root when the caller has no span), as a gRPC client would. */
    bool in_trace = n->current && n->current->span;
    if (!remote && !in_trace)
        return;
    tc->span = cn_span_start_at(NULL, CN_SPAN_CLIENT, cn__tel_span_ns(tc->t0_ns));
    if (tc->span == NULL)
        return;
    /* The span ends, and is encoded, in cn__tel_call_end, while tc (in the
     * caller's frame, as cn_gen_call's dest) still holds these strings: they
     * are borrowed, not copied (cn__span_add_borrowed). */
    size_t sl = service ? strlen(service) : 10;
    rpc_span_name(tc->span, service ? service : "gen_server", sl, tc->method, ml);
    cn__span_add_static(tc->span, "rpc.system", "erlang", 6);
    if (service)
        cn__span_add_borrowed(tc->span, "rpc.service", service, sl);
    else
        cn__span_add_static(tc->span, "rpc.service", "gen_server", 10);
    cn__span_add_borrowed(tc->span, "rpc.method", tc->method, ml);
    cn__span_add_borrowed(tc->span, "server.address", tc->peer, strlen(tc->peer));
    if (remote && peer_is_cnode(t, peer)) {
        tc->wrap = true;
        cn_traceparent_format(&tc->span->ctx, tc->tp);
    }
}

/* The wrapper's opening as libei encodes it - SMALL_TUPLE_EXT 3, the atom
 * '$cn_trace' (SMALL_ATOM_UTF8_EXT), BINARY_EXT of 55 bytes - the same bytes
 * every call: written and recognised as one block. libei's encoders and
 * decoders convert the atom's characters each time, a few hundred
 * instructions a traced call on each side. */
static const unsigned char wrap_head[] = {
    ERL_SMALL_TUPLE_EXT, 3,
    ERL_SMALL_ATOM_UTF8_EXT, 9, '$', 'c', 'n', '_', 't', 'r', 'a', 'c', 'e',
    ERL_BINARY_EXT, 0, 0, 0, CN_TRACEPARENT_LEN,
};

int cn__tel_call_wrap(const cn__tel_call_t *tc, ei_x_buff *x)
{
    if (cn_x_reserve(x, sizeof wrap_head + CN_TRACEPARENT_LEN) < 0)
        return -ENOMEM;
    memcpy(x->buff + x->index, wrap_head, sizeof wrap_head);
    memcpy(x->buff + x->index + sizeof wrap_head, tc->tp, CN_TRACEPARENT_LEN);
    x->index += (int)(sizeof wrap_head + CN_TRACEPARENT_LEN);
    return 0;
}

static const char *outcome(int rc)
{
    switch (rc) {
    case 0:
        return "ok";
    case -ETIMEDOUT:
        return "timeout";
    case -ESRCH:
        return "noproc";
    case -ECONNABORTED:
        return "down";
    case -EHOSTUNREACH:
        return "unreachable";
    default:
        return "error";
    }
}

void cn__tel_call_end(cn_node_t *n, cn__tel_call_t *tc, int rc)
{
    cn__tel_t *t = n->telemetry;
    uint64_t now = cn__tel_mono_ns();
    double secs = (double)(now - tc->t0_ns) / 1e9;
    const char *labels[3] = { tc->method, tc->peer, outcome(rc) };
    cn_metric_add(t->m_rpc_calls, labels, 1);
    cn_metric_observe(t->m_rpc_dur, labels, secs);
    if (tc->span) {
        if (rc < 0) {
            cn_span_set_str(tc->span, "error.type", labels[2]);
            cn_span_set_status(tc->span, CN_STATUS_ERROR, cn_strerror(rc));
        }
        cn_span_end_at(tc->span, cn__tel_span_ns(now));
        tc->span = NULL;
    }
}

/* ---------------------------------------------------------------------------------
 * Server side
 * ------------------------------------------------------------------------------ */

bool cn__tel_unwrap(cn_term_t *req, cn_span_ctx_t *ctx)
{
    /* SMALL_TUPLE_EXT 3, then the atom '$cn_trace' in any of its encodings. */
    const unsigned char *b = (const unsigned char *)req->buf + req->index;
    if (req->index + 2 > req->len || b[0] != ERL_SMALL_TUPLE_EXT || b[1] != 3)
        return false;
    /* What libcnode callers send (cn__tel_call_wrap), and a request after it:
     * the traceparent parsed in place. Anything else: below. */
    if ((long)req->index + (long)sizeof wrap_head + CN_TRACEPARENT_LEN < (long)req->len &&
        memcmp(b, wrap_head, sizeof wrap_head) == 0) {
        cn_traceparent_parse((const char *)b + sizeof wrap_head, CN_TRACEPARENT_LEN, ctx);
        req->index += (int)(sizeof wrap_head + CN_TRACEPARENT_LEN);
        return true;
    }
    int i = req->index, arity, type, size;
    if (ei_decode_tuple_header(req->buf, &i, &arity) < 0 ||
        !cn_decode_atom_is(req->buf, &i, "$cn_trace"))
        return false;
    memset(ctx, 0, sizeof(*ctx));
    /* Another encoding of the atom, then BINARY_EXT, its 4-byte length, the
     * 55 bytes, parsed in place (no ei_get_type, no copy out, no
     * ei_skip_term). Anything else: below. */
    const unsigned char *u = (const unsigned char *)req->buf + i;
    if ((long)i + 5 + CN_TRACEPARENT_LEN < (long)req->len && u[0] == ERL_BINARY_EXT &&
        u[1] == 0 && u[2] == 0 && u[3] == 0 && u[4] == CN_TRACEPARENT_LEN) {
        cn_traceparent_parse((const char *)u + 5, CN_TRACEPARENT_LEN, ctx);
        req->index = i + 5 + CN_TRACEPARENT_LEN;
        return true;
    }
    if (ei_get_type(req->buf, &i, &type, &size) == 0 && type == ERL_BINARY_EXT &&
        size == CN_TRACEPARENT_LEN) {
        char tp[CN_TRACEPARENT_LEN + 1];
        long len;
        int j = i;
        if (ei_decode_binary(req->buf, &j, tp, &len) == 0)
            cn_traceparent_parse(tp, (size_t)len, ctx); /* malformed: ctx stays invalid */
    }
    if (ei_skip_term(req->buf, &i) < 0 || i >= req->len)
        return false;
    req->index = i;
    return true;
}

cn_span_t *cn__tel_serve_begin(cn_node_t *n, cn_term_t req, const cn_from_t *from,
                               const cn_span_ctx_t *wrapped, uint64_t *t0_ns, char *method)
{
    cn__tel_t *t = n->telemetry;
    *t0_ns = cn__tel_mono_ns();
    method[0] = '\0'; /* not read yet: cn__tel_serve_end reads it */
    if (!t->tracing)
        return NULL;
    /* The parent: the wrapper's context, or a local caller's current span. A
     * local call outside any trace gets no span; a remote one without context
     * (an erl or Elixir caller) gets a root span. */
    cn_span_ctx_t parent = { 0 };
    bool remote = from->pid.node != 0;
    if (wrapped && wrapped->valid) {
        parent = *wrapped;
    } else if (!remote) {
        cn_proc_t *caller = cn__proc_get(n, from->pid);
        if (caller == NULL || caller->span == NULL)
            return NULL;
        parent = caller->span->ctx;
    }
    size_t ml = request_name(req.buf, req.index, method, CN__TEL_METHOD_MAX);
    bool named = n->current && n->current->name;
    const char *service = named ? n->current->name : "gen_server";
    size_t sl = named ? strlen(service) : 10;
    cn_span_t *s = cn_span_start_ctx_at(NULL, CN_SPAN_SERVER, &parent, cn__tel_span_ns(*t0_ns));
    /* The method is borrowed from the name's copy in the arena, the service
     * from the serving process (registered, it outlives the call and so the
     * span, which ends in cn__tel_serve_end). */
    const char *m = rpc_span_name(s, service, sl, method, ml);
    cn__span_add_static(s, "rpc.system", "erlang", 6);
    if (named)
        cn__span_add_borrowed(s, "rpc.service", service, sl);
    else
        cn__span_add_static(s, "rpc.service", "gen_server", 10);
    if (m)
        cn__span_add_borrowed(s, "rpc.method", m, ml);
    else
        cn__span_add_strn(s, "rpc.method", method, ml);
    cn__span_add_static(s, "server.address", n->name, strlen(n->name)); /* the node's */
    if (remote && s && s->recording)
        cn__span_add_str(s, "client.address", cn__node_name_of(n, from->pid.node));
    return s;
}

void cn__tel_serve_end(cn_node_t *n, cn_span_t *s, cn_term_t req, uint64_t t0_ns, int rc,
                       char *method)
{
    cn__tel_t *t = n->telemetry;
    if (method[0] == '\0') /* not traced: cn__tel_serve_begin left it */
        request_name(req.buf, req.index, method, CN__TEL_METHOD_MAX);
    const char *labels[2] = { n->current && n->current->name ? n->current->name : "gen_server",
                              method };
    cn_metric_add(t->m_rpc_srv_calls, labels, 1);
    uint64_t now = cn__tel_mono_ns();
    cn_metric_observe(t->m_rpc_srv_dur, labels, (double)(now - t0_ns) / 1e9);
    if (s) {
        if (rc == CN_GS_STOP)
            cn_span_event(s, "server stops", NULL, NULL);
        cn_span_end_at(s, cn__tel_span_ns(now));
    }
}

/* ---------------------------------------------------------------------------------
 * HTTP
 * ------------------------------------------------------------------------------ */

/* The address of a peer as text into out (INET6_ADDRSTRLEN bytes): IPv4 by
 * hand, IPv6 through inet_ntop. Returns the length, 0 for other families. */
static size_t peer_address(const struct sockaddr_storage *ss, char *out)
{
    if (ss->ss_family == AF_INET) {
        const uint8_t *b = (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr;
        char *o = out;
        for (int i = 0; i < 4; i++) {
            unsigned v = b[i];
            if (v >= 100)
                *o++ = (char)('0' + v / 100);
            if (v >= 10)
                *o++ = (char)('0' + v / 10 % 10);
            *o++ = (char)('0' + v % 10);
            *o++ = '.';
        }
        *--o = '\0';
        return (size_t)(o - out);
    }
    if (ss->ss_family == AF_INET6 &&
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, INET6_ADDRSTRLEN))
        return strlen(out);
    return 0;
}

/* The port after a Host header's colon: its leading digits (atoi without
 * strtol's locale and sign handling), 0 when there are none. */
static int port_of(const char *p)
{
    int v = 0;
    for (int i = 0; i < 5 && *p >= '0' && *p <= '9'; i++, p++)
        v = v * 10 + (*p - '0');
    return v;
}

/* Split host (hl bytes) at its port's colon: the last ':', unless a ']'
 * follows it (then it is an IPv6 literal's and there is no port). Returns the
 * host's length without the port, *port the port or -1. The usual
 * "name:digits" is read backwards once, digits and colon together; anything
 * else takes the scan from the end. */
static size_t host_port(const char *host, size_t hl, int32_t *port)
{
    size_t i = hl;
    int v = 0, m = 1;
    while (i > 0 && hl - i < 5 && host[i - 1] >= '0' && host[i - 1] <= '9') {
        v += (host[i - 1] - '0') * m;
        m *= 10;
        i--;
    }
    if (i < hl && i > 0 && host[i - 1] == ':') {
        *port = v;
        return i - 1;
    }
    *port = -1;
    for (i = hl; i-- > 0;) {
        if (host[i] == ']')
            break;
        if (host[i] == ':') {
            *port = port_of(host + i + 1);
            return i;
        }
    }
    return hl;
}

cn_span_t *cn__tel_http_begin(cn__http_conn_t *c, uint64_t *t0_ns)
{
    cn_node_t *n = cn__cur_node;
    cn__tel_t *t = n->telemetry;
    *t0_ns = cn__tel_mono_ns();
    c->route = NULL;
    /* Scrapes of the built-in /metrics server are measured, not traced. */
    if (!t->tracing || (t->metrics_srv && c->srv == t->metrics_srv))
        return NULL;
    cn_http_req_t *r = &c->req;
    cn_span_ctx_t parent = { 0 };
    /* The three headers the span wants, and the lengths of its strings, were
     * found as the head was parsed (on_headers_complete). */
    if (c->h_tp)
        cn_traceparent_parse(c->h_tp, c->h_tp_len, &parent); /* malformed: a new root */
    /* Named at its end, when the route is known (cn__tel_http_end). */
    cn_span_t *s = cn_span_start_ctx_at(NULL, CN_SPAN_SERVER, &parent, cn__tel_span_ns(*t0_ns));
    if (s == NULL || !s->recording)
        return s;
    /* The span's own attributes as the request's strings (cn__span_http_t):
     * the span ends, and is encoded, in cn__tel_http_end, before the request's
     * buffers are reused. A value too long to borrow makes them attributes at
     * once, copied and cut as any other. */
    cn__span_http_t *h = &s->h;
    /* The method is http_parser's own constant string. */
    h->method = r->method ? r->method : "_";
    h->method_len = r->method_id == HTTP_GET ? 3 : (uint16_t)strlen(h->method);
    h->path = r->path ? r->path : "";
    size_t pl = r->path ? c->path_len : 0, ql = r->query ? c->query_len : 0;
    size_t ul = c->h_ua ? c->h_ua_len : 0;
    h->query = r->query;
    h->version = r->http_minor == 0 ? "1.0" : "1.1";
    const char *host = c->h_host;
    h->host = host;
    h->port = -1;
    size_t hl = 0;
    if (host)
        hl = host_port(host, c->h_host_len < 255 ? c->h_host_len : 255, &h->port);
    h->ua = c->h_ua;
    /* client.address from the socket address itself: cn_http_remote() formats
     * "ip:port" with inet_ntop and snprintf, a third of what tracing added to a
     * cached page. client.port is left out: Opt-In in the HTTP semantic
     * conventions. */
    h->peer = NULL;
    h->peer_len = 0;
    if (c->fd >= 0) {
        /* Formatted once per connection (which outlives the span): a keep-alive
         * one serves many. */
        _Static_assert(sizeof c->peer_text >= INET6_ADDRSTRLEN, "peer_text holds an address");
        if (c->peer_text_len == 0)
            c->peer_text_len = (uint8_t)peer_address(&c->peer, c->peer_text);
        if (c->peer_text_len) {
            h->peer = c->peer_text;
            h->peer_len = c->peer_text_len;
        }
    }
    h->route = NULL;
    h->route_len = 0;
    h->status = 0;
    s->http = true;
    if ((pl | ql | ul) > CN__SPAN_BORROW_MAX) {
        /* Lengths of the attribute form: too long to borrow, copied there. */
        h->path_len = (uint16_t)(pl > UINT16_MAX ? UINT16_MAX : pl);
        h->query_len = (uint16_t)(ql > UINT16_MAX ? UINT16_MAX : ql);
        h->ua_len = (uint16_t)(ul > UINT16_MAX ? UINT16_MAX : ul);
        h->host_len = (uint16_t)hl;
        cn__span_http_attrs(s);
        return s;
    }
    h->path_len = (uint16_t)pl;
    h->query_len = (uint16_t)ql;
    h->ua_len = (uint16_t)ul;
    h->host_len = (uint16_t)hl;
    return s;
}

void cn__tel_http_end(cn__http_conn_t *c, cn_span_t *s, uint64_t t0_ns)
{
    cn_node_t *n = cn__cur_node;
    cn__tel_t *t = n->telemetry;
    int status = c->res_status ? c->res_status : 500;
    /* The label by hand: HTTP statuses are three digits (snprintf cost ~670
     * instructions a request, traced or not); anything else the long way. */
    char st[12];
    if (status >= 100 && status <= 999) {
        st[0] = (char)('0' + status / 100);
        st[1] = (char)('0' + status / 10 % 10);
        st[2] = (char)('0' + status % 10);
        st[3] = '\0';
    } else {
        snprintf(st, sizeof st, "%d", status);
    }
    /* Unmatched requests share one series: label values must stay few. */
    const char *route = c->route ? c->route : "unmatched";
    const char *labels[3] = { c->req.method ? c->req.method : "_", route, st };
    cn_metric_add(t->m_http_req, labels, 1);
    uint64_t now = cn__tel_mono_ns();
    cn_metric_observe(t->m_http_dur, labels, (double)(now - t0_ns) / 1e9);
    if (s == NULL)
        return;
    size_t rl = c->route ? strlen(c->route) : 0;
    /* "GET /post/:slug", or the method alone when no route matched. */
    if (s->http) /* the method and its length are the span's */
        cn__span_set_name2n(s, s->h.method, s->h.method_len, ' ', c->route, rl);
    else
        cn__span_set_name2(s, c->req.method ? c->req.method : "_", ' ', c->route);
    /* Only this hook sets these two: no search of the others. The route is
     * the server's route table's: it outlives the span. */
    if (s->http) {
        if (c->route) {
            s->h.route = c->route;
            s->h.route_len = (uint16_t)(rl > UINT16_MAX ? UINT16_MAX : rl);
            if (rl > CN__SPAN_BORROW_MAX)
                cn__span_http_attrs(s);
        }
        if (s->http && status > 0) /* put_http writes it as unsigned */
            s->h.status = status;
        else
            cn__span_add_int(s, "http.response.status_code", status);
    } else {
        if (c->route && s->recording)
            cn__span_add_borrowed(s, "http.route", c->route, rl);
        cn__span_add_int(s, "http.response.status_code", status);
    }
    /* Server spans: 5xx is an error, 4xx is the client's (semconv HTTP). */
    if (status >= 500) {
        cn_span_set_str(s, "error.type", st);
        cn_span_set_status(s, CN_STATUS_ERROR, NULL);
    }
    cn_span_end_at(s, cn__tel_span_ns(now));
}
