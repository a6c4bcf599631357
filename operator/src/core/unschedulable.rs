//! Why a room could not be placed, zone by zone, in words an SRE can act on.

use std::fmt;

use ruche_crds::NodePhase;

use super::ids::ZoneMask;
use super::request::RoomRequest;
use super::snapshot::Snapshot;

/// What stopped one zone from taking the room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The room does not allow this zone.
    NotAllowed,
    /// The zone has no node at all.
    NoNodes {
        /// Whether the zone may not grow (its `maxNodes` is 0).
        at_max: bool,
    },
    /// No node of the zone can take rooms.
    NoReadyNode {
        /// Nodes not yet Ready (Pending, Starting).
        starting: u32,
        /// Ready nodes that are draining, and Draining or Drained nodes.
        draining: u32,
        /// Failed nodes.
        failed: u32,
    },
    /// Every schedulable node is too full.
    Full {
        /// Schedulable nodes.
        ready: u32,
        /// Most free slots on any of them.
        largest_free: u32,
        /// Whether the zone is at its `maxNodes`.
        at_max: bool,
        /// The zone's `maxNodes`.
        max_nodes: u32,
    },
    /// The room needs more slots than any node of the zone has in total.
    TooLarge {
        /// Largest node capacity in the zone.
        capacity: u32,
    },
}

/// One zone's refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRefusal {
    /// Zone name.
    pub zone: String,
    /// Why.
    pub refusal: Refusal,
}

/// A room no node can take now, with the reason for every zone of the fleet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unschedulable {
    /// Slots the room needs.
    pub slots: u32,
    /// Every zone of the fleet, in fleet order.
    pub zones: Vec<ZoneRefusal>,
}

impl Unschedulable {
    /// Builds the explanation by looking at every node of the allowed zones (this is the slow
    /// path: it only runs when placement already failed).
    pub fn explain(snapshot: &Snapshot, request: &RoomRequest) -> Self {
        let zone_count = snapshot.rules().zones.len();
        let mut stats = vec![ZoneStats::default(); zone_count];
        for (_, node) in snapshot.nodes() {
            let s = &mut stats[node.zone.0 as usize];
            s.nodes += 1;
            s.max_capacity = s.max_capacity.max(node.capacity);
            if node.schedulable() {
                s.ready += 1;
                s.largest_free = s.largest_free.max(node.free());
            } else {
                match node.phase {
                    NodePhase::Pending | NodePhase::Starting => s.starting += 1,
                    NodePhase::Failed => s.failed += 1,
                    NodePhase::Ready | NodePhase::Draining | NodePhase::Drained => s.draining += 1,
                }
            }
        }
        let zones = snapshot
            .rules()
            .zones
            .iter()
            .enumerate()
            .map(|(i, rules)| {
                let s = &stats[i];
                let allowed = request
                    .allowed
                    .and(ZoneMask::first(zone_count))
                    .contains(super::ids::ZoneId(i as u8));
                let live = s.nodes - s.failed;
                let refusal = if !allowed {
                    Refusal::NotAllowed
                } else if s.nodes == 0 {
                    Refusal::NoNodes {
                        at_max: rules.max_nodes == 0,
                    }
                } else if s.max_capacity < request.slots {
                    Refusal::TooLarge {
                        capacity: s.max_capacity,
                    }
                } else if s.ready == 0 {
                    Refusal::NoReadyNode {
                        starting: s.starting,
                        draining: s.draining,
                        failed: s.failed,
                    }
                } else {
                    Refusal::Full {
                        ready: s.ready,
                        largest_free: s.largest_free,
                        at_max: live >= rules.max_nodes,
                        max_nodes: rules.max_nodes,
                    }
                };
                ZoneRefusal {
                    zone: rules.name.clone(),
                    refusal,
                }
            })
            .collect();
        Self {
            slots: request.slots,
            zones,
        }
    }

