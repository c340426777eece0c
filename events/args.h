/* args.h - the values of command-line options that name a place in the event
 * log: a sequence number or a count, and a time. Shared by oneblog-events
 * (events/cli.c) and the replay command (recs/replay.c), which take the same
 * --from/--since values.
 */
#ifndef ONEBLOG_EVENTS_ARGS_H
#define ONEBLOG_EVENTS_ARGS_H

#include <stdbool.h>
#include <stdint.h>

/* A decimal unsigned 64-bit number, the whole of s (no sign, no trailing
 * bytes, no overflow). False, *out untouched, otherwise; s may be NULL. */
bool ev_parse_u64(const char *s, uint64_t *out);

/* A time as *ms, milliseconds since the epoch: given as such (ev_parse_u64, up
 * to INT64_MAX), or ISO 8601 UTC "2024-05-01T12:00:00Z" (the Z optional), or
 * just the date. False, *ms untouched, otherwise. */
bool ev_parse_time(const char *s, int64_t *ms);

#endif
