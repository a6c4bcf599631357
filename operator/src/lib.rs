//! Ruche's operator: the pure decision core and the fleet simulator that drives it.
//!
//! - [`core`]: placement, reservation accounting and failover, as pure functions over a
//!   snapshot. No I/O, no clock.
//! - [`controller`]: the controllers, the shell around the core.
//! - [`build`]: the Kubernetes objects a fleet needs, built from the custom resources.
//! - [`state`]: the operator's view of a fleet, rebuilt from the API objects.
//! - [`metrics`]: the operator's Prometheus metrics.
//! - [`run`]: the operator process: controllers, leader election, metrics and probes.
//! - [`join_token`]: join tokens minted with a fleet's key.
//! - [`plugin`]: what `kubectl ruche` prints and writes.
//! - [`sim`]: a day of meetings against a simulated fleet, driving the same core with a
//!   simulated clock, for capacity questions and demos.

pub mod build;
pub mod controller;
pub mod core;
pub mod join_token;
pub mod metrics;
pub mod plugin;
pub mod run;
pub mod sim;
pub mod state;
