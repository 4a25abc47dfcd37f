# Test payload (busybox ash, run by the guest's init as /payload/run): tinylet's kernel tests,
# then `tinylet proxy --once` over a manifest directory, each checked against ipvsadm.
. ./lib.sh
ARCH=$(uname -m)

# --- our netlink/IPVS layer against the real kernel ----------------------------------------------
if [ -x bin/ipvs_kernel ]; then
    t0=$(uptime_s)
    TINYLET_IPVS_KERNEL=1 ./bin/ipvs_kernel --test-threads=1 --nocapture > /tmp/kernel-tests.out 2>&1
    rc=$?
    cat /tmp/kernel-tests.out
    echo "(ipvs_kernel: $(elapsed "$t0" "$(uptime_s)") s in the guest)"
    [ "$rc" -eq 0 ] && ok "ipvs_kernel tests ($ARCH)" || not_ok "ipvs_kernel tests ($ARCH)" "exit $rc"
    # The tests print the listings they read through our layer between
    # "=== TINYLET NAME BEGIN/END ===" lines (and clean up after themselves). Each listing is
    # replayed into the kernel with `ipvsadm -R`; ipvsadm's own rendering of that table must be
    # the listing, byte for byte (same entries, order, columns, header from the kernel's info).
    rm -rf /tmp/listings && mkdir -p /tmp/listings
    # (libtest prints "test NAME ... " before the test's own output: markers may not start a line.)
    awk '/=== TINYLET [^ ]* END ===$/ {out = ""}
         out != "" {print > out}
         /=== TINYLET [^ ]* BEGIN ===$/ {
             n++; name = $0; sub(/.*=== TINYLET /, "", name); sub(/ BEGIN ===$/, "", name)
             out = sprintf("/tmp/listings/%03d-%s", n, name); printf "" > out
         }' /tmp/kernel-tests.out
    for f in /tmp/listings/*; do
        [ -f "$f" ] || continue
        head -n 1 "$f" | grep -q '^IP Virtual Server version' || continue
        name=${f##*/}
        if ! listing_to_restore < "$f" > /tmp/replay; then
            echo "skip replay of $name"
            continue
        fi
        ipvsadm -C && ipvsadm -R < /tmp/replay && ipvsadm -Ln > /tmp/replayed.txt
        if cmp -s "$f" /tmp/replayed.txt; then ok "kernel tests' listing $name = ipvsadm -Ln of the same table"
        else not_ok "kernel tests' listing $name = ipvsadm -Ln of the same table"; diff /tmp/replayed.txt "$f"; fi
    done
else
    echo "skip ipvs_kernel tests: the tree has no tests/ipvs_kernel.rs"
fi
ipvsadm -C

# --- tinylet proxy --once over a manifest directory ----------------------------------------------
if ./bin/tinylet proxy --once --proxy-manifest-path /payload/proxy-manifests; then
    ok "tinylet proxy --once"
else
    not_ok "tinylet proxy --once" "exit $?"
fi
ipvsadm -Ln > /tmp/ipvsadm.txt
cat /tmp/ipvsadm.txt
normalize_listing < /tmp/ipvsadm.txt > /tmp/ipvsadm.norm
grep -v '^#' proxy-expected.txt | LC_ALL=C sort > /tmp/expected.norm
if cmp -s /tmp/expected.norm /tmp/ipvsadm.norm; then ok "kernel table = expected from manifests"
else not_ok "kernel table = expected from manifests"; diff /tmp/expected.norm /tmp/ipvsadm.norm; fi

./bin/tinylet ipvs list > /tmp/tinylet.txt 2>&1
if cmp -s /tmp/ipvsadm.txt /tmp/tinylet.txt; then
    ok "tinylet ipvs list = ipvsadm -Ln (byte for byte)"
elif normalize_listing < /tmp/tinylet.txt | cmp -s - /tmp/ipvsadm.norm; then
    not_ok "tinylet ipvs list = ipvsadm -Ln" "same entries, different order or columns"
    diff /tmp/ipvsadm.txt /tmp/tinylet.txt
else
    not_ok "tinylet ipvs list = ipvsadm -Ln"
    diff /tmp/ipvsadm.txt /tmp/tinylet.txt
fi

addrs=$(ip -o addr show dev kube-ipvs0 2>/dev/null)
if echo "$addrs" | grep -q ' 10.96.0.10/32' && echo "$addrs" | grep -q ' 10.96.0.20/32' &&
    echo "$addrs" | grep -q ' 10.96.0.53/32'; then
    ok "kube-ipvs0 holds the ClusterIPs"
else
    not_ok "kube-ipvs0 holds the ClusterIPs"; ip addr show 2>&1
fi

