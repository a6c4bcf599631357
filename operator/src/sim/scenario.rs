//! Scenario files: the fleet, a day of meetings and the events of that day.
//!
//! A scenario is YAML. Every mistake is reported with the file, line and column, and the
//! path of the field (`workload.sizes[1].slots`), whether it is a YAML or type error (an
//! unknown field, a negative size) or a rule the scenario breaks (an event naming a zone the
//! fleet does not have).

use std::fmt;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use ruche_crds::PlacementStrategy;
use ruche_crds::fleet::{AutoscalingSpec, ScheduleWindow, ZoneSpec};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::clock::TimeOfDay;
use crate::core::autoscaling::{Policy, PolicyError};

/// The scenario bundled with the binary: a ministry's working day.
pub const MINISTRY_DAY: &str = include_str!("../../scenarios/ministry-day.yaml");

/// A second bundled day: a zone evacuated for the afternoon.
pub const ZONE_EVACUATION: &str = include_str!("../../scenarios/zone-evacuation.yaml");

/// A third: plenaries booked ahead, to compare what each sizing policy knows.
pub const BOOKED_PLENARIES: &str = include_str!("../../scenarios/booked-plenaries.yaml");

/// Scenarios bundled with the binary, by name.
pub const BUNDLED: &[(&str, &str)] = &[
    ("ministry-day", MINISTRY_DAY),
    ("zone-evacuation", ZONE_EVACUATION),
    ("booked-plenaries", BOOKED_PLENARIES),
];

/// A simulated day.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Scenario {
    /// Short name, used in the report and the chart.
    pub name: String,
    /// What the scenario represents.
    #[serde(default)]
    pub description: Option<String>,
    /// Seed of the workload's random draws: the same seed gives the same day.
    pub seed: u64,
    /// Hours simulated.
    pub day: Day,
    /// Minutes between two samples of the fleet's use (chart resolution).
    #[serde(default = "default_sample_minutes")]
    pub sample_minutes: Spanned<u32>,
    /// The fleet.
    pub fleet: Fleet,
    /// Meetings.
    pub workload: Workload,
    /// Failures and recoveries.
    #[serde(default)]
    pub events: Vec<Event>,
    /// How drains, evacuations and rolling upgrades proceed.
    #[serde(default)]
    pub rollout: Rollout,
    /// The fleet's autoscaling; absent, every zone runs its `nodes` all day.
    #[serde(default)]
    pub autoscaling: Option<Autoscaling>,
}

/// The simulated fleet's autoscaling: the fleet's `spec.autoscaling`, with per-zone bounds
/// shared by every zone. Nodes take the rollout's `nodeStartupSeconds` to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Autoscaling {
    /// Free slots each zone keeps: a count or a share of its used slots (`"20%"`).
    pub buffer_slots: IntOrString,
    /// How long a zone must have a node too many before one drains.
    #[serde(default = "ten")]
    pub scale_down_delay_minutes: Spanned<u32>,
    /// Fewest nodes per zone (the day starts with them).
    pub min_nodes: Spanned<u32>,
    /// Most nodes per zone.
    pub max_nodes: Spanned<u32>,
    /// Keep room in the other zones for the rooms of any one zone.
    #[serde(default)]
    pub zone_failure_reserve: bool,
    /// Windows with their own buffer, in local time (`timeZone` defaults to Europe/Paris).
    #[serde(default)]
    pub schedules: Vec<ScheduleWindow>,
    /// Whether booked meetings are known ahead: held from `leadMinutes` before they start,
    /// and counted as demand. Off, they arrive when they start, like any other meeting.
    #[serde(default = "yes")]
    pub use_bookings: bool,
    /// How long before a booked meeting starts its slots are held.
    #[serde(default = "five")]
    pub lead_minutes: Spanned<u32>,
}

fn yes() -> bool {
    true
}

fn five() -> Spanned<u32> {
    spanned(5)
}

fn ten() -> Spanned<u32> {
    spanned(10)
}

