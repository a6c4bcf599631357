//! The media node controller against a mock API server: the pod it creates, the exposure, what
//! it tells the node's admin API, its status writes (only on change) and events, and what it
//! does with nodes it cannot serve.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use ruche_crds::{MediaFleet, MediaNode, MediaNodeStatus, NodePhase};
use ruche_operator::controller::admin::NodeReport;
use ruche_operator::controller::context::{Context, Settings};
use ruche_operator::controller::{Error, ErrorClass, node};
use ruche_operator::core::health::{HealthPolicy, Reported};
use ruche_operator::state::keys::NodeKey;
use serde_json::{Value, json};
use support::{
    FakeAdmin, Handle, assert_status_apply, context_with, context_with_services,
    context_with_settings, drain_request, expect, expect_echo, expect_event, expect_no_request,
    expect_status, fleet, fleet_node, host_port_fleet, media_pod, node_report, ready_condition,
    ready_status, reply, secret_reply, set_pod_ready, status_reply, test_settings,
};

const PODS: &str = "/api/v1/namespaces/ns/pods";
const NODES: &str = "/apis/ruche.dev/v1alpha1/namespaces/ns/medianodes";
const ADMIN_SECRET: &str = "/api/v1/namespaces/ns/secrets/visio-admin-token";
const NAME: &str = "visio-a-2";

fn key() -> NodeKey {
    NodeKey::new("ns", NAME)
}

fn status_path(name: &str) -> String {
    format!("/apis/ruche.dev/v1alpha1/namespaces/ns/medianodes/{name}/status")
}

fn spawn_reconcile(
    ctx: &Arc<Context<FakeAdmin>>,
    n: &MediaNode,
) -> tokio::task::JoinHandle<Result<Action, Error>> {
    let ctx = ctx.clone();
    let n = Arc::new(n.clone());
    tokio::spawn(async move { node::reconcile(n, ctx).await })
}

/// Node number 2 of the fleet, in zone a, with the given status.
fn node_two(status: Option<MediaNodeStatus>) -> MediaNode {
    let mut n = fleet_node(NAME, "a", 2);
    n.status = status;
    n
}

/// The status write: server-side apply through the status subresource. Returns the status.
async fn expect_node_status(api: &mut Handle, n: &MediaNode) -> Value {
    let seen = expect(api, Method::PATCH, &status_path(&n.name_any()), reply(n)).await;
    assert_status_apply(&seen, "MediaNode");
    let status = seen.body["status"].clone();
    assert!(status["lastHeartbeat"].is_string(), "{status}");
    status
}

/// Status, reason and message of the condition `type_`.
fn condition_of<'a>(status: &'a Value, type_: &str) -> (&'a str, &'a str, &'a str) {
    let c = status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
    (
        c["status"].as_str().unwrap(),
        c["reason"].as_str().unwrap(),
        c["message"].as_str().unwrap(),
    )
}

fn ready_of(status: &Value) -> (&str, &str, &str) {
    condition_of(status, "Ready")
}

fn port<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"][0]["ports"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no {name} port in {pod}"))
}

fn env<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["name"] == name))
        .map_or(&Value::Null, |e| &e["value"])
}

/// Records an answer of the node's admin API, as the poller does.
fn answered(ctx: &Context<FakeAdmin>, report: NodeReport, phase: Reported) {
    ctx.live().answered(&key(), report, phase, Instant::now());
}

#[tokio::test]
async fn a_host_port_node_gets_its_pod_then_a_pending_status() {
    let n = node_two(None);
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);

    let created = expect_echo(&mut api, Method::POST, PODS).await;
    let pod = &created.body;
    assert_eq!(pod["metadata"]["name"], NAME);
    assert_eq!(pod["metadata"]["namespace"], "ns");
    assert_eq!(pod["metadata"]["labels"]["ruche.dev/node"], NAME);
    let media = port(pod, "media");
    assert_eq!(
        (
            &media["containerPort"],
            &media["protocol"],
            &media["hostPort"]
        ),
        (&json!(7882), &json!("UDP"), &json!(30002))
    );
    // Signaling and ICE over TCP share the media port's number on TCP.
    let media_tcp = port(pod, "media-tcp");
    assert_eq!(
        (
            &media_tcp["containerPort"],
            &media_tcp["protocol"],
            &media_tcp["hostPort"]
        ),
        (&json!(7882), &json!("TCP"), &json!(30002))
    );
    assert!(port(pod, "signaling").get("hostPort").is_none(), "{pod}");
    assert!(port(pod, "admin").get("hostPort").is_none(), "{pod}");
    assert!(pod["spec"].get("hostNetwork").is_none(), "{pod}");
    assert_eq!(
        pod["spec"]["nodeSelector"]["topology.kubernetes.io/zone"],
        "a"
    );
    assert_eq!(env(pod, "RUCHE_ADVERTISE"), "$(RUCHE_HOST_IP):30002");
    let owner = &pod["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["apiVersion"],
            &owner["kind"],
            &owner["name"],
            &owner["uid"],
            &owner["controller"]
        ),
        (
            &json!("ruche.dev/v1alpha1"),
            &json!("MediaNode"),
            &json!(NAME),
            &json!("visio-a-2-uid"),
            &json!(true)
        )
    );
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "PodCreated");
    assert_eq!(event.body["note"], "created pod visio-a-2 in zone a");
    assert_eq!(event.body["regarding"]["kind"], "MediaNode");
    assert_eq!(event.body["regarding"]["name"], NAME);

    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        ready_of(&status),
        ("False", "PodPending", "waiting for its pod to run")
    );
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(ctx.settings.poll_interval),
        "a pending node is looked at again soon"
    );
}

