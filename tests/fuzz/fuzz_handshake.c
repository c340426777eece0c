/* fuzz_handshake.c - libFuzzer target for the byte parsers that face the network
 * before a connection is authenticated: the handshake messages (handshake.c),
 * EPMD requests and replies (epmd.c) and cookie text (cookie.c: the ONEBLOG_COOKIE
 * string and a cookie file's contents, one or more cookies). The first input
 * byte picks the parser, the rest is the message body. Whatever a parser accepts
 * must build back to the same bytes (round trip). Seeds: tests/fuzz/corpus/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dist_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const uint8_t *b = data + 1;
    size_t n = size - 1;
    uint8_t out[HS_MAX + 64], d[16];
    cn_hs_name_t nm;
    char text[64];
    uint32_t c;
    int port, hi, lo, len;

    switch (sel % 9) {
    case 0:
        if (cn__hs_parse_name(b, n, &nm) == 0) {
            len = cn__hs_build_name(out, sizeof(out), nm.flags, nm.creation, nm.name);
            if (len != (int)n || memcmp(out, b, n) != 0)
                abort();
        }
        break;
    case 1:
        if (cn__hs_parse_challenge(b, n, &nm) == 0) {
            len = cn__hs_build_challenge(out, sizeof(out), nm.flags, nm.challenge,
                                         nm.creation, nm.name);
            if (len != (int)n || memcmp(out, b, n) != 0)
                abort();
        }
        break;
    case 2:
        if (cn__hs_parse_status(b, n, text, sizeof(text)) == 0 && strlen(text) != n - 1)
            abort();
        break;
    case 3:
        if (cn__hs_parse_reply(b, n, &c, d) == 0) {
            len = cn__hs_build_reply(out, sizeof(out), c, d);
            if (len != (int)n || memcmp(out, b, n) != 0)
                abort();
        }
        break;
    case 4:
        cn__hs_parse_ack(b, n, d);
        break;
    case 5: {
        cn_epmd_req_t r;
        if (cn__epmd_parse_req(b, n, &r) == 0 && r.extra_len > 0 &&
            (r.extra < b || r.extra + r.extra_len > b + n))
            abort();
        break;
    }
    case 6:
        cn__epmd_parse_port2(b, n, &port, &hi, &lo);
        break;
    case 7:
        cn__epmd_parse_alive2(b, n, &c);
        break;
    case 8: {
        char *s = malloc(n + 1);
        memcpy(s, b, n);
        s[n] = '\0';
        cn_cookies_t ck = { NULL, 0 };
        int rc = cn__cookies_parse(s, &ck);
        if (rc == 0 && ck.n <= 0)
            abort();
        /* each cookie a non-empty field between ',' and '\n', trimmed */
        for (int i = 0; i < ck.n; i++) {
            size_t cl = strlen(ck.v[i]);
            if (cl == 0 || strpbrk(ck.v[i], ",\n") || strchr(" \t\r", ck.v[i][0]) ||
                strchr(" \t\r", ck.v[i][cl - 1]) || strstr(s, ck.v[i]) == NULL)
                abort();
        }
        cn__cookies_free(&ck);
        free(s);
        break;
    }
    }
    return 0;
}
