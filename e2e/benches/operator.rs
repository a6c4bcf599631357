//! `make bench-operator`: the operator at scale against the cluster `RUCHE_E2E_KUBECONFIG`
//! names.
//!
//! In a fresh namespace, under exactly the RBAC of `manifests/rbac/`, one `ruche-operator run`
//! (release build) runs a fleet of 1,000 media nodes whose pods the pod runner starts as
//! admin API stand-ins (`ruche-admin-stand-in`: the operator's polls, assignments and drains
//! are answered, but there is no media and no participant). Then:
//!
//! 1. **Latency.** Rooms are created at 100 per second for 60 seconds. For each, the time from
//!    just before its create request is sent to the moment a watch on Rooms shows it placed
//!    (`status.node` set, phase Scheduled) is recorded: created → scheduled as a client sees
//!    it, the API server's round trips and watch delivery included. p50, p90, p99 and max.
//! 2. **Burst.** 2,000 rooms are created at once (100 requests in flight): the time from the
//!    first create request to the last room seen placed.
//! 3. **Memory.** Rooms are created, 50 requests at a time, until there are 20,000; once all
//!    are placed and a few poll periods have passed, the operator's resident memory (VmRSS)
//!    and its peak (VmHWM) are read from `/proc`.
//!
//! Around each phase it reads the API server's own request counters (`/metrics`) and the
//! operator's CPU time, and prints the writes the operator made per placement, by kind.
//!
//! Sizes change with `RUCHE_BENCH_NODES`, `RUCHE_BENCH_ROOMS`, `RUCHE_BENCH_RATE` (rooms per
//! second), `RUCHE_BENCH_RATE_SECONDS` and `RUCHE_BENCH_BURST`. Without a cluster it prints
//! `SKIPPED (no cluster): <why>` and succeeds. Under `cargo test` (no `--bench` argument) it
//! only says how to run it: a scale run is not a unit test.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::ResourceExt as _;
use kube::api::PostParams;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event, watcher};
use ruche_crds::{MediaFleet, Room, RoomPhase};
use ruche_e2e::apiserver::{RequestCounts, RequestKind};
use ruche_e2e::fixtures;
use ruche_e2e::usage::Usage;
use ruche_e2e::{Error, NodeProgram, Result, TestEnv, wait};
use tokio::task::JoinSet;

const FLEET: &str = "scale";
const ZONES: [&str; 4] = ["bench-a", "bench-b", "bench-c", "bench-d"];
/// Participant slots per node, and per room: 20,000 rooms fill 1,000 nodes to 80%.
const NODE_SLOTS: u32 = 100;
const ROOM_SLOTS: u32 = 4;
const HOST_PORT_BASE: u16 = 20_000;
/// Create requests in flight at once while filling up to the room count.
const FILL_PARALLEL: usize = 50;
/// Create requests in flight at once during the burst.
const BURST_PARALLEL: usize = 100;
/// The goals the figures are held against.
const GOAL_P99: Duration = Duration::from_millis(50);
const GOAL_BURST: Duration = Duration::from_secs(10);
const GOAL_RSS_BYTES: u64 = 150_000_000;
const GOAL_WRITES_PER_PLACEMENT: f64 = 2.0;

/// The run's sizes, from the environment.
struct Sizes {
    nodes: u32,
    rooms: u32,
    rate: u32,
    rate_seconds: u32,
    burst: u32,
}

fn setting(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::Setup(format!("{name}={v}: expected a positive number"))),
        _ => Ok(default),
    }
}

