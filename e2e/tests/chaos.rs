//! The chaos suite (`make chaos`): a live fleet of real media nodes on a control plane of the
//! suite's own, rooms with WebRTC participants sending media, two operator replicas, and
//! faults injected one after the other (some combined) while every room is checked once a
//! second: no room loses its placement or its media unless its node died, and such a room is
//! placed again, with media, within [`BOUND`] of the fault's end. It ends with a table per fault: rooms
//! affected, time to recover, rooms lost.
//!
//! It runs only when `RUCHE_CHAOS_K8S_DIR` names the control plane (`../shared/k8s/up --dir`)
//! that `RUCHE_E2E_KUBECONFIG` points at: it stops that control plane's etcd and API server.
//! Otherwise it prints `SKIPPED` and passes (`make e2e` runs it that way).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The `webrtc` crate's futures are large; boxing them in tests buys nothing.
#![allow(clippy::large_futures, clippy::too_many_lines)]

#[path = "../../media-node/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt as _;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use nix::sys::signal::Signal;
use ruche_crds::token::TokenKey;
use ruche_crds::{MediaFleet, MediaNode, MediaNodeStatus, NodePhase, Room, RoomPhase};
use ruche_e2e::chaos::control_plane::{Component, ControlPlane};
use ruche_e2e::chaos::firewall::Cut;
use ruche_e2e::chaos::replicas::Replicas;
use ruche_e2e::chaos::verdict::{self, FaultReport, RoomHealth, Sample, Window};
use ruche_e2e::cluster::{self, KUBECONFIG_ENV};
use ruche_e2e::fixtures::{self, ADMIN_PORT};
use ruche_e2e::{NodeProgram, TestEnv, wait};
use serde_json::json;
use support::{Client, Outgoing, Pacer, Received};

const TEST: &str = "chaos";
const FLEET: &str = "fleet";
/// Host ports clear of the other suites' fleets.
const HOST_PORT_BASE: u16 = 26_000;
/// Nodes per zone (fixed: no autoscaling moves rooms under the faults).
const PER_ZONE: u32 = 2;
const ZONES: usize = 3;
const NODES: usize = ZONES * PER_ZONE as usize;
/// Slots per node: the burst's 1,000 rooms of 2 slots fit in the six nodes.
const SLOTS: u32 = 400;
/// Rooms watched throughout; the first [`LIVE_ROOMS`] (one per node) have participants.
const ROOMS: usize = 30;
const LIVE_ROOMS: usize = NODES;
/// The group the operator replicas run as, which the firewall rule matches.
const OPERATOR_GID: u32 = 47_881;
/// A participant that received nothing for this long has lost its media.
const MEDIA_GAP: Duration = Duration::from_secs(3);
/// How soon a room whose node died must be placed again with media, once the fault is over.
const BOUND: Duration = Duration::from_secs(60);
/// How long the suite waits, after a fault is healed, for everything to be settled.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(180);
/// Consecutive settled samples that end a fault's window.
const SETTLED_FOR: usize = 5;
const API_SERVER_DOWN: Duration = Duration::from_secs(60);
const ETCD_DOWN: Duration = Duration::from_secs(30);
const HUNG: Duration = Duration::from_secs(20);
const CUT_OFF: Duration = Duration::from_secs(30);
const BURST: usize = 1000;
/// How long a live room's participants may be on another node than its placement says (a
/// move under way, its participants following) before the room counts as lost.
const ASTRAY: Duration = Duration::from_secs(10);

#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/participant.rs"]
mod participant;
#[path = "chaos/sampler.rs"]
mod sampler;

