//! The synthetic media: pre-built RTP payloads stamped with their send time, paced senders,
//! and what subscribers count and measure. Nothing is encoded or decoded.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use super::config::Config;

/// Marks a payload as stamped by this generator: the last 12 bytes are this and the send time.
const MAGIC: &[u8; 4] = b"RBN1";
const STAMP_BYTES: usize = MAGIC.len() + 8;

/// Counters and latency samples of one benchmark run (one SFU, one shape).
pub struct Stats {
    /// Time zero of every stamp: publishers and subscribers live in this process.
    origin: Instant,
    /// Whether the measurement window is open.
    measuring: AtomicBool,
    /// Packets publishers sent while measuring.
    pub sent: AtomicU64,
    /// Packets publishers failed to hand to their connection while measuring.
    pub send_errors: AtomicU64,
    /// Stamped packets subscribers received while measuring.
    pub received: AtomicU64,
    /// Received packets without a stamp (not ours, or mangled), while measuring.
    pub unstamped: AtomicU64,
    /// Receive minus send time of stamped packets received while measuring, microseconds.
    latencies_us: Mutex<Vec<u32>>,
}

impl Stats {
    /// New, with the window closed.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            measuring: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            received: AtomicU64::new(0),
            unstamped: AtomicU64::new(0),
            latencies_us: Mutex::new(Vec::with_capacity(1 << 16)),
        })
    }

    /// Opens or closes the measurement window.
    pub fn set_measuring(&self, on: bool) {
        self.measuring.store(on, Ordering::SeqCst);
    }

    fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Counts one packet a subscriber received, and its latency if it carries a stamp.
    pub fn on_received(&self, payload: &[u8]) {
        if !self.measuring() {
            return;
        }
        let now = self.now_ns();
        match stamp_of(payload) {
            Some(sent) => {
                self.received.fetch_add(1, Ordering::Relaxed);
                let us = now.saturating_sub(sent) / 1_000;
                self.latencies_us
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            None => {
                self.unstamped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Latency percentiles `ps` (0..=1) in milliseconds, and the number of samples.
    pub fn latency_ms(&self, ps: &[f64]) -> (Vec<f64>, usize) {
        let mut samples = self
            .latencies_us
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        samples.sort_unstable();
        let n = samples.len();
        let values = ps
            .iter()
            .map(|p| {
                if n == 0 {
                    return f64::NAN;
                }
                let rank = ((p * n as f64).ceil() as usize).clamp(1, n);
                f64::from(samples[rank - 1]) / 1_000.0
            })
            .collect();
        (values, n)
    }
}

/// What one subscriber has seen: how many of its tracks delivered at least one packet.
#[derive(Default)]
pub struct Reception {
    /// Tracks (of all publishers of the room) from which a packet arrived.
    pub live_tracks: AtomicUsize,
    /// Packets received in all, measuring or not.
    pub packets: AtomicU64,
}

fn stamp_of(payload: &[u8]) -> Option<u64> {
    let tail = payload.get(payload.len().checked_sub(STAMP_BYTES)?..)?;
    let (magic, stamp) = tail.split_at(MAGIC.len());
    if magic != MAGIC {
        return None;
    }
    Some(u64::from_be_bytes(stamp.try_into().ok()?))
}

/// A VP8 payload: the RFC 7741 descriptor (start of partition 0), then a frame header (a key
/// frame's tag, start code and 640x480 size, or an inter frame's tag), filler, and the stamp.
fn vp8_payload(size: usize, keyframe: bool, stamp: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u8(0x10);
    if keyframe {
        b.put_slice(&[0x10, 0x00, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01]);
    } else {
        b.put_slice(&[0x11, 0x00, 0x00]);
    }
    b.resize(size - STAMP_BYTES, 0x5a);
    b.put_slice(MAGIC);
    b.put_u64(stamp);
    b.freeze()
}

/// An Opus-like payload: a TOC byte, filler and the stamp (nobody decodes it).
fn opus_payload(size: usize, stamp: u64) -> Bytes {
    let mut b = BytesMut::with_capacity(size);
    b.put_u8(0x78);
    b.resize(size - STAMP_BYTES, 0xa5);
    b.put_slice(MAGIC);
    b.put_u64(stamp);
    b.freeze()
}

/// A publisher's two outgoing tracks.
pub struct Tracks {
    /// VP8 video, payload type 96.
    pub video: Arc<TrackLocalStaticRTP>,
    /// Its SSRC.
    pub video_ssrc: u32,
    /// Opus audio, payload type 111.
    pub audio: Arc<TrackLocalStaticRTP>,
    /// Its SSRC.
    pub audio_ssrc: u32,
}

/// Sends `tracks` at the configured rates until `stop` turns true: one video packet per frame
/// (so `video_pps` frames per second, a keyframe every `keyframe_every`), 20 ms-style audio.
pub async fn send(
    tracks: Arc<Tracks>,
    config: Arc<Config>,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut video_tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(config.video_pps)));
    let mut audio_tick =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(config.audio_pps)));
    video_tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    audio_tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let video_ts_step = 90_000 / config.video_pps;
    let audio_ts_step = 48_000 / config.audio_pps;
    let frames_per_keyframe =
        ((config.keyframe_every.as_secs_f64() * f64::from(config.video_pps)).round() as u64).max(1);
    let (mut video_n, mut audio_n) = (0u64, 0u64);
    loop {
        let video = tokio::select! {
            _ = video_tick.tick() => true,
            _ = audio_tick.tick() => false,
            _ = stop.wait_for(|s| *s) => return,
        };
        let (track, ssrc, header, payload) = if video {
            let keyframe = video_n % frames_per_keyframe == 0;
            let header = rtc::rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: 96,
                sequence_number: video_n as u16,
                timestamp: (video_n as u32).wrapping_mul(video_ts_step),
                ..Default::default()
            };
            video_n += 1;
            let payload = vp8_payload(config.video_bytes, keyframe, stats.now_ns());
            (&tracks.video, tracks.video_ssrc, header, payload)
        } else {
            let header = rtc::rtp::header::Header {
                version: 2,
                marker: audio_n == 0,
                payload_type: 111,
                sequence_number: audio_n as u16,
                timestamp: (audio_n as u32).wrapping_mul(audio_ts_step),
                ..Default::default()
            };
            audio_n += 1;
            let payload = opus_payload(config.audio_bytes, stats.now_ns());
            (&tracks.audio, tracks.audio_ssrc, header, payload)
        };
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header { ssrc, ..header },
            payload,
        };
        let ok = track.write_rtp(packet).await.is_ok();
        if stats.measuring() {
            if ok {
                stats.sent.fetch_add(1, Ordering::Relaxed);
            } else {
                stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
