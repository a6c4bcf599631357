//! Forwarding benchmark: `ruche-media-node` and Janus (VideoRoom) side by side, under the
//! same synthetic load, on loopback. Run it with `make bench-media`, which installs Janus if
//! needed and runs this inside a network namespace of its own (see `run-forward.sh`).
//!
//! The load generator neither encodes nor decodes: each publisher sends pre-built RTP (a
//! VP8-like video packet per frame and Opus-like audio), every payload stamped with its send
//! time, over real ICE, DTLS and SRTP (the `webrtc` crate); each subscriber receives every
//! publisher of its room. Each SFU runs as its own process, pinned to its own CPU when the
//! machine has two or more, so its CPU time (`/proc/<pid>/stat`) is its own. Over a fixed
//! window the benchmark reports, per SFU: packets forwarded (counted at the subscribers, the
//! same definition for both), the SFU's CPU time per forwarded packet and forwarded packets
//! per CPU-second, the latency through the SFU (receive minus send stamp, one process clock;
//! printed next to the generator's own floor, measured once without an SFU), and resident
//! memory per participant; then the ratio of packets per CPU-second and whether
//! ruche-media-node reaches its goal of 1.5x Janus.
//!
//! Environment (all optional): `BENCH_SHAPES` (`1x1x2,4x1x4,4x2x8,1x1x50,1x10x10`: rooms x
//! publishers x subscribers; 1x1x50 is a webinar, 1x10x10 a large meeting), `BENCH_REPEATS`
//! (3: runs of each shape and SFU, alternating, for each figure's spread), `BENCH_SECONDS` (10), `BENCH_WARMUP_SECONDS` (3), `BENCH_VIDEO_PPS` (60),
//! `BENCH_VIDEO_BYTES` (1100), `BENCH_AUDIO_PPS` (50), `BENCH_AUDIO_BYTES` (100),
//! `BENCH_KEYFRAME_SECONDS` (1), `BENCH_SFUS` (`ruche,janus`), `BENCH_PIN` (1 with two CPUs
//! or more), `BENCH_SFU_CPUS` (the last CPU), `BENCH_GENERATOR_CPUS` (the others),
//! `BENCH_CONNECT_TIMEOUT` (20), `BENCH_REQUIRE_GOAL` (0), `RUCHE_MEDIA_NODE_BIN`,
//! `JANUS_BIN`, `JANUS_CONFIG_DIR`, `JANUS_WS_PORT` (8188, as in the configuration),
//! `BENCH_CLIENT_IP` (127.0.0.1; `run-forward.sh` sets 127.0.0.2, see there), `BENCH_DEBUG_SDP`
//! (set: print the Janus publishers' offers and answers).
//!
//! Under `cargo test` (no `--bench` argument) it runs a 2-second smoke of ruche-media-node alone
//! (one publisher, one subscriber), so that the benchmark's client keeps up with the node.

// The `webrtc` crate's futures are large; boxing them here buys nothing.
#![allow(clippy::large_futures)]

#[path = "forward/config.rs"]
mod config;
#[path = "forward/janus.rs"]
mod janus;
#[path = "forward/load.rs"]
mod load;
#[path = "forward/peer.rs"]
mod peer;
#[path = "forward/procfs.rs"]
mod procfs;
#[path = "forward/report.rs"]
mod report;
#[path = "forward/ruche.rs"]
mod ruche;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use config::{Config, Sfu, Shape};
use load::{Reception, Stats, Tracks};
use peer::Peer;
use report::Outcome;

/// How long one signaling exchange may take.
const SIGNALING_TIMEOUT: Duration = Duration::from_secs(15);

/// The goal: forwarded packets per CPU-second, ruche-media-node over Janus.
const GOAL: f64 = 1.5;

/// One connected participant of either SFU.
pub struct Participant {
    /// Its peer connection (publish or subscribe).
    peer: Arc<Peer>,
    /// A publisher's tracks.
    tracks: Option<Arc<Tracks>>,
    /// A subscriber's reception.
    reception: Option<Arc<Reception>>,
    /// The task keeping its signaling session.
    signaling: JoinHandle<()>,
}

