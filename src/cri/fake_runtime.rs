//! Test-only: an in-process h2c gRPC server on a unix socket with scripted answers, so the
//! client's wire behaviour (trailers-only answers, chunking, limits, reconnects, retry rules,
//! deadlines) is tested without containerd.

use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use prost::Message;
use smol::Async;

use super::error::{ErrorKind, GrpcCode};
use super::proto::*;
use super::transport::SmolIo;
use super::{CriClient, CriOptions};

/// What the fake answers to one request.
pub(crate) enum Reply {
    /// Raw body bytes, sent in DATA frames of `chunk` bytes, then `grpc-status: 0`.
    Body(Vec<u8>, usize),
    /// A trailers-only answer.
    TrailersOnly(u32, &'static str),
    /// Never answer.
    Hang,
    /// Close the whole connection without answering.
    DropConnection,
}

type Script = dyn Fn(usize, &str) -> Reply + Send + Sync;

pub(crate) struct Fake {
    pub(crate) path: PathBuf,
    requests: Arc<AtomicUsize>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(crate) fn framed<M: Message>(m: &M) -> Vec<u8> {
    let body = m.encode_to_vec();
    let mut out = vec![0];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

fn version_body() -> Vec<u8> {
    framed(&VersionResponse {
        version: "0.1.0".into(),
        runtime_name: "fake".into(),
        runtime_version: "1".into(),
        runtime_api_version: "v1".into(),
    })
}

/// Serves one connection; each stream gets its own task because h2 only moves bytes while
/// `accept` is being polled.
async fn serve_connection(
    stream: Async<std::os::unix::net::UnixStream>,
    script: Arc<Script>,
    count: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let Ok(mut conn) = h2::server::handshake(SmolIo::new(stream)).await else {
        return;
    };
    let (drop_tx, drop_rx) = smol::channel::bounded::<()>(1);
    loop {
        let next = smol::future::or(async { Some(conn.accept().await) }, async {
            let _ = drop_rx.recv().await;
            None
        })
        .await;
        // None: a handler asked to drop the connection, which closes the socket.
        let Some(Some(Ok((req, respond)))) = next else {
            return;
        };
        let (script, count, seen, drop_tx) =
            (script.clone(), count.clone(), seen.clone(), drop_tx.clone());
        smol::spawn(async move {
            let path = req.uri().path().to_owned();
            let mut body = req.into_body();
            while let Some(Ok(d)) = body.data().await {
                let _ = body.flow_control().release_capacity(d.len());
            }
            let n = count.fetch_add(1, Ordering::SeqCst);
            seen.lock().unwrap().push(path.clone());
            answer(script(n, &path), respond, &drop_tx).await;
        })
        .detach();
    }
}

async fn answer(
    reply: Reply,
    mut respond: h2::server::SendResponse<Bytes>,
    drop_tx: &smol::channel::Sender<()>,
) {
    match reply {
        Reply::Body(bytes, chunk) => {
            let head = Response::builder()
                .header("content-type", "application/grpc")
                .body(())
                .unwrap();
            let mut send = respond.send_response(head, false).unwrap();
            for c in bytes.chunks(chunk.max(1)) {
                send.send_data(Bytes::copy_from_slice(c), false).unwrap();
            }
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            send.send_trailers(t).unwrap();
        }
        Reply::TrailersOnly(code, msg) => {
            let head = Response::builder()
                .header("content-type", "application/grpc")
                .header("grpc-status", code.to_string())
                .header("grpc-message", msg)
                .body(())
                .unwrap();
            respond.send_response(head, true).unwrap();
        }
        Reply::Hang => {
            // Keep the stream open until the client gives up (the task is dropped with the test).
            let _keep = respond;
            smol::future::pending::<()>().await;
        }
        Reply::DropConnection => {
            // Holding the stream keeps h2 from resetting it: the peer must see a dead socket.
            let _keep = respond;
            let _ = drop_tx.try_send(());
            smol::future::pending::<()>().await;
        }
    }
}

pub(crate) fn start(
    name: &str,
    script: impl Fn(usize, &str) -> Reply + Send + Sync + 'static,
) -> Fake {
    let path = std::env::temp_dir().join(format!("tl-cri-{name}-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = Async::new(UnixListener::bind(&path).unwrap()).unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(Mutex::new(Vec::new()));
    let script: Arc<Script> = Arc::new(script);
    let (count, seen) = (requests.clone(), paths.clone());
    smol::spawn(async move {
        // Bounded: a test opens at most a handful of connections.
        for _ in 0..16 {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (script, count, seen) = (script.clone(), count.clone(), seen.clone());
            smol::spawn(serve_connection(stream, script, count, seen)).detach();
        }
    })
    .detach();
    Fake {
        path,
        requests,
        paths,
    }
}

fn client(fake: &Fake, timeout: Duration, max: usize) -> CriClient {
    let opts = CriOptions {
        call_timeout: timeout,
        pull_timeout: timeout,
        max_message_size: max,
    };
    CriClient::new(&format!("unix://{}", fake.path.display()), opts).unwrap()
}

const T: Duration = Duration::from_secs(10);

#[test]
fn answer_split_into_tiny_frames_is_reassembled() {
    let fake = start("chunks", |_, _| Reply::Body(version_body(), 1));
    let c = client(&fake, T, 1024);
    let v = smol::block_on(c.version()).unwrap();
    assert_eq!(v.runtime_name, "fake");
    assert_eq!(
        fake.paths.lock().unwrap().as_slice(),
        ["/runtime.v1.RuntimeService/Version"]
    );
}

#[test]
fn connection_is_reused() {
    let fake = start("reuse", |_, _| Reply::Body(version_body(), 64));
    let c = client(&fake, T, 1024);
    let c2 = c.clone();
    smol::block_on(async {
        for _ in 0..5 {
            c.version().await.unwrap();
            c2.version().await.unwrap();
        }
    });
    assert_eq!(c.connects(), 1);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 10);
}

#[test]
fn concurrent_calls_are_multiplexed_on_one_connection() {
    let fake = start("concurrent", |_, _| Reply::Body(version_body(), 7));
    let c = client(&fake, T, 1024);
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let c = c.clone();
            smol::spawn(async move { c.version().await.map(|v| v.runtime_name) })
        })
        .collect();
    smol::block_on(async {
        for t in tasks {
            assert_eq!(t.await.unwrap(), "fake");
        }
    });
    assert_eq!(c.connects(), 1);
    assert_eq!(fake.requests.load(Ordering::SeqCst), 32);
}

#[test]
fn trailers_only_status_is_typed_and_percent_decoded() {
    let fake = start("tonly", |_, _| {
        Reply::TrailersOnly(5, "image %22x%22 not found")
    });
    let c = client(&fake, T, 1024);
    let e = smol::block_on(c.image_status("x", false)).unwrap_err();
    assert!(e.is_not_found(), "{e:?}");
    assert_eq!(e.call(), "ImageStatus");
    assert_eq!(e.object(), "x");
    assert!(e.to_string().contains("image \"x\" not found"), "{e}");
}

#[test]
fn compressed_and_oversized_answers_are_errors() {
    let fake = start("bad", |n, _| {
        if n == 0 {
            Reply::Body(vec![1, 0, 0, 0, 1, 0], 64)
        } else {
            Reply::Body(
                framed(&ExecSyncResponse {
                    stdout: vec![b'x'; 4096],
                    ..Default::default()
                }),
                512,
            )
        }
    });
    let c = client(&fake, T, 1024);
    smol::block_on(async {
        let e = c.version().await.unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Protocol(_)), "{e}");
        let e = c.exec_sync("c1", &["cat"], 0).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::MessageTooLarge { max: 1024, .. }),
            "{e}"
        );
        // The connection survives a bad stream.
        assert_eq!(c.connects(), 1);
    });
}

