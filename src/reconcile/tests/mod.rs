//! Engine tests against a simulated runtime, with an injected clock.

mod lifecycle;
mod probes;
mod random;
mod sim;
mod status_rules;
