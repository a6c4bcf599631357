//! What the controller tests share: a mock API server, a fake media node admin API, caches
//! filled by hand, and object builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use kube::client::Body;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use ruche_crds::admin::{Accepted, AssignmentList, ListVersion};
use ruche_crds::{
    ExposureMode, MediaFleet, MediaNode, MediaNodeSpec, MediaNodeStatus, NodeAddresses,
    NodeCapacity, NodeLoad, NodePhase, Room, RoomPhase, RoomSpec, RoomStatus, ZonePolicy, ZoneSpec,
};
use ruche_operator::build::node::INDEX;
use ruche_operator::controller::admin::{
    AdminError, AdminTarget, NodeAdmin, NodeReport, NodeStatusReport,
};
use ruche_operator::controller::context::{Context, Parts, Settings, Stores, Triggers};
use ruche_operator::controller::events::Events;
use ruche_operator::metrics::Metrics;
use serde_json::{Value, json};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Records admin calls; fails them when told to.
#[derive(Default, Clone)]
pub struct FakeAdmin {
    pub calls: Arc<Mutex<Vec<String>>>,
    pub fail: Arc<Mutex<bool>>,
    pub report: Arc<Mutex<Option<NodeReport>>>,
    /// The bearer token of every call, in order.
    pub tokens: Arc<Mutex<Vec<String>>>,
    /// The version of every assignment list sent, in order.
    pub versions: Arc<Mutex<Vec<ListVersion>>>,
}

impl FakeAdmin {
    /// The calls made so far.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The assignment lists sent so far, as recorded calls.
    pub fn assigns(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with("assign "))
            .collect()
    }

    /// Waits until `n` assignment lists have been sent (agents push in the background).
    pub async fn wait_assigns(&self, n: usize) -> Vec<String> {
        for _ in 0..200 {
            if self.assigns().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.assigns()
    }

    fn record(&self, call: String) -> Result<(), AdminError> {
        self.calls.lock().unwrap().push(call);
        if *self.fail.lock().unwrap() {
            return Err(AdminError::Unreachable {
                url: "fake".into(),
                message: "connection refused".into(),
            });
        }
        Ok(())
    }
}

impl NodeAdmin for FakeAdmin {
    async fn assign(
        &self,
        target: &AdminTarget,
        list: &AssignmentList,
    ) -> Result<Accepted, AdminError> {
        self.tokens.lock().unwrap().push(target.token.clone());
        let rooms: Vec<(String, u32)> = list
            .rooms
            .iter()
            .map(|a| (a.room.clone(), a.slots))
            .collect();
        self.calls
            .lock()
            .unwrap()
            .push(format!("assign {} {} {rooms:?}", target.url, target.token));
        self.versions.lock().unwrap().push(list.version);
        if *self.fail.lock().unwrap() {
            return Err(AdminError::Unreachable {
                url: target.url.clone(),
                message: "connection refused".into(),
            });
        }
        Ok(Accepted {
            version: list.version,
            assigned: list.rooms.len(),
            ended: Vec::new(),
        })
    }

    async fn report(&self, target: &AdminTarget) -> Result<NodeReport, AdminError> {
        self.tokens.lock().unwrap().push(target.token.clone());
        self.record(format!("report {}", target.url))?;
        self.report
            .lock()
            .unwrap()
            .clone()
            .ok_or(AdminError::Unreachable {
                url: target.url.clone(),
                message: "no report".into(),
            })
    }

    async fn drain(
        &self,
        target: &AdminTarget,
        deadline: Option<Duration>,
    ) -> Result<(), AdminError> {
        self.tokens.lock().unwrap().push(target.token.clone());
        self.record(format!(
            "drain {} {:?}",
            target.url,
            deadline.map(|d| d.as_secs() > 0)
        ))
    }

    async fn migrate(
        &self,
        target: &AdminTarget,
        room: &str,
        endpoint: &str,
    ) -> Result<u32, AdminError> {
        self.tokens.lock().unwrap().push(target.token.clone());
        self.record(format!("migrate {} {room} {endpoint}", target.url))
            .map(|()| 0)
    }

    async fn undrain(&self, target: &AdminTarget) -> Result<(), AdminError> {
        self.tokens.lock().unwrap().push(target.token.clone());
        self.record(format!("undrain {}", target.url))
    }

