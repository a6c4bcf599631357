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
use prometheus_client::registry::{Metric, Registry};

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

/// A request to the API server, as the latency histogram labels it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiRequestLabel {
    /// HTTP method: `GET`, `PATCH`, `POST`, `DELETE`...
    pub verb: String,
    /// The resource, with its subresource: `rooms`, `rooms/status`, `leases`...
    pub resource: String,
    /// The HTTP status code, or `error` when no response came.
    pub code: String,
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

/// A fleet.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FleetLabel {
    /// `namespace/name` of the fleet.
    pub fleet: String,
}

/// Why a fleet refused to place a room.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabel {
    /// `namespace/name` of the fleet.
    pub fleet: String,
    /// The room's `Scheduled` reason (`NoReadyNode`, `InsufficientSlots`...).
    pub reason: String,
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
    /// The fleets' sizing and health.
    pub fleets: FleetMetrics,
    leader: Gauge,
    api_requests: Family<ApiRequestLabel, Histogram>,
    /// Events dropped because the API server could not take them fast enough.
    pub events_dropped: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The fleets' sizing (per zone: desired and current nodes, free slots against the buffer,
/// scale decisions) and what the alerts watch (rooms waiting, halted rollouts, late drains).
pub struct FleetMetrics {
    zone_desired_nodes: Family<ZoneLabel, Gauge>,
    zone_current_nodes: Family<ZoneLabel, Gauge>,
    zone_free_slots: Family<ZoneLabel, Gauge>,
    zone_buffer_slots: Family<ZoneLabel, Gauge>,
    scale_decisions: Family<ScaleLabel, Counter>,
    /// Rooms no node could take yet, by fleet.
    pub unschedulable_rooms: Family<FleetLabel, Gauge>,
    /// 1 while a fleet's rollout is halted.
    pub rollout_halted: Family<FleetLabel, Gauge>,
    /// Media nodes still draining after their drain's deadline, by fleet.
    pub drains_past_deadline: Family<FleetLabel, Gauge>,
    room_refusals: Family<RefusalLabel, Counter>,
}

impl FleetMetrics {
    fn register(registry: &mut Registry) -> Self {
        let zone_desired_nodes: Family<ZoneLabel, Gauge> = registered(
            registry,
            "zone_desired_nodes",
            "Media nodes each zone should run (the autoscaler's count, or spec.replicas spread)",
        );
        let zone_current_nodes: Family<ZoneLabel, Gauge> = registered(
            registry,
            "zone_current_nodes",
            "Media nodes serving or starting in each zone (not draining, not failed)",
        );
        let zone_free_slots: Family<ZoneLabel, Gauge> = registered(
            registry,
            "zone_free_slots",
            "Free participant slots of each autoscaled zone, counting nodes still starting",
        );
        let zone_buffer_slots: Family<ZoneLabel, Gauge> = registered(
            registry,
            "zone_buffer_slots",
            "Free participant slots the autoscaler keeps in each zone now",
        );
        let scale_decisions: Family<ScaleLabel, Counter> = registered(
            registry,
            "scale_decisions",
            "Autoscaler decisions that changed a zone's size, by direction and reason",
        );
        let unschedulable_rooms: Family<FleetLabel, Gauge> = registered(
            registry,
            "unschedulable_rooms",
            "Rooms no media node could take yet (waiting for capacity), by fleet",
        );
        let rollout_halted: Family<FleetLabel, Gauge> = registered(
            registry,
            "rollout_halted",
            "1 while the fleet's rollout is halted on a bad revision",
        );
        let drains_past_deadline: Family<FleetLabel, Gauge> = registered(
            registry,
            "drains_past_deadline",
            "Media nodes still draining after their drain's deadline, by fleet",
        );
        let room_refusals: Family<RefusalLabel, Counter> = registered(
            registry,
            "room_refusals",
            "Rooms refused a placement, by fleet and reason (once per room and reason)",
        );
        Self {
            zone_desired_nodes,
            zone_current_nodes,
            zone_free_slots,
            zone_buffer_slots,
            scale_decisions,
            unschedulable_rooms,
            rollout_halted,
            drains_past_deadline,
            room_refusals,
        }
    }
}

