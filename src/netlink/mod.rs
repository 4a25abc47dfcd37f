//! Netlink: wire format, generic netlink, IPVS and rtnetlink over one socket.
