//! Types shared by the three kinds: capacity, strategies, drain modes and conditions.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// CEL rule that accepts a Go-style duration such as `90s`, `30m`, `1h30m` (what
/// `metav1.Duration` accepts, minus negative and sub-second units nobody needs here), of at
/// most [`crate::duration::MAX_HOURS`] hours: beyond, it could not be represented.
pub(crate) const DURATION_RULE: &str =
    r"self.matches('^([0-9]+(\\.[0-9]+)?(h|m|s))+$') && duration(self) <= duration('87600h')";

/// Participant slots a media node offers. A slot is one participant's worth of media
/// forwarding; rooms reserve slots for their expected size the moment they are placed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeCapacity {
    /// Participant slots per media node.
    #[x_kube(validation = Rule::new("self >= 1").message("capacity.slots must be at least 1: a node with no slots can never host a room"))]
    pub slots: u32,
}

/// How the operator chooses among the nodes of a zone that can take a room.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum PlacementStrategy {
    /// Fill the fullest node that still fits the room, so that empty nodes can be drained
    /// and removed when the day winds down.
    #[default]
    Packed,
    /// Put the room on the emptiest node, spreading load (and the blast radius of one node).
    Distributed,
}

/// What happens to rooms still live on a draining node when its deadline passes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum DrainMode {
    /// Move the remaining rooms to another node: participants are told to reconnect.
    #[default]
    Migrate,
    /// Keep waiting for the rooms to end on their own; the deadline only raises a condition.
    Wait,
}

/// Condition `status` values, as Kubernetes spells them.
pub mod condition_status {
    /// The condition holds.
    pub const TRUE: &str = "True";
    /// The condition does not hold.
    pub const FALSE: &str = "False";
    /// The operator cannot tell.
    pub const UNKNOWN: &str = "Unknown";
}

/// A condition of `type_`, `True` when it `holds`, stamped now. Pass it to
/// [`ConditionsExt::set_condition`], which keeps the old stamp when the status is unchanged.
pub fn new_condition(
    type_: &str,
    holds: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if holds {
            condition_status::TRUE
        } else {
            condition_status::FALSE
        }
        .into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(Timestamp::now()),
    }
}

/// Reading and writing a list of standard `metav1.Condition`s, one per `type`.
pub trait ConditionsExt {
    /// The condition of the given type, if present.
    fn condition(&self, type_: &str) -> Option<&Condition>;

    /// Sets a condition, keeping its `lastTransitionTime` unless its status changes:
    /// a condition whose message changes but whose status does not has not transitioned.
    fn set_condition(&mut self, condition: Condition);
}

impl ConditionsExt for Vec<Condition> {
    fn condition(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }

    fn set_condition(&mut self, mut condition: Condition) {
        match self.iter_mut().find(|c| c.type_ == condition.type_) {
            Some(existing) => {
                if existing.status == condition.status {
                    condition.last_transition_time = existing.last_transition_time.clone();
                }
                *existing = condition;
            }
            None => self.push(condition),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn cond(status: &str, at: i64, message: &str) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: "Test".into(),
            message: message.into(),
            observed_generation: None,
            last_transition_time: Time(Timestamp::from_second(at).unwrap_or_default()),
        }
    }

    #[test]
    fn transition_time_only_moves_when_status_changes() {
        let mut c: Vec<Condition> = Vec::new();
        c.set_condition(cond(condition_status::TRUE, 100, "a"));
        c.set_condition(cond(condition_status::TRUE, 200, "b"));
        let got = c
            .condition("Ready")
            .map(|c| (c.last_transition_time.0.as_second(), c.message.clone()));
        assert_eq!(got, Some((100, "b".to_string())));
        c.set_condition(cond(condition_status::FALSE, 300, "c"));
        let got = c
            .condition("Ready")
            .map(|c| c.last_transition_time.0.as_second());
        assert_eq!(got, Some(300));
        assert_eq!(c.len(), 1);
    }
}
