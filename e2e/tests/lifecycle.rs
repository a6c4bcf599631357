//! Drains and rolling upgrades on the real API server, with real media nodes and WebRTC
//! participants: a drain with a deadline moves live calls to another node and each participant
//! receives media again within 2 s of being told to move; undraining puts the node back in
//! service; a template change rolls every node to the new revision without losing a call, even
//! across an operator restart; a revision whose media node cannot start halts the rollout.
//!
//! Without a cluster (`RUCHE_E2E_KUBECONFIG` unset or unreachable) every test prints
//! `SKIPPED (no cluster): <why>` and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The `webrtc` crate's futures are large; boxing them in tests buys nothing.
#![allow(clippy::large_futures, clippy::too_many_lines)]

#[path = "../../media-node/tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use ruche_crds::{MediaFleet, MediaNode, NodePhase, Room, RoomPhase};
use ruche_e2e::fixtures;
use ruche_e2e::{TestEnv, wait};
use serde_json::json;
use support::{Client, Pacer};

/// The fleet of every scenario here.
const FLEET: &str = "fleet";
/// Host ports of this file's fleets: clear of `tests/e2e.rs` (21000 + 100·n) and
/// `tests/install.rs` (24000).
const HOST_PORT_BASE: u16 = 23_000;
/// How long a fresh fleet gets to run its Ready nodes.
const FLEET_READY: Duration = Duration::from_secs(240);
/// The goal: a moved participant receives media from the new node this soon after the
/// `migrate` message.
const MEDIA_BACK: Duration = Duration::from_secs(2);

/// Sets a scenario up, or returns from the test if there is no cluster.
macro_rules! setup {
    ($start:expr, $test:expr) => {
        match $start($test).await {
            Ok(Some(env)) => env,
            Ok(None) => return,
            Err(e) => panic!("{}: set-up failed: {e}", $test),
        }
    };
}

/// What one participant saw.
#[derive(Debug, Default)]
struct Seen {
    /// Whether media from the other participant arrived before any move.
    media_before: bool,
    /// From the `migrate` message to the first media packet on the new node.
    media_back: Option<Duration>,
    /// Endpoints it was connected to, in order.
    endpoints: Vec<String>,
    /// Whether every payload received on the new node carried the other's tag.
    intact_after: bool,
}

/// A participant: joins `room` at `endpoint`, publishes tagged audio and video the way a
/// browser's encoder does (a keyframe first, on request, and every second), follows a
/// `migrate` message at once (join the new node, then leave the old), until `stop`.
async fn take_part(
    room: String,
    endpoint: String,
    token: String,
    tag: u8,
    peer_tag: u8,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut seen = Seen {
        endpoints: vec![endpoint.clone()],
        ..Seen::default()
    };
    let mut client = Client::join(&endpoint, &room, &token)
        .await
        .unwrap_or_else(|refused| panic!("could not join {room} at {endpoint}: {refused}"));
    let (mut video, mut audio) = client.publish_av().await;
    let mut moved_at: Option<Instant> = None;
    let mut pacer = Pacer::new(&client, Duration::from_secs(1));
    while !stop.load(Ordering::Relaxed) {
        if moved_at.is_none() {
            seen.media_before |= client.received.lock().unwrap().first_packet.is_some();
            if let Some(to) = client.migrated() {
                client = client.follow(&room, &to).await.unwrap_or_else(|refused| {
                    panic!("could not rejoin {room} at {}: {refused}", to.endpoint)
                });
                seen.endpoints.push(to.endpoint.clone());
                (video, audio) = client.publish_av().await;
                moved_at = Some(to.at);
                pacer.restart(&client);
            }
        } else if seen.media_back.is_none()
            && let (Some(at), Some(got)) = (moved_at, client.received.lock().unwrap().first_packet)
        {
            seen.media_back = Some(got.saturating_duration_since(at));
        }
        pacer.step(&client, &video, &audio, tag).await;
    }
    if moved_at.is_some() {
        let received = client.received.lock().unwrap();
        let payloads: Vec<_> = received
            .packets
            .values()
            .flat_map(|v| v.iter().map(|p| p.2.clone()))
            .collect();
        seen.intact_after =
            !payloads.is_empty() && payloads.iter().all(|p| p.ends_with(&[peer_tag; 20]));
    }
    client.close().await;
    seen
}

