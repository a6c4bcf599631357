//! ICE over TCP on the media port number: passive candidates (RFC 6544), each datagram in a
//! frame with a two-byte length (RFC 4571), for clients whose network blocks UDP.
//!
//! The same listener takes HTTP: in HostPort mode one port number serves signaling and media
//! (see the operator's pod), so a browser's WebSocket and a UDP-blocked client's ICE arrive at
//! one TCP port. A connection is told by its first bytes: a framed STUN binding request is ICE,
//! an HTTP method is handed to the signaling server, anything else is dropped and counted.
//!
//! Each ICE connection has a reader and a writer task on the media thread. Frames go to the
//! driver through one bounded channel (a client that sends faster than the loop reads is slowed
//! by TCP itself); frames to send wait in a bounded queue per connection, and when that is full
//! (the client reads too slowly) the newest are dropped and counted, as a congested UDP path
//! would lose them. Connections that say nothing, stop sending or stop reading are closed.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtc::shared::tcp_framing::{TcpFrameDecoder, frame_packet_to};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::metrics::Metrics;

/// Open TCP connections at most on the media port (ICE and not yet told apart).
pub const MAX_CONNECTIONS: usize = 4096;
/// Signaling connections handed over and not yet taken by the signaling server.
pub const HANDOVER_QUEUE: usize = 64;
/// How long a signaling connection waits for room in that queue before it is dropped.
pub const HANDOVER_WAIT: Duration = Duration::from_secs(2);
/// How long a new connection has to send enough bytes to be told apart.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(5);
/// An ICE connection that sends nothing for this long is dead: a browser sends consent
/// checks every few seconds (RFC 7675).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that accepts none of a frame for this long is cut off.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames waiting to be written to one connection; more are dropped.
pub const SEND_QUEUE: usize = 512;
/// The kernel's send buffer of an ICE connection: with [`SEND_QUEUE`], what a client that
/// stops reading can hold of the node's memory (the default grows to megabytes).
pub const SEND_BUFFER_BYTES: usize = 256 * 1024;
/// Frames from every connection waiting for the loop.
pub const INBOUND_QUEUE: usize = 4096;

/// What a new TCP connection on the media port is, from its first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// A framed STUN binding request: ICE over TCP.
    Ice,
    /// An HTTP request line: signaling.
    Http,
    /// Neither.
    Garbage,
}

/// Tells a connection from its first bytes; `None` while too few have arrived to say.
pub fn classify(first: &[u8]) -> Option<Opening> {
    match first.first()? {
        // HTTP methods are upper-case ASCII tokens.
        b'A'..=b'Z' => Some(Opening::Http),
        // A frame's length then a STUN header: a binding request (type 0x0001) is at least
        // 20 bytes, and ICE's are far below 256.
        0 => {
            let head = first.get(..4)?;
            let length = usize::from(u16::from_be_bytes([head[0], head[1]]));
            Some(if head[2..4] == [0, 1] && length >= 20 {
                Opening::Ice
            } else {
                Opening::Garbage
            })
        }
        _ => Some(Opening::Garbage),
    }
}

/// What the TCP side tells the driver.
#[derive(Debug)]
pub enum Event {
    /// An ICE connection opened; frames for it go to `outbox`.
    Opened {
        /// The client's address.
        remote: SocketAddr,
        /// Its queue of frames to write.
        outbox: mpsc::Sender<Bytes>,
    },
    /// A frame arrived.
    Frame {
        /// The client's address.
        remote: SocketAddr,
        /// The datagram inside the frame.
        data: Vec<u8>,
    },
    /// The connection is gone.
    Closed {
        /// The client's address.
        remote: SocketAddr,
    },
}

/// Connections the media listener handed to the signaling server: an HTTP listener for
/// `axum::serve` whose connections come from the media port.
pub struct Handover {
    rx: mpsc::Receiver<std::net::TcpStream>,
    local: SocketAddr,
}

impl axum::serve::Listener for Handover {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(stream) = self.rx.recv().await else {
                // The media loop is gone: no more connections, ever.
                return std::future::pending().await;
            };
            // The stream comes from the media thread's runtime: it is registered again here.
            let Ok(stream) = TcpStream::from_std(stream) else {
                continue;
            };
            if let Ok(peer) = stream.peer_addr() {
                return (stream, peer);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The listener's half that runs on the media thread.
pub struct Acceptor {
    listener: std::net::TcpListener,
    events: mpsc::Sender<Event>,
    http: mpsc::Sender<std::net::TcpStream>,
    metrics: Arc<Metrics>,
}

/// Splits a bound listener into the acceptor (for the media thread), the driver's event
/// receiver and the signaling server's [`Handover`].
pub fn listen(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
) -> io::Result<(Acceptor, mpsc::Receiver<Event>, Handover)> {
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let (events, events_rx) = mpsc::channel(INBOUND_QUEUE);
    let (http, http_rx) = mpsc::channel(HANDOVER_QUEUE);
    Ok((
        Acceptor {
            listener,
            events,
            http,
            metrics,
        },
        events_rx,
        Handover { rx: http_rx, local },
    ))
}

impl Acceptor {
    /// Accepts connections until the driver goes away. Runs on the media thread's runtime.
    pub async fn run(self) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(error = %e, "cannot register the media TCP listener");
                return;
            }
        };
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let (stream, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, mostly: wait rather than spin.
                    tracing::debug!(error = %e, "media TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.events.is_closed() {
                return;
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                self.metrics.dropped("tcp_connection_limit");
                continue;
            };
            let (events, http, metrics) =
                (self.events.clone(), self.http.clone(), self.metrics.clone());
            tokio::spawn(async move {
                let _slot = slot;
                connection(stream, remote, events, http, metrics).await;
            });
        }
    }
}

