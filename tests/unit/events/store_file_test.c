/* store_file_test.c - events/store_file.c: appends, reads, segments, recovery,
 * damage, full disk, follow. Each test works in its own temporary directory. */
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <zlib.h>

#include "common/buf.h"
#include "events/store.h"
#include "events/store_file.h"

static char dir[64];
static char url[256];

static void setup(const char *opts)
{
    strcpy(dir, "/tmp/ev_store_test.XXXXXX");
    ASSERT_NOT_NULL(mkdtemp(dir));
    snprintf(url, sizeof url, "file:%s%s%s", dir, opts ? "?" : "", opts ? opts : "");
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ASSERT_EQ(system(cmd), 0);
}

static ev_store_t *open_store(int mode)
{
    ev_store_t *s = NULL;
    char err[EV_ERR_LEN];
    int rc = ev_store_open(url, mode, &s, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "open: %s\n", err);
    ASSERT_EQ(rc, 0);
    return s;
}

/* An event with a given type, actor and ts; *len its size; caller frees. */
static uint8_t *mk_event(const char *type, const char *actor, int64_t ts, size_t *len)
{
    ev_event_t *ev;
    bson_t b;
    ASSERT_EQ(ev_event_new(type, &ev), 0);
    if (actor)
        ev_event_set_actor(ev, actor);
    if (ts)
        ev_event_set_ts_ms(ev, ts);
    BSON_APPEND_UTF8(ev_event_data(ev), "post", "hello-world");
    ev_event_encode(ev, &b);
    uint8_t *p = malloc(b.len);
    memcpy(p, bson_get_data(&b), b.len);
    *len = b.len;
    bson_destroy(&b);
    ev_event_free(ev);
    return p;
}

/* Append n events (actor "r<i>" for the i-th overall, ts = base + i) one call per
 * `batch`; returns the last seq. */
static uint64_t append_n(ev_store_t *s, int n, int batch, int64_t ts_base)
{
    static int counter;
    uint64_t first = 0, last = 0;
    for (int i = 0; i < n; i += batch) {
        int k = n - i < batch ? n - i : batch;
        ev_slice_t sl[256];
        for (int j = 0; j < k; j++) {
            char actor[32];
            snprintf(actor, sizeof actor, "r%d", counter);
            sl[j].data = mk_event(counter % 3 ? "page.view" : "recs.click", actor,
                                  ts_base ? ts_base + counter : 0, &sl[j].len);
            counter++;
        }
        int rc = ev_store_append(s, sl, (size_t)k, &first);
        if (rc < 0)
            fprintf(stderr, "append: %s\n", ev_store_errmsg(s));
        ASSERT_EQ(rc, 0);
        if (last)
            ASSERT_EQ(first, last + 1);
        last = first + (uint64_t)k - 1;
        for (int j = 0; j < k; j++)
            free((void *)sl[j].data);
    }
    return last;
}

/* Read everything and check seqs and the chain. Returns the count. */
static uint64_t read_all_checked(ev_store_t *s)
{
    ev_list_t l = EV_LIST_INIT;
    ev_chain_t c;
    ASSERT_EQ(ev_store_read(s, 1, 1000000, &l), 0);
    ev_chain_init(&c);
    for (size_t i = 0; i < l.n; i++) {
        ev_slice_t sl = ev_list_get(&l, i);
        ev_record_t r;
        ASSERT_EQ(ev_record_parse(sl.data, sl.len, &r), 0);
        ASSERT_EQ(r.seq, (uint64_t)i + 1);
        ASSERT_EQ(ev_chain_next(&c, &r), 0);
    }
    uint64_t n = l.n;
    ev_list_free(&l);
    return n;
}

typedef struct reports {
    int n;
    char text[4096];
} reports_t;

static void on_report(void *arg, uint64_t seq, const char *where, const char *what)
{
    reports_t *r = arg;
    size_t used = strlen(r->text);
    snprintf(r->text + used, sizeof r->text - used, "seq %llu at %s: %s\n",
             (unsigned long long)seq, where, what);
    r->n++;
}

/* verify finds the log whole: `records` records, no report; its stats. */
static ev_verify_stats_t verify_clean(ev_store_t *st_, uint64_t records)
{
    reports_t rep = { 0, "" };
    ev_verify_stats_t st;
    ASSERT_EQ(ev_store_verify(st_, on_report, &rep, &st), 0);
    ASSERT_EQ(st.records, records);
    ASSERT_EQ(rep.n, 0);
    return st;
}

static char *seg_file(uint64_t first)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/%020llu.log", dir, (unsigned long long)first);
    return p;
}

static off_t file_size(const char *p)
{
    struct stat st;
    ASSERT_EQ(stat(p, &st), 0);
    return st.st_size;
}

/* Offset of the frame of record `seq` in a segment starting at `first`. */
static off_t frame_offset(const char *path, uint64_t first, uint64_t seq)
{
    int fd = open(path, O_RDONLY);
    off_t off = 32;
    ASSERT(fd >= 0);
    for (uint64_t s = first; s < seq; s++) {
        uint8_t h[4];
        ASSERT_EQ(pread(fd, h, 4, off), 4);
        off += 8 + (h[0] | h[1] << 8 | h[2] << 16 | (off_t)h[3] << 24);
    }
    close(fd);
    return off;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    ASSERT(fd >= 0);
    ASSERT_EQ(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    ASSERT_EQ(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* ---------------------------------------------------------------------------------
 * Appends and reads
 * ------------------------------------------------------------------------------ */

TEST(append_read_reopen)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    uint64_t last;
    ASSERT_EQ(ev_store_last_seq(s, &last), 0);
    ASSERT_EQ(last, 0u);
    ASSERT_EQ(append_n(s, 100, 7, 0), 100u);
    ASSERT_EQ(read_all_checked(s), 100u);

    /* A read from the middle, limited. */
    ev_list_t l = EV_LIST_INIT;
    ASSERT_EQ(ev_store_read(s, 42, 5, &l), 0);
    ASSERT_EQ(l.n, 5u);
    ev_record_t r;
    ASSERT_EQ(ev_record_parse(ev_list_get(&l, 0).data, ev_list_get(&l, 0).len, &r), 0);
    ASSERT_EQ(r.seq, 42u);
    ev_list_free(&l);

    /* A second writer is refused while the first holds the log. */
    ev_store_t *s2 = NULL;
    char err[EV_ERR_LEN];
    ASSERT_EQ(ev_store_open(url, EV_OPEN_WRITE, &s2, err, sizeof err), -EBUSY);
    ASSERT_NOT_NULL(strstr(err, "another writer"));

    /* A reader sees what the writer appends after it opened. */
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(append_n(s, 10, 10, 0), 110u);
    ASSERT_EQ(ev_store_last_seq(rd, &last), 0);
    ASSERT_EQ(last, 110u);
    ASSERT_EQ(read_all_checked(rd), 110u);
    ASSERT_EQ(ev_store_append(rd, NULL, 0, &last), -EPERM);
    ev_store_close(rd);
    ev_store_close(s);

    /* Reopened, the chain continues. */
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 5, 2, 0), 115u);
    ASSERT_EQ(read_all_checked(s), 115u);
    verify_clean(s, 115);
    ev_store_close(s);
    teardown();
}

