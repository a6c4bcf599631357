//! The world as the core sees it: the fleet's rules, its nodes and the rooms placed on them.
//!
//! Per zone, the snapshot keeps the nodes that can take rooms ordered by free slots, so a
//! placement costs a few ordered-set lookups per zone instead of a scan of every node. All
//! mutation goes through [`Snapshot::apply`] and the observation methods, which keep those
//! indexes in step; there is no other way to change a node.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use ruche_crds::{NodePhase, PlacementStrategy};

use super::action::{Action, ApplyError};
use super::ids::{NodeId, RoomKey, ZoneId, ZoneMask};
use super::load::Load;
use super::request::RoomRequest;

/// One zone's rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRules {
    /// Zone name.
    pub name: String,
    /// Fewest nodes the zone runs.
    pub min_nodes: u32,
    /// Most nodes the zone may run.
    pub max_nodes: u32,
}

/// The fleet-level rules placement follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetRules {
    /// Packed or Distributed.
    pub strategy: PlacementStrategy,
    /// The zones, in the order [`ZoneId`]s index them.
    pub zones: Vec<ZoneRules>,
}

impl FleetRules {
    /// Rules for zones of the same bounds (tests, benchmarks, simple fleets).
    pub fn uniform(strategy: PlacementStrategy, zones: &[&str], max_nodes: u32) -> Self {
        let zones = zones
            .iter()
            .map(|z| ZoneRules {
                name: (*z).to_string(),
                min_nodes: 0,
                max_nodes,
            })
            .collect();
        Self { strategy, zones }
    }
}

/// A fleet whose rules cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// More zones than a [`ZoneMask`] holds.
    #[error("a fleet may have at most {max} zones, this one has {got}")]
    TooManyZones {
        /// Limit.
        max: usize,
        /// Zones given.
        got: usize,
    },
    /// Two zones share a name.
    #[error("zone {0} is listed twice")]
    DuplicateZone(String),
}

/// A node as the shell reports it when adding it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// `MediaNode` name.
    pub name: String,
    /// Zone name.
    pub zone: String,
    /// Template revision.
    pub revision: String,
    /// Participant slots.
    pub capacity: u32,
    /// Lifecycle phase.
    pub phase: NodePhase,
    /// Whether the node takes no new room though it may report Ready: a drain was requested,
    /// or the operator cannot reach it to tell it about rooms.
    pub cordoned: bool,
    /// Whether the node takes new rooms only when no other node of its zone can: it runs an
    /// older revision while a rollout replaces it.
    pub fallback: bool,
}

impl NodeInfo {
    /// A Ready, non-draining node of revision `r1`.
    pub fn ready(name: impl Into<String>, zone: impl Into<String>, capacity: u32) -> Self {
        Self {
            name: name.into(),
            zone: zone.into(),
            revision: "r1".into(),
            capacity,
            phase: NodePhase::Ready,
            cordoned: false,
            fallback: false,
        }
    }

    /// The same node in another phase.
    #[must_use]
    pub fn in_phase(mut self, phase: NodePhase) -> Self {
        self.phase = phase;
        self
    }
}

/// A node in the snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeState {
    /// `MediaNode` name.
    pub name: Arc<str>,
    /// Zone.
    pub zone: ZoneId,
    /// Template revision.
    pub revision: Arc<str>,
    /// Participant slots.
    pub capacity: u32,
    /// Lifecycle phase.
    pub phase: NodePhase,
    /// Whether it takes no new room (drain requested, or unreachable).
    pub cordoned: bool,
    /// Whether it takes new rooms only when no other node of its zone can.
    pub fallback: bool,
    /// Reserved and measured slots.
    pub load: Load,
    /// Rooms placed on it.
    pub rooms: u32,
}

impl NodeState {
    /// Whether the node may take a new room: Ready and not cordoned.
    pub fn schedulable(&self) -> bool {
        self.phase == NodePhase::Ready && !self.cordoned
    }

    /// Slots free for new rooms.
    pub fn free(&self) -> u32 {
        self.load.free(self.capacity)
    }
}

