/* reader.c - readers without accounts: the first-party reader id, page views and
 * personal recommendations.
 *
 * The reader id is 128 random bits (32 hex digits) in the cookie ob_rid: first
 * party, HttpOnly, SameSite=Lax, two years. It names a browser, not a person, and
 * is never shown or shared. The bits come from the kernel's CSPRNG (getrandom),
 * 4 KiB at a time per thread, each byte handed out once: glibc 2.36's
 * arc4random_buf is one getrandom system call per call, and formatting with
 * snprintf("%02x") cost another ~4.5k instructions, on every request that comes
 * without the cookie (a first visit, a crawler, a load test).
 *
 * Page views become `page.view` events (actor = reader id, data = {path, post,
 * recs_event}) in the event log, which is how `recs` learns what a reader read.
 * A request never waits for that: it sends a local message to the batcher
 * process (`client_events`), which builds the BSON events and casts them to the
 * `events` service in batches (at most every 200 ms). With no `events` member
 * in the cluster (and no ONEBLOG_EVENTS_NODE) the views are dropped and counted.
 *
 * Recommendations: when the cluster has a `recs` member (or ONEBLOG_RECS_NODE
 * names a node running it, for a `recs` that does not join the registry yet), a
 * post page asks it
 * (ONEBLOG_RECS_TIMEOUT_MS, 150 ms by default) for this reader's list, fetches
 * the posts' cards with one get_posts call and renders the theme's `related`
 * partial with them, which replaces the cached page's "Read next". Any failure
 * leaves "Read next" in place: the page never fails because of recommendations.
 */
#include "client.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "cnode/cluster.h"
#include "cnode/gen_server.h"
#include "events/event.h"
#include "events/events_server.h"

#define READER_MAX_AGE_S (2 * 365 * 24 * 3600)
#define RECS_K 3
#define EVENTS_BATCH_MAX 256
#define EVENTS_FLUSH_MS 200

static bool reader_id_ok(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n < 16 || n > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

/* n bytes (n <= 64) from a per-thread pool filled by getrandom; a byte is
 * handed out once and wiped. If getrandom fails (it does not for 4 KiB once the
 * pool is initialised), arc4random_buf, which cannot fail. */
static void random_bytes(unsigned char *out, size_t n)
{
    static __thread unsigned char pool[4096];
    static __thread size_t left;
    if (left < n) {
        ssize_t r = getrandom(pool, sizeof pool, 0);
        if (r != (ssize_t)sizeof pool) {
            arc4random_buf(out, n);
            return;
        }
        left = sizeof pool;
    }
    unsigned char *p = pool + sizeof pool - left;
    memcpy(out, p, n);
    explicit_bzero(p, n);
    left -= n;
}

const char *client_reader_id(cn_http_req_t *req)
{
    const char *id = cn_http_cookie_get(req, CLIENT_READER_COOKIE);
    if (reader_id_ok(id))
        return id;
    unsigned char raw[16];
    random_bytes(raw, sizeof raw);
    char *hex = cn_http_alloc(req, 33);
    if (hex == NULL)
        return "";
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof raw; i++) {
        hex[2 * i] = digits[raw[i] >> 4];
        hex[2 * i + 1] = digits[raw[i] & 15];
    }
    hex[32] = '\0';
    explicit_bzero(raw, sizeof raw);
    cn_http_cookie_attrs_t a = { .max_age = READER_MAX_AGE_S, .path = "/", .same_site = "Lax",
                                 .http_only = true };
    cn_http_set_cookie(req, CLIENT_READER_COOKIE, hex, &a);
    return hex;
}

/* ---------------------------------------------------------------------------------
 * Page views
 * ------------------------------------------------------------------------------ */

static void encode_str(ei_x_buff *x, const char *s)
{
    s = s ? s : "";
    ei_x_encode_binary(x, s, (long)strlen(s));
}

void client_page_view(client_t *cl, cn_http_req_t *req, const char *reader, const char *path,
                      const char *post_slug, const char *recs_event)
{
    (void)req;
    if (cn_pid_is_nil(cl->events_batcher))
        return;
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return;
    ei_x_encode_tuple_header(&x, 5);
    ei_x_encode_atom(&x, "page_view");
    encode_str(&x, reader);
    encode_str(&x, path);
    encode_str(&x, post_slug);
    encode_str(&x, recs_event);
    if (cn_send(cl->events_batcher, &x) < 0) /* a full mailbox drops the view */
        cl->views_dropped++;
}

/* Where events go: an `events` member of the cluster, else $ONEBLOG_EVENTS_NODE. */
bool client_events_dest(cn_dest_t *out, cn_cluster_member_t *m)
{
    if (cn_cluster_members("events", m, 1) >= 1) {
        *out = cn_dest_pid(m->pid);
        return true;
    }
    const char *node = getenv("ONEBLOG_EVENTS_NODE");
    if (node && *node) {
        *out = cn_dest_remote("events", node);
        return true;
    }
    return false;
}

