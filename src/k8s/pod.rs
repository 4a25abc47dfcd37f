//! core/v1 Pod and the types it is built from (containers, probes, volumes, status).
//!
//! Decoding is lenient (unknown fields ignored, missing fields defaulted) and serialising omits
//! what was absent, so a pod read from the API server or a manifest survives a round trip.
//! The kubelet's defaults for absent fields are methods here (`restart_policy()`,
//! `Probe::period()`, `Container::image_pull_policy()`, ...) so every consumer applies the same
//! ones. Checking that a pod is valid belongs to the manifest loader, not to these types.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;
use super::quantity::Quantity;

fn is_false(v: &bool) -> bool {
    !*v
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// An integer or a string (named port, percentage), as in the API's `intstr.IntOrString`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl std::fmt::Display for IntOrString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

/// core/v1 Pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Pod {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

impl Pod {
    /// `namespace/name`, for logs and errors.
    pub fn key(&self) -> String {
        self.metadata.key()
    }
}

/// core/v1 PodSpec (the subset a node agent acts on).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_containers: Vec<Container>,
    pub containers: Vec<Container>,
    /// Containers added through the `ephemeralcontainers` subresource (`kubectl debug`): run
    /// once in the pod's sandbox, never restarted. Same fields as a Container (the extra
    /// `targetContainerName` is not used: tinylet does not share process namespaces by target).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ephemeral_containers: Vec<Container>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub service_account_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automount_service_account_token: Option<bool>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub host_network: bool,
    #[serde(rename = "hostPID", skip_serializing_if = "is_false")]
    pub host_pid: bool,
    #[serde(rename = "hostIPC", skip_serializing_if = "is_false")]
    pub host_ipc: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subdomain: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub priority_class_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_config: Option<PodDnsConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_service_links: Option<bool>,
}

/// What the kubelet does when a container exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// Parses the API spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<RestartPolicy> {
        match s {
            "Always" => Some(RestartPolicy::Always),
            "OnFailure" => Some(RestartPolicy::OnFailure),
            "Never" => Some(RestartPolicy::Never),
            _ => None,
        }
    }

    /// The API spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "Always",
            RestartPolicy::OnFailure => "OnFailure",
            RestartPolicy::Never => "Never",
        }
    }
}

/// The kubelet's default grace period when `terminationGracePeriodSeconds` is absent.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;

impl PodSpec {
    /// The restart policy, `Always` when absent; `None` when the text is not a valid policy.
    pub fn restart_policy(&self) -> Option<RestartPolicy> {
        match &self.restart_policy {
            None => Some(RestartPolicy::Always),
            Some(s) if s.is_empty() => Some(RestartPolicy::Always),
            Some(s) => RestartPolicy::parse(s),
        }
    }

    /// The termination grace period, 30 s when absent (negative values count as zero).
    pub fn termination_grace_period(&self) -> Duration {
        let secs = self
            .termination_grace_period_seconds
            .unwrap_or(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    }

    /// The DNS policy, `ClusterFirst` when absent.
    pub fn dns_policy(&self) -> &str {
        match self.dns_policy.as_deref() {
            None | Some("") => "ClusterFirst",
            Some(p) => p,
        }
    }

    /// Init containers then app containers, in start order.
    pub fn all_containers(&self) -> impl Iterator<Item = &Container> {
        self.init_containers.iter().chain(self.containers.iter())
    }
}

/// core/v1 PodSecurityContext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodSecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group: Option<i64>,
    /// `Always` (default) or `OnRootMismatch`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fs_group_change_policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub supplemental_groups: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sysctls: Vec<Sysctl>,
}

/// One namespaced sysctl to set for the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sysctl {
    pub name: String,
    pub value: String,
}

/// core/v1 PodDNSConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodDnsConfig {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub searches: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<PodDnsConfigOption>,
}

/// One resolv.conf option (`ndots:5`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodDnsConfigOption {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// core/v1 Toleration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Toleration {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub operator: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub effect: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
}

/// core/v1 Container.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Container {
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "is_default")]
    pub resources: ResourceRequirements,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub termination_message_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub termination_message_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    /// Only on init containers: `Always` makes it a sidecar that keeps running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security_context: Option<SecurityContext>,
    #[serde(skip_serializing_if = "is_false")]
    pub stdin: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub tty: bool,
}

