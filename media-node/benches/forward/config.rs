//! The benchmark's settings, from environment variables (all optional).

use std::path::PathBuf;
use std::time::Duration;

/// One load shape: `rooms` rooms, each with `publishers` publishers (audio + video) and
/// `subscribers` receive-only participants who receive every publisher of their room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
}

impl Shape {
    /// Participants in all rooms.
    pub fn participants(self) -> usize {
        self.rooms * (self.publishers + self.subscribers)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let parts: Vec<usize> = text
            .trim()
            .split('x')
            .map(|p| p.trim().parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("shape {text:?}: expected ROOMSxPUBLISHERSxSUBSCRIBERS"))?;
        match parts[..] {
            [rooms, publishers, subscribers] if rooms > 0 && publishers > 0 && subscribers > 0 => {
                Ok(Self {
                    rooms,
                    publishers,
                    subscribers,
                })
            }
            _ => Err(format!(
                "shape {text:?}: expected ROOMSxPUBLISHERSxSUBSCRIBERS, each at least 1"
            )),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} rooms x {} publishers x {} subscribers",
            self.rooms, self.publishers, self.subscribers
        )
    }
}

/// The SFUs the benchmark can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sfu {
    /// `ruche-media-node`.
    Ruche,
    /// Janus with the VideoRoom plugin.
    Janus,
}

impl Sfu {
    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ruche => "ruche-media-node",
            Self::Janus => "janus videoroom",
        }
    }
}

/// Everything the run needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// Shapes, run in order, each against every SFU.
    pub shapes: Vec<Shape>,
    /// SFUs to run.
    pub sfus: Vec<Sfu>,
    /// Runs of each shape and SFU (alternating SFUs), for the spread of each figure.
    pub repeats: usize,
    /// Measurement window.
    pub measure: Duration,
    /// Time between the last subscriber receiving media and the window.
    pub warmup: Duration,
    /// How long participants get to connect and receive their first packets.
    pub connect_timeout: Duration,
    /// Video packets per second per publisher.
    pub video_pps: u32,
    /// Video payload size, bytes.
    pub video_bytes: usize,
    /// Audio packets per second per publisher.
    pub audio_pps: u32,
    /// Audio payload size, bytes.
    pub audio_bytes: usize,
    /// A VP8 keyframe (first packet of a frame) every this long.
    pub keyframe_every: Duration,
    /// CPUs the SFU process is pinned to (`taskset -c`), if any.
    pub sfu_cpus: Option<String>,
    /// CPUs the load generator is pinned to, if any.
    pub generator_cpus: Option<String>,
    /// The `ruche-media-node` binary.
    pub ruche_bin: PathBuf,
    /// The `janus` binary.
    pub janus_bin: PathBuf,
    /// Folder with `janus.jcfg` and the plugin and transport configurations.
    pub janus_config_dir: PathBuf,
    /// Janus WebSocket API port (the one in `janus.transport.websockets.jcfg`).
    pub janus_ws_port: u16,
    /// Exit non-zero when the 1.5x goal is not met.
    pub require_goal: bool,
    /// The address the load generator's WebRTC sockets bind to.
    pub client_ip: std::net::IpAddr,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v}: not a number")),
    }
}

impl Config {
    /// What `cargo test` runs, so that the benchmark cannot rot unseen: ruche-media-node alone,
    /// one publisher and one subscriber for 2 seconds, unpinned, on 127.0.0.1 (no namespace,
    /// no Janus).
    pub fn smoke() -> Result<Self, String> {
        let mut config = Self::from_env()?;
        config.shapes = vec![Shape::parse("1x1x1")?];
        config.sfus = vec![Sfu::Ruche];
        config.repeats = 1;
        config.measure = Duration::from_secs(2);
        config.warmup = Duration::from_secs(1);
        config.sfu_cpus = None;
        config.generator_cpus = None;
        config.client_ip = std::net::IpAddr::from([127, 0, 0, 1]);
        config.require_goal = false;
        Ok(config)
    }

