/* replay.c - `oneblog-events replay` and `ab-report` (replay.h).
 *
 * Replay. The parent (which holds the read-only store handle) collects the logged
 * recs.request events and the page.view events their view counts came from, then
 * forks a child that has none of that: the child
 *   - leaves the network: a new network namespace (no interface is up) as root,
 *     else a user + network namespace; if neither can be made, replay refuses
 *     (there is no seccomp fallback: a model has no business on the network, and
 *     running it without the guarantee would make the report lie);
 *   - gets a private mount namespace with the root remounted read-only (when
 *     allowed), RLIMIT_FSIZE 0 (a write to any file kills it), no_new_privs, and
 *     works in an empty temporary directory;
 *   - closes every inherited descriptor but the result pipe and stderr, so it has
 *     no event store handle at all and cannot append or change the log;
 *   - opens each content snapshot O_RDONLY by the digest the event logged;
 * and writes its rankings to the pipe. The parent compares them with the logged
 * outputs: identical (same slugs in the same order, scores within 1e-9),
 * different, mean overlap@k (|logged ∩ replayed| / max size), mean Kendall tau
 * over the items both lists contain (pairs ranked the same way minus pairs ranked
 * the other way, over all pairs; needs 2 common items), and the full diff of one
 * event (--event ID, else the first that differs).
 *
 * What a logged request gives the model: its history, context post and k; its
 * snapshot (input.candidates_digest, or the digest of the inline candidates); the
 * request time (ts) and the view counts of the page.view events with seq in
 * [data.views_from, data.views_to], recounted from the log. The params are the
 * replayed version's current ones (ONEBLOG_RECS_V<n>_PARAMS or --params): replay
 * answers "what would this model have said", so a parameter change shows as
 * differences.
 */
#include "recs/replay.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/buf.h"
#include "events/args.h"
#include "events/event.h"
#include "recs/history.h"
#include "recs/model.h"
#include "recs/snapshot.h"

#define CHUNK 1000
#define SCORE_EPS 1e-9

static const char *prog = "oneblog-events";

/* ---------------------------------------------------------------------------------
 * Logged requests
 * ------------------------------------------------------------------------------ */

typedef struct out_item {
    char *slug;
    double score;
} out_item_t;

typedef struct logged {
    uint64_t seq;
    char id[EV_ID_LEN + 1];
    char *actor;
    int64_t ts_ms;
    int version;                    /* the model that answered */
    char *history[RECS_HISTORY_MAX];
    int nhistory;
    char *context;                  /* NULL = none */
    char digest[RECS_DIGEST_LEN + 1];
    int k;
    uint64_t views_from, views_to;
    out_item_t out[RECS_K_MAX];
    int nout;
    /* replayed */
    out_item_t rep[RECS_K_MAX];
    int nrep;
    int status;                     /* 0 replayed, -1 no snapshot */
} logged_t;

static void logged_free(logged_t *l)
{
    free(l->actor);
    for (int i = 0; i < l->nhistory; i++)
        free(l->history[i]);
    free(l->context);
    for (int i = 0; i < l->nout; i++)
        free(l->out[i].slug);
    for (int i = 0; i < l->nrep; i++)
        free(l->rep[i].slug);
}

static char *iter_str(const bson_iter_t *it)
{
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    return xstrndup(s ? s : "", s ? len : 0);
}

static int64_t iter_int(const bson_iter_t *it)
{
    if (BSON_ITER_HOLDS_INT64(it))
        return bson_iter_int64(it);
    if (BSON_ITER_HOLDS_INT32(it))
        return bson_iter_int32(it);
    if (BSON_ITER_HOLDS_DOUBLE(it))
        return (int64_t)bson_iter_double(it);
    if (BSON_ITER_HOLDS_UTF8(it))
        return strtoll(bson_iter_utf8(it, NULL), NULL, 10);
    return 0;
}

