//! TLS bootstrap and client certificate rotation, as the kubelet does them: use the
//! kubeconfig's client certificate while it is valid; otherwise, with a bootstrap kubeconfig,
//! generate a key, request a certificate through a CertificateSigningRequest, wait for it to be
//! issued, store cert and key (0600) under the cert dir and write the kubeconfig that uses them.
//!
//! Owns the credential files under the cert dir and the kubeconfig it writes. It never weakens
//! TLS (the API client refuses a kubeconfig without a CA) and never touches other files.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::api::backoff::{random_between, RandomSource, XorShift64};
use crate::api::{write_cert_kubeconfig, Client, ClientConfig, ClusterConfig, Kubeconfig};
use crate::config::AgentConfig;
use crate::k8s::certificates::CertificateSigningRequest;

use super::x509::{first_certificate, pem_encode, CertInfo, GeneratedKey};
use super::NodeError;

/// The file holding the current client certificate and key (the kubelet's name).
pub const CLIENT_PEM: &str = "kubelet-client-current.pem";
/// The cluster CA copied from the bootstrap kubeconfig.
pub const CA_FILE: &str = "ca.crt";
const CSR_PATH: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// How long to wait for a request to be issued, and how often to look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootstrapOptions {
    /// Give up after this long without an issued certificate.
    pub approval_timeout: Duration,
    /// First poll interval; doubles up to `poll_max`.
    pub poll_initial: Duration,
    /// Longest poll interval.
    pub poll_max: Duration,
    /// Requested certificate lifetime (`spec.expirationSeconds`), if any.
    pub expiration: Option<Duration>,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        BootstrapOptions {
            approval_timeout: Duration::from_secs(15 * 60),
            poll_initial: Duration::from_millis(250),
            poll_max: Duration::from_secs(10),
            expiration: None,
        }
    }
}

/// The kubeconfig the node uses: `--kubeconfig`, else `<rootDir>/kubeconfig` when
/// bootstrapping without one.
pub fn kubeconfig_path(cfg: &AgentConfig) -> PathBuf {
    cfg.kubeconfig
        .clone()
        .unwrap_or_else(|| cfg.root_dir.join("kubeconfig"))
}

/// Credentials the node can use now, bootstrapping them if needed (blocks until issued or
/// the approval timeout).
pub fn ensure_credentials(cfg: &AgentConfig, node_name: &str) -> Result<ClusterConfig, NodeError> {
    ensure_credentials_with(cfg, node_name, &BootstrapOptions::default(), &|| false)
}

