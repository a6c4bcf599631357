//! The controllers: the imperative shell around the decision core. They read the caches,
//! ask the core, and apply what it decides (server-side apply, status, events, the media
//! nodes' admin API).
//!
//! - [`context`]: what every reconcile shares (client, caches, placements, recorder);
//! - [`room`]: places rooms, tells their node, writes their status;
//! - [`admin`]: the media nodes' admin API.

pub mod admin;
pub mod context;
pub mod room;

use kube::runtime::finalizer;

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
