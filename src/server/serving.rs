//! The serving certificate from the cluster (`serverTLSBootstrap`, `--rotate-server-certificates`):
//! a CSR to `kubernetes.io/kubelet-serving` for `system:node:NAME` (O `system:nodes`) with the
//! node's host name and addresses as subject alternative names, the issued pair kept 0600 under
//! the certificate directory as `kubelet-server-<UTC time>.pem` behind the symlink
//! `kubelet-server-current.pem` (client-go's certificate store layout), and rotation at a
//! random point in 70–90 % of the certificate's life.
//!
//! The decisions (when to request, how long to wait, what to ask for) are [`Rotation`] and
//! [`template`], sans-I/O; the thread in [`spawn`] only files requests with the node's own
//! credentials (through the `bootstrap` machinery the client certificate uses), writes the
//! files and swaps the server's TLS configuration. It never serves a certificate it was not
//! issued, and withdraws one that expired (connections are then refused, as the kubelet does
//! when its certificate manager has no current certificate).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::api::backoff::{random_between, RandomSource, XorShift64};
use crate::api::{Client, ClientConfig};
use crate::k8s::certificates::CertificateSigningRequest;
use crate::node::bootstrap::{self, BootstrapOptions};
use crate::node::x509::{self, CertInfo, GeneratedKey};

use super::tls::{self, ClientTls, ServingPair, TlsSlot};
use super::NodeView;

/// Prefix of the pair files (the kubelet's).
pub const PAIR_PREFIX: &str = "kubelet-server";
/// The symlink to the pair in use.
pub const CURRENT: &str = "kubelet-server-current.pem";
/// Longest single wait: a wall-clock jump is noticed within this.
pub const MAX_NAP: Duration = Duration::from_secs(60);
/// First retry after a failed request; doubles up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(2);
/// Longest wait between failed requests.
pub const RETRY_MAX: Duration = Duration::from_secs(300);

/// What a serving-certificate request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// The request for node `node_name` with addresses `ips`, as the kubelet makes it: CN
/// `system:node:NAME`, O `system:nodes`, the Hostname address (the node name) as DNS name and
/// the InternalIP addresses as IPs — loopback left out as it is from the Node's addresses.
pub fn template(node_name: &str, ips: &[IpAddr]) -> Template {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in ips
        .iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
    {
        if !out.contains(ip) {
            out.push(*ip);
        }
    }
    Template {
        common_name: format!("system:node:{node_name}"),
        organizations: vec!["system:nodes".into()],
        dns: vec![node_name.to_string()],
        ips: out,
    }
}

/// True when the certificate in use no longer carries what the node would ask for now (its
/// CN, O, DNS names or IPs differ as sets) and that was not already asked for: a node whose
/// address changed gets a certificate for the new address, and a signer that issues other
/// names than requested is not asked again and again.
pub fn names_changed(
    current: &CertInfo,
    wanted: &Template,
    last_requested: Option<&Template>,
) -> bool {
    fn same<T: Ord + Clone>(a: &[T], b: &[T]) -> bool {
        let set = |v: &[T]| v.iter().cloned().collect::<std::collections::BTreeSet<T>>();
        set(a) == set(b)
    }
    let satisfied = current.common_name.as_deref() == Some(wanted.common_name.as_str())
        && same(&current.organizations, &wanted.organizations)
        && same(&current.dns_names, &wanted.dns)
        && same(&current.ip_addresses, &wanted.ips);
    !satisfied && last_requested != Some(wanted)
}

/// The next thing the rotation loop does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// File a request now.
    Request,
    /// Look again after this long.
    Wait(Duration),
}

/// Rotation state: the deadline of the certificate in use (wall time, from the certificate
/// alone) and the retry time after a failure (monotonic, so a clock jump neither hastens nor
/// delays a retry).
#[derive(Debug)]
pub struct Rotation<R: RandomSource> {
    deadline: Option<SystemTime>,
    not_after: Option<SystemTime>,
    retry_at: Option<Instant>,
    failures: u32,
    rng: R,
}

