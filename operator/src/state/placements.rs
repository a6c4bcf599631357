//! The operator's placements, fleet by fleet: the single writer of where rooms go.
//!
//! Each fleet's snapshot is built from the API objects once (see [`super::world`]) and then kept
//! current: node phases, drains and load are synced in from the node cache before each decision,
//! and every placement is recorded the moment it is made, before the room's status is written.
//! The cache of `Room`s lags our own writes, so it is never used to undo a placement: when a
//! fleet's spec changes and its snapshot is rebuilt, the placements of the old snapshot are
//! carried over.

use std::collections::HashMap;

use kube::ResourceExt;
use ruche_crds::{MediaFleet, MediaNode, NodePhase, Room};

use super::world::{self, room_key};
use crate::core::request::UnknownZones;
use crate::core::snapshot::RulesError;
use crate::core::{Action, RoomKey, Snapshot, Unschedulable, failover, place};

/// A room moved off a failed node: room, node left, node now hosting it.
pub type Move = (RoomKey, String, String);

/// What a sync did besides catching up.
#[derive(Debug, Default)]
pub struct Synced {
    /// Objects that could not be taken into account, in words.
    pub problems: Vec<String>,
    /// Rooms moved off failed nodes: room, node left, node now hosting it.
    pub moved: Vec<Move>,
    /// Rooms of failed nodes that no node could take, with why: they are Pending again.
    pub stranded: Vec<(RoomKey, Unschedulable)>,
}

/// A fleet's identity: `namespace/name`.
pub fn fleet_key(fleet: &MediaFleet) -> String {
    format!(
        "{}/{}",
        fleet.namespace().unwrap_or_default(),
        fleet.name_any()
    )
}

/// What placement says about a room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The room is on this node (placed now if `fresh`, earlier otherwise).
    Placed {
        /// `MediaNode` name.
        node: String,
        /// Its zone.
        zone: String,
        /// Whether this call placed it.
        fresh: bool,
    },
    /// No node can take it now.
    Unschedulable(Unschedulable),
    /// The room names zones the fleet does not have.
    BadZones(UnknownZones),
}

struct FleetState {
    generation: Option<i64>,
    snapshot: Snapshot,
}

/// Placements of every fleet the operator runs.
#[derive(Default)]
pub struct Placements {
    fleets: HashMap<String, FleetState>,
}

