//! What the core asks the shell to do, and what can go wrong applying it to a snapshot.

use super::ids::{NodeId, RoomKey};
use super::request::RoomRequest;

/// A change to room placements. Controllers turn these into API writes; the simulator and
/// [`crate::core::Snapshot::apply`] turn them into the next snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Place a room on a node, reserving its slots there.
    Assign {
        /// The room.
        room: RoomKey,
        /// The node chosen.
        node: NodeId,
        /// The room's needs, kept so it can be placed again after a failure.
        request: RoomRequest,
    },
    /// Move a placed room to another node (failover, drain deadline).
    Move {
        /// The room.
        room: RoomKey,
        /// Its new node.
        to: NodeId,
    },
    /// Forget a room's placement and release its slots (room closed, or stranded).
    Release {
        /// The room.
        room: RoomKey,
    },
}

/// A change that does not fit the snapshot it is applied to.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// No node with that id (never added, or removed).
    #[error("no node with id {0:?} in the snapshot")]
    UnknownNode(NodeId),
    /// A node name was added twice.
    #[error("a node named {0} is already in the snapshot")]
    DuplicateNode(String),
    /// A node names a zone the fleet does not have.
    #[error("node {node} is in zone {zone}, which is not a zone of the fleet")]
    UnknownZone {
        /// Node name.
        node: String,
        /// Zone it claims.
        zone: String,
    },
    /// The room is already placed; move it instead.
    #[error("room {0} is already placed")]
    AlreadyPlaced(RoomKey),
    /// The room is not placed.
    #[error("room {0} is not placed")]
    UnknownRoom(RoomKey),
    /// A node still hosting rooms cannot be removed.
    #[error("node {node} still hosts {rooms} room(s); move or release them first")]
    NodeHasRooms {
        /// Node name.
        node: String,
        /// Rooms on it.
        rooms: u32,
    },
}
