//! coordination.k8s.io/v1 `Lease` (the node heartbeat) and the API's two time encodings:
//! meta/v1 `Time` (RFC 3339, whole seconds) and `MicroTime` (RFC 3339, 6 fractional digits).
//!
//! Owns formatting and parsing of those timestamps; deciding when to renew is the lease
//! controller's job, not this module's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// The namespace that holds node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// coordination.k8s.io/v1 Lease.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lease {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: LeaseSpec,
}

/// coordination.k8s.io/v1 LeaseSpec; times are MicroTime strings (see [`format_micro_time`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LeaseSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i32>,
}

impl Lease {
    /// A node's heartbeat lease as the kubelet first creates it.
    pub fn for_node(node: &str, duration_seconds: i32, now: SystemTime) -> Self {
        let t = format_micro_time(now);
        Lease {
            api_version: "coordination.k8s.io/v1".into(),
            kind: "Lease".into(),
            metadata: ObjectMeta {
                name: node.into(),
                namespace: NODE_LEASE_NAMESPACE.into(),
                ..Default::default()
            },
            spec: LeaseSpec {
                holder_identity: Some(node.into()),
                lease_duration_seconds: Some(duration_seconds),
                acquire_time: Some(t.clone()),
                renew_time: Some(t),
                lease_transitions: None,
            },
        }
    }
}

/// meta/v1 MicroTime: `2024-05-01T12:00:00.123456Z`.
pub fn format_micro_time(t: SystemTime) -> String {
    let (secs, nanos) = split(t);
    let (date, time) = civil(secs);
    format!("{date}T{time}.{:06}Z", nanos / 1000)
}

/// meta/v1 Time: `2024-05-01T12:00:00Z` (sub-second part dropped, as the API server does).
pub fn format_time(t: SystemTime) -> String {
    let (secs, _) = split(t);
    let (date, time) = civil(secs);
    format!("{date}T{time}Z")
}

/// Parses an RFC 3339 timestamp (`Z` or `±hh:mm` offset, optional fraction); `None` if malformed.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b.len() > 64 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || min > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: u32 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u32::from(b.get(i).copied().unwrap_or(b'0') - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos = nanos.saturating_mul(10);
        }
    }
    let offset_secs = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(c @ (b'+' | b'-')) if i + 6 == b.len() && sep(i + 3, b":") => {
            let h = num(i + 1..i + 3)?;
            let m = num(i + 4..i + 6)?;
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *c == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec.min(59) - offset_secs;
    if secs >= 0 {
        UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
    } else {
        let before = Duration::new(secs.unsigned_abs(), 0);
        UNIX_EPOCH
            .checked_sub(before)?
            .checked_add(Duration::from_nanos(u64::from(nanos)))
    }
}

fn split(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2),
            d.subsec_nanos(),
        ),
        // Before 1970 only on a badly set clock: clamp rather than print negative years.
        Err(_) => (0, 0),
    }
}

fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, (rem % 3600) / 60, rem % 60),
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Gregorian calendar <-> days since 1970-01-01 (Howard Hinnant's civil algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64, micros: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, micros * 1000)
    }

    #[test]
    fn micro_time_has_six_digits() {
        assert_eq!(format_micro_time(at(0, 0)), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            format_micro_time(at(1_714_564_800, 123_456)),
            "2024-05-01T12:00:00.123456Z"
        );
        assert_eq!(
            format_time(at(1_714_564_800, 999_999)),
            "2024-05-01T12:00:00Z"
        );
        assert_eq!(format_time(at(951_782_400, 0)), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn parse_round_trips_formatting() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = at(x % 8_000_000_000, (x >> 40) as u32 % 1_000_000);
            assert_eq!(parse_time(&format_micro_time(t)), Some(t));
        }
    }

    #[test]
    fn parses_offsets_and_fractions() {
        let base = parse_time("2024-05-01T12:00:00Z").unwrap();
        assert_eq!(parse_time("2024-05-01T14:30:00+02:30"), Some(base));
        assert_eq!(parse_time("2024-05-01T10:00:00-02:00"), Some(base));
        assert_eq!(
            parse_time("2024-05-01T12:00:00.5Z"),
            Some(base + Duration::from_millis(500))
        );
        assert_eq!(
            parse_time("2024-05-01T12:00:00.123456789123Z"),
            Some(base + Duration::from_nanos(123_456_789))
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2024-05-01",
            "2024-13-01T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T12:00:00",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00ZZ",
            "２０２４-05-01T12:00:00Z",
            "+024-05-01T12:00:00Z",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn lease_shape() {
        let l = Lease::for_node("n1", 40, at(1_714_564_800, 1));
        let j = serde_json::to_value(&l).unwrap();
        assert_eq!(j["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(j["spec"]["holderIdentity"], "n1");
        assert_eq!(j["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(j["spec"]["renewTime"], "2024-05-01T12:00:00.000001Z");
        let back: Lease = serde_json::from_value(j).unwrap();
        assert_eq!(back, l);
    }
}