    /// A CamelCase reason for the room's `Scheduled` condition: the most actionable cause
    /// among the allowed zones.
    pub fn reason(&self) -> &'static str {
        let allowed = || {
            self.zones
                .iter()
                .filter(|z| z.refusal != Refusal::NotAllowed)
        };
        if allowed().next().is_none() {
            "NoAllowedZone"
        } else if allowed().all(|z| matches!(z.refusal, Refusal::TooLarge { .. })) {
            "RoomTooLarge"
        } else if allowed().all(|z| {
            matches!(
                z.refusal,
                Refusal::Full { at_max: true, .. }
                    | Refusal::NoNodes { at_max: true }
                    | Refusal::TooLarge { .. }
            )
        }) {
            "FleetAtMaximum"
        } else if allowed().any(|z| matches!(z.refusal, Refusal::Full { .. })) {
            "InsufficientCapacity"
        } else {
            "NoReadyNode"
        }
    }

    /// Whether every allowed zone is at its maximum size, so waiting will not help unless
    /// rooms end or the fleet's bounds change.
    pub fn fleet_at_max(&self) -> bool {
        self.reason() == "FleetAtMaximum"
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct ZoneStats {
    nodes: u32,
    ready: u32,
    starting: u32,
    draining: u32,
    failed: u32,
    largest_free: u32,
    max_capacity: u32,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAllowed => f.write_str("not allowed by the room"),
            Self::NoNodes { at_max: true } => f.write_str("no media node, and maxNodes is 0"),
            Self::NoNodes { at_max: false } => f.write_str("no media node yet"),
            Self::NoReadyNode {
                starting,
                draining,
                failed,
            } => {
                write!(
                    f,
                    "no Ready node ({starting} starting, {draining} draining, {failed} failed)"
                )
            }
            Self::Full {
                ready,
                largest_free,
                at_max,
                max_nodes,
            } => {
                write!(
                    f,
                    "all {ready} Ready node(s) full (largest free: {largest_free} slots)"
                )?;
                if *at_max {
                    write!(f, ", zone at its maximum of {max_nodes} nodes")?;
                }
                Ok(())
            }
            Self::TooLarge { capacity } => write!(f, "nodes have only {capacity} slots in all"),
        }
    }
}

impl fmt::Display for Unschedulable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no node can take {} slots: ", self.slots)?;
        for (i, z) in self.zones.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", z.zone, z.refusal)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, FleetRules, NodeInfo, RoomKey, ZoneRules, place};
    use ruche_crds::PlacementStrategy;

    #[test]
    fn each_zone_says_what_failed() {
        let rules = FleetRules {
            strategy: PlacementStrategy::Packed,
            zones: vec![
                ZoneRules {
                    name: "a".into(),
                    min_nodes: 0,
                    max_nodes: 1,
                },
                ZoneRules {
                    name: "b".into(),
                    min_nodes: 0,
                    max_nodes: 3,
                },
                ZoneRules {
                    name: "c".into(),
                    min_nodes: 0,
                    max_nodes: 3,
                },
                ZoneRules {
                    name: "d".into(),
                    min_nodes: 0,
                    max_nodes: 3,
                },
            ],
        };
        let mut s = Snapshot::new(rules).unwrap();
        let node = |name: &str, zone: &str, phase| NodeInfo::ready(name, zone, 50).in_phase(phase);
        let a1 = s.add_node(node("a1", "a", NodePhase::Ready)).unwrap();
        assert!(s.add_node(node("b1", "b", NodePhase::Starting)).is_ok());
        assert!(s.add_node(node("c1", "c", NodePhase::Failed)).is_ok());
        let fill = s.request::<&str>(38, &[], &[]).unwrap();
        assert!(
            s.apply(&Action::Assign {
                room: RoomKey::new("x"),
                node: a1,
                request: fill
            })
            .is_ok()
        );
        let req = s.request(40, &["a", "b", "c"], &[]).unwrap();
        let e = place(&s, &req).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no node can take 40 slots: a: all 1 Ready node(s) full (largest free: 12 slots), zone at its maximum of 1 nodes; \
             b: no Ready node (1 starting, 0 draining, 0 failed); c: no Ready node (0 starting, 0 draining, 1 failed); d: not allowed by the room"
        );
        assert_eq!(e.reason(), "InsufficientCapacity");
        let only_a = s.request(40, &["a"], &[]).unwrap();
        let e = place(&s, &only_a).unwrap_err();
        assert_eq!(e.reason(), "FleetAtMaximum");
        assert!(e.fleet_at_max());
        let huge = s.request(60, &["a"], &[]).unwrap();
        let e = place(&s, &huge).unwrap_err();
        assert_eq!(e.reason(), "RoomTooLarge");
        assert!(e.to_string().contains("nodes have only 50 slots"));
    }
}
