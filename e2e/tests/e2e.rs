//! The end-to-end scenarios, one test each, each in its own namespace with its own operator
//! (running under the RBAC of `manifests/rbac/`) and real media node processes started by the
//! pod runner. Without a cluster (`KUBECONFIG` unset or unreachable) every test prints
//! `SKIPPED (no cluster): <why>` and returns.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The `webrtc` crate's futures are large; boxing them in tests buys nothing.
#![allow(clippy::large_futures, clippy::too_many_lines)]

#[path = "../../media-node/tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, ListParams, PostParams};
use ruche_crds::{MediaFleet, MediaNode, NodePhase, Room, RoomPhase};
use ruche_e2e::fixtures::{self, MIN_NODES, ZONES};
use ruche_e2e::{TestEnv, wait};
use serde_json::{Value, json};
use support::{Client, Outgoing, Pacer, eventually};

/// How long a fresh fleet gets to run 6 Ready nodes.
const FLEET_READY: Duration = Duration::from_secs(240);
/// How long rooms get to be placed (200 at once included).
const ROOMS_PLACED: Duration = Duration::from_secs(120);
/// How long the rooms of a killed node get to be placed again.
const FAILOVER: Duration = Duration::from_secs(120);
/// How long after an operator restart rooms are watched for moves.
const OBSERVE_AFTER_RESTART: Duration = Duration::from_secs(30);
/// The fleet of every scenario.
const FLEET: &str = "fleet";

/// A host port range per scenario, so that no two scenarios share ports.
fn host_port_base(scenario: u16) -> u16 {
    21_000 + 100 * scenario
}

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

/// Applies the scenario's fleet and waits for its 6 Ready nodes.
async fn ready_fleet(env: &TestEnv, scenario: u16) -> ruche_e2e::FleetView {
    env.apply::<MediaFleet>(FLEET, &fixtures::fleet(FLEET, host_port_base(scenario)))
        .await
        .expect("the fleet is applied");
    env.wait_fleet_ready(FLEET, MIN_NODES, FLEET_READY)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Creates rooms `<prefix>-000`… of `slots` slots and waits until all are placed.
async fn placed_rooms(env: &TestEnv, prefix: &str, count: usize, slots: u32) -> Vec<Room> {
    let names: Vec<String> = (0..count).map(|i| format!("{prefix}-{i:03}")).collect();
    let rooms = names
        .iter()
        .map(|n| fixtures::room(n, FLEET, slots, &[]).unwrap())
        .collect();
    let start = Instant::now();
    env.create_rooms(rooms, 50)
        .await
        .expect("rooms are created");
    let placed = env
        .wait_rooms_placed(&names, &[RoomPhase::Scheduled], ROOMS_PLACED)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e [{}]: {count} rooms placed {:?} after their creation began",
        env.test,
        start.elapsed()
    );
    placed
}

/// Streams `tag`-marked audio and video for `duration`, with a keyframe first, on keyframe
/// requests, and every second (what a browser's encoder does).
async fn stream(client: &Client, video: &Outgoing, audio: &Outgoing, tag: u8, duration: Duration) {
    let start = Instant::now();
    let mut pacer = Pacer::new(client, Duration::from_secs(1));
    while start.elapsed() < duration {
        pacer.step(client, video, audio, tag).await;
    }
}

/// Two participants join `room` at `endpoint` with tokens signed by the fleet's key; the
/// first publishes, and the second must receive its media.
async fn meet(env: &TestEnv, room: &str, endpoint: &str, tag: u8) {
    let token = |who: &'static str| env.token(FLEET, room, who);
    let (alice_token, bob_token) = (token("alice").await.unwrap(), token("bob").await.unwrap());
    let alice = Client::join(endpoint, room, &alice_token)
        .await
        .unwrap_or_else(|refused| panic!("alice could not join {room} at {endpoint}: {refused}"));
    let bob = Client::join(endpoint, room, &bob_token)
        .await
        .unwrap_or_else(|refused| panic!("bob could not join {room} at {endpoint}: {refused}"));
    let (video, audio) = alice.publish_av().await;
    let ((), got) = tokio::join!(
        stream(&alice, &video, &audio, tag, Duration::from_secs(6)),
        eventually(Duration::from_secs(20), || {
            bob.received.lock().unwrap().count_from(&alice.id) > 40
        })
    );
    let received = bob.received.lock().unwrap().count_from(&alice.id);
    assert!(
        got,
        "bob received {received} packets from alice in {room} at {endpoint}"
    );
    let intact = bob
        .received
        .lock()
        .unwrap()
        .payloads_from(&alice.id)
        .iter()
        .all(|p| p.ends_with(&[tag; 20]));
    assert!(intact, "payloads arrive intact");
    eprintln!(
        "e2e [{}]: bob received {received} packets from alice in {room} at {endpoint}",
        env.test
    );
    alice.close().await;
    bob.close().await;
}

