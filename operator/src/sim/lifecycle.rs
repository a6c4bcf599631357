//! The simulated fleet's nodes over the day: drains with a deadline, zone evacuations and
//! rolling upgrades, decided by the same core as the controllers ([`crate::core::rollout`],
//! [`crate::core::migrate`]) and applied to the simulation's snapshot.
//!
//! Every tick: nodes created earlier become Ready after their start-up time; a draining node
//! that is empty goes; one whose deadline has come has its rooms moved live (a room with
//! nowhere to go stays where it is, as on a real fleet); the autoscaler (if the scenario has
//! one) decides each zone's size; and [`crate::core::fleet_plan::plan_with`] takes the zones
//! there as the fleet controller does: evacuated zones drain, zones still running an older
//! revision are rolled within the scenario's surge and unavailability, others grow or shrink
//! (only by draining). No node is created in a zone that is down (every node failed): its
//! pods could not start.

use std::collections::{BTreeSet, HashMap};

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ruche_crds::NodePhase;

use jiff::Timestamp;

use super::clock::TimeOfDay;
use super::scenario::{Rollout, node_name};
use crate::core::autoscaling::{Inputs, NodeSlots, Policy, ZoneMemory, decide, zone_loads};
use crate::core::fleet_plan::{DrainCause, FleetAction, Levers, NodeView, plan_with};
use crate::core::rollout::Budget;
use crate::core::{ApplyError, NodeId, NodeInfo, RoomKey, RoomRequest, Snapshot, migrate};

/// What the simulation knows of a node besides the snapshot.
#[derive(Clone, Copy, Debug)]
struct Meta {
    revision: u32,
    zone: usize,
    index: u32,
    ready_at: Option<TimeOfDay>,
    drain: Option<(DrainCause, TimeOfDay)>,
}

/// A rolling upgrade under way, or done.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RolloutRun {
    /// When it started.
    pub started: Option<TimeOfDay>,
    /// When the last old node went.
    pub finished: Option<TimeOfDay>,
    /// Node-seconds run above the fleet's own size while it lasted.
    pub surge_node_seconds: u64,
}

/// What one tick did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Rooms moved live off draining nodes.
    pub migrated: u32,
    /// Of which within their zone.
    pub migrated_same_zone: u32,
    /// Rooms a migration could not move (they stay, live, on their draining node).
    pub stranded: Vec<RoomKey>,
}

/// What the autoscaler did over the day.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scaling {
    /// Decisions that grew a zone.
    pub ups: u32,
    /// Decisions that shrank a zone (one drain each).
    pub downs: u32,
}

/// The fleet's nodes over the day.
pub struct Lifecycle {
    settings: Rollout,
    /// Node ids by zone, in creation order.
    pub zone_nodes: Vec<Vec<NodeId>>,
    /// Nodes each zone runs when nothing happens.
    sizes: Vec<u32>,
    meta: HashMap<NodeId, Meta>,
    /// Node indexes in use per zone: a new node takes the lowest free one, as the operator
    /// does, so a replaced node's name comes back.
    indexes: Vec<BTreeSet<u32>>,
    /// Nodes created and deleted so far.
    pub created: u32,
    /// Nodes deleted once drained so far.
    pub deleted: u32,
    target: u32,
    evacuated: Vec<bool>,
    /// The day's rolling upgrade.
    pub rollout: RolloutRun,
    last_tick: Option<TimeOfDay>,
    /// The autoscaler, if the scenario has one, and what its decisions carry over.
    policy: Option<Policy>,
    memory: Vec<ZoneMemory>,
    /// Each zone's last decision: grow (`Some(true)`), shrink (`Some(false)`) or neither.
    decided: Vec<Option<bool>>,
    /// What it did.
    pub scaling: Scaling,
    /// Node-seconds run per zone so far (any phase).
    pub node_seconds: Vec<u64>,
    last_account: Option<TimeOfDay>,
}

