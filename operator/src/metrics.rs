//! The operator's Prometheus metrics, served on `/metrics` (OpenMetrics text).
//!
//! Counters and histograms are bumped by the controllers as they go; the gauges of rooms,
//! nodes and slots are set from the caches and placements by [`Metrics::refresh`], so they
//! always describe the whole world, not the last object reconciled. Labels carry fleets and
//! zones (a few per install), never a room or node name.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    /// `fleet`, `node` or `room`.
    pub controller: String,
}

/// A controller and the kind of error it hit.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// `fleet`, `node` or `room`.
    pub controller: String,
    /// The error's metric label.
    pub error: String,
}

/// A room phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomPhaseLabel {
    /// Phase.
    pub phase: String,
}

/// A fleet's zone and a node phase.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NodePhaseLabel {
    /// `namespace/name` of the fleet.
    pub fleet: String,
    /// Zone.
    pub zone: String,
    /// Phase.
    pub phase: String,
}

/// A fleet's zone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ZoneLabel {
    /// `namespace/name` of the fleet.
    pub fleet: String,
    /// Zone.
    pub zone: String,
}

/// A scale decision of the autoscaler.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabel {
    /// `namespace/name` of the fleet.
    pub fleet: String,
    /// Zone.
    pub zone: String,
    /// `up` or `down`.
    pub direction: String,
    /// Why (`BufferShort`, `WaitingRooms`, `ZoneReserve`, `Surplus`, …).
    pub reason: String,
}

