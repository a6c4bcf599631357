//! Placing again the rooms of nodes that failed, or that must be emptied now (a drain's
//! deadline): failover and live migration share one plan.
//!
//! Each room is tried in its old zone first, then as its own rules say, by reservation. Larger
//! rooms go first, since they are the hardest to fit; ties go by room key, so the plan is the
//! same for the same snapshot. Rooms that fit nowhere are reported as stranded, with the
//! reason. A failover releases them (their node is gone: the shell marks them Pending and
//! retries when capacity appears); a migration leaves them where they are, live, since their
//! node still serves them.

use super::action::Action;
use super::ids::{NodeId, RoomKey};
use super::placement::place;
use super::snapshot::Snapshot;
use super::unschedulable::Unschedulable;

/// The outcome of a failover.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverPlan {
    /// Moves and releases, in the order they were decided; apply them in this order.
    pub actions: Vec<Action>,
    /// Rooms moved, with the node they left and the one they go to.
    pub moved: Vec<(RoomKey, NodeId, NodeId)>,
    /// Rooms no node could take, with why. A failover releases them in `actions`; a
    /// migration leaves them in place.
    pub stranded: Vec<(RoomKey, Unschedulable)>,
}

/// What becomes of a room no node can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stranded {
    /// Released: its node is gone.
    Release,
    /// Left where it is: its node still serves it.
    Stay,
}

/// Plans moving every room off `nodes`, which have failed; rooms that fit nowhere are
/// released. The nodes should already be unschedulable in the snapshot, otherwise rooms may
/// be planned back onto them.
pub fn failover(snapshot: &Snapshot, nodes: &[NodeId]) -> FailoverPlan {
    relocate(snapshot, nodes, Stranded::Release)
}

/// Plans moving every room off `nodes`, which still serve them (a drain reached its deadline):
/// rooms that fit nowhere stay where they are, reported as stranded with why. The nodes
/// should already be unschedulable in the snapshot (draining).
pub fn migrate(snapshot: &Snapshot, nodes: &[NodeId]) -> FailoverPlan {
    relocate(snapshot, nodes, Stranded::Stay)
}

