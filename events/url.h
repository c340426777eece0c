/* url.h - parsing EVENTS_URL, which picks the event store and its options.
 *
 *   file:./data/events?fsync=always|none|<N>ms&segment_bytes=67108864&preallocate=1048576&direct=on|off
 *   mongodb://127.0.0.1:27017/oneblog?w=majority&journal=true&collection=events
 *   postgres://user@127.0.0.1:5432/oneblog?table=events
 *
 * Options the event log understands (fsync, segment_bytes, preallocate, direct, collection,
 * table, poll_ms) are taken
 * out of the query string; the rest is handed to the driver unchanged (libmongoc
 * understands w, journal, wtimeoutMS...; libpq sslmode, connect_timeout...).
 */
#ifndef ONEBLOG_EVENTS_URL_H
#define ONEBLOG_EVENTS_URL_H

#include <stddef.h>

#define EV_URL_MAX_OPTS 16

typedef struct ev_url {
    char *scheme;      /* "file", "mongodb", "postgres" ("postgresql" normalised) */
    char *path;        /* file: the directory; others: NULL */
    char *driver_url;  /* mongodb/postgres: the URL without our options */
    int nopts;
    char *keys[EV_URL_MAX_OPTS]; /* our options, in order of appearance */
    char *vals[EV_URL_MAX_OPTS];
} ev_url_t;

/* The URL used when EVENTS_URL is unset: the embedded log under ./data/events. */
#define EV_URL_DEFAULT "file:./data/events"

/* Parse `text` into *out. Returns 0, or -EINVAL with a message in err (errlen
 * bytes) for an unknown scheme, an empty path or a malformed option. */
int ev_url_parse(const char *text, ev_url_t *out, char *err, size_t errlen);
void ev_url_free(ev_url_t *u); /* NULL allowed; leaves *u zeroed */

/* Our option `key`, or def when absent. Borrowed from u. */
const char *ev_url_opt(const ev_url_t *u, const char *key, const char *def);

#endif /* ONEBLOG_EVENTS_URL_H */
