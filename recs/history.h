/* history.h - what readers read, from page.view events: each reader's recent
 * reads (newest first, distinct) and the view count of every post.
 *
 * Fed in log order (seq) by whoever follows the event log: the recs server's
 * follower, and replay, which recounts the views of a logged request's seq range
 * from the log. Counts are integers, so the same events give the same counts
 * whatever the batching.
 *
 * page.view events: actor = the reader id, data.post = the post's slug
 * (data.recs_event = the recs.request id when the page showed recommendations).
 *
 * Memory: at most max_readers readers' histories are kept (about 300 bytes
 * each); a new reader beyond that takes the place of the one whose last view is
 * the oldest (least recently used). Every view counts for popularity either way,
 * and replay does not depend on it: a recs.request event logs the history it
 * used.
 */
#ifndef ONEBLOG_RECS_HISTORY_H
#define ONEBLOG_RECS_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include "recs/model.h"

typedef struct recs_history recs_history_t;

/* max_readers: histories kept (0: 1,000,000). */
recs_history_t *recs_history_new(size_t max_readers);
void recs_history_free(recs_history_t *h); /* NULL allowed */

/* One page view. Strings are copied. Returns the slug's new view count. */
uint32_t recs_history_view(recs_history_t *h, const char *reader, const char *slug);

/* The reader's recent reads, newest first, at most max (<= RECS_HISTORY_MAX), into
 * out (borrowed strings, valid until the history is freed). Returns the count. */
int recs_history_get(const recs_history_t *h, const char *reader, const char **out, int max);

/* Views of a slug so far (0 if never seen). */
uint32_t recs_history_views(const recs_history_t *h, const char *slug);

/* Fill views[0..ix->n) with the counts of the index's posts. */
void recs_history_fill_views(const recs_history_t *h, const recs_index_t *ix, uint32_t *views);

/* Readers tracked, and readers dropped so far to make room for new ones. */
size_t recs_history_readers(const recs_history_t *h);
uint64_t recs_history_evicted(const recs_history_t *h);

#endif /* ONEBLOG_RECS_HISTORY_H */
