//! The media socket, and batched datagram syscalls on it: `recvmmsg` and `sendmmsg`, so that
//! a burst of packets costs one system call each way rather than one per packet.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};

use crate::media::core::Transmit;

/// The non-blocking UDP media socket, watched for readability only.
///
/// A socket watched for writability too (as `tokio::net::UdpSocket` is) wakes the driver once
/// more after nearly every send, when the kernel frees the datagram it sent: at the rate of a
/// small meeting that doubled the loop's wake-ups, each a context switch. The socket is only
/// full when the kernel cannot keep up, and only then does [`MediaSocket::writable`] watch it
/// for room, for as long as that lasts.
pub struct MediaSocket {
    fd: AsyncFd<std::net::UdpSocket>,
}

impl MediaSocket {
    /// Registers `socket` (already non-blocking) with the current runtime.
    pub fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        Ok(Self {
            fd: register(socket, Interest::READABLE)?,
        })
    }

    /// Waits until datagrams may be queued; clear the guard's readiness once a read found
    /// the socket empty.
    pub async fn readable(&self) -> io::Result<AsyncFdReadyGuard<'_, std::net::UdpSocket>> {
        self.fd.readable().await
    }

    /// The socket itself.
    pub fn get_ref(&self) -> &std::net::UdpSocket {
        self.fd.get_ref()
    }

    /// Waits until the socket has room to send. It is watched through a second descriptor of
    /// the same socket, registered for this wait alone.
    pub async fn writable(&self) -> io::Result<()> {
        let watch = register(self.fd.get_ref().try_clone()?, Interest::WRITABLE)?;
        watch.writable().await.map(|_| ())
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().local_addr()
    }
}

/// Datagrams read or written per system call.
pub const BATCH: usize = 32;
/// The largest datagram read (media and DTLS stay well under a 1,500-byte MTU).
pub const MAX_DATAGRAM: usize = 2048;

/// Buffers for [`Receiver::recv`], reused from one batch to the next.
pub struct Receiver {
    buffers: Vec<[u8; MAX_DATAGRAM]>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Length and source of each datagram of the last batch.
    received: Vec<(usize, SocketAddr)>,
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            buffers: vec![[0u8; MAX_DATAGRAM]; BATCH],
            headers: MultiHeaders::preallocate(BATCH, None),
            received: Vec::with_capacity(BATCH),
        }
    }
}

impl Receiver {
    /// Reads what is queued on `socket` now, up to [`BATCH`] datagrams, without waiting;
    /// `WouldBlock` when nothing is. Then [`Receiver::datagrams`] gives them.
    pub fn recv(&mut self, socket: &std::net::UdpSocket) -> io::Result<usize> {
        self.received.clear();
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = self
            .buffers
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let results = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(io::Error::from)?;
        for r in results {
            if let Some(from) = r.address.as_ref().and_then(to_socket_addr) {
                self.received.push((r.bytes, from));
            }
        }
        Ok(self.received.len())
    }

    /// The datagrams of the last [`Receiver::recv`], with their sources.
    pub fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.received
            .iter()
            .zip(&self.buffers)
            .map(|(&(len, from), buf)| (from, &buf[..len.min(MAX_DATAGRAM)]))
    }
}

/// Registers `socket` with the current runtime, for `interest` alone.
#[allow(unsafe_code)]
fn register(
    socket: std::net::UdpSocket,
    interest: Interest,
) -> io::Result<AsyncFd<std::net::UdpSocket>> {
    // SAFETY: the registration needs the descriptor `as_raw_fd` returns to stay open, and to
    // stay the same, for as long as the `AsyncFd` lives. The `AsyncFd` owns the socket; a
    // `std::net::UdpSocket` always returns the descriptor it owns and closes it only when
    // dropped, which happens after the registration is removed (the `AsyncFd`'s drop); and
    // nothing here takes the socket out of the `AsyncFd` or replaces it.
    unsafe { AsyncFd::register_with_interest(socket, interest) }.map_err(io::Error::from)
}

/// The headers of [`Sender::send`], reused from one batch to the next.
pub struct Sender {
    headers: MultiHeaders<SockaddrStorage>,
}

impl Default for Sender {
    fn default() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, None),
        }
    }
}

