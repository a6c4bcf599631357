//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::core::v1::{Node, Pod, Secret, Service};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client};
use ruche_crds::{MediaFleet, MediaNode, Room};

use super::Error;
use super::admin::NodeAdmin;
use super::agent::Agents;
use super::backoff::Backoff;
use super::events::Events;
use crate::build::{labels, pod::ADMIN_FILE};
use crate::core::health::HealthPolicy;
use crate::metrics::Metrics;
use crate::state::expectations::Expectations;
use crate::state::keys::{FleetKey, room_name};
use crate::state::live::Live;
use crate::state::registry::{Effects, Registry};

/// The caches the controllers read.
#[derive(Clone)]
pub struct Stores {
    /// Fleets.
    pub fleets: Store<MediaFleet>,
    /// Media nodes.
    pub nodes: Store<MediaNode>,
    /// Rooms.
    pub rooms: Store<Room>,
    /// The media nodes' pods (selected by label).
    pub pods: Store<Pod>,
    /// The media nodes' Services (NodePort and LoadBalancer exposures).
    pub services: Store<Service>,
    /// The Kubernetes nodes (trimmed to what says whether they are being taken away); empty
    /// when the operator may not watch them.
    pub hosts: Store<Node>,
}

/// Tunables of the controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How often each media node's admin API is polled.
    pub poll_interval: Duration,
    /// When a node counts as Failed.
    pub health: HealthPolicy,
    /// How long a room's reconcile waits for its node to take the room.
    pub assign_timeout: Duration,
    /// The shortest time between two writes of a node's status for its load alone.
    pub load_status_interval: Duration,
    /// How long a node keeps the sessions of a room moved off it, once its participants were
    /// told where to go, if they do not all leave sooner.
    pub migration_grace: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            health: HealthPolicy::default(),
            assign_timeout: Duration::from_secs(4),
            load_status_interval: Duration::from_secs(300),
            migration_grace: Duration::from_secs(60),
        }
    }
}

/// Where work for other objects is sent: reconciles of fleets, nodes and rooms.
#[derive(Clone)]
pub struct Triggers {
    fleets: UnboundedSender<ObjectRef<MediaFleet>>,
    nodes: UnboundedSender<ObjectRef<MediaNode>>,
    rooms: UnboundedSender<ObjectRef<Room>>,
}

impl Triggers {
    /// Triggers over these channels (the controllers' `reconcile_on` streams).
    pub fn new(
        fleets: UnboundedSender<ObjectRef<MediaFleet>>,
        nodes: UnboundedSender<ObjectRef<MediaNode>>,
        rooms: UnboundedSender<ObjectRef<Room>>,
    ) -> Self {
        Self {
            fleets,
            nodes,
            rooms,
        }
    }

    /// Triggers that go nowhere (tests of one reconcile).
    pub fn none() -> Self {
        let (fleets, _) = futures::channel::mpsc::unbounded();
        let (nodes, _) = futures::channel::mpsc::unbounded();
        let (rooms, _) = futures::channel::mpsc::unbounded();
        Self {
            fleets,
            nodes,
            rooms,
        }
    }

    /// Asks for a fleet's reconcile. Dropped once the controllers have stopped.
    pub fn fleet(&self, fleet: ObjectRef<MediaFleet>) {
        let _ = self.fleets.unbounded_send(fleet);
    }

    /// Asks for a node's reconcile. Dropped once the controllers have stopped.
    pub fn node(&self, node: ObjectRef<MediaNode>) {
        let _ = self.nodes.unbounded_send(node);
    }

    /// Asks for a room's reconcile. Dropped once the controllers have stopped.
    pub fn room(&self, room: ObjectRef<Room>) {
        let _ = self.rooms.unbounded_send(room);
    }
}

