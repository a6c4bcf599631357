//! The fleet controller: keeps each zone's `MediaNode`s at the count the autoscaler decides
//! (see [`super::autoscale`]) or, without autoscaling, [`crate::core::sizing`] asks for (the
//! zones' bounds and `spec.replicas`, which `kubectl scale` sets), through the changes
//! [`crate::core::fleet_plan`] decides; creates the fleet's Secrets when absent; and
//! writes the fleet's status: nodes by phase, zone and revision, capacity and use per zone,
//! and conditions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ObjectReference, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use ruche_crds::fleet::{RolloutHalt, RolloutStatus};
use ruche_crds::{MediaFleet, MediaFleetStatus, MediaNode, NodePhase};

use super::Error;
use super::admin::NodeAdmin;
use super::autoscale;
use super::context::Context;
use super::events::{EventType, Happened};
use super::node::delete_pod;
use crate::build::node::{drain_request, free_index, index_of, media_node, revision};
use crate::build::secrets::{self, random_text};
use crate::build::{disruption, labels};
use crate::core::fleet_plan::{DrainCause, FleetAction, Levers, NodeView, plan_with};
use crate::core::rollout::{self, Budget};
use crate::state::fleet_status::{
    EVACUATED, fleet_status, with_autoscaling, with_evacuation, with_rollout,
};
use crate::state::keys::{FleetKey, NodeKey};

/// How often a fleet is looked at again when nothing changes.
pub const RESYNC: Duration = Duration::from_secs(30);

/// Reconciles one fleet.
pub async fn reconcile<A: NodeAdmin>(
    fleet: Arc<MediaFleet>,
    ctx: Arc<Context<A>>,
) -> Result<Action, Error> {
    let ns = fleet.namespace().ok_or_else(|| {
        Error::Invalid(format!("MediaFleet {} has no namespace", fleet.name_any()))
    })?;
    if fleet.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ensure_secrets(&fleet, &ctx, &ns).await?;
    ensure_budget(&fleet, &ctx, &ns).await?;

    let key = FleetKey::of(&fleet);
    // The placements are built here too, not only when a room comes: every node then gets
    // this leader's list, even in a fleet without rooms.
    let (nodes, rooms_per_node) = {
        let mut registry = ctx.registry();
        let effects = registry
            .ensure(&key)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let nodes = registry.nodes(&key);
        let placed = registry.rooms_per_node(&key).unwrap_or_default();
        // A node the placements do not know (of a zone the fleet dropped) counts the live
        // rooms whose status names it, so it drains rather than goes.
        let rooms: HashMap<String, u32> = nodes
            .iter()
            .map(|n| {
                let name = n.name_any();
                let count = placed
                    .get(&name)
                    .copied()
                    .unwrap_or_else(|| registry.rooms_naming(&key, &name));
                (name, count)
            })
            .collect();
        drop(registry);
        ctx.dispatch(effects);
        (nodes, rooms)
    };
    let now = Instant::now();
    let (pending, deleting) =
        ctx.expectations()
            .settle(&key, |n| nodes.iter().any(|m| m.name_any() == n), now);
    let zone_index: HashMap<&str, usize> = fleet
        .spec
        .zones
        .iter()
        .enumerate()
        .map(|(i, z)| (z.name.as_str(), i))
        .collect();
    let target = revision(&fleet);
    let mut views: Vec<NodeView> = nodes
        .iter()
        .filter(|n| !deleting.contains(&n.name_any()) && n.meta().deletion_timestamp.is_none())
        .map(|n| NodeView {
            name: n.name_any(),
            zone: zone_index.get(n.spec.zone.as_str()).copied(),
            phase: n.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            drain: n
                .spec
                .drain
                .as_ref()
                .map(|d| DrainCause::parse(d.reason.as_deref())),
            rooms: rooms_per_node.get(&n.name_any()).copied().unwrap_or(0),
            created: n.metadata.creation_timestamp.as_ref().map(|t| t.0),
            current: n.spec.revision == target,
        })
        .collect();
    views.extend(pending.iter().map(|p| NodeView {
        name: p.name.clone(),
        zone: Some(p.zone),
        phase: NodePhase::Pending,
        drain: None,
        rooms: 0,
        created: None,
        current: true,
    }));

    let sizing = autoscale::size(&fleet, &ctx, &views).await;
    let desired = sizing.desired.clone();
    let rollout = rollout_state(&fleet, &ctx, &ns, &views, &target).await;
    let limits = Levers {
        budgets: desired
            .iter()
            .map(|d| {
                Budget::resolve(
                    &fleet.spec.rollout.max_surge,
                    &fleet.spec.rollout.max_unavailable,
                    *d,
                )
            })
            .collect(),
        halted: rollout.as_ref().is_some_and(|r| r.halted.is_some()),
        evacuated: fleet.spec.zones.iter().map(|z| z.evacuate).collect(),
    };
    let mut used_indexes: Vec<u32> = nodes.iter().filter_map(|n| index_of(n)).collect();
    used_indexes.extend(pending.iter().map(|p| p.index));
    for action in plan_with(&desired, &views, &limits) {
        apply(&fleet, &ctx, &ns, &action, &mut used_indexes).await?;
    }
    if sizing.scales.is_some() {
        autoscale::own_replicas(&fleet, &ctx, &desired).await?;
    }

    let status = {
        let registry = ctx.registry();
        let snapshot = registry.snapshot(&key);
        let status = fleet_status(&fleet, &nodes, snapshot, &desired);
        let status = with_rollout(status, rollout, fleet.meta().generation);
        let status = with_autoscaling(status, sizing.scaling(), fleet.meta().generation);
        with_evacuation(status, &fleet, &nodes, snapshot)
    };
    announce_pinned(&fleet, &ctx, &ns, &status).await;
    write_status(&fleet, &ctx, status).await?;
    Ok(Action::requeue(sizing.revisit(Timestamp::now(), RESYNC)))
}

