//! One agent per media node: the single writer of the node's assignment list, and its poller.
//!
//! Each node with an admin address gets a task of its own. It polls the node's admin API on
//! its own period (spread so a thousand nodes are not polled at once, and a slow node delays
//! only itself), folding the answers into the live view; and it sends the node the list of
//! rooms the registry says it should hold, whenever that list's version is ahead of what the
//! node confirmed. Because only this task writes to the node, two pushes never race; because
//! every list is versioned and the node refuses an older one, a late retry cannot undo a newer
//! list; because the task pushes the latest list, not each change, a burst of placements on a
//! node costs one push. A node that lost its list (restarted) reports an older version in its
//! status, and gets the list again.
//!
//! A room's reconcile waits for its node to confirm a version that includes the room
//! ([`Agents::confirmed`]) before it publishes the room's endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kube::runtime::reflector::ObjectRef;
use ruche_crds::admin::{AssignmentList, ListVersion};
use ruche_crds::{MediaNode, NodePhase, Room};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::Error;
use super::admin::{AdminError, AdminTarget, NodeAdmin};
use super::context::Context;
use crate::core::RoomKey;
use crate::state::keys::{FleetKey, NodeKey, room_name};
use crate::state::live::reported;

/// Longest wait between two tries of a push a node did not take.
const MAX_PUSH_RETRY: Duration = Duration::from_secs(5);
/// First wait after a failed push.
const FIRST_PUSH_RETRY: Duration = Duration::from_millis(100);

struct Handle {
    url: String,
    wake: Arc<Notify>,
    acked: watch::Receiver<ListVersion>,
    task: tokio::task::AbortHandle,
}

/// The agents of every node, by node.
#[derive(Default)]
pub struct Agents {
    agents: Mutex<HashMap<NodeKey, Handle>>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for handle in self
            .agents
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            handle.task.abort();
        }
    }
}

/// The admin URL the operator reaches a node at, if it has one and has not failed.
fn admin_url(node: &MediaNode) -> Option<String> {
    let status = node.status.as_ref()?;
    if status.phase == NodePhase::Failed {
        return None;
    }
    status.addresses.as_ref()?.admin.clone()
}

impl Agents {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeKey, Handle>> {
        self.agents.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the agent of a node that has an admin address (again, if the address
    /// changed); stops the agent of a node that has none, or has failed.
    pub fn track<A: NodeAdmin>(&self, ctx: &Arc<Context<A>>, node: &MediaNode) {
        let key = NodeKey::of(node);
        let url = admin_url(node);
        let mut agents = self.lock();
        match (agents.get(&key), url) {
            (Some(h), Some(url)) if h.url == url => {}
            (_, Some(url)) => {
                if let Some(old) = agents.remove(&key) {
                    old.task.abort();
                }
                let wake = Arc::new(Notify::new());
                let (acked_tx, acked) = watch::channel(ListVersion::NONE);
                let task = tokio::spawn(run(
                    ctx.clone(),
                    key.clone(),
                    url.clone(),
                    wake.clone(),
                    acked_tx,
                ))
                .abort_handle();
                agents.insert(
                    key,
                    Handle {
                        url,
                        wake,
                        acked,
                        task,
                    },
                );
            }
            (Some(_), None) => {
                if let Some(old) = agents.remove(&key) {
                    old.task.abort();
                }
            }
            (None, None) => {}
        }
    }

    /// Stops a deleted node's agent.
    pub fn forget(&self, key: &NodeKey) {
        if let Some(old) = self.lock().remove(key) {
            old.task.abort();
        }
    }

    /// Stops the agents of nodes not in `keep` (after a re-list).
    pub fn retain(&self, keep: &std::collections::HashSet<NodeKey>) {
        self.lock().retain(|key, h| {
            let kept = keep.contains(key);
            if !kept {
                h.task.abort();
            }
            kept
        });
    }

    /// Tells a node's agent that its list changed.
    pub fn push(&self, key: &NodeKey) {
        if let Some(h) = self.lock().get(key) {
            h.wake.notify_one();
        }
    }

    /// Waits until the node confirmed a list of at least `version`.
    pub async fn confirmed(
        &self,
        key: &NodeKey,
        version: ListVersion,
        timeout: Duration,
    ) -> Result<(), Error> {
        let acked = {
            let agents = self.lock();
            let Some(h) = agents.get(key) else {
                return Err(Error::Waiting(format!(
                    "MediaNode {key} has no admin address yet: cannot give it its rooms"
                )));
            };
            h.wake.notify_one();
            h.acked.clone()
        };
        let mut acked = acked;
        match tokio::time::timeout(timeout, acked.wait_for(|v| *v >= version)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::Waiting(format!(
                "MediaNode {key}'s agent stopped before the node took its rooms"
            ))),
            Err(_) => Err(Error::Waiting(format!(
                "MediaNode {key} did not take assignment list {version} within {timeout:?}"
            ))),
        }
    }

