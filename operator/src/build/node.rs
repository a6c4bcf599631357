//! A fleet's `MediaNode`s: their name, labels, spec and owner, and the template revision they
//! run.

use std::fmt::Write as _;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Resource, ResourceExt};
use ruche_crds::{DrainRequest, MediaFleet, MediaNode, MediaNodeSpec};

use super::{BuildError, labels};

/// The label holding a node's index in its fleet (host port allocation).
pub const INDEX: &str = "ruche.dev/index";

/// The revision of a fleet's node template: a short hash of everything a node's pod is built
/// from. Nodes with another revision are from an older template.
pub fn revision(fleet: &MediaFleet) -> String {
    let spec = &fleet.spec;
    let text = serde_json::json!({
        "template": spec.template,
        "capacity": spec.capacity,
        "exposure": spec.exposure,
        "drainDeadline": spec.rollout.drain_deadline,
    })
    .to_string();
    // FNV-1a: stable across processes and versions, unlike the std hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = String::with_capacity(10);
    for b in &hash.to_be_bytes()[..5] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The drain the operator asks of a fleet's node for `cause`: the fleet's rollout deadline
/// from `now`, and its mode at the deadline.
pub fn drain_request(fleet: &MediaFleet, cause: &str, now: Timestamp) -> DrainRequest {
    let after =
        SignedDuration::try_from(std::time::Duration::from(fleet.spec.rollout.drain_deadline))
            .unwrap_or(SignedDuration::from_hours(2));
    DrainRequest {
        deadline: Some(Time(now.checked_add(after).unwrap_or(now))),
        mode: fleet.spec.rollout.at_deadline,
        reason: Some(cause.to_string()),
    }
}

/// The name of node number `index` of a fleet in `zone`.
pub fn name(fleet: &str, zone: &str, index: u32) -> String {
    format!("{fleet}-{zone}-{index}")
}

/// A new node of the fleet in `zone`, owned by the fleet.
pub fn media_node(fleet: &MediaFleet, zone: &str, index: u32) -> Result<MediaNode, BuildError> {
    let fleet_name = fleet.name_any();
    let owner = fleet.controller_owner_ref(&()).ok_or(BuildError::Missing {
        object: format!("MediaFleet {fleet_name}"),
        field: "metadata.uid",
    })?;
    let node_name = name(&fleet_name, zone, index);
    let rev = revision(fleet);
    let mut node = MediaNode::new(
        &node_name,
        MediaNodeSpec {
            fleet: fleet_name.clone(),
            zone: zone.to_string(),
            revision: rev.clone(),
            capacity: fleet.spec.capacity.clone(),
            drain: None,
        },
    );
    let mut l = labels::node(&fleet_name, &node_name, zone, &rev);
    l.insert(INDEX.into(), index.to_string());
    node.metadata.namespace = fleet.namespace();
    node.metadata.labels = Some(l);
    node.metadata.owner_references = Some(vec![owner]);
    Ok(node)
}

/// The lowest index no node of the fleet uses.
pub fn free_index(used: impl IntoIterator<Item = u32>) -> u32 {
    let mut used: Vec<u32> = used.into_iter().collect();
    used.sort_unstable();
    used.dedup();
    let mut next = 0;
    for i in used {
        if i != next {
            break;
        }
        next += 1;
    }
    next
}

/// A node's index, from its label.
pub fn index_of(node: &MediaNode) -> Option<u32> {
    node.labels().get(INDEX).and_then(|i| i.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> MediaFleet {
        let text = "apiVersion: ruche.dev/v1alpha1\nkind: MediaFleet\nmetadata: {name: visio, namespace: ns, uid: u-1}\nspec:\n  template: {image: x}\n  capacity: {slots: 100}\n  zones:\n    - {name: a, maxNodes: 5}\n";
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn a_node_is_owned_labelled_and_named_by_zone_and_index() {
        let f = fleet();
        let n = media_node(&f, "a", 3).unwrap();
        assert_eq!(n.name_any(), "visio-a-3");
        assert_eq!(n.namespace().as_deref(), Some("ns"));
        assert_eq!(n.spec.capacity.slots, 100);
        assert_eq!(n.labels().get(INDEX).map(String::as_str), Some("3"));
        assert_eq!(index_of(&n), Some(3));
        let owner = &n.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("MediaFleet", Some(true))
        );
    }

    #[test]
    fn revision_changes_with_the_template_only() {
        let f = fleet();
        let mut scaled = f.clone();
        scaled.spec.replicas = Some(7);
        assert_eq!(revision(&f), revision(&scaled));
        let mut new_image = f.clone();
        new_image.spec.template.image = "y".into();
        assert_ne!(revision(&f), revision(&new_image));
        assert_eq!(revision(&f).len(), 10);
    }

    #[test]
    fn free_index_fills_gaps_first() {
        assert_eq!(free_index([]), 0);
        assert_eq!(free_index([0, 1, 3]), 2);
        assert_eq!(free_index([1, 0, 2]), 3);
    }
}
