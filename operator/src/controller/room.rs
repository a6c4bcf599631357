//! The room controller: a new room is placed by the core, its node takes it (its agent pushes
//! the node's new assignment list and the node confirms), then the room's status gets node,
//! zone, endpoint and phase in one write, with an event. A room no node can take gets a
//! `Scheduled=False` condition saying why, and waits: the registry wakes it when capacity
//! appears in its fleet.
//!
//! The order matters: the node learns of the room before the status makes its endpoint
//! visible, so a participant never reaches a node that would refuse the room.
//!
//! A deleted room needs no finalizer: the registry sees the deletion in the watch, frees its
//! slots at once, and the node's next list no longer has it, which ends it there. A restarted
//! operator rebuilds every node's list from the rooms that exist, so a room deleted while no
//! operator ran ends too.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use ruche_crds::common::new_condition;
use ruche_crds::{ConditionsExt, Room, RoomPhase, RoomStatus};

use super::Error;
use super::admin::{AdminTarget, NodeAdmin};
use super::context::Context;
use super::events::{EventType, Happened};
use crate::core::autoscaling::{BookingState, classify};
use crate::core::room_lifecycle::{self, RoomView};
use crate::state::keys::{FleetKey, room_key};
use crate::state::placements::Decision;
use crate::state::registry::RegistryError;

/// The finalizer earlier versions put on rooms; removed from a room being deleted.
pub const LEGACY_FINALIZER: &str = "ruche.dev/room";
/// The condition saying whether (and why not) a room is placed.
pub const SCHEDULED: &str = "Scheduled";
/// The condition saying how a room's move off a draining node went: moving, moved, or
/// blocked (with why: it then stays where it is).
pub const MIGRATION: &str = "Migration";
/// The condition saying where a booked room's booking stands: held from its lead time
/// (`Booked`), too far ahead (`BeyondHorizon`), or already past at creation (`StartTimeInPast`).
pub const BOOKING: &str = "Booking";
/// How soon a waiting room is looked at again when nothing wakes it first (capacity that
/// appears wakes it at once).
pub const RETRY_UNSCHEDULABLE: Duration = Duration::from_secs(60);
/// How often a placed room is looked at again when nothing changes.
pub const RESYNC: Duration = Duration::from_secs(300);
/// The shortest time between two status writes for a participant count alone.
pub const PARTICIPANTS_INTERVAL: Duration = Duration::from_secs(30);

/// Reconciles one room.
pub async fn reconcile<A: NodeAdmin>(
    room: Arc<Room>,
    ctx: Arc<Context<A>>,
) -> Result<Action, Error> {
    if room.meta().deletion_timestamp.is_some() {
        return release_legacy_finalizer(&room, &ctx).await;
    }
    apply(&room, &ctx).await
}

/// What to do when a reconcile fails: retry after the room's own backoff.
#[allow(clippy::needless_pass_by_value)] // the signature `Controller::run` asks for
pub fn error_policy<A: NodeAdmin>(room: Arc<Room>, error: &Error, ctx: Arc<Context<A>>) -> Action {
    super::retry_after("room", room.as_ref(), error, &ctx)
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

/// A booked room (`spec.startTime`) not placed yet: says where its booking stands in its
/// `Booking` condition (carried by the status written next), and holds it back, `Pending`,
/// until its slots are to be held. Returns when to look at it again if it waits.
async fn booking<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    current: &mut RoomStatus,
) -> Result<Option<Action>, Error> {
    if room.spec.start_time.is_none() || current.node.is_some() {
        return Ok(None);
    }
    let Some(fleet) = ctx.registry().fleet(&FleetKey::of_room(room)) else {
        return Ok(None);
    };
    let spec = &fleet.spec.bookings;
    let lead = Duration::from(spec.lead_time);
    let state = classify(
        room.spec.start_time.as_ref().map(|t| t.0),
        room.meta().creation_timestamp.as_ref().map(|t| t.0),
        Timestamp::now(),
        lead,
        spec.horizon.into(),
    );
    let generation = room.meta().generation;
    let slots = room.spec.slots;
    let (holds, reason, message) = match state {
        BookingState::Unbooked => return Ok(None),
        BookingState::Due { start } | BookingState::Upcoming { start, .. } => {
            let hold_from = start
                .checked_sub(jiff::SignedDuration::try_from(lead).unwrap_or_default())
                .unwrap_or(start);
            (
                true,
                "Booked",
                format!(
                    "starts at {}; its {slots} slots are held from {} (the fleet's lead time {})",
                    second(start),
                    second(hold_from),
                    human(lead)
                ),
            )
        }
        BookingState::BeyondHorizon { start, plan_from } => (
            false,
            "BeyondHorizon",
            format!(
                "starts at {}, further ahead than the fleet's booking horizon ({}): it waits, and is planned from {}",
                second(start),
                human(spec.horizon.into()),
                second(plan_from)
            ),
        ),
        BookingState::InPast { start, created } => (
            false,
            "StartTimeInPast",
            format!(
                "startTime {} was already past when the room was created at {}: placed at once, like a room without a booking",
                second(start),
                second(created)
            ),
        ),
    };
    let c = new_condition(BOOKING, holds, reason, message.clone(), generation);
    let said = current
        .conditions
        .condition(BOOKING)
        .is_some_and(|old| old.reason == c.reason && old.message == c.message);
    current.conditions.set_condition(c);
    if !holds && !said {
        publish(ctx, room, EventType::Warning, reason, &message).await;
    }
    let wait = match state {
        BookingState::Upcoming { hold_from, .. } => hold_from,
        BookingState::BeyondHorizon { plan_from, .. } => plan_from,
        _ => return Ok(None),
    };
    let until = Duration::try_from(wait.duration_since(Timestamp::now())).unwrap_or_default();
    let waiting = condition(false, reason, message, generation);
    write_pending(room, ctx, current, waiting).await?;
    // A room booked far ahead is looked at again at least daily (its fleet's settings may
    // change meanwhile).
    Ok(Some(Action::requeue(until.clamp(
        Duration::from_secs(1),
        Duration::from_secs(86_400),
    ))))
}

