//! Call latency and errors of every CRI method this process makes, by method: one static
//! [`Histogram`] per RPC, recorded by the client around each unary call (the whole call as
//! the caller sees it: connection, retries and the runtime's work). Read by `/metrics`.

use crate::latency::Histogram;

/// The CRI methods the client calls, in the order of their histograms.
pub const METHODS: [&str; 26] = [
    "Version",
    "Status",
    "RunPodSandbox",
    "StopPodSandbox",
    "RemovePodSandbox",
    "PodSandboxStatus",
    "ListPodSandbox",
    "CreateContainer",
    "StartContainer",
    "StopContainer",
    "RemoveContainer",
    "ListContainers",
    "ContainerStatus",
    "ExecSync",
    "ContainerStats",
    "Exec",
    "Attach",
    "PortForward",
    "ListContainerStats",
    "ListPodSandboxStats",
    "ReopenContainerLog",
    "PullImage",
    "ImageStatus",
    "ListImages",
    "RemoveImage",
    "ImageFsInfo",
];

static OPERATIONS: [Histogram; METHODS.len()] = [const { Histogram::new() }; METHODS.len()];

/// The histogram slot of `name`; a name missing from [`METHODS`] fails the build (the client
/// computes its slots in constants).
pub const fn index(name: &str) -> usize {
    let mut i = 0;
    while i < METHODS.len() {
        if eq(METHODS[i].as_bytes(), name.as_bytes()) {
            return i;
        }
        i += 1;
    }
    panic!("CRI method missing from cri::metrics::METHODS");
}

const fn eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Records one call of method slot `index`.
pub fn record(index: usize, took: std::time::Duration, failed: bool) {
    if let Some(h) = OPERATIONS.get(index) {
        h.record(took, failed);
    }
}

/// Every method called at least once, with its histogram.
pub fn called() -> impl Iterator<Item = (&'static str, &'static Histogram)> {
    METHODS
        .iter()
        .copied()
        .zip(OPERATIONS.iter())
        .filter(|(_, h)| h.count() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_found_by_name() {
        assert_eq!(index("Version"), 0);
        assert_eq!(index("ImageFsInfo"), METHODS.len() - 1);
        const RUN: usize = index("RunPodSandbox");
        assert_eq!(METHODS[RUN], "RunPodSandbox");
    }
}