/// How the simulated fleet drains and rolls: the fleet's `spec.rollout`, and how long a new
/// node takes to start.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rollout {
    /// Extra nodes per zone during a rolling upgrade.
    #[serde(default = "one")]
    pub max_surge: Spanned<u32>,
    /// Ready nodes per zone that may be missing during a rolling upgrade.
    #[serde(default = "zero")]
    pub max_unavailable: Spanned<u32>,
    /// How long a draining node keeps its rooms before they move live.
    #[serde(default = "thirty")]
    pub drain_deadline_minutes: Spanned<u32>,
    /// From a node's creation to its first room.
    #[serde(default = "sixty")]
    pub node_startup_seconds: Spanned<u32>,
}

impl Default for Rollout {
    fn default() -> Self {
        Self {
            max_surge: one(),
            max_unavailable: zero(),
            drain_deadline_minutes: thirty(),
            node_startup_seconds: sixty(),
        }
    }
}

fn spanned(value: u32) -> Spanned<u32> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}

fn zero() -> Spanned<u32> {
    spanned(0)
}

fn one() -> Spanned<u32> {
    spanned(1)
}

fn thirty() -> Spanned<u32> {
    spanned(30)
}

fn sixty() -> Spanned<u32> {
    spanned(60)
}

fn default_sample_minutes() -> Spanned<u32> {
    Spanned::new(5, Location::UNKNOWN, Location::UNKNOWN)
}

/// Start and end of the simulated day, and which day it is (for schedule windows).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Day {
    /// First minute simulated.
    pub start: Spanned<TimeOfDay>,
    /// Last minute simulated.
    pub end: Spanned<TimeOfDay>,
    /// The date simulated (`2026-03-30`, a Monday, by default).
    #[serde(default = "default_date")]
    pub date: Spanned<String>,
    /// The IANA time zone of the day's times.
    #[serde(default = "default_time_zone")]
    pub time_zone: Spanned<String>,
}

fn default_date() -> Spanned<String> {
    Spanned::new("2026-03-30".into(), Location::UNKNOWN, Location::UNKNOWN)
}

fn default_time_zone() -> Spanned<String> {
    Spanned::new("Europe/Paris".into(), Location::UNKNOWN, Location::UNKNOWN)
}

impl Day {
    /// The instant of a time of this day, in its time zone (checked when the scenario is
    /// read; an unusable date or zone gives the Unix epoch plus the time).
    pub fn instant(&self, at: TimeOfDay) -> Timestamp {
        let midnight = self
            .date
            .value
            .parse::<jiff::civil::Date>()
            .ok()
            .and_then(|d| d.in_tz(&self.time_zone.value).ok())
            .map_or(Timestamp::UNIX_EPOCH, |z| z.timestamp());
        midnight
            .checked_add(jiff::SignedDuration::from_secs(i64::from(at.seconds())))
            .unwrap_or(midnight)
    }
}

/// The simulated fleet: its zones, each with the nodes it runs all day without autoscaling.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Fleet {
    /// Placement strategy.
    #[serde(default)]
    pub strategy: PlacementStrategy,
    /// Participant slots per node.
    pub node_capacity: Spanned<u32>,
    /// Zones.
    pub zones: Vec<Zone>,
}

/// One zone of the simulated fleet.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Zone {
    /// Zone name.
    pub name: Spanned<String>,
    /// Nodes running all day (without autoscaling: a fleet sized for the peak).
    pub nodes: Spanned<u32>,
}

/// Meetings over the day.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Workload {
    /// Meetings started per minute at given times, linear in between (and flat outside).
    pub arrivals: Vec<ArrivalRate>,
    /// Meeting sizes (expected participants) and their weights.
    pub sizes: Vec<SizeChoice>,
    /// Meeting lengths and their weights.
    pub durations: Vec<DurationChoice>,
    /// Zone rules of meetings and their weights; none means every meeting may go anywhere.
    #[serde(default)]
    pub zones: Vec<ZoneChoice>,
    /// Meetings booked ahead (`Room.spec.startTime`), on top of the drawn ones.
    #[serde(default)]
    pub bookings: Vec<Booking>,
}

/// A meeting booked ahead: its start, size and length are known.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Booking {
    /// When it starts.
    pub at: Spanned<TimeOfDay>,
    /// Expected participants.
    pub slots: Spanned<u32>,
    /// How long it lasts.
    pub minutes: Spanned<u32>,
    /// How many such meetings start then (say, one per directorate).
    #[serde(default = "one")]
    pub count: Spanned<u32>,
    /// Zones it may use (any when empty).
    #[serde(default)]
    pub allowed: Vec<Spanned<String>>,
    /// Zones tried first.
    #[serde(default)]
    pub preferred: Vec<Spanned<String>>,
}

