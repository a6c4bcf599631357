//! Reading the durations of the custom resources (`drainDeadline: 2h`) without ever failing on
//! their size.
//!
//! The CRDs' CEL rules bound a duration to [`MAX_HOURS`] hours. An object stored before that
//! rule (or written around it) may still hold a larger one, such as `99999999999999999999h`,
//! which the duration parser of `kube-core` cannot represent and panics on: one such object
//! would stop the operator's watch of its kind, every fleet with it. Read through
//! [`saturating`], a duration beyond the bound means the bound (as good as forever for a
//! deadline or a delay), and anything else parses as before.

use kube::core::Duration;
use serde::{Deserialize, Deserializer};

/// The longest duration a custom resource may hold: ten years.
pub const MAX_HOURS: u64 = 87_600;

/// The bound, in seconds.
const MAX_SECONDS: f64 = (MAX_HOURS * 3600) as f64;

/// An upper estimate of `text`'s length in seconds, if it reads as a Go duration: numbers with
/// units (`h`, `m`, `s`, `ms`, `us`, `µs`, `ns`), a sign allowed in front. `None` if it does not
/// read; the real parser then says why.
fn seconds(text: &str) -> Option<f64> {
    let mut rest = text.trim_start_matches(['+', '-']);
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let (scale, unit_len) = [
            ("ns", 1e-9),
            ("us", 1e-6),
            ("µs", 1e-6),
            ("ms", 1e-3),
            ("h", 3600.0),
            ("m", 60.0),
            ("s", 1.0),
        ]
        .iter()
        .find(|(unit, _)| rest.starts_with(unit))
        .map(|(unit, scale)| (*scale, unit.len()))?;
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Deserializes a duration, saturating at [`MAX_HOURS`] instead of failing (or panicking) on
/// one too large to represent. For `#[serde(deserialize_with = ...)]`.
pub fn saturating<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    match seconds(&text) {
        Some(s) if !s.is_finite() || s > MAX_SECONDS => {
            Ok(std::time::Duration::from_secs(MAX_HOURS * 3600).into())
        }
        _ => text.parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "saturating")]
        d: Duration,
    }

    fn read(text: &str) -> Result<std::time::Duration, String> {
        serde_json::from_value::<Holder>(serde_json::json!({ "d": text }))
            .map(|h| h.d.into())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn ordinary_durations_read_as_before() {
        assert_eq!(read("2h"), Ok(std::time::Duration::from_secs(7200)));
        assert_eq!(read("1h30m"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(read("1.5h"), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(read("90s"), Ok(std::time::Duration::from_secs(90)));
        assert_eq!(
            read(&format!("{MAX_HOURS}h")),
            Ok(std::time::Duration::from_secs(MAX_HOURS * 3600))
        );
    }

    #[test]
    fn a_duration_too_large_to_represent_is_the_bound_not_a_panic() {
        let bound = std::time::Duration::from_secs(MAX_HOURS * 3600);
        for huge in [
            "99999999999999999999h",
            "55111111110911112h",
            "87601h",
            "9999999999999999999999999999999999999999s1h",
        ] {
            assert_eq!(read(huge), Ok(bound), "{huge}");
        }
    }

    #[test]
    fn what_is_not_a_duration_is_refused_by_the_parser() {
        for bad in ["two hours", "1e308h", "h", "5x", "1h-"] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