/// When the runtime pulls a container's image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImagePullPolicy {
    Always,
    IfNotPresent,
    Never,
}

impl ImagePullPolicy {
    /// Parses the API spelling; `None` for anything else.
    pub fn parse(s: &str) -> Option<ImagePullPolicy> {
        match s {
            "Always" => Some(ImagePullPolicy::Always),
            "IfNotPresent" => Some(ImagePullPolicy::IfNotPresent),
            "Never" => Some(ImagePullPolicy::Never),
            _ => None,
        }
    }
}

/// The tag of an image reference, if it has one (`""` never; the digest is not a tag).
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split_once('@').map_or(image, |(name, _)| name);
    // A colon before the last '/' is a registry port, not a tag.
    let last = without_digest
        .rsplit_once('/')
        .map_or(without_digest, |(_, l)| l);
    last.split_once(':')
        .map(|(_, tag)| tag)
        .filter(|t| !t.is_empty())
}

impl Container {
    /// The pull policy: explicit if set (and valid), else `Always` for `:latest` or an untagged,
    /// undigested image and `IfNotPresent` otherwise, as the API server defaults it.
    pub fn image_pull_policy(&self) -> ImagePullPolicy {
        if let Some(p) = self
            .image_pull_policy
            .as_deref()
            .and_then(ImagePullPolicy::parse)
        {
            return p;
        }
        let has_digest = self.image.contains('@');
        match image_tag(&self.image) {
            Some("latest") => ImagePullPolicy::Always,
            None if !has_digest => ImagePullPolicy::Always,
            _ => ImagePullPolicy::IfNotPresent,
        }
    }

    /// Whether this (init) container is a sidecar: started in order, then kept running.
    pub fn is_sidecar(&self) -> bool {
        self.restart_policy.as_deref() == Some("Always")
    }

    /// The probes that are set, with their names, in the order the kubelet evaluates them.
    pub fn probes(&self) -> impl Iterator<Item = (&'static str, &Probe)> {
        [
            ("startupProbe", self.startup_probe.as_ref()),
            ("livenessProbe", self.liveness_probe.as_ref()),
            ("readinessProbe", self.readiness_probe.as_ref()),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.map(|p| (n, p)))
    }
}

/// core/v1 ContainerPort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerPort {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub container_port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl ContainerPort {
    /// The protocol, `TCP` when absent.
    pub fn protocol(&self) -> &str {
        match self.protocol.as_deref() {
            None | Some("") => "TCP",
            Some(p) => p,
        }
    }
}

/// core/v1 EnvVar.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVar {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_from: Option<EnvVarSource>,
}

/// core/v1 EnvVarSource.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvVarSource {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeySelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeySelector>,
}

/// core/v1 ObjectFieldSelector (`metadata.name`, `status.podIP`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ObjectFieldSelector {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    pub field_path: String,
}

/// core/v1 ResourceFieldSelector (`limits.memory`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceFieldSelector {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub container_name: String,
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divisor: Option<Quantity>,
}

/// A key of a named ConfigMap or Secret (ConfigMapKeySelector / SecretKeySelector).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeySelector {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// core/v1 EnvFromSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvFromSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<NamedRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NamedRef>,
}

/// A reference to a whole ConfigMap or Secret by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedRef {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// core/v1 ResourceRequirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ResourceRequirements {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub limits: BTreeMap<String, Quantity>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub requests: BTreeMap<String, Quantity>,
}

/// core/v1 VolumeMount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mount_propagation: Option<String>,
    /// Like `subPath`, with `$(VAR)` references to the container's environment expanded.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub_path_expr: String,
}

/// core/v1 Probe: one handler plus timing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period_seconds: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
}

