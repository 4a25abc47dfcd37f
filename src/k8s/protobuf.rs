//! The API server's protobuf encoding (`application/vnd.kubernetes.protobuf`) for the one
//! object tinylet exchanges every 10 s, the node's `Lease`, and for the metadata-only answers
//! (`PartialObjectMetadata`) its periodic writes ask for.
//!
//! A protobuf body is the 4-byte magic `k8s\0` followed by a `runtime.Unknown` envelope whose
//! `raw` field holds the object. Wire types are small prost structs with the field numbers of
//! k8s.io/apimachinery (`meta/v1`, `runtime`) and k8s.io/api (`coordination/v1`); fields tinylet
//! does not use (labels, managedFields, ...) are skipped by the decoder. Conversion to and from
//! the serde types in [`super::coordination`] happens here, so callers never see the wire form.
//!
//! Why protobuf at all: a Lease in protobuf is about half its JSON size, and the renewal's
//! response is most of the node's idle traffic. Everything else stays JSON.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost::Message;

use super::coordination::{format_micro_time, format_time, parse_time, Lease, LeaseSpec};
use super::meta::{ObjectMeta, OwnerReference};

/// The media type of the API server's protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// The 4-byte prefix of every protobuf-encoded API object.
pub const MAGIC: &[u8; 4] = b"k8s\0";

/// Why a protobuf body was not a Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtoError {
    /// The body does not start with `k8s\0`.
    NoMagic,
    /// The envelope or the object is not valid protobuf.
    Decode(String),
    /// The envelope names another kind, or an encoding tinylet does not read.
    WrongType(String),
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::NoMagic => write!(f, "protobuf body without the k8s\\0 prefix"),
            ProtoError::Decode(e) => write!(f, "invalid protobuf: {e}"),
            ProtoError::WrongType(t) => {
                write!(f, "protobuf body holds {t}, not the kind asked for")
            }
        }
    }
}

impl std::error::Error for ProtoError {}

/// runtime.TypeMeta (note: apiVersion first, unlike meta/v1 TypeMeta).
#[derive(Clone, PartialEq, Message)]
struct TypeMeta {
    #[prost(string, tag = "1")]
    api_version: String,
    #[prost(string, tag = "2")]
    kind: String,
}

/// runtime.Unknown: the envelope around every object.
#[derive(Clone, PartialEq, Message)]
struct Unknown {
    #[prost(message, optional, tag = "1")]
    type_meta: Option<TypeMeta>,
    #[prost(bytes = "vec", tag = "2")]
    raw: Vec<u8>,
    #[prost(string, tag = "3")]
    content_encoding: String,
    #[prost(string, tag = "4")]
    content_type: String,
}

/// meta/v1 Time and MicroTime share this shape.
#[derive(Clone, PartialEq, Message)]
struct Timestamp {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
struct OwnerRef {
    #[prost(string, tag = "1")]
    kind: String,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    uid: String,
    #[prost(string, tag = "5")]
    api_version: String,
    #[prost(bool, optional, tag = "6")]
    controller: Option<bool>,
    #[prost(bool, optional, tag = "7")]
    block_owner_deletion: Option<bool>,
}

/// meta/v1 ObjectMeta, the fields a Lease carries that tinylet keeps.
#[derive(Clone, PartialEq, Message)]
struct Meta {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(string, tag = "3")]
    namespace: String,
    #[prost(string, tag = "5")]
    uid: String,
    #[prost(string, tag = "6")]
    resource_version: String,
    #[prost(int64, tag = "7")]
    generation: i64,
    #[prost(message, optional, tag = "8")]
    creation_timestamp: Option<Timestamp>,
    #[prost(message, repeated, tag = "13")]
    owner_references: Vec<OwnerRef>,
}

