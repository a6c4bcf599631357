#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

//! Leader election against a mock API server that keeps one Lease, with the API server's
//! optimistic concurrency: a create of an existing Lease and a replace carrying a stale
//! `resourceVersion` both answer 409. The tests assert on the requests made; time bounds are
//! generous, and only lower bounds are asserted.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use ruche_operator::run::lease::{self, LeaderHandle, LeaseConfig};
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases/ruche";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
/// Generous: a loaded 2-core machine may be slow, never this slow.
const PATIENCE: Duration = Duration::from_secs(20);

/// A request the server answered.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    body: Value,
    at: Instant,
}

/// The API server's state: one Lease, or none.
#[derive(Default)]
struct Server {
    lease: Option<Value>,
    version: u64,
    /// A live peer: it renews the Lease between any two reads.
    peer_renews: bool,
    /// The API server is unreachable: every call answers 503.
    down: bool,
    seen: Vec<Seen>,
}

type Shared = Arc<Mutex<Server>>;

impl Server {
    fn with_lease(holder: &str, version: u64, transitions: i32) -> Self {
        Self {
            lease: Some(json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "ruche", "namespace": "default", "resourceVersion": version.to_string()},
                "spec": {
                    "holderIdentity": holder,
                    "leaseDurationSeconds": 1,
                    "leaseTransitions": transitions,
                    "acquireTime": "2026-01-01T00:00:00.000000Z",
                    "renewTime": "2026-01-01T00:00:00.000000Z",
                },
            })),
            version,
            ..Self::default()
        }
    }

    /// Stores `lease` as a new version of the Lease.
    fn store(&mut self, mut lease: Value) -> Value {
        self.version += 1;
        lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
        self.lease = Some(lease.clone());
        lease
    }

    fn answer(&mut self, method: &Method, path: &str, body: Value) -> (StatusCode, Value) {
        self.seen.push(Seen {
            method: method.clone(),
            body: body.clone(),
            at: Instant::now(),
        });
        if self.down {
            return status(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable");
        }
        match (method, path) {
            (&Method::GET, LEASE) => {
                if self.peer_renews
                    && let Some(lease) = self.lease.clone()
                {
                    self.store(lease);
                }
                match &self.lease {
                    Some(lease) => (StatusCode::OK, lease.clone()),
                    None => status(StatusCode::NOT_FOUND, "NotFound"),
                }
            }
            (&Method::POST, LEASES) if self.lease.is_some() => {
                status(StatusCode::CONFLICT, "AlreadyExists")
            }
            (&Method::POST, LEASES) => (StatusCode::CREATED, self.store(body)),
            (&Method::PUT, LEASE) => {
                let Some(current) = &self.lease else {
                    return status(StatusCode::NOT_FOUND, "NotFound");
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "Conflict");
                }
                (StatusCode::OK, self.store(body))
            }
            _ => status(StatusCode::NOT_FOUND, "NotFound"),
        }
    }

    fn count(&self, method: &Method) -> usize {
        self.seen.iter().filter(|s| s.method == method).count()
    }

    fn writes(&self) -> Vec<Seen> {
        self.seen
            .iter()
            .filter(|s| s.method != Method::GET)
            .cloned()
            .collect()
    }
}

fn status(code: StatusCode, reason: &str) -> (StatusCode, Value) {
    let body = json!({
        "apiVersion": "v1",
        "kind": "Status",
        "metadata": {},
        "status": "Failure",
        "message": reason,
        "reason": reason,
        "code": code.as_u16(),
    });
    (code, body)
}

/// Serves requests from `state` until every client is gone.
fn serve(mut handle: Handle, state: Shared) {
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            let (code, reply) = state
                .lock()
                .unwrap()
                .answer(&parts.method, parts.uri.path(), body);
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&reply).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
}

fn cluster(server: Server) -> (Client, Shared) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state = Arc::new(Mutex::new(server));
    serve(handle, state.clone());
    (Client::new(service, "default"), state)
}

