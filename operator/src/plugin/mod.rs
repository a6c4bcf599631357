//! `kubectl ruche`, the kubectl plugin (`src/bin/kubectl-ruche.rs`): what it prints and what
//! it writes, as pure functions over the objects it read.
//!
//! - [`render`]: `status` (a fleet at a glance, zone by zone) and `top nodes|rooms`;
//! - [`explain`]: where a room is and why, or why it waits, from the decision core;
//! - [`edit`]: the patches of `drain`, `undrain` and `evacuate`, and the checks before them.

pub mod edit;
pub mod explain;
pub mod render;
