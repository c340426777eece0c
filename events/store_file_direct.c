/* store_file_direct.c - how the file store's appends reach the disk: through an
 * O_DIRECT descriptor into the preallocated zeros ("Direct appends"), and made
 * durable by a flush of the device's cache where only the segment's mtime
 * changed ("Syncing by a device flush"). store_file.c decides when (synced,
 * preallocated appends; meta_dirty) and does the rest of the log. */
#include "events/store_file_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "events/store_file.h"

/* The test hook for the O_DIRECT open (ev_store_file_set_open_direct). */
static int (*io_open_direct)(const char *, int);

void ev_store_file_set_open_direct(int (*op)(const char *path, int flags))
{
    io_open_direct = op;
}

/* ---------------------------------------------------------------------------------
 * Syncing by a device flush
 *
 * A direct append (see "Direct appends" below) into the zeros is on the device
 * when its pwrite returns: the device's volatile cache is all that is left to
 * flush. The segment's fdatasync does that flush, and on ext4 without a journal
 * (the development VM, and CI machines of its kind) it also writes the segment's
 * inode: every write moves the mtime (at the 4 ms clock tick), that dirties the
 * block of the inode table that holds the inode, and the no-journal fsync writes
 * the file's inode block whenever it is dirty, fdatasync or not. That is one more
 * synchronous 4 KiB device write per paced append, a third of the disk's floor of
 * a paced recommendation (probe, 4 KiB direct overwrite + sync, 5 ms apart, p50:
 * the segment's fdatasync 198-232 us, another file's 159, the write alone 94-106).
 *
 * POSIX asks fdatasync for the data and for the metadata needed to read it back
 * (the size, the blocks), not for the mtime; ext4 with a journal and XFS leave a
 * timestamp-only change out of fdatasync. So where nothing but the mtime changed
 * since the segment's last sync - the batch went O_DIRECT into zeros that were
 * written and synced before, inside the file's size (meta_dirty false) - the
 * writer makes it durable with the fdatasync of another file on the same file
 * system: DIR/FLUSH, empty and never written, so its fsync writes nothing and
 * ends with the cache flush (ext4 issues it on every fsync unless mounted
 * nobarrier, where no fsync flushes). What a power cut can cost is the segment's
 * mtime, nothing a reader uses. EVENTS_URL sync_mtime=on keeps the segment's
 * fdatasync for every append.
 *
 * The conditions, each checked rather than assumed:
 * - ext4 without a journal (statfs magic; no /proc/fs/jbd2 entry for the
 *   device): with a journal the segment's fdatasync already leaves the mtime out,
 *   so there is nothing to gain. Elsewhere the segment's fdatasync stays.
 * - FLUSH is a regular file on the segment's device (not a symlink, not a FIFO)
 *   whose inode is in another inode-table block than the segment's: the
 *   no-journal fsync writes its file's inode block when it is dirty, and the
 *   segment's mtime dirties that block when they share it (the probe: 204 us
 *   against 159 far apart). Files made together get neighbouring inodes, so
 *   FLUSH is picked from candidates (flush_pick) at open and at each new segment.
 * - Each append, the write's range of the segment has no dirty or writeback page
 *   (cachestat(2), Linux 6.5): ext4 quietly takes O_DIRECT through the page
 *   cache for some inodes (data=journal, encryption without inline crypto,
 *   verity), and such pages would wait for the segment's own fsync; then that
 *   append uses it. Without cachestat, no device flush.
 * - Each append, no writeback error is pending on the segment
 *   (sync_file_range(WAIT_AFTER) reports the file's error sequence without
 *   writing anything: a direct write that ext4 completed through the cache
 *   records its I/O error there, not in the pwrite's result).
 * - A sync that follows a change of size or blocks (meta_dirty) is the
 *   segment's full fsync, not fdatasync: every later flush-synced append leans
 *   on that inode being on disk, and older kernels' no-journal fdatasync may
 *   leave out an inode block dirtied only through ext4_mark_inode_dirty (a new
 *   i_disksize; recent ones write the inode in every no-journal fsync). Once
 *   per preallocate / 2 bytes, so it costs nothing measurable.
 * ------------------------------------------------------------------------------ */

#define FLUSH_PROBES 64   /* candidate names FLUSH.0..63 (> 4096 / 128 + 2: see flush_pick) */

#ifndef __NR_cachestat
#define __NR_cachestat 451 /* the same number on every architecture (Linux 6.5) */
#endif

/* cachestat(2)'s argument and result (linux/mman.h from 6.5; Debian 12's headers
 * predate it). */
