//! Property tests of the pure placement core.
//!
//! Random fleets (1–5 zones, up to 40 nodes in every phase) go through random histories of
//! placements, releases, load reports, drain and phase flips, and node failures with their
//! failover plans. After every step the core is checked against brute force over the nodes
//! and against a naive reference implementation of the placement policy.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Display;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use ruche_crds::{NodePhase, PlacementStrategy};
use ruche_operator::core::{
    Action, FleetRules, NodeId, NodeInfo, NodeState, Refusal, RoomKey, RoomRequest, Snapshot,
    Unschedulable, ZoneId, ZoneRules, failover, place,
};

const ZONE_NAMES: [&str; 5] = ["eu-west", "eu-central", "us-east", "ap-south", "sa-east"];

#[derive(Clone, Debug)]
struct NodeSpec {
    name: String,
    zone: usize,
    capacity: u32,
    phase: NodePhase,
    draining: bool,
    /// Runs an older revision during a rollout: takes rooms only when no other node can.
    fallback: bool,
    measured: u32,
}

#[derive(Clone, Debug)]
enum Op {
    /// Place a room and assign it where `place` says.
    Place {
        slots: u32,
        allowed: u8,
        preferred: u8,
    },
    Release(Index),
    Observe(Index, u32),
    Drain(Index, bool),
    Phase(Index, NodePhase),
    /// Mark one or two nodes Failed and apply their failover plan.
    Fail(Index, Option<Index>),
}

#[derive(Clone, Debug)]
struct Case {
    strategy: PlacementStrategy,
    zones: usize,
    nodes: Vec<NodeSpec>,
    ops: Vec<Op>,
}

fn phase() -> impl Strategy<Value = NodePhase> {
    prop_oneof![
        3 => Just(NodePhase::Ready),
        2 => prop::sample::select(NodePhase::ALL.to_vec()),
    ]
}

fn capacity() -> impl Strategy<Value = u32> {
    // Repeated capacities make free-slot ties common.
    prop_oneof![3 => 1..=300u32, 1 => Just(100u32), 1 => Just(40u32)]
}

fn measured() -> impl Strategy<Value = u32> {
    prop_oneof![3 => Just(0u32), 2 => 0..=320u32]
}

fn node_specs(zones: usize) -> impl Strategy<Value = Vec<NodeSpec>> {
    let spec = (
        0..zones,
        capacity(),
        phase(),
        prop::bool::weighted(0.15),
        measured(),
        (0..6u8, prop::bool::weighted(0.25)),
    );
    prop::collection::vec(spec, 0..=40).prop_map(|specs| {
        specs
            .into_iter()
            .enumerate()
            .map(
                |(i, (zone, capacity, phase, draining, measured, (tag, fallback)))| NodeSpec {
                    // Name order differs from insertion order ("m2-10" < "m2-3").
                    name: format!("m{tag}-{i}"),
                    zone,
                    capacity,
                    phase,
                    draining,
                    fallback,
                    measured,
                },
            )
            .collect()
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1..=120u32, any::<u8>(), any::<u8>()).prop_map(|(slots, allowed, preferred)| {
            Op::Place { slots, allowed, preferred }
        }),
        2 => any::<Index>().prop_map(Op::Release),
        2 => (any::<Index>(), measured()).prop_map(|(n, m)| Op::Observe(n, m)),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(n, d)| Op::Drain(n, d)),
        1 => (any::<Index>(), phase()).prop_map(|(n, p)| Op::Phase(n, p)),
        1 => (any::<Index>(), proptest::option::of(any::<Index>()))
            .prop_map(|(a, b)| Op::Fail(a, b)),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    let strategy = prop_oneof![
        Just(PlacementStrategy::Packed),
        Just(PlacementStrategy::Distributed)
    ];
    (strategy, 1..=5usize)
        .prop_flat_map(|(strategy, zones)| {
            (
                Just(strategy),
                Just(zones),
                node_specs(zones),
                prop::collection::vec(op(), 0..=40),
            )
        })
        .prop_map(|(strategy, zones, nodes, ops)| Case {
            strategy,
            zones,
            nodes,
            ops,
        })
}

/// A case and a permutation of its nodes (the order to add them in).
fn case_and_order() -> impl Strategy<Value = (Case, Vec<usize>)> {
    case().prop_flat_map(|c| {
        let order: Vec<usize> = (0..c.nodes.len()).collect();
        (Just(c), Just(order).prop_shuffle())
    })
}

fn ok<T, E: Display>(r: Result<T, E>, what: &str) -> Result<T, TestCaseError> {
    r.map_err(|e| TestCaseError::fail(format!("{what}: {e}")))
}

