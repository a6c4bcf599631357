//! The invariant, judged: no room loses its placement or its media unless its node died, and
//! such a room is placed again, with media, within a bound. Pure: the suite samples every
//! room once a second into [`Sample`]s; [`judge`] reads the samples of one fault's window
//! and says which rooms were affected, which were lost and how long recovery took.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

/// One room, in one sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomHealth {
    /// Placed on a node that is not Failed, and media flows to every participant it has.
    Good,
    /// The API server did not answer this time (its media, if it has participants, flows).
    Unknown,
    /// Not placed, or placed on a node that failed or is gone: why.
    Unplaced(String),
    /// A participant has received no media for this long.
    NoMedia(Duration),
}

impl RoomHealth {
    /// Whether this breaks the invariant (unless the room's node died).
    pub fn is_bad(&self) -> bool {
        matches!(self, Self::Unplaced(_) | Self::NoMedia(_))
    }

    fn describe(&self) -> String {
        match self {
            Self::Good => "good".into(),
            Self::Unknown => "unknown".into(),
            Self::Unplaced(why) => format!("unplaced ({why})"),
            Self::NoMedia(d) => format!("no media for {:.1} s", d.as_secs_f64()),
        }
    }
}

/// What the suite saw at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Since the suite began.
    pub at: Duration,
    /// Every watched room.
    pub rooms: BTreeMap<String, RoomHealth>,
    /// What was not as it should be, if anything: everything is settled when the API server
    /// answered, a replica led, the fleet ran all its nodes Ready and every room was good.
    pub unsettled: Option<String>,
}

/// One fault's window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    /// What was done.
    pub fault: String,
    /// When the fault was injected.
    pub injected: Duration,
    /// When its cause was taken away (the API server restarted, the node resumed); the
    /// injection itself for faults that are over at once (a kill).
    pub healed: Duration,
    /// When the suite stopped watching for this fault.
    pub end: Duration,
    /// Rooms whose node the fault killed or hung: they may lose placement and media for a
    /// while.
    pub excused: BTreeSet<String>,
    /// How soon an excused room must be placed again with media once the fault is over (a
    /// node killed while the API server is away can be replaced only once it is back).
    pub bound: Duration,
}

/// The verdict on one fault.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultReport {
    /// What was done.
    pub fault: String,
    /// Rooms watched.
    pub watched: usize,
    /// Rooms that lost placement or media at some point.
    pub affected: BTreeSet<String>,
    /// Of those, rooms whose node the fault killed or hung.
    pub on_failed_nodes: usize,
    /// Rooms lost: affected though their node lived, or not back within the bound; why.
    pub lost: BTreeMap<String, String>,
    /// From the healing to the first settled sample after the last unsettled one; `None` if
    /// the window ended unsettled.
    pub recovered_after: Option<Duration>,
    /// The longest any room was without placement or media.
    pub longest_outage: Duration,
    /// How long the fault lasted (injection to healing).
    pub lasted: Duration,
}

