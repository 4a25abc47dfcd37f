#!/usr/bin/env bash
# Prepare the real-kernel test VMs: host packages, Debian guest kernels, IPVS modules and a
# busybox initramfs per guest arch. Idempotent: reruns reuse what is cached under
# $TINYLET_VM_CACHE (default /var/cache/tinylet-vm).
#
# Usage: cross/vm/prepare.sh [x86_64] [aarch64] [armv7]     (default: x86_64 aarch64)
#        cross/vm/prepare.sh --host-packages               (only the host packages, QEMU among them)
set -euo pipefail
. "$(dirname "$0")/common.sh"

HOST_ONLY=0
if [ "${1:-}" = --host-packages ]; then HOST_ONLY=1; shift; fi
ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(x86_64 aarch64)
for a in "${ARCHES[@]}"; do deb_arch "$a" >/dev/null; done

[ "$(id -u)" = 0 ] || die "prepare.sh installs packages and writes $VM_CACHE: run it as root"

# --- host packages ---------------------------------------------------------------------------
# Machines of this kind carry qemu-utils from bookworm-backports, whose Breaks: forbids bookworm's
# qemu-system-common 7.2; so QEMU comes from backports too. The source lives in a file of our own
# so it can be removed cleanly and never edits the machine's main sources.
BACKPORTS_LIST=/etc/apt/sources.list.d/tinylet-bookworm-backports.sources
# libc6-dev's libc.a links the static x86_64 payloads (glibc, as shipped); musl-tools' musl-gcc
# compiles ring's C when they are built against musl instead (TINYLET_VM_LIBC=musl); the armhf
# cross gcc and libc6-dev-armhf-cross (its libc.a) link the static armv7 ones.
HOST_PKGS=(cpio busybox-static jq xz-utils zstd binutils libc6-dev gcc-aarch64-linux-gnu musl-tools
    gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
QEMU_PKGS=(qemu-system-x86 qemu-system-arm)

have_backports_source() {
    grep -rqs -- "$VM_SUITE-backports" /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null
}

install_host_packages() {
    local missing=() p
    for p in "${HOST_PKGS[@]}" "${QEMU_PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || { log "host packages present"; return 0; }
    log "installing host packages: ${missing[*]}"
    if ! have_backports_source; then
        cat > "$BACKPORTS_LIST" <<SRC
# Added by tinylet cross/vm/prepare.sh: QEMU system emulators matching the backported qemu-utils.
Types: deb
URIs: http://deb.debian.org/debian
Suites: $VM_SUITE-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    apt-get "${APT_LOCK[@]}" update -q
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK[@]}" install -y -q --no-install-recommends \
        "${HOST_PKGS[@]}"
    # Backports are pinned low by default: ask for them as the target release, so qemu-system-*
    # matches the backported qemu-utils. (pkg/suite alone is not enough: it does not move the
    # dependencies with loose version bounds, e.g. seabios, to backports.)
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK[@]}" install -y -q --no-install-recommends \
        -t "$VM_SUITE-backports" "${QEMU_PKGS[@]}"
}

install_host_packages
[ "$HOST_ONLY" = 0 ] || exit 0

# --- guest packages ----------------------------------------------------------------------------
# A private apt instance per guest arch (own sources, lists, status and cache under $VM_CACHE), so
# foreign-arch .debs are downloaded without touching the host's dpkg architecture list or lists.
guest_apt() {
    local tool=$1 darch=$2; shift 2
    local root=$VM_CACHE/apt-$darch
    "$tool" \
        -o Dir::State="$root/state" -o Dir::State::status="$root/state/status" \
        -o Dir::Cache="$root/cache" \
        -o Dir::Etc::SourceList="$root/sources.list" -o Dir::Etc::SourceParts="$root/none" \
        -o Dir::Etc::Preferences="$root/none/prefs" -o Dir::Etc::PreferencesParts="$root/none" \
        -o APT::Architecture="$darch" -o APT::Architectures="$darch" \
        -o APT::Sandbox::User=root -o Debug::NoLocking=1 -q "$@"
}

