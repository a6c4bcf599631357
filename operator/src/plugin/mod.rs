//! `kubectl ruche`, the kubectl plugin (`src/bin/kubectl-ruche.rs`): what it prints and what
//! it writes, as pure functions over the objects it read.
//!
//! - [`render`]: `status` (a fleet at a glance, zone by zone) and `top nodes|rooms`;
//! - [`explain`]: where a room is and why, or why it waits, from the decision core;
//! - [`edit`]: the patches of `drain`, `undrain` and `evacuate`, and the checks before them;
//! - [`rotate`]: the patches of `rotate-key`, the two steps of a join token key rotation.

pub mod edit;
pub mod explain;
pub mod render;
pub mod rotate;

/// The fleet `visio` of namespace `ns`, with `zones` of up to 5 nodes of 100 slots: what the
/// plugin's tests read.
#[cfg(test)]
fn test_fleet(zones: &[&str]) -> ruche_crds::MediaFleet {
    let zones: Vec<serde_json::Value> = zones
        .iter()
        .map(|z| serde_json::json!({ "name": z, "maxNodes": 5 }))
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "ruche.dev/v1alpha1", "kind": "MediaFleet",
        "metadata": { "name": "visio", "namespace": "ns" },
        "spec": { "template": { "image": "x" }, "capacity": { "slots": 100 }, "zones": zones }
    }))
    .unwrap_or_else(|e| panic!("{e}"))
}
