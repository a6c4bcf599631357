//! Whether the Kubernetes node under a media node is being taken away: cordoned by a person
//! (`kubectl cordon`, `kubectl drain`), or marked for removal by the cluster autoscaler or
//! Karpenter. Its media nodes then drain, with their fleet's rollout deadline and mode, so no
//! meeting is cut when the machine goes; when it comes back before that, so do they.

use std::fmt;

/// The taint the cluster autoscaler puts on a node it is about to remove.
pub const CLUSTER_AUTOSCALER_TAINT: &str = "ToBeDeletedByClusterAutoscaler";
/// The taint Karpenter (v1) puts on a node it is disrupting.
pub const KARPENTER_TAINT: &str = "karpenter.sh/disrupted";
/// The taint earlier Karpenter versions used (`karpenter.sh/disruption=disrupting`).
pub const KARPENTER_LEGACY_TAINT: &str = "karpenter.sh/disruption";

/// Why a Kubernetes node is being taken away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaving {
    /// `spec.unschedulable`: cordoned by a person or a drain.
    Cordoned,
    /// Tainted for removal by the cluster autoscaler.
    ClusterAutoscaler,
    /// Tainted by Karpenter for disruption.
    Karpenter,
}

impl fmt::Display for Leaving {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Cordoned => "is cordoned",
            Self::ClusterAutoscaler => "is being removed by the cluster autoscaler",
            Self::Karpenter => "is being disrupted by Karpenter",
        })
    }
}

/// Whether a Kubernetes node with this `unschedulable` flag and these taint keys is being
/// taken away, and by whom (a removal taint says more than the cordon that comes with it).
pub fn leaving<'a>(
    unschedulable: bool,
    taints: impl IntoIterator<Item = &'a str>,
) -> Option<Leaving> {
    let mut found = unschedulable.then_some(Leaving::Cordoned);
    for key in taints {
        match key {
            CLUSTER_AUTOSCALER_TAINT => return Some(Leaving::ClusterAutoscaler),
            KARPENTER_TAINT | KARPENTER_LEGACY_TAINT => found = Some(Leaving::Karpenter),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cordon_or_a_removal_taint_takes_the_node_away() {
        assert_eq!(leaving(false, []), None);
        assert_eq!(leaving(false, ["node.kubernetes.io/not-ready"]), None);
        assert_eq!(leaving(true, []), Some(Leaving::Cordoned));
        assert_eq!(
            leaving(
                true,
                ["node.kubernetes.io/unschedulable", CLUSTER_AUTOSCALER_TAINT]
            ),
            Some(Leaving::ClusterAutoscaler)
        );
        assert_eq!(leaving(false, [KARPENTER_TAINT]), Some(Leaving::Karpenter));
        assert_eq!(
            leaving(true, [KARPENTER_LEGACY_TAINT]),
            Some(Leaving::Karpenter)
        );
        assert_eq!(
            Leaving::ClusterAutoscaler.to_string(),
            "is being removed by the cluster autoscaler"
        );
    }
}
