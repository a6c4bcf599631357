//! Participants: joining and leaving, the two peer connections each one has, their
//! negotiation, and the room's chat.
//!
//! Each participant has a publish connection (the client offers, the node answers) and a
//! subscribe connection (the node offers whenever the set of tracks to send changes, the
//! client answers). Negotiation therefore only ever goes one way on each connection, and
//! there is no glare to resolve.

use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rtc::data_channel::RTCDataChannelId;
use rtc::peer_connection::event::{RTCDataChannelEvent, RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::demux::PeerKey;
use super::{Engine, Role};
use crate::admission::{self, NodeState};
use crate::media::{
    Ending, JoinError, JoinRequest, Joined, ParticipantEvent, ParticipantId, ParticipantInfo,
};
use crate::token::Grants;

/// Longest chat message relayed, in bytes.
pub const MAX_CHAT_BYTES: usize = 4096;

/// Chat messages kept for a participant whose chat channel is not open yet.
pub const MAX_PENDING_CHAT: usize = 100;

/// Where the subscribe connection's negotiation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Negotiation {
    /// No offer outstanding.
    Stable,
    /// An offer was sent; `again` if tracks changed since, so another offer must follow.
    AwaitingAnswer {
        /// Renegotiate when the answer arrives.
        again: bool,
    },
}

/// A participant of a room on this node.
pub struct Participant {
    /// As the others see it.
    pub info: ParticipantInfo,
    /// Room.
    pub room: String,
    /// What its token allows.
    pub grants: Grants,
    /// Its signaling session.
    pub events: mpsc::UnboundedSender<ParticipantEvent>,
    /// Publish connection.
    pub publish: PeerKey,
    /// Subscribe connection.
    pub subscribe: PeerKey,
    /// Subscribe negotiation state.
    pub negotiation: Negotiation,
    /// Its session is ending (its room closes): it gets no more offers or room news.
    pub closing: bool,
    /// The node's chat channel on the subscribe connection, once open.
    pub chat: Option<RTCDataChannelId>,
    /// Messages that arrived before that channel opened, delivered when it does.
    pub pending_chat: Vec<String>,
    /// Tracks of others this participant receives, by sent track id.
    pub subscriptions: HashMap<String, super::tracks::TrackKey>,
    /// When it joined.
    pub joined_at: Instant,
}

/// A chat message as clients send it: a JSON object with `text`, or plain text.
#[derive(Deserialize)]
struct ChatIn {
    text: String,
}

impl Engine {
    /// Admits and sets up a participant.
    pub(crate) fn join(&mut self, request: JoinRequest) -> Result<Joined, JoinError> {
        let started = Instant::now();
        let room_participants = self
            .rooms
            .get(&request.room)
            .map(|r| r.participants.len() as u32)
            .filter(|n| *n > 0);
        let assigned = self.assigned.keys().cloned().collect();
        let state = NodeState {
            mode: self.config.mode,
            draining: self.drain.phase() != crate::drain::Phase::Ready,
            assigned: &assigned,
            participants: self.participants.len() as u32,
            room_participants,
        };
        if let Err(refusal) = admission::admit(&state, &self.config.limits, &request.room) {
            self.metrics.join_refused(refusal.code());
            return Err(refusal.into());
        }
        let id = ParticipantId(self.next_participant);
        self.next_participant += 1;
        let publish = self.new_peer(id, Role::Publish).map_err(JoinError::Media)?;
        let subscribe = match self.new_peer(id, Role::Subscribe) {
            Ok(k) => k,
            Err(e) => {
                self.drop_peer(publish);
                return Err(JoinError::Media(e));
            }
        };
        if let Some(peer) = self.peers.get_mut(subscribe).and_then(Option::as_mut)
            && let Err(e) = peer.pc.create_data_channel("chat", None)
        {
            self.drop_peer(publish);
            self.drop_peer(subscribe);
            return Err(JoinError::Media(format!(
                "cannot create the chat channel: {e}"
            )));
        }
        let info = ParticipantInfo {
            id: id.to_string(),
            identity: request.identity,
            name: request.name,
        };
        let room = self.rooms.entry(request.room.clone()).or_default();
        let others: Vec<ParticipantId> = room.participants.iter().copied().collect();
        room.participants.insert(id);
        room.quality.joins = room.quality.joins.saturating_add(1);
        let other_infos: Vec<ParticipantInfo> = others
            .iter()
            .filter_map(|o| self.participants.get(o))
            .map(|p| p.info.clone())
            .collect();
        for other in &others {
            if let Some(p) = self.participants.get(other) {
                let _ = p
                    .events
                    .send(ParticipantEvent::ParticipantJoined(info.clone()));
            }
        }
        self.participants.insert(
            id,
            Participant {
                info,
                room: request.room.clone(),
                grants: request.grants,
                events: request.events,
                publish,
                subscribe,
                negotiation: Negotiation::Stable,
                closing: false,
                chat: None,
                pending_chat: Vec::new(),
                subscriptions: HashMap::new(),
                joined_at: started,
            },
        );
        if request.grants.subscribe {
            let tracks: Vec<_> = self
                .rooms
                .get(&request.room)
                .map(|r| r.tracks.iter().copied().collect())
                .unwrap_or_default();
            for track in tracks {
                self.subscribe(id, track);
            }
        }
        self.renegotiate(id);
        self.metrics.joined(started.elapsed());
        tracing::info!(participant = %id, room = %request.room, "joined");
        Ok(Joined {
            participant: id,
            others: other_infos,
        })
    }

