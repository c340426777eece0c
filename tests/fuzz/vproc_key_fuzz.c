/* vproc_key_fuzz.c - libFuzzer target for the canonical encoding of vproc keys
 * (cn__vproc_key_canon, cnode/src/vproc_route.c), which decodes terms a remote
 * caller sent. The input is one External Term Format term (no version byte);
 * as on the wire, it first goes through the distribution's bounds-checked walk:
 * it is put as the message of a SEND frame and given to cn__dist_parse_frame,
 * and only an accepted term reaches the canonicaliser, as in a real node. What
 * is then checked: no crash or sanitizer report, a refusal leaves the output
 * untouched, and canonical bytes are a fixed point (their canonical encoding is
 * themselves), so every node hashes a key to the same owner. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "send_frame.h"
#include "vproc_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    ei_x_buff f;
    int start;
    if (!fuzz_send_frame(data, size, &f, &start, NULL))
        return 0;
    ei_x_buff a, b;
    if (ei_x_new(&a) < 0 || ei_x_new(&b) < 0)
        abort();
    int i = start;
    int rc = cn__vproc_key_canon(f.buff, &i, &a);
    if (rc < 0) {
        if (a.index != 0)
            abort(); /* a refusal appends nothing */
    } else {
        if (a.index > CN_VPROC_KEY_MAX)
            abort();
        int j = 0;
        if (cn__vproc_key_canon(a.buff, &j, &b) != 0 || j != a.index || b.index != a.index ||
            memcmp(a.buff, b.buff, (size_t)a.index) != 0)
            abort(); /* not a fixed point */
    }
    ei_x_free(&a);
    ei_x_free(&b);
    ei_x_free(&f);
    return 0;
}
