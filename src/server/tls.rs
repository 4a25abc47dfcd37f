//! TLS for the kubelet API: the serving certificate (given files, else a self-signed pair kept
//! 0600 under the certificate directory as `kubelet.crt`/`kubelet.key`, as the kubelet makes
//! it, remade when it is not valid at the current wall time), the rustls server configuration
//! (TLS 1.2+, ring only) in a [`TlsSlot`] that a new certificate replaces for new connections
//! only, and client certificates. A certificate from the cluster is `serving`'s concern.
//!
//! Client certificates are requested, never required, and accepted at the TLS layer whatever
//! their issuer (the handshake signature is still checked, so the client holds the key): the
//! chain is verified against the client CA after the handshake, so that a certificate from
//! another CA is answered with 401 like the kubelet does rather than a TLS alert.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};

use super::authn::PeerCert;
use super::ServerError;
use crate::node::x509::{self, GeneratedKey};

/// Largest PEM file read (certificate chains and CA bundles are a few KiB).
const MAX_PEM: u64 = 1 << 20;
/// Validity of a self-signed serving certificate (the kubelet's: one year).
const SELF_SIGNED_LIFE: Duration = Duration::from_secs(365 * 24 * 3600);

pub(crate) fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, ServerError> {
    use std::io::Read;
    let f = std::fs::File::open(path)
        .map_err(|e| ServerError::Tls(format!("{what} {}: {e}", path.display())))?;
    let mut buf = Vec::new();
    f.take(MAX_PEM + 1)
        .read_to_end(&mut buf)
        .map_err(|e| ServerError::Tls(format!("{what} {}: {e}", path.display())))?;
    if buf.len() as u64 > MAX_PEM {
        return Err(ServerError::Tls(format!(
            "{what} {}: larger than {MAX_PEM} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// A certificate chain and its key, as PEM.
pub struct ServingPair {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    /// Where they came from, for the log.
    pub source: String,
}

/// True when a self-signed certificate can be served at wall time `now`: already valid and
/// not within an hour of its end. A pair made while the clock was wrong (a board without a
/// real-time clock boots in 1970) is not, once the clock is right, and the other way round.
pub fn self_signed_usable(info: &x509::CertInfo, now: SystemTime) -> bool {
    info.not_before <= now && now + Duration::from_secs(3600) < info.not_after
}

/// The serving pair: the given files, else `kubelet.crt`/`kubelet.key` in `cert_dir`,
/// generated (self-signed, for the node's names and addresses) when absent, unreadable or not
/// usable at wall time `now` ([`self_signed_usable`]).
pub fn serving_pair(
    files: Option<(&Path, &Path)>,
    cert_dir: &Path,
    node_name: &str,
    dns: &[String],
    ips: &[std::net::IpAddr],
    now: SystemTime,
) -> Result<ServingPair, ServerError> {
    if let Some((cert, key)) = files {
        return Ok(ServingPair {
            cert_pem: read_pem(cert, "tlsCertFile")?,
            key_pem: read_pem(key, "tlsPrivateKeyFile")?,
            source: cert.display().to_string(),
        });
    }
    let crt = cert_dir.join("kubelet.crt");
    let key = cert_dir.join("kubelet.key");
    if let (Ok(c), Ok(k)) = (read_pem(&crt, "cert"), read_pem(&key, "key")) {
        let valid = x509::first_certificate(&c).is_ok_and(|i| self_signed_usable(&i, now));
        if valid {
            return Ok(ServingPair {
                cert_pem: c,
                key_pem: k,
                source: crt.display().to_string(),
            });
        }
    }
    let pair = self_signed(node_name, dns, ips, now)?;
    write_private(cert_dir, &key, &pair.key_pem)?;
    write_private(cert_dir, &crt, &pair.cert_pem)?;
    Ok(ServingPair {
        source: format!("{} (self-signed)", crt.display()),
        ..pair
    })
}

/// A self-signed pair for the node, CN `NAME@UNIXTIME` as the kubelet names it.
pub fn self_signed(
    node_name: &str,
    dns: &[String],
    ips: &[std::net::IpAddr],
    now: SystemTime,
) -> Result<ServingPair, ServerError> {
    let key = GeneratedKey::generate().map_err(|e| ServerError::Tls(e.to_string()))?;
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut names: Vec<&str> = vec![node_name];
    names.extend(dns.iter().map(String::as_str).filter(|d| *d != node_name));
    let der = key
        .self_signed_server_certificate(
            &format!("{node_name}@{secs}"),
            &names,
            ips,
            now.checked_sub(Duration::from_secs(3600)).unwrap_or(now),
            now + SELF_SIGNED_LIFE,
        )
        .map_err(|e| ServerError::Tls(e.to_string()))?;
    Ok(ServingPair {
        cert_pem: x509::pem_encode("CERTIFICATE", &der).into_bytes(),
        key_pem: key.private_pem().into_bytes(),
        source: "self-signed".into(),
    })
}

/// Writes a file 0600 through a temp file and rename (a crash leaves the old one or none).
fn write_private(dir: &Path, path: &PathBuf, data: &[u8]) -> Result<(), ServerError> {
    let err = |e: std::io::Error| ServerError::Tls(format!("write {}: {e}", path.display()));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Accepts any client certificate during the handshake (signatures still verified); the
/// chain is checked afterwards with [`ClientAuth::check`].
#[derive(Debug)]
struct DeferredClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Verifies client certificate chains against the client CA (none configured: every offered
/// certificate is rejected, none is requested).
#[derive(Debug, Clone)]
pub struct ClientAuth {
    verifier: Option<Arc<dyn ClientCertVerifier>>,
}

impl ClientAuth {
    /// What the TLS layer knows about the peer's certificate chain.
    pub fn check(&self, chain: Option<&[CertificateDer<'static>]>) -> PeerCert {
        let Some((leaf, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return PeerCert::None;
        };
        let Some(v) = &self.verifier else {
            return PeerCert::Rejected("no client CA is configured".into());
        };
        if let Err(e) = v.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            return PeerCert::Rejected(e.to_string());
        }
        match x509::parse_certificate(leaf.as_ref()) {
            Ok(info) => PeerCert::Verified(info),
            Err(e) => PeerCert::Rejected(e.to_string()),
        }
    }
}

/// The rustls configuration in use, replaced whole when the serving certificate changes:
/// a connection keeps the configuration it began with, new ones take the new one. Empty
/// while there is no certificate to serve (then connections are closed at once).
#[derive(Debug, Default)]
pub struct TlsSlot(RwLock<Option<Arc<rustls::ServerConfig>>>);

impl TlsSlot {
    /// A slot holding `cfg`.
    pub fn with(cfg: Arc<rustls::ServerConfig>) -> TlsSlot {
        TlsSlot(RwLock::new(Some(cfg)))
    }

    /// The configuration for a new connection.
    pub fn get(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces (or, with None, withdraws) the configuration for later connections.
    pub fn set(&self, cfg: Option<Arc<rustls::ServerConfig>>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = cfg;
    }
}

/// The client side of TLS, fixed for the server's life: the verifier the handshake uses and
/// the chain check after it. Serving configurations are made from it per certificate.
#[derive(Debug, Clone)]
pub struct ClientTls {
    verifier: Arc<dyn ClientCertVerifier>,
    /// The chain check after the handshake.
    pub auth: ClientAuth,
}

/// The rustls configuration and the client certificate check that goes with it.
pub fn server_config(
    pair: &ServingPair,
    client_ca: Option<&Path>,
) -> Result<(Arc<rustls::ServerConfig>, ClientAuth), ServerError> {
    let client = client_tls(client_ca)?;
    Ok((config_with(pair, &client)?, client.auth))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A serving configuration for `pair` with the client side of `client`.
pub fn config_with(
    pair: &ServingPair,
    client: &ClientTls,
) -> Result<Arc<rustls::ServerConfig>, ServerError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| ServerError::Tls(format!("{what}: {e}"));
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pair.cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| tls(&format!("serving certificate {}", pair.source), &e))?;
    if chain.is_empty() {
        return Err(ServerError::Tls(format!(
            "serving certificate {}: no CERTIFICATE block",
            pair.source
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&pair.key_pem)
        .map_err(|e| tls(&format!("serving key for {}", pair.source), &e))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| tls("TLS versions", &e))?
        .with_client_cert_verifier(client.verifier.clone())
        .with_single_cert(chain, key)
        .map_err(|e| tls(&format!("serving pair {}", pair.source), &e))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// The client certificate verifier for `client_ca` (none: no certificate is requested).
pub fn client_tls(client_ca: Option<&Path>) -> Result<ClientTls, ServerError> {
    let tls = |what: &str, e: &dyn std::fmt::Display| ServerError::Tls(format!("{what}: {e}"));
    let provider = provider();
    let (verifier, auth) = match client_ca {
        Some(path) => {
            let pem = read_pem(path, "clientCAFile")?;
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(&pem) {
                let c = c.map_err(|e| tls(&format!("clientCAFile {}", path.display()), &e))?;
                roots
                    .add(c)
                    .map_err(|e| tls(&format!("clientCAFile {}", path.display()), &e))?;
            }
            if roots.is_empty() {
                return Err(ServerError::Tls(format!(
                    "clientCAFile {}: no CA certificate",
                    path.display()
                )));
            }
            let inner =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| tls("client CA verifier", &e))?;
            let deferred: Arc<dyn ClientCertVerifier> = Arc::new(DeferredClientCert {
                inner: inner.clone(),
            });
            (
                deferred,
                ClientAuth {
                    verifier: Some(inner),
                },
            )
        }
        None => (
            WebPkiClientVerifier::no_client_auth(),
            ClientAuth { verifier: None },
        ),
    };
    Ok(ClientTls { verifier, auth })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_makes_a_server_config() {
        let pair = self_signed(
            "pi4",
            &["pi4.local".into()],
            &["127.0.0.1".parse().unwrap()],
            SystemTime::now(),
        )
        .unwrap();
        let (_cfg, auth) = server_config(&pair, None).unwrap();
        assert_eq!(auth.check(None), PeerCert::None);
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pair.cert_pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(matches!(auth.check(Some(&chain)), PeerCert::Rejected(_)));
    }

    #[test]
    fn the_pair_is_kept_0600_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tinylet-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = SystemTime::now();
        let first = serving_pair(None, &dir, "pi4", &[], &[], now).unwrap();
        let mode = std::fs::metadata(dir.join("kubelet.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = serving_pair(None, &dir, "pi4", &[], &[], now).unwrap();
        assert_eq!(first.cert_pem, again.cert_pem);
        // Made while the clock said 1970, then the clock jumped: not valid now, so remade
        // (the kubelet would serve the stale pair; a Pi without RTC makes this common).
        let boot = SystemTime::UNIX_EPOCH + Duration::from_secs(30);
        let stale = serving_pair(None, &dir, "pi4", &[], &[], boot).unwrap();
        assert_ne!(stale.cert_pem, first.cert_pem);
        let info = x509::first_certificate(&stale.cert_pem).unwrap();
        assert!(!self_signed_usable(&info, now));
        let fresh = serving_pair(None, &dir, "pi4", &[], &[], now).unwrap();
        assert_ne!(fresh.cert_pem, stale.cert_pem);
        assert!(self_signed_usable(
            &x509::first_certificate(&fresh.cert_pem).unwrap(),
            now
        ));
        // And the other way: a pair from the future (clock set back) is not valid yet.
        assert!(!self_signed_usable(
            &x509::first_certificate(&fresh.cert_pem).unwrap(),
            boot
        ));
        let first = fresh;
        // A CA file the client CA cannot verify against: the peer is rejected, not trusted.
        std::fs::write(dir.join("ca.crt"), &first.cert_pem).unwrap();
        let (_cfg, auth) = server_config(&first, Some(&dir.join("ca.crt"))).unwrap();
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&first.cert_pem)
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(matches!(auth.check(Some(&chain)), PeerCert::Rejected(_)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