// Independent helpers: they read the node's raw fields, not its methods.
fn is_schedulable(n: &NodeState) -> bool {
    n.phase == NodePhase::Ready && !n.cordoned
}

fn used_of(n: &NodeState) -> u32 {
    n.load.reserved.max(n.load.measured)
}

fn free_of(n: &NodeState) -> u32 {
    n.capacity.saturating_sub(used_of(n))
}

fn fits(n: &NodeState, slots: u32) -> bool {
    is_schedulable(n) && free_of(n) >= slots
}

/// Rank of a zone for a request: 0 home, 1 preferred, 2 other allowed, `None` not allowed.
fn tier_of(req: &RoomRequest, zone: ZoneId) -> Option<u8> {
    if !req.allowed.contains(zone) {
        None
    } else if req.home == Some(zone) {
        Some(0)
    } else if req.preferred.contains(zone) {
        Some(1)
    } else {
        Some(2)
    }
}

/// Used (capped at capacity) and total slots of the schedulable nodes of a zone.
fn naive_zone_use(snap: &Snapshot, zone: ZoneId) -> (u64, u64) {
    snap.nodes()
        .filter(|(_, n)| n.zone == zone && is_schedulable(n))
        .fold((0, 0), |(used, cap), (_, n)| {
            (
                used + u64::from(used_of(n).min(n.capacity)),
                cap + u64::from(n.capacity),
            )
        })
}

/// The node of `zone` the strategy picks, by scanning every node.
fn naive_pick(snap: &Snapshot, zone: ZoneId, slots: u32, fallback: bool) -> Option<NodeId> {
    let packed = snap.rules().strategy == PlacementStrategy::Packed;
    snap.nodes()
        .filter(|(_, n)| n.zone == zone && n.fallback == fallback && fits(n, slots))
        .min_by(|(_, a), (_, b)| {
            let by_free = if packed {
                free_of(a).cmp(&free_of(b))
            } else {
                free_of(b).cmp(&free_of(a))
            };
            by_free.then_with(|| a.name.cmp(&b.name))
        })
        .map(|(id, _)| id)
}

/// Reference policy: among zones with a fitting node, the lowest (tier, fallback,
/// used/capacity, zone id) wins, and the strategy picks the node in it.
fn reference(snap: &Snapshot, req: &RoomRequest) -> Option<NodeId> {
    let zones = snap.rules().zones.len();
    let candidates =
        (0..zones)
            .flat_map(|z| [(z, false), (z, true)])
            .filter_map(|(z, fallback)| {
                let zone = ZoneId(z as u8);
                let tier = tier_of(req, zone)?;
                let node = naive_pick(snap, zone, req.slots, fallback)?;
                let (used, cap) = naive_zone_use(snap, zone);
                Some((
                    (tier, fallback),
                    u128::from(used),
                    u128::from(cap),
                    zone,
                    node,
                ))
            });
    candidates
        .min_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| (a.1 * b.2).cmp(&(b.1 * a.2)))
                .then_with(|| a.3.cmp(&b.3))
        })
        .map(|c| c.4)
}

fn node_name(snap: &Snapshot, id: NodeId) -> String {
    snap.node(id)
        .map_or_else(|| format!("<unknown {id:?}>"), |n| n.name.to_string())
}

