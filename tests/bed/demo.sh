#!/usr/bin/env bash
# Sets everything up and runs tinylet on its embedded default profile: the bed's containerd
# (tests/bed/up.sh), a release build, and the sample static pods in tests/bed/demo-manifests.
# Extra arguments go to `tinylet run` (e.g. `--once` to converge, report and exit).
# On exit tinylet removes its pods itself (an empty manifest dir), then the bed is torn down,
# leaving the host as it was.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
need_root

command -v cargo >/dev/null || { echo "demo: cargo not found (install Rust with rustup)" >&2; exit 1; }
"$here/up.sh"
state=/var/lib/tinylet-demo
bin=$root/target/release/tinylet
node=$(hostname | tr 'A-Z' 'a-z')
agent() {
    "$bin" run --config "$here/demo-config.yaml" --root-dir "$state" \
        --container-runtime-endpoint "unix://$BED_SOCK" --hostname-override "$node" "$@"
}
cleanup() {
    set +e
    if [ -x "$bin" ] && [ -d "$state" ]; then
        echo "demo: removing the demo pods" >&2
        mkdir -p "$BED_RUN/empty-manifests"
        timeout 90 "$bin" run --config "$here/demo-config.yaml" --root-dir "$state" \
            --container-runtime-endpoint "unix://$BED_SOCK" --hostname-override "$node" \
            --pod-manifest-path "$BED_RUN/empty-manifests" --once >/dev/null
    fi
    rm -rf "$state"
    "$here/down.sh" >/dev/null 2>&1
}
trap cleanup EXIT
rm -rf "$state"
mkdir -p "$BED_RUN/demo-www" && echo "hello from tinylet" >"$BED_RUN/demo-www/index.html"

(cd "$root" && cargo build -q --release --locked --bin tinylet)
"$bin" --version
echo "demo: starting the agent; in another shell: $bin status --root-dir $state   (Ctrl-C stops)" >&2
agent --pod-manifest-path "$here/demo-manifests" "$@" || true
