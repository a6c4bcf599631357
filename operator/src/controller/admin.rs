//! Talking to media nodes' admin API: the rooms a node may host, and closing a room.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Where a node's admin API is, and its bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminTarget {
    /// Base URL, such as `http://10.1.2.3:7881`.
    pub url: String,
    /// Bearer token.
    pub token: String,
}

/// A call to a node's admin API that failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The node did not answer in time, or the connection failed.
    #[error("{url}: {message}")]
    Unreachable {
        /// URL called.
        url: String,
        /// What happened.
        message: String,
    },
    /// The node answered with an error status.
    #[error("{url}: HTTP {status}: {body}")]
    Refused {
        /// URL called.
        url: String,
        /// Status code.
        status: u16,
        /// Body.
        body: String,
    },
}

/// The admin calls the operator makes; a trait so controllers can be tested without nodes.
pub trait NodeAdmin: Send + Sync + 'static {
    /// Replaces the node's assignment list: the rooms it may host and their reserved slots.
    fn assign(
        &self,
        target: &AdminTarget,
        rooms: &[(String, u32)],
    ) -> impl Future<Output = Result<(), AdminError>> + Send;
    /// Ends every session of a room on the node.
    fn close_room(
        &self,
        target: &AdminTarget,
        room: &str,
    ) -> impl Future<Output = Result<(), AdminError>> + Send;
}

/// The admin API over plain HTTP (pod to pod, inside the cluster).
#[derive(Clone)]
pub struct HttpAdmin {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl HttpAdmin {
    /// A client with a per-call timeout.
    pub fn new(timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(timeout));
        Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            timeout,
        }
    }

    async fn call(
        &self,
        method: http::Method,
        target: &AdminTarget,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), AdminError> {
        let url = format!("{}{path}", target.url.trim_end_matches('/'));
        let unreachable = |message: String| AdminError::Unreachable {
            url: url.clone(),
            message,
        };
        let mut request = http::Request::builder().method(method).uri(&url).header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", target.token),
        );
        let payload = match body {
            Some(b) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(payload))
            .map_err(|e| unreachable(e.to_string()))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        Err(AdminError::Refused {
            url,
            status: status.as_u16(),
            body,
        })
    }
}

impl NodeAdmin for HttpAdmin {
    async fn assign(
        &self,
        target: &AdminTarget,
        rooms: &[(String, u32)],
    ) -> Result<(), AdminError> {
        let rooms: Vec<_> = rooms
            .iter()
            .map(|(room, slots)| serde_json::json!({ "room": room, "slots": slots }))
            .collect();
        self.call(
            http::Method::PUT,
            target,
            "/v1/assignments",
            Some(serde_json::json!({ "rooms": rooms })),
        )
        .await
    }

    async fn close_room(&self, target: &AdminTarget, room: &str) -> Result<(), AdminError> {
        self.call(
            http::Method::DELETE,
            target,
            &format!("/v1/rooms/{room}"),
            None,
        )
        .await
    }
}
