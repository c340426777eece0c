/* recs.c - bench-recs: a full recommendation request through the `recs` gen_server
 * (model over 1,000 posts + the recs.request event made durable by the `events`
 * server before the reply), as `make bench-events` runs it:
 *
 *   bench-recs URL          e.g. file:/tmp/x?fsync=2ms (the events bench's policy)
 *
 * The index is synthetic (1,000 posts of 150 words from a 400-word vocabulary,
 * titles and tags); the log holds 5,000 page.view events of 200 readers (so the
 * history cache and the view counts are warm, read back by the server's
 * follower at start). Requests: reader i % 200, a context post, k = 10, A/B share
 * 0.5 (both models). Two loads, BENCH_RECS_REQUESTS (2000) requests each:
 *
 *   paced   one caller, a request every 5 ms (200/s, below the 500 syncs/s that
 *           fsync=2ms allows): the latency of a request on a node that is not
 *           saturated -> recs_request_p50_us, recs_request_p99_us
 *   closed  one caller, back to back -> recs_request_closed_p50_us/p99_us
 *
 * The fsync policy is the URL's (recs_fsync_policy). With fsync=Nms the window
 * only applies under load: a lone caller's event is committed at once, so in
 * both loads every reply waits for one pwrite + fdatasync of its own event.
 * What that costs on this disk is measured beside it: halfway between two paced
 * requests, one raw pwrite of an event-sized record (1,700 bytes) + fdatasync
 * into zeros written beforehand, to a file beside the log (recs_disk_sync_p50_us,
 * the floor under recs_request_p50_us; recs_request_over_disk_p50_us is the
 * difference of the two p50s: what the model, the event and the calls add).
 * The file log appends through O_DIRECT when it can (recs_log_appends says which
 * way it writes), so the same record is also written that way, a millisecond
 * later: the 4 KiB blocks that hold it from an aligned buffer through an O_DIRECT
 * descriptor, then fdatasync (recs_disk_direct_sync_p50_us; with a log that
 * appends directly, recs_request_over_direct_p50_us is the difference).
 * Where the log syncs those appends by a device cache flush (ext4: its note in
 * recs_log_appends says so), the direct record is written once more and synced
 * by the fdatasync of a clean file whose inode is apart from the record's
 * (recs_disk_direct_flush_p50_us), and recs_request_over_direct_p50_us is taken
 * over that floor instead.
 *
 * recs_paced_inline_appends says how many of the paced appends ran on the
 * scheduler's thread (the events server's `stats`): the rest went to the pool,
 * which happens when appends are slow (a disk busy with other jobs) and adds
 * two thread wake-ups to those requests.
 *
 * plus recs_model_p50_us (decode to ranked, the event's latency_us).
 *
 * With an URL whose policy is fsync=none (nothing durable), only the paced load
 * runs and its lines are recs_nosync_request_p50_us/p99_us: the same request
 * without the disk, i.e. what the code costs, steady when the disk is not
 * (make bench-events prints both), and recs_nosync_model_p50_us: the model's
 * part of those paced requests alone (recs_model_p50_us mixes in the closed
 * load's, whose caches are warm). Figures only.
 *
 *   bench-recs --model      the models alone (no server, no event), for profiling:
 *                           recs_model_only_v1_p50_us ...; BENCH_RECS_COLD=1 walks
 *                           16 MiB between calls (caches cold, as on a paced node);
 *                           BENCH_RECS_ROW_CACHE=BYTES sets the row cache (0: none)
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"
#include "common/buf.h"
#include "events/events_server.h"
#include "events/store_file.h"
#include "recs/model.h"
#include "recs/recs_proto.h"
#include "recs/server.h"

#define NPOSTS 1000
#define NREADERS 200

static const char *url;
static int nreq;
static uint32_t *lat_paced, *lat_closed, *lat_disk, *lat_direct, *lat_flush;
static int disk_fd = -1, direct_fd = -1, flush_fd = -1;
static uint8_t *direct_buf; /* aligned, DIRECT_BLK bytes * 2 */
static char log_io[160];    /* the events server's io_note */
static long long paced_inline = -1; /* paced appends run on the scheduler's thread */
static bool nosync; /* fsync=none: the paced load only */
static int failed;

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

