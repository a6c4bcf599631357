//! Throughput of the pure placement core on a fleet of realistic size.
//!
//! The design asks for at least 100,000 placement decisions per second on one core with
//! 2,000 nodes and 50,000 live rooms. For each strategy (Packed, Distributed) this builds
//! such a snapshot (3 zones, 2,000 Ready nodes, 50,000 rooms of mixed sizes, some with zone
//! rules) and measures:
//!
//! - `decide`: [`place`] alone, cycling through varied requests;
//! - `decide_and_apply`: a steady-state churn, one placement + `Assign` + `Release` of the
//!   oldest room per element, so the snapshot stays at 50,000 rooms.
//!
//! After criterion, it prints one plain line per strategy with the decisions per second
//! measured over 200,000 `place` calls, so `make bench` shows the figure at a glance.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ruche_crds::PlacementStrategy;
use ruche_operator::core::RoomRequest;
use ruche_operator::core::{Action, FleetRules, NodeInfo, RoomKey, Snapshot, ZoneRules, place};

const ZONES: [&str; 3] = ["fr-par-1", "fr-par-2", "fr-par-3"];
const NODES: usize = 2_000;
/// Participant slots per node. With the size mix of [`room_size`] (about 9.5 slots per room
/// on average) 50,000 rooms fill roughly two thirds of the fleet: realistic, with headroom.
const NODE_CAPACITY: u32 = 350;
const ROOMS: usize = 50_000;
/// Distinct requests the benchmarks cycle through (a power of two, to index with a mask).
const REQUESTS: usize = 1_024;
const SUMMARY_DECISIONS: usize = 200_000;

/// A small xorshift64 generator: deterministic across runs, and no extra dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `lo..=hi`.
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// Room sizes 2..=40, skewed towards small meetings as real traffic is.
fn room_size(rng: &mut XorShift) -> u32 {
    let size = match rng.between(0, 9) {
        0..=5 => rng.between(2, 6),
        6..=8 => rng.between(7, 20),
        _ => rng.between(21, 40),
    };
    size as u32
}

/// A request of mixed size and zone rules: most rooms may go anywhere, some are pinned to
/// one zone, some prefer one, some are limited to two zones with a preference.
fn random_request(snapshot: &Snapshot, rng: &mut XorShift) -> Result<RoomRequest, String> {
    let slots = room_size(rng);
    let k = rng.between(0, 2) as usize;
    let (zone, next) = (ZONES[k], ZONES[(k + 1) % ZONES.len()]);
    let (allowed, preferred): (Vec<&str>, Vec<&str>) = match rng.between(0, 15) {
        0 => (vec![zone], vec![]),
        1 => (vec![], vec![zone]),
        2 => (vec![zone, next], vec![zone]),
        _ => (vec![], vec![]),
    };
    snapshot
        .request(slots, &allowed, &preferred)
        .map_err(|e| e.to_string())
}

/// A snapshot of 50,000 live rooms, the requests to cycle through, and the live room keys
/// oldest first (for the steady-state churn).
struct Fleet {
    snapshot: Snapshot,
    requests: Vec<RoomRequest>,
    live: VecDeque<RoomKey>,
}

impl Fleet {
    fn build(strategy: PlacementStrategy) -> Result<Self, String> {
        let rules = FleetRules {
            strategy,
            zones: ZONES
                .iter()
                .map(|z| ZoneRules {
                    name: (*z).to_string(),
                    min_nodes: 1,
                    max_nodes: NODES as u32,
                })
                .collect(),
        };
        let mut snapshot = Snapshot::new(rules).map_err(|e| e.to_string())?;
        for i in 0..NODES {
            let zone = ZONES[i % ZONES.len()];
            snapshot
                .add_node(NodeInfo::ready(
                    format!("{zone}-node-{i:04}"),
                    zone,
                    NODE_CAPACITY,
                ))
                .map_err(|e| e.to_string())?;
        }

        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut live = VecDeque::with_capacity(ROOMS + 1);
        for i in 0..ROOMS {
            let request = random_request(&snapshot, &mut rng)?;
            let placement = place(&snapshot, &request)
                .map_err(|e| format!("setup room {i} of {ROOMS} did not fit: {e}"))?;
            let room = RoomKey::new(format!("room-{i:05}"));
            snapshot
                .apply(&Action::Assign {
                    room: room.clone(),
                    node: placement.node,
                    request,
                })
                .map_err(|e| e.to_string())?;
            live.push_back(room);
        }
        if snapshot.room_count() != ROOMS {
            return Err(format!(
                "setup placed {} rooms, expected {ROOMS}",
                snapshot.room_count()
            ));
        }

        let mut requests = Vec::with_capacity(REQUESTS);
        for _ in 0..REQUESTS {
            requests.push(random_request(&snapshot, &mut rng)?);
        }
        // A refused request would time the (slower) explanation path instead of a decision.
        if let Some(r) = requests.iter().find(|r| place(&snapshot, r).is_err()) {
            return Err(format!("benchmark request {r:?} does not fit the fleet"));
        }
        Ok(Self {
            snapshot,
            requests,
            live,
        })
    }

