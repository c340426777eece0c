#!/usr/bin/env bash
# events_flush.sh BUILD - what a paced durable append of the file log asks of the
# disk, counted on a real ext4 file system without a journal: an image on a loop
# device made here, so the device's counters are the log's alone.
#
# The log syncs a direct append into its synced zeros by a device cache flush
# (DIR/FLUSH's fdatasync) rather than by the segment's own fdatasync, which on
# ext4 without a journal also writes the segment's inode block whenever its mtime
# moved (the 4 ms clock tick: every paced append). 100 appends 10 ms apart, one
# appender (test-events_writer), counted from the 10th acknowledgement on:
#   - default: about one 4 KiB block written per append (its data; two when a
#     record crosses a block boundary) and a flush each;
#   - sync_mtime=on: the same appends also write the inode's block (2 each),
#     which shows the counters see what the first check is about;
#   - after the file system is unmounted and mounted again, every acknowledged
#     event is there, with its id (oneblog-events verify and export).
# Needs root, losetup, mkfs.ext4 and mount (it says SKIP otherwise).
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${1:-build}
BIN=$B/bin
passed=0
failed=0

T=$(mktemp -d /tmp/ev_flush.XXXXXX)
M=$T/mnt
LOOP=
wpid=
cleanup() {
    [ -n "$wpid" ] && kill -9 "$wpid" 2>/dev/null
    mountpoint -q "$M" 2>/dev/null && umount "$M"
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    rm -rf "$T"
}
trap cleanup EXIT

ok() { passed=$((passed + 1)); echo "ok: $*"; }
ko() { failed=$((failed + 1)); echo "FAIL: $*"; }

for b in "$BIN/test-events_writer" "$BIN/oneblog-events"; do
    if [ ! -x "$b" ]; then
        echo "FAIL: $b is not built"
        echo "0 passed, 1 failed"
        exit 1
    fi
done

mkdir -p "$M"
if [ "$(id -u)" -ne 0 ] || ! command -v losetup > /dev/null || ! command -v mkfs.ext4 > /dev/null ||
    ! truncate -s 64M "$T/img" || ! mkfs.ext4 -q -F -b 4096 -O ^has_journal "$T/img" 2> /dev/null ||
    ! LOOP=$(losetup -f --show "$T/img" 2> /dev/null) || ! mount -t ext4 "$LOOP" "$M" 2> /dev/null; then
    echo "# SKIP: needs root, losetup, mkfs.ext4 and a loop device to mount"
    echo "0 passed, 0 failed"
    exit 0
fi
DEV=$(basename "$LOOP")

# counters: "blocks flushes" of the loop device: 4 KiB blocks written (from
# /sys/block/DEV/stat field 7, 512-byte sectors written: a flush writes none) and
# flush requests completed (field 16; -1 where the kernel does not count them).
counters() {
    awk '{ print int($7 / 8), ($16 == "" ? -1 : $16) }' "/sys/block/$DEV/stat"
}

# run OPTS OUT: 110 paced appends into $M/log?OPTS, acknowledgements to OUT;
# prints "blocks flushes appends" over the appends after the 10th acknowledgement.
run() {
    local opts=$1 out=$2 a b n=0
    : > "$out"
    EVENTS_URL="file:$M/log?$opts" WRITER_APPENDERS=1 WRITER_MAX=110 WRITER_PACE_MS=10 \
        "$BIN/test-events_writer" > "$out" 2> "$out.err" &
    wpid=$!
    while [ "$(wc -l < "$out")" -lt 10 ] && kill -0 "$wpid" 2> /dev/null && [ $n -lt 3000 ]; do
        sleep 0.005
        n=$((n + 1))
    done
    a=$(counters)
    local first
    first=$(wc -l < "$out")
    wait "$wpid"
    local rc=$?
    wpid=
    b=$(counters)
    local last
    last=$(wc -l < "$out")
    [ $rc -eq 0 ] || { echo "writer ($opts) exited $rc: $(cat "$out.err")" >&2; return 1; }
    set -- $a $b
    echo "$(($3 - $1)) $(($4 - $2)) $((last - first))"
}

# per_append COUNT APPENDS: COUNT / APPENDS with two decimals.
per_append() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.2f", c / n }'; }

read -r w f n < <(run "fsync=always" "$T/default.out") || n=0
if [ "${n:-0}" -ge 80 ]; then
    wd=$(per_append "$w" "$n")
    fd=$(per_append "$f" "$n")
    echo "# default: $w blocks written, $f flushes over $n appends ($wd, $fd per append)"
    if awk -v x="$wd" 'BEGIN { exit !(x <= 1.25) }'; then
        ok "a paced append writes one block (its data): $wd blocks per append"
    else
        ko "a paced append wrote $wd blocks per append (expected about 1: the data alone)"
    fi
    if [ "$f" -lt 0 ] || awk -v x="$fd" 'BEGIN { exit !(x >= 0.95) }'; then
        ok "each append flushed the device's cache ($fd flushes per append)"
    else
        ko "only $fd flushes per append: an append is acknowledged without a flush"
    fi
else
    ko "the default writer acknowledged ${n:-0} paced appends in the window (expected 100)"
fi

read -r w f n < <(run "fsync=always&sync_mtime=on" "$T/mtime.out") || n=0
if [ "${n:-0}" -ge 80 ]; then
    wm=$(per_append "$w" "$n")
    echo "# sync_mtime=on: $w blocks written, $f flushes over $n appends ($wm per append)"
    if awk -v x="$wm" 'BEGIN { exit !(x >= 1.5) }'; then
        ok "with sync_mtime=on the segment's fdatasync also writes its inode ($wm blocks per append)"
    else
        ko "with sync_mtime=on only $wm blocks per append: the counters do not see the inode's write"
    fi
else
    ko "the sync_mtime=on writer acknowledged ${n:-0} paced appends in the window"
fi

# Everything acknowledged is there after the file system went away and came back.
umount "$M" && mount -t ext4 "$LOOP" "$M" || ko "remount"
export EVENTS_URL="file:$M/log"
if "$BIN/oneblog-events" verify > "$T/verify" 2>&1; then
    ok "the log verifies after a remount"
else
    ko "verify after a remount: $(cat "$T/verify")"
fi
"$BIN/oneblog-events" export --format jsonl > "$T/export" 2> "$T/export.err"
missing=$(cat "$T/default.out" "$T/mtime.out" | while read -r seq id; do
    grep -q "\"id\" : \"$id\"" "$T/export" || echo "$seq"
done | wc -l)
acked=$(cat "$T/default.out" "$T/mtime.out" | wc -l)
if [ "$acked" -eq 220 ] && [ "$missing" -eq 0 ]; then
    ok "all $acked acknowledged events are in the export after a remount"
else
    ko "$missing of $acked acknowledged events missing after a remount"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