impl<R: RandomSource> Rotation<R> {
    /// No certificate yet.
    pub fn new(rng: R) -> Self {
        Rotation {
            deadline: None,
            not_after: None,
            retry_at: None,
            failures: 0,
            rng,
        }
    }

    /// A certificate went into use: its rotation deadline is drawn once, at a random point in
    /// 70–90 % of its life (the kubelet's jitter, so a fleet does not renew at once).
    pub fn installed(&mut self, info: &CertInfo) {
        self.deadline = Some(bootstrap::rotation_deadline(info, &mut self.rng));
        self.not_after = Some(info.not_after);
        self.retry_at = None;
        self.failures = 0;
    }

    /// A request failed at monotonic time `now`: the wait before the next one (doubling from
    /// [`RETRY_FIRST`] to [`RETRY_MAX`], jittered down by up to half).
    pub fn failed(&mut self, now: Instant) -> Duration {
        let full = RETRY_FIRST
            .saturating_mul(1u32 << self.failures.min(16))
            .min(RETRY_MAX);
        self.failures = self.failures.saturating_add(1);
        let wait = random_between(&mut self.rng, full / 2, full);
        self.retry_at = Some(now + wait);
        wait
    }

    /// Rotate at the next step, whatever the deadline (the names changed).
    pub fn rotate_now(&mut self) {
        self.deadline = None;
    }

    /// The rotation deadline of the certificate in use.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.deadline
    }

    /// True when the certificate in use has expired at wall time `wall` (it is withdrawn).
    pub fn expired(&self, wall: SystemTime) -> bool {
        self.not_after.is_some_and(|t| wall >= t)
    }

    /// What to do at wall time `wall` and monotonic time `mono`.
    pub fn step(&self, wall: SystemTime, mono: Instant) -> Step {
        if let Some(at) = self.retry_at {
            if mono < at {
                return Step::Wait((at - mono).min(MAX_NAP));
            }
        }
        match self.deadline {
            None => Step::Request,
            Some(d) => match d.duration_since(wall) {
                // A wall clock behind the certificate waits here too: the deadline lies after
                // notBefore, and a certificate issued now would be no more valid.
                Ok(left) if !left.is_zero() => Step::Wait(left.min(MAX_NAP)),
                _ => Step::Request,
            },
        }
    }
}

/// `2006-01-02-15-04-05` of client-go's store, in UTC.
fn stamp(t: SystemTime) -> String {
    crate::k8s::coordination::format_time(t)
        .chars()
        .take(19)
        .map(|c| if c.is_ascii_digit() { c } else { '-' })
        .collect()
}

/// Writes the pair as `kubelet-server-<time>.pem` (0600, certificate chain then key) and
/// points `kubelet-server-current.pem` at it through `kubelet-server-updated.pem` and a
/// rename, so the current link is always whole. A regular file where the link belongs is an
/// error (as in client-go): it is not ours to replace.
pub fn store(
    dir: &Path,
    cert_pem: &[u8],
    key_pem: &[u8],
    now: SystemTime,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("{PAIR_PREFIX}-{}.pem", stamp(now)));
    let mut both = cert_pem.to_vec();
    if !both.ends_with(b"\n") {
        both.push(b'\n');
    }
    both.extend_from_slice(key_pem);
    crate::store::fs::write_private(&path, &both)
        .map_err(|e| format!("write {}: {e}", path.display()))?;
    let current = dir.join(CURRENT);
    let updated = dir.join(format!("{PAIR_PREFIX}-updated.pem"));
    for link in [&current, &updated] {
        if let Ok(m) = std::fs::symlink_metadata(link) {
            if !m.file_type().is_symlink() {
                return Err(format!("{} is a file, not a symlink", link.display()));
            }
        }
    }
    let _ = std::fs::remove_file(&updated);
    std::os::unix::fs::symlink(&path, &updated)
        .map_err(|e| format!("symlink {}: {e}", updated.display()))?;
    std::fs::rename(&updated, &current)
        .map_err(|e| format!("rename {} to {}: {e}", updated.display(), current.display()))?;
    Ok(path)
}