/// A time to the second, as people read it in a condition.
fn second(t: Timestamp) -> Timestamp {
    t.round(jiff::Unit::Second).unwrap_or(t)
}

/// A duration as `5m` or `1440h`.
fn human(d: Duration) -> String {
    jiff::SignedDuration::try_from(d).map_or_else(|_| format!("{d:?}"), |d| format!("{d:#}"))
}

/// A room being deleted that still carries the finalizer of an earlier version: it is removed,
/// so the deletion completes (the slots were freed when the deletion was seen).
async fn release_legacy_finalizer<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
) -> Result<Action, Error> {
    let finalizers = room.finalizers();
    if !finalizers.iter().any(|f| f == LEGACY_FINALIZER) {
        return Ok(Action::await_change());
    }
    let kept: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != LEGACY_FINALIZER)
        .collect();
    let api: Api<Room> = Api::namespaced(ctx.client.clone(), &room.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "metadata": { "finalizers": kept, "resourceVersion": room.resource_version() }
    });
    api.patch(
        &room.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

/// Places the room (or confirms where it is) and writes its status.
pub async fn apply<A: NodeAdmin>(room: &Room, ctx: &Context<A>) -> Result<Action, Error> {
    let mut current = room.status.clone().unwrap_or_default();
    if current.phase == RoomPhase::Closed {
        return Ok(Action::await_change());
    }
    if let Some(wait) = booking(room, ctx, &mut current).await? {
        return Ok(wait);
    }
    let generation = room.meta().generation;
    let decided = ctx.registry().decide(room);
    let decision = match decided {
        Ok((decision, effects)) => {
            ctx.dispatch(effects);
            decision
        }
        Err(RegistryError::NoFleet(fleet)) => {
            let message = format!(
                "no MediaFleet {} in namespace {}",
                fleet.name, fleet.namespace
            );
            let c = condition(false, "FleetNotFound", message, generation);
            write_pending(room, ctx, &current, c).await?;
            // The registry wakes the room when its fleet appears.
            return Ok(Action::await_change());
        }
        Err(e @ RegistryError::Rules(..)) => {
            let c = condition(false, "InvalidFleet", e.to_string(), generation);
            write_pending(room, ctx, &current, c).await?;
            return Ok(Action::await_change());
        }
    };
    match decision {
        Decision::Placed { node, zone, fresh } => {
            placed(room, ctx, &current, &node, &zone, fresh).await
        }
        Decision::Unschedulable(why) => {
            let c = condition(false, why.reason(), why.to_string(), generation);
            let changed = current
                .conditions
                .condition(SCHEDULED)
                .is_none_or(|old| old.reason != c.reason || old.message != c.message);
            write_pending(room, ctx, &current, c.clone()).await?;
            if changed {
                let fleet = FleetKey::of_room(room).to_string();
                ctx.metrics.refused(&fleet, &c.reason);
                publish(ctx, room, EventType::Warning, "Unschedulable", &c.message).await;
            }
            Ok(Action::requeue(RETRY_UNSCHEDULABLE))
        }
        Decision::BadZones(e) => {
            let c = condition(false, "UnknownZone", e.to_string(), generation);
            write_pending(room, ctx, &current, c).await?;
            Ok(Action::await_change())
        }
    }
}

async fn placed<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    current: &RoomStatus,
    node: &str,
    zone: &str,
    fresh: bool,
) -> Result<Action, Error> {
    let key = room_key(room);
    let fleet = FleetKey::of_room(room);
    let node_key = fleet.node(node);
    let (endpoint, version) = {
        let registry = ctx.registry();
        let endpoint = registry
            .node(&node_key)
            .and_then(|n| n.status.clone())
            .and_then(|s| s.addresses)
            .and_then(|a| a.signaling);
        (endpoint, registry.list_version(&node_key))
    };
    let release = |ctx: &Context<A>| {
        if fresh {
            let effects = ctx.registry().release(&fleet, &key);
            ctx.dispatch(effects);
        }
    };
    let Some(endpoint) = endpoint else {
        // Placement only picks Ready nodes, which have their addresses; a view this stale is
        // a reason to try again, not to publish a room nobody can reach.
        release(ctx);
        return Err(Error::Waiting(format!(
            "MediaNode {node_key} has no signaling address yet"
        )));
    };
    let moved_from = current.node.as_deref().filter(|old| *old != node);
    // A live migration (not a failover): the node it leaves still has its participants.
    let migration = ctx.registry().leaving_from(&fleet, &key);
    if let (Some(old), Some((leaving, _))) = (moved_from, &migration)
        && old == leaving
        && current.phase != RoomPhase::Migrating
    {
        migrating(room, ctx, current, old, node, zone).await?;
    }
    if (fresh || current.node.as_deref() != Some(node))
        && let Some(version) = version
        && let Err(e) = ctx
            .agents
            .confirmed(&node_key, version, ctx.settings.assign_timeout)
            .await
    {
        release(ctx);
        return Err(e);
    }
    let mut status = current.clone();
    status.observed_generation = room.meta().generation;
    status.node = Some(node.to_string());
    status.zone = Some(zone.to_string());
    status.endpoint = Some(endpoint.clone());
    let leaving = migration.as_ref().map(|(old, _)| old.as_str());
    migration_condition(room, ctx, &fleet, &key, leaving, &mut status).await;
    if fresh || status.scheduled_at.is_none() || moved_from.is_some() {
        status.scheduled_at = Some(now());
    }
    if moved_from.is_some() {
        // Its clients reconnect at the new endpoint: count the room as empty from now on.
        ctx.live().forget_room(&key);
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
        return close(room, ctx, status).await;
    }
    status.conditions.set_condition(condition(
        true,
        "Placed",
        format!("on media node {node} in zone {zone}"),
        room.meta().generation,
    ));
    // A participant count alone is written at most every PARTICIPANTS_INTERVAL.
    let count_only = room.status.as_ref().is_some_and(|old| {
        let mut same = old.clone();
        same.participants = status.participants;
        same == status
    });
    if count_only
        && !fresh
        && let Some(wait) = ctx
            .live()
            .participants_write_wait(&key, PARTICIPANTS_INTERVAL)
    {
        return Ok(Action::requeue(wait));
    }
    if let Err(e) = write_status(room, ctx, &status).await {
        release(ctx);
        return Err(e);
    }
    if count_only {
        ctx.live().participants_written(&key, Instant::now());
    }
    if let Some((old, false)) = &migration {
        // The new node holds the room and its endpoint is published: only now are the
        // participants told to go there.
        let told = tell_to_move(ctx, &fleet, &key, old, &endpoint).await?;
        publish(
            ctx,
            room,
            EventType::Normal,
            "Migrated",
            &format!(
                "moved live from media node {old} to {node} in zone {zone}: {told} participant(s) told to reconnect"
            ),
        )
        .await;
    }
    let moved_from = moved_from.filter(|_| migration.is_none());
    announce(room, ctx, fresh, moved_from, node, zone).await;
    // An empty room is looked at again when its timeout runs out.
    Ok(Action::requeue(match view.empty_for {
        Some(empty) => empty_timeout
            .saturating_sub(empty)
            .clamp(Duration::from_secs(1), RESYNC),
        None => RESYNC,
    }))
}

