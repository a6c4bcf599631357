//! Autoscaling: how many media nodes each zone runs, following the working day.
//!
//! - [`policy`]: the fleet's settings, read and checked (buffers, windows, delay, bounds).
//! - [`schedule`]: windows of local time with their own buffer, across daylight saving.
//! - [`booking`]: when a booked room's slots are held, and whether its booking makes sense.
//! - [`load`]: each zone's load, from the fleet's nodes and their slots.
//! - [`decide`]: the decision itself, zone by zone, with the zone-failure reserve.
//!
//! The fleet controller and the simulator gather the inputs and apply the counts through
//! [`crate::core::fleet_plan`], which scales down only by draining.

pub mod booking;
pub mod decide;
pub mod load;
pub mod policy;
pub mod schedule;

pub use booking::{BookingState, classify};
pub use decide::{Inputs, Reason, ZoneLoad, ZoneMemory, ZoneScale, decide};
pub use load::{NodeSlots, zone_loads};
pub use policy::{Policy, PolicyError};
