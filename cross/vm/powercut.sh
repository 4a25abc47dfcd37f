#!/usr/bin/env bash
# The store under real power cuts: a guest writes records on ext4 (data=ordered) on a virtio disk
# and QEMU is SIGKILLed at a random point; the next boot opens the store and checks that every
# acknowledged write is there, intact, and that no record is unreadable, then writes on until
# the next cut (one boot per cut). One disk image serves every cut, so the filesystem's state
# accumulates as on a device. A last boot only checks and unmounts cleanly, and the image then
# gets a read-only `e2fsck -fn`, for information.
#
# Usage: cross/vm/powercut.sh [ARCH]            (default aarch64; run as root: prepare.sh installs)
# Settings:
#   TINYLET_POWERCUT_CUTS      power cuts (default 200; tests/all.sh runs 5)
#   TINYLET_POWERCUT_SEED      seed of the random cut points (default: clock); printed to repeat
#   TINYLET_POWERCUT_MAX_ACKS  a cut comes after 1..N acknowledged writes (default 120)
#   TINYLET_POWERCUT_DISK_MB   size of the disk image (default 64)
# Last lines: the figures, then `vm: 1 passed, 0 failed` (or `0 passed, 1 failed`).
# Why QEMU runs the disk with cache=none,aio=threads: "Power cuts" in cross/vm/README.md.
set -uo pipefail
. "$(dirname "$0")/common.sh"
. "$VM_DIR/build-payload.sh"
REPO=$(cd "$VM_DIR/../.." && pwd)

ARCH=${1:-aarch64}
CUTS=${TINYLET_POWERCUT_CUTS:-200}
SEED=${TINYLET_POWERCUT_SEED:-$(( $(date +%s%N) % 32768 ))}
MAX_ACKS=${TINYLET_POWERCUT_MAX_ACKS:-120}
DISK_MB=${TINYLET_POWERCUT_DISK_MB:-64}
command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null ||
    die "mkfs.ext4 and e2fsck are needed (apt-get install e2fsprogs)"
"$VM_DIR/prepare.sh" "$ARCH" || die "prepare.sh failed"
[ -f "$VM_CACHE/$ARCH/disk-modules.order" ] || die "the $ARCH guest has no disk modules: rerun prepare.sh"

