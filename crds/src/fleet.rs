//! `MediaFleet`: a pool of media nodes spread over availability zones.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::Duration;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::{DrainMode, NodeCapacity, PlacementStrategy};
use crate::node::NodePhase;

/// A pool of media nodes (SFUs) over one or more availability zones.
///
/// The operator keeps each zone's node count within its bounds, places rooms on the fleet's
/// nodes, and rolls out template changes without cutting live meetings.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ruche.dev",
    version = "v1alpha1",
    kind = "MediaFleet",
    plural = "mediafleets",
    singular = "mediafleet",
    namespaced,
    doc = "A pool of media nodes (SFUs) spread over availability zones",
    status = "MediaFleetStatus",
    shortname = "mfleet",
    shortname = "mf",
    category = "ruche",
    cel,
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("a fleet's name must start with a lowercase letter and hold only lowercase letters, digits and '-': its media nodes' Services are named after it"),
    validation = Rule::new("self.spec.zones.all(z, size(self.metadata.name) + size(z.name) <= 50)").message("the fleet's name and each zone's name must be at most 50 characters together: media nodes are named <fleet>-<zone>-<index> and their Services <node>-media, which Kubernetes caps at 63"),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Nodes",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Media nodes in the fleet"
    ),
    printcolumn(
        name = "Ready",
        type_ = "integer",
        json_path = ".status.readyReplicas",
        description = "Media nodes Ready to take rooms"
    ),
    printcolumn(
        name = "Slots",
        type_ = "integer",
        json_path = ".status.slots",
        description = "Participant slots on Ready nodes"
    ),
    printcolumn(
        name = "Used",
        type_ = "integer",
        json_path = ".status.usedSlots",
        description = "Participant slots reserved or in use"
    ),
    printcolumn(
        name = "Strategy",
        type_ = "string",
        json_path = ".spec.placement.strategy",
        priority = 1
    ),
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.updateRevision",
        priority = 1
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Available\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.replicas) || self.replicas >= self.zones.map(z, z.minNodes).sum()").message("replicas is below the sum of the zones' minNodes: raise replicas or lower a zone's minNodes"))]
#[x_kube(validation = Rule::new("!has(self.replicas) || self.replicas <= self.zones.map(z, z.maxNodes).sum()").message("replicas is above the sum of the zones' maxNodes: lower replicas or raise a zone's maxNodes"))]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || !string(self.autoscaling.bufferSlots).matches('^[0-9]{1,10}$') || self.zones.all(z, int(string(self.autoscaling.bufferSlots)) <= z.maxNodes * self.capacity.slots)").message("autoscaling.bufferSlots is more than a zone can ever hold (maxNodes × capacity.slots): lower the buffer or raise the zone's maxNodes"))]
#[x_kube(validation = Rule::new("!has(self.autoscaling) || !has(self.autoscaling.schedules) || self.autoscaling.schedules.all(w, !string(w.bufferSlots).matches('^[0-9]{1,10}$') || self.zones.all(z, int(string(w.bufferSlots)) <= z.maxNodes * self.capacity.slots))").message("a schedule window's bufferSlots is more than a zone can ever hold (maxNodes × capacity.slots): lower the buffer or raise the zone's maxNodes"))]
pub struct MediaFleetSpec {
    /// Desired number of media nodes over all zones, spread evenly and clamped to each
    /// zone's bounds. `kubectl scale` sets it. Unset: each zone runs its `minNodes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,

    /// What each media node pod runs.
    pub template: MediaNodeTemplate,

    /// Participant slots per media node.
    pub capacity: NodeCapacity,

    /// The availability zones the fleet spans, each with its node bounds.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message("zones must list at least one zone"))]
    #[schemars(length(max = 16))]
    pub zones: Vec<ZoneSpec>,

    /// How rooms are spread over nodes.
    #[serde(default)]
    pub placement: PlacementSpec,

