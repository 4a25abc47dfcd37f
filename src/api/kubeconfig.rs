//! Kubeconfig files: reading one the way kubectl and the kubelet do (current-context → context
//! → cluster + user, file paths relative to the kubeconfig's directory), and writing the small
//! one the TLS bootstrap leaves behind.
//!
//! Owns the file format and its resolution into a [`ClusterConfig`]. It refuses anything that
//! would weaken TLS (no CA, `insecure-skip-tls-verify`, plain `http://`); it never opens sockets.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::k8s::configmap::base64_decode;

/// Largest kubeconfig read: real ones are a few KiB, even with inline certificates.
const MAX_FILE: u64 = 1 << 20;

/// The parsed kubeconfig file (only the parts a node agent uses).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Kubeconfig {
    /// Always "v1".
    #[serde(rename = "apiVersion", skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    /// Always "Config".
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Named clusters.
    pub clusters: Vec<NamedCluster>,
    /// Named contexts (cluster + user pairs).
    pub contexts: Vec<NamedContext>,
    /// Named users (credentials).
    pub users: Vec<NamedUser>,
    /// The context used when none is asked for.
    #[serde(rename = "current-context")]
    pub current_context: String,
}

/// A `clusters[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedCluster {
    /// Name the contexts refer to.
    pub name: String,
    /// The cluster itself.
    pub cluster: KubeconfigCluster,
}

/// A cluster: where the API server is and how to verify it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct KubeconfigCluster {
    /// `https://host:port`, optionally with a path prefix.
    pub server: String,
    /// CA file path (relative to the kubeconfig).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    /// CA PEM, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// Name the server certificate is checked against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
    /// Read only so it can be refused by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insecure_skip_tls_verify: Option<bool>,
}

/// A `contexts[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedContext {
    /// Name used by current-context.
    pub name: String,
    /// The context itself.
    pub context: KubeconfigContext,
}

/// A context: a cluster + user pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KubeconfigContext {
    /// Name of a `clusters[]` entry.
    pub cluster: String,
    /// Name of a `users[]` entry (may be empty: anonymous).
    pub user: String,
    /// Default namespace for namespaced requests.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// A `users[]` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamedUser {
    /// Name the contexts refer to.
    pub name: String,
    /// The credentials.
    pub user: KubeconfigUser,
}

/// A user: client certificate and/or bearer token.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct KubeconfigUser {
    /// Client certificate file path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Client certificate PEM, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    /// Client key file path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    /// Client key PEM, base64.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    /// Bearer token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// File holding the bearer token (re-read when it changes).
    #[serde(rename = "tokenFile", skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
    /// Read only so it can be refused by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exec: Option<serde_yaml_ng::Value>,
    /// Read only so it can be refused by name.
    #[serde(rename = "auth-provider", skip_serializing_if = "Option::is_none")]
    pub auth_provider: Option<serde_yaml_ng::Value>,
}

impl fmt::Debug for KubeconfigUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Keys and tokens are credentials: show only which fields are set.
        f.debug_struct("KubeconfigUser")
            .field("client_certificate", &self.client_certificate)
            .field(
                "client_certificate_data",
                &self.client_certificate_data.is_some(),
            )
            .field("client_key", &self.client_key)
            .field("client_key_data", &self.client_key_data.is_some())
            .field("token", &self.token.is_some())
            .field("token_file", &self.token_file)
            .finish()
    }
}

/// Everything needed to reach and authenticate to one API server.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `https://host:port` plus an optional path prefix, without a trailing slash.
    pub server: String,
    /// PEM of the CA(s) that sign the server certificate: the only roots trusted.
    pub ca_pem: Vec<u8>,
    /// Name to verify the server certificate against instead of the URL's host.
    pub tls_server_name: Option<String>,
    /// Credentials.
    pub auth: Auth,
    /// The context's namespace, if any.
    pub namespace: Option<String>,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("server", &self.server)
            .field("tls_server_name", &self.tls_server_name)
            .field("auth", &self.auth)
            .finish()
    }
}

