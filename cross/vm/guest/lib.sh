# Helpers for payload scripts inside the test VMs (busybox ash). Sourced by /payload/run.

CHECKS_OK=0
CHECKS_FAILED=0
FAILED_NAMES=
ok() { CHECKS_OK=$((CHECKS_OK + 1)); echo "ok   $1"; }
not_ok() { CHECKS_FAILED=$((CHECKS_FAILED + 1)); FAILED_NAMES="$FAILED_NAMES $1"; echo "FAIL $1${2:+: $2}"; }

# Seconds since boot with centisecond resolution (busybox date has no %N).
uptime_s() { cut -d' ' -f1 /proc/uptime; }
elapsed() { awk "BEGIN { printf \"%.2f\", $2 - $1 }"; }

# An IPVS listing in `ipvsadm -Ln` layout (stdin) as sorted "SERVICE -> DEST FWD WEIGHT" lines,
# so listings compare regardless of the kernel's hash order and column padding.
normalize_listing() {
    awk '
        function flush() { if (svc != "" && n == 0) print svc " -> none" }
        /^(TCP|UDP|SCTP|FWM) / { flush(); svc = $0; sub(/ +$/, "", svc); gsub(/ +/, " ", svc); n = 0; next }
        /^  -> / && $2 != "RemoteAddress:Port" { print svc " -> " $2 " " $3 " " $4; n++ }
        END { flush() }
    ' | LC_ALL=C sort
}

summary() {
    echo "checks: $CHECKS_OK passed, $CHECKS_FAILED failed${FAILED_NAMES:+ (failed:$FAILED_NAMES)}"
    [ "$CHECKS_FAILED" -eq 0 ]
}
