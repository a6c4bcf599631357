//! Ruche's end-to-end suite: the operator and real media node processes against the cluster
//! `RUCHE_E2E_KUBECONFIG` names (a kind cluster, or a bare API server), one fresh namespace
//! per scenario.
//!
//! - [`cluster`]: finding the cluster, or saying loudly why the suite is skipped;
//! - [`crds`]: installing the CRDs from `crds/yaml/`;
//! - [`rbac`]: the operator's identity, exactly the RBAC of `manifests/rbac/`;
//! - [`operator`]: the `ruche-operator run` process;
//! - [`runner`]: the pod runner, a stand-in kubelet that runs media node pods and the
//!   operator Deployment's pods as local processes on loopback addresses;
//! - [`stand_in`]: an admin API stand-in for media nodes, for scale runs of the operator;
//! - [`harness`]: one namespace-scoped scenario's world, cleaned up by a guard;
//! - [`install`]: the operator installed cluster-wide by `kubectl apply -k manifests`, for
//!   the scenarios of `tests/install.rs`;
//! - [`helm`]: ministries' Helm releases of `charts/ruche`, for `tests/helm.rs`;
//! - [`prometheus`]: a Prometheus server scraping the operator and media nodes on loopback;
//! - [`chaos`]: the chaos suite's faults and its invariant, for `tests/chaos.rs`;
//! - [`fixtures`]: the fleets and rooms the scenarios create, and how to read their status;
//! - [`apiserver`] and [`usage`]: what a bench measures: the API server's request counters,
//!   a process's memory and CPU time.

pub mod apiserver;
pub mod audit;
pub mod chaos;
pub mod cluster;
pub mod crds;
pub mod error;
pub mod fixtures;
pub mod harness;
pub mod helm;
pub mod http;
pub mod install;
pub mod operator;
pub mod process;
pub mod prometheus;
pub mod rbac;
pub mod runner;
pub mod stand_in;
pub mod usage;
pub mod wait;

pub use error::{Error, Result};
pub use harness::{FleetView, NodeProgram, TestEnv};

/// The workspace's root directory (where `crds/`, `manifests/` and `target/` are).
pub fn workspace() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}