/// [`ensure_credentials`] with explicit options; `stop` is polled while waiting.
pub fn ensure_credentials_with(
    cfg: &AgentConfig,
    node_name: &str,
    opts: &BootstrapOptions,
    stop: &dyn Fn() -> bool,
) -> Result<ClusterConfig, NodeError> {
    let path = kubeconfig_path(cfg);
    if path.exists() {
        let cluster = Kubeconfig::load(&path, None).map_err(|e| NodeError::Kubeconfig {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let now = SystemTime::now();
        if let Some(nb) = clock_behind(&cluster, now) {
            return Err(NodeError::ClockBehind {
                now,
                not_before: nb,
            });
        }
        match client_cert_state(&cluster, now) {
            CertState::NotACert | CertState::Valid(_) => return Ok(cluster),
            state if cfg.bootstrap_kubeconfig.is_none() => {
                // Nothing to renew it with: use it and let the server say no.
                log::warn!(
                    "kubeconfig {}: client certificate {state:?}",
                    path.display()
                );
                return Ok(cluster);
            }
            state => log::info!(
                "kubeconfig {}: client certificate {state:?}; bootstrapping a new one",
                path.display()
            ),
        }
    }
    let boot_path = cfg
        .bootstrap_kubeconfig
        .clone()
        .ok_or_else(|| NodeError::NoCredentials { path: path.clone() })?;
    let boot = Kubeconfig::load(&boot_path, None).map_err(|e| NodeError::Kubeconfig {
        path: boot_path.clone(),
        message: e.to_string(),
    })?;
    // A CSR sent with the clock behind would fail its TLS handshake, and a certificate issued
    // anyway would not be valid yet: wait for the time instead of storming the server.
    let now = SystemTime::now();
    if let Some(nb) = clock_behind(&boot, now) {
        return Err(NodeError::ClockBehind {
            now,
            not_before: nb,
        });
    }
    let client = Client::new(&boot, ClientConfig::default()).map_err(NodeError::Api)?;
    request_certificate(&client, &boot, cfg, node_name, opts, stop)?;
    Kubeconfig::load(&path, None).map_err(|e| NodeError::Kubeconfig {
        path,
        message: e.to_string(),
    })
}

/// What the client certificate of a resolved kubeconfig looks like at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertState {
    /// Token auth (or no auth): nothing to check.
    NotACert,
    /// Usable.
    Valid(CertInfo),
    /// Past notAfter.
    Expired(CertInfo),
    /// Before notBefore: the cluster issued it, so it is the clock that is wrong (a device
    /// without a real-time clock boots in 1970), not the certificate. Never a reason to
    /// bootstrap a new one: it would not be valid yet either.
    NotYetValid(CertInfo),
    /// Could not be read.
    Unreadable(String),
}

/// Checks the client certificate of `cluster` at `now`.
pub fn client_cert_state(cluster: &ClusterConfig, now: SystemTime) -> CertState {
    let Some((cert, _)) = &cluster.auth.client_cert else {
        return CertState::NotACert;
    };
    match first_certificate(cert) {
        Ok(info) if now < info.not_before => CertState::NotYetValid(info),
        Ok(info) if now < info.not_after => CertState::Valid(info),
        Ok(info) => CertState::Expired(info),
        Err(e) => CertState::Unreadable(e.to_string()),
    }
}

/// The latest `notBefore` among the cluster CA and the client certificate of `cluster` when it
/// lies after `now`: then the wall clock is behind (no certificate the cluster uses can be
/// from the future), TLS cannot work, and the node waits for time sync instead of retrying.
pub fn clock_behind(cluster: &ClusterConfig, now: SystemTime) -> Option<SystemTime> {
    let ca = first_certificate(&cluster.ca_pem)
        .ok()
        .map(|c| c.not_before);
    let client = cluster
        .auth
        .client_cert
        .as_ref()
        .and_then(|(c, _)| first_certificate(c).ok())
        .map(|c| c.not_before);
    [ca, client]
        .into_iter()
        .flatten()
        .filter(|nb| *nb > now)
        .max()
}

/// The words the node uses when the clock is behind its certificates, e.g. "system clock is
/// 1970-01-01, certificates not valid yet — waiting for time sync".
pub fn clock_behind_message(now: SystemTime, not_before: Option<SystemTime>) -> String {
    let day = crate::k8s::coordination::format_time(now);
    let day = day.get(..10).unwrap_or(&day);
    let mut m =
        format!("system clock is {day}, certificates not valid yet — waiting for time sync");
    if let Some(nb) = not_before {
        m.push_str(&format!(
            " (valid from {})",
            crate::k8s::coordination::format_time(nb)
        ));
    }
    m
}

/// True when a TLS failure says the peer's certificate is not valid yet (rustls'
/// `NotValidYet`): the local clock is behind, however the error reached us.
pub fn is_not_yet_valid_error(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("notvalidyet") || m.contains("not valid yet") || m.contains("not valid until")
}

/// Next look at the clock while it is behind, on a slow schedule: the wait is local (no
/// request goes out), and the node retries at once when the clock passes `not_before` or
/// every `max` anyway.
pub const CLOCK_CHECK: Duration = Duration::from_secs(5);

/// When to rotate a certificate: a random point in 70–90% of its lifetime, as the kubelet
/// does, so a fleet issued at once does not renew at once.
pub fn rotation_deadline(info: &CertInfo, rng: &mut dyn RandomSource) -> SystemTime {
    let life = info
        .not_after
        .duration_since(info.not_before)
        .unwrap_or(Duration::ZERO);
    let lo = life.mul_f64(0.7);
    let hi = life.mul_f64(0.9);
    info.not_before + random_between(rng, lo, hi)
}

/// Posts a CSR for `node_name` with `client`, waits for the certificate, stores it with the
/// key under the cert dir and writes the kubeconfig that uses them (server and CA from
/// `cluster`). Used for the first certificate (bootstrap identity) and for rotation (the
/// node's own identity).
pub fn request_certificate(
    client: &Client,
    cluster: &ClusterConfig,
    cfg: &AgentConfig,
    node_name: &str,
    opts: &BootstrapOptions,
    stop: &dyn Fn() -> bool,
) -> Result<CertInfo, NodeError> {
    let key = GeneratedKey::generate().map_err(|e| NodeError::Crypto(e.to_string()))?;
    let cn = format!("system:node:{node_name}");
    let req = key
        .certificate_request(&cn, &["system:nodes"])
        .map_err(|e| NodeError::Crypto(e.to_string()))?;
    let pem = pem_encode("CERTIFICATE REQUEST", &req);
    let name = csr_name("node-csr", &key);
    let csr = CertificateSigningRequest::kubelet_client(&name, pem.into_bytes(), expiration(opts));
    let cert_pem = submit_and_wait(client, &csr, opts, stop)?;
    log::info!("node {node_name}: CSR {name} issued");
    let info = first_certificate(&cert_pem).map_err(|e| NodeError::Csr {
        name: name.clone(),
        message: format!("issued certificate: {e}"),
    })?;
    if info.common_name.as_deref() != Some(cn.as_str()) {
        return Err(NodeError::Csr {
            name,
            message: format!(
                "issued certificate names {:?}, not {cn:?}",
                info.common_name
            ),
        });
    }
    store_credentials(cfg, cluster, &cert_pem, key.private_pem().as_bytes())?;
    log::info!(
        "node {node_name}: client certificate stored in {} (valid until {})",
        cfg.cert_dir().display(),
        crate::k8s::coordination::format_time(info.not_after)
    );
    Ok(info)
}

/// A CSR name unique to `key`: `PREFIX-` and the start of its public point's SHA-256.
pub fn csr_name(prefix: &str, key: &GeneratedKey) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.public_point());
    let hex: String = digest
        .as_ref()
        .iter()
        .take(10)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}-{hex}")
}