#[tokio::test]
async fn a_running_node_is_told_its_address_written_ready_then_left_alone() {
    let starting = node_two(Some(MediaNodeStatus {
        phase: NodePhase::Starting,
        pod: Some(NAME.into()),
        observed_generation: Some(1),
        ..Default::default()
    }));
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![starting.clone()],
        vec![],
        vec![media_pod(NAME, "Running", Some("10.0.0.5"))],
        admin.clone(),
    );
    let mut report = node_report("Ready", "10.0.0.5:7882");
    report.status.rooms = 3;
    report.status.participants = 7;
    report.status.reserved_slots = 20;
    report.status.used_slots = 25;
    report.status.bitrate_in_bps = 1000;
    report.status.bitrate_out_bps = 2000;
    answered(&ctx, report.clone(), Reported::Ready);

    let task = spawn_reconcile(&ctx, &starting);
    // Its pod hosts participants: labelled busy (the fleet's budget then keeps evictions from
    // it), and not safe to evict for the cluster autoscaler.
    let pod = serde_json::to_value(media_pod(NAME, "Running", Some("10.0.0.5"))).unwrap();
    let busy = expect(&mut api, Method::PATCH, &format!("{PODS}/{NAME}"), pod).await;
    assert_eq!(busy.body["metadata"]["labels"]["ruche.dev/busy"], "true");
    assert_eq!(
        busy.body["metadata"]["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"],
        "false"
    );
    expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    let status = expect_node_status(&mut api, &starting).await;
    assert_eq!(
        admin.calls(),
        ["advertise http://10.0.0.5:7881 10.0.0.5:30002"],
        "the node learns its address before its status says where it is"
    );
    assert_eq!(*admin.tokens.lock().unwrap(), ["admin-secret-token"]);
    assert_eq!(status["phase"], "Ready");
    assert_eq!(status["pod"], NAME);
    assert_eq!(
        status["addresses"],
        json!({
            "signaling": "ws://10.0.0.5:30002/ws",
            "media": "10.0.0.5:30002",
            "admin": "http://10.0.0.5:7881",
        })
    );
    assert_eq!(
        status["load"],
        json!({
            "rooms": 3,
            "participants": 7,
            "reservedSlots": 20,
            "usedSlots": 25,
            "bitrateInBps": 1000,
            "bitrateOutBps": 2000,
        })
    );
    assert_eq!(ready_of(&status), ("True", "Ready", "taking rooms"));
    let event = expect_event(&mut api).await;
    assert_eq!(
        (
            &event.body["type"],
            &event.body["reason"],
            &event.body["note"]
        ),
        (
            &json!("Normal"),
            &json!("Ready"),
            &json!("media node is Ready")
        )
    );
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );

    // The status is written; the next poll shows the address taken and other bitrates.
    let mut ready = starting.clone();
    ready.status = Some(serde_json::from_value(status).unwrap());
    report.status.advertise = Some("10.0.0.5:30002".into());
    report.status.bitrate_in_bps = 9999;
    // Everyone left meanwhile: the pod is idle, as the (unchanging) pod cache of this test
    // says, so it is not labelled again; a load change alone waits for its interval.
    report.status.participants = 0;
    answered(&ctx, report, Reported::Ready);
    let task = spawn_reconcile(&ctx, &ready);
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
    assert_eq!(
        admin.calls().len(),
        1,
        "no second advertise, no Secret read, no status write for bitrates alone, no event"
    );
}

