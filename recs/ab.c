/* ab.c - the hash split of ab.h. */
#include "recs/ab.h"

static uint64_t fnv(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

uint32_t recs_ab_bucket(const char *salt, const char *reader)
{
    uint64_t h = fnv(1469598103934665603ULL, salt);
    h = (h ^ 0) * 1099511628211ULL; /* the separator byte */
    h = fnv(h, reader);
    /* splitmix64 finaliser */
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return (uint32_t)(h % RECS_AB_BUCKETS);
}

bool recs_ab_treatment(const char *salt, const char *reader, double share)
{
    if (!(share > 0))
        return false;
    return recs_ab_bucket(salt, reader) < (uint32_t)(share * RECS_AB_BUCKETS + 0.5);
}
