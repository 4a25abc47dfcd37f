//! CRI `runtime.v1` messages, trimmed to the fields a kubelet sends or reads.
//!
//! Field numbers are those of kubernetes/cri-api `pkg/apis/runtime/v1/api.proto`; a wrong tag
//! would silently drop data, so the round-trip and golden tests below pin the important ones.
//! Fields we do not model are skipped by the decoder (protobuf semantics), so a newer runtime
//! never breaks us. Maps are `BTreeMap` so encodings are deterministic.
//!
//! This module only describes data; it does no I/O and knows nothing of gRPC.

use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Enumerations

/// Transport protocol of a port mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Protocol {
    /// TCP.
    Tcp = 0,
    /// UDP.
    Udp = 1,
    /// SCTP.
    Sctp = 2,
}

/// Mount propagation mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MountPropagation {
    /// rprivate.
    PropagationPrivate = 0,
    /// rslave.
    PropagationHostToContainer = 1,
    /// rshared.
    PropagationBidirectional = 2,
}

/// Scope of a Linux namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum NamespaceMode {
    /// Shared by all containers of the pod.
    Pod = 0,
    /// Private to one container.
    Container = 1,
    /// The node's own namespace.
    Node = 2,
    /// The namespace of the container named by `target_id`.
    Target = 3,
}

/// State of a pod sandbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum PodSandboxState {
    /// Running and usable.
    SandboxReady = 0,
    /// Stopped or broken.
    SandboxNotready = 1,
}

/// State of a container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ContainerState {
    /// Created, not started.
    ContainerCreated = 0,
    /// Running.
    ContainerRunning = 1,
    /// Exited.
    ContainerExited = 2,
    /// The runtime lost track of it.
    ContainerUnknown = 3,
}

/// Kind of seccomp/AppArmor profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ProfileType {
    /// The runtime's default profile.
    RuntimeDefault = 0,
    /// No profile.
    Unconfined = 1,
    /// A profile installed on the node (`localhost_ref`).
    Localhost = 2,
}

// ---------------------------------------------------------------------------------------------
// Shared pieces

/// Wrapper giving an int64 presence.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Int64Value {
    /// The value.
    #[prost(int64, tag = "1")]
    pub value: i64,
}

/// Wrapper giving a uint64 presence.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UInt64Value {
    /// The value.
    #[prost(uint64, tag = "1")]
    pub value: u64,
}

/// An environment variable (containerd 1.6 has `value` as string; same wire type as bytes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    /// Name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// An image reference.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageSpec {
    /// Image name, id or digest reference.
    #[prost(string, tag = "1")]
    pub image: String,
    /// Annotations (multi-arch selection).
    #[prost(btree_map = "string, string", tag = "2")]
    pub annotations: BTreeMap<String, String>,
}

/// DNS settings of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DnsConfig {
    /// Name servers.
    #[prost(string, repeated, tag = "1")]
    pub servers: Vec<String>,
    /// Search domains.
    #[prost(string, repeated, tag = "2")]
    pub searches: Vec<String>,
    /// resolv.conf options.
    #[prost(string, repeated, tag = "3")]
    pub options: Vec<String>,
}

/// A host port mapping of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PortMapping {
    /// Protocol.
    #[prost(enumeration = "Protocol", tag = "1")]
    pub protocol: i32,
    /// Port inside the pod.
    #[prost(int32, tag = "2")]
    pub container_port: i32,
    /// Port on the host (0: none).
    #[prost(int32, tag = "3")]
    pub host_port: i32,
    /// Host address to bind.
    #[prost(string, tag = "4")]
    pub host_ip: String,
}

/// A host path mounted into a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Mount {
    /// Path inside the container.
    #[prost(string, tag = "1")]
    pub container_path: String,
    /// Path on the host.
    #[prost(string, tag = "2")]
    pub host_path: String,
    /// Read-only mount.
    #[prost(bool, tag = "3")]
    pub readonly: bool,
    /// Needs SELinux relabelling.
    #[prost(bool, tag = "4")]
    pub selinux_relabel: bool,
    /// Propagation mode.
    #[prost(enumeration = "MountPropagation", tag = "5")]
    pub propagation: i32,
}

/// Namespace scopes of a sandbox or container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamespaceOption {
    /// Network namespace.
    #[prost(enumeration = "NamespaceMode", tag = "1")]
    pub network: i32,
    /// PID namespace.
    #[prost(enumeration = "NamespaceMode", tag = "2")]
    pub pid: i32,
    /// IPC namespace.
    #[prost(enumeration = "NamespaceMode", tag = "3")]
    pub ipc: i32,
    /// Target container for `Target` mode.
    #[prost(string, tag = "4")]
    pub target_id: String,
}

/// A seccomp or AppArmor profile choice.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SecurityProfile {
    /// Kind of profile.
    #[prost(enumeration = "ProfileType", tag = "1")]
    pub profile_type: i32,
    /// Profile on the node, for `Localhost`.
    #[prost(string, tag = "2")]
    pub localhost_ref: String,
}

/// Linux resource limits of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerResources {
    /// CFS period (µs).
    #[prost(int64, tag = "1")]
    pub cpu_period: i64,
    /// CFS quota (µs).
    #[prost(int64, tag = "2")]
    pub cpu_quota: i64,
    /// CPU shares.
    #[prost(int64, tag = "3")]
    pub cpu_shares: i64,
    /// Memory limit in bytes.
    #[prost(int64, tag = "4")]
    pub memory_limit_in_bytes: i64,
    /// OOM score adjustment (never negative on hosts without CAP_SYS_RESOURCE).
    #[prost(int64, tag = "5")]
    pub oom_score_adj: i64,
    /// Allowed CPUs.
    #[prost(string, tag = "6")]
    pub cpuset_cpus: String,
    /// Allowed memory nodes.
    #[prost(string, tag = "7")]
    pub cpuset_mems: String,
}