typedef struct batch {
    bson_t docs[EVENTS_BATCH_MAX];
    ev_slice_t slices[EVENTS_BATCH_MAX];
    int n;
} batch_t;

static void batch_add(client_t *cl, batch_t *b, const cn_msg_t *msg)
{
    cn_term_t t = cn_msg_term(msg);
    int idx = t.index, arity;
    char f[4][512];
    if (ei_decode_tuple_header(t.buf, &idx, &arity) < 0 || arity != 5 ||
        !cn_decode_atom_is(t.buf, &idx, "page_view"))
        return;
    for (int i = 0; i < 4; i++) {
        long len;
        int type, size;
        if (ei_get_type(t.buf, &idx, &type, &size) < 0 || size >= (int)sizeof f[i] ||
            ei_decode_binary(t.buf, &idx, f[i], &len) < 0)
            return;
        f[i][len] = '\0';
    }
    ev_event_t *ev;
    if (ev_event_new("page.view", &ev) < 0)
        return;
    ev_event_set_actor(ev, f[0]);
    ev_event_set_node(ev, cn_node_name(cl->node));
    ev_event_set_app_version(ev, "oneblog-client/" CLIENT_VERSION);
    bson_t *d = ev_event_data(ev);
    BSON_APPEND_UTF8(d, "path", f[1]);
    if (f[2][0])
        BSON_APPEND_UTF8(d, "post", f[2]);
    if (f[3][0])
        BSON_APPEND_UTF8(d, "recs_event", f[3]);
    ev_event_encode(ev, &b->docs[b->n]);
    b->slices[b->n].data = bson_get_data(&b->docs[b->n]);
    b->slices[b->n].len = b->docs[b->n].len;
    b->n++;
    ev_event_free(ev);
}

static void batch_flush(client_t *cl, batch_t *b)
{
    cn_dest_t dest;
    cn_cluster_member_t m;
    if (b->n == 0)
        return;
    if (client_events_dest(&dest, &m) && events_cast_batch(dest, b->slices, (size_t)b->n) == 0)
        cl->views_sent += (uint64_t)b->n;
    else
        cl->views_dropped += (uint64_t)b->n;
    for (int i = 0; i < b->n; i++)
        bson_destroy(&b->docs[i]);
    b->n = 0;
}

/* Exit hook: the batch is on the heap, so a kill at shutdown frees it too. */
static void batch_free(void *arg)
{
    batch_t *b = arg;
    for (int i = 0; i < b->n; i++)
        bson_destroy(&b->docs[i]);
    free(b);
}

void client_events_main(void *arg)
{
    client_t *cl = arg;
    batch_t *b = xcalloc(1, sizeof(*b));
    long hook = cn_on_exit(batch_free, b);
    uint64_t first = 0; /* when the oldest event of the batch came (ms) */
    while (!cl->stopping) {
        int64_t wait = b->n ? (int64_t)(first + EVENTS_FLUSH_MS) - (int64_t)cn_now_ms() : 500;
        cn_msg_t *msg;
        if (wait > 0 && cn_receive(NULL, NULL, wait, &msg) == 0) {
            if (b->n == 0)
                first = cn_now_ms();
            batch_add(cl, b, msg);
            cn_msg_free(msg);
            if (b->n < EVENTS_BATCH_MAX)
                continue;
        }
        batch_flush(cl, b);
    }
    batch_flush(cl, b);
    cn_on_exit_cancel(hook);
    batch_free(b);
}

/* ---------------------------------------------------------------------------------
 * Recommendations
 * ------------------------------------------------------------------------------ */