    /// Answers the participant's offer on its publish connection.
    pub(crate) fn publish_offer(
        &mut self,
        id: ParticipantId,
        sdp: String,
    ) -> Result<String, String> {
        let participant = self.participants.get(&id).ok_or("not joined")?;
        if !participant.grants.publish && sdp_sends_media(&sdp) {
            return Err("the token does not allow publishing media".into());
        }
        let key = participant.publish;
        let peer = self
            .peers
            .get_mut(key)
            .and_then(Option::as_mut)
            .ok_or("publish connection closed")?;
        let now = Instant::now();
        let offer = RTCSessionDescription::offer(sdp).map_err(|e| format!("invalid offer: {e}"))?;
        peer.pc
            .set_remote_description(now, offer)
            .map_err(|e| format!("offer refused: {e}"))?;
        let answer = peer
            .pc
            .create_answer(None)
            .map_err(|e| format!("cannot answer: {e}"))?;
        peer.pc
            .set_local_description(now, answer)
            .map_err(|e| format!("cannot apply the answer: {e}"))?;
        let sdp = peer
            .pc
            .local_description()
            .map(|d| d.sdp)
            .ok_or("no local description")?;
        self.mark(key);
        Ok(sdp)
    }

    /// Applies the participant's answer to the last subscribe offer.
    pub(crate) fn subscribe_answer(
        &mut self,
        id: ParticipantId,
        sdp: String,
    ) -> Result<(), String> {
        let participant = self.participants.get_mut(&id).ok_or("not joined")?;
        let Negotiation::AwaitingAnswer { again } = participant.negotiation else {
            return Err("no subscribe offer is waiting for an answer".into());
        };
        let key = participant.subscribe;
        let peer = self
            .peers
            .get_mut(key)
            .and_then(Option::as_mut)
            .ok_or("subscribe connection closed")?;
        let answer =
            RTCSessionDescription::answer(sdp).map_err(|e| format!("invalid answer: {e}"))?;
        peer.pc
            .set_remote_description(Instant::now(), answer)
            .map_err(|e| format!("answer refused: {e}"))?;
        if let Some(p) = self.participants.get_mut(&id) {
            p.negotiation = Negotiation::Stable;
        }
        self.mark(key);
        if again {
            self.renegotiate(id);
        }
        Ok(())
    }

