//! `ruche-operator run`: the operator process. Caches, controllers, leader election, and the
//! HTTP server for metrics and probes.
//!
//! The order matters. The HTTP server starts first (so liveness answers while we wait); then
//! the replica waits for the leader Lease; then the caches fill, and only once every cache has
//! synced do reconciles act, so a restarted operator decides from the whole world and moves
//! no live room. `/readyz` says ready only then. A replica that loses the Lease exits: its
//! successor rebuilds everything from the API.
//!
//! - [`lease`]: leader election over a `coordination.k8s.io/v1` Lease.
//! - [`http`]: `/metrics`, `/livez` and `/readyz`.
//! - [`watches`]: every watch event folded into the registry before the controllers see it.
//! - [`gauges`]: rooms, nodes and slots, refreshed from the caches.
//! - [`limits`]: the open-files limit, raised for a connection per media node.

pub mod api_latency;
pub mod gauges;
pub mod http;
pub mod lease;
pub mod limits;
pub mod scope;
pub mod watches;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt, future};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Controller, PredicateConfig, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use ruche_crds::{MediaFleet, MediaNode, Room};

use crate::build::labels;
use crate::build::secrets::random_text;
use crate::controller::admin::HttpAdmin;
use crate::controller::context::{Context, Parts, Settings, Stores, Triggers};
use crate::controller::events::Events;
use crate::controller::{Error, fleet, node, room};
use crate::core::health::HealthPolicy;
use crate::metrics::Metrics;
use crate::state::trim;
use lease::{LeaseConfig, LeaseError};
use scope::WatchScope;

/// Options of `ruche-operator run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Watch these namespaces only (a ministry's own install: one, or a comma-separated
    /// list); all namespaces when absent.
    #[arg(long = "namespace", env = "RUCHE_NAMESPACE", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Namespace of the leader election Lease (default: `POD_NAMESPACE`, else the first of
    /// `--namespace`, else the kubeconfig's namespace).
    #[arg(long, env = "RUCHE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the leader election Lease.
    #[arg(long, default_value = "ruche-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: `POD_NAME`, else host name plus a
    /// random suffix).
    #[arg(long)]
    pub identity: Option<String>,
    /// Address of the metrics and probes server.
    #[arg(long, env = "RUCHE_HTTP_BIND", default_value = "0.0.0.0:8080")]
    pub http_bind: SocketAddr,
    /// How often each media node's admin API is polled.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// A media node whose admin API is silent this long is Failed.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub node_failure_timeout: Duration,
    /// A media node whose admin API never answers this long after its pod runs is Failed.
    #[arg(long, default_value = "2m", value_parser = parse_duration)]
    pub node_startup_timeout: Duration,
    /// Timeout of one call to a media node's admin API.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub admin_timeout: Duration,
    /// Polls a media node must miss in a row (and its pod be unready) before it is Failed.
    #[arg(long, default_value_t = 3)]
    pub node_missed_polls: u32,
    /// The shortest time between two writes of a media node's status for its load alone
    /// (phase, addresses and conditions are written at once; load-only writes also share a
    /// budget of two a second over all nodes).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub load_status_interval: Duration,
    /// How long a media node keeps the sessions of a room moved off it (live migration) once
    /// its participants were told where to go, if they do not all rejoin sooner.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub migration_grace: Duration,
}

