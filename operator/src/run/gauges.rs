//! Refreshes the gauges that describe the whole world (rooms by phase, nodes by fleet, zone
//! and phase, slots per zone, rooms waiting for capacity, halted rollouts, drains past their
//! deadline) from the caches and the placements, every few seconds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::ResourceExt;
use ruche_crds::{MediaFleet, NodePhase, RoomPhase};

use crate::controller::admin::NodeAdmin;
use crate::controller::context::Context;
use crate::metrics::{FleetLabel, NodePhaseLabel, RoomPhaseLabel, ZoneLabel};
use crate::state::keys::FleetKey;

/// How often the gauges are refreshed.
pub const PERIOD: Duration = Duration::from_secs(5);

/// Refreshes the gauges forever.
pub async fn run<A: NodeAdmin>(ctx: Arc<Context<A>>) {
    let mut tick = tokio::time::interval(PERIOD);
    loop {
        tick.tick().await;
        refresh(&ctx);
    }
}

/// Sets every gauge from the caches now. Series that no longer exist are set to zero rather
/// than removed, so a dashboard sees them drop.
pub fn refresh<A: NodeAdmin>(ctx: &Context<A>) {
    let m = &ctx.metrics;
    m.events_dropped
        .set(i64::try_from(ctx.events.dropped()).unwrap_or(i64::MAX));
    let mut rooms: HashMap<RoomPhase, i64> = RoomPhase::ALL.iter().map(|p| (*p, 0)).collect();
    for room in ctx.rooms.state() {
        let phase = room.status.as_ref().map(|s| s.phase).unwrap_or_default();
        *rooms.entry(phase).or_default() += 1;
    }
    for (phase, count) in rooms {
        m.rooms
            .get_or_create(&RoomPhaseLabel {
                phase: phase.as_str().into(),
            })
            .set(count);
    }
    let fleets = ctx.fleets.state();
    let mut nodes: HashMap<NodePhaseLabel, i64> = HashMap::new();
    for fleet in &fleets {
        for zone in &fleet.spec.zones {
            for phase in NodePhase::ALL {
                nodes.insert(
                    NodePhaseLabel {
                        fleet: FleetKey::of(fleet).to_string(),
                        zone: zone.name.clone(),
                        phase: phase.as_str().into(),
                    },
                    0,
                );
            }
        }
    }
    for node in ctx.nodes.state() {
        let phase = node.status.as_ref().map(|s| s.phase).unwrap_or_default();
        let label = NodePhaseLabel {
            fleet: format!(
                "{}/{}",
                node.namespace().unwrap_or_default(),
                node.spec.fleet
            ),
            zone: node.spec.zone.clone(),
            phase: phase.as_str().into(),
        };
        *nodes.entry(label).or_default() += 1;
    }
    for (label, count) in nodes {
        m.nodes.get_or_create(&label).set(count);
    }
    fleet_health(ctx, &fleets);
    let registry = ctx.registry();
    for (key, fleet) in registry.fleets() {
        let Some(snapshot) = registry.snapshot(key) else {
            continue;
        };
        for zone in &fleet.spec.zones {
            let Some(id) = snapshot.zone_id(&zone.name) else {
                continue;
            };
            let zone_use = snapshot.zone_use(id);
            let label = ZoneLabel {
                fleet: key.to_string(),
                zone: zone.name.clone(),
            };
            m.zone_slots
                .get_or_create(&label)
                .set(i64::try_from(zone_use.capacity).unwrap_or(i64::MAX));
            m.zone_used_slots
                .get_or_create(&label)
                .set(i64::try_from(zone_use.used).unwrap_or(i64::MAX));
        }
        m.fleets
            .unschedulable_rooms
            .get_or_create(&FleetLabel {
                fleet: key.to_string(),
            })
            .set(i64::try_from(registry.unschedulable(key)).unwrap_or(i64::MAX));
    }
}

/// The gauges the alerts watch: halted rollouts, and drains past their deadline.
fn fleet_health<A: NodeAdmin>(ctx: &Context<A>, fleets: &[Arc<MediaFleet>]) {
    let m = &ctx.metrics;
    let mut overdue: HashMap<String, i64> = HashMap::new();
    for fleet in fleets {
        let key = FleetKey::of(fleet).to_string();
        let halted = fleet
            .status
            .as_ref()
            .and_then(|s| s.rollout.as_ref())
            .is_some_and(|r| r.halted.is_some());
        m.fleets
            .rollout_halted
            .get_or_create(&FleetLabel { fleet: key.clone() })
            .set(i64::from(halted));
        overdue.insert(key, 0);
    }
    let now = Timestamp::now();
    for node in ctx.nodes.state() {
        let late = node
            .spec
            .drain
            .as_ref()
            .and_then(|d| d.deadline.as_ref())
            .is_some_and(|deadline| deadline.0 < now)
            && node
                .status
                .as_ref()
                .is_some_and(|s| s.phase == NodePhase::Draining);
        if late {
            let key = format!(
                "{}/{}",
                node.namespace().unwrap_or_default(),
                node.spec.fleet
            );
            *overdue.entry(key).or_default() += 1;
        }
    }
    for (fleet, count) in overdue {
        m.fleets
            .drains_past_deadline
            .get_or_create(&FleetLabel { fleet })
            .set(count);
    }
}
