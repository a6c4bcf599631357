//! Published tracks and their subscribers: a track appears when its first RTP packet arrives
//! on a publish connection, is added to every other participant's subscribe connection, and
//! each packet is forwarded to the subscribers whose selector wants it.
//!
//! Keyframes: a subscriber waiting for one (it just joined, switched layer, or asked with a
//! PLI or FIR) makes the node send a PLI to the publisher, at most once per
//! [`KEYFRAME_REQUEST_INTERVAL`] per stream. Lost packets are repaired by the NACK
//! interceptors of the `rtc` core: the subscribe connection answers subscribers' NACKs from
//! its send buffer, and the publish connection asks the publisher for what it lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::RTCTrackEventInit;
use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::{RTCRtpReceiverId, RTCRtpSenderId};
use rtc::sansio::Protocol;

use super::codecs::VideoCodec;
use super::demux::PeerKey;
use super::forward::{Selector, Verdict};
use super::keyframe::starts_keyframe;
use super::meter::Meter;
use super::{Engine, Role, random_u32};
use crate::media::{Layer, ParticipantEvent, ParticipantId};

/// Shortest time between two keyframe requests for one stream.
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// A track, by a key unique for the life of the node.
pub type TrackKey = u64;

/// One subscriber of a track.
pub struct Subscriber {
    /// Who.
    pub participant: ParticipantId,
    /// Its subscribe connection.
    pub peer: PeerKey,
    /// The sender carrying this track on it.
    pub sender: RTCRtpSenderId,
    /// SSRC the subscriber sees.
    pub ssrc: u32,
    /// Payload type negotiated on that sender, once known.
    pub payload_type: Option<u8>,
    /// Which source stream it gets.
    pub selector: Selector,
}

/// A track published by a participant.
pub struct Track {
    /// Publisher.
    pub publisher: ParticipantId,
    /// Publisher's publish connection.
    pub peer: PeerKey,
    /// Receiver on that connection.
    pub receiver: RTCRtpReceiverId,
    /// Audio or video.
    pub kind: RtpCodecKind,
    /// Codec as the publisher negotiated it.
    pub codec: RTCRtpCodec,
    /// Video codec, for keyframe detection.
    pub video: Option<VideoCodec>,
    /// Track id used on subscribe connections.
    pub sent_id: String,
    /// Source streams: the simulcast layer (or `None`) to its SSRC.
    pub layers: BTreeMap<Option<Layer>, u32>,
    /// Last keyframe request per source SSRC.
    pub last_keyframe_request: BTreeMap<u32, Instant>,
    /// What each source stream carries.
    pub meter: Meter,
    /// Subscribers.
    pub subscribers: Vec<Subscriber>,
}

impl Engine {
    /// A publish connection reported a new incoming stream (a track, or a simulcast layer of
    /// one).
    pub(crate) fn track_opened(
        &mut self,
        key: PeerKey,
        owner: ParticipantId,
        init: &RTCTrackEventInit,
    ) {
        let layer = init.rid.as_deref().and_then(Layer::from_rid);
        if let Some(&track) = self
            .track_by_remote
            .get(&key)
            .and_then(|m| m.get(&init.track_id))
        {
            if let Some(t) = self.tracks.get_mut(&track) {
                t.layers.insert(layer, init.ssrc);
                let layers: Vec<Layer> = t.layers.keys().flatten().copied().collect();
                announce_layers(self, track, &layers);
            }
            return;
        }
        let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let Some(mut receiver) = peer.pc.rtp_receiver(init.receiver_id) else {
            return;
        };
        let kind = receiver.track().kind();
        let Some(codec) = receiver
            .get_parameters()
            .rtp_parameters
            .codecs
            .first()
            .map(|c| c.rtp_codec.clone())
        else {
            tracing::warn!(participant = %owner, "track without a negotiated codec: ignored");
            return;
        };
        let Some(room) = self.participants.get(&owner).map(|p| p.room.clone()) else {
            return;
        };
        let track = self.next_track;
        self.next_track += 1;
        let video = if kind == RtpCodecKind::Video {
            VideoCodec::from_mime(&codec.mime_type)
        } else {
            None
        };
        self.tracks.insert(
            track,
            Track {
                publisher: owner,
                peer: key,
                receiver: init.receiver_id,
                kind,
                codec,
                video,
                sent_id: format!("t{track}"),
                layers: BTreeMap::from([(layer, init.ssrc)]),
                last_keyframe_request: BTreeMap::new(),
                meter: Meter::default(),
                subscribers: Vec::new(),
            },
        );
        self.track_by_remote
            .entry(key)
            .or_default()
            .insert(init.track_id.clone(), track);
        self.metrics.track_published(kind == RtpCodecKind::Video);
        tracing::info!(participant = %owner, track, ?kind, ssrc = init.ssrc, rid = ?init.rid, "track published");
        let others: Vec<ParticipantId> = self.rooms.get_mut(&room).map_or_else(Vec::new, |r| {
            r.tracks.insert(track);
            r.participants
                .iter()
                .copied()
                .filter(|p| *p != owner)
                .collect()
        });
        for other in others {
            if self
                .participants
                .get(&other)
                .is_some_and(|p| p.grants.subscribe)
            {
                self.subscribe(other, track);
                self.renegotiate(other);
            }
        }
    }