/* The format: a segment's header and each frame carry zlib's CRC-32 (the log
 * computes it with libdeflate; the values must not change), checked here with
 * zlib over the file as written, frame by frame up to the preallocated zeros. */
TEST(frames_carry_zlibs_crc32)
{
    setup("fsync=none");
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 50, 7, 0), 50u);
    ev_store_close(s);
    char path[160];
    snprintf(path, sizeof path, "%s/%020d.log", dir, 1);
    FILE *f = fopen(path, "rb");
    ASSERT_NOT_NULL(f);
    static uint8_t b[1 << 20];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    ASSERT_GE(n, 32u);
    uint32_t hcrc = b[24] | b[25] << 8 | b[26] << 16 | (uint32_t)b[27] << 24;
    ASSERT_EQ(hcrc, (uint32_t)crc32(0L, b, 24));
    size_t off = 32, frames = 0;
    while (off + 8 <= n) {
        uint32_t len = b[off] | b[off + 1] << 8 | b[off + 2] << 16 | (uint32_t)b[off + 3] << 24;
        uint32_t c = b[off + 4] | b[off + 5] << 8 | b[off + 6] << 16 | (uint32_t)b[off + 7] << 24;
        if (len == 0)
            break; /* zeros past the data (none with fsync=none) */
        ASSERT_LE(off + 8 + len, n);
        ASSERT_EQ(c, (uint32_t)crc32(crc32(0L, b + off, 4), b + off + 8, len));
        off += 8 + len;
        frames++;
    }
    ASSERT_EQ(frames, 50u);
    teardown();
}

TEST(invalid_events_are_refused)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    bson_t b = BSON_INITIALIZER;
    uint64_t first;
    BSON_APPEND_UTF8(&b, "type", "x");
    ev_slice_t sl = { bson_get_data(&b), b.len };
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), -EINVAL);
    bson_destroy(&b);
    ev_store_close(s);
    teardown();
}

TEST(segments_roll_and_index_is_reused)
{
    setup("segment_bytes=4096");
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 600, 5, 1700000000000), 600u);
    ASSERT_EQ(read_all_checked(s), 600u);
    ev_store_close(s);
    /* Many segments, each sealed one with its index. */
    ASSERT(access(seg_file(1), F_OK) == 0);
    char idx[128];
    snprintf(idx, sizeof idx, "%s/%020llu.idx", dir, 1ull);
    ASSERT(access(idx, F_OK) == 0);
    int nseg = 0;
    for (uint64_t q = 1; q <= 600; q++)
        nseg += access(seg_file(q), F_OK) == 0;
    ASSERT_GT(nseg, 10);

    /* Reader and writer agree after reopening (idx for sealed segments). */
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(read_all_checked(rd), 600u);
    /* A damaged idx is ignored (rebuilt by scanning), not trusted. */
    flip_byte(idx, 40);
    ev_store_close(rd);
    rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(read_all_checked(rd), 600u);
    ev_store_close(rd);
    teardown();
}

TEST(query_by_type_actor_time_trace)
{
    setup("segment_bytes=8192");
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    /* Events whose ts are 1000 + i (ms) for i in 0..299, and one traced event. */
    ASSERT_EQ(append_n(s, 300, 10, 1000), 300u);
    ev_event_t *ev;
    bson_t b;
    uint64_t first;
    ASSERT_EQ(ev_event_new("recs.request", &ev), 0);
    ev_event_set_trace(ev, "0123456789abcdef0123456789abcdef", "0123456789abcdef");
    ev_event_encode(ev, &b);
    ev_slice_t sl = { bson_get_data(&b), b.len };
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), 0);
    bson_destroy(&b);
    ev_event_free(ev);

    ev_list_t l = EV_LIST_INIT;
    ev_query_t q = { 0 };
    q.type = "recs.click";
    ASSERT_EQ(ev_store_query(s, &q, &l), 0);
    ASSERT_EQ(l.n, 100u); /* every third of the first 300 (counter starts where
                             this test found it, but 300 consecutive give 100) */
    ev_list_clear(&l);

    ev_query_t qt = { 0 };
    ASSERT_EQ(ev_store_read(s, 1, 1, &l), 0);
    ev_record_t r;
    ASSERT_EQ(ev_record_parse(ev_list_get(&l, 0).data, ev_list_get(&l, 0).len, &r), 0);
    int64_t t0 = r.ts_ms;
    ev_list_clear(&l);
    qt.from_ts_ms = t0 + 100;
    qt.to_ts_ms = t0 + 150;
    ASSERT_EQ(ev_store_query(s, &qt, &l), 0);
    ASSERT_EQ(l.n, 50u);
    ASSERT_EQ(ev_record_parse(ev_list_get(&l, 0).data, ev_list_get(&l, 0).len, &r), 0);
    ASSERT_EQ(r.ts_ms, t0 + 100);
    ASSERT_EQ(r.seq, 101u);
    ev_list_clear(&l);

    ev_query_t qa = { 0 };
    qa.actor = r.actor;
    ASSERT_EQ(ev_store_query(s, &qa, &l), 0);
    ASSERT_EQ(l.n, 1u);
    ev_list_clear(&l);

    ev_query_t qr = { 0 };
    qr.trace_id = "0123456789abcdef0123456789abcdef";
    ASSERT_EQ(ev_store_query(s, &qr, &l), 0);
    ASSERT_EQ(l.n, 1u);
    ev_list_clear(&l);

    ev_query_t ql = { 0 };
    ql.limit = 7;
    ql.from_seq = 290;
    ASSERT_EQ(ev_store_query(s, &ql, &l), 0);
    ASSERT_EQ(l.n, 7u);
    ev_list_free(&l);
    ev_store_close(s);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * Recovery and damage
 * ------------------------------------------------------------------------------ */