/// A point of the arrival-rate curve.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArrivalRate {
    /// Time of day.
    pub at: Spanned<TimeOfDay>,
    /// Meetings starting per minute at that time.
    pub per_minute: Spanned<f64>,
}

/// A meeting size.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeChoice {
    /// Expected participants (slots reserved).
    pub slots: Spanned<u32>,
    /// Relative weight.
    pub weight: Spanned<u32>,
}

/// A meeting length.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationChoice {
    /// Minutes.
    pub minutes: Spanned<u32>,
    /// Relative weight.
    pub weight: Spanned<u32>,
}

/// Zone rules for a share of the meetings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneChoice {
    /// Relative weight.
    pub weight: Spanned<u32>,
    /// Zones allowed; empty means any.
    #[serde(default)]
    pub allowed: Vec<Spanned<String>>,
    /// Zones preferred.
    #[serde(default)]
    pub preferred: Vec<Spanned<String>>,
}

/// Something that happens to the fleet.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// When.
    pub at: Spanned<TimeOfDay>,
    /// What.
    pub kind: Spanned<EventKind>,
    /// The zone, for zone events.
    #[serde(default)]
    pub zone: Option<Spanned<String>>,
    /// The node, for node events (`<zone>-<n>`, n from 1).
    #[serde(default)]
    pub node: Option<Spanned<String>>,
}

/// Kinds of events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    /// A node stops: its rooms are placed again.
    NodeFailure,
    /// A failed node is back (a new pod).
    NodeRecovery,
    /// Every node of a zone stops.
    ZoneFailure,
    /// A failed zone is back.
    ZoneRecovery,
    /// The zone is evacuated: its nodes drain, their rooms move to zones their rules allow.
    ZoneEvacuation,
    /// The zone's evacuation ends.
    ZoneReturn,
    /// A new template revision is rolled across the fleet.
    RollingUpgrade,
}

/// A scenario that cannot be used, located in its file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioError {
    /// File (or bundled scenario) name.
    pub file: String,
    /// 1-based line, 0 if unknown.
    pub line: u64,
    /// 1-based column, 0 if unknown.
    pub column: u64,
    /// Path of the field, such as `events[2].zone`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.path.is_empty() && self.path != "." {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Name of the node `index` (0-based) of `zone` in a simulated fleet.
pub fn node_name(zone: &str, index: u32) -> String {
    format!("{zone}-{:02}", index + 1)
}

impl Scenario {
    /// Parses and checks a scenario. `file` names it in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Self, ScenarioError> {
        let scenario: Self =
            serde_saphyr::from_str(text).map_err(|e| deserialize_error(&e, text, file))?;
        scenario.check(file)?;
        Ok(scenario)
    }

    /// The rules serde cannot check, each failure located in the file.
    fn check(&self, file: &str) -> Result<(), ScenarioError> {
        let checker = Checker {
            scenario: self,
            file,
            zones: self
                .fleet
                .zones
                .iter()
                .map(|z| z.name.value.as_str())
                .collect(),
        };
        checker.day()?;
        checker.fleet()?;
        checker.workload()?;
        checker.bookings()?;
        checker.autoscaling()?;
        checker.events()
    }

    /// The autoscaling policy the scenario asks for, if any: the same settings, read and
    /// checked as the operator reads a fleet's.
    pub fn policy(&self) -> Result<Option<Policy>, PolicyError> {
        let Some(a) = &self.autoscaling else {
            return Ok(None);
        };
        let spec = AutoscalingSpec {
            buffer_slots: a.buffer_slots.clone(),
            scale_down_delay: std::time::Duration::from_secs(
                u64::from(a.scale_down_delay_minutes.value) * 60,
            )
            .into(),
            schedules: a.schedules.clone(),
            zone_failure_reserve: a.zone_failure_reserve,
        };
        let zones: Vec<ZoneSpec> = self
            .fleet
            .zones
            .iter()
            .map(|z| ZoneSpec {
                name: z.name.value.clone(),
                min_nodes: a.min_nodes.value,
                max_nodes: a.max_nodes.value,
                evacuate: false,
            })
            .collect();
        Policy::of_settings(&spec, &zones, self.fleet.node_capacity.value)
    }

    fn node_exists(&self, name: &str) -> bool {
        self.fleet
            .zones
            .iter()
            .any(|z| (0..z.nodes.value).any(|i| node_name(&z.name.value, i) == name))
    }
}

