//! The media node controller: one pod per `MediaNode`, pinned to its zone, exposed without host
//! networking (a per-node Service, or a host port the fleet allocated); its advertised address
//! resolved from that exposure and pushed to the node; drain requests passed on to the node's
//! admin API; and its phase, addresses and load written to its status, only when they change.
//!
//! The phase comes from [`crate::core::health`]: the pod's state and readiness, and the polls
//! of the admin API (see [`super::agent`]). A Failed node's pod is deleted; its rooms are placed
//! again by the registry and the fleet replaces the node. A node the operator cannot reach
//! while its pod is ready is Unreachable: it keeps its rooms and takes no new one.
//!
//! A pod the API server refuses (Pod Security, a quota, a bad template) is a `PodRefused`
//! condition and a Warning event on the node, with the API server's own words, retried with
//! a growing backoff; the fleet reports it as Degraded.
//!
//! Phase, addresses and conditions are written as soon as they change; the load counters,
//! which move with every room and participant, at most every
//! [`Settings::load_status_interval`](super::context::Settings::load_status_interval).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use ruche_crds::common::new_condition;
use ruche_crds::node::condition;
use ruche_crds::{
    ConditionsExt, DrainMode, ExposureMode, MediaFleet, MediaNode, MediaNodeStatus,
    NodeAddressType, NodeAddresses, NodeLoad, NodePhase,
};

use super::Error;
use super::admin::{AdminTarget, NodeAdmin, NodeReport};
use super::context::Context;
use super::events::{EventType, Happened};
use crate::build::labels::{self, MANAGER};
use crate::build::node::drain_request;
use crate::build::node::{INDEX, index_of};
use crate::build::pod::{ADMIN_PORT, ExternalPort, SIGNALING_PORT, host_port, pod};
use crate::build::service::{service, up_to_date};
use crate::core::drain::{DrainStep, DrainView};
use crate::core::fleet_plan::DrainCause;
use crate::core::health::{self, PodState, Polls, Reported};
use crate::state::keys::{FleetKey, NodeKey};
use crate::state::live::reported;
use crate::state::trim;

/// The condition saying whether the node serves, and why not.
pub const READY: &str = condition::READY;