guest_apt_setup() {
    local darch=$1; local root=$VM_CACHE/apt-$darch
    mkdir -p "$root/state/lists/partial" "$root/cache/archives/partial" "$root/none" "$root/debs"
    touch "$root/state/status"
    local kr=/usr/share/keyrings/debian-archive-keyring.gpg
    cat > "$root/sources.list" <<SRC
deb [arch=$darch signed-by=$kr] http://deb.debian.org/debian $VM_SUITE main
deb [arch=$darch signed-by=$kr] http://deb.debian.org/debian $VM_SUITE-updates main
deb [arch=$darch signed-by=$kr] http://deb.debian.org/debian-security $VM_SUITE-security main
SRC
    # Lists younger than a day are good enough: the guest only needs a consistent set. A partial
    # update (one suite failed, e.g. a mirror mid-sync on bookworm-security) is used, since the
    # main suite alone still has a kernel with IPVS, but retried on the next run: it may mean an
    # older kernel than the other guests get.
    if [ -f "$root/state/partial" ] ||
        [ -z "$(find "$root/state/lists" -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null)" ]; then
        log "apt update for $darch guest packages"
        if guest_apt apt-get "$darch" update >"$root/state/update.log" 2>&1; then
            rm -f "$root/state/partial"
        else
            touch "$root/state/partial"
            grep '^E:' "$root/state/update.log" | head -n 3 >&2 || true
            log "warning: apt update for $darch was partial; using what it got"
        fi
    fi
}

