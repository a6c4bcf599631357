//! Custom resources as the API server hands them to the operator: a `MediaFleet` with its
//! `MediaNode`s and `Room`s, in JSON, through the conversion that rebuilds the fleet's
//! placements from them (what a restarted operator does) and the decision that places each
//! room. Objects the schema would refuse may still arrive (an older version's, or one written
//! before a rule existed): the conversion must name what is wrong, never panic or overcommit.

use ruche_crds::{MediaFleet, MediaNode, Room};
use ruche_operator::state::placements::{Decision, FleetPlacement};
use serde::Deserialize;

/// A fleet and its objects.
#[derive(Deserialize)]
struct Objects {
    fleet: MediaFleet,
    #[serde(default)]
    nodes: Vec<MediaNode>,
    #[serde(default)]
    rooms: Vec<Room>,
}

/// Rebuilds the placements of the objects in `data` (JSON) and decides every room.
pub fn run(data: &[u8]) {
    let Ok(objects) = serde_json::from_slice::<Objects>(data) else {
        return;
    };
    let Ok((mut placement, _)) =
        FleetPlacement::build(&objects.fleet, &objects.nodes, &objects.rooms)
    else {
        return;
    };
    for node in &objects.nodes {
        placement.sync_node(node);
    }
    for room in &objects.rooms {
        if let Decision::Placed {
            node, fresh: true, ..
        } = placement.decide(room)
        {
            // A new placement never takes a node past its capacity.
            let snapshot = placement.snapshot();
            let state = snapshot
                .node_id(&node)
                .and_then(|id| snapshot.node(id))
                .unwrap_or_else(|| panic!("room placed on {node}, which the snapshot lacks"));
            assert!(
                state.load.used() <= state.capacity,
                "{node} overcommitted: {:?} of {}",
                state.load,
                state.capacity
            );
        }
    }
    // A rebuild from the same objects keeps working.
    let _ = placement.rebuild(&objects.fleet, &objects.nodes, &objects.rooms);
}
