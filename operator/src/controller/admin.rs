//! Talking to media nodes' admin API: their status and rooms (polled), the versioned list of
//! rooms a node may host, drains, and the advertised address.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use ruche_crds::admin::{
    ASSIGNMENTS_PATH, Accepted, AssignmentList, ListVersion, RoomQuality, StaleList,
};
use serde::Deserialize;

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
    /// The node holds a newer assignment list than the one sent.
    #[error("{url}: the node holds assignment list {}, newer than {}", stale.current, stale.refused)]
    Stale {
        /// URL called.
        url: String,
        /// What the node holds and what it refused.
        stale: StaleList,
    },
    /// The node answered something that is not what the admin API returns.
    #[error("{url}: unexpected answer: {message}")]
    Malformed {
        /// URL called.
        url: String,
        /// What was wrong.
        message: String,
    },
}

/// What a node says of itself (`GET /v1/status`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatusReport {
    /// `Ready`, `Draining` or `Drained`.
    pub phase: String,
    /// Seconds left before the drain deadline.
    #[serde(default)]
    pub drain_deadline_seconds: Option<u64>,
    /// Participant slots.
    #[serde(default)]
    pub capacity_slots: u32,
    /// Slots reserved by assigned rooms.
    #[serde(default)]
    pub reserved_slots: u32,
    /// Slots in use.
    #[serde(default)]
    pub used_slots: u32,
    /// Live rooms.
    #[serde(default)]
    pub rooms: u32,
    /// Connected participants.
    #[serde(default)]
    pub participants: u32,
    /// Media in, bits per second.
    #[serde(default)]
    pub bitrate_in_bps: u64,
    /// Media out, bits per second.
    #[serde(default)]
    pub bitrate_out_bps: u64,
    /// The media address the node advertises (absent on nodes that do not report it).
    #[serde(default)]
    pub advertise: Option<String>,
    /// The version of the assignment list the node holds.
    #[serde(default)]
    pub assignments_version: ListVersion,
}

/// One live room on a node (`GET /v1/rooms`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoomReport {
    /// Room name.
    pub name: String,
    /// Participants connected.
    #[serde(default)]
    pub participants: u32,
    /// Tracks published.
    #[serde(default)]
    pub tracks: u32,
    /// The room moved to another node; these are its last sessions here.
    #[serde(default)]
    pub leaving: bool,
    /// Its joins and media quality on this node.
    #[serde(default)]
    pub quality: RoomQuality,
}

/// `GET /v1/status`: the status and, in the same answer, the live rooms.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusWithRooms {
    #[serde(flatten)]
    status: NodeStatusReport,
    #[serde(default)]
    room_list: Vec<RoomReport>,
}

/// One poll of a node: its status and its live rooms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeReport {
    /// Status.
    pub status: NodeStatusReport,
    /// Live rooms.
    pub rooms: Vec<RoomReport>,
}

/// The admin calls the operator makes; a trait so controllers can be tested without nodes.
pub trait NodeAdmin: Send + Sync + 'static {
    /// Replaces the node's assignment list: the rooms it may host and their reserved slots.
    /// Rooms that leave the list end on the node. A list older than the node's is refused
    /// ([`AdminError::Stale`]).
    fn assign(
        &self,
        target: &AdminTarget,
        list: &AssignmentList,
    ) -> impl Future<Output = Result<Accepted, AdminError>> + Send;
    /// Reads the node's status and live rooms.
    fn report(
        &self,
        target: &AdminTarget,
    ) -> impl Future<Output = Result<NodeReport, AdminError>> + Send;
    /// Starts a drain (no new room), with the time left before the deadline.
    fn drain(
        &self,
        target: &AdminTarget,
        deadline: Option<Duration>,
    ) -> impl Future<Output = Result<(), AdminError>> + Send;
    /// Cancels a drain.
    fn undrain(&self, target: &AdminTarget) -> impl Future<Output = Result<(), AdminError>> + Send;
    /// Tells every participant of a room on the node to reconnect at `endpoint` (the node
    /// mints each one a token for its own identity); returns how many were told.
    fn migrate(
        &self,
        target: &AdminTarget,
        room: &str,
        endpoint: &str,
    ) -> impl Future<Output = Result<u32, AdminError>> + Send;
    /// Sets the media address the node advertises to new peers.
    fn advertise(
        &self,
        target: &AdminTarget,
        media: &str,
    ) -> impl Future<Output = Result<(), AdminError>> + Send;
}

