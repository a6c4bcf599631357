//! What one run measured, and the printed comparison.

use std::fmt::Write as _;
use std::time::Duration;

use super::GOAL;
use super::config::{Config, Sfu, Shape};
use super::procfs::Resident;

/// The measurements of one SFU under one shape.
pub struct Outcome {
    /// Which SFU.
    pub sfu: Sfu,
    /// Under which load.
    pub shape: Shape,
    /// From the first join to every subscriber receiving every track.
    pub setup: Duration,
    /// Measurement window, seconds.
    pub window: f64,
    /// Packets the publishers sent in the window.
    pub sent: u64,
    /// Packets publishers could not send in the window.
    pub send_errors: u64,
    /// Stamped packets the subscribers received in the window: the forwarded packets.
    pub received: u64,
    /// Packets without a stamp received in the window.
    pub unstamped: u64,
    /// SFU process CPU time (user + system, all threads) in the window.
    pub cpu_seconds: f64,
    /// CPU time of the SFU threads alive at both ends of the window (ns-precise).
    pub live_thread_cpu_seconds: f64,
    /// Load generator CPU time in the window.
    pub generator_cpu_seconds: f64,
    /// Latency p50, p99 and max, ms.
    pub latency_ms: Vec<f64>,
    /// Latency samples.
    pub latency_samples: usize,
    /// SFU resident memory before anyone joined.
    pub rss_idle: Resident,
    /// At the end of the window.
    pub rss_loaded: Resident,
    /// SFU threads at the end of the window.
    pub threads: u64,
    /// The SFU's own count of forwarded packets in the window, where it exposes one.
    pub node_forwarded: Option<u64>,
}

impl Outcome {
    fn forwarded_per_second(&self) -> f64 {
        self.received as f64 / self.window
    }

    fn per_cpu_second(&self) -> f64 {
        if self.cpu_seconds > 0.0 {
            self.received as f64 / self.cpu_seconds
        } else {
            f64::NAN
        }
    }

    fn expected(&self) -> u64 {
        self.sent * self.shape.subscribers as u64
    }
}

/// The machine and the load, once.
pub fn header(config: &Config) {
    let nproc = std::process::Command::new("nproc")
        .arg("--all")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map_or_else(|| "?".into(), |s| s.trim().to_string());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    println!("== bench-media: packet forwarding, ruche-media-node vs Janus VideoRoom ==");
    println!(
        "machine: {nproc} CPUs ({model}); all traffic on loopback, WebRTC clients on {}",
        config.client_ip
    );
    println!(
        "per publisher: video {} pkt/s x {} B (VP8-like, one packet per frame, keyframe every {:?}) \
         + audio {} pkt/s x {} B (Opus-like); pre-built RTP, no codec; real ICE/DTLS/SRTP (webrtc crate)",
        config.video_pps,
        config.video_bytes,
        config.keyframe_every,
        config.audio_pps,
        config.audio_bytes
    );
    println!(
        "each subscriber receives every publisher of its room; shapes: {}",
        config
            .shapes
            .iter()
            .map(|s| format!("{}x{}x{}", s.rooms, s.publishers, s.subscribers))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "window {:?} after {:?} warm-up; CPU pinning: SFU {}, load generator {}",
        config.measure,
        config.warmup,
        config.sfu_cpus.as_deref().unwrap_or("none"),
        config.generator_cpus.as_deref().unwrap_or("none")
    );
    println!(
        "latency = subscriber receive time - publisher stamp (one process clock): the SFU plus \
         the generator's own SRTP/interceptor path on both ends"
    );
}

fn fmt_f(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".into()
    }
}

