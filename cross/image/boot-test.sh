#!/usr/bin/env bash
# Boots the Debian image of build-rootfs.sh under QEMU (TCG) twice and runs guest/run in it:
# boot 1 installs DEB, checks the service, a static pod, `tinylet doctor`, a restart and an
# upgrade to the same package with a bumped version; boot 2 (after power-off) checks that the pod
# came back, that the power-off stopped it gracefully, and that purge leaves no tinylet files.
# Each power-off is timed from the driver's last line to QEMU's exit. The cached image stays clean: each run boots
# a fresh qcow2 overlay of it.
#
# Usage: cross/image/boot-test.sh ARCH DEB
# Prints the guest's checks and figures; last line "image ARCH: N checks passed, M failed".
# Exit 0 when every check passed.
# Env: TINYLET_IMAGE_TIMEOUT (seconds per boot, default 1200), TINYLET_IMAGE_MEM (MiB, 1024),
#      TINYLET_IMAGE_SMP (2), TINYLET_IMAGE_CONSOLE=1 (print both console logs),
#      TINYLET_IMAGE_KEEP=DIR (keep the run's files there).
set -euo pipefail
. "$(dirname "$0")/common.sh"

[ $# -eq 2 ] || die "usage: $0 ARCH DEB"
ARCH=$(img_arch "$1")
DEB=$(realpath "$2")
[ -f "$DEB" ] || die "no package $DEB"
BASE=$IMG_CACHE/$ARCH
[ -f "$BASE/KEY" ] || die "no $ARCH image in $IMG_CACHE: run cross/image/build-rootfs.sh $ARCH"
TIMEOUT=${TINYLET_IMAGE_TIMEOUT:-1200}
# The checks guest/run reports over both boots; fewer means a boot ended early.
EXPECTED=19

RUN=$(mktemp -d "${TMPDIR:-/tmp}/tinylet-image.XXXXXX")
QEMU_PID=
cleanup() {
    if [ -n "$QEMU_PID" ] && kill -0 "$QEMU_PID" 2>/dev/null; then
        kill "$QEMU_PID" 2>/dev/null || true
        sleep 0.5
        kill -9 "$QEMU_PID" 2>/dev/null || true
    fi
    if [ -n "${TINYLET_IMAGE_KEEP:-}" ]; then
        mkdir -p "$TINYLET_IMAGE_KEEP" && cp -a "$RUN/." "$TINYLET_IMAGE_KEEP/" || true
    fi
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the test disk: driver, images script, manifest, the package and its bumped twin -------------
disk=$RUN/disk
mkdir -p "$disk"
cp "$IMG_DIR/guest/run" "$IMG_DIR/guest/pod.yaml" "$disk/"
cp "$IMG_DIR/../../tests/bed/images.sh" "$disk/images.sh"
version1=$(dpkg-deb -f "$DEB" Version)
deb_arch=$(dpkg-deb -f "$DEB" Architecture)
[ "$deb_arch" = "$ARCH" ] || die "$DEB is for $deb_arch, not $ARCH"
version2=$version1+image1
deb1=tinylet_${version1}_$ARCH.deb
deb2=tinylet_${version2}_$ARCH.deb
cp "$DEB" "$disk/$deb1"
# The upgrade: the same files under a higher version, as a point release would ship them.
dpkg-deb -R "$DEB" "$RUN/repack"
sed -i "s/^Version: .*/Version: $version2/" "$RUN/repack/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -b "$RUN/repack" "$disk/$deb2" >/dev/null
rm -rf "$RUN/repack"
printf 'DEB1=%s\nDEB2=%s\nVERSION1=%s\nVERSION2=%s\n' "$deb1" "$deb2" "$version1" "$version2" >"$disk/config"
mkfs.ext4 -q -F -L tinylet-test -d "$disk" "$RUN/test.img" 64M >/dev/null
rm -rf "$disk"

# The root: a qcow2 overlay over the cached raw image, used by both boots of this run.
qemu-img create -q -f qcow2 -F raw -b "$BASE/root.img" "$RUN/root.qcow2"

# x86: QEMU starts the uncompressed vmlinux inside Debian's bzImage through its PVH entry; the
# bzImage's own xz decompressor takes ~7 s of an idle host under TCG and minutes of a loaded one.
# Cut out once, next to the cached kernel.
KERNEL=$BASE/vmlinuz
if [ "$ARCH" = amd64 ]; then
    KERNEL=$BASE/vmlinux
    if [ ! -s "$KERNEL" ] || [ "$KERNEL" -ot "$BASE/vmlinuz" ]; then
        off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$BASE/vmlinuz" | head -n 1 | cut -d: -f1 || true)
        [ -n "$off" ] || die "no xz payload in $BASE/vmlinuz"
        tail -c +"$((off + 1))" "$BASE/vmlinuz" | xz -dc --single-stream >"$KERNEL.tmp" 2>/dev/null || true
        [ "$(head -c 4 "$KERNEL.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] ||
            die "could not cut the vmlinux out of $BASE/vmlinuz"
        mv "$KERNEL.tmp" "$KERNEL"
    fi
fi

# net.ifnames=0: the NIC keeps the kernel's name (eth0). With the rename to ens4/enp0s*
# racing systemd-networkd's start, bookworm's networkd (252) sometimes fails the link ("Failed
# to configure DHCPv4 client: Device or resource busy"), and everything ordered after
# network-online.target then waits out systemd-networkd-wait-online's 2 min (tinylet.service
# is not, so that a device without a link starts its static pods at once).
CMDLINE="root=/dev/vda rw quiet loglevel=3 systemd.show_status=false panic=-1 net.ifnames=0 tinylet.test=1"
case "$ARCH" in
    arm64)
        # A Raspberry Pi 3 / Zero 2's core; QEMU's virt board, which Debian's kernel boots as is.
        QEMU=(qemu-system-aarch64 -accel tcg -M virt -cpu "${TINYLET_IMAGE_CPU:-cortex-a53}"
            -append "console=ttyAMA0 $CMDLINE")
        ;;
    amd64)
        QEMU=(qemu-system-x86_64 -accel tcg -M pc -cpu "${TINYLET_IMAGE_CPU:-max}"
            -append "console=ttyS0 $CMDLINE")
        ;;