/// The event of a placement: a new room placed, or a room moved off a failed node.
async fn announce<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    fresh: bool,
    moved_from: Option<&str>,
    node: &str,
    zone: &str,
) {
    if fresh {
        if let Some(created) = room.meta().creation_timestamp.as_ref() {
            let waited = Timestamp::now().duration_since(created.0);
            ctx.metrics
                .scheduled(Duration::try_from(waited).unwrap_or_default());
        }
        let text = format!("placed on media node {node} in zone {zone}");
        publish(ctx, room, EventType::Normal, "Scheduled", &text).await;
    } else if let Some(old) = moved_from {
        let text = format!(
            "moved from media node {old} to {node} in zone {zone}: clients rejoin at the new endpoint"
        );
        publish(ctx, room, EventType::Warning, "Moved", &text).await;
    }
}

/// Says the room is moving (phase Migrating, still on its old node), with an event.
async fn migrating<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    current: &RoomStatus,
    old: &str,
    node: &str,
    zone: &str,
) -> Result<(), Error> {
    let mut status = current.clone();
    status.phase = RoomPhase::Migrating;
    let message = format!("moving live from media node {old} to {node} in zone {zone}");
    status.conditions.set_condition(new_condition(
        MIGRATION,
        true,
        "Migrating",
        message.clone(),
        room.meta().generation,
    ));
    write_status(room, ctx, &status).await?;
    publish(ctx, room, EventType::Normal, "Migrating", &message).await;
    Ok(())
}

