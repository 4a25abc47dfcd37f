# Load balancing with real packets, in IPVS mode and in nftables mode (busybox ash; sourced by
# the test payload after lib.sh and masq.sh, whose namespace helpers it uses). Topology:
#   client 192.168.7.2 --- 192.168.7.1 node  10.244.1.1 --- 10.244.1.10 pod a (ready)
#                                            10.244.2.1 --- 10.244.2.10 pod b (ready)
#                                            10.244.3.1 --- 10.244.3.10 pod c (not ready)
# Each pod's httpd answers /cgi-bin/name with its own name. Checked from the node, for each mode:
# a cluster IP spreads over both ready endpoints (at least two names in 20 connections) and never
# reaches the not-ready one; a service with sessionAffinity ClientIP sends 20 of 20 connections to
# one endpoint; after an endpoint is removed from the slice and the proxy has synced, no new
# connection reaches it; `--cleanup` leaves the mode's tables empty.

spread_pod() { # NAME ADDRESS NODE-ADDRESS: a pod namespace on its own veth to the node
    holder=$(masq_ns)
    sleep 0.1
    veth_pair "sn$1" "sp$1" && ip link set "sn$1" netns "$NODE" && ip link set "sp$1" netns "$holder" ||
        return 1
    in_ns "$NODE" sh -c "ip link set sn$1 up && ip addr add $3/24 dev sn$1"
    in_ns "$holder" sh -c "ip link set lo up && ip link set sp$1 up && ip addr add $2/24 dev sp$1 &&
        ip route add default via $3"
    mkdir -p "/tmp/www-$1/cgi-bin"
    printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n%s\\n" %s\n' '%s' "$1" \
        > "/tmp/www-$1/cgi-bin/name"
    chmod 755 "/tmp/www-$1/cgi-bin/name"
    in_ns "$holder" httpd -f -p 8080 -h "/tmp/www-$1" &
    SPREAD_PIDS="$SPREAD_PIDS $holder $!"
    i=0
    while [ $i -lt 20 ] && ! in_ns "$holder" timeout 2 wget -q -O /dev/null "http://$2:8080/cgi-bin/name"; do
        sleep 0.2; i=$((i + 1))
    done
}

spread_setup() {
    SPREAD_PIDS=""
    NODE=$(masq_ns); CLIENT=$(masq_ns)
    SPREAD_PIDS="$NODE $CLIENT"
    sleep 0.2
    veth_pair sn0 sc0 && ip link set sn0 netns "$NODE" && ip link set sc0 netns "$CLIENT" || return 1
    in_ns "$NODE" sh -c '
        ip link set lo up && ip link set sn0 up && ip addr add 192.168.7.1/24 dev sn0 &&
        echo 1 > /proc/sys/net/ipv4/ip_forward && ip route add default via 192.168.7.2'
    in_ns "$CLIENT" sh -c '
        ip link set lo up && ip link set sc0 up && ip addr add 192.168.7.2/24 dev sc0 &&
        ip route add default via 192.168.7.1'
    spread_pod a 10.244.1.10 10.244.1.1 && spread_pod b 10.244.2.10 10.244.2.1 &&
        spread_pod c 10.244.3.10 10.244.3.1
}

spread_teardown() {
    # shellcheck disable=SC2086
    kill $SPREAD_PIDS 2>/dev/null
    # shellcheck disable=SC2086
    wait $SPREAD_PIDS 2>/dev/null
    rm -rf /tmp/www-a /tmp/www-b /tmp/www-c /tmp/spread
}

# The services into /tmp/spread: `spread` (cluster IP 10.96.0.20) with a, b ready and c not
# ready — or, with "a-only", a alone, b gone from the slice and c still not ready — and `sticky`
# (10.96.0.21, ClientIP affinity) over a and b.
spread_manifest() { # [a-only]
    mkdir -p /tmp/spread
    b='- {addresses: [10.244.2.10], conditions: {ready: true}, nodeName: node1}'
    [ "$1" = a-only ] && b=''
    cat > /tmp/spread/spread.yaml <<EOF
kind: Service
metadata: {name: spread, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
kind: EndpointSlice
metadata:
  name: spread-1
  namespace: default
  labels: {kubernetes.io/service-name: spread}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], conditions: {ready: true}, nodeName: node1}
$b
- {addresses: [10.244.3.10], conditions: {ready: false}, nodeName: node1}
EOF
    cat > /tmp/spread/sticky.yaml <<'EOF'
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  clusterIP: 10.96.0.21
  sessionAffinity: ClientIP
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
kind: EndpointSlice
metadata:
  name: sticky-1
  namespace: default
  labels: {kubernetes.io/service-name: sticky}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.10], conditions: {ready: true}, nodeName: node1}
- {addresses: [10.244.2.10], conditions: {ready: true}, nodeName: node1}
EOF
}

spread_proxy() { # MODE-FLAG...: one `--once` pass over /tmp/spread in the node namespace
    in_ns "$NODE" ./bin/tinylet proxy "$@" --once --hostname-override=node1 \
        --nodeport-addresses=192.168.7.1 --cluster-cidr=10.244.0.0/16 \
        --proxy-manifest-path /tmp/spread > /tmp/spread.out 2>&1
}

# The names that answered 20 connections from the node to URL, one per line.
spread_names() { # URL
    i=0
    while [ $i -lt 20 ]; do
        in_ns "$NODE" timeout 5 wget -q -O - "$1" 2>/dev/null || echo none
        i=$((i + 1))
    done
}

spread_check() { # LABEL MODE-FLAG...
    label=$1; shift
    spread_setup || { not_ok "$label: namespaces and veths"; spread_teardown; return; }
    spread_manifest
    spread_proxy "$@" || { not_ok "$label: tinylet proxy --once over three endpoints"; cat /tmp/spread.out; }

    names=$(spread_names http://10.96.0.20/cgi-bin/name | sort | uniq -c | tr -s ' \n' '  ')
    case "$names" in
        *' c'*|*none*) not_ok "$label: the cluster IP spreads over the ready endpoints" "saw $names" ;;
        *' a'*' b'*) ok "$label: the cluster IP spreads over both ready endpoints, never the not-ready one ($names)" ;;
        *) not_ok "$label: the cluster IP spreads over the ready endpoints" "saw $names" ;;
    esac

    names=$(spread_names http://10.96.0.21/cgi-bin/name | sort | uniq -c | tr -s ' \n' '  ')
    case "$names" in
        ' 20 a '|' 20 b ') ok "$label: ClientIP affinity, 20 of 20 to one endpoint ($names)" ;;
        *) not_ok "$label: ClientIP affinity, 20 of 20 to one endpoint" "saw $names" ;;
    esac

    spread_manifest a-only
    spread_proxy "$@" || { not_ok "$label: tinylet proxy --once after removing an endpoint"; cat /tmp/spread.out; }
    names=$(spread_names http://10.96.0.20/cgi-bin/name | sort | uniq -c | tr -s ' \n' '  ')
    [ "$names" = ' 20 a ' ] && ok "$label: no new connection reaches a removed endpoint ($names)" ||
        not_ok "$label: no new connection reaches a removed endpoint" "saw $names"

    in_ns "$NODE" ./bin/tinylet proxy "$@" --cleanup > /tmp/spread.out 2>&1 ||
        { not_ok "$label: --cleanup"; cat /tmp/spread.out; }
    spread_teardown
}