# A second pass over unchanged manifests must find nothing to do and leave the table alone.
if ./bin/tinylet proxy --once --proxy-manifest-path /payload/proxy-manifests &&
    ipvsadm -Ln | normalize_listing | cmp -s - /tmp/ipvsadm.norm; then
    ok "second tinylet proxy --once is a no-op"
else
    not_ok "second tinylet proxy --once is a no-op"
fi

# Drift made by someone else is repaired on the next pass.
ipvsadm -d -t 10.96.0.10:80 -r 10.244.1.2:8080
ipvsadm -e -t 10.96.0.10:80 -r 10.244.1.3:8080 -m -w 5
if ./bin/tinylet proxy --once --proxy-manifest-path /payload/proxy-manifests &&
    ipvsadm -Ln | normalize_listing | cmp -s - /tmp/ipvsadm.norm; then
    ok "tinylet proxy --once repairs drift"
else
    not_ok "tinylet proxy --once repairs drift"; ipvsadm -Ln
fi

# Endpoint churn: one endpoint replaced by another is one delete and one add on each of the
# service's two virtual servers (ClusterIP and external IP), nothing else.
cp -r proxy-manifests /tmp/m
sed -i 's/- addresses: \[10.244.1.3\]/- addresses: [10.244.1.9]/' /tmp/m/web.yaml
./bin/tinylet proxy --once --proxy-manifest-path /tmp/m > /tmp/churn.out 2>&1
rc=$?
cat /tmp/churn.out
ops=$(grep -cE '^(add|delete|edit) ' /tmp/churn.out)
if [ "$rc" -eq 0 ] && [ "$ops" -eq 4 ] &&
    [ "$(grep -c '^delete destination 10.244.1.3:8080' /tmp/churn.out)" -eq 2 ] &&
    [ "$(grep -c '^add destination 10.244.1.9:8080' /tmp/churn.out)" -eq 2 ]; then
    ok "one endpoint replaced = one delete + one add per virtual server"
else
    not_ok "one endpoint replaced = one delete + one add per virtual server" "exit $rc, $ops ops"
fi