/* {ok, #{items => [#{id => N, ...}], event => Bin, model => Bin}}: ids, event. */
static int decode_recs(const char *buf, int idx, int64_t *ids, int *nids, char *event,
                       size_t evlen, char *model, size_t mlen)
{
    char reason[64];
    int arity;
    *nids = 0;
    if (proto_decode_reply(buf, &idx, reason, sizeof reason) != PROTO_OK ||
        ei_decode_map_header(buf, &idx, &arity) < 0)
        return -EPROTO;
    for (int i = 0; i < arity; i++) {
        char key[MAXATOMLEN_UTF8];
        int type, size, n;
        long len;
        if (ei_decode_atom(buf, &idx, key) < 0)
            return -EPROTO;
        if ((strcmp(key, "event") == 0 || strcmp(key, "model") == 0) &&
            ei_get_type(buf, &idx, &type, &size) == 0 && type == ERL_BINARY_EXT &&
            size < (int)(key[0] == 'e' ? evlen : mlen)) {
            char *dst = key[0] == 'e' ? event : model;
            if (ei_decode_binary(buf, &idx, dst, &len) < 0)
                return -EPROTO;
            dst[len] = '\0';
        } else if (strcmp(key, "items") == 0) {
            if (ei_decode_list_header(buf, &idx, &n) < 0)
                return -EPROTO;
            for (int k = 0; k < n; k++) {
                int m;
                if (ei_decode_map_header(buf, &idx, &m) < 0)
                    return -EPROTO;
                for (int j = 0; j < m; j++) {
                    char f[MAXATOMLEN_UTF8];
                    long long v;
                    if (ei_decode_atom(buf, &idx, f) < 0)
                        return -EPROTO;
                    if (strcmp(f, "id") == 0 && ei_decode_longlong(buf, &idx, &v) == 0) {
                        if (*nids < RECS_K)
                            ids[(*nids)++] = v;
                    } else if (ei_skip_term(buf, &idx) < 0) {
                        return -EPROTO;
                    }
                }
            }
            if (n > 0 && ei_decode_list_header(buf, &idx, &n) < 0) /* the tail [] */
                return -EPROTO;
        } else if (ei_skip_term(buf, &idx) < 0) {
            return -EPROTO;
        }
    }
    return 0;
}

char *client_recommend(client_t *cl, cn_http_req_t *req, const char *reader, const char *slug,
                       const char **recs_event)
{
    cn_cluster_member_t m;
    *recs_event = NULL;
    const char *env = getenv("ONEBLOG_RECS_NODE");
    if (cn_cluster_members("recs", &m, 1) <= 0 && !(env && *env))
        return NULL;
    ei_x_buff x;
    if (cn_x_new(&x) < 0)
        return NULL;
    ei_x_encode_tuple_header(&x, 2);
    ei_x_encode_atom(&x, "recommend");
    ei_x_encode_map_header(&x, 3);
    ei_x_encode_atom(&x, "reader");
    encode_str(&x, reader);
    ei_x_encode_atom(&x, "post");
    encode_str(&x, slug);
    ei_x_encode_atom(&x, "k");
    ei_x_encode_long(&x, RECS_K);
    cn_msg_t *msg = NULL;
    cn_term_t rep;
    int64_t ids[RECS_K];
    int nids = 0;
    char event[64] = "", model[32] = "";
    int rc = client_service_call(cl, "recs", &x, cl->cfg.recs_timeout_ms, &msg, &rep);
    if (rc == 0)
        rc = decode_recs(rep.buf, rep.index, ids, &nids, event, sizeof event, model, sizeof model);
    cn_msg_free(msg);
    if (rc < 0 || nids == 0) {
        cl->recs_failed += rc < 0;
        return NULL;
    }

    /* The cards: one get_posts call, in the model's order. */
    proto_req_t r = { .kind = PROTO_REQ_GET_POSTS, .name = "get_posts", .nids = nids };
    memcpy(r.ids, ids, (size_t)nids * sizeof(int64_t));
    client_reply_t cr;
    proto_post_t *posts = NULL;
    int n = 0;
    if (client_cms_call(cl, &r, &cr) < 0)
        return NULL;
    tv_arena_t ar = TV_ARENA_INIT; /* the cards as decoded and their context */
    proto_alloc_t pa = client_arena_alloc(&ar);
    int idx = cr.index;
    if (cr.status != PROTO_OK ||
        proto_decode_post_list_in(&pa, cr.buf, &idx, &posts, &n, NULL) < 0) {
        client_reply_free(&cr);
        tv_arena_free(&ar);
        return NULL;
    }
    client_reply_free(&cr);
    tv_t *list = tv_list_in(&ar);
    for (int k = 0; k < nids; k++)
        for (int i = 0; i < n; i++)
            if (posts[i].id == ids[k] && strcmp(posts[i].slug ? posts[i].slug : "", slug) != 0)
                tv_list_add(list, client_view_card(cl, &ar, &posts[i]));
    if (list->u.list.n == 0) {
        tv_arena_free(&ar);
        return NULL;
    }
    tv_t *ctx = tv_map_in(&ar), *related = tv_map_in(&ar);
    tv_map_str(related, "heading", "Recommended for you");
    tv_map_str(related, "model", model);
    tv_map_bool(related, "has_posts", true);
    tv_map_set(related, "posts", list);
    tv_map_set(ctx, "related", related);
    client_theme_t *th = cl->theme;
    client_theme_ref(th);
    buf_t out = BUF_INIT;
    buf_printf(&out, "<!--related-->");
    tpl_render(th->tpl, "related", ctx, &out);
    buf_printf(&out, "<!--/related-->");
    client_theme_unref(th);
    tv_arena_free(&ar);
    char *html = cn_http_strdup(req, out.data);
    buf_free(&out);
    if (event[0])
        *recs_event = cn_http_strdup(req, event);
    cl->recs_served++;
    return html;
}