/// Reads a duration such as `2s`, `1m30s` or `500ms`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<kube::core::Duration>()
        .map(Duration::from)
        .map_err(|e| format!("{text:?}: {e} (expected a duration such as 2s, 1m30s or 500ms)"))
}

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    /// The HTTP server could not start.
    #[error("metrics and probes server on {addr}: {source}")]
    Http {
        /// Address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The leader election could not run.
    #[error("leader election: {0}")]
    Lease(#[from] LeaseError),
    /// Another replica took the Lease over: this one must stop acting.
    #[error("lost the leader Lease; exiting so a fresh replica rebuilds from the API")]
    LostLeadership,
    /// The OS gave no randomness for the replica's identity.
    #[error("no OS randomness for the replica identity: {0}")]
    Random(String),
}

/// Runs the operator until SIGTERM or SIGINT (clean exit) or the loss of the Lease (error).
pub async fn run(args: RunArgs) -> Result<(), RunError> {
    match limits::raise_open_files() {
        Ok(limits::OpenFiles::Raised(from, to)) => {
            tracing::info!(from, to, "raised the open-files limit");
        }
        Ok(limits::OpenFiles::Unchanged(n)) => tracing::debug!(limit = n, "open-files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-files limit"),
    }
    let metrics = Arc::new(Metrics::new());
    // The default client, with the API server's answers timed (ruche_operator_api_request_*).
    let config = kube::Config::infer()
        .await
        .map_err(|e| RunError::Client(kube::Error::InferConfig(e)))?;
    let client = kube::client::ClientBuilder::try_from(config)
        .map_err(RunError::Client)?
        .with_layer(&api_latency::ApiLatency::new(metrics.clone()))
        .build();
    let probes = http::Probes::default();
    let ready = probes.ready.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let stopping = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let signalled = stop_tx.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        let _ = signalled.send(true);
    });
    // Whatever ends the run (a signal, a lost Lease), the probes server stops with it: a
    // replica that lost the Lease must exit, not wait for a SIGTERM that never comes.
    let end = move || {
        let _ = stop_tx.send(true);
    };

    let server = http::serve(args.http_bind, metrics.clone(), probes.clone(), stopping())
        .await
        .map_err(|source| RunError::Http {
            addr: args.http_bind,
            source,
        })?;

    let lease_namespace = args
        .lease_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .or_else(|| {
            WatchScope::of_list(&args.namespaces)
                .first()
                .map(str::to_string)
        })
        .unwrap_or_else(|| client.default_namespace().to_string());
    let identity = if let Some(id) = args
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
    {
        id
    } else {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "ruche-operator".into());
        let suffix = random_text(6).map_err(|e| RunError::Random(e.to_string()))?;
        format!("{host}-{suffix}")
    };
    let lease_config = LeaseConfig::new(
        lease_namespace.clone(),
        args.lease_name.clone(),
        identity.clone(),
    );
    lease_config.check()?;
    let leader = lease::spawn(client.clone(), lease_config);
    probes.standby.store(true, Ordering::SeqCst);
    tracing::info!(%identity, lease = %format!("{lease_namespace}/{}", args.lease_name), "waiting for the leader Lease");
    let won = tokio::select! {
        won = leader.acquired() => won,
        () = stopping() => false,
    };
    probes.standby.store(false, Ordering::SeqCst);
    if !won {
        leader.release().await;
        end();
        let _ = server.await;
        return Ok(());
    }
    metrics.set_leader(true);
    tracing::info!(%identity, epoch = leader.epoch(), "leading");

    let leadership = Leadership {
        identity: &identity,
        epoch: leader.epoch(),
        metrics: &metrics,
        ready: &ready,
    };
    let result = tokio::select! {
        () = lead(&client, &args, leadership, stopping()) => Ok(()),
        () = leader.lost() => Err(RunError::LostLeadership),
    };
    ready.store(false, Ordering::SeqCst);
    metrics.set_leader(false);
    leader.release().await;
    end();
    let _ = server.await;
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Events waiting to be written, at most; more are dropped (and counted).
const EVENT_QUEUE: usize = 10_000;
/// Events written at once.
const EVENT_WRITERS: usize = 16;
/// Room reconciles at once.
const ROOM_CONCURRENCY: u16 = 128;

/// What a replica leads with.
struct Leadership<'a> {
    identity: &'a str,
    epoch: u32,
    metrics: &'a Arc<Metrics>,
    ready: &'a Arc<AtomicBool>,
}

