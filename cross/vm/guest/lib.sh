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

# An `ipvsadm -Ln` listing (stdin) as `ipvsadm -R` input that recreates the same table, so a
# listing printed by our code can be replayed and compared with ipvsadm's own rendering. Exits
# non-zero on what it cannot express (then the caller skips the comparison).
listing_to_restore() {
    awk '
        function fail(why) { print "cannot replay: " why > "/dev/stderr"; bad = 1; exit 1 }
        /^IP Virtual Server version/ || /^Prot LocalAddress/ || /^  -> RemoteAddress/ { next }
        /^(TCP|UDP|SCTP|FWM) / {
            opt = $1 == "TCP" ? "-t" : $1 == "UDP" ? "-u" : $1 == "SCTP" ? "--sctp-service" : "-f"
            svc = opt " " $2
            line = "-A " svc " -s " $3
            for (i = 4; i <= NF; i++) {
                if ($i == "persistent") line = line " -p " $(++i)
                else if ($i == "mask") line = line " -M " $(++i)
                else if ($i == "ops") line = line " -o"
                else fail("service flag " $i)
            }
            print line; next
        }
        /^  -> / {
            fwd = $3 == "Masq" ? "-m" : $3 == "Route" || $3 == "Local" ? "-g" : $3 == "Tunnel" ? "-i" : ""
            if (fwd == "") fail("forwarding " $3)
            print "-a " svc " -r " $2 " " fwd " -w " $4; next
        }
        NF { fail("line: " $0) }
    '
}
