//! The same day under several sizing policies, side by side: a fixed fleet sized for the peak
//! (every zone runs its `nodes` all day), the buffer alone (as Agones' buffer autoscaler
//! keeps one), the buffer with the schedule windows, and the buffer with the windows and the
//! bookings known ahead. Each runs the scenario's meetings, events and seed unchanged.

use std::fmt::Write as _;

use serde::Serialize;

use super::engine::{SimError, run};
use super::outcome::Outcome;
use super::scenario::Scenario;

/// A sizing policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Variant {
    /// Every zone runs its `nodes` all day.
    Fixed,
    /// The autoscaler with the base buffer only: no windows, bookings unknown.
    Buffer,
    /// The buffer and the schedule windows; bookings unknown.
    BufferSchedule,
    /// The buffer, the windows and the bookings.
    Full,
}

impl Variant {
    /// Every policy, in the table's order.
    pub const ALL: [Self; 4] = [Self::Fixed, Self::Buffer, Self::BufferSchedule, Self::Full];

    /// The policy as the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Fixed => "fixed fleet (sized for the peak)",
            Self::Buffer => "buffer only",
            Self::BufferSchedule => "buffer + schedule",
            Self::Full => "buffer + schedule + bookings",
        }
    }

    /// The scenario under this policy, or `None` for an autoscaled policy when the scenario
    /// has no `autoscaling` block to start from.
    pub fn apply(self, scenario: &Scenario) -> Option<Scenario> {
        let mut s = scenario.clone();
        match self {
            Self::Fixed => s.autoscaling = None,
            Self::Buffer => {
                let a = s.autoscaling.as_mut()?;
                a.schedules.clear();
                a.use_bookings = false;
            }
            Self::BufferSchedule => s.autoscaling.as_mut()?.use_bookings = false,
            Self::Full => {
                s.autoscaling.as_mut()?.use_bookings = true;
            }
        }
        Some(s)
    }
}

/// One policy's day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    /// The policy.
    pub variant: Variant,
    /// What the day produced under it.
    pub outcome: Outcome,
}

/// Runs the scenario under every policy it allows (only the fixed fleet without an
/// `autoscaling` block).
pub fn compare(scenario: &Scenario) -> Result<Vec<Run>, SimError> {
    Variant::ALL
        .iter()
        .filter_map(|v| v.apply(scenario).map(|s| (*v, s)))
        .map(|(variant, s)| run(&s).map(|(outcome, _)| Run { variant, outcome }))
        .collect()
}

/// The side-by-side table.
pub fn render(scenario: &Scenario, runs: &[Run]) -> String {
    let mut out = String::new();
    let zones: Vec<&str> = scenario
        .fleet
        .zones
        .iter()
        .map(|z| z.name.value.as_str())
        .collect();
    let _ = writeln!(
        out,
        "{} (seed {}): one day under each sizing policy",
        scenario.name, scenario.seed
    );
    let ramp = runs
        .first()
        .map(|r| r.outcome.sizing.ramp_end.to_string())
        .unwrap_or_default();
    let fixed = runs
        .iter()
        .find(|r| r.variant == Variant::Fixed)
        .map(|r| r.outcome.sizing.total_node_hours());
    let _ = writeln!(
        out,
        "{:<34} {:>10} {:>8}  {:<24} {:>8} {:>9} {:>7} {:>9} {:>10}",
        "policy",
        "node-hours",
        "vs fixed",
        format!("per zone ({})", zones.join(" / ")),
        "refused",
        format!("to {ramp}"),
        "booked",
        "scale +/-",
        "moved/cut"
    );
    for r in runs {
        let o = &r.outcome;
        let total = o.sizing.total_node_hours();
        let versus = fixed.filter(|f| *f > 0.0).map_or_else(
            || "-".to_string(),
            |f| format!("{:+.0}%", 100.0 * (total - f) / f),
        );
        let per_zone: Vec<String> = o
            .sizing
            .node_hours
            .iter()
            .map(|h| format!("{h:.0}"))
            .collect();
        let booked = if scenario.workload.bookings.is_empty() {
            "-".to_string()
        } else {
            format!("{} ref", o.sizing.booked_refused)
        };
        let _ = writeln!(
            out,
            "{:<34} {:>10.1} {:>8}  {:<24} {:>8} {:>9} {:>7} {:>9} {:>10}",
            r.variant.label(),
            total,
            versus,
            per_zone.join(" / "),
            o.refused.rooms(),
            o.sizing.refused_in_ramp,
            booked,
            format!("{}/{}", o.sizing.scale_ups, o.sizing.scale_downs),
            format!("{}/{}", o.lifecycle.migrated + o.moved(), o.cut()),
        );
    }
    let _ = writeln!(
        out,
        "refused: meetings no node could take when they asked; to {ramp}: of which during the morning ramp; booked ref: booked meetings refused; scale +/-: the autoscaler's decisions to grow and to shrink a zone; moved/cut: rooms moved live or placed again after a failure, and rooms cut."
    );
    out
}
