//! The few X.509 pieces TLS bootstrap needs, written by hand: a bounded DER reader that finds
//! a certificate's validity and subject, a PKCS#10 request builder (ECDSA P-256, SHA-256) and
//! PEM framing.
//!
//! Owns byte formats only. It never decides whether to rotate or where files go (that is
//! `bootstrap`), and it never panics on any input: every length is checked before it is used.

use std::time::SystemTime;

use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::k8s::configmap::{base64_decode, base64_encode};
use crate::k8s::coordination::parse_time;

/// Deepest nesting the reader follows (certificates need 4).
const MAX_DEPTH: usize = 8;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OID: u8 = 0x06;
const TAG_UTF8: u8 = 0x0c;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_CONTEXT_0: u8 = 0xa0;

const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
/// 1.2.840.10045.2.1 id-ecPublicKey
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 prime256v1
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.2.840.10045.4.3.2 ecdsa-with-SHA256
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];

/// Why DER or PEM could not be read, or a request not built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X509Error {
    /// The bytes are not the DER structure expected; the text says where.
    Malformed(&'static str),
    /// No PEM block with this label.
    NoPem(&'static str),
    /// Key generation or signing failed.
    Crypto(&'static str),
}

impl std::fmt::Display for X509Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            X509Error::Malformed(w) => write!(f, "malformed DER: {w}"),
            X509Error::NoPem(label) => write!(f, "no PEM block \"{label}\" found"),
            X509Error::Crypto(w) => write!(f, "crypto: {w}"),
        }
    }
}

impl std::error::Error for X509Error {}

/// One DER element: its tag and contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    /// The identifier octet (only single-octet tags are accepted).
    pub tag: u8,
    /// The contents octets.
    pub content: &'a [u8],
}

/// Splits one DER element off the front of `buf`: the element and what follows it.
///
/// Refuses indefinite lengths, multi-octet tags, lengths over 4 octets and anything longer
/// than the buffer.
pub fn read_tlv(buf: &[u8]) -> Result<(Tlv<'_>, &[u8]), X509Error> {
    let (&tag, rest) = buf.split_first().ok_or(X509Error::Malformed("empty"))?;
    if tag & 0x1f == 0x1f {
        return Err(X509Error::Malformed("multi-octet tag"));
    }
    let (&l0, rest) = rest
        .split_first()
        .ok_or(X509Error::Malformed("no length"))?;
    let (len, rest) = if l0 < 0x80 {
        (usize::from(l0), rest)
    } else {
        let n = usize::from(l0 & 0x7f);
        if n == 0 || n > 4 {
            return Err(X509Error::Malformed("unsupported length form"));
        }
        let lb = rest.get(..n).ok_or(X509Error::Malformed("short length"))?;
        let len = lb.iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, rest.get(n..).unwrap_or_default())
    };
    let content = rest
        .get(..len)
        .ok_or(X509Error::Malformed("length beyond the end"))?;
    let after = rest.get(len..).unwrap_or_default();
    Ok((Tlv { tag, content }, after))
}

/// Reads one element that must have tag `tag`.
fn expect<'a>(
    buf: &'a [u8],
    tag: u8,
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), X509Error> {
    let (t, rest) = read_tlv(buf)?;
    if t.tag != tag {
        return Err(X509Error::Malformed(what));
    }
    Ok((t.content, rest))
}

/// What tinylet reads from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// Subject CN, if any.
    pub common_name: Option<String>,
    /// Subject O values.
    pub organizations: Vec<String>,
    /// DNS names of the subjectAltName extension (empty without one, or when the extensions
    /// cannot be read: validity and subject still count).
    pub dns_names: Vec<String>,
    /// IP addresses of the subjectAltName extension.
    pub ip_addresses: Vec<std::net::IpAddr>,
}

