//! The messages of the kubelet plugin-registration API (`pluginregistration.v1`) and of the
//! CSI services a node agent calls (`csi.v1` Identity, Node, and the two Controller calls the
//! tests use), trimmed to the fields a kubelet sends or reads.
//!
//! Field numbers are those of kubernetes `staging/src/k8s.io/kubelet/pkg/apis/
//! pluginregistration/v1/api.proto` and container-storage-interface/spec `csi.proto` (v1);
//! the round-trip and golden tests below pin them. Unknown fields are skipped on decode, so a
//! newer driver never breaks us. Maps are `BTreeMap` so encodings are deterministic.
//!
//! This module only describes data; it does no I/O and knows nothing of gRPC.

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// pluginregistration.v1 (package `pluginregistration`, service `Registration`)

/// GetInfo's empty request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoRequest {}

/// What a plugin's registration socket says about itself.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginInfo {
    /// `CSIPlugin` or `DevicePlugin`.
    #[prost(string, tag = "1")]
    pub r#type: String,
    /// The plugin's name (for CSI the driver name).
    #[prost(string, tag = "2")]
    pub name: String,
    /// Where the plugin's own service listens (for CSI the driver socket).
    #[prost(string, tag = "3")]
    pub endpoint: String,
    /// API versions the plugin supports.
    #[prost(string, repeated, tag = "4")]
    pub supported_versions: Vec<String>,
}

/// The kubelet's answer to a registration.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegistrationStatus {
    /// True when the plugin was registered.
    #[prost(bool, tag = "1")]
    pub plugin_registered: bool,
    /// Why not, when it was not.
    #[prost(string, tag = "2")]
    pub error: String,
}

/// NotifyRegistrationStatus's empty response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RegistrationStatusResponse {}

// ---------------------------------------------------------------------------------------------
// csi.v1 Identity

/// GetPluginInfo's empty request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetPluginInfoRequest {}

/// The driver's name and version.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetPluginInfoResponse {
    /// Driver name (e.g. `hostpath.csi.k8s.io`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Opaque version.
    #[prost(string, tag = "2")]
    pub vendor_version: String,
    /// Opaque extra facts.
    #[prost(btree_map = "string, string", tag = "3")]
    pub manifest: BTreeMap<String, String>,
}

/// Probe's empty request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProbeRequest {}

/// `google.protobuf.BoolValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BoolValue {
    /// The value.
    #[prost(bool, tag = "1")]
    pub value: bool,
}

/// Probe's answer: a missing `ready` means ready.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProbeResponse {
    /// Readiness, when the driver reports it.
    #[prost(message, optional, tag = "1")]
    pub ready: Option<BoolValue>,
}

// ---------------------------------------------------------------------------------------------
// Shared volume descriptions

/// How a volume is accessed (csi.v1 `VolumeCapability.AccessMode.Mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum AccessModeKind {
    /// Not set.
    Unknown = 0,
    /// Read/write on one node.
    SingleNodeWriter = 1,
    /// Read-only on one node.
    SingleNodeReaderOnly = 2,
    /// Read-only on many nodes.
    MultiNodeReaderOnly = 3,
    /// One writer, many readers.
    MultiNodeSingleWriter = 4,
    /// Read/write on many nodes.
    MultiNodeMultiWriter = 5,
}

/// `VolumeCapability.AccessMode`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AccessMode {
    /// The mode.
    #[prost(enumeration = "AccessModeKind", tag = "1")]
    pub mode: i32,
}

/// `VolumeCapability.BlockVolume` (empty).
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockVolume {}

/// `VolumeCapability.MountVolume`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MountVolume {
    /// Filesystem type, empty for the driver's default.
    #[prost(string, tag = "1")]
    pub fs_type: String,
    /// Mount options.
    #[prost(string, repeated, tag = "2")]
    pub mount_flags: Vec<String>,
}

/// `VolumeCapability.access_type` (a oneof).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AccessType {
    /// Raw block device.
    #[prost(message, tag = "1")]
    Block(BlockVolume),
    /// A filesystem.
    #[prost(message, tag = "2")]
    Mount(MountVolume),
}

/// How the CO intends to use a volume.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VolumeCapability {
    /// Block or mount.
    #[prost(oneof = "AccessType", tags = "1, 2")]
    pub access_type: Option<AccessType>,
    /// Access mode.
    #[prost(message, optional, tag = "3")]
    pub access_mode: Option<AccessMode>,
}

impl VolumeCapability {
    /// A filesystem volume with `fs_type` and mount flags in `mode`.
    pub fn mount(fs_type: &str, mount_flags: Vec<String>, mode: AccessModeKind) -> Self {
        VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs_type.to_owned(),
                mount_flags,
            })),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }
}

