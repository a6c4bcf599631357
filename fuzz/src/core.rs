//! A media core with a live room, as the media targets need it: no socket, no clock of its own.

use std::net::SocketAddr;
use std::sync::Arc;

use ruche_crds::admin::{Assignment, AssignmentList, ListVersion};
use ruche_media_node::admission::{Limits, NodeMode};
use ruche_media_node::media::core::{Engine, EngineConfig, Status};
use ruche_media_node::media::{Command, JoinRequest, ParticipantEvent, ParticipantId};
use ruche_media_node::metrics::Metrics;
use ruche_media_node::token::Grants;
use tokio::sync::{mpsc, oneshot, watch};

/// The room of the fixture.
pub const ROOM: &str = "weekly-sync";
/// Where the core's socket would be bound.
pub const BOUND: &str = "127.0.0.1:7882";

/// A core with one room and two participants in it.
pub struct Core {
    /// The core.
    pub engine: Engine,
    /// The first participant.
    pub alice_id: ParticipantId,
    /// The first participant's events.
    pub alice: mpsc::UnboundedReceiver<ParticipantEvent>,
    /// The ICE username fragment of the first participant's subscribe connection, as its
    /// offer gave it: a STUN binding request naming it teaches the core a client's address.
    pub alice_ufrag: String,
    /// The second participant's events.
    pub bob: mpsc::UnboundedReceiver<ParticipantEvent>,
}

impl Core {
    /// A managed core to which [`ROOM`] is assigned, with two participants joined.
    pub fn new() -> Self {
        let bound: SocketAddr = BOUND.parse().unwrap_or_else(|e| panic!("{BOUND}: {e}"));
        let (advertised, _) = watch::channel(bound);
        let config = EngineConfig {
            bind: bound,
            advertise: bound,
            limits: Limits {
                capacity_slots: 10,
                max_participants_per_room: 10,
            },
            mode: NodeMode::Managed,
        };
        let mut engine = Engine::new(config, Arc::new(Metrics::new()), bound, advertised);
        let list = AssignmentList {
            version: ListVersion::new(1, 1),
            rooms: vec![Assignment {
                room: ROOM.into(),
                slots: 2,
                leaving: false,
            }],
        };
        let (reply, mut accepted) = oneshot::channel();
        engine.handle_command(Command::Assign(list, reply));
        assert!(
            matches!(accepted.try_recv(), Ok(Ok(_))),
            "the room is assigned"
        );
        let (alice_id, mut alice) = join(&mut engine, "alice");
        let (_, bob) = join(&mut engine, "bob");
        engine.process();
        let alice_ufrag = std::iter::from_fn(|| alice.try_recv().ok())
            .find_map(|event| match event {
                ParticipantEvent::SubscribeOffer(sdp) => ice_ufrag(&sdp),
                _ => None,
            })
            .unwrap_or_else(|| panic!("alice's subscribe connection offered an ICE ufrag"));
        Self {
            engine,
            alice_id,
            alice,
            alice_ufrag,
            bob,
        }
    }

    /// The core's status.
    pub fn status(&mut self) -> Status {
        let (reply, mut status) = oneshot::channel();
        self.engine.handle_command(Command::Status(reply));
        status
            .try_recv()
            .unwrap_or_else(|e| panic!("the core answers its status at once: {e}"))
    }

    /// Whether the core ended `events`' session.
    pub fn ended(events: &mut mpsc::UnboundedReceiver<ParticipantEvent>) -> bool {
        std::iter::from_fn(|| events.try_recv().ok())
            .any(|event| matches!(event, ParticipantEvent::Closed(_)))
    }
}

impl Default for Core {
    fn default() -> Self {
        Self::new()
    }
}

fn join(
    engine: &mut Engine,
    identity: &str,
) -> (ParticipantId, mpsc::UnboundedReceiver<ParticipantEvent>) {
    let (events, receiver) = mpsc::unbounded_channel();
    let (reply, mut joined) = oneshot::channel();
    let request = JoinRequest {
        room: ROOM.into(),
        identity: identity.into(),
        name: identity.into(),
        grants: Grants::default(),
        events,
    };
    engine.handle_command(Command::Join(request, reply));
    match joined.try_recv() {
        Ok(Ok(joined)) => (joined.participant, receiver),
        other => panic!("{identity} joins: {other:?}"),
    }
}

/// The `a=ice-ufrag` of an SDP.
fn ice_ufrag(sdp: &str) -> Option<String> {
    sdp.lines()
        .find_map(|line| line.trim().strip_prefix("a=ice-ufrag:"))
        .map(str::to_owned)
}
