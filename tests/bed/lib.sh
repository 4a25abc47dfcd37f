# Shared settings of the containerd test bed. Sourced by the bed scripts, never run directly.
#
# Everything the bed creates lives under two short, fixed paths so that unix socket paths stay
# far below the 108-byte limit whatever folder the checkout is in:
#   $BED_RUN  (/run/tlbed)             sockets, pids, config, state, CNI config, registry data
#   $BED_LIB  (/var/lib/tinylet-bed)   containerd's root (images, snapshots), built images
set -euo pipefail

BED_RUN=${TINYLET_BED_RUN:-/run/tlbed}
BED_LIB=${TINYLET_BED_LIB:-/var/lib/tinylet-bed}
BED_SOCK=$BED_RUN/containerd.sock
BED_REGISTRY=127.0.0.1:5000
BED_BRIDGE=tlbr0
BED_SUBNET=10.88.77.0/24
PAUSE_IMAGE=tinylet.test/pause:1
TEST_IMAGE=tinylet.test/busybox:1
PULL_IMAGE=$BED_REGISTRY/tinylet/busybox:1

BED_PACKAGES="containerd runc containernetworking-plugins busybox-static docker-registry skopeo iproute2 openssl curl"

log() { printf 'bed: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" != 0 ]; then
        log "must run as root (containerd, mounts and network namespaces need it)"
        exit 1
    fi
}

# apt-get, non-interactive and quiet: its output (debconf notes included) goes to a log that is
# shown only when apt-get fails. cross/setup.sh runs apt the same way.
apt_quiet() {
    local out rc=0
    out=$(mktemp /tmp/tinylet-apt.XXXXXX)
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 -o Dpkg::Use-Pty=0 -qq "$@" \
        >"$out" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { log "apt-get $* failed:"; cat "$out" >&2; }
    rm -f "$out"
    return "$rc"
}

# Installs the Debian packages the bed needs, only those that are missing.
install_packages() {
    local missing=""
    for p in $BED_PACKAGES "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    log "installing:$missing"
    if [ ! -f /var/lib/apt/lists/lock ] || [ -z "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v -e lock -e partial)" ]; then
        apt_quiet update
    fi
    # shellcheck disable=SC2086
    apt_quiet install -y $missing 2>/dev/null || {
        apt_quiet update
        apt_quiet install -y $missing
    }
}

# Waits up to $2 seconds for a pid file's process to exit.
wait_pid_gone() {
    local pid=$1 secs=${2:-10} i=0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        [ $i -gt $((secs * 10)) ] && return 1
        sleep 0.1
    done
}

# Stops the process recorded in a pid file: TERM, then KILL after a grace period.
stop_pidfile() {
    local f=$1 grace=${2:-10} pid
    [ -f "$f" ] || return 0
    pid=$(cat "$f")
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        wait_pid_gone "$pid" "$grace" || { kill -KILL "$pid" 2>/dev/null || true; wait_pid_gone "$pid" 5 || true; }
    fi
    rm -f "$f"
}

containerd_start() {
    mkdir -p "$BED_RUN/log"
    # setsid: the daemon must not die with the process group of whoever started it.
    setsid containerd --config "$BED_RUN/containerd.toml" >>"$BED_RUN/log/containerd.log" 2>&1 </dev/null &
    echo $! >"$BED_RUN/containerd.pid"
    local i=0
    until ctr -a "$BED_SOCK" version >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt 300 ] || ! kill -0 "$(cat "$BED_RUN/containerd.pid")" 2>/dev/null; then
            log "containerd did not come up; last log lines:"
            tail -n 20 "$BED_RUN/log/containerd.log" >&2 || true
            return 1
        fi
        sleep 0.1
    done
}

containerd_stop() {
    stop_pidfile "$BED_RUN/containerd.pid" 20
}
