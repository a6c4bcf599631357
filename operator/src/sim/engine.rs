//! The simulation loop: the imperative shell around the decision core, with a simulated
//! clock and a simulated cluster.
//!
//! At each instant, meetings that end are released first, then the scenario's events happen,
//! then new meetings ask for rooms, then the fleet's use is sampled. Every placement goes
//! through [`crate::core::place`] and every failure through [`crate::core::failover`], the same
//! functions the controllers call.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use ruche_crds::NodePhase;

use super::clock::TimeOfDay;
use super::lifecycle::Lifecycle;
use super::outcome::{EventOutcome, Outcome, Sample, Timing, ZoneSample};
use super::scenario::{EventKind, Scenario, node_name};
use super::workload::{Meeting, meetings};
use crate::core::{
    Action, FleetRules, NodeId, NodeInfo, RoomKey, RoomRequest, Snapshot, Unschedulable, ZoneId,
    ZoneRules, failover, place,
};

/// A simulation that cannot run (the scenario passed its checks but the core refused it).
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The fleet's rules are unusable.
    #[error("fleet: {0}")]
    Rules(#[from] crate::core::snapshot::RulesError),
    /// A change was refused by the snapshot.
    #[error("at {at}: {source}")]
    Apply {
        /// When.
        at: TimeOfDay,
        /// What.
        source: crate::core::ApplyError,
    },
    /// A zone choice names a zone the fleet does not have.
    #[error("workload zones: {0}")]
    Zones(#[from] crate::core::request::UnknownZones),
    /// The autoscaling settings are unusable.
    #[error("autoscaling: {0}")]
    Autoscaling(#[from] crate::core::autoscaling::PolicyError),
}

/// What happens next, in the order same-time steps are taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    End,
    Event,
    Tick,
    Arrival,
    Sample,
}

/// How often the simulated controllers look at drains and rollouts.
const TICK_SECONDS: u32 = 30;

/// Runs a scenario to the end of its day.
pub fn run(scenario: &Scenario) -> Result<(Outcome, Timing), SimError> {
    Simulation::new(scenario)?.run()
}

struct Simulation<'a> {
    scenario: &'a Scenario,
    snapshot: Snapshot,
    /// The fleet's nodes over the day (node ids by zone, drains, rollouts).
    fleet: Lifecycle,
    /// One request per workload zone choice, plus the "anywhere" request last.
    requests: Vec<RoomRequest>,
    /// One request per booking.
    booking_requests: Vec<RoomRequest>,
    /// Booked meetings held ahead of their start that no node could take yet.
    waiting: Vec<(Meeting, RoomRequest)>,
    /// Meetings placed, by when they end.
    ends: BinaryHeap<Reverse<(TimeOfDay, u32)>>,
    /// How long before its start a booked meeting is held, when bookings are known.
    lead: Option<u32>,
    outcome: Outcome,
    decision_time: Duration,
    decisions: u64,
}

impl<'a> Simulation<'a> {
    fn new(scenario: &'a Scenario) -> Result<Self, SimError> {
        let fleet = &scenario.fleet;
        let policy = scenario.policy()?;
        let rules = FleetRules {
            strategy: fleet.strategy,
            zones: match &policy {
                Some(p) => p.zones.clone(),
                None => fleet
                    .zones
                    .iter()
                    .map(|z| ZoneRules {
                        name: z.name.value.clone(),
                        min_nodes: z.nodes.value,
                        max_nodes: z.nodes.value,
                    })
                    .collect(),
            },
        };
        let mut snapshot = Snapshot::new(rules.clone())?;
        let mut zone_nodes = Vec::new();
        for (zone, bounds) in fleet.zones.iter().zip(&rules.zones) {
            let mut ids = Vec::new();
            // An autoscaled fleet starts the day at its minimum; a fixed one at its size.
            let count = if policy.is_some() {
                bounds.min_nodes
            } else {
                zone.nodes.value
            };
            for i in 0..count {
                let info = NodeInfo::ready(
                    node_name(&zone.name.value, i),
                    zone.name.value.clone(),
                    fleet.node_capacity.value,
                );
                ids.push(snapshot.add_node(info).map_err(|source| SimError::Apply {
                    at: scenario.day.start.value,
                    source,
                })?);
            }
            zone_nodes.push(ids);
        }
        let mut requests = Vec::new();
        for choice in &scenario.workload.zones {
            let allowed: Vec<&str> = choice.allowed.iter().map(|z| z.value.as_str()).collect();
            let preferred: Vec<&str> = choice.preferred.iter().map(|z| z.value.as_str()).collect();
            requests.push(snapshot.request(0, &allowed, &preferred)?);
        }
        requests.push(snapshot.request::<&str>(0, &[], &[])?);
        let mut booking_requests = Vec::new();
        for b in &scenario.workload.bookings {
            let allowed: Vec<&str> = b.allowed.iter().map(|z| z.value.as_str()).collect();
            let preferred: Vec<&str> = b.preferred.iter().map(|z| z.value.as_str()).collect();
            booking_requests.push(snapshot.request(b.slots.value, &allowed, &preferred)?);
        }
        let lead = scenario
            .autoscaling
            .as_ref()
            .filter(|a| a.use_bookings)
            .map(|a| a.lead_minutes.value * 60);
        let outcome = Outcome::new(scenario);
        Ok(Self {
            scenario,
            snapshot,
            fleet: Lifecycle::new(scenario.rollout.clone(), zone_nodes, policy),
            requests,
            booking_requests,
            waiting: Vec::new(),
            ends: BinaryHeap::new(),
            lead,
            outcome,
            decision_time: Duration::ZERO,
            decisions: 0,
        })
    }

