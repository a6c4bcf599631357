//! Rolling a new template revision across a fleet, zone by zone, without cutting a meeting.
//!
//! In a zone that still has nodes of an older revision, new-revision nodes are created within
//! `maxSurge` (every node of the zone counts, draining ones included: they still hold rooms),
//! and old nodes are drained (cause `Rollout`) as new ones become Ready, never leaving fewer
//! than `desired - maxUnavailable` Ready nodes in the zone. A draining old node is deleted once
//! empty, or its rooms are moved at the rollout's drain deadline, so a busy node never holds
//! the rollout back for longer than that deadline.
//!
//! A rollout halts when a new-revision node fails, or is not Ready within the progress
//! deadline: nothing more is drained, old nodes draining for the rollout come back into
//! service (and take the new rooms again, see [`crate::state::world`]), and the fleet says
//! `Degraded` until a changed template starts a new rollout.

use std::cmp::Reverse;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ruche_crds::NodePhase;
use ruche_crds::admin::RoomQuality;
use ruche_crds::fleet::QualityGate;

use super::fleet_plan::{DrainCause, FleetAction, NodeView};
use super::share::Share;

/// How many nodes a zone may run above, and lack below, its desired count during a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Extra nodes allowed.
    pub surge: u32,
    /// Ready nodes that may be missing.
    pub unavailable: u32,
}

impl Budget {
    /// Resolves `maxSurge` (a percentage rounds up) and `maxUnavailable` (rounds down) against
    /// `desired` nodes. Both zero would never progress: the surge is then one node.
    pub fn resolve(max_surge: &IntOrString, max_unavailable: &IntOrString, desired: u32) -> Self {
        let surge = scaled(max_surge, desired, true);
        let unavailable = scaled(max_unavailable, desired, false);
        Self {
            surge: if surge == 0 && unavailable == 0 {
                1
            } else {
                surge
            },
            unavailable,
        }
    }
}

/// A count, or a percentage of `of` (rounded up or down); anything unreadable counts as 0
/// (the API server's rules refuse it before it gets here).
fn scaled(value: &IntOrString, of: u32, up: bool) -> u32 {
    Share::parse(value).map_or(0, |share| share.of(of, up))
}

/// Whether a zone's nodes are being rolled: some live node runs an older revision.
pub fn rolling(nodes: &[&NodeView]) -> bool {
    nodes
        .iter()
        .any(|n| !n.current && !matches!(n.phase, NodePhase::Failed | NodePhase::Drained))
}

/// The changes that move one zone's nodes (of a zone being rolled) towards `desired` nodes of
/// the new revision. A halted rollout only brings back the old nodes it was draining.
pub fn plan_zone(
    zone: usize,
    desired: u32,
    nodes: &[&NodeView],
    budget: Budget,
    halted: bool,
) -> Vec<FleetAction> {
    let live: Vec<&NodeView> = nodes
        .iter()
        .copied()
        .filter(|n| !matches!(n.phase, NodePhase::Failed | NodePhase::Drained))
        .collect();
    if halted {
        return live
            .iter()
            .filter(|n| !n.current && n.drain == Some(DrainCause::Rollout))
            .map(|n| FleetAction::Undrain {
                node: n.name.clone(),
            })
            .collect();
    }
    let count = |f: &dyn Fn(&NodeView) -> bool| live.iter().filter(|n| f(n)).count() as u32;
    let new_serving = count(&|n| n.current && n.drain.is_none());
    let new_ready = count(&|n| n.current && n.drain.is_none() && n.phase == NodePhase::Ready);
    let total = live.len() as u32;
    let mut actions = Vec::new();
    let want_new = desired.saturating_sub(new_serving);
    let room_to_grow = (desired + budget.surge).saturating_sub(total);
    actions.extend((0..want_new.min(room_to_grow)).map(|_| FleetAction::Create { zone }));

    let mut old: Vec<&NodeView> = live
        .iter()
        .copied()
        .filter(|n| !n.current && n.drain.is_none())
        .collect();
    // Old nodes that serve nothing yet go first, then the emptiest, then the newest.
    old.sort_by_key(|n| {
        (
            n.phase == NodePhase::Ready,
            n.rooms,
            Reverse(n.created.unwrap_or(Timestamp::MAX)),
            n.name.clone(),
        )
    });
    let old_ready = old.iter().filter(|n| n.phase == NodePhase::Ready).count() as u32;
    let floor = desired.saturating_sub(budget.unavailable);
    let mut may_drain = (old_ready + new_ready).saturating_sub(floor);
    for n in old {
        let counts = n.phase == NodePhase::Ready;
        if counts {
            if may_drain == 0 {
                break;
            }
            may_drain -= 1;
        }
        actions.push(FleetAction::Drain {
            node: n.name.clone(),
            cause: DrainCause::Rollout,
        });
    }
    // More nodes of the new revision than the zone needs (it shrank while rolling): the
    // emptiest go, as in any scale-down.
    let mut new: Vec<&NodeView> = live
        .iter()
        .copied()
        .filter(|n| n.current && n.drain.is_none())
        .collect();
    new.sort_by_key(|n| {
        (
            n.phase == NodePhase::Ready,
            n.rooms,
            Reverse(n.created.unwrap_or(Timestamp::MAX)),
            n.name.clone(),
        )
    });
    actions.extend(
        new.into_iter()
            .take(new_serving.saturating_sub(desired) as usize)
            .map(|n| FleetAction::Drain {
                node: n.name.clone(),
                cause: DrainCause::ScaleDown,
            }),
    );
    actions
}