/// Checks one `place` outcome against brute force and the reference (properties 1–5).
fn check_place(
    snap: &Snapshot,
    req: &RoomRequest,
    outcome: &Result<NodeId, Unschedulable>,
) -> Result<(), TestCaseError> {
    let fitting: Vec<(NodeId, &NodeState)> = snap
        .nodes()
        .filter(|(_, n)| req.allowed.contains(n.zone) && fits(n, req.slots))
        .collect();
    match outcome {
        Ok(id) => {
            let Some(n) = snap.node(*id) else {
                return Err(TestCaseError::fail(format!(
                    "place chose {id:?}, not a node"
                )));
            };
            prop_assert!(
                n.schedulable() && is_schedulable(n),
                "P2: placed {} slots on {} (phase {:?}, draining {})",
                req.slots,
                n.name,
                n.phase,
                n.cordoned
            );
            prop_assert!(
                n.free() >= req.slots && free_of(n) >= req.slots,
                "P1: placed {} slots on {} with only {} free (capacity {}, load {:?})",
                req.slots,
                n.name,
                n.free(),
                n.capacity,
                n.load
            );
            prop_assert!(
                req.allowed.contains(n.zone),
                "P3: placed on {} in zone {:?}, not in allowed {:?}",
                n.name,
                n.zone,
                req.allowed
            );
            let best_tier = fitting
                .iter()
                .filter_map(|(_, f)| tier_of(req, f.zone))
                .min();
            // P6: a node of an older revision only when nothing else in the tier fits.
            if n.fallback {
                let newer = fitting
                    .iter()
                    .find(|(_, f)| !f.fallback && tier_of(req, f.zone) == tier_of(req, n.zone));
                prop_assert!(
                    newer.is_none(),
                    "P6: placed on {}, of an older revision, while {} fits in the same tier",
                    n.name,
                    newer.map_or("?", |(_, f)| &*f.name)
                );
            }
            prop_assert_eq!(
                tier_of(req, n.zone),
                best_tier,
                "P3: zone {:?} chosen while a better tier (home, then preferred) had room; request {:?}",
                n.zone,
                req
            );
        }
        Err(e) => {
            prop_assert!(
                fitting.is_empty(),
                "P4: refused {} slots but {} fits: {}",
                req.slots,
                fitting.first().map_or("?", |(_, n)| &*n.name),
                e
            );
            prop_assert_eq!(e.slots, req.slots, "P4: refusal names the wrong slots");
            let names: Vec<&str> = e.zones.iter().map(|z| z.zone.as_str()).collect();
            let fleet: Vec<&str> = snap.rules().zones.iter().map(|z| z.name.as_str()).collect();
            prop_assert_eq!(
                names,
                fleet,
                "P4: refusal must list every fleet zone once, in order"
            );
            for (i, z) in e.zones.iter().enumerate() {
                let allowed = req.allowed.contains(ZoneId(i as u8));
                prop_assert_eq!(
                    z.refusal != Refusal::NotAllowed,
                    allowed,
                    "P4: zone {} refusal {:?} disagrees with allowed {:?}",
                    &z.zone,
                    &z.refusal,
                    req.allowed
                );
            }
        }
    }
    let got = outcome.as_ref().ok().copied();
    let want = reference(snap, req);
    prop_assert_eq!(
        got,
        want,
        "P5: place chose {:?} ({}), reference chose {:?} ({}) for {:?}",
        got,
        got.map_or_else(|| "none".into(), |id| node_name(snap, id)),
        want,
        want.map_or_else(|| "none".into(), |id| node_name(snap, id)),
        req
    );
    Ok(())
}

/// One history being played against a snapshot, with a shadow model of the placements.
struct Run<'a> {
    case: &'a Case,
    snap: Snapshot,
    /// Room → (node, slots), as the test applied them.
    model: BTreeMap<RoomKey, (NodeId, u32)>,
    /// What was decided, by node name, for comparing runs.
    trace: Vec<String>,
    next_room: usize,
}

impl<'a> Run<'a> {
    fn new(case: &'a Case, order: &[usize]) -> Result<Self, TestCaseError> {
        let rules = FleetRules {
            strategy: case.strategy,
            zones: ZONE_NAMES[..case.zones]
                .iter()
                .map(|z| ZoneRules {
                    name: (*z).to_string(),
                    min_nodes: 0,
                    max_nodes: 10,
                })
                .collect(),
        };
        let mut snap = ok(Snapshot::new(rules), "rules")?;
        for &i in order {
            let spec = &case.nodes[i];
            let info = NodeInfo {
                name: spec.name.clone(),
                zone: ZONE_NAMES[spec.zone].to_string(),
                revision: "r1".into(),
                capacity: spec.capacity,
                phase: spec.phase,
                cordoned: spec.draining,
                fallback: spec.fallback,
            };
            let id = ok(snap.add_node(info), "add_node")?;
            ok(snap.observe(id, spec.measured), "observe")?;
        }
        Ok(Self {
            case,
            snap,
            model: BTreeMap::new(),
            trace: Vec::new(),
            next_room: 0,
        })
    }

    fn node_at(&self, i: Index) -> Option<NodeId> {
        let nodes = &self.case.nodes;
        if nodes.is_empty() {
            return None;
        }
        self.snap.node_id(&nodes[i.index(nodes.len())].name)
    }

    fn play(mut self) -> Result<Vec<String>, TestCaseError> {
        self.check_accounting()?;
        for op in &self.case.ops {
            match op {
                Op::Place {
                    slots,
                    allowed,
                    preferred,
                } => self.place(*slots, *allowed, *preferred)?,
                Op::Release(i) => self.release(*i)?,
                Op::Observe(i, m) => {
                    if let Some(id) = self.node_at(*i) {
                        ok(self.snap.observe(id, *m), "observe")?;
                    }
                }
                Op::Drain(i, d) => {
                    if let Some(id) = self.node_at(*i) {
                        ok(self.snap.set_cordoned(id, *d), "set_draining")?;
                    }
                }
                Op::Phase(i, p) => {
                    if let Some(id) = self.node_at(*i) {
                        ok(self.snap.set_phase(id, *p), "set_phase")?;
                    }
                }
                Op::Fail(a, b) => self.fail(*a, *b)?,
            }
            self.check_accounting()?;
        }
        Ok(self.trace)
    }

