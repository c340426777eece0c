/* otlp_resource.c - the resource an exporter's spans come from, as a list of
 * string attributes both OTLP encoders write (otlp.c, otlp_pb.c).
 *
 * OTEL_RESOURCE_ATTRIBUTES is parsed here once, when an exporter starts (the
 * encoders write the resource into the request's head, which is encoded once
 * per exporter), so that the two encoders share one reading of it. No
 * libcnode calls: thread-safe.
 */
#include "telemetry_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int hexval(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decode in place (OTEL_RESOURCE_ATTRIBUTES values, W3C Baggage
 * style); a '%' not followed by two hex digits stays as it is. (Not sscanf's
 * %1x: it skips white space and takes a sign, so "% 41" became 'A'.) False
 * when s holds %00, which would cut the value short (s is then half decoded). */
static bool pct_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        int hi, lo;
        if (s[0] == '%' && (hi = hexval(s[1])) >= 0 && (lo = hexval(s[2])) >= 0) {
            if ((hi | lo) == 0)
                return false;
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
    return true;
}

/* s without its leading and trailing spaces and tabs, cut in place: the
 * OpenTelemetry spec trims keys and values (before decoding, so that an
 * encoded space stays). */
static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        s[--n] = '\0';
    return s;
}

static void add(cn__resource_t *r, const char *key, const char *value)
{
    r->attrs[r->n].key = key;
    r->attrs[r->n].value = value;
    r->n++;
}

int cn__resource_init(cn__resource_t *r, const char *service_name, const char *pairs)
{
    memset(r, 0, sizeof(*r));
    /* The pairs (at most one more than their commas), then the five below. */
    size_t max = 5;
    if (pairs) {
        for (const char *p = pairs; *p; p++)
            max += *p == ',';
        max++;
        r->strs = strdup(pairs);
        if (r->strs == NULL)
            return -ENOMEM;
    }
    r->attrs = malloc(max * sizeof(*r->attrs));
    if (r->attrs == NULL) {
        cn__resource_free(r);
        return -ENOMEM;
    }
    /* OTEL_RESOURCE_ATTRIBUTES first; service.name from OTEL_SERVICE_NAME wins. */
    char *save = NULL;
    for (char *p = r->strs ? strtok_r(r->strs, ",", &save) : NULL; p;
         p = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(p, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        char *key = trim(p), *value = trim(eq + 1);
        if (*key == '\0' || strcmp(key, "service.name") == 0 || !pct_decode(value))
            continue;
        add(r, key, value);
    }
    add(r, "service.name", service_name ? service_name : "unknown_service");
    add(r, "telemetry.sdk.name", "libcnode");
    add(r, "telemetry.sdk.language", "c");
    add(r, "telemetry.sdk.version", CN__OTLP_SCOPE_VERSION);
    gethostname(r->host, sizeof(r->host) - 1);
    if (r->host[0])
        add(r, "host.name", r->host);
    return 0;
}

void cn__resource_free(cn__resource_t *r)
{
    free(r->attrs);
    free(r->strs);
    r->attrs = NULL;
    r->strs = NULL;
    r->n = 0;
}
