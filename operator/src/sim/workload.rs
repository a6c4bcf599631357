//! The day's meetings, drawn from the scenario's workload with its seed.
//!
//! Draws use ChaCha8 and our own conversions from its raw output, so the same seed gives the
//! same meetings on every machine and with every version of the sampling libraries.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

use super::clock::TimeOfDay;
use super::scenario::{ArrivalRate, Scenario};

/// One meeting of the simulated day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meeting {
    /// Sequence number (the room is `room-<n>`).
    pub id: u32,
    /// When it asks for a room.
    pub start: TimeOfDay,
    /// Slots it reserves.
    pub slots: u32,
    /// How long it lasts, in seconds.
    pub duration: u32,
    /// Index into the workload's zone choices (`None`: anywhere, or the booking's own).
    pub zones: Option<usize>,
    /// Index into the workload's bookings, for a meeting booked ahead.
    pub booking: Option<usize>,
}

/// A seeded source of the draws the workload needs.
struct Draws(ChaCha8Rng);

impl Draws {
    /// Uniform in [0, 1), from the top 53 bits.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Index into `weights`, proportionally to them (at least one must be non-zero).
    fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        let mut pick = self.0.next_u64() % total.max(1);
        for (i, w) in weights.iter().enumerate() {
            if pick < u64::from(*w) {
                return i;
            }
            pick -= u64::from(*w);
        }
        weights.len().saturating_sub(1)
    }
}

/// Meetings per minute at `t`: linear between the scenario's points, flat outside them.
pub fn rate_at(points: &[ArrivalRate], seconds: f64) -> f64 {
    let at = |p: &ArrivalRate| f64::from(p.at.value.seconds());
    match points.iter().position(|p| at(p) > seconds) {
        None => points.last().map_or(0.0, |p| p.per_minute.value),
        Some(0) => points[0].per_minute.value,
        Some(next) => {
            let (before, after) = (&points[next - 1], &points[next]);
            let share = (seconds - at(before)) / (at(after) - at(before));
            before.per_minute.value + share * (after.per_minute.value - before.per_minute.value)
        }
    }
}

/// Draws the day's meetings, and adds the booked ones, in start order.
pub fn meetings(scenario: &Scenario) -> Vec<Meeting> {
    let w = &scenario.workload;
    let mut draws = Draws(ChaCha8Rng::seed_from_u64(scenario.seed));
    let size_weights: Vec<u32> = w.sizes.iter().map(|s| s.weight.value).collect();
    let duration_weights: Vec<u32> = w.durations.iter().map(|d| d.weight.value).collect();
    let zone_weights: Vec<u32> = w.zones.iter().map(|z| z.weight.value).collect();
    let peak = w
        .arrivals
        .iter()
        .map(|a| a.per_minute.value)
        .fold(0.0, f64::max);
    let (start, end) = (
        f64::from(scenario.day.start.value.seconds()),
        f64::from(scenario.day.end.value.seconds()),
    );
    let mut out = Vec::new();
    if peak <= 0.0 {
        return out;
    }
    // A Poisson process with a time-varying rate, by thinning: candidates at the peak rate,
    // each kept with probability rate(t) / peak.
    let mut t = start;
    loop {
        t += -(1.0 - draws.unit()).ln() * 60.0 / peak;
        if t >= end {
            break;
        }
        if draws.unit() * peak >= rate_at(&w.arrivals, t) {
            continue;
        }
        let size = &w.sizes[draws.weighted(&size_weights)];
        let booked = w.durations[draws.weighted(&duration_weights)].minutes.value * 60;
        // Meetings end at, or a little before, the end of their booked slot.
        let duration = ((f64::from(booked) * (0.75 + 0.25 * draws.unit())) as u32).max(60);
        let zones = (!w.zones.is_empty()).then(|| draws.weighted(&zone_weights));
        out.push(Meeting {
            id: out.len() as u32,
            start: TimeOfDay(t as u32),
            slots: size.slots.value,
            duration,
            zones,
            booking: None,
        });
    }
    for (i, b) in w.bookings.iter().enumerate() {
        for _ in 0..b.count.value {
            out.push(Meeting {
                id: out.len() as u32,
                start: b.at.value,
                slots: b.slots.value,
                duration: b.minutes.value * 60,
                zones: None,
                booking: Some(i),
            });
        }
    }
    out.sort_by_key(|m| (m.start, m.id));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::scenario::MINISTRY_DAY;

    #[test]
    fn same_seed_same_meetings_other_seed_other_meetings() {
        let mut s = Scenario::parse(MINISTRY_DAY, "ministry-day").unwrap();
        let a = meetings(&s);
        assert_eq!(a, meetings(&s));
        s.seed += 1;
        assert_ne!(a, meetings(&s));
    }

    #[test]
    fn arrivals_follow_the_rate_curve() {
        let s = Scenario::parse(MINISTRY_DAY, "ministry-day").unwrap();
        let m = meetings(&s);
        let count = |from: TimeOfDay, to: TimeOfDay| {
            m.iter().filter(|x| x.start >= from && x.start < to).count() as f64
        };
        // Expected counts are the integral of the rate; allow generous noise.
        let peak = count(TimeOfDay::hm(9, 0), TimeOfDay::hm(10, 0));
        let lunch = count(TimeOfDay::hm(12, 0), TimeOfDay::hm(13, 0));
        assert!(
            (1400.0..1900.0).contains(&peak),
            "09:00-10:00 had {peak} meetings, expected about 1650"
        );
        assert!(
            (250.0..420.0).contains(&lunch),
            "12:00-13:00 had {lunch} meetings, expected about 330"
        );
        assert!(m.windows(2).all(|w| w[0].start <= w[1].start));
        assert!(m.iter().all(|x| x.duration >= 60 && x.duration <= 120 * 60));
    }

    #[test]
    fn rate_is_linear_between_points_and_flat_outside() {
        let s = Scenario::parse(MINISTRY_DAY, "ministry-day").unwrap();
        let a = &s.workload.arrivals;
        let at = |h, m| f64::from(TimeOfDay::hm(h, m).seconds());
        // Between 09:04 (26 a minute) and 09:30 (30).
        assert!((rate_at(a, at(9, 17)) - 28.0).abs() < 1e-9);
        assert!((rate_at(a, at(6, 0)) - 1.0).abs() < 1e-9);
        assert!(rate_at(a, at(21, 0)).abs() < 1e-9);
    }
}