static uint64_t rng = 88172645463325252ULL;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)rng;
}

static char *word(buf_t *b, uint32_t r)
{
    /* 400 pseudo-words: syllable pairs, so the vocabulary looks like text. */
    static const char *syl[] = { "ka", "lo", "mi", "ne", "ru", "sa", "te", "vo", "zi", "pa",
                                 "do", "fe", "gu", "hi", "ja", "ko", "lu", "ma", "no", "pe" };
    buf_printf(b, "%s%s%s ", syl[r % 20], syl[(r / 20) % 20], r % 3 ? "" : "n");
    return b->data;
}

static recs_index_t *synthetic(void)
{
    recs_post_t *v = xcalloc(NPOSTS, sizeof *v);
    for (int i = 0; i < NPOSTS; i++) {
        buf_t body = BUF_INIT, title = BUF_INIT;
        char slug[32];
        uint32_t topic = next_rand() % 40;
        for (int w = 0; w < 150; w++)
            word(&body, next_rand() % 3 ? topic * 10 + next_rand() % 10 : next_rand() % 400);
        for (int w = 0; w < 5; w++)
            word(&title, topic * 10 + next_rand() % 10);
        snprintf(slug, sizeof slug, "post-%04d", i);
        v[i].id = i + 1;
        v[i].slug = xstrdup(slug);
        v[i].title = buf_take(&title);
        v[i].plaintext = buf_take(&body);
        v[i].tags = xmalloc(sizeof(char *));
        buf_t tag = BUF_INIT;
        word(&tag, topic * 10);
        v[i].tags[0] = buf_take(&tag);
        v[i].ntags = 1;
        v[i].published_at = 1700000000 + (int64_t)i * 3600;
    }
    return recs_index_new(v, NPOSTS);
}

static int request(int i, uint32_t *lat)
{
    recs_req_t q = { .k = 10 };
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    snprintf(q.reader, sizeof q.reader, "reader-%d", i % NREADERS);
    snprintf(q.post, sizeof q.post, "post-%04u", next_rand() % NPOSTS);
    cn_x_new(&x);
    recs_req_encode(&x, &q);
    uint64_t t0 = now_us();
    int rc = cn_gen_call(cn_dest_name("recs"), &x, 10000, &m, &t);
    *lat = (uint32_t)(now_us() - t0);
    if (rc == 0) {
        recs_reply_t r;
        char reason[64];
        int idx = t.index;
        if (recs_reply_decode(t.buf, &idx, &r, reason, sizeof reason) != PROTO_OK || r.n != 10)
            rc = -1;
        recs_reply_clear(&r);
    }
    cn_msg_free(m);
    return rc;
}

/* The events server's count of appends run on the scheduler's thread (its
 * `stats` call), or -1. */
static long long inline_appends(void)
{
    ei_x_buff x;
    cn_msg_t *m;
    cn_term_t t;
    long long r = -1;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "stats");
    if (cn_gen_call(cn_dest_name("events"), &x, 10000, &m, &t) != 0)
        return -1;
    int i = t.index, arity, n;
    if (ei_decode_tuple_header(t.buf, &i, &arity) == 0 && arity == 2 &&
        cn_decode_atom_is(t.buf, &i, "ok") && ei_decode_map_header(t.buf, &i, &n) == 0) {
        for (int k = 0; k < n; k++) {
            bool want = cn_decode_atom_is(t.buf, &i, "inline");
            unsigned long long v;
            if (!want && ei_skip_term(t.buf, &i) < 0)
                break;
            if (ei_decode_ulonglong(t.buf, &i, &v) < 0)
                break;
            if (want)
                r = (long long)v;
        }
    }
    cn_msg_free(m);
    return r;
}

#define FLOOR_RECORD 1700        /* bytes: about a recs.request record over 1,000 posts */
#define FLOOR_FILE (1 << 20)     /* pre-written zeros */
#define DIRECT_BLK 4096          /* the file log's direct-write block on ext4 */

/* The raw durable write beside the log: DIR.floor (or DIR.floor-direct, then
 * reopened O_DIRECT: -1 where it is refused) for file:DIR; -1 otherwise. */