/// Reconciles one media node.
pub async fn reconcile<A: NodeAdmin>(
    node: Arc<MediaNode>,
    ctx: Arc<Context<A>>,
) -> Result<Action, Error> {
    let ns = node
        .namespace()
        .ok_or_else(|| Error::Invalid(format!("MediaNode {} has no namespace", node.name_any())))?;
    if node.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let current = node.status.clone().unwrap_or_default();
    let fleet = match fleet_of(&node, &ctx, &ns, &current).await? {
        Ok(fleet) => fleet,
        Err(action) => return Ok(action),
    };
    let now = Instant::now();
    let key = NodeKey::of(&node);
    let pod = ctx.pods.get(&ObjectRef::new(&node.name_any()).within(&ns));
    // A pod of this name that another node owns is the leftover of a deleted node whose name
    // was reused (its pod may take the drain deadline to terminate): never adopt its address
    // or status. Wait until it is gone, then create ours.
    if let Some(p) = pod.as_deref()
        && !owned_by(p, &node)
    {
        if p.meta().deletion_timestamp.is_none() {
            delete_pod(&ctx, &ns, &p.name_any()).await?;
        }
        tracing::info!(node = %key, "waiting for the pod of a previous node of this name to go");
        return Ok(Action::requeue(Duration::from_secs(2)));
    }

    // The phase first: a Failed node gets no new pod, and loses the one it has.
    let pod_state = pod_state(pod.as_deref(), &ctx, &key, now);
    let (polls, report) = {
        let live = ctx.live();
        live.node(&key)
            .map(|l| (l.polls, l.report.clone()))
            .unwrap_or_default()
    };
    let health = health::phase(current.phase, pod_state, polls, now, ctx.settings.health);
    let phase = health.phase;

    if phase == NodePhase::Failed {
        if let Some(p) = &pod {
            delete_pod(&ctx, &ns, &p.name_any()).await?;
        }
        // Failed is final, and its condition keeps the first reason.
        if current.phase == NodePhase::Failed {
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        let why = failure_reason(pod_state, polls, &ctx, &key);
        let mut status = current.clone();
        status.phase = NodePhase::Failed;
        status.observed_generation = node.meta().generation;
        status.conditions.set_condition(ready_condition(
            false,
            "Failed",
            why.clone(),
            node.meta().generation,
        ));
        if write_status(&node, &ctx, status).await? {
            publish(&ctx, &node, EventType::Warning, "Failed", &why).await;
        }
        return Ok(Action::requeue(Duration::from_secs(30)));
    }

    let external = match external_port(&ctx, &fleet, &node).await {
        Ok(external) => external,
        Err(e) => return refused(&node, &ctx, &current, e).await,
    };
    if pod.is_none()
        && phase != NodePhase::Drained
        && let Err(e) = create_pod(&ctx, &fleet, &node, external.port).await
    {
        return refused(&node, &ctx, &current, e).await;
    }

    let addresses = match pod.as_deref() {
        Some(p) if pod_state_running(pod_state) => addresses(
            &ctx,
            &fleet,
            p,
            &external,
            current.addresses.as_ref(),
            &current,
        ),
        _ => None,
    };

    if let Some(p) = pod
        .as_deref()
        .filter(|p| p.meta().deletion_timestamp.is_none())
    {
        pod_duties(&ctx, &fleet, &node, p, report.as_ref()).await?;
    }

    // Tell the node what it must advertise and whether to drain.
    if let (Some(report), Some(addrs), false) = (&report, &addresses, health.unreachable) {
        let leaving = pod
            .as_ref()
            .is_some_and(|p| p.meta().deletion_timestamp.is_some());
        instruct(&ctx, &fleet, &node, report, addrs, leaving).await?;
    }
    let mut status = next_status(
        &node,
        &current,
        phase,
        pod.as_deref(),
        addresses,
        report.as_ref(),
    );
    let drain_recheck = drain(&node, &ctx, &current, &mut status).await;
    if health.unreachable {
        let why = failure_reason(pod_state, polls, &ctx, &key);
        status.conditions.set_condition(ready_condition(
            false,
            condition::UNREACHABLE,
            format!("{why}, but its pod is ready: it keeps its rooms and takes no new one"),
            node.meta().generation,
        ));
    }
    let next = match status.phase {
        NodePhase::Pending | NodePhase::Starting => ctx.settings.poll_interval,
        _ => Duration::from_secs(60),
    };
    let next = drain_recheck.map_or(next, |d| d.min(next));
    let wait = record(&node, &ctx, &current, status, now).await?;
    Ok(Action::requeue(wait.map_or(next, |w| w.min(next))))
}

/// Writes the node's new status if it is due (see [`write_due`]), with an event when its phase
/// changes or it becomes unreachable; returns how long to wait for a load write not yet due.
async fn record<A: NodeAdmin>(
    node: &MediaNode,
    ctx: &Context<A>,
    current: &MediaNodeStatus,
    status: MediaNodeStatus,
    now: Instant,
) -> Result<Option<Duration>, Error> {
    let key = NodeKey::of(node);
    let load_written = ctx.live().node(&key).and_then(|l| l.load_written);
    match write_due(
        current,
        &status,
        load_written,
        now,
        ctx.settings.load_status_interval,
    ) {
        WriteDue::No => return Ok(None),
        WriteDue::Later(wait) => return Ok(Some(wait)),
        WriteDue::Load => {
            if let Err(wait) = ctx.live().take_load_write(now) {
                return Ok(Some(wait));
            }
        }
        WriteDue::Now => {}
    }
    let (phase, unreachable) = (status.phase, status.unreachable());
    let message = status
        .conditions
        .condition(READY)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    if !write_status(node, ctx, status).await? {
        return Ok(None);
    }
    // The load is as fresh as this write: the next write for the load alone waits a while.
    ctx.live().load_written(&key, now);
    if phase != current.phase {
        let text = format!("media node is {phase}");
        publish(ctx, node, EventType::Normal, phase.as_str(), &text).await;
    }
    if unreachable && !current.unreachable() {
        publish(
            ctx,
            node,
            EventType::Warning,
            condition::UNREACHABLE,
            &message,
        )
        .await;
    }
    Ok(None)
}

/// What the node's running pod says or is told about rooms and its Kubernetes node: drained
/// with its host, and labelled busy while it hosts rooms.
async fn pod_duties<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    node: &MediaNode,
    pod: &Pod,
    report: Option<&NodeReport>,
) -> Result<(), Error> {
    host_maintenance(ctx, fleet, node, pod).await?;
    let busy = ctx.registry().rooms_on(&NodeKey::of(node)).unwrap_or(0) > 0
        || report.is_some_and(|r| r.status.participants > 0);
    mark_busy(ctx, &node.namespace().unwrap_or_default(), pod, busy).await
}

