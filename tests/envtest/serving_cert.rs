//! The serving certificate from the cluster (`serverTLSBootstrap: true`) against the real
//! kube-apiserver: the node files a CSR to `kubernetes.io/kubelet-serving` as itself with the
//! kubelet's subject, usages and names; the port is not served until it is issued; once the
//! test approves and signs it (no controller-manager runs: the harness signs with the cluster
//! CA, as it does for client certificates), the agent serves exactly that certificate, which
//! the API server trusts (`--kubelet-certificate-authority`) for `nodes/proxy`; a short-lived
//! certificate is rotated at 70–90 % of its life through a second CSR, new connections get the
//! new certificate and a connection opened before keeps working. Pairs are 0600 under the
//! cert dir as `kubelet-server-<time>.pem` behind `kubelet-server-current.pem`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

use super::agent::Agent;
use super::apiserver::pki;
use super::cluster::Cluster;
use super::cri_bed::Bed;
use super::kubelet_api::admin_kubectl;
use super::real::RealCluster;
use super::scenarios::{join, poll, wait_ready, OnFailure, LIMIT};

const CSR_LIST: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// A pending serving CSR filed by `node`, other than those in `seen`.
fn pending_serving_csr(c: &RealCluster, node: &str, seen: &[String]) -> Option<Value> {
    let list = c.get(CSR_LIST).ok()?;
    let user = format!("system:node:{node}");
    list["items"].as_array()?.iter().find_map(|csr| {
        let name = csr["metadata"]["name"].as_str()?;
        (csr["spec"]["signerName"] == "kubernetes.io/kubelet-serving"
            && csr["spec"]["username"] == user.as_str()
            && csr.pointer("/status/certificate").is_none()
            && !seen.iter().any(|s| s == name))
        .then(|| csr.clone())
    })
}

/// Checks a serving CSR as the kubelet files it; its PEM request.
fn check_request(csr: &Value, node: &str, node_ips: &[String]) -> Vec<u8> {
    // Upstream (pkg/kubelet/certificate): signer kubernetes.io/kubelet-serving, usages digital
    // signature + server auth (key encipherment only for RSA keys; ours is ECDSA P-256),
    // subject CN system:node:NAME / O system:nodes, SANs from the Node's addresses.
    assert_eq!(
        csr["spec"]["signerName"], "kubernetes.io/kubelet-serving",
        "{csr}"
    );
    assert_eq!(
        csr["spec"]["usages"],
        json!(["digital signature", "server auth"]),
        "{csr}"
    );
    assert!(
        csr["spec"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|x| x == "system:nodes")),
        "filed by the node itself: {csr}"
    );
    let pem = csr
        .pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(pki::base64_decode)
        .expect("spec.request");
    let der = pki::pem_block(&pem, "CERTIFICATE REQUEST").expect("a PEM request");
    let subject = pki::csr_subject(&der).expect("the request's subject");
    assert_eq!(subject.common_name, Some(format!("system:node:{node}")));
    assert_eq!(subject.organizations, ["system:nodes"]);
    let (dns, ips) = tinylet::node::x509::parse_request_names(&der).expect("the request's SANs");
    assert_eq!(dns, [node.to_string()], "DNS SANs");
    let ips: Vec<String> = ips.iter().map(ToString::to_string).collect();
    assert_eq!(ips, node_ips, "IP SANs are the Node's InternalIP addresses");
    pem
}

/// `YYMMDDHHMMSSZ` (UTCTime) of `t`, for `openssl ca`.
fn utc_time(t: SystemTime) -> String {
    let text = tinylet::k8s::coordination::format_time(t);
    let digits: String = text.chars().filter(char::is_ascii_digit).take(14).collect();
    format!("{}Z", &digits[2..])
}