use faults::World;
use participant::{PartState, Shared, take_part};
use sampler::sample;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_fleet_keeps_its_rooms_through_faults() {
    let kubeconfig = std::env::var_os(KUBECONFIG_ENV).map(std::path::PathBuf::from);
    let control = match ControlPlane::from_env(kubeconfig.as_deref()) {
        None => {
            cluster::print_skip_as(
                TEST,
                "no chaos control plane",
                "RUCHE_CHAOS_K8S_DIR is not set; `make chaos` starts a control plane of its own and sets it",
            );
            return;
        }
        Some(c) => c.unwrap_or_else(|e| panic!("{e}")),
    };
    Cut::available().unwrap_or_else(|e| panic!("the firewall faults need iptables: {e}"));
    let Some(mut env) = TestEnv::start_with(TEST, NodeProgram::ProbedMediaNode)
        .await
        .unwrap()
    else {
        return;
    };
    // The harness's single operator gives way to two replicas in the firewall's group.
    if let Some(op) = env.operator.take() {
        op.stop(Duration::from_secs(10)).await;
    }
    let replicas = Arc::new(
        Replicas::start(
            env.operator_files().unwrap(),
            &env.namespace,
            &env.dir,
            OPERATOR_GID,
            2,
        )
        .unwrap(),
    );
    let began = Instant::now();

    let mut fleet = fixtures::fleet_with(
        FLEET,
        HOST_PORT_BASE,
        &[
            ("e2e-a", PER_ZONE, PER_ZONE),
            ("e2e-b", PER_ZONE, PER_ZONE),
            ("e2e-c", PER_ZONE, PER_ZONE),
        ],
        SLOTS,
    );
    fleet["spec"]["rollout"] = json!({
        "maxSurge": 1, "maxUnavailable": 0, "drainDeadline": "5s", "atDeadline": "Migrate",
        "progressDeadline": "5m",
    });
    env.apply::<MediaFleet>(FLEET, &fleet).await.unwrap();
    env.wait_fleet_ready(FLEET, PER_ZONE, Duration::from_secs(240))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = (0..ROOMS).map(|i| format!("room-{i:02}")).collect();
    let rooms = names
        .iter()
        .map(|n| fixtures::room(n, FLEET, 2, &[]).unwrap())
        .collect();
    env.create_rooms(rooms, 10).await.unwrap();
    let placed = env
        .wait_rooms_placed(&names, &[RoomPhase::Scheduled], Duration::from_secs(120))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Live rooms: one per node where the placement allows, then the rest in order.
    let mut live: Vec<String> = Vec::new();
    let mut seen_nodes = BTreeSet::new();
    for r in &placed {
        if seen_nodes.insert(fixtures::node_of(r).unwrap().to_string()) {
            live.push(r.name_any());
        }
    }
    for r in &placed {
        if live.len() < LIVE_ROOMS && !live.contains(&r.name_any()) {
            live.push(r.name_any());
        }
    }
    live.truncate(LIVE_ROOMS);

    let key = Arc::new(
        fixtures::join_key(&env.client, &env.namespace, FLEET)
            .await
            .unwrap(),
    );
    let endpoints: Shared<BTreeMap<String, String>> = Arc::new(Mutex::new(
        placed
            .iter()
            .map(|r| (r.name_any(), fixtures::endpoint_of(r).unwrap().to_string()))
            .collect(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mut parts = Vec::new();
    let mut tasks = Vec::new();
    for (n, room) in live.iter().enumerate() {
        let (a, b) = (0x40 + 2 * n as u8, 0x41 + 2 * n as u8);
        for (who, tags) in [("alice", (a, b)), ("bob", (b, a))] {
            let state = Arc::new(Mutex::new(PartState::default()));
            parts.push((room.clone(), state.clone()));
            tasks.push(tokio::spawn(take_part(
                room.clone(),
                who,
                tags,
                key.clone(),
                endpoints.clone(),
                state,
                stop.clone(),
            )));
        }
    }
    wait::until(
        "every participant to receive media",
        Duration::from_secs(60),
        || async {
            let now = Instant::now();
            let waiting = parts
                .iter()
                .filter(|(_, s)| s.lock().unwrap().without_media(now) > MEDIA_GAP)
                .count();
            (waiting == 0)
                .then_some(())
                .ok_or(format!("{waiting} participants without media"))
        },
    )
    .await
    .unwrap();
    let samples: Shared<Vec<Sample>> = Arc::new(Mutex::new(Vec::new()));
    let sampling = tokio::spawn(sample(
        env.api::<Room>(),
        env.api::<MediaNode>(),
        replicas.clone(),
        names.clone(),
        parts.clone(),
        endpoints.clone(),
        samples.clone(),
        began,
        stop.clone(),
    ));
    eprintln!(
        "chaos: {NODES} nodes Ready, {ROOMS} rooms placed, {} participants in {LIVE_ROOMS} live rooms {live:?} receiving media",
        parts.len()
    );

    let mut world = World {
        env,
        control,
        replicas,
        began,
        watched: names,
        parts,
        samples,
        stop: stop.clone(),
        reports: Vec::new(),
        notes: Vec::new(),
    };
    let baseline = world.now();
    world
        .judge("none (baseline)", baseline, baseline, BTreeSet::new())
        .await;
    world
        .control_plane_down(Component::ApiServer, API_SERVER_DOWN)
        .await;
    world.control_plane_down(Component::Etcd, ETCD_DOWN).await;
    world.both_replicas_killed().await;
    world.leader_killed_mid_rollout().await;
    world.leader_killed_mid_migration().await;
    world.admin_port_cut().await;
    world.node_hung(false).await;
    world.zone_killed().await;
    world.burst().await;
    world.node_hung(true).await;
    world.node_killed_while_api_server_down().await;

    world.stop.store(true, Ordering::Relaxed);
    sampling.await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    world.replicas.stop().await;
    let mut totals = PartState::default();
    for (_, s) in &world.parts {
        let s = s.lock().unwrap();
        totals.received += s.received;
        totals.foreign += s.foreign;
        totals.rejoins += s.rejoins;
        totals.follows += s.follows;
    }
    let table = verdict::table(&world.reports);
    println!(
        "\nchaos: per fault (rooms watched: {ROOMS}, {LIVE_ROOMS} of them with two participants sending audio and video; bound for rooms of dead nodes {BOUND:?})\n\n{table}"
    );
    for note in &world.notes {
        println!("- {note}");
    }
    println!(
        "- participants: {} packets received, {} not from their peer, {} joins again after a node was lost, {} migrations followed; operator processes started: {}",
        totals.received,
        totals.foreign,
        totals.rejoins,
        totals.follows,
        world.replicas.starts()
    );
    let lost: usize = world.reports.iter().map(|r| r.lost.len()).sum();
    assert_eq!(lost, 0, "rooms were lost:\n{table}");
    assert_eq!(
        totals.foreign, 0,
        "a participant received media that was not its peer's"
    );
}
