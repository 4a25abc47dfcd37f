//! The request target of the kubelet API: path segments and query pairs, percent-decoded and
//! checked. Pure: bytes in, a [`Target`] or a [`PathError`] out, never a panic (fuzzed).
//!
//! Anything that could name a file outside the intended directory or confuse a later join is
//! refused here, before routing: `.`/`..` segments (also when escaped), NUL and other control
//! bytes, invalid UTF-8, overlong targets or segments.

use std::fmt;

/// Longest request target accepted (upstream Go servers allow more, but no route needs it).
pub const MAX_TARGET: usize = 4096;
/// Longest single path segment (a DNS-1123 subdomain is at most 253).
pub const MAX_SEGMENT: usize = 255;
/// Most path segments.
pub const MAX_SEGMENTS: usize = 16;
/// Most query pairs.
pub const MAX_QUERY_PAIRS: usize = 32;

/// A checked request target.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// Decoded, non-empty path segments (`/containerLogs/ns/p/c` → 4 segments).
    pub segments: Vec<String>,
    /// Decoded query pairs in order (`flag` alone gives `("flag", "")`).
    pub query: Vec<(String, String)>,
}

impl Target {
    /// The first value of a query parameter, as the kubelet's options decoder takes it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a target was refused (each maps to 400 Bad Request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    /// Longer than [`MAX_TARGET`], a segment over [`MAX_SEGMENT`], too many segments or pairs.
    TooLong,
    /// Does not start with `/` (absolute-form and `*` targets are not served).
    NotAbsolute,
    /// A `.` or `..` segment.
    DotSegment,
    /// NUL or another control character, raw or escaped.
    ControlChar,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// Decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::TooLong => "request target too long",
            PathError::NotAbsolute => "request target is not an absolute path",
            PathError::DotSegment => "path segments . and .. are not allowed",
            PathError::ControlChar => "control characters are not allowed in the request target",
            PathError::BadEscape => "malformed percent-escape in the request target",
            PathError::NotUtf8 => "request target is not UTF-8",
        })
    }
}

impl std::error::Error for PathError {}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (`+` as space when `plus` is set); control bytes are refused.
fn decode(s: &str, plus: bool) -> Result<String, PathError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex);
                let lo = b.get(i + 2).copied().and_then(hex);
                let (Some(hi), Some(lo)) = (hi, lo) else {
                    return Err(PathError::BadEscape);
                };
                i += 2;
                hi << 4 | lo
            }
            b'+' if plus => b' ',
            c => c,
        };
        if c < 0x20 || c == 0x7f {
            return Err(PathError::ControlChar);
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

/// Parses an origin-form request target (`/a/b?k=v&flag`).
pub fn parse_target(raw: &str) -> Result<Target, PathError> {
    if raw.len() > MAX_TARGET {
        return Err(PathError::TooLong);
    }
    if raw.bytes().any(|c| c < 0x20 || c == 0x7f) {
        return Err(PathError::ControlChar);
    }
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, q),
        None => (raw, ""),
    };
    // A fragment is never sent by clients; drop it if one is.
    let query = query.split('#').next().unwrap_or("");
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let mut segments = Vec::new();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if segments.len() == MAX_SEGMENTS {
            return Err(PathError::TooLong);
        }
        let seg = decode(part, false)?;
        if seg.len() > MAX_SEGMENT {
            return Err(PathError::TooLong);
        }
        if seg == "." || seg == ".." || seg.contains('/') {
            return Err(PathError::DotSegment);
        }
        segments.push(seg);
    }
    let mut pairs = Vec::new();
    for item in query.split('&').filter(|p| !p.is_empty()) {
        if pairs.len() == MAX_QUERY_PAIRS {
            return Err(PathError::TooLong);
        }
        let (k, v) = item.split_once('=').unwrap_or((item, ""));
        pairs.push((decode(k, true)?, decode(v, true)?));
    }
    Ok(Target {
        segments,
        query: pairs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_query_are_decoded() {
        let t =
            parse_target("/containerLogs/default/web%2D1/app?follow=true&tailLines=10&x").unwrap();
        assert_eq!(t.segments, ["containerLogs", "default", "web-1", "app"]);
        assert_eq!(t.param("follow"), Some("true"));
        assert_eq!(t.param("tailLines"), Some("10"));
        assert_eq!(t.param("x"), Some(""));
        assert_eq!(t.param("nope"), None);
        let t = parse_target("/?sinceTime=2024-01-01T00%3A00%3A00%2B01%3A00&a=b+c").unwrap();
        assert!(t.segments.is_empty());
        assert_eq!(t.param("sinceTime"), Some("2024-01-01T00:00:00+01:00"));
        assert_eq!(t.param("a"), Some("b c"));
    }

    #[test]
    fn hostile_targets_are_refused() {
        for (raw, want) in [
            ("/containerLogs/../etc/x", PathError::DotSegment),
            ("/containerLogs/%2e%2E/etc", PathError::DotSegment),
            ("/containerLogs/./x", PathError::DotSegment),
            ("/a/b%2Fc", PathError::DotSegment),
            ("/a/b%00c", PathError::ControlChar),
            ("/a/b\0c", PathError::ControlChar),
            ("/a?x=%0a", PathError::ControlChar),
            ("/a/%zz", PathError::BadEscape),
            ("/a/%4", PathError::BadEscape),
            ("/a/%ff", PathError::NotUtf8),
            ("a/b", PathError::NotAbsolute),
            ("*", PathError::NotAbsolute),
        ] {
            assert_eq!(parse_target(raw), Err(want), "{raw:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_TARGET));
        assert_eq!(parse_target(&long), Err(PathError::TooLong));
        let seg = format!("/{}", "a".repeat(MAX_SEGMENT + 1));
        assert_eq!(parse_target(&seg), Err(PathError::TooLong));
        let many = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(parse_target(&many), Err(PathError::TooLong));
        let pairs = format!("/?{}", "a=1&".repeat(MAX_QUERY_PAIRS + 1));
        assert_eq!(parse_target(&pairs), Err(PathError::TooLong));
    }

    #[test]
    fn empty_segments_collapse() {
        assert_eq!(parse_target("//pods//").unwrap().segments, ["pods"]);
    }
}
