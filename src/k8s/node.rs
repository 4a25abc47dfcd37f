//! core/v1 `Node`: the object a node agent registers and whose status it reports.
//!
//! Owns the shape only; computing conditions and deciding when to report is the status
//! reporter's job. Quantities (capacity, allocatable) stay as the server's strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// core/v1 Node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Node {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: NodeSpec,
    pub status: NodeStatus,
}

/// core/v1 NodeSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSpec {
    #[serde(rename = "podCIDR", skip_serializing_if = "String::is_empty")]
    pub pod_cidr: String,
    #[serde(rename = "podCIDRs", skip_serializing_if = "Vec::is_empty")]
    pub pod_cidrs: Vec<String>,
    #[serde(rename = "providerID", skip_serializing_if = "String::is_empty")]
    pub provider_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
}

/// core/v1 Taint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Taint {
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// "NoSchedule", "PreferNoSchedule" or "NoExecute".
    pub effect: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_added: Option<String>,
}

/// core/v1 NodeStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeStatus {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub allocatable: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<NodeCondition>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub daemon_endpoints: Option<NodeDaemonEndpoints>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_info: Option<NodeSystemInfo>,
}

/// core/v1 NodeCondition (Ready, MemoryPressure, DiskPressure, PIDPressure, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeCondition {
    #[serde(rename = "type")]
    pub condition_type: String,
    /// "True", "False" or "Unknown".
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// core/v1 NodeAddress (type: Hostname, InternalIP, ExternalIP, InternalDNS, ExternalDNS).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeAddress {
    #[serde(rename = "type")]
    pub address_type: String,
    pub address: String,
}

/// core/v1 NodeDaemonEndpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeDaemonEndpoints {
    pub kubelet_endpoint: DaemonEndpoint,
}

/// core/v1 DaemonEndpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DaemonEndpoint {
    pub port: i32,
}

/// core/v1 NodeSystemInfo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NodeSystemInfo {
    #[serde(rename = "machineID")]
    pub machine_id: String,
    #[serde(rename = "systemUUID")]
    pub system_uuid: String,
    #[serde(rename = "bootID")]
    pub boot_id: String,
    pub kernel_version: String,
    pub os_image: String,
    pub container_runtime_version: String,
    pub kubelet_version: String,
    pub kube_proxy_version: String,
    pub operating_system: String,
    pub architecture: String,
}

impl NodeStatus {
    /// The condition of the given type, if reported.
    pub fn condition(&self, condition_type: &str) -> Option<&NodeCondition> {
        self.conditions
            .iter()
            .find(|c| c.condition_type == condition_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER_NODE: &str = r#"{
      "kind":"Node","apiVersion":"v1",
      "metadata":{"name":"pi-1","uid":"u","resourceVersion":"5","labels":{"kubernetes.io/arch":"arm64"}},
      "spec":{"podCIDR":"10.244.1.0/24","podCIDRs":["10.244.1.0/24","fd00::/64"],
              "providerID":"edge://pi-1","taints":[{"key":"k","effect":"NoSchedule"}]},
      "status":{
        "capacity":{"cpu":"4","memory":"3884Mi","pods":"110"},
        "allocatable":{"cpu":"4","memory":"3782Mi","pods":"110"},
        "conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"ok",
          "lastHeartbeatTime":"2024-05-01T12:00:00Z","lastTransitionTime":"2024-05-01T11:00:00Z"}],
        "addresses":[{"type":"InternalIP","address":"192.168.1.10"},{"type":"Hostname","address":"pi-1"}],
        "daemonEndpoints":{"kubeletEndpoint":{"Port":10250}},
        "nodeInfo":{"machineID":"m","systemUUID":"s","bootID":"b","kernelVersion":"6.6",
          "osImage":"Debian","containerRuntimeVersion":"containerd://1.7","kubeletVersion":"v1.32.0",
          "kubeProxyVersion":"v1.32.0","operatingSystem":"linux","architecture":"arm64"},
        "images":[{"names":["x"],"sizeBytes":1}]
      }}"#;

    #[test]
    fn decodes_a_server_node() {
        let n: Node = serde_json::from_str(SERVER_NODE).unwrap();
        assert_eq!(n.spec.pod_cidrs.len(), 2);
        assert_eq!(n.spec.provider_id, "edge://pi-1");
        assert_eq!(n.status.capacity["memory"], "3884Mi");
        assert_eq!(n.status.condition("Ready").unwrap().reason, "KubeletReady");
        assert_eq!(
            n.status
                .daemon_endpoints
                .as_ref()
                .unwrap()
                .kubelet_endpoint
                .port,
            10250
        );
        let info = n.status.node_info.as_ref().unwrap();
        assert_eq!(info.machine_id, "m");
        assert_eq!(info.architecture, "arm64");
    }

    #[test]
    fn round_trip_keeps_wire_names() {
        let n: Node = serde_json::from_str(SERVER_NODE).unwrap();
        let j = serde_json::to_value(&n).unwrap();
        assert_eq!(j["spec"]["podCIDR"], "10.244.1.0/24");
        assert_eq!(j["status"]["nodeInfo"]["systemUUID"], "s");
        assert_eq!(
            j["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        assert_eq!(serde_json::from_value::<Node>(j).unwrap(), n);
    }

    #[test]
    fn empty_node_serializes_small() {
        let j = serde_json::to_string(&Node::default()).unwrap();
        assert_eq!(j, r#"{"metadata":{},"spec":{},"status":{}}"#);
    }
}
