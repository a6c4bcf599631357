//! The operator's view of the world, built from the API objects its caches hold.
//!
//! - [`keys`]: what things are keyed by: namespace and name, a type per kind.
//! - [`registry`]: every fleet with its own nodes, rooms and placements, fed by watch events.
//! - [`placements`]: one fleet's placements, kept current node by node and room by room.
//! - [`world`]: a fleet's snapshot rebuilt from its `MediaFleet`, `MediaNode`s and `Room`s.
//! - [`live`]: what the media nodes' admin APIs last said, in memory.
//! - [`fleet_status`]: a fleet's status, from its nodes and placements.
//! - [`expectations`]: nodes created or deleted that the cache does not show yet.
//! - [`budget`]: a budget of writes per second shared by many objects.
//! - [`trim`]: what the caches keep of each object (what the operator reads, no more).

pub mod budget;
pub mod expectations;
pub mod fleet_status;
pub mod keys;
pub mod live;
pub mod placements;
pub mod registry;
pub mod trim;
pub mod world;

#[cfg(test)]
mod test_objects;
