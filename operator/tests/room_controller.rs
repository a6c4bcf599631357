//! The room controller against a mock API server: the requests each reconcile makes, in
//! order, and what the nodes' agents tell the media nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use http::Method;
use kube::runtime::controller::Action;
use ruche_crds::NodePhase;
use ruche_operator::controller::room;
use ruche_operator::state::keys::NodeKey;
use support::{
    FakeAdmin, Seen, context, context_with, event_reply, expect, expect_after_token,
    expect_no_request, fleet, node, room, room_reply, secret_reply,
};

const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/ns/events";

/// The status a room's status write puts: one JSON patch, `add` of the whole `/status`, as the
/// operator's field manager.
fn replaced_status(seen: &Seen) -> &serde_json::Value {
    assert_eq!(
        seen.content_type.as_deref(),
        Some("application/json-patch+json")
    );
    assert_eq!(
        seen.query.get("fieldManager").map(String::as_str),
        Some("ruche-operator")
    );
    assert_eq!(seen.body[0]["op"], "add", "{}", seen.body);
    assert_eq!(seen.body[0]["path"], "/status", "{}", seen.body);
    &seen.body[0]["value"]
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
    // The node's agent reads the admin token, then pushes the list; only then the status.
    let status = expect_after_token(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/weekly/status",
        room_reply("weekly"),
    )
    .await;
    let s = replaced_status(&status);
    assert_eq!(
        (s["node"].as_str(), s["zone"].as_str(), s["phase"].as_str()),
        (Some("a1"), Some("a"), Some("Scheduled")),
        "{s}"
    );
    assert_eq!(s["endpoint"], "ws://10.0.0.1:7880/ws");
    assert_eq!(s["conditions"][0]["type"], "Scheduled");
    assert_eq!(s["conditions"][0]["status"], "True");
    assert!(s["scheduledAt"].is_string());
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
    let mut assigns = admin.wait_assigns(2).await;
    assigns.sort();
    assert_eq!(
        assigns,
        [
            r#"assign http://10.0.0.1:7881 admin-secret-token [("weekly", 12)]"#,
            // The first placement gives every node of the fleet this leader's list.
            "assign http://10.0.0.2:7881 admin-secret-token []",
        ],
        "the node learns of the room before its status is written"
    );
    assert_eq!(
        admin.versions.lock().unwrap().first().map(|v| v.epoch()),
        Some(1),
        "the list carries the leader's epoch"
    );
    // Reconciling again changes nothing on the node and does not place twice.
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let mut again = r.clone();
        again.status = Some(serde_json::from_value(s.clone()).unwrap());
        async move { room::apply(&again, &ctx).await }
    });
    expect_no_request(&mut api).await;
    assert_eq!(task.await.unwrap().unwrap(), Action::requeue(room::RESYNC));
    assert_eq!(
        admin.assigns().len(),
        2,
        "no second assignment push, no status write, no event"
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
    let s = replaced_status(&status);
    assert_eq!(s["phase"], "Pending");
    assert_eq!(s["conditions"][0]["status"], "False");
    assert_eq!(s["conditions"][0]["reason"], "NoReadyNode");
    assert_eq!(
        s["conditions"][0]["message"],
        "no node can take 40 slots: a: no Ready node (1 starting, 0 draining, 0 failed)"
    );
    // (The first placement in the fleet gives every node this leader's list: the starting
    // node's agent reads the token to send it an empty one.)
    let event = expect_after_token(
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
    assert_eq!(
        admin.wait_assigns(1).await,
        ["assign http://10.0.0.1:7881 admin-secret-token []"],
        "no room for the starting node"
    );
}

#[tokio::test]
async fn a_node_that_does_not_take_the_room_releases_the_placement_and_fails_the_reconcile() {
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
        matches!(result, Err(ruche_operator::controller::Error::Waiting(_))),
        "{result:?}"
    );
    assert_eq!(
        result.unwrap_err().class(),
        ruche_operator::controller::ErrorClass::Transient,
        "retried with a backoff"
    );
    // No status was written, and the 90 slots are free again for the retry.
    let a1 = NodeKey::new("ns", "a1");
    assert!(ctx.registry().list(&a1).unwrap().1.is_empty());
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
        replaced_status(&status)["node"],
        "a1",
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
        replaced_status(&status)["conditions"][0]["reason"],
        "FleetNotFound"
    );
    assert_eq!(
        replaced_status(&status)["conditions"][0]["message"],
        "no MediaFleet nope in namespace ns"
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_room_empty_for_its_timeout_is_closed_on_its_node() {
    // Placed an hour and a minute ago; nobody ever joined; the timeout is an hour.
    let mut r = room("stale", 4);
    let placed_at = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(3660))
        .unwrap();
    r.status = Some(ruche_crds::RoomStatus {
        phase: ruche_crds::RoomPhase::Scheduled,
        node: Some("a1".into()),
        zone: Some("a".into()),
        endpoint: Some("ws://10.0.0.1:7880/ws".into()),
        scheduled_at: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            placed_at,
        )),
        ..Default::default()
    });
    // The room is in the cache, as after a restart: its placement is taken from its status.
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context_with(
        vec![fleet()],
        vec![node("a1", "10.0.0.1", NodePhase::Ready)],
        vec![r.clone()],
        vec![],
        admin.clone(),
    );
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&r, &ctx).await }
    });
    // The node's agent pushes the list without the room while the status is written.
    let status = expect_after_token(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/stale/status",
        room_reply("stale"),
    )
    .await;
    assert_eq!(replaced_status(&status)["phase"], "Closed");
    assert_eq!(
        replaced_status(&status)["conditions"][0]["reason"],
        "Closed"
    );
    let event = expect_after_token(
        &mut api,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events",
        event_reply(),
    )
    .await;
    assert_eq!(event.body["reason"], "Closed");
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
    assert_eq!(
        admin.wait_assigns(1).await,
        vec!["assign http://10.0.0.1:7881 admin-secret-token []".to_string()],
        "the node's list no longer has the room, which ends it there"
    );
    assert!(
        ctx.registry()
            .list(&NodeKey::new("ns", "a1"))
            .unwrap()
            .1
            .is_empty()
    );
}

