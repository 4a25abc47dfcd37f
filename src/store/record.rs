//! The on-flash record: a fixed binary header around a CBOR body.
//!
//! Owns the byte layout of one record file and nothing else: no I/O, no file names. Decoding
//! never panics on any input; every failure is a [`RecordFault`] inside a [`StoreError`].
//!
//! Layout, all integers big-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `TLSR` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | flags (0 in version 1; any other value is refused) |
//! | 8 | 4 | body length in bytes |
//! | 12 | 4 | CRC-32C over bytes 0..12 followed by the body |
//! | 16 | n | body: CBOR array `[kind: uint, key: text, hash: uint, value: bytes]` |
//!
//! The body carries the content hash of the value so a reader can tell a stale or damaged
//! value from a good one, and callers can skip writes without reading values back.

use std::fmt;

use minicbor::{Decode, Decoder, Encode, Encoder};

use super::crc::Crc32c;
use super::StoreError;

/// The four bytes every record file starts with.
pub const MAGIC: [u8; 4] = *b"TLSR";
/// The on-disk format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header in front of the CBOR body.
pub const HEADER_LEN: usize = 16;
/// Longest key accepted (a namespace/name is at most 317 bytes; UIDs are 36).
pub const MAX_KEY_LEN: usize = 1024;
/// Largest value accepted; pods are a few KB, the biggest a few hundred KB.
pub const MAX_VALUE_LEN: usize = 8 << 20;
/// Largest body a header may announce (value plus key plus CBOR framing).
pub const MAX_BODY_LEN: usize = MAX_VALUE_LEN + MAX_KEY_LEN + 64;

/// What a record holds; decides which list a record appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordKind {
    /// A static pod imported from the manifest directory.
    StaticPod,
    /// A pod admitted from the API server, kept for offline restarts.
    ApiPod,
    /// A kind written by a newer tinylet; kept so it is neither lost nor misread.
    Unknown(u8),
}

impl RecordKind {
    /// The number stored on disk.
    pub fn code(self) -> u8 {
        match self {
            RecordKind::StaticPod => 1,
            RecordKind::ApiPod => 2,
            RecordKind::Unknown(n) => n,
        }
    }

    /// The kind for a stored number; `Unknown(1)` and `StaticPod` are never both produced.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => RecordKind::StaticPod,
            2 => RecordKind::ApiPod,
            n => RecordKind::Unknown(n),
        }
    }

    /// The short name used as the record file name prefix.
    pub fn tag(self) -> String {
        match RecordKind::from_code(self.code()) {
            RecordKind::StaticPod => "static".to_string(),
            RecordKind::ApiPod => "api".to_string(),
            RecordKind::Unknown(n) => format!("kind{n}"),
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.tag())
    }
}

/// A 64-bit content hash of a value, stored in its record.
///
/// Not cryptographic: it tells accidental differences apart (collision odds 2^-64 per pair),
/// which is what skipping identical writes needs. The store itself still compares bytes
/// before it skips a write, so a collision can never lose an update made through `put`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(pub u64);

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// The content hash of a value: FNV-1a over the bytes and the length, then a 64-bit finaliser
/// so that nearby inputs spread over all bits.
pub fn content_hash(value: &[u8]) -> ContentHash {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in value {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= value.len() as u64;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    ContentHash(h)
}

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordFault {
    /// Fewer bytes than the header or the announced body needs (a torn write).
    Truncated {
        /// Bytes the record needs.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The file does not start with the record magic.
    BadMagic,
    /// Written by a format version this code does not read.
    UnsupportedVersion(u16),
    /// Header flags this version does not know.
    UnsupportedFlags(u16),
    /// The header announces a body larger than any valid record.
    BodyTooLarge(usize),
    /// Bytes after the announced body.
    TrailingBytes(usize),
    /// The checksum does not match: torn write or media corruption.
    BadChecksum {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// The CBOR body is malformed.
    BadBody(String),
    /// The key is empty or too long.
    BadKey,
    /// The value is larger than [`MAX_VALUE_LEN`].
    ValueTooLarge(usize),
    /// The stored content hash does not match the value.
    HashMismatch,
}

impl fmt::Display for RecordFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordFault::Truncated { need, have } => {
                write!(f, "truncated: {have} bytes, need {need}")
            }
            RecordFault::BadMagic => f.write_str("not a record (bad magic)"),
            RecordFault::UnsupportedVersion(v) => {
                write!(f, "format version {v} (this build reads {FORMAT_VERSION})")
            }
            RecordFault::UnsupportedFlags(x) => write!(f, "unknown header flags {x:#06x}"),
            RecordFault::BodyTooLarge(n) => write!(f, "announced body of {n} bytes is too large"),
            RecordFault::TrailingBytes(n) => write!(f, "{n} bytes after the record"),
            RecordFault::BadChecksum { stored, computed } => {
                write!(
                    f,
                    "checksum mismatch: stored {stored:08x}, computed {computed:08x}"
                )
            }
            RecordFault::BadBody(e) => write!(f, "malformed CBOR body: {e}"),
            RecordFault::BadKey => write!(f, "key empty or longer than {MAX_KEY_LEN} bytes"),
            RecordFault::ValueTooLarge(n) => {
                write!(f, "value of {n} bytes exceeds {MAX_VALUE_LEN}")
            }
            RecordFault::HashMismatch => f.write_str("content hash does not match the value"),
        }
    }
}

