//! The harness's one error type: every failure says what was being done.

use std::time::Duration;

/// A harness step that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[source] Box<kube::Error>),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The set-up could not be done (missing binary, bad manifest, unexpected answer).
    #[error("{0}")]
    Setup(String),
    /// A condition did not hold in time.
    #[error("timed out after {after:?} waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long was waited.
        after: Duration,
        /// The state last observed, to tell why.
        last: String,
    },
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Kube(Box::new(e))
    }
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// `Ok` when nothing went wrong, else every error of a clean-up in one.
    pub fn all_or_none(errors: &[String]) -> Result<()> {
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Self::Setup(errors.join("; ")))
        }
    }

    /// The HTTP status of an API error, if this is one.
    pub fn api_code(&self) -> Option<u16> {
        match self {
            Self::Kube(e) => match e.as_ref() {
                kube::Error::Api(s) => Some(s.code),
                _ => None,
            },
            _ => None,
        }
    }
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether an API call failed because the object already exists (HTTP 409).
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Whether an API call failed because the object does not exist (HTTP 404).
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