#[tokio::test]
async fn a_deleted_room_frees_its_slots_at_once_and_wakes_a_waiting_room() {
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context(
        vec![node("a1", "10.0.0.1", NodePhase::Ready)],
        admin.clone(),
    );
    let big = room("big", 100);
    let task = tokio::spawn({
        let (ctx, big) = (ctx.clone(), big.clone());
        async move { room::apply(&big, &ctx).await }
    });
    expect_after_token(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/big/status",
        room_reply("big"),
    )
    .await;
    expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    task.await.unwrap().unwrap();
    // The node is full: the next room waits.
    let next = room("next", 50);
    let task = tokio::spawn({
        let (ctx, next) = (ctx.clone(), next.clone());
        async move { room::apply(&next, &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/next/status",
        room_reply("next"),
    )
    .await;
    assert_eq!(
        replaced_status(&status)["conditions"][0]["reason"],
        "InsufficientCapacity"
    );
    expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    task.await.unwrap().unwrap();
    // The watch sees `big` deleted: no API call, no finalizer; the node's list loses it and
    // the waiting room is woken.
    let effects = ctx.registry().delete_room(&big);
    assert_eq!(
        effects
            .rooms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["ns/next"]
    );
    ctx.dispatch(effects);
    assert_eq!(
        admin.wait_assigns(2).await.last().map(String::as_str),
        Some("assign http://10.0.0.1:7881 admin-secret-token []")
    );
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&next, &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/next/status",
        room_reply("next"),
    )
    .await;
    assert_eq!(
        replaced_status(&status)["node"],
        "a1",
        "the freed slots are used at once"
    );
    expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_room_deleted_with_the_finalizer_of_an_earlier_version_is_let_go() {
    let (ctx, mut api) = context(vec![], FakeAdmin::default());
    let mut old = room("old", 4);
    old.metadata.finalizers = Some(vec![
        room::LEGACY_FINALIZER.into(),
        "example.org/keep".into(),
    ]);
    old.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    old.metadata.resource_version = Some("42".into());
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::reconcile(std::sync::Arc::new(old), ctx).await }
    });
    let patch = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/old",
        room_reply("old"),
    )
    .await;
    assert_eq!(
        patch.body["metadata"],
        serde_json::json!({"finalizers": ["example.org/keep"], "resourceVersion": "42"}),
        "only our finalizer goes, and only from the version read"
    );
    assert_eq!(task.await.unwrap().unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_room_moved_off_a_draining_node_goes_migrating_then_scheduled_and_only_then_its_participants_are_told()
 {
    let admin = FakeAdmin::default();
    let a1 = node("a1", "10.0.0.1", NodePhase::Ready);
    let (ctx, mut api) = context(
        vec![a1.clone(), node("a2", "10.0.0.2", NodePhase::Ready)],
        admin.clone(),
    );
    let r = room("weekly", 12);
    let task = tokio::spawn({
        let (ctx, r) = (ctx.clone(), r.clone());
        async move { room::apply(&r, &ctx).await }
    });
    let path = "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/weekly/status";
    let placed = expect_after_token(&mut api, Method::PATCH, path, room_reply("weekly")).await;
    let placed = replaced_status(&placed).clone();
    assert_eq!(placed["node"], "a1");
    expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    task.await.unwrap().unwrap();

    // a1 drains and its deadline has come: the room is planned onto a2.
    let mut draining = a1.clone();
    draining.spec.drain = Some(ruche_crds::node::DrainRequest {
        deadline: None,
        mode: ruche_crds::DrainMode::Migrate,
        reason: Some("Manual".into()),
    });
    let _ = ctx.registry().apply_node(std::sync::Arc::new(draining));
    let effects = ctx
        .registry()
        .migrate_off(&NodeKey::new("ns", "a1"), std::time::Instant::now());
    assert_eq!(effects.migrated.len(), 1, "{effects:?}");
    assert_eq!(
        (
            effects.migrated[0].1.as_str(),
            effects.migrated[0].2.as_str()
        ),
        ("a1", "a2")
    );
    ctx.dispatch(effects);

    let mut on_a1 = r.clone();
    on_a1.status = Some(serde_json::from_value(placed).unwrap());
    let task = tokio::spawn({
        let ctx = ctx.clone();
        async move { room::apply(&on_a1, &ctx).await }
    });
    let moving = expect_after_token(&mut api, Method::PATCH, path, room_reply("weekly")).await;
    let moving = replaced_status(&moving);
    assert_eq!(
        (moving["phase"].as_str(), moving["node"].as_str()),
        (Some("Migrating"), Some("a1")),
        "{moving}"
    );
    let event = expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    assert_eq!(event.body["reason"], "Migrating");
    assert!(
        admin.calls().iter().all(|c| !c.starts_with("migrate")),
        "nobody is told before the new node holds the room"
    );
    let moved = expect_after_token(&mut api, Method::PATCH, path, room_reply("weekly")).await;
    let moved = replaced_status(&moved);
    assert_eq!(
        (
            moved["phase"].as_str(),
            moved["node"].as_str(),
            moved["endpoint"].as_str()
        ),
        (Some("Scheduled"), Some("a2"), Some("ws://10.0.0.2:7880/ws")),
        "node, endpoint and phase change in one write: {moved}"
    );
    let migration = moved["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == room::MIGRATION)
        .cloned()
        .unwrap();
    assert_eq!(
        (migration["status"].as_str(), migration["reason"].as_str()),
        (Some("True"), Some("Migrated"))
    );
    assert!(
        admin
            .assigns()
            .iter()
            .any(|a| a == r#"assign http://10.0.0.2:7881 admin-secret-token [("weekly", 12)]"#),
        "a2 took the room before its endpoint was published: {:?}",
        admin.assigns()
    );
    let event = expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    assert_eq!(event.body["reason"], "Migrated");
    assert!(
        admin
            .calls()
            .contains(&"migrate http://10.0.0.1:7881 weekly ws://10.0.0.2:7880/ws".to_string()),
        "{:?}",
        admin.calls()
    );
    task.await.unwrap().unwrap();
    // a1 keeps the room as leaving (its sessions stay until they have rejoined), reserving
    // nothing for it.
    let (_, list) = ctx.registry().list(&NodeKey::new("ns", "a1")).unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].leaving && list[0].room == "weekly" && list[0].slots == 0);
}

#[tokio::test]
async fn a_room_booked_ahead_waits_pending_until_its_lead_time_and_says_so() {
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context(
        vec![node("a1", "10.0.0.1", NodePhase::Ready)],
        admin.clone(),
    );
    let start = jiff::Timestamp::now() + jiff::SignedDuration::from_mins(65);
    let mut r = room("plenary", 40);
    r.spec.start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(start));
    let task = tokio::spawn({
        let ctx = ctx.clone();
        let r = r.clone();
        async move { room::apply(&r, &ctx).await }
    });
    let status = expect(
        &mut api,
        Method::PATCH,
        "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/plenary/status",
        room_reply("plenary"),
    )
    .await;
    let s = replaced_status(&status);
    assert_eq!(s["phase"], "Pending");
    assert!(s["node"].is_null(), "not placed yet: {s}");
    let by_type = |t: &str| {
        s["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .cloned()
            .unwrap_or_default()
    };
    let booking = by_type("Booking");
    assert_eq!(
        (booking["status"].as_str(), booking["reason"].as_str()),
        (Some("True"), Some("Booked"))
    );
    let message = booking["message"].as_str().unwrap_or_default();
    assert!(message.contains("its 40 slots are held from"), "{message}");
    assert!(message.ends_with("(the fleet's lead time 5m)"), "{message}");
    assert_eq!(by_type("Scheduled")["reason"], "Booked");
    assert!(task.await.unwrap().is_ok());
    expect_no_request(&mut api).await;
    // The autoscaler counts it as demand only from its lead time on.
    let key = ruche_operator::state::keys::FleetKey::new("ns", "visio");
    let mut registry = ctx.registry();
    registry.apply_room(std::sync::Arc::new(r));
    let _ = registry.ensure(&key);
    assert!(registry.waiting(&key, jiff::Timestamp::now()).is_empty());
    let within = start - jiff::SignedDuration::from_mins(4);
    let waiting = registry.waiting(&key, within);
    assert_eq!(waiting.iter().map(|w| w.slots).collect::<Vec<_>>(), [40]);
}

/// A leader moved a room off a draining node, wrote its status on the new node and died before
/// telling its participants. The next leader (this context, built from that status) learns
/// from the old node's poll that they are still there: the room becomes leaving that node, and
/// its reconcile tells them where to go.
#[tokio::test]
async fn participants_a_dead_leader_never_told_to_move_are_told_by_the_next_one() {
    let admin = FakeAdmin::default();
    let (ctx, mut api) = context(
        vec![
            node("a1", "10.0.0.1", NodePhase::Draining),
            node("a2", "10.0.0.2", NodePhase::Ready),
        ],
        admin.clone(),
    );
    let mut r = room("weekly", 12);
    r.status = Some(ruche_crds::RoomStatus {
        phase: ruche_crds::RoomPhase::Scheduled,
        node: Some("a2".into()),
        zone: Some("a".into()),
        endpoint: Some("ws://10.0.0.2:7880/ws".into()),
        ..Default::default()
    });
    ctx.registry().apply_room(std::sync::Arc::new(r.clone()));
    let built = ctx
        .registry()
        .ensure(&ruche_operator::state::keys::FleetKey::new("ns", "visio"))
        .unwrap();
    ctx.dispatch(built);
    // a1's poll shows the room with participants (what the agent hands the registry).
    let a1 = NodeKey::new("ns", "a1");
    let key = ruche_operator::core::RoomKey::new("ns/weekly");
    let adopted = ctx
        .registry()
        .adopt_leaving(&a1, [key.clone()], std::time::Instant::now());
    assert!(adopted.rooms.contains(&key), "{adopted:?}");
    ctx.dispatch(adopted);
    let (_, list) = ctx.registry().list(&a1).unwrap();
    assert!(
        list.len() == 1 && list[0].leaving && list[0].room == "weekly",
        "a1 keeps the sessions meanwhile: {list:?}"
    );

    let task = tokio::spawn({
        let (ctx, r) = (ctx.clone(), r.clone());
        async move { room::apply(&r, &ctx).await }
    });
    let path = "/apis/ruche.dev/v1alpha1/namespaces/ns/rooms/weekly/status";
    let written = expect_after_token(&mut api, Method::PATCH, path, room_reply("weekly")).await;
    let written = replaced_status(&written);
    assert_eq!(written["node"], "a2", "{written}");
    let event = expect(&mut api, Method::POST, EVENTS, event_reply()).await;
    assert_eq!(event.body["reason"], "Migrated");
    assert!(
        admin
            .calls()
            .contains(&"migrate http://10.0.0.1:7881 weekly ws://10.0.0.2:7880/ws".to_string()),
        "{:?}",
        admin.calls()
    );
    task.await.unwrap().unwrap();
}
