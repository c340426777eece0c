/* discovery_ecs.c - the `ecs` strategy: the running tasks of one ECS service.
 *
 * Each poll asks the ECS JSON API (POST /, Content-Type
 * application/x-amz-json-1.1, X-Amz-Target AmazonEC2ContainerServiceV20141113.*)
 *
 *   ListTasks      cluster, serviceName, desiredStatus RUNNING, maxResults 100,
 *                  following nextToken through every page (a listing is never cut
 *                  at the first 100 tasks)
 *   DescribeTasks  the ARNs in batches of 100 (the API's limit)
 *
 * and lists "BASENAME@IP" for every task with an ENI address (attachments[].details
 * privateIPv4Address, awsvpc network mode; containers[].networkInterfaces as a
 * fallback), BASENAME being ONEBLOG_CLUSTER_BASENAME or our own alive name. Each
 * task's availabilityZone is kept beside its name: new nodes are logged with
 * their zone, a summary per zone is logged when it changes, and a warning says
 * when our own task's zone differs from ONEBLOG_CLUSTER_ZONE (the zone the
 * registry announces for our members, which zone-aware routing uses).
 *
 * Requests are signed with SigV4 (sigv4.c, verified against AWS's own test
 * vectors) and sent with libcurl from the blocking pool (cn_blocking), one at a
 * time, on one reused handle. Credentials, in the SDKs' order:
 *   1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *   2. the ECS container credentials endpoint: http://169.254.170.2 +
 *      AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (the base can be replaced with
 *      ONEBLOG_CLUSTER_ECS_CREDENTIALS_BASE, for tests), or
 *      AWS_CONTAINER_CREDENTIALS_FULL_URI with AWS_CONTAINER_AUTHORIZATION_TOKEN
 *      (or _TOKEN_FILE) as its Authorization header. These are temporary: they
 *      are fetched again REFRESH_MARGIN_S before their Expiration, and at once
 *      when ECS says the token expired; if a refresh fails while the old ones
 *      are still valid, the old ones are used.
 * The region comes from AWS_REGION / AWS_DEFAULT_REGION, the endpoint is
 * https://ecs.REGION.amazonaws.com unless ONEBLOG_CLUSTER_ECS_ENDPOINT says
 * otherwise (tests point it at tests/integ/ecs_fake.py: AWS cannot be reached
 * from where this was written, so the API shapes were checked against the
 * documented format only).
 *
 * Failures: a throttled request (ThrottlingException, HTTP 429) or a 5xx is
 * retried twice within the poll (200 ms, 400 ms); a poll that still fails logs
 * the HTTP status and AWS's __type and message, keeps the last good list (the
 * discovery process does that), and the next polls are skipped for a backoff
 * that doubles from the poll period up to BACKOFF_MAX_MS (with jitter), so a
 * throttled account is not hammered by every node at once.
 */
#include "cluster_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cnode/sigv4.h"

#define TARGET_PREFIX "AmazonEC2ContainerServiceV20141113."
#define PAGE_MAX 100             /* ListTasks maxResults and DescribeTasks batch */
#define PAGES_MAX 1000           /* safety bound on one listing (100,000 tasks) */
#define BODY_MAX (16 << 20)      /* bytes of one response */
#define REFRESH_MARGIN_S 300     /* fetch new credentials 5 min before Expiration */
#define BACKOFF_MAX_MS 300000    /* between failed polls */
#define REQ_TIMEOUT_MS 10000
#define CREDS_BASE "http://169.254.170.2"

enum { CREDS_ENV, CREDS_CONTAINER };

