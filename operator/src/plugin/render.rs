//! What `kubectl ruche status` and `kubectl ruche top` print: aligned tables, as kubectl does,
//! with more columns at `-o wide`. Pure: the objects in, the text out.

use std::fmt::Write as _;

use kube::ResourceExt;
use ruche_crds::{ConditionsExt, MediaFleet, MediaNode, Room};

/// Lays rows out in columns two spaces apart, the first row being the header.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[c]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn condition(fleet: &MediaFleet, type_: &str) -> String {
    fleet
        .status
        .as_ref()
        .and_then(|s| s.conditions.condition(type_))
        .map_or_else(|| "-".into(), |c| format!("{} ({})", c.status, c.reason))
}

/// A fleet at a glance: its totals, then one line per zone; `wide` adds the revision, the
/// rollout and the conditions' messages.
pub fn status(fleets: &[MediaFleet], wide: bool) -> String {
    if fleets.is_empty() {
        return "No MediaFleet in this namespace.\n".into();
    }
    let mut out = String::new();
    for (i, fleet) in fleets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let s = fleet.status.clone().unwrap_or_default();
        let mut head = vec![
            "FLEET",
            "NODES",
            "READY",
            "SLOTS",
            "USED",
            "AVAILABLE",
            "AUTOSCALING",
        ];
        let mut row = vec![
            fleet.name_any(),
            s.replicas.to_string(),
            s.ready_replicas.to_string(),
            s.slots.to_string(),
            s.used_slots.to_string(),
            condition(fleet, "Available"),
            condition(fleet, "Autoscaling"),
        ];
        if wide {
            head.extend(["REVISION", "ROLLOUT"]);
            row.push(s.update_revision.clone().unwrap_or_else(|| "-".into()));
            row.push(s.rollout.as_ref().map_or_else(
                || "-".into(),
                |r| match &r.halted {
                    Some(h) => format!("halted ({})", h.reason),
                    None => format!(
                        "{} updated, {} draining, {} to go",
                        r.updated_nodes, r.draining_nodes, r.remaining_nodes
                    ),
                },
            ));
        }
        out.push_str(&table(&[head.into_iter().map(String::from).collect(), row]));
        let mut zones = vec![
            [
                "  ZONE", "NODES", "READY", "DESIRED", "SLOTS", "USED", "ROOMS", "BUFFER",
                "WAITING",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for z in &s.zones {
            let evacuated = fleet
                .spec
                .zones
                .iter()
                .any(|spec| spec.name == z.name && spec.evacuate);
            zones.push(vec![
                format!(
                    "  {}{}",
                    z.name,
                    if evacuated { " (evacuated)" } else { "" }
                ),
                z.nodes.to_string(),
                z.ready_nodes.to_string(),
                z.desired_nodes.to_string(),
                z.slots.to_string(),
                z.used_slots.to_string(),
                z.rooms.to_string(),
                z.buffer_slots.map_or_else(|| "-".into(), |b| b.to_string()),
                z.booked_slots.map_or_else(|| "-".into(), |b| b.to_string()),
            ]);
        }
        out.push_str(&table(&zones));
        if wide {
            for c in &s.conditions {
                let _ = writeln!(
                    out,
                    "  {}={} {}: {}",
                    c.type_, c.status, c.reason, c.message
                );
            }
        }
    }
    out
}

/// Media nodes by load, busiest first.
pub fn top_nodes(nodes: &[MediaNode], wide: bool) -> String {
    let mut sorted: Vec<&MediaNode> = nodes.iter().collect();
    let load = |n: &MediaNode| n.status.clone().unwrap_or_default().load;
    sorted.sort_by_key(|n| (std::cmp::Reverse(load(n).used_slots), n.name_any()));
    let mut head = vec![
        "NODE",
        "ZONE",
        "PHASE",
        "ROOMS",
        "PARTICIPANTS",
        "SLOTS",
        "USED%",
    ];
    if wide {
        head.extend(["IN", "OUT", "REVISION"]);
    }
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for n in sorted {
        let s = n.status.clone().unwrap_or_default();
        let used = s.load.used_slots.max(s.load.reserved_slots);
        let capacity = n.spec.capacity.slots.max(1);
        let mut row = vec![
            n.name_any(),
            n.spec.zone.clone(),
            format!(
                "{}{}",
                s.phase.as_str(),
                if n.spec.drain.is_some() {
                    " (drain asked)"
                } else {
                    ""
                }
            ),
            s.load.rooms.to_string(),
            s.load.participants.to_string(),
            format!("{used}/{capacity}"),
            format!("{}%", u64::from(used) * 100 / u64::from(capacity)),
        ];
        if wide {
            row.push(mbps(s.load.bitrate_in_bps));
            row.push(mbps(s.load.bitrate_out_bps));
            row.push(n.spec.revision.clone());
        }
        rows.push(row);
    }
    table(&rows)
}

/// Rooms by participants, fullest first.
pub fn top_rooms(rooms: &[Room], wide: bool) -> String {
    let mut sorted: Vec<&Room> = rooms.iter().collect();
    let participants = |r: &Room| r.status.as_ref().map_or(0, |s| s.participants);
    sorted.sort_by_key(|r| (std::cmp::Reverse(participants(r)), r.name_any()));
    let mut head = vec!["ROOM", "FLEET", "PHASE", "PARTICIPANTS", "SLOTS", "NODE"];
    if wide {
        head.extend(["ZONE", "TENANT"]);
    }
    let mut rows = vec![head.into_iter().map(String::from).collect::<Vec<_>>()];
    for r in sorted {
        let s = r.status.clone().unwrap_or_default();
        let mut row = vec![
            r.name_any(),
            r.spec.fleet.clone(),
            s.phase.as_str().into(),
            s.participants.to_string(),
            r.spec.slots.to_string(),
            s.node.clone().unwrap_or_else(|| "-".into()),
        ];
        if wide {
            row.push(s.zone.clone().unwrap_or_else(|| "-".into()));
            row.push(r.spec.tenant.clone().unwrap_or_else(|| "-".into()));
        }
        rows.push(row);
    }
    table(&rows)
}

fn mbps(bps: u64) -> String {
    format!("{:.1} Mb/s", bps as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_fleet_at_a_glance() {
        let fleet: MediaFleet = serde_json::from_value(json!({
            "apiVersion": "ruche.dev/v1alpha1", "kind": "MediaFleet",
            "metadata": { "name": "visio", "namespace": "ns" },
            "spec": { "template": { "image": "x" }, "capacity": { "slots": 100 },
                "zones": [ { "name": "fr-par-1", "maxNodes": 5, "evacuate": true } ] },
            "status": { "replicas": 2, "readyReplicas": 2, "slots": 200, "usedSlots": 40,
                "zones": [ { "name": "fr-par-1", "nodes": 2, "readyNodes": 2, "desiredNodes": 2,
                    "slots": 200, "usedSlots": 40, "rooms": 3, "bufferSlots": 100, "bookedSlots": 0 } ],
                "conditions": [ { "type": "Available", "status": "True", "reason": "Serving",
                    "message": "2 media nodes Ready", "lastTransitionTime": "2026-11-29T00:00:00Z" } ] }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            status(&[fleet], false),
            "FLEET  NODES  READY  SLOTS  USED  AVAILABLE       AUTOSCALING\n\
             visio  2      2      200    40    True (Serving)  -\n  \
             ZONE                  NODES  READY  DESIRED  SLOTS  USED  ROOMS  BUFFER  WAITING\n  \
             fr-par-1 (evacuated)  2      2      2        200    40    3      100     0\n"
        );
        assert_eq!(status(&[], false), "No MediaFleet in this namespace.\n");
    }
}
