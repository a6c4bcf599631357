//! The next deadline of every peer connection, so the loop wakes for the earliest one without
//! asking each connection on every packet.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::demux::PeerKey;

/// A min-heap of deadlines with lazy invalidation: a peer's newer deadline supersedes the
/// entries pushed before it.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, PeerKey, u64)>>,
    current: Vec<Option<(Instant, u64)>>,
    generation: u64,
}

impl Timers {
    /// Records `peer`'s deadline (or none).
    pub fn set(&mut self, peer: PeerKey, deadline: Option<Instant>) {
        if self.current.len() <= peer {
            self.current.resize(peer + 1, None);
        }
        if self.current[peer].map(|(d, _)| d) == deadline {
            return;
        }
        self.generation += 1;
        self.current[peer] = deadline.map(|d| (d, self.generation));
        if let Some(d) = deadline {
            self.heap.push(Reverse((d, peer, self.generation)));
        }
    }

    /// Forgets a peer.
    pub fn clear(&mut self, peer: PeerKey) {
        if let Some(slot) = self.current.get_mut(peer) {
            *slot = None;
        }
    }

    /// The earliest live deadline.
    pub fn earliest(&mut self) -> Option<Instant> {
        while let Some(Reverse((d, peer, generation))) = self.heap.peek().copied() {
            if self.current.get(peer).copied().flatten().map(|(_, g)| g) == Some(generation) {
                return Some(d);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops every peer whose deadline is at or before `now`.
    pub fn due(&mut self, now: Instant) -> Vec<PeerKey> {
        let mut out = Vec::new();
        while let Some(d) = self.earliest() {
            if d > now {
                break;
            }
            if let Some(Reverse((_, peer, _))) = self.heap.pop() {
                self.current[peer] = None;
                out.push(peer);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn newer_deadlines_supersede_older_ones() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(1, Some(t0 + Duration::from_millis(50)));
        t.set(2, Some(t0 + Duration::from_millis(10)));
        t.set(1, Some(t0 + Duration::from_millis(5)));
        assert_eq!(t.earliest(), Some(t0 + Duration::from_millis(5)));
        assert_eq!(t.due(t0 + Duration::from_millis(20)), vec![1, 2]);
        assert_eq!(t.earliest(), None);
        t.set(3, Some(t0));
        t.clear(3);
        assert!(t.due(t0 + Duration::from_secs(1)).is_empty());
    }
}