    async fn advertise(&self, target: &AdminTarget, media: &str) -> Result<(), AdminError> {
        self.tokens.lock().unwrap().push(target.token.clone());
        self.record(format!("advertise {} {media}", target.url))
    }
}

pub fn store<K: Resource + Clone + 'static>(objects: Vec<K>) -> Store<K>
where
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    reader
}

pub fn fleet() -> MediaFleet {
    let text = "apiVersion: ruche.dev/v1alpha1\nkind: MediaFleet\nmetadata: {name: visio, namespace: ns, uid: f-uid, generation: 1}\nspec:\n  template: {image: x}\n  capacity: {slots: 100}\n  zones:\n    - {name: a, maxNodes: 5}\n";
    serde_saphyr::from_str(text).unwrap()
}

pub fn node(name: &str, ip: &str, phase: NodePhase) -> MediaNode {
    let mut n = MediaNode::new(
        name,
        MediaNodeSpec {
            fleet: "visio".into(),
            zone: "a".into(),
            revision: "r1".into(),
            capacity: NodeCapacity { slots: 100 },
            drain: None,
        },
    );
    n.metadata.namespace = Some("ns".into());
    n.status = Some(MediaNodeStatus {
        phase,
        addresses: Some(NodeAddresses {
            signaling: Some(format!("ws://{ip}:7880/ws")),
            media: Some(format!("{ip}:7882")),
            admin: Some(format!("http://{ip}:7881")),
        }),
        load: NodeLoad::default(),
        ..Default::default()
    });
    n
}

pub fn room(name: &str, slots: u32) -> Room {
    let mut r = Room::new(
        name,
        RoomSpec {
            fleet: "visio".into(),
            slots,
            zones: ZonePolicy::default(),
            tenant: None,
            profile: ruche_crds::room::MediaProfile::default(),
            start_time: None,
            empty_timeout: Duration::from_secs(3600).into(),
        },
    );
    r.metadata.namespace = Some("ns".into());
    r.metadata.uid = Some(format!("{name}-uid"));
    r.metadata.generation = Some(1);
    r
}

/// Tunables for tests: polls so rare that no agent polls during a test (reconciles are driven
/// by hand), short timeouts.
pub fn test_settings() -> Settings {
    Settings {
        poll_interval: Duration::from_secs(3600),
        assign_timeout: Duration::from_secs(2),
        ..Settings::default()
    }
}

/// A context over the given objects, with a mock API server behind its client.
pub fn context_with(
    fleets: Vec<MediaFleet>,
    nodes: Vec<MediaNode>,
    rooms: Vec<Room>,
    pods: Vec<Pod>,
    admin: FakeAdmin,
) -> (Arc<Context<FakeAdmin>>, Handle) {
    context_with_settings(fleets, nodes, rooms, pods, admin, test_settings())
}

/// [`context_with`], with the given tunables (short health timeouts, say).
pub fn context_with_settings<A: NodeAdmin>(
    fleets: Vec<MediaFleet>,
    nodes: Vec<MediaNode>,
    rooms: Vec<Room>,
    pods: Vec<Pod>,
    admin: A,
    settings: Settings,
) -> (Arc<Context<A>>, Handle) {
    context_with_services(fleets, nodes, rooms, pods, Vec::new(), admin, settings)
}

/// [`context_with_settings`], with Services in the cache.
pub fn context_with_services<A: NodeAdmin>(
    fleets: Vec<MediaFleet>,
    nodes: Vec<MediaNode>,
    rooms: Vec<Room>,
    pods: Vec<Pod>,
    services: Vec<k8s_openapi::api::core::v1::Service>,
    admin: A,
    settings: Settings,
) -> (Arc<Context<A>>, Handle) {
    let objects = Objects {
        fleets,
        nodes,
        rooms,
        pods,
        services,
        hosts: Vec::new(),
    };
    context_of(objects, admin, settings)
}

/// Everything a test context's caches hold.
#[derive(Default)]
pub struct Objects {
    pub fleets: Vec<MediaFleet>,
    pub nodes: Vec<MediaNode>,
    pub rooms: Vec<Room>,
    pub pods: Vec<Pod>,
    pub services: Vec<k8s_openapi::api::core::v1::Service>,
    pub hosts: Vec<k8s_openapi::api::core::v1::Node>,
}

