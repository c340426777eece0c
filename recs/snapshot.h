/* snapshot.h - a content index as a read-only file, for replay.
 *
 * The recs server writes the snapshot of every index it builds into a directory
 * (ONEBLOG_RECS_SNAPSHOTS), named DIGEST.snap after the index digest (the
 * candidates digest its recs.request events log), so a logged request names the
 * exact content it was answered from. The file is one BSON document:
 *
 *   { format: "oneblog-recs-snapshot", version: 1, digest: hex,
 *     posts: [ { id: Int64, slug, title, tags: [name], plaintext,
 *                published_at: Int64 (s) } ] }
 *
 * Written to a temporary name, fsynced, then renamed and the directory fsynced (a
 * reader never sees half a file, a crash loses no acknowledged snapshot); an
 * existing snapshot is never rewritten. Read back, the digest is
 * recomputed and must match the name.
 */
#ifndef ONEBLOG_RECS_SNAPSHOT_H
#define ONEBLOG_RECS_SNAPSHOT_H

#include <stddef.h>

#include "recs/model.h"

#define RECS_SNAPSHOT_MAX (256u << 20) /* bytes */

/* Write ix to DIR/DIGEST.snap (creating DIR, one level). Blocking file I/O: from a
 * process, call through cn_blocking. Returns 0 (also when it already existed), or
 * a negative errno with text in err. */
int recs_snapshot_write(const recs_index_t *ix, const char *dir, char *err, size_t errlen);

/* Read the snapshot at path (opened O_RDONLY) into a new index. Returns 0 and *out,
 * -ENOENT, -EBADMSG (not a snapshot, or its digest does not match its content),
 * -EFBIG, -EIO; text in err. */
int recs_snapshot_read(const char *path, recs_index_t **out, char *err, size_t errlen);

/* DIR/DIGEST.snap into out. */
void recs_snapshot_path(const char *dir, const char *digest, char *out, size_t len);

#endif /* ONEBLOG_RECS_SNAPSHOT_H */
