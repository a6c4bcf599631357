//! The room controller: a new room is placed by the core, its node is told it may host it,
//! then its status gets node, zone, endpoint and phase in one write, with an event. A room no
//! node can take gets a `Scheduled=False` condition saying why, and is retried. Deleting a room
//! closes it on its node (finalizer).
//!
//! The order matters: the node learns of the room before the status makes its endpoint visible,
//! so a participant never reaches a node that would refuse the room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use ruche_crds::common::new_condition;
use ruche_crds::{ConditionsExt, MediaFleet, Room, RoomPhase, RoomStatus};

use super::Error;
use super::admin::{AdminTarget, NodeAdmin};
use super::context::Context;
use crate::core::room_lifecycle::{self, RoomView};
use crate::state::placements::Decision;
use crate::state::world::room_key;

/// The finalizer that closes a deleted room on its node.
pub const FINALIZER: &str = "ruche.dev/room";
/// The condition saying whether (and why not) a room is placed.
pub const SCHEDULED: &str = "Scheduled";
/// How soon an unschedulable room is tried again (capacity may appear meanwhile).
pub const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(10);
/// How often a placed room is looked at again when nothing changes.
pub const RESYNC: Duration = Duration::from_secs(300);

/// Reconciles one room.
pub async fn reconcile<A: NodeAdmin>(
    room: Arc<Room>,
    ctx: Arc<Context<A>>,
) -> Result<Action, Error> {
    let ns = room
        .namespace()
        .ok_or_else(|| Error::Invalid(format!("Room {} has no namespace", room.name_any())))?;
    let api: Api<Room> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, room, |event| async {
        match event {
            finalizer::Event::Apply(room) => apply(&room, &ctx).await,
            finalizer::Event::Cleanup(room) => cleanup(&room, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// What to do when a reconcile fails: retry soon.
#[allow(clippy::needless_pass_by_value)] // the signature `Controller::run` asks for
pub fn error_policy<A: NodeAdmin>(_room: Arc<Room>, error: &Error, ctx: Arc<Context<A>>) -> Action {
    tracing::warn!(%error, "room reconcile failed");
    ctx.metrics.failed("room", error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

fn now() -> Time {
    Time(Timestamp::now())
}

fn condition(
    holds: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    new_condition(SCHEDULED, holds, reason, message, generation)
}

/// Places the room (or confirms where it is) and writes its status.
pub async fn apply<A: NodeAdmin>(room: &Room, ctx: &Context<A>) -> Result<Action, Error> {
    let ns = room.namespace().unwrap_or_default();
    let current = room.status.clone().unwrap_or_default();
    if current.phase == RoomPhase::Closed {
        return Ok(Action::await_change());
    }
    let Some(fleet) = ctx
        .fleets
        .get(&ObjectRef::new(&room.spec.fleet).within(&ns))
    else {
        let message = format!("no MediaFleet {} in namespace {ns}", room.spec.fleet);
        write_pending(
            room,
            ctx,
            &current,
            condition(false, "FleetNotFound", message, room.meta().generation),
        )
        .await?;
        return Ok(Action::requeue(RETRY_UNSCHEDULABLE));
    };
    let decision = {
        let nodes = ctx.nodes.state();
        let rooms = ctx.rooms.state();
        let mut placements = ctx.placements();
        let synced = placements
            .sync(
                &fleet,
                nodes.iter().map(AsRef::as_ref),
                rooms.iter().map(AsRef::as_ref),
            )
            .map_err(|e| Error::Invalid(e.to_string()))?;
        super::log_sync(&fleet, &synced);
        placements.decide(&fleet, room)
    };
    match decision {
        Decision::Placed { node, zone, fresh } => {
            placed(room, ctx, &fleet, &current, &node, &zone, fresh).await
        }
        Decision::Unschedulable(why) => {
            let c = condition(false, why.reason(), why.to_string(), room.meta().generation);
            let changed = current
                .conditions
                .condition(SCHEDULED)
                .is_none_or(|old| old.reason != c.reason || old.message != c.message);
            write_pending(room, ctx, &current, c.clone()).await?;
            if changed {
                publish(ctx, room, EventType::Warning, "Unschedulable", &c.message).await;
            }
            Ok(Action::requeue(RETRY_UNSCHEDULABLE))
        }
        Decision::BadZones(e) => {
            write_pending(
                room,
                ctx,
                &current,
                condition(false, "UnknownZone", e.to_string(), room.meta().generation),
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

async fn placed<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    fleet: &MediaFleet,
    current: &RoomStatus,
    node: &str,
    zone: &str,
    fresh: bool,
) -> Result<Action, Error> {
    let ns = room.namespace().unwrap_or_default();
    let key = room_key(room);
    let addresses = ctx
        .nodes
        .get(&ObjectRef::new(node).within(&ns))
        .and_then(|n| n.status.clone())
        .and_then(|s| s.addresses)
        .unwrap_or_default();
    let (Some(admin_url), Some(endpoint)) = (addresses.admin.clone(), addresses.signaling.clone())
    else {
        // Placement only picks Ready nodes, which have their addresses; a cache this stale is
        // a reason to try again, not to publish a room nobody can reach.
        ctx.placements().release(fleet, &key);
        return Err(Error::Invalid(format!(
            "MediaNode {node} has no admin or signaling address yet"
        )));
    };
    if fresh || current.node.as_deref() != Some(node) {
        let token = ctx.admin_token(fleet).await?;
        let rooms = ctx.placements().assignments(fleet, node);
        if let Err(e) = ctx
            .admin
            .assign(
                &AdminTarget {
                    url: admin_url.clone(),
                    token,
                },
                &rooms,
            )
            .await
        {
            ctx.placements().release(fleet, &key);
            return Err(e.into());
        }
    }
    let mut status = current.clone();
    status.observed_generation = room.meta().generation;
    status.node = Some(node.to_string());
    status.zone = Some(zone.to_string());
    status.endpoint = Some(endpoint);
    if fresh || status.scheduled_at.is_none() {
        status.scheduled_at = Some(now());
    }
    let moved_from = current.node.as_deref().filter(|old| *old != node);
    if moved_from.is_some() {
        // Its clients reconnect at the new endpoint: count the room as empty from now on.
        ctx.live().forget_room(&key);
        status.scheduled_at = Some(now());
    }
    let live = ctx.live().room(&key).unwrap_or_default();
    let view = RoomView {
        placed: true,
        migrating: false,
        participants: live.participants,
        empty_for: (live.participants == 0)
            .then(|| empty_for(live.last_occupied, status.scheduled_at.as_ref())),
    };
    status.participants = live.participants;
    status.phase = room_lifecycle::phase(view);
    let empty_timeout = Duration::from(room.spec.empty_timeout);
    if room_lifecycle::should_close(view, empty_timeout) {
        return close(room, ctx, fleet, node, &admin_url, status).await;
    }
    status.conditions.set_condition(condition(
        true,
        "Placed",
        format!("on media node {node} in zone {zone}"),
        room.meta().generation,
    ));
    if let Err(e) = write_status(room, ctx, &status).await {
        if fresh {
            ctx.placements().release(fleet, &key);
        }
        return Err(e);
    }
    if fresh {
        if let Some(created) = room.meta().creation_timestamp.as_ref() {
            let waited = Timestamp::now().duration_since(created.0);
            ctx.metrics
                .scheduled(Duration::try_from(waited).unwrap_or_default());
        }
        publish(
            ctx,
            room,
            EventType::Normal,
            "Scheduled",
            &format!("placed on media node {node} in zone {zone}"),
        )
        .await;
    } else if let Some(old) = moved_from {
        publish(
            ctx,
            room,
            EventType::Warning,
            "Moved",
            &format!("moved from media node {old} to {node} in zone {zone}: clients rejoin at the new endpoint"),
        )
        .await;
    }
    // An empty room is looked at again when its timeout runs out.
    Ok(Action::requeue(match view.empty_for {
        Some(empty) => empty_timeout
            .saturating_sub(empty)
            .clamp(Duration::from_secs(1), RESYNC),
        None => RESYNC,
    }))
}

/// How long a room has been empty: since the last poll that saw someone in it, or since its
/// placement if nobody ever came (the placement time survives an operator restart).
fn empty_for(last_occupied: Option<Instant>, scheduled_at: Option<&Time>) -> Duration {
    match last_occupied {
        Some(at) => at.elapsed(),
        None => scheduled_at
            .map(|t| Timestamp::now().duration_since(t.0))
            .and_then(|d| Duration::try_from(d).ok())
            .unwrap_or_default(),
    }
}

/// Closes an empty room whose timeout ran out: off its node's list, sessions ended, Closed.
async fn close<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    fleet: &MediaFleet,
    node: &str,
    admin_url: &str,
    mut status: RoomStatus,
) -> Result<Action, Error> {
    let key = room_key(room);
    let target = AdminTarget {
        url: admin_url.to_string(),
        token: ctx.admin_token(fleet).await?,
    };
    ctx.placements().release(fleet, &key);
    let rooms = ctx.placements().assignments(fleet, node);
    ctx.admin.assign(&target, &rooms).await?;
    ctx.admin.close_room(&target, &room.name_any()).await?;
    ctx.live().forget_room(&key);
    status.phase = RoomPhase::Closed;
    status.participants = 0;
    let message = format!("closed: nobody for {}", room.spec.empty_timeout.clone());
    status.conditions.set_condition(condition(
        false,
        "Closed",
        message.clone(),
        room.meta().generation,
    ));
    write_status(room, ctx, &status).await?;
    publish(ctx, room, EventType::Normal, "Closed", &message).await;
    Ok(Action::await_change())
}

async fn write_pending<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    current: &RoomStatus,
    c: Condition,
) -> Result<(), Error> {
    let mut status = current.clone();
    status.observed_generation = room.meta().generation;
    status.phase = RoomPhase::Pending;
    status.node = None;
    status.zone = None;
    status.endpoint = None;
    status.conditions.set_condition(c);
    write_status(room, ctx, &status).await
}

/// Writes the room's status with server-side apply, as the operator's field manager.
async fn write_status<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    status: &RoomStatus,
) -> Result<(), Error> {
    if room.status.as_ref() == Some(status) {
        return Ok(());
    }
    super::apply_status(&ctx.client, room, status).await?;
    Ok(())
}

async fn publish<A: NodeAdmin>(
    ctx: &Context<A>,
    room: &Room,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    super::publish(
        &ctx.recorder,
        &room.object_ref(&()),
        type_,
        ("Place", reason),
        note,
        None,
    )
    .await;
}

/// A deleted room: closed on its node and forgotten.
pub async fn cleanup<A: NodeAdmin>(room: &Room, ctx: &Context<A>) -> Result<Action, Error> {
    let ns = room.namespace().unwrap_or_default();
    let Some(fleet) = ctx
        .fleets
        .get(&ObjectRef::new(&room.spec.fleet).within(&ns))
    else {
        return Ok(Action::await_change());
    };
    let key = room_key(room);
    ctx.placements().release(&fleet, &key);
    let Some(node) = room.status.as_ref().and_then(|s| s.node.clone()) else {
        return Ok(Action::await_change());
    };
    let Some(admin_url) = ctx
        .nodes
        .get(&ObjectRef::new(&node).within(&ns))
        .and_then(|n| n.status.clone())
        .and_then(|s| s.addresses)
        .and_then(|a| a.admin)
    else {
        // The node is gone: nothing to close there.
        return Ok(Action::await_change());
    };
    let target = AdminTarget {
        url: admin_url,
        token: ctx.admin_token(&fleet).await?,
    };
    let rooms = ctx.placements().assignments(&fleet, &node);
    ctx.admin.assign(&target, &rooms).await?;
    ctx.admin.close_room(&target, &room.name_any()).await?;
    Ok(Action::await_change())
}
