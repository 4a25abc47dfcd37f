//! The CRI client against the real containerd of the test bed (tests/bed/up.sh).
//! Every test skips loudly without the bed and removes what it creates, even on failure.

#[path = "common/cri_bed.rs"]
mod cri_bed;

use std::path::Path;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use cri_bed::*;
use tinylet::cri::proto::*;

/// The restart test takes this exclusively so no other test here has a call cut in half.
static RESTART: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    RESTART.read().unwrap_or_else(|e| e.into_inner())
}

fn exclusive() -> RwLockWriteGuard<'static, ()> {
    RESTART.write().unwrap_or_else(|e| e.into_inner())
}

fn running(state: i32) -> bool {
    state == ContainerState::ContainerRunning as i32
}

#[test]
fn version_and_status() {
    let _g = shared();
    let Some(bed) = Bed::get("version_and_status") else {
        return;
    };
    let client = bed.client();
    smol::block_on(async {
        let v = client.version().await.unwrap();
        assert_eq!(v.runtime_name, "containerd");
        assert_eq!(v.runtime_api_version, "v1");
        let s = client.status(false).await.unwrap();
        let conditions = s.status.unwrap().conditions;
        assert!(
            conditions
                .iter()
                .any(|c| c.condition_type == "RuntimeReady" && c.status),
            "{conditions:?}"
        );
        let fs = client.image_fs_info().await.unwrap();
        assert!(!fs.image_filesystems.is_empty());
    });
}

/// Image id of `image`, if the runtime has it.
async fn image_id(client: &tinylet::cri::CriClient, image: &str) -> Option<String> {
    client
        .image_status(image, false)
        .await
        .unwrap()
        .image
        .map(|i| i.id)
}

/// Drops only the references of the pull image, keeping content another name may share.
fn untag_pull_image(endpoint: &str, image: &str, digests: &[String]) {
    let socket = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    let mut refs = vec![image.to_owned()];
    refs.extend(digests.iter().cloned());
    let out = Command::new("ctr")
        .args(["-a", socket, "-n", "k8s.io", "images", "rm"])
        .args(&refs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn pull_image_from_loopback_registry() {
    // Exclusive: removing an image may take names other tests use with it.
    let _g = exclusive();
    let Some(bed) = Bed::get("pull_image_from_loopback_registry") else {
        return;
    };
    let client = bed.client();
    smol::block_on(async {
        let image = bed.pull_image.as_str();
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        };
        // RemoveImage removes every name of an image id. When the bed's pull image has the same
        // id as its test image, RemoveImage would delete the test image for everyone; then only
        // the pull image's own names are dropped (the pull still resolves over the registry).
        let shared_id = match (
            image_id(&client, image).await,
            image_id(&client, &bed.test_image).await,
        ) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        };
        if shared_id {
            eprintln!(
                "NOTE: {image} has the same image id as {}: RemoveImage would remove both; \
                 untagging it instead (make the bed's pull image distinct to test RemoveImage)",
                bed.test_image
            );
            let status = client
                .image_status(image, false)
                .await
                .unwrap()
                .image
                .unwrap();
            untag_pull_image(&bed.endpoint, image, &status.repo_digests);
            let gone = wait_for(Duration::from_secs(5), || async {
                image_id(&client, image).await.is_none().then_some(())
            })
            .await;
            assert!(gone.is_some(), "{image} still present after untagging");
        } else {
            // A real pull over the wire, not a no-op on a cached image.
            client.remove_image(image).await.unwrap();
        }
        assert!(client
            .image_status(image, false)
            .await
            .unwrap()
            .image
            .is_none());
        let start = Instant::now();
        let image_ref = client.pull_image(&req).await.unwrap().image_ref;
        eprintln!("pulled {image} as {image_ref} in {:?}", start.elapsed());
        assert!(image_ref.starts_with("sha256:"), "{image_ref}");
        let status = client.image_status(image, false).await.unwrap();
        let found = status.image.expect("image present after pull");
        assert_eq!(found.id, image_ref);
        assert!(found.size > 0);
        assert!(
            found.repo_tags.iter().any(|t| t == image),
            "{:?}",
            found.repo_tags
        );
        let all = client.list_images(None).await.unwrap();
        assert!(all.images.iter().any(|i| i.id == image_ref));
        if !shared_id {
            client.remove_image(image).await.unwrap();
            assert!(client
                .image_status(image, false)
                .await
                .unwrap()
                .image
                .is_none());
            // Leave the bed as we found it: the image pulled.
            client.pull_image(&req).await.unwrap();
        }
        // RemoveImage of an absent image is not an error (idempotent).
        let missing = format!(
            "{}/tinylet/never-pulled:{}",
            bed.registry,
            std::process::id()
        );
        client.remove_image(&missing).await.unwrap();
        assert!(image_id(&client, &bed.test_image).await.is_some());
    });
}

