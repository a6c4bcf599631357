//! Per-object retry backoff: each object that keeps failing waits longer, from a second to
//! five minutes (see [`super::error::retry_delay`]); one that succeeds starts again from the
//! shortest delay. A failing object never slows the others down.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::error::{ErrorClass, retry_delay};

/// Which object: controller, namespace and name.
type ObjectId = (&'static str, String, String);

/// Failures in a row, per object.
#[derive(Debug, Default)]
pub struct Backoff {
    attempts: Mutex<HashMap<ObjectId, u32>>,
}

impl Backoff {
    /// Records a failure of `controller`'s object `namespace/name` and returns how long to
    /// wait before trying it again.
    pub fn failed(
        &self,
        controller: &'static str,
        namespace: &str,
        name: &str,
        class: ErrorClass,
    ) -> Duration {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        let n = attempts
            .entry((controller, namespace.to_string(), name.to_string()))
            .or_insert(0);
        *n = n.saturating_add(1);
        retry_delay(class, *n)
    }

    /// Records a success: the next failure waits the shortest delay again.
    pub fn succeeded(&self, controller: &'static str, namespace: &str, name: &str) {
        let mut attempts = self.attempts.lock().unwrap_or_else(PoisonError::into_inner);
        if attempts.is_empty() {
            return;
        }
        attempts.remove(&(controller, namespace.to_string(), name.to_string()));
    }

    /// Objects currently backing off (for tests and metrics).
    pub fn len(&self) -> usize {
        self.attempts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no object is backing off.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_object_backs_off_on_its_own_and_resets_on_success() {
        let b = Backoff::default();
        let t = ErrorClass::Transient;
        assert_eq!(b.failed("node", "ns", "a", t), Duration::from_secs(1));
        assert_eq!(b.failed("node", "ns", "a", t), Duration::from_secs(2));
        assert_eq!(b.failed("node", "ns", "a", t), Duration::from_secs(4));
        assert_eq!(
            b.failed("node", "other", "a", t),
            Duration::from_secs(1),
            "the same name in another namespace is another object"
        );
        b.succeeded("node", "ns", "a");
        assert_eq!(b.failed("node", "ns", "a", t), Duration::from_secs(1));
        assert_eq!(b.len(), 2);
    }
}