    /// Sends a new subscribe offer, or notes that one must follow the outstanding one.
    pub(crate) fn renegotiate(&mut self, id: ParticipantId) {
        let Some(participant) = self.participants.get_mut(&id) else {
            return;
        };
        if participant.closing {
            return;
        }
        if let Negotiation::AwaitingAnswer { again } = &mut participant.negotiation {
            *again = true;
            return;
        }
        let key = participant.subscribe;
        let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        let offer = match peer.pc.create_offer(None) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(participant = %id, error = %e, "cannot create a subscribe offer");
                return;
            }
        };
        if let Err(e) = peer.pc.set_local_description(Instant::now(), offer) {
            tracing::warn!(participant = %id, error = %e, "cannot apply the subscribe offer");
            return;
        }
        let Some(sdp) = peer.pc.local_description().map(|d| d.sdp) else {
            return;
        };
        participant.negotiation = Negotiation::AwaitingAnswer { again: false };
        let _ = participant
            .events
            .send(ParticipantEvent::SubscribeOffer(sdp));
        self.mark(key);
    }

    /// Removes a participant, its tracks and its subscriptions; tells the others.
    pub(crate) fn leave(&mut self, id: ParticipantId, reason: Option<Ending>) {
        let Some(participant) = self.participants.remove(&id) else {
            return;
        };
        if let Some(reason) = reason {
            let _ = participant.events.send(ParticipantEvent::Closed(reason));
        }
        let published: Vec<_> = self
            .tracks
            .iter()
            .filter(|(_, t)| t.publisher == id)
            .map(|(k, _)| *k)
            .collect();
        for track in published {
            self.unpublish(track);
        }
        for track in participant.subscriptions.values() {
            if let Some(t) = self.tracks.get_mut(track) {
                t.subscribers.retain(|s| s.participant != id);
            }
        }
        self.track_by_sent.remove(&participant.subscribe);
        self.track_by_remote.remove(&participant.publish);
        self.drop_peer(participant.publish);
        self.drop_peer(participant.subscribe);
        if let Some(room) = self.rooms.get_mut(&participant.room) {
            room.participants.remove(&id);
            for other in &room.participants {
                if let Some(p) = self.participants.get(other) {
                    let _ = p.events.send(ParticipantEvent::ParticipantLeft(
                        participant.info.id.clone(),
                    ));
                }
            }
            if room.participants.is_empty() {
                self.rooms.remove(&participant.room);
            }
        }
        self.metrics.left();
        tracing::info!(participant = %id, room = %participant.room, "left");
    }

    /// Tells every participant of a room to reconnect elsewhere, with the token minted for
    /// its identity. Returns how many were told.
    pub(crate) fn migrate(
        &mut self,
        room: &str,
        endpoint: &str,
        tokens: &[(String, String)],
    ) -> usize {
        let Some(r) = self.rooms.get(room) else {
            return 0;
        };
        let mut told = 0;
        for id in &r.participants {
            let Some(p) = self.participants.get(id) else {
                continue;
            };
            let Some((_, token)) = tokens
                .iter()
                .find(|(identity, _)| *identity == p.info.identity)
            else {
                continue;
            };
            if p.events
                .send(ParticipantEvent::Migrate {
                    endpoint: endpoint.to_string(),
                    token: token.clone(),
                })
                .is_ok()
            {
                told += 1;
            }
        }
        told
    }

    /// Connection state, data channels and new tracks of one peer connection.
    pub(crate) fn drain_events(&mut self, key: PeerKey) {
        let mut events = Vec::new();
        if let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut) {
            while let Some(event) = peer.pc.poll_event() {
                events.push(event);
            }
        }
        for event in events {
            let Some((owner, role)) = self
                .peers
                .get(key)
                .and_then(Option::as_ref)
                .map(|p| (p.owner, p.role))
            else {
                return;
            };
            tracing::trace!(participant = %owner, ?role, ?event, "peer connection event");
            match event {
                RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => match state {
                    RTCPeerConnectionState::Connected => {
                        // Keyframes for a new subscriber are asked for once media may flow
                        // to it (see `MEDIA_GRACE`): its first packet then waits for one.
                        if let Some(p) = self.peers.get_mut(key).and_then(Option::as_mut) {
                            p.connected_at = Some(Instant::now());
                        }
                    }
                    RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                        tracing::info!(participant = %owner, ?role, ?state, "peer connection ended");
                        let never_connected = self
                            .peers
                            .get(key)
                            .and_then(Option::as_ref)
                            .is_some_and(|p| p.connected_at.is_none());
                        if never_connected && role == Role::Publish {
                            self.join_failed(owner);
                        }
                        self.leave(
                            owner,
                            Some(Ending::MediaFailed(format!("media connection {state}"))),
                        );
                        return;
                    }
                    _ => {}
                },
                RTCPeerConnectionEvent::OnDataChannel(RTCDataChannelEvent::OnOpen(channel))
                    if role == Role::Subscribe =>
                {
                    let pending = self.participants.get_mut(&owner).map(|p| {
                        p.chat = Some(channel);
                        std::mem::take(&mut p.pending_chat)
                    });
                    for message in pending.unwrap_or_default() {
                        self.send_chat(key, channel, &message);
                    }
                }
                RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(init))
                    if role == Role::Publish =>
                {
                    self.track_opened(key, owner, &init);
                }
                _ => {}
            }
        }
    }

    /// Counts a join whose media connection failed before it ever connected.
    fn join_failed(&mut self, participant: ParticipantId) {
        let room = self.participants.get(&participant).map(|p| p.room.clone());
        if let Some(r) = room.and_then(|r| self.rooms.get_mut(&r)) {
            r.quality.join_failures = r.quality.join_failures.saturating_add(1);
        }
    }

    /// Relays a chat message from `from` to everyone else in its room.
    pub(crate) fn relay_chat(&mut self, from: ParticipantId, data: &[u8]) {
        if data.len() > MAX_CHAT_BYTES {
            self.metrics.dropped("chat_too_large");
            return;
        }
        let Ok(raw) = std::str::from_utf8(data) else {
            self.metrics.dropped("chat_not_utf8");
            return;
        };
        let text = serde_json::from_str::<ChatIn>(raw).map_or_else(|_| raw.to_string(), |c| c.text);
        let Some(sender) = self.participants.get(&from) else {
            return;
        };
        let at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let message = serde_json::json!({ "from": sender.info.id, "name": sender.info.name, "text": text, "at": at }).to_string();
        let Some(room) = self.rooms.get(&sender.room) else {
            return;
        };
        let others: Vec<ParticipantId> = room
            .participants
            .iter()
            .copied()
            .filter(|p| *p != from)
            .collect();
        for other in others {
            let Some(p) = self.participants.get_mut(&other) else {
                continue;
            };
            match p.chat {
                Some(channel) => {
                    let key = p.subscribe;
                    self.send_chat(key, channel, &message);
                }
                None if p.pending_chat.len() < MAX_PENDING_CHAT => {
                    p.pending_chat.push(message.clone());
                }
                None => self.metrics.dropped("chat_backlog_full"),
            }
        }
    }

    fn send_chat(&mut self, key: PeerKey, channel: RTCDataChannelId, message: &str) {
        if let Some(peer) = self.peers.get_mut(key).and_then(Option::as_mut)
            && let Some(mut dc) = peer.pc.data_channel(channel)
        {
            if dc.send_text(Instant::now(), message.to_string()).is_ok() {
                self.metrics.chat_relayed();
            }
            self.mark(key);
        }
    }
}