/// (1) A three-zone fleet becomes Ready: 6 Ready nodes with their addresses, counted by the
/// fleet's status per zone; the operator answers its probes and metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_zone_fleet_becomes_ready() {
    let env = setup!(TestEnv::start, "three-zone-fleet-becomes-ready");
    let view = ready_fleet(&env, 1).await;
    let mut per_zone: BTreeMap<String, u32> = BTreeMap::new();
    for node in &view.nodes {
        *per_zone.entry(node.spec.zone.clone()).or_default() += 1;
    }
    let want: BTreeMap<String, u32> = ZONES.iter().map(|z| ((*z).to_string(), 2)).collect();
    assert_eq!(per_zone, want, "two nodes in each zone");
    let media: BTreeSet<String> = view
        .nodes
        .iter()
        .filter_map(|n| n.status.as_ref()?.addresses.as_ref()?.media.clone())
        .collect();
    assert_eq!(
        media.len(),
        6,
        "each node has its own media address: {media:?}"
    );
    let status = view.fleet.status.clone().unwrap_or_default();
    assert_eq!(status.ready_replicas, 6);
    assert_eq!(status.slots, 600, "6 Ready nodes of 100 slots");

    let operator = env.operator().unwrap();
    let livez = operator.get("/livez").await.unwrap();
    assert_eq!(livez.status, 200, "/livez: {}", livez.body);
    let readyz = operator.get("/readyz").await.unwrap();
    assert_eq!(readyz.status, 200, "/readyz: {}", readyz.body);
    let metrics = operator.get("/metrics").await.unwrap();
    assert_eq!(metrics.status, 200, "/metrics: {}", metrics.body);
    assert!(
        metrics.body.trim_end().ends_with("# EOF"),
        "/metrics is OpenMetrics text, ending with `# EOF`:\n{}",
        metrics.body
    );
    // The fleet's join key exists and can sign tokens.
    fixtures::join_key(&env.client, &env.namespace, FLEET)
        .await
        .expect("the fleet's join key Secret holds a usable key");
}

/// (2) 200 rooms created at once are all placed, with endpoints, within the deadline, and no
/// node holds more slots than its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_rooms_are_placed_within_capacity() {
    let env = setup!(TestEnv::start, "two-hundred-rooms-are-placed");
    ready_fleet(&env, 2).await;
    let placed = placed_rooms(&env, "room", 200, 2).await;
    let nodes = env.nodes(FLEET).await.unwrap();
    let used = fixtures::check_placements(&placed, &nodes).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("e2e [{}]: slots placed per node: {used:?}", env.test);
    assert_eq!(used.values().sum::<u32>(), 400, "200 rooms of 2 slots");
}

/// (3) A participant joins a room through its endpoint with a token signed by the fleet's
/// key, and receives another participant's media; a room not placed on that node is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_joins_through_the_endpoint_and_receives_media() {
    let env = setup!(TestEnv::start, "client-joins-and-receives-media");
    ready_fleet(&env, 3).await;
    let placed = placed_rooms(&env, "meeting", 1, 4).await;
    let room = placed[0].name_any();
    let endpoint = fixtures::endpoint_of(&placed[0]).unwrap().to_string();
    meet(&env, &room, &endpoint, 0xA3).await;

    let stranger = env.token(FLEET, "not-placed-here", "carol").await.unwrap();
    let refused = Client::join(&endpoint, "not-placed-here", &stranger)
        .await
        .err()
        .expect("a node refuses a room the operator did not place on it");
    assert_eq!(refused["code"], "not_assigned", "{refused}");
}

