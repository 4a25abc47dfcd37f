//! kube-proxy: Services and EndpointSlices to a load-balancer backend (IPVS).
pub mod cmd;