TEST(torn_tail_is_truncated_by_the_writer_only)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 20, 4, 0), 20u);
    ev_store_close(s);
    const char *seg = seg_file(1);
    off_t full = file_size(seg);
    off_t last = frame_offset(seg, 1, 20);

    /* Every cut inside the last frame is a torn tail of 19 records. */
    for (off_t cut = last + 1; cut < full; cut += 37) {
        ASSERT_EQ(truncate(seg, cut), 0);
        ev_store_t *rd = open_store(EV_OPEN_READ);
        ASSERT_EQ(read_all_checked(rd), 19u);
        reports_t rep = { 0, "" };
        ev_verify_stats_t st;
        ASSERT_EQ(ev_store_verify(rd, on_report, &rep, &st), 0);
        ASSERT_EQ(st.torn_tail_bytes, (uint64_t)(cut - last));
        ev_store_close(rd);
        ASSERT_EQ(file_size(seg), cut); /* readers never truncate */
    }
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(file_size(seg), last);
    ASSERT_EQ(append_n(s, 3, 3, 0), 22u);
    ASSERT_EQ(read_all_checked(s), 22u);
    ev_store_close(s);

    /* Garbage appended after the last record (zeros, as after a power cut). */
    int fd = open(seg, O_WRONLY | O_APPEND);
    char zeros[300] = { 0 };
    ASSERT_EQ(write(fd, zeros, sizeof zeros), (ssize_t)sizeof zeros);
    close(fd);
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(read_all_checked(s), 22u);
    ev_store_close(s);
    teardown();
}

TEST(corruption_in_the_middle_is_reported_not_truncated)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 50, 10, 0), 50u);
    ev_store_close(s);
    const char *seg = seg_file(1);
    off_t full = file_size(seg);
    flip_byte(seg, frame_offset(seg, 1, 25) + 40);

    /* The writer refuses to open rather than cut 26 good records. */
    ev_store_t *w = NULL;
    char err[EV_ERR_LEN];
    ASSERT_EQ(ev_store_open(url, EV_OPEN_WRITE, &w, err, sizeof err), -EBADMSG);
    ASSERT_NOT_NULL(strstr(err, "corrupt record"));
    ASSERT_EQ(file_size(seg), full);

    /* Readers get the 24 good records, then a clear error. */
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ev_list_t l = EV_LIST_INIT;
    ASSERT_EQ(ev_store_read(rd, 1, 1000, &l), -EBADMSG);
    ASSERT_EQ(l.n, 24u);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(rd), "corrupt record after seq 24"));
    ev_list_free(&l);

    /* Verify names the place, skips it and checks the rest. */
    reports_t rep = { 0, "" };
    ev_verify_stats_t st;
    ASSERT_EQ(ev_store_verify(rd, on_report, &rep, &st), -EBADMSG);
    ASSERT_EQ(rep.n, 1);
    ASSERT_NOT_NULL(strstr(rep.text, "corrupt record"));
    ASSERT_NOT_NULL(strstr(rep.text, "skipped"));
    ASSERT_EQ(st.records, 49u);
    ev_store_close(rd);
    teardown();
}

/* Rewrite the record at frame offset `off` in place with the 'h' of its
 * "hello-world" changed to `to` and a valid CRC: what a deliberate edit looks
 * like. Only the hash chain can tell (and record checks, for a `to` that is not
 * UTF-8). */
static void edit_record_to(const char *path, off_t off, uint8_t to)
{
    int fd = open(path, O_RDWR);
    uint8_t h[8];
    ASSERT_EQ(pread(fd, h, 8, off), 8);
    uint32_t len = h[0] | h[1] << 8 | h[2] << 16 | (uint32_t)h[3] << 24;
    uint8_t *rec = malloc(len);
    ASSERT_EQ(pread(fd, rec, len, off + 8), (ssize_t)len);
    uint8_t *a = memmem(rec, len, "hello-world", 11);
    ASSERT_NOT_NULL(a);
    a[0] = to;
    uLong c = crc32(crc32(0L, h, 4), rec, len);
    h[4] = (uint8_t)c, h[5] = (uint8_t)(c >> 8), h[6] = (uint8_t)(c >> 16), h[7] = (uint8_t)(c >> 24);
    ASSERT_EQ(pwrite(fd, h, 8, off), 8);
    ASSERT_EQ(pwrite(fd, rec, len, off + 8), (ssize_t)len);
    free(rec);
    close(fd);
}

static void edit_record(const char *path, off_t off)
{
    edit_record_to(path, off, 'j');
}

/* A read checks every record it returns in full, and the frames (checksum, seq)
 * of the records it passes over to reach `from` in their index block: those were
 * checked in full when the reader indexed them. */
TEST(a_read_checks_what_it_returns_and_the_frames_it_passes)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 30, 30, 0), 30u);
    ev_store_close(s);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ev_list_t l = EV_LIST_INIT;
    ASSERT_EQ(ev_store_read(rd, 1, 100, &l), 0);
    ASSERT_EQ(l.n, 30u);
    ev_list_free(&l);

    /* Seq 12 turns into bad UTF-8 under a valid checksum after the reader
     * indexed it: reads that pass it still work, a read that returns it fails. */
    edit_record_to(seg_file(1), frame_offset(seg_file(1), 1, 12), 0xff);
    ASSERT_EQ(ev_store_read(rd, 20, 100, &l), 0);
    ASSERT_EQ(l.n, 11u);
    ev_record_t r;
    ASSERT_EQ(ev_record_fields(ev_list_get(&l, 0).data, ev_list_get(&l, 0).len, &r), 0);
    ASSERT_EQ(r.seq, 20u);
    ev_list_free(&l);
    ASSERT_EQ(ev_store_read(rd, 12, 100, &l), -EBADMSG);
    ASSERT_EQ(l.n, 0u);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(rd), "corrupt record (seq 12 expected)"));
    ev_list_free(&l);

    /* A passed frame whose checksum no longer matches stops the read. */
    flip_byte(seg_file(1), frame_offset(seg_file(1), 1, 15) + 40);
    ASSERT_EQ(ev_store_read(rd, 20, 100, &l), -EBADMSG);
    ASSERT_EQ(l.n, 0u);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(rd), "corrupt record (seq 15 expected)"));
    ev_list_free(&l);
    ev_store_close(rd);
    teardown();
}

TEST(verify_detects_an_edited_record)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 30, 30, 0), 30u);
    ev_store_close(s);
    edit_record(seg_file(1), frame_offset(seg_file(1), 1, 12));
    ev_store_t *rd = open_store(EV_OPEN_READ);
    reports_t rep = { 0, "" };
    ev_verify_stats_t st;
    ASSERT_EQ(ev_store_verify(rd, on_report, &rep, &st), -EBADMSG);
    ASSERT_EQ(rep.n, 1);
    ASSERT_NOT_NULL(strstr(rep.text, "seq 13"));
    ASSERT_NOT_NULL(strstr(rep.text, "hash chain broken"));
    ev_store_close(rd);
    teardown();
}

