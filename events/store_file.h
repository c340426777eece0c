/* store_file.h - what the file backend offers beyond the store interface: a hook
 * for fault-injection tests. */
#ifndef ONEBLOG_EVENTS_STORE_FILE_H
#define ONEBLOG_EVENTS_STORE_FILE_H

#include <sys/types.h>

/* Replace the pwrite and fdatasync the file store uses (NULL restores the real
 * ones), to simulate a full disk or a failing sync. Process-wide; for tests only,
 * set while no file store is in use on another thread. */
void ev_store_file_set_io(ssize_t (*pw)(int, const void *, size_t, off_t), int (*sync)(int));

#endif /* ONEBLOG_EVENTS_STORE_FILE_H */
