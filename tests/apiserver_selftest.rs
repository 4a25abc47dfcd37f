//! Self-tests of the API test server (tests/apiserver): each feature and fault mode exercised
//! with plain HTTP(S) requests written by hand.

#[path = "apiserver/mod.rs"]
mod apiserver;

use apiserver::client::TestClient;
use apiserver::Config;

#[test]
fn smoke() {
    let srv = apiserver::start(Config::plain()).unwrap();
    let mut c = TestClient::plain(srv.addr());
    let (code, v) = c.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt").unwrap();
    assert_eq!(code, 200, "{v}");
}
