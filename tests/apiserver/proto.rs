//! Content negotiation for `application/vnd.kubernetes.protobuf`, as a real server answers a
//! client that asks for it: Leases and Status objects (the kinds its clients ask for) encoded
//! with the `k8s\0` magic and the runtime.Unknown envelope; JSON for everything else when the
//! client also accepts JSON, 406 otherwise. Media ranges with
//! `as=PartialObjectMetadata;g=meta.k8s.io;v=v1` (or `v1beta1`) get the object's metadata alone,
//! in JSON or protobuf, as the real handlers transform any single-object answer (GET, PATCH,
//! PUT, POST); error Statuses are never transformed (the next range without `as` applies), a
//! list asked for as PartialObjectMetadata is 406, and other `as=` targets (Table,
//! PartialObjectMetadataList) are skipped here. Ranges are taken in the order sent.
//!
//! The encoder is written here from the JSON objects the store keeps, field numbers from
//! k8s.io/apimachinery and k8s.io/api, independently of the agent's own decoder.

use serde_json::{json, Value};

/// Media type of the protobuf encoding.
pub const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// What to send for `accept`: (content type, body), or the message of a 406 answer.
pub fn negotiate(accept: Option<&str>, body: &Value) -> Result<(&'static str, Vec<u8>), String> {
    let accept = accept.unwrap_or("*/*");
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    let is_error = kind == "Status";
    let is_list = kind.ends_with("List") || body.get("items").is_some();
    for part in accept.split(',') {
        let mut fields = part.split(';');
        let media = fields.next().unwrap_or("").trim();
        let params: Vec<(&str, &str)> = fields
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        let proto = media == PROTOBUF;
        if !proto && !matches!(media, "application/json" | "application/*" | "*/*" | "") {
            continue;
        }
        let object = match param("as") {
            None => body.clone(),
            Some(target) => {
                let meta_gv = param("g") == Some("meta.k8s.io")
                    && matches!(param("v"), Some("v1" | "v1beta1"));
                if is_error || !meta_gv || target != "PartialObjectMetadata" {
                    continue;
                }
                if is_list {
                    return Err(format!(
                        "you requested PartialObjectMetadata, but the requested object is a list ({kind})"
                    ));
                }
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": format!("meta.k8s.io/{}", param("v").unwrap_or("v1")),
                    "metadata": body.get("metadata").cloned().unwrap_or_else(|| json!({})),
                })
            }
        };
        if proto {
            match encode(&object) {
                Some(b) => return Ok((PROTOBUF, b)),
                None => continue,
            }
        }
        return Ok((
            "application/json",
            serde_json::to_vec(&object).unwrap_or_default(),
        ));
    }
    Err("only the following media types are accepted: application/json".into())
}

/// The protobuf body for the kinds this server encodes.
pub fn encode(v: &Value) -> Option<Vec<u8>> {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = v.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let raw = match (kind, api_version) {
        ("Lease", "coordination.k8s.io/v1") => lease(v),
        ("Status", "v1") | ("Status", "") => status(v),
        ("PartialObjectMetadata", "meta.k8s.io/v1" | "meta.k8s.io/v1beta1") => {
            let mut out = Vec::new();
            put_msg(
                &mut out,
                1,
                &object_meta(v.get("metadata").unwrap_or(&Value::Null)),
            );
            out
        }
        _ => return None,
    };
    let mut tm = Vec::new();
    put_str(
        &mut tm,
        1,
        if api_version.is_empty() {
            "v1"
        } else {
            api_version
        },
    );
    put_str(&mut tm, 2, kind);
    let mut env = Vec::new();
    put_msg(&mut env, 1, &tm);
    put_bytes(&mut env, 2, &raw);
    let mut out = b"k8s\0".to_vec();
    out.extend_from_slice(&env);
    Some(out)
}

fn varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

fn put_bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_msg(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    put_bytes(out, field, b);
}

fn put_str(out: &mut Vec<u8>, field: u32, s: &str) {
    put_bytes(out, field, s.as_bytes());
}

