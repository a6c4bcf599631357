//! The simulator end to end: the bundled day, determinism, and the CLI's answer to bad files.

// Test helpers fail the test by panicking, like the tests themselves.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use ruche_operator::sim::compare::{self, Variant};
use ruche_operator::sim::scenario::{BOOKED_PLENARIES, MINISTRY_DAY};
use ruche_operator::sim::{self, Scenario, chart, report};

/// The bundled day with its fleet fixed at each zone's `nodes` (sized for the peak).
fn ministry_day(seed: Option<u64>) -> Scenario {
    let mut s = Variant::Fixed
        .apply(&autoscaled_ministry_day())
        .expect("a fixed fleet always applies");
    if let Some(seed) = seed {
        s.seed = seed;
    }
    s
}

/// The bundled day as written: autoscaled.
fn autoscaled_ministry_day() -> Scenario {
    Scenario::parse(MINISTRY_DAY, "ministry-day").expect("bundled scenario parses")
}

#[test]
fn the_ministry_day_places_meetings_and_survives_its_zone_failure() {
    let (o, timing) = sim::run(&ministry_day(None)).expect("runs");
    assert!(
        o.requested > 5_000,
        "a ministry day has thousands of meetings, got {}",
        o.requested
    );
    assert_eq!(o.requested, o.placed + o.refused.rooms());
    assert_eq!(
        o.capacity_violations, 0,
        "no placement may exceed a node's free slots"
    );
    // Rooms refused are the data-residency rooms pinned to the failed zone, while it is down.
    assert_eq!(
        o.refused.by_reason.keys().copied().collect::<Vec<_>>(),
        vec!["NoReadyNode"]
    );
    let zone_failure = o
        .events
        .iter()
        .find(|e| e.what == "zone fr-par-2 fails")
        .expect("zone failure event");
    assert_eq!(zone_failure.nodes, 20);
    assert!(
        zone_failure.moved > 100,
        "rooms of the failed zone move: {}",
        zone_failure.moved
    );
    assert_eq!(
        zone_failure.moved_same_zone, 0,
        "nothing is left in a failed zone"
    );
    // Only rooms pinned to fr-par-2 may be cut.
    let example = zone_failure.example.as_deref().unwrap_or_default();
    assert!(
        example.contains("fr-par-1: not allowed by the room"),
        "{example}"
    );
    let node_failure = o
        .events
        .iter()
        .find(|e| e.what == "node fr-par-1-03 fails")
        .expect("node failure event");
    assert!(node_failure.moved > 0, "the failed node's rooms move");
    assert_eq!(
        node_failure.moved_same_zone, node_failure.moved,
        "all within their zone, which has room"
    );
    assert_eq!(node_failure.cut, 0);
    // Every placed room either ended or was cut or is still running at the end of the day.
    assert!(o.ended + o.cut() <= o.placed);
    assert!(
        o.zone_stats
            .iter()
            .all(|z| z.peak_percent <= 100.0 && z.mean_percent > 0.0)
    );
    assert!(timing.decisions >= u64::from(o.requested));
    let text = report::render(&o);
    for needle in [
        "requested",
        "refused",
        "moved after failures",
        "cut by failures",
        "peak",
        "10:00  zone fr-par-2 fails (20 nodes)",
    ] {
        assert!(text.contains(needle), "report lacks `{needle}`:\n{text}");
    }
    let svg = chart::render(&o);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(
        svg.matches("<polyline").count(),
        9,
        "a used, a capacity and a nodes line per zone"
    );
}