/// The handler a probe runs, resolved from whichever field is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeHandler<'a> {
    Exec(&'a ExecAction),
    HttpGet(&'a HttpGetAction),
    TcpSocket(&'a TcpSocketAction),
    Grpc(&'a GrpcAction),
}

fn positive_or(v: Option<i32>, default: u32) -> u32 {
    v.and_then(|v| u32::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

impl Probe {
    /// How many handlers are set (a valid probe has exactly one).
    pub fn handler_count(&self) -> usize {
        usize::from(self.exec.is_some())
            + usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.grpc.is_some())
    }

    /// The handler, if exactly one is set.
    pub fn handler(&self) -> Option<ProbeHandler<'_>> {
        if self.handler_count() != 1 {
            return None;
        }
        self.exec
            .as_ref()
            .map(ProbeHandler::Exec)
            .or(self.http_get.as_ref().map(ProbeHandler::HttpGet))
            .or(self.tcp_socket.as_ref().map(ProbeHandler::TcpSocket))
            .or(self.grpc.as_ref().map(ProbeHandler::Grpc))
    }

    /// Delay before the first probe, 0 s by default.
    pub fn initial_delay(&self) -> Duration {
        Duration::from_secs(u64::from(positive_or(self.initial_delay_seconds, 0)))
    }

    /// Time between probes, 10 s by default.
    pub fn period(&self) -> Duration {
        Duration::from_secs(u64::from(positive_or(self.period_seconds, 10)))
    }

    /// Time one probe may take, 1 s by default.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(positive_or(self.timeout_seconds, 1)))
    }

    /// Consecutive successes to count as passing, 1 by default.
    pub fn success_threshold(&self) -> u32 {
        positive_or(self.success_threshold, 1)
    }

    /// Consecutive failures to count as failing, 3 by default.
    pub fn failure_threshold(&self) -> u32 {
        positive_or(self.failure_threshold, 3)
    }
}

/// core/v1 ExecAction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecAction {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// core/v1 HTTPGetAction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpGetAction {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub port: IntOrString,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<HttpHeader>,
}

impl HttpGetAction {
    /// The scheme, `HTTP` when absent.
    pub fn scheme(&self) -> &str {
        match self.scheme.as_deref() {
            None | Some("") => "HTTP",
            Some(s) => s,
        }
    }
}

/// One header sent by an HTTP probe.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// core/v1 TCPSocketAction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpSocketAction {
    pub port: IntOrString,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
}

/// core/v1 GRPCAction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcAction {
    pub port: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
}

/// core/v1 Lifecycle: hooks run after start and before stop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Lifecycle {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_start: Option<LifecycleHandler>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_stop: Option<LifecycleHandler>,
}

/// core/v1 LifecycleHandler.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LifecycleHandler {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpGetAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpSocketAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepAction>,
}

impl LifecycleHandler {
    /// How many handlers are set (a valid hook has exactly one).
    pub fn handler_count(&self) -> usize {
        usize::from(self.exec.is_some())
            + usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.sleep.is_some())
    }
}

/// core/v1 SleepAction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SleepAction {
    pub seconds: i64,
}

/// core/v1 SecurityContext (per container).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecurityContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Capabilities>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_as_non_root: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_root_filesystem: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_privilege_escalation: Option<bool>,
}

/// Linux capabilities to add and drop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drop: Vec<String>,
}

/// core/v1 Volume: a name and one source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Volume {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    #[serde(rename = "downwardAPI", skip_serializing_if = "Option::is_none")]
    pub downward_api: Option<DownwardApiVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub projected: Option<ProjectedVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csi: Option<super::storage::CsiVolumeSource>,
}

impl Volume {
    /// The names of the sources that are set (a valid volume has exactly one).
    pub fn source_kinds(&self) -> Vec<&'static str> {
        [
            ("hostPath", self.host_path.is_some()),
            ("emptyDir", self.empty_dir.is_some()),
            ("configMap", self.config_map.is_some()),
            ("secret", self.secret.is_some()),
            ("downwardAPI", self.downward_api.is_some()),
            ("projected", self.projected.is_some()),
            (
                "persistentVolumeClaim",
                self.persistent_volume_claim.is_some(),
            ),
            ("csi", self.csi.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, set)| set.then_some(n))
        .collect()
    }
}

/// core/v1 HostPathVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HostPathVolumeSource {
    pub path: String,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

/// core/v1 EmptyDirVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmptyDirVolumeSource {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub medium: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<Quantity>,
}

/// A key projected to a file path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyToPath {
    pub key: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// core/v1 ConfigMapVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ConfigMapVolumeSource {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// core/v1 SecretVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SecretVolumeSource {
    pub secret_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// core/v1 DownwardAPIVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DownwardApiVolumeSource {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardApiVolumeFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
}

/// core/v1 DownwardAPIVolumeFile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DownwardApiVolumeFile {
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_ref: Option<ObjectFieldSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource_field_ref: Option<ResourceFieldSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<i32>,
}