/// A context over `objects`, with a mock API server behind its client.
pub fn context_of<A: NodeAdmin>(
    objects: Objects,
    admin: A,
    settings: Settings,
) -> (Arc<Context<A>>, Handle) {
    let Objects {
        fleets,
        nodes,
        rooms,
        pods,
        services,
        hosts,
    } = objects;
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "ns");
    // Fixture nodes (revision "r1") run their fleet's current template: no rollout unless a
    // test gives a node another revision.
    let nodes: Vec<MediaNode> = nodes
        .into_iter()
        .map(|mut n| {
            if n.spec.revision == "r1"
                && let Some(f) = fleets
                    .iter()
                    .find(|f| f.metadata.name.as_deref() == Some(n.spec.fleet.as_str()))
            {
                n.spec.revision = ruche_operator::build::node::revision(f);
            }
            n
        })
        .collect();
    let stores = Stores {
        fleets: store(fleets),
        nodes: store(nodes),
        rooms: store(rooms),
        pods: store(pods),
        services: store(services),
        hosts: store(hosts),
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        admin,
        Parts {
            events: Events::new(client, "ruche-operator", "test"),
            stores: stores.clone(),
            settings,
            metrics: Arc::new(Metrics::new()),
            triggers: Triggers::none(),
            epoch: 1,
        },
    ));
    // What the watches would have folded in, and the agents of nodes with an admin address.
    {
        let mut registry = ctx.registry();
        registry.replace_fleets(stores.fleets.state());
        registry.replace_nodes(stores.nodes.state());
        registry.replace_rooms(stores.rooms.state());
    }
    for node in stores.nodes.state() {
        ctx.agents.track(&ctx, &node);
    }
    (ctx, handle)
}

/// A context with the `visio` fleet and the given nodes.
pub fn context(nodes: Vec<MediaNode>, admin: FakeAdmin) -> (Arc<Context<FakeAdmin>>, Handle) {
    context_with(vec![fleet()], nodes, vec![], vec![], admin)
}

/// Answers every request for the fleet's admin token Secret, forever, in the background (for
/// tests where only the media nodes' admin API is of interest).
pub fn serve_tokens(mut handle: Handle) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let path = request.uri().path().to_string();
            if request.method() == Method::GET && path.ends_with("/secrets/visio-admin-token") {
                answer(send, StatusCode::OK, &secret_reply());
            } else {
                panic!("unexpected request {} {path}", request.method());
            }
        }
    })
}

/// Fails if the controller makes any request within a short while.
pub async fn expect_no_request(handle: &mut Handle) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

/// A request the mock API server received.
pub struct Seen {
    /// Its path.
    pub path: String,
    /// Its query parameters.
    pub query: BTreeMap<String, String>,
    /// Its `content-type` header.
    pub content_type: Option<String>,
    /// Its body (`null` when empty).
    pub body: Value,
}

type Reply = tower_test::mock::SendResponse<Response<Body>>;

/// The next request, read whole, and where to answer it.
async fn receive(handle: &mut Handle) -> (Method, Seen, Reply) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request in time")
        .expect("a request");
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    let query = parts
        .uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            kv.split_once('=')
                .map_or((kv.to_string(), String::new()), |(k, v)| {
                    (k.to_string(), v.to_string())
                })
        })
        .collect();
    let content_type = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    let seen = Seen {
        path: parts.uri.path().to_string(),
        query,
        content_type,
        body,
    };
    (parts.method, seen, send)
}

fn answer(send: Reply, status: StatusCode, reply: &Value) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(reply).unwrap()))
        .unwrap();
    send.send_response(response);
}

/// Answers requests for the fleet's admin token Secret (agents read it when they first need
/// it, in the background) until the next other request, which must be `method path`, and is
/// answered with 200 and `reply`.
pub async fn expect_after_token(
    handle: &mut Handle,
    method: Method,
    path: &str,
    reply: Value,
) -> Seen {
    loop {
        let (got, seen, send) = receive(handle).await;
        if got == Method::GET && seen.path == "/api/v1/namespaces/ns/secrets/visio-admin-token" {
            answer(send, StatusCode::OK, &secret_reply());
            continue;
        }
        assert_eq!(
            (&got, seen.path.as_str()),
            (&method, path),
            "unexpected request"
        );
        answer(send, StatusCode::OK, &reply);
        return seen;
    }
}

/// Checks that the next request is `method path`, and answers it with 200 and `reply`.
pub async fn expect(handle: &mut Handle, method: Method, path: &str, reply: Value) -> Seen {
    expect_status(handle, method, path, StatusCode::OK, reply).await
}

