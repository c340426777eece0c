/* store_file.c - the embedded event store: a segmented append-only log on disk.
 *
 * Layout of the directory (EVENTS_URL file:DIR):
 *
 *   DIR/LOCK                      flock()ed by the one writer
 *   DIR/FLUSH                     empty; its fdatasync is the writer's device flush
 *                                 (store_file_direct.c, "Syncing by a device flush")
 *   DIR/00000000000000000001.log  segments, named by the seq of their first record
 *   DIR/00000000000000000001.idx  sparse index of a sealed segment (a cache: rebuilt
 *                                 by scanning when missing or not matching)
 *
 * A segment is a 32-byte header (magic "OBEVLOG1", version, first seq, CRC of the
 * header) followed by frames:
 *
 *   u32 len | u32 crc | len bytes: the record (BSON, see event.h)
 *
 * little-endian, crc = CRC-32 (zlib's crc32, the gzip polynomial) over the 4 length
 * bytes and the record. Why that CRC rather than CRC-32C: for records of a few
 * hundred bytes both detect every burst up to 32 bits and all the 1-3 bit errors,
 * and CRC-32C's advantage, the SSE4.2 instruction, is matched by carry-less
 * multiplication (PCLMULQDQ) for this polynomial. It is computed by libdeflate's
 * libdeflate_crc32 (Debian's libdeflate, linked statically), which folds with
 * PCLMULQDQ where the CPU has it: zlib 1.2's table-driven crc32 was the largest
 * part of a batch's own work in perf under bench-events (7% of all samples, more
 * than validation and SHA-256 together); the values are zlib's, byte for byte (the
 * tests make frames with zlib's crc32). The CRC covers the length so a damaged
 * length is caught.
 *
 * Appends build every record of the batch into one buffer (seq, prev hash, CRC),
 * write it with one pwrite at the end of the active segment and, unless fsync=none,
 * sync before returning (the segment's fdatasync, or on ext4 a device flush: see
 * store_file_direct.c): the caller (the events server) acknowledges the whole
 * batch after that. That is the group commit: the server collects the calls that
 * arrive while the previous batch syncs (fsync=always) or over a window of N ms
 * (fsync=Nms). A failed write is cut off again with ftruncate; a failed fdatasync
 * leaves the kernel's state unknown (the dirty pages may have been dropped), so the
 * store refuses appends until it is reopened and has re-read the log.
 *
 * Preallocation (EVENTS_URL preallocate=BYTES, 1 MiB by default; 0 = off; only
 * when appends are synced): the active segment is kept longer than its data by a
 * tail of zeros that was written and synced once. An append then overwrites
 * blocks that are already allocated, inside the file's size, so its fdatasync
 * writes the data and no metadata (ext4: no journal commit). Measured on our CI
 * disk: 700-byte append + fdatasync p50 139 us appending, 135 us into a
 * fallocate()d range (unwritten extents still need converting: metadata), 159 us
 * with O_DSYNC, 7 us into zeros written beforehand. A frame header of eight zero
 * bytes is thus the end of the data (SCAN_PAD: a record is never shorter than
 * MIN_RECORD). The zeros are cut off when a segment is sealed or the writer
 * closes, and by recovery (with a torn tail).
 *
 * Direct appends (EVENTS_URL direct=on|off, on by default; only with synced,
 * preallocated appends): the writer writes batches into the zeros through an
 * O_DIRECT descriptor, the active segment's last partial block rewritten with its
 * acknowledged bytes in front of the new frames, so the fdatasync after it has
 * no data left to write (see "Direct appends" in store_file_direct.c: the
 * write protocol, why a torn rewrite of the head is harmless, readers). Where O_DIRECT
 * is refused the appends stay buffered; ev_store_t.io_note says which way a writer
 * writes, and the services log it at start-up. Measured on the development VM
 * (ext4 without a journal, virtio disk), paced, interleaved: the raw write +
 * fdatasync of a 1,700-byte record is 10-35 us faster direct (bench-recs'
 * floors, lower in 17 of 21 runs), but an append of this store is not measurably
 * faster (1.4 KB, 2 ms apart, one process, 9 runs: p50 within 10 us, 147-275 us
 * either way): a durable append there is three device requests either way, the
 * data, a 4 KiB metadata write that every fdatasync after a write makes there
 * (with relatime or lazytime alike; an fdatasync after no write makes none) and
 * the cache flush; direct appends only move the data write from the fdatasync
 * into the pwrite (74-100 us, then 113-155 us of fdatasync). What they do allow
 * is leaving that metadata write (the inode's, for the mtime) out: a direct write
 * into synced zeros needs only the device's cache flushed, which on ext4 the
 * writer gets from another, clean file's fdatasync: two requests instead of
 * three (store_file_direct.c, "Syncing by a device flush").
 *
 * Recovery (opening for writing): the last segment is scanned; at the first frame
 * that is incomplete or fails its CRC, the rest of the file is searched for any
 * valid frame. None: it is the torn tail of an interrupted append, never
 * acknowledged, and is truncated away. Some: the damage is in the middle of data,
 * and the open fails with -EBADMSG rather than destroy acknowledged records
 * (`oneblog-events verify` shows where). Readers never truncate; they treat an
 * incomplete tail as "not written yet".
 *
 * Lookup: each segment keeps in memory a sparse index, one entry per 128 records
 * (seq, offset, min and max ts of the block). By seq: binary search of the segment,
 * then of its blocks, then a short scan. By time: blocks whose [min ts, max ts]
 * do not meet the range are skipped (ts is the producer's clock, so it is not
 * assumed monotonic). Sealed segments save their index to .idx so opening a large
 * log reads only the last segment.
 *
 * Follow: readers refresh (scan the tail, look for new segments) every poll_ms.
 * Inside a node the events server wakes its waiters directly. A reader learns the
 * tail segment's size with lseek, never fstat (see seg_size: a stat would make the
 * writer's next fdatasync write the inode too). A reader believes damage in the
 * live tail only when it is still there after a few looks over ~300 ms
 * (reader_tail: a read racing a direct write may see it half landed).
 */
#include "events/store_file_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libdeflate.h>

#include "common/buf.h"
#include "events/store_file.h"

#define SEG_MAGIC "OBEVLOG1"
#define IDX_MAGIC "OBEVIDX1"
#define SEG_HDR_LEN 32
#define FRAME_HDR 8
#define BLOCK_RECS 128
#define MIN_RECORD 64                    /* smaller cannot be a record (seq+prev alone: 61) */
#define DEFAULT_SEG_BYTES (64u << 20)
#define CHUNK (1u << 20)                 /* read-ahead of scans (bytes) */
#define FIRST_CHUNK (16u << 10)          /* a scan's first read-ahead (bytes) */
#define DEFAULT_PREALLOC (1u << 20)      /* zeros kept ahead of the data (bytes) */

/* ---------------------------------------------------------------------------------
 * Fault injection (tests): the write and sync calls go through these pointers.
 * ------------------------------------------------------------------------------ */

static ssize_t (*io_pwrite)(int, const void *, size_t, off_t) = pwrite;
static int (*io_sync)(int) = fdatasync;
static int (*io_fsync)(int) = fsync;