/// The read buffer of each connection to a node.
const READ_BUFFER: usize = 4096;

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
        // One kept-alive connection per node, with a small read buffer: an answer is a few
        // kilobytes, and a thousand nodes' buffers add up.
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1)
            .http1_read_buf_exact_size(READ_BUFFER)
            .build(connector);
        Self { client, timeout }
    }

    async fn call(
        &self,
        method: http::Method,
        target: &AdminTarget,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Bytes, AdminError> {
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
        let body = tokio::time::timeout(self.timeout, response.into_body().collect())
            .await
            .map_err(|_| unreachable(format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        Err(AdminError::Refused {
            url,
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        target: &AdminTarget,
        path: &str,
    ) -> Result<T, AdminError> {
        let body = self.call(http::Method::GET, target, path, None).await?;
        serde_json::from_slice(&body).map_err(|e| AdminError::Malformed {
            url: format!("{}{path}", target.url.trim_end_matches('/')),
            message: e.to_string(),
        })
    }
}

impl NodeAdmin for HttpAdmin {
    async fn assign(
        &self,
        target: &AdminTarget,
        list: &AssignmentList,
    ) -> Result<Accepted, AdminError> {
        let body = serde_json::to_value(list).map_err(|e| AdminError::Malformed {
            url: target.url.clone(),
            message: format!("cannot encode the assignment list: {e}"),
        })?;
        let url = || format!("{}{ASSIGNMENTS_PATH}", target.url.trim_end_matches('/'));
        match self
            .call(http::Method::PUT, target, ASSIGNMENTS_PATH, Some(body))
            .await
        {
            Ok(answer) => serde_json::from_slice(&answer).map_err(|e| AdminError::Malformed {
                url: url(),
                message: e.to_string(),
            }),
            Err(AdminError::Refused {
                status: 409, body, ..
            }) => match serde_json::from_str::<StaleList>(&body) {
                Ok(stale) => Err(AdminError::Stale { url: url(), stale }),
                Err(e) => Err(AdminError::Malformed {
                    url: url(),
                    message: format!("409 without a stale-list body ({e}): {body}"),
                }),
            },
            Err(e) => Err(e),
        }
    }

    async fn report(&self, target: &AdminTarget) -> Result<NodeReport, AdminError> {
        let answer: StatusWithRooms = self.get(target, "/v1/status").await?;
        Ok(NodeReport {
            status: answer.status,
            rooms: answer.room_list,
        })
    }

    async fn drain(
        &self,
        target: &AdminTarget,
        deadline: Option<Duration>,
    ) -> Result<(), AdminError> {
        let body = deadline.map_or_else(
            || serde_json::json!({}),
            |d| serde_json::json!({ "deadlineSeconds": d.as_secs() }),
        );
        self.call(http::Method::POST, target, "/v1/drain", Some(body))
            .await
            .map(drop)
    }

    async fn undrain(&self, target: &AdminTarget) -> Result<(), AdminError> {
        self.call(http::Method::DELETE, target, "/v1/drain", None)
            .await
            .map(drop)
    }

    async fn migrate(
        &self,
        target: &AdminTarget,
        room: &str,
        endpoint: &str,
    ) -> Result<u32, AdminError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Told {
            participants_told: u32,
        }
        let path = format!("/v1/rooms/{room}/migrate");
        let body = self
            .call(
                http::Method::POST,
                target,
                &path,
                Some(serde_json::json!({ "endpoint": endpoint })),
            )
            .await?;
        serde_json::from_slice::<Told>(&body)
            .map(|t| t.participants_told)
            .map_err(|e| AdminError::Malformed {
                url: format!("{}{path}", target.url.trim_end_matches('/')),
                message: e.to_string(),
            })
    }

    async fn advertise(&self, target: &AdminTarget, media: &str) -> Result<(), AdminError> {
        self.call(
            http::Method::PUT,
            target,
            "/v1/advertise",
            Some(serde_json::json!({ "media": media })),
        )
        .await
        .map(drop)
    }
}
