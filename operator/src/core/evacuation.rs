//! Zone evacuation: which rooms may live nowhere but the zones being evacuated. Those stay
//! where they are (their nodes drain, but a migration has nowhere to take them) and are named,
//! so a person decides, instead of being cut.

use super::ids::{RoomKey, ZoneId, ZoneMask};
use super::snapshot::Snapshot;

/// The zones being evacuated, as a mask of the snapshot's zones (by index).
pub fn mask(evacuated: &[bool]) -> ZoneMask {
    evacuated
        .iter()
        .enumerate()
        .filter(|(_, e)| **e)
        .fold(ZoneMask::EMPTY, |m, (i, _)| {
            m.with(ZoneId(u8::try_from(i).unwrap_or(u8::MAX)))
        })
}

/// The rooms placed in an evacuated zone whose rules allow no other zone, sorted.
pub fn pinned(snapshot: &Snapshot, evacuated: ZoneMask) -> Vec<RoomKey> {
    if evacuated.is_empty() {
        return Vec::new();
    }
    let mut rooms: Vec<RoomKey> = snapshot
        .rooms()
        .filter(|(_, r)| {
            snapshot
                .node(r.node)
                .is_some_and(|n| evacuated.contains(n.zone))
                && r.request.allowed.minus(evacuated).is_empty()
        })
        .map(|(k, _)| k.clone())
        .collect();
    rooms.sort();
    rooms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{Action, FleetRules, NodeInfo};
    use ruche_crds::PlacementStrategy;

    #[test]
    fn only_rooms_allowed_nowhere_else_are_pinned() {
        let mut s = Snapshot::new(FleetRules::uniform(
            PlacementStrategy::Packed,
            &["a", "b", "c"],
            1,
        ))
        .unwrap();
        let a1 = s.add_node(NodeInfo::ready("a1", "a", 100)).unwrap();
        let b1 = s.add_node(NodeInfo::ready("b1", "b", 100)).unwrap();
        for (room, node, allowed) in [
            ("anywhere", a1, &[][..]),
            ("a-only", a1, &["a"][..]),
            ("a-or-b", a1, &["a", "b"][..]),
            ("b-only", b1, &["b"][..]),
        ] {
            let request = s.request(2, allowed, &[]).unwrap();
            let placed = s.apply(&Action::Assign {
                room: RoomKey::new(room),
                node,
                request,
            });
            assert!(placed.is_ok());
        }
        assert_eq!(
            pinned(&s, mask(&[true, false, false])),
            [RoomKey::new("a-only")]
        );
        assert_eq!(
            pinned(&s, mask(&[true, true, false])),
            [
                RoomKey::new("a-only"),
                RoomKey::new("a-or-b"),
                RoomKey::new("b-only")
            ],
            "a and b both evacuated: only rooms that may go to c are not pinned"
        );
        assert!(pinned(&s, mask(&[false, false, false])).is_empty());
    }
}
