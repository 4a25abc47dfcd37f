#!/usr/bin/env bash
# Sets everything up and runs tinylet on its embedded default profile: the bed's containerd
# (tests/bed/up.sh), a release build, and the sample static pods in tests/bed/demo-manifests.
# Extra arguments go to `tinylet run` (e.g. `--once` to converge, report and exit).
# On exit the agent's pods and the bed are torn down, leaving the host as it was.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
need_root

"$here/up.sh"
trap '"$here/down.sh" >/dev/null 2>&1 || true; rm -rf /var/lib/tinylet-demo' EXIT
rm -rf /var/lib/tinylet-demo
mkdir -p /run/tlbed/demo-www && echo "hello from tinylet" >/run/tlbed/demo-www/index.html

command -v cargo >/dev/null || { echo "demo: cargo not found (install Rust with rustup)" >&2; exit 1; }
(cd "$root" && cargo build -q --release --locked --bin tinylet)
"$root/target/release/tinylet" --version
"$root/target/release/tinylet" run \
    --root-dir /var/lib/tinylet-demo \
    --pod-manifest-path "$here/demo-manifests" \
    --container-runtime-endpoint "unix://$BED_SOCK" \
    --hostname-override "$(hostname | tr 'A-Z' 'a-z')" \
    "$@"
