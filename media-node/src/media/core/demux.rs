//! Which peer connection a datagram on the shared UDP port, or a frame on one of the TCP
//! connections to the same port number, belongs to.
//!
//! Every peer connection of the node listens on the same socket. A new remote address is only
//! learned from a STUN binding request whose USERNAME starts with the local ufrag the node gave
//! that connection (`<local ufrag>:<remote ufrag>`, RFC 8445); later DTLS, SRTP and SRTCP from
//! that address go to the same connection. Anything else from an unknown address is dropped
//! before it reaches the WebRTC stack.

use std::collections::HashMap;
use std::net::SocketAddr;

use rtc::shared::TransportProtocol;

/// A slot of the engine's peer table.
pub type PeerKey = usize;

/// Where a packet came from or goes to: the transport and the remote address. A TCP
/// connection is one remote: its frames are routed like datagrams from one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Remote {
    /// UDP, or TCP (RFC 4571 frames on one connection).
    pub transport: TransportProtocol,
    /// The client's address.
    pub addr: SocketAddr,
}

impl Remote {
    /// A UDP peer.
    pub fn udp(addr: SocketAddr) -> Self {
        Self {
            transport: TransportProtocol::UDP,
            addr,
        }
    }

    /// A TCP connection's peer.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self {
            transport: TransportProtocol::TCP,
            addr,
        }
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let transport = if self.transport == TransportProtocol::TCP {
            "tcp"
        } else {
            "udp"
        };
        write!(f, "{transport}/{}", self.addr)
    }
}

/// What kind of packet a datagram is, from its first byte (RFC 7983).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// STUN (ICE connectivity checks).
    Stun,
    /// DTLS (handshake, and SCTP data channels inside it).
    Dtls,
    /// SRTP or SRTCP.
    Rtp,
    /// Nothing WebRTC sends.
    Unknown,
}

/// Classifies a datagram.
pub fn kind(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(0..=3) => Kind::Stun,
        Some(20..=63) => Kind::Dtls,
        Some(128..=191) => Kind::Rtp,
        _ => Kind::Unknown,
    }
}

/// The local ufrag a STUN binding request is addressed to, if it is one.
pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    const HEADER: usize = 20;
    const MAGIC: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
    const USERNAME: u16 = 0x0006;
    if datagram.len() < HEADER || datagram[4..8] != MAGIC {
        return None;
    }
    // Binding request: method 0x001, class request.
    if u16::from_be_bytes([datagram[0], datagram[1]]) != 0x0001 {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(HEADER..HEADER + length)?;
    let mut i = 0;
    while i + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[i], body[i + 1]]);
        let len = usize::from(u16::from_be_bytes([body[i + 2], body[i + 3]]));
        let value = body.get(i + 4..i + 4 + len)?;
        if kind == USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        // Attributes are padded to 4 bytes.
        i += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// Routes datagrams to peer connections.
#[derive(Debug, Default)]
pub struct Demux {
    by_ufrag: HashMap<String, PeerKey>,
    by_addr: HashMap<Remote, PeerKey>,
}

impl Demux {
    /// Registers a connection's local ufrag.
    pub fn add(&mut self, ufrag: String, peer: PeerKey) {
        self.by_ufrag.insert(ufrag, peer);
    }

    /// Forgets a connection and every address it used.
    pub fn remove(&mut self, ufrag: &str, peer: PeerKey) {
        self.by_ufrag.remove(ufrag);
        self.by_addr.retain(|_, p| *p != peer);
    }

    /// The connection a datagram from `from` belongs to, learning the address from a STUN
    /// binding request addressed to a known ufrag.
    pub fn route(&mut self, from: Remote, datagram: &[u8]) -> Option<PeerKey> {
        if kind(datagram) == Kind::Stun
            && let Some(ufrag) = stun_local_ufrag(datagram)
            && let Some(&peer) = self.by_ufrag.get(ufrag)
        {
            self.by_addr.insert(from, peer);
            return Some(peer);
        }
        match kind(datagram) {
            Kind::Unknown => None,
            _ => self.by_addr.get(&from).copied(),
        }
    }

    /// Addresses learned, for metrics.
    pub fn addresses(&self) -> usize {
        self.by_addr.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attr = Vec::new();
        attr.extend_from_slice(&0x0006u16.to_be_bytes());
        attr.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attr.extend_from_slice(username.as_bytes());
        while attr.len() % 4 != 0 {
            attr.push(0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&0x0001u16.to_be_bytes());
        m.extend_from_slice(&(attr.len() as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
        m.extend_from_slice(&[7; 12]);
        m.extend_from_slice(&attr);
        m
    }

    #[test]
    fn learns_addresses_from_stun_only() {
        let mut d = Demux::default();
        d.add("abcd".into(), 3);
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        let a = Remote::udp(addr);
        // DTLS from an unknown address is dropped.
        assert_eq!(d.route(a, &[22, 254, 253]), None);
        assert_eq!(d.route(a, &binding_request("abcd:zz")), Some(3));
        assert_eq!(d.route(a, &[22, 254, 253]), Some(3));
        assert_eq!(d.route(a, &[0x80, 0x60]), Some(3));
        // Garbage never routes, even from a known address.
        assert_eq!(d.route(a, &[0xff, 0, 0]), None);
        d.remove("abcd", 3);
        assert_eq!(d.route(a, &[22]), None);
    }

    #[test]
    fn a_tcp_connection_is_not_the_udp_peer_of_the_same_address() {
        let mut d = Demux::default();
        d.add("abcd".into(), 3);
        d.add("efgh".into(), 4);
        let addr: SocketAddr = "127.0.0.1:5000".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(
            d.route(Remote::udp(addr), &binding_request("abcd:zz")),
            Some(3)
        );
        // The same numbers over TCP are another remote: nothing routes until its own STUN.
        assert_eq!(d.route(Remote::tcp(addr), &[22, 254, 253]), None);
        assert_eq!(
            d.route(Remote::tcp(addr), &binding_request("efgh:zz")),
            Some(4)
        );
        assert_eq!(d.route(Remote::tcp(addr), &[22, 254, 253]), Some(4));
        assert_eq!(d.route(Remote::udp(addr), &[22, 254, 253]), Some(3));
    }

    #[test]
    fn stun_parsing_survives_garbage() {
        assert_eq!(stun_local_ufrag(&binding_request("u1:u2")), Some("u1"));
        assert_eq!(
            stun_local_ufrag(&[0, 1, 0, 200, 0x21, 0x12, 0xA4, 0x42]),
            None
        );
        let mut truncated = binding_request("u1:u2");
        truncated.truncate(26);
        assert_eq!(stun_local_ufrag(&truncated), None);
        let mut wrong_len = binding_request("u1:u2");
        wrong_len[23] = 200;
        assert_eq!(stun_local_ufrag(&wrong_len), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut d = Demux::default();
            d.add("x".into(), 1);
            let from: SocketAddr = "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!());
            let _ = d.route(Remote::udp(from), &bytes);
            let _ = d.route(Remote::tcp(from), &bytes);
            let _ = stun_local_ufrag(&bytes);
        }
    }
}