    /// Share of the fleet's slots reserved, for the setup sanity check.
    fn fill(&self) -> f64 {
        let (used, capacity) = ZONES
            .iter()
            .filter_map(|z| self.snapshot.zone_id(z))
            .map(|z| self.snapshot.zone_use(z))
            .fold((0, 0), |(u, c), z| (u + z.used, c + z.capacity));
        used as f64 / capacity as f64
    }

    /// One steady-state step: place a new room under `spare`, release the oldest live room,
    /// whose key becomes the next spare. Returns false if the room could not be placed.
    fn churn(&mut self, spare: &mut RoomKey, request: &RoomRequest) -> bool {
        let Ok(placement) = place(&self.snapshot, request) else {
            return false;
        };
        let assigned = self.snapshot.apply(&Action::Assign {
            room: spare.clone(),
            node: black_box(placement.node),
            request: *request,
        });
        if assigned.is_err() {
            return false;
        }
        self.live.push_back(spare.clone());
        let Some(oldest) = self.live.pop_front() else {
            return false;
        };
        let released = self.snapshot.apply(&Action::Release {
            room: oldest.clone(),
        });
        *spare = oldest;
        released.is_ok()
    }
}

fn strategy_name(strategy: PlacementStrategy) -> &'static str {
    match strategy {
        PlacementStrategy::Packed => "packed",
        PlacementStrategy::Distributed => "distributed",
    }
}

/// Decisions per second of `place` alone, timed without criterion.
fn decisions_per_second(fleet: &Fleet) -> f64 {
    let mask = REQUESTS - 1;
    let start = Instant::now();
    let mut placed = 0u32;
    for i in 0..SUMMARY_DECISIONS {
        let request = &fleet.requests[i & mask];
        let decision = place(black_box(&fleet.snapshot), black_box(request));
        placed += u32::from(black_box(decision).is_ok());
    }
    let elapsed = start.elapsed();
    black_box(placed);
    SUMMARY_DECISIONS as f64 / elapsed.as_secs_f64()
}

/// Runs the two criterion benchmarks of one strategy. Returns the number of churn steps that
/// failed to place or apply (expected zero).
fn bench_strategy(c: &mut Criterion, fleet: &mut Fleet, strategy: PlacementStrategy) -> u64 {
    let mask = REQUESTS - 1;
    let mut group = c.benchmark_group(format!("placement/{}", strategy_name(strategy)));
    group
        .throughput(Throughput::Elements(1))
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);

    let mut i = 0usize;
    group.bench_function("decide", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            place(
                black_box(&fleet.snapshot),
                black_box(&fleet.requests[i & mask]),
            )
        });
    });

    // The spare key is allocated here, once: the timed loop only clones `Arc`s.
    let mut spare = RoomKey::new("room-spare");
    let mut failures = 0u64;
    let mut j = 0usize;
    group.bench_function("decide_and_apply", |b| {
        b.iter(|| {
            j = j.wrapping_add(1);
            let request = fleet.requests[j & mask];
            if !fleet.churn(&mut spare, black_box(&request)) {
                failures += 1;
            }
        });
    });
    group.finish();

    if fleet.snapshot.room_count() != ROOMS {
        eprintln!(
            "placement/{}: snapshot holds {} rooms after the churn, expected {ROOMS}",
            strategy_name(strategy),
            fleet.snapshot.room_count()
        );
        failures += 1;
    }
    failures
}

/// Whether criterion will really benchmark: `cargo test --benches` runs this binary without
/// `--bench` (criterion's test mode), where a timed summary would only slow the tests down.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--test" || a == "--list")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut summary = Vec::new();
    let mut failed = false;

    for strategy in [PlacementStrategy::Packed, PlacementStrategy::Distributed] {
        let name = strategy_name(strategy);
        let mut fleet = match Fleet::build(strategy) {
            Ok(fleet) => fleet,
            Err(e) => {
                eprintln!("placement {name}: cannot build the benchmark fleet: {e}");
                std::process::exit(1);
            }
        };
        let fill = fleet.fill();
        if fill > 0.9 {
            let pct = fill * 100.0;
            eprintln!("placement {name}: the fleet is {pct:.0}% full, expected headroom");
            std::process::exit(1);
        }
        // Measured before the churn, on the freshly built fleet.
        if benchmarking() {
            let rate = decisions_per_second(&fleet);
            summary.push(format!(
                "placement {name} decide: {rate:.0} decisions/s ({NODES} nodes, {ROOMS} rooms)"
            ));
        }
        let failures = bench_strategy(&mut c, &mut fleet, strategy);
        if failures > 0 {
            eprintln!("placement {name}: {failures} steady-state steps failed");
            failed = true;
        }
    }

    c.final_summary();
    for line in &summary {
        println!("{line}");
    }
    if failed {
        std::process::exit(1);
    }
}
