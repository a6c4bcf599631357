//! A fleet's status, from its nodes and its placements: nodes by phase, zone and revision,
//! capacity and use per zone, and the Available, Progressing and Degraded conditions. Pure:
//! the fleet controller writes what this returns.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{Resource, ResourceExt};
use ruche_crds::common::new_condition;
use ruche_crds::fleet::RolloutStatus;
use ruche_crds::node::condition;
use ruche_crds::{
    ConditionsExt, MediaFleet, MediaFleetStatus, MediaNode, NodePhase, PhaseCounts, RevisionStatus,
    ZoneStatus,
};

use crate::build::labels;
use crate::build::node::revision;
use crate::core::autoscaling::{PolicyError, ZoneScale};
use crate::core::evacuation;
use crate::core::snapshot::Snapshot;
use crate::state::keys::room_name;

/// The fleet's status from its nodes and its placements (pure).
pub fn fleet_status(
    fleet: &MediaFleet,
    nodes: &[Arc<MediaNode>],
    snapshot: Option<&Snapshot>,
    desired: &[u32],
) -> MediaFleetStatus {
    let current = fleet.status.clone().unwrap_or_default();
    let update_revision = revision(fleet);
    let mut phases = PhaseCounts::default();
    let mut zones: Vec<ZoneStatus> = fleet
        .spec
        .zones
        .iter()
        .map(|z| ZoneStatus {
            name: z.name.clone(),
            ..ZoneStatus::default()
        })
        .collect();
    let revisions = count_nodes(nodes, &mut phases, &mut zones);
    for (z, want) in zones.iter_mut().zip(desired) {
        z.desired_nodes = *want;
    }
    if let Some(snapshot) = snapshot {
        zone_use(snapshot, &mut zones);
    }
    let want: u32 = desired.iter().sum();
    let replicas = u32::try_from(nodes.len()).unwrap_or(u32::MAX);
    let generation = fleet.meta().generation;
    let mut conditions = current.conditions.clone();
    set_conditions(
        &mut conditions,
        &Counts {
            phases: &phases,
            zones: &zones,
            refused: &refused_pods(nodes),
        },
        desired,
        (want, replicas),
        generation,
    );
    MediaFleetStatus {
        observed_generation: generation,
        replicas,
        ready_replicas: zones.iter().map(|z| z.ready_nodes).sum(),
        selector: Some(labels::fleet_selector(&fleet.name_any())),
        slots: zones.iter().map(|z| z.slots).sum(),
        used_slots: zones.iter().map(|z| z.used_slots).sum(),
        phases,
        zones,
        update_revision: Some(update_revision),
        revisions,
        rollout: current.rollout,
        conditions,
    }
}

/// Counts nodes by phase, zone and revision.
fn count_nodes(
    nodes: &[Arc<MediaNode>],
    phases: &mut PhaseCounts,
    zones: &mut [ZoneStatus],
) -> Vec<RevisionStatus> {
    let mut revisions: Vec<RevisionStatus> = Vec::new();
    for node in nodes {
        let phase = node.status.as_ref().map(|s| s.phase).unwrap_or_default();
        phases.add(phase);
        let serving = phase == NodePhase::Ready && node.spec.drain.is_none();
        if let Some(z) = zones.iter_mut().find(|z| z.name == node.spec.zone) {
            z.nodes += 1;
            if serving {
                z.ready_nodes += 1;
            }
        }
        let at = revisions
            .iter()
            .position(|r| r.revision == node.spec.revision)
            .unwrap_or_else(|| {
                revisions.push(RevisionStatus {
                    revision: node.spec.revision.clone(),
                    ..RevisionStatus::default()
                });
                revisions.len() - 1
            });
        revisions[at].nodes += 1;
        if phase == NodePhase::Ready {
            revisions[at].ready_nodes += 1;
        }
    }
    revisions.sort_by(|a, b| a.revision.cmp(&b.revision));
    revisions
}

/// Slots, use and rooms per zone, from the placements.
fn zone_use(snapshot: &Snapshot, zones: &mut [ZoneStatus]) {
    {
        for z in zones.iter_mut() {
            if let Some(id) = snapshot.zone_id(&z.name) {
                let zone_use = snapshot.zone_use(id);
                z.slots = u32::try_from(zone_use.capacity).unwrap_or(u32::MAX);
                z.used_slots = u32::try_from(zone_use.used).unwrap_or(u32::MAX);
            }
        }
        for (_, record) in snapshot.rooms() {
            if let Some(node) = snapshot.node(record.node) {
                let zone = snapshot.zone_name(node.zone);
                if let Some(z) = zones.iter_mut().find(|z| z.name == zone) {
                    z.rooms += 1;
                }
            }
        }
    }
}

