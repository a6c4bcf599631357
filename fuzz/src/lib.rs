//! Fuzz targets for every input Ruche takes from outside: each is a plain function of bytes
//! that must never panic, hang or let through what it should refuse.
//!
//! - [`signaling`]: a signaling WebSocket's text frames;
//! - [`join_token`]: join tokens, checked against a ring of an HMAC and an Ed25519 key;
//! - [`media_port`]: datagrams on the media port (STUN, DTLS, SRTP, SRTCP, garbage) reaching a
//!   live room's connections, the first bytes of a TCP connection to the same port, and the SDP
//!   of a publish offer;
//! - [`admin_bodies`]: the admin API's request bodies, applied to a media core;
//! - [`scenario`]: the simulator's scenario files;
//! - [`custom_resources`]: `MediaFleet`, `MediaNode` and `Room` objects through the
//!   conversion that rebuilds a fleet's placements from them;
//! - [`core`]: the media core with a live room that the media targets feed.
//!
//! `fuzz_targets/` wraps each in libFuzzer for `make fuzz`; `tests/corpus.rs` replays the
//! corpus kept in `corpus/` on every `make test`, so what the fuzzer found stays fixed.

// A target reports what it found by panicking: that is the contract with the fuzzer.
#![allow(clippy::panic, clippy::missing_panics_doc)]

pub mod admin_bodies;
pub mod core;
pub mod custom_resources;
pub mod join_token;
pub mod media_port;
pub mod scenario;
pub mod signaling;

/// A target: a function of the fuzzer's bytes.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its `fuzz_targets/` binary and `corpus/` folder).
pub const TARGETS: &[(&str, Target)] = &[
    ("signaling", signaling::run),
    ("join_token", join_token::run),
    ("media_port", media_port::run),
    ("admin_bodies", admin_bodies::run),
    ("scenario", scenario::run),
    ("custom_resources", custom_resources::run),
];
