//! Two tables → the messages of one transaction, sans I/O.
//!
//! A full sync replaces the table (create-if-missing, delete, create with everything) so the
//! kernel swaps it atomically; a partial sync touches only chains whose rules changed and
//! elements that changed, ordered so every reference exists when the kernel checks it: new
//! sets and chains first, then rules, then elements, then removals.
//!
//! The old side of a partial diff is a [`Programmed`]: what a table held, as names and
//! fingerprints instead of rules and verdicts, so the syncer need not keep a second copy of
//! every rule it programmed.

use std::collections::BTreeMap;

use super::model::{Chain, Family, Key, Rule, Set, SetKind, Table, Verdict};
use super::print::{fingerprint, name_key, Chains};

/// One message of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the table if missing (never fails when it exists).
    AddTable,
    /// Delete the table and everything in it.
    DelTable,
    /// Create a chain (base chains with their hook), without rules.
    AddChain(String, Chain),
    /// Remove every rule of a chain.
    FlushChain(String),
    /// Delete an (empty, unreferenced) chain.
    DelChain(String),
    /// Append a rule to a chain.
    AddRule(String, Rule),
    /// Create a set or map, without elements.
    AddSet(String, Set),
    /// Delete a set.
    DelSet(String),
    /// Add elements to a set or map.
    AddElements(String, Vec<(Key, Option<Verdict>)>),
    /// Delete elements.
    DelElements(String, Vec<Key>),
}

/// A transaction for one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: String,
    /// Messages in order.
    pub changes: Vec<Change>,
}

impl Transaction {
    /// Number of netlink messages it takes (elements of one set go in one message).
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// Nothing to send.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

fn empty_like(c: &Chain) -> Chain {
    Chain {
        hook: c.hook,
        rules: Vec::new(),
    }
}

/// A set the kernel does not have yet: created with the other new objects, its elements
/// added with the other elements.
fn new_set(name: &str, s: &Set, adds: &mut Vec<Change>, elements: &mut Vec<Change>) {
    adds.push(Change::AddSet(name.to_string(), Set::new(s.kind)));
    if !s.elements.is_empty() {
        let els = s.elements.iter().map(|(k, v)| (*k, v.clone())).collect();
        elements.push(Change::AddElements(name.to_string(), els));
    }
}

/// A set's element changes, deletions first: a changed element is deleted and re-added.
/// `gone` are the keys to delete; every element of `new` whose fingerprint differs from
/// the print's `printed` is added.
fn element_changes(
    name: &str,
    gone: Vec<Key>,
    new: &BTreeMap<Key, Option<Verdict>>,
    printed: &BTreeMap<Key, u64>,
    elements: &mut Vec<Change>,
) {
    let added: Vec<(Key, Option<Verdict>)> = new
        .iter()
        .filter(|(k, v)| printed.get(*k) != Some(&fingerprint(*v)))
        .map(|(k, v)| (*k, v.clone()))
        .collect();
    if !gone.is_empty() {
        elements.push(Change::DelElements(name.to_string(), gone));
    }
    if !added.is_empty() {
        elements.push(Change::AddElements(name.to_string(), added));
    }
}

fn create(t: &Table, changes: &mut Vec<Change>) {
    for (name, s) in &t.sets {
        changes.push(Change::AddSet(name.clone(), Set::new(s.kind)));
    }
    for (name, c) in &t.chains {
        changes.push(Change::AddChain(name.clone(), empty_like(c)));
    }
    for (name, c) in &t.chains {
        for r in &c.rules {
            changes.push(Change::AddRule(name.clone(), r.clone()));
        }
    }
    for (name, s) in &t.sets {
        if !s.elements.is_empty() {
            let els = s.elements.iter().map(|(k, v)| (*k, v.clone())).collect();
            changes.push(Change::AddElements(name.clone(), els));
        }
    }
}

/// Replace whatever table of this name exists with `t`, atomically.
pub fn full(t: &Table) -> Transaction {
    let mut changes = vec![Change::AddTable, Change::DelTable, Change::AddTable];
    create(t, &mut changes);
    Transaction {
        family: t.family,
        table: t.name.clone(),
        changes,
    }
}

/// [`full`], moving the rules and elements out of `t` instead of copying them: a full sync
/// of a large table holds one copy of it, not two.
pub fn into_full(t: Table) -> Transaction {
    let Table {
        family,
        name,
        chains,
        sets,
    } = t;
    let mut changes = vec![Change::AddTable, Change::DelTable, Change::AddTable];
    let mut elements = Vec::new();
    for (set, s) in sets {
        changes.push(Change::AddSet(set.clone(), Set::new(s.kind)));
        if !s.elements.is_empty() {
            elements.push(Change::AddElements(set, s.elements.into_iter().collect()));
        }
    }
    let mut rules = Vec::new();
    for (chain, c) in chains {
        changes.push(Change::AddChain(chain.clone(), empty_like(&c)));
        rules.extend(
            c.rules
                .into_iter()
                .map(|r| Change::AddRule(chain.clone(), r)),
        );
    }
    changes.extend(rules);
    changes.extend(elements);
    Transaction {
        family,
        table: name,
        changes,
    }
}

/// What a table held, compactly: each chain's name and rules as fingerprints, with its hook;
/// each set's kind and its elements' keys with a fingerprint of their verdicts. Everything a
/// partial diff needs of the old side, at a fraction of the table's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Programmed {
    family: Family,
    name: Box<str>,
    chains: Chains,
    sets: BTreeMap<Box<str>, (SetKind, BTreeMap<Key, u64>)>,
}

