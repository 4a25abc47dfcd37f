# Shared settings for the cross/vm scripts (sourced, not executed).
# Everything the VM tooling downloads or builds lives under $TINYLET_VM_CACHE so reruns are fast
# and nothing outside it (besides the host packages prepare.sh installs) is touched.

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VM_CACHE=${TINYLET_VM_CACHE:-/var/cache/tinylet-vm}
# The Debian release the guest kernels and userland come from.
VM_SUITE=bookworm
APT_LOCK=(-o DPkg::Lock::Timeout=900)

# Map our ARCH names (Rust/QEMU style) to Debian's.
deb_arch() {
    case "$1" in
        x86_64) echo amd64 ;;
        aarch64) echo arm64 ;;
        armv7) echo armhf ;;
        *) echo "unsupported guest arch: $1 (x86_64 | aarch64 | armv7)" >&2; return 1 ;;
    esac
}

# Debian's kernel flavour for a guest arch (linux-image-FLAVOUR): armhf's multiplatform kernel
# is "armmp" (it boots QEMU's virt machine like a Cortex-A7/A15 board).
deb_kernel_flavour() {
    case "$1" in
        armv7) echo armmp ;;
        *) deb_arch "$1" ;;
    esac
}

log() { printf '[vm] %s\n' "$*" >&2; }
die() { printf '[vm] error: %s\n' "$*" >&2; exit 1; }

# Host wall clock in milliseconds, for the boot/run figures.
now_ms() { date +%s%3N; }
