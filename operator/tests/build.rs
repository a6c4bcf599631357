//! The objects the operator writes for a fleet, built from the sample resources: their wiring,
//! and (through `make test`, which validates `out/rendered/` against Kubernetes' schemas) their
//! validity as Kubernetes objects.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{Pod, Service};
use ruche_crds::{ExposureMode, MediaFleet, MediaNode, MediaNodeSpec, NodeCapacity};
use ruche_operator::build::{BuildError, pod, secrets, service};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn fleet(mode: ExposureMode) -> MediaFleet {
    let text = std::fs::read_to_string(root().join("manifests/samples/mediafleet.yaml")).unwrap();
    let mut f: MediaFleet = serde_saphyr::from_str(&text).unwrap();
    f.metadata.namespace = Some("interieur".into());
    f.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
    f.spec.exposure.mode = mode;
    f.spec.exposure.host_port_base = Some(40_000);
    f
}

fn node(zone: &str) -> MediaNode {
    let mut n = MediaNode::new(
        "visio-fr-par-1-7k2x9",
        MediaNodeSpec {
            fleet: "visio".into(),
            zone: zone.into(),
            revision: "5d8f7c9b".into(),
            capacity: NodeCapacity { slots: 200 },
            drain: None,
        },
    );
    n.metadata.namespace = Some("interieur".into());
    n.metadata.uid = Some("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee".into());
    n
}

fn env_of(p: &Pod) -> Vec<(String, Option<String>)> {
    p.spec.as_ref().unwrap().containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

fn render(name: &str, object: &impl serde::Serialize) {
    let dir = root().join("out/rendered");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.yaml")),
        serde_saphyr::to_string(object).unwrap(),
    )
    .unwrap();
}

#[test]
fn the_pod_runs_the_media_node_in_its_zone_with_the_fleets_wiring() {
    let f = fleet(ExposureMode::NodePort);
    let n = node("fr-par-1");
    let p = pod::pod(&f, &n, pod::ExternalPort::Node(31_234)).unwrap();
    render("pod-nodeport", &p);
    assert_eq!(p.metadata.name.as_deref(), Some("visio-fr-par-1-7k2x9"));
    assert_eq!(p.metadata.namespace.as_deref(), Some("interieur"));
    let owner = &p.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("MediaNode", Some(true))
    );
    let spec = p.spec.as_ref().unwrap();
    let selector = spec.node_selector.as_ref().unwrap();
    assert_eq!(
        selector
            .get("topology.kubernetes.io/zone")
            .map(String::as_str),
        Some("fr-par-1")
    );
    assert_eq!(
        selector.get("ruche.dev/media").map(String::as_str),
        Some("true"),
        "the template's selector is kept"
    );
    let env = env_of(&p);
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(
        get("RUCHE_ADVERTISE").as_deref(),
        Some("$(RUCHE_HOST_IP):31234"),
        "advertised at the node's address and node port"
    );
    let host_ip = spec.containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .position(|e| e.name == "RUCHE_HOST_IP")
        .unwrap();
    let advertise = spec.containers[0]
        .env
        .as_ref()
        .unwrap()
        .iter()
        .position(|e| e.name == "RUCHE_ADVERTISE")
        .unwrap();
    assert!(
        host_ip < advertise,
        "$(RUCHE_HOST_IP) is defined before it is used"
    );
    assert_eq!(get("RUCHE_CAPACITY_SLOTS").as_deref(), Some("200"));
    assert_eq!(get("RUCHE_DRAIN_TIMEOUT_SECONDS").as_deref(), Some("7200"));
    assert_eq!(
        spec.termination_grace_period_seconds,
        Some(7230),
        "SIGTERM drains until the deadline, with a margin"
    );
    let c = &spec.containers[0];
    assert_eq!(
        c.image.as_deref(),
        Some("registry.example.gouv.fr/ruche/media-node:0.1.0")
    );
    let media = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("media"))
        .unwrap();
    assert_eq!(
        (
            media.container_port,
            media.protocol.as_deref(),
            media.host_port
        ),
        (7882, Some("UDP"), None)
    );
    assert!(spec.host_network.is_none(), "never host networking");
    let sc = c.security_context.as_ref().unwrap();
    assert_eq!(
        (
            sc.read_only_root_filesystem,
            sc.allow_privilege_escalation,
            sc.run_as_non_root
        ),
        (Some(true), Some(false), Some(true))
    );
    let volumes: Vec<_> = spec
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .map(|v| v.secret.as_ref().unwrap().secret_name.clone().unwrap())
        .collect();
    assert_eq!(volumes, vec!["visio-join-key", "visio-admin-token"]);
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
}