# IPv6: a v6 service next to the v4 ones.
cp proxy-v6/*.yaml /tmp/m/
if ./bin/tinylet proxy --once --proxy-manifest-path /tmp/m; then ok "tinylet proxy --once with IPv6"
else not_ok "tinylet proxy --once with IPv6" "exit $?"; fi
ipvsadm -Ln > /tmp/ipvsadm.txt
v6=$(normalize_listing < /tmp/ipvsadm.txt | grep -F '[fd00:96::10]:80')
want6="TCP [fd00:96::10]:80 rr -> [fd00:244::2]:8080 Masq 1
TCP [fd00:96::10]:80 rr -> [fd00:244::3]:8080 Masq 1"
[ "$v6" = "$want6" ] && ok "IPv6 service in the kernel" || { not_ok "IPv6 service in the kernel"; cat /tmp/ipvsadm.txt; }
./bin/tinylet ipvs list > /tmp/tinylet.txt 2>&1
cmp -s /tmp/ipvsadm.txt /tmp/tinylet.txt && ok "tinylet ipvs list = ipvsadm -Ln with IPv6" ||
    { not_ok "tinylet ipvs list = ipvsadm -Ln with IPv6"; diff /tmp/ipvsadm.txt /tmp/tinylet.txt; }
ip -o addr show dev kube-ipvs0 2>/dev/null | grep -q ' fd00:96::10/128' && ok "kube-ipvs0 holds the IPv6 ClusterIP" ||
    { not_ok "kube-ipvs0 holds the IPv6 ClusterIP"; ip addr show dev kube-ipvs0; }

./bin/tinylet ipvs flush && [ -z "$(ipvsadm -Ln | normalize_listing)" ] &&
    ok "tinylet ipvs flush" || not_ok "tinylet ipvs flush"

# --- tinylet proxy as a daemon: directory changes, periodic drift repair, a bad file, --cleanup --
# wait_for SECONDS CMD...: true as soon as CMD is, polled once a second (bounded).
wait_for() {
    w=$1; shift
    while [ "$w" -gt 0 ]; do "$@" && return 0; sleep 1; w=$((w - 1)); done
    "$@"
}
table_is() { ipvsadm -Ln | normalize_listing | cmp -s - "$1"; }
# want FILE LINE...: the expected table plus lines, sorted like normalize_listing's output.
want() { f=$1; shift; { cat /tmp/expected.norm; for l in "$@"; do echo "$l"; done; } | LC_ALL=C sort > "$f"; }
daemon_alive() { kill -0 "$PROXY" 2>/dev/null; }

rm -rf /tmp/d && cp -r proxy-manifests /tmp/d
./bin/tinylet proxy --proxy-manifest-path /tmp/d --ipvs-sync-period 2s > /tmp/daemon.log 2>&1 &
PROXY=$!
wait_for 30 table_is /tmp/expected.norm && ok "proxy daemon: table from the directory" ||
    { not_ok "proxy daemon: table from the directory"; ipvsadm -Ln; }

# An endpoint turns ready: the file is replaced the way manifests are (write, then rename).
sed 's/{ready: false, serving: false, terminating: false}/{ready: true, serving: true, terminating: false}/' \
    /tmp/d/web.yaml > /tmp/web.yaml.new && mv /tmp/web.yaml.new /tmp/d/web.yaml
want /tmp/want1 "TCP 10.96.0.10:80 rr -> 10.244.1.4:8080 Masq 1" "TCP 192.168.7.7:80 rr -> 10.244.1.4:8080 Masq 1"
wait_for 20 table_is /tmp/want1 && ok "proxy daemon: an endpoint that turns ready is added" ||
    { not_ok "proxy daemon: an endpoint that turns ready is added"; ipvsadm -Ln; }

# Drift: a destination removed and a stray virtual server on a ClusterIP are repaired by the
# periodic resync; a virtual server on an address that is not the proxy's is left alone.
ipvsadm -d -t 10.96.0.53:53 -r 10.244.0.5:53
ipvsadm -A -t 10.96.0.10:81 -s rr
ipvsadm -A -t 172.16.0.1:80 -s rr
want /tmp/want2 "TCP 10.96.0.10:80 rr -> 10.244.1.4:8080 Masq 1" "TCP 192.168.7.7:80 rr -> 10.244.1.4:8080 Masq 1" \
    "TCP 172.16.0.1:80 rr -> none"
wait_for 20 table_is /tmp/want2 && ok "proxy daemon: periodic resync repairs drift, leaves others' services" ||
    { not_ok "proxy daemon: periodic resync repairs drift, leaves others' services"; ipvsadm -Ln; }

# A malformed file: the daemon says which file (once, though every resync reads it again),
# keeps running and keeps the table.
printf 'apiVersion: v1\nkind: Service\nspec: [\n' > /tmp/d/broken.yaml
sleep 5
if daemon_alive && table_is /tmp/want2 && [ "$(grep -c 'broken.yaml' /tmp/daemon.log)" -eq 1 ]; then
    ok "proxy daemon: a malformed manifest is reported once by name, the table kept"
else
    not_ok "proxy daemon: a malformed manifest is reported once by name, the table kept"; tail -n 5 /tmp/daemon.log
fi
rm -f /tmp/d/broken.yaml

# A manifest removed: its virtual server goes, and its ClusterIP leaves kube-ipvs0.
rm /tmp/d/sticky.yaml
grep -v '^TCP 10.96.0.20:443 ' /tmp/want2 > /tmp/want3
gone20() { table_is /tmp/want3 && ! ip -o addr show dev kube-ipvs0 | grep -q ' 10.96.0.20/32'; }
wait_for 20 gone20 && ok "proxy daemon: a removed manifest's service and address go" ||
    { not_ok "proxy daemon: a removed manifest's service and address go"; ipvsadm -Ln; ip -o addr show dev kube-ipvs0; }
daemon_alive && ok "proxy daemon still running" || { not_ok "proxy daemon still running"; cat /tmp/daemon.log; }
kill "$PROXY" 2>/dev/null; wait "$PROXY" 2>/dev/null
echo "--- proxy daemon output (last lines)"; tail -n 12 /tmp/daemon.log

# --cleanup removes what the proxy made and nothing else.
./bin/tinylet proxy --cleanup > /tmp/cleanup.out 2>&1
rc=$?
cat /tmp/cleanup.out
if [ "$rc" -eq 0 ] && [ "$(ipvsadm -Ln | normalize_listing)" = "TCP 172.16.0.1:80 rr -> none" ] &&
    ! ip link show kube-ipvs0 > /dev/null 2>&1; then
    ok "tinylet proxy --cleanup"
else
    not_ok "tinylet proxy --cleanup" "exit $rc"; ipvsadm -Ln; ip link show
fi
ipvsadm -C

# --- IPVS mode's masquerading table with real packets ---------------------------------------------
. ./masq.sh
masq_check

# --- nftables mode with real packets (masq.sh's topology) ------------------------------------------
. ./nft.sh
t0=$(uptime_s)
nft_check
echo "(nftables packets: $(elapsed "$t0" "$(uptime_s)") s in the guest)"

# --- spread, affinity and removed endpoints with real packets, both modes -------------------------
. ./spread.sh
t0=$(uptime_s)
spread_check ipvs
spread_check nftables --proxy-mode=nftables
echo "(spread packets: $(elapsed "$t0" "$(uptime_s)") s in the guest)"
summary
