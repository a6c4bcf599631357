//! Which simulcast layer each of a subscriber's video tracks gets, from the bandwidth the
//! subscriber's connection is estimated to carry (send-side estimation from its
//! transport-wide congestion control feedback).
//!
//! The budget is the estimate with some headroom, less what the subscriber's other streams
//! (audio, tracks without layers) take. Every video track first gets its lowest layer; the
//! rest of the budget then raises tracks one layer at a time, in turn, never above a layer the
//! subscriber asked for (`setLayer`), so that what a capped track does not use goes to the
//! others. What is left then sets how far a capped track could go: its limit is that, and the
//! subscriber's cap applies on top (dropping the cap needs no new decision to take effect).
//! A track whose layers have no measured bitrate yet is left alone.
//!
//! Downgrades apply at once: a congested link is what makes video freeze. Upgrades wait until
//! the estimate has covered the higher layer for a hold time: the estimate climbs in small
//! steps after congestion, and switching up on each step would congest the link again. The
//! estimate also climbs past what a link carries while less is sent on it (nothing probes the
//! link), so an upgrade is a trial: when congestion follows within [`FAILED_UPGRADE`], the hold
//! before the next one doubles (up to [`MAX_HOLD`]), and a link that stays too narrow for the
//! higher layer sees a trial ever more rarely. An upgrade that holds resets it.

use std::time::{Duration, Instant};

use super::tracks::TrackKey;
use crate::media::Layer;

/// Share of the estimate the allocation spends; the rest absorbs a keyframe's burst and the
/// estimate's error.
pub const HEADROOM: f64 = 0.85;
/// How long the estimate must allow a higher layer before the subscriber gets it, at first.
pub const UPGRADE_HOLD: Duration = Duration::from_secs(3);
/// The longest hold, after upgrades that failed one after another.
pub const MAX_HOLD: Duration = Duration::from_secs(24);
/// A downgrade this soon after an upgrade means the upgrade failed.
pub const FAILED_UPGRADE: Duration = Duration::from_secs(6);

/// One of the subscriber's video tracks, as the allocation sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct VideoTrack {
    /// Which track.
    pub track: TrackKey,
    /// Its layers the publisher sends, lowest first, with their measured bitrates (bit/s).
    pub layers: Vec<(Layer, u64)>,
    /// The subscriber's own cap (`setLayer`), if any.
    pub preferred: Option<Layer>,
    /// The layer the allocation gives it now (`None`: not limited yet).
    pub current: Option<Layer>,
}

/// The best layers `tracks` can have within `budget` bit/s (a layer per track, in order).
pub fn fit(budget: f64, tracks: &[VideoTrack]) -> Vec<Option<Layer>> {
    // Index of the chosen layer per track: the lowest first, always.
    let mut chosen: Vec<Option<usize>> = tracks
        .iter()
        .map(|t| (!t.layers.is_empty()).then_some(0))
        .collect();
    let rate = |t: &VideoTrack, i: usize| t.layers.get(i).map_or(0.0, |(_, bps)| *bps as f64);
    let mut spent: f64 = tracks
        .iter()
        .zip(&chosen)
        .map(|(t, c)| c.map_or(0.0, |i| rate(t, i)))
        .sum();
    // Raise tracks one layer at a time, in turn, while the next step fits: first within the
    // subscriber's caps, then (with what is left) past them.
    for within_caps in [true, false] {
        loop {
            let mut raised = false;
            for (t, c) in tracks.iter().zip(chosen.iter_mut()) {
                let Some(i) = *c else { continue };
                let Some(&(next, _)) = t.layers.get(i + 1) else {
                    continue;
                };
                if within_caps && t.preferred.is_some_and(|cap| next > cap) {
                    continue;
                }
                let extra = rate(t, i + 1) - rate(t, i);
                if spent + extra <= budget {
                    spent += extra;
                    *c = Some(i + 1);
                    raised = true;
                }
            }
            if !raised {
                break;
            }
        }
    }
    tracks
        .iter()
        .zip(chosen)
        .map(|(t, c)| c.and_then(|i| t.layers.get(i).map(|(layer, _)| *layer)))
        .collect()
}

/// One subscriber's allocation over time: the upgrade it is waiting to make, if any, and how
/// long upgrades must wait.
#[derive(Debug)]
pub struct Adaptation {
    /// Since when the estimate has allowed more than the subscriber gets.
    upgrade_allowed_since: Option<Instant>,
    /// The hold before the next upgrade.
    hold: Duration,
    /// The last upgrade, while it may still turn out to have failed.
    last_upgrade: Option<Instant>,
}

impl Default for Adaptation {
    fn default() -> Self {
        Self {
            upgrade_allowed_since: None,
            hold: UPGRADE_HOLD,
            last_upgrade: None,
        }
    }
}

