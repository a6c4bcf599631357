//! The operator's in-memory index of the world, tenant by tenant: every fleet by namespace and
//! name, with its own nodes and rooms, and its placements.
//!
//! It is fed by the watch events of fleets, nodes and rooms ([`Registry::apply_fleet`],
//! [`Registry::apply_node`], …) before the controllers see them, and answers what the
//! controllers look up in time proportional to what they ask about: the nodes of one fleet,
//! the rooms of one node, the rooms waiting in one fleet. Nothing is ever matched by name
//! across namespaces. Every change returns the [`Effects`] it has on other objects (rooms to
//! look at again, nodes whose assignment list changed), which the shell turns into reconciles
//! and pushes.
//!
//! Each node's assignment list has a [`ListVersion`]: this operator's leader epoch, then a
//! sequence number bumped on every change of the node's rooms. The sequence survives fleet
//! rebuilds, so the versions one leader writes to a node only grow.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::{Resource, ResourceExt};
use ruche_crds::admin::{Assignment, ListVersion};
use ruche_crds::{MediaFleet, MediaNode, Room, RoomPhase};

use super::keys::{FleetKey, NodeKey, room_key, room_name};
use super::placements::{Decision, FleetPlacement, Move, NodeChange};
use crate::core::autoscaling::classify;
use crate::core::{RoomKey, RoomRequest, Snapshot, Unschedulable};

/// What a change means for other objects.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Rooms to reconcile: moved, stranded, or waiting rooms that may fit now.
    pub rooms: BTreeSet<RoomKey>,
    /// Nodes whose assignment list changed: to push.
    pub lists: BTreeSet<NodeKey>,
    /// Fleets to reconcile: one of their nodes appeared, went, or changed phase or drain.
    pub fleets: BTreeSet<FleetKey>,
    /// Objects that could not be taken into account, in words.
    pub problems: Vec<String>,
    /// Rooms moved off failed nodes (for the log).
    pub moved: Vec<Move>,
    /// Rooms moved live off draining nodes (for the log).
    pub migrated: Vec<Move>,
    /// Rooms of failed nodes no node could take (for the log).
    pub stranded: Vec<(RoomKey, Unschedulable)>,
}

impl Effects {
    fn absorb(&mut self, fleet: &FleetKey, change: NodeChange) {
        self.problems.extend(change.problems);
        self.lists
            .extend(change.lists.into_iter().map(|n| fleet.node(n)));
        for (room, _, _) in change.moved.iter().chain(&change.migrated) {
            self.rooms.insert(room.clone());
        }
        for (room, _) in &change.stranded {
            self.rooms.insert(room.clone());
        }
        self.rooms.extend(change.orphans);
        self.rooms.extend(change.woken);
        self.moved.extend(change.moved);
        self.migrated.extend(change.migrated);
        self.stranded.extend(change.stranded);
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
            && self.lists.is_empty()
            && self.fleets.is_empty()
            && self.problems.is_empty()
    }
}

/// One fleet: its object (once seen), its members, its placements (once built).
#[derive(Debug, Default)]
struct FleetEntry {
    fleet: Option<Arc<MediaFleet>>,
    nodes: BTreeMap<String, Arc<MediaNode>>,
    rooms: HashMap<String, Arc<Room>>,
    placement: Option<FleetPlacement>,
}

impl FleetEntry {
    fn is_empty(&self) -> bool {
        self.fleet.is_none() && self.nodes.is_empty() && self.rooms.is_empty()
    }

    fn pending(&self) -> Vec<RoomKey> {
        self.placement
            .as_ref()
            .map(|p| p.pending().cloned().collect())
            .unwrap_or_default()
    }
}

/// A placement that could not be made: the fleet is unknown, or its rules are unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// No `MediaFleet` of that name in the room's namespace.
    #[error("no MediaFleet {} in namespace {}", .0.name, .0.namespace)]
    NoFleet(FleetKey),
    /// The fleet's rules cannot be used.
    #[error("MediaFleet {0}: {1}")]
    Rules(FleetKey, String),
}

/// The index of every fleet the operator serves, keyed by namespace and name.
#[derive(Debug, Default)]
pub struct Registry {
    epoch: u32,
    fleets: HashMap<FleetKey, FleetEntry>,
    /// The fleet of every node (a node's key alone does not say).
    node_fleet: HashMap<NodeKey, String>,
    lists: HashMap<NodeKey, u32>,
}