/// The nodes whose pod the API server refused, with its words (the nodes' `Ready` message).
fn refused_pods(nodes: &[Arc<MediaNode>]) -> Vec<(String, String)> {
    let mut refused: Vec<(String, String)> = nodes
        .iter()
        .filter_map(|n| {
            let status = n.status.as_ref()?;
            let c = status
                .conditions
                .iter()
                .find(|c| c.type_ == condition::READY && c.reason == condition::POD_REFUSED)?;
            Some((n.name_any(), c.message.clone()))
        })
        .collect();
    refused.sort();
    refused
}

/// What the conditions are computed from.
struct Counts<'a> {
    phases: &'a PhaseCounts,
    zones: &'a [ZoneStatus],
    refused: &'a [(String, String)],
}

/// Available (every zone that should serve has a Ready node), Progressing (the node count or
/// readiness is not yet what is desired), Degraded (pods refused, or nodes failed).
fn set_conditions(
    conditions: &mut Vec<Condition>,
    counts: &Counts<'_>,
    desired: &[u32],
    (want, replicas): (u32, u32),
    generation: Option<i64>,
) {
    let (phases, zones) = (counts.phases, counts.zones);
    let ready = phases.ready;
    let empty_zones: Vec<&str> = zones
        .iter()
        .zip(desired)
        .filter(|(z, want)| **want > 0 && z.ready_nodes == 0)
        .map(|(z, _)| z.name.as_str())
        .collect();
    conditions.set_condition(condition(
        "Available",
        empty_zones.is_empty() && ready > 0,
        if empty_zones.is_empty() && ready > 0 {
            ("Serving", format!("{ready} media nodes Ready"))
        } else if ready == 0 {
            ("NoReadyNode", "no media node is Ready".into())
        } else {
            (
                "ZoneWithoutReadyNode",
                format!("no Ready media node in zone {}", empty_zones.join(", ")),
            )
        },
        generation,
    ));
    let settled = ready == want && replicas == want;
    conditions.set_condition(condition(
        "Progressing",
        !settled,
        if settled {
            ("Settled", format!("{want} media nodes Ready, as desired"))
        } else {
            (
                "Scaling",
                format!("{ready} of {want} media nodes Ready ({replicas} exist)"),
            )
        },
        generation,
    ));
    let degraded = if let Some((node, why)) = counts.refused.first() {
        let others = counts.refused.len() - 1;
        let more = if others > 0 {
            format!(" (and {others} other media nodes)")
        } else {
            String::new()
        };
        ("PodsRefused", format!("media node {node}{more}: {why}"))
    } else if phases.failed > 0 {
        (
            "NodesFailed",
            format!("{} media nodes Failed; being replaced", phases.failed),
        )
    } else {
        ("Healthy", "no media node has failed".into())
    };
    conditions.set_condition(condition(
        "Degraded",
        !counts.refused.is_empty() || phases.failed > 0,
        degraded,
        generation,
    ));
}

/// The `ZoneEvacuated` condition while a zone is evacuated: which zones, how many of their
/// nodes still run, and the rooms that may live in no other zone and therefore stay (reason
/// `RoomsPinned`). Gone once no zone is evacuated.
pub fn with_evacuation(
    mut status: MediaFleetStatus,
    fleet: &MediaFleet,
    nodes: &[Arc<MediaNode>],
    snapshot: Option<&Snapshot>,
) -> MediaFleetStatus {
    let evacuated: Vec<bool> = fleet.spec.zones.iter().map(|z| z.evacuate).collect();
    let zones: Vec<&str> = fleet
        .spec
        .zones
        .iter()
        .filter(|z| z.evacuate)
        .map(|z| z.name.as_str())
        .collect();
    if zones.is_empty() {
        status.conditions.retain(|c| c.type_ != EVACUATED);
        return status;
    }
    let left = nodes
        .iter()
        .filter(|n| zones.contains(&n.spec.zone.as_str()))
        .filter(|n| {
            !matches!(
                n.status.as_ref().map(|s| s.phase),
                Some(NodePhase::Drained | NodePhase::Failed)
            )
        })
        .count();
    let pinned: Vec<String> = snapshot
        .map(|s| evacuation::pinned(s, evacuation::mask(&evacuated)))
        .unwrap_or_default()
        .iter()
        .map(|k| room_name(k).to_string())
        .collect();
    let what = format!(
        "zone {} evacuated: {left} media node(s) still draining",
        zones.join(", ")
    );
    let (reason, message) = if pinned.is_empty() {
        ("Evacuating", what)
    } else {
        (
            "RoomsPinned",
            format!(
                "{what}; {} room(s) may live in no other zone and stay: {}",
                pinned.len(),
                pinned.join(", ")
            ),
        )
    };
    status.conditions.set_condition(condition(
        EVACUATED,
        true,
        (reason, message),
        fleet.meta().generation,
    ));
    status
}

