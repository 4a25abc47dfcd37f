# IPVS mode with its masquerading table, with real packets (busybox ash; sourced by the test
# payload after lib.sh, which then calls masq_check; nft.sh reuses the topology functions).
# Three network namespaces joined by veth pairs:
#   client 192.168.7.2 --- 192.168.7.1 node 10.244.1.1 --- 10.244.1.10 pod (httpd :8080)
# The node runs `tinylet proxy --once` in IPVS mode for a NodePort service whose one endpoint
# is the pod; the pod's CGI answers with the peer address it sees. Upstream IPVS mode
# masquerades a NodePort with externalTrafficPolicy Cluster (the reply must come back through
# the node), the node's own connection to a cluster IP (whose source is a VIP on kube-ipvs0),
# and a pod reaching itself through its service (hairpin): in all three the pod must see the
# node's address on its link, 10.244.1.1; with externalTrafficPolicy Local the NodePort keeps
# the client's address. `--cleanup` must leave no table behind.
# (busybox 1.35's `wget -T` crashes: `timeout` bounds each request instead.)
# Each namespace is held by a `sleep` started under `unshare -n`; killing them removes the
# namespaces with everything in them.

masq_ns() { # NAME: start a namespace holder, print its pid
    unshare -n sleep 600 > /dev/null 2>&1 &
    echo $!
}
# busybox `ip link add A type veth peer name B` ignores the peer's name (the kernel calls it
# vethN): find the peer by its `@A` and rename it.
veth_pair() { # A B
    ip link add "$1" type veth peer name "$2" || return 1
    ip link show "$2" > /dev/null 2>&1 && return 0
    p=$(ip -o link show | sed -n "s/^[0-9]*: \([^@:]*\)@$1:.*/\1/p")
    [ -n "$p" ] && ip link set "$p" name "$2"
}
in_ns() { # PID CMD...: run CMD in that namespace
    p=$1; shift
    nsenter -t "$p" -n "$@"
}

# The topology above with the pod's httpd answering: sets NODE, POD, CLIENT (namespace holder
# pids) and HTTPD; false if the namespaces or veths could not be made.
masq_setup() {
    NODE=$(masq_ns); POD=$(masq_ns); CLIENT=$(masq_ns)
    sleep 0.2
    veth_pair mn0 mp0 && veth_pair mn1 mc0 &&
        ip link set mn0 netns "$NODE" && ip link set mn1 netns "$NODE" &&
        ip link set mp0 netns "$POD" && ip link set mc0 netns "$CLIENT" || return 1
    in_ns "$NODE" sh -c '
        ip link set lo up && ip link set mn0 up && ip link set mn1 up &&
        ip addr add 10.244.1.1/24 dev mn0 && ip addr add 192.168.7.1/24 dev mn1 &&
        echo 1 > /proc/sys/net/ipv4/ip_forward'
    in_ns "$POD" sh -c '
        ip link set lo up && ip link set mp0 up && ip addr add 10.244.1.10/24 dev mp0 &&
        ip route add default via 10.244.1.1'
    in_ns "$CLIENT" sh -c '
        ip link set lo up && ip link set mc0 up && ip addr add 192.168.7.2/24 dev mc0 &&
        ip route add default via 192.168.7.1'
    mkdir -p /tmp/www/cgi-bin
    # httpd listens on IPv6 and gives IPv4 peers as [::ffff:a.b.c.d]: answer the bare address.
    cat > /tmp/www/cgi-bin/who <<'CGI'
#!/bin/sh
a=${REMOTE_ADDR#[}; a=${a%]}; a=${a#::ffff:}
printf 'Content-Type: text/plain\r\n\r\n%s\n' "$a"
CGI
    chmod 755 /tmp/www/cgi-bin/who
    in_ns "$POD" httpd -f -p 8080 -h /tmp/www &
    HTTPD=$!
    # The pod's httpd may take a moment to listen.
    i=0
    while [ $i -lt 20 ] && ! in_ns "$POD" timeout 2 wget -q -O /dev/null http://10.244.1.10:8080/cgi-bin/who; do
        sleep 0.2; i=$((i + 1))
    done
}

# The service of the checks into DIR/web.yaml: NodePort 30080 and cluster IP 10.96.0.10, port
# 80 → the pod's 8080, its one endpoint on node1.
masq_manifest() { # DIR
    mkdir -p "$1"
    cat > "$1/web.yaml" <<'EOF'
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080}
---
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], conditions: {ready: true}, nodeName: node1}
EOF
}

