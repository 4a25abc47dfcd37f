//! HTTP/1.1 framing for the test API server: request heads and bodies in (Content-Length or
//! chunked), responses out (Content-Length or chunked), keep-alive decisions.
//!
//! It owns bytes only; it knows nothing of Kubernetes, identities or faults.

use std::fmt;
use std::io::{self, BufRead, Read, Write};

/// Largest request head accepted (request line + headers).
pub const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted.
pub const MAX_BODY: usize = 32 << 20;

/// Why a request could not be read.
#[derive(Debug)]
pub enum HttpError {
    /// The socket failed.
    Io(io::Error),
    /// The peer closed in the middle of a request.
    Truncated,
    /// The bytes are not HTTP/1.1.
    Malformed(&'static str),
    /// A limit was exceeded.
    TooLarge(&'static str),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "reading request: {e}"),
            HttpError::Truncated => write!(f, "reading request: connection closed mid-request"),
            HttpError::Malformed(w) => write!(f, "reading request: malformed {w}"),
            HttpError::TooLarge(w) => write!(f, "reading request: {w} too large"),
        }
    }
}

impl std::error::Error for HttpError {}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// A parsed request line and headers.
#[derive(Clone, Debug, Default)]
pub struct RequestHead {
    /// GET, POST, ...
    pub method: String,
    /// The request target as sent (path and query).
    pub target: String,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: String,
    /// Headers in order, names as sent.
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    /// First header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query, percent-decoded.
    pub fn path(&self) -> String {
        let p = self.target.split('?').next().unwrap_or("");
        percent_decode(p)
    }

    /// Query parameters, percent-decoded, in order.
    pub fn query(&self) -> Vec<(String, String)> {
        match self.target.split_once('?') {
            None => Vec::new(),
            Some((_, q)) => q
                .split('&')
                .filter(|kv| !kv.is_empty())
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (percent_decode(k), percent_decode(v)),
                    None => (percent_decode(kv), String::new()),
                })
                .collect(),
        }
    }

    /// Whether the client wants the connection kept open after this exchange.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        if self.version == "HTTP/1.0" {
            conn.contains("keep-alive")
        } else {
            !conn.contains("close")
        }
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes %XX escapes and '+' (as space, as Go's query parser does); invalid escapes stay.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let c = b.get(i).copied().unwrap_or(0);
        if c == b'%' {
            if let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|&x| hex_val(x)),
                b.get(i + 2).and_then(|&x| hex_val(x)),
            ) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' { b' ' } else { c });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a request head (everything before the blank line). Pure; never panics.
pub fn parse_head(buf: &[u8]) -> Result<RequestHead, HttpError> {
    let text = std::str::from_utf8(buf).map_err(|_| HttpError::Malformed("head encoding"))?;
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let line = lines.next().ok_or(HttpError::Malformed("request line"))?;
    let mut parts = line.split(' ');
    let method = parts
        .next()
        .filter(|m| !m.is_empty())
        .ok_or(HttpError::Malformed("method"))?;
    let target = parts
        .next()
        .filter(|t| t.starts_with('/'))
        .ok_or(HttpError::Malformed("target"))?;
    let version = parts.next().ok_or(HttpError::Malformed("version"))?;
    if parts.next().is_some() || !(version == "HTTP/1.1" || version == "HTTP/1.0") {
        return Err(HttpError::Malformed("request line"));
    }
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("method"));
    }
    let mut headers = Vec::new();
    for l in lines {
        if l.is_empty() {
            continue;
        }
        let (n, v) = l.split_once(':').ok_or(HttpError::Malformed("header"))?;
        if n.is_empty() || n.contains(' ') {
            return Err(HttpError::Malformed("header name"));
        }
        headers.push((n.to_string(), v.trim().to_string()));
    }
    Ok(RequestHead {
        method: method.to_string(),
        target: target.to_string(),
        version: version.to_string(),
        headers,
    })
}