impl Sizes {
    fn from_env() -> Result<Self> {
        let sizes = Self {
            nodes: setting("RUCHE_BENCH_NODES", 1_000)?,
            rooms: setting("RUCHE_BENCH_ROOMS", 20_000)?,
            rate: setting("RUCHE_BENCH_RATE", 100)?,
            rate_seconds: setting("RUCHE_BENCH_RATE_SECONDS", 60)?,
            burst: setting("RUCHE_BENCH_BURST", 2_000)?,
        };
        if !sizes.nodes.is_multiple_of(ZONES.len() as u32) {
            return Err(Error::Setup(format!(
                "RUCHE_BENCH_NODES={}: must be a multiple of the {} zones",
                sizes.nodes,
                ZONES.len()
            )));
        }
        if sizes.rate * sizes.rate_seconds + sizes.burst > sizes.rooms {
            return Err(Error::Setup(format!(
                "{} rooms/s for {} s and a burst of {} is more than RUCHE_BENCH_ROOMS={}",
                sizes.rate, sizes.rate_seconds, sizes.burst, sizes.rooms
            )));
        }
        if u64::from(sizes.rooms) * u64::from(ROOM_SLOTS)
            > u64::from(sizes.nodes) * u64::from(NODE_SLOTS)
        {
            return Err(Error::Setup(format!(
                "{} rooms of {ROOM_SLOTS} slots do not fit on {} nodes of {NODE_SLOTS}",
                sizes.rooms, sizes.nodes
            )));
        }
        Ok(sizes)
    }
}

fn main() -> ExitCode {
    if !std::env::args().any(|a| a == "--bench") {
        println!("bench-operator: built; run it against a cluster with `make bench-operator`");
        return ExitCode::SUCCESS;
    }
    // A thousand stand-in processes and their connections: as many open files as allowed.
    if let Err(e) = ruche_operator::run::limits::raise_open_files() {
        eprintln!("bench-operator: cannot raise the open-files limit: {e}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bench-operator: no runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-operator: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let sizes = Sizes::from_env()?;
    let Some(mut env) = TestEnv::start_with("bench-operator", NodeProgram::AdminStandIn).await?
    else {
        return Ok(());
    };
    let outcome = measure(&env, &sizes).await;
    if outcome.is_err() {
        env.fail();
    }
    outcome
}

/// When each room was first seen placed, by name.
type Seen = Arc<Mutex<HashMap<String, Instant>>>;

fn placed(room: &Room) -> bool {
    room.status.as_ref().is_some_and(|s| {
        s.node.is_some() && matches!(s.phase, RoomPhase::Scheduled | RoomPhase::Active)
    })
}

/// Watches the namespace's Rooms and records when each is first seen placed.
fn watch_placements(env: &TestEnv) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let api = env.api::<Room>();
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        while let Some(event) = events.next().await {
            let room = match event {
                Ok(Event::Apply(r) | Event::InitApply(r)) => r,
                Ok(_) => continue,
                Err(e) => {
                    eprintln!("bench-operator: watching rooms: {e} (retrying)");
                    continue;
                }
            };
            if placed(&room) {
                record
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(room.name_any())
                    .or_insert_with(Instant::now);
            }
        }
    });
    (seen, task)
}

fn count(seen: &Seen) -> usize {
    seen.lock().unwrap_or_else(PoisonError::into_inner).len()
}

async fn measure(env: &TestEnv, sizes: &Sizes) -> Result<()> {
    let version = env.client.apiserver_version().await?;
    let server = format!(
        "{} (Kubernetes {}, {})",
        env.server(),
        version.git_version,
        version.platform
    );
    let operator_pid = env.operator()?.pid();
    println!(
        "bench-operator: API server {server}; operator pid {operator_pid}; media nodes are \
         admin API stand-ins (ruche-admin-stand-in: no media, no participants)"
    );

    let per_zone = sizes.nodes / ZONES.len() as u32;
    let started = Instant::now();
    env.apply::<MediaFleet>(FLEET, &fleet(per_zone)).await?;
    wait_fleet(env, sizes.nodes).await?;
    let fleet_ready = started.elapsed();
    println!(
        "bench-operator: {} nodes Ready in {:.1} s",
        sizes.nodes,
        fleet_ready.as_secs_f64()
    );

    let (seen, watch) = watch_placements(env);
    let meter = Meter {
        env,
        pid: operator_pid,
        seen: &seen,
    };
    let result = async {
        let (latency, steady) = meter
            .phase(
                &format!("{} rooms/s for {} s", sizes.rate, sizes.rate_seconds),
                latency_phase(env, sizes, &seen),
            )
            .await?;
        let (burst, burst_cost) = meter
            .phase(
                &format!("a burst of {} rooms", sizes.burst),
                burst_phase(env, sizes, &seen),
            )
            .await?;
        let (memory, fill) = meter
            .phase(
                &format!("fill to {} rooms", sizes.rooms),
                fill_and_weigh(env, sizes, &seen, operator_pid),
            )
            .await?;
        Ok::<_, Error>((latency, burst, memory, [steady, burst_cost, fill]))
    }
    .await;
    watch.abort();
    let (latency, burst, memory, phases) = result?;
    report(
        &server,
        sizes,
        fleet_ready,
        &latency,
        &burst,
        &memory,
        &phases,
    );
    Ok(())
}

