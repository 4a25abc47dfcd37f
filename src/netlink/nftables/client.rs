//! nf_tables transactions over one NETLINK_NETFILTER socket: commit a batch, read the
//! generation, dump a table back.
//!
//! Owns the pairing of kernel ACKs and errors with the batch messages that caused them. What
//! to put in a batch is `proxy`'s business; encoding is `msg`/`batch`'s.

use nix::errno::Errno;

use super::super::socket::{Counters, Kind, Socket};
use super::super::wire::NlMsg;
use super::super::Error;
use super::batch::{Batch, BatchMsgs};
use super::msg::{Chain, Gen, ListKind, Msg, Rule, Set, SetElem, Table};
use super::Family;

/// Everything one table holds, read back with one dump request per object kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDump {
    /// The table, if it exists.
    pub table: Option<Table>,
    /// Its chains, in kernel order.
    pub chains: Vec<Chain>,
    /// Its sets and maps.
    pub sets: Vec<Set>,
    /// Its rules, in kernel order (chain by chain).
    pub rules: Vec<Rule>,
}

/// An nf_tables socket.
#[derive(Debug)]
pub struct Nftables {
    sock: Socket,
    ack_each: bool,
}

fn malformed(op: String) -> impl Fn(super::super::wire::WireError) -> Error {
    move |source| Error::Malformed {
        op: op.clone(),
        source,
    }
}

impl Nftables {
    /// Open a NETLINK_NETFILTER socket.
    pub fn open() -> Result<Self, Error> {
        Ok(Nftables {
            sock: Socket::open(Kind::Netfilter)?,
            ack_each: true,
        })
    }

    /// Messages and sendmsg calls so far.
    pub fn counters(&self) -> Counters {
        self.sock.counters()
    }

    /// Whether batches built by [`Nftables::batch`] ask an ACK for every message (the
    /// default, as `nft` does). Without, the kernel still reports every error.
    pub fn set_ack_each(&mut self, on: bool) {
        self.ack_each = on;
    }

    /// A new batch numbered from this socket's next sequence number.
    pub fn batch(&self) -> Batch {
        let mut b = Batch::new(self.sock.peek_seq());
        b.set_ack(self.ack_each);
        b
    }

    /// A new batch the kernel commits only if the ruleset is still at generation `genid`.
    pub fn batch_at(&self, genid: u32) -> Batch {
        let mut b = Batch::with_genid(self.sock.peek_seq(), genid);
        b.set_ack(self.ack_each);
        b
    }

    /// Commit a batch atomically. On failure nothing was applied and the error names the
    /// first rejected message's object ("add chain ip kube-proxy svc-x: No such file or
    /// directory"); [`Nftables::commit_all`] returns every rejected message.
    pub fn commit(&mut self, batch: &BatchMsgs) -> Result<(), Error> {
        let mut errors = self.commit_all(batch)?;
        if errors.is_empty() {
            return Ok(());
        }
        let more = errors.len() - 1;
        let (_, first) = errors.swap_remove(0);
        Err(match (first, more) {
            (e, 0) => e,
            (Error::Kernel { op, errno }, n) => Error::Kernel {
                op: format!("{op} (and {n} more rejected in the batch)"),
                errno,
            },
            (e, _) => e,
        })
    }

    /// Commit a batch; returns each rejected message's index (None for the batch itself,
    /// e.g. a generation mismatch) with its error. Empty means committed. An `Err` means the
    /// replies could not all be read (the batch may or may not have been applied: compare
    /// [`Nftables::generation`] with the one before).
    pub fn commit_all(&mut self, batch: &BatchMsgs) -> Result<Vec<(Option<usize>, Error)>, Error> {
        let mut errors = Vec::new();
        let op = || {
            format!(
                "commit nf_tables batch of {} messages ({}...)",
                batch.len(),
                batch.describe(batch.begin_seq().wrapping_add(1))
            )
        };
        let acks = if batch.acked() { batch.len() } else { 0 };
        self.sock.send_batch(
            batch.bytes(),
            batch.len(),
            batch.end_seq(),
            acks,
            &op,
            &mut |seq, code| {
                if code == 0 {
                    return;
                }
                let errno = Errno::from_raw(code.saturating_neg());
                let index = batch.index_of(seq);
                let op = if seq == batch.begin_seq() && errno == Errno::ERESTART {
                    "commit nf_tables batch: the ruleset generation changed".to_string()
                } else {
                    batch.describe(seq)
                };
                errors.push((index, Error::Kernel { op, errno }));
            },
        )?;
        Ok(errors)
    }

