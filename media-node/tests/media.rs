//! Media through the node end to end, with `webrtc` crate clients on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The `webrtc` crate's futures are large; boxing them in tests buys nothing.
#![allow(clippy::large_futures)]

mod support;

use std::time::{Duration, Instant};

use ruche_media_node::signaling::Liveness;
use support::{Client, Node, NodeOptions, Pacer, eventually, stream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_a_publishers_video_and_audio() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let (video, audio) = alice.publish_av().await;
    let got = {
        let streaming = stream(
            &alice,
            &video,
            &audio,
            0xA1,
            Duration::from_secs(3),
            Duration::from_secs(1),
        );
        let waiting = eventually(Duration::from_secs(10), || {
            bob.received.lock().unwrap().count_from(&alice.id) > 40
        });
        tokio::join!(streaming, waiting).1
    };
    let received = bob.received.lock().unwrap();
    assert!(
        got,
        "bob received {} packets from alice",
        received.count_from(&alice.id)
    );
    let tracks: Vec<_> = received
        .packets
        .keys()
        .filter(|(s, _)| *s == alice.id)
        .collect();
    assert_eq!(tracks.len(), 2, "an audio and a video track: {tracks:?}");
    assert!(
        received
            .payloads_from(&alice.id)
            .iter()
            .all(|p| p.ends_with(&[0xA1; 20])),
        "payloads arrive intact"
    );
    let published = bob.messages_of("trackPublished");
    assert!(
        published
            .iter()
            .any(|m| m["kind"] == "video" && m["participantId"] == alice.id.as_str()),
        "{published:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_reach_the_right_subscribers_and_nowhere_else() {
    let node = Node::start(NodeOptions::default()).await;
    let join = |room: &'static str, who: &'static str| {
        let (url, token) = (node.ws_url(), node.token(room, who));
        async move { Client::join(&url, room, &token).await.expect("joins") }
    };
    let (alice, bob, carol, dave) = (
        join("r1", "alice").await,
        join("r1", "bob").await,
        join("r2", "carol").await,
        join("r2", "dave").await,
    );
    let (av, aa) = alice.publish_av().await;
    let (cv, ca) = carol.publish_av().await;
    let enough = || {
        bob.received.lock().unwrap().count_from(&alice.id) > 60
            && dave.received.lock().unwrap().count_from(&carol.id) > 60
    };
    let a = stream(
        &alice,
        &av,
        &aa,
        0xA1,
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    let c = stream(
        &carol,
        &cv,
        &ca,
        0xC3,
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    let ((), (), ok) = tokio::join!(a, c, eventually(Duration::from_secs(12), enough));
    assert!(
        ok,
        "bob got {} from alice, dave got {} from carol",
        bob.received.lock().unwrap().count_from(&alice.id),
        dave.received.lock().unwrap().count_from(&carol.id)
    );
    let has_tag = |client: &Client, tag: u8| {
        client
            .received
            .lock()
            .unwrap()
            .packets
            .values()
            .flatten()
            .any(|(_, _, p)| p.ends_with(&[tag; 20]))
    };
    assert!(
        has_tag(&bob, 0xA1) && !has_tag(&bob, 0xC3),
        "bob gets alice's media and only hers"
    );
    assert!(
        has_tag(&dave, 0xC3) && !has_tag(&dave, 0xA1),
        "dave gets carol's media and only hers"
    );
    assert!(
        !has_tag(&alice, 0xA1) && !has_tag(&alice, 0xC3),
        "alice gets neither her own media nor another room's"
    );
    assert!(
        !has_tag(&carol, 0xA1) && !has_tag(&carol, 0xC3),
        "carol gets neither her own media nor another room's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_starts_on_a_keyframe_within_a_second() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let (video, audio) = alice.publish_av().await;
    // Alice sends a keyframe only every 30 s, or when asked.
    let streaming = stream(
        &alice,
        &video,
        &audio,
        0xA1,
        Duration::from_secs(6),
        Duration::from_secs(30),
    );
    let late = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let bob = node.join("r1", "bob").await;
        let joined = Instant::now();
        let video_from_alice = |b: &Client| {
            b.received
                .lock()
                .unwrap()
                .packets
                .iter()
                .filter(|((s, _), v)| *s == alice.id && v.iter().any(|(_, _, p)| p.len() > 100))
                .flat_map(|(_, v)| v.clone())
                .collect::<Vec<_>>()
        };
        let got = eventually(Duration::from_secs(3), || {
            !video_from_alice(&bob).is_empty()
        })
        .await;
        (bob, joined.elapsed(), got, video_from_alice)
    };
    let ((), (bob, took, got, video_from_alice)) = tokio::join!(streaming, late);
    let (_, metrics) = node.admin("GET", "/metrics", None, None).await;
    let plis: Vec<_> = metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("plis") || l.contains("forwarded_total") || l.contains("dropped"))
        .map(String::from)
        .collect();
    let received: Vec<_> = bob
        .received
        .lock()
        .unwrap()
        .packets
        .iter()
        .map(|(k, v)| (k.clone(), v.len()))
        .collect();
    let requests = alice.keyframe_requests();
    assert!(
        got,
        "the late joiner received no video: {received:?}; alice saw {requests} keyframe requests; {plis:?}"
    );
    let packets = video_from_alice(&bob);
    let first = &packets[0].2;
    assert_eq!(
        first[1] & 0x01,
        0,
        "the first video packet a late joiner gets is a keyframe"
    );
    assert!(
        took < Duration::from_secs(2),
        "first video after {took:?}, with keyframes otherwise 30 s apart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_reaches_everyone_else_in_the_room() {
    let node = Node::start(NodeOptions::default()).await;
    let mut clients = Vec::new();
    for who in ["alice", "bob", "carol"] {
        let c = Client::join(&node.ws_url(), "r1", &node.token("r1", who))
            .await
            .expect("joins");
        c.open_chat().await;
        c.offer().await;
        clients.push(c);
    }
    let outsider = node.join("r2", "dave").await;
    let open = eventually(Duration::from_secs(10), || {
        clients
            .iter()
            .all(|c| c.subscribe_state.lock().unwrap().is_some())
    })
    .await;
    assert!(open, "subscribe connections up");
    // The channel opens asynchronously: retry sending until it goes out.
    assert!(eventually(Duration::from_secs(5), || true).await);
    let mut sent = false;
    for _ in 0..100 {
        if clients[0].chat("hello from alice").await {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "alice's chat channel opened");
    let got = |c: &Client| {
        c.received.lock().unwrap().chat.iter().any(|m| {
            m["text"] == "hello from alice"
                && m["from"] == clients[0].id.as_str()
                && m["name"] == "alice"
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || got(&clients[1])
            && got(&clients[2]))
        .await,
        "bob and carol get alice's message, stamped with her id and name"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!got(&clients[0]), "alice does not get her own message back");
    assert!(
        outsider.received.lock().unwrap().chat.is_empty(),
        "another room gets nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_enforced_with_a_clear_reason() {
    let node = Node::start(NodeOptions::default()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let forged = {
        let other =
            ruche_media_node::token::TokenKey::hmac(b"another-secret-another-secret-0000").unwrap();
        other
            .mint(&ruche_media_node::token::Claims::new(
                "mallory",
                "r1",
                now + 3600,
            ))
            .unwrap()
    };
    let cases = [
        ("", "missing"),
        ("not-a-jwt", "malformed"),
        (forged.as_str(), "bad_signature"),
        (
            &node.token_with(
                "r1",
                "late",
                ruche_media_node::token::Grants::default(),
                now - 3600,
            ),
            "expired",
        ),
        (&node.token("other-room", "alice"), "wrong_room"),
    ];
    for (token, code) in cases {
        let refused = Client::join(&node.ws_url(), "r1", token)
            .await
            .err()
            .unwrap_or_else(|| panic!("token for `{code}` was accepted"));
        assert_eq!(refused["code"], code, "{refused}");
        assert_eq!(refused["fatal"], true);
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("join token refused"),
            "{refused}"
        );
    }
    let (status, metrics) = node.admin("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("ruche_media_token_refusals_total{reason=\"expired\"} 1"),
        "{metrics}"
    );
    // The node still serves good tokens.
    assert!(
        Client::join(&node.ws_url(), "r1", &node.token("r1", "alice"))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_an_id_admits_once_even_after_its_participant_left() {
    let node = Node::start(NodeOptions {
        mode: ruche_media_node::admission::NodeMode::Managed,
        max_room: 1,
        ..NodeOptions::default()
    })
    .await;
    let (status, _) = node
        .admin(
            "PUT",
            "/v1/assignments",
            Some(serde_json::json!({"version": 1, "rooms": [{"room": "r1", "slots": 1}]})),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let replayed = |refused: &support::Refused| {
        assert_eq!(refused["code"], "replayed", "{refused}");
        assert!(
            refused["message"]
                .as_str()
                .unwrap_or_default()
                .contains("already used to join"),
            "{refused}"
        );
    };
    let alice_token = node.token_once("r1", "alice");
    let alice = Client::join(&node.ws_url(), "r1", &alice_token)
        .await
        .expect("alice joins");
    // A copy of her token, while she is in.
    let copy = Client::join(&node.ws_url(), "r1", &alice_token)
        .await
        .err()
        .expect("a copy is refused");
    replayed(&copy);

    // Bob's join is refused by the room (it is full): that does not spend his token.
    let bob_token = node.token_once("r1", "bob");
    let full = Client::join(&node.ws_url(), "r1", &bob_token)
        .await
        .err()
        .expect("the room is full");
    assert_eq!(full["code"], "room_full", "{full}");

    alice.close().await;
    let start = Instant::now();
    while node.admin("GET", "/v1/status", None, None).await.1["participants"] != 0 {
        assert!(start.elapsed() < Duration::from_secs(10), "alice left");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Her token replayed after she left.
    let replay = Client::join(&node.ws_url(), "r1", &alice_token)
        .await
        .err()
        .expect("the replay is refused");
    replayed(&replay);
    // Bob's token, refused only for room, now admits.
    let bob = Client::join(&node.ws_url(), "r1", &bob_token).await;
    assert!(bob.is_ok(), "{:?}", bob.err());

    let (_, metrics) = node.admin("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains("ruche_media_token_refusals_total{reason=\"replayed\"} 2"),
        "{text}"
    );
    assert!(text.contains("ruche_media_token_ids_held 2"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_node_refuses_new_rooms_and_keeps_its_live_ones() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let (status, body) = node
        .admin(
            "POST",
            "/v1/drain",
            Some(serde_json::json!({"deadlineSeconds": 600})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(s["phase"], "Draining");
    assert!(s["drainDeadlineSeconds"].as_u64().is_some_and(|d| d > 590));
    let refused = Client::join(&node.ws_url(), "r2", &node.token("r2", "carol"))
        .await
        .err()
        .expect("a new room is refused");
    assert_eq!(refused["code"], "draining", "{refused}");
    let bob = node.join("r1", "bob").await;
    let (status, _) = node.admin("GET", "/readyz", None, Some("none")).await;
    assert_eq!(
        status, 200,
        "a draining node is still ready: it serves its live rooms"
    );
    alice.close().await;
    bob.close().await;
    let drained = async {
        for _ in 0..50 {
            if node.admin("GET", "/v1/status", None, None).await.1["phase"] == "Drained" {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    };
    assert!(drained.await, "the node reports Drained once empty");
    let (status, _) = node.admin("GET", "/readyz", None, Some("none")).await;
    assert_eq!(status, 503, "a drained node is not ready");
    let (status, s) = node.admin("DELETE", "/v1/drain", None, None).await;
    assert_eq!(
        (status, s["phase"].clone()),
        (200, serde_json::json!("Ready")),
        "an admin drain can be cancelled"
    );
    assert!(
        Client::join(&node.ws_url(), "r2", &node.token("r2", "carol"))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_managed_node_takes_only_assigned_rooms_and_limits_hold() {
    let node = Node::start(NodeOptions {
        mode: ruche_media_node::admission::NodeMode::Managed,
        capacity: 3,
        max_room: 2,
        ..NodeOptions::default()
    })
    .await;
    let refused = Client::join(&node.ws_url(), "r1", &node.token("r1", "alice"))
        .await
        .err()
        .expect("unassigned room refused");
    assert_eq!(refused["code"], "not_assigned", "{refused}");
    let (status, _) = node.admin("PUT", "/v1/assignments", Some(serde_json::json!({"version": 1, "rooms": [{"room": "r1", "slots": 2}, {"room": "r2", "slots": 1}]})), None).await;
    assert_eq!(status, 200);
    let _a = node.join("r1", "alice").await;
    let _b = node.join("r1", "bob").await;
    let full = Client::join(&node.ws_url(), "r1", &node.token("r1", "carol"))
        .await
        .err()
        .expect("room limit");
    assert_eq!(full["code"], "room_full", "{full}");
    let _c = node.join("r2", "carol").await;
    let over = Client::join(&node.ws_url(), "r2", &node.token("r2", "dave"))
        .await
        .err()
        .expect("node capacity");
    assert_eq!(over["code"], "node_full", "{over}");
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        (
            s["participants"].as_u64(),
            s["reservedSlots"].as_u64(),
            s["rooms"].as_u64()
        ),
        (Some(3), Some(3), Some(2)),
        "{s}"
    );
    let (_, rooms) = node.admin("GET", "/v1/rooms", None, None).await;
    assert_eq!(rooms["rooms"][0]["name"], "r1");
    assert_eq!(rooms["rooms"][0]["participants"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_media_port_harms_no_room() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let (video, audio) = alice.publish_av().await;
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let target = node.media;
    let garbage = async {
        let mut seed = 0x1234_5678u32;
        for i in 0..3000u32 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let len = (seed % 1400) as usize + 1;
            let mut packet: Vec<u8> = (0..len)
                .map(|j| (seed.rotate_left(j as u32 % 32) & 0xff) as u8)
                .collect();
            // Shapes that pass the first-byte classifier: STUN, DTLS, RTP.
            packet[0] = [0x00, 0x01, 22, 23, 0x80, 0x90, 0xff][i as usize % 7];
            let _ = attacker.send_to(&packet, target).await;
            if i % 100 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let streaming = stream(
        &alice,
        &video,
        &audio,
        0xA1,
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    let ((), (), got) = tokio::join!(
        streaming,
        garbage,
        eventually(Duration::from_secs(10), || bob
            .received
            .lock()
            .unwrap()
            .count_from(&alice.id)
            > 100)
    );
    assert!(
        got,
        "media kept flowing: bob got {}",
        bob.received.lock().unwrap().count_from(&alice.id)
    );
    let (_, metrics) = node.admin("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains("ruche_media_dropped_packets_total{reason=\"unroutable\"}"),
        "garbage is counted as dropped"
    );
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(s["participants"], 2, "nobody was disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_signaling_gets_a_clear_error_and_spares_the_session_and_others() {
    let node = Node::start(NodeOptions::default()).await;
    let bystander = node.join("r2", "bob").await;
    let alice = node.join("r1", "alice").await;
    alice.send_raw("{not json");
    alice.send_raw(r#"{"type":"explode"}"#);
    alice.send(&serde_json::json!({"type": "publishOffer", "sdp": "v=0\r\nthis is not sdp"}));
    alice.send(&serde_json::json!({"type": "subscribeAnswer", "sdp": "garbage"}));
    alice.send(&serde_json::json!({"type": "ping"}));
    assert!(
        eventually(Duration::from_secs(5), || !alice
            .messages_of("pong")
            .is_empty())
        .await,
        "the session survives bad messages"
    );
    let errors = alice.messages_of("error");
    let codes: Vec<_> = errors
        .iter()
        .map(|e| e["code"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        codes,
        vec![
            "invalid_message",
            "invalid_message",
            "publish_failed",
            "subscribe_failed"
        ],
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .all(|e| e["fatal"] == false && !e["message"].as_str().unwrap_or_default().is_empty())
    );
    assert!(
        errors[1]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("unknown variant `explode`")
    );
    // Oversized messages close the offender only.
    alice.send_raw(&format!(
        r#"{{"type":"publishOffer","sdp":"{}"}}"#,
        "a".repeat(100_000)
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        s["participants"], 1,
        "the oversized sender is gone, the bystander stays: {s}"
    );
    bystander.send(&serde_json::json!({"type": "ping"}));
    assert!(
        eventually(Duration::from_secs(5), || !bystander
            .messages_of("pong")
            .is_empty())
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_needs_its_token_except_for_probes() {
    let node = Node::start(NodeOptions::default()).await;
    for path in ["/metrics", "/v1/status", "/v1/rooms"] {
        assert_eq!(
            node.admin("GET", path, None, Some("wrong")).await.0,
            401,
            "{path} with a wrong token"
        );
        assert_eq!(super_http(&node, path).await, 401, "{path} without a token");
    }
    assert_eq!(node.admin("GET", "/livez", None, Some("none")).await.0, 200);
    assert_eq!(
        node.admin("GET", "/readyz", None, Some("none")).await.0,
        200
    );
    let (status, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(status, 200);
    for field in [
        "phase",
        "capacitySlots",
        "reservedSlots",
        "usedSlots",
        "rooms",
        "participants",
        "bitrateInBps",
        "bitrateOutBps",
        "advertise",
    ] {
        assert!(s.get(field).is_some(), "status has {field}: {s}");
    }
    let (_, metrics) = node.admin("GET", "/metrics", None, None).await;
    let text = metrics.as_str().unwrap_or_default();
    for name in [
        "ruche_media_participants",
        "ruche_media_rtp_packets_forwarded_total",
        "ruche_media_join_duration_seconds_bucket",
        "ruche_media_phase{phase=\"Ready\"} 1",
        "ruche_media_subscriber_rtt_seconds_bucket",
        "ruche_media_subscriber_jitter_seconds_bucket",
        "ruche_media_subscriber_loss_ratio_bucket",
    ] {
        assert!(text.contains(name), "metrics lack {name}:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_limits_an_address_that_keeps_presenting_wrong_tokens() {
    use ruche_media_node::admin::limiter::{BURST, REFILL};
    let node = Node::start(NodeOptions::default()).await;
    for attempt in 0..BURST {
        let (status, _) = node.admin("GET", "/v1/status", None, Some("guess")).await;
        assert_eq!(status, 401, "attempt {attempt}");
    }
    // Over budget: refused before the token is compared, even the right one.
    for token in ["guess", support::ADMIN_TOKEN] {
        let (status, body) = node.admin("GET", "/v1/status", None, Some(token)).await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(
            body.as_str().unwrap_or_default(),
            "too many admin requests with a wrong token from this address"
        );
    }
    // Probes are never limited.
    assert_eq!(
        node.admin("GET", "/livez", None, Some("guess")).await.0,
        200
    );
    // One refill later, one more try: the right token passes.
    tokio::time::sleep(REFILL + Duration::from_millis(100)).await;
    let (status, metrics) = node.admin("GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let text = metrics.as_str().unwrap_or_default();
    assert!(
        text.contains(&format!(
            "ruche_media_admin_auth_failures_total{{reason=\"refused\"}} {BURST}"
        )),
        "{text}"
    );
    assert!(
        text.contains("ruche_media_admin_auth_failures_total{reason=\"limited\"} 2"),
        "{text}"
    );
}

async fn super_http(node: &Node, path: &str) -> u16 {
    support::http(node.admin, "GET", path, None, None).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h264_is_forwarded_from_an_idr_on() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let h264 = alice
        .add_track(
            rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video,
            "video/H264",
            90_000,
            0,
            None,
        )
        .await;
    alice.offer().await;
    // Wait for the node to answer and the tracks to settle before sending.
    assert!(
        eventually(Duration::from_secs(5), || !alice
            .messages_of("publishAnswer")
            .is_empty())
        .await
    );
    let mut pt = None;
    for i in 0..150u16 {
        // A delta slice (NAL type 1) everywhere except an IDR (type 5) every 50 packets.
        let nal = if i % 50 == 10 { 0x65u8 } else { 0x41 };
        let mut payload = vec![nal];
        payload.extend_from_slice(&[0xB7; 80]);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: pt.unwrap_or(102),
                sequence_number: i,
                timestamp: u32::from(i) * 3000,
                marker: true,
                ..Default::default()
            },
            payload: payload.into(),
        };
        if !h264.write(packet.clone()).await && pt.is_none() {
            // The payload type H264 got in this negotiation.
            for candidate in [102u8, 127, 125, 108, 123, 106] {
                let mut p = packet.clone();
                p.header.payload_type = candidate;
                if h264.write(p).await {
                    pt = Some(candidate);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let received = bob.received.lock().unwrap().payloads_from(&alice.id);
    assert!(
        received.len() > 50,
        "bob got {} H264 packets",
        received.len()
    );
    assert_eq!(
        received[0][0] & 0x1F,
        5,
        "the first packet forwarded is an IDR slice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_tells_every_participant_where_to_reconnect_with_a_fresh_token() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let other = node.join("r2", "carol").await;
    let (status, body) = node
        .admin(
            "POST",
            "/v1/rooms/r1/migrate",
            Some(serde_json::json!({"endpoint": "wss://node-b.example/ws"})),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["participantsTold"], 2);
    for (client, identity) in [(&alice, "alice"), (&bob, "bob")] {
        assert!(
            eventually(Duration::from_secs(5), || !client
                .messages_of("migrate")
                .is_empty())
            .await,
            "{identity} told to migrate"
        );
        let m = &client.messages_of("migrate")[0];
        assert_eq!(m["endpoint"], "wss://node-b.example/ws");
        let claims = node
            .key
            .verify_for_room(
                m["token"].as_str().unwrap(),
                "r1",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            )
            .expect("a valid token for the same room");
        assert_eq!(
            claims.sub, identity,
            "the token keeps the participant's identity"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        other.messages_of("migrate").is_empty(),
        "another room is not moved"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_packets_are_repaired_by_retransmission() {
    // The node binds a fixed port and advertises the relay in front of it.
    let media = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let relay = support::LossyRelay::start(media, 20).await;
    let node = Node::start(NodeOptions {
        bind: Some(media),
        advertise: Some(relay.addr),
        ..NodeOptions::default()
    })
    .await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let (video, audio) = alice.publish_av().await;
    stream(
        &alice,
        &video,
        &audio,
        0xA1,
        Duration::from_secs(5),
        Duration::from_secs(1),
    )
    .await;
    // Let the last retransmissions land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let video_seqs: Vec<u16> = bob
        .received
        .lock()
        .unwrap()
        .packets
        .iter()
        .filter(|((s, _), v)| *s == alice.id && v.iter().any(|(_, _, p)| p.len() > 100))
        .flat_map(|(_, v)| v.iter().map(|(_, seq, _)| *seq).collect::<Vec<_>>())
        .collect();
    let dropped = relay.dropped.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        dropped >= 10,
        "the relay lost {dropped} packets on the way to the clients"
    );
    let unique: std::collections::BTreeSet<u16> = video_seqs.iter().copied().collect();
    let (first, last) = (*unique.first().unwrap(), *unique.last().unwrap());
    let missing: Vec<u16> = (first..=last).filter(|s| !unique.contains(s)).collect();
    assert!(last - first > 80, "bob got video from {first} to {last}");
    assert!(
        missing.is_empty(),
        "video packets never repaired: {missing:?} (relay dropped {dropped})"
    );
    let (_, metrics) = node.admin("GET", "/metrics", None, None).await;
    let nacks = metrics
        .as_str()
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("ruche_media_nacks_received_total"))
        .unwrap_or_default()
        .to_string();
    assert!(
        !nacks.ends_with(" 0") && !nacks.is_empty(),
        "the subscriber's NACKs reached the node: {nacks}"
    );
    let text = metrics.as_str().unwrap_or_default();
    let count = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let sum = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let rtts = count("ruche_media_subscriber_rtt_seconds_count");
    assert!(rtts > 0, "round trips are measured from receiver reports");
    let mean_rtt = sum("ruche_media_subscriber_rtt_seconds_sum") / rtts as f64;
    assert!(
        (0.0..0.1).contains(&mean_rtt),
        "loopback round trips are short: mean {mean_rtt} s"
    );
    assert!(
        count("ruche_media_subscriber_loss_ratio_count") > 0,
        "subscriber loss is sampled:\n{text}"
    );
    assert!(
        count("ruche_media_publisher_jitter_seconds_count") > 0,
        "publisher jitter is sampled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_room_ends_its_sessions_and_only_its_own() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let carol = node.join("r2", "carol").await;
    // Alice publishes, so that her leaving would change Bob's subscription.
    let (video, audio) = alice.publish_av().await;
    let mut pacer = Pacer::new(&alice, Duration::from_secs(1));
    let subscribed = Instant::now();
    while bob.received.lock().unwrap().first_packet.is_none()
        && subscribed.elapsed() < Duration::from_secs(10)
    {
        pacer.step(&alice, &video, &audio, 1).await;
    }
    let before = bob.messages.lock().unwrap().len();
    let (status, body) = node.admin("DELETE", "/v1/rooms/r1", None, None).await;
    assert_eq!(
        (status, body["participantsClosed"].as_u64()),
        (200, Some(2)),
        "{body}"
    );
    for c in [&alice, &bob] {
        assert!(
            eventually(Duration::from_secs(5), || c
                .closed
                .lock()
                .unwrap()
                .is_some())
            .await,
            "{:?}",
            c.messages.lock().unwrap()
        );
        assert_eq!(
            c.closed.lock().unwrap().clone(),
            Some((4002, "room closed".to_string()))
        );
        let last = c.messages.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            (
                &last["type"],
                &last["code"],
                &last["message"],
                &last["fatal"]
            ),
            (
                &serde_json::json!("error"),
                &serde_json::json!("room_closed"),
                &serde_json::json!("room r1 was closed"),
                &serde_json::json!(true)
            )
        );
    }
    // The room's end is the only news: no offer, no `participantLeft` for a room going away.
    let after: Vec<serde_json::Value> = bob.messages.lock().unwrap()[before..].to_vec();
    assert_eq!(after.len(), 1, "{after:?}");
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        (s["participants"].as_u64(), s["rooms"].as_u64()),
        (Some(1), Some(1)),
        "{s}"
    );
    assert!(
        carol.messages_of("error").is_empty(),
        "another room is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_assignment_list_is_versioned_and_the_whole_truth() {
    let node = Node::start(NodeOptions {
        mode: ruche_media_node::admission::NodeMode::Managed,
        ..NodeOptions::default()
    })
    .await;
    let list = |version: u64, rooms: &[&str]| {
        let rooms: Vec<serde_json::Value> = rooms
            .iter()
            .map(|r| serde_json::json!({"room": r, "slots": 2}))
            .collect();
        Some(serde_json::json!({"version": version, "rooms": rooms}))
    };
    let (status, body) = node
        .admin("PUT", "/v1/assignments", list(10, &["r1", "r2"]), None)
        .await;
    assert_eq!(
        (status, body["version"].as_u64()),
        (200, Some(10)),
        "{body}"
    );
    let alice = node.join("r1", "alice").await;
    let carol = node.join("r2", "carol").await;
    // A list older than the one held (a late retry, a deposed leader) changes nothing.
    let (status, body) = node
        .admin("PUT", "/v1/assignments", list(9, &[]), None)
        .await;
    assert_eq!(
        (status, body["current"].as_u64(), body["refused"].as_u64()),
        (409, Some(10), Some(9)),
        "{body}"
    );
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        (s["assignmentsVersion"].as_u64(), s["participants"].as_u64()),
        (Some(10), Some(2)),
        "{s}"
    );
    // The same version again is a retry: accepted, nothing changes.
    let (status, _) = node
        .admin("PUT", "/v1/assignments", list(10, &["r1", "r2"]), None)
        .await;
    assert_eq!(status, 200);
    // A newer list without r1: r1's sessions end, r2's go on.
    let (status, body) = node
        .admin("PUT", "/v1/assignments", list(11, &["r2"]), None)
        .await;
    assert_eq!(
        (status, body["ended"].clone()),
        (200, serde_json::json!(["r1"])),
        "{body}"
    );
    assert!(
        eventually(Duration::from_secs(5), || alice
            .messages_of("error")
            .iter()
            .any(|e| e["code"] == "room_closed"
                && e["message"]
                    == "room r1 is no longer hosted on this media node"))
        .await,
        "{:?}",
        alice.messages.lock().unwrap()
    );
    assert!(carol.messages_of("error").is_empty(), "r2 is untouched");
    let refused = Client::join(&node.ws_url(), "r1", &node.token("r1", "bob"))
        .await
        .err()
        .expect("r1 left the list");
    assert_eq!(refused["code"], "not_assigned", "{refused}");
    let (status, body) = node
        .admin(
            "PUT",
            "/v1/assignments",
            Some(serde_json::json!({"rooms": []})),
            None,
        )
        .await;
    assert_eq!(status, 400, "a list without a version is refused: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_listed_as_leaving_keeps_its_sessions_admits_nobody_and_ends_when_dropped() {
    let node = Node::start(NodeOptions {
        mode: ruche_media_node::admission::NodeMode::Managed,
        ..NodeOptions::default()
    })
    .await;
    let put = |version: u64, rooms: serde_json::Value| {
        let node = &node;
        async move {
            node.admin(
                "PUT",
                "/v1/assignments",
                Some(serde_json::json!({"version": version, "rooms": rooms})),
                None,
            )
            .await
        }
    };
    let (status, _) = put(1, serde_json::json!([{"room": "r1", "slots": 4}])).await;
    assert_eq!(status, 200);
    let alice = node.join("r1", "alice").await;
    // The room moved elsewhere: alice was told to go, her session stays until she does.
    let (status, body) = put(
        2,
        serde_json::json!([{"room": "r1", "slots": 0, "leaving": true}]),
    )
    .await;
    assert_eq!(
        (status, body["ended"].clone()),
        (200, serde_json::json!([])),
        "{body}"
    );
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        (s["participants"].as_u64(), s["reservedSlots"].as_u64()),
        (Some(1), Some(0)),
        "a leaving room reserves nothing: {s}"
    );
    assert_eq!(s["roomList"][0]["leaving"], true, "{s}");
    assert_eq!(s["roomList"][0]["assigned"], false, "{s}");
    let refused = Client::join(&node.ws_url(), "r1", &node.token("r1", "bob"))
        .await
        .err()
        .expect("nobody new joins a leaving room");
    assert_eq!(refused["code"], "not_assigned", "{refused}");
    assert!(alice.messages_of("error").is_empty(), "alice is not cut");
    // Dropped from the list: what is left of it ends.
    let (status, body) = put(3, serde_json::json!([])).await;
    assert_eq!(
        (status, body["ended"].clone()),
        (200, serde_json::json!(["r1"])),
        "{body}"
    );
    assert!(
        eventually(Duration::from_secs(5), || !alice
            .messages_of("error")
            .is_empty())
        .await,
        "alice's last session ends"
    );
}

/// Whether `sdp` carries a host candidate for `addr`.
fn has_host_candidate(sdp: &str, addr: std::net::SocketAddr) -> bool {
    let at = format!(" {} {} typ host", addr.ip(), addr.port());
    sdp.lines()
        .any(|l| l.starts_with("a=candidate:") && l.contains(&at))
}

/// The SDP of the first `kind` message (`subscribeOffer`, `publishAnswer`) the client got.
async fn first_sdp(client: &Client, kind: &str) -> String {
    assert!(
        eventually(Duration::from_secs(5), || !client
            .messages_of(kind)
            .is_empty())
        .await,
        "{} got no {kind}",
        client.id
    );
    client.messages_of(kind)[0]["sdp"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_changes_the_advertised_media_address_at_run_time() {
    let node = Node::start(NodeOptions::default()).await;
    let old = node.media;
    let (status, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        (status, s["advertise"].as_str()),
        (200, Some(old.to_string().as_str())),
        "{s}"
    );
    let alice = node.join("r1", "alice").await;
    // The new address is a relay in front of the media port (nothing dropped), so a client
    // told to use it still reaches the node on loopback.
    let relay = support::LossyRelay::start(old, u64::MAX).await;
    let new = relay.addr;
    let body = serde_json::json!({"media": new.to_string()});
    let (status, s) = node
        .admin("PUT", "/v1/advertise", Some(body.clone()), None)
        .await;
    assert_eq!(status, 200, "{s}");
    assert_eq!(
        s["advertise"],
        new.to_string(),
        "the answer is the status: {s}"
    );
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(s["advertise"], new.to_string(), "{s}");
    assert_eq!(node.handle.media_addr(), new);

    // A new participant is told the new address; an existing one keeps its own.
    let bob = node.join("r1", "bob").await;
    let sdp = first_sdp(&bob, "subscribeOffer").await;
    assert!(
        has_host_candidate(&sdp, new) && !has_host_candidate(&sdp, old),
        "bob's subscribe offer advertises {new} only:\n{sdp}"
    );
    let sdp = first_sdp(&alice, "subscribeOffer").await;
    assert!(
        has_host_candidate(&sdp, old),
        "alice's connections were built before the change:\n{sdp}"
    );
    let (video, audio) = alice.publish_av().await;
    let answer = first_sdp(&alice, "publishAnswer").await;
    assert!(
        has_host_candidate(&answer, old) && !has_host_candidate(&answer, new),
        "alice's publish connection keeps the address it was built with:\n{answer}"
    );
    // Media flows on both: from alice's old-address connection to bob's, through the relay.
    let streaming = stream(
        &alice,
        &video,
        &audio,
        0xA1,
        Duration::from_secs(3),
        Duration::from_secs(1),
    );
    let waiting = eventually(Duration::from_secs(10), || {
        bob.received.lock().unwrap().count_from(&alice.id) > 40
    });
    let ((), got) = tokio::join!(streaming, waiting);
    assert!(
        got,
        "bob received {} packets from alice",
        bob.received.lock().unwrap().count_from(&alice.id)
    );

    // Bad bodies are refused with a message that names the problem; nothing changes.
    for (bad, names) in [
        (
            serde_json::json!({"media": "not-an-address"}),
            "media: `not-an-address`",
        ),
        (
            serde_json::json!({"media": "127.0.0.1"}),
            "media: `127.0.0.1`",
        ),
        (
            serde_json::json!({"media": "0.0.0.0:7882"}),
            "media: `0.0.0.0:7882`",
        ),
        (
            serde_json::json!({"media": old.to_string(), "port": 7882}),
            "unknown field `port`",
        ),
        (serde_json::json!({}), "missing field `media`"),
    ] {
        let (status, message) = node
            .admin("PUT", "/v1/advertise", Some(bad.clone()), None)
            .await;
        assert_eq!(status, 400, "{bad} -> {message}");
        assert!(
            message.as_str().unwrap_or_default().contains(names),
            "{bad} -> {message}"
        );
    }

    // The route needs the admin token.
    let (status, _) =
        support::http(node.admin, "PUT", "/v1/advertise", Some(body.clone()), None).await;
    assert_eq!(status, 401, "no token");
    let (status, _) = node
        .admin(
            "PUT",
            "/v1/advertise",
            Some(serde_json::json!({"media": old.to_string()})),
            Some("wrong"),
        )
        .await;
    assert_eq!(status, 401, "a wrong token");
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(
        s["advertise"],
        new.to_string(),
        "refused requests changed nothing: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_reports_its_joins_and_media_quality_for_the_rollout_gate() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let (video, audio) = alice.publish_av().await;
    stream(
        &alice,
        &video,
        &audio,
        0xA7,
        Duration::from_secs(7),
        Duration::from_secs(1),
    )
    .await;
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    let quality = &s["roomList"][0]["quality"];
    assert_eq!(quality["joins"], 2, "{s}");
    assert_eq!(quality["joinFailures"], 0, "{s}");
    // Bob's receiver reports give the loss on the way to him: none on loopback.
    assert_eq!(quality["lossPercent"].as_f64(), Some(0.0), "{s}");
    bob.close().await;
    alice.close().await;
}

/// Reads frames until the close frame; returns the text messages and the close (code, reason).
async fn until_closed(
    stream: &mut futures::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
) -> (Vec<serde_json::Value>, Option<(u16, String)>) {
    use futures::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    let mut texts = Vec::new();
    while let Ok(Some(frame)) = tokio::time::timeout(Duration::from_secs(10), stream.next()).await {
        match frame {
            Ok(Message::Text(t)) => texts.push(serde_json::from_str(&t).unwrap()),
            Ok(Message::Close(f)) => {
                return (texts, f.map(|f| (u16::from(f.code), f.reason.to_string())));
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (texts, None)
}

/// Opens a raw signaling WebSocket and sends `first` (if any).
async fn raw_session(
    node: &Node,
    first: Option<&str>,
) -> (
    futures::stream::SplitSink<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Message,
    >,
    futures::stream::SplitStream<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
    >,
) {
    use futures::{SinkExt as _, StreamExt as _};
    let (ws, _) = tokio_tungstenite::connect_async(node.ws_url())
        .await
        .unwrap();
    let (mut sink, stream) = ws.split();
    if let Some(text) = first {
        sink.send(tokio_tungstenite::tungstenite::Message::Text(
            text.to_string().into(),
        ))
        .await
        .unwrap();
    }
    (sink, stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_session_the_node_ends_has_a_close_frame_that_says_why() {
    let node = Node::start(NodeOptions::default()).await;
    // A refused token: the error, then 4001.
    let (_sink, mut stream) = raw_session(
        &node,
        Some(r#"{"type":"join","token":"not-a-jwt","room":"r1"}"#),
    )
    .await;
    let (texts, close) = until_closed(&mut stream).await;
    assert_eq!(texts.last().unwrap()["code"], "malformed");
    assert_eq!(close, Some((4001, "join refused".into())));
    // A first message that is not a join: 4000.
    let (_sink, mut stream) = raw_session(&node, Some(r#"{"type":"ping"}"#)).await;
    let (texts, close) = until_closed(&mut stream).await;
    assert_eq!(texts.last().unwrap()["code"], "not_joined");
    assert_eq!(close, Some((4000, "protocol error".into())));
    // Five invalid messages: the fifth error is fatal, then 4000.
    let token = node.token("r1", "noisy");
    let join = format!(r#"{{"type":"join","token":"{token}","room":"r1"}}"#);
    let (mut sink, mut stream) = raw_session(&node, Some(&join)).await;
    for _ in 0..5 {
        use futures::SinkExt as _;
        sink.send(tokio_tungstenite::tungstenite::Message::Text("{".into()))
            .await
            .unwrap();
    }
    let (texts, close) = until_closed(&mut stream).await;
    let last = texts.last().unwrap();
    assert_eq!(
        (&last["code"], &last["fatal"]),
        (
            &serde_json::json!("invalid_message"),
            &serde_json::json!(true)
        )
    );
    assert_eq!(close, Some((4000, "protocol error".into())));
    // `leave`: a normal close, 1000.
    let token = node.token("r1", "polite");
    let join = format!(r#"{{"type":"join","token":"{token}","room":"r1"}}"#);
    let (mut sink, mut stream) = raw_session(&node, Some(&join)).await;
    {
        use futures::SinkExt as _;
        sink.send(tokio_tungstenite::tungstenite::Message::Text(
            r#"{"type":"leave"}"#.into(),
        ))
        .await
        .unwrap();
    }
    let (texts, close) = until_closed(&mut stream).await;
    assert_eq!(texts.first().unwrap()["type"], "joined");
    assert_eq!(close, Some((1000, "left".into())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_session_is_closed_and_a_live_one_is_kept() {
    let node = Node::start(NodeOptions {
        liveness: Liveness {
            keepalive: Duration::from_millis(200),
            idle_timeout: Duration::from_millis(700),
        },
        ..NodeOptions::default()
    })
    .await;
    // A client that reads answers the node's pings on its own: it stays.
    let live = node.join("r1", "reader").await;
    // One that never reads (nor answers pings) is closed with 4004.
    let token = node.token("r1", "sleeper");
    let join = format!(r#"{{"type":"join","token":"{token}","room":"r1"}}"#);
    let (_sink, mut stream) = raw_session(&node, Some(&join)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (texts, close) = until_closed(&mut stream).await;
    let last = texts.last().unwrap();
    assert_eq!(last["code"], "idle_timeout", "{texts:?}");
    assert_eq!(close, Some((4004, "idle timeout".into())));
    assert!(
        live.closed.lock().unwrap().is_none(),
        "the reading client is still in"
    );
    assert!(live.messages_of("error").is_empty());
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(s["participants"].as_u64(), Some(1), "{s}");
}
