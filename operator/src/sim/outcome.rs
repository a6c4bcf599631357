//! What a simulated day produced. Everything here follows from the scenario and its seed;
//! wall-clock figures live apart, in [`Timing`], so two runs can be compared for equality.

use std::collections::BTreeMap;

use ruche_crds::PlacementStrategy;
use serde::Serialize;

use super::clock::TimeOfDay;
use super::scenario::Scenario;

/// The deterministic result of a simulated day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    /// Scenario name.
    pub name: String,
    /// Seed used.
    pub seed: u64,
    /// First simulated minute.
    pub start: TimeOfDay,
    /// Last simulated minute.
    pub end: TimeOfDay,
    /// Placement strategy.
    pub strategy: PlacementStrategy,
    /// Slots per node.
    pub node_capacity: u32,
    /// Zones with their node counts.
    pub zones: Vec<(String, u32)>,
    /// Meetings that asked for a room.
    pub requested: u32,
    /// Meetings placed when they asked.
    pub placed: u32,
    /// Meetings that ended on their node.
    pub ended: u32,
    /// Meetings refused, by reason.
    pub refused: Refusals,
    /// Placements that would have exceeded a node's free slots (must be 0).
    pub capacity_violations: u32,
    /// Failures and recoveries, with the rooms they moved or cut.
    pub events: Vec<EventOutcome>,
    /// The fleet's use over the day.
    pub samples: Vec<Sample>,
    /// Per-zone summary of the samples.
    pub zone_stats: Vec<ZoneStats>,
    /// What drains, evacuations and rolling upgrades did.
    pub lifecycle: LifecycleOutcome,
    /// The fleet's size over the day, and what the autoscaler did.
    pub sizing: SizingOutcome,
}

/// The fleet's size over the day.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SizingOutcome {
    /// Whether an autoscaler sized the fleet (else each zone ran its `nodes`).
    pub autoscaled: bool,
    /// Node-hours run per zone (nodes in any phase), in fleet order.
    pub node_hours: Vec<f64>,
    /// Autoscaler decisions that grew a zone.
    pub scale_ups: u32,
    /// Autoscaler decisions that shrank a zone (a drain each).
    pub scale_downs: u32,
    /// End of the morning ramp: the first time the arrival rate peaks.
    pub ramp_end: TimeOfDay,
    /// Meetings refused from the start of the day to the end of the ramp.
    pub refused_in_ramp: u32,
    /// Booked meetings held ahead of their start (with the autoscaler's bookings).
    pub booked_held: u32,
    /// Booked meetings refused.
    pub booked_refused: u32,
}

impl SizingOutcome {
    /// Node-hours over every zone.
    pub fn total_node_hours(&self) -> f64 {
        self.node_hours.iter().sum()
    }
}

/// What drains, zone evacuations and rolling upgrades did over the day.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LifecycleOutcome {
    /// Rooms moved live off draining nodes (their participants told to rejoin elsewhere).
    pub migrated: u32,
    /// Of which within their zone.
    pub migrated_same_zone: u32,
    /// Rooms a migration could not move, which stayed live on their draining node (by name,
    /// each once).
    pub stranded: std::collections::BTreeSet<String>,
    /// Nodes created (rolling upgrades, zones coming back).
    pub nodes_created: u32,
    /// Nodes deleted once drained.
    pub nodes_deleted: u32,
    /// When the rolling upgrade started.
    pub rollout_started: Option<TimeOfDay>,
    /// When its last old node went.
    pub rollout_finished: Option<TimeOfDay>,
    /// Node-hours run above the fleet's own size while it lasted.
    pub surge_node_hours: f64,
}

/// Refusals tallied by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Refusals {
    /// Reason (the room condition's reason) to tally.
    pub by_reason: BTreeMap<&'static str, Tally>,
}

impl Refusals {
    /// Counts one refused room, keeping the first refusal of each reason as its example.
    pub fn add(&mut self, reason: &'static str, slots: u32, example: String) {
        let entry = self.by_reason.entry(reason).or_default();
        entry.rooms += 1;
        entry.slots += u64::from(slots);
        if entry.example.is_empty() {
            entry.example = example;
        }
    }

    /// Rooms refused for any reason.
    pub fn rooms(&self) -> u32 {
        self.by_reason.values().map(|t| t.rooms).sum()
    }
}

/// Rooms refused for one reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Tally {
    /// Rooms.
    pub rooms: u32,
    /// Their slots.
    pub slots: u64,
    /// The first such refusal, in full.
    pub example: String,
}

