//! Rooms booked ahead (`Room.spec.startTime`): when their slots are held, and whether the
//! booking itself makes sense.
//!
//! A booked room waits until its start minus the fleet's lead time, then is placed like any
//! room (its slots are held from then on); while it waits for a node, it counts as demand for
//! the autoscaler (see [`super::decide`]), so that the capacity is Ready when the meeting
//! starts. A start already past when the room was created, or further ahead than the horizon,
//! is said in a condition; the first is placed at once, the second waits until it comes
//! within the horizon.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// Where a room stands with respect to its booking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookingState {
    /// No start time: placed at once.
    Unbooked,
    /// Its slots are held from now on: place it.
    Due {
        /// When it starts.
        start: Timestamp,
    },
    /// Booked ahead: nothing to do until `hold_from`.
    Upcoming {
        /// When it starts.
        start: Timestamp,
        /// When its slots are to be held (its start minus the lead time).
        hold_from: Timestamp,
    },
    /// Further ahead than the horizon: waits until `plan_from`.
    BeyondHorizon {
        /// When it starts.
        start: Timestamp,
        /// When it comes within the horizon.
        plan_from: Timestamp,
    },
    /// Its start was already past when it was created: placed at once, like an unbooked room.
    InPast {
        /// When it said it starts.
        start: Timestamp,
        /// When it was created.
        created: Timestamp,
    },
}

impl BookingState {
    /// Whether the room is to be placed now.
    pub fn placeable(self) -> bool {
        matches!(
            self,
            Self::Unbooked | Self::Due { .. } | Self::InPast { .. }
        )
    }
}

/// Classifies a room's booking at `now`.
pub fn classify(
    start: Option<Timestamp>,
    created: Option<Timestamp>,
    now: Timestamp,
    lead: Duration,
    horizon: Duration,
) -> BookingState {
    let Some(start) = start else {
        return BookingState::Unbooked;
    };
    if let Some(created) = created
        && created > start
    {
        return BookingState::InPast { start, created };
    }
    let before = |d: Duration| {
        start
            .checked_sub(SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN)
    };
    let hold_from = before(lead);
    if now >= hold_from {
        return BookingState::Due { start };
    }
    let plan_from = before(horizon);
    if now < plan_from {
        return BookingState::BeyondHorizon { start, plan_from };
    }
    BookingState::Upcoming { start, hold_from }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LEAD: Duration = Duration::from_secs(300);
    const HORIZON: Duration = Duration::from_secs(30 * 86_400);

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn a_booking_is_held_from_its_lead_time() {
        assert_eq!(
            classify(None, Some(t(0)), t(0), LEAD, HORIZON),
            BookingState::Unbooked
        );
        assert_eq!(
            classify(Some(t(3600)), Some(t(0)), t(0), LEAD, HORIZON),
            BookingState::Upcoming {
                start: t(3600),
                hold_from: t(3300)
            }
        );
        assert_eq!(
            classify(Some(t(3600)), Some(t(0)), t(3300), LEAD, HORIZON),
            BookingState::Due { start: t(3600) }
        );
        // Past its start but not placed yet (no node could take it): still due.
        assert!(classify(Some(t(3600)), Some(t(0)), t(7200), LEAD, HORIZON).placeable());
    }

    #[test]
    fn past_and_far_bookings_are_named() {
        assert_eq!(
            classify(Some(t(0)), Some(t(60)), t(60), LEAD, HORIZON),
            BookingState::InPast {
                start: t(0),
                created: t(60)
            }
        );
        assert_eq!(
            classify(Some(t(40 * 86_400)), Some(t(0)), t(0), LEAD, HORIZON),
            BookingState::BeyondHorizon {
                start: t(40 * 86_400),
                plan_from: t(10 * 86_400)
            }
        );
    }

    proptest! {
        #[test]
        fn placeable_exactly_from_start_minus_lead(start in 0i64..100_000, now in 0i64..100_000, lead in 0u64..7200) {
            let state = classify(Some(t(start)), Some(t(0)), t(now), Duration::from_secs(lead), HORIZON);
            prop_assert_eq!(state.placeable(), now >= start - i64::try_from(lead).unwrap_or(0));
        }
    }
}
