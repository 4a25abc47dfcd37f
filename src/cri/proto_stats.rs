//! CRI `runtime.v1` messages for resource statistics and log reopening: `ListContainerStats`,
//! `ListPodSandboxStats` and `ReopenContainerLog`, trimmed to what the kubelet API's
//! `/stats/summary`, `/metrics/resource` and log rotation read.
//!
//! Field numbers are those of kubernetes/cri-api `pkg/apis/runtime/v1/api.proto`
//! (`ContainerStatsFilter`, `PodSandboxStatsFilter`, `PodSandboxAttributes`, `PodSandboxStats`,
//! `LinuxPodSandboxStats`, `NetworkUsage`, `NetworkInterfaceUsage`, `ProcessUsage`,
//! `ReopenContainerLogRequest`); the shared usage messages (`CpuUsage`, `MemoryUsage`,
//! `ContainerStats`) live in [`super::proto`]. Data only: no I/O, no gRPC.

use std::collections::BTreeMap;

use super::proto::{ContainerStats, CpuUsage, MemoryUsage, PodSandboxMetadata, UInt64Value};

/// Which containers' stats to list (all fields ANDed; empty = any).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatsFilter {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Sandbox id.
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    /// Labels that must match.
    #[prost(btree_map = "string, string", tag = "3")]
    pub label_selector: BTreeMap<String, String>,
}

/// ListContainerStats request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainerStatsRequest {
    /// Filter (all containers when None).
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerStatsFilter>,
}

/// ListContainerStats response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainerStatsResponse {
    /// One entry per container.
    #[prost(message, repeated, tag = "1")]
    pub stats: Vec<ContainerStats>,
}

/// Which sandboxes' stats to list.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatsFilter {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Labels that must match.
    #[prost(btree_map = "string, string", tag = "2")]
    pub label_selector: BTreeMap<String, String>,
}

/// ListPodSandboxStats request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxStatsRequest {
    /// Filter (all sandboxes when None).
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxStatsFilter>,
}

/// ListPodSandboxStats response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxStatsResponse {
    /// One entry per sandbox.
    #[prost(message, repeated, tag = "1")]
    pub stats: Vec<PodSandboxStats>,
}

/// Identity of a sandbox in stats.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxAttributes {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Pod identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "3")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "4")]
    pub annotations: BTreeMap<String, String>,
}

/// Resource usage of one sandbox (the `windows` field, 3, is not modelled).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStats {
    /// Identity.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<PodSandboxAttributes>,
    /// Linux usage.
    #[prost(message, optional, tag = "2")]
    pub linux: Option<LinuxPodSandboxStats>,
}

/// A sandbox's usage on Linux.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxStats {
    /// CPU of the pod cgroup.
    #[prost(message, optional, tag = "1")]
    pub cpu: Option<CpuUsage>,
    /// Memory of the pod cgroup.
    #[prost(message, optional, tag = "2")]
    pub memory: Option<MemoryUsage>,
    /// Network of the sandbox's namespace.
    #[prost(message, optional, tag = "3")]
    pub network: Option<NetworkUsage>,
    /// Processes.
    #[prost(message, optional, tag = "4")]
    pub process: Option<ProcessUsage>,
    /// The sandbox's containers.
    #[prost(message, repeated, tag = "5")]
    pub containers: Vec<ContainerStats>,
}

/// Network usage sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetworkUsage {
    /// Sample time (ns).
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    /// The default interface.
    #[prost(message, optional, tag = "2")]
    pub default_interface: Option<NetworkInterfaceUsage>,
    /// The other interfaces.
    #[prost(message, repeated, tag = "3")]
    pub interfaces: Vec<NetworkInterfaceUsage>,
}

/// Cumulative counters of one interface.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetworkInterfaceUsage {
    /// Interface name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Bytes received.
    #[prost(message, optional, tag = "2")]
    pub rx_bytes: Option<UInt64Value>,
    /// Receive errors.
    #[prost(message, optional, tag = "3")]
    pub rx_errors: Option<UInt64Value>,
    /// Bytes sent.
    #[prost(message, optional, tag = "4")]
    pub tx_bytes: Option<UInt64Value>,
    /// Transmit errors.
    #[prost(message, optional, tag = "5")]
    pub tx_errors: Option<UInt64Value>,
}

/// Process count sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProcessUsage {
    /// Sample time (ns).
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    /// Number of processes.
    #[prost(message, optional, tag = "2")]
    pub process_count: Option<UInt64Value>,
}

/// ReopenContainerLog request: the runtime reopens the container's log file (after the
/// kubelet renamed it during rotation).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReopenContainerLogRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// ReopenContainerLog response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReopenContainerLogResponse {}