impl Adaptation {
    /// The layer each track should get now, given the estimate (bit/s) and what the
    /// subscriber's streams other than these video tracks take (bit/s).
    pub fn decide(
        &mut self,
        now: Instant,
        estimate: f64,
        other_streams: f64,
        tracks: &[VideoTrack],
    ) -> Vec<Option<Layer>> {
        if tracks
            .iter()
            .any(|t| t.layers.iter().any(|(_, bps)| *bps == 0))
        {
            // A layer not measured yet (it just started): nothing sound to decide on.
            return tracks.iter().map(|t| t.current).collect();
        }
        let budget = (estimate * HEADROOM - other_streams).max(0.0);
        let fitting = fit(budget, tracks);
        let mut decided = Vec::with_capacity(tracks.len());
        let mut wants_up = false;
        // An upgrade that held long enough succeeded: the next one needs the first hold only.
        if let Some(at) = self.last_upgrade
            && now.saturating_duration_since(at) >= FAILED_UPGRADE
        {
            self.last_upgrade = None;
            self.hold = UPGRADE_HOLD;
        }
        for (t, fits) in tracks.iter().zip(&fitting) {
            match (t.current, fits) {
                // Not limited yet: the first decision applies as it is.
                (None, _) => decided.push(*fits),
                (Some(now_layer), Some(f)) if *f < now_layer => {
                    if self.last_upgrade.take().is_some() {
                        // The last upgrade congested the link: wait longer before the next.
                        self.hold = (self.hold * 2).min(MAX_HOLD);
                    }
                    decided.push(Some(*f));
                }
                (Some(now_layer), Some(f)) if *f > now_layer => {
                    wants_up = true;
                    decided.push(Some(now_layer));
                }
                (current, _) => decided.push(current),
            }
        }
        if !wants_up {
            self.upgrade_allowed_since = None;
            return decided;
        }
        let since = *self.upgrade_allowed_since.get_or_insert(now);
        if now.saturating_duration_since(since) < self.hold {
            return decided;
        }
        // Held long enough: up one layer per track (the next decision may go further, after
        // another hold).
        self.upgrade_allowed_since = None;
        self.last_upgrade = Some(now);
        tracks
            .iter()
            .zip(fitting)
            .zip(decided)
            .map(|((t, fits), kept)| match (kept, fits) {
                (Some(k), Some(f)) if f > k => t
                    .layers
                    .iter()
                    .map(|(l, _)| *l)
                    .find(|l| *l > k)
                    .or(Some(k)),
                _ => kept,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOW: u64 = 150_000;
    const MEDIUM: u64 = 500_000;
    const HIGH: u64 = 1_500_000;

    fn track(key: TrackKey, current: Option<Layer>) -> VideoTrack {
        VideoTrack {
            track: key,
            layers: vec![
                (Layer::Low, LOW),
                (Layer::Medium, MEDIUM),
                (Layer::High, HIGH),
            ],
            preferred: None,
            current,
        }
    }

    #[test]
    fn every_track_gets_its_lowest_layer_then_the_budget_raises_them_in_turn() {
        let tracks = [track(1, None), track(2, None)];
        assert_eq!(fit(0.0, &tracks), vec![Some(Layer::Low); 2]);
        // Enough to raise one track to medium, not both.
        assert_eq!(
            fit((LOW + MEDIUM) as f64 + 10.0, &tracks),
            vec![Some(Layer::Medium), Some(Layer::Low)]
        );
        assert_eq!(
            fit((2 * MEDIUM) as f64, &tracks),
            vec![Some(Layer::Medium); 2]
        );
        assert_eq!(fit(1e9, &tracks), vec![Some(Layer::High); 2]);
    }

    #[test]
    fn what_a_capped_track_leaves_goes_to_the_others_first() {
        let mut capped = track(1, None);
        capped.preferred = Some(Layer::Low);
        let free = track(2, None);
        // Room for one track on high and one on low: the uncapped one gets high.
        let budget = (HIGH + LOW) as f64;
        assert_eq!(
            fit(budget, &[capped.clone(), free.clone()]),
            vec![Some(Layer::Low), Some(Layer::High)]
        );
        // With room to spare, the capped track's limit is what it could have (its cap still
        // applies in forwarding): dropping the cap needs no new decision.
        assert_eq!(
            fit(1e9, &[capped, free]),
            vec![Some(Layer::High), Some(Layer::High)]
        );
    }

    #[test]
    fn a_track_without_layers_is_not_limited() {
        let plain = VideoTrack {
            track: 1,
            layers: vec![],
            preferred: None,
            current: None,
        };
        assert_eq!(fit(1e9, &[plain]), vec![None]);
    }

    #[test]
    fn congestion_downgrades_at_once() {
        let mut a = Adaptation::default();
        let t0 = Instant::now();
        let tracks = [track(1, Some(Layer::High))];
        // The estimate fell to what the low layer needs.
        let decided = a.decide(t0, LOW as f64 / HEADROOM + 1.0, 0.0, &tracks);
        assert_eq!(decided, vec![Some(Layer::Low)]);
    }

    #[test]
    fn an_upgrade_waits_for_the_estimate_to_hold_and_goes_one_layer_at_a_time() {
        let mut a = Adaptation::default();
        let t0 = Instant::now();
        let tracks = [track(1, Some(Layer::Low))];
        let plenty = 10.0 * HIGH as f64;
        assert_eq!(a.decide(t0, plenty, 0.0, &tracks), vec![Some(Layer::Low)]);
        let almost = t0 + UPGRADE_HOLD.saturating_sub(Duration::from_millis(1));
        assert_eq!(
            a.decide(almost, plenty, 0.0, &tracks),
            vec![Some(Layer::Low)]
        );
        let held = t0 + UPGRADE_HOLD;
        assert_eq!(
            a.decide(held, plenty, 0.0, &tracks),
            vec![Some(Layer::Medium)]
        );
        // The next step waits for a hold of its own.
        let tracks = [track(1, Some(Layer::Medium))];
        assert_eq!(
            a.decide(held, plenty, 0.0, &tracks),
            vec![Some(Layer::Medium)]
        );
        let later = held + UPGRADE_HOLD;
        assert_eq!(
            a.decide(later, plenty, 0.0, &tracks),
            vec![Some(Layer::High)]
        );
    }

    #[test]
    fn an_upgrade_that_congests_the_link_makes_the_next_one_wait_longer() {
        let mut a = Adaptation::default();
        let plenty = 10.0 * HIGH as f64;
        let narrow = LOW as f64 / HEADROOM + 1.0;
        let low = [track(1, Some(Layer::Low))];
        let medium = [track(1, Some(Layer::Medium))];
        let mut t = Instant::now();
        let mut holds = Vec::new();
        for _ in 0..5 {
            // The estimate climbs past the link while only the low layer is sent...
            let since = t;
            a.decide(t, plenty, 0.0, &low);
            while a.decide(t, plenty, 0.0, &low) == vec![Some(Layer::Low)] {
                t += Duration::from_millis(250);
            }
            holds.push(t - since);
            // ...and the trial congests it at once.
            t += Duration::from_secs(1);
            assert_eq!(a.decide(t, narrow, 0.0, &medium), vec![Some(Layer::Low)]);
        }
        let secs: Vec<u64> = holds.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, vec![3, 6, 12, 24, 24], "{holds:?}");
        // An upgrade that holds brings the first hold back.
        let since = t;
        a.decide(t, plenty, 0.0, &low);
        while a.decide(t, plenty, 0.0, &low) == vec![Some(Layer::Low)] {
            t += Duration::from_millis(250);
        }
        assert_eq!((t - since).as_secs(), 24);
        t += FAILED_UPGRADE;
        let since = t;
        a.decide(t, plenty, 0.0, &medium);
        while a.decide(t, plenty, 0.0, &medium) == vec![Some(Layer::Medium)] {
            t += Duration::from_millis(250);
        }
        assert_eq!(t - since, UPGRADE_HOLD);
    }

    #[test]
    fn a_dip_during_the_hold_starts_it_again() {
        let mut a = Adaptation::default();
        let t0 = Instant::now();
        let tracks = [track(1, Some(Layer::Low))];
        let plenty = 10.0 * HIGH as f64;
        a.decide(t0, plenty, 0.0, &tracks);
        // Halfway, the estimate only allows what the track has.
        let dip = t0 + UPGRADE_HOLD / 2;
        assert_eq!(
            a.decide(dip, LOW as f64, 0.0, &tracks),
            vec![Some(Layer::Low)]
        );
        let after = t0 + UPGRADE_HOLD;
        assert_eq!(
            a.decide(after, plenty, 0.0, &tracks),
            vec![Some(Layer::Low)]
        );
        assert_eq!(
            a.decide(after + UPGRADE_HOLD, plenty, 0.0, &tracks),
            vec![Some(Layer::Medium)]
        );
    }

    #[test]
    fn other_streams_come_out_of_the_budget() {
        let mut a = Adaptation::default();
        let tracks = [track(1, None)];
        let estimate = (MEDIUM as f64) / HEADROOM + 1.0;
        assert_eq!(
            a.decide(Instant::now(), estimate, 0.0, &tracks),
            vec![Some(Layer::Medium)]
        );
        let mut a = Adaptation::default();
        assert_eq!(
            a.decide(Instant::now(), estimate, 100_000.0, &tracks),
            vec![Some(Layer::Low)]
        );
    }
}