#[tokio::test]
async fn a_node_port_node_applies_its_service_then_gets_a_pod_advertising_the_node_port() {
    let n = fleet_node("visio-a-0", "a", 0);
    let (ctx, mut api) = context_with(
        vec![fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    let applied = expect(
        &mut api,
        Method::PATCH,
        "/api/v1/namespaces/ns/services/visio-a-0-media",
        service_reply_tcp(31000, 31002, 31001),
    )
    .await;
    assert_eq!(
        applied.query.get("fieldManager").map(String::as_str),
        Some("ruche-operator")
    );
    assert_eq!(applied.query.get("force").map(String::as_str), Some("true"));
    let svc = &applied.body;
    assert_eq!(svc["kind"], "Service");
    assert_eq!(svc["spec"]["type"], "NodePort");
    assert_eq!(svc["spec"]["externalTrafficPolicy"], "Local");
    assert_eq!(svc["spec"]["selector"]["ruche.dev/node"], "visio-a-0");
    assert_eq!(svc["metadata"]["ownerReferences"][0]["kind"], "MediaNode");
    // The API server chose the TCP media port's number apart: it is asked for the UDP one's.
    let again = expect(
        &mut api,
        Method::PATCH,
        "/api/v1/namespaces/ns/services/visio-a-0-media",
        service_reply(31000, 31001),
    )
    .await;
    let ports = again.body["spec"]["ports"].as_array().unwrap().clone();
    let node_port = |name: &str| {
        ports
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["nodePort"].clone())
    };
    assert_eq!(node_port("media"), Some(json!(31000)));
    assert_eq!(node_port("media-tcp"), Some(json!(31000)));

    let created = expect_echo(&mut api, Method::POST, PODS).await;
    let pod = &created.body;
    assert!(port(pod, "media").get("hostPort").is_none(), "{pod}");
    assert_eq!(env(pod, "RUCHE_ADVERTISE"), "$(RUCHE_HOST_IP):31000");
    assert_eq!(expect_event(&mut api).await.body["reason"], "PodCreated");
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Pending");
    expect_no_request(&mut api).await;
    assert!(task.await.unwrap().is_ok());
}

/// The Service as the API server answers an apply: the media port's node port on both
/// protocols, as the operator asks once it knows it.
fn service_reply(media: u16, signaling: u16) -> Value {
    service_reply_tcp(media, media, signaling)
}

fn service_reply_tcp(media: u16, media_tcp: u16, signaling: u16) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "visio-a-0-media", "namespace": "ns"},
        "spec": {
            "type": "NodePort",
            "ports": [
                {"name": "media", "protocol": "UDP", "port": 7882, "nodePort": media},
                {"name": "media-tcp", "protocol": "TCP", "port": 7882, "nodePort": media_tcp},
                {"name": "signaling", "protocol": "TCP", "port": 7880, "nodePort": signaling},
            ],
        },
    })
}

#[tokio::test]
async fn a_node_port_node_advertises_its_kubernetes_nodes_external_address() {
    let n = node_two(None);
    let mut pod = media_pod(NAME, "Running", Some("10.1.0.7"));
    pod.spec = Some(k8s_openapi::api::core::v1::PodSpec {
        node_name: Some("k8s-1".into()),
        ..Default::default()
    });
    pod.status.as_mut().unwrap().host_ip = Some("10.0.0.5".into());
    // The Kubernetes node comes from the watch of nodes: the operator never asks for it.
    let host: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "k8s-1"},
        "status": {"addresses": [
            {"type": "InternalIP", "address": "10.0.0.5"},
            {"type": "ExternalIP", "address": "203.0.113.9"},
        ]},
    }))
    .unwrap();
    let objects = support::Objects {
        fleets: vec![fleet()],
        nodes: vec![n.clone()],
        pods: vec![pod],
        hosts: vec![host],
        ..support::Objects::default()
    };
    let (ctx, mut api) = support::context_of(objects, FakeAdmin::default(), test_settings());
    let task = spawn_reconcile(&ctx, &n);
    expect(
        &mut api,
        Method::PATCH,
        &format!("/api/v1/namespaces/ns/services/{NAME}-media"),
        service_reply(31000, 31001),
    )
    .await;
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(
        status["phase"], "Starting",
        "running, but its admin API has not answered yet"
    );
    assert_eq!(
        status["addresses"],
        json!({
            "signaling": "ws://203.0.113.9:31001/ws",
            "media": "203.0.113.9:31000",
            "admin": "http://10.1.0.7:7881",
        })
    );
    assert_eq!(expect_event(&mut api).await.body["reason"], "Starting");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(ctx.settings.poll_interval)
    );
}

#[tokio::test]
async fn an_unchanged_service_in_the_cache_is_not_applied_again() {
    let mut n = node_two(None);
    n.status = Some(MediaNodeStatus {
        pod: Some(NAME.into()),
        ..Default::default()
    });
    // Media on one node port for both protocols, signaling on another.
    let mut svc = ruche_operator::build::service::service(&fleet(), &n, Some(31_000))
        .unwrap()
        .unwrap();
    for p in svc.spec.as_mut().unwrap().ports.as_mut().unwrap() {
        p.node_port.get_or_insert(31_001);
    }
    let (ctx, mut api) = context_with_services(
        vec![fleet()],
        vec![n.clone()],
        vec![],
        vec![media_pod(NAME, "Pending", None)],
        vec![svc],
        FakeAdmin::default(),
        test_settings(),
    );
    // The pod is not running yet: with the Service cached as it should be, the reconcile
    // writes the node's status and nothing else.
    let task = spawn_reconcile(&ctx, &n);
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Pending");
    task.await.unwrap().unwrap();
    expect_no_request(&mut api).await;
}