fail() { echo "powercut: FAIL: $*"; echo "vm: 0 passed, 1 failed"; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinylet-powercut.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

echo "=== powercut $ARCH: build"
payload=$WORK/payload
mkdir -p "$payload/bin"
exe=$(cargo_exe "$ARCH" store_powercut test --test store_powercut --no-run) && [ -n "$exe" ] ||
    fail "build of tests/store_powercut.rs for $ARCH failed"
put_exe "$ARCH" "$exe" "$payload/bin/store_powercut"
cp "$VM_DIR/guest/powercut.sh" "$payload/run"

# A disk image on the host's disk (O_DIRECT, which cache=none uses, needs a real filesystem).
disk=$WORK/disk.img
truncate -s "${DISK_MB}M" "$disk"
mkfs.ext4 -q -F -b 4096 -L tinylet-data "$disk" || fail "mkfs.ext4 failed"
: > "$WORK/model"
: > "$WORK/writer.log"

echo "=== powercut $ARCH: $CUTS cuts, seed $SEED (TINYLET_POWERCUT_SEED=$SEED repeats the cut points)"
RANDOM=$SEED
checked=0 early=0 unchecked_boots=0
tried=0 acked=0 records=0 unreadable=0 temps=0
declare -A flight=([none]=0 [old]=0 [new]=0 [moot]=0)
val() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$line"; }
start=$(now_ms)
# Boot k checks what boot k-1 left (boot 1: a fresh store), then writes until cut k; boot
# CUTS+1 only checks.
for ((boot = 1; boot <= CUTS + 1; boot++)); do
    t0=$(now_ms)
    cp "$WORK/model" "$payload/model"
    cp "$WORK/writer.log" "$payload/writer.log"
    echo "$RANDOM$RANDOM" > "$payload/seed"
    if [ "$boot" -le "$CUTS" ]; then
        echo cycle > "$payload/mode"
        # One cut in ten lands at a random time after the payload starts (in the journal replay
        # at mount, Store::open's recovery, the check, or the first writes); the others after a
        # random number of acknowledged writes plus up to 30 ms (mostly inside the next write).
        if ((RANDOM % 10 == 0)); then
            at="@@TINYLET-PAYLOAD-BEGIN 1 $((RANDOM % 1500))"
            early=$((early + 1))
        else
            at="@@ok $((1 + RANDOM % MAX_ACKS)) $((RANDOM % 31))"
        fi
        want=137
    else
        echo verify > "$payload/mode"
        at= want=0
    fi
    TINYLET_VM_DISK=$disk TINYLET_VM_CUT=$at TINYLET_VM_TIMEOUT=120 \
        "$VM_DIR/run.sh" "$ARCH" "$payload" > "$WORK/out" 2> "$WORK/err"
    rc=$?
    line=$(grep -o -m1 '@@verify .*' "$WORK/out")
    model=$(grep -o -m1 '@@model .*' "$WORK/out")
    if [ "$rc" != "$want" ] || { [ -n "$line" ] && [ "$(val result)" != ok ]; } ||
        { [ "$want" = 0 ] && [ -z "$model" ]; }; then
        tail -n 30 "$WORK/out" "$WORK/err"
        cp "$disk" "$REPO/target/powercut-failed-disk.img" 2>/dev/null &&
            echo "the disk image is kept in target/powercut-failed-disk.img"
        fail "boot $boot: exit $rc, $want expected (${at:-no cut})"
    fi
    if [ -n "$model" ]; then
        # The check ran: its model and this boot's writer report are the next boot's input.
        echo "$model" > "$WORK/model"
        cp "$WORK/out" "$WORK/writer.log"
        if [ "$boot" -gt 1 ]; then
            checked=$((checked + 1))
            tried=$((tried + $(val tried))) acked=$((acked + $(val acked)))
            records=$((records + $(val records))) unreadable=$((unreadable + $(val unreadable)))
            temps=$((temps + $(val temps_removed)))
            f=$(val in_flight); flight[$f]=$((${flight[$f]:-0} + 1))
        fi
    else
        # Cut before the check finished: the next boot checks the same writer report again.
        unchecked_boots=$((unchecked_boots + 1))
    fi
    echo "boot $boot (cut: ${at:-none}) $(( ($(now_ms) - t0) / 100 ))00 ms: ${line:-cut before the check}"
done
total=$(( $(now_ms) - start ))
per_cut=$(awk "BEGIN { printf \"%.1f\", $total / 1000 / ($CUTS + 1) }")
fsck=clean
e2fsck -fn "$disk" > "$WORK/fsck.out" 2>&1 || { fsck=$(head -n 8 "$WORK/fsck.out"); fsck="not clean: $fsck"; }

echo "powercut: $CUTS cuts of the $ARCH guest ($early at a random time after boot), ext4 data=ordered on virtio-blk (cache=none), $checked checks (boots cut before their check finished: $unchecked_boots)"
echo "powercut: writes started $tried, acknowledged $acked, acknowledged lost 0, unreadable records $unreadable"
echo "powercut: written but unacknowledged at the cut: $((flight[old] + flight[new] + flight[moot])) (found durable ${flight[new]}, rolled back ${flight[old]}, no visible change ${flight[moot]}); cuts with no write in flight ${flight[none]}"
echo "powercut: records checked after the cuts $records; temporary files removed by recovery $temps; e2fsck -fn after the last boot: $fsck"
echo "powercut: $((total / 1000)) s in all, $per_cut s per boot"
echo "vm: 1 passed, 0 failed"
