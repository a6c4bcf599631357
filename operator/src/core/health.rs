//! A media node's phase, from its pod and from the operator's polls of its admin API.
//!
//! A node is Pending until its pod runs, Starting until its admin API answers, then Ready,
//! Draining or Drained as the node itself reports. It becomes Failed when its pod fails or
//! disappears after having run, or when two witnesses agree that it is dead: the operator's
//! polls (at least [`HealthPolicy::missed_polls`] missed in a row, and silent for
//! [`HealthPolicy::failure_timeout`], or never answered within
//! [`HealthPolicy::startup_timeout`]) and the pod's own readiness (the kubelet's probe of the
//! node's `/readyz` fails too). When they disagree — the kubelet sees the node ready, the
//! operator cannot reach it — the node is Unreachable: it keeps its phase and its rooms, and
//! takes no new room. Failed is final: the fleet replaces the node.

use std::time::{Duration, Instant};

use ruche_crds::NodePhase;

/// The pod of a node, as the shell sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodState {
    /// No pod (not created yet, or deleted).
    Absent,
    /// Created, not running yet (scheduling, pulling the image).
    Pending,
    /// Running since the given instant.
    Running {
        /// When it started running.
        since: Instant,
        /// Whether the pod's `Ready` condition is True (its readiness probe passes).
        ready: bool,
    },
    /// Exited or evicted.
    Gone,
}

/// What the node's admin API last said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reported {
    /// Taking rooms.
    Ready,
    /// Draining.
    Draining,
    /// Drained: no room left.
    Drained,
}

/// The polls' outcome so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Polls {
    /// When the admin API last answered, and what it said.
    pub last_ok: Option<(Instant, Reported)>,
    /// Polls missed in a row since.
    pub missed: u32,
}

/// Timeouts of the health rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// A running node silent this long (and not ready) is Failed.
    pub failure_timeout: Duration,
    /// A pod running this long without ever answering (and not ready) is Failed.
    pub startup_timeout: Duration,
    /// Polls missed in a row before silence counts: one slow answer is not a failure.
    pub missed_polls: u32,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failure_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(120),
            missed_polls: 3,
        }
    }
}

impl HealthPolicy {
    /// Whether the polls say the node has been silent too long: enough misses in a row, and
    /// no answer for the failure timeout.
    pub fn silent_too_long(&self, polls: Polls, now: Instant) -> bool {
        polls.missed >= self.missed_polls
            && polls
                .last_ok
                .is_some_and(|(at, _)| now.saturating_duration_since(at) > self.failure_timeout)
    }
}

/// A node's health: its phase, and whether the operator cannot reach it though its pod is
/// ready.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    /// The phase.
    pub phase: NodePhase,
    /// The operator's polls fail but the kubelet sees the node ready: no new room for it.
    pub unreachable: bool,
}

impl Health {
    fn phase(phase: NodePhase) -> Self {
        Self {
            phase,
            unreachable: false,
        }
    }

    fn unreachable(phase: NodePhase) -> Self {
        Self {
            phase,
            unreachable: true,
        }
    }
}

