//! What the controller tests share: a mock API server, a fake media node admin API, caches
//! filled by hand, and object builders.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use ruche_crds::{
    MediaFleet, MediaNode, MediaNodeSpec, MediaNodeStatus, NodeAddresses, NodeCapacity, NodeLoad,
    NodePhase, Room, RoomSpec, ZonePolicy,
};
use ruche_operator::controller::admin::{AdminError, AdminTarget, NodeAdmin, NodeReport};
use ruche_operator::controller::context::{Context, Settings, Stores};
use ruche_operator::metrics::Metrics;
use serde_json::{Value, json};

pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Records admin calls; fails them when told to.
#[derive(Default, Clone)]
pub struct FakeAdmin {
    pub calls: Arc<Mutex<Vec<String>>>,
    pub fail: Arc<Mutex<bool>>,
    pub report: Arc<Mutex<Option<NodeReport>>>,
}

impl FakeAdmin {
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
        rooms: &[(String, u32)],
    ) -> Result<(), AdminError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("assign {} {} {rooms:?}", target.url, target.token));
        if *self.fail.lock().unwrap() {
            return Err(AdminError::Unreachable {
                url: target.url.clone(),
                message: "connection refused".into(),
            });
        }
        Ok(())
    }

    async fn close_room(&self, target: &AdminTarget, room: &str) -> Result<(), AdminError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("close {} {room}", target.url));
        Ok(())
    }

    async fn report(&self, target: &AdminTarget) -> Result<NodeReport, AdminError> {
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
        self.record(format!(
            "drain {} {:?}",
            target.url,
            deadline.map(|d| d.as_secs() > 0)
        ))
    }

    async fn undrain(&self, target: &AdminTarget) -> Result<(), AdminError> {
        self.record(format!("undrain {}", target.url))
    }

    async fn advertise(&self, target: &AdminTarget, media: &str) -> Result<(), AdminError> {
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
            empty_timeout: Duration::from_secs(3600).into(),
        },
    );
    r.metadata.namespace = Some("ns".into());
    r.metadata.uid = Some(format!("{name}-uid"));
    r.metadata.generation = Some(1);
    r
}

/// A context over the given objects, with a mock API server behind its client.
pub fn context_with(
    fleets: Vec<MediaFleet>,
    nodes: Vec<MediaNode>,
    rooms: Vec<Room>,
    pods: Vec<Pod>,
    admin: FakeAdmin,
) -> (Arc<Context<FakeAdmin>>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "ns");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ruche-operator".into(),
            instance: None,
        },
    );
    let stores = Stores {
        fleets: store(fleets),
        nodes: store(nodes),
        rooms: store(rooms),
        pods: store(pods),
    };
    let ctx = Context::new(
        client,
        recorder,
        admin,
        stores,
        Settings::default(),
        Arc::new(Metrics::new()),
    );
    (Arc::new(ctx), handle)
}

/// A context with the `visio` fleet and the given nodes.
pub fn context(nodes: Vec<MediaNode>, admin: FakeAdmin) -> (Arc<Context<FakeAdmin>>, Handle) {
    context_with(vec![fleet()], nodes, vec![], vec![], admin)
}

/// Fails if the controller makes any request within a short while.
pub async fn expect_no_request(handle: &mut Handle) {
    if let Ok(Some((request, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected request {} {}", request.method(), request.uri());
    }
}

pub struct Seen {
    pub query: BTreeMap<String, String>,
    pub body: Value,
}

pub async fn expect(handle: &mut Handle, method: Method, path: &str, reply: Value) -> Seen {
    let (request, send) = tokio::time::timeout(Duration::from_secs(5), handle.next_request())
        .await
        .expect("a request in time")
        .expect("a request");
    let (parts, body) = request.into_parts();
    assert_eq!(
        (&parts.method, parts.uri.path()),
        (&method, path),
        "unexpected request"
    );
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
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(&reply).unwrap()))
        .unwrap();
    send.send_response(response);
    Seen { query, body }
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
