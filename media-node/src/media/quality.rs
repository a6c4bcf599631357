//! Media quality as the peers report it: jitter and loss per stream, read from the connections'
//! statistics every few seconds and fed to the metrics. (Round-trip times come from receiver
//! reports as they arrive: see `feedback`.)

use std::collections::HashMap;
use std::time::Instant;

use rtc::statistics::StatsSelector;
use rtc::statistics::report::RTCStatsReportEntry;

use super::demux::PeerKey;
use super::engine::{Engine, Role};

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
        for key in 0..self.peers.len() {
            let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) else {
                continue;
            };
            if peer.connected_at.is_none() {
                continue;
            }
            let role = peer.role;
            let report = peer.pc.get_stats(now, StatsSelector::None);
            for entry in report.iter() {
                match (role, entry) {
                    (Role::Subscribe, RTCStatsReportEntry::RemoteInboundRtp(r)) => {
                        self.metrics.observe_subscriber(
                            r.received_rtp_stream_stats.jitter,
                            r.fraction_lost,
                        );
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
    }
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