struct ob_cachestat_range {
    uint64_t off, len;
};
struct ob_cachestat {
    uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

/* The pages of [off, off + len) of fd that are dirty or under writeback, or -1
 * with errno (ENOSYS before Linux 6.5). */
static long cached_unwritten(int fd, uint64_t off, uint64_t len)
{
    struct ob_cachestat_range r = { off, len };
    struct ob_cachestat cs;
    if (syscall(__NR_cachestat, fd, &r, &cs, 0) < 0)
        return -1;
    return (long)(cs.nr_dirty + cs.nr_writeback);
}

/* ext4's smallest inode is 128 bytes, so a block of the inode table holds at most
 * bsize / 128, and a group's table is whole blocks: different quotients are
 * different blocks (the same quotient may still be two blocks with larger inodes:
 * "near" errs on the safe side). */
bool ev_store_file_inodes_near(uint64_t a, uint64_t b, uint64_t bsize)
{
    uint64_t per = bsize / 128 ? bsize / 128 : 1;
    return (a - 1) / per == (b - 1) / per;
}

/* Does the block device under dev carry an ext4 journal (/proc/fs/jbd2/NAME-8)?
 * false when it cannot be told (no /sys or /proc): the device flush is sound
 * with a journal too, only worth nothing there. */
static bool dev_has_journal(dev_t dev)
{
    char link[PATH_MAX], target[PATH_MAX], jbd[PATH_MAX + 32];
    struct stat st;
    snprintf(link, sizeof link, "/sys/dev/block/%u:%u", major(dev), minor(dev));
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    const char *name = strrchr(target, '/');
    snprintf(jbd, sizeof jbd, "/proc/fs/jbd2/%s-8", name ? name + 1 : target);
    return stat(jbd, &st) == 0;
}

/* Open path (O_CREAT, plus O_EXCL when excl) as a flush file candidate: a regular
 * file on device dev, never through a symlink, never blocking on a FIFO; its
 * inode in *ino. -1 with errno (EINVAL: something else is there). */
static int flush_open(const char *path, bool excl, dev_t dev, uint64_t *ino)
{
    int flags = O_RDONLY | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | (excl ? O_EXCL : 0);
    struct stat st;
    int fd = open(path, flags, 0644);
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_dev != dev) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    *ino = (uint64_t)st.st_ino;
    return fd;
}

static void flush_sweep(file_store_t *fs)
{
    char path[PATH_MAX];
    for (int i = 0; i < FLUSH_PROBES; i++) {
        snprintf(path, sizeof path, "%s/" FLUSH_NAME ".%d", fs->dir, i);
        unlink(path);
    }
}

/* Make fs->ffd a flush file whose inode is far from the segment's (seg): DIR/FLUSH
 * as it is, or else the first far one of candidates FLUSH.0, FLUSH.1, ... (made
 * and held open together, so each takes a new inode: ext4 gives the lowest free
 * one in the group, so within bsize / 128 + 1 of them one is in another block),
 * renamed to FLUSH. The rename needs no sync: a FLUSH lost to a crash is picked
 * again at open. Leftover candidates (a crash in here) go at the writer's first
 * pick. Returns false with why filled when there is none. */
static bool flush_pick(file_store_t *fs, const struct stat *seg, uint64_t bsize, char *why,
                       size_t whylen)
{
    int probe[FLUSH_PROBES];
    size_t np = 0, max = bsize / 128 + 2 < FLUSH_PROBES ? bsize / 128 + 2 : FLUSH_PROBES;
    char path[PATH_MAX], to[PATH_MAX];
    uint64_t segino = (uint64_t)seg->st_ino, ino;
    bool found = false;

    if (!fs->flush_swept) {
        flush_sweep(fs);
        fs->flush_swept = true;
    }
    if (fs->ffd >= 0 && !ev_store_file_inodes_near(fs->ffd_ino, segino, bsize))
        return true;
    snprintf(to, sizeof to, "%s/" FLUSH_NAME, fs->dir);
    if (fs->ffd < 0) {
        fs->ffd = flush_open(to, false, seg->st_dev, &fs->ffd_ino);
        if (fs->ffd >= 0 && !ev_store_file_inodes_near(fs->ffd_ino, segino, bsize))
            return true;
        if (fs->ffd < 0 && errno != EINVAL && errno != ELOOP) {
            snprintf(why, whylen, "%s: %s", to, strerror(errno));
            return false;
        }
        /* Not a regular file of ours (a symlink, a FIFO...): replaced below. */
    }
    while (np < max && !found) {
        snprintf(path, sizeof path, "%s/" FLUSH_NAME ".%zu", fs->dir, np);
        int fd = flush_open(path, true, seg->st_dev, &ino);
        if (fd < 0) {
            snprintf(why, whylen, "%s: %s", path, strerror(errno));
            break;
        }
        if (ev_store_file_inodes_near(ino, segino, bsize)) {
            probe[np++] = fd;
            continue;
        }
        if (rename(path, to) < 0) {
            snprintf(why, whylen, "rename %s: %s", path, strerror(errno));
            close(fd);
            break;
        }
        if (fs->ffd >= 0)
            close(fs->ffd);
        fs->ffd = fd;
        fs->ffd_ino = ino;
        found = true;
    }
    if (!found && np == max)
        snprintf(why, whylen, "no " FLUSH_NAME " apart from the segment's inode in %zu tries", max);
    for (size_t i = 0; i < np; i++) {
        snprintf(path, sizeof path, "%s/" FLUSH_NAME ".%zu", fs->dir, i);
        unlink(path);
        close(probe[i]);
    }
    return found;
}