    /// Reads the environment.
    pub fn from_env() -> Result<Self, String> {
        let shapes = var("BENCH_SHAPES")
            .unwrap_or_else(|| "1x1x2,4x1x4,4x2x8,1x1x50,1x10x10".into())
            .split(',')
            .map(Shape::parse)
            .collect::<Result<Vec<_>, _>>()?;
        let sfus = var("BENCH_SFUS")
            .unwrap_or_else(|| "ruche,janus".into())
            .split(',')
            .map(|s| match s.trim() {
                "ruche" => Ok(Sfu::Ruche),
                "janus" => Ok(Sfu::Janus),
                other => Err(format!("BENCH_SFUS: unknown SFU {other:?} (ruche, janus)")),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let nproc = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let pin = number("BENCH_PIN", u8::from(nproc >= 2))? != 0;
        let (sfu_cpus, generator_cpus) = if pin {
            (
                Some(var("BENCH_SFU_CPUS").unwrap_or_else(|| (nproc - 1).to_string())),
                Some(
                    var("BENCH_GENERATOR_CPUS")
                        .unwrap_or_else(|| format!("0-{}", nproc.saturating_sub(2))),
                ),
            )
        } else {
            (None, None)
        };
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let config = Self {
            shapes,
            sfus,
            repeats: number("BENCH_REPEATS", 3usize)?.max(1),
            measure: Duration::from_secs_f64(number("BENCH_SECONDS", 10.0)?),
            warmup: Duration::from_secs_f64(number("BENCH_WARMUP_SECONDS", 3.0)?),
            connect_timeout: Duration::from_secs_f64(number("BENCH_CONNECT_TIMEOUT", 20.0)?),
            video_pps: number("BENCH_VIDEO_PPS", 60)?,
            video_bytes: number("BENCH_VIDEO_BYTES", 1100)?,
            audio_pps: number("BENCH_AUDIO_PPS", 50)?,
            audio_bytes: number("BENCH_AUDIO_BYTES", 100)?,
            keyframe_every: Duration::from_secs_f64(number("BENCH_KEYFRAME_SECONDS", 1.0)?),
            sfu_cpus,
            generator_cpus,
            ruche_bin: var("RUCHE_MEDIA_NODE_BIN").map_or_else(
                || PathBuf::from(env!("CARGO_BIN_EXE_ruche-media-node")),
                PathBuf::from,
            ),
            janus_bin: var("JANUS_BIN")
                .map_or_else(|| PathBuf::from("/usr/bin/janus"), PathBuf::from),
            janus_config_dir: var("JANUS_CONFIG_DIR")
                .map_or_else(|| manifest.join("benches/janus"), PathBuf::from),
            janus_ws_port: number("JANUS_WS_PORT", 8188)?,
            require_goal: number("BENCH_REQUIRE_GOAL", 0u8)? != 0,
            client_ip: number("BENCH_CLIENT_IP", std::net::Ipv4Addr::LOCALHOST.into())?,
        };
        if !config.client_ip.is_loopback() {
            return Err(format!(
                "BENCH_CLIENT_IP={}: only loopback addresses (127.0.0.0/8)",
                config.client_ip
            ));
        }
        if config.video_pps == 0 || config.audio_pps == 0 {
            return Err("BENCH_VIDEO_PPS and BENCH_AUDIO_PPS must be at least 1".into());
        }
        if config.video_bytes < 32 || config.audio_bytes < 16 || config.video_bytes > 1200 {
            return Err(
                "BENCH_VIDEO_BYTES must be 32..=1200 and BENCH_AUDIO_BYTES at least 16".into(),
            );
        }
        if config.measure < Duration::from_secs(2) {
            return Err("BENCH_SECONDS must be at least 2".into());
        }
        Ok(config)
    }
}
