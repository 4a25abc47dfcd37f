//! A real control plane for the scenarios: etcd and kube-apiserver started from binaries named
//! by environment variables (controller-runtime envtest's names), on loopback ports, with a
//! throw-away PKI made by `openssl`, plus the objects kube-controller-manager would have made
//! (bootstrap-token Secret, bootstrapper binding) and the CSR signing it would have done.
//!
//! It owns its processes and its temp dir: both go on drop, also when a scenario panics. It
//! must not touch anything outside that dir and 127.0.0.1.
#![allow(dead_code)]

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::apiserver::client::TestClient;
use super::apiserver::pki::{self, ClientCredentials, Pki};
use super::cluster::{random_token_part, CallError, Cluster};

/// How long etcd may take to answer /health.
const ETCD_READY: Duration = Duration::from_secs(30);
/// How long kube-apiserver may take to answer /readyz (post-start hooks create RBAC roles).
const APISERVER_READY: Duration = Duration::from_secs(90);
/// The service-account issuer and the audience of API tokens.
const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Extra group of the bootstrap tokens made here (must start with system:bootstrappers:).
const BOOTSTRAP_GROUP: &str = "system:bootstrappers:tinylet-envtest";

/// The API server's client certificate towards kubelets (in the launch dir).
pub const KUBELET_CLIENT_CERT: &str = "kubelet-client.crt";
/// Its key.
pub const KUBELET_CLIENT_KEY: &str = "kubelet-client.key";
/// The user that certificate names (kubeadm's name), bound to system:kubelet-api-admin.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";

/// The two binaries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assets {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
}

/// The line printed by real-cluster tests when no binaries are named.
pub const HOW_TO_ENABLE: &str = "set TEST_ASSET_KUBE_APISERVER and TEST_ASSET_ETCD (or KUBEBUILDER_ASSETS=DIR holding kube-apiserver and etcd) to run it against a real control plane; see tests/envtest/README.md";

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl Assets {
    /// From the environment, or None when the binaries are not named.
    pub fn from_env() -> Option<Assets> {
        Assets::resolve(
            std::env::var_os("TEST_ASSET_KUBE_APISERVER"),
            std::env::var_os("TEST_ASSET_ETCD"),
            std::env::var_os("KUBEBUILDER_ASSETS"),
        )
    }

    /// Whether a control plane was asked for (an etcd alone is not one): then a failed
    /// lookup is an error, not a skip.
    pub fn requested() -> bool {
        ["TEST_ASSET_KUBE_APISERVER", "KUBEBUILDER_ASSETS"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty()))
    }

    /// etcd alone (`TEST_ASSET_ETCD`, else `KUBEBUILDER_ASSETS/etcd`), if executable.
    pub fn etcd_from_env() -> Option<PathBuf> {
        let named = std::env::var_os("TEST_ASSET_ETCD")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        let in_dir = std::env::var_os("KUBEBUILDER_ASSETS")
            .filter(|s| !s.is_empty())
            .map(|d| PathBuf::from(d).join("etcd"));
        named.or(in_dir).filter(|p| is_executable(p))
    }

    /// The explicit pair wins; else `KUBEBUILDER_ASSETS/{kube-apiserver,etcd}`. Both must be
    /// executable files.
    pub fn resolve(
        apiserver: Option<OsString>,
        etcd: Option<OsString>,
        assets_dir: Option<OsString>,
    ) -> Option<Assets> {
        let nonempty = |v: Option<OsString>| v.filter(|s| !s.is_empty()).map(PathBuf::from);
        let (a, e) = match (nonempty(apiserver), nonempty(etcd)) {
            (Some(a), Some(e)) => (a, e),
            _ => {
                let dir = nonempty(assets_dir)?;
                (dir.join("kube-apiserver"), dir.join("etcd"))
            }
        };
        (is_executable(&a) && is_executable(&e)).then_some(Assets {
            kube_apiserver: a,
            etcd: e,
        })
    }
}

