//! gRPC over HTTP/2, the sans-I/O part: message framing, request headers, response
//! header/trailer interpretation and `grpc-timeout` encoding.
//!
//! Nothing here touches a socket or a clock; the transport feeds bytes and header maps in. All
//! input is untrusted: malformed data yields an [`ErrorKind`], never a panic, and buffering is
//! bounded by the configured maximum message size.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::error::{ErrorKind, GrpcCode};

/// Length of the gRPC message prefix: 1 flag byte + 4 length bytes (big endian).
pub const PREFIX_LEN: usize = 5;

/// Default bound on one message (matches what containerd caps ExecSync output to).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Frames one message body with the uncompressed 5-byte prefix.
pub fn encode_frame(payload: &[u8], max: usize) -> Result<Bytes, ErrorKind> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|_| payload.len() <= max);
    let Some(len) = len else {
        return Err(ErrorKind::MessageTooLarge {
            size: payload.len(),
            max,
        });
    };
    let mut out = BytesMut::with_capacity(PREFIX_LEN + payload.len());
    out.put_u8(0);
    out.put_u32(len);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Encodes a protobuf message into one gRPC frame.
pub fn encode_message<M: prost::Message>(msg: &M, max: usize) -> Result<Bytes, ErrorKind> {
    encode_frame(&msg.encode_to_vec(), max)
}

/// Incremental decoder of length-prefixed gRPC messages; accepts any chunking.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max: usize,
}

impl FrameDecoder {
    /// A decoder that rejects messages larger than `max` bytes.
    pub fn new(max: usize) -> FrameDecoder {
        FrameDecoder {
            buf: BytesMut::new(),
            max,
        }
    }

    /// Appends received bytes; call [`FrameDecoder::next_message`] until it yields `None`.
    pub fn push(&mut self, chunk: &[u8]) {
        self.buf.extend_from_slice(chunk);
    }

    /// Bytes buffered but not yet returned.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Bytes>, ErrorKind> {
        let Some(prefix) = self.buf.get(..PREFIX_LEN) else {
            return Ok(None);
        };
        let flag = prefix.first().copied().unwrap_or(0);
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(prefix.get(1..PREFIX_LEN).unwrap_or(&[0; 4]));
        let len = u32::from_be_bytes(len_bytes) as usize;
        match flag {
            0 => {}
            1 => {
                return Err(ErrorKind::Protocol(
                    "compressed message, but no compression was negotiated".into(),
                ))
            }
            other => return Err(ErrorKind::Protocol(format!("bad message flag {other:#x}"))),
        }
        // Checked before buffering the body, so a hostile length cannot make us allocate.
        if len > self.max {
            return Err(ErrorKind::MessageTooLarge {
                size: len,
                max: self.max,
            });
        }
        if self.buf.len() - PREFIX_LEN < len {
            self.buf.reserve(PREFIX_LEN + len - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(PREFIX_LEN);
        Ok(Some(self.buf.split_to(len).freeze()))
    }

    /// Checks that the stream ended on a message boundary.
    pub fn finish(&self) -> Result<(), ErrorKind> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ErrorKind::Protocol(format!(
                "stream ended inside a message ({} bytes left over)",
                self.buf.len()
            )))
        }
    }
}

/// Formats a deadline as a `grpc-timeout` value (at most 8 digits plus a unit).
pub fn format_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let ms = timeout.as_millis();
    if ms == 0 {
        // Sub-millisecond deadlines still need to be sent as something non-zero.
        let us = timeout.as_micros().clamp(1, MAX);
        return format!("{us}u");
    }
    if ms <= MAX {
        return format!("{ms}m");
    }
    let s = timeout.as_secs() as u128;
    if s <= MAX {
        return format!("{s}S");
    }
    format!("{}H", (s / 3600).min(MAX))
}

