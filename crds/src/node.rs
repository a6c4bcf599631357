//! `MediaNode`: one SFU pod of a fleet, with its load and drain state.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DrainMode, NodeCapacity};

/// One media node (SFU process) of a fleet, pinned to a zone.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ruche.dev",
    version = "v1alpha1",
    kind = "MediaNode",
    plural = "medianodes",
    singular = "medianode",
    namespaced,
    doc = "One media node (SFU pod) of a fleet, pinned to a zone",
    status = "MediaNodeStatus",
    shortname = "mnode",
    shortname = "mn",
    category = "ruche",
    cel,
    printcolumn(name = "Fleet", type_ = "string", json_path = ".spec.fleet"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".spec.zone"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Rooms", type_ = "integer", json_path = ".status.load.rooms"),
    printcolumn(
        name = "Participants",
        type_ = "integer",
        json_path = ".status.load.participants"
    ),
    printcolumn(
        name = "Used",
        type_ = "integer",
        json_path = ".status.load.usedSlots",
        description = "Slots reserved or in use"
    ),
    printcolumn(name = "Slots", type_ = "integer", json_path = ".spec.capacity.slots"),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".spec.revision",
        priority = 1
    ),
    printcolumn(
        name = "Address",
        type_ = "string",
        json_path = ".status.addresses.media",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeSpec {
    /// Fleet the node belongs to.
    #[x_kube(validation = Rule::new("self == oldSelf").message("fleet is immutable: create a new MediaNode instead"))]
    #[schemars(length(min = 1, max = 253))]
    pub fleet: String,

    /// Availability zone the node runs in.
    #[x_kube(validation = Rule::new("self == oldSelf").message("zone is immutable: a node cannot move between zones"))]
    #[schemars(length(min = 1, max = 63))]
    pub zone: String,

    /// Revision of the fleet template this node runs.
    #[schemars(length(min = 1, max = 63))]
    pub revision: String,

    /// Participant slots this node offers.
    pub capacity: NodeCapacity,

    /// Set to drain the node: it takes no new room, and its rooms end or move.
    /// Remove it to put the node back in service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainRequest>,
}

/// A request to drain a node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainRequest {
    /// When rooms still live must be dealt with; unset means no deadline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,

    /// What happens to rooms still live at the deadline.
    #[serde(default)]
    pub mode: DrainMode,

    /// Why the node drains (e.g. `Rollout`, `ScaleDown`, `Manual`, `ZoneEvacuation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub reason: Option<String>,
}

/// Lifecycle phase of a media node.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    JsonSchema,
)]
pub enum NodePhase {
    /// Created; no pod yet.
    #[default]
    Pending,
    /// Pod running, not yet answering as ready.
    Starting,
    /// Taking rooms.
    Ready,
    /// Taking no new rooms; existing rooms go on until they end or the deadline.
    Draining,
    /// Drained: no rooms left; the pod can go.
    Drained,
    /// Stopped answering or crashed; its rooms are placed again.
    Failed,
}

impl NodePhase {
    /// All phases, in lifecycle order.
    pub const ALL: [Self; 6] = [
        Self::Pending,
        Self::Starting,
        Self::Ready,
        Self::Draining,
        Self::Drained,
        Self::Failed,
    ];

    /// The phase as spelled in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Starting => "Starting",
            Self::Ready => "Ready",
            Self::Draining => "Draining",
            Self::Drained => "Drained",
            Self::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for NodePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Observed state of a media node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle phase.
    #[serde(default)]
    pub phase: NodePhase,

    /// Name of the node's pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,

    /// Where clients reach the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addresses: Option<NodeAddresses>,

    /// Load as last reported, with the operator's reservations.
    #[serde(default)]
    pub load: NodeLoad,

    /// Last time the node answered the operator's health poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,

    /// When the current drain began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_started_at: Option<Time>,

    /// `Ready`, `Draining`, `Healthy`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// The type of a media node's condition, and the reasons the operator gives it.
pub mod condition {
    /// Whether the node serves rooms, and why not.
    pub const READY: &str = "Ready";
    /// Reason: the operator cannot reach the node's admin API, though its pod reports ready.
    /// The node keeps its rooms and takes no new one.
    pub const UNREACHABLE: &str = "Unreachable";
    /// Reason: the API server refused the node's pod (Pod Security, quota, a bad template).
    pub const POD_REFUSED: &str = "PodRefused";
    /// Reason: the node as written cannot be served (say, no index label for its host port).
    pub const INVALID: &str = "Invalid";
    /// Whether the node drains, why, until when, and how it goes (`Migrating`,
    /// `MigrationBlocked`, `DeadlinePassed`; False with `Drained` once empty).
    pub const DRAINING: &str = "Draining";
}

impl MediaNodeStatus {
    /// The reason of the `Ready` condition when it is not True.
    pub fn not_ready_reason(&self) -> Option<&str> {
        self.conditions
            .iter()
            .find(|c| c.type_ == condition::READY && c.status != "True")
            .map(|c| c.reason.as_str())
    }

    /// Whether the operator cannot reach the node (it then takes no new room).
    pub fn unreachable(&self) -> bool {
        self.not_ready_reason() == Some(condition::UNREACHABLE)
    }
}

/// Addresses of a media node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeAddresses {
    /// Signaling endpoint browsers connect to (`wss://…` or `http://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signaling: Option<String>,
    /// Advertised media address, `host:port` (UDP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    /// Admin API the operator polls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<String>,
}

/// Load of a media node.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeLoad {
    /// Live rooms.
    #[serde(default)]
    pub rooms: u32,
    /// Connected participants.
    #[serde(default)]
    pub participants: u32,
    /// Slots reserved by the rooms placed here.
    #[serde(default)]
    pub reserved_slots: u32,
    /// Slots counted as used: the higher of reserved and measured.
    #[serde(default)]
    pub used_slots: u32,
    /// Media received, bits per second.
    #[serde(default)]
    pub bitrate_in_bps: u64,
    /// Media sent, bits per second.
    #[serde(default)]
    pub bitrate_out_bps: u64,
}
