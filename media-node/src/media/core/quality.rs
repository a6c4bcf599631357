//! Media quality as the peers report it: jitter and loss per stream, read from the connections'
//! statistics every few seconds and fed to the metrics, and loss and round-trip time per room
//! for the node's status (a rollout's quality gate compares them between revisions). (Round-trip times come from receiver
//! reports as they arrive: see `feedback`.)

use std::collections::HashMap;
use std::time::Instant;

use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;

use super::demux::PeerKey;
use super::{Engine, Role};

/// Seconds between two quality samples.
pub const SAMPLE_EVERY_SECONDS: u64 = 5;

/// Packets lost so far per publisher stream, to count only what is new at each sample.
#[derive(Debug, Default)]
pub struct LossLedger {
    lost: HashMap<(PeerKey, String), i64>,
}

impl LossLedger {
    /// How many more packets a stream lost since the last sample.
    pub fn newly_lost(&mut self, peer: PeerKey, stream: &str, total: i64) -> u64 {
        let previous = self
            .lost
            .insert((peer, stream.to_string()), total)
            .unwrap_or(0);
        u64::try_from(total.saturating_sub(previous)).unwrap_or(0)
    }

    /// Forgets a closed connection.
    pub fn forget(&mut self, peer: PeerKey) {
        self.lost.retain(|(p, _), _| *p != peer);
    }
}

impl Engine {
    /// Reads every connection's statistics once and records the quality figures.
    pub(crate) fn sample_quality(&mut self) {
        let now = Instant::now();
        // Per room: loss and round-trip time summed over its subscribers' streams.
        let mut rooms: HashMap<String, RoomSample> = HashMap::new();
        for key in 0..self.peers.len() {
            let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            if peer.connected_at.is_none() {
                continue;
            }
            let (role, owner) = (peer.role, peer.owner);
            let report = peer.pc.get_stats(now, StatsSelector::None);
            let room = self.participants.get(&owner).map(|p| p.room.clone());
            for entry in report.iter() {
                match (role, entry) {
                    (Role::Subscribe, RTCStatsReportEntry::RemoteInboundRtp(r)) => {
                        self.metrics.observe_subscriber(
                            r.received_rtp_stream_stats.jitter,
                            r.fraction_lost,
                        );
                        if let Some(room) = &room {
                            let sample = rooms.entry(room.clone()).or_default();
                            sample.loss.push(r.fraction_lost);
                            if r.round_trip_time_measurements > 0 {
                                sample.rtt.push(r.round_trip_time);
                            }
                        }
                    }
                    (Role::Publish, RTCStatsReportEntry::InboundRtp(r)) => {
                        let newly = self.losses.newly_lost(
                            key,
                            entry.id(),
                            r.received_rtp_stream_stats.packets_lost,
                        );
                        self.metrics
                            .observe_publisher(r.received_rtp_stream_stats.jitter, newly);
                    }
                    _ => {}
                }
            }
        }
        for (name, sample) in rooms {
            if let Some(room) = self.rooms.get_mut(&name) {
                room.quality.loss_percent = mean(&sample.loss).map(|l| l * 100.0);
                room.quality.rtt_ms = mean(&sample.rtt).map(|r| r * 1000.0);
            }
        }
    }
}

/// One room's figures at a sample.
#[derive(Debug, Default)]
struct RoomSample {
    /// Fraction lost per subscriber stream.
    loss: Vec<f64>,
    /// Round-trip time per subscriber stream, in seconds.
    rtt: Vec<f64>,
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_new_losses() {
        let mut l = LossLedger::default();
        assert_eq!(l.newly_lost(1, "s", 5), 5);
        assert_eq!(l.newly_lost(1, "s", 7), 2);
        assert_eq!(l.newly_lost(1, "s", 7), 0);
        // Duplicates can make the cumulative figure go down: never count negative loss.
        assert_eq!(l.newly_lost(1, "s", 6), 0);
        l.forget(1);
        assert_eq!(l.newly_lost(1, "s", 3), 3);
    }
}
