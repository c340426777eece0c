/* handshake.c - the messages of the distribution handshake (version 6, OTP 23+).
 *
 * Pure functions over byte buffers: parse one message body (what follows the
 * 2-byte length) into a struct, or build one. The dance itself (who sends what
 * when, timeouts, the cookie check) is in dist_conn.c. Layouts, big-endian:
 *
 *   send_name       'N' Flags:8 Creation:4 NLen:2 Name
 *   recv_status     's' Status
 *   challenge       'N' Flags:8 Challenge:4 Creation:4 NLen:2 Name
 *   challenge_reply 'r' Challenge:4 Digest:16
 *   challenge_ack   'a' Digest:16
 *
 * The digest is MD5(Cookie ++ the challenge written in decimal).
 */
#include "dist_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* A node name: 1..255 bytes, no NUL, one '@' with something on both sides. */
static int copy_name(const uint8_t *p, size_t n, char *out)
{
    if (n == 0 || n > 255 || memchr(p, 0, n) != NULL)
        return -EINVAL;
    memcpy(out, p, n);
    out[n] = '\0';
    const char *at = strchr(out, '@');
    if (at == NULL || at == out || at[1] == '\0')
        return -EINVAL;
    return 0;
}

int cn__hs_parse_name(const uint8_t *b, size_t len, cn_hs_name_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < 15 || b[0] != 'N')
        return -EINVAL;
    out->flags = get64(b + 1);
    out->creation = get32(b + 9);
    size_t nlen = (size_t)b[13] << 8 | b[14];
    if (15 + nlen != len)
        return -EINVAL;
    return copy_name(b + 15, nlen, out->name);
}

int cn__hs_parse_challenge(const uint8_t *b, size_t len, cn_hs_name_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < 19 || b[0] != 'N')
        return -EINVAL;
    out->flags = get64(b + 1);
    out->challenge = get32(b + 9);
    out->creation = get32(b + 13);
    size_t nlen = (size_t)b[17] << 8 | b[18];
    if (19 + nlen != len)
        return -EINVAL;
    return copy_name(b + 19, nlen, out->name);
}

int cn__hs_parse_status(const uint8_t *b, size_t len, char *out, size_t outlen)
{
    if (len < 2 || b[0] != 's' || len - 1 >= outlen || memchr(b + 1, 0, len - 1))
        return -EINVAL;
    memcpy(out, b + 1, len - 1);
    out[len - 1] = '\0';
    return 0;
}

int cn__hs_parse_reply(const uint8_t *b, size_t len, uint32_t *challenge, uint8_t digest[16])
{
    if (len != 21 || b[0] != 'r')
        return -EINVAL;
    *challenge = get32(b + 1);
    memcpy(digest, b + 5, 16);
    return 0;
}

int cn__hs_parse_ack(const uint8_t *b, size_t len, uint8_t digest[16])
{
    if (len != 17 || b[0] != 'a')
        return -EINVAL;
    memcpy(digest, b + 1, 16);
    return 0;
}

int cn__hs_build_name(uint8_t *buf, size_t cap, uint64_t flags, uint32_t creation,
                      const char *name)
{
    size_t nlen = strlen(name);
    if (nlen > 255 || 15 + nlen > cap)
        return -ENOSPC;
    buf[0] = 'N';
    put64(buf + 1, flags);
    put32(buf + 9, creation);
    buf[13] = (uint8_t)(nlen >> 8);
    buf[14] = (uint8_t)nlen;
    memcpy(buf + 15, name, nlen);
    return (int)(15 + nlen);
}

int cn__hs_build_challenge(uint8_t *buf, size_t cap, uint64_t flags, uint32_t challenge,
                           uint32_t creation, const char *name)
{
    size_t nlen = strlen(name);
    if (nlen > 255 || 19 + nlen > cap)
        return -ENOSPC;
    buf[0] = 'N';
    put64(buf + 1, flags);
    put32(buf + 9, challenge);
    put32(buf + 13, creation);
    buf[17] = (uint8_t)(nlen >> 8);
    buf[18] = (uint8_t)nlen;
    memcpy(buf + 19, name, nlen);
    return (int)(19 + nlen);
}

int cn__hs_build_status(uint8_t *buf, size_t cap, const char *status)
{
    size_t n = strlen(status);
    if (1 + n > cap)
        return -ENOSPC;
    buf[0] = 's';
    memcpy(buf + 1, status, n);
    return (int)(1 + n);
}

int cn__hs_build_reply(uint8_t *buf, size_t cap, uint32_t challenge, const uint8_t digest[16])
{
    if (cap < 21)
        return -ENOSPC;
    buf[0] = 'r';
    put32(buf + 1, challenge);
    memcpy(buf + 5, digest, 16);
    return 21;
}

int cn__hs_build_ack(uint8_t *buf, size_t cap, const uint8_t digest[16])
{
    if (cap < 17)
        return -ENOSPC;
    buf[0] = 'a';
    memcpy(buf + 1, digest, 16);
    return 17;
}

int cn__hs_digest(const char *cookie, uint32_t challenge, uint8_t out[16])
{
    char num[16];
    int nlen = snprintf(num, sizeof(num), "%u", challenge);
    unsigned int olen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        return -ENOMEM;
    int ok = EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, cookie, strlen(cookie)) == 1 &&
             EVP_DigestUpdate(ctx, num, (size_t)nlen) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &olen) == 1 && olen == 16;
    EVP_MD_CTX_free(ctx);
    return ok ? 0 : -ENOMEM;
}
