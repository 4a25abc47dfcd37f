//! Test PKI: a CA, the server certificate, client certificates and CSR signing, all made with
//! the `openssl` CLI in a temporary directory owned by one server; plus the small DER, PEM and
//! base64 readers the server needs to learn who a client certificate or a CSR names.
//!
//! It must not decide who may do what (that is `authz`); it only says what a certificate says.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Failure while making or using test certificates.
#[derive(Debug)]
pub enum PkiError {
    /// A file in the PKI directory could not be written or read.
    Io { op: String, source: io::Error },
    /// The `openssl` CLI failed; stderr says why.
    Openssl { op: String, stderr: String },
    /// A PEM or DER blob could not be understood.
    Malformed(String),
    /// rustls refused the material.
    Tls(String),
}

impl fmt::Display for PkiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PkiError::Io { op, source } => write!(f, "test PKI: {op}: {source}"),
            PkiError::Openssl { op, stderr } => {
                write!(f, "test PKI: openssl {op} failed: {stderr}")
            }
            PkiError::Malformed(what) => write!(f, "test PKI: malformed {what}"),
            PkiError::Tls(what) => write!(f, "test PKI: rustls: {what}"),
        }
    }
}

impl std::error::Error for PkiError {}

/// Client credentials signed by the test CA.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    /// PEM certificate.
    pub cert_pem: String,
    /// PEM private key (PKCS#8).
    pub key_pem: String,
    /// The certificate as a file, for tools that want paths (kubeconfig).
    pub cert_path: PathBuf,
    /// The key as a file.
    pub key_path: PathBuf,
}

/// Subject fields that Kubernetes reads from a certificate or CSR.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subject {
    /// CN: the user name.
    pub common_name: Option<String>,
    /// O values: the groups.
    pub organizations: Vec<String>,
}

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = tinylet-test
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
";

/// A CA and server certificate in a directory that is removed when the `Pki` is dropped.
pub struct Pki {
    dir: PathBuf,
    cnf: PathBuf,
    ca_cert: PathBuf,
    ca_key: PathBuf,
    serial: AtomicU64,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        self.remove_files();
    }
}

fn io_err(op: impl Into<String>) -> impl FnOnce(io::Error) -> PkiError {
    let op = op.into();
    move |source| PkiError::Io { op, source }
}

fn run_openssl(op: &str, args: &[&str]) -> Result<(), PkiError> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(io_err(format!("run openssl {op}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(PkiError::Openssl {
            op: op.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn subj(cn: &str, orgs: &[&str]) -> String {
    // openssl's -subj uses '/' as separator; escape it inside values.
    let esc = |s: &str| s.replace('\\', "\\\\").replace('/', "\\/");
    let mut s = format!("/CN={}", esc(cn));
    for o in orgs {
        s.push_str("/O=");
        s.push_str(&esc(o));
    }
    s
}

fn path_str(p: &Path) -> Result<&str, PkiError> {
    p.to_str()
        .ok_or_else(|| PkiError::Malformed(format!("non-UTF-8 path {}", p.display())))
}

impl Pki {
    /// Makes a fresh CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) in `dir`.
    pub fn generate(dir: &Path) -> Result<Pki, PkiError> {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).map_err(io_err("write openssl.cnf"))?;
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        run_openssl(
            "CA",
            &[
                "req",
                "-x509",
                "-config",
                path_str(&cnf)?,
                "-extensions",
                "v3_ca",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                path_str(&ca_key)?,
                "-out",
                path_str(&ca_cert)?,
                "-days",
                "2",
                "-subj",
                "/CN=tinylet-test-ca",
            ],
        )?;
        let ca_pem = std::fs::read_to_string(&ca_cert).map_err(io_err("read ca.crt"))?;
        let mut pki = Pki {
            dir: dir.to_path_buf(),
            cnf,
            ca_cert,
            ca_key,
            serial: AtomicU64::new(1000),
            ca_pem,
            server_cert_pem: String::new(),
            server_key_pem: String::new(),
        };
        let (cert, key, _, _) = pki.issue("server", "/CN=kube-apiserver", "server")?;
        pki.server_cert_pem = cert;
        pki.server_key_pem = key;
        Ok(pki)
    }

    fn issue(
        &self,
        stem: &str,
        subject: &str,
        profile: &str,
    ) -> Result<(String, String, PathBuf, PathBuf), PkiError> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let key = self.dir.join(format!("{stem}-{n}.key"));
        let csr = self.dir.join(format!("{stem}-{n}.csr"));
        let crt = self.dir.join(format!("{stem}-{n}.crt"));
        run_openssl(
            "req",
            &[
                "req",
                "-new",
                "-config",
                path_str(&self.cnf)?,
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                path_str(&key)?,
                "-out",
                path_str(&csr)?,
                "-subj",
                subject,
            ],
        )?;
        self.sign_file(&csr, &crt, profile, n)?;
        let cert_pem = std::fs::read_to_string(&crt).map_err(io_err("read issued cert"))?;
        let key_pem = std::fs::read_to_string(&key).map_err(io_err("read issued key"))?;
        Ok((cert_pem, key_pem, crt, key))
    }

    fn sign_file(
        &self,
        csr: &Path,
        crt: &Path,
        profile: &str,
        serial: u64,
    ) -> Result<(), PkiError> {
        let serial = serial.to_string();
        run_openssl(
            "x509 -req",
            &[
                "x509",
                "-req",
                "-in",
                path_str(csr)?,
                "-CA",
                path_str(&self.ca_cert)?,
                "-CAkey",
                path_str(&self.ca_key)?,
                "-set_serial",
                &serial,
                "-days",
                "1",
                "-extfile",
                path_str(&self.cnf)?,
                "-extensions",
                profile,
                "-out",
                path_str(crt)?,
            ],
        )
    }

    /// Removes the directory (also done on drop); later signing fails cleanly.
    pub fn remove_files(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Mints a client certificate with CN=`cn` and one O per entry of `orgs`.
    pub fn client_cert(&self, cn: &str, orgs: &[&str]) -> Result<ClientCredentials, PkiError> {
        let (cert_pem, key_pem, cert_path, key_path) =
            self.issue("client", &subj(cn, orgs), "client")?;
        Ok(ClientCredentials {
            cert_pem,
            key_pem,
            cert_path,
            key_path,
        })
    }

    /// Signs a PEM CSR as a client certificate, the way the kubelet-client signer would.
    pub fn sign_csr(&self, csr_pem: &[u8]) -> Result<String, PkiError> {
        let n = self.serial.fetch_add(1, Ordering::Relaxed);
        let csr = self.dir.join(format!("approved-{n}.csr"));
        let crt = self.dir.join(format!("approved-{n}.crt"));
        std::fs::write(&csr, csr_pem).map_err(io_err("write CSR"))?;
        self.sign_file(&csr, &crt, "client", n)?;
        std::fs::read_to_string(&crt).map_err(io_err("read signed CSR"))
    }

    /// The rustls server configuration: our server certificate, client certificates optional
    /// (bearer tokens are the other way in) but verified against the CA when offered.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            let c = c.map_err(|e| PkiError::Malformed(format!("CA PEM: {e}")))?;
            roots.add(c).map_err(|e| PkiError::Tls(e.to_string()))?;
        }
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| PkiError::Tls(e.to_string()))?;
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| PkiError::Malformed(format!("server cert PEM: {e}")))?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())
            .map_err(|e| PkiError::Malformed(format!("server key PEM: {e}")))?;
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        // HTTP/1.1 only here; the server adds h2 in front of it when `Config.http2` is on.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

