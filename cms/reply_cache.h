/* reply_cache.h - encoded `cms` read replies, kept per content version.
 *
 * A reader that answers a cacheable request (rpc.c) reads the content version in
 * its pool job and looks the request up by its encoded term; a hit appends the
 * stored reply bytes and skips the statements and the encoding. Entries belong to
 * one content version: the first lookup or store under a newer version empties the
 * cache. Every write readers can see bumps the version in the database (on
 * PostgreSQL shared by every node), so a reply is never older than its version.
 *
 * Thread-safe (one mutex): readers' pool jobs run on several threads at once.
 */
#ifndef CMS_REPLY_CACHE_H
#define CMS_REPLY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ei.h>

typedef struct cms_reply_cache cms_reply_cache_t;

/* A cache holding at most max_bytes of keys and replies (when full, it empties
 * and starts again). Aborts on allocation failure (xmalloc). */
cms_reply_cache_t *cms_reply_cache_new(size_t max_bytes);
void cms_reply_cache_free(cms_reply_cache_t *c);

/* On a hit for (version, key), appends the stored reply to out and returns true. */
bool cms_reply_cache_get(cms_reply_cache_t *c, int64_t version, const char *key,
                         size_t klen, ei_x_buff *out);

/* Stores a copy of reply[0..rlen) for (version, key). Ignored when an entry for
 * a newer version has been stored meanwhile. */
void cms_reply_cache_put(cms_reply_cache_t *c, int64_t version, const char *key, size_t klen,
                         const char *reply, size_t rlen);

#endif
