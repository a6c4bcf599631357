//! The admin API stand-in: a process that answers a media node's admin API and nothing else,
//! for scale runs of the operator where a thousand real media nodes would measure the machine
//! rather than the operator.
//!
//! It is clearly not a media node: it binds no media or signaling port, hosts no participant,
//! and so reports no live room. What it does keep is what the operator reads and writes
//! through the admin API, with the same routes, bodies, bearer-token check and status codes as
//! `ruche-media-node`, whose request types (`ruche_media_node::admin::wire`) it shares:
//!
//! - `GET /v1/status`: phase, capacity, slots reserved by the assignment list (all of them in
//!   use, since an assigned room counts at its reservation), the advertised address;
//! - `GET /v1/rooms`: no live room;
//! - `PUT /v1/assignments`, `DELETE /v1/rooms/{room}`, `POST`/`DELETE /v1/drain`,
//!   `PUT /v1/advertise`;
//! - `/livez` and `/readyz` (503 once drained), without a token.
//!
//! Room migration (`POST /v1/rooms/{room}/migrate`) is not answered: it needs participants.
//!
//! It reads the environment the operator's pod gives a media node (`RUCHE_ADMIN_BIND`,
//! `RUCHE_ADMIN_TOKEN_FILE`, `RUCHE_CAPACITY_SLOTS`, `RUCHE_ADVERTISE`), so the pod runner
//! starts it from the very pods the operator builds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use ruche_crds::admin::{Accepted, AssignmentList, ListVersion, StaleList};
use ruche_media_node::admin::wire::{
    AdvertiseBody, DrainBody, advertised_addr, assignment_answer, assignment_list, bearer_refusal,
};
use serde_json::json;

/// What the stand-in is configured with, from the media node's environment.
#[derive(Clone, Debug)]
pub struct StandInConfig {
    /// Where the admin API listens (`RUCHE_ADMIN_BIND`).
    pub bind: SocketAddr,
    /// The bearer token the admin API requires (read from `RUCHE_ADMIN_TOKEN_FILE`).
    pub token: String,
    /// Participant slots (`RUCHE_CAPACITY_SLOTS`).
    pub capacity_slots: u32,
    /// The media address first advertised (`RUCHE_ADVERTISE`, may be empty).
    pub advertise: String,
}

/// Why the stand-in cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StandInError {
    /// A variable is missing or malformed.
    #[error("{name}: {problem}")]
    Env {
        /// The variable.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The token file cannot be read.
    #[error("cannot read the admin token from {path}: {source}")]
    Token {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl StandInConfig {
    /// Reads the configuration through `var` (the process environment in the binary).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, StandInError> {
        let required = |name: &'static str| {
            var(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or(StandInError::Env {
                    name,
                    problem: "not set".into(),
                })
        };
        let bind_raw = required("RUCHE_ADMIN_BIND")?;
        let bind = bind_raw.parse().map_err(|_| StandInError::Env {
            name: "RUCHE_ADMIN_BIND",
            problem: format!("`{bind_raw}` is not an IP:port address"),
        })?;
        let path = PathBuf::from(required("RUCHE_ADMIN_TOKEN_FILE")?);
        let token = std::fs::read_to_string(&path)
            .map_err(|source| StandInError::Token {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_string();
        if token.is_empty() {
            return Err(StandInError::Env {
                name: "RUCHE_ADMIN_TOKEN_FILE",
                problem: format!("{} is empty", path.display()),
            });
        }
        let slots_raw = required("RUCHE_CAPACITY_SLOTS")?;
        let capacity_slots = slots_raw.parse().map_err(|_| StandInError::Env {
            name: "RUCHE_CAPACITY_SLOTS",
            problem: format!("`{slots_raw}` is not a number of slots"),
        })?;
        Ok(Self {
            bind,
            token,
            capacity_slots,
            advertise: var("RUCHE_ADVERTISE").unwrap_or_default(),
        })
    }
}

/// Whether the node drains, and until when.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Drain {
    /// Serving.
    #[default]
    Off,
    /// Draining with no deadline.
    Open,
    /// Draining until this instant.
    Until(Instant),
}

/// What the operator has told the stand-in.
#[derive(Debug, Default)]
struct Told {
    assigned: BTreeMap<String, u32>,
    version: ListVersion,
    drain: Drain,
    advertise: String,
}

/// The stand-in's state, shared by its handlers.
#[derive(Debug)]
pub struct StandIn {
    token: String,
    capacity_slots: u32,
    told: Mutex<Told>,
}

impl StandIn {
    /// A stand-in in the Ready phase with no assignment.
    pub fn new(config: &StandInConfig) -> Arc<Self> {
        Arc::new(Self {
            token: config.token.clone(),
            capacity_slots: config.capacity_slots,
            told: Mutex::new(Told {
                advertise: config.advertise.clone(),
                ..Told::default()
            }),
        })
    }

    fn told(&self) -> std::sync::MutexGuard<'_, Told> {
        self.told.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The phase: with no live room, a draining node is at once Drained.
    fn phase(told: &Told) -> &'static str {
        if told.drain == Drain::Off {
            "Ready"
        } else {
            "Drained"
        }
    }

    /// `GET /v1/status`, with the media node's field names.
    fn status(&self) -> serde_json::Value {
        let told = self.told();
        let reserved: u32 = told.assigned.values().sum();
        let deadline = match told.drain {
            Drain::Until(d) => Some(d.saturating_duration_since(Instant::now()).as_secs()),
            Drain::Off | Drain::Open => None,
        };
        json!({
            "phase": Self::phase(&told),
            "drainDeadlineSeconds": deadline,
            "capacitySlots": self.capacity_slots,
            "reservedSlots": reserved,
            "usedSlots": reserved,
            "rooms": 0,
            "participants": 0,
            "bitrateInBps": 0,
            "bitrateOutBps": 0,
            "advertise": told.advertise,
            "assignmentsVersion": told.version,
            "roomList": [],
        })
    }
}

/// The admin routes.
pub fn router(state: Arc<StandIn>) -> Router {
    let protected = Router::new()
        .route("/v1/status", get(status))
        .route("/v1/rooms", get(rooms))
        .route("/v1/drain", axum::routing::post(drain).delete(undrain))
        .route(ruche_crds::admin::ASSIGNMENTS_PATH, put(assign))
        .route("/v1/advertise", put(advertise))
        .route("/v1/rooms/{room}", axum::routing::delete(close_room))
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize));
    Router::new()
        .merge(protected)
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn authorize(
    State(state): State<Arc<StandIn>>,
    headers: HeaderMap,
    request: Request,
    next: Next,
) -> Response {
    match bearer_refusal(&headers, &state.token) {
        None => next.run(request).await,
        Some(refusal) => refusal,
    }
}