// ---- DER: just enough to walk to a Name and read CN and O ----

/// Splits one DER TLV off the front: (tag, contents, rest). None on any malformation.
fn tlv(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let (lb, rest) = rest.split_at(n);
        (lb.iter().fold(0usize, |a, &b| (a << 8) | b as usize), rest)
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];

fn parse_name(mut name: &[u8]) -> Option<Subject> {
    let mut s = Subject::default();
    while !name.is_empty() {
        let (tag, set, rest) = tlv(name)?;
        name = rest;
        if tag != 0x31 {
            return None;
        }
        let mut set = set;
        while !set.is_empty() {
            let (tag, atv, rest) = tlv(set)?;
            set = rest;
            if tag != 0x30 {
                return None;
            }
            let (otag, oid, rest) = tlv(atv)?;
            let (_vtag, val, _) = tlv(rest)?;
            if otag != 0x06 {
                return None;
            }
            let val = String::from_utf8_lossy(val).into_owned();
            if oid == OID_CN {
                s.common_name = Some(val);
            } else if oid == OID_O {
                s.organizations.push(val);
            }
        }
    }
    Some(s)
}

/// Subject of a DER X.509 certificate.
pub fn cert_subject(der: &[u8]) -> Option<Subject> {
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag != 0xa0 {
        // no explicit version: that first element was the serial
    } else {
        rest = tlv(rest)?.2; // serial
    }
    let rest = tlv(rest)?.2; // signature algorithm
    let rest = tlv(rest)?.2; // issuer
    let rest = tlv(rest)?.2; // validity
    let (tag, subject, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    parse_name(subject)
}

/// Subject of a DER PKCS#10 certificate request.
pub fn csr_subject(der: &[u8]) -> Option<Subject> {
    let (_, req, _) = tlv(der)?;
    let (_, info, _) = tlv(req)?;
    let (_, _, rest) = tlv(info)?; // version
    let (tag, subject, _) = tlv(rest)?;
    if tag != 0x30 {
        return None;
    }
    parse_name(subject)
}

/// The DER body of the first PEM block labelled `label` in `text`.
pub fn pem_block(text: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text.get(start..)?.find(&end)?;
    base64_decode(text.get(start..stop)?)
}

// ---- base64 (standard alphabet for JSON []byte, URL-safe for JWT segments) ----

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn encode_with(data: &[u8], alpha: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alpha[((n >> (18 - 6 * i)) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 with padding (how JSON carries Go `[]byte`).
pub fn base64_encode(data: &[u8]) -> String {
    encode_with(data, B64, true)
}

/// URL-safe base64 without padding (JWT segments).
pub fn base64url_encode(data: &[u8]) -> String {
    encode_with(data, B64URL, false)
}

/// Decodes standard or URL-safe base64, ignoring whitespace and padding; None on bad input.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' | b'\r' | b'\n' | b' ' | b'\t' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for n in 0..20 {
            let data: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
            assert_eq!(base64_decode(&base64url_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foob"), "Zm9vYg==");
    }

    #[test]
    fn der_never_panics_on_garbage() {
        let mut x = 0x1234_5678u32;
        for len in 0..200 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = cert_subject(&buf);
            let _ = csr_subject(&buf);
        }
    }
}
