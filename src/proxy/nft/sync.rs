//! One batch per sync: remembers the tables it programmed last and sends only the difference.
//!
//! A resync with nothing changed sends nothing and lists nothing: the comparison is against
//! our own last-programmed model, kept as a [`Programmed`] print (names and fingerprints)
//! rather than as tables. To notice someone else editing our tables, a periodic
//! resync asks the kernel for its ruleset generation (one request) and replaces our tables
//! when it moved since our last commit.
//!
//! A change can also come as the pieces of the services that changed
//! ([`NftSyncer::sync_services`]): only those names and keys are compared with the print,
//! which is then updated in place, so the work follows the change rather than the table.

use std::collections::{BTreeMap, BTreeSet};

use super::diff::{changes, into_full, remove, service_changes, Programmed, Transaction};
use super::model::{Family, Table};
use super::ruleset::{ServiceDelta, TABLE};

/// The kernel side of a sync.
pub trait Kernel {
    /// Send `txs` as ONE atomic batch.
    fn commit(&mut self, txs: &[Transaction]) -> Result<(), String>;
    /// The ruleset generation id, when the kernel side can tell.
    fn generation(&mut self) -> Result<Option<u32>, String> {
        Ok(None)
    }
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing differed: no message sent.
    Unchanged,
    /// Only the differences were sent.
    Partial {
        /// Messages in the batch.
        messages: usize,
    },
    /// Our tables were replaced.
    Full {
        /// Messages in the batch.
        messages: usize,
    },
}

/// Drives a [`Kernel`] towards desired tables.
#[derive(Debug)]
pub struct NftSyncer<K: Kernel> {
    kernel: K,
    name: String,
    last: BTreeMap<Family, Programmed>,
    last_generation: Option<u32>,
    /// Batches committed so far.
    pub batches: u64,
}

impl<K: Kernel> NftSyncer<K> {
    /// A syncer whose first sync replaces our `kube-proxy` tables.
    pub fn new(kernel: K) -> Self {
        Self::named(kernel, TABLE)
    }

    /// A syncer for our tables called `name` (the IPVS mode's masquerading table).
    pub fn named(kernel: K, name: &str) -> Self {
        NftSyncer {
            kernel,
            name: name.to_string(),
            last: BTreeMap::new(),
            last_generation: None,
            batches: 0,
        }
    }

    /// The kernel side.
    pub fn kernel(&mut self) -> &mut K {
        &mut self.kernel
    }

    /// Copy the prints into new memory and free the old (see
    /// [`super::catalog::LiveCatalog::compact`]): a full sync makes them between its tables.
    pub fn compact(&mut self) {
        self.last = self.last.clone();
    }

    /// Prints of the tables programmed last (empty until a sync succeeded).
    pub fn programmed(&self) -> impl Iterator<Item = &Programmed> {
        self.last.values()
    }

    /// Bring the kernel to `tables`. `resync` also checks that nobody changed the ruleset
    /// since our last commit (and replaces our tables if someone did).
    pub fn sync(&mut self, tables: Vec<Table>, resync: bool) -> Result<Outcome, String> {
        self.sync_naming(tables, resync, &[])
    }

    /// [`NftSyncer::sync`], naming the chains that may have to go (those the services that
    /// changed had: the print keeps no names). A table whose gone chains are not all named
    /// is replaced whole.
    pub fn sync_naming(
        &mut self,
        tables: Vec<Table>,
        resync: bool,
        names: &[&str],
    ) -> Result<Outcome, String> {
        let mut drift = false;
        if resync && !self.last.is_empty() {
            if let Some(g) = self.kernel.generation()? {
                drift = Some(g) != self.last_generation;
            }
        }
        let mut txs: Vec<Transaction> = Vec::new();
        // Prints of the tables replaced whole; tables changed in place are printed once
        // committed, and an unchanged table keeps its print (a resync with nothing changed
        // allocates none).
        let mut prints = BTreeMap::new();
        let mut changed = Vec::new();
        let mut families = BTreeSet::new();
        let mut any_full = false;
        for t in tables {
            families.insert(t.family);
            let tx = match (drift, self.last.get(&t.family)) {
                (false, Some(old)) => changes(old, &t, names),
                _ => None,
            };
            match tx {
                Some(tx) if tx.is_empty() => {}
                Some(tx) => {
                    txs.push(tx);
                    changed.push(t);
                }
                None => {
                    any_full = true;
                    prints.insert(t.family, Programmed::of(&t));
                    txs.push(into_full(t));
                }
            }
        }
        // A family we no longer program loses its table.
        for f in self.last.keys() {
            if !families.contains(f) {
                txs.push(remove(*f, &self.name));
            }
        }
        if txs.is_empty() {
            return Ok(Outcome::Unchanged);
        }
        let messages = self.commit(txs)?;
        for t in &changed {
            prints.insert(t.family, Programmed::of(t));
        }
        drop(changed);
        for f in families {
            if let (false, Some(p)) = (prints.contains_key(&f), self.last.remove(&f)) {
                prints.insert(f, p);
            }
        }
        self.last = prints;
        self.last_generation = self.kernel.generation().unwrap_or(None);
        Ok(if any_full {
            Outcome::Full { messages }
        } else {
            Outcome::Partial { messages }
        })
    }

    /// Bring the kernel from what was programmed last to the same tables with some
    /// services' pieces changed, `deltas` (one per family, at most), looking only at those
    /// pieces: the cost follows the services that changed. The print is updated in place.
    ///
    /// `Ok(None)` when that cannot be done piece by piece (no table programmed yet in a
    /// family, or a piece's name or key is taken by something else): nothing was sent, and
    /// the caller syncs whole tables instead. A failed commit forgets what was programmed,
    /// as [`NftSyncer::sync`] does, so the next sync replaces our tables.
    pub fn sync_services(&mut self, deltas: &[ServiceDelta]) -> Result<Option<Outcome>, String> {
        let mut txs = Vec::new();
        for d in deltas {
            let Some(print) = self.last.get(&d.new.family) else {
                return Ok(None);
            };
            match service_changes(print, &d.old, &d.new) {
                Some(tx) if tx.is_empty() => {}
                Some(tx) => txs.push(tx),
                None => return Ok(None),
            }
        }
        if txs.is_empty() {
            return Ok(Some(Outcome::Unchanged));
        }
        let messages = self.commit(txs)?;
        for d in deltas {
            if let Some(print) = self.last.get_mut(&d.new.family) {
                print.apply(&d.old, &d.new);
            }
        }
        self.last_generation = self.kernel.generation().unwrap_or(None);
        Ok(Some(Outcome::Partial { messages }))
    }

    /// Send `txs` as one batch; the number of messages it held. After a failed commit it is
    /// unknown what the kernel holds, so the print is forgotten and the next sync replaces
    /// our tables.
    fn commit(&mut self, txs: Vec<Transaction>) -> Result<usize, String> {
        let messages = txs.iter().map(Transaction::len).sum();
        let committed = self.kernel.commit(&txs);
        drop(txs);
        if let Err(e) = committed {
            self.last.clear();
            return Err(e);
        }
        self.batches += 1;
        Ok(messages)
    }

    /// Remove our tables in both families (one batch); forget what was programmed.
    pub fn cleanup(&mut self) -> Result<(), String> {
        self.last.clear();
        self.kernel.commit(&[
            remove(Family::Ip, &self.name),
            remove(Family::Ip6, &self.name),
        ])
    }
}