/// A placed room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomRecord {
    /// Node hosting it.
    pub node: NodeId,
    /// What it asked for.
    pub request: RoomRequest,
}

/// Ordering key of a schedulable node within its zone: by free slots, then name, so that
/// ties break the same way whatever order the nodes were added in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct FreeKey {
    free: u32,
    name: Arc<str>,
    id: NodeId,
}

/// Slots of the schedulable nodes of one zone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneUse {
    /// Slots counted as used (capped at each node's capacity).
    pub used: u64,
    /// Total slots.
    pub capacity: u64,
}

/// The fleet as the core sees it.
#[derive(Clone, Debug)]
pub struct Snapshot {
    rules: FleetRules,
    nodes: Vec<Option<NodeState>>,
    by_name: HashMap<Arc<str>, NodeId>,
    free_index: Vec<BTreeSet<FreeKey>>,
    /// The same, for nodes that take rooms only when the others of their zone cannot.
    fallback_index: Vec<BTreeSet<FreeKey>>,
    zone_use: Vec<ZoneUse>,
    rooms: HashMap<RoomKey, RoomRecord>,
    /// The rooms of each node, by node id: a node's assignment list without a scan.
    node_rooms: Vec<BTreeSet<RoomKey>>,
    lowest_name: Arc<str>,
}

impl Snapshot {
    /// An empty snapshot of a fleet.
    pub fn new(rules: FleetRules) -> Result<Self, RulesError> {
        if rules.zones.len() > ZoneMask::CAPACITY {
            return Err(RulesError::TooManyZones {
                max: ZoneMask::CAPACITY,
                got: rules.zones.len(),
            });
        }
        for (i, z) in rules.zones.iter().enumerate() {
            if rules.zones[..i].iter().any(|o| o.name == z.name) {
                return Err(RulesError::DuplicateZone(z.name.clone()));
            }
        }
        let zones = rules.zones.len();
        Ok(Self {
            rules,
            nodes: Vec::new(),
            by_name: HashMap::new(),
            free_index: vec![BTreeSet::new(); zones],
            fallback_index: vec![BTreeSet::new(); zones],
            zone_use: vec![ZoneUse::default(); zones],
            rooms: HashMap::new(),
            node_rooms: Vec::new(),
            lowest_name: Arc::from(""),
        })
    }

    /// The fleet's rules.
    pub fn rules(&self) -> &FleetRules {
        &self.rules
    }

    /// A zone's id from its name.
    pub fn zone_id(&self, name: &str) -> Option<ZoneId> {
        self.rules
            .zones
            .iter()
            .position(|z| z.name == name)
            .map(|i| ZoneId(i as u8))
    }

    /// A zone's name.
    pub fn zone_name(&self, zone: ZoneId) -> &str {
        self.rules
            .zones
            .get(zone.0 as usize)
            .map_or("?", |z| z.name.as_str())
    }

    /// Every zone of the fleet.
    pub fn all_zones(&self) -> ZoneMask {
        ZoneMask::first(self.rules.zones.len())
    }

    /// A node by id.
    pub fn node(&self, id: NodeId) -> Option<&NodeState> {
        self.nodes.get(id.0 as usize).and_then(Option::as_ref)
    }