/// Drains the node when the Kubernetes node its pod runs on is being taken away (cordoned,
/// or marked for removal by an autoscaler), with its fleet's rollout deadline and mode; undoes
/// that drain, and only that one, when the Kubernetes node comes back.
async fn host_maintenance<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    node: &MediaNode,
    pod: &Pod,
) -> Result<(), Error> {
    let Some(host) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return Ok(());
    };
    // Unknown (not watched, or gone): nothing to say about it.
    let Some(k8s_node) = ctx.hosts.get(&ObjectRef::new(&host)) else {
        return Ok(());
    };
    let ns = node.namespace().unwrap_or_default();
    let name = node.name_any();
    let ours = node
        .spec
        .drain
        .as_ref()
        .is_some_and(|d| DrainCause::parse(d.reason.as_deref()) == DrainCause::NodeMaintenance);
    match (trim::host_leaving(&k8s_node), &node.spec.drain) {
        (Some(why), None) => {
            let cause = DrainCause::NodeMaintenance.as_str();
            let drain = drain_request(fleet, cause, Timestamp::now());
            super::patch_drain(&ctx.client, &ns, &name, Some(&drain)).await?;
            let deadline = drain.deadline.map(|d| d.0.to_string()).unwrap_or_default();
            let text = format!("Kubernetes node {host} {why}: draining until {deadline}");
            publish(ctx, node, EventType::Warning, "HostLeaving", &text).await;
        }
        (None, Some(_)) if ours => {
            super::patch_drain(&ctx.client, &ns, &name, None).await?;
            let text = format!("Kubernetes node {host} is back in service: drain cancelled");
            publish(ctx, node, EventType::Normal, "HostBack", &text).await;
        }
        _ => {}
    }
    Ok(())
}

