//! A fleet's snapshot rebuilt from the API objects: its rules from the `MediaFleet`, its nodes
//! from the `MediaNode`s, and every live room recorded on the node its status names. This is how
//! a restarted operator picks up where it left off: placements come from the rooms' status,
//! never from a new decision, so a restart moves no live room.

use kube::ResourceExt;
use ruche_crds::{MediaFleet, MediaNode, MediaNodeStatus, NodePhase, Room, RoomPhase};

use super::keys::room_key;
use crate::build::node::revision;
use crate::core::snapshot::RulesError;
use crate::core::{Action, FleetRules, NodeInfo, RoomKey, Snapshot, ZoneRules};

/// A fleet's snapshot, with what could not be recorded and why.
#[derive(Debug)]
pub struct World {
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Live rooms whose node is gone (deleted, or in a zone the fleet dropped): to place again.
    pub orphans: Vec<RoomKey>,
    /// Objects that could not be taken into account, in words.
    pub problems: Vec<String>,
}

/// How a fleet's rollout ranks its nodes for new rooms: during a rollout, nodes of an older
/// revision take new rooms only when the new ones cannot; once it halted on a bad revision,
/// the new revision's nodes take none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tiers {
    /// The fleet's current template revision.
    pub target: String,
    /// Whether the rollout of that revision halted.
    pub halted: bool,
}

impl Tiers {
    /// The tiers of a fleet, from its template and its rollout status.
    pub fn of(fleet: &MediaFleet) -> Self {
        let target = revision(fleet);
        let halted = fleet
            .status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.revision == target && r.halted.is_some());
        Self { target, halted }
    }
}

/// A node as the core sees it. A drain request keeps rooms off a node even before the node
/// itself reports Draining; so does being unreachable (its assignment list cannot be sent),
/// or running the revision of a halted rollout.
pub fn node_info(node: &MediaNode, tiers: &Tiers) -> NodeInfo {
    let status = node.status.as_ref();
    let phase = status.map(|s| s.phase).unwrap_or_default();
    let old = !tiers.target.is_empty() && node.spec.revision != tiers.target;
    NodeInfo {
        name: node.name_any(),
        zone: node.spec.zone.clone(),
        revision: node.spec.revision.clone(),
        capacity: node.spec.capacity.slots,
        phase,
        cordoned: node.spec.drain.is_some()
            || phase == NodePhase::Draining
            || status.is_some_and(MediaNodeStatus::unreachable)
            || (tiers.halted && !old),
        fallback: old && !tiers.halted,
    }
}

/// The placement rules of a fleet.
pub fn rules(fleet: &MediaFleet) -> FleetRules {
    FleetRules {
        strategy: fleet.spec.placement.strategy,
        zones: fleet
            .spec
            .zones
            .iter()
            .map(|z| ZoneRules {
                name: z.name.clone(),
                min_nodes: z.min_nodes,
                max_nodes: z.max_nodes,
            })
            .collect(),
    }
}

