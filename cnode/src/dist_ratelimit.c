/* dist_ratelimit.c - how many incoming connections (each one a handshake) one
 * address may open: a token bucket per IPv4/IPv6 address.
 *
 * The acceptor (dist_conn.c) asks before it starts a handshake. An address gets
 * `rate` handshakes a second with bursts of 2 x rate; above that the socket is
 * closed at once, before any byte is read, so a peer that hammers the port (a
 * cookie-guessing loop, a broken client in a restart loop) costs a close, not a
 * challenge and an MD5 each. The table is fixed (RL_SLOTS addresses); when it is
 * full the address seen longest ago makes room, which can only forgive, never
 * block a new address. A refusal is logged at most once a second per address,
 * with the count dropped since the last line.
 */
#include "dist_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

void cn__dist_rl_init(cn_dist_rl_t *rl, int rate)
{
    memset(rl, 0, sizeof(*rl));
    rl->rate = rate;
}

bool cn__dist_rl_allow(cn_dist_t *d, cn_dist_rl_t *rl, const struct sockaddr *sa,
                       socklen_t len, uint64_t now_ms)
{
    if (rl->rate <= 0 || sa == NULL)
        return true;
    uint8_t key[16] = { 0 };
    char text[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memcpy(key, &in->sin_addr, 4);
        inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    } else if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(key, &in6->sin6_addr, 16);
        inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    } else {
        return true;
    }
    double burst = 2.0 * rl->rate;
    cn_dist_rl_slot_t *s = NULL, *oldest = &rl->slot[0];
    for (int i = 0; i < CN_DIST_RL_SLOTS; i++) {
        cn_dist_rl_slot_t *x = &rl->slot[i];
        if (x->used && memcmp(x->addr, key, 16) == 0) {
            s = x;
            break;
        }
        if (!x->used || (oldest->used && x->last_ms < oldest->last_ms))
            oldest = x;
    }
    if (s == NULL) {
        s = oldest;
        memset(s, 0, sizeof(*s));
        s->used = true;
        memcpy(s->addr, key, 16);
        s->tokens = burst;
        s->last_ms = now_ms;
    }
    s->tokens += (double)(now_ms - s->last_ms) * rl->rate / 1000.0;
    if (s->tokens > burst)
        s->tokens = burst;
    s->last_ms = now_ms;
    if (s->tokens >= 1.0) {
        s->tokens -= 1.0;
        return true;
    }
    s->dropped++;
    if (now_ms - s->logged_ms >= 1000) {
        cn__dist_log(d, CN_LOG_WARN, "handshakes from %s over %d/s: %u connection(s) refused",
                     text, rl->rate, s->dropped);
        s->logged_ms = now_ms;
        s->dropped = 0;
    }
    return false;
}
