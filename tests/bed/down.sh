#!/usr/bin/env bash
# Tears the containerd test bed down and puts the host back as up.sh found it: every pod of the
# bed's containerd, the shims, containerd itself, the registry, the CNI bridge, pod cgroups,
# mounts under the bed's dirs, and net.ipv4.ip_forward if the bed turned it on. Processes are
# stopped by pid (pid files, or the shims of THIS bed's socket), never by process name. Safe to
# run when nothing is up. Installed packages and the images under $BED_LIB stay (see README).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root
set +e

if [ -S "$BED_SOCK" ] && ctr -a "$BED_SOCK" version >/dev/null 2>&1; then
    for t in $(ctr -a "$BED_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr -a "$BED_SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1
    done
    sleep 0.3
    for t in $(ctr -a "$BED_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
        ctr -a "$BED_SOCK" -n k8s.io tasks rm -f "$t" >/dev/null 2>&1
    done
    for c in $(ctr -a "$BED_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
        ctr -a "$BED_SOCK" -n k8s.io containers rm "$c" >/dev/null 2>&1
    done
fi
containerd_stop

# Shims of this bed outlive containerd by design; they name our socket in their arguments.
for p in /proc/[0-9]*; do
    # stderr first: a process that exits meanwhile must not make the redirection complain.
    cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
    case "$cmd" in
        *containerd-shim*"$BED_SOCK"*) kill -KILL "${p#/proc/}" 2>/dev/null ;;
    esac
done

stop_pidfile "$BED_RUN/registry.pid" 5

# Mounts under the bed's dirs (overlay rootfs, netns bind mounts, shm), deepest first.
for m in $(awk '{print $5}' /proc/self/mountinfo | grep -E "^($BED_RUN|$BED_LIB)/" | sort -r); do
    umount -l "$m" 2>/dev/null
done

ip link del "$BED_BRIDGE" 2>/dev/null
# veth peers of pods whose netns is gone disappear with it; any left on the bridge went above.

# Pod cgroups (cgroupfs driver, /kubepods/...): remove empty ones bottom-up.
for ctl in /sys/fs/cgroup/*/; do
    [ -d "$ctl/kubepods" ] || continue
    find "$ctl/kubepods" -depth -type d -exec rmdir {} \; 2>/dev/null
done

# ip_forward: only the change the bed makes is undone (its bridge turns forwarding on). If it was
# on before up.sh, or is off now, it is left as it is.
if [ -f "$BED_LIB/ip_forward.orig" ]; then
    if [ "$(cat "$BED_LIB/ip_forward.orig")" = 0 ] && [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]; then
        echo 0 >/proc/sys/net/ipv4/ip_forward
    fi
    rm -f "$BED_LIB/ip_forward.orig"
fi

rm -rf "$BED_RUN" "$BED_LIB/containerd"
log "down"
exit 0
