//! A media node's pod: `ruche-media-node` pinned to the node's zone, its media port exposed as
//! the fleet asks, the fleet's secrets mounted read-only, probes on the admin API, and a grace
//! period long enough for a SIGTERM drain to reach its deadline.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
    ObjectFieldSelector, Pod, PodSecurityContext, PodSpec, Probe, SeccompProfile,
    SecretVolumeSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use ruche_crds::{ExposureMode, MediaFleet, MediaNode};

use super::BuildError;
use super::labels;

/// Signaling port of the media container.
pub const SIGNALING_PORT: i32 = 7880;
/// Admin API port of the media container.
pub const ADMIN_PORT: i32 = 7881;
/// Where the join token key is mounted.
pub const KEY_DIR: &str = "/etc/ruche/join-key";
/// Where the admin token is mounted.
pub const ADMIN_DIR: &str = "/etc/ruche/admin-token";
/// Key of the join token key in its Secret.
pub const KEY_FILE: &str = "token-key";
/// Key, in the same Secret, of the previous join token key while a rotation lasts: nodes
/// accept tokens signed by either, and read both again when the Secret changes.
pub const PREVIOUS_KEY_FILE: &str = "previous-token-key";
/// Key of the admin token in its Secret.
pub const ADMIN_FILE: &str = "admin-token";
/// Seconds added to the drain deadline before the kubelet kills a draining pod.
pub const GRACE_MARGIN_SECONDS: i64 = 30;

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(ADMIN_PORT),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Default::default()
    }
}

/// The media port as seen from outside: the host port the operator allocated for this node
/// (HostPort mode), or the Service's node port (NodePort mode, known once the Service exists).
/// LoadBalancer mode advertises the balancer's address instead and needs no port here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExternalPort {
    /// A host port on the pod.
    Host(u16),
    /// The node port of the node's Service.
    Node(u16),
    /// The load balancer's address and port.
    Balancer(std::net::SocketAddr),
}

/// The pod of `node`, owned by it.
pub fn pod(
    fleet: &MediaFleet,
    node: &MediaNode,
    external: ExternalPort,
) -> Result<Pod, BuildError> {
    let fleet_name = fleet.name_any();
    let node_name = node.name_any();
    let spec = &node.spec;
    if !fleet.spec.zones.iter().any(|z| z.name == spec.zone) {
        return Err(BuildError::UnknownZone {
            node: node_name,
            zone: spec.zone.clone(),
            fleet: fleet_name,
        });
    }
    let owner = node.controller_owner_ref(&()).ok_or(BuildError::Missing {
        object: format!("MediaNode {node_name}"),
        field: "metadata.uid",
    })?;
    let template = &fleet.spec.template;
    let drain_seconds =
        i64::try_from(std::time::Duration::from(fleet.spec.rollout.drain_deadline).as_secs())
            .unwrap_or(i64::MAX / 2);

    let mut labels = template.labels.clone();
    // A new pod hosts no room: evictable until its first room (see `controller::node`).
    labels.insert(labels::BUSY.into(), "false".into());
    let mut annotations = template.annotations.clone();
    annotations.insert(labels::SAFE_TO_EVICT.into(), "true".into());
    labels.extend(labels::node(
        &fleet_name,
        &node_name,
        &spec.zone,
        &spec.revision,
    ));
    let mut node_selector = template.node_selector.clone();
    node_selector.insert(labels::TOPOLOGY_ZONE.into(), spec.zone.clone());

    let env_vars = environment(fleet, node, external, drain_seconds);
    let container = container(fleet, external, env_vars);
    Ok(Pod {
        metadata: ObjectMeta {
            name: Some(node_name.clone()),
            namespace: node.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            node_selector: Some(node_selector),
            tolerations: (!template.tolerations.is_empty()).then(|| template.tolerations.clone()),
            termination_grace_period_seconds: Some(
                drain_seconds.saturating_add(GRACE_MARGIN_SECONDS),
            ),
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(65_532),
                run_as_group: Some(65_532),
                fs_group: Some(65_532),
                seccomp_profile: Some(SeccompProfile {
                    type_: "RuntimeDefault".into(),
                    localhost_profile: None,
                }),
                ..Default::default()
            }),
            volumes: Some(volumes(&fleet_name)),
            ..Default::default()
        }),
        status: None,
    })
}

