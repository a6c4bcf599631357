//! Building the Kubernetes objects a fleet needs, as pure functions of the custom resources:
//! the reconcilers only apply what these return (server-side apply), so every object the
//! operator writes can be checked without a cluster.
//!
//! - [`labels`]: the labels and names every object carries;
//! - [`node`]: a fleet's media nodes, and the template revision;
//! - [`pod`]: a media node's pod;
//! - [`service`]: a media node's Service (NodePort or LoadBalancer exposure);
//! - [`secrets`]: the fleet's join token key and admin token;
//! - [`disruption`]: the fleet's PodDisruptionBudget over its busy media pods.

pub mod disruption;
pub mod labels;
pub mod node;
pub mod pod;
pub mod secrets;
pub mod service;

/// A custom resource that cannot be turned into objects, with what to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A field the build needs is missing.
    #[error("{object}: {field} is missing")]
    Missing {
        /// Which object.
        object: String,
        /// Which field.
        field: &'static str,
    },
    /// The fleet names no zone the node is in.
    #[error("media node {node} is in zone {zone}, which fleet {fleet} does not have")]
    UnknownZone {
        /// Node.
        node: String,
        /// Its zone.
        zone: String,
        /// Fleet.
        fleet: String,
    },
    /// HostPort exposure ran out of ports.
    #[error("fleet {fleet}: no host port left for node index {index} (hostPortBase {base})")]
    HostPortRange {
        /// Fleet.
        fleet: String,
        /// Node index asked for.
        index: u32,
        /// Base port.
        base: u16,
    },
}
