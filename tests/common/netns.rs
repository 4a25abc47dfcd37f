//! A small lab of network namespaces for real-packet tests of the proxy.
//!
//! Layout (every name starts with `tl-px-<pid>-<n>-`, so parallel tests and other runs never
//! collide; every address lives only inside these namespaces):
//!
//! ```text
//!  client ns  eth0 192.168.77.2 ── veth ── node ns  up0 192.168.77.1
//!                                          node ns  br0 10.244.1.1/24
//!  pod ns i   eth0 10.244.1.(10+i)/32 ── veth vpI ── br0
//! ```
//!
//! Pods carry a /32 with the node as their gateway, so pod-to-pod traffic is routed through
//! the node's IP layer (and its conntrack) without depending on bridge netfilter. Each pod
//! runs busybox `httpd`; `GET /cgi-bin/who` answers `<pod name> <peer address>`.
//! `ip_forward` is set inside the node namespace only. Dropping the lab kills what it started
//! and deletes the namespaces, pass or fail, and checks the host's ruleset is unchanged.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Port every pod's httpd listens on.
pub const POD_PORT: u16 = 8080;
/// The node's address on the outside link.
pub const NODE_OUTSIDE_IP: &str = "192.168.77.1";
/// The node's address on the pod bridge.
pub const NODE_BRIDGE_IP: &str = "10.244.1.1";
/// The outside client's address.
pub const CLIENT_IP: &str = "192.168.77.2";
/// Pod network.
pub const POD_CIDR: &str = "10.244.0.0/16";

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One pod namespace.
#[derive(Debug, Clone)]
pub struct Pod {
    /// Namespace name.
    pub ns: String,
    /// Short name the pod answers with.
    pub name: String,
    /// Its address.
    pub ip: String,
}

/// The namespaces, processes and files of one test.
pub struct Lab {
    /// Name prefix.
    pub prefix: String,
    /// The node namespace.
    pub node: String,
    /// The outside client namespace.
    pub client: String,
    /// Pod namespaces.
    pub pods: Vec<Pod>,
    /// Scratch directory (pod web roots, manifests).
    pub dir: PathBuf,
    namespaces: Vec<String>,
    children: Vec<Child>,
    node_children: Vec<Child>,
    host_ruleset: String,
}