/// Reads validity, subject and subject alternative names from a DER X.509 certificate.
pub fn parse_certificate(der: &[u8]) -> Result<CertInfo, X509Error> {
    let (cert, _) = expect(der, TAG_SEQUENCE, "certificate is not a SEQUENCE")?;
    let (tbs, _) = expect(cert, TAG_SEQUENCE, "tbsCertificate is not a SEQUENCE")?;
    let (first, mut rest) = read_tlv(tbs)?;
    if first.tag == TAG_CONTEXT_0 {
        // Explicit version; the serial follows.
        let (serial, r) = read_tlv(rest)?;
        if serial.tag != TAG_INTEGER {
            return Err(X509Error::Malformed("serial is not an INTEGER"));
        }
        rest = r;
    } else if first.tag != TAG_INTEGER {
        return Err(X509Error::Malformed("serial is not an INTEGER"));
    }
    let (_sig_alg, rest) = expect(rest, TAG_SEQUENCE, "signature algorithm")?;
    let (_issuer, rest) = expect(rest, TAG_SEQUENCE, "issuer")?;
    let (validity, rest) = expect(rest, TAG_SEQUENCE, "validity")?;
    let (subject, rest) = expect(rest, TAG_SEQUENCE, "subject")?;
    let (nb, after) = read_tlv(validity)?;
    let (na, _) = read_tlv(after)?;
    let (common_name, organizations) = parse_name(subject, 0)?;
    let (dns_names, ip_addresses) = certificate_names(rest).unwrap_or_default();
    Ok(CertInfo {
        not_before: parse_der_time(nb)?,
        not_after: parse_der_time(na)?,
        common_name,
        organizations,
        dns_names,
        ip_addresses,
    })
}

/// The subjectAltName DNS names and IPs from what follows the subject in a tbsCertificate
/// (subjectPublicKeyInfo, the optional unique IDs, `[3]` extensions).
fn certificate_names(rest: &[u8]) -> Result<(Vec<String>, Vec<std::net::IpAddr>), X509Error> {
    let (_spki, mut rest) = expect(rest, TAG_SEQUENCE, "subjectPublicKeyInfo")?;
    while !rest.is_empty() {
        let (t, next) = read_tlv(rest)?;
        rest = next;
        if t.tag != 0xa3 {
            continue;
        }
        let (exts, _) = expect(t.content, TAG_SEQUENCE, "extensions")?;
        return san_of_extensions(exts);
    }
    Ok((Vec::new(), Vec::new()))
}

/// The subjectAltName of a list of Extension SEQUENCEs (the first SAN extension counts).
fn san_of_extensions(mut exts: &[u8]) -> Result<(Vec<String>, Vec<std::net::IpAddr>), X509Error> {
    while !exts.is_empty() {
        let (ext, next) = expect(exts, TAG_SEQUENCE, "extension")?;
        exts = next;
        let (oid, mut rest) = expect(ext, TAG_OID, "extension id")?;
        if oid != OID_SAN {
            continue;
        }
        if let Ok((_, after)) = expect(rest, 0x01, "critical") {
            rest = after;
        }
        let (value, _) = expect(rest, 0x04, "extension value")?;
        let (mut names, _) = expect(value, TAG_SEQUENCE, "GeneralNames")?;
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        while !names.is_empty() {
            let (t, next) = read_tlv(names)?;
            names = next;
            match (t.tag, t.content.len()) {
                (0x82, _) => dns.push(String::from_utf8_lossy(t.content).into_owned()),
                (0x87, 4) => {
                    let mut a = [0u8; 4];
                    a.copy_from_slice(t.content);
                    ips.push(std::net::IpAddr::from(a));
                }
                (0x87, 16) => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(t.content);
                    ips.push(std::net::IpAddr::from(a));
                }
                _ => {}
            }
        }
        return Ok((dns, ips));
    }
    Ok((Vec::new(), Vec::new()))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn parse_der_time(t: Tlv<'_>) -> Result<SystemTime, X509Error> {
    let bad = X509Error::Malformed("certificate time");
    let s = std::str::from_utf8(t.content).map_err(|_| bad.clone())?;
    let digits = |r: std::ops::Range<usize>| -> Result<&str, X509Error> {
        let p = s.get(r).ok_or(bad.clone())?;
        if p.bytes().all(|b| b.is_ascii_digit()) {
            Ok(p)
        } else {
            Err(bad.clone())
        }
    };
    let (year, body) = match (t.tag, s.len()) {
        (TAG_UTC_TIME, 13) => {
            let yy: u32 = digits(0..2)?.parse().map_err(|_| bad.clone())?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, 2)
        }
        (TAG_GENERALIZED_TIME, 15) => (digits(0..4)?.parse().map_err(|_| bad.clone())?, 4),
        _ => return Err(bad),
    };
    if !s.ends_with('Z') {
        return Err(bad);
    }
    let f = |i: usize| digits(body + i..body + i + 2);
    let text = format!(
        "{year:04}-{}-{}T{}:{}:{}Z",
        f(0)?,
        f(2)?,
        f(4)?,
        f(6)?,
        f(8)?
    );
    parse_time(&text).ok_or(bad)
}

