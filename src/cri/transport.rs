//! The thin I/O edge: a smol unix socket presented to h2 through tokio's I/O traits, and the
//! HTTP/2 (prior knowledge) handshake whose connection task runs on smol's executor.
//!
//! No tokio runtime exists; tokio only lends its `AsyncRead`/`AsyncWrite` traits, which h2
//! requires. This module knows nothing about gRPC or CRI (the CSI client uses it too).

use std::io;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use smol::Async;

/// A smol-driven unix stream usable by h2.
#[derive(Debug)]
pub struct SmolIo(Async<UnixStream>);

impl SmolIo {
    /// Wraps a connected stream.
    pub fn new(stream: Async<UnixStream>) -> SmolIo {
        SmolIo(stream)
    }
}

impl tokio::io::AsyncRead for SmolIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let dst = buf.initialize_unfilled();
        match smol::io::AsyncRead::poll_read(Pin::new(&mut self.0), cx, dst) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncWrite for SmolIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        smol::io::AsyncWrite::poll_write(Pin::new(&mut self.0), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        smol::io::AsyncWrite::poll_flush(Pin::new(&mut self.0), cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        smol::io::AsyncWrite::poll_close(Pin::new(&mut self.0), cx)
    }
}

/// One live HTTP/2 connection: a request handle and a flag the connection task clears on exit.
#[derive(Clone, Debug)]
pub struct Connection {
    /// Handle for opening streams (cheap to clone).
    pub sender: h2::client::SendRequest<Bytes>,
    alive: Arc<AtomicBool>,
}

impl Connection {
    /// True if both handles belong to the same underlying connection.
    pub fn same(&self, other: &Connection) -> bool {
        Arc::ptr_eq(&self.alive, &other.alive)
    }

    /// False once the connection task has ended (peer closed, I/O error, GOAWAY drained).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// The socket could not be opened.
    Io(io::Error),
    /// The HTTP/2 handshake failed.
    Handshake(h2::Error),
}

/// Connects to the unix socket at `path` and performs the HTTP/2 handshake.
pub async fn connect(path: &str) -> Result<Connection, ConnectError> {
    let stream = Async::<UnixStream>::connect(path)
        .await
        .map_err(ConnectError::Io)?;
    let (sender, conn) = h2::client::Builder::new()
        // Larger windows than the 64 KiB default keep big ListContainers/ExecSync answers
        // from stalling on WINDOW_UPDATE round trips.
        .initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        // Headers and trailers from the runtime are small; don't let a broken peer make us
        // hold megabytes of them (h2's default allows 16 MiB).
        .max_header_list_size(256 << 10)
        .handshake::<_, Bytes>(SmolIo(stream))
        .await
        .map_err(ConnectError::Handshake)?;
    let alive = Arc::new(AtomicBool::new(true));
    let flag = alive.clone();
    let endpoint = path.to_owned();
    smol::spawn(async move {
        if let Err(e) = conn.await {
            log::debug!("gRPC connection to {endpoint} ended: {e}");
        }
        flag.store(false, Ordering::Release);
    })
    .detach();
    Ok(Connection { sender, alive })
}