static int floor_open(bool direct)
{
    static const char zeros[64 * 1024];
    char path[4096];
    if (strncmp(url, "file:", 5) != 0)
        return -1;
    size_t n = strcspn(url + 5, "?");
    if (n + 7 > sizeof path)
        return -1;
    snprintf(path, sizeof path, "%.*s.floor%s", (int)n, url + 5, direct ? "-direct" : "");
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    for (off_t off = 0; off < FLOOR_FILE; off += (off_t)sizeof zeros)
        if (pwrite(fd, zeros, sizeof zeros, off) != (ssize_t)sizeof zeros) {
            close(fd);
            return -1;
        }
    if (fsync(fd) < 0) {
        close(fd);
        return -1;
    }
    if (direct) {
        close(fd);
        fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
        void *p;
        if (fd >= 0 && posix_memalign(&p, DIRECT_BLK, 2 * DIRECT_BLK) == 0) {
            direct_buf = p;
            memset(direct_buf, 0, 2 * DIRECT_BLK);
        } else if (fd >= 0) {
            close(fd);
            fd = -1;
        }
    }
    unlink(path); /* the descriptor keeps it until the end */
    return fd;
}

/* The same record written as the log's direct appends write it: the aligned
 * blocks that hold it (their head rewritten), O_DIRECT, then sync_fd's fdatasync
 * (direct_fd's own, or flush_fd's: the device flush alone); at the i-th record's
 * place moved on by skew records, so the two direct floors of a round write
 * apart; in us. */
static uint32_t floor_direct(int i, int skew, int sync_fd)
{
    off_t off = (off_t)((i + skew) % (FLOOR_FILE / FLOOR_RECORD)) * FLOOR_RECORD;
    off_t at = off & ~(off_t)(DIRECT_BLK - 1);
    size_t head = (size_t)(off - at);
    size_t n = (head + FLOOR_RECORD + DIRECT_BLK - 1) & ~(size_t)(DIRECT_BLK - 1);
    uint64_t t0 = now_us();
    memset(direct_buf + head, 'a' + i % 26, FLOOR_RECORD);
    if (pwrite(direct_fd, direct_buf, n, at) != (ssize_t)n || fdatasync(sync_fd) < 0)
        return 0;
    return (uint32_t)(now_us() - t0);
}

/* A clean, empty file beside the direct floor, its inode in another block of
 * the inode table than the floor's and the log's segment's (ev_store_file_inodes_near;
 * both inodes are dirtied by their writes, and a fsync writes its file's block
 * when dirty): its fdatasync is the device flush alone, as the log syncs its
 * direct appends on ext4. Opened once the log's first segment exists. -1 if none. */