/// CN and O values of a Name (the contents of its SEQUENCE).
fn parse_name(mut name: &[u8], depth: usize) -> Result<(Option<String>, Vec<String>), X509Error> {
    if depth > MAX_DEPTH {
        return Err(X509Error::Malformed("nesting too deep"));
    }
    let mut cn = None;
    let mut orgs = Vec::new();
    while !name.is_empty() {
        let (mut set, rest) = expect(name, TAG_SET, "RDN is not a SET")?;
        name = rest;
        while !set.is_empty() {
            let (atv, rest) = expect(set, TAG_SEQUENCE, "attribute is not a SEQUENCE")?;
            set = rest;
            let (oid, rest) = expect(atv, TAG_OID, "attribute type is not an OID")?;
            let (value, _) = read_tlv(rest)?;
            let text = String::from_utf8_lossy(value.content).into_owned();
            if oid == OID_CN {
                cn = Some(text);
            } else if oid == OID_O {
                orgs.push(text);
            }
        }
    }
    Ok((cn, orgs))
}

/// Appends a DER element with `tag` and `content` to `out`.
fn emit(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = (len as u64).to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let tail = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | tail.len() as u8);
        out.extend_from_slice(tail);
    }
    out.extend_from_slice(content);
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(content.len() + 4);
    emit(&mut v, tag, content);
    v
}

fn name_der(cn: &str, orgs: &[&str]) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        let mut atv = der(TAG_OID, oid);
        emit(&mut atv, TAG_UTF8, value.as_bytes());
        der(TAG_SET, &der(TAG_SEQUENCE, &atv))
    };
    let mut rdns = Vec::new();
    for o in orgs {
        rdns.extend(rdn(OID_O, o));
    }
    rdns.extend(rdn(OID_CN, cn));
    der(TAG_SEQUENCE, &rdns)
}

/// A fresh ECDSA P-256 key: PKCS#8 DER and the uncompressed public point.
pub struct GeneratedKey {
    /// PKCS#8 (RFC 5208) private key, DER.
    pub pkcs8: Vec<u8>,
    key: EcdsaKeyPair,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GeneratedKey(<private>)")
    }
}

impl GeneratedKey {
    /// Generates a key from the system's random source.
    pub fn generate() -> Result<GeneratedKey, X509Error> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| X509Error::Crypto("generating a P-256 key"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, doc.as_ref(), &rng)
            .map_err(|_| X509Error::Crypto("loading the generated key"))?;
        Ok(GeneratedKey {
            pkcs8: doc.as_ref().to_vec(),
            key,
        })
    }

    /// The public key as an uncompressed point (65 bytes).
    pub fn public_point(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The private key as PEM ("PRIVATE KEY").
    pub fn private_pem(&self) -> String {
        pem_encode("PRIVATE KEY", &self.pkcs8)
    }

    /// A DER PKCS#10 request for subject CN=`cn`, O=`orgs`, signed with this key.
    pub fn certificate_request(&self, cn: &str, orgs: &[&str]) -> Result<Vec<u8>, X509Error> {
        self.certificate_request_with_names(cn, orgs, &[], &[])
    }

    /// [`certificate_request`](Self::certificate_request) that also asks for DNS and IP
    /// subject alternative names (a serving certificate), through the PKCS#9
    /// extensionRequest attribute (RFC 2985 5.4.2).
    pub fn certificate_request_with_names(
        &self,
        cn: &str,
        orgs: &[&str],
        dns: &[&str],
        ips: &[std::net::IpAddr],
    ) -> Result<Vec<u8>, X509Error> {
        let mut info = Vec::new();
        emit(&mut info, TAG_INTEGER, &[0]);
        info.extend(name_der(cn, orgs));
        info.extend(self.public_key_info());
        // Attributes: [0] IMPLICIT SET OF Attribute, empty without names.
        let mut attrs = Vec::new();
        if !dns.is_empty() || !ips.is_empty() {
            let exts = extension(OID_SAN, false, general_names(dns, ips));
            let mut attr = der(TAG_OID, OID_EXTENSION_REQUEST);
            emit(&mut attr, TAG_SET, &der(TAG_SEQUENCE, &exts));
            emit(&mut attrs, TAG_SEQUENCE, &attr);
        }
        emit(&mut info, TAG_CONTEXT_0, &attrs);
        let info = der(TAG_SEQUENCE, &info);

        self.signed(info, "signing the certificate request")
    }

    /// The SubjectPublicKeyInfo SEQUENCE of this P-256 key.
    fn public_key_info(&self) -> Vec<u8> {
        let mut alg = der(TAG_OID, OID_EC_PUBLIC_KEY);
        emit(&mut alg, TAG_OID, OID_P256);
        let mut spki = der(TAG_SEQUENCE, &alg);
        let mut bits = vec![0u8];
        bits.extend_from_slice(self.public_point());
        emit(&mut spki, TAG_BIT_STRING, &bits);
        der(TAG_SEQUENCE, &spki)
    }

    /// `SEQUENCE { body, ecdsa-with-SHA256, BIT STRING signature }` over a DER `body` (a
    /// CertificationRequestInfo or TBSCertificate).
    fn signed(&self, body: Vec<u8>, what: &'static str) -> Result<Vec<u8>, X509Error> {
        let sig = self
            .key
            .sign(&SystemRandom::new(), &body)
            .map_err(|_| X509Error::Crypto(what))?;
        let mut sig_bits = vec![0u8];
        sig_bits.extend_from_slice(sig.as_ref());
        let mut out = body;
        emit(&mut out, TAG_SEQUENCE, &der(TAG_OID, OID_ECDSA_SHA256));
        emit(&mut out, TAG_BIT_STRING, &sig_bits);
        Ok(der(TAG_SEQUENCE, &out))
    }
}

