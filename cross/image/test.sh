#!/usr/bin/env bash
# The booted-image test for CI: per ARCH, the Debian root filesystem (built once, then cached
# outside the repository by build-rootfs.sh), tinylet's package for ARCH (target/deb, built by
# cross/package.sh when missing or older than its sources) and the two-boot test of boot-test.sh.
#
# Usage: cross/image/test.sh [ARCH...]      (default: amd64 arm64: the cheaper one first)
#        cross/image/test.sh --host-packages  (only install what the host needs, then exit)
# Last line: "image: N passed, M failed" (N, M count architectures). Exit 0 when all passed.
# Env: TINYLET_DEB_DIR (default target/deb), and those of build-rootfs.sh and boot-test.sh.
set -uo pipefail
. "$(dirname "$0")/common.sh"
cd "$IMG_DIR/../.."

# The host's packages (QEMU, mmdebstrap, qemu-user-static, e2fsprogs) first, in one go, so a
# caller that runs this beside other steps can do the apt part before it lets go.
host_packages mmdebstrap arch-test e2fsprogs qemu-utils qemu-user-static ||
    die "cannot install the host packages"
cross/vm/prepare.sh --host-packages >/dev/null || die "cannot install QEMU (cross/vm/prepare.sh)"
[ "${1:-}" != --host-packages ] || exit 0
ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(amd64 arm64)
DEB_DIR=${TINYLET_DEB_DIR:-target/deb}
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)

passed=0
failed=0
for a in "${ARCHES[@]}"; do
    arch=$(img_arch "$a") || { failed=$((failed + 1)); continue; }
    echo "=== image $arch"
    start=$(now_ms)
    if ! "$IMG_DIR/build-rootfs.sh" "$arch"; then
        echo "image $arch: the root filesystem did not build"
        failed=$((failed + 1))
        continue
    fi
    built=$(now_ms)
    deb=$DEB_DIR/tinylet_${version}_$arch.deb
    # A package older than the sources it is made of is made again (cargo builds incrementally).
    if { [ ! -f "$deb" ] || [ -n "$(find src Cargo.toml Cargo.lock cross/deb cross/package.sh \
        -newer "$deb" -print -quit 2>/dev/null)" ]; } && ! cross/package.sh "$arch" "$DEB_DIR"; then
        echo "image $arch: no package $deb"
        failed=$((failed + 1))
        continue
    fi
    packaged=$(now_ms)
    if "$IMG_DIR/boot-test.sh" "$arch" "$deb"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    log "$arch: root filesystem $(secs $((built - start))) s, package $(secs $((packaged - built))) s," \
        "boot test $(secs $(($(now_ms) - packaged))) s"
done
echo "image: $passed passed, $failed failed"
[ "$failed" = 0 ]
