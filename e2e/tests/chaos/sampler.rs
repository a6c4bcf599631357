//! The once-a-second sample of every watched room, and what makes a room placed.

use super::*;

/// The room's placement, from the API's lists: a room being moved live (Migrating) is placed.
pub(super) fn placement(
    room: Option<&Room>,
    nodes: &BTreeMap<String, MediaNode>,
) -> Result<(), String> {
    let room = room.ok_or("gone")?;
    fixtures::check_placed(
        room,
        &[
            RoomPhase::Scheduled,
            RoomPhase::Active,
            RoomPhase::Migrating,
        ],
    )?;
    let node = fixtures::node_of(room).unwrap_or_default();
    match nodes
        .get(node)
        .and_then(|n| n.status.as_ref())
        .map(|s| s.phase)
    {
        None => Err(format!("on {node}, which is gone")),
        Some(NodePhase::Failed) => Err(format!("on {node}, which failed")),
        Some(_) => Ok(()),
    }
}

/// Samples every watched room once a second until `stop`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn sample(
    rooms_api: kube::Api<Room>,
    nodes_api: kube::Api<MediaNode>,
    replicas: Arc<Replicas>,
    watched: Vec<String>,
    parts: Vec<(String, Shared<PartState>)>,
    endpoints: Shared<BTreeMap<String, String>>,
    samples: Shared<Vec<Sample>>,
    began: Instant,
    stop: Arc<AtomicBool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Since when each live room's participants have been somewhere else than its placement.
    let mut astray: BTreeMap<String, Instant> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let at = began.elapsed();
        let listed = tokio::time::timeout(Duration::from_secs(3), async {
            let rooms = rooms_api.list(&ListParams::default()).await?;
            let nodes = nodes_api.list(&ListParams::default()).await?;
            Ok::<_, kube::Error>((rooms.items, nodes.items))
        })
        .await
        .ok()
        .and_then(Result::ok);
        let leads = replicas.leader().await.is_some();
        let now = Instant::now();
        let mut unsettled: Vec<String> = Vec::new();
        if !leads {
            unsettled.push("no replica leads".into());
        }
        let (rooms, nodes) = if let Some((rooms, nodes)) = listed {
            let ready = nodes
                .iter()
                .filter(|n| n.status.as_ref().map(|s| s.phase) == Some(NodePhase::Ready))
                .count();
            if ready != NODES || nodes.len() != NODES {
                unsettled.push(format!("{ready} of {} nodes Ready", nodes.len()));
            }
            let rooms: BTreeMap<String, Room> =
                rooms.into_iter().map(|r| (r.name_any(), r)).collect();
            let mut e = endpoints.lock().unwrap();
            for (name, r) in &rooms {
                if let Some(ep) = fixtures::endpoint_of(r) {
                    e.insert(name.clone(), ep.to_string());
                }
            }
            drop(e);
            (
                Some(rooms),
                nodes.into_iter().map(|n| (n.name_any(), n)).collect(),
            )
        } else {
            unsettled.push("the API server did not answer".into());
            (None, BTreeMap::new())
        };
        let mut health = BTreeMap::new();
        for room in &watched {
            let silent = parts
                .iter()
                .filter(|(r, _)| r == room)
                .map(|(_, s)| s.lock().unwrap().without_media(now))
                .max();
            let h = match (silent, &rooms) {
                (Some(gap), _) if gap > MEDIA_GAP => RoomHealth::NoMedia(gap),
                (_, None) => RoomHealth::Unknown,
                (_, Some(rooms)) => match placement(rooms.get(room), &nodes) {
                    Ok(()) => {
                        let placed = rooms.get(room).and_then(fixtures::endpoint_of);
                        let elsewhere = parts
                            .iter()
                            .filter(|(r, _)| r == room)
                            .filter_map(|(_, s)| s.lock().unwrap().endpoint.clone())
                            .find(|e| Some(e.as_str()) != placed);
                        match elsewhere {
                            None => {
                                astray.remove(room);
                                RoomHealth::Good
                            }
                            Some(e) => {
                                let since = *astray.entry(room.clone()).or_insert(now);
                                if now.duration_since(since) > ASTRAY {
                                    RoomHealth::Unplaced(format!(
                                        "its participants are at {e}, its placement says {}",
                                        placed.unwrap_or_default()
                                    ))
                                } else {
                                    RoomHealth::Good
                                }
                            }
                        }
                    }
                    Err(why) => RoomHealth::Unplaced(why),
                },
            };
            health.insert(room.clone(), h);
        }
        let bad = health.values().filter(|h| **h != RoomHealth::Good).count();
        if bad > 0 {
            unsettled.push(format!("{bad} rooms not good"));
        }
        samples.lock().unwrap().push(Sample {
            at,
            rooms: health,
            unsettled: (!unsettled.is_empty()).then(|| unsettled.join(", ")),
        });
    }
}
