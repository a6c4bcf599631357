//! The objects the scenarios create, and how they read what the operator writes back.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{Api, Client, ResourceExt as _};
use ruche_crds::token::{Claims, TokenKey};
use ruche_crds::{MediaNode, NodePhase, Room, RoomPhase, RoomSpec};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The zones of every test fleet (no Kubernetes node has them, so no real kubelet ever gets
/// the pods).
pub const ZONES: [&str; 3] = ["e2e-a", "e2e-b", "e2e-c"];
/// Slots per media node: 3 zones × 2 nodes × 100 = 600 slots, room for 200 rooms of 2.
pub const SLOTS_PER_NODE: u32 = 100;
/// Nodes per zone the fleet starts with (its `minNodes`).
pub const MIN_NODES: u32 = 2;
/// Most nodes per zone.
pub const MAX_NODES: u32 = 4;
/// The image of test fleets: never pulled (the pod runner runs the local binary).
pub const IMAGE: &str = "registry.invalid/ruche/media-node:e2e-never-pulled";
/// The admin port of a media node (the runner keeps it: it has no host port).
pub const ADMIN_PORT: u16 = 7881;
/// The `Scheduled` condition of a room.
pub const SCHEDULED: &str = "Scheduled";
/// The key of the join token key in the fleet's `<fleet>-join-key` Secret.
pub const JOIN_KEY: &str = "token-key";

/// A test fleet: three zones of 2 to 4 nodes of 100 slots, HostPort exposure from
/// `host_port_base`. A full object for server-side apply (apiVersion and kind included).
pub fn fleet(name: &str, host_port_base: u16) -> Value {
    let zones: Vec<_> = ZONES.iter().map(|z| (*z, MIN_NODES, MAX_NODES)).collect();
    fleet_with(name, host_port_base, &zones, SLOTS_PER_NODE)
}

/// A fleet over `zones` (name, minNodes, maxNodes) of nodes of `slots` slots, HostPort
/// exposure from `host_port_base`, an image that is never pulled.
pub fn fleet_with(
    name: &str,
    host_port_base: u16,
    zones: &[(&str, u32, u32)],
    slots: u32,
) -> Value {
    let zones: Vec<Value> = zones
        .iter()
        .map(|(z, min, max)| json!({ "name": z, "minNodes": min, "maxNodes": max }))
        .collect();
    json!({
        "apiVersion": "ruche.dev/v1alpha1",
        "kind": "MediaFleet",
        "metadata": { "name": name },
        "spec": {
            "template": { "image": IMAGE, "imagePullPolicy": "Never" },
            "capacity": { "slots": slots },
            "zones": zones,
            "exposure": { "mode": "HostPort", "hostPortBase": host_port_base },
        },
    })
}

/// A room of `slots` slots in `fleet`, in any of `allowed` zones (any zone if empty). Its
/// empty timeout is an hour, so that it outlives the test without participants.
pub fn room(name: &str, fleet: &str, slots: u32, allowed: &[&str]) -> Result<Room> {
    let spec: RoomSpec = serde_json::from_value(json!({
        "fleet": fleet,
        "slots": slots,
        "zones": { "allowed": allowed },
        "emptyTimeout": "1h",
    }))
    .map_err(|e| Error::Setup(format!("room spec: {e}")))?;
    Ok(Room::new(name, spec))
}

/// The room's `Scheduled` condition.
pub fn scheduled(room: &Room) -> Option<&Condition> {
    room.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == SCHEDULED)
}

/// Whether the room is placed: `Scheduled=True`, a phase in `phases`, node, zone and
/// endpoint set. `Err` says what is missing.
pub fn check_placed(room: &Room, phases: &[RoomPhase]) -> Result<(), String> {
    let name = room.name_any();
    let Some(status) = &room.status else {
        return Err(format!("{name}: no status"));
    };
    let condition = scheduled(room);
    if condition.is_none_or(|c| c.status != "True") {
        return Err(format!(
            "{name}: Scheduled is {:?}",
            condition.map(|c| (&c.status, &c.reason, &c.message))
        ));
    }
    if !phases.contains(&status.phase) {
        return Err(format!("{name}: phase {}", status.phase.as_str()));
    }
    if status.node.is_none() || status.zone.is_none() || status.endpoint.is_none() {
        return Err(format!(
            "{name}: node {:?}, zone {:?}, endpoint {:?}",
            status.node, status.zone, status.endpoint
        ));
    }
    Ok(())
}

