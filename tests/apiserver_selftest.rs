//! Self-tests of the API test server (tests/apiserver): each feature and each fault mode is
//! exercised with plain HTTP(S) requests written by hand (apiserver::client), never with the
//! project's own API client. All waits are bounded by socket timeouts of a few seconds.

#[path = "apiserver/mod.rs"]
mod apiserver;

use std::io::ErrorKind;
use std::process::Command;
use std::time::{Duration, Instant};

use apiserver::client::TestClient;
use apiserver::{Config, CsrApproval, ExpiredMode, Hostile, User};
use serde_json::{json, Value};

const PODS: &str = "/api/v1/namespaces/default/pods";

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    p
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

fn plain() -> (apiserver::ApiServer, TestClient) {
    let srv = apiserver::start(Config::plain()).unwrap();
    let c = TestClient::plain(srv.addr());
    (srv, c)
}

#[test]
fn crud_create_get_list_update_conflict() {
    let (srv, mut c) = plain();
    let (code, created) = c.post(PODS, &pod("p1", None)).unwrap();
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"]["uid"].as_str().unwrap().len() >= 32);
    assert!(created["metadata"]["creationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
    assert_eq!(created["status"]["phase"], "Pending");
    let mf = &created["metadata"]["managedFields"][0];
    assert_eq!(
        (mf["manager"].as_str(), mf["operation"].as_str()),
        (Some("tinylet-selftest"), Some("Update"))
    );
    // ServiceAccount admission: the kube-api-access projected volume and its mounts.
    let vols = created["spec"]["volumes"].as_array().unwrap();
    let sa = vols
        .iter()
        .find(|v| v["name"].as_str().unwrap().starts_with("kube-api-access-"))
        .unwrap();
    let sources = sa["projected"]["sources"].as_array().unwrap();
    assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
    assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
    assert_eq!(
        sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
        "metadata.namespace"
    );
    assert_eq!(
        created["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );

    let (code, dup) = c.post(PODS, &pod("p1", None)).unwrap();
    assert_eq!(
        (code, dup["reason"].as_str(), dup["kind"].as_str()),
        (409, Some("AlreadyExists"), Some("Status"))
    );

    let (code, got) = c.get(&format!("{PODS}/p1")).unwrap();
    assert_eq!(
        (code, &got["metadata"]["uid"]),
        (200, &created["metadata"]["uid"])
    );
    let (code, missing) = c.get(&format!("{PODS}/nope")).unwrap();
    assert_eq!((code, missing["reason"].as_str()), (404, Some("NotFound")));

    c.post(PODS, &pod("p2", None)).unwrap();
    let (code, list) = c.get(&format!("{PODS}?labelSelector=app%3Dweb")).unwrap();
    assert_eq!((code, list["kind"].as_str()), (200, Some("PodList")));
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    assert!(
        list["items"][0].get("kind").is_none(),
        "list items carry no TypeMeta"
    );
    let (_, page) = c.get(&format!("{PODS}?limit=1")).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let cont = page["metadata"]["continue"].as_str().unwrap().to_string();
    let (_, page2) = c.get(&format!("{PODS}?limit=1&continue={cont}")).unwrap();
    assert_eq!(page2["items"][0]["metadata"]["name"], "p2");

    // Optimistic concurrency.
    let mut upd = got.clone();
    upd["metadata"]["labels"]["tier"] = json!("a");
    let (code, ok) = c.put(&format!("{PODS}/p1"), &upd).unwrap();
    assert_eq!(code, 200, "{ok}");
    assert_ne!(rv(&ok), rv(&got));
    let (code, stale) = c.put(&format!("{PODS}/p1"), &upd).unwrap();
    assert_eq!((code, stale["reason"].as_str()), (409, Some("Conflict")));
    // A main-resource PUT cannot change the status.
    let mut sneaky = ok.clone();
    sneaky["status"]["phase"] = json!("Running");
    let (_, after) = c.put(&format!("{PODS}/p1"), &sneaky).unwrap();
    assert_eq!(after["status"]["phase"], "Pending");
    assert_eq!(
        srv.pod("default", "p1").unwrap()["metadata"]["labels"]["tier"],
        "a"
    );
    let proto = c
        .request(
            "POST",
            PODS,
            Some("application/vnd.kubernetes.protobuf"),
            b"k8s\x00",
        )
        .unwrap();
    assert_eq!(proto.code, 415);
    let (code, bad) = c.json("POST", PODS, "application/json", None).unwrap();
    assert_eq!((code, bad["reason"].as_str()), (400, Some("BadRequest")));
    // Non-resource endpoints.
    assert_eq!(c.get("/version").unwrap().1["major"], "1");
    assert_eq!(c.request("GET", "/healthz", None, b"").unwrap().body, b"ok");
    assert_eq!(c.connects, 1, "keep-alive reuses one connection");
}

#[test]
fn graceful_pod_deletion_and_preconditions() {
    let (srv, mut c) = plain();
    c.post(PODS, &pod("bound", Some("n1"))).unwrap();
    let uid = srv.pod("default", "bound").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, bad) = c
        .delete(
            &format!("{PODS}/bound"),
            Some(&json!({"preconditions": {"uid": "other"}})),
        )
        .unwrap();
    assert_eq!((code, bad["reason"].as_str()), (409, Some("Conflict")));

    let (code, marked) = c
        .delete(
            &format!("{PODS}/bound"),
            Some(&json!({"gracePeriodSeconds": 30})),
        )
        .unwrap();
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(
        srv.pod("default", "bound").is_some(),
        "bound pod stays until the kubelet confirms"
    );

    let opts = json!({"gracePeriodSeconds": 0, "preconditions": {"uid": uid}});
    let (code, _) = c.delete(&format!("{PODS}/bound"), Some(&opts)).unwrap();
    assert_eq!(code, 200);
    assert!(srv.pod("default", "bound").is_none());
    assert_eq!(c.get(&format!("{PODS}/bound")).unwrap().0, 404);

    // Unscheduled pods go at once; other kinds answer a Success Status.
    c.post(PODS, &pod("loose", None)).unwrap();
    c.delete(&format!("{PODS}/loose"), None).unwrap();
    assert!(srv.pod("default", "loose").is_none());
    let (code, st) = c
        .delete(
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            None,
        )
        .unwrap();
    assert_eq!((code, st["status"].as_str()), (200, Some("Success")));
}

#[test]
fn merge_strategic_and_json_patches() {
    let (srv, mut c) = plain();
    let mut p = pod("p", Some("n1"));
    p["spec"]["containers"] = json!([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]);
    c.post(PODS, &p).unwrap();
    let status_path = format!("{PODS}/p/status");
    let sm = "application/strategic-merge-patch+json";
    let (code, _) = c
        .patch(
            &status_path,
            sm,
            &json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [{"name": "a", "ready": false}, {"name": "b", "ready": false}]}}),
        )
        .unwrap();
    assert_eq!(code, 200);
    let (code, v) = c.patch(&status_path, sm, &json!({"status": {
        "$setElementOrder/conditions": [{"type": "Initialized"}, {"type": "Ready"}],
        "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
        "containerStatuses": [{"name": "b", "ready": true}]}})).unwrap();
    assert_eq!(code, 200, "{v}");
    let st = srv.pod_status("default", "p").unwrap();
    assert_eq!(st["phase"], "Running");
    assert_eq!(
        st["conditions"],
        json!([{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}])
    );
    assert_eq!(
        st["containerStatuses"],
        json!([{"name": "a", "ready": false}, {"name": "b", "ready": true}])
    );

    let mf = srv.pod("default", "p").unwrap()["metadata"]["managedFields"].clone();
    let status_entries: Vec<&Value> = mf
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subresource"] == "status")
        .collect();
    assert_eq!(
        status_entries.len(),
        1,
        "one entry per manager, operation and subresource: {mf}"
    );

    // A merge patch replaces lists wholesale.
    let mp = "application/merge-patch+json";
    c.patch(
        &status_path,
        mp,
        &json!({"status": {"containerStatuses": [{"name": "a", "ready": true}]}}),
    )
    .unwrap();
    assert_eq!(
        srv.pod_status("default", "p").unwrap()["containerStatuses"],
        json!([{"name": "a", "ready": true}])
    );
    // Status patches touch only the status; main-resource patches never the status.
    c.patch(
        &status_path,
        mp,
        &json!({"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Running"}}),
    )
    .unwrap();
    assert!(srv.pod("default", "p").unwrap()["metadata"]["labels"]
        .get("x")
        .is_none());
    c.patch(
        &format!("{PODS}/p"),
        mp,
        &json!({"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Failed"}}),
    )
    .unwrap();
    let now = srv.pod("default", "p").unwrap();
    assert_eq!(
        (
            now["metadata"]["labels"]["x"].as_str(),
            now["status"]["phase"].as_str()
        ),
        (Some("y"), Some("Running"))
    );
    // Stale RV in a patch.
    let (code, _) = c
        .patch(
            &format!("{PODS}/p"),
            mp,
            &json!({"metadata": {"resourceVersion": "1"}}),
        )
        .unwrap();
    assert_eq!(code, 409);
    let (code, _) = c
        .patch(
            &format!("{PODS}/p"),
            "application/json-patch+json",
            &json!([{"op": "add", "path": "/metadata/labels/j", "value": "1"}]),
        )
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        c.patch(
            &format!("{PODS}/p"),
            "application/apply-patch+yaml",
            &json!({})
        )
        .unwrap()
        .0,
        415
    );
    assert_eq!(
        c.patch(&format!("{PODS}/ghost"), mp, &json!({})).unwrap().0,
        404
    );
}

