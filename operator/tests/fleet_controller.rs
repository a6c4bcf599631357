//! The fleet controller against a mock API server: the requests each reconcile makes, in
//! order (Secrets, media nodes created, drained and deleted, the status), and the fleet's
//! status as a pure function of its nodes and placements.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;

use http::{Method, StatusCode};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use ruche_crds::{ConditionsExt, DrainMode, MediaFleet, MediaFleetStatus, MediaNode, NodePhase};
use ruche_operator::build::node::revision;
use ruche_operator::controller::context::Context;
use ruche_operator::controller::{Error, fleet};
use ruche_operator::state::fleet_status::fleet_status;
use ruche_operator::state::keys::NodeKey;
use ruche_operator::state::placements::FleetPlacement;
use serde_json::Value;
use support::{
    FakeAdmin, Handle, assert_status_apply, context_with, drain_request, expect, expect_echo,
    expect_event, expect_no_request, expect_not_found, expect_status, fleet_with_zones, node_in,
    placed_room, reply, secret_named, status_reply,
};

const SECRETS: &str = "/api/v1/namespaces/ns/secrets";
const BUDGETS: &str = "/apis/policy/v1/namespaces/ns/poddisruptionbudgets";
const NODES: &str = "/apis/ruche.dev/v1alpha1/namespaces/ns/medianodes";
const FLEET_STATUS: &str = "/apis/ruche.dev/v1alpha1/namespaces/ns/mediafleets/visio/status";

fn spawn_reconcile(
    ctx: &Arc<Context<FakeAdmin>>,
    f: &MediaFleet,
) -> tokio::task::JoinHandle<Result<Action, Error>> {
    let ctx = ctx.clone();
    let f = Arc::new(f.clone());
    tokio::spawn(async move { fleet::reconcile(f, ctx).await })
}

/// The fleet's Secrets are there: each is read, none written.
async fn secrets_exist(api: &mut Handle) {
    for name in ["visio-join-key", "visio-admin-token"] {
        expect(
            api,
            Method::GET,
            &format!("{SECRETS}/{name}"),
            secret_named(name),
        )
        .await;
    }
    // The PodDisruptionBudget over busy media pods exists too.
    expect(
        api,
        Method::GET,
        &format!("{BUDGETS}/visio-busy"),
        serde_json::json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": { "name": "visio-busy", "namespace": "ns" }
        }),
    )
    .await;
}

/// The status write: server-side apply through the status subresource. Returns the status.
async fn expect_fleet_status(api: &mut Handle, f: &MediaFleet) -> Value {
    let seen = expect(api, Method::PATCH, FLEET_STATUS, reply(f)).await;
    assert_status_apply(&seen, "MediaFleet");
    seen.body["status"].clone()
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == type_))
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
}

fn two_zones() -> MediaFleet {
    fleet_with_zones(&[("a", 1, 5), ("b", 1, 5)])
}