/// `spec.expirationSeconds` from the options.
pub fn expiration(opts: &BootstrapOptions) -> Option<i32> {
    opts.expiration
        .map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX))
}

/// Posts `csr` and waits for its certificate (PEM chain) within the options' bounds; a denied
/// or failed request is an error that is not retried.
pub fn submit_and_wait(
    client: &Client,
    csr: &CertificateSigningRequest,
    opts: &BootstrapOptions,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, NodeError> {
    let name = csr.metadata.name.clone();
    let _: CertificateSigningRequest = client.create(CSR_PATH, csr).map_err(NodeError::Api)?;
    log::info!(
        "certificate requested as CSR {name} (signer {})",
        csr.spec.signer_name
    );
    wait_for_certificate(client, &name, opts, stop)
}

fn wait_for_certificate(
    client: &Client,
    name: &str,
    opts: &BootstrapOptions,
    stop: &dyn Fn() -> bool,
) -> Result<Vec<u8>, NodeError> {
    let path = format!("{CSR_PATH}/{name}");
    let deadline = Instant::now() + opts.approval_timeout;
    let mut delay = opts.poll_initial;
    let mut rng = XorShift64::from_entropy();
    loop {
        match client.get::<CertificateSigningRequest>(&path) {
            Ok(csr) => {
                if let Some(cert) = csr.issued_certificate() {
                    return Ok(cert.to_vec());
                }
                if csr.is_rejected() {
                    return Err(NodeError::Csr {
                        name: name.into(),
                        message: "denied or failed; not retrying".into(),
                    });
                }
            }
            Err(e) if e.is_retryable() => log::warn!("waiting for CSR {name}: {e}"),
            Err(e) => return Err(NodeError::Api(e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(NodeError::Csr {
                name: name.into(),
                message: format!(
                    "no certificate issued within {} s",
                    opts.approval_timeout.as_secs()
                ),
            });
        }
        let nap = random_between(&mut rng, delay / 2, delay).min(deadline - now);
        sleep_unless(nap, stop)?;
        delay = (delay * 2).min(opts.poll_max);
    }
}

/// Sleeps in short slices so a stop request is seen quickly.
fn sleep_unless(d: Duration, stop: &dyn Fn() -> bool) -> Result<(), NodeError> {
    let end = Instant::now() + d;
    loop {
        if stop() {
            return Err(NodeError::Stopped);
        }
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(100)));
    }
}

/// Writes `bytes` to `path` with mode 0600 through a synced temporary file and a rename.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), NodeError> {
    crate::store::fs::write_private(path, bytes).map_err(|e| NodeError::Io {
        op: "write",
        path: path.to_path_buf(),
        source: e,
    })
}

