//! Test harness: a media node in this process on loopback, and WebRTC clients built on the
//! `webrtc` crate that speak the node's signaling protocol.

#![allow(dead_code, clippy::missing_panics_doc)]
// The `webrtc` crate's futures are large; boxing them in tests buys nothing.
#![allow(clippy::large_futures, clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use ruche_media_node::admin::{self, AdminState};
use ruche_media_node::admission::{Limits, NodeMode};
use ruche_media_node::keys::SharedKeys;
use ruche_media_node::media::MediaHandle;
use ruche_media_node::media::core::EngineConfig;
use ruche_media_node::media::driver::spawn;
use ruche_media_node::metrics::Metrics;
use ruche_media_node::signaling::{self, Liveness, SignalingState};
use ruche_media_node::token::{Claims, Grants, KeyRing, TokenKey};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCPeerConnectionState, RTCSessionDescription, Registry, register_default_interceptors,
};

/// The HMAC secret of test nodes.
pub const SECRET: &[u8] = b"test-secret-test-secret-test-secret-0123";
/// The admin token of test nodes.
pub const ADMIN_TOKEN: &str = "admin-test-token";

/// A media node running in this process.
pub struct Node {
    pub signaling: SocketAddr,
    pub admin: SocketAddr,
    pub media: SocketAddr,
    pub handle: MediaHandle,
    pub key: TokenKey,
    pub stopped: tokio::sync::watch::Receiver<bool>,
}

/// Options of a test node.
#[derive(Clone, Copy)]
pub struct NodeOptions {
    pub mode: NodeMode,
    pub capacity: u32,
    pub max_room: u32,
    /// Where the media socket binds (default: any free loopback port).
    pub bind: Option<SocketAddr>,
    /// What the node advertises (default: its bound address).
    pub advertise: Option<SocketAddr>,
    /// Keep-alive and idle timeout of signaling sessions.
    pub liveness: Liveness,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            mode: NodeMode::Dev,
            capacity: 100,
            max_room: 50,
            bind: None,
            advertise: None,
            liveness: Liveness::default(),
        }
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Node {
    pub async fn start(options: NodeOptions) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let key = TokenKey::hmac(SECRET).expect("test key");
        let metrics = Arc::new(Metrics::new());
        let config = EngineConfig {
            bind: options
                .bind
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr")),
            advertise: options
                .advertise
                .unwrap_or_else(|| "127.0.0.1:0".parse().expect("addr")),
            limits: Limits {
                capacity_slots: options.capacity,
                max_participants_per_room: options.max_room,
            },
            mode: options.mode,
        };
        let running = spawn(config, metrics.clone()).expect("media loop starts");
        let handle = running.handle.clone();
        let keys = Arc::new(SharedKeys::new(KeyRing::new(key.clone(), None)));
        let signaling_state = Arc::new(SignalingState {
            media: handle.clone(),
            keys: keys.clone(),
            replay: Mutex::default(),
            dev: true,
            metrics: metrics.clone(),
            liveness: options.liveness,
        });
        let admin_state = Arc::new(AdminState {
            media: handle.clone(),
            admin_token: ADMIN_TOKEN.into(),
            keys,
            failures: Mutex::default(),
            metrics,
        });
        let sig = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind signaling");
        let adm = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind admin");
        let (signaling, admin) = (
            sig.local_addr().expect("addr"),
            adm.local_addr().expect("addr"),
        );
        let router = signaling::router(signaling_state);
        let handed_over = running.http;
        let media_router = router.clone();
        tokio::spawn(async move { axum::serve(sig, router).await });
        tokio::spawn(async move { axum::serve(handed_over, media_router).await });
        tokio::spawn(async move { admin::serve(adm, admin_state).await });
        Self {
            signaling,
            admin,
            media: handle.media_addr(),
            handle,
            key,
            stopped: running.stopped,
        }
    }

    /// A token for `room` and `identity`, valid for an hour.
    pub fn token(&self, room: &str, identity: &str) -> String {
        self.token_with(room, identity, Grants::default(), now_unix() + 3600)
    }

    pub fn token_with(&self, room: &str, identity: &str, grants: Grants, exp: u64) -> String {
        let claims = Claims {
            sub: identity.into(),
            room: room.into(),
            name: Some(identity.into()),
            exp,
            nbf: None,
            iat: None,
            jti: None,
            grants,
        };
        self.key.mint(&claims).expect("mint")
    }

    /// A token for `room` and `identity` that admits once (it carries a fresh `jti`).
    pub fn token_once(&self, room: &str, identity: &str) -> String {
        let mut claims = Claims::new(identity, room, now_unix() + 3600);
        claims.jti = Some(ruche_media_node::token::fresh_jti().expect("randomness"));
        self.key.mint(&claims).expect("mint")
    }

    /// Joins `room` as `identity` with a fresh token; panics (fails the test) if refused.
    pub async fn join(&self, room: &str, identity: &str) -> Client {
        match Client::join(&self.ws_url(), room, &self.token(room, identity)).await {
            Ok(c) => c,
            Err(refused) => panic!("{identity} could not join {room}: {refused}"),
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.signaling)
    }

    /// Calls the admin API; returns the status and the body parsed as JSON (or as a string).
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value) {
        http(self.admin, method, path, body, token.or(Some(ADMIN_TOKEN))).await
    }
}

