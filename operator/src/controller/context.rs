//! What every reconcile shares.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use ruche_crds::{MediaFleet, MediaNode, Room};

use super::Error;
use super::admin::NodeAdmin;
use crate::build::{labels, pod::ADMIN_FILE};
use crate::state::placements::{Placements, fleet_key};

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
    /// Where rooms are: the single writer of placements.
    pub placements: Mutex<Placements>,
    /// Admin tokens by fleet, read from the fleet's Secret once.
    admin_tokens: Mutex<HashMap<String, String>>,
}

impl<A: NodeAdmin> Context<A> {
    /// A context over the given caches.
    pub fn new(
        client: Client,
        recorder: Recorder,
        admin: A,
        fleets: Store<MediaFleet>,
        nodes: Store<MediaNode>,
        rooms: Store<Room>,
    ) -> Self {
        Self {
            client,
            recorder,
            admin,
            fleets,
            nodes,
            rooms,
            placements: Mutex::new(Placements::default()),
            admin_tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Locks the placements. A poisoned lock means a reconcile panicked mid-decision; the
    /// placements are still consistent (every change is one `apply`), so carry on.
    pub fn placements(&self) -> std::sync::MutexGuard<'_, Placements> {
        self.placements
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The admin token of a fleet's nodes.
    pub async fn admin_token(&self, fleet: &MediaFleet) -> Result<String, Error> {
        let key = fleet_key(fleet);
        if let Some(t) = self
            .admin_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
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
        self.admin_tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, token.clone());
        Ok(token)
    }
}
