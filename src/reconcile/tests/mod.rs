//! Engine tests against a simulated runtime, with an injected clock.

mod ephemeral;
mod kubelet_words;
mod lifecycle;
mod probes;
mod random;
mod sim;
mod status_rules;
