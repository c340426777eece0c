/* ecs_fuzz.c - libFuzzer target for the ECS discovery's reading of the AWS API's
 * answers (discovery_ecs.c): a ListTasks page (task ARNs, nextToken) and a
 * DescribeTasks answer (each task's status, ENI address and zone, which become
 * the node names this node dials). The endpoint is configurable and answers
 * over a network, so its JSON is untrusted input.
 *
 * The first input byte sets the length of the base name (1-255: long ones make
 * "basename@IP" too long for a node name), the rest is the JSON body, read as
 * both answers. Whatever is listed must be "basename@" and a dotted IPv4
 * address, shorter than CN_CLUSTER_NAME_MAX, listed once, with its zone kept
 * beside it; every string ARN is collected. Seeds: tests/fuzz/corpus/ecs_fuzz/. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cluster_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CAP 64 /* tasks asked for (a DescribeTasks batch is at most 100) */

static void check_tasks(const json_t *doc, const char *base)
{
    cl_names_t out = { 0 };
    cn__ecs_zone_t z[CAP];
    int nz = 0, skipped = 0;
    memset(z, 0, sizeof(z));
    int rc = cn__ecs_describe_tasks(doc, base, &out, z, CAP, &nz, &skipped);
    size_t bl = strlen(base);
    if ((rc != 0 && rc != -ENOMEM) || nz < 0 || nz > CAP || skipped < 0 || out.n < nz)
        abort();
    for (int i = 0; i < out.n; i++) {
        const char *nm = out.v[i];
        struct in_addr a;
        if (strlen(nm) >= CN_CLUSTER_NAME_MAX || strncmp(nm, base, bl) != 0 || nm[bl] != '@' ||
            inet_pton(AF_INET, nm + bl + 1, &a) != 1)
            abort();
        for (int k = 0; k < i; k++)
            if (strcmp(out.v[k], nm) == 0)
                abort();
    }
    for (int i = 0; i < nz; i++)
        if (z[i].name == NULL || z[i].zone == NULL || strcmp(z[i].name, out.v[i]) != 0)
            abort();
    for (int i = 0; i < nz; i++) {
        free(z[i].name);
        free(z[i].zone);
    }
    cn__names_free(&out);
}

static void check_page(const json_t *doc)
{
    json_t *arns = json_array();
    char *next = NULL;
    if (arns == NULL)
        return;
    if (cn__ecs_list_page(doc, arns, &next) == 0) {
        size_t want = 0, i;
        json_t *v;
        json_array_foreach(json_object_get(doc, "taskArns"), i, v)
            want += json_is_string(v);
        if (json_array_size(arns) != want || (next && *next == '\0'))
            abort();
    }
    free(next);
    json_decref(arns);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    char base[256];
    size_t bl = 1 + data[0] % 255;
    memset(base, 'n', bl);
    base[bl] = '\0';
    json_error_t jerr;
    json_t *doc = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, &jerr);
    if (doc == NULL)
        return 0;
    check_tasks(doc, base);
    check_page(doc);
    json_decref(doc);
    return 0;
}
