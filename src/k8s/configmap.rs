//! core/v1 `ConfigMap` and `Secret`, and `ByteString`: the API's base64 encoding of raw bytes
//! (also used by certificate requests).
//!
//! Owns the shapes and the base64 codec; writing keys into volumes is the volume code's job.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::meta::ObjectMeta;

/// core/v1 ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMap {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub data: BTreeMap<String, String>,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub binary_data: BTreeMap<String, ByteString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// core/v1 Secret; `data` values arrive base64-encoded and are held decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Secret {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub secret_type: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub data: BTreeMap<String, ByteString>,
    /// Write-only convenience field; the server folds it into `data`.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub string_data: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

fn null_map<'de, D, V>(d: D) -> Result<BTreeMap<String, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    Ok(Option::<BTreeMap<String, V>>::deserialize(d)?.unwrap_or_default())
}

/// Raw bytes carried as standard base64 in JSON (Go's `[]byte`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ByteString(pub Vec<u8>);

impl fmt::Debug for ByteString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets end up here: never print the content.
        write!(f, "ByteString({} bytes)", self.0.len())
    }
}

impl Serialize for ByteString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64_encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for ByteString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?.unwrap_or_default();
        base64_decode(&s)
            .map(ByteString)
            .ok_or_else(|| D::Error::custom("invalid base64 in a bytes field"))
    }
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sym = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

/// Standard base64; padding optional, no whitespace; `None` on any invalid input.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding, or the text was not canonical.
    if acc != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), enc);
            assert_eq!(base64_decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(base64_decode("Zm8").unwrap(), b"fo");
    }

    #[test]
    fn base64_round_trip_all_lengths() {
        let data: Vec<u8> = (0..=255u8).collect();
        for n in 0..data.len() {
            let d = &data[..n];
            assert_eq!(base64_decode(&base64_encode(d)).unwrap(), d);
        }
    }

    #[test]
    fn base64_rejects_garbage() {
        for bad in ["Z", "Zm9v!", "Zm 9v", "Zh==", "é"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn secret_data_is_decoded_and_debug_hides_it() {
        let s: Secret = serde_json::from_str(
            r#"{"kind":"Secret","metadata":{"name":"s"},"type":"Opaque","data":{"k":"aGVsbG8="}}"#,
        )
        .unwrap();
        assert_eq!(s.data["k"].0, b"hello");
        assert!(!format!("{s:?}").contains("hello"));
        let back: Secret = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert!(serde_json::from_str::<Secret>(r#"{"data":{"k":"!!"}}"#).is_err());
    }

    #[test]
    fn configmap_round_trip_and_nulls() {
        let c: ConfigMap = serde_json::from_str(
            r#"{"metadata":{"name":"kube-root-ca.crt","namespace":"d"},"data":{"ca.crt":"PEM"},"binaryData":null}"#,
        )
        .unwrap();
        assert_eq!(c.data["ca.crt"], "PEM");
        let back: ConfigMap = serde_json::from_value(serde_json::to_value(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