fn put_int(out: &mut Vec<u8>, field: u32, x: i64) {
    key(out, field, 0);
    varint(out, x as u64);
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// RFC 3339 `YYYY-MM-DDTHH:MM:SS[.frac]Z` → (seconds, nanos).
fn parse_time(t: &str) -> Option<(i64, i32)> {
    let n = |a: usize, b: usize| t.get(a..b)?.parse::<i64>().ok();
    let (y, mo, d) = (n(0, 4)?, n(5, 7)?, n(8, 10)?);
    let (h, mi, se) = (n(11, 13)?, n(14, 16)?, n(17, 19)?);
    let frac = t.get(19..)?.trim_end_matches('Z');
    let nanos = match frac.strip_prefix('.') {
        Some(f) if !f.is_empty() && f.len() <= 9 => {
            f.parse::<i64>().ok()? * 10i64.pow(9 - f.len() as u32)
        }
        _ => 0,
    };
    // Days from civil (proleptic Gregorian).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + se, nanos as i32))
}

fn put_time(out: &mut Vec<u8>, field: u32, v: Option<&Value>) {
    if let Some((secs, nanos)) = v.and_then(Value::as_str).and_then(parse_time) {
        let mut t = Vec::new();
        put_int(&mut t, 1, secs);
        if nanos != 0 {
            put_int(&mut t, 2, i64::from(nanos));
        }
        put_msg(out, field, &t);
    }
}

fn object_meta(m: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    for (f, k) in [
        (1, "name"),
        (2, "generateName"),
        (3, "namespace"),
        (5, "uid"),
        (6, "resourceVersion"),
    ] {
        if let Some(x) = s(m, k) {
            put_str(&mut out, f, x);
        }
    }
    if let Some(g) = m.get("generation").and_then(Value::as_i64) {
        put_int(&mut out, 7, g);
    }
    put_time(&mut out, 8, m.get("creationTimestamp"));
    put_time(&mut out, 9, m.get("deletionTimestamp"));
    for (f, k) in [(11, "labels"), (12, "annotations")] {
        for (mk, mv) in m.get(k).and_then(Value::as_object).into_iter().flatten() {
            let mut e = Vec::new();
            put_str(&mut e, 1, mk);
            put_str(&mut e, 2, mv.as_str().unwrap_or(""));
            put_msg(&mut out, f, &e);
        }
    }
    for o in m
        .get("ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut e = Vec::new();
        for (f, k) in [(1, "kind"), (3, "name"), (4, "uid"), (5, "apiVersion")] {
            put_str(&mut e, f, s(o, k).unwrap_or(""));
        }
        for (f, k) in [(6, "controller"), (7, "blockOwnerDeletion")] {
            if let Some(b) = o.get(k).and_then(Value::as_bool) {
                put_int(&mut e, f, i64::from(b));
            }
        }
        put_msg(&mut out, 13, &e);
    }
    for f in m
        .get("finalizers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_str(&mut out, 14, f.as_str().unwrap_or(""));
    }
    for e in m
        .get("managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let mut b = Vec::new();
        for (f, k) in [(1, "manager"), (2, "operation"), (3, "apiVersion")] {
            if let Some(x) = s(e, k) {
                put_str(&mut b, f, x);
            }
        }
        put_time(&mut b, 4, e.get("time"));
        if let Some(x) = s(e, "fieldsType") {
            put_str(&mut b, 6, x);
        }
        if let Some(fv) = e.get("fieldsV1") {
            let mut raw = Vec::new();
            put_bytes(&mut raw, 1, &serde_json::to_vec(fv).unwrap_or_default());
            put_msg(&mut b, 7, &raw);
        }
        if let Some(x) = s(e, "subresource") {
            put_str(&mut b, 8, x);
        }
        put_msg(&mut out, 17, &b);
    }
    out
}

fn lease(v: &Value) -> Vec<u8> {
    let null = Value::Null;
    let spec = v.get("spec").unwrap_or(&null);
    let mut sp = Vec::new();
    if let Some(h) = s(spec, "holderIdentity") {
        put_str(&mut sp, 1, h);
    }
    if let Some(d) = spec.get("leaseDurationSeconds").and_then(Value::as_i64) {
        put_int(&mut sp, 2, d);
    }
    put_time(&mut sp, 3, spec.get("acquireTime"));
    put_time(&mut sp, 4, spec.get("renewTime"));
    if let Some(t) = spec.get("leaseTransitions").and_then(Value::as_i64) {
        put_int(&mut sp, 5, t);
    }
    let mut out = Vec::new();
    put_msg(
        &mut out,
        1,
        &object_meta(v.get("metadata").unwrap_or(&null)),
    );
    put_msg(&mut out, 2, &sp);
    out
}

fn status(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_msg(&mut out, 1, &[]);
    for (f, k) in [(2, "status"), (3, "message"), (4, "reason")] {
        if let Some(x) = s(v, k) {
            put_str(&mut out, f, x);
        }
    }
    if let Some(d) = v.get("details").filter(|d| d.is_object()) {
        let mut b = Vec::new();
        for (f, k) in [(1, "name"), (2, "group"), (3, "kind"), (6, "uid")] {
            if let Some(x) = s(d, k) {
                put_str(&mut b, f, x);
            }
        }
        if let Some(r) = d.get("retryAfterSeconds").and_then(Value::as_i64) {
            put_int(&mut b, 5, r);
        }
        put_msg(&mut out, 5, &b);
    }
    if let Some(c) = v.get("code").and_then(Value::as_i64) {
        put_int(&mut out, 6, c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_the_store_writes_them() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_time("2026-11-28T05:40:00.123456Z"),
            Some((1_795_844_400, 123_456_000))
        );
        assert_eq!(parse_time("garbage"), None);
    }

    const PARTIAL: &str = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, application/json";

    fn lease() -> Value {
        json!({
            "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
            "metadata": {"name": "n1", "namespace": "kube-node-lease", "resourceVersion": "42"},
            "spec": {"holderIdentity": "n1", "renewTime": "2026-11-28T05:40:00.123456Z"},
        })
    }

    #[test]
    fn partial_object_metadata_carries_the_metadata_alone() {
        let (ctype, b) = negotiate(Some(PARTIAL), &lease()).unwrap();
        assert_eq!(ctype, PROTOBUF);
        let full = encode(&lease()).unwrap();
        assert!(b.len() < full.len(), "{} vs {}", b.len(), full.len());
        let text = String::from_utf8_lossy(&b);
        assert!(text.contains("PartialObjectMetadata") && text.contains("meta.k8s.io/v1"));
        assert!(text.contains("kube-node-lease"), "the metadata is kept");

        let (ctype, b) = negotiate(
            Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"),
            &lease(),
        )
        .unwrap();
        assert_eq!(ctype, "application/json");
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["kind"], "PartialObjectMetadata");
        assert_eq!(v["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(v["metadata"]["resourceVersion"], "42");
        assert!(v.get("spec").is_none());
    }

    #[test]
    fn errors_and_unknown_targets_fall_through_to_plain_ranges() {
        let st = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409});
        let (ctype, b) = negotiate(Some(PARTIAL), &st).unwrap();
        assert_eq!(ctype, "application/json");
        assert_eq!(
            serde_json::from_slice::<Value>(&b).unwrap()["kind"],
            "Status"
        );
        let table = "application/json;as=Table;g=meta.k8s.io;v=v1, application/json";
        let (_, b) = negotiate(Some(table), &lease()).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&b).unwrap()["kind"],
            "Lease"
        );
        let other_group = "application/json;as=PartialObjectMetadata;g=apps;v=v1";
        assert!(negotiate(Some(other_group), &lease()).is_err());
    }

    #[test]
    fn a_list_asked_for_as_partial_object_metadata_is_not_acceptable() {
        let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []});
        let err = negotiate(Some(PARTIAL), &list).unwrap_err();
        assert!(err.contains("is a list"), "{err}");
    }
}
