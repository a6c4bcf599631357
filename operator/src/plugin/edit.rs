//! The changes `kubectl ruche` writes: a node's drain, and a zone's evacuation. Pure: each
//! returns the patch to send, or says why the request makes no sense.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use ruche_crds::{DrainMode, MediaFleet};
use serde_json::{Value, json};

/// A request `kubectl ruche` refuses before it reaches the cluster.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    /// `--deadline` is not a duration.
    #[error("--deadline {value:?}: not a duration such as 30m, 2h or 1h30m")]
    BadDeadline {
        /// As given.
        value: String,
    },
    /// The fleet has no such zone.
    #[error("MediaFleet {fleet} has no zone {zone} (its zones: {known})")]
    UnknownZone {
        /// The fleet.
        fleet: String,
        /// As given.
        zone: String,
        /// The fleet's zones.
        known: String,
    },
}

/// Reads a `--deadline` (`30m`, `2h`, `1h30m`, `90s`).
pub fn deadline(value: &str) -> Result<Duration, EditError> {
    value
        .parse::<kube::core::Duration>()
        .ok()
        .map(Duration::from)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| EditError::BadDeadline {
            value: value.to_string(),
        })
}

/// The merge patch that asks a node to drain by `now + within`, then `mode` (a drain by hand).
pub fn drain(now: Timestamp, within: Duration, mode: DrainMode) -> Value {
    let deadline = now
        .checked_add(SignedDuration::try_from(within).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX);
    json!({ "spec": { "drain": {
        "deadline": deadline.round(jiff::Unit::Second).unwrap_or(deadline).to_string(),
        "mode": mode,
        "reason": "Manual",
    } } })
}

/// The merge patch that puts a node back in service.
pub fn undrain() -> Value {
    json!({ "spec": { "drain": null } })
}

/// The JSON patch that evacuates (or brings back) one zone of a fleet: it tests the zone's
/// name at its index first, so a concurrent change of the zone list fails rather than
/// evacuating another zone.
pub fn evacuate(fleet: &MediaFleet, zone: &str, on: bool) -> Result<Value, EditError> {
    let Some(index) = fleet.spec.zones.iter().position(|z| z.name == zone) else {
        return Err(EditError::UnknownZone {
            fleet: kube::ResourceExt::name_any(fleet),
            zone: zone.to_string(),
            known: fleet
                .spec
                .zones
                .iter()
                .map(|z| z.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    Ok(json!([
        { "op": "test", "path": format!("/spec/zones/{index}/name"), "value": zone },
        { "op": "add", "path": format!("/spec/zones/{index}/evacuate"), "value": on },
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> MediaFleet {
        super::super::test_fleet(&["fr-par-1", "fr-par-2"])
    }

    #[test]
    fn deadlines_are_durations() {
        assert_eq!(deadline("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(deadline("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            deadline("tomorrow").map_err(|e| e.to_string()),
            Err("--deadline \"tomorrow\": not a duration such as 30m, 2h or 1h30m".into())
        );
        assert!(deadline("0s").is_err());
    }

    #[test]
    fn a_drain_by_hand_has_its_deadline_mode_and_reason() {
        let now: Timestamp = "2026-11-29T10:00:00.4Z"
            .parse()
            .unwrap_or(Timestamp::UNIX_EPOCH);
        assert_eq!(
            drain(now, Duration::from_secs(1800), DrainMode::Migrate),
            json!({ "spec": { "drain": {
                "deadline": "2026-11-29T10:30:00Z", "mode": "Migrate", "reason": "Manual"
            } } })
        );
        assert_eq!(undrain(), json!({ "spec": { "drain": null } }));
    }

    #[test]
    fn an_evacuation_names_its_zone_by_index_and_tests_it() {
        assert_eq!(
            evacuate(&fleet(), "fr-par-2", true),
            Ok(json!([
                { "op": "test", "path": "/spec/zones/1/name", "value": "fr-par-2" },
                { "op": "add", "path": "/spec/zones/1/evacuate", "value": true },
            ]))
        );
        assert_eq!(
            evacuate(&fleet(), "fr-par-9", true).map_err(|e| e.to_string()),
            Err("MediaFleet visio has no zone fr-par-9 (its zones: fr-par-1, fr-par-2)".into())
        );
    }
}
