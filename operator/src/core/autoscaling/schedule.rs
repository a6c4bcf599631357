//! Scheduled windows: a different buffer on known busy hours, such as weekday mornings in
//! Europe/Paris. A window is local time in its IANA time zone, so it follows daylight-saving
//! changes: 07:00-10:00 Europe/Paris is 05:00-08:00 UTC in summer and 06:00-09:00 in winter.
//! On the night clocks go forward, local times that do not exist are skipped: a window
//! starting at 02:30 that night opens at 03:00.

use jiff::Timestamp;
use jiff::civil::Weekday;
use jiff::tz::TimeZone;
use ruche_crds::fleet::{ScheduleWindow, Weekday as DayName};

use crate::core::share::{Share, ShareError};

/// A window the autoscaler cannot use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The time zone is not in the time zone database.
    #[error(
        "schedule {window}: time zone {zone:?} does not exist (an IANA name such as Europe/Paris)"
    )]
    UnknownTimeZone {
        /// Window name.
        window: String,
        /// The zone as written.
        zone: String,
    },
    /// `start` or `end` is not `HH:MM`.
    #[error("schedule {window}: {field} {value:?} is not a local time HH:MM")]
    BadTime {
        /// Window name.
        window: String,
        /// `start` or `end`.
        field: &'static str,
        /// As written.
        value: String,
    },
    /// The window ends before (or when) it starts.
    #[error("schedule {window}: ends at {end}, not after it starts at {start}")]
    EndsBeforeStart {
        /// Window name.
        window: String,
        /// As written.
        start: String,
        /// As written.
        end: String,
    },
    /// The buffer is unreadable.
    #[error("schedule {window}: bufferSlots {source}")]
    Buffer {
        /// Window name.
        window: String,
        /// Why.
        source: ShareError,
    },
}

/// A recurring window with its own buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Its name, for events and conditions.
    pub name: String,
    /// Days it applies (every day when empty).
    days: Vec<Weekday>,
    /// Local minutes since midnight: from `start` (included) to `end` (excluded).
    start: u16,
    end: u16,
    tz: TimeZone,
    /// Free slots per zone while it is open.
    pub buffer: Share,
}

impl Window {
    /// Reads a window of the fleet's spec.
    pub fn parse(spec: &ScheduleWindow) -> Result<Self, ScheduleError> {
        let window = spec.name.clone();
        let tz = TimeZone::get(&spec.time_zone).map_err(|_| ScheduleError::UnknownTimeZone {
            window: window.clone(),
            zone: spec.time_zone.clone(),
        })?;
        let minutes = |field: &'static str, value: &str| {
            parse_minutes(value).ok_or_else(|| ScheduleError::BadTime {
                window: window.clone(),
                field,
                value: value.to_string(),
            })
        };
        let (start, end) = (minutes("start", &spec.start)?, minutes("end", &spec.end)?);
        if end <= start || start >= 24 * 60 {
            return Err(ScheduleError::EndsBeforeStart {
                window,
                start: spec.start.clone(),
                end: spec.end.clone(),
            });
        }
        let buffer = Share::parse(&spec.buffer_slots).map_err(|source| ScheduleError::Buffer {
            window: window.clone(),
            source,
        })?;
        Ok(Self {
            name: window,
            days: spec.days.iter().map(|d| weekday(*d)).collect(),
            start,
            end,
            tz,
            buffer,
        })
    }

    /// Whether the window is open at `now`.
    pub fn contains(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute()))
            .unwrap_or(u16::MAX);
        (self.days.is_empty() || self.days.contains(&local.weekday()))
            && self.start <= minute
            && minute < self.end
    }
}

/// `HH:MM` (or `24:00`) as minutes since midnight.
fn parse_minutes(text: &str) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

