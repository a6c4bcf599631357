//! One fleet's placements: where its rooms are, kept current node by node.
//!
//! Built from the fleet's own nodes and rooms once (see [`super::world`]), then changed only
//! by events: a node's phase, drain or load ([`FleetPlacement::sync_node`]), a node gone
//! ([`FleetPlacement::remove_node`]), a room placed ([`FleetPlacement::decide`]) or gone
//! ([`FleetPlacement::release`]). Each costs what the change touches, never a walk of the
//! fleet. The cache of `Room`s lags the operator's own writes, so it is never used to undo a
//! placement: when the fleet's spec changes and the snapshot is rebuilt, the placements of the
//! old snapshot are carried over.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use ruche_crds::{MediaFleet, MediaNode, NodePhase, Room};

use super::keys::room_key;
use super::world::{self, Tiers, node_info};
use crate::core::request::UnknownZones;
use crate::core::snapshot::RulesError;
use crate::core::{Action, NodeId, RoomKey, Snapshot, Unschedulable, failover, migrate, place};

/// A room moved off a failed node: room, node left, node now hosting it.
pub type Move = (RoomKey, String, String);

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

/// What a change to the fleet's nodes did to its rooms.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    /// Objects that could not be taken into account, in words.
    pub problems: Vec<String>,
    /// Rooms moved off failed nodes: room, node left, node now hosting it.
    pub moved: Vec<Move>,
    /// Rooms moved live off a draining node: room, node left, node now hosting it. The node
    /// left keeps their sessions until the participants have rejoined (see [`Leaving`]).
    pub migrated: Vec<Move>,
    /// Rooms of failed nodes that no node could take, with why: they are Pending again.
    pub stranded: Vec<(RoomKey, Unschedulable)>,
    /// Nodes whose list of rooms changed (by name).
    pub lists: BTreeSet<String>,
    /// Waiting rooms that may fit now (a node can take more than before): to look at again,
    /// first come first, as many as the new room could hold.
    pub woken: Vec<RoomKey>,
    /// Live rooms whose status names a node the fleet no longer has: to place again.
    pub orphans: Vec<RoomKey>,
}

/// The rooms no node could take, first come first: when capacity appears, only as many are
/// woken as it could hold, so a deletion in a full fleet costs a few reconciles, not one per
/// waiting room.
#[derive(Clone, Debug, Default)]
struct Waiting {
    next: u64,
    order: BTreeMap<u64, (RoomKey, u32)>,
    by_room: HashMap<RoomKey, u64>,
}

/// How many waiting rooms are looked at, at most, to fill freed slots.
const WAKE_SCAN: usize = 1024;

impl Waiting {
    fn insert(&mut self, room: RoomKey, slots: u32) {
        if self.by_room.contains_key(&room) {
            return;
        }
        self.next += 1;
        self.order.insert(self.next, (room.clone(), slots));
        self.by_room.insert(room, self.next);
    }

    fn remove(&mut self, room: &RoomKey) {
        if let Some(seq) = self.by_room.remove(room) {
            self.order.remove(&seq);
        }
    }

    /// The oldest waiting rooms that `slots` free slots could hold (first fit).
    fn fitting(&self, mut slots: u32) -> Vec<RoomKey> {
        let mut woken = Vec::new();
        for (room, need) in self.order.values().take(WAKE_SCAN) {
            if slots == 0 {
                break;
            }
            if *need <= slots {
                slots -= need;
                woken.push(room.clone());
            }
        }
        woken
    }
}

/// Rooms moved live off a node whose participants are still there: the node's list keeps
/// them, marked leaving, until its polls no longer show them or a grace period ends, so
/// nobody is cut before they have rejoined the new node.
#[derive(Clone, Debug, Default)]
struct Leaving {
    /// Room → the node it is leaving, since when, and whether its participants were told.
    by_room: HashMap<RoomKey, LeavingRoom>,
    /// Node → the rooms leaving it.
    by_node: HashMap<String, BTreeSet<RoomKey>>,
}