    /// A node's id from its name.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.by_name.get(name).copied()
    }

    /// Every node, in id order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &NodeState)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (NodeId(i as u32), n)))
    }

    /// A placed room.
    pub fn room(&self, key: &RoomKey) -> Option<&RoomRecord> {
        self.rooms.get(key)
    }

    /// Every placed room, in no particular order.
    pub fn rooms(&self) -> impl Iterator<Item = (&RoomKey, &RoomRecord)> {
        self.rooms.iter()
    }

    /// The rooms placed on a node, by key.
    pub fn rooms_on(&self, id: NodeId) -> impl Iterator<Item = (&RoomKey, &RoomRecord)> {
        self.node_rooms
            .get(id.0 as usize)
            .into_iter()
            .flatten()
            .filter_map(|k| self.rooms.get_key_value(k))
    }

    /// Number of placed rooms.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Slots used and offered by the schedulable nodes of a zone.
    pub fn zone_use(&self, zone: ZoneId) -> ZoneUse {
        self.zone_use
            .get(zone.0 as usize)
            .copied()
            .unwrap_or_default()
    }

    /// The schedulable node of `zone` with the fewest free slots that still fits `slots`
    /// (ties: lowest name), among the nodes that are a fallback or among the others.
    pub fn tightest_fit(&self, zone: ZoneId, slots: u32, fallback: bool) -> Option<NodeId> {
        let index = self.index_of(fallback).get(zone.0 as usize)?;
        let from = FreeKey {
            free: slots,
            name: self.lowest_name.clone(),
            id: NodeId(0),
        };
        index.range(from..).next().map(|k| k.id)
    }

    /// The schedulable node of `zone` with the most free slots, if it fits `slots`
    /// (ties: lowest name), among the nodes that are a fallback or among the others.
    pub fn roomiest_fit(&self, zone: ZoneId, slots: u32, fallback: bool) -> Option<NodeId> {
        let index = self.index_of(fallback).get(zone.0 as usize)?;
        let most = index.last()?.free;
        if most < slots {
            return None;
        }
        let from = FreeKey {
            free: most,
            name: self.lowest_name.clone(),
            id: NodeId(0),
        };
        index.range(from..).next().map(|k| k.id)
    }

    fn index_of(&self, fallback: bool) -> &Vec<BTreeSet<FreeKey>> {
        if fallback {
            &self.fallback_index
        } else {
            &self.free_index
        }
    }

    /// Adds a node.
    pub fn add_node(&mut self, info: NodeInfo) -> Result<NodeId, ApplyError> {
        let zone = self
            .zone_id(&info.zone)
            .ok_or_else(|| ApplyError::UnknownZone {
                node: info.name.clone(),
                zone: info.zone.clone(),
            })?;
        if self.by_name.contains_key(info.name.as_str()) {
            return Err(ApplyError::DuplicateNode(info.name));
        }
        let id = NodeId(self.nodes.len() as u32);
        let name: Arc<str> = Arc::from(info.name);
        let node = NodeState {
            name: name.clone(),
            zone,
            revision: Arc::from(info.revision),
            capacity: info.capacity,
            phase: info.phase,
            cordoned: info.cordoned,
            fallback: info.fallback,
            load: Load::default(),
            rooms: 0,
        };
        self.index(id, &node);
        self.nodes.push(Some(node));
        self.node_rooms.push(BTreeSet::new());
        self.by_name.insert(name, id);
        Ok(id)
    }

    /// Removes a node that hosts no room.
    pub fn remove_node(&mut self, id: NodeId) -> Result<NodeState, ApplyError> {
        let node = self.node(id).ok_or(ApplyError::UnknownNode(id))?;
        if node.rooms > 0 {
            return Err(ApplyError::NodeHasRooms {
                node: node.name.to_string(),
                rooms: node.rooms,
            });
        }
        let node = self.nodes[id.0 as usize]
            .take()
            .ok_or(ApplyError::UnknownNode(id))?;
        self.unindex(id, &node);
        self.by_name.remove(&node.name);
        Ok(node)
    }

    /// Records a node's phase.
    pub fn set_phase(&mut self, id: NodeId, phase: NodePhase) -> Result<(), ApplyError> {
        self.update_node(id, |n| n.phase = phase)
    }

    /// Records whether a node takes no new room (drain requested, or unreachable).
    pub fn set_cordoned(&mut self, id: NodeId, cordoned: bool) -> Result<(), ApplyError> {
        self.update_node(id, |n| n.cordoned = cordoned)
    }

    /// Makes a node take new rooms only when no other node of its zone can (or as any other).
    pub fn set_fallback(&mut self, id: NodeId, fallback: bool) -> Result<(), ApplyError> {
        self.update_node(id, |n| n.fallback = fallback)
    }

    /// Records a node's reported load (participants connected).
    pub fn observe(&mut self, id: NodeId, measured: u32) -> Result<(), ApplyError> {
        self.update_node(id, |n| n.load.measured = measured)
    }

    /// Applies an action, keeping reservations and indexes in step.
    ///
    /// Apply records facts: it does not re-check capacity or node phase, because the shell
    /// also uses it to rebuild placements that already exist (a restarted operator must
    /// record a room on the draining node it lives on). Deciding is [`crate::core::place`]'s job.
    pub fn apply(&mut self, action: &Action) -> Result<(), ApplyError> {
        match action {
            Action::Assign {
                room,
                node,
                request,
            } => {
                if self.rooms.contains_key(room) {
                    return Err(ApplyError::AlreadyPlaced(room.clone()));
                }
                let slots = request.slots;
                self.update_node(*node, |n| {
                    n.load.reserved = n.load.reserved.saturating_add(slots);
                    n.rooms += 1;
                })?;
                self.rooms.insert(
                    room.clone(),
                    RoomRecord {
                        node: *node,
                        request: *request,
                    },
                );
                self.node_rooms[node.0 as usize].insert(room.clone());
            }
            Action::Move { room, to } => {
                let record = self
                    .rooms
                    .get(room)
                    .ok_or_else(|| ApplyError::UnknownRoom(room.clone()))?;
                let (from, slots) = (record.node, record.request.slots);
                self.node(*to).ok_or(ApplyError::UnknownNode(*to))?;
                self.release_slots(from, slots)?;
                self.update_node(*to, |n| {
                    n.load.reserved = n.load.reserved.saturating_add(slots);
                    n.rooms += 1;
                })?;
                if let Some(r) = self.rooms.get_mut(room) {
                    r.node = *to;
                }
                self.node_rooms[from.0 as usize].remove(room);
                self.node_rooms[to.0 as usize].insert(room.clone());
            }
            Action::Release { room } => {
                let record = self
                    .rooms
                    .remove(room)
                    .ok_or_else(|| ApplyError::UnknownRoom(room.clone()))?;
                self.release_slots(record.node, record.request.slots)?;
                self.node_rooms[record.node.0 as usize].remove(room);
            }
        }
        Ok(())
    }

    fn release_slots(&mut self, node: NodeId, slots: u32) -> Result<(), ApplyError> {
        self.update_node(node, |n| {
            n.load.reserved = n.load.reserved.saturating_sub(slots);
            n.rooms = n.rooms.saturating_sub(1);
        })
    }

    /// The one way a node changes: take it out of the indexes, change it, put it back.
    fn update_node(
        &mut self,
        id: NodeId,
        change: impl FnOnce(&mut NodeState),
    ) -> Result<(), ApplyError> {
        let mut node = self.node(id).cloned().ok_or(ApplyError::UnknownNode(id))?;
        self.unindex(id, &node);
        change(&mut node);
        self.index(id, &node);
        self.nodes[id.0 as usize] = Some(node);
        Ok(())
    }

    fn index(&mut self, id: NodeId, node: &NodeState) {
        if !node.schedulable() {
            return;
        }
        let z = node.zone.0 as usize;
        let index = if node.fallback {
            &mut self.fallback_index
        } else {
            &mut self.free_index
        };
        index[z].insert(FreeKey {
            free: node.free(),
            name: node.name.clone(),
            id,
        });
        self.zone_use[z].used += u64::from(node.load.used().min(node.capacity));
        self.zone_use[z].capacity += u64::from(node.capacity);
    }

    fn unindex(&mut self, id: NodeId, node: &NodeState) {
        if !node.schedulable() {
            return;
        }
        let z = node.zone.0 as usize;
        let index = if node.fallback {
            &mut self.fallback_index
        } else {
            &mut self.free_index
        };
        index[z].remove(&FreeKey {
            free: node.free(),
            name: node.name.clone(),
            id,
        });
        self.zone_use[z].used -= u64::from(node.load.used().min(node.capacity));
        self.zone_use[z].capacity -= u64::from(node.capacity);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(zones: &[&str]) -> FleetRules {
        FleetRules::uniform(PlacementStrategy::Packed, zones, 10)
    }

    fn ready(name: &str, zone: &str, capacity: u32) -> NodeInfo {
        NodeInfo::ready(name, zone, capacity)
    }

    #[test]
    fn reservations_follow_assign_move_release() -> Result<(), ApplyError> {
        let mut s = Snapshot::new(rules(&["a", "b"])).unwrap();
        let n1 = s.add_node(ready("n1", "a", 100))?;
        let n2 = s.add_node(ready("n2", "b", 100))?;
        let req = s.request::<&str>(30, &[], &[]).unwrap();
        let room = RoomKey::new("ns/r1");
        s.apply(&Action::Assign {
            room: room.clone(),
            node: n1,
            request: req,
        })?;
        assert_eq!(
            s.node(n1).map(|n| (n.load.reserved, n.rooms)),
            Some((30, 1))
        );
        assert_eq!(
            s.zone_use(ZoneId(0)),
            ZoneUse {
                used: 30,
                capacity: 100
            }
        );
        assert_eq!(
            s.apply(&Action::Assign {
                room: room.clone(),
                node: n2,
                request: req
            }),
            Err(ApplyError::AlreadyPlaced(room.clone()))
        );
        assert_eq!(s.rooms_on(n1).map(|(k, _)| k).collect::<Vec<_>>(), [&room]);
        s.apply(&Action::Move {
            room: room.clone(),
            to: n2,
        })?;
        assert_eq!(s.rooms_on(n1).count(), 0, "the room left n1's list");
        assert_eq!(s.rooms_on(n2).map(|(k, _)| k).collect::<Vec<_>>(), [&room]);
        assert_eq!(s.node(n1).map(|n| n.load.reserved), Some(0));
        assert_eq!(s.node(n2).map(|n| n.load.reserved), Some(30));
        s.apply(&Action::Release { room: room.clone() })?;
        assert_eq!(s.node(n2).map(|n| (n.load.reserved, n.rooms)), Some((0, 0)));
        assert_eq!(s.rooms_on(n2).count(), 0);
        assert_eq!(
            s.apply(&Action::Release { room: room.clone() }),
            Err(ApplyError::UnknownRoom(room))
        );
        Ok(())
    }

    #[test]
    fn draining_and_unready_nodes_leave_the_index() -> Result<(), ApplyError> {
        let mut s = Snapshot::new(rules(&["a"])).unwrap();
        let n1 = s.add_node(ready("n1", "a", 100))?;
        assert_eq!(s.tightest_fit(ZoneId(0), 10, false), Some(n1));
        s.set_cordoned(n1, true)?;
        assert_eq!(s.tightest_fit(ZoneId(0), 10, false), None);
        assert_eq!(s.zone_use(ZoneId(0)).capacity, 0);
        s.set_cordoned(n1, false)?;
        s.set_phase(n1, NodePhase::Failed)?;
        assert_eq!(s.roomiest_fit(ZoneId(0), 1, false), None);
        Ok(())
    }

    #[test]
    fn bad_changes_are_refused_with_a_reason() -> Result<(), ApplyError> {
        let mut s = Snapshot::new(rules(&["a"])).unwrap();
        assert!(matches!(
            s.add_node(ready("n1", "z", 10)),
            Err(ApplyError::UnknownZone { .. })
        ));
        let n1 = s.add_node(ready("n1", "a", 10))?;
        assert_eq!(
            s.add_node(ready("n1", "a", 10)),
            Err(ApplyError::DuplicateNode("n1".into()))
        );
        let req = s.request::<&str>(5, &[], &[]).unwrap();
        s.apply(&Action::Assign {
            room: RoomKey::new("r"),
            node: n1,
            request: req,
        })?;
        assert!(matches!(
            s.remove_node(n1),
            Err(ApplyError::NodeHasRooms { rooms: 1, .. })
        ));
        assert_eq!(
            s.set_phase(NodeId(9), NodePhase::Ready),
            Err(ApplyError::UnknownNode(NodeId(9)))
        );
        assert!(Snapshot::new(rules(&["a", "a"])).is_err());
        Ok(())
    }
}