impl Lifecycle {
    /// The fleet as the day starts: `zone_nodes` Ready nodes of revision 0, sized by `policy`
    /// if there is one.
    pub fn new(settings: Rollout, zone_nodes: Vec<Vec<NodeId>>, policy: Option<Policy>) -> Self {
        let sizes: Vec<u32> = zone_nodes.iter().map(|z| z.len() as u32).collect();
        let meta = zone_nodes
            .iter()
            .enumerate()
            .flat_map(|(zone, ids)| {
                ids.iter().enumerate().map(move |(index, id)| {
                    let m = Meta {
                        revision: 0,
                        zone,
                        index: index as u32,
                        ready_at: None,
                        drain: None,
                    };
                    (*id, m)
                })
            })
            .collect();
        Self {
            settings,
            indexes: sizes.iter().map(|n| (0..*n).collect()).collect(),
            created: 0,
            deleted: 0,
            evacuated: vec![false; sizes.len()],
            sizes,
            zone_nodes,
            meta,
            target: 0,
            rollout: RolloutRun::default(),
            last_tick: None,
            memory: vec![ZoneMemory::default(); policy.as_ref().map_or(0, |p| p.zones.len())],
            decided: Vec::new(),
            policy,
            scaling: Scaling::default(),
            node_seconds: Vec::new(),
            last_account: None,
        }
    }

    /// Counts the node-seconds run per zone up to `now`.
    pub fn account(&mut self, now: TimeOfDay) {
        let elapsed = self
            .last_account
            .map_or(0, |t| now.seconds().saturating_sub(t.seconds()));
        self.last_account = Some(now);
        self.node_seconds.resize(self.zone_nodes.len(), 0);
        for (seconds, nodes) in self.node_seconds.iter_mut().zip(&self.zone_nodes) {
            *seconds += u64::from(elapsed) * nodes.len() as u64;
        }
    }

    /// A new revision: every zone is rolled to it from the next tick.
    pub fn start_rollout(&mut self, now: TimeOfDay) {
        self.target += 1;
        self.rollout = RolloutRun {
            started: Some(now),
            ..RolloutRun::default()
        };
    }

    /// Evacuates a zone (its nodes drain from the next tick), or ends its evacuation: its
    /// draining nodes come back and the nodes it lost are created again.
    pub fn evacuate(
        &mut self,
        snapshot: &mut Snapshot,
        zone: usize,
        on: bool,
        now: TimeOfDay,
    ) -> Result<u32, ApplyError> {
        self.evacuated[zone] = on;
        if on {
            return Ok(0);
        }
        let mut changed = 0;
        for id in self.zone_nodes[zone].clone() {
            if let Some(m) = self.meta.get_mut(&id)
                && m.drain
                    .is_some_and(|(c, _)| c == DrainCause::ZoneEvacuation)
            {
                m.drain = None;
                snapshot.set_cordoned(id, false)?;
                changed += 1;
            }
        }
        let serving = self.zone_nodes[zone].len() as u32;
        for _ in serving..self.sizes[zone] {
            self.create(snapshot, zone, now)?;
            changed += 1;
        }
        Ok(changed)
    }

    /// Nodes live in a zone (not failed).
    pub fn live_nodes(&self, snapshot: &Snapshot) -> u32 {
        self.zone_nodes
            .iter()
            .flatten()
            .filter(|id| {
                snapshot
                    .node(**id)
                    .is_some_and(|n| n.phase != NodePhase::Failed)
            })
            .count() as u32
    }

    /// One pass of the fleet's controllers at `now` (the instant `clock`), with the booked
    /// rooms `waiting` for a node.
    pub fn tick(
        &mut self,
        snapshot: &mut Snapshot,
        now: TimeOfDay,
        clock: Timestamp,
        waiting: &[RoomRequest],
    ) -> Result<Tick, ApplyError> {
        let mut tick = Tick::default();
        let elapsed = self
            .last_tick
            .map_or(0, |t| now.seconds().saturating_sub(t.seconds()));
        self.last_tick = Some(now);
        self.account_surge(snapshot, elapsed);
        self.start_nodes(snapshot, now)?;
        self.drains(snapshot, now, &mut tick)?;
        self.autoscale(snapshot, clock, waiting);
        self.plan(snapshot, now)?;
        if self.rollout.started.is_some()
            && self.rollout.finished.is_none()
            && !self.any_old(snapshot)
        {
            self.rollout.finished = Some(now);
        }
        Ok(tick)
    }

    fn account_surge(&mut self, snapshot: &Snapshot, elapsed: u32) {
        if self.rollout.started.is_none() || self.rollout.finished.is_some() {
            return;
        }
        let size: u32 = self.sizes.iter().sum();
        let extra = self.live_nodes(snapshot).saturating_sub(size);
        self.rollout.surge_node_seconds += u64::from(extra) * u64::from(elapsed);
    }

