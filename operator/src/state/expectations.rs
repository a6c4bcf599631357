//! Changes the operator made that its caches have not shown yet.
//!
//! A reconcile that creates a `MediaNode` and runs again before the watch delivers it would
//! count one node too few and create another. So creations and deletions are remembered until
//! the cache agrees (or a while has passed, in case the write was lost).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::keys::FleetKey;

/// How long an unconfirmed change is trusted.
pub const EXPECTATION_TTL: Duration = Duration::from_secs(60);

/// A node created but not yet in the cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingNode {
    /// Its name.
    pub name: String,
    /// Its zone's index in the fleet.
    pub zone: usize,
    /// Its index in the fleet (host port allocation).
    pub index: u32,
    at: Instant,
}

#[derive(Debug, Default)]
struct FleetExpectations {
    created: Vec<PendingNode>,
    deleted: HashMap<String, Instant>,
}

/// Unconfirmed creations and deletions, by fleet key.
#[derive(Debug, Default)]
pub struct Expectations {
    fleets: HashMap<FleetKey, FleetExpectations>,
}

impl Expectations {
    /// Records a creation.
    pub fn created(
        &mut self,
        fleet: &FleetKey,
        name: String,
        zone: usize,
        index: u32,
        now: Instant,
    ) {
        self.fleets
            .entry(fleet.clone())
            .or_default()
            .created
            .push(PendingNode {
                name,
                zone,
                index,
                at: now,
            });
    }

    /// Records a deletion.
    pub fn deleted(&mut self, fleet: &FleetKey, name: String, now: Instant) {
        self.fleets
            .entry(fleet.clone())
            .or_default()
            .deleted
            .insert(name, now);
    }

    /// Drops what the cache now shows (`exists` says whether a node is in it) and what is
    /// too old; returns the creations still unconfirmed and the deletions still pending.
    pub fn settle(
        &mut self,
        fleet: &FleetKey,
        exists: impl Fn(&str) -> bool,
        now: Instant,
    ) -> (Vec<PendingNode>, Vec<String>) {
        let Some(e) = self.fleets.get_mut(fleet) else {
            return (Vec::new(), Vec::new());
        };
        let fresh = |at: Instant| now.saturating_duration_since(at) < EXPECTATION_TTL;
        e.created.retain(|p| !exists(&p.name) && fresh(p.at));
        e.deleted.retain(|name, at| exists(name) && fresh(*at));
        let out = (e.created.clone(), e.deleted.keys().cloned().collect());
        if e.created.is_empty() && e.deleted.is_empty() {
            self.fleets.remove(fleet);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f() -> FleetKey {
        FleetKey::new("ns", "f")
    }

    #[test]
    fn changes_are_expected_until_the_cache_shows_them() {
        let t0 = Instant::now();
        let mut e = Expectations::default();
        e.created(&f(), "f-a-0".into(), 0, 0, t0);
        e.deleted(&f(), "f-b-1".into(), t0);
        // Cache has neither change yet.
        let (created, deleted) = e.settle(&f(), |n| n == "f-b-1", t0);
        assert_eq!(created.len(), 1);
        assert_eq!(deleted, vec!["f-b-1".to_string()]);
        // Cache caught up.
        let (created, deleted) = e.settle(&f(), |n| n == "f-a-0", t0);
        assert!(created.is_empty() && deleted.is_empty());
    }

    #[test]
    fn lost_writes_are_forgotten_after_a_while() {
        let t0 = Instant::now();
        let mut e = Expectations::default();
        e.created(&f(), "f-a-0".into(), 0, 0, t0);
        let (created, _) = e.settle(&f(), |_| false, t0 + EXPECTATION_TTL);
        assert!(created.is_empty());
    }
}
