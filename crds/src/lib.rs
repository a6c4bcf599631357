//! Ruche's API, group `ruche.dev`, version `v1alpha1`.
//!
//! Join tokens (the contract between a meeting app and the media nodes) are in [`token`]; the
//! assignment lists the operator writes to each media node's admin API, in [`admin`].
//!
//! Three namespaced kinds: [`MediaFleet`] (a pool of SFUs over zones), [`MediaNode`] (one SFU
//! pod) and [`Room`] (one meeting). The CRD YAML under `crds/yaml/` is generated from these
//! types by `make crds`; a test fails if it drifts.

// `#[kube(printcolumn(..), printcolumn(..))]` repeats keys by design; clippy reads them as
// duplicated attributes.
#![allow(clippy::duplicated_attributes)]

pub mod admin;
pub mod common;
pub mod crdgen;
pub mod duration;
pub mod fleet;
pub mod node;
pub mod random;
pub mod room;
pub mod token;

pub use common::{ConditionsExt, DrainMode, NodeCapacity, PlacementStrategy};
pub use fleet::{
    ExposureMode, ExposureSpec, MediaFleet, MediaFleetSpec, MediaFleetStatus, NodeAddressType,
    PhaseCounts, RevisionStatus, ZoneSpec, ZoneStatus,
};
pub use node::{
    DrainRequest, MediaNode, MediaNodeSpec, MediaNodeStatus, NodeAddresses, NodeLoad, NodePhase,
};
pub use room::{Room, RoomPhase, RoomSpec, RoomStatus, ZonePolicy};

/// The API group of every Ruche kind.
pub const GROUP: &str = "ruche.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
