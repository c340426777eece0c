/* args_test.c - events/args.c: the seq and time values oneblog-events and
 * replay take. */
#include "test.h"

#include <stdint.h>

#include "events/args.h"

TEST(u64_takes_whole_decimal_numbers_only)
{
    uint64_t v = 7;
    ASSERT(ev_parse_u64("0", &v));
    ASSERT_EQ(v, 0);
    ASSERT(ev_parse_u64("18446744073709551615", &v));
    ASSERT_EQ(v, UINT64_MAX);
    v = 7;
    ASSERT(!ev_parse_u64("18446744073709551616", &v)); /* overflow */
    ASSERT(!ev_parse_u64("-1", &v));
    ASSERT(!ev_parse_u64("", &v));
    ASSERT(!ev_parse_u64(NULL, &v));
    ASSERT(!ev_parse_u64("12x", &v));
    /* strtoull skips white space and takes a sign after it: " -1" would be
     * UINT64_MAX. None of these is a decimal number and nothing else. */
    ASSERT(!ev_parse_u64(" -1", &v));
    ASSERT(!ev_parse_u64("\t-1", &v));
    ASSERT(!ev_parse_u64("+5", &v));
    ASSERT(!ev_parse_u64(" 5", &v));
    ASSERT_EQ(v, 7);
}

TEST(time_takes_ms_or_iso_utc)
{
    int64_t ms = 5;
    ASSERT(ev_parse_time("1714564800000", &ms));
    ASSERT_EQ(ms, 1714564800000);
    ASSERT(ev_parse_time("2024-05-01T12:00:00Z", &ms));
    ASSERT_EQ(ms, 1714564800000);
    ASSERT(ev_parse_time("2024-05-01T12:00:01", &ms));
    ASSERT_EQ(ms, 1714564801000);
    ASSERT(ev_parse_time("2024-05-01", &ms));
    ASSERT_EQ(ms, 1714521600000);
    ms = 5;
    ASSERT(!ev_parse_time("2024-05-01T12:00:00+02:00", &ms));
    ASSERT(!ev_parse_time("yesterday", &ms));
    ASSERT(!ev_parse_time("2024-05-01Zx", &ms));
    ASSERT(!ev_parse_time(" -1", &ms));
    /* Past int64_t: would come out as a time before the epoch. */
    ASSERT(!ev_parse_time("9223372036854775808", &ms));
    ASSERT_EQ(ms, 5);
    ASSERT(ev_parse_time("9223372036854775807", &ms));
    ASSERT_EQ(ms, INT64_MAX);
}
