#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need, brings up the real
# containerd test bed, runs every test (unit, integration against containerd, ARM unit tests
# under qemu-user, IPVS in real kernels under QEMU), tears everything down, and ends with one
# line `tests: N passed, M failed`. Run as root from anywhere. Idempotent.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
[ "$(id -u)" = 0 ] || { echo "tests/all.sh: run as root (the test bed needs containerd, mounts and netns)" >&2; exit 1; }

log=$(mktemp /tmp/tinylet-tests.XXXXXX)
failed_steps=()
suite_start=$SECONDS
step() {
    local name=$1 t0=$SECONDS; shift
    printf '\n=== %s\n' "$name"
    if "$@" 2>&1 | tee -a "$log"; then :; else failed_steps+=("$name"); fi
    printf '=== %s: %d s\n' "$name" $((SECONDS - t0))
}
image_pid=
image_log=
cleanup() {
    [ -z "$image_pid" ] || kill -- -"$image_pid" 2>/dev/null || true
    [ -z "$image_log" ] || rm -f "$image_log"
    "$root/tests/bed/down.sh" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "cross toolchains" cross/setup.sh
# The packages installed on booted Debian images (systemd, containerd) in QEMU, for amd64 and
# arm64: what it costs is in cross/image/README.md. It runs beside the other steps, from here
# to the end: most of its time is downloads, one qemu-user dpkg at a time and the guests' own
# waits, which leave room on the host's cores. TINYLET_IMAGE_TEST=0 skips it;
# TINYLET_IMAGE_TEST_ARCHS chooses the architectures. Its output is shown as a step at the end.
image_rc=0
image_wait=0
image_test_result() {
    echo "(ran beside the other steps; waited ${image_wait} s for it after them)"
    cat "$image_log"
    return "$image_rc"
}
if [ "${TINYLET_IMAGE_TEST:-1}" != 0 ] && [ -x cross/image/test.sh ]; then
    # A failure here is a failed step; the image test then says what it lacks.
    step "booted-image test: host packages" cross/image/test.sh --host-packages
    image_log=$(mktemp /tmp/tinylet-image-test.XXXXXX)
    echo "booted-image test started in the background (log: $image_log)"
    set -m
    cross/image/test.sh ${TINYLET_IMAGE_TEST_ARCHS:-amd64 arm64} >"$image_log" 2>&1 </dev/null &
    image_pid=$!
    set +m
fi
# The real control plane (kube-apiserver + etcd from ../shared/kube/) for the envtest `real_`
# scenarios and the kubectl end-to-end tests. Under CI its absence is a failure, not a skip.
if kube_env=$(tests/envtest/assets.sh); then
    eval "$kube_env"
    echo "real control plane: $TEST_ASSET_KUBE_APISERVER, $TEST_ASSET_ETCD"
elif [ "${CI:-}" = true ]; then
    failed_steps+=("real control plane assets")
else
    echo "no real control plane: the envtest real_ scenarios will skip" >&2
fi
# The real CSI hostpath driver and node-driver-registrar (../shared/csi/) for the envtest CSI
# scenario; under CI their absence is a failure too.
if csi_env=$(tests/envtest/csi-assets.sh); then
    eval "$csi_env"
    echo "real CSI driver: $TEST_ASSET_CSI_HOSTPATH, $TEST_ASSET_CSI_REGISTRAR"
elif [ "${CI:-}" = true ]; then
    failed_steps+=("real CSI driver assets")
else
    echo "no real CSI driver: the envtest CSI scenario will skip" >&2
fi
command -v kubectl >/dev/null || echo "kubectl not found: the kubectl end-to-end tests will fail" >&2
step "test bed up" tests/bed/up.sh
step "build" cargo build --locked --all-targets
step "tests (host, real containerd)" cargo test --locked --no-fail-fast
step "ARM unit tests under qemu-user" cross/test.sh
if [ -x cross/vm/test.sh ]; then
    # armv7 adds ~10 s of guest time (and its own static build) for the 32-bit netlink layout.
    step "IPVS in real kernels (QEMU)" cross/vm/test.sh x86_64 aarch64 armv7
fi
if [ -x cross/vm/powercut.sh ]; then
    # The store under 5 real power cuts in the aarch64 guest: 6 boots, 76 s with the build check
    # on a 2-core host at load 10, less idle; the bench runs 200.
    step "store under real power cuts (QEMU)" \
        env TINYLET_POWERCUT_CUTS=5 TINYLET_POWERCUT_MAX_ACKS=40 cross/vm/powercut.sh aarch64
fi
if [ -n "$image_pid" ]; then
    t0=$SECONDS
    wait "$image_pid" || image_rc=$?
    image_pid=
    image_wait=$((SECONDS - t0))
    step "package on a booted Debian (QEMU)" image_test_result
    rm -f "$image_log"
fi
step "test bed down" tests/bed/down.sh
trap - EXIT

sum() { grep -Eo "$1" "$log" | grep -Eo "[0-9]+ $2" | awk '{s+=$1} END {print s+0}'; }
t_pass=$(sum 'test result: [a-zA-Z]+\. [0-9]+ passed' passed)
t_fail=$(sum 'test result: [a-zA-Z]+\. [0-9]+ passed; [0-9]+ failed' failed)
vm_pass=$(sum 'vm: [0-9]+ passed' passed)
vm_fail=$(sum 'vm: [0-9]+ passed, [0-9]+ failed' failed)
img_pass=$(sum 'image: [0-9]+ passed' passed)
img_fail=$(sum 'image: [0-9]+ passed, [0-9]+ failed' failed)
passed=$((t_pass + vm_pass + img_pass))
failed=$((t_fail + vm_fail + img_fail))
rm -f "$log"
if [ ${#failed_steps[@]} -gt 0 ]; then
    printf '\nfailed steps: %s\n' "${failed_steps[*]}"
    [ "$failed" -gt 0 ] || failed=${#failed_steps[@]}
fi
printf '\nRust tests: %s passed, %s failed\n' "$t_pass" "$t_fail"
printf 'VM guest checks: %s passed, %s failed\n' "$vm_pass" "$vm_fail"
printf 'suite: %d s\n' $((SECONDS - suite_start))
printf 'tests: %s passed, %s failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ] && [ ${#failed_steps[@]} -eq 0 ]