/// Runs the controllers while we lead, until `stop` completes.
#[allow(clippy::too_many_lines)] // the wiring of every watch, cache and controller, in order
async fn lead(
    client: &Client,
    args: &RunArgs,
    leadership: Leadership<'_>,
    stop: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let scope = WatchScope::of_list(&args.namespaces);
    tracing::info!(serving = %scope.describe(), "watching");
    let owned = watcher::Config::default()
        .labels(&format!("app.kubernetes.io/managed-by={}", labels::MANAGER));
    let stop = future::FutureExt::shared(stop);

    let (fleets, fleet_writer) = reflector::store::<MediaFleet>();
    let (nodes, node_writer) = reflector::store::<MediaNode>();
    let (rooms, room_writer) = reflector::store::<Room>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (services, service_writer) = reflector::store::<Service>();
    let (hosts, host_writer) = reflector::store::<Node>();
    let stores = Stores {
        fleets: fleets.clone(),
        nodes: nodes.clone(),
        rooms: rooms.clone(),
        pods: pods.clone(),
        services: services.clone(),
        hosts,
    };
    let (fleet_tx, fleet_rx) = futures::channel::mpsc::unbounded();
    let (node_tx, node_rx) = futures::channel::mpsc::unbounded();
    let (room_tx, room_rx) = futures::channel::mpsc::unbounded();
    let settings = Settings {
        poll_interval: args.poll_interval,
        health: HealthPolicy {
            failure_timeout: args.node_failure_timeout,
            startup_timeout: args.node_startup_timeout,
            missed_polls: args.node_missed_polls,
        },
        assign_timeout: args.admin_timeout * 2,
        load_status_interval: args.load_status_interval,
        migration_grace: args.migration_grace,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        HttpAdmin::new(args.admin_timeout),
        Parts {
            events: Events::queued(
                client.clone(),
                labels::MANAGER,
                leadership.identity,
                EVENT_QUEUE,
                EVENT_WRITERS,
            ),
            stores: stores.clone(),
            settings,
            metrics: leadership.metrics.clone(),
            triggers: Triggers::new(fleet_tx, node_tx, room_tx),
            epoch: leadership.epoch,
        },
    ));

    // One watch per kind: cached (trimmed), folded into the registry, then filtered so that a
    // controller wakes for a change of what it acts on, not for its own status writes.
    let fleet_events = {
        let (ctx, store) = (ctx.clone(), fleets.clone());
        scope::watch(client, &scope, &watcher::Config::default(), store.clone())
            .default_backoff()
            .modify(trim::metadata)
            .reflect(fleet_writer)
            .inspect_ok(move |e| watches::fleet(&ctx, &store, e))
            .applied_objects()
            .predicate_filter(spec_or_deletion, PredicateConfig::default())
    };
    let node_events = {
        let (ctx, store) = (ctx.clone(), nodes.clone());
        scope::watch(client, &scope, &watcher::Config::default(), store.clone())
            .default_backoff()
            .modify(trim::metadata)
            .reflect(node_writer)
            .inspect_ok(move |e| watches::node(&ctx, &store, e))
            .applied_objects()
            .predicate_filter(spec_or_deletion, PredicateConfig::default())
    };
    let room_events = {
        let (ctx, store) = (ctx.clone(), rooms.clone());
        scope::watch(client, &scope, &watcher::Config::default(), store.clone())
            .default_backoff()
            .modify(trim::metadata)
            .reflect(room_writer)
            .inspect_ok(move |e| watches::room(&ctx, &store, e))
            .applied_objects()
            .predicate_filter(spec_or_deletion, PredicateConfig::default())
    };
    // Pods: one watch, both the node controller's cache and its trigger.
    let pod_triggers = scope::watch(client, &scope, &owned, pods.clone())
        .default_backoff()
        .modify(trim::pod)
        .reflect(pod_writer)
        .touched_objects()
        .filter_map(|pod| {
            future::ready(pod.ok().and_then(|p| {
                let node = p.labels().get(labels::NODE)?.clone();
                Some(ObjectRef::<MediaNode>::new(&node).within(&p.namespace()?))
            }))
        });

    // Kubernetes nodes: cached (their cordon and taints), and the media nodes on one are
    // looked at again when it starts or stops being taken away. Where the operator may not
    // watch them, the cache stays empty and no media node is drained for them.
    let host_triggers = {
        let pods = pods.clone();
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(trim::host)
            .reflect(host_writer)
            .applied_objects()
            .predicate_filter(leaving_key, PredicateConfig::default())
            .filter_map(|host| future::ready(host.ok()))
            .flat_map(move |host| futures::stream::iter(media_nodes_on(&pods, &host.name_any())))
    };

    // The nodes' Services: cached, so that an unchanged one is not applied again.
    let service_events = scope::watch(client, &scope, &owned, services.clone())
        .default_backoff()
        .modify(trim::metadata)
        .reflect(service_writer)
        .applied_objects();

    let config = ControllerConfig::default().concurrency(16);
    let fleets_ctrl = Controller::for_stream(fleet_events, fleets.clone())
        .reconcile_on(fleet_rx)
        .with_config(config.clone())
        .graceful_shutdown_on(stop.clone());
    let nodes_ctrl = Controller::for_stream(node_events, nodes.clone())
        .owns_stream(service_events)
        .reconcile_on(pod_triggers)
        .reconcile_on(host_triggers)
        .reconcile_on(node_rx)
        .with_config(config.clone())
        .graceful_shutdown_on(stop.clone());
    // A room's reconcile mostly waits (for its node, then the API server): many at once.
    let rooms_ctrl = Controller::for_stream(room_events, rooms.clone())
        .reconcile_on(room_rx)
        .with_config(ControllerConfig::default().concurrency(ROOM_CONCURRENCY))
        .graceful_shutdown_on(stop.clone());
    let synced = Arc::new(AtomicBool::new(false));

    let fleets_run = fleets_ctrl
        .run(
            gated("fleet", synced.clone(), fleet::reconcile),
            fleet::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let nodes_run = nodes_ctrl
        .run(
            gated("node", synced.clone(), node::reconcile),
            node::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));
    let rooms_run = rooms_ctrl
        .run(
            gated("room", synced.clone(), room::reconcile),
            room::error_policy,
            ctx.clone(),
        )
        .for_each(|_| future::ready(()));

    let sync_wait = {
        let (ctx, synced, ready) = (ctx.clone(), synced.clone(), leadership.ready.clone());
        async move {
            let started = Instant::now();
            let waits = future::try_join5(
                stores.fleets.wait_until_ready(),
                stores.nodes.wait_until_ready(),
                stores.rooms.wait_until_ready(),
                stores.pods.wait_until_ready(),
                stores.services.wait_until_ready(),
            );
            if let Err(e) = waits.await {
                tracing::error!(error = %e, "caches never synced");
                return;
            }
            synced.store(true, Ordering::SeqCst);
            ready.store(true, Ordering::SeqCst);
            tracing::info!(took = ?started.elapsed(), "caches synced; acting");
            gauges::run(ctx).await;
        }
    };
    tokio::select! {
        _ = future::join3(fleets_run, nodes_run, rooms_run) => {},
        () = sync_wait => {},
    }
}

