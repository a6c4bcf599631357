//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use ruche_crds::{MediaFleet, MediaNode, Room};

use super::Error;
use super::admin::NodeAdmin;
use crate::build::{labels, pod::ADMIN_FILE};
use crate::core::health::HealthPolicy;
use crate::metrics::Metrics;
use crate::state::expectations::Expectations;
use crate::state::live::Live;
use crate::state::placements::{Placements, fleet_key};

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
}

/// Tunables of the controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How often each media node's admin API is polled.
    pub poll_interval: Duration,
    /// When a node counts as Failed.
    pub health: HealthPolicy,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(2),
            health: HealthPolicy::default(),
        }
    }
}

/// The shared state of the controllers.
pub struct Context<A: NodeAdmin> {
    /// API client.
    pub client: Client,
    /// Event recorder (one for the process: it deduplicates).
    pub recorder: Recorder,
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
    /// Tunables.
    pub settings: Settings,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where rooms are: the single writer of placements.
    placements: Mutex<Placements>,
    /// What the nodes' admin APIs last said.
    live: Mutex<Live>,
    /// Nodes created or deleted that the cache does not show yet.
    expectations: Mutex<Expectations>,
    /// Admin tokens by fleet, read from the fleet's Secret once.
    admin_tokens: Mutex<HashMap<String, String>>,
}

/// Locks a mutex. A poisoned lock means a reconcile panicked mid-change; every structure
/// behind these locks stays consistent between calls (each change is one method), so carry on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<A: NodeAdmin> Context<A> {
    /// A context over the given caches.
    pub fn new(
        client: Client,
        recorder: Recorder,
        admin: A,
        stores: Stores,
        settings: Settings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            recorder,
            admin,
            fleets: stores.fleets,
            nodes: stores.nodes,
            rooms: stores.rooms,
            pods: stores.pods,
            settings,
            metrics,
            placements: Mutex::new(Placements::default()),
            live: Mutex::new(Live::default()),
            expectations: Mutex::new(Expectations::default()),
            admin_tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Locks the placements.
    pub fn placements(&self) -> MutexGuard<'_, Placements> {
        lock(&self.placements)
    }

    /// Locks the live view.
    pub fn live(&self) -> MutexGuard<'_, Live> {
        lock(&self.live)
    }

    /// Locks the expectations.
    pub fn expectations(&self) -> MutexGuard<'_, Expectations> {
        lock(&self.expectations)
    }

    /// The admin token of a fleet's nodes.
    pub async fn admin_token(&self, fleet: &MediaFleet) -> Result<String, Error> {
        let key = fleet_key(fleet);
        if let Some(t) = lock(&self.admin_tokens).get(&key) {
            return Ok(t.clone());
        }
        let ns = fleet.namespace().unwrap_or_default();
        let name = labels::admin_token_secret(&fleet.name_any());
        let secret = Api::<Secret>::namespaced(self.client.clone(), &ns)
            .get(&name)
            .await?;
        let token = secret
            .data
            .as_ref()
            .and_then(|d| d.get(ADMIN_FILE))
            .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Invalid(format!("Secret {ns}/{name} has no `{ADMIN_FILE}`")))?;
        lock(&self.admin_tokens).insert(key, token.clone());
        Ok(token)
    }
}