/// Builds the request head of a unary call to `path` (e.g. `/runtime.v1.RuntimeService/Version`).
pub fn request_head(path: &str, timeout: Duration) -> Result<http::Request<()>, ErrorKind> {
    // h2 wants an absolute URI; containerd ignores the authority.
    let uri = format!("http://localhost{path}");
    let timeout = HeaderValue::from_str(&format_timeout(timeout))
        .map_err(|e| ErrorKind::Protocol(format!("grpc-timeout: {e}")))?;
    http::Request::builder()
        .method(http::Method::POST)
        .uri(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .header("grpc-timeout", timeout)
        .body(())
        .map_err(|e| ErrorKind::Protocol(format!("building request for {path}: {e}")))
}

/// What the response headers tell us before the body.
#[derive(Debug, PartialEq)]
pub enum Head {
    /// A normal response: body then trailers follow.
    Streaming,
    /// A trailers-only response: the call is over with this OK status and no message.
    TrailersOnlyOk,
}

/// Maps an HTTP status other than 200 to a gRPC code the way gRPC clients do.
fn code_for_http_status(status: StatusCode) -> GrpcCode {
    match status.as_u16() {
        400 => GrpcCode::Internal,
        401 => GrpcCode::Unauthenticated,
        403 => GrpcCode::PermissionDenied,
        404 => GrpcCode::Unimplemented,
        429 | 502 | 503 | 504 => GrpcCode::Unavailable,
        _ => GrpcCode::UnknownError,
    }
}

/// Interprets the response headers: HTTP status, content type and a trailers-only status.
pub fn check_head(status: StatusCode, headers: &HeaderMap) -> Result<Head, ErrorKind> {
    if status != StatusCode::OK {
        return Err(ErrorKind::Status {
            code: code_for_http_status(status),
            message: format!("HTTP status {status}"),
        });
    }
    if headers.contains_key("grpc-status") {
        check_status(headers)?;
        return Ok(Head::TrailersOnlyOk);
    }
    let ct = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct != "application/grpc" && !ct.starts_with("application/grpc+") {
        return Err(ErrorKind::Protocol(format!(
            "unexpected content-type {ct:?}"
        )));
    }
    Ok(Head::Streaming)
}

/// Reads `grpc-status`/`grpc-message` from trailers (or trailers-only headers).
pub fn check_status(trailers: &HeaderMap) -> Result<(), ErrorKind> {
    let Some(raw) = trailers.get("grpc-status") else {
        return Err(ErrorKind::Protocol("response has no grpc-status".into()));
    };
    let code = raw
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| ErrorKind::Protocol(format!("malformed grpc-status {raw:?}")))?;
    let code = GrpcCode::from_u32(code);
    if code == GrpcCode::Ok {
        return Ok(());
    }
    let message = trailers
        .get("grpc-message")
        .map(|v| percent_decode(v.as_bytes()))
        .unwrap_or_default();
    Err(ErrorKind::Status { code, message })
}