    fn place(&mut self, slots: u32, allowed: u8, preferred: u8) -> Result<(), TestCaseError> {
        let zones = |bits: u8| -> Vec<&str> {
            (0..self.case.zones)
                .filter(|z| bits & (1 << z) != 0)
                .map(|z| ZONE_NAMES[z])
                .collect()
        };
        let req = ok(
            self.snap.request(slots, &zones(allowed), &zones(preferred)),
            "request",
        )?;
        let outcome = place(&self.snap, &req);
        if let Ok(p) = &outcome {
            let zone = self.snap.node(p.node).map(|n| n.zone);
            prop_assert_eq!(Some(p.zone), zone, "Placement.zone is not the node's zone");
        }
        let outcome = outcome.map(|p| p.node);
        check_place(&self.snap, &req, &outcome)?;
        match outcome {
            Ok(node) => {
                let room = RoomKey::new(format!("room-{:03}", self.next_room));
                self.next_room += 1;
                let assign = Action::Assign {
                    room: room.clone(),
                    node,
                    request: req,
                };
                ok(self.snap.apply(&assign), "assign")?;
                self.model.insert(room, (node, slots));
                self.trace.push(node_name(&self.snap, node));
            }
            Err(e) => self.trace.push(format!("refused: {e}")),
        }
        Ok(())
    }

    fn release(&mut self, i: Index) -> Result<(), TestCaseError> {
        let keys: Vec<RoomKey> = self.model.keys().cloned().collect();
        if keys.is_empty() {
            return Ok(());
        }
        let room = keys[i.index(keys.len())].clone();
        ok(
            self.snap.apply(&Action::Release { room: room.clone() }),
            "release",
        )?;
        self.model.remove(&room);
        self.trace.push(format!("released {room}"));
        Ok(())
    }

    fn fail(&mut self, a: Index, b: Option<Index>) -> Result<(), TestCaseError> {
        let mut failed: Vec<NodeId> = Vec::new();
        for id in std::iter::once(a).chain(b).filter_map(|i| self.node_at(i)) {
            if !failed.contains(&id) {
                failed.push(id);
            }
        }
        if failed.is_empty() {
            return Ok(());
        }
        for &id in &failed {
            ok(self.snap.set_phase(id, NodePhase::Failed), "set_phase")?;
        }
        let plan = failover(&self.snap, &failed);
        // Rooms of the failed nodes, largest first, then by key.
        let mut expected: Vec<(RoomKey, NodeId, u32)> = self
            .model
            .iter()
            .filter(|(_, (n, _))| failed.contains(n))
            .map(|(k, (n, s))| (k.clone(), *n, *s))
            .collect();
        expected.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        prop_assert_eq!(
            plan.actions.len(),
            expected.len(),
            "failover: one action per room of the failed nodes; plan {:?}",
            &plan
        );
        prop_assert_eq!(
            plan.moved.len() + plan.stranded.len(),
            expected.len(),
            "failover: every room is moved or stranded"
        );
        let mut scratch = self.snap.clone();
        let (mut moved, mut stranded) = (plan.moved.iter(), plan.stranded.iter());
        for (action, (key, from, slots)) in plan.actions.iter().zip(&expected) {
            let Some(record) = scratch.room(key) else {
                return Err(TestCaseError::fail(format!("room {key} vanished")));
            };
            let home = self.snap.node(*from).map(|n| n.zone);
            prop_assert!(home.is_some(), "failed node {:?} vanished", from);
            let req = home.map_or(record.request, |z| record.request.with_home(z));
            prop_assert_eq!(req.slots, *slots, "room {} changed size", key);
            match action {
                Action::Move { room, to } => {
                    prop_assert_eq!(room, key, "failover: rooms out of order");
                    prop_assert!(
                        !failed.contains(to),
                        "P2: failover moved {} back onto failed node {:?}",
                        key,
                        to
                    );
                    prop_assert_eq!(
                        moved.next(),
                        Some(&(key.clone(), *from, *to)),
                        "failover: `moved` disagrees with actions"
                    );
                    check_place(&scratch, &req, &Ok(*to))?;
                    self.trace
                        .push(format!("moved {key} to {}", node_name(&scratch, *to)));
                }
                Action::Release { room } => {
                    prop_assert_eq!(room, key, "failover: rooms out of order");
                    let Some((k, why)) = stranded.next() else {
                        return Err(TestCaseError::fail(format!(
                            "failover released {key} without saying why"
                        )));
                    };
                    prop_assert_eq!(k, key, "failover: `stranded` disagrees with actions");
                    check_place(&scratch, &req, &Err(why.clone()))?;
                    self.trace.push(format!("stranded {key}: {why}"));
                }
                Action::Assign { .. } => {
                    return Err(TestCaseError::fail("failover planned an Assign"));
                }
            }
            ok(scratch.apply(action), "scratch apply")?;
        }
        for action in &plan.actions {
            ok(self.snap.apply(action), "apply failover action")?;
            match action {
                Action::Move { room, to } => {
                    if let Some(entry) = self.model.get_mut(room) {
                        entry.0 = *to;
                    }
                }
                Action::Release { room } => {
                    self.model.remove(room);
                }
                Action::Assign { .. } => {}
            }
        }
        for &id in &failed {
            let left = self.snap.node(id).map(|n| (n.rooms, n.load.reserved));
            prop_assert_eq!(left, Some((0, 0)), "failover left rooms on {:?}", id);
        }
        Ok(())
    }

