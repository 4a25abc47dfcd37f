//! Storage objects a node reads or writes for CSI volumes: core/v1 PersistentVolumeClaim and
//! PersistentVolume (their CSI source), storage.k8s.io/v1 CSIDriver, CSINode and
//! VolumeAttachment, and the pod's inline `csi` volume source.
//!
//! Only the fields the node side of CSI uses are modelled; what they mean for mounting is the
//! CSI module's business.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

fn is_false(b: &bool) -> bool {
    !*b
}

/// A list the server may send as `null` (it does for an empty CSINode `drivers`).
fn null_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A map the server may send as `null`.
fn null_map<'de, D>(d: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, String>>::deserialize(d)?.unwrap_or_default())
}

/// A reference to a Secret by name only (in the pod's namespace).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LocalSecretRef {
    pub name: String,
}

/// A reference to a Secret anywhere (`SecretReference`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretRef {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// core/v1 CSIVolumeSource: a CSI ephemeral inline volume in a pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CsiVolumeSource {
    pub driver: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_type: Option<String>,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub volume_attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_publish_secret_ref: Option<LocalSecretRef>,
}

/// core/v1 CSIPersistentVolumeSource: a PV served by a CSI driver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CsiPersistentVolumeSource {
    pub driver: String,
    pub volume_handle: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fs_type: String,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub volume_attributes: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_stage_secret_ref: Option<SecretRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_publish_secret_ref: Option<SecretRef>,
}

/// core/v1 PersistentVolumeSpec (the CSI source, mount options, access modes, mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PersistentVolumeSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi: Option<CsiPersistentVolumeSource>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_vec")]
    pub access_modes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_vec")]
    pub mount_options: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
}

/// core/v1 PersistentVolume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistentVolume {
    pub metadata: ObjectMeta,
    pub spec: PersistentVolumeSpec,
}

/// core/v1 PersistentVolumeClaimSpec (what the node needs: the bound volume's name).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PersistentVolumeClaimSpec {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub volume_name: String,
}

/// core/v1 PersistentVolumeClaimStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistentVolumeClaimStatus {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub phase: String,
}

/// core/v1 PersistentVolumeClaim.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PersistentVolumeClaim {
    pub metadata: ObjectMeta,
    pub spec: PersistentVolumeClaimSpec,
    pub status: PersistentVolumeClaimStatus,
}

/// storage.k8s.io/v1 TokenRequest of a CSIDriver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenRequest {
    pub audience: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
}

/// storage.k8s.io/v1 CSIDriverSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CsiDriverSpec {
    /// Defaults to true at the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attach_required: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_info_on_mount: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_vec")]
    pub volume_lifecycle_modes: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_vec")]
    pub token_requests: Vec<TokenRequest>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires_republish: Option<bool>,
}

/// storage.k8s.io/v1 CSIDriver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsiDriver {
    pub metadata: ObjectMeta,
    pub spec: CsiDriverSpec,
}

/// storage.k8s.io/v1 VolumeNodeResources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeNodeResources {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<i64>,
}

/// storage.k8s.io/v1 CSINodeDriver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CsiNodeDriver {
    pub name: String,
    #[serde(rename = "nodeID")]
    pub node_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty", deserialize_with = "null_vec")]
    pub topology_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allocatable: Option<VolumeNodeResources>,
}

/// storage.k8s.io/v1 CSINodeSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsiNodeSpec {
    #[serde(deserialize_with = "null_vec")]
    pub drivers: Vec<CsiNodeDriver>,
}

/// storage.k8s.io/v1 CSINode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CsiNode {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: CsiNodeSpec,
}

/// storage.k8s.io/v1 VolumeAttachmentStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeAttachmentStatus {
    pub attached: bool,
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "null_map"
    )]
    pub attachment_metadata: BTreeMap<String, String>,
}

/// storage.k8s.io/v1 VolumeAttachment (its status is all the node reads).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct VolumeAttachment {
    pub metadata: ObjectMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<VolumeAttachmentStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pv_and_driver_decode() {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": "pv1"},
            "spec": {"csi": {"driver": "hostpath.csi.k8s.io", "volumeHandle": "h1",
                "fsType": "ext4", "volumeAttributes": {"a": "b"},
                "nodePublishSecretRef": {"name": "s", "namespace": "n"}},
                "accessModes": ["ReadWriteOnce"], "mountOptions": ["noatime"]}
        }))
        .unwrap();
        let csi = pv.spec.csi.unwrap();
        assert_eq!(csi.volume_handle, "h1");
        assert_eq!(csi.node_publish_secret_ref.unwrap().namespace, "n");
        let d: CsiDriver = serde_json::from_value(json!({
            "metadata": {"name": "hostpath.csi.k8s.io"},
            "spec": {"attachRequired": false, "podInfoOnMount": true,
                "volumeLifecycleModes": ["Persistent", "Ephemeral"]}
        }))
        .unwrap();
        assert_eq!(d.spec.attach_required, Some(false));
        let n = CsiNodeDriver {
            name: "d".into(),
            node_id: "n1".into(),
            topology_keys: vec![],
            allocatable: Some(VolumeNodeResources { count: Some(3) }),
        };
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(
            v,
            json!({"name": "d", "nodeID": "n1", "allocatable": {"count": 3}})
        );
    }
}