impl Sender {
    /// Sends `queue` from its front, [`BATCH`] datagrams per system call, until it is empty or
    /// the socket is full (`WouldBlock`: the rest stays queued, to be sent once the socket is
    /// writable again). Returns how many were sent; a datagram the kernel refuses for itself
    /// (an unreachable address) is counted in `refused` and dropped, so that one bad destination never blocks the others.
    pub fn send(
        &mut self,
        socket: &std::net::UdpSocket,
        queue: &mut std::collections::VecDeque<Transmit>,
        refused: &mut u64,
    ) -> usize {
        let fd = socket.as_raw_fd();
        let mut sent = 0;
        while !queue.is_empty() {
            let n = queue.len().min(BATCH);
            let batch = queue.range(..n);
            let slices: Vec<[IoSlice<'_>; 1]> =
                batch.clone().map(|t| [IoSlice::new(&t.data)]).collect();
            let addrs: Vec<Option<SockaddrStorage>> = batch
                .map(|t| Some(SockaddrStorage::from(t.to.addr)))
                .collect();
            // The kernel sends from the first datagram on and stops at the first it refuses:
            // an error means the first one itself was refused (or the socket is full). The
            // socket is non-blocking, so a full one answers `WouldBlock`.
            let done = sendmmsg(
                fd,
                &mut self.headers,
                slices.iter(),
                &addrs,
                [],
                MsgFlags::empty(),
            )
            .map(Iterator::count)
            .map_err(io::Error::from);
            match done {
                Ok(0) => return sent,
                Ok(count) => {
                    sent += count;
                    queue.drain(..count.min(queue.len()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return sent,
                Err(_) => {
                    *refused += 1;
                    queue.pop_front();
                }
            }
        }
        sent
    }
}

fn to_socket_addr(address: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = address.as_sockaddr_in() {
        Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
    } else {
        address
            .as_sockaddr_in6()
            .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::media::core::demux::Remote;
    use bytes::BytesMut;
    use std::collections::VecDeque;

    fn socket() -> MediaSocket {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        MediaSocket::new(s).unwrap()
    }

    /// Sends the whole queue as the driver does: waiting for room when the socket is full.
    async fn send_all(socket: &MediaSocket, queue: &mut VecDeque<Transmit>) -> (usize, u64) {
        let (mut sent, mut refused) = (0, 0);
        let mut sender = Sender::default();
        loop {
            sent += sender.send(socket.get_ref(), queue, &mut refused);
            if queue.is_empty() {
                return (sent, refused);
            }
            socket.writable().await.unwrap();
        }
    }

    /// Reads until `want` datagrams came, as the driver does: clearing readiness once the
    /// socket is found empty.
    async fn receive(socket: &MediaSocket, want: usize) -> Vec<(SocketAddr, u8, usize)> {
        let mut receiver = Receiver::default();
        let mut got = Vec::new();
        while got.len() < want {
            let mut ready = socket.readable().await.unwrap();
            match receiver.recv(socket.get_ref()) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    got.extend(receiver.datagrams().map(|(from, d)| (from, d[0], d.len())));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready.clear_ready(),
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order() {
        let (a, b) = (socket(), socket());
        let to = b.local_addr().unwrap();
        let mut queue: VecDeque<Transmit> = (0..70u8)
            .map(|i| Transmit {
                to: Remote::udp(to),
                data: BytesMut::from(&[i; 100][..]),
            })
            .collect();
        let (sent, refused) = send_all(&a, &mut queue).await;
        assert_eq!((sent, queue.len(), refused), (70, 0, 0));
        let got = receive(&b, 70).await;
        let from = a.local_addr().unwrap();
        assert!(got.iter().all(|&(f, _, len)| f == from && len == 100));
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            (0..70u8).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn an_idle_socket_has_room() {
        let a = socket();
        tokio::time::timeout(std::time::Duration::from_secs(5), a.writable())
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_refused_destination_is_dropped_alone() {
        let (a, b) = (socket(), socket());
        let good = b.local_addr().unwrap();
        // An IPv6 destination on an IPv4 socket: refused by the kernel for itself.
        let bad: SocketAddr = "[::1]:9".parse().unwrap();
        let mut queue: VecDeque<Transmit> = [bad, good, good]
            .into_iter()
            .map(|to| Transmit {
                to: Remote::udp(to),
                data: BytesMut::from(&b"x"[..]),
            })
            .collect();
        let (sent, refused) = send_all(&a, &mut queue).await;
        assert_eq!((sent, refused, queue.len()), (2, 1, 0));
    }
}