/// The media node container, hardened: non-root, read-only root, no capabilities.
fn container(fleet: &MediaFleet, external: ExternalPort, env_vars: Vec<EnvVar>) -> Container {
    let template = &fleet.spec.template;
    let exposure = &fleet.spec.exposure;
    let media_port = i32::from(exposure.media_port);
    let host_port = match (exposure.mode, external) {
        (ExposureMode::HostPort, ExternalPort::Host(p)) => Some(i32::from(p)),
        _ => None,
    };
    Container {
        name: "media-node".into(),
        image: Some(template.image.clone()),
        image_pull_policy: template.image_pull_policy.clone(),
        env: Some(env_vars),
        ports: Some(vec![
            ContainerPort {
                name: Some("media".into()),
                container_port: media_port,
                protocol: Some("UDP".into()),
                host_port,
                ..Default::default()
            },
            // The same number over TCP: ICE over TCP for clients whose network blocks UDP, and,
            // in HostPort mode, signaling too (the node tells the two apart by their first
            // bytes). One number per node, both protocols, is what a firewall opens.
            ContainerPort {
                name: Some("media-tcp".into()),
                container_port: media_port,
                protocol: Some("TCP".into()),
                host_port,
                ..Default::default()
            },
            ContainerPort {
                name: Some("signaling".into()),
                container_port: SIGNALING_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                protocol: Some("TCP".into()),
                ..Default::default()
            },
        ]),
        resources: template.resources.clone(),
        readiness_probe: Some(probe("/readyz", 2, 2)),
        liveness_probe: Some(probe("/livez", 5, 6)),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "join-key".into(),
                mount_path: KEY_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
            VolumeMount {
                name: "admin-token".into(),
                mount_path: ADMIN_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container's environment: how the media node finds its ports, keys and address.
fn environment(
    fleet: &MediaFleet,
    node: &MediaNode,
    external: ExternalPort,
    drain_seconds: i64,
) -> Vec<EnvVar> {
    let media_port = i32::from(fleet.spec.exposure.media_port);
    let spec = &node.spec;
    let template = &fleet.spec.template;
    let advertise = match external {
        ExternalPort::Host(p) | ExternalPort::Node(p) => format!("$(RUCHE_HOST_IP):{p}"),
        ExternalPort::Balancer(addr) => addr.to_string(),
    };
    let mut env_vars = vec![
        field_env("RUCHE_HOST_IP", "status.hostIP"),
        field_env("RUCHE_POD_IP", "status.podIP"),
        env("RUCHE_MEDIA_BIND", format!("0.0.0.0:{media_port}")),
        env("RUCHE_ADVERTISE", advertise),
        env("RUCHE_HTTP_BIND", format!("0.0.0.0:{SIGNALING_PORT}")),
        env("RUCHE_ADMIN_BIND", format!("0.0.0.0:{ADMIN_PORT}")),
        env("RUCHE_TOKEN_KEY_FILE", format!("{KEY_DIR}/{KEY_FILE}")),
        env(
            "RUCHE_PREVIOUS_TOKEN_KEY_FILE",
            format!("{KEY_DIR}/{PREVIOUS_KEY_FILE}"),
        ),
        env(
            "RUCHE_ADMIN_TOKEN_FILE",
            format!("{ADMIN_DIR}/{ADMIN_FILE}"),
        ),
        env("RUCHE_CAPACITY_SLOTS", spec.capacity.slots.to_string()),
        env("RUCHE_DRAIN_TIMEOUT_SECONDS", drain_seconds.to_string()),
    ];
    // The user's variables come last so they can tune what the node does (not override the
    // wiring above: a duplicate name is refused by the API server, which reports it).
    env_vars.extend(template.env.iter().cloned());

    env_vars
}

/// The fleet's secrets, mounted read-only. The join key Secret is mounted whole, so that a
/// previous key added for a rotation appears beside the current one (a listed entry missing
/// from the Secret would fail the mount).
fn volumes(fleet_name: &str) -> Vec<Volume> {
    let secret = |name: String, items: Option<Vec<KeyToPath>>| SecretVolumeSource {
        secret_name: Some(name),
        items,
        default_mode: Some(0o440),
        optional: Some(false),
    };
    vec![
        Volume {
            name: "join-key".into(),
            secret: Some(secret(labels::join_key_secret(fleet_name), None)),
            ..Default::default()
        },
        Volume {
            name: "admin-token".into(),
            secret: Some(secret(
                labels::admin_token_secret(fleet_name),
                Some(vec![KeyToPath {
                    key: ADMIN_FILE.into(),
                    path: ADMIN_FILE.into(),
                    mode: None,
                }]),
            )),
            ..Default::default()
        },
    ]
}

/// The host port of node number `index` of a fleet in HostPort mode.
pub fn host_port(fleet: &MediaFleet, index: u32) -> Result<u16, BuildError> {
    let base = fleet.spec.exposure.host_port_base.unwrap_or(0);
    let error = || BuildError::HostPortRange {
        fleet: fleet.name_any(),
        index,
        base,
    };
    if base == 0 {
        return Err(error());
    }
    u16::try_from(u32::from(base) + index).map_err(|_| error())
}

/// The labels a node's pod is selected by.
pub fn selector(node: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(labels::NODE.to_string(), node.to_string())])
}