/// Short timings: the peer Leases above last 1 s, as `leaseDurationSeconds` has no finer
/// grain. The renew deadline leaves room for a slow scheduler before a spurious step-down.
fn config(identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "default".into(),
        name: "ruche".into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(50),
    }
}

/// Waits until `done` holds of the server.
async fn until(state: &Shared, what: &str, done: impl Fn(&Server) -> bool) {
    let give_up = Instant::now() + PATIENCE;
    loop {
        {
            let server = state.lock().unwrap();
            if done(&server) {
                return;
            }
            assert!(
                Instant::now() < give_up,
                "{what}: not after {PATIENCE:?}; requests: {:#?}",
                server.seen
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn acquired(handle: &LeaderHandle) {
    let acquired = tokio::time::timeout(PATIENCE, handle.acquired()).await;
    assert_eq!(acquired, Ok(true), "leadership acquired");
    assert!(handle.is_leader());
}

async fn lost(handle: &LeaderHandle) {
    tokio::time::timeout(PATIENCE, handle.lost())
        .await
        .expect("leadership lost in time");
    assert!(!handle.is_leader());
}

#[tokio::test]
async fn an_absent_lease_is_created_then_renewed() {
    let (client, state) = cluster(Server::default());
    let handle = lease::spawn(client, config("ruche-0"));
    acquired(&handle).await;
    let writes = state.lock().unwrap().writes();
    assert_eq!(writes[0].method, Method::POST, "{writes:#?}");
    let spec = &writes[0].body["spec"];
    assert_eq!(spec["holderIdentity"], "ruche-0");
    assert_eq!(spec["leaseDurationSeconds"], 1);
    assert_eq!(spec["leaseTransitions"], 0);
    assert!(spec["acquireTime"].is_string() && spec["renewTime"].is_string());
    assert_eq!(writes[0].body["metadata"]["name"], "ruche");

    // Renewals follow: conditional replaces that keep the holder and the transitions.
    until(&state, "two renewals", |s| s.count(&Method::PUT) >= 2).await;
    let writes = state.lock().unwrap().writes();
    let renew = &writes[1];
    assert_eq!(renew.method, Method::PUT);
    assert_eq!(renew.body["spec"]["holderIdentity"], "ruche-0");
    assert_eq!(renew.body["spec"]["leaseTransitions"], 0);
    assert_eq!(
        renew.body["spec"]["acquireTime"], spec["acquireTime"],
        "a renewal keeps the acquisition time"
    );
    assert!(renew.body["metadata"]["resourceVersion"].is_string());
    assert!(handle.is_leader());
    handle.release().await;
}

#[tokio::test]
async fn a_lease_a_live_peer_renews_is_never_taken() {
    let mut server = Server::with_lease("ruche-1", 7, 3);
    server.peer_renews = true;
    let (client, state) = cluster(server);
    let started = Instant::now();
    let handle = lease::spawn(client, config("ruche-0"));
    // Many reads, over longer than the peer's 1 s lease.
    until(&state, "reads past the lease duration", |s| {
        s.count(&Method::GET) >= 20 && started.elapsed() > Duration::from_millis(1500)
    })
    .await;
    assert!(!handle.is_leader());
    handle.release().await;
    let server = state.lock().unwrap();
    assert!(
        server.writes().is_empty(),
        "no write, not even on release: {:#?}",
        server.writes()
    );
    assert_eq!(
        server.lease.as_ref().unwrap()["spec"]["holderIdentity"],
        "ruche-1"
    );
}

#[tokio::test]
async fn a_lease_left_unrenewed_past_its_duration_is_taken_over() {
    let (client, state) = cluster(Server::with_lease("ruche-1", 7, 3));
    let started = Instant::now();
    let handle = lease::spawn(client, config("ruche-0"));
    acquired(&handle).await;
    let (writes, reads) = {
        let server = state.lock().unwrap();
        (server.writes(), server.count(&Method::GET))
    };
    let take_over = &writes[0];
    assert_eq!(take_over.method, Method::PUT, "{writes:#?}");
    assert_eq!(take_over.body["metadata"]["resourceVersion"], "7");
    let spec = &take_over.body["spec"];
    assert_eq!(spec["holderIdentity"], "ruche-0");
    assert_eq!(spec["leaseTransitions"], 4);
    assert_eq!(spec["leaseDurationSeconds"], 1);
    assert_ne!(spec["acquireTime"], "2026-01-01T00:00:00.000000Z");
    assert_ne!(spec["renewTime"], "2026-01-01T00:00:00.000000Z");
    // Counted on our clock from no earlier than the spawn.
    assert!(
        take_over.at.duration_since(started) >= Duration::from_secs(1),
        "taken over after {:?}, before the peer's lease ran out",
        take_over.at.duration_since(started)
    );
    assert!(reads >= 2, "the lease was watched first");
    handle.release().await;
}

#[tokio::test]
async fn release_clears_the_holder_and_a_peer_takes_over_at_once() {
    let (client, state) = cluster(Server::default());
    let first = lease::spawn(client.clone(), config("ruche-0"));
    acquired(&first).await;
    let second = lease::spawn(client, config("ruche-1"));
    // The second replica watches a live lease and stays a follower.
    until(&state, "renewals while the second replica reads", |s| {
        s.count(&Method::PUT) >= 5
    })
    .await;
    assert!(first.is_leader() && !second.is_leader());

    let watch = first.watch();
    first.release().await;
    assert!(!*watch.borrow(), "released: we lead no more");
    acquired(&second).await;
    let writes = state.lock().unwrap().writes();
    let released = writes
        .iter()
        .position(|w| w.body["spec"]["holderIdentity"].is_null())
        .expect("a release");
    let release = &writes[released].body;
    assert_eq!(writes[released].method, Method::PUT);
    assert_eq!(release["spec"]["leaseTransitions"], 0);
    // The very next write is the second replica's, on the version the release left.
    let take_over = &writes[released + 1].body;
    assert_eq!(take_over["spec"]["holderIdentity"], "ruche-1");
    assert_eq!(take_over["spec"]["leaseTransitions"], 1);
    let after_release = release["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse::<u64>()
        .unwrap()
        + 1;
    assert_eq!(
        take_over["metadata"]["resourceVersion"],
        after_release.to_string()
    );
    second.release().await;
}

#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_steps_down() {
    let (client, state) = cluster(Server::default());
    let handle = lease::spawn(client, config("ruche-0"));
    acquired(&handle).await;
    state.lock().unwrap().down = true;
    lost(&handle).await;
    // The election is over: no more requests, and nothing to release.
    let count = state.lock().unwrap().seen.len();
    handle.release().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(state.lock().unwrap().seen.len(), count);
}

#[tokio::test]
async fn a_leader_whose_lease_was_taken_steps_down() {
    let (client, state) = cluster(Server::default());
    let handle = lease::spawn(client, config("ruche-0"));
    acquired(&handle).await;
    {
        let mut server = state.lock().unwrap();
        let mut lease = server.lease.clone().unwrap();
        lease["spec"]["holderIdentity"] = json!("ruche-1");
        server.store(lease);
    }
    lost(&handle).await;
    handle.release().await;
    let server = state.lock().unwrap();
    assert_eq!(
        server.lease.as_ref().unwrap()["spec"]["holderIdentity"],
        "ruche-1",
        "the new holder's lease is left alone"
    );
}

#[tokio::test]
async fn an_invalid_configuration_never_leads() {
    let (client, state) = cluster(Server::default());
    let mut bad = config("ruche-0");
    bad.renew_deadline = bad.lease_duration;
    assert!(bad.check().is_err());
    let handle = lease::spawn(client, bad);
    let acquired = tokio::time::timeout(PATIENCE, handle.acquired()).await;
    assert_eq!(acquired, Ok(false));
    handle.release().await;
    assert!(state.lock().unwrap().seen.is_empty());
}