fn store_credentials(
    cfg: &AgentConfig,
    cluster: &ClusterConfig,
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<(), NodeError> {
    let dir = cfg.cert_dir();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| NodeError::Io {
            op: "create",
            path: dir.clone(),
            source: e,
        })?;
    // One file with certificate and key, as the kubelet keeps them, so both change at once.
    let mut both = cert_pem.to_vec();
    if !both.ends_with(b"\n") {
        both.push(b'\n');
    }
    both.extend_from_slice(key_pem);
    let pem_path = dir.join(CLIENT_PEM);
    write_private(&pem_path, &both)?;
    let ca_path = dir.join(CA_FILE);
    write_private(&ca_path, &cluster.ca_pem)?;
    let kc = kubeconfig_path(cfg);
    if let Some(parent) = kc.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    write_cert_kubeconfig(&kc, &cluster.server, &ca_path, &pem_path, &pem_path).map_err(|e| {
        NodeError::Kubeconfig {
            path: kc.clone(),
            message: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_clock_behind_the_certificates_is_named_not_mistaken_for_expiry() {
        let day = Duration::from_secs(86_400);
        let issued = SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let key = GeneratedKey::generate().unwrap();
        let pem = |nb: SystemTime| {
            let der = key
                .self_signed_server_certificate("n", &[], &[], nb, nb + 365 * day)
                .unwrap();
            pem_encode("CERTIFICATE", &der).into_bytes()
        };
        let cluster = ClusterConfig {
            server: "https://192.0.2.1:6443".into(),
            ca_pem: pem(issued),
            tls_server_name: None,
            auth: crate::api::Auth {
                client_cert: Some((pem(issued + day), key.private_pem().into_bytes())),
                bearer: None,
            },
            namespace: None,
        };
        // An RTC-less board boots in 1970.
        let boot = SystemTime::UNIX_EPOCH + Duration::from_secs(30);
        assert_eq!(clock_behind(&cluster, boot), Some(issued + day));
        assert!(matches!(
            client_cert_state(&cluster, boot),
            CertState::NotYetValid(_)
        ));
        let msg = clock_behind_message(boot, clock_behind(&cluster, boot));
        assert!(
            msg.starts_with(
                "system clock is 1970-01-01, certificates not valid yet — waiting for time sync"
            ),
            "{msg}"
        );
        // Time sync: nothing is behind, the certificate is valid, and its rotation deadline
        // is the one computed while the clock was behind (70-90% of its life, not "now").
        let synced = issued + 2 * day;
        assert_eq!(clock_behind(&cluster, synced), None);
        let CertState::Valid(info) = client_cert_state(&cluster, synced) else {
            panic!("not valid after sync")
        };
        let mut rng = XorShift64::new(4);
        let before = rotation_deadline(&info, &mut rng);
        assert!(before > synced + 200 * day, "{before:?}");
        assert!(is_not_yet_valid_error(
            "GET /api: transport: invalid peer certificate: NotValidYet"
        ));
        assert!(is_not_yet_valid_error(
            "invalid peer certificate: certificate not valid until 2026-01-01, but now is 1970-01-01"
        ));
        assert!(!is_not_yet_valid_error("invalid peer certificate: Expired"));
    }

    #[test]
    fn rotation_falls_in_70_to_90_percent() {
        let info = CertInfo {
            not_before: UNIX_EPOCH + Duration::from_secs(1000),
            not_after: UNIX_EPOCH + Duration::from_secs(1000 + 86_400),
            common_name: None,
            organizations: vec![],
            dns_names: vec![],
            ip_addresses: vec![],
        };
        let mut rng = XorShift64::new(3);
        let (mut lo, mut hi) = (u64::MAX, 0);
        for _ in 0..2000 {
            let d = rotation_deadline(&info, &mut rng)
                .duration_since(info.not_before)
                .unwrap()
                .as_secs();
            assert!((60_480..=77_760).contains(&d), "{d}");
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(lo < 61_000 && hi > 77_000, "jitter spreads: {lo}..{hi}");
        // A certificate whose notAfter precedes notBefore rotates at once, no panic.
        let odd = CertInfo {
            not_after: info.not_before - Duration::from_secs(5),
            ..info
        };
        assert_eq!(rotation_deadline(&odd, &mut rng), odd.not_before);
    }

    #[test]
    fn cert_state_without_client_cert() {
        let c = ClusterConfig {
            server: "https://x".into(),
            ca_pem: vec![],
            tls_server_name: None,
            auth: Default::default(),
            namespace: None,
        };
        assert_eq!(
            client_cert_state(&c, SystemTime::now()),
            CertState::NotACert
        );
        let mut c2 = c.clone();
        c2.auth.client_cert = Some((b"garbage".to_vec(), vec![]));
        assert!(matches!(
            client_cert_state(&c2, SystemTime::now()),
            CertState::Unreadable(_)
        ));
    }

    #[test]
    fn private_files_are_0600_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tinylet-boot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("k.pem");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
