//! HTTP/1.1 on one connection: request heads parsed with `httparse` (bounded size, bounded
//! time), responses written whole or chunked. No request bodies: the kubelet API routes served
//! here take none, so a request with one is answered and the connection closed.

use std::time::{Duration, Instant};

use smol::future::FutureExt;

use super::conn::TlsConn;

/// Largest request head (request line + headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
pub const MAX_HEADERS: usize = 64;

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    /// The raw request target (checked by `path`).
    pub target: String,
    /// Header names lowercased; values lossily decoded.
    pub headers: Vec<(String, String)>,
    /// HTTP/1.1 without `Connection: close` (HTTP/1.0 closes).
    pub keep_alive: bool,
}

impl RequestHead {
    /// The first value of a header (name lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The request announces a body.
    pub fn has_body(&self) -> bool {
        self.header("transfer-encoding").is_some()
            || self
                .header("content-length")
                .is_some_and(|v| v.trim() != "0")
    }
}

/// Why no request head could be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The peer closed (or sent nothing) before a request began: no answer is due.
    Closed,
    /// Head over [`MAX_HEAD`] or too many headers: 431.
    TooLarge,
    /// Not HTTP/1.x: 400.
    Malformed(String),
    /// The head did not arrive in time: 408.
    Timeout,
}

/// Parses a complete head at the start of `buf`: the head and its length, or None when more
/// bytes are needed.
pub fn parse_head(buf: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= MAX_HEAD {
                Err(HeadError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e.to_string())),
    };
    if n > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let version = req.version.unwrap_or(0);
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let connection = headers
        .iter()
        .find(|(k, _)| k == "connection")
        .map(|(_, v)| v.to_ascii_lowercase());
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => version == 1,
    };
    Ok(Some((
        RequestHead {
            method,
            target,
            headers,
            keep_alive,
        },
        n,
    )))
}

/// Reads the next request head. `buf` keeps bytes that arrived after it (pipelining). The
/// first byte may take `idle`; the rest of the head must follow within `header_timeout`.
pub async fn read_head(
    conn: &mut TlsConn,
    buf: &mut Vec<u8>,
    idle: Duration,
    header_timeout: Duration,
) -> Result<RequestHead, HeadError> {
    let mut deadline = Instant::now() + if buf.is_empty() { idle } else { header_timeout };
    let mut started = !buf.is_empty();
    loop {
        if let Some((head, n)) = parse_head(buf)? {
            buf.drain(..n);
            return Ok(head);
        }
        let mut chunk = [0u8; 4096];
        let read = async { Some(conn.read(&mut chunk).await) };
        let timer = async {
            smol::Timer::at(deadline).await;
            None
        };
        match read.or(timer).await {
            None if started => return Err(HeadError::Timeout),
            None => return Err(HeadError::Closed),
            Some(Ok(0)) if started => {
                return Err(HeadError::Malformed("connection closed mid-request".into()))
            }
            Some(Ok(0)) | Some(Err(_)) => return Err(HeadError::Closed),
            Some(Ok(n)) => {
                if !started {
                    started = true;
                    deadline = Instant::now() + header_timeout;
                }
                buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            }
        }
    }
}

/// The reason phrase of the codes this server sends.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A whole response: status, content type, body (`Content-Length` set).
pub fn response(code: u16, content_type: &str, body: &[u8], keep_alive: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nX-Content-Type-Options: nosniff\r\n{}\r\n",
        reason(code),
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" }
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A plain-text error as Go's `http.Error` writes it (message plus newline).
pub fn text(code: u16, msg: &str, keep_alive: bool) -> Vec<u8> {
    response(
        code,
        "text/plain; charset=utf-8",
        format!("{msg}\n").as_bytes(),
        keep_alive,
    )
}

/// The head of a chunked response.
pub fn chunked_head(code: u16, content_type: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\nX-Content-Type-Options: nosniff\r\n\r\n",
        reason(code)
    )
    .into_bytes()
}

/// One chunk (empty data gives nothing: the terminator is [`LAST_CHUNK`]).
pub fn chunk(data: &[u8]) -> Vec<u8> {
    if data.is_empty() {
        return Vec::new();
    }
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_wait_for_more() {
        let raw = b"GET /pods?x=1 HTTP/1.1\r\nHost: n\r\nAuthorization: Bearer t\r\n\r\nGET";
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!((h.method.as_str(), h.target.as_str()), ("GET", "/pods?x=1"));
        assert_eq!(h.header("authorization"), Some("Bearer t"));
        assert!(h.keep_alive && !h.has_body());
        assert_eq!(&raw[n..], b"GET");
        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost:").unwrap(), None);
        let (h, _) = parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let (h, _) =
            parse_head(b"POST / HTTP/1.1\r\nConnection: close\r\nContent-Length: 3\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(!h.keep_alive && h.has_body());
    }

    #[test]
    fn oversized_and_malformed_heads_are_refused() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        while big.len() < MAX_HEAD {
            big.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&big), Err(HeadError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
        assert!(matches!(
            parse_head(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn responses_and_chunks() {
        let r = text(404, "pod \"x\" does not exist", true);
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 23\r\n"));
        assert!(s.ends_with("\r\n\r\npod \"x\" does not exist\n"));
        assert_eq!(chunk(b"hello"), b"5\r\nhello\r\n");
        assert!(chunk(b"").is_empty());
    }
}
