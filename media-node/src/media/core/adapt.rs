//! The engine's side of adaptive layers: gathers what [`allocation`](super::allocation)
//! decides on (a subscriber's estimate, its tracks' layers and bitrates, its own caps) and
//! applies the decision as each subscription's layer limit.

use std::time::{Duration, Instant};

use super::allocation::VideoTrack;
use super::demux::PeerKey;
use super::{Engine, Role};

/// How often a subscriber's allocation is reconsidered, at most (the estimate moves every
/// 200 ms or so, as feedback arrives).
pub const ADAPT_EVERY: Duration = Duration::from_millis(250);

impl Engine {
    /// Reconsiders the layers of subscribe connection `key` if its estimate allows a decision
    /// and the last one is old enough.
    pub(crate) fn adapt(&mut self, key: PeerKey, now: Instant) {
        let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        if peer.role != Role::Subscribe || peer.next_adapt.is_some_and(|at| now < at) {
            return;
        }
        let Some(estimate) = peer.estimate.get() else {
            return;
        };
        peer.next_adapt = Some(now + ADAPT_EVERY);
        let owner = peer.owner;
        tracing::trace!(participant = %owner, estimate, "bandwidth estimate");
        let Some(participant) = self.participants.get(&owner) else {
            return;
        };
        let mut video = Vec::new();
        let mut other_streams = 0u64;
        for &track in participant.subscriptions.values() {
            let Some(t) = self.tracks.get(&track) else {
                continue;
            };
            let Some(s) = t.subscribers.iter().find(|s| s.participant == owner) else {
                continue;
            };
            let layers: Vec<_> = t
                .layers
                .iter()
                .filter_map(|(layer, ssrc)| layer.map(|l| (l, t.meter.rate(*ssrc))))
                .collect();
            if t.video.is_some() && !layers.is_empty() && layers.len() == t.layers.len() {
                video.push(VideoTrack {
                    track,
                    layers,
                    preferred: s.selector.preferred(),
                    current: s.selector.limited_to(),
                });
            } else {
                // Audio, or video without layers: what it carries is not ours to choose.
                other_streams += t
                    .layers
                    .values()
                    .map(|ssrc| t.meter.rate(*ssrc))
                    .max()
                    .unwrap_or(0);
            }
        }
        if video.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let decided = peer
            .adaptation
            .decide(now, estimate as f64, other_streams as f64, &video);
        let mut changed = Vec::new();
        for (v, layer) in video.iter().zip(decided) {
            let Some(s) = self
                .tracks
                .get_mut(&v.track)
                .and_then(|t| t.subscribers.iter_mut().find(|s| s.participant == owner))
            else {
                continue;
            };
            if s.selector.limit(layer) {
                if let (Some(before), Some(after)) = (v.current, layer) {
                    self.metrics.layer_changed(after > before);
                }
                tracing::debug!(participant = %owner, track = v.track, before = ?v.current, after = ?layer, estimate, layers = ?v.layers, other_streams, "layer limit changed");
                changed.push(v.track);
            }
        }
        // The new layer starts at its next keyframe: ask for one now.
        for track in changed {
            self.request_keyframe(track, Some(owner));
        }
    }
}