/// Labels the node's pod busy while it hosts rooms (the fleet's PodDisruptionBudget then keeps
/// voluntary evictions from it) and tells the cluster autoscaler it is safe to evict only
/// while it hosts none.
async fn mark_busy<A: NodeAdmin>(
    ctx: &Context<A>,
    ns: &str,
    pod: &Pod,
    busy: bool,
) -> Result<(), Error> {
    let value = if busy { "true" } else { "false" };
    if pod.labels().get(labels::BUSY).map(String::as_str) == Some(value) {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let patch = serde_json::json!({ "metadata": {
        "labels": { (labels::BUSY): value },
        "annotations": { (labels::SAFE_TO_EVICT): if busy { "false" } else { "true" } },
    } });
    api.patch(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Acts on the node's drain and says how it goes in its `Draining` condition: at the deadline,
/// mode `Migrate` moves every room that has somewhere to go (see [`crate::core::drain`]);
/// mode `Wait` keeps waiting. Returns when to look again.
async fn drain<A: NodeAdmin>(
    node: &MediaNode,
    ctx: &Context<A>,
    current: &MediaNodeStatus,
    status: &mut MediaNodeStatus,
) -> Option<Duration> {
    let Some(request) = &node.spec.drain else {
        status.conditions.retain(|c| c.type_ != condition::DRAINING);
        return None;
    };
    if status.phase == NodePhase::Failed {
        return None;
    }
    let key = NodeKey::of(node);
    let now = Timestamp::now();
    let view = DrainView {
        deadline: request.deadline.as_ref().map(|t| t.0),
        mode: request.mode,
        cause: DrainCause::parse(request.reason.as_deref()),
        since: Some(current.drain_started_at.as_ref().map_or(now, |t| t.0)),
    };
    if current.drain_started_at.is_none() && view.deadline_was_past() {
        let then = match view.mode {
            DrainMode::Migrate => "its rooms move now",
            DrainMode::Wait => "mode Wait: its rooms are waited for",
        };
        let text = format!(
            "the drain deadline {} was already past when the drain was set: {then}",
            view.deadline.map(|d| d.to_string()).unwrap_or_default()
        );
        publish(ctx, node, EventType::Warning, "DeadlineInPast", &text).await;
    }
    status.drain_started_at = Some(Time(view.since.unwrap_or(now)));
    let (rooms, built) = {
        let mut registry = ctx.registry();
        let built = match registry.rooms_on(&key) {
            Some(_) => None,
            // The fleet's placements are built on first need (here, or its first room).
            None => registry.ensure(&FleetKey::of_node(node)).ok(),
        };
        (registry.rooms_on(&key), built)
    };
    if let Some(effects) = built {
        ctx.dispatch(effects);
    }
    // Placements unusable (the fleet's rules are broken, and say so): what the node reports.
    let rooms = rooms.unwrap_or(status.load.rooms);
    let step = view.step(rooms, now);
    let mut stranded = 0;
    if step == DrainStep::Migrate {
        let effects = ctx.registry().migrate_off(&key, Instant::now());
        let moved = effects.migrated.len();
        stranded = u32::try_from(effects.stranded.len()).unwrap_or(u32::MAX);
        ctx.dispatch(effects);
        if moved > 0 {
            let text = format!(
                "drain deadline reached: moving {moved} room(s) live to other nodes{}",
                if stranded > 0 {
                    format!("; {stranded} have nowhere to go and stay")
                } else {
                    String::new()
                }
            );
            publish(ctx, node, EventType::Normal, "Migrating", &text).await;
        }
    }
    let (reason, message) = view.describe(step, rooms, stranded);
    status.conditions.set_condition(new_condition(
        condition::DRAINING,
        step != DrainStep::Empty,
        reason,
        message.clone(),
        node.meta().generation,
    ));
    let was = current.conditions.condition(condition::DRAINING);
    if step == DrainStep::Overdue && was.is_none_or(|c| c.reason != reason) {
        publish(ctx, node, EventType::Warning, reason, &message).await;
    }
    match step {
        DrainStep::Waiting { until: Some(d) } => Some(
            Duration::try_from(d.duration_since(now))
                .unwrap_or_default()
                .max(Duration::from_secs(1)),
        ),
        // Rooms with nowhere to go are tried again: capacity may have appeared.
        DrainStep::Migrate => Some(Duration::from_secs(10)),
        _ => None,
    }
}

/// The node's pod as the health rules see it. A running pod's start is when the operator first
/// saw it running.
fn pod_state<A: NodeAdmin>(
    pod: Option<&Pod>,
    ctx: &Context<A>,
    key: &NodeKey,
    now: Instant,
) -> PodState {
    let Some(p) = pod else {
        return PodState::Absent;
    };
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => PodState::Running {
            since: ctx.live().running(key, now),
            ready: pod_ready(p),
        },
        Some("Failed" | "Succeeded") => PodState::Gone,
        _ => PodState::Pending,
    }
}

/// Whether the pod's `Ready` condition is True.
fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// When a status change is worth a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteDue {
    /// Nothing worth writing changed.
    No,
    /// Only the load changed, and the status was written too recently: wait this long.
    Later(Duration),
    /// Only the load changed, long enough ago: write if the shared budget allows.
    Load,
    /// Write now.
    Now,
}

/// Phase, addresses and conditions are written as soon as they change; the load counters at
/// most every `interval` after the last write (and within a budget shared by all nodes, see
/// [`Live::take_load_write`](crate::state::live::Live::take_load_write)); bitrates, heartbeat
/// and condition timestamps never on their own.
fn write_due(
    current: &MediaNodeStatus,
    next: &MediaNodeStatus,
    load_written: Option<Instant>,
    now: Instant,
    interval: Duration,
) -> WriteDue {
    let strip = |s: &MediaNodeStatus| {
        let mut s = s.clone();
        s.last_heartbeat = None;
        s.load = NodeLoad::default();
        for c in &mut s.conditions {
            c.last_transition_time = Time(Timestamp::UNIX_EPOCH);
        }
        s
    };
    if strip(current) != strip(next) {
        return WriteDue::Now;
    }
    let counts = |l: &NodeLoad| (l.rooms, l.participants, l.reserved_slots, l.used_slots);
    if counts(&current.load) == counts(&next.load) {
        return WriteDue::No;
    }
    match load_written.map(|at| now.saturating_duration_since(at)) {
        Some(since) if since < interval => WriteDue::Later(interval.saturating_sub(since)),
        _ => WriteDue::Load,
    }
}

/// What the node cannot get past, where users look: the API server refused what the operator
/// built for it (its pod, its Service: Pod Security, a quota, a bad template), or the node
/// as written cannot be served (no index label, a host port out of range). The node's
/// `Ready` condition says so in those words, with a Warning event when that changes. A
/// refusal fails the reconcile, retried with the node's growing backoff (the namespace's
/// rules or quota may change); an invalid node waits for a change of the node. Other errors
/// are passed on as they are.
async fn refused<A: NodeAdmin>(
    node: &MediaNode,
    ctx: &Context<A>,
    current: &MediaNodeStatus,
    error: Error,
) -> Result<Action, Error> {
    let (reason, text, wait) = match (&error, error.refusal()) {
        (_, Some((code, message))) => (
            condition::POD_REFUSED,
            format!("the API server refused its pod (HTTP {code}): {message}"),
            false,
        ),
        (Error::Invalid(why), None) => (condition::INVALID, why.clone(), true),
        _ => return Err(error),
    };
    let mut status = current.clone();
    status.observed_generation = node.meta().generation;
    status.conditions.set_condition(ready_condition(
        false,
        reason,
        text.clone(),
        node.meta().generation,
    ));
    let changed = current
        .conditions
        .condition(READY)
        .is_none_or(|c| c.reason != reason || c.message != text);
    if changed {
        write_status(node, ctx, status).await?;
        publish(ctx, node, EventType::Warning, reason, &text).await;
    }
    if wait {
        Ok(Action::await_change())
    } else {
        Err(error)
    }
}

/// The node's status after this reconcile.
fn next_status(
    node: &MediaNode,
    current: &MediaNodeStatus,
    phase: NodePhase,
    pod: Option<&Pod>,
    addresses: Option<NodeAddresses>,
    report: Option<&NodeReport>,
) -> MediaNodeStatus {
    let phase = match phase {
        // A node is not Ready to anyone until clients can reach it.
        NodePhase::Ready if addresses.as_ref().is_none_or(|a| a.media.is_none()) => {
            NodePhase::Starting
        }
        // A drain request takes the node out of service at once, whatever it says yet.
        NodePhase::Ready if node.spec.drain.is_some() => NodePhase::Draining,
        other => other,
    };
    let mut status = current.clone();
    status.observed_generation = node.meta().generation;
    status.phase = phase;
    status.pod = pod.map(ResourceExt::name_any);
    status.addresses = addresses.or(current.addresses.clone());
    if let Some(r) = report {
        status.load = NodeLoad {
            rooms: r.status.rooms,
            participants: r.status.participants,
            reserved_slots: r.status.reserved_slots,
            used_slots: r.status.used_slots,
            bitrate_in_bps: r.status.bitrate_in_bps,
            bitrate_out_bps: r.status.bitrate_out_bps,
        };
    }
    if phase == NodePhase::Draining && status.drain_started_at.is_none() {
        status.drain_started_at = Some(Time(Timestamp::now()));
    }
    if node.spec.drain.is_none() && phase == NodePhase::Ready {
        status.drain_started_at = None;
    }
    let (ready, reason, message) = match phase {
        NodePhase::Ready => (true, "Ready", "taking rooms".to_string()),
        NodePhase::Pending => (false, "PodPending", "waiting for its pod to run".into()),
        NodePhase::Starting => (
            false,
            "Starting",
            "its pod runs; waiting for its admin API and address".into(),
        ),
        NodePhase::Draining => (false, "Draining", "draining: no new room".into()),
        NodePhase::Drained => (false, "Drained", "drained: no room left".into()),
        NodePhase::Failed => (false, "Failed", String::new()),
    };
    status.conditions.set_condition(ready_condition(
        ready,
        reason,
        message,
        node.meta().generation,
    ));
    status
}

/// The node's fleet, or what to do when the node cannot run: its fleet is missing (retried:
/// it may be created), or lacks the node's zone (not retried: a node's zone cannot change).
/// Either way the node's `Ready` condition says why.
async fn fleet_of<A: NodeAdmin>(
    node: &MediaNode,
    ctx: &Context<A>,
    ns: &str,
    current: &MediaNodeStatus,
) -> Result<Result<Arc<MediaFleet>, Action>, Error> {
    let Some(fleet) = ctx.fleets.get(&ObjectRef::new(&node.spec.fleet).within(ns)) else {
        let mut status = current.clone();
        status.conditions.set_condition(ready_condition(
            false,
            "FleetNotFound",
            format!("no MediaFleet {} in namespace {ns}", node.spec.fleet),
            node.meta().generation,
        ));
        write_status(node, ctx, status).await?;
        return Ok(Err(Action::requeue(Duration::from_secs(30))));
    };
    // A node no pod can be built for (its zone is immutable) is told so once, not retried:
    // nothing is created for it, not even a Service.
    if !fleet.spec.zones.iter().any(|z| z.name == node.spec.zone) {
        let mut status = current.clone();
        status.conditions.set_condition(ready_condition(
            false,
            "UnknownZone",
            format!(
                "zone {} is not one of fleet {}'s zones: this node cannot run; delete it",
                node.spec.zone, node.spec.fleet
            ),
            node.meta().generation,
        ));
        write_status(node, ctx, status).await?;
        return Ok(Err(Action::await_change()));
    }
    Ok(Ok(fleet))
}

/// Pushes to the node what the operator decided: the address to advertise, and whether to
/// drain. A pod being deleted drains on its own (SIGTERM): that drain is not cancelled.
async fn instruct<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    node: &MediaNode,
    report: &NodeReport,
    addrs: &NodeAddresses,
    leaving: bool,
) -> Result<(), Error> {
    let target = AdminTarget {
        url: addrs.admin.clone().unwrap_or_default(),
        token: ctx.admin_token(&FleetKey::of(fleet)).await?,
    };
    if let Some(media) = &addrs.media
        && report.status.advertise.as_ref().is_some_and(|a| a != media)
    {
        let resolved = resolve(media).await?;
        if report.status.advertise.as_ref() != Some(&resolved) {
            ctx.admin.advertise(&target, &resolved).await?;
        }
    }
    match (&node.spec.drain, reported(&report.status.phase)) {
        (Some(drain), Some(Reported::Ready)) => {
            let left = drain.deadline.as_ref().map(|d| {
                let secs = d.0.as_second() - Timestamp::now().as_second();
                Duration::from_secs(u64::try_from(secs).unwrap_or(0))
            });
            ctx.admin.drain(&target, left).await?;
        }
        (None, Some(Reported::Draining | Reported::Drained)) if !leaving => {
            ctx.admin.undrain(&target).await?;
        }
        _ => {}
    }
    Ok(())
}