TEST(verify_detects_a_removed_segment)
{
    setup("segment_bytes=4096");
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 200, 5, 0), 200u);
    ev_store_close(s);
    /* Remove the second segment (and its index). */
    uint64_t second = 0;
    for (uint64_t q = 2; q <= 200 && !second; q++)
        if (access(seg_file(q), F_OK) == 0)
            second = q;
    ASSERT_GT(second, 0u);
    ASSERT_EQ(unlink(seg_file(second)), 0);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    reports_t rep = { 0, "" };
    ev_verify_stats_t st;
    ASSERT_EQ(ev_store_verify(rd, on_report, &rep, &st), -EBADMSG);
    ASSERT_NOT_NULL(strstr(rep.text, "records missing"));
    ev_store_close(rd);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * A full disk and failing syncs (injected)
 * ------------------------------------------------------------------------------ */

static int fail_after_bytes = -1;

static ssize_t enospc_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (fail_after_bytes < 0)
        return pwrite(fd, p, n, off);
    if (fail_after_bytes == 0) {
        errno = ENOSPC;
        return -1;
    }
    /* A short write first, as a filling disk does: whole blocks on an O_DIRECT
     * descriptor (the writer's direct appends), as the kernel's are. */
    size_t k = n < (size_t)fail_after_bytes ? n : (size_t)fail_after_bytes;
    if (fcntl(fd, F_GETFL) & O_DIRECT)
        k &= ~(size_t)4095;
    if (k == 0) {
        fail_after_bytes = 0;
        errno = ENOSPC;
        return -1;
    }
    fail_after_bytes -= (int)k;
    return pwrite(fd, p, k, off);
}

static int eio_sync(int fd)
{
    (void)fd;
    errno = EIO;
    return -1;
}

TEST(full_disk_loses_no_acknowledged_event)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 10, 5, 0), 10u);
    off_t before = file_size(seg_file(1));

    ev_store_file_set_io(enospc_pwrite, NULL);
    fail_after_bytes = 100;
    size_t len;
    uint64_t first;
    uint8_t *e = mk_event("page.view", "x", 0, &len);
    ev_slice_t sl[3] = { { e, len }, { e, len }, { e, len } };
    ASSERT_EQ(ev_store_append(s, sl, 3, &first), -ENOSPC);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(s), "No space left"));
    /* The partial batch was cut off (with the preallocated zeros after it). */
    ASSERT(file_size(seg_file(1)) < before);

    /* Space comes back: appends continue the chain. */
    fail_after_bytes = -1;
    ASSERT_EQ(ev_store_append(s, sl, 3, &first), 0);
    ASSERT_EQ(first, 11u);
    ASSERT_EQ(read_all_checked(s), 13u);

    /* A failed fsync: refused until reopened (the page cache may have dropped it). */
    ev_store_file_set_io(NULL, eio_sync);
    ASSERT_EQ(ev_store_append(s, sl, 1, &first), -EIO);
    ev_store_file_set_io(NULL, NULL);
    ASSERT_EQ(ev_store_append(s, sl, 1, &first), -EIO);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(s), "reopen"));
    ev_store_close(s);
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(ev_store_append(s, sl, 1, &first), 0);
    /* The record whose sync "failed" may be there (14) or not; all are intact. */
    ASSERT(first == 14u || first == 15u);
    ASSERT_EQ(read_all_checked(s), first);
    free(e);
    ev_store_close(s);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * Follow
 * ------------------------------------------------------------------------------ */

static void *late_writer(void *arg)
{
    ev_store_t *s = arg;
    usleep(100 * 1000);
    append_n(s, 1, 1, 0);
    return NULL;
}

TEST(reader_waits_for_new_events)
{
    setup("poll_ms=10");
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 3, 3, 0), 3u);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(ev_store_wait(rd, 2, 0), 0);          /* already there */
    ASSERT_EQ(ev_store_wait(rd, 3, 30), -ETIMEDOUT);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, late_writer, s), 0);
    ASSERT_EQ(ev_store_wait(rd, 3, 20000), 0);
    pthread_join(t, NULL);
    ev_list_t l = EV_LIST_INIT;
    ASSERT_EQ(ev_store_read(rd, 4, 10, &l), 0);
    ASSERT_EQ(l.n, 1u);
    ev_list_free(&l);
    ev_store_close(rd);
    ev_store_close(s);
    teardown();
}

/* Preallocation: the active segment carries zeros past its data (written and
 * synced once), which readers, verify, recovery and sealing all see as the end. */
TEST(preallocated_zeros_are_the_end_of_the_data)
{
    setup("preallocate=65536&segment_bytes=200000");
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 10, 5, 0), 10u);
    off_t with_zeros = file_size(seg_file(1));
    ASSERT(with_zeros >= 65536);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(read_all_checked(rd), 10u);
    ASSERT_EQ(append_n(s, 5, 1, 0), 15u);
    ASSERT_EQ(ev_store_wait(rd, 14, 5000), 0);
    ASSERT_EQ(read_all_checked(rd), 15u);
    ev_verify_stats_t st = verify_clean(rd, 15);
    ASSERT_EQ(st.torn_tail_bytes, 0u);

    /* A crash leaves the zeros (simulated: the file is copied aside before the
     * clean close cuts them, then put back): the writer reopens and continues. */
    off_t size_at_crash = file_size(seg_file(1));
    ev_store_close(rd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cp %s %s/crash.copy", seg_file(1), dir);
    ASSERT_EQ(system(cmd), 0);
    ev_store_close(s);
    ASSERT(file_size(seg_file(1)) < size_at_crash); /* close cut the zeros */
    snprintf(cmd, sizeof cmd, "cp %s/crash.copy %s && rm %s/crash.copy", dir, seg_file(1), dir);
    ASSERT_EQ(system(cmd), 0);
    ASSERT_EQ(file_size(seg_file(1)), size_at_crash);
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(read_all_checked(s), 15u);
    /* Enough to roll: sealed segments are exactly their records. */
    ASSERT_EQ(append_n(s, 400, 20, 0), 415u);
    ASSERT_EQ(read_all_checked(s), 415u);
    ev_store_close(s);
    rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(read_all_checked(rd), 415u);
    st = verify_clean(rd, 415);
    ASSERT_EQ(st.torn_tail_bytes, 0u);
    ev_store_close(rd);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * Direct appends (O_DIRECT into the preallocated zeros)
 * ------------------------------------------------------------------------------ */

/* Whether this test's directory takes O_DIRECT writes that bypass the page cache
 * (tmpfs accepts O_DIRECT since Linux 6.6 but keeps every page in memory). */
static bool dir_has_direct_io(void)
{
    char p[128];
    struct statfs sf;
    snprintf(p, sizeof p, "%s/probe", dir);
    int fd = open(p, O_RDWR | O_CREAT | O_DIRECT, 0600);
    if (fd < 0)
        return false;
    close(fd);
    unlink(p);
    return statfs(dir, &sf) == 0 && sf.f_type != TMPFS_MAGIC;
}

/* Whether the page of `path` holding byte `off` is in the page cache. */
static bool page_cached(const char *path, off_t off)
{
    long pg = sysconf(_SC_PAGESIZE);
    int fd = open(path, O_RDONLY);
    ASSERT(fd >= 0);
    off_t at = off & ~(off_t)(pg - 1);
    void *m = mmap(NULL, (size_t)pg, PROT_READ, MAP_SHARED, fd, at);
    ASSERT(m != MAP_FAILED);
    unsigned char v = 0;
    ASSERT_EQ(mincore(m, (size_t)pg, &v), 0);
    munmap(m, (size_t)pg);
    close(fd);
    return v & 1;
}

/* The end of the data of a segment (its last frame's end): scans the frames. */
static off_t data_end(const char *path, uint64_t first, uint64_t last)
{
    off_t off = frame_offset(path, first, last);
    int fd = open(path, O_RDONLY);
    uint8_t h[4];
    ASSERT(fd >= 0);
    ASSERT_EQ(pread(fd, h, 4, off), 4);
    close(fd);
    return off + 8 + (h[0] | h[1] << 8 | h[2] << 16 | (off_t)h[3] << 24);
}

/* Every direct write's head (the bytes before the batch in its first block) must
 * be the acknowledged data the file already holds there: the test sets ack_end
 * (the data's end before the append) and each direct pwrite is compared with the
 * file over [off, ack_end). */
static off_t ack_end;
static int head_mismatches, direct_writes, head_bytes;

static ssize_t checking_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if ((fcntl(fd, F_GETFL) & O_DIRECT) && off < ack_end) {
        size_t len = (size_t)(ack_end - off) < n ? (size_t)(ack_end - off) : n;
        uint8_t *cur = malloc(len);
        int rfd = open(seg_file(1), O_RDONLY); /* the test below keeps one segment */
        ASSERT(rfd >= 0);
        ASSERT_EQ(pread(rfd, cur, len, off), (ssize_t)len);
        close(rfd);
        head_mismatches += memcmp(cur, p, len) != 0;
        head_bytes += (int)len;
        free(cur);
    }
    if (fcntl(fd, F_GETFL) & O_DIRECT)
        direct_writes++;
    return pwrite(fd, p, n, off);
}

