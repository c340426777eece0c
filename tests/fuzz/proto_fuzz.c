/* proto_fuzz.c - libFuzzer target for the RPC contract's decoders (proto/proto.c),
 * which read atoms, binaries and times in place. The input is one External Term
 * Format term (no version byte); as on the wire it first goes through the
 * distribution's bounds-checked walk (as the message of a SEND frame,
 * cn__dist_parse_frame), and an accepted term is then decoded every way a caller
 * may: as a request (proto_req_decode), as a reply (proto_decode_reply) whose
 * value goes to each reply decoder, on the heap and with an allocator that runs
 * dry part-way (the *_in decoders). What is checked: no crash, no sanitizer
 * report, no leak; a decoder that succeeds consumed exactly one term. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "send_frame.h"
#include "../../proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct bump {
    char mem[1 << 16];
    size_t used;
    int left;
} bump_t;

static bump_t bump;

static void *bump_alloc(void *ud, size_t n)
{
    bump_t *b = ud;
    if (b->left-- == 0 || n > sizeof b->mem - b->used)
        return NULL;
    void *p = b->mem + b->used;
    b->used += (n + 15) & ~(size_t)15;
    return p;
}

/* After a successful decode, the index is where the term ends. */
#define check_end(buf, start, end) check_end_at(buf, start, end, __LINE__)
static void check_end_at(const char *buf, int start, int end, int line)
{
    int i = start;
    if (ei_skip_term(buf, &i) < 0 || i != end) {
        fprintf(stderr, "proto_fuzz.c:%d: decoded to %d, the term ends at %d\n", line, end, i);
        abort();
    }
}

static void decode_value(const char *buf, int idx, int left)
{
    int i;
    proto_post_t p;
    proto_tag_t t;
    proto_author_t a;
    proto_settings_t s;
    proto_post_t *v;
    int n;
    proto_pagination_t pg;

    memset(&p, 0, sizeof p);
    i = idx;
    if (proto_decode_post(buf, &i, &p) == 0)
        check_end(buf, idx, i);
    proto_post_clear(&p);
    memset(&t, 0, sizeof t);
    i = idx;
    if (proto_decode_tag(buf, &i, &t) == 0)
        check_end(buf, idx, i);
    proto_tag_clear(&t);
    memset(&a, 0, sizeof a);
    i = idx;
    if (proto_decode_author(buf, &i, &a) == 0)
        check_end(buf, idx, i);
    proto_author_clear(&a);
    memset(&s, 0, sizeof s);
    i = idx;
    if (proto_decode_settings(buf, &i, &s) == 0)
        check_end(buf, idx, i);
    proto_settings_clear(&s);
    i = idx;
    memset(&pg, 0, sizeof pg);
    if (proto_decode_post_list(buf, &i, &v, &n, &pg) == 0)
        check_end(buf, idx, i);
    proto_posts_free(v, n);

    /* the same from an allocator; structs decoded so are never cleared */
    proto_alloc_t al = { bump_alloc, &bump };
    bump.used = 0;
    bump.left = left;
    i = idx;
    if (proto_decode_post_list_in(&al, buf, &i, &v, &n, &pg) == 0)
        check_end(buf, idx, i);
    bump.used = 0;
    bump.left = left;
    memset(&p, 0, sizeof p);
    i = idx;
    if (proto_decode_post_in(&al, buf, &i, &p) == 0)
        check_end(buf, idx, i);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    ei_x_buff f;
    int start; /* the message, after its version byte */
    if (!fuzz_send_frame(data, size, &f, &start, NULL))
        return 0;
    const char *buf = f.buff;

    proto_req_t q;
    int i = start;
    (void)proto_req_decode(buf, &i, &q);

    char reason[PROTO_SLUG_MAX + 1];
    i = start;
    if (proto_decode_reply(buf, &i, reason, sizeof reason) == PROTO_OK) {
        /* the allocator runs dry after a number of allocations the input picks */
        decode_value(buf, i, -1);
        decode_value(buf, i, size > 0 ? data[size - 1] % 64 : 0);
    }
    decode_value(buf, start, -1); /* a bare value too */
    ei_x_free(&f);
    return 0;
}