    fn run(mut self) -> Result<(Outcome, Timing), SimError> {
        let mut meetings = meetings(self.scenario);
        // A booked meeting, when bookings are known, asks for its room at its lead time.
        meetings.sort_by_key(|m| (self.asks_at(m), m.id));
        let mut events: Vec<_> = self.scenario.events.iter().collect();
        events.sort_by_key(|e| e.at.value);
        let (mut next_meeting, mut next_event) = (0, 0);
        let mut next_sample = self.scenario.day.start.value;
        // Scenarios without drains, rollouts or autoscaling keep the fleet as it is: no tick
        // to take.
        let lifecycle = self.scenario.autoscaling.is_some()
            || events.iter().any(|e| {
                matches!(
                    e.kind.value,
                    EventKind::ZoneEvacuation | EventKind::ZoneReturn | EventKind::RollingUpgrade
                )
            });
        let mut next_tick = lifecycle.then_some(self.scenario.day.start.value);
        let sample_every = self.scenario.sample_minutes.value * 60;
        let end_of_day = self.scenario.day.end.value;
        loop {
            let candidates = [
                self.ends.peek().map(|Reverse((t, _))| (*t, Step::End)),
                events.get(next_event).map(|e| (e.at.value, Step::Event)),
                next_tick.map(|t| (t, Step::Tick)),
                meetings
                    .get(next_meeting)
                    .map(|m| (self.asks_at(m), Step::Arrival)),
                (next_sample <= end_of_day).then_some((next_sample, Step::Sample)),
            ];
            let Some((now, step)) = candidates.into_iter().flatten().min() else {
                break;
            };
            if now > end_of_day {
                break;
            }
            self.fleet.account(now);
            match step {
                Step::End => {
                    if let Some(Reverse((_, id))) = self.ends.pop() {
                        self.end(now, id)?;
                    }
                }
                Step::Event => {
                    self.event(now, next_event)?;
                    next_event += 1;
                }
                Step::Tick => {
                    self.tick(now)?;
                    next_tick = Some(now.plus(TICK_SECONDS));
                }
                Step::Arrival => {
                    let meeting = meetings[next_meeting];
                    next_meeting += 1;
                    self.arrive(now, &meeting)?;
                }
                Step::Sample => {
                    self.sample(now);
                    next_sample = next_sample.plus(sample_every);
                }
            }
        }
        self.fleet.account(end_of_day);
        let sizing = &mut self.outcome.sizing;
        sizing.node_hours = self
            .fleet
            .node_seconds
            .iter()
            .map(|s| *s as f64 / 3600.0)
            .collect();
        sizing.scale_ups = self.fleet.scaling.ups;
        sizing.scale_downs = self.fleet.scaling.downs;
        self.outcome.finish();
        let timing = Timing {
            decisions: self.decisions,
            decision_seconds: self.decision_time.as_secs_f64(),
        };
        Ok((self.outcome, timing))
    }

    fn apply(&mut self, now: TimeOfDay, action: &Action) -> Result<(), SimError> {
        self.snapshot
            .apply(action)
            .map_err(|source| SimError::Apply { at: now, source })
    }

    /// When a meeting asks for its room: a booked one at its lead time when bookings are
    /// known (not before the day starts), any other when it starts.
    fn asks_at(&self, meeting: &Meeting) -> TimeOfDay {
        match (meeting.booking, self.lead) {
            (Some(_), Some(lead)) => TimeOfDay(
                meeting
                    .start
                    .seconds()
                    .saturating_sub(lead)
                    .max(self.scenario.day.start.value.seconds()),
            ),
            _ => meeting.start,
        }
    }

    fn request_of(&self, meeting: &Meeting) -> RoomRequest {
        let base = match meeting.booking {
            Some(b) => self.booking_requests[b],
            None => self.requests[meeting.zones.unwrap_or(self.requests.len() - 1)],
        };
        RoomRequest {
            slots: meeting.slots,
            ..base
        }
    }

