//! Kubernetes resource quantities ("100m", "0.5", "128Mi", "1e3", "1.5Gi").
//!
//! Owns the text form ([`Quantity`]) and its exact conversion to integer millicores and bytes.
//! Arithmetic is done on integers only (no floats), so "0.1" CPU is exactly 100 millicores, and
//! every overflow is an error rather than a wrap or a panic. Fractions that do not land on a
//! whole unit are rounded up, as the API server's `MilliValue()`/`Value()` do.
//! It must not decide what a resource means (which names are CPU or memory): callers do.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// A quantity as written in a manifest; parsed on demand so decoding stays lenient.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(pub String);

impl Quantity {
    /// Wraps a quantity text without checking it.
    pub fn new(text: impl Into<String>) -> Self {
        Quantity(text.into())
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text into its exact components.
    pub fn parse(&self) -> Result<ParsedQuantity, QuantityError> {
        ParsedQuantity::parse(&self.0)
    }

    /// The value in thousandths of a unit (CPU millicores), rounded up.
    pub fn to_millis(&self) -> Result<u64, QuantityError> {
        parse_millis(&self.0)
    }

    /// The value in whole units (memory bytes), rounded up.
    pub fn to_units(&self) -> Result<u64, QuantityError> {
        parse_units(&self.0)
    }

    /// Memory or storage in bytes, rounded up (same as [`Quantity::to_units`]).
    pub fn to_bytes(&self) -> Result<u64, QuantityError> {
        parse_units(&self.0)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_string())
    }
}

// YAML writes `cpu: 1` or `cpu: 0.5` as numbers; the API server accepts both forms.
impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity string or number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Why a quantity text was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuantityError {
    /// The text is empty.
    Empty,
    /// The numeric part is malformed (`text` is the whole quantity).
    InvalidNumber { text: String },
    /// The suffix is not one of the SI, binary-SI or exponent forms.
    InvalidSuffix { text: String, suffix: String },
    /// The value is negative where only non-negative amounts make sense.
    Negative { text: String },
    /// The value does not fit the target unit in 64 bits.
    Overflow { text: String },
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuantityError::Empty => f.write_str("empty quantity"),
            QuantityError::InvalidNumber { text } => {
                write!(f, "invalid quantity {text:?}: malformed number")
            }
            QuantityError::InvalidSuffix { text, suffix } => write!(
                f,
                "invalid quantity {text:?}: unknown suffix {suffix:?} (use n, u, m, k, M, G, T, P, E, Ki..Ei or eN)"
            ),
            QuantityError::Negative { text } => write!(f, "invalid quantity {text:?}: negative"),
            QuantityError::Overflow { text } => write!(f, "quantity {text:?} is too large"),
        }
    }
}

impl std::error::Error for QuantityError {}

/// A quantity split into exact parts: `(-1)^negative * mantissa / 10^frac_digits * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParsedQuantity {
    pub negative: bool,
    pub mantissa: u128,
    pub frac_digits: u32,
    pub exp10: i32,
    pub exp2: u32,
}

/// Largest power of ten held by a u128 (10^38 < 2^128 < 10^39).
const MAX_POW10_U128: u32 = 38;