/// Capabilities to add or drop.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Capability {
    /// Added capabilities.
    #[prost(string, repeated, tag = "1")]
    pub add_capabilities: Vec<String>,
    /// Dropped capabilities.
    #[prost(string, repeated, tag = "2")]
    pub drop_capabilities: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Sandbox configuration

/// Security settings of the sandbox itself.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxSandboxSecurityContext {
    /// Namespace scopes.
    #[prost(message, optional, tag = "1")]
    pub namespace_options: Option<NamespaceOption>,
    /// UID of sandbox processes.
    #[prost(message, optional, tag = "3")]
    pub run_as_user: Option<Int64Value>,
    /// Read-only root filesystem.
    #[prost(bool, tag = "4")]
    pub readonly_rootfs: bool,
    /// Supplemental groups.
    #[prost(int64, repeated, tag = "5")]
    pub supplemental_groups: Vec<i64>,
    /// The sandbox will host privileged containers.
    #[prost(bool, tag = "6")]
    pub privileged: bool,
    /// GID of sandbox processes.
    #[prost(message, optional, tag = "8")]
    pub run_as_group: Option<Int64Value>,
    /// Seccomp profile.
    #[prost(message, optional, tag = "9")]
    pub seccomp: Option<SecurityProfile>,
}

/// Linux settings of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxConfig {
    /// Parent cgroup (cgroupfs form).
    #[prost(string, tag = "1")]
    pub cgroup_parent: String,
    /// Security settings.
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxSandboxSecurityContext>,
    /// Namespaced sysctls.
    #[prost(btree_map = "string, string", tag = "3")]
    pub sysctls: BTreeMap<String, String>,
}

/// Identity of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    /// Pod name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Pod UID.
    #[prost(string, tag = "2")]
    pub uid: String,
    /// Pod namespace.
    #[prost(string, tag = "3")]
    pub namespace: String,
    /// Attempt number.
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

/// Everything needed to create a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxConfig {
    /// Identity.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<PodSandboxMetadata>,
    /// Hostname (leave empty with a host network namespace).
    #[prost(string, tag = "2")]
    pub hostname: String,
    /// Directory for container logs.
    #[prost(string, tag = "3")]
    pub log_directory: String,
    /// DNS settings.
    #[prost(message, optional, tag = "4")]
    pub dns_config: Option<DnsConfig>,
    /// Host port mappings.
    #[prost(message, repeated, tag = "5")]
    pub port_mappings: Vec<PortMapping>,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "6")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "7")]
    pub annotations: BTreeMap<String, String>,
    /// Linux settings.
    #[prost(message, optional, tag = "8")]
    pub linux: Option<LinuxPodSandboxConfig>,
}

// ---------------------------------------------------------------------------------------------
// Container configuration

/// Security settings of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerSecurityContext {
    /// Capabilities.
    #[prost(message, optional, tag = "1")]
    pub capabilities: Option<Capability>,
    /// Privileged container.
    #[prost(bool, tag = "2")]
    pub privileged: bool,
    /// Namespace scopes.
    #[prost(message, optional, tag = "3")]
    pub namespace_options: Option<NamespaceOption>,
    /// UID of the process.
    #[prost(message, optional, tag = "5")]
    pub run_as_user: Option<Int64Value>,
    /// User name of the process (resolved in the image).
    #[prost(string, tag = "6")]
    pub run_as_username: String,
    /// Read-only root filesystem.
    #[prost(bool, tag = "7")]
    pub readonly_rootfs: bool,
    /// Supplemental groups.
    #[prost(int64, repeated, tag = "8")]
    pub supplemental_groups: Vec<i64>,
    /// Set no_new_privs.
    #[prost(bool, tag = "11")]
    pub no_new_privs: bool,
    /// GID of the process.
    #[prost(message, optional, tag = "12")]
    pub run_as_group: Option<Int64Value>,
    /// Paths to mask.
    #[prost(string, repeated, tag = "13")]
    pub masked_paths: Vec<String>,
    /// Paths to make read-only.
    #[prost(string, repeated, tag = "14")]
    pub readonly_paths: Vec<String>,
    /// Seccomp profile.
    #[prost(message, optional, tag = "15")]
    pub seccomp: Option<SecurityProfile>,
}

/// Linux settings of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxContainerConfig {
    /// Resource limits.
    #[prost(message, optional, tag = "1")]
    pub resources: Option<LinuxContainerResources>,
    /// Security settings.
    #[prost(message, optional, tag = "2")]
    pub security_context: Option<LinuxContainerSecurityContext>,
}

/// Identity of a container within its sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerMetadata {
    /// Container name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Attempt number.
    #[prost(uint32, tag = "2")]
    pub attempt: u32,
}

