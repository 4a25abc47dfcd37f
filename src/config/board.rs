//! Board profiles: per-device configuration layers compiled into the binary, so `--board NAME`
//! works on a device where nothing but the binary was installed.
//!
//! Each profile is a KubeletConfiguration-style YAML file under `boards/` with the same schema
//! as the `--config` file. `dev-host` is the built-in default every other layer applies on top of.

/// A board profile compiled into the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Board {
    /// The name `--board` and `tinylet.board` accept.
    pub name: &'static str,
    /// The profile's YAML text.
    pub yaml: &'static str,
}

/// The profile applied first, under every other layer.
pub const DEFAULT_BOARD: &str = "dev-host";

const BOARDS: &[Board] = &[
    Board {
        name: "dev-host",
        yaml: include_str!("../../boards/dev-host.yaml"),
    },
    Board {
        name: "generic-aarch64-gateway",
        yaml: include_str!("../../boards/generic-aarch64-gateway.yaml"),
    },
    Board {
        name: "raspberry-pi-3",
        yaml: include_str!("../../boards/raspberry-pi-3.yaml"),
    },
    Board {
        name: "raspberry-pi-4",
        yaml: include_str!("../../boards/raspberry-pi-4.yaml"),
    },
    Board {
        name: "raspberry-pi-5",
        yaml: include_str!("../../boards/raspberry-pi-5.yaml"),
    },
    Board {
        name: "raspberry-pi-zero-2w",
        yaml: include_str!("../../boards/raspberry-pi-zero-2w.yaml"),
    },
];

/// Every board profile compiled in, sorted by name.
pub fn boards() -> &'static [Board] {
    BOARDS
}

/// The names of every board profile, sorted.
pub fn board_names() -> Vec<&'static str> {
    BOARDS.iter().map(|b| b.name).collect()
}

/// The profile called `name`, if there is one.
pub fn board(name: &str) -> Option<&'static Board> {
    BOARDS.iter().find(|b| b.name == name)
}
