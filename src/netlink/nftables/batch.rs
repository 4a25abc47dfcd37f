//! One atomic nf_tables transaction as bytes: NFNL_MSG_BATCH_BEGIN, the messages, then
//! NFNL_MSG_BATCH_END, each with its own sequence number.
//!
//! Owns the batch framing and the map from a sequence number back to the message that
//! carried it, so a kernel error can name its object. Descriptions are made only when an
//! error asks for one (the message is decoded again from the batch's own bytes): a sync of
//! tens of thousands of messages builds no strings. No I/O here.

use super::super::wire::{messages, Builder, NlMsg, WireError, NLM_F_ACK, NLM_F_REQUEST};
use super::msg::Msg;
use super::NFNL_SUBSYS_NFTABLES;
use super::{put_be32, NFNETLINK_V0, NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END};

/// Batch attribute: the generation the batch was computed against (`NFNL_BATCH_GENID`).
pub const NFNL_BATCH_GENID: u16 = 1;

/// Builds a batch; [`Batch::finish`] closes it.
#[derive(Debug)]
pub struct Batch {
    b: Builder,
    begin_seq: u32,
    next_seq: u32,
    offsets: Vec<u32>,
    ack: bool,
}

fn emit_marker(b: &mut Builder, kind: u16, seq: u32, genid: Option<u32>) {
    let m = b.begin_msg(kind, NLM_F_REQUEST, seq);
    let res = (NFNL_SUBSYS_NFTABLES as u16).to_be_bytes();
    b.put_bytes(&[0, NFNETLINK_V0, res[0], res[1]]);
    if let Some(g) = genid {
        put_be32(b, NFNL_BATCH_GENID, g);
    }
    b.end_msg(m);
}

impl Batch {
    /// Start a batch whose BATCH_BEGIN carries sequence number `first_seq`.
    pub fn new(first_seq: u32) -> Self {
        Batch::start(first_seq, None)
    }

    /// Start a batch the kernel refuses (ERESTART) unless the ruleset is still at
    /// generation `genid`.
    pub fn with_genid(first_seq: u32, genid: u32) -> Self {
        Batch::start(first_seq, Some(genid))
    }

    fn start(first_seq: u32, genid: Option<u32>) -> Self {
        let mut b = Builder::new();
        emit_marker(&mut b, NFNL_MSG_BATCH_BEGIN, first_seq, genid);
        Batch {
            b,
            begin_seq: first_seq,
            next_seq: first_seq.wrapping_add(1),
            offsets: Vec::new(),
            ack: true,
        }
    }

    /// Whether messages pushed from now on ask for an ACK (the default). Without, the kernel
    /// still answers every message it rejects, and a large batch needs no room for ACKs.
    pub fn set_ack(&mut self, ack: bool) {
        self.ack = ack;
    }

    /// Append a message; returns its sequence number.
    pub fn push(&mut self, m: &Msg) -> u32 {
        let seq = self.next_seq;
        let at = self.b.len();
        self.offsets.push(at as u32);
        m.emit(&mut self.b, seq);
        if !self.ack {
            self.b.clear_flag(at, NLM_F_ACK);
        }
        self.next_seq = seq.wrapping_add(1);
        seq
    }

    /// Number of messages between the markers.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// No messages yet.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Close the batch with BATCH_END.
    pub fn finish(mut self) -> BatchMsgs {
        let end_seq = self.next_seq;
        emit_marker(&mut self.b, NFNL_MSG_BATCH_END, end_seq, None);
        BatchMsgs {
            bytes: self.b.into_bytes(),
            begin_seq: self.begin_seq,
            end_seq,
            offsets: self.offsets,
            ack: self.ack,
        }
    }
}

/// A finished batch: its bytes and where each message sits in them.
#[derive(Debug, Clone)]
pub struct BatchMsgs {
    bytes: Vec<u8>,
    begin_seq: u32,
    end_seq: u32,
    offsets: Vec<u32>,
    ack: bool,
}

impl BatchMsgs {
    /// Did the last messages pushed ask for an ACK each?
    pub fn acked(&self) -> bool {
        self.ack
    }

    /// The bytes to send in one sendmsg.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Sequence number of BATCH_BEGIN.
    pub fn begin_seq(&self) -> u32 {
        self.begin_seq
    }

    /// Sequence number of BATCH_END (the last one the batch uses).
    pub fn end_seq(&self) -> u32 {
        self.end_seq
    }

