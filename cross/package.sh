#!/usr/bin/env bash
# Builds tinylet_VERSION_ARCH.deb for one target with dpkg-deb, then runs lintian on it when
# lintian is installed. The package's files are in cross/deb/ (README.md there says what each
# one is and why).
# Usage: cross/package.sh TARGET [OUTDIR]
#   TARGET: arm64 (aarch64-unknown-linux-musl, static), armhf (armv7-unknown-linux-gnueabihf),
#           amd64 (x86_64-unknown-linux-gnu), or one of those triples (or
#           aarch64-unknown-linux-gnu, x86_64-unknown-linux-musl).
#   OUTDIR: where the .deb goes (default target/deb).
# The release binary is built with cargo unless TINYLET_BIN names one already built.
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: cross/package.sh TARGET [OUTDIR]}
out=${2:-target/deb}
case "$target" in
    arm64) triple=aarch64-unknown-linux-musl ;;
    armhf) triple=armv7-unknown-linux-gnueabihf ;;
    amd64) triple=x86_64-unknown-linux-gnu ;;
    *) triple=$target ;;
esac
case "$triple" in
    aarch64-unknown-linux-*) arch=arm64 ;;
    armv7-unknown-linux-gnueabihf) arch=armhf ;;
    x86_64-unknown-linux-*) arch=amd64 ;;
    *) echo "package: unknown target $target (arm64, armhf, amd64 or their triples)" >&2; exit 2 ;;
esac

bin=${TINYLET_BIN:-target/$triple/release/tinylet}
if [ -z "${TINYLET_BIN:-}" ]; then
    cargo build -q --release --locked --target "$triple" --bin tinylet
fi
[ -x "$bin" ] || { echo "package: no binary at $bin" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
# Timestamps from the commit, so the same commit gives the same package.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

depends="containerd, runc, containernetworking-plugins, init-system-helpers (>= 1.54~)"
case "$triple" in
    *-gnu | *-gnueabihf)
        # The newest glibc symbol version the binary needs is the libc6 it depends on.
        glibc=$(readelf -V "$bin" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1)
        [ -n "$glibc" ] && depends="$depends, libc6 (>= $glibc)"
        ;;
esac

deb=cross/deb
stage=$(mktemp -d "${TMPDIR:-/tmp}/tinylet-deb.XXXXXX")
trap 'rm -rf "$stage"' EXIT
chmod 0755 "$stage"
put() { # put MODE SRC DEST
    install -D -m "$1" "$2" "$stage/$3"
}
put 0755 "$bin" usr/bin/tinylet
put 0644 $deb/tinylet.service lib/systemd/system/tinylet.service
put 0644 $deb/tinylet-shutdown.service lib/systemd/system/tinylet-shutdown.service
put 0644 $deb/containerd-tinylet.conf lib/systemd/system/containerd.service.d/tinylet.conf
put 0644 $deb/containerd.toml etc/tinylet/containerd.toml
put 0644 $deb/90-tinylet-bridge.conflist etc/cni/net.d/90-tinylet-bridge.conflist
put 0644 $deb/config.yaml usr/share/tinylet/config.yaml
put 0644 $deb/copyright usr/share/doc/tinylet/copyright
put 0644 $deb/lintian-overrides usr/share/lintian/overrides/tinylet
install -d -m 0755 "$stage/etc/kubernetes/manifests"
install -d -m 0755 "$stage/usr/share/man/man8"
sed "s/@VERSION@/$version/" $deb/tinylet.8 | gzip -9n >"$stage/usr/share/man/man8/tinylet.8.gz"
{
    printf 'tinylet (%s) unstable; urgency=medium\n\n' "$version"
    printf '  * Built from commit %s.\n\n' "$commit"
    printf ' -- tinylet maintainers <tinylet@users.noreply.github.com>  %s\n' \
        "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$stage/usr/share/doc/tinylet/changelog.gz"

install -d -m 0755 "$stage/DEBIAN"
for s in postinst prerm postrm; do put 0755 $deb/$s DEBIAN/$s; done
(cd "$stage" && find etc -type f | sed 's|^|/|' | sort) >"$stage/DEBIAN/conffiles"
(cd "$stage" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
size=$(du -k -s --exclude=DEBIAN "$stage" | cut -f 1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@DEPENDS@/$depends/" \
    $deb/control.in >"$stage/DEBIAN/control"
chmod 0644 "$stage/DEBIAN/control" "$stage/DEBIAN/conffiles" "$stage/DEBIAN/md5sums"

mkdir -p "$out"
pkg=$out/tinylet_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$pkg" >/dev/null
printf '%-34s %-6s %10s bytes  %s\n' "$triple" "$arch" "$(stat -c %s "$pkg")" "$pkg"
if command -v lintian >/dev/null; then
    # Errors fail the build; each warning or info that remains is explained in
    # cross/deb/lintian-overrides (installed with the package, where lintian reads it).
    lintian --fail-on error --display-info "$pkg"
fi