/// 1.2.840.113549.1.9.14 PKCS#9 extensionRequest
const OID_EXTENSION_REQUEST: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e];
/// 2.5.29.17 subjectAltName
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// 2.5.29.15 keyUsage
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
/// 2.5.29.37 extKeyUsage
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
/// 1.3.6.1.5.5.7.3.1 id-kp-serverAuth
const OID_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// DER time: UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5).
fn time_der(t: SystemTime) -> Vec<u8> {
    let text: String = crate::k8s::coordination::format_time(t)
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'Z')
        .collect();
    let year: u32 = text.get(..4).and_then(|y| y.parse().ok()).unwrap_or(0);
    if (1950..2050).contains(&year) {
        der(TAG_UTC_TIME, text.get(2..).unwrap_or_default().as_bytes())
    } else {
        der(TAG_GENERALIZED_TIME, text.as_bytes())
    }
}

impl GeneratedKey {
    /// A self-signed serving certificate (DER) for `cn` with the given DNS and IP SANs, valid
    /// between the two times: what the kubelet makes when it is given no serving certificate.
    pub fn self_signed_server_certificate(
        &self,
        cn: &str,
        dns: &[&str],
        ips: &[std::net::IpAddr],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<Vec<u8>, X509Error> {
        let mut serial = [0u8; 16];
        ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut serial)
            .map_err(|_| X509Error::Crypto("drawing a serial number"))?;
        serial[0] &= 0x7f;
        serial[0] |= 0x40;
        let mut tbs = der(TAG_CONTEXT_0, &der(TAG_INTEGER, &[2]));
        emit(&mut tbs, TAG_INTEGER, &serial);
        emit(&mut tbs, TAG_SEQUENCE, &der(TAG_OID, OID_ECDSA_SHA256));
        let name = name_der(cn, &[]);
        tbs.extend_from_slice(&name);
        let mut validity = time_der(not_before);
        validity.extend(time_der(not_after));
        emit(&mut tbs, TAG_SEQUENCE, &validity);
        tbs.extend_from_slice(&name);
        tbs.extend(self.public_key_info());

        let ext = extension;
        let mut exts = ext(OID_SAN, false, general_names(dns, ips));
        // digitalSignature only (bit 0): an ECDSA key signs, it does not encipher.
        exts.extend(ext(OID_KEY_USAGE, true, der(TAG_BIT_STRING, &[7, 0x80])));
        exts.extend(ext(
            OID_EXT_KEY_USAGE,
            false,
            der(TAG_SEQUENCE, &der(TAG_OID, OID_SERVER_AUTH)),
        ));
        emit(&mut tbs, 0xa3, &der(TAG_SEQUENCE, &exts));
        let tbs = der(TAG_SEQUENCE, &tbs);

        self.signed(tbs, "signing the certificate")
    }
}