fn impatient() -> Settings {
    Settings {
        health: HealthPolicy {
            failure_timeout: Duration::from_millis(1),
            ..HealthPolicy::default()
        },
        ..test_settings()
    }
}

/// The node answered once, then missed `missed` polls in a row.
fn silent(ctx: &Context<FakeAdmin>, missed: u32) {
    answered(ctx, node_report("Ready", "10.0.0.5:30002"), Reported::Ready);
    for _ in 0..missed {
        ctx.live()
            .failed(&key(), "http://10.0.0.5:7881: connection refused".into());
    }
}

#[tokio::test]
async fn a_node_silent_past_the_failure_timeout_fails_and_loses_its_pod() {
    let n = node_two(Some(ready_status(NAME, "10.0.0.5", 30002)));
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context_with_settings(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![media_pod(NAME, "Running", Some("10.0.0.5"))],
        admin.clone(),
        impatient(),
    );
    silent(&ctx, 3);
    tokio::time::sleep(Duration::from_millis(20)).await;

    // Silent for three polls, and its pod is not ready either: the two witnesses agree.
    let task = spawn_reconcile(&ctx, &n);
    expect(
        &mut api,
        Method::DELETE,
        &format!("{PODS}/{NAME}"),
        reply(&media_pod(NAME, "Running", Some("10.0.0.5"))),
    )
    .await;
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Failed");
    let why = "its admin API has not answered for 1ms (3 polls missed): http://10.0.0.5:7881: connection refused";
    assert_eq!(ready_of(&status), ("False", "Failed", why));
    let event = expect_event(&mut api).await;
    assert_eq!(
        (
            &event.body["type"],
            &event.body["reason"],
            &event.body["note"]
        ),
        (&json!("Warning"), &json!("Failed"), &json!(why))
    );
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
    assert!(admin.calls().is_empty(), "a failed node is told nothing");
    expect_no_request(&mut api).await;
}

#[tokio::test]
async fn a_ready_node_whose_pod_vanished_fails_and_gets_no_new_pod() {
    let n = node_two(Some(ready_status(NAME, "10.0.0.5", 30002)));
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Failed");
    assert_eq!(
        ready_of(&status),
        ("False", "Failed", "its pod disappeared")
    );
    assert_eq!(expect_event(&mut api).await.body["type"], "Warning");
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
}

#[tokio::test]
async fn a_failed_node_keeps_the_reason_it_failed() {
    let mut status = ready_status(NAME, "10.0.0.5", 30002);
    status.phase = NodePhase::Failed;
    status.conditions = vec![ready_condition(
        false,
        "Failed",
        "its admin API has not answered for 10s: connection refused",
    )];
    status.last_heartbeat = Some(Time(Timestamp::now()));
    let n = node_two(Some(status));
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
}

/// A Ready node with a running pod whose admin API answered `phase`.
fn serving(
    drain: Option<&str>,
    reported: (&str, Reported),
    pod_leaving: bool,
) -> (Arc<Context<FakeAdmin>>, Handle, FakeAdmin, MediaNode) {
    let mut n = node_two(Some(ready_status(NAME, "10.0.0.5", 30002)));
    n.spec.drain = drain.map(drain_request);
    let mut pod = media_pod(NAME, "Running", Some("10.0.0.5"));
    if pod_leaving {
        pod.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    }
    let admin = FakeAdmin::default();
    let (ctx, api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![pod],
        admin.clone(),
    );
    answered(&ctx, node_report(reported.0, "10.0.0.5:30002"), reported.1);
    (ctx, api, admin, n)
}

fn draining_of(status: &Value) -> (&str, &str, &str) {
    condition_of(status, "Draining")
}

#[tokio::test]
async fn a_drain_request_reaches_a_node_that_still_reports_ready() {
    let (ctx, mut api, admin, n) = serving(Some("Manual"), ("Ready", Reported::Ready), false);
    let task = spawn_reconcile(&ctx, &n);
    expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    // Out of service at once, whatever the node says yet.
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Draining");
    assert!(status["drainStartedAt"].is_string(), "{status}");
    let (holds, reason, message) = draining_of(&status);
    assert_eq!(
        (holds, reason),
        ("False", "Drained"),
        "no room on it: {message}"
    );
    assert_eq!(expect_event(&mut api).await.body["reason"], "Draining");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(60))
    );
    // Besides the drain, the node may get this leader's first list (empty: nothing is placed
    // on it), which the placements' first build gives every node.
    let calls = admin.calls();
    assert!(
        calls.contains(&"drain http://10.0.0.5:7881 Some(true)".to_string()),
        "drained with the time left before the deadline: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.starts_with("drain ")
                || c == "assign http://10.0.0.5:7881 admin-secret-token []"),
        "{calls:?}"
    );
}

