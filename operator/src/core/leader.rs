//! Leader election over a Lease: what a replica does next, from what it saw of the Lease.
//!
//! Only the local monotonic clock is trusted. A Lease held by another replica is expired when
//! its record (its `resourceVersion`) has not changed for the holder's lease duration, as
//! measured here since we first saw that version; the `renewTime` another host wrote is never
//! compared with our clock. A leader stops acting when it has not renewed successfully for
//! [`ElectionConfig::renew_deadline`], which is shorter than the lease duration, so it has
//! stopped before any peer may take over.

use std::time::{Duration, Instant};

/// Timings of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    /// How long peers wait, after the record last changed, before taking the Lease over.
    pub lease_duration: Duration,
    /// How long a leader keeps acting without a successful renew.
    pub renew_deadline: Duration,
    /// How often each replica reads the Lease and acts on it.
    pub retry_period: Duration,
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timings that would let two replicas act at once, or a leader never renew in time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The lease duration must be longer than the renew deadline.
    #[error("the lease duration ({lease:?}) must be longer than the renew deadline ({renew:?})")]
    RenewDeadlineTooLong {
        /// The lease duration.
        lease: Duration,
        /// The renew deadline.
        renew: Duration,
    },
    /// The retry period must be shorter than the renew deadline, and not zero.
    #[error(
        "the retry period ({retry:?}) must be non-zero and shorter than the renew deadline ({renew:?})"
    )]
    RetryPeriod {
        /// The retry period.
        retry: Duration,
        /// The renew deadline.
        renew: Duration,
    },
}

impl ElectionConfig {
    /// Checks that the timings are safe.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.renew_deadline >= self.lease_duration {
            return Err(ConfigError::RenewDeadlineTooLong {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(ConfigError::RetryPeriod {
                retry: self.retry_period,
                renew: self.renew_deadline,
            });
        }
        Ok(())
    }
}

/// The Lease as read from the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRecord {
    /// `holderIdentity`; `None` when absent or empty, i.e. released.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`, the holder's promise; `None` when absent or not positive.
    pub lease_duration: Option<Duration>,
    /// `resourceVersion`: changes on every write, so it tells renewals apart.
    pub version: String,
}

/// What we know of the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// Not read yet, or not found.
    Absent,
    /// Found.
    Present {
        /// The record last read.
        record: LeaseRecord,
        /// When, on our clock, we first saw this version of the record.
        changed_at: Instant,
    },
}

impl Observed {
    /// Folds a fresh read, made at `now`, into what we knew: the change instant moves only
    /// when the version differs from the one we had.
    ///
    /// `now` should be taken after the read returned: the record cannot have changed later
    /// than that, so the holder is never thought expired too early.
    #[must_use]
    pub fn update(&self, read: Option<LeaseRecord>, now: Instant) -> Self {
        let Some(record) = read else {
            return Self::Absent;
        };
        let changed_at = match self {
            Self::Present {
                record: known,
                changed_at,
            } if known.version == record.version => *changed_at,
            _ => now,
        };
        Self::Present { record, changed_at }
    }
}

/// Whether we lead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We do not lead.
    Follower,
    /// We lead.
    Leader {
        /// When the last successful renew (or the acquisition) was sent, on our clock.
        last_renew: Instant,
    },
}

/// What to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// No Lease: create it, holding it.
    Create,
    /// The Lease is ours: write a new renew time.
    Renew,
    /// The Lease is released or expired: write ourselves as holder.
    TakeOver,
    /// Someone else holds a live Lease: read again later.
    Wait,
    /// We lead but may no longer: stop acting now.
    StepDown,
}