impl Registry {
    /// An empty registry whose assignment lists carry leader epoch `epoch`.
    pub fn new(epoch: u32) -> Self {
        Self {
            epoch,
            ..Self::default()
        }
    }

    /// A fleet created or changed. Its placements are rebuilt when its spec changed; its
    /// waiting rooms are looked at again.
    pub fn apply_fleet(&mut self, fleet: Arc<MediaFleet>) -> Effects {
        let key = FleetKey::of(&fleet);
        let entry = self.fleets.entry(key.clone()).or_default();
        let mut effects = Effects::default();
        let first = entry.fleet.is_none();
        if let Some(old) = &entry.placement
            && old.generation() != fleet.metadata.generation
        {
            let nodes = entry.nodes.values().map(AsRef::as_ref);
            let rooms = entry.rooms.values().map(AsRef::as_ref);
            match old.rebuild(&fleet, nodes, rooms) {
                Ok((next, change)) => {
                    entry.placement = Some(next);
                    let pending = entry.pending();
                    effects.absorb(&key, change);
                    // The zones may have changed: every waiting room may fit now, every
                    // node's list may be different.
                    effects.rooms.extend(pending);
                    effects
                        .lists
                        .extend(entry.nodes.keys().map(|n| key.node(n.clone())));
                }
                Err(e) => {
                    effects.problems.push(format!("MediaFleet {key}: {e}"));
                    entry.placement = None;
                }
            }
        }
        if let Some(placement) = entry.placement.as_mut() {
            // Same spec, another rollout state (halted, say): the nodes are ranked again.
            let change = placement.retier(&fleet, entry.nodes.values().map(AsRef::as_ref));
            effects.absorb(&key, change);
        }
        entry.fleet = Some(fleet);
        if first {
            // Rooms created before their fleet: they can be placed now.
            effects.rooms.extend(
                entry
                    .rooms
                    .values()
                    .filter(|r| r.status.as_ref().is_none_or(|s| s.node.is_none()))
                    .map(|r| room_key(r)),
            );
        }
        self.bump(&effects.lists);
        effects
    }

    /// A fleet deleted: its placements go; its rooms are looked at again (they now say that
    /// their fleet is missing).
    pub fn delete_fleet(&mut self, fleet: &MediaFleet) -> Effects {
        let key = FleetKey::of(fleet);
        let mut effects = Effects::default();
        if let Some(entry) = self.fleets.get_mut(&key) {
            entry.fleet = None;
            entry.placement = None;
            effects
                .rooms
                .extend(entry.rooms.values().map(|r| room_key(r)));
            if entry.is_empty() {
                self.fleets.remove(&key);
            }
        }
        effects
    }

    /// A node created or changed.
    pub fn apply_node(&mut self, node: Arc<MediaNode>) -> Effects {
        let key = FleetKey::of_node(&node);
        let name = node.name_any();
        self.node_fleet
            .insert(key.node(name.clone()), key.name.clone());
        let entry = self.fleets.entry(key.clone()).or_default();
        let mut effects = Effects::default();
        if let Some(placement) = entry.placement.as_mut() {
            let change = placement.sync_node(&node);
            effects.absorb(&key, change);
        }
        if entry
            .nodes
            .get(&name)
            .is_none_or(|before| fleet_sees_change(before, &node))
        {
            effects.fleets.insert(key.clone());
        }
        entry.nodes.insert(name, node);
        self.bump(&effects.lists);
        effects
    }

    /// A node deleted: its rooms are placed again.
    pub fn delete_node(&mut self, node: &MediaNode) -> Effects {
        let key = FleetKey::of_node(node);
        let name = node.name_any();
        let mut effects = Effects::default();
        if let Some(entry) = self.fleets.get_mut(&key) {
            entry.nodes.remove(&name);
            effects.fleets.insert(key.clone());
            if let Some(placement) = entry.placement.as_mut() {
                let change = placement.remove_node(&name);
                effects.absorb(&key, change);
            }
            if entry.is_empty() {
                self.fleets.remove(&key);
            }
        }
        // The node is gone: nothing to push to it.
        effects.lists.remove(&key.node(name.clone()));
        self.bump(&effects.lists);
        self.lists.remove(&key.node(name.clone()));
        self.node_fleet.remove(&key.node(name));
        effects
    }

