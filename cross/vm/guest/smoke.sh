# Smoke payload: proves the VM machinery (modules, netlink, ipvsadm) without tinylet binaries.
. ./lib.sh
ipvsadm -A -t 10.0.0.1:80 -s rr && ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.1:8080 -m &&
    ipvsadm -a -t 10.0.0.1:80 -r 10.1.0.2:8080 -m -w 3
got=$(ipvsadm -Ln | normalize_listing)
want="TCP 10.0.0.1:80 rr -> 10.1.0.1:8080 Masq 1
TCP 10.0.0.1:80 rr -> 10.1.0.2:8080 Masq 3"
[ "$got" = "$want" ] && ok "ipvsadm add service + 2 destinations" || not_ok "ipvsadm listing" "$got"
ipvsadm -C && [ -z "$(ipvsadm -Ln | normalize_listing)" ] && ok "ipvsadm flush" || not_ok "ipvsadm flush"
ip link add kube-ipvs0 type dummy && ip addr add 10.96.0.1/32 dev kube-ipvs0 &&
    ip addr show kube-ipvs0 | grep -q 10.96.0.1/32 && ok "dummy interface" || not_ok "dummy interface"
ip link del kube-ipvs0
summary
