//! Placing again the rooms of nodes that failed (or must be emptied now).
//!
//! Each room is tried in its old zone first, then as its own rules say. Larger rooms go
//! first, since they are the hardest to fit; ties go by room key, so the plan is the same
//! for the same snapshot. Rooms that fit nowhere are released and reported as stranded, with
//! the reason, so the shell can mark them Pending and retry when capacity appears.

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
    /// Rooms no node could take, with why. Their slots are released by `actions`.
    pub stranded: Vec<(RoomKey, Unschedulable)>,
}

/// Plans moving every room off `nodes`. The nodes should already be unschedulable in the
/// snapshot (Failed, or draining), otherwise rooms may be planned back onto them.
pub fn failover(snapshot: &Snapshot, nodes: &[NodeId]) -> FailoverPlan {
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
}