/* Parse a recs.request record. Returns 0 or -EBADMSG. */
static int parse_logged(const ev_slice_t *sl, logged_t *l)
{
    ev_record_t r;
    bson_t b;
    bson_iter_t it, sub, e;
    memset(l, 0, sizeof *l);
    if (ev_record_parse(sl->data, sl->len, &r) < 0 || !bson_init_static(&b, sl->data, sl->len))
        return -EBADMSG;
    l->seq = r.seq;
    snprintf(l->id, sizeof l->id, "%s", r.id);
    l->actor = xstrdup(r.actor ? r.actor : "");
    l->ts_ms = r.ts_ms;
    l->k = 0; /* data.k below; else the output size */
    if (bson_iter_init(&it, &b) && bson_iter_find_descendant(&it, "model.version", &sub))
        l->version = (int)iter_int(&sub);
    if (bson_iter_init(&it, &b) && bson_iter_find_descendant(&it, "input.history", &sub) &&
        BSON_ITER_HOLDS_ARRAY(&sub) && bson_iter_recurse(&sub, &e))
        while (bson_iter_next(&e) && l->nhistory < RECS_HISTORY_MAX)
            if (BSON_ITER_HOLDS_UTF8(&e))
                l->history[l->nhistory++] = iter_str(&e);
    if (bson_iter_init(&it, &b) && bson_iter_find_descendant(&it, "input.context_post", &sub) &&
        BSON_ITER_HOLDS_UTF8(&sub))
        l->context = iter_str(&sub);
    if (bson_iter_init(&it, &b) &&
        bson_iter_find_descendant(&it, "input.candidates_digest", &sub) &&
        BSON_ITER_HOLDS_UTF8(&sub)) {
        snprintf(l->digest, sizeof l->digest, "%s", bson_iter_utf8(&sub, NULL));
    } else if (bson_iter_init(&it, &b) &&
               bson_iter_find_descendant(&it, "input.candidates", &sub) &&
               BSON_ITER_HOLDS_ARRAY(&sub) && bson_iter_recurse(&sub, &e)) {
        /* Small candidate sets are logged inline: their digest names the snapshot. */
        const char **v = NULL;
        size_t n = 0;
        while (bson_iter_next(&e))
            if (BSON_ITER_HOLDS_UTF8(&e)) {
                v = xrealloc(v, (n + 1) * sizeof *v);
                v[n++] = bson_iter_utf8(&e, NULL);
            }
        recs_digest_slugs(v, n, l->digest);
        free(v);
    }
    if (bson_iter_init(&it, &b) && bson_iter_find_descendant(&it, "data.k", &sub))
        l->k = (int)iter_int(&sub);
    if (bson_iter_init(&it, &b) && bson_iter_find_descendant(&it, "data.views_from", &sub))
        l->views_from = (uint64_t)iter_int(&sub);
    if (bson_iter_init(&it, &b) && bson_iter_find_descendant(&it, "data.views_to", &sub))
        l->views_to = (uint64_t)iter_int(&sub);
    if (bson_iter_init_find(&it, &b, "output") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &e))
        while (bson_iter_next(&e) && l->nout < RECS_K_MAX) {
            bson_iter_t f;
            out_item_t *o = &l->out[l->nout];
            if (!BSON_ITER_HOLDS_DOCUMENT(&e) || !bson_iter_recurse(&e, &f))
                continue;
            o->slug = NULL;
            o->score = 0;
            while (bson_iter_next(&f)) {
                if (strcmp(bson_iter_key(&f), "post") == 0 && BSON_ITER_HOLDS_UTF8(&f) && !o->slug)
                    o->slug = iter_str(&f);
                else if (strcmp(bson_iter_key(&f), "score") == 0 && BSON_ITER_HOLDS_DOUBLE(&f))
                    o->score = bson_iter_double(&f);
            }
            if (o->slug)
                l->nout++;
        }
    if (l->k < 1 || l->k > RECS_K_MAX)
        l->k = l->nout > 0 ? l->nout : 1;
    return 0;
}

/* ---------------------------------------------------------------------------------
 * The child: sandbox, then rank
 * ------------------------------------------------------------------------------ */

typedef struct view {
    uint64_t seq;
    char *slug;
} view_t;