/// The node's health now.
pub fn phase(
    previous: NodePhase,
    pod: PodState,
    polls: Polls,
    now: Instant,
    policy: HealthPolicy,
) -> Health {
    if previous == NodePhase::Failed {
        return Health::phase(NodePhase::Failed);
    }
    let has_run = polls.last_ok.is_some()
        || matches!(
            previous,
            NodePhase::Ready | NodePhase::Draining | NodePhase::Drained
        );
    // Silence is a failure only when the pod's readiness agrees.
    let silent = |phase: NodePhase, ready: bool| {
        if ready {
            Health::unreachable(phase)
        } else {
            Health::phase(NodePhase::Failed)
        }
    };
    match pod {
        PodState::Gone => Health::phase(NodePhase::Failed),
        PodState::Absent | PodState::Pending if has_run => Health::phase(NodePhase::Failed),
        PodState::Absent | PodState::Pending => Health::phase(NodePhase::Pending),
        PodState::Running { since, ready } => match polls.last_ok {
            // Served before this operator started (a restart): keep the phase the API shows
            // until the first poll.
            None if has_run => {
                if polls.missed >= policy.missed_polls
                    && now.saturating_duration_since(since) > policy.failure_timeout
                {
                    silent(previous, ready)
                } else {
                    Health::phase(previous)
                }
            }
            None if polls.missed >= policy.missed_polls
                && now.saturating_duration_since(since) > policy.startup_timeout =>
            {
                silent(NodePhase::Starting, ready)
            }
            None => Health::phase(NodePhase::Starting),
            Some((_, reported)) => {
                let phase = match reported {
                    Reported::Ready => NodePhase::Ready,
                    Reported::Draining => NodePhase::Draining,
                    Reported::Drained => NodePhase::Drained,
                };
                if policy.silent_too_long(polls, now) {
                    silent(phase, ready)
                } else {
                    Health::phase(phase)
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    fn running(t0: Instant, ready: bool) -> PodState {
        PodState::Running { since: t0, ready }
    }

    fn missed(n: u32) -> Polls {
        Polls {
            last_ok: None,
            missed: n,
        }
    }

    fn answered(t: Instant, reported: Reported, missed: u32) -> Polls {
        Polls {
            last_ok: Some((t, reported)),
            missed,
        }
    }

    #[test]
    fn a_restarted_operator_keeps_serving_nodes_until_their_first_poll() {
        let t0 = Instant::now();
        let policy = HealthPolicy::default();
        let later = t0 + policy.failure_timeout + Duration::from_secs(1);
        for previous in [NodePhase::Ready, NodePhase::Draining, NodePhase::Drained] {
            let p = |pod, polls, now| phase(previous, pod, polls, now, policy);
            assert_eq!(
                p(running(t0, false), missed(0), t0),
                Health::phase(previous)
            );
            assert_eq!(
                p(running(t0, false), missed(1), later),
                Health::phase(previous),
                "one missed poll is not silence"
            );
            assert_eq!(
                p(running(t0, false), missed(3), later).phase,
                NodePhase::Failed,
                "silent since the restart, and its pod is not ready"
            );
            assert_eq!(
                p(running(t0, true), missed(3), later),
                Health::unreachable(previous),
                "silent, but the kubelet sees it ready"
            );
        }
    }

    #[test]
    fn a_node_comes_up_through_its_phases() {
        let t0 = Instant::now();
        let p = HealthPolicy::default();
        let none = Polls::default();
        let ph = |previous, pod, polls, now| phase(previous, pod, polls, now, p).phase;
        assert_eq!(
            ph(NodePhase::Pending, PodState::Absent, none, t0),
            NodePhase::Pending
        );
        assert_eq!(
            ph(NodePhase::Pending, PodState::Pending, none, t0),
            NodePhase::Pending
        );
        assert_eq!(
            ph(NodePhase::Pending, running(t0, true), none, at(t0, 5)),
            NodePhase::Starting
        );
        let ok = answered(at(t0, 6), Reported::Ready, 0);
        assert_eq!(
            ph(NodePhase::Starting, running(t0, true), ok, at(t0, 7)),
            NodePhase::Ready
        );
        let draining = answered(at(t0, 8), Reported::Draining, 0);
        assert_eq!(
            ph(NodePhase::Ready, running(t0, true), draining, at(t0, 9)),
            NodePhase::Draining
        );
    }

    #[test]
    fn a_node_fails_only_when_its_polls_and_its_pod_agree() {
        let t0 = Instant::now();
        let p = HealthPolicy::default();
        let h = |pod, polls, now| phase(NodePhase::Ready, pod, polls, now, p);
        let quiet = answered(at(t0, 10), Reported::Ready, 5);
        assert_eq!(
            h(running(t0, false), quiet, at(t0, 19)),
            Health::phase(NodePhase::Ready)
        );
        assert_eq!(
            h(running(t0, false), quiet, at(t0, 21)).phase,
            NodePhase::Failed
        );
        assert_eq!(
            h(running(t0, true), quiet, at(t0, 21)),
            Health::unreachable(NodePhase::Ready),
            "the kubelet sees it ready: unreachable, not failed"
        );
        let one_slow = answered(at(t0, 10), Reported::Ready, 2);
        assert_eq!(
            h(running(t0, false), one_slow, at(t0, 30)),
            Health::phase(NodePhase::Ready),
            "too few misses in a row"
        );
        let ok = answered(at(t0, 10), Reported::Ready, 0);
        assert_eq!(
            h(PodState::Absent, ok, at(t0, 11)).phase,
            NodePhase::Failed,
            "a pod deleted under a live node"
        );
        assert_eq!(h(PodState::Gone, ok, at(t0, 11)).phase, NodePhase::Failed);
        let never = |ready| {
            phase(
                NodePhase::Starting,
                running(t0, ready),
                missed(60),
                at(t0, 121),
                p,
            )
        };
        assert_eq!(never(false).phase, NodePhase::Failed, "never answered");
        assert_eq!(never(true), Health::unreachable(NodePhase::Starting));
        // Failed is final, whatever the node says afterwards.
        let later = answered(at(t0, 200), Reported::Ready, 0);
        assert_eq!(
            phase(NodePhase::Failed, running(t0, true), later, at(t0, 201), p).phase,
            NodePhase::Failed
        );
    }
}
