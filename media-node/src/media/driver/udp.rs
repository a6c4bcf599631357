//! Batched datagram syscalls: `recvmmsg` and `sendmmsg` on the media socket, so that a burst
//! of packets costs one system call each way rather than one per packet. Both go through
//! tokio's readiness (`try_io`), so a full or empty socket parks the driver as usual.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::media::core::Transmit;

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
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let (buffers, headers, received) =
            (&mut self.buffers, &mut self.headers, &mut self.received);
        received.clear();
        socket.try_io(Interest::READABLE, || {
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .iter_mut()
                .map(|b| [IoSliceMut::new(&mut b[..])])
                .collect();
            let results = recvmmsg(fd, headers, slices.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(io::Error::from)?;
            for r in results {
                if let Some(from) = r.address.as_ref().and_then(to_socket_addr) {
                    received.push((r.bytes, from));
                }
            }
            Ok(())
        })?;
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
        socket: &UdpSocket,
        queue: &mut std::collections::VecDeque<Transmit>,
        refused: &mut u64,
    ) -> usize {
        let headers = &mut self.headers;
        let fd = socket.as_raw_fd();
        let mut sent = 0;
        while !queue.is_empty() {
            let n = queue.len().min(BATCH);
            let done = socket.try_io(Interest::WRITABLE, || {
                let batch = queue.range(..n);
                let slices: Vec<[IoSlice<'_>; 1]> =
                    batch.clone().map(|t| [IoSlice::new(&t.data)]).collect();
                let addrs: Vec<Option<SockaddrStorage>> = batch
                    .map(|t| Some(SockaddrStorage::from(t.to.addr)))
                    .collect();
                // The kernel sends from the first datagram on and stops at the first it refuses:
                // an error means the first one itself was refused (or the socket is full).
                sendmmsg(fd, headers, slices.iter(), &addrs, [], MsgFlags::empty())
                    .map(Iterator::count)
                    .map_err(io::Error::from)
            });
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

    /// Sends the whole queue as the driver does: waiting for room when the socket is full.
    async fn send_all(socket: &UdpSocket, queue: &mut VecDeque<Transmit>) -> (usize, u64) {
        let (mut sent, mut refused) = (0, 0);
        let mut sender = Sender::default();
        while !queue.is_empty() {
            socket.writable().await.unwrap();
            sent += sender.send(socket, queue, &mut refused);
        }
        (sent, refused)
    }

    #[tokio::test]
    async fn a_batch_goes_out_and_comes_back_in_order() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let to = b.local_addr().unwrap();
        let mut queue: VecDeque<Transmit> = (0..70u8)
            .map(|i| Transmit {
                to: Remote::udp(to),
                data: BytesMut::from(&[i; 100][..]),
            })
            .collect();
        let (sent, refused) = send_all(&a, &mut queue).await;
        assert_eq!((sent, queue.len(), refused), (70, 0, 0));
        let mut receiver = Receiver::default();
        let mut got = Vec::new();
        while got.len() < 70 {
            b.readable().await.unwrap();
            match receiver.recv(&b) {
                Ok(n) => {
                    assert!(n <= BATCH);
                    got.extend(receiver.datagrams().map(|(from, d)| (from, d[0], d.len())));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        let from = a.local_addr().unwrap();
        assert!(got.iter().all(|&(f, _, len)| f == from && len == 100));
        assert_eq!(
            got.iter().map(|g| g.1).collect::<Vec<_>>(),
            (0..70u8).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_refused_destination_is_dropped_alone() {
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
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
