#!/usr/bin/env bash
# Unpacks the real CSI hostpath driver and the node-driver-registrar from ../shared/csi/ into a
# cache dir outside the checkout and prints the two `export` lines the CSI scenarios read:
#     eval "$(tests/envtest/csi-assets.sh)"
# Idempotent: an unpacked binary is reused while it is newer than its archive. Exits non-zero,
# saying why, when the archives are not there or do not unpack.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
src=${TINYLET_CSI_ASSETS_SRC:-$root/../shared/csi}
dst=${TINYLET_CSI_ASSETS_DIR:-/var/tmp/tinylet-csi}

driver_xz=$(ls "$src"/hostpathplugin-*-amd64.xz 2>/dev/null | head -n 1 || true)
registrar_xz=$(ls "$src"/csi-node-driver-registrar-*-amd64.xz 2>/dev/null | head -n 1 || true)
if [ -z "$driver_xz" ] || [ -z "$registrar_xz" ]; then
    echo "tests/envtest/csi-assets.sh: no hostpathplugin/csi-node-driver-registrar archives in $src" >&2
    exit 1
fi
command -v xz >/dev/null || {
    echo "tests/envtest/csi-assets.sh: needs xz (tests/envtest/assets.sh installs it)" >&2
    exit 1
}
mkdir -p "$dst"
unpack() { # archive name
    if [ ! -x "$dst/$2" ] || [ "$1" -nt "$dst/$2" ]; then
        xz -dc "$1" >"$dst/$2.part"
        chmod 0755 "$dst/$2.part"
        mv "$dst/$2.part" "$dst/$2"
    fi
    "$dst/$2" --version >/dev/null 2>&1 || {
        echo "tests/envtest/csi-assets.sh: $dst/$2 does not run" >&2
        exit 1
    }
}
unpack "$driver_xz" hostpathplugin
unpack "$registrar_xz" csi-node-driver-registrar
echo "export TEST_ASSET_CSI_HOSTPATH=$dst/hostpathplugin"
echo "export TEST_ASSET_CSI_REGISTRAR=$dst/csi-node-driver-registrar"
