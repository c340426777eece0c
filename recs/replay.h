/* replay.h - the recommendation commands of oneblog-events (events/cli.c calls
 * them with the store it opened read-only):
 *
 *   replay --model recs@V [--since SEQ|TIME] [--sample N] [--event ID]
 *          [--snapshots DIR] [--params NAME=VALUE,...]
 *       re-runs logged recs.request events through model version V in a sandboxed
 *       child process and compares with what was logged.
 *   ab-report
 *       click-through rate per variant, from recs.request, page.view and
 *       recs.click events.
 *
 * Each returns the process exit status (0 ok, 1 nothing to report / not found,
 * 2 usage or store errors), as the other commands of the CLI.
 */
#ifndef ONEBLOG_RECS_REPLAY_H
#define ONEBLOG_RECS_REPLAY_H

#include "events/store.h"

int recs_cli_replay(ev_store_t *s, int argc, char **argv);
int recs_cli_ab_report(ev_store_t *s, int argc, char **argv);

#endif /* ONEBLOG_RECS_REPLAY_H */
