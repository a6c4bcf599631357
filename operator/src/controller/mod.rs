//! The controllers: the imperative shell around the decision core. They read the caches and
//! the registry, ask the core, and apply what it decides (server-side apply, status, events,
//! the media nodes' admin API).
//!
//! - [`context`]: what every reconcile shares (client, caches, registry, agents, events);
//! - [`fleet`]: keeps each zone's media nodes at the desired count, writes fleet status;
//! - [`node`]: a media node's pod, exposure, drain, health and status;
//! - [`room`]: places rooms, waits for their node to take them, writes their status;
//! - [`agent`]: one task per media node: polls it, and writes its assignment list;
//! - [`admin`]: the media nodes' admin API;
//! - [`events`]: Kubernetes events on the objects acted on;
//! - [`error`] and [`backoff`]: why a reconcile failed, and when it is tried again.

pub mod admin;
pub mod agent;
pub mod autoscale;
pub mod backoff;
pub mod context;
pub mod error;
pub mod events;
pub mod fleet;
pub mod node;
pub mod room;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::labels::MANAGER;
pub use error::{Error, ErrorClass};

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

/// Replaces an object's whole status through the status subresource with one JSON patch
/// (`add` of `/status`, which creates it or replaces it). For the operator's hottest write, a
/// room's placement: the API server does less for it than for a server-side apply, and the
/// operator is the only writer of a room's status, so there is no one else's field to keep.
pub async fn replace_status<K>(
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
    let value = serde_json::to_value(status)
        .map_err(|e| Error::Invalid(format!("cannot encode the status: {e}")))?;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        { "op": "add", "path": "/status", "value": value }
    ]))
    .map_err(|e| Error::Invalid(format!("cannot build the status patch: {e}")))?;
    let params = PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    };
    api.patch_status(&object.name_any(), &params, &Patch::Json::<()>(patch))
        .await?;
    Ok(())
}

/// Sets (or, with `None`, removes) a media node's drain request with a merge patch of its
/// spec: the operator drains for scale-down, rollouts, evacuations and Kubernetes node
/// maintenance, and undoes only its own drains.
pub async fn patch_drain(
    client: &Client,
    namespace: &str,
    node: &str,
    drain: Option<&ruche_crds::DrainRequest>,
) -> Result<(), Error> {
    let api: Api<ruche_crds::MediaNode> = Api::namespaced(client.clone(), namespace);
    api.patch(
        node,
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({ "spec": { "drain": drain } })),
    )
    .await?;
    Ok(())
}

/// What to do when a reconcile of `controller`'s object failed: retry after the object's own
/// backoff (see [`backoff`]), and count the error.
pub fn retry_after<A: admin::NodeAdmin, K: Resource>(
    controller: &'static str,
    object: &K,
    error: &Error,
    ctx: &context::Context<A>,
) -> Action {
    let delay = ctx.backoff.failed(
        controller,
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default(),
        error.class(),
    );
    ctx.metrics.failed(controller, error.metric_label());
    if error.class() == ErrorClass::Conflict {
        tracing::debug!(%error, controller, ?delay, "conflict; retrying with fresh state");
    } else {
        tracing::warn!(%error, controller, object = %object.meta().name.as_deref().unwrap_or_default(), ?delay, "reconcile failed; retrying");
    }
    Action::requeue(delay)
}