/// Checks that the next request is `method path`, and answers it with the object it sent, as
/// the API server does for a creation.
pub async fn expect_echo(handle: &mut Handle, method: Method, path: &str) -> Seen {
    let (got, seen, send) = receive(handle).await;
    assert_eq!(
        (&got, seen.path.as_str()),
        (&method, path),
        "unexpected request"
    );
    answer(send, StatusCode::OK, &seen.body);
    seen
}

/// Checks that the next request is `method path`, and answers it with `status` and `reply`.
pub async fn expect_status(
    handle: &mut Handle,
    method: Method,
    path: &str,
    status: StatusCode,
    reply: Value,
) -> Seen {
    let (got, seen, send) = receive(handle).await;
    assert_eq!(
        (&got, seen.path.as_str()),
        (&method, path),
        "unexpected request"
    );
    answer(send, status, &reply);
    seen
}

/// Checks that the next request is `method path`, and answers it 404 Not Found, as the API
/// server does for a missing object.
pub async fn expect_not_found(handle: &mut Handle, method: Method, path: &str) -> Seen {
    let name = path.rsplit('/').next().unwrap_or_default();
    expect_status(
        handle,
        method,
        path,
        StatusCode::NOT_FOUND,
        status_reply(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("\"{name}\" not found"),
        ),
    )
    .await
}

/// A Kubernetes `Status` body of a failed call.
pub fn status_reply(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "reason": reason,
        "code": code.as_u16(),
        "message": message,
    })
}

/// Checks that the next request records an event in namespace `ns`: a POST of a new one, or
/// the PATCH with which the recorder counts a repeat of one it already wrote (same object,
/// type, action and reason; the note is not compared). Returns the event written.
pub async fn expect_event(handle: &mut Handle) -> Seen {
    let (method, seen, send) = receive(handle).await;
    let events = "/apis/events.k8s.io/v1/namespaces/ns/events";
    let ok = match method {
        Method::POST => seen.path == events,
        Method::PATCH => seen
            .path
            .strip_prefix(events)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|name| !name.is_empty() && !name.contains('/')),
        _ => false,
    };
    assert!(
        ok,
        "expected an event, got {method} {} {}",
        seen.path, seen.body
    );
    answer(send, StatusCode::OK, &event_reply());
    seen
}

pub fn event_reply() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"}, "eventTime": "2026-11-23T07:00:00.000000Z"})
}

pub fn room_reply(name: &str) -> Value {
    serde_json::to_value(room(name, 1)).unwrap()
}

pub fn secret_reply() -> Value {
    use std::io::Write;
    let mut b64 = Vec::new();
    // "admin-secret-token" in base64, as the API server returns Secret data.
    write!(b64, "YWRtaW4tc2VjcmV0LXRva2Vu").unwrap();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "visio-admin-token", "namespace": "ns"}, "data": {"admin-token": String::from_utf8(b64).unwrap()}})
}

/// A found Secret of the fleet, as the API server returns it.
pub fn secret_named(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "ns"}, "data": {"x": "eA=="}})
}

/// The `visio` fleet with these zones: name, minNodes, maxNodes.
pub fn fleet_with_zones(zones: &[(&str, u32, u32)]) -> MediaFleet {
    let mut f = fleet();
    f.spec.zones = zones
        .iter()
        .map(|(name, min, max)| ZoneSpec {
            name: (*name).to_string(),
            min_nodes: *min,
            max_nodes: *max,
            evacuate: false,
        })
        .collect();
    f
}

/// The `visio` fleet exposing media through host ports from 30000.
pub fn host_port_fleet() -> MediaFleet {
    let mut f = fleet();
    f.spec.exposure.mode = ExposureMode::HostPort;
    f.spec.exposure.host_port_base = Some(30000);
    f
}

/// A node of the `visio` fleet as the fleet creates it: index label, uid, generation; no status.
pub fn fleet_node(name: &str, zone: &str, index: u32) -> MediaNode {
    let mut n = MediaNode::new(
        name,
        MediaNodeSpec {
            fleet: "visio".into(),
            zone: zone.into(),
            revision: "r1".into(),
            capacity: NodeCapacity { slots: 100 },
            drain: None,
        },
    );
    n.metadata.namespace = Some("ns".into());
    n.metadata.uid = Some(format!("{name}-uid"));
    n.metadata.generation = Some(1);
    n.metadata.labels = Some(BTreeMap::from([(INDEX.to_string(), index.to_string())]));
    n
}

