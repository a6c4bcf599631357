//! The operator's HTTP server: `/metrics` (OpenMetrics text), `/livez` (the process answers)
//! and `/readyz` (this replica leads and its caches have synced: only then does it act).
//!
//! `/readyz?standby=true` also answers 200 for a standby replica waiting for the Lease. It is
//! the Deployment's readiness probe: were a standby never ready, a Deployment of two replicas
//! would never be fully available, and a rolling update could not replace the leader (it may
//! not take down the one available replica).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

/// What the probes report, set by the process as it goes.
#[derive(Clone, Debug, Default)]
pub struct Probes {
    /// This replica leads and its caches have synced.
    pub ready: Arc<AtomicBool>,
    /// This replica waits for the Lease, as a standby.
    pub standby: Arc<AtomicBool>,
}

#[derive(Clone)]
struct Shared {
    metrics: Arc<Metrics>,
    probes: Probes,
}

/// `?standby=true` on `/readyz`.
#[derive(Debug, Default, Deserialize)]
struct ReadyQuery {
    #[serde(default)]
    standby: bool,
}

/// The routes.
pub fn router(metrics: Arc<Metrics>, probes: Probes) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/livez", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(Shared { metrics, probes })
}

/// Binds `addr` and serves until `stop` completes; returns the server's task.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    probes: Probes,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "metrics and probes listening");
    let app = router(metrics, probes);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "metrics and probes server failed");
        }
    }))
}

async fn metrics_text(State(s): State<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(s): State<Shared>, Query(query): Query<ReadyQuery>) -> Response {
    let standby_ok = query.standby;
    if s.probes.ready.load(Ordering::SeqCst) {
        "ok".into_response()
    } else if standby_ok && s.probes.standby.load(Ordering::SeqCst) {
        "ok: standby, waiting for the leader Lease".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: waiting for the leader Lease or for the caches to sync",
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(probes: &Probes, path: &str) -> u16 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let app = router(Arc::new(Metrics::new()), probes.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
            .await
            .expect("write");
        let mut response = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
            .await
            .expect("read");
        server.abort();
        response
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code")
    }

    #[tokio::test]
    async fn a_standby_is_ready_only_when_the_probe_accepts_standbys() {
        let probes = Probes::default();
        assert_eq!(get(&probes, "/readyz").await, 503);
        assert_eq!(
            get(&probes, "/readyz?standby=true").await,
            503,
            "not yet waiting"
        );
        probes.standby.store(true, Ordering::SeqCst);
        assert_eq!(get(&probes, "/readyz").await, 503, "a standby does not act");
        assert_eq!(get(&probes, "/readyz?standby=true").await, 200);
        probes.standby.store(false, Ordering::SeqCst);
        assert_eq!(
            get(&probes, "/readyz?standby=true").await,
            503,
            "leading, syncing"
        );
        probes.ready.store(true, Ordering::SeqCst);
        assert_eq!(get(&probes, "/readyz").await, 200);
        assert_eq!(get(&probes, "/readyz?standby=true").await, 200);
        assert_eq!(get(&probes, "/livez").await, 200);
    }
}