/// A failure or recovery and what it did to rooms.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EventOutcome {
    /// When.
    pub at: TimeOfDay,
    /// What happened (`zone fr-par-2 fails`).
    pub what: String,
    /// Nodes whose state changed.
    pub nodes: u32,
    /// Rooms placed again elsewhere.
    pub moved: u32,
    /// Of which in their own zone.
    pub moved_same_zone: u32,
    /// Rooms no node could take: cut.
    pub cut: u32,
    /// Their slots (participants cut off).
    pub cut_slots: u32,
    /// Why the first cut room could not move.
    pub example: Option<String>,
}

/// The fleet at one instant.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// When.
    pub at: TimeOfDay,
    /// Per zone, in fleet order.
    pub zones: Vec<ZoneSample>,
}

/// One zone at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ZoneSample {
    /// Slots used on schedulable nodes.
    pub used: u64,
    /// Slots of schedulable nodes.
    pub capacity: u64,
    /// Rooms on live nodes.
    pub rooms: u32,
    /// Nodes in the zone, any phase.
    pub nodes: u32,
}

/// One zone over the day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ZoneStats {
    /// Zone name.
    pub name: String,
    /// Highest share of slots used, in percent.
    pub peak_percent: f64,
    /// When it was reached.
    pub peak_at: TimeOfDay,
    /// Most slots used at once.
    pub peak_slots: u64,
    /// Mean share of slots used over samples where the zone had capacity, in percent.
    pub mean_percent: f64,
    /// Most rooms at once.
    pub peak_rooms: u32,
}

/// Wall-clock cost of the decisions, which varies from run to run and machine to machine.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Timing {
    /// Placement decisions taken (arrivals and failover re-placements).
    pub decisions: u64,
    /// Seconds spent in the decision core.
    pub decision_seconds: f64,
}

impl Timing {
    /// Decisions per second of core time.
    pub fn per_second(&self) -> f64 {
        if self.decision_seconds > 0.0 {
            self.decisions as f64 / self.decision_seconds
        } else {
            0.0
        }
    }
}

impl Outcome {
    /// An empty outcome for a scenario.
    pub fn new(scenario: &Scenario) -> Self {
        Self {
            name: scenario.name.clone(),
            seed: scenario.seed,
            start: scenario.day.start.value,
            end: scenario.day.end.value,
            strategy: scenario.fleet.strategy,
            node_capacity: scenario.fleet.node_capacity.value,
            zones: scenario
                .fleet
                .zones
                .iter()
                .map(|z| (z.name.value.clone(), z.nodes.value))
                .collect(),
            requested: 0,
            placed: 0,
            ended: 0,
            refused: Refusals::default(),
            capacity_violations: 0,
            events: Vec::new(),
            samples: Vec::new(),
            zone_stats: Vec::new(),
            lifecycle: LifecycleOutcome::default(),
            sizing: SizingOutcome {
                autoscaled: scenario.autoscaling.is_some(),
                ramp_end: ramp_end(scenario),
                ..SizingOutcome::default()
            },
        }
    }

    /// Rooms moved by all failures.
    pub fn moved(&self) -> u32 {
        self.events.iter().map(|e| e.moved).sum()
    }

    /// Rooms cut by all failures.
    pub fn cut(&self) -> u32 {
        self.events.iter().map(|e| e.cut).sum()
    }

    /// Computes the per-zone summary from the samples.
    pub fn finish(&mut self) {
        self.zone_stats = self
            .zones
            .iter()
            .enumerate()
            .map(|(z, (name, _))| {
                let mut stats = ZoneStats {
                    name: name.clone(),
                    peak_percent: 0.0,
                    peak_at: self.start,
                    peak_slots: 0,
                    mean_percent: 0.0,
                    peak_rooms: 0,
                };
                let (mut sum, mut n) = (0.0, 0u32);
                for s in &self.samples {
                    let zs = s.zones[z];
                    stats.peak_slots = stats.peak_slots.max(zs.used);
                    stats.peak_rooms = stats.peak_rooms.max(zs.rooms);
                    if zs.capacity == 0 {
                        continue;
                    }
                    let pct = 100.0 * zs.used as f64 / zs.capacity as f64;
                    if pct > stats.peak_percent {
                        stats.peak_percent = pct;
                        stats.peak_at = s.at;
                    }
                    sum += pct;
                    n += 1;
                }
                if n > 0 {
                    stats.mean_percent = sum / f64::from(n);
                }
                stats
            })
            .collect();
    }
}

/// The end of the morning ramp: the first arrival point with the day's highest rate.
fn ramp_end(scenario: &Scenario) -> TimeOfDay {
    let arrivals = &scenario.workload.arrivals;
    let peak = arrivals
        .iter()
        .map(|a| a.per_minute.value)
        .fold(0.0, f64::max);
    arrivals
        .iter()
        .find(|a| a.per_minute.value >= peak)
        .map_or(scenario.day.start.value, |a| a.at.value)
}