#[derive(Clone, PartialEq, Message)]
struct Spec {
    #[prost(string, optional, tag = "1")]
    holder_identity: Option<String>,
    #[prost(int32, optional, tag = "2")]
    lease_duration_seconds: Option<i32>,
    #[prost(message, optional, tag = "3")]
    acquire_time: Option<Timestamp>,
    #[prost(message, optional, tag = "4")]
    renew_time: Option<Timestamp>,
    #[prost(int32, optional, tag = "5")]
    lease_transitions: Option<i32>,
}

/// Any top-level object read for its metadata alone: every kind, PartialObjectMetadata
/// included, carries its ObjectMeta in field 1.
#[derive(Clone, PartialEq, Message)]
struct WireMetaOnly {
    #[prost(message, optional, tag = "1")]
    metadata: Option<Meta>,
}

#[derive(Clone, PartialEq, Message)]
struct WireLease {
    #[prost(message, optional, tag = "1")]
    metadata: Option<Meta>,
    #[prost(message, optional, tag = "2")]
    spec: Option<Spec>,
}

/// 9999-12-31T23:59:59Z, the last second the API allows.
const MAX_SECONDS: u64 = 253_402_300_799;

/// meta/v1 StatusDetails, the part an error needs.
#[derive(Clone, PartialEq, Message)]
struct WireStatusDetails {
    #[prost(int32, tag = "5")]
    retry_after_seconds: i32,
}

/// meta/v1 Status, the body of an error answer.
#[derive(Clone, PartialEq, Message)]
struct WireStatus {
    #[prost(string, tag = "3")]
    message: String,
    #[prost(string, tag = "4")]
    reason: String,
    #[prost(message, optional, tag = "5")]
    details: Option<WireStatusDetails>,
    #[prost(int32, tag = "6")]
    code: i32,
}

/// The parts of a protobuf-encoded meta/v1 Status an API error keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusParts {
    /// Machine-readable reason (Conflict, NotFound, ...).
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// details.retryAfterSeconds (0 if absent).
    pub retry_after_seconds: i32,
    /// Suggested HTTP code.
    pub code: i32,
}

/// Decodes a protobuf error body (a server that was asked for protobuf answers errors in it).
pub fn decode_status(body: &[u8]) -> Result<StatusParts, ProtoError> {
    let (tm, raw) = envelope(body)?;
    if tm.kind != "Status" {
        return Err(ProtoError::WrongType(format!(
            "{} {}",
            tm.api_version, tm.kind
        )));
    }
    let w = WireStatus::decode(raw.as_slice()).map_err(|e| ProtoError::Decode(e.to_string()))?;
    Ok(StatusParts {
        reason: w.reason,
        message: w.message,
        retry_after_seconds: w.details.map(|d| d.retry_after_seconds).unwrap_or(0),
        code: w.code,
    })
}

fn to_system_time(t: &Timestamp) -> Option<SystemTime> {
    let secs = u64::try_from(t.seconds)
        .ok()
        .filter(|s| *s <= MAX_SECONDS)?;
    let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
    UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
}

