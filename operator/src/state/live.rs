//! The live view of the media nodes, kept in memory from the admin API polls: what each node
//! last said, when, and the participants of every room. The API server is not a metrics bus:
//! only meaningful changes of this view reach a `MediaNode` or `Room` status.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::budget::Budget;
use super::keys::NodeKey;
use crate::controller::admin::NodeReport;
use crate::core::RoomKey;
use crate::core::health::{Polls, Reported};

/// What the operator knows of one node from its pod and its polls.
#[derive(Clone, Debug, Default)]
pub struct LiveNode {
    /// When the operator first saw its pod running (our clock).
    pub running_since: Option<Instant>,
    /// The polls' outcome.
    pub polls: Polls,
    /// The last answer.
    pub report: Option<NodeReport>,
    /// The last failed poll's error, cleared by an answer.
    pub last_error: Option<String>,
    /// When its load was last written to its status (our clock).
    pub load_written: Option<Instant>,
}

/// What changed with one poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PollChange {
    /// The node's reported phase or load changed (its status may need a write).
    pub node: bool,
    /// Rooms (`namespace/name`) whose participant count changed.
    pub rooms: Vec<RoomKey>,
}

/// A room as its node reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveRoom {
    /// Connected participants.
    pub participants: u32,
    /// Last moment it had a participant (our clock).
    pub last_occupied: Option<Instant>,
    /// When its participant count was last written to its status (our clock).
    pub count_written: Option<Instant>,
}

/// The live view of every node, keyed by namespace and name.
#[derive(Debug)]
pub struct Live {
    nodes: HashMap<NodeKey, LiveNode>,
    rooms: HashMap<RoomKey, LiveRoom>,
    /// Status writes for load counters alone, shared by every node.
    load_writes: Budget,
}

/// Status writes for load counters alone, per second, over all nodes.
pub const LOAD_WRITES_PER_SECOND: f64 = 2.0;

impl Default for Live {
    fn default() -> Self {
        Self {
            nodes: HashMap::new(),
            rooms: HashMap::new(),
            load_writes: Budget::new(LOAD_WRITES_PER_SECOND),
        }
    }
}

/// A node's reported phase, read from the admin API's words.
pub fn reported(phase: &str) -> Option<Reported> {
    match phase {
        "Ready" => Some(Reported::Ready),
        "Draining" => Some(Reported::Draining),
        "Drained" => Some(Reported::Drained),
        _ => None,
    }
}

impl Live {
    /// The node, if polled or seen running.
    pub fn node(&self, key: &NodeKey) -> Option<&LiveNode> {
        self.nodes.get(key)
    }

    /// Records that the node's pod runs, the first time it is seen so; returns since when.
    pub fn running(&mut self, key: &NodeKey, now: Instant) -> Instant {
        *self
            .nodes
            .entry(key.clone())
            .or_default()
            .running_since
            .get_or_insert(now)
    }

    /// Records that the node's status (with its load) was written.
    pub fn load_written(&mut self, key: &NodeKey, now: Instant) {
        self.nodes.entry(key.clone()).or_default().load_written = Some(now);
    }

    /// Takes a write for a node's load counters alone from the budget shared by all nodes,
    /// or says how long until one is free.
    pub fn take_load_write(&mut self, now: Instant) -> Result<(), Duration> {
        self.load_writes.take(now)
    }

    /// Records an answer.
    pub fn answered(
        &mut self,
        key: &NodeKey,
        report: NodeReport,
        phase: Reported,
        now: Instant,
    ) -> PollChange {
        let namespace = key.namespace.as_str();
        let node = self.nodes.entry(key.clone()).or_default();
        let previous = node.report.take();
        // A node answering again after missed polls may have been unreachable: its status
        // is looked at again now, not at its reconcile's next back-off.
        let changed_node = node.polls.last_ok.map(|(_, p)| p) != Some(phase)
            || node.polls.missed > 0
            || previous.as_ref().is_none_or(|p| meaningful(p, &report));
        let mut rooms = Vec::new();
        // A room leaving this node is counted on the node it moved to: its last sessions
        // here are not its participants.
        let before: HashMap<&str, u32> = previous
            .as_ref()
            .map(|p| {
                p.rooms
                    .iter()
                    .filter(|r| !r.leaving)
                    .map(|r| (r.name.as_str(), r.participants))
                    .collect()
            })
            .unwrap_or_default();
        for r in report.rooms.iter().filter(|r| !r.leaving) {
            let room_key = RoomKey::new(format!("{namespace}/{}", r.name));
            let live = self.rooms.entry(room_key.clone()).or_default();
            live.participants = r.participants;
            if r.participants > 0 {
                live.last_occupied = Some(now);
            }
            if before.get(r.name.as_str()).copied() != Some(r.participants) {
                rooms.push(room_key);
            }
        }
        // Rooms the node no longer reports have nobody left.
        if let Some(p) = &previous {
            for r in p.rooms.iter().filter(|r| !r.leaving) {
                if !report.rooms.iter().any(|n| n.name == r.name) {
                    let room_key = RoomKey::new(format!("{namespace}/{}", r.name));
                    if let Some(live) = self.rooms.get_mut(&room_key) {
                        live.participants = 0;
                    }
                    rooms.push(room_key);
                }
            }
        }
        node.polls.last_ok = Some((now, phase));
        node.polls.missed = 0;
        node.report = Some(report);
        node.last_error = None;
        PollChange {
            node: changed_node,
            rooms,
        }
    }

