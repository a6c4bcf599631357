//! Ruche's media node: a WebRTC SFU on one UDP port.
//!
//! - [`media`]: the media loop (every peer connection on one socket, forwarding);
//! - [`signaling`]: the WebSocket protocol browsers speak, and the dev demo page;
//! - [`admin`]: the admin API (health, metrics, status, drain, assignments, migration,
//!   advertised media address);
//! - [`token`]: join tokens;
//! - [`keys`]: the node's token keys, read again when their files change;
//! - [`admission`]: who may join which room;
//! - [`drain`]: the drain lifecycle;
//! - [`metrics`]: Prometheus metrics.

pub mod admin;
pub mod admission;
pub mod drain;
pub mod keys;
pub mod media;
pub mod metrics;
pub mod signaling;
/// Join tokens, from the API crate: apps mint them, nodes verify them.
pub use ruche_crds::token;
