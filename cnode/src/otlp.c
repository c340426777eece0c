/* otlp.c - spans to an OTLP/HTTP JSON ExportTraceServiceRequest, with jansson.
 *
 * OTLP/JSON is the protobuf JSON mapping with three exceptions that receivers
 * insist on (opentelemetry-proto, docs/specification.md "JSON Protobuf
 * Encoding"): traceId and spanId are lower-case hex, not base64; enums
 * (kind, status.code) are integers; keys are lowerCamelCase field names. 64-bit
 * integers (times, intValue) are decimal strings, as the protobuf mapping says.
 *
 *   {"resourceSpans":[{"resource":{"attributes":[...]},
 *     "scopeSpans":[{"scope":{"name":"libcnode","version":"1"},"spans":[...]}]}]}
 *
 * This file only builds JSON: no libcnode calls, so the exporter runs it on the
 * blocking pool, off the scheduler.
 */
#include "telemetry_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SCOPE_NAME "libcnode"
#define SCOPE_VERSION "1"

static json_t *u64_str(uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    return json_string(b);
}

static json_t *kv_str(const char *key, const char *val)
{
    /* json_stringn keeps bytes that are not UTF-8 out (NULL): replace them. */
    json_t *v = json_string(val);
    if (v == NULL)
        v = json_string("\xef\xbf\xbd");
    return json_pack("{s:s, s:{s:o}}", "key", key, "value", "stringValue", v);
}

static json_t *attr_json(const cn__attr_t *a)
{
    char b[24];
    switch (a->type) {
    case CN__ATTR_STR:
        return kv_str(a->key, a->v.s);
    case CN__ATTR_INT:
        snprintf(b, sizeof b, "%lld", (long long)a->v.i);
        return json_pack("{s:s, s:{s:s}}", "key", a->key, "value", "intValue", b);
    case CN__ATTR_DOUBLE:
        return json_pack("{s:s, s:{s:f}}", "key", a->key, "value", "doubleValue", a->v.d);
    case CN__ATTR_BOOL:
        return json_pack("{s:s, s:{s:b}}", "key", a->key, "value", "boolValue", a->v.b);
    default:
        return NULL;
    }
}

/* Percent-decode in place (OTEL_RESOURCE_ATTRIBUTES values). */
static void pct_decode(char *s)
{
    char *o = s;
    for (; *s; s++) {
        int hi, lo;
        if (s[0] == '%' && s[1] && s[2] && sscanf(s + 1, "%1x%1x", &hi, &lo) == 2) {
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static json_t *resource_json(const char *service_name, const char *extra)
{
    json_t *attrs = json_array();
    bool have_service = false;
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    /* OTEL_RESOURCE_ATTRIBUTES first; service.name from OTEL_SERVICE_NAME wins. */
    if (extra) {
        char *copy = strdup(extra), *save = NULL;
        for (char *p = copy ? strtok_r(copy, ",", &save) : NULL; p; p = strtok_r(NULL, ",", &save)) {
            char *eq = strchr(p, '=');
            if (eq == NULL || eq == p)
                continue;
            *eq = '\0';
            while (*p == ' ')
                p++;
            pct_decode(eq + 1);
            if (strcmp(p, "service.name") == 0)
                continue;
            json_array_append_new(attrs, kv_str(p, eq + 1));
        }
        free(copy);
    }
    if (service_name) {
        json_array_append_new(attrs, kv_str("service.name", service_name));
        have_service = true;
    }
    if (!have_service)
        json_array_append_new(attrs, kv_str("service.name", "unknown_service"));
    json_array_append_new(attrs, kv_str("telemetry.sdk.name", "libcnode"));
    json_array_append_new(attrs, kv_str("telemetry.sdk.language", "c"));
    json_array_append_new(attrs, kv_str("telemetry.sdk.version", SCOPE_VERSION));
    if (host[0])
        json_array_append_new(attrs, kv_str("host.name", host));
    return json_pack("{s:o}", "attributes", attrs);
}

static json_t *span_json(const cn_span_t *s)
{
    char tid[33], sid[17], pid[17];
    cn_hex(s->ctx.trace_id, 16, tid);
    cn_hex(s->ctx.span_id, 8, sid);
    json_t *o = json_object();
    json_object_set_new(o, "traceId", json_string(tid));
    json_object_set_new(o, "spanId", json_string(sid));
    if (s->has_parent) {
        cn_hex(s->parent_id, 8, pid);
        json_object_set_new(o, "parentSpanId", json_string(pid));
    }
    json_t *name = json_string(s->name ? s->name : "");
    json_object_set_new(o, "name", name ? name : json_string("span"));
    json_object_set_new(o, "kind", json_integer(s->kind));
    json_object_set_new(o, "startTimeUnixNano", u64_str(s->start_ns));
    json_object_set_new(o, "endTimeUnixNano", u64_str(s->end_ns));
    json_t *attrs = json_array();
    for (uint16_t i = 0; i < s->nattrs; i++)
        json_array_append_new(attrs, attr_json(&s->attrs[i]));
    json_object_set_new(o, "attributes", attrs);
    if (s->dropped_attrs)
        json_object_set_new(o, "droppedAttributesCount", json_integer(s->dropped_attrs));
    if (s->nevents) {
        json_t *evs = json_array();
        for (uint16_t i = 0; i < s->nevents; i++) {
            const cn__event_t *e = &s->events[i];
            json_t *ea = json_array();
            if (e->key)
                json_array_append_new(ea, kv_str(e->key, e->value));
            json_t *ev = json_string(e->name);
            json_array_append_new(evs, json_pack("{s:o, s:o, s:o}", "timeUnixNano",
                                                 u64_str(e->time_ns), "name",
                                                 ev ? ev : json_string("event"), "attributes", ea));
        }
        json_object_set_new(o, "events", evs);
    }
    if (s->dropped_events)
        json_object_set_new(o, "droppedEventsCount", json_integer(s->dropped_events));
    json_t *st = json_pack("{s:i}", "code", (int)s->status);
    if (s->status_msg) {
        json_t *m = json_string(s->status_msg);
        if (m)
            json_object_set_new(st, "message", m);
    }
    json_object_set_new(o, "status", st);
    return o;
}

char *cn__otlp_encode(const char *service_name, const char *resource_attrs,
                      cn_span_t *const *spans, uint32_t n)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; i < n; i++)
        json_array_append_new(arr, span_json(spans[i]));
    json_t *req = json_pack(
        "{s:[{s:o, s:[{s:{s:s, s:s}, s:o}]}]}", "resourceSpans", "resource",
        resource_json(service_name, resource_attrs), "scopeSpans", "scope", "name", SCOPE_NAME,
        "version", SCOPE_VERSION, "spans", arr);
    if (req == NULL)
        return NULL;
    char *out = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return out;
}
