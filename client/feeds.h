/* feeds.h - RSS 2.0, Atom 1.0, JSON Feed 1.1 and sitemaps from CMS content.
 *
 * Pure functions: posts in, document text out (appended to a buf_t). Text is
 * escaped for XML, characters XML 1.0 forbids (most C0 controls) are dropped, and
 * invalid UTF-8 is replaced with U+FFFD, so a feed is well-formed whatever an
 * editor typed. The client caches the results like pages.
 */
#ifndef ONEBLOG_CLIENT_FEEDS_H
#define ONEBLOG_CLIENT_FEEDS_H

#include <stdint.h>

#include "../common/buf.h"
#include "../proto/proto.h"

/* One feed: the site, or a tag's or an author's posts. */
typedef struct feed {
    const proto_settings_t *site; /* title, description, url (no trailing slash) */
    const char *title;            /* the feed's title (e.g. "Site – Tag") */
    const char *description;
    const char *link;             /* the HTML page this feed mirrors (absolute) */
    const char *self_url;         /* this feed's own URL (absolute) */
    const proto_post_t *posts;    /* newest first; html used as content */
    int nposts;
    int64_t updated;              /* s since the epoch: newest change; 0 = now */
} feed_t;

void feeds_rss(buf_t *out, const feed_t *f);
void feeds_atom(buf_t *out, const feed_t *f);
void feeds_json(buf_t *out, const feed_t *f);

/* Sitemaps: at most FEEDS_SITEMAP_MAX URLs per file. With more entries, the
 * sitemap is an index (feeds_sitemap_index) of pages /sitemap-N.xml (1-based). */
#define FEEDS_SITEMAP_MAX 50000

int feeds_sitemap_pages(int nentries);
/* The urlset of page `page` (1-based; all entries when there is one page). */
void feeds_sitemap(buf_t *out, const char *base_url, const proto_sitemap_entry_t *e, int n,
                   int page);
void feeds_sitemap_index(buf_t *out, const char *base_url, int pages, int64_t lastmod);

/* Dates: RFC 822 for RSS ("Fri, 20 Nov 2026 09:00:00 +0000") and RFC 3339 UTC
 * for the others ("2026-11-20T09:00:00Z"). out must hold 40 bytes. */
void feeds_rfc822(int64_t t, char *out);
void feeds_rfc3339(int64_t t, char *out);
/* t (s since the epoch, UTC) as year, month 1-12, day 1-31 and seconds into the day. */
void feeds_civil(int64_t t, int *y, int *m, int *d, int *secs);

/* Append s escaped for XML text and attributes (see the file comment). */
void feeds_xml_escape(buf_t *out, const char *s);

#endif /* ONEBLOG_CLIENT_FEEDS_H */
