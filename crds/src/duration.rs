//! Reading the durations of the custom resources (`drainDeadline: 2h`) without ever failing on
//! their size.
//!
//! The CRDs' CEL rules bound a duration to [`MAX_HOURS`] hours. An object stored before that
//! rule (or written around it) may still hold a larger one, such as `99999999999999999999h`,
//! which the duration parser of `kube-core` cannot represent and panics on: one such object
//! would stop the operator's watch of its kind, every fleet with it. Read through
//! [`saturating`] (our own parser, [`parse`]), a duration beyond the bound means the bound (as
//! good as forever for a deadline or a delay), and a malformed one is an error, never a panic.

use kube::core::Duration;
use serde::{Deserialize, Deserializer};

/// The longest duration a custom resource may hold: ten years.
pub const MAX_HOURS: u64 = 87_600;

/// The bound, in seconds.
const MAX_SECONDS: f64 = (MAX_HOURS * 3600) as f64;

/// Units of a Go duration, the two-letter ones first so that `ms` is not read as `m`.
const UNITS: [(&str, f64); 7] = [
    ("ns", 1e-9),
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("h", 3600.0),
    ("m", 60.0),
    ("s", 1.0),
];

/// Reads `text` as a Go duration (`90s`, `1h30m`, `1.5h`, `250ms`; a `+` sign allowed, `0`
/// alone), saturating at [`MAX_HOURS`]. Negative durations are refused: no field takes one.
/// This is the whole parser, not a check before `kube-core`'s: that one panics on some
/// malformed strings with large numbers (`5511…111h,12`) before it sees they are malformed.
pub fn parse(text: &str) -> Result<std::time::Duration, String> {
    let bound = std::time::Duration::from_secs(MAX_HOURS * 3600);
    let rest = text.strip_prefix('+').unwrap_or(text);
    if rest.starts_with('-') {
        return Err(format!("{text:?}: a negative duration"));
    }
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(format!("{text:?}: an empty duration"));
    }
    let mut rest = rest;
    let mut seconds = 0.0_f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..number_len];
        let well_formed = !number.is_empty()
            && number.matches('.').count() <= 1
            && !number.starts_with('.')
            && !number.ends_with('.');
        let value: f64 = number
            .parse()
            .ok()
            .filter(|_| well_formed)
            .ok_or_else(|| format!("{text:?}: expected a number at {rest:?}"))?;
        rest = &rest[number_len..];
        let (unit, scale) = UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit))
            .ok_or_else(|| {
                format!("{text:?}: expected a unit (h, m, s, ms, us, ns) at {rest:?}")
            })?;
        seconds += value * scale;
        rest = &rest[unit.len()..];
    }
    if !seconds.is_finite() || seconds > MAX_SECONDS {
        return Ok(bound);
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

/// Deserializes a duration, saturating at [`MAX_HOURS`] instead of failing (or panicking) on
/// one too large to represent. For `#[serde(deserialize_with = ...)]`.
pub fn saturating<'de, D>(deserializer: D) -> Result<Duration, D::Error>
where
    D: Deserializer<'de>,
{
    let text = String::deserialize(deserializer)?;
    parse(&text)
        .map(Duration::from)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text: a duration within the bound, or an error; never a panic.
        #[test]
        fn any_text_reads_or_is_refused(text in "\\PC{0,40}") {
            if let Ok(d) = parse(&text) {
                prop_assert!(d <= std::time::Duration::from_secs(MAX_HOURS * 3600));
            }
        }

        /// Durations within the bound read as `kube-core` reads them.
        #[test]
        fn well_formed_durations_read_as_kube_core_reads_them(
            parts in proptest::collection::vec((0u32..5000, 0usize..4), 1..4)
        ) {
            let text = parts.iter().fold(String::new(), |mut text, (n, unit)| {
                text.push_str(&n.to_string());
                text.push_str(["h", "m", "s", "ms"][*unit]);
                text
            });
            let ours = parse(&text).map_err(TestCaseError::fail)?;
            let theirs: std::time::Duration = text
                .parse::<Duration>()
                .map_err(|e| TestCaseError::fail(e.to_string()))?
                .into();
            let gap = ours.abs_diff(theirs);
            prop_assert!(gap <= std::time::Duration::from_micros(1), "{}: {:?} vs {:?}", text, ours, theirs);
        }
    }

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
        assert_eq!(read("250ms"), Ok(std::time::Duration::from_millis(250)));
        assert_eq!(read("0"), Ok(std::time::Duration::ZERO));
        assert_eq!(read("+2m"), Ok(std::time::Duration::from_secs(120)));
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
        for bad in [
            "two hours",
            "1e308h",
            "h",
            "5x",
            "1h-",
            "",
            "-1h",
            "1..5h",
            ".5h",
            "5.h",
            "551111111144444444444444444444444444444409111h,12",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
