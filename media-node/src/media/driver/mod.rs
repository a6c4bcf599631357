//! The media driver: the imperative shell around the [`Engine`] core. It owns the UDP socket
//! and the clock, reads datagrams in batches, hands them and the commands to the core, wakes
//! it at its deadlines, and writes what it produced in batches. It runs on its own thread, so
//! forwarding never waits behind signaling or the admin API.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

pub mod udp;
use tokio::sync::{mpsc, watch};

use super::core::{Engine, EngineConfig, Transmit};
use super::{Command, MediaHandle};
use crate::metrics::Metrics;
use udp::{Receiver, Sender};

/// The running media loop.
pub struct Running {
    /// Handle for signaling and admin.
    pub handle: MediaHandle,
    /// Becomes true when the loop has stopped (drained after SIGTERM, or shut down).
    pub stopped: watch::Receiver<bool>,
    /// The loop's thread.
    pub thread: std::thread::JoinHandle<()>,
}

/// Binds the socket and starts the loop on its own thread.
pub fn spawn(config: EngineConfig, metrics: Arc<Metrics>) -> io::Result<Running> {
    let std_socket = std::net::UdpSocket::bind(config.bind)?;
    std_socket.set_nonblocking(true)?;
    let bound = std_socket.local_addr()?;
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
                match UdpSocket::from_std(std_socket) {
                    Ok(socket) => Driver::new(engine, socket, metrics).run(rx).await,
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
    })
}

/// The core, its socket and what waits to be sent.
struct Driver {
    engine: Engine,
    socket: UdpSocket,
    receiver: Receiver,
    sender: Sender,
    outgoing: VecDeque<Transmit>,
    metrics: Arc<Metrics>,
}

impl Driver {
    fn new(engine: Engine, socket: UdpSocket, metrics: Arc<Metrics>) -> Self {
        Self {
            engine,
            socket,
            receiver: Receiver::default(),
            sender: Sender::default(),
            outgoing: VecDeque::new(),
            metrics,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.engine.process();
            self.send().await;
            let deadline = self.engine.poll_timeout().map_or_else(
                || tokio::time::Instant::now() + Duration::from_secs(3600),
                tokio::time::Instant::from_std,
            );
            tokio::select! {
                biased;
                command = commands.recv() => {
                    let Some(command) = command else { break };
                    if !self.engine.handle_command(command) {
                        break;
                    }
                }
                readable = self.socket.readable() => {
                    if readable.is_ok() {
                        self.receive();
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    self.engine.handle_timeout(Instant::now());
                }
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

    /// Reads every datagram queued, a batch per system call, into the core.
    fn receive(&mut self) {
        // Bounded, so that a flood cannot starve commands and timers.
        for _ in 0..8 {
            match self.receiver.recv(&self.socket) {
                Ok(0) => break,
                Ok(_) => {
                    let now = Instant::now();
                    for (from, data) in self.receiver.datagrams() {
                        self.engine.handle_datagram(now, from, data);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "media socket receive error");
                    break;
                }
            }
        }
    }

    /// Sends what the core produced, a batch per system call; waits for room in the socket
    /// when it is full.
    async fn send(&mut self) {
        self.engine.take_transmits(&mut self.outgoing);
        let mut refused = 0;
        while !self.outgoing.is_empty() {
            self.sender
                .send(&self.socket, &mut self.outgoing, &mut refused);
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