TEST(direct_appends_bypass_the_page_cache_and_readers_see_them)
{
    setup("segment_bytes=8000000");
    bool direct_io = dir_has_direct_io();
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    if (!direct_io) {
        fprintf(stderr, "note: %s takes no O_DIRECT (or keeps its pages): %s\n", dir,
                s->io_note);
        ev_store_close(s);
        teardown();
        return;
    }
    ASSERT_EQ(strncmp(s->io_note, "direct", 6), 0);
    ASSERT_EQ(append_n(s, 1, 1, 0), 1u);
    /* Written around the page cache: the kernel dropped the page of the write
     * (the header's, cached since the segment was created). Nothing read it. */
    ASSERT(!page_cached(seg_file(1), 0));

    /* A follower reading after every append sees each record at once (its
     * buffered reads are not served a stale page), across block boundaries. */
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(read_all_checked(rd), 1u);
    ev_store_file_set_io(checking_pwrite, NULL);
    for (uint64_t i = 2; i <= 60; i++) {
        ack_end = data_end(seg_file(1), 1, i - 1);
        ASSERT_EQ(append_n(s, 1, 1, 0), i);
        ev_list_t l = EV_LIST_INIT;
        ASSERT_EQ(ev_store_read(rd, i, 10, &l), 0);
        ASSERT_EQ(l.n, 1u);
        ev_list_free(&l);
    }
    /* Batches larger than the writer's block buffer and than the zeros ahead. */
    for (int b = 0; b < 3; b++) {
        uint64_t last = 60 + 256 * (uint64_t)(b + 1);
        ack_end = data_end(seg_file(1), 1, last - 256);
        ASSERT_EQ(append_n(s, 256, 256, 0), last);
        ASSERT_EQ(ev_store_wait(rd, last - 1, 5000), 0);
    }
    /* The writer reopened mid-block reloads that block's head from the file. */
    ev_store_close(s);
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(strncmp(s->io_note, "direct", 6), 0);
    for (uint64_t i = 829; i <= 840; i++) {
        ack_end = data_end(seg_file(1), 1, i - 1);
        ASSERT_EQ(append_n(s, 1, 1, 0), i);
    }
    ev_store_file_set_io(NULL, NULL);
    ASSERT_GT(direct_writes, 70);
    ASSERT_GT(head_bytes, 0);
    ASSERT_EQ(head_mismatches, 0);
    ASSERT_EQ(ev_store_wait(rd, 839, 5000), 0);
    ASSERT_EQ(read_all_checked(rd), 840u);
    verify_clean(rd, 840);
    ev_store_close(rd);
    ev_store_close(s);
    teardown();
}

/* A power cut in the middle of a direct write: some of its sectors reached the
 * disk, some did not (here: every other one). The head of the block is the
 * acknowledged data written again, so whichever sectors made it, recovery finds
 * every acknowledged record and cuts the torn one off. */
static int tear_next;
static char crash_copy[160];

static ssize_t tearing_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (!tear_next || !(fcntl(fd, F_GETFL) & O_DIRECT))
        return pwrite(fd, p, n, off);
    tear_next = 0;
    /* The even sectors reach the disk, except the one with the new frame's end. */
    const uint8_t *f = (const uint8_t *)p + (ack_end - off);
    size_t end = (size_t)(ack_end - off) + 8 + (f[0] | f[1] << 8 | f[2] << 16 | (size_t)f[3] << 24);
    int bfd = open(seg_file(1), O_WRONLY);
    ASSERT(bfd >= 0);
    for (size_t at = 0; at < n; at += 1024)
        if (!(at <= end - 1 && end - 1 < at + 512))
            ASSERT_EQ(pwrite(bfd, (const uint8_t *)p + at, 512, off + (off_t)at), 512);
    close(bfd);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cp %s %s", seg_file(1), crash_copy);
    ASSERT_EQ(system(cmd), 0);
    errno = EIO;
    return -1;
}

TEST(a_torn_direct_write_loses_no_acknowledged_record)
{
    setup(NULL);
    snprintf(crash_copy, sizeof crash_copy, "%s/crash.copy", dir);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 11, 1, 0), 11u);
    if (strncmp(s->io_note, "direct", 6) != 0) {
        fprintf(stderr, "note: no direct appends here: %s\n", s->io_note);
        ev_store_close(s);
        teardown();
        return;
    }
    /* The data ends inside a block, past its first sector, so the torn write's
     * head spans sectors that did and did not make it. */
    ack_end = data_end(seg_file(1), 1, 11);
    ASSERT_GT(ack_end % 4096, 1024);
    ev_store_file_set_io(tearing_pwrite, NULL);
    tear_next = 1;
    size_t len;
    uint64_t first;
    uint8_t *e = mk_event("page.view", "torn", 0, &len);
    ev_slice_t sl = { e, len };
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), -EIO);
    ev_store_file_set_io(NULL, NULL);
    ev_store_close(s);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "mv %s %s", crash_copy, seg_file(1));
    ASSERT_EQ(system(cmd), 0);

    s = open_store(EV_OPEN_WRITE); /* recovery */
    ASSERT_EQ(read_all_checked(s), 11u);
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), 0);
    ASSERT_EQ(first, 12u);
    ASSERT_EQ(read_all_checked(s), 12u);
    free(e);
    ev_store_close(s);
    teardown();
}