/// The node's phase and its `Draining` condition (status, reason, message), if any.
fn drain_state(node: &MediaNode) -> (NodePhase, Option<(String, String, String)>) {
    let status = node.status.clone().unwrap_or_default();
    let draining = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Draining")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    (status.phase, draining)
}

/// Waits until `want` accepts the node's drain state (phase and `Draining` condition);
/// returns what it returned.
async fn until_drain_state<T>(
    env: &TestEnv,
    node: &str,
    what: &str,
    within: Duration,
    want: impl Fn(NodePhase, Option<(String, String, String)>) -> Option<T>,
) -> T {
    let nodes = env.api::<MediaNode>();
    wait::until(what, within, || async {
        let n = nodes.get(node).await.map_err(|e| e.to_string())?;
        let (phase, draining) = drain_state(&n);
        want(phase, draining.clone()).ok_or_else(|| format!("{phase:?}, Draining {draining:?}"))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Applies `fleet`, waits for `per_zone` Ready nodes in each of its zones, creates `rooms` and
/// waits until they are placed; returns the fleet as it then is, and the placed rooms.
async fn ready_with_rooms(
    env: &TestEnv,
    fleet: &serde_json::Value,
    per_zone: u32,
    rooms: Vec<Room>,
) -> (ruche_e2e::FleetView, Vec<Room>) {
    env.apply::<MediaFleet>(FLEET, fleet)
        .await
        .expect("the fleet is applied");
    let ready = env
        .wait_fleet_ready(FLEET, per_zone, FLEET_READY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if rooms.is_empty() {
        return (ready, Vec::new());
    }
    let names: Vec<String> = rooms.iter().map(ResourceExt::name_any).collect();
    env.create_rooms(rooms, names.len())
        .await
        .expect("rooms are created");
    let placed = env
        .wait_rooms_placed(&names, &[RoomPhase::Scheduled], Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (ready, placed)
}

/// Rooms `<prefix>-0`… of 2 slots, allowed in any zone.
fn rooms(prefix: &str, count: usize) -> Vec<Room> {
    (0..count)
        .map(|i| fixtures::room(&format!("{prefix}-{i}"), FLEET, 2, &[]).unwrap())
        .collect()
}

/// (1) A drain with a deadline takes the node out of service at once and says so; at the
/// deadline every live call moves to the other node, each participant receives media there
/// within 2 s of its `migrate` message; the drained node is kept (a person drained it) until
/// it is undrained, which puts it back in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_with_a_deadline_moves_live_calls_and_undrain_puts_the_node_back() {
    let env = setup!(TestEnv::start, "drain-moves-live-calls");
    let fleet = fixtures::fleet_with(FLEET, HOST_PORT_BASE, &[("e2e-a", 2, 2)], 100);
    let (_, placed) = ready_with_rooms(&env, &fleet, 2, rooms("call", 4)).await;
    let mut by_node: BTreeMap<String, Vec<&Room>> = BTreeMap::new();
    for r in &placed {
        by_node
            .entry(fixtures::node_of(r).unwrap().to_string())
            .or_default()
            .push(r);
    }
    let (victim, calls) = by_node.iter().max_by_key(|(_, r)| r.len()).unwrap();
    let victim = victim.clone();
    eprintln!(
        "e2e [{}]: {} live call(s) on media node {victim}",
        env.test,
        calls.len()
    );

    // Two participants per call, each publishing and receiving the other.
    let live = Calls::start(&env, calls).await;
    // Media flows before anything moves.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Drain by hand, with a deadline a few seconds away: out of service at once.
    let deadline = Timestamp::now()
        .checked_add(SignedDuration::from_secs(5))
        .unwrap();
    let nodes = env.api::<MediaNode>();
    let patch = json!({ "spec": { "drain": {
        "deadline": Time(deadline), "mode": "Migrate", "reason": "Manual" } } });
    nodes
        .patch(&victim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the drain is set");
    let draining = until_drain_state(
        &env,
        &victim,
        "the node to say it drains",
        Duration::from_secs(10),
        |phase, draining| match (phase, draining) {
            (NodePhase::Draining, Some((holds, reason, message)))
                if holds == "True" && reason == "Manual" =>
            {
                Some(message)
            }
            _ => None,
        },
    )
    .await;
    eprintln!("e2e [{}]: {victim}: Draining: {draining}", env.test);
    assert!(
        draining.contains(&format!("{} room(s) left", calls.len())),
        "{draining}"
    );
    // A room created now never lands on the draining node.
    env.create_rooms(vec![fixtures::room("late", FLEET, 2, &[]).unwrap()], 1)
        .await
        .unwrap();
    let late = env
        .wait_rooms_placed(
            &["late".into()],
            &[RoomPhase::Scheduled],
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(fixtures::node_of(&late[0]), Some(victim.as_str()));

    // At the deadline every call moves; each participant gets media back on the new node.
    let call_names: Vec<String> = calls.iter().map(|r| r.name_any()).collect();
    let moved = wait::until(
        "every call to be Scheduled or Active on another node, moved live",
        Duration::from_secs(60),
        || async {
            let rooms = env.rooms().await.map_err(|e| e.to_string())?;
            let ours: Vec<Room> = rooms
                .into_iter()
                .filter(|r| call_names.contains(&r.name_any()))
                .collect();
            for r in &ours {
                fixtures::check_placed(r, &[RoomPhase::Scheduled, RoomPhase::Active])?;
                if fixtures::node_of(r) == Some(victim.as_str()) {
                    return Err(format!("{} is still on {victim}", r.name_any()));
                }
                let migration = r
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Migration"))
                    .map(|c| (c.status.clone(), c.reason.clone()));
                if migration != Some(("True".into(), "Migrated".into())) {
                    return Err(format!("{}: Migration {migration:?}", r.name_any()));
                }
            }
            Ok(ours)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let left = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut back = Vec::new();
    for (room, who, seen) in live.end().await {
        let new_endpoint = moved
            .iter()
            .find(|r| r.name_any() == room)
            .and_then(|r| fixtures::endpoint_of(r))
            .unwrap()
            .to_string();
        assert!(
            seen.media_before,
            "{who} in {room} had media before the drain"
        );
        assert_eq!(
            seen.endpoints.last(),
            Some(&new_endpoint),
            "{who} in {room} followed the migrate message to the room's new endpoint: {seen:?}"
        );
        let took = seen
            .media_back
            .unwrap_or_else(|| panic!("{who} in {room} got no media on the new node: {seen:?}"));
        assert!(
            seen.intact_after,
            "{who} in {room} receives the other's media intact"
        );
        back.push(took);
    }
    back.sort();
    let (p50, max) = (percentile(&back, 0.5), back[back.len() - 1]);
    eprintln!(
        "e2e [{}]: media back on the new node after the migrate message, {} participants: p50 {p50:?}, max {max:?} (goal < {MEDIA_BACK:?})",
        env.test,
        back.len()
    );
    assert!(max < MEDIA_BACK, "media back after {max:?}: {back:?}");

    // Everyone left the old node: it is Drained, and kept (a person drained it).
    let drained = |phase, _| (phase == NodePhase::Drained).then_some(());
    until_drain_state(
        &env,
        &victim,
        "the node to be Drained",
        Duration::from_secs(90),
        drained,
    )
    .await;
    eprintln!(
        "e2e [{}]: {victim} Drained {:?} after the last call moved",
        env.test,
        left.elapsed()
    );
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = env.api();
    let migrated = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Migrated"))
        .count();
    assert_eq!(migrated, calls.len(), "one Migrated event per call");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let kept = nodes
        .get(&victim)
        .await
        .expect("a node drained by hand is kept");
    assert_eq!(kept.status.map(|s| s.phase), Some(NodePhase::Drained));

    // Undrained: back in service.
    let undrain = json!({ "spec": { "drain": null } });
    nodes
        .patch(&victim, &PatchParams::default(), &Patch::Merge(&undrain))
        .await
        .expect("the drain is removed");
    let serving = |phase, draining: Option<_>| {
        (phase == NodePhase::Ready && draining.is_none()).then_some(())
    };
    until_drain_state(
        &env,
        &victim,
        "the node to be Ready again",
        Duration::from_secs(30),
        serving,
    )
    .await;
}

/// The live calls of a scenario: two participants per room, publishing and following moves.
struct Calls {
    stop: Arc<AtomicBool>,
    parts: Vec<(String, &'static str, tokio::task::JoinHandle<Seen>)>,
}

impl Calls {
    /// Starts a call in each room (at its current endpoint), participants tagged apart.
    async fn start(env: &TestEnv, rooms: &[&Room]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let mut parts = Vec::new();
        for (n, r) in rooms.iter().enumerate() {
            let endpoint = fixtures::endpoint_of(r).unwrap().to_string();
            let (a, b) = (0x40 + 2 * n as u8, 0x41 + 2 * n as u8);
            for (who, tag, peer) in [("alice", a, b), ("bob", b, a)] {
                let token = env.token(FLEET, &r.name_any(), who).await.unwrap();
                let task = tokio::spawn(take_part(
                    r.name_any(),
                    endpoint.clone(),
                    token,
                    tag,
                    peer,
                    stop.clone(),
                ));
                parts.push((r.name_any(), who, task));
            }
        }
        Self { stop, parts }
    }

    /// Ends the calls; returns what each participant saw, by room and name.
    async fn end(self) -> Vec<(String, &'static str, Seen)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for (room, who, task) in self.parts {
            out.push((room, who, task.await.unwrap()));
        }
        out
    }
}

/// A fleet of one zone of `nodes` nodes that rolls one node at a time (surge 1, none
/// unavailable), moving rooms 10 s after a node starts draining, halting after
/// `progress_deadline`.
fn rolling_fleet(host_port_base: u16, nodes: u32, progress_deadline: &str) -> serde_json::Value {
    let mut fleet = fixtures::fleet_with(FLEET, host_port_base, &[("e2e-a", nodes, nodes)], 100);
    fleet["spec"]["rollout"] = json!({
        "maxSurge": 1,
        "maxUnavailable": 0,
        "drainDeadline": "10s",
        "atDeadline": "Migrate",
        "progressDeadline": progress_deadline,
    });
    fleet
}

/// Changes the fleet's template (a merge patch of `spec.template`); returns the revision the
/// fleet then reports.
async fn change_template(env: &TestEnv, template: serde_json::Value) -> String {
    let fleets = env.api::<MediaFleet>();
    let before = fleets.get(FLEET).await.unwrap();
    let old = before
        .status
        .and_then(|s| s.update_revision)
        .unwrap_or_default();
    fleets
        .patch(
            FLEET,
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "template": template } })),
        )
        .await
        .expect("the template is changed");
    wait::until(
        "the fleet to report the new revision",
        Duration::from_secs(30),
        || async {
            let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
            match f.status.and_then(|s| s.update_revision) {
                Some(r) if r != old => Ok(r),
                other => Err(format!("updateRevision {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The Migrated events per room.
async fn migrations(env: &TestEnv) -> BTreeMap<String, usize> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = env.api();
    let mut per_room = BTreeMap::new();
    for e in events.list(&ListParams::default()).await.unwrap().items {
        if e.reason.as_deref() == Some("Migrated")
            && let Some(room) = e.regarding.and_then(|r| r.name)
        {
            *per_room.entry(room).or_default() += 1;
        }
    }
    per_room
}

/// (2) A template change rolls every node to the new revision, one at a time, while calls go
/// on: each room moves live at most once (an operator restarted mid-rollout moves none twice),
/// no room is lost, and every participant ends on a node of the new revision with media.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_upgrade_moves_every_call_to_the_new_revision_without_losing_one() {
    let mut env = setup!(TestEnv::start, "rolling-upgrade-keeps-calls");
    let fleet = rolling_fleet(HOST_PORT_BASE + 100, 2, "3m");
    let (_, placed) = ready_with_rooms(&env, &fleet, 2, rooms("meeting", 3)).await;
    let names: Vec<String> = placed.iter().map(ResourceExt::name_any).collect();
    let calls = Calls::start(&env, &placed.iter().collect::<Vec<_>>()).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let started = Instant::now();
    let target = change_template(
        &env,
        json!({ "image": "registry.invalid/ruche/media-node:e2e-v2" }),
    )
    .await;
    eprintln!("e2e [{}]: rolling out revision {target}", env.test);
    // Once the first old node drains, the operator is killed and replaced.
    let nodes = env.api::<MediaNode>();
    wait::until(
        "an old node to drain for the rollout",
        Duration::from_secs(120),
        || async {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .iter()
                .find(|n| {
                    n.spec.revision != target
                        && n.spec.drain.as_ref().and_then(|d| d.reason.as_deref())
                            == Some("Rollout")
                })
                .map(ResourceExt::name_any)
                .ok_or_else(|| "no old node drains yet".to_string())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    env.restart_operator().await.expect("the operator restarts");
    eprintln!(
        "e2e [{}]: operator restarted {:?} into the rollout",
        env.test,
        started.elapsed()
    );
    let done = wait::until_every(
        "every node on the new revision, the rollout over, every room placed",
        Duration::from_secs(300),
        Duration::from_secs(1),
        || async {
            let f = env
                .api::<MediaFleet>()
                .get(FLEET)
                .await
                .map_err(|e| e.to_string())?;
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let old: Vec<String> = list
                .items
                .iter()
                .filter(|n| n.spec.revision != target)
                .map(|n| {
                    format!(
                        "{} ({:?})",
                        n.name_any(),
                        n.status.as_ref().map(|s| s.phase)
                    )
                })
                .collect();
            if !old.is_empty() {
                return Err(format!(
                    "old nodes left: {old:?}; rollout {:?}",
                    f.status.and_then(|s| s.rollout)
                ));
            }
            let status = f.status.unwrap_or_default();
            if status.rollout.is_some() || status.ready_replicas != 2 {
                return Err(format!(
                    "rollout {:?}, {} Ready",
                    status.rollout, status.ready_replicas
                ));
            }
            let rooms = env.rooms().await.map_err(|e| e.to_string())?;
            let ours: Vec<Room> = rooms
                .into_iter()
                .filter(|r| names.contains(&r.name_any()))
                .collect();
            if ours.len() != names.len() {
                return Err(format!("{} of {} rooms", ours.len(), names.len()));
            }
            for r in &ours {
                fixtures::check_placed(r, &[RoomPhase::Scheduled, RoomPhase::Active])?;
                let on = fixtures::node_of(r).unwrap_or_default();
                if !list.items.iter().any(|n| n.name_any() == on) {
                    return Err(format!("{} is on {on}, which is gone", r.name_any()));
                }
            }
            Ok(ours)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seen = calls.end().await;
    let moved = migrations(&env).await;
    eprintln!(
        "e2e [{}]: rollout done in {took:?}; live moves per room: {moved:?}",
        env.test
    );
    for (room, n) in &moved {
        assert!(*n <= 1, "{room} moved {n} times");
    }
    let mut back = Vec::new();
    for (room, who, seen) in &seen {
        let endpoint = done
            .iter()
            .find(|r| &r.name_any() == room)
            .and_then(|r| fixtures::endpoint_of(r))
            .unwrap()
            .to_string();
        assert!(
            seen.media_before,
            "{who} in {room} had media before the rollout"
        );
        assert_eq!(
            seen.endpoints.last(),
            Some(&endpoint),
            "{who} in {room} ends on the room's node: {seen:?}"
        );
        if seen.endpoints.len() > 1 {
            let took = seen
                .media_back
                .unwrap_or_else(|| panic!("{who} in {room} got no media after moving: {seen:?}"));
            assert!(
                seen.intact_after,
                "{who} in {room}: the other's media, intact"
            );
            back.push(took);
        }
    }
    assert!(!back.is_empty(), "some call moved during the rollout");
    back.sort();
    eprintln!(
        "e2e [{}]: media back after a move, {} participants: p50 {:?}, max {:?}",
        env.test,
        back.len(),
        percentile(&back, 0.5),
        back[back.len() - 1]
    );
    assert!(back[back.len() - 1] < MEDIA_BACK, "{back:?}");
}

/// (3) A revision whose media node cannot start halts the rollout: the fleet says Degraded
/// (RolloutHalted), no old node is drained (maxUnavailable 0), new rooms go to the old nodes;
/// a fixed template resumes and completes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revision_whose_node_cannot_start_halts_and_a_fixed_template_resumes() {
    let env = setup!(TestEnv::start, "bad-revision-halts");
    let fleet = rolling_fleet(HOST_PORT_BASE + 200, 2, "20s");
    let (ready, _) = ready_with_rooms(&env, &fleet, 2, Vec::new()).await;
    let old_nodes: Vec<String> = ready.nodes.iter().map(ResourceExt::name_any).collect();
    // The media node refuses this setting and exits at once.
    let bad = change_template(
        &env,
        json!({ "env": [{ "name": "RUCHE_MAX_ROOM_PARTICIPANTS", "value": "many" }] }),
    )
    .await;
    let fleets = env.api::<MediaFleet>();
    let halted = wait::until("the rollout to halt", Duration::from_secs(120), || async {
        let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
        let status = f.status.unwrap_or_default();
        let degraded = status
            .conditions
            .iter()
            .find(|c| c.type_ == "Degraded")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
        match (&status.rollout, degraded) {
            (Some(r), Some((holds, reason, message)))
                if r.halted.is_some() && holds == "True" && reason == "RolloutHalted" =>
            {
                Ok(message)
            }
            (r, d) => Err(format!("rollout {r:?}, Degraded {d:?}")),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("e2e [{}]: Degraded: {halted}", env.test);
    assert!(halted.contains(&bad), "{halted}");
    // No old node drained, and they take the new rooms.
    let nodes = env.api::<MediaNode>();
    for name in &old_nodes {
        let n = nodes.get(name).await.unwrap();
        assert!(
            n.spec.drain.is_none(),
            "{name} was drained: {:?}",
            n.spec.drain
        );
        assert_eq!(n.status.map(|s| s.phase), Some(NodePhase::Ready), "{name}");
    }
    env.create_rooms(
        vec![fixtures::room("after-halt", FLEET, 2, &[]).unwrap()],
        1,
    )
    .await
    .unwrap();
    let placed = env
        .wait_rooms_placed(
            &["after-halt".into()],
            &[RoomPhase::Scheduled],
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let on = fixtures::node_of(&placed[0]).unwrap().to_string();
    assert!(
        old_nodes.contains(&on),
        "a new room goes to an old node, not {on}"
    );

    // Fixed: the rollout resumes with the next revision and completes.
    let fixed = change_template(
        &env,
        json!({ "env": null, "image": "registry.invalid/ruche/media-node:e2e-v3" }),
    )
    .await;
    assert_ne!(fixed, bad);
    wait::until_every(
        "every node on the fixed revision, the fleet not Degraded",
        Duration::from_secs(300),
        Duration::from_secs(1),
        || async {
            let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let others: Vec<String> = list
                .items
                .iter()
                .filter(|n| n.spec.revision != fixed)
                .map(ResourceExt::name_any)
                .collect();
            let status = f.status.unwrap_or_default();
            let degraded = status
                .conditions
                .iter()
                .find(|c| c.type_ == "Degraded")
                .map(|c| c.status.clone());
            if others.is_empty() && status.rollout.is_none() && degraded.as_deref() == Some("False")
            {
                Ok(())
            } else {
                Err(format!(
                    "not yet on {fixed}: {others:?}; rollout {:?}; Degraded {degraded:?}",
                    status.rollout
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// (4) Evacuating a zone drains its nodes and moves every room that may go elsewhere, a live
/// call included; a room pinned to that zone stays, named in the fleet's `ZoneEvacuated`
/// condition and with its own `Migration` condition; ending the evacuation brings the zone's
/// node back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_zone_evacuation_moves_what_may_move_and_names_the_pinned_rooms() {
    let env = setup!(TestEnv::start, "zone-evacuation");
    let mut fleet = fixtures::fleet_with(
        FLEET,
        HOST_PORT_BASE + 300,
        &[("e2e-a", 1, 1), ("e2e-b", 1, 1)],
        100,
    );
    fleet["spec"]["rollout"] = json!({ "drainDeadline": "5s", "atDeadline": "Migrate" });
    let mut wanted = rooms("free", 4);
    wanted.push(fixtures::room("pinned", FLEET, 2, &["e2e-a"]).unwrap());
    let (_, placed) = ready_with_rooms(&env, &fleet, 1, wanted).await;
    let names: Vec<String> = placed.iter().map(ResourceExt::name_any).collect();
    let in_a: Vec<&Room> = placed
        .iter()
        .filter(|r| r.status.as_ref().and_then(|s| s.zone.as_deref()) == Some("e2e-a"))
        .collect();
    let movable: Vec<&Room> = in_a
        .iter()
        .copied()
        .filter(|r| r.name_any() != "pinned")
        .collect();
    assert!(
        !movable.is_empty(),
        "some free room landed in e2e-a: {names:?}"
    );
    eprintln!(
        "e2e [{}]: in e2e-a: {:?}",
        env.test,
        in_a.iter().map(|r| r.name_any()).collect::<Vec<_>>()
    );
    let live = Calls::start(&env, &movable[..1]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let fleets = env.api::<MediaFleet>();
    let evacuate = |on: bool| {
        json!({ "spec": { "zones": [
            { "name": "e2e-a", "minNodes": 1, "maxNodes": 1, "evacuate": on },
            { "name": "e2e-b", "minNodes": 1, "maxNodes": 1 },
        ] } })
    };
    fleets
        .patch(
            FLEET,
            &PatchParams::default(),
            &Patch::Merge(&evacuate(true)),
        )
        .await
        .expect("the zone is evacuated");
    let movable_names: Vec<String> = movable.iter().map(|r| r.name_any()).collect();
    let evacuated_message = wait::until(
        "every movable room of e2e-a in e2e-b, the pinned room named",
        Duration::from_secs(90),
        || async {
            let rooms = env.rooms().await.map_err(|e| e.to_string())?;
            for r in rooms
                .iter()
                .filter(|r| movable_names.contains(&r.name_any()))
            {
                fixtures::check_placed(r, &[RoomPhase::Scheduled, RoomPhase::Active])?;
                let zone = r.status.as_ref().and_then(|s| s.zone.clone());
                if zone.as_deref() != Some("e2e-b") {
                    return Err(format!("{} is in {zone:?}", r.name_any()));
                }
            }
            let pinned = rooms
                .iter()
                .find(|r| r.name_any() == "pinned")
                .ok_or("no pinned room")?;
            fixtures::check_placed(pinned, &[RoomPhase::Scheduled, RoomPhase::Active])?;
            let blocked = pinned
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Migration"))
                .map(|c| (c.status.clone(), c.message.clone()));
            if blocked.as_ref().is_none_or(|(s, _)| s != "False") {
                return Err(format!("pinned: Migration {blocked:?}"));
            }
            let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
            let evacuated = f
                .status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "ZoneEvacuated")
                .map(|c| (c.reason, c.message));
            match evacuated {
                Some((reason, message))
                    if reason == "RoomsPinned" && message.contains("pinned") =>
                {
                    Ok(message)
                }
                other => Err(format!("ZoneEvacuated {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("e2e [{}]: ZoneEvacuated: {evacuated_message}", env.test);
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (room, who, seen) in live.end().await {
        assert!(seen.media_before, "{who} in {room}: media before");
        let took = seen
            .media_back
            .unwrap_or_else(|| panic!("{who} in {room}: no media after the move: {seen:?}"));
        assert!(
            took < MEDIA_BACK,
            "{who} in {room}: media back after {took:?}"
        );
        assert!(
            seen.intact_after,
            "{who} in {room}: intact media after the move"
        );
    }

    // The evacuation ends: the zone's node serves again.
    fleets
        .patch(
            FLEET,
            &PatchParams::default(),
            &Patch::Merge(&evacuate(false)),
        )
        .await
        .expect("the evacuation ends");
    let nodes = env.api::<MediaNode>();
    wait::until(
        "e2e-a's node to serve again, the condition gone",
        Duration::from_secs(60),
        || async {
            let list = nodes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let a: Vec<(String, Option<NodePhase>, bool)> = list
                .items
                .iter()
                .filter(|n| n.spec.zone == "e2e-a")
                .map(|n| {
                    (
                        n.name_any(),
                        n.status.as_ref().map(|s| s.phase),
                        n.spec.drain.is_some(),
                    )
                })
                .collect();
            let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
            let gone = !f
                .status
                .unwrap_or_default()
                .conditions
                .iter()
                .any(|c| c.type_ == "ZoneEvacuated");
            if gone && a.iter().any(|(_, p, d)| *p == Some(NodePhase::Ready) && !d) {
                Ok(())
            } else {
                Err(format!("e2e-a: {a:?}, condition gone: {gone}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// (5) A media pod hosting a call is protected from voluntary evictions by the fleet's
/// PodDisruptionBudget (an idle one is not), and `kubectl cordon` of the Kubernetes node it
/// runs on drains its media node: the call moves, the participants get media back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cordoned_kubernetes_node_drains_its_media_node_and_busy_pods_are_not_evicted() {
    let env = setup!(TestEnv::start, "cordon-drains");
    let mut fleet = fixtures::fleet_with(FLEET, HOST_PORT_BASE + 400, &[("e2e-a", 2, 2)], 100);
    fleet["spec"]["rollout"] = json!({ "drainDeadline": "5s", "atDeadline": "Migrate" });
    let call = vec![fixtures::room("call", FLEET, 2, &[]).unwrap()];
    let (ready, placed) = ready_with_rooms(&env, &fleet, 2, call).await;
    let busy_node = fixtures::node_of(&placed[0]).unwrap().to_string();
    let pod_of = |name: &str| {
        ready
            .nodes
            .iter()
            .find(|n| n.name_any() == name)
            .and_then(|n| n.status.as_ref()?.pod.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let busy_pod = pod_of(&busy_node);
    let idle_pod = ready
        .nodes
        .iter()
        .map(ResourceExt::name_any)
        .find(|n| *n != busy_node)
        .map(|n| pod_of(&n))
        .unwrap();
    let live = Calls::start(&env, &[&placed[0]]).await;

    // The Kubernetes node the busy pod runs on (the pod runner schedules nothing: bind it).
    let host = format!("host-{}", env.namespace);
    let hosts = kube::Api::<k8s_openapi::api::core::v1::Node>::all(env.client.clone());
    hosts
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({ "metadata": { "name": host } })).unwrap(),
        )
        .await
        .expect("the Kubernetes node is created");
    let pods = env.api::<k8s_openapi::api::core::v1::Pod>();
    let binding = json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": { "name": busy_pod },
        "target": { "apiVersion": "v1", "kind": "Node", "name": host },
    });
    pods.create_subresource::<_, serde_json::Value>(
        "binding",
        &busy_pod,
        &kube::api::PostParams::default(),
        &binding,
    )
    .await
    .expect("the pod is bound to the Kubernetes node");

    // Busy: labelled so, and the fleet's budget refuses its eviction; the idle pod may go.
    wait::until(
        "the busy pod to be labelled busy",
        Duration::from_secs(30),
        || async {
            let p = pods.get(&busy_pod).await.map_err(|e| e.to_string())?;
            match p.labels().get("ruche.dev/busy").map(String::as_str) {
                Some("true") => Ok(()),
                other => Err(format!("busy label {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    // Evictions as `kubectl drain` asks for them (dry run: nothing is deleted), through kubectl:
    // the client library's eviction call did not return within a minute on a 429 here.
    let kubeconfig = std::env::var(ruche_e2e::cluster::KUBECONFIG_ENV).unwrap();
    let kubectl = ruche_e2e::install::Kubectl::from_env(std::path::Path::new(&kubeconfig));
    let evict = |pod: String| {
        let (kubectl, ns) = (kubectl.clone(), env.namespace.clone());
        async move {
            let body = std::env::temp_dir().join(format!("eviction-{ns}-{pod}.json"));
            let eviction = json!({ "apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": { "name": pod, "namespace": ns } });
            std::fs::write(&body, eviction.to_string()).unwrap();
            let path = format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction?dryRun=All");
            let answer = kubectl
                .run(&["create", "--raw", &path, "-f", &body.to_string_lossy()])
                .await
                .map_err(|e| e.to_string());
            let _ = std::fs::remove_file(&body);
            answer
        }
    };
    let refused = wait::until(
        "the budget to refuse the busy pod's eviction",
        Duration::from_secs(60),
        || async {
            match evict(busy_pod.clone()).await {
                Err(e) if e.contains("TooManyRequests") && e.contains("disruption budget") => Ok(e),
                other => Err(format!("eviction answered {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e [{}]: evicting busy pod {busy_pod}: {refused}",
        env.test
    );
    evict(idle_pod.clone())
        .await
        .unwrap_or_else(|e| panic!("the idle pod {idle_pod} may be evicted: {e}"));

    // kubectl cordon: the media node drains, the call moves to the other node.
    kubectl
        .run(&["cordon", &host])
        .await
        .expect("kubectl cordon");
    let nodes = env.api::<MediaNode>();
    wait::until(
        "the media node to drain for its host",
        Duration::from_secs(30),
        || async {
            let n = nodes.get(&busy_node).await.map_err(|e| e.to_string())?;
            match n.spec.drain.as_ref().and_then(|d| d.reason.clone()) {
                Some(r) if r == "NodeMaintenance" => Ok(()),
                other => Err(format!("drain reason {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    wait::until(
        "the call to move off the cordoned host",
        Duration::from_secs(60),
        || async {
            let rooms = env.rooms().await.map_err(|e| e.to_string())?;
            let r = rooms
                .iter()
                .find(|r| r.name_any() == "call")
                .ok_or("no room")?;
            fixtures::check_placed(r, &[RoomPhase::Scheduled, RoomPhase::Active])?;
            match fixtures::node_of(r) {
                Some(n) if n != busy_node => Ok(()),
                other => Err(format!("still on {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (room, who, seen) in live.end().await {
        let took = seen
            .media_back
            .unwrap_or_else(|| panic!("{who} in {room}: no media after the move: {seen:?}"));
        assert!(
            took < MEDIA_BACK,
            "{who} in {room}: media back after {took:?}"
        );
    }
    let _ = hosts
        .delete(&host, &kube::api::DeleteParams::default())
        .await;
}