    /// Nodes with an agent.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no node has an agent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Where a node's first poll falls within the period: spread by its name, so that nodes
/// started together are not polled together.
fn spread(key: &NodeKey, period: Duration) -> Duration {
    let hash = key
        .to_string()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let millis = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(hash % millis)
}

/// What one push attempt did.
enum Pushed {
    /// The node holds the latest list (or there is none to send).
    UpToDate,
    /// The node did not take it; try again later.
    Failed,
}

async fn run<A: NodeAdmin>(
    ctx: Arc<Context<A>>,
    key: NodeKey,
    url: String,
    wake: Arc<Notify>,
    acked: watch::Sender<ListVersion>,
) {
    let period = ctx.settings.poll_interval;
    let mut next_poll = Instant::now() + spread(&key, period);
    let mut retry_at: Option<Instant> = None;
    let mut retry_wait = FIRST_PUSH_RETRY;
    loop {
        // Boxed: an idle agent (most of them, most of the time) then holds only its loop.
        if Instant::now() >= next_poll {
            Box::pin(poll(&ctx, &key, &url, &acked)).await;
            next_poll = Instant::now() + period;
        }
        if retry_at.is_none_or(|at| Instant::now() >= at) {
            match Box::pin(push(&ctx, &key, &url, &acked)).await {
                Pushed::UpToDate => {
                    retry_at = None;
                    retry_wait = FIRST_PUSH_RETRY;
                }
                Pushed::Failed => {
                    retry_at = Some(Instant::now() + retry_wait);
                    retry_wait = (retry_wait * 2).min(MAX_PUSH_RETRY);
                }
            }
        }
        let until = retry_at.map_or(next_poll, |r| r.min(next_poll));
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep_until(until) => {}
        }
    }
}

/// The admin target of a node: its URL and its fleet's admin token.
async fn target<A: NodeAdmin>(
    ctx: &Context<A>,
    key: &NodeKey,
    url: &str,
) -> Result<AdminTarget, Error> {
    let fleet_name = ctx
        .registry()
        .node(key)
        .map(|n| n.spec.fleet.clone())
        .ok_or_else(|| Error::Waiting(format!("MediaNode {key} is not known yet")))?;
    let token = ctx
        .admin_token(&FleetKey::new(key.namespace.clone(), fleet_name))
        .await?;
    Ok(AdminTarget {
        url: url.to_string(),
        token,
    })
}

/// Sends the node its list if the node has not confirmed the latest version.
async fn push<A: NodeAdmin>(
    ctx: &Context<A>,
    key: &NodeKey,
    url: &str,
    acked: &watch::Sender<ListVersion>,
) -> Pushed {
    let Some((version, rooms)) = ctx.registry().list(key) else {
        return Pushed::UpToDate;
    };
    if version <= *acked.borrow() {
        return Pushed::UpToDate;
    }
    let target = match target(ctx, key, url).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(node = %key, error = %e, "cannot push the assignment list");
            return Pushed::Failed;
        }
    };
    let list = AssignmentList { version, rooms };
    match ctx.admin.assign(&target, &list).await {
        Ok(accepted) => {
            ctx.metrics.pushed("ok");
            acked.send_if_modified(|v| {
                let newer = accepted.version.max(version);
                (newer > *v).then(|| *v = newer).is_some()
            });
            if !accepted.ended.is_empty() {
                tracing::info!(node = %key, rooms = ?accepted.ended, "rooms ended on the node: no longer assigned to it");
            }
            Pushed::UpToDate
        }
        Err(AdminError::Stale { stale, .. }) => {
            ctx.metrics.pushed("stale");
            let epoch = ctx.registry().epoch();
            if stale.current.epoch() > epoch {
                // A newer leader wrote this node: this replica is about to lose its Lease.
                tracing::error!(node = %key, held = %stale.current, ours = %version, "the node holds a list from a newer leader");
                return Pushed::Failed;
            }
            // A list of ours from before this node object was re-created: go past it.
            let next = ctx.registry().advance(key, stale.current);
            tracing::info!(node = %key, held = %stale.current, next = %next, "the node holds a later list of this leader; sending past it");
            Pushed::Failed
        }
        Err(e) => {
            ctx.metrics.pushed("error");
            tracing::debug!(node = %key, error = %e, "assignment push failed");
            Pushed::Failed
        }
    }
}

