//! The media core: every peer connection, every room, and no socket. It takes datagrams,
//! commands and the time, and returns datagrams to send ([`Engine::poll_transmit`]) and the
//! time it next needs to be woken ([`Engine::poll_timeout`]); [`crate::media::driver`] owns the
//! socket, batches reads and writes, and keeps the clock. After each input, [`Engine::process`]
//! drains every peer connection it touched: events, and RTP/RTCP/data read, which forwarding
//! turns into writes on other connections, then the datagrams they produced.
//!
//! The core's parts, each a concern of the one [`Engine`]:
//! - [`demux`]: which peer connection a datagram or TCP frame belongs to;
//! - [`participants`]: joining, leaving, negotiation and chat;
//! - [`tracks`]: published tracks, subscriptions and forwarding;
//! - [`forward`]: per-subscriber forwarding state (layer choice, keyframe wait);
//! - [`allocation`]: which layer each of a subscriber's tracks gets from its bandwidth
//!   estimate, and [`adapt`], which applies it; [`meter`]: each layer's bitrate;
//! - [`rewrite`]: sequence and timestamp continuity across layer switches, and [`vp8`]: VP8
//!   picture numbering continuity;
//! - [`keyframe`]: VP8 and H264 keyframe detection;
//! - [`feedback`]: subscribers' keyframe requests and NACKs out of the interceptor chain;
//! - [`flood`]: each connection's budget of RTCP, so a flood of feedback is dropped unread;
//! - [`rtx_budget`]: retransmissions to a subscriber kept to a share of its estimate;
//! - [`quality`]: RTT, jitter and loss from the connections' statistics;
//! - [`timers`]: the peer connections' deadlines;
//! - [`codecs`]: the codecs negotiated.

pub mod adapt;
pub mod allocation;
pub mod codecs;
pub mod demux;
pub mod feedback;
pub mod flood;
pub mod forward;
pub mod keyframe;
pub mod meter;
pub mod participants;
pub mod quality;
pub mod rewrite;
pub mod rtx_budget;
pub mod timers;
pub mod tracks;
pub mod vp8;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::ice::tcp_type::TcpType;
use rtc::interceptor::Registry;
use rtc::interceptor::{
    CongestionControlBuilder, GCC_MIN_BITRATE, Gcc, NackGeneratorBuilder, NackResponderBuilder,
    ReceiverReportBuilder, SenderReportBuilder, Slot, TwccSenderBuilder,
};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::setting_engine::{
    SctpMaxMessageSize, SettingEngineBuilder,
};
use rtc::peer_connection::transport::{CandidateConfig, CandidateHostConfig, RTCIceCandidate};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext};
use serde::Serialize;
use tokio::sync::watch;

use crate::admission::{Limits, NodeMode};
use crate::drain::{Drain, DrainEvent};
use crate::media::{Command, Ending, ParticipantEvent, ParticipantId};
use crate::metrics::Metrics;
use demux::{Demux, PeerKey, Remote};
use participants::Participant;
use ruche_crds::admin::{Accepted, AssignmentList, ListVersion, RoomQuality, StaleList};
use timers::Timers;
use tracks::{Track, TrackKey};

/// How the media loop is set up.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where the UDP socket binds (`0.0.0.0:7882` in a pod).
    pub bind: SocketAddr,
    /// The address clients are told to send media to (the pod's, a node port, a load
    /// balancer's). With port 0, the bound port is used; with an unspecified IP, the bound IP.
    /// In the running loop this is the current address: [`Command::Advertise`] replaces it.
    pub advertise: SocketAddr,
    /// Slots and room sizes.
    pub limits: Limits,
    /// Dev (any room) or managed (assigned rooms only).
    pub mode: NodeMode,
}

/// Role of a peer connection within a participant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Carries the participant's media and chat to the node (the client offers).
    Publish,
    /// Carries the others' media and chat to the participant (the node offers).
    Subscribe,
}

