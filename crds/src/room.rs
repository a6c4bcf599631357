//! `Room`: one meeting, placed on one media node in one zone.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One meeting. The operator places it on a media node and publishes its endpoint.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ruche.dev",
    version = "v1alpha1",
    kind = "Room",
    plural = "rooms",
    singular = "room",
    namespaced,
    doc = "One meeting, placed on one media node in one zone",
    status = "RoomStatus",
    shortname = "rm",
    category = "ruche",
    cel,
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Zone", type_ = "string", json_path = ".status.zone"),
    printcolumn(name = "Node", type_ = "string", json_path = ".status.node"),
    printcolumn(
        name = "Participants",
        type_ = "integer",
        json_path = ".status.participants"
    ),
    printcolumn(name = "Slots", type_ = "integer", json_path = ".spec.slots"),
    printcolumn(
        name = "Starts",
        type_ = "date",
        json_path = ".spec.startTime",
        priority = 1
    ),
    printcolumn(
        name = "Tenant",
        type_ = "string",
        json_path = ".spec.tenant",
        priority = 1
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RoomSpec {
    /// Name of the `MediaFleet` (same namespace) that hosts the room.
    #[x_kube(validation = Rule::new("self == oldSelf").message("fleet is immutable: create a new Room instead"))]
    #[schemars(length(min = 1, max = 253))]
    pub fleet: String,

    /// Expected participants: the slots reserved for the room when it is placed.
    #[x_kube(validation = Rule::new("self >= 1").message("slots must be at least 1: a room reserves one slot per expected participant"))]
    #[schemars(range(max = 100_000))]
    pub slots: u32,

    /// Zones the room may and would rather use.
    #[serde(default)]
    pub zones: ZonePolicy,

    /// Tenant (ministry or department) the room belongs to, for quotas and reporting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub tenant: Option<String>,

    /// Kind of media the room carries.
    #[serde(default)]
    pub profile: MediaProfile,

    /// When the meeting starts, for a room booked ahead: its slots are held from the fleet's
    /// `bookings.leadTime` before, and the autoscaler grows the fleet for it in time. Unset:
    /// the room is placed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,

    /// A room with no participant for this long is closed.
    #[serde(default = "default_empty_timeout")]
    #[x_kube(validation = Rule::new(crate::common::DURATION_RULE).message("emptyTimeout must be a duration such as 5m or 1h, at most 87600h"))]
    #[schemars(length(max = 32))]
    #[serde(deserialize_with = "crate::duration::saturating")]
    pub empty_timeout: Duration,
}

fn default_empty_timeout() -> Duration {
    std::time::Duration::from_secs(300).into()
}

/// Zone constraints of a room.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.allowed) == 0 || self.preferred.all(z, z in self.allowed)").message("every preferred zone must also be in allowed: a room cannot prefer a zone it does not allow"))]
pub struct ZonePolicy {
    /// Zones the room may be placed in; empty means any zone of the fleet.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63)))]
    pub allowed: Vec<String>,

    /// Zones tried first, in no particular order; the others allowed come after.
    #[serde(default)]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63)))]
    pub preferred: Vec<String>,
}

/// What media a room carries; the media node applies matching limits.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum MediaProfile {
    /// Audio only (and chat).
    AudioOnly,
    /// Audio and camera video, simulcast.
    #[default]
    Video,
    /// Few speakers, many listeners.
    Webinar,
}

/// Lifecycle phase of a room.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum RoomPhase {
    /// Not placed yet (waiting for capacity, or unschedulable: see conditions).
    #[default]
    Pending,
    /// Placed on a node; no participant yet.
    Scheduled,
    /// Participants connected.
    Active,
    /// Being moved to another node; participants are reconnecting.
    Migrating,
    /// Ended; its slots are released.
    Closed,
}

impl RoomPhase {
    /// All phases, in lifecycle order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Scheduled,
        Self::Active,
        Self::Migrating,
        Self::Closed,
    ];

    /// The phase as spelled in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Scheduled => "Scheduled",
            Self::Active => "Active",
            Self::Migrating => "Migrating",
            Self::Closed => "Closed",
        }
    }
}

/// Observed state of a room.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RoomStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle phase.
    #[serde(default)]
    pub phase: RoomPhase,

    /// `MediaNode` hosting the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,

    /// Zone of that node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,

    /// Signaling endpoint participants connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// Connected participants.
    #[serde(default)]
    pub participants: u32,

    /// When the room was placed on its current node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<Time>,

    /// `Scheduled` (with the reason when it cannot be placed), `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}