impl ParsedQuantity {
    /// Parses the Kubernetes quantity grammar: sign? digits[.digits] (binarySI | decimalSI | e±N).
    pub fn parse(text: &str) -> Result<ParsedQuantity, QuantityError> {
        let s = text;
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bad_number = || QuantityError::InvalidNumber {
            text: text.to_string(),
        };
        let (negative, rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let num_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        let (number, suffix) = rest.split_at(num_len);
        let (int_part, frac_part) = match number.split_once('.') {
            Some((i, f)) => (i, f),
            None => (number, ""),
        };
        if frac_part.contains('.') || (int_part.is_empty() && frac_part.is_empty()) {
            return Err(bad_number());
        }
        // Trailing zeros of the fraction carry no value; dropping them keeps "1.000…0" in range.
        let frac_part = frac_part.trim_end_matches('0');
        let mut mantissa: u128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(b - b'0')))
                .ok_or_else(|| QuantityError::Overflow {
                    text: text.to_string(),
                })?;
        }
        let frac_digits = u32::try_from(frac_part.len()).map_err(|_| bad_number())?;
        let (exp10, exp2) = parse_suffix(suffix).ok_or_else(|| QuantityError::InvalidSuffix {
            text: text.to_string(),
            suffix: suffix.to_string(),
        })?;
        Ok(ParsedQuantity {
            negative: negative && mantissa != 0,
            mantissa,
            frac_digits,
            exp10,
            exp2,
        })
    }

    /// The value times 10^`scale`, rounded up to an integer; errors if negative or over u64.
    pub fn scaled_ceil(&self, scale: u32, text: &str) -> Result<u64, QuantityError> {
        if self.negative {
            return Err(QuantityError::Negative {
                text: text.to_string(),
            });
        }
        if self.mantissa == 0 {
            return Ok(0);
        }
        let overflow = || QuantityError::Overflow {
            text: text.to_string(),
        };
        // Net power of ten: positive multiplies the numerator, negative divides.
        let net10 = i64::from(self.exp10) + i64::from(scale) - i64::from(self.frac_digits);
        let mut num = self.mantissa;
        if self.exp2 > 0 {
            num = num.checked_mul(1u128 << self.exp2).ok_or_else(overflow)?;
        }
        let value = if net10 >= 0 {
            let p = u32::try_from(net10).map_err(|_| overflow())?;
            if p > MAX_POW10_U128 {
                return Err(overflow());
            }
            num.checked_mul(10u128.pow(p)).ok_or_else(overflow)?
        } else {
            let p = net10.unsigned_abs();
            if p > u64::from(MAX_POW10_U128) {
                // num < 2^128 < 10^39 <= divisor and num > 0: the quotient rounds up to 1.
                1
            } else {
                let p = u32::try_from(p).map_err(|_| overflow())?;
                let d = 10u128.pow(p);
                num / d + u128::from(num % d != 0)
            }
        };
        u64::try_from(value).map_err(|_| overflow())
    }
}

fn parse_suffix(suffix: &str) -> Option<(i32, u32)> {
    let fixed = match suffix {
        "" => Some((0, 0)),
        "n" => Some((-9, 0)),
        "u" => Some((-6, 0)),
        "m" => Some((-3, 0)),
        "k" => Some((3, 0)),
        "M" => Some((6, 0)),
        "G" => Some((9, 0)),
        "T" => Some((12, 0)),
        "P" => Some((15, 0)),
        "E" => Some((18, 0)),
        "Ki" => Some((0, 10)),
        "Mi" => Some((0, 20)),
        "Gi" => Some((0, 30)),
        "Ti" => Some((0, 40)),
        "Pi" => Some((0, 50)),
        "Ei" => Some((0, 60)),
        _ => None,
    };
    if fixed.is_some() {
        return fixed;
    }
    let exp = suffix.strip_prefix(['e', 'E'])?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6 {
        return None;
    }
    exp.parse::<i32>().ok().map(|e| (e, 0))
}

/// Parses a quantity to thousandths of a unit, rounded up (CPU "100m" → 100, "0.5" → 500).
pub fn parse_millis(text: &str) -> Result<u64, QuantityError> {
    ParsedQuantity::parse(text)?.scaled_ceil(3, text)
}

