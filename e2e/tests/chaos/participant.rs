//! A participant of the chaos suite: a browser page, as far as the media node can tell.

use super::*;

/// What one participant has seen so far.
#[derive(Debug, Default)]
pub(super) struct PartState {
    /// When media last arrived.
    pub(super) last_media: Option<Instant>,
    /// When it last joined.
    pub(super) joined_at: Option<Instant>,
    /// The signaling endpoint it is connected to.
    pub(super) endpoint: Option<String>,
    /// Packets received, and of those, packets not carrying the other participant's tag.
    pub(super) received: u64,
    pub(super) foreign: u64,
    /// Joins after the first (its node died, or it was lost), and `migrate`s followed.
    pub(super) rejoins: u32,
    pub(super) follows: u32,
}

impl PartState {
    /// How long it has gone without media, counted from its last join at the earliest (a
    /// participant that just joined again is not silent yet).
    pub(super) fn silent(&self, now: Instant) -> Duration {
        self.last_media
            .max(self.joined_at)
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }

    /// How long it has gone without media, whatever it did meanwhile: what the invariant
    /// judges.
    pub(super) fn without_media(&self, now: Instant) -> Duration {
        self.last_media
            .map_or(Duration::MAX, |t| now.saturating_duration_since(t))
    }
}

pub(super) type Shared<T> = Arc<Mutex<T>>;

/// A live connection to a node.
pub(super) struct Live {
    client: Client,
    video: Outgoing,
    audio: Outgoing,
    pub(super) endpoint: String,
    pacer: Pacer,
}

/// Joins `room` at `endpoint` and publishes, within 8 s; a node that is hung or gone is an
/// error, never a panic of the caller.
pub(super) async fn connect(endpoint: &str, room: &str, token: String) -> Result<Live, String> {
    let (e, r) = (endpoint.to_string(), room.to_string());
    let task = tokio::spawn(async move {
        let client = Client::join(&e, &r, &token)
            .await
            .map_err(|refused| refused.to_string())?;
        let (video, audio) = client.publish_av().await;
        Ok::<_, String>((client, video, audio))
    });
    let abort = task.abort_handle();
    match tokio::time::timeout(Duration::from_secs(8), task).await {
        Ok(Ok(Ok((client, video, audio)))) => {
            let pacer = Pacer::new(&client, Duration::from_secs(1));
            Ok(Live {
                client,
                video,
                audio,
                endpoint: endpoint.to_string(),
                pacer,
            })
        }
        Ok(Ok(Err(refused))) => Err(format!("refused: {refused}")),
        Ok(Err(panicked)) => Err(format!("failed: {panicked}")),
        Err(_) => {
            abort.abort();
            Err("no answer within 8 s".into())
        }
    }
}

/// Leaves in the background: a hung node must not hold the participant up.
pub(super) fn leave(live: Live) {
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), live.client.close()).await;
    });
}

/// Takes what arrived since the last call: (packets, packets without the peer's tag).
pub(super) fn drain(received: &Mutex<Received>, peer_tag: u8) -> (u64, u64) {
    let mut r = received.lock().unwrap();
    let mut counts = (0, 0);
    for packets in r.packets.values_mut() {
        for p in packets.drain(..) {
            counts.0 += 1;
            counts.1 += u64::from(!p.2.ends_with(&[peer_tag; 20]));
        }
    }
    counts
}

/// A participant as a browser page behaves: publishes tagged audio and video, follows a
/// `migrate` message at once, and when its node is lost (the connection closed, or silent
/// while the room's endpoint changed, or silent for long) joins again wherever the room is.
pub(super) async fn take_part(
    room: String,
    who: &'static str,
    (tag, peer_tag): (u8, u8),
    key: Arc<TokenKey>,
    endpoints: Shared<BTreeMap<String, String>>,
    state: Shared<PartState>,
    stop: Arc<AtomicBool>,
) {
    let mut joins = 0u32;
    let mut live: Option<Live> = None;
    let mut checked = Instant::now();
    let mut last_complaint = String::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(mut current) = live.take() else {
            let endpoint = endpoints.lock().unwrap().get(&room).cloned();
            let Some(endpoint) = endpoint else {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            };
            joins += 1;
            let token = fixtures::mint(&key, &room, &format!("{who}-{joins}")).unwrap();
            match connect(&endpoint, &room, token).await {
                Ok(l) => {
                    let mut s = state.lock().unwrap();
                    s.joined_at = Some(Instant::now());
                    s.endpoint = Some(endpoint.clone());
                    s.rejoins += u32::from(joins > 1);
                    live = Some(l);
                }
                Err(e) => {
                    let complaint = format!("{room}/{who}: join at {endpoint}: {e}");
                    if complaint != last_complaint {
                        eprintln!("chaos: {complaint}");
                        last_complaint = complaint;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
            continue;
        };
        let Live {
            client,
            video,
            audio,
            pacer,
            ..
        } = &mut current;
        pacer.step(client, video, audio, tag).await;
        if checked.elapsed() < Duration::from_millis(200) {
            live = Some(current);
            continue;
        }
        let now = Instant::now();
        checked = now;
        let (count, foreign) = drain(&current.client.received, peer_tag);
        let silent = {
            let mut s = state.lock().unwrap();
            s.received += count;
            s.foreign += foreign;
            if count > 0 {
                s.last_media = Some(now);
            }
            s.silent(now)
        };
        if let Some(to) = current.client.migrated() {
            joins += 1;
            match connect(&to.endpoint, &room, to.token.clone()).await {
                Ok(next) => {
                    {
                        let mut s = state.lock().unwrap();
                        s.follows += 1;
                        s.endpoint = Some(to.endpoint.clone());
                    }
                    leave(current);
                    live = Some(next);
                }
                Err(e) => {
                    eprintln!(
                        "chaos: {room}/{who}: could not follow to {}: {e}",
                        to.endpoint
                    );
                    leave(current);
                }
            }
            continue;
        }
        let moved = endpoints.lock().unwrap().get(&room) != Some(&current.endpoint);
        let closed = current.client.closed.lock().unwrap().is_some();
        if closed || (moved && silent > MEDIA_GAP) || silent > Duration::from_secs(12) {
            leave(current);
            continue;
        }
        live = Some(current);
    }
    if let Some(l) = live {
        l.client.close().await;
    }
}
