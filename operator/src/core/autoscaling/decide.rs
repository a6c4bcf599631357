//! The autoscaling decision: how many nodes each zone runs, from its free slots, its buffer,
//! the rooms waiting for it, and how long it has had a node too many.
//!
//! - A zone short of free slots grows at once, by as many nodes as the shortfall needs.
//!   Nodes still starting count with all their slots, so one shortfall starts its nodes once.
//! - A zone with a whole node's slots more than it needs, for `scaleDownDelay` without a
//!   break, shrinks by one node per decision; [`crate::core::fleet_plan`] drains the emptiest
//!   node, and only a Drained (empty) node is ever deleted.
//! - Between the two, nothing changes: a zone grows to less than one node above its need, and
//!   shrinks only a whole node above it, so a steady load keeps a steady size.
//! - With the zone-failure reserve, the other zones together keep free slots for every room of
//!   any one zone, growing beyond their buffers if needed, and never shrinking below that.
//!
//! Pure: the clock and the memory of surplus come in with the inputs.

use std::fmt;

use jiff::{SignedDuration, Timestamp};

use super::policy::Policy;
use crate::core::ids::{ZoneId, ZoneMask};
use crate::core::request::RoomRequest;

/// One zone as the autoscaler sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneLoad {
    /// Nodes serving or about to: not draining, not failed.
    pub serving: u32,
    /// Of which not Ready yet (their slots all count as free).
    pub starting: u32,
    /// Free slots on the Ready serving nodes.
    pub free: u32,
    /// Slots used or reserved on the Ready serving nodes.
    pub used: u32,
    /// Most free slots on one Ready serving node.
    pub largest_free: u32,
    /// The zone is being evacuated: it neither grows nor shrinks here, and takes no demand.
    pub evacuated: bool,
    /// Every node of the zone failed (the zone is down): it is not counted on to take another
    /// zone's rooms.
    pub down: bool,
}

/// What the decision looks at.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    /// The operator's clock.
    pub now: Timestamp,
    /// Each zone, in the fleet's order.
    pub zones: &'a [ZoneLoad],
    /// Rooms waiting for a node: booked rooms within their lead time, and rooms no node could
    /// take yet.
    pub waiting: &'a [RoomRequest],
    /// What each zone's previous decisions left (missing: nothing).
    pub memory: &'a [ZoneMemory],
}

/// What a zone's decisions carry from one to the next (the fleet's status keeps it, so a
/// restarted operator goes on where the last one was).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ZoneMemory {
    /// Since when the zone has had a node too many.
    pub surplus_since: Option<Timestamp>,
    /// When it last shrank.
    pub last_scale_down: Option<Timestamp>,
}

/// Least time between two scale-down steps of a zone: the fleet's sync period, so that each
/// step sees the drain of the one before.
pub const STEP: SignedDuration = SignedDuration::from_secs(30);

/// Why a zone's size changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Below the zone's `minNodes`.
    BelowMinimum,
    /// Above the zone's `maxNodes`.
    AboveMaximum,
    /// Fewer free slots than the buffer.
    BufferShort,
    /// Rooms waiting for the zone (booked, or not placed yet) need more slots.
    Waiting,
    /// The other zones' rooms would not fit if one zone failed.
    ZoneReserve,
    /// A node more than needed for the whole scale-down delay.
    Surplus,
}

impl Reason {
    /// The reason as events and metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BelowMinimum => "BelowMinimum",
            Self::AboveMaximum => "AboveMaximum",
            Self::BufferShort => "BufferShort",
            Self::Waiting => "WaitingRooms",
            Self::ZoneReserve => "ZoneReserve",
            Self::Surplus => "Surplus",
        }
    }
}

/// One zone's decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneScale {
    /// Nodes it should run.
    pub desired: u32,
    /// Nodes it runs (serving or starting).
    pub current: u32,
    /// Free slots it keeps now.
    pub buffer: u32,
    /// The open window that sets the buffer, if any.
    pub window: Option<String>,
    /// Slots of the waiting rooms counted in it.
    pub waiting: u32,
    /// Free slots, counting those of nodes still starting.
    pub free: u32,
    /// Since when it has had a node too many.
    pub surplus_since: Option<Timestamp>,
    /// When it last shrank.
    pub last_scale_down: Option<Timestamp>,
    /// Why it changes size, if it does.
    pub reason: Option<Reason>,
    /// Short of slots at its `maxNodes`: it cannot grow further.
    pub limited: bool,
    /// When the decision would change with time alone (its surplus outlasting the delay, or
    /// the next step becoming due), for the shell to look again then.
    pub revisit: Option<Timestamp>,
}