/// Everything needed to create a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerConfig {
    /// Identity.
    #[prost(message, optional, tag = "1")]
    pub metadata: Option<ContainerMetadata>,
    /// Image.
    #[prost(message, optional, tag = "2")]
    pub image: Option<ImageSpec>,
    /// Entrypoint.
    #[prost(string, repeated, tag = "3")]
    pub command: Vec<String>,
    /// Arguments.
    #[prost(string, repeated, tag = "4")]
    pub args: Vec<String>,
    /// Working directory.
    #[prost(string, tag = "5")]
    pub working_dir: String,
    /// Environment.
    #[prost(message, repeated, tag = "6")]
    pub envs: Vec<KeyValue>,
    /// Mounts.
    #[prost(message, repeated, tag = "7")]
    pub mounts: Vec<Mount>,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "9")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "10")]
    pub annotations: BTreeMap<String, String>,
    /// Log path relative to the sandbox's log directory.
    #[prost(string, tag = "11")]
    pub log_path: String,
    /// Keep stdin open.
    #[prost(bool, tag = "12")]
    pub stdin: bool,
    /// Close stdin after the first attach.
    #[prost(bool, tag = "13")]
    pub stdin_once: bool,
    /// Allocate a TTY.
    #[prost(bool, tag = "14")]
    pub tty: bool,
    /// Linux settings.
    #[prost(message, optional, tag = "15")]
    pub linux: Option<LinuxContainerConfig>,
}

// ---------------------------------------------------------------------------------------------
// RuntimeService: Version, Status

/// Version request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionRequest {
    /// Our CRI API version.
    #[prost(string, tag = "1")]
    pub version: String,
}

/// Version response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct VersionResponse {
    /// CRI API version.
    #[prost(string, tag = "1")]
    pub version: String,
    /// Runtime name.
    #[prost(string, tag = "2")]
    pub runtime_name: String,
    /// Runtime version.
    #[prost(string, tag = "3")]
    pub runtime_version: String,
    /// Runtime API version.
    #[prost(string, tag = "4")]
    pub runtime_api_version: String,
}

/// Status request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusRequest {
    /// Ask for extra info.
    #[prost(bool, tag = "1")]
    pub verbose: bool,
}

/// One runtime condition (RuntimeReady, NetworkReady).
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeCondition {
    /// Condition type.
    #[prost(string, tag = "1")]
    pub condition_type: String,
    /// True when met.
    #[prost(bool, tag = "2")]
    pub status: bool,
    /// CamelCase reason.
    #[prost(string, tag = "3")]
    pub reason: String,
    /// Human-readable message.
    #[prost(string, tag = "4")]
    pub message: String,
}

/// Runtime conditions.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RuntimeStatus {
    /// Conditions.
    #[prost(message, repeated, tag = "1")]
    pub conditions: Vec<RuntimeCondition>,
}

/// Status response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StatusResponse {
    /// Conditions.
    #[prost(message, optional, tag = "1")]
    pub status: Option<RuntimeStatus>,
    /// Verbose info (JSON values).
    #[prost(btree_map = "string, string", tag = "2")]
    pub info: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------------------------
// RuntimeService: sandboxes

/// RunPodSandbox request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxRequest {
    /// Sandbox configuration.
    #[prost(message, optional, tag = "1")]
    pub config: Option<PodSandboxConfig>,
    /// Runtime handler (RuntimeClass); empty for the default.
    #[prost(string, tag = "2")]
    pub runtime_handler: String,
}

/// RunPodSandbox response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RunPodSandboxResponse {
    /// New sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// StopPodSandbox request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopPodSandboxRequest {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// StopPodSandbox response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopPodSandboxResponse {}

/// RemovePodSandbox request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemovePodSandboxRequest {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
}

/// RemovePodSandbox response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemovePodSandboxResponse {}

/// PodSandboxStatus request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Ask for extra info.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// An additional pod IP.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodIp {
    /// Address.
    #[prost(string, tag = "1")]
    pub ip: String,
}

/// Network status of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxNetworkStatus {
    /// Primary IP.
    #[prost(string, tag = "1")]
    pub ip: String,
    /// Other IPs (dual stack).
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

/// Namespaces of a sandbox as the runtime reports them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Namespace {
    /// Namespace scopes.
    #[prost(message, optional, tag = "2")]
    pub options: Option<NamespaceOption>,
}

/// Linux status of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LinuxPodSandboxStatus {
    /// Namespaces.
    #[prost(message, optional, tag = "1")]
    pub namespaces: Option<Namespace>,
}

/// Status of a sandbox.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// State.
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    /// Creation time (ns since the epoch).
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Network status.
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
    /// Linux status.
    #[prost(message, optional, tag = "6")]
    pub linux: Option<LinuxPodSandboxStatus>,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "7")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "8")]
    pub annotations: BTreeMap<String, String>,
    /// Runtime handler.
    #[prost(string, tag = "9")]
    pub runtime_handler: String,
}

/// PodSandboxStatus response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    /// Status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    /// Verbose info (JSON values).
    #[prost(btree_map = "string, string", tag = "2")]
    pub info: BTreeMap<String, String>,
}

/// Wrapper giving a sandbox state presence in filters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStateValue {
    /// State.
    #[prost(enumeration = "PodSandboxState", tag = "1")]
    pub state: i32,
}

/// Sandbox list filter (all set fields ANDed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxFilter {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// State.
    #[prost(message, optional, tag = "2")]
    pub state: Option<PodSandboxStateValue>,
    /// Labels that must all match.
    #[prost(btree_map = "string, string", tag = "3")]
    pub label_selector: BTreeMap<String, String>,
}

/// ListPodSandbox request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {
    /// Filter.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

/// A sandbox in a list.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    /// Sandbox id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    /// State.
    #[prost(enumeration = "PodSandboxState", tag = "3")]
    pub state: i32,
    /// Creation time (ns).
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "6")]
    pub annotations: BTreeMap<String, String>,
    /// Runtime handler.
    #[prost(string, tag = "7")]
    pub runtime_handler: String,
}

/// ListPodSandbox response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    /// Sandboxes.
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

// ---------------------------------------------------------------------------------------------
// RuntimeService: containers

