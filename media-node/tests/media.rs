//! Media through the node end to end, with `webrtc` crate clients on loopback.

mod support;

use std::time::Duration;

use support::{Client, Node, NodeOptions, eventually, opus_packet, stream_video};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_receives_a_publishers_video_and_audio() {
    let node = Node::start(NodeOptions::default()).await;
    let alice = Client::join(&node.ws_url(), "r1", &node.token("r1", "alice"))
        .await
        .expect("alice joins");
    let bob = Client::join(&node.ws_url(), "r1", &node.token("r1", "bob"))
        .await
        .expect("bob joins");
    let (video, audio) = alice.publish_av().await;
    let sender = tokio::spawn(async move {
        for i in 0..150u16 {
            audio.write(opus_packet(i, u32::from(i) * 960, 0xA1)).await;
            if i % 2 == 0 {
                video
                    .write(support::vp8_packet(
                        i / 2,
                        u32::from(i) * 1500,
                        i % 40 == 0,
                        0xA1,
                    ))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let got = eventually(Duration::from_secs(10), || {
        bob.received.lock().expect("lock").count_from(&alice.id) > 40
    })
    .await;
    let _ = sender.await;
    let received = bob.received.lock().expect("lock");
    assert!(
        got,
        "bob received {} packets from alice; alice saw: {:?}",
        received.count_from(&alice.id),
        alice
            .messages
            .lock()
            .expect("lock")
            .iter()
            .map(|m| m["type"].clone())
            .collect::<Vec<_>>()
    );
    assert!(
        received
            .packets
            .keys()
            .filter(|(s, _)| *s == alice.id)
            .count()
            == 2,
        "audio and video tracks: {:?}",
        received.packets.keys().collect::<Vec<_>>()
    );
    assert!(
        received
            .payloads_from(&alice.id)
            .iter()
            .all(|p| p.ends_with(&[0xA1; 20])),
        "payloads arrive intact"
    );
    let _ = stream_video;
}