/// A minimal HTTP/1.1 client over a TCP stream, enough for the admin API.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let content = if body.is_empty() {
        String::new()
    } else {
        "Content-Type: application/json\r\n".into()
    };
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}{content}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.expect("read");
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    // Chunked bodies: take the JSON object or array inside.
    let json_part = body.find(['{', '[']).and_then(|start| {
        body.rfind(['}', ']'])
            .map(|end| body[start..=end].to_string())
    });
    let value = json_part
        .and_then(|j| serde_json::from_str(&j).ok())
        .unwrap_or(Value::String(body));
    (status, value)
}

/// One received packet: SSRC, sequence number, payload.
pub type ReceivedPacket = (u32, u16, Bytes);

/// What a client received on its subscribe connection.
#[derive(Default, Debug)]
pub struct Received {
    /// Packets per (stream id, track id): (ssrc, sequence number, payload).
    pub packets: BTreeMap<(String, String), Vec<ReceivedPacket>>,
    /// Chat messages.
    pub chat: Vec<Value>,
    /// When the first media packet arrived.
    pub first_packet: Option<Instant>,
}

impl Received {
    pub fn count_from(&self, stream: &str) -> usize {
        self.packets
            .iter()
            .filter(|((s, _), _)| s == stream)
            .map(|(_, v)| v.len())
            .sum()
    }

    pub fn payloads_from(&self, stream: &str) -> Vec<Bytes> {
        self.packets
            .iter()
            .filter(|((s, _), _)| s == stream)
            .flat_map(|(_, v)| v.iter().map(|p| p.2.clone()))
            .collect()
    }
}

struct SubscribeHandler {
    received: Arc<Mutex<Received>>,
    connected: Arc<Mutex<Option<RTCPeerConnectionState>>>,
}

#[async_trait]
impl PeerConnectionEventHandler for SubscribeHandler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        *self.connected.lock().expect("lock") = Some(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        tokio::spawn(async move {
            let key = (track.stream_id().await, track.track_id().await);
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    let mut received = received.lock().expect("lock");
                    received.first_packet.get_or_insert_with(Instant::now);
                    received.packets.entry(key.clone()).or_default().push((
                        p.header.ssrc,
                        p.header.sequence_number,
                        p.payload.clone(),
                    ));
                }
            }
        });
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        let received = self.received.clone();
        tokio::spawn(async move {
            while let Some(event) = dc.poll().await {
                if let DataChannelEvent::OnMessage(m) = event
                    && let Ok(v) = serde_json::from_slice::<Value>(&m.data)
                {
                    received.lock().expect("lock").chat.push(v);
                }
            }
        });
    }
}

struct PublishHandler {
    connected: Arc<Mutex<Option<RTCPeerConnectionState>>>,
}

#[async_trait]
impl PeerConnectionEventHandler for PublishHandler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        *self.connected.lock().expect("lock") = Some(state);
    }
}

/// Counts keyframe requests (PLI, FIR) reaching a client, as a browser's encoder would see them.
#[derive(Default)]
struct CountKeyframeRequests {
    count: Arc<std::sync::atomic::AtomicU32>,
    reads: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
    writes: std::collections::VecDeque<rtc::interceptor::TaggedPacket>,
}