    fn any_old(&self, snapshot: &Snapshot) -> bool {
        self.zone_nodes.iter().flatten().any(|id| {
            self.meta.get(id).is_some_and(|m| m.revision != self.target)
                && snapshot
                    .node(*id)
                    .is_some_and(|n| n.phase != NodePhase::Failed)
        })
    }

    fn start_nodes(&mut self, snapshot: &mut Snapshot, now: TimeOfDay) -> Result<(), ApplyError> {
        for (id, m) in &mut self.meta {
            if m.ready_at.is_some_and(|t| t <= now) {
                m.ready_at = None;
                // A node whose zone failed while it started stays failed until the zone
                // recovers.
                if snapshot
                    .node(*id)
                    .is_some_and(|n| n.phase == NodePhase::Starting)
                {
                    snapshot.set_phase(*id, NodePhase::Ready)?;
                }
            }
        }
        Ok(())
    }

    /// Empty draining nodes go; at a drain's deadline its rooms move live.
    fn drains(
        &mut self,
        snapshot: &mut Snapshot,
        now: TimeOfDay,
        tick: &mut Tick,
    ) -> Result<(), ApplyError> {
        let draining: BTreeSet<NodeId> = self
            .meta
            .iter()
            .filter(|(_, m)| m.drain.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in draining {
            let Some((_, deadline)) = self.meta.get(&id).and_then(|m| m.drain) else {
                continue;
            };
            if snapshot.node(id).is_some_and(|n| n.rooms > 0) && deadline <= now {
                let plan = migrate(snapshot, &[id]);
                for (_, from, to) in &plan.moved {
                    tick.migrated += 1;
                    let zone = |n: NodeId| snapshot.node(n).map(|s| s.zone);
                    tick.migrated_same_zone += u32::from(zone(*from) == zone(*to));
                }
                for action in &plan.actions {
                    snapshot.apply(action)?;
                }
                tick.stranded
                    .extend(plan.stranded.into_iter().map(|(room, _)| room));
            }
            if snapshot.node(id).is_some_and(|n| n.rooms == 0) {
                snapshot.remove_node(id)?;
                if let Some(m) = self.meta.remove(&id) {
                    self.indexes[m.zone].remove(&m.index);
                }
                self.deleted += 1;
                for zone in &mut self.zone_nodes {
                    zone.retain(|n| *n != id);
                }
            }
        }
        Ok(())
    }

    fn drain(
        &mut self,
        snapshot: &mut Snapshot,
        id: NodeId,
        cause: DrainCause,
        now: TimeOfDay,
    ) -> Result<(), ApplyError> {
        if let Some(m) = self.meta.get_mut(&id) {
            m.drain = Some((
                cause,
                now.plus(self.settings.drain_deadline_minutes.value * 60),
            ));
        }
        snapshot.set_cordoned(id, true)
    }

    fn create(
        &mut self,
        snapshot: &mut Snapshot,
        zone: usize,
        now: TimeOfDay,
    ) -> Result<NodeId, ApplyError> {
        let zone_name = snapshot
            .zone_name(crate::core::ZoneId(zone as u8))
            .to_string();
        // One of the first len+1 indexes is free.
        let used = &self.indexes[zone];
        let index = (0..=used.len() as u32)
            .find(|i| !used.contains(i))
            .unwrap_or(0);
        self.indexes[zone].insert(index);
        let name = node_name(&zone_name, index);
        let capacity = snapshot
            .node(
                self.zone_nodes
                    .iter()
                    .flatten()
                    .next()
                    .copied()
                    .unwrap_or(NodeId(0)),
            )
            .map_or(0, |n| n.capacity);
        let info = NodeInfo::ready(name, zone_name, capacity).in_phase(NodePhase::Starting);
        let id = snapshot.add_node(info)?;
        self.zone_nodes[zone].push(id);
        self.created += 1;
        let ready_at = now.plus(self.settings.node_startup_seconds.value);
        self.meta.insert(
            id,
            Meta {
                revision: self.target,
                zone,
                index,
                ready_at: Some(ready_at),
                drain: None,
            },
        );
        Ok(id)
    }

    /// The fleet's nodes as the fleet controller sees them.
    fn views(&self, snapshot: &Snapshot) -> Vec<NodeView> {
        self.zone_nodes
            .iter()
            .enumerate()
            .flat_map(|(zone, ids)| ids.iter().map(move |id| (zone, id)))
            .filter_map(|(zone, id)| {
                let (n, m) = (snapshot.node(*id)?, self.meta.get(id)?);
                Some(NodeView {
                    name: n.name.to_string(),
                    zone: Some(zone),
                    phase: n.phase,
                    drain: m.drain.map(|(c, _)| c),
                    rooms: n.rooms,
                    created: None,
                    current: m.revision == self.target,
                })
            })
            .collect()
    }

    /// The autoscaler's sizes for each zone, if the scenario has one.
    fn autoscale(&mut self, snapshot: &Snapshot, clock: Timestamp, waiting: &[RoomRequest]) {
        let Some(policy) = &self.policy else {
            return;
        };
        let views = self.views(snapshot);
        let slots_of = |name: &str| {
            let node = snapshot.node(snapshot.node_id(name)?)?;
            Some(NodeSlots {
                free: node.free(),
                used: node.load.used().min(node.capacity),
                schedulable: node.schedulable(),
            })
        };
        let loads = zone_loads(self.zone_nodes.len(), &views, slots_of, &self.evacuated);
        let scales = decide(
            policy,
            &Inputs {
                now: clock,
                zones: &loads,
                waiting,
                memory: &self.memory,
            },
        );
        self.decided = scales
            .iter()
            .map(|s| s.reason.map(|_| s.desired > s.current))
            .collect();
        for (z, scale) in scales.iter().enumerate() {
            self.memory[z] = ZoneMemory {
                surplus_since: scale.surplus_since,
                last_scale_down: scale.last_scale_down,
            };
            self.sizes[z] = scale.desired;
        }
    }

    /// Takes every zone towards its size (see [`plan_with`]).
    fn plan(&mut self, snapshot: &mut Snapshot, now: TimeOfDay) -> Result<(), ApplyError> {
        let views = self.views(snapshot);
        // A zone whose every node failed is down: no node is created there (its pods could
        // not start), as the autoscaler's loads say.
        let down: Vec<bool> = zone_loads(self.zone_nodes.len(), &views, |_| None, &self.evacuated)
            .iter()
            .map(|l| l.down)
            .collect();
        let count = |n: u32| IntOrString::Int(i32::try_from(n).unwrap_or(i32::MAX));
        let levers = Levers {
            budgets: self
                .sizes
                .iter()
                .map(|size| {
                    Budget::resolve(
                        &count(self.settings.max_surge.value),
                        &count(self.settings.max_unavailable.value),
                        *size,
                    )
                })
                .collect(),
            halted: false,
            evacuated: self.evacuated.clone(),
        };
        let sizes = self.sizes.clone();
        // A decision counts as a scale event once the plan acts on it in its zone.
        let mut acted = vec![false; sizes.len()];
        let zone_of = |s: &Snapshot, id: NodeId| s.node(id).map(|n| usize::from(n.zone.0));
        for action in plan_with(&sizes, &views, &levers) {
            match action {
                FleetAction::Create { zone } => {
                    if !down.get(zone).copied().unwrap_or(false) {
                        self.create(snapshot, zone, now)?;
                        acted[zone] |= self.decided.get(zone) == Some(&Some(true));
                    }
                }
                FleetAction::Drain { node, cause } => {
                    if let Some(id) = snapshot.node_id(&node) {
                        self.drain(snapshot, id, cause, now)?;
                        if let Some(z) = zone_of(snapshot, id) {
                            acted[z] |= cause == DrainCause::ScaleDown
                                && self.decided.get(z) == Some(&Some(false));
                        }
                    }
                }
                FleetAction::Undrain { node } => {
                    if let Some(id) = snapshot.node_id(&node) {
                        if let Some(z) = zone_of(snapshot, id) {
                            acted[z] |= self.decided.get(z) == Some(&Some(true));
                        }
                        if let Some(m) = self.meta.get_mut(&id) {
                            m.drain = None;
                        }
                        snapshot.set_cordoned(id, false)?;
                    }
                }
                // Drained nodes go in `drains`; failed ones come back with their zone.
                FleetAction::Delete { .. } => {}
            }
        }
        for (z, acted) in acted.into_iter().enumerate() {
            match self.decided.get(z) {
                Some(Some(true)) if acted => self.scaling.ups += 1,
                Some(Some(false)) if acted => self.scaling.downs += 1,
                _ => {}
            }
        }
        Ok(())
    }
}
