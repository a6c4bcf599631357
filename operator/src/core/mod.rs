//! The decision core: pure functions over a [`Snapshot`] of the fleet that return decisions
//! and [`Action`]s. Nothing here talks to the API server, reads a clock or does I/O; the
//! controllers and the simulator build the snapshot, call the core and apply what it returns.
//!
//! - [`snapshot`]: the world as the core sees it, with per-zone indexes kept up to date by
//!   [`Snapshot::apply`] and the observation methods.
//! - [`load`]: reservation-aware accounting of a node's slots.
//! - [`request`]: a room's needs (slots, zone rules) resolved against the fleet.
//! - [`placement`]: which node gets a room.
//! - [`unschedulable`]: why a room could not be placed, zone by zone.
//! - [`failover`]: placing again the rooms of nodes that failed, or moving them live off a
//!   draining node at its deadline.
//! - [`drain`]: what a drain's deadline and mode ask for, and how it is told.
//! - [`evacuation`]: which rooms of an evacuated zone may live nowhere else.
//! - [`sizing`]: how many nodes each zone runs without autoscaling (`spec.replicas`).
//! - [`autoscaling`]: how many nodes each zone runs with it: buffers, schedules, bookings.
//! - [`share`]: a count or a percentage (`400`, `"20%"`).
//! - [`fleet_plan`]: which nodes to create, drain, undrain or delete to get there.
//! - [`rollout`]: rolling a new template revision zone by zone, and when to halt it.
//! - [`health`]: a node's phase from its pod and its admin API.
//! - [`host`]: whether the Kubernetes node under a media node is being taken away.
//! - [`room_lifecycle`]: a room's phase, and when an empty room closes.
//! - [`leader`]: leader election: create, renew, take over, wait or step down, from the Lease.

pub mod action;
pub mod autoscaling;
pub mod drain;
pub mod evacuation;
pub mod failover;
pub mod fleet_plan;
pub mod health;
pub mod host;
pub mod ids;
pub mod leader;
pub mod load;
pub mod placement;
pub mod request;
pub mod rollout;
pub mod room_lifecycle;
pub mod share;
pub mod sizing;
pub mod snapshot;
pub mod unschedulable;

pub use action::{Action, ApplyError};
pub use failover::{FailoverPlan, failover, migrate};
pub use ids::{NodeId, RoomKey, ZoneId, ZoneMask};
pub use load::Load;
pub use placement::{Placement, place};
pub use request::RoomRequest;
pub use snapshot::{FleetRules, NodeInfo, NodeState, Snapshot, ZoneRules};
pub use unschedulable::{Refusal, Unschedulable, ZoneRefusal};