/// A row of the table: its label, and its cell for one outcome.
type Row = (&'static str, fn(&Outcome) -> String);

fn latency(o: &Outcome, i: usize) -> f64 {
    o.latency_ms.get(i).copied().unwrap_or(f64::NAN)
}

const ROWS: [Row; 21] = [
    ("participants ready after (s)", |o| {
        fmt_f(o.setup.as_secs_f64(), 1)
    }),
    ("publisher packets sent /s", |o| {
        fmt_f(o.sent as f64 / o.window, 0)
    }),
    ("  send errors", |o| o.send_errors.to_string()),
    ("forwarded packets /s (at receivers)", |o| {
        fmt_f(o.forwarded_per_second(), 0)
    }),
    ("  delivered / expected", |o| {
        format!(
            "{}%",
            fmt_f(100.0 * o.received as f64 / o.expected().max(1) as f64, 2)
        )
    }),
    ("  unstamped packets received", |o| o.unstamped.to_string()),
    ("  SFU's own forwarded counter /s", |o| {
        o.node_forwarded
            .map_or_else(|| "n/a".into(), |n| fmt_f(n as f64 / o.window, 0))
    }),
    ("SFU CPU (% of one core)", |o| {
        fmt_f(100.0 * o.cpu_seconds / o.window, 1)
    }),
    ("  (ns-precise, live threads)", |o| {
        fmt_f(100.0 * o.live_thread_cpu_seconds / o.window, 1)
    }),
    ("CPU us per forwarded packet", |o| {
        fmt_f(1e6 * o.cpu_seconds / o.received.max(1) as f64, 2)
    }),
    ("forwarded packets per CPU-second", |o| {
        fmt_f(o.per_cpu_second(), 0)
    }),
    ("latency p50 (ms)", |o| fmt_f(latency(o, 0), 3)),
    ("latency p99 (ms)", |o| fmt_f(latency(o, 1), 3)),
    ("latency max (ms)", |o| fmt_f(latency(o, 2), 3)),
    ("  latency samples", |o| o.latency_samples.to_string()),
    ("RSS idle -> loaded (MiB)", |o| {
        format!(
            "{} -> {}",
            fmt_f(o.rss_idle.all as f64 / 1024.0, 1),
            fmt_f(o.rss_loaded.all as f64 / 1024.0, 1)
        )
    }),
    ("  private (anonymous) idle -> loaded", |o| {
        format!(
            "{} -> {}",
            fmt_f(o.rss_idle.private as f64 / 1024.0, 1),
            fmt_f(o.rss_loaded.private as f64 / 1024.0, 1)
        )
    }),
    ("RSS per participant (KiB)", |o| {
        fmt_f(per_participant(o, |r| r.all), 0)
    }),
    ("  private per participant (KiB)", |o| {
        fmt_f(per_participant(o, |r| r.private), 0)
    }),
    ("SFU threads", |o| o.threads.to_string()),
    ("load generator CPU (% of one core)", |o| {
        fmt_f(100.0 * o.generator_cpu_seconds / o.window, 1)
    }),
];

const LABEL: usize = 36;
const CELL: usize = 28;

/// One shape's figures over its runs, for the final summary.
pub struct SummaryRow {
    shape: Shape,
    /// Forwarded packets per CPU-second: (min, median, max) per SFU.
    ruche: Option<(f64, f64, f64)>,
    janus: Option<(f64, f64, f64)>,
    /// Ratio of the medians, and its range over the runs paired in order.
    ratio: Option<(f64, f64, f64)>,
    /// Latency p50 of the median runs, ms.
    latency: (f64, f64),
    /// RSS per participant of the median runs, KiB.
    memory: (f64, f64),
    /// Private memory per participant of the median runs, KiB.
    private: (f64, f64),
}

/// (min, median, max) of `values` (finite ones only).
fn spread(values: impl Iterator<Item = f64>) -> Option<(f64, f64, f64)> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v[0], v[v.len() / 2], v[v.len() - 1]))
}

/// The run whose packets per CPU-second is the median of `runs`.
fn median_run(runs: &[Result<Outcome, String>]) -> Option<&Outcome> {
    let mut ok: Vec<&Outcome> = runs.iter().filter_map(|r| r.as_ref().ok()).collect();
    ok.sort_by(|a, b| a.per_cpu_second().total_cmp(&b.per_cpu_second()));
    ok.get(ok.len() / 2).copied()
}

/// Growth of one measure of resident memory from idle to loaded, per participant, KiB.
fn per_participant(o: &Outcome, measure: fn(&Resident) -> u64) -> f64 {
    measure(&o.rss_loaded).saturating_sub(measure(&o.rss_idle)) as f64
        / o.shape.participants() as f64
}

fn memory_per_participant(o: &Outcome) -> f64 {
    per_participant(o, |r| r.all)
}

fn private_per_participant(o: &Outcome) -> f64 {
    per_participant(o, |r| r.private)
}