/// One peer connection on the shared socket.
pub struct Peer {
    /// The sans-IO connection.
    pub pc: RTCPeerConnection,
    /// Its participant.
    pub owner: ParticipantId,
    /// Publish or subscribe.
    pub role: Role,
    /// Local ICE ufrag (routing key).
    pub ufrag: String,
    /// The address its host candidate advertises, fixed for the connection's life. Datagrams
    /// for it are tagged with this address: ICE accepts them only on a known local candidate,
    /// so a later [`Command::Advertise`] must not change it under a live connection.
    pub local: SocketAddr,
    /// When DTLS and SRTP came up on the node's side.
    pub connected_at: Option<Instant>,
    /// The bandwidth estimate of a subscribe connection (send-side, from its feedback).
    pub estimate: feedback::Estimate,
    /// Its layer allocation over time.
    pub adaptation: allocation::Adaptation,
    /// When its allocation may next be reconsidered.
    pub next_adapt: Option<Instant>,
}

/// How long after its DTLS handshake completes on the node a subscribe connection starts to
/// get media. The client finishes the handshake (and installs its SRTP keys) a moment after the
/// node does; a keyframe sent into that moment is lost, and the subscriber would then sit on
/// undecodable delta frames until it asks for another.
pub const MEDIA_GRACE: Duration = Duration::from_millis(200);

impl Peer {
    /// Whether media may be sent on this connection now.
    pub fn media_ready(&self, now: Instant) -> bool {
        self.connected_at.is_some_and(|at| now >= at + MEDIA_GRACE)
    }
}

/// The node as the admin API reports it.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// `Ready`, `Draining` or `Drained`.
    pub phase: String,
    /// Seconds until the drain deadline, if any.
    pub drain_deadline_seconds: Option<u64>,
    /// Participant slots of the node.
    pub capacity_slots: u32,
    /// Slots reserved by assigned rooms.
    pub reserved_slots: u32,
    /// Slots in use: per room, the higher of its reservation and its participants.
    pub used_slots: u32,
    /// Live rooms.
    pub rooms: u32,
    /// Connected participants.
    pub participants: u32,
    /// Media received, bits per second (last second).
    pub bitrate_in_bps: u64,
    /// Media sent, bits per second (last second).
    pub bitrate_out_bps: u64,
    /// The media address new peer connections advertise (`IP:port`).
    pub advertise: String,
    /// The version of the assignment list held.
    pub assignments_version: ListVersion,
    /// Rooms with their participants.
    pub room_list: Vec<RoomStatus>,
}

/// One room on the node.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatus {
    /// Room name.
    pub name: String,
    /// Participants connected.
    pub participants: u32,
    /// Tracks published.
    pub tracks: u32,
    /// Slots the operator reserved for it (0 if not assigned).
    pub reserved_slots: u32,
    /// Whether the room is in the assignment list.
    pub assigned: bool,
    /// Whether the room has moved to another node and only its last sessions remain here.
    pub leaving: bool,
    /// Its joins and media quality.
    pub quality: RoomQuality,
}

/// A room live on the node.
#[derive(Debug, Default)]
pub struct Room {
    /// Its participants.
    pub participants: BTreeSet<ParticipantId>,
    /// Its published tracks.
    pub tracks: BTreeSet<TrackKey>,
    /// Its joins and media quality, for the operator's rollout quality gate.
    pub quality: RoomQuality,
}

/// A datagram to send (over TCP: one RFC 4571 frame).
#[derive(Debug)]
pub struct Transmit {
    /// Where to, over which transport.
    pub to: Remote,
    /// What.
    pub data: BytesMut,
}

