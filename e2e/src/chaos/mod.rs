//! The chaos suite's tools (`make chaos`, `tests/chaos.rs`): faults injected into a live
//! fleet on a control plane of the suite's own, and the invariant judged over what was
//! observed once a second.
//!
//! - [`control_plane`]: stopping and restarting etcd, the API server and the controller
//!   manager of that control plane;
//! - [`firewall`]: cutting the operator off from one media node's admin port on loopback;
//! - [`replicas`]: two operator replicas, restarted when they exit, as a kubelet would;
//! - [`verdict`]: the pure judgement of one fault from the samples, and the report's table.

pub mod control_plane;
pub mod firewall;
pub mod replicas;
pub mod verdict;