    /// Number of messages between the markers.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// No messages between the markers.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Index of the message that carried `seq`.
    pub fn index_of(&self, seq: u32) -> Option<usize> {
        let i = seq.wrapping_sub(self.begin_seq.wrapping_add(1)) as usize;
        (i < self.offsets.len()).then_some(i)
    }

    /// The i-th message, decoded again from the batch's bytes.
    pub fn message(&self, i: usize) -> Option<Msg> {
        let at = *self.offsets.get(i)? as usize;
        let m = messages(self.bytes.get(at..)?).next()?.ok()?;
        Msg::parse(&m).ok().flatten()
    }

    /// How an error for `seq` names its object ("add chain ip kube-proxy svc-1").
    pub fn describe(&self, seq: u32) -> String {
        if seq == self.begin_seq {
            return "begin nf_tables batch".into();
        }
        match self.index_of(seq).and_then(|i| self.message(i)) {
            Some(m) => m.describe(),
            None => format!("nf_tables batch message seq {seq}"),
        }
    }
}

/// Decode a whole batch (ours or a capture of `nft`): the messages between the markers, with
/// their sequence numbers. Fails on framing errors and on messages this model cannot read.
pub fn parse_batch(bytes: &[u8]) -> Result<Vec<(u32, Msg)>, WireError> {
    let mut out = Vec::new();
    for m in messages(bytes) {
        let m: NlMsg<&[u8]> = m?;
        if m.msg_type() == NFNL_MSG_BATCH_BEGIN || m.msg_type() == NFNL_MSG_BATCH_END {
            continue;
        }
        match Msg::parse(&m)? {
            Some(msg) => out.push((m.seq(), msg)),
            None => return Err(WireError::BadAttribute(m.msg_type())),
        }
    }
    Ok(out)
}

/// The generation id a BATCH_BEGIN carries, if any.
pub fn batch_genid(m: &NlMsg<&[u8]>) -> Option<u32> {
    if m.msg_type() != NFNL_MSG_BATCH_BEGIN {
        return None;
    }
    let attrs = m.payload().get(super::NFGENMSG_LEN..)?;
    super::super::wire::attrs(attrs)
        .flatten()
        .find(|a| a.kind == NFNL_BATCH_GENID)
        .and_then(|a| super::be32(&a).ok())
}

#[cfg(test)]
mod tests {
    use super::super::msg::{Chain, ChainType, Hook, Table};
    use super::super::Family;
    use super::*;

    #[test]
    fn batch_frames_messages_and_names_them_by_seq() {
        let mut b = Batch::with_genid(500, 9);
        let t = Msg::NewTable(Table::new(Family::Ip, "kube-proxy"));
        let c = Msg::NewChain(Chain::base(
            Family::Ip,
            "kube-proxy",
            "nat-output",
            ChainType::Nat,
            Hook::Output,
            -100,
        ));
        assert_eq!(b.push(&t), 501);
        assert_eq!(b.push(&c), 502);
        let done = b.finish();
        assert_eq!(done.end_seq(), 503);
        let all: Vec<_> = messages(done.bytes()).map(|m| m.unwrap()).collect();
        assert_eq!(all.len(), 4);
        assert_eq!(all[0].msg_type(), NFNL_MSG_BATCH_BEGIN);
        assert_eq!(&all[0].payload()[..4], &[0, 0, 0, 10]);
        assert_eq!(batch_genid(&all[0]), Some(9));
        assert_eq!(all[3].msg_type(), NFNL_MSG_BATCH_END);
        assert_eq!(all[3].seq(), 503);
        assert_eq!(parse_batch(done.bytes()).unwrap(), vec![(501, t), (502, c)]);
        assert_eq!(done.describe(502), "add chain ip kube-proxy nat-output");
        assert_eq!(done.describe(500), "begin nf_tables batch");
        assert_eq!(done.index_of(503), None);
        assert!(done.describe(9999).contains("9999"));
        assert!(done.acked());
        assert!(all[1].flags() & NLM_F_ACK != 0);

        let mut quiet = Batch::new(1);
        quiet.set_ack(false);
        quiet.push(&Msg::flush_table(Family::Ip, "kube-proxy"));
        let quiet = quiet.finish();
        let m = messages(quiet.bytes()).nth(1).unwrap().unwrap();
        assert_eq!(m.flags() & NLM_F_ACK, 0);
        assert!(!quiet.acked());
        assert_eq!(quiet.describe(2), "flush table ip kube-proxy");
    }
}
