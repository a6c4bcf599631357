//! Memory of the operator's in-process state at the design's scale: 1,000 media nodes and
//! 20,000 live rooms, as its caches hold them (the objects as the API server returns them,
//! with status, trimmed as the watches trim them), plus their pods, the registry with the
//! fleet's placements rebuilt from the rooms' status, and the live view of every node's last
//! poll.
//!
//! This is measured without an API server: it counts what the operator keeps, not the watch
//! streams' buffers or the HTTP client. The full process against a real API server is
//! measured by the end-to-end bench (`make bench-operator`). Figures: resident set size from
//! `/proc/self/statm`, before and after, printed side by side with the objects' JSON size.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use ruche_crds::{
    MediaFleet, MediaNodeStatus, NodeAddresses, NodeLoad, NodePhase, Room, RoomPhase, RoomStatus,
};
use ruche_operator::build::node::media_node;
use ruche_operator::build::pod::{ExternalPort, pod};
use ruche_operator::controller::admin::{NodeReport, NodeStatusReport, RoomReport};
use ruche_operator::core::health::Reported;
use ruche_operator::state::keys::{FleetKey, NodeKey};
use ruche_operator::state::live::Live;
use ruche_operator::state::registry::Registry;
use ruche_operator::state::trim;

const ZONES: [&str; 3] = ["fr-par-1", "fr-par-2", "fr-par-3"];
const NODES: u32 = 1_000;
const ROOMS: u32 = 20_000;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn fill<K: Resource + Clone + 'static>(objects: Vec<K>) -> Store<K>
where
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    reader
}

fn fleet() -> MediaFleet {
    let text = "apiVersion: ruche.dev/v1alpha1\nkind: MediaFleet\nmetadata: {name: visio, namespace: ministere, uid: 8d3f6a62-2f4e-4c55-9d8e-0b7f1c2a9e11, generation: 1}\nspec:\n  template: {image: registry.example.gouv.fr/ruche/media-node:0.1.0}\n  capacity: {slots: 400}\n  exposure: {mode: HostPort, hostPortBase: 20000}\n  zones:\n    - {name: fr-par-1, minNodes: 1, maxNodes: 400}\n    - {name: fr-par-2, minNodes: 1, maxNodes: 400}\n    - {name: fr-par-3, minNodes: 1, maxNodes: 400}\n";
    #[allow(clippy::expect_used)]
    serde_saphyr::from_str(text).expect("the bench fleet parses")
}