/// One stored record: what the callers put, plus its content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Which list the record belongs to.
    pub kind: RecordKind,
    /// The caller's key (pod UID or namespace/name).
    pub key: String,
    /// The content hash of `value`.
    pub hash: ContentHash,
    /// The opaque value (the pod as JSON).
    pub value: Vec<u8>,
}

/// The CBOR body borrowed from a record, so encoding needs no copy of the value.
struct Body<'a> {
    kind: u8,
    key: &'a str,
    hash: u64,
    value: &'a [u8],
}

impl<C> Encode<C> for Body<'_> {
    fn encode<W: minicbor::encode::Write>(
        &self,
        e: &mut Encoder<W>,
        _ctx: &mut C,
    ) -> Result<(), minicbor::encode::Error<W::Error>> {
        e.array(4)?
            .u8(self.kind)?
            .str(self.key)?
            .u64(self.hash)?
            .bytes(self.value)?;
        Ok(())
    }
}

impl<'b, C> Decode<'b, C> for Body<'b> {
    fn decode(d: &mut Decoder<'b>, _ctx: &mut C) -> Result<Self, minicbor::decode::Error> {
        // Version 1 bodies are exactly four definite-length items; anything else is damage.
        if d.array()? != Some(4) {
            return Err(minicbor::decode::Error::message(
                "expected an array of 4 items",
            ));
        }
        let kind = d.u8()?;
        let key = d.str()?;
        let hash = d.u64()?;
        let value = d.bytes()?;
        Ok(Body {
            kind,
            key,
            hash,
            value,
        })
    }
}

fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN
}

fn be_u16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

impl Record {
    /// A record for a value, with its content hash computed.
    pub fn new(kind: RecordKind, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        let value = value.into();
        Record {
            kind: RecordKind::from_code(kind.code()),
            key: key.into(),
            hash: content_hash(&value),
            value,
        }
    }

