//! The node's Prometheus metrics. Counters are atomics the media loop bumps as it goes; no
//! label carries a participant or room, so cardinality stays bounded whatever the load.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::drain::Phase;

/// Label for a reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Short machine reason.
    pub reason: String,
}

/// Label for a direction of change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `down` or `up`.
    pub direction: String,
}

/// Label for a media kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `audio` or `video`.
    pub kind: String,
}

/// Label for the node phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// `Ready`, `Draining`, `Drained`.
    pub phase: String,
}

/// Every metric of the node.
pub struct Metrics {
    registry: Registry,
    participants: Gauge,
    tracks: Family<KindLabel, Gauge>,
    joins: Counter,
    join_refusals: Family<ReasonLabel, Counter>,
    join_seconds: Histogram,
    udp_packets_in: Counter,
    udp_bytes_in: Counter,
    udp_packets_out: Counter,
    udp_bytes_out: Counter,
    rtp_packets_in: Counter,
    rtp_bytes_in: Counter,
    rtp_packets_forwarded: Counter,
    rtp_bytes_forwarded: Counter,
    drops: Family<ReasonLabel, Counter>,
    plis_sent: Counter,
    plis_received: Counter,
    nacks_received: Counter,
    chat_messages: Counter,
    reserved_slots: Gauge,
    tcp_connections: Gauge,
    layer_changes: Family<DirectionLabel, Counter>,
    phase: Family<PhaseLabel, Gauge>,
    token_refusals: Family<ReasonLabel, Counter>,
    token_ids_held: Gauge,
    key_reloads: Family<ReasonLabel, Counter>,
    admin_auth_failures: Family<ReasonLabel, Counter>,
    subscriber_rtt: Histogram,
    subscriber_jitter: Histogram,
    subscriber_loss: Histogram,
    publisher_jitter: Histogram,
    publisher_lost: Counter,
}

/// Buckets for round-trip times and jitter, in seconds.
fn delay_buckets() -> impl Iterator<Item = f64> {
    [
        0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2,
    ]
    .into_iter()
}

