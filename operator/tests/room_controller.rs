//! The room controller against a mock API server: the requests each reconcile makes, in
//! order, and what it tells the media nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, Resource};
use ruche_crds::node::{NodeAddresses, NodeLoad};
use ruche_crds::{
    MediaFleet, MediaNode, MediaNodeSpec, MediaNodeStatus, NodeCapacity, NodePhase, Room, RoomSpec,
    ZonePolicy,
};
use ruche_operator::controller::admin::{AdminError, AdminTarget, NodeAdmin};
use ruche_operator::controller::context::Context;
use ruche_operator::controller::room;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Records admin calls; fails them when told to.
#[derive(Default, Clone)]
struct FakeAdmin {
    calls: Arc<Mutex<Vec<String>>>,
    fail: Arc<Mutex<bool>>,
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
}

fn store<K: Resource + Clone + 'static>(objects: Vec<K>) -> Store<K>
where
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::Apply(o));
    }
    reader
}

fn fleet() -> MediaFleet {
    let text = "apiVersion: ruche.dev/v1alpha1\nkind: MediaFleet\nmetadata: {name: visio, namespace: ns, uid: f-uid, generation: 1}\nspec:\n  template: {image: x}\n  capacity: {slots: 100}\n  zones:\n    - {name: a, maxNodes: 5}\n";
    serde_saphyr::from_str(text).unwrap()
}

fn node(name: &str, ip: &str, phase: NodePhase) -> MediaNode {
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

fn room(name: &str, slots: u32) -> Room {
    let mut r = Room::new(
        name,
        RoomSpec {
            fleet: "visio".into(),
            slots,
            zones: ZonePolicy::default(),
            tenant: None,
            profile: ruche_crds::room::MediaProfile::default(),
            empty_timeout: Duration::from_secs(300).into(),
        },
    );
    r.metadata.namespace = Some("ns".into());
    r.metadata.uid = Some(format!("{name}-uid"));
    r.metadata.generation = Some(1);
    r
}

fn context(nodes: Vec<MediaNode>, admin: FakeAdmin) -> (Arc<Context<FakeAdmin>>, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(svc, "ns");
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "ruche-operator".into(),
            instance: None,
        },
    );
    let ctx = Context::new(
        client,
        recorder,
        admin,
        store(vec![fleet()]),
        store(nodes),
        store(Vec::<Room>::new()),
    );
    (Arc::new(ctx), handle)
}

struct Seen {
    query: BTreeMap<String, String>,
    body: Value,
}

async fn expect(handle: &mut Handle, method: Method, path: &str, reply: Value) -> Seen {
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

fn event_reply() -> Value {
    json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "ns"}, "eventTime": "2026-11-23T07:00:00.000000Z"})
}

fn room_reply(name: &str) -> Value {
    serde_json::to_value(room(name, 1)).unwrap()
}

fn secret_reply() -> Value {
    use std::io::Write;
    let mut b64 = Vec::new();
    // "admin-secret-token" in base64, as the API server returns Secret data.
    write!(b64, "YWRtaW4tc2VjcmV0LXRva2Vu").unwrap();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "visio-admin-token", "namespace": "ns"}, "data": {"admin-token": String::from_utf8(b64).unwrap()}})
}

