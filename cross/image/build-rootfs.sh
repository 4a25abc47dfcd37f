#!/usr/bin/env bash
# Builds a bootable Debian bookworm root filesystem for one architecture from Debian's own
# packages with mmdebstrap: systemd as init, Debian's kernel with a small initramfs that mounts a
# virtio root, containerd + runc + containernetworking-plugins (what tinylet's package depends
# on), nothing else of note. The result is an ext4 image plus the kernel and initrd cut out of it:
#
#   $TINYLET_IMAGE_CACHE/ARCH/root.img     ext4, root=/dev/vda (boot it through a qcow2 overlay)
#   $TINYLET_IMAGE_CACHE/ARCH/vmlinuz      the kernel from the image's /boot
#   $TINYLET_IMAGE_CACHE/ARCH/initrd.img   its initramfs
#   $TINYLET_IMAGE_CACHE/ARCH/KEY          hash of everything that went into the build
#
# The build is skipped when KEY matches (package list, IMAGE_FORMAT, customize.sh); it prints
# how long the build took either way. A foreign architecture's maintainer scripts run under
# qemu-user through binfmt_misc: when the host has no such registration, the script makes one
# for the build and takes it away afterwards.
#
# Usage: cross/image/build-rootfs.sh ARCH        (arm64 | amd64; aarch64 / x86_64 accepted)
# Env: TINYLET_IMAGE_CACHE (default /var/cache/tinylet-image), TINYLET_IMAGE_MIRROR,
#      TINYLET_IMAGE_REBUILD=1 to ignore the cache.
set -euo pipefail
. "$(dirname "$0")/common.sh"

[ $# -eq 1 ] || die "usage: $0 ARCH"
ARCH=$(img_arch "$1")
[ "$(id -u)" = 0 ] || die "build-rootfs.sh needs root (mmdebstrap in root mode, mkfs, binfmt)"

# What the image holds besides minbase. containerd, runc and containernetworking-plugins are
# tinylet's Depends:, so `apt install ./tinylet_*.deb` needs no network in the guest; iptables
# serves the CNI bridge plugin's masquerade and portmap; busybox-static builds the test images.
# No ca-certificates: the guest has no route out and pulls nothing, and its
# update-ca-certificates was among the slowest maintainer scripts under qemu-user.
PACKAGES=(systemd-sysv udev kmod iproute2 iptables procps
    "linux-image-$ARCH" initramfs-tools
    containerd runc containernetworking-plugins busybox-static)

# Bump when a change to the steps below changes what the image holds.
IMAGE_FORMAT=2
OUT=$IMG_CACHE/$ARCH
# One build per architecture at a time: a second caller waits here, then finds the cache.
mkdir -p "$IMG_CACHE"
exec 9>"$IMG_CACHE/$ARCH.lock"
flock 9
key=$( (printf '%s\n' "$IMAGE_FORMAT" "$IMG_SUITE" "$IMG_MIRROR" "${PACKAGES[@]}"; cat "$IMG_DIR/customize.sh") |
    sha256sum | cut -c1-16)
if [ "${TINYLET_IMAGE_REBUILD:-0}" != 1 ] && [ -f "$OUT/KEY" ] && [ "$(cat "$OUT/KEY")" = "$key" ] &&
    [ -f "$OUT/root.img" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ]; then
    log "$ARCH root filesystem cached ($OUT, key $key; built in $(cat "$OUT/build-seconds" 2>/dev/null || echo ?) s)"
    exit 0
fi

host_packages mmdebstrap arch-test e2fsprogs qemu-utils
start=$(now_ms)

# --- binfmt for a foreign architecture ---------------------------------------------------------
BINFMT=/proc/sys/fs/binfmt_misc
MOUNTED_BINFMT=0
REGISTERED=
WORK=
cleanup() {
    [ -z "$WORK" ] || rm -rf "$WORK"
    if [ -n "$REGISTERED" ] && [ -e "$BINFMT/$REGISTERED" ]; then echo -1 >"$BINFMT/$REGISTERED" || true; fi
    if [ "$MOUNTED_BINFMT" = 1 ]; then umount "$BINFMT" || true; fi
}
trap cleanup EXIT

if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
    case "$ARCH" in arm64) qname=qemu-aarch64 ;; *) die "no qemu-user mapping for $ARCH" ;; esac
    host_packages qemu-user-static
    if [ ! -e "$BINFMT/register" ]; then
        mount -t binfmt_misc binfmt_misc "$BINFMT" || die "cannot mount binfmt_misc"
        MOUNTED_BINFMT=1
    fi
    if [ ! -e "$BINFMT/$qname" ]; then
        conf=/usr/lib/binfmt.d/$qname.conf
        [ -f "$conf" ] || die "no $conf (qemu-user-static)"
        # The F flag opens the interpreter now, so it also runs inside the chroot.
        grep -v '^#' "$conf" | head -n 1 >"$BINFMT/register" || die "cannot register $qname with binfmt_misc"
        REGISTERED=$qname
        log "registered $qname with binfmt_misc for this build"
    fi