/// The pair `kubelet-server-current.pem` points at, with its certificate's validity and
/// subject; None when absent or unreadable (a reason is logged).
pub fn load_current(dir: &Path) -> Option<(ServingPair, CertInfo)> {
    let path = dir.join(CURRENT);
    if !path.exists() {
        return None;
    }
    let pem = match tls::read_pem(&path, "serving pair") {
        Ok(p) => p,
        Err(e) => {
            log::warn!("kubelet API: {e}; requesting a new serving certificate");
            return None;
        }
    };
    match x509::first_certificate(&pem) {
        Ok(info) => Some((
            ServingPair {
                cert_pem: pem.clone(),
                key_pem: pem,
                source: path.display().to_string(),
            },
            info,
        )),
        Err(e) => {
            log::warn!(
                "kubelet API: {}: {e}; requesting a new serving certificate",
                path.display()
            );
            None
        }
    }
}

/// Everything the rotation thread needs besides the view.
pub struct RotationSettings {
    pub cert_dir: PathBuf,
    pub node_name: String,
    /// Configured node addresses; empty: the address is detected at each look, as the node
    /// status does.
    pub node_ips: Vec<IpAddr>,
    pub client: ClientTls,
    /// Bounds of each request's wait for issuance.
    pub opts: BootstrapOptions,
}

impl RotationSettings {
    /// What a request would ask for now.
    pub fn wanted(&self) -> Template {
        if self.node_ips.is_empty() {
            let detected: Vec<IpAddr> = crate::node::register::detect_node_ip()
                .into_iter()
                .collect();
            template(&self.node_name, &detected)
        } else {
            template(&self.node_name, &self.node_ips)
        }
    }
}

/// The running rotation; it stops when dropped (at its next look at the stop flag).
pub struct Handle {
    stop: Arc<AtomicBool>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Starts the rotation thread. Each certificate in use goes into `slot`; `first` is told when
/// the first one is there (the server binds its port only then).
pub fn spawn(
    settings: RotationSettings,
    view: NodeView,
    slot: Arc<TlsSlot>,
    first: smol::channel::Sender<()>,
) -> Result<Handle, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    std::thread::Builder::new()
        .name("serving-cert".into())
        .spawn(move || run(&settings, &view, &slot, &first, &flag))
        .map_err(|e| format!("serving certificate thread: {e}"))?;
    Ok(Handle { stop })
}

fn run(
    s: &RotationSettings,
    view: &NodeView,
    slot: &TlsSlot,
    first: &smol::channel::Sender<()>,
    stop: &AtomicBool,
) {
    let mut rot = Rotation::new(XorShift64::from_entropy());
    // The certificate in use and the names last asked for.
    let mut current: Option<CertInfo> = None;
    let mut last_requested: Option<Template> = None;
    if let Some((pair, info)) = load_current(&s.cert_dir) {
        if SystemTime::now() < info.not_after {
            if install(s, slot, &pair, &info, &mut rot) {
                current = Some(info);
                let _ = first.try_send(());
            }
        } else {
            log::info!(
                "kubelet API: {} expired; requesting a new serving certificate",
                pair.source
            );
        }
    }
    loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        if rot.expired(SystemTime::now()) && slot.get().is_some() {
            log::warn!("kubelet API: the serving certificate expired; not serving until a new one is issued");
            slot.set(None);
        }
        let wanted = s.wanted();
        if let Some(info) = &current {
            if names_changed(info, &wanted, last_requested.as_ref()) {
                log::info!(
                    "kubelet API: the serving certificate names {:?} {:?}, the node is now {:?} {:?}; requesting a new one",
                    info.dns_names,
                    info.ip_addresses,
                    wanted.dns,
                    wanted.ips
                );
                rot.rotate_now();
            }
        }
        match rot.step(SystemTime::now(), Instant::now()) {
            Step::Wait(d) => {
                let end = Instant::now() + d;
                while Instant::now() < end && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep((end - Instant::now()).min(Duration::from_millis(200)));
                }
            }
            Step::Request => match request(s, &wanted, view, stop) {
                Ok((pair, info)) => {
                    last_requested = Some(wanted);
                    if install(s, slot, &pair, &info, &mut rot) {
                        current = Some(info);
                        let _ = first.try_send(());
                    } else {
                        rot.failed(Instant::now());
                    }
                }
                Err(Failure::Stopped) => return,
                Err(Failure::NoCredentials) => {
                    let wait = rot.failed(Instant::now());
                    log::debug!(
                        "kubelet API: no node credentials yet for the serving CSR; again in {} ms",
                        wait.as_millis()
                    );
                }
                Err(Failure::Other(e)) => {
                    let wait = rot.failed(Instant::now());
                    log::warn!(
                        "kubelet API: serving certificate request: {e}; again in {} s",
                        wait.as_secs()
                    );
                }
            },
        }
    }
}