/// (4) Killing a media node's process (SIGKILL) gets its rooms placed again on other nodes,
/// every room is placed again, and participants can meet at the new endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_media_node_rooms_are_placed_again() {
    let env = setup!(TestEnv::start, "killed-media-node-rooms-move");
    ready_fleet(&env, 4).await;
    let placed = placed_rooms(&env, "room", 12, 2).await;
    let names: Vec<String> = placed.iter().map(ResourceExt::name_any).collect();
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &placed {
        by_node
            .entry(fixtures::node_of(r).unwrap().to_string())
            .or_default()
            .push(r.name_any());
    }
    let (victim, victim_rooms) = by_node
        .iter()
        .max_by_key(|(_, rooms)| rooms.len())
        .map(|(n, r)| (n.clone(), r.clone()))
        .unwrap();
    let target = victim_rooms[0].clone();
    let old_endpoint =
        fixtures::endpoint_of(placed.iter().find(|r| r.name_any() == target).unwrap())
            .unwrap()
            .to_string();
    eprintln!(
        "e2e [{}]: killing media node {victim}, which hosts {victim_rooms:?}",
        env.test
    );
    // A participant is in the room when its node dies.
    let token = env.token(FLEET, &target, "early").await.unwrap();
    let early = Client::join(&old_endpoint, &target, &token)
        .await
        .unwrap_or_else(|refused| panic!("could not join {target} before the kill: {refused}"));

    let victim_node = env.api::<MediaNode>().get(&victim).await.unwrap();
    let victim_uid = victim_node.uid();
    let pod = victim_node
        .status
        .as_ref()
        .and_then(|s| s.pod.clone())
        .unwrap_or_else(|| victim.clone());
    let killed_at = Instant::now();
    env.runner().unwrap().kill(&pod).unwrap();

    let moved = wait::until_every(
        &format!("the rooms of {victim} to be placed again"),
        FAILOVER,
        Duration::from_secs(1),
        || async {
            let rooms = env.rooms().await.map_err(|e| e.to_string())?;
            let nodes = env.nodes(FLEET).await.map_err(|e| e.to_string())?;
            let ours: Vec<Room> = rooms
                .into_iter()
                .filter(|r| names.contains(&r.name_any()))
                .collect();
            for r in &ours {
                fixtures::check_placed(r, &[RoomPhase::Scheduled, RoomPhase::Active])?;
                if fixtures::node_of(r) == Some(victim.as_str()) {
                    return Err(format!("{} is still on {victim}", r.name_any()));
                }
            }
            if ours.len() != names.len() {
                return Err(format!("{} of {} rooms found", ours.len(), names.len()));
            }
            fixtures::check_placements(&ours, &nodes)?;
            Ok((ours, nodes))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e [{}]: rooms of {victim} placed again {:?} after the kill",
        env.test,
        killed_at.elapsed()
    );
    let (rooms, nodes) = moved;
    // The killed node (the same object, not a successor of the same name) is not Ready.
    if let Some(n) = nodes
        .iter()
        .find(|n| n.name_any() == victim && n.uid() == victim_uid)
    {
        let phase = n.status.as_ref().map(|s| s.phase);
        assert_ne!(
            phase,
            Some(NodePhase::Ready),
            "the killed node is not Ready"
        );
    }
    let target_room = rooms.iter().find(|r| r.name_any() == target).unwrap();
    let new_endpoint = fixtures::endpoint_of(target_room).unwrap().to_string();
    assert_ne!(new_endpoint, old_endpoint, "the room has a new endpoint");
    early.close().await;
    meet(&env, &target, &new_endpoint, 0xB4).await;
}