/// The rollout's quality gate, if the fleet has one: the joins and media quality of the rooms
/// on new-revision nodes against those on old ones, as the nodes' last polls report them.
fn quality_gate<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    ns: &str,
    views: &[NodeView],
) -> Option<rollout::Halt> {
    let gate = fleet.spec.rollout.quality_gate.as_ref()?;
    let (mut old, mut new) = (rollout::Quality::default(), rollout::Quality::default());
    let live = ctx.live();
    for view in views {
        let Some(report) = live
            .node(&NodeKey::new(ns, &view.name))
            .and_then(|l| l.report.as_ref())
        else {
            continue;
        };
        let side = if view.current { &mut new } else { &mut old };
        for room in &report.rooms {
            side.add(&room.quality);
        }
    }
    rollout::quality_halt(&old, &new, gate)
}

/// A Warning event when the rooms an evacuation cannot move (pinned to the zone) change.
async fn announce_pinned<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    ns: &str,
    status: &MediaFleetStatus,
) {
    let pinned = |s: Option<&MediaFleetStatus>| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == EVACUATED))
            .filter(|c| c.reason == "RoomsPinned")
            .map(|c| c.message.clone())
    };
    if let Some(message) =
        pinned(Some(status)).filter(|m| pinned(fleet.status.as_ref()).as_ref() != Some(m))
    {
        let subject = fleet_subject(fleet, ns);
        publish(
            ctx,
            fleet,
            EventType::Warning,
            ("RoomsPinned", subject),
            &message,
        )
        .await;
    }
}