/// How the client proves who it is.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// PEM client certificate chain and PEM private key.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
    /// Bearer token, sent as `Authorization: Bearer`.
    pub bearer: Option<Bearer>,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("client_cert", &self.client_cert.is_some())
            .field("bearer", &self.bearer)
            .finish()
    }
}

/// A bearer token, fixed or read from a file that may be rotated underneath us.
#[derive(Clone, PartialEq, Eq)]
pub enum Bearer {
    /// A token given inline.
    Static(String),
    /// A token file, re-read when it changes.
    File(PathBuf),
}

impl fmt::Debug for Bearer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bearer::Static(_) => f.write_str("Static(<hidden>)"),
            Bearer::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// Why a kubeconfig could not be read, resolved or written.
#[derive(Debug)]
pub enum KubeconfigError {
    /// The file (or a file it names) could not be read.
    Read {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse as a kubeconfig.
    Parse {
        /// The kubeconfig.
        path: PathBuf,
        /// The YAML parser's complaint.
        message: String,
    },
    /// A context, cluster or user named by the file is not in it.
    Missing {
        /// The kubeconfig.
        path: PathBuf,
        /// "context", "cluster" or "user".
        what: &'static str,
        /// The name that was not found.
        name: String,
    },
    /// A field has a value this client will not use (e.g. insecure-skip-tls-verify).
    Refused {
        /// The kubeconfig.
        path: PathBuf,
        /// The offending field, as named in the file.
        field: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// The bootstrap kubeconfig could not be written.
    Write {
        /// The kubeconfig being written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl fmt::Display for KubeconfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KubeconfigError::Read { path, source } => {
                write!(f, "reading kubeconfig {}: {source}", path.display())
            }
            KubeconfigError::Parse { path, message } => {
                write!(f, "parsing kubeconfig {}: {message}", path.display())
            }
            KubeconfigError::Missing { path, what, name } => write!(
                f,
                "kubeconfig {}: {what} {name:?} is not defined in the file",
                path.display()
            ),
            KubeconfigError::Refused {
                path,
                field,
                reason,
            } => write!(f, "kubeconfig {}: {field}: {reason}", path.display()),
            KubeconfigError::Write { path, source } => {
                write!(f, "writing kubeconfig {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for KubeconfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            KubeconfigError::Read { source, .. } | KubeconfigError::Write { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(MAX_FILE + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {MAX_FILE} bytes"),
        ));
    }
    Ok(buf)
}