/// The media core's state.
pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) metrics: Arc<Metrics>,
    /// Where the driver's socket is bound (stands in for a port of 0 or an unspecified IP
    /// advertised).
    bound: SocketAddr,
    /// Datagrams waiting for the driver.
    outbox: VecDeque<Transmit>,
    /// Publishes `config.advertise` to the [`MediaHandle`]s.
    advertised: watch::Sender<SocketAddr>,
    pub(crate) peers: Vec<Option<Peer>>,
    free: Vec<PeerKey>,
    pub(crate) demux: Demux,
    pub(crate) timers: Timers,
    dirty: Vec<PeerKey>,
    is_dirty: Vec<bool>,
    pub(crate) participants: HashMap<ParticipantId, Participant>,
    pub(crate) rooms: HashMap<String, Room>,
    pub(crate) tracks: HashMap<TrackKey, Track>,
    /// Publish connection and its remote track id to our track.
    pub(crate) track_by_remote: HashMap<PeerKey, HashMap<String, TrackKey>>,
    /// Subscribe connection and the sent track id to our track.
    pub(crate) track_by_sent: HashMap<PeerKey, HashMap<String, TrackKey>>,
    pub(crate) next_participant: u64,
    pub(crate) next_track: u64,
    pub(crate) drain: Drain,
    /// Rooms the operator assigned here, with their reserved slots.
    pub(crate) assigned: HashMap<String, u32>,
    /// Rooms moved to another node whose open sessions are kept until they leave (see
    /// [`ruche_crds::admin::Assignment::leaving`]).
    pub(crate) leaving: HashSet<String>,
    /// The version of that list.
    pub(crate) assigned_version: ListVersion,
    bytes_in_window: u64,
    bytes_out_window: u64,
    bitrate_in: u64,
    bitrate_out: u64,
    ticks: u64,
    pub(crate) losses: quality::LossLedger,
    /// Each connection's RTCP budget.
    budgets: flood::Budgets,
}

/// The address to advertise for `requested`: a port of 0 or an unspecified IP take the bound
/// socket's.
pub(crate) fn resolve_advertise(mut requested: SocketAddr, bound: SocketAddr) -> SocketAddr {
    if requested.port() == 0 {
        requested.set_port(bound.port());
    }
    if requested.ip().is_unspecified() {
        requested.set_ip(bound.ip());
    }
    requested
}

/// Random bytes from the OS, hex-encoded (ICE credentials, keys). No fallback: a guessable
/// ICE password would let anyone bind an address to another participant's connection.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(buf
        .iter()
        .fold(String::with_capacity(bytes * 2), |mut s, b| {
            use std::fmt::Write;
            let _ = write!(s, "{b:02x}");
            s
        }))
}

/// Packets of each sent stream kept for retransmission on a NACK. A NACK comes a round trip
/// after the loss, and a retransmission later than the receiver's jitter buffer (a few hundred
/// milliseconds) is wasted: 128 packets is about 0.85 s of 720p video at 150 packets a second,
/// and 0.5 s of a 1080p layer, several round trips either way. Each subscriber keeps its own
/// history of every video stream it receives, so this is most of a meeting's memory: the
/// stack's default (1,024) kept seconds more than any retransmission can use.
pub const NACK_HISTORY: u16 = 128;

/// The interceptor chain of a connection, by role. Every interceptor of a chain moves every
/// packet written through it, so each role has only its half:
/// - **publish** (the node receives): NACKs for what the publisher lost, transport-wide
///   congestion control feedback (the publisher's browser estimates its uplink from it),
///   receiver reports;
/// - **subscribe** (the node sends): retransmissions from a history of [`NACK_HISTORY`]
///   packets, sender reports, transport-wide sequence numbers and the send-side estimate they
///   feed (no pacer: forwarding adds no queue), and the subscriber's feedback delivered to the
///   loop ([`feedback`]).
fn interceptors(
    role: Role,
    feedback: feedback::DeliverFeedback,
    media_engine: &mut rtc::peer_connection::configuration::media_engine::MediaEngine,
) -> Result<Registry, rtc::shared::error::Error> {
    // The codecs already carry their `nack` and `nack pli` feedback (see `codecs`). Both
    // roles offer the simulcast and transport-wide sequence number extensions and the
    // `transport-cc` feedback in their SDP; the recorder that comes with the latter is only
    // used on publish connections.
    configure_simulcast_extension_headers(media_engine)?;
    let recorder = configure_twcc_receiver_only(Registry::new(), media_engine)?;
    Ok(match role {
        Role::Publish => recorder
            .with(Slot::NackGenerator, NackGeneratorBuilder::new().build())
            .with(Slot::ReceiverReport, ReceiverReportBuilder::new().build()),
        Role::Subscribe => Registry::new()
            .with(
                Slot::NackResponder,
                NackResponderBuilder::new().with_size(NACK_HISTORY).build(),
            )
            .with(Slot::SenderReport, SenderReportBuilder::new().build())
            .with(Slot::TwccSender, TwccSenderBuilder::new().build())
            .with(
                Slot::CongestionControl,
                CongestionControlBuilder::new(Gcc::new(
                    INITIAL_ESTIMATE,
                    GCC_MIN_BITRATE,
                    MAX_ESTIMATE,
                ))
                .build(),
            )
            .with(feedback::slot(), feedback),
    })
}

