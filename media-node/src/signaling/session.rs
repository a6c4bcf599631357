//! One client's signaling session over a WebSocket: the join (token checked first), then
//! offers and answers, layer choices, and the media loop's events going back out. Every
//! session the node ends, ends with a fatal `error` and a close frame whose code says why
//! ([`CloseCode`]); an idle session is pinged, and closed when nothing comes back.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::protocol::{ClientMessage, CloseCode, ProtocolError, ServerMessage, parse};
use super::{Liveness, SignalingState};
use crate::media::{
    Command, Ending, JoinError, JoinRequest, Joined, ParticipantEvent, ParticipantId,
};
use crate::token::Claims;

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
/// The error, if the client is still there to read one.
async fn read_join(
    rx: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<(String, String), Option<ServerMessage>> {
    let first = tokio::time::timeout(JOIN_TIMEOUT, rx.next())
        .await
        .map_err(|_| {
            Some(error(
                "join_timeout",
                "no join message within 10 seconds",
                true,
            ))
        })?;
    let text = match first {
        Some(Ok(Message::Text(text))) => text,
        Some(Ok(Message::Binary(_))) => {
            return Err(Some(error(
                ProtocolError::Binary.code(),
                ProtocolError::Binary.to_string(),
                true,
            )));
        }
        // Gone before joining: nobody to tell.
        _ => return Err(None),
    };
    match parse(&text) {
        Ok(ClientMessage::Join { token, room }) => Ok((token, room)),
        Ok(_) => Err(Some(error(
            "not_joined",
            "the first message must be a join",
            true,
        ))),
        Err(e) => Err(Some(error(e.code(), e.to_string(), true))),
    }
}

/// How a session ends: the last message (if the client is still there to read it) and the
/// close frame after it.
struct End {
    message: Option<ServerMessage>,
    close: CloseCode,
}

impl End {
    fn with(close: CloseCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            message: Some(error(code, message, true)),
            close,
        }
    }

    fn quietly(close: CloseCode) -> Self {
        Self {
            message: None,
            close,
        }
    }
}