static int floor_flush_open(void)
{
    struct stat st, seg;
    struct statfs sf;
    int cand[64], n = 0, fd = -1;
    char path[4096];
    size_t len = strcspn(url + 5, "?");
    if (direct_fd < 0 || fstat(direct_fd, &st) < 0 || fstatfs(direct_fd, &sf) < 0 ||
        len + 40 > sizeof path)
        return -1;
    snprintf(path, sizeof path, "%.*s/%020d.log", (int)len, url + 5, 1);
    if (stat(path, &seg) < 0)
        return -1;
    while (n < 64 && fd < 0) {
        struct stat c;
        snprintf(path, sizeof path, "%.*s.floor-flush.%d", (int)len, url + 5, n);
        int f = open(path, O_RDONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (f < 0)
            break;
        unlink(path); /* held open: the next candidate takes a new inode */
        uint64_t bs = (uint64_t)sf.f_bsize;
        if (fstat(f, &c) == 0 &&
            !ev_store_file_inodes_near((uint64_t)st.st_ino, (uint64_t)c.st_ino, bs) &&
            !ev_store_file_inodes_near((uint64_t)seg.st_ino, (uint64_t)c.st_ino, bs))
            fd = f;
        else
            cand[n++] = f;
    }
    while (n > 0)
        close(cand[--n]);
    return fd;
}

/* One pwrite of FLOOR_RECORD bytes at the i-th record's place + fdatasync, in us. */
static uint32_t floor_sync(int i)
{
    static char rec[FLOOR_RECORD];
    memset(rec, 'a' + i % 26, sizeof rec);
    off_t off = (off_t)(i % (FLOOR_FILE / FLOOR_RECORD)) * FLOOR_RECORD;
    uint64_t t0 = now_us();
    if (pwrite(disk_fd, rec, sizeof rec, off) != (ssize_t)sizeof rec || fdatasync(disk_fd) < 0)
        return 0;
    return (uint32_t)(now_us() - t0);
}

static void main_proc(void *arg)
{
    (void)arg;
    char err[256];
    cn_pid_t pid;
    events_server_opts_t eo = { .url = url, .io_note = log_io, .io_note_len = sizeof log_io };
    if (events_server_start(cn_node_self(), &eo, &pid, err, sizeof err) < 0) {
        fprintf(stderr, "bench-recs: events: %s\n", err);
        failed = 1;
        return;
    }
    flush_fd = nosync ? -1 : floor_flush_open();
    /* History: 25 reads per reader, skewed towards low post numbers. */
    for (int i = 0; i < NREADERS * 25; i++) {
        ev_event_t *ev;
        char reader[32], slug[32];
        uint64_t seq;
        snprintf(reader, sizeof reader, "reader-%d", i % NREADERS);
        uint32_t r = next_rand() % NPOSTS;
        snprintf(slug, sizeof slug, "post-%04u", r * r / NPOSTS);
        ev_event_new("page.view", &ev);
        ev_event_set_actor(ev, reader);
        BSON_APPEND_UTF8(ev_event_data(ev), "post", slug);
        events_append_event(cn_dest_name("events"), ev, 10000, &seq);
        ev_event_free(ev);
    }
    recs_server_opts_t ro = { .index = synthetic(), .events_url = url, .snapshot_dir = "",
                              .v2_share = 0.5 };
    if (recs_server_start(&ro, &pid, err, sizeof err) < 0) {
        fprintf(stderr, "bench-recs: recs: %s\n", err);
        failed = 1;
        goto out;
    }
    for (int i = 0; i < 50; i++) /* warm-up */
        request(i, &lat_paced[0]);
    long long inl0 = inline_appends();
    for (int i = 0; i < nreq && !failed; i++) {
        if (request(i, &lat_paced[i]) < 0)
            failed = 1;
        /* The floor runs on this (the scheduler's) thread: nothing else is
         * going on halfway between two requests. */
        cn_sleep(2);
        if (disk_fd >= 0)
            lat_disk[i] = floor_sync(i);
        cn_sleep(1);
        if (direct_fd >= 0)
            lat_direct[i] = floor_direct(i, 0, direct_fd);
        cn_sleep(1);
        if (flush_fd >= 0)
            lat_flush[i] = floor_direct(i, 7, flush_fd);
        cn_sleep(1);
    }
    long long inl1 = inline_appends();
    paced_inline = inl0 >= 0 && inl1 >= 0 ? inl1 - inl0 : -1;
    for (int i = 0; i < nreq && !failed && !nosync; i++)
        if (request(i, &lat_closed[i]) < 0)
            failed = 1;
    cn_gen_server_stop(cn_dest_name("recs"), "shutdown", 10000);
out:
    cn_gen_server_stop(cn_dest_name("events"), "shutdown", 10000);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The model's own time: latency_us of the logged recs.request events. */
static uint32_t model_p50(void)
{
    ev_store_t *s;
    char err[EV_ERR_LEN];
    ev_list_t l = EV_LIST_INIT;
    uint32_t *v = NULL, r = 0;
    size_t n = 0;
    if (ev_store_open(url, EV_OPEN_READ, &s, err, sizeof err) < 0)
        return 0;
    ev_query_t q = { .type = "recs.request", .limit = 1000000 };
    if (ev_store_query(s, &q, &l) == 0 && l.n > 0) {
        v = xmalloc(l.n * sizeof *v);
        for (size_t i = 0; i < l.n; i++) {
            ev_slice_t sl = ev_list_get(&l, i);
            bson_t b;
            bson_iter_t it;
            if (bson_init_static(&b, sl.data, sl.len) && bson_iter_init_find(&it, &b, "latency_us"))
                v[n++] = (uint32_t)bson_iter_as_int64(&it);
        }
        qsort(v, n, sizeof *v, cmp_u32);
        r = n ? v[n / 2] : 0;
    }
    free(v);
    ev_list_free(&l);
    ev_store_close(s);
    return r;
}

/* bench-recs --model: the models alone, in this thread, over the same synthetic
 * index and history shape (no server, no event): per-call p50/p99 of recs@1 and
 * recs@2, and a checksum of the answers (the same before and after a change that
 * must not alter them). */
static int model_only(void)
{
    recs_index_t *ix = synthetic();
    recs_model_t *m[3] = { NULL };
    uint32_t *views = xcalloc(NPOSTS, sizeof *views);
    int *hist = xmalloc((size_t)NREADERS * 25 * sizeof *hist);
    int n = nreq * 10;
    uint32_t *lat = xcalloc((size_t)n, sizeof *lat);
    size_t njunk = getenv("BENCH_RECS_COLD") ? (size_t)16 << 20 : 0;
    volatile char *junk = njunk ? xcalloc(1, njunk) : NULL;
    for (int i = 0; i < NREADERS * 25; i++) {
        uint32_t r = next_rand() % NPOSTS;
        hist[i] = (int)(r * r / NPOSTS);
        views[hist[i]]++;
    }
    if (getenv("BENCH_RECS_ROW_CACHE"))
        recs_model_set_row_cache((size_t)atoll(getenv("BENCH_RECS_ROW_CACHE")));
    uint64_t b0 = now_us();
    for (int v = 1; v <= 2; v++)
        if (recs_model_new(v, ix, NULL, &m[v]) < 0)
            return 1;
    printf("recs_model_build_ms: %.1f\n", (double)(now_us() - b0) / 1000.0);
    for (int v = 1; v <= 2; v++) {
        uint64_t sum = 1469598103934665603ULL; /* FNV-1a over positions and scores */
        for (int i = 0; i < n; i++) {
            int rd = i % NREADERS;
            recs_input_t in = { &hist[rd * 25], 25, (int)(next_rand() % NPOSTS), 10,
                                1700000000000 + 1000LL * 3600 * NPOSTS, views };
            recs_item_t items[RECS_K_MAX];
            struct timespec a, b;
            for (size_t o = 0; o < njunk; o += 64)
                junk[o]++;
            clock_gettime(CLOCK_MONOTONIC, &a);
            int got = recs_model_recommend(m[v], &in, items);
            clock_gettime(CLOCK_MONOTONIC, &b);
            lat[i] = (uint32_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
            for (int k = 0; k < got; k++) {
                uint64_t bits;
                memcpy(&bits, &items[k].score, sizeof bits);
                sum = (sum ^ (uint64_t)items[k].pos ^ bits) * 1099511628211ULL;
            }
        }
        qsort(lat, (size_t)n, sizeof *lat, cmp_u32);
        printf("recs_model_only_v%d_p50_us: %.1f\nrecs_model_only_v%d_p99_us: %.1f\n", v,
               lat[n / 2] / 1000.0, v, lat[(size_t)((double)n * 0.99)] / 1000.0);
        printf("recs_model_only_v%d_checksum: %llu\n", v, (unsigned long long)sum);
    }
    for (int v = 1; v <= 2; v++)
        recs_model_free(m[v]);
    recs_index_free(ix);
    free(views);
    free(hist);
    free(lat);
    free((void *)junk);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--model") == 0) {
        nreq = getenv("BENCH_RECS_REQUESTS") ? atoi(getenv("BENCH_RECS_REQUESTS")) : 2000;
        return model_only();
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s EVENTS_URL\n", argv[0]);
        return 2;
    }
    url = argv[1];
    nreq = getenv("BENCH_RECS_REQUESTS") ? atoi(getenv("BENCH_RECS_REQUESTS")) : 2000;
    lat_paced = xcalloc((size_t)nreq + 1, sizeof *lat_paced);
    lat_closed = xcalloc((size_t)nreq + 1, sizeof *lat_closed);
    lat_disk = xcalloc((size_t)nreq + 1, sizeof *lat_disk);
    lat_direct = xcalloc((size_t)nreq + 1, sizeof *lat_direct);
    lat_flush = xcalloc((size_t)nreq + 1, sizeof *lat_flush);
    nosync = strstr(url, "fsync=none") != NULL;
    disk_fd = nosync ? -1 : floor_open(false);
    direct_fd = nosync ? -1 : floor_open(true);
    cn_node_t *node;
    cn_node_opts_t no = { .name = "bench_recs@127.0.0.1" };
    if (cn_node_new(&no, &node) < 0)
        return 1;
    cn_spawn(node, main_proc, NULL, &(cn_spawn_opts_t){ .flags = CN_SPAWN_OWN_STACK }, NULL);
    cn_node_run(node);
    cn_node_free(node);
    if (failed)
        return 1;
    qsort(lat_paced, (size_t)nreq, sizeof *lat_paced, cmp_u32);
    qsort(lat_closed, (size_t)nreq, sizeof *lat_closed, cmp_u32);
    qsort(lat_disk, (size_t)nreq, sizeof *lat_disk, cmp_u32);
    qsort(lat_direct, (size_t)nreq, sizeof *lat_direct, cmp_u32);
    qsort(lat_flush, (size_t)nreq, sizeof *lat_flush, cmp_u32);
    const char *pol = strstr(url, "fsync=");
    if (nosync) {
        printf("recs_nosync_request_p50_us: %u\n", lat_paced[nreq / 2]);
        printf("recs_nosync_request_p99_us: %u\n", lat_paced[(size_t)((double)nreq * 0.99)]);
        printf("recs_nosync_model_p50_us: %u\n", model_p50());
        goto out;
    }
    printf("recs_posts: %d\nrecs_requests: %d\n", NPOSTS, nreq);
    printf("recs_fsync_policy: %.*s (group commit; a lone request is committed at once, "
           "its reply sent after its fdatasync)\n",
           pol ? (int)strcspn(pol, "&") : 12, pol ? pol : "fsync=always");
    printf("recs_log_appends: %s\n", log_io[0] ? log_io : "(no note)");
    if (paced_inline >= 0)
        printf("recs_paced_inline_appends: %lld of %d (the rest on the pool: the disk was "
               "slow)\n", paced_inline, nreq);
    printf("recs_request_p50_us: %u\n", lat_paced[nreq / 2]);
    printf("recs_request_p99_us: %u\n", lat_paced[(size_t)((double)nreq * 0.99)]);
    if (disk_fd >= 0) {
        printf("recs_disk_sync_p50_us: %u\n", lat_disk[nreq / 2]);
        printf("recs_disk_sync_p99_us: %u\n", lat_disk[(size_t)((double)nreq * 0.99)]);
        printf("recs_request_over_disk_p50_us: %d\n",
               (int)lat_paced[nreq / 2] - (int)lat_disk[nreq / 2]);
        close(disk_fd);
    }
    if (direct_fd >= 0) {
        printf("recs_disk_direct_sync_p50_us: %u\n", lat_direct[nreq / 2]);
        printf("recs_disk_direct_sync_p99_us: %u\n",
               lat_direct[(size_t)((double)nreq * 0.99)]);
        bool by_flush = flush_fd >= 0 && strstr(log_io, "device cache flush") != NULL;
        if (flush_fd >= 0) {
            printf("recs_disk_direct_flush_p50_us: %u\n", lat_flush[nreq / 2]);
            printf("recs_disk_direct_flush_p99_us: %u\n",
                   lat_flush[(size_t)((double)nreq * 0.99)]);
            close(flush_fd);
        }
        if (strncmp(log_io, "direct", 6) == 0)
            printf("recs_request_over_direct_p50_us: %d\n",
                   (int)lat_paced[nreq / 2] -
                   (int)(by_flush ? lat_flush : lat_direct)[nreq / 2]);
        close(direct_fd);
    }
    printf("recs_request_closed_p50_us: %u\n", lat_closed[nreq / 2]);
    printf("recs_request_closed_p99_us: %u\n", lat_closed[(size_t)((double)nreq * 0.99)]);
    printf("recs_model_p50_us: %u\n", model_p50());
out:
    free(lat_paced);
    free(lat_closed);
    free(lat_disk);
    free(lat_direct);
    free(lat_flush);
    free(direct_buf);
    return 0;
}