/* The active segment was just attached for direct appends (its note in io_note):
 * decide whether its appends may be synced by FLUSH's fdatasync. */
static void flush_attach(file_store_t *fs)
{
    struct statfs sf;
    struct stat st;
    char why[PATH_MAX + 64] = "";

    fs->flush_on = false;
    fs->meta_dirty = true; /* until the segment's own sync says otherwise */
    if (fs->sync_mtime)
        snprintf(why, sizeof why, "sync_mtime=on");
    else if (fstatfs(fs->fd, &sf) < 0 || fstat(fs->fd, &st) < 0 || sf.f_type != EXT4_SUPER_MAGIC)
        snprintf(why, sizeof why, "not ext4");
    else if (dev_has_journal(st.st_dev))
        snprintf(why, sizeof why, "ext4 with a journal, whose fdatasync leaves the mtime out");
    else if (cached_unwritten(fs->fd, 0, 4096) < 0)
        snprintf(why, sizeof why, "no cachestat(2): %s", strerror(errno));
    else
        fs->flush_on = flush_pick(fs, &st, sf.f_bsize ? (uint64_t)sf.f_bsize : 4096, why,
                                  sizeof why);
    size_t len = strlen(fs->base.io_note);
    if (fs->flush_on)
        snprintf(fs->base.io_note + len, sizeof fs->base.io_note - len,
                 ", synced by a device cache flush: " FLUSH_NAME "'s fdatasync");
    else
        snprintf(fs->base.io_note + len, sizeof fs->base.io_note - len, ", then fdatasync: %s",
                 why);
}

/* May this append (its direct write just done) be synced by FLUSH? */
bool ev__file_flush_ok(file_store_t *fs)
{
    return fs->direct && fs->flush_on && !fs->meta_dirty &&
           cached_unwritten(fs->fd, fs->dio_off, fs->dio_len) == 0;
}

/* ---------------------------------------------------------------------------------
 * Direct appends
 *
 * When appends are synced and preallocated (the defaults), the writer writes its
 * batches through a second descriptor on the active segment, opened O_DIRECT: the
 * write goes from the batch's memory to the device, and the fdatasync after it
 * only has the device's cache to flush (and, on the development VM's ext4, one
 * 4 KiB metadata block to write). A buffered pwrite + fdatasync has to
 * find the dirty pages, start their writeback and wait for it (figures in the
 * file's header).
 *
 * O_DIRECT writes whole blocks from aligned memory, so the writer keeps a copy of
 * the active segment's last, partial block (`tail`): an append copies its frames
 * after that copy and writes from the block's start to the end of the block that
 * holds its last byte, zeros after the data (as the preallocated zeros it
 * overwrites). Rewriting the head of the block is safe against a torn write: its
 * bytes are the acknowledged data already on disk, rewritten identical, so
 * whichever sectors of the write a power cut lets through, the acknowledged
 * records read the same; only the new frames, never acknowledged, can be torn,
 * and recovery cuts them off. The block is the file system's (fstatvfs f_bsize,
 * a multiple of the device's logical block): whole blocks are plain overwrites
 * (ext4 zeroes around a sub-block direct write and serialises it).
 *
 * Readers keep using buffered reads: the kernel drops the page cache over the
 * range of a direct write when it completes, so a reader's next read comes from
 * the device and sees the new data (the follow tests read after every append).
 * That costs a follower a device read per refresh: reading one new 1.4 KB record
 * right after its append took 128 us p50 against 27 us from the cache; with a
 * follower reading every commit, bench-events' file log ran at 124k-281k
 * events/s direct against 137k-332k buffered (9 interleaved runs, busy disk).
 * The zeros ahead of the data are still written through the page cache (once
 * per preallocate/2 bytes); fdatasync covers both descriptors' writes (it is per
 * file). Where O_DIRECT is refused (EINVAL: a file system without it), or with
 * fsync=none, preallocate=0 or direct=off, appends stay buffered; io_note says
 * which mode a writer uses.
 * ------------------------------------------------------------------------------ */

