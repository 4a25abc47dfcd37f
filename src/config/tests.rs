use std::path::Path;

use super::*;

fn resolve_text(flags: &FlagOverrides, text: &str) -> Result<Resolved, ConfigError> {
    resolve_from(flags, Some((Path::new("/etc/tinylet/config.yaml"), text)))
}

#[test]
fn every_board_parses_without_warnings() {
    assert_eq!(
        board_names(),
        [
            "dev-host",
            "generic-aarch64-gateway",
            "raspberry-pi-3",
            "raspberry-pi-4",
            "raspberry-pi-5",
            "raspberry-pi-zero-2w"
        ]
    );
    for b in boards() {
        assert!(b.yaml.starts_with('#'), "{} has no comment", b.name);
        let flags = FlagOverrides {
            board: Some(b.name.to_string()),
            ..Default::default()
        };
        let r = resolve_from(&flags, None).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert!(r.warnings.is_empty(), "{}: {:?}", b.name, r.warnings);
        let c = &r.config;
        assert_eq!(c.board, b.name);
        assert_eq!(c.node_labels["tinylet.io/board"], b.name);
        assert_eq!(
            c.container_runtime_endpoint,
            "unix:///run/containerd/containerd.sock"
        );
        assert_eq!(c.cgroup_driver, CgroupDriver::Cgroupfs);
        assert!(c.image_gc_low_threshold_percent < c.image_gc_high_threshold_percent);
        assert_eq!(c.offline_autonomy, b.name != "dev-host", "{}", b.name);
        if b.name != "dev-host" {
            assert!(c.system_reserved.memory_bytes > 0, "{}", b.name);
            assert!(c.max_pods < 110, "{}", b.name);
        }
        if c.pod_logs_dir.starts_with("/run") {
            // Logs on tmpfs are RAM: each container's files stay within 10 MiB together.
            let per_container = c.container_log_max_size * u64::from(c.container_log_max_files);
            assert!(per_container <= 10 << 20, "{}: {per_container}", b.name);
        }
    }
}

#[test]
fn embedded_default_is_dev_host() {
    let c = resolve_from(&FlagOverrides::default(), None)
        .unwrap()
        .config;
    assert_eq!(c.board, "dev-host");
    assert_eq!(c.root_dir, Path::new("/var/lib/tinylet"));
    assert_eq!(
        c.container_runtime_endpoint,
        "unix:///run/containerd/containerd.sock"
    );
    assert_eq!(
        c.static_pod_path.as_deref(),
        Some(Path::new("/etc/tinylet/manifests"))
    );
    assert_eq!(c.proxy_mode, ProxyMode::Disabled);
    assert_eq!(c.file_check_frequency, Duration::from_secs(20));
    assert_eq!(c.sync_frequency, Duration::from_secs(60));
    assert_eq!(c.node_lease_duration_seconds, 40);
    assert_eq!(c.cert_dir(), Path::new("/var/lib/tinylet/pki"));
    assert_eq!(
        c.eviction_hard["nodefs.available"],
        EvictionThreshold::Percent {
            milli_percent: 10_000
        }
    );
    assert_eq!(c.node_name("Pi-Kitchen\n"), "pi-kitchen");
}