/// What one phase of the run cost: placements made, the API requests the API server served
/// (by kind), the operator's CPU time, the control plane's (when its processes are known),
/// the wall time.
struct Cost {
    name: String,
    placements: usize,
    requests: RequestCounts,
    cpu: Duration,
    control_plane: Vec<(&'static str, Duration)>,
    wall: Duration,
}

/// Reads the costs around a phase.
struct Meter<'a> {
    env: &'a TestEnv,
    pid: u32,
    seen: &'a Seen,
}

/// The control plane's processes, when the kubeconfig sits in a directory of
/// `../shared/k8s/up` (which keeps their pid files beside it): their CPU time is printed too.
fn control_plane() -> Vec<(&'static str, u32)> {
    let Some(dir) = std::env::var_os(ruche_e2e::cluster::KUBECONFIG_ENV)
        .map(std::path::PathBuf::from)
        .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
    else {
        return Vec::new();
    };
    ["kube-apiserver", "etcd"]
        .into_iter()
        .filter_map(|name| {
            let pid = std::fs::read_to_string(dir.join(format!("{name}.pid"))).ok()?;
            let pid: u32 = pid.trim().parse().ok()?;
            Usage::of(pid).ok().map(|_| (name, pid))
        })
        .collect()
}

fn cpu_of(pid: u32) -> Duration {
    Usage::of(pid).map(|u| u.cpu).unwrap_or_default()
}

impl Meter<'_> {
    async fn phase<T>(
        &self,
        name: &str,
        run: impl Future<Output = Result<T>>,
    ) -> Result<(T, Cost)> {
        let placed = count(self.seen);
        let requests = RequestCounts::read(&self.env.client).await?;
        let cpu = Usage::of(self.pid)?.cpu;
        let plane: Vec<_> = control_plane()
            .into_iter()
            .map(|(name, pid)| (name, pid, cpu_of(pid)))
            .collect();
        let started = Instant::now();
        let out = run.await?;
        let wall = started.elapsed();
        // The event of the last placements is written just after their status.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let cost = Cost {
            name: name.to_string(),
            placements: count(self.seen).saturating_sub(placed),
            requests: RequestCounts::read(&self.env.client)
                .await?
                .since(&requests),
            cpu: Usage::of(self.pid)?.cpu.saturating_sub(cpu),
            control_plane: plane
                .into_iter()
                .map(|(name, pid, before)| (name, cpu_of(pid).saturating_sub(before)))
                .collect(),
            wall,
        };
        Ok((out, cost))
    }
}

/// Writes made by the operator: everything but the bench's own room creations and what the
/// pod runner does as a kubelet (pod status, ServiceAccount tokens).
fn by_operator(k: &RequestKind) -> bool {
    let bench = k.verb == "POST" && k.resource == "rooms" && k.subresource.is_empty();
    let kubelet = (k.resource == "pods" && k.subresource == "status")
        || (k.resource == "serviceaccounts" && k.subresource == "token");
    // The disruption controller's: it recomputes the fleet's budget as pods turn busy.
    let controller_manager = k.resource == "poddisruptionbudgets" && k.subresource == "status";
    !bench && !kubelet && !controller_manager
}

