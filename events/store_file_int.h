/* store_file_int.h - what the files of the file store share (store_file.c: the
 * log, its segments, recovery, reads; store_file_direct.c: how appends reach the
 * disk, through O_DIRECT and a device flush): the store's state and the few
 * functions one calls in the other. Not part of the events library's API. */
#ifndef ONEBLOG_EVENTS_STORE_FILE_INT_H
#define ONEBLOG_EVENTS_STORE_FILE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "events/store.h"

#define FLUSH_NAME "FLUSH"   /* DIR/FLUSH: see store_file_direct.c */

typedef struct blk {
    uint64_t seq;    /* first seq of the block */
    uint64_t off;    /* its frame's offset in the segment */
    int64_t min_ts;  /* ms */
    int64_t max_ts;
} blk_t;

typedef struct seg {
    uint64_t first_seq;
    uint64_t last_seq;   /* first_seq - 1 while empty */
    uint64_t size;       /* bytes of the valid prefix: header + whole records */
    uint64_t bad_off;    /* 0, or where a corrupt frame stops the valid prefix */
    int64_t min_ts, max_ts;
    blk_t *blks;
    size_t nblk, capblk;
    uint8_t last_hash[EV_HASH_LEN]; /* of its last record, when not empty */
    uint64_t new_seq, new_off; /* the first record the last scan or append added and
                                  its frame's offset (0 = none): where a follower's
                                  next read starts, instead of its block's start */
} seg_t;

typedef struct file_store {
    ev_store_t base;
    char *dir;
    int lockfd;            /* writer: holds flock(LOCK_EX) on DIR/LOCK */
    int fd;                /* writer: the active (last) segment, O_RDWR */
    int rfd;               /* read fd cache: segment rseg, or -1 */
    size_t rseg;
    seg_t *segs;
    size_t nseg, capseg;
    uint64_t seg_max;      /* roll when a batch would take a segment beyond (bytes) */
    uint64_t prealloc;     /* writer: zeros to keep ahead of the data (bytes); 0 = off */
    uint64_t alloc_end;    /* writer: the active segment's durable size, zeros past
                              the data included (bytes) */
    bool direct;           /* writer: appends go through dfd (store_file_direct.c) */
    int dfd;               /* writer, direct: the active segment opened O_DIRECT */
    uint8_t *tail;         /* writer, direct: the data of the active segment's last,
                              partial block (from its start, aligned), then room for
                              a batch (aligned to dio_blk) */
    size_t tail_cap;       /* bytes at tail (a multiple of dio_blk) */
    size_t dio_blk;        /* writer, direct: direct writes start and end on multiples */
    int ffd;               /* writer: DIR/FLUSH, whose fdatasync is the device flush
                              that syncs direct appends (see "Syncing by a device
                              flush"), or -1 */
    uint64_t ffd_ino;      /* writer: its inode number */
    bool flush_on;         /* writer: the active segment's appends may be synced by it */
    bool flush_swept;      /* writer: leftover FLUSH.N candidates removed */
    uint64_t dio_off, dio_len; /* writer, direct: the last direct write's range */
    bool sync_mtime;       /* writer: EVENTS_URL sync_mtime=on: every sync is the
                              segment's fdatasync */
    bool meta_dirty;       /* writer: the active segment's size or blocks changed since
                              its last fdatasync (or not known not to) */
    int poll_ms;
    bool failed;           /* writer: an I/O error left the on-disk state unknown */
    buf_t wbuf;            /* writer: the batch being written */
    uint8_t *rbuf;         /* scan buffer */
    size_t rcap;
} file_store_t;

/* pwrite all n bytes at off (through the fault-injection hook), or -errno. */
int ev__file_write_all(int fd, const void *p, size_t n, uint64_t off);

/* pread up to n bytes at off; *got says how many (fewer at the end of the file).
 * 0 or -errno. */
int ev__file_read_full(int fd, void *p, size_t n, uint64_t off, size_t *got);

/* Direct appends (store_file_direct.c). Writer only. */

/* Appends go buffered from now on; why goes to io_note. */
void ev__file_direct_off(file_store_t *fs, const char *why);

/* Point the direct path at the active segment (fs->fd, at path, its data ending
 * at size) and decide whether its appends may be synced by a device flush; the
 * outcome goes to io_note. On failure the writer falls back to buffered appends. */
void ev__file_direct_attach(file_store_t *fs, const char *path, uint64_t size);

/* Write the batch [start, start + len) through the O_DIRECT descriptor, its first
 * block's head from the tail copy. 0 or -errno; sets meta_dirty when the write
 * goes past the zeros. */
int ev__file_direct_write(file_store_t *fs, uint64_t start, const void *data, size_t len);

/* The batch [start, end) is durable: the tail copy becomes end's partial block. */
void ev__file_direct_commit(file_store_t *fs, uint64_t start, uint64_t end);

/* May the append whose direct write just ended be synced by FLUSH's fdatasync
 * (fs->ffd) instead of the segment's? */
bool ev__file_flush_ok(file_store_t *fs);

#endif /* ONEBLOG_EVENTS_STORE_FILE_INT_H */
