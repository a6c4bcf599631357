//! Drain lifecycle: a draining node keeps serving its live rooms but starts
//! no new one, until they all end (Drained) or a deadline passes. Pure, with
//! the clock passed in, so every transition is testable without waiting.

use std::fmt;
use std::time::Instant;

/// Where the node is in its drain lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepting new rooms.
    Ready,
    /// Serving live rooms only, waiting for them to end.
    Draining,
    /// Draining and no room is left.
    Drained,
}

impl Phase {
    /// The name reported in status and metrics: `Ready`, `Draining`, `Drained`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "Ready",
            Self::Draining => "Draining",
            Self::Drained => "Drained",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for the drain, which decides whether the process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainReason {
    /// Through the admin API (e.g. by the operator before moving rooms): the
    /// process keeps running, so the drain can be cancelled.
    Admin,
    /// SIGTERM: the pod is being deleted, so the process exits once drained
    /// or at the deadline, and the drain cannot be cancelled.
    Signal,
}

/// Something [`Drain::tick`] noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEvent {
    /// The last live room ended: the phase is now Drained.
    Drained,
    /// The deadline passed with rooms still live (reported once per deadline).
    DeadlineReached {
        /// Rooms still live at that moment.
        live_rooms: usize,
    },
}

/// The drain state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drain {
    phase: Phase,
    reason: Option<DrainReason>,
    since: Option<Instant>,
    deadline: Option<Instant>,
    deadline_reported: bool,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A node that is Ready.
    pub fn new() -> Self {
        Self {
            phase: Phase::Ready,
            reason: None,
            since: None,
            deadline: None,
            deadline_reported: false,
        }
    }

    /// Starts draining at `now`, optionally until `deadline`; returns whether
    /// anything changed.
    ///
    /// Starting again while draining (or drained) keeps the original start
    /// time and:
    /// - turns the drain into a [`DrainReason::Signal`] drain if this start
    ///   is one; a signal drain never turns back into an admin drain;
    /// - for an admin drain restarted by the admin, replaces the deadline
    ///   (later, earlier, or `None` for no deadline);
    /// - when a signal is involved, keeps the earlier of the two deadlines,
    ///   since the kubelet kills the process at its own deadline anyway.
    ///
    /// A moved deadline will be reported again by [`Drain::tick`].
    pub fn start(&mut self, now: Instant, deadline: Option<Instant>, reason: DrainReason) -> bool {
        let Some(current) = self.reason else {
            *self = Self {
                phase: Phase::Draining,
                reason: Some(reason),
                since: Some(now),
                deadline,
                deadline_reported: false,
            };
            return true;
        };
        let signal = current == DrainReason::Signal || reason == DrainReason::Signal;
        let new_reason = if signal {
            DrainReason::Signal
        } else {
            DrainReason::Admin
        };
        let new_deadline = if signal {
            earliest(self.deadline, deadline)
        } else {
            deadline
        };
        let changed = new_reason != current || new_deadline != self.deadline;
        if new_deadline != self.deadline {
            self.deadline_reported = false;
        }
        self.reason = Some(new_reason);
        self.deadline = new_deadline;
        changed
    }

    /// Goes back to Ready from Draining or Drained; returns whether anything
    /// changed.
    ///
    /// Drained can be cancelled too: the node stays able to serve until its
    /// process exits, which an admin drain never causes. A signal drain is
    /// not cancelled (returns false): the pod is terminating and new rooms
    /// would be cut off. Check [`Drain::reason`] to tell the two apart.
    pub fn cancel(&mut self) -> bool {
        match self.reason {
            Some(DrainReason::Admin) => {
                *self = Self::new();
                true
            }
            Some(DrainReason::Signal) | None => false,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Who started the current drain; `None` when Ready.
    pub fn reason(&self) -> Option<DrainReason> {
        self.reason
    }

    /// When the current drain must end, if it has a deadline.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// When the current drain started; `None` when Ready.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Whether new rooms must be refused (Draining or Drained).
    pub fn is_draining(&self) -> bool {
        self.phase != Phase::Ready
    }

    /// Advances the drain given the time and the number of live rooms.
    ///
    /// Draining with no live room becomes Drained. A room that shows up while
    /// Drained (a join admitted just before the drain began) puts the node
    /// back to Draining, without an event, so it is not reported empty while
    /// serving someone.
    pub fn tick(&mut self, now: Instant, live_rooms: usize) -> Option<DrainEvent> {
        match self.phase {
            Phase::Ready => None,
            Phase::Drained => {
                if live_rooms > 0 {
                    self.phase = Phase::Draining;
                }
                None
            }
            Phase::Draining if live_rooms == 0 => {
                self.phase = Phase::Drained;
                Some(DrainEvent::Drained)
            }
            Phase::Draining => match self.deadline {
                Some(deadline) if now >= deadline && !self.deadline_reported => {
                    self.deadline_reported = true;
                    Some(DrainEvent::DeadlineReached { live_rooms })
                }
                _ => None,
            },
        }
    }

    /// Whether the process should exit now: only for a signal drain, once
    /// Drained or once its deadline has passed. An admin drain never exits.
    pub fn exit_now(&self, now: Instant) -> bool {
        self.reason == Some(DrainReason::Signal)
            && (self.phase == Phase::Drained || self.deadline.is_some_and(|d| now >= d))
    }
}

/// The earlier of two optional deadlines, where `None` means no deadline.
fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn new_is_ready_and_ticks_do_nothing() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        assert_eq!(drain, Drain::default());
        assert_eq!(drain.phase(), Phase::Ready);
        assert_eq!(drain.reason(), None);
        assert_eq!(drain.since(), None);
        assert_eq!(drain.deadline(), None);
        assert!(!drain.is_draining());
        assert_eq!(drain.tick(t0, 0), None);
        assert_eq!(drain.tick(t0 + secs(1000), 3), None);
        assert_eq!(drain.phase(), Phase::Ready);
        assert!(!drain.exit_now(t0));
    }

    #[test]
    fn phase_names() {
        assert_eq!(Phase::Ready.as_str(), "Ready");
        assert_eq!(Phase::Draining.as_str(), "Draining");
        assert_eq!(Phase::Drained.as_str(), "Drained");
        assert_eq!(Phase::Draining.to_string(), "Draining");
    }

    #[test]
    fn start_moves_to_draining() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        assert!(drain.start(t0, Some(t0 + secs(60)), DrainReason::Admin));
        assert_eq!(drain.phase(), Phase::Draining);
        assert!(drain.is_draining());
        assert_eq!(drain.reason(), Some(DrainReason::Admin));
        assert_eq!(drain.since(), Some(t0));
        assert_eq!(drain.deadline(), Some(t0 + secs(60)));
    }

    #[test]
    fn draining_with_live_rooms_stays_draining() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Admin);
        assert_eq!(drain.tick(t0 + secs(1), 2), None);
        assert_eq!(drain.tick(t0 + secs(10_000), 1), None);
        assert_eq!(drain.phase(), Phase::Draining);
    }

    #[test]
    fn drained_when_last_room_ends() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(60)), DrainReason::Admin);
        assert_eq!(drain.tick(t0 + secs(1), 1), None);
        assert_eq!(drain.tick(t0 + secs(2), 0), Some(DrainEvent::Drained));
        assert_eq!(drain.phase(), Phase::Drained);
        assert!(drain.is_draining());
        // Reported once.
        assert_eq!(drain.tick(t0 + secs(3), 0), None);
        assert_eq!(drain.tick(t0 + secs(100), 0), None);
        assert_eq!(drain.phase(), Phase::Drained);
    }

    #[test]
    fn empty_node_drains_on_first_tick() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Signal);
        assert_eq!(drain.tick(t0, 0), Some(DrainEvent::Drained));
    }

    #[test]
    fn room_appearing_after_drained_returns_to_draining() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Admin);
        assert_eq!(drain.tick(t0, 0), Some(DrainEvent::Drained));
        assert_eq!(drain.tick(t0 + secs(1), 1), None);
        assert_eq!(drain.phase(), Phase::Draining);
        assert_eq!(drain.tick(t0 + secs(2), 0), Some(DrainEvent::Drained));
    }

    #[test]
    fn deadline_is_reported_once() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Admin);
        assert_eq!(drain.tick(t0 + secs(29), 2), None);
        assert_eq!(
            drain.tick(t0 + secs(30), 2),
            Some(DrainEvent::DeadlineReached { live_rooms: 2 })
        );
        assert_eq!(drain.tick(t0 + secs(31), 2), None);
        assert_eq!(drain.tick(t0 + secs(90), 1), None);
        assert_eq!(drain.phase(), Phase::Draining);
        // Rooms ending after the deadline still complete the drain.
        assert_eq!(drain.tick(t0 + secs(91), 0), Some(DrainEvent::Drained));
    }

    #[test]
    fn deadline_already_past_at_start_is_reported_on_first_tick() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0 + secs(10), Some(t0), DrainReason::Admin);
        assert_eq!(
            drain.tick(t0 + secs(10), 1),
            Some(DrainEvent::DeadlineReached { live_rooms: 1 })
        );
    }

    #[test]
    fn admin_restart_replaces_deadline_and_reports_again() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Admin);
        assert!(drain.tick(t0 + secs(30), 1).is_some());

        // Extended: a new deadline, reported when it passes.
        assert!(drain.start(t0 + secs(40), Some(t0 + secs(120)), DrainReason::Admin));
        assert_eq!(drain.since(), Some(t0));
        assert_eq!(drain.deadline(), Some(t0 + secs(120)));
        assert_eq!(drain.tick(t0 + secs(41), 1), None);
        assert_eq!(
            drain.tick(t0 + secs(120), 1),
            Some(DrainEvent::DeadlineReached { live_rooms: 1 })
        );

        // Shortened, then removed.
        assert!(drain.start(t0 + secs(130), Some(t0 + secs(125)), DrainReason::Admin));
        assert_eq!(drain.deadline(), Some(t0 + secs(125)));
        assert!(drain.start(t0 + secs(131), None, DrainReason::Admin));
        assert_eq!(drain.deadline(), None);
        assert_eq!(drain.tick(t0 + secs(10_000), 1), None);
    }

    #[test]
    fn restart_with_same_deadline_changes_nothing() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Admin);
        assert!(drain.tick(t0 + secs(30), 1).is_some());
        assert!(!drain.start(t0 + secs(31), Some(t0 + secs(30)), DrainReason::Admin));
        // Not reported a second time.
        assert_eq!(drain.tick(t0 + secs(32), 1), None);
    }

    #[test]
    fn signal_upgrades_admin_drain_and_keeps_earliest_deadline() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Admin);
        assert!(!drain.exit_now(t0 + secs(1_000)));

        assert!(drain.start(t0 + secs(5), Some(t0 + secs(35)), DrainReason::Signal));
        assert_eq!(drain.reason(), Some(DrainReason::Signal));
        assert_eq!(drain.deadline(), Some(t0 + secs(35)));
        assert_eq!(drain.since(), Some(t0));

        // An admin cannot extend or remove a signal drain's deadline...
        assert!(!drain.start(t0 + secs(6), Some(t0 + secs(600)), DrainReason::Admin));
        assert!(!drain.start(t0 + secs(6), None, DrainReason::Admin));
        assert_eq!(drain.deadline(), Some(t0 + secs(35)));
        assert_eq!(drain.reason(), Some(DrainReason::Signal));
        // ...but may bring it forward.
        assert!(drain.start(t0 + secs(7), Some(t0 + secs(20)), DrainReason::Admin));
        assert_eq!(drain.deadline(), Some(t0 + secs(20)));
    }

    #[test]
    fn signal_after_admin_deadline_keeps_the_earlier_one() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(10)), DrainReason::Admin);
        assert!(drain.start(t0, Some(t0 + secs(30)), DrainReason::Signal));
        assert_eq!(drain.deadline(), Some(t0 + secs(10)));
        assert!(drain.exit_now(t0 + secs(10)));
    }

    #[test]
    fn second_signal_without_deadline_keeps_first_deadline() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Signal);
        assert!(!drain.start(t0 + secs(1), None, DrainReason::Signal));
        assert_eq!(drain.deadline(), Some(t0 + secs(30)));
    }

    #[test]
    fn signal_drain_exits_when_drained() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Signal);
        assert_eq!(drain.tick(t0 + secs(1), 1), None);
        assert!(!drain.exit_now(t0 + secs(1)));
        assert_eq!(drain.tick(t0 + secs(2), 0), Some(DrainEvent::Drained));
        assert!(drain.exit_now(t0 + secs(2)));
    }

    #[test]
    fn signal_drain_exits_at_deadline() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Signal);
        assert!(!drain.exit_now(t0 + secs(29)));
        assert_eq!(
            drain.tick(t0 + secs(30), 3),
            Some(DrainEvent::DeadlineReached { live_rooms: 3 })
        );
        assert!(drain.exit_now(t0 + secs(30)));
    }

    #[test]
    fn signal_drain_without_deadline_exits_only_when_drained() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Signal);
        assert_eq!(drain.tick(t0 + secs(10_000), 1), None);
        assert!(!drain.exit_now(t0 + secs(10_000)));
        drain.tick(t0 + secs(10_001), 0);
        assert!(drain.exit_now(t0 + secs(10_001)));
    }

    #[test]
    fn admin_drain_never_exits() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(5)), DrainReason::Admin);
        drain.tick(t0 + secs(6), 1);
        assert!(!drain.exit_now(t0 + secs(6)));
        drain.tick(t0 + secs(7), 0);
        assert_eq!(drain.phase(), Phase::Drained);
        assert!(!drain.exit_now(t0 + secs(7)));
    }

    #[test]
    fn admin_drained_node_exits_when_signalled() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Admin);
        drain.tick(t0, 0);
        assert!(!drain.exit_now(t0));
        assert!(drain.start(t0 + secs(1), Some(t0 + secs(31)), DrainReason::Signal));
        assert_eq!(drain.phase(), Phase::Drained);
        assert!(drain.exit_now(t0 + secs(1)));
    }

    #[test]
    fn cancel_from_draining_returns_to_ready() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Admin);
        assert!(drain.cancel());
        assert_eq!(drain, Drain::new());
        assert_eq!(drain.phase(), Phase::Ready);
        assert_eq!(drain.since(), None);
        assert_eq!(drain.deadline(), None);
        // The old deadline no longer fires.
        assert_eq!(drain.tick(t0 + secs(31), 2), None);
    }

    #[test]
    fn cancel_from_drained_returns_to_ready() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, None, DrainReason::Admin);
        assert_eq!(drain.tick(t0, 0), Some(DrainEvent::Drained));
        assert!(drain.cancel());
        assert_eq!(drain.phase(), Phase::Ready);
        assert_eq!(drain.tick(t0 + secs(1), 0), None);
    }

    #[test]
    fn cancel_when_ready_changes_nothing() {
        let mut drain = Drain::new();
        assert!(!drain.cancel());
        assert_eq!(drain.phase(), Phase::Ready);
    }

    #[test]
    fn signal_drain_cannot_be_cancelled() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(30)), DrainReason::Signal);
        assert!(!drain.cancel());
        assert_eq!(drain.phase(), Phase::Draining);
        assert_eq!(drain.reason(), Some(DrainReason::Signal));
    }

    #[test]
    fn drain_after_cancel_starts_afresh() {
        let t0 = Instant::now();
        let mut drain = Drain::new();
        drain.start(t0, Some(t0 + secs(5)), DrainReason::Admin);
        assert!(drain.tick(t0 + secs(5), 1).is_some());
        drain.cancel();
        assert!(drain.start(t0 + secs(60), Some(t0 + secs(90)), DrainReason::Admin));
        assert_eq!(drain.since(), Some(t0 + secs(60)));
        assert_eq!(drain.tick(t0 + secs(89), 1), None);
        assert_eq!(
            drain.tick(t0 + secs(90), 1),
            Some(DrainEvent::DeadlineReached { live_rooms: 1 })
        );
    }

    #[test]
    fn earliest_deadline() {
        let t0 = Instant::now();
        let t1 = t0 + secs(1);
        assert_eq!(earliest(None, None), None);
        assert_eq!(earliest(Some(t0), None), Some(t0));
        assert_eq!(earliest(None, Some(t1)), Some(t1));
        assert_eq!(earliest(Some(t1), Some(t0)), Some(t0));
    }
}