/// Topology segments (`csi.v1.Topology`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Topology {
    /// Key/value segments.
    #[prost(btree_map = "string, string", tag = "1")]
    pub segments: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// csi.v1 Controller (CreateVolume/DeleteVolume only)

/// `CapacityRange`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CapacityRange {
    /// At least this many bytes.
    #[prost(int64, tag = "1")]
    pub required_bytes: i64,
    /// At most this many bytes.
    #[prost(int64, tag = "2")]
    pub limit_bytes: i64,
}

/// Creates a volume.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateVolumeRequest {
    /// Suggested name (idempotency key).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Size wanted.
    #[prost(message, optional, tag = "2")]
    pub capacity_range: Option<CapacityRange>,
    /// How it will be used.
    #[prost(message, repeated, tag = "3")]
    pub volume_capabilities: Vec<VolumeCapability>,
    /// Driver parameters.
    #[prost(btree_map = "string, string", tag = "4")]
    pub parameters: BTreeMap<String, String>,
    /// Secrets.
    #[prost(btree_map = "string, string", tag = "5")]
    pub secrets: BTreeMap<String, String>,
}

/// A provisioned volume.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CsiVolume {
    /// Size in bytes (0: unknown).
    #[prost(int64, tag = "1")]
    pub capacity_bytes: i64,
    /// The driver's id of the volume (the PV's `volumeHandle`).
    #[prost(string, tag = "2")]
    pub volume_id: String,
    /// Context to pass to stage/publish.
    #[prost(btree_map = "string, string", tag = "3")]
    pub volume_context: BTreeMap<String, String>,
    /// Where the volume is reachable from.
    #[prost(message, repeated, tag = "5")]
    pub accessible_topology: Vec<Topology>,
}

/// CreateVolume's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateVolumeResponse {
    /// The volume.
    #[prost(message, optional, tag = "1")]
    pub volume: Option<CsiVolume>,
}

/// Deletes a volume.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteVolumeRequest {
    /// The volume.
    #[prost(string, tag = "1")]
    pub volume_id: String,
    /// Secrets.
    #[prost(btree_map = "string, string", tag = "2")]
    pub secrets: BTreeMap<String, String>,
}

/// DeleteVolume's empty answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteVolumeResponse {}

// ---------------------------------------------------------------------------------------------
// csi.v1 Node

/// Stages a volume at a node-global path.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeStageVolumeRequest {
    /// The volume.
    #[prost(string, tag = "1")]
    pub volume_id: String,
    /// From ControllerPublishVolume (a VolumeAttachment's attachment metadata).
    #[prost(btree_map = "string, string", tag = "2")]
    pub publish_context: BTreeMap<String, String>,
    /// The global mount path.
    #[prost(string, tag = "3")]
    pub staging_target_path: String,
    /// How it will be used.
    #[prost(message, optional, tag = "4")]
    pub volume_capability: Option<VolumeCapability>,
    /// `nodeStageSecretRef`'s data.
    #[prost(btree_map = "string, string", tag = "5")]
    pub secrets: BTreeMap<String, String>,
    /// The PV's volumeAttributes.
    #[prost(btree_map = "string, string", tag = "6")]
    pub volume_context: BTreeMap<String, String>,
}

/// NodeStageVolume's empty answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeStageVolumeResponse {}

/// Undoes a stage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeUnstageVolumeRequest {
    /// The volume.
    #[prost(string, tag = "1")]
    pub volume_id: String,
    /// Where it was staged.
    #[prost(string, tag = "2")]
    pub staging_target_path: String,
}

/// NodeUnstageVolume's empty answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeUnstageVolumeResponse {}

/// Publishes a volume into a pod's directory.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodePublishVolumeRequest {
    /// The volume.
    #[prost(string, tag = "1")]
    pub volume_id: String,
    /// From ControllerPublishVolume.
    #[prost(btree_map = "string, string", tag = "2")]
    pub publish_context: BTreeMap<String, String>,
    /// The global mount path, when the driver stages.
    #[prost(string, tag = "3")]
    pub staging_target_path: String,
    /// The pod's volume path.
    #[prost(string, tag = "4")]
    pub target_path: String,
    /// How it will be used.
    #[prost(message, optional, tag = "5")]
    pub volume_capability: Option<VolumeCapability>,
    /// Publish read-only.
    #[prost(bool, tag = "6")]
    pub readonly: bool,
    /// `nodePublishSecretRef`'s data.
    #[prost(btree_map = "string, string", tag = "7")]
    pub secrets: BTreeMap<String, String>,
    /// Volume attributes (+ pod info, ephemeral flag).
    #[prost(btree_map = "string, string", tag = "8")]
    pub volume_context: BTreeMap<String, String>,
}

