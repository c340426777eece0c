/* send_frame.h - the SEND frame the term fuzz targets (gen_server_fuzz,
 * proto_fuzz, vproc_key_fuzz, vproc_router_fuzz) wrap their input in, so that a
 * term reaches the code under test only after the distribution's bounds-checked
 * walk (cn__dist_parse_frame) accepted it, as on the wire. A header, not a .c:
 * every tests/fuzz/NAME.c is a target of its own (Makefile FUZZ_SRC). */
#ifndef ONEBLOG_FUZZ_SEND_FRAME_H
#define ONEBLOG_FUZZ_SEND_FRAME_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist_int.h"

/* Build 'p', 131, {2, '', To}, 131, Data in *f (initialised here; To is
 * <fuzz@127.0.0.1.2.0>, creation 1234, which no target reads) and parse it as a
 * node would. Accepted: true, with the message (after its version byte) at
 * f->buff + *off, *len bytes (len may be NULL), and f for the caller to free. Refused: false, f
 * already freed. Aborts on ENOMEM (not a finding). */
static inline bool fuzz_send_frame(const uint8_t *data, size_t size, ei_x_buff *f, int *off,
                                   int *len)
{
    if (ei_x_new(f) < 0)
        abort();
    erlang_pid to;
    memset(&to, 0, sizeof(to));
    strcpy(to.node, "fuzz@127.0.0.1");
    to.num = 2;
    to.creation = 1234;
    char pt = 112, ver = (char)131;
    if (ei_x_append_buf(f, &pt, 1) < 0 || ei_x_append_buf(f, &ver, 1) < 0 ||
        ei_x_encode_tuple_header(f, 3) < 0 || ei_x_encode_long(f, 2) < 0 ||
        ei_x_encode_atom(f, "") < 0 || ei_x_encode_pid(f, &to) < 0 ||
        ei_x_append_buf(f, &ver, 1) < 0 || ei_x_append_buf(f, (const char *)data, (int)size) < 0)
        abort();
    cn_dist_ctl_t ctl;
    if (cn__dist_parse_frame(f->buff, f->index, &ctl) != 0 || ctl.payload_len < 2) {
        ei_x_free(f);
        return false;
    }
    *off = ctl.payload_off + 1;
    if (len)
        *len = ctl.payload_len - 1;
    return true;
}

#endif /* ONEBLOG_FUZZ_SEND_FRAME_H */