    /// Property 6: reservations, room counts and zone use match the rooms.
    fn check_accounting(&self) -> Result<(), TestCaseError> {
        let recorded: BTreeMap<RoomKey, (NodeId, u32)> = self
            .snap
            .rooms()
            .map(|(k, r)| (k.clone(), (r.node, r.request.slots)))
            .collect();
        prop_assert_eq!(
            &recorded,
            &self.model,
            "P6: snapshot rooms differ from those applied"
        );
        for (id, n) in self.snap.nodes() {
            let (sum, count) = recorded
                .values()
                .filter(|(node, _)| *node == id)
                .fold((0u32, 0u32), |(s, c), (_, slots)| (s + slots, c + 1));
            prop_assert_eq!(
                (n.load.reserved, n.rooms),
                (sum, count),
                "P6: node {} has reserved/rooms {:?}, its rooms add up to {:?}",
                &n.name,
                (n.load.reserved, n.rooms),
                (sum, count)
            );
            prop_assert_eq!(n.free(), free_of(n), "P6: free() of {}", &n.name);
        }
        for (z, name) in ZONE_NAMES.iter().enumerate().take(self.case.zones) {
            let zone = ZoneId(z as u8);
            let got = self.snap.zone_use(zone);
            prop_assert_eq!(
                (got.used, got.capacity),
                naive_zone_use(&self.snap, zone),
                "P6: zone_use of {}",
                name
            );
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Properties 1–6 over random fleets and histories.
    #[test]
    fn placement_core_holds_its_invariants(case in case()) {
        let order: Vec<usize> = (0..case.nodes.len()).collect();
        Run::new(&case, &order)?.play()?;
    }

    /// Property 7: the same fleet, nodes added in another order, decides the same.
    #[test]
    fn same_input_same_result((case, order) in case_and_order()) {
        let in_order: Vec<usize> = (0..case.nodes.len()).collect();
        let first = Run::new(&case, &in_order)?.play()?;
        let again = Run::new(&case, &in_order)?.play()?;
        prop_assert_eq!(&first, &again, "P7: two identical runs differ");
        let shuffled = Run::new(&case, &order)?.play()?;
        prop_assert_eq!(&first, &shuffled, "P7: node insertion order changed decisions");
    }
}

/// Reference sanity: a hand-built fleet where the tie-breaks are known.
#[test]
fn reference_agrees_on_a_known_fleet() {
    let case = Case {
        strategy: PlacementStrategy::Distributed,
        zones: 2,
        nodes: [("b", 0), ("a", 0), ("c", 1)]
            .iter()
            .map(|(name, zone)| NodeSpec {
                name: (*name).into(),
                zone: *zone,
                capacity: 100,
                phase: NodePhase::Ready,
                draining: false,
                fallback: false,
                measured: 0,
            })
            .collect(),
        ops: Vec::new(),
    };
    let run = Run::new(&case, &[0, 1, 2]).expect("fleet builds");
    let req = run.snap.request::<&str>(10, &[], &[]).expect("request");
    let want = run.snap.node_id("a");
    assert_eq!(reference(&run.snap, &req), want);
    assert_eq!(place(&run.snap, &req).ok().map(|p| p.node), want);
}
