#!/usr/bin/env bash
# Builds the bed's OCI images from busybox-static, with no registry and no internet:
#   pause   — the sandbox image; its only process sleeps until killed.
#   busybox — the test image: busybox with every applet linked (sh, sleep, httpd, nc, ...).
#   busybox-pull — the same with one more label: the copy served by the loopback registry.
# Usage: images.sh OUTDIR   → OUTDIR/{pause,busybox}/ (OCI layouts) and OUTDIR/*.tar
# The layer tar is built with fixed owners and mtimes, so the same busybox gives the same digest.
set -euo pipefail
out=${1:?usage: images.sh OUTDIR}
busybox=${BUSYBOX:-/bin/busybox}
arch=$(dpkg --print-architecture)

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# layout DIR NAME(ref) ROOTFS CONFIG_JSON_CONFIG_PART
layout() {
    local dir=$1 image=$2 rootfs=$3 cfgpart=$4 tag=${2##*:}
    rm -rf "$dir" && mkdir -p "$dir/blobs/sha256"
    tar --numeric-owner --owner=0 --group=0 --mtime=@0 --sort=name -C "$rootfs" -cf "$dir/layer.tar" .
    local ld; ld=$(sha "$dir/layer.tar")
    local ls; ls=$(size "$dir/layer.tar")
    mv "$dir/layer.tar" "$dir/blobs/sha256/$ld"
    printf '{"architecture":"%s","os":"linux","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$arch" "$cfgpart" "$ld" >"$dir/config.json"
    local cd; cd=$(sha "$dir/config.json")
    local cs; cs=$(size "$dir/config.json")
    mv "$dir/config.json" "$dir/blobs/sha256/$cd"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}]}' \
        "$cd" "$cs" "$ld" "$ls" >"$dir/manifest.json"
    local md; md=$(sha "$dir/manifest.json")
    local ms; ms=$(size "$dir/manifest.json")
    mv "$dir/manifest.json" "$dir/blobs/sha256/$md"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$md" "$ms" "$image" "$tag" >"$dir/index.json"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
    tar -C "$dir" -cf "$dir.tar" oci-layout index.json blobs
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# Test image: busybox with all applets, a passwd/group for runAsUser tests, a www dir for httpd.
root=$work/busybox
mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/www" "$root/proc" "$root/sys" "$root/dev"
chmod 1777 "$root/tmp"
cp "$busybox" "$root/bin/busybox"
for a in $("$busybox" --list); do
    [ "$a" = busybox ] && continue
    ln -sf busybox "$root/bin/$a"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
echo ok >"$root/www/index.html"
layout "$out/busybox" "${TEST_IMAGE:-tinylet.test/busybox:1}" "$root" \
    '{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/"}'
# The registry copy differs in one label, so it has its own image id: removing it from the
# runtime (to force a real pull) never removes the local test image.
layout "$out/busybox-pull" "${PULL_IMAGE:-127.0.0.1:5000/tinylet/busybox:1}" "$root" \
    '{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/","Labels":{"tinylet.test/copy":"registry"}}'

# Pause image: one static binary and a sleep that outlives any test; killed by the runtime.
root=$work/pause
mkdir -p "$root/bin"
cp "$busybox" "$root/bin/busybox"
ln -s busybox "$root/bin/sleep"
layout "$out/pause" "${PAUSE_IMAGE:-tinylet.test/pause:1}" "$root" \
    '{"Env":["PATH=/bin"],"Entrypoint":["/bin/sleep","2147483647"],"WorkingDir":"/"}'
