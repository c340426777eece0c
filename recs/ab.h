/* ab.h - splitting readers between model variants (A/B tests).
 *
 * A reader's bucket is a hash of the experiment's salt and the reader id, so a
 * reader stays in one variant across requests, nodes and restarts, and a new salt
 * reshuffles everyone. Buckets are 0..RECS_AB_BUCKETS-1; the treatment (recs@2 by
 * default) gets the buckets below share * RECS_AB_BUCKETS.
 *
 * The hash is FNV-1a 64 over salt, '\0', reader, finished with the splitmix64
 * mixer (FNV alone leaves the low bits of similar ids correlated). It is part of
 * the contract: changing it moves readers between variants.
 */
#ifndef ONEBLOG_RECS_AB_H
#define ONEBLOG_RECS_AB_H

#include <stdbool.h>
#include <stdint.h>

#define RECS_AB_BUCKETS 10000

/* The reader's bucket in [0, RECS_AB_BUCKETS). NULL strings count as "". */
uint32_t recs_ab_bucket(const char *salt, const char *reader);

/* True if the reader gets the treatment at this share (0..1). */
bool recs_ab_treatment(const char *salt, const char *reader, double share);

#endif /* ONEBLOG_RECS_AB_H */