/// Swaps the pair in for new connections; false (logged) when rustls refuses it.
fn install(
    s: &RotationSettings,
    slot: &TlsSlot,
    pair: &ServingPair,
    info: &CertInfo,
    rot: &mut Rotation<XorShift64>,
) -> bool {
    match tls::config_with(pair, &s.client) {
        Ok(cfg) => {
            slot.set(Some(cfg));
            rot.installed(info);
            log::info!(
                "kubelet API: serving certificate {} (valid until {}, rotation after {})",
                pair.source,
                crate::k8s::coordination::format_time(info.not_after),
                rot.deadline()
                    .map(crate::k8s::coordination::format_time)
                    .unwrap_or_default()
            );
            true
        }
        Err(e) => {
            log::warn!("kubelet API: {e}");
            false
        }
    }
}

enum Failure {
    Stopped,
    NoCredentials,
    Other(String),
}

/// Files one CSR with the node's credentials and waits for it; the stored pair.
fn request(
    s: &RotationSettings,
    t: &Template,
    view: &NodeView,
    stop: &AtomicBool,
) -> Result<(ServingPair, CertInfo), Failure> {
    let (_, cluster) = view.cluster().ok_or(Failure::NoCredentials)?;
    let client = Client::new(&cluster, ClientConfig::default())
        .map_err(|e| Failure::Other(e.to_string()))?;
    let key = GeneratedKey::generate().map_err(|e| Failure::Other(e.to_string()))?;
    let dns: Vec<&str> = t.dns.iter().map(String::as_str).collect();
    let orgs: Vec<&str> = t.organizations.iter().map(String::as_str).collect();
    let der = key
        .certificate_request_with_names(&t.common_name, &orgs, &dns, &t.ips)
        .map_err(|e| Failure::Other(e.to_string()))?;
    let pem = x509::pem_encode("CERTIFICATE REQUEST", &der).into_bytes();
    let name = bootstrap::csr_name("csr-serving", &key);
    let csr = CertificateSigningRequest::kubelet_serving(
        &name,
        pem,
        bootstrap::expiration(&s.opts),
        false,
    );
    let stopped = || stop.load(Ordering::SeqCst);
    let cert_pem = bootstrap::submit_and_wait(&client, &csr, &s.opts, &stopped).map_err(|e| {
        if stopped() {
            Failure::Stopped
        } else {
            Failure::Other(e.to_string())
        }
    })?;
    let info = x509::first_certificate(&cert_pem)
        .map_err(|e| Failure::Other(format!("CSR {name}: issued certificate: {e}")))?;
    if info.common_name.as_deref() != Some(t.common_name.as_str()) {
        return Err(Failure::Other(format!(
            "CSR {name}: issued certificate names {:?}, not {:?}",
            info.common_name, t.common_name
        )));
    }
    let key_pem = key.private_pem().into_bytes();
    let path =
        store(&s.cert_dir, &cert_pem, &key_pem, SystemTime::now()).map_err(Failure::Other)?;
    log::info!(
        "node {}: serving certificate CSR {name} issued, stored as {}",
        s.node_name,
        path.display()
    );
    let mut both = cert_pem;
    both.push(b'\n');
    both.extend_from_slice(&key_pem);
    Ok((
        ServingPair {
            cert_pem: both.clone(),
            key_pem: both,
            source: path.display().to_string(),
        },
        info,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn info(from: u64, life: u64) -> CertInfo {
        CertInfo {
            not_before: UNIX_EPOCH + Duration::from_secs(from),
            not_after: UNIX_EPOCH + Duration::from_secs(from + life),
            common_name: Some("system:node:pi-1".into()),
            organizations: vec!["system:nodes".into()],
            dns_names: vec![],
            ip_addresses: vec![],
        }
    }

    #[test]
    fn a_changed_address_asks_once_for_a_new_certificate() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut cert = info(0, 3600);
        cert.dns_names = vec!["pi-1".into()];
        cert.ip_addresses = vec![ip("192.168.1.20")];
        let same = template("pi-1", &[ip("192.168.1.20")]);
        assert!(!names_changed(&cert, &same, None));
        // Order of names does not matter; the set does.
        cert.ip_addresses = vec![ip("fd00::20"), ip("192.168.1.20")];
        let both = template("pi-1", &[ip("192.168.1.20"), ip("fd00::20")]);
        assert!(!names_changed(&cert, &both, None));
        // DHCP gave the node another address: a new certificate is asked for, once.
        let moved = template("pi-1", &[ip("192.168.1.77")]);
        assert!(names_changed(&cert, &moved, None));
        assert!(names_changed(&cert, &moved, Some(&same)));
        assert!(!names_changed(&cert, &moved, Some(&moved)));
        // Lost its address, renamed, or another group: the same.
        assert!(names_changed(&cert, &template("pi-1", &[]), None));
        assert!(names_changed(
            &cert,
            &template("pi-2", &[ip("192.168.1.20"), ip("fd00::20")]),
            None
        ));
        let mut other = both.clone();
        other.organizations = vec!["system:nodes".into(), "edge".into()];
        assert!(names_changed(&cert, &other, None));
    }

    #[test]
    fn rotate_now_requests_at_the_next_step_unless_a_retry_is_pending() {
        let mut rot = Rotation::new(XorShift64::new(7));
        let now = UNIX_EPOCH + Duration::from_secs(100);
        let mono = Instant::now();
        rot.installed(&info(0, 3600));
        assert!(matches!(rot.step(now, mono), Step::Wait(_)));
        rot.rotate_now();
        assert_eq!(rot.step(now, mono), Step::Request);
        let wait = rot.failed(mono);
        assert!(matches!(rot.step(now, mono), Step::Wait(_)));
        assert_eq!(rot.step(now, mono + wait), Step::Request);
    }

    #[test]
    fn the_request_names_the_node_its_host_name_and_addresses() {
        // Upstream: CN system:node:NAME, O system:nodes, SANs from the Node's Hostname
        // (DNS) and InternalIP/ExternalIP (IP) addresses.
        let ips: Vec<IpAddr> = ["192.0.2.7", "127.0.0.1", "192.0.2.7", "fd00::7", "0.0.0.0"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let t = template("pi-1", &ips);
        assert_eq!(t.common_name, "system:node:pi-1");
        assert_eq!(t.organizations, ["system:nodes"]);
        assert_eq!(t.dns, ["pi-1"]);
        assert_eq!(
            t.ips,
            vec![
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
    }

    #[test]
    fn first_request_at_once_then_rotation_in_70_to_90_percent() {
        let mono = Instant::now();
        let mut r = Rotation::new(XorShift64::new(9));
        assert_eq!(r.step(UNIX_EPOCH, mono), Step::Request);
        let day = 86_400;
        let c = info(1_000_000, day);
        r.installed(&c);
        let d = r.deadline().unwrap().duration_since(c.not_before).unwrap();
        assert!(
            (Duration::from_secs(day * 7 / 10)..=Duration::from_secs(day * 9 / 10)).contains(&d),
            "{d:?}"
        );
        // Before the deadline: naps of at most MAX_NAP, so a clock jump is seen quickly.
        let at = |s: u64| c.not_before + Duration::from_secs(s);
        assert_eq!(r.step(at(10), mono), Step::Wait(MAX_NAP));
        let just_before = r.deadline().unwrap() - Duration::from_secs(5);
        assert_eq!(
            r.step(just_before, mono),
            Step::Wait(Duration::from_secs(5))
        );
        assert_eq!(r.step(r.deadline().unwrap(), mono), Step::Request);
        assert!(!r.expired(at(day - 1)));
        assert!(r.expired(at(day)));
        // A clock behind the certificate (an RTC-less board in 1970) waits, never requests.
        assert_eq!(
            r.step(UNIX_EPOCH + Duration::from_secs(30), mono),
            Step::Wait(MAX_NAP)
        );
        // The jitter spreads a fleet over the window.
        let (mut lo, mut hi) = (u64::MAX, 0);
        for seed in 1..500 {
            let mut r = Rotation::new(XorShift64::new(seed));
            r.installed(&c);
            let s = r
                .deadline()
                .unwrap()
                .duration_since(c.not_before)
                .unwrap()
                .as_secs();
            lo = lo.min(s);
            hi = hi.max(s);
        }
        assert!(lo < day * 72 / 100 && hi > day * 88 / 100, "{lo}..{hi}");
    }

    #[test]
    fn failures_retry_on_the_monotonic_clock_with_backoff() {
        let mono = Instant::now();
        let mut r = Rotation::new(XorShift64::new(5));
        let w1 = r.failed(mono);
        assert!((RETRY_FIRST / 2..=RETRY_FIRST).contains(&w1), "{w1:?}");
        // Whatever the wall clock says, the retry waits for the monotonic time.
        let far = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
        assert_eq!(r.step(far, mono), Step::Wait(w1));
        assert_eq!(r.step(far, mono + w1), Step::Request);
        let mut last = w1;
        for _ in 0..20 {
            last = r.failed(mono);
        }
        assert!(last <= RETRY_MAX && last >= RETRY_MAX / 2, "{last:?}");
        // A later success clears the back-off.
        r.installed(&info(1_000_000, 86_400));
        let w = r.failed(mono);
        assert!(w <= RETRY_FIRST, "{w:?}");
    }

    #[test]
    fn pairs_are_stored_0600_behind_the_current_link() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("tinylet-serving-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let key = GeneratedKey::generate().unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
        let der = key
            .self_signed_server_certificate(
                "system:node:pi-1",
                &["pi-1"],
                &[],
                now,
                now + Duration::from_secs(3600),
            )
            .unwrap();
        let cert = x509::pem_encode("CERTIFICATE", &der);
        let p1 = store(&dir, cert.as_bytes(), key.private_pem().as_bytes(), now).unwrap();
        assert_eq!(
            p1.file_name().unwrap().to_str().unwrap(),
            "kubelet-server-2026-05-28-20-26-40.pem"
        );
        let mode = std::fs::metadata(&p1).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (pair, info) = load_current(&dir).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("system:node:pi-1"));
        let client = tls::client_tls(None).unwrap();
        tls::config_with(&pair, &client).unwrap();
        // A rotation moves the link; the old file stays until it is cleaned up.
        let later = now + Duration::from_secs(61);
        let p2 = store(&dir, cert.as_bytes(), key.private_pem().as_bytes(), later).unwrap();
        assert_ne!(p1, p2);
        assert_eq!(std::fs::read_link(dir.join(CURRENT)).unwrap(), p2);
        assert!(std::fs::symlink_metadata(dir.join("kubelet-server-updated.pem")).is_err());
        // A regular file where the link belongs is not replaced.
        std::fs::remove_file(dir.join(CURRENT)).unwrap();
        std::fs::write(dir.join(CURRENT), b"x").unwrap();
        assert!(store(&dir, cert.as_bytes(), b"", later).is_err());
        // Garbage behind the link: no pair, no panic.
        assert!(load_current(&dir).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