impl Programmed {
    /// The print of `t`.
    pub fn of(t: &Table) -> Programmed {
        Programmed {
            family: t.family,
            name: t.name.as_str().into(),
            chains: Chains::from_chains(
                t.chains
                    .iter()
                    .map(|(n, c)| (n.as_str(), c.hook, fingerprint(&c.rules))),
            ),
            sets: t
                .sets
                .iter()
                .map(|(n, s)| {
                    let els = s.elements.iter().map(|(k, v)| (*k, fingerprint(v)));
                    (n.as_str().into(), (s.kind, els.collect()))
                })
                .collect(),
        }
    }

    /// The table's family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// Number of chains.
    pub fn chain_count(&self) -> usize {
        self.chains.len()
    }

    /// Number of elements in all sets.
    pub fn element_count(&self) -> usize {
        self.sets.values().map(|(_, e)| e.len()).sum()
    }
}

/// Remove the table (if it exists).
pub fn remove(family: Family, name: &str) -> Transaction {
    Transaction {
        family,
        table: name.to_string(),
        changes: vec![Change::AddTable, Change::DelTable],
    }
}

/// The messages that turn `old` (what we programmed last) into `new`; `None` when the change
/// cannot be made in place (a base chain's hook or a set's type changed): do a full sync.
pub fn partial(old: &Table, new: &Table) -> Option<Transaction> {
    let names: Vec<&str> = old.chains.keys().map(String::as_str).collect();
    changes(&Programmed::of(old), new, &names)
}

/// [`partial`] from the print of what was programmed last. The print keeps no chain names,
/// so a chain to delete is named from `names` (the chains the services that changed had);
/// `None` as well when one of them is not there.
pub fn changes(old: &Programmed, new: &Table, names: &[&str]) -> Option<Transaction> {
    if old.family != new.family || *old.name != *new.name {
        return None;
    }
    let mut adds = Vec::new();
    let mut rules = Vec::new();
    let mut elements = Vec::new();
    let mut removals = Vec::new();
    for (name, s) in &new.sets {
        match old.sets.get(name.as_str()) {
            None => new_set(name, s, &mut adds, &mut elements),
            Some((kind, _)) if *kind != s.kind => return None,
            Some((_, o)) => {
                let gone: Vec<Key> = o
                    .iter()
                    .filter(|(k, p)| s.elements.get(*k).map(fingerprint) != Some(**p))
                    .map(|(k, _)| *k)
                    .collect();
                element_changes(name, gone, &s.elements, o, &mut elements);
            }
        }
    }
    for (name, c) in &new.chains {
        match old.chains.get(name) {
            None => {
                adds.push(Change::AddChain(name.clone(), empty_like(c)));
                rules.extend(
                    c.rules
                        .iter()
                        .map(|r| Change::AddRule(name.clone(), r.clone())),
                );
            }
            Some((hook, _)) if hook != c.hook => return None,
            Some((_, print)) if print != fingerprint(&c.rules) => {
                rules.push(Change::FlushChain(name.clone()));
                rules.extend(
                    c.rules
                        .iter()
                        .map(|r| Change::AddRule(name.clone(), r.clone())),
                );
            }
            Some(_) => {}
        }
    }
    // Removed chains are flushed before any is deleted: they may jump to each other.
    let kept: Vec<u64> = {
        let mut k: Vec<u64> = new.chains.keys().map(|n| name_key(n)).collect();
        k.sort_unstable();
        k
    };
    let gone = old
        .chains
        .keys()
        .filter(|k| kept.binary_search(k).is_err())
        .count();
    let mut gone_chains: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !new.chains.contains_key(*n) && old.chains.contains_key(name_key(n)))
        .collect();
    gone_chains.sort_unstable();
    gone_chains.dedup();
    if gone_chains.len() != gone {
        return None;
    }
    for n in &gone_chains {
        removals.push(Change::FlushChain((*n).to_string()));
    }
    for n in &gone_chains {
        removals.push(Change::DelChain((*n).to_string()));
    }
    for n in old.sets.keys().filter(|n| !new.sets.contains_key(&***n)) {
        removals.push(Change::DelSet(n.to_string()));
    }
    let mut changes = adds;
    changes.extend(rules);
    changes.extend(elements);
    changes.extend(removals);
    Some(Transaction {
        family: new.family,
        table: new.name.clone(),
        changes,
    })
}