#[test]
fn garbage_protobuf_is_a_protocol_error() {
    let fake = start("garbage", |_, _| {
        Reply::Body(vec![0, 0, 0, 0, 2, 0x0a, 0x7f], 64)
    });
    let c = client(&fake, T, 1024);
    let e = smol::block_on(c.version()).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Protocol(_)), "{e}");
}

#[test]
fn deadline_is_enforced_locally() {
    let fake = start("hang", |_, _| Reply::Hang);
    let c = client(&fake, Duration::from_millis(100), 1024);
    let e = smol::block_on(c.version()).unwrap_err();
    assert!(e.is_deadline_exceeded(), "{e}");
    assert!(matches!(e.kind(), ErrorKind::DeadlineExceeded { .. }));
}

#[test]
fn idempotent_call_is_resent_after_the_connection_drops() {
    let fake = start("drop-idem", |n, _| {
        if n == 0 {
            Reply::DropConnection
        } else {
            Reply::Body(version_body(), 64)
        }
    });
    let c = client(&fake, T, 1024);
    smol::block_on(c.version()).unwrap();
    assert_eq!(fake.requests.load(Ordering::SeqCst), 2);
    assert_eq!(c.connects(), 2);
}

#[test]
fn non_idempotent_call_is_not_resent_once_sent() {
    let fake = start("drop-once", |n, _| {
        if n == 0 {
            Reply::DropConnection
        } else {
            Reply::Body(framed(&RunPodSandboxResponse::default()), 64)
        }
    });
    let c = client(&fake, T, 1024);
    smol::block_on(async {
        let e = c
            .run_pod_sandbox(&RunPodSandboxRequest::default())
            .await
            .unwrap_err();
        assert!(e.is_unavailable(), "{e}");
        assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
        // The next call opens a new connection and works.
        c.run_pod_sandbox(&RunPodSandboxRequest::default())
            .await
            .unwrap();
        assert_eq!(c.connects(), 2);
    });
}

#[test]
fn runtime_still_starting_is_waited_for() {
    let fake = start("starting", |n, _| {
        if n < 2 {
            Reply::TrailersOnly(2, "server is not initialized yet")
        } else {
            Reply::Body(
                framed(&CreateContainerResponse {
                    container_id: "c1".into(),
                }),
                64,
            )
        }
    });
    let c = client(&fake, T, 1024);
    let r = smol::block_on(c.create_container(&CreateContainerRequest::default())).unwrap();
    assert_eq!(r.container_id, "c1");
    assert_eq!(fake.requests.load(Ordering::SeqCst), 3);
}

#[test]
fn other_unknown_errors_are_not_retried() {
    let fake = start("unknown", |_, _| Reply::TrailersOnly(2, "boom"));
    let c = client(&fake, T, 1024);
    let e = smol::block_on(c.version()).unwrap_err();
    assert_eq!(e.code(), Some(GrpcCode::UnknownError));
    assert_eq!(fake.requests.load(Ordering::SeqCst), 1);
}