impl Metrics {
    /// Registers every metric under the `ruche_media_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ruche_media");
        let m = Self {
            participants: Gauge::default(),
            tracks: Family::default(),
            joins: Counter::default(),
            join_refusals: Family::default(),
            join_seconds: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            ]),
            udp_packets_in: Counter::default(),
            udp_bytes_in: Counter::default(),
            udp_packets_out: Counter::default(),
            udp_bytes_out: Counter::default(),
            rtp_packets_in: Counter::default(),
            rtp_bytes_in: Counter::default(),
            rtp_packets_forwarded: Counter::default(),
            rtp_bytes_forwarded: Counter::default(),
            drops: Family::default(),
            plis_sent: Counter::default(),
            plis_received: Counter::default(),
            nacks_received: Counter::default(),
            chat_messages: Counter::default(),
            reserved_slots: Gauge::default(),
            tcp_connections: Gauge::default(),
            layer_changes: Family::default(),
            phase: Family::default(),
            token_refusals: Family::default(),
            token_ids_held: Gauge::default(),
            key_reloads: Family::default(),
            admin_auth_failures: Family::default(),
            subscriber_rtt: Histogram::new(delay_buckets()),
            subscriber_jitter: Histogram::new(delay_buckets()),
            subscriber_loss: Histogram::new([0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5]),
            publisher_jitter: Histogram::new(delay_buckets()),
            publisher_lost: Counter::default(),
            registry: Registry::default(),
        };
        m.register_all(&mut registry);
        Self { registry, ..m }
    }

    fn register_all(&self, registry: &mut Registry) {
        self.register_quality(registry);
        self.register_credentials(registry);
        registry.register(
            "participants",
            "Connected participants",
            self.participants.clone(),
        );
        registry.register("tracks", "Published tracks by kind", self.tracks.clone());
        registry.register("joins", "Participants admitted", self.joins.clone());
        registry.register(
            "join_refusals",
            "Joins refused, by reason",
            self.join_refusals.clone(),
        );
        registry.register(
            "join_duration_seconds",
            "Time to admit a participant and set up its connections",
            self.join_seconds.clone(),
        );
        registry.register(
            "udp_packets_received",
            "Datagrams received on the media port",
            self.udp_packets_in.clone(),
        );
        registry.register(
            "udp_bytes_received",
            "Bytes received on the media port",
            self.udp_bytes_in.clone(),
        );
        registry.register(
            "udp_packets_sent",
            "Datagrams sent from the media port",
            self.udp_packets_out.clone(),
        );
        registry.register(
            "udp_bytes_sent",
            "Bytes sent from the media port",
            self.udp_bytes_out.clone(),
        );
        registry.register(
            "rtp_packets_received",
            "RTP packets received from publishers",
            self.rtp_packets_in.clone(),
        );
        registry.register(
            "rtp_bytes_received",
            "RTP payload bytes received from publishers",
            self.rtp_bytes_in.clone(),
        );
        registry.register(
            "rtp_packets_forwarded",
            "RTP packets forwarded to subscribers",
            self.rtp_packets_forwarded.clone(),
        );
        registry.register(
            "rtp_bytes_forwarded",
            "RTP payload bytes forwarded to subscribers",
            self.rtp_bytes_forwarded.clone(),
        );
        registry.register(
            "dropped_packets",
            "Packets dropped, by reason",
            self.drops.clone(),
        );
        registry.register(
            "plis_sent",
            "Keyframe requests sent to publishers",
            self.plis_sent.clone(),
        );
        registry.register(
            "plis_received",
            "Keyframe requests (PLI, FIR) received from subscribers",
            self.plis_received.clone(),
        );
        registry.register(
            "nacks_received",
            "NACKs received from subscribers",
            self.nacks_received.clone(),
        );
        registry.register(
            "chat_messages",
            "Chat messages relayed to a participant",
            self.chat_messages.clone(),
        );
        registry.register(
            "reserved_slots",
            "Slots reserved by the rooms assigned to the node",
            self.reserved_slots.clone(),
        );
        registry.register(
            "layer_changes",
            "Simulcast layer limits changed for subscribers' bandwidth, by direction",
            self.layer_changes.clone(),
        );
        registry.register(
            "tcp_connections",
            "ICE-over-TCP connections open on the media port",
            self.tcp_connections.clone(),
        );
        registry.register(
            "phase",
            "1 for the node's current phase",
            self.phase.clone(),
        );
        registry.register(
            "token_refusals",
            "Join tokens refused, by reason",
            self.token_refusals.clone(),
        );
    }

    /// Token ids, key reloads and admin authentication failures.
    fn register_credentials(&self, registry: &mut Registry) {
        registry.register(
            "token_ids_held",
            "Token ids (jti) remembered until their token expires, so that a replay is refused",
            self.token_ids_held.clone(),
        );
        registry.register(
            "token_key_reloads",
            "Join token key files read again after they changed: `loaded`, or `failed` (the keys in use are kept)",
            self.key_reloads.clone(),
        );
        registry.register(
            "admin_auth_failures",
            "Admin API requests refused for their credentials: `missing`, `refused` (wrong token) or `limited` (too many failures from the address)",
            self.admin_auth_failures.clone(),
        );
    }

    fn register_quality(&self, registry: &mut Registry) {
        registry.register(
            "subscriber_rtt_seconds",
            "Round-trip time to subscribers, from each receiver report they send",
            self.subscriber_rtt.clone(),
        );
        registry.register(
            "subscriber_jitter_seconds",
            "Jitter subscribers report, per stream, sampled every 5 s",
            self.subscriber_jitter.clone(),
        );
        registry.register(
            "subscriber_loss_ratio",
            "Fraction of packets subscribers report lost, per stream, sampled every 5 s",
            self.subscriber_loss.clone(),
        );
        registry.register(
            "publisher_jitter_seconds",
            "Jitter of publishers' streams as received, per stream, sampled every 5 s",
            self.publisher_jitter.clone(),
        );
        registry.register(
            "publisher_packets_lost",
            "Packets publishers sent that never arrived (before retransmission)",
            self.publisher_lost.clone(),
        );
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub(crate) fn udp_in(&self, bytes: usize) {
        self.udp_packets_in.inc();
        self.udp_bytes_in.inc_by(bytes as u64);
    }

    pub(crate) fn udp_out(&self, bytes: usize) {
        self.udp_packets_out.inc();
        self.udp_bytes_out.inc_by(bytes as u64);
    }

    pub(crate) fn rtp_in(&self, bytes: usize) {
        self.rtp_packets_in.inc();
        self.rtp_bytes_in.inc_by(bytes as u64);
    }

    pub(crate) fn rtp_forwarded(&self, bytes: usize) {
        self.rtp_packets_forwarded.inc();
        self.rtp_bytes_forwarded.inc_by(bytes as u64);
    }

    pub(crate) fn dropped(&self, reason: &str) {
        self.drops
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn dropped_many(&self, reason: &str, n: u64) {
        self.drops
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc_by(n);
    }

    pub(crate) fn join_refused(&self, reason: &str) {
        self.join_refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Counts a refused token.
    pub fn token_refused(&self, reason: &str) {
        self.token_refusals
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    /// How many token ids are remembered against replays.
    pub fn token_ids_held(&self, held: usize) {
        self.token_ids_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Counts a reload of the token key files: `loaded` or `failed`.
    pub fn key_reloaded(&self, outcome: &str) {
        self.key_reloads
            .get_or_create(&ReasonLabel {
                reason: outcome.to_string(),
            })
            .inc();
    }

    /// Counts an admin request refused for its credentials.
    pub fn admin_auth_failed(&self, reason: &str) {
        self.admin_auth_failures
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub(crate) fn joined(&self, took: Duration) {
        self.joins.inc();
        self.participants.inc();
        self.join_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn left(&self) {
        self.participants.dec();
    }

    pub(crate) fn track_published(&self, video: bool) {
        let kind = if video { "video" } else { "audio" };
        self.tracks
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub(crate) fn track_unpublished(&self, video: bool) {
        let kind = if video { "video" } else { "audio" };
        self.tracks
            .get_or_create(&KindLabel { kind: kind.into() })
            .dec();
    }

    pub(crate) fn pli_sent(&self) {
        self.plis_sent.inc();
    }

    pub(crate) fn pli_received(&self) {
        self.plis_received.inc();
    }

    pub(crate) fn nack_received(&self) {
        self.nacks_received.inc();
    }

    pub(crate) fn layer_changed(&self, up: bool) {
        let direction = if up { "up" } else { "down" };
        self.layer_changes
            .get_or_create(&DirectionLabel {
                direction: direction.into(),
            })
            .inc();
    }

    pub(crate) fn tcp_opened(&self) {
        self.tcp_connections.inc();
    }

    pub(crate) fn tcp_closed(&self) {
        self.tcp_connections.dec();
    }

    pub(crate) fn chat_relayed(&self) {
        self.chat_messages.inc();
    }

    /// A round trip to a subscriber, from one of its receiver reports.
    pub(crate) fn observe_rtt(&self, seconds: f64) {
        self.subscriber_rtt.observe(seconds);
    }

    /// One subscriber stream's quality sample.
    pub(crate) fn observe_subscriber(&self, jitter: f64, loss: f64) {
        self.subscriber_jitter.observe(jitter);
        self.subscriber_loss.observe(loss);
    }

    /// One publisher stream's quality sample; `newly_lost` counts since the last sample.
    pub(crate) fn observe_publisher(&self, jitter: f64, newly_lost: u64) {
        self.publisher_jitter.observe(jitter);
        self.publisher_lost.inc_by(newly_lost);
    }

    pub(crate) fn set_reserved(&self, slots: u64) {
        self.reserved_slots
            .set(i64::try_from(slots).unwrap_or(i64::MAX));
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        for p in [Phase::Ready, Phase::Draining, Phase::Drained] {
            self.phase
                .get_or_create(&PhaseLabel {
                    phase: p.as_str().into(),
                })
                .set(i64::from(p == phase));
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
