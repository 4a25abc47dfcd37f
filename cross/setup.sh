#!/usr/bin/env bash
# Installs what cross builds and emulated tests need: Debian's cross gcc (the linkers, and the C
# compilers ring needs), qemu-user, lintian (checks the packages), and the rustup targets.
# Idempotent; run as root.
set -euo pipefail
pkgs="gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user-static lintian"
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
# apt-get as tests/bed/lib.sh runs it: non-interactive, quiet, its output shown only on failure.
apt_quiet() {
    local out rc=0
    out=$(mktemp /tmp/tinylet-apt.XXXXXX)
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -o Dpkg::Use-Pty=0 -qq "$@" \
        >"$out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { echo "cross: apt-get $* failed:" >&2; cat "$out" >&2; }
    rm -f "$out"
    return "$rc"
}
if [ -n "$missing" ]; then
    echo "cross: installing:$missing" >&2
    apt_quiet update
    # shellcheck disable=SC2086
    apt_quiet install -y $missing
fi
targets="aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl x86_64-unknown-linux-musl"
installed=$(rustup target list --installed)
for t in $targets; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t" >&2
done