/// `host:port` with the host as an IP: ICE candidates carry addresses, not names.
async fn resolve(media: &str) -> Result<String, Error> {
    if media.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(media.to_string());
    }
    let mut found = tokio::net::lookup_host(media)
        .await
        .map_err(|e| Error::Waiting(format!("cannot resolve the media address {media}: {e}")))?;
    found
        .next()
        .map(|a| a.to_string())
        .ok_or_else(|| Error::Waiting(format!("the media address {media} resolves to nothing")))
}

fn pod_state_running(state: PodState) -> bool {
    matches!(state, PodState::Running { .. })
}

/// Why a node failed, in words.
fn failure_reason<A: NodeAdmin>(
    pod: PodState,
    polls: Polls,
    ctx: &Context<A>,
    key: &NodeKey,
) -> String {
    let last_error = ctx
        .live()
        .node(key)
        .and_then(|l| l.last_error.clone())
        .map(|e| format!(": {e}"))
        .unwrap_or_default();
    match (pod, polls.last_ok) {
        (PodState::Gone, _) => "its pod exited".into(),
        (PodState::Absent | PodState::Pending, _) => "its pod disappeared".into(),
        (PodState::Running { .. }, None) => format!(
            "its admin API never answered within {:?}{last_error}",
            ctx.settings.health.startup_timeout
        ),
        (PodState::Running { .. }, Some(_)) => format!(
            "its admin API has not answered for {:?} ({} polls missed){last_error}",
            ctx.settings.health.failure_timeout, polls.missed
        ),
    }
}