/// NodePublishVolume's empty answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodePublishVolumeResponse {}

/// Undoes a publish.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeUnpublishVolumeRequest {
    /// The volume.
    #[prost(string, tag = "1")]
    pub volume_id: String,
    /// Where it was published.
    #[prost(string, tag = "2")]
    pub target_path: String,
}

/// NodeUnpublishVolume's empty answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeUnpublishVolumeResponse {}

/// Asks for a volume's usage.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeGetVolumeStatsRequest {
    /// The volume.
    #[prost(string, tag = "1")]
    pub volume_id: String,
    /// A path where it is staged or published.
    #[prost(string, tag = "2")]
    pub volume_path: String,
    /// The staging path, when there is one.
    #[prost(string, tag = "3")]
    pub staging_target_path: String,
}

/// Unit of a [`VolumeUsage`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum UsageUnit {
    /// Not set.
    Unknown = 0,
    /// Bytes.
    Bytes = 1,
    /// Inodes.
    Inodes = 2,
}

/// One usage figure.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VolumeUsage {
    /// Available.
    #[prost(int64, tag = "1")]
    pub available: i64,
    /// Total.
    #[prost(int64, tag = "2")]
    pub total: i64,
    /// Used.
    #[prost(int64, tag = "3")]
    pub used: i64,
    /// Unit.
    #[prost(enumeration = "UsageUnit", tag = "4")]
    pub unit: i32,
}

/// NodeGetVolumeStats's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeGetVolumeStatsResponse {
    /// Usage by unit.
    #[prost(message, repeated, tag = "1")]
    pub usage: Vec<VolumeUsage>,
}

/// NodeGetCapabilities's empty request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeGetCapabilitiesRequest {}

/// A node service RPC capability (`NodeServiceCapability.RPC.Type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NodeRpcType {
    /// Not set.
    Unknown = 0,
    /// NodeStageVolume/NodeUnstageVolume.
    StageUnstageVolume = 1,
    /// NodeGetVolumeStats.
    GetVolumeStats = 2,
    /// NodeExpandVolume.
    ExpandVolume = 3,
    /// Volume condition in stats.
    VolumeCondition = 4,
    /// SINGLE_NODE_MULTI_WRITER access modes.
    SingleNodeMultiWriter = 5,
    /// Honours the CO's fsGroup at publish.
    VolumeMountGroup = 6,
}

/// `NodeServiceCapability.RPC`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeRpc {
    /// The RPC type.
    #[prost(enumeration = "NodeRpcType", tag = "1")]
    pub r#type: i32,
}

/// `NodeServiceCapability`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeServiceCapability {
    /// The RPC capability (the only member of its oneof).
    #[prost(message, optional, tag = "1")]
    pub rpc: Option<NodeRpc>,
}

/// NodeGetCapabilities's answer.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeGetCapabilitiesResponse {
    /// Capabilities.
    #[prost(message, repeated, tag = "1")]
    pub capabilities: Vec<NodeServiceCapability>,
}