/// The outcome of an admin API poll.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `ok` or `error`.
    pub result: String,
}

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    errors: Family<ErrorLabel, Counter>,
    durations: Family<ControllerLabel, Histogram>,
    schedule_seconds: Histogram,
    polls: Family<ResultLabel, Counter>,
    pushes: Family<ResultLabel, Counter>,
    /// Rooms by phase.
    pub rooms: Family<RoomPhaseLabel, Gauge>,
    /// Nodes by fleet, zone and phase.
    pub nodes: Family<NodePhaseLabel, Gauge>,
    /// Slots of schedulable nodes by fleet and zone.
    pub zone_slots: Family<ZoneLabel, Gauge>,
    /// Slots in use by fleet and zone.
    pub zone_used_slots: Family<ZoneLabel, Gauge>,
    zone_desired_nodes: Family<ZoneLabel, Gauge>,
    zone_current_nodes: Family<ZoneLabel, Gauge>,
    zone_free_slots: Family<ZoneLabel, Gauge>,
    zone_buffer_slots: Family<ZoneLabel, Gauge>,
    scale_decisions: Family<ScaleLabel, Counter>,
    leader: Gauge,
    /// Events dropped because the API server could not take them fast enough.
    pub events_dropped: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric under the `ruche_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ruche_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by error kind",
            errors.clone(),
        );
        let durations = Family::<ControllerLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
        });
        registry.register_with_unit(
            "reconcile_duration",
            "Time a reconcile took",
            prometheus_client::registry::Unit::Seconds,
            durations.clone(),
        );
        let schedule_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register_with_unit(
            "room_schedule_latency",
            "Time from a Room's creation to its placement being written",
            prometheus_client::registry::Unit::Seconds,
            schedule_seconds.clone(),
        );
        let polls = Family::<ResultLabel, Counter>::default();
        registry.register(
            "node_polls",
            "Admin API polls of media nodes",
            polls.clone(),
        );
        let pushes = Family::<ResultLabel, Counter>::default();
        registry.register(
            "assignment_pushes",
            "Assignment lists sent to media nodes: ok, stale (the node held a newer one) or error",
            pushes.clone(),
        );
        let rooms = Family::<RoomPhaseLabel, Gauge>::default();
        registry.register("rooms", "Rooms by phase", rooms.clone());
        let nodes = Family::<NodePhaseLabel, Gauge>::default();
        registry.register(
            "media_nodes",
            "Media nodes by fleet, zone and phase",
            nodes.clone(),
        );
        let zone_slots = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "zone_slots",
            "Participant slots of the schedulable media nodes, by fleet and zone",
            zone_slots.clone(),
        );
        let zone_used_slots = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "zone_used_slots",
            "Participant slots in use (reserved or measured), by fleet and zone",
            zone_used_slots.clone(),
        );
        let zone_desired_nodes = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "zone_desired_nodes",
            "Media nodes each zone should run (the autoscaler's count, or spec.replicas spread)",
            zone_desired_nodes.clone(),
        );
        let zone_current_nodes = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "zone_current_nodes",
            "Media nodes serving or starting in each zone (not draining, not failed)",
            zone_current_nodes.clone(),
        );
        let zone_free_slots = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "zone_free_slots",
            "Free participant slots of each autoscaled zone, counting nodes still starting",
            zone_free_slots.clone(),
        );
        let zone_buffer_slots = Family::<ZoneLabel, Gauge>::default();
        registry.register(
            "zone_buffer_slots",
            "Free participant slots the autoscaler keeps in each zone now",
            zone_buffer_slots.clone(),
        );
        let scale_decisions = Family::<ScaleLabel, Counter>::default();
        registry.register(
            "scale_decisions",
            "Autoscaler decisions that changed a zone's size, by direction and reason",
            scale_decisions.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let events_dropped = Gauge::default();
        registry.register(
            "events_dropped",
            "Kubernetes events dropped since the start because their queue was full",
            events_dropped.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            durations,
            schedule_seconds,
            polls,
            pushes,
            rooms,
            nodes,
            zone_slots,
            zone_used_slots,
            zone_desired_nodes,
            zone_current_nodes,
            zone_free_slots,
            zone_buffer_slots,
            scale_decisions,
            leader,
            events_dropped,
        }
    }

    /// Counts a reconcile and its duration.
    pub fn reconciled(&self, controller: &str, took: Duration) {
        let label = ControllerLabel {
            controller: controller.into(),
        };
        self.reconciles.get_or_create(&label).inc();
        self.durations
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, controller: &str, error: &str) {
        self.errors
            .get_or_create(&ErrorLabel {
                controller: controller.into(),
                error: error.into(),
            })
            .inc();
    }

    /// Records the time from a room's creation to its placement.
    pub fn scheduled(&self, latency: Duration) {
        self.schedule_seconds.observe(latency.as_secs_f64());
    }

    /// Counts a poll of a media node.
    pub fn polled(&self, ok: bool) {
        self.polls
            .get_or_create(&ResultLabel {
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// Counts an assignment list sent to a node: `ok`, `stale` or `error`.
    pub fn pushed(&self, result: &str) {
        self.pushes
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Sets a zone's desired and current node counts, and with autoscaling its free slots
    /// against its buffer.
    pub fn zone_sized(&self, zone: &ZoneLabel, desired: u32, current: u32) {
        let set = |f: &Family<ZoneLabel, Gauge>, v: u32| f.get_or_create(zone).set(i64::from(v));
        set(&self.zone_desired_nodes, desired);
        set(&self.zone_current_nodes, current);
    }

    /// Sets an autoscaled zone's free slots and buffer.
    pub fn zone_buffer(&self, zone: &ZoneLabel, free: u32, buffer: u32) {
        self.zone_free_slots
            .get_or_create(zone)
            .set(i64::from(free));
        self.zone_buffer_slots
            .get_or_create(zone)
            .set(i64::from(buffer));
    }

    /// Counts a scale decision.
    pub fn scaled(&self, zone: &ZoneLabel, up: bool, reason: &str) {
        self.scale_decisions
            .get_or_create(&ScaleLabel {
                fleet: zone.fleet.clone(),
                zone: zone.zone.clone(),
                direction: if up { "up" } else { "down" }.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Says whether this replica leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    /// The metrics in OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciles_and_gauges_are_exported() {
        let m = Metrics::new();
        m.reconciled("room", Duration::from_millis(3));
        m.failed("room", "kube");
        m.scheduled(Duration::from_millis(12));
        m.nodes
            .get_or_create(&NodePhaseLabel {
                fleet: "ns/visio".into(),
                zone: "fr-par-1".into(),
                phase: "Ready".into(),
            })
            .set(3);
        let text = m.encode();
        assert!(text.contains("ruche_operator_reconciles_total{controller=\"room\"} 1"));
        assert!(text.contains(
            "ruche_operator_reconcile_errors_total{controller=\"room\",error=\"kube\"} 1"
        ));
        assert!(text.contains("ruche_operator_room_schedule_latency_seconds_count 1"));
        assert!(text.contains(
            "ruche_operator_media_nodes{fleet=\"ns/visio\",zone=\"fr-par-1\",phase=\"Ready\"} 3"
        ));
        let zone = ZoneLabel {
            fleet: "ns/visio".into(),
            zone: "fr-par-1".into(),
        };
        m.zone_sized(&zone, 4, 3);
        m.zone_buffer(&zone, 140, 200);
        m.scaled(&zone, true, "BufferShort");
        let text = m.encode();
        for line in [
            "ruche_operator_zone_desired_nodes{fleet=\"ns/visio\",zone=\"fr-par-1\"} 4",
            "ruche_operator_zone_current_nodes{fleet=\"ns/visio\",zone=\"fr-par-1\"} 3",
            "ruche_operator_zone_free_slots{fleet=\"ns/visio\",zone=\"fr-par-1\"} 140",
            "ruche_operator_zone_buffer_slots{fleet=\"ns/visio\",zone=\"fr-par-1\"} 200",
            "ruche_operator_scale_decisions_total{fleet=\"ns/visio\",zone=\"fr-par-1\",direction=\"up\",reason=\"BufferShort\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