impl rtc::sansio::Protocol<rtc::interceptor::TaggedPacket, rtc::interceptor::TaggedPacket, ()>
    for CountKeyframeRequests
{
    type Rout = rtc::interceptor::TaggedPacket;
    type Wout = rtc::interceptor::TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
        if let rtc::interceptor::Packet::Rtcp(packets) = &msg.message.packet {
            let n = packets
                .iter()
                .filter(|p| p.as_any().is::<rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication>() || p.as_any().is::<rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest>())
                .count();
            self.count
                .fetch_add(n as u32, std::sync::atomic::Ordering::Relaxed);
        }
        self.reads.push_back(msg);
        Ok(())
    }
    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.reads.pop_front()
    }
    fn handle_write(&mut self, msg: rtc::interceptor::TaggedPacket) -> Result<(), Self::Error> {
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

impl rtc::interceptor::Interceptor for CountKeyframeRequests {
    fn bind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
}

fn client_media_engine() -> MediaEngine {
    let mut m = MediaEngine::default();
    m.register_default_codecs().expect("codecs");
    m
}

/// How a test client reaches the node's media port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// UDP, as most clients.
    Udp,
    /// TCP only (active ICE-TCP candidates, RFC 4571 framing): a client whose UDP is blocked.
    Tcp,
}

/// Dials the node's passive TCP candidates found in `sdp` (a TCP-only client gets no
/// UDP candidate pair, so these are its only way in).
async fn dial_tcp_candidates(pc: &Arc<dyn PeerConnection>, sdp: &str) {
    for line in sdp.lines() {
        let Some(candidate) = line.strip_prefix("a=") else {
            continue;
        };
        let lower = candidate.to_ascii_lowercase();
        if lower.starts_with("candidate:")
            && lower.contains(" tcp ")
            && lower.contains("tcptype passive")
        {
            let init = webrtc::peer_connection::RTCIceCandidateInit {
                candidate: candidate.to_string(),
                sdp_mid: Some(String::new()),
                sdp_mline_index: Some(0),
                username_fragment: None,
                ..Default::default()
            };
            pc.add_ice_candidate(init)
                .await
                .expect("add the node's TCP candidate");
        }
    }
}

async fn peer(
    handler: Arc<dyn PeerConnectionEventHandler>,
    keyframe_requests: Arc<std::sync::atomic::AtomicU32>,
    transport: Transport,
) -> Arc<dyn PeerConnection> {
    let mut media_engine = client_media_engine();
    let counter = CountKeyframeRequests {
        count: keyframe_requests,
        ..Default::default()
    };
    let registry = Registry::new().with(rtc::interceptor::Slot::from(14_000), counter);
    let registry =
        register_default_interceptors(registry, &mut media_engine).expect("interceptors");
    let pc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(handler);
    let pc = match transport {
        Transport::Udp => pc.with_udp_addrs(vec!["127.0.0.1:0"]),
        Transport::Tcp => pc
            .with_udp_addrs(Vec::<&str>::new())
            .with_tcp_addrs(vec!["127.0.0.1:0"]),
    };
    let pc = pc.build().await.expect("peer connection");
    Arc::new(pc)
}

/// A participant driven from the test.
pub struct Client {
    pub id: String,
    pub messages: Arc<Mutex<Vec<Value>>>,
    out: mpsc::UnboundedSender<String>,
    pub publish: Arc<dyn PeerConnection>,
    pub subscribe: Arc<dyn PeerConnection>,
    pub received: Arc<Mutex<Received>>,
    pub publish_state: Arc<Mutex<Option<RTCPeerConnectionState>>>,
    pub subscribe_state: Arc<Mutex<Option<RTCPeerConnectionState>>>,
    chat: Mutex<Option<Arc<dyn DataChannel>>>,
    keyframe_requests: Arc<std::sync::atomic::AtomicU32>,
    /// The last `migrate` message, with when it arrived.
    pub migration: Arc<Mutex<Option<Migration>>>,
    /// The node's close frame (code, reason), once it arrived.
    pub closed: Arc<Mutex<Option<(u16, String)>>>,
}

/// Where a `migrate` message told a participant to reconnect, and when it arrived.
#[derive(Clone, Debug)]
pub struct Migration {
    /// The new node's signaling endpoint.
    pub endpoint: String,
    /// A join token minted for the participant's identity.
    pub token: String,
    /// When the message arrived.
    pub at: Instant,
}

/// A join that failed, with the node's error message.
pub type Refused = Value;

