//! Why a reconcile failed, and what that means for retrying it.
//!
//! Errors come in three classes. A **conflict** (someone wrote the object first) is retried
//! almost at once with fresh state. A **transient** error (the API server or a media node
//! is slow or away, something the reconcile waits for is not there yet) is retried with a
//! per-object backoff that grows from a second to minutes. A **permanent** error (the object
//! as written cannot be acted on, the API server refuses what the operator built from it)
//! is turned into a condition and an event on the object by the reconcile, which then waits
//! for a change or retries slowly.

use std::time::Duration;

use super::admin::AdminError;

/// How an error is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorClass {
    /// Someone else wrote first: retry soon, with fresh state.
    Conflict,
    /// Retry with a growing backoff.
    Transient,
    /// Retrying the same thing will fail the same way until something changes.
    Permanent,
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a call.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A media node's admin API failed.
    #[error("media node admin API: {0}")]
    Admin(#[from] AdminError),
    /// Something the reconcile needs is not there yet (an address, a node port, a Secret).
    #[error("{0}")]
    Waiting(String),
    /// The object cannot be acted on as written.
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    /// The class of the error, which decides how it is retried.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Kube(kube::Error::Api(status)) => match status.code {
                409 => ErrorClass::Conflict,
                // Refused as written: invalid, forbidden (RBAC, Pod Security, quota), gone.
                400 | 403 | 404 | 405 | 413 | 422 => ErrorClass::Permanent,
                _ => ErrorClass::Transient,
            },
            Self::Kube(_) | Self::Admin(_) | Self::Waiting(_) => ErrorClass::Transient,
            Self::Invalid(_) => ErrorClass::Permanent,
        }
    }

    /// A short label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Admin(_) => "admin",
            Self::Waiting(_) => "waiting",
            Self::Invalid(_) => "invalid",
        }
    }

    /// The API server's refusal, when this is one: its HTTP code and message.
    pub fn refusal(&self) -> Option<(u16, &str)> {
        match self {
            Self::Kube(kube::Error::Api(status)) if self.class() == ErrorClass::Permanent => {
                Some((status.code, status.message.as_str()))
            }
            _ => None,
        }
    }
}

/// The delay before retry number `attempt` (1 for the first retry) of an error of `class`:
/// conflicts start at 100 ms, others at a second, doubling up to five minutes.
pub fn retry_delay(class: ErrorClass, attempt: u32) -> Duration {
    let base = match class {
        ErrorClass::Conflict => Duration::from_millis(100),
        ErrorClass::Transient | ErrorClass::Permanent => Duration::from_secs(1),
    };
    let doublings = attempt.saturating_sub(1).min(16);
    base.saturating_mul(1 << doublings).min(MAX_RETRY_DELAY)
}

/// The longest wait between two retries of one object.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(300);

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> Error {
        Error::Kube(kube::Error::Api(
            kube::core::Status::failure("refused", "Forbidden")
                .with_code(code)
                .boxed(),
        ))
    }

    #[test]
    fn errors_are_classified_by_what_retrying_would_do() {
        assert_eq!(api(409).class(), ErrorClass::Conflict);
        assert_eq!(api(422).class(), ErrorClass::Permanent);
        assert_eq!(api(403).class(), ErrorClass::Permanent);
        assert_eq!(api(500).class(), ErrorClass::Transient);
        assert_eq!(api(429).class(), ErrorClass::Transient);
        assert_eq!(
            Error::Waiting("no node port yet".into()).class(),
            ErrorClass::Transient
        );
        assert_eq!(
            Error::Invalid("no zone".into()).class(),
            ErrorClass::Permanent
        );
        assert_eq!(api(403).refusal(), Some((403, "refused")));
        assert_eq!(api(500).refusal(), None);
    }

    #[test]
    fn retries_back_off_from_a_second_to_five_minutes() {
        let t = ErrorClass::Transient;
        assert_eq!(retry_delay(t, 1), Duration::from_secs(1));
        assert_eq!(retry_delay(t, 2), Duration::from_secs(2));
        assert_eq!(retry_delay(t, 5), Duration::from_secs(16));
        assert_eq!(retry_delay(t, 40), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(ErrorClass::Conflict, 1),
            Duration::from_millis(100)
        );
    }
}