    fn arrive(&mut self, now: TimeOfDay, meeting: &Meeting) -> Result<(), SimError> {
        let request = self.request_of(meeting);
        self.outcome.requested += 1;
        let held = meeting.booking.is_some() && self.lead.is_some();
        if held {
            self.outcome.sizing.booked_held += 1;
        }
        if let Some(why) = self.try_place(now, meeting, request)? {
            if held && now < meeting.start {
                // Held ahead: it waits for a node (the autoscaler counts it) until it starts.
                self.waiting.push((*meeting, request));
            } else {
                self.refuse(now, meeting, &why);
            }
        }
        Ok(())
    }

    /// Places a meeting if a node can take it (its room then lives until the meeting ends),
    /// or says why none can.
    fn try_place(
        &mut self,
        now: TimeOfDay,
        meeting: &Meeting,
        request: RoomRequest,
    ) -> Result<Option<Unschedulable>, SimError> {
        let started = Instant::now();
        let decision = place(&self.snapshot, &request);
        self.decision_time += started.elapsed();
        self.decisions += 1;
        match decision {
            Ok(p) => {
                let free = self
                    .snapshot
                    .node(p.node)
                    .map_or(0, crate::core::NodeState::free);
                if free < meeting.slots {
                    self.outcome.capacity_violations += 1;
                }
                let room = room_key(meeting.id);
                self.apply(
                    now,
                    &Action::Assign {
                        room,
                        node: p.node,
                        request,
                    },
                )?;
                self.outcome.placed += 1;
                self.ends
                    .push(Reverse((meeting.start.plus(meeting.duration), meeting.id)));
                Ok(None)
            }
            Err(why) => Ok(Some(why)),
        }
    }

    /// Counts a meeting no node could take, with why.
    fn refuse(&mut self, now: TimeOfDay, meeting: &Meeting, why: &Unschedulable) {
        let example = format!(
            "{now} room-{:05} ({} slots): {why}",
            meeting.id, meeting.slots
        );
        self.outcome
            .refused
            .add(why.reason(), meeting.slots, example);
        if now <= self.outcome.sizing.ramp_end {
            self.outcome.sizing.refused_in_ramp += 1;
        }
        if meeting.booking.is_some() {
            self.outcome.sizing.booked_refused += 1;
        }
    }

    /// Held booked meetings try again; those whose start has come without a node are refused.
    fn retry_waiting(&mut self, now: TimeOfDay) -> Result<(), SimError> {
        let waiting = std::mem::take(&mut self.waiting);
        for (meeting, request) in waiting {
            let Some(why) = self.try_place(now, &meeting, request)? else {
                continue;
            };
            if now >= meeting.start {
                self.refuse(now, &meeting, &why);
            } else {
                self.waiting.push((meeting, request));
            }
        }
        Ok(())
    }

    fn end(&mut self, now: TimeOfDay, id: u32) -> Result<(), SimError> {
        let room = room_key(id);
        // A room cut by a failure was already released.
        if self.snapshot.room(&room).is_some() {
            self.apply(now, &Action::Release { room })?;
            self.outcome.ended += 1;
        }
        Ok(())
    }

    /// One pass of the simulated controllers over drains, rollouts and autoscaling.
    fn tick(&mut self, now: TimeOfDay) -> Result<(), SimError> {
        self.retry_waiting(now)?;
        let started = Instant::now();
        let waiting: Vec<RoomRequest> = self.waiting.iter().map(|(_, r)| *r).collect();
        let clock = self.scenario.day.instant(now);
        let tick = self
            .fleet
            .tick(&mut self.snapshot, now, clock, &waiting)
            .map_err(|source| SimError::Apply { at: now, source })?;
        self.decision_time += started.elapsed();
        let l = &mut self.outcome.lifecycle;
        l.migrated += tick.migrated;
        l.migrated_same_zone += tick.migrated_same_zone;
        l.nodes_created = self.fleet.created;
        l.nodes_deleted = self.fleet.deleted;
        l.stranded
            .extend(tick.stranded.iter().map(ToString::to_string));
        l.rollout_started = self.fleet.rollout.started;
        l.rollout_finished = self.fleet.rollout.finished;
        l.surge_node_hours = self.fleet.rollout.surge_node_seconds as f64 / 3600.0;
        Ok(())
    }

