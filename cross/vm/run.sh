#!/usr/bin/env bash
# Boot a guest kernel under QEMU (TCG) with a payload directory and report what it printed.
#
# Usage: cross/vm/run.sh ARCH PAYLOAD_DIR        (ARCH = x86_64 | aarch64 | armv7)
#
# The payload directory appears in the guest as /payload; the guest's init runs /payload/run
# (a shell script) after loading the IPVS modules. Its output is printed here and this script
# exits with its exit code (124 on timeout, 125 when the guest never reported one).
# Settings (the guest sees no host environment: put what the payload needs in files):
#   TINYLET_VM_TIMEOUT  seconds before QEMU is killed (default 300)
#   TINYLET_VM_MEM      guest memory in MiB (default 1024)
#   TINYLET_VM_CONSOLE  1: also print the whole console log (kernel messages, init)
#   TINYLET_VM_CPU      ARM only: QEMU -cpu (default cortex-a53 for aarch64, a Raspberry Pi 3/
#                       Zero 2; cortex-a15 for armv7)
#   TINYLET_VM_APPEND   extra kernel command line. The default keeps the stock kernel's
#                       settings: e.g. mitigations=off makes every syscall ~5x cheaper under TCG
#                       (ipvsadm -R of 10,000 services: 7 s instead of 38 s), which flatters
#                       syscall-heavy tools and is not what a stock Debian host runs.
#   TINYLET_VM_DISK     a raw disk image to attach as a virtio-blk disk (/dev/vda in the guest),
#                       with cache=none,aio=threads (why: "Power cuts" in this directory's README.md).
#   TINYLET_VM_CUT      "REGEX COUNT DELAY_MS" (REGEX: an ERE without spaces): cut the power
#                       (SIGKILL QEMU) DELAY_MS after the console shows COUNT lines matching
#                       REGEX; then print the payload's output so far and exit 137.
set -euo pipefail
. "$(dirname "$0")/common.sh"

[ $# -eq 2 ] || die "usage: $0 ARCH PAYLOAD_DIR"
ARCH=$1 PAYLOAD=$2
deb_arch "$ARCH" >/dev/null
[ -f "$PAYLOAD/run" ] || die "$PAYLOAD/run does not exist"
GUEST=$VM_CACHE/$ARCH
[ -f "$GUEST/READY" ] || die "no $ARCH guest in $VM_CACHE: run cross/vm/prepare.sh $ARCH"

TIMEOUT=${TINYLET_VM_TIMEOUT:-300}
MEM=${TINYLET_VM_MEM:-1024}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/tinylet-vm.XXXXXX")
QEMU_PID=
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        sleep 0.5
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# initrd = the prepared gzip'd base archive, zero padded to 512 B, then an uncompressed cpio of
# the payload: the kernel skips the zeros, but a second archive not 4-byte aligned is rejected
# ("invalid magic"). Uncompressed, because inflating tens of MB of test binaries under TCG costs
# more than copying them.
mkdir -p "$TMP/root/payload"
cp -a "$PAYLOAD/." "$TMP/root/payload/"
cp "$GUEST/initramfs.cpio.gz" "$TMP/initrd"
size=$(stat -c %s "$TMP/initrd")
pad=$(( (512 - size % 512) % 512 ))
[ "$pad" -eq 0 ] || head -c "$pad" /dev/zero >> "$TMP/initrd"
(cd "$TMP/root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >> "$TMP/initrd"
rm -rf "$TMP/root"

CMDLINE="quiet loglevel=3 panic=-1 ${TINYLET_VM_APPEND:-}"
case "$ARCH" in
    x86_64)
        # The uncompressed vmlinux boots through QEMU's PVH entry (no in-guest decompression).
        QEMU=(qemu-system-x86_64 -accel tcg -M pc -cpu "${TINYLET_VM_CPU:-max}" -append "console=ttyS0 $CMDLINE") ;;
    aarch64)
        QEMU=(qemu-system-aarch64 -accel tcg -M virt -cpu "${TINYLET_VM_CPU:-cortex-a53}"
            -append "console=ttyAMA0 $CMDLINE") ;;
    armv7)
        # Debian's armmp kernel on QEMU's virt board: QEMU passes its generated device tree, so no
        # DTB from the .deb is needed; highmem=off keeps all devices below 4 GiB for a 32-bit
        # kernel without LPAE. cortex-a15 is the armmp kernel's virt reference (a Pi 2 is an A7).
        QEMU=(qemu-system-arm -accel tcg -M virt,highmem=off -cpu "${TINYLET_VM_CPU:-cortex-a15}"
            -append "console=ttyAMA0 $CMDLINE") ;;