impl Kubeconfig {
    /// Parses kubeconfig YAML (`path` only names the file in errors).
    pub fn parse(text: &[u8], path: &Path) -> Result<Self, KubeconfigError> {
        serde_yaml_ng::from_slice(text).map_err(|e| KubeconfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Reads and resolves the kubeconfig at `path` for `context` (default: current-context).
    pub fn load(path: &Path, context: Option<&str>) -> Result<ClusterConfig, KubeconfigError> {
        let text = read_bounded(path).map_err(|source| KubeconfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Kubeconfig::parse(&text, path)?.resolve(path, base, context)
    }

    /// Resolves one context into a [`ClusterConfig`], reading files relative to `base`.
    pub fn resolve(
        &self,
        path: &Path,
        base: &Path,
        context: Option<&str>,
    ) -> Result<ClusterConfig, KubeconfigError> {
        let missing = |what: &'static str, name: &str| KubeconfigError::Missing {
            path: path.to_path_buf(),
            what,
            name: name.to_string(),
        };
        let refused = |field: &str, reason: &str| KubeconfigError::Refused {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        let ctx_name = context.unwrap_or(&self.current_context);
        if ctx_name.is_empty() {
            return Err(refused(
                "current-context",
                "not set and no context was given",
            ));
        }
        let ctx = &self
            .contexts
            .iter()
            .find(|c| c.name == ctx_name)
            .ok_or_else(|| missing("context", ctx_name))?
            .context;
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .ok_or_else(|| missing("cluster", &ctx.cluster))?
            .cluster;
        // A context without a user is legal (anonymous), but a named user must exist.
        let user = if ctx.user.is_empty() {
            KubeconfigUser::default()
        } else {
            self.users
                .iter()
                .find(|u| u.name == ctx.user)
                .ok_or_else(|| missing("user", &ctx.user))?
                .user
                .clone()
        };

        if cluster.insecure_skip_tls_verify == Some(true) {
            return Err(refused(
                &format!("clusters[{}].cluster.insecure-skip-tls-verify", ctx.cluster),
                "TLS verification cannot be disabled; give certificate-authority(-data) instead",
            ));
        }
        let server = cluster.server.trim_end_matches('/').to_string();
        if !server.starts_with("https://") || server.len() <= "https://".len() {
            return Err(refused(
                &format!("clusters[{}].cluster.server", ctx.cluster),
                &format!("{server:?} is not an https:// URL; plain HTTP is not supported"),
            ));
        }
        let ca_pem = pick_data_or_file(
            path,
            base,
            "certificate-authority",
            cluster.certificate_authority_data.as_deref(),
            cluster.certificate_authority.as_deref(),
        )?
        .ok_or_else(|| {
            refused(
                &format!("clusters[{}].cluster.certificate-authority", ctx.cluster),
                "no CA given (certificate-authority or certificate-authority-data is required; \
                 the system trust store is never used for the API server)",
            )
        })?;

        if user.exec.is_some() {
            return Err(refused(
                "users[].user.exec",
                "exec credential plugins are not supported",
            ));
        }
        if user.auth_provider.is_some() {
            return Err(refused(
                "users[].user.auth-provider",
                "auth-provider plugins are not supported",
            ));
        }
        let cert = pick_data_or_file(
            path,
            base,
            "client-certificate",
            user.client_certificate_data.as_deref(),
            user.client_certificate.as_deref(),
        )?;
        let key = pick_data_or_file(
            path,
            base,
            "client-key",
            user.client_key_data.as_deref(),
            user.client_key.as_deref(),
        )?;
        let client_cert = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            (Some(_), None) => {
                return Err(refused("client-key", "client certificate without a key"))
            }
            (None, Some(_)) => {
                return Err(refused(
                    "client-certificate",
                    "client key without a certificate",
                ))
            }
        };
        // Like client-go: an inline token wins over tokenFile.
        let bearer = match (&user.token, &user.token_file) {
            (Some(t), _) if !t.is_empty() => Some(Bearer::Static(t.clone())),
            (_, Some(f)) if !f.is_empty() => Some(Bearer::File(resolve_path(base, f))),
            _ => None,
        };
        Ok(ClusterConfig {
            server,
            ca_pem,
            tls_server_name: cluster.tls_server_name.clone().filter(|s| !s.is_empty()),
            auth: Auth {
                client_cert,
                bearer,
            },
            namespace: Some(ctx.namespace.clone()).filter(|s| !s.is_empty()),
        })
    }
}

fn resolve_path(base: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

fn pick_data_or_file(
    path: &Path,
    base: &Path,
    field: &str,
    data: Option<&str>,
    file: Option<&str>,
) -> Result<Option<Vec<u8>>, KubeconfigError> {
    let data = data.filter(|s| !s.is_empty());
    let file = file.filter(|s| !s.is_empty());
    match (data, file) {
        (Some(_), Some(_)) => Err(KubeconfigError::Refused {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason: format!("both {field} and {field}-data are set; give only one"),
        }),
        (Some(d), None) => {
            let compact: String = d.split_whitespace().collect();
            base64_decode(&compact)
                .map(Some)
                .ok_or_else(|| KubeconfigError::Refused {
                    path: path.to_path_buf(),
                    field: format!("{field}-data"),
                    reason: "not valid base64".into(),
                })
        }
        (None, Some(f)) => {
            let full = resolve_path(base, f);
            read_bounded(&full)
                .map(Some)
                .map_err(|source| KubeconfigError::Read { path: full, source })
        }
        (None, None) => Ok(None),
    }
}

/// Writes a kubeconfig naming a cluster (CA file) and client certificate/key files, mode 0600.
///
/// Written to a temporary file, synced and renamed, so a crash never leaves half a file.
pub fn write_cert_kubeconfig(
    path: &Path,
    server: &str,
    ca_file: &Path,
    client_cert_file: &Path,
    client_key_file: &Path,
) -> Result<(), KubeconfigError> {
    let name = "default";
    let cfg = Kubeconfig {
        api_version: "v1".into(),
        kind: "Config".into(),
        clusters: vec![NamedCluster {
            name: name.into(),
            cluster: KubeconfigCluster {
                server: server.into(),
                certificate_authority: Some(ca_file.display().to_string()),
                ..Default::default()
            },
        }],
        contexts: vec![NamedContext {
            name: name.into(),
            context: KubeconfigContext {
                cluster: name.into(),
                user: name.into(),
                namespace: String::new(),
            },
        }],
        users: vec![NamedUser {
            name: name.into(),
            user: KubeconfigUser {
                client_certificate: Some(client_cert_file.display().to_string()),
                client_key: Some(client_key_file.display().to_string()),
                ..Default::default()
            },
        }],
        current_context: name.into(),
    };
    let werr = |source| KubeconfigError::Write {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_yaml_ng::to_string(&cfg)
        .map_err(|e| werr(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
    crate::store::fs::write_private(path, text.as_bytes()).map_err(werr)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed when the test ends, pass or fail.
    struct TmpDir(PathBuf);

    impl Drop for TmpDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl std::ops::Deref for TmpDir {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    fn tmpdir(tag: &str) -> TmpDir {
        let d = std::env::temp_dir().join(format!("tinylet-kc-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }

    const INLINE: &str = r#"
apiVersion: v1
kind: Config
current-context: edge
clusters:
- name: other
  cluster: {server: "https://wrong:1", certificate-authority-data: "Q0E="}
- name: prod
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: Q0EtUEVN
    tls-server-name: kubernetes.default
contexts:
- name: edge
  context: {cluster: prod, user: node, namespace: kube-system}
- name: other
  context: {cluster: other, user: tok}
users:
- name: node
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
- name: tok
  user: {token: abc, tokenFile: /ignored}
preferences: {}
"#;

    #[test]
    fn resolves_current_context_with_inline_data() {
        let kc = Kubeconfig::parse(INLINE.as_bytes(), Path::new("kc")).unwrap();
        let c = kc.resolve(Path::new("kc"), Path::new("/"), None).unwrap();
        assert_eq!(c.server, "https://10.0.0.1:6443");
        assert_eq!(c.ca_pem, b"CA-PEM");
        assert_eq!(c.tls_server_name.as_deref(), Some("kubernetes.default"));
        assert_eq!(
            c.auth.client_cert,
            Some((b"CERT".to_vec(), b"KEY".to_vec()))
        );
        assert_eq!(c.namespace.as_deref(), Some("kube-system"));
        let o = kc
            .resolve(Path::new("kc"), Path::new("/"), Some("other"))
            .unwrap();
        assert_eq!(o.auth.bearer, Some(Bearer::Static("abc".into())));
        assert!(!format!("{o:?}").contains("abc"));
    }

    #[test]
    fn relative_files_resolve_against_the_kubeconfig_dir() {
        let d = tmpdir("rel");
        std::fs::create_dir_all(d.join("pki")).unwrap();
        std::fs::write(d.join("pki/ca.crt"), "CA").unwrap();
        std::fs::write(d.join("pki/c.crt"), "C").unwrap();
        std::fs::write(d.join("k.key"), "K").unwrap();
        let text = r#"
current-context: x
clusters: [{name: c, cluster: {server: "https://h:6443", certificate-authority: pki/ca.crt}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
users: [{name: u, user: {client-certificate: pki/c.crt, client-key: k.key, tokenFile: tok}}]
"#;
        std::fs::write(d.join("kubelet.conf"), text).unwrap();
        let c = Kubeconfig::load(&d.join("kubelet.conf"), None).unwrap();
        assert_eq!(c.ca_pem, b"CA");
        assert_eq!(c.auth.client_cert, Some((b"C".to_vec(), b"K".to_vec())));
        assert_eq!(c.auth.bearer, Some(Bearer::File(d.join("tok"))));
    }

    fn refused_field(text: &str) -> String {
        let kc = Kubeconfig::parse(text.as_bytes(), Path::new("kc")).unwrap();
        match kc.resolve(Path::new("kc"), Path::new("/nonexistent"), None) {
            Err(KubeconfigError::Refused { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_anything_that_weakens_tls() {
        let base = "current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n";
        let f = refused_field(&format!(
            "{base}clusters: [{{name: c, cluster: {{server: 'https://h', insecure-skip-tls-verify: true, certificate-authority-data: Q0E=}}}}]"
        ));
        assert!(f.contains("insecure-skip-tls-verify"), "{f}");
        let f = refused_field(&format!(
            "{base}clusters: [{{name: c, cluster: {{server: 'https://h'}}}}]"
        ));
        assert!(f.contains("certificate-authority"), "{f}");
        let f = refused_field(&format!(
            "{base}clusters: [{{name: c, cluster: {{server: 'http://h', certificate-authority-data: Q0E=}}}}]"
        ));
        assert!(f.contains("server"), "{f}");
        // The message names the field and says what to do.
        let kc = Kubeconfig::parse(
            format!("{base}clusters: [{{name: c, cluster: {{server: 'https://h'}}}}]").as_bytes(),
            Path::new("/etc/kc"),
        )
        .unwrap();
        let msg = kc
            .resolve(Path::new("/etc/kc"), Path::new("/"), None)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("/etc/kc") && msg.contains("certificate-authority-data"),
            "{msg}"
        );
    }

    #[test]
    fn refuses_ambiguous_or_unsupported_users() {
        let base = "current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h', certificate-authority-data: Q0E=}}]\n";
        for (user, field) in [
            ("{client-certificate-data: Q0E=}", "client-key"),
            ("{client-key-data: Q0E=}", "client-certificate"),
            (
                "{client-key-data: Q0E=, client-key: /k, client-certificate-data: Q0E=}",
                "client-key",
            ),
            ("{exec: {command: aws}}", "exec"),
            ("{auth-provider: {name: gcp}}", "auth-provider"),
            (
                "{client-certificate-data: '***', client-key-data: Q0E=}",
                "client-certificate-data",
            ),
        ] {
            let f = refused_field(&format!("{base}users: [{{name: u, user: {user}}}]"));
            assert!(f.contains(field), "{user}: {f}");
        }
    }

    #[test]
    fn missing_names_and_bad_yaml_are_errors() {
        let kc = Kubeconfig::parse(INLINE.as_bytes(), Path::new("kc")).unwrap();
        assert!(matches!(
            kc.resolve(Path::new("kc"), Path::new("/"), Some("nope")),
            Err(KubeconfigError::Missing {
                what: "context",
                ..
            })
        ));
        assert!(Kubeconfig::parse(b"clusters: 7", Path::new("kc")).is_err());
        assert!(Kubeconfig::parse(b"\xff\xfe", Path::new("kc")).is_err());
        let empty = Kubeconfig::parse(b"{}", Path::new("kc")).unwrap();
        assert!(empty
            .resolve(Path::new("kc"), Path::new("/"), None)
            .is_err());
        assert!(matches!(
            Kubeconfig::load(Path::new("/nonexistent/kc"), None),
            Err(KubeconfigError::Read { .. })
        ));
    }

    #[test]
    fn written_kubeconfig_is_0600_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let d = tmpdir("write");
        std::fs::write(d.join("ca.crt"), "CA").unwrap();
        std::fs::write(d.join("c.pem"), "C").unwrap();
        std::fs::write(d.join("k.pem"), "K").unwrap();
        let p = d.join("kubelet.conf");
        // A pre-existing world-readable file must end up 0600 too.
        std::fs::write(&p, "old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_cert_kubeconfig(
            &p,
            "https://h:6443",
            &d.join("ca.crt"),
            &d.join("c.pem"),
            &d.join("k.pem"),
        )
        .unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let c = Kubeconfig::load(&p, None).unwrap();
        assert_eq!(c.server, "https://h:6443");
        assert_eq!(c.ca_pem, b"CA");
        assert_eq!(c.auth.client_cert, Some((b"C".to_vec(), b"K".to_vec())));
    }
}