    /// Adds `track` to `subscriber`'s subscribe connection (negotiated by the caller).
    pub(crate) fn subscribe(&mut self, subscriber: ParticipantId, track: TrackKey) {
        let Some(t) = self.tracks.get(&track) else {
            return;
        };
        let Some(p) = self.participants.get(&subscriber) else {
            return;
        };
        let Some(publisher) = self.participants.get(&t.publisher) else {
            return;
        };
        let (peer_key, stream_id) = (p.subscribe, publisher.info.id.clone());
        let (kind, codec, sent_id) = (t.kind, t.codec.clone(), t.sent_id.clone());
        let layers: Vec<Layer> = t.layers.keys().flatten().copied().collect();
        let Ok(ssrc) = random_u32() else {
            tracing::warn!(participant = %subscriber, track, "no randomness for an SSRC: track not added");
            return;
        };
        let local = MediaStreamTrack::new(
            stream_id.clone(),
            sent_id.clone(),
            sent_id.clone(),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        );
        let Some(peer) = self.peers.get_mut(peer_key).and_then(Option::as_mut) else {
            return;
        };
        let sender = match peer.pc.add_track(local) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(participant = %subscriber, track, error = %e, "cannot add a track to a subscribe connection");
                return;
            }
        };
        let video = kind == RtpCodecKind::Video;
        if let Some(t) = self.tracks.get_mut(&track) {
            t.subscribers.push(Subscriber {
                participant: subscriber,
                peer: peer_key,
                sender,
                ssrc,
                payload_type: None,
                selector: Selector::new(video),
            });
        }
        self.track_by_sent
            .entry(peer_key)
            .or_default()
            .insert(sent_id.clone(), track);
        if let Some(p) = self.participants.get_mut(&subscriber) {
            p.subscriptions.insert(sent_id.clone(), track);
            let kind = if video { "video" } else { "audio" };
            let _ = p.events.send(ParticipantEvent::TrackPublished {
                participant: stream_id,
                track: sent_id,
                kind: kind.into(),
                layers,
            });
        }
    }

    /// Removes a track from every subscriber and renegotiates them.
    pub(crate) fn unpublish(&mut self, track: TrackKey) {
        let Some(t) = self.tracks.remove(&track) else {
            return;
        };
        self.metrics
            .track_unpublished(t.kind == RtpCodecKind::Video);
        // Only the publisher's connection maps to the track; each subscriber's, by its sent id.
        if let Some(m) = self.track_by_remote.get_mut(&t.peer) {
            m.retain(|_, k| *k != track);
        }
        for s in &t.subscribers {
            if let Some(m) = self.track_by_sent.get_mut(&s.peer) {
                m.remove(&t.sent_id);
            }
        }
        for s in &t.subscribers {
            if let Some(peer) = self.peers.get_mut(s.peer).and_then(Option::as_mut) {
                let _ = peer.pc.remove_track(s.sender);
            }
            if let Some(p) = self.participants.get_mut(&s.participant) {
                p.subscriptions.remove(&t.sent_id);
            }
            self.renegotiate(s.participant);
        }
        for room in self.rooms.values_mut() {
            room.tracks.remove(&track);
        }
    }

    /// Sets a subscriber's layer preference for a track (by its sent track id).
    pub(crate) fn set_layer(
        &mut self,
        subscriber: ParticipantId,
        sent_id: &str,
        layer: Option<Layer>,
    ) {
        let Some(&track) = self
            .participants
            .get(&subscriber)
            .and_then(|p| p.subscriptions.get(sent_id))
        else {
            return;
        };
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if let Some(s) = t
            .subscribers
            .iter_mut()
            .find(|s| s.participant == subscriber)
        {
            s.selector.prefer(layer);
        }
        self.request_keyframe(track, None);
    }

    /// Asks a track's publisher for a keyframe of the stream `for_subscriber` wants (or of
    /// every stream), rate-limited per stream.
    pub(crate) fn request_keyframe(
        &mut self,
        track: TrackKey,
        for_subscriber: Option<ParticipantId>,
    ) {
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if t.video.is_none() {
            return;
        }
        let ssrcs: Vec<u32> = match for_subscriber {
            Some(s) => t
                .subscribers
                .iter()
                .filter(|x| x.participant == s)
                .filter_map(|x| x.selector.target(&t.layers))
                .collect(),
            None => t.layers.values().copied().collect(),
        };
        let now = Instant::now();
        let mut due = Vec::new();
        for ssrc in ssrcs {
            let recent = t
                .last_keyframe_request
                .get(&ssrc)
                .is_some_and(|at| now.duration_since(*at) < KEYFRAME_REQUEST_INTERVAL);
            if !recent {
                t.last_keyframe_request.insert(ssrc, now);
                due.push(ssrc);
            }
        }
        let (peer_key, receiver) = (t.peer, t.receiver);
        if due.is_empty() {
            return;
        }
        let Some(peer) = self.peers.get_mut(peer_key).and_then(Option::as_mut) else {
            return;
        };
        let Some(mut r) = peer.pc.rtp_receiver(receiver) else {
            return;
        };
        for media_ssrc in due {
            tracing::debug!(track, media_ssrc, "keyframe request to the publisher");
            if r.write_rtcp(
                now,
                vec![Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                })],
            )
            .is_ok()
            {
                self.metrics.pli_sent();
            }
        }
        self.mark(peer_key);
    }

    /// RTP, RTCP and data channel messages a connection has read.
    pub(crate) fn drain_reads(&mut self, key: PeerKey) {
        let mut messages = Vec::new();
        let Some(role) = self.peers.get(key).and_then(Option::as_ref).map(|p| p.role) else {
            return;
        };
        if let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) {
            while let Some(TaggedRTCMessage { message, .. }) = peer.pc.poll_read() {
                messages.push(message);
            }
        }
        for message in messages {
            if !matches!(message, RTCMessage::RtpPacket(..)) {
                tracing::trace!(?role, ?message, "read");
            }
            match (role, message) {
                (Role::Publish, RTCMessage::RtpPacket(track_id, packet)) => {
                    self.forward(key, &track_id, &packet);
                }
                (Role::Subscribe, RTCMessage::RtcpPacket(track_id, packets)) => {
                    self.subscriber_feedback(key, &track_id, &packets);
                }
                (Role::Publish, RTCMessage::DataChannelMessage(_, message)) => {
                    if let Some(owner) = self
                        .peers
                        .get(key)
                        .and_then(Option::as_ref)
                        .map(|p| p.owner)
                    {
                        self.relay_chat(owner, &message.data);
                    }
                }
                _ => {}
            }
        }
    }

    /// Forwards one publisher packet to every subscriber that wants it.
    fn forward(&mut self, key: PeerKey, remote_track: &str, packet: &rtc::rtp::Packet) {
        let Some(&track) = self
            .track_by_remote
            .get(&key)
            .and_then(|m| m.get(remote_track))
        else {
            return;
        };
        self.metrics.rtp_in(packet.payload.len());
        let now = Instant::now();
        let source = packet.header.ssrc;
        let mut wants_keyframe = false;
        let Some(t) = self.tracks.get_mut(&track) else {
            return;
        };
        if !t.layers.values().any(|s| *s == source) {
            // A stream the open event did not announce (e.g. a publisher restarting): adopt it
            // for the layer its rid names, or as the plain stream.
            let rid = self
                .peers
                .get_mut(key)
                .and_then(Option::as_mut)
                .and_then(|p| {
                    p.pc.rtp_receiver(t.receiver)
                        .and_then(|r| r.track().rid(source).cloned())
                });
            t.layers
                .insert(rid.as_deref().and_then(Layer::from_rid), source);
        }
        t.meter.count(source, packet.payload.len());
        if packet.payload.is_empty() {
            // Padding only (a publisher probing its own uplink): nothing for subscribers.
            return;
        }
        let keyframe = t
            .video
            .is_some_and(|codec| starts_keyframe(codec, &packet.payload));
        let mime = &t.codec.mime_type;
        let vp8 = t.video == Some(VideoCodec::Vp8);
        let mut touched = Vec::new();
        for s in &mut t.subscribers {
            // Readiness first: a keyframe the subscriber cannot receive yet must not count as
            // its start.
            let Some(peer) = self.peers.get_mut(s.peer).and_then(Option::as_mut) else {
                continue;
            };
            if !peer.media_ready(now) {
                continue;
            }
            let before = s.selector.current();
            let verdict = s.selector.verdict(source, keyframe, &t.layers);
            if s.selector.current() != before {
                tracing::debug!(track, subscriber = %s.participant, from = ?before, to = source, "source switched");
            }
            match verdict {
                Verdict::Skip => continue,
                Verdict::WaitKeyframe => {
                    wants_keyframe = true;
                    continue;
                }
                Verdict::Send => {}
            }
            let Some(mut sender) = peer.pc.rtp_sender(s.sender) else {
                continue;
            };
            let payload_type = if let Some(pt) = s.payload_type {
                pt
            } else {
                // Looked up once: the payload type negotiated on this subscriber's sender.
                {
                    let Some(pt) = sender
                        .get_parameters()
                        .rtp_parameters
                        .codecs
                        .iter()
                        .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                        .map(|c| c.payload_type)
                    else {
                        continue;
                    };
                    s.payload_type = Some(pt);
                    pt
                }
            };
            let out = rewritten(packet, source, s, payload_type, vp8);
            let bytes = out.payload.len();
            match sender.write_rtp(now, out) {
                Ok(()) => {
                    self.metrics.rtp_forwarded(bytes);
                    touched.push(s.peer);
                }
                Err(_) => self.metrics.dropped("forward_failed"),
            }
        }
        for peer in touched {
            self.mark(peer);
        }
        if wants_keyframe {
            self.request_keyframe(track, None);
        }
    }

    /// RTCP from a subscriber about a track it receives: keyframe requests go to the
    /// publisher. NACKs are answered by the connection itself from its send buffer.
    fn subscriber_feedback(
        &mut self,
        key: PeerKey,
        sent_id: &str,
        packets: &[Box<dyn rtc::rtcp::Packet>],
    ) {
        let Some(&track) = self.track_by_sent.get(&key).and_then(|m| m.get(sent_id)) else {
            return;
        };
        let mut keyframe = false;
        for p in packets {
            let any = p.as_any();
            if any.downcast_ref::<PictureLossIndication>().is_some()
                || any.downcast_ref::<FullIntraRequest>().is_some()
            {
                keyframe = true;
                self.metrics.pli_received();
            } else if any.downcast_ref::<TransportLayerNack>().is_some() {
                self.metrics.nack_received();
            } else if let Some(rr) =
                any.downcast_ref::<rtc::rtcp::receiver_report::ReceiverReport>()
            {
                let now_ntp = rtc::shared::time::SystemInstant::unix2ntp(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default(),
                );
                for report in &rr.reports {
                    if let Some(rtt) = super::feedback::round_trip_seconds(
                        now_ntp,
                        report.last_sender_report,
                        report.delay,
                    ) {
                        self.metrics.observe_rtt(rtt);
                    }
                }
            }
        }
        if keyframe {
            let subscriber = self
                .peers
                .get(key)
                .and_then(Option::as_ref)
                .map(|p| p.owner);
            self.request_keyframe(track, subscriber);
        }
    }
}