esac
QEMU+=(-m "$MEM" -smp 1 -kernel "$GUEST/kernel" -initrd "$TMP/initrd"
    -nodefaults -no-reboot -nic none -display none -monitor none
    -serial "file:$TMP/console.log")
if [ -n "${TINYLET_VM_DISK:-}" ]; then
    [ -f "$TINYLET_VM_DISK" ] || die "TINYLET_VM_DISK=$TINYLET_VM_DISK does not exist"
    # virtio-mmio on the ARM virt boards (no PCI enumeration to wait for); the pc board has none.
    case "$ARCH" in x86_64) blk=virtio-blk-pci ;; *) blk=virtio-blk-device ;; esac
    QEMU+=(-drive "file=$TINYLET_VM_DISK,format=raw,if=none,id=disk0,cache=none,aio=threads"
        -device "$blk,drive=disk0")
fi
CUT_RE= CUT_COUNT= CUT_DELAY_MS=
if [ -n "${TINYLET_VM_CUT:-}" ]; then
    read -r CUT_RE CUT_COUNT CUT_DELAY_MS <<<"$TINYLET_VM_CUT"
    [[ "$CUT_COUNT" =~ ^[0-9]+$ && "$CUT_DELAY_MS" =~ ^[0-9]+$ ]] ||
        die "TINYLET_VM_CUT wants \"REGEX COUNT DELAY_MS\", got: $TINYLET_VM_CUT"
fi

log "booting $ARCH ($(cat "$GUEST/kernel-release")), payload $(stat -c %s "$TMP/initrd") B initrd, timeout ${TIMEOUT}s"
start=$(now_ms)
"${QEMU[@]}" </dev/null >"$TMP/qemu.out" 2>&1 &
QEMU_PID=$!
deadline=$(( $(date +%s) + TIMEOUT ))
timed_out=0 cut=0
while kill -0 "$QEMU_PID" 2>/dev/null; do
    if [ -n "$CUT_RE" ] &&
        [ "$(grep -cE -- "$CUT_RE" "$TMP/console.log" 2>/dev/null)" -ge "$CUT_COUNT" ]; then
        [ "$CUT_DELAY_MS" -eq 0 ] || sleep "$(printf '%d.%03d' $((CUT_DELAY_MS / 1000)) $((CUT_DELAY_MS % 1000)))"
        kill -9 "$QEMU_PID" 2>/dev/null || true
        cut=1
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        log "timeout after ${TIMEOUT}s: killing QEMU (pid $QEMU_PID)"
        kill "$QEMU_PID" 2>/dev/null || true
        sleep 1
        kill -9 "$QEMU_PID" 2>/dev/null || true
        break
    fi
    # Watching for a cut point polls often: the guest acknowledges a write every few ms.
    if [ -n "$CUT_RE" ]; then sleep 0.01; else sleep 0.2; fi
done
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=
end=$(now_ms)

tr -d '\r' < "$TMP/console.log" > "$TMP/console.txt"
if [ "${TINYLET_VM_CONSOLE:-0}" = 1 ]; then
    echo "----- console ($ARCH) -----"; cat "$TMP/console.txt"; echo "----- end console -----"
fi
# The payload's output, between the markers the guest's init prints.
awk '/^@@TINYLET-PAYLOAD-END/ {p=0} p {print} /^@@TINYLET-PAYLOAD-BEGIN/ {p=1}' "$TMP/console.txt"

booted=$(sed -n 's/^@@TINYLET-BOOTED //p' "$TMP/console.txt")
rc=$(sed -n 's/^@@TINYLET-EXIT \([0-9]*\).*/\1/p' "$TMP/console.txt")
wall=$(( end - start ))
log "$ARCH: ${booted:-guest never finished booting}; host wall clock $((wall / 1000)).$(printf %03d $((wall % 1000))) s"
if [ "$cut" = 1 ]; then
    log "$ARCH: power cut (SIGKILL) after $CUT_COUNT x /$CUT_RE/ + ${CUT_DELAY_MS} ms"
    exit 137
fi
if [ "$timed_out" = 1 ]; then
    [ -n "$booted" ] || { tail -n 40 "$TMP/console.txt" >&2; cat "$TMP/qemu.out" >&2; }
    exit 124
fi
if [ -z "$rc" ]; then
    log "$ARCH: the guest reported no exit code; last console lines:"
    tail -n 40 "$TMP/console.txt" >&2
    cat "$TMP/qemu.out" >&2
    exit 125
fi
exit "$rc"