/// GeneralNames (RFC 5280 4.2.1.6) with dNSName and iPAddress entries, DER.
fn general_names(dns: &[&str], ips: &[std::net::IpAddr]) -> Vec<u8> {
    let mut names = Vec::new();
    for d in dns {
        emit(&mut names, 0x82, d.as_bytes());
    }
    for ip in ips {
        match ip {
            std::net::IpAddr::V4(a) => emit(&mut names, 0x87, &a.octets()),
            std::net::IpAddr::V6(a) => emit(&mut names, 0x87, &a.octets()),
        }
    }
    der(TAG_SEQUENCE, &names)
}

/// One Extension SEQUENCE: id, criticality when set, OCTET STRING value.
fn extension(oid: &[u8], critical: bool, value: Vec<u8>) -> Vec<u8> {
    let mut e = der(TAG_OID, oid);
    if critical {
        emit(&mut e, 0x01, &[0xff]);
    }
    emit(&mut e, 0x04, &value);
    der(TAG_SEQUENCE, &e)
}

/// DNS and IP subject alternative names a DER PKCS#10 request asks for (extensionRequest).
pub fn parse_request_names(der: &[u8]) -> Result<(Vec<String>, Vec<std::net::IpAddr>), X509Error> {
    let (req, _) = expect(der, TAG_SEQUENCE, "request is not a SEQUENCE")?;
    let (info, _) = expect(req, TAG_SEQUENCE, "requestInfo is not a SEQUENCE")?;
    let (_version, rest) = expect(info, TAG_INTEGER, "version is not an INTEGER")?;
    let (_subject, rest) = expect(rest, TAG_SEQUENCE, "subject")?;
    let (_spki, rest) = expect(rest, TAG_SEQUENCE, "subjectPKInfo")?;
    let (mut attrs, _) = expect(rest, TAG_CONTEXT_0, "attributes")?;
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    while !attrs.is_empty() {
        let (attr, next) = expect(attrs, TAG_SEQUENCE, "attribute")?;
        attrs = next;
        let (oid, values) = expect(attr, TAG_OID, "attribute type")?;
        if oid != OID_EXTENSION_REQUEST {
            continue;
        }
        let (set, _) = expect(values, TAG_SET, "attribute values")?;
        let (exts, _) = expect(set, TAG_SEQUENCE, "extensions")?;
        let (d, i) = san_of_extensions(exts)?;
        dns.extend(d);
        ips.extend(i);
    }
    Ok((dns, ips))
}

/// Subject CN and O values of a DER PKCS#10 request.
pub fn parse_request_subject(der: &[u8]) -> Result<(Option<String>, Vec<String>), X509Error> {
    let (req, _) = expect(der, TAG_SEQUENCE, "request is not a SEQUENCE")?;
    let (info, _) = expect(req, TAG_SEQUENCE, "requestInfo is not a SEQUENCE")?;
    let (_version, rest) = expect(info, TAG_INTEGER, "version is not an INTEGER")?;
    let (subject, _) = expect(rest, TAG_SEQUENCE, "subject")?;
    parse_name(subject, 0)
}

/// PEM text of `der` with the given label, 64 columns per line.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// DER bodies of every PEM block labelled `label` in `text`, in order.
pub fn pem_blocks(text: &[u8], label: &'static str) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(text);
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(i) = rest.find(&begin) {
        let body = rest.get(i + begin.len()..).unwrap_or_default();
        let Some(j) = body.find(&end) else { break };
        let compact: String = body
            .get(..j)
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        if let Some(d) = base64_decode(&compact) {
            out.push(d);
        }
        rest = body.get(j + end.len()..).unwrap_or_default();
    }
    out
}