    fn event(&mut self, now: TimeOfDay, index: usize) -> Result<(), SimError> {
        let event = &self.scenario.events[index];
        let lifecycle = match (event.kind.value, event.zone.as_ref()) {
            (EventKind::RollingUpgrade, _) => {
                self.fleet.start_rollout(now);
                let nodes = self.fleet.live_nodes(&self.snapshot);
                Some((
                    "rolling upgrade to a new revision starts".to_string(),
                    nodes,
                ))
            }
            (kind @ (EventKind::ZoneEvacuation | EventKind::ZoneReturn), Some(z)) => {
                let on = kind == EventKind::ZoneEvacuation;
                let zone = self
                    .snapshot
                    .zone_id(&z.value)
                    .map_or(0, |id| id.0 as usize);
                let nodes = self
                    .fleet
                    .evacuate(&mut self.snapshot, zone, on, now)
                    .map_err(|source| SimError::Apply { at: now, source })?;
                let nodes = if on {
                    self.fleet.zone_nodes[zone].len() as u32
                } else {
                    nodes
                };
                let what = if on { "is evacuated" } else { "returns" };
                Some((format!("zone {} {what}", z.value), nodes))
            }
            _ => None,
        };
        if let Some((what, nodes)) = lifecycle {
            self.outcome.events.push(EventOutcome {
                at: now,
                what,
                nodes,
                ..EventOutcome::default()
            });
            return Ok(());
        }
        let zone = event
            .zone
            .as_ref()
            .and_then(|z| self.snapshot.zone_id(&z.value));
        let node = event
            .node
            .as_ref()
            .and_then(|n| self.snapshot.node_id(&n.value));
        let (nodes, phase): (Vec<NodeId>, NodePhase) = match (event.kind.value, zone, node) {
            (EventKind::ZoneFailure, Some(z), _) => (
                self.fleet.zone_nodes[z.0 as usize].clone(),
                NodePhase::Failed,
            ),
            (EventKind::ZoneRecovery, Some(z), _) => (
                self.fleet.zone_nodes[z.0 as usize].clone(),
                NodePhase::Ready,
            ),
            (EventKind::NodeFailure, _, Some(n)) => (vec![n], NodePhase::Failed),
            (EventKind::NodeRecovery, _, Some(n)) => (vec![n], NodePhase::Ready),
            // The scenario's checks make these unreachable; nothing to do if they happen.
            _ => (Vec::new(), NodePhase::Ready),
        };
        let target = event
            .zone
            .as_ref()
            .map(|z| format!("zone {}", z.value))
            .or_else(|| event.node.as_ref().map(|n| format!("node {}", n.value)))
            .unwrap_or_default();
        let changed: Vec<NodeId> = nodes
            .into_iter()
            .filter(|n| self.snapshot.node(*n).is_some_and(|s| s.phase != phase))
            .collect();
        for n in &changed {
            self.snapshot
                .set_phase(*n, phase)
                .map_err(|source| SimError::Apply { at: now, source })?;
        }
        let what = if event.node.is_some() && node.is_none() {
            // Replaced meanwhile by a rolling upgrade under another name: nothing to fail.
            "is not in the fleet at that time"
        } else if phase == NodePhase::Failed {
            "fails"
        } else {
            "recovers"
        };
        let mut record = EventOutcome {
            at: now,
            what: format!("{target} {what}"),
            nodes: changed.len() as u32,
            ..EventOutcome::default()
        };
        if phase == NodePhase::Failed {
            let started = Instant::now();
            let plan = failover(&self.snapshot, &changed);
            self.decision_time += started.elapsed();
            self.decisions += (plan.moved.len() + plan.stranded.len()) as u64;
            for (_, from, to) in &plan.moved {
                let same = self.snapshot.node(*from).map(|n| n.zone)
                    == self.snapshot.node(*to).map(|n| n.zone);
                record.moved += 1;
                record.moved_same_zone += u32::from(same);
            }
            for (room, why) in &plan.stranded {
                record.cut += 1;
                record.cut_slots += self.snapshot.room(room).map_or(0, |r| r.request.slots);
                if record.example.is_none() {
                    record.example = Some(format!("{room}: {why}"));
                }
            }
            for action in &plan.actions {
                self.apply(now, action)?;
            }
        }
        self.outcome.events.push(record);
        Ok(())
    }

    fn sample(&mut self, now: TimeOfDay) {
        let zones = (0..self.fleet.zone_nodes.len())
            .map(|z| {
                let usage = self.snapshot.zone_use(ZoneId(z as u8));
                let rooms = self.fleet.zone_nodes[z]
                    .iter()
                    .filter_map(|n| self.snapshot.node(*n))
                    .filter(|n| n.phase != NodePhase::Failed)
                    .map(|n| n.rooms)
                    .sum();
                ZoneSample {
                    used: usage.used,
                    capacity: usage.capacity,
                    rooms,
                    nodes: self.fleet.zone_nodes[z].len() as u32,
                }
            })
            .collect();
        self.outcome.samples.push(Sample { at: now, zones });
    }
}

fn room_key(id: u32) -> RoomKey {
    RoomKey::new(format!("room-{id:05}"))
}
