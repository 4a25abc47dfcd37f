//! The CRI client the agent calls: one async method per RPC over one shared, lazily
//! (re)established HTTP/2 connection, each call bounded by a local deadline.
//!
//! Retry policy: a request that provably never reached the runtime (no connection, stream
//! refused) is retried once on a fresh connection; a request that may have been processed is
//! retried only if the RPC is idempotent. While containerd's CRI plugin says it is still
//! initialising after a restart (it rejects calls before handling them), calls wait for it
//! within their deadline. Everything else is reported to the caller, who owns back-off.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;
use smol::lock::Mutex;

use super::error::{CriError, ErrorKind, GrpcCode};
use super::grpc::{self, FrameDecoder, Head};
use super::proto::*;
use super::proto_stats::*;
use super::proto_stream::*;
use super::transport::{self, ConnectError, Connection};

/// The CRI API version we speak, sent in VersionRequest.
pub const CRI_API_VERSION: &str = "v1";

/// Timeouts and limits of a [`CriClient`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriOptions {
    /// Deadline of an ordinary call (kubelet's --runtime-request-timeout).
    pub call_timeout: Duration,
    /// Deadline of PullImage, which moves whole images.
    pub pull_timeout: Duration,
    /// Largest message accepted or sent.
    pub max_message_size: usize,
}

impl Default for CriOptions {
    fn default() -> Self {
        CriOptions {
            call_timeout: Duration::from_secs(120),
            pull_timeout: Duration::from_secs(15 * 60),
            max_message_size: grpc::DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

/// One RPC's identity and retry safety.
struct Rpc {
    name: &'static str,
    path: &'static str,
    idempotent: bool,
    /// Its latency histogram slot in [`super::metrics`].
    metric: usize,
}

macro_rules! rpc {
    ($konst:ident, $svc:literal, $name:literal, $idem:expr) => {
        const $konst: Rpc = Rpc {
            name: $name,
            path: concat!("/runtime.v1.", $svc, "/", $name),
            idempotent: $idem,
            metric: super::metrics::index($name),
        };
    };
}

rpc!(VERSION, "RuntimeService", "Version", true);
rpc!(STATUS, "RuntimeService", "Status", true);
rpc!(RUN_POD_SANDBOX, "RuntimeService", "RunPodSandbox", false);
rpc!(STOP_POD_SANDBOX, "RuntimeService", "StopPodSandbox", true);
rpc!(
    REMOVE_POD_SANDBOX,
    "RuntimeService",
    "RemovePodSandbox",
    true
);
rpc!(
    POD_SANDBOX_STATUS,
    "RuntimeService",
    "PodSandboxStatus",
    true
);
rpc!(LIST_POD_SANDBOX, "RuntimeService", "ListPodSandbox", true);
rpc!(CREATE_CONTAINER, "RuntimeService", "CreateContainer", false);
rpc!(START_CONTAINER, "RuntimeService", "StartContainer", false);
rpc!(STOP_CONTAINER, "RuntimeService", "StopContainer", true);
rpc!(REMOVE_CONTAINER, "RuntimeService", "RemoveContainer", true);
rpc!(LIST_CONTAINERS, "RuntimeService", "ListContainers", true);
rpc!(CONTAINER_STATUS, "RuntimeService", "ContainerStatus", true);
rpc!(EXEC_SYNC, "RuntimeService", "ExecSync", false);
rpc!(CONTAINER_STATS, "RuntimeService", "ContainerStats", true);
// Each call only registers a one-time token at the runtime's streaming server.
rpc!(EXEC, "RuntimeService", "Exec", true);
rpc!(ATTACH, "RuntimeService", "Attach", true);
rpc!(PORT_FORWARD, "RuntimeService", "PortForward", true);
rpc!(
    LIST_CONTAINER_STATS,
    "RuntimeService",
    "ListContainerStats",
    true
);
rpc!(
    LIST_POD_SANDBOX_STATS,
    "RuntimeService",
    "ListPodSandboxStats",
    true
);
// Reopening twice only opens the same (new) file again.
rpc!(
    REOPEN_CONTAINER_LOG,
    "RuntimeService",
    "ReopenContainerLog",
    true
);
// Pulling an image twice only costs bandwidth; its result is the same.
rpc!(PULL_IMAGE, "ImageService", "PullImage", true);
rpc!(IMAGE_STATUS, "ImageService", "ImageStatus", true);
rpc!(LIST_IMAGES, "ImageService", "ListImages", true);
rpc!(REMOVE_IMAGE, "ImageService", "RemoveImage", true);
rpc!(IMAGE_FS_INFO, "ImageService", "ImageFsInfo", true);

/// How one exchange failed, which decides whether it may be retried.
enum Failure {
    /// The runtime never saw the request.
    NotSent(ErrorKind),
    /// The connection died after the request may have been processed.
    Lost(ErrorKind),
    /// A definite answer or a local/protocol failure: never retried.
    Final(ErrorKind),
}

struct Inner {
    path: String,
    opts: CriOptions,
    conn: Mutex<Option<Connection>>,
    connects: AtomicU64,
}

/// Client of containerd's CRI plugin (RuntimeService + ImageService); cheap to clone.
#[derive(Clone)]
pub struct CriClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CriClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CriClient")
            .field("endpoint", &self.inner.path)
            .field("opts", &self.inner.opts)
            .finish()
    }
}

/// Turns `unix:///path` or `/path` into a socket path.
fn socket_path(endpoint: &str) -> Option<&str> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    (path.starts_with('/') && path.len() > 1).then_some(path)
}

