#!/usr/bin/env bash
# Unpacks the real control plane (kube-apiserver + etcd) from ../shared/kube/ into a cache dir
# outside the checkout and prints the two `export` lines the envtest suite reads:
#     eval "$(tests/envtest/assets.sh)"
# Idempotent: an unpacked binary is reused while it is newer than its archive. Exits non-zero,
# saying why, when the archives are not there or do not unpack.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${TINYLET_KUBE_ASSETS_SRC:-$root/../shared/kube}
dst=${TINYLET_KUBE_ASSETS_DIR:-/var/tmp/tinylet-kube}

apiserver_xz=$(ls "$src"/kube-apiserver-*-amd64.xz 2>/dev/null | head -n 1 || true)
etcd_deb=$(ls "$src"/etcd-server_*_amd64.deb 2>/dev/null | head -n 1 || true)
if [ -z "$apiserver_xz" ] || [ -z "$etcd_deb" ]; then
    echo "tests/envtest/assets.sh: no kube-apiserver/etcd archives in $src" >&2
    exit 1
fi
if ! command -v xz >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q xz-utils >/dev/null 2>&1 ||
        { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q xz-utils >/dev/null 2>&1; } || true
fi
command -v xz >/dev/null && command -v dpkg-deb >/dev/null || {
    echo "tests/envtest/assets.sh: needs xz and dpkg-deb" >&2
    exit 1
}
mkdir -p "$dst"
if [ ! -x "$dst/kube-apiserver" ] || [ "$apiserver_xz" -nt "$dst/kube-apiserver" ]; then
    xz -dc "$apiserver_xz" >"$dst/kube-apiserver.part"
    chmod 0755 "$dst/kube-apiserver.part"
    mv "$dst/kube-apiserver.part" "$dst/kube-apiserver"
fi
if [ ! -x "$dst/etcd/usr/bin/etcd" ] || [ "$etcd_deb" -nt "$dst/etcd/usr/bin/etcd" ]; then
    rm -rf "$dst/etcd"
    dpkg-deb -x "$etcd_deb" "$dst/etcd"
    touch "$dst/etcd/usr/bin/etcd"
fi
"$dst/kube-apiserver" --version >/dev/null 2>&1 || {
    echo "tests/envtest/assets.sh: $dst/kube-apiserver does not run" >&2
    exit 1
}
echo "export TEST_ASSET_KUBE_APISERVER=$dst/kube-apiserver"
echo "export TEST_ASSET_ETCD=$dst/etcd/usr/bin/etcd"
