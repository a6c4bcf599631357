//! The controllers: the imperative shell around the decision core. They read the caches,
//! ask the core, and apply what it decides (server-side apply, status, events, the media
//! nodes' admin API).
//!
//! - [`context`]: what every reconcile shares (client, caches, placements, recorder);
//! - [`fleet`]: keeps each zone's media nodes at the desired count, writes fleet status;
//! - [`node`]: a media node's pod, exposure, drain and status;
//! - [`room`]: places rooms, tells their node, writes their status;
//! - [`poll`]: reads every media node's admin API on a short period;
//! - [`admin`]: the media nodes' admin API.

pub mod admin;
pub mod context;
pub mod fleet;
pub mod node;
pub mod poll;
pub mod room;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::finalizer;
use kube::{Api, Client, Resource, ResourceExt};
use ruche_crds::MediaFleet;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::labels::MANAGER;
use crate::state::placements::Synced;

/// Records an event on an object. An event that cannot be written is not worth failing a
/// reconcile for: it is logged and dropped.
/// The event's `secondary` names the object acted on (a node the fleet created, say), which
/// also keeps two events of one reconcile from being merged into one series.
pub async fn publish(
    recorder: &Recorder,
    object: &ObjectReference,
    type_: EventType,
    (action, reason): (&str, &str),
    note: &str,
    secondary: Option<ObjectReference>,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(event_note(note)),
        action: action.into(),
        secondary,
    };
    if let Err(e) = recorder.publish(&event, object).await {
        tracing::debug!(error = %e, "event not recorded");
    }
}

/// The API server refuses an event whose note exceeds this many bytes.
pub const EVENT_NOTE_MAX: usize = 1024;

/// `note`, cut at a character boundary to fit [`EVENT_NOTE_MAX`] (a media node's error can be
/// long), marked with an ellipsis when cut.
fn event_note(note: &str) -> String {
    if note.len() <= EVENT_NOTE_MAX {
        return note.to_string();
    }
    let mut end = EVENT_NOTE_MAX - '…'.len_utf8();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &note[..end])
}

/// Writes an object's status with server-side apply through the status subresource, as the
/// operator's field manager. The patch names its apiVersion and kind, as apply requires.
pub async fn apply_status<K>(
    client: &Client,
    object: &K,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

/// Logs what a placement sync did besides catching up.
pub fn log_sync(fleet: &MediaFleet, synced: &Synced) {
    let name = fleet.name_any();
    for p in &synced.problems {
        tracing::warn!(fleet = %name, "{p}");
    }
    for (room, from, to) in &synced.moved {
        tracing::info!(fleet = %name, %room, %from, %to, "room moved off a failed node");
    }
    for (room, why) in &synced.stranded {
        tracing::warn!(fleet = %name, %room, "room of a failed node fits nowhere: {why}");
    }
}

/// Why a reconcile failed; retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A media node's admin API failed.
    #[error("media node admin API: {0}")]
    Admin(#[from] admin::AdminError),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// An object lacks what the reconcile needs.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Admin(_) => "admin",
            Self::Finalizer(_) => "finalizer",
            Self::Invalid(_) => "invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_event_notes_are_cut_to_what_the_api_server_takes() {
        assert_eq!(event_note("node failed"), "node failed");
        let long = "é".repeat(800);
        let cut = event_note(&long);
        assert!(cut.len() <= EVENT_NOTE_MAX, "{}", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.starts_with("éé"));
    }
}