#[test]
fn node_authorizer_and_node_restriction() {
    let srv = apiserver::start(Config::tls()).unwrap();
    let n1 = srv.node_cert("n1").unwrap();
    let mut c = TestClient::tls(srv.addr(), srv.ca_pem(), Some(&n1)).unwrap();
    let node = |n: &str| json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": n}, "status": {"capacity": {"cpu": "4"}}});
    let (code, v) = c.post("/api/v1/nodes", &node("n1")).unwrap();
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        v["status"]["capacity"]["cpu"], "4",
        "node create keeps the status"
    );
    let (code, v) = c.post("/api/v1/nodes", &node("n2")).unwrap();
    assert_eq!(
        (code, v["reason"].as_str(), v["kind"].as_str()),
        (403, Some("Forbidden"), Some("Status"))
    );
    assert!(v["message"].as_str().unwrap().contains("system:node:n1"));
    assert_eq!(
        c.patch(
            "/api/v1/nodes/n1/status",
            "application/strategic-merge-patch+json",
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})
        )
        .unwrap()
        .0,
        200
    );
    assert_eq!(c.get("/api/v1/nodes/n1/status").unwrap().0, 403);

    let lease = |n: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": n},
        "spec": {"holderIdentity": n, "leaseDurationSeconds": 40}})
    };
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
    assert_eq!(c.post(leases, &lease("n1")).unwrap().0, 201);
    assert_eq!(c.post(leases, &lease("n2")).unwrap().0, 403);
    assert_eq!(srv.lease("n1").unwrap()["spec"]["leaseDurationSeconds"], 40);

    let mut mine = pod("mine", Some("n1"));
    mine["spec"]["volumes"] = json!([{"name": "cfg", "configMap": {"name": "app-config"}}]);
    srv.create(PODS, mine).unwrap();
    srv.create(PODS, pod("theirs", Some("n2"))).unwrap();
    srv.create(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "app-config"}, "data": {"k": "v"}}),
    )
    .unwrap();
    srv.create(
        "/api/v1/namespaces/default/configmaps",
        json!({"metadata": {"name": "private"}}),
    )
    .unwrap();

    assert_eq!(
        c.get("/api/v1/pods").unwrap().0,
        403,
        "list needs the nodeName field selector"
    );
    let (code, list) = c
        .get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1")
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        c.get("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2")
            .unwrap()
            .0,
        403
    );
    assert_eq!(c.get(&format!("{PODS}/mine")).unwrap().0, 200);
    assert_eq!(c.get(&format!("{PODS}/theirs")).unwrap().0, 403);
    assert_eq!(c.get(&format!("{PODS}/mine/status")).unwrap().0, 403);
    assert_eq!(
        c.patch(
            &format!("{PODS}/mine/status"),
            "application/merge-patch+json",
            &json!({"status": {"phase": "Running"}})
        )
        .unwrap()
        .0,
        200
    );
    assert_eq!(
        c.patch(
            &format!("{PODS}/theirs/status"),
            "application/merge-patch+json",
            &json!({"status": {"phase": "Running"}})
        )
        .unwrap()
        .0,
        403
    );
    assert_eq!(
        c.get("/api/v1/namespaces/default/configmaps/app-config")
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        c.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt")
            .unwrap()
            .0,
        200,
        "projected SA volume"
    );
    assert_eq!(
        c.get("/api/v1/namespaces/default/configmaps/private")
            .unwrap()
            .0,
        403
    );
    assert_eq!(
        c.get("/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dapp-config")
            .unwrap()
            .0,
        200
    );

    // Mirror pods: only annotated, only for itself.
    let mut mirror = pod("static-n1", Some("n1"));
    mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "hash"});
    mirror["metadata"]["ownerReferences"] =
        json!([{"apiVersion": "v1", "kind": "Node", "name": "n1", "uid": "x"}]);
    let (code, m) = c.post(PODS, &mirror).unwrap();
    assert_eq!(code, 201, "{m}");
    assert!(
        m["spec"].get("volumes").is_none(),
        "mirror pods get no SA volume"
    );
    assert_eq!(c.post(PODS, &pod("plain", Some("n1"))).unwrap().0, 403);
    let mut other = mirror.clone();
    other["metadata"]["name"] = json!("static-n2");
    other["spec"]["nodeName"] = json!("n2");
    assert_eq!(c.post(PODS, &other).unwrap().0, 403);
    assert_eq!(c.delete(&format!("{PODS}/theirs"), None).unwrap().0, 403);

    // Credentials: none → 401, a node bearer token works, a wrong token → 401.
    let mut anon = TestClient::tls(srv.addr(), srv.ca_pem(), None).unwrap();
    assert_eq!(anon.get("/api/v1/nodes").unwrap().0, 401);
    let tok = srv.node_token("n2");
    let mut n2 = TestClient::tls(srv.addr(), srv.ca_pem(), None)
        .unwrap()
        .with_token(&tok);
    assert_eq!(n2.get(&format!("{PODS}/theirs")).unwrap().0, 200);
    let mut wrong = TestClient::tls(srv.addr(), srv.ca_pem(), None)
        .unwrap()
        .with_token("nope");
    assert_eq!(wrong.get("/api/v1/nodes").unwrap().0, 401);
}