/// Tells a track's subscribers which simulcast layers it now has.
fn announce_layers(engine: &Engine, track: TrackKey, layers: &[Layer]) {
    let Some(t) = engine.tracks.get(&track) else {
        return;
    };
    let Some(publisher) = engine.participants.get(&t.publisher) else {
        return;
    };
    for s in &t.subscribers {
        if let Some(p) = engine.participants.get(&s.participant) {
            let kind = if t.kind == RtpCodecKind::Video {
                "video"
            } else {
                "audio"
            };
            let _ = p.events.send(ParticipantEvent::TrackPublished {
                participant: publisher.info.id.clone(),
                track: t.sent_id.clone(),
                kind: kind.into(),
                layers: layers.to_vec(),
            });
        }
    }
}

/// The packet subscriber `s` gets for `packet` of source `source`: its SSRC, its continuous
/// sequence numbers, timestamps and VP8 picture ids, its payload type.
///
/// A new header rather than a copy: the publisher's header extensions (and their ids, which
/// belong to its negotiation) are not carried, and not copied only to be dropped. The
/// congestion controller adds its own transport-wide sequence number.
fn rewritten(
    packet: &rtc::rtp::Packet,
    source: u32,
    s: &mut Subscriber,
    payload_type: u8,
    vp8: bool,
) -> rtc::rtp::Packet {
    let (seq, ts) = s.selector.rewriter.map(
        source,
        packet.header.sequence_number,
        packet.header.timestamp,
    );
    let payload = if vp8 {
        s.selector
            .renumber
            .rewrite(source, &packet.payload)
            .unwrap_or_else(|| packet.payload.clone())
    } else {
        packet.payload.clone()
    };
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: packet.header.version,
            padding: false,
            extension: false,
            marker: packet.header.marker,
            payload_type,
            sequence_number: seq,
            timestamp: ts,
            ssrc: s.ssrc,
            csrc: Vec::new(),
            extension_profile: 0,
            extensions: Vec::new(),
            extensions_padding: 0,
        },
        payload,
    }
}
