//! Netlink framing: zero-copy views over message headers and attributes, and a builder that
//! emits them.
//!
//! Owns the byte layout shared by every netlink family (nlmsghdr, nlattr, 4-byte alignment,
//! nesting). Knows nothing of IPVS or routing; never does I/O. Parsing never panics.

use std::fmt;

/// Length of `struct nlmsghdr`.
pub const HDR_LEN: usize = 16;
/// Length of `struct nlattr`.
pub const ATTR_HDR_LEN: usize = 4;

/// Message type: no-op.
pub const NLMSG_NOOP: u16 = 1;
/// Message type: error or ACK (error 0).
pub const NLMSG_ERROR: u16 = 2;
/// Message type: end of a multipart dump.
pub const NLMSG_DONE: u16 = 3;
/// Message type: data lost.
pub const NLMSG_OVERRUN: u16 = 4;

/// Flag: this is a request.
pub const NLM_F_REQUEST: u16 = 0x1;
/// Flag: part of a multipart reply.
pub const NLM_F_MULTI: u16 = 0x2;
/// Flag: ask for an ACK.
pub const NLM_F_ACK: u16 = 0x4;
/// Flag: the dump was interrupted by a change; its content is inconsistent.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// Flag (GET): return the whole table.
pub const NLM_F_ROOT: u16 = 0x100;
/// Flag (GET): return all matching entries.
pub const NLM_F_MATCH: u16 = 0x200;
/// Flag (GET): a dump request.
pub const NLM_F_DUMP: u16 = NLM_F_ROOT | NLM_F_MATCH;
/// Flag (NEW): fail if the object exists.
pub const NLM_F_EXCL: u16 = 0x200;
/// Flag (NEW): create the object if it does not exist.
pub const NLM_F_CREATE: u16 = 0x400;

/// Attribute type bit: the payload is a list of attributes.
pub const NLA_F_NESTED: u16 = 0x8000;
/// Attribute type bit: the payload is in network byte order.
pub const NLA_F_NET_BYTEORDER: u16 = 0x4000;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// Malformed bytes: the reason a buffer could not be read as netlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// Fewer bytes than a header needs.
    Truncated,
    /// A length field points outside the buffer or below the header size.
    BadLength,
    /// An attribute has the wrong size for its declared type.
    BadAttribute(u16),
    /// A required attribute is missing.
    MissingAttribute(&'static str),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => write!(f, "truncated netlink data"),
            WireError::BadLength => write!(f, "netlink length field out of range"),
            WireError::BadAttribute(t) => write!(f, "attribute {t} has an invalid size"),
            WireError::MissingAttribute(n) => write!(f, "attribute {n} missing"),
        }
    }
}

impl std::error::Error for WireError {}