impl Client {
    /// Connects, joins `room` with `token`, and keeps answering subscribe offers.
    pub async fn join(url: &str, room: &str, token: &str) -> Result<Self, Refused> {
        Self::join_over(url, room, token, Transport::Udp).await
    }

    /// [`Client::join`], with media over `transport`.
    pub async fn join_over(
        url: &str,
        room: &str,
        token: &str,
        transport: Transport,
    ) -> Result<Self, Refused> {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let (mut sink, mut stream) = ws.split();
        sink.send(Message::Text(
            serde_json::json!({"type": "join", "token": token, "room": room})
                .to_string()
                .into(),
        ))
        .await
        .expect("send join");
        let first: Value = loop {
            match stream.next().await {
                Some(Ok(Message::Text(t))) => break serde_json::from_str(&t).expect("json"),
                Some(Ok(_)) => {}
                _ => return Err(Value::String("closed".into())),
            }
        };
        if first["type"] != "joined" {
            return Err(first);
        }
        let id = first["participantId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let received = Arc::new(Mutex::new(Received::default()));
        let subscribe_state = Arc::new(Mutex::new(None));
        let publish_state = Arc::new(Mutex::new(None));
        let keyframe_requests = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let subscribe = peer(
            Arc::new(SubscribeHandler {
                received: received.clone(),
                connected: subscribe_state.clone(),
            }),
            Arc::default(),
            transport,
        )
        .await;
        let publish = peer(
            Arc::new(PublishHandler {
                connected: publish_state.clone(),
            }),
            keyframe_requests.clone(),
            transport,
        )
        .await;
        let messages = Arc::new(Mutex::new(vec![first]));
        let migration: Arc<Mutex<Option<Migration>>> = Arc::default();
        let closed: Arc<Mutex<Option<(u16, String)>>> = Arc::default();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        {
            let (messages, subscribe, publish, out, migration, closed) = (
                messages.clone(),
                subscribe.clone(),
                publish.clone(),
                out.clone(),
                migration.clone(),
                closed.clone(),
            );
            tokio::spawn(async move {
                while let Some(Ok(frame)) = stream.next().await {
                    let text = match frame {
                        Message::Text(text) => text,
                        Message::Close(frame) => {
                            *closed.lock().expect("lock") =
                                Some(frame.map_or((1005, String::new()), |f| {
                                    (u16::from(f.code), f.reason.to_string())
                                }));
                            continue;
                        }
                        _ => continue,
                    };
                    let Ok(m) = serde_json::from_str::<Value>(&text) else {
                        continue;
                    };
                    match m["type"].as_str() {
                        Some("subscribeOffer") => {
                            let offer = RTCSessionDescription::offer(
                                m["sdp"].as_str().unwrap_or_default().to_string(),
                            )
                            .expect("offer");
                            // A client closed (after following a migration) answers nothing.
                            if subscribe.set_remote_description(offer).await.is_err() {
                                break;
                            }
                            let Ok(answer) = subscribe.create_answer(None).await else {
                                break;
                            };
                            if subscribe.set_local_description(answer).await.is_err() {
                                break;
                            }
                            let sdp = subscribe
                                .local_description()
                                .await
                                .map(|d| d.sdp)
                                .unwrap_or_default();
                            let _ = out.send(
                                serde_json::json!({"type": "subscribeAnswer", "sdp": sdp})
                                    .to_string(),
                            );
                            if transport == Transport::Tcp {
                                dial_tcp_candidates(
                                    &subscribe,
                                    m["sdp"].as_str().unwrap_or_default(),
                                )
                                .await;
                            }
                        }
                        Some("migrate") => {
                            *migration.lock().expect("lock") = Some(Migration {
                                endpoint: m["endpoint"].as_str().unwrap_or_default().to_string(),
                                token: m["token"].as_str().unwrap_or_default().to_string(),
                                at: Instant::now(),
                            });
                        }
                        Some("publishAnswer") => {
                            let answer = RTCSessionDescription::answer(
                                m["sdp"].as_str().unwrap_or_default().to_string(),
                            )
                            .expect("answer");
                            publish
                                .set_remote_description(answer)
                                .await
                                .expect("set answer");
                            if transport == Transport::Tcp {
                                dial_tcp_candidates(
                                    &publish,
                                    m["sdp"].as_str().unwrap_or_default(),
                                )
                                .await;
                            }
                        }
                        _ => {}
                    }
                    messages.lock().expect("lock").push(m);
                }
            });
        }
        Ok(Self {
            id,
            messages,
            out,
            publish,
            subscribe,
            received,
            publish_state,
            subscribe_state,
            chat: Mutex::new(None),
            keyframe_requests,
            migration,
            closed,
        })
    }

    pub fn send(&self, message: &Value) {
        let _ = self.out.send(message.to_string());
    }

    pub fn send_raw(&self, text: &str) {
        let _ = self.out.send(text.to_string());
    }

    /// Adds a VP8 video track and an Opus audio track, and offers them.
    pub async fn publish_av(&self) -> (Outgoing, Outgoing) {
        let video = self
            .add_track(RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0, None)
            .await;
        let audio = self
            .add_track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2, None)
            .await;
        self.offer().await;
        (video, audio)
    }