/// Whether an SDP offer has a media section that sends (not `recvonly` or `inactive`).
fn sdp_sends_media(sdp: &str) -> bool {
    let mut in_media = false;
    let mut sends = false;
    for line in sdp.lines() {
        if line.starts_with("m=audio") || line.starts_with("m=video") {
            if in_media && sends {
                return true;
            }
            in_media = true;
            sends = true;
        } else if line.starts_with("m=") {
            if in_media && sends {
                return true;
            }
            in_media = false;
        } else if in_media && (line.starts_with("a=recvonly") || line.starts_with("a=inactive")) {
            sends = false;
        }
    }
    in_media && sends
}

#[cfg(test)]
mod tests {
    use super::sdp_sends_media;

    #[test]
    fn recognises_sending_media_sections() {
        assert!(sdp_sends_media("v=0\r\nm=audio 9 UDP\r\na=sendrecv\r\n"));
        assert!(!sdp_sends_media(
            "v=0\r\nm=audio 9 UDP\r\na=recvonly\r\nm=application 9 UDP\r\n"
        ));
        assert!(sdp_sends_media(
            "m=video 9\r\na=inactive\r\nm=audio 9\r\na=sendonly\r\n"
        ));
        assert!(!sdp_sends_media("m=application 9 UDP/DTLS/SCTP\r\n"));
    }
}
