#!/usr/bin/env bash
# events_bad_input.sh BUILD - the file event log facing damage and a full disk,
# through the real CLI:
#   - bytes flipped in the middle of a segment: verify names the place and exits 1;
#     export and tail stop there with an error (exit 1) after the records before
#     it; a writer refuses to open (it would otherwise truncate acknowledged
#     records) and the file is left as it was.
#   - a full disk (a 1 MiB tmpfs, then a 4 MiB ext4 image on a loop device, where
#     the log appends with O_DIRECT; in a private mount namespace, unshare -m): the
#     append fails with "No space left on device", every event acknowledged before
#     is there, the log verifies, and once space is freed appends continue.
# (Unreachable PostgreSQL and MongoDB servers are in events_contract.sh.)
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${1:-build}
case $B in
/*) CLI=$B/bin/oneblog-events ;; # tests/run.sh passes an absolute path
*) CLI=$(pwd)/$B/bin/oneblog-events ;;
esac
passed=0
failed=0
T=$(mktemp -d /tmp/ev_bad.XXXXXX)
trap 'rm -rf "$T"' EXIT
ok() { passed=$((passed + 1)); echo "ok   $*"; }
ko() { failed=$((failed + 1)); echo "FAIL $*"; }

[ -x "$CLI" ] || { echo "FAIL $CLI is not built"; echo "0 passed, 1 failed"; exit 1; }

# ---- a corrupt segment ----------------------------------------------------------
export EVENTS_URL="file:$T/log"
"$CLI" append --type page.view --actor reader --data '{"post":"a-post"}' --count 200 > /dev/null
seg=$T/log/00000000000000000001.log
size=$(stat -c %s "$seg")
# Flip 4 bytes in the middle of the segment.
mid=$((size / 2))
printf '\xde\xad\xbe\xef' | dd of="$seg" bs=1 seek="$mid" conv=notrunc status=none

out=$("$CLI" verify 2>&1); rc=$?
if [ "$rc" -eq 1 ] && [[ $out == *"BROKEN"*"offset"*"corrupt record"* ]] && [[ $out == *"verify: BROKEN"* ]]; then
    ok "verify reports the damage: $(echo "$out" | head -n 1)"
else
    ko "verify on a corrupt segment: rc $rc: $out"
fi

"$CLI" export --format jsonl > "$T/export" 2> "$T/export.err"; rc=$?
n=$(wc -l < "$T/export")
if [ "$rc" -eq 1 ] && grep -q 'reads stop here' "$T/export.err" && [ "$n" -gt 50 ] && [ "$n" -lt 200 ]; then
    ok "export stops at the damage after $n good records: $(head -n 1 "$T/export.err")"
else
    ko "export on a corrupt segment: rc $rc, $n records, $(cat "$T/export.err")"
fi
# Every record exported before the damage is whole JSON with consecutive seqs.
if awk '{ if (!match($0, /"seq" : \{ "\$numberLong" : "[0-9]+" \}/)) exit 1; s = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", s); if (s != NR) exit 1 }' "$T/export"; then
    ok "no damaged record is returned"
else
    ko "export returned a bad record"
fi

out=$("$CLI" append --type page.view 2>&1); rc=$?
if [ "$rc" -ne 0 ] && [[ $out == *"not truncating acknowledged data"* ]] && [ "$(stat -c %s "$seg")" -eq "$size" ]; then
    ok "a writer refuses the damaged log and leaves it untouched"
else
    ko "writer on a corrupt segment: rc $rc: $out (size $(stat -c %s "$seg") vs $size)"
fi

# ---- a full disk ----------------------------------------------------------------
# full_disk FS: FS is tmpfs (1 MiB; appends buffered or O_DIRECT into memory) or
# ext4 (a 4 MiB image on a loop device: the log's direct appends, O_DIRECT, meet
# the full disk on a block device).
full_disk() {
    local fs=$1 dir=$T/small-$1
    mkdir -p "$dir"
    [ "$fs" = ext4 ] && { truncate -s 4M "$T/ext4.img" && mkfs.ext4 -q -F -b 4096 "$T/ext4.img" 2>/dev/null ||
                          { ko "full disk ($fs): mkfs.ext4 failed"; return; }; }
    unshare -m bash -c '
        set -u
        CLI=$1 D=$2 T=$3 FS=$4
        if [ "$FS" = ext4 ]; then
            mount -o loop "$T/ext4.img" "$D" || exit 10
            filler=40 # x 64 KiB: about 0.9 MiB left
        else
            mount -t tmpfs -o size=1m tmpfs "$D" || exit 10
            filler=4
        fi
        export EVENTS_URL="file:$D/log"
        dd if=/dev/zero of="$D/filler" bs=64k count=$filler status=none
        "$CLI" append --type page.view --actor full-disk --data "{\"pad\":\"$(head -c 300 /dev/zero | tr "\\0" x)\"}" \
            --count 100000 > "$T/acked" 2> "$T/append.err"
        echo "$?" > "$T/append.rc"
        "$CLI" verify > "$T/verify1" 2>&1; echo "$?" > "$T/verify1.rc"
        "$CLI" export --format jsonl > "$T/full.jsonl" 2>/dev/null
        rm -f "$D/filler"
        "$CLI" append --type page.view --count 10 > "$T/acked2" 2> "$T/append2.err"
        echo "$?" > "$T/append2.rc"
        "$CLI" verify > "$T/verify2" 2>&1; echo "$?" > "$T/verify2.rc"
        umount "$D"
    ' _ "$CLI" "$dir" "$T" "$fs"
    urc=$?
    if [ "$urc" -ne 0 ]; then
        ko "full disk ($fs): the namespace script failed ($urc)"
        return
    fi
    n=$(wc -l < "$T/acked")
    if [ "$(cat "$T/append.rc")" -eq 2 ] && grep -q 'No space left on device' "$T/append.err" && [ "$n" -gt 100 ]; then
        ok "full disk ($fs): append fails clearly after $n acknowledged events: $(head -c 150 "$T/append.err")"
    else
        ko "full disk ($fs): rc $(cat "$T/append.rc"), $n acked: $(cat "$T/append.err")"
    fi
    missing=$(awk 'NR == FNR { want[$1] = 1; next }
                   match($0, /"seq" : \{ "\$numberLong" : "[0-9]+" \}/) { s = substr($0, RSTART, RLENGTH); gsub(/[^0-9]/, "", s); delete want[s] }
                   END { n = 0; for (s in want) n++; print n }' "$T/acked" "$T/full.jsonl")
    if [ "$missing" -eq 0 ] && [ "$(cat "$T/verify1.rc")" -eq 0 ]; then
        ok "full disk ($fs): every acknowledged event is there and the log verifies"
    else
        ko "full disk ($fs): $missing acknowledged events missing; verify: $(cat "$T/verify1")"
    fi
    if [ "$(cat "$T/append2.rc")" -eq 0 ] && [ "$(head -n 1 "$T/acked2")" -eq $((n + 1)) ] &&
       [ "$(cat "$T/verify2.rc")" -eq 0 ]; then
        ok "full disk ($fs): appends continue at seq $((n + 1)) once space is freed"
    else
        ko "full disk ($fs): after freeing space: rc $(cat "$T/append2.rc") $(cat "$T/append2.err") $(cat "$T/verify2")"
    fi
}

if ! unshare -m true 2>/dev/null; then
    ko "full disk: unshare -m is not available (needs root)"
else
    full_disk tmpfs
    full_disk ext4
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
