# Bench payload (busybox ash, /payload/run): ipvsadm -R and tinylet's sync of the same tables,
# N services x 2 masquerade destinations for each N in ./bench-sizes, all in one boot so the
# figures compare (TCG speed swings with host load between boots).
# Prints "@@BENCH tool case N seconds [messages]" lines that bench.sh turns into a table.
#
# Every measurement runs in a fresh network namespace (own IPVS table, lo up so destination
# addresses pass the kernel's unicast check). This matters: the kernel parks deleted
# destinations in a per-namespace trash list for a minute and scans that list on every
# destination add, so a sync right after flushing 20,000 destinations runs ~17x slower.
. ./lib.sh

in_netns() { unshare -n sh -c 'ip link set lo up && "$@"' sh "$@"; }

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

# One ipvsadm measurement (inside its namespace): restore N, add one destination, flush.
ipvsadm_case() {
    n=$1
    restore_file "$n" > /tmp/restore
    t0=$(uptime_s)
    ipvsadm -R < /tmp/restore || { echo "ipvsadm -R of $n failed"; return 1; }
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -R, N=$n: $t s ($(table_size))"
    # Every restored line is a GETFAMILY request and then the command itself.
    echo "@@BENCH ipvsadm sync $n $t $((6 * n))"
    t0=$(uptime_s)
    ipvsadm -a -t 10.100.0.0:80 -r 10.202.0.0:8080 -m -w 1 || return 1
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -a of one destination at N=$n: $t s"
    echo "@@BENCH ipvsadm add-one $n $t 2"
    t0=$(uptime_s)
    ipvsadm -C || return 1
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -C at N=$n: $t s"
    echo "@@BENCH ipvsadm flush $n $t 2"
    [ -f ./bench-dirty ] || return 0
    # The same restore again at once, in this namespace: its flushed destinations are still in
    # the kernel's trash list, which every destination add scans.
    t0=$(uptime_s)
    ipvsadm -R < /tmp/restore || { echo "ipvsadm -R of $n after the flush failed"; return 1; }
    t=$(elapsed "$t0" "$(uptime_s)")
    echo "ipvsadm -R, N=$n, same namespace right after the flush: $t s ($(table_size))"
    echo "@@BENCH ipvsadm sync-after-flush $n $t $((6 * n))"
    ipvsadm -C || return 1
}
if [ "${1:-}" = ipvsadm-case ]; then ipvsadm_case "$2"; exit; fi

# tinylet's sync of the same shape of table through its own netlink layer: the ignored
# bench_sync test of tests/ipvs_kernel.rs; its "BENCH what n=N ... time_ms=T messages=M"
# lines become @@BENCH lines.
tinylet_case() {
    TINYLET_IPVS_KERNEL=1 TINYLET_BENCH_N=$1 in_netns \
        ./bin/ipvs_kernel --ignored --exact bench_sync --nocapture --test-threads=1 > /tmp/bench.out 2>&1
    rc=$?
    cat /tmp/bench.out
    # (libtest prints "test bench_sync ... " in front of the first line.)
    sed -n 's/^.*BENCH /BENCH /p' /tmp/bench.out | awk '$1 == "BENCH" {
        what = $2; n = ""; ms = ""; msgs = ""
        for (i = 3; i <= NF; i++) {
            split($i, kv, "=")
            if (kv[1] == "n") n = kv[2]; else if (kv[1] == "time_ms") ms = kv[2]; else if (kv[1] == "messages") msgs = kv[2]
        }
        name = what == "full_sync" ? "sync" : what == "add_one_endpoint" ? "add-one" : what == "full_resync_nochange" ? "resync" : what == "encode_only" ? "encode" : what
        if (n != "" && ms != "") printf "@@BENCH tinylet %s %s %.4f %s\n", name, n, ms / 1000, msgs
    }'
    return $rc
}

# What the guest kernel made of its CPU: the mitigations decide what a syscall costs.
vuln() { cat "/sys/devices/system/cpu/vulnerabilities/$1" 2>/dev/null || echo "?"; }
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)
# (arm64 names no model: its CPU part number says which core, 0xd03 a Cortex-A53.)
[ -n "$cpu" ] || cpu="$(uname -m), CPU part $(sed -n 's/^CPU part[^:]*: //p' /proc/cpuinfo | head -n 1)"
echo "@@CPU cpu: $cpu; meltdown: $(vuln meltdown); mds: $(vuln mds)"

fail=0
for n in $(cat bench-sizes); do
    in_netns sh ./run ipvsadm-case "$n" || { echo "ipvsadm case N=$n failed"; fail=1; }
    # Let the kernel finish tearing down the namespace (freeing its destinations) before the
    # next measurement starts.
    sleep 5
    if [ -x bin/ipvs_kernel ]; then
        tinylet_case "$n" || { echo "tinylet bench_sync N=$n failed"; fail=1; }
        sleep 5
    fi
done
[ -x bin/ipvs_kernel ] || echo "no tinylet bench in this tree (tests/ipvs_kernel.rs): ipvsadm figures only"
exit $fail
