//! What the caches keep of each object: what the operator reads, no more. A reflector keeps
//! every object it watches for as long as it exists; at twenty thousand rooms and a thousand
//! media pods, managed fields, client annotations and pod specs are most of the memory.
//! Applied to every watch event before it reaches a cache.

use k8s_openapi::api::core::v1::{
    Node, NodeSpec, NodeStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use kube::Resource;

/// The annotation `kubectl apply` keeps a whole copy of the object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the metadata the operator never reads: managed fields and `kubectl apply`'s copy.
pub fn metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Keeps of a media pod what the node controller reads: identity, owner, labels, deletion,
/// the Kubernetes node it runs on, its phase, addresses and readiness.
pub fn pod(pod: &mut Pod) {
    metadata(pod);
    pod.metadata.annotations = None;
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = Some(PodSpec {
        node_name,
        ..PodSpec::default()
    });
    if let Some(status) = pod.status.take() {
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.type_ == "Ready")
            .map(|c| PodCondition {
                type_: c.type_,
                status: c.status,
                ..PodCondition::default()
            })
            .collect::<Vec<_>>();
        pod.status = Some(PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            host_ip: status.host_ip,
            reason: status.reason,
            message: status.message,
            conditions: (!ready.is_empty()).then_some(ready),
            ..PodStatus::default()
        });
    }
}

/// Keeps of a Kubernetes node what says whether it is being taken away (its cordon and
/// taints) and its addresses: a node's status is mostly images and conditions.
pub fn host(node: &mut Node) {
    metadata(node);
    node.metadata.annotations = None;
    node.metadata.labels = None;
    node.spec = node.spec.take().map(|s| NodeSpec {
        unschedulable: s.unschedulable,
        taints: s.taints,
        ..NodeSpec::default()
    });
    node.status = node.status.take().map(|s| NodeStatus {
        addresses: s.addresses,
        ..NodeStatus::default()
    });
}

/// Whether a Kubernetes node is being taken away, and by whom, as the core reads it.
pub fn host_leaving(node: &Node) -> Option<crate::core::host::Leaving> {
    let spec = node.spec.as_ref();
    crate::core::host::leaving(
        spec.and_then(|s| s.unschedulable).unwrap_or(false),
        spec.and_then(|s| s.taints.as_ref())
            .into_iter()
            .flatten()
            .map(|t| t.key.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Container;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
    use std::collections::BTreeMap;

    #[test]
    fn a_trimmed_pod_keeps_what_the_node_controller_reads() {
        let mut p = Pod::default();
        p.metadata.name = Some("visio-a-0".into());
        p.metadata.labels = Some(BTreeMap::from([(
            "ruche.dev/node".into(),
            "visio-a-0".into(),
        )]));
        p.metadata.managed_fields = Some(vec![ManagedFieldsEntry::default()]);
        p.metadata.annotations = Some(BTreeMap::from([(LAST_APPLIED.into(), "{…}".into())]));
        p.spec = Some(PodSpec {
            node_name: Some("worker-1".into()),
            containers: vec![Container {
                name: "media".into(),
                image: Some("media-node:1".into()),
                ..Container::default()
            }],
            ..PodSpec::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some("10.0.0.7".into()),
            host_ip: Some("192.0.2.1".into()),
            conditions: Some(vec![
                PodCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    message: Some("long".into()),
                    ..PodCondition::default()
                },
                PodCondition {
                    type_: "PodScheduled".into(),
                    status: "True".into(),
                    ..PodCondition::default()
                },
            ]),
            ..PodStatus::default()
        });
        pod(&mut p);
        assert_eq!(p.metadata.managed_fields, None);
        assert_eq!(p.metadata.annotations, None);
        assert!(p.metadata.labels.is_some());
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some("worker-1"));
        assert!(spec.containers.is_empty());
        let status = p.status.unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.7"));
        let conditions = status.conditions.unwrap_or_default();
        assert_eq!(conditions.len(), 1);
        assert_eq!(
            (conditions[0].type_.as_str(), conditions[0].status.as_str()),
            ("Ready", "True")
        );
    }
}