/// The bench fleet: `per_zone` nodes in each zone, host ports.
fn fleet(per_zone: u32) -> serde_json::Value {
    let zones: Vec<_> = ZONES.iter().map(|z| (*z, per_zone, per_zone)).collect();
    fixtures::fleet_with(FLEET, HOST_PORT_BASE, &zones, NODE_SLOTS)
}

async fn wait_fleet(env: &TestEnv, nodes: u32) -> Result<()> {
    let timeout = Duration::from_secs(60 + u64::from(nodes));
    let mut last_print = Instant::now();
    wait::until_every(
        &format!("{nodes} Ready media nodes"),
        timeout,
        Duration::from_secs(2),
        || {
            let print = last_print.elapsed() > Duration::from_secs(15);
            if print {
                last_print = Instant::now();
            }
            async move {
                let f = env
                    .api::<MediaFleet>()
                    .get(FLEET)
                    .await
                    .map_err(|e| e.to_string())?;
                let s = f.status.unwrap_or_default();
                let state = format!(
                    "replicas {}, readyReplicas {} of {nodes}",
                    s.replicas, s.ready_replicas
                );
                if print {
                    println!("bench-operator: fleet: {state}");
                }
                if s.ready_replicas == nodes {
                    Ok(())
                } else {
                    Err(state)
                }
            }
        },
    )
    .await
}

/// Latencies of the rooms created at a steady rate.
struct Latency {
    rooms: usize,
    achieved_rate: f64,
    sorted: Vec<Duration>,
}

impl Latency {
    fn percentile(&self, p: f64) -> Duration {
        let last = self.sorted.len().saturating_sub(1);
        let at = ((last as f64) * p).round() as usize;
        self.sorted.get(at.min(last)).copied().unwrap_or_default()
    }
}

async fn latency_phase(env: &TestEnv, sizes: &Sizes, seen: &Seen) -> Result<Latency> {
    let total = sizes.rate * sizes.rate_seconds;
    let period = Duration::from_secs(1) / sizes.rate;
    let api = env.api::<Room>();
    let mut sent: HashMap<String, Instant> = HashMap::new();
    let mut requests = JoinSet::new();
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + period * i).await;
        let name = format!("steady-{i:06}");
        let room = fixtures::room(&name, FLEET, ROOM_SLOTS, &[])?;
        sent.insert(name, Instant::now());
        let api = api.clone();
        requests.spawn(async move { api.create(&PostParams::default(), &room).await });
    }
    let sending = start.elapsed();
    while let Some(done) = requests.join_next().await {
        done.map_err(|e| Error::Setup(format!("a create request panicked: {e}")))??;
    }
    let expected = total as usize;
    wait::until(
        &format!("{expected} rooms created at a steady rate to be placed"),
        Duration::from_secs(120),
        || async {
            let placed = {
                let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
                sent.keys().filter(|n| seen.contains_key(*n)).count()
            };
            if placed == expected {
                Ok(())
            } else {
                Err(format!("{placed} of {expected} placed"))
            }
        },
    )
    .await?;
    let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let mut sorted: Vec<Duration> = sent
        .iter()
        .filter_map(|(name, at)| seen.get(name).map(|s| s.saturating_duration_since(*at)))
        .collect();
    sorted.sort();
    Ok(Latency {
        rooms: sorted.len(),
        achieved_rate: f64::from(total) / sending.as_secs_f64().max(f64::EPSILON),
        sorted,
    })
}

/// How long a burst of rooms created at once took to be placed.
struct Burst {
    rooms: usize,
    /// From the first create request to the last room seen placed.
    all_placed: Duration,
    /// From the first create request to the last create answered.
    all_created: Duration,
}

