#!/usr/bin/env bash
# events_crash.sh BUILD - crash safety of the file event log.
#
# 200 rounds (EVENTS_CRASH_ROUNDS): start test-events_writer (a node whose events
# server appends with fsync=always, small segments so rolls happen too), kill -9 it
# after a random 0-59 ms (every other round writing in small pieces, so that the
# kill tears a batch) (during start-up and recovery, mid-batch, mid-roll...),
# then, before any writer reopens the log:
#   - `oneblog-events verify` passes (a torn tail is reported as a note, not damage);
#   - every event acknowledged in this round ("SEQ ID" lines printed after each
#     durable append) is exported with that seq and id, and the export never
#     returns a torn record (every line is a whole JSON record, seqs consecutive).
# At the end every event acknowledged in any round is still there, unchanged, and
# the whole log verifies. Time is bounded: the rounds stop after 150 s.
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${1:-build}
BIN=$B/bin
ROUNDS=${EVENTS_CRASH_ROUNDS:-200}
passed=0
failed=0

T=$(mktemp -d /tmp/ev_crash.XXXXXX)
wpid=
cleanup() {
    [ -n "$wpid" ] && kill -9 "$wpid" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); }
ko() { failed=$((failed + 1)); echo "FAIL: $*"; }

for b in "$BIN/test-events_writer" "$BIN/oneblog-events"; do
    if [ ! -x "$b" ]; then
        echo "FAIL: $b is not built"
        echo "0 passed, 1 failed"
        exit 1
    fi
done

export EVENTS_URL="file:$T/log?segment_bytes=16384"
acked=$T/acked
: > "$acked"

# check_acked FILE EXPORT: every "SEQ ID" of FILE appears in the JSON lines of
# EXPORT with that seq and id; the export's seqs are consecutive. Prints problems.
check_acked() {
    awk '
        NR == FNR { want[$1] = $2; n++; next }
        {
            if (!match($0, /"seq" : \{ "\$numberLong" : "[0-9]+" \}/)) { print "line without seq: " $0; bad++; next }
            s = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", s)
            if (!match($0, /"id" : "[0-9A-Z]+"/)) { print "seq " s " without id"; bad++; next }
            id = substr($0, RSTART + 8, RLENGTH - 9)
            if (prev != "" && s != prev + 1) { print "seq " s " after " prev; bad++ }
            prev = s
            if (s in want) { if (want[s] != id) { print "seq " s ": id " id ", acknowledged " want[s]; bad++ } ; delete want[s]; found++ }
        }
        END {
            for (s in want) { print "acknowledged seq " s " (" want[s] ") is missing"; bad++ }
            exit bad > 0
        }' "$1" "$2"
}

start=$SECONDS
round=0
torn=0
while [ "$round" -lt "$ROUNDS" ] && [ $((SECONDS - start)) -lt 150 ]; do
    round=$((round + 1))
    out=$T/out
    # Odd rounds write in small pieces so that kills tear batches (see the helper).
    WRITER_SPLIT_WRITES=$((round % 2)) WRITER_MAX=400 "$BIN/test-events_writer" > "$out" 2> "$T/err" &
    wpid=$!
    sleep "$(printf '0.%03d' $((RANDOM % 60)))"
    kill -9 "$wpid" 2>/dev/null
    wait "$wpid" 2>/dev/null
    wrc=$?
    wpid=
    if [ "$wrc" -ne 137 ] && [ "$wrc" -ne 0 ]; then
        ko "round $round: writer exited with $wrc: $(head -c 300 "$T/err")"
        continue
    fi
    cat "$out" >> "$acked"
    # Killed before the writer made its log (a slow start): nothing to check yet,
    # as long as nothing was acknowledged either.
    if [ ! -d "$T/log" ] && [ ! -s "$acked" ]; then
        ok
        continue
    fi
    if ! "$BIN/oneblog-events" verify > "$T/verify" 2>&1; then
        ko "round $round: verify after kill -9: $(cat "$T/verify")"
        continue
    fi
    grep -q '^note: .*interrupted append' "$T/verify" && torn=$((torn + 1))
    first=$(sort -n "$out" | head -n 1 | cut -d' ' -f1)
    if [ -n "$first" ]; then
        if ! "$BIN/oneblog-events" export --format jsonl --from "$first" > "$T/export" 2> "$T/export.err"; then
            ko "round $round: export: $(cat "$T/export.err")"
            continue
        fi
        if ! check_acked "$out" "$T/export" > "$T/check"; then
            ko "round $round: $(head -n 5 "$T/check")"
            continue
        fi
    fi
    ok
done
echo "events_crash: $round rounds in $((SECONDS - start)) s, $(wc -l < "$acked") events acknowledged, $torn torn tails seen (and recovered)"

# Finally: a writer recovers the log once more; everything acknowledged is there.
WRITER_MAX=1 "$BIN/test-events_writer" > "$T/out" 2> "$T/err" || ko "final writer: $(cat "$T/err")"
cat "$T/out" >> "$acked"
"$BIN/oneblog-events" export --format jsonl > "$T/export" 2> "$T/export.err" ||
    ko "final export: $(cat "$T/export.err")"
if check_acked "$acked" "$T/export" > "$T/check"; then
    ok
else
    ko "final check: $(head -n 5 "$T/check")"
fi
if "$BIN/oneblog-events" verify > "$T/verify" 2>&1 && grep -q 'verify: ok' "$T/verify"; then
    ok
    cat "$T/verify"
else
    ko "final verify: $(cat "$T/verify")"
fi
[ "$round" -ge 20 ] || ko "only $round rounds ran"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