/* Writes go buffered from now on; why goes to io_note. */
void ev__file_direct_off(file_store_t *fs, const char *why)
{
    fs->direct = false;
    if (fs->dfd >= 0)
        close(fs->dfd);
    fs->dfd = -1;
    snprintf(fs->base.io_note, sizeof fs->base.io_note, "buffered (%s)", why);
}

/* Room for n bytes at fs->tail, keeping its first block (the partial block's data). */
static int tail_reserve(file_store_t *fs, size_t n)
{
    void *p;
    if (n <= fs->tail_cap)
        return 0;
    size_t cap = fs->tail_cap ? 2 * fs->tail_cap : 16 * fs->dio_blk;
    while (cap < n)
        cap *= 2;
    if (posix_memalign(&p, fs->dio_blk, cap) != 0)
        return -ENOMEM;
    if (fs->tail)
        memcpy(p, fs->tail, fs->dio_blk);
    free(fs->tail);
    fs->tail = p;
    fs->tail_cap = cap;
    return 0;
}

/* Point the direct path at the active segment (fs->fd, at `path`, its data
 * ending at `size`): open it O_DIRECT and load the data of its last, partial
 * block. On failure the writer falls back to buffered appends. */
void ev__file_direct_attach(file_store_t *fs, const char *path, uint64_t size)
{
    char why[128];
    size_t got;

    if (fs->dfd >= 0)
        close(fs->dfd);
    fs->dfd = -1;
    if (!fs->direct)
        return;
    int flags = O_WRONLY | O_DIRECT | O_CLOEXEC;
    fs->dfd = io_open_direct ? io_open_direct(path, flags) : open(path, flags);
    if (fs->dfd < 0) {
        snprintf(why, sizeof why, "O_DIRECT refused: %s", strerror(errno));
        ev__file_direct_off(fs, why);
        return;
    }
    if (fs->dio_blk == 0) {
        struct statvfs v;
        unsigned long b = fstatvfs(fs->fd, &v) == 0 ? v.f_bsize : 0;
        fs->dio_blk = b >= 512 && b <= 65536 && (b & (b - 1)) == 0 ? (size_t)b : 4096;
    }
    uint64_t toff = size & ~(uint64_t)(fs->dio_blk - 1);
    if (tail_reserve(fs, fs->dio_blk) < 0) {
        ev__file_direct_off(fs, "no memory for the tail block");
        return;
    }
    int rc = ev__file_read_full(fs->fd, fs->tail, (size_t)(size - toff), toff, &got);
    if (rc < 0 || got != size - toff) {
        snprintf(why, sizeof why, "reading the tail block: %s",
                 rc < 0 ? strerror(-rc) : "short read");
        ev__file_direct_off(fs, why);
        return;
    }
    snprintf(fs->base.io_note, sizeof fs->base.io_note,
             "direct (O_DIRECT appends in %zu-byte blocks", fs->dio_blk);
    flush_attach(fs);
    size_t len = strlen(fs->base.io_note);
    snprintf(fs->base.io_note + len, sizeof fs->base.io_note - len, ")");
}

/* Write the batch [start, start + len) through the O_DIRECT descriptor: from the
 * start of the block holding `start` (its head from the tail copy: the same bytes
 * again) to the end of the block holding the batch's last byte (zeros after it).
 * The tail copy keeps its head: direct_commit moves it on once the batch counts. */
int ev__file_direct_write(file_store_t *fs, uint64_t start, const void *data, size_t len)
{
    size_t blk = fs->dio_blk;
    uint64_t toff = start & ~(uint64_t)(blk - 1);
    size_t head = (size_t)(start - toff);
    size_t n = (head + len + blk - 1) & ~(blk - 1);
    int rc;

    if ((rc = tail_reserve(fs, n)) < 0)
        return rc;
    memcpy(fs->tail + head, data, len);
    memset(fs->tail + head + len, 0, n - head - len);
    if ((rc = ev__file_write_all(fs->dfd, fs->tail, n, toff)) < 0)
        return rc;
    fs->dio_off = toff;
    fs->dio_len = n;
    if (toff + n > fs->alloc_end) {
        fs->alloc_end = toff + n; /* past the zeros: a batch larger than them */
        fs->meta_dirty = true;
    }
    return 0;
}

/* The batch [start, end) is durable: the tail copy becomes end's partial block. */
void ev__file_direct_commit(file_store_t *fs, uint64_t start, uint64_t end)
{
    uint64_t mask = ~(uint64_t)(fs->dio_blk - 1);
    uint64_t from = (end & mask) - (start & mask);
    if (from > 0)
        memmove(fs->tail, fs->tail + from, (size_t)(end - (end & mask)));
}