fn watch_path(extra: &str) -> String {
    format!("{PODS}?watch=1&{extra}")
}

#[test]
fn list_then_watch_with_bookmarks_and_timeout() {
    let (srv, mut c) = plain();
    srv.set_bookmark_interval(Duration::from_millis(100));
    c.post(PODS, &pod("a", Some("n1"))).unwrap();
    let (_, list) = c.get(PODS).unwrap();
    let list_rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut w = c
        .watch(&watch_path(&format!(
            "resourceVersion={list_rv}&allowWatchBookmarks=true&timeoutSeconds=2"
        )))
        .unwrap();
    assert_eq!(w.code, 200);
    srv.create(PODS, pod("b", Some("n1"))).unwrap();
    srv.merge_patch(
        &format!("{PODS}/b"),
        json!({"metadata": {"labels": {"v": "2"}}}),
    )
    .unwrap();
    srv.delete(&format!("{PODS}/a"), Some(0)).unwrap();
    let mut seen = Vec::new();
    let mut bookmark = None;
    while let Some(ev) = w.next_event().unwrap() {
        let t = ev["type"].as_str().unwrap().to_string();
        if t == "BOOKMARK" {
            bookmark = Some(ev);
            if seen.len() == 3 {
                break;
            }
            continue;
        }
        seen.push((
            t,
            ev["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    let names: Vec<(&str, &str)> = seen.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(
        names,
        vec![("ADDED", "b"), ("MODIFIED", "b"), ("DELETED", "a")]
    );
    let bm = bookmark.expect("a bookmark within the watch");
    assert_eq!(bm["object"]["kind"], "Pod");
    assert!(
        bm["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= srv.resource_version()
    );

    // timeoutSeconds ends the stream cleanly (terminating chunk).
    let start = Instant::now();
    let mut w = c
        .watch(&watch_path(&format!(
            "resourceVersion={}&timeoutSeconds=1",
            srv.resource_version()
        )))
        .unwrap();
    assert!(w.next_event().unwrap().is_none());
    assert!(
        start.elapsed() >= Duration::from_millis(900) && start.elapsed() < Duration::from_secs(3)
    );
    // RV "0": current state first.
    let mut w = c
        .watch(&watch_path("resourceVersion=0&timeoutSeconds=1"))
        .unwrap();
    let first = w.next_event().unwrap().unwrap();
    assert_eq!(
        (
            first["type"].as_str(),
            first["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
}

#[test]
fn watch_selector_transitions() {
    let (srv, mut c) = plain();
    c.post(PODS, &pod("p", None)).unwrap();
    let start = srv.resource_version();
    let mut w = c.watch(&format!("/api/v1/pods?watch=true&fieldSelector=spec.nodeName%3Dn1&resourceVersion={start}&timeoutSeconds=2")).unwrap();
    srv.create(PODS, pod("elsewhere", Some("n2"))).unwrap();
    // nodeName is immutable through updates; binding is the way in.
    let err = srv
        .merge_patch(&format!("{PODS}/p"), json!({"spec": {"nodeName": "n1"}}))
        .unwrap_err();
    assert_eq!(err.code, 422);
    srv.bind_pod("default", "p", "n1").unwrap();
    assert_eq!(srv.bind_pod("default", "p", "n1").unwrap_err().code, 409);
    let e1 = w.next_event().unwrap().unwrap();
    assert_eq!(
        (
            e1["type"].as_str(),
            e1["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("p"))
    );
    assert_eq!(
        e1["object"]["status"]["conditions"][0]["type"],
        "PodScheduled"
    );
    srv.merge_patch(
        &format!("{PODS}/p"),
        json!({"metadata": {"labels": {"v": "2"}}}),
    )
    .unwrap();
    assert_eq!(w.next_event().unwrap().unwrap()["type"], "MODIFIED");
    // Leaving the selection looks like a deletion to this watcher.
    srv.delete(&format!("{PODS}/p"), Some(0)).unwrap();
    assert_eq!(w.next_event().unwrap().unwrap()["type"], "DELETED");
}

#[test]
fn streaming_list_ends_with_initial_events_bookmark() {
    let (srv, mut c) = plain();
    for n in ["a", "b", "c"] {
        srv.create(PODS, pod(n, Some("n1"))).unwrap();
    }
    let mut w = c
        .watch(&watch_path("sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2"))
        .unwrap();
    let mut added = 0;
    loop {
        let ev = w.next_event().unwrap().unwrap();
        if ev["type"] == "BOOKMARK" {
            assert_eq!(
                ev["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
                "true"
            );
            assert_eq!(
                ev["object"]["metadata"]["resourceVersion"],
                srv.resource_version().to_string()
            );
            break;
        }
        assert_eq!(ev["type"], "ADDED");
        added += 1;
    }
    assert_eq!(added, 3);
    let (code, v) = c
        .get(&watch_path(
            "sendInitialEvents=true&resourceVersionMatch=NotOlderThan",
        ))
        .unwrap();
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
}

#[test]
fn watch_from_compacted_rv_is_410() {
    let (srv, mut c) = plain();
    srv.create(PODS, pod("a", None)).unwrap();
    let old = srv.resource_version();
    srv.create(PODS, pod("b", None)).unwrap();
    srv.compact();
    let mut w = c
        .watch(&watch_path(&format!("resourceVersion={old}")))
        .unwrap();
    assert_eq!(w.code, 200);
    let ev = w.next_event().unwrap().unwrap();
    assert_eq!(ev["type"], "ERROR");
    assert_eq!(
        (
            ev["object"]["kind"].as_str(),
            ev["object"]["code"].as_i64(),
            ev["object"]["reason"].as_str()
        ),
        (Some("Status"), Some(410), Some("Expired"))
    );
    assert!(
        w.next_event().unwrap().is_none(),
        "the watch ends after the ERROR event"
    );

    srv.set_expired_mode(ExpiredMode::Http410);
    let w = c
        .watch(&watch_path(&format!("resourceVersion={old}")))
        .unwrap();
    assert_eq!((w.code, w.body_json()["code"].as_i64()), (410, Some(410)));
    // The current RV is fine; so is anything newer than the compaction point.
    let w = c
        .watch(&watch_path(&format!(
            "resourceVersion={}&timeoutSeconds=1",
            srv.resource_version()
        )))
        .unwrap();
    assert_eq!(w.code, 200);

    // History limit: old events fall out by themselves.
    srv.set_history_limit(2);
    let before = srv.resource_version();
    for i in 0..4 {
        srv.create(PODS, pod(&format!("h{i}"), None)).unwrap();
    }
    assert_eq!(
        c.watch(&watch_path(&format!("resourceVersion={before}")))
            .unwrap()
            .code,
        410
    );
}

fn make_csr(dir: &std::path::Path, subj: &str) -> String {
    let key = dir.join("k.pem");
    let csr = dir.join("r.csr");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .args(["-subj", subj])
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    std::fs::read_to_string(&csr).unwrap()
}

fn csr_obj(name: &str, pem: &str) -> Value {
    json!({"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": apiserver::pki::base64_encode(pem.as_bytes()),
            "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
            "usages": ["digital signature", "client auth"]}})
}

#[test]
fn tls_bootstrap_csr_is_approved_and_the_cert_works() {
    let srv = apiserver::start(Config::tls()).unwrap();
    let dir = std::env::temp_dir().join(format!("tinylet-selftest-csr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = srv.add_bootstrap_token("abcdef", "0123456789abcdef");
    let mut boot = TestClient::tls(srv.addr(), srv.ca_pem(), None)
        .unwrap()
        .with_token(&token);
    let csrs = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

    let pem = make_csr(&dir, "/O=system:nodes/CN=system:node:n9");
    let (code, created) = boot.post(csrs, &csr_obj("node-csr-1", &pem)).unwrap();
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["username"], "system:bootstrap:abcdef");
    let (_, got) = boot.get(&format!("{csrs}/node-csr-1")).unwrap();
    assert_eq!(got["status"]["conditions"][0]["type"], "Approved");
    let cert_pem = String::from_utf8(
        apiserver::pki::base64_decode(got["status"]["certificate"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let der = apiserver::pki::pem_block(cert_pem.as_bytes(), "CERTIFICATE").unwrap();
    let subject = apiserver::pki::cert_subject(&der).unwrap();
    assert_eq!(subject.common_name.as_deref(), Some("system:node:n9"));
    assert_eq!(subject.organizations, vec!["system:nodes".to_string()]);
    // The bootstrap identity can do nothing else.
    assert_eq!(boot.get("/api/v1/nodes").unwrap().0, 403);

    // The signed certificate authenticates as the node.
    let creds = apiserver::ClientCredentials {
        cert_pem,
        key_pem: std::fs::read_to_string(dir.join("k.pem")).unwrap(),
        cert_path: dir.join("unused"),
        key_path: dir.join("unused"),
    };
    let mut node = TestClient::tls(srv.addr(), srv.ca_pem(), Some(&creds)).unwrap();
    assert_eq!(
        node.post("/api/v1/nodes", &json!({"metadata": {"name": "n9"}}))
            .unwrap()
            .0,
        201
    );

    // Validation of the kubelet client signer: O and CN, usages.
    let bad = make_csr(&dir, "/O=evil/CN=system:node:n9");
    let (code, v) = boot.post(csrs, &csr_obj("bad-o", &bad)).unwrap();
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
    let bad = make_csr(&dir, "/O=system:nodes/CN=someone");
    assert_eq!(boot.post(csrs, &csr_obj("bad-cn", &bad)).unwrap().0, 422);
    let mut wrong_usage = csr_obj("bad-usage", &pem);
    wrong_usage["spec"]["usages"] = json!(["server auth"]);
    assert_eq!(boot.post(csrs, &wrong_usage).unwrap().0, 422);

    // Manual approval: pending until the test approves.
    srv.set_csr_approval(CsrApproval::Manual);
    let pem2 = make_csr(&dir, "/O=system:nodes/CN=system:node:n10");
    boot.post(csrs, &csr_obj("node-csr-2", &pem2)).unwrap();
    let (_, pending) = boot.get(&format!("{csrs}/node-csr-2")).unwrap();
    assert!(pending["status"].get("certificate").is_none());
    srv.approve_csr("node-csr-2").unwrap();
    let (_, done) = boot.get(&format!("{csrs}/node-csr-2")).unwrap();
    assert!(done["status"]["certificate"].is_string());
    // Approval through the API (PUT .../approval, as kubectl certificate approve does).
    let pem3 = make_csr(&dir, "/O=system:nodes/CN=system:node:n11");
    boot.post(csrs, &csr_obj("node-csr-3", &pem3)).unwrap();
    let mut obj = srv.get(&format!("{csrs}/node-csr-3")).unwrap();
    obj["status"]["conditions"] =
        json!([{"type": "Approved", "status": "True", "reason": "KubectlApprove"}]);
    let approved = srv
        .update(&format!("{csrs}/node-csr-3/approval"), obj)
        .unwrap();
    assert!(approved["status"]["certificate"].is_string(), "{approved}");
    // Denial leaves no certificate.
    let pem4 = make_csr(&dir, "/O=system:nodes/CN=system:node:n12");
    boot.post(csrs, &csr_obj("node-csr-4", &pem4)).unwrap();
    let denied = srv.deny_csr("node-csr-4").unwrap();
    assert_eq!(denied["status"]["conditions"][0]["type"], "Denied");
    assert!(denied["status"].get("certificate").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_request_for_a_pods_service_account() {
    let srv = apiserver::start(Config::tls()).unwrap();
    let p = srv.create(PODS, pod("web", Some("n1"))).unwrap();
    let n1 = srv.node_cert("n1").unwrap();
    let mut c = TestClient::tls(srv.addr(), srv.ca_pem(), Some(&n1)).unwrap();
    let req = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
        "audiences": ["https://kubernetes.default.svc"], "expirationSeconds": 3607,
        "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": p["metadata"]["uid"]}}});
    let (code, tr) = c
        .post(
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            &req,
        )
        .unwrap();
    assert_eq!(code, 201, "{tr}");
    assert_eq!(tr["kind"], "TokenRequest");
    let token = tr["status"]["token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let claims: Value =
        serde_json::from_slice(&apiserver::pki::base64_decode(parts[1]).unwrap()).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:default:default");
    assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3607
    );
    assert!(tr["status"]["expirationTimestamp"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    srv.create(
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "other"}}),
    )
    .unwrap();
    assert_eq!(
        c.post(
            "/api/v1/namespaces/default/serviceaccounts/other/token",
            &req
        )
        .unwrap()
        .0,
        403
    );
    let mut short = req.clone();
    short["spec"]["expirationSeconds"] = json!(60);
    assert_eq!(
        c.post(
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            &short
        )
        .unwrap()
        .0,
        422
    );
}

#[test]
fn stats_count_requests_bytes_and_log() {
    let (srv, mut c) = plain();
    c.post(PODS, &pod("a", None)).unwrap();
    c.get(&format!("{PODS}/a")).unwrap();
    c.get(&format!("{PODS}/a")).unwrap();
    c.patch(
        &format!("{PODS}/a/status"),
        "application/merge-patch+json",
        &json!({"status": {}}),
    )
    .unwrap();
    let s = srv.stats();
    assert_eq!(s.count("create", "pods"), 1);
    assert_eq!(s.count("get", "pods"), 2);
    assert_eq!(s.count("patch", "pods/status"), 1);
    assert!(s.bytes_in() > 100 && s.bytes_out() > 100);
    let log = s.log();
    assert_eq!(log.len(), 4);
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(log[0].code, 201);
    let profile = s.rate_profile(Duration::from_secs(60), None);
    assert_eq!(profile, vec![4]);
    assert_eq!(
        s.rate_profile(Duration::from_secs(60), Some("pods/status")),
        vec![1]
    );
    s.reset();
    assert_eq!(s.total_requests(), 0);
}

#[test]
fn chunked_request_body_is_accepted() {
    let (srv, mut c) = plain();
    let body = serde_json::to_vec(&pod("chunky", None)).unwrap();
    let (a, b) = body.split_at(10);
    let mut raw = format!("POST {PODS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").into_bytes();
    for part in [a, b] {
        raw.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        raw.extend_from_slice(part);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let mut s = c.connect().unwrap();
    s.write_all(&raw).unwrap();
    let mut rd = std::io::BufReader::new(s);
    let (code, _) = apiserver::client::read_response_head(&mut rd).unwrap();
    assert_eq!(code, 100, "Expect: 100-continue is answered");
    let (code, _) = apiserver::client::read_response_head(&mut rd).unwrap();
    assert_eq!(code, 201);
    assert!(srv.pod("default", "chunky").is_some());
}

use std::io::Write;

// ---- fault injection ----

#[test]
fn fault_drop_and_reset_connections() {
    let (srv, mut c) = plain();
    srv.faults().drop_next(1);
    let e = c.get(PODS).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset
        ),
        "{e:?}"
    );
    assert_eq!(c.get(PODS).unwrap().0, 200);
    srv.faults().reset_next(1);
    let e = c.get(PODS).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::UnexpectedEof
        ),
        "{e:?}"
    );
    assert_eq!(c.get(PODS).unwrap().0, 200);
    assert_eq!(srv.faults().injected(), 2);
    assert_eq!(srv.stats().log().iter().filter(|r| r.code == 0).count(), 2);

    srv.faults().drop_with_probability(0.5);
    let failures = (0..40).filter(|_| c.get(PODS).is_err()).count();
    assert!((8..=32).contains(&failures), "{failures}");
    srv.faults().clear();
    assert_eq!(c.get(PODS).unwrap().0, 200);
}

#[test]
fn fault_5xx_and_429_with_retry_after() {
    let (srv, mut c) = plain();
    srv.faults().fail_next(1, 503);
    let r = c.request("GET", PODS, None, b"").unwrap();
    assert_eq!((r.code, r.json()["kind"].as_str()), (503, Some("Status")));
    srv.faults().throttle_next(1, 3);
    let r = c.request("GET", PODS, None, b"").unwrap();
    assert_eq!((r.code, r.header("retry-after")), (429, Some("3")));
    assert_eq!(r.json()["reason"], "TooManyRequests");
    assert_eq!(c.get(PODS).unwrap().0, 200);
    // Rules can target one resource.
    srv.faults().add_matching(
        apiserver::Fault::Status {
            code: 500,
            retry_after: None,
        },
        apiserver::Trigger::Always,
        apiserver::Matcher {
            path_contains: Some("/leases".into()),
            ..Default::default()
        },
    );
    assert_eq!(
        c.get("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases")
            .unwrap()
            .0,
        500
    );
    assert_eq!(c.get(PODS).unwrap().0, 200);
}

#[test]
fn fault_delay_and_trickle() {
    let (srv, mut c) = plain();
    let id = srv.faults().delay_all(Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(c.get(PODS).unwrap().0, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    srv.faults().remove(id);
    srv.faults().trickle_all(64, Duration::from_millis(5));
    let t = Instant::now();
    let r = c
        .request(
            "GET",
            "/api/v1/namespaces/default/configmaps/kube-root-ca.crt",
            None,
            b"",
        )
        .unwrap();
    assert_eq!(r.code, 200);
    assert!(r.json()["data"]["ca.crt"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let pieces = (r.body.len() / 64) as u32;
    assert!(t.elapsed() >= Duration::from_millis(5) * pieces, "trickled");
}

#[test]
fn fault_truncated_watches() {
    let (srv, mut c) = plain();
    for n in ["a", "b", "c"] {
        srv.create(PODS, pod(n, None)).unwrap();
    }
    srv.faults().truncate_next_watch_after_events(2);
    let mut w = c
        .watch(&watch_path("resourceVersion=0&timeoutSeconds=2"))
        .unwrap();
    assert!(w.next_event().unwrap().is_some());
    assert!(w.next_event().unwrap().is_some());
    assert!(w.next_event().is_err(), "cut without the terminating chunk");

    // Past the response head (about 400 bytes with the real server's headers), inside the events.
    srv.faults().truncate_next_watch_after_bytes(700);
    let mut w = c
        .watch(&watch_path("resourceVersion=0&timeoutSeconds=2"))
        .unwrap();
    let mut got = 0;
    let err = loop {
        match w.next_event() {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("stream should be cut"),
            Err(e) => break e,
        }
    };
    assert!(got < 3, "{got} events before the cut ({err})");
    // Non-watch requests are unaffected by watch-only rules.
    assert_eq!(c.get(PODS).unwrap().0, 200);
}

#[test]
fn fault_hostile_bodies() {
    let (srv, mut c) = plain();
    srv.create(PODS, pod("a", None)).unwrap();
    srv.faults().hostile_next(Hostile::InvalidJson);
    let r = c.request("GET", &format!("{PODS}/a"), None, b"").unwrap();
    assert_eq!(r.code, 200);
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());

    srv.faults().hostile_next(Hostile::WrongTypes);
    let r = c.request("GET", &format!("{PODS}/a"), None, b"").unwrap();
    let v = r.json();
    assert!(v["metadata"]["name"].is_number() && v["spec"].is_string());

    srv.faults().hostile_next(Hostile::InvalidJson);
    let mut w = c.watch(&watch_path("timeoutSeconds=1")).unwrap();
    assert!(w.next_event().is_err());

    srv.faults().hostile_next(Hostile::HugeObject(100 << 20));
    let r = c.request("GET", &format!("{PODS}/a"), None, b"").unwrap();
    assert!(r.body.len() > 100 << 20);
    assert_eq!(r.json()["metadata"]["name"], "huge");

    srv.faults().hostile_next(Hostile::EndlessLine);
    let mut w = c.watch(&watch_path("timeoutSeconds=1")).unwrap();
    let raw = w.read_raw(4 << 20).unwrap();
    assert_eq!(raw.len(), 4 << 20);
    assert!(!raw.contains(&b'\n'));
    drop(w);
    assert_eq!(
        c.get(PODS).unwrap().0,
        200,
        "the server survives a client walking away"
    );
}

#[test]
fn fault_server_down_refuses_and_kills_streams_then_comes_back() {
    let (srv, mut c) = plain();
    let mut w = c.watch(&watch_path("timeoutSeconds=5")).unwrap();
    assert_eq!(w.code, 200);
    srv.down();
    assert!(srv.is_down());
    let t = Instant::now();
    assert!(w.next_event().is_err(), "open watch is killed");
    assert!(t.elapsed() < Duration::from_secs(2));
    let e = TestClient::plain(srv.addr()).get(PODS).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    srv.up().unwrap();
    assert_eq!(TestClient::plain(srv.addr()).get(PODS).unwrap().0, 200);

    srv.down_for(Duration::from_millis(200));
    assert!(TestClient::plain(srv.addr()).get(PODS).is_err());
    let t = Instant::now();
    let mut back = false;
    for _ in 0..100 {
        if TestClient::plain(srv.addr()).get(PODS).is_ok() {
            back = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(back && t.elapsed() >= Duration::from_millis(100));
}

#[test]
fn direct_access_as_admin_and_users() {
    let srv = apiserver::start(Config::tls()).unwrap();
    srv.create(PODS, pod("x", Some("n1"))).unwrap();
    let (code, _) = srv.call_as(&User::node("n2"), "GET", &format!("{PODS}/x"), "", None);
    assert_eq!(code, 403);
    let (code, _) = srv.call_as(&User::node("n1"), "GET", &format!("{PODS}/x"), "", None);
    assert_eq!(code, 200);
    let err = srv.get(&format!("{PODS}/missing")).unwrap_err();
    assert_eq!(err.code, 404);
    assert!(srv.url().starts_with("https://127.0.0.1:"));
}

#[test]
fn node_reads_services_writes_events_and_referenced_secrets_over_tls12() {
    let srv = apiserver::start(Config::tls()).unwrap();
    let n1 = srv.node_cert("n1").unwrap();
    let mut c = TestClient::tls_versions(
        srv.addr(),
        srv.ca_pem(),
        Some(&n1),
        &[&rustls::version::TLS12],
    )
    .unwrap();
    srv.create("/api/v1/namespaces/default/services", json!({"metadata": {"name": "web"}, "spec": {"clusterIP": "10.0.0.10", "ports": [{"port": 80}]}})).unwrap();
    srv.create(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        json!({"metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.5"]}], "ports": [{"port": 8080}]}),
    )
    .unwrap();
    assert_eq!(c.get("/api/v1/services").unwrap().0, 200);
    let (code, slices) = c.get("/apis/discovery.k8s.io/v1/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dweb").unwrap();
    assert_eq!(code, 200);
    assert_eq!(
        slices["items"][0]["endpoints"][0]["addresses"][0],
        "10.1.0.5"
    );

    let ev = json!({"metadata": {"generateName": "web."}, "involvedObject": {"kind": "Pod", "name": "web"}, "reason": "Started", "type": "Normal"});
    let (code, created) = c.post("/api/v1/namespaces/default/events", &ev).unwrap();
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("web."));
    let ev2 = json!({"metadata": {"name": "e2"}, "reason": "Pulled", "action": "Pulling", "reportingController": "kubelet", "reportingInstance": "n1", "eventTime": "2026-01-01T00:00:00.000000Z"});
    assert_eq!(
        c.post("/apis/events.k8s.io/v1/namespaces/default/events", &ev2)
            .unwrap()
            .0,
        201
    );
    assert_eq!(c.get("/api/v1/namespaces/default/events").unwrap().0, 403);

    let mut p = pod("uses-secret", Some("n1"));
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]);
    srv.create(PODS, p).unwrap();
    srv.create(
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "db"}, "data": {"pw": "aHVudGVyMg=="}}),
    )
    .unwrap();
    srv.create(
        "/api/v1/namespaces/default/secrets",
        json!({"metadata": {"name": "other"}}),
    )
    .unwrap();
    let (code, s) = c.get("/api/v1/namespaces/default/secrets/db").unwrap();
    assert_eq!(
        (code, s["data"]["pw"].as_str()),
        (200, Some("aHVudGVyMg=="))
    );
    assert_eq!(
        c.get("/api/v1/namespaces/default/secrets/other").unwrap().0,
        403
    );
    assert_eq!(c.get("/api/v1/namespaces/default/secrets").unwrap().0, 403);
    let mut p = pod("uses-pvc", Some("n1"));
    p["spec"]["volumes"] =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-0"}}]);
    srv.create(PODS, p).unwrap();
    srv.create(
        "/api/v1/namespaces/default/persistentvolumeclaims",
        json!({"metadata": {"name": "data-0"}}),
    )
    .unwrap();
    assert_eq!(
        c.get("/api/v1/namespaces/default/persistentvolumeclaims/data-0")
            .unwrap()
            .0,
        200
    );
    // Once the pod is gone, so is the relationship.
    srv.delete(&format!("{PODS}/uses-secret"), Some(0)).unwrap();
    assert_eq!(
        c.get("/api/v1/namespaces/default/secrets/db").unwrap().0,
        403
    );
}

/// Interop with the HTTP stack the project's client is built on (ureq over rustls/ring).
#[test]
fn ureq_over_tls_with_a_node_certificate() {
    use std::io::BufRead;
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig, TlsProvider};
    let srv = apiserver::start(Config::tls()).unwrap();
    srv.create(PODS, pod("web", Some("n1"))).unwrap();
    let creds = srv.node_cert("n1").unwrap();
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&[Certificate::from_pem(
            srv.ca_pem().as_bytes(),
        )
        .unwrap()]))
        .client_cert(Some(ClientCert::new_with_certs(
            &[Certificate::from_pem(creds.cert_pem.as_bytes()).unwrap()],
            PrivateKey::from_pem(creds.key_pem.as_bytes()).unwrap(),
        )))
        .unversioned_rustls_crypto_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let url = srv.url();
    let mut r = agent.get(format!("{url}{PODS}/web")).call().unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(v["spec"]["nodeName"], "n1");
    let mut r = agent
        .patch(format!("{url}{PODS}/web/status"))
        .header("Content-Type", "application/strategic-merge-patch+json")
        .send(r#"{"status":{"phase":"Running"}}"#)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    // ureq pools a connection only once its body has been read.
    r.body_mut().read_to_string().unwrap();
    assert_eq!(
        srv.pod_status("default", "web").unwrap()["phase"],
        "Running"
    );

    let mut r = agent
        .get(format!("{url}/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=1&resourceVersion=0&timeoutSeconds=1"))
        .call()
        .unwrap();
    let lines: Vec<Value> = std::io::BufReader::new(r.body_mut().as_reader())
        .lines()
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "ADDED");
    assert_eq!(
        srv.stats().connections(),
        1,
        "ureq kept the connection alive"
    );
}