/// Approves the CSR and signs it with the cluster CA, valid from `from` to `until`, copying
/// the requested names (what the kubelet-serving signer does, with a lifetime of our choice).
/// The certificate (PEM).
fn approve_and_sign_serving(
    c: &RealCluster,
    name: &str,
    request_pem: &[u8],
    dir: &Path,
    from: SystemTime,
    until: SystemTime,
) -> String {
    let path = format!("{CSR_LIST}/{name}");
    let mut csr = c.get(&path).unwrap();
    csr["status"]["conditions"] = json!([{"type": "Approved", "status": "True",
        "reason": "TinyletEnvtest", "message": "approved by the serving-certificate test"}]);
    c.put(&format!("{path}/approval"), csr).expect("approve");
    let work = dir.join(format!("sign-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("index.txt"), "").unwrap();
    std::fs::write(work.join("req.csr"), request_pem).unwrap();
    let ca = c.ca_cert_path();
    std::fs::write(
        work.join("ca.cnf"),
        format!(
            "[ca]\ndefault_ca = tl\n[tl]\ndatabase = {d}/index.txt\nnew_certs_dir = {d}\n\
             rand_serial = yes\ndefault_md = sha256\npolicy = pol\ncopy_extensions = copy\n\
             unique_subject = no\nx509_extensions = srv\n[pol]\ncommonName = supplied\n\
             organizationName = optional\n[srv]\nbasicConstraints = critical,CA:FALSE\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
            d = work.display()
        ),
    )
    .unwrap();
    let s = |p: &Path| p.display().to_string();
    let out = Command::new("openssl")
        .args(["ca", "-batch", "-notext", "-preserveDN", "-config"])
        .arg(work.join("ca.cnf"))
        .arg("-cert")
        .arg(&ca)
        .arg("-keyfile")
        .arg(ca.with_extension("key"))
        .args([
            "-in",
            &s(&work.join("req.csr")),
            "-out",
            &s(&work.join("cert.pem")),
        ])
        .args(["-startdate", &utc_time(from), "-enddate", &utc_time(until)])
        .output()
        .expect("run openssl ca");
    assert!(
        out.status.success(),
        "openssl ca: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cert = std::fs::read_to_string(work.join("cert.pem")).unwrap();
    let mut csr = c.get(&path).unwrap();
    csr["status"]["certificate"] = json!(pki::base64_encode(cert.as_bytes()));
    c.put(&format!("{path}/status"), csr)
        .expect("publish the certificate");
    cert
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .expect("a certificate")
        .expect("PEM")
        .as_ref()
        .to_vec()
}

/// A TLS connection to the kubelet port as the cluster admin, verifying the server as
/// `host` against the cluster CA.
fn connect(
    c: &RealCluster,
    port: u16,
    host: &str,
) -> Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(c.signer_ca_pem().as_bytes()) {
        roots.add(cert.ok()?).ok()?;
    }
    let admin = c.admin_credentials();
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(admin.cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .ok()?;
    let key = PrivateKeyDer::from_pem_slice(admin.key_pem.as_bytes()).ok()?;
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .ok()?;
    let tcp = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let name = ServerName::try_from(host.to_string()).ok()?;
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).ok()?;
    }
    Some(tls)
}

/// The leaf certificate the kubelet port serves to a new connection (DER), if it serves.
fn served_leaf(c: &RealCluster, port: u16, host: &str) -> Option<Vec<u8>> {
    let tls = connect(c, port, host)?;
    Some(tls.conn.peer_certificates()?.first()?.as_ref().to_vec())
}

/// One keep-alive GET /healthz on `tls`; the status line.
fn healthz(tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: kubelet\r\n\r\n")
        .expect("write the request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = tls.read(&mut chunk).expect("read the answer");
        assert!(
            n > 0,
            "connection closed: {}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .expect("a Content-Length (keep-alive answer)");
    // Read the whole body so the next request starts clean.
    while buf.len() < head_end + length {
        let n = tls.read(&mut chunk).expect("read the body");
        assert!(n > 0, "connection closed mid-body");
        buf.extend_from_slice(&chunk[..n]);
    }
    head.lines().next().unwrap_or_default().to_string()
}

/// Serving pair files under the cert dir: (current link target, every pair file).
fn pair_files(dir: &Path) -> (std::path::PathBuf, Vec<std::path::PathBuf>) {
    let current = std::fs::read_link(dir.join("kubelet-server-current.pem"))
        .expect("kubelet-server-current.pem is a symlink");
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            n.starts_with("kubelet-server-20") && n.ends_with(".pem")
        })
        .collect();
    all.sort();
    for p in &all {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is {mode:o}", p.display());
    }
    (current, all)
}

pub fn serving_certificate_bootstrap_and_rotation(c: &RealCluster, bed: Bed) {
    let mut a = Agent::new(bed, c, "servingcert");
    // The API server dials the node's Hostname address (see kubelet_api.rs): the node is
    // named after the host, which resolves to loopback.
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
        .to_lowercase();
    a.node = host.clone();
    let _dump = OnFailure::new(c, &a);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let mut cfg = std::fs::read_to_string(&a.config).unwrap();
    cfg.push_str(&format!(
        "address: 127.0.0.1\nport: {port}\nhealthzPort: 0\nserverTLSBootstrap: true\n\
         authentication:\n  x509: {{clientCAFile: {}}}\n",
        c.ca_cert_path().display()
    ));
    std::fs::write(&a.config, cfg).unwrap();
    let node = join(c, &mut a);
    // A pod to read logs of at the end, started while the certificate business goes on.
    let ns = a.namespace();
    c.ensure_namespace(&ns).unwrap();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "greeter", "namespace": ns},
        "spec": {
            "nodeName": a.node,
            "automountServiceAccountToken": false,
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main", "image": a.bed.test_image, "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c",
                    "echo hello through an issued serving certificate; trap 'exit 0' TERM; \
                     while true; do sleep 0.2; done"],
            }],
        }
    });
    c.create(&format!("/api/v1/namespaces/{ns}/pods"), pod)
        .unwrap();
    let node_ips: Vec<String> = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| x["type"] == "InternalIP" || x["type"] == "ExternalIP")
        .filter_map(|x| x["address"].as_str().map(str::to_string))
        .collect();

    // The serving CSR, filed as the node once it has its client certificate.
    let first = poll(LIMIT, || pending_serving_csr(c, &a.node, &[]))
        .expect("the node files a kubelet-serving CSR");
    let first_name = first["metadata"]["name"].as_str().unwrap().to_string();
    let request = check_request(&first, &a.node, &node_ips);
    // Not served until issued (upstream: no serving certificate, no TLS listener).
    assert!(
        TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err(),
        "port {port} is served before the certificate is issued"
    );

    // Issue a short-lived certificate: 40 s of life, so rotation falls 28-36 s after
    // notBefore (the kubelet's 70-90 % jitter).
    let now = SystemTime::now();
    let from = now - Duration::from_secs(5);
    let cert1 = approve_and_sign_serving(
        c,
        &first_name,
        &request,
        &a.dir,
        from,
        from + Duration::from_secs(40),
    );
    let leaf1 = der_of(&cert1);
    let served = poll(LIMIT, || {
        served_leaf(c, port, &host).filter(|l| *l == leaf1)
    });
    assert!(served.is_some(), "the port serves the issued certificate");
    let mut early = connect(c, port, &host).expect("a connection on the first certificate");
    assert_eq!(healthz(&mut early), "HTTP/1.1 200 OK");
    let (current, files) = pair_files(&a.cert_dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        files[0].file_name(),
        current.file_name(),
        "one pair, behind the current link"
    );

    // Rotation: a second CSR before the first certificate ends.
    let second = poll(Duration::from_secs(60), || {
        pending_serving_csr(c, &a.node, std::slice::from_ref(&first_name))
    })
    .expect("a second kubelet-serving CSR at 70-90 % of the first certificate's life");
    let rotated_at = SystemTime::now();
    assert!(
        rotated_at < from + Duration::from_secs(40),
        "rotation requested before expiry"
    );
    let second_name = second["metadata"]["name"].as_str().unwrap().to_string();
    let request2 = check_request(&second, &a.node, &node_ips);
    let now = SystemTime::now();
    let cert2 = approve_and_sign_serving(
        c,
        &second_name,
        &request2,
        &a.dir,
        now - Duration::from_secs(5),
        now + Duration::from_secs(86_400),
    );
    let leaf2 = der_of(&cert2);
    assert_ne!(leaf1, leaf2);
    let served = poll(LIMIT, || {
        served_leaf(c, port, &host).filter(|l| *l == leaf2)
    });
    assert!(
        served.is_some(),
        "new connections get the rotated certificate"
    );
    // The connection opened on the first certificate was not dropped.
    assert_eq!(healthz(&mut early), "HTTP/1.1 200 OK");
    assert_eq!(
        early.conn.peer_certificates().unwrap()[0].as_ref(),
        leaf1.as_slice()
    );
    let (current2, files) = pair_files(&a.cert_dir);
    assert_ne!(current2, current);
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(files.iter().any(|f| f.file_name() == current2.file_name()));
    // The API server trusts the issued certificate (--kubelet-certificate-authority is the
    // cluster CA) on its way to the node: `kubectl logs` works. (nodes/proxy would refuse the
    // loopback address before dialing, so logs it is.)
    wait_ready(c, &ns, "greeter");
    let k = admin_kubectl(c, &a, &ns);
    let logs = poll(LIMIT, || {
        let (ok, out, _) = k.run(&["logs", "greeter"]);
        (ok && out.contains("hello")).then_some(out)
    })
    .unwrap_or_else(|| panic!("kubectl logs: {:?}", k.run(&["logs", "greeter"])));
    assert_eq!(logs, "hello through an issued serving certificate\n");
}
