//! The agent: wires configuration, desired-state sources, the reconcile loop, the runtime and
//! status together. It owns no logic of its own beyond that wiring.

use crate::cli::{RunFlags, StatusFlags};

/// `tinylet run`.
pub fn run_main(flags: RunFlags) -> i32 {
    crate::logging::init(flags.verbosity.unwrap_or(0));
    log::error!("tinylet run: not wired yet");
    1
}

/// `tinylet status`.
pub fn status_main(_flags: StatusFlags) -> i32 {
    eprintln!("tinylet status: no agent status socket yet");
    1
}
