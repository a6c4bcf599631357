//! Scenario files: the fleet, a day of meetings and the events of that day.
//!
//! A scenario is YAML. Every mistake is reported with the file, line and column, and the
//! path of the field (`workload.sizes[1].slots`), whether it is a YAML or type error (an
//! unknown field, a negative size) or a rule the scenario breaks (an event naming a zone the
//! fleet does not have).

use std::fmt;

use ruche_crds::PlacementStrategy;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use super::clock::TimeOfDay;

/// The scenario bundled with the binary: a ministry's working day.
pub const MINISTRY_DAY: &str = include_str!("../../scenarios/ministry-day.yaml");

/// A second bundled day: a zone evacuated for the afternoon.
pub const ZONE_EVACUATION: &str = include_str!("../../scenarios/zone-evacuation.yaml");

/// Scenarios bundled with the binary, by name.
pub const BUNDLED: &[(&str, &str)] = &[
    ("ministry-day", MINISTRY_DAY),
    ("zone-evacuation", ZONE_EVACUATION),
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

/// Start and end of the simulated day.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Day {
    /// First minute simulated.
    pub start: Spanned<TimeOfDay>,
    /// Last minute simulated.
    pub end: Spanned<TimeOfDay>,
}

/// The simulated fleet: a fixed number of nodes per zone (autoscaling is not simulated).
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
    /// Nodes running all day.
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
        checker.events()
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
            "bad.yaml:17:1: sampleEvery: unknown field `sampleEvery`, expected one of name, description, seed, day, sampleMinutes, fleet, workload, events, rollout"
        );
        assert_eq!(
            parse_err(&with(
                "{ slots: 4, weight: 25 }",
                "{ slots: -4, weight: 25 }"
            )),
            "bad.yaml:47:16: workload.sizes[1].slots: invalid u32: expected a whole number of 0 or more"
        );
        assert_eq!(
            parse_err(&with(
                "{ at: \"09:00\", perMinute: 26 }",
                "{ at: \"9h\", perMinute: 26 }"
            )),
            "bad.yaml:31:13: workload.arrivals[2].at: `9h` is not a time of day: write HH:MM, e.g. \"09:30\""
        );
        assert_eq!(
            parse_err(&with("kind: nodeFailure", "kind: nodeExplodes")),
            "bad.yaml:77:26: events[3].kind: unknown variant `nodeExplodes`, expected one of nodeFailure, nodeRecovery, zoneFailure, zoneRecovery, zoneEvacuation, zoneReturn, rollingUpgrade"
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
            "bad.yaml:75:48: events[1].zone: a rolling upgrade takes neither `zone` nor `node`: it rolls the whole fleet"
        );
        assert_eq!(
            parse_err(&with(
                "kind: zoneFailure, zone: fr-par-2",
                "kind: zoneFailure, zone: fr-par-9"
            )),
            "bad.yaml:74:45: events[0].zone: unknown zone `fr-par-9` (the fleet's zones are fr-par-1, fr-par-2, fr-par-3)"
        );
        assert_eq!(
            parse_err(&with(
                "node: fr-par-1-03 }\n  - { at: \"15:40\"",
                "node: fr-par-1-21 }\n  - { at: \"15:40\""
            )),
            "bad.yaml:77:45: events[3].node: unknown node `fr-par-1-21`: nodes are named <zone>-<n>, n from 01 to the zone's node count"
        );
        assert_eq!(
            parse_err(&with(
                "kind: nodeFailure, node: fr-par-1-03",
                "kind: nodeFailure"
            )),
            "bad.yaml:77:26: events[3].node: a node event needs `node` (such as `fr-par-1-03`)"
        );
        assert_eq!(
            parse_err(&with("{ at: \"15:10\"", "{ at: \"21:10\"")),
            "bad.yaml:77:11: events[3].at: 21:10 is outside the day (07:00–20:00)"
        );
        assert_eq!(
            parse_err(&with("perMinute: 26", "perMinute: -2.5")),
            "bad.yaml:31:33: workload.arrivals[2].perMinute: must be a rate of 0 or more, not -2.5"
        );
        assert_eq!(
            parse_err(&with(
                "preferred: [fr-par-1] }",
                "preferred: [fr-par-3], allowed: [fr-par-1] }"
            )),
            "bad.yaml:62:33: workload.zones[1].preferred[0]: zone `fr-par-3` is preferred but not allowed"
        );
        assert_eq!(
            parse_err(&with(
                "{ at: \"09:30\", perMinute: 30 }",
                "{ at: \"08:30\", perMinute: 30 }"
            )),
            "bad.yaml:32:13: workload.arrivals[3].at: times must increase (08:30 comes after 09:00)"
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
            excerpt.starts_with("74 |   - { at: \"10:00\", kind: zoneFailure, zone: fr-par-9 }"),
            "{excerpt}"
        );
        assert!(
            excerpt.ends_with(&format!("{}^", " ".repeat(44))),
            "{excerpt}"
        );
    }
}