#[tokio::test]
async fn a_new_room_is_placed_its_node_told_then_its_status_written_with_an_event() {
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context(
        vec![
            node("a1", "10.0.0.1", NodePhase::Ready),
            node("a2", "10.0.0.2", NodePhase::Starting),
        ],
        admin.clone(),
    );
    let r = room("weekly", 12);
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let r = r.clone();
        async move { room::apply(&r, &ctx).await }
    });
    expect(
        &mut api,
        Method::GET,
        "/api/v1/namespaces/ns/secrets/visio-admin-token",
        secret_reply(),
    )
    .await;
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/weekly/status",
        room_reply("weekly"),
    )
    .await;
    assert_eq!(
        status.query.get("fieldManager").map(String::as_str),
        Some("ruche-operator")
    );
    assert_eq!(status.query.get("force").map(String::as_str), Some("true"));
    let s = &status.body["status"];
    assert_eq!(
        (s["node"].as_str(), s["zone"].as_str(), s["phase"].as_str()),
        (Some("a1"), Some("a"), Some("Scheduled")),
        "{s}"
    );
    assert_eq!(s["endpoint"], "ws://10.0.0.1:7880/ws");
    assert_eq!(s["conditions"][0]["type"], "Scheduled");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert!(s["scheduledAt"].is_string());
    assert_eq!(
        status.body["kind"], "Room",
        "server-side apply needs apiVersion and kind"
    );
    let event = expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events",
        event_reply(),
    )
    .await;
    assert_eq!(event.body["reason"], "Scheduled");
    assert_eq!(event.body["note"], "placed on media node a1 in zone a");
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(room::RESYNC));
    assert_eq!(
        *admin.calls.lock().unwrap(),
        vec![r#"assign http://10.0.0.1:7881 admin-secret-token [("weekly", 12)]"#.to_string()],
        "the node learns of the room before its status is written"
    );
    // Reconciling again changes nothing on the node and does not place twice.
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let mut again = r.clone();
        again.status = Some(serde_json::from_value(s.clone()).unwrap());
        async move { room::apply(&again, &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/weekly/status",
        room_reply("weekly"),
    )
    .await;
    assert_eq!(status.body["status"]["node"], "a1");
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(room::RESYNC));
    assert_eq!(
        admin.calls.lock().unwrap().len(),
        1,
        "no second assignment push, no event"
    );
}

#[tokio::test]
async fn an_unschedulable_room_says_why_and_is_retried() {
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context(
        vec![node("a1", "10.0.0.1", NodePhase::Starting)],
        admin.clone(),
    );
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&room("big", 40), &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/big/status",
        room_reply("big"),
    )
    .await;
    let s = &status.body["status"];
    assert_eq!(s["phase"], "Pending");
    assert_eq!(s["conditions"][0]["status"], "False");
    assert_eq!(s["conditions"][0]["reason"], "NoReadyNode");
    assert_eq!(
        s["conditions"][0]["message"],
        "no node can take 40 slots: a: no Ready node (1 starting, 0 draining, 0 failed)"
    );
    let event = expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events",
        event_reply(),
    )
    .await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(room::RETRY_UNSCHEDULABLE)
    );
    assert!(admin.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unreachable_node_releases_the_placement_and_fails_the_reconcile() {
    let admin = FakeAdmin::default();
    *admin.fail.lock().unwrap() = true;
    let (ctx, mut api) = context(
        vec![node("a1", "10.0.0.1", NodePhase::Ready)],
        admin.clone(),
    );
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&room("r1", 90), &ctx).await }
    });
    expect(
        &mut api,
        Method::GET,
        "/api/v1/namespaces/ns/secrets/visio-admin-token",
        secret_reply(),
    )
    .await;
    let result = task.await.unwrap();
    assert!(
        matches!(result, Err(ruche_operator::controller::Error::Admin(_))),
        "{result:?}"
    );
    // No status was written, and the 90 slots are free again for the retry.
    let fleet = fleet();
    assert!(ctx.placements().assignments(&fleet, "a1").is_empty());
    *admin.fail.lock().unwrap() = false;
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&room("r1", 90), &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/r1/status",
        room_reply("r1"),
    )
    .await;
    assert_eq!(
        status.body["status"]["node"], "a1",
        "the cached admin token is reused: no second Secret read"
    );
    expect(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events",
        event_reply(),
    )
    .await;
    assert!(task.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_room_of_a_missing_fleet_gets_a_clear_condition() {
    let (ctx, mut api) = context(vec![], FakeAdmin::default());
    let mut orphan = room("r1", 5);
    orphan.spec.fleet = "nope".into();
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&orphan, &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/r1/status",
        room_reply("r1"),
    )
    .await;
    assert_eq!(
        status.body["status"]["conditions"][0]["reason"],
        "FleetNotFound"
    );
    assert_eq!(
        status.body["status"]["conditions"][0]["message"],
        "no MediaFleet nope in namespace ns"
    );
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(room::RETRY_UNSCHEDULABLE)
    );
}