/// A node draining with `request`, hosting room `weekly`, next to a Ready node `visio-a-3`.
fn draining_with_a_room(
    request: ruche_crds::DrainRequest,
) -> (Arc<Context<FakeAdmin>>, Handle, FakeAdmin, MediaNode) {
    let mut n = node_two(Some(ready_status(NAME, "10.0.0.5", 30002)));
    n.spec.drain = Some(request);
    let mut other = fleet_node("visio-a-3", "a", 3);
    other.status = Some(ready_status("visio-a-3", "10.0.0.6", 30003));
    let admin = FakeAdmin::default();
    let (ctx, api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone(), other],
        vec![support::placed_room("weekly", 4, NAME, "a")],
        vec![media_pod(NAME, "Running", Some("10.0.0.5"))],
        admin.clone(),
    );
    answered(
        &ctx,
        node_report("Draining", "10.0.0.5:30002"),
        Reported::Draining,
    );
    (ctx, api, admin, n)
}

fn past(seconds: i64) -> Option<Time> {
    Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(seconds))
        .ok()
        .map(Time)
}

#[tokio::test]
async fn at_the_deadline_mode_migrate_moves_the_rooms_and_says_so() {
    let mut request = drain_request("Manual");
    request.deadline = past(5);
    let mut n_status_started = None;
    let (ctx, mut api, _admin, mut n) = draining_with_a_room(request);
    // The drain was seen before its deadline: no complaint about a past deadline.
    if let Some(st) = n.status.as_mut() {
        st.phase = NodePhase::Draining;
        st.drain_started_at = past(60);
        n_status_started.clone_from(&st.drain_started_at);
    }
    let task = spawn_reconcile(&ctx, &n);
    expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "Migrating");
    assert_eq!(
        event.body["note"],
        "drain deadline reached: moving 1 room(s) live to other nodes"
    );
    let status = expect_node_status(&mut api, &n).await;
    let (holds, reason, message) = draining_of(&status);
    assert_eq!((holds, reason), ("True", "Migrating"), "{message}");
    assert_eq!(status["drainStartedAt"], json!(n_status_started), "kept");
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(10)),
        "looked at again while rooms are moving"
    );
    let room = ruche_operator::core::RoomKey::new("ns/weekly");
    let fleet = ruche_operator::state::keys::FleetKey::new("ns", "visio");
    assert_eq!(
        ctx.registry().leaving_from(&fleet, &room),
        Some((NAME.to_string(), false)),
        "the room left {NAME}, whose list keeps it until its participants have moved"
    );
    assert_eq!(ctx.registry().rooms_on(&key()), Some(0));
}

#[tokio::test]
async fn a_deadline_already_past_is_said_and_mode_wait_keeps_waiting_with_a_condition() {
    let mut request = drain_request("Manual");
    request.deadline = past(30);
    request.mode = ruche_crds::DrainMode::Wait;
    let (ctx, mut api, _admin, n) = draining_with_a_room(request);
    let task = spawn_reconcile(&ctx, &n);
    expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "DeadlineInPast");
    assert!(
        event.body["note"].as_str().unwrap().ends_with(
            "was already past when the drain was set: mode Wait: its rooms are waited for"
        ),
        "{}",
        event.body["note"]
    );
    let overdue = expect_event(&mut api).await;
    assert_eq!(overdue.body["reason"], "DeadlinePassed");
    assert_eq!(overdue.body["type"], "Warning");
    let status = expect_node_status(&mut api, &n).await;
    let (holds, reason, message) = draining_of(&status);
    assert_eq!((holds, reason), ("True", "DeadlinePassed"), "{message}");
    assert!(message.contains("1 room(s) left"), "{message}");
    assert_eq!(expect_event(&mut api).await.body["reason"], "Draining");
    assert!(task.await.unwrap().is_ok());
    assert_eq!(ctx.registry().rooms_on(&key()), Some(1), "nothing moved");
}