typedef struct ecs {
    cn__cluster_t *c;
    char basename[256];
    char self_host[256];         /* our host part, to find our own task */
    char url[512];               /* the endpoint URL */
    char host[256];              /* its host[:port], the signed Host header */
    char path[256];              /* its path ("/") */
    char region[64];
    CURL *curl;

    int creds_src;               /* CREDS_* */
    char *creds_url;             /* container endpoint */
    char *creds_auth;            /* its Authorization value, or NULL */
    char *creds_auth_file;       /* ... read from this file at each fetch */
    char *ak, *sk, *token;       /* current credentials */
    time_t expiration;           /* wall clock; 0 = never */
    bool creds_stale;            /* ECS said the token expired: refetch */

    int failures;                /* failed polls in a row */
    uint64_t retry_at;           /* cn_now_ms() before which polls are skipped */
    int last_rc;

    cn__ecs_zone_t *zones;            /* the last good poll's names and zones */
    int nzones;
    char zone_summary[256];      /* last logged summary */
    char last_shape[128];        /* last logged "N task(s) in P page(s)..." */
    bool self_zone_warned;
    uint64_t requests, pages;    /* totals, for the logs */
} ecs_t;

/* ---------------------------------------------------------------------------------
 * HTTP on the blocking pool
 * ------------------------------------------------------------------------------ */

typedef struct http_job {
    ecs_t *s;
    const char *url;
    struct curl_slist *hdrs;
    const char *body;            /* NULL: GET */
    bool no_proxy;
    char *resp;                  /* malloc'd, NUL-terminated */
    size_t len;
    bool too_big;
    CURLcode cc;
    long status;
    char err[CURL_ERROR_SIZE];
} http_job_t;

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
    http_job_t *j = ud;
    size_t add = sz * n;
    if (j->len + add > BODY_MAX) {
        j->too_big = true;
        return 0;
    }
    char *r = realloc(j->resp, j->len + add + 1);
    if (r == NULL)
        return 0;
    memcpy(r + j->len, p, add);
    j->resp = r;
    j->len += add;
    j->resp[j->len] = '\0';
    return add;
}

/* Runs on a pool thread: no libcnode calls. */
static void http_blocking(void *arg)
{
    http_job_t *j = arg;
    CURL *c = j->s->curl;
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, j->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, j->hdrs);
    if (j->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, j->body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(j->body));
    } else {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    }
    if (j->no_proxy) /* the link-local credentials endpoint is never proxied */
        curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)REQ_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)REQ_TIMEOUT_MS / 2);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, j);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, j->err);
    j->err[0] = '\0';
    j->cc = curl_easy_perform(c);
    j->status = 0;
    if (j->cc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &j->status);
}

static void job_done(http_job_t *j)
{
    curl_slist_free_all(j->hdrs);
    free(j->resp);
    j->hdrs = NULL;
    j->resp = NULL;
}

/* Append "Name: value" to *l; false on OOM (the list is then freed). */
static bool add_hdr(struct curl_slist **l, const char *name, const char *value)
{
    char line[4096];
    snprintf(line, sizeof(line), "%s: %s", name, value);
    struct curl_slist *n = curl_slist_append(*l, line);
    if (n == NULL) {
        curl_slist_free_all(*l);
        *l = NULL;
        return false;
    }
    *l = n;
    return true;
}

/* ---------------------------------------------------------------------------------
 * Credentials
 * ------------------------------------------------------------------------------ */

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? strdup(src) : NULL;
}

