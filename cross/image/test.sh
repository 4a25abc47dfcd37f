#!/usr/bin/env bash
# The booted-image test for CI: per ARCH, the Debian root filesystem (built once, then cached
# outside the repository by build-rootfs.sh), tinylet's package for ARCH (target/deb, built by
# cross/package.sh when missing) and the two-boot test of boot-test.sh.
#
# Usage: cross/image/test.sh [ARCH...]      (default: amd64 arm64: the cheaper one first)
# Last line: "image: N passed, M failed" (N, M count architectures). Exit 0 when all passed.
# Env: TINYLET_DEB_DIR (default target/deb), and those of build-rootfs.sh and boot-test.sh.
set -uo pipefail
. "$(dirname "$0")/common.sh"
cd "$IMG_DIR/../.."

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
    if [ ! -f "$deb" ] && ! cross/package.sh "$arch" "$DEB_DIR"; then
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
