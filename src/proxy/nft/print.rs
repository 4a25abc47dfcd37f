//! What a [`super::diff::Programmed`] print keeps of a table's chains: a fingerprint of each
//! name and of its rules, 16 bytes a chain. A table of 10,000 services has some 30,000
//! chains; with their names (~45 bytes each, in a heap block each, in a tree) the print was
//! ~110 bytes a chain, the largest part of the proxy's memory after its records.
//!
//! Names are needed again only for chains to delete, and those are chains of services that
//! changed: the caller names them from the services' old pieces (see
//! [`super::diff::changes`]).

use std::hash::{BuildHasher, Hash};
use std::sync::OnceLock;

use super::model::Hook;

/// A 64-bit fingerprint of a value, keyed at random once per process: equal values always
/// print alike; two different values print alike with a chance of 2^-64.
pub fn fingerprint<T: Hash + ?Sized>(v: &T) -> u64 {
    static KEYS: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    KEYS.get_or_init(Default::default).hash_one(v)
}

/// The fingerprint a chain's name is kept as.
pub fn name_key(name: &str) -> u64 {
    fingerprint(name)
}

/// Chains by the fingerprint of their names: (name, rules) fingerprints in a sorted vector,
/// and the hooks of the few base chains beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chains {
    entries: Vec<(u64, u64)>,
    hooks: Vec<(u64, Hook)>,
}

impl Chains {
    /// From chains given by name, hook and rules' fingerprint.
    pub fn from_chains<'a>(chains: impl Iterator<Item = (&'a str, Option<Hook>, u64)>) -> Self {
        let mut c = Chains::default();
        for (name, hook, rules) in chains {
            let k = name_key(name);
            c.entries.push((k, rules));
            if let Some(h) = hook {
                c.hooks.push((k, h));
            }
        }
        c.entries.sort_unstable();
        // Two names of one fingerprint are kept once (a 2^-64 chance per pair): a lookup
        // of the other then finds it, and a commit built on that fails and starts over.
        c.entries.dedup_by_key(|e| e.0);
        c.entries.shrink_to_fit();
        c.hooks.sort_unstable_by_key(|h| h.0);
        c
    }

    fn find(&self, k: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&k, |e| e.0)
    }

    fn hook(&self, k: u64) -> Option<Hook> {
        let i = self.hooks.binary_search_by_key(&k, |h| h.0).ok()?;
        self.hooks.get(i).map(|h| h.1)
    }

    /// The hook and rules' fingerprint of the chain `name`.
    pub fn get(&self, name: &str) -> Option<(Option<Hook>, u64)> {
        let k = name_key(name);
        let i = self.find(k).ok()?;
        let rules = self.entries.get(i)?.1;
        Some((self.hook(k), rules))
    }

    /// Whether the chain of this name key is there.
    pub fn contains_key(&self, k: u64) -> bool {
        self.find(k).is_ok()
    }

    /// Set the chain `name`'s hook and rules' fingerprint, adding it when new.
    pub fn set(&mut self, name: &str, hook: Option<Hook>, rules: u64) {
        let k = name_key(name);
        match self.find(k) {
            Ok(i) => {
                if let Some(e) = self.entries.get_mut(i) {
                    e.1 = rules;
                }
            }
            Err(i) => {
                // Grow by a sixteenth, not double: the vector is the size of the table.
                if self.entries.len() == self.entries.capacity() {
                    self.entries.reserve_exact(self.entries.len() / 16 + 16);
                }
                self.entries.insert(i, (k, rules));
            }
        }
        match (self.hooks.binary_search_by_key(&k, |h| h.0), hook) {
            (Ok(i), Some(h)) => {
                if let Some(x) = self.hooks.get_mut(i) {
                    x.1 = h;
                }
            }
            (Ok(i), None) => {
                self.hooks.remove(i);
            }
            (Err(i), Some(h)) => self.hooks.insert(i, (k, h)),
            (Err(_), None) => {}
        }
    }

    /// Remove the chain `name` (if there).
    pub fn remove(&mut self, name: &str) {
        let k = name_key(name);
        if let Ok(i) = self.find(k) {
            self.entries.remove(i);
        }
        if let Ok(i) = self.hooks.binary_search_by_key(&k, |h| h.0) {
            self.hooks.remove(i);
        }
    }

    /// Number of chains.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No chains.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The name keys, in key order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.entries.iter().map(|e| e.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::nft::model::{ChainType, HookPoint};
    use std::collections::BTreeMap;

    /// A small deterministic generator for the model test.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn follows_a_map_through_sets_and_removes() {
        let hook = Hook {
            kind: ChainType::Nat,
            point: HookPoint::Output,
            priority: -100,
        };
        let mut model: BTreeMap<String, (Option<Hook>, u64)> = BTreeMap::new();
        let mut c = Chains::default();
        let mut s = 0x9e37_79b9_7f4a_7c15;
        let mut most = 0;
        for step in 0..20_000u64 {
            let name = format!("endpoint-{:04}__10.0.0.{}/80", next(&mut s) % 700, step % 3);
            let h = (next(&mut s) % 5 == 0).then_some(hook);
            if next(&mut s) % 3 == 0 {
                model.remove(&name);
                c.remove(&name);
            } else {
                model.insert(name.clone(), (h, step));
                c.set(&name, h, step);
            }
            most = most.max(c.len());
            if step % 997 == 0 {
                let want =
                    Chains::from_chains(model.iter().map(|(n, (h, v))| (n.as_str(), *h, *v)));
                assert_eq!(c, want, "step {step}");
            }
        }
        for (n, v) in &model {
            assert_eq!(c.get(n), Some(*v));
            assert!(c.contains_key(name_key(n)));
        }
        assert_eq!(c.get("nothing"), None);
        assert_eq!(c.len(), model.len());
        // Growth by a sixteenth keeps the vector close to its contents.
        assert!(c.entries.capacity() <= most + most / 8 + 32);
    }
}