static int refuse_direct(const char *path, int flags)
{
    (void)path;
    (void)flags;
    errno = EINVAL;
    return -1;
}

TEST(appends_are_buffered_where_direct_io_is_refused_or_not_wanted)
{
    /* A file system that refuses O_DIRECT (EINVAL): buffered, through the cache. */
    setup(NULL);
    ev_store_file_set_open_direct(refuse_direct);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ev_store_file_set_open_direct(NULL);
    ASSERT_STR_EQ(s->io_note, "buffered (O_DIRECT refused: Invalid argument)");
    ASSERT_EQ(append_n(s, 1, 1, 0), 1u);
    ASSERT(page_cached(seg_file(1), 0));
    ASSERT_EQ(append_n(s, 299, 10, 0), 300u);
    ASSERT_EQ(read_all_checked(s), 300u);
    ev_store_close(s);
    s = open_store(EV_OPEN_WRITE); /* the next open tries again */
    if (dir_has_direct_io())
        ASSERT_EQ(strncmp(s->io_note, "direct", 6), 0);
    ASSERT_EQ(append_n(s, 5, 1, 0), 305u);
    ASSERT_EQ(read_all_checked(s), 305u);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_STR_EQ(rd->io_note, ""); /* readers do not append */
    ev_store_close(rd);
    ev_store_close(s);
    teardown();

    static const struct { const char *opts, *note; } cases[] = {
        { "fsync=none", "buffered (fsync=none)" },
        { "preallocate=0", "buffered (preallocate=0)" },
        { "direct=off", "buffered (direct=off)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setup(cases[i].opts);
        s = open_store(EV_OPEN_WRITE);
        ASSERT_STR_EQ(s->io_note, cases[i].note);
        ASSERT_EQ(append_n(s, 20, 4, 0), 20u);
        ASSERT_EQ(read_all_checked(s), 20u);
        ev_store_close(s);
        teardown();
    }

    setup("direct=sometimes");
    char err[EV_ERR_LEN];
    ASSERT_EQ(ev_store_open(url, EV_OPEN_WRITE, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_EQ(err, "EVENTS_URL: direct must be on or off");
    teardown();
}

/* A reader racing a direct append may read the write's sectors half landed: a
 * torn frame before a whole one, which looks like damage. It is believed only
 * when it stays: here the torn frame is made whole 30 ms after the reader opens. */
typedef struct mend {
    off_t off;
    uint8_t bytes[64];
} mend_t;

static void *mend_later(void *arg)
{
    mend_t *m = arg;
    usleep(30 * 1000);
    int fd = open(seg_file(1), O_WRONLY);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, m->bytes, sizeof m->bytes, m->off), (ssize_t)sizeof m->bytes);
    close(fd);
    return NULL;
}

TEST(a_reader_does_not_take_a_write_in_flight_for_damage)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 12, 1, 0), 12u);
    ev_store_close(s);

    /* Frame 11 half there (its header and CRC, not all of its record), frame 12 whole. */
    static mend_t m;
    m.off = frame_offset(seg_file(1), 1, 11) + 40;
    int fd = open(seg_file(1), O_RDWR);
    ASSERT(fd >= 0);
    ASSERT_EQ(pread(fd, m.bytes, sizeof m.bytes, m.off), (ssize_t)sizeof m.bytes);
    static const uint8_t zeros[sizeof m.bytes];
    ASSERT_EQ(pwrite(fd, zeros, sizeof zeros, m.off), (ssize_t)sizeof zeros);
    close(fd);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, mend_later, &m), 0);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    pthread_join(t, NULL);
    ASSERT_EQ(ev_store_wait(rd, 11, 5000), 0);
    ASSERT_EQ(read_all_checked(rd), 12u);
    ev_store_close(rd);

    /* Damage that stays is reported. */
    ASSERT_EQ(pwrite(fd = open(seg_file(1), O_WRONLY), zeros, sizeof zeros, m.off),
              (ssize_t)sizeof zeros);
    close(fd);
    rd = open_store(EV_OPEN_READ);
    ev_list_t l = EV_LIST_INIT;
    ASSERT_EQ(ev_store_read(rd, 1, 100, &l), -EBADMSG);
    ASSERT_EQ(l.n, 10u);
    ev_list_free(&l);
    ev_store_close(rd);
    teardown();
}

/* A follower's read starts where the last refresh found new records (not at its
 * 128-record block's start): reads from before, at and after that point, in
 * the same block, give exactly the records asked for. */
TEST(follow_reads_start_where_the_new_records_are)
{
    setup(NULL);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(append_n(s, 60, 20, 0), 60u);
    ASSERT_EQ(ev_store_wait(rd, 59, 5000), 0);
    ASSERT_EQ(append_n(s, 5, 5, 0), 65u); /* the reader's next scan adds 61..65 */
    static const struct { uint64_t from; size_t n; } reads[] = {
        { 61, 5 }, { 63, 3 }, { 65, 1 }, { 66, 0 }, { 58, 8 }, { 1, 65 },
    };
    for (size_t i = 0; i < sizeof reads / sizeof reads[0]; i++) {
        ev_list_t l = EV_LIST_INIT;
        ASSERT_EQ(ev_store_read(rd, reads[i].from, 1000, &l), 0);
        ASSERT_EQ(l.n, reads[i].n);
        for (size_t k = 0; k < l.n; k++) {
            ev_slice_t sl = ev_list_get(&l, k);
            ev_record_t r;
            ASSERT_EQ(ev_record_parse(sl.data, sl.len, &r), 0);
            ASSERT_EQ(r.seq, reads[i].from + k);
        }
        ev_list_free(&l);
    }
    ev_store_close(rd);
    ev_store_close(s);
    teardown();
}

/* ---------------------------------------------------------------------------------
 * Syncing by a device flush (ext4: DIR/FLUSH's fdatasync instead of the segment's)
 * ------------------------------------------------------------------------------ */

static bool dir_is_ext4(void)
{
    struct statfs sf;
    return statfs(dir, &sf) == 0 && sf.f_type == EXT4_SUPER_MAGIC;
}

static uint64_t path_ino(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (uint64_t)st.st_ino : 0;
}