/// CreateContainer request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerRequest {
    /// Sandbox to create the container in.
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    /// Container configuration.
    #[prost(message, optional, tag = "2")]
    pub config: Option<ContainerConfig>,
    /// The sandbox's configuration, as passed to RunPodSandbox.
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// CreateContainer response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateContainerResponse {
    /// New container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// StartContainer request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartContainerRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// StartContainer response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StartContainerResponse {}

/// StopContainer request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Seconds between SIGTERM and SIGKILL.
    #[prost(int64, tag = "2")]
    pub timeout: i64,
}

/// StopContainer response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StopContainerResponse {}

/// RemoveContainer request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveContainerRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// RemoveContainer response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveContainerResponse {}

/// Wrapper giving a container state presence in filters.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStateValue {
    /// State.
    #[prost(enumeration = "ContainerState", tag = "1")]
    pub state: i32,
}

/// Container list filter (all set fields ANDed).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerFilter {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// State.
    #[prost(message, optional, tag = "2")]
    pub state: Option<ContainerStateValue>,
    /// Sandbox id.
    #[prost(string, tag = "3")]
    pub pod_sandbox_id: String,
    /// Labels that must all match.
    #[prost(btree_map = "string, string", tag = "4")]
    pub label_selector: BTreeMap<String, String>,
}

/// ListContainers request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersRequest {
    /// Filter.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ContainerFilter>,
}

/// A container in a list.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Container {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Sandbox id.
    #[prost(string, tag = "2")]
    pub pod_sandbox_id: String,
    /// Identity.
    #[prost(message, optional, tag = "3")]
    pub metadata: Option<ContainerMetadata>,
    /// Image.
    #[prost(message, optional, tag = "4")]
    pub image: Option<ImageSpec>,
    /// Digested image reference.
    #[prost(string, tag = "5")]
    pub image_ref: String,
    /// State.
    #[prost(enumeration = "ContainerState", tag = "6")]
    pub state: i32,
    /// Creation time (ns).
    #[prost(int64, tag = "7")]
    pub created_at: i64,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "8")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "9")]
    pub annotations: BTreeMap<String, String>,
}

/// ListContainers response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListContainersResponse {
    /// Containers.
    #[prost(message, repeated, tag = "1")]
    pub containers: Vec<Container>,
}

/// ContainerStatus request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Ask for extra info.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// Status of a container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatus {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContainerMetadata>,
    /// State.
    #[prost(enumeration = "ContainerState", tag = "3")]
    pub state: i32,
    /// Creation time (ns).
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    /// Start time (ns, 0 if never started).
    #[prost(int64, tag = "5")]
    pub started_at: i64,
    /// Finish time (ns, 0 if running).
    #[prost(int64, tag = "6")]
    pub finished_at: i64,
    /// Exit code (meaningful once finished).
    #[prost(int32, tag = "7")]
    pub exit_code: i32,
    /// Image.
    #[prost(message, optional, tag = "8")]
    pub image: Option<ImageSpec>,
    /// Digested image reference.
    #[prost(string, tag = "9")]
    pub image_ref: String,
    /// CamelCase reason (e.g. OOMKilled).
    #[prost(string, tag = "10")]
    pub reason: String,
    /// Human-readable message.
    #[prost(string, tag = "11")]
    pub message: String,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "12")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "13")]
    pub annotations: BTreeMap<String, String>,
    /// Mounts.
    #[prost(message, repeated, tag = "14")]
    pub mounts: Vec<Mount>,
    /// Log path on the host.
    #[prost(string, tag = "15")]
    pub log_path: String,
}

/// ContainerStatus response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatusResponse {
    /// Status.
    #[prost(message, optional, tag = "1")]
    pub status: Option<ContainerStatus>,
    /// Verbose info (JSON values).
    #[prost(btree_map = "string, string", tag = "2")]
    pub info: BTreeMap<String, String>,
}

/// ExecSync request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecSyncRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// Command and arguments.
    #[prost(string, repeated, tag = "2")]
    pub cmd: Vec<String>,
    /// Seconds before the runtime kills the command (0: none).
    #[prost(int64, tag = "3")]
    pub timeout: i64,
}

/// ExecSync response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExecSyncResponse {
    /// Captured stdout.
    #[prost(bytes = "vec", tag = "1")]
    pub stdout: Vec<u8>,
    /// Captured stderr.
    #[prost(bytes = "vec", tag = "2")]
    pub stderr: Vec<u8>,
    /// Exit code.
    #[prost(int32, tag = "3")]
    pub exit_code: i32,
}

/// ContainerStats request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatsRequest {
    /// Container id.
    #[prost(string, tag = "1")]
    pub container_id: String,
}

/// Identity of a container in stats.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerAttributes {
    /// Container id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Identity.
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<ContainerMetadata>,
    /// Labels.
    #[prost(btree_map = "string, string", tag = "3")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[prost(btree_map = "string, string", tag = "4")]
    pub annotations: BTreeMap<String, String>,
}

/// CPU usage sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct CpuUsage {
    /// Sample time (ns).
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    /// Cumulative CPU time (ns).
    #[prost(message, optional, tag = "2")]
    pub usage_core_nano_seconds: Option<UInt64Value>,
    /// Average usage over the sample window (nano-cores).
    #[prost(message, optional, tag = "3")]
    pub usage_nano_cores: Option<UInt64Value>,
}