    /// A room created or changed (its placement is decided by [`Self::decide`]).
    pub fn apply_room(&mut self, room: Arc<Room>) {
        let key = FleetKey::of_room(&room);
        self.fleets
            .entry(key)
            .or_default()
            .rooms
            .insert(room.name_any(), room);
    }

    /// A room deleted: its slots are free at once, its node's list loses it, and the rooms
    /// waiting in its fleet may fit now.
    pub fn delete_room(&mut self, room: &Room) -> Effects {
        let key = FleetKey::of_room(room);
        let mut effects = Effects::default();
        if let Some(entry) = self.fleets.get_mut(&key) {
            entry.rooms.remove(&room.name_any());
            if entry.is_empty() {
                self.fleets.remove(&key);
                return effects;
            }
        }
        let released = self.release(&key, &room_key(room));
        effects.lists.extend(released.lists);
        effects.rooms.extend(released.rooms);
        effects
    }

    /// Replaces every node (after a re-list): what is gone is deleted, the rest applied.
    pub fn replace_nodes(&mut self, nodes: Vec<Arc<MediaNode>>) -> Effects {
        let keep: BTreeSet<NodeKey> = nodes.iter().map(|n| NodeKey::of(n)).collect();
        let gone: Vec<Arc<MediaNode>> = self
            .fleets
            .values()
            .flat_map(|e| e.nodes.values())
            .filter(|n| !keep.contains(&NodeKey::of(n)))
            .cloned()
            .collect();
        let mut effects = Effects::default();
        for node in gone {
            merge(&mut effects, self.delete_node(&node));
        }
        for node in nodes {
            merge(&mut effects, self.apply_node(node));
        }
        effects
    }

    /// Replaces every room (after a re-list): what is gone is deleted, the rest applied.
    pub fn replace_rooms(&mut self, rooms: Vec<Arc<Room>>) -> Effects {
        let keep: BTreeSet<RoomKey> = rooms.iter().map(|r| room_key(r)).collect();
        let gone: Vec<Arc<Room>> = self
            .fleets
            .values()
            .flat_map(|e| e.rooms.values())
            .filter(|r| !keep.contains(&room_key(r)))
            .cloned()
            .collect();
        let mut effects = Effects::default();
        for room in gone {
            merge(&mut effects, self.delete_room(&room));
        }
        for room in rooms {
            self.apply_room(room);
        }
        effects
    }

    /// Replaces every fleet (after a re-list).
    pub fn replace_fleets(&mut self, fleets: Vec<Arc<MediaFleet>>) -> Effects {
        let keep: BTreeSet<FleetKey> = fleets.iter().map(|f| FleetKey::of(f)).collect();
        let gone: Vec<Arc<MediaFleet>> = self
            .fleets
            .iter()
            .filter(|(k, _)| !keep.contains(k))
            .filter_map(|(_, e)| e.fleet.clone())
            .collect();
        let mut effects = Effects::default();
        for fleet in gone {
            merge(&mut effects, self.delete_fleet(&fleet));
        }
        for fleet in fleets {
            merge(&mut effects, self.apply_fleet(fleet));
        }
        effects
    }

    /// Places a room (or says where it is), building its fleet's placements from the fleet's
    /// own nodes and rooms the first time. The effects of that first build (rooms of nodes
    /// that failed meanwhile) come back too.
    pub fn decide(&mut self, room: &Room) -> Result<(Decision, Effects), RegistryError> {
        let key = FleetKey::of_room(room);
        let mut effects = self.ensure(&key)?;
        let entry = self
            .fleets
            .get_mut(&key)
            .ok_or_else(|| RegistryError::NoFleet(key.clone()))?;
        let placement = entry
            .placement
            .as_mut()
            .ok_or_else(|| RegistryError::NoFleet(key.clone()))?;
        let decision = placement.decide(room);
        if let Decision::Placed {
            node, fresh: true, ..
        } = &decision
        {
            effects.lists.insert(key.node(node.clone()));
        }
        self.bump(&effects.lists);
        Ok((decision, effects))
    }

