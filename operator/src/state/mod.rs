//! The operator's view of the world, built from the API objects its caches hold.
//!
//! - [`world`]: a fleet's snapshot rebuilt from its `MediaFleet`, `MediaNode`s and `Room`s.

pub mod world;
