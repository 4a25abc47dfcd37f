//! One TLS connection over a smol TCP stream: rustls' server side driven by hand (records in,
//! records out), with async `read`/`write_all` and a bounded handshake. Bytes only; HTTP is
//! `http`'s.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::ServerConnection;
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::Async;

/// A server-side TLS stream.
pub struct TlsConn {
    tcp: Async<TcpStream>,
    tls: ServerConnection,
    eof: bool,
    /// The status code of the last response head written (for the server's counters).
    status: Option<u16>,
}

impl TlsConn {
    /// Wraps an accepted socket (the handshake happens on [`TlsConn::handshake`]).
    pub fn new(tcp: Async<TcpStream>, cfg: Arc<rustls::ServerConfig>) -> io::Result<TlsConn> {
        let tls = ServerConnection::new(cfg).map_err(io::Error::other)?;
        Ok(TlsConn {
            tcp,
            tls,
            eof: false,
            status: None,
        })
    }

    /// Completes the handshake.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.tls.is_handshaking() {
            self.flush_tls().await?;
            if self.tls.is_handshaking() && self.tls.wants_read() && self.fill().await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.flush_tls().await
    }

    /// The client's certificate chain, if it sent one.
    pub fn peer_certificates(&self) -> Option<&[CertificateDer<'static>]> {
        self.tls.peer_certificates()
    }

    /// Reads TLS records from the socket into rustls; the number of socket bytes (0 = EOF).
    async fn fill(&mut self) -> io::Result<usize> {
        let mut buf = [0u8; 8192];
        let n = self.tcp.read(&mut buf).await?;
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        let mut rd = &buf[..n];
        while !rd.is_empty() {
            self.tls.read_tls(&mut rd)?;
            if let Err(e) = self.tls.process_new_packets() {
                // Tell the peer why (an alert), then give up on the connection.
                let _ = self.flush_tls().await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        }
        Ok(n)
    }

    /// Sends whatever rustls has queued.
    async fn flush_tls(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            let mut out = Vec::new();
            self.tls.write_tls(&mut out)?;
            self.tcp.write_all(&out).await?;
        }
        self.tcp.flush().await
    }

    /// Reads plaintext; 0 at the end of the stream.
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.eof || self.fill().await? == 0 {
                        return Ok(0);
                    }
                    self.flush_tls().await?;
                }
                // A peer that closes without close_notify: an end, not an error worth more.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes all of `data` and flushes it to the socket.
    pub async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if let Some(code) = data
            .strip_prefix(b"HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|c| std::str::from_utf8(c).ok()?.parse().ok())
        {
            self.status = Some(code);
        }
        // In record-sized steps, flushed each time: rustls' plaintext buffer is bounded.
        for chunk in data.chunks(16 * 1024) {
            self.tls.writer().write_all(chunk)?;
            self.flush_tls().await?;
        }
        Ok(())
    }

    /// Plaintext already decrypted and waiting: a read returns it without the socket.
    pub fn buffered(&mut self) -> usize {
        self.tls
            .process_new_packets()
            .map_or(0, |s| s.plaintext_bytes_to_read())
    }

    /// The status code of the response written since the last call, if any.
    pub fn take_status(&mut self) -> Option<u16> {
        self.status.take()
    }

    /// Waits until the socket has bytes (or an end) to read; cancel-safe.
    pub async fn readable(&self) -> io::Result<()> {
        self.tcp.readable().await
    }

    /// Sends close_notify.
    pub async fn close(&mut self) {
        self.tls.send_close_notify();
        let _ = self.flush_tls().await;
    }
}