/// Registers a new metric of type `M` and returns it (a handle sharing the registered one).
fn registered<M: Metric + Clone + Default>(registry: &mut Registry, name: &str, help: &str) -> M {
    let metric = M::default();
    registry.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// Registers every metric under the `ruche_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("ruche_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        let errors: Family<ErrorLabel, Counter> = registered(
            &mut registry,
            "reconcile_errors",
            "Reconciles that failed, by error kind",
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
        let polls: Family<ResultLabel, Counter> = registered(
            &mut registry,
            "node_polls",
            "Admin API polls of media nodes",
        );
        let pushes: Family<ResultLabel, Counter> = registered(
            &mut registry,
            "assignment_pushes",
            "Assignment lists sent to media nodes: ok, stale (the node held a newer one) or error",
        );
        let rooms = Family::<RoomPhaseLabel, Gauge>::default();
        registry.register("rooms", "Rooms by phase", rooms.clone());
        let nodes: Family<NodePhaseLabel, Gauge> = registered(
            &mut registry,
            "media_nodes",
            "Media nodes by fleet, zone and phase",
        );
        let zone_slots: Family<ZoneLabel, Gauge> = registered(
            &mut registry,
            "zone_slots",
            "Participant slots of the schedulable media nodes, by fleet and zone",
        );
        let zone_used_slots: Family<ZoneLabel, Gauge> = registered(
            &mut registry,
            "zone_used_slots",
            "Participant slots in use (reserved or measured), by fleet and zone",
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            leader.clone(),
        );
        let api_requests = Family::<ApiRequestLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register_with_unit(
            "api_request_duration",
            "Time the API server took to answer the operator's requests (watches left out)",
            prometheus_client::registry::Unit::Seconds,
            api_requests.clone(),
        );
        let events_dropped = Gauge::default();
        registry.register(
            "events_dropped",
            "Kubernetes events dropped since the start because their queue was full",
            events_dropped.clone(),
        );
        let fleets = FleetMetrics::register(&mut registry);
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
            fleets,
            leader,
            api_requests,
            events_dropped,
        }
    }

    /// Records how long the API server took to answer one request.
    pub fn api_request(&self, label: &ApiRequestLabel, took: Duration) {
        self.api_requests
            .get_or_create(label)
            .observe(took.as_secs_f64());
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
        set(&self.fleets.zone_desired_nodes, desired);
        set(&self.fleets.zone_current_nodes, current);
    }

    /// Sets an autoscaled zone's free slots and buffer.
    pub fn zone_buffer(&self, zone: &ZoneLabel, free: u32, buffer: u32) {
        self.fleets
            .zone_free_slots
            .get_or_create(zone)
            .set(i64::from(free));
        self.fleets
            .zone_buffer_slots
            .get_or_create(zone)
            .set(i64::from(buffer));
    }

    /// Counts a room refused a placement for `reason` (once per room and reason).
    pub fn refused(&self, fleet: &str, reason: &str) {
        self.fleets
            .room_refusals
            .get_or_create(&RefusalLabel {
                fleet: fleet.into(),
                reason: reason.into(),
            })
            .inc();
    }

    /// Counts a scale decision.
    pub fn scaled(&self, zone: &ZoneLabel, up: bool, reason: &str) {
        self.fleets
            .scale_decisions
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
        let fleet = FleetLabel {
            fleet: "ns/visio".into(),
        };
        m.fleets.unschedulable_rooms.get_or_create(&fleet).set(2);
        m.fleets.rollout_halted.get_or_create(&fleet).set(1);
        m.fleets.drains_past_deadline.get_or_create(&fleet).set(0);
        m.refused("ns/visio", "NoReadyNode");
        let text = m.encode();
        for line in [
            "ruche_operator_zone_desired_nodes{fleet=\"ns/visio\",zone=\"fr-par-1\"} 4",
            "ruche_operator_zone_current_nodes{fleet=\"ns/visio\",zone=\"fr-par-1\"} 3",
            "ruche_operator_zone_free_slots{fleet=\"ns/visio\",zone=\"fr-par-1\"} 140",
            "ruche_operator_zone_buffer_slots{fleet=\"ns/visio\",zone=\"fr-par-1\"} 200",
            "ruche_operator_scale_decisions_total{fleet=\"ns/visio\",zone=\"fr-par-1\",direction=\"up\",reason=\"BufferShort\"} 1",
            // What the chart's alerts watch (charts/ruche/files/alerts.yaml).
            "ruche_operator_unschedulable_rooms{fleet=\"ns/visio\"} 2",
            "ruche_operator_rollout_halted{fleet=\"ns/visio\"} 1",
            "ruche_operator_drains_past_deadline{fleet=\"ns/visio\"} 0",
            "ruche_operator_room_refusals_total{fleet=\"ns/visio\",reason=\"NoReadyNode\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing from {text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