/// The messages that bring some services' pieces from `old` (what they were when the table
/// printed as `print` was programmed) to `new` (what they are now), both
/// [`super::ruleset::pieces_table`]s; the same transaction [`changes`] would make from the
/// whole new table, when nothing else changed. Only the names and keys of those pieces are
/// looked at, so the cost follows the services that changed, not the table.
///
/// `None` when it cannot be done piece by piece: a new piece takes a name or key that
/// belongs to something else in `print`, an old piece is not in `print` as it should be, or
/// a chain's hook or a set's type changed. The caller then diffs whole tables.
pub fn service_changes(print: &Programmed, old: &Table, new: &Table) -> Option<Transaction> {
    if print.family != new.family
        || *print.name != *new.name
        || old.family != new.family
        || old.name != new.name
    {
        return None;
    }
    let mut adds = Vec::new();
    let mut rules = Vec::new();
    let mut elements = Vec::new();
    let mut removals = Vec::new();
    // Sets and elements in name order, as `changes` visits them.
    let mut names: Vec<&String> = old.sets.keys().chain(new.sets.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (o, n) = (old.sets.get(name), new.sets.get(name));
        let printed = print.sets.get(name.as_str());
        match (o, n, printed) {
            // Ours before, and still: its elements in scope.
            (Some(o), Some(n), Some((kind, p))) => {
                if *kind != n.kind || o.kind != n.kind {
                    return None;
                }
                // Every old key is in the print; a new key in the print that was not ours
                // belongs to another service.
                if o.elements.keys().any(|k| !p.contains_key(k))
                    || n.elements
                        .keys()
                        .any(|k| p.contains_key(k) && !o.elements.contains_key(k))
                {
                    return None;
                }
                let gone: Vec<Key> = o
                    .elements
                    .keys()
                    .filter(|k| n.elements.get(*k).map(fingerprint) != p.get(*k).copied())
                    .copied()
                    .collect();
                element_changes(name, gone, &n.elements, p, &mut elements);
            }
            // New: must not exist yet.
            (None, Some(n), None) => new_set(name, n, &mut adds, &mut elements),
            // Gone: was ours, with exactly the elements it had.
            (Some(o), None, Some((_, p))) => {
                if p.len() != o.elements.len() || o.elements.keys().any(|k| !p.contains_key(k)) {
                    return None;
                }
                removals.push(Change::DelSet(name.clone()));
            }
            _ => return None,
        }
    }
    let mut chain_names: Vec<&String> = old.chains.keys().chain(new.chains.keys()).collect();
    chain_names.sort();
    chain_names.dedup();
    let mut gone_chains = Vec::new();
    for name in chain_names {
        let (o, n) = (old.chains.get(name), new.chains.get(name));
        let printed = print.chains.get(name);
        match (o, n, printed) {
            (None, Some(c), None) => {
                adds.push(Change::AddChain(name.clone(), empty_like(c)));
                rules.extend(
                    c.rules
                        .iter()
                        .map(|r| Change::AddRule(name.clone(), r.clone())),
                );
            }
            (Some(_), Some(c), Some((hook, print))) => {
                if hook != c.hook {
                    return None;
                }
                if print != fingerprint(&c.rules) {
                    rules.push(Change::FlushChain(name.clone()));
                    rules.extend(
                        c.rules
                            .iter()
                            .map(|r| Change::AddRule(name.clone(), r.clone())),
                    );
                }
            }
            (Some(_), None, Some(_)) => gone_chains.push(name),
            _ => return None,
        }
    }
    // As in `changes`: removed chains are flushed before any is deleted, and sets go last.
    let set_removals = std::mem::take(&mut removals);
    for n in &gone_chains {
        removals.push(Change::FlushChain((*n).clone()));
    }
    for n in &gone_chains {
        removals.push(Change::DelChain((*n).clone()));
    }
    removals.extend(set_removals);
    let mut changes = adds;
    changes.extend(rules);
    changes.extend(elements);
    changes.extend(removals);
    Some(Transaction {
        family: new.family,
        table: new.name.clone(),
        changes,
    })
}

impl Programmed {
    /// Update the print in place after [`service_changes`]`(self, old, new)` was committed:
    /// the names and keys of `old` go, those of `new` come.
    pub fn apply(&mut self, old: &Table, new: &Table) {
        for name in old.chains.keys() {
            if !new.chains.contains_key(name) {
                self.chains.remove(name);
            }
        }
        for (name, c) in &new.chains {
            self.chains.set(name, c.hook, fingerprint(&c.rules));
        }
        for (name, o) in &old.sets {
            match (new.sets.get(name), self.sets.get_mut(name.as_str())) {
                (None, _) => {
                    self.sets.remove(name.as_str());
                }
                (Some(n), Some((_, p))) => {
                    for k in o.elements.keys() {
                        if !n.elements.contains_key(k) {
                            p.remove(k);
                        }
                    }
                }
                (Some(_), None) => {}
            }
        }
        for (name, n) in &new.sets {
            let els = n.elements.iter().map(|(k, v)| (*k, fingerprint(v)));
            match self.sets.get_mut(name.as_str()) {
                Some((_, p)) => p.extend(els),
                None => {
                    self.sets
                        .insert(name.as_str().into(), (n.kind, els.collect()));
                }
            }
        }
    }
}
