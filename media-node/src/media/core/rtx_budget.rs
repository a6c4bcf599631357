//! A budget for retransmissions to a subscriber, from its bandwidth estimate.
//!
//! On a congested link, a subscriber loses packets and asks for them again (NACK); each
//! retransmission adds to the congestion, which loses more, which draws more NACKs. Left alone
//! that loop outlives the congestion that started it: the link stays full of retransmissions
//! of frames nobody will show, and a keyframe of a lower layer cannot get through. So NACKs are
//! honoured only up to a share of the estimate; what is over is dropped before the NACK
//! responder sees it (and counted), and the subscriber's decoder asks for a keyframe instead,
//! which is what a lost cause needs.
//!
//! [`feedback`](super::feedback)'s interceptor applies it, wire-ward of the NACK responder, so
//! it sees a NACK first.

use std::time::Instant;

use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};

/// Share of the estimate retransmissions may take.
pub const RTX_SHARE: f64 = 0.2;
/// The size a retransmission is reckoned at, in bytes (a video packet, mostly).
pub const RTX_PACKET_BYTES: f64 = 1_200.0;
/// Retransmissions allowed at once, after a quiet moment.
pub const RTX_BURST: f64 = 40.0;

/// Packets a NACK pair asks for.
fn asked(pair: NackPair) -> u32 {
    1 + pair.lost_packets.count_ones()
}

/// The pure part: a token bucket refilled at the estimate's share, in packets.
#[derive(Debug)]
pub struct Budget {
    tokens: f64,
    refilled: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            tokens: RTX_BURST,
            refilled: None,
        }
    }
}

impl Budget {
    /// The NACK pairs of `pairs` that fit the budget at `now` for an estimate of `estimate`
    /// bit/s (`None`: no estimate, everything fits), and how many packets were refused.
    pub fn admit(
        &mut self,
        now: Instant,
        estimate: Option<u64>,
        pairs: &[NackPair],
    ) -> (Vec<NackPair>, u32) {
        let Some(estimate) = estimate else {
            return (pairs.to_vec(), 0);
        };
        let per_second = estimate as f64 * RTX_SHARE / (8.0 * RTX_PACKET_BYTES);
        if let Some(last) = self.refilled {
            let gained = now.saturating_duration_since(last).as_secs_f64() * per_second;
            self.tokens = (self.tokens + gained).min(RTX_BURST.max(per_second));
        }
        self.refilled = Some(now);
        let mut kept = Vec::new();
        let mut refused = 0;
        for pair in pairs {
            let n = f64::from(asked(*pair));
            if self.tokens >= n {
                self.tokens -= n;
                kept.push(*pair);
            } else {
                refused += asked(*pair);
            }
        }
        (kept, refused)
    }
}

/// Trims the NACKs of a compound RTCP packet to `budget`; returns how many retransmissions
/// were refused. A NACK left with nothing is removed.
pub fn trim(
    budget: &mut Budget,
    now: Instant,
    estimate: Option<u64>,
    packets: &mut Vec<Box<dyn rtc::rtcp::Packet>>,
) -> u32 {
    let mut refused = 0;
    packets.retain_mut(|p| {
        let Some(nack) = p.as_any().downcast_ref::<TransportLayerNack>() else {
            return true;
        };
        let (kept, over) = budget.admit(now, estimate, &nack.nacks);
        refused += over;
        if over == 0 {
            return true;
        }
        if kept.is_empty() {
            return false;
        }
        *p = Box::new(TransportLayerNack {
            nacks: kept,
            ..nack.clone()
        });
        true
    });
    refused
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pair(first: u16, also: u16) -> NackPair {
        NackPair {
            packet_id: first,
            lost_packets: also,
        }
    }

    #[test]
    fn without_an_estimate_every_nack_is_honoured() {
        let mut b = Budget::default();
        let pairs = vec![pair(1, 0xffff); 100];
        let (kept, refused) = b.admit(Instant::now(), None, &pairs);
        assert_eq!((kept.len(), refused), (100, 0));
    }

    #[test]
    fn retransmissions_keep_to_a_share_of_the_estimate() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        // 100 kbit/s: a fifth is 20 kbit/s, about two packets a second, after the burst.
        let estimate = Some(100_000);
        let asking = vec![pair(1, 0); 100];
        let (kept, refused) = b.admit(t0, estimate, &asking);
        assert_eq!(
            (kept.len(), refused),
            (RTX_BURST as usize, 100 - RTX_BURST as u32)
        );
        let (kept, _) = b.admit(t0 + Duration::from_secs(10), estimate, &asking);
        let per_second = 100_000.0 * RTX_SHARE / (8.0 * RTX_PACKET_BYTES);
        assert_eq!(kept.len(), (10.0 * per_second) as usize);
        // A pair counts every packet it names.
        let mut b = Budget::default();
        let (kept, refused) = b.admit(
            t0,
            estimate,
            &[pair(1, 0xffff), pair(40, 0xffff), pair(80, 0xffff)],
        );
        assert_eq!((kept.len(), refused), (2, 17));
    }
}
