//! The client of one CSI driver socket or plugin-registration socket: one async method per
//! RPC the node side uses, each on a fresh HTTP/2 connection (a unix socket connect is cheap,
//! and a driver that restarted is then simply reached again) and bounded by its own deadline.
//!
//! The gRPC stack is the CRI client's ([`crate::cri::transport`], [`crate::cri::grpc`]);
//! nothing here retries: the volume code and the registration watcher own back-off.

use std::fmt;
use std::time::Duration;

use crate::cri::grpc;
use crate::cri::transport::{self, ConnectError};
use crate::cri::ErrorKind;

use super::proto::*;

/// Deadline of an ordinary Identity/Node call (the kubelet's csiTimeout is 2 minutes for
/// stage/publish; registration and info calls are quick).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of NodeStageVolume/NodePublishVolume (run off the agent loop).
pub const MOUNT_TIMEOUT: Duration = Duration::from_secs(120);
/// Deadline of NodeUnpublishVolume/NodeUnstageVolume: teardown runs on a thread the
/// housekeeping pass starts, and a hung driver must not hold a pod's directory for minutes
/// (a call cut short is retried at the next pass).
pub const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest reply accepted (CSI replies are small).
const MAX_MESSAGE: usize = 4 << 20;

/// A failed call to a CSI driver or registration socket: which driver, which call, which
/// volume, what went wrong.
#[derive(Debug)]
pub struct CsiError {
    /// Driver name, or the socket path while the name is not known yet.
    pub driver: String,
    /// RPC name (e.g. `NodePublishVolume`).
    pub call: &'static str,
    /// Volume id the call was about (may be empty).
    pub volume: String,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl CsiError {
    /// The driver could not be reached or asked to come back later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind, ErrorKind::Connect { .. })
            || matches!(
                self.kind,
                ErrorKind::Status {
                    code: crate::cri::GrpcCode::Unavailable,
                    ..
                }
            )
    }
}

impl fmt::Display for CsiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CSI driver {} {}", self.driver, self.call)?;
        if !self.volume.is_empty() {
            write!(f, " volume {}", self.volume)?;
        }
        match &self.kind {
            ErrorKind::Connect { endpoint, source } => {
                write!(f, ": cannot connect to {endpoint}: {source}")
            }
            ErrorKind::Status { code, message } => write!(f, ": {code}: {message}"),
            ErrorKind::DeadlineExceeded { timeout } => {
                write!(f, ": no answer within {} ms", timeout.as_millis())
            }
            ErrorKind::Protocol(what) => write!(f, ": protocol error: {what}"),
            ErrorKind::MessageTooLarge { size, max } => {
                write!(f, ": message of {size} bytes exceeds the {max} byte limit")
            }
        }
    }
}

impl std::error::Error for CsiError {}

/// Client of one socket (a driver's endpoint or a registration socket).
#[derive(Debug, Clone)]
pub struct CsiClient {
    driver: String,
    path: String,
}

const REGISTRATION: &str = "/pluginregistration.Registration/";
const IDENTITY: &str = "/csi.v1.Identity/";
const NODE: &str = "/csi.v1.Node/";
const CONTROLLER: &str = "/csi.v1.Controller/";

impl CsiClient {
    /// A client of the socket at `endpoint` (`unix:///path` or `/path`) of driver `driver`.
    pub fn new(driver: &str, endpoint: &str) -> CsiClient {
        CsiClient {
            driver: driver.to_owned(),
            path: endpoint
                .strip_prefix("unix://")
                .unwrap_or(endpoint)
                .to_owned(),
        }
    }

    /// The socket path.
    pub fn path(&self) -> &str {
        &self.path
    }

    async fn unary<Req, Resp>(
        &self,
        service: &str,
        call: &'static str,
        volume: &str,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CsiError>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let err = |kind| CsiError {
            driver: self.driver.clone(),
            call,
            volume: volume.to_owned(),
            kind,
        };
        let body = grpc::encode_message(req, MAX_MESSAGE).map_err(err)?;
        let path = format!("{service}{call}");
        let work = async {
            let conn = transport::connect(&self.path)
                .await
                .map_err(|e| ErrorKind::Connect {
                    endpoint: self.path.clone(),
                    source: match e {
                        ConnectError::Io(io) => io,
                        ConnectError::Handshake(h2) => std::io::Error::other(h2),
                    },
                })?;
            crate::cri::client::unary_once(&conn, &path, body, timeout, MAX_MESSAGE).await
        };
        let deadline = async {
            smol::Timer::after(timeout).await;
            Err(ErrorKind::DeadlineExceeded { timeout })
        };
        let payload = smol::future::or(work, deadline).await.map_err(err)?;
        grpc::decode_message(&payload).map_err(err)
    }

    // ----- pluginregistration.Registration -----

    /// What the registration socket serves.
    pub async fn get_info(&self) -> Result<PluginInfo, CsiError> {
        self.unary(REGISTRATION, "GetInfo", "", &InfoRequest {}, CALL_TIMEOUT)
            .await
    }

    /// Tells the registration socket whether the plugin was registered.
    pub async fn notify_registration_status(
        &self,
        registered: bool,
        error: &str,
    ) -> Result<RegistrationStatusResponse, CsiError> {
        let req = RegistrationStatus {
            plugin_registered: registered,
            error: error.to_owned(),
        };
        self.unary(
            REGISTRATION,
            "NotifyRegistrationStatus",
            "",
            &req,
            CALL_TIMEOUT,
        )
        .await
    }