/// Validity and subject of the first certificate in PEM `text`.
pub fn first_certificate(text: &[u8]) -> Result<CertInfo, X509Error> {
    let der = pem_blocks(text, "CERTIFICATE")
        .into_iter()
        .next()
        .ok_or(X509Error::NoPem("CERTIFICATE"))?;
    parse_certificate(&der)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A certificate skeleton in RFC 5280 field order (version, serial, sigalg, issuer,
    /// validity, subject, spki): CN=system:node:t1, O=system:nodes, valid
    /// 2024-05-01T12:00:00Z (UTCTime) .. 2034-04-29T12:00:00Z (GeneralizedTime).
    fn sample_cert_der() -> Vec<u8> {
        let mut tbs = Vec::new();
        emit(&mut tbs, TAG_CONTEXT_0, &der(TAG_INTEGER, &[2]));
        emit(&mut tbs, TAG_INTEGER, &[0x01, 0x23]);
        emit(&mut tbs, TAG_SEQUENCE, &der(TAG_OID, OID_ECDSA_SHA256));
        tbs.extend(name_der("ca", &[]));
        let mut validity = der(TAG_UTC_TIME, b"240501120000Z");
        emit(&mut validity, TAG_GENERALIZED_TIME, b"20340429120000Z");
        emit(&mut tbs, TAG_SEQUENCE, &validity);
        tbs.extend(name_der("system:node:t1", &["system:nodes"]));
        emit(&mut tbs, TAG_SEQUENCE, &[]);
        let mut cert = der(TAG_SEQUENCE, &tbs);
        emit(&mut cert, TAG_SEQUENCE, &der(TAG_OID, OID_ECDSA_SHA256));
        emit(&mut cert, TAG_BIT_STRING, &[0]);
        der(TAG_SEQUENCE, &cert)
    }

    #[test]
    fn certificate_validity_and_subject() {
        let info = parse_certificate(&sample_cert_der()).unwrap();
        assert_eq!(
            info.not_before,
            UNIX_EPOCH + Duration::from_secs(1_714_564_800)
        );
        assert_eq!(
            info.not_after,
            UNIX_EPOCH + Duration::from_secs(1_714_564_800 + 3650 * 86_400)
        );
        assert_eq!(info.common_name.as_deref(), Some("system:node:t1"));
        assert_eq!(info.organizations, vec!["system:nodes".to_string()]);
        let pem = pem_encode("CERTIFICATE", &sample_cert_der());
        assert_eq!(first_certificate(pem.as_bytes()).unwrap(), info);
    }

    #[test]
    fn request_round_trip() {
        let key = GeneratedKey::generate().unwrap();
        assert_eq!(key.public_point().len(), 65);
        let req = key
            .certificate_request("system:node:pi-1", &["system:nodes"])
            .unwrap();
        let (cn, orgs) = parse_request_subject(&req).unwrap();
        assert_eq!(cn.as_deref(), Some("system:node:pi-1"));
        assert_eq!(orgs, vec!["system:nodes".to_string()]);
        let pem = pem_encode("CERTIFICATE REQUEST", &req);
        assert_eq!(
            pem_blocks(pem.as_bytes(), "CERTIFICATE REQUEST"),
            vec![req.clone()]
        );
        assert!(key
            .private_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(parse_request_names(&req).unwrap(), (vec![], vec![]));
    }

    #[test]
    fn request_with_names_round_trip() {
        let key = GeneratedKey::generate().unwrap();
        let ips: Vec<std::net::IpAddr> =
            vec!["192.0.2.7".parse().unwrap(), "2001:db8::7".parse().unwrap()];
        let req = key
            .certificate_request_with_names("system:node:pi-1", &["system:nodes"], &["pi-1"], &ips)
            .unwrap();
        let (cn, orgs) = parse_request_subject(&req).unwrap();
        assert_eq!(cn.as_deref(), Some("system:node:pi-1"));
        assert_eq!(orgs, vec!["system:nodes".to_string()]);
        assert_eq!(
            parse_request_names(&req).unwrap(),
            (vec!["pi-1".to_string()], ips)
        );
        // The signature covers the requestInfo, with the attribute in it.
        let (outer, _) = expect(&req, TAG_SEQUENCE, "req").unwrap();
        let (info, rest) = read_tlv(outer).unwrap();
        let signed_len = outer.len() - rest.len();
        let (_alg, rest) = expect(rest, TAG_SEQUENCE, "alg").unwrap();
        let (sig, _) = expect(rest, TAG_BIT_STRING, "sig").unwrap();
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            key.public_point(),
        );
        assert_eq!(info.tag, TAG_SEQUENCE);
        public
            .verify(&outer[..signed_len], &sig[1..])
            .expect("the request's signature verifies");
        // Truncations are errors, never panics.
        for n in 0..req.len() {
            let _ = parse_request_names(&req[..n]);
        }
    }

    #[test]
    fn long_lengths_round_trip() {
        for n in [0usize, 1, 127, 128, 255, 256, 65_535, 65_536] {
            let content = vec![7u8; n];
            let enc = der(TAG_SEQUENCE, &content);
            let (t, rest) = read_tlv(&enc).unwrap();
            assert_eq!((t.tag, t.content.len(), rest.len()), (TAG_SEQUENCE, n, 0));
        }
    }

    #[test]
    fn times_outside_the_forms_are_refused() {
        for (tag, s) in [
            (TAG_UTC_TIME, &b"2405011200Z"[..]),
            (TAG_UTC_TIME, b"240501120000+"),
            (TAG_UTC_TIME, b"24051312000aZ"),
            (TAG_GENERALIZED_TIME, b"20241301120000Z"),
            (TAG_INTEGER, b"240501120000Z"),
            (TAG_UTC_TIME, &[0xff; 13]),
        ] {
            assert!(parse_der_time(Tlv { tag, content: s }).is_err(), "{s:?}");
        }
    }

    #[test]
    fn never_panics_on_garbage_or_truncation() {
        let good = sample_cert_der();
        for cut in 0..good.len() {
            let _ = parse_certificate(&good[..cut]);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for len in 0..400 {
            let buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = parse_certificate(&buf);
            let _ = parse_request_subject(&buf);
            let _ = read_tlv(&buf);
            let _ = first_certificate(&buf);
            // Flip bytes of a valid certificate too: structure-aware garbage.
            let mut m = good.clone();
            for _ in 0..4 {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let _ = parse_certificate(&m);
        }
        assert!(read_tlv(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(read_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_err());
        assert!(read_tlv(&[0x30, 0x80]).is_err());
        assert!(read_tlv(&[0x1f, 0x01, 0x00]).is_err());
        assert!(first_certificate(b"-----BEGIN CERTIFICATE-----\n!!\n").is_err());
    }

    #[test]
    fn certificate_names_round_trip_and_truncations_do_not_panic() {
        let key = GeneratedKey::generate().unwrap();
        let nb = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let na = nb + std::time::Duration::from_secs(86_400);
        let ips: Vec<std::net::IpAddr> =
            vec!["192.168.1.20".parse().unwrap(), "fd00::20".parse().unwrap()];
        let der = key
            .self_signed_server_certificate("system:node:pi4", &["pi4", "pi4.lan"], &ips, nb, na)
            .unwrap();
        let info = parse_certificate(&der).unwrap();
        assert_eq!(info.dns_names, ["pi4", "pi4.lan"]);
        assert_eq!(info.ip_addresses, ips);
        // Without extensions (the sample has none) the names are empty, not an error.
        let plain = parse_certificate(&sample_cert_der()).unwrap();
        assert!(plain.dns_names.is_empty() && plain.ip_addresses.is_empty());
        for cut in 0..der.len() {
            let _ = parse_certificate(&der[..cut]);
        }
        // Broken extensions leave the names empty; validity and subject still read.
        let tail = der.len() - 120;
        let mut m = der.clone();
        for b in m.iter_mut().skip(tail).take(4) {
            *b = 0xff;
        }
        if let Ok(i) = parse_certificate(&m) {
            assert_eq!(i.not_after, na);
        }
    }

    #[test]
    fn self_signed_certificate_reads_back() {
        let key = GeneratedKey::generate().unwrap();
        let nb = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let na = nb + std::time::Duration::from_secs(365 * 86_400 * 40);
        let der = key
            .self_signed_server_certificate(
                "pi4@1700000000",
                &["pi4"],
                &["127.0.0.1".parse().unwrap()],
                nb,
                na,
            )
            .unwrap();
        let info = parse_certificate(&der).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("pi4@1700000000"));
        assert_eq!(info.dns_names, ["pi4"]);
        assert_eq!(
            info.ip_addresses,
            ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!((info.not_before, info.not_after), (nb, na));
        let pem = pem_encode("CERTIFICATE", &der);
        assert_eq!(first_certificate(pem.as_bytes()).unwrap(), info);
    }
}
