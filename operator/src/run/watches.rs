//! The watches: one per kind, each event folded into the registry as soon as the cache has
//! it, before any controller sees it. The registry is how reconciles find what they need in
//! time proportional to the object (a fleet's nodes, a node's rooms); the fold is also where a
//! change reaches the other objects it concerns: a deleted room frees its slots and wakes the
//! rooms waiting in its fleet, a failed node moves its rooms, a node that gets an admin
//! address gets its agent.
//!
//! A watch that restarts re-lists: objects deleted while it was down get no delete event, so
//! at the end of every list the registry is replaced with what the cache holds.

use std::collections::HashSet;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::Event;
use ruche_crds::{MediaFleet, MediaNode, Room};

use crate::controller::admin::NodeAdmin;
use crate::controller::context::Context;
use crate::state::keys::{NodeKey, room_key};

/// The store's own copy of an object of an event (shared with the cache, not cloned).
fn cached<K>(store: &Store<K>, object: &K) -> Option<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    store.get(&ObjectRef::from_obj(object))
}

/// Folds a fleet event into the registry.
pub fn fleet<A: NodeAdmin>(ctx: &Context<A>, store: &Store<MediaFleet>, event: &Event<MediaFleet>) {
    let effects = match event {
        Event::Apply(f) => match cached(store, f) {
            Some(f) => ctx.registry().apply_fleet(f),
            None => return,
        },
        Event::Delete(f) => ctx.registry().delete_fleet(f),
        Event::InitDone => ctx.registry().replace_fleets(store.state()),
        Event::Init | Event::InitApply(_) => return,
    };
    ctx.dispatch(effects);
}

/// Folds a node event into the registry, and starts or stops the node's agent.
pub fn node<A: NodeAdmin>(
    ctx: &Arc<Context<A>>,
    store: &Store<MediaNode>,
    event: &Event<MediaNode>,
) {
    let effects = match event {
        Event::Apply(n) => {
            let Some(n) = cached(store, n) else { return };
            ctx.agents.track(ctx, &n);
            ctx.registry().apply_node(n)
        }
        Event::Delete(n) => {
            let key = NodeKey::of(n);
            ctx.agents.forget(&key);
            ctx.live().forget(&key);
            ctx.registry().delete_node(n)
        }
        Event::InitDone => {
            let nodes = store.state();
            let keep: HashSet<NodeKey> = nodes.iter().map(|n| NodeKey::of(n)).collect();
            ctx.agents.retain(&keep);
            for n in &nodes {
                ctx.agents.track(ctx, n);
            }
            ctx.registry().replace_nodes(nodes)
        }
        Event::Init | Event::InitApply(_) => return,
    };
    ctx.dispatch(effects);
}

/// Folds a room event into the registry: a deleted room frees its slots at once.
pub fn room<A: NodeAdmin>(ctx: &Context<A>, store: &Store<Room>, event: &Event<Room>) {
    let effects = match event {
        Event::Apply(r) => {
            if let Some(r) = cached(store, r) {
                ctx.registry().apply_room(r);
            }
            return;
        }
        Event::Delete(r) => {
            ctx.live().forget_room(&room_key(r));
            ctx.registry().delete_room(r)
        }
        Event::InitDone => ctx.registry().replace_rooms(store.state()),
        Event::Init | Event::InitApply(_) => return,
    };
    ctx.dispatch(effects);
}
