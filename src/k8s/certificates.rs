//! Credentials from the API: certificates.k8s.io/v1 `CertificateSigningRequest` (TLS bootstrap)
//! and authentication.k8s.io/v1 `TokenRequest` (service account tokens for projected volumes).
//!
//! Owns the shapes only; generating keys and CSRs and deciding when to rotate live elsewhere.

use serde::{Deserialize, Serialize};

use super::configmap::ByteString;
use super::meta::ObjectMeta;

/// The signer a kubelet's client certificate request names.
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The signer a kubelet's serving certificate request names.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// certificates.k8s.io/v1 CertificateSigningRequest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CertificateSigningRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: CertificateSigningRequestSpec,
    pub status: CertificateSigningRequestStatus,
}

/// certificates.k8s.io/v1 CertificateSigningRequestSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CertificateSigningRequestSpec {
    /// PEM-encoded PKCS#10 request (base64 on the wire).
    pub request: ByteString,
    pub signer_name: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub usages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i32>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// certificates.k8s.io/v1 CertificateSigningRequestStatus.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CertificateSigningRequestStatus {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CertificateSigningRequestCondition>,
    /// PEM certificate chain once issued (base64 on the wire); empty until then.
    #[serde(skip_serializing_if = "ByteString::is_empty")]
    pub certificate: ByteString,
}

/// certificates.k8s.io/v1 CertificateSigningRequestCondition (Approved, Denied, Failed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CertificateSigningRequestCondition {
    #[serde(rename = "type")]
    pub condition_type: String,
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl ByteString {
    /// True when no bytes are held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl CertificateSigningRequest {
    /// A kubelet client-certificate request as the TLS bootstrap posts it.
    pub fn kubelet_client(name: &str, csr_pem: Vec<u8>, expiration_seconds: Option<i32>) -> Self {
        CertificateSigningRequest {
            api_version: "certificates.k8s.io/v1".into(),
            kind: "CertificateSigningRequest".into(),
            metadata: ObjectMeta {
                name: name.into(),
                ..Default::default()
            },
            spec: CertificateSigningRequestSpec {
                request: ByteString(csr_pem),
                signer_name: KUBELET_CLIENT_SIGNER.into(),
                usages: vec!["digital signature".into(), "client auth".into()],
                expiration_seconds,
                ..Default::default()
            },
            status: Default::default(),
        }
    }

    /// A kubelet serving-certificate request (`serverTLSBootstrap`). Usages as the kubelet
    /// asks: digital signature and server auth, plus key encipherment only for an RSA key
    /// (an ECDSA key never enciphers).
    pub fn kubelet_serving(
        name: &str,
        csr_pem: Vec<u8>,
        expiration_seconds: Option<i32>,
        rsa_key: bool,
    ) -> Self {
        let mut csr = Self::kubelet_client(name, csr_pem, expiration_seconds);
        csr.spec.signer_name = KUBELET_SERVING_SIGNER.into();
        csr.spec.usages = vec!["digital signature".into()];
        if rsa_key {
            csr.spec.usages.push("key encipherment".into());
        }
        csr.spec.usages.push("server auth".into());
        csr
    }

    /// True once a condition with this type and status "True" is present.
    fn has_condition(&self, condition_type: &str) -> bool {
        self.status
            .conditions
            .iter()
            .any(|c| c.condition_type == condition_type && c.status == "True")
    }

    /// The issued certificate, once approved and signed.
    pub fn issued_certificate(&self) -> Option<&[u8]> {
        if self.has_condition("Approved") && !self.status.certificate.is_empty() {
            Some(&self.status.certificate.0)
        } else {
            None
        }
    }

    /// True if the request was denied or failed and will never be issued.
    pub fn is_rejected(&self) -> bool {
        self.has_condition("Denied") || self.has_condition("Failed")
    }
}

/// authentication.k8s.io/v1 TokenRequest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenRequest {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: TokenRequestSpec,
    pub status: TokenRequestStatus,
}

/// authentication.k8s.io/v1 TokenRequestSpec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenRequestSpec {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bound_object_ref: Option<BoundObjectReference>,
}

/// authentication.k8s.io/v1 BoundObjectReference: the token dies with this object (a pod).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BoundObjectReference {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: String,
}

