/* otlp_buf.c - the slow path of the OTLP encoders' output buffer (cn__obuf_t in
 * telemetry_int.h): growing it. The fast path, a write that fits, is inline in
 * the header and in the encoders (otlp.c, otlp_pb.c); this function is what
 * they call when it does not. No libcnode calls.
 */
#include "telemetry_int.h"

#include <stdlib.h>

bool cn__obuf_grow(cn__obuf_t *b, size_t n)
{
    if (b->oom)
        return false;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->oom = true;
        return false;
    }
    b->p = p;
    b->cap = cap;
    return true;
}