fn object_of_image(spec: &Option<ImageSpec>) -> String {
    spec.as_ref().map(|s| s.image.clone()).unwrap_or_default()
}

impl CriClient {
    /// A client for `endpoint` (`unix:///path` or `/path`); connects on first use.
    pub fn new(endpoint: &str, opts: CriOptions) -> Result<CriClient, CriError> {
        let Some(path) = socket_path(endpoint) else {
            return Err(CriError::new(
                "Connect",
                endpoint,
                ErrorKind::Connect {
                    endpoint: endpoint.to_owned(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "only unix:///absolute/path endpoints are supported",
                    ),
                },
            ));
        };
        Ok(CriClient {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                opts,
                conn: Mutex::new(None),
                connects: AtomicU64::new(0),
            }),
        })
    }

    /// The options this client was built with.
    pub fn options(&self) -> &CriOptions {
        &self.inner.opts
    }

    /// How many connections this client has established (1 unless the runtime restarted).
    pub fn connects(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    async fn connection(&self) -> Result<Connection, ErrorKind> {
        let mut slot = self.inner.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.is_alive()) {
            return Ok(c.clone());
        }
        *slot = None;
        let endpoint = &self.inner.path;
        let c = transport::connect(endpoint)
            .await
            .map_err(|e| ErrorKind::Connect {
                endpoint: endpoint.clone(),
                source: match e {
                    ConnectError::Io(io) => io,
                    ConnectError::Handshake(h2) => std::io::Error::other(h2),
                },
            })?;
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    async fn forget(&self, dead: &Connection) {
        let mut slot = self.inner.conn.lock().await;
        if slot.as_ref().is_some_and(|c| c.same(dead)) {
            *slot = None;
        }
    }

    async fn unary<Req, Resp>(
        &self,
        rpc: &Rpc,
        object: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CriError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let err = |kind| CriError::new(rpc.name, object, kind);
        let max = self.inner.opts.max_message_size;
        let body = grpc::encode_message(req, max).map_err(err)?;
        let started = Instant::now();
        let work = self.with_retry(rpc, body, started + timeout);
        let deadline = async {
            smol::Timer::after(timeout).await;
            Err(ErrorKind::DeadlineExceeded { timeout })
        };
        // Dropping the losing exchange resets its stream, so the runtime stops working on it.
        let payload = smol::future::or(work, deadline).await;
        super::metrics::record(rpc.metric, started.elapsed(), payload.is_err());
        grpc::decode_message(&payload.map_err(err)?).map_err(err)
    }

    async fn with_retry(
        &self,
        rpc: &Rpc,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Bytes, ErrorKind> {
        let max = self.inner.opts.max_message_size;
        let mut retried = false;
        let mut starting_waits = 0u32;
        loop {
            let conn = self.connection().await?;
            // A resend tells the runtime only the time that is actually left.
            let left = deadline.saturating_duration_since(Instant::now());
            let failure = match exchange(&conn, rpc.path, body.clone(), left, max).await {
                Ok(payload) => return Ok(payload),
                Err(f) => f,
            };
            let (kind, may_retry) = match failure {
                Failure::Final(kind) if is_runtime_starting(&kind) => {
                    // The gate runs before any handler, so even non-idempotent calls are safe
                    // to resend; the caller's deadline still bounds the total wait.
                    if starting_waits >= MAX_STARTING_WAITS {
                        return Err(kind);
                    }
                    starting_waits += 1;
                    smol::Timer::after(STARTING_WAIT).await;
                    continue;
                }
                Failure::Final(kind) => return Err(kind),
                Failure::NotSent(kind) => (kind, true),
                Failure::Lost(kind) => (kind, rpc.idempotent),
            };
            self.forget(&conn).await;
            if retried || !may_retry {
                return Err(kind);
            }
            log::debug!(
                "CRI {}: retrying on a new connection after: {kind:?}",
                rpc.name
            );
            retried = true;
        }
    }

    // ----- RuntimeService -----

    /// Runtime name and versions.
    pub async fn version(&self) -> Result<VersionResponse, CriError> {
        let req = VersionRequest {
            version: CRI_API_VERSION.to_owned(),
        };
        self.unary(&VERSION, "", &req, self.inner.opts.call_timeout)
            .await
    }

    /// Runtime conditions (RuntimeReady, NetworkReady).
    pub async fn status(&self, verbose: bool) -> Result<StatusResponse, CriError> {
        let req = StatusRequest { verbose };
        self.unary(&STATUS, "", &req, self.inner.opts.call_timeout)
            .await
    }

    /// Creates and starts a pod sandbox.
    pub async fn run_pod_sandbox(
        &self,
        req: &RunPodSandboxRequest,
    ) -> Result<RunPodSandboxResponse, CriError> {
        let object = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        self.unary(&RUN_POD_SANDBOX, &object, req, self.inner.opts.call_timeout)
            .await
    }

    /// Stops a sandbox and all its containers (idempotent).
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<StopPodSandboxResponse, CriError> {
        let req = StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.unary(&STOP_POD_SANDBOX, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Removes a sandbox (idempotent).
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<RemovePodSandboxResponse, CriError> {
        let req = RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.unary(&REMOVE_POD_SANDBOX, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Status of one sandbox.
    pub async fn pod_sandbox_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<PodSandboxStatusResponse, CriError> {
        let req = PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose,
        };
        self.unary(&POD_SANDBOX_STATUS, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Lists sandboxes matching `filter` (all when None).
    pub async fn list_pod_sandbox(
        &self,
        filter: Option<PodSandboxFilter>,
    ) -> Result<ListPodSandboxResponse, CriError> {
        let req = ListPodSandboxRequest { filter };
        self.unary(&LIST_POD_SANDBOX, "", &req, self.inner.opts.call_timeout)
            .await
    }

    /// Creates a container in a sandbox.
    pub async fn create_container(
        &self,
        req: &CreateContainerRequest,
    ) -> Result<CreateContainerResponse, CriError> {
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.as_str())
            .unwrap_or("");
        let object = format!("{}/{}", req.pod_sandbox_id, name);
        self.unary(
            &CREATE_CONTAINER,
            &object,
            req,
            self.inner.opts.call_timeout,
        )
        .await
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<StartContainerResponse, CriError> {
        let req = StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.unary(&START_CONTAINER, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Stops a container: SIGTERM, then SIGKILL after `timeout_secs` (idempotent).
    pub async fn stop_container(
        &self,
        id: &str,
        timeout_secs: i64,
    ) -> Result<StopContainerResponse, CriError> {
        let req = StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_secs,
        };
        // The runtime may legitimately take the whole grace period; don't cut it short.
        let grace = Duration::from_secs(timeout_secs.max(0) as u64);
        let deadline = self.inner.opts.call_timeout.saturating_add(grace);
        self.unary(&STOP_CONTAINER, id, &req, deadline).await
    }

    /// Removes a container, killing it if needed (idempotent).
    pub async fn remove_container(&self, id: &str) -> Result<RemoveContainerResponse, CriError> {
        let req = RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.unary(&REMOVE_CONTAINER, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Lists containers matching `filter` (all when None).
    pub async fn list_containers(
        &self,
        filter: Option<ContainerFilter>,
    ) -> Result<ListContainersResponse, CriError> {
        let req = ListContainersRequest { filter };
        self.unary(&LIST_CONTAINERS, "", &req, self.inner.opts.call_timeout)
            .await
    }

    /// Status of one container.
    pub async fn container_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<ContainerStatusResponse, CriError> {
        let req = ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose,
        };
        self.unary(&CONTAINER_STATUS, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Runs `cmd` in a container and collects its output (`timeout_secs` 0: no runtime limit).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout_secs: i64,
    ) -> Result<ExecSyncResponse, CriError> {
        let req = ExecSyncRequest {
            container_id: id.to_owned(),
            cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
            timeout: timeout_secs,
        };
        let run = Duration::from_secs(timeout_secs.max(0) as u64);
        let deadline = self.inner.opts.call_timeout.saturating_add(run);
        self.unary(&EXEC_SYNC, id, &req, deadline).await
    }

    /// Resource usage of one container.
    pub async fn container_stats(&self, id: &str) -> Result<ContainerStatsResponse, CriError> {
        let req = ContainerStatsRequest {
            container_id: id.to_owned(),
        };
        self.unary(&CONTAINER_STATS, id, &req, self.inner.opts.call_timeout)
            .await
    }

    /// The streaming URL for an exec in a container.
    pub async fn exec(&self, req: &ExecRequest) -> Result<ExecResponse, CriError> {
        self.unary(&EXEC, &req.container_id, req, self.inner.opts.call_timeout)
            .await
    }

    /// The streaming URL for attaching to a container.
    pub async fn attach(&self, req: &AttachRequest) -> Result<AttachResponse, CriError> {
        self.unary(
            &ATTACH,
            &req.container_id,
            req,
            self.inner.opts.call_timeout,
        )
        .await
    }

    /// The streaming URL for forwarding ports of a sandbox.
    pub async fn port_forward(
        &self,
        req: &PortForwardRequest,
    ) -> Result<PortForwardResponse, CriError> {
        let id = &req.pod_sandbox_id;
        self.unary(&PORT_FORWARD, id, req, self.inner.opts.call_timeout)
            .await
    }

    /// Resource usage of the containers matching `filter` (all when None).
    pub async fn list_container_stats(
        &self,
        filter: Option<ContainerStatsFilter>,
    ) -> Result<ListContainerStatsResponse, CriError> {
        let req = ListContainerStatsRequest { filter };
        self.unary(
            &LIST_CONTAINER_STATS,
            "",
            &req,
            self.inner.opts.call_timeout,
        )
        .await
    }

    /// Resource usage of the sandboxes matching `filter` (all when None).
    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<PodSandboxStatsFilter>,
    ) -> Result<ListPodSandboxStatsResponse, CriError> {
        let req = ListPodSandboxStatsRequest { filter };
        self.unary(
            &LIST_POD_SANDBOX_STATS,
            "",
            &req,
            self.inner.opts.call_timeout,
        )
        .await
    }

    /// Asks the runtime to reopen a container's log file (after rotation renamed it).
    pub async fn reopen_container_log(
        &self,
        id: &str,
    ) -> Result<ReopenContainerLogResponse, CriError> {
        let req = ReopenContainerLogRequest {
            container_id: id.to_owned(),
        };
        self.unary(
            &REOPEN_CONTAINER_LOG,
            id,
            &req,
            self.inner.opts.call_timeout,
        )
        .await
    }

    // ----- ImageService -----

    /// Pulls an image; returns its reference.
    pub async fn pull_image(&self, req: &PullImageRequest) -> Result<PullImageResponse, CriError> {
        let object = object_of_image(&req.image);
        self.unary(&PULL_IMAGE, &object, req, self.inner.opts.pull_timeout)
            .await
    }

    /// Status of an image; `image` is None in the response when it is absent.
    pub async fn image_status(
        &self,
        image: &str,
        verbose: bool,
    ) -> Result<ImageStatusResponse, CriError> {
        let req = ImageStatusRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose,
        };
        self.unary(&IMAGE_STATUS, image, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Lists images matching `filter` (all when None).
    pub async fn list_images(
        &self,
        filter: Option<ImageFilter>,
    ) -> Result<ListImagesResponse, CriError> {
        let req = ListImagesRequest { filter };
        self.unary(&LIST_IMAGES, "", &req, self.inner.opts.call_timeout)
            .await
    }

    /// Removes an image (idempotent).
    pub async fn remove_image(&self, image: &str) -> Result<RemoveImageResponse, CriError> {
        let req = RemoveImageRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
        };
        self.unary(&REMOVE_IMAGE, image, &req, self.inner.opts.call_timeout)
            .await
    }

    /// Usage of the image filesystem(s).
    pub async fn image_fs_info(&self) -> Result<ImageFsInfoResponse, CriError> {
        self.unary(
            &IMAGE_FS_INFO,
            "",
            &ImageFsInfoRequest {},
            self.inner.opts.call_timeout,
        )
        .await
    }
}

/// Pause between attempts while the runtime reports it is still starting.
const STARTING_WAIT: Duration = Duration::from_millis(100);
/// Upper bound on those attempts (30 s), in case a caller set a huge deadline.
const MAX_STARTING_WAITS: u32 = 300;

/// containerd's CRI plugin answers every call with this until it has recovered its state
/// after a (re)start: the request was rejected unprocessed.
fn is_runtime_starting(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Status { code: GrpcCode::UnknownError, message }
        if message == "server is not initialized yet")
}

/// Maps a stream reset by the runtime to the gRPC code clients use for it.
fn code_for_reset(reason: Reason) -> GrpcCode {
    match reason {
        Reason::REFUSED_STREAM => GrpcCode::Unavailable,
        Reason::CANCEL => GrpcCode::Cancelled,
        Reason::ENHANCE_YOUR_CALM => GrpcCode::ResourceExhausted,
        Reason::INADEQUATE_SECURITY => GrpcCode::PermissionDenied,
        _ => GrpcCode::Internal,
    }
}

/// Sorts an h2 error on a stream whose request was already handed to h2.
fn classify(e: h2::Error) -> Failure {
    if e.reason() == Some(Reason::REFUSED_STREAM) && !e.is_go_away() {
        // RFC 9113 §8.7: a refused stream was not processed, so any request may be resent.
        return Failure::NotSent(ErrorKind::Status {
            code: GrpcCode::Unavailable,
            message: format!("stream refused: {e}"),
        });
    }
    if e.is_reset() && e.is_remote() {
        let code = e.reason().map(code_for_reset).unwrap_or(GrpcCode::Internal);
        return Failure::Final(ErrorKind::Status {
            code,
            message: format!("stream reset by the runtime: {e}"),
        });
    }
    Failure::Lost(lost(e))
}

fn lost(e: h2::Error) -> ErrorKind {
    ErrorKind::Status {
        code: GrpcCode::Unavailable,
        message: format!("connection to the runtime lost: {e}"),
    }
}

/// One unary call to `path` (`/package.Service/Method`) on `conn`, with no retry: the gRPC
/// stack shared with the other services a node agent calls over unix sockets (CSI drivers,
/// plugin registration). The caller bounds it with its own deadline.
pub async fn unary_once(
    conn: &Connection,
    path: &str,
    body: Bytes,
    timeout: Duration,
    max: usize,
) -> Result<Bytes, ErrorKind> {
    exchange(conn, path, body, timeout, max)
        .await
        .map_err(|f| match f {
            Failure::NotSent(k) | Failure::Lost(k) | Failure::Final(k) => k,
        })
}

/// One unary exchange on `conn`: headers + one framed message out, one message back.
async fn exchange(
    conn: &Connection,
    path: &str,
    body: Bytes,
    timeout: Duration,
    max: usize,
) -> Result<Bytes, Failure> {
    let head = grpc::request_head(path, timeout).map_err(Failure::Final)?;
    let mut sender = conn
        .sender
        .clone()
        .ready()
        .await
        .map_err(|e| Failure::NotSent(lost(e)))?;
    let (response, mut send) = sender
        .send_request(head, false)
        .map_err(|e| Failure::NotSent(lost(e)))?;
    send.send_data(body, true).map_err(classify)?;
    let response = response.await.map_err(classify)?;
    let (parts, mut recv) = response.into_parts();
    if grpc::check_head(parts.status, &parts.headers).map_err(Failure::Final)?
        == Head::TrailersOnlyOk
    {
        return Err(Failure::Final(ErrorKind::Protocol(
            "OK status without a response message".into(),
        )));
    }
    let mut decoder = FrameDecoder::new(max);
    let mut message = None;
    while let Some(chunk) = recv.data().await {
        let chunk = chunk.map_err(classify)?;
        // Window credit goes back at once: the decoder, not h2, bounds what we buffer.
        let _ = recv.flow_control().release_capacity(chunk.len());
        decoder.push(&chunk);
        while let Some(m) = decoder.next_message().map_err(Failure::Final)? {
            if message.replace(m).is_some() {
                return Err(Failure::Final(ErrorKind::Protocol(
                    "more than one message in a unary response".into(),
                )));
            }
        }
    }
    let trailers = recv.trailers().await.map_err(classify)?;
    let Some(trailers) = trailers else {
        return Err(Failure::Final(ErrorKind::Protocol(
            "response ended without trailers".into(),
        )));
    };
    grpc::check_status(&trailers).map_err(Failure::Final)?;
    decoder.finish().map_err(Failure::Final)?;
    message.ok_or_else(|| {
        Failure::Final(ErrorKind::Protocol(
            "OK status without a response message".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(socket_path("unix:///run/c.sock"), Some("/run/c.sock"));
        assert_eq!(socket_path("/run/c.sock"), Some("/run/c.sock"));
        assert_eq!(socket_path("tcp://1.2.3.4:5"), None);
        assert_eq!(socket_path("unix://"), None);
        assert_eq!(socket_path("relative.sock"), None);
        assert!(CriClient::new("tcp://x", CriOptions::default()).is_err());
        assert!(CriClient::new("unix:///x.sock", CriOptions::default()).is_ok());
    }

    #[test]
    fn rpc_paths() {
        assert_eq!(VERSION.path, "/runtime.v1.RuntimeService/Version");
        assert_eq!(PULL_IMAGE.path, "/runtime.v1.ImageService/PullImage");
        assert_eq!(IMAGE_FS_INFO.path, "/runtime.v1.ImageService/ImageFsInfo");
        const { assert!(!RUN_POD_SANDBOX.idempotent && !CREATE_CONTAINER.idempotent) };
        const { assert!(!EXEC_SYNC.idempotent && !START_CONTAINER.idempotent) };
    }

    #[test]
    fn connect_error_names_endpoint_and_hint() {
        let client = CriClient::new(
            "unix:///nonexistent/tinylet-cri-test.sock",
            CriOptions::default(),
        )
        .unwrap();
        let err = smol::block_on(client.version()).unwrap_err();
        assert!(err.is_unavailable());
        assert_eq!(err.call(), "Version");
        let text = err.to_string();
        assert!(
            text.contains("/nonexistent/tinylet-cri-test.sock"),
            "{text}"
        );
        assert!(text.contains("is containerd running?"), "{text}");
    }
}
