# nftables mode with real packets (busybox ash; sourced by the test payload after lib.sh and
# masq.sh, whose topology it reuses in fresh namespaces: client 192.168.7.2 — node — pod
# 10.244.1.10 answering with the peer address it sees). The node runs
# `tinylet proxy --proxy-mode=nftables --once` over the same service, with the pod CIDR as
# --cluster-cidr. Upstream's nftables mode masquerades traffic to a cluster IP from outside
# the cluster CIDR (the node's own), a NodePort with externalTrafficPolicy Cluster and a pod
# reaching itself through its service (hairpin): the pod sees the node's address on its link,
# 10.244.1.1. With Local the NodePort keeps the client's address; a service without endpoints
# is rejected (ICMP, refused at once); `--cleanup` leaves no `kube-proxy` table.

nft_proxy() { # NAME: one `--proxy-mode=nftables --once` pass over /tmp/nftm, checked
    if in_ns "$NODE" ./bin/tinylet proxy --proxy-mode=nftables --once --hostname-override=node1 \
        --nodeport-addresses=192.168.7.1 --cluster-cidr=10.244.0.0/16 \
        --proxy-manifest-path /tmp/nftm > /tmp/nft.out 2>&1 && grep -q 'full sync' /tmp/nft.out; then
        ok "nftables: $1 ($(grep 'full sync' /tmp/nft.out))"
    else
        not_ok "nftables: $1"; cat /tmp/nft.out
    fi
}

nft_check() {
    masq_setup || { not_ok "nftables: namespaces and veths"; masq_teardown; return; }
    # Locally made connections to a cluster IP need a route to reach the output hook; the
    # node's default route points at the outside link, as on a real node.
    in_ns "$NODE" ip route add default via 192.168.7.2
    masq_manifest /tmp/nftm
    cat > /tmp/nftm/empty.yaml <<'EOF'
kind: Service
metadata: {name: empty, namespace: default}
spec:
  clusterIP: 10.96.0.13
  ports:
  - {name: http, port: 80, targetPort: 8080}
EOF
    nft_proxy "tinylet proxy --proxy-mode=nftables --once"
    in_ns "$NODE" ./bin/tinylet nft list > /tmp/nft.list 2>&1
    grep -q '10.96.0.10 . tcp . 80 : goto service-default/web/tcp/http' /tmp/nft.list &&
        grep -q 'tcp . 30080 : goto external-default/web/tcp/http' /tmp/nft.list &&
        grep -q 'dnat to 10.244.1.10:8080' /tmp/nft.list &&
        ok "nftables: tinylet nft list reads the kube-proxy table back" ||
        { not_ok "nftables: tinylet nft list reads the kube-proxy table back"; cat /tmp/nft.list; }

    seen=$(masq_who "$NODE" http://10.96.0.10/cgi-bin/who)
    [ "$seen" = 10.244.1.1 ] && ok "nftables: cluster IP from the node ($seen)" ||
        not_ok "nftables: cluster IP from the node" "saw '$seen'"
    seen=$(masq_who "$CLIENT" http://192.168.7.1:30080/cgi-bin/who)
    [ "$seen" = 10.244.1.1 ] && ok "nftables: NodePort from outside, the pod sees the node ($seen)" ||
        not_ok "nftables: NodePort from outside, the pod sees the node" "saw '$seen'"
    seen=$(masq_who "$POD" http://10.96.0.10/cgi-bin/who)
    [ "$seen" = 10.244.1.1 ] && ok "nftables: hairpin, the pod through its own service ($seen)" ||
        not_ok "nftables: hairpin, the pod through its own service" "saw '$seen'"
    seen=$(masq_who "$NODE" http://10.96.0.13/cgi-bin/who)
    case "$seen" in
        *refused*) ok "nftables: a service without endpoints is refused" ;;
        *) not_ok "nftables: a service without endpoints is refused" "saw '$seen'" ;;
    esac

    sed -i 's/^  type: NodePort$/  type: NodePort\n  externalTrafficPolicy: Local/' /tmp/nftm/web.yaml
    nft_proxy "--once with policy Local"
    seen=$(masq_who "$CLIENT" http://192.168.7.1:30080/cgi-bin/who)
    [ "$seen" = 192.168.7.2 ] && ok "nftables: NodePort with policy Local keeps the client ($seen)" ||
        not_ok "nftables: NodePort with policy Local keeps the client" "saw '$seen'"

    in_ns "$NODE" ./bin/tinylet proxy --proxy-mode=nftables --cleanup > /tmp/nft.out 2>&1
    rc=$?
    in_ns "$NODE" ./bin/tinylet nft list > /tmp/nft.list 2>&1
    lrc=$?
    # Nothing answers on the node port any more: no table is left to DNAT it.
    seen=$(masq_who "$CLIENT" http://192.168.7.1:30080/cgi-bin/who)
    if [ "$rc" -eq 0 ] && grep -q 'delete table ip kube-proxy' /tmp/nft.out && [ "$lrc" -eq 0 ] &&
        [ ! -s /tmp/nft.list ] && [ "$seen" != 192.168.7.2 ]; then
        ok "nftables: --cleanup leaves no kube-proxy table"
    else
        not_ok "nftables: --cleanup leaves no kube-proxy table" "exit $rc, list exit $lrc, saw '$seen'"
        cat /tmp/nft.out /tmp/nft.list
    fi
    masq_teardown
    rm -rf /tmp/nftm
}
