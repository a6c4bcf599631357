//! `ruche-media-node`: one SFU process per pod.
//!
//! Three listeners: the media UDP port (every peer connection), signaling (HTTP and
//! WebSocket, for browsers) and the admin API (for the operator and Prometheus). SIGTERM
//! starts a drain; the process exits when the node is empty or at the drain deadline.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use ruche_media_node::admin::{self, AdminState};
use ruche_media_node::admission::{Limits, NodeMode};
use ruche_media_node::drain::DrainReason;
use ruche_media_node::keys::{self, KeyContents, KeyFiles, SharedKeys};
use ruche_media_node::media::Command;
use ruche_media_node::media::core::{EngineConfig, random_hex};
use ruche_media_node::media::driver::spawn;
use ruche_media_node::metrics::Metrics;
use ruche_media_node::signaling::{self, SignalingState};
use ruche_media_node::token::{KeyRing, TokenKey};

/// How long signaling sessions get to send their last message once the media loop stopped.
const SESSION_FLUSH: Duration = Duration::from_millis(300);

/// A Ruche media node: a WebRTC SFU on one UDP port.
#[derive(Parser, Debug)]
#[command(name = "ruche-media-node", version, about)]
struct Cli {
    /// UDP address every peer connection shares.
    #[arg(long, env = "RUCHE_MEDIA_BIND", default_value = "0.0.0.0:7882")]
    media_bind: SocketAddr,
    /// Address clients send media to: an IP (the media port is kept) or IP:port, such as the
    /// node port or load balancer in front of the pod.
    #[arg(long, env = "RUCHE_ADVERTISE")]
    advertise: Option<String>,
    /// Signaling (HTTP and WebSocket) address.
    #[arg(long, env = "RUCHE_HTTP_BIND", default_value = "0.0.0.0:7880")]
    http_bind: SocketAddr,
    /// Admin API address.
    #[arg(long, env = "RUCHE_ADMIN_BIND", default_value = "0.0.0.0:7881")]
    admin_bind: SocketAddr,
    /// File with the join token key: an HMAC secret (32 bytes or more) or an Ed25519 PEM key.
    /// Read again every few seconds: a changed key applies without a restart.
    #[arg(long, env = "RUCHE_TOKEN_KEY_FILE")]
    token_key_file: Option<PathBuf>,
    /// File with the key of a rotation in progress, still accepted beside the current one.
    /// Absent or empty: no rotation. Read again like the key file.
    #[arg(
        long,
        env = "RUCHE_PREVIOUS_TOKEN_KEY_FILE",
        requires = "token_key_file"
    )]
    previous_token_key_file: Option<PathBuf>,
    /// File with the admin API bearer token.
    #[arg(long, env = "RUCHE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Participant slots of the node.
    #[arg(long, env = "RUCHE_CAPACITY_SLOTS", default_value_t = 250)]
    capacity_slots: u32,
    /// Most participants in one room.
    #[arg(long, env = "RUCHE_MAX_ROOM_PARTICIPANTS", default_value_t = 100)]
    max_room_participants: u32,
    /// Seconds a SIGTERM drain waits for rooms to end before the process exits.
    #[arg(long, env = "RUCHE_DRAIN_TIMEOUT_SECONDS", default_value_t = 1800)]
    drain_timeout_seconds: u64,
    /// Development mode: any room may be joined, tokens are minted at /dev/token, and the demo
    /// page is served at /. Never in production.
    #[arg(long)]
    dev: bool,
}

fn advertise_addr(cli: &Cli) -> Result<SocketAddr, String> {
    let Some(raw) = &cli.advertise else {
        return Ok(cli.media_bind);
    };
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    raw.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, cli.media_bind.port()))
        .map_err(|_| format!("--advertise {raw}: expected an IP address or IP:port"))
}

fn read_secret(path: &PathBuf, what: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the {what} file {}: {e}", path.display()))?;
    let text = text.trim().to_string();
    if text.is_empty() {
        return Err(format!("the {what} file {} is empty", path.display()));
    }
    Ok(text)
}

/// The join token keys, and their files when they come from files (to be watched).
struct Keys {
    ring: KeyRing,
    files: Option<(KeyFiles, KeyContents)>,
}

