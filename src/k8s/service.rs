//! core/v1 Service: the fields kube-proxy reads.

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// core/v1 Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Service {
    /// Normally "v1".
    pub api_version: String,
    /// Normally "Service".
    pub kind: String,
    /// Name, namespace, labels.
    pub metadata: ObjectMeta,
    /// Desired behaviour.
    pub spec: ServiceSpec,
    /// Observed state: the load balancer's addresses.
    #[serde(skip_serializing_if = "ServiceStatus::is_empty")]
    pub status: ServiceStatus,
}

/// core/v1 ServiceStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceStatus {
    /// Addresses a cloud or bare-metal load balancer gave the service.
    pub load_balancer: LoadBalancerStatus,
}

impl ServiceStatus {
    fn is_empty(&self) -> bool {
        self.load_balancer.ingress.is_empty()
    }
}

/// core/v1 LoadBalancerStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerStatus {
    /// One entry per load-balancer address.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// core/v1 LoadBalancerIngress.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LoadBalancerIngress {
    /// IP address (empty for hostname-only balancers).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ip: String,
    /// "VIP" (default: traffic arrives with the LB IP as destination) or "Proxy" (the balancer
    /// rewrites it, so the node must not capture the IP).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_mode: Option<String>,
}

/// core/v1 ServiceSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServiceSpec {
    /// ClusterIP (default), NodePort, LoadBalancer or ExternalName.
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
    /// Primary cluster IP, or "None" for a headless service.
    #[serde(rename = "clusterIP", skip_serializing_if = "String::is_empty")]
    pub cluster_ip: String,
    /// All cluster IPs (dual stack), primary first.
    #[serde(rename = "clusterIPs", skip_serializing_if = "Vec::is_empty")]
    pub cluster_ips: Vec<String>,
    /// Ports exposed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Extra addresses that also route to the service.
    #[serde(rename = "externalIPs", skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<String>,
    /// "None" or "ClientIP".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub session_affinity: String,
    /// Affinity settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_affinity_config: Option<SessionAffinityConfig>,
    /// "IPv4" / "IPv6", in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_families: Vec<String>,
    /// "Cluster" (default) or "Local" for external traffic.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub external_traffic_policy: String,
    /// "Cluster" (default) or "Local" for cluster traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub internal_traffic_policy: Option<String>,
    /// Client CIDRs allowed through the load balancer.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_source_ranges: Vec<String>,
}

/// core/v1 ServicePort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ServicePort {
    /// Port name; matches EndpointSlice port names.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// TCP (default), UDP or SCTP.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The service port.
    pub port: i32,
    /// Port on the pods: a number or a named container port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    /// Node port for NodePort/LoadBalancer services (0 = none).
    #[serde(skip_serializing_if = "is_zero")]
    pub node_port: i32,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// A port given as a number or a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    /// A number.
    Int(i32),
    /// A name.
    String(String),
}

/// core/v1 SessionAffinityConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SessionAffinityConfig {
    /// ClientIP affinity settings.
    #[serde(rename = "clientIP", skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIpConfig>,
}

/// core/v1 ClientIPConfig.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientIpConfig {
    /// Sticky time in seconds (API default 10800).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i32>,
}

impl Service {
    /// The cluster IPs, primary first; empty for headless or ExternalName services.
    pub fn cluster_ips(&self) -> Vec<&str> {
        let ips: Vec<&str> = if self.spec.cluster_ips.is_empty() {
            vec![self.spec.cluster_ip.as_str()]
        } else {
            self.spec.cluster_ips.iter().map(String::as_str).collect()
        };
        ips.into_iter()
            .filter(|ip| !ip.is_empty() && *ip != "None")
            .collect()
    }

    /// Load-balancer IPs traffic is sent to with that IP as destination (ipMode VIP or unset):
    /// the ones kube-proxy captures on the node.
    pub fn load_balancer_vips(&self) -> Vec<&str> {
        if self.spec.type_ != "LoadBalancer" {
            return Vec::new();
        }
        self.status
            .load_balancer
            .ingress
            .iter()
            .filter(|i| !i.ip.is_empty() && i.ip_mode.as_deref().unwrap_or("VIP") == "VIP")
            .map(|i| i.ip.as_str())
            .collect()
    }

    /// Does this service get node ports?
    pub fn is_node_port(&self) -> bool {
        matches!(self.spec.type_.as_str(), "NodePort" | "LoadBalancer")
    }

    /// The ClientIP affinity timeout in seconds (`default` when the service gives none or a
    /// non-positive one), or None without ClientIP affinity.
    pub fn client_ip_affinity_seconds(&self, default: u32) -> Option<u32> {
        (self.spec.session_affinity == "ClientIP").then(|| {
            self.spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .filter(|t| *t > 0)
                .unwrap_or(default)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_camel_case_and_defaults() {
        let s: Service = serde_json::from_str(
            r#"{"metadata":{"name":"web","namespace":"default"},
                "spec":{"type":"NodePort","clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10"],
                "ports":[{"name":"http","port":80,"targetPort":"http","nodePort":30080},
                         {"port":53,"protocol":"UDP","targetPort":5353}],
                "sessionAffinity":"ClientIP",
                "sessionAffinityConfig":{"clientIP":{"timeoutSeconds":60}},
                "externalIPs":["192.0.2.7"],"unknown":1}}"#,
        )
        .unwrap();
        assert!(s.is_node_port());
        assert_eq!(s.cluster_ips(), vec!["10.96.0.10"]);
        assert_eq!(
            s.spec.ports[0].target_port,
            Some(IntOrString::String("http".into()))
        );
        assert_eq!(s.spec.ports[1].target_port, Some(IntOrString::Int(5353)));
        assert_eq!(s.spec.ports[0].node_port, 30080);
        let t = s
            .spec
            .session_affinity_config
            .as_ref()
            .unwrap()
            .client_ip
            .as_ref()
            .unwrap();
        assert_eq!(t.timeout_seconds, Some(60));
        let back: Service = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn headless_has_no_cluster_ips() {
        let s: Service = serde_json::from_str(r#"{"spec":{"clusterIP":"None"}}"#).unwrap();
        assert!(s.cluster_ips().is_empty());
    }
}