/// Why the control plane did not come up.
#[derive(Debug)]
pub enum LaunchError {
    /// Temp dir, key files, log files.
    Io { op: String, source: std::io::Error },
    /// openssl failed.
    Pki(String),
    /// A daemon could not be started, exited, or never became ready; with its log tail.
    Daemon {
        name: &'static str,
        what: String,
        log: String,
    },
    /// Creating the objects a controller-manager would have made failed.
    Setup(CallError),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Io { op, source } => write!(f, "envtest launcher: {op}: {source}"),
            LaunchError::Pki(e) => write!(f, "envtest launcher: PKI: {e}"),
            LaunchError::Daemon { name, what, log } => {
                write!(
                    f,
                    "envtest launcher: {name}: {what}\n--- {name} log ---\n{log}"
                )
            }
            LaunchError::Setup(e) => write!(f, "envtest launcher: cluster objects: {e}"),
        }
    }
}

impl std::error::Error for LaunchError {}

fn io_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let op = op.into();
    move |source| LaunchError::Io { op, source }
}

/// The last `lines` lines of a file ("" if unreadable).
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `n` distinct free loopback ports (all held open together, then released).
fn free_ports(n: usize) -> Result<Vec<u16>, LaunchError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("bind 127.0.0.1:0 to pick a port"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err("read the picked port"))
}