/// The room's node, if placed.
pub fn node_of(room: &Room) -> Option<&str> {
    room.status.as_ref()?.node.as_deref()
}

/// The room's endpoint, if placed.
pub fn endpoint_of(room: &Room) -> Option<&str> {
    room.status.as_ref()?.endpoint.as_deref()
}

/// Checks placed rooms against the nodes: each room's node exists and is Ready, its zone and
/// endpoint are the node's, and no node holds more slots than its capacity. Returns the slots
/// placed per node.
pub fn check_placements(
    rooms: &[Room],
    nodes: &[MediaNode],
) -> Result<BTreeMap<String, u32>, String> {
    let mut problems = Vec::new();
    let mut used: BTreeMap<String, u32> = BTreeMap::new();
    for room in rooms {
        let name = room.name_any();
        let Some(node_name) = node_of(room) else {
            problems.push(format!("{name}: no node"));
            continue;
        };
        *used.entry(node_name.to_string()).or_default() += room.spec.slots;
        let Some(node) = nodes.iter().find(|n| n.name_any() == node_name) else {
            problems.push(format!("{name}: node {node_name} does not exist"));
            continue;
        };
        let status = node.status.clone().unwrap_or_default();
        if status.phase != NodePhase::Ready {
            problems.push(format!("{name}: node {node_name} is {}", status.phase));
        }
        let zone = room.status.as_ref().and_then(|s| s.zone.as_deref());
        if zone != Some(node.spec.zone.as_str()) {
            problems.push(format!(
                "{name}: zone {zone:?}, but node {node_name} is in {}",
                node.spec.zone
            ));
        }
        let signaling = status
            .addresses
            .as_ref()
            .and_then(|a| a.signaling.as_deref());
        if endpoint_of(room) != signaling || signaling.is_none() {
            problems.push(format!(
                "{name}: endpoint {:?}, but node {node_name} signals at {signaling:?}",
                endpoint_of(room)
            ));
        }
    }
    for (node_name, slots) in &used {
        if let Some(node) = nodes.iter().find(|n| n.name_any() == *node_name)
            && *slots > node.spec.capacity.slots
        {
            problems.push(format!(
                "node {node_name} holds {slots} slots, over its capacity of {}",
                node.spec.capacity.slots
            ));
        }
    }
    if problems.is_empty() {
        Ok(used)
    } else {
        Err(problems.join("; "))
    }
}

/// The fleet's join token key, read from its `<fleet>-join-key` Secret.
pub async fn join_key(client: &Client, namespace: &str, fleet: &str) -> Result<TokenKey> {
    let name = format!("{fleet}-join-key");
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&name)
        .await?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(JOIN_KEY))
        .ok_or_else(|| Error::Setup(format!("Secret {namespace}/{name} has no `{JOIN_KEY}`")))?;
    TokenKey::from_bytes(&bytes.0)
        .map_err(|e| Error::Setup(format!("Secret {namespace}/{name}: {e}")))
}

/// The key of the admin token in the fleet's `<fleet>-admin-token` Secret.
pub const ADMIN_TOKEN: &str = "admin-token";

/// The bearer token of the fleet's media nodes' admin API, from its Secret.
pub async fn admin_token(client: &Client, namespace: &str, fleet: &str) -> Result<String> {
    let name = format!("{fleet}-admin-token");
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(&name)
        .await?;
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(ADMIN_TOKEN))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .filter(|t| !t.is_empty())
        .ok_or_else(|| Error::Setup(format!("Secret {namespace}/{name} has no `{ADMIN_TOKEN}`")))
}

/// A join token for `identity` in `room`, valid for an hour.
pub fn mint(key: &TokenKey, room: &str, identity: &str) -> Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut claims = Claims::new(identity, room, now + 3600);
    claims.iat = Some(now);
    key.mint(&claims)
        .map_err(|e| Error::Setup(format!("cannot mint a token: {e}")))
}