# What the pod saw as its peer for a request from the namespace PID to URL (empty: no answer).
masq_who() { # PID URL
    in_ns "$1" timeout 5 wget -q -O - "$2" 2>&1
}

masq_teardown() {
    kill "$HTTPD" "$NODE" "$POD" "$CLIENT" 2>/dev/null
    wait "$HTTPD" "$NODE" "$POD" "$CLIENT" 2>/dev/null
    rm -rf /tmp/www
}

masq_check() {
    masq_setup || { not_ok "masquerade: namespaces and veths"; masq_teardown; return; }
    masq_manifest /tmp/masq
    if in_ns "$NODE" ./bin/tinylet proxy --once --hostname-override=node1 \
        --nodeport-addresses=192.168.7.1 --proxy-manifest-path /tmp/masq > /tmp/masq.out 2>&1; then
        ok "masquerade: tinylet proxy --once (IPVS + tinylet-ipvs table)"
    else
        not_ok "masquerade: tinylet proxy --once (IPVS + tinylet-ipvs table)"
    fi
    cat /tmp/masq.out
    in_ns "$NODE" ./bin/tinylet nft list tinylet-ipvs > /tmp/masq.list 2>&1
    grep -q '10.244.1.10 . tcp . 8080 . 10.244.1.10' /tmp/masq.list &&
        grep -q 'elements = { tcp . 30080 }' /tmp/masq.list &&
        ok "masquerade: tinylet nft list tinylet-ipvs reads the table back" ||
        { not_ok "masquerade: tinylet nft list tinylet-ipvs reads the table back"; cat /tmp/masq.list; }
    seen=$(masq_who "$CLIENT" http://192.168.7.1:30080/cgi-bin/who)
    [ "$seen" = 10.244.1.1 ] && ok "masquerade: NodePort from outside, the pod sees the node ($seen)" ||
        not_ok "masquerade: NodePort from outside, the pod sees the node" "saw '$seen'"
    seen=$(masq_who "$NODE" http://10.96.0.10/cgi-bin/who)
    [ "$seen" = 10.244.1.1 ] && ok "masquerade: cluster IP from the node ($seen)" ||
        not_ok "masquerade: cluster IP from the node" "saw '$seen'"
    seen=$(masq_who "$POD" http://10.96.0.10/cgi-bin/who)
    [ "$seen" = 10.244.1.1 ] && ok "masquerade: hairpin, the pod through its own service ($seen)" ||
        not_ok "masquerade: hairpin, the pod through its own service" "saw '$seen'"

    # The control: with externalTrafficPolicy Local the NodePort is not masqueraded (upstream's
    # KUBE-NODE-PORT-LOCAL-TCP → RETURN), so the pod sees the client itself.
    sed -i 's/^  type: NodePort$/  type: NodePort\n  externalTrafficPolicy: Local/' /tmp/masq/web.yaml
    in_ns "$NODE" ./bin/tinylet proxy --once --hostname-override=node1 \
        --nodeport-addresses=192.168.7.1 --proxy-manifest-path /tmp/masq > /tmp/masq.out 2>&1 ||
        { not_ok "masquerade: tinylet proxy --once with policy Local"; cat /tmp/masq.out; }
    seen=$(masq_who "$CLIENT" http://192.168.7.1:30080/cgi-bin/who)
    [ "$seen" = 192.168.7.2 ] && ok "masquerade: NodePort with policy Local keeps the client ($seen)" ||
        not_ok "masquerade: NodePort with policy Local keeps the client" "saw '$seen'"

    in_ns "$NODE" ./bin/tinylet proxy --cleanup > /tmp/masq.out 2>&1
    rc=$?
    in_ns "$NODE" ./bin/tinylet nft list tinylet-ipvs > /tmp/masq.list 2>&1
    if [ "$rc" -eq 0 ] && grep -q 'delete table ip tinylet-ipvs' /tmp/masq.out && [ ! -s /tmp/masq.list ] &&
        [ -z "$(in_ns "$NODE" ipvsadm -Ln | normalize_listing)" ]; then
        ok "masquerade: --cleanup removes the virtual servers and the table"
    else
        not_ok "masquerade: --cleanup removes the virtual servers and the table" "exit $rc"
        cat /tmp/masq.out /tmp/masq.list
    fi
    masq_teardown
    rm -rf /tmp/masq
}

