//! A fleet's PodDisruptionBudget: no voluntary eviction (a `kubectl drain`, the cluster
//! autoscaler) may take a media pod that hosts rooms. Pods carry `ruche.dev/busy: "true"`
//! while they do (see `controller::node`); the budget selects those and allows none of them
//! to go, so an eviction is refused until the media node is drained (its rooms moved or
//! ended) and its pod is idle.
//!
//! Media pods are owned by their `MediaNode`, which has no scale subresource, so the budget
//! can only use an integer `minAvailable` (Kubernetes refuses to compute `maxUnavailable` or a
//! percentage for such pods, and an eviction then waits for a budget that never syncs). The
//! highest integer says what is meant: every selected pod must stay.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use ruche_crds::MediaFleet;

use super::{BuildError, labels};

/// The fleet's budget over its busy media pods, owned by the fleet.
pub fn busy_budget(fleet: &MediaFleet) -> Result<PodDisruptionBudget, BuildError> {
    let name = fleet.name_any();
    let owner = fleet.controller_owner_ref(&()).ok_or(BuildError::Missing {
        object: format!("MediaFleet {name}"),
        field: "metadata.uid",
    })?;
    let mut selector = labels::fleet(&name);
    selector.insert(labels::BUSY.into(), "true".into());
    Ok(PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(labels::busy_budget(&name)),
            namespace: fleet.namespace(),
            labels: Some(labels::fleet(&name)),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            min_available: Some(IntOrString::Int(i32::MAX)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_selects_the_fleets_busy_pods_and_lets_none_go() {
        let mut fleet: MediaFleet = serde_json::from_value(serde_json::json!({
            "apiVersion": "ruche.dev/v1alpha1", "kind": "MediaFleet",
            "metadata": { "name": "visio", "namespace": "interieur", "uid": "f-uid" },
            "spec": { "template": { "image": "x" }, "capacity": { "slots": 100 },
                      "zones": [{ "name": "a", "maxNodes": 2 }] }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let pdb = busy_budget(&fleet).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pdb.metadata.name.as_deref(), Some("visio-busy"));
        assert_eq!(pdb.metadata.namespace.as_deref(), Some("interieur"));
        let spec = pdb.spec.unwrap_or_default();
        assert_eq!(spec.min_available, Some(IntOrString::Int(i32::MAX)));
        assert_eq!(spec.max_unavailable, None, "needs a scale subresource");
        let selector = spec
            .selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default();
        assert_eq!(
            selector.get("ruche.dev/fleet").map(String::as_str),
            Some("visio")
        );
        assert_eq!(
            selector.get("ruche.dev/busy").map(String::as_str),
            Some("true")
        );
        fleet.metadata.uid = None;
        assert!(busy_budget(&fleet).is_err(), "no owner without a uid");
    }
}
