//! A deliberately plain HTTP/1.1 client for exercising the test server byte by byte: plain or
//! TLS (rustls, optional client certificate), bearer tokens, keep-alive, Content-Length and
//! chunked bodies, and a watch reader that yields events line by line.
//!
//! It is test tooling for the server itself and for harnesses; it is not the project's API
//! client and must not grow retry or caching logic (that is what is under test elsewhere).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;

use super::pki::ClientCredentials;

/// A bidirectional byte stream (TCP or TLS over TCP).
pub trait Transport: Read + Write + Send {}
impl<T: Read + Write + Send> Transport for T {}

/// One response read in full.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Headers as sent.
    pub headers: Vec<(String, String)>,
    /// Body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// A header by name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (Null if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Connection settings plus at most one idle keep-alive connection.
pub struct TestClient {
    addr: SocketAddr,
    tls: Option<Arc<ClientConfig>>,
    token: Option<String>,
    timeout: Duration,
    idle: Option<BufReader<Box<dyn Transport>>>,
    /// New TCP connections opened so far.
    pub connects: u32,
}

impl TestClient {
    /// Plain HTTP.
    pub fn plain(addr: SocketAddr) -> TestClient {
        TestClient {
            addr,
            tls: None,
            token: None,
            timeout: Duration::from_secs(5),
            idle: None,
            connects: 0,
        }
    }

    /// HTTPS trusting `ca_pem`, presenting `cert` if given.
    pub fn tls(
        addr: SocketAddr,
        ca_pem: &str,
        cert: Option<&ClientCredentials>,
    ) -> io::Result<TestClient> {
        Self::tls_versions(addr, ca_pem, cert, rustls::DEFAULT_VERSIONS)
    }

    /// HTTPS limited to the given TLS versions (e.g. `&[&rustls::version::TLS12]`).
    pub fn tls_versions(
        addr: SocketAddr,
        ca_pem: &str,
        cert: Option<&ClientCredentials>,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> io::Result<TestClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(c.map_err(|e| bad(e.to_string()))?)
                .map_err(|e| bad(e.to_string()))?;
        }
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| bad(e.to_string()))?
            .with_root_certificates(roots);
        let cfg = match cert {
            None => builder.with_no_client_auth(),
            Some(c) => {
                let chain: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_slice_iter(c.cert_pem.as_bytes())
                        .collect::<Result<_, _>>()
                        .map_err(|e| bad(e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes())
                    .map_err(|e| bad(e.to_string()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| bad(e.to_string()))?
            }
        };
        Ok(TestClient {
            tls: Some(Arc::new(cfg)),
            ..TestClient::plain(addr)
        })
    }

    /// Sends `Authorization: Bearer TOKEN` from now on.
    pub fn with_token(mut self, token: &str) -> TestClient {
        self.token = Some(token.to_string());
        self
    }

    /// Read/write timeout of each socket operation.
    pub fn with_timeout(mut self, t: Duration) -> TestClient {
        self.timeout = t;
        self
    }

    /// Opens a new connection (TLS handshake included).
    pub fn connect(&mut self) -> io::Result<Box<dyn Transport>> {
        let tcp = TcpStream::connect_timeout(&self.addr, self.timeout)?;
        tcp.set_read_timeout(Some(self.timeout))?;
        tcp.set_write_timeout(Some(self.timeout))?;
        tcp.set_nodelay(true)?;
        self.connects += 1;
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(cfg) => {
                let name = ServerName::IpAddress(self.addr.ip().into());
                let conn =
                    ClientConnection::new(Arc::clone(cfg), name).map_err(|e| bad(e.to_string()))?;
                let mut s = StreamOwned::new(conn, tcp);
                while s.conn.is_handshaking() {
                    s.conn.complete_io(&mut s.sock)?;
                }
                Ok(Box::new(s))
            }
        }
    }

    fn head(&self, method: &str, path: &str, content_type: Option<&str>, len: usize) -> String {
        let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nUser-Agent: tinylet-selftest\r\n", self.addr);
        if let Some(t) = &self.token {
            h.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if let Some(ct) = content_type {
            h.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        h.push_str(&format!("Content-Length: {len}\r\n\r\n"));
        h
    }

    /// Sends a request on the idle connection (or a new one) and reads the full response.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> io::Result<Response> {
        let mut rd = match self.idle.take() {
            Some(rd) => rd,
            None => BufReader::new(self.connect()?),
        };
        let head = self.head(method, path, content_type, body.len());
        let w = rd.get_mut();
        w.write_all(head.as_bytes())?;
        w.write_all(body)?;
        w.flush()?;
        let (code, headers) = read_response_head(&mut rd)?;
        let resp_body = read_response_body(&mut rd, &headers)?;
        let close = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        if !close {
            self.idle = Some(rd);
        }
        Ok(Response {
            code,
            headers,
            body: resp_body,
        })
    }

    /// JSON request; returns (code, body as JSON).
    pub fn json(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> io::Result<(u16, Value)> {
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        let ct = if body.is_some() {
            Some(content_type)
        } else {
            None
        };
        let r = self.request(method, path, ct, &bytes)?;
        Ok((r.code, r.json()))
    }

    /// GET as JSON.
    pub fn get(&mut self, path: &str) -> io::Result<(u16, Value)> {
        self.json("GET", path, "", None)
    }

    /// POST JSON.
    pub fn post(&mut self, path: &str, body: &Value) -> io::Result<(u16, Value)> {
        self.json("POST", path, "application/json", Some(body))
    }

    /// PUT JSON.
    pub fn put(&mut self, path: &str, body: &Value) -> io::Result<(u16, Value)> {
        self.json("PUT", path, "application/json", Some(body))
    }

    /// PATCH with the given patch content type.
    pub fn patch(
        &mut self,
        path: &str,
        content_type: &str,
        body: &Value,
    ) -> io::Result<(u16, Value)> {
        self.json("PATCH", path, content_type, Some(body))
    }

    /// DELETE with optional DeleteOptions.
    pub fn delete(&mut self, path: &str, opts: Option<&Value>) -> io::Result<(u16, Value)> {
        self.json("DELETE", path, "application/json", opts)
    }

    /// Starts a watch on a new connection.
    pub fn watch(&mut self, path: &str) -> io::Result<WatchStream> {
        let mut rd = BufReader::new(self.connect()?);
        let head = self.head("GET", path, None, 0);
        rd.get_mut().write_all(head.as_bytes())?;
        rd.get_mut().flush()?;
        let (code, headers) = read_response_head(&mut rd)?;
        let chunked = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
        let body = if chunked {
            Vec::new()
        } else {
            read_response_body(&mut rd, &headers)?
        };
        Ok(WatchStream {
            rd,
            code,
            headers,
            chunked,
            pending: body,
            done: !chunked,
        })
    }
}

/// Reads a status line and headers.
pub fn read_response_head<R: BufRead>(rd: &mut R) -> io::Result<(u16, Vec<(String, String)>)> {
    let mut line = String::new();
    if rd.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a response",
        ));
    }
    let code = line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in headers",
            ));
        }
        let l = line.trim_end();
        if l.is_empty() {
            return Ok((code, headers));
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
}

