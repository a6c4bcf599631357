//! The media driver: the imperative shell around the [`Engine`] core. It owns the UDP socket,
//! the TCP listener on the same port number ([`tcp`]) and the clock, reads datagrams in
//! batches, hands them, TCP frames and the commands to the core, runs its deadlines (up to
//! `TIMER_SLACK` late, on whatever wakes the loop), and writes what it produced in batches.
//! It runs on its own thread, so forwarding never waits behind signaling or the admin API.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::shared::TransportProtocol;
use tokio::sync::{mpsc, watch};

use super::core::demux::Remote;
use super::core::{Engine, EngineConfig, Transmit};
use super::{Command, MediaHandle};
use crate::metrics::Metrics;
use udp::{MediaSocket, Receiver, Sender};

pub mod tcp;
pub mod udp;

/// How late the loop may run a connection's deadline, so that it runs on a wake-up a packet
/// caused rather than on one of its own. Each wake-up is a context switch, and the connections'
/// timers (NACK and transport-wide feedback every 100 ms, reports every second, per
/// connection) would otherwise wake a small meeting's loop about as often as its packets do.
/// Nothing they do is hurt by 10 ms: a NACK round already waits 100 ms for its interval.
const TIMER_SLACK: Duration = Duration::from_millis(10);

/// The running media loop.
pub struct Running {
    /// Handle for signaling and admin.
    pub handle: MediaHandle,
    /// Becomes true when the loop has stopped (drained after SIGTERM, or shut down).
    pub stopped: watch::Receiver<bool>,
    /// The loop's thread.
    pub thread: std::thread::JoinHandle<()>,
    /// HTTP connections that arrived on the media port number, for the signaling server.
    pub http: tcp::Handover,
}

/// Binds the UDP socket and a TCP listener on the same port number. With port 0, tries a few
/// ports the system picks until both transports have one free.
fn bind(addr: SocketAddr) -> io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    let mut last = None;
    for _ in 0..if addr.port() == 0 { 20 } else { 1 } {
        let udp = std::net::UdpSocket::bind(addr)?;
        let port = udp.local_addr()?.port();
        match std::net::TcpListener::bind(SocketAddr::new(addr.ip(), port)) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::other("no port"));
    Err(io::Error::new(
        e.kind(),
        format!("TCP on the media port number: {e}"),
    ))
}

/// Binds the socket and starts the loop on its own thread.
pub fn spawn(config: EngineConfig, metrics: Arc<Metrics>) -> io::Result<Running> {
    let (std_socket, std_listener) = bind(config.bind)?;
    std_socket.set_nonblocking(true)?;
    let bound = std_socket.local_addr()?;
    let (acceptor, tcp_events, http) = tcp::listen(std_listener, metrics.clone())?;
    let (advertised_tx, advertised_rx) = watch::channel(bound);
    let engine = Engine::new(config, metrics.clone(), bound, advertised_tx);
    let advertise = *advertised_rx.borrow();
    let (tx, rx) = mpsc::unbounded_channel();
    let (exit_tx, exit_rx) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("ruche-media".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the media runtime");
                    let _ = exit_tx.send(true);
                    return;
                }
            };
            runtime.block_on(async move {
                match MediaSocket::new(std_socket) {
                    Ok(socket) => {
                        tokio::spawn(acceptor.run());
                        Driver::new(engine, socket, metrics)
                            .run(rx, tcp_events)
                            .await;
                    }
                    Err(e) => tracing::error!(error = %e, "cannot register the media socket"),
                }
                let _ = exit_tx.send(true);
            });
        })?;
    tracing::info!(%bound, %advertise, "media socket bound");
    Ok(Running {
        handle: MediaHandle {
            tx,
            advertised: advertised_rx,
        },
        stopped: exit_rx,
        thread,
        http,
    })
}

/// The core, its socket and what waits to be sent.
struct Driver {
    engine: Engine,
    socket: MediaSocket,
    receiver: Receiver,
    sender: Sender,
    outgoing: VecDeque<Transmit>,
    /// Each open ICE-over-TCP connection's queue of frames to write.
    tcp: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    metrics: Arc<Metrics>,
}

impl Driver {
    fn new(engine: Engine, socket: MediaSocket, metrics: Arc<Metrics>) -> Self {
        Self {
            engine,
            socket,
            receiver: Receiver::default(),
            sender: Sender::default(),
            outgoing: VecDeque::new(),
            tcp: HashMap::new(),
            metrics,
        }
    }

