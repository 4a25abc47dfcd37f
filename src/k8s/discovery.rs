//! discovery/v1 EndpointSlice: the fields kube-proxy reads.

use serde::{Deserialize, Serialize};

use super::meta::ObjectMeta;

/// Label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// discovery/v1 EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointSlice {
    /// Normally "discovery.k8s.io/v1".
    pub api_version: String,
    /// Normally "EndpointSlice".
    pub kind: String,
    /// Name, namespace, labels (including the service name).
    pub metadata: ObjectMeta,
    /// "IPv4", "IPv6" or "FQDN".
    pub address_type: String,
    /// The endpoints.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<Endpoint>,
    /// Ports of every endpoint in the slice.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<EndpointPort>,
}

/// discovery/v1 Endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Endpoint {
    /// Addresses of one backend (kube-proxy uses the first).
    pub addresses: Vec<String>,
    /// Readiness.
    pub conditions: EndpointConditions,
    /// Node hosting the endpoint.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// discovery/v1 EndpointConditions; an absent condition has an API-defined meaning.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointConditions {
    /// Ready for traffic; absent means ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// Serving; absent means the same as `ready`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<bool>,
    /// Terminating; absent means not terminating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub terminating: Option<bool>,
}

impl EndpointConditions {
    /// `ready`, with the API default.
    pub fn is_ready(&self) -> bool {
        self.ready.unwrap_or(true)
    }

    /// `serving`, with the API default.
    pub fn is_serving(&self) -> bool {
        self.serving.unwrap_or_else(|| self.is_ready())
    }

    /// `terminating`, with the API default.
    pub fn is_terminating(&self) -> bool {
        self.terminating.unwrap_or(false)
    }
}

/// discovery/v1 EndpointPort.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EndpointPort {
    /// Matches a ServicePort name ("" for an unnamed port).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// TCP (default), UDP or SCTP.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl EndpointSlice {
    /// The Service this slice belongs to, from its label.
    pub fn service_name(&self) -> Option<&str> {
        self.metadata
            .labels
            .get(SERVICE_NAME_LABEL)
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_defaults_conditions() {
        let s: EndpointSlice = serde_json::from_str(
            r#"{"metadata":{"name":"web-abc","labels":{"kubernetes.io/service-name":"web"}},
                "addressType":"IPv4",
                "endpoints":[{"addresses":["10.244.0.5"],"conditions":{},"nodeName":"n1"},
                             {"addresses":["10.244.0.6"],"conditions":{"ready":false,"serving":true,"terminating":true}}],
                "ports":[{"name":"http","port":8080,"protocol":"TCP"}]}"#,
        )
        .unwrap();
        assert_eq!(s.service_name(), Some("web"));
        assert!(s.endpoints[0].conditions.is_ready());
        assert!(s.endpoints[0].conditions.is_serving());
        assert!(!s.endpoints[0].conditions.is_terminating());
        assert!(!s.endpoints[1].conditions.is_ready());
        assert!(s.endpoints[1].conditions.is_terminating());
        let back: EndpointSlice =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
