//! Admission: whether a participant with a valid join token may join a room
//! on this node right now. Kept pure so every combination of mode, drain,
//! assignment and load can be tested without a running node.

use std::collections::HashSet;

/// Who decides which rooms this node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// Standalone development node: any room may be joined.
    Dev,
    /// Operated by Ruche: only rooms the operator assigned here may be joined.
    Managed,
}

/// Configured load limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Participants this node accepts across all rooms.
    pub capacity_slots: u32,
    /// Participants any one room may hold.
    pub max_participants_per_room: u32,
}

/// What admission needs to know about the node at the moment of a join.
#[derive(Debug, Clone, Copy)]
pub struct NodeState<'a> {
    /// Dev or operator-managed.
    pub mode: NodeMode,
    /// Whether the node is draining (or drained): it starts no new rooms.
    pub draining: bool,
    /// Rooms the operator assigned to this node (used in managed mode only).
    pub assigned: &'a HashSet<String>,
    /// Participants currently connected across all rooms.
    pub participants: u32,
    /// `Some(n)` if the room is live here with `n` participants, `None` if
    /// the join would start it.
    pub room_participants: Option<u32>,
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Managed node, and the operator has not assigned the room here (or has
    /// moved it away).
    #[error("room {room} is not assigned to this media node")]
    NotAssigned {
        /// The room asked for.
        room: String,
    },
    /// The node is draining and does not start new rooms.
    #[error("this media node is draining and does not start new rooms")]
    Draining,
    /// The room already holds its maximum number of participants.
    #[error("room {room} is full ({limit} participants)")]
    RoomFull {
        /// The room asked for.
        room: String,
        /// The per-room participant limit.
        limit: u32,
    },
    /// The node holds its maximum number of participants.
    #[error("this media node is full ({capacity} participants)")]
    NodeFull {
        /// The node's participant capacity.
        capacity: u32,
    },
}

impl Refusal {
    /// Short stable code for metrics labels and signaling error codes.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotAssigned { .. } => "not_assigned",
            Self::Draining => "draining",
            Self::RoomFull { .. } => "room_full",
            Self::NodeFull { .. } => "node_full",
        }
    }
}

