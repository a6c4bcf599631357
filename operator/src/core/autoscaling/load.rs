//! Each zone's load as the autoscaler sees it, from the fleet's nodes and their slots.

use ruche_crds::NodePhase;

use super::decide::ZoneLoad;
use crate::core::fleet_plan::NodeView;

/// A node's slots as the placements count them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeSlots {
    /// Free for new rooms.
    pub free: u32,
    /// Reserved or in use.
    pub used: u32,
    /// Takes new rooms (Ready, not cordoned).
    pub schedulable: bool,
}

/// Each zone's load: serving nodes (not draining, not failed), of which still starting, the
/// free and used slots of the Ready ones, and whether every node of the zone failed. A node the placements do not know yet counts as
/// starting: its slots are coming.
pub fn zone_loads(
    zones: usize,
    nodes: &[NodeView],
    slots_of: impl Fn(&str) -> Option<NodeSlots>,
    evacuated: &[bool],
) -> Vec<ZoneLoad> {
    let mut loads: Vec<ZoneLoad> = (0..zones)
        .map(|z| ZoneLoad {
            evacuated: evacuated.get(z).copied().unwrap_or(false),
            ..ZoneLoad::default()
        })
        .collect();
    for (z, load) in loads.iter_mut().enumerate() {
        let mut in_zone = nodes.iter().filter(|n| n.zone == Some(z)).peekable();
        load.down = in_zone.peek().is_some() && in_zone.all(|n| n.phase == NodePhase::Failed);
    }
    for node in nodes.iter().filter(|n| n.serving()) {
        let Some(load) = node.zone.and_then(|z| loads.get_mut(z)) else {
            continue;
        };
        load.serving += 1;
        let slots = (node.phase == NodePhase::Ready)
            .then(|| slots_of(&node.name))
            .flatten();
        match slots {
            Some(s) if s.schedulable => {
                load.free = load.free.saturating_add(s.free);
                load.used = load.used.saturating_add(s.used);
                load.largest_free = load.largest_free.max(s.free);
            }
            // Ready but not taking rooms (cordoned under it): neither free nor coming.
            Some(_) => {}
            None => load.starting += 1,
        }
    }
    loads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::fleet_plan::DrainCause;

    fn node(name: &str, zone: usize, phase: NodePhase, drain: Option<DrainCause>) -> NodeView {
        NodeView {
            name: name.into(),
            zone: Some(zone),
            phase,
            drain,
            rooms: 0,
            created: None,
            current: true,
        }
    }

    #[test]
    fn counts_serving_nodes_their_slots_and_those_still_starting() {
        let nodes = [
            node("a", 0, NodePhase::Ready, None),
            node("b", 0, NodePhase::Ready, None),
            node("c", 0, NodePhase::Starting, None),
            node("d", 0, NodePhase::Draining, Some(DrainCause::ScaleDown)),
            node("e", 0, NodePhase::Failed, None),
            node("f", 1, NodePhase::Pending, None),
        ];
        let slots = |name: &str| match name {
            "a" => Some(NodeSlots {
                free: 30,
                used: 70,
                schedulable: true,
            }),
            "b" => Some(NodeSlots {
                free: 90,
                used: 10,
                schedulable: true,
            }),
            _ => None,
        };
        let loads = zone_loads(2, &nodes, slots, &[false, true]);
        assert_eq!(
            loads[0],
            ZoneLoad {
                serving: 3,
                starting: 1,
                free: 120,
                used: 80,
                largest_free: 90,
                evacuated: false,
                down: false
            }
        );
        assert_eq!(
            (loads[1].serving, loads[1].starting, loads[1].evacuated),
            (1, 1, true)
        );
    }
}

#[cfg(test)]
mod plan_props {
    use super::*;
    use crate::core::autoscaling::{Inputs, Policy, ZoneMemory, decide};
    use crate::core::fleet_plan::{DrainCause, FleetAction, plan};
    use crate::core::share::Share;
    use crate::core::snapshot::ZoneRules;
    use jiff::Timestamp;
    use proptest::prelude::*;

    const SLOTS: u32 = 100;

    fn phase() -> impl Strategy<Value = NodePhase> {
        prop::sample::select(NodePhase::ALL.to_vec())
    }

    proptest! {
        /// Whatever the autoscaler decides, the plan that applies it never deletes a node
        /// that hosts a room, and shrinks only by draining serving nodes.
        #[test]
        fn autoscaling_never_deletes_a_node_with_a_room(
            raw in prop::collection::vec((0usize..2, phase(), prop::option::of(Just(DrainCause::ScaleDown)), 0u32..4, 0u32..=SLOTS), 0..14),
            buffer in 0u32..400,
            surplus_for in prop::option::of(0i64..1200),
        ) {
            let nodes: Vec<NodeView> = raw.iter().enumerate().map(|(i, (z, p, d, rooms, _))| NodeView {
                name: format!("n{i:02}"),
                zone: Some(*z),
                phase: *p,
                drain: *d,
                rooms: *rooms,
                created: None,
                current: true,
            }).collect();
            let used: std::collections::HashMap<String, u32> = raw.iter().enumerate()
                .map(|(i, (_, _, _, rooms, used))| (format!("n{i:02}"), if *rooms == 0 { 0 } else { (*used).max(1) }))
                .collect();
            let slots_of = |name: &str| used.get(name).map(|u| NodeSlots { free: SLOTS - u, used: *u, schedulable: true });
            let loads = zone_loads(2, &nodes, slots_of, &[false, false]);
            let policy = Policy {
                buffer: Share::Count(buffer),
                windows: Vec::new(),
                scale_down_delay: std::time::Duration::from_secs(600),
                node_slots: SLOTS,
                zone_reserve: false,
                zones: (0..2).map(|z| ZoneRules { name: format!("z{z}"), min_nodes: 0, max_nodes: 8 }).collect(),
            };
            let now = Timestamp::from_second(1_800_000_000).unwrap_or(Timestamp::UNIX_EPOCH);
            let since = surplus_for.and_then(|s| now.checked_sub(jiff::SignedDuration::from_secs(s)).ok());
            let memory = [ZoneMemory { surplus_since: since, last_scale_down: None }; 2];
            let scales = decide(&policy, &Inputs { now, zones: &loads, waiting: &[], memory: &memory });
            let desired: Vec<u32> = scales.iter().map(|s| s.desired).collect();
            for action in plan(&desired, &nodes) {
                let find = |name: &str| nodes.iter().find(|n| n.name == name);
                match action {
                    FleetAction::Delete { node } => {
                        let n = find(&node).unwrap_or_else(|| panic!("unknown {node}"));
                        prop_assert!(n.rooms == 0 || n.phase == NodePhase::Drained, "deleted {n:?}");
                    }
                    FleetAction::Drain { node, cause } => {
                        let n = find(&node).unwrap_or_else(|| panic!("unknown {node}"));
                        prop_assert!(n.serving() && cause == DrainCause::ScaleDown, "{n:?}");
                    }
                    FleetAction::Create { .. } | FleetAction::Undrain { .. } => {}
                }
            }
        }
    }
}