/// Run a command, returning its stdout or an error naming it.
pub fn run(cmd: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `sha256sum` of the host's `nft list ruleset`.
pub fn host_ruleset_hash() -> String {
    let out = Command::new("sh")
        .args(["-c", "nft list ruleset | sha256sum"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out
}

/// Is this machine able to run the lab (root, `ip`, `nft`, busybox)?
pub fn available() -> bool {
    nix::unistd::geteuid().is_root()
        && Path::new("/usr/bin/busybox").exists()
        && run(&["ip", "-V"]).is_ok()
        && run(&["nft", "--version"]).is_ok()
}

const WHO_CGI: &str = "#!/bin/sh\n\
printf 'Content-Type: text/plain\\r\\n\\r\\n'\n\
echo \"$POD_NAME $REMOTE_ADDR\"\n";

impl Lab {
    /// Build the lab with `pods` pod namespaces (each running httpd).
    pub fn new(pods: usize) -> Result<Lab, String> {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("tl-px-{}-{n}-", std::process::id());
        let dir = std::env::temp_dir().join(prefix.trim_end_matches('-'));
        let mut lab = Lab {
            node: format!("{prefix}node"),
            client: format!("{prefix}client"),
            pods: Vec::new(),
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
            node_children: Vec::new(),
            host_ruleset: host_ruleset_hash(),
            prefix,
        };
        // On error the half-built lab is dropped, which removes what was made.
        lab.build(pods)?;
        Ok(lab)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", name])?;
        self.namespaces.push(name.to_string());
        run(&["ip", "-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self, pods: usize) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{:?}: {e}", self.dir))?;
        let node = self.node.clone();
        let client = self.client.clone();
        self.add_ns(&node)?;
        self.add_ns(&client)?;
        let n = node.as_str();
        self.sysctl("net.ipv4.ip_forward", "1")?;
        // Pods share the bridge but are routed through the node: no redirects between them.
        self.sysctl("net.ipv4.conf.all.send_redirects", "0")?;
        self.sysctl("net.ipv4.conf.default.send_redirects", "0")?;
        run(&["ip", "-n", n, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", n, "addr", "add", "10.244.1.1/24", "dev", "br0"])?;
        run(&["ip", "-n", n, "link", "set", "br0", "up"])?;
        run(&[
            "ip", "-n", n, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns",
            &client,
        ])?;
        run(&[
            "ip",
            "-n",
            n,
            "addr",
            "add",
            "192.168.77.1/24",
            "dev",
            "up0",
        ])?;
        run(&["ip", "-n", n, "link", "set", "up0", "up"])?;
        // Service addresses need a route for locally made connections to reach the output
        // hook; the node's default route points at the outside link, as on a real node.
        run(&["ip", "-n", n, "route", "add", "default", "via", CLIENT_IP])?;
        let c = client.as_str();
        run(&[
            "ip",
            "-n",
            c,
            "addr",
            "add",
            "192.168.77.2/24",
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", c, "link", "set", "eth0", "up"])?;
        for i in 0..pods {
            self.add_pod(i)?;
        }
        Ok(())
    }

    fn add_pod(&mut self, i: usize) -> Result<(), String> {
        let name = format!("pod{i}");
        let ns = format!("{}{name}", self.prefix);
        let ip = format!("10.244.1.{}", 10 + i);
        self.add_ns(&ns)?;
        let vp = format!("vp{i}");
        run(&[
            "ip", "-n", &self.node, "link", "add", &vp, "type", "veth", "peer", "name", "eth0",
            "netns", &ns,
        ])?;
        run(&["ip", "-n", &self.node, "link", "set", &vp, "master", "br0"])?;
        // As a bridge CNI plugin with hairpinMode does: with bridge netfilter on, a pod's
        // connection DNATed back to itself leaves through the port it came in on.
        run(&[
            "ip",
            "-n",
            &self.node,
            "link",
            "set",
            &vp,
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ])?;
        run(&["ip", "-n", &self.node, "link", "set", &vp, "up"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip}/32"),
            "dev",
            "eth0",
        ])?;
        run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            NODE_BRIDGE_IP,
            "dev",
            "eth0",
        ])?;
        run(&[
            "ip",
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            NODE_BRIDGE_IP,
        ])?;
        let pod = Pod { ns, name, ip };
        self.start_httpd(&pod)?;
        self.pods.push(pod);
        Ok(())
    }

    /// Serve `/cgi-bin/who` from the pod's namespace (killed when the lab is dropped) and
    /// wait, bounded, until it answers on its own address.
    fn start_httpd(&mut self, pod: &Pod) -> Result<(), String> {
        let (ns, name) = (&pod.ns, &pod.name);
        let root = self.dir.join(name);
        let cgi = root.join("cgi-bin");
        std::fs::create_dir_all(&cgi).map_err(|e| format!("{cgi:?}: {e}"))?;
        let script = cgi.join("who");
        std::fs::write(&script, WHO_CGI).map_err(|e| format!("{script:?}: {e}"))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{script:?}: {e}"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "/usr/bin/busybox", "httpd", "-f"])
            .arg("-p")
            .arg(POD_PORT.to_string())
            .arg("-h")
            .arg(&root)
            .env("POD_NAME", name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("start httpd in {ns}: {e}"))?;
        self.children.push(child);
        // Bounded wait for the server to answer on its own address.
        let url = format!("http://127.0.0.1:{POD_PORT}/cgi-bin/who");
        for _ in 0..50 {
            if self.get_in(ns, &url).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("httpd in {ns} did not answer"))
    }

    /// A second node for cross-node paths, with one pod `far0` (10.244.2.10) behind it:
    ///
    /// ```text
    ///  node ns  n2a 192.168.78.1 ── veth ── node2 ns  n2b 192.168.78.2
    ///  node2 ns fp0 10.244.2.1 ── veth ── far pod ns  eth0 10.244.2.10/32
    ///  node2 ns up0 192.168.79.1 ── veth ── client ns eth1 192.168.79.2
    /// ```
    ///
    /// The node routes 10.244.2.0/24 through node2 and node2 routes 10.244.1.0/24 back, as
    /// a CNI's host routes would; node2's default route goes straight to the client, so a
    /// reply that was not masqueraded on the node takes the other path and never reaches
    /// the connection the client made.
    pub fn add_remote_node(&mut self) -> Result<Pod, String> {
        let node2 = format!("{}node2", self.prefix);
        let ns = format!("{}far0", self.prefix);
        self.add_ns(&node2)?;
        self.add_ns(&ns)?;
        let (n1, n2, c) = (self.node.clone(), node2.as_str(), self.client.clone());
        run(&[
            "ip",
            "netns",
            "exec",
            n2,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ])?;
        run(&[
            "ip", "-n", &n1, "link", "add", "n2a", "type", "veth", "peer", "name", "n2b", "netns",
            n2,
        ])?;
        run(&[
            "ip", "-n", n2, "link", "add", "up0", "type", "veth", "peer", "name", "eth1", "netns",
            &c,
        ])?;
        run(&[
            "ip", "-n", n2, "link", "add", "fp0", "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        for (netns, addr, dev) in [
            (n1.as_str(), "192.168.78.1/24", "n2a"),
            (n2, "192.168.78.2/24", "n2b"),
            (n2, "192.168.79.1/24", "up0"),
            (n2, "10.244.2.1/32", "fp0"),
            (c.as_str(), "192.168.79.2/24", "eth1"),
            (ns.as_str(), "10.244.2.10/32", "eth0"),
        ] {
            run(&["ip", "-n", netns, "addr", "add", addr, "dev", dev])?;
            run(&["ip", "-n", netns, "link", "set", dev, "up"])?;
        }
        for (netns, route) in [
            (n1.as_str(), &["10.244.2.0/24", "via", "192.168.78.2"][..]),
            (n2, &["10.244.1.0/24", "via", "192.168.78.1"][..]),
            (n2, &["10.244.2.10", "dev", "fp0"][..]),
            (n2, &["default", "via", "192.168.79.2"][..]),
            (ns.as_str(), &["10.244.2.1", "dev", "eth0"][..]),
            (ns.as_str(), &["default", "via", "10.244.2.1"][..]),
        ] {
            let mut cmd = vec!["ip", "-n", netns, "route", "add"];
            cmd.extend_from_slice(route);
            run(&cmd)?;
        }
        let pod = Pod {
            ns,
            name: "far0".to_string(),
            ip: "10.244.2.10".to_string(),
        };
        self.start_httpd(&pod)?;
        Ok(pod)
    }

    /// IPv6 beside IPv4 on the node, the client and the pods made so far (addresses without
    /// duplicate detection, so they work at once): the node fd00:77::1 on the outside link
    /// and fd00:10:244:1::1/64 on the bridge, the client fd00:77::2, pod i
    /// fd00:10:244:1::(10+i)/128 routed through the node, as in IPv4.
    pub fn enable_ipv6(&mut self) -> Result<(), String> {
        let (n, c) = (self.node.clone(), self.client.clone());
        for ns in std::iter::once(&n)
            .chain(std::iter::once(&c))
            .chain(self.pods.iter().map(|p| &p.ns))
        {
            run(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=0",
            ])?;
        }
        run(&[
            "ip",
            "netns",
            "exec",
            &n,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.forwarding=1",
        ])?;
        for (ns, addr, dev) in [
            (n.as_str(), "fd00:77::1/64", "up0"),
            (n.as_str(), "fd00:10:244:1::1/64", "br0"),
            (c.as_str(), "fd00:77::2/64", "eth0"),
        ] {
            run(&["ip", "-n", ns, "addr", "add", addr, "dev", dev, "nodad"])?;
        }
        run(&[
            "ip",
            "-n",
            &n,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:77::2",
        ])?;
        run(&[
            "ip",
            "-n",
            &c,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:77::1",
        ])?;
        for (i, pod) in self.pods.iter().enumerate() {
            let addr = format!("fd00:10:244:1::{}/128", 10 + i);
            run(&[
                "ip", "-n", &pod.ns, "addr", "add", &addr, "dev", "eth0", "nodad",
            ])?;
            for route in [
                ["fd00:10:244:1::1", "dev", "eth0"],
                ["default", "via", "fd00:10:244:1::1"],
            ] {
                let mut cmd = vec!["ip", "-n", &pod.ns, "-6", "route", "add"];
                cmd.extend_from_slice(&route);
                run(&cmd)?;
            }
        }
        Ok(())
    }

    /// Set a sysctl inside the node namespace only.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<(), String> {
        run(&[
            "ip",
            "netns",
            "exec",
            &self.node,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ])
        .map(|_| ())
    }

    /// `GET url` from namespace `ns` (3 s timeout): the body, or the error text.
    pub fn get_in(&self, ns: &str, url: &str) -> Result<String, String> {
        // busybox 1.35's own `wget -T` crashes; coreutils' timeout bounds the wait instead.
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "timeout",
                "3",
                "/usr/bin/busybox",
                "wget",
                "-q",
            ])
            .args(["-O", "-", url])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("wget in {ns}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Ask `/cgi-bin/who` at `addr:port` from `ns`: (pod name, peer address it saw).
    pub fn who(&self, ns: &str, addr: &str, port: u16) -> Result<(String, String), String> {
        let body = self.get_in(ns, &format!("http://{addr}:{port}/cgi-bin/who"))?;
        let mut it = body.split_whitespace();
        match (it.next(), it.next()) {
            // httpd listens on IPv6 and reports IPv4 peers as `[::ffff:a.b.c.d]`.
            (Some(n), Some(p)) => {
                let p = p.trim_start_matches('[').trim_end_matches(']');
                let p = p.strip_prefix("::ffff:").unwrap_or(p);
                Ok((n.to_string(), p.to_string()))
            }
            _ => Err(format!("unexpected answer {body:?}")),
        }
    }

    /// Start a process inside the node namespace (killed when the lab is dropped).
    pub fn spawn_in_node(&mut self, cmd: &mut Command) -> Result<(), String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("start {cmd:?} in {}: {e}", self.node))?;
        self.node_children.push(child);
        Ok(())
    }

    /// Stop what [`Lab::spawn_in_node`] started (and wait for it).
    pub fn stop_node_processes(&mut self) {
        for c in &mut self.node_children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.node_children.clear();
    }

    /// A command prefixed with `ip netns exec <node>`.
    pub fn node_command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node]).arg(program);
        c
    }

    /// `nft list ruleset` inside the node namespace.
    pub fn node_ruleset(&self) -> Result<String, String> {
        run(&["ip", "netns", "exec", &self.node, "nft", "list", "ruleset"])
    }

    fn teardown(&mut self) {
        self.stop_node_processes();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.children.clear();
        for ns in self.namespaces.drain(..).rev() {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let leftover: Vec<String> = self.namespaces.clone();
        self.teardown();
        let after = host_ruleset_hash();
        let gone = run(&["ip", "netns", "list"]).unwrap_or_default();
        if !std::thread::panicking() {
            assert_eq!(
                after, self.host_ruleset,
                "the host's own ruleset changed during the test"
            );
            for ns in leftover {
                assert!(!gone.contains(&ns), "namespace {ns} was left behind");
            }
        }
    }
}