#[test]
fn precedence_default_board_file_flags() {
    let file = "\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
maxPods: 12
syncFrequency: 1m30s
systemReserved: {memory: 200Mi}
tinylet:
  board: raspberry-pi-4
  rootDir: /data/tl
  nodeLabels: {site: kitchen}
";
    // Board from the file; file beats board; dev-host fills the rest.
    let c = resolve_text(&FlagOverrides::default(), file)
        .unwrap()
        .config;
    assert_eq!(c.board, "raspberry-pi-4");
    assert_eq!(c.max_pods, 12);
    assert_eq!(c.sync_frequency, Duration::from_secs(90));
    assert_eq!(c.root_dir, Path::new("/data/tl"));
    assert_eq!(c.image_gc_high_threshold_percent, 80); // board
    assert_eq!(c.pod_pids_limit, 2048); // board
    assert_eq!(c.container_log_max_size, 2 << 20); // board
    assert_eq!(c.container_log_max_files, 5); // board
    assert_eq!(c.cluster_domain, "cluster.local"); // dev-host
    assert_eq!(c.system_reserved.memory_bytes, 200 << 20);
    assert_eq!(c.system_reserved.cpu_millis, 0); // maps replace, not merge
    assert_eq!(c.node_labels["tinylet.io/board"], "raspberry-pi-4");
    assert_eq!(c.node_labels["site"], "kitchen");
    assert_eq!(
        c.config_file.as_deref(),
        Some(Path::new("/etc/tinylet/config.yaml"))
    );

    // Flags beat everything, including the board choice.
    let flags = FlagOverrides {
        board: Some("raspberry-pi-zero-2w".into()),
        root_dir: Some("/mnt/flash/tl".into()),
        pod_manifest_path: Some("".into()),
        container_runtime_endpoint: Some("unix:///run/k3s/containerd/containerd.sock".into()),
        node_labels: Some("site=garage, rack=2".into()),
        register_with_taints: Some("edge=true:NoSchedule,dedicated:NoExecute".into()),
        node_ip: Some("192.168.1.5,fd00::5".into()),
        verbosity: Some(3),
        offline_autonomy: Some(false),
        proxy_mode: Some("none".into()),
        hostname_override: Some("Garage-Pi".into()),
        ..Default::default()
    };
    let c = resolve_text(&flags, file).unwrap().config;
    assert_eq!(c.board, "raspberry-pi-zero-2w");
    assert_eq!(c.image_gc_high_threshold_percent, 70);
    assert_eq!(c.max_pods, 12);
    assert_eq!(c.root_dir, Path::new("/mnt/flash/tl"));
    assert_eq!(c.static_pod_path, None);
    assert_eq!(
        c.container_runtime_endpoint,
        "unix:///run/k3s/containerd/containerd.sock"
    );
    assert_eq!(c.node_labels["site"], "garage");
    assert_eq!(c.node_labels["rack"], "2");
    assert_eq!(c.node_labels["tinylet.io/board"], "raspberry-pi-zero-2w");
    assert_eq!(c.register_with_taints.len(), 2);
    assert_eq!(c.register_with_taints[1].key, "dedicated");
    assert_eq!(c.register_with_taints[1].effect, "NoExecute");
    assert_eq!(c.node_ips.len(), 2);
    assert_eq!(c.verbosity, 3);
    assert!(!c.offline_autonomy);
    assert_eq!(c.proxy_mode, ProxyMode::Disabled);
    assert_eq!(c.node_name("ignored"), "garage-pi");
}

#[test]
fn unknown_fields_are_warnings_naming_the_path() {
    let file = "\
kind: KubeletConfiguration
apiVersion: kubelet.config.k8s.io/v1beta1
featureGates: {SomeGate: true}
maxPods: 20
systemReserved: {cpu: 100m, gpu: 1}
tinylet:
  rootDir: /var/lib/tinylet
  turbo: true
";
    let r = resolve_text(&FlagOverrides::default(), file).unwrap();
    let fields: Vec<String> = r
        .warnings
        .iter()
        .map(|w| match w {
            ConfigWarning::UnknownField { field, .. } => field.clone(),
        })
        .collect();
    assert_eq!(
        fields,
        ["featureGates", "tinylet.turbo", "systemReserved.gpu"]
    );
    assert_eq!(r.config.max_pods, 20);
    let msg = r.warnings[1].to_string();
    assert!(
        msg.contains("/etc/tinylet/config.yaml") && msg.contains("tinylet.turbo"),
        "{msg}"
    );
}

