#!/usr/bin/env bash
# Restarts the bed's containerd (same config, same socket); running pods keep running.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_root
containerd_stop
containerd_start
log "containerd restarted"