void ev_store_file_set_io(ssize_t (*pw)(int, const void *, size_t, off_t), int (*sync)(int))
{
    io_pwrite = pw ? pw : pwrite;
    io_sync = sync ? sync : fdatasync;
    io_fsync = sync ? sync : fsync;
}

/* ---------------------------------------------------------------------------------
 * Little helpers
 * ------------------------------------------------------------------------------ */

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t frame_crc(const uint8_t *lenbytes, const uint8_t *rec, size_t len)
{
    return libdeflate_crc32(libdeflate_crc32(0, lenbytes, 4), rec, len);
}

static char *seg_path(const file_store_t *fs, uint64_t first, const char *ext)
{
    buf_t b = BUF_INIT;
    buf_printf(&b, "%s/%020" PRIu64 ".%s", fs->dir, first, ext);
    return buf_take(&b);
}

int ev__file_write_all(int fd, const void *p, size_t n, uint64_t off)
{
    const uint8_t *c = p;
    while (n > 0) {
        ssize_t w = io_pwrite(fd, c, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (w == 0)
            return -EIO;
        c += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

int ev__file_read_full(int fd, void *p, size_t n, uint64_t off, size_t *got)
{
    uint8_t *c = p;
    *got = 0;
    while (n > 0) {
        ssize_t r = pread(fd, c, n, (off_t)off);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        c += r;
        n -= (size_t)r;
        off += (uint64_t)r;
        *got += (size_t)r;
    }
    return 0;
}

static int fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0)
        return -errno;
    if (fsync(fd) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static void seg_free(seg_t *s)
{
    free(s->blks);
    memset(s, 0, sizeof *s);
}

/* Record one more record in a segment's sparse index. */
static void seg_note(seg_t *s, uint64_t seq, uint64_t off, int64_t ts)
{
    if ((seq - s->first_seq) % BLOCK_RECS == 0) {
        if (s->nblk == s->capblk) {
            s->capblk = s->capblk ? 2 * s->capblk : 16;
            s->blks = xrealloc(s->blks, s->capblk * sizeof *s->blks);
        }
        s->blks[s->nblk++] = (blk_t){ seq, off, ts, ts };
    }
    blk_t *b = &s->blks[s->nblk - 1];
    if (ts < b->min_ts)
        b->min_ts = ts;
    if (ts > b->max_ts)
        b->max_ts = ts;
    if (s->last_seq < s->first_seq || ts < s->min_ts)
        s->min_ts = ts;
    if (s->last_seq < s->first_seq || ts > s->max_ts)
        s->max_ts = ts;
    s->last_seq = seq;
}

/* ---------------------------------------------------------------------------------
 * Frames and scanning
 * ------------------------------------------------------------------------------ */

/* Check the frame at p (avail bytes available there). Returns its total length
 * (> 0) and fills *r; 0 if the frame is not complete within avail; -1 if it is not
 * a valid frame. `full` checks the record as ev_record_parse does; otherwise the
 * frame's checksum and the record's fields only (ev_record_fields), for records a
 * read passes over on its way to the first one it wants (see iterate). */
static long frame_at(const uint8_t *p, size_t avail, ev_record_t *r, bool full)
{
    uint32_t len;
    if (avail < FRAME_HDR)
        return 0;
    len = le32(p);
    if (len < MIN_RECORD || len > EV_MAX_RECORD)
        return -1;
    if (avail < FRAME_HDR + (size_t)len)
        return 0;
    if (frame_crc(p, p + FRAME_HDR, len) != le32(p + 4))
        return -1;
    if ((full ? ev_record_parse : ev_record_fields)(p + FRAME_HDR, len, r) < 0)
        return -1;
    return FRAME_HDR + (long)len;
}

/* A sequential reader of one segment file with read-ahead. */
typedef struct scan {
    file_store_t *fs;
    int fd;
    uint64_t off;      /* file offset of the next frame */
    uint64_t end;      /* stop here (file size or known valid size) */
    uint64_t bstart;   /* file offset of fs->rbuf[0] */
    size_t blen;       /* valid bytes in fs->rbuf */
    size_t ra;         /* read-ahead of the next fill (bytes); 0 = FIRST_CHUNK */
} scan_t;

enum { SCAN_REC = 1, SCAN_END = 0, SCAN_SHORT = -1, SCAN_BAD = -2, SCAN_IOERR = -3,
       SCAN_PAD = -4 /* a zero frame header: the preallocated tail */ };

/* Make [off, off + need) available in the buffer. Returns the bytes available
 * from off (may be less than need at the end), or -errno. */
static long scan_fill(scan_t *sc, size_t need)
{
    file_store_t *fs = sc->fs;
    size_t have = 0, got;
    int rc;

    if (sc->off >= sc->bstart && sc->off < sc->bstart + sc->blen)
        have = (size_t)(sc->bstart + sc->blen - sc->off);
    if (have >= need || sc->off + have >= sc->end)
        return (long)have;
    /* The read-ahead starts small and doubles up to CHUNK: a follower's scan of
     * the live tail usually finds a few new records and then the writer's
     * preallocated zeros, up to 1 MiB of them, which a CHUNK-sized first read
     * copied on every refresh (measured: 156 us p50 per follower read of one
     * new record, most of it copying zeros). Long scans reach CHUNK at once. */
    size_t ra = sc->ra ? sc->ra : FIRST_CHUNK;
    sc->ra = ra < CHUNK ? 2 * ra : CHUNK;
    size_t want = need > ra ? need : ra;
    if (want > sc->end - sc->off)
        want = (size_t)(sc->end - sc->off);
    if (fs->rcap < want) {
        fs->rbuf = xrealloc(fs->rbuf, want);
        fs->rcap = want;
    }
    if ((rc = ev__file_read_full(sc->fd, fs->rbuf, want, sc->off, &got)) < 0)
        return rc;
    sc->bstart = sc->off;
    sc->blen = got;
    return (long)got;
}

/* Next record: SCAN_REC with *r and *at (its frame offset), SCAN_END at sc->end,
 * SCAN_SHORT when a frame runs past the end, SCAN_BAD for an invalid frame,
 * SCAN_IOERR on a read error. *r points into fs->rbuf until the next call.
 * `full`: as frame_at's. */
static int scan_next(scan_t *sc, ev_record_t *r, uint64_t *at, bool full)
{
    long avail, flen;
    uint32_t len;

    if (sc->off >= sc->end)
        return SCAN_END;
    if ((avail = scan_fill(sc, FRAME_HDR)) < 0)
        return SCAN_IOERR;
    if (avail < FRAME_HDR)
        return SCAN_SHORT;
    len = le32(sc->fs->rbuf + (sc->off - sc->bstart));
    if (len == 0 && le32(sc->fs->rbuf + (sc->off - sc->bstart) + 4) == 0)
        return SCAN_PAD;
    if (len < MIN_RECORD || len > EV_MAX_RECORD)
        return SCAN_BAD;
    if ((avail = scan_fill(sc, FRAME_HDR + len)) < 0)
        return SCAN_IOERR;
    flen = frame_at(sc->fs->rbuf + (sc->off - sc->bstart), (size_t)avail, r, full);
    if (flen == 0)
        return SCAN_SHORT;
    if (flen < 0)
        return SCAN_BAD;
    *at = sc->off;
    sc->off += (uint64_t)flen;
    return SCAN_REC;
}

/* Search [from, end) of a segment file for the first valid frame (any seq).
 * Returns its offset, or 0 if there is none. Used on damage only: it reads the
 * rest of the segment (at most about segment_bytes) and tries every offset. */
static uint64_t find_valid_frame(file_store_t *fs, int fd, uint64_t from, uint64_t end)
{
    uint64_t found = 0;
    size_t n, got;
    uint8_t *b;

    (void)fs;
    if (from >= end)
        return 0;
    n = (size_t)(end - from);
    b = xmalloc(n);
    if (ev__file_read_full(fd, b, n, from, &got) == 0) {
        for (size_t pos = 0; pos + FRAME_HDR + MIN_RECORD <= got; pos++) {
            ev_record_t r;
            uint32_t len = le32(b + pos);
            if (len < MIN_RECORD || len > EV_MAX_RECORD || pos + FRAME_HDR + len > got)
                continue;
            if (frame_at(b + pos, got - pos, &r, true) > 0) {
                found = from + pos;
                break;
            }
        }
    }
    free(b);
    return found;
}

/* Scan a segment from s->size up to `end`, adding every valid, in-sequence
 * record to its index. Returns the SCAN_* status that stopped it (SCAN_END when
 * it reached `end`); s->size is then the end of the last good record. */
static int seg_scan(file_store_t *fs, seg_t *s, int fd, uint64_t end)
{
    scan_t sc = { fs, fd, s->size, end, 0, 0, 0 };
    ev_record_t r;
    uint64_t at, last_off = 0, from_seq = s->last_seq + 1, from_off = s->size;
    size_t last_len = 0;
    int st;

    while ((st = scan_next(&sc, &r, &at, true)) == SCAN_REC) {
        if (r.seq != s->last_seq + 1) {
            st = SCAN_BAD; /* out of sequence: as damaged as a bad CRC */
            break;
        }
        seg_note(s, r.seq, at, r.ts_ms);
        s->size = sc.off;
        last_off = at;
        last_len = r.len;
    }
    if (last_len) {
        s->new_seq = from_seq;
        s->new_off = from_off;
        /* Hash only the last record: the writer needs it to continue the chain. */
        uint8_t *rec = xmalloc(last_len);
        size_t got;
        if (ev__file_read_full(fd, rec, last_len, last_off + FRAME_HDR, &got) == 0 &&
            got == last_len)
            ev_record_hash(rec, last_len, s->last_hash);
        free(rec);
    }
    return st;
}

/* ---------------------------------------------------------------------------------
 * Segment files and their indexes
 * ------------------------------------------------------------------------------ */

static void make_header(uint8_t h[SEG_HDR_LEN], uint64_t first)
{
    memset(h, 0, SEG_HDR_LEN);
    memcpy(h, SEG_MAGIC, 8);
    put32(h + 8, 1);
    put64(h + 16, first);
    put32(h + 24, libdeflate_crc32(0, h, 24));
}

static bool header_ok(const uint8_t h[SEG_HDR_LEN], uint64_t first)
{
    return memcmp(h, SEG_MAGIC, 8) == 0 && le32(h + 8) == 1 && le64(h + 16) == first &&
           le32(h + 24) == libdeflate_crc32(0, h, 24);
}

/* The .idx file: header (magic, first, last, size, min ts, max ts, nblk, last
 * hash), the blocks, then a CRC of everything before it. */
#define IDX_HDR (8 + 8 * 6 + EV_HASH_LEN)

static void idx_write(file_store_t *fs, const seg_t *s)
{
    size_t n = IDX_HDR + s->nblk * 32 + 4;
    uint8_t *b = xcalloc(1, n), *p = b;
    char *path = seg_path(fs, s->first_seq, "idx"), *tmp = NULL;
    buf_t t = BUF_INIT;
    int fd = -1;

    memcpy(p, IDX_MAGIC, 8);
    put64(p + 8, s->first_seq);
    put64(p + 16, s->last_seq);
    put64(p + 24, s->size);
    put64(p + 32, (uint64_t)s->min_ts);
    put64(p + 40, (uint64_t)s->max_ts);
    put64(p + 48, s->nblk);
    memcpy(p + 56, s->last_hash, EV_HASH_LEN);
    p += IDX_HDR;
    for (size_t i = 0; i < s->nblk; i++, p += 32) {
        put64(p, s->blks[i].seq);
        put64(p + 8, s->blks[i].off);
        put64(p + 16, (uint64_t)s->blks[i].min_ts);
        put64(p + 24, (uint64_t)s->blks[i].max_ts);
    }
    put32(p, libdeflate_crc32(0, b, n - 4));
    /* Written to a temporary name and renamed, so a crash leaves either no index
     * or a whole one. Not synced: it is a cache, checked against the segment. */
    buf_printf(&t, "%s.tmp", path);
    tmp = buf_take(&t);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0 && ev__file_write_all(fd, b, n, 0) == 0 && close(fd) == 0) {
        fd = -1;
        if (rename(tmp, path) < 0)
            unlink(tmp);
    } else {
        unlink(tmp);
    }
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(path);
    free(b);
}

/* Load a segment's .idx if it describes exactly this file (size). */
static bool idx_load(file_store_t *fs, seg_t *s, uint64_t file_size)
{
    char *path = seg_path(fs, s->first_seq, "idx");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    uint8_t *b = NULL;
    size_t got;
    bool ok = false;

    free(path);
    if (fd < 0)
        return false;
    if (fstat(fd, &st) < 0 || st.st_size < IDX_HDR + 4 || st.st_size > (64 << 20))
        goto out;
    b = xmalloc((size_t)st.st_size);
    if (ev__file_read_full(fd, b, (size_t)st.st_size, 0, &got) < 0 || got != (size_t)st.st_size)
        goto out;
    if (memcmp(b, IDX_MAGIC, 8) != 0 ||
        le32(b + got - 4) != libdeflate_crc32(0, b, got - 4) ||
        le64(b + 8) != s->first_seq || le64(b + 24) != file_size ||
        IDX_HDR + le64(b + 48) * 32 + 4 != got)
        goto out;
    s->last_seq = le64(b + 16);
    s->size = file_size;
    s->min_ts = (int64_t)le64(b + 32);
    s->max_ts = (int64_t)le64(b + 40);
    s->nblk = s->capblk = (size_t)le64(b + 48);
    memcpy(s->last_hash, b + 56, EV_HASH_LEN);
    s->blks = xmalloc((s->nblk ? s->nblk : 1) * sizeof *s->blks);
    for (size_t i = 0; i < s->nblk; i++) {
        const uint8_t *p = b + IDX_HDR + i * 32;
        s->blks[i] = (blk_t){ le64(p), le64(p + 8), (int64_t)le64(p + 16),
                              (int64_t)le64(p + 24) };
    }
    ok = true;
out:
    free(b);
    close(fd);
    return ok;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The first seqs of the segments in the directory, sorted. */
static int list_segments(file_store_t *fs, uint64_t **out, size_t *n)
{
    DIR *d = opendir(fs->dir);
    struct dirent *e;
    size_t cap = 0;

    *out = NULL;
    *n = 0;
    if (d == NULL)
        return -errno;
    while ((e = readdir(d)) != NULL) {
        char *end;
        unsigned long long v;
        if (strlen(e->d_name) != 24 || strcmp(e->d_name + 20, ".log") != 0)
            continue;
        v = strtoull(e->d_name, &end, 10);
        if (end != e->d_name + 20 || v == 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            *out = xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = v;
    }
    closedir(d);
    if (*n > 1)
        qsort(*out, *n, sizeof **out, cmp_u64);
    return 0;
}

/* Open segment i for reading, through the one-fd cache. */
static int seg_rfd(file_store_t *fs, size_t i)
{
    if (fs->rfd >= 0 && fs->rseg == i)
        return fs->rfd;
    if (fs->rfd >= 0)
        close(fs->rfd);
    char *path = seg_path(fs, fs->segs[i].first_seq, "log");
    fs->rfd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    fs->rseg = i;
    return fs->rfd >= 0 ? fs->rfd : -errno;
}

static seg_t *add_seg(file_store_t *fs, uint64_t first)
{
    if (fs->nseg == fs->capseg) {
        fs->capseg = fs->capseg ? 2 * fs->capseg : 16;
        fs->segs = xrealloc(fs->segs, fs->capseg * sizeof *fs->segs);
    }
    seg_t *s = &fs->segs[fs->nseg++];
    memset(s, 0, sizeof *s);
    s->first_seq = first;
    s->last_seq = first - 1;
    s->size = SEG_HDR_LEN;
    return s;
}

/* The current size of a segment a reader has open, without stat: fstat marks
 * the file's ctime as queried, and with multigrain timestamps (Linux 6.13 on) the
 * writer's next write then takes a fine-grained ctime, which dirties the inode,
 * so its fdatasync writes the inode block too: one more synchronous device write
 * per append while a reader follows the log (the recs server's follower reads
 * after every append). Measured: 2.0 block requests per pwrite + fdatasync with
 * an fstat between appends, 1.1 without. lseek(SEEK_END) only reads the size
 * (reads use pread, so the file offset is free). */
static bool seg_size(int fd, uint64_t *out)
{
    off_t end = lseek(fd, 0, SEEK_END);
    if (end < 0)
        return false;
    *out = (uint64_t)end;
    return true;
}

/* A reader stopped in the newest segment before its end: an append in flight (or
 * the torn tail of a crashed writer) unless valid records follow, which means
 * damage: then reads must stop there with an error instead of ending quietly.
 * Returns the status the tail was left with (scanned again: see below). */
static int reader_tail(file_store_t *fs, seg_t *s, int fd, uint64_t file_size, int st)
{
    /* SCAN_PAD: the writer's preallocated zeros. A reader polls the live tail, so
     * it does not search the zeros for damage each time; the writer's recovery
     * and verify do.
     * Damage is believed only when it stays: a direct append in flight gives a
     * concurrent reader no prefix order (its buffered read may come from the
     * device while the write lands, with some sectors new and some old: a torn
     * frame before a whole one), so the tail is scanned again a few times over
     * ~300 ms, which a write completes in (real damage costs that wait once). */
    for (int tries = 0; st != SCAN_END && st != SCAN_IOERR && st != SCAN_PAD; tries++) {
        if (!find_valid_frame(fs, fd, s->size + 1, file_size))
            break;
        if (tries == 5) {
            s->bad_off = s->size;
            break;
        }
        usleep(10000u << tries);
        if (!seg_size(fd, &file_size))
            break;
        st = seg_scan(fs, s, fd, file_size);
    }
    return st;
}

/* Read the state of segment file `first` (the i-th, `last` if it is the newest).
 * For a sealed segment a matching .idx is enough. Returns 0 or -errno; damage is
 * recorded in s->bad_off, a torn tail is left for the caller to handle. */
static int seg_open(file_store_t *fs, seg_t *s, bool last, int *scan_status)
{
    char *path = seg_path(fs, s->first_seq, "log");
    int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
    struct stat st;
    uint8_t h[SEG_HDR_LEN];
    size_t got;

    *scan_status = SCAN_END;
    if (fd < 0) {
        rc = -errno;
        ev__store_err(&fs->base, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (fstat(fd, &st) < 0 || ev__file_read_full(fd, h, sizeof h, 0, &got) < 0) {
        rc = -errno;
        ev__store_err(&fs->base, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (got < SEG_HDR_LEN || !header_ok(h, s->first_seq)) {
        s->size = 0;
        s->bad_off = got < SEG_HDR_LEN && last ? 0 : 1;
        *scan_status = got < SEG_HDR_LEN ? SCAN_SHORT : SCAN_BAD;
        goto out;
    }
    if (!last && idx_load(fs, s, (uint64_t)st.st_size))
        goto out;
    *scan_status = seg_scan(fs, s, fd, (uint64_t)st.st_size);
    if (*scan_status == SCAN_PAD && !last &&
        !find_valid_frame(fs, fd, s->size + 1, (uint64_t)st.st_size))
        *scan_status = SCAN_END; /* sealed with its zeros still on (a crash in roll) */
    if (last && fs->base.mode == EV_OPEN_READ)
        *scan_status = reader_tail(fs, s, fd, (uint64_t)st.st_size, *scan_status);
    if (*scan_status == SCAN_IOERR) {
        rc = -EIO;
        ev__store_err(&fs->base, "%s: read error", path);
    } else if (*scan_status != SCAN_END && !last) {
        s->bad_off = s->size; /* a sealed segment never has a legitimate tail */
    } else if (*scan_status == SCAN_END && !last && fs->base.mode == EV_OPEN_WRITE) {
        idx_write(fs, s); /* rebuild the missing cache */
    }
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Open, refresh, close
 * ------------------------------------------------------------------------------ */

static uint64_t store_last(const file_store_t *fs)
{
    return fs->nseg ? fs->segs[fs->nseg - 1].last_seq : 0;
}

/* Create an empty segment starting at `first` and make it the active one. */
static int new_segment(file_store_t *fs, uint64_t first)
{
    uint8_t h[SEG_HDR_LEN];
    char *path = seg_path(fs, first, "log");
    int fd, rc = 0;

    /* O_TRUNC: a leftover file of this name can only be an empty segment whose
     * creation was interrupted (recovery removed or kept it as the last one). */
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        ev__store_err(&fs->base, "create %s: %s", path, strerror(errno));
        goto out;
    }
    make_header(h, first);
    /* The header and the directory entry are durable before any record goes in,
     * so recovery never meets a segment with records but no valid header. */
    if ((rc = ev__file_write_all(fd, h, sizeof h, 0)) < 0 || (io_sync(fd) < 0 && (rc = -errno)) ||
        (rc = fsync_dir(fs->dir)) < 0) {
        ev__store_err(&fs->base, "create %s: %s", path, strerror(-rc));
        close(fd);
        unlink(path);
        goto out;
    }
    if (fs->fd >= 0)
        close(fs->fd);
    fs->fd = fd;
    fs->alloc_end = SEG_HDR_LEN;
    add_seg(fs, first);
    ev__file_direct_attach(fs, path, SEG_HDR_LEN);
out:
    free(path);
    return rc;
}

/* Seal the active segment and start the next one. */
static int roll(file_store_t *fs)
{
    seg_t *s = &fs->segs[fs->nseg - 1];
    if (fs->base.sync == EV_SYNC_NONE && io_sync(fs->fd) < 0) {
        fs->failed = true;
        ev__store_err(&fs->base, "fdatasync before segment roll: %s", strerror(errno));
        return -EIO;
    }
    /* A sealed segment is exactly its records (its .idx records the size). Not
     * synced: zeros left by a crash here are recognised as such on open. */
    if (fs->alloc_end > s->size && ftruncate(fs->fd, (off_t)s->size) == 0)
        fs->alloc_end = s->size;
    idx_write(fs, s);
    return new_segment(fs, s->last_seq + 1);
}

/* Readers: pick up records and segments the writer added since we looked. */
static int refresh(file_store_t *fs)
{
    uint64_t *firsts = NULL;
    size_t n = 0;
    int rc = 0, st;

    if (fs->base.mode == EV_OPEN_WRITE)
        return 0; /* the writer's view is always current */
    if (fs->nseg > 0) {
        seg_t *s = &fs->segs[fs->nseg - 1];
        int fd = seg_rfd(fs, fs->nseg - 1);
        uint64_t size;
        if (s->size < SEG_HDR_LEN) {
            /* Its header was not there yet when we looked. */
            s->size = SEG_HDR_LEN;
            s->bad_off = 0;
            if ((rc = seg_open(fs, s, true, &st)) < 0)
                goto out;
        } else if (fd >= 0 && s->bad_off == 0 && seg_size(fd, &size) && size > s->size) {
            reader_tail(fs, s, fd, size, seg_scan(fs, s, fd, size));
        }
    }
    if ((rc = list_segments(fs, &firsts, &n)) < 0) {
        ev__store_err(&fs->base, "%s: %s", fs->dir, strerror(-rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (fs->nseg && firsts[i] <= fs->segs[fs->nseg - 1].first_seq)
            continue;
        if (fs->nseg) {
            /* The newest segment we knew is sealed now: read it to its end. */
            seg_t *p = &fs->segs[fs->nseg - 1];
            int fd = seg_rfd(fs, fs->nseg - 1);
            uint64_t size;
            int pst;
            if (fd >= 0 && p->bad_off == 0 && seg_size(fd, &size) &&
                (pst = seg_scan(fs, p, fd, size)) != SCAN_END &&
                !(pst == SCAN_PAD && !find_valid_frame(fs, fd, p->size + 1, size)))
                p->bad_off = p->size;
        }
        seg_t *s = add_seg(fs, firsts[i]);
        if ((rc = seg_open(fs, s, i == n - 1, &st)) < 0)
            goto out;
    }
out:
    free(firsts);
    return rc;
}

static void file_close(ev_store_t *base)
{
    file_store_t *fs = (file_store_t *)base;
    if (fs->fd >= 0) {
        if (base->sync == EV_SYNC_NONE)
            io_sync(fs->fd);
        /* Leave the log exactly its records (not synced: see SCAN_PAD). */
        if (fs->nseg && fs->alloc_end > fs->segs[fs->nseg - 1].size)
            if (ftruncate(fs->fd, (off_t)fs->segs[fs->nseg - 1].size) < 0) {
            }
        close(fs->fd);
    }
    if (fs->dfd >= 0)
        close(fs->dfd);
    if (fs->ffd >= 0)
        close(fs->ffd);
    free(fs->tail);
    if (fs->rfd >= 0)
        close(fs->rfd);
    if (fs->lockfd >= 0)
        close(fs->lockfd); /* releases the flock */
    for (size_t i = 0; i < fs->nseg; i++)
        seg_free(&fs->segs[i]);
    free(fs->segs);
    free(fs->dir);
    free(fs->rbuf);
    buf_free(&fs->wbuf);
    free(fs);
}

static int mkdir_p(const char *dir)
{
    char *p = xstrdup(dir);
    int rc = 0;
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0755) < 0 && errno != EEXIST)
            rc = -errno;
        *c = '/';
    }
    if (rc == 0 && mkdir(p, 0755) < 0 && errno != EEXIST)
        rc = -errno;
    free(p);
    return rc;
}

/* Writer recovery of the last segment after seg_open() stopped at s->size with
 * status st: truncate a torn tail, refuse damage in the middle of data. */
static int recover_tail(file_store_t *fs, seg_t *s, int st)
{
    char *path = seg_path(fs, s->first_seq, "log");
    int fd = -1, rc = 0;
    struct stat sb;

    if (st == SCAN_END)
        goto out;
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &sb) < 0) {
        rc = -errno;
        ev__store_err(&fs->base, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (s->size == 0) {
        /* A segment whose header never made it: its creation was interrupted, so
         * it holds nothing acknowledged. Rewrite it. */
        if ((uint64_t)sb.st_size > SEG_HDR_LEN) {
            rc = -EBADMSG;
            ev__store_err(&fs->base, "%s: bad segment header on a non-empty segment; "
                          "not recovering (run oneblog-events verify)", path);
            goto out;
        }
        uint8_t h[SEG_HDR_LEN];
        make_header(h, s->first_seq);
        if ((rc = ev__file_write_all(fd, h, sizeof h, 0)) < 0 ||
            (io_sync(fd) < 0 && (rc = -errno))) {
            ev__store_err(&fs->base, "%s: rewrite header: %s", path, strerror(-rc));
            goto out;
        }
        s->size = SEG_HDR_LEN;
        s->bad_off = 0;
        goto out;
    }
    uint64_t next = find_valid_frame(fs, fd, s->size + 1, (uint64_t)sb.st_size);
    if (next) {
        rc = -EBADMSG;
        ev__store_err(&fs->base,
                      "%s: corrupt record at offset %" PRIu64 " (after seq %" PRIu64
                      ") followed by valid records at offset %" PRIu64
                      "; not truncating acknowledged data (run oneblog-events verify)",
                      path, s->size, s->last_seq, next);
        goto out;
    }
    /* The torn tail of an append that was never acknowledged. */
    if (ftruncate(fd, (off_t)s->size) < 0 || io_sync(fd) < 0) {
        rc = -errno;
        ev__store_err(&fs->base, "%s: truncate torn tail: %s", path, strerror(errno));
    }
out:
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

static int file_open(const ev_url_t *url, int mode, ev_store_t **out, char *err, size_t errlen)
{
    file_store_t *fs = xcalloc(1, sizeof *fs);
    uint64_t *firsts = NULL;
    size_t n = 0;
    int rc, st = SCAN_END;
    const char *v;
    char *lock = NULL;

    fs->fd = fs->lockfd = fs->rfd = fs->dfd = fs->ffd = -1;
    fs->dir = xstrdup(url->path);
    fs->base.mode = mode;
    if ((rc = ev__store_sync_opt(&fs->base, url, err, errlen)) < 0)
        goto out;
    v = ev_url_opt(url, "segment_bytes", NULL);
    fs->seg_max = v ? strtoull(v, NULL, 10) : DEFAULT_SEG_BYTES;
    if (fs->seg_max < 4096) {
        rc = -EINVAL;
        snprintf(err, errlen, "EVENTS_URL: segment_bytes must be at least 4096");
        goto out;
    }
    v = ev_url_opt(url, "preallocate", NULL);
    fs->prealloc = v ? strtoull(v, NULL, 10) : DEFAULT_PREALLOC;
    if (fs->base.sync == EV_SYNC_NONE)
        fs->prealloc = 0; /* nothing to save: appends are not synced */
    v = ev_url_opt(url, "poll_ms", "50");
    fs->poll_ms = atoi(v) > 0 ? atoi(v) : 50;
    v = ev_url_opt(url, "direct", "on");
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "EVENTS_URL: direct must be on or off");
        goto out;
    }
    const char *sm = ev_url_opt(url, "sync_mtime", "off");
    if (strcmp(sm, "on") != 0 && strcmp(sm, "off") != 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "EVENTS_URL: sync_mtime must be on or off");
        goto out;
    }
    fs->sync_mtime = strcmp(sm, "on") == 0;
    if (mode == EV_OPEN_WRITE) {
        /* Direct appends pay off only for synced appends into preallocated zeros
         * (store_file_direct.c); the first segment attached decides the rest. */
        if (fs->base.sync == EV_SYNC_NONE)
            ev__file_direct_off(fs, "fsync=none");
        else if (fs->prealloc == 0)
            ev__file_direct_off(fs, "preallocate=0");
        else if (strcmp(v, "off") == 0)
            ev__file_direct_off(fs, "direct=off");
        else
            fs->direct = true;
    }

    if (mode == EV_OPEN_WRITE) {
        buf_t b = BUF_INIT;
        if ((rc = mkdir_p(fs->dir)) < 0) {
            snprintf(err, errlen, "%s: %s", fs->dir, strerror(-rc));
            goto out;
        }
        buf_printf(&b, "%s/LOCK", fs->dir);
        lock = buf_take(&b);
        fs->lockfd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fs->lockfd < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s: %s", lock, strerror(errno));
            goto out;
        }
        if (flock(fs->lockfd, LOCK_EX | LOCK_NB) < 0) {
            rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
            snprintf(err, errlen, "%s: another writer has the event log open", fs->dir);
            goto out;
        }
    }
    if ((rc = list_segments(fs, &firsts, &n)) < 0) {
        snprintf(err, errlen, "%s: %s", fs->dir, strerror(-rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        seg_t *s = add_seg(fs, firsts[i]);
        if ((rc = seg_open(fs, s, i == n - 1, &st)) < 0) {
            snprintf(err, errlen, "%s", fs->base.err);
            goto out;
        }
    }
    if (mode == EV_OPEN_WRITE) {
        if (n == 0) {
            rc = new_segment(fs, 1);
        } else {
            seg_t *s = &fs->segs[fs->nseg - 1];
            if ((rc = recover_tail(fs, s, st)) == 0) {
                char *path = seg_path(fs, s->first_seq, "log");
                fs->fd = open(path, O_RDWR | O_CLOEXEC);
                if (fs->fd < 0)
                    rc = -errno;
                else
                    ev__file_direct_attach(fs, path, s->size);
                fs->alloc_end = s->size; /* recovery cut any zeros off */
                free(path);
                /* An empty last segment continues the chain of the one before. */
                if (s->last_seq < s->first_seq && fs->nseg > 1)
                    memcpy(s->last_hash, fs->segs[fs->nseg - 2].last_hash, EV_HASH_LEN);
            }
        }
        if (rc < 0) {
            snprintf(err, errlen, "%s", fs->base.err[0] ? fs->base.err : strerror(-rc));
            goto out;
        }
    }
    fs->base.err[0] = '\0';
    *out = &fs->base;
    fs = NULL;
out:
    free(firsts);
    free(lock);
    if (fs)
        file_close(&fs->base);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Append
 * ------------------------------------------------------------------------------ */

/* The chain's current hash: of the last record in the log. */
static const uint8_t *last_hash(file_store_t *fs)
{
    static const uint8_t zero[EV_HASH_LEN];
    for (size_t i = fs->nseg; i-- > 0;)
        if (fs->segs[i].last_seq >= fs->segs[i].first_seq)
            return fs->segs[i].last_hash;
    return zero;
}

static int64_t event_ts(const ev_slice_t *e)
{
    bson_t b;
    bson_iter_t it;
    if (bson_init_static(&b, e->data, e->len) && bson_iter_init_find(&it, &b, "ts") &&
        BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    return 0;
}

/* io_sync (io_fsync when full), its time kept in base->sync_ns (the events
 * server's fsync histogram). */
static int sync_timed(ev_store_t *base, int fd, bool full)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int rc = full ? io_fsync(fd) : io_sync(fd);
    int saved = errno;
    clock_gettime(CLOCK_MONOTONIC, &b);
    base->sync_ns = (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec));
    if (base->sync_ns == 0)
        base->sync_ns = 1;
    errno = saved;
    return rc;
}

/* Keep prealloc bytes of zeros past `end` (the data's end after this batch):
 * when fewer are left, write zeros up to end + prealloc. The append's own
 * fdatasync then makes them durable with the new size, once per prealloc bytes. */
static int extend_zeros(file_store_t *fs, uint64_t end)
{
    static const uint8_t zeros[64 * 1024];
    if (fs->prealloc == 0 || end + fs->prealloc / 2 <= fs->alloc_end)
        return 0;
    uint64_t from = end > fs->alloc_end ? end : fs->alloc_end, off = from;
    uint64_t to = end + fs->prealloc;
    fs->meta_dirty = true; /* a new size, new blocks: the segment's fdatasync */
    while (off < to) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        if (ev__file_write_all(fs->fd, zeros, n, off) < 0) {
            /* Only an optimisation: a full disk still takes the records. Cut the
             * zeros written here; the batch is appended without them. */
            if (ftruncate(fs->fd, (off_t)from) < 0)
                return -errno;
            fs->alloc_end = from;
            return 0;
        }
        off += n;
    }
    fs->alloc_end = to;
    return 0;
}

static int file_append(ev_store_t *base, const ev_slice_t *evs, size_t n, uint64_t *first_seq)
{
    file_store_t *fs = (file_store_t *)base;
    seg_t *s;
    uint8_t prev[EV_HASH_LEN];
    uint64_t seq, start;
    size_t total = 0;
    uint64_t *offs = NULL;
    int rc = 0;

    base->sync_ns = 0;
    if (fs->failed) {
        ev__store_err(base, "an earlier write or fsync failed; reopen the log to continue");
        return -EIO;
    }
    for (size_t i = 0; i < n; i++)
        total += FRAME_HDR + evs[i].len + 64;
    s = &fs->segs[fs->nseg - 1];
    if (s->last_seq >= s->first_seq && s->size + total > fs->seg_max && (rc = roll(fs)) < 0)
        return rc;
    s = &fs->segs[fs->nseg - 1];

    memcpy(prev, last_hash(fs), EV_HASH_LEN);
    seq = store_last(fs) + 1;
    *first_seq = seq;
    start = s->size;
    offs = xmalloc(n * sizeof *offs);
    fs->wbuf.len = 0;
    for (size_t i = 0; i < n; i++, seq++) {
        size_t at = fs->wbuf.len, rl;
        uint8_t *f;
        buf_reserve(&fs->wbuf, FRAME_HDR);
        fs->wbuf.len += FRAME_HDR;
        rl = ev_record_build(evs[i].data, evs[i].len, seq, prev, &fs->wbuf);
        f = (uint8_t *)fs->wbuf.data + at;
        put32(f, (uint32_t)rl);
        put32(f + 4, frame_crc(f, f + FRAME_HDR, rl));
        ev_record_hash(f + FRAME_HDR, rl, prev);
        offs[i] = start + at;
    }
    if (fs->direct)
        rc = ev__file_direct_write(fs, start, fs->wbuf.data, fs->wbuf.len);
    else
        rc = ev__file_write_all(fs->fd, fs->wbuf.data, fs->wbuf.len, start);
    if (rc < 0 || (rc = extend_zeros(fs, start + fs->wbuf.len)) < 0) {
        ev__store_err(base, "write to segment %020" PRIu64 ".log: %s", s->first_seq,
                      strerror(-rc));
        /* Cut the partial batch off so the log stays a sequence of whole records.
         * If even that fails, recovery on the next open will. */
        if (ftruncate(fs->fd, (off_t)start) < 0)
            fs->failed = true;
        else
            fs->alloc_end = start;
        goto out;
    }
    /* Only the mtime changed since the segment's last sync: the device's cache
     * flush makes the batch durable (store_file_direct.c, "Syncing by a device
     * flush"), once no writeback error is pending on the segment. */
    if (base->sync != EV_SYNC_NONE) {
        bool by_flush = ev__file_flush_ok(fs);
        const char *what = by_flush ? "device flush (fdatasync of " FLUSH_NAME ")"
                           : fs->meta_dirty ? "fsync" : "fdatasync";
        if (by_flush && sync_file_range(fs->fd, 0, 0, SYNC_FILE_RANGE_WAIT_AFTER) < 0)
            what = "writeback";
        else if (sync_timed(base, by_flush ? fs->ffd : fs->fd, !by_flush && fs->meta_dirty) == 0)
            what = NULL;
        if (what) {
            rc = -errno;
            fs->failed = true;
            ev__store_err(base, "%s of segment %020" PRIu64 ".log: %s", what, s->first_seq,
                          strerror(errno));
            goto out;
        }
        if (!by_flush)
            fs->meta_dirty = false;
    }
    for (size_t i = 0; i < n; i++)
        seg_note(s, *first_seq + i, offs[i], event_ts(&evs[i]));
    s->new_seq = *first_seq;
    s->new_off = start;
    s->size = start + fs->wbuf.len;
    memcpy(s->last_hash, prev, EV_HASH_LEN);
    if (fs->direct)
        ev__file_direct_commit(fs, start, s->size);
out:
    free(offs);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------------ */

/* Visit records with seq >= from in order. visit returns true to stop. Blocks
 * outside [q->from_ts_ms, q->to_ts_ms) are skipped when q is given. Returns 0, or
 * -EBADMSG / -EIO with the position in the store's error text. */
typedef bool (*visit_cb)(void *arg, const ev_record_t *r);

static bool blk_in_time(const ev_query_t *q, int64_t min_ts, int64_t max_ts)
{
    if (q == NULL)
        return true;
    if (q->from_ts_ms && max_ts < q->from_ts_ms)
        return false;
    if (q->to_ts_ms && min_ts >= q->to_ts_ms)
        return false;
    return true;
}

static int iterate(file_store_t *fs, uint64_t from, const ev_query_t *q, visit_cb visit,
                   void *arg)
{
    size_t lo = 0, hi = fs->nseg;

    /* The last segment whose first_seq <= from. */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (fs->segs[mid].first_seq <= from)
            lo = mid;
        else
            hi = mid;
    }
    for (size_t si = lo; si < fs->nseg; si++) {
        seg_t *s = &fs->segs[si];
        if (s->last_seq < from || s->nblk == 0)
            goto check_bad;
        if (q && !blk_in_time(q, s->min_ts, s->max_ts))
            goto check_bad;
        int fd = seg_rfd(fs, si);
        if (fd < 0) {
            ev__store_err(&fs->base, "segment %020" PRIu64 ".log: %s", s->first_seq,
                          strerror(-fd));
            return -EIO;
        }
        /* The last block starting at or before `from`. */
        size_t b = 0, bh = s->nblk;
        while (bh - b > 1) {
            size_t mid = (b + bh) / 2;
            if (s->blks[mid].seq <= from)
                b = mid;
            else
                bh = mid;
        }
        for (; b < s->nblk; b++) {
            if (!blk_in_time(q, s->blks[b].min_ts, s->blks[b].max_ts))
                continue;
            uint64_t end = b + 1 < s->nblk ? s->blks[b + 1].off : s->size;
            scan_t sc = { fs, fd, s->blks[b].off, end, 0, 0, 0 };
            ev_record_t r;
            uint64_t at, expect = s->blks[b].seq;
            int st;
            /* A follower reads what the last refresh added: start there rather
             * than scan (and check) the block's earlier records again. */
            if (s->new_seq > expect && s->new_seq <= from) {
                sc.off = s->new_off;
                expect = s->new_seq;
            }
            /* Records before `from` get their frames checked only (checksum,
             * seq in order): they were checked in full when this reader indexed
             * them, or, in a sealed segment whose .idx it loaded, when the writer
             * appended them (validated events) or a scan indexed them; the
             * checksum says the bytes are still those (`verify` checks every
             * record in full). A record returned is checked in full again
             * (ev_record_parse), as every read promises. */
            while ((st = scan_next(&sc, &r, &at, false)) == SCAN_REC) {
                if (r.seq != expect) {
                    st = SCAN_BAD;
                    break;
                }
                if (r.seq < from) {
                    expect++;
                    continue;
                }
                const uint8_t *data = r.data;
                size_t len = r.len;
                if (ev_record_parse(data, len, &r) < 0) {
                    sc.off = at;
                    st = SCAN_BAD;
                    break;
                }
                expect++;
                if (visit(arg, &r))
                    return 0;
            }
            if (st != SCAN_END) {
                /* The file changed under us (or the disk returns other bytes than
                 * when we indexed it): damage. */
                ev__store_err(&fs->base,
                              "%s/%020" PRIu64 ".log offset %" PRIu64
                              ": %s record (seq %" PRIu64 " expected); reads stop here, "
                              "run oneblog-events verify",
                              fs->dir, s->first_seq, sc.off,
                              st == SCAN_IOERR ? "unreadable" : "corrupt", expect);
                return st == SCAN_IOERR ? -EIO : -EBADMSG;
            }
        }
    check_bad:
        /* A damaged segment ends early: whoever reads through it must hear of the
         * records it cannot give (a read starting later begins in a later segment). */
        if (s->bad_off) {
            ev__store_err(&fs->base,
                          "%s/%020" PRIu64 ".log offset %" PRIu64
                          ": corrupt record after seq %" PRIu64
                          "; reads stop here, run oneblog-events verify",
                          fs->dir, s->first_seq, s->bad_off, s->last_seq);
            return -EBADMSG;
        }
    }
    return 0;
}

typedef struct collect {
    ev_list_t *out;
    const ev_query_t *q;
    size_t max;
    size_t got;
} collect_t;

static bool on_read(void *arg, const ev_record_t *r)
{
    collect_t *c = arg;
    if (c->q && !ev_query_match(c->q, r))
        return false;
    ev_list_push(c->out, r->data, r->len);
    return ++c->got >= c->max;
}

static int file_read(ev_store_t *base, uint64_t from, size_t max, ev_list_t *out)
{
    file_store_t *fs = (file_store_t *)base;
    collect_t c = { out, NULL, max, 0 };
    int rc;
    if (from > store_last(fs) && (rc = refresh(fs)) < 0)
        return rc;
    return iterate(fs, from, NULL, on_read, &c);
}

static int file_query(ev_store_t *base, const ev_query_t *q, ev_list_t *out)
{
    file_store_t *fs = (file_store_t *)base;
    collect_t c = { out, q, q->limit, 0 };
    int rc;
    if ((rc = refresh(fs)) < 0)
        return rc;
    return iterate(fs, q->from_seq, q, on_read, &c);
}

static int file_last_seq(ev_store_t *base, uint64_t *out)
{
    file_store_t *fs = (file_store_t *)base;
    int rc = refresh(fs);
    *out = store_last(fs);
    return rc;
}

static int file_wait(ev_store_t *base, uint64_t after, int timeout_ms)
{
    file_store_t *fs = (file_store_t *)base;
    struct timespec t0, t;
    int rc;

    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if ((rc = refresh(fs)) < 0)
            return rc;
        if (store_last(fs) > after)
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int64_t el = (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000;
        if (el >= timeout_ms)
            return -ETIMEDOUT;
        int64_t nap = timeout_ms - el < fs->poll_ms ? timeout_ms - el : fs->poll_ms;
        struct timespec ts = { (time_t)(nap / 1000), (long)(nap % 1000) * 1000000 };
        nanosleep(&ts, NULL);
    }
}

/* ---------------------------------------------------------------------------------
 * Verify: re-read every segment from disk, independently of the index.
 * ------------------------------------------------------------------------------ */

static int file_verify(ev_store_t *base, ev_verify_cb cb, void *arg, ev_verify_stats_t *vs)
{
    file_store_t *fs = (file_store_t *)base;
    uint64_t *firsts = NULL;
    size_t n = 0;
    ev_chain_t chain;
    char where[512], what[512];
    int rc;

#define REPORT(seq_, ...)                                                              \
    do {                                                                               \
        snprintf(what, sizeof what, __VA_ARGS__);                                      \
        vs->problems++;                                                                \
        cb(arg, (seq_), where, what);                                                  \
    } while (0)

    ev_chain_init(&chain);
    if ((rc = list_segments(fs, &firsts, &n)) < 0) {
        ev__store_err(base, "%s: %s", fs->dir, strerror(-rc));
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        char *path = seg_path(fs, firsts[i], "log");
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        struct stat sb;
        uint8_t h[SEG_HDR_LEN];
        size_t got;
        bool last = i + 1 == n;

        snprintf(where, sizeof where, "%s", path);
        free(path);
        if (fd < 0 || fstat(fd, &sb) < 0) {
            REPORT(0, "cannot open: %s", strerror(errno));
            if (fd >= 0)
                close(fd);
            continue;
        }
        if (ev__file_read_full(fd, h, sizeof h, 0, &got) < 0 || got < SEG_HDR_LEN ||
            !header_ok(h, firsts[i])) {
            if (!(last && (uint64_t)sb.st_size <= SEG_HDR_LEN))
                REPORT(firsts[i], "bad segment header");
            close(fd);
            continue;
        }
        if (firsts[i] != chain.next_seq && chain.next_seq != 0)
            REPORT(firsts[i], "segment starts at seq %" PRIu64 " but %" PRIu64
                   " was expected (records missing)", firsts[i], chain.next_seq);
        scan_t sc = { fs, fd, SEG_HDR_LEN, (uint64_t)sb.st_size, 0, 0, 0 };
        ev_record_t r;
        uint64_t at;
        int st;
        for (;;) {
            st = scan_next(&sc, &r, &at, true);
            if (st == SCAN_REC) {
                uint64_t expect = chain.next_seq;
                int c = ev_chain_next(&chain, &r);
                snprintf(where, sizeof where, "%s/%020" PRIu64 ".log offset %" PRIu64, fs->dir,
                         firsts[i], at);
                vs->bytes += r.len;
                if (r.seq > vs->last_seq)
                    vs->last_seq = r.seq;
                if (c == -ERANGE)
                    REPORT(r.seq, "seq %" PRIu64 " where %" PRIu64 " was expected (%s)", r.seq,
                           expect, r.seq < expect ? "duplicate" : "records missing");
                else if (c == -EBADMSG)
                    REPORT(r.seq, "hash chain broken: prev is not the hash of the record "
                                  "before (a record was edited or removed)");
                else
                    vs->records++;
                continue;
            }
            if (st == SCAN_END)
                break;
            snprintf(where, sizeof where, "%s/%020" PRIu64 ".log offset %" PRIu64, fs->dir,
                     firsts[i], sc.off);
            if (st == SCAN_IOERR) {
                REPORT(0, "read error");
                break;
            }
            uint64_t next = find_valid_frame(fs, fd, sc.off + 1, (uint64_t)sb.st_size);
            if (next == 0 && st == SCAN_PAD)
                break; /* the writer's preallocated zeros (or left by a crash) */
            if (next == 0 && last) {
                /* An incomplete append at the very end: never acknowledged, cut off
                 * by the writer when it opens the log. Not damage. */
                vs->torn_tail_bytes = (uint64_t)sb.st_size - sc.off;
                break;
            }
            if (next == 0) {
                REPORT(chain.next_seq, "corrupt record (checksum or structure), %" PRIu64
                       " bytes to the end of the segment unreadable",
                       (uint64_t)sb.st_size - sc.off);
                break;
            }
            REPORT(chain.next_seq, "corrupt record (checksum or structure); skipped %" PRIu64
                   " bytes to the next valid record at offset %" PRIu64, next - sc.off, next);
            /* Resume after the damage without reporting its consequences again. */
            sc.off = next;
            sc.blen = 0;
            chain.next_seq = 0;
            chain.have_hash = false;
        }
        close(fd);
    }
    rc = vs->problems ? -EBADMSG : 0;
out:
    free(firsts);
    return rc;
#undef REPORT
}

const ev_store_ops_t ev_store_file_ops = {
    .scheme = "file",
    .open = file_open,
    .close = file_close,
    .append = file_append,
    .last_seq = file_last_seq,
    .read = file_read,
    .query = file_query,
    .wait = file_wait,
    .verify = file_verify,
};