/// Decodes `bytes` as every response type here; how many accepted it (fuzzing entry point).
pub fn decode_every_response(bytes: &[u8]) -> usize {
    use prost::Message;
    [
        ListContainerStatsResponse::decode(bytes).is_ok(),
        ListPodSandboxStatsResponse::decode(bytes).is_ok(),
        ReopenContainerLogResponse::decode(bytes).is_ok(),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::proto::{ContainerAttributes, ContainerMetadata};
    use prost::Message;

    fn u64v(value: u64) -> Option<UInt64Value> {
        Some(UInt64Value { value })
    }

    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
        let bytes = m.encode_to_vec();
        let back = M::decode(bytes.as_slice()).unwrap();
        assert_eq!(&back, m);
        assert_eq!(back.encode_to_vec(), bytes);
    }

    fn sandbox_stats() -> PodSandboxStats {
        PodSandboxStats {
            attributes: Some(PodSandboxAttributes {
                id: "sb".into(),
                metadata: Some(PodSandboxMetadata {
                    name: "p".into(),
                    uid: "u".into(),
                    namespace: "n".into(),
                    attempt: 1,
                }),
                labels: [("a".to_string(), "b".to_string())].into(),
                annotations: BTreeMap::new(),
            }),
            linux: Some(LinuxPodSandboxStats {
                cpu: Some(CpuUsage {
                    timestamp: 5,
                    usage_core_nano_seconds: u64v(7),
                    usage_nano_cores: u64v(3),
                }),
                memory: Some(MemoryUsage {
                    timestamp: 5,
                    working_set_bytes: u64v(1 << 20),
                    ..Default::default()
                }),
                network: Some(NetworkUsage {
                    timestamp: 5,
                    default_interface: Some(NetworkInterfaceUsage {
                        name: "eth0".into(),
                        rx_bytes: u64v(10),
                        rx_errors: u64v(0),
                        tx_bytes: u64v(20),
                        tx_errors: u64v(1),
                    }),
                    interfaces: vec![],
                }),
                process: Some(ProcessUsage {
                    timestamp: 5,
                    process_count: u64v(2),
                }),
                containers: vec![ContainerStats {
                    attributes: Some(ContainerAttributes {
                        id: "c".into(),
                        metadata: Some(ContainerMetadata {
                            name: "main".into(),
                            attempt: 0,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
            }),
        }
    }

    #[test]
    fn messages_round_trip() {
        round_trip(&ListContainerStatsRequest {
            filter: Some(ContainerStatsFilter {
                id: "c".into(),
                pod_sandbox_id: "sb".into(),
                label_selector: [("k".to_string(), "v".to_string())].into(),
            }),
        });
        round_trip(&ListPodSandboxStatsRequest {
            filter: Some(PodSandboxStatsFilter {
                id: "sb".into(),
                label_selector: BTreeMap::new(),
            }),
        });
        round_trip(&ListPodSandboxStatsResponse {
            stats: vec![sandbox_stats()],
        });
        round_trip(&ReopenContainerLogRequest {
            container_id: "c".into(),
        });
    }

    #[test]
    fn field_numbers_are_the_cri_api_ones() {
        // ReopenContainerLogRequest.container_id = 1 (string): tag 0x0a.
        let b = ReopenContainerLogRequest {
            container_id: "x".into(),
        }
        .encode_to_vec();
        assert_eq!(b, [0x0a, 1, b'x']);
        // ContainerStatsFilter.pod_sandbox_id = 2: tag 0x12.
        let b = ContainerStatsFilter {
            pod_sandbox_id: "s".into(),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(b, [0x12, 1, b's']);
        // NetworkInterfaceUsage.tx_bytes = 4 (message): tag 0x22, UInt64Value{value=1 → 0x08 1}.
        let b = NetworkInterfaceUsage {
            tx_bytes: u64v(1),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(b, [0x22, 2, 0x08, 1]);
        // LinuxPodSandboxStats.containers = 5: tag 0x2a; PodSandboxStats.linux = 2: tag 0x12.
        let b = LinuxPodSandboxStats {
            containers: vec![ContainerStats::default()],
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(b, [0x2a, 0]);
        let b = PodSandboxStats {
            linux: Some(LinuxPodSandboxStats::default()),
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(b, [0x12, 0]);
    }

    #[test]
    fn garbage_never_panics() {
        for data in [&b""[..], b"\xff\xff\xff", b"\x0a\x80", b"\x12\x05abc"] {
            let _ = decode_every_response(data);
        }
    }
}