/// What a Kubernetes node change means to the media nodes on it: whether, and by whom, it is
/// being taken away.
#[allow(clippy::unnecessary_wraps)] // the shape of a `Predicate`
fn leaving_key(host: &Node) -> Option<u64> {
    use crate::core::host::Leaving;
    Some(match trim::host_leaving(host) {
        None => 0,
        Some(Leaving::Cordoned) => 1,
        Some(Leaving::ClusterAutoscaler) => 2,
        Some(Leaving::Karpenter) => 3,
    })
}

/// The media nodes whose pod runs on Kubernetes node `host`.
fn media_nodes_on(pods: &reflector::Store<Pod>, host: &str) -> Vec<ObjectRef<MediaNode>> {
    pods.state()
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(host))
        .filter_map(|p| {
            let node = p.labels().get(labels::NODE)?;
            Some(ObjectRef::<MediaNode>::new(node).within(&p.namespace()?))
        })
        .collect()
}

/// What a controller wakes for: a new object, a spec change (its generation), or the start
/// of its deletion. Status changes — most of them the operator's own writes — do not.
#[allow(clippy::unnecessary_wraps)] // the shape of a `Predicate`
fn spec_or_deletion<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let generation = u64::try_from(meta.generation.unwrap_or(0)).unwrap_or(0);
    Some(generation << 1 | u64::from(meta.deletion_timestamp.is_some()))
}

/// Wraps a reconciler: it waits until every cache has synced (deciding from a partial view
/// could create nodes that exist, or move rooms that are placed), is timed, and a success
/// resets the object's backoff.
fn gated<K, A, F, Fut>(
    controller: &'static str,
    synced: Arc<AtomicBool>,
    reconcile: F,
) -> impl Fn(Arc<K>, Arc<Context<A>>) -> future::BoxFuture<'static, Result<Action, Error>>
where
    K: Resource + Send + Sync + 'static,
    A: crate::controller::admin::NodeAdmin,
    F: Fn(Arc<K>, Arc<Context<A>>) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = Result<Action, Error>> + Send + 'static,
{
    move |obj, ctx| {
        let synced = synced.clone();
        Box::pin(async move {
            if !synced.load(Ordering::SeqCst) {
                return Ok(Action::requeue(Duration::from_millis(500)));
            }
            let started = Instant::now();
            let (namespace, name) = (
                obj.meta().namespace.clone().unwrap_or_default(),
                obj.meta().name.clone().unwrap_or_default(),
            );
            let result = reconcile(obj, ctx.clone()).await;
            ctx.metrics.reconciled(controller, started.elapsed());
            if result.is_ok() {
                ctx.backoff.succeeded(controller, &namespace, &name);
            }
            result
        })
    }
}
