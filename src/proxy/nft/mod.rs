//! kube-proxy's nftables mode: our `ip`/`ip6 kube-proxy` tables over our own netlink layer.
//!
//! Layers: `model` (the table as values, and its `nft list` text), `catalog` (Services and
//! EndpointSlices reduced to what the ruleset reads), `ruleset` (those → tables, sans I/O), `diff` (last programmed table + new table → the
//! messages of one transaction, sans I/O; `print` packs what it keeps of the last table), `sync` (remembers what it programmed and sends
//! one batch per sync through a [`sync::Kernel`]), `lower` (model → netlink messages),
//! `readback` (the kernel's table → model, for `tinylet nft list`), `cmd` (wiring). Only our own tables are ever touched.
//! `ipvs_masq` is the IPVS mode's masquerading table, built on the same layers.

pub mod catalog;
pub mod cmd;
pub mod diff;
pub mod ipvs_masq;
pub mod lower;
pub mod model;
pub mod print;
pub mod readback;
pub mod ruleset;
pub mod sync;

#[cfg(test)]
mod tests;
