//! One client's signaling session over a WebSocket: the join (token checked first), then
//! offers and answers, layer choices, and the media loop's events going back out.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::SignalingState;
use super::protocol::{ClientMessage, ProtocolError, ServerMessage, parse};
use crate::media::{Command, JoinError, JoinRequest, ParticipantEvent, ParticipantId};

/// How long a client has to send its `join` after connecting.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Invalid messages tolerated before the session is closed.
pub const MAX_STRIKES: u32 = 5;

fn error(code: &str, message: impl Into<String>, fatal: bool) -> ServerMessage {
    ServerMessage::Error {
        code: code.into(),
        message: message.into(),
        fatal,
    }
}

async fn send(
    ws: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: &ServerMessage,
) -> bool {
    let Ok(text) = serde_json::to_string(message) else {
        return false;
    };
    ws.send(Message::Text(text.into())).await.is_ok()
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The first frame must be a `join`; anything else (or nothing in time) ends the session.
async fn read_join(
    rx: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<(String, String), ServerMessage> {
    let first = tokio::time::timeout(JOIN_TIMEOUT, rx.next())
        .await
        .map_err(|_| error("join_timeout", "no join message within 10 seconds", true))?;
    let text = match first {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Binary(_))) => {
            return Err(error(
                ProtocolError::Binary.code(),
                ProtocolError::Binary.to_string(),
                true,
            ));
        }
        _ => return Err(error("closed", "connection closed before joining", true)),
    };
    match parse(&text) {
        Ok(ClientMessage::Join { token, room }) => Ok((token, room)),
        Ok(_) => Err(error(
            "not_joined",
            "the first message must be a join",
            true,
        )),
        Err(e) => Err(error(e.code(), e.to_string(), true)),
    }
}

/// Runs a session to its end.
pub async fn run(socket: WebSocket, state: Arc<SignalingState>) {
    let (mut tx, mut rx) = socket.split();
    let (token, room) = match read_join(&mut rx).await {
        Ok(j) => j,
        Err(e) => {
            let _ = send(&mut tx, &e).await;
            return;
        }
    };
    let claims = match state.key.verify_for_room(&token, &room, now_unix()) {
        Ok(c) => c,
        Err(e) => {
            state.metrics.token_refused(e.reason());
            tracing::info!(%room, reason = e.reason(), "join token refused");
            let _ = send(
                &mut tx,
                &error(e.reason(), format!("join token refused: {e}"), true),
            )
            .await;
            return;
        }
    };
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let request = JoinRequest {
        room: room.clone(),
        identity: claims.sub.clone(),
        name: claims.name.clone().unwrap_or_else(|| claims.sub.clone()),
        grants: claims.grants,
        events: events_tx,
    };
    let joined = match state.media.ask(|reply| Command::Join(request, reply)).await {
        Some(Ok(j)) => j,
        Some(Err(JoinError::Refused(refusal))) => {
            let _ = send(&mut tx, &error(refusal.code(), refusal.to_string(), true)).await;
            return;
        }
        Some(Err(e)) => {
            let _ = send(&mut tx, &error("media_error", e.to_string(), true)).await;
            return;
        }
        None => {
            let _ = send(
                &mut tx,
                &error("unavailable", "the media node is stopping", true),
            )
            .await;
            return;
        }
    };
    let id = joined.participant;
    let hello = ServerMessage::Joined {
        participant_id: id.to_string(),
        room,
        participants: joined.others,
        can_publish: claims.grants.publish,
        can_subscribe: claims.grants.subscribe,
    };
    if send(&mut tx, &hello).await {
        serve(id, &state, &mut tx, &mut rx, &mut events).await;
    }
    state.media.send(Command::Leave(id));
}

async fn serve(
    id: ParticipantId,
    state: &SignalingState,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
    events: &mut mpsc::UnboundedReceiver<ParticipantEvent>,
) {
    let mut strikes = 0;
    loop {
        tokio::select! {
            frame = rx.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        strikes += 1;
                        if !send(tx, &error(ProtocolError::Binary.code(), ProtocolError::Binary.to_string(), strikes >= MAX_STRIKES)).await || strikes >= MAX_STRIKES {
                            return;
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    _ => return,
                };
                let (reply, leave) = match parse(&text) {
                    Ok(ClientMessage::Leave {}) => (None, true),
                    Ok(message) => (handle(id, state, message).await, false),
                    Err(e) => {
                        strikes += 1;
                        (Some(error(e.code(), e.to_string(), strikes >= MAX_STRIKES)), false)
                    }
                };
                if let Some(r) = reply {
                    let fatal = matches!(r, ServerMessage::Error { fatal: true, .. });
                    if !send(tx, &r).await || fatal {
                        return;
                    }
                }
                if leave {
                    return;
                }
            }
            event = events.recv() => {
                let Some(event) = event else { return };
                let (message, last) = match event {
                    ParticipantEvent::SubscribeOffer(sdp) => (ServerMessage::SubscribeOffer { sdp }, false),
                    ParticipantEvent::ParticipantJoined(participant) => (ServerMessage::ParticipantJoined { participant }, false),
                    ParticipantEvent::ParticipantLeft(participant_id) => (ServerMessage::ParticipantLeft { participant_id }, false),
                    ParticipantEvent::TrackPublished { participant, track, kind, layers } => (ServerMessage::TrackPublished { participant_id: participant, track, kind, layers }, false),
                    ParticipantEvent::Migrate { endpoint, token } => (ServerMessage::Migrate { endpoint, token }, false),
                    ParticipantEvent::Closed(reason) => (error("closed", reason, true), true),
                };
                if !send(tx, &message).await || last {
                    return;
                }
            }
        }
    }
}

/// One client message; the reply to send, if any.
async fn handle(
    id: ParticipantId,
    state: &SignalingState,
    message: ClientMessage,
) -> Option<ServerMessage> {
    match message {
        ClientMessage::Join { .. } => Some(error(
            "already_joined",
            "this session has already joined",
            false,
        )),
        ClientMessage::PublishOffer { sdp } => {
            match state.media.ask(|r| Command::PublishOffer(id, sdp, r)).await {
                Some(Ok(sdp)) => Some(ServerMessage::PublishAnswer { sdp }),
                Some(Err(e)) => Some(error("publish_failed", e, false)),
                None => Some(error("unavailable", "the media node is stopping", true)),
            }
        }
        ClientMessage::SubscribeAnswer { sdp } => match state
            .media
            .ask(|r| Command::SubscribeAnswer(id, sdp, r))
            .await
        {
            Some(Ok(())) => None,
            Some(Err(e)) => Some(error("subscribe_failed", e, false)),
            None => Some(error("unavailable", "the media node is stopping", true)),
        },
        ClientMessage::SetLayer { track, layer } => {
            state.media.send(Command::SetLayer(id, track, layer));
            None
        }
        ClientMessage::Ping {} => Some(ServerMessage::Pong),
        ClientMessage::Leave {} => None,
    }
}