#[test]
fn unknown_image_and_objects_are_not_found() {
    let _g = shared();
    let Some(bed) = Bed::get("unknown_image_and_objects_are_not_found") else {
        return;
    };
    let client = bed.client();
    smol::block_on(async {
        let missing = format!(
            "{}/tinylet/does-not-exist:{}",
            bed.registry,
            std::process::id()
        );
        let req = PullImageRequest {
            image: Some(ImageSpec {
                image: missing.clone(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = client.pull_image(&req).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.call(), "PullImage");
        assert_eq!(err.object(), missing);
        assert!(err.to_string().contains(&missing));
        let err = client
            .container_status("no-such-container", false)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        assert_eq!(err.object(), "no-such-container");
        let err = client
            .pod_sandbox_status("no-such-sandbox", false)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
    });
}

#[test]
fn sandbox_create_status_stop_remove() {
    let _g = shared();
    let Some(bed) = Bed::get("sandbox_create_status_stop_remove") else {
        return;
    };
    let client = bed.client();
    let name = unique("sandbox-lifecycle");
    smol::block_on(async {
        let config = sandbox_config(&name, true, &[("tinylet-test", &name)]);
        let sandbox = SandboxGuard::run(&client, config).await;
        let status = client.pod_sandbox_status(&sandbox.id, false).await.unwrap();
        let status = status.status.unwrap();
        assert_eq!(status.id, sandbox.id);
        assert_eq!(status.state, PodSandboxState::SandboxReady as i32);
        assert_eq!(status.metadata.unwrap().name, name);
        assert_eq!(status.labels.get("tinylet-test"), Some(&name));
        assert!(status.created_at > 0);
        let ns = status.linux.unwrap().namespaces.unwrap().options.unwrap();
        assert_eq!(ns.network, NamespaceMode::Node as i32);

        client.stop_pod_sandbox(&sandbox.id).await.unwrap();
        client.stop_pod_sandbox(&sandbox.id).await.unwrap();
        let status = client.pod_sandbox_status(&sandbox.id, false).await.unwrap();
        assert_eq!(
            status.status.unwrap().state,
            PodSandboxState::SandboxNotready as i32
        );
        client.remove_pod_sandbox(&sandbox.id).await.unwrap();
        let err = client
            .pod_sandbox_status(&sandbox.id, false)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err}");
        // Idempotent, and what the guard will do again.
        client.remove_pod_sandbox(&sandbox.id).await.unwrap();
    });
}

#[test]
fn pod_network_sandbox_gets_an_ip() {
    let _g = shared();
    let Some(bed) = Bed::get("pod_network_sandbox_gets_an_ip") else {
        return;
    };
    let client = bed.client();
    let name = unique("pod-network");
    smol::block_on(async {
        let sandbox = SandboxGuard::run(&client, sandbox_config(&name, false, &[])).await;
        let status = client.pod_sandbox_status(&sandbox.id, false).await.unwrap();
        let network = status.status.unwrap().network.unwrap();
        let ip: std::net::IpAddr = network.ip.parse().unwrap();
        assert!(!ip.is_loopback() && !ip.is_unspecified(), "{ip}");
        eprintln!("pod IP {ip}");
    });
}

#[test]
fn container_writes_into_host_path_mount() {
    let _g = shared();
    let Some(bed) = Bed::get("container_writes_into_host_path_mount") else {
        return;
    };
    let client = bed.client();
    let name = unique("hostpath");
    let scratch = bed.scratch(&name);
    let logs = scratch.0.join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let data = scratch.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    smol::block_on(async {
        let mut config = sandbox_config(&name, true, &[]);
        config.log_directory = logs.display().to_string();
        let sandbox = SandboxGuard::run(&client, config).await;
        let mut cc = container_config(
            "writer",
            &bed.test_image,
            "echo \"hello $GREETING\" > /data/out.txt; echo logged; exec sleep 3600",
        );
        cc.mounts = vec![Mount {
            container_path: "/data".into(),
            host_path: data.display().to_string(),
            ..Default::default()
        }];
        cc.envs = vec![KeyValue {
            key: "GREETING".into(),
            value: "from tinylet".into(),
        }];
        cc.log_path = "writer.log".into();
        let id = sandbox.create(cc).await;
        let created = client
            .container_status(&id, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(created.state, ContainerState::ContainerCreated as i32);
        client.start_container(&id).await.unwrap();

        let out = data.join("out.txt");
        let text = wait_for(Duration::from_secs(10), || async {
            std::fs::read_to_string(&out)
                .ok()
                .filter(|t| t.ends_with('\n'))
        })
        .await
        .expect("container wrote the file");
        assert_eq!(text, "hello from tinylet\n");

        let status = client
            .container_status(&id, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert!(running(status.state), "{status:?}");
        assert!(status.started_at > 0 && status.finished_at == 0);
        assert_eq!(status.mounts.len(), 1);
        assert_eq!(status.mounts[0].container_path, "/data");
        assert_eq!(Path::new(&status.log_path), logs.join("writer.log"));
        let log = wait_for(Duration::from_secs(5), || async {
            std::fs::read_to_string(logs.join("writer.log"))
                .ok()
                .filter(|t| t.contains("logged"))
        })
        .await;
        // CRI log format: "<time> stdout F logged".
        assert!(log.unwrap().contains(" stdout F logged"));

        let stats = client.container_stats(&id).await.unwrap().stats.unwrap();
        assert_eq!(stats.attributes.unwrap().id, id);
        assert!(stats.memory.and_then(|m| m.working_set_bytes).is_some());
    });
}

#[test]
fn exec_sync_stdout_and_exit_code() {
    let _g = shared();
    let Some(bed) = Bed::get("exec_sync_stdout_and_exit_code") else {
        return;
    };
    let client = bed.client();
    let name = unique("exec-sync");
    smol::block_on(async {
        let sandbox = SandboxGuard::run(&client, sandbox_config(&name, true, &[])).await;
        let id = sandbox
            .create(container_config("app", &bed.test_image, "exec sleep 3600"))
            .await;
        client.start_container(&id).await.unwrap();
        let r = client
            .exec_sync(&id, &["echo", "hello", "exec"], 10)
            .await
            .unwrap();
        assert_eq!(r.stdout, b"hello exec\n");
        assert_eq!(r.exit_code, 0);
        let r = client
            .exec_sync(&id, &["sh", "-c", "echo oops >&2; exit 7"], 10)
            .await
            .unwrap();
        assert_eq!(r.exit_code, 7);
        assert_eq!(r.stderr, b"oops\n");
        assert!(r.stdout.is_empty());
    });
}

#[test]
fn stop_with_timeout_kills_container_ignoring_sigterm() {
    let _g = shared();
    let Some(bed) = Bed::get("stop_with_timeout_kills_container_ignoring_sigterm") else {
        return;
    };
    let client = bed.client();
    let name = unique("stop-timeout");
    smol::block_on(async {
        let sandbox = SandboxGuard::run(&client, sandbox_config(&name, true, &[])).await;
        let script = "trap '' TERM; echo ready > /dev/null; while true; do sleep 1; done";
        let id = sandbox
            .create(container_config("stubborn", &bed.test_image, script))
            .await;
        client.start_container(&id).await.unwrap();
        // Let the shell install its trap before we signal it.
        let ok = client.exec_sync(&id, &["true"], 10).await.unwrap();
        assert_eq!(ok.exit_code, 0);
        smol::Timer::after(Duration::from_millis(200)).await;

        let start = Instant::now();
        client.stop_container(&id, 2).await.unwrap();
        let took = start.elapsed();
        eprintln!("StopContainer(timeout=2s) took {took:?}");
        assert!(
            took >= Duration::from_millis(1900),
            "stopped too early: {took:?}"
        );
        assert!(took < Duration::from_secs(20), "stop took {took:?}");
        let status = client
            .container_status(&id, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert_eq!(status.state, ContainerState::ContainerExited as i32);
        assert_eq!(status.exit_code, 137, "killed by SIGKILL: {status:?}");
        // Stopping an exited container is fine.
        client.stop_container(&id, 2).await.unwrap();
        client.remove_container(&id).await.unwrap();
        let err = client.container_status(&id, false).await.unwrap_err();
        assert!(err.is_not_found(), "{err}");
    });
}

#[test]
fn list_filters_by_label_and_state() {
    let _g = shared();
    let Some(bed) = Bed::get("list_filters_by_label_and_state") else {
        return;
    };
    let client = bed.client();
    let name = unique("list-filters");
    smol::block_on(async {
        let sandbox = SandboxGuard::run(
            &client,
            sandbox_config(&name, true, &[("tinylet-list", &name)]),
        )
        .await;
        let mut a = container_config("a", &bed.test_image, "exec sleep 3600");
        a.labels.insert("tinylet-list".into(), name.clone());
        a.labels.insert("role".into(), "started".into());
        let mut b = container_config("b", &bed.test_image, "exec sleep 3600");
        b.labels.insert("tinylet-list".into(), name.clone());
        b.labels.insert("role".into(), "created".into());
        let a = sandbox.create(a).await;
        let b = sandbox.create(b).await;
        client.start_container(&a).await.unwrap();

        let by_label = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let ids = |list: ListContainersResponse| {
            let mut v: Vec<String> = list.containers.into_iter().map(|c| c.id).collect();
            v.sort();
            v
        };
        let mut both = vec![a.clone(), b.clone()];
        both.sort();
        let f = ContainerFilter {
            label_selector: by_label(&[("tinylet-list", &name)]),
            ..Default::default()
        };
        assert_eq!(ids(client.list_containers(Some(f)).await.unwrap()), both);
        let f = ContainerFilter {
            label_selector: by_label(&[("tinylet-list", &name), ("role", "created")]),
            ..Default::default()
        };
        assert_eq!(
            ids(client.list_containers(Some(f)).await.unwrap()),
            vec![b.clone()]
        );
        let f = ContainerFilter {
            pod_sandbox_id: sandbox.id.clone(),
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerRunning as i32,
            }),
            ..Default::default()
        };
        assert_eq!(
            ids(client.list_containers(Some(f)).await.unwrap()),
            vec![a.clone()]
        );
        let f = ContainerFilter {
            label_selector: by_label(&[("tinylet-list", &name)]),
            state: Some(ContainerStateValue {
                state: ContainerState::ContainerCreated as i32,
            }),
            ..Default::default()
        };
        assert_eq!(
            ids(client.list_containers(Some(f)).await.unwrap()),
            vec![b.clone()]
        );
        let f = ContainerFilter {
            id: a.clone(),
            ..Default::default()
        };
        let listed = client.list_containers(Some(f)).await.unwrap().containers;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].metadata.as_ref().unwrap().name, "a");
        assert_eq!(listed[0].pod_sandbox_id, sandbox.id);

        let sf = |state: PodSandboxState| PodSandboxFilter {
            label_selector: by_label(&[("tinylet-list", &name)]),
            state: Some(PodSandboxStateValue {
                state: state as i32,
            }),
            ..Default::default()
        };
        let ready = client
            .list_pod_sandbox(Some(sf(PodSandboxState::SandboxReady)))
            .await
            .unwrap();
        assert_eq!(ready.items.len(), 1);
        assert_eq!(ready.items[0].id, sandbox.id);
        let not_ready = client
            .list_pod_sandbox(Some(sf(PodSandboxState::SandboxNotready)))
            .await
            .unwrap();
        assert!(not_ready.items.is_empty());
        let by_id = PodSandboxFilter {
            id: sandbox.id.clone(),
            ..Default::default()
        };
        let listed = client.list_pod_sandbox(Some(by_id)).await.unwrap();
        assert_eq!(listed.items.len(), 1);
    });
}

fn restart_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bed/containerd-restart.sh")
}

#[test]
fn containerd_restart_keeps_pod_and_client_recovers() {
    let _g = exclusive();
    let Some(bed) = Bed::get("containerd_restart_keeps_pod_and_client_recovers") else {
        return;
    };
    let client = bed.client();
    let name = unique("restart");
    smol::block_on(async {
        let sandbox = SandboxGuard::run(&client, sandbox_config(&name, true, &[])).await;
        let id = sandbox
            .create(container_config(
                "survivor",
                &bed.test_image,
                "exec sleep 3600",
            ))
            .await;
        client.start_container(&id).await.unwrap();
        client.version().await.unwrap();
        let connects = client.connects();

        let script = restart_script();
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(
            out.status.success(),
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );

        // The first call after the restart must succeed on the same client.
        let status = client
            .container_status(&id, false)
            .await
            .unwrap()
            .status
            .unwrap();
        assert!(running(status.state), "{status:?}");
        client.version().await.unwrap();
        let r = client.exec_sync(&id, &["echo", "alive"], 10).await.unwrap();
        assert_eq!(r.stdout, b"alive\n");
        assert_eq!(client.connects(), connects + 1, "reconnected exactly once");
    });
}