/// Waits for enough of the first bytes to tell the connection apart, without taking them.
async fn opening(stream: &TcpStream) -> io::Result<Option<Opening>> {
    let mut head = [0u8; 4];
    tokio::time::timeout(FIRST_BYTES_TIMEOUT, async {
        loop {
            let n = stream.peek(&mut head).await?;
            if n == 0 {
                return Ok(None);
            }
            if let Some(opening) = classify(&head[..n]) {
                return Ok(Some(opening));
            }
            // Fewer bytes than a frame header: they trickle in (peek would not wait again).
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no first bytes"))?
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
    http: mpsc::Sender<std::net::TcpStream>,
    metrics: Arc<Metrics>,
) {
    match opening(&stream).await {
        Ok(Some(Opening::Ice)) => ice(stream, remote, events, metrics).await,
        Ok(Some(Opening::Http)) => {
            // A burst (a meeting's start) waits its turn: a connection dropped with its
            // request unread would be reset.
            if let Ok(std) = stream.into_std()
                && http.send_timeout(std, HANDOVER_WAIT).await.is_err()
            {
                metrics.dropped("tcp_handover_full");
            }
        }
        Ok(Some(Opening::Garbage)) => metrics.dropped("tcp_garbage"),
        Ok(None) => {}
        Err(_) => metrics.dropped("tcp_silent"),
    }
}

/// Runs one ICE connection until either side ends it.
async fn ice(
    stream: TcpStream,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
) {
    if let Err(e) = nix::sys::socket::setsockopt(
        &stream,
        nix::sys::socket::sockopt::SndBuf,
        &SEND_BUFFER_BYTES,
    ) {
        tracing::debug!(error = %e, "cannot bound an ICE connection's send buffer");
    }
    let _ = stream.set_nodelay(true);
    let (outbox, mut queue) = mpsc::channel::<Bytes>(SEND_QUEUE);
    if events.send(Event::Opened { remote, outbox }).await.is_err() {
        return;
    }
    let (mut read, mut write) = stream.into_split();
    let reader = async {
        let mut decoder = TcpFrameDecoder::with_capacity(4096);
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match tokio::time::timeout(IDLE_TIMEOUT, read.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(n)) => n,
                Err(_) => {
                    metrics.dropped("tcp_silent");
                    return;
                }
            };
            decoder.extend_from_slice(&buf[..n]);
            while let Some(data) = decoder.next_packet() {
                if events.send(Event::Frame { remote, data }).await.is_err() {
                    return;
                }
            }
        }
    };
    let writer = async {
        while let Some(frame) = queue.recv().await {
            match tokio::time::timeout(STALL_TIMEOUT, write.write_all(&frame)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    metrics.dropped("tcp_stalled");
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    let _ = events.send(Event::Closed { remote }).await;
}

/// One datagram as an RFC 4571 frame; `None` if it is too large to frame.
pub fn frame(datagram: &[u8]) -> Option<Bytes> {
    let mut out = BytesMut::zeroed(datagram.len() + 2);
    let n = frame_packet_to(datagram, &mut out)?;
    out.truncate(n);
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_told_apart_by_their_first_bytes() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GET /ws HTTP/1.1\r\n"), Some(Opening::Http));
        assert_eq!(classify(b"P"), Some(Opening::Http));
        // A frame of 100 bytes holding a binding request.
        assert_eq!(classify(&[0, 100, 0, 1, 0, 80]), Some(Opening::Ice));
        // Too few bytes yet to see the STUN type.
        assert_eq!(classify(&[0, 100, 0]), None);
        // A frame of something else, a TLS hello, a binary blob.
        assert_eq!(classify(&[0, 100, 1, 1]), Some(Opening::Garbage));
        assert_eq!(classify(&[0, 4, 0, 1]), Some(Opening::Garbage));
        assert_eq!(classify(&[0x16, 3, 1, 0]), Some(Opening::Garbage));
        assert_eq!(classify(&[0xff; 8]), Some(Opening::Garbage));
    }

    #[test]
    fn frames_carry_their_length() {
        let framed = frame(b"hello").unwrap_or_default();
        assert_eq!(&framed[..], &[0, 5, b'h', b'e', b'l', b'l', b'o']);
        assert!(frame(&vec![0u8; 70_000]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn classifying_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..8)) {
            let _ = classify(&bytes);
        }
    }
}