static char *flush_file(void)
{
    static char p[128];
    snprintf(p, sizeof p, "%s/FLUSH", dir);
    return p;
}

static int syncs_flush, syncs_seg, fail_flush_sync;

/* Counts the store's syncs by what they sync (DIR/FLUSH or a segment); fails
 * FLUSH's when fail_flush_sync is set. */
static int counting_sync(int fd)
{
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    if ((uint64_t)st.st_ino == path_ino(flush_file())) {
        syncs_flush++;
        if (fail_flush_sync) {
            errno = EIO;
            return -1;
        }
    } else {
        syncs_seg++;
    }
    return fdatasync(fd);
}

/* Append n single events through counting_sync, the counts from 0; the last seq
 * must be last. */
static void appends_counted(ev_store_t *s, int n, uint64_t last)
{
    syncs_flush = syncs_seg = 0;
    ev_store_file_set_io(NULL, counting_sync);
    ASSERT_EQ(append_n(s, n, 1, 0), last);
    ev_store_file_set_io(NULL, NULL);
}

/* The segment's inode and FLUSH's are in different blocks of the inode table
 * (the segment's mtime would otherwise make FLUSH's fdatasync write that block),
 * and no candidate of the pick is left behind. */
static void assert_flush_apart_from(const char *seg)
{
    struct statfs sf;
    char p[160];
    ASSERT_EQ(statfs(dir, &sf), 0);
    ASSERT_GT(path_ino(flush_file()), 0u);
    ASSERT(!ev_store_file_inodes_near(path_ino(flush_file()), path_ino(seg), (uint64_t)sf.f_bsize));
    for (int i = 0; i < 64; i++) {
        snprintf(p, sizeof p, "%s/FLUSH.%d", dir, i);
        ASSERT_EQ(access(p, F_OK), -1);
    }
}

static bool flush_testable(const char *why)
{
    if (dir_is_ext4() && dir_has_direct_io())
        return true;
    fprintf(stderr, "note: %s: %s is not ext4 with O_DIRECT\n", why, dir);
    teardown();
    return false;
}

TEST(direct_appends_on_ext4_are_synced_by_a_device_flush)
{
    setup("segment_bytes=100000");
    if (!flush_testable("device flush"))
        return;
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ASSERT_NOT_NULL(strstr(s->io_note, "synced by a device cache flush"));
    assert_flush_apart_from(seg_file(1));
    syncs_flush = syncs_seg = 0;
    ev_store_file_set_io(NULL, counting_sync);
    /* The first append grows the segment (zeros ahead of it): its own fdatasync. */
    ASSERT_EQ(append_n(s, 1, 1, 0), 1u);
    ASSERT_EQ(syncs_seg, 1);
    ASSERT_EQ(syncs_flush, 0);
    /* Then only the mtime changes: the device flush. */
    ASSERT_EQ(append_n(s, 20, 1, 0), 21u);
    ASSERT_EQ(syncs_seg, 1);
    ASSERT_EQ(syncs_flush, 20);
    /* Across segments: each new one starts with its own fdatasync, then FLUSH,
     * which is apart from each new segment's inode. */
    int segs = 1;
    for (uint64_t seq = 22; seq <= 1500; seq++) {
        ASSERT_EQ(append_n(s, 1, 1, 0), seq);
        if (access(seg_file(seq), F_OK) == 0) {
            segs++;
            assert_flush_apart_from(seg_file(seq));
        }
    }
    ASSERT_GE(segs, 3);
    ASSERT_GT(syncs_flush, 1400);
    ASSERT_GE(syncs_seg, segs);
    ASSERT(syncs_seg <= 4 * segs); /* one per segment, a few more for the zeros */
    ev_store_file_set_io(NULL, NULL);
    ASSERT_EQ(read_all_checked(s), 1500u);
    ev_store_close(s);
    /* Nothing rests on the mtime: a reopened writer and a reader find it all. */
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(append_n(s, 1, 1, 0), 1501u);
    ev_store_t *rd = open_store(EV_OPEN_READ);
    ASSERT_EQ(read_all_checked(rd), 1501u);
    verify_clean(rd, 1501);
    ev_store_close(rd);
    ev_store_close(s);
    teardown();

    /* sync_mtime=on: every sync is the segment's. */
    setup("sync_mtime=on");
    s = open_store(EV_OPEN_WRITE);
    ASSERT_NOT_NULL(strstr(s->io_note, "then fdatasync: sync_mtime=on"));
    appends_counted(s, 30, 30u);
    ASSERT_EQ(syncs_seg, 30);
    ASSERT_EQ(syncs_flush, 0);
    ev_store_close(s);
    teardown();

    setup("sync_mtime=maybe");
    char err[EV_ERR_LEN];
    ASSERT_EQ(ev_store_open(url, EV_OPEN_WRITE, &s, err, sizeof err), -EINVAL);
    ASSERT_STR_EQ(err, "EVENTS_URL: sync_mtime must be on or off");
    teardown();
}

/* A FLUSH made just before the log (so its inode neighbours the first
 * segment's) is replaced by one apart from it. */
TEST(a_flush_file_beside_the_segments_inode_is_replaced)
{
    setup(NULL);
    if (!flush_testable("flush file pick"))
        return;
    int fd = open(flush_file(), O_RDWR | O_CREAT, 0644);
    ASSERT(fd >= 0);
    close(fd);
    uint64_t before = path_ino(flush_file());
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    struct statfs sf;
    ASSERT_EQ(statfs(dir, &sf), 0);
    if (ev_store_file_inodes_near(before, path_ino(seg_file(1)), (uint64_t)sf.f_bsize))
        ASSERT_NE(path_ino(flush_file()), before);
    else
        fprintf(stderr, "note: FLUSH's inode came out apart from the segment's already\n");
    assert_flush_apart_from(seg_file(1));
    ASSERT_EQ(append_n(s, 10, 1, 0), 10u);
    ASSERT_EQ(read_all_checked(s), 10u);
    ev_store_close(s);
    teardown();
}

TEST(a_failed_device_flush_refuses_appends_until_reopened)
{
    setup(NULL);
    if (!flush_testable("failed flush"))
        return;
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    syncs_flush = syncs_seg = 0;
    ev_store_file_set_io(NULL, counting_sync);
    ASSERT_EQ(append_n(s, 3, 1, 0), 3u);
    ASSERT_EQ(syncs_flush, 2);
    fail_flush_sync = 1;
    size_t len;
    uint64_t first;
    uint8_t *e = mk_event("page.view", "x", 0, &len);
    ev_slice_t sl = { e, len };
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), -EIO);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(s), "device flush (fdatasync of FLUSH)"));
    fail_flush_sync = 0;
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), -EIO);
    ASSERT_NOT_NULL(strstr(ev_store_errmsg(s), "reopen"));
    ev_store_file_set_io(NULL, NULL);
    ev_store_close(s);
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(ev_store_append(s, &sl, 1, &first), 0);
    ASSERT(first == 4u || first == 5u);
    ASSERT_EQ(read_all_checked(s), first);
    free(e);
    ev_store_close(s);
    teardown();
}

