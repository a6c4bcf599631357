//! Simulated time: seconds since midnight of the simulated day.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A time of the simulated day, in seconds since midnight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay(pub u32);

impl TimeOfDay {
    /// Seconds in a day.
    pub const DAY: u32 = 24 * 3600;

    /// `h:m` as a time of day.
    pub const fn hm(h: u32, m: u32) -> Self {
        Self(h * 3600 + m * 60)
    }

    /// Parses `HH:MM` or `HH:MM:SS` (24-hour clock; `24:00` is the end of the day).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split(':');
        let h: u32 = parts.next()?.parse().ok()?;
        let m: u32 = parts.next()?.parse().ok()?;
        let sec: u32 = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() || m > 59 || sec > 59 || h > 24 || (h == 24 && (m > 0 || sec > 0))
        {
            return None;
        }
        Some(Self(h * 3600 + m * 60 + sec))
    }

    /// Seconds since midnight.
    pub fn seconds(self) -> u32 {
        self.0
    }

    /// This time plus some seconds.
    #[must_use]
    pub fn plus(self, seconds: u32) -> Self {
        Self(self.0.saturating_add(seconds))
    }

    /// Hours since midnight, as a fraction.
    pub fn hours(self) -> f64 {
        f64::from(self.0) / 3600.0
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (h, m, s) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        if s == 0 {
            write!(f, "{h:02}:{m:02}")
        } else {
            write!(f, "{h:02}:{m:02}:{s:02}")
        }
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a time of day: write HH:MM, e.g. \"09:30\""
            ))
        })
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_times() {
        assert_eq!(TimeOfDay::parse("09:30"), Some(TimeOfDay::hm(9, 30)));
        assert_eq!(TimeOfDay::parse("24:00"), Some(TimeOfDay(TimeOfDay::DAY)));
        assert_eq!(
            TimeOfDay::parse("7:05:09").map(|t| t.to_string()),
            Some("07:05:09".into())
        );
        for bad in ["9", "09:60", "25:00", "24:01", "aa:bb", "1:2:3:4", "-1:00"] {
            assert_eq!(TimeOfDay::parse(bad), None, "{bad}");
        }
    }
}