# Download a guest-arch .deb (cached) and print its path.
guest_deb() {
    local darch=$1 pkg=$2; local root=$VM_CACHE/apt-$darch
    local ver f
    ver=$(guest_apt apt-cache "$darch" policy "$pkg" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "no $pkg for $darch in $VM_SUITE"
    f=$(ls "$root/debs/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$f" ]; then
        (cd "$root/debs" && guest_apt apt-get "$darch" download "$pkg=$ver" >/dev/null) ||
            die "apt-get download $pkg=$ver ($darch) failed"
        f=$(ls "$root/debs/${pkg}_${ver//:/%3a}_"*.deb | head -n1)
    fi
    echo "$f"
}

# The versioned kernel image package behind Debian's linux-image-<flavour> metapackage.
guest_kernel_pkg() {
    local darch=$1 flavour=$2
    guest_apt apt-cache "$darch" depends "linux-image-$flavour" 2>/dev/null |
        awk '/Depends: linux-image-[0-9]/ {print $2; exit}'
}

# Modules the guests load, as roots of the dependency walk: IPVS with its schedulers, dummy
# for kube-proxy's kube-ipvs0 interface; nf_tables with the expressions our tables use (nat
# chains, masquerade, dnat, ct, reject, numgen) for the IPVS mode's masquerading table and the
# nftables mode; veth and bridge for the packet tests' namespaces.
MODULE_ROOTS=(ip_vs ip_vs_rr ip_vs_wrr ip_vs_sh ip_vs_lc ip_vs_wlc ip_vs_mh ip_vs_sed ip_vs_nq
    ip_vs_dh ip_vs_fo ip_vs_ovf ip_vs_lblc ip_vs_lblcr dummy
    nf_tables nft_chain_nat nft_nat nft_masq nft_ct nft_reject_ipv4 nft_reject_ipv6 nft_numgen
    veth bridge)
# A virtio disk with ext4 (the store's power-cut runs): in the initramfs but not loaded by init;
# a payload that wants the disk loads /lib/modules/disk.order (modules init loaded are left out).
DISK_MODULE_ROOTS=(virtio_mmio virtio_pci virtio_blk ext4)

modinfo_field() { # FILE FIELD: values of a .modinfo key, read straight from the ELF (any arch)
    tr '\0' '\n' < "$1" | sed -n "s/^$2=//p"
}

# Resolve a module name (or a softdep alias such as "crc32c") to its .ko under $1.
find_module() {
    local kdir=$1 name=$2 f
    f=$(find "$kdir" \( -name "$name.ko" -o -name "${name//_/-}.ko" \) -print -quit)
    [ -z "$f" ] || { echo "$f"; return; }
    # An alias: the portable generic implementation lives under crypto/ or lib/; never pick an
    # arch-accelerated one that the emulated CPU may lack.
    for f in $(find "$kdir/crypto" "$kdir/lib" -name '*.ko' 2>/dev/null); do
        if modinfo_field "$f" alias | grep -qx -- "$name"; then echo "$f"; return; fi
    done
}

# Depth-first walk over depends= and softdep pre:, appending .ko paths (dependencies first) to
# the file $MOD_ORDER_OUT. Runs in the current shell so MOD_SEEN spans all roots.
declare -A MOD_SEEN
MOD_ORDER_OUT=
walk_module() {
    local kdir=$1 name=$2 f dep
    f=$(find_module "$kdir" "$name")
    [ -n "$f" ] || die "module $name not found in $kdir"
    local base; base=$(basename "$f" .ko)
    [ -z "${MOD_SEEN[$base]:-}" ] || return 0
    MOD_SEEN[$base]=1
    for dep in $(modinfo_field "$f" softdep | sed -n 's/^pre: *//p' | sed 's/ post:.*//') \
        $(modinfo_field "$f" depends | tr ',' ' '); do
        walk_module "$kdir" "$dep"
    done
    echo "$f" >> "$MOD_ORDER_OUT"
}

# Copy an ELF and, recursively, the shared libraries it needs from the guest sysroot $1 into the
# initramfs tree $2, keeping Debian's paths (ld.so finds them in /lib/<triplet> by default).
copy_with_libs() {
    local sysroot=$1 dest=$2 rel=$3 lib p
    [ -e "$dest/$rel" ] && return 0
    mkdir -p "$dest/$(dirname "$rel")"
    cp -a "$sysroot/$rel" "$dest/$rel"
    if [ -L "$sysroot/$rel" ]; then
        p=$(readlink "$sysroot/$rel")
        case "$p" in /*) copy_with_libs "$sysroot" "$dest" "${p#/}" ;;
            *) copy_with_libs "$sysroot" "$dest" "$(dirname "$rel")/$p" ;; esac
        return 0
    fi
    p=$(readelf -l "$sysroot/$rel" 2>/dev/null | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p')
    [ -z "$p" ] || copy_with_libs "$sysroot" "$dest" "${p#/}"
    for lib in $(readelf -d "$sysroot/$rel" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
        p=$(cd "$sysroot" && ls lib/*/"$lib" usr/lib/*/"$lib" 2>/dev/null | head -n1 || true)
        [ -n "$p" ] || die "$rel needs $lib, not found in the guest packages"
        copy_with_libs "$sysroot" "$dest" "$p"
    done
}

# The uncompressed vmlinux inside an x86 bzImage (xz payload, as Debian builds it): QEMU boots it
# through the PVH entry, skipping the ~7 s the decompressor takes under TCG.
extract_vmlinux() {
    local bz=$1 out=$2 off
    off=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | head -n1 | cut -d: -f1 || true)
    [ -n "$off" ] || die "no xz payload in $bz"
    tail -c +"$((off + 1))" "$bz" | xz -dc --single-stream > "$out.tmp" 2>/dev/null || true
    [ "$(head -c4 "$out.tmp" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || die "vmlinux extraction from $bz failed"
    mv "$out.tmp" "$out"
}

build_guest() {
    local arch=$1 darch kpkg kdeb kver out work stamp
    darch=$(deb_arch "$arch")
    out=$VM_CACHE/$arch
    guest_apt_setup "$darch"
    kpkg=$(guest_kernel_pkg "$darch" "$(deb_kernel_flavour "$arch")")
    [ -n "$kpkg" ] || die "cannot resolve linux-image-$(deb_kernel_flavour "$arch") ($darch)"
    stamp="$kpkg $(cat "$0" "$VM_DIR/init" | sha256sum | cut -c1-16)"
    if [ -f "$out/READY" ] && [ "$(cat "$out/READY")" = "$stamp" ]; then
        log "$arch guest ready ($kpkg, cached in $out)"
        return 0
    fi
    log "building $arch guest from $kpkg"
    work=$(mktemp -d "$VM_CACHE/build-$arch.XXXXXX")
    BUILD_WORK=$work

    kdeb=$(guest_deb "$darch" "$kpkg")
    dpkg-deb -x "$kdeb" "$work/kernel"
    kver=$(ls "$work/kernel/lib/modules")
    local sysroot=$work/sysroot p
    # strace (and its libraries) to see what a tool does to the kernel: `strace -c -f CMD`.
    for p in busybox-static ipvsadm libnl-3-200 libnl-genl-3-200 libpopt0 libc6 \
        strace libunwind8 liblzma5; do
        dpkg-deb -x "$(guest_deb "$darch" "$p")" "$sysroot"
    done

    local root=$work/root
    mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,run,etc,payload,lib/modules}
    cp "$sysroot/bin/busybox" "$root/bin/busybox"
    copy_with_libs "$sysroot" "$root" sbin/ipvsadm
    copy_with_libs "$sysroot" "$root" usr/bin/strace
    mknod -m 600 "$root/dev/console" c 5 1
    mknod -m 666 "$root/dev/null" c 1 3
    install -m 755 "$VM_DIR/init" "$root/init"

    MOD_SEEN=()
    MOD_ORDER_OUT=$work/modules.paths
    : > "$MOD_ORDER_OUT"
    local kdir=$work/kernel/lib/modules/$kver/kernel m f
    for m in "${MODULE_ROOTS[@]}"; do walk_module "$kdir" "$m"; done
    : > "$root/lib/modules/order"
    while read -r f; do
        cp "$f" "$root/lib/modules/"
        m=$(basename "$f" .ko)
        # Parameters after the name; dummy would otherwise create a stray dummy0.
        case "$m" in dummy) echo "$m numdummies=0" ;; *) echo "$m" ;; esac >> "$root/lib/modules/order"
    done < "$MOD_ORDER_OUT"
    # MOD_SEEN still holds the modules above, so the disk walk lists only what they lack.
    MOD_ORDER_OUT=$work/disk-modules.paths
    : > "$MOD_ORDER_OUT"
    for m in "${DISK_MODULE_ROOTS[@]}"; do walk_module "$kdir" "$m"; done
    : > "$root/lib/modules/disk.order"
    while read -r f; do
        cp "$f" "$root/lib/modules/"
        basename "$f" .ko >> "$root/lib/modules/disk.order"
    done < "$MOD_ORDER_OUT"
    echo "$kver" > "$root/etc/kernel-release"

    mkdir -p "$out"
    (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -6 > "$out/initramfs.cpio.gz"
    case "$arch" in
        x86_64) extract_vmlinux "$work/kernel/boot/vmlinuz-$kver" "$out/kernel" ;;
        aarch64|armv7) cp "$work/kernel/boot/vmlinuz-$kver" "$out/kernel" ;;
    esac
    cp "$root/lib/modules/order" "$out/modules.order"
    echo "$kver" > "$out/kernel-release"
    echo "$stamp" > "$out/READY"
    cp "$root/lib/modules/disk.order" "$out/disk-modules.order"
    log "$arch guest: kernel $kver, modules: $(cut -d" " -f1 "$out/modules.order" | tr "\n" " ")"
    log "$arch guest: disk modules (loaded on demand): $(tr "\n" " " < "$out/disk-modules.order")"
    log "$arch guest: initramfs $(stat -c %s "$out/initramfs.cpio.gz") B, kernel $(stat -c %s "$out/kernel") B"
    rm -rf "$work"
    BUILD_WORK=
}

BUILD_WORK=
trap '[ -z "$BUILD_WORK" ] || rm -rf "$BUILD_WORK"' EXIT

mkdir -p "$VM_CACHE"
for a in "${ARCHES[@]}"; do build_guest "$a"; done
