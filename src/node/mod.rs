//! The Node object's side of the agent: host facts, heartbeat timing (Lease and status).

pub mod heartbeat;
pub mod host;
