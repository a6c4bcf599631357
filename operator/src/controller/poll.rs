//! Polling the media nodes' admin API on a short period. Answers go to the in-memory live view
//! ([`crate::state::live`]); only a meaningful change (phase, load, a room's participants, a
//! node falling silent) triggers a reconcile of the node or the room, which may then write a
//! status.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::channel::mpsc::UnboundedSender;
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use ruche_crds::{MediaNode, NodePhase, Room};

use super::admin::{AdminError, AdminTarget, NodeAdmin};
use super::context::Context;
use super::node::node_key;
use crate::state::live::reported;

/// How many nodes are polled at once.
const CONCURRENCY: usize = 64;

/// Where the poller sends the objects to reconcile.
#[derive(Clone)]
pub struct Triggers {
    /// Media nodes.
    pub nodes: UnboundedSender<ObjectRef<MediaNode>>,
    /// Rooms.
    pub rooms: UnboundedSender<ObjectRef<Room>>,
}

/// Polls every node with an admin address, forever, every `poll_interval`.
pub async fn run<A: NodeAdmin>(ctx: Arc<Context<A>>, triggers: Triggers) {
    let mut tick = tokio::time::interval(ctx.settings.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        poll_once(&ctx, &triggers).await;
    }
}

/// One round of polls.
pub async fn poll_once<A: NodeAdmin>(ctx: &Arc<Context<A>>, triggers: &Triggers) {
    let nodes: Vec<Arc<MediaNode>> = ctx
        .nodes
        .state()
        .into_iter()
        .filter(|n| {
            n.status.as_ref().is_some_and(|s| {
                s.addresses
                    .as_ref()
                    .and_then(|a| a.admin.as_ref())
                    .is_some()
                    && s.phase != NodePhase::Failed
            })
        })
        .collect();
    futures::stream::iter(nodes)
        .for_each_concurrent(CONCURRENCY, |node| async move {
            poll_node(ctx, triggers, &node).await;
        })
        .await;
}

async fn poll_node<A: NodeAdmin>(ctx: &Context<A>, triggers: &Triggers, node: &MediaNode) {
    let ns = node.namespace().unwrap_or_default();
    let key = node_key(node);
    let Some(url) = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.admin.clone())
    else {
        return;
    };
    let Some(fleet) = ctx
        .fleets
        .get(&ObjectRef::new(&node.spec.fleet).within(&ns))
    else {
        return;
    };
    let token = match ctx.admin_token(&fleet).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(node = %key, error = %e, "no admin token to poll with");
            return;
        }
    };
    let target = AdminTarget { url, token };
    let now = Instant::now();
    let answer = ctx.admin.report(&target).await.and_then(|report| {
        reported(&report.status.phase)
            .map(|phase| (report.clone(), phase))
            .ok_or_else(|| AdminError::Malformed {
                url: target.url.clone(),
                message: format!("unknown phase {:?}", report.status.phase),
            })
    });
    let node_ref = ObjectRef::from_obj(node);
    match answer {
        Ok((report, phase)) => {
            ctx.metrics.polled(true);
            let change = ctx.live().answered(&key, &ns, report, phase, now);
            if change.node {
                let _ = triggers.nodes.unbounded_send(node_ref);
            }
            for room in change.rooms {
                let name = room.0.rsplit('/').next().unwrap_or_default().to_string();
                let _ = triggers
                    .rooms
                    .unbounded_send(ObjectRef::new(&name).within(&ns));
            }
        }
        Err(e) => {
            ctx.metrics.polled(false);
            let silent_too_long = {
                let mut live = ctx.live();
                live.failed(&key, e.to_string());
                live.node(&key)
                    .and_then(|l| l.polls.last_ok)
                    .is_some_and(|(at, _)| {
                        now.saturating_duration_since(at) > ctx.settings.health.failure_timeout
                    })
            };
            tracing::debug!(node = %key, error = %e, "poll failed");
            // The node controller turns this into Failed; until then, nothing to write.
            if silent_too_long {
                let _ = triggers.nodes.unbounded_send(node_ref);
            }
        }
    }
}
