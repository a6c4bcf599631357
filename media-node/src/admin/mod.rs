//! The admin API, on its own port: health for Kubernetes probes, metrics, status and rooms
//! for the operator, and the operator's levers (drain, assignments, migration, the advertised
//! media address).
//!
//! `/livez` and `/readyz` answer without credentials, because kubelet probes cannot carry a
//! secret and they reveal nothing. Everything else needs `Authorization: Bearer <token>` with
//! the token from the admin token file; comparison is constant-time, and an address that keeps
//! presenting wrong tokens is answered 429 for a while ([`limiter`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;

pub mod limiter;
pub mod wire;

use crate::drain::DrainReason;
use crate::keys::SharedKeys;
use crate::media::{Command, MediaHandle};
use crate::metrics::Metrics;
use crate::token::{Claims, fresh_jti};
use limiter::FailureLimiter;
use ruche_crds::admin::AssignmentList;
use wire::{AdvertiseBody, DrainBody, advertised_addr};

/// What the admin handlers share.
pub struct AdminState {
    /// The media loop.
    pub media: MediaHandle,
    /// Bearer token required on protected routes.
    pub admin_token: String,
    /// Mint migration tokens (when the current key can sign).
    pub keys: Arc<SharedKeys>,
    /// Failed authentications by address.
    pub failures: Mutex<FailureLimiter>,
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

/// Serves the admin API on `listener` until the task is dropped, with each connection's peer
/// address known to the failure limit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AdminState>,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

/// Lets a request with the admin token through; refuses others, and answers 429 to an address
/// that failed too often without comparing its token. The address is the TCP peer's when the
/// server gives it (it serves with connection info), else all requests share one budget.
async fn authorize(
    State(state): State<Arc<AdminState>>,
    headers: HeaderMap,
    request: axum::extract::Request,
    next: Next,
) -> Response {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
    let now = Instant::now();
    let wait = state
        .failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .wait(address, now);
    if let Some(wait) = wait {
        state.metrics.admin_auth_failed("limited");
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, wait.as_secs().max(1).to_string())],
            "too many admin requests with a wrong token from this address",
        )
            .into_response();
    }
    match wire::bearer_check(&headers, &state.admin_token) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            state
                .failures
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .failed(address, now);
            state.metrics.admin_auth_failed(refusal.reason());
            tracing::warn!(%address, reason = refusal.reason(), "admin request refused");
            refusal.response()
        }
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
    let keys = state.keys.get();
    let mut minted = Vec::new();
    for (identity, name, grants) in identities {
        let claims =
            Claims {
                sub: identity.clone(),
                room: room.to_string(),
                name: Some(name),
                exp: now + 600,
                nbf: None,
                iat: Some(now),
                // A migration token admits once, on the node the room moves to.
                jti: Some(fresh_jti().map_err(|e| {
                    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
                })?),
                grants,
            };
        match keys.mint(&claims) {
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