/// Where the fleet's rollout stands: `None` once every live node runs the current revision.
/// A rollout halts (once, and stays halted until the template changes again) when a node of
/// the new revision fails or is not Ready within the progress deadline.
async fn rollout_state<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    ns: &str,
    views: &[NodeView],
    target: &str,
) -> Option<RolloutStatus> {
    let previous = fleet
        .status
        .as_ref()
        .and_then(|s| s.rollout.clone())
        .filter(|r| r.revision == target);
    let refs: Vec<&NodeView> = views.iter().collect();
    if !rollout::rolling(&refs) {
        if previous.is_some() {
            let note = format!("every media node runs revision {target}");
            publish(
                ctx,
                fleet,
                EventType::Normal,
                ("RolloutComplete", fleet_subject(fleet, ns)),
                &note,
            )
            .await;
        }
        return None;
    }
    let now = Timestamp::now();
    let mut halted = previous.as_ref().and_then(|r| r.halted.clone());
    let deadline = Duration::from(fleet.spec.rollout.progress_deadline);
    if halted.is_none()
        && let Some(halt) =
            rollout::halt(views, now, deadline).or_else(|| quality_gate(fleet, ctx, ns, views))
    {
        let note = format!("rollout of revision {target} halted: {}", halt.message);
        publish(
            ctx,
            fleet,
            EventType::Warning,
            (halt.reason, fleet_subject(fleet, ns)),
            &note,
        )
        .await;
        halted = Some(RolloutHalt {
            reason: halt.reason.to_string(),
            message: halt.message,
            since: Some(Time(now)),
        });
    }
    if previous.is_none() {
        let note = format!("rolling out revision {target}");
        publish(
            ctx,
            fleet,
            EventType::Normal,
            ("RolloutStarted", fleet_subject(fleet, ns)),
            &note,
        )
        .await;
    }
    let progress = rollout::progress(views);
    Some(RolloutStatus {
        revision: target.to_string(),
        started_at: previous.and_then(|r| r.started_at).or(Some(Time(now))),
        updated_nodes: progress.updated,
        draining_nodes: progress.draining,
        remaining_nodes: progress.remaining,
        halted,
    })
}

