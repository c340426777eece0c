#!/usr/bin/env bash
# tests/run.sh VARIANT_ROOT - run the unit-test binaries and integration
# scripts of one build variant (build or build/san) and total their results.
#
# Unit tests: every VARIANT_ROOT/tests/** binary whose source
# tests/unit/**.c still exists, in sorted order. Integration tests: every
# executable tests/integ/*.sh, called with VARIANT_ROOT as $1 and
# ONEBLOG_BUILD=VARIANT_ROOT (absolute) in the environment.
#
# Each binary or script ends its output with "N passed, N failed"; those
# lines are summed. One that prints no such line, or exits non-zero while
# reporting no failure, counts as one more failure. The last line of this
# script is the totals, "N passed, N failed"; it exits 0 only when nothing
# failed and something passed.
#
# Environment:
#   TEST_FILTER=substr   only binaries/scripts whose path contains substr
#   TEST_ONLY=unit|integ only one kind (make test-unit / test-integ)
#   TEST_TIMEOUT_S=n     default per-unit-test timeout (seconds, default 60)
#   INTEG_TIMEOUT_S=n    limit for each integration script (default 1800)
set -uo pipefail

if [ $# -ne 1 ] || [ ! -d "$1" ]; then
    echo "usage: $0 VARIANT_ROOT   (e.g. build or build/san)" >&2
    exit 2
fi
cd "$(dirname "$0")/.." || exit 2
root=$(cd "$1" && pwd)

export ONEBLOG_BUILD="$root"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

filter=${TEST_FILTER:-}
only=${TEST_ONLY:-}
total_passed=0
total_failed=0
failures=()
out=$(mktemp)
trap 'rm -f "$out"' EXIT

# run NAME CMD... : run one binary or script, show its output, add its counts.
run() {
    local name=$1 rc line p f
    shift
    echo "# $name"
    "$@" </dev/null 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    line=$(grep -E '[0-9]+ passed, [0-9]+ failed[[:space:]]*$' "$out" | tail -n 1)
    if [[ $line =~ ([0-9]+)\ passed,\ ([0-9]+)\ failed[[:space:]]*$ ]]; then
        p=${BASH_REMATCH[1]} f=${BASH_REMATCH[2]}
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
            # E.g. LeakSanitizer in the runner itself, after its summary.
            echo "# $name: exit status $rc after reporting no failure; counted as 1 failed"
            f=1
        fi
    else
        [ "$rc" -ne 124 ] || echo "# $name: timed out"
        echo "# $name: exit status $rc and no 'N passed, N failed' line; counted as 1 failed"
        p=0 f=1
    fi
    total_passed=$((total_passed + p))
    total_failed=$((total_failed + f))
    [ "$f" -eq 0 ] || failures+=("$name ($f failed)")
}

if [ "$only" != integ ] && [ -d "$root/tests" ]; then
    while IFS= read -r bin; do
        rel=${bin#"$root/tests/"}
        # Skip stale binaries whose test source was deleted or renamed.
        [ -f "tests/unit/$rel.c" ] || continue
        [[ "$bin" == *"$filter"* ]] || continue
        run "unit/$rel" "$bin"
    done < <(find "$root/tests" -type f -perm -u+x | sort)
fi

if [ "$only" != unit ]; then
    for script in tests/integ/*.sh; do
        [ -f "$script" ] && [ -x "$script" ] || continue
        [[ "$script" == *"$filter"* ]] || continue
        # The script gets its own process group from timeout(1), so on
        # expiry its helpers (erl, servers) are killed with it.
        run "$script" timeout -k 10 "${INTEG_TIMEOUT_S:-1800}" "$script" "$root"
    done
fi

if [ ${#failures[@]} -gt 0 ]; then
    echo "# failed:"
    printf '#   %s\n' "${failures[@]}"
fi
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ] && [ "$total_passed" -gt 0 ]