    /// Forgets a room's placement (closed, deleted, or unconfirmed): its node's list changes
    /// and the waiting rooms of its fleet are looked at again, since its slots are free.
    pub fn release(&mut self, fleet: &FleetKey, room: &RoomKey) -> Effects {
        let mut effects = Effects::default();
        let Some(entry) = self.fleets.get_mut(fleet) else {
            return effects;
        };
        let Some(placement) = entry.placement.as_mut() else {
            return effects;
        };
        if let Some((nodes, woken)) = placement.release(room) {
            effects
                .lists
                .extend(nodes.into_iter().map(|n| fleet.node(n)));
            effects.rooms.extend(woken);
        }
        self.bump(&effects.lists);
        effects
    }

    /// Moves every room it can off a draining node whose deadline has come: the rooms to
    /// reconcile (moved, or stranded with why) and the lists to push come back.
    pub fn migrate_off(&mut self, node: &NodeKey, now: Instant) -> Effects {
        let mut effects = Effects::default();
        let Some(fleet) = self.fleet_of(node) else {
            return effects;
        };
        let fleet = FleetKey::new(node.namespace.clone(), fleet);
        if let Some(placement) = self
            .fleets
            .get_mut(&fleet)
            .and_then(|e| e.placement.as_mut())
        {
            let change = placement.migrate_off(&node.name, now);
            effects.absorb(&fleet, change);
        }
        self.bump(&effects.lists);
        effects
    }

    /// The node a room is leaving, and whether its participants were told where to go.
    pub fn leaving_from(&self, fleet: &FleetKey, room: &RoomKey) -> Option<(String, bool)> {
        self.placement(fleet)?
            .leaving_from(room)
            .map(|(n, told)| (n.to_string(), told))
    }

    /// Records that a moving room's participants were told where to go.
    pub fn told(&mut self, fleet: &FleetKey, room: &RoomKey) {
        if let Some(p) = self
            .fleets
            .get_mut(fleet)
            .and_then(|e| e.placement.as_mut())
        {
            p.told(room);
        }
    }

    /// Why a migration could not move a room, if it could not.
    pub fn stranded(&self, fleet: &FleetKey, room: &RoomKey) -> Option<Unschedulable> {
        self.placement(fleet)?.stranded(room).cloned()
    }

    /// Rooms a node's poll shows with participants although they are placed on other nodes
    /// become leaving it (see [`FleetPlacement::adopt_leaving`]): the node's list keeps them
    /// as leaving, and the rooms are reconciled, which tells their participants where to go.
    pub fn adopt_leaving(
        &mut self,
        node: &NodeKey,
        rooms: impl IntoIterator<Item = RoomKey>,
        now: Instant,
    ) -> Effects {
        let mut effects = Effects::default();
        let Some(fleet) = self.fleet_of(node) else {
            return effects;
        };
        let fleet = FleetKey::new(node.namespace.clone(), fleet);
        let Some(placement) = self
            .fleets
            .get_mut(&fleet)
            .and_then(|e| e.placement.as_mut())
        else {
            return effects;
        };
        for room in rooms {
            if placement.adopt_leaving(&node.name, &room, now) {
                effects.rooms.insert(room);
            }
        }
        if !effects.rooms.is_empty() {
            effects.lists.insert(node.clone());
            self.bump(&effects.lists);
        }
        effects
    }

    /// Lets go of the rooms leaving a node that its last poll no longer shows (or whose grace
    /// ran out); returns whether its list changed (it is then bumped, to be pushed).
    pub fn settle_leaving(
        &mut self,
        node: &NodeKey,
        still_there: impl Fn(&RoomKey) -> bool,
        now: Instant,
        grace: Duration,
    ) -> bool {
        let Some(fleet) = self.fleet_of(node) else {
            return false;
        };
        let fleet = FleetKey::new(node.namespace.clone(), fleet);
        let changed = self
            .fleets
            .get_mut(&fleet)
            .and_then(|e| e.placement.as_mut())
            .is_some_and(|p| p.settle_leaving(&node.name, still_there, now, grace));
        if changed {
            self.bump(&BTreeSet::from([node.clone()]));
        }
        changed
    }

    fn placement(&self, fleet: &FleetKey) -> Option<&FleetPlacement> {
        self.fleets.get(fleet)?.placement.as_ref()
    }

