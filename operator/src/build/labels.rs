//! Labels and names of the objects the operator creates.

use std::collections::BTreeMap;

/// The label holding the fleet's name.
pub const FLEET: &str = "ruche.dev/fleet";
/// The label holding the media node's name.
pub const NODE: &str = "ruche.dev/node";
/// The label holding the zone.
pub const ZONE: &str = "ruche.dev/zone";
/// The label holding the template revision.
pub const REVISION: &str = "ruche.dev/revision";
/// The label saying whether a media pod hosts rooms (`true`) or none (`false`): the fleet's
/// PodDisruptionBudget keeps voluntary evictions from the busy ones.
pub const BUSY: &str = "ruche.dev/busy";
/// The cluster autoscaler's annotation: a media pod may be evicted only while it hosts no
/// room.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// The well-known zone label of Kubernetes nodes.
pub const TOPOLOGY_ZONE: &str = "topology.kubernetes.io/zone";
/// The field manager of every server-side apply.
pub const MANAGER: &str = "ruche-operator";

/// Labels of everything belonging to a fleet.
pub fn fleet(fleet: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "ruche-media-node".into()),
        ("app.kubernetes.io/managed-by".into(), MANAGER.into()),
        (FLEET.into(), fleet.into()),
    ])
}

/// Labels of a media node's objects.
pub fn node(fleet_name: &str, node: &str, zone: &str, revision: &str) -> BTreeMap<String, String> {
    let mut l = fleet(fleet_name);
    l.insert(NODE.into(), node.into());
    l.insert(ZONE.into(), zone.into());
    l.insert(REVISION.into(), revision.into());
    l
}

/// The label selector of a fleet's pods, as the scale subresource reports it.
pub fn fleet_selector(fleet: &str) -> String {
    format!("{FLEET}={fleet}")
}

/// Name of the fleet's PodDisruptionBudget over its busy media pods.
pub fn busy_budget(fleet: &str) -> String {
    format!("{fleet}-busy")
}

/// Name of a node's media Service.
pub fn service_name(node: &str) -> String {
    format!("{node}-media")
}

/// Name of the fleet's join token key Secret.
pub fn join_key_secret(fleet: &str) -> String {
    format!("{fleet}-join-key")
}

/// Name of the fleet's admin token Secret.
pub fn admin_token_secret(fleet: &str) -> String {
    format!("{fleet}-admin-token")
}