/// The shared state of the controllers.
pub struct Context<A: NodeAdmin> {
    /// API client.
    pub client: Client,
    /// Events on the objects acted on.
    pub events: Events,
    /// Media nodes' admin API.
    pub admin: A,
    /// Fleet cache.
    pub fleets: Store<MediaFleet>,
    /// Node cache.
    pub nodes: Store<MediaNode>,
    /// Room cache.
    pub rooms: Store<Room>,
    /// Pod cache.
    pub pods: Store<Pod>,
    /// Service cache.
    pub services: Store<Service>,
    /// Kubernetes node cache.
    pub hosts: Store<Node>,
    /// Tunables.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Retry delays of failing objects.
    pub backoff: Backoff,
    /// Reconciles asked for by other objects' changes.
    pub triggers: Triggers,
    /// One agent per media node: polls, and the single writer of its assignment list.
    pub agents: Agents,
    /// Fleets, their nodes, rooms and placements, by namespace.
    registry: Mutex<Registry>,
    /// What the nodes' admin APIs last said.
    live: Mutex<Live>,
    /// Nodes created or deleted that the cache does not show yet.
    expectations: Mutex<Expectations>,
    /// Admin tokens by fleet, read from the fleet's Secret once (held across the read, so
    /// that a hundred agents starting together read it once).
    admin_tokens: tokio::sync::Mutex<HashMap<FleetKey, String>>,
}

/// Locks a mutex. A poisoned lock means a reconcile panicked mid-change; every structure
/// behind these locks stays consistent between calls (each change is one method), so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a context is built from besides the client and the admin API.
pub struct Parts {
    /// Events writer.
    pub events: Events,
    /// Caches.
    pub stores: Stores,
    /// Tunables.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where other objects' reconciles are asked for.
    pub triggers: Triggers,
    /// This leader's epoch (its Lease's transitions), carried by every assignment list.
    pub epoch: u32,
}

impl<A: NodeAdmin> Context<A> {
    /// A context over the given caches.
    pub fn new(client: Client, admin: A, parts: Parts) -> Self {
        Self {
            client,
            events: parts.events,
            admin,
            fleets: parts.stores.fleets,
            nodes: parts.stores.nodes,
            rooms: parts.stores.rooms,
            pods: parts.stores.pods,
            services: parts.stores.services,
            hosts: parts.stores.hosts,
            settings: parts.settings,
            metrics: parts.metrics,
            backoff: Backoff::default(),
            triggers: parts.triggers,
            agents: Agents::default(),
            registry: Mutex::new(Registry::new(parts.epoch)),
            live: Mutex::new(Live::default()),
            expectations: Mutex::new(Expectations::default()),
            admin_tokens: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Locks the registry.
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        lock(&self.registry)
    }

    /// Locks the live view.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }

    /// Locks the expectations.
    pub fn expectations(&self) -> MutexGuard<'_, Expectations> {
        lock(&self.expectations)
    }

    /// Acts on what a change means for other objects: rooms are reconciled, nodes get their
    /// new lists, and what could not be taken into account is logged.
    pub fn dispatch(&self, effects: Effects) {
        for p in &effects.problems {
            tracing::warn!("{p}");
        }
        for (room, from, to) in &effects.moved {
            tracing::info!(%room, %from, %to, "room moved off a failed node");
        }
        for (room, why) in &effects.stranded {
            tracing::warn!(%room, "room of a failed node fits nowhere: {why}");
        }
        for room in effects.rooms {
            if let Some((namespace, _)) = room.0.split_once('/') {
                self.triggers
                    .room(ObjectRef::new(room_name(&room)).within(namespace));
            }
        }
        for node in &effects.lists {
            self.agents.push(node);
        }
        for fleet in effects.fleets {
            self.triggers
                .fleet(ObjectRef::new(&fleet.name).within(&fleet.namespace));
        }
    }

    /// The admin token of a fleet's nodes.
    pub async fn admin_token(&self, fleet: &FleetKey) -> Result<String, Error> {
        let mut tokens = self.admin_tokens.lock().await;
        if let Some(t) = tokens.get(fleet) {
            return Ok(t.clone());
        }
        let name = labels::admin_token_secret(&fleet.name);
        let secret = Api::<Secret>::namespaced(self.client.clone(), &fleet.namespace)
            .get_opt(&name)
            .await?
            .ok_or_else(|| {
                Error::Waiting(format!(
                    "Secret {}/{name} does not exist yet (the fleet controller creates it)",
                    fleet.namespace
                ))
            })?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get(ADMIN_FILE))
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "Secret {}/{name} has no `{ADMIN_FILE}`",
                    fleet.namespace
                ))
            })?;
        tokens.insert(fleet.clone(), token.clone());
        Ok(token)
    }
}
