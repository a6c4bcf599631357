//! What a fleet's media nodes need, zone by zone, to reach the desired counts.
//!
//! Scale-down only ever drains: the emptiest serving nodes are asked to drain, and a node is
//! deleted once it is Drained (empty), unless a person drained it: that node is kept until
//! they undrain or delete it. Drains are reversible: if the fleet needs nodes again
//! while some drain for scale-down, those drains are cancelled before anything new is created,
//! fullest first, since they hold the most live rooms. Nodes draining for another reason (an
//! operator's hand, a rollout, a zone evacuation) are never touched here. A Failed node is
//! deleted once no room is left on it (the room controller moves them), and replaced like any
//! missing node.

use std::cmp::Reverse;
use std::fmt;

use jiff::Timestamp;
use ruche_crds::NodePhase;

use super::rollout::{Budget, plan_zone, rolling};

/// Why a node drains; written as `spec.drain.reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DrainCause {
    /// The fleet has more nodes than it needs.
    ScaleDown,
    /// Someone drained it by hand.
    Manual,
    /// A new revision replaces it.
    Rollout,
    /// Its whole zone is being evacuated.
    ZoneEvacuation,
    /// The Kubernetes node it runs on is being taken away (cordoned, or marked for removal by
    /// an autoscaler); undone by the operator if the node comes back.
    NodeMaintenance,
}

impl DrainCause {
    /// The reason as written in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleDown => "ScaleDown",
            Self::Manual => "Manual",
            Self::Rollout => "Rollout",
            Self::ZoneEvacuation => "ZoneEvacuation",
            Self::NodeMaintenance => "NodeMaintenance",
        }
    }

    /// Reads a reason; anything unknown (or absent) counts as a drain by hand, which this plan
    /// never cancels.
    pub fn parse(reason: Option<&str>) -> Self {
        match reason {
            Some("ScaleDown") => Self::ScaleDown,
            Some("Rollout") => Self::Rollout,
            Some("ZoneEvacuation") => Self::ZoneEvacuation,
            Some("NodeMaintenance") => Self::NodeMaintenance,
            _ => Self::Manual,
        }
    }
}

impl fmt::Display for DrainCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A media node as the fleet controller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    /// `MediaNode` name.
    pub name: String,
    /// Index of its zone in the fleet's zones (`None`: a zone the fleet no longer has).
    pub zone: Option<usize>,
    /// Lifecycle phase.
    pub phase: NodePhase,
    /// Why it drains, if it does.
    pub drain: Option<DrainCause>,
    /// Rooms placed on it.
    pub rooms: u32,
    /// When it was created (`None`: being created).
    pub created: Option<Timestamp>,
    /// Whether it runs the fleet's current template revision.
    pub current: bool,
}

impl NodeView {
    /// Whether it serves or is about to: not draining, not failed.
    pub fn serving(&self) -> bool {
        // Drained without a drain request: undrained a moment ago, coming back into service.
        self.drain.is_none() && self.phase != NodePhase::Failed
    }
}

/// One change to the fleet's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FleetAction {
    /// Create a node in the zone (by index).
    Create {
        /// Zone index.
        zone: usize,
    },
    /// Ask a node to drain.
    Drain {
        /// Node name.
        node: String,
        /// Why.
        cause: DrainCause,
    },
    /// Cancel a scale-down drain.
    Undrain {
        /// Node name.
        node: String,
    },
    /// Delete a node (Drained, or Failed and empty, or in a zone the fleet dropped and empty).
    Delete {
        /// Node name.
        node: String,
    },
}

/// What besides the counts shapes the plan, per zone (by index): a rollout's budgets and
/// whether it halted, and the zones being evacuated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Levers {
    /// Rollout budget of each zone.
    pub budgets: Vec<Budget>,
    /// Halted on a bad revision: no node is created or drained for it.
    pub halted: bool,
    /// Zones being evacuated: every node drains (cause `ZoneEvacuation`), none is created.
    pub evacuated: Vec<bool>,
}

/// The changes that take the fleet's nodes towards `desired` (nodes per zone, by index), with
/// no node of an older revision to roll.
pub fn plan(desired: &[u32], nodes: &[NodeView]) -> Vec<FleetAction> {
    plan_with(desired, nodes, &Levers::default())
}