/// Checks a parsed scenario, one section at a time.
struct Checker<'a> {
    scenario: &'a Scenario,
    file: &'a str,
    zones: Vec<&'a str>,
}

impl Checker<'_> {
    fn fail(
        &self,
        at: &Location,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError {
            file: self.file.into(),
            line: at.line(),
            column: at.column(),
            path: path.into(),
            message: message.into(),
        }
    }

    fn day(&self) -> Result<(), ScenarioError> {
        let s = self.scenario;
        if s.day.start.value >= s.day.end.value {
            return Err(self.fail(
                &s.day.end.referenced,
                "day.end",
                format!("the day must end after it starts ({})", s.day.start.value),
            ));
        }
        if s.day.date.value.parse::<jiff::civil::Date>().is_err() {
            return Err(self.fail(
                &s.day.date.referenced,
                "day.date",
                format!("{:?} is not a date such as 2026-03-30", s.day.date.value),
            ));
        }
        if jiff::tz::TimeZone::get(&s.day.time_zone.value).is_err() {
            return Err(self.fail(
                &s.day.time_zone.referenced,
                "day.timeZone",
                format!(
                    "time zone {:?} does not exist (an IANA name such as Europe/Paris)",
                    s.day.time_zone.value
                ),
            ));
        }
        if s.sample_minutes.value == 0 {
            return Err(self.fail(
                &s.sample_minutes.referenced,
                "sampleMinutes",
                "must be at least 1",
            ));
        }
        Ok(())
    }

    fn fleet(&self) -> Result<(), ScenarioError> {
        let fleet = &self.scenario.fleet;
        if fleet.node_capacity.value == 0 {
            return Err(self.fail(
                &fleet.node_capacity.referenced,
                "fleet.nodeCapacity",
                "must be at least 1 slot",
            ));
        }
        if fleet.zones.is_empty() || fleet.zones.len() > 16 {
            return Err(self.fail(
                &Location::UNKNOWN,
                "fleet.zones",
                format!("a fleet has 1 to 16 zones, not {}", fleet.zones.len()),
            ));
        }
        for (i, z) in fleet.zones.iter().enumerate() {
            let path = format!("fleet.zones[{i}].name");
            if z.name.value.is_empty() {
                return Err(self.fail(&z.name.referenced, path, "a zone needs a name"));
            }
            if self.zones[..i].contains(&z.name.value.as_str()) {
                return Err(self.fail(
                    &z.name.referenced,
                    path,
                    format!("zone `{}` is listed twice", z.name.value),
                ));
            }
        }
        Ok(())
    }

    fn zone(&self, name: &Spanned<String>, path: String) -> Result<(), ScenarioError> {
        if self.zones.contains(&name.value.as_str()) {
            return Ok(());
        }
        Err(self.fail(
            &name.referenced,
            path,
            format!(
                "unknown zone `{}` (the fleet's zones are {})",
                name.value,
                self.zones.join(", ")
            ),
        ))
    }

    fn workload(&self) -> Result<(), ScenarioError> {
        let w = &self.scenario.workload;
        if w.arrivals.is_empty() {
            return Err(self.fail(
                &Location::UNKNOWN,
                "workload.arrivals",
                "give at least one arrival rate",
            ));
        }
        for (i, a) in w.arrivals.iter().enumerate() {
            if !(a.per_minute.value.is_finite() && a.per_minute.value >= 0.0) {
                return Err(self.fail(
                    &a.per_minute.referenced,
                    format!("workload.arrivals[{i}].perMinute"),
                    format!("must be a rate of 0 or more, not {}", a.per_minute.value),
                ));
            }
            if i > 0 && a.at.value <= w.arrivals[i - 1].at.value {
                let message = format!(
                    "times must increase ({} comes after {})",
                    a.at.value,
                    w.arrivals[i - 1].at.value
                );
                return Err(self.fail(
                    &a.at.referenced,
                    format!("workload.arrivals[{i}].at"),
                    message,
                ));
            }
        }
        self.weights(
            w.sizes.iter().map(|s| (&s.weight, Some(&s.slots))),
            "workload.sizes",
            "slots",
        )?;
        self.weights(
            w.durations.iter().map(|s| (&s.weight, Some(&s.minutes))),
            "workload.durations",
            "minutes",
        )?;
        if !w.zones.is_empty() {
            self.weights(
                w.zones.iter().map(|z| (&z.weight, None)),
                "workload.zones",
                "",
            )?;
        }
        for (i, choice) in w.zones.iter().enumerate() {
            for (j, z) in choice.allowed.iter().enumerate() {
                self.zone(z, format!("workload.zones[{i}].allowed[{j}]"))?;
            }
            for (j, z) in choice.preferred.iter().enumerate() {
                let path = format!("workload.zones[{i}].preferred[{j}]");
                self.zone(z, path.clone())?;
                if !choice.allowed.is_empty() && !choice.allowed.iter().any(|a| a.value == z.value)
                {
                    return Err(self.fail(
                        &z.referenced,
                        path,
                        format!("zone `{}` is preferred but not allowed", z.value),
                    ));
                }
            }
        }
        Ok(())
    }

    fn bookings(&self) -> Result<(), ScenarioError> {
        let s = self.scenario;
        for (i, b) in s.workload.bookings.iter().enumerate() {
            let path = |field: &str| format!("workload.bookings[{i}].{field}");
            if b.at.value < s.day.start.value || b.at.value > s.day.end.value {
                return Err(self.fail(
                    &b.at.referenced,
                    path("at"),
                    format!(
                        "{} is outside the day ({}–{})",
                        b.at.value, s.day.start.value, s.day.end.value
                    ),
                ));
            }
            for (field, value) in [
                ("slots", &b.slots),
                ("minutes", &b.minutes),
                ("count", &b.count),
            ] {
                if value.value == 0 {
                    return Err(self.fail(&value.referenced, path(field), "must be at least 1"));
                }
            }
            for (j, z) in b.allowed.iter().enumerate() {
                self.zone(z, path(&format!("allowed[{j}]")))?;
            }
            for (j, z) in b.preferred.iter().enumerate() {
                self.zone(z, path(&format!("preferred[{j}]")))?;
            }
        }
        Ok(())
    }

    fn autoscaling(&self) -> Result<(), ScenarioError> {
        let Some(a) = &self.scenario.autoscaling else {
            return Ok(());
        };
        if a.min_nodes.value > a.max_nodes.value {
            return Err(self.fail(
                &a.min_nodes.referenced,
                "autoscaling.minNodes",
                format!("must not exceed maxNodes ({})", a.max_nodes.value),
            ));
        }
        let policy = self
            .scenario
            .policy()
            .map_err(|e| self.fail(&Location::UNKNOWN, "autoscaling", e.to_string()))?;
        drop(policy);
        Ok(())
    }

    /// Weights must not all be zero, and the weighted value (if any) must be at least 1.
    fn weights<'s>(
        &self,
        items: impl Iterator<Item = (&'s Spanned<u32>, Option<&'s Spanned<u32>>)>,
        list: &str,
        field: &str,
    ) -> Result<(), ScenarioError> {
        let (mut total, mut count) = (0u64, 0);
        for (i, (weight, value)) in items.enumerate() {
            total += u64::from(weight.value);
            count += 1;
            if let Some(v) = value
                && v.value == 0
            {
                return Err(self.fail(
                    &v.referenced,
                    format!("{list}[{i}].{field}"),
                    "must be at least 1",
                ));
            }
        }
        if count == 0 {
            return Err(self.fail(&Location::UNKNOWN, list, "give at least one choice"));
        }
        if total == 0 {
            return Err(self.fail(&Location::UNKNOWN, list, "weights must not all be 0"));
        }
        Ok(())
    }

    fn events(&self) -> Result<(), ScenarioError> {
        let (start, end) = (self.scenario.day.start.value, self.scenario.day.end.value);
        for (i, e) in self.scenario.events.iter().enumerate() {
            let path = |field: &str| format!("events[{i}].{field}");
            if e.at.value < start || e.at.value > end {
                return Err(self.fail(
                    &e.at.referenced,
                    path("at"),
                    format!("{} is outside the day ({start}–{end})", e.at.value),
                ));
            }
            if e.kind.value == EventKind::RollingUpgrade {
                let zone = e.zone.as_ref().map(|z| (&z.referenced, "zone"));
                if let Some((at, field)) = zone.or(e.node.as_ref().map(|n| (&n.referenced, "node")))
                {
                    return Err(self.fail(
                        at,
                        path(field),
                        "a rolling upgrade takes neither `zone` nor `node`: it rolls the whole fleet",
                    ));
                }
                continue;
            }
            let zone_event = matches!(
                e.kind.value,
                EventKind::ZoneFailure
                    | EventKind::ZoneRecovery
                    | EventKind::ZoneEvacuation
                    | EventKind::ZoneReturn
            );
            match (zone_event, &e.zone, &e.node) {
                (true, None, _) => {
                    return Err(self.fail(
                        &e.kind.referenced,
                        path("zone"),
                        "a zone event needs `zone`",
                    ));
                }
                (true, Some(_), Some(node)) => {
                    return Err(self.fail(
                        &node.referenced,
                        path("node"),
                        "a zone event takes `zone`, not `node`",
                    ));
                }
                (true, Some(zone), None) => self.zone(zone, path("zone"))?,
                (false, _, None) => {
                    return Err(self.fail(
                        &e.kind.referenced,
                        path("node"),
                        "a node event needs `node` (such as `fr-par-1-03`)",
                    ));
                }
                (false, Some(zone), Some(_)) => {
                    return Err(self.fail(
                        &zone.referenced,
                        path("zone"),
                        "a node event takes `node`, not `zone`",
                    ));
                }
                (false, None, Some(node)) => {
                    if !self.scenario.node_exists(&node.value) {
                        let message = format!(
                            "unknown node `{}`: nodes are named <zone>-<n>, n from 01 to the zone's node count",
                            node.value
                        );
                        return Err(self.fail(&node.referenced, path("node"), message));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Turns a YAML or type error into a located error. The parser knows the line; a second
/// pass through `serde_path_to_error` knows the field path.
fn deserialize_error(e: &serde_saphyr::Error, text: &str, file: &str) -> ScenarioError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let full = e.without_snippet().to_string();
    // The parser repeats the location at the end of its message; it is shown once, in front.
    let message = full
        .rsplit_once(" at line ")
        .map_or(full.as_str(), |(m, _)| m);
    let message = match message {
        m if m.starts_with("invalid u") || m.starts_with("invalid i") => {
            format!("{m}: expected a whole number of 0 or more")
        }
        m => m.to_string(),
    };
    let mut path = String::new();
    let _ = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, Scenario>(de).map_err(|pe| {
            path = pe.path().to_string();
            <serde_saphyr::Error as serde::de::Error>::custom("path found")
        })
    });
    let path = path.strip_suffix(".value").unwrap_or(&path).to_string();
    ScenarioError {
        file: file.into(),
        line,
        column,
        path,
        message,
    }
}

impl ScenarioError {
    /// The offending line of `text` with a caret under the column, for terminals.
    pub fn excerpt(&self, text: &str) -> Option<String> {
        let line = usize::try_from(self.line).ok()?.checked_sub(1)?;
        let source = text.lines().nth(line)?;
        let pad = " ".repeat(usize::try_from(self.column.saturating_sub(1)).unwrap_or(0));
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        Some(format!("{number} | {source}\n{gutter} | {pad}^"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        match Scenario::parse(text, "bad.yaml") {
            Ok(_) => String::from("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn the_bundled_scenario_parses() {
        let s = Scenario::parse(MINISTRY_DAY, "ministry-day").unwrap();
        assert_eq!(s.fleet.zones.len(), 3);
        assert_eq!(s.events.len(), 5);
    }

    fn with(find: &str, replace: &str) -> String {
        assert!(
            MINISTRY_DAY.contains(find),
            "fixture text not found: {find}"
        );
        MINISTRY_DAY.replacen(find, replace, 1)
    }

    #[test]
    fn type_errors_name_the_field_and_the_line() {
        assert_eq!(
            parse_err(&with(
                "sampleMinutes: 5",
                "sampleMinutes: 5\nsampleEvery: 5m"
            )),
            "bad.yaml:24:1: sampleEvery: unknown field `sampleEvery`, expected one of name, description, seed, day, sampleMinutes, fleet, workload, events, rollout, autoscaling"
        );
        assert_eq!(
            parse_err(&with(
                "{ slots: 4, weight: 25 }",
                "{ slots: -4, weight: 25 }"
            )),
            "bad.yaml:58:16: workload.sizes[1].slots: invalid u32: expected a whole number of 0 or more"
        );
        assert_eq!(
            parse_err(&with(
                "{ at: \"09:04\", perMinute: 26 }",
                "{ at: \"9h\", perMinute: 26 }"
            )),
            "bad.yaml:40:13: workload.arrivals[4].at: `9h` is not a time of day: write HH:MM, e.g. \"09:30\""
        );
        assert_eq!(
            parse_err(&with("kind: nodeFailure", "kind: nodeExplodes")),
            "bad.yaml:104:26: events[3].kind: unknown variant `nodeExplodes`, expected one of nodeFailure, nodeRecovery, zoneFailure, zoneRecovery, zoneEvacuation, zoneReturn, rollingUpgrade"
        );
        assert!(parse_err("name: [unclosed").starts_with("bad.yaml:1:"));
    }

    #[test]
    fn rule_errors_name_the_field_and_the_line() {
        assert_eq!(
            parse_err(&with(
                "kind: rollingUpgrade }",
                "kind: rollingUpgrade, zone: fr-par-1 }"
            )),
            "bad.yaml:102:48: events[1].zone: a rolling upgrade takes neither `zone` nor `node`: it rolls the whole fleet"
        );
        assert_eq!(
            parse_err(&with(
                "kind: zoneFailure, zone: fr-par-2",
                "kind: zoneFailure, zone: fr-par-9"
            )),
            "bad.yaml:101:45: events[0].zone: unknown zone `fr-par-9` (the fleet's zones are fr-par-1, fr-par-2, fr-par-3)"
        );
        assert_eq!(
            parse_err(&with(
                "node: fr-par-1-03 }\n  - { at: \"15:40\"",
                "node: fr-par-1-21 }\n  - { at: \"15:40\""
            )),
            "bad.yaml:104:45: events[3].node: unknown node `fr-par-1-21`: nodes are named <zone>-<n>, n from 01 to the zone's node count"
        );
        assert_eq!(
            parse_err(&with(
                "kind: nodeFailure, node: fr-par-1-03",
                "kind: nodeFailure"
            )),
            "bad.yaml:104:26: events[3].node: a node event needs `node` (such as `fr-par-1-03`)"
        );
        assert_eq!(
            parse_err(&with("{ at: \"15:10\"", "{ at: \"21:10\"")),
            "bad.yaml:104:11: events[3].at: 21:10 is outside the day (07:00–20:00)"
        );
        assert_eq!(
            parse_err(&with("perMinute: 26", "perMinute: -2.5")),
            "bad.yaml:40:33: workload.arrivals[4].perMinute: must be a rate of 0 or more, not -2.5"
        );
        assert_eq!(
            parse_err(&with(
                "preferred: [fr-par-1] }",
                "preferred: [fr-par-3], allowed: [fr-par-1] }"
            )),
            "bad.yaml:73:33: workload.zones[1].preferred[0]: zone `fr-par-3` is preferred but not allowed"
        );
        assert_eq!(
            parse_err(&with(
                "{ at: \"09:30\", perMinute: 30 }",
                "{ at: \"08:30\", perMinute: 30 }"
            )),
            "bad.yaml:41:13: workload.arrivals[5].at: times must increase (08:30 comes after 09:04)"
        );
        assert!(
            parse_err(&with(
                "{ slots: 6, weight: 20 }",
                "{ slots: 0, weight: 20 }"
            ))
            .contains("workload.sizes[2].slots: must be at least 1")
        );
    }

    #[test]
    fn the_excerpt_points_at_the_mistake() {
        let text = with("zone: fr-par-2 }", "zone: fr-par-9 }");
        let Err(e) = Scenario::parse(&text, "bad.yaml") else {
            panic!("accepted")
        };
        let excerpt = e.excerpt(&text).unwrap();
        assert!(
            excerpt.starts_with("101 |   - { at: \"10:00\", kind: zoneFailure, zone: fr-par-9 }"),
            "{excerpt}"
        );
        assert!(
            excerpt.ends_with(&format!("{}^", " ".repeat(44))),
            "{excerpt}"
        );
    }
}