/// Decides whether a participant may join `room` now.
///
/// Checks run from the most permanent reason to the most transient, so the
/// participant is told what actually stands in the way:
///
/// 1. **not assigned** (managed mode): the room belongs elsewhere, even if it
///    is still live here, because the operator may have moved it away;
/// 2. **draining**, only for a room not live here: a draining node keeps
///    serving its live rooms, newcomers included, but starts no new room;
/// 3. **room full**: no node can help, the room is pinned here;
/// 4. **node full**: may clear as others leave.
pub fn admit(state: &NodeState<'_>, limits: &Limits, room: &str) -> Result<(), Refusal> {
    if state.mode == NodeMode::Managed && !state.assigned.contains(room) {
        return Err(Refusal::NotAssigned {
            room: room.to_owned(),
        });
    }
    match state.room_participants {
        None if state.draining => return Err(Refusal::Draining),
        Some(n) if n >= limits.max_participants_per_room => {
            return Err(Refusal::RoomFull {
                room: room.to_owned(),
                limit: limits.max_participants_per_room,
            });
        }
        _ => {}
    }
    if state.participants >= limits.capacity_slots {
        return Err(Refusal::NodeFull {
            capacity: limits.capacity_slots,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        capacity_slots: 100,
        max_participants_per_room: 12,
    };

    fn assigned(rooms: &[&str]) -> HashSet<String> {
        rooms.iter().map(|r| (*r).to_owned()).collect()
    }

    fn state(assigned: &HashSet<String>) -> NodeState<'_> {
        NodeState {
            mode: NodeMode::Managed,
            draining: false,
            assigned,
            participants: 10,
            room_participants: Some(3),
        }
    }

    #[test]
    fn assigned_room_with_room_to_spare_is_admitted() {
        let rooms = assigned(&["weekly-sync"]);
        assert_eq!(admit(&state(&rooms), &LIMITS, "weekly-sync"), Ok(()));
        let new_room = NodeState {
            room_participants: None,
            ..state(&rooms)
        };
        assert_eq!(admit(&new_room, &LIMITS, "weekly-sync"), Ok(()));
    }

    #[test]
    fn managed_node_refuses_unassigned_room_even_if_live() {
        let rooms = assigned(&["other"]);
        let err = admit(&state(&rooms), &LIMITS, "weekly-sync").unwrap_err();
        assert_eq!(
            err,
            Refusal::NotAssigned {
                room: "weekly-sync".to_owned()
            }
        );
        assert_eq!(err.code(), "not_assigned");
        assert_eq!(
            err.to_string(),
            "room weekly-sync is not assigned to this media node"
        );
    }

    #[test]
    fn not_assigned_wins_over_every_other_reason() {
        let rooms = assigned(&[]);
        let everything_wrong = NodeState {
            draining: true,
            participants: 100,
            room_participants: None,
            ..state(&rooms)
        };
        assert_eq!(
            admit(&everything_wrong, &LIMITS, "r").map_err(|e| e.code()),
            Err("not_assigned")
        );
    }

    #[test]
    fn dev_node_accepts_any_room() {
        let rooms = assigned(&[]);
        let dev = NodeState {
            mode: NodeMode::Dev,
            room_participants: None,
            ..state(&rooms)
        };
        assert_eq!(admit(&dev, &LIMITS, "anything"), Ok(()));
    }

    #[test]
    fn draining_node_refuses_new_room() {
        let rooms = assigned(&["weekly-sync"]);
        let draining = NodeState {
            draining: true,
            room_participants: None,
            ..state(&rooms)
        };
        let err = admit(&draining, &LIMITS, "weekly-sync").unwrap_err();
        assert_eq!(err, Refusal::Draining);
        assert_eq!(err.code(), "draining");
        let dev = NodeState {
            mode: NodeMode::Dev,
            ..draining
        };
        assert_eq!(admit(&dev, &LIMITS, "x"), Err(Refusal::Draining));
    }

    #[test]
    fn draining_node_admits_newcomers_to_live_rooms() {
        let rooms = assigned(&["weekly-sync"]);
        let draining = NodeState {
            draining: true,
            room_participants: Some(4),
            ..state(&rooms)
        };
        assert_eq!(admit(&draining, &LIMITS, "weekly-sync"), Ok(()));
    }

    #[test]
    fn draining_wins_over_node_full_for_a_new_room() {
        let rooms = assigned(&["r"]);
        let s = NodeState {
            draining: true,
            participants: 100,
            room_participants: None,
            ..state(&rooms)
        };
        assert_eq!(admit(&s, &LIMITS, "r"), Err(Refusal::Draining));
    }

    #[test]
    fn full_room_is_refused() {
        let rooms = assigned(&["weekly-sync"]);
        let full = NodeState {
            room_participants: Some(12),
            ..state(&rooms)
        };
        let err = admit(&full, &LIMITS, "weekly-sync").unwrap_err();
        assert_eq!(
            err,
            Refusal::RoomFull {
                room: "weekly-sync".to_owned(),
                limit: 12
            }
        );
        assert_eq!(err.code(), "room_full");
        assert_eq!(
            err.to_string(),
            "room weekly-sync is full (12 participants)"
        );

        let one_below = NodeState {
            room_participants: Some(11),
            ..state(&rooms)
        };
        assert_eq!(admit(&one_below, &LIMITS, "weekly-sync"), Ok(()));
    }

    #[test]
    fn room_full_wins_over_node_full_and_applies_while_draining() {
        let rooms = assigned(&["r"]);
        let s = NodeState {
            draining: true,
            participants: 500,
            room_participants: Some(20),
            ..state(&rooms)
        };
        assert_eq!(
            admit(&s, &LIMITS, "r").map_err(|e| e.code()),
            Err("room_full")
        );
    }

    #[test]
    fn full_node_is_refused() {
        let rooms = assigned(&["r"]);
        let full = NodeState {
            participants: 100,
            ..state(&rooms)
        };
        let err = admit(&full, &LIMITS, "r").unwrap_err();
        assert_eq!(err, Refusal::NodeFull { capacity: 100 });
        assert_eq!(err.code(), "node_full");
        assert_eq!(
            err.to_string(),
            "this media node is full (100 participants)"
        );

        let new_room = NodeState {
            room_participants: None,
            ..full
        };
        assert_eq!(
            admit(&new_room, &LIMITS, "r"),
            Err(Refusal::NodeFull { capacity: 100 })
        );
        let one_below = NodeState {
            participants: 99,
            ..full
        };
        assert_eq!(admit(&one_below, &LIMITS, "r"), Ok(()));
    }

    #[test]
    fn zero_limits_refuse_everything() {
        let rooms = assigned(&["r"]);
        let zero = Limits {
            capacity_slots: 0,
            max_participants_per_room: 0,
        };
        let empty = NodeState {
            participants: 0,
            room_participants: None,
            ..state(&rooms)
        };
        assert_eq!(
            admit(&empty, &zero, "r"),
            Err(Refusal::NodeFull { capacity: 0 })
        );
        let live = NodeState {
            room_participants: Some(0),
            ..empty
        };
        assert_eq!(
            admit(&live, &zero, "r").map_err(|e| e.code()),
            Err("room_full")
        );
    }

    fn room_name() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "weekly-sync"]).prop_map(str::to_owned)
    }

    proptest! {
        #[test]
        fn admits_exactly_when_every_condition_holds(
            managed in any::<bool>(),
            draining in any::<bool>(),
            assigned in prop::collection::hash_set(room_name(), 0..4),
            participants in 0u32..40,
            room_participants in prop::option::of(0u32..20),
            capacity_slots in 0u32..40,
            max_participants_per_room in 0u32..20,
            room in room_name(),
        ) {
            let mode = if managed { NodeMode::Managed } else { NodeMode::Dev };
            let state = NodeState { mode, draining, assigned: &assigned, participants, room_participants };
            let limits = Limits { capacity_slots, max_participants_per_room };

            let allowed_here = !managed || assigned.contains(&room);
            let may_start_or_is_live = !draining || room_participants.is_some();
            let room_has_space = room_participants.is_none_or(|n| n < max_participants_per_room);
            let node_has_space = participants < capacity_slots;

            let result = admit(&state, &limits, &room);
            prop_assert_eq!(
                result.is_ok(),
                allowed_here && may_start_or_is_live && room_has_space && node_has_space
            );
            // The refusal is the first failing condition in the documented order.
            if let Err(refusal) = result {
                let expected = if !allowed_here {
                    "not_assigned"
                } else if !may_start_or_is_live {
                    "draining"
                } else if !room_has_space {
                    "room_full"
                } else {
                    "node_full"
                };
                prop_assert_eq!(refusal.code(), expected);
            }
        }
    }
}
