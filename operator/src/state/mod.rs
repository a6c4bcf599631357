//! The operator's view of the world, built from the API objects its caches hold.
//!
//! - [`world`]: a fleet's snapshot rebuilt from its `MediaFleet`, `MediaNode`s and `Room`s.
//! - [`placements`]: the single writer of placements, fleet by fleet, kept current.

pub mod placements;
pub mod world;
