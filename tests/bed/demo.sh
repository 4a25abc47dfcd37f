#!/usr/bin/env bash
# Sets everything up and runs tinylet on its embedded default profile: the bed's containerd
# (tests/bed/up.sh), a release build, and the sample static pods in tests/bed/demo-manifests.
# Runs until Ctrl-C. Extra arguments go to `tinylet run`: `--once` converges, prints the status
# and exits with run --once's exit code (add `--json` for JSON).
# The agent's status socket is /run/tinylet/status.sock, where a bare `tinylet status` looks.
# On exit tinylet removes its pods itself (an empty manifest dir and --once), then the bed is
# torn down.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"
need_root

command -v cargo >/dev/null || {
    echo "demo: cargo not found: install Rust with rustup (https://rustup.rs), then open a new shell" >&2
    exit 1
}
"$here/up.sh"
state=/var/lib/tinylet-demo
bin=$root/target/release/tinylet
node=$(hostname | tr 'A-Z' 'a-z')
sock_dir=/run/tinylet
sock=$sock_dir/status.sock
# Another agent's socket is left alone; `tinylet status --root-dir $state` then finds the demo.
if [ -S "$sock" ]; then
    sock=$state/tinylet.sock
fi
status_cmd="$bin status"
[ "$sock" = "$sock_dir/status.sock" ] || status_cmd="$bin status --root-dir $state"

run_agent() {
    "$bin" run --config "$here/demo-config.yaml" --root-dir "$state" --status-socket "$sock" \
        --container-runtime-endpoint "unix://$BED_SOCK" --hostname-override "$node" "$@"
}
cleanup() {
    set +e
    if [ -x "$bin" ] && [ -d "$state" ]; then
        echo "demo: removing the demo pods (each has 2 s to stop)" >&2
        mkdir -p "$BED_RUN/empty-manifests"
        run_agent --pod-manifest-path "$BED_RUN/empty-manifests" --once --once-timeout 60s \
            2>/dev/null | grep '^result:' | sed 's/^/demo: /' >&2
    fi
    rm -rf "$state"
    rmdir "$sock_dir" 2>/dev/null
    echo "demo: tearing down the test bed" >&2
    "$here/down.sh" >/dev/null 2>&1
    echo "demo: done" >&2
}
trap cleanup EXIT
rm -rf "$state"
mkdir -p "$BED_RUN/demo-www" && echo "hello from tinylet" >"$BED_RUN/demo-www/index.html"

echo "demo: building the release binary (the first build takes a few minutes)" >&2
(cd "$root" && cargo build -q --release --locked --bin tinylet)
"$bin" --version
once=false
for a in "$@"; do [ "$a" = --once ] && once=true; done
if ! $once; then
    echo "demo: starting the agent; in another shell: $status_cmd   (Ctrl-C stops)" >&2
fi
rc=0
run_agent --pod-manifest-path "$here/demo-manifests" "$@" || rc=$?
exit "$rc"