    /// Build and commit a batch of `msgs`.
    pub fn apply(&mut self, msgs: &[Msg]) -> Result<(), Error> {
        let mut b = self.batch();
        for m in msgs {
            b.push(m);
        }
        self.commit(&b.finish())
    }

    fn list(&mut self, req: &Msg, on: &mut dyn FnMut(Msg)) -> Result<(), Error> {
        let op = || req.describe();
        let dump = req.is_dump();
        self.sock
            .transact(&|b, seq| req.emit(b, seq), dump, &op, &mut |m: &NlMsg<
                &[u8],
            >| {
                if let Some(msg) = Msg::parse(m).map_err(malformed(op()))? {
                    on(msg);
                }
                Ok(())
            })
    }

    /// The ruleset generation id.
    pub fn generation(&mut self) -> Result<u32, Error> {
        let req = Msg::List {
            kind: ListKind::Gen,
            family: Family::Unknown(0),
            table: None,
            set: None,
        };
        let mut gen: Option<Gen> = None;
        self.list(&req, &mut |m| {
            if let Msg::NewGen(g) = m {
                gen = Some(g);
            }
        })?;
        gen.map(|g| g.id).ok_or(Error::Incomplete {
            op: req.describe(),
            reason: "no generation in the reply",
        })
    }

    fn dump(
        &mut self,
        kind: ListKind,
        family: Family,
        table: Option<&str>,
        set: Option<&str>,
    ) -> Result<Vec<Msg>, Error> {
        let req = Msg::List {
            kind,
            family,
            table: table.map(str::to_string),
            set: set.map(str::to_string),
        };
        let mut out = Vec::new();
        self.list(&req, &mut |m| out.push(m))?;
        Ok(out)
    }

    /// Every table of `family` (Family::Unknown(0) for all families).
    pub fn tables(&mut self, family: Family) -> Result<Vec<Table>, Error> {
        let all = self.dump(ListKind::Tables, family, None, None)?;
        Ok(all
            .into_iter()
            .filter_map(|m| match m {
                Msg::NewTable(t) => Some(t),
                _ => None,
            })
            .collect())
    }

    /// A table's chains, sets and rules: three dump requests, whatever the table holds.
    pub fn dump_table(&mut self, family: Family, table: &str) -> Result<TableDump, Error> {
        let mut d = TableDump {
            table: self
                .tables(family)?
                .into_iter()
                .find(|t| t.name == table && t.family == family),
            ..TableDump::default()
        };
        if d.table.is_none() {
            return Ok(d);
        }
        let mine = |f: Family, t: &str| f == family && t == table;
        for m in self.dump(ListKind::Chains, family, Some(table), None)? {
            if let Msg::NewChain(c) = m {
                if mine(c.family, &c.table) {
                    d.chains.push(c);
                }
            }
        }
        for m in self.dump(ListKind::Sets, family, Some(table), None)? {
            if let Msg::NewSet(s) = m {
                if mine(s.family, &s.table) {
                    d.sets.push(s);
                }
            }
        }
        for m in self.dump(ListKind::Rules, family, Some(table), None)? {
            if let Msg::NewRule(r) = m {
                if mine(r.family, &r.table) {
                    d.rules.push(r);
                }
            }
        }
        Ok(d)
    }

    /// The elements of one set (the kernel lists elements only set by set).
    pub fn elements(
        &mut self,
        family: Family,
        table: &str,
        set: &str,
    ) -> Result<Vec<SetElem>, Error> {
        let mut out = Vec::new();
        for m in self.dump(ListKind::Elems, family, Some(table), Some(set))? {
            if let Msg::NewElems(e) = m {
                out.extend(e.elems);
            }
        }
        Ok(out)
    }
}
