//! Janus (Debian's `janus` package, VideoRoom plugin) as its own process, and participants
//! that speak the Janus API over its WebSocket transport (subprotocol `janus-protocol`).
//!
//! Per participant, as a browser with janus.js does: one WebSocket, one Janus session, one
//! VideoRoom handle. A publisher joins with `ptype: publisher` and sends `publish` with its
//! offer; a subscriber joins with `ptype: subscriber` and the room's feeds in `streams`
//! (multistream, Janus 1.x), gets Janus's offer and replies `start` with its answer. Neither
//! side trickles: the SDPs carry the candidates (`"trickle": false`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::config::Config;
use super::load::{Reception, Stats};
use super::peer::Peer;
use super::procfs::Guard;
use super::{Participant, SIGNALING_TIMEOUT};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Settings of rooms the benchmark creates beyond those of `janus.plugin.videoroom.jcfg`:
/// the same as there.
fn room_settings(room: u64) -> Value {
    json!({
        "request": "create",
        "room": room,
        "description": format!("bench {room}"),
        "publishers": 64,
        "bitrate": 10_000_000,
        "fir_freq": 0,
        "audiocodec": "opus",
        "videocodec": "vp8",
        "record": false,
        "permanent": false,
    })
}

/// A running Janus.
pub struct Janus {
    /// The process.
    pub process: Guard,
    url: String,
    /// Its log.
    pub log: PathBuf,
}