/// Reads one request head. `Ok(None)` on a clean close before the first byte.
pub fn read_head<R: BufRead>(r: &mut R) -> Result<Option<RequestHead>, HttpError> {
    let mut buf = Vec::new();
    loop {
        let before = buf.len();
        let n = r
            .by_ref()
            .take((MAX_HEAD + 1 - buf.len()) as u64)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::Truncated)
            };
        }
        if buf.len() > MAX_HEAD {
            return Err(HttpError::TooLarge("request head"));
        }
        let line = buf.get(before..).unwrap_or(&[]);
        if line == b"\r\n" || line == b"\n" {
            if before == 0 {
                // Tolerate stray blank lines between requests.
                buf.clear();
                continue;
            }
            return parse_head(buf.get(..before).unwrap_or(&[])).map(Some);
        }
    }
}

fn read_line_limited<R: BufRead>(r: &mut R, limit: u64) -> Result<String, HttpError> {
    let mut line = Vec::new();
    let n = r.by_ref().take(limit).read_until(b'\n', &mut line)?;
    if n == 0 || line.last() != Some(&b'\n') {
        return Err(HttpError::Truncated);
    }
    Ok(String::from_utf8_lossy(&line).trim().to_string())
}

/// Reads the request body as framed by Content-Length or chunked Transfer-Encoding.
pub fn read_body<R: BufRead>(r: &mut R, head: &RequestHead) -> Result<Vec<u8>, HttpError> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = read_line_limited(r, 1024)?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| HttpError::Malformed("chunk size"))?;
            if size == 0 {
                // Trailers until the blank line.
                loop {
                    if read_line_limited(r, 8192)?.is_empty() {
                        return Ok(body);
                    }
                }
            }
            if body.len().saturating_add(size) > MAX_BODY {
                return Err(HttpError::TooLarge("request body"));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(body.get_mut(start..).unwrap_or(&mut []))
                .map_err(|_| HttpError::Truncated)?;
            if !read_line_limited(r, 16)?.is_empty() {
                return Err(HttpError::Malformed("chunk terminator"));
            }
        }
    }
    let len = match head.header("content-length") {
        None => 0,
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| HttpError::Malformed("content-length"))?,
    };
    if len > MAX_BODY {
        return Err(HttpError::TooLarge("request body"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|_| HttpError::Truncated)?;
    Ok(body)
}

/// The reason phrase for a status code.
pub fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Writes a status line and headers; `len` None means chunked.
pub fn write_head<W: Write>(
    w: &mut W,
    code: u16,
    headers: &[(&str, String)],
    len: Option<usize>,
    keep_alive: bool,
) -> io::Result<()> {
    let mut h = format!("HTTP/1.1 {code} {}\r\n", reason(code));
    for (n, v) in headers {
        h.push_str(n);
        h.push_str(": ");
        h.push_str(v);
        h.push_str("\r\n");
    }
    match len {
        Some(n) => h.push_str(&format!("Content-Length: {n}\r\n")),
        None => h.push_str("Transfer-Encoding: chunked\r\n"),
    }
    if !keep_alive {
        h.push_str("Connection: close\r\n");
    }
    h.push_str("\r\n");
    w.write_all(h.as_bytes())
}

/// Writes one chunk of a chunked body (nothing for empty data: that would end the body).
pub fn write_chunk<W: Write>(w: &mut W, data: &[u8]) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    w.write_all(format!("{:x}\r\n", data.len()).as_bytes())?;
    w.write_all(data)?;
    w.write_all(b"\r\n")
}

/// Ends a chunked body.
pub fn write_last_chunk<W: Write>(w: &mut W) -> io::Result<()> {
    w.write_all(b"0\r\n\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_chunked_body_round_trip() {
        let raw = b"POST /api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut r = io::BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.method, "POST");
        assert_eq!(head.path(), "/api/v1/pods");
        assert_eq!(
            head.query()[0],
            ("fieldSelector".into(), "spec.nodeName=n1".into())
        );
        assert_eq!(read_body(&mut r, &head).unwrap(), b"abcde");
        assert!(read_head(&mut r).unwrap().is_none());
    }

    #[test]
    fn parse_head_never_panics() {
        let mut x = 88172645463325252u64;
        for len in 0..300 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let alpha = b"GET /HTP1.\r\n: a";
                    alpha[(x % alpha.len() as u64) as usize]
                })
                .collect();
            let _ = parse_head(&buf);
            let _ = read_head(&mut io::BufReader::new(&buf[..]));
        }
    }
}
