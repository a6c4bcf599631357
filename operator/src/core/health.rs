//! A media node's phase, from its pod and from the operator's polls of its admin API.
//!
//! A node is Pending until its pod runs, Starting until its admin API answers, then Ready,
//! Draining or Drained as the node itself reports. It becomes Failed when its pod fails or
//! disappears after having run, when it has not answered for [`HealthPolicy::failure_timeout`],
//! or when it never answers within [`HealthPolicy::startup_timeout`]. Failed is final: the
//! fleet replaces the node.

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
}

/// Timeouts of the health rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// A running node silent this long is Failed.
    pub failure_timeout: Duration,
    /// A pod running this long without ever answering is Failed.
    pub startup_timeout: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            failure_timeout: Duration::from_secs(10),
            startup_timeout: Duration::from_secs(120),
        }
    }
}

/// The node's phase now.
pub fn phase(
    previous: NodePhase,
    pod: PodState,
    polls: Polls,
    now: Instant,
    policy: HealthPolicy,
) -> NodePhase {
    if previous == NodePhase::Failed {
        return NodePhase::Failed;
    }
    let has_run = polls.last_ok.is_some()
        || matches!(
            previous,
            NodePhase::Ready | NodePhase::Draining | NodePhase::Drained
        );
    match pod {
        PodState::Gone => NodePhase::Failed,
        PodState::Absent | PodState::Pending if has_run => NodePhase::Failed,
        PodState::Absent | PodState::Pending => NodePhase::Pending,
        PodState::Running { since } => match polls.last_ok {
            // Served before this operator started (a restart): keep the phase the API shows
            // until the first poll, or Failed if the node stays silent.
            None if has_run => {
                if now.saturating_duration_since(since) > policy.failure_timeout {
                    NodePhase::Failed
                } else {
                    previous
                }
            }
            None if now.saturating_duration_since(since) > policy.startup_timeout => {
                NodePhase::Failed
            }
            None => NodePhase::Starting,
            Some((at, _)) if now.saturating_duration_since(at) > policy.failure_timeout => {
                NodePhase::Failed
            }
            Some((_, Reported::Ready)) => NodePhase::Ready,
            Some((_, Reported::Draining)) => NodePhase::Draining,
            Some((_, Reported::Drained)) => NodePhase::Drained,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_operator_keeps_serving_nodes_until_their_first_poll() {
        let t0 = Instant::now();
        let policy = HealthPolicy::default();
        let running = PodState::Running { since: t0 };
        for previous in [NodePhase::Ready, NodePhase::Draining, NodePhase::Drained] {
            assert_eq!(
                phase(previous, running, Polls::default(), t0, policy),
                previous
            );
            assert_eq!(
                phase(
                    previous,
                    running,
                    Polls::default(),
                    t0 + policy.failure_timeout + Duration::from_secs(1),
                    policy
                ),
                NodePhase::Failed,
                "silent since the restart"
            );
        }
    }

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn a_node_comes_up_through_its_phases() {
        let t0 = Instant::now();
        let p = HealthPolicy::default();
        let none = Polls::default();
        assert_eq!(
            phase(NodePhase::Pending, PodState::Absent, none, t0, p),
            NodePhase::Pending
        );
        assert_eq!(
            phase(NodePhase::Pending, PodState::Pending, none, t0, p),
            NodePhase::Pending
        );
        let running = PodState::Running { since: t0 };
        assert_eq!(
            phase(NodePhase::Pending, running, none, at(t0, 5), p),
            NodePhase::Starting
        );
        let ok = Polls {
            last_ok: Some((at(t0, 6), Reported::Ready)),
        };
        assert_eq!(
            phase(NodePhase::Starting, running, ok, at(t0, 7), p),
            NodePhase::Ready
        );
        let draining = Polls {
            last_ok: Some((at(t0, 8), Reported::Draining)),
        };
        assert_eq!(
            phase(NodePhase::Ready, running, draining, at(t0, 9), p),
            NodePhase::Draining
        );
    }

    #[test]
    fn silence_a_lost_pod_or_a_slow_start_fail_the_node() {
        let t0 = Instant::now();
        let p = HealthPolicy::default();
        let running = PodState::Running { since: t0 };
        let ok = Polls {
            last_ok: Some((at(t0, 10), Reported::Ready)),
        };
        assert_eq!(
            phase(NodePhase::Ready, running, ok, at(t0, 19), p),
            NodePhase::Ready
        );
        assert_eq!(
            phase(NodePhase::Ready, running, ok, at(t0, 21), p),
            NodePhase::Failed
        );
        assert_eq!(
            phase(NodePhase::Ready, PodState::Absent, ok, at(t0, 11), p),
            NodePhase::Failed,
            "a pod deleted under a live node"
        );
        assert_eq!(
            phase(NodePhase::Ready, PodState::Gone, ok, at(t0, 11), p),
            NodePhase::Failed
        );
        assert_eq!(
            phase(
                NodePhase::Starting,
                running,
                Polls::default(),
                at(t0, 121),
                p
            ),
            NodePhase::Failed
        );
        // Failed is final, whatever the node says afterwards.
        let later = Polls {
            last_ok: Some((at(t0, 200), Reported::Ready)),
        };
        assert_eq!(
            phase(NodePhase::Failed, running, later, at(t0, 201), p),
            NodePhase::Failed
        );
    }
}
