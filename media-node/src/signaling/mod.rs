//! Signaling: a WebSocket per client for joining and negotiating, plus, in `--dev` mode, a
//! demo page and a token endpoint so two browser tabs make a meeting with nothing else.
//!
//! - [`protocol`]: the messages;
//! - [`session`]: one client's session;
//! - [`replay`]: the token ids already admitted.

pub mod protocol;
pub mod replay;
pub mod session;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::keys::SharedKeys;
use crate::media::MediaHandle;
use crate::metrics::Metrics;
use crate::token::{Claims, Grants, LEEWAY_SECS, TokenError};
use replay::ReplayLedger;

/// The demo page served in `--dev` mode.
pub const DEMO_PAGE: &str = include_str!("../../static/demo.html");

/// How sessions are kept alive: the node pings a session every `keepalive`, and closes one
/// from which nothing came for `idle_timeout` (close code 4004).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Liveness {
    /// Interval of the node's WebSocket pings.
    pub keepalive: std::time::Duration,
    /// Silence after which a session is closed.
    pub idle_timeout: std::time::Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            keepalive: protocol::KEEPALIVE,
            idle_timeout: protocol::IDLE_TIMEOUT,
        }
    }
}

/// What every session shares.
pub struct SignalingState {
    /// The media loop.
    pub media: MediaHandle,
    /// Verify (and in dev mode mint) join tokens.
    pub keys: Arc<SharedKeys>,
    /// Token ids already admitted.
    pub replay: Mutex<ReplayLedger>,
    /// Dev mode: demo page and token endpoint.
    pub dev: bool,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Keep-alive and idle timeout.
    pub liveness: Liveness,
}

impl SignalingState {
    /// The claims of `token` if it admits to `room` at `now_unix`: signed by one of the node's
    /// keys, in its validity window, and, if it carries a `jti`, not admitted before (its id is
    /// claimed here; see [`SignalingState::release_token`]).
    pub fn admit_token(
        &self,
        token: &str,
        room: &str,
        now_unix: u64,
    ) -> Result<Claims, TokenError> {
        let claims = self.keys.get().verify_for_room(token, room, now_unix)?;
        if let Some(jti) = &claims.jti {
            let mut ledger = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
            ledger.claim(jti, claims.exp.saturating_add(LEEWAY_SECS), now_unix)?;
            self.metrics.token_ids_held(ledger.len());
        }
        Ok(claims)
    }

    /// Gives back the id of a token whose join the room refused, so it may try again.
    pub fn release_token(&self, jti: &str) {
        let mut ledger = self.replay.lock().unwrap_or_else(PoisonError::into_inner);
        ledger.release(jti);
        self.metrics.token_ids_held(ledger.len());
    }
}

/// The signaling routes.
pub fn router(state: Arc<SignalingState>) -> Router {
    let mut router = Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }));
    if state.dev {
        router = router
            .route("/", get(demo))
            .route("/dev/token", get(dev_token));
    }
    router.with_state(state)
}

/// A signaling session's read buffer: grows to the message when one is larger.
const READ_BUFFER_BYTES: usize = 4096;

async fn websocket(ws: WebSocketUpgrade, State(state): State<Arc<SignalingState>>) -> Response {
    // Signaling messages are small (SDP is the largest, a few KiB): a read buffer of the
    // WebSocket library's default size (128 KiB) would be most of a session's memory.
    ws.max_message_size(protocol::MAX_MESSAGE_BYTES)
        .max_frame_size(protocol::MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .on_upgrade(move |socket| session::run(socket, state))
}

async fn demo() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        DEMO_PAGE,
    )
        .into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    room: String,
    identity: String,
    name: Option<String>,
}

/// Mints a one-hour token for any room and identity (dev mode only).
async fn dev_token(
    State(state): State<Arc<SignalingState>>,
    Query(q): Query<TokenQuery>,
) -> Response {
    if q.room.is_empty() || q.identity.is_empty() || q.room.len() > 128 || q.identity.len() > 128 {
        return (
            StatusCode::BAD_REQUEST,
            "room and identity are required (at most 128 characters)",
        )
            .into_response();
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = Claims {
        sub: q.identity,
        room: q.room,
        name: q.name,
        exp: now + 3600,
        nbf: None,
        iat: Some(now),
        jti: None,
        grants: Grants::default(),
    };
    match state.keys.get().mint(&claims) {
        Ok(token) => axum::Json(serde_json::json!({ "token": token })).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