/* "2024-05-01T12:00:00Z" (fractional seconds allowed) -> time_t; 0 if malformed. */
static time_t parse_iso8601(const char *v)
{
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    const char *e = v ? strptime(v, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (e == NULL)
        return 0;
    return timegm(&tm);
}

/* Fetch credentials from the container endpoint. 0, or a negative errno (logged). */
static int fetch_creds(ecs_t *s)
{
    cn__cluster_t *c = s->c;
    http_job_t j = { .s = s, .url = s->creds_url, .no_proxy = true };
    char auth[2048] = "";
    if (s->creds_auth) {
        snprintf(auth, sizeof(auth), "%s", s->creds_auth);
    } else if (s->creds_auth_file) {
        FILE *f = fopen(s->creds_auth_file, "r");
        if (f && fgets(auth, sizeof(auth), f))
            auth[strcspn(auth, "\r\n")] = '\0';
        if (f)
            fclose(f);
    }
    if (auth[0] && !add_hdr(&j.hdrs, "Authorization", auth))
        return -ENOMEM;
    if (!add_hdr(&j.hdrs, "Accept", "application/json"))
        return -ENOMEM;
    int rc = cn_blocking(http_blocking, &j);
    if (rc < 0)
        goto out;
    rc = -EAGAIN;
    if (j.cc != CURLE_OK || j.status != 200) {
        cn__cluster_log(c, CN_LOG_WARN, "ecs discovery: credentials endpoint %s: %s (HTTP %ld)",
                        s->creds_url, j.cc != CURLE_OK ? (j.err[0] ? j.err : curl_easy_strerror(j.cc)) : "refused",
                        j.status);
        goto out;
    }
    json_error_t jerr;
    json_t *doc = json_loads(j.resp ? j.resp : "", 0, &jerr);
    const char *ak = json_string_value(json_object_get(doc, "AccessKeyId"));
    const char *sk = json_string_value(json_object_get(doc, "SecretAccessKey"));
    const char *tok = json_string_value(json_object_get(doc, "Token"));
    const char *exp = json_string_value(json_object_get(doc, "Expiration"));
    if (ak == NULL || sk == NULL) {
        cn__cluster_log(c, CN_LOG_WARN,
                        "ecs discovery: credentials endpoint %s: no AccessKeyId/SecretAccessKey",
                        s->creds_url);
        json_decref(doc);
        goto out;
    }
    set_str(&s->ak, ak);
    set_str(&s->sk, sk);
    set_str(&s->token, tok);
    s->expiration = parse_iso8601(exp);
    s->creds_stale = false;
    rc = s->ak && s->sk && (tok == NULL || s->token) ? 0 : -ENOMEM;
    cn__cluster_log(c, CN_LOG_INFO, "ecs discovery: credentials %s from %s, expiring %s", ak,
                    s->creds_url, exp ? exp : "never");
    json_decref(doc); /* ak and exp point into it */
out:
    job_done(&j);
    return rc;
}

/* Make sure usable credentials are loaded: fetch them when missing, stale or
 * within REFRESH_MARGIN_S of their expiration. */
static int ensure_creds(ecs_t *s)
{
    if (s->creds_src == CREDS_ENV)
        return 0;
    time_t now = time(NULL);
    bool have = s->ak != NULL && (s->expiration == 0 || now < s->expiration);
    if (have && !s->creds_stale && (s->expiration == 0 || now < s->expiration - REFRESH_MARGIN_S))
        return 0;
    int rc = fetch_creds(s);
    if (rc < 0 && have && !s->creds_stale) {
        cn__cluster_log(s->c, CN_LOG_WARN,
                        "ecs discovery: credential refresh failed; the current ones expire in %lds",
                        (long)(s->expiration - now));
        return 0;
    }
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Signed ECS calls
 * ------------------------------------------------------------------------------ */

typedef struct aws_err {
    long status;
    char type[128];              /* __type without its namespace */
    char msg[256];
} aws_err_t;

static bool retryable(const aws_err_t *e, CURLcode cc)
{
    if (cc != CURLE_OK)
        return cc != CURLE_OUT_OF_MEMORY;
    return e->status == 429 || e->status >= 500 || strcmp(e->type, "ThrottlingException") == 0 ||
           strcmp(e->type, "ServerException") == 0;
}

/* Pull __type and message out of an error body. */
static void parse_error(const char *resp, aws_err_t *e)
{
    json_error_t jerr;
    json_t *doc = resp ? json_loads(resp, 0, &jerr) : NULL;
    const char *t = json_string_value(json_object_get(doc, "__type"));
    const char *m = json_string_value(json_object_get(doc, "message"));
    if (m == NULL)
        m = json_string_value(json_object_get(doc, "Message"));
    if (t) {
        const char *hash = strrchr(t, '#'); /* "com.amazon.coral...#Type" */
        snprintf(e->type, sizeof(e->type), "%s", hash ? hash + 1 : t);
    }
    if (m)
        snprintf(e->msg, sizeof(e->msg), "%s", m);
    json_decref(doc);
}

/* POST `body` as action `op`; on success *out is the parsed response (new
 * reference). Retries throttling and 5xx twice. Returns 0, -EAGAIN (transient),
 * -EACCES (credentials, signature, permissions), -ENOENT (no such cluster or
 * service), -EPROTO (an answer we cannot read), -EINVAL, -ENOMEM; logged. */
static int ecs_call(ecs_t *s, const char *op, json_t *req, json_t **out)
{
    cn__cluster_t *c = s->c;
    *out = NULL;
    char *body = json_dumps(req, JSON_COMPACT);
    if (body == NULL)
        return -ENOMEM;
    char target[128];
    snprintf(target, sizeof(target), TARGET_PREFIX "%s", op);
    int rc = 0;
    aws_err_t e;
    http_job_t j = { .s = s, .url = s->url, .body = body };
    for (int attempt = 1; attempt <= 3; attempt++) {
        memset(&e, 0, sizeof(e));
        if ((rc = ensure_creds(s)) < 0)
            break;
        char date[CN_SIGV4_DATE_LEN];
        cn_sigv4_date(time(NULL), date);
        cn_sigv4_header_t h[5] = {
            { "Host", s->host },
            { "X-Amz-Date", date },
            { "X-Amz-Target", target },
            { "Content-Type", "application/x-amz-json-1.1" },
            { "X-Amz-Security-Token", s->token },
        };
        size_t nh = s->token ? 5 : 4;
        cn_sigv4_req_t sreq = { "POST", s->path, NULL, h, nh, body, strlen(body) };
        cn_sigv4_creds_t cr = { s->ak, s->sk, s->region, "ecs" };
        cn_sigv4_sig_t sig;
        if ((rc = cn_sigv4_sign(&sreq, &cr, &sig)) < 0)
            break;
        bool ok = true;
        for (size_t i = 0; i < nh && ok; i++)
            ok = add_hdr(&j.hdrs, h[i].name, h[i].value);
        ok = ok && add_hdr(&j.hdrs, "Authorization", sig.authz) &&
             add_hdr(&j.hdrs, "Accept", "application/json") &&
             add_hdr(&j.hdrs, "Expect", ""); /* no 100-continue round trip */
        cn_sigv4_sig_free(&sig);
        if (!ok) {
            rc = -ENOMEM;
            break;
        }
        s->requests++;
        if ((rc = cn_blocking(http_blocking, &j)) < 0)
            break;
        e.status = j.status;
        if (j.cc == CURLE_OK && j.status == 200) {
            json_error_t jerr;
            *out = json_loads(j.resp ? j.resp : "", 0, &jerr);
            rc = *out ? 0 : -EPROTO;
            if (rc < 0)
                cn__cluster_log(c, CN_LOG_WARN, "ecs discovery: %s: unreadable answer: %s", op,
                                jerr.text);
            break;
        }
        if (j.cc == CURLE_OK)
            parse_error(j.resp, &e);
        if (strcmp(e.type, "ExpiredTokenException") == 0 && s->creds_src == CREDS_CONTAINER)
            s->creds_stale = true; /* refetch on the next attempt */
        bool again = retryable(&e, j.cc) || (s->creds_stale && attempt == 1);
        cn__cluster_log(c, again && attempt < 3 ? CN_LOG_DEBUG : CN_LOG_WARN,
                        "ecs discovery: %s: %s%s%s%s (HTTP %ld, attempt %d)", op,
                        j.cc != CURLE_OK ? (j.err[0] ? j.err : curl_easy_strerror(j.cc))
                                         : (e.type[0] ? e.type : "error"),
                        e.msg[0] ? ": " : "", e.msg, j.too_big ? " (answer too big)" : "",
                        j.status, attempt);
        curl_slist_free_all(j.hdrs);
        j.hdrs = NULL;
        free(j.resp);
        j.resp = NULL;
        j.len = 0;
        if (!again || attempt == 3) {
            if (j.cc != CURLE_OK || retryable(&e, j.cc))
                rc = -EAGAIN;
            else if (strstr(e.type, "NotFound"))
                rc = -ENOENT;
            else if (e.status == 400 || e.status == 401 || e.status == 403)
                rc = -EACCES;
            else
                rc = -EAGAIN;
            break;
        }
        cn_sleep(200 << (attempt - 1));
    }
    job_done(&j);
    free(body);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * One poll: every page of ListTasks, DescribeTasks by 100
 * ------------------------------------------------------------------------------ */

/* The task's ENI address: attachments[].details[] {name: privateIPv4Address}, or
 * containers[].networkInterfaces[].privateIpv4Address. NULL if none. */
static const char *task_ip(json_t *task)
{
    size_t i, k;
    json_t *a, *d;
    json_array_foreach(json_object_get(task, "attachments"), i, a) {
        json_array_foreach(json_object_get(a, "details"), k, d) {
            const char *n = json_string_value(json_object_get(d, "name"));
            if (n && strcmp(n, "privateIPv4Address") == 0)
                return json_string_value(json_object_get(d, "value"));
        }
    }
    json_t *ct, *ni;
    json_array_foreach(json_object_get(task, "containers"), i, ct) {
        json_array_foreach(json_object_get(ct, "networkInterfaces"), k, ni) {
            const char *ip = json_string_value(json_object_get(ni, "privateIpv4Address"));
            if (ip)
                return ip;
        }
    }
    return NULL;
}

static bool stopping(const char *st)
{
    return st && (strcmp(st, "STOPPING") == 0 || strcmp(st, "DEPROVISIONING") == 0 ||
                  strcmp(st, "STOPPED") == 0 || strcmp(st, "DELETED") == 0);
}

static void zones_free(cn__ecs_zone_t *z, int n)
{
    for (int i = 0; i < n; i++) {
        free(z[i].name);
        free(z[i].zone);
    }
    cn__free(z);
}

static int zone_of_cmp(const void *a, const void *b)
{
    return strcmp(((const cn__ecs_zone_t *)a)->name, ((const cn__ecs_zone_t *)b)->name);
}

#define ZONES_MAX 16             /* distinct zones counted in the summary */

typedef struct zone_count {
    const char *zone;            /* borrowed from a cn__ecs_zone_t */
    int count;
} zone_count_t;

/* Log what is new about zones: each new node with its zone, a per-zone count
 * when it changes, our own zone if it differs from the configured one. Sorts z
 * by name (s->zones, the previous z, is sorted), so a poll of n tasks costs
 * n log n, not n * n. */
static void report_zones(ecs_t *s, cn__ecs_zone_t *z, int n)
{
    cn__cluster_t *c = s->c;
    zone_count_t zc[ZONES_MAX];
    int nzc = 0;
    if (n > 0)
        qsort(z, (size_t)n, sizeof(*z), zone_of_cmp);
    for (int i = 0; i < n; i++) {
        if (s->nzones == 0 ||
            !bsearch(&z[i], s->zones, (size_t)s->nzones, sizeof(*z), zone_of_cmp))
            cn__cluster_log(c, CN_LOG_DEBUG, "ecs discovery: %s in zone %s", z[i].name,
                            z[i].zone[0] ? z[i].zone : "?");
        int k = 0;
        while (k < nzc && strcmp(zc[k].zone, z[i].zone) != 0)
            k++;
        if (k == nzc && nzc < ZONES_MAX)
            zc[nzc++] = (zone_count_t){ z[i].zone, 0 };
        if (k < nzc)
            zc[k].count++;
        const char *at = strchr(z[i].name, '@');
        if (!s->self_zone_warned && at && strcmp(at + 1, s->self_host) == 0 &&
            strcmp(z[i].zone, c->zone) != 0) {
            cn__cluster_log(c, CN_LOG_WARN,
                            "ecs discovery: our task is in zone %s but ONEBLOG_CLUSTER_ZONE is "
                            "'%s': set it to route to this zone first", z[i].zone, c->zone);
            s->self_zone_warned = true;
        }
    }
    for (int i = 1; i < nzc; i++) /* a handful: insertion sort by zone name */
        for (int k = i; k > 0 && strcmp(zc[k - 1].zone, zc[k].zone) > 0; k--) {
            zone_count_t t = zc[k];
            zc[k] = zc[k - 1];
            zc[k - 1] = t;
        }
    char sum[256] = "";
    size_t len = 0;
    for (int i = 0; i < nzc && len < sizeof(sum); i++)
        len += (size_t)snprintf(sum + len, sizeof(sum) - len, " %s=%d",
                                zc[i].zone[0] ? zc[i].zone : "?", zc[i].count);
    if (strcmp(sum, s->zone_summary) != 0) {
        cn__cluster_log(c, CN_LOG_INFO, "ecs discovery: tasks by zone:%s", sum);
        snprintf(s->zone_summary, sizeof(s->zone_summary), "%s", sum);
    }
}

/* The pure part of a poll: reading ListTasks and DescribeTasks answers. */

int cn__ecs_list_page(const json_t *resp, json_t *arns, char **next)
{
    json_t *v;
    size_t i;
    *next = NULL;
    json_array_foreach(json_object_get(resp, "taskArns"), i, v) {
        if (json_is_string(v) && json_array_append(arns, v) < 0)
            return -ENOMEM;
    }
    const char *tok = json_string_value(json_object_get(resp, "nextToken"));
    if (tok && *tok && (*next = strdup(tok)) == NULL)
        return -ENOMEM;
    return 0;
}

int cn__ecs_describe_tasks(const json_t *resp, const char *basename, cl_names_t *out,
                           cn__ecs_zone_t *z, size_t cap, int *nz, int *skipped)
{
    json_t *t;
    size_t i;
    json_array_foreach(json_object_get(resp, "tasks"), i, t) {
        const char *ip = task_ip(t);
        struct in_addr a;
        if (stopping(json_string_value(json_object_get(t, "lastStatus"))) || ip == NULL ||
            inet_pton(AF_INET, ip, &a) != 1) {
            (*skipped)++;
            continue;
        }
        char name[CN_CLUSTER_NAME_MAX + INET_ADDRSTRLEN];
        snprintf(name, sizeof(name), "%s@%s", basename, ip);
        if (strlen(name) >= CN_CLUSTER_NAME_MAX || cn__names_has(out, name))
            continue;
        const char *zone = json_string_value(json_object_get(t, "availabilityZone"));
        if (cn__names_add(out, name, 0) < 0 || (size_t)*nz >= cap ||
            (z[*nz].name = strdup(name)) == NULL ||
            (z[*nz].zone = strdup(zone ? zone : "")) == NULL) {
            if ((size_t)*nz < cap && z[*nz].name) {
                free(z[*nz].name);
                z[*nz].name = NULL;
            }
            return -ENOMEM;
        }
        (*nz)++;
    }
    return 0;
}

static int poll_once(ecs_t *s, cl_names_t *out)
{
    cn__cluster_t *c = s->c;
    json_t *arns = json_array(), *resp = NULL;
    cn__ecs_zone_t *z = NULL;
    int nz = 0, rc = -ENOMEM, pages = 0, skipped = 0;
    if (arns == NULL)
        return -ENOMEM;
    char *token = NULL;
    do {
        json_t *req = json_pack("{s:s, s:s, s:s, s:i}", "cluster", c->ecs_cluster, "serviceName",
                                c->ecs_service, "desiredStatus", "RUNNING", "maxResults",
                                PAGE_MAX);
        if (req == NULL || (token && json_object_set_new(req, "nextToken", json_string(token)))) {
            json_decref(req);
            rc = -ENOMEM;
            goto out;
        }
        rc = ecs_call(s, "ListTasks", req, &resp);
        json_decref(req);
        if (rc < 0)
            goto out;
        pages++;
        free(token);
        rc = cn__ecs_list_page(resp, arns, &token);
        json_decref(resp);
        resp = NULL;
        if (rc < 0)
            goto out;
    } while (token && pages < PAGES_MAX);
    if (token) {
        cn__cluster_log(c, CN_LOG_WARN, "ecs discovery: stopped after %d pages of ListTasks",
                        pages);
        free(token);
        token = NULL;
    }
    s->pages += (uint64_t)pages;

    size_t total = json_array_size(arns);
    if (total > 0 && (z = cn__calloc(total, sizeof(*z))) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t from = 0; from < total; from += PAGE_MAX) {
        json_t *batch = json_array();
        for (size_t i = from; batch && i < total && i < from + PAGE_MAX; i++)
            if (json_array_append(batch, json_array_get(arns, i)) < 0) {
                json_decref(batch);
                batch = NULL;
            }
        json_t *req = batch ? json_pack("{s:s, s:o}", "cluster", c->ecs_cluster, "tasks", batch)
                            : NULL;
        if (req == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        rc = ecs_call(s, "DescribeTasks", req, &resp);
        json_decref(req);
        if (rc < 0)
            goto out;
        json_t *f;
        size_t i;
        json_array_foreach(json_object_get(resp, "failures"), i, f)
            cn__cluster_log(c, CN_LOG_DEBUG, "ecs discovery: DescribeTasks: %s: %s",
                            json_string_value(json_object_get(f, "arn")),
                            json_string_value(json_object_get(f, "reason")));
        rc = cn__ecs_describe_tasks(resp, s->basename, out, z, total, &nz, &skipped);
        if (rc < 0)
            goto out;
        json_decref(resp);
        resp = NULL;
    }
    /* One INFO line when the shape of the listing changes, DEBUG otherwise. */
    char shape[128];
    snprintf(shape, sizeof(shape), "%zu task(s) in %d page(s): %d with an address, %d without",
             total, pages, nz, skipped);
    cn__cluster_log(c, strcmp(shape, s->last_shape) ? CN_LOG_INFO : CN_LOG_DEBUG,
                    "ecs discovery: %s", shape);
    snprintf(s->last_shape, sizeof(s->last_shape), "%s", shape);
    report_zones(s, z, nz);
    zones_free(s->zones, s->nzones);
    s->zones = z;
    s->nzones = nz;
    z = NULL;
    nz = 0;
    rc = 0;
out:
    free(token);
    json_decref(resp);
    json_decref(arns);
    zones_free(z, nz);
    return rc;
}

static int ecs_poll(cn__cluster_t *c, void *state, cl_names_t *out)
{
    ecs_t *s = state;
    uint64_t now = cn_now_ms();
    if (s->retry_at && now < s->retry_at)
        return s->last_rc; /* backing off: the previous list stays */
    int rc = poll_once(s, out);
    if (rc == 0) {
        if (s->failures)
            cn__cluster_log(c, CN_LOG_INFO, "ecs discovery: recovered after %d failed poll(s)",
                            s->failures);
        s->failures = 0;
        s->retry_at = 0;
        return 0;
    }
    s->failures++;
    int64_t backoff = c->poll_ms;
    for (int i = 1; i < s->failures && backoff < BACKOFF_MAX_MS; i++)
        backoff *= 2;
    if (backoff > BACKOFF_MAX_MS)
        backoff = BACKOFF_MAX_MS;
    backoff += rand() % (backoff / 4 + 1); /* nodes do not retry in step */
    s->retry_at = now + (uint64_t)backoff;
    s->last_rc = rc;
    cn__cluster_log(c, CN_LOG_WARN, "ecs discovery: poll failed (%s), %d in a row; next in %lld ms",
                    cn_strerror(rc), s->failures, (long long)backoff);
    return rc;
}

/* ---------------------------------------------------------------------------------
 * Set-up
 * ------------------------------------------------------------------------------ */

static void ecs_free(void *state)
{
    ecs_t *s = state;
    if (s == NULL)
        return;
    if (s->curl)
        curl_easy_cleanup(s->curl);
    free(s->creds_url);
    free(s->creds_auth);
    free(s->creds_auth_file);
    free(s->ak);
    if (s->sk)
        memset(s->sk, 0, strlen(s->sk));
    free(s->sk);
    free(s->token);
    zones_free(s->zones, s->nzones);
    cn__free(s);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* Split the endpoint URL into the signed Host and path. */
static int parse_endpoint(ecs_t *s, const char *url)
{
    const char *p = strstr(url, "://");
    if (p == NULL || strlen(url) >= sizeof(s->url))
        return -EINVAL;
    p += 3;
    size_t hl = strcspn(p, "/?#");
    if (hl == 0 || hl >= sizeof(s->host) || strchr(p, '@') || p[hl] == '?' || p[hl] == '#')
        return -EINVAL;
    snprintf(s->url, sizeof(s->url), "%s", url);
    snprintf(s->host, sizeof(s->host), "%.*s", (int)hl, p);
    snprintf(s->path, sizeof(s->path), "%s", p[hl] ? p + hl : "/");
    if (p[hl] == '\0' && strlen(s->url) + 1 < sizeof(s->url))
        strcat(s->url, "/");
    return 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int ecs_init(cn__cluster_t *c, void **state)
{
    *state = NULL;
    if (c->ecs_cluster == NULL || c->ecs_service == NULL) {
        cn__cluster_log(c, CN_LOG_ERROR, "ecs discovery: ONEBLOG_CLUSTER_ECS_CLUSTER and "
                                         "ONEBLOG_CLUSTER_ECS_SERVICE must be set");
        return -EINVAL;
    }
    const char *region = c->ecs_region ? c->ecs_region : env("AWS_REGION");
    if (region == NULL)
        region = env("AWS_DEFAULT_REGION");
    if (region == NULL || strlen(region) >= 64) {
        cn__cluster_log(c, CN_LOG_ERROR, "ecs discovery: no region (AWS_REGION)");
        return -EINVAL;
    }
    ecs_t *s = cn__calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->c = c;
    snprintf(s->region, sizeof(s->region), "%s", region);
    cn__cluster_self_parts(c, s->basename, sizeof(s->basename), s->self_host,
                           sizeof(s->self_host));
    if (c->basename)
        snprintf(s->basename, sizeof(s->basename), "%s", c->basename);
    char url[512];
    if (c->ecs_endpoint)
        snprintf(url, sizeof(url), "%s", c->ecs_endpoint);
    else
        snprintf(url, sizeof(url), "https://ecs.%s.amazonaws.com/", region);
    int rc = parse_endpoint(s, url);
    if (rc < 0) {
        cn__cluster_log(c, CN_LOG_ERROR, "ecs discovery: bad endpoint '%s'", url);
        goto fail;
    }

    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
    const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    rc = -ENOMEM;
    if (ak && sk) {
        s->creds_src = CREDS_ENV;
        set_str(&s->ak, ak);
        set_str(&s->sk, sk);
        set_str(&s->token, env("AWS_SESSION_TOKEN"));
        if (s->ak == NULL || s->sk == NULL ||
            (env("AWS_SESSION_TOKEN") && s->token == NULL))
            goto fail;
    } else if (rel || full) {
        s->creds_src = CREDS_CONTAINER;
        char cu[1024];
        if (rel) {
            const char *base = env("ONEBLOG_CLUSTER_ECS_CREDENTIALS_BASE");
            snprintf(cu, sizeof(cu), "%s%s", base ? base : CREDS_BASE, rel);
        } else {
            snprintf(cu, sizeof(cu), "%s", full);
            set_str(&s->creds_auth, env("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
            set_str(&s->creds_auth_file, env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"));
        }
        set_str(&s->creds_url, cu);
        if (s->creds_url == NULL)
            goto fail;
    } else {
        cn__cluster_log(c, CN_LOG_ERROR,
                        "ecs discovery: no credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or "
                        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI/_FULL_URI)");
        rc = -EINVAL;
        goto fail;
    }
    pthread_once(&curl_once, curl_init_once);
    if ((s->curl = curl_easy_init()) == NULL)
        goto fail;
    cn__cluster_log(c, CN_LOG_INFO,
                    "ecs discovery: cluster %s, service %s, region %s, endpoint %s, "
                    "credentials from %s",
                    c->ecs_cluster, c->ecs_service, s->region, s->url,
                    s->creds_src == CREDS_ENV ? "the environment" : s->creds_url);
    *state = s;
    return 0;
fail:
    ecs_free(s);
    return rc;
}

const cn__discovery_t cn__discovery_ecs = {
    .name = "ecs",
    .init = ecs_init,
    .poll = ecs_poll,
    .free = ecs_free,
};
