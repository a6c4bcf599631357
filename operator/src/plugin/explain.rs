//! `kubectl ruche explain room NAME`: where a room is and why, or why it waits, asked of the
//! same decision core that places rooms, on a snapshot rebuilt from the fleet's objects.

use std::fmt::Write as _;

use jiff::Timestamp;
use kube::ResourceExt;
use ruche_crds::{MediaFleet, MediaNode, Room, RoomPhase};

use crate::core::autoscaling::{BookingState, classify};
use crate::core::place;
use crate::state::world::rebuild;

/// The explanation of `room`, given its fleet (if it exists) and the fleet's nodes and rooms.
pub fn explain(
    room: &Room,
    fleet: Option<&MediaFleet>,
    nodes: &[MediaNode],
    rooms: &[Room],
    now: Timestamp,
) -> String {
    let mut out = String::new();
    let status = room.status.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "Room {} (fleet {}, {} slots{}): {}",
        room.name_any(),
        room.spec.fleet,
        room.spec.slots,
        zones(room),
        status.phase.as_str()
    );
    for c in &status.conditions {
        let _ = writeln!(
            out,
            "  {}={} {}: {}",
            c.type_, c.status, c.reason, c.message
        );
    }
    let Some(fleet) = fleet else {
        let _ = writeln!(
            out,
            "No MediaFleet {} in this namespace: nothing can place the room until it exists.",
            room.spec.fleet
        );
        return out;
    };
    if let Some(node) = &status.node
        && status.phase != RoomPhase::Closed
    {
        let _ = writeln!(
            out,
            "It lives on media node {node} in zone {}, reached at {}.",
            status.zone.as_deref().unwrap_or("?"),
            status.endpoint.as_deref().unwrap_or("(no endpoint yet)")
        );
        if let Some(n) = nodes.iter().find(|n| &n.name_any() == node) {
            if let Some(drain) = &n.spec.drain {
                let _ = writeln!(
                    out,
                    "That node is asked to drain ({}): the room moves live by its deadline, or stays if no other node may take it.",
                    drain.reason.as_deref().unwrap_or("Manual")
                );
            }
        } else {
            let _ = writeln!(
                out,
                "That node no longer exists: the operator moves the room."
            );
        }
        return out;
    }
    if status.phase == RoomPhase::Closed {
        let _ = writeln!(out, "It is closed: its slots are free.");
        return out;
    }
    let bookings = &fleet.spec.bookings;
    let booking = classify(
        room.spec.start_time.as_ref().map(|t| t.0),
        room.metadata.creation_timestamp.as_ref().map(|t| t.0),
        now,
        bookings.lead_time.into(),
        bookings.horizon.into(),
    );
    if let BookingState::Upcoming { hold_from, .. }
    | BookingState::BeyondHorizon {
        plan_from: hold_from,
        ..
    } = booking
    {
        let _ = writeln!(
            out,
            "It is booked ahead: it is placed from {hold_from}, not before."
        );
        return out;
    }
    let world = match rebuild(fleet, nodes, rooms) {
        Ok(w) => w,
        Err(e) => {
            let _ = writeln!(out, "The fleet's rules are unusable: {e}");
            return out;
        }
    };
    let snapshot = &world.snapshot;
    let request = match snapshot.room_request(&room.spec) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(out, "It can never be placed: {e}");
            return out;
        }
    };
    match place(snapshot, &request) {
        Ok(p) => {
            let node = snapshot
                .node(p.node)
                .map_or_else(String::new, |n| n.name.to_string());
            let _ = writeln!(
                out,
                "Now, media node {node} could take it: the operator places it at its next look (at most a minute)."
            );
        }
        Err(why) => {
            let _ = writeln!(out, "Now, no media node can take it: {why}");
        }
    }
    out
}

fn zones(room: &Room) -> String {
    let z = &room.spec.zones;
    match (z.allowed.is_empty(), z.preferred.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(", in {}", z.allowed.join(" or ")),
        (true, false) => format!(", preferably in {}", z.preferred.join(" or ")),
        (false, false) => format!(
            ", in {}, preferably {}",
            z.allowed.join(" or "),
            z.preferred.join(" or ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fleet() -> MediaFleet {
        super::super::test_fleet(&["a", "b"])
    }

    fn node(name: &str, zone: &str, phase: &str) -> MediaNode {
        serde_json::from_value(json!({
            "apiVersion": "ruche.dev/v1alpha1", "kind": "MediaNode",
            "metadata": { "name": name, "namespace": "ns" },
            "spec": { "fleet": "visio", "zone": zone, "revision": "r1", "capacity": { "slots": 100 } },
            "status": { "phase": phase }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn room(name: &str, slots: u32, status: &serde_json::Value) -> Room {
        serde_json::from_value(json!({
            "apiVersion": "ruche.dev/v1alpha1", "kind": "Room",
            "metadata": { "name": name, "namespace": "ns" },
            "spec": { "fleet": "visio", "slots": slots, "zones": { "allowed": ["a"] } },
            "status": status
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_waiting_room_is_explained_by_the_core_zone_by_zone() {
        let nodes = [
            node("visio-a-0", "a", "Ready"),
            node("visio-b-0", "b", "Ready"),
        ];
        let big = room("big", 150, &json!({ "phase": "Pending" }));
        let text = explain(&big, Some(&fleet()), &nodes, &[], Timestamp::now());
        assert!(
            text.starts_with("Room big (fleet visio, 150 slots, in a): Pending\n"),
            "{text}"
        );
        assert!(
            text.contains("Now, no media node can take it: no node can take 150 slots"),
            "{text}"
        );
        assert!(text.contains("b: not allowed by the room"), "{text}");
        let small = room("small", 10, &json!({ "phase": "Pending" }));
        let text = explain(&small, Some(&fleet()), &nodes, &[], Timestamp::now());
        assert!(
            text.contains("Now, media node visio-a-0 could take it"),
            "{text}"
        );
    }

    #[test]
    fn a_placed_room_says_where_it_lives() {
        let placed = room(
            "weekly",
            10,
            &json!({ "phase": "Active", "node": "visio-a-0", "zone": "a", "endpoint": "wss://a0" }),
        );
        let text = explain(
            &placed,
            Some(&fleet()),
            &[node("visio-a-0", "a", "Ready")],
            &[],
            Timestamp::now(),
        );
        assert!(
            text.contains("It lives on media node visio-a-0 in zone a, reached at wss://a0."),
            "{text}"
        );
        let text = explain(&placed, None, &[], &[], Timestamp::now());
        assert!(
            text.contains("No MediaFleet visio in this namespace"),
            "{text}"
        );
    }
}