impl Placements {
    /// Brings a fleet's snapshot up to date with its spec and its nodes. Built from the rooms'
    /// status the first time (and after a spec change, keeping the placements made since).
    /// Rooms on nodes that have failed are placed again at once (see [`failover`]).
    pub fn sync<'a>(
        &mut self,
        fleet: &MediaFleet,
        nodes: impl IntoIterator<Item = &'a MediaNode> + Clone,
        rooms: impl IntoIterator<Item = &'a Room>,
    ) -> Result<Synced, RulesError> {
        let key = fleet_key(fleet);
        let generation = fleet.metadata.generation;
        let mut problems = Vec::new();
        let stale = self
            .fleets
            .get(&key)
            .is_none_or(|f| f.generation != generation);
        if stale {
            let built = world::rebuild(fleet, nodes.clone(), rooms)?;
            problems.extend(built.problems);
            let mut snapshot = built.snapshot;
            if let Some(old) = self.fleets.remove(&key) {
                carry_over(&old.snapshot, &mut snapshot);
            }
            self.fleets.insert(
                key.clone(),
                FleetState {
                    generation,
                    snapshot,
                },
            );
        }
        let Some(fleet_state) = self.fleets.get_mut(&key) else {
            return Ok(Synced {
                problems,
                ..Synced::default()
            });
        };
        let snapshot = &mut fleet_state.snapshot;
        sync_nodes(snapshot, &fleet.name_any(), nodes, &mut problems);
        let (moved, stranded) = fail_over(snapshot);
        Ok(Synced {
            problems,
            moved,
            stranded,
        })
    }

    /// Rooms placed per node of a fleet (after a [`Self::sync`]).
    pub fn rooms_per_node(&self, fleet: &MediaFleet) -> HashMap<String, u32> {
        self.snapshot(fleet)
            .map(|s| {
                s.nodes()
                    .map(|(_, n)| (n.name.to_string(), n.rooms))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Places a room (or says where it already is). Call [`Self::sync`] first.
    pub fn decide(&mut self, fleet: &MediaFleet, room: &Room) -> Decision {
        let Some(state) = self.fleets.get_mut(&fleet_key(fleet)) else {
            return Decision::Unschedulable(Unschedulable {
                slots: room.spec.slots,
                zones: Vec::new(),
            });
        };
        let snapshot = &mut state.snapshot;
        let key = room_key(room);
        if let Some(record) = snapshot.room(&key)
            && let Some(node) = snapshot.node(record.node)
        {
            return Decision::Placed {
                node: node.name.to_string(),
                zone: snapshot.zone_name(node.zone).to_string(),
                fresh: false,
            };
        }
        let request = match snapshot.request(
            room.spec.slots,
            &room.spec.zones.allowed,
            &room.spec.zones.preferred,
        ) {
            Ok(r) => r,
            Err(e) => return Decision::BadZones(e),
        };
        match place(snapshot, &request) {
            Ok(p) => {
                let (node, zone) = snapshot
                    .node(p.node)
                    .map(|n| (n.name.to_string(), snapshot.zone_name(n.zone).to_string()))
                    .unwrap_or_default();
                // The node exists: the snapshot just chose it.
                let _ = snapshot.apply(&Action::Assign {
                    room: key,
                    node: p.node,
                    request,
                });
                Decision::Placed {
                    node,
                    zone,
                    fresh: true,
                }
            }
            Err(why) => Decision::Unschedulable(why),
        }
    }

    /// Forgets a room (closed, deleted, or its status write failed).
    pub fn release(&mut self, fleet: &MediaFleet, room: &RoomKey) {
        if let Some(state) = self.fleets.get_mut(&fleet_key(fleet)) {
            let _ = state
                .snapshot
                .apply(&Action::Release { room: room.clone() });
        }
    }

    /// The rooms on a node with their slots: what the node is told it may host.
    pub fn assignments(&self, fleet: &MediaFleet, node: &str) -> Vec<(String, u32)> {
        let Some(state) = self.fleets.get(&fleet_key(fleet)) else {
            return Vec::new();
        };
        let Some(id) = state.snapshot.node_id(node) else {
            return Vec::new();
        };
        let mut list: Vec<(String, u32)> = state
            .snapshot
            .rooms()
            .filter(|(_, r)| r.node == id)
            .map(|(k, r)| {
                (
                    k.0.rsplit('/').next().unwrap_or_default().to_string(),
                    r.request.slots,
                )
            })
            .collect();
        list.sort();
        list
    }

    /// The snapshot of a fleet, for status and metrics.
    pub fn snapshot(&self, fleet: &MediaFleet) -> Option<&Snapshot> {
        self.fleets.get(&fleet_key(fleet)).map(|f| &f.snapshot)
    }
}

/// Keeps the placements made since the rooms' status was last read.
fn carry_over(old: &Snapshot, new: &mut Snapshot) {
    for (key, record) in old.rooms() {
        if new.room(key).is_some() {
            continue;
        }
        let Some(name) = old.node(record.node).map(|n| n.name.clone()) else {
            continue;
        };
        if let Some(node) = new.node_id(&name) {
            let _ = new.apply(&Action::Assign {
                room: key.clone(),
                node,
                request: record.request,
            });
        }
    }
}

/// Moves the rooms of Failed nodes elsewhere, and releases those that fit nowhere.
fn fail_over(snapshot: &mut Snapshot) -> (Vec<Move>, Vec<(RoomKey, Unschedulable)>) {
    let failed: Vec<_> = snapshot
        .nodes()
        .filter(|(_, n)| n.phase == NodePhase::Failed && n.rooms > 0)
        .map(|(id, _)| id)
        .collect();
    if failed.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let plan = failover(snapshot, &failed);
    for action in &plan.actions {
        // The plan was made against this snapshot: every action applies.
        let _ = snapshot.apply(action);
    }
    let name = |id| {
        snapshot
            .node(id)
            .map(|n| n.name.to_string())
            .unwrap_or_default()
    };
    let moved = plan
        .moved
        .into_iter()
        .map(|(room, from, to)| (room, name(from), name(to)))
        .collect();
    (moved, plan.stranded)
}

/// Applies the node cache to the snapshot: new nodes, phases, drains and load.
fn sync_nodes<'a>(
    snapshot: &mut Snapshot,
    fleet: &str,
    nodes: impl IntoIterator<Item = &'a MediaNode>,
    problems: &mut Vec<String>,
) {
    let mut seen = std::collections::HashSet::new();
    for node in nodes.into_iter().filter(|n| n.spec.fleet == fleet) {
        let info = world::node_info(node);
        let measured = node.status.as_ref().map_or(0, |st| st.load.participants);
        let id = if let Some(id) = snapshot.node_id(&info.name) {
            id
        } else {
            let name = info.name.clone();
            match snapshot.add_node(info.clone()) {
                Ok(id) => id,
                Err(e) => {
                    problems.push(format!("MediaNode {name}: {e}"));
                    continue;
                }
            }
        };
        seen.insert(id);
        let Some(current) = snapshot.node(id).cloned() else {
            continue;
        };
        if current.phase != info.phase {
            let _ = snapshot.set_phase(id, info.phase);
        }
        if current.draining != info.draining {
            let _ = snapshot.set_draining(id, info.draining);
        }
        if current.load.measured != measured {
            let _ = snapshot.observe(id, measured);
        }
    }
    // Nodes gone from the cache: forget the empty ones; the others are Failed until their rooms
    // have been placed again.
    let gone: Vec<_> = snapshot
        .nodes()
        .map(|(id, _)| id)
        .filter(|id| !seen.contains(id))
        .collect();
    for id in gone {
        if snapshot.remove_node(id).is_err() {
            let _ = snapshot.set_phase(id, NodePhase::Failed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_objects::{self, node, room};
    use ruche_crds::{RoomPhase, RoomStatus};

    fn fleet(generation: i64) -> MediaFleet {
        let mut f = test_objects::fleet();
        f.metadata.generation = Some(generation);
        f
    }

    #[test]
    fn places_once_and_then_says_where() {
        let mut p = Placements::default();
        let f = fleet(1);
        let nodes = [
            node("a1", "a", NodePhase::Ready),
            node("b1", "b", NodePhase::Starting),
        ];
        p.sync(&f, &nodes, &[]).unwrap();
        let r = room("r1", 30, &[]);
        assert_eq!(
            p.decide(&f, &r),
            Decision::Placed {
                node: "a1".into(),
                zone: "a".into(),
                fresh: true
            }
        );
        assert_eq!(
            p.decide(&f, &r),
            Decision::Placed {
                node: "a1".into(),
                zone: "a".into(),
                fresh: false
            }
        );
        assert_eq!(p.assignments(&f, "a1"), vec![("r1".to_string(), 30)]);
        let Decision::Unschedulable(why) = p.decide(&f, &room("r2", 30, &["b"])) else {
            panic!("b has no Ready node")
        };
        assert_eq!(why.reason(), "NoReadyNode");
        assert!(matches!(
            p.decide(&f, &room("r3", 1, &["zz"])),
            Decision::BadZones(_)
        ));
        p.release(&f, &room_key(&r));
        assert!(p.assignments(&f, "a1").is_empty());
    }

    #[test]
    fn node_changes_reach_placement() {
        let mut p = Placements::default();
        let f = fleet(1);
        p.sync(&f, &[node("a1", "a", NodePhase::Starting)], &[])
            .unwrap();
        assert!(matches!(
            p.decide(&f, &room("r1", 10, &[])),
            Decision::Unschedulable(_)
        ));
        p.sync(&f, &[node("a1", "a", NodePhase::Ready)], &[])
            .unwrap();
        assert!(matches!(
            p.decide(&f, &room("r1", 10, &[])),
            Decision::Placed { fresh: true, .. }
        ));
        let mut drained = node("a1", "a", NodePhase::Ready);
        drained.spec.drain = Some(ruche_crds::node::DrainRequest {
            deadline: None,
            mode: ruche_crds::DrainMode::default(),
            reason: None,
        });
        p.sync(&f, &[drained], &[]).unwrap();
        assert!(
            matches!(
                p.decide(&f, &room("r2", 10, &[])),
                Decision::Unschedulable(_)
            ),
            "a drain request stops new rooms at once"
        );
        // A node vanishing with a room on it is Failed, not forgotten.
        p.sync(&f, &[], &[]).unwrap();
        assert_eq!(
            p.snapshot(&f)
                .and_then(|s| s.node_id("a1"))
                .and_then(|id| p.snapshot(&f).unwrap().node(id))
                .map(|n| n.phase),
            Some(NodePhase::Failed)
        );
    }

    #[test]
    fn a_spec_change_rebuilds_without_losing_fresh_placements() {
        let mut p = Placements::default();
        let nodes = [
            node("a1", "a", NodePhase::Ready),
            node("a2", "a", NodePhase::Ready),
        ];
        p.sync(&fleet(1), &nodes, &[]).unwrap();
        assert!(matches!(
            p.decide(&fleet(1), &room("r1", 60, &[])),
            Decision::Placed { fresh: true, .. }
        ));
        // The room cache has not seen the status write yet; the fleet changes generation.
        let mut stale = room("r1", 60, &[]);
        stale.status = Some(RoomStatus {
            phase: RoomPhase::Pending,
            ..Default::default()
        });
        p.sync(&fleet(2), &nodes, &[stale.clone()]).unwrap();
        assert!(
            matches!(
                p.decide(&fleet(2), &stale),
                Decision::Placed { fresh: false, .. }
            ),
            "the placement survived the rebuild"
        );
        let used: u32 = ["a1", "a2"]
            .iter()
            .map(|n| {
                p.assignments(&fleet(2), n)
                    .iter()
                    .map(|(_, s)| *s)
                    .sum::<u32>()
            })
            .sum();
        assert_eq!(used, 60, "and was not made twice");
    }
}