    pub async fn add_track(
        &self,
        kind: RtpCodecKind,
        mime: &str,
        clock_rate: u32,
        channels: u16,
        rid: Option<&str>,
    ) -> Outgoing {
        let codec = RTCRtpCodec {
            mime_type: mime.into(),
            clock_rate,
            channels,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![],
        };
        let ssrc = rand_ssrc();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("{}-stream", self.id),
            format!("{}-{kind}", self.id),
            format!("{kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    rid: rid.unwrap_or_default().into(),
                    ..Default::default()
                },
                codec,
                ..Default::default()
            }],
        )));
        self.publish
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add track");
        Outgoing { track, ssrc }
    }

    /// Opens the chat channel on the publish connection (before the offer).
    pub async fn open_chat(&self) {
        let dc = self
            .publish
            .create_data_channel("chat", None)
            .await
            .expect("data channel");
        *self.chat.lock().expect("lock") = Some(dc);
    }

    pub async fn chat(&self, text: &str) -> bool {
        let dc = self.chat.lock().expect("lock").clone();
        match dc {
            Some(dc) => dc
                .send_text(&serde_json::json!({"text": text}).to_string())
                .await
                .is_ok(),
            None => false,
        }
    }

    /// Sends an offer for the publish connection.
    pub async fn offer(&self) {
        let offer = self.publish.create_offer(None).await.expect("offer");
        self.publish
            .set_local_description(offer)
            .await
            .expect("set offer");
        let sdp = self
            .publish
            .local_description()
            .await
            .map(|d| d.sdp)
            .unwrap_or_default();
        self.send(&serde_json::json!({"type": "publishOffer", "sdp": sdp}));
    }

    /// Keyframe requests (PLI and FIR) that reached this client's publish connection.
    pub fn keyframe_requests(&self) -> u32 {
        self.keyframe_requests
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn messages_of(&self, kind: &str) -> Vec<Value> {
        self.messages
            .lock()
            .expect("lock")
            .iter()
            .filter(|m| m["type"] == kind)
            .cloned()
            .collect()
    }

    /// Where the last `migrate` message said to reconnect, if one came.
    pub fn migrated(&self) -> Option<Migration> {
        self.migration.lock().expect("lock").clone()
    }

    /// Follows a `migrate` message as the demo page does: joins `room` at the new endpoint
    /// with the token it carried, then leaves the old node (so nobody is ever cut).
    pub async fn follow(self, room: &str, to: &Migration) -> Result<Self, Refused> {
        let next = Self::join(&to.endpoint, room, &to.token).await?;
        self.close().await;
        Ok(next)
    }

    pub async fn close(self) {
        self.send(&serde_json::json!({"type": "leave"}));
        let _ = self.publish.close().await;
        let _ = self.subscribe.close().await;
    }
}

/// Tagged audio and video paced like a browser's encoder: a 20 ms audio frame every step, a
/// video frame every other step, a keyframe first, on each keyframe request, and every
/// `keyframe_every`.
pub struct Pacer {
    i: u16,
    first: bool,
    last_keyframe: Instant,
    plis: u32,
    keyframe_every: Duration,
}

impl Pacer {
    /// A pacer for `client`'s tracks.
    pub fn new(client: &Client, keyframe_every: Duration) -> Self {
        Self {
            i: 0,
            first: true,
            last_keyframe: Instant::now(),
            plis: client.keyframe_requests(),
            keyframe_every,
        }
    }

    /// Starts again on a new connection: a keyframe first.
    pub fn restart(&mut self, client: &Client) {
        self.first = true;
        self.plis = client.keyframe_requests();
    }

