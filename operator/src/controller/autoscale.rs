//! The fleet controller's autoscaling step: gathers each zone's load, the rooms waiting and
//! what the last decisions left, asks [`crate::core::autoscaling::decide`], and then tells
//! what it decided: an event per zone that changes size, the metrics, and `spec.replicas`
//! (through the scale subresource, as a horizontal autoscaler would), which the autoscaler
//! owns while it is on.

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, ResourceExt};
use ruche_crds::MediaFleet;
use ruche_crds::common::ConditionsExt;

use super::Error;
use super::admin::NodeAdmin;
use super::context::Context;
use super::events::EventType;
use super::fleet::{fleet_subject, publish};
use crate::core::autoscaling::{
    Inputs, NodeSlots, Policy, PolicyError, ZoneMemory, ZoneScale, decide, zone_loads,
};
use crate::core::fleet_plan::NodeView;
use crate::core::sizing::desired_nodes;
use crate::metrics::ZoneLabel;
use crate::state::fleet_status::{AUTOSCALING, Scaling};
use crate::state::keys::FleetKey;
use crate::state::world::rules;

/// How many nodes each zone should run, and what the autoscaler made of it.
#[derive(Debug)]
pub struct Sizing {
    /// Nodes per zone, in the fleet's order.
    pub desired: Vec<u32>,
    /// The autoscaler's decisions, when it acts.
    pub scales: Option<Vec<ZoneScale>>,
    /// Why the autoscaler does not act although the fleet asks for it.
    pub error: Option<PolicyError>,
}

impl Sizing {
    /// How soon the fleet must be looked at again for a decision that time alone changes
    /// (a surplus outlasting the scale-down delay), if sooner than `within`.
    pub fn revisit(&self, now: Timestamp, within: std::time::Duration) -> std::time::Duration {
        self.scales
            .iter()
            .flatten()
            .filter_map(|s| s.revisit)
            .map(|t| {
                // Whole seconds, rounded up: never before the decision can change.
                let d = std::time::Duration::try_from(t.duration_since(now)).unwrap_or_default();
                std::time::Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0))
            })
            .fold(within, Ord::min)
            .max(std::time::Duration::from_secs(1))
    }

    /// What the fleet's status says of autoscaling.
    pub fn scaling(&self) -> Scaling<'_> {
        match (&self.scales, &self.error) {
            (Some(s), _) => Some(Ok(s.as_slice())),
            (None, Some(e)) => Some(Err(e)),
            (None, None) => None,
        }
    }
}

/// Each zone's size: the autoscaler's when the fleet autoscales (its decisions announced by
/// events and metrics), what each zone runs now when its settings are unusable, or
/// `spec.replicas` spread over the zones.
pub async fn size<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    views: &[NodeView],
) -> Sizing {
    let sizing = match Policy::of_fleet(&fleet.spec) {
        Ok(Some(policy)) => {
            let scales = decide_zones(fleet, ctx, &policy, views, Timestamp::now());
            Sizing {
                desired: scales.iter().map(|s| s.desired).collect(),
                scales: Some(scales),
                error: None,
            }
        }
        Ok(None) => Sizing {
            desired: desired_nodes(&rules(fleet).zones, fleet.spec.replicas),
            scales: None,
            error: None,
        },
        Err(e) => {
            refuse(fleet, ctx, &e).await;
            Sizing {
                desired: current_sizes(fleet, views),
                scales: None,
                error: Some(e),
            }
        }
    };
    announce(fleet, ctx, &sizing.desired, views, sizing.scales.as_deref()).await;
    sizing
}

/// What each zone should run by the fleet's autoscaling policy, at `now`.
pub fn decide_zones<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    policy: &Policy,
    views: &[NodeView],
    now: Timestamp,
) -> Vec<ZoneScale> {
    let key = FleetKey::of(fleet);
    let evacuated: Vec<bool> = fleet.spec.zones.iter().map(|z| z.evacuate).collect();
    let (loads, waiting) = {
        let registry = ctx.registry();
        let snapshot = registry.snapshot(&key);
        let slots_of = |name: &str| {
            let s = snapshot?;
            let node = s.node(s.node_id(name)?)?;
            Some(NodeSlots {
                free: node.free(),
                used: node.load.used().min(node.capacity),
                schedulable: node.schedulable(),
            })
        };
        let loads = zone_loads(fleet.spec.zones.len(), views, slots_of, &evacuated);
        (loads, registry.waiting(&key, now))
    };
    let memory: Vec<ZoneMemory> = fleet
        .spec
        .zones
        .iter()
        .map(|zone| {
            fleet
                .status
                .as_ref()
                .and_then(|s| s.zones.iter().find(|z| z.name == zone.name))
                .map(|z| ZoneMemory {
                    surplus_since: z.surplus_since.as_ref().map(|t| t.0),
                    last_scale_down: z.last_scale_down_time.as_ref().map(|t| t.0),
                })
                .unwrap_or_default()
        })
        .collect();
    decide(
        policy,
        &Inputs {
            now,
            zones: &loads,
            waiting: &waiting,
            memory: &memory,
        },
    )
}