    async fn run(
        mut self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut tcp_events: mpsc::Receiver<tcp::Event>,
    ) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Deadlines are run on every turn, whatever woke the loop: see `TIMER_SLACK`.
            let now = Instant::now();
            if self.engine.poll_timeout().is_some_and(|d| d <= now) {
                self.engine.handle_timeout(now);
            }
            self.engine.process();
            self.send().await;
            let deadline = self.engine.poll_timeout().map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                |d| tokio::time::Instant::from_std(d + TIMER_SLACK),
            );
            tokio::select! {
                biased;
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if !self.engine.handle_command(command) {
                        break;
                    }
                }
                ready = self.socket.readable() => {
                    let Ok(mut ready) = ready else {
                        tracing::error!("the media socket left the runtime");
                        break;
                    };
                    if receive(&mut self.engine, &mut self.receiver, ready.get_inner()) {
                        ready.clear_ready();
                    }
                }
                Some(event) = tcp_events.recv() => {
                    self.tcp_event(event);
                    // What else is queued, in the same batch (bounded, as for UDP).
                    for _ in 0..udp::BATCH {
                        let Ok(event) = tcp_events.try_recv() else { break };
                        self.tcp_event(event);
                    }
                }
                // The deadline itself is run at the top of the loop.
                () = tokio::time::sleep_until(deadline) => {}
                _ = tick.tick() => {
                    if self.engine.housekeeping() {
                        break;
                    }
                }
            }
        }
        self.engine.close_all();
        self.engine.process();
        self.send().await;
    }

    fn tcp_event(&mut self, event: tcp::Event) {
        match event {
            tcp::Event::Opened { remote, outbox } => {
                self.metrics.tcp_opened();
                self.tcp.insert(remote, outbox);
            }
            tcp::Event::Frame { remote, data } => {
                self.engine
                    .handle_datagram(Instant::now(), Remote::tcp(remote), &data);
            }
            tcp::Event::Closed { remote } => {
                self.metrics.tcp_closed();
                self.tcp.remove(&remote);
            }
        }
    }

    /// Queues a frame on its TCP connection; dropped (and counted) when the connection is
    /// gone or its queue is full.
    fn send_tcp(&mut self, transmit: &Transmit) {
        let Some(outbox) = self.tcp.get(&transmit.to.addr) else {
            self.metrics.dropped("send_failed");
            return;
        };
        let Some(frame) = tcp::frame(&transmit.data) else {
            self.metrics.dropped("send_failed");
            return;
        };
        match outbox.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => self.metrics.dropped("tcp_backlog"),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.tcp.remove(&transmit.to.addr);
                self.metrics.dropped("send_failed");
            }
        }
    }

    /// Sends what the core produced, a batch per system call; waits for room in the socket
    /// when it is full.
    async fn send(&mut self) {
        self.engine.take_transmits(&mut self.outgoing);
        if self
            .outgoing
            .iter()
            .any(|t| t.to.transport == TransportProtocol::TCP)
        {
            let (tcp, udp): (VecDeque<_>, VecDeque<_>) = self
                .outgoing
                .drain(..)
                .partition(|t| t.to.transport == TransportProtocol::TCP);
            self.outgoing = udp;
            for transmit in &tcp {
                self.send_tcp(transmit);
            }
        }
        let mut refused = 0;
        while !self.outgoing.is_empty() {
            self.sender
                .send(self.socket.get_ref(), &mut self.outgoing, &mut refused);
            if !self.outgoing.is_empty() && self.socket.writable().await.is_err() {
                break;
            }
        }
        for _ in 0..refused {
            self.metrics.dropped("send_failed");
        }
        // What could not be sent (the socket failed) is dropped, and counted.
        for _ in self.outgoing.drain(..) {
            self.metrics.dropped("send_failed");
        }
    }
}

/// Reads the datagrams queued on `socket`, a batch per system call, into the core; true when
/// it found the socket empty (its readiness may then be cleared), false when it stopped at its
/// bound with more waiting, so that a flood cannot starve commands and timers.
fn receive(engine: &mut Engine, receiver: &mut Receiver, socket: &std::net::UdpSocket) -> bool {
    for _ in 0..8 {
        match receiver.recv(socket) {
            Ok(0) => return true,
            Ok(n) => {
                let now = Instant::now();
                for (from, data) in receiver.datagrams() {
                    engine.handle_datagram(now, Remote::udp(from), data);
                }
                // A short batch emptied the socket: no need for one more call to learn it.
                // What arrives from now on is a new readiness event, which clearing the
                // readiness seen so far does not lose.
                if n < udp::BATCH {
                    return true;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                // An error queued on the socket (an ICMP report of an earlier send); reading
                // it cleared it, and the datagrams behind it are read on the next turn.
                tracing::debug!(error = %e, "media socket receive error");
                return false;
            }
        }
    }
    false
}