static int sandbox(const char *tmpdir, buf_t *what)
{
    if (unshare(CLONE_NEWNET) == 0) {
        buf_puts(what, "network namespace (no interface up)");
    } else if (unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) {
        buf_puts(what, "user+network namespace (no interface up)");
    } else {
        fprintf(stderr, "%s: replay: cannot leave the network (unshare: %s); refusing to "
                "run models with network access\n", prog, strerror(errno));
        return -EPERM;
    }
    if (unshare(CLONE_NEWNS) == 0 && mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0 &&
        mount("/", "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) == 0)
        buf_puts(what, ", read-only root");
    if (chdir(tmpdir) < 0)
        return -errno;
    struct rlimit rl = { 0, 0 };
    if (setrlimit(RLIMIT_FSIZE, &rl) == 0)
        buf_puts(what, ", no file writes (RLIMIT_FSIZE 0)");
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    buf_puts(what, ", no event store handle");
    return 0;
}

static void put(buf_t *b, const void *p, size_t n)
{
    buf_append(b, p, n);
}

typedef struct snapcache {
    char digest[RECS_DIGEST_LEN + 1];
    recs_index_t *ix;
    recs_model_t *m;
} snapcache_t;

/* Rank every request; results into out (the pipe's bytes). */
static void child_run(logged_t *reqs, size_t n, const view_t *views, size_t nviews, int version,
                      const double *params, const char *snapdir, buf_t *out)
{
    snapcache_t cache[8];
    int ncache = 0;
    recs_history_t *h = NULL;
    uint64_t cf = 0, ct = 0;
    size_t vi = 0;
    memset(cache, 0, sizeof cache);
    for (size_t r = 0; r < n; r++) {
        logged_t *l = &reqs[r];
        snapcache_t *c = NULL;
        for (int i = 0; i < ncache; i++)
            if (strcmp(cache[i].digest, l->digest) == 0)
                c = &cache[i];
        if (c == NULL) {
            char path[PATH_MAX + 80], err[512];
            recs_index_t *ix;
            recs_snapshot_path(snapdir, l->digest, path, sizeof path);
            if (recs_snapshot_read(path, &ix, err, sizeof err) < 0) {
                int32_t st = -1;
                uint32_t idx = (uint32_t)r, cnt = 0;
                fprintf(stderr, "%s: replay: event %s: %s\n", prog, l->id, err);
                put(out, &idx, 4), put(out, &st, 4), put(out, &cnt, 4);
                continue;
            }
            if (ncache == 8) {
                recs_model_free(cache[0].m);
                recs_index_free(cache[0].ix);
                memmove(&cache[0], &cache[1], 7 * sizeof cache[0]);
                ncache = 7;
            }
            c = &cache[ncache++];
            snprintf(c->digest, sizeof c->digest, "%s", l->digest);
            c->ix = ix;
            recs_model_new(version, ix, params, &c->m);
        }
        /* View counts of [views_from, views_to]: extended when the window only
         * grows (one server's lifetime), recounted otherwise. */
        if (h == NULL || l->views_from != cf || l->views_to < ct) {
            recs_history_free(h);
            h = recs_history_new(1);
            cf = l->views_from;
            ct = cf ? cf - 1 : 0;
            vi = 0;
            while (vi < nviews && views[vi].seq < cf)
                vi++;
        }
        while (vi < nviews && views[vi].seq <= l->views_to) {
            recs_history_view(h, NULL, views[vi].slug);
            vi++;
        }
        ct = l->views_to;
        uint32_t *vc = xcalloc((size_t)(c->ix->n ? c->ix->n : 1), sizeof *vc);
        recs_history_fill_views(h, c->ix, vc);
        int hpos[RECS_HISTORY_MAX];
        for (int i = 0; i < l->nhistory; i++)
            hpos[i] = recs_index_find(c->ix, l->history[i]);
        recs_input_t in = { hpos, l->nhistory, l->context ? recs_index_find(c->ix, l->context) : -1,
                            l->k, l->ts_ms, vc };
        recs_item_t items[RECS_K_MAX];
        int k = recs_model_recommend(c->m, &in, items);
        free(vc);
        uint32_t idx = (uint32_t)r, cnt = (uint32_t)k;
        int32_t st = 0;
        put(out, &idx, 4), put(out, &st, 4), put(out, &cnt, 4);
        for (int i = 0; i < k; i++) {
            const char *slug = c->ix->posts[items[i].pos].slug;
            uint32_t len = (uint32_t)strlen(slug);
            put(out, &len, 4);
            put(out, slug, len);
            put(out, &items[i].score, sizeof(double));
        }
    }
    for (int i = 0; i < ncache; i++) {
        recs_model_free(cache[i].m);
        recs_index_free(cache[i].ix);
    }
    recs_history_free(h);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Fork the sandboxed child; read its results into reqs[].rep. */
static int run_child(logged_t *reqs, size_t n, const view_t *views, size_t nviews, int version,
                     const double *params, const char *snapdir, buf_t *sandbox_text)
{
    char tmpdir[] = "/tmp/recs-replay.XXXXXX";
    int fd[2], st, rc = 0;
    int sfd[2];
    if (mkdtemp(tmpdir) == NULL || pipe2(fd, O_CLOEXEC) < 0 || pipe2(sfd, O_CLOEXEC) < 0)
        return -errno;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        buf_t what = BUF_INIT, out = BUF_INIT;
        /* fd 3: results, fd 4: the sandbox description; nothing else stays open
         * but stderr (the store's files and sockets among them). */
        if (dup2(fd[1], 3) < 0 || dup2(sfd[1], 4) < 0)
            _exit(3);
        syscall(SYS_close_range, 5, ~0U, 0);
        close(0);
        close(1);
        if (sandbox(tmpdir, &what) < 0)
            _exit(4);
        write_all(4, what.data, what.len);
        close(4);
        child_run(reqs, n, views, nviews, version, params, snapdir, &out);
        _exit(write_all(3, out.data, out.len) < 0 ? 5 : 0);
    }
    close(fd[1]);
    close(sfd[1]);
    buf_t in = BUF_INIT;
    char tmp[65536];
    ssize_t r;
    while ((r = read(sfd[0], tmp, sizeof tmp)) > 0)
        buf_append(sandbox_text, tmp, (size_t)r);
    while ((r = read(fd[0], tmp, sizeof tmp)) > 0 || (r < 0 && errno == EINTR))
        if (r > 0)
            buf_append(&in, tmp, (size_t)r);
    close(fd[0]);
    close(sfd[0]);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    rmdir(tmpdir);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s: replay: the sandboxed child failed (%s %d)\n", prog,
                WIFEXITED(st) ? "exit status" : "signal",
                WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
        rc = -ECHILD;
    }
    /* Parse: idx, status, count, then count x (len, slug, score). */
    size_t off = 0;
    while (rc == 0 && off + 12 <= in.len) {
        uint32_t idx, cnt;
        int32_t s;
        memcpy(&idx, in.data + off, 4);
        memcpy(&s, in.data + off + 4, 4);
        memcpy(&cnt, in.data + off + 8, 4);
        off += 12;
        if (idx >= n || cnt > RECS_K_MAX) {
            rc = -EPROTO;
            break;
        }
        reqs[idx].status = s;
        for (uint32_t i = 0; i < cnt; i++) {
            uint32_t len;
            if (off + 4 > in.len)
                break;
            memcpy(&len, in.data + off, 4);
            if (off + 4 + len + 8 > in.len)
                break;
            reqs[idx].rep[i].slug = xstrndup(in.data + off + 4, len);
            memcpy(&reqs[idx].rep[i].score, in.data + off + 4 + len, 8);
            reqs[idx].nrep++;
            off += 4 + len + 8;
        }
    }
    buf_free(&in);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Comparison and the report
 * ------------------------------------------------------------------------------ */

static int rank_of(const out_item_t *v, int n, const char *slug)
{
    for (int i = 0; i < n; i++)
        if (strcmp(v[i].slug, slug) == 0)
            return i;
    return -1;
}

static bool identical(const logged_t *l)
{
    if (l->nout != l->nrep)
        return false;
    for (int i = 0; i < l->nout; i++)
        if (strcmp(l->out[i].slug, l->rep[i].slug) != 0 ||
            fabs(l->out[i].score - l->rep[i].score) > SCORE_EPS)
            return false;
    return true;
}

static double overlap(const logged_t *l)
{
    int common = 0, m = l->nout > l->nrep ? l->nout : l->nrep;
    if (m == 0)
        return 1.0;
    for (int i = 0; i < l->nout; i++)
        common += rank_of(l->rep, l->nrep, l->out[i].slug) >= 0;
    return (double)common / m;
}

/* Kendall tau over the common items; false if fewer than 2. */
static bool kendall(const logged_t *l, double *tau)
{
    int r1[RECS_K_MAX], r2[RECS_K_MAX], c = 0;
    for (int i = 0; i < l->nout; i++) {
        int j = rank_of(l->rep, l->nrep, l->out[i].slug);
        if (j >= 0) {
            r1[c] = i;
            r2[c] = j;
            c++;
        }
    }
    if (c < 2)
        return false;
    long conc = 0, disc = 0;
    for (int i = 0; i < c; i++)
        for (int j = i + 1; j < c; j++) {
            if ((r1[i] < r1[j]) == (r2[i] < r2[j]))
                conc++;
            else
                disc++;
        }
    *tau = (double)(conc - disc) / (double)(conc + disc);
    return true;
}

static void print_diff(const logged_t *l, int version)
{
    int n = l->nout > l->nrep ? l->nout : l->nrep;
    printf("diff for event %s (seq %" PRIu64 ", reader %s, context %s, history %d, snapshot "
           "%.12s): logged recs@%d -> replayed recs@%d\n",
           l->id, l->seq, l->actor, l->context ? l->context : "-", l->nhistory, l->digest,
           l->version, version);
    printf("  %-4s  %-44s %10s   %-44s %10s\n", "rank", "logged", "score", "replayed", "score");
    for (int i = 0; i < n; i++) {
        const out_item_t *a = i < l->nout ? &l->out[i] : NULL;
        const out_item_t *b = i < l->nrep ? &l->rep[i] : NULL;
        bool same = a && b && strcmp(a->slug, b->slug) == 0 && fabs(a->score - b->score) <= SCORE_EPS;
        printf("  %-4d  %-44s %10.6f   %-44s %10.6f %s\n", i + 1, a ? a->slug : "-",
               a ? a->score : 0.0, b ? b->slug : "-", b ? b->score : 0.0, same ? "" : "*");
    }
}


static int usage(const char *msg)
{
    fprintf(stderr, "%s: %s (see %s help)\n", prog, msg, prog);
    return 2;
}

int recs_cli_replay(ev_store_t *s, int argc, char **argv)
{
    static const struct option opts[] = {
        { "model", required_argument, NULL, 'm' },  { "since", required_argument, NULL, 's' },
        { "sample", required_argument, NULL, 'n' }, { "event", required_argument, NULL, 'e' },
        { "snapshots", required_argument, NULL, 'd' },
        { "params", required_argument, NULL, 'p' }, { NULL, 0, NULL, 0 }
    };
    const char *event = NULL, *snapdir = getenv("ONEBLOG_RECS_SNAPSHOTS"), *ptext = NULL;
    uint64_t since_seq = 1, sample = 0;
    int64_t since_ms = 0;
    int version = -1, c, rc = 0;
    double params[RECS_MAX_PARAMS];
    char err[256];
    logged_t *reqs = NULL;
    size_t n = 0, cap = 0;
    view_t *views = NULL;
    size_t nviews = 0, capviews = 0;
    ev_list_t l = EV_LIST_INIT;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if ((version = recs_model_parse_label(optarg)) < 0)
                return usage("replay: --model: expected recs@1 or recs@2");
            break;
        case 's':
            if (!ev_parse_u64(optarg, &since_seq) && !ev_parse_time(optarg, &since_ms))
                return usage("replay: --since: expected a seq or YYYY-MM-DD[THH:MM:SSZ]");
            break;
        case 'n':
            if (!ev_parse_u64(optarg, &sample) || sample == 0)
                return usage("replay: --sample: expected a positive number");
            break;
        case 'e': event = optarg; break;
        case 'd': snapdir = optarg; break;
        case 'p': ptext = optarg; break;
        default: return usage("replay: bad option");
        }
    }
    if (version < 0 || optind != argc)
        return usage("replay: --model recs@VERSION is required");
    recs_params_default(version, params);
    char env[64];
    snprintf(env, sizeof env, "ONEBLOG_RECS_V%d_PARAMS", version);
    if (!ptext)
        ptext = getenv(env);
    if (ptext && *ptext && recs_params_parse(version, ptext, params, err, sizeof err) < 0) {
        fprintf(stderr, "%s: replay: params: %s\n", prog, err);
        return 2;
    }
    char snapabs[PATH_MAX];
    if (realpath(snapdir ? snapdir : "./data/recs/snapshots", snapabs) == NULL) {
        fprintf(stderr, "%s: replay: snapshots %s: %s\n", prog,
                snapdir ? snapdir : "./data/recs/snapshots", strerror(errno));
        return 2;
    }

    /* The logged requests. */
    for (uint64_t from = since_seq;;) {
        ev_query_t q = { .from_seq = from, .from_ts_ms = since_ms, .type = "recs.request",
                         .limit = CHUNK };
        ev_list_clear(&l);
        if ((rc = ev_store_query(s, &q, &l)) < 0) {
            fprintf(stderr, "%s: replay: %s\n", prog, ev_store_errmsg(s));
            rc = 2;
            goto out;
        }
        for (size_t i = 0; i < l.n; i++) {
            ev_slice_t sl = ev_list_get(&l, i);
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                reqs = xrealloc(reqs, cap * sizeof *reqs);
            }
            if (parse_logged(&sl, &reqs[n]) == 0) {
                from = reqs[n].seq + 1;
                n++;
            }
        }
        if (l.n < CHUNK)
            break;
    }
    if (event) {
        size_t i;
        for (i = 0; i < n && strcmp(reqs[i].id, event) != 0; i++)
            ;
        if (i == n) {
            fprintf(stderr, "%s: replay: no recs.request event %s\n", prog, event);
            rc = 1;
            goto out;
        }
    }
    /* Sample: N requests evenly spaced over the log (deterministic), plus --event. */
    if (sample && n > sample) {
        size_t keep = 0;
        for (size_t i = 0, next = 0; i < n; i++) {
            bool take = i == next * n / sample && next < sample;
            if (take)
                next++;
            if (take || (event && strcmp(reqs[i].id, event) == 0)) {
                logged_t t = reqs[keep];
                reqs[keep++] = reqs[i];
                reqs[i] = t;
            }
        }
        for (size_t i = keep; i < n; i++)
            logged_free(&reqs[i]);
        n = keep;
    }
    if (n == 0) {
        printf("replay: no recs.request events to replay\n");
        rc = 1;
        goto out;
    }
    /* The page.view events of every request's view window. */
    uint64_t vfrom = UINT64_MAX, vto = 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].views_to >= reqs[i].views_from && reqs[i].views_to > 0) {
            if (reqs[i].views_from < vfrom)
                vfrom = reqs[i].views_from;
            if (reqs[i].views_to > vto)
                vto = reqs[i].views_to;
        }
    }
    for (uint64_t from = vfrom; vto > 0 && from <= vto;) {
        ev_query_t q = { .from_seq = from, .type = "page.view", .limit = CHUNK };
        ev_list_clear(&l);
        if ((rc = ev_store_query(s, &q, &l)) < 0) {
            fprintf(stderr, "%s: replay: %s\n", prog, ev_store_errmsg(s));
            rc = 2;
            goto out;
        }
        for (size_t i = 0; i < l.n; i++) {
            ev_slice_t sl = ev_list_get(&l, i);
            ev_record_t r;
            bson_t b;
            bson_iter_t it;
            if (ev_record_parse(sl.data, sl.len, &r) < 0)
                continue;
            from = r.seq + 1;
            if (r.seq > vto)
                break;
            if (!bson_init_static(&b, sl.data, sl.len) || !bson_iter_init(&it, &b) ||
                !bson_iter_find_descendant(&it, "data.post", &it) || !BSON_ITER_HOLDS_UTF8(&it))
                continue;
            if (nviews == capviews) {
                capviews = capviews ? 2 * capviews : 1024;
                views = xrealloc(views, capviews * sizeof *views);
            }
            views[nviews].seq = r.seq;
            views[nviews].slug = iter_str(&it);
            nviews++;
        }
        if (l.n < CHUNK)
            break;
    }

    buf_t what = BUF_INIT;
    if (run_child(reqs, n, views, nviews, version, params, snapabs, &what) < 0) {
        buf_free(&what);
        rc = 2;
        goto out;
    }
    size_t same = 0, diff = 0, skipped = 0, ntau = 0;
    double sum_overlap = 0, sum_tau = 0;
    const logged_t *shown = NULL;
    for (size_t i = 0; i < n; i++) {
        const logged_t *q = &reqs[i];
        double tau;
        if (q->status < 0) {
            skipped++;
            continue;
        }
        if (identical(q))
            same++;
        else {
            diff++;
            if (!shown && !event)
                shown = q;
        }
        if (event && strcmp(q->id, event) == 0)
            shown = q;
        sum_overlap += overlap(q);
        if (kendall(q, &tau)) {
            sum_tau += tau;
            ntau++;
        }
    }
    size_t done = same + diff;
    printf("replay: recs@%d over %zu logged recs.request events (seq %" PRIu64 "..%" PRIu64
           "), snapshots %s\n", version, n, reqs[0].seq, reqs[n - 1].seq, snapabs);
    printf("sandbox: %s\n", what.data ? what.data : "?");
    buf_free(&what);
    printf("identical: %zu\ndifferent: %zu\nskipped: %zu (snapshot missing)\n", same, diff,
           skipped);
    printf("overlap@k: %.4f (mean over %zu)\n", done ? sum_overlap / (double)done : 0.0, done);
    if (ntau)
        printf("kendall_tau: %.4f (mean over %zu with 2+ common items)\n",
               sum_tau / (double)ntau, ntau);
    else
        printf("kendall_tau: n/a (no request with 2+ common items)\n");
    if (shown)
        print_diff(shown, version);
    rc = 0;