fn weekday(day: DayName) -> Weekday {
    match day {
        DayName::Mon => Weekday::Monday,
        DayName::Tue => Weekday::Tuesday,
        DayName::Wed => Weekday::Wednesday,
        DayName::Thu => Weekday::Thursday,
        DayName::Fri => Weekday::Friday,
        DayName::Sat => Weekday::Saturday,
        DayName::Sun => Weekday::Sunday,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use proptest::prelude::*;

    fn spec(days: Vec<DayName>, start: &str, end: &str, tz: &str) -> ScheduleWindow {
        ScheduleWindow {
            name: "mornings".into(),
            days,
            start: start.into(),
            end: end.into(),
            time_zone: tz.into(),
            buffer_slots: IntOrString::Int(500),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn bad_windows_are_refused_by_name() {
        let unknown = Window::parse(&spec(vec![], "07:00", "10:00", "Europe/Atlantis"));
        assert_eq!(
            unknown.unwrap_err().to_string(),
            "schedule mornings: time zone \"Europe/Atlantis\" does not exist (an IANA name such as Europe/Paris)"
        );
        let backwards = Window::parse(&spec(vec![], "22:00", "06:00", "Europe/Paris"));
        assert!(matches!(
            backwards,
            Err(ScheduleError::EndsBeforeStart { .. })
        ));
        let garbage = Window::parse(&spec(vec![], "7h", "10:00", "Europe/Paris"));
        assert!(matches!(
            garbage,
            Err(ScheduleError::BadTime { field: "start", .. })
        ));
        assert!(Window::parse(&spec(vec![], "22:00", "24:00", "Europe/Paris")).is_ok());
    }

    #[test]
    fn a_paris_morning_window_follows_daylight_saving() {
        let w = Window::parse(&spec(vec![DayName::Mon], "07:00", "10:00", "Europe/Paris"))
            .unwrap_or_else(|e| panic!("{e}"));
        // Winter (UTC+1): Monday 2026-03-23.
        assert!(!w.contains(at("2026-03-23T05:59:00Z")));
        assert!(w.contains(at("2026-03-23T06:00:00Z")));
        assert!(w.contains(at("2026-03-23T08:59:00Z")));
        assert!(!w.contains(at("2026-03-23T09:00:00Z")));
        // Summer (UTC+2) from Sunday 2026-03-29: Monday 2026-03-30 opens an hour earlier in UTC.
        assert!(!w.contains(at("2026-03-30T04:59:00Z")));
        assert!(w.contains(at("2026-03-30T05:00:00Z")));
        assert!(!w.contains(at("2026-03-30T08:00:00Z")));
        // Back to winter on Sunday 2026-10-25: Monday 2026-10-26 is UTC+1 again.
        assert!(!w.contains(at("2026-10-26T05:30:00Z")));
        assert!(w.contains(at("2026-10-26T06:00:00Z")));
        // Not on a Tuesday.
        assert!(!w.contains(at("2026-10-27T07:00:00Z")));
    }

    #[test]
    fn the_night_clocks_change_keeps_the_window_in_local_time() {
        // 2026-03-29, Europe/Paris: 02:00 local does not exist (01:59 CET, then 03:00 CEST).
        let w = Window::parse(&spec(vec![], "02:30", "04:00", "Europe/Paris"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!w.contains(at("2026-03-29T00:59:00Z")), "01:59 CET");
        assert!(w.contains(at("2026-03-29T01:00:00Z")), "03:00 CEST");
        assert!(!w.contains(at("2026-03-29T02:00:00Z")), "04:00 CEST");
        // 2026-10-25: 02:00-03:00 local happens twice; the window is open both times.
        let w = Window::parse(&spec(vec![], "02:00", "03:00", "Europe/Paris"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(w.contains(at("2026-10-25T00:30:00Z")), "02:30 CEST");
        assert!(w.contains(at("2026-10-25T01:30:00Z")), "02:30 CET");
        assert!(!w.contains(at("2026-10-25T02:00:00Z")), "03:00 CET");
    }

    proptest! {
        /// Over a whole year, in several zones, a window is open exactly when the local clock
        /// reads a time within it on one of its days.
        #[test]
        fn open_exactly_on_its_local_hours(
            seconds in 1_767_225_600i64..1_798_761_600,
            start in 0u16..1439,
            len in 1u16..600,
            tz in prop::sample::select(vec!["Europe/Paris", "America/New_York", "Australia/Sydney", "UTC"]),
            days in prop::collection::vec(prop::sample::select(vec![DayName::Mon, DayName::Wed, DayName::Sat, DayName::Sun]), 0..3),
        ) {
            let end = (start + len).min(1440);
            let fmt = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
            let w = Window::parse(&spec(days.clone(), &fmt(start), &fmt(end), tz)).unwrap_or_else(|e| panic!("{e}"));
            let now = Timestamp::from_second(seconds).unwrap_or(Timestamp::UNIX_EPOCH);
            let local = now.to_zoned(TimeZone::get(tz).unwrap_or(TimeZone::UTC)).datetime();
            let minute = u16::try_from(i32::from(local.hour()) * 60 + i32::from(local.minute())).unwrap_or(0);
            let day_ok = days.is_empty() || days.iter().any(|d| weekday(*d) == local.weekday());
            prop_assert_eq!(w.contains(now), day_ok && start <= minute && minute < end);
        }
    }
}
