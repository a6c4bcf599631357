//! The operator's view of the world, built from the API objects its caches hold.
//!
//! - [`world`]: a fleet's snapshot rebuilt from its `MediaFleet`, `MediaNode`s and `Room`s.
//! - [`placements`]: the single writer of placements, fleet by fleet, kept current.
//! - [`live`]: what the media nodes' admin APIs last said, in memory.
//! - [`fleet_status`]: a fleet's status, from its nodes and placements.
//! - [`expectations`]: nodes created or deleted that the cache does not show yet.

pub mod expectations;
pub mod fleet_status;
pub mod live;
pub mod placements;
pub mod world;

#[cfg(test)]
mod test_objects;
