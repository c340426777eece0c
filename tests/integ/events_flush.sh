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
#   - FLUSH's inode and the segment's are in different blocks of the inode
#     table (debugfs imap, independent of the writer's own arithmetic);
#   - what the device holds when a writer (preallocate=8192: its zeros grow
#     every few appends) is gone, before the file system writes anything back
#     (a copy of the image, checked with e2fsck and mounted): every acknowledged
#     event, with its id - what a crash that loses the page cache would leave;
#   - sync_mtime=on: the same appends also write the inode's block (2 each here;
#     a note, not a failure, on a kernel whose fdatasync leaves it out);
#   - after the file system is unmounted and mounted again, the log verifies and
#     every acknowledged event is there.
# Needs root, losetup, mkfs.ext4, e2fsck, debugfs and loop devices: it says SKIP
# otherwise, or fails with REQUIRE_LOOP=1.
set -u
cd "$(dirname "$0")/../.." || exit 2
B=${1:-build}
BIN=$B/bin
passed=0
failed=0

T=$(mktemp -d /tmp/ev_flush.XXXXXX)
M=$T/mnt
C=$T/crash
LOOP=
LOOP2=
cleanup() {
    mountpoint -q "$C" 2> /dev/null && umount "$C"
    mountpoint -q "$M" 2> /dev/null && umount "$M"
    [ -n "$LOOP2" ] && losetup -d "$LOOP2" 2> /dev/null
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2> /dev/null
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

mkdir -p "$M" "$C"
# lazy_itable_init=0: no background zeroing of inode tables after the mount,
# which would add writes to the counted window.
if [ "$(id -u)" -ne 0 ] || ! command -v losetup > /dev/null || ! command -v mkfs.ext4 > /dev/null ||
    ! command -v debugfs > /dev/null || ! command -v e2fsck > /dev/null ||
    ! truncate -s 64M "$T/img" ||
    ! mkfs.ext4 -q -F -b 4096 -O ^has_journal -E lazy_itable_init=0 "$T/img" 2> /dev/null ||
    ! LOOP=$(losetup -f --show "$T/img" 2> /dev/null) || ! mount -t ext4 "$LOOP" "$M" 2> /dev/null; then
    if [ "${REQUIRE_LOOP:-0}" = 1 ]; then
        echo "FAIL: REQUIRE_LOOP=1 but no ext4 on a loop device here (root, losetup, mkfs.ext4, e2fsck, debugfs)"
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "# SKIP: needs root, losetup, mkfs.ext4, e2fsck, debugfs and a loop device to mount"
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

# run DIR OPTS OUT: 110 paced appends into $M/DIR?OPTS, acknowledgements to OUT;
# prints "blocks flushes appends" over the appends after the 10th acknowledgement.
# With CRASH_COPY set, the image is copied right after the writer ends, before
# anything else touches the file system.
run() {
    local dir=$1 opts=$2 out=$3 a b n=0 wpid first last rc
    : > "$out"
    EVENTS_URL="file:$M/$dir?$opts" WRITER_APPENDERS=1 WRITER_MAX=110 WRITER_PACE_MS=10 \
        "$BIN/test-events_writer" > "$out" 2> "$out.err" &
    wpid=$!
    while [ "$(wc -l < "$out")" -lt 10 ] && kill -0 "$wpid" 2> /dev/null && [ $n -lt 3000 ]; do
        sleep 0.005
        n=$((n + 1))
    done
    a=$(counters)
    first=$(wc -l < "$out")
    wait "$wpid"
    rc=$?
    [ -n "${CRASH_COPY:-}" ] && cp --sparse=always "$T/img" "$CRASH_COPY"
    b=$(counters)
    last=$(wc -l < "$out")
    [ $rc -eq 0 ] || { echo "writer ($opts) exited $rc: $(cat "$out.err")" >&2; return 1; }
    set -- $a $b
    echo "$(($3 - $1)) $(($4 - $2)) $((last - first))"
}

# per_append COUNT APPENDS: COUNT / APPENDS with two decimals.
per_append() { awk -v c="$1" -v n="$2" 'BEGIN { printf "%.2f", c / n }'; }

# missing_in EXPORT ACKS...: how many "SEQ ID" lines of ACKS have no record with
# that id in the JSON lines of EXPORT.
missing_in() {
    local export=$1
    shift
    cat "$@" | while read -r _ id; do
        grep -q "\"id\" : \"$id\"" "$export" || echo x
    done | wc -l
}

# itable_block INO: the block of the inode table that holds inode INO (debugfs
# reads the device; the table's place never moves).
itable_block() {
    debugfs -R "imap <$1>" "$LOOP" 2> /dev/null | sed -n 's/.*located at block \([0-9]*\).*/\1/p'
}

read -r w f n < <(run log "fsync=always" "$T/default.out") || n=0
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

fb=$(itable_block "$(stat -c %i "$M/log/FLUSH")")
sb=$(itable_block "$(stat -c %i "$M/log/00000000000000000001.log")")
if [ -n "$fb" ] && [ -n "$sb" ] && [ "$fb" != "$sb" ]; then
    ok "FLUSH's inode is in another inode-table block than the segment's ($fb, $sb)"
else
    ko "FLUSH's inode table block '$fb', the segment's '$sb': expected two different blocks"
fi

# The device's content when a writer ended, as a crash would leave it. Small
# preallocations here, so the log grows its zeros every few appends (each growth
# synced by the segment's own fsync, the appends between by the flush).
read -r _ _ n < <(CRASH_COPY=$T/crash.img run log3 "fsync=always&preallocate=8192" "$T/crash.out") ||
    n=0
if e2fsck -fy "$T/crash.img" > "$T/fsck.out" 2>&1 || [ $? -le 1 ]; then
    LOOP2=$(losetup -f --show "$T/crash.img") && mount -t ext4 -o ro "$LOOP2" "$C" &&
        EVENTS_URL="file:$C/log3" "$BIN/oneblog-events" export --format jsonl \
            > "$T/crash.export" 2> "$T/crash.err"
    acked=$(wc -l < "$T/crash.out")
    missing=$(missing_in "$T/crash.export" "$T/crash.out")
    if [ "$acked" -eq 110 ] && [ "$missing" -eq 0 ]; then
        ok "all $acked acknowledged events are on the device when the writer is gone"
    else
        ko "$missing of $acked acknowledged events not on the device ($(head -c 300 "$T/crash.err"))"
    fi
    mountpoint -q "$C" && umount "$C"
    losetup -d "$LOOP2" && LOOP2=
else
    ko "e2fsck could not repair the device's copy: $(tail -5 "$T/fsck.out")"
fi

read -r w f n < <(run log2 "fsync=always&sync_mtime=on" "$T/mtime.out") || n=0
if [ "${n:-0}" -ge 80 ]; then
    wm=$(per_append "$w" "$n")
    echo "# sync_mtime=on: $w blocks written, $f flushes over $n appends ($wm per append)"
    if awk -v x="$wm" 'BEGIN { exit !(x >= 1.5) }'; then
        ok "with sync_mtime=on the segment's fdatasync also writes its inode ($wm blocks per append)"
    else
        echo "# note: with sync_mtime=on only $wm blocks per append: this kernel's fdatasync leaves the inode out"
        ok "sync_mtime=on appends ($wm blocks per append)"
    fi
else
    ko "the sync_mtime=on writer acknowledged ${n:-0} paced appends in the window"
fi

# Everything acknowledged is there after the file system went away and came back.
umount "$M" && mount -t ext4 "$LOOP" "$M" || ko "remount"
for d in log log2 log3; do
    if EVENTS_URL="file:$M/$d" "$BIN/oneblog-events" verify > "$T/verify" 2>&1; then
        ok "$d verifies after a remount"
    else
        ko "verify $d after a remount: $(cat "$T/verify")"
    fi
done
EVENTS_URL="file:$M/log" "$BIN/oneblog-events" export --format jsonl > "$T/export" 2> /dev/null
EVENTS_URL="file:$M/log2" "$BIN/oneblog-events" export --format jsonl >> "$T/export" 2> /dev/null
EVENTS_URL="file:$M/log3" "$BIN/oneblog-events" export --format jsonl >> "$T/export" 2> /dev/null
missing=$(missing_in "$T/export" "$T/default.out" "$T/mtime.out" "$T/crash.out")
acked=$(cat "$T/default.out" "$T/mtime.out" "$T/crash.out" | wc -l)
if [ "$acked" -eq 330 ] && [ "$missing" -eq 0 ]; then
    ok "all $acked acknowledged events are in the export after a remount"
else
    ko "$missing of $acked acknowledged events missing after a remount"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