    /// Keeping a buffer of free slots per zone, following the working day. When set, the
    /// autoscaler owns `spec.replicas` (it writes its own total there, as the scale
    /// subresource shows); unset, `spec.replicas` and the zones' bounds size the fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// How rooms booked ahead (`Room.spec.startTime`) are served.
    #[serde(default)]
    pub bookings: BookingSpec,

    /// How a template change reaches the nodes without cutting live rooms.
    #[serde(default)]
    pub rollout: RolloutSpec,

    /// How clients reach each node's media UDP port (never host networking).
    #[serde(default)]
    pub exposure: ExposureSpec,
}

/// How a node's single media UDP port is reached from outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'HostPort' || (has(self.hostPortBase) && self.hostPortBase >= 1024)").message("HostPort exposure needs hostPortBase (1024 or more): the operator gives node n the port hostPortBase + n"))]
pub struct ExposureSpec {
    /// `NodePort`: a Service per node, advertised at the node's address and node port.
    /// `LoadBalancer`: a Service per node, advertised at its load balancer address.
    /// `HostPort`: the pod's port mapped on its Kubernetes node, at a port the operator
    /// allocates.
    #[serde(default)]
    pub mode: ExposureMode,

    /// The UDP port the media container listens on.
    #[serde(default = "default_media_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub media_port: u16,

    /// First host port handed out in `HostPort` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 65000))]
    pub host_port_base: Option<u16>,

    /// Which address of the Kubernetes node to advertise in `NodePort` and `HostPort` modes.
    #[serde(default)]
    pub address_type: NodeAddressType,
}

impl Default for ExposureSpec {
    fn default() -> Self {
        Self {
            mode: ExposureMode::default(),
            media_port: default_media_port(),
            host_port_base: None,
            address_type: NodeAddressType::default(),
        }
    }
}

fn default_media_port() -> u16 {
    7882
}

/// Exposure modes of the media port.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum ExposureMode {
    /// A NodePort Service per node.
    #[default]
    NodePort,
    /// A LoadBalancer Service per node.
    LoadBalancer,
    /// A host port on the pod, allocated by the operator.
    HostPort,
}

/// Which address of a Kubernetes node clients can reach.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum NodeAddressType {
    /// The node's `ExternalIP` (falls back to `InternalIP` when it has none).
    #[default]
    ExternalIP,
    /// The node's `InternalIP` (clients on the same network).
    InternalIP,
}

/// The pod-level settings of the fleet's media nodes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaNodeTemplate {
    /// Container image running `ruche-media-node`.
    #[schemars(length(min = 1))]
    pub image: String,

    /// Image pull policy (`Always`, `IfNotPresent`, `Never`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,

    /// CPU and memory for the media container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra environment variables for the media container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Kubernetes node labels the media pods must land on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations for dedicated media nodes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Labels added to every media pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,

    /// Annotations added to every media pod.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// One availability zone of the fleet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minNodes <= self.maxNodes").message("minNodes must not exceed maxNodes in a zone"))]
pub struct ZoneSpec {
    /// Zone name, matching the `topology.kubernetes.io/zone` label of the Kubernetes nodes.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("zone name must be lowercase letters, digits or '-', starting and ending with a letter or digit"))]
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// Fewest media nodes this zone runs, even when idle.
    #[serde(default)]
    pub min_nodes: u32,

    /// Most media nodes this zone may run.
    #[schemars(range(max = 10000))]
    pub max_nodes: u32,

    /// Take the zone out of service: every node drains (with the rollout's deadline and mode),
    /// rooms move to the other zones their rules allow, and rooms that may live nowhere else
    /// stay and are named in the fleet's `ZoneEvacuated` condition. Set back to false to end
    /// the evacuation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuate: bool,
}

/// Placement settings.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlacementSpec {
    /// `Packed` fills nodes so empty ones can go; `Distributed` spreads rooms over nodes.
    #[serde(default)]
    pub strategy: PlacementStrategy,
}