impl Janus {
    /// Starts Janus (on the SFU CPUs) with the configuration folder of the benchmark, and
    /// waits until its WebSocket API answers `info`.
    pub async fn start(config: &Config, dir: &Path) -> Result<Self, String> {
        if !config.janus_bin.exists() {
            return Err(format!(
                "{} not found: install Debian's janus package (make bench-media does)",
                config.janus_bin.display()
            ));
        }
        let jcfg = config.janus_config_dir.join("janus.jcfg");
        if !jcfg.exists() {
            return Err(format!("{} not found", jcfg.display()));
        }
        let log = dir.join("janus.log");
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let log_err = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut command = super::pinned(config.sfu_cpus.as_deref(), &config.janus_bin);
        command
            .arg("-C")
            .arg(&jcfg)
            .arg("-F")
            .arg(&config.janus_config_dir)
            .arg("--disable-colors")
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_err);
        let mut process = Guard::spawn("janus", &mut command)?;
        let url = format!("ws://127.0.0.1:{}/", config.janus_ws_port);
        let start = Instant::now();
        loop {
            if let Some(exit) = process.exited() {
                return Err(format!("{exit}; log: {}", log.display()));
            }
            if let Ok(mut conn) = Conn::open(&url).await
                && let Ok(info) = conn.call(json!({"janus": "info"})).await
                && info["janus"] == "server_info"
            {
                break;
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err(format!(
                    "Janus did not answer on {url} within 15 s; log: {}",
                    log.display()
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { process, url, log })
    }

    /// Makes sure rooms `1..=rooms` exist (creating those the configuration lacks).
    pub async fn ensure_rooms(&self, rooms: usize) -> Result<(), String> {
        let mut conn = Conn::open(&self.url).await?;
        conn.session_and_handle().await?;
        for room in 1..=rooms as u64 {
            let exists = conn
                .message(json!({"request": "exists", "room": room}), None)
                .await?;
            if plugin_data(&exists)["exists"] == true {
                continue;
            }
            let created = conn.message(room_settings(room), None).await?;
            if plugin_data(&created)["videoroom"] != "created" {
                return Err(format!("creating room {room}: {created}"));
            }
        }
        conn.close().await;
        Ok(())
    }

    /// A publisher of audio and video in `room`; its feed id.
    pub async fn publisher(&self, room: u64, who: &str) -> Result<(Participant, u64), String> {
        let mut conn = Conn::open(&self.url).await?;
        conn.session_and_handle().await?;
        let joined = conn
            .message(
                json!({"request": "join", "ptype": "publisher", "room": room, "display": who}),
                None,
            )
            .await?;
        let data = plugin_data(&joined);
        if data["videoroom"] != "joined" {
            return Err(format!("{who}: join refused: {joined}"));
        }
        let feed = data["id"]
            .as_u64()
            .ok_or_else(|| format!("{who}: no publisher id in {joined}"))?;
        let peer = Arc::new(Peer::new(None).await?);
        let tracks = Arc::new(peer.add_av(who).await?);
        let offer = peer.offer().await?;
        let configured = conn
            .message(
                json!({"request": "publish"}),
                Some(json!({"type": "offer", "sdp": offer, "trickle": false})),
            )
            .await?;
        let answer = configured["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("{who}: no answer to publish: {configured}"))?;
        if std::env::var_os("BENCH_DEBUG_SDP").is_some() {
            eprintln!("--- {who} offer:\n{offer}\n--- janus answer:\n{answer}");
        }
        peer.accept(answer.to_string()).await?;
        let signaling = tokio::spawn(conn.keep());
        Ok((
            Participant {
                peer,
                tracks: Some(tracks),
                reception: None,
                signaling,
            },
            feed,
        ))
    }

    /// A subscriber to every feed of `room` (one connection, one media section per track).
    pub async fn subscriber(
        &self,
        room: u64,
        feeds: &[u64],
        who: &str,
        stats: Arc<Stats>,
    ) -> Result<Participant, String> {
        let mut conn = Conn::open(&self.url).await?;
        conn.session_and_handle().await?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        let attached = conn
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
            )
            .await?;
        let offer = attached["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("{who}: no offer from the subscriber join: {attached}"))?;
        let reception = Arc::new(Reception::default());
        let peer = Arc::new(Peer::new(Some((stats, reception.clone()))).await?);
        let answer = peer.answer(offer.to_string()).await?;
        let started = conn
            .message(
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
            )
            .await?;
        if plugin_data(&started)["started"] != "ok" {
            return Err(format!("{who}: start refused: {started}"));
        }
        let signaling = tokio::spawn(conn.keep());
        Ok(Participant {
            peer,
            tracks: None,
            reception: Some(reception),
            signaling,
        })
    }
}

fn plugin_data(reply: &Value) -> &Value {
    &reply["plugindata"]["data"]
}

/// One Janus API WebSocket, with (once created) a session and a VideoRoom handle.
struct Conn {
    ws: Ws,
    session: u64,
    handle: u64,
    transactions: u64,
}

impl Conn {
    async fn open(url: &str) -> Result<Self, String> {
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("{url}: {e}"))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        Ok(Self {
            ws,
            session: 0,
            handle: 0,
            transactions: 0,
        })
    }

    /// Sends `request` with a new transaction (and the session and handle, once known) and
    /// returns the reply of that transaction that is not an `ack`; a Janus `error` fails.
    async fn call(&mut self, mut request: Value) -> Result<Value, String> {
        self.transactions += 1;
        let transaction = format!("t{}", self.transactions);
        request["transaction"] = json!(transaction);
        if self.session != 0 {
            request["session_id"] = json!(self.session);
        }
        if self.handle != 0 {
            request["handle_id"] = json!(self.handle);
        }
        self.ws
            .send(Message::Text(request.to_string().into()))
            .await
            .map_err(|e| format!("janus send: {e}"))?;
        let wait = async {
            while let Some(frame) = self.ws.next().await {
                let frame = frame.map_err(|e| format!("janus: {e}"))?;
                let Message::Text(text) = frame else { continue };
                let Ok(m) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                if m["transaction"] != transaction.as_str() || m["janus"] == "ack" {
                    continue;
                }
                if m["janus"] == "error" {
                    return Err(format!("janus error: {}", m["error"]));
                }
                if let Some(code) = plugin_data(&m)["error_code"].as_u64() {
                    return Err(format!(
                        "videoroom error {code}: {}",
                        plugin_data(&m)["error"]
                    ));
                }
                return Ok(m);
            }
            Err("janus closed the WebSocket".to_string())
        };
        tokio::time::timeout(SIGNALING_TIMEOUT, wait)
            .await
            .map_err(|_| format!("janus: no reply within {SIGNALING_TIMEOUT:?}"))?
    }

    async fn session_and_handle(&mut self) -> Result<(), String> {
        let created = self.call(json!({"janus": "create"})).await?;
        self.session = created["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("janus create: {created}"))?;
        let attached = self
            .call(json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))
            .await?;
        self.handle = attached["data"]["id"]
            .as_u64()
            .ok_or_else(|| format!("janus attach: {attached}"))?;
        Ok(())
    }

    /// A VideoRoom request, with a JSEP if given.
    async fn message(&mut self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut request = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        self.call(request).await
    }

    /// Keeps the session alive (keep-alive every 20 s; Janus's timeout is 60 s) and reads
    /// what Janus sends, until the WebSocket closes or the task is aborted.
    async fn keep(self) {
        let (mut sink, mut stream) = self.ws.split();
        let session = self.session;
        let keepalive = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(20));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                n += 1;
                let m = json!({"janus": "keepalive", "session_id": session, "transaction": format!("k{n}")});
                if sink
                    .send(Message::Text(m.to_string().into()))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        while let Some(Ok(frame)) = stream.next().await {
            if let Message::Text(text) = frame
                && let Ok(m) = serde_json::from_str::<Value>(&text)
                && matches!(m["janus"].as_str(), Some("hangup" | "detached" | "timeout"))
            {
                eprintln!("janus: {m}");
            }
        }
        keepalive.abort();
    }

    async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