#[test]
fn host_port_exposure_maps_the_allocated_port_and_needs_no_service() {
    let f = fleet(ExposureMode::HostPort);
    let n = node("fr-par-2");
    let port = pod::host_port(&f, 3).unwrap();
    assert_eq!(port, 40_003);
    let p = pod::pod(&f, &n, pod::ExternalPort::Host(port)).unwrap();
    render("pod-hostport", &p);
    let c = &p.spec.as_ref().unwrap().containers[0];
    let media = c
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .find(|p| p.name.as_deref() == Some("media"))
        .unwrap();
    assert_eq!(media.host_port, Some(40_003));
    assert!(service::service(&f, &n, None).unwrap().is_none());
    let mut no_base = f.clone();
    no_base.spec.exposure.host_port_base = None;
    assert!(matches!(
        pod::host_port(&no_base, 0),
        Err(BuildError::HostPortRange { .. })
    ));
    no_base.spec.exposure.host_port_base = Some(65_530);
    assert!(
        matches!(
            pod::host_port(&no_base, 10),
            Err(BuildError::HostPortRange { .. })
        ),
        "no port past 65535"
    );
}

#[test]
fn node_port_and_load_balancer_services_select_the_nodes_pod() {
    for (mode, kind) in [
        (ExposureMode::NodePort, "NodePort"),
        (ExposureMode::LoadBalancer, "LoadBalancer"),
    ] {
        let f = fleet(mode);
        let s: Service = service::service(&f, &node("fr-par-1"), None)
            .unwrap()
            .unwrap();
        render(&format!("service-{}", kind.to_lowercase()), &s);
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some(kind));
        assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
        assert_eq!(
            spec.selector
                .as_ref()
                .unwrap()
                .get("ruche.dev/node")
                .map(String::as_str),
            Some("visio-fr-par-1-7k2x9")
        );
        let media = spec
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .find(|p| p.name.as_deref() == Some("media"))
            .unwrap();
        assert_eq!((media.port, media.protocol.as_deref()), (7882, Some("UDP")));
        assert_eq!(
            s.metadata.name.as_deref(),
            Some("visio-fr-par-1-7k2x9-media")
        );
    }
}

#[test]
fn a_cached_service_with_its_node_ports_needs_no_apply_until_it_differs() {
    let f = fleet(ExposureMode::NodePort);
    let desired = service::service(&f, &node("fr-par-1"), None)
        .unwrap()
        .unwrap();
    // As the API server returns it: node ports allocated, a cluster IP, more labels.
    let mut cached = desired.clone();
    let spec = cached.spec.as_mut().unwrap();
    spec.cluster_ip = Some("10.96.0.7".into());
    for (i, p) in spec.ports.as_mut().unwrap().iter_mut().enumerate() {
        p.node_port = Some(30_000 + i32::try_from(i).unwrap());
    }
    cached
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "ops".into());
    assert!(service::up_to_date(&cached, &desired));
    let mut no_node_port = cached.clone();
    no_node_port.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = None;
    assert!(
        !service::up_to_date(&no_node_port, &desired),
        "ports not allocated yet"
    );
    let load_balancer =
        service::service(&fleet(ExposureMode::LoadBalancer), &node("fr-par-1"), None)
            .unwrap()
            .unwrap();
    assert!(
        !service::up_to_date(&cached, &load_balancer),
        "the exposure changed"
    );
    let mut other_port = cached.clone();
    other_port.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 9999;
    assert!(!service::up_to_date(&other_port, &desired));
}

#[test]
fn secrets_are_random_and_owned_by_the_fleet() {
    let f = fleet(ExposureMode::NodePort);
    let a = secrets::random_text(64).unwrap();
    let b = secrets::random_text(64).unwrap();
    assert_ne!(a, b);
    assert_eq!(a.len(), 64);
    let key = secrets::join_key(&f, a.clone()).unwrap();
    render("secret-join-key", &key);
    assert_eq!(key.metadata.name.as_deref(), Some("visio-join-key"));
    assert_eq!(key.string_data.as_ref().unwrap().get("token-key"), Some(&a));
    assert_eq!(
        key.metadata.owner_references.as_ref().unwrap()[0].kind,
        "MediaFleet"
    );
    let admin = secrets::admin_token(&f, b).unwrap();
    render("secret-admin-token", &admin);
    assert_eq!(admin.metadata.name.as_deref(), Some("visio-admin-token"));
}

#[test]
fn a_node_in_a_zone_the_fleet_lacks_or_without_uid_is_refused_clearly() {
    let f = fleet(ExposureMode::NodePort);
    let err = pod::pod(&f, &node("fr-lyon-1"), pod::ExternalPort::Node(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "media node visio-fr-par-1-7k2x9 is in zone fr-lyon-1, which fleet visio does not have"
    );
    let mut no_uid = node("fr-par-1");
    no_uid.metadata.uid = None;
    let err = pod::pod(&f, &no_uid, pod::ExternalPort::Node(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "MediaNode visio-fr-par-1-7k2x9: metadata.uid is missing"
    );
}