#[tokio::test]
async fn a_node_draining_without_a_drain_request_is_undrained() {
    let (ctx, mut api, admin, n) = serving(None, ("Draining", Reported::Draining), false);
    let task = spawn_reconcile(&ctx, &n);
    expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(admin.calls(), ["undrain http://10.0.0.5:7881"]);
    assert_eq!(status["phase"], "Draining", "what the node last said");
    assert!(status["drainStartedAt"].is_string(), "{status}");
    assert_eq!(
        ready_of(&status),
        ("False", "Draining", "draining: no new room")
    );
    assert_eq!(expect_event(&mut api).await.body["reason"], "Draining");
    assert!(task.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_node_whose_pod_is_being_deleted_is_left_draining() {
    let (ctx, mut api, admin, n) = serving(None, ("Draining", Reported::Draining), true);
    let task = spawn_reconcile(&ctx, &n);
    expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Draining");
    assert_eq!(expect_event(&mut api).await.body["reason"], "Draining");
    assert!(task.await.unwrap().is_ok());
    assert!(
        admin.calls().is_empty(),
        "a pod being deleted drains on SIGTERM: not cancelled"
    );
}

#[tokio::test]
async fn a_node_of_a_missing_fleet_gets_a_clear_condition_and_is_retried() {
    let n = node_two(None);
    let (ctx, mut api) = context_with(
        vec![],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(
        ready_of(&status),
        (
            "False",
            "FleetNotFound",
            "no MediaFleet visio in namespace ns"
        )
    );
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );

    // Said once: reconciling again with that status writes nothing.
    let mut again = n.clone();
    again.status = Some(serde_json::from_value(status).unwrap());
    let task = spawn_reconcile(&ctx, &again);
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(30))
    );
}

fn in_unknown_zone() -> MediaNode {
    fleet_node("visio-zz-2", "zz", 2)
}

#[tokio::test]
async fn a_node_in_a_zone_its_fleet_lacks_is_refused_without_a_pod() {
    let n = in_unknown_zone();
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    unknown_zone_condition(&mut api).await;
    let result = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the reconcile ends")
        .unwrap();
    assert_eq!(
        result.unwrap(),
        Action::await_change(),
        "not retried: the zone of a node cannot change"
    );
}

/// The one request a node in an unknown zone gets: its status, saying why it cannot run.
async fn unknown_zone_condition(api: &mut Handle) {
    let status = expect(
        api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/medianodes/visio-zz-2/status",
        json!({"apiVersion": "ruche.dev/v1alpha1", "kind": "MediaNode", "metadata": {"name": "visio-zz-2", "namespace": "ns"}, "spec": {"fleet": "visio", "zone": "zz", "revision": "r1", "capacity": {"slots": 100}}}),
    )
    .await;
    let condition = &status.body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "UnknownZone");
    assert!(
        condition["message"].as_str().unwrap().contains("zone zz"),
        "{condition}"
    );
    expect_no_request(api).await;
}