/// (5) Restarting the operator (SIGKILL, a new one, ready) moves no room, and the new operator
/// places new rooms.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operator_restart_moves_no_room() {
    let mut env = setup!(TestEnv::start, "operator-restart-moves-no-room");
    ready_fleet(&env, 5).await;
    let placed = placed_rooms(&env, "room", 30, 2).await;
    let before: BTreeMap<String, (String, String)> = placed
        .iter()
        .map(|r| {
            (
                r.name_any(),
                (
                    fixtures::node_of(r).unwrap().to_string(),
                    fixtures::endpoint_of(r).unwrap().to_string(),
                ),
            )
        })
        .collect();

    // Watch every room, every second, from before the kill until the end.
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (api, stop, before) = (env.api::<Room>(), stop.clone(), before.clone());
        tokio::spawn(async move {
            let mut moves: Vec<String> = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                if let Ok(list) = api.list(&ListParams::default()).await {
                    for r in list.items {
                        let Some((node, endpoint)) = before.get(&r.name_any()) else {
                            continue;
                        };
                        let now = (
                            fixtures::node_of(&r).map(str::to_string),
                            fixtures::endpoint_of(&r).map(str::to_string),
                            fixtures::scheduled(&r).map(|c| c.status.clone()),
                        );
                        let want = (
                            Some(node.clone()),
                            Some(endpoint.clone()),
                            Some("True".to_string()),
                        );
                        if now != want && moves.len() < 50 {
                            moves.push(format!("{}: {now:?}, was {want:?}", r.name_any()));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            moves
        })
    };
    env.restart_operator()
        .await
        .unwrap_or_else(|e| panic!("the new operator: {e}"));
    // The new operator works: it places a new room (with the reservations it rebuilt).
    let extra = placed_rooms(&env, "after-restart", 1, 2).await;
    tokio::time::sleep(OBSERVE_AFTER_RESTART).await;
    stop.store(true, Ordering::SeqCst);
    let moves = monitor.await.unwrap();
    assert!(
        moves.is_empty(),
        "rooms moved or were unscheduled: {moves:#?}"
    );

    let rooms = env.rooms().await.unwrap();
    let nodes = env.nodes(FLEET).await.unwrap();
    for r in &rooms {
        fixtures::check_placed(r, &[RoomPhase::Scheduled])
            .unwrap_or_else(|e| panic!("after the restart: {e}"));
        if let Some((node, _)) = before.get(&r.name_any()) {
            assert_eq!(
                fixtures::node_of(r),
                Some(node.as_str()),
                "{} moved",
                r.name_any()
            );
        }
    }
    assert_eq!(rooms.len(), placed.len() + extra.len());
    fixtures::check_placements(&rooms, &nodes).unwrap_or_else(|e| panic!("{e}"));
}

/// (6) A room asking for a zone the fleet does not have is refused with `Scheduled=False`,
/// reason `UnknownZone`, and a message naming the zone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn room_in_an_unknown_zone_is_not_scheduled() {
    let env = setup!(TestEnv::start, "room-in-unknown-zone");
    env.apply::<MediaFleet>(FLEET, &fixtures::fleet(FLEET, host_port_base(6)))
        .await
        .expect("the fleet is applied");
    let room = fixtures::room("nowhere", FLEET, 2, &["e2e-z"]).unwrap();
    env.create_rooms(vec![room], 1).await.unwrap();
    let refused = wait::until(
        "room nowhere to be refused",
        Duration::from_secs(90),
        || async {
            let r = env
                .api::<Room>()
                .get("nowhere")
                .await
                .map_err(|e| e.to_string())?;
            match fixtures::scheduled(&r) {
                Some(c) if c.status == "False" && c.reason == "UnknownZone" => Ok(r),
                other => Err(format!("Scheduled is {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let condition = fixtures::scheduled(&refused).unwrap();
    assert!(
        condition.message.contains("e2e-z"),
        "the message names the zone: {}",
        condition.message
    );
    let status = refused.status.clone().unwrap_or_default();
    assert_eq!(status.phase, RoomPhase::Pending);
    assert_eq!(status.node, None);
    assert_eq!(status.endpoint, None);
}

/// (9) A room deleted while it still carries the finalizer an earlier version of the operator
/// put on rooms is let go: the operator takes its finalizer off (and only its own), so the
/// deletion completes. This is the only write the operator makes to a room's spec or metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_room_left_with_an_earlier_versions_finalizer_is_let_go() {
    let env = setup!(TestEnv::start, "legacy-finalizer-let-go");
    let mut room = fixtures::room("old", FLEET, 2, &[]).unwrap();
    room.metadata.finalizers = Some(vec![
        ruche_operator::controller::room::LEGACY_FINALIZER.to_owned(),
        "e2e.ruche.dev/kept".to_owned(),
    ]);
    env.create_rooms(vec![room], 1).await.unwrap();
    env.api::<Room>()
        .delete("old", &kube::api::DeleteParams::default())
        .await
        .expect("the room is deleted");
    let left = wait::until(
        "the operator to take its finalizer off room old",
        Duration::from_secs(60),
        || async {
            let r = env
                .api::<Room>()
                .get("old")
                .await
                .map_err(|e| e.to_string())?;
            let finalizers = r.finalizers().to_vec();
            if finalizers == ["e2e.ruche.dev/kept"] {
                Ok(r)
            } else {
                Err(format!("finalizers {finalizers:?}"))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(left.metadata.deletion_timestamp.is_some());
    // Someone else's finalizer is theirs to remove; then the room is gone.
    env.api::<Room>()
        .patch(
            "old",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({ "metadata": { "finalizers": null } })),
        )
        .await
        .expect("the other finalizer is removed");
    wait::until("room old to be gone", Duration::from_secs(30), || async {
        match env.api::<Room>().get_opt("old").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("still there".to_owned()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
}

/// (7) Bad custom resources are refused by the API server (HTTP 422) with their CEL
/// messages: every fixture of `crds/tests/invalid/`, among them a zone whose minNodes exceeds
/// its maxNodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_custom_resources_are_refused_with_their_cel_message() {
    let env = setup!(TestEnv::start_without_operator, "bad-resources-are-refused");
    let dir = ruche_e2e::workspace().join("crds/tests/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    let mut checked = Vec::new();
    for file in &files {
        match refused(&env, file).await {
            Ok(message) => checked.push((file_name(file), message)),
            Err(why) => failures.push(format!("{}: {why}", file_name(file))),
        }
    }
    for (file, message) in &checked {
        eprintln!("e2e [{}]: {file}: refused: {message}", env.test);
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        checked.iter().any(|(f, m)| f == "fleet-min-above-max.yaml"
            && m.contains("minNodes must not exceed maxNodes in a zone")),
        "the minNodes > maxNodes fleet is refused with its CEL message: {checked:#?}"
    );
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Sends the invalid object of `file` (created, or for `# update:` files created valid then
/// replaced) and returns the API server's refusal message if it is a 422 carrying the file's
/// `# expect:` text.
async fn refused(env: &TestEnv, file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| e.to_string())?;
    let expect = text
        .lines()
        .find_map(|l| l.strip_prefix("# expect: "))
        .ok_or("no `# expect:` line")?
        .trim()
        .to_string();
    let update = text.lines().any(|l| l.starts_with("# update:"));
    let mut docs: Vec<Value> = ruche_e2e::crds::yaml_documents(file).map_err(|e| e.to_string())?;
    // The fixture's own name is kept: some fixtures are wrong precisely in their name.
    let name = docs
        .first()
        .and_then(|d| d.pointer("/metadata/name"))
        .and_then(Value::as_str)
        .ok_or("no metadata.name")?
        .to_string();
    for d in &mut docs {
        d["metadata"]["namespace"] = json!(env.namespace);
    }
    let kind = docs
        .first()
        .and_then(|d| d["kind"].as_str())
        .ok_or("no kind")?
        .to_string();
    let resource = match kind.as_str() {
        "MediaFleet" => ApiResource::erase::<MediaFleet>(&()),
        "MediaNode" => ApiResource::erase::<MediaNode>(&()),
        "Room" => ApiResource::erase::<Room>(&()),
        other => return Err(format!("unexpected kind {other}")),
    };
    let api: kube::Api<DynamicObject> =
        kube::Api::namespaced_with(env.client.clone(), &env.namespace, &resource);
    let object = |doc: &Value| -> Result<DynamicObject, String> {
        serde_json::from_value(doc.clone()).map_err(|e| e.to_string())
    };
    let result = if update {
        let (Some(first), Some(second)) = (docs.first(), docs.get(1)) else {
            return Err("an update fixture needs two documents".into());
        };
        let created = api
            .create(&PostParams::default(), &object(first)?)
            .await
            .map_err(|e| format!("the valid first document was refused: {e}"))?;
        let mut changed = object(second)?;
        changed.metadata.resource_version = created.metadata.resource_version;
        let replaced = api.replace(&name, &PostParams::default(), &changed).await;
        // Update fixtures share names: the next one starts from a clean namespace.
        api.delete(&name, &kube::api::DeleteParams::default())
            .await
            .map_err(|e| format!("cannot delete the valid first document: {e}"))?;
        replaced
    } else {
        let Some(only) = docs.first() else {
            return Err("no document".into());
        };
        api.create(&PostParams::default(), &object(only)?).await
    };
    match result {
        Ok(_) => Err(format!("accepted; expected a refusal with `{expect}`")),
        Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(&expect) => {
            Ok(status.message)
        }
        Err(kube::Error::Api(status)) => Err(format!(
            "HTTP {} `{}`; expected 422 with `{expect}`",
            status.code, status.message
        )),
        Err(e) => Err(format!("{e}; expected 422 with `{expect}`")),
    }
}

/// (8) A pod the API server refuses is visible where users look: in a namespace whose Pod
/// Security level (`baseline`) refuses host ports, the MediaNode gets a `PodRefused` condition
/// and a Warning event with the API server's own words, and the fleet is Degraded with reason
/// `PodsRefused`. Once the namespace allows the pods, the retries (backing off) succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pod_the_api_server_refuses_is_a_condition_an_event_and_a_degraded_fleet() {
    let env = setup!(TestEnv::start, "a-refused-pod-is-visible");
    let pod_security = |level: &str| json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": level } } });
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(env.client.clone());
    namespaces
        .patch(
            &env.namespace,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(pod_security("baseline")),
        )
        .await
        .unwrap();
    let fleet = fixtures::fleet_with(FLEET, host_port_base(8), &[("e2e-a", 1, 1)], 100);
    env.apply::<MediaFleet>(FLEET, &fleet).await.unwrap();

    let refused = wait::until(
        "the media node to say its pod was refused",
        Duration::from_secs(60),
        || async {
            let nodes = env.nodes(FLEET).await.map_err(|e| e.to_string())?;
            let node = nodes.first().ok_or("no MediaNode yet")?;
            let ready = node
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .ok_or("no Ready condition yet")?;
            if ready.reason == "PodRefused" {
                Ok((node.name_any(), ready.message.clone()))
            } else {
                Err(format!(
                    "Ready condition {}: {}",
                    ready.reason, ready.message
                ))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let (node, message) = refused;
    eprintln!(
        "e2e [{}]: MediaNode {node}: PodRefused: {message}",
        env.test
    );
    assert!(
        message.contains("violates PodSecurity") && message.contains("hostPort"),
        "the API server's own reason: {message}"
    );
    let events: kube::Api<k8s_openapi::api::events::v1::Event> = env.api();
    let warned = wait::until(
        "a PodRefused event on the media node",
        Duration::from_secs(30),
        || async {
            let list = events
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            list.items
                .into_iter()
                .find(|e| {
                    e.reason.as_deref() == Some("PodRefused")
                        && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(&node)
                })
                .and_then(|e| e.note)
                .ok_or_else(|| "no PodRefused event yet".to_string())
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(warned.contains("violates PodSecurity"), "{warned}");
    let degraded = wait::until(
        "the fleet to be Degraded with PodsRefused",
        Duration::from_secs(60),
        || async {
            let f = env
                .api::<MediaFleet>()
                .get(FLEET)
                .await
                .map_err(|e| e.to_string())?;
            let c = f
                .status
                .unwrap_or_default()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Degraded")
                .ok_or("no Degraded condition yet")?;
            if c.status == "True" && c.reason == "PodsRefused" {
                Ok(c.message)
            } else {
                Err(format!("Degraded {} {}: {}", c.status, c.reason, c.message))
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(degraded.contains(&node), "{degraded}");

    // The namespace is fixed: a later retry creates the pod and the node serves.
    namespaces
        .patch(
            &env.namespace,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(pod_security("privileged")),
        )
        .await
        .unwrap();
    let started = Instant::now();
    wait::until(
        "the media node to be Ready once its pod is allowed",
        Duration::from_secs(120),
        || async {
            let nodes = env.nodes(FLEET).await.map_err(|e| e.to_string())?;
            match nodes
                .first()
                .and_then(|n| n.status.as_ref())
                .map(|s| s.phase)
            {
                Some(NodePhase::Ready) => Ok(()),
                other => Err(format!("phase {other:?}")),
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "e2e [{}]: Ready {:?} after the namespace allowed its pod",
        env.test,
        started.elapsed()
    );
}