out:
    ev_list_free(&l);
    for (size_t i = 0; i < n; i++)
        logged_free(&reqs[i]);
    free(reqs);
    for (size_t i = 0; i < nviews; i++)
        free(views[i].slug);
    free(views);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * ab-report
 * ------------------------------------------------------------------------------ */

typedef struct shown {
    char id[EV_ID_LEN + 1];
    char *actor;
    int version;
    bool viewed, clicked;
} shown_t;

static int cmp_shown(const void *a, const void *b)
{
    return strcmp(((const shown_t *)a)->id, ((const shown_t *)b)->id);
}

/* The recs.request a page.view or recs.click names (data.recs_event), if it is a
 * request of the same reader; NULL otherwise. */
static shown_t *find_shown(shown_t *v, size_t n, const ev_slice_t *sl, const ev_record_t *r)
{
    bson_t b;
    bson_iter_t it;
    shown_t key;
    if (!bson_init_static(&b, sl->data, sl->len) || !bson_iter_init(&it, &b) ||
        !bson_iter_find_descendant(&it, "data.recs_event", &it) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    snprintf(key.id, sizeof key.id, "%s", bson_iter_utf8(&it, NULL));
    shown_t *hit = bsearch(&key, v, n, sizeof *v, cmp_shown);
    if (hit == NULL || r->actor == NULL || strcmp(hit->actor, r->actor) != 0)
        return NULL;
    return hit;
}

int recs_cli_ab_report(ev_store_t *s, int argc, char **argv)
{
    shown_t *v = NULL;
    size_t n = 0, cap = 0, unmatched = 0;
    ev_list_t l = EV_LIST_INIT;
    int rc = 0;
    (void)argv;
    if (argc != 1)
        return usage("ab-report takes no arguments");
    /* Pass 1: the requests and their variants. */
    for (uint64_t from = 1;;) {
        ev_query_t q = { .from_seq = from, .type = "recs.request", .limit = CHUNK };
        ev_list_clear(&l);
        if ((rc = ev_store_query(s, &q, &l)) < 0)
            goto fail;
        for (size_t i = 0; i < l.n; i++) {
            ev_slice_t sl = ev_list_get(&l, i);
            ev_record_t r;
            bson_t b;
            bson_iter_t it;
            if (ev_record_parse(sl.data, sl.len, &r) < 0)
                continue;
            from = r.seq + 1;
            if (n == cap) {
                cap = cap ? 2 * cap : 1024;
                v = xrealloc(v, cap * sizeof *v);
            }
            memset(&v[n], 0, sizeof v[n]);
            snprintf(v[n].id, sizeof v[n].id, "%s", r.id);
            v[n].actor = xstrdup(r.actor ? r.actor : "");
            if (bson_init_static(&b, sl.data, sl.len) && bson_iter_init(&it, &b) &&
                bson_iter_find_descendant(&it, "model.version", &it))
                v[n].version = (int)iter_int(&it);
            n++;
        }
        if (l.n < CHUNK)
            break;
    }
    qsort(v, n, sizeof *v, cmp_shown);
    /* Pass 2: views (impressions) and clicks that name a request. */
    static const char *const types[] = { "page.view", "recs.click" };
    for (int t = 0; t < 2; t++)
        for (uint64_t from = 1;;) {
            ev_query_t q = { .from_seq = from, .type = types[t], .limit = CHUNK };
            ev_list_clear(&l);
            if ((rc = ev_store_query(s, &q, &l)) < 0)
                goto fail;
            for (size_t i = 0; i < l.n; i++) {
                ev_slice_t sl = ev_list_get(&l, i);
                ev_record_t r;
                if (ev_record_parse(sl.data, sl.len, &r) < 0)
                    continue;
                from = r.seq + 1;
                shown_t *h = find_shown(v, n, &sl, &r);
                if (h == NULL) {
                    /* A click naming no request of its reader is a join failure;
                     * views without recs_event are ordinary page views. */
                    bson_t b;
                    bson_iter_t it;
                    if (bson_init_static(&b, sl.data, sl.len) && bson_iter_init(&it, &b) &&
                        bson_iter_find_descendant(&it, "data.recs_event", &it))
                        unmatched++;
                } else if (t == 0) {
                    h->viewed = true;
                } else {
                    h->clicked = true;
                }
            }
            if (l.n < CHUNK)
                break;
        }
    printf("ab-report: %zu recs.request events; impressions are page views showing a "
           "request's recommendations, clicks recs.click events of the same reader\n", n);
    for (int ver = 1; ver <= RECS_VERSIONS; ver++) {
        size_t req = 0, imp = 0, clk = 0;
        for (size_t i = 0; i < n; i++) {
            if (v[i].version != ver)
                continue;
            req++;
            /* A click implies the recommendations were shown, even if that page
             * view was lost. */
            imp += v[i].viewed || v[i].clicked;
            clk += v[i].clicked;
        }
        if (req == 0)
            continue;
        printf("variant recs@%d: requests %zu, impressions %zu, clicks %zu, ctr %.4f\n", ver,
               req, imp, clk, imp ? (double)clk / (double)imp : 0.0);
    }
    printf("unmatched: %zu (views or clicks naming no request of their reader)\n", unmatched);
    rc = n ? 0 : 1;
    goto out;
fail:
    fprintf(stderr, "%s: ab-report: %s\n", prog, ev_store_errmsg(s));
    rc = 2;
out:
    ev_list_free(&l);
    for (size_t i = 0; i < n; i++)
        free(v[i].actor);
    free(v);
    return rc;
}