/// Polls the node once and folds the answer into the live view.
async fn poll<A: NodeAdmin>(
    ctx: &Context<A>,
    key: &NodeKey,
    url: &str,
    acked: &watch::Sender<ListVersion>,
) {
    let target = match target(ctx, key, url).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(node = %key, error = %e, "no admin token to poll with");
            return;
        }
    };
    let now = std::time::Instant::now();
    let answer = ctx.admin.report(&target).await.and_then(|report| {
        reported(&report.status.phase)
            .map(|phase| (report.clone(), phase))
            .ok_or_else(|| AdminError::Malformed {
                url: target.url.clone(),
                message: format!("unknown phase {:?}", report.status.phase),
            })
    });
    let node_ref = ObjectRef::<MediaNode>::new(&key.name).within(&key.namespace);
    match answer {
        Ok((report, phase)) => {
            ctx.metrics.polled(true);
            let held = report.status.assignments_version;
            let epoch = ctx.registry().epoch();
            acked.send_if_modified(|v| {
                if held < *v || (held > *v && held.epoch() == epoch) {
                    // Lost (a restart) or confirmed without our seeing the answer.
                    *v = held;
                    true
                } else {
                    false
                }
            });
            // Rooms moved off this node that it no longer shows have rejoined elsewhere:
            // its next list (pushed right after this poll) ends what is left of them.
            // Every room the node still has participants in, listed as leaving or not (a node
            // holding an earlier leader's list reports a room moved since as its own).
            let present: std::collections::HashSet<String> = report
                .rooms
                .iter()
                .filter(|r| r.participants > 0)
                .map(|r| r.name.clone())
                .collect();
            // A room placed elsewhere whose participants are still here was moved by a leader
            // that died before telling them: it becomes leaving this node, and its reconcile
            // tells them where to go.
            let adopted = ctx.registry().adopt_leaving(
                key,
                present
                    .iter()
                    .map(|name| RoomKey::new(format!("{}/{name}", key.namespace))),
                now,
            );
            if !adopted.rooms.is_empty() {
                tracing::info!(node = %key, rooms = ?adopted.rooms, "participants still on a node their room left: telling them where to go");
            }
            ctx.dispatch(adopted);
            ctx.registry().settle_leaving(
                key,
                |room| present.contains(room_name(room)),
                now,
                ctx.settings.migration_grace,
            );
            let change = ctx.live().answered(key, report, phase, now);
            if change.node {
                ctx.triggers.node(node_ref);
            }
            for room in change.rooms {
                ctx.triggers
                    .room(ObjectRef::<Room>::new(room_name(&room)).within(&key.namespace));
            }
        }
        Err(e) => {
            ctx.metrics.polled(false);
            let silent_too_long = {
                let mut live = ctx.live();
                live.failed(key, e.to_string());
                live.node(key)
                    .is_some_and(|l| ctx.settings.health.silent_too_long(l.polls, now))
            };
            tracing::debug!(node = %key, error = %e, "poll failed");
            // The node controller decides what the silence means (with the pod's readiness).
            if silent_too_long {
                ctx.triggers.node(node_ref);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_polls_are_spread_over_the_period() {
        let period = Duration::from_secs(2);
        let offsets: std::collections::BTreeSet<u128> = (0..50)
            .map(|i| spread(&NodeKey::new("ns", format!("visio-a-{i}")), period).as_millis() / 100)
            .collect();
        assert!(offsets.len() > 10, "{offsets:?}");
        assert!(offsets.iter().all(|o| *o < 20));
    }
}