/// Tells the participants of a moved room, on the node it left, to reconnect at its new
/// endpoint; returns how many were told. Once told, the old node keeps their sessions until
/// they have left (see [`crate::state::placements`]).
async fn tell_to_move<A: NodeAdmin>(
    ctx: &Context<A>,
    fleet: &FleetKey,
    key: &crate::core::RoomKey,
    old: &str,
    endpoint: &str,
) -> Result<u32, Error> {
    let url = ctx
        .registry()
        .node(&fleet.node(old))
        .and_then(|n| n.status.clone())
        .and_then(|s| s.addresses)
        .and_then(|a| a.admin);
    let Some(url) = url else {
        // The old node has no admin address any more (gone): nobody is left to tell.
        ctx.registry().told(fleet, key);
        return Ok(0);
    };
    let target = AdminTarget {
        url,
        token: ctx.admin_token(fleet).await?,
    };
    let told = ctx
        .admin
        .migrate(&target, crate::state::keys::room_name(key), endpoint)
        .await?;
    ctx.registry().told(fleet, key);
    Ok(told)
}

/// Sets the room's `Migration` condition: moved live off `leaving`, or, from what the last
/// migration of its node said, blocked (a room with nowhere to go stays where it is and says
/// why, with an event when the reason changes), or cleared once its node no longer drains.
async fn migration_condition<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    fleet: &FleetKey,
    key: &crate::core::RoomKey,
    leaving: Option<&str>,
    status: &mut RoomStatus,
) {
    let node = status.node.clone().unwrap_or_default();
    if let Some(old) = leaving {
        let zone = status.zone.clone().unwrap_or_default();
        status.conditions.set_condition(new_condition(
            MIGRATION,
            true,
            "Migrated",
            format!("moved live from media node {old} to {node} in zone {zone}"),
            room.meta().generation,
        ));
        return;
    }
    let stranded = ctx.registry().stranded(fleet, key);
    let Some(why) = stranded else {
        if status
            .conditions
            .condition(MIGRATION)
            .is_some_and(|c| c.status == "False")
        {
            status.conditions.retain(|c| c.type_ != MIGRATION);
        }
        return;
    };
    let c = new_condition(
        MIGRATION,
        false,
        why.reason(),
        format!("cannot move off draining media node {node}, stays there: {why}"),
        room.meta().generation,
    );
    let changed = status
        .conditions
        .condition(MIGRATION)
        .is_none_or(|old| old.reason != c.reason || old.message != c.message);
    status.conditions.set_condition(c.clone());
    if changed {
        publish(
            ctx,
            room,
            EventType::Warning,
            "MigrationBlocked",
            &c.message,
        )
        .await;
    }
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

/// Closes an empty room whose timeout ran out: its slots are freed and its node's next list
/// no longer has it (which ends it there); its status says Closed.
async fn close<A: NodeAdmin>(
    room: &Room,
    ctx: &Context<A>,
    mut status: RoomStatus,
) -> Result<Action, Error> {
    let key = room_key(room);
    let effects = ctx.registry().release(&FleetKey::of_room(room), &key);
    ctx.dispatch(effects);
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
    super::replace_status(&ctx.client, room, status).await
}

async fn publish<A: NodeAdmin>(
    ctx: &Context<A>,
    room: &Room,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let happened = Happened {
        type_,
        action: "Place",
        reason,
        note,
    };
    ctx.events
        .publish(&room.object_ref(&()), &happened, None)
        .await;
}