/// Runs the first reconcile of a new two-zone fleet, checking every request; returns the
/// status it wrote.
async fn first_reconcile(ctx: &Arc<Context<FakeAdmin>>, api: &mut Handle, f: &MediaFleet) -> Value {
    let task = spawn_reconcile(ctx, f);

    // The Secrets: absent, so created with random content, each with an event.
    for (name, key) in [
        ("visio-join-key", "token-key"),
        ("visio-admin-token", "admin-token"),
    ] {
        expect_not_found(api, Method::GET, &format!("{SECRETS}/{name}")).await;
        let created = expect(api, Method::POST, SECRETS, secret_named(name)).await;
        let secret = &created.body;
        assert_eq!(secret["metadata"]["name"], name);
        assert_eq!(secret["metadata"]["namespace"], "ns");
        assert_eq!(secret["type"], "Opaque");
        let text = secret["stringData"][key]
            .as_str()
            .unwrap_or_else(|| panic!("no stringData.{key} in {secret}"));
        assert_eq!(text.len(), 64, "{text}");
        assert!(
            text.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{text}"
        );
        let owner = &secret["metadata"]["ownerReferences"][0];
        assert_eq!(
            (&owner["kind"], &owner["name"], &owner["uid"]),
            (
                &Value::from("MediaFleet"),
                &Value::from("visio"),
                &Value::from("f-uid")
            )
        );
        assert_eq!(owner["controller"], true);
        let event = expect_event(api).await;
        assert_eq!(event.body["reason"], "SecretCreated");
        assert_eq!(event.body["regarding"]["kind"], "MediaFleet");
        assert_eq!(event.body["regarding"]["name"], "visio");
    }

    // The budget that keeps voluntary evictions from busy media pods, with its event.
    expect_not_found(api, Method::GET, &format!("{BUDGETS}/visio-busy")).await;
    let created = expect_echo(api, Method::POST, BUDGETS).await;
    let pdb = &created.body;
    assert_eq!(
        pdb["spec"]["minAvailable"],
        i64::from(i32::MAX),
        "every busy pod stays"
    );
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["ruche.dev/busy"], "true",
        "{pdb}"
    );
    assert_eq!(pdb["metadata"]["ownerReferences"][0]["name"], "visio");
    assert_eq!(expect_event(api).await.body["reason"], "BudgetCreated");

    // One node per zone, each followed by its event.
    let rev = revision(f);
    let mut indexes = Vec::new();
    for zone in ["a", "b"] {
        let created = expect_echo(api, Method::POST, NODES).await;
        let n = &created.body;
        let labels = &n["metadata"]["labels"];
        let index = labels["ruche.dev/index"]
            .as_str()
            .unwrap_or_else(|| panic!("no index label in {n}"))
            .to_string();
        assert_eq!(n["metadata"]["name"], format!("visio-{zone}-{index}"));
        assert_eq!(n["metadata"]["namespace"], "ns");
        assert_eq!(labels["ruche.dev/zone"], zone);
        assert_eq!(labels["ruche.dev/fleet"], "visio");
        assert_eq!(labels["ruche.dev/revision"], rev.as_str());
        assert_eq!(n["spec"]["zone"], zone);
        assert_eq!(n["spec"]["fleet"], "visio");
        assert_eq!(n["spec"]["capacity"]["slots"], 100);
        assert_eq!(n["spec"]["revision"], rev.as_str());
        assert!(n["spec"].get("drain").is_none(), "{n}");
        let owner = &n["metadata"]["ownerReferences"][0];
        assert_eq!(
            (
                &owner["apiVersion"],
                &owner["kind"],
                &owner["name"],
                &owner["uid"]
            ),
            (
                &Value::from("ruche.dev/v1alpha1"),
                &Value::from("MediaFleet"),
                &Value::from("visio"),
                &Value::from("f-uid")
            )
        );
        assert_eq!(owner["controller"], true);
        indexes.push(index);
        let event = expect_event(api).await;
        assert_eq!(event.body["reason"], "NodeCreated");
        assert_eq!(event.body["type"], "Normal");
    }
    assert_ne!(indexes[0], indexes[1], "each node gets its own index");

    let status = expect_fleet_status(api, f).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    status
}

#[tokio::test]
async fn a_new_fleet_gets_its_secrets_a_node_per_zone_then_its_status() {
    let f = two_zones();
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let status = first_reconcile(&ctx, &mut api, &f).await;

    assert_eq!(status["replicas"], 0, "the cache shows no node yet");
    assert_eq!(status["readyReplicas"], 0);
    assert_eq!(status["selector"], "ruche.dev/fleet=visio");
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["updateRevision"], revision(&f).as_str());
    let zones: Vec<&str> = status["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["name"].as_str().unwrap())
        .collect();
    assert_eq!(zones, ["a", "b"]);
    let available = condition(&status, "Available");
    assert_eq!(
        (&available["status"], &available["reason"]),
        (&Value::from("False"), &Value::from("NoReadyNode"))
    );
    let progressing = condition(&status, "Progressing");
    assert_eq!(
        (
            &progressing["status"],
            &progressing["reason"],
            &progressing["message"]
        ),
        (
            &Value::from("True"),
            &Value::from("Scaling"),
            &Value::from("0 of 2 media nodes Ready (0 exist)")
        )
    );
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (&degraded["status"], &degraded["reason"]),
        (&Value::from("False"), &Value::from("Healthy"))
    );
    expect_no_request(&mut api).await;
}

#[tokio::test]
async fn reconciling_again_before_the_cache_shows_the_new_nodes_creates_nothing() {
    let f = two_zones();
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let status = first_reconcile(&ctx, &mut api, &f).await;

    // The status was written; the node cache has not caught up; the Secrets now exist.
    let mut again = f.clone();
    again.status = Some(serde_json::from_value(status).unwrap());
    let task = spawn_reconcile(&ctx, &again);
    secrets_exist(&mut api).await;
    expect_no_request(&mut api).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        Action::requeue(fleet::RESYNC),
        "no second creation (the expectations), no status write (nothing changed)"
    );
}