/// Memory usage sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MemoryUsage {
    /// Sample time (ns).
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    /// Working set bytes.
    #[prost(message, optional, tag = "2")]
    pub working_set_bytes: Option<UInt64Value>,
    /// Bytes left before the limit.
    #[prost(message, optional, tag = "3")]
    pub available_bytes: Option<UInt64Value>,
    /// Total bytes in use.
    #[prost(message, optional, tag = "4")]
    pub usage_bytes: Option<UInt64Value>,
    /// Anonymous + swap cache bytes.
    #[prost(message, optional, tag = "5")]
    pub rss_bytes: Option<UInt64Value>,
    /// Minor page faults.
    #[prost(message, optional, tag = "6")]
    pub page_faults: Option<UInt64Value>,
    /// Major page faults.
    #[prost(message, optional, tag = "7")]
    pub major_page_faults: Option<UInt64Value>,
}

/// Identity of a filesystem.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FilesystemIdentifier {
    /// Mount point.
    #[prost(string, tag = "1")]
    pub mountpoint: String,
}

/// Filesystem usage sample.
#[derive(Clone, PartialEq, prost::Message)]
pub struct FilesystemUsage {
    /// Sample time (ns).
    #[prost(int64, tag = "1")]
    pub timestamp: i64,
    /// Filesystem.
    #[prost(message, optional, tag = "2")]
    pub fs_id: Option<FilesystemIdentifier>,
    /// Bytes used.
    #[prost(message, optional, tag = "3")]
    pub used_bytes: Option<UInt64Value>,
    /// Inodes used.
    #[prost(message, optional, tag = "4")]
    pub inodes_used: Option<UInt64Value>,
}

/// Resource usage of one container.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStats {
    /// Identity.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<ContainerAttributes>,
    /// CPU.
    #[prost(message, optional, tag = "2")]
    pub cpu: Option<CpuUsage>,
    /// Memory.
    #[prost(message, optional, tag = "3")]
    pub memory: Option<MemoryUsage>,
    /// Writable layer.
    #[prost(message, optional, tag = "4")]
    pub writable_layer: Option<FilesystemUsage>,
}

/// ContainerStats response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ContainerStatsResponse {
    /// Stats.
    #[prost(message, optional, tag = "1")]
    pub stats: Option<ContainerStats>,
}

// ---------------------------------------------------------------------------------------------
// ImageService

/// Image list filter.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageFilter {
    /// Image to match.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}

/// ListImages request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListImagesRequest {
    /// Filter.
    #[prost(message, optional, tag = "1")]
    pub filter: Option<ImageFilter>,
}

/// An image known to the runtime.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Image {
    /// Image id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Tagged names.
    #[prost(string, repeated, tag = "2")]
    pub repo_tags: Vec<String>,
    /// Digested names.
    #[prost(string, repeated, tag = "3")]
    pub repo_digests: Vec<String>,
    /// Size in bytes.
    #[prost(uint64, tag = "4")]
    pub size: u64,
    /// Default UID.
    #[prost(message, optional, tag = "5")]
    pub uid: Option<Int64Value>,
    /// Default user name.
    #[prost(string, tag = "6")]
    pub username: String,
    /// Spec with annotations.
    #[prost(message, optional, tag = "7")]
    pub spec: Option<ImageSpec>,
    /// Exempt from garbage collection.
    #[prost(bool, tag = "8")]
    pub pinned: bool,
}

/// ListImages response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ListImagesResponse {
    /// Images.
    #[prost(message, repeated, tag = "1")]
    pub images: Vec<Image>,
}

/// ImageStatus request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageStatusRequest {
    /// Image.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
    /// Ask for extra info.
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

/// ImageStatus response (`image` is None when the image is absent).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageStatusResponse {
    /// Image, if present.
    #[prost(message, optional, tag = "1")]
    pub image: Option<Image>,
    /// Verbose info (JSON values).
    #[prost(btree_map = "string, string", tag = "2")]
    pub info: BTreeMap<String, String>,
}

/// Registry credentials (its Debug output hides the secrets).
#[derive(Clone, PartialEq, prost::Message)]
#[prost(skip_debug)]
pub struct AuthConfig {
    /// User name.
    #[prost(string, tag = "1")]
    pub username: String,
    /// Password.
    #[prost(string, tag = "2")]
    pub password: String,
    /// base64(user:password).
    #[prost(string, tag = "3")]
    pub auth: String,
    /// Registry address.
    #[prost(string, tag = "4")]
    pub server_address: String,
    /// Identity token.
    #[prost(string, tag = "5")]
    pub identity_token: String,
    /// Registry bearer token.
    #[prost(string, tag = "6")]
    pub registry_token: String,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials end up in logs through error contexts; only say which fields are set.
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field("password_set", &!self.password.is_empty())
            .field("auth_set", &!self.auth.is_empty())
            .field("identity_token_set", &!self.identity_token.is_empty())
            .field("registry_token_set", &!self.registry_token.is_empty())
            .finish()
    }
}

/// PullImage request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageRequest {
    /// Image to pull.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
    /// Credentials.
    #[prost(message, optional, tag = "2")]
    pub auth: Option<AuthConfig>,
    /// Sandbox the pull is for.
    #[prost(message, optional, tag = "3")]
    pub sandbox_config: Option<PodSandboxConfig>,
}

/// PullImage response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PullImageResponse {
    /// Image id or digest reference.
    #[prost(string, tag = "1")]
    pub image_ref: String,
}

/// RemoveImage request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveImageRequest {
    /// Image to remove.
    #[prost(message, optional, tag = "1")]
    pub image: Option<ImageSpec>,
}

/// RemoveImage response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RemoveImageResponse {}

/// ImageFsInfo request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageFsInfoRequest {}