    /// Sends one step, then waits 20 ms.
    pub async fn step(&mut self, client: &Client, video: &Outgoing, audio: &Outgoing, tag: u8) {
        let i = self.i;
        audio.write(opus_packet(i, u32::from(i) * 960, tag)).await;
        if i.is_multiple_of(2) {
            let plis = client.keyframe_requests();
            let keyframe = self.first
                || plis > self.plis
                || self.last_keyframe.elapsed() >= self.keyframe_every;
            if keyframe {
                self.last_keyframe = Instant::now();
                self.plis = plis;
                self.first = false;
            }
            video
                .write(vp8_packet(i / 2, u32::from(i) * 1500, keyframe, tag))
                .await;
        }
        self.i = i.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A track the client sends, stamping its SSRC on every packet.
pub struct Outgoing {
    pub track: Arc<TrackLocalStaticRTP>,
    pub ssrc: u32,
}

impl Outgoing {
    pub async fn write(&self, mut packet: rtc::rtp::Packet) -> bool {
        packet.header.ssrc = self.ssrc;
        self.track.write_rtp(packet).await.is_ok()
    }
}

fn rand_ssrc() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b).max(1)
}

/// An RTP packet of a synthetic VP8 stream: keyframes start with a VP8 key frame header.
pub fn vp8_packet(seq: u16, ts: u32, keyframe: bool, tag: u8) -> rtc::rtp::Packet {
    let mut payload = BytesMut::from(&[0x10u8, u8::from(!keyframe), 0x9d, 0x01, 0x2a][..]);
    payload.extend_from_slice(&[tag; 100]);
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ..Default::default()
        },
        payload: payload.freeze(),
    }
}

/// An Opus-like packet (the node does not decode audio).
pub fn opus_packet(seq: u16, ts: u32, tag: u8) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            payload_type: 111,
            sequence_number: seq,
            timestamp: ts,
            ..Default::default()
        },
        payload: Bytes::from(vec![tag; 60]),
    }
}

/// Polls `check` every 20 ms until it holds or `within` passes.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A UDP relay in front of a node's media port that loses every `drop_every`-th RTP packet
/// going to clients (RTCP, STUN and DTLS pass), as a lossy access network would.
pub struct LossyRelay {
    pub addr: SocketAddr,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl LossyRelay {
    pub async fn start(node_media: SocketAddr, drop_every: u64) -> Self {
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind relay"),
        );
        let addr = front.local_addr().expect("addr");
        let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (front_task, dropped_task) = (front.clone(), dropped.clone());
        tokio::spawn(async move {
            let mut upstreams: std::collections::HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> =
                std::collections::HashMap::new();
            let mut buf = vec![0u8; 2048];
            while let Ok((n, client)) = front_task.recv_from(&mut buf).await {
                let upstream = if let Some(u) = upstreams.get(&client) {
                    u.clone()
                } else {
                    let u = Arc::new(
                        tokio::net::UdpSocket::bind("127.0.0.1:0")
                            .await
                            .expect("bind upstream"),
                    );
                    upstreams.insert(client, u.clone());
                    let (front, u2, dropped, counter) = (
                        front_task.clone(),
                        u.clone(),
                        dropped_task.clone(),
                        counter.clone(),
                    );
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 2048];
                        while let Ok((n, _)) = u2.recv_from(&mut buf).await {
                            let rtp = n > 1
                                && (128..=191).contains(&buf[0])
                                && !(200..=207).contains(&buf[1]);
                            if rtp
                                && counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                                    % drop_every
                                    == drop_every - 1
                            {
                                dropped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                continue;
                            }
                            let _ = front.send_to(&buf[..n], client).await;
                        }
                    });
                    u
                };
                let _ = upstream.send_to(&buf[..n], node_media).await;
            }
        });
        Self { addr, dropped }
    }
}

/// Streams `tag`-marked audio and video until `stop`, answering keyframe requests the way a
/// browser does (a keyframe soon after a PLI), plus a keyframe every `keyframe_every`.
pub async fn stream(
    client: &Client,
    video: &Outgoing,
    audio: &Outgoing,
    tag: u8,
    duration: Duration,
    keyframe_every: Duration,
) {
    let start = Instant::now();
    let mut pacer = Pacer::new(client, keyframe_every);
    while start.elapsed() < duration {
        pacer.step(client, video, audio, tag).await;
    }
}