fn keys(cli: &Cli) -> Result<(Keys, String), String> {
    let keys = match &cli.token_key_file {
        Some(path) => {
            let files = KeyFiles {
                current: path.clone(),
                previous: cli.previous_token_key_file.clone(),
            };
            let (contents, ring) = files.load().map_err(|e| e.to_string())?;
            Keys {
                ring,
                files: Some((files, contents)),
            }
        }
        None if cli.dev => {
            let secret = random_hex(32).map_err(|e| format!("no randomness for a dev key: {e}"))?;
            Keys {
                ring: KeyRing::new(
                    TokenKey::hmac(secret.as_bytes()).map_err(|e| e.to_string())?,
                    None,
                ),
                files: None,
            }
        }
        None => return Err("--token-key-file is required (or --dev for a throwaway key)".into()),
    };
    let admin = match &cli.admin_token_file {
        Some(path) => read_secret(path, "admin token")?,
        None if cli.dev => {
            let token =
                random_hex(24).map_err(|e| format!("no randomness for a dev admin token: {e}"))?;
            tracing::warn!(admin_token = %token, "dev mode: generated an admin token");
            token
        }
        None => return Err("--admin-token-file is required (or --dev for a generated one)".into()),
    };
    Ok((keys, admin))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let advertise = advertise_addr(&cli)?;
    let (keys, admin_token) = keys(&cli)?;
    let metrics = Arc::new(Metrics::new());
    let shared_keys = Arc::new(SharedKeys::new(keys.ring));
    if let Some((files, contents)) = keys.files {
        tokio::spawn(files.watch(
            contents,
            shared_keys.clone(),
            metrics.clone(),
            keys::RELOAD_INTERVAL,
        ));
    }
    let config = EngineConfig {
        bind: cli.media_bind,
        advertise,
        limits: Limits {
            capacity_slots: cli.capacity_slots,
            max_participants_per_room: cli.max_room_participants,
        },
        mode: if cli.dev {
            NodeMode::Dev
        } else {
            NodeMode::Managed
        },
    };
    let running = spawn(config, metrics.clone())
        .map_err(|e| format!("cannot bind the media port {}: {e}", cli.media_bind))?;
    let media = running.handle.clone();
    let signaling_state = Arc::new(SignalingState {
        liveness: signaling::Liveness::default(),
        media: media.clone(),
        keys: shared_keys.clone(),
        replay: Mutex::default(),
        dev: cli.dev,
        metrics: metrics.clone(),
    });
    let admin_state = Arc::new(AdminState {
        media: media.clone(),
        admin_token,
        keys: shared_keys,
        failures: Mutex::default(),
        metrics,
    });
    let http = tokio::net::TcpListener::bind(cli.http_bind)
        .await
        .map_err(|e| format!("cannot bind signaling on {}: {e}", cli.http_bind))?;
    let admin_listener = tokio::net::TcpListener::bind(cli.admin_bind)
        .await
        .map_err(|e| format!("cannot bind the admin API on {}: {e}", cli.admin_bind))?;
    tracing::info!(signaling = %cli.http_bind, admin = %cli.admin_bind, media = %media.media_addr(), dev = cli.dev, "media node started");
    if cli.dev {
        tracing::info!("demo page: http://{}/", cli.http_bind);
    }
    let signaling_router = signaling::router(signaling_state);
    let handed_over = running.http;
    let router = signaling_router.clone();
    tokio::spawn(async move {
        let _ = axum::serve(http, router).await;
    });
    // Signaling that reaches the media port number (HostPort mode: one port for everything).
    tokio::spawn(async move {
        let _ = axum::serve(handed_over, signaling_router).await;
    });
    tokio::spawn(async move {
        let _ = admin::serve(admin_listener, admin_state).await;
    });
    let mut stopped = running.stopped.clone();
    let mut stopped_after_drain = running.stopped.clone();
    let deadline = Duration::from_secs(cli.drain_timeout_seconds);
    tokio::select! {
        () = terminate() => {
            tracing::info!(?deadline, "SIGTERM: draining");
            media.send(Command::Drain(Some(deadline), DrainReason::Signal));
            let _ = stopped_after_drain.wait_for(|s| *s).await;
        }
        _ = stopped.wait_for(|s| *s) => {}
    }
    // The loop told every participant the session is over; let the signaling sessions deliver
    // that before the runtime (and with it their sockets) goes away.
    tokio::time::sleep(SESSION_FLUSH).await;
    tracing::info!("media node stopped");
    Ok(())
}

async fn terminate() {
    #[cfg(unix)]
    {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            tokio::select! {
                _ = s.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