async fn burst_phase(env: &TestEnv, sizes: &Sizes, seen: &Seen) -> Result<Burst> {
    let first = sizes.rate * sizes.rate_seconds;
    let names: Vec<String> = (first..first + sizes.burst)
        .map(|i| format!("burst-{i:06}"))
        .collect();
    let rooms = names
        .iter()
        .map(|n| fixtures::room(n, FLEET, ROOM_SLOTS, &[]))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    env.create_rooms(rooms, BURST_PARALLEL).await?;
    let all_created = started.elapsed();
    wait::until_every(
        &format!("the {} rooms of the burst to be placed", names.len()),
        Duration::from_secs(120),
        Duration::from_millis(20),
        || async {
            let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let placed = names.iter().filter(|n| seen.contains_key(*n)).count();
            if placed == names.len() {
                Ok(())
            } else {
                Err(format!("{placed} of {} placed", names.len()))
            }
        },
    )
    .await?;
    let last = {
        let seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
        names.iter().filter_map(|n| seen.get(n)).max().copied()
    };
    Ok(Burst {
        rooms: names.len(),
        all_placed: last.map_or(started.elapsed(), |l| l.saturating_duration_since(started)),
        all_created,
    })
}

/// The operator's memory once every room is placed.
struct Memory {
    rss: u64,
    peak: u64,
    fill_seconds: f64,
}

