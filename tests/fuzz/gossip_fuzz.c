/* gossip_fuzz.c - libFuzzer target for the gossip discovery's heartbeat parser
 * (cn__gossip_parse, discovery_gossip.c): what anyone on the gossip port's
 * network segment can send to every node, one UDP datagram at a time.
 *
 * A fuzzer cannot forge the HMAC, so most of the parser would sit behind the
 * compare. The first input byte picks how the rest is used:
 *   even: as received, checked with a fixed secret (magic, lengths, the MAC);
 *   odd:  the target signs it first (it writes the HMAC of bytes 0 .. 31+len
 *         into the last 32 bytes, when the length byte fits the input), so the
 *         fields behind the MAC are parsed as from a peer that has the secret.
 * Whatever the parser accepts must be a name of exactly the length announced,
 * with an '@' and no NUL, and must build back to the same bytes (round trip).
 * Seeds: tests/fuzz/corpus/gossip_fuzz/. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char secret[] = "fuzz-secret";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 2048) /* the receiver reads at most 2048 bytes */
        return 0;
    size_t n = size - 1;
    uint8_t *b = malloc(n ? n : 1); /* its own allocation: ASan sees every overread */
    if (b == NULL)
        return 0;
    memcpy(b, data + 1, n);
    if ((data[0] & 1) && n >= 31 && n == 31 + (size_t)b[30] + 32) {
        unsigned int mlen = 32;
        HMAC(EVP_sha256(), secret, (int)(sizeof(secret) - 1), b, n - 32, b + n - 32, &mlen);
    }
    cn__gossip_hb_t hb;
    int rc = cn__gossip_parse(b, n, secret, sizeof(secret) - 1, &hb);
    if (rc != 0 && rc != -EPROTO && rc != -EBADMSG)
        abort();
    if (rc == 0) {
        size_t nl = strlen(hb.name);
        if (nl != b[30] || strchr(hb.name, '@') == NULL || hb.port < 0 || hb.port > 65535)
            abort();
        uint8_t out[31 + 255 + 32];
        int len = cn__gossip_build(out, sizeof(out), secret, sizeof(secret) - 1, hb.ts,
                                   hb.nonce, hb.port, hb.name);
        if (len != (int)n || memcmp(out, b, n) != 0)
            abort();
    }
    free(b);
    return 0;
}