/// Each zone's node count when the autoscaling settings are unusable: what it runs now,
/// within its bounds.
fn current_sizes(fleet: &MediaFleet, views: &[NodeView]) -> Vec<u32> {
    fleet
        .spec
        .zones
        .iter()
        .zip(current_counts(fleet, views))
        .map(|(z, serving)| serving.clamp(z.min_nodes.min(z.max_nodes), z.max_nodes))
        .collect()
}

/// Events and metrics for the zones that change size, and the gauges of every zone.
async fn announce<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    desired: &[u32],
    views: &[NodeView],
    scales: Option<&[ZoneScale]>,
) {
    let fleet_name = FleetKey::of(fleet).to_string();
    let current = current_counts(fleet, views);
    for (i, zone) in fleet.spec.zones.iter().enumerate() {
        let label = ZoneLabel {
            fleet: fleet_name.clone(),
            zone: zone.name.clone(),
        };
        let want = desired.get(i).copied().unwrap_or(0);
        ctx.metrics
            .zone_sized(&label, want, current.get(i).copied().unwrap_or(0));
        let Some(scale) = scales.and_then(|s| s.get(i)) else {
            continue;
        };
        ctx.metrics.zone_buffer(&label, scale.free, scale.buffer);
        let (Some(reason), Some(note)) = (scale.reason, scale.describe(&zone.name)) else {
            continue;
        };
        let up = scale.desired > scale.current;
        ctx.metrics.scaled(&label, up, reason.as_str());
        tracing::info!(fleet = %fleet_name, zone = %zone.name, %reason, "{note}");
        let event = if up { "ScaleUp" } else { "ScaleDown" };
        let ns = fleet.namespace().unwrap_or_default();
        publish(
            ctx,
            fleet,
            EventType::Normal,
            (event, fleet_subject(fleet, &ns)),
            &note,
        )
        .await;
    }
}

/// A Warning event when the autoscaling settings become unusable (or their fault changes).
async fn refuse<A: NodeAdmin>(fleet: &MediaFleet, ctx: &Context<A>, error: &PolicyError) {
    let note = format!("autoscaling stopped, the fleet keeps its size: {error}");
    let said = fleet
        .status
        .as_ref()
        .and_then(|s| s.conditions.condition(AUTOSCALING))
        .is_some_and(|c| c.message == note);
    if !said {
        let ns = fleet.namespace().unwrap_or_default();
        publish(
            ctx,
            fleet,
            EventType::Warning,
            ("InvalidAutoscaling", fleet_subject(fleet, &ns)),
            &note,
        )
        .await;
    }
}

/// Writes the autoscaler's total as `spec.replicas` through the scale subresource, when it
/// differs. A count someone else set (`kubectl scale`) is replaced, with an event saying so.
pub async fn own_replicas<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    desired: &[u32],
) -> Result<(), Error> {
    let total: u32 = desired.iter().sum();
    if fleet.spec.replicas == Some(total) {
        return Ok(());
    }
    let ns = fleet.namespace().unwrap_or_default();
    let api: Api<MediaFleet> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({ "spec": { "replicas": total } });
    api.patch_scale(
        &fleet.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    let last_total: Option<u32> = fleet
        .status
        .as_ref()
        .filter(|s| s.conditions.condition(AUTOSCALING).is_some())
        .map(|s| s.zones.iter().map(|z| z.desired_nodes).sum());
    if let Some(set) = fleet.spec.replicas
        && last_total.is_some_and(|t| t != set)
    {
        publish(
            ctx,
            fleet,
            EventType::Normal,
            ("ReplicasOverridden", fleet_subject(fleet, &ns)),
            &format!(
                "autoscaling is on: spec.replicas {set} (set by hand) is replaced by the autoscaler's {total}; turn autoscaling off to size the fleet by hand"
            ),
        )
        .await;
    }
    Ok(())
}

fn current_counts(fleet: &MediaFleet, views: &[NodeView]) -> Vec<u32> {
    (0..fleet.spec.zones.len())
        .map(|i| {
            let n = views
                .iter()
                .filter(|v| v.zone == Some(i) && v.serving())
                .count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
        .collect()
}
