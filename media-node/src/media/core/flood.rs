//! A budget of RTCP per connection. A subscriber's feedback makes the node work for it: a NACK
//! buys retransmissions, a keyframe request buys a keyframe from the publisher, every report is
//! decrypted and parsed. A browser sends a few dozen RTCP packets a second; a flood far above
//! that is counted and dropped here, before decryption, so that one connection cannot take the
//! loop's time from other rooms.

use std::time::Instant;

use super::demux::{Kind, PeerKey, kind};

/// RTCP packets a connection may send each second, sustained.
pub const RTCP_PER_SECOND: f64 = 250.0;
/// RTCP packets a connection may send at once, after a quiet moment.
pub const RTCP_BURST: f64 = 500.0;

/// Whether an SRTP-range datagram is SRTCP: its packet type (second byte, clear in SRTCP) is
/// in RTCP's range (RFC 5761: 192 to 223).
pub fn is_rtcp(datagram: &[u8]) -> bool {
    kind(datagram) == Kind::Rtp && matches!(datagram.get(1), Some(192..=223))
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    refilled: Instant,
}

/// One token bucket per connection, indexed like the engine's peer table.
#[derive(Debug, Default)]
pub struct Budgets {
    buckets: Vec<Option<Bucket>>,
}

impl Budgets {
    /// Whether `peer` may send one more RTCP packet at `now` (and takes it if so).
    pub fn allow(&mut self, peer: PeerKey, now: Instant) -> bool {
        if self.buckets.len() <= peer {
            self.buckets.resize(peer + 1, None);
        }
        let bucket = self.buckets[peer].get_or_insert(Bucket {
            tokens: RTCP_BURST,
            refilled: now,
        });
        let gained = now.saturating_duration_since(bucket.refilled).as_secs_f64() * RTCP_PER_SECOND;
        bucket.tokens = (bucket.tokens + gained).min(RTCP_BURST);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets a closed connection (its slot may be reused).
    pub fn forget(&mut self, peer: PeerKey) {
        if let Some(slot) = self.buckets.get_mut(peer) {
            *slot = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rtcp_is_told_from_rtp_by_its_packet_type() {
        assert!(is_rtcp(&[0x80, 200, 0, 6]));
        assert!(is_rtcp(&[0x81, 205, 0, 4]));
        assert!(!is_rtcp(&[0x80, 96, 0, 1]));
        assert!(!is_rtcp(&[0x80, 0xEF, 0, 1]));
        assert!(!is_rtcp(&[0, 1, 0, 0]));
        assert!(!is_rtcp(&[0x80]));
    }

    #[test]
    fn a_burst_passes_a_flood_does_not_and_the_budget_refills() {
        let mut budgets = Budgets::default();
        let t0 = Instant::now();
        let allowed = (0..2_000).filter(|_| budgets.allow(3, t0)).count();
        assert_eq!(allowed, RTCP_BURST as usize);
        // Another connection has its own budget.
        assert!(budgets.allow(1, t0));
        // A second later, a second's worth again.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..2_000).filter(|_| budgets.allow(3, t1)).count();
        assert_eq!(allowed, RTCP_PER_SECOND as usize);
        // A reused slot starts afresh.
        budgets.forget(3);
        assert!(budgets.allow(3, t1));
    }
}
