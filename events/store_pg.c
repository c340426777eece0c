/* store_pg.c - placeholder until the backend lands. */
#include "events/store.h"

#include <errno.h>
#include <stdio.h>

static int open_stub(const ev_url_t *url, int mode, ev_store_t **out, char *err, size_t errlen)
{
    (void)url;
    (void)mode;
    *out = NULL;
    snprintf(err, errlen, "EVENTS_URL: the pg backend is not available yet");
    return -ENOTSUP;
}

const ev_store_ops_t ev_store_pg_ops = { .scheme = "postgres", .open = open_stub };
