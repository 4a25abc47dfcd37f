//! What the server may see of the agent: the pods this node runs, where each container stands
//! (attempt, running), and the cluster credentials for reviews. The agent loop publishes into
//! it; the server only reads. Nothing here can change a pod.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::api::kubeconfig::ClusterConfig;
use crate::k8s::pod::Pod;
use crate::reconcile::status::ContainerStateView;
use crate::reconcile::PodStatus;

/// A container's latest instance as the agent last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRun {
    /// The latest instance's attempt number (its restart count).
    pub attempt: u32,
    /// It is running now.
    pub running: bool,
}

#[derive(Default)]
struct Snapshot {
    pods: Vec<Arc<Pod>>,
    /// Pod UID → container name → latest instance.
    containers: HashMap<String, HashMap<String, ContainerRun>>,
    cluster: Option<ClusterConfig>,
    /// Bumped whenever the credentials change (a rotated client certificate).
    cluster_generation: u64,
}

/// The shared, read-mostly view (cheap to clone).
#[derive(Clone, Default)]
pub struct NodeView(Arc<Mutex<Snapshot>>);

impl NodeView {
    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes the pods the node runs (agent side).
    pub fn set_pods(&self, pods: Vec<Arc<Pod>>) {
        self.lock().pods = pods;
    }

    /// Publishes where containers stand (agent side).
    pub fn set_status(&self, statuses: &[PodStatus]) {
        let containers = statuses
            .iter()
            .map(|p| {
                let runs = p
                    .init_containers
                    .iter()
                    .chain(&p.containers)
                    .map(|c| {
                        (
                            c.name.clone(),
                            ContainerRun {
                                attempt: c.restart_count,
                                running: matches!(c.state, ContainerStateView::Running { .. }),
                            },
                        )
                    })
                    .collect();
                (p.uid.clone(), runs)
            })
            .collect();
        self.lock().containers = containers;
    }

    /// Sets one container's standing directly (tests of the server).
    #[cfg(test)]
    pub(crate) fn put_container(&self, uid: &str, name: &str, run: ContainerRun) {
        self.lock()
            .containers
            .entry(uid.to_string())
            .or_default()
            .insert(name.to_string(), run);
    }

    /// Publishes the node's current credentials (agent side); a change (first credentials,
    /// a rotated certificate) makes the server rebuild its client.
    pub fn set_cluster(&self, cluster: Option<ClusterConfig>) {
        let mut g = self.lock();
        if cluster.is_some() && g.cluster != cluster {
            g.cluster = cluster;
            g.cluster_generation += 1;
        }
    }

    /// The node's pods.
    pub fn pods(&self) -> Vec<Arc<Pod>> {
        self.lock().pods.clone()
    }

    /// The pod `namespace/name`.
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.lock()
            .pods
            .iter()
            .find(|p| p.metadata.namespace == namespace && p.metadata.name == name)
            .cloned()
    }

    /// Where a container of pod `uid` stands, if the agent has seen it.
    pub fn container(&self, uid: &str, name: &str) -> Option<ContainerRun> {
        self.lock().containers.get(uid)?.get(name).cloned()
    }

    /// The credentials for TokenReview/SubjectAccessReview, with their generation.
    pub fn cluster(&self) -> Option<(u64, ClusterConfig)> {
        let g = self.lock();
        g.cluster.clone().map(|c| (g.cluster_generation, c))
    }

    /// The generation of the published credentials (0: none yet).
    pub fn cluster_generation(&self) -> u64 {
        self.lock().cluster_generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::kubeconfig::Auth;

    fn cluster(cert: &[u8]) -> ClusterConfig {
        ClusterConfig {
            server: "https://127.0.0.1:6443".into(),
            ca_pem: b"ca".to_vec(),
            tls_server_name: None,
            auth: Auth {
                client_cert: Some((cert.to_vec(), b"key".to_vec())),
                bearer: None,
            },
            namespace: None,
        }
    }

    #[test]
    fn credentials_change_bumps_the_generation_only_on_change() {
        let v = NodeView::default();
        assert_eq!(v.cluster_generation(), 0);
        assert!(v.cluster().is_none());
        v.set_cluster(Some(cluster(b"one")));
        v.set_cluster(Some(cluster(b"one")));
        assert_eq!(v.cluster_generation(), 1);
        // A lost handle does not take the credentials away; a rotation replaces them.
        v.set_cluster(None);
        assert_eq!(v.cluster_generation(), 1);
        v.set_cluster(Some(cluster(b"two")));
        let (generation, c) = v.cluster().unwrap();
        assert_eq!(generation, 2);
        assert_eq!(c, cluster(b"two"));
    }
}