    /// Records a failed poll.
    pub fn failed(&mut self, key: &NodeKey, error: String) {
        let node = self.nodes.entry(key.clone()).or_default();
        node.last_error = Some(error);
        node.polls.missed = node.polls.missed.saturating_add(1);
    }

    /// Forgets a node (deleted, or its pod replaced).
    pub fn forget(&mut self, key: &NodeKey) {
        self.nodes.remove(key);
    }

    /// A room as its node reports it.
    pub fn room(&self, key: &RoomKey) -> Option<LiveRoom> {
        self.rooms.get(key).copied()
    }

    /// How long to wait before a room's participant count may be written again, if at all:
    /// counts alone are written at most every `interval`.
    pub fn participants_write_wait(&self, key: &RoomKey, interval: Duration) -> Option<Duration> {
        let written = self.rooms.get(key)?.count_written?;
        interval
            .checked_sub(written.elapsed())
            .filter(|d| !d.is_zero())
    }

    /// Records that a room's participant count was written.
    pub fn participants_written(&mut self, key: &RoomKey, now: Instant) {
        self.rooms.entry(key.clone()).or_default().count_written = Some(now);
    }

    /// Forgets a room (closed or deleted).
    pub fn forget_room(&mut self, key: &RoomKey) {
        self.rooms.remove(key);
    }
}

/// Whether a new report differs from the last in a way worth a status write: anything but
/// bitrates, which move all the time and are refreshed with the next meaningful write.
fn meaningful(old: &NodeReport, new: &NodeReport) -> bool {
    let (a, b) = (&old.status, &new.status);
    a.phase != b.phase
        || a.rooms != b.rooms
        || a.participants != b.participants
        || a.reserved_slots != b.reserved_slots
        || a.used_slots != b.used_slots
        || a.capacity_slots != b.capacity_slots
        || a.advertise != b.advertise
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::admin::{NodeStatusReport, RoomReport};

    fn n1() -> NodeKey {
        NodeKey::new("ns", "n1")
    }

    fn report(participants: &[(&str, u32)], bitrate: u64) -> NodeReport {
        NodeReport {
            status: NodeStatusReport {
                phase: "Ready".into(),
                participants: participants.iter().map(|(_, p)| p).sum(),
                rooms: u32::try_from(participants.len()).unwrap(),
                bitrate_in_bps: bitrate,
                ..Default::default()
            },
            rooms: participants
                .iter()
                .map(|(name, p)| RoomReport {
                    name: (*name).into(),
                    participants: *p,
                    tracks: 0,
                    leaving: false,
                    quality: ruche_crds::admin::RoomQuality::default(),
                })
                .collect(),
        }
    }

    #[test]
    fn only_meaningful_changes_are_reported() {
        let t0 = Instant::now();
        let mut live = Live::default();
        let first = live.answered(&n1(), report(&[("r1", 2)], 10), Reported::Ready, t0);
        assert!(first.node);
        assert_eq!(first.rooms, vec![RoomKey::new("ns/r1")]);
        // Same counts, new bitrate: nothing to write.
        let same = live.answered(&n1(), report(&[("r1", 2)], 99), Reported::Ready, t0);
        assert_eq!(same, PollChange::default());
        // One more participant: the node and the room changed.
        let more = live.answered(&n1(), report(&[("r1", 3)], 99), Reported::Ready, t0);
        assert!(more.node);
        assert_eq!(more.rooms.len(), 1);
        // A phase change alone is meaningful.
        let draining = live.answered(&n1(), report(&[("r1", 3)], 99), Reported::Draining, t0);
        assert!(draining.node);
        // So is an answer after missed polls (the node may have been unreachable), once.
        live.failed(&n1(), "timed out".into());
        let back = live.answered(&n1(), report(&[("r1", 3)], 99), Reported::Draining, t0);
        assert!(back.node);
        let again = live.answered(&n1(), report(&[("r1", 3)], 99), Reported::Draining, t0);
        assert!(!again.node);
    }

    #[test]
    fn rooms_remember_when_they_last_had_someone() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let mut live = Live::default();
        live.answered(&n1(), report(&[("r1", 1)], 0), Reported::Ready, t0);
        let gone = live.answered(&n1(), report(&[], 0), Reported::Ready, t1);
        let key = RoomKey::new("ns/r1");
        assert_eq!(gone.rooms, vec![key.clone()]);
        let room = live.room(&key).unwrap();
        assert_eq!(room.participants, 0);
        assert_eq!(room.last_occupied, Some(t0));
    }

    #[test]
    fn running_since_is_the_first_sighting() {
        let t0 = Instant::now();
        let mut live = Live::default();
        assert_eq!(live.running(&n1(), t0), t0);
        assert_eq!(live.running(&n1(), t0 + Duration::from_secs(3)), t0);
        live.forget(&n1());
        assert!(live.node(&n1()).is_none());
    }
}