fi

# --- mmdebstrap ----------------------------------------------------------------------------------
mkdir -p "$OUT"
WORK=$(mktemp -d "$IMG_CACHE/build-$ARCH.XXXXXX")
root=$WORK/root
include=$(IFS=,; echo "${PACKAGES[*]}")
log "building $ARCH root filesystem ($IMG_SUITE, minbase + ${#PACKAGES[@]} packages)"
# The initramfs settings go in before the kernel is installed, so its postinst builds the small
# initramfs once (under qemu-user that is the slow step). Docs, man pages and locales are left
# out of every package. The merged-usr hook installs usr-is-merged right after the essential
# packages, so init-system-helpers' "usrmerge | usr-is-merged" needs nothing more: apt's own
# pick, usrmerge, pulls in perl (~50 MB to unpack and configure, under qemu-user for arm64).
mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --include="$include" \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --setup-hook="\"$IMG_DIR/customize.sh\" setup \"\$1\"" \
    --customize-hook="\"$IMG_DIR/customize.sh\" customize \"\$1\"" \
    "$IMG_SUITE" "$root" \
    "deb $IMG_MIRROR $IMG_SUITE main" \
    "deb $IMG_MIRROR $IMG_SUITE-updates main" \
    "deb $IMG_SECURITY $IMG_SUITE-security main" >"$WORK/mmdebstrap.log" 2>&1 ||
    { tail -n 30 "$WORK/mmdebstrap.log" >&2; die "mmdebstrap failed (log above)"; }
debootstrapped=$(now_ms)

kernel=$(cd "$root/boot" && ls vmlinuz-* | sort -V | tail -n 1)
kver=${kernel#vmlinuz-}
[ -f "$root/boot/initrd.img-$kver" ] || die "no initrd for $kver in the image"
cp "$root/boot/vmlinuz-$kver" "$WORK/vmlinuz"
cp "$root/boot/initrd.img-$kver" "$WORK/initrd.img"

# The ext4 image: what the tree holds plus room for images, pods and a second package.
used=$(du -s -m "$root" | cut -f 1)
size=$((used + 768))
rm -f "$WORK/root.img"
mkfs.ext4 -q -F -L tinylet-root -d "$root" "$WORK/root.img" "${size}M" >/dev/null ||
    die "mkfs.ext4 -d failed"
rm -rf "$root"
for f in root.img vmlinuz initrd.img; do mv "$WORK/$f" "$OUT/$f"; done
end=$(now_ms)
echo "$kver" >"$OUT/kernel-release"
secs $((end - start)) >"$OUT/build-seconds"
echo "$key" >"$OUT/KEY"
log "$ARCH root filesystem built in $(secs $((end - start))) s (mmdebstrap $(secs $((debootstrapped - start))) s):" \
    "kernel $kver, ${used} MB of files, image ${size} MB ($OUT)"