fn ready_condition(
    ready: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
) -> Condition {
    new_condition(READY, ready, reason, message, generation)
}

/// The media port seen from outside, with the Service it comes from (if any).
struct External {
    port: ExternalPort,
    /// The signaling port seen from outside, when it differs from the pod's.
    signaling: u16,
    /// A load balancer's address.
    balancer: Option<String>,
}

/// Applies the node's Service (NodePort and LoadBalancer modes) and reads its ports; in
/// HostPort mode, the port comes from the node's index in the fleet.
async fn external_port<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    node: &MediaNode,
) -> Result<External, Error> {
    let exposure = &fleet.spec.exposure;
    if exposure.mode == ExposureMode::HostPort {
        let index = index_of(node).ok_or_else(|| {
            Error::Invalid(format!(
                "MediaNode {} has no numeric {INDEX} label for its host port",
                node.name_any()
            ))
        })?;
        let port = host_port(fleet, index).map_err(|e| Error::Invalid(e.to_string()))?;
        return Ok(External {
            port: ExternalPort::Host(port),
            signaling: port,
            balancer: None,
        });
    }
    let namespace = node.namespace().unwrap_or_default();
    let build = |media_node_port| {
        service(fleet, node, media_node_port)
            .map_err(|e| Error::Invalid(e.to_string()))?
            .ok_or_else(|| Error::Invalid("a Service exposure built no Service".into()))
    };
    let cached = ctx
        .services
        .get(&ObjectRef::new(&labels::service_name(&node.name_any())).within(&namespace));
    // The TCP media port asks for the node port the UDP one holds, once there is one.
    let svc = build(cached.as_deref().and_then(|c| node_port_of(c, "media")))?;
    // Applied only when missing or different: most reconciles of a node cost no request.
    let mut applied = match cached.filter(|cached| up_to_date(cached, &svc)) {
        Some(cached) => (*cached).clone(),
        None => apply_service(ctx, &namespace, &svc).await?,
    };
    // Just created: the API server chose each port's number; the TCP one now takes the UDP's.
    let media_udp = node_port_of(&applied, "media");
    if media_udp.is_some() && media_udp != node_port_of(&applied, "media-tcp") {
        applied = apply_service(ctx, &namespace, &build(media_udp)?).await?;
    }
    let node_port = |name: &str| node_port_of(&applied, name);
    let (Some(media), Some(signaling)) = (node_port("media"), node_port("signaling")) else {
        return Err(Error::Waiting(format!(
            "Service {} has no node ports yet",
            svc.name_any()
        )));
    };
    let balancer = applied
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .and_then(|i| i.first())
        .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
    if exposure.mode == ExposureMode::LoadBalancer
        && let Some(host) = balancer
    {
        // The balancer listens on the Service's ports, not the node ports. A hostname (some
        // clouds give one) is resolved when the address is pushed to the node.
        let port = match host.parse::<IpAddr>() {
            Ok(ip) => ExternalPort::Balancer(std::net::SocketAddr::new(ip, exposure.media_port)),
            Err(_) => ExternalPort::Node(exposure.media_port),
        };
        return Ok(External {
            port,
            signaling: u16::try_from(SIGNALING_PORT).unwrap_or(7880),
            balancer: Some(host),
        });
    }
    Ok(External {
        port: ExternalPort::Node(media),
        signaling,
        balancer: None,
    })
}

