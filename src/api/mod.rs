//! Kubernetes API client: kubeconfig, HTTPS, list+watch, back-off (see issue "Join a cluster").
