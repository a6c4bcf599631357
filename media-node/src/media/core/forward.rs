//! Per-subscriber forwarding of one published track: which source stream (simulcast layer)
//! goes to this subscriber, and when it may switch.
//!
//! A video subscriber starts, and switches layers, only on a keyframe of the stream it moves
//! to; until then it keeps the stream it has (or gets nothing, at the start). Audio passes
//! straight through.

use std::collections::BTreeMap;

use super::rewrite::Rewriter;
use super::vp8::Renumber;
use crate::media::Layer;

/// What to do with one source packet for one subscriber.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Send it (rewritten).
    Send,
    /// Not for this subscriber.
    Skip,
    /// The stream this subscriber waits for has no keyframe yet: skip, and ask the publisher
    /// for one.
    WaitKeyframe,
}

/// Forwarding state of one subscription.
#[derive(Debug)]
pub struct Selector {
    /// Whether the track is video (audio needs no keyframe).
    video: bool,
    /// Layer the subscriber asked for; `None` lets the node pick the best available.
    preferred: Option<Layer>,
    /// Highest layer the subscriber's bandwidth allows (see `allocation`); `None`: no limit.
    limit: Option<Layer>,
    /// Source SSRC now forwarded.
    current: Option<u32>,
    /// Sequence and timestamp continuity.
    pub rewriter: Rewriter,
    /// VP8 picture numbering continuity.
    pub renumber: Renumber,
}

impl Selector {
    /// A new subscription, forwarding nothing until its first keyframe (video).
    pub fn new(video: bool) -> Self {
        Self {
            video,
            preferred: None,
            limit: None,
            current: None,
            rewriter: Rewriter::default(),
            renumber: Renumber::default(),
        }
    }

    /// Sets the subscriber's preference.
    pub fn prefer(&mut self, layer: Option<Layer>) {
        self.preferred = layer;
    }

    /// The subscriber's preference.
    pub fn preferred(&self) -> Option<Layer> {
        self.preferred
    }

    /// Sets the bandwidth limit; true if it changed.
    pub fn limit(&mut self, layer: Option<Layer>) -> bool {
        std::mem::replace(&mut self.limit, layer) != layer
    }

    /// The bandwidth limit.
    pub fn limited_to(&self) -> Option<Layer> {
        self.limit
    }

    /// The highest layer allowed: the lower of the preference and the bandwidth limit.
    fn cap(&self) -> Option<Layer> {
        match (self.preferred, self.limit) {
            (Some(p), Some(l)) => Some(p.min(l)),
            (p, l) => p.or(l),
        }
    }

    /// The source SSRC this subscriber should get, given the track's layers (`None` key for a
    /// track without simulcast).
    ///
    /// A preference (and a bandwidth limit) is a cap: that layer, or when the publisher does
    /// not send it (a browser short of CPU or bandwidth drops layers), the best one below it,
    /// or else the lowest there is. Never a layer above the cap when a lower one exists.
    /// Without a cap, the best there is.
    pub fn target(&self, layers: &BTreeMap<Option<Layer>, u32>) -> Option<u32> {
        match self.cap() {
            Some(p) => layers
                .range(..=Some(p))
                .next_back()
                .or_else(|| layers.iter().next())
                .map(|(_, ssrc)| *ssrc),
            None => layers.values().next_back().copied(),
        }
    }

    /// Decides for one packet of source `ssrc`.
    pub fn verdict(
        &mut self,
        ssrc: u32,
        keyframe: bool,
        layers: &BTreeMap<Option<Layer>, u32>,
    ) -> Verdict {
        let target = self.target(layers);
        if !self.video {
            return if Some(ssrc) == target {
                Verdict::Send
            } else {
                Verdict::Skip
            };
        }
        if Some(ssrc) == target {
            if self.current == Some(ssrc) {
                return Verdict::Send;
            }
            if keyframe {
                self.current = Some(ssrc);
                return Verdict::Send;
            }
            return Verdict::WaitKeyframe;
        }
        // Keep feeding the old layer until the new one has a keyframe, but only if the old
        // layer is still being sent, and not when the subscriber's bandwidth no longer allows
        // it: on a congested link, the old layer's packets would queue ahead of the keyframe
        // that ends the congestion.
        if Some(ssrc) == self.current && !self.over_limit(ssrc, layers) {
            Verdict::Send
        } else {
            Verdict::Skip
        }
    }

    /// The source SSRC forwarded now.
    pub fn current(&self) -> Option<u32> {
        self.current
    }