/// core/v1 ProjectedVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProjectedVolumeSource {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<VolumeProjection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_mode: Option<i32>,
}

/// core/v1 VolumeProjection: one source of a projected volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct VolumeProjection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_token: Option<ServiceAccountTokenProjection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapProjection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretProjection>,
    #[serde(rename = "downwardAPI", skip_serializing_if = "Option::is_none")]
    pub downward_api: Option<DownwardApiProjection>,
}

/// core/v1 ServiceAccountTokenProjection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceAccountTokenProjection {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub audience: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
    pub path: String,
}

/// core/v1 ConfigMapProjection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfigMapProjection {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// core/v1 SecretProjection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecretProjection {
    pub name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<KeyToPath>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// core/v1 DownwardAPIProjection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DownwardApiProjection {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<DownwardApiVolumeFile>,
}

/// core/v1 PersistentVolumeClaimVolumeSource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PersistentVolumeClaimVolumeSource {
    pub claim_name: String,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// core/v1 PodStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<PodCondition>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(rename = "hostIP", skip_serializing_if = "String::is_empty")]
    pub host_ip: String,
    #[serde(rename = "hostIPs", skip_serializing_if = "Vec::is_empty")]
    pub host_ips: Vec<PodIp>,
    #[serde(rename = "podIP", skip_serializing_if = "String::is_empty")]
    pub pod_ip: String,
    #[serde(rename = "podIPs", skip_serializing_if = "Vec::is_empty")]
    pub pod_ips: Vec<PodIp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub init_container_statuses: Vec<ContainerStatus>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub container_statuses: Vec<ContainerStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos_class: Option<String>,
}

/// One IP of a pod or host (`{"ip": "10.0.0.5"}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PodIp {
    pub ip: String,
}

/// core/v1 PodCondition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PodCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// core/v1 ContainerStatus. `ready`, `restartCount`, `image` and `imageID` are always sent,
/// as the API server requires them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_state: Option<ContainerState>,
    pub ready: bool,
    pub restart_count: i32,
    pub image: String,
    #[serde(rename = "imageID")]
    pub image_id: String,
    #[serde(rename = "containerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<bool>,
}

/// core/v1 ContainerState: at most one of the three is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub running: Option<ContainerStateRunning>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminated: Option<ContainerStateTerminated>,
}

/// core/v1 ContainerStateWaiting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerStateWaiting {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// core/v1 ContainerStateRunning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStateRunning {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
}