/// Why a rollout halts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    /// `NodeFailed` or `ProgressDeadlineExceeded`.
    pub reason: &'static str,
    /// What happened, naming the node.
    pub message: String,
}

/// Whether a rollout in progress must halt: a node of the new revision failed, or has not been
/// Ready within `progress_deadline` of its creation.
pub fn halt(nodes: &[NodeView], now: Timestamp, progress_deadline: Duration) -> Option<Halt> {
    let mut new: Vec<&NodeView> = nodes.iter().filter(|n| n.current).collect();
    new.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(n) = new.iter().find(|n| n.phase == NodePhase::Failed) {
        return Some(Halt {
            reason: "NodeFailed",
            message: format!("media node {} of the new revision failed", n.name),
        });
    }
    new.iter()
        .filter(|n| matches!(n.phase, NodePhase::Pending | NodePhase::Starting))
        .find_map(|n| {
            let waited = now.duration_since(n.created?);
            let waited = Duration::try_from(waited).ok()?;
            (waited >= progress_deadline).then(|| Halt {
                reason: "ProgressDeadlineExceeded",
                message: format!(
                    "media node {} of the new revision is not Ready {}s after its creation (progress deadline {}s)",
                    n.name,
                    waited.as_secs(),
                    progress_deadline.as_secs()
                ),
            })
        })
}

/// Joins and media quality summed over the rooms of one revision's nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Quality {
    /// Joins.
    pub joins: u64,
    /// Joins whose media connection never worked.
    pub failures: u64,
    loss_sum: f64,
    loss_rooms: u32,
    rtt_sum: f64,
    rtt_rooms: u32,
}

impl Quality {
    /// Adds one room's figures.
    pub fn add(&mut self, room: &RoomQuality) {
        self.joins += u64::from(room.joins);
        self.failures += u64::from(room.join_failures);
        if let Some(loss) = room.loss_percent.filter(|l| l.is_finite()) {
            self.loss_sum += loss;
            self.loss_rooms += 1;
        }
        if let Some(rtt) = room.rtt_ms.filter(|r| r.is_finite()) {
            self.rtt_sum += rtt;
            self.rtt_rooms += 1;
        }
    }

    /// Failed joins, in percent of joins.
    fn failure_percent(&self) -> f64 {
        if self.joins == 0 {
            return 0.0;
        }
        self.failures as f64 * 100.0 / self.joins as f64
    }

    /// Mean loss over the rooms that have a figure, in percent.
    fn loss_percent(&self) -> Option<f64> {
        (self.loss_rooms > 0).then(|| self.loss_sum / f64::from(self.loss_rooms))
    }

    /// Mean round-trip time over the rooms that have a figure, in milliseconds.
    fn rtt_ms(&self) -> Option<f64> {
        (self.rtt_rooms > 0).then(|| self.rtt_sum / f64::from(self.rtt_rooms))
    }
}

/// Whether the new revision serves worse than the old one by more than the gate's margins,
/// once each has seen the gate's minimum of joins.
pub fn quality_halt(old: &Quality, new: &Quality, gate: &QualityGate) -> Option<Halt> {
    let min = u64::from(gate.min_joins);
    if old.joins < min || new.joins < min {
        return None;
    }
    let worse = |what: &str, new: f64, old: f64, margin: u32, unit: &str| {
        (new - old > f64::from(margin)).then(|| Halt {
            reason: "QualityGate",
            message: format!(
                "{what} {new:.1}{unit} on the new revision against {old:.1}{unit} on the old one (margin {margin}{unit})"
            ),
        })
    };
    worse(
        "failed joins",
        new.failure_percent(),
        old.failure_percent(),
        gate.join_failure_points,
        "%",
    )
    .or_else(|| {
        let (n, o) = (new.loss_percent()?, old.loss_percent()?);
        worse("packet loss", n, o, gate.loss_points, "%")
    })
    .or_else(|| {
        let (n, o) = (new.rtt_ms()?, old.rtt_ms()?);
        worse("round-trip time", n, o, gate.rtt_ms, " ms")
    })
}

