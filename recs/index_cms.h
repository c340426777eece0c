/* index_cms.h - building the content index from a `cms` server over RPC.
 *
 * list_posts pages (100 a page) give the published posts' ids and slugs; each
 * post's body comes from get_post (list replies are summaries without plaintext).
 * Pages are not in the index. From a process: every step is a gen_server call.
 */
#ifndef ONEBLOG_RECS_INDEX_CMS_H
#define ONEBLOG_RECS_INDEX_CMS_H

#include <stddef.h>
#include <stdint.h>

#include "cnode/gen_server.h"
#include "recs/model.h"

/* Fetch every published post from the `cms` server at dest (each call waits up to
 * timeout_ms) into a new index, and the content version read before the first
 * page (a change during the fetch gives a newer version, hence another rebuild).
 * Returns 0 and *out, *version; or a call error (-ESRCH, -ETIMEDOUT,
 * -EHOSTUNREACH...) or -EPROTO for a reply that does not decode, with text in err. */
int recs_index_from_cms(cn_dest_t cms, int64_t timeout_ms, recs_index_t **out,
                        int64_t *version, char *err, size_t errlen);

/* {subscribe, self()} to the cms at dest: content_changed messages follow. */
int recs_cms_subscribe(cn_dest_t cms, int64_t timeout_ms);

#endif /* ONEBLOG_RECS_INDEX_CMS_H */
