#!/usr/bin/env bash
# tests/integ/fuzz_short.sh BUILD - every libFuzzer target of tests/fuzz/ for a
# short bounded run (FUZZ_SHORT_S seconds each, default 5) on its seed corpus,
# so that CI (make test) fuzzes every parser on every change; `make fuzz` runs
# them longer (FUZZ_SECONDS, default 30). The targets are built with clang,
# ASan and UBSan into build/fuzz (make FUZZ=1 CC=clang fuzz-bin). New inputs go
# to a temporary directory (the committed corpus is read only); a crash fails
# the check and its input is kept in build/fuzz/ci-NAME-crash-*.
# Ends with "N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
S=${FUZZ_SHORT_S:-5}
T=$(mktemp -d /tmp/fuzz-short.XXXXXX)
trap 'rm -rf "$T"' EXIT
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }

if ! command -v clang >/dev/null; then
    bad "clang is needed for the fuzz targets (make deps)"
    echo "$(basename "$0"): $passed passed, $failed failed"; exit 1
fi
if make -s -j2 --no-print-directory FUZZ=1 CC=clang fuzz-bin >"$T/build.log" 2>&1; then
    ok "fuzz targets build (clang, libFuzzer, ASan, UBSan)"
else
    bad "fuzz targets build"; tail -20 "$T/build.log" | sed 's/^/    /'
fi
for src in tests/fuzz/*.c; do
    f=$(basename "$src" .c)
    bin=build/fuzz/fuzz/$f
    [ -x "$bin" ] || { bad "$f: no binary"; continue; }
    mkdir -p "$T/corpus-$f"
    seeds=tests/fuzz/corpus/$f
    [ -d "$seeds" ] || seeds=
    # -max_total_time bounds the run; timeout(1) bounds a hang in start-up.
    timeout $((S + 60)) "$bin" -max_total_time="$S" -print_final_stats=1 -timeout=10 \
        -rss_limit_mb=1024 -artifact_prefix="build/fuzz/ci-$f-" "$T/corpus-$f" $seeds \
        >"$T/$f.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$T/$f.log")
    if [ "$rc" -eq 0 ] && [ "${runs:-0}" -gt 0 ]; then
        ok "$f: ${runs} inputs in ${S} s, no crash"
    else
        bad "$f: exit $rc after ${runs:-0} inputs"
        grep -E 'ERROR|SUMMARY|Test unit written' "$T/$f.log" | head -10 | sed 's/^/    /'
    fi
done
echo "$(basename "$0"): $passed passed, $failed failed"
[ "$failed" -eq 0 ]