#[test]
fn bad_duration_error_names_the_field() {
    let e = resolve_text(&FlagOverrides::default(), "syncFrequency: 10x\n").unwrap_err();
    match &e {
        ConfigError::Field { field, source, .. } => {
            assert_eq!(field, "syncFrequency");
            assert_eq!(
                source,
                &ConfigSource::File("/etc/tinylet/config.yaml".into())
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains("syncFrequency") && msg.contains("10x"),
        "{msg}"
    );

    // A bare number is not a duration (Go needs a unit), and the error says which field.
    let e = resolve_text(&FlagOverrides::default(), "fileCheckFrequency: 20\n").unwrap_err();
    assert!(
        matches!(&e, ConfigError::Field { field, .. } if field == "fileCheckFrequency"),
        "{e:?}"
    );
    // A wrong type is reported by the decoder, still naming the field.
    let e = resolve_text(&FlagOverrides::default(), "maxPods: many\n").unwrap_err();
    match &e {
        ConfigError::Syntax { field, line, .. } => {
            assert_eq!(field.as_deref(), Some("maxPods"), "{e}");
            assert_eq!(*line, Some(1));
        }
        other => panic!("{other:?}"),
    }
    let e = resolve_text(
        &FlagOverrides::default(),
        "tinylet:\n  offlineAutonomy: maybe\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("tinylet.offlineAutonomy"), "{e}");
}

#[test]
fn bad_values_name_source_and_field() {
    let cases = [
        ("cgroupDriver: systemd\n", "cgroupDriver"),
        ("maxPods: 0\n", "maxPods"),
        (
            "imageGCHighThresholdPercent: 101\n",
            "imageGCHighThresholdPercent",
        ),
        (
            // Not below the high threshold (the default board's 100).
            "imageGCLowThresholdPercent: 100\n",
            "imageGCLowThresholdPercent",
        ),
        ("systemReserved: {memory: 1XB}\n", "systemReserved.memory"),
        (
            "evictionHard: {nodefs.available: 120%}\n",
            "evictionHard.nodefs.available",
        ),
        ("clusterDNS: [10.0.0.10, dns]\n", "clusterDNS[1]"),
        ("containerLogMaxSize: 0\n", "containerLogMaxSize"),
        ("containerLogMaxSize: ten\n", "containerLogMaxSize"),
        ("containerLogMaxFiles: 1\n", "containerLogMaxFiles"),
        (
            "containerLogMonitorInterval: 1s\n",
            "containerLogMonitorInterval",
        ),
        (
            "registerWithTaints: [{key: a, effect: Sometimes}]\n",
            "registerWithTaints[0]",
        ),
        ("tinylet: {proxyMode: iptables}\n", "tinylet.proxyMode"),
        ("tinylet: {rootDir: relative}\n", "tinylet.rootDir"),
        ("tinylet: {logLevel: loud}\n", "tinylet.logLevel"),
        ("kind: Pod\n", "kind"),
        (
            "nodeStatusUpdateFrequency: 1m\n",
            "nodeStatusUpdateFrequency",
        ),
        ("shutdownGracePeriod: soon\n", "shutdownGracePeriod"),
        (
            "shutdownGracePeriod: 10s\nshutdownGracePeriodCriticalPods: 20s\n",
            "shutdownGracePeriodCriticalPods",
        ),
        (
            "shutdownGracePeriodCriticalPods: 5s\n",
            "shutdownGracePeriodCriticalPods",
        ),
    ];
    for (text, field) in cases {
        match resolve_text(&FlagOverrides::default(), text) {
            Err(ConfigError::Field { field: f, .. }) => assert_eq!(f, field, "{text}"),
            other => panic!("{text}: {other:?}"),
        }
    }
    let flag_cases = [
        (
            FlagOverrides {
                node_ip: Some("10.0.0.1,10.0.0.2".into()),
                ..Default::default()
            },
            "--node-ip",
        ),
        (
            FlagOverrides {
                node_labels: Some("novalue".into()),
                ..Default::default()
            },
            "--node-labels",
        ),
        (
            FlagOverrides {
                register_with_taints: Some("a=b".into()),
                ..Default::default()
            },
            "--register-with-taints",
        ),
        (
            FlagOverrides {
                root_dir: Some("rel".into()),
                ..Default::default()
            },
            "--root-dir",
        ),
    ];
    for (flags, field) in flag_cases {
        match resolve_from(&flags, None) {
            Err(ConfigError::Field {
                field: f, source, ..
            }) => {
                assert_eq!(f, field);
                assert_eq!(source, ConfigSource::CommandLine);
            }
            other => panic!("{field}: {other:?}"),
        }
    }
}

#[test]
fn unknown_board_and_syntax_errors() {
    let flags = FlagOverrides {
        board: Some("raspberry-pi-9".into()),
        ..Default::default()
    };
    let e = resolve_from(&flags, None).unwrap_err();
    assert!(matches!(e, ConfigError::UnknownBoard { .. }));
    assert!(e.to_string().contains("raspberry-pi-4"), "{e}");
    let e = resolve_text(&FlagOverrides::default(), "maxPods: [\n").unwrap_err();
    assert!(
        matches!(e, ConfigError::Syntax { line: Some(_), .. }),
        "{e:?}"
    );
    // An empty file is an empty layer.
    assert!(resolve_text(&FlagOverrides::default(), "").is_ok());
    assert!(resolve_text(&FlagOverrides::default(), "# only a comment\n").is_ok());
}

#[test]
fn resolve_reads_the_file_and_reports_a_missing_one() {
    let flags = FlagOverrides {
        config: Some("/nonexistent/tinylet.yaml".into()),
        ..Default::default()
    };
    assert!(matches!(resolve(&flags), Err(ConfigError::Read { .. })));
}

#[test]
fn eviction_percentages_are_exact() {
    let c = resolve_text(
        &FlagOverrides::default(),
        "evictionHard: {memory.available: 50Mi, nodefs.available: 7.5%}\n",
    )
    .unwrap()
    .config;
    assert_eq!(c.eviction_hard.len(), 2);
    assert_eq!(
        c.eviction_hard["memory.available"],
        EvictionThreshold::Quantity(50 << 20)
    );
    assert_eq!(
        c.eviction_hard["nodefs.available"],
        EvictionThreshold::Percent {
            milli_percent: 7_500
        }
    );
}

#[test]
fn kubelet_api_fields_and_flags() {
    // Defaults: port 10250, token webhook on, Webhook authorization, anonymous off.
    let d = AgentConfig::default().kubelet_api;
    assert_eq!(d.port, 10250);
    assert!(d.token_webhook && !d.anonymous_auth);
    assert_eq!(d.authorization_mode, AuthorizationMode::Webhook);
    assert_eq!(
        (
            d.token_webhook_cache_ttl,
            d.authorized_ttl,
            d.unauthorized_ttl
        ),
        (
            Duration::from_secs(120),
            Duration::from_secs(300),
            Duration::from_secs(30)
        )
    );
    assert_eq!(d.healthz_port, 10248);
    assert_eq!(d.healthz_bind_address, IpAddr::from([127, 0, 0, 1]));
    assert!(!d.server_tls_bootstrap);
    let file = "\
address: 127.0.0.1
serverTLSBootstrap: true
port: 11250
healthzPort: 11248
healthzBindAddress: 0.0.0.0
tlsCertFile: /etc/tl/kubelet.crt
tlsPrivateKeyFile: /etc/tl/kubelet.key
authentication:
  x509: {clientCAFile: /etc/tl/ca.crt}
  webhook: {enabled: false, cacheTTL: 10s}
  anonymous: {enabled: true}
authorization:
  mode: AlwaysAllow
  webhook: {cacheAuthorizedTTL: 1m, cacheUnauthorizedTTL: 5s}
";
    let r = resolve_text(&FlagOverrides::default(), file).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let c = r.config;
    let a = &c.kubelet_api;
    assert_eq!(c.address.as_deref(), Some("127.0.0.1"));
    assert_eq!(a.port, 11250);
    assert_eq!(a.healthz_port, 11248);
    assert_eq!(a.healthz_bind_address, IpAddr::from([0, 0, 0, 0]));
    assert_eq!(a.client_ca_file, Some("/etc/tl/ca.crt".into()));
    assert!(!a.token_webhook && a.anonymous_auth);
    assert!(a.server_tls_bootstrap);
    assert_eq!(a.token_webhook_cache_ttl, Duration::from_secs(10));
    assert_eq!(a.authorization_mode, AuthorizationMode::AlwaysAllow);
    assert_eq!(
        (a.authorized_ttl, a.unauthorized_ttl),
        (Duration::from_secs(60), Duration::from_secs(5))
    );
    // Flags win over the file.
    let flags = FlagOverrides {
        address: Some("0.0.0.0".into()),
        port: Some("0".into()),
        anonymous_auth: Some(false),
        authentication_token_webhook: Some(true),
        authorization_mode: Some("Webhook".into()),
        client_ca_file: Some("/x/ca.crt".into()),
        healthz_port: Some("0".into()),
        healthz_bind_address: Some("::1".into()),
        rotate_server_certificates: Some(false),
        ..Default::default()
    };
    let c = resolve_text(&flags, file).unwrap().config;
    assert!(!c.kubelet_api.server_tls_bootstrap);
    assert_eq!(c.kubelet_api.port, 0);
    assert!(!c.kubelet_api.anonymous_auth && c.kubelet_api.token_webhook);
    assert_eq!(c.kubelet_api.authorization_mode, AuthorizationMode::Webhook);
    assert_eq!(c.kubelet_api.client_ca_file, Some("/x/ca.crt".into()));
    assert_eq!(c.kubelet_api.healthz_port, 0);
    assert_eq!(
        c.kubelet_api.healthz_bind_address,
        "::1".parse::<IpAddr>().unwrap()
    );
    // Bad values name the flag or field.
    for (flags, text, want) in [
        (
            FlagOverrides {
                port: Some("70000".into()),
                ..Default::default()
            },
            "",
            "--port",
        ),
        (
            FlagOverrides {
                authorization_mode: Some("RBAC".into()),
                ..Default::default()
            },
            "",
            "--authorization-mode",
        ),
        (FlagOverrides::default(), "port: -1\n", "port"),
        (
            FlagOverrides::default(),
            "healthzBindAddress: here\n",
            "healthzBindAddress",
        ),
        (
            FlagOverrides::default(),
            "authorization: {mode: Node}\n",
            "authorization.mode",
        ),
        (
            FlagOverrides::default(),
            "tlsCertFile: /a.crt\n",
            "tlsCertFile",
        ),
    ] {
        let e = resolve_text(&flags, text).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
    }
}

#[test]
fn proxy_mode_nftables_parses() {
    assert_eq!(ProxyMode::parse("nftables"), Some(ProxyMode::Nftables));
    assert_eq!(ProxyMode::parse("ipvs"), Some(ProxyMode::Ipvs));
    assert_eq!(ProxyMode::parse("iptables"), None);
}

#[test]
fn shutdown_grace_periods_default_off_and_parse() {
    let d = resolve_text(&FlagOverrides::default(), "").unwrap().config;
    assert_eq!(d.shutdown_grace_period, Duration::ZERO);
    assert_eq!(d.shutdown_grace_period_critical_pods, Duration::ZERO);
    let r = resolve_text(
        &FlagOverrides::default(),
        "shutdownGracePeriod: 30s\nshutdownGracePeriodCriticalPods: 10s\n",
    )
    .unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert_eq!(r.config.shutdown_grace_period, Duration::from_secs(30));
    assert_eq!(
        r.config.shutdown_grace_period_critical_pods,
        Duration::from_secs(10)
    );
}