/// core/v1 ContainerStateTerminated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ContainerStateTerminated {
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(rename = "containerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pod as the API server returns it for an ordinary Deployment replica (trimmed of fields
    /// tinylet does not model, so the round trip can be compared byte for byte).
    const REALISTIC_POD: &str = r#"{
      "apiVersion": "v1",
      "kind": "Pod",
      "metadata": {
        "name": "web-7d4b9c-x2x9q",
        "namespace": "shop",
        "uid": "0b6a3d1e-8c55-4f0e-9e4b-1b2d3c4e5f60",
        "resourceVersion": "48213",
        "creationTimestamp": "2026-01-05T10:00:00Z",
        "labels": {"app": "web", "pod-template-hash": "7d4b9c"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
          "uid": "5d1e2f3a-0000-4000-8000-000000000001", "controller": true, "blockOwnerDeletion": true}]
      },
      "spec": {
        "initContainers": [{"name": "proxy", "image": "envoy:1.31", "restartPolicy": "Always"},
          {"name": "migrate", "image": "registry.local:5000/shop/migrate:1.4",
          "command": ["/bin/migrate"], "args": ["--to", "latest"],
          "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}}],
        "containers": [{
          "name": "web",
          "image": "nginx:1.27",
          "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                    {"name": "metrics", "containerPort": 9100, "hostPort": 9100, "hostIP": "0.0.0.0", "protocol": "UDP"}],
          "env": [
            {"name": "MODE", "value": "prod"},
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"containerName": "web", "resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "DB", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url", "optional": false}}},
            {"name": "FLAG", "valueFrom": {"configMapKeyRef": {"name": "flags", "key": "f"}}}
          ],
          "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "web-config"}}, {"secretRef": {"name": "web-secret", "optional": true}}],
          "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m", "memory": "64Mi"}},
          "volumeMounts": [
            {"name": "kube-api-access-abcde", "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
            {"name": "cache", "mountPath": "/cache", "subPath": "web", "mountPropagation": "None"},
            {"name": "logs", "mountPath": "/var/log/nginx"}
          ],
          "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP",
            "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, "initialDelaySeconds": 5,
            "timeoutSeconds": 2, "periodSeconds": 15, "successThreshold": 1, "failureThreshold": 4},
          "readinessProbe": {"tcpSocket": {"port": 80}},
          "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30,
            "terminationGracePeriodSeconds": 5},
          "lifecycle": {"preStop": {"sleep": {"seconds": 3}}, "postStart": {"exec": {"command": ["true"]}}},
          "terminationMessagePath": "/dev/termination-log",
          "terminationMessagePolicy": "File",
          "imagePullPolicy": "IfNotPresent",
          "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
            "privileged": false, "runAsUser": 101, "runAsGroup": 101, "runAsNonRoot": true,
            "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false}
        },
        {"name": "sidecar", "image": "busybox", "command": ["sh", "-c", "sleep 3600"], "stdin": true, "tty": true,
         "readinessProbe": {"grpc": {"port": 9090, "service": "health"}}}],
        "volumes": [
          {"name": "kube-api-access-abcde", "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
          ], "defaultMode": 420}},
          {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
          {"name": "logs", "hostPath": {"path": "/var/log/web", "type": "DirectoryOrCreate"}},
          {"name": "cfg", "configMap": {"name": "web-config", "items": [{"key": "a", "path": "a.conf", "mode": 256}], "defaultMode": 420, "optional": true}},
          {"name": "tls", "secret": {"secretName": "web-tls", "defaultMode": 384}},
          {"name": "info", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
          {"name": "data", "persistentVolumeClaim": {"claimName": "web-data", "readOnly": true}}
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 45,
        "activeDeadlineSeconds": 600,
        "dnsPolicy": "ClusterFirstWithHostNet",
        "nodeSelector": {"kubernetes.io/arch": "arm64"},
        "serviceAccountName": "web",
        "automountServiceAccountToken": true,
        "nodeName": "pi-kitchen",
        "hostNetwork": true,
        "hostPID": true,
        "hostIPC": true,
        "securityContext": {"runAsUser": 1000, "runAsGroup": 1000, "runAsNonRoot": true, "fsGroup": 2000,
          "supplementalGroups": [3000], "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]},
        "hostname": "web-0",
        "subdomain": "web",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
        "priorityClassName": "system-node-critical",
        "priority": 2000001000,
        "dnsConfig": {"nameservers": ["1.1.1.1"], "searches": ["shop.svc.cluster.local"], "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]},
        "enableServiceLinks": false
      },
      "status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null, "lastTransitionTime": "2026-01-05T10:00:09Z"}],
        "hostIP": "192.168.1.20",
        "hostIPs": [{"ip": "192.168.1.20"}],
        "podIP": "10.42.0.7",
        "podIPs": [{"ip": "10.42.0.7"}, {"ip": "fd00::7"}],
        "startTime": "2026-01-05T10:00:01Z",
        "initContainerStatuses": [{"name": "migrate", "state": {"terminated": {"exitCode": 0, "reason": "Completed",
          "startedAt": "2026-01-05T10:00:02Z", "finishedAt": "2026-01-05T10:00:04Z", "containerID": "containerd://aa"}},
          "ready": true, "restartCount": 0, "image": "registry.local:5000/shop/migrate:1.4", "imageID": "sha256:11", "containerID": "containerd://aa", "started": false}],
        "containerStatuses": [
          {"name": "web", "state": {"running": {"startedAt": "2026-01-05T10:00:05Z"}},
           "lastState": {"terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled", "message": "oom", "containerID": "containerd://bb"}},
           "ready": true, "restartCount": 1, "image": "docker.io/library/nginx:1.27", "imageID": "sha256:22", "containerID": "containerd://cc", "started": true},
          {"name": "sidecar", "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 10s"}},
           "lastState": {}, "ready": false, "restartCount": 0, "image": "busybox", "imageID": ""}
        ],
        "qosClass": "Burstable"
      }
    }"#;

    #[test]
    fn realistic_pod_round_trips_exactly() {
        let pod: Pod = serde_json::from_str(REALISTIC_POD).unwrap();
        let mut original: serde_json::Value = serde_json::from_str(REALISTIC_POD).unwrap();
        // The API server sends null times; serialising leaves absent ones out.
        if let Some(c) = original.pointer_mut("/status/conditions/0") {
            c.as_object_mut().unwrap().remove("lastProbeTime");
        }
        let again = serde_json::to_value(&pod).unwrap();
        assert_eq!(again, original);
        let back: Pod = serde_json::from_value(again).unwrap();
        assert_eq!(back, pod);
        let c = &pod.spec.containers[0];
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .http_get
                .as_ref()
                .unwrap()
                .port,
            IntOrString::String("http".into())
        );
        assert_eq!(
            c.readiness_probe
                .as_ref()
                .unwrap()
                .tcp_socket
                .as_ref()
                .unwrap()
                .port,
            IntOrString::Int(80)
        );
        assert_eq!(c.resources.limits["memory"].to_units(), Ok(128 << 20));
        assert_eq!(pod.spec.volumes[0].source_kinds(), vec!["projected"]);
        assert!(pod.spec.init_containers[0].is_sidecar());
        assert!(!pod.spec.init_containers[1].is_sidecar());
    }

    #[test]
    fn realistic_pod_round_trips_through_yaml() {
        let pod: Pod = serde_json::from_str(REALISTIC_POD).unwrap();
        let yaml = serde_yaml_ng::to_string(&pod).unwrap();
        let back: Pod = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(back, pod);
    }

    #[test]
    fn lenient_decoding() {
        let pod: Pod = serde_json::from_str(
            r#"{"metadata":{"name":"a"},"spec":{"containers":[{"name":"c","image":"i","futureField":{"x":1}}],"newThing":true},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(pod.spec.containers[0].name, "c");
        let empty: Pod = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, Pod::default());
    }

    #[test]
    fn kubelet_defaults() {
        let spec = PodSpec::default();
        assert_eq!(spec.restart_policy(), Some(RestartPolicy::Always));
        assert_eq!(spec.termination_grace_period(), Duration::from_secs(30));
        assert_eq!(spec.dns_policy(), "ClusterFirst");
        let spec = PodSpec {
            restart_policy: Some("Sometimes".into()),
            termination_grace_period_seconds: Some(-5),
            ..Default::default()
        };
        assert_eq!(spec.restart_policy(), None);
        assert_eq!(spec.termination_grace_period(), Duration::ZERO);

        let p = Probe::default();
        assert_eq!(p.initial_delay(), Duration::ZERO);
        assert_eq!(p.period(), Duration::from_secs(10));
        assert_eq!(p.timeout(), Duration::from_secs(1));
        assert_eq!(p.success_threshold(), 1);
        assert_eq!(p.failure_threshold(), 3);
        assert_eq!(p.handler(), None);
        let p = Probe {
            period_seconds: Some(0),
            failure_threshold: Some(-1),
            tcp_socket: Some(TcpSocketAction::default()),
            ..Default::default()
        };
        assert_eq!(p.period(), Duration::from_secs(10));
        assert_eq!(p.failure_threshold(), 3);
        assert!(matches!(p.handler(), Some(ProbeHandler::TcpSocket(_))));
        assert_eq!(ContainerPort::default().protocol(), "TCP");
    }

    #[test]
    fn image_pull_policy_defaults_follow_the_tag() {
        let policy = |image: &str| {
            Container {
                image: image.into(),
                ..Default::default()
            }
            .image_pull_policy()
        };
        assert_eq!(policy("nginx"), ImagePullPolicy::Always);
        assert_eq!(policy("nginx:latest"), ImagePullPolicy::Always);
        assert_eq!(policy("nginx:1.27"), ImagePullPolicy::IfNotPresent);
        assert_eq!(policy("localhost:5000/nginx"), ImagePullPolicy::Always);
        assert_eq!(
            policy("localhost:5000/nginx:1"),
            ImagePullPolicy::IfNotPresent
        );
        assert_eq!(policy("nginx@sha256:abcd"), ImagePullPolicy::IfNotPresent);
        assert_eq!(policy("nginx:latest@sha256:abcd"), ImagePullPolicy::Always);
        let explicit = Container {
            image: "nginx".into(),
            image_pull_policy: Some("Never".into()),
            ..Default::default()
        };
        assert_eq!(explicit.image_pull_policy(), ImagePullPolicy::Never);
        assert_eq!(image_tag("a/b:c"), Some("c"));
        assert_eq!(image_tag("a:1/b"), None);
    }
}