#[tokio::test]
async fn a_bad_object_error_is_counted_and_retried() {
    let n = in_unknown_zone();
    let (ctx, _api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let error = Error::Invalid("MediaNode visio-zz-2 has no numeric ruche.dev/index label".into());
    assert_eq!(error.class(), ErrorClass::Permanent);
    assert_eq!(
        node::error_policy(Arc::new(n), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains(
            "ruche_operator_reconcile_errors_total{controller=\"node\",error=\"invalid\"} 1"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_node_in_a_zone_its_fleet_lacks_gets_no_service_either() {
    let n = in_unknown_zone();
    let (ctx, mut api) = context_with(
        vec![fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    unknown_zone_condition(&mut api).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

fn balancer_fleet() -> MediaFleet {
    let mut f = fleet();
    f.spec.exposure.mode = ruche_crds::ExposureMode::LoadBalancer;
    f
}

/// A running node (no poll yet) of a LoadBalancer fleet whose balancer has this ingress:
/// reconciled once, returns the status written.
async fn behind_a_balancer(ingress: Value) -> Value {
    let n = node_two(None);
    let (ctx, mut api) = context_with(
        vec![balancer_fleet()],
        vec![n.clone()],
        vec![],
        vec![media_pod(NAME, "Running", Some("10.1.0.7"))],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    let mut svc = service_reply(31000, 31001);
    svc["spec"]["type"] = json!("LoadBalancer");
    svc["status"] = json!({"loadBalancer": {"ingress": [ingress]}});
    let applied = expect(
        &mut api,
        Method::PATCH,
        &format!("/api/v1/namespaces/ns/services/{NAME}-media"),
        svc,
    )
    .await;
    assert_eq!(applied.body["spec"]["type"], "LoadBalancer");
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(expect_event(&mut api).await.body["reason"], "Starting");
    expect_no_request(&mut api).await;
    assert!(task.await.unwrap().is_ok());
    status
}

#[tokio::test]
async fn a_load_balancer_node_advertises_the_balancer_address_and_service_ports() {
    let status = behind_a_balancer(json!({"ip": "203.0.113.10"})).await;
    assert_eq!(
        status["addresses"],
        json!({
            "signaling": "ws://203.0.113.10:7880/ws",
            "media": "203.0.113.10:7882",
            "admin": "http://10.1.0.7:7881",
        })
    );
}

#[tokio::test]
async fn a_load_balancer_with_a_hostname_is_advertised_with_its_own_ports() {
    let status = behind_a_balancer(json!({"hostname": "lb.example.com"})).await;
    assert_eq!(
        status["addresses"],
        json!({
            "signaling": "ws://lb.example.com:7880/ws",
            "media": "lb.example.com:7882",
            "admin": "http://10.1.0.7:7881",
        })
    );
}

#[tokio::test]
async fn a_pod_left_by_a_previous_node_of_the_same_name_is_not_adopted() {
    let node = node_two(Some(MediaNodeStatus {
        phase: NodePhase::Starting,
        observed_generation: Some(1),
        ..Default::default()
    }));
    // The pod of the node this name belonged to before: still running, another owner.
    let mut leftover = media_pod(NAME, "Running", Some("10.0.0.9"));
    if let Some(owners) = leftover.metadata.owner_references.as_mut() {
        owners[0].uid = "an-earlier-node-uid".into();
    }
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![node.clone()],
        vec![],
        vec![leftover.clone()],
        admin.clone(),
    );
    let task = spawn_reconcile(&ctx, &node);
    expect(
        &mut api,
        Method::DELETE,
        &format!("{PODS}/{NAME}"),
        reply(&leftover),
    )
    .await;
    expect_no_request(&mut api).await;
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(2)));
    assert!(
        admin.calls().is_empty(),
        "no admin call to someone else's pod"
    );

    // Already terminating: nothing to do but wait.
    leftover.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![node.clone()],
        vec![],
        vec![leftover],
        admin.clone(),
    );
    let task = spawn_reconcile(&ctx, &node);
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(Duration::from_secs(2))
    );
}

#[tokio::test]
async fn a_silent_node_whose_pod_is_ready_is_unreachable_not_failed() {
    let n = node_two(Some(ready_status(NAME, "10.0.0.5", 30002)));
    let mut pod = media_pod(NAME, "Running", Some("10.0.0.5"));
    set_pod_ready(&mut pod);
    let (ctx, mut api) = context_with_settings(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![pod],
        FakeAdmin::default(),
        impatient(),
    );
    silent(&ctx, 3);
    tokio::time::sleep(Duration::from_millis(20)).await;

    // The kubelet says the node is ready; the operator cannot reach it: no pod deletion,
    // the node keeps its phase and its rooms, and says why it takes no new room.
    let task = spawn_reconcile(&ctx, &n);
    let status = expect_node_status(&mut api, &n).await;
    assert_eq!(status["phase"], "Ready");
    let (ready, reason, message) = ready_of(&status);
    assert_eq!((ready, reason), ("False", "Unreachable"));
    assert!(message.contains("but its pod is ready"), "{message}");
    let event = expect_event(&mut api).await;
    assert_eq!(
        (&event.body["type"], &event.body["reason"]),
        (&json!("Warning"), &json!("Unreachable"))
    );
    task.await.unwrap().unwrap();
    let mut written = n.clone();
    written.status = Some(serde_json::from_value(status).unwrap());
    assert!(
        ruche_operator::state::world::node_info(
            &written,
            &ruche_operator::state::world::Tiers::default()
        )
        .cordoned,
        "an unreachable node takes no new room"
    );
}

#[tokio::test]
async fn a_pod_the_api_server_refuses_is_a_condition_and_an_event_on_the_node() {
    let n = node_two(None);
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    let refusal = "pods \"visio-a-2\" is forbidden: violates PodSecurity \"baseline:latest\": hostPort (container \"media\" uses hostPorts 30002)";
    expect_status(
        &mut api,
        Method::POST,
        PODS,
        StatusCode::FORBIDDEN,
        status_reply(StatusCode::FORBIDDEN, "Forbidden", refusal),
    )
    .await;
    let status = expect_node_status(&mut api, &n).await;
    let (ready, reason, message) = ready_of(&status);
    assert_eq!((ready, reason), ("False", "PodRefused"));
    assert_eq!(
        message,
        format!("the API server refused its pod (HTTP 403): {refusal}")
    );
    let event = expect_event(&mut api).await;
    assert_eq!(
        (
            &event.body["type"],
            &event.body["reason"],
            &event.body["note"]
        ),
        (&json!("Warning"), &json!("PodRefused"), &json!(message))
    );
    let error = task.await.unwrap().unwrap_err();
    assert_eq!(error.class(), ErrorClass::Permanent);
    // Retried with a growing backoff, not every few seconds.
    let n = Arc::new(n);
    let delays: Vec<_> = (0..4)
        .map(|_| node::error_policy(n.clone(), &error, ctx.clone()))
        .collect();
    assert_eq!(
        delays,
        [1, 2, 4, 8].map(|s| Action::requeue(Duration::from_secs(s)))
    );
}

#[tokio::test]
async fn a_node_that_cannot_be_served_as_written_says_why_and_waits_for_a_change() {
    // A host-port node without its index label: no host port can be given to it.
    let mut n = node_two(None);
    n.metadata.labels = None;
    let (ctx, mut api) = context_with(
        vec![host_port_fleet()],
        vec![n.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &n);
    let status = expect_node_status(&mut api, &n).await;
    let (ready, reason, message) = ready_of(&status);
    assert_eq!((ready, reason), ("False", "Invalid"));
    assert!(
        message.contains("no numeric ruche.dev/index label"),
        "{message}"
    );
    let event = expect_event(&mut api).await;
    assert_eq!(
        (&event.body["type"], &event.body["reason"]),
        (&json!("Warning"), &json!("Invalid"))
    );
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::await_change(),
        "nothing to retry until the node changes"
    );
    expect_no_request(&mut api).await;
}

/// A Ready node whose pod runs on Kubernetes node `worker-1`, as `host` describes it.
fn on_host(
    drain: Option<&str>,
    unschedulable: bool,
    taints: &[&str],
) -> (Arc<Context<FakeAdmin>>, Handle, MediaNode) {
    let mut n = node_two(Some(ready_status(NAME, "10.0.0.5", 30002)));
    n.spec.drain = drain.map(drain_request);
    let mut pod = media_pod(NAME, "Running", Some("10.0.0.5"));
    pod.spec.get_or_insert_default().node_name = Some("worker-1".into());
    let host: k8s_openapi::api::core::v1::Node = serde_json::from_value(json!({
        "metadata": { "name": "worker-1" },
        "spec": {
            "unschedulable": unschedulable,
            "taints": taints.iter().map(|k| json!({ "key": k, "effect": "NoSchedule" })).collect::<Vec<_>>(),
        },
    }))
    .unwrap();
    let objects = support::Objects {
        fleets: vec![host_port_fleet()],
        nodes: vec![n.clone()],
        pods: vec![pod],
        hosts: vec![host],
        ..support::Objects::default()
    };
    let (ctx, api) = support::context_of(objects, FakeAdmin::default(), test_settings());
    answered(
        &ctx,
        node_report("Ready", "10.0.0.5:30002"),
        Reported::Ready,
    );
    (ctx, api, n)
}

#[tokio::test]
async fn a_media_node_on_a_kubernetes_node_being_taken_away_drains_and_comes_back_with_it() {
    // Cordoned, then tainted by the cluster autoscaler: the media node drains (its own cause).
    for (unschedulable, taints, why) in [
        (true, &[][..], "is cordoned"),
        (
            true,
            &["ToBeDeletedByClusterAutoscaler"][..],
            "is being removed by the cluster autoscaler",
        ),
        (
            false,
            &["karpenter.sh/disrupted"][..],
            "is being disrupted by Karpenter",
        ),
    ] {
        let (ctx, mut api, n) = on_host(None, unschedulable, taints);
        let task = spawn_reconcile(&ctx, &n);
        let patch = expect(
            &mut api,
            Method::PATCH,
            &format!("{NODES}/{NAME}"),
            reply(&n),
        )
        .await;
        let drain = &patch.body["spec"]["drain"];
        assert_eq!(drain["reason"], "NodeMaintenance", "{drain}");
        assert_eq!(drain["mode"], "Migrate");
        assert!(drain["deadline"].is_string(), "{drain}");
        let event = expect_event(&mut api).await;
        assert_eq!(event.body["reason"], "HostLeaving");
        assert!(
            event.body["note"]
                .as_str()
                .unwrap()
                .starts_with(&format!("Kubernetes node worker-1 {why}: draining until ")),
            "{}",
            event.body["note"]
        );
        drop(task);
    }
    // Back in service: only its own drain is undone.
    let (ctx, mut api, n) = on_host(Some("NodeMaintenance"), false, &[]);
    let task = spawn_reconcile(&ctx, &n);
    let patch = expect(
        &mut api,
        Method::PATCH,
        &format!("{NODES}/{NAME}"),
        reply(&n),
    )
    .await;
    assert_eq!(patch.body["spec"]["drain"], Value::Null);
    assert_eq!(expect_event(&mut api).await.body["reason"], "HostBack");
    drop(task);
    let (ctx, mut api, n) = on_host(Some("Manual"), false, &[]);
    let task = spawn_reconcile(&ctx, &n);
    let first = expect(&mut api, Method::GET, ADMIN_SECRET, secret_reply()).await;
    assert_eq!(first.path, ADMIN_SECRET, "a drain by hand is left alone");
    drop(task);
}