    /// The assignment list a node should hold, at its version: `None` for a node this
    /// operator has not placed anything on since it started leading (nothing to push yet).
    pub fn list(&self, node: &NodeKey) -> Option<(ListVersion, Vec<Assignment>)> {
        let seq = *self.lists.get(node)?;
        let version = ListVersion::new(self.epoch, seq);
        let fleet = self
            .fleets
            .get(&FleetKey::new(node.namespace.clone(), self.fleet_of(node)?))?;
        let rooms = fleet
            .placement
            .as_ref()
            .map(|p| {
                let hosted = p
                    .assignments(&node.name)
                    .into_iter()
                    .map(|(key, slots)| Assignment {
                        room: room_name(&key).to_string(),
                        slots,
                        leaving: false,
                    });
                let leaving = p.leaving(&node.name).map(|key| Assignment {
                    room: room_name(key).to_string(),
                    slots: 0,
                    leaving: true,
                });
                hosted.chain(leaving).collect()
            })
            .unwrap_or_default();
        Some((version, rooms))
    }

    /// The version of the list a node should hold (see [`Self::list`]).
    pub fn list_version(&self, node: &NodeKey) -> Option<ListVersion> {
        self.lists
            .get(node)
            .map(|seq| ListVersion::new(self.epoch, *seq))
    }

    /// Marks a node's list as changed (to push it again, e.g. to a node that restarted and
    /// lost it, or to a node first seen): returns the new version.
    pub fn touch(&mut self, node: &NodeKey) -> ListVersion {
        self.bump(&BTreeSet::from([node.clone()]));
        self.list_version(node).unwrap_or_default()
    }

    /// Moves a node's list version past `held` (a version of this leader the node holds from
    /// before its object was re-created under the same name); returns the new version.
    pub fn advance(&mut self, node: &NodeKey, held: ListVersion) -> ListVersion {
        let seq = self.lists.entry(node.clone()).or_insert(0);
        if held.epoch() == self.epoch {
            *seq = (*seq).max(held.seq()).saturating_add(1);
        }
        ListVersion::new(self.epoch, *seq)
    }