/// How long the node waits for the client's close frame after its own, before dropping the
/// connection.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Sends the session's last message and its close frame (errors ignored: the client may be
/// gone already), then reads until the client's close frame comes back, or [`CLOSE_WAIT`]
/// passes. Dropping the connection at once would lose what the client has not read yet: a
/// client that writes (a pong, a late answer) to a closed socket gets a reset, and a reset
/// discards the error and the close frame still waiting in its buffer.
async fn finish(
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
    end: End,
) {
    if let Some(message) = &end.message {
        let _ = send(tx, message).await;
    }
    let frame = CloseFrame {
        code: end.close.code(),
        reason: end.close.reason().into(),
    };
    if tx.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(frame)) = rx.next().await {
            if matches!(frame, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

/// Runs a session to its end.
pub async fn run(socket: WebSocket, state: Arc<SignalingState>) {
    let (mut tx, mut rx) = socket.split();
    let end = match admit(&state, &mut tx, &mut rx).await {
        Ok(admitted) => {
            let participant = admitted.participant;
            let end = serve(admitted, &state, &mut tx, &mut rx).await;
            state.media.send(Command::Leave(participant));
            end
        }
        Err(end) => end,
    };
    finish(&mut tx, &mut rx, end).await;
}

/// A joined session: the participant and the media loop's events for it.
struct Admitted {
    participant: ParticipantId,
    events: mpsc::UnboundedReceiver<ParticipantEvent>,
}

/// Reads the `join`, checks its token, joins the room and sends `joined`.
async fn admit(
    state: &SignalingState,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
) -> Result<Admitted, End> {
    let (token, room) = read_join(rx).await.map_err(|message| End {
        message,
        close: CloseCode::ProtocolError,
    })?;
    let claims = state.admit_token(&token, &room, now_unix()).map_err(|e| {
        state.metrics.token_refused(e.reason());
        tracing::info!(%room, reason = e.reason(), "join token refused");
        End::with(
            CloseCode::JoinRefused,
            e.reason(),
            format!("join token refused: {e}"),
        )
    })?;
    let joined = join(state, &room, &claims).await;
    if joined.is_err()
        && let Some(jti) = &claims.jti
    {
        // Refused by the room, not for the token: the same token may try again.
        state.release_token(jti);
    }
    let (joined, events) = joined?;
    let participant = joined.participant;
    let hello = ServerMessage::Joined {
        participant_id: participant.to_string(),
        room,
        participants: joined.others,
        can_publish: claims.grants.publish,
        can_subscribe: claims.grants.subscribe,
    };
    let admitted = Admitted {
        participant,
        events,
    };
    if send(tx, &hello).await {
        Ok(admitted)
    } else {
        state.media.send(Command::Leave(participant));
        Err(End::quietly(CloseCode::Left))
    }
}

/// Asks the media loop for a seat in `room` for the token's participant.
async fn join(
    state: &SignalingState,
    room: &str,
    claims: &Claims,
) -> Result<(Joined, mpsc::UnboundedReceiver<ParticipantEvent>), End> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let request = JoinRequest {
        room: room.to_owned(),
        identity: claims.sub.clone(),
        name: claims.name.clone().unwrap_or_else(|| claims.sub.clone()),
        grants: claims.grants,
        events: events_tx,
    };
    match state.media.ask(|reply| Command::Join(request, reply)).await {
        Some(Ok(joined)) => Ok((joined, events)),
        Some(Err(JoinError::Refused(refusal))) => Err(End::with(
            CloseCode::JoinRefused,
            refusal.code(),
            refusal.to_string(),
        )),
        Some(Err(e)) => Err(End::with(
            CloseCode::InternalError,
            "media_error",
            e.to_string(),
        )),
        None => Err(stopping()),
    }
}

fn stopping() -> End {
    End::with(
        CloseCode::NodeStopping,
        "unavailable",
        "the media node is stopping",
    )
}

/// The `error` and close code that end a session for `ending`.
fn ended(ending: Ending) -> End {
    match ending {
        Ending::RoomClosed(why) => End::with(CloseCode::RoomClosed, "room_closed", why),
        Ending::NodeStopping => stopping(),
        Ending::MediaFailed(why) => End::with(CloseCode::MediaFailed, "media_failed", why),
    }
}

async fn serve(
    session: Admitted,
    state: &SignalingState,
    tx: &mut futures::stream::SplitSink<WebSocket, Message>,
    rx: &mut futures::stream::SplitStream<WebSocket>,
) -> End {
    let Admitted {
        participant: id,
        mut events,
    } = session;
    let mut strikes = 0;
    let mut heard = Instant::now();
    let Liveness {
        keepalive: every,
        idle_timeout,
    } = state.liveness;
    let mut keepalive = tokio::time::interval_at(Instant::now() + every, every);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            frame = rx.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        heard = Instant::now();
                        strikes += 1;
                        let e = error(ProtocolError::Binary.code(), ProtocolError::Binary.to_string(), strikes >= MAX_STRIKES);
                        if strikes >= MAX_STRIKES {
                            return End { message: Some(e), close: CloseCode::ProtocolError };
                        }
                        if !send(tx, &e).await {
                            return End::quietly(CloseCode::Left);
                        }
                        continue;
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        heard = Instant::now();
                        continue;
                    }
                    // The client closed (its close frame is answered by the WebSocket layer)
                    // or the connection broke.
                    _ => return End::quietly(CloseCode::Left),
                };
                heard = Instant::now();
                let reply = match parse(&text) {
                    Ok(ClientMessage::Leave {}) => return End::quietly(CloseCode::Left),
                    Ok(message) => handle(id, state, message).await,
                    Err(e) => {
                        strikes += 1;
                        let e = error(e.code(), e.to_string(), strikes >= MAX_STRIKES);
                        if strikes >= MAX_STRIKES {
                            return End { message: Some(e), close: CloseCode::ProtocolError };
                        }
                        Some(e)
                    }
                };
                match reply {
                    Some(ServerMessage::Error { fatal: true, .. }) => return stopping(),
                    Some(r) if !send(tx, &r).await => return End::quietly(CloseCode::Left),
                    Some(_) | None => {}
                }
            }
            event = events.recv() => {
                let message = match event {
                    None => return stopping(),
                    Some(ParticipantEvent::Closed(ending)) => return ended(ending),
                    Some(ParticipantEvent::SubscribeOffer(sdp)) => ServerMessage::SubscribeOffer { sdp },
                    Some(ParticipantEvent::ParticipantJoined(participant)) => ServerMessage::ParticipantJoined { participant },
                    Some(ParticipantEvent::ParticipantLeft(participant_id)) => ServerMessage::ParticipantLeft { participant_id },
                    Some(ParticipantEvent::TrackPublished { participant, track, kind, layers }) => ServerMessage::TrackPublished { participant_id: participant, track, kind, layers },
                    Some(ParticipantEvent::Migrate { endpoint, token }) => ServerMessage::Migrate { endpoint, token },
                };
                if !send(tx, &message).await {
                    return End::quietly(CloseCode::Left);
                }
            }
            _ = keepalive.tick() => {
                if heard.elapsed() >= idle_timeout {
                    return End::with(
                        CloseCode::IdleTimeout,
                        "idle_timeout",
                        format!("nothing from the client for {idle_timeout:?}"),
                    );
                }
                if tx.send(Message::Ping(bytes::Bytes::default())).await.is_err() {
                    return End::quietly(CloseCode::Left);
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