    // ----- csi.v1.Identity -----

    /// The driver's name and version.
    pub async fn get_plugin_info(&self) -> Result<GetPluginInfoResponse, CsiError> {
        let req = GetPluginInfoRequest {};
        self.unary(IDENTITY, "GetPluginInfo", "", &req, CALL_TIMEOUT)
            .await
    }

    /// Whether the driver is ready (a missing answer field means ready).
    pub async fn probe(&self) -> Result<bool, CsiError> {
        let r: ProbeResponse = self
            .unary(IDENTITY, "Probe", "", &ProbeRequest {}, CALL_TIMEOUT)
            .await?;
        Ok(r.ready.is_none_or(|b| b.value))
    }

    // ----- csi.v1.Node -----

    /// The node as the driver knows it.
    pub async fn node_get_info(&self) -> Result<NodeGetInfoResponse, CsiError> {
        let req = NodeGetInfoRequest {};
        self.unary(NODE, "NodeGetInfo", "", &req, CALL_TIMEOUT)
            .await
    }

    /// The node service's capabilities.
    pub async fn node_get_capabilities(&self) -> Result<NodeGetCapabilitiesResponse, CsiError> {
        let req = NodeGetCapabilitiesRequest {};
        self.unary(NODE, "NodeGetCapabilities", "", &req, CALL_TIMEOUT)
            .await
    }

    /// Stages a volume at its global mount.
    pub async fn node_stage_volume(
        &self,
        req: &NodeStageVolumeRequest,
    ) -> Result<NodeStageVolumeResponse, CsiError> {
        self.unary(NODE, "NodeStageVolume", &req.volume_id, req, MOUNT_TIMEOUT)
            .await
    }

    /// Undoes a stage.
    pub async fn node_unstage_volume(
        &self,
        volume_id: &str,
        staging_target_path: &str,
    ) -> Result<NodeUnstageVolumeResponse, CsiError> {
        let req = NodeUnstageVolumeRequest {
            volume_id: volume_id.to_owned(),
            staging_target_path: staging_target_path.to_owned(),
        };
        self.unary(NODE, "NodeUnstageVolume", volume_id, &req, TEARDOWN_TIMEOUT)
            .await
    }

    /// Publishes a volume at a pod's path.
    pub async fn node_publish_volume(
        &self,
        req: &NodePublishVolumeRequest,
    ) -> Result<NodePublishVolumeResponse, CsiError> {
        self.unary(
            NODE,
            "NodePublishVolume",
            &req.volume_id,
            req,
            MOUNT_TIMEOUT,
        )
        .await
    }

    /// Undoes a publish.
    pub async fn node_unpublish_volume(
        &self,
        volume_id: &str,
        target_path: &str,
    ) -> Result<NodeUnpublishVolumeResponse, CsiError> {
        let req = NodeUnpublishVolumeRequest {
            volume_id: volume_id.to_owned(),
            target_path: target_path.to_owned(),
        };
        self.unary(
            NODE,
            "NodeUnpublishVolume",
            volume_id,
            &req,
            TEARDOWN_TIMEOUT,
        )
        .await
    }

    /// A volume's usage.
    pub async fn node_get_volume_stats(
        &self,
        volume_id: &str,
        volume_path: &str,
    ) -> Result<NodeGetVolumeStatsResponse, CsiError> {
        let req = NodeGetVolumeStatsRequest {
            volume_id: volume_id.to_owned(),
            volume_path: volume_path.to_owned(),
            staging_target_path: String::new(),
        };
        self.unary(NODE, "NodeGetVolumeStats", volume_id, &req, CALL_TIMEOUT)
            .await
    }

    // ----- csi.v1.Controller (what tests need to provision) -----

    /// Creates a volume.
    pub async fn create_volume(
        &self,
        req: &CreateVolumeRequest,
    ) -> Result<CreateVolumeResponse, CsiError> {
        self.unary(CONTROLLER, "CreateVolume", &req.name, req, MOUNT_TIMEOUT)
            .await
    }

    /// Deletes a volume.
    pub async fn delete_volume(&self, volume_id: &str) -> Result<DeleteVolumeResponse, CsiError> {
        let req = DeleteVolumeRequest {
            volume_id: volume_id.to_owned(),
            secrets: Default::default(),
        };
        self.unary(CONTROLLER, "DeleteVolume", volume_id, &req, MOUNT_TIMEOUT)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreachable_driver_error_names_driver_call_and_volume() {
        let c = CsiClient::new("example.csi", "unix:///nonexistent/tinylet-csi-test.sock");
        assert_eq!(c.path(), "/nonexistent/tinylet-csi-test.sock");
        let e = smol::block_on(c.node_unpublish_volume("vol-1", "/t")).unwrap_err();
        assert!(e.is_unavailable());
        let text = e.to_string();
        assert!(text.contains("example.csi"), "{text}");
        assert!(text.contains("NodeUnpublishVolume"), "{text}");
        assert!(text.contains("vol-1"), "{text}");
        assert!(
            text.contains("/nonexistent/tinylet-csi-test.sock"),
            "{text}"
        );
    }
}
