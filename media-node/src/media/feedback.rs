//! Getting subscribers' keyframe requests and NACKs out of the `rtc` interceptor chain.
//!
//! Inbound RTCP is consumed by the interceptors unless one marks it for the application. The
//! node must see keyframe requests (PLI, FIR) to relay them to the publisher, and counts NACKs;
//! receiver reports and the rest stay with the chain. Marking does not consume: the NACK
//! responder after this interceptor still answers the NACKs from its send buffer.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Where the interceptor sits: application-ward of the default chain, so those interceptors
/// have acted on each packet before it is marked.
pub fn slot() -> Slot {
    Slot::from(14_000)
}

/// Whether a compound RTCP packet carries feedback the node acts on.
pub fn wanted(packets: &[Box<dyn rtc::rtcp::Packet>]) -> bool {
    packets.iter().any(|p| {
        let any = p.as_any();
        any.is::<PictureLossIndication>()
            || any.is::<FullIntraRequest>()
            || any.is::<TransportLayerNack>()
    })
}

/// Marks keyframe requests and NACKs for delivery to the media loop.
#[derive(Default)]
pub struct DeliverFeedback {
    reads: VecDeque<TaggedPacket>,
    writes: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for DeliverFeedback {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet
            && wanted(packets)
        {
            msg.message.add(Attribute::DeliverToApplication);
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
    use rtc::rtcp::receiver_report::ReceiverReport;

    #[test]
    fn only_keyframe_requests_and_nacks_are_wanted() {
        assert!(wanted(&[Box::new(PictureLossIndication {
            sender_ssrc: 1,
            media_ssrc: 2
        })]));
        assert!(wanted(&[
            Box::new(ReceiverReport::default()),
            Box::new(FullIntraRequest::default())
        ]));
        assert!(!wanted(&[Box::new(ReceiverReport::default())]));
        assert!(!wanted(&[]));
    }
}