/// The node port a Service's port `name` holds.
fn node_port_of(svc: &Service, name: &str) -> Option<u16> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .and_then(|ports| ports.iter().find(|p| p.name.as_deref() == Some(name)))
        .and_then(|p| p.node_port)
        .and_then(|p| u16::try_from(p).ok())
}

/// Server-side applies a node's Service; returns it as the API server holds it.
async fn apply_service<A: NodeAdmin>(
    ctx: &Context<A>,
    namespace: &str,
    svc: &Service,
) -> Result<Service, Error> {
    Ok(Api::<Service>::namespaced(ctx.client.clone(), namespace)
        .patch(
            &svc.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(svc),
        )
        .await?)
}

async fn create_pod<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    node: &MediaNode,
    external: ExternalPort,
) -> Result<(), Error> {
    let built = pod(fleet, node, external).map_err(|e| Error::Invalid(e.to_string()))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &node.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &built).await {
        Ok(_) => {
            publish(
                ctx,
                node,
                EventType::Normal,
                "PodCreated",
                &format!(
                    "created pod {} in zone {}",
                    built.name_any(),
                    node.spec.zone
                ),
            )
            .await;
            Ok(())
        }
        // Created by an earlier reconcile the cache has not shown yet.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Whether `node` is the pod's controlling owner (by uid: a name can be reused).
fn owned_by(pod: &Pod, node: &MediaNode) -> bool {
    let uid = node.meta().uid.as_deref();
    pod.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.kind == "MediaNode" && Some(o.uid.as_str()) == uid)
}

