# Bench payload (busybox ash, /payload/run): ipvsadm -R and tinylet's sync of the same tables,
# N services x 2 masquerade destinations for each N in ./bench-sizes, flushing in between, all
# in one boot so the figures compare (TCG speed swings with host load between boots).
# Prints "@@BENCH tool what N seconds [messages]" lines that bench.sh turns into a table.
. ./lib.sh
SIZES=$(cat bench-sizes)
MAX=0
for n in $SIZES; do [ "$n" -gt "$MAX" ] && MAX=$n; done

# Service i: 10.100.(i/256).(i%256):80, destinations 10.200.x.y:8080 and 10.201.x.y:8080.
restore_file() {
    awk -v n="$1" 'BEGIN {
        for (i = 0; i < n; i++) {
            x = int(i / 256) % 256; y = i % 256
            s = sprintf("10.%d.%d.%d:80", 100 + int(i / 65536), x, y)
            print "-A -t " s " -s rr"
            printf "-a -t %s -r 10.200.%d.%d:8080 -m -w 1\n", s, x, y
            printf "-a -t %s -r 10.201.%d.%d:8080 -m -w 1\n", s, x, y
        }
    }'
}
# Services and destinations in the kernel, from /proc (cheaper than a dump through ipvsadm).
table_size() {
    awk '/^(TCP|UDP|SCTP|FWM) / {s++} /^  -> [0-9A-F]/ {d++} END {printf "%d services, %d destinations", s, d}' /proc/net/ip_vs
}
flush() {
    ipvsadm -C
    [ -z "$(awk '/^(TCP|UDP|SCTP|FWM) /' /proc/net/ip_vs)" ] || { echo "flush left services behind"; exit 1; }
}

fail=0
flush
for n in $SIZES; do
    restore_file "$n" > /tmp/restore
    t0=$(uptime_s)
    ipvsadm -R < /tmp/restore || { echo "ipvsadm -R of $n failed"; fail=1; }
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -R, N=$n: $t s ($(table_size))"
    # Every restored line is a GETFAMILY request and then the command itself.
    echo "@@BENCH ipvsadm sync $n $t $((6 * n))"
    t0=$(uptime_s)
    ipvsadm -a -t 10.100.0.0:80 -r 10.202.0.0:8080 -m -w 1 || fail=1
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -a of one destination at N=$n: $t s"
    echo "@@BENCH ipvsadm add-one $n $t 2"
    t0=$(uptime_s)
    flush
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -C at N=$n: $t s"
    echo "@@BENCH ipvsadm flush $n $t 2"
done

# tinylet's sync of the same shape of table through its own netlink layer: the ignored
# bench_sync test of tests/ipvs_kernel.rs, whose "BENCH what n=N ... time_ms=T messages=M"
# lines become @@BENCH lines here.
if [ -x bin/ipvs_kernel ]; then
    TINYLET_IPVS_KERNEL=1 TINYLET_BENCH_N=$(echo $SIZES | tr ' ' ',') \
        ./bin/ipvs_kernel --ignored --exact bench_sync --nocapture --test-threads=1 > /tmp/bench.out 2>&1
    rc=$?
    cat /tmp/bench.out
    [ "$rc" -eq 0 ] || { echo "tinylet bench_sync failed: exit $rc"; fail=1; }
    awk '$1 == "BENCH" {
        what = $2; n = ""; ms = ""; msgs = ""
        for (i = 3; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "n") n = kv[2]; else if (kv[1] == "time_ms") ms = kv[2]; else if (kv[1] == "messages") msgs = kv[2]
        }
        name = what == "full_sync" ? "sync" : what == "add_one_endpoint" ? "add-one" : what == "full_resync_nochange" ? "resync" : what
        if (n != "" && ms != "") printf "@@BENCH tinylet %s %s %.4f %s\n", name, n, ms / 1000, msgs
    }' /tmp/bench.out
    flush
else
    echo "no tinylet bench in this tree (tests/ipvs_kernel.rs): ipvsadm figures only"
fi
exit $fail
