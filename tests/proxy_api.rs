//! The proxy's API source: Services and EndpointSlices watched at the project's API test server
//! reach the desired IPVS table (through an in-memory backend: this machine's kernel has no
//! IPVS; the real-kernel path is tested in cross/vm).

#[path = "apiserver/mod.rs"]
mod apiserver;

use std::collections::BTreeSet;
use std::time::Duration;

use tinylet::api::client::{Client, ClientConfig};
use tinylet::api::watch::InformerConfig;
use tinylet::api::{Auth, ClusterConfig};
use tinylet::proxy::apisource::ApiSource;
use tinylet::proxy::backend::{Backend, Syncer};
use tinylet::proxy::cmd::run_api_loop;
use tinylet::proxy::desired::Config;
use tinylet::proxy::table::{Op, State};
use tinylet::proxy::Error;

#[derive(Default)]
struct Memory {
    state: State,
}

impl Backend for Memory {
    fn dump(&mut self) -> Result<State, Error> {
        Ok(self.state.clone())
    }
    fn apply(&mut self, ops: &[Op]) -> Vec<String> {
        for op in ops {
            self.state.apply(op);
        }
        Vec::new()
    }
}

fn admin_client(srv: &apiserver::ApiServer) -> Client {
    let creds = srv.admin_cert().unwrap();
    let cfg = ClusterConfig {
        server: srv.url(),
        ca_pem: srv.ca_pem().as_bytes().to_vec(),
        tls_server_name: None,
        auth: Auth {
            client_cert: Some((creds.cert_pem.into_bytes(), creds.key_pem.into_bytes())),
            bearer: None,
        },
        namespace: None,
    };
    Client::new(&cfg, ClientConfig::default()).unwrap()
}

#[test]
fn services_and_slices_from_the_api_reach_the_table() {
    let srv = apiserver::start(apiserver::Config::tls()).unwrap();
    srv.create(
        "/api/v1/namespaces/default/services",
        serde_json::json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.20",
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}}),
    )
    .unwrap();
    srv.create(
        "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
        serde_json::json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": "web-1", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                          {"addresses": ["10.244.0.7"], "conditions": {"ready": false}}],
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}),
    )
    .unwrap();

    let api = ApiSource::start(admin_client(&srv), InformerConfig::default()).unwrap();
    let mut syncer = Syncer::new(Memory::default(), BTreeSet::new());
    let cfg = Config {
        node_name: "n1".into(),
        ..Config::default()
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let code = run_api_loop(&mut syncer, &api, &cfg, Duration::from_secs(30), true);
        let _ = tx.send((code, syncer.backend().state.clone()));
    });
    let (code, state) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the proxy synced within 20 s");
    assert_eq!(code, 0);
    assert_eq!(state.real_count(), 2, "only ready endpoints: {state:?}");
    let text = format!("{state:?}");
    assert!(text.contains("10.96.0.20"), "{text}");
    assert!(
        text.contains("10.244.0.5") && text.contains("10.244.0.6"),
        "{text}"
    );
    assert!(!text.contains("10.244.0.7"), "{text}");
}
