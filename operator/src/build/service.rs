//! A media node's Service: its media port (UDP, and TCP for ICE over TCP, on one number) and
//! signaling reachable from outside, for the NodePort and LoadBalancer exposures. `externalTrafficPolicy: Local` keeps clients' addresses
//! and avoids a second hop: the advertised node is the one running the pod.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use ruche_crds::{ExposureMode, MediaFleet, MediaNode};

use super::pod::{SIGNALING_PORT, selector};
use super::{BuildError, labels};

/// The node's Service, or `None` when the fleet exposes media through host ports.
///
/// `media_node_port` is the node port the API server gave the UDP media port, once known: the
/// TCP media port asks for the same number (a Service may hold one node port for both
/// protocols), because clients are told one media address for both transports.
pub fn service(
    fleet: &MediaFleet,
    node: &MediaNode,
    media_node_port: Option<u16>,
) -> Result<Option<Service>, BuildError> {
    let kind = match fleet.spec.exposure.mode {
        ExposureMode::HostPort => return Ok(None),
        ExposureMode::NodePort => "NodePort",
        ExposureMode::LoadBalancer => "LoadBalancer",
    };
    let node_name = node.name_any();
    let owner = node.controller_owner_ref(&()).ok_or(BuildError::Missing {
        object: format!("MediaNode {node_name}"),
        field: "metadata.uid",
    })?;
    let media_port = i32::from(fleet.spec.exposure.media_port);
    Ok(Some(Service {
        metadata: ObjectMeta {
            name: Some(labels::service_name(&node_name)),
            namespace: node.namespace(),
            labels: Some(labels::node(
                &fleet.name_any(),
                &node_name,
                &node.spec.zone,
                &node.spec.revision,
            )),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(kind.into()),
            selector: Some(selector(&node_name)),
            external_traffic_policy: Some("Local".into()),
            ports: Some(vec![
                ServicePort {
                    name: Some("media".into()),
                    protocol: Some("UDP".into()),
                    port: media_port,
                    target_port: Some(IntOrString::Int(media_port)),
                    node_port: media_node_port.map(i32::from),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("media-tcp".into()),
                    protocol: Some("TCP".into()),
                    port: media_port,
                    target_port: Some(IntOrString::Int(media_port)),
                    node_port: media_node_port.map(i32::from),
                    ..Default::default()
                },
                ServicePort {
                    name: Some("signaling".into()),
                    protocol: Some("TCP".into()),
                    port: SIGNALING_PORT,
                    target_port: Some(IntOrString::Int(SIGNALING_PORT)),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        }),
        status: None,
    }))
}

/// Whether a Service the cache holds already is `desired`, as far as the operator decides it:
/// type, selector, traffic policy, ports (with their node ports allocated), labels and owner.
/// Then there is nothing to apply: a node's reconcile costs no API request for its Service.
pub fn up_to_date(cached: &Service, desired: &Service) -> bool {
    let (Some(have), Some(want)) = (cached.spec.as_ref(), desired.spec.as_ref()) else {
        return false;
    };
    let ports_match = match (have.ports.as_deref(), want.ports.as_deref()) {
        (Some(have), Some(want)) => {
            have.len() == want.len()
                && want.iter().all(|w| {
                    have.iter().any(|h| {
                        h.name == w.name
                            && h.protocol == w.protocol
                            && h.port == w.port
                            && h.target_port == w.target_port
                            && h.node_port.is_some()
                            && (w.node_port.is_none() || h.node_port == w.node_port)
                    })
                })
        }
        _ => false,
    };
    let labels_match = desired
        .labels()
        .iter()
        .all(|(k, v)| cached.labels().get(k) == Some(v));
    let owner_match = desired.owner_references().iter().all(|o| {
        cached
            .owner_references()
            .iter()
            .any(|c| c.uid == o.uid && c.controller == o.controller)
    });
    have.type_ == want.type_
        && have.selector == want.selector
        && have.external_traffic_policy == want.external_traffic_policy
        && ports_match
        && labels_match
        && owner_match
}
