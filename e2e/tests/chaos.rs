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

/// What one participant has seen so far.
#[derive(Debug, Default)]
struct PartState {
    /// When media last arrived.
    last_media: Option<Instant>,
    /// When it last joined.
    joined_at: Option<Instant>,
    /// The signaling endpoint it is connected to.
    endpoint: Option<String>,
    /// Packets received, and of those, packets not carrying the other participant's tag.
    received: u64,
    foreign: u64,
    /// Joins after the first (its node died, or it was lost), and `migrate`s followed.
    rejoins: u32,
    follows: u32,
}

impl PartState {
    /// How long it has gone without media, counted from its last join at the earliest (a
    /// participant that just joined again is not silent yet).
    fn silent(&self, now: Instant) -> Duration {
        self.last_media
            .max(self.joined_at)
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }

    /// How long it has gone without media, whatever it did meanwhile: what the invariant
    /// judges.
    fn without_media(&self, now: Instant) -> Duration {
        self.last_media
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }
}

type Shared<T> = Arc<Mutex<T>>;

/// A live connection to a node.
struct Live {
    client: Client,
    video: Outgoing,
    audio: Outgoing,
    endpoint: String,
    pacer: Pacer,
}

/// Joins `room` at `endpoint` and publishes, within 8 s; a node that is hung or gone is an
/// error, never a panic of the caller.
async fn connect(endpoint: &str, room: &str, token: String) -> Result<Live, String> {
    let (e, r) = (endpoint.to_string(), room.to_string());
    let task = tokio::spawn(async move {
        let client = Client::join(&e, &r, &token)
            .await
            .map_err(|refused| refused.to_string())?;
        let (video, audio) = client.publish_av().await;
        Ok::<_, String>((client, video, audio))
    });
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(8), task).await {
        Ok(Ok(Ok((client, video, audio)))) => {
            let pacer = Pacer::new(&client, Duration::from_secs(1));
            Ok(Live {
                client,
                video,
                audio,
                endpoint: endpoint.to_string(),
                pacer,
            })
        }
        Ok(Ok(Err(refused))) => Err(format!("refused: {refused}")),
        Ok(Err(panicked)) => Err(format!("failed: {panicked}")),
        Err(_) => {
            abort.abort();
            Err("no answer within 8 s".into())
        }
    }
}

/// Leaves in the background: a hung node must not hold the participant up.
fn leave(live: Live) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), live.client.close()).await;
    });
}

/// Takes what arrived since the last call: (packets, packets without the peer's tag).
fn drain(received: &Mutex<Received>, peer_tag: u8) -> (u64, u64) {
    let mut r = received.lock().unwrap();
    let mut counts = (0, 0);
    for packets in r.packets.values_mut() {
        for p in packets.drain(..) {
            counts.0 += 1;
            counts.1 += u64::from(!p.2.ends_with(&[peer_tag; 20]));
        }
    }
    counts
}

