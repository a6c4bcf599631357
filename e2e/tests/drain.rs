//! Drains on the real API server, with real media nodes and WebRTC participants: a drain with
//! a deadline moves live calls to another node and each participant receives media again
//! within 2 s of being told to move; undraining puts the node back in service.
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
use support::{Client, opus_packet, vp8_packet};

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
    let mut last_keyframe = Instant::now();
    let mut plis = client.keyframe_requests();
    let mut first = true;
    let mut i: u16 = 0;
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
                plis = client.keyframe_requests();
                first = true;
            }
        } else if seen.media_back.is_none()
            && let (Some(at), Some(got)) = (moved_at, client.received.lock().unwrap().first_packet)
        {
            seen.media_back = Some(got.saturating_duration_since(at));
        }
        audio.write(opus_packet(i, u32::from(i) * 960, tag)).await;
        if i.is_multiple_of(2) {
            let now_plis = client.keyframe_requests();
            let keyframe =
                first || now_plis > plis || last_keyframe.elapsed() >= Duration::from_secs(1);
            if keyframe {
                last_keyframe = Instant::now();
                plis = now_plis;
                first = false;
            }
            video
                .write(vp8_packet(i / 2, u32::from(i) * 1500, keyframe, tag))
                .await;
        }
        i = i.wrapping_add(1);
        tokio::time::sleep(Duration::from_millis(20)).await;
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = (p * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// (1) A drain with a deadline takes the node out of service at once and says so; at the
/// deadline every live call moves to the other node, each participant receives media there
/// within 2 s of its `migrate` message; the drained node is kept (a person drained it) until
/// it is undrained, which puts it back in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_with_a_deadline_moves_live_calls_and_undrain_puts_the_node_back() {
    let env = setup!(TestEnv::start, "drain-moves-live-calls");
    let fleet = fixtures::fleet_with(FLEET, HOST_PORT_BASE, &[("e2e-a", 2, 2)], 100);
    env.apply::<MediaFleet>(FLEET, &fleet)
        .await
        .expect("the fleet is applied");
    env.wait_fleet_ready(FLEET, 2, FLEET_READY)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = (0..4).map(|i| format!("call-{i}")).collect();
    let rooms = names
        .iter()
        .map(|n| fixtures::room(n, FLEET, 2, &[]).unwrap())
        .collect();
    env.create_rooms(rooms, 4).await.expect("rooms are created");
    let placed = env
        .wait_rooms_placed(&names, &[RoomPhase::Scheduled], Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
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
    let stop = Arc::new(AtomicBool::new(false));
    let mut parts = Vec::new();
    for (n, r) in calls.iter().enumerate() {
        let endpoint = fixtures::endpoint_of(r).unwrap().to_string();
        let (a, b) = (0x10 + 2 * n as u8, 0x11 + 2 * n as u8);
        for (who, tag, peer) in [("alice", a, b), ("bob", b, a)] {
            let token = env.token(FLEET, &r.name_any(), who).await.unwrap();
            parts.push((
                r.name_any(),
                who,
                tokio::spawn(take_part(
                    r.name_any(),
                    endpoint.clone(),
                    token,
                    tag,
                    peer,
                    stop.clone(),
                )),
            ));
        }
    }
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
    let draining = wait::until(
        "the node to say it drains",
        Duration::from_secs(10),
        || async {
            let n = nodes.get(&victim).await.map_err(|e| e.to_string())?;
            match drain_state(&n) {
                (NodePhase::Draining, Some((holds, reason, message)))
                    if holds == "True" && reason == "Manual" =>
                {
                    Ok(message)
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
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
    stop.store(true, Ordering::Relaxed);
    let mut back = Vec::new();
    for (room, who, task) in parts {
        let seen = task.await.unwrap();
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
    wait::until(
        "the node to be Drained",
        Duration::from_secs(90),
        || async {
            let n = nodes.get(&victim).await.map_err(|e| e.to_string())?;
            match drain_state(&n) {
                (NodePhase::Drained, _) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
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
    wait::until(
        "the node to be Ready again",
        Duration::from_secs(30),
        || async {
            let n = nodes.get(&victim).await.map_err(|e| e.to_string())?;
            match drain_state(&n) {
                (NodePhase::Ready, None) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}