/// authentication.k8s.io/v1 TokenRequestStatus.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct TokenRequestStatus {
    pub token: String,
    pub expiration_timestamp: String,
}

impl std::fmt::Debug for TokenRequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens are credentials: never log them.
        f.debug_struct("TokenRequestStatus")
            .field("token", &format_args!("<{} bytes>", self.token.len()))
            .field("expiration_timestamp", &self.expiration_timestamp)
            .finish()
    }
}

impl TokenRequest {
    /// A token request bound to a pod, as the projected-volume code posts it.
    pub fn for_pod(
        audiences: Vec<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Self {
        TokenRequest {
            api_version: "authentication.k8s.io/v1".into(),
            kind: "TokenRequest".into(),
            metadata: ObjectMeta::default(),
            spec: TokenRequestSpec {
                audiences,
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    kind: "Pod".into(),
                    api_version: "v1".into(),
                    name: pod_name.into(),
                    uid: pod_uid.into(),
                }),
            },
            status: TokenRequestStatus::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_request_is_base64_on_the_wire() {
        let csr = CertificateSigningRequest::kubelet_client(
            "node-csr-1",
            b"-----BEGIN CERTIFICATE REQUEST-----\n".to_vec(),
            Some(86400),
        );
        let j = serde_json::to_value(&csr).unwrap();
        assert_eq!(
            j["spec"]["request"],
            "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURSBSRVFVRVNULS0tLS0K"
        );
        assert_eq!(j["spec"]["signerName"], KUBELET_CLIENT_SIGNER);
        assert_eq!(j["spec"]["expirationSeconds"], 86400);
        assert!(j["status"].get("certificate").is_none());
        assert_eq!(
            serde_json::from_value::<CertificateSigningRequest>(j).unwrap(),
            csr
        );
    }

    #[test]
    fn serving_request_names_the_serving_signer_and_usages() {
        let j = serde_json::to_value(CertificateSigningRequest::kubelet_serving(
            "n",
            b"pem".to_vec(),
            Some(3600),
            false,
        ))
        .unwrap();
        assert_eq!(j["spec"]["signerName"], "kubernetes.io/kubelet-serving");
        assert_eq!(
            j["spec"]["usages"],
            serde_json::json!(["digital signature", "server auth"])
        );
        assert_eq!(j["spec"]["expirationSeconds"], 3600);
        let rsa = CertificateSigningRequest::kubelet_serving("n", vec![], None, true);
        assert_eq!(
            rsa.spec.usages,
            ["digital signature", "key encipherment", "server auth"]
        );
    }

    #[test]
    fn issued_only_when_approved_with_certificate() {
        let mut csr: CertificateSigningRequest = serde_json::from_str(
            r#"{"metadata":{"name":"x"},"spec":{"request":"","signerName":"s"},
                "status":{"conditions":[{"type":"Approved","status":"True","reason":"AutoApproved"}]}}"#,
        )
        .unwrap();
        assert_eq!(csr.issued_certificate(), None);
        csr.status.certificate = ByteString(b"PEM".to_vec());
        assert_eq!(csr.issued_certificate(), Some(&b"PEM"[..]));
        assert!(!csr.is_rejected());
        csr.status.conditions[0].condition_type = "Denied".into();
        assert!(csr.is_rejected());
        assert_eq!(csr.issued_certificate(), None);
    }

    #[test]
    fn token_request_round_trip_and_hidden_token() {
        let mut t = TokenRequest::for_pod(
            vec!["https://kubernetes.default.svc".into()],
            3607,
            "p",
            "u",
        );
        let j = serde_json::to_value(&t).unwrap();
        assert_eq!(j["spec"]["boundObjectRef"]["kind"], "Pod");
        assert_eq!(j["spec"]["expirationSeconds"], 3607);
        t.status.token = "secret-token".into();
        t.status.expiration_timestamp = "2024-05-01T13:00:07Z".into();
        let back: TokenRequest = serde_json::from_value(serde_json::to_value(&t).unwrap()).unwrap();
        assert_eq!(back, t);
        assert!(!format!("{t:?}").contains("secret-token"));
    }
}
