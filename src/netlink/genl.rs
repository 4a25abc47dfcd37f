//! Generic netlink: the genlmsghdr and the controller's family lookup.
//!
//! Owns the encoding of CTRL_CMD_GETFAMILY and the decoding of its reply. Family ids are
//! dynamic (they differ between kernels), so callers resolve a name once per socket and cache
//! the id; this module does no I/O and keeps no cache itself.

use super::wire::{attrs, Builder, WireError, NLM_F_ACK, NLM_F_REQUEST};

/// Length of `struct genlmsghdr`.
pub const GENL_HDR_LEN: usize = 4;
/// The controller's fixed family id.
pub const GENL_ID_CTRL: u16 = 0x10;
/// Controller command: reply carrying a family.
pub const CTRL_CMD_NEWFAMILY: u8 = 1;
/// Controller command: look a family up.
pub const CTRL_CMD_GETFAMILY: u8 = 3;
/// Controller attribute: family id (u16).
pub const CTRL_ATTR_FAMILY_ID: u16 = 1;
/// Controller attribute: family name (string).
pub const CTRL_ATTR_FAMILY_NAME: u16 = 2;

/// The generic netlink header: command and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GenlHeader {
    /// Family-specific command.
    pub cmd: u8,
    /// Family interface version.
    pub version: u8,
}

impl GenlHeader {
    /// Read the header at the start of a message payload; returns it and the attribute bytes.
    pub fn parse(payload: &[u8]) -> Result<(GenlHeader, &[u8]), WireError> {
        let h = payload.get(..GENL_HDR_LEN).ok_or(WireError::Truncated)?;
        let rest = payload.get(GENL_HDR_LEN..).unwrap_or(&[]);
        Ok((
            GenlHeader {
                cmd: h[0],
                version: h[1],
            },
            rest,
        ))
    }

    /// Append the header (command, version, two reserved bytes).
    pub fn emit(&self, b: &mut Builder) {
        b.put_bytes(&[self.cmd, self.version, 0, 0]);
    }
}

/// Append a CTRL_CMD_GETFAMILY request for `name` (as the kernel's own tools send it).
pub fn emit_get_family(b: &mut Builder, seq: u32, name: &str) {
    let m = b.begin_msg(GENL_ID_CTRL, NLM_F_REQUEST | NLM_F_ACK, seq);
    GenlHeader {
        cmd: CTRL_CMD_GETFAMILY,
        version: 1,
    }
    .emit(b);
    b.attr_strz(CTRL_ATTR_FAMILY_NAME, name);
    b.end_msg(m);
}

/// Read the family id from a CTRL_CMD_NEWFAMILY reply payload.
pub fn parse_family_id(payload: &[u8]) -> Result<u16, WireError> {
    let (_, rest) = GenlHeader::parse(payload)?;
    for a in attrs(rest) {
        let a = a?;
        if a.kind == CTRL_ATTR_FAMILY_ID {
            return a.u16();
        }
    }
    Err(WireError::MissingAttribute("CTRL_ATTR_FAMILY_ID"))
}
