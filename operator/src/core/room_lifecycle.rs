//! A room's phase, and when an empty room is closed.
//!
//! A room is Pending until placed, Scheduled once placed, Active while participants are
//! connected, Migrating while it moves, and Closed after it has had no participant for its
//! empty timeout (counted from the last moment it had one, or from its placement if nobody ever
//! came).

use std::time::Duration;

use ruche_crds::RoomPhase;

/// What the room controller knows of a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoomView {
    /// Whether it has a node.
    pub placed: bool,
    /// Whether it is being moved to another node.
    pub migrating: bool,
    /// Participants its node reports.
    pub participants: u32,
    /// How long it has had no participant (`None` while it has some, or before placement).
    pub empty_for: Option<Duration>,
}

/// The room's phase.
pub fn phase(room: RoomView) -> RoomPhase {
    match room {
        RoomView { placed: false, .. } => RoomPhase::Pending,
        RoomView {
            migrating: true, ..
        } => RoomPhase::Migrating,
        RoomView {
            participants: 0, ..
        } => RoomPhase::Scheduled,
        _ => RoomPhase::Active,
    }
}

/// Whether the room should be closed now.
pub fn should_close(room: RoomView, empty_timeout: Duration) -> bool {
    room.placed
        && !room.migrating
        && room.participants == 0
        && room.empty_for.is_some_and(|empty| empty >= empty_timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_follow_placement_and_participants() {
        let base = RoomView {
            placed: false,
            migrating: false,
            participants: 0,
            empty_for: None,
        };
        assert_eq!(phase(base), RoomPhase::Pending);
        assert_eq!(
            phase(RoomView {
                placed: true,
                ..base
            }),
            RoomPhase::Scheduled
        );
        assert_eq!(
            phase(RoomView {
                placed: true,
                participants: 3,
                ..base
            }),
            RoomPhase::Active
        );
        assert_eq!(
            phase(RoomView {
                placed: true,
                migrating: true,
                participants: 3,
                ..base
            }),
            RoomPhase::Migrating
        );
    }

    #[test]
    fn an_empty_room_closes_after_its_timeout_and_not_before() {
        let timeout = Duration::from_secs(300);
        let empty_for = |s| RoomView {
            placed: true,
            migrating: false,
            participants: 0,
            empty_for: Some(Duration::from_secs(s)),
        };
        let empty = empty_for(900);
        assert!(!should_close(empty_for(299), timeout));
        assert!(should_close(empty_for(300), timeout));
        assert!(!should_close(
            RoomView {
                participants: 1,
                ..empty
            },
            timeout
        ));
        assert!(
            !should_close(
                RoomView {
                    migrating: true,
                    ..empty
                },
                timeout
            ),
            "never while it moves"
        );
        assert!(
            !should_close(
                RoomView {
                    placed: false,
                    ..empty
                },
                timeout
            ),
            "a pending room waits for capacity"
        );
    }
}
