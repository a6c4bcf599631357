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