/// Rebuilds the snapshot of `fleet` from its nodes and rooms (those of another fleet, or of
/// a fleet of the same name in another namespace, are ignored).
pub fn rebuild<'a>(
    fleet: &MediaFleet,
    nodes: impl IntoIterator<Item = &'a MediaNode>,
    rooms: impl IntoIterator<Item = &'a Room>,
) -> Result<World, RulesError> {
    let fleet_name = fleet.name_any();
    let namespace = fleet.namespace();
    let mut snapshot = Snapshot::new(rules(fleet))?;
    let tiers = Tiers::of(fleet);
    let mut problems = Vec::new();
    let mut orphans = Vec::new();
    let ours = |fleet_of: &str, ns: Option<String>| fleet_of == fleet_name && ns == namespace;
    for node in nodes
        .into_iter()
        .filter(|n| ours(&n.spec.fleet, n.namespace()))
    {
        let info = node_info(node, &tiers);
        let participants = node.status.as_ref().map_or(0, |st| st.load.participants);
        match snapshot.add_node(info) {
            Ok(id) => {
                if participants > 0 {
                    let _ = snapshot.observe(id, participants);
                }
            }
            Err(e) => problems.push(format!("MediaNode {}: {e}", node.name_any())),
        }
    }
    for room in rooms
        .into_iter()
        .filter(|r| ours(&r.spec.fleet, r.namespace()))
    {
        let Some(status) = &room.status else { continue };
        if status.phase == RoomPhase::Closed {
            continue;
        }
        let Some(node_name) = &status.node else {
            continue;
        };
        let key = room_key(room);
        let request = match snapshot.room_request(&room.spec) {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("Room {key}: {e}"));
                continue;
            }
        };
        match snapshot.node_id(node_name) {
            Some(node) => {
                if let Err(e) = snapshot.apply(&Action::Assign {
                    room: key.clone(),
                    node,
                    request,
                }) {
                    problems.push(format!("Room {key}: {e}"));
                }
            }
            None => orphans.push(key),
        }
    }
    orphans.sort();
    Ok(World {
        snapshot,
        orphans,
        problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::place;
    use crate::state::test_objects::{self, fleet};
    use ruche_crds::RoomStatus;

    fn node(name: &str, zone: &str, phase: NodePhase, participants: u32) -> MediaNode {
        let mut n = test_objects::node(name, zone, phase);
        if let Some(status) = n.status.as_mut() {
            status.load.participants = participants;
        }
        n
    }

    fn room(name: &str, slots: u32, node: Option<&str>, phase: RoomPhase) -> Room {
        let mut r = test_objects::room(name, slots, &[]);
        r.status = Some(RoomStatus {
            phase,
            node: node.map(String::from),
            ..Default::default()
        });
        r
    }

    #[test]
    fn placements_come_back_from_the_rooms_status() {
        let nodes = [
            node("a1", "a", NodePhase::Ready, 0),
            node("b1", "b", NodePhase::Ready, 30),
        ];
        let rooms = [
            room("r1", 40, Some("a1"), RoomPhase::Active),
            room("r2", 10, Some("b1"), RoomPhase::Scheduled),
            room("r3", 10, Some("gone"), RoomPhase::Active),
            room("r4", 10, Some("a1"), RoomPhase::Closed),
            room("r5", 10, None, RoomPhase::Pending),
        ];
        let w = rebuild(&fleet(), &nodes, &rooms).unwrap();
        assert_eq!(w.snapshot.room_count(), 2);
        let a1 = w.snapshot.node_id("a1").unwrap();
        assert_eq!(
            w.snapshot.room(&RoomKey::new("ns/r1")).map(|r| r.node),
            Some(a1)
        );
        assert_eq!(w.snapshot.node(a1).map(|n| n.load.reserved), Some(40));
        let b1 = w.snapshot.node(w.snapshot.node_id("b1").unwrap()).unwrap();
        assert_eq!(
            (b1.load.reserved, b1.load.measured),
            (10, 30),
            "measured load comes from the node's status"
        );
        assert_eq!(
            w.orphans,
            vec![RoomKey::new("ns/r3")],
            "a room on a deleted node is placed again"
        );
        assert!(w.problems.is_empty(), "{:?}", w.problems);
    }

    #[test]
    fn a_rebuilt_view_decides_like_the_one_it_replaces() {
        // Place rooms one by one, write their node into their status, rebuild: same loads.
        let nodes = [
            node("a1", "a", NodePhase::Ready, 0),
            node("a2", "a", NodePhase::Ready, 0),
            node("b1", "b", NodePhase::Ready, 0),
        ];
        let mut live = rebuild(&fleet(), &nodes, &[]).unwrap().snapshot;
        let mut rooms = Vec::new();
        for (i, slots) in [30u32, 20, 45, 5, 60].iter().enumerate() {
            let req = live.request::<&str>(*slots, &[], &[]).unwrap();
            let p = place(&live, &req).unwrap();
            let key = RoomKey::new(format!("ns/r{i}"));
            live.apply(&Action::Assign {
                room: key,
                node: p.node,
                request: req,
            })
            .unwrap();
            let node_name = live.node(p.node).unwrap().name.to_string();
            rooms.push(room(
                &format!("r{i}"),
                *slots,
                Some(&node_name),
                RoomPhase::Active,
            ));
        }
        let rebuilt = rebuild(&fleet(), &nodes, &rooms).unwrap().snapshot;
        for (_, n) in live.nodes() {
            let m = rebuilt.node(rebuilt.node_id(&n.name).unwrap()).unwrap();
            assert_eq!(
                (m.load.reserved, m.rooms),
                (n.load.reserved, n.rooms),
                "{}",
                n.name
            );
        }
        let next = rebuilt.request::<&str>(10, &[], &[]).unwrap();
        assert_eq!(
            place(&rebuilt, &next).map(|p| p.node),
            place(&live, &next)
                .map(|p| p.node)
                .map(|id| rebuilt.node_id(&live.node(id).unwrap().name).unwrap())
        );
    }

    #[test]
    fn draining_nodes_and_other_fleets_are_respected() {
        let mut drained = node("a1", "a", NodePhase::Ready, 0);
        drained.spec.drain = Some(ruche_crds::node::DrainRequest {
            deadline: None,
            mode: ruche_crds::DrainMode::default(),
            reason: None,
        });
        let mut other = node("x1", "a", NodePhase::Ready, 0);
        other.spec.fleet = "other".into();
        let strange = node("z1", "zz", NodePhase::Ready, 0);
        // Another ministry's fleet of the same name: its node and its room are not ours.
        let mut elsewhere = node("a1", "a", NodePhase::Ready, 0);
        elsewhere.metadata.namespace = Some("ministry-b".into());
        let mut their_room = room("r1", 10, Some("a1"), RoomPhase::Active);
        their_room.metadata.namespace = Some("ministry-b".into());
        let w = rebuild(
            &fleet(),
            [&drained, &other, &strange, &elsewhere],
            [&their_room],
        )
        .unwrap();
        assert_eq!(w.snapshot.room_count(), 0, "{:?}", w.problems);
        let a1 = w.snapshot.node(w.snapshot.node_id("a1").unwrap()).unwrap();
        assert!(
            !a1.schedulable(),
            "a drain request keeps rooms off the node"
        );
        assert!(w.snapshot.node_id("x1").is_none());
        assert_eq!(
            w.problems,
            vec![
                "MediaNode z1: node z1 is in zone zz, which is not a zone of the fleet".to_string()
            ]
        );
    }
}