/// What a replica named `identity` does next, at `now`.
pub fn decide(
    observed: &Observed,
    identity: &str,
    role: Role,
    now: Instant,
    config: &ElectionConfig,
) -> Decision {
    // Past the renew deadline, peers may soon take over: whatever the record says, stop.
    if let Role::Leader { last_renew } = role
        && now.saturating_duration_since(last_renew) > config.renew_deadline
    {
        return Decision::StepDown;
    }
    let (record, changed_at) = match observed {
        Observed::Absent => return Decision::Create,
        Observed::Present { record, changed_at } => (record, *changed_at),
    };
    match record.holder.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None => Decision::TakeOver,
        // Someone took it over from us.
        Some(_) if matches!(role, Role::Leader { .. }) => Decision::StepDown,
        Some(_) => {
            // The holder's own promise counts: it steps down by its renew deadline, which is
            // shorter than the duration it wrote.
            let lease = record.lease_duration.unwrap_or(config.lease_duration);
            if now.saturating_duration_since(changed_at) > lease {
                Decision::TakeOver
            } else {
                Decision::Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "ruche-0";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn record(holder: Option<&str>, version: &str) -> LeaseRecord {
        LeaseRecord {
            holder: holder.map(str::to_string),
            lease_duration: Some(secs(15)),
            version: version.to_string(),
        }
    }

    fn seen(holder: Option<&str>, version: &str, at: Instant) -> Observed {
        Observed::Absent.update(Some(record(holder, version)), at)
    }

    #[test]
    fn defaults_are_the_usual_timings_and_are_safe() {
        let c = ElectionConfig::default();
        assert_eq!(
            (c.lease_duration, c.renew_deadline, c.retry_period),
            (secs(15), secs(10), secs(2))
        );
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn unsafe_timings_are_refused() {
        let c = ElectionConfig {
            renew_deadline: secs(15),
            ..ElectionConfig::default()
        };
        assert!(matches!(
            c.check(),
            Err(ConfigError::RenewDeadlineTooLong { .. })
        ));
        let c = ElectionConfig {
            retry_period: secs(10),
            ..ElectionConfig::default()
        };
        assert!(matches!(c.check(), Err(ConfigError::RetryPeriod { .. })));
        let c = ElectionConfig {
            retry_period: Duration::ZERO,
            ..ElectionConfig::default()
        };
        assert!(matches!(c.check(), Err(ConfigError::RetryPeriod { .. })));
    }

    #[test]
    fn an_absent_lease_is_created() {
        let c = ElectionConfig::default();
        let now = Instant::now();
        assert_eq!(
            decide(&Observed::Absent, ME, Role::Follower, now, &c),
            Decision::Create
        );
    }

    #[test]
    fn a_fresh_lease_of_another_is_waited_on() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some("ruche-1"), "10", t0);
        assert_eq!(decide(&o, ME, Role::Follower, t0, &c), Decision::Wait);
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(15), &c),
            Decision::Wait,
            "exactly the lease duration is not past it"
        );
    }

    #[test]
    fn a_lease_unchanged_for_longer_than_its_duration_is_taken_over() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some("ruche-1"), "10", t0);
        // Reading the same version again does not restart the count.
        let o = o.update(Some(record(Some("ruche-1"), "10")), t0 + secs(9));
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(16), &c),
            Decision::TakeOver
        );
    }

    #[test]
    fn a_renewed_lease_restarts_the_count() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some("ruche-1"), "10", t0);
        let o = o.update(Some(record(Some("ruche-1"), "11")), t0 + secs(9));
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(16), &c),
            Decision::Wait
        );
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(25), &c),
            Decision::TakeOver
        );
    }

    #[test]
    fn the_holders_lease_duration_counts_over_ours() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let mut r = record(Some("ruche-1"), "10");
        r.lease_duration = Some(secs(60));
        let o = Observed::Absent.update(Some(r.clone()), t0);
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(30), &c),
            Decision::Wait
        );
        r.lease_duration = None;
        let o = Observed::Absent.update(Some(r), t0);
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(16), &c),
            Decision::TakeOver,
            "without a duration in the record, ours applies"
        );
    }

    #[test]
    fn our_own_lease_is_renewed() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some(ME), "10", t0);
        let leader = Role::Leader { last_renew: t0 };
        assert_eq!(decide(&o, ME, leader, t0 + secs(2), &c), Decision::Renew);
        // After a restart under the same identity, the lease is still ours.
        assert_eq!(
            decide(&o, ME, Role::Follower, t0 + secs(2), &c),
            Decision::Renew
        );
    }

    #[test]
    fn a_leader_that_cannot_renew_past_the_deadline_steps_down() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some(ME), "10", t0);
        let leader = Role::Leader { last_renew: t0 };
        assert_eq!(decide(&o, ME, leader, t0 + secs(10), &c), Decision::Renew);
        assert_eq!(
            decide(&o, ME, leader, t0 + secs(11), &c),
            Decision::StepDown
        );
        assert_eq!(
            decide(&Observed::Absent, ME, leader, t0 + secs(11), &c),
            Decision::StepDown
        );
    }

    #[test]
    fn a_leader_whose_lease_another_holds_steps_down_at_once() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some("ruche-1"), "12", t0);
        let leader = Role::Leader { last_renew: t0 };
        assert_eq!(decide(&o, ME, leader, t0, &c), Decision::StepDown);
    }

    #[test]
    fn a_released_lease_is_taken_over_at_once() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(None, "13", t0);
        assert_eq!(decide(&o, ME, Role::Follower, t0, &c), Decision::TakeOver);
    }

    #[test]
    fn a_lease_deleted_under_us_is_created_again() {
        let c = ElectionConfig::default();
        let t0 = Instant::now();
        let o = seen(Some(ME), "10", t0).update(None, t0 + secs(1));
        assert_eq!(o, Observed::Absent);
        let leader = Role::Leader { last_renew: t0 };
        assert_eq!(decide(&o, ME, leader, t0 + secs(2), &c), Decision::Create);
    }
}