fn relocate(snapshot: &Snapshot, nodes: &[NodeId], stranded: Stranded) -> FailoverPlan {
    let mut rooms: Vec<_> = snapshot
        .rooms()
        .filter(|(_, r)| nodes.contains(&r.node))
        .map(|(k, r)| (k.clone(), r.clone()))
        .collect();
    if rooms.is_empty() {
        return FailoverPlan::default();
    }
    rooms.sort_by(|(ka, a), (kb, b)| {
        b.request
            .slots
            .cmp(&a.request.slots)
            .then_with(|| ka.cmp(kb))
    });
    // Plan against a scratch copy so each move sees the slots the earlier ones took.
    let mut scratch = snapshot.clone();
    let mut plan = FailoverPlan::default();
    for (key, record) in rooms {
        let home = scratch.node(record.node).map(|n| n.zone);
        let request = match home {
            Some(zone) => record.request.with_home(zone),
            None => record.request,
        };
        let action = match place(&scratch, &request) {
            Ok(p) => {
                plan.moved.push((key.clone(), record.node, p.node));
                Action::Move {
                    room: key,
                    to: p.node,
                }
            }
            Err(why) => {
                plan.stranded.push((key.clone(), why));
                if stranded == Stranded::Stay {
                    continue;
                }
                Action::Release { room: key }
            }
        };
        // The scratch copy has every room and node the plan refers to.
        if scratch.apply(&action).is_ok() {
            plan.actions.push(action);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{FleetRules, NodeInfo};
    use ruche_crds::{NodePhase, PlacementStrategy};

    #[test]
    fn rooms_stay_in_their_zone_when_they_can_and_strand_with_a_reason_when_not() {
        let mut s = Snapshot::new(FleetRules::uniform(
            PlacementStrategy::Packed,
            &["a", "b"],
            2,
        ))
        .unwrap();
        let mut add = |name: &str, zone: &str, cap| {
            let info = NodeInfo::ready(name, zone, cap);
            s.add_node(info).unwrap_or(NodeId(u32::MAX))
        };
        let (a1, a2, b1) = (add("a1", "a", 100), add("a2", "a", 30), add("b1", "b", 100));
        let assign = |s: &mut Snapshot, room: &str, node, slots, allowed: &[&str]| {
            let request = s.request(slots, allowed, &[]).unwrap();
            assert!(
                s.apply(&Action::Assign {
                    room: RoomKey::new(room),
                    node,
                    request
                })
                .is_ok()
            );
        };
        assign(&mut s, "big", a1, 60, &[]);
        assign(&mut s, "small", a1, 20, &[]);
        assign(&mut s, "pinned", a1, 15, &["a"]);
        assert!(s.set_phase(a1, NodePhase::Failed).is_ok());
        let plan = failover(&s, &[a1]);
        // big (60) cannot fit a2 (30) so it crosses to b; small (20) stays in a on a2;
        // pinned (15) is allowed only in a, where a2 has 10 left: stranded.
        assert_eq!(
            plan.moved,
            vec![
                (RoomKey::new("big"), a1, b1),
                (RoomKey::new("small"), a1, a2)
            ]
        );
        assert_eq!(plan.stranded.len(), 1);
        assert_eq!(plan.stranded[0].0, RoomKey::new("pinned"));
        assert!(
            plan.stranded[0]
                .1
                .to_string()
                .contains("a: all 1 Ready node(s) full (largest free: 10 slots)")
        );
        for a in &plan.actions {
            assert!(s.apply(a).is_ok());
        }
        assert_eq!(s.node(a1).map(|n| (n.rooms, n.load.reserved)), Some((0, 0)));
        assert!(s.room(&RoomKey::new("pinned")).is_none());
    }

    #[test]
    fn a_migration_leaves_a_room_with_nowhere_to_go_where_it_is() {
        let mut s = Snapshot::new(FleetRules::uniform(
            PlacementStrategy::Packed,
            &["a", "b"],
            2,
        ))
        .unwrap();
        let a1 = s.add_node(NodeInfo::ready("a1", "a", 100)).unwrap();
        let a2 = s.add_node(NodeInfo::ready("a2", "a", 10)).unwrap();
        let b1 = s.add_node(NodeInfo::ready("b1", "b", 100)).unwrap();
        for (room, slots, allowed) in [("free", 20, &[][..]), ("pinned", 15, &["a"][..])] {
            let request = s.request(slots, allowed, &[]).unwrap();
            let assign = Action::Assign {
                room: RoomKey::new(room),
                node: a1,
                request,
            };
            assert!(s.apply(&assign).is_ok());
        }
        // A draining node is cordoned: it takes nothing, and keeps what it has.
        assert!(s.set_cordoned(a1, true).is_ok());
        let plan = migrate(&s, &[a1]);
        assert_eq!(plan.moved, vec![(RoomKey::new("free"), a1, b1)]);
        assert_eq!(plan.stranded.len(), 1);
        assert_eq!(plan.stranded[0].0, RoomKey::new("pinned"));
        assert_eq!(
            plan.actions,
            vec![Action::Move {
                room: RoomKey::new("free"),
                to: b1
            }],
            "nothing is released"
        );
        for a in &plan.actions {
            assert!(s.apply(a).is_ok());
        }
        assert_eq!(s.room(&RoomKey::new("pinned")).map(|r| r.node), Some(a1));
        assert_eq!(s.node(a2).map(|n| n.rooms), Some(0));
        // Once moved, a second look plans nothing but the stranded room, the same way.
        let again = migrate(&s, &[a1]);
        assert!(again.moved.is_empty() && again.actions.is_empty());
        assert_eq!(again.stranded, plan.stranded);
    }
}
