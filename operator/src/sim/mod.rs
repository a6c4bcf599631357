//! The fleet simulator: a day of meetings against a simulated fleet, driving the same decision
//! core as the controllers with a simulated clock.
//!
//! - [`scenario`]: the YAML a user writes, with located errors.
//! - [`workload`]: the day's meetings, drawn with the scenario's seed.
//! - [`engine`]: the loop that feeds them to the core and applies its actions.
//! - [`lifecycle`]: the fleet's nodes over the day: drains, evacuations, rolling upgrades.
//! - [`outcome`]: what the day produced.
//! - [`report`] and [`chart`]: the text report and the SVG chart of use per zone.
//! - [`compare`]: the same day under several sizing policies, side by side.

pub mod chart;
pub mod clock;
pub mod compare;
pub mod engine;
pub mod lifecycle;
pub mod outcome;
pub mod report;
pub mod scenario;
pub mod workload;

pub use engine::run;
pub use outcome::{Outcome, Timing};
pub use scenario::Scenario;