/* A "direct" descriptor whose writes go through the page cache (what ext4 does
 * quietly for data=journal or encrypted inodes): each append finds its pages
 * dirty in the cache (cachestat) and is synced by the segment's fdatasync. */
static int open_buffered(const char *path, int flags)
{
    return open(path, flags & ~O_DIRECT);
}

TEST(direct_writes_that_stay_in_the_page_cache_keep_the_segments_fdatasync)
{
    setup(NULL);
    if (!flush_testable("cached direct writes"))
        return;
    ev_store_file_set_open_direct(open_buffered);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    ev_store_file_set_open_direct(NULL);
    ASSERT_NOT_NULL(strstr(s->io_note, "synced by a device cache flush"));
    appends_counted(s, 12, 12u);
    ASSERT_EQ(syncs_flush, 0);
    ASSERT_EQ(syncs_seg, 12);
    ASSERT_EQ(read_all_checked(s), 12u);
    ev_store_close(s);
    teardown();
}

TEST(inodes_near_is_false_only_for_different_inode_table_blocks)
{
    static const struct { uint64_t a, b, bsize; bool near; } cases[] = {
        { 1, 1, 4096, true },   { 1, 32, 4096, true },  { 1, 33, 4096, false },
        { 32, 33, 4096, false }, { 33, 64, 4096, true }, { 65, 64, 4096, false },
        { 1, 8, 1024, true },   { 8, 9, 1024, false },  { 100, 356, 65536, true },
        { 1, 513, 65536, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ASSERT_EQ(ev_store_file_inodes_near(cases[i].a, cases[i].b, cases[i].bsize),
                  cases[i].near);
        ASSERT_EQ(ev_store_file_inodes_near(cases[i].b, cases[i].a, cases[i].bsize),
                  cases[i].near);
    }
}

/* What a device-flush sync leans on: the segment's size and blocks are what its
 * own last sync made durable. The hook records them at each of the segment's
 * syncs and checks them at each FLUSH sync, over preallocations small and large
 * and batches of mixed sizes (some larger than the zeros ahead). */
static int meta_seg_fd = -1, meta_violations;
static struct stat meta_synced;

static int meta_checking_sync(int fd)
{
    struct stat st, seg;
    ASSERT_EQ(fstat(fd, &st), 0);
    if ((uint64_t)st.st_ino == path_ino(flush_file())) {
        syncs_flush++;
        ASSERT(meta_seg_fd >= 0);
        ASSERT_EQ(fstat(meta_seg_fd, &seg), 0);
        if (seg.st_ino != meta_synced.st_ino || seg.st_size != meta_synced.st_size ||
            seg.st_blocks != meta_synced.st_blocks)
            meta_violations++;
        return fdatasync(fd);
    }
    syncs_seg++;
    int rc = fdatasync(fd);
    meta_seg_fd = fd;
    ASSERT_EQ(fstat(fd, &meta_synced), 0);
    return rc;
}

TEST(a_device_flush_sync_follows_no_change_of_size_or_blocks)
{
    static const char *const opts[] = { "preallocate=1000", "preallocate=16384",
                                        "segment_bytes=300000" };
    static const int batches[] = { 1, 3, 1, 50, 1, 200, 7, 1 };
    for (size_t o = 0; o < sizeof opts / sizeof opts[0]; o++) {
        setup(opts[o]);
        if (!flush_testable("size and blocks"))
            return;
        ev_store_t *s = open_store(EV_OPEN_WRITE);
        syncs_flush = syncs_seg = meta_violations = 0;
        meta_seg_fd = -1;
        ev_store_file_set_io(NULL, meta_checking_sync);
        uint64_t last = 0;
        for (int round = 0; round < 12; round++)
            for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++)
                last = append_n(s, batches[b], batches[b], 0);
        ev_store_file_set_io(NULL, NULL);
        ASSERT_EQ(meta_violations, 0);
        ASSERT_GT(syncs_flush, 10);
        ASSERT_EQ(read_all_checked(s), last);
        ev_store_close(s);
        teardown();
    }
}

/* DIR/FLUSH must be a regular file of the log's file system: a symlink elsewhere
 * (here: to a tmpfs, whose fsync flushes no disk) or a FIFO (whose open would
 * block) is replaced, and what a symlink pointed to is left alone. Leftover
 * candidates of an interrupted pick go at the next open. */
static void make_leftovers(int step)
{
    char p[160];
    for (int i = 0; i < 64; i += step) {
        snprintf(p, sizeof p, "%s/FLUSH.%d", dir, i);
        int fd = open(p, O_WRONLY | O_CREAT, 0644);
        ASSERT(fd >= 0);
        close(fd);
    }
}

TEST(a_flush_file_that_is_not_ours_is_replaced_and_leftovers_go)
{
    setup(NULL);
    if (!flush_testable("foreign FLUSH"))
        return;
    char target[] = "/dev/shm/ev_flush_target.XXXXXX";
    int tfd = mkstemp(target);
    ASSERT(tfd >= 0);
    close(tfd);
    ASSERT_EQ(symlink(target, flush_file()), 0);
    ev_store_t *s = open_store(EV_OPEN_WRITE);
    struct stat st;
    ASSERT_EQ(lstat(flush_file(), &st), 0);
    ASSERT(S_ISREG(st.st_mode));
    ASSERT_EQ(access(target, F_OK), 0);
    assert_flush_apart_from(seg_file(1));
    ASSERT_EQ(append_n(s, 5, 1, 0), 5u);
    ev_store_close(s);
    unlink(target);

    ASSERT_EQ(unlink(flush_file()), 0);
    ASSERT_EQ(mkfifo(flush_file(), 0644), 0);
    make_leftovers(7);
    s = open_store(EV_OPEN_WRITE);
    ASSERT_EQ(lstat(flush_file(), &st), 0);
    ASSERT(S_ISREG(st.st_mode));
    ASSERT_NOT_NULL(strstr(s->io_note, "synced by a device cache flush"));
    assert_flush_apart_from(seg_file(1)); /* and no FLUSH.N left */
    ASSERT_EQ(append_n(s, 5, 1, 0), 10u);
    ev_store_close(s);

    /* Leftovers next to a FLUSH that is fine as it is. */
    make_leftovers(9);
    s = open_store(EV_OPEN_WRITE);
    assert_flush_apart_from(seg_file(1));
    ASSERT_EQ(read_all_checked(s), 10u);
    ev_store_close(s);
    teardown();
}