/// Round `n` up to the netlink alignment of 4 bytes.
pub const fn align(n: usize) -> usize {
    (n + 3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_ne_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
}

/// A view over one netlink message (header + payload).
#[derive(Debug, Clone, Copy)]
pub struct NlMsg<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> NlMsg<T> {
    /// Wrap a buffer holding exactly one message, checking the length field.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        let len = u32_at(b, 0).ok_or(WireError::Truncated)? as usize;
        if len < HDR_LEN || len > b.len() {
            return Err(WireError::BadLength);
        }
        Ok(NlMsg { buffer })
    }

    /// The whole buffer the view was built from.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// nlmsg_len.
    pub fn length(&self) -> usize {
        u32_at(self.b(), 0).unwrap_or(0) as usize
    }

    /// nlmsg_type (a family id for generic netlink).
    pub fn msg_type(&self) -> u16 {
        u16_at(self.b(), 4).unwrap_or(0)
    }

    /// nlmsg_flags.
    pub fn flags(&self) -> u16 {
        u16_at(self.b(), 6).unwrap_or(0)
    }

    /// nlmsg_seq.
    pub fn seq(&self) -> u32 {
        u32_at(self.b(), 8).unwrap_or(0)
    }

    /// nlmsg_pid.
    pub fn pid(&self) -> u32 {
        u32_at(self.b(), 12).unwrap_or(0)
    }

    /// Bytes after the header, up to nlmsg_len.
    pub fn payload(&self) -> &[u8] {
        self.b().get(HDR_LEN..self.length()).unwrap_or(&[])
    }

    /// For NLMSG_ERROR: the error code (0 = ACK, else a negative errno).
    pub fn error_code(&self) -> Result<i32, WireError> {
        let p = self.payload();
        let s = p.get(0..4).ok_or(WireError::Truncated)?;
        Ok(i32::from_ne_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Iterate over the messages packed in one datagram (or a capture of one message).
pub fn messages(buf: &[u8]) -> MsgIter<'_> {
    MsgIter { buf, failed: false }
}

/// Iterator over the messages in a buffer; yields one error and stops on malformed data.
#[derive(Debug, Clone)]
pub struct MsgIter<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for MsgIter<'a> {
    type Item = Result<NlMsg<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.len() < HDR_LEN {
            if !self.failed && !self.buf.is_empty() {
                self.failed = true;
                return Some(Err(WireError::Truncated));
            }
            return None;
        }
        match NlMsg::new_checked(self.buf) {
            Ok(m) => {
                let len = m.length();
                let (this, _) = self.buf.split_at(len);
                self.buf = self.buf.get(align(len)..).unwrap_or(&[]);
                Some(Ok(NlMsg { buffer: this }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// One attribute: its type (flags stripped), whether it was marked nested, and its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlAttr<'a> {
    /// Attribute type without NLA_F_NESTED / NLA_F_NET_BYTEORDER.
    pub kind: u16,
    /// NLA_F_NESTED was set (replies from the kernel often leave it clear).
    pub nested_flag: bool,
    /// The payload, without padding.
    pub value: &'a [u8],
}

impl<'a> NlAttr<'a> {
    /// The payload read as a list of attributes (whether or not the flag was set).
    pub fn nested(&self) -> AttrIter<'a> {
        attrs(self.value)
    }

    /// A native-endian u8.
    pub fn u8(&self) -> Result<u8, WireError> {
        self.value
            .first()
            .copied()
            .ok_or(WireError::BadAttribute(self.kind))
    }

    /// A native-endian u16.
    pub fn u16(&self) -> Result<u16, WireError> {
        u16_at(self.value, 0).ok_or(WireError::BadAttribute(self.kind))
    }

    /// A big-endian u16 (ports).
    pub fn be16(&self) -> Result<u16, WireError> {
        self.u16().map(u16::from_be)
    }

    /// A native-endian u32.
    pub fn u32(&self) -> Result<u32, WireError> {
        u32_at(self.value, 0).ok_or(WireError::BadAttribute(self.kind))
    }

    /// A string, NUL-terminated or not, lossily decoded.
    pub fn string(&self) -> String {
        let end = self
            .value
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(self.value.len());
        String::from_utf8_lossy(self.value.get(..end).unwrap_or(&[])).into_owned()
    }
}

/// Iterate over the attributes in `buf`.
pub fn attrs(buf: &[u8]) -> AttrIter<'_> {
    AttrIter { buf, failed: false }
}

/// Iterator over attributes with 4-byte alignment; yields one error and stops on malformed data.
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    buf: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = Result<NlAttr<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.buf.is_empty() {
            return None;
        }
        let (Some(len), Some(kind)) = (u16_at(self.buf, 0), u16_at(self.buf, 2)) else {
            self.failed = true;
            return Some(Err(WireError::Truncated));
        };
        let len = len as usize;
        if len < ATTR_HDR_LEN || len > self.buf.len() {
            self.failed = true;
            return Some(Err(WireError::BadLength));
        }
        let value = self.buf.get(ATTR_HDR_LEN..len).unwrap_or(&[]);
        self.buf = self.buf.get(align(len)..).unwrap_or(&[]);
        Some(Ok(NlAttr {
            kind: kind & NLA_TYPE_MASK,
            nested_flag: kind & NLA_F_NESTED != 0,
            value,
        }))
    }
}

/// 4-byte words a [`Builder`] stages before moving them to its buffer.
const STAGE_WORDS: usize = 1024;

/// Appends netlink messages to a byte buffer; lengths are patched when a part is closed.
///
/// Several messages may be built back to back into one buffer, which is how requests are
/// batched into a single `sendmsg`. Every part is padded to 4 bytes as it is written (netlink
/// aligns every header and attribute to 4), so the length is always a multiple of 4.
///
/// Parts are written a 4-byte word at a time into a fixed stage that moves to the buffer in
/// one copy when full or read. Release builds are optimised for size, and there every `Vec`
/// append or slice copy of a field is an out-of-line call ending in the C library's memcpy: a
/// 10,000-service sync emits ~600,000 fields, and those calls cost more than everything else
/// the agent does for it. Storing a `[u8; 4]` into an array of them needs no call.
pub struct Builder {
    buf: Vec<u8>,
    stage: [[u8; 4]; STAGE_WORDS],
    words: usize,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder").field("len", &self.len()).finish()
    }
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

/// Position of an open message or nest in a [`Builder`].
#[derive(Debug, Clone, Copy)]
pub struct Mark(usize);

impl Builder {
    /// An empty builder.
    pub fn new() -> Self {
        Builder {
            buf: Vec::new(),
            stage: [[0; 4]; STAGE_WORDS],
            words: 0,
        }
    }

    /// Move the staged words to the buffer.
    fn flush(&mut self) {
        let staged = self.stage.get(..self.words).unwrap_or(&[]);
        self.buf.extend_from_slice(staged.as_flattened());
        self.words = 0;
    }

    /// The bytes built so far.
    pub fn as_bytes(&mut self) -> &[u8] {
        self.flush();
        &self.buf
    }

    /// Number of bytes built so far.
    pub fn len(&self) -> usize {
        self.buf.len() + 4 * self.words
    }

    /// Nothing built yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drop everything built so far, keeping the allocation.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.words = 0;
    }

    /// Take the built bytes.
    pub fn into_bytes(mut self) -> Vec<u8> {
        self.flush();
        self.buf
    }

    /// Append one word.
    #[inline(always)]
    fn word(&mut self, w: [u8; 4]) {
        if self.words >= STAGE_WORDS {
            self.flush();
        }
        if let Some(slot) = self.stage.get_mut(self.words) {
            *slot = w;
            self.words += 1;
        }
    }

    /// Append bytes of any length, zero padded to a whole word.
    fn bytes(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            let mut w = [0u8; 4];
            let mut k = 0;
            while k < 4 && i + k < b.len() {
                w[k] = b[i + k];
                k += 1;
            }
            self.word(w);
            i += 4;
        }
    }

    /// Overwrite bytes already built at absolute offset `at` (a length or flags field).
    fn patch(&mut self, at: usize, bytes: &[u8]) {
        let base = self.buf.len();
        let mut i = 0;
        while i < bytes.len() {
            let pos = at + i;
            let slot = if pos >= base {
                self.stage
                    .get_mut((pos - base) / 4)
                    .and_then(|w| w.get_mut((pos - base) % 4))
            } else {
                self.buf.get_mut(pos)
            };
            if let Some(b) = slot {
                *b = bytes[i];
            }
            i += 1;
        }
    }

    /// The byte at absolute offset `at`, if built.
    fn byte_at(&self, at: usize) -> Option<u8> {
        let base = self.buf.len();
        if at >= base {
            let staged = self.stage.get(..self.words)?;
            staged.get((at - base) / 4).map(|w| w[(at - base) % 4])
        } else {
            self.buf.get(at).copied()
        }
    }

    /// Open a message; close it with [`Builder::end_msg`].
    pub fn begin_msg(&mut self, msg_type: u16, flags: u16, seq: u32) -> Mark {
        let at = self.len();
        let (t, f) = (msg_type.to_ne_bytes(), flags.to_ne_bytes());
        self.word([0; 4]);
        self.word([t[0], t[1], f[0], f[1]]);
        self.word(seq.to_ne_bytes());
        self.word([0; 4]);
        Mark(at)
    }

    /// Close a message, writing its length.
    pub fn end_msg(&mut self, m: Mark) {
        let len = (self.len() - m.0) as u32;
        self.patch(m.0, &len.to_ne_bytes());
    }

    /// Clear header flag bits of the message starting at `at`.
    pub fn clear_flag(&mut self, at: usize, flag: u16) {
        if let (Some(a), Some(b)) = (self.byte_at(at + 6), self.byte_at(at + 7)) {
            let v = u16::from_ne_bytes([a, b]) & !flag;
            self.patch(at + 6, &v.to_ne_bytes());
        }
    }

    /// Raw bytes (family headers such as genlmsghdr or ifinfomsg), zero padded to 4.
    pub fn put_bytes(&mut self, b: &[u8]) {
        self.bytes(b);
    }

    /// The header word of an attribute with `payload` bytes.
    #[inline(always)]
    fn attr_header(&mut self, kind: u16, payload: usize) {
        let (l, k) = (
            ((ATTR_HDR_LEN + payload) as u16).to_ne_bytes(),
            kind.to_ne_bytes(),
        );
        self.word([l[0], l[1], k[0], k[1]]);
    }

    /// An attribute with a raw payload, padded to 4 bytes.
    pub fn attr(&mut self, kind: u16, value: &[u8]) {
        self.attr_header(kind, value.len());
        self.bytes(value);
    }

    /// An attribute of one word (u8, u16 and u32 payloads, zero padded).
    #[inline(always)]
    fn attr_word(&mut self, kind: u16, payload: usize, w: [u8; 4]) {
        self.attr_header(kind, payload);
        self.word(w);
    }

    /// A u8 attribute.
    pub fn attr_u8(&mut self, kind: u16, v: u8) {
        self.attr_word(kind, 1, [v, 0, 0, 0]);
    }

    /// A native-endian u16 attribute.
    pub fn attr_u16(&mut self, kind: u16, v: u16) {
        let b = v.to_ne_bytes();
        self.attr_word(kind, 2, [b[0], b[1], 0, 0]);
    }

    /// A big-endian u16 attribute.
    pub fn attr_be16(&mut self, kind: u16, v: u16) {
        let b = v.to_be_bytes();
        self.attr_word(kind, 2, [b[0], b[1], 0, 0]);
    }

    /// A native-endian u32 attribute.
    pub fn attr_u32(&mut self, kind: u16, v: u32) {
        self.attr_word(kind, 4, v.to_ne_bytes());
    }

    /// A 16-byte attribute (an address, IPv4 ones zero padded as IPVS wants them).
    pub fn attr_16(&mut self, kind: u16, v: [u8; 16]) {
        self.attr_header(kind, 16);
        self.word([v[0], v[1], v[2], v[3]]);
        self.word([v[4], v[5], v[6], v[7]]);
        self.word([v[8], v[9], v[10], v[11]]);
        self.word([v[12], v[13], v[14], v[15]]);
    }

    /// An 8-byte attribute.
    pub fn attr_8(&mut self, kind: u16, v: [u8; 8]) {
        self.attr_header(kind, 8);
        self.word([v[0], v[1], v[2], v[3]]);
        self.word([v[4], v[5], v[6], v[7]]);
    }

    /// A NUL-terminated string attribute.
    pub fn attr_strz(&mut self, kind: u16, s: &str) {
        let b = s.as_bytes();
        self.attr_header(kind, b.len() + 1);
        // The NUL is padding's first zero; a length that is a multiple of 4 needs a word more.
        self.bytes(b);
        if b.len() % 4 == 0 {
            self.word([0; 4]);
        }
    }

    /// Open a nested attribute (NLA_F_NESTED set, as the kernel's own tools do).
    pub fn begin_nest(&mut self, kind: u16) -> Mark {
        let at = self.len();
        let k = (kind | NLA_F_NESTED).to_ne_bytes();
        self.word([0, 0, k[0], k[1]]);
        Mark(at)
    }

    /// Close a nested attribute, writing its length.
    pub fn end_nest(&mut self, m: Mark) {
        let len = (self.len() - m.0) as u16;
        self.patch(m.0, &len.to_ne_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_and_attributes_round_trip() {
        let mut b = Builder::new();
        let m = b.begin_msg(0x20, NLM_F_REQUEST | NLM_F_ACK, 7);
        b.put_bytes(&[1, 1, 0, 0]);
        let n = b.begin_nest(1);
        b.attr_u16(1, 2);
        b.attr_strz(6, "rr");
        b.end_nest(n);
        b.attr_be16(4, 80);
        b.end_msg(m);
        let bytes = b.into_bytes();
        let msgs: Vec<_> = messages(&bytes).collect();
        assert_eq!(msgs.len(), 1);
        let msg = msgs[0].unwrap();
        assert_eq!(msg.msg_type(), 0x20);
        assert_eq!(msg.seq(), 7);
        let top: Vec<_> = attrs(&msg.payload()[4..]).map(|a| a.unwrap()).collect();
        assert_eq!(top.len(), 2);
        assert!(top[0].nested_flag);
        let inner: Vec<_> = top[0].nested().map(|a| a.unwrap()).collect();
        assert_eq!(inner[0].u16().unwrap(), 2);
        assert_eq!(inner[1].string(), "rr");
        assert_eq!(top[1].be16().unwrap(), 80);
    }

    #[test]
    fn staging_keeps_bytes_and_patches_across_flushes() {
        // Messages whose nests and lengths straddle the stage's flushes, one attribute larger
        // than the stage, an odd raw part (padding), and a flag cleared after a flush.
        let mut b = Builder::new();
        let big = vec![0xab; 4 * STAGE_WORDS + 101];
        let mut starts = Vec::new();
        for i in 0..200u32 {
            starts.push(b.len());
            let m = b.begin_msg(0x20, NLM_F_REQUEST | NLM_F_ACK, i);
            b.put_bytes(&[1, 1, 0]);
            let n = b.begin_nest(1);
            b.attr_u32(2, i);
            if i == 57 {
                b.attr(3, &big);
            }
            b.attr_strz(4, "wlc");
            b.end_nest(n);
            b.end_msg(m);
        }
        b.clear_flag(starts[0], NLM_F_ACK);
        b.clear_flag(starts[199], NLM_F_ACK);
        assert_eq!(b.len() % 4, 0);
        let bytes = b.as_bytes().to_vec();
        assert_eq!(bytes.len(), b.len());
        let msgs: Vec<_> = messages(&bytes).map(|m| m.unwrap()).collect();
        assert_eq!(msgs.len(), 200);
        for (i, msg) in msgs.iter().enumerate() {
            assert_eq!(msg.seq(), i as u32);
            let acked = msg.flags() & NLM_F_ACK != 0;
            assert_eq!(acked, i != 0 && i != 199, "message {i}");
            assert_eq!(&msg.payload()[..4], &[1, 1, 0, 0]);
            let top: Vec<_> = attrs(&msg.payload()[4..]).map(|a| a.unwrap()).collect();
            assert_eq!(top.len(), 1);
            let inner: Vec<_> = top[0].nested().map(|a| a.unwrap()).collect();
            assert_eq!(inner[0].u32().unwrap(), i as u32);
            if i == 57 {
                assert_eq!(inner[1].value, &big[..]);
            }
            assert_eq!(inner.last().unwrap().string(), "wlc");
        }
        // Cleared, the builder starts over; taken, it hands over what as_bytes showed.
        b.clear();
        assert!(b.is_empty());
        let m = b.begin_msg(1, 0, 9);
        b.end_msg(m);
        assert_eq!(b.into_bytes().len(), HDR_LEN);
    }

    #[test]
    fn malformed_input_stops_without_panic() {
        assert!(messages(&[1, 2, 3]).next().unwrap().is_err());
        let bad = [0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(messages(&bad).next().unwrap().is_err());
        assert!(attrs(&[2, 0, 1, 0]).next().unwrap().is_err());
        assert_eq!(attrs(&[]).count(), 0);
        let a = NlAttr {
            kind: 1,
            nested_flag: false,
            value: &[1],
        };
        assert!(a.u32().is_err());
    }
}
