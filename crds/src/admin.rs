//! The media node admin API's assignment contract, shared by the operator (which writes each
//! node's list of rooms) and the media node (which admits participants only to rooms on it).
//!
//! A node's list has exactly one writer, the leading operator, and every list it sends carries
//! a [`ListVersion`]: the leader's epoch (its Lease's `leaseTransitions`), then a sequence
//! number within it. A node keeps the list of the highest version it has seen and refuses an
//! older one with `409 Conflict` ([`StaleList`]), so a push that arrives late — a retry, a
//! request that overtook another, a deposed leader — can never replace a newer list.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The path of the assignment list on a node's admin API (`PUT`).
pub const ASSIGNMENTS_PATH: &str = "/v1/assignments";

/// The version of a node's assignment list: epoch in the high 32 bits, sequence in the low.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ListVersion(pub u64);

impl ListVersion {
    /// No list yet: every pushed list is newer.
    pub const NONE: Self = Self(0);

    /// The version `seq` of leader epoch `epoch`.
    pub fn new(epoch: u32, seq: u32) -> Self {
        Self((u64::from(epoch) << 32) | u64::from(seq))
    }

    /// The leader epoch that wrote it.
    pub fn epoch(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Its sequence number within the epoch.
    pub fn seq(self) -> u32 {
        (self.0 & u64::from(u32::MAX)) as u32
    }

    /// The next version of the same epoch (saturating: four billion lists per node and
    /// epoch is more than a leader ever writes).
    #[must_use]
    pub fn next(self) -> Self {
        Self::new(self.epoch(), self.seq().saturating_add(1))
    }
}

impl fmt::Display for ListVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.epoch(), self.seq())
    }
}

/// One room of an assignment list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Room name (the `Room`'s name in its namespace).
    pub room: String,
    /// Slots reserved for it.
    #[serde(default)]
    pub slots: u32,
    /// The room has moved to another node and its participants were told to reconnect there:
    /// the node keeps the sessions still open (so nobody is cut before they have rejoined) but
    /// admits nobody new and reserves nothing for it. Leaving the list ends what is left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// `PUT /v1/assignments`: the whole list of rooms the node may host, at a version. Rooms that
/// leave the list end on the node: their participants are disconnected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssignmentList {
    /// The list's version; the node refuses one older than the list it holds.
    pub version: ListVersion,
    /// The rooms.
    pub rooms: Vec<Assignment>,
}

/// The answer to an accepted list (`200 OK`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The version the node now holds.
    pub version: ListVersion,
    /// Rooms in the list.
    pub assigned: usize,
    /// Rooms that left the list while they had participants, whose sessions ended.
    #[serde(default)]
    pub ended: Vec<String>,
}

/// The answer to a list older than the node's (`409 Conflict`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StaleList {
    /// The version the node holds.
    pub current: ListVersion,
    /// The version it refused.
    pub refused: ListVersion,
}

impl StaleList {
    /// Whether a list at `offered` is refused by a node holding `current`. An equal version
    /// is the same list sent again (a retry) and is accepted.
    pub fn refuses(current: ListVersion, offered: ListVersion) -> bool {
        offered < current
    }
}

/// A room's media quality as its node measures it, in the room list of the node's status: what
/// a rollout's quality gate compares between revisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomQuality {
    /// Participants admitted since the room started on this node.
    #[serde(default)]
    pub joins: u32,
    /// Of those, how many never got a working connection (it failed before connecting).
    #[serde(default)]
    pub join_failures: u32,
    /// Packets lost on the way to the subscribers, in percent, at the last sample (`None`
    /// before any receiver report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_percent: Option<f64>,
    /// Round-trip time to the subscribers, in milliseconds, at the last sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_epoch_outranks_any_sequence_of_an_earlier_one() {
        let old = ListVersion::new(3, u32::MAX);
        let new = ListVersion::new(4, 0);
        assert!(new > old);
        assert_eq!((new.epoch(), new.seq()), (4, 0));
        assert_eq!(
            old.next(),
            old,
            "saturates instead of spilling into the epoch"
        );
        assert_eq!(ListVersion::new(4, 7).next(), ListVersion::new(4, 8));
        assert_eq!(ListVersion::new(4, 7).to_string(), "4.7");
    }

    #[test]
    fn only_an_older_list_is_refused() {
        let held = ListVersion::new(2, 5);
        assert!(StaleList::refuses(held, ListVersion::new(2, 4)));
        assert!(StaleList::refuses(held, ListVersion::new(1, 900)));
        assert!(!StaleList::refuses(held, held), "a retry of the same list");
        assert!(!StaleList::refuses(held, ListVersion::new(2, 6)));
        assert!(!StaleList::refuses(
            ListVersion::NONE,
            ListVersion::new(0, 1)
        ));
    }

    #[test]
    fn the_wire_form_is_a_plain_number_and_rejects_unknown_fields() {
        let list = AssignmentList {
            version: ListVersion::new(1, 2),
            rooms: vec![
                Assignment {
                    room: "r1".into(),
                    slots: 4,
                    leaving: false,
                },
                Assignment {
                    room: "r0".into(),
                    slots: 0,
                    leaving: true,
                },
            ],
        };
        let json = serde_json::to_value(&list).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"version": 4_294_967_298_u64, "rooms": [
                {"room": "r1", "slots": 4},
                {"room": "r0", "slots": 0, "leaving": true}
            ]})
        );
        let unknown = serde_json::from_value::<AssignmentList>(
            serde_json::json!({"version": 1, "rooms": [], "extra": true}),
        );
        assert!(unknown.is_err());
        let unversioned =
            serde_json::from_value::<AssignmentList>(serde_json::json!({"rooms": []}));
        assert!(unversioned.is_err(), "a list without a version is refused");
    }
}