/// Figures for the record (run with `--ignored --nocapture`): what the test server itself
/// costs, so benches of the node agent can tell its share from ours.
#[test]
#[ignore]
fn figures_request_rate_and_watch_fanout() {
    for tls in [false, true] {
        let srv = apiserver::start(if tls {
            Config {
                anonymous: Some(User::admin()),
                ..Config::tls()
            }
        } else {
            Config::plain()
        })
        .unwrap();
        srv.create(PODS, pod("p", Some("n1"))).unwrap();
        let mut c = if tls {
            TestClient::tls(srv.addr(), srv.ca_pem(), None).unwrap()
        } else {
            TestClient::plain(srv.addr())
        };
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            assert_eq!(c.get(&format!("{PODS}/p")).unwrap().0, 200);
        }
        let get_rate = n as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        for i in 0..n {
            let body = json!({"status": {"conditions": [{"type": "Ready", "status": if i % 2 == 0 { "True" } else { "False" }}]}});
            assert_eq!(
                c.patch(
                    &format!("{PODS}/p/status"),
                    "application/strategic-merge-patch+json",
                    &body
                )
                .unwrap()
                .0,
                200
            );
        }
        let patch_rate = n as f64 / t.elapsed().as_secs_f64();
        // Fan-out: 20 watchers, 500 writes, time until every watcher saw the last one.
        let rv = srv.resource_version();
        let watchers: Vec<_> = (0..20)
            .map(|_| {
                c.watch(&watch_path(&format!(
                    "resourceVersion={rv}&timeoutSeconds=30"
                )))
                .unwrap()
            })
            .collect();
        let t = Instant::now();
        for i in 0..500 {
            srv.merge_patch(
                &format!("{PODS}/p"),
                json!({"metadata": {"labels": {"i": i.to_string()}}}),
            )
            .unwrap();
        }
        let handles: Vec<_> = watchers
            .into_iter()
            .map(|mut w| {
                std::thread::spawn(move || {
                    (0..500).for_each(|_| drop(w.next_event().unwrap().unwrap()))
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        let fanout = t.elapsed();
        println!(
            "apiserver figures (tls={tls}): GET {get_rate:.0}/s, status PATCH {patch_rate:.0}/s, 20 watchers x 500 events in {fanout:?}; bytes in {} out {}",
            srv.stats().bytes_in(),
            srv.stats().bytes_out()
        );
    }
}

#[test]
fn fault_connection_level_drop_and_reset_before_tls() {
    let srv = apiserver::start(Config::tls()).unwrap();
    let admin = srv.admin_cert().unwrap();
    srv.faults().reset_next_connections(1);
    let mut c = TestClient::tls(srv.addr(), srv.ca_pem(), Some(&admin)).unwrap();
    assert!(
        c.get(PODS).is_err(),
        "handshake fails on a reset connection"
    );
    srv.faults().drop_next_connections(1);
    assert!(
        c.get(PODS).is_err(),
        "handshake fails on a dropped connection"
    );
    assert_eq!(c.get(PODS).unwrap().0, 200);
    assert_eq!(
        srv.stats().total_requests(),
        1,
        "connection faults happen before any request"
    );
}

#[test]
fn garbage_on_the_wire_never_takes_the_server_down() {
    let (srv, _) = plain();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..60 {
        let len = 1 + (i * 37) % 400;
        let mut junk: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b"GET /api/v1/pods HTTP/1.1\r\n:Content-Length: 99\r\nTransfer-Encoding: chunked\r\n\x00\xff"[(x % 78) as usize]
            })
            .collect();
        if i % 3 == 0 {
            junk.extend_from_slice(b"\r\n\r\n");
        }
        let mut s = std::net::TcpStream::connect(srv.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut sink);
    }
    let huge_head = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70 * 1024));
    let mut s = std::net::TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(huge_head.as_bytes());
    let mut rd = std::io::BufReader::new(s);
    assert_eq!(
        apiserver::client::read_response_head(&mut rd).unwrap().0,
        400
    );
    assert_eq!(TestClient::plain(srv.addr()).get(PODS).unwrap().0, 200);
}

#[test]
fn wait_until_wakes_on_writes_without_polling() {
    let (srv, _) = plain();
    srv.create(PODS, pod("w", Some("n1"))).unwrap();
    let addr = srv.addr();
    let writer = std::thread::spawn(move || {
        let mut c = TestClient::plain(addr);
        for phase in ["Pending", "Running"] {
            let body = json!({"status": {"phase": phase}});
            c.patch(
                &format!("{PODS}/w/status"),
                "application/merge-patch+json",
                &body,
            )
            .unwrap();
        }
    });
    assert!(srv.wait_for_pod_phase("default", "w", "Running", Duration::from_secs(5)));
    writer.join().unwrap();
    let t = Instant::now();
    assert!(!srv.wait_for_pod_phase("default", "w", "Succeeded", Duration::from_millis(100)));
    assert!(t.elapsed() >= Duration::from_millis(100));
}