/// ImageFsInfo response.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ImageFsInfoResponse {
    /// Filesystems holding images.
    #[prost(message, repeated, tag = "1")]
    pub image_filesystems: Vec<FilesystemUsage>,
    /// Filesystems holding container layers, when separate.
    #[prost(message, repeated, tag = "2")]
    pub container_filesystems: Vec<FilesystemUsage>,
}

// ---------------------------------------------------------------------------------------------

fn decodes<M: prost::Message + Default>(bytes: &[u8]) -> bool {
    M::decode(bytes).is_ok()
}

/// Decodes `bytes` as every response type; returns how many accepted it (fuzzing entry point).
pub fn decode_every_response(bytes: &[u8]) -> usize {
    [
        decodes::<VersionResponse>(bytes),
        decodes::<StatusResponse>(bytes),
        decodes::<RunPodSandboxResponse>(bytes),
        decodes::<StopPodSandboxResponse>(bytes),
        decodes::<RemovePodSandboxResponse>(bytes),
        decodes::<PodSandboxStatusResponse>(bytes),
        decodes::<ListPodSandboxResponse>(bytes),
        decodes::<CreateContainerResponse>(bytes),
        decodes::<StartContainerResponse>(bytes),
        decodes::<StopContainerResponse>(bytes),
        decodes::<RemoveContainerResponse>(bytes),
        decodes::<ListContainersResponse>(bytes),
        decodes::<ContainerStatusResponse>(bytes),
        decodes::<ExecSyncResponse>(bytes),
        decodes::<ContainerStatsResponse>(bytes),
        decodes::<PullImageResponse>(bytes),
        decodes::<ImageStatusResponse>(bytes),
        decodes::<ListImagesResponse>(bytes),
        decodes::<RemoveImageResponse>(bytes),
        decodes::<ImageFsInfoResponse>(bytes),
    ]
    .iter()
    .filter(|ok| **ok)
    .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(m: &M) {
        let bytes = m.encode_to_vec();
        let back = M::decode(bytes.as_slice()).unwrap();
        assert_eq!(&back, m);
        assert_eq!(back.encode_to_vec(), bytes);
    }

    fn ns(mode: NamespaceMode) -> NamespaceOption {
        NamespaceOption {
            network: mode as i32,
            pid: NamespaceMode::Container as i32,
            ipc: mode as i32,
            target_id: "t".into(),
        }
    }

    fn u64v(value: u64) -> Option<UInt64Value> {
        Some(UInt64Value { value })
    }

    pub(crate) fn sandbox_config() -> PodSandboxConfig {
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 3,
            }),
            hostname: "web-0".into(),
            log_directory: "/var/log/pods/default_web_uid-1".into(),
            dns_config: Some(DnsConfig {
                servers: vec!["10.0.0.10".into()],
                searches: vec!["svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            port_mappings: vec![PortMapping {
                protocol: Protocol::Udp as i32,
                container_port: 53,
                host_port: 5353,
                host_ip: "127.0.0.1".into(),
            }],
            labels: map(&[("app", "web")]),
            annotations: map(&[("a", "b")]),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/besteffort/poduid-1".into(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(ns(NamespaceMode::Node)),
                    run_as_user: Some(Int64Value { value: 1000 }),
                    readonly_rootfs: true,
                    supplemental_groups: vec![1, 2, 3],
                    privileged: true,
                    run_as_group: Some(Int64Value { value: 100 }),
                    seccomp: Some(SecurityProfile {
                        profile_type: ProfileType::Localhost as i32,
                        localhost_ref: "/p.json".into(),
                    }),
                }),
                sysctls: map(&[("net.ipv4.ip_unprivileged_port_start", "0")]),
            }),
        }
    }

    fn container_config() -> ContainerConfig {
        ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 1,
            }),
            image: Some(ImageSpec {
                image: "busybox:1".into(),
                annotations: map(&[("x", "y")]),
            }),
            command: vec!["sh".into()],
            args: vec!["-c".into(), "sleep 1".into()],
            working_dir: "/tmp".into(),
            envs: vec![KeyValue {
                key: "A".into(),
                value: "1".into(),
            }],
            mounts: vec![Mount {
                container_path: "/data".into(),
                host_path: "/srv/data".into(),
                readonly: true,
                selinux_relabel: true,
                propagation: MountPropagation::PropagationBidirectional as i32,
            }],
            labels: map(&[("l", "1")]),
            annotations: map(&[("a", "2")]),
            log_path: "app/0.log".into(),
            stdin: true,
            stdin_once: true,
            tty: true,
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 512,
                    memory_limit_in_bytes: 64 << 20,
                    oom_score_adj: 1000,
                    cpuset_cpus: "0-1".into(),
                    cpuset_mems: "0".into(),
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: vec!["NET_ADMIN".into()],
                        drop_capabilities: vec!["ALL".into()],
                    }),
                    privileged: true,
                    namespace_options: Some(ns(NamespaceMode::Pod)),
                    run_as_user: Some(Int64Value { value: 0 }),
                    run_as_username: "nobody".into(),
                    readonly_rootfs: true,
                    supplemental_groups: vec![10],
                    no_new_privs: true,
                    run_as_group: Some(Int64Value { value: 7 }),
                    masked_paths: vec!["/proc/kcore".into()],
                    readonly_paths: vec!["/proc/sys".into()],
                    seccomp: Some(SecurityProfile::default()),
                }),
            }),
        }
    }

    fn container_status() -> ContainerStatus {
        ContainerStatus {
            id: "c1".into(),
            metadata: Some(ContainerMetadata {
                name: "app".into(),
                attempt: 2,
            }),
            state: ContainerState::ContainerExited as i32,
            created_at: 1,
            started_at: 2,
            finished_at: 3,
            exit_code: -9,
            image: Some(ImageSpec {
                image: "busybox:1".into(),
                ..Default::default()
            }),
            image_ref: "sha256:abc".into(),
            reason: "OOMKilled".into(),
            message: "m".into(),
            labels: map(&[("l", "1")]),
            annotations: map(&[("a", "1")]),
            mounts: container_config().mounts,
            log_path: "/var/log/pods/x/app/0.log".into(),
        }
    }

    fn filesystem() -> FilesystemUsage {
        FilesystemUsage {
            timestamp: 5,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: "/var/lib/containerd".into(),
            }),
            used_bytes: u64v(1 << 40),
            inodes_used: u64v(9),
        }
    }

    #[test]
    fn every_message_round_trips() {
        round_trip(&VersionRequest {
            version: "v1".into(),
        });
        round_trip(&VersionResponse {
            version: "0.1.0".into(),
            runtime_name: "containerd".into(),
            runtime_version: "1.6.20".into(),
            runtime_api_version: "v1".into(),
        });
        round_trip(&StatusRequest { verbose: true });
        round_trip(&StatusResponse {
            status: Some(RuntimeStatus {
                conditions: vec![RuntimeCondition {
                    condition_type: "NetworkReady".into(),
                    status: true,
                    reason: "r".into(),
                    message: "m".into(),
                }],
            }),
            info: map(&[("config", "{}")]),
        });
        round_trip(&RunPodSandboxRequest {
            config: Some(sandbox_config()),
            runtime_handler: "runc".into(),
        });
        round_trip(&RunPodSandboxResponse {
            pod_sandbox_id: "p".into(),
        });
        round_trip(&StopPodSandboxRequest {
            pod_sandbox_id: "p".into(),
        });
        round_trip(&StopPodSandboxResponse {});
        round_trip(&RemovePodSandboxRequest {
            pod_sandbox_id: "p".into(),
        });
        round_trip(&RemovePodSandboxResponse {});
        round_trip(&PodSandboxStatusRequest {
            pod_sandbox_id: "p".into(),
            verbose: true,
        });
        let sandbox_status = PodSandboxStatus {
            id: "p".into(),
            metadata: sandbox_config().metadata,
            state: PodSandboxState::SandboxNotready as i32,
            created_at: 77,
            network: Some(PodSandboxNetworkStatus {
                ip: "10.88.0.2".into(),
                additional_ips: vec![PodIp {
                    ip: "fd00::2".into(),
                }],
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(ns(NamespaceMode::Pod)),
                }),
            }),
            labels: map(&[("a", "b")]),
            annotations: map(&[("c", "d")]),
            runtime_handler: "runc".into(),
        };
        round_trip(&PodSandboxStatusResponse {
            status: Some(sandbox_status),
            info: map(&[("info", "{}")]),
        });
        round_trip(&ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                id: "p".into(),
                state: Some(PodSandboxStateValue {
                    state: PodSandboxState::SandboxNotready as i32,
                }),
                label_selector: map(&[("app", "web")]),
            }),
        });
        round_trip(&ListPodSandboxResponse {
            items: vec![PodSandbox {
                id: "p".into(),
                metadata: sandbox_config().metadata,
                state: 1,
                created_at: 4,
                labels: map(&[("a", "b")]),
                annotations: map(&[("c", "d")]),
                runtime_handler: "h".into(),
            }],
        });
        round_trip(&CreateContainerRequest {
            pod_sandbox_id: "p".into(),
            config: Some(container_config()),
            sandbox_config: Some(sandbox_config()),
        });
        round_trip(&CreateContainerResponse {
            container_id: "c".into(),
        });
        round_trip(&StartContainerRequest {
            container_id: "c".into(),
        });
        round_trip(&StartContainerResponse {});
        round_trip(&StopContainerRequest {
            container_id: "c".into(),
            timeout: 30,
        });
        round_trip(&StopContainerResponse {});
        round_trip(&RemoveContainerRequest {
            container_id: "c".into(),
        });
        round_trip(&RemoveContainerResponse {});
        round_trip(&ListContainersRequest {
            filter: Some(ContainerFilter {
                id: "c".into(),
                state: Some(ContainerStateValue {
                    state: ContainerState::ContainerRunning as i32,
                }),
                pod_sandbox_id: "p".into(),
                label_selector: map(&[("k", "v")]),
            }),
        });
        round_trip(&ListContainersResponse {
            containers: vec![Container {
                id: "c".into(),
                pod_sandbox_id: "p".into(),
                metadata: container_config().metadata,
                image: container_config().image,
                image_ref: "sha256:1".into(),
                state: 2,
                created_at: 9,
                labels: map(&[("k", "v")]),
                annotations: map(&[("k", "w")]),
            }],
        });
        round_trip(&ContainerStatusRequest {
            container_id: "c".into(),
            verbose: true,
        });
        round_trip(&ContainerStatusResponse {
            status: Some(container_status()),
            info: map(&[("pid", "1")]),
        });
        round_trip(&ExecSyncRequest {
            container_id: "c".into(),
            cmd: vec!["ls".into(), "/".into()],
            timeout: 5,
        });
        round_trip(&ExecSyncResponse {
            stdout: b"out\n".to_vec(),
            stderr: vec![0xff, 0],
            exit_code: 3,
        });
        round_trip(&ContainerStatsRequest {
            container_id: "c".into(),
        });
        round_trip(&ContainerStatsResponse {
            stats: Some(ContainerStats {
                attributes: Some(ContainerAttributes {
                    id: "c".into(),
                    metadata: container_config().metadata,
                    labels: map(&[("a", "1")]),
                    annotations: map(&[("b", "2")]),
                }),
                cpu: Some(CpuUsage {
                    timestamp: 1,
                    usage_core_nano_seconds: u64v(2),
                    usage_nano_cores: u64v(3),
                }),
                memory: Some(MemoryUsage {
                    timestamp: 1,
                    working_set_bytes: u64v(1),
                    available_bytes: u64v(2),
                    usage_bytes: u64v(3),
                    rss_bytes: u64v(4),
                    page_faults: u64v(5),
                    major_page_faults: u64v(6),
                }),
                writable_layer: Some(filesystem()),
            }),
        });
        let image = Image {
            id: "sha256:1".into(),
            repo_tags: vec!["busybox:1".into()],
            repo_digests: vec!["busybox@sha256:2".into()],
            size: 1 << 20,
            uid: Some(Int64Value { value: 0 }),
            username: "root".into(),
            spec: container_config().image,
            pinned: true,
        };
        round_trip(&ListImagesRequest {
            filter: Some(ImageFilter {
                image: container_config().image,
            }),
        });
        round_trip(&ListImagesResponse {
            images: vec![image.clone()],
        });
        round_trip(&ImageStatusRequest {
            image: container_config().image,
            verbose: true,
        });
        round_trip(&ImageStatusResponse {
            image: Some(image),
            info: map(&[("i", "{}")]),
        });
        round_trip(&PullImageRequest {
            image: container_config().image,
            auth: Some(AuthConfig {
                username: "u".into(),
                password: "p".into(),
                auth: "a".into(),
                server_address: "s".into(),
                identity_token: "i".into(),
                registry_token: "r".into(),
            }),
            sandbox_config: Some(sandbox_config()),
        });
        round_trip(&PullImageResponse {
            image_ref: "sha256:1".into(),
        });
        round_trip(&RemoveImageRequest {
            image: container_config().image,
        });
        round_trip(&RemoveImageResponse {});
        round_trip(&ImageFsInfoRequest {});
        round_trip(&ImageFsInfoResponse {
            image_filesystems: vec![filesystem()],
            container_filesystems: vec![filesystem(), filesystem()],
        });
    }

    /// Hand-assembled protobuf bytes pin the tags that are easy to get wrong.
    #[test]
    fn golden_tags() {
        // ContainerStatus: exit_code is field 7 (varint), log_path 15 (len), reason 10.
        let s = ContainerStatus {
            exit_code: 1,
            reason: "R".into(),
            log_path: "L".into(),
            ..Default::default()
        };
        assert_eq!(s.encode_to_vec(), [0x38, 1, 0x52, 1, b'R', 0x7a, 1, b'L']);
        // LinuxContainerSecurityContext: run_as_group is 12, no_new_privs 11.
        let sc = LinuxContainerSecurityContext {
            no_new_privs: true,
            run_as_group: Some(Int64Value { value: 5 }),
            ..Default::default()
        };
        assert_eq!(sc.encode_to_vec(), [0x58, 1, 0x62, 2, 0x08, 5]);
        // LinuxSandboxSecurityContext: run_as_group is 8, privileged 6.
        let sc = LinuxSandboxSecurityContext {
            privileged: true,
            run_as_group: Some(Int64Value { value: 5 }),
            ..Default::default()
        };
        assert_eq!(sc.encode_to_vec(), [0x30, 1, 0x42, 2, 0x08, 5]);
        // ContainerConfig: linux is 15, labels (map) 9.
        let cc = ContainerConfig {
            labels: map(&[("k", "v")]),
            linux: Some(LinuxContainerConfig::default()),
            ..Default::default()
        };
        assert_eq!(
            cc.encode_to_vec(),
            [0x4a, 6, 0x0a, 1, b'k', 0x12, 1, b'v', 0x7a, 0]
        );
        // PodSandboxStatus: network 5 holding ip 1.
        let st = PodSandboxStatus {
            network: Some(PodSandboxNetworkStatus {
                ip: "x".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(st.encode_to_vec(), [0x2a, 3, 0x0a, 1, b'x']);
        // ExecSyncResponse: stdout 1, stderr 2, exit_code 3.
        let r = ExecSyncResponse::decode(&[0x0a, 1, b'o', 0x12, 1, b'e', 0x18, 2][..]).unwrap();
        assert_eq!(
            (r.stdout, r.stderr, r.exit_code),
            (b"o".to_vec(), b"e".to_vec(), 2)
        );
    }

    #[test]
    fn unknown_fields_are_skipped() {
        // VersionResponse with an unknown field 9 (len) before runtime_name.
        let bytes = [0x4a, 2, b'z', b'z', 0x12, 2, b'c', b'd'];
        let v = VersionResponse::decode(&bytes[..]).unwrap();
        assert_eq!(v.runtime_name, "cd");
    }

    #[test]
    fn auth_debug_hides_secrets() {
        let a = AuthConfig {
            password: "hunter2".into(),
            registry_token: "tok".into(),
            ..Default::default()
        };
        let text = format!("{a:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("tok\""),
            "{text}"
        );
    }

    #[test]
    fn garbage_never_panics() {
        let mut s: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let valid = ContainerStatusResponse {
            status: Some(container_status()),
            info: map(&[("k", "v")]),
        }
        .encode_to_vec();
        for i in 0..3000 {
            let data: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 96) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                // Mutate a valid message so decoding gets deep before failing.
                let mut d = valid.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % d.len();
                    d[at] = next() as u8;
                }
                d.truncate((next() as usize) % (d.len() + 1));
                d
            };
            let _ = decode_every_response(&data);
        }
    }
}
