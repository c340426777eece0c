/* http_log.c - the access log: one JSON object per finished request.
 *
 * {"time":"2024-05-01T12:00:00Z","method":"GET","path":"/a?b=1","status":200,
 *  "bytes":10486,"duration_us":83,"remote":"127.0.0.1:50312","ua":"curl/7.88.1"}
 *
 * Written to the configured FILE* (one fputs and fflush per line, so lines from
 * several nodes sharing a file do not interleave mid-line when it is O_APPEND) and
 * handed to the callback. Nothing here runs unless a log is configured.
 */
#include "http_int.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Escape s into the arena; "" on ENOMEM. */
static const char *esc(cn_http_req_t *r, const char *s)
{
    size_t need = cn_http_json_escape(NULL, 0, s) + 1;
    char *b = cn_http_alloc(r, need);
    if (b == NULL)
        return "";
    cn_http_json_escape(b, need, s);
    return b;
}

void cn__http_log(cn__http_conn_t *c)
{
    cn_http_server_t *s = c->srv;
    cn_http_req_t *r = &c->req;
    cn_http_log_entry_t e;
    e.method = r->method ? r->method : "-";
    /* The target as received: path and query (NUL-split in place on parsing). */
    const char *path = r->path ? r->path : "-";
    if (r->path && r->query) {
        const char *full = cn_http_sprintf(r, "%s?%s", r->path, r->query);
        path = full ? full : r->path;
    }
    e.path = path;
    e.status = c->res_status;
    e.bytes = c->out_total - c->out_mark;
    uint64_t t0 = c->t_start_ns;
    e.duration_us = t0 ? (mono_ns() - t0) / 1000u : 0;
    e.remote = c->peer.ss_family ? cn_http_remote(r) : "-";
    const char *ua = r->nheaders ? cn_http_header(r, "User-Agent") : NULL;
    e.user_agent = ua ? ua : "";

    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    char *line = cn_http_sprintf(r,
                                 "{\"time\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
                                 "\"status\":%d,\"bytes\":%llu,\"duration_us\":%llu,"
                                 "\"remote\":\"%s\",\"ua\":\"%s\"}",
                                 when, esc(r, e.method), esc(r, e.path), e.status,
                                 (unsigned long long)e.bytes, (unsigned long long)e.duration_us,
                                 esc(r, e.remote), esc(r, e.user_agent));
    if (line == NULL)
        return;
    if (s->cfg.access_log) {
        size_t n = strlen(line);
        line[n] = '\n'; /* the arena copy has room: sprintf allocated n + 1 */
        fwrite(line, 1, n + 1, s->cfg.access_log);
        fflush(s->cfg.access_log);
        line[n] = '\0';
    }
    if (s->cfg.log_cb)
        s->cfg.log_cb(&e, line, s->cfg.log_udata);
}