/// The changes that take the fleet's nodes towards `desired` (nodes per zone, by index); a
/// zone with nodes of an older revision is rolled (see [`super::rollout`]).
pub fn plan_with(desired: &[u32], nodes: &[NodeView], rollout: &Levers) -> Vec<FleetAction> {
    let mut actions = Vec::new();
    let mut sorted: Vec<&NodeView> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for node in &sorted {
        let gone_zone = node.zone.is_none_or(|z| z >= desired.len());
        let removable = match node.phase {
            // A node drained by a person stays until they undrain or delete it; one whose
            // drain was just removed is coming back into service.
            NodePhase::Drained => node.drain.is_some_and(|c| c != DrainCause::Manual),
            NodePhase::Failed => node.rooms == 0,
            _ => gone_zone && node.rooms == 0,
        };
        if removable {
            actions.push(FleetAction::Delete {
                node: node.name.clone(),
            });
        } else if gone_zone && node.drain.is_none() {
            actions.push(FleetAction::Drain {
                node: node.name.clone(),
                cause: DrainCause::ScaleDown,
            });
        }
    }
    for (zone, &want) in desired.iter().enumerate() {
        let mut in_zone: Vec<&NodeView> = sorted
            .iter()
            .copied()
            .filter(|n| n.zone == Some(zone))
            .collect();
        let live = |n: &NodeView| !matches!(n.phase, NodePhase::Failed | NodePhase::Drained);
        if rollout.evacuated.get(zone) == Some(&true) {
            actions.extend(
                in_zone
                    .iter()
                    .filter(|n| n.drain.is_none() && live(n))
                    .map(|n| FleetAction::Drain {
                        node: n.name.clone(),
                        cause: DrainCause::ZoneEvacuation,
                    }),
            );
            continue;
        }
        // An evacuation undone: its drains are cancelled, and those nodes serve again.
        let returning: Vec<NodeView> = in_zone
            .iter()
            .filter(|n| n.drain == Some(DrainCause::ZoneEvacuation) && live(n))
            .map(|n| NodeView {
                drain: None,
                ..(*n).clone()
            })
            .collect();
        for n in &returning {
            actions.push(FleetAction::Undrain {
                node: n.name.clone(),
            });
        }
        in_zone.retain(|n| !returning.iter().any(|r| r.name == n.name));
        in_zone.extend(returning.iter());
        if rolling(&in_zone) {
            let budget = rollout.budgets.get(zone).copied().unwrap_or(Budget {
                surge: 1,
                unavailable: 0,
            });
            actions.extend(plan_zone(zone, want, &in_zone, budget, rollout.halted));
            continue;
        }
        let serving: Vec<&NodeView> = in_zone.iter().copied().filter(|n| n.serving()).collect();
        let have = serving.len() as u32;
        if have < want {
            let mut missing = want - have;
            let mut scaling_down: Vec<&NodeView> = in_zone
                .iter()
                .copied()
                .filter(|n| {
                    n.drain == Some(DrainCause::ScaleDown)
                        && !matches!(n.phase, NodePhase::Failed | NodePhase::Drained)
                })
                .collect();
            scaling_down.sort_by_key(|n| (Reverse(n.rooms), n.name.clone()));
            for n in scaling_down.into_iter().take(missing as usize) {
                actions.push(FleetAction::Undrain {
                    node: n.name.clone(),
                });
                missing -= 1;
            }
            actions.extend((0..missing).map(|_| FleetAction::Create { zone }));
        } else if have > want {
            let mut candidates = serving;
            // Emptiest first; among equals, nodes still starting first, then the newest (a
            // node created to stand in for one drained by hand goes when that one comes back).
            candidates.sort_by_key(|n| {
                (
                    n.rooms,
                    !matches!(n.phase, NodePhase::Pending | NodePhase::Starting),
                    Reverse(n.created.unwrap_or(Timestamp::MAX)),
                    n.name.clone(),
                )
            });
            for n in candidates.into_iter().take((have - want) as usize) {
                actions.push(FleetAction::Drain {
                    node: n.name.clone(),
                    cause: DrainCause::ScaleDown,
                });
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn node(
        name: &str,
        zone: usize,
        phase: NodePhase,
        drain: Option<DrainCause>,
        rooms: u32,
    ) -> NodeView {
        NodeView {
            name: name.into(),
            zone: Some(zone),
            phase,
            drain,
            rooms,
            created: None,
            current: true,
        }
    }

    #[test]
    fn creates_what_is_missing() {
        let nodes = [node("a1", 0, NodePhase::Ready, None, 3)];
        assert_eq!(
            plan(&[2, 1], &nodes),
            vec![
                FleetAction::Create { zone: 0 },
                FleetAction::Create { zone: 1 }
            ]
        );
    }

    #[test]
    fn scale_down_drains_the_emptiest_and_deletes_only_drained_nodes() {
        let nodes = [
            node("a1", 0, NodePhase::Ready, None, 5),
            node("a2", 0, NodePhase::Ready, None, 0),
            node("a3", 0, NodePhase::Ready, None, 2),
            node("a4", 0, NodePhase::Drained, Some(DrainCause::ScaleDown), 0),
        ];
        assert_eq!(
            plan(&[1], &nodes),
            vec![
                FleetAction::Delete { node: "a4".into() },
                FleetAction::Drain {
                    node: "a2".into(),
                    cause: DrainCause::ScaleDown
                },
                FleetAction::Drain {
                    node: "a3".into(),
                    cause: DrainCause::ScaleDown
                },
            ]
        );
    }

    #[test]
    fn a_node_drained_by_hand_is_kept_one_drained_by_the_operator_goes() {
        let nodes = [
            node("a1", 0, NodePhase::Ready, None, 5),
            node("a2", 0, NodePhase::Drained, Some(DrainCause::Manual), 0),
            node("a3", 0, NodePhase::Drained, Some(DrainCause::Rollout), 0),
            node(
                "a4",
                0,
                NodePhase::Drained,
                Some(DrainCause::ZoneEvacuation),
                0,
            ),
            // Undrained a moment ago: its status has not caught up yet.
            node("a5", 0, NodePhase::Drained, None, 0),
        ];
        assert_eq!(
            plan(&[2], &nodes),
            vec![
                FleetAction::Delete { node: "a3".into() },
                FleetAction::Delete { node: "a4".into() },
            ]
        );
    }

    #[test]
    fn among_equally_empty_nodes_the_newest_is_drained_first() {
        let at = |s: i64| Timestamp::from_second(1_800_000_000 + s).ok();
        let mut old = node("a1", 0, NodePhase::Ready, None, 0);
        old.created = at(0);
        let mut stand_in = node("a2", 0, NodePhase::Ready, None, 0);
        stand_in.created = at(600);
        let mut busy = node("a3", 0, NodePhase::Ready, None, 3);
        busy.created = at(900);
        assert_eq!(
            plan(&[2], &[old, stand_in, busy]),
            vec![FleetAction::Drain {
                node: "a2".into(),
                cause: DrainCause::ScaleDown
            }]
        );
    }

    #[test]
    fn an_evacuated_zone_drains_every_node_and_undoing_it_brings_them_back() {
        let nodes = [
            node("a1", 0, NodePhase::Ready, None, 3),
            node("a2", 0, NodePhase::Draining, Some(DrainCause::Manual), 1),
            node(
                "a3",
                0,
                NodePhase::Drained,
                Some(DrainCause::ZoneEvacuation),
                0,
            ),
            node("b1", 1, NodePhase::Ready, None, 0),
        ];
        let evacuate_a = Levers {
            evacuated: vec![true, false],
            ..Levers::default()
        };
        assert_eq!(
            plan_with(&[2, 1], &nodes, &evacuate_a),
            vec![
                FleetAction::Delete { node: "a3".into() },
                FleetAction::Drain {
                    node: "a1".into(),
                    cause: DrainCause::ZoneEvacuation
                },
            ],
            "nothing is created in an evacuated zone; a drain by hand is left alone"
        );
        let evacuating = [
            node(
                "a1",
                0,
                NodePhase::Draining,
                Some(DrainCause::ZoneEvacuation),
                3,
            ),
            node("b1", 1, NodePhase::Ready, None, 0),
        ];
        assert_eq!(
            plan_with(&[1, 1], &evacuating, &Levers::default()),
            vec![FleetAction::Undrain { node: "a1".into() }],
            "undone: a1 comes back and counts as serving, nothing is created"
        );
    }

    #[test]
    fn scaling_up_again_cancels_scale_down_drains_before_creating() {
        let nodes = [
            node("a1", 0, NodePhase::Ready, None, 5),
            node("a2", 0, NodePhase::Draining, Some(DrainCause::ScaleDown), 1),
            node("a3", 0, NodePhase::Draining, Some(DrainCause::ScaleDown), 4),
            node("a4", 0, NodePhase::Draining, Some(DrainCause::Manual), 0),
        ];
        assert_eq!(
            plan(&[3], &nodes),
            vec![
                FleetAction::Undrain { node: "a3".into() },
                FleetAction::Undrain { node: "a2".into() }
            ]
        );
        assert_eq!(
            plan(&[4], &nodes).last(),
            Some(&FleetAction::Create { zone: 0 }),
            "a manual drain is never cancelled"
        );
    }

    #[test]
    fn failed_nodes_are_replaced_and_removed_once_empty() {
        let nodes = [
            node("a1", 0, NodePhase::Failed, None, 2),
            node("a2", 0, NodePhase::Ready, None, 0),
        ];
        assert_eq!(
            plan(&[2], &nodes),
            vec![FleetAction::Create { zone: 0 }],
            "a failed node with rooms stays until they moved"
        );
        let emptied = [
            node("a1", 0, NodePhase::Failed, None, 0),
            node("a2", 0, NodePhase::Ready, None, 0),
        ];
        assert_eq!(
            plan(&[2], &emptied),
            vec![
                FleetAction::Delete { node: "a1".into() },
                FleetAction::Create { zone: 0 }
            ]
        );
    }

    #[test]
    fn nodes_of_a_dropped_zone_drain_then_go() {
        let nodes = [
            NodeView {
                name: "x1".into(),
                zone: None,
                phase: NodePhase::Ready,
                drain: None,
                rooms: 2,
                created: None,
                current: true,
            },
            NodeView {
                name: "x2".into(),
                zone: None,
                phase: NodePhase::Ready,
                drain: None,
                rooms: 0,
                created: None,
                current: true,
            },
        ];
        assert_eq!(
            plan(&[], &nodes),
            vec![
                FleetAction::Drain {
                    node: "x1".into(),
                    cause: DrainCause::ScaleDown
                },
                FleetAction::Delete { node: "x2".into() }
            ]
        );
    }

    fn phase() -> impl Strategy<Value = NodePhase> {
        prop::sample::select(NodePhase::ALL.to_vec())
    }

    fn cause() -> impl Strategy<Value = Option<DrainCause>> {
        prop::option::of(prop::sample::select(vec![
            DrainCause::ScaleDown,
            DrainCause::Manual,
            DrainCause::Rollout,
        ]))
    }

    proptest! {
        #[test]
        fn never_deletes_a_node_with_rooms_nor_touches_other_drains(
            raw in prop::collection::vec((0usize..3, phase(), cause(), 0u32..4), 0..12),
            desired in prop::collection::vec(0u32..5, 3),
        ) {
            let nodes: Vec<NodeView> = raw.iter().enumerate().map(|(i, (z, p, c, r))| node(&format!("n{i:02}"), *z, *p, *c, *r)).collect();
            let actions = plan(&desired, &nodes);
            let by_name = |name: &str| nodes.iter().find(|n| n.name == name).cloned();
            for a in &actions {
                match a {
                    FleetAction::Delete { node } => {
                        let n = by_name(node).unwrap();
                        prop_assert!(n.rooms == 0 || n.phase == NodePhase::Drained, "deleted {n:?}");
                    }
                    FleetAction::Undrain { node } => prop_assert_eq!(by_name(node).unwrap().drain, Some(DrainCause::ScaleDown)),
                    FleetAction::Drain { node, .. } => prop_assert_eq!(by_name(node).unwrap().drain, None),
                    FleetAction::Create { zone } => prop_assert!(*zone < desired.len()),
                }
            }
            // After the plan, each zone serves what it should (or is still draining down to it).
            for (zone, want) in desired.iter().enumerate() {
                let serving = nodes.iter().filter(|n| n.zone == Some(zone) && n.serving()).count() as u32;
                let created = actions.iter().filter(|a| **a == FleetAction::Create { zone }).count() as u32;
                let undrained = actions.iter().filter(|a| matches!(a, FleetAction::Undrain { node } if by_name(node).unwrap().zone == Some(zone))).count() as u32;
                let drained = actions.iter().filter(|a| matches!(a, FleetAction::Drain { node, .. } if by_name(node).unwrap().zone == Some(zone))).count() as u32;
                prop_assert_eq!(serving + created + undrained - drained, *want);
            }
        }
    }
}
