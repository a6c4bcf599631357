//! WebRTC peer connections of the load generator, on the `webrtc` crate (real ICE, DTLS and
//! SRTP), with UDP sockets on one loopback address (`BENCH_CLIENT_IP`). The same code talks to
//! both SFUs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::watch;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCPeerConnectionState, RTCSessionDescription, Registry,
    SettingEngineBuilder, register_default_interceptors,
};

use super::load::{Reception, Stats, Tracks};

/// How long ICE gathering may take on loopback.
const GATHERING: Duration = Duration::from_secs(5);

/// The address every client socket binds to (`BENCH_CLIENT_IP`), set once at start.
pub static CLIENT_IP: std::sync::OnceLock<std::net::IpAddr> = std::sync::OnceLock::new();

struct Handler {
    state: watch::Sender<RTCPeerConnectionState>,
    gathered: watch::Sender<bool>,
    /// For a receiving connection: where packets are counted.
    receive: Option<(Arc<Stats>, Arc<Reception>)>,
}

#[async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        let _ = self.gathered.send(state == RTCIceGatheringState::Complete);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some((stats, reception)) = self.receive.clone() else {
            return;
        };
        tokio::spawn(async move {
            let mut first = true;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = event {
                    if first {
                        first = false;
                        reception.live_tracks.fetch_add(1, Ordering::Relaxed);
                    }
                    reception.packets.fetch_add(1, Ordering::Relaxed);
                    stats.on_received(&p.payload);
                }
            }
        });
    }
}

/// One peer connection and what its handler observes.
pub struct Peer {
    /// The connection.
    pub pc: Arc<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gathered: watch::Receiver<bool>,
}

impl Peer {
    /// A connection; `receive` set for a subscriber's, which counts what arrives.
    pub async fn new(receive: Option<(Arc<Stats>, Arc<Reception>)>) -> Result<Self, String> {
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let (gathered_tx, gathered) = watch::channel(false);
        let handler = Arc::new(Handler {
            state: state_tx,
            gathered: gathered_tx,
            receive,
        });
        let mut media_engine = MediaEngine::default();
        media_engine
            .register_default_codecs()
            .map_err(|e| format!("codecs: {e}"))?;
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)
            .map_err(|e| format!("interceptors: {e}"))?;
        let pc = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            // No mDNS: the benchmark's network namespace has no multicast route (joining the
            // mDNS group fails there), and every candidate is a loopback address anyway.
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
                    .build(),
            )
            .with_handler(handler)
            .with_udp_addrs(vec![std::net::SocketAddr::new(
                CLIENT_IP
                    .get()
                    .copied()
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()),
                0,
            )])
            .build()
            .await
            .map_err(|e| format!("peer connection: {e}"))?;
        Ok(Self {
            pc: Arc::new(pc),
            state,
            gathered,
        })
    }

    /// Adds a VP8 and an Opus track (before the offer).
    pub async fn add_av(&self, name: &str) -> Result<Tracks, String> {
        let (video, video_ssrc) = self
            .add_track(name, RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0)
            .await?;
        let (audio, audio_ssrc) = self
            .add_track(name, RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2)
            .await?;
        Ok(Tracks {
            video,
            video_ssrc,
            audio,
            audio_ssrc,
        })
    }

    async fn add_track(
        &self,
        name: &str,
        kind: RtpCodecKind,
        mime: &str,
        clock_rate: u32,
        channels: u16,
    ) -> Result<(Arc<TrackLocalStaticRTP>, u32), String> {
        let ssrc = random_ssrc();
        let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
            format!("{name}-stream"),
            format!("{name}-{kind}"),
            format!("{kind}"),
            kind,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: RTCRtpCodec {
                    mime_type: mime.into(),
                    clock_rate,
                    channels,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                ..Default::default()
            }],
        )));
        self.pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| format!("add {kind} track: {e}"))?;
        Ok((track, ssrc))
    }

    /// Creates and applies an offer; its SDP once ICE gathering finished (candidates included).
    pub async fn offer(&self) -> Result<String, String> {
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| format!("create offer: {e}"))?;
        self.pc
            .set_local_description(offer)
            .await
            .map_err(|e| format!("set local offer: {e}"))?;
        self.local_sdp().await
    }

    /// Applies a remote offer and answers it; the answer's SDP once gathering finished.
    pub async fn answer(&self, offer_sdp: String) -> Result<String, String> {
        let offer =
            RTCSessionDescription::offer(offer_sdp).map_err(|e| format!("remote offer: {e}"))?;
        self.pc
            .set_remote_description(offer)
            .await
            .map_err(|e| format!("set remote offer: {e}"))?;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|e| format!("create answer: {e}"))?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(|e| format!("set local answer: {e}"))?;
        self.local_sdp().await
    }

    /// Applies the remote answer to our offer.
    pub async fn accept(&self, answer_sdp: String) -> Result<(), String> {
        let answer =
            RTCSessionDescription::answer(answer_sdp).map_err(|e| format!("remote answer: {e}"))?;
        self.pc
            .set_remote_description(answer)
            .await
            .map_err(|e| format!("set remote answer: {e}"))
    }

    async fn local_sdp(&self) -> Result<String, String> {
        let mut gathered = self.gathered.clone();
        tokio::time::timeout(GATHERING, gathered.wait_for(|g| *g))
            .await
            .map_err(|_| "ICE gathering did not complete".to_string())?
            .map_err(|_| "connection gone".to_string())?;
        self.pc
            .local_description()
            .await
            .map(|d| d.sdp)
            .ok_or_else(|| "no local description".into())
    }

    /// Waits until the connection is connected; the last state on failure.
    pub async fn connected(&self, within: Duration) -> Result<(), String> {
        let mut state = self.state.clone();
        match tokio::time::timeout(
            within,
            state.wait_for(|s| {
                matches!(
                    s,
                    RTCPeerConnectionState::Connected
                        | RTCPeerConnectionState::Failed
                        | RTCPeerConnectionState::Closed
                )
            }),
        )
        .await
        {
            Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected => Ok(()),
            Ok(Ok(s)) => Err(format!("connection {}", *s)),
            Ok(Err(_)) => Err("connection gone".into()),
            Err(_) => Err(format!(
                "not connected after {within:?} (state {})",
                *self.state.borrow()
            )),
        }
    }

    /// Closes the connection.
    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

fn random_ssrc() -> u32 {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    u32::from_be_bytes(b).max(1)
}
