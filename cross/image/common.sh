# Shared settings for the cross/image scripts (sourced, not executed).
# The root filesystems are built from Debian's packages and kept under $TINYLET_IMAGE_CACHE
# (default /var/cache/tinylet-image), outside the repository.

IMG_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
IMG_CACHE=${TINYLET_IMAGE_CACHE:-/var/cache/tinylet-image}
IMG_SUITE=bookworm
IMG_MIRROR=${TINYLET_IMAGE_MIRROR:-http://deb.debian.org/debian}
IMG_SECURITY=${TINYLET_IMAGE_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
APT_LOCK=(-o DPkg::Lock::Timeout=900)

# ARCH may be given Debian-style (arm64, amd64) or Rust/QEMU-style (aarch64, x86_64).
img_arch() {
    case "$1" in
        arm64 | aarch64) echo arm64 ;;
        amd64 | x86_64) echo amd64 ;;
        *) echo "unsupported image arch: $1 (arm64 | amd64)" >&2; return 1 ;;
    esac
}

log() { printf '[image] %s\n' "$*" >&2; }
die() { printf '[image] error: %s\n' "$*" >&2; exit 1; }
now_ms() { date +%s%3N; }
secs() { printf '%d.%01d' $(($1 / 1000)) $(($1 % 1000 / 100)); } # ms -> "S.D"

# Installs the host packages the builder and the boot test use, when missing.
host_packages() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing host packages: ${missing[*]}"
    apt-get "${APT_LOCK[@]}" update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get "${APT_LOCK[@]}" install -y -q --no-install-recommends \
        "${missing[@]}" >/dev/null
}