#[tokio::test]
async fn each_created_node_gets_an_event_naming_it() {
    let f = two_zones();
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let mut notes = Vec::new();
    for _ in 0..2 {
        let created = expect_echo(&mut api, Method::POST, NODES).await;
        let name = created.body["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let zone = created.body["spec"]["zone"].as_str().unwrap().to_string();
        let event = expect_event(&mut api).await;
        notes.push((
            event.body["note"].as_str().unwrap_or_default().to_string(),
            format!("created media node {name} in zone {zone}"),
        ));
    }
    expect_fleet_status(&mut api, &f).await;
    task.await.unwrap().unwrap();
    for (got, want) in notes {
        assert_eq!(got, want);
    }
}

#[tokio::test]
async fn scale_down_drains_the_ready_node_with_the_fewest_rooms() {
    let mut f = fleet_with_zones(&[("a", 1, 5)]);
    f.spec.replicas = Some(2);
    f.spec.rollout.at_deadline = DrainMode::Wait;
    f.spec.rollout.drain_deadline = std::time::Duration::from_secs(30 * 60).into();
    let nodes = vec![
        node_in("visio-a-0", "a", 0, NodePhase::Ready),
        node_in("visio-a-1", "a", 1, NodePhase::Ready),
        node_in("visio-a-2", "a", 2, NodePhase::Ready),
    ];
    let rooms = vec![
        placed_room("r1", 10, "visio-a-0", "a"),
        placed_room("r2", 10, "visio-a-0", "a"),
        placed_room("r3", 10, "visio-a-2", "a"),
    ];
    let (ctx, mut api) = context_with(vec![f.clone()], nodes, rooms, vec![], FakeAdmin::default());
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;

    let before = Timestamp::now();
    let patch = expect(
        &mut api,
        Method::PATCH,
        &format!("{NODES}/visio-a-1"),
        reply(&node_in("visio-a-1", "a", 1, NodePhase::Ready)),
    )
    .await;
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json"),
        "a merge patch of spec.drain only"
    );
    let drain = &patch.body["spec"]["drain"];
    assert_eq!(
        patch.body.as_object().map(serde_json::Map::len),
        Some(1),
        "{}",
        patch.body
    );
    assert_eq!(drain["reason"], "ScaleDown");
    assert_eq!(
        drain["mode"], "Wait",
        "the mode comes from the fleet's rollout"
    );
    let deadline: Timestamp = drain["deadline"].as_str().unwrap().parse().unwrap();
    let after = Timestamp::now();
    assert!(
        deadline >= before + SignedDuration::from_mins(29)
            && deadline <= after + SignedDuration::from_mins(31),
        "deadline {deadline} is the rollout's drainDeadline from now"
    );
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "NodeDraining");
    assert_eq!(
        event.body["note"],
        "draining media node visio-a-1 (ScaleDown)"
    );

    let status = expect_fleet_status(&mut api, &f).await;
    assert_eq!(status["replicas"], 3);
    assert_eq!(status["zones"][0]["rooms"], 3);
    assert_eq!(status["zones"][0]["usedSlots"], 30);
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    expect_no_request(&mut api).await;
}

#[tokio::test]
async fn scaling_up_again_cancels_a_scale_down_drain_before_creating() {
    let mut f = fleet_with_zones(&[("a", 1, 5)]);
    f.spec.replicas = Some(2);
    let mut draining = node_in("visio-a-1", "a", 1, NodePhase::Draining);
    draining.spec.drain = Some(drain_request("ScaleDown"));
    let nodes = vec![node_in("visio-a-0", "a", 0, NodePhase::Ready), draining];
    let (ctx, mut api) = context_with(vec![f.clone()], nodes, vec![], vec![], FakeAdmin::default());
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let patch = expect(
        &mut api,
        Method::PATCH,
        &format!("{NODES}/visio-a-1"),
        reply(&node_in("visio-a-1", "a", 1, NodePhase::Draining)),
    )
    .await;
    assert_eq!(
        patch.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(patch.body, serde_json::json!({"spec": {"drain": null}}));
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "NodeUndrained");
    expect_fleet_status(&mut api, &f).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    expect_no_request(&mut api).await;
}

