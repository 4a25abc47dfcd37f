#!/usr/bin/env bash
# Brings up the real-runtime test bed: containerd 1.6 + runc + CNI (bridge, host-local) with the
# project's own config and socket, a loopback docker-registry, and the bed's images (imported,
# and pushed to the registry for real pulls). Idempotent: an earlier bed is torn down first.
# Writes $BED_RUN/env, which integration tests and the demo read.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root

"$here/down.sh"
install_packages

mkdir -p "$BED_RUN"/{cni,log,registry,scratch,state} "$BED_LIB"
chmod 700 "$BED_RUN" "$BED_LIB"
[ -f "$BED_LIB/ip_forward.orig" ] || cat /proc/sys/net/ipv4/ip_forward >"$BED_LIB/ip_forward.orig"

cat >"$BED_RUN/containerd.toml" <<TOML
version = 2
root = "$BED_LIB/containerd"
state = "$BED_RUN/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs", "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "$BED_SOCK"

[ttrpc]
  address = "$BED_RUN/containerd.sock.ttrpc"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails to start.
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_hugetlb_controller = true
  tolerate_missing_hugetlb_controller = true
  netns_mounts_under_state_dir = true
  systemd_cgroup = false
  # kubectl exec/attach/port-forward: the agent proxies to this streaming server. Loopback
  # only, plain HTTP (agent and runtime share the host), a free port picked at start. These are
  # containerd 1.6's defaults, spelled out so a changed default cannot expose it.
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$BED_RUN/cni"
TOML

# No ipMasq and no portmap: the bed adds no iptables rules. isGateway turns ip_forward on;
# down.sh restores the saved value.
cat >"$BED_RUN/cni/10-tlbed.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "tlbed",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BED_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$BED_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$BED_RUN/cni-ipam"
      }
    }
  ]
}
JSON

cat >"$BED_RUN/registry.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $BED_RUN/registry
http:
  addr: $BED_REGISTRY
YML
setsid docker-registry serve "$BED_RUN/registry.yml" >>"$BED_RUN/log/registry.log" 2>&1 </dev/null &
echo $! >"$BED_RUN/registry.pid"

containerd_start

# Images: rebuilt only when busybox changed (the layer digest is deterministic).
stamp=$(sha256sum /bin/busybox "$here/images.sh" | sha256sum | cut -c1-16)
if [ "$(cat "$BED_LIB/images/stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$BED_LIB/images"
    TEST_IMAGE=$TEST_IMAGE PAUSE_IMAGE=$PAUSE_IMAGE PULL_IMAGE=$PULL_IMAGE "$here/images.sh" "$BED_LIB/images"
    echo "$stamp" >"$BED_LIB/images/stamp"
fi
for img in pause busybox; do
    ctr -a "$BED_SOCK" -n k8s.io images import "$BED_LIB/images/$img.tar" >/dev/null
done

i=0
until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://$BED_REGISTRY/v2/" 2>/dev/null)" = 200 ]; do
    i=$((i + 1))
    [ $i -gt 100 ] && { log "registry did not come up"; tail -n 20 "$BED_RUN/log/registry.log" >&2; exit 1; }
    sleep 0.1
done
skopeo copy -q --dest-tls-verify=false "oci:$BED_LIB/images/busybox-pull:1" "docker://$PULL_IMAGE" >/dev/null

cat >"$BED_RUN/env" <<ENV
TINYLET_CRI_ENDPOINT=unix://$BED_SOCK
TINYLET_REGISTRY=$BED_REGISTRY
TINYLET_PAUSE_IMAGE=$PAUSE_IMAGE
TINYLET_TEST_IMAGE=$TEST_IMAGE
TINYLET_PULL_IMAGE=$PULL_IMAGE
TINYLET_BED_DIR=$BED_RUN
ENV
log "up: containerd $(containerd --version | awk '{print $3}') on unix://$BED_SOCK, registry $BED_REGISTRY"