/// Where a subscriber's bandwidth estimate starts, in bit/s: high enough for the best layer of
/// a meeting's video, so that a subscriber starts there and only congestion lowers it.
pub const INITIAL_ESTIMATE: f64 = 3_000_000.0;
/// The highest estimate, in bit/s: more than any subscriber of a meeting receives. The
/// estimate climbs while the path is quiet and falls back by steps on loss: a ceiling near what
/// is used keeps that fall short.
pub const MAX_ESTIMATE: f64 = 20_000_000.0;

/// The largest data channel message: a chat message ([`participants::MAX_CHAT_BYTES`]) in its
/// JSON envelope, with room to spare.
pub const SCTP_MAX_MESSAGE_BYTES: u32 = 16 * 1024;

/// A random, non-zero SSRC.
pub(crate) fn random_u32() -> Result<u32, getrandom::Error> {
    let mut buf = [0u8; 4];
    getrandom::fill(&mut buf)?;
    Ok(u32::from_be_bytes(buf).max(1))
}

impl Engine {
    /// A core for a socket bound at `bound`; `advertised` publishes the address advertised.
    pub fn new(
        mut config: EngineConfig,
        metrics: Arc<Metrics>,
        bound: SocketAddr,
        advertised: watch::Sender<SocketAddr>,
    ) -> Self {
        config.advertise = resolve_advertise(config.advertise, bound);
        advertised.send_replace(config.advertise);
        Self {
            config,
            metrics,
            bound,
            outbox: VecDeque::new(),
            advertised,
            peers: Vec::new(),
            free: Vec::new(),
            demux: Demux::default(),
            timers: Timers::default(),
            dirty: Vec::new(),
            is_dirty: Vec::new(),
            participants: HashMap::new(),
            rooms: HashMap::new(),
            tracks: HashMap::new(),
            track_by_remote: HashMap::new(),
            track_by_sent: HashMap::new(),
            next_participant: 1,
            next_track: 1,
            drain: Drain::new(),
            assigned: HashMap::new(),
            leaving: HashSet::new(),
            assigned_version: ListVersion::NONE,
            bytes_in_window: 0,
            bytes_out_window: 0,
            bitrate_in: 0,
            bitrate_out: 0,
            ticks: 0,
            losses: quality::LossLedger::default(),
            budgets: flood::Budgets::default(),
        }
    }