#[derive(Clone, Debug)]
struct LeavingRoom {
    node: String,
    since: Instant,
    told: bool,
}

impl Leaving {
    /// Records that `room` leaves `node`; returns the node it was leaving before, if another
    /// (its last sessions there end now).
    fn insert(&mut self, room: RoomKey, node: String, now: Instant) -> Option<String> {
        let before = self.remove(&room).filter(|b| *b != node);
        self.by_node
            .entry(node.clone())
            .or_default()
            .insert(room.clone());
        self.by_room.insert(
            room,
            LeavingRoom {
                node,
                since: now,
                told: false,
            },
        );
        before
    }

    /// Forgets a leaving room; returns the node it was leaving.
    fn remove(&mut self, room: &RoomKey) -> Option<String> {
        let entry = self.by_room.remove(room)?;
        if let Some(rooms) = self.by_node.get_mut(&entry.node) {
            rooms.remove(room);
            if rooms.is_empty() {
                self.by_node.remove(&entry.node);
            }
        }
        Some(entry.node)
    }
}

/// The placements of one fleet.
#[derive(Debug)]
pub struct FleetPlacement {
    generation: Option<i64>,
    snapshot: Snapshot,
    /// Rooms no node could take, waiting for capacity.
    pending: Waiting,
    /// Rooms moved live whose old node still has their sessions.
    leaving: Leaving,
    /// Rooms a migration could not move, with why (they stay on their draining node).
    stranded: HashMap<RoomKey, Unschedulable>,
    /// How the fleet's rollout ranks its nodes.
    tiers: Tiers,
}