/// The fleet condition saying a zone is evacuated, and how it goes.
pub const EVACUATED: &str = "ZoneEvacuated";

/// Puts a rollout's progress in the status: `Progressing` says it rolls (with its counts),
/// `Degraded` that it halted and why (a refused pod or a failed node still says so first).
pub fn with_rollout(
    mut status: MediaFleetStatus,
    rollout: Option<RolloutStatus>,
    generation: Option<i64>,
) -> MediaFleetStatus {
    if let Some(r) = &rollout {
        let counts = format!(
            "revision {}: {} node(s) updated, {} draining, {} to replace",
            r.revision, r.updated_nodes, r.draining_nodes, r.remaining_nodes
        );
        match &r.halted {
            Some(halt) => {
                status.conditions.set_condition(condition(
                    "Progressing",
                    false,
                    ("RolloutHalted", format!("halted; {counts}")),
                    generation,
                ));
                let pods_refused = status
                    .conditions
                    .condition("Degraded")
                    .is_some_and(|c| c.reason == "PodsRefused");
                if !pods_refused {
                    status.conditions.set_condition(condition(
                        "Degraded",
                        true,
                        (
                            "RolloutHalted",
                            format!(
                                "rollout of revision {} halted ({}): {}; old nodes take the new rooms, fix the template to resume",
                                r.revision, halt.reason, halt.message
                            ),
                        ),
                        generation,
                    ));
                }
            }
            None => status.conditions.set_condition(condition(
                "Progressing",
                true,
                ("RollingOut", counts),
                generation,
            )),
        }
    }
    status.rollout = rollout;
    status
}

/// The condition saying whether the autoscaler acts, and whether it can keep every buffer.
pub const AUTOSCALING: &str = "Autoscaling";

/// What the autoscaler decided (per zone, in the fleet's order), or why it could not; `None`
/// when the fleet does not autoscale.
pub type Scaling<'a> = Option<Result<&'a [ZoneScale], &'a PolicyError>>;

/// Adds the autoscaler's view to each zone (buffer, waiting slots, surplus) and its
/// `Autoscaling` condition: `BuffersKept`, `ScalingLimited` (a zone short of slots at its
/// `maxNodes`) or, False, `InvalidSettings` (the fleet keeps its size).
pub fn with_autoscaling(
    mut status: MediaFleetStatus,
    scaling: Scaling<'_>,
    generation: Option<i64>,
) -> MediaFleetStatus {
    let scales = match scaling {
        None => {
            status.conditions.retain(|c| c.type_ != AUTOSCALING);
            return status;
        }
        Some(Err(e)) => {
            status.conditions.set_condition(condition(
                AUTOSCALING,
                false,
                (
                    "InvalidSettings",
                    format!("autoscaling stopped, the fleet keeps its size: {e}"),
                ),
                generation,
            ));
            return status;
        }
        Some(Ok(scales)) => scales,
    };
    for (zone, scale) in status.zones.iter_mut().zip(scales) {
        zone.buffer_slots = Some(scale.buffer);
        zone.booked_slots = Some(scale.waiting);
        zone.surplus_since = scale.surplus_since.map(Time);
        zone.last_scale_down_time = scale.last_scale_down.map(Time);
    }
    let limited: Vec<String> = status
        .zones
        .iter()
        .zip(scales)
        .filter(|(_, s)| s.limited)
        .map(|(z, s)| {
            format!(
                "zone {} at {} nodes with {} free slots for a buffer of {} and {} waiting",
                z.name, s.desired, s.free, s.buffer, s.waiting
            )
        })
        .collect();
    let (reason, message) = if limited.is_empty() {
        (
            "BuffersKept",
            "every zone keeps its buffer of free slots".to_string(),
        )
    } else {
        (
            "ScalingLimited",
            format!("cannot grow past maxNodes: {}", limited.join("; ")),
        )
    };
    status
        .conditions
        .set_condition(condition(AUTOSCALING, true, (reason, message), generation));
    status
}

fn condition(
    type_: &str,
    holds: bool,
    (reason, message): (&str, String),
    generation: Option<i64>,
) -> Condition {
    new_condition(type_, holds, reason, message, generation)
}