fn from_system_time(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The envelope of a protobuf body: its type and the object's bytes.
fn envelope(body: &[u8]) -> Result<(TypeMeta, Vec<u8>), ProtoError> {
    let rest = body.strip_prefix(MAGIC).ok_or(ProtoError::NoMagic)?;
    let env = Unknown::decode(rest).map_err(|e| ProtoError::Decode(e.to_string()))?;
    if !env.content_encoding.is_empty() {
        return Err(ProtoError::WrongType(format!(
            "contentEncoding {:?}",
            env.content_encoding
        )));
    }
    Ok((env.type_meta.unwrap_or_default(), env.raw))
}

fn object_meta(m: Meta) -> ObjectMeta {
    ObjectMeta {
        name: m.name,
        namespace: m.namespace,
        uid: m.uid,
        resource_version: m.resource_version,
        generation: m.generation,
        creation_timestamp: m
            .creation_timestamp
            .as_ref()
            .and_then(to_system_time)
            .map(format_time),
        owner_references: m
            .owner_references
            .into_iter()
            .map(|o| OwnerReference {
                api_version: o.api_version,
                kind: o.kind,
                name: o.name,
                uid: o.uid,
                controller: o.controller,
                block_owner_deletion: o.block_owner_deletion,
            })
            .collect(),
        ..Default::default()
    }
}

/// Decodes the kind and metadata of any protobuf object: a `meta.k8s.io` PartialObjectMetadata
/// (what a server sends for `as=PartialObjectMetadata`) or the whole object from a server that
/// answered without transforming it.
pub fn decode_metadata(body: &[u8]) -> Result<(String, ObjectMeta), ProtoError> {
    let (tm, raw) = envelope(body)?;
    if tm.kind.is_empty() || tm.kind == "Status" {
        return Err(ProtoError::WrongType(format!(
            "{} {}",
            tm.api_version, tm.kind
        )));
    }
    let w = WireMetaOnly::decode(raw.as_slice()).map_err(|e| ProtoError::Decode(e.to_string()))?;
    Ok((tm.kind, object_meta(w.metadata.unwrap_or_default())))
}

/// Decodes a protobuf body (magic + envelope) holding a coordination.k8s.io/v1 Lease. Times
/// outside what the API allows (negative, nanos ≥ 1 s) are dropped, not errors: the renewal
/// needs the resourceVersion, not the server's clock.
pub fn decode_lease(body: &[u8]) -> Result<Lease, ProtoError> {
    let (tm, raw) = envelope(body)?;
    if tm.kind != "Lease" || !tm.api_version.starts_with("coordination.k8s.io/") {
        return Err(ProtoError::WrongType(format!(
            "{} {}",
            tm.api_version, tm.kind
        )));
    }
    let w = WireLease::decode(raw.as_slice()).map_err(|e| ProtoError::Decode(e.to_string()))?;
    let s = w.spec.unwrap_or_default();
    let micro = |t: Option<Timestamp>| t.as_ref().and_then(to_system_time).map(format_micro_time);
    Ok(Lease {
        api_version: tm.api_version,
        kind: tm.kind,
        metadata: object_meta(w.metadata.unwrap_or_default()),
        spec: LeaseSpec {
            holder_identity: s.holder_identity,
            lease_duration_seconds: s.lease_duration_seconds,
            acquire_time: micro(s.acquire_time),
            renew_time: micro(s.renew_time),
            lease_transitions: s.lease_transitions,
        },
    })
}

/// Encodes a Lease as the API server would send it (the inverse of [`decode_lease`] for the
/// fields it keeps); unparsable time strings are left out.
pub fn encode_lease(lease: &Lease) -> Vec<u8> {
    let ts = |s: &Option<String>| s.as_deref().and_then(parse_time).map(from_system_time);
    let m = &lease.metadata;
    let raw = WireLease {
        metadata: Some(Meta {
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            uid: m.uid.clone(),
            resource_version: m.resource_version.clone(),
            generation: m.generation,
            creation_timestamp: ts(&m.creation_timestamp),
            owner_references: m
                .owner_references
                .iter()
                .map(|o| OwnerRef {
                    kind: o.kind.clone(),
                    name: o.name.clone(),
                    uid: o.uid.clone(),
                    api_version: o.api_version.clone(),
                    controller: o.controller,
                    block_owner_deletion: o.block_owner_deletion,
                })
                .collect(),
        }),
        spec: Some(Spec {
            holder_identity: lease.spec.holder_identity.clone(),
            lease_duration_seconds: lease.spec.lease_duration_seconds,
            acquire_time: ts(&lease.spec.acquire_time),
            renew_time: ts(&lease.spec.renew_time),
            lease_transitions: lease.spec.lease_transitions,
        }),
    }
    .encode_to_vec();
    let env = Unknown {
        type_meta: Some(TypeMeta {
            api_version: if lease.api_version.is_empty() {
                "coordination.k8s.io/v1".into()
            } else {
                lease.api_version.clone()
            },
            kind: "Lease".into(),
        }),
        raw,
        content_encoding: String::new(),
        content_type: String::new(),
    };
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&env.encode_to_vec());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Lease {
        let mut l = Lease::for_node(
            "edge-7",
            40,
            UNIX_EPOCH + Duration::new(1_764_300_000, 123_456_000),
        );
        l.metadata.uid = "0b7c2c36-8c57-4b3b-9a40-1f0e2d9c0a11".into();
        l.metadata.resource_version = "48213".into();
        l.metadata.creation_timestamp = Some("2025-11-28T03:20:00Z".into());
        l.metadata.owner_references = vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: "edge-7".into(),
            uid: "5d1f0c8e-2f7a-4c55-a3de-7f64b1c2e0aa".into(),
            controller: None,
            block_owner_deletion: None,
        }];
        l.spec.lease_transitions = Some(2);
        l
    }

    #[test]
    fn round_trip_keeps_every_modelled_field() {
        let l = sample();
        let bytes = encode_lease(&l);
        assert!(bytes.starts_with(MAGIC));
        assert_eq!(decode_lease(&bytes).unwrap(), l);
    }

    #[test]
    fn pinned_bytes_of_the_envelope_and_spec() {
        let l = Lease {
            metadata: ObjectMeta {
                name: "n".into(),
                resource_version: "7".into(),
                ..Default::default()
            },
            spec: LeaseSpec {
                holder_identity: Some("n".into()),
                lease_duration_seconds: Some(40),
                ..Default::default()
            },
            ..Default::default()
        };
        let b = encode_lease(&l);
        // magic; Unknown{1: TypeMeta{1:"coordination.k8s.io/v1", 2:"Lease"}, 2: raw}
        let mut want = b"k8s\0".to_vec();
        want.extend_from_slice(&[0x0a, 31, 0x0a, 22]);
        want.extend_from_slice(b"coordination.k8s.io/v1");
        want.extend_from_slice(&[0x12, 5]);
        want.extend_from_slice(b"Lease");
        // raw: Lease{1: meta{1:"n", 6:"7"}, 2: spec{1:"n", 2:40}}
        let raw = [
            0x0a, 6, 0x0a, 1, b'n', 0x32, 1, b'7', 0x12, 5, 0x0a, 1, b'n', 0x10, 40,
        ];
        want.extend_from_slice(&[0x12, raw.len() as u8]);
        want.extend_from_slice(&raw);
        assert_eq!(b, want);
        assert_eq!(decode_lease(&want).unwrap().metadata.resource_version, "7");
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // managedFields (17) and labels (11) inside metadata, and an unknown spec field.
        let mut raw = Vec::new();
        let meta = [
            0x0a, 1, b'n', 0x32, 2, b'4', b'2', 0x5a, 4, 0x0a, 0, 0x12, 0, 0x8a, 0x01, 3, 0x0a, 1,
            b'x',
        ];
        raw.push(0x0a);
        raw.push(meta.len() as u8);
        raw.extend_from_slice(&meta);
        raw.extend_from_slice(&[0x12, 2, 0x40, 0x01]);
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "coordination.k8s.io/v1".into(),
                kind: "Lease".into(),
            }),
            raw,
            ..Default::default()
        };
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&env.encode_to_vec());
        let l = decode_lease(&body).unwrap();
        assert_eq!(l.metadata.name, "n");
        assert_eq!(l.metadata.resource_version, "42");
    }

    #[test]
    fn wrong_kind_missing_magic_and_garbage_are_errors() {
        assert_eq!(
            decode_lease(b"{\"kind\":\"Lease\"}"),
            Err(ProtoError::NoMagic)
        );
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "v1".into(),
                kind: "Status".into(),
            }),
            ..Default::default()
        };
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&env.encode_to_vec());
        assert!(matches!(decode_lease(&body), Err(ProtoError::WrongType(_))));
        assert!(matches!(
            decode_lease(b"k8s\0\x0a\xff\xff\xff\xff\x0f"),
            Err(ProtoError::Decode(_))
        ));
        // Every prefix of a valid body, and bytes flipped: errors or values, never a panic.
        let good = encode_lease(&sample());
        for n in 0..good.len() {
            let _ = decode_lease(&good[..n]);
        }
        let mut x: u32 = 0x9e37_79b9;
        for _ in 0..2000 {
            let mut b = good.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let i = 4 + (x as usize) % (b.len() - 4);
                b[i] = (x >> 8) as u8;
            }
            let _ = decode_lease(&b);
        }
    }

    #[test]
    fn status_round_trip_and_pinned_bytes() {
        let raw = WireStatus {
            message: "the object has been modified".into(),
            reason: "Conflict".into(),
            details: Some(WireStatusDetails {
                retry_after_seconds: 3,
            }),
            code: 409,
        }
        .encode_to_vec();
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "v1".into(),
                kind: "Status".into(),
            }),
            raw,
            ..Default::default()
        };
        let mut body = MAGIC.to_vec();
        body.extend_from_slice(&env.encode_to_vec());
        let s = decode_status(&body).unwrap();
        assert_eq!(s.reason, "Conflict");
        assert_eq!(s.code, 409);
        assert_eq!(s.retry_after_seconds, 3);
        // message (3) and code (6) as the apimachinery numbers put them.
        let env = Unknown::decode(&body[4..]).unwrap();
        assert_eq!(env.raw[0], 0x1a);
        assert!(decode_lease(&body).is_err());
        assert!(decode_status(&encode_lease(&sample())).is_err());
        for n in 0..body.len() {
            let _ = decode_status(&body[..n]);
        }
    }

    #[test]
    fn out_of_range_times_are_dropped() {
        let mut l = sample();
        l.spec.renew_time = None;
        let mut b = encode_lease(&l);
        let env = Unknown::decode(&b[4..]).unwrap();
        let mut w = WireLease::decode(env.raw.as_slice()).unwrap();
        w.spec.as_mut().unwrap().renew_time = Some(Timestamp {
            seconds: -5,
            nanos: 2_000_000_000,
        });
        w.spec.as_mut().unwrap().acquire_time = Some(Timestamp {
            seconds: 253_402_300_800,
            nanos: 0,
        });
        let env = Unknown {
            raw: w.encode_to_vec(),
            ..env
        };
        b.truncate(4);
        b.extend_from_slice(&env.encode_to_vec());
        let d = decode_lease(&b).unwrap();
        assert_eq!(d.spec.renew_time, None);
        assert_eq!(d.spec.acquire_time, None);
    }

    #[test]
    fn metadata_of_a_partial_object_or_of_the_whole_lease() {
        let l = sample();
        let meta = WireMetaOnly {
            metadata: Some(Meta {
                name: "edge-7".into(),
                namespace: "kube-node-lease".into(),
                resource_version: "48214".into(),
                ..Default::default()
            }),
        };
        let env = Unknown {
            type_meta: Some(TypeMeta {
                api_version: "meta.k8s.io/v1".into(),
                kind: "PartialObjectMetadata".into(),
            }),
            raw: meta.encode_to_vec(),
            content_encoding: String::new(),
            content_type: String::new(),
        };
        let mut partial = MAGIC.to_vec();
        partial.extend_from_slice(&env.encode_to_vec());
        let (kind, m) = decode_metadata(&partial).unwrap();
        assert_eq!(kind, "PartialObjectMetadata");
        assert_eq!(
            (m.name.as_str(), m.resource_version.as_str()),
            ("edge-7", "48214")
        );
        // Not a Lease, and said so.
        assert!(matches!(
            decode_lease(&partial),
            Err(ProtoError::WrongType(_))
        ));

        let (kind, m) = decode_metadata(&encode_lease(&l)).unwrap();
        assert_eq!(kind, "Lease");
        assert_eq!(m, l.metadata);
        assert!(decode_metadata(b"k8s\0\x0a\x02").is_err());
        assert!(decode_metadata(b"{}").is_err());
    }
}