    /// When the core next needs [`Engine::handle_timeout`].
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.timers.earliest()
    }

    /// Runs the connections whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        for peer in self.timers.due(now) {
            if let Some(p) = self.peers.get_mut(peer).and_then(Option::as_mut) {
                let _ = p.pc.handle_timeout(now);
                self.mark(peer);
            }
        }
    }

    /// The next datagram to send, once [`Engine::process`] has run.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.outbox.pop_front()
    }

    /// Moves every datagram waiting to be sent to the back of `queue`, at once.
    pub fn take_transmits(&mut self, queue: &mut VecDeque<Transmit>) {
        queue.append(&mut self.outbox);
    }

    /// Feeds one datagram to the connection it belongs to (call [`Engine::process`] after a
    /// batch of them).
    pub fn handle_datagram(&mut self, now: Instant, from: Remote, data: &[u8]) {
        self.metrics.udp_in(data.len());
        self.bytes_in_window += data.len() as u64;
        let Some(peer) = self.demux.route(from, data) else {
            tracing::trace!(%from, len = data.len(), first = data.first().copied(), "unroutable datagram");
            self.metrics.dropped("unroutable");
            return;
        };
        // Checked before decryption: a flood costs the node no more than this.
        if flood::is_rtcp(data) && !self.budgets.allow(peer, now) {
            self.metrics.dropped("feedback_flood");
            return;
        }
        let Some(p) = self.peers.get_mut(peer).and_then(Option::as_mut) else {
            self.metrics.dropped("unroutable");
            return;
        };
        let message = TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr: p.local,
                peer_addr: from.addr,
                ecn: None,
                transport_protocol: from.transport,
            },
            message: BytesMut::from(data),
        };
        // A malformed or hostile datagram is that connection's problem only: count and drop.
        if let Err(e) = p.pc.handle_read(message) {
            tracing::trace!(error = %e, %from, "datagram refused by its peer connection");
            self.metrics.dropped("malformed");
        }
        self.mark(peer);
    }

    /// Notes that a connection has output to drain.
    pub(crate) fn mark(&mut self, peer: PeerKey) {
        if self.is_dirty.len() <= peer {
            self.is_dirty.resize(peer + 1, false);
        }
        if !self.is_dirty[peer] {
            self.is_dirty[peer] = true;
            self.dirty.push(peer);
        }
    }

    /// Drains every touched connection until nothing is left to do; the datagrams they
    /// produced wait in [`Engine::poll_transmit`].
    pub fn process(&mut self) {
        let now = Instant::now();
        while let Some(peer) = self.dirty.pop() {
            self.is_dirty[peer] = false;
            self.drain_events(peer);
            self.drain_reads(peer);
            self.adapt(peer, now);
            self.drain_writes(peer);
            let deadline = self
                .peers
                .get_mut(peer)
                .and_then(Option::as_mut)
                .and_then(|p| p.pc.poll_timeout());
            self.timers.set(peer, deadline);
        }
    }

    fn drain_writes(&mut self, peer: PeerKey) {
        while let Some(out) = self
            .peers
            .get_mut(peer)
            .and_then(Option::as_mut)
            .and_then(|p| p.pc.poll_write())
        {
            self.metrics.udp_out(out.message.len());
            self.bytes_out_window += out.message.len() as u64;
            self.outbox.push_back(Transmit {
                to: Remote {
                    transport: out.transport.transport_protocol,
                    addr: out.transport.peer_addr,
                },
                data: out.message,
            });
        }
    }

    /// Builds a peer connection on the shared socket and registers it.
    pub(crate) fn new_peer(&mut self, owner: ParticipantId, role: Role) -> Result<PeerKey, String> {
        let random =
            |n| random_hex(n).map_err(|e| format!("no randomness for ICE credentials: {e}"));
        let ufrag = random(8)?;
        let password = random(16)?;
        let mut media_engine = codecs::media_engine().map_err(|e| e.to_string())?;
        // The subscriber's feedback and bandwidth estimate must reach the loop (`feedback`).
        let estimate = feedback::Estimate::default();
        let feedback = feedback::DeliverFeedback::new(estimate.clone(), self.metrics.clone());
        let registry =
            interceptors(role, feedback, &mut media_engine).map_err(|e| e.to_string())?;
        let setting_engine = SettingEngineBuilder::new()
            // Chat is the only data channel, its messages a few KiB: the default (64 KiB) is
            // also a buffer each connection holds.
            .with_sctp_max_message_size(SctpMaxMessageSize::Bounded(SCTP_MAX_MESSAGE_BYTES))
            .with_lite(true)
            .with_ice_credentials(ufrag.clone(), password)
            .build();
        let mut pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(setting_engine)
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .build(Instant::now())
            .map_err(|e| e.to_string())?;
        // The address advertised now; the connection keeps it even if it changes later.
        let local = self.config.advertise;
        // One host candidate per transport on the same address and port number: UDP, and
        // passive TCP (RFC 6544) for clients whose network blocks UDP.
        for (network, tcp_type) in [("udp", TcpType::Unspecified), ("tcp", TcpType::Passive)] {
            let candidate = CandidateHostConfig {
                base_config: CandidateConfig {
                    network: network.to_owned(),
                    address: local.ip().to_string(),
                    port: local.port(),
                    component: 1,
                    ..Default::default()
                },
                tcp_type,
            }
            .new_candidate_host()
            .map_err(|e| e.to_string())?;
            let init = RTCIceCandidate::from(&candidate)
                .to_json()
                .map_err(|e| e.to_string())?;
            pc.add_local_candidate(init).map_err(|e| e.to_string())?;
        }
        let key = self.free.pop().unwrap_or(self.peers.len());
        if key == self.peers.len() {
            self.peers.push(None);
        }
        self.demux.add(ufrag.clone(), key);
        self.peers[key] = Some(Peer {
            pc,
            owner,
            role,
            ufrag,
            local,
            connected_at: None,
            estimate,
            adaptation: allocation::Adaptation::default(),
            next_adapt: None,
        });
        Ok(key)
    }

    /// Closes and forgets a peer connection.
    pub(crate) fn drop_peer(&mut self, key: PeerKey) {
        if let Some(mut peer) = self.peers.get_mut(key).and_then(Option::take) {
            let _ = peer.pc.close();
            self.demux.remove(&peer.ufrag, key);
            self.timers.clear(key);
            self.losses.forget(key);
            self.budgets.forget(key);
            self.free.push(key);
        }
    }

    /// Handles a command; false stops the loop.
    pub fn handle_command(&mut self, command: Command) -> bool {
        match command {
            Command::Join(request, reply) => {
                let _ = reply.send(self.join(request));
            }
            Command::PublishOffer(participant, sdp, reply) => {
                let _ = reply.send(self.publish_offer(participant, sdp));
            }
            Command::SubscribeAnswer(participant, sdp, reply) => {
                let _ = reply.send(self.subscribe_answer(participant, sdp));
            }
            Command::SetLayer(participant, track, layer) => {
                self.set_layer(participant, &track, layer);
            }
            Command::Leave(participant) => self.leave(participant, None),
            Command::Drain(deadline, reason) => {
                let now = Instant::now();
                if self.drain.start(now, deadline.map(|d| now + d), reason) {
                    tracing::info!(?deadline, ?reason, "drain started");
                }
            }
            Command::CancelDrain => {
                if self.drain.cancel() {
                    tracing::info!("drain cancelled");
                }
            }
            Command::Assign(list, reply) => {
                let _ = reply.send(self.assign(list));
            }
            Command::Migrate(room, endpoint, tokens, reply) => {
                let _ = reply.send(self.migrate(&room, &endpoint, &tokens));
            }
            Command::Identities(room, reply) => {
                let list = self
                    .rooms
                    .get(&room)
                    .map(|r| {
                        r.participants
                            .iter()
                            .filter_map(|p| self.participants.get(p))
                            .map(|p| (p.info.identity.clone(), p.info.name.clone(), p.grants))
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = reply.send(list);
            }
            Command::CloseRoom(room, reply) => {
                let _ = reply.send(self.end_room(&room, &format!("room {room} was closed")));
            }
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Advertise(requested) => self.set_advertise(requested),
            Command::Shutdown => return false,
        }
        true
    }

    /// Takes the operator's list of rooms unless it is older than the one held. In managed
    /// mode, a room that leaves the list (deleted, closed, or gone elsewhere) ends here: the
    /// list is the whole truth, so a node converges to it even if it missed a close. A room
    /// listed as leaving keeps its open sessions (its participants are rejoining elsewhere)
    /// but admits nobody.
    fn assign(&mut self, list: AssignmentList) -> Result<Accepted, StaleList> {
        if StaleList::refuses(self.assigned_version, list.version) {
            tracing::warn!(held = %self.assigned_version, refused = %list.version, "stale assignment list refused");
            return Err(StaleList {
                current: self.assigned_version,
                refused: list.version,
            });
        }
        let (leaving, next): (Vec<_>, Vec<_>) = list.rooms.into_iter().partition(|a| a.leaving);
        let next: HashMap<String, u32> = next.into_iter().map(|a| (a.room, a.slots)).collect();
        let leaving: HashSet<String> = leaving
            .into_iter()
            .map(|a| a.room)
            .filter(|r| !next.contains_key(r))
            .collect();
        let mut ended: Vec<String> = if self.config.mode == NodeMode::Managed {
            self.rooms
                .iter()
                .filter(|(name, room)| {
                    !room.participants.is_empty()
                        && !next.contains_key(*name)
                        && !leaving.contains(*name)
                })
                .map(|(name, _)| name.clone())
                .collect()
        } else {
            Vec::new()
        };
        ended.sort();
        self.assigned = next;
        self.leaving = leaving;
        self.assigned_version = list.version;
        self.metrics
            .set_reserved(self.assigned.values().map(|s| u64::from(*s)).sum());
        for room in &ended {
            self.end_room(
                room,
                &format!("room {room} is no longer hosted on this media node"),
            );
        }
        Ok(Accepted {
            version: self.assigned_version,
            assigned: self.assigned.len(),
            ended,
        })
    }

    /// Ends every session of a room, telling its participants why; returns how many.
    fn end_room(&mut self, room: &str, why: &str) -> usize {
        let ids: Vec<ParticipantId> = self
            .rooms
            .get(room)
            .map(|r| r.participants.iter().copied().collect())
            .unwrap_or_default();
        // Every session hears that the room closed before anything else: no participant gets
        // an offer or a `participantLeft` for a room that is going away (an answer to it
        // would find its session gone).
        for id in &ids {
            if let Some(p) = self.participants.get_mut(id) {
                p.closing = true;
                let _ = p.events.send(ParticipantEvent::Closed(Ending::RoomClosed(
                    why.to_string(),
                )));
            }
        }
        for id in &ids {
            self.leave(*id, None);
        }
        tracing::info!(%room, participants = ids.len(), "{why}");
        ids.len()
    }

    /// Advertises `requested` to peer connections built from now on. Existing connections
    /// keep the address their host candidate carries (see [`Peer::local`]): it is in their
    /// clients' SDP already, ICE accepts datagrams only on a local candidate it knows, and
    /// moving a live connection would take an ICE restart.
    fn set_advertise(&mut self, requested: SocketAddr) {
        let advertise = resolve_advertise(requested, self.bound);
        if advertise != self.config.advertise {
            tracing::info!(from = %self.config.advertise, to = %advertise, "advertised media address changed");
            self.config.advertise = advertise;
        }
        self.advertised.send_replace(advertise);
    }

    /// Once a second: bitrates, drain progress. True when the process should exit.
    pub fn housekeeping(&mut self) -> bool {
        self.bitrate_in = self.bytes_in_window * 8;
        self.bitrate_out = self.bytes_out_window * 8;
        self.bytes_in_window = 0;
        self.bytes_out_window = 0;
        self.ticks += 1;
        let now = Instant::now();
        for t in self.tracks.values_mut() {
            t.meter.sample(now);
        }
        if self.ticks.is_multiple_of(quality::SAMPLE_EVERY_SECONDS) {
            self.sample_quality();
        }
        let live = self
            .rooms
            .values()
            .filter(|r| !r.participants.is_empty())
            .count();
        match self.drain.tick(Instant::now(), live) {
            Some(DrainEvent::Drained) => tracing::info!("drained: no room left"),
            Some(DrainEvent::DeadlineReached { live_rooms }) => {
                tracing::warn!(live_rooms, "drain deadline reached with rooms still live");
            }
            None => {}
        }
        self.metrics.set_phase(self.drain.phase());
        self.drain.exit_now(Instant::now())
    }

    /// Ends every session: the node is stopping.
    pub fn close_all(&mut self) {
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            self.leave(id, Some(Ending::NodeStopping));
        }
    }

    /// The node's status.
    pub(crate) fn status(&self) -> Status {
        let mut rooms: Vec<RoomStatus> = self
            .rooms
            .iter()
            .filter(|(_, r)| !r.participants.is_empty())
            .map(|(name, r)| RoomStatus {
                name: name.clone(),
                participants: r.participants.len() as u32,
                tracks: r.tracks.len() as u32,
                reserved_slots: self.assigned.get(name).copied().unwrap_or(0),
                assigned: self.assigned.contains_key(name),
                leaving: self.leaving.contains(name),
                quality: r.quality,
            })
            .collect();
        rooms.sort_by(|a, b| a.name.cmp(&b.name));
        let live: u32 = rooms
            .iter()
            .map(|r| r.participants.max(r.reserved_slots))
            .sum();
        let idle_reserved: u32 = self
            .assigned
            .iter()
            .filter(|(n, _)| !rooms.iter().any(|r| &r.name == *n))
            .map(|(_, s)| *s)
            .sum();
        let now = Instant::now();
        Status {
            phase: self.drain.phase().as_str().to_string(),
            drain_deadline_seconds: self
                .drain
                .deadline()
                .map(|d| d.saturating_duration_since(now).as_secs()),
            capacity_slots: self.config.limits.capacity_slots,
            reserved_slots: self.assigned.values().sum(),
            used_slots: live + idle_reserved,
            rooms: rooms.len() as u32,
            participants: self.participants.len() as u32,
            bitrate_in_bps: self.bitrate_in,
            bitrate_out_bps: self.bitrate_out,
            advertise: self.config.advertise.to_string(),
            assignments_version: self.assigned_version,
            room_list: rooms,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn core() -> (Engine, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let config = EngineConfig {
            bind: "127.0.0.1:7882".parse().unwrap(),
            advertise: "0.0.0.0:0".parse().unwrap(),
            limits: Limits {
                capacity_slots: 10,
                max_participants_per_room: 10,
            },
            mode: NodeMode::Dev,
        };
        let bound: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        let (advertised, _) = watch::channel(bound);
        (
            Engine::new(config, metrics.clone(), bound, advertised),
            metrics,
        )
    }

    #[test]
    fn the_core_advertises_its_bound_address_for_an_unspecified_one() {
        let (engine, _) = core();
        let want: SocketAddr = "127.0.0.1:7882".parse().unwrap();
        assert_eq!(engine.config.advertise, want);
    }

    proptest::proptest! {
        /// Garbage from anywhere, with no socket in sight: counted, dropped, nothing sent.
        #[test]
        fn garbage_datagrams_are_counted_and_dropped(
            datagrams in proptest::collection::vec(proptest::collection::vec(proptest::num::u8::ANY, 0..1500), 1..20),
        ) {
            let (mut engine, metrics) = core();
            let from: SocketAddr = "198.51.100.7:40000".parse().unwrap();
            for (i, d) in datagrams.iter().enumerate() {
                let from = if i % 2 == 0 { Remote::udp(from) } else { Remote::tcp(from) };
                engine.handle_datagram(Instant::now(), from, d);
            }
            engine.process();
            proptest::prop_assert!(engine.poll_transmit().is_none());
            proptest::prop_assert_eq!(engine.poll_timeout(), None);
            let text = metrics.encode();
            let dropped = format!("ruche_media_dropped_packets_total{{reason=\"unroutable\"}} {}", datagrams.len());
            proptest::prop_assert!(text.contains(&dropped), "{}", text);
        }
    }
}
