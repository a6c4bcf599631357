//! The simulation report, as text for a terminal.

use std::fmt::Write;

use super::outcome::{Outcome, Timing};

/// Thousands separated by a thin space, as SREs read them fastest.
fn n(value: impl Into<u64>) -> String {
    let digits = value.into().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

/// The deterministic part of the report: the same seed gives the same text.
pub fn render(o: &Outcome) -> String {
    let mut r = String::new();
    let nodes: u32 = o.zones.iter().map(|(_, n)| n).sum();
    let zones: Vec<String> = o.zones.iter().map(|(z, n)| format!("{z} ({n})")).collect();
    let _ = writeln!(r, "Ruche fleet simulation: {} (seed {})", o.name, o.seed);
    let size = if o.sizing.autoscaled {
        format!(
            "autoscaled nodes of {} slots over {} (a fixed fleet would run {nodes}: {})",
            o.node_capacity,
            o.zones
                .iter()
                .map(|(z, _)| z.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            zones.join(", ")
        )
    } else {
        format!(
            "{nodes} nodes × {} slots over {}",
            o.node_capacity,
            zones.join(", ")
        )
    };
    let _ = writeln!(
        r,
        "Day {}–{}, {size}, placement {:?}",
        o.start, o.end, o.strategy
    );
    let _ = writeln!(r);
    let _ = writeln!(r, "Rooms");
    let _ = writeln!(r, "  requested             {:>8}", n(o.requested));
    let _ = writeln!(
        r,
        "  placed                {:>8}  {}",
        n(o.placed),
        percent(o.placed.into(), o.requested.into())
    );
    let _ = writeln!(
        r,
        "  refused               {:>8}  {}",
        n(o.refused.rooms()),
        percent(o.refused.rooms().into(), o.requested.into())
    );
    for (reason, t) in &o.refused.by_reason {
        let _ = writeln!(
            r,
            "    {reason:<20}{:>8}  ({} slots)",
            n(t.rooms),
            n(t.slots)
        );
        let _ = writeln!(r, "      first: {}", t.example);
    }
    let moved_same: u32 = o.events.iter().map(|e| e.moved_same_zone).sum();
    let _ = writeln!(
        r,
        "  moved after failures  {:>8}  ({} within their zone)",
        n(o.moved()),
        n(moved_same)
    );
    let cut_slots: u32 = o.events.iter().map(|e| e.cut_slots).sum();
    let _ = writeln!(
        r,
        "  cut by failures       {:>8}  ({} participants)",
        n(o.cut()),
        n(cut_slots)
    );
    let _ = writeln!(r, "  over capacity         {:>8}", n(o.capacity_violations));
    let _ = writeln!(r);
    let _ = writeln!(
        r,
        "Use per zone (slots used / slots on Ready nodes, sampled)"
    );
    let _ = writeln!(
        r,
        "  {:<12}{:>8}{:>8}{:>12}{:>8}{:>12}",
        "zone", "peak", "at", "peak slots", "mean", "peak rooms"
    );
    for z in &o.zone_stats {
        let _ = writeln!(
            r,
            "  {:<12}{:>7.1}%{:>8}{:>12}{:>7.1}%{:>12}",
            z.name,
            z.peak_percent,
            z.peak_at.to_string(),
            n(z.peak_slots),
            z.mean_percent,
            n(z.peak_rooms)
        );
    }
    sizing(&mut r, o);
    lifecycle(&mut r, o);
    if !o.events.is_empty() {
        let _ = writeln!(r);
        let _ = writeln!(r, "Events");
        for e in &o.events {
            let _ = write!(
                r,
                "  {}  {} ({} node{})",
                e.at,
                e.what,
                e.nodes,
                if e.nodes == 1 { "" } else { "s" }
            );
            if e.moved > 0 || e.cut > 0 {
                let _ = write!(
                    r,
                    ": {} rooms moved ({} within the zone), {} cut",
                    n(e.moved),
                    n(e.moved_same_zone),
                    n(e.cut)
                );
            }
            let _ = writeln!(r);
            if let Some(example) = &e.example {
                let _ = writeln!(r, "         first cut: {example}");
            }
        }
    }
    r
}

/// Drains, evacuations and rolling upgrades, when the day had any.
fn sizing(r: &mut String, o: &Outcome) {
    let s = &o.sizing;
    let _ = writeln!(r);
    let how = if s.autoscaled {
        "autoscaled"
    } else {
        "fixed: each zone runs its nodes all day"
    };
    let _ = writeln!(r, "Fleet size ({how})");
    let per_zone: Vec<String> = o
        .zones
        .iter()
        .zip(&s.node_hours)
        .map(|((z, _), h)| format!("{z} {h:.1}"))
        .collect();
    let _ = writeln!(
        r,
        "  node-hours            {:>8.1}  ({})",
        s.total_node_hours(),
        per_zone.join(", ")
    );
    if s.autoscaled {
        let _ = writeln!(
            r,
            "  scale decisions       {:>8}  ({} up, {} down)",
            n(s.scale_ups + s.scale_downs),
            n(s.scale_ups),
            n(s.scale_downs)
        );
    }
    let _ = writeln!(
        r,
        "  refused to {:<10} {:>8}  (the morning ramp, to the first peak of arrivals)",
        s.ramp_end.to_string(),
        n(s.refused_in_ramp)
    );
    if s.booked_held > 0 || s.booked_refused > 0 {
        let _ = writeln!(
            r,
            "  booked meetings       {:>8} held ahead, {} refused",
            n(s.booked_held),
            n(s.booked_refused)
        );
    }
}

fn lifecycle(r: &mut String, o: &Outcome) {
    let l = &o.lifecycle;
    if l == &super::outcome::LifecycleOutcome::default() {
        return;
    }
    let _ = writeln!(r);
    let _ = writeln!(r, "Drains, evacuations and rolling upgrades");
    let _ = writeln!(
        r,
        "  rooms moved live      {:>8}  ({} within their zone)",
        n(l.migrated),
        n(l.migrated_same_zone)
    );
    let _ = writeln!(r, "  rooms cut             {:>8}", 0);
    let _ = writeln!(
        r,
        "  rooms with nowhere to go, left live on their node {}",
        n(l.stranded.len() as u64)
    );
    if let Some(first) = l.stranded.iter().next() {
        let _ = writeln!(r, "      first: {first}");
    }
    let _ = writeln!(
        r,
        "  nodes created         {:>8}  deleted once drained {}",
        n(l.nodes_created),
        n(l.nodes_deleted)
    );
    if let Some(started) = l.rollout_started {
        let took = l.rollout_finished.map_or_else(
            || "not finished by the end of the day".to_string(),
            |f| {
                let minutes = (f.seconds().saturating_sub(started.seconds())) / 60;
                format!("done at {f}, {}h{:02}", minutes / 60, minutes % 60)
            },
        );
        let _ = writeln!(r, "  rolling upgrade       started at {started}, {took}");
        let _ = writeln!(
            r,
            "  surge                 {:>8.1} node-hours above the fleet's size",
            l.surge_node_hours
        );
    }
}

/// The wall-clock line, apart because it changes from run to run.
pub fn render_timing(t: &Timing) -> String {
    format!(
        "Decisions: {} placement decisions in {:.1} ms of core time = {} per second (this machine, this run)\n",
        n(t.decisions),
        t.decision_seconds * 1000.0,
        n(t.per_second() as u64)
    )
}