async fn apply<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    ns: &str,
    action: &FleetAction,
    used_indexes: &mut Vec<u32>,
) -> Result<(), Error> {
    let api: Api<MediaNode> = Api::namespaced(ctx.client.clone(), ns);
    let key = FleetKey::of(fleet);
    match action {
        FleetAction::Create { zone } => {
            let zone_name = fleet
                .spec
                .zones
                .get(*zone)
                .map(|z| z.name.clone())
                .unwrap_or_default();
            let index = free_index(used_indexes.iter().copied());
            used_indexes.push(index);
            let node =
                media_node(fleet, &zone_name, index).map_err(|e| Error::Invalid(e.to_string()))?;
            match api.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                // A node of that name is still being deleted; the next pass picks another index.
                Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            ctx.expectations()
                .created(&key, node.name_any(), *zone, index, Instant::now());
            publish(
                ctx,
                fleet,
                EventType::Normal,
                ("NodeCreated", node_subject(ns, &node.name_any())),
                &format!("created media node {} in zone {zone_name}", node.name_any()),
            )
            .await;
        }
        FleetAction::Drain { node, cause } => {
            let drain = drain_request(fleet, cause.as_str(), Timestamp::now());
            super::patch_drain(&ctx.client, ns, node, Some(&drain)).await?;
            publish(
                ctx,
                fleet,
                EventType::Normal,
                ("NodeDraining", node_subject(ns, node)),
                &format!("draining media node {node} ({cause})"),
            )
            .await;
        }
        FleetAction::Undrain { node } => {
            super::patch_drain(&ctx.client, ns, node, None).await?;
            publish(
                ctx,
                fleet,
                EventType::Normal,
                ("NodeUndrained", node_subject(ns, node)),
                &format!("media node {node} serves again: the fleet needs it"),
            )
            .await;
        }
        FleetAction::Delete { node } => {
            // Pod and Service first: owner references clean up after us on a full cluster, but
            // not where no garbage collector runs, and a pod must never outlive its node.
            delete_pod(ctx, ns, node).await?;
            let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
            ignore_missing(
                services
                    .delete(&labels::service_name(node), &DeleteParams::default())
                    .await,
            )?;
            ignore_missing(api.delete(node, &DeleteParams::default()).await)?;
            ctx.expectations()
                .deleted(&key, node.clone(), Instant::now());
            ctx.live().forget(&key.node(node.clone()));
            publish(
                ctx,
                fleet,
                EventType::Normal,
                ("NodeDeleted", node_subject(ns, node)),
                &format!("deleted media node {node}"),
            )
            .await;
        }
    }
    Ok(())
}

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    match result {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Creates the fleet's join key and admin token Secrets when absent; never overwrites them.
async fn ensure_secrets<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
    let name = fleet.name_any();
    let random = || random_text(64).map_err(|e| Error::Invalid(format!("no OS randomness: {e}")));
    for (secret_name, build) in [
        (
            labels::join_key_secret(&name),
            secrets::join_key as fn(&MediaFleet, String) -> _,
        ),
        (labels::admin_token_secret(&name), secrets::admin_token),
    ] {
        if api.get_opt(&secret_name).await?.is_some() {
            continue;
        }
        let secret = build(fleet, random()?).map_err(|e| Error::Invalid(e.to_string()))?;
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                publish(
                    ctx,
                    fleet,
                    EventType::Normal,
                    ("SecretCreated", subject("Secret", "v1", ns, &secret_name)),
                    &format!("created Secret {secret_name}"),
                )
                .await;
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates the fleet's PodDisruptionBudget over its busy media pods when absent.
async fn ensure_budget<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    ns: &str,
) -> Result<(), Error> {
    let api: Api<PodDisruptionBudget> = Api::namespaced(ctx.client.clone(), ns);
    let name = labels::busy_budget(&fleet.name_any());
    if api.get_opt(&name).await?.is_some() {
        return Ok(());
    }
    let budget = disruption::busy_budget(fleet).map_err(|e| Error::Invalid(e.to_string()))?;
    match api.create(&PostParams::default(), &budget).await {
        Ok(_) => {
            let text = format!(
                "created PodDisruptionBudget {name}: no voluntary eviction of a media pod that hosts rooms"
            );
            let about = subject("PodDisruptionBudget", "policy/v1", ns, &name);
            publish(
                ctx,
                fleet,
                EventType::Normal,
                ("BudgetCreated", about),
                &text,
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn write_status<A: NodeAdmin>(
    fleet: &MediaFleet,
    ctx: &Context<A>,
    status: MediaFleetStatus,
) -> Result<(), Error> {
    if fleet.status.as_ref() == Some(&status) {
        return Ok(());
    }
    super::apply_status(&ctx.client, fleet, &status).await?;
    Ok(())
}

/// Records an event about the fleet (`action` Scale), naming the object it concerns.
pub(super) async fn publish<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    type_: EventType,
    (reason, subject): (&str, ObjectReference),
    note: &str,
) {
    let happened = Happened {
        type_,
        action: "Scale",
        reason,
        note,
    };
    ctx.events
        .publish(&fleet.object_ref(&()), &happened, Some(subject))
        .await;
}

/// A reference to an object of the fleet's namespace, for events.
fn subject(kind: &str, api_version: &str, ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        kind: Some(kind.into()),
        api_version: Some(api_version.into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..ObjectReference::default()
    }
}

fn node_subject(ns: &str, name: &str) -> ObjectReference {
    subject("MediaNode", "ruche.dev/v1alpha1", ns, name)
}

/// The fleet itself, as an event's subject.
pub(super) fn fleet_subject(fleet: &MediaFleet, ns: &str) -> ObjectReference {
    subject("MediaFleet", "ruche.dev/v1alpha1", ns, &fleet.name_any())
}

/// What to do when a reconcile fails: retry after the fleet's own backoff.
#[allow(clippy::needless_pass_by_value)] // the signature `Controller::run` asks for
pub fn error_policy<A: NodeAdmin>(
    fleet: Arc<MediaFleet>,
    error: &Error,
    ctx: Arc<Context<A>>,
) -> Action {
    super::retry_after("fleet", fleet.as_ref(), error, &ctx)
}