    /// Whether source `ssrc` is a layer above the bandwidth limit.
    fn over_limit(&self, ssrc: u32, layers: &BTreeMap<Option<Layer>, u32>) -> bool {
        let layer = layers.iter().find(|(_, s)| **s == ssrc).map(|(l, _)| *l);
        matches!((layer, self.limit), (Some(Some(l)), Some(limit)) if l > limit)
    }

    /// Whether the subscriber is already receiving its target.
    pub fn settled(&self, layers: &BTreeMap<Option<Layer>, u32>) -> bool {
        !self.video || (self.current.is_some() && self.current == self.target(layers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers() -> BTreeMap<Option<Layer>, u32> {
        BTreeMap::from([
            (Some(Layer::Low), 10),
            (Some(Layer::Medium), 20),
            (Some(Layer::High), 30),
        ])
    }

    #[test]
    fn starts_on_a_keyframe_of_the_best_layer() {
        let mut s = Selector::new(true);
        assert_eq!(s.verdict(30, false, &layers()), Verdict::WaitKeyframe);
        assert_eq!(s.verdict(10, true, &layers()), Verdict::Skip);
        assert_eq!(s.verdict(30, true, &layers()), Verdict::Send);
        assert_eq!(s.verdict(30, false, &layers()), Verdict::Send);
        assert!(s.settled(&layers()));
    }

    #[test]
    fn switches_only_at_a_keyframe_and_keeps_the_old_layer_meanwhile() {
        let mut s = Selector::new(true);
        s.verdict(30, true, &layers());
        s.prefer(Some(Layer::Low));
        assert!(!s.settled(&layers()));
        assert_eq!(s.verdict(30, false, &layers()), Verdict::Send);
        assert_eq!(s.verdict(10, false, &layers()), Verdict::WaitKeyframe);
        assert_eq!(s.verdict(10, true, &layers()), Verdict::Send);
        assert_eq!(s.verdict(30, false, &layers()), Verdict::Skip);
    }

    #[test]
    fn a_bandwidth_downgrade_stops_the_old_layer_at_once() {
        let mut s = Selector::new(true);
        s.verdict(30, true, &layers());
        s.limit(Some(Layer::Low));
        // The high layer no longer fits the link: nothing until the low layer's keyframe.
        assert_eq!(s.verdict(30, false, &layers()), Verdict::Skip);
        assert_eq!(s.verdict(10, false, &layers()), Verdict::WaitKeyframe);
        assert_eq!(s.verdict(10, true, &layers()), Verdict::Send);
        // Going back up keeps the low layer until the high one's keyframe.
        s.limit(None);
        assert_eq!(s.verdict(10, false, &layers()), Verdict::Send);
        assert_eq!(s.verdict(30, false, &layers()), Verdict::WaitKeyframe);
        assert_eq!(s.verdict(30, true, &layers()), Verdict::Send);
    }

    #[test]
    fn a_missing_preferred_layer_falls_back_below_it_never_above() {
        let mut s = Selector::new(true);
        s.prefer(Some(Layer::Medium));
        let two = BTreeMap::from([(Some(Layer::Low), 10), (Some(Layer::High), 30)]);
        assert_eq!(
            s.target(&two),
            Some(10),
            "medium asked, low is the best below it"
        );
        s.prefer(Some(Layer::Low));
        let upper = BTreeMap::from([(Some(Layer::Medium), 20), (Some(Layer::High), 30)]);
        assert_eq!(
            s.target(&upper),
            Some(20),
            "low asked but not sent: the lowest there is, not the best"
        );
        s.prefer(None);
        assert_eq!(s.target(&upper), Some(30));
    }

    #[test]
    fn the_bandwidth_limit_and_the_preference_cap_together() {
        let l = layers();
        let mut s = Selector::new(true);
        assert!(s.limit(Some(Layer::Medium)));
        assert!(!s.limit(Some(Layer::Medium)), "unchanged");
        assert_eq!(s.target(&l), Some(20));
        s.prefer(Some(Layer::Low));
        assert_eq!(s.target(&l), Some(10), "the lower of the two");
        s.prefer(Some(Layer::High));
        assert_eq!(s.target(&l), Some(20), "a preference never lifts the limit");
        assert!(s.limit(None));
        assert_eq!(s.target(&l), Some(30));
    }

    #[test]
    fn audio_and_plain_tracks_pass_through() {
        let plain = BTreeMap::from([(None, 7)]);
        let mut a = Selector::new(false);
        assert_eq!(a.verdict(7, false, &plain), Verdict::Send);
        let mut v = Selector::new(true);
        assert_eq!(v.verdict(7, false, &plain), Verdict::WaitKeyframe);
        assert_eq!(v.verdict(7, true, &plain), Verdict::Send);
    }
}
