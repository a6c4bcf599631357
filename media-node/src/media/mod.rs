//! The media plane: every peer connection of the node on one UDP socket, driven by one loop
//! around the sans-IO `rtc` core.
//!
//! Signaling and the admin API talk to the loop through a [`MediaHandle`]: commands in, and
//! per-participant [`ParticipantEvent`]s out. The loop owns all media state, so nothing here
//! takes a lock on the forwarding path.
//!
//! - [`core`]: the sans-IO core: rooms, participants, peer connections, routing, forwarding
//!   and layer choice, as functions of datagrams, commands and instants;
//! - [`driver`]: the imperative shell: the sockets, batched reads and writes, the clock.

pub mod core;
pub mod driver;

use std::net::SocketAddr;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::admission::Refusal;
use crate::token::Grants;

/// A participant of this node, unique for the life of the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

/// Who joins, as the token says.
#[derive(Clone, Debug)]
pub struct JoinRequest {
    /// Room to join.
    pub room: String,
    /// Identity from the token (`sub`).
    pub identity: String,
    /// Display name.
    pub name: String,
    /// What the token allows.
    pub grants: Grants,
    /// Where the participant's events go.
    pub events: mpsc::UnboundedSender<ParticipantEvent>,
}

/// Another participant, as the others see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantInfo {
    /// Participant id (also the media stream id of its tracks).
    pub id: String,
    /// Identity from its token.
    pub identity: String,
    /// Display name.
    pub name: String,
}

/// A join that succeeded.
#[derive(Clone, Debug)]
pub struct Joined {
    /// The new participant's id.
    pub participant: ParticipantId,
    /// Who is already in the room.
    pub others: Vec<ParticipantInfo>,
}

/// Why a join failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// Admission refused it.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The peer connections could not be built.
    #[error("cannot set up media: {0}")]
    Media(String),
}

/// Simulcast layer a subscriber asks for, ordered from lowest to highest quality.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize, Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// Lowest resolution (rid `q`).
    Low,
    /// Middle (rid `h`).
    Medium,
    /// Highest (rid `f`).
    High,
}

impl Layer {
    /// The RTP stream id browsers use for the layer.
    pub fn rid(self) -> &'static str {
        match self {
            Self::Low => "q",
            Self::Medium => "h",
            Self::High => "f",
        }
    }

    /// The layer of a rid, if it is one of the three.
    pub fn from_rid(rid: &str) -> Option<Self> {
        match rid {
            "q" => Some(Self::Low),
            "h" => Some(Self::Medium),
            "f" => Some(Self::High),
            _ => None,
        }
    }
}

/// What the media loop tells one participant's signaling session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParticipantEvent {
    /// A new offer for the subscribe connection (tracks came or went).
    SubscribeOffer(String),
    /// Someone joined the room.
    ParticipantJoined(ParticipantInfo),
    /// Someone left.
    ParticipantLeft(String),
    /// A track of another participant is now in the subscribe connection.
    TrackPublished {
        /// Publisher's participant id (the stream id in SDP).
        participant: String,
        /// Track id in the subscribe connection's SDP.
        track: String,
        /// `audio` or `video`.
        kind: String,
        /// Simulcast layers offered, empty when not simulcast.
        layers: Vec<Layer>,
    },
    /// Reconnect to another node: the room moved.
    Migrate {
        /// Signaling endpoint of the new node.
        endpoint: String,
        /// Token for it.
        token: String,
    },
    /// The node ended the session: the last event a session receives.
    Closed(Ending),
}

/// Why the node ended a participant's session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The room ended here: closed by the admin API, or no longer assigned to this node.
    RoomClosed(String),
    /// The node is shutting down.
    NodeStopping,
    /// The participant's media connection failed or was closed.
    MediaFailed(String),
}

/// Commands the loop accepts.
#[derive(Debug)]
pub enum Command {
    /// A participant joins a room.
    Join(JoinRequest, oneshot::Sender<Result<Joined, JoinError>>),
    /// The participant's offer for its publish connection; the reply is the answer.
    PublishOffer(
        ParticipantId,
        String,
        oneshot::Sender<Result<String, String>>,
    ),
    /// The participant's answer to the last subscribe offer.
    SubscribeAnswer(ParticipantId, String, oneshot::Sender<Result<(), String>>),
    /// A subscriber's layer preference for a track (`None`: let the node choose).
    SetLayer(ParticipantId, String, Option<Layer>),
    /// The participant leaves (or its signaling session ended).
    Leave(ParticipantId),
    /// Start a drain, with an optional deadline from now.
    Drain(Option<std::time::Duration>, crate::drain::DrainReason),
    /// Cancel a drain.
    CancelDrain,
    /// Replace the list of rooms the operator assigned to this node, unless it is older than
    /// the one held; rooms that leave the list end (see [`ruche_crds::admin`]).
    Assign(
        ruche_crds::admin::AssignmentList,
        oneshot::Sender<Result<ruche_crds::admin::Accepted, ruche_crds::admin::StaleList>>,
    ),
    /// Tell every participant of a room to reconnect elsewhere. Tokens per identity are minted
    /// by the caller.
    Migrate(
        String,
        String,
        Vec<(String, String)>,
        oneshot::Sender<usize>,
    ),
    /// The identities, names and grants of a room's participants (to mint migration tokens).
    Identities(String, oneshot::Sender<Vec<(String, String, Grants)>>),
    /// Ends every participant's session in a room (the room was deleted); replies how many.
    CloseRoom(String, oneshot::Sender<usize>),
    /// A snapshot of the node's state.
    Status(oneshot::Sender<core::Status>),
    /// Advertise another media address (the operator learnt the one clients can reach: a node
    /// port on the Kubernetes node's external IP, a load balancer's address). Peer connections
    /// built from then on put it in their host candidate; existing ones keep the address they
    /// were built with, which their clients already reach. A port of 0 or an unspecified IP
    /// stand for the bound socket's, as at start.
    Advertise(SocketAddr),
    /// Stop the loop.
    Shutdown,
}

/// A cheap handle on the media loop.
#[derive(Clone, Debug)]
pub struct MediaHandle {
    tx: mpsc::UnboundedSender<Command>,
    /// The advertised media address, as the loop last set it.
    advertised: watch::Receiver<SocketAddr>,
}

impl MediaHandle {
    /// The media address new peer connections advertise now. It changes with
    /// [`Command::Advertise`] once the loop has handled the command.
    pub fn media_addr(&self) -> SocketAddr {
        *self.advertised.borrow()
    }

    /// Sends a command; false if the loop has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.tx.send(command).is_ok()
    }

    /// Sends a command that replies, and waits for the reply.
    pub async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        if !self.send(make(tx)) {
            return None;
        }
        rx.await.ok()
    }
}