    /// The leader epoch the lists carry.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// A fleet's nodes.
    pub fn nodes(&self, fleet: &FleetKey) -> Vec<Arc<MediaNode>> {
        self.fleets
            .get(fleet)
            .map(|e| e.nodes.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A node, as last seen.
    pub fn node(&self, node: &NodeKey) -> Option<Arc<MediaNode>> {
        let fleet = self.fleet_of(node)?;
        self.fleets
            .get(&FleetKey::new(node.namespace.clone(), fleet))?
            .nodes
            .get(&node.name)
            .cloned()
    }

    /// A fleet, as last seen.
    pub fn fleet(&self, fleet: &FleetKey) -> Option<Arc<MediaFleet>> {
        self.fleets.get(fleet)?.fleet.clone()
    }

    /// Rooms placed on a node, or `None` before its fleet's placements are built.
    pub fn rooms_on(&self, node: &NodeKey) -> Option<u32> {
        let fleet = FleetKey::new(node.namespace.clone(), self.fleet_of(node)?);
        let snapshot = self.placement(&fleet)?.snapshot();
        let id = snapshot.node_id(&node.name)?;
        snapshot.node(id).map(|n| n.rooms)
    }

    /// Rooms placed per node of a fleet, or `None` before its placements are built.
    pub fn rooms_per_node(&self, fleet: &FleetKey) -> Option<HashMap<String, u32>> {
        let placement = self.fleets.get(fleet)?.placement.as_ref()?;
        Some(
            placement
                .rooms_per_node()
                .map(|(n, c)| (n.to_string(), c))
                .collect(),
        )
    }

    /// Live rooms whose status names `node` (for a node the placements do not know).
    pub fn rooms_naming(&self, fleet: &FleetKey, node: &str) -> u32 {
        let Some(entry) = self.fleets.get(fleet) else {
            return 0;
        };
        let count = entry
            .rooms
            .values()
            .filter_map(|r| r.status.as_ref())
            .filter(|s| s.phase != RoomPhase::Closed && s.node.as_deref() == Some(node))
            .count();
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The rooms of a fleet waiting for a node at `now`, as the autoscaler counts them:
    /// live rooms not placed whose booking (if any) is due. A room whose zones are unknown is
    /// left out: no node of the fleet could ever take it.
    pub fn waiting(&self, fleet: &FleetKey, now: Timestamp) -> Vec<RoomRequest> {
        let Some(entry) = self.fleets.get(fleet) else {
            return Vec::new();
        };
        let (Some(fleet), Some(placement)) = (&entry.fleet, &entry.placement) else {
            return Vec::new();
        };
        let bookings = &fleet.spec.bookings;
        let snapshot = placement.snapshot();
        let mut waiting: Vec<(&String, RoomRequest)> = entry
            .rooms
            .iter()
            .filter(|(_, r)| {
                r.meta().deletion_timestamp.is_none()
                    && r.status
                        .as_ref()
                        .is_none_or(|s| s.phase != RoomPhase::Closed)
                    && snapshot.room(&room_key(r)).is_none()
                    && classify(
                        r.spec.start_time.as_ref().map(|t| t.0),
                        r.metadata.creation_timestamp.as_ref().map(|t| t.0),
                        now,
                        bookings.lead_time.into(),
                        bookings.horizon.into(),
                    )
                    .placeable()
            })
            .filter_map(|(name, r)| {
                let request = snapshot.room_request(&r.spec).ok()?;
                Some((name, request))
            })
            .collect();
        // The same rooms in the same order whatever the map's: the same decision.
        waiting.sort_by(|a, b| a.0.cmp(b.0));
        waiting.into_iter().map(|(_, r)| r).collect()
    }

    /// Rooms of a fleet no node could take yet (they wait for capacity).
    pub fn unschedulable(&self, fleet: &FleetKey) -> usize {
        self.fleets.get(fleet).map_or(0, |e| e.pending().len())
    }

    /// A fleet's placement snapshot, once built.
    pub fn snapshot(&self, fleet: &FleetKey) -> Option<&Snapshot> {
        self.fleets
            .get(fleet)?
            .placement
            .as_ref()
            .map(FleetPlacement::snapshot)
    }

    /// Every fleet seen, with its key.
    pub fn fleets(&self) -> impl Iterator<Item = (&FleetKey, &Arc<MediaFleet>)> {
        self.fleets
            .iter()
            .filter_map(|(k, e)| e.fleet.as_ref().map(|f| (k, f)))
    }

    fn fleet_of(&self, node: &NodeKey) -> Option<String> {
        self.node_fleet.get(node).cloned()
    }

    /// Builds a fleet's placements from its own nodes and rooms, if not built yet. The first
    /// build gives every node of the fleet this leader's list, and moves the rooms of nodes
    /// that failed while no operator watched.
    pub fn ensure(&mut self, key: &FleetKey) -> Result<Effects, RegistryError> {
        let entry = self
            .fleets
            .get_mut(key)
            .ok_or_else(|| RegistryError::NoFleet(key.clone()))?;
        let fleet = entry
            .fleet
            .clone()
            .ok_or_else(|| RegistryError::NoFleet(key.clone()))?;
        let mut effects = Effects::default();
        let mut built = false;
        if entry.placement.is_none() {
            let (placement, change) = FleetPlacement::build(
                &fleet,
                entry.nodes.values().map(AsRef::as_ref),
                entry.rooms.values().map(AsRef::as_ref),
            )
            .map_err(|e| RegistryError::Rules(key.clone(), e.to_string()))?;
            entry.placement = Some(placement);
            effects.absorb(key, change);
            // Every node gets this leader's list once: a new leader's first push. Bumped here,
            // whoever built the placements first: a node nothing is placed on again (a
            // draining one) would otherwise keep the last leader's list for ever.
            effects
                .lists
                .extend(entry.nodes.keys().map(|n| key.node(n.clone())));
            built = true;
        }
        if built {
            self.bump(&effects.lists);
        }
        Ok(effects)
    }

    fn bump(&mut self, nodes: &BTreeSet<NodeKey>) {
        for node in nodes {
            let seq = self.lists.entry(node.clone()).or_insert(0);
            *seq = seq.saturating_add(1);
        }
    }
}

/// Whether a node's change matters to its fleet's plan and status: its phase, its drain, its
/// deletion, its revision. Load alone does not.
fn fleet_sees_change(before: &MediaNode, after: &MediaNode) -> bool {
    let phase = |n: &MediaNode| n.status.as_ref().map(|s| s.phase);
    phase(before) != phase(after)
        || before.spec.drain != after.spec.drain
        || before.spec.revision != after.spec.revision
        || before.metadata.deletion_timestamp.is_some()
            != after.metadata.deletion_timestamp.is_some()
        || before.status.as_ref().and_then(|s| s.not_ready_reason())
            != after.status.as_ref().and_then(|s| s.not_ready_reason())
}

fn merge(into: &mut Effects, more: Effects) {
    into.rooms.extend(more.rooms);
    into.lists.extend(more.lists);
    into.fleets.extend(more.fleets);
    into.problems.extend(more.problems);
    into.moved.extend(more.moved);
    into.stranded.extend(more.stranded);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_objects::{fleet, node, room};
    use ruche_crds::NodePhase;

    fn in_ns<K: Resource>(mut object: K, ns: &str) -> Arc<K> {
        object.meta_mut().namespace = Some(ns.into());
        Arc::new(object)
    }

    fn placed(d: &Decision) -> &str {
        match d {
            Decision::Placed { node, .. } => node,
            other => panic!("not placed: {other:?}"),
        }
    }

    /// Two ministries, each with a fleet `visio` and a node `a1`.
    fn two_ministries() -> Registry {
        let mut r = Registry::new(7);
        for ns in ["interieur", "armees"] {
            r.apply_fleet(in_ns(fleet(), ns));
            r.apply_node(in_ns(node("a1", "a", NodePhase::Ready), ns));
        }
        r
    }

    #[test]
    fn a_new_leaders_first_build_gives_every_node_a_list_and_adopts_a_split_room() {
        let mut r = two_ministries();
        let ns = "interieur";
        r.apply_node(in_ns(node("a2", "a", NodePhase::Ready), ns));
        // A room an earlier leader moved from a1 to a2 (its status says a2).
        let mut moved = room("r", 10, &["a"]);
        moved.status = Some(ruche_crds::RoomStatus {
            phase: RoomPhase::Scheduled,
            node: Some("a2".into()),
            zone: Some("a".into()),
            ..Default::default()
        });
        let moved = in_ns(moved, ns);
        r.apply_room(moved.clone());
        // Built by the fleet's controller, not by a room's placement: every node still gets
        // this leader's list, the ones nothing will be placed on again included.
        let fleet = FleetKey::new(ns, "visio");
        let effects = r.ensure(&fleet).unwrap();
        let a1 = NodeKey::new(ns, "a1");
        assert!(effects.lists.contains(&a1));
        let (first, list) = r.list(&a1).expect("a1 has a list to push");
        assert!(list.is_empty(), "{list:?}");
        // a1 reports r's participants: r becomes leaving a1, and is reconciled.
        let key = room_key(&moved);
        let adopted = r.adopt_leaving(&a1, [key.clone()], Instant::now());
        assert!(adopted.rooms.contains(&key));
        let (second, list) = r.list(&a1).unwrap();
        assert!(second > first);
        assert_eq!(
            list,
            vec![Assignment {
                room: "r".into(),
                slots: 0,
                leaving: true,
            }]
        );
        assert_eq!(
            r.adopt_leaving(&a1, [key], Instant::now()).rooms.len(),
            0,
            "adopted once"
        );
    }

    #[test]
    fn fleets_of_the_same_name_in_two_namespaces_never_share_anything() {
        let mut r = two_ministries();
        // Fill interieur's only node.
        let big = in_ns(room("big", 100, &["a"]), "interieur");
        r.apply_room(big.clone());
        let (d, effects) = r.decide(&big).unwrap();
        assert_eq!(placed(&d), "a1");
        assert!(effects.lists.contains(&NodeKey::new("interieur", "a1")));
        assert!(!effects.lists.contains(&NodeKey::new("armees", "a1")));
        // armees's a1 is still empty.
        let theirs = in_ns(room("r1", 100, &["a"]), "armees");
        r.apply_room(theirs.clone());
        assert_eq!(placed(&r.decide(&theirs).unwrap().0), "a1");
        let (_, list) = r.list(&NodeKey::new("armees", "a1")).unwrap();
        assert_eq!(
            list,
            vec![Assignment {
                room: "r1".into(),
                slots: 100,
                leaving: false,
            }]
        );
        let (_, list) = r.list(&NodeKey::new("interieur", "a1")).unwrap();
        assert_eq!(
            list,
            vec![Assignment {
                room: "big".into(),
                slots: 100,
                leaving: false,
            }]
        );
        // Deleting interieur's room frees interieur's node, and only it.
        let waiting = in_ns(room("next", 100, &["a"]), "interieur");
        r.apply_room(waiting.clone());
        assert!(matches!(
            r.decide(&waiting).unwrap().0,
            Decision::Unschedulable(_)
        ));
        let effects = r.delete_room(&big);
        assert_eq!(
            effects.lists,
            BTreeSet::from([NodeKey::new("interieur", "a1")])
        );
        assert_eq!(
            effects.rooms,
            BTreeSet::from([RoomKey::new("interieur/next")]),
            "the waiting room is woken at once"
        );
        assert_eq!(placed(&r.decide(&waiting).unwrap().0), "a1");
        assert_eq!(r.nodes(&FleetKey::new("armees", "visio")).len(), 1);
    }

    #[test]
    fn a_node_failing_in_one_namespace_moves_only_that_namespaces_rooms() {
        let mut r = two_ministries();
        for ns in ["interieur", "armees"] {
            r.apply_node(in_ns(node("a2", "a", NodePhase::Ready), ns));
            let rm = in_ns(room("r1", 10, &[]), ns);
            r.apply_room(rm.clone());
            r.decide(&rm).unwrap();
        }
        let on = |r: &Registry, ns: &str| {
            ["a1", "a2"]
                .into_iter()
                .find(|n| {
                    r.list(&NodeKey::new(ns, *n))
                        .is_some_and(|(_, l)| !l.is_empty())
                })
                .map(String::from)
        };
        let host = on(&r, "interieur").unwrap();
        let before = on(&r, "armees");
        let effects = r.apply_node(in_ns(node(&host, "a", NodePhase::Failed), "interieur"));
        assert_eq!(
            effects.rooms,
            BTreeSet::from([RoomKey::new("interieur/r1")])
        );
        assert!(effects.lists.iter().all(|n| n.namespace == "interieur"));
        assert_ne!(on(&r, "interieur").as_deref(), Some(host.as_str()));
        assert_eq!(
            on(&r, "armees"),
            before,
            "the other ministry's room did not move"
        );
    }

    #[test]
    fn list_versions_only_grow_and_carry_the_epoch() {
        let mut r = Registry::new(3);
        r.apply_fleet(Arc::new(fleet()));
        r.apply_node(Arc::new(node("a1", "a", NodePhase::Ready)));
        let key = NodeKey::new("ns", "a1");
        let rm = Arc::new(room("r1", 10, &[]));
        r.apply_room(rm.clone());
        r.decide(&rm).unwrap();
        let (v1, _) = r.list(&key).unwrap();
        assert_eq!(v1.epoch(), 3);
        r.delete_room(&rm);
        let (v2, list) = r.list(&key).unwrap();
        assert!(v2 > v1 && list.is_empty());
        // A fleet change rebuilds the placements: versions keep growing.
        let mut changed = fleet();
        changed.metadata.generation = Some(2);
        r.apply_fleet(Arc::new(changed));
        assert!(r.list_version(&key).unwrap() > v2);
        assert!(r.touch(&key) > v2);
    }

    #[test]
    fn a_relist_deletes_what_vanished_meanwhile() {
        let mut r = Registry::new(1);
        r.apply_fleet(Arc::new(fleet()));
        r.apply_node(Arc::new(node("a1", "a", NodePhase::Ready)));
        let rm = Arc::new(room("r1", 10, &[]));
        r.apply_room(rm.clone());
        r.decide(&rm).unwrap();
        // The watch broke; the room was deleted while it was down.
        let effects = r.replace_rooms(Vec::new());
        assert_eq!(effects.lists, BTreeSet::from([NodeKey::new("ns", "a1")]));
        assert!(r.list(&NodeKey::new("ns", "a1")).unwrap().1.is_empty());
        let effects = r.replace_nodes(Vec::new());
        assert!(effects.lists.is_empty(), "no push to a deleted node");
        assert!(r.nodes(&FleetKey::new("ns", "visio")).is_empty());
    }
}
