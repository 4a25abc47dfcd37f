//! Desired state vs current state → the minimal list of ops, sans I/O.
//!
//! The same function serves incremental syncs (current = what was last applied) and periodic
//! resyncs (current = a kernel dump), which is how drift caused by anyone else is repaired.
//! Virtual servers that are not ours are left alone: a server is ours when its address is
//! bound to the dummy interface (now or in the desired state) or is a node-port address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use super::table::{Op, State};

/// Ops that turn `current` into `desired`. Order: bind addresses, add/edit virtual servers
/// and their real servers, remove stale real servers and virtual servers, unbind addresses.
pub fn diff(desired: &State, current: &State, node_addresses: &BTreeSet<IpAddr>) -> Vec<Op> {
    let mut ops = Vec::new();
    for a in desired.addresses.difference(&current.addresses) {
        ops.push(Op::BindAddress(*a));
    }
    for (key, want) in &desired.services {
        match current.services.get(key) {
            None => {
                ops.push(Op::AddVirtual(*key, want.params));
                for (r, p) in &want.reals {
                    ops.push(Op::AddReal(*key, *r, *p));
                }
            }
            Some(have) => {
                if have.params != want.params {
                    ops.push(Op::EditVirtual(*key, want.params));
                }
                for (r, p) in &want.reals {
                    match have.reals.get(r) {
                        None => ops.push(Op::AddReal(*key, *r, *p)),
                        Some(hp) if hp != p => ops.push(Op::EditReal(*key, *r, *p)),
                        Some(_) => {}
                    }
                }
                for r in have.reals.keys() {
                    if !want.reals.contains_key(r) {
                        ops.push(Op::DelReal(*key, *r));
                    }
                }
            }
        }
    }
    for key in current.services.keys() {
        if !desired.services.contains_key(key) && ours(desired, current, node_addresses, &key.addr)
        {
            ops.push(Op::DelVirtual(*key));
        }
    }
    for a in current.addresses.difference(&desired.addresses) {
        ops.push(Op::UnbindAddress(*a));
    }
    ops
}

/// Is a virtual server on `a` ours to change: bound to the dummy interface (now or in the
/// desired state) or a node-port address?
fn ours(desired: &State, current: &State, node_addresses: &BTreeSet<IpAddr>, a: &IpAddr) -> bool {
    desired.addresses.contains(a) || current.addresses.contains(a) || node_addresses.contains(a)
}

/// The table once every op of `diff(desired, &current, node_addresses)` has been applied to
/// `current`: the desired virtual servers and addresses, and the servers of `current` that
/// are not ours. One clone of `desired` instead of applying op by op, which for a large table
/// costs ten times as much (one map insertion per op).
pub fn after(desired: &State, current: State, node_addresses: &BTreeSet<IpAddr>) -> State {
    let mut next = desired.clone();
    for (key, server) in &current.services {
        if !desired.services.contains_key(key)
            && !ours(desired, &current, node_addresses, &key.addr)
        {
            next.services.insert(*key, server.clone());
        }
    }
    next
}