/// Deletes a pod; one already gone is fine.
pub async fn delete_pod<A: NodeAdmin>(ctx: &Context<A>, ns: &str, name: &str) -> Result<(), Error> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The node's addresses once its pod runs: admin on the pod IP; media and signaling where
/// clients reach them (host or node port on the Kubernetes node's address, or the balancer).
/// Read from what the watches hold: nothing to ask the API server.
fn addresses<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &MediaFleet,
    pod: &Pod,
    external: &External,
    known: Option<&NodeAddresses>,
    current: &MediaNodeStatus,
) -> Option<NodeAddresses> {
    let status = pod.status.as_ref();
    let pod_ip = status.and_then(|s| s.pod_ip.clone())?;
    let admin = format!("http://{}:{ADMIN_PORT}", bracket(&pod_ip));
    let host = match (&external.port, &external.balancer) {
        (ExternalPort::Balancer(addr), _) => Some(addr.ip().to_string()),
        (_, Some(balancer)) => Some(balancer.clone()),
        _ => {
            // The Kubernetes node's address does not change under a running pod: look it up
            // once per pod.
            let same_pod = current.pod.as_deref() == Some(&pod.name_any());
            match known.and_then(|k| k.media.as_ref()).filter(|_| same_pod) {
                Some(media) => media.rsplit_once(':').map(|(h, _)| h.to_string()),
                None => node_address(ctx, fleet, pod),
            }
        }
    };
    let Some(host) = host else {
        return Some(NodeAddresses {
            signaling: None,
            media: None,
            admin: Some(admin),
        });
    };
    let media_port = match external.port {
        ExternalPort::Host(p) | ExternalPort::Node(p) => p,
        ExternalPort::Balancer(addr) => addr.port(),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Some(NodeAddresses {
        signaling: Some(format!("ws://{}:{}/ws", bracket(&host), external.signaling)),
        media: Some(format!("{}:{media_port}", bracket(&host))),
        admin: Some(admin),
    })
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// The address of the Kubernetes node a pod runs on, of the type the fleet asks for (an
/// ExternalIP falls back to the InternalIP); the pod's `hostIP` when the node is unknown. The
/// node is read from the watch of nodes, never asked for: the operator needs no `get` on them.
fn node_address<A: NodeAdmin>(ctx: &Context<A>, fleet: &MediaFleet, pod: &Pod) -> Option<String> {
    let host_ip = pod.status.as_ref().and_then(|s| s.host_ip.clone());
    let Some(node_name) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return host_ip;
    };
    let Some(k8s_node) = ctx.hosts.get(&ObjectRef::new(&node_name)) else {
        return host_ip;
    };
    let addrs = k8s_node
        .status
        .as_ref()
        .and_then(|s| s.addresses.clone())
        .unwrap_or_default();
    let find = |t: &str| {
        addrs
            .iter()
            .find(|a| a.type_ == t)
            .map(|a| a.address.clone())
    };
    let found = match fleet.spec.exposure.address_type {
        NodeAddressType::ExternalIP => find("ExternalIP").or_else(|| find("InternalIP")),
        NodeAddressType::InternalIP => find("InternalIP"),
    };
    found.or(host_ip)
}

/// Writes the status when it differs from the node's in anything; returns whether it wrote.
async fn write_status<A: NodeAdmin>(
    node: &MediaNode,
    ctx: &Context<A>,
    mut status: MediaNodeStatus,
) -> Result<bool, Error> {
    if node.status.as_ref() == Some(&status) {
        return Ok(false);
    }
    status.last_heartbeat = Some(Time(Timestamp::now()));
    super::apply_status(&ctx.client, node, &status).await?;
    Ok(true)
}

async fn publish<A: NodeAdmin>(
    ctx: &Context<A>,
    node: &MediaNode,
    type_: EventType,
    reason: &str,
    text: &str,
) {
    let happened = Happened {
        type_,
        action: "Reconcile",
        reason,
        note: text,
    };
    ctx.events
        .publish(&node.object_ref(&()), &happened, None)
        .await;
}

/// What to do when a reconcile fails: retry after the node's own backoff.
#[allow(clippy::needless_pass_by_value)] // the signature `Controller::run` asks for
pub fn error_policy<A: NodeAdmin>(
    node: Arc<MediaNode>,
    error: &Error,
    ctx: Arc<Context<A>>,
) -> Action {
    super::retry_after("node", node.as_ref(), error, &ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: NodePhase, participants: u32) -> MediaNodeStatus {
        MediaNodeStatus {
            phase,
            load: NodeLoad {
                participants,
                ..NodeLoad::default()
            },
            ..MediaNodeStatus::default()
        }
    }

    #[test]
    fn load_alone_is_written_at_most_every_interval() {
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        let a = status(NodePhase::Ready, 3);
        assert_eq!(write_due(&a, &a, None, t0, minute), WriteDue::No);
        let mut bitrate = a.clone();
        bitrate.load.bitrate_in_bps = 1_000_000;
        assert_eq!(write_due(&a, &bitrate, None, t0, minute), WriteDue::No);
        let b = status(NodePhase::Ready, 4);
        assert_eq!(write_due(&a, &b, None, t0, minute), WriteDue::Load);
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            write_due(&a, &b, Some(t0), later, minute),
            WriteDue::Later(Duration::from_secs(40))
        );
        assert_eq!(
            write_due(&a, &b, Some(t0), t0 + minute, minute),
            WriteDue::Load
        );
        let draining = status(NodePhase::Draining, 4);
        assert_eq!(
            write_due(&a, &draining, Some(t0), later, minute),
            WriteDue::Now,
            "a phase change is written at once"
        );
    }
}