/// Parses a quantity to whole units, rounded up (memory "128Mi" → 134217728).
pub fn parse_units(text: &str) -> Result<u64, QuantityError> {
    ParsedQuantity::parse(text)?.scaled_ceil(0, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_millicores() {
        for (t, want) in [
            ("100m", 100),
            ("0.5", 500),
            ("1", 1000),
            ("2.25", 2250),
            ("+1", 1000),
            (".1", 100),
            ("1.", 1000),
            ("1e3", 1_000_000),
            ("1E3", 1_000_000),
            ("1e-3", 1),
            ("250000u", 250),
            ("1n", 1),
            ("0", 0),
            ("-0", 0),
            ("0.0001", 1),
            ("1k", 1_000_000),
            ("1.000000000000000000000000000000000000000000000000", 1000),
        ] {
            assert_eq!(parse_millis(t), Ok(want), "{t}");
        }
    }

    #[test]
    fn memory_bytes() {
        for (t, want) in [
            ("128Mi", 128 * 1024 * 1024),
            ("1G", 1_000_000_000),
            ("1e3", 1000),
            ("1.5Gi", 1_610_612_736),
            ("1Ki", 1024),
            ("0.5Ki", 512),
            ("100m", 1),
            ("1E", 1_000_000_000_000_000_000),
            ("8Ei", 9_223_372_036_854_775_808),
            ("15Ei", 17_293_822_569_102_704_640),
            ("18446744073709551615", u64::MAX),
            ("1e-40", 1),
            ("0e99", 0),
        ] {
            assert_eq!(parse_units(t), Ok(want), "{t}");
        }
    }

    #[test]
    fn bad_quantities_are_typed_errors() {
        assert_eq!(parse_units(""), Err(QuantityError::Empty));
        for t in ["abc", ".", "1.2.3", "-", "+", "..5", "Mi", " 1"] {
            assert!(
                matches!(parse_units(t), Err(QuantityError::InvalidNumber { .. })),
                "{t}: {:?}",
                parse_units(t)
            );
        }
        for t in [
            "1K",
            "1mi",
            "1x",
            "1e",
            "1e+",
            "1ee3",
            "1 Mi",
            "1e3.5",
            "1e1234567",
        ] {
            assert!(
                matches!(parse_units(t), Err(QuantityError::InvalidSuffix { .. })),
                "{t}: {:?}",
                parse_units(t)
            );
        }
        assert!(matches!(
            parse_millis("-1"),
            Err(QuantityError::Negative { .. })
        ));
    }

    #[test]
    fn overflow_is_an_error() {
        for t in [
            "16Ei",
            "18446744073709551616",
            "1e20",
            "1e39",
            "1e999999",
            "99999999999999999999999999999999999999999",
            "100Ei",
        ] {
            assert!(
                matches!(parse_units(t), Err(QuantityError::Overflow { .. })),
                "{t}: {:?}",
                parse_units(t)
            );
        }
        assert!(matches!(
            parse_millis("18446744073709552"),
            Err(QuantityError::Overflow { .. })
        ));
        assert_eq!(
            parse_millis("18446744073709551"),
            Ok(18_446_744_073_709_551_000)
        );
    }

    #[test]
    fn serde_accepts_strings_and_numbers() {
        let q: Vec<Quantity> = serde_json::from_str(r#"["100m", 1, 0.5, -2]"#).unwrap();
        assert_eq!(q[0].to_millis(), Ok(100));
        assert_eq!(q[1].to_millis(), Ok(1000));
        assert_eq!(q[1].to_bytes(), Ok(1));
        assert_eq!(q[2].to_millis(), Ok(500));
        assert!(q[3].to_millis().is_err());
        assert_eq!(serde_json::to_string(&q[0]).unwrap(), r#""100m""#);
        assert_eq!(serde_json::to_string(&q[2]).unwrap(), r#""0.5""#);
    }

    #[test]
    fn never_panics_on_a_byte_sweep() {
        // Bounded deterministic sweep over short strings of the quantity alphabet.
        let alphabet = b"0159.+-eEmKkMGiu x";
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 9) as usize;
            let s: String = (0..len)
                .map(|i| alphabet[((state >> (i * 5)) % alphabet.len() as u64) as usize] as char)
                .collect();
            let _ = parse_units(&s);
            let _ = parse_millis(&s);
        }
    }
}