#[tokio::test]
async fn a_drained_node_loses_its_pod_service_and_object_and_is_replaced() {
    let f = fleet_with_zones(&[("a", 1, 5)]);
    let mut drained = node_in("visio-a-0", "a", 0, NodePhase::Drained);
    drained.spec.drain = Some(drain_request("ScaleDown"));
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![drained.clone()],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    ctx.live()
        .running(&NodeKey::new("ns", "visio-a-0"), std::time::Instant::now());
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;

    // Pod and Service first (already gone: fine), then the node.
    expect_not_found(
        &mut api,
        Method::DELETE,
        "/api/v1/namespaces/ns/pods/visio-a-0",
    )
    .await;
    expect_not_found(
        &mut api,
        Method::DELETE,
        "/api/v1/namespaces/ns/services/visio-a-0-media",
    )
    .await;
    expect(
        &mut api,
        Method::DELETE,
        &format!("{NODES}/visio-a-0"),
        reply(&drained),
    )
    .await;
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "NodeDeleted");
    assert_eq!(event.body["note"], "deleted media node visio-a-0");

    // Zone a is below its minimum: a replacement, with another index than the node going.
    let created = expect_echo(&mut api, Method::POST, NODES).await;
    assert_eq!(created.body["metadata"]["name"], "visio-a-1");
    assert_eq!(created.body["metadata"]["labels"]["ruche.dev/index"], "1");
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "NodeCreated");
    let status = expect_fleet_status(&mut api, &f).await;
    assert_eq!(status["phases"]["drained"], 1);
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    assert!(
        ctx.live().node(&NodeKey::new("ns", "visio-a-0")).is_none(),
        "the live view forgets the deleted node"
    );

    // Again, before the cache shows either change: nothing deleted or created twice.
    let mut again = f.clone();
    again.status = Some(serde_json::from_value(status).unwrap());
    let task = spawn_reconcile(&ctx, &again);
    secrets_exist(&mut api).await;
    expect_no_request(&mut api).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
}

#[tokio::test]
async fn a_failed_pod_deletion_fails_the_reconcile_before_the_node_goes() {
    let f = fleet_with_zones(&[("a", 0, 5)]);
    let mut drained = node_in("visio-a-0", "a", 0, NodePhase::Drained);
    drained.spec.drain = Some(drain_request("ScaleDown"));
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![drained],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    expect_status(
        &mut api,
        Method::DELETE,
        "/api/v1/namespaces/ns/pods/visio-a-0",
        StatusCode::INTERNAL_SERVER_ERROR,
        status_reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "etcd is away",
        ),
    )
    .await;
    let result = task.await.unwrap();
    assert!(matches!(result, Err(Error::Kube(_))), "{result:?}");
    expect_no_request(&mut api).await;
    let error = result.unwrap_err();
    let f = Arc::new(f);
    // A transient error: retried after a second, then two, then four.
    for secs in [1, 2, 4] {
        assert_eq!(
            fleet::error_policy(f.clone(), &error, ctx.clone()),
            Action::requeue(std::time::Duration::from_secs(secs))
        );
    }
    assert!(
        ctx.metrics.encode().contains(
            "ruche_operator_reconcile_errors_total{controller=\"fleet\",error=\"kube\"} 3"
        )
    );
}

#[tokio::test]
async fn an_empty_node_of_a_zone_the_fleet_dropped_is_deleted() {
    let f = fleet_with_zones(&[("a", 0, 5)]);
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![node_in("visio-b-0", "b", 0, NodePhase::Ready)],
        vec![],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    expect_not_found(
        &mut api,
        Method::DELETE,
        "/api/v1/namespaces/ns/pods/visio-b-0",
    )
    .await;
    expect_not_found(
        &mut api,
        Method::DELETE,
        "/api/v1/namespaces/ns/services/visio-b-0-media",
    )
    .await;
    expect_not_found(&mut api, Method::DELETE, &format!("{NODES}/visio-b-0")).await;
    assert_eq!(expect_event(&mut api).await.body["reason"], "NodeDeleted");
    let status = expect_fleet_status(&mut api, &f).await;
    assert_eq!(status["replicas"], 1);
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
}

#[tokio::test]
async fn a_node_of_a_zone_the_fleet_dropped_drains_while_it_has_rooms() {
    let f = fleet_with_zones(&[("a", 0, 5)]);
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        vec![node_in("visio-b-0", "b", 0, NodePhase::Ready)],
        vec![placed_room("r1", 10, "visio-b-0", "b")],
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let patch = expect(
        &mut api,
        Method::PATCH,
        &format!("{NODES}/visio-b-0"),
        reply(&node_in("visio-b-0", "b", 0, NodePhase::Ready)),
    )
    .await;
    assert_eq!(patch.body["spec"]["drain"]["reason"], "ScaleDown");
    assert_eq!(expect_event(&mut api).await.body["reason"], "NodeDraining");
    expect_fleet_status(&mut api, &f).await;
    task.await.unwrap().unwrap();
}