async fn readyz(State(state): State<Arc<StandIn>>) -> Response {
    if state.told().drain == Drain::Off {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "drained").into_response()
    }
}

async fn status(State(state): State<Arc<StandIn>>) -> Response {
    Json(state.status()).into_response()
}

async fn rooms() -> Response {
    Json(json!({ "rooms": [] })).into_response()
}

async fn drain(State(state): State<Arc<StandIn>>, body: Option<Json<DrainBody>>) -> Response {
    state.told().drain = body
        .and_then(|Json(b)| b.deadline_seconds)
        .map_or(Drain::Open, |s| {
            Drain::Until(Instant::now() + Duration::from_secs(s))
        });
    status(State(state)).await
}

async fn undrain(State(state): State<Arc<StandIn>>) -> Response {
    state.told().drain = Drain::Off;
    status(State(state)).await
}

/// Takes the list unless it is older than the one held, as the media node does.
async fn assign(
    State(state): State<Arc<StandIn>>,
    body: Result<Json<AssignmentList>, JsonRejection>,
) -> Response {
    let list = match assignment_list(body) {
        Ok(list) => list,
        Err(bad) => return *bad,
    };
    let mut told = state.told();
    let outcome = if StaleList::refuses(told.version, list.version) {
        Err(StaleList {
            current: told.version,
            refused: list.version,
        })
    } else {
        told.version = list.version;
        told.assigned = list
            .rooms
            .into_iter()
            .filter(|a| !a.leaving)
            .map(|a| (a.room, a.slots))
            .collect();
        Ok(Accepted {
            version: told.version,
            assigned: told.assigned.len(),
            ended: Vec::new(),
        })
    };
    assignment_answer(outcome)
}

async fn advertise(
    State(state): State<Arc<StandIn>>,
    body: Result<Json<AdvertiseBody>, JsonRejection>,
) -> Response {
    let media = match body {
        Ok(Json(body)) => body.media,
        Err(rejection) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid body: {}", rejection.body_text()),
            )
                .into_response();
        }
    };
    match advertised_addr(&media) {
        Ok(addr) => {
            state.told().advertise = addr.to_string();
            status(State(state)).await
        }
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

async fn close_room(Path(room): Path<String>) -> Response {
    Json(json!({ "room": room, "participantsClosed": 0 })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn configuration_errors_name_the_variable() {
        let err = StandInConfig::from_vars(vars(&[])).map(drop);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("RUCHE_ADMIN_BIND: not set".into())
        );
        let err = StandInConfig::from_vars(vars(&[("RUCHE_ADMIN_BIND", "0.0.0.0")])).map(drop);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("RUCHE_ADMIN_BIND: `0.0.0.0` is not an IP:port address".into())
        );
        let dir = std::env::temp_dir().join(format!("ruche-stand-in-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let token = dir.join("token");
        std::fs::write(&token, "s3cret\n").expect("token file");
        let token_path = token.to_string_lossy().into_owned();
        let err = StandInConfig::from_vars(vars(&[
            ("RUCHE_ADMIN_BIND", "127.0.0.1:7881"),
            ("RUCHE_ADMIN_TOKEN_FILE", &token_path),
            ("RUCHE_CAPACITY_SLOTS", "many"),
        ]))
        .map(drop);
        assert_eq!(
            err.map_err(|e| e.to_string()),
            Err("RUCHE_CAPACITY_SLOTS: `many` is not a number of slots".into())
        );
        let config = StandInConfig::from_vars(vars(&[
            ("RUCHE_ADMIN_BIND", "127.0.0.1:7881"),
            ("RUCHE_ADMIN_TOKEN_FILE", &token_path),
            ("RUCHE_CAPACITY_SLOTS", "100"),
        ]))
        .expect("a valid configuration");
        assert_eq!(config.token, "s3cret");
        assert_eq!(config.capacity_slots, 100);
        assert_eq!(config.advertise, "");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn reservations_and_drain_show_in_status() {
        let state = StandIn::new(&StandInConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 7881)),
            token: "t".into(),
            capacity_slots: 100,
            advertise: "127.0.0.9:3478".into(),
        });
        state.told().assigned = BTreeMap::from([("a".into(), 4), ("b".into(), 6)]);
        let s = state.status();
        assert_eq!(s["phase"], "Ready");
        assert_eq!(s["reservedSlots"], 10);
        assert_eq!(s["usedSlots"], 10);
        assert_eq!(s["advertise"], "127.0.0.9:3478");
        state.told().drain = Drain::Until(Instant::now() + Duration::from_secs(60));
        let s = state.status();
        assert_eq!(s["phase"], "Drained");
        assert!(s["drainDeadlineSeconds"].as_u64().is_some_and(|d| d <= 60));
    }
}