/// Autoscaling: a buffer of free slots per zone, with scheduled windows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Free slots each zone keeps on its Ready nodes for new rooms: a count (`400`) or a
    /// share of the slots the zone's rooms use (`"20%"`).
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]+%?$')").message("bufferSlots must be a non-negative number of slots or a percentage such as \"20%\""))]
    // CEL costs an int-or-string as a string: unbounded, its rule would exceed the budget.
    #[schemars(extend("maxLength" = 10))]
    pub buffer_slots: IntOrString,

    /// How long capacity must be surplus before the fleet shrinks (by draining nodes).
    #[serde(default = "default_scale_down_delay")]
    #[x_kube(validation = Rule::new(crate::common::DURATION_RULE).message("scaleDownDelay must be a duration such as 10m or 1h30m, at most 87600h"))]
    #[schemars(length(max = 32))]
    #[serde(deserialize_with = "crate::duration::saturating")]
    pub scale_down_delay: Duration,

    /// Time windows with a different buffer, such as weekday mornings. Where windows
    /// overlap, the largest buffer holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub schedules: Vec<ScheduleWindow>,

    /// Keep enough free slots in the other zones to take every room of any one zone that
    /// fails as a whole (the zones then grow beyond their buffers as needed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub zone_failure_reserve: bool,
}

/// How rooms booked ahead are served.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingSpec {
    /// How long before a booked room starts its slots are held on a node, and counted by the
    /// autoscaler as demand: at least the time a new node takes to become Ready.
    #[serde(default = "default_lead_time")]
    #[x_kube(validation = Rule::new(crate::common::DURATION_RULE).message("leadTime must be a duration such as 5m or 90s, at most 87600h"))]
    #[schemars(length(max = 32))]
    #[serde(deserialize_with = "crate::duration::saturating")]
    pub lead_time: Duration,

    /// How far ahead a booking is planned; a room that starts later waits, with a `Booking`
    /// condition saying so, until it comes within the horizon.
    #[serde(default = "default_horizon")]
    #[x_kube(validation = Rule::new(crate::common::DURATION_RULE).message("horizon must be a duration such as 720h, at most 87600h"))]
    #[schemars(length(max = 32))]
    #[serde(deserialize_with = "crate::duration::saturating")]
    pub horizon: Duration,
}

impl Default for BookingSpec {
    fn default() -> Self {
        Self {
            lead_time: default_lead_time(),
            horizon: default_horizon(),
        }
    }
}

fn default_lead_time() -> Duration {
    std::time::Duration::from_secs(300).into()
}

fn default_horizon() -> Duration {
    std::time::Duration::from_secs(60 * 24 * 3600).into()
}

fn default_scale_down_delay() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// A recurring window in which the buffer differs, e.g. weekday mornings in Europe/Paris.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.start < self.end").message("a schedule window must end after it starts, on the same day: split a window past midnight in two (22:00-24:00 and 00:00-06:00)"))]
pub struct ScheduleWindow {
    /// Name of the window, unique in the fleet.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,

    /// Days the window applies; empty means every day.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 7))]
    pub days: Vec<Weekday>,

    /// Local start time, `HH:MM`.
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):[0-5][0-9]$')").message("start must be a local time HH:MM such as 07:30"))]
    #[schemars(length(max = 5))]
    pub start: String,

    /// Local end time, `HH:MM` (`24:00` for midnight), after `start`.
    #[x_kube(validation = Rule::new("self.matches('^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$')").message("end must be a local time HH:MM such as 10:00 (24:00 for midnight)"))]
    #[schemars(length(max = 5))]
    pub end: String,

    /// IANA time zone of `start` and `end`, such as `Europe/Paris`: the window follows its
    /// daylight-saving changes. A zone the operator does not know stops autoscaling (the fleet
    /// keeps its size) with an `Autoscaling` condition naming it.
    #[serde(default = "default_time_zone")]
    #[schemars(length(max = 64))]
    pub time_zone: String,

    /// Free slots per zone during the window: a count or a percentage.
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]+%?$')").message("bufferSlots must be a non-negative number of slots or a percentage such as \"20%\""))]
    #[schemars(extend("maxLength" = 10))]
    pub buffer_slots: IntOrString,
}

