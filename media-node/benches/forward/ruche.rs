//! `ruche-media-node` as its own process, and participants that speak its signaling protocol
//! (JSON over the `/ws` WebSocket, see `src/signaling/protocol.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use ruche_crds::admin::{Assignment, AssignmentList, ListVersion};
use ruche_media_node::token::{Claims, Grants, TokenKey};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::config::Config;
use super::load::{Reception, Stats};
use super::peer::Peer;
use super::procfs::Guard;
use super::{Participant, SIGNALING_TIMEOUT};

/// The admin token of the benchmark's node.
const ADMIN_TOKEN: &str = "bench-admin-token";
/// Its token key (HS256).
const SECRET: &[u8] = b"bench-secret-bench-secret-bench-secret-0123";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A running `ruche-media-node`.
pub struct Ruche {
    /// The process.
    pub process: Guard,
    http: SocketAddr,
    admin: SocketAddr,
    key: TokenKey,
    /// Its log.
    pub log: PathBuf,
}

fn free_tcp() -> Result<SocketAddr, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free TCP port: {e}"))
}

fn free_udp() -> Result<SocketAddr, String> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free UDP port: {e}"))
}

impl Ruche {
    /// Starts the node (on the SFU CPUs) with file-based keys in `dir`, and waits until it
    /// answers `/livez`.
    pub async fn start(config: &Config, dir: &std::path::Path) -> Result<Self, String> {
        let write = |name: &str, data: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, data)
                .map(|()| path)
                .map_err(|e| format!("cannot write {}: {e}", dir.join(name).display()))
        };
        let key_file = write("ruche-token-key", SECRET)?;
        let admin_file = write("ruche-admin-token", ADMIN_TOKEN.as_bytes())?;
        let log = dir.join("ruche-media-node.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let (signaling, admin, media) = (free_tcp()?, free_tcp()?, free_udp()?);
        let mut command = super::pinned(config.sfu_cpus.as_deref(), &config.ruche_bin);
        command
            .args(["--media-bind", &media.to_string()])
            .args(["--http-bind", &signaling.to_string()])
            .args(["--admin-bind", &admin.to_string()])
            .arg("--token-key-file")
            .arg(&key_file)
            .arg("--admin-token-file")
            .arg(&admin_file)
            .args([
                "--capacity-slots",
                "10000",
                "--max-room-participants",
                "1000",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let mut process = Guard::spawn("ruche-media-node", &mut command)?;
        let key = TokenKey::hmac(SECRET).map_err(|e| format!("token key: {e}"))?;
        let start = Instant::now();
        loop {
            if let Some(exit) = process.exited() {
                return Err(format!("{exit}; log: {}", log.display()));
            }
            if let Ok((200, _)) = http(admin, "GET", "/livez", None, None).await {
                break;
            }
            if start.elapsed() > Duration::from_secs(10) {
                return Err("ruche-media-node did not answer /livez within 10 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            process,
            http: signaling,
            admin,
            key,
            log,
        })
    }

    /// `ruche_media_rtp_packets_forwarded_total` from `/metrics`.
    pub async fn forwarded(&self) -> Result<u64, String> {
        let (status, body) = http(self.admin, "GET", "/metrics", None, Some(ADMIN_TOKEN)).await?;
        if status != 200 {
            return Err(format!("/metrics: HTTP {status}"));
        }
        Ok(metric(&body, "ruche_media_rtp_packets_forwarded_total"))
    }

    /// Assigns `rooms` to the node, with `slots` participants each, as the operator does (the
    /// operator's own wire type, so the benchmark follows its changes).
    pub async fn assign(&self, rooms: &[String], slots: usize) -> Result<(), String> {
        let list = AssignmentList {
            version: ListVersion::new(1, 1),
            rooms: rooms
                .iter()
                .map(|r| Assignment {
                    room: r.clone(),
                    slots: u32::try_from(slots).unwrap_or(u32::MAX),
                    leaving: false,
                })
                .collect(),
        };
        let body = serde_json::to_value(&list).map_err(|e| e.to_string())?;
        match http(
            self.admin,
            "PUT",
            "/v1/assignments",
            Some(&body),
            Some(ADMIN_TOKEN),
        )
        .await?
        {
            (200, _) => Ok(()),
            (status, text) => Err(format!("PUT /v1/assignments: HTTP {status}: {text}")),
        }
    }

    fn token(&self, room: &str, who: &str, publish: bool) -> Result<String, String> {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 3600;
        let mut claims = Claims::new(who, room, exp);
        claims.grants = Grants {
            publish,
            subscribe: !publish,
        };
        self.key.mint(&claims).map_err(|e| format!("mint: {e}"))
    }

    async fn join(&self, room: &str, who: &str, publish: bool) -> Result<Ws, String> {
        let url = format!("ws://{}/ws", self.http);
        let (mut ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let token = self.token(room, who, publish)?;
        send(
            &mut ws,
            &json!({"type": "join", "token": token, "room": room}),
        )
        .await?;
        let joined = next_of(&mut ws, "joined").await?;
        if joined["type"] != "joined" {
            return Err(format!("{who}: join refused: {joined}"));
        }
        Ok(ws)
    }

    /// A participant who only publishes (grants: publish, no subscribe): audio and video.
    pub async fn publisher(&self, room: &str, who: &str) -> Result<Participant, String> {
        let mut ws = self.join(room, who, true).await?;
        let peer = Arc::new(Peer::new(None).await?);
        let tracks = Arc::new(peer.add_av(who).await?);
        let sdp = peer.offer().await?;
        send(&mut ws, &json!({"type": "publishOffer", "sdp": sdp})).await?;
        let answer = next_of(&mut ws, "publishAnswer").await?;
        if answer["type"] != "publishAnswer" {
            return Err(format!("{who}: no publish answer: {answer}"));
        }
        peer.accept(answer["sdp"].as_str().unwrap_or_default().to_string())
            .await?;
        let signaling = tokio::spawn(keep(ws, None));
        Ok(Participant {
            peer,
            tracks: Some(tracks),
            reception: None,
            signaling,
        })
    }

    /// A participant who only subscribes; answers every subscribe offer of the node.
    pub async fn subscriber(
        &self,
        room: &str,
        who: &str,
        stats: Arc<Stats>,
    ) -> Result<Participant, String> {
        let ws = self.join(room, who, false).await?;
        let reception = Arc::new(Reception::default());
        let peer = Arc::new(Peer::new(Some((stats, reception.clone()))).await?);
        let signaling = tokio::spawn(keep(ws, Some((peer.clone(), who.to_string()))));
        Ok(Participant {
            peer,
            tracks: None,
            reception: Some(reception),
            signaling,
        })
    }
}

async fn send(ws: &mut Ws, message: &Value) -> Result<(), String> {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .map_err(|e| format!("signaling send: {e}"))
}

/// The next message of type `kind`, or an `error` message (returned as is).
async fn next_of(ws: &mut Ws, kind: &str) -> Result<Value, String> {
    let wait = async {
        while let Some(frame) = ws.next().await {
            let frame = frame.map_err(|e| format!("signaling: {e}"))?;
            let Message::Text(text) = frame else { continue };
            let Ok(m) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            if m["type"] == kind || m["type"] == "error" {
                return Ok(m);
            }
        }
        Err("signaling closed".to_string())
    };
    tokio::time::timeout(SIGNALING_TIMEOUT, wait)
        .await
        .map_err(|_| format!("no {kind} within {SIGNALING_TIMEOUT:?}"))?
}

/// Keeps the signaling session: pings every 20 s and, for a subscriber, answers the node's
/// subscribe offers. Ends when the WebSocket closes (or the task is aborted).
async fn keep(ws: Ws, subscriber: Option<(Arc<Peer>, String)>) {
    let (mut sink, mut stream) = ws.split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut ping = tokio::time::interval(Duration::from_secs(20));
        loop {
            let text = tokio::select! {
                m = out_rx.recv() => match m { Some(m) => m, None => break },
                _ = ping.tick() => json!({"type": "ping"}).to_string(),
            };
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
    });
    while let Some(Ok(frame)) = stream.next().await {
        let Message::Text(text) = frame else { continue };
        let Ok(m) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        match (m["type"].as_str(), &subscriber) {
            (Some("subscribeOffer"), Some((peer, who))) => {
                let offer = m["sdp"].as_str().unwrap_or_default().to_string();
                match peer.answer(offer).await {
                    Ok(sdp) => {
                        let _ =
                            out.send(json!({"type": "subscribeAnswer", "sdp": sdp}).to_string());
                    }
                    Err(e) => eprintln!("ruche subscriber {who}: {e}"),
                }
            }
            (Some("error"), _) => eprintln!("ruche-media-node signaling error: {m}"),
            _ => {}
        }
    }
    writer.abort();
}

/// The value of counter `name` (summed over its label sets) in a Prometheus text exposition.
fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let metric_name = series.split('{').next()?;
            (metric_name == name).then(|| value.parse::<f64>().ok())?
        })
        .sum::<f64>() as u64
}

/// An HTTP/1.0 request (never a chunked answer; enough for the admin API), with a JSON body
/// if given: the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    token: Option<&str>,
) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = body.map(Value::to_string).unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.0\r\nHost: bench\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let text = String::from_utf8_lossy(&response).to_string();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        Ok((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .map_err(|_| format!("{addr}{path}: no answer within 5 s"))?
}