/// A participant as a browser page behaves: publishes tagged audio and video, follows a
/// `migrate` message at once, and when its node is lost (the connection closed, or silent
/// while the room's endpoint changed, or silent for long) joins again wherever the room is.
async fn take_part(
    room: String,
    who: &'static str,
    (tag, peer_tag): (u8, u8),
    key: Arc<TokenKey>,
    endpoints: Shared<BTreeMap<String, String>>,
    state: Shared<PartState>,
    stop: Arc<AtomicBool>,
) {
    let mut joins = 0u32;
    let mut live: Option<Live> = None;
    let mut checked = Instant::now();
    let mut last_complaint = String::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(mut current) = live.take() else {
            let endpoint = endpoints.lock().unwrap().get(&room).cloned();
            let Some(endpoint) = endpoint else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            joins += 1;
            let token = fixtures::mint(&key, &room, &format!("{who}-{joins}")).unwrap();
            match connect(&endpoint, &room, token).await {
                Ok(l) => {
                    let mut s = state.lock().unwrap();
                    s.joined_at = Some(Instant::now());
                    s.endpoint = Some(endpoint.clone());
                    s.rejoins += u32::from(joins > 1);
                    live = Some(l);
                }
                Err(e) => {
                    let complaint = format!("{room}/{who}: join at {endpoint}: {e}");
                    if complaint != last_complaint {
                        eprintln!("chaos: {complaint}");
                        last_complaint = complaint;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        let Live {
            client,
            video,
            audio,
            pacer,
            ..
        } = &mut current;
        pacer.step(client, video, audio, tag).await;
        if checked.elapsed() < Duration::from_millis(200) {
            live = Some(current);
            continue;
        }
        let now = Instant::now();
        checked = now;
        let (count, foreign) = drain(&current.client.received, peer_tag);
        let silent = {
            let mut s = state.lock().unwrap();
            s.received += count;
            s.foreign += foreign;
            if count > 0 {
                s.last_media = Some(now);
            }
            s.silent(now)
        };
        if let Some(to) = current.client.migrated() {
            joins += 1;
            match connect(&to.endpoint, &room, to.token.clone()).await {
                Ok(next) => {
                    {
                        let mut s = state.lock().unwrap();
                        s.follows += 1;
                        s.endpoint = Some(to.endpoint.clone());
                    }
                    leave(current);
                    live = Some(next);
                }
                Err(e) => {
                    eprintln!(
                        "chaos: {room}/{who}: could not follow to {}: {e}",
                        to.endpoint
                    );
                    leave(current);
                }
            }
            continue;
        }
        let moved = endpoints.lock().unwrap().get(&room) != Some(&current.endpoint);
        let closed = current.client.closed.lock().unwrap().is_some();
        if closed || (moved && silent > MEDIA_GAP) || silent > Duration::from_secs(12) {
            leave(current);
            continue;
        }
        live = Some(current);
    }
    if let Some(l) = live {
        l.client.close().await;
    }
}

/// The room's placement, from the API's lists: a room being moved live (Migrating) is placed.
fn placement(room: Option<&Room>, nodes: &BTreeMap<String, MediaNode>) -> Result<(), String> {
    let room = room.ok_or("gone")?;
    fixtures::check_placed(
        room,
        &[
            RoomPhase::Scheduled,
            RoomPhase::Active,
            RoomPhase::Migrating,
        ],
    )?;
    let node = fixtures::node_of(room).unwrap_or_default();
    match nodes
        .get(node)
        .and_then(|n| n.status.as_ref())
        .map(|s| s.phase)
    {
        None => Err(format!("on {node}, which is gone")),
        Some(NodePhase::Failed) => Err(format!("on {node}, which failed")),
        Some(_) => Ok(()),
    }
}

/// Everything the faults act on. The replicas come first: fields drop in order, and the
/// operators must be gone before the scenario's namespace and RBAC are deleted.
struct World {
    replicas: Arc<Replicas>,
    env: TestEnv,
    control: ControlPlane,
    began: Instant,
    watched: Vec<String>,
    parts: Vec<(String, Shared<PartState>)>,
    samples: Shared<Vec<Sample>>,
    stop: Arc<AtomicBool>,
    reports: Vec<FaultReport>,
    notes: Vec<String>,
}

impl World {
    fn now(&self) -> Duration {
        self.began.elapsed()
    }

    /// Watched rooms by node, from the API.
    async fn rooms_by_node(&self) -> BTreeMap<String, BTreeSet<String>> {
        let rooms = self.env.rooms().await.expect("rooms are listed");
        let mut by_node: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rooms
            .iter()
            .filter(|r| self.watched.contains(&r.name_any()))
        {
            if let Some(node) = fixtures::node_of(r) {
                by_node
                    .entry(node.to_string())
                    .or_default()
                    .insert(r.name_any());
            }
        }
        by_node
    }

    /// The node hosting the most live rooms (a live room's media is the sharpest witness).
    async fn busiest_node(&self) -> (MediaNode, BTreeSet<String>) {
        let by_node = self.rooms_by_node().await;
        let live: BTreeSet<&String> = self.parts.iter().map(|(r, _)| r).collect();
        let (name, rooms) = by_node
            .iter()
            .max_by_key(|(_, rooms)| {
                (
                    rooms.iter().filter(|r| live.contains(r)).count(),
                    rooms.len(),
                )
            })
            .expect("rooms are placed");
        let node = self
            .env
            .api::<MediaNode>()
            .get(name)
            .await
            .expect("the node is read");
        (node, rooms.clone())
    }

    fn pod_of(node: &MediaNode) -> String {
        node.status
            .as_ref()
            .and_then(|s| s.pod.clone())
            .unwrap_or_else(|| node.name_any())
    }

    /// Waits until everything has been settled for [`SETTLED_FOR`] samples in a row after
    /// `healed` (or [`SETTLE_TIMEOUT`] passed), then judges the window.
    async fn judge(
        &mut self,
        fault: &str,
        injected: Duration,
        healed: Duration,
        excused: BTreeSet<String>,
    ) {
        let give_up = self.began + healed + SETTLE_TIMEOUT;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let samples = self.samples.lock().unwrap();
            let recent: Vec<&Sample> = samples.iter().rev().take(SETTLED_FOR).collect();
            if recent.len() == SETTLED_FOR
                && recent
                    .iter()
                    .all(|s| s.unsettled.is_none() && s.at > healed)
            {
                break;
            }
            if Instant::now() > give_up {
                break;
            }
        }
        let window = Window {
            fault: fault.to_string(),
            injected,
            healed,
            end: self.now(),
            excused,
            bound: BOUND,
        };
        let (report, last) = {
            let samples = self.samples.lock().unwrap();
            let last = samples.last().and_then(|s| s.unsettled.clone());
            (verdict::judge(&window, &samples), last)
        };
        eprintln!(
            "chaos: {fault}: {} room(s) affected ({} on failed nodes), {} lost, recovered after {:?}, longest room outage {:?}",
            report.affected.len(),
            report.on_failed_nodes,
            report.lost.len(),
            report.recovered_after,
            report.longest_outage
        );
        let unsettled = report.recovered_after.is_none();
        self.reports.push(report);
        assert!(
            !unsettled,
            "{fault}: not settled {SETTLE_TIMEOUT:?} after it was healed (last: {}); the table so far:\n{}",
            last.unwrap_or_default(),
            verdict::table(&self.reports)
        );
    }

    async fn control_plane_down(&mut self, component: Component, down: Duration) {
        let fault = format!("{} stopped for {} s", component.name(), down.as_secs());
        eprintln!("chaos: {fault}");
        let injected = self.now();
        let pid = self.control.stop(component).await.unwrap();
        eprintln!("chaos: {} (pid {pid}) killed", component.name());
        tokio::time::sleep(down).await;
        let began = Instant::now();
        let started = self.control.start().await.unwrap();
        eprintln!(
            "chaos: started again: {:?}, listening {:?} later",
            started.iter().map(|c| c.name()).collect::<Vec<_>>(),
            began.elapsed()
        );
        let healed = self.now();
        self.judge(&fault, injected, healed, BTreeSet::new()).await;
    }

    async fn leader(&self) -> char {
        wait::until("a replica to lead", Duration::from_secs(60), || async {
            self.replicas
                .leader()
                .await
                .ok_or_else(|| "no leader".to_string())
        })
        .await
        .unwrap()
    }

    async fn both_replicas_killed(&mut self) {
        let fault = "both operator replicas SIGKILLed";
        let injected = self.now();
        assert_eq!(self.replicas.kill_all(), 2);
        self.judge(fault, injected, injected, BTreeSet::new()).await;
    }

    async fn leader_killed_mid_rollout(&mut self) {
        let fault = "leader SIGKILLed mid-rollout";
        let fleets = self.env.api::<MediaFleet>();
        let nodes = self.env.api::<MediaNode>();
        let old = fleets
            .get(FLEET)
            .await
            .unwrap()
            .status
            .and_then(|s| s.update_revision);
        let injected = self.now();
        fleets
            .patch(
                FLEET,
                &PatchParams::default(),
                &Patch::Merge(&json!({ "spec": { "template": { "image": "registry.invalid/ruche/media-node:chaos-v2" } } })),
            )
            .await
            .unwrap();
        // Mid-rollout: once a node of the new revision serves and an old one drains.
        let target = wait::until(
            "the rollout to be under way",
            Duration::from_secs(120),
            || async {
                let f = fleets.get(FLEET).await.map_err(|e| e.to_string())?;
                let target = f
                    .status
                    .and_then(|s| s.update_revision)
                    .filter(|r| Some(r) != old.as_ref())
                    .ok_or_else(|| "no new revision yet".to_string())?;
                let list = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let phase = |n: &MediaNode| n.status.as_ref().map(|s| s.phase);
                let new_ready = list
                    .items
                    .iter()
                    .any(|n| n.spec.revision == target && phase(n) == Some(NodePhase::Ready));
                let draining = list
                    .items
                    .iter()
                    .any(|n| n.spec.revision != target && phase(n) == Some(NodePhase::Draining));
                (new_ready && draining)
                    .then_some(target)
                    .ok_or_else(|| "no old node draining beside a new one yet".to_string())
            },
        )
        .await
        .unwrap();
        let leader = self.leader().await;
        let healed = self.now();
        assert!(self.replicas.kill(leader));
        wait::until(
            "the rollout to finish",
            Duration::from_secs(300),
            || async {
                let list = nodes
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?;
                let done = list.items.len() == NODES
                    && list.items.iter().all(|n| {
                        n.spec.revision == target
                            && n.status.as_ref().map(|s| s.phase) == Some(NodePhase::Ready)
                    });
                done.then_some(())
                    .ok_or_else(|| format!("{} nodes", list.items.len()))
            },
        )
        .await
        .unwrap();
        self.notes.push(format!(
            "{fault}: the template changed at +{:.0} s, the leader was killed {:.0} s into the rollout, which finished {:.0} s after the change",
            injected.as_secs_f64(),
            healed.saturating_sub(injected).as_secs_f64(),
            self.now().saturating_sub(injected).as_secs_f64()
        ));
        self.judge(fault, injected, healed, BTreeSet::new()).await;
    }

    async fn leader_killed_mid_migration(&mut self) {
        let fault = "leader SIGKILLed mid-migration";
        let (node, rooms) = self.busiest_node().await;
        let name = node.name_any();
        let nodes = self.env.api::<MediaNode>();
        let deadline = Timestamp::now()
            .checked_add(SignedDuration::from_secs(3))
            .unwrap();
        let drain = json!({ "spec": { "drain": { "deadline": Time(deadline), "mode": "Migrate", "reason": "Manual" } } });
        let injected = self.now();
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&drain))
            .await
            .unwrap();
        // The deadline passes: the operator starts moving the node's rooms.
        wait::until(
            "the first room to move",
            Duration::from_secs(30),
            || async {
                let by_node = self.rooms_by_node().await;
                let left = by_node.get(&name).map_or(0, BTreeSet::len);
                (left < rooms.len())
                    .then_some(())
                    .ok_or(format!("{left} rooms on {name}"))
            },
        )
        .await
        .unwrap();
        let leader = self.leader().await;
        let healed = self.now();
        assert!(self.replicas.kill(leader));
        eprintln!("chaos: {fault}: {name} drains {} room(s)", rooms.len());
        wait::until(
            "the drained node to be empty",
            Duration::from_secs(120),
            || async {
                let left = self
                    .rooms_by_node()
                    .await
                    .get(&name)
                    .map_or(0, BTreeSet::len);
                (left == 0)
                    .then_some(())
                    .ok_or(format!("{left} rooms left on {name}"))
            },
        )
        .await
        .unwrap();
        let undrain = json!({ "spec": { "drain": null } });
        nodes
            .patch(&name, &PatchParams::default(), &Patch::Merge(&undrain))
            .await
            .unwrap();
        self.judge(fault, injected, healed, BTreeSet::new()).await;
    }

    async fn admin_port_cut(&mut self) {
        let fault = "operator cut off from a node's admin port for 30 s";
        let (node, _) = self.busiest_node().await;
        let pod = Self::pod_of(&node);
        let address = self
            .env
            .runner()
            .unwrap()
            .address_of(&pod)
            .expect("the pod's address");
        let injected = self.now();
        let name = node.name_any();
        let nodes = self.env.api::<MediaNode>();
        let unreachable = || async {
            let n = nodes.get(&name).await.map_err(|e| e.to_string())?;
            Ok::<_, String>(n.status.as_ref().is_some_and(MediaNodeStatus::unreachable))
        };
        let cut = Cut::apply(OPERATOR_GID, address, ADMIN_PORT).unwrap();
        eprintln!("chaos: {fault}: {name} ({address}:{ADMIN_PORT})");
        // The cut is real: the operator says the node is unreachable (its pod is still ready).
        let seen = wait::until("the node to be reported unreachable", CUT_OFF, || async {
            unreachable()
                .await?
                .then(|| self.now())
                .ok_or_else(|| "not yet".to_string())
        })
        .await
        .unwrap_or_else(|e| panic!("{fault}: the cut had no effect: {e}"));
        let until = self.began + injected + CUT_OFF;
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
        drop(cut);
        let healed = self.now();
        let back = wait::until(
            "the node to be reachable again",
            Duration::from_secs(60),
            || async {
                (!unreachable().await?)
                    .then(|| self.now())
                    .ok_or_else(|| "still unreachable".to_string())
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{fault}: {e}"));
        self.notes.push(format!(
            "{fault}: {name} reported unreachable {:.1} s after the cut, reachable again {:.1} s after it was lifted",
            seen.saturating_sub(injected).as_secs_f64(),
            back.saturating_sub(healed).as_secs_f64()
        ));
        self.judge(fault, injected, healed, BTreeSet::new()).await;
    }

    /// Hangs the busiest node for [`HUNG`], killing the leader at the same moment if asked.
    async fn node_hung(&mut self, and_leader: bool) {
        let fault = if and_leader {
            "a node SIGSTOPped for 20 s and the leader SIGKILLed"
        } else {
            "a node SIGSTOPped for 20 s"
        };
        let (node, rooms) = self.busiest_node().await;
        let pod = Self::pod_of(&node);
        let leader = if and_leader {
            Some(self.leader().await)
        } else {
            None
        };
        let injected = self.now();
        self.env
            .runner()
            .unwrap()
            .signal(&pod, Signal::SIGSTOP)
            .unwrap();
        if let Some(l) = leader {
            assert!(self.replicas.kill(l));
        }
        eprintln!(
            "chaos: {fault}: {} with {} room(s)",
            node.name_any(),
            rooms.len()
        );
        tokio::time::sleep(HUNG).await;
        // Its pod may be gone by now (the fleet replaced the node), and the process with it.
        if let Err(e) = self.env.runner().unwrap().signal(&pod, Signal::SIGCONT) {
            eprintln!("chaos: {fault}: not resumed: {e}");
        }
        let healed = self.now();
        self.judge(fault, injected, healed, rooms).await;
    }

    async fn zone_killed(&mut self) {
        let (node, _) = self.busiest_node().await;
        let zone = node.spec.zone.clone();
        let fault = format!("zone {zone}: both nodes SIGKILLed");
        let by_node = self.rooms_by_node().await;
        let in_zone: Vec<MediaNode> = self
            .env
            .nodes(FLEET)
            .await
            .unwrap()
            .into_iter()
            .filter(|n| n.spec.zone == zone)
            .collect();
        let excused: BTreeSet<String> = in_zone
            .iter()
            .flat_map(|n| by_node.get(&n.name_any()).cloned().unwrap_or_default())
            .collect();
        let injected = self.now();
        for n in &in_zone {
            self.env.runner().unwrap().kill(&Self::pod_of(n)).unwrap();
        }
        self.judge(&fault, injected, injected, excused).await;
    }

    async fn burst(&mut self) {
        let fault = format!("{BURST} rooms created at once");
        let names: Vec<String> = (0..BURST).map(|i| format!("burst-{i:04}")).collect();
        let rooms = names
            .iter()
            .map(|n| fixtures::room(n, FLEET, 2, &[]).unwrap())
            .collect();
        let injected = self.now();
        let start = Instant::now();
        self.env.create_rooms(rooms, 200).await.unwrap();
        let created = start.elapsed();
        let healed = self.now();
        self.env
            .wait_rooms_placed(&names, &[RoomPhase::Scheduled], Duration::from_secs(180))
            .await
            .unwrap();
        let placed = start.elapsed();
        self.notes.push(format!(
            "{fault}: created in {:.2} s (200 requests at a time), all placed {:.2} s after the first request",
            created.as_secs_f64(),
            placed.as_secs_f64()
        ));
        self.judge(&fault, injected, healed, BTreeSet::new()).await;
        let api = self.env.api::<Room>();
        futures::future::join_all(names.chunks(100).map(|chunk| {
            let api = api.clone();
            async move {
                for n in chunk {
                    let _ = api.delete(n, &DeleteParams::default()).await;
                }
            }
        }))
        .await;
        wait::until(
            "the burst's rooms to go",
            Duration::from_secs(180),
            || async {
                let left = self
                    .env
                    .rooms()
                    .await
                    .map_err(|e| e.to_string())?
                    .iter()
                    .filter(|r| r.name_any().starts_with("burst-"))
                    .count();
                (left == 0).then_some(()).ok_or(format!("{left} left"))
            },
        )
        .await
        .unwrap();
    }

    async fn node_killed_while_api_server_down(&mut self) {
        let fault = "a node SIGKILLed while the API server is stopped for 30 s";
        let (node, rooms) = self.busiest_node().await;
        let pod = Self::pod_of(&node);
        let injected = self.now();
        self.control.stop(Component::ApiServer).await.unwrap();
        self.env.runner().unwrap().kill(&pod).unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
        self.control.start().await.unwrap();
        let healed = self.now();
        self.judge(fault, injected, healed, rooms).await;
    }
}

/// Samples every watched room once a second until `stop`.
#[allow(clippy::too_many_arguments)]
async fn sample(
    rooms_api: kube::Api<Room>,
    nodes_api: kube::Api<MediaNode>,
    replicas: Arc<Replicas>,
    watched: Vec<String>,
    parts: Vec<(String, Shared<PartState>)>,
    endpoints: Shared<BTreeMap<String, String>>,
    samples: Shared<Vec<Sample>>,
    began: Instant,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when each live room's participants have been somewhere else than its placement.
    let mut astray: BTreeMap<String, Instant> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let at = began.elapsed();
        let listed = tokio::time::timeout(Duration::from_secs(3), async {
            let rooms = rooms_api.list(&ListParams::default()).await?;
            let nodes = nodes_api.list(&ListParams::default()).await?;
            Ok::<_, kube::Error>((rooms.items, nodes.items))
        })
        .await
        .ok()
        .and_then(Result::ok);
        let leads = replicas.leader().await.is_some();
        let now = Instant::now();
        let mut unsettled: Vec<String> = Vec::new();
        if !leads {
            unsettled.push("no replica leads".into());
        }
        let (rooms, nodes) = if let Some((rooms, nodes)) = listed {
            let ready = nodes
                .iter()
                .filter(|n| n.status.as_ref().map(|s| s.phase) == Some(NodePhase::Ready))
                .count();
            if ready != NODES || nodes.len() != NODES {
                unsettled.push(format!("{ready} of {} nodes Ready", nodes.len()));
            }
            let rooms: BTreeMap<String, Room> =
                rooms.into_iter().map(|r| (r.name_any(), r)).collect();
            let mut e = endpoints.lock().unwrap();
            for (name, r) in &rooms {
                if let Some(ep) = fixtures::endpoint_of(r) {
                    e.insert(name.clone(), ep.to_string());
                }
            }
            drop(e);
            (
                Some(rooms),
                nodes.into_iter().map(|n| (n.name_any(), n)).collect(),
            )
        } else {
            unsettled.push("the API server did not answer".into());
            (None, BTreeMap::new())
        };
        let mut health = BTreeMap::new();
        for room in &watched {
            let silent = parts
                .iter()
                .filter(|(r, _)| r == room)
                .map(|(_, s)| s.lock().unwrap().without_media(now))
                .max();
            let h = match (silent, &rooms) {
                (Some(gap), _) if gap > MEDIA_GAP => RoomHealth::NoMedia(gap),
                (_, None) => RoomHealth::Unknown,
                (_, Some(rooms)) => match placement(rooms.get(room), &nodes) {
                    Ok(()) => {
                        let placed = rooms.get(room).and_then(fixtures::endpoint_of);
                        let elsewhere = parts
                            .iter()
                            .filter(|(r, _)| r == room)
                            .filter_map(|(_, s)| s.lock().unwrap().endpoint.clone())
                            .find(|e| Some(e.as_str()) != placed);
                        match elsewhere {
                            None => {
                                astray.remove(room);
                                RoomHealth::Good
                            }
                            Some(e) => {
                                let since = *astray.entry(room.clone()).or_insert(now);
                                if now.duration_since(since) > ASTRAY {
                                    RoomHealth::Unplaced(format!(
                                        "its participants are at {e}, its placement says {}",
                                        placed.unwrap_or_default()
                                    ))
                                } else {
                                    RoomHealth::Good
                                }
                            }
                        }
                    }
                    Err(why) => RoomHealth::Unplaced(why),
                },
            };
            health.insert(room.clone(), h);
        }
        let bad = health.values().filter(|h| **h != RoomHealth::Good).count();
        if bad > 0 {
            unsettled.push(format!("{bad} rooms not good"));
        }
        samples.lock().unwrap().push(Sample {
            at,
            rooms: health,
            unsettled: (!unsettled.is_empty()).then(|| unsettled.join(", ")),
        });
    }
}

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