/// `program` to be run on `cpus` (through `taskset`), or as is.
fn pinned(cpus: Option<&str>, program: &Path) -> Command {
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.args(["-c", cpus]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

enum Server {
    Ruche(Box<ruche::Ruche>),
    Janus(janus::Janus),
}

impl Server {
    fn process(&mut self) -> &mut procfs::Guard {
        match self {
            Self::Ruche(r) => &mut r.process,
            Self::Janus(j) => &mut j.process,
        }
    }

    fn log(&self) -> &Path {
        match self {
            Self::Ruche(r) => &r.log,
            Self::Janus(j) => &j.log,
        }
    }

    async fn forwarded(&self) -> Option<u64> {
        match self {
            Self::Ruche(r) => r.forwarded().await.ok(),
            Self::Janus(_) => None,
        }
    }
}

/// Publishers then subscribers of every room, connected concurrently per kind.
async fn connect(
    server: &Server,
    shape: Shape,
    stats: &Arc<Stats>,
) -> Result<(Vec<Participant>, Vec<Participant>), String> {
    let mut publishers = Vec::new();
    let mut feeds: Vec<Vec<u64>> = vec![Vec::new(); shape.rooms];
    match server {
        Server::Ruche(r) => {
            let rooms: Vec<String> = (0..shape.rooms).map(|r| format!("room-{r}")).collect();
            r.assign(&rooms, shape.publishers + shape.subscribers)
                .await?;
        }
        Server::Janus(j) => j.ensure_rooms(shape.rooms).await?,
    }
    let joins = (0..shape.rooms).flat_map(|room| {
        (0..shape.publishers).map(move |p| async move {
            let who = format!("pub-{room}-{p}");
            let joined = match server {
                Server::Ruche(r) => r
                    .publisher(&format!("room-{room}"), &who)
                    .await
                    .map(|p| (p, 0)),
                Server::Janus(j) => j.publisher(room as u64 + 1, &who).await,
            };
            joined.map(|j| (room, j)).map_err(|e| format!("{who}: {e}"))
        })
    });
    for (room, (participant, feed)) in futures::future::try_join_all(joins).await? {
        feeds[room].push(feed);
        publishers.push(participant);
    }
    for p in &publishers {
        p.peer.connected(SIGNALING_TIMEOUT).await?;
    }
    let feeds = &feeds;
    let joins = (0..shape.rooms).flat_map(|room| {
        (0..shape.subscribers).map(move |s| async move {
            let who = format!("sub-{room}-{s}");
            let joined = match server {
                Server::Ruche(r) => {
                    r.subscriber(&format!("room-{room}"), &who, stats.clone())
                        .await
                }
                Server::Janus(j) => {
                    j.subscriber(room as u64 + 1, &feeds[room], &who, stats.clone())
                        .await
                }
            };
            joined.map_err(|e| format!("{who}: {e}"))
        })
    });
    let subscribers = futures::future::try_join_all(joins).await?;
    Ok((publishers, subscribers))
}

/// Generator CPU ticks (this process).
fn own_ticks() -> u64 {
    procfs::cpu_ticks(std::process::id()).unwrap_or(0)
}

/// One SFU under one shape, from start to stop.
async fn run_one(
    config: &Arc<Config>,
    sfu: Sfu,
    shape: Shape,
    dir: &Path,
) -> Result<Outcome, String> {
    let mut server = match sfu {
        Sfu::Ruche => Server::Ruche(Box::new(ruche::Ruche::start(config, dir).await?)),
        Sfu::Janus => Server::Janus(janus::Janus::start(config, dir).await?),
    };
    let result = measure(config, &mut server, sfu, shape).await;
    if let Some(exit) = server.process().exited() {
        return Err(format!("{exit}; log: {}", server.log().display()));
    }
    server.process().stop();
    result.map_err(|e| format!("{e} (SFU log: {})", server.log().display()))
}

async fn measure(
    config: &Arc<Config>,
    server: &mut Server,
    sfu: Sfu,
    shape: Shape,
) -> Result<Outcome, String> {
    let pid = server.process().pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = procfs::resident(pid)?;
    let stats = Stats::new();
    let setup = Instant::now();
    let (publishers, subscribers) = connect(server, shape, &stats).await?;
    let (stop_tx, stop) = watch::channel(false);
    let senders: Vec<JoinHandle<()>> = publishers
        .iter()
        .filter_map(|p| p.tracks.clone())
        .map(|t| tokio::spawn(load::send(t, config.clone(), stats.clone(), stop.clone())))
        .collect();
    let participants: Vec<&Participant> = publishers.iter().chain(&subscribers).collect();
    let outcome = async {
        // Every subscriber must receive every track of its room before the clock starts.
        let want = shape.publishers * 2;
        let deadline = Instant::now() + config.connect_timeout;
        loop {
            let live = subscribers
                .iter()
                .filter_map(|s| s.reception.as_ref())
                .filter(|r| r.live_tracks.load(Ordering::Relaxed) >= want)
                .count();
            if live == subscribers.len() {
                break;
            }
            if let Some(exit) = server.process().exited() {
                return Err(exit);
            }
            if Instant::now() > deadline {
                let packets: u64 = subscribers
                    .iter()
                    .filter_map(|s| s.reception.as_ref())
                    .map(|r| r.packets.load(Ordering::Relaxed))
                    .sum();
                return Err(format!(
                    "after {:?}, {live} of {} subscribers receive all {want} tracks of their \
                     room ({packets} packets in all)",
                    config.connect_timeout,
                    subscribers.len()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let setup_time = setup.elapsed();
        tokio::time::sleep(config.warmup).await;
        let ticks0 = procfs::cpu_ticks(pid)?;
        let task_ns0 = procfs::task_cpu_ns(pid);
        let own0 = own_ticks();
        let forwarded0 = server.forwarded().await;
        let t0 = Instant::now();
        stats.set_measuring(true);
        let end = t0 + config.measure;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(200).min(end - Instant::now())).await;
            if let Some(exit) = server.process().exited() {
                return Err(exit);
            }
        }
        stats.set_measuring(false);
        let window = t0.elapsed();
        let ticks1 = procfs::cpu_ticks(pid)?;
        let task_ns1 = procfs::task_cpu_ns(pid);
        let own1 = own_ticks();
        let forwarded1 = server.forwarded().await;
        // Let late packets of the window land before reading the latencies.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let rss_loaded = procfs::resident(pid)?;
        let hz = procfs::clock_ticks() as f64;
        let (latency, samples) = stats.latency_ms(&[0.5, 0.99, 1.0]);
        Ok(Outcome {
            sfu,
            shape,
            setup: setup_time,
            window: window.as_secs_f64(),
            sent: stats.sent.load(Ordering::Relaxed),
            send_errors: stats.send_errors.load(Ordering::Relaxed),
            received: stats.received.load(Ordering::Relaxed),
            unstamped: stats.unstamped.load(Ordering::Relaxed),
            cpu_seconds: (ticks1.saturating_sub(ticks0)) as f64 / hz,
            live_thread_cpu_seconds: task_ns1.saturating_sub(task_ns0) as f64 / 1e9,
            generator_cpu_seconds: (own1.saturating_sub(own0)) as f64 / hz,
            latency_ms: latency,
            latency_samples: samples,
            rss_idle,
            rss_loaded,
            threads: procfs::threads(pid),
            node_forwarded: forwarded0.zip(forwarded1).map(|(a, b)| b.saturating_sub(a)),
        })
    }
    .await;
    let _ = stop_tx.send(true);
    for s in senders {
        let _ = s.await;
    }
    for p in &participants {
        p.signaling.abort();
        p.peer.close().await;
    }
    outcome
}

/// The latency floor of the load generator itself: one publisher connected straight to one
/// subscriber (no SFU), sending at the configured rates; (p50, p99) in ms.
async fn baseline(config: &Arc<Config>) -> Result<(f64, f64), String> {
    let stats = Stats::new();
    let publisher = Peer::new(None).await?;
    let tracks = Arc::new(publisher.add_av("direct").await?);
    let reception = Arc::new(Reception::default());
    let subscriber = Peer::new(Some((stats.clone(), reception.clone()))).await?;
    let offer = publisher.offer().await?;
    let answer = subscriber.answer(offer).await?;
    publisher.accept(answer).await?;
    let (stop_tx, stop) = watch::channel(false);
    let sender = tokio::spawn(load::send(tracks, config.clone(), stats.clone(), stop));
    let result = async {
        publisher.connected(SIGNALING_TIMEOUT).await?;
        let deadline = Instant::now() + config.connect_timeout;
        while reception.live_tracks.load(Ordering::Relaxed) < 2 {
            if Instant::now() > deadline {
                return Err("the direct subscriber received nothing".to_string());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        stats.set_measuring(true);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stats.set_measuring(false);
        let (latency, _) = stats.latency_ms(&[0.5, 0.99]);
        Ok((latency[0], latency[1]))
    }
    .await;
    let _ = stop_tx.send(true);
    let _ = sender.await;
    publisher.close().await;
    subscriber.close().await;
    result
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench" || a == "--run");
    if !bench {
        println!(
            "forward: smoke run of ruche-media-node alone (the benchmark with Janus in a network \
             namespace is make bench-media)"
        );
    }
    let config = match if bench {
        Config::from_env()
    } else {
        Config::smoke()
    } {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("bench-media: {e}");
            return ExitCode::from(2);
        }
    };
    let _ = peer::CLIENT_IP.set(config.client_ip);
    if let Some(cpus) = &config.generator_cpus {
        // Before the runtime exists, so every thread it starts inherits the affinity.
        let pinned = Command::new("taskset")
            .args(["-c", "-p", cpus, &std::process::id().to_string()])
            .stdout(std::process::Stdio::null())
            .status();
        if !pinned.is_ok_and(|s| s.success()) {
            eprintln!("bench-media: cannot pin the load generator to CPUs {cpus} (taskset)");
            return ExitCode::from(2);
        }
    }
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench-media: tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Arc<Config>) -> ExitCode {
    // Inside run-forward.sh's PID namespace process ids repeat from run to run: add the time.
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = std::env::temp_dir().join(format!(
        "ruche-bench-media-{started}-{}",
        std::process::id()
    ));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("bench-media: {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    report::header(&config);
    match baseline(&config).await {
        Ok((p50, p99)) => println!(
            "latency floor of the load generator (one publisher straight to one subscriber, no \
             SFU): p50 {p50:.3} ms, p99 {p99:.3} ms\n"
        ),
        Err(e) => println!("latency floor of the load generator: not measured ({e})\n"),
    }
    let mut failed = false;
    let mut goal_missed = false;
    let mut summary = Vec::new();
    for &shape in &config.shapes {
        let mut outcomes: Vec<(Sfu, Vec<Result<Outcome, String>>)> =
            config.sfus.iter().map(|&s| (s, Vec::new())).collect();
        // Alternating SFUs, so that a slow spell of the machine falls on both.
        for run in 1..=config.repeats {
            for (sfu, runs) in &mut outcomes {
                println!(
                    "running {} with {shape} ({run} of {}) ...",
                    sfu.name(),
                    config.repeats
                );
                let outcome = run_one(&config, *sfu, shape, &dir).await;
                if let Err(e) = &outcome {
                    eprintln!("bench-media: {} FAILED under {shape}: {e}", sfu.name());
                    failed = true;
                }
                runs.push(outcome);
                // Let sockets and threads of the last run go before the next one.
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        let nominal = shape.rooms as u64
            * shape.publishers as u64
            * shape.subscribers as u64
            * u64::from(config.video_pps + config.audio_pps);
        let (met, row) = report::table(shape, &outcomes, nominal);
        goal_missed |= !met;
        summary.push(row);
    }
    report::summary(&summary, config.repeats);
    println!("logs: {}", dir.display());
    if failed {
        eprintln!("bench-media: at least one SFU failed: the comparison is incomplete");
        ExitCode::from(1)
    } else if goal_missed && config.require_goal {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    }
}