impl ZoneScale {
    /// Writes the decision as an event's note, naming the zone: "zone fr-par-1: 140 free slots
    /// < buffer 200, +1 node".
    pub fn describe(&self, zone: &str) -> Option<String> {
        let reason = self.reason?;
        let delta = i64::from(self.desired) - i64::from(self.current);
        let nodes = if delta.abs() == 1 { "node" } else { "nodes" };
        let step = format!("{delta:+} {nodes} ({} → {})", self.current, self.desired);
        let buffer = match &self.window {
            Some(w) => format!("buffer {} (schedule {w})", self.buffer),
            None => format!("buffer {}", self.buffer),
        };
        let why = match reason {
            Reason::BelowMinimum => "below minNodes".to_string(),
            Reason::AboveMaximum => "above maxNodes".to_string(),
            Reason::BufferShort => format!("{} free slots < {buffer}", self.free),
            Reason::Waiting => format!(
                "{} free slots < {buffer} + {} slots of waiting or booked rooms",
                self.free, self.waiting
            ),
            Reason::ZoneReserve => {
                "the other zones could not take this one's rooms if one failed".to_string()
            }
            Reason::Surplus => format!(
                "{} free slots ≥ {buffer} + one node's slots since {}",
                self.free,
                self.surplus_since
                    .map_or_else(String::new, |t| t.to_string())
            ),
        };
        Some(format!("zone {zone}: {why}, {step}"))
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Nodes each zone should run.
pub fn decide(policy: &Policy, input: &Inputs<'_>) -> Vec<ZoneScale> {
    let slots = policy.node_slots.max(1);
    let zone = |z: usize| input.zones.get(z).copied().unwrap_or_default();
    let waiting = waiting_per_zone(policy, input);
    let delay = SignedDuration::try_from(policy.scale_down_delay).unwrap_or(SignedDuration::MAX);
    let mut out: Vec<ZoneScale> = policy
        .zones
        .iter()
        .enumerate()
        .map(|(z, bounds)| {
            let load = zone(z);
            let memory = input.memory.get(z).copied().unwrap_or_default();
            let (buffer, window) = policy.buffer_at(input.now, load.used);
            let (booked, fit_nodes) = waiting[z];
            let free = load
                .free
                .saturating_add(load.starting.saturating_mul(slots));
            let need = buffer.saturating_add(booked);
            let current = load.serving;
            let mut scale = ZoneScale {
                desired: current,
                current,
                buffer,
                window: window.map(str::to_string),
                waiting: booked,
                free,
                surplus_since: None,
                last_scale_down: memory.last_scale_down,
                reason: None,
                limited: false,
                revisit: None,
            };
            if load.evacuated {
                return scale;
            }
            let short = need.saturating_sub(free).div_ceil(slots).max(fit_nodes);
            if current < bounds.min_nodes {
                scale.desired = bounds.min_nodes;
                scale.reason = Some(Reason::BelowMinimum);
            } else if current > bounds.max_nodes {
                scale.desired = bounds.max_nodes;
                scale.reason = Some(Reason::AboveMaximum);
            } else if short > 0 {
                scale.desired = current.saturating_add(short).min(bounds.max_nodes);
                scale.limited = current.saturating_add(short) > bounds.max_nodes;
                scale.reason = (scale.desired > current).then_some(if free >= buffer {
                    Reason::Waiting
                } else {
                    Reason::BufferShort
                });
            } else if free >= need.saturating_add(slots) && current > bounds.min_nodes {
                let since = memory.surplus_since.unwrap_or(input.now);
                scale.surplus_since = Some(since);
                let stepped = memory
                    .last_scale_down
                    .is_some_and(|t| input.now.duration_since(t) < STEP);
                if input.now.duration_since(since) >= delay && !stepped {
                    scale.desired = current - 1;
                    scale.reason = Some(Reason::Surplus);
                    scale.last_scale_down = Some(input.now);
                }
                let due = since.checked_add(delay).unwrap_or(Timestamp::MAX);
                let step = scale
                    .last_scale_down
                    .and_then(|t| t.checked_add(STEP).ok())
                    .unwrap_or(Timestamp::MIN);
                scale.revisit = Some(due.max(step).max(input.now));
            }
            scale
        })
        .collect();
    if policy.zone_reserve {
        reserve(policy, input, &waiting, &mut out);
    }
    out
}

/// The waiting rooms' slots per zone, and the nodes needed for those no Ready node of the zone
/// fits. A room goes to the zone placement would try first: a preferred zone, then any it
/// allows, the one with the most free slots; a room larger than a node is left out (no node
/// would ever take it).
fn waiting_per_zone(policy: &Policy, input: &Inputs<'_>) -> Vec<(u32, u32)> {
    let n = policy.zones.len();
    let slots = policy.node_slots.max(1);
    let mut free: Vec<u64> = (0..n)
        .map(|z| {
            let load = input.zones.get(z).copied().unwrap_or_default();
            u64::from(load.free) + u64::from(load.starting) * u64::from(slots)
        })
        .collect();
    let mut booked = vec![0u32; n];
    let mut too_big = vec![0u64; n];
    let open = ZoneMask(
        (0..n)
            .filter(|z| !input.zones.get(*z).is_some_and(|l| l.evacuated))
            .fold(0, |m, z| m | (1 << z)),
    );
    for room in input.waiting {
        if room.slots > slots {
            continue;
        }
        let allowed = room.allowed.and(open);
        let preferred = room.preferred.and(allowed);
        let pool = if preferred.is_empty() {
            allowed
        } else {
            preferred
        };
        let Some(z) = pool
            .iter()
            .map(|ZoneId(z)| usize::from(z))
            .filter(|z| *z < n)
            .max_by_key(|z| (free[*z], std::cmp::Reverse(*z)))
        else {
            continue;
        };
        free[z] = free[z].saturating_sub(u64::from(room.slots));
        booked[z] = booked[z].saturating_add(room.slots);
        let load = input.zones.get(z).copied().unwrap_or_default();
        if room.slots > load.largest_free {
            too_big[z] += u64::from(room.slots);
        }
    }
    (0..n)
        .map(|z| {
            let starting = input.zones.get(z).map_or(0, |l| l.starting);
            let nodes = too_big[z].div_ceil(u64::from(slots));
            let nodes = u32::try_from(nodes)
                .unwrap_or(u32::MAX)
                .saturating_sub(starting);
            (booked[z], nodes)
        })
        .collect()
}

/// Grows the zones (the smallest first) until the others could take any one zone's rooms, and
/// cancels the scale-downs that would break that.
fn reserve(policy: &Policy, input: &Inputs<'_>, waiting: &[(u32, u32)], out: &mut [ZoneScale]) {
    let slots = i64::from(policy.node_slots.max(1));
    let n = out.len();
    let load = |z: usize| input.zones.get(z).copied().unwrap_or_default();
    let counted = |z: usize| !load(z).evacuated && !load(z).down;
    let used: Vec<i64> = (0..n)
        .map(|z| i64::from(load(z).used) + i64::from(waiting[z].0))
        .collect();
    let free_after = |out: &[ZoneScale], z: usize| -> i64 {
        if !counted(z) {
            return 0;
        }
        i64::from(out[z].free) - i64::from(waiting[z].0)
            + (i64::from(out[z].desired) - i64::from(out[z].current)) * slots
    };
    let deficit = |out: &[ZoneScale]| -> Option<(usize, i64)> {
        let total: i64 = (0..n).map(|z| free_after(out, z)).sum();
        (0..n)
            .filter(|z| counted(*z))
            .map(|z| (z, used[z] - (total - free_after(out, z))))
            .max_by_key(|(z, d)| (*d, std::cmp::Reverse(*z)))
    };
    // A scale-down that would leave some zone's rooms nowhere to go waits (its surplus is
    // remembered: it goes once the others have room).
    for z in 0..n {
        if out[z].reason == Some(Reason::Surplus) && deficit(out).is_some_and(|(_, d)| d > 0) {
            out[z].desired = out[z].current;
            out[z].reason = None;
            out[z].last_scale_down = input.memory.get(z).and_then(|m| m.last_scale_down);
        }
    }
    while let Some((worst, d)) = deficit(out) {
        if d <= 0 {
            break;
        }
        let grow = (0..n)
            .filter(|y| *y != worst && counted(*y) && out[*y].desired < policy.zones[*y].max_nodes)
            .min_by_key(|y| (out[*y].desired, *y));
        let Some(y) = grow else {
            // No zone can grow: the reserve cannot be kept, which the fleet says.
            for (z, scale) in out.iter_mut().enumerate() {
                if counted(z) {
                    scale.limited = true;
                }
            }
            break;
        };
        out[y].desired += 1;
        if out[y].reason.is_none() {
            out[y].reason = Some(Reason::ZoneReserve);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::core::share::Share;
    use crate::core::snapshot::ZoneRules;
    use proptest::prelude::*;

    const SLOTS: u32 = 100;

    fn policy(buffer: u32, bounds: &[(u32, u32)], reserve: bool) -> Policy {
        Policy {
            buffer: Share::Count(buffer),
            windows: Vec::new(),
            scale_down_delay: Duration::from_secs(600),
            node_slots: SLOTS,
            zone_reserve: reserve,
            zones: bounds
                .iter()
                .enumerate()
                .map(|(i, (min, max))| ZoneRules {
                    name: format!("z{i}"),
                    min_nodes: *min,
                    max_nodes: *max,
                })
                .collect(),
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// `nodes` Ready nodes using `used` slots in all, filled one after the other.
    fn ready(nodes: u32, used: u32) -> ZoneLoad {
        let used = used.min(nodes * SLOTS);
        ZoneLoad {
            serving: nodes,
            starting: 0,
            free: nodes * SLOTS - used,
            used,
            largest_free: if nodes == 0 {
                0
            } else {
                SLOTS.min(nodes * SLOTS - used)
            },
            evacuated: false,
            down: false,
        }
    }

    fn run(
        p: &Policy,
        zones: &[ZoneLoad],
        since: &[Option<Timestamp>],
        now: i64,
    ) -> Vec<ZoneScale> {
        let memory: Vec<ZoneMemory> = since
            .iter()
            .map(|s| ZoneMemory {
                surplus_since: *s,
                last_scale_down: None,
            })
            .collect();
        decide(
            p,
            &Inputs {
                now: t(now),
                zones,
                waiting: &[],
                memory: &memory,
            },
        )
    }

    #[test]
    fn a_short_buffer_grows_the_zone_at_once_and_says_why() {
        let p = policy(200, &[(1, 20)], false);
        let out = run(&p, &[ready(3, 160)], &[None], 0);
        assert_eq!(out[0].desired, 4, "140 free < 200: one node");
        assert_eq!(
            out[0].describe("fr-par-1").as_deref(),
            Some("zone fr-par-1: 140 free slots < buffer 200, +1 node (3 → 4)")
        );
        let out = run(&p, &[ready(3, 290)], &[None], 0);
        assert_eq!(out[0].desired, 5, "10 free, 190 short: two nodes at once");
    }

    #[test]
    fn nodes_still_starting_count_so_one_shortfall_starts_its_nodes_once() {
        let p = policy(200, &[(1, 20)], false);
        let mut zone = ready(3, 290);
        zone.serving += 2;
        zone.starting = 2;
        assert_eq!(run(&p, &[zone], &[None], 0)[0].desired, 5);
    }

    #[test]
    fn surplus_shrinks_one_node_only_after_the_delay() {
        let p = policy(100, &[(1, 20)], false);
        let load = [ready(6, 100)];
        let first = run(&p, &load, &[None], 0);
        assert_eq!(first[0].desired, 6, "surplus just began");
        assert_eq!(first[0].surplus_since, Some(t(0)));
        assert_eq!(run(&p, &load, &[Some(t(0))], 599)[0].desired, 6);
        let after = run(&p, &load, &[Some(t(0))], 600);
        assert_eq!(after[0].desired, 5, "one step at a time, not straight to 2");
        assert_eq!(after[0].reason, Some(Reason::Surplus));
        assert_eq!(after[0].last_scale_down, Some(t(600)));
        let memory = [ZoneMemory {
            surplus_since: Some(t(0)),
            last_scale_down: Some(t(600)),
        }];
        let zones = [ready(5, 100)];
        let input = |now| Inputs {
            now: t(now),
            zones: &zones,
            waiting: &[],
            memory: &memory,
        };
        assert_eq!(
            decide(&p, &input(610))[0].desired,
            5,
            "the next step waits for the sync period"
        );
        assert_eq!(decide(&p, &input(630))[0].desired, 4);
        // The surplus ends: its memory goes with it.
        assert_eq!(
            run(&p, &[ready(6, 450)], &[Some(t(0))], 700)[0].surplus_since,
            None
        );
    }

    #[test]
    fn a_schedule_window_raises_the_buffer_ahead_of_the_morning() {
        let mut p = policy(100, &[(1, 20)], false);
        let spec = ruche_crds::fleet::ScheduleWindow {
            name: "mornings".into(),
            days: Vec::new(),
            start: "07:00".into(),
            end: "10:00".into(),
            time_zone: "Europe/Paris".into(),
            buffer_slots: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(500),
        };
        p.windows
            .push(super::super::schedule::Window::parse(&spec).unwrap_or_else(|e| panic!("{e}")));
        let at = |text: &str| text.parse::<Timestamp>().unwrap_or(Timestamp::UNIX_EPOCH);
        let zones = [ready(2, 50)];
        let memory = [ZoneMemory::default()];
        let input = |now| Inputs {
            now,
            zones: &zones,
            waiting: &[],
            memory: &memory,
        };
        let before = decide(&p, &input(at("2026-06-01T04:59:00Z")));
        assert_eq!(before[0].desired, 2);
        let open = decide(&p, &input(at("2026-06-01T05:00:00Z")));
        assert_eq!((open[0].desired, open[0].buffer), (6, 500));
        assert_eq!(
            open[0].describe("fr-par-1").as_deref(),
            Some(
                "zone fr-par-1: 150 free slots < buffer 500 (schedule mornings), +4 nodes (2 → 6)"
            )
        );
    }

    #[test]
    fn a_zone_that_is_down_is_not_counted_on_for_the_reserve() {
        let p = policy(0, &[(1, 20), (1, 20), (1, 20)], true);
        let mut down = ZoneLoad {
            down: true,
            ..ZoneLoad::default()
        };
        down.evacuated = false;
        // Zone 0 is down: zone 1's 380 used slots must fit in zone 2 alone (300 free).
        let zones = [down, ready(4, 380), ready(3, 0)];
        let out = run(&p, &zones, &[None; 3], 0);
        assert_eq!(out[0].desired, 1, "only its minimum: {out:?}");
        assert_eq!(
            out[2].desired, 4,
            "zone 2 grows to take zone 1's rooms: {out:?}"
        );
    }

    #[test]
    fn waiting_rooms_count_in_the_zone_they_would_use() {
        let p = policy(50, &[(1, 20), (1, 20)], false);
        let zones = [ready(2, 50), ready(2, 120)];
        let plenary = RoomRequest {
            slots: 90,
            allowed: ZoneMask::single(ZoneId(1)),
            preferred: ZoneMask::default(),
            home: None,
        };
        let out = decide(
            &p,
            &Inputs {
                now: t(0),
                zones: &zones,
                waiting: &[plenary],
                memory: &[ZoneMemory::default(); 2],
            },
        );
        assert_eq!((out[0].desired, out[1].desired), (2, 3));
        assert_eq!(out[1].reason, Some(Reason::Waiting));
        assert_eq!(out[1].waiting, 90);
        // Larger than a node: no node would ever take it, so it is no demand.
        let huge = RoomRequest {
            slots: 300,
            ..plenary
        };
        let out = decide(
            &p,
            &Inputs {
                now: t(0),
                zones: &zones,
                waiting: &[huge],
                memory: &[ZoneMemory::default(); 2],
            },
        );
        assert_eq!(out[1].desired, 2);
    }

    #[test]
    fn the_reserve_keeps_room_for_any_one_failed_zone() {
        let p = policy(0, &[(1, 20), (1, 20), (1, 20)], true);
        // Zone 0 holds 600 used slots; zones 1 and 2 together have 200 free.
        let zones = [ready(6, 600), ready(2, 100), ready(2, 100)];
        let out = run(&p, &zones, &[None; 3], 0);
        let grown = out[1].desired + out[2].desired - 4;
        assert_eq!(grown, 4, "400 more free slots over zones 1 and 2: {out:?}");
        assert_eq!(out[1].reason, Some(Reason::ZoneReserve));
        // A surplus that the reserve needs stays.
        let zones = [ready(7, 700), ready(5, 100), ready(5, 100)];
        let out = run(&p, &zones, &[None, Some(t(0)), Some(t(0))], 3600);
        assert_eq!(
            (out[1].desired, out[2].desired),
            (5, 4),
            "800 free, 700 needed: one node may go, not two"
        );
        assert_eq!(
            out[1].surplus_since,
            Some(t(0)),
            "its surplus is remembered"
        );
    }

    fn load() -> impl Strategy<Value = ZoneLoad> {
        (0u32..15, 0u32..4, 0u32..1600, any::<bool>()).prop_map(|(nodes, starting, used, ev)| {
            let mut z = ready(nodes, used);
            z.serving += starting;
            z.starting = starting;
            z.evacuated = ev && nodes % 5 == 0;
            z
        })
    }

    proptest! {
        #[test]
        fn decisions_stay_in_bounds_wait_for_the_delay_and_repeat(
            bounds in prop::collection::vec((0u32..4, 4u32..14), 3),
            zones in prop::collection::vec(load(), 3),
            buffer in 0u32..500,
            since in prop::collection::vec(prop::option::of(0i64..1200), 3),
            now in 0i64..1200,
            reserve in any::<bool>(),
        ) {
            let p = policy(buffer, &bounds, reserve);
            let since: Vec<Option<Timestamp>> = since.into_iter().map(|s| s.map(t)).collect();
            let out = run(&p, &zones, &since, now);
            prop_assert_eq!(&out, &run(&p, &zones, &since, now), "the same inputs, the same decision");
            for (z, (scale, b)) in out.iter().zip(&p.zones).enumerate() {
                if zones[z].evacuated {
                    prop_assert_eq!(scale.desired, scale.current);
                    continue;
                }
                prop_assert!(scale.desired >= b.min_nodes && scale.desired <= b.max_nodes, "{scale:?} {b:?}");
                if scale.desired < scale.current && scale.current <= b.max_nodes {
                    prop_assert_eq!(scale.desired, scale.current - 1, "one step at a time");
                    let since = scale.surplus_since.unwrap_or(t(now));
                    prop_assert!(t(now).duration_since(since) >= SignedDuration::from_secs(600));
                    prop_assert!(scale.free >= scale.buffer + SLOTS);
                }
                // Short of the buffer: grows in this decision, to the buffer or to maxNodes.
                if scale.free < scale.buffer && scale.current >= b.min_nodes && scale.current <= b.max_nodes {
                    let after = scale.free + (scale.desired - scale.current) * SLOTS;
                    prop_assert!(after >= scale.buffer || scale.desired == b.max_nodes, "{scale:?}");
                }
            }
            if reserve && out.iter().all(|s| !s.limited) {
                let free: Vec<i64> = out.iter().enumerate().map(|(z, s)| if zones[z].evacuated { 0 } else {
                    i64::from(s.free) + (i64::from(s.desired) - i64::from(s.current)) * i64::from(SLOTS)
                }).collect();
                let total: i64 = free.iter().sum();
                for (z, zone) in zones.iter().enumerate().filter(|(_, z)| !z.evacuated) {
                    prop_assert!(i64::from(zone.used) <= total - free[z], "zone {z} has nowhere to go: {out:?}");
                }
            }
        }

        /// A steady load settles, then keeps a steady size: never up then down, never down
        /// then up.
        #[test]
        fn a_steady_load_keeps_a_steady_size(
            used in 0u32..3000,
            start in 1u32..30,
            buffer in 0u32..400,
            percent in any::<bool>(),
        ) {
            let mut p = policy(buffer, &[(1, 40)], false);
            if percent {
                p.buffer = Share::Percent(buffer / 4);
            }
            let mut nodes = start;
            let mut memory = ZoneMemory::default();
            let mut sizes = Vec::new();
            for step in 0..200 {
                let out = decide(&p, &Inputs { now: t(step * 30), zones: &[ready(nodes, used)], waiting: &[], memory: &[memory] });
                memory = ZoneMemory { surplus_since: out[0].surplus_since, last_scale_down: out[0].last_scale_down };
                nodes = out[0].desired;
                sizes.push(nodes);
            }
            let changes: Vec<i64> = sizes.windows(2).map(|w| i64::from(w[1]) - i64::from(w[0])).filter(|d| *d != 0).collect();
            prop_assert!(changes.iter().all(|d| *d > 0) || changes.iter().all(|d| *d < 0), "flapped: {sizes:?}");
            prop_assert_eq!(sizes[150..].iter().min(), sizes[150..].iter().max(), "not settled: {:?}", sizes);
        }
    }
}
