//! Durations written the way Kubernetes configuration writes them (Go's `time.Duration`
//! text): `"10s"`, `"1m30s"`, `"1.5h"`, `"250ms"`, `"0"`. Integer arithmetic, no floats.

use std::fmt;
use std::time::Duration;

/// Why a duration text was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    /// Not of the form `<number><unit>...` (the offending text).
    Malformed(String),
    /// A unit other than ns, us, µs, ms, s, m, h.
    UnknownUnit(String),
    /// Negative durations make no sense for tinylet's settings.
    Negative,
    /// More than about 584 years.
    Overflow,
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurationError::Empty => f.write_str("empty duration"),
            DurationError::Malformed(s) => write!(
                f,
                "malformed duration {s:?} (expected e.g. \"10s\", \"1m30s\", \"500ms\")"
            ),
            DurationError::UnknownUnit(u) => {
                write!(f, "unknown duration unit {u:?} (use ns, us, ms, s, m, h)")
            }
            DurationError::Negative => f.write_str("duration must not be negative"),
            DurationError::Overflow => f.write_str("duration is too large"),
        }
    }
}

impl std::error::Error for DurationError {}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Parses a Go-style duration.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Malformed(text.to_string()));
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, tail) = rest.split_at(num_len);
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(tail.len(), |(i, _)| i);
        let (unit, tail) = tail.split_at(unit_len);
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(DurationError::Malformed(text.to_string()));
        }
        if unit.is_empty() {
            return Err(DurationError::Malformed(text.to_string()));
        }
        let per = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit(unit.to_string()))?;
        let mut component: u128 = 0;
        for b in int_part.bytes() {
            component = component
                .checked_mul(10)
                .and_then(|c| c.checked_add(u128::from(b - b'0')))
                .ok_or(DurationError::Overflow)?;
        }
        component = component.checked_mul(per).ok_or(DurationError::Overflow)?;
        // Fractions finer than a nanosecond are dropped, as Go does.
        let mut scale = per;
        for b in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            component += u128::from(b - b'0') * scale;
        }
        total = total
            .checked_add(component)
            .ok_or(DurationError::Overflow)?;
        rest = tail;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative);
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow)?;
    Ok(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        let cases = [
            ("10s", Duration::from_secs(10)),
            ("1m30s", Duration::from_secs(90)),
            ("1h", Duration::from_secs(3600)),
            ("2h45m", Duration::from_secs(9900)),
            ("1.5h", Duration::from_secs(5400)),
            ("500ms", Duration::from_millis(500)),
            ("300us", Duration::from_micros(300)),
            ("300µs", Duration::from_micros(300)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0s", Duration::ZERO),
            (".5s", Duration::from_millis(500)),
            ("1.000000000001s", Duration::from_secs(1)),
            (" 20s ", Duration::from_secs(20)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("-5s"), Err(DurationError::Negative));
        for t in ["10", "s", "1..5s", "abc", "1s2", "-", "."] {
            assert!(
                matches!(
                    parse_duration(t),
                    Err(DurationError::Malformed(_) | DurationError::UnknownUnit(_))
                ),
                "{t}: {:?}",
                parse_duration(t)
            );
        }
        assert_eq!(
            parse_duration("10x"),
            Err(DurationError::UnknownUnit("x".into()))
        );
        assert_eq!(
            parse_duration("10 s"),
            Err(DurationError::UnknownUnit(" s".into()))
        );
        assert_eq!(parse_duration("6000000h"), Err(DurationError::Overflow));
        assert_eq!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow)
        );
    }
}
