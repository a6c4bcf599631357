//! Which node gets a room.
//!
//! Zones are tried in tiers: the room's home zone (when it is being moved), then its preferred
//! zones, then the rest of its allowed zones. Within a tier, nodes of an older revision (while a
//! rollout replaces them) are used only when no other node of the tier's zones fits. Within a tier, the room goes to the zone whose
//! schedulable slots are least used, so rooms spread across zones and the loss of one zone
//! cuts as few meetings as possible. Within that zone, the fleet's strategy picks the node:
//! `Packed` takes the fullest node that still fits (so empty nodes can be drained away),
//! `Distributed` the emptiest. Ties break on zone order, then node name, so the same snapshot
//! always gives the same answer.

use ruche_crds::PlacementStrategy;

use super::ids::{NodeId, ZoneId, ZoneMask};
use super::request::RoomRequest;
use super::snapshot::Snapshot;
use super::unschedulable::Unschedulable;

/// Where a room goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node chosen.
    pub node: NodeId,
    /// Its zone.
    pub zone: ZoneId,
}

/// Chooses a node for a room, or says why none can take it.
pub fn place(snapshot: &Snapshot, request: &RoomRequest) -> Result<Placement, Unschedulable> {
    for tier in request.tiers() {
        // Within a tier of zones, nodes of an older revision (during a rollout) only when no
        // other node of any of those zones fits.
        for fallback in [false, true] {
            if let Some(p) = best_in(snapshot, tier, request.slots, fallback) {
                return Ok(p);
            }
        }
    }
    Err(Unschedulable::explain(snapshot, request))
}

fn best_in(snapshot: &Snapshot, zones: ZoneMask, slots: u32, fallback: bool) -> Option<Placement> {
    let strategy = snapshot.rules().strategy;
    let mut best: Option<(Placement, u64, u64)> = None;
    for zone in zones.iter() {
        let node = match strategy {
            PlacementStrategy::Packed => snapshot.tightest_fit(zone, slots, fallback),
            PlacementStrategy::Distributed => snapshot.roomiest_fit(zone, slots, fallback),
        };
        let Some(node) = node else { continue };
        let usage = snapshot.zone_use(zone);
        // Compare used/capacity ratios exactly: a.used/a.cap < b.used/b.cap.
        let better = best.is_none_or(|(_, used, cap)| {
            u128::from(usage.used) * u128::from(cap) < u128::from(used) * u128::from(usage.capacity)
        });
        if better {
            best = Some((Placement { node, zone }, usage.used, usage.capacity));
        }
    }
    best.map(|(p, _, _)| p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, FleetRules, NodeInfo, RoomKey};
    use ruche_crds::NodePhase;

    fn snapshot(strategy: PlacementStrategy, nodes: &[(&str, &str, u32, u32)]) -> Snapshot {
        let mut s = Snapshot::new(FleetRules::uniform(strategy, &["a", "b", "c"], 4)).unwrap();
        for (i, (name, zone, capacity, used)) in nodes.iter().enumerate() {
            let info = NodeInfo::ready(*name, *zone, *capacity);
            let id = s.add_node(info).unwrap();
            if *used > 0 {
                let req = s.request::<&str>(*used, &[], &[]).unwrap();
                let applied = s.apply(&Action::Assign {
                    room: RoomKey::new(format!("seed-{i}")),
                    node: id,
                    request: req,
                });
                assert!(applied.is_ok());
            }
        }
        s
    }

    fn name(s: &Snapshot, p: Result<Placement, Unschedulable>) -> String {
        match p {
            Ok(p) => s
                .node(p.node)
                .map(|n| n.name.to_string())
                .unwrap_or_default(),
            Err(e) => format!("refused: {e}"),
        }
    }

    #[test]
    fn packed_fills_the_fullest_node_that_fits() {
        let s = snapshot(
            PlacementStrategy::Packed,
            &[
                ("a1", "a", 100, 80),
                ("a2", "a", 100, 50),
                ("a3", "a", 100, 0),
            ],
        );
        let req = s.request(10, &["a"], &[]).unwrap();
        assert_eq!(name(&s, place(&s, &req)), "a1");
        let req = s.request(30, &["a"], &[]).unwrap();
        assert_eq!(name(&s, place(&s, &req)), "a2");
    }

    #[test]
    fn distributed_takes_the_emptiest_node_and_breaks_ties_by_name() {
        let s = snapshot(
            PlacementStrategy::Distributed,
            &[
                ("a2", "a", 100, 0),
                ("a1", "a", 100, 0),
                ("a3", "a", 100, 20),
            ],
        );
        let req = s.request(10, &["a"], &[]).unwrap();
        assert_eq!(name(&s, place(&s, &req)), "a1");
    }

    #[test]
    fn rooms_spread_to_the_least_used_zone_and_honour_preference() {
        let s = snapshot(
            PlacementStrategy::Packed,
            &[
                ("a1", "a", 100, 60),
                ("b1", "b", 100, 10),
                ("c1", "c", 100, 30),
            ],
        );
        let any = s.request::<&str>(5, &[], &[]).unwrap();
        assert_eq!(name(&s, place(&s, &any)), "b1");
        let pref = s.request(5, &[], &["c"]).unwrap();
        assert_eq!(name(&s, place(&s, &pref)), "c1");
        // Preferred zone full: fall back to the rest of allowed.
        let big = s.request(50, &["a", "c"], &["a"]).unwrap();
        assert_eq!(name(&s, place(&s, &big)), "c1");
        // Home zone first, even over preference.
        assert_eq!(name(&s, place(&s, &pref.with_home(ZoneId(0)))), "a1");
    }

    #[test]
    fn never_a_draining_or_unready_node() {
        let mut s = snapshot(
            PlacementStrategy::Packed,
            &[
                ("a1", "a", 100, 90),
                ("a2", "a", 100, 0),
                ("a3", "a", 100, 0),
            ],
        );
        let (a1, a2) = (s.node_id("a1").unwrap(), s.node_id("a2").unwrap());
        assert!(s.set_cordoned(a1, true).is_ok());
        assert!(s.set_phase(a2, NodePhase::Starting).is_ok());
        let req = s.request(5, &["a"], &[]).unwrap();
        assert_eq!(name(&s, place(&s, &req)), "a3");
    }

    #[test]
    fn a_fallback_node_takes_a_room_only_when_no_other_node_of_its_zone_can() {
        for strategy in [PlacementStrategy::Packed, PlacementStrategy::Distributed] {
            let mut s = snapshot(strategy, &[("a1", "a", 100, 10), ("a2", "a", 20, 0)]);
            // a1 runs the old revision during a rollout: a2 first, though a1 is fuller/roomier.
            let a1 = s.node_id("a1").unwrap();
            assert!(s.set_fallback(a1, true).is_ok());
            let small = s.request::<&str>(15, &["a"], &[]).unwrap();
            assert_eq!(name(&s, place(&s, &small)), "a2", "{strategy:?}");
            // What a2 cannot hold still goes to a1 rather than waiting.
            let big = s.request::<&str>(50, &["a"], &[]).unwrap();
            assert_eq!(name(&s, place(&s, &big)), "a1", "{strategy:?}");
        }
    }
}