/// [`fleet_node`] in a phase.
pub fn node_in(name: &str, zone: &str, index: u32, phase: NodePhase) -> MediaNode {
    let mut n = fleet_node(name, zone, index);
    n.status = Some(MediaNodeStatus {
        phase,
        ..Default::default()
    });
    n
}

/// A drain request, as the fleet or a person writes it.
pub fn drain_request(reason: &str) -> ruche_crds::DrainRequest {
    ruche_crds::DrainRequest {
        deadline: Some(Time(
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_hours(1))
                .unwrap(),
        )),
        mode: ruche_crds::DrainMode::Migrate,
        reason: Some(reason.into()),
    }
}

/// A room of the `visio` fleet placed on `node`.
pub fn placed_room(name: &str, slots: u32, node: &str, zone: &str) -> Room {
    let mut r = room(name, slots);
    r.status = Some(RoomStatus {
        phase: RoomPhase::Active,
        node: Some(node.into()),
        zone: Some(zone.into()),
        ..Default::default()
    });
    r
}

/// A media node's pod in a phase (`Pending`, `Running`...), with its pod and host IP.
pub fn media_pod(name: &str, phase: &str, ip: Option<&str>) -> Pod {
    let mut p = Pod::default();
    p.metadata.name = Some(name.into());
    p.metadata.namespace = Some("ns".into());
    // Hosting no room yet, as built.
    p.metadata.labels = Some(BTreeMap::from([
        ("ruche.dev/node".to_string(), name.to_string()),
        ("ruche.dev/busy".to_string(), "false".to_string()),
    ]));
    // Owned by the node of that name, as `fleet_node` builds it.
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "ruche.dev/v1alpha1".into(),
        kind: "MediaNode".into(),
        name: name.into(),
        uid: format!("{name}-uid"),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    p.status = Some(PodStatus {
        phase: Some(phase.into()),
        pod_ip: ip.map(String::from),
        host_ip: ip.map(String::from),
        ..Default::default()
    });
    p
}

/// Marks a pod Ready, as its kubelet does when its readiness probe passes.
pub fn set_pod_ready(pod: &mut Pod) {
    if let Some(status) = pod.status.as_mut() {
        status.conditions = Some(vec![k8s_openapi::api::core::v1::PodCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]);
    }
}

/// What a node's admin API says: its phase, the media address it advertises, its load.
pub fn node_report(phase: &str, advertise: &str) -> NodeReport {
    NodeReport {
        status: NodeStatusReport {
            phase: phase.into(),
            capacity_slots: 100,
            advertise: Some(advertise.into()),
            ..Default::default()
        },
        rooms: Vec::new(),
    }
}

/// The `Ready` condition as the node controller writes it.
pub fn ready_condition(status: bool, reason: &str, message: &str) -> Condition {
    Condition {
        type_: "Ready".into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: Some(1),
        last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
    }
}

/// The status of a Ready node (of generation 1) whose pod runs at `ip`, exposed on host port
/// `port`, with no load: what the node controller writes and then finds unchanged.
pub fn ready_status(name: &str, ip: &str, port: u16) -> MediaNodeStatus {
    MediaNodeStatus {
        observed_generation: Some(1),
        phase: NodePhase::Ready,
        pod: Some(name.into()),
        addresses: Some(NodeAddresses {
            signaling: Some(format!("ws://{ip}:{port}/ws")),
            media: Some(format!("{ip}:{port}")),
            admin: Some(format!("http://{ip}:7881")),
        }),
        load: NodeLoad::default(),
        conditions: vec![ready_condition(true, "Ready", "taking rooms")],
        ..Default::default()
    }
}

/// Whatever object the API server returns, serialized.
pub fn reply<T: serde::Serialize>(object: &T) -> Value {
    serde_json::to_value(object).unwrap()
}

/// Checks a status write is a forced server-side apply by the operator's field manager,
/// through the status subresource, naming its apiVersion and kind as apply requires.
pub fn assert_status_apply(seen: &Seen, kind: &str) {
    assert_eq!(
        seen.query.get("fieldManager").map(String::as_str),
        Some("ruche-operator")
    );
    assert_eq!(seen.query.get("force").map(String::as_str), Some("true"));
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(seen.body["apiVersion"], "ruche.dev/v1alpha1");
    assert_eq!(
        seen.body["kind"], kind,
        "server-side apply needs apiVersion and kind"
    );
}