fn read_chunk<R: BufRead>(rd: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    if rd.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "stream ended without the last chunk",
        ));
    }
    let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
        .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
    if size == 0 {
        line.clear();
        rd.read_line(&mut line)?;
        return Ok(None);
    }
    let mut buf = vec![0; size];
    rd.read_exact(&mut buf)?;
    line.clear();
    rd.read_line(&mut line)?;
    Ok(Some(buf))
}

/// Reads a body framed by Content-Length or chunked encoding.
pub fn read_response_body<R: BufRead>(
    rd: &mut R,
    headers: &[(String, String)],
) -> io::Result<Vec<u8>> {
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    if h("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        while let Some(c) = read_chunk(rd)? {
            body.extend_from_slice(&c);
        }
        return Ok(body);
    }
    let len: usize = h("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    rd.read_exact(&mut body)?;
    Ok(body)
}

/// An open watch.
pub struct WatchStream {
    rd: BufReader<Box<dyn Transport>>,
    /// Status code of the watch response.
    pub code: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    chunked: bool,
    pending: Vec<u8>,
    done: bool,
}

impl WatchStream {
    /// The next event line as JSON; Ok(None) when the server ended the stream cleanly.
    /// Errors when the stream is cut, times out, or a line is not JSON.
    pub fn next_event(&mut self) -> io::Result<Option<Value>> {
        loop {
            if let Some(pos) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| bad(format!("event is not JSON: {e}")));
            }
            if self.done {
                return if self.pending.is_empty() {
                    Ok(None)
                } else {
                    Err(bad("stream ended mid-line"))
                };
            }
            match read_chunk(&mut self.rd)? {
                Some(c) => self.pending.extend_from_slice(&c),
                None => self.done = true,
            }
        }
    }

    /// Reads raw (de-chunked) bytes until `limit` or the end; for hostile-stream tests.
    pub fn read_raw(&mut self, limit: usize) -> io::Result<Vec<u8>> {
        while self.pending.len() < limit && !self.done && self.chunked {
            match read_chunk(&mut self.rd)? {
                Some(c) => self.pending.extend_from_slice(&c),
                None => self.done = true,
            }
        }
        let n = self.pending.len().min(limit);
        Ok(self.pending.drain(..n).collect())
    }

    /// The body of a non-chunked answer (e.g. an HTTP 410).
    pub fn body_json(&self) -> Value {
        serde_json::from_slice(&self.pending).unwrap_or(Value::Null)
    }
}
