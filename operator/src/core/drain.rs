//! What a draining node's deadline asks for, and how its drain is told in its status.
//!
//! A drain stops new rooms at once (the node is cordoned in the snapshot); what happens to the
//! rooms still on it is decided here, from the drain request, the rooms left and the time, all
//! passed in: before the deadline they may end on their own; at the deadline mode `Migrate`
//! moves every room that has somewhere to go, mode `Wait` keeps waiting and says so. A deadline
//! already past when the drain was set is honoured at once, and said to be so.

use jiff::Timestamp;
use ruche_crds::DrainMode;

use super::fleet_plan::DrainCause;

/// A drain as the core sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DrainView {
    /// When rooms still live must be dealt with (`None`: never).
    pub deadline: Option<Timestamp>,
    /// What happens to them then.
    pub mode: DrainMode,
    /// Why the node drains.
    pub cause: DrainCause,
    /// When the operator first saw the drain (`None`: now).
    pub since: Option<Timestamp>,
}

/// What the drain asks for now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainStep {
    /// No room left on the node: it is drained.
    Empty,
    /// Rooms may end on their own; look again at the deadline, if any.
    Waiting {
        /// The deadline.
        until: Option<Timestamp>,
    },
    /// The deadline has come, mode `Migrate`: move every room that can go.
    Migrate,
    /// The deadline has passed, mode `Wait`: rooms stay until they end.
    Overdue,
}

impl DrainView {
    /// Whether the deadline was already past when the drain was set (bad input, honoured at
    /// once, and said to be so).
    pub fn deadline_was_past(&self) -> bool {
        matches!((self.deadline, self.since), (Some(d), Some(s)) if d < s)
    }

    /// What the drain asks for, with `rooms` still placed on the node at `now`.
    pub fn step(&self, rooms: u32, now: Timestamp) -> DrainStep {
        if rooms == 0 {
            return DrainStep::Empty;
        }
        match self.deadline {
            Some(deadline) if deadline <= now => match self.mode {
                DrainMode::Migrate => DrainStep::Migrate,
                DrainMode::Wait => DrainStep::Overdue,
            },
            until => DrainStep::Waiting { until },
        }
    }

    /// The `Draining` condition's reason and message for that step.
    pub fn describe(&self, step: DrainStep, rooms: u32, stranded: u32) -> (&'static str, String) {
        let cause = self.cause;
        let deadline = self
            .deadline
            .map_or_else(|| "no deadline".to_string(), |d| format!("deadline {d}"));
        match step {
            DrainStep::Empty => ("Drained", format!("{cause}: drained, no room left")),
            DrainStep::Waiting { .. } => (
                cause.as_str(),
                format!(
                    "{cause}: no new room; {rooms} room(s) left, {deadline}, then {}",
                    match self.mode {
                        DrainMode::Migrate => "they move to other nodes",
                        DrainMode::Wait => "they are waited for",
                    }
                ),
            ),
            DrainStep::Migrate if stranded > 0 => (
                "MigrationBlocked",
                format!(
                    "{cause}: {deadline} reached; {stranded} of {rooms} room(s) have nowhere to go and stay here (see their Migration condition)"
                ),
            ),
            DrainStep::Migrate => (
                "Migrating",
                format!("{cause}: {deadline} reached; moving {rooms} room(s) to other nodes"),
            ),
            DrainStep::Overdue => (
                "DeadlinePassed",
                format!(
                    "{cause}: {deadline} passed with {rooms} room(s) left; mode Wait: waiting for them to end"
                ),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn view(deadline: Option<i64>, mode: DrainMode) -> DrainView {
        DrainView {
            deadline: deadline.map(at),
            mode,
            cause: DrainCause::Manual,
            since: Some(at(0)),
        }
    }

    #[test]
    fn before_the_deadline_rooms_are_waited_for_then_moved_or_still_waited_for() {
        let migrate = view(Some(60), DrainMode::Migrate);
        assert_eq!(
            migrate.step(3, at(10)),
            DrainStep::Waiting {
                until: Some(at(60))
            }
        );
        assert_eq!(migrate.step(3, at(60)), DrainStep::Migrate);
        assert_eq!(migrate.step(0, at(60)), DrainStep::Empty);
        let wait = view(Some(60), DrainMode::Wait);
        assert_eq!(wait.step(3, at(61)), DrainStep::Overdue);
        let (reason, message) = wait.describe(DrainStep::Overdue, 3, 0);
        assert_eq!(reason, "DeadlinePassed");
        assert!(message.contains("3 room(s) left"), "{message}");
        let never = view(None, DrainMode::Migrate);
        assert_eq!(
            never.step(3, at(1_000_000)),
            DrainStep::Waiting { until: None }
        );
    }

    #[test]
    fn a_deadline_in_the_past_is_honoured_at_once_and_said() {
        let past = view(Some(-30), DrainMode::Migrate);
        assert!(past.deadline_was_past());
        assert_eq!(past.step(2, at(0)), DrainStep::Migrate);
        assert!(!view(Some(30), DrainMode::Migrate).deadline_was_past());
        assert!(!view(None, DrainMode::Migrate).deadline_was_past());
    }

    #[test]
    fn blocked_rooms_are_named_in_the_reason() {
        let v = view(Some(0), DrainMode::Migrate);
        assert_eq!(v.describe(DrainStep::Migrate, 4, 1).0, "MigrationBlocked");
        assert_eq!(v.describe(DrainStep::Migrate, 4, 0).0, "Migrating");
        assert_eq!(
            v.describe(DrainStep::Waiting { until: None }, 4, 0).0,
            "Manual"
        );
    }

    proptest! {
        /// Nothing moves before the deadline; at or after it, mode alone decides; an empty
        /// node is drained whatever the clock says.
        #[test]
        fn the_step_follows_the_deadline_and_the_mode(
            deadline in proptest::option::of(-100i64..100),
            now in -100i64..200,
            rooms in 0u32..5,
            wait in any::<bool>(),
        ) {
            let mode = if wait { DrainMode::Wait } else { DrainMode::Migrate };
            let step = view(deadline, mode).step(rooms, at(now));
            let due = deadline.is_some_and(|d| d <= now);
            match step {
                DrainStep::Empty => prop_assert_eq!(rooms, 0),
                DrainStep::Waiting { .. } => prop_assert!(rooms > 0 && !due),
                DrainStep::Migrate => prop_assert!(rooms > 0 && due && !wait),
                DrainStep::Overdue => prop_assert!(rooms > 0 && due && wait),
            }
        }
    }
}