/// Judges `window` from `samples` (any order; those outside the window are ignored).
pub fn judge(window: &Window, samples: &[Sample]) -> FaultReport {
    let mut inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.at >= window.injected && s.at <= window.end)
        .collect();
    inside.sort_by_key(|s| s.at);
    let rooms: BTreeSet<&String> = inside.iter().flat_map(|s| s.rooms.keys()).collect();
    let mut report = FaultReport {
        fault: window.fault.clone(),
        watched: rooms.len(),
        lasted: window.healed.saturating_sub(window.injected),
        ..FaultReport::default()
    };
    for room in rooms {
        let states: Vec<(Duration, &RoomHealth)> = inside
            .iter()
            .filter_map(|s| s.rooms.get(room).map(|h| (s.at, h)))
            .collect();
        let Some(first_bad) = states.iter().find(|(_, h)| h.is_bad()) else {
            continue;
        };
        report.affected.insert(room.clone());
        let excused = window.excused.contains(room);
        report.on_failed_nodes += usize::from(excused);
        // Outages: from a bad sample to the next good one (or the window's end).
        let mut start: Option<Duration> = None;
        let mut back: Option<Duration> = None;
        for (at, h) in &states {
            match (h.is_bad(), start) {
                (true, None) => start = Some(*at),
                (false, Some(s)) if **h == RoomHealth::Good => {
                    report.longest_outage = report.longest_outage.max(at.saturating_sub(s));
                    start = None;
                    back = Some(*at);
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            report.longest_outage = report.longest_outage.max(window.end.saturating_sub(s));
        }
        let why = if !excused {
            Some(format!(
                "{} at +{:.0} s, though its node lived",
                first_bad.1.describe(),
                first_bad.0.saturating_sub(window.injected).as_secs_f64()
            ))
        } else if start.is_some() {
            Some(format!(
                "still {} when the window ended",
                states
                    .last()
                    .map_or_else(String::new, |(_, h)| h.describe())
            ))
        } else {
            back.map(|b| b.saturating_sub(window.healed.max(window.injected)))
                .filter(|took| *took > window.bound)
                .map(|took| {
                    format!(
                        "back {:.0} s after the fault ended, over the bound of {:.0} s",
                        took.as_secs_f64(),
                        window.bound.as_secs_f64()
                    )
                })
        };
        if let Some(why) = why {
            report.lost.insert(room.clone(), why);
        }
    }
    let after_heal: Vec<&&Sample> = inside.iter().filter(|s| s.at >= window.healed).collect();
    let last_unsettled = inside.iter().rposition(|s| s.unsettled.is_some());
    report.recovered_after = match last_unsettled {
        None => Some(Duration::ZERO),
        Some(i) => inside[i + 1..]
            .first()
            .map(|s| s.at.saturating_sub(window.healed)),
    };
    if after_heal.is_empty() {
        report.recovered_after = None;
    }
    report
}

fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// The report's table, one row per fault.
pub fn table(reports: &[FaultReport]) -> String {
    let header = [
        "fault",
        "lasted",
        "rooms watched",
        "rooms affected",
        "on failed nodes",
        "longest room outage",
        "recovered after",
        "rooms lost",
    ];
    let rows: Vec<[String; 8]> = reports
        .iter()
        .map(|r| {
            [
                r.fault.clone(),
                seconds(r.lasted),
                r.watched.to_string(),
                r.affected.len().to_string(),
                r.on_failed_nodes.to_string(),
                seconds(r.longest_outage),
                r.recovered_after
                    .map_or_else(|| "not recovered".into(), seconds),
                r.lost.len().to_string(),
            ]
        })
        .collect();
    let mut out = format!("| {} |\n|", header.join(" | "));
    for _ in header {
        out.push_str("---|");
    }
    out.push('\n');
    for row in &rows {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    for r in reports {
        for (room, why) in &r.lost {
            let _ = writeln!(out, "- {}: room {room} lost: {why}", r.fault);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, rooms: &[(&str, RoomHealth)], settled: bool) -> Sample {
        let unsettled = (!settled).then(|| "not settled".to_string());
        Sample {
            at: Duration::from_secs(at),
            rooms: rooms
                .iter()
                .map(|(n, h)| ((*n).to_string(), h.clone()))
                .collect(),
            unsettled,
        }
    }

    fn window(excused: &[&str]) -> Window {
        Window {
            fault: "f".into(),
            injected: Duration::from_secs(10),
            healed: Duration::from_secs(10),
            end: Duration::from_secs(20),
            excused: excused.iter().map(ToString::to_string).collect(),
            bound: Duration::from_secs(5),
        }
    }

    const G: RoomHealth = RoomHealth::Good;
    fn gap() -> RoomHealth {
        RoomHealth::NoMedia(Duration::from_secs(3))
    }

    #[test]
    fn a_quiet_window_affects_nothing_and_recovered_at_once() {
        let samples: Vec<_> = (10..=20)
            .map(|t| s(t, &[("a", G), ("b", G)], true))
            .collect();
        let r = judge(&window(&[]), &samples);
        assert_eq!(r.watched, 2);
        assert!(r.affected.is_empty() && r.lost.is_empty());
        assert_eq!(r.recovered_after, Some(Duration::ZERO));
    }

    #[test]
    fn a_room_whose_node_lived_is_lost_when_it_loses_media() {
        let mut samples: Vec<_> = (10..=20).map(|t| s(t, &[("a", G)], true)).collect();
        samples[3] = s(13, &[("a", gap())], false);
        let r = judge(&window(&[]), &samples);
        assert_eq!(r.affected.len(), 1);
        assert!(r.lost["a"].contains("though its node lived"), "{r:?}");
        assert_eq!(r.longest_outage, Duration::from_secs(1));
        assert_eq!(r.recovered_after, Some(Duration::from_secs(4)));
    }

    #[test]
    fn a_room_of_a_dead_node_back_within_the_bound_is_affected_not_lost() {
        let mut samples: Vec<_> = (10..=20).map(|t| s(t, &[("a", G)], true)).collect();
        for t in 11..14 {
            samples[t - 10] = s(t as u64, &[("a", RoomHealth::Unplaced("x".into()))], false);
        }
        let r = judge(&window(&["a"]), &samples);
        assert_eq!((r.affected.len(), r.on_failed_nodes), (1, 1));
        assert!(r.lost.is_empty(), "{r:?}");
        assert_eq!(r.longest_outage, Duration::from_secs(3));
    }

    #[test]
    fn a_room_of_a_dead_node_back_too_late_or_never_is_lost() {
        let mut late: Vec<_> = (10..=20).map(|t| s(t, &[("a", G)], true)).collect();
        for t in 11..18 {
            late[t - 10] = s(t as u64, &[("a", gap())], false);
        }
        let r = judge(&window(&["a"]), &late);
        assert!(r.lost["a"].contains("over the bound"), "{r:?}");
        let never: Vec<_> = (10..=20).map(|t| s(t, &[("a", gap())], false)).collect();
        let r = judge(&window(&["a"]), &never);
        assert!(r.lost["a"].contains("when the window ended"), "{r:?}");
        assert_eq!(r.recovered_after, None);
    }

    #[test]
    fn the_bound_counts_from_the_end_of_the_fault() {
        let mut samples: Vec<_> = (10..=40).map(|t| s(t, &[("a", G)], true)).collect();
        for t in 11..34 {
            samples[t - 10] = s(t as u64, &[("a", gap())], false);
        }
        let mut w = window(&["a"]);
        w.end = Duration::from_secs(40);
        w.healed = Duration::from_secs(30);
        assert!(judge(&w, &samples).lost.is_empty());
        w.healed = Duration::from_secs(10);
        assert!(judge(&w, &samples).lost["a"].contains("over the bound"));
    }

    #[test]
    fn unknown_samples_while_the_api_server_is_away_break_nothing() {
        let samples: Vec<_> = (10..=20)
            .map(|t| {
                s(
                    t,
                    &[("a", if t < 15 { RoomHealth::Unknown } else { G })],
                    t >= 15,
                )
            })
            .collect();
        let mut w = window(&[]);
        w.healed = Duration::from_secs(14);
        let r = judge(&w, &samples);
        assert!(r.affected.is_empty());
        assert_eq!(r.recovered_after, Some(Duration::from_secs(1)));
        assert_eq!(r.lasted, Duration::from_secs(4));
    }

    #[test]
    fn the_table_has_a_row_per_fault_and_names_lost_rooms() {
        let mut samples: Vec<_> = (10..=20).map(|t| s(t, &[("a", G)], true)).collect();
        samples[2] = s(12, &[("a", RoomHealth::Unplaced("Pending".into()))], false);
        let r = judge(&window(&[]), &samples);
        let t = table(&[r]);
        assert!(
            t.contains("| f | 0.0 s | 1 | 1 | 0 | 1.0 s | 3.0 s | 1 |"),
            "{t}"
        );
        assert!(t.contains("room a lost: unplaced (Pending) at +2 s"), "{t}");
    }
}