fn default_time_zone() -> String {
    "Europe/Paris".into()
}

/// Day of the week.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[allow(missing_docs)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

/// How new revisions replace old nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])").message("maxSurge and maxUnavailable cannot both be 0: the rollout could never start"))]
pub struct RolloutSpec {
    /// Extra nodes per zone that may run during a rollout: a count or a percentage.
    #[serde(default = "default_max_surge")]
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]+%?$')").message("maxSurge must be a non-negative count or a percentage such as \"25%\""))]
    #[schemars(extend("maxLength" = 10))]
    pub max_surge: IntOrString,

    /// Nodes per zone that may be unavailable (draining) at once: a count or a percentage.
    #[serde(default = "default_max_unavailable")]
    #[x_kube(validation = Rule::new("string(self).matches('^[0-9]+%?$')").message("maxUnavailable must be a non-negative count or a percentage such as \"10%\""))]
    #[schemars(extend("maxLength" = 10))]
    pub max_unavailable: IntOrString,

    /// How long an old node may keep its live rooms once it drains.
    #[serde(default = "default_drain_deadline")]
    #[x_kube(validation = Rule::new(crate::common::DURATION_RULE).message("drainDeadline must be a duration such as 30m, 2h or 1h30m, at most 87600h"))]
    #[schemars(length(max = 32))]
    #[serde(deserialize_with = "crate::duration::saturating")]
    pub drain_deadline: Duration,

    /// What to do with rooms still live at the deadline.
    #[serde(default)]
    pub at_deadline: DrainMode,

    /// How long a node of the new revision may take to become Ready before the rollout halts
    /// (old nodes stop draining and take the new rooms again; the fleet says Degraded).
    #[serde(default = "default_progress_deadline")]
    #[x_kube(validation = Rule::new(crate::common::DURATION_RULE).message("progressDeadline must be a duration such as 10m or 90s, at most 87600h"))]
    #[schemars(length(max = 32))]
    #[serde(deserialize_with = "crate::duration::saturating")]
    pub progress_deadline: Duration,

    /// Halts the rollout when the new revision serves worse than the old one: more failed
    /// joins, more loss or a longer round trip than the old revision's by these margins, once
    /// each revision has seen `minJoins` joins. Unset: no quality gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_gate: Option<QualityGate>,
}

/// How much worse than the old revision a new one may serve before its rollout halts.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QualityGate {
    /// Joins each revision must have seen before they are compared.
    #[serde(default = "default_min_joins")]
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_joins: u32,
    /// Extra share of failed joins allowed, in percentage points.
    #[serde(default = "default_join_failure_points")]
    #[schemars(range(max = 100))]
    pub join_failure_points: u32,
    /// Extra packet loss allowed, in percentage points.
    #[serde(default = "default_loss_points")]
    #[schemars(range(max = 100))]
    pub loss_points: u32,
    /// Extra round-trip time allowed, in milliseconds.
    #[serde(default = "default_rtt_ms")]
    #[schemars(range(max = 60_000))]
    pub rtt_ms: u32,
}

fn default_min_joins() -> u32 {
    20
}

fn default_join_failure_points() -> u32 {
    5
}

fn default_loss_points() -> u32 {
    2
}

fn default_rtt_ms() -> u32 {
    50
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_surge: default_max_surge(),
            max_unavailable: default_max_unavailable(),
            drain_deadline: default_drain_deadline(),
            at_deadline: DrainMode::default(),
            progress_deadline: default_progress_deadline(),
            quality_gate: None,
        }
    }
}

fn default_max_surge() -> IntOrString {
    IntOrString::String("25%".into())
}

fn default_max_unavailable() -> IntOrString {
    IntOrString::Int(0)
}

fn default_drain_deadline() -> Duration {
    std::time::Duration::from_secs(2 * 3600).into()
}

