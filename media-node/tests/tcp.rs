//! ICE over TCP on the media port number, and what the TCP side does with bad input: a
//! client whose UDP is blocked still joins; garbage, half-open connections, a client that
//! stops reading and a flood of feedback are each counted and dropped, and other rooms' media
//! keeps flowing throughout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::large_futures)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use support::{Client, Node, NodeOptions, Transport, eventually, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A node metric's value (summed over its labels when `label` is empty).
async fn metric(node: &Node, name: &str, label: &str) -> f64 {
    let (_, text) = node.admin("GET", "/metrics", None, None).await;
    let text = text.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Streams from `from` while waiting for `to` to get `packets` of it; false on timeout.
async fn media_flows(from: &Client, to: &Client, packets: usize, tag: u8) -> bool {
    let (video, audio) = from.publish_av().await;
    let streaming = stream(
        from,
        &video,
        &audio,
        tag,
        Duration::from_secs(4),
        Duration::from_secs(1),
    );
    let waiting = eventually(Duration::from_secs(15), || {
        to.received.lock().unwrap().count_from(&from.id) > packets
    });
    tokio::join!(streaming, waiting).1
}

/// The SDP of the first `kind` message `client` got (waiting for it).
async fn first_sdp(client: &Client, kind: &str) -> String {
    assert!(
        eventually(Duration::from_secs(10), || !client
            .messages_of(kind)
            .is_empty())
        .await,
        "no {kind} message"
    );
    client.messages_of(kind)[0]["sdp"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn join_over(node: &Node, room: &str, who: &str, transport: Transport) -> Client {
    Client::join_over(&node.ws_url(), room, &node.token(room, who), transport)
        .await
        .unwrap_or_else(|refused| panic!("{who} could not join {room}: {refused}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_udp_is_blocked_joins_over_tcp() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = join_over(&node, "r1", "alice", Transport::Tcp).await;
    let bob = join_over(&node, "r1", "bob", Transport::Tcp).await;
    let carol = join_over(&node, "r1", "carol", Transport::Udp).await;
    let sdp = first_sdp(&alice, "subscribeOffer").await;
    let port = node.media.port();
    assert!(
        sdp.lines().any(|l| l.starts_with("a=candidate:")
            && l.contains(" tcp ")
            && l.contains(&format!(" {port} typ host tcptype passive"))),
        "the node offers a passive TCP candidate on the media port number:\n{sdp}"
    );
    assert!(
        media_flows(&alice, &bob, 60, 0xA1).await,
        "bob (TCP) got {} packets from alice (TCP)",
        bob.received.lock().unwrap().count_from(&alice.id)
    );
    assert!(
        carol.received.lock().unwrap().count_from(&alice.id) > 60,
        "carol (UDP) gets alice's TCP-borne media too"
    );
    let open = metric(&node, "ruche_media_tcp_connections", "").await;
    assert!(
        open >= 3.0,
        "alice's publish and subscribe connections and bob's subscribe one are on TCP: {open}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_half_open_connections_on_the_tcp_port_harm_no_room() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = join_over(&node, "r1", "bob", Transport::Tcp).await;
    let target = node.media;
    let attack = async {
        let mut held = Vec::new();
        for i in 0..200u32 {
            let Ok(mut c) = TcpStream::connect(target).await else {
                continue;
            };
            let bytes: Vec<u8> = match i % 5 {
                // Binary garbage and a TLS hello: told apart at once and closed.
                0 => (0..300u32).map(|j| (j * 7 + i) as u8 | 0x80).collect(),
                1 => vec![0x16, 3, 1, 0, 200, 1],
                // A frame that is not STUN.
                2 => vec![0, 40, 0x80, 0x60, 1, 2, 3],
                // A framed binding request for a connection that does not exist.
                3 => {
                    let mut f = vec![0, 28, 0, 1, 0, 8, 0x21, 0x12, 0xA4, 0x42];
                    f.extend_from_slice(&[9; 12]);
                    f.extend_from_slice(&[0, 6, 0, 4, b'n', b'o', b'n', b'e']);
                    f
                }
                // Half-open: one byte, then silence (the connection is held below).
                _ => vec![0],
            };
            let _ = c.write_all(&bytes).await;
            held.push(c);
        }
        held
    };
    let (held, flowed) = tokio::join!(attack, media_flows(&alice, &bob, 60, 0xA1));
    assert!(
        flowed,
        "media kept flowing to bob over TCP: {} packets",
        bob.received.lock().unwrap().count_from(&alice.id)
    );
    assert!(metric(&node, "ruche_media_dropped_packets_total", "tcp_garbage").await >= 80.0);
    assert!(metric(&node, "ruche_media_dropped_packets_total", "\"unroutable\"").await >= 40.0);
    // The one-byte connections are closed once the first-bytes timeout passes.
    let mut silent = 0.0;
    for _ in 0..40 {
        silent = metric(&node, "ruche_media_dropped_packets_total", "tcp_silent").await;
        if silent >= 40.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(silent >= 40.0, "half-open connections closed: {silent}");
    drop(held);
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(s["participants"], 2, "nobody was disconnected");
}

/// A TCP relay in front of the node's media port that can stop reading what the node sends,
/// as a client whose application hangs.
struct StallingRelay {
    addr: SocketAddr,
    stalled: Arc<AtomicBool>,
}

impl StallingRelay {
    async fn start(node_media: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A small receive buffer, so that the node's side backs up in a moment.
                let Ok(socket) = tokio::net::TcpSocket::new_v4() else {
                    continue;
                };
                let _ = socket.set_recv_buffer_size(32 * 1024);
                let Ok(upstream) = socket.connect(node_media).await else {
                    continue;
                };
                let flag = flag.clone();
                let (mut client_read, mut client_write) = client.into_split();
                let (mut up_read, mut up_write) = upstream.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut up_write).await;
                });
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        if flag.load(Ordering::Relaxed) {
                            // Stop reading: the node's writes back up. Hold both halves.
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        }
                        match up_read.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if client_write.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, stalled }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_that_stops_reading_is_cut_off_and_harms_no_room() {
    let node = Node::start(NodeOptions::default()).await;
    // Everyone but bob joins (over UDP) before the node advertises the relay.
    let carol = node.join("r2", "carol").await;
    let dave = node.join("r2", "dave").await;
    let alice = node.join("r1", "alice").await;
    let relay = StallingRelay::start(node.media).await;
    let body = serde_json::json!({"media": relay.addr.to_string()});
    let (status, s) = node.admin("PUT", "/v1/advertise", Some(body), None).await;
    assert_eq!(status, 200, "{s}");
    let bob = join_over(&node, "r1", "bob", Transport::Tcp).await;
    assert!(
        media_flows(&alice, &bob, 60, 0xA1).await,
        "bob gets media through the relay"
    );
    relay.stalled.store(true, Ordering::Relaxed);
    // Alice keeps publishing (a heavy stream: 1,000 packets of 1.1 kB a second) to the client
    // that reads nothing; carol and dave talk meanwhile.
    let (video, _audio) = alice.publish_av().await;
    let to_bob = async {
        let start = std::time::Instant::now();
        let mut seq = 0u16;
        while start.elapsed() < Duration::from_secs(16) {
            for _ in 0..10 {
                let mut packet =
                    support::vp8_packet(seq, u32::from(seq) * 90, seq.is_multiple_of(500), 0xA2);
                let mut payload = bytes::BytesMut::from(&packet.payload[..]);
                payload.resize(1100, 0xA2);
                packet.payload = payload.freeze();
                video.write(packet).await;
                seq = seq.wrapping_add(1);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let other_room = async {
        tokio::time::sleep(Duration::from_secs(6)).await;
        media_flows(&carol, &dave, 60, 0xC1).await
    };
    let ((), flowed) = tokio::join!(to_bob, other_room);
    assert!(
        flowed,
        "the other room's media flowed: dave got {}",
        dave.received.lock().unwrap().count_from(&carol.id)
    );
    let backlog = metric(&node, "ruche_media_dropped_packets_total", "tcp_backlog").await;
    let stalled = metric(&node, "ruche_media_dropped_packets_total", "tcp_stalled").await;
    assert!(
        backlog > 0.0,
        "frames for the stalled client were dropped and counted"
    );
    assert!(stalled >= 1.0, "the stalled connection was cut off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_feedback_is_dropped_before_it_costs_the_loop() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = node.join("r1", "alice").await;
    let bob = node.join("r1", "bob").await;
    let carol = node.join("r2", "carol").await;
    let dave = node.join("r2", "dave").await;
    // The flood comes from an address that claimed bob's subscribe connection with a STUN
    // binding request carrying its ufrag (the node learns addresses that way).
    let sdp = first_sdp(&bob, "subscribeOffer").await;
    let ufrag = sdp
        .lines()
        .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
        .unwrap()
        .to_string();
    let attacker = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let username = format!("{ufrag}:evil");
    let mut binding = vec![0, 1];
    let attr_len = username.len().div_ceil(4) * 4;
    binding.extend_from_slice(&((4 + attr_len) as u16).to_be_bytes());
    binding.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    binding.extend_from_slice(&[5; 12]);
    binding.extend_from_slice(&[0, 6]);
    binding.extend_from_slice(&(username.len() as u16).to_be_bytes());
    binding.extend_from_slice(username.as_bytes());
    binding.resize(20 + 4 + attr_len, 0);
    attacker.send_to(&binding, node.media).await.unwrap();
    let flood = async {
        // SRTCP-shaped packets: a receiver report header, then noise. 5,000 a second for four
        // seconds: twenty times the connection's budget, paced so that the test's own clients
        // (on the same two cores) keep running.
        let mut packet = vec![0x81, 201, 0, 7];
        packet.extend_from_slice(&[0x5a; 40]);
        for _ in 0..400 {
            for _ in 0..50 {
                let _ = attacker.send_to(&packet, node.media).await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let ((), r1, r2) = tokio::join!(
        flood,
        media_flows(&alice, &bob, 60, 0xA1),
        media_flows(&carol, &dave, 60, 0xC1)
    );
    assert!(r1 && r2, "both rooms' media flowed during the flood");
    let flooded = metric(&node, "ruche_media_dropped_packets_total", "feedback_flood").await;
    assert!(
        flooded >= 10_000.0,
        "most of the flood was dropped unread: {flooded}"
    );
    let (_, s) = node.admin("GET", "/v1/status", None, None).await;
    assert_eq!(s["participants"], 4, "nobody was disconnected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signaling_reaches_the_node_on_the_media_port_number_too() {
    // HostPort mode gives a node one port number: WebSocket signaling on TCP shares it with
    // ICE over TCP, and both with media on UDP.
    let node = Node::start(NodeOptions::default()).await;
    let url = format!("ws://{}/ws", node.media);
    let alice = Client::join(&url, "r1", &node.token("r1", "alice"))
        .await
        .unwrap_or_else(|refused| panic!("alice could not join: {refused}"));
    let bob = Client::join_over(&url, "r1", &node.token("r1", "bob"), Transport::Tcp)
        .await
        .unwrap_or_else(|refused| panic!("bob could not join: {refused}"));
    assert!(
        media_flows(&alice, &bob, 60, 0xA1).await,
        "media flows between sessions signaled on the media port"
    );
}

/// A meeting's start: hundreds of browsers open their signaling WebSocket on the media port
/// number at once. Every one is upgraded: none is reset because the signaling server had not
/// yet taken the ones before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_signaling_connections_on_the_media_port_is_served_whole() {
    const BURST: usize = 500;
    let node = Node::start(NodeOptions::default()).await;
    let url = format!("ws://{}/ws", node.media);
    let tries = futures::future::join_all(
        (0..BURST).map(|_| tokio_tungstenite::connect_async(url.clone())),
    )
    .await;
    let failed: Vec<String> = tries
        .iter()
        .filter_map(|r| r.as_ref().err().map(ToString::to_string))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {BURST} failed, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(
        metric(
            &node,
            "ruche_media_dropped_packets_total",
            "tcp_handover_full"
        )
        .await
            < 1.0
    );
}
