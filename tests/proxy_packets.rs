//! Real packets through the proxy: network namespaces made by the test (see
//! tests/common/netns.rs), `tinylet proxy` programming the node namespace, and real HTTP
//! connections from the node, from pods and from an outside client.

#[path = "common/netns.rs"]
mod netns;

use netns::Lab;

macro_rules! need_lab {
    () => {
        if !netns::available() {
            eprintln!("skipped: needs root, ip, nft and /usr/bin/busybox");
            return;
        }
    };
}

#[test]
fn lab_pods_answer_directly_from_node_and_client() {
    need_lab!();
    let lab = Lab::new(3).unwrap();
    for p in &lab.pods {
        let (name, peer) = lab.who(&lab.node, &p.ip, netns::POD_PORT).unwrap();
        assert_eq!(name, p.name);
        assert_eq!(peer, netns::NODE_BRIDGE_IP);
    }
    // A pod reaches another pod through the node (routed, not bridged).
    let (name, peer) = lab
        .who(&lab.pods[0].ns, &lab.pods[1].ip, netns::POD_PORT)
        .unwrap();
    assert_eq!(name, lab.pods[1].name);
    assert_eq!(peer, lab.pods[0].ip);
}