/// Decodes a percent-encoded `grpc-message`; malformed escapes are kept literally.
pub fn percent_decode(input: &[u8]) -> String {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        if b == b'%' {
            let hi = input.get(i + 1).copied().and_then(hex);
            let lo = input.get(i + 2).copied().and_then(hex);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes the single message of a unary response.
pub fn decode_message<M: prost::Message + Default>(body: &[u8]) -> Result<M, ErrorKind> {
    M::decode(body).map_err(|e| ErrorKind::Protocol(format!("bad protobuf: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_frames() -> Vec<u8> {
        let mut wire = encode_frame(b"hello", 100).unwrap().to_vec();
        wire.extend_from_slice(&encode_frame(b"", 100).unwrap());
        wire.extend_from_slice(&encode_frame(&[7u8; 40], 100).unwrap());
        wire
    }

    fn decode_in_chunks(wire: &[u8], cuts: &[usize]) -> Vec<Bytes> {
        let mut dec = FrameDecoder::new(100);
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
            dec.push(&wire[start..cut]);
            start = cut;
            while let Some(m) = dec.next_message().unwrap() {
                out.push(m);
            }
        }
        dec.finish().unwrap();
        out
    }

    #[test]
    fn frame_round_trip_at_every_split() {
        let wire = two_frames();
        let want = vec![
            Bytes::from_static(b"hello"),
            Bytes::new(),
            Bytes::from(vec![7u8; 40]),
        ];
        for a in 0..=wire.len() {
            assert_eq!(decode_in_chunks(&wire, &[a]), want, "split at {a}");
            for b in a..=wire.len() {
                assert_eq!(decode_in_chunks(&wire, &[a, b]), want, "split at {a},{b}");
            }
        }
        let singles: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(decode_in_chunks(&wire, &singles), want);
    }

    #[test]
    fn compressed_flag_is_rejected() {
        let mut dec = FrameDecoder::new(100);
        dec.push(&[1, 0, 0, 0, 1, 9]);
        assert!(matches!(dec.next_message(), Err(ErrorKind::Protocol(_))));
        let mut dec = FrameDecoder::new(100);
        dec.push(&[0x80, 0, 0, 0, 0]);
        assert!(matches!(dec.next_message(), Err(ErrorKind::Protocol(_))));
    }

    #[test]
    fn oversized_message_rejected_from_prefix_alone() {
        let mut dec = FrameDecoder::new(16);
        dec.push(&[0, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            dec.next_message(),
            Err(ErrorKind::MessageTooLarge {
                size: 0xffff_ffff,
                max: 16
            })
        ));
        assert!(dec.buffered() < 64);
        assert!(matches!(
            encode_frame(&[0; 17], 16),
            Err(ErrorKind::MessageTooLarge { size: 17, max: 16 })
        ));
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let mut dec = FrameDecoder::new(100);
        dec.push(&[0, 0, 0, 0, 3, 1]);
        assert_eq!(dec.next_message().unwrap(), None);
        assert!(dec.finish().is_err());
    }

    #[test]
    fn timeout_formats() {
        assert_eq!(format_timeout(Duration::from_secs(2)), "2000m");
        assert_eq!(format_timeout(Duration::from_micros(10)), "10u");
        assert_eq!(format_timeout(Duration::ZERO), "1u");
        assert_eq!(format_timeout(Duration::from_secs(200_000)), "200000S");
        assert_eq!(format_timeout(Duration::from_secs(u64::MAX)), "99999999H");
    }

    #[test]
    fn request_head_has_grpc_headers() {
        let req =
            request_head("/runtime.v1.RuntimeService/Version", Duration::from_secs(2)).unwrap();
        assert_eq!(req.method(), http::Method::POST);
        assert_eq!(req.uri().path(), "/runtime.v1.RuntimeService/Version");
        let h = req.headers();
        assert_eq!(h["content-type"], "application/grpc");
        assert_eq!(h["te"], "trailers");
        assert_eq!(h["grpc-timeout"], "2000m");
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn trailers_only_response() {
        let h = headers(&[
            ("content-type", "application/grpc"),
            ("grpc-status", "5"),
            ("grpc-message", "image %22x%22 not found"),
        ]);
        match check_head(StatusCode::OK, &h) {
            Err(ErrorKind::Status { code, message }) => {
                assert_eq!(code, GrpcCode::NotFound);
                assert_eq!(message, "image \"x\" not found");
            }
            other => panic!("unexpected {other:?}"),
        }
        let ok = headers(&[("grpc-status", "0")]);
        assert_eq!(
            check_head(StatusCode::OK, &ok).unwrap(),
            Head::TrailersOnlyOk
        );
    }

    #[test]
    fn head_checks() {
        let h = headers(&[("content-type", "application/grpc")]);
        assert_eq!(check_head(StatusCode::OK, &h).unwrap(), Head::Streaming);
        let h = headers(&[("content-type", "application/grpc+proto")]);
        assert_eq!(check_head(StatusCode::OK, &h).unwrap(), Head::Streaming);
        let h = headers(&[("content-type", "text/html")]);
        assert!(matches!(
            check_head(StatusCode::OK, &h),
            Err(ErrorKind::Protocol(_))
        ));
        assert!(matches!(
            check_head(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            Err(ErrorKind::Status {
                code: GrpcCode::Unavailable,
                ..
            })
        ));
        assert!(matches!(
            check_head(StatusCode::NOT_FOUND, &HeaderMap::new()),
            Err(ErrorKind::Status {
                code: GrpcCode::Unimplemented,
                ..
            })
        ));
    }

    #[test]
    fn trailer_status() {
        assert!(check_status(&headers(&[("grpc-status", "0")])).is_ok());
        assert!(matches!(
            check_status(&HeaderMap::new()),
            Err(ErrorKind::Protocol(_))
        ));
        assert!(matches!(
            check_status(&headers(&[("grpc-status", "x1")])),
            Err(ErrorKind::Protocol(_))
        ));
        assert!(matches!(
            check_status(&headers(&[("grpc-status", "99")])),
            Err(ErrorKind::Status {
                code: GrpcCode::Unknown(99),
                ..
            })
        ));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode(b"plain"), "plain");
        assert_eq!(percent_decode(b"a%20b%25c"), "a b%c");
        assert_eq!(percent_decode(b"%E2%82%AC"), "\u{20ac}");
        assert_eq!(percent_decode(b"bad %zz and %4"), "bad %zz and %4");
        assert_eq!(percent_decode(b"%"), "%");
        assert_eq!(percent_decode(b"%FF"), "\u{fffd}");
    }

    #[test]
    fn garbage_never_panics() {
        // xorshift64: deterministic, bounded pseudo-random input.
        let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..3000 {
            let len = (next() % 64) as usize;
            let mut data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if next() % 2 == 0 {
                // Make the prefix plausible so the body paths are exercised too.
                if let Some(f) = data.first_mut() {
                    *f = 0;
                }
            }
            let mut dec = FrameDecoder::new(32);
            let mut pos = 0;
            while pos < data.len() {
                let take = 1 + (next() % 8) as usize;
                let end = (pos + take).min(data.len());
                dec.push(&data[pos..end]);
                pos = end;
                while let Ok(Some(m)) = dec.next_message() {
                    let _ = super::super::proto::decode_every_response(&m);
                }
            }
            let _ = dec.finish();
            let _ = percent_decode(&data);
        }
    }
}