esac
# No route out: restrict=on keeps the user-mode network inside the guest (DHCP only), so the
# install is offline like a device's on an isolated network.
QEMU+=(-m "${TINYLET_IMAGE_MEM:-1024}" -smp "${TINYLET_IMAGE_SMP:-2}"
    -kernel "$KERNEL" -initrd "$BASE/initrd.img"
    -drive "file=$RUN/root.qcow2,if=none,id=root,format=qcow2,cache=unsafe"
    -device virtio-blk-pci,drive=root
    -drive "file=$RUN/test.img,if=none,id=test,format=raw,cache=unsafe"
    -device virtio-blk-pci,drive=test
    -netdev user,id=net0,restrict=on -device virtio-net-pci,netdev=net0
    -device virtio-rng-pci
    -nodefaults -no-reboot -display none -monitor none)

POD_MS=
POWEROFF=()
# boot N: one power-on to power-off; fills POD_MS when the guest reports its pod running.
boot() {
    local n=$1 console=$RUN/console$1.log start deadline line done_ms
    log "$ARCH boot $n ($(cat "$BASE/kernel-release"), timeout ${TIMEOUT}s)"
    : >"$console"
    start=$(now_ms)
    "${QEMU[@]}" -serial "file:$console" </dev/null >"$RUN/qemu$n.out" 2>&1 &
    QEMU_PID=$!
    deadline=$(($(date +%s) + TIMEOUT))
    done_ms=
    while kill -0 "$QEMU_PID" 2>/dev/null; do
        if [ -z "$POD_MS" ] && [ "$n" = 2 ] && grep -q '@@TINYLET-POD-RUNNING' "$console"; then
            POD_MS=$(($(now_ms) - start))
        fi
        # The driver's last line: from here on the guest only powers off.
        if [ -z "$done_ms" ] && grep -q "@@IMG phase $n done" "$console"; then
            done_ms=$(now_ms)
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "boot $n: timeout after ${TIMEOUT}s, killing QEMU"
            kill "$QEMU_PID" 2>/dev/null || true
            sleep 1
            kill -9 "$QEMU_PID" 2>/dev/null || true
            break
        fi
        sleep 0.2
    done
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=
    local end
    end=$(now_ms)
    log "$ARCH boot $n: power-on to power-off $(secs $((end - start))) s (host wall clock)"
    if [ -n "$done_ms" ]; then
        POWEROFF+=("poweroff_boot${n}_s=$(secs $((end - done_ms))) (host wall clock from the driver's last line to QEMU's exit)")
        log "$ARCH boot $n: power-off took $(secs $((end - done_ms))) s"
    fi
    tr -d '\r' <"$console" >"$console.txt"
    if [ "${TINYLET_IMAGE_CONSOLE:-0}" = 1 ]; then
        echo "----- console, $ARCH boot $n -----"; cat "$console.txt"; echo "----- end console -----"
    else
        # The driver's lines, without the journal's "unit[pid]: " prefix on the console.
        grep -E '@@IMG|@@TINYLET' "$console.txt" | sed 's/^.*\(@@\)/\1/' |
            grep -v -e '^@@IMG ok' -e '^@@IMG FAIL' || true
    fi
    [ -s "$RUN/qemu$n.out" ] && sed 's/^/[qemu] /' "$RUN/qemu$n.out" >&2 || true
}

# Reads a file back from the test disk without mounting it.
from_disk() { debugfs -R "cat /$1" "$RUN/test.img" 2>/dev/null; }

boot 1
phase=$(from_disk phase || true)
if [ "$phase" = 2 ]; then
    boot 2
else
    log "boot 1 did not finish (phase '${phase:-1}'): last console lines"
    tail -n 40 "$RUN/console1.log.txt" >&2
fi

echo "--- tinylet doctor in the $ARCH guest"
from_disk doctor.txt || echo "(none)"
echo "--- checks ($ARCH)"
results=$(from_disk results || true)
echo "$results"
echo "--- figures ($ARCH)"
from_disk figures || true
[ -z "$POD_MS" ] || echo "power_on_to_pod_running_s=$(secs "$POD_MS") (host wall clock from QEMU start, boot 2)"
[ ${#POWEROFF[@]} -eq 0 ] || printf '%s\n' "${POWEROFF[@]}"
passed=$(grep -c '^ok ' <<<"$results" || true)
failed=$(grep -c '^FAIL ' <<<"$results" || true)
if [ $((passed + failed)) -lt $EXPECTED ]; then
    failed=$((failed + EXPECTED - passed - failed))
    echo "(the guest reported $((passed + $(grep -c '^FAIL ' <<<"$results" || true))) of $EXPECTED checks: the rest count as failed)"
    [ "$phase" != 2 ] || tail -n 40 "$RUN/console2.log.txt" >&2
fi
echo "image $ARCH: $passed checks passed, $failed failed"
[ "$failed" = 0 ]