#[test]
fn the_ministry_days_rolling_upgrade_replaces_every_node_and_cuts_no_room() {
    let (o, _) = sim::run(&ministry_day(None)).expect("runs");
    let l = &o.lifecycle;
    let started = l.rollout_started.expect("the rolling upgrade starts");
    assert_eq!(started.to_string(), "11:00");
    let finished = l.rollout_finished.expect("and finishes within the day");
    assert!(finished > started);
    // Every one of the 60 nodes is replaced, one per zone at a time (surge 1), so the surge
    // never costs more than 3 extra nodes for the rollout's duration; the node that fails at
    // 15:10 is replaced too, and the extra node drains and goes once it recovers.
    assert_eq!((l.nodes_created, l.nodes_deleted), (61, 61));
    let hours = f64::from(finished.seconds() - started.seconds()) / 3600.0;
    assert!(
        l.surge_node_hours > 0.0 && l.surge_node_hours <= 3.0 * hours + 1e-9,
        "{} node-hours over {hours:.2} h",
        l.surge_node_hours
    );
    // Rooms still live when their node's drain deadline came moved live, within their zone
    // (the new nodes are there); none had nowhere to go.
    assert!(l.migrated > 0);
    assert_eq!(l.migrated_same_zone, l.migrated);
    assert!(l.stranded.is_empty(), "{:?}", l.stranded);
    assert_eq!(o.capacity_violations, 0);
    let text = report::render(&o);
    for needle in [
        "rooms moved live",
        "rooms cut                    0",
        "rolling upgrade       started at 11:00",
        "node-hours",
    ] {
        assert!(text.contains(needle), "report lacks `{needle}`:\n{text}");
    }
    assert!(chart::render(&o).contains("rolling upgrade 11:00–"));
}

#[test]
fn a_zone_evacuation_moves_what_may_move_and_keeps_the_pinned_rooms_live() {
    let text = sim::scenario::ZONE_EVACUATION;
    let autoscaled = Scenario::parse(text, "zone-evacuation").expect("bundled scenario parses");
    // Autoscaled, the other zones grow for the evacuated zone's rooms: nothing is cut either.
    let (auto, _) = sim::run(&autoscaled).expect("runs");
    assert_eq!(auto.cut(), 0);
    assert!(auto.lifecycle.migrated > 0);
    assert_eq!(auto.capacity_violations, 0);
    let scenario = Variant::Fixed
        .apply(&autoscaled)
        .expect("a fixed fleet always applies");
    let (o, _) = sim::run(&scenario).expect("runs");
    let l = &o.lifecycle;
    // Every node of fr-par-3 drains and goes; they come back at 17:00.
    assert_eq!((l.nodes_deleted, l.nodes_created), (20, 20));
    assert!(l.migrated > 0, "rooms still live at the deadline move");
    assert_eq!(l.migrated_same_zone, 0, "to the other zones");
    // Rooms that may only live in fr-par-3 stay live where they are, and are named.
    assert!(!l.stranded.is_empty());
    assert_eq!(o.cut(), 0, "nothing is cut");
    // While fr-par-3 is out, its residency rooms cannot start: refused with the reason.
    assert_eq!(
        o.refused.by_reason.keys().copied().collect::<Vec<_>>(),
        vec!["NoReadyNode"]
    );
    let example = &o.refused.by_reason["NoReadyNode"].example;
    assert!(example.contains("fr-par-3: no Ready node"), "{example}");
    assert_eq!(o.capacity_violations, 0);
}

#[test]
fn same_seed_same_report_and_chart() {
    let (a, _) = sim::run(&ministry_day(None)).expect("runs");
    let (b, _) = sim::run(&ministry_day(None)).expect("runs");
    assert_eq!(a, b);
    assert_eq!(report::render(&a), report::render(&b));
    assert_eq!(chart::render(&a), chart::render(&b));
    let (c, _) = sim::run(&ministry_day(Some(7))).expect("runs");
    assert_ne!(a.requested, c.requested, "another seed draws another day");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]
    #[test]
    fn any_seed_is_deterministic_and_never_overcommits(seed in any::<u64>()) {
        let scenario = ministry_day(Some(seed));
        let (a, _) = sim::run(&scenario).expect("runs");
        let (b, _) = sim::run(&scenario).expect("runs");
        prop_assert_eq!(a.capacity_violations, 0);
        prop_assert_eq!(&a, &b);
    }
}