/// Prints the table of one shape (each SFU's median run, then the spread over the runs);
/// whether the goal is met by the medians (true when it cannot be judged, which the caller
/// reports as a failure anyway), and the shape's summary row.
pub fn table(
    shape: Shape,
    outcomes: &[(Sfu, Vec<Result<Outcome, String>>)],
    nominal: u64,
) -> (bool, SummaryRow) {
    println!(
        "-- {shape} = {} participants, nominal {nominal} forwarded pkt/s; each SFU's median run of {} --",
        shape.participants(),
        outcomes.first().map_or(0, |(_, r)| r.len()),
    );
    let mut line = format!("{:<LABEL$}", "");
    for (sfu, _) in outcomes {
        let _ = write!(line, "{:>CELL$}", sfu.name());
    }
    println!("{line}");
    for (name, value) in ROWS {
        let mut line = format!("{name:<LABEL$}");
        for (_, runs) in outcomes {
            let cell = median_run(runs).map_or_else(|| "FAILED".into(), value);
            let _ = write!(line, "{cell:>CELL$}");
        }
        println!("{line}");
    }
    let runs_of = |sfu: Sfu| {
        outcomes
            .iter()
            .find(|(s, _)| *s == sfu)
            .map(|(_, r)| r.as_slice())
            .unwrap_or_default()
    };
    let per_cpu = |sfu: Sfu| {
        spread(
            runs_of(sfu)
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .map(Outcome::per_cpu_second),
        )
    };
    for (sfu, _) in outcomes {
        if let Some((lo, mid, hi)) = per_cpu(*sfu) {
            println!(
                "{}: forwarded packets per CPU-second over the runs: min {}, median {}, max {}",
                sfu.name(),
                fmt_f(lo, 0),
                fmt_f(mid, 0),
                fmt_f(hi, 0)
            );
        }
        for r in runs_of(*sfu) {
            if let Err(e) = r {
                println!("{}: a run FAILED: {e}", sfu.name());
            }
        }
    }
    let paired = spread(
        runs_of(Sfu::Ruche)
            .iter()
            .zip(runs_of(Sfu::Janus))
            .filter_map(|(r, j)| {
                Some(r.as_ref().ok()?.per_cpu_second() / j.as_ref().ok()?.per_cpu_second())
            }),
    );
    let (r, j) = (
        median_run(runs_of(Sfu::Ruche)),
        median_run(runs_of(Sfu::Janus)),
    );
    let met = if let (Some(r), Some(j)) = (r, j) {
        verdict(r, j)
    } else {
        println!("ratio ruche/janus: not available (a side is missing)");
        true
    };
    if let Some((lo, _, hi)) = paired {
        println!(
            "ratio over the runs paired in order: {}x to {}x",
            fmt_f(lo, 2),
            fmt_f(hi, 2)
        );
    }
    println!();
    let row = SummaryRow {
        shape,
        ruche: per_cpu(Sfu::Ruche),
        janus: per_cpu(Sfu::Janus),
        ratio: match (per_cpu(Sfu::Ruche), per_cpu(Sfu::Janus), paired) {
            (Some(r), Some(j), Some((lo, _, hi))) => Some((lo, r.1 / j.1, hi)),
            _ => None,
        },
        latency: (
            r.map_or(f64::NAN, |o| latency(o, 0)),
            j.map_or(f64::NAN, |o| latency(o, 0)),
        ),
        memory: (
            r.map_or(f64::NAN, memory_per_participant),
            j.map_or(f64::NAN, memory_per_participant),
        ),
        private: (
            r.map_or(f64::NAN, private_per_participant),
            j.map_or(f64::NAN, private_per_participant),
        ),
    };
    (met, row)
}

/// Prints every shape side by side: medians with their spread.
pub fn summary(rows: &[SummaryRow], repeats: usize) {
    let range = |s: Option<(f64, f64, f64)>, d: usize| {
        s.map_or_else(
            || "-".into(),
            |(lo, mid, hi)| format!("{} ({}-{})", fmt_f(mid, d), fmt_f(lo, d), fmt_f(hi, d)),
        )
    };
    println!("== summary: median (min-max) over {repeats} runs of each ==");
    println!(
        "{:<10} {:>26} {:>26} {:>22} {:>16} {:>16} {:>18}",
        "shape",
        "ruche pkt/CPU-s",
        "janus pkt/CPU-s",
        "ratio",
        "p50 ms r/j",
        "KiB/part. r/j",
        "private KiB r/j"
    );
    for r in rows {
        println!(
            "{:<10} {:>26} {:>26} {:>22} {:>16} {:>16} {:>18}",
            format!(
                "{}x{}x{}",
                r.shape.rooms, r.shape.publishers, r.shape.subscribers
            ),
            range(r.ruche, 0),
            range(r.janus, 0),
            range(r.ratio, 2),
            format!("{}/{}", fmt_f(r.latency.0, 2), fmt_f(r.latency.1, 2)),
            format!("{}/{}", fmt_f(r.memory.0, 0), fmt_f(r.memory.1, 0)),
            format!("{}/{}", fmt_f(r.private.0, 0), fmt_f(r.private.1, 0)),
        );
    }
    println!();
}

/// Prints the comparison of ruche-media-node (`r`) with Janus (`j`); whether the goal is met.
fn verdict(r: &Outcome, j: &Outcome) -> bool {
    let ratio = r.per_cpu_second() / j.per_cpu_second();
    let met = ratio >= GOAL;
    println!(
        "ratio ruche/janus, forwarded packets per CPU-second: {}x  (goal >= {GOAL}x: {})",
        fmt_f(ratio, 2),
        if met { "MET" } else { "NOT MET" }
    );
    println!(
        "latency p50 ruche/janus: {} ms vs {} ms; p99: {} ms vs {} ms",
        fmt_f(latency(r, 0), 3),
        fmt_f(latency(j, 0), 3),
        fmt_f(latency(r, 1), 3),
        fmt_f(latency(j, 1), 3)
    );
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get) as f64;
    for o in [r, j] {
        let generator = 100.0 * o.generator_cpu_seconds / o.window;
        if generator > 85.0 * cpus {
            println!(
                "warning: the load generator was near saturation ({}% CPU) during the {} run: \
                 its latencies include its own queueing",
                fmt_f(generator, 0),
                o.sfu.name()
            );
        }
    }
    met
}
