#!/usr/bin/env bash
# tinylet against real IPVS kernels: builds the static test binaries and tinylet for each guest
# arch, boots Debian's 6.1 kernel under QEMU with them, and checks
#   - tests/ipvs_kernel.rs (with TINYLET_IPVS_KERNEL=1) and its listing against `ipvsadm -Ln`,
#   - `tinylet proxy --once` over cross/vm/proxy-manifests against the expected table,
#   - `tinylet ipvs list` against `ipvsadm -Ln`, idempotence, drift repair, `tinylet ipvs flush`,
#   - real packets through IPVS and the tinylet-ipvs masquerading table (guest/masq.sh), and
#     through `tinylet proxy --proxy-mode=nftables` in the same topology (guest/nft.sh), and
#     spread, ClientIP affinity and removed endpoints in both modes (guest/spread.sh).
# Prints PASS/FAIL per guest and a last line `vm: N passed, M failed`; exits non-zero on failure.
#
# Usage: cross/vm/test.sh [x86_64] [aarch64] [armv7]   (default: x86_64 aarch64; run as root:
#                                                     prepare.sh installs)
set -uo pipefail
. "$(dirname "$0")/common.sh"
. "$VM_DIR/build-payload.sh"
REPO=$(cd "$VM_DIR/../.." && pwd)

ARCHES=("$@")
[ ${#ARCHES[@]} -gt 0 ] || ARCHES=(x86_64 aarch64)
"$VM_DIR/prepare.sh" "${ARCHES[@]}" || die "prepare.sh failed"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tinylet-vm-test.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

passed=0 failed=0 results=()
for arch in "${ARCHES[@]}"; do
    echo "=== vm $arch: build"
    payload=$WORK/$arch
    mkdir -p "$payload/bin"
    ok=1
    if exe=$(cargo_exe "$arch" tinylet build --bin tinylet) && [ -n "$exe" ]; then
        put_exe "$arch" "$exe" "$payload/bin/tinylet"
    else
        echo "build of tinylet for $arch failed"; ok=0
    fi
    if [ -f "$REPO/tests/ipvs_kernel.rs" ]; then
        if exe=$(cargo_exe "$arch" ipvs_kernel test --test ipvs_kernel --no-run) && [ -n "$exe" ]; then
            put_exe "$arch" "$exe" "$payload/bin/ipvs_kernel"
        else
            echo "build of tests/ipvs_kernel.rs for $arch failed"; ok=0
        fi
    fi
    if [ "$ok" = 1 ]; then
        cp "$VM_DIR/guest/lib.sh" "$VM_DIR/guest/masq.sh" "$VM_DIR/guest/nft.sh" \
            "$VM_DIR/guest/spread.sh" "$payload/"
        cp "$VM_DIR/guest/test.sh" "$payload/run"
        cp -r "$VM_DIR/proxy-manifests" "$VM_DIR/proxy-v6" "$payload/"
        cp "$VM_DIR/proxy-expected.txt" "$payload/"
        echo "=== vm $arch: boot"
        TINYLET_VM_TIMEOUT=${TINYLET_VM_TIMEOUT:-300} "$VM_DIR/run.sh" "$arch" "$payload" || ok=0
    fi
    if [ "$ok" = 1 ]; then
        echo "PASS vm $arch"; passed=$((passed + 1))
    else
        echo "FAIL vm $arch"; failed=$((failed + 1))
    fi
    rm -rf "$payload"
done
echo "vm: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