// The fleet's status as a pure function.

fn arcs(nodes: &[MediaNode]) -> Vec<Arc<MediaNode>> {
    nodes.iter().cloned().map(Arc::new).collect()
}

fn with_revision(mut n: MediaNode, rev: &str) -> MediaNode {
    n.spec.revision = rev.into();
    n
}

fn status_of(
    f: &MediaFleet,
    nodes: &[MediaNode],
    rooms: &[ruche_crds::Room],
    desired: &[u32],
) -> MediaFleetStatus {
    let (placement, _) = FleetPlacement::build(f, nodes, rooms).unwrap();
    fleet_status(f, &arcs(nodes), Some(placement.snapshot()), desired)
}

fn cond(status: &MediaFleetStatus, type_: &str) -> (String, String, String) {
    let c = status
        .conditions
        .condition(type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn owned(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

#[test]
fn fleet_status_counts_nodes_by_phase_zone_and_revision_and_use_from_placements() {
    let f = fleet_with_zones(&[("a", 1, 5), ("b", 1, 5), ("c", 0, 5)]);
    let rev = revision(&f);
    let mut draining = node_in("visio-a-1", "a", 1, NodePhase::Ready);
    draining.spec.drain = Some(drain_request("Manual"));
    let nodes = vec![
        with_revision(node_in("visio-a-0", "a", 0, NodePhase::Ready), &rev),
        with_revision(draining, &rev),
        with_revision(node_in("visio-a-2", "a", 2, NodePhase::Pending), "0ld"),
        with_revision(node_in("visio-b-3", "b", 3, NodePhase::Failed), "0ld"),
        with_revision(node_in("visio-b-4", "b", 4, NodePhase::Starting), &rev),
    ];
    let rooms = vec![
        placed_room("r1", 30, "visio-a-0", "a"),
        placed_room("r2", 10, "visio-a-1", "a"),
    ];
    let s = status_of(&f, &nodes, &rooms, &[2, 1, 0]);

    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(s.replicas, 5);
    assert_eq!(s.selector.as_deref(), Some("ruche.dev/fleet=visio"));
    assert_eq!(s.update_revision.as_deref(), Some(rev.as_str()));
    assert_eq!(
        (
            s.phases.pending,
            s.phases.starting,
            s.phases.ready,
            s.phases.draining,
            s.phases.drained,
            s.phases.failed
        ),
        (1, 1, 2, 0, 0, 1)
    );
    let zones: Vec<_> = s
        .zones
        .iter()
        .map(|z| {
            (
                z.name.as_str(),
                z.nodes,
                z.ready_nodes,
                z.slots,
                z.used_slots,
                z.rooms,
            )
        })
        .collect();
    assert_eq!(
        zones,
        [
            // Only the Ready node without a drain serves: its slots, its use; rooms anywhere.
            ("a", 3, 1, 100, 30, 2),
            ("b", 2, 0, 0, 0, 0),
            ("c", 0, 0, 0, 0, 0),
        ]
    );
    assert_eq!((s.slots, s.used_slots), (100, 30));
    let revisions: Vec<_> = s
        .revisions
        .iter()
        .map(|r| (r.revision.as_str(), r.nodes, r.ready_nodes))
        .collect();
    assert_eq!(revisions, [("0ld", 2, 0), (rev.as_str(), 3, 2)]);

    assert_eq!(
        cond(&s, "Available"),
        owned(
            "False",
            "ZoneWithoutReadyNode",
            "no Ready media node in zone b"
        )
    );
    assert_eq!(
        cond(&s, "Progressing"),
        owned("True", "Scaling", "2 of 3 media nodes Ready (5 exist)")
    );
    assert_eq!(
        cond(&s, "Degraded"),
        owned(
            "True",
            "NodesFailed",
            "1 media nodes Failed; being replaced"
        )
    );
    assert!(
        s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(1))
    );
}

#[test]
fn fleet_status_of_a_settled_fleet_and_of_one_with_no_ready_node() {
    let f = fleet_with_zones(&[("a", 1, 5), ("b", 1, 5)]);
    let serving = vec![
        node_in("visio-a-0", "a", 0, NodePhase::Ready),
        node_in("visio-b-1", "b", 1, NodePhase::Ready),
    ];
    let s = status_of(&f, &serving, &[], &[1, 1]);
    assert_eq!(
        cond(&s, "Available"),
        owned("True", "Serving", "2 media nodes Ready")
    );
    assert_eq!(
        cond(&s, "Progressing"),
        owned("False", "Settled", "2 media nodes Ready, as desired")
    );
    assert_eq!(
        cond(&s, "Degraded"),
        owned("False", "Healthy", "no media node has failed")
    );
    assert_eq!((s.ready_replicas, s.slots, s.used_slots), (2, 200, 0));

    let starting = vec![
        node_in("visio-a-0", "a", 0, NodePhase::Starting),
        node_in("visio-b-1", "b", 1, NodePhase::Pending),
    ];
    let s = status_of(&f, &starting, &[], &[1, 1]);
    assert_eq!(
        cond(&s, "Available"),
        owned("False", "NoReadyNode", "no media node is Ready")
    );
    assert_eq!(
        cond(&s, "Progressing"),
        owned("True", "Scaling", "0 of 2 media nodes Ready (2 exist)")
    );

    // Without placements (no snapshot yet), zones have no slots.
    let s = fleet_status(&f, &arcs(&serving), None, &[1, 1]);
    assert_eq!(
        (s.slots, s.zones[0].slots, s.zones[0].ready_nodes),
        (0, 0, 1)
    );
}

#[test]
fn fleet_status_keeps_transition_times_of_unchanged_conditions() {
    let mut f = fleet_with_zones(&[("a", 1, 5)]);
    let nodes = vec![node_in("visio-a-0", "a", 0, NodePhase::Ready)];
    let first = status_of(&f, &nodes, &[], &[1]);
    let long_ago = Time(Timestamp::from_second(1_000_000).unwrap());
    let mut written = first.clone();
    for c in &mut written.conditions {
        c.last_transition_time = long_ago.clone();
    }
    written.rollout = Some(ruche_crds::fleet::RolloutStatus {
        revision: "r2".into(),
        ..Default::default()
    });
    f.status = Some(written.clone());
    let again = status_of(&f, &nodes, &[], &[1]);
    assert_eq!(
        again, written,
        "nothing changed: the same status, rollout kept"
    );

    // Scaling to two: Progressing turns True (a new transition time), Available stays.
    let scaled = status_of(&f, &nodes, &[], &[2]);
    let times = |s: &MediaFleetStatus, t: &str| {
        s.conditions
            .condition(t)
            .map(|c| c.last_transition_time.clone())
    };
    assert_eq!(times(&scaled, "Available"), Some(long_ago.clone()));
    assert_ne!(times(&scaled, "Progressing"), Some(long_ago));
    assert_eq!(cond(&scaled, "Progressing").0, "True");
}

#[test]
fn ready_replicas_leaves_out_nodes_asked_to_drain() {
    let f = fleet_with_zones(&[("a", 1, 5)]);
    let mut draining = node_in("visio-a-1", "a", 1, NodePhase::Ready);
    draining.spec.drain = Some(drain_request("ScaleDown"));
    let nodes = vec![node_in("visio-a-0", "a", 0, NodePhase::Ready), draining];
    let s = status_of(&f, &nodes, &[], &[1]);
    assert_eq!(s.zones[0].ready_nodes, 1);
    assert_eq!(s.ready_replicas, 1, "Media nodes Ready and not draining");
}

#[tokio::test]
async fn a_new_revision_that_serves_worse_than_the_old_halts_its_rollout_on_the_quality_gate() {
    use ruche_crds::admin::RoomQuality;
    use ruche_operator::controller::admin::RoomReport;
    use ruche_operator::core::health::Reported;
    let mut f = fleet_with_zones(&[("a", 2, 2)]);
    f.spec.rollout.quality_gate = Some(ruche_crds::fleet::QualityGate {
        min_joins: 10,
        join_failure_points: 5,
        loss_points: 2,
        rtt_ms: 50,
    });
    let nodes = vec![
        with_revision(node_in("visio-a-0", "a", 0, NodePhase::Ready), "old"),
        with_revision(node_in("visio-a-1", "a", 1, NodePhase::Ready), "old"),
        // The current revision (fixture nodes of revision "r1" run the fleet's template).
        node_in("visio-a-2", "a", 2, NodePhase::Ready),
    ];
    let (ctx, mut api) = context_with(vec![f.clone()], nodes, vec![], vec![], FakeAdmin::default());
    // The old revision's rooms are fine; the new one loses 6% of its packets.
    for (node, loss) in [("visio-a-0", 0.5), ("visio-a-1", 1.0), ("visio-a-2", 6.0)] {
        let mut report = support::node_report("Ready", "10.0.0.1:7882");
        report.rooms = vec![RoomReport {
            name: format!("room-on-{node}"),
            participants: 12,
            quality: RoomQuality {
                joins: 12,
                join_failures: 0,
                loss_percent: Some(loss),
                rtt_ms: Some(40.0),
            },
            ..RoomReport::default()
        }];
        ctx.live().answered(
            &NodeKey::new("ns", node),
            report,
            Reported::Ready,
            std::time::Instant::now(),
        );
    }
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let halted = expect_event(&mut api).await;
    assert_eq!(halted.body["reason"], "QualityGate");
    assert_eq!(halted.body["type"], "Warning");
    assert!(
        halted.body["note"]
            .as_str()
            .unwrap()
            .contains("packet loss 6.0% on the new revision against 0.8% on the old one"),
        "{}",
        halted.body["note"]
    );
    assert_eq!(
        expect_event(&mut api).await.body["reason"],
        "RolloutStarted"
    );
    // Halted at once: no old node drains.
    let status = expect_fleet_status(&mut api, &f).await;
    assert_eq!(status["rollout"]["halted"]["reason"], "QualityGate");
    assert_eq!(status["rollout"]["remainingNodes"], 2);
    let degraded = condition(&status, "Degraded");
    assert_eq!(
        (&degraded["status"], &degraded["reason"]),
        (&Value::from("True"), &Value::from("RolloutHalted"))
    );
    assert!(task.await.unwrap().is_ok());
}

const FLEET_SCALE: &str = "/apis/ruche.dev/v1alpha1/namespaces/ns/mediafleets/visio/scale";

/// What the API server answers to a write of the scale subresource.
fn scale_reply(replicas: u32) -> Value {
    serde_json::json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": { "name": "visio", "namespace": "ns" },
        "spec": { "replicas": replicas }, "status": { "replicas": replicas }
    })
}