    /// The record as file bytes: header, then CBOR body.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let invalid = |reason| StoreError::InvalidRecord {
            kind: self.kind,
            key: self.key.clone(),
            reason,
        };
        if !valid_key(&self.key) {
            return Err(invalid(RecordFault::BadKey));
        }
        if self.value.len() > MAX_VALUE_LEN {
            return Err(invalid(RecordFault::ValueTooLarge(self.value.len())));
        }
        let body = Body {
            kind: self.kind.code(),
            key: &self.key,
            hash: self.hash.0,
            value: &self.value,
        };
        let mut out = Vec::with_capacity(HEADER_LEN + self.key.len() + self.value.len() + 24);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&[0u8; 8]); // length and CRC, filled in below
        minicbor::encode(&body, &mut out)
            .map_err(|e| invalid(RecordFault::BadBody(e.to_string())))?;
        let body_len = out.len() - HEADER_LEN;
        let len_field =
            u32::try_from(body_len).map_err(|_| invalid(RecordFault::BodyTooLarge(body_len)))?;
        if let Some(slot) = out.get_mut(8..12) {
            slot.copy_from_slice(&len_field.to_be_bytes());
        }
        let mut crc = Crc32c::new();
        crc.update(out.get(..12).unwrap_or_default());
        crc.update(out.get(HEADER_LEN..).unwrap_or_default());
        if let Some(slot) = out.get_mut(12..16) {
            slot.copy_from_slice(&crc.finish().to_be_bytes());
        }
        Ok(out)
    }

    /// Parses one record file's bytes; never panics, whatever the bytes.
    pub fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
        Self::decode_fault(bytes).map_err(|reason| StoreError::Malformed { reason })
    }

    /// Like [`Record::decode`] but returns the bare reason, for callers that add their own
    /// context (the store names the file).
    pub fn decode_fault(bytes: &[u8]) -> Result<Record, RecordFault> {
        let truncated = RecordFault::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        };
        let magic = bytes.get(..4).ok_or_else(|| truncated.clone())?;
        if magic != MAGIC {
            return Err(RecordFault::BadMagic);
        }
        let version = be_u16(bytes, 4).ok_or_else(|| truncated.clone())?;
        if version != FORMAT_VERSION {
            return Err(RecordFault::UnsupportedVersion(version));
        }
        let flags = be_u16(bytes, 6).ok_or_else(|| truncated.clone())?;
        if flags != 0 {
            return Err(RecordFault::UnsupportedFlags(flags));
        }
        let body_len = be_u32(bytes, 8).ok_or_else(|| truncated.clone())? as usize;
        let stored = be_u32(bytes, 12).ok_or(truncated)?;
        if body_len > MAX_BODY_LEN {
            return Err(RecordFault::BodyTooLarge(body_len));
        }
        let need = HEADER_LEN + body_len;
        if bytes.len() < need {
            return Err(RecordFault::Truncated {
                need,
                have: bytes.len(),
            });
        }
        if bytes.len() > need {
            return Err(RecordFault::TrailingBytes(bytes.len() - need));
        }
        let body = bytes.get(HEADER_LEN..).unwrap_or_default();
        let mut crc = Crc32c::new();
        crc.update(bytes.get(..12).unwrap_or_default());
        crc.update(body);
        let computed = crc.finish();
        if computed != stored {
            return Err(RecordFault::BadChecksum { stored, computed });
        }
        let mut d = Decoder::new(body);
        let parsed: Body<'_> = d
            .decode()
            .map_err(|e| RecordFault::BadBody(e.to_string()))?;
        if d.position() != body.len() {
            return Err(RecordFault::BadBody(format!(
                "{} bytes after the CBOR item",
                body.len().saturating_sub(d.position())
            )));
        }
        if !valid_key(parsed.key) {
            return Err(RecordFault::BadKey);
        }
        if parsed.value.len() > MAX_VALUE_LEN {
            return Err(RecordFault::ValueTooLarge(parsed.value.len()));
        }
        let hash = ContentHash(parsed.hash);
        if content_hash(parsed.value) != hash {
            return Err(RecordFault::HashMismatch);
        }
        Ok(Record {
            kind: RecordKind::from_code(parsed.kind),
            key: parsed.key.to_string(),
            hash,
            value: parsed.value.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xorshift(state: &mut u64) -> u64 {
        let mut x = *state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *state = x;
        x
    }

    #[test]
    fn round_trip_kinds_keys_values() {
        let kinds = [
            RecordKind::StaticPod,
            RecordKind::ApiPod,
            RecordKind::Unknown(0),
            RecordKind::Unknown(200),
        ];
        let keys = [
            "a",
            "kube-system/coredns-xyz",
            "9f1c0c4e-2f1b-4b8e-9d7a-0e3c2c1d5a6b",
        ];
        let mut rng = 0x1234_5678_9abc_def0u64;
        for kind in kinds {
            for key in keys {
                for len in [0usize, 1, 23, 24, 255, 256, 65_535, 65_536, 300_000] {
                    let value: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
                    let r = Record::new(kind, key, value);
                    let bytes = r.encode().unwrap();
                    assert_eq!(Record::decode(&bytes).unwrap(), r);
                }
            }
        }
    }

    #[test]
    fn long_key_round_trips_and_too_long_is_refused() {
        let key = "k".repeat(MAX_KEY_LEN);
        let r = Record::new(RecordKind::ApiPod, key, b"{}".to_vec());
        assert_eq!(Record::decode(&r.encode().unwrap()).unwrap(), r);
        let too_long = Record::new(RecordKind::ApiPod, "k".repeat(MAX_KEY_LEN + 1), vec![]);
        assert!(matches!(
            too_long.encode(),
            Err(StoreError::InvalidRecord {
                reason: RecordFault::BadKey,
                ..
            })
        ));
        let empty = Record::new(RecordKind::ApiPod, "", vec![]);
        assert!(empty.encode().is_err());
    }

    #[test]
    fn kind_codes_are_normalised() {
        assert_eq!(RecordKind::from_code(1), RecordKind::StaticPod);
        let r = Record::new(RecordKind::Unknown(2), "x", vec![]);
        assert_eq!(r.kind, RecordKind::ApiPod);
        assert_eq!(RecordKind::Unknown(1).tag(), "static");
        assert_eq!(RecordKind::Unknown(9).tag(), "kind9");
    }

    #[test]
    fn every_truncation_is_an_error() {
        let r = Record::new(RecordKind::StaticPod, "ns/pod", b"{\"a\":1}".to_vec());
        let bytes = r.encode().unwrap();
        for cut in 0..bytes.len() {
            let res = Record::decode(bytes.get(..cut).unwrap());
            assert!(res.is_err(), "prefix of {cut} bytes decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Record::decode_fault(&longer),
            Err(RecordFault::TrailingBytes(1))
        );
    }

    #[test]
    fn header_faults_are_named() {
        let r = Record::new(RecordKind::StaticPod, "k", b"v".to_vec());
        let good = r.encode().unwrap();
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(Record::decode_fault(&b), Err(RecordFault::BadMagic));
        let mut b = good.clone();
        b[5] = 2;
        assert_eq!(
            Record::decode_fault(&b),
            Err(RecordFault::UnsupportedVersion(2))
        );
        let mut b = good.clone();
        b[7] = 1;
        assert_eq!(
            Record::decode_fault(&b),
            Err(RecordFault::UnsupportedFlags(1))
        );
        let mut b = good.clone();
        b[8] = 0xFF;
        assert!(matches!(
            Record::decode_fault(&b),
            Err(RecordFault::BodyTooLarge(_))
        ));
        let mut b = good.clone();
        let last = b.len() - 1;
        b[last] ^= 1;
        assert!(matches!(
            Record::decode_fault(&b),
            Err(RecordFault::BadChecksum { .. })
        ));
    }

    /// Builds file bytes around an arbitrary body with a correct CRC, to reach the body checks.
    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let mut crc = Crc32c::new();
        crc.update(&out);
        crc.update(body);
        out.extend_from_slice(&crc.finish().to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn body_faults_behind_a_valid_crc() {
        // Wrong hash.
        let mut body = Vec::new();
        minicbor::encode(
            &Body {
                kind: 1,
                key: "k",
                hash: 7,
                value: b"v",
            },
            &mut body,
        )
        .unwrap();
        assert_eq!(
            Record::decode_fault(&frame(&body)),
            Err(RecordFault::HashMismatch)
        );
        // Extra CBOR after the array.
        let mut body2 = Vec::new();
        minicbor::encode(
            &Body {
                kind: 1,
                key: "k",
                hash: content_hash(b"v").0,
                value: b"v",
            },
            &mut body2,
        )
        .unwrap();
        assert!(Record::decode_fault(&frame(&body2)).is_ok());
        body2.push(0);
        assert!(matches!(
            Record::decode_fault(&frame(&body2)),
            Err(RecordFault::BadBody(_))
        ));
        // Indefinite array, wrong arity, kind out of u8 range, empty key.
        for body in [
            vec![0x9f, 0xff],
            vec![0x83, 0x01, 0x61, b'k', 0x00],
            vec![0x84, 0x19, 0x01, 0x00, 0x61, b'k', 0x00, 0x40],
            vec![0x84, 0x01, 0x60, 0x00, 0x40],
            // A byte string announcing 2^64-1 bytes must not allocate or panic.
            vec![
                0x84, 0x01, 0x61, b'k', 0x00, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
        ] {
            assert!(Record::decode_fault(&frame(&body)).is_err(), "{body:02x?}");
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = 0xdead_beef_cafe_f00du64;
        let good = Record::new(RecordKind::ApiPod, "ns/p", b"{\"spec\":{}}".to_vec())
            .encode()
            .unwrap();
        for i in 0..20_000 {
            let len = (xorshift(&mut rng) % 96) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut rng) as u8).collect();
            if i % 2 == 0 {
                // Keep a valid header prefix half the time so the deeper checks are reached.
                let n = bytes.len().min(good.len());
                bytes[..n.min(12)].copy_from_slice(&good[..n.min(12)]);
            }
            // The fuzz target's body: never panic, and what is accepted round-trips.
            for input in [bytes.clone(), frame(&bytes)] {
                if let Ok(rec) = Record::decode(&input) {
                    assert_eq!(Record::decode(&rec.encode().unwrap()).unwrap(), rec);
                }
            }
        }
    }

    #[test]
    fn hash_separates_nearby_values() {
        assert_ne!(content_hash(b""), content_hash(b"\0"));
        assert_ne!(content_hash(b"ab"), content_hash(b"ba"));
        assert_eq!(content_hash(b"same"), content_hash(b"same"));
        assert_eq!(format!("{}", ContentHash(0xab)), "00000000000000ab");
    }
}
