//! Getting subscribers' keyframe requests and NACKs out of the `rtc` interceptor chain.
//!
//! Inbound RTCP is consumed by the interceptors unless one marks it for the application. The
//! node must see keyframe requests (PLI, FIR) to relay them to the publisher, counts NACKs, and
//! reads receiver reports for the round-trip time (the `rtc` statistics do not compute it). Marking does not consume: the NACK
//! responder after this interceptor still answers the NACKs from its send buffer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

use super::rtx_budget::{Budget, trim};
use crate::metrics::Metrics;

/// Where the interceptor sits: application-ward of the congestion controller (whose estimate
/// rides on the feedback it read) and wire-ward of the NACK responder (so that NACKs over the
/// retransmission budget never reach it). Only subscribe connections have it: what they read
/// is their subscriber's feedback.
pub fn slot() -> Slot {
    Slot::from(3_500)
}

/// Whether a compound RTCP packet carries feedback the node acts on.
pub fn wanted(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>()
            || any.is::<FullIntraRequest>()
            || any.is::<TransportLayerNack>()
            || any.is::<ReceiverReport>()
    })
}

/// Round-trip time from a reception report (RFC 3550 §6.4.1): the time now, minus when the
/// report's sender last heard from us (LSR), minus how long it held the report (DLSR), all in
/// the middle 32 bits of NTP time (1/65536 s). `None` before any sender report was received.
pub fn round_trip_seconds(now_ntp: u64, last_sender_report: u32, delay: u32) -> Option<f64> {
    if last_sender_report == 0 {
        return None;
    }
    let now_mid = ((now_ntp >> 16) & 0xFFFF_FFFF) as u32;
    let rtt = now_mid.wrapping_sub(last_sender_report).wrapping_sub(delay);
    // A "negative" result (clock adjustments, a stale report) wraps to a huge value: ignore it.
    (rtt < 0x8000_0000).then(|| f64::from(rtt) / 65536.0)
}

/// The bandwidth a subscribe connection is estimated to carry, in bit/s (0: no estimate yet),
/// as the congestion controller in its chain last said. The chain is built for one connection
/// and owned by it, so this cell is the only way out for a value it computes.
#[derive(Clone, Debug, Default)]
pub struct Estimate(Arc<AtomicU64>);

impl Estimate {
    /// The last estimate, if there was one.
    pub fn get(&self) -> Option<u64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|bps| *bps > 0)
    }

    fn set(&self, bits_per_second: f64) {
        // At least 1: 0 means "none yet".
        self.0
            .store((bits_per_second.max(1.0)) as u64, Ordering::Relaxed);
    }
}

/// Marks keyframe requests and NACKs for delivery to the media loop, keeps the congestion
/// controller's estimate where the loop can read it, and holds NACKs to the retransmission
/// budget (see [`rtx_budget`](super::rtx_budget)). One interceptor for the three: each one in
/// the chain moves every forwarded packet through two queues of its own.
pub struct DeliverFeedback {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
    estimate: Estimate,
    budget: Budget,
    metrics: Arc<Metrics>,
}

impl DeliverFeedback {
    /// An interceptor that writes the congestion controller's estimates to `estimate`, and
    /// counts refused retransmissions in `metrics`.
    pub fn new(estimate: Estimate, metrics: Arc<Metrics>) -> Self {
        Self {
            reads: VecDeque::new(),
            writes: VecDeque::new(),
            estimate,
            budget: Budget::default(),
            metrics,
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.estimate.set(*bits_per_second);
        }
        let now = msg.now;
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            if self.estimate.get().is_some() {
                let refused = trim(&mut self.budget, now, self.estimate.get(), packets);
                if refused > 0 {
                    self.metrics
                        .dropped_many("rtx_over_budget", u64::from(refused));
                }
                if packets.is_empty() {
                    // Nothing left of it: an empty RTCP list would read as an attribute carrier.
                    return Ok(());
                }
            }
            if wanted(packets) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.reads.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.writes.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.writes.pop_front()
    }

    fn handle_timeout(&mut self, _now: Instant) -> Result<(), Self::Error> {
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Self::Time> {
        None
    }
}

impl Interceptor for DeliverFeedback {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframe_requests_nacks_and_receiver_reports_are_wanted() {
        assert!(wanted(&[Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2
        })]));
        assert!(wanted(&[Box::new(FullIntraRequest::default())]));
        assert!(wanted(&[Box::new(ReceiverReport::default())]));
        assert!(!wanted(&[Box::new(
            rtc::rtcp::sender_report::SenderReport::default()
        )]));
        assert!(!wanted(&[]));
    }

    #[test]
    fn round_trip_from_lsr_and_dlsr() {
        // Now is 10 s (in 1/65536 units of the middle 32 bits) after the sender report; the
        // receiver held its report 9.75 s: 250 ms round trip.
        let lsr = 0x0001_0000u32;
        let now_ntp = (u64::from(lsr) + 10 * 65536) << 16;
        let rtt = round_trip_seconds(now_ntp, lsr, 9 * 65536 + 49152);
        assert!(rtt.is_some_and(|r| (r - 0.25).abs() < 1e-9), "{rtt:?}");
        assert_eq!(round_trip_seconds(now_ntp, 0, 0), None);
        // A delay longer than the elapsed time is nonsense, not a huge RTT.
        assert_eq!(round_trip_seconds(now_ntp, lsr, 11 * 65536), None);
    }
}