fn autoscaled(buffer: i32) -> MediaFleet {
    let mut f = fleet_with_zones(&[("a", 1, 5)]);
    f.spec.autoscaling = Some(ruche_crds::fleet::AutoscalingSpec {
        buffer_slots: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(buffer),
        scale_down_delay: std::time::Duration::from_secs(600).into(),
        schedules: Vec::new(),
        zone_failure_reserve: false,
    });
    f
}

#[tokio::test]
async fn rooms_that_eat_the_buffer_grow_the_zone_at_once_and_the_autoscaler_owns_replicas() {
    let f = autoscaled(100);
    let nodes = vec![
        node_in("visio-a-0", "a", 0, NodePhase::Ready),
        node_in("visio-a-1", "a", 1, NodePhase::Ready),
    ];
    let rooms = vec![
        placed_room("r1", 80, "visio-a-0", "a"),
        placed_room("r2", 70, "visio-a-1", "a"),
    ];
    let (ctx, mut api) = context_with(vec![f.clone()], nodes, rooms, vec![], FakeAdmin::default());
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "ScaleUp");
    assert_eq!(
        event.body["note"],
        "zone a: 50 free slots < buffer 100, +1 node (2 → 3)"
    );
    let created = expect_echo(&mut api, Method::POST, NODES).await;
    assert_eq!(created.body["metadata"]["name"], "visio-a-2");
    assert_eq!(expect_event(&mut api).await.body["reason"], "NodeCreated");
    let scale = expect(&mut api, Method::PATCH, FLEET_SCALE, scale_reply(3)).await;
    assert_eq!(
        scale.content_type.as_deref(),
        Some("application/merge-patch+json")
    );
    assert_eq!(scale.body, serde_json::json!({"spec": {"replicas": 3}}));
    let status = expect_fleet_status(&mut api, &f).await;
    let zone = &status["zones"][0];
    assert_eq!(
        (
            &zone["desiredNodes"],
            &zone["bufferSlots"],
            &zone["bookedSlots"]
        ),
        (&Value::from(3), &Value::from(100), &Value::from(0))
    );
    assert_eq!(condition(&status, "Autoscaling")["reason"], "BuffersKept");
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    expect_no_request(&mut api).await;
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("ruche_operator_scale_decisions_total{fleet=\"ns/visio\",zone=\"a\",direction=\"up\",reason=\"BufferShort\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_surplus_drains_the_emptiest_node_only_after_the_delay() {
    let mut f = autoscaled(50);
    f.spec.replicas = Some(3);
    let nodes = vec![
        node_in("visio-a-0", "a", 0, NodePhase::Ready),
        node_in("visio-a-1", "a", 1, NodePhase::Ready),
        node_in("visio-a-2", "a", 2, NodePhase::Ready),
    ];
    let rooms = vec![
        placed_room("r1", 30, "visio-a-0", "a"),
        placed_room("r2", 10, "visio-a-2", "a"),
    ];
    // The surplus began 5 minutes ago: the delay (10 minutes) has not run out.
    let since = |mins: i64| Time(Timestamp::now() - SignedDuration::from_mins(mins));
    let mut status = MediaFleetStatus::default();
    status.zones.push(ruche_crds::ZoneStatus {
        name: "a".into(),
        desired_nodes: 3,
        surplus_since: Some(since(5)),
        ..Default::default()
    });
    f.status = Some(status.clone());
    let (ctx, mut api) = context_with(
        vec![f.clone()],
        nodes.clone(),
        rooms.clone(),
        vec![],
        FakeAdmin::default(),
    );
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let written = expect_fleet_status(&mut api, &f).await;
    assert_eq!(written["zones"][0]["desiredNodes"], 3, "{written}");
    assert!(
        written["zones"][0]["surplusSince"].is_string(),
        "the surplus is remembered: {written}"
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    expect_no_request(&mut api).await;

    // Eleven minutes of surplus: one node drains, the emptiest (visio-a-1, no room).
    status.zones[0].surplus_since = Some(since(11));
    f.status = Some(status);
    let (ctx, mut api) = context_with(vec![f.clone()], nodes, rooms, vec![], FakeAdmin::default());
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["reason"], "ScaleDown");
    let note = event.body["note"].as_str().unwrap_or_default();
    assert!(
        note.starts_with("zone a: 260 free slots ≥ buffer 50 + one node's slots since "),
        "{note}"
    );
    assert!(note.ends_with(", -1 node (3 → 2)"), "{note}");
    let patch = expect(
        &mut api,
        Method::PATCH,
        &format!("{NODES}/visio-a-1"),
        reply(&node_in("visio-a-1", "a", 1, NodePhase::Ready)),
    )
    .await;
    assert_eq!(patch.body["spec"]["drain"]["reason"], "ScaleDown");
    assert_eq!(expect_event(&mut api).await.body["reason"], "NodeDraining");
    let scale = expect(&mut api, Method::PATCH, FLEET_SCALE, scale_reply(2)).await;
    assert_eq!(scale.body, serde_json::json!({"spec": {"replicas": 2}}));
    let written = expect_fleet_status(&mut api, &f).await;
    assert!(
        written["zones"][0]["lastScaleDownTime"].is_string(),
        "{written}"
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    expect_no_request(&mut api).await;
}

#[tokio::test]
async fn an_unknown_time_zone_stops_autoscaling_with_a_condition_and_the_fleet_keeps_its_size() {
    let mut f = autoscaled(100);
    if let Some(a) = f.spec.autoscaling.as_mut() {
        a.schedules.push(ruche_crds::fleet::ScheduleWindow {
            name: "mornings".into(),
            days: Vec::new(),
            start: "07:00".into(),
            end: "10:00".into(),
            time_zone: "Europe/Lutece".into(),
            buffer_slots: k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(400),
        });
    }
    let nodes = vec![
        node_in("visio-a-0", "a", 0, NodePhase::Ready),
        node_in("visio-a-1", "a", 1, NodePhase::Ready),
    ];
    // The buffer is short, but nothing is created: the settings are unusable.
    let rooms = vec![placed_room("r1", 190, "visio-a-0", "a")];
    let (ctx, mut api) = context_with(vec![f.clone()], nodes, rooms, vec![], FakeAdmin::default());
    let task = spawn_reconcile(&ctx, &f);
    secrets_exist(&mut api).await;
    let event = expect_event(&mut api).await;
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidAutoscaling");
    let text = "autoscaling stopped, the fleet keeps its size: schedule mornings: time zone \"Europe/Lutece\" does not exist (an IANA name such as Europe/Paris)";
    assert_eq!(event.body["note"], text);
    let status = expect_fleet_status(&mut api, &f).await;
    let c = condition(&status, "Autoscaling");
    assert_eq!(
        (&c["status"], &c["reason"], &c["message"]),
        (
            &Value::from("False"),
            &Value::from("InvalidSettings"),
            &Value::from(text)
        )
    );
    assert_eq!(status["zones"][0]["desiredNodes"], 2);
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(fleet::RESYNC));
    expect_no_request(&mut api).await;
}