/// Where a rollout stands, in nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Nodes of the new revision, Ready and serving.
    pub updated: u32,
    /// Old nodes draining.
    pub draining: u32,
    /// Old nodes not yet draining.
    pub remaining: u32,
}

/// Counts a rollout's progress.
pub fn progress(nodes: &[NodeView]) -> Progress {
    let mut p = Progress::default();
    for n in nodes {
        if matches!(n.phase, NodePhase::Failed | NodePhase::Drained) {
            continue;
        }
        match (n.current, n.drain) {
            (true, None) if n.phase == NodePhase::Ready => p.updated += 1,
            (true, _) => {}
            (false, Some(_)) => p.draining += 1,
            (false, None) => p.remaining += 1,
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(name: &str, current: bool, phase: NodePhase, rooms: u32) -> NodeView {
        NodeView {
            name: name.into(),
            zone: Some(0),
            phase,
            drain: None,
            rooms,
            created: None,
            current,
        }
    }

    fn budget(surge: u32, unavailable: u32) -> Budget {
        Budget { surge, unavailable }
    }

    #[test]
    fn budgets_resolve_like_a_deployment() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(
            Budget::resolve(&pct("25%"), &IntOrString::Int(0), 4),
            budget(1, 0)
        );
        assert_eq!(
            Budget::resolve(&pct("25%"), &pct("25%"), 6),
            budget(2, 1),
            "surge rounds up, unavailable down"
        );
        assert_eq!(
            Budget::resolve(&IntOrString::Int(0), &IntOrString::Int(0), 4),
            budget(1, 0),
            "never stuck at zero and zero"
        );
    }

    #[test]
    fn a_zone_surges_then_drains_old_nodes_as_new_ones_are_ready() {
        let old_a = view("a", false, NodePhase::Ready, 3);
        let old_b = view("b", false, NodePhase::Ready, 1);
        // Start: one surge node, nothing drained (no new node Ready yet).
        assert_eq!(
            plan_zone(0, 2, &[&old_a, &old_b], budget(1, 0), false),
            vec![FleetAction::Create { zone: 0 }]
        );
        let starting = view("n1", true, NodePhase::Starting, 0);
        assert!(plan_zone(0, 2, &[&old_a, &old_b, &starting], budget(1, 0), false).is_empty());
        // Ready: the emptiest old node drains.
        let ready = view("n1", true, NodePhase::Ready, 0);
        assert_eq!(
            plan_zone(0, 2, &[&old_a, &old_b, &ready], budget(1, 0), false),
            vec![FleetAction::Drain {
                node: "b".into(),
                cause: DrainCause::Rollout
            }]
        );
        // While b drains, the zone is at its surge: nothing more.
        let mut draining = old_b.clone();
        draining.drain = Some(DrainCause::Rollout);
        assert!(plan_zone(0, 2, &[&old_a, &draining, &ready], budget(1, 0), false).is_empty());
        // Halted: b comes back, nothing else happens.
        assert_eq!(
            plan_zone(0, 2, &[&old_a, &draining, &ready], budget(1, 0), true),
            vec![FleetAction::Undrain { node: "b".into() }]
        );
    }

    #[test]
    fn a_new_node_that_fails_or_never_gets_ready_halts_the_rollout() {
        let t = |s: i64| Timestamp::from_second(1_800_000_000 + s).ok();
        let mut slow = view("n1", true, NodePhase::Starting, 0);
        slow.created = t(0);
        let old = view("a", false, NodePhase::Ready, 2);
        let deadline = Duration::from_secs(600);
        assert_eq!(
            halt(&[old.clone(), slow.clone()], t(599).unwrap(), deadline),
            None
        );
        let stalled = halt(&[old.clone(), slow], t(600).unwrap(), deadline).unwrap();
        assert_eq!(stalled.reason, "ProgressDeadlineExceeded");
        assert!(stalled.message.contains("n1"), "{}", stalled.message);
        let failed = view("n2", true, NodePhase::Failed, 0);
        assert_eq!(
            halt(&[old, failed], t(1).unwrap(), deadline).map(|h| h.reason),
            Some("NodeFailed")
        );
    }

    #[test]
    fn a_revision_that_serves_worse_than_the_old_one_by_the_margins_halts() {
        let gate = QualityGate {
            min_joins: 20,
            join_failure_points: 5,
            loss_points: 2,
            rtt_ms: 50,
        };
        let room = |joins, failures, loss, rtt| RoomQuality {
            joins,
            join_failures: failures,
            loss_percent: loss,
            rtt_ms: rtt,
        };
        let of = |rooms: &[RoomQuality]| {
            let mut q = Quality::default();
            for r in rooms {
                q.add(r);
            }
            q
        };
        let old = of(&[
            room(30, 0, Some(0.5), Some(40.0)),
            room(10, 1, Some(1.5), Some(60.0)),
        ]);
        // Too few joins on the new revision yet: nothing is said.
        assert_eq!(
            quality_halt(&old, &of(&[room(19, 19, Some(50.0), None)]), &gate),
            None
        );
        // Within the margins.
        let fine = of(&[room(40, 3, Some(2.9), Some(99.0))]);
        assert_eq!(quality_halt(&old, &fine, &gate), None);
        let failing = quality_halt(&old, &of(&[room(40, 4, None, None)]), &gate).unwrap();
        assert_eq!(failing.reason, "QualityGate");
        assert!(
            failing
                .message
                .starts_with("failed joins 10.0% on the new revision against 2.5%"),
            "{}",
            failing.message
        );
        let lossy = quality_halt(&old, &of(&[room(40, 0, Some(3.1), None)]), &gate).unwrap();
        assert!(
            lossy.message.starts_with("packet loss 3.1%"),
            "{}",
            lossy.message
        );
        let slow = quality_halt(&old, &of(&[room(40, 0, None, Some(101.0))]), &gate).unwrap();
        assert!(
            slow.message.starts_with("round-trip time 101.0 ms"),
            "{}",
            slow.message
        );
    }

    fn phase() -> impl Strategy<Value = NodePhase> {
        prop::sample::select(vec![
            NodePhase::Pending,
            NodePhase::Starting,
            NodePhase::Ready,
            NodePhase::Draining,
            NodePhase::Failed,
        ])
    }

    proptest! {
        /// Whatever the zone looks like: never more nodes than desired plus surge are created
        /// for, never fewer Ready serving nodes than desired minus unavailable remain once the
        /// drains are applied (unless there were fewer already: then nothing Ready is drained),
        /// never a new node drained, a halted rollout creates and drains nothing, and the same
        /// inputs give the same actions.
        #[test]
        fn a_rollout_keeps_to_its_budget(
            nodes in prop::collection::vec((any::<bool>(), phase(), any::<bool>(), 0u32..5), 1..12),
            desired in 1u32..6,
            surge in 0u32..3,
            unavailable in 0u32..3,
            halted in any::<bool>(),
        ) {
            let views: Vec<NodeView> = nodes
                .iter()
                .enumerate()
                .map(|(i, (current, phase, draining, rooms))| NodeView {
                    drain: draining.then_some(DrainCause::Rollout),
                    ..view(&format!("n{i}"), *current, *phase, *rooms)
                })
                .collect();
            let refs: Vec<&NodeView> = views.iter().collect();
            let b = Budget::resolve(
                &IntOrString::Int(i32::try_from(surge).unwrap_or(0)),
                &IntOrString::Int(i32::try_from(unavailable).unwrap_or(0)),
                desired,
            );
            let actions = plan_zone(0, desired, &refs, b, halted);
            prop_assert_eq!(&actions, &plan_zone(0, desired, &refs, b, halted));
            let live = views
                .iter()
                .filter(|n| !matches!(n.phase, NodePhase::Failed | NodePhase::Drained))
                .count() as u32;
            let creates = actions.iter().filter(|a| matches!(a, FleetAction::Create { .. })).count() as u32;
            let drained: Vec<&str> = actions
                .iter()
                .filter_map(|a| match a {
                    FleetAction::Drain { node, .. } => Some(node.as_str()),
                    _ => None,
                })
                .collect();
            if halted {
                prop_assert_eq!(creates, 0);
                prop_assert!(drained.is_empty());
                return Ok(());
            }
            // New nodes drain only beyond the zone's size, as a scale-down.
            let new_serving = views.iter().filter(|n| n.current && n.drain.is_none() && !matches!(n.phase, NodePhase::Failed | NodePhase::Drained)).count() as u32;
            let new_drained = actions.iter().filter(|a| matches!(a, FleetAction::Drain { cause: DrainCause::ScaleDown, .. })).count() as u32;
            prop_assert_eq!(new_drained, new_serving.saturating_sub(desired));
            prop_assert!(live + creates <= (desired + b.surge).max(live));
            let serving_ready = |n: &NodeView| {
                n.drain.is_none() && n.phase == NodePhase::Ready
            };
            let before = views.iter().filter(|n| serving_ready(n)).count() as u32;
            let after = views
                .iter()
                .filter(|n| serving_ready(n) && !drained.contains(&n.name.as_str()))
                .count() as u32;
            prop_assert!(after >= desired.saturating_sub(b.unavailable).min(before));
            for a in &actions {
                if let FleetAction::Drain { node, cause } = a {
                    let n = views.iter().find(|n| &n.name == node);
                    let old = *cause == DrainCause::Rollout;
                    prop_assert!(n.is_some_and(|n| n.current != old && n.drain.is_none()));
                }
            }
        }
    }
}