fn openssl(args: &[&str]) -> Result<(), LaunchError> {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .map_err(io_err("run openssl"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LaunchError::Pki(format!(
            "openssl {}: {}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn path_str(p: &Path) -> Result<&str, LaunchError> {
    p.to_str()
        .ok_or_else(|| LaunchError::Pki(format!("non-UTF-8 path {}", p.display())))
}

/// The command lines of both daemons, kept apart from spawning so they can be checked.
#[derive(Clone, Debug)]
pub struct Plan {
    /// etcd arguments.
    pub etcd: Vec<String>,
    /// kube-apiserver arguments.
    pub kube_apiserver: Vec<String>,
    /// etcd's client port.
    pub etcd_client_port: u16,
    /// kube-apiserver's secure port.
    pub secure_port: u16,
}

/// Files the plan refers to.
pub struct PlanFiles<'a> {
    pub dir: &'a Path,
    pub ca_cert: &'a Path,
    pub serving_cert: &'a Path,
    pub serving_key: &'a Path,
    pub sa_key: &'a Path,
    pub sa_pub: &'a Path,
}

impl Plan {
    /// Flags for a one-member etcd and a kube-apiserver with the Node authorizer,
    /// NodeRestriction, bootstrap tokens and TokenRequest, all on 127.0.0.1.
    pub fn new(f: &PlanFiles<'_>, ports: [u16; 3]) -> Plan {
        let [client, peer, secure] = ports;
        let d = |p: &Path| p.display().to_string();
        let etcd = vec![
            "--name=envtest".to_string(),
            format!("--data-dir={}", d(&f.dir.join("etcd-data"))),
            format!("--listen-client-urls=http://127.0.0.1:{client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster=envtest=http://127.0.0.1:{peer}"),
            "--initial-cluster-state=new".to_string(),
            // No --unsafe-no-fsync: etcd 3.4 (still what Debian ships) refuses unknown flags,
            // and a handful of writes to a temp dir does not need the speed.
        ];
        let kube_apiserver = vec![
            format!("--etcd-servers=http://127.0.0.1:{client}"),
            format!("--secure-port={secure}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--cert-dir={}", d(&f.dir.join("apiserver-certs"))),
            format!("--tls-cert-file={}", d(f.serving_cert)),
            format!("--tls-private-key-file={}", d(f.serving_key)),
            format!("--client-ca-file={}", d(f.ca_cert)),
            "--authorization-mode=Node,RBAC".to_string(),
            "--enable-admission-plugins=NodeRestriction".to_string(),
            "--enable-bootstrap-token-auth=true".to_string(),
            format!("--service-account-issuer={ISSUER}"),
            format!("--service-account-key-file={}", d(f.sa_pub)),
            format!("--service-account-signing-key-file={}", d(f.sa_key)),
            format!("--api-audiences={ISSUER}"),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--allow-privileged=true".to_string(),
            // The kubelet API (logs, exec): the API server's own client certificate, and the
            // node's serving certificate checked against the test CA, never skipped.
            format!(
                "--kubelet-client-certificate={}",
                d(&f.dir.join(KUBELET_CLIENT_CERT))
            ),
            format!(
                "--kubelet-client-key={}",
                d(&f.dir.join(KUBELET_CLIENT_KEY))
            ),
            format!("--kubelet-certificate-authority={}", d(f.ca_cert)),
            // Nodes here run on the test host: its name (the Node's Hostname address) resolves
            // to loopback, whereas a loopback InternalIP is never advertised.
            "--kubelet-preferred-address-types=Hostname".to_string(),
            "--v=1".to_string(),
        ];
        Plan {
            etcd,
            kube_apiserver,
            etcd_client_port: client,
            secure_port: secure,
        }
    }
}

/// Children and the temp dir; killed and removed on drop (also when a launch fails midway).
struct Owned {
    dir: PathBuf,
    etcd: Option<Child>,
    apiserver: Option<Child>,
}

fn kill_child(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    use nix::sys::signal::{kill, Signal};
    // A stopped process cannot act on SIGTERM.
    let _ = kill(pid, Signal::SIGCONT);
    let _ = kill(pid, Signal::SIGTERM);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for Owned {
    fn drop(&mut self) {
        // The API server first: it holds connections to etcd.
        if let Some(c) = self.apiserver.as_mut() {
            kill_child(c);
        }
        if let Some(c) = self.etcd.as_mut() {
            kill_child(c);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static INSTANCE: AtomicU64 = AtomicU64::new(0);

/// A running etcd + kube-apiserver.
pub struct RealCluster {
    // Field order: the client and PKI go before the processes and the dir.
    admin: Mutex<TestClient>,
    /// Signs approved CSRs (the cluster CA when launched here).
    pki: Pki,
    /// The CA the server's certificate chains to.
    ca_pem: String,
    /// The admin (system:masters) credentials, for tools that take files (kubectl).
    admin_creds: ClientCredentials,
    /// Where the PKI files are (ca.crt, the serving pair).
    pki_dir: PathBuf,
    addr: SocketAddr,
    owned: Mutex<Owned>,
    etcd_log: PathBuf,
    apiserver_log: PathBuf,
}

fn spawn(
    bin: &Path,
    args: &[String],
    log: &Path,
    name: &'static str,
) -> Result<Child, LaunchError> {
    let out = File::create(log).map_err(io_err(format!("create {}", log.display())))?;
    let err = out
        .try_clone()
        .map_err(io_err(format!("dup {}", log.display())))?;
    let mut cmd = Command::new(bin);
    cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
    // If the test process dies without unwinding (SIGKILL, ^C), the daemons die with it.
    // SAFETY: only prctl(2), which is async-signal-safe, runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                .map_err(std::io::Error::from)
        });
    }
    cmd.spawn().map_err(|e| LaunchError::Daemon {
        name,
        what: format!("cannot start {}: {e}", bin.display()),
        log: String::new(),
    })
}

/// Waits until `ready()` or the child exits or `limit` passes.
fn wait_ready(
    child: &mut Child,
    name: &'static str,
    log: &Path,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LaunchError> {
    let t0 = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(LaunchError::Daemon {
                name,
                what: format!("exited with {status} before it was ready"),
                log: tail(log, 60),
            });
        }
        if ready() {
            return Ok(());
        }
        if t0.elapsed() > limit {
            return Err(LaunchError::Daemon {
                name,
                what: format!("not ready after {limit:?}"),
                log: tail(log, 60),
            });
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The serving certificate `Pki::generate` made (the first `server-*.crt` and its key).
fn serving_pair(dir: &Path) -> Result<(PathBuf, PathBuf), LaunchError> {
    let entries = std::fs::read_dir(dir).map_err(io_err(format!("list {}", dir.display())))?;
    let mut certs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("server-") && n.ends_with(".crt"))
        })
        .collect();
    certs.sort();
    let cert = certs
        .into_iter()
        .next()
        .ok_or_else(|| LaunchError::Pki(format!("no serving certificate in {}", dir.display())))?;
    let key = cert.with_extension("key");
    if !key.is_file() {
        return Err(LaunchError::Pki(format!(
            "no key next to {}",
            cert.display()
        )));
    }
    Ok((cert, key))
}

impl RealCluster {
    /// Starts etcd and kube-apiserver from `assets`, waits for both, and creates the
    /// bootstrapper ClusterRoleBinding.
    pub fn start(assets: &Assets) -> Result<RealCluster, LaunchError> {
        let dir = std::env::temp_dir().join(format!(
            "tinylet-envtest-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let mut owned = Owned {
            dir: dir.clone(),
            etcd: None,
            apiserver: None,
        };

        // PKI: the test server's CA (serving cert for 127.0.0.1/localhost, client profile for
        // the admin and for CSRs), plus an RSA service-account signing key.
        let pki_dir = dir.join("pki");
        let pki = Pki::generate(&pki_dir).map_err(|e| LaunchError::Pki(e.to_string()))?;
        let ca_cert = pki_dir.join("ca.crt");
        let (serving_cert, serving_key) = serving_pair(&pki_dir)?;
        let admin = pki
            .client_cert("tinylet-envtest-admin", &["system:masters"])
            .map_err(|e| LaunchError::Pki(e.to_string()))?;
        let kubelet_client = pki
            .client_cert(KUBELET_CLIENT_USER, &[])
            .map_err(|e| LaunchError::Pki(e.to_string()))?;
        for (from, to) in [
            (&kubelet_client.cert_path, KUBELET_CLIENT_CERT),
            (&kubelet_client.key_path, KUBELET_CLIENT_KEY),
        ] {
            std::fs::copy(from, dir.join(to)).map_err(io_err(format!("copy {to}")))?;
        }
        let sa_key = dir.join("sa.key");
        let sa_pub = dir.join("sa.pub");
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            path_str(&sa_key)?,
        ])?;
        openssl(&[
            "pkey",
            "-in",
            path_str(&sa_key)?,
            "-pubout",
            "-out",
            path_str(&sa_pub)?,
        ])?;

        let ports = free_ports(3)?;
        let plan = Plan::new(
            &PlanFiles {
                dir: &dir,
                ca_cert: &ca_cert,
                serving_cert: &serving_cert,
                serving_key: &serving_key,
                sa_key: &sa_key,
                sa_pub: &sa_pub,
            },
            [ports[0], ports[1], ports[2]],
        );

        let etcd_log = dir.join("etcd.log");
        let etcd_addr = SocketAddr::from(([127, 0, 0, 1], plan.etcd_client_port));
        let etcd = owned
            .etcd
            .insert(spawn(&assets.etcd, &plan.etcd, &etcd_log, "etcd")?);
        wait_ready(etcd, "etcd", &etcd_log, ETCD_READY, || {
            let mut c = TestClient::plain(etcd_addr).with_timeout(Duration::from_secs(2));
            c.get("/health")
                .is_ok_and(|(code, v)| code == 200 && v["health"] == "true")
        })?;

        let apiserver_log = dir.join("kube-apiserver.log");
        let addr = SocketAddr::from(([127, 0, 0, 1], plan.secure_port));
        let apiserver = owned.apiserver.insert(spawn(
            &assets.kube_apiserver,
            &plan.kube_apiserver,
            &apiserver_log,
            "kube-apiserver",
        )?);
        let ca_pem = pki.ca_pem.clone();
        let client = |admin: &ClientCredentials| {
            TestClient::tls(addr, &ca_pem, Some(admin))
                .map(|c| c.with_timeout(Duration::from_secs(15)))
                .map_err(|e| LaunchError::Pki(format!("admin TLS client: {e}")))
        };
        let mut probe = client(&admin)?;
        wait_ready(
            apiserver,
            "kube-apiserver",
            &apiserver_log,
            APISERVER_READY,
            || {
                probe
                    .request("GET", "/readyz", None, &[])
                    .is_ok_and(|r| r.code == 200)
            },
        )?;

        let cluster = RealCluster {
            admin: Mutex::new(client(&admin)?),
            ca_pem: pki.ca_pem.clone(),
            admin_creds: admin.clone(),
            pki_dir: pki_dir.clone(),
            pki,
            addr,
            owned: Mutex::new(owned),
            etcd_log,
            apiserver_log,
        };
        // What kubeadm / the controller-manager would have set up for TLS bootstrap:
        // bootstrap identities may create CSRs for the kubelet client signer.
        cluster
            .create(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "tinylet-envtest:node-bootstrapper"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "system:node-bootstrapper"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group",
                                  "name": "system:bootstrappers"}],
                }),
            )
            .map_err(LaunchError::Setup)?;
        // What kubeadm sets up for `kubectl logs/exec`: the API server's kubelet client may
        // use the whole kubelet API.
        cluster
            .create(
                "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
                json!({
                    "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                    "metadata": {"name": "tinylet-envtest:kubelet-api-admin"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                "name": "system:kubelet-api-admin"},
                    "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                  "name": KUBELET_CLIENT_USER}],
                }),
            )
            .map_err(LaunchError::Setup)?;
        Ok(cluster)
    }

    /// The harness side alone, for an API server someone else runs at `addr` (serving cert
    /// from `ca_pem`, `admin` in system:masters): admin calls, bootstrap-token Secrets and CSR
    /// approval + signing with a CA of its own. No processes: `down`/`up` do nothing. This is
    /// how the launcher's API code is exercised without kube-apiserver binaries.
    pub fn attach(
        addr: SocketAddr,
        ca_pem: &str,
        admin: &ClientCredentials,
    ) -> Result<RealCluster, LaunchError> {
        let dir = std::env::temp_dir().join(format!(
            "tinylet-envtest-{}-{}",
            std::process::id(),
            INSTANCE.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        let owned = Owned {
            dir: dir.clone(),
            etcd: None,
            apiserver: None,
        };
        let pki = Pki::generate(&dir.join("pki")).map_err(|e| LaunchError::Pki(e.to_string()))?;
        let admin_creds = admin.clone();
        let admin = TestClient::tls(addr, ca_pem, Some(admin))
            .map(|c| c.with_timeout(Duration::from_secs(15)))
            .map_err(|e| LaunchError::Pki(format!("admin TLS client: {e}")))?;
        Ok(RealCluster {
            admin: Mutex::new(admin),
            pki,
            ca_pem: ca_pem.to_string(),
            admin_creds,
            pki_dir: dir.join("pki"),
            addr,
            owned: Mutex::new(owned),
            etcd_log: dir.join("etcd.log"),
            apiserver_log: dir.join("kube-apiserver.log"),
        })
    }

    /// The CA certificate that signs approved CSRs.
    pub fn signer_ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// The test PKI (it signs client certificates the API server and kubelets trust).
    pub fn pki(&self) -> &Pki {
        &self.pki
    }

    /// The admin (system:masters) credentials.
    pub fn admin_credentials(&self) -> &ClientCredentials {
        &self.admin_creds
    }

    /// The CA certificate file (client CA of the API server, and of kubelets in tests).
    pub fn ca_cert_path(&self) -> PathBuf {
        self.pki_dir.join("ca.crt")
    }

    /// A serving pair for 127.0.0.1 signed by the test CA (certificate, key).
    pub fn serving_pair_paths(&self) -> Result<(PathBuf, PathBuf), LaunchError> {
        serving_pair(&self.pki_dir)
    }

    fn with_owned<T>(&self, f: impl FnOnce(&mut Owned) -> T) -> T {
        let mut g = self.owned.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn signal_apiserver(&self, sig: nix::sys::signal::Signal) {
        self.with_owned(|o| {
            if let Some(c) = o.apiserver.as_ref() {
                let pid = nix::unistd::Pid::from_raw(c.id() as i32);
                let _ = nix::sys::signal::kill(pid, sig);
            }
        });
    }
}

impl Cluster for RealCluster {
    fn kind(&self) -> &'static str {
        "real"
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&Value>,
    ) -> Result<Value, CallError> {
        let mut c = self.admin.lock().unwrap_or_else(|p| p.into_inner());
        // A kept-alive connection may have been closed by the server: one retry on a new one.
        let mut last = String::new();
        for _ in 0..2 {
            match c.json(method, path, content_type, body) {
                Ok((code, v)) if code < 300 => return Ok(v),
                Ok((code, v)) => return Err(CallError { code, body: v }),
                Err(e) => last = format!("{method} {path}: {e}"),
            }
        }
        Err(CallError {
            code: 0,
            body: Value::String(last),
        })
    }

    fn bootstrap_token(&self) -> Result<String, String> {
        let id = random_token_part(6);
        let secret = random_token_part(16);
        let s = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
            "type": "bootstrap.kubernetes.io/token",
            "stringData": {
                "token-id": id, "token-secret": secret,
                "usage-bootstrap-authentication": "true",
                "auth-extra-groups": BOOTSTRAP_GROUP,
                "description": "tinylet envtest",
            },
        });
        self.create("/api/v1/namespaces/kube-system/secrets", s)
            .map_err(|e| e.to_string())?;
        Ok(format!("{id}.{secret}"))
    }

    fn approve_and_sign(&self, name: &str) -> Result<(), String> {
        let path = format!("/apis/certificates.k8s.io/v1/certificatesigningrequests/{name}");
        let mut csr = self.get(&path).map_err(|e| e.to_string())?;
        let cond = json!({"type": "Approved", "status": "True", "reason": "TinyletEnvtest",
                          "message": "approved by the tinylet envtest harness"});
        match csr
            .pointer_mut("/status/conditions")
            .and_then(Value::as_array_mut)
        {
            Some(list) => list.push(cond),
            None => csr["status"] = json!({"conditions": [cond]}),
        }
        self.put(&format!("{path}/approval"), csr)
            .map_err(|e| format!("approve: {e}"))?;
        // No kube-controller-manager: sign with the cluster CA, then publish the certificate.
        let mut csr = self.get(&path).map_err(|e| e.to_string())?;
        let request = csr
            .pointer("/spec/request")
            .and_then(Value::as_str)
            .and_then(pki::base64_decode)
            .ok_or("CSR without a decodable spec.request")?;
        let cert = self
            .pki
            .sign_csr(&request)
            .map_err(|e| format!("sign: {e}"))?;
        csr["status"]["certificate"] = json!(pki::base64_encode(cert.as_bytes()));
        self.put(&format!("{path}/status"), csr)
            .map_err(|e| format!("publish the certificate: {e}"))?;
        Ok(())
    }

    fn down(&self) {
        // Stopped, not gone: connections are accepted by the kernel and then hang, as on a
        // link that went quiet.
        self.signal_apiserver(nix::sys::signal::Signal::SIGSTOP);
    }

    fn up(&self) {
        self.signal_apiserver(nix::sys::signal::Signal::SIGCONT);
    }

    fn node_forbidden(&self, _node: &str) -> Option<Vec<String>> {
        None
    }

    fn diagnostics(&self) -> String {
        format!(
            "--- etcd log (tail) ---\n{}\n--- kube-apiserver log (tail) ---\n{}\n",
            tail(&self.etcd_log, 40),
            tail(&self.apiserver_log, 120)
        )
    }
}