impl FleetPlacement {
    /// Builds the placements from the fleet's own nodes and rooms (their status).
    pub fn build<'a>(
        fleet: &MediaFleet,
        nodes: impl IntoIterator<Item = &'a MediaNode>,
        rooms: impl IntoIterator<Item = &'a Room>,
    ) -> Result<(Self, NodeChange), RulesError> {
        let built = world::rebuild(fleet, nodes, rooms)?;
        let mut placement = Self {
            generation: fleet.metadata.generation,
            snapshot: built.snapshot,
            pending: Waiting::default(),
            leaving: Leaving::default(),
            stranded: HashMap::new(),
            tiers: Tiers::of(fleet),
        };
        let mut change = NodeChange {
            problems: built.problems,
            orphans: built.orphans,
            ..NodeChange::default()
        };
        // Rooms of nodes that failed while no operator watched move now.
        placement.fail_over(&mut change);
        Ok((placement, change))
    }

    /// The spec generation the snapshot was built for.
    pub fn generation(&self) -> Option<i64> {
        self.generation
    }

    /// Rebuilds after a spec change, keeping the placements made since the rooms' status was
    /// last read.
    pub fn rebuild<'a>(
        &self,
        fleet: &MediaFleet,
        nodes: impl IntoIterator<Item = &'a MediaNode>,
        rooms: impl IntoIterator<Item = &'a Room>,
    ) -> Result<(Self, NodeChange), RulesError> {
        let (mut next, change) = Self::build(fleet, nodes, rooms)?;
        for (key, record) in self.snapshot.rooms() {
            if next.snapshot.room(key).is_some() {
                continue;
            }
            let Some(name) = self.snapshot.node(record.node).map(|n| n.name.clone()) else {
                continue;
            };
            if let Some(node) = next.snapshot.node_id(&name) {
                let _ = next.snapshot.apply(&Action::Assign {
                    room: key.clone(),
                    node,
                    request: record.request,
                });
            }
        }
        next.pending.clone_from(&self.pending);
        next.leaving.clone_from(&self.leaving);
        next.stranded.clone_from(&self.stranded);
        Ok((next, change))
    }

    /// Ranks the nodes again when the fleet's rollout changed how (a new revision, a halt):
    /// every node is brought up to date, and the rooms that may fit now are woken.
    pub fn retier<'a>(
        &mut self,
        fleet: &MediaFleet,
        nodes: impl IntoIterator<Item = &'a MediaNode>,
    ) -> NodeChange {
        let tiers = Tiers::of(fleet);
        let mut change = NodeChange::default();
        if tiers == self.tiers {
            return change;
        }
        self.tiers = tiers;
        for node in nodes {
            let synced = self.sync_node(node);
            change.woken.extend(synced.woken);
            change.problems.extend(synced.problems);
        }
        change
    }

    /// The snapshot, for status and metrics.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Brings one node up to date (added if new): phase, drain, measured load. Rooms on a node
    /// that has just failed are placed again at once (see [`failover`]).
    pub fn sync_node(&mut self, node: &MediaNode) -> NodeChange {
        let mut change = NodeChange::default();
        let info = node_info(node, &self.tiers);
        let measured = node.status.as_ref().map_or(0, |st| st.load.participants);
        let id = if let Some(id) = self.snapshot.node_id(&info.name) {
            id
        } else {
            let name = info.name.clone();
            match self.snapshot.add_node(info.clone()) {
                Ok(id) => {
                    if let Some(n) = self.snapshot.node(id).filter(|n| n.schedulable()) {
                        change.woken = self.pending.fitting(n.free());
                    }
                    id
                }
                Err(e) => {
                    change.problems.push(format!("MediaNode {name}: {e}"));
                    return change;
                }
            }
        };
        let Some(before) = self.snapshot.node(id).cloned() else {
            return change;
        };
        if before.phase != info.phase {
            let _ = self.snapshot.set_phase(id, info.phase);
        }
        if before.fallback != info.fallback {
            let _ = self.snapshot.set_fallback(id, info.fallback);
        }
        if before.cordoned != info.cordoned {
            let _ = self.snapshot.set_cordoned(id, info.cordoned);
            if !info.cordoned {
                // Back in service (undrained): its rooms no longer need to go anywhere.
                let snapshot = &self.snapshot;
                self.stranded
                    .retain(|room, _| snapshot.room(room).is_none_or(|r| r.node != id));
            }
        }
        if before.load.measured != measured {
            let _ = self.snapshot.observe(id, measured);
        }
        if let Some(after) = self.snapshot.node(id).filter(|n| n.schedulable()) {
            let was = if before.schedulable() {
                before.free()
            } else {
                0
            };
            if after.free() > was {
                change.woken = self.pending.fitting(after.free() - was);
            }
        }
        if info.phase == NodePhase::Failed && before.phase != NodePhase::Failed {
            self.fail_over(&mut change);
        }
        change
    }

    /// A node deleted: forgotten if empty, else Failed until its rooms have been placed again.
    pub fn remove_node(&mut self, name: &str) -> NodeChange {
        let mut change = NodeChange::default();
        let gone: Vec<RoomKey> = self.leaving(name).cloned().collect();
        for room in &gone {
            self.leaving.remove(room);
        }
        let Some(id) = self.snapshot.node_id(name) else {
            return change;
        };
        if self.snapshot.remove_node(id).is_err() {
            let _ = self.snapshot.set_phase(id, NodePhase::Failed);
            self.fail_over(&mut change);
            let _ = self.snapshot.remove_node(id);
        }
        change
    }

    /// Places a room, or says where it already is.
    pub fn decide(&mut self, room: &Room) -> Decision {
        let key = room_key(room);
        if let Some(record) = self.snapshot.room(&key)
            && let Some(node) = self.snapshot.node(record.node)
        {
            return Decision::Placed {
                node: node.name.to_string(),
                zone: self.snapshot.zone_name(node.zone).to_string(),
                fresh: false,
            };
        }
        let request = match self.snapshot.room_request(&room.spec) {
            Ok(r) => r,
            Err(e) => return Decision::BadZones(e),
        };
        match place(&self.snapshot, &request) {
            Ok(p) => {
                let (node, zone) = self
                    .snapshot
                    .node(p.node)
                    .map(|n| {
                        (
                            n.name.to_string(),
                            self.snapshot.zone_name(n.zone).to_string(),
                        )
                    })
                    .unwrap_or_default();
                // The node exists: the snapshot just chose it.
                let _ = self.snapshot.apply(&Action::Assign {
                    room: key.clone(),
                    node: p.node,
                    request,
                });
                self.pending.remove(&key);
                Decision::Placed {
                    node,
                    zone,
                    fresh: true,
                }
            }
            Err(why) => {
                self.pending.insert(key, room.spec.slots);
                Decision::Unschedulable(why)
            }
        }
    }

    /// Forgets a room (closed, deleted, or its placement could not be confirmed); returns the
    /// nodes whose list loses it (its node, and the node it was leaving if it was moving), and
    /// the waiting rooms its slots may hold.
    pub fn release(&mut self, room: &RoomKey) -> Option<(Vec<String>, Vec<RoomKey>)> {
        self.pending.remove(room);
        self.stranded.remove(room);
        let mut lists: Vec<String> = self.leaving.remove(room).into_iter().collect();
        let Some(record) = self.snapshot.room(room) else {
            return (!lists.is_empty()).then_some((lists, Vec::new()));
        };
        let (node, slots) = (record.node, record.request.slots);
        let Some(name) = self.snapshot.node(node).map(|n| n.name.to_string()) else {
            return (!lists.is_empty()).then_some((lists, Vec::new()));
        };
        let _ = self.snapshot.apply(&Action::Release { room: room.clone() });
        let woken = self
            .snapshot
            .node(node)
            .filter(|n| n.schedulable())
            .map(|n| self.pending.fitting(slots.min(n.free())))
            .unwrap_or_default();
        lists.insert(0, name);
        Some((lists, woken))
    }

    /// The rooms waiting for capacity, first come first.
    pub fn pending(&self) -> impl Iterator<Item = &RoomKey> {
        self.pending.order.values().map(|(k, _)| k)
    }

    /// The rooms on a node with their slots, sorted: what the node is told it may host.
    pub fn assignments(&self, node: &str) -> Vec<(RoomKey, u32)> {
        let Some(id) = self.snapshot.node_id(node) else {
            return Vec::new();
        };
        self.snapshot
            .rooms_on(id)
            .map(|(k, r)| (k.clone(), r.request.slots))
            .collect()
    }

    /// The node a room is placed on.
    pub fn node_of(&self, room: &RoomKey) -> Option<String> {
        let id = self.snapshot.room(room)?.node;
        self.snapshot.node(id).map(|n| n.name.to_string())
    }

    /// Moves every room off a draining node whose deadline has come (see
    /// [`crate::core::migrate`]): each room that can go is placed on another node and listed
    /// there, and stays in the old node's list as leaving until its participants have left;
    /// a room with nowhere to go stays, and is remembered as stranded with why.
    pub fn migrate_off(&mut self, node: &str, now: Instant) -> NodeChange {
        let mut change = NodeChange::default();
        let Some(id) = self.snapshot.node_id(node) else {
            return change;
        };
        let plan = migrate(&self.snapshot, &[id]);
        for action in &plan.actions {
            // The plan was made against this snapshot: every action applies.
            let _ = self.snapshot.apply(action);
        }
        if !plan.moved.is_empty() {
            change.lists.insert(node.to_string());
        }
        for (room, _, to) in plan.moved {
            let to = self
                .snapshot
                .node(to)
                .map(|n| n.name.to_string())
                .unwrap_or_default();
            self.stranded.remove(&room);
            if let Some(earlier) = self.leaving.insert(room.clone(), node.to_string(), now) {
                change.lists.insert(earlier);
            }
            change.lists.insert(to.clone());
            change.migrated.push((room, node.to_string(), to));
        }
        for (room, why) in plan.stranded {
            self.stranded.insert(room.clone(), why.clone());
            change.stranded.push((room, why));
        }
        change
    }

    /// The rooms leaving a node (moved elsewhere, their last sessions still here), sorted.
    pub fn leaving(&self, node: &str) -> impl Iterator<Item = &RoomKey> {
        self.leaving.by_node.get(node).into_iter().flatten()
    }

    /// The node a room is leaving, and whether its participants were told to move.
    pub fn leaving_from(&self, room: &RoomKey) -> Option<(&str, bool)> {
        self.leaving
            .by_room
            .get(room)
            .map(|l| (l.node.as_str(), l.told))
    }

    /// A room `node` still hosts with participants although it is placed on another node: a
    /// move whose participants were never told (the leader that decided it died before it
    /// told them; what it knew of the move died with it). The room becomes leaving `node`,
    /// not told, so that its reconcile tells them where to go, and `node` keeps their sessions
    /// meanwhile. A room already leaving, placed on `node` itself, or placed nowhere (closed:
    /// its sessions end with the next list) is left alone. Returns whether it was adopted.
    pub fn adopt_leaving(&mut self, node: &str, room: &RoomKey, now: Instant) -> bool {
        if self.leaving.by_room.contains_key(room) {
            return false;
        }
        match self.node_of(room) {
            Some(placed) if placed != node => {
                self.leaving.insert(room.clone(), node.to_string(), now);
                true
            }
            _ => false,
        }
    }

    /// Records that a moving room's participants were told where to go.
    pub fn told(&mut self, room: &RoomKey) {
        if let Some(l) = self.leaving.by_room.get_mut(room) {
            l.told = true;
        }
    }

    /// Lets go of the rooms leaving `node` that it no longer reports (everyone left), or that
    /// were told `grace` ago or more: the node's next list ends what is left of them. Returns
    /// whether the node's list changed.
    pub fn settle_leaving(
        &mut self,
        node: &str,
        still_there: impl Fn(&RoomKey) -> bool,
        now: Instant,
        grace: Duration,
    ) -> bool {
        let done: Vec<RoomKey> = self
            .leaving(node)
            .filter(|room| {
                self.leaving.by_room.get(*room).is_some_and(|l| {
                    (l.told && !still_there(room)) || now.duration_since(l.since) >= grace
                })
            })
            .cloned()
            .collect();
        for room in &done {
            self.leaving.remove(room);
        }
        !done.is_empty()
    }

    /// Why a migration could not move a room, if it could not.
    pub fn stranded(&self, room: &RoomKey) -> Option<&Unschedulable> {
        self.stranded.get(room)
    }

    /// Rooms placed per node.
    pub fn rooms_per_node(&self) -> impl Iterator<Item = (&str, u32)> {
        self.snapshot.nodes().map(|(_, n)| (&*n.name, n.rooms))
    }

    /// Moves the rooms of Failed nodes elsewhere, and releases those that fit nowhere.
    fn fail_over(&mut self, change: &mut NodeChange) {
        let failed: Vec<NodeId> = self
            .snapshot
            .nodes()
            .filter(|(_, n)| n.phase == NodePhase::Failed && n.rooms > 0)
            .map(|(id, _)| id)
            .collect();
        if failed.is_empty() {
            return;
        }
        let name = |s: &Snapshot, id| s.node(id).map(|n| n.name.to_string()).unwrap_or_default();
        for id in &failed {
            change.lists.insert(name(&self.snapshot, *id));
        }
        let plan = failover(&self.snapshot, &failed);
        for action in &plan.actions {
            // The plan was made against this snapshot: every action applies.
            let _ = self.snapshot.apply(action);
        }
        for (room, from, to) in plan.moved {
            let to = name(&self.snapshot, to);
            change.lists.insert(to.clone());
            change.moved.push((room, name(&self.snapshot, from), to));
        }
        for (room, why) in plan.stranded {
            self.pending.insert(room.clone(), why.slots);
            change.stranded.push((room, why));
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

    fn built(nodes: &[MediaNode], rooms: &[Room]) -> FleetPlacement {
        FleetPlacement::build(&fleet(1), nodes, rooms).unwrap().0
    }

    #[test]
    fn places_once_and_then_says_where() {
        let mut p = built(
            &[
                node("a1", "a", NodePhase::Ready),
                node("b1", "b", NodePhase::Starting),
            ],
            &[],
        );
        let r = room("r1", 30, &[]);
        let placed = |fresh| Decision::Placed {
            node: "a1".into(),
            zone: "a".into(),
            fresh,
        };
        assert_eq!(p.decide(&r), placed(true));
        assert_eq!(p.decide(&r), placed(false));
        assert_eq!(p.assignments("a1"), vec![(RoomKey::new("ns/r1"), 30)]);
        let Decision::Unschedulable(why) = p.decide(&room("r2", 30, &["b"])) else {
            panic!("b has no Ready node")
        };
        assert_eq!(why.reason(), "NoReadyNode");
        assert_eq!(p.pending().collect::<Vec<_>>(), [&RoomKey::new("ns/r2")]);
        assert!(matches!(
            p.decide(&room("r3", 1, &["zz"])),
            Decision::BadZones(_)
        ));
        // Waking goes by slots alone; the woken room's own rules (zone b) decide again.
        assert_eq!(
            p.release(&room_key(&r)),
            Some((vec!["a1".into()], vec![RoomKey::new("ns/r2")]))
        );
        assert!(p.assignments("a1").is_empty());
    }

    #[test]
    fn node_changes_reach_placement() {
        let mut p = built(&[node("a1", "a", NodePhase::Starting)], &[]);
        assert!(matches!(
            p.decide(&room("r1", 10, &[])),
            Decision::Unschedulable(_)
        ));
        let up = p.sync_node(&node("a1", "a", NodePhase::Ready));
        assert_eq!(
            up.woken,
            [RoomKey::new("ns/r1")],
            "a node that becomes Ready wakes the waiting room"
        );
        assert!(matches!(
            p.decide(&room("r1", 10, &[])),
            Decision::Placed { fresh: true, .. }
        ));
        let mut drained = node("a1", "a", NodePhase::Ready);
        drained.spec.drain = Some(ruche_crds::node::DrainRequest {
            deadline: None,
            mode: ruche_crds::DrainMode::default(),
            reason: None,
        });
        assert!(p.sync_node(&drained).woken.is_empty());
        assert!(
            matches!(p.decide(&room("r2", 10, &[])), Decision::Unschedulable(_)),
            "a drain request stops new rooms at once"
        );
        // A node vanishing with a room on it: its room is placed again or waits.
        let gone = p.remove_node("a1");
        assert_eq!(gone.stranded.len(), 1);
        assert!(gone.lists.contains("a1"));
        assert!(p.snapshot().node_id("a1").is_none());
    }

    #[test]
    fn a_failed_node_hands_its_rooms_over_and_both_lists_change() {
        let mut p = built(
            &[
                node("a1", "a", NodePhase::Ready),
                node("a2", "a", NodePhase::Ready),
            ],
            &[],
        );
        let Decision::Placed { node: first, .. } = p.decide(&room("r1", 10, &[])) else {
            panic!("placed")
        };
        let other = if first == "a1" { "a2" } else { "a1" };
        let change = p.sync_node(&node(&first, "a", NodePhase::Failed));
        assert_eq!(
            change.moved,
            vec![(RoomKey::new("ns/r1"), first.clone(), other.to_string())]
        );
        assert_eq!(
            change.lists,
            BTreeSet::from([first.clone(), other.to_string()])
        );
        assert_eq!(p.node_of(&RoomKey::new("ns/r1")), Some(other.to_string()));
    }

    #[test]
    fn freed_slots_wake_only_the_waiting_rooms_they_could_hold_first_come_first() {
        let mut p = built(&[node("a1", "a", NodePhase::Ready)], &[]);
        let big = room("big", 100, &[]);
        assert!(matches!(p.decide(&big), Decision::Placed { .. }));
        for (name, slots) in [("w1", 30), ("w2", 80), ("w3", 20), ("w4", 10), ("w5", 5)] {
            assert!(matches!(
                p.decide(&room(name, slots, &[])),
                Decision::Unschedulable(_)
            ));
        }
        let (_, woken) = p.release(&room_key(&big)).unwrap();
        assert_eq!(
            woken,
            ["ns/w1", "ns/w3", "ns/w4", "ns/w5"].map(RoomKey::new),
            "100 slots hold w1, w3, w4 and w5 (w2 is too large after w1)"
        );
    }

    #[test]
    fn a_spec_change_rebuilds_without_losing_fresh_placements() {
        let nodes = [
            node("a1", "a", NodePhase::Ready),
            node("a2", "a", NodePhase::Ready),
        ];
        let mut p = built(&nodes, &[]);
        assert!(matches!(
            p.decide(&room("r1", 60, &[])),
            Decision::Placed { fresh: true, .. }
        ));
        // The room cache has not seen the status write yet; the fleet changes generation.
        let mut stale = room("r1", 60, &[]);
        stale.status = Some(RoomStatus {
            phase: RoomPhase::Pending,
            ..Default::default()
        });
        let (mut p, _) = p.rebuild(&fleet(2), &nodes, &[stale.clone()]).unwrap();
        assert_eq!(p.generation(), Some(2));
        assert!(
            matches!(p.decide(&stale), Decision::Placed { fresh: false, .. }),
            "the placement survived the rebuild"
        );
        let used: u32 = ["a1", "a2"]
            .iter()
            .map(|n| p.assignments(n).iter().map(|(_, s)| *s).sum::<u32>())
            .sum();
        assert_eq!(used, 60, "and was not made twice");
    }

    #[test]
    fn a_migration_moves_rooms_live_and_the_old_node_keeps_them_until_they_left() {
        let a1 = node("a1", "a", NodePhase::Ready);
        let mut p = built(&[a1.clone(), node("b1", "b", NodePhase::Ready)], &[]);
        let free = room("free", 30, &[]);
        let pinned = room("pinned", 60, &["a"]);
        for r in [&free, &pinned] {
            assert!(matches!(p.decide(r), Decision::Placed { ref node, .. } if node == "a1"));
        }
        let mut drained = a1.clone();
        drained.spec.drain = Some(ruche_crds::node::DrainRequest {
            deadline: None,
            mode: ruche_crds::DrainMode::Migrate,
            reason: None,
        });
        let _ = p.sync_node(&drained);
        let t0 = Instant::now();
        let change = p.migrate_off("a1", t0);
        let (free_key, pinned_key) = (room_key(&free), room_key(&pinned));
        // free goes to zone b; the old node's list keeps it as leaving.
        assert_eq!(
            change.migrated,
            vec![(free_key.clone(), "a1".into(), "b1".into())]
        );
        assert!(change.lists.contains("a1") && change.lists.contains("b1"));
        assert_eq!(p.node_of(&free_key).as_deref(), Some("b1"));
        assert_eq!(p.leaving("a1").collect::<Vec<_>>(), [&free_key]);
        assert_eq!(p.leaving_from(&free_key), Some(("a1", false)));
        // pinned (zone a only) has nowhere to go: it stays, and says why.
        assert_eq!(p.node_of(&pinned_key).as_deref(), Some("a1"));
        assert_eq!(change.stranded.len(), 1);
        assert!(p.stranded(&pinned_key).is_some());
        // Whatever a1 reports, nothing is let go before its participants were told...
        assert!(!p.settle_leaving("a1", |_| false, t0, Duration::from_secs(60)));
        p.told(&free_key);
        // ...and then only once a1 no longer shows the room.
        assert!(!p.settle_leaving("a1", |_| true, t0, Duration::from_secs(60)));
        assert!(p.settle_leaving("a1", |_| false, t0, Duration::from_secs(60)));
        assert_eq!(p.leaving("a1").count(), 0);
        // Undraining clears what the migration said.
        let _ = p.sync_node(&a1);
        assert!(p.stranded(&pinned_key).is_none());
    }

    #[test]
    fn a_room_a_node_still_hosts_though_placed_elsewhere_is_adopted_as_leaving_it() {
        // A leader moved r off a1, wrote its status on a2, and died before telling its
        // participants: the next leader builds from that status.
        let mut moved = room("r", 10, &[]);
        moved.status = Some(RoomStatus {
            phase: RoomPhase::Scheduled,
            node: Some("a2".into()),
            zone: Some("a".into()),
            ..Default::default()
        });
        let mut p = built(
            &[
                node("a1", "a", NodePhase::Draining),
                node("a2", "a", NodePhase::Ready),
            ],
            &[moved.clone()],
        );
        let key = room_key(&moved);
        assert!(p.assignments("a1").is_empty() && p.leaving("a1").count() == 0);
        let t0 = Instant::now();
        // a1 reports its participants: the room becomes leaving a1, not told.
        assert!(p.adopt_leaving("a1", &key, t0));
        assert_eq!(p.leaving_from(&key), Some(("a1", false)));
        assert_eq!(p.leaving("a1").collect::<Vec<_>>(), [&key]);
        // Once only: a second poll changes nothing, nor does the told mark go.
        p.told(&key);
        assert!(!p.adopt_leaving("a1", &key, t0));
        assert_eq!(p.leaving_from(&key), Some(("a1", true)));
        // A room on the reporting node itself, or placed nowhere, is not adopted.
        assert!(!p.adopt_leaving("a2", &key, t0));
        assert!(!p.adopt_leaving("a1", &RoomKey::new("default/closed"), t0));
        // Let go once its participants have left a1.
        assert!(p.settle_leaving("a1", |_| false, t0, Duration::from_secs(60)));
        assert_eq!(p.leaving_from(&key), None);
    }

    #[test]
    fn a_leaving_room_is_let_go_after_the_grace_and_released_with_its_room() {
        let mut p = built(
            &[
                node("a1", "a", NodePhase::Ready),
                node("a2", "a", NodePhase::Ready),
            ],
            &[],
        );
        let r = room("r", 10, &[]);
        let Decision::Placed { node: first, .. } = p.decide(&r) else {
            panic!("placed")
        };
        let mut draining = node(&first, "a", NodePhase::Draining);
        draining.spec.drain = Some(ruche_crds::node::DrainRequest {
            deadline: None,
            mode: ruche_crds::DrainMode::Migrate,
            reason: None,
        });
        let _ = p.sync_node(&draining);
        let t0 = Instant::now();
        let change = p.migrate_off(&first, t0);
        assert_eq!(change.migrated.len(), 1);
        let key = room_key(&r);
        // Never told and still shown: let go once the grace is over.
        let grace = Duration::from_secs(60);
        assert!(!p.settle_leaving(&first, |_| true, t0 + Duration::from_secs(59), grace));
        assert!(p.settle_leaving(&first, |_| true, t0 + grace, grace));
        // A room released while leaving changes both nodes' lists.
        let second = p.node_of(&key).unwrap_or_default();
        let _ = p.sync_node(&node(&second, "a", NodePhase::Ready));
        let mut again = node(&second, "a", NodePhase::Draining);
        again.spec.drain = draining.spec.drain.clone();
        let _ = p.sync_node(&node(&first, "a", NodePhase::Ready));
        let _ = p.sync_node(&again);
        let moved_back = p.migrate_off(&second, t0);
        assert_eq!(
            moved_back.migrated,
            vec![(key.clone(), second.clone(), first.clone())]
        );
        let (lists, _) = p.release(&key).unwrap_or_default();
        assert_eq!(lists, vec![first, second]);
    }
}
