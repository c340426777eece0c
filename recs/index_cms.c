/* index_cms.c - the content index from the `cms` RPC (index_cms.h). */
#include "recs/index_cms.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "proto/proto.h"

#define PER_PAGE 100

/* Call cms with request r; on {ok, X} returns 0 with *msg and *index at X. */
static int call(cn_dest_t cms, const proto_req_t *r, int64_t timeout_ms, cn_msg_t **msg,
                int *index, char *reason, size_t rlen)
{
    ei_x_buff x;
    cn_term_t t;
    int rc;
    *msg = NULL;
    if (cn_x_new(&x) < 0)
        return -ENOMEM;
    if ((rc = proto_req_encode(&x, r)) < 0) {
        ei_x_free(&x);
        return rc;
    }
    if ((rc = cn_gen_call(cms, &x, timeout_ms, msg, &t)) < 0)
        return rc;
    *index = t.index;
    rc = proto_decode_reply(t.buf, index, reason, (int)rlen);
    if (rc == PROTO_OK)
        return 0;
    return rc == PROTO_ERROR || rc == PROTO_REDIRECT ? -ENOENT : -EPROTO;
}

static int64_t decode_version(const char *buf, int index)
{
    int n;
    char key[MAXATOMLEN_UTF8];
    long long v;
    if (ei_decode_map_header(buf, &index, &n) < 0)
        return -1;
    for (int k = 0; k < n; k++) {
        if (ei_decode_atom(buf, &index, key) < 0)
            return -1;
        if (strcmp(key, "version") == 0 && ei_decode_longlong(buf, &index, &v) == 0)
            return v;
        if (ei_skip_term(buf, &index) < 0)
            return -1;
    }
    return -1;
}

int recs_cms_subscribe(cn_dest_t cms, int64_t timeout_ms)
{
    proto_req_t r = { .kind = PROTO_REQ_SUBSCRIBE };
    cn_msg_t *m;
    char reason[64];
    int i, rc;
    r.pid = cn_self();
    rc = call(cms, &r, timeout_ms, &m, &i, reason, sizeof reason);
    cn_msg_free(m);
    return rc;
}

static void from_proto(recs_post_t *out, proto_post_t *p)
{
    memset(out, 0, sizeof *out);
    out->id = p->id;
    out->slug = p->slug;
    out->title = p->title;
    out->plaintext = p->plaintext;
    out->published_at = p->published_at;
    p->slug = p->title = p->plaintext = NULL; /* moved */
    if (p->ntags > 0) {
        out->tags = xmalloc((size_t)p->ntags * sizeof *out->tags);
        for (int t = 0; t < p->ntags; t++)
            out->tags[out->ntags++] = xstrdup(p->tags[t].name ? p->tags[t].name : "");
    }
}

int recs_index_from_cms(cn_dest_t cms, int64_t timeout_ms, recs_index_t **out,
                        int64_t *version, char *err, size_t errlen)
{
    proto_req_t r;
    cn_msg_t *m = NULL;
    char reason[64] = "";
    int i, rc, pages = 1;
    recs_post_t *posts = NULL;
    int n = 0, cap = 0;

    memset(&r, 0, sizeof r);
    r.kind = PROTO_REQ_CONTENT_VERSION;
    if ((rc = call(cms, &r, timeout_ms, &m, &i, reason, sizeof reason)) < 0) {
        snprintf(err, errlen, "content_version: %s", rc == -ENOENT ? reason : cn_strerror(rc));
        goto fail;
    }
    *version = decode_version(m->buf, i);
    cn_msg_free(m);
    m = NULL;
    for (int page = 1; page <= pages; page++) {
        proto_post_t *v = NULL;
        proto_pagination_t pg = { 0 };
        int nv = 0;
        memset(&r, 0, sizeof r);
        r.kind = PROTO_REQ_LIST_POSTS;
        proto_list_opts_init(&r.opts);
        r.opts.page = page;
        r.opts.per_page = PER_PAGE;
        if ((rc = call(cms, &r, timeout_ms, &m, &i, reason, sizeof reason)) < 0 ||
            (rc = proto_decode_post_list(m->buf, &i, &v, &nv, &pg)) < 0) {
            snprintf(err, errlen, "list_posts page %d: %s", page,
                     rc == -ENOENT ? reason : cn_strerror(rc));
            goto fail;
        }
        cn_msg_free(m);
        m = NULL;
        pages = pg.pages;
        for (int k = 0; k < nv; k++) {
            proto_post_t full = { 0 };
            if (v[k].type != PROTO_POST || v[k].status != PROTO_PUBLISHED || !v[k].slug)
                continue;
            memset(&r, 0, sizeof r);
            r.kind = PROTO_REQ_GET_POST;
            snprintf(r.slug, sizeof r.slug, "%s", v[k].slug);
            rc = call(cms, &r, timeout_ms, &m, &i, reason, sizeof reason);
            if (rc == -ENOENT) { /* unpublished meanwhile: the next rebuild sees it */
                cn_msg_free(m);
                m = NULL;
                continue;
            }
            if (rc < 0 || (rc = proto_decode_post(m->buf, &i, &full)) < 0) {
                snprintf(err, errlen, "get_post %s: %s", v[k].slug, cn_strerror(rc));
                proto_posts_free(v, nv);
                proto_post_clear(&full);
                goto fail;
            }
            cn_msg_free(m);
            m = NULL;
            if (n == cap) {
                cap = cap ? 2 * cap : 128;
                posts = xrealloc(posts, (size_t)cap * sizeof *posts);
            }
            from_proto(&posts[n++], &full);
            proto_post_clear(&full);
        }
        proto_posts_free(v, nv);
    }
    *out = recs_index_new(posts, n);
    return 0;
fail:
    cn_msg_free(m);
    for (int k = 0; k < n; k++)
        recs_post_clear(&posts[k]);
    free(posts);
    return rc < 0 ? rc : -EPROTO;
}
