/* store_file.h - what the file backend offers beyond the store interface: hooks
 * for fault-injection tests, and the inode test its device-flush syncs rest on. */
#ifndef ONEBLOG_EVENTS_STORE_FILE_H
#define ONEBLOG_EVENTS_STORE_FILE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Replace the pwrite and fdatasync the file store uses (NULL restores the real
 * ones), to simulate a full disk or a failing sync. Process-wide; for tests only,
 * set while no file store is in use on another thread. */
void ev_store_file_set_io(ssize_t (*pw)(int, const void *, size_t, off_t), int (*sync)(int));

/* Replace the open() of a segment for direct (O_DIRECT) appends (NULL restores
 * it): a hook returning -1 with errno = EINVAL plays a file system that refuses
 * O_DIRECT. Same rules as ev_store_file_set_io. */
void ev_store_file_set_open_direct(int (*op)(const char *path, int flags));

/* Could inodes a and b of an ext4 file system with bsize-byte blocks share a
 * block of the inode table? Conservative: false only when they cannot. The writer
 * syncs appends by a device flush through a file whose inode is not near the
 * active segment's (store_file.c, "Syncing by a device flush"); bench-recs
 * measures that floor the same way. */
bool ev_store_file_inodes_near(uint64_t a, uint64_t b, uint64_t bsize);

#endif /* ONEBLOG_EVENTS_STORE_FILE_H */
