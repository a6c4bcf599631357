//! The API objects the state modules' unit tests are built from: the `visio` fleet of zones
//! `a` and `b` in namespace `ns`, its nodes and its rooms.

use ruche_crds::{
    MediaFleet, MediaNode, MediaNodeSpec, MediaNodeStatus, NodeCapacity, NodePhase, Room, RoomSpec,
    ZonePolicy,
};

/// The `visio` fleet: zones `a` and `b` of up to 5 nodes of 100 slots.
pub(crate) fn fleet() -> MediaFleet {
    let text = "apiVersion: ruche.dev/v1alpha1\nkind: MediaFleet\nmetadata: {name: visio, namespace: ns}\nspec:\n  template: {image: x}\n  capacity: {slots: 100}\n  zones:\n    - {name: a, maxNodes: 5}\n    - {name: b, maxNodes: 5}\n";
    match serde_saphyr::from_str(text) {
        Ok(f) => f,
        Err(e) => panic!("the test fleet does not parse: {e}"),
    }
}

/// A node of `visio` in `zone`, of 100 slots, in `phase`.
pub(crate) fn node(name: &str, zone: &str, phase: NodePhase) -> MediaNode {
    let mut n = MediaNode::new(
        name,
        MediaNodeSpec {
            fleet: "visio".into(),
            zone: zone.into(),
            revision: "r1".into(),
            capacity: NodeCapacity { slots: 100 },
            drain: None,
        },
    );
    n.metadata.namespace = Some("ns".into());
    n.status = Some(MediaNodeStatus {
        phase,
        ..Default::default()
    });
    n
}

/// A room of `visio` of `slots` slots in any of `allowed` zones (any zone if empty); no status.
pub(crate) fn room(name: &str, slots: u32, allowed: &[&str]) -> Room {
    let zones = ZonePolicy {
        allowed: allowed.iter().map(|z| (*z).to_string()).collect(),
        preferred: Vec::new(),
    };
    let mut r = Room::new(
        name,
        RoomSpec {
            fleet: "visio".into(),
            slots,
            zones,
            tenant: None,
            profile: ruche_crds::room::MediaProfile::default(),
            start_time: None,
            empty_timeout: std::time::Duration::from_secs(300).into(),
        },
    );
    r.metadata.namespace = Some("ns".into());
    r
}