fn simulate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ruche-operator"))
        .arg("simulate")
        .args(args)
        .output()
        .expect("binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/scenarios")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn cli_refuses_bad_scenarios_naming_field_and_line() {
    let cases = [
        (
            "unknown-zone-event.yaml",
            ":14:45: events[0].zone: unknown zone `c` (the fleet's zones are a, b)",
        ),
        (
            "negative-size.yaml",
            ":12:16: workload.sizes[1].slots: invalid u32",
        ),
        (
            "unknown-field.yaml",
            ":6:3: fleet.autoscale: unknown field `autoscale`",
        ),
    ];
    for (file, expected) in cases {
        let (code, stdout, stderr) = simulate(&[&fixture(file), "--chart", "/dev/null"]);
        assert_eq!(code, 2, "{file}: exit code; stderr: {stderr}");
        assert!(stdout.is_empty(), "{file}: nothing on stdout");
        assert!(
            stderr.contains(expected),
            "{file}: expected `{expected}` in:\n{stderr}"
        );
        assert!(
            stderr.contains('^'),
            "{file}: the excerpt points at the mistake:\n{stderr}"
        );
    }
    let (code, _, stderr) = simulate(&["no-such-scenario"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("bundled scenarios: ministry-day"),
        "{stderr}"
    );
}

#[test]
fn cli_runs_the_bundled_day_and_writes_the_chart() {
    let dir = std::env::temp_dir().join(format!("ruche-sim-{}", std::process::id()));
    let chart = dir.join("day.svg");
    let (code, stdout, stderr) =
        simulate(&["ministry-day", "--chart", &chart.display().to_string()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("Ruche fleet simulation: ministry-day"),
        "{stdout}"
    );
    assert!(stdout.contains("per second"), "{stdout}");
    let svg = std::fs::read_to_string(&chart).expect("chart written");
    assert!(svg.contains("fr-par-2"));
    let (code, stdout, _) = simulate(&[
        "ministry-day",
        "--json",
        "--chart",
        &chart.display().to_string(),
    ]);
    assert_eq!(code, 0);
    let doc: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert!(
        doc["outcome"]["requested"]
            .as_u64()
            .is_some_and(|n| n > 5_000)
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// The goal on the bundled day: at least 40% fewer node-hours than the fixed fleet,
/// with no more meetings refused or cut.
#[test]
fn autoscaling_the_ministry_day_saves_node_hours_without_refusing_more() {
    let scenario = autoscaled_ministry_day();
    let runs = compare::compare(&scenario).expect("runs");
    let by = |v: Variant| &runs.iter().find(|r| r.variant == v).expect("run").outcome;
    let fixed = by(Variant::Fixed);
    assert!(!fixed.sizing.autoscaled);
    for v in [Variant::Buffer, Variant::BufferSchedule, Variant::Full] {
        let o = by(v);
        assert!(o.sizing.autoscaled);
        assert!(
            o.sizing.total_node_hours() <= 0.6 * fixed.sizing.total_node_hours(),
            "{v:?}: {:.1} node-hours against {:.1}",
            o.sizing.total_node_hours(),
            fixed.sizing.total_node_hours()
        );
        assert_eq!(o.capacity_violations, 0);
        assert!(o.sizing.scale_ups > 0 && o.sizing.scale_downs > 0);
        // Every zone stays within its bounds, plus the rollout's surge of one.
        for sample in &o.samples {
            for z in &sample.zones {
                assert!(
                    z.nodes <= 30 + 1,
                    "{v:?}: {} nodes at {}",
                    z.nodes,
                    sample.at
                );
            }
        }
    }
    let full = by(Variant::Full);
    assert!(full.refused.rooms() <= fixed.refused.rooms());
    assert!(full.cut() <= fixed.cut());
    let table = compare::render(&scenario, &runs);
    for needle in [
        "fixed fleet (sized for the peak)",
        "buffer only",
        "buffer + schedule + bookings",
    ] {
        assert!(table.contains(needle), "{table}");
    }
}

/// What a policy knows ahead decides who gets a room: the schedule spares the morning ramp,
/// and only the bookings give the plenaries their rooms.
#[test]
fn schedules_spare_the_ramp_and_bookings_give_the_plenaries_their_rooms() {
    let scenario = Scenario::parse(BOOKED_PLENARIES, "booked-plenaries").expect("parses");
    let runs = compare::compare(&scenario).expect("runs");
    let by = |v: Variant| {
        &runs
            .iter()
            .find(|r| r.variant == v)
            .expect("run")
            .outcome
            .sizing
    };
    assert!(by(Variant::BufferSchedule).refused_in_ramp <= by(Variant::Buffer).refused_in_ramp);
    assert!(
        by(Variant::Buffer).booked_refused > 0,
        "unknown ahead, plenaries are refused"
    );
    assert!(
        by(Variant::Full).booked_refused < by(Variant::BufferSchedule).booked_refused,
        "held ahead, they get their rooms: {} against {}",
        by(Variant::Full).booked_refused,
        by(Variant::BufferSchedule).booked_refused
    );
    assert_eq!(by(Variant::Full).booked_held, 16);
}