impl NodeGetCapabilitiesResponse {
    /// Whether the node service lists `t`.
    pub fn has(&self, t: NodeRpcType) -> bool {
        self.capabilities
            .iter()
            .any(|c| c.rpc.as_ref().is_some_and(|r| r.r#type == t as i32))
    }
}

/// NodeGetInfo's empty request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeGetInfoRequest {}

/// The node as the driver knows it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeGetInfoResponse {
    /// The driver's node id.
    #[prost(string, tag = "1")]
    pub node_id: String,
    /// Volume limit (0: none).
    #[prost(int64, tag = "2")]
    pub max_volumes_per_node: i64,
    /// Where the node sits.
    #[prost(message, optional, tag = "3")]
    pub accessible_topology: Option<Topology>,
}

fn decodes<M: prost::Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

/// Decodes `bytes` as every reply the agent reads from a registration socket or a CSI driver;
/// returns how many decoded (for the fuzz target and the garbage test: it must never panic).
pub fn decode_every_reply(bytes: &[u8]) -> usize {
    [
        decodes::<PluginInfo>(bytes),
        decodes::<RegistrationStatusResponse>(bytes),
        decodes::<GetPluginInfoResponse>(bytes),
        decodes::<ProbeResponse>(bytes),
        decodes::<CreateVolumeResponse>(bytes),
        decodes::<DeleteVolumeResponse>(bytes),
        decodes::<NodeStageVolumeResponse>(bytes),
        decodes::<NodeUnstageVolumeResponse>(bytes),
        decodes::<NodePublishVolumeResponse>(bytes),
        decodes::<NodeUnpublishVolumeResponse>(bytes),
        decodes::<NodeGetVolumeStatsResponse>(bytes),
        decodes::<NodeGetCapabilitiesResponse>(bytes),
        decodes::<NodeGetInfoResponse>(bytes),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
        let bytes = m.encode_to_vec();
        assert_eq!(&M::decode(bytes.as_slice()).unwrap(), m);
    }

    #[test]
    fn registration_messages_round_trip_with_their_tags() {
        let info = PluginInfo {
            r#type: "CSIPlugin".into(),
            name: "d".into(),
            endpoint: "/e".into(),
            supported_versions: vec!["1.0.0".into()],
        };
        round_trip(&info);
        // type=1 "CSIPlugin", name=2 "d", endpoint=3 "/e", versions=4.
        let mut want = vec![0x0a, 9];
        want.extend_from_slice(b"CSIPlugin");
        want.extend_from_slice(&[0x12, 1, b'd', 0x1a, 2, b'/', b'e', 0x22, 5]);
        want.extend_from_slice(b"1.0.0");
        assert_eq!(info.encode_to_vec(), want);
        let st = RegistrationStatus {
            plugin_registered: true,
            error: "x".into(),
        };
        assert_eq!(st.encode_to_vec(), vec![0x08, 1, 0x12, 1, b'x']);
    }

    #[test]
    fn publish_request_round_trips_with_its_tags() {
        let req = NodePublishVolumeRequest {
            volume_id: "v".into(),
            publish_context: [("p".to_string(), "q".to_string())].into(),
            staging_target_path: "/s".into(),
            target_path: "/t".into(),
            volume_capability: Some(VolumeCapability::mount(
                "ext4",
                vec!["ro".into()],
                AccessModeKind::SingleNodeWriter,
            )),
            readonly: true,
            secrets: [("k".to_string(), "s".to_string())].into(),
            volume_context: [("a".to_string(), "b".to_string())].into(),
        };
        round_trip(&req);
        let bytes = req.encode_to_vec();
        // readonly is field 6 (varint): 0x30 0x01.
        assert!(bytes.windows(2).any(|w| w == [0x30, 1]));
        // target_path is field 4: 0x22.
        assert!(bytes.windows(4).any(|w| w == [0x22, 2, b'/', b't']));
        // volume_context is field 8 (map entry: 0x42).
        assert!(bytes.windows(2).any(|w| w == [0x42, 6]));
        let stage = NodeStageVolumeRequest {
            volume_id: "v".into(),
            staging_target_path: "/g".into(),
            volume_capability: req.volume_capability.clone(),
            ..Default::default()
        };
        round_trip(&stage);
        assert!(stage
            .encode_to_vec()
            .windows(4)
            .any(|w| w == [0x1a, 2, b'/', b'g']));
    }

    #[test]
    fn capability_block_and_mount_tags() {
        let block = VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: 1 }),
        };
        assert_eq!(block.encode_to_vec(), vec![0x0a, 0, 0x1a, 2, 0x08, 1]);
        round_trip(&VolumeCapability::mount(
            "",
            vec![],
            AccessModeKind::MultiNodeMultiWriter,
        ));
    }

    #[test]
    fn node_replies_decode() {
        // capabilities=1 { rpc=1 { type=1 } }
        let caps = NodeGetCapabilitiesResponse::decode(&[0x0a, 4, 0x0a, 2, 0x08, 1][..]).unwrap();
        assert!(caps.has(NodeRpcType::StageUnstageVolume));
        assert!(!caps.has(NodeRpcType::GetVolumeStats));
        let info = NodeGetInfoResponse {
            node_id: "n1".into(),
            max_volumes_per_node: 7,
            accessible_topology: Some(Topology {
                segments: [("topology.hostpath.csi/node".to_string(), "n1".to_string())].into(),
            }),
        };
        round_trip(&info);
        assert_eq!(&info.encode_to_vec()[..6], &[0x0a, 2, b'n', b'1', 0x10, 7]);
        let probe = ProbeResponse::decode(&[][..]).unwrap();
        assert!(probe.ready.is_none());
        round_trip(&NodeGetVolumeStatsResponse {
            usage: vec![VolumeUsage {
                available: 1,
                total: 2,
                used: 1,
                unit: UsageUnit::Bytes as i32,
            }],
        });
        round_trip(&CreateVolumeResponse {
            volume: Some(CsiVolume {
                capacity_bytes: 1 << 20,
                volume_id: "id".into(),
                volume_context: BTreeMap::new(),
                accessible_topology: vec![],
            }),
        });
    }

    #[test]
    fn garbage_never_panics() {
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..4000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let len = (s % 48) as usize;
            let data: Vec<u8> = (0..len)
                .map(|i| (s.rotate_left(i as u32 * 7) & 0xff) as u8)
                .collect();
            let _ = decode_every_reply(&data);
        }
    }
}