fn default_progress_deadline() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// Observed state of a fleet.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MediaFleetStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Media nodes in the fleet, in any phase.
    #[serde(default)]
    pub replicas: u32,

    /// Media nodes Ready and not draining.
    #[serde(default)]
    pub ready_replicas: u32,

    /// Label selector of the fleet's media node pods (for the scale subresource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Participant slots on Ready nodes.
    #[serde(default)]
    pub slots: u32,

    /// Slots reserved by rooms or in use, whichever is higher, summed over Ready nodes.
    #[serde(default)]
    pub used_slots: u32,

    /// Node counts by phase.
    #[serde(default)]
    pub phases: PhaseCounts,

    /// Per-zone capacity and use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub zones: Vec<ZoneStatus>,

    /// Revision new nodes get (a hash of the template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,

    /// Nodes per revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["revision".into()]))]
    pub revisions: Vec<RevisionStatus>,

    /// Progress of the current rollout, while one runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,

    /// `Available`, `Progressing`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// Count of nodes in each phase.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct PhaseCounts {
    #[serde(default)]
    pub pending: u32,
    #[serde(default)]
    pub starting: u32,
    #[serde(default)]
    pub ready: u32,
    #[serde(default)]
    pub draining: u32,
    #[serde(default)]
    pub drained: u32,
    #[serde(default)]
    pub failed: u32,
}

impl PhaseCounts {
    /// Counts one more node in `phase`.
    pub fn add(&mut self, phase: NodePhase) {
        let slot = match phase {
            NodePhase::Pending => &mut self.pending,
            NodePhase::Starting => &mut self.starting,
            NodePhase::Ready => &mut self.ready,
            NodePhase::Draining => &mut self.draining,
            NodePhase::Drained => &mut self.drained,
            NodePhase::Failed => &mut self.failed,
        };
        *slot += 1;
    }
}

/// Capacity and use of one zone.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ZoneStatus {
    /// Zone name.
    pub name: String,
    /// Media nodes in the zone, any phase.
    #[serde(default)]
    pub nodes: u32,
    /// Nodes Ready and not draining.
    #[serde(default)]
    pub ready_nodes: u32,
    /// Participant slots on Ready nodes.
    #[serde(default)]
    pub slots: u32,
    /// Slots reserved or in use on Ready nodes.
    #[serde(default)]
    pub used_slots: u32,
    /// Live rooms in the zone.
    #[serde(default)]
    pub rooms: u32,
    /// Nodes the zone should run: the autoscaler's count, or `spec.replicas` spread over the
    /// zones.
    #[serde(default)]
    pub desired_nodes: u32,
    /// Free slots the autoscaler keeps in the zone now (its buffer, or a schedule window's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_slots: Option<u32>,
    /// Slots of rooms booked to start within the lead time, or waiting for capacity, that the
    /// autoscaler counts in the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booked_slots: Option<u32>,
    /// Since when the zone has had a node more than it needs; it shrinks by one node once
    /// this is older than the scale-down delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surplus_since: Option<Time>,
    /// When the autoscaler last shrank the zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_down_time: Option<Time>,
}

/// Nodes running one revision of the template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    /// Template revision.
    pub revision: String,
    /// Nodes on it.
    #[serde(default)]
    pub nodes: u32,
    /// Of which Ready.
    #[serde(default)]
    pub ready_nodes: u32,
}

/// Where a rollout stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// Revision being rolled out.
    pub revision: String,
    /// When it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    /// Nodes already on the new revision and Ready.
    #[serde(default)]
    pub updated_nodes: u32,
    /// Old nodes draining.
    #[serde(default)]
    pub draining_nodes: u32,
    /// Old nodes still to replace.
    #[serde(default)]
    pub remaining_nodes: u32,
    /// Why the rollout halted, if it did: old nodes stop draining and take the new rooms
    /// again until a changed template starts a new rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halted: Option<RolloutHalt>,
}

/// Why a rollout halted.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutHalt {
    /// `NodeFailed` or `ProgressDeadlineExceeded`.
    pub reason: String,
    /// What happened, naming the node.
    pub message: String,
    /// When it halted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}