async fn fill_and_weigh(
    env: &TestEnv,
    sizes: &Sizes,
    seen: &Seen,
    operator_pid: u32,
) -> Result<Memory> {
    let done = sizes.rate * sizes.rate_seconds + sizes.burst;
    let rooms = (done..sizes.rooms)
        .map(|i| fixtures::room(&format!("fill-{i:06}"), FLEET, ROOM_SLOTS, &[]))
        .collect::<Result<Vec<_>>>()?;
    let started = Instant::now();
    env.create_rooms(rooms, FILL_PARALLEL).await?;
    let expected = sizes.rooms as usize;
    wait::until_every(
        &format!("all {expected} rooms to be placed"),
        Duration::from_secs(600),
        Duration::from_secs(1),
        || async {
            let placed = count(seen);
            if placed >= expected {
                Ok(())
            } else {
                Err(format!("{placed} of {expected} placed"))
            }
        },
    )
    .await?;
    let fill_seconds = started.elapsed().as_secs_f64();
    println!(
        "bench-operator: {} rooms placed; {} more created and placed in {fill_seconds:.1} s",
        expected,
        sizes.rooms - done
    );
    // Placements are checked against the nodes before memory is read: a fast wrong answer
    // is no result.
    let nodes = env.nodes(FLEET).await?;
    let all = env.rooms().await?;
    fixtures::check_placements(&all, &nodes)
        .map_err(|problems| Error::Setup(format!("placements are wrong: {problems}")))?;
    // A few poll periods and gauge refreshes with everything in the caches.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let usage = Usage::of(operator_pid)?;
    Ok(Memory {
        rss: usage.rss,
        peak: usage.peak,
        fill_seconds,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn report(
    server: &str,
    sizes: &Sizes,
    fleet_ready: Duration,
    l: &Latency,
    b: &Burst,
    m: &Memory,
    phases: &[Cost],
) {
    let p99 = l.percentile(0.99);
    println!(
        "\n==== bench-operator: against {server}\n\
         media nodes: {nodes} admin API stand-ins in {zones} zones, Ready {ready:.1} s after the fleet was applied\n\
         Room created -> scheduled, as a watching client sees it; {rooms} rooms at {rate} rooms/s (achieved {achieved:.1}/s):\n\
         \x20 p50 {p50:.1} ms   p90 {p90:.1} ms   p99 {p99v:.1} ms   max {max:.1} ms   goal p99 < {goal} ms: {v1}\n\
         a burst of {burst} rooms created at once ({parallel} requests in flight, all created in {created:.2} s):\n\
         \x20 all placed {placed:.2} s after the first create   goal < {burst_goal} s: {v3}\n\
         operator memory with {nodes} media nodes and {total} rooms (filled in {fill:.1} s):\n\
         \x20 RSS {rss:.1} MiB ({rss_mb:.1} MB), peak {peak:.1} MiB   goal < 150 MB: {v2}",
        nodes = sizes.nodes,
        zones = ZONES.len(),
        ready = fleet_ready.as_secs_f64(),
        rooms = l.rooms,
        rate = sizes.rate,
        achieved = l.achieved_rate,
        p50 = ms(l.percentile(0.50)),
        p90 = ms(l.percentile(0.90)),
        p99v = ms(p99),
        max = ms(l.percentile(1.0)),
        goal = GOAL_P99.as_millis(),
        v1 = verdict(p99 < GOAL_P99),
        burst = b.rooms,
        parallel = BURST_PARALLEL,
        created = b.all_created.as_secs_f64(),
        placed = b.all_placed.as_secs_f64(),
        burst_goal = GOAL_BURST.as_secs(),
        v3 = verdict(b.all_placed < GOAL_BURST),
        total = sizes.rooms,
        fill = m.fill_seconds,
        rss = mib(m.rss),
        rss_mb = m.rss as f64 / 1e6,
        peak = mib(m.peak),
        v2 = verdict(m.rss < GOAL_RSS_BYTES),
    );
    println!(
        "cost per phase (API requests as the API server counted them; operator CPU from /proc):"
    );
    let mut total_writes = 0;
    let mut total_placements = 0;
    for c in phases {
        let writes = c.requests.writes(by_operator);
        total_writes += writes;
        total_placements += c.placements;
        println!(
            "  {name:<24} {placements:>6} placements in {wall:>6.1} s   operator CPU {cpu:>6.1} s ({per_cpu:.2} ms per placement)   operator writes {writes:>6} ({per:.2} per placement)",
            name = c.name,
            placements = c.placements,
            wall = c.wall.as_secs_f64(),
            cpu = c.cpu.as_secs_f64(),
            per_cpu = ms(c.cpu) / c.placements.max(1) as f64,
            per = writes as f64 / c.placements.max(1) as f64,
        );
        let kinds: Vec<String> = c
            .requests
            .0
            .iter()
            .filter(|(k, _)| k.is_write())
            .map(|(k, n)| {
                let who = if by_operator(k) {
                    ""
                } else {
                    " (not the operator)"
                };
                format!("{n} {k}{who}")
            })
            .collect();
        println!("      writes: {}", kinds.join(", "));
        if !c.control_plane.is_empty() {
            let plane: Vec<String> = c
                .control_plane
                .iter()
                .map(|(name, cpu)| format!("{name} {:.1} s", cpu.as_secs_f64()))
                .collect();
            println!("      control plane CPU: {}", plane.join(", "));
        }
    }
    let per = total_writes as f64 / total_placements.max(1) as f64;
    // Writes made on a clock, not per placement: the leader Lease's renewals (every 2 s) and
    // the fleets' status refreshes (at most every 30 s per fleet).
    let periodic: u64 = phases
        .iter()
        .map(|c| {
            c.requests
                .writes(|k| k.resource == "leases" || k.resource == "mediafleets")
        })
        .sum();
    // Writes made once per media node, not per placement: its pod labelled busy when it gets
    // its first room (the fleet's disruption budget then protects it).
    let per_node: u64 = phases
        .iter()
        .map(|c| {
            c.requests
                .writes(|k| k.resource == "pods" && k.verb == "PATCH" && k.subresource.is_empty())
        })
        .sum();
    let with_labels = (total_writes - periodic) as f64 / total_placements.max(1) as f64;
    let placing = (total_writes - periodic - per_node) as f64 / total_placements.max(1) as f64;
    println!(
        "  all phases: {total_writes} operator writes for {total_placements} placements: {per:.4} per placement\n\
         \x20 without the {periodic} made on a clock (Lease renewals, fleet status refreshes): {with_labels:.4} per placement\n\
         \x20 without the {per_node} pod labels too (once per node, at its first room): {placing:.4} per placement   goal <= 2: {}",
        verdict(placing <= GOAL_WRITES_PER_PLACEMENT)
    );
}
