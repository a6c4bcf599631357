//! What reaches the media port from outside, into a core with a live room:
//! - datagrams: a client address first learned by a STUN binding request naming a live
//!   connection's ICE username (as a client's first check does), then anything from it
//!   (STUN, DTLS, SRTP, SRTCP or garbage) and from an address never learned;
//! - the first bytes of a TCP connection to the same port number (ICE over TCP or signaling);
//! - the SDP of a publish offer, as the signaling session hands it over.
//!
//! The room must survive whatever one client sends: the other participant keeps their session.

use std::net::SocketAddr;
use std::time::Instant;

use ruche_media_node::media::Command;
use ruche_media_node::media::core::demux::Remote;
use ruche_media_node::media::driver::tcp::{self, Opening};
use tokio::sync::oneshot;

use crate::core::{Core, ROOM};

/// The address that learned a connection.
const CLIENT: &str = "198.51.100.7:40000";
/// An address never learned.
const STRANGER: &str = "203.0.113.9:50000";

/// Feeds `data` to the media port of a fresh core. The first byte says what it is: a publish
/// offer's SDP (0), a TCP connection's first bytes (1), else datagrams, each preceded by its
/// length in two bytes (big-endian; the top bit set sends it from [`STRANGER`]).
pub fn run(data: &[u8]) {
    let Some((&kind, rest)) = data.split_first() else {
        return;
    };
    match kind % 4 {
        0 => publish_offer(rest),
        1 => opening(rest),
        _ => datagrams(rest),
    }
}

fn publish_offer(sdp: &[u8]) {
    let Ok(sdp) = std::str::from_utf8(sdp) else {
        return;
    };
    let mut core = Core::new();
    let (reply, mut answer) = oneshot::channel();
    core.engine
        .handle_command(Command::PublishOffer(core.alice_id, sdp.to_owned(), reply));
    if let Ok(Err(why)) = answer.try_recv() {
        assert!(!why.is_empty());
    }
    core.engine.process();
    survives(&mut core);
}

fn opening(first: &[u8]) {
    match tcp::classify(first) {
        None => assert!(first.len() < 4, "{} bytes left unclassified", first.len()),
        Some(Opening::Ice) => assert_eq!(first.first(), Some(&0)),
        Some(Opening::Http | Opening::Garbage) => {}
    }
    if let Some(framed) = tcp::frame(first) {
        assert_eq!(framed.len(), first.len() + 2);
        assert_eq!(&framed[2..], first);
    }
}

fn datagrams(mut rest: &[u8]) {
    let mut core = Core::new();
    let client = Remote::udp(address(CLIENT));
    let stranger = Remote::udp(address(STRANGER));
    let now = Instant::now();
    core.engine
        .handle_datagram(now, client, &binding_request(&core.alice_ufrag));
    while let [high, low, tail @ ..] = rest {
        let from = if high & 0x80 == 0 { client } else { stranger };
        let len = usize::from(u16::from_be_bytes([high & 0x7f, *low])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        core.engine.handle_datagram(now, from, datagram);
        rest = next;
    }
    core.engine.process();
    while core.engine.poll_transmit().is_some() {}
    survives(&mut core);
}

/// The room is still there, and the participant nobody touched still in it.
fn survives(core: &mut Core) {
    assert!(!Core::ended(&mut core.bob), "bob's session was ended");
    let status = core.status();
    let room = status
        .room_list
        .iter()
        .find(|r| r.name == ROOM)
        .unwrap_or_else(|| panic!("{ROOM} is gone"));
    assert!(room.participants >= 1, "{ROOM} lost its participants");
}

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A STUN binding request with `USERNAME` `<ufrag>:client` and nothing else (RFC 5389): enough
/// for the core to route its address to the connection, not to pass its integrity check.
pub fn binding_request(ufrag: &str) -> Vec<u8> {
    let username = format!("{ufrag}:client");
    let padded = username.len().div_ceil(4) * 4;
    let mut out = Vec::with_capacity(20 + 4 + padded);
    out.extend_from_slice(&[0x00, 0x01]);
    out.extend_from_slice(&u16::try_from(4 + padded).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(&0x2112_A442_u32.to_be_bytes());
    out.extend_from_slice(b"fuzz-txid-01");
    out.extend_from_slice(&[0x00, 0x06]);
    out.extend_from_slice(
        &u16::try_from(username.len())
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(username.as_bytes());
    out.resize(20 + 4 + padded, 0);
    out
}
