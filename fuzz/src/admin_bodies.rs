//! The admin API's request bodies, as anyone holding the admin token (or an operator of another
//! version) may send them, applied to a core with a live room.

use ruche_crds::admin::AssignmentList;
use ruche_media_node::admin::wire::{AdvertiseBody, DrainBody, advertised_addr};
use ruche_media_node::media::Command;
use tokio::sync::oneshot;

use crate::core::{Core, ROOM};

/// Parses the rest of `data` as the body its first byte names: an assignment list (0), a
/// drain (1) or an advertised address (2); a body that parses is applied to a fresh core.
pub fn run(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    match kind % 3 {
        0 => assignments(body),
        1 => {
            let _ = serde_json::from_slice::<DrainBody>(body);
        }
        _ => advertise(body),
    }
}

fn assignments(body: &[u8]) {
    let Ok(list) = serde_json::from_slice::<AssignmentList>(body) else {
        return;
    };
    let mut core = Core::new();
    let kept = list.rooms.iter().any(|r| r.room == ROOM);
    let (reply, mut answer) = oneshot::channel();
    core.engine.handle_command(Command::Assign(list, reply));
    core.engine.process();
    let accepted = matches!(answer.try_recv(), Ok(Ok(_)));
    if !accepted || kept {
        // A stale list changes nothing; a list that keeps the room keeps its sessions (a
        // room marked leaving keeps its open sessions too).
        assert!(!Core::ended(&mut core.bob), "bob's session was ended");
    } else {
        assert!(
            Core::ended(&mut core.bob),
            "the room left the list but bob stayed"
        );
    }
}

fn advertise(body: &[u8]) {
    let Ok(body) = serde_json::from_slice::<AdvertiseBody>(body) else {
        return;
    };
    let Ok(addr) = advertised_addr(&body.media) else {
        return;
    };
    assert!(!addr.ip().is_unspecified() && addr.port() != 0, "{addr}");
    let mut core = Core::new();
    core.engine.handle_command(Command::Advertise(addr));
    assert_eq!(core.status().advertise, addr.to_string());
}