#[allow(clippy::expect_used, clippy::too_many_lines)]
fn main() {
    let fleet = fleet();
    let before = rss_bytes();
    let started = Instant::now();

    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for i in 0..NODES {
        let zone = ZONES[(i as usize) % ZONES.len()];
        let mut n = media_node(&fleet, zone, i).expect("a node builds");
        n.metadata.uid = Some(format!("node-uid-{i:08}"));
        n.metadata.resource_version = Some(format!("{}", 100_000 + i));
        let ip = format!("10.{}.{}.{}", i / 65_536, (i / 256) % 256, i % 256);
        n.status = Some(MediaNodeStatus {
            phase: NodePhase::Ready,
            pod: Some(n.name_any()),
            addresses: Some(NodeAddresses {
                signaling: Some(format!("ws://{ip}:{}/ws", 20_000 + i)),
                media: Some(format!("{ip}:{}", 20_000 + i)),
                admin: Some(format!("http://{ip}:7881")),
            }),
            load: NodeLoad {
                rooms: ROOMS / NODES,
                participants: 150,
                reserved_slots: 200,
                used_slots: 200,
                bitrate_in_bps: 40_000_000,
                bitrate_out_bps: 300_000_000,
            },
            ..Default::default()
        });
        let p = pod(
            &fleet,
            &n,
            ExternalPort::Host(u16::try_from(20_000 + i).unwrap_or(0)),
        )
        .expect("a pod builds");
        pods.push(p);
        nodes.push(n);
    }
    let mut rooms = Vec::new();
    for r in 0..ROOMS {
        let node = &nodes[(r % NODES) as usize];
        let text = format!(
            "apiVersion: ruche.dev/v1alpha1\nkind: Room\nmetadata: {{name: meeting-{r:06}, namespace: ministere, uid: room-uid-{r:08}, generation: 1}}\nspec:\n  fleet: visio\n  slots: 10\n  tenant: ministere\n"
        );
        let mut room: Room = serde_saphyr::from_str(&text).expect("a room parses");
        room.status = Some(RoomStatus {
            phase: RoomPhase::Active,
            node: Some(node.name_any()),
            zone: Some(node.spec.zone.clone()),
            endpoint: node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.signaling.clone()),
            participants: 7,
            ..Default::default()
        });
        rooms.push(room);
    }
    let json_bytes: usize = nodes
        .iter()
        .map(|n| serde_json::to_vec(n).map_or(0, |v| v.len()))
        .chain(
            rooms
                .iter()
                .map(|r| serde_json::to_vec(r).map_or(0, |v| v.len())),
        )
        .chain(
            pods.iter()
                .map(|p| serde_json::to_vec(p).map_or(0, |v| v.len())),
        )
        .sum();

    for n in &mut nodes {
        trim::metadata(n);
    }
    for r in &mut rooms {
        trim::metadata(r);
    }
    for p in &mut pods {
        trim::pod(p);
    }
    let node_store = fill(nodes);
    let room_store = fill(rooms);
    let pod_store: Store<Pod> = fill(pods);
    let cached = rss_bytes();

    // The registry shares the caches' objects, as the watches fold them in.
    let mut registry = Registry::new(1);
    registry.apply_fleet(std::sync::Arc::new(fleet.clone()));
    registry.replace_nodes(node_store.state());
    registry.replace_rooms(room_store.state());
    let key = FleetKey::of(&fleet);
    let built = registry.ensure(&key).expect("the fleet's rules are valid");
    let placed = registry
        .snapshot(&key)
        .map_or(0, ruche_operator::core::Snapshot::room_count);

    let mut live = Live::default();
    let t0 = Instant::now();
    for n in node_store.state() {
        let key = NodeKey::of(&n);
        live.running(&key, t0);
        let rooms_here: Vec<RoomReport> = (0..ROOMS / NODES)
            .map(|k| RoomReport {
                name: format!("meeting-{:06}", k * NODES),
                participants: 7,
                tracks: 14,
                leaving: false,
                quality: ruche_crds::admin::RoomQuality::default(),
            })
            .collect();
        let report = NodeReport {
            status: NodeStatusReport {
                phase: "Ready".into(),
                rooms: ROOMS / NODES,
                participants: 140,
                ..Default::default()
            },
            rooms: rooms_here,
        };
        live.answered(&key, report, Reported::Ready, t0 + Duration::from_millis(1));
    }
    let after = rss_bytes();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "operator state footprint (in process, no API server): {NODES} media nodes, {ROOMS} rooms, {NODES} pods"
    );
    println!(
        "  objects as JSON                      {:>8.1} MiB",
        json_bytes as f64 / (1024.0 * 1024.0)
    );
    println!(
        "  RSS before                           {:>8.1} MiB",
        mib(before)
    );
    println!(
        "  RSS with the caches filled           {:>8.1} MiB (+{:.1})",
        mib(cached),
        mib(cached.saturating_sub(before))
    );
    println!(
        "  RSS with registry and live view      {:>8.1} MiB (+{:.1})",
        mib(after),
        mib(after.saturating_sub(cached))
    );
    println!(
        "  rooms placed in the rebuilt snapshot {placed} (problems: {})",
        built.problems.len()
    );
    println!(
        "  built in {:?}; goal for the whole process: under 150 MB",
        started.elapsed()
    );
    // Keep everything alive until measured.
    std::hint::black_box((&node_store, &room_store, &pod_store, &registry, &live));
}
