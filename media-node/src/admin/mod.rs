//! The admin API, on its own port: health for Kubernetes probes, metrics, status and rooms
//! for the operator, and the operator's levers (drain, assignments, migration, the advertised
//! media address).
//!
//! `/livez` and `/readyz` answer without credentials, because kubelet probes cannot carry a
//! secret and they reveal nothing. Everything else needs `Authorization: Bearer <token>` with
//! the token from the admin token file; comparison is constant-time.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

pub mod wire;

use crate::drain::DrainReason;
use crate::media::{Command, MediaHandle};
use crate::metrics::Metrics;
use crate::token::{Claims, TokenKey};
use ruche_crds::admin::AssignmentList;
use wire::{AdvertiseBody, DrainBody, advertised_addr};

/// What the admin handlers share.
pub struct AdminState {
    /// The media loop.
    pub media: MediaHandle,
    /// Bearer token required on protected routes.
    pub admin_token: String,
    /// Mints migration tokens (when the key can sign).
    pub key: TokenKey,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// The admin routes.
pub fn router(state: Arc<AdminState>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/rooms", get(rooms))
        .route("/v1/drain", post(start_drain).delete(cancel_drain))
        .route(ruche_crds::admin::ASSIGNMENTS_PATH, put(assign))
        .route("/v1/advertise", put(advertise))
        .route("/v1/rooms/{room}/migrate", post(migrate))
        .route("/v1/rooms/{room}", axum::routing::delete(close_room))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .merge(protected)
        .with_state(state)
}

async fn authorize(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    match wire::bearer_refusal(&headers, &state.admin_token) {
        None => next.run(request).await,
        Some(refusal) => refusal,
    }
}

async fn livez(State(state): State<Arc<AdminState>>) -> Response {
    match state.media.ask(Command::Status).await {
        Some(_) => "ok".into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}

/// Ready while the media loop runs and the node is not Drained: a draining node still
/// serves its live rooms, including participants rejoining them.
async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.media.ask(Command::Status).await {
        Some(s) if s.phase != "Drained" => "ok".into_response(),
        Some(_) => (StatusCode::SERVICE_UNAVAILABLE, "drained").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

/// The node's status with its live rooms: all the operator's poll needs, in one request.
async fn status(State(state): State<Arc<AdminState>>) -> Response {
    match state.media.ask(Command::Status).await {
        Some(s) => Json(s).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}

async fn rooms(State(state): State<Arc<AdminState>>) -> Response {
    match state.media.ask(Command::Status).await {
        Some(s) => Json(serde_json::json!({ "rooms": s.room_list })).into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}

async fn start_drain(
    State(state): State<Arc<AdminState>>,
    body: Option<Json<DrainBody>>,
) -> Response {
    let deadline = body
        .and_then(|Json(b)| b.deadline_seconds)
        .map(Duration::from_secs);
    state
        .media
        .send(Command::Drain(deadline, DrainReason::Admin));
    status(State(state)).await
}

async fn cancel_drain(State(state): State<Arc<AdminState>>) -> Response {
    state.media.send(Command::CancelDrain);
    status(State(state)).await
}

/// Replaces the node's assignment list, unless it is older than the one held (409, with the
/// version held: see [`ruche_crds::admin`]).
async fn assign(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<AssignmentList>, JsonRejection>,
) -> Response {
    let list = match wire::assignment_list(body) {
        Ok(list) => list,
        Err(bad) => return *bad,
    };
    match state.media.ask(|r| Command::Assign(list, r)).await {
        Some(outcome) => wire::assignment_answer(outcome),
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}

/// Sets the media address new peer connections advertise; existing ones keep theirs.
async fn advertise(
    State(state): State<Arc<AdminState>>,
    body: Result<Json<AdvertiseBody>, JsonRejection>,
) -> Response {
    let addr = match body {
        Ok(Json(body)) => advertised_addr(&body.media),
        Err(rejection) => Err(format!("invalid body: {}", rejection.body_text())),
    };
    match addr {
        Ok(addr) => {
            state.media.send(Command::Advertise(addr));
            status(State(state)).await
        }
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    /// Signaling endpoint of the new node.
    endpoint: String,
    /// Tokens per identity; when absent the node mints them (if its key can sign).
    #[serde(default)]
    tokens: Option<std::collections::BTreeMap<String, String>>,
}

async fn migrate(
    State(state): State<Arc<AdminState>>,
    Path(room): Path<String>,
    Json(body): Json<MigrateBody>,
) -> Response {
    let tokens: Vec<(String, String)> = if let Some(t) = body.tokens {
        t.into_iter().collect()
    } else {
        match mint_migration_tokens(&state, &room).await {
            Ok(t) => t,
            Err(response) => return response,
        }
    };
    match state
        .media
        .ask(|r| Command::Migrate(room.clone(), body.endpoint, tokens, r))
        .await
    {
        Some(told) => {
            Json(serde_json::json!({ "room": room, "participantsTold": told })).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}

/// Mints a fresh token for every participant of `room`, same identity, name and grants.
async fn mint_migration_tokens(
    state: &AdminState,
    room: &str,
) -> Result<Vec<(String, String)>, Response> {
    let Some(identities) = state
        .media
        .ask(|r| Command::Identities(room.to_string(), r))
        .await
    else {
        return Err((StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response());
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut minted = Vec::new();
    for (identity, name, grants) in identities {
        let claims = Claims {
            sub: identity.clone(),
            room: room.to_string(),
            name: Some(name),
            exp: now + 600,
            nbf: None,
            iat: Some(now),
            grants,
        };
        match state.key.mint(&claims) {
            Ok(t) => minted.push((identity, t)),
            Err(e) => {
                return Err((
                    StatusCode::CONFLICT,
                    format!("cannot mint migration tokens ({e}): pass `tokens`"),
                )
                    .into_response());
            }
        }
    }
    Ok(minted)
}

/// Ends every session of a room: its `Room` was deleted.
async fn close_room(State(state): State<Arc<AdminState>>, Path(room): Path<String>) -> Response {
    match state
        .media
        .ask(|r| Command::CloseRoom(room.clone(), r))
        .await
    {
        Some(closed) => {
            Json(serde_json::json!({ "room": room, "participantsClosed": closed })).into_response()
        }
        None => (StatusCode::SERVICE_UNAVAILABLE, "media loop stopped").into_response(),
    }
}
