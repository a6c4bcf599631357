//! Leader election over a `coordination.k8s.io/v1` Lease: the shell around
//! [`core::leader`](crate::core::leader).
//!
//! [`spawn`] starts a task that reads the Lease every retry period, asks the core what to do
//! and does it: create the Lease, renew it, take it over, wait, or step down. Every write is
//! conditional (a create, or a replace carrying the `resourceVersion` we read), so when two
//! replicas race, the API server lets one win and the other reads again. The caller starts
//! its controllers when [`LeaderHandle::acquired`] returns and exits when
//! [`LeaderHandle::lost`] does: a lost leadership is final for the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::core::leader::{
    self, ConfigError, Decision, ElectionConfig, LeaseRecord, Observed, Role,
};

/// Where the Lease is, who we are, and the election's timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// Our identity, written as `holderIdentity`: unique per replica (the pod name).
    pub identity: String,
    /// How long peers wait, after the Lease last changed, before taking it over. Written as
    /// `leaseDurationSeconds`, rounded up to whole seconds.
    pub lease_duration: Duration,
    /// How long we keep leading without a successful renew.
    pub renew_deadline: Duration,
    /// How often we read the Lease, and renew it while we lead.
    pub retry_period: Duration,
}

impl LeaseConfig {
    /// A configuration with the default timings (15 s lease, 10 s renew deadline, 2 s retry).
    pub fn new(
        namespace: impl Into<String>,
        name: impl Into<String>,
        identity: impl Into<String>,
    ) -> Self {
        let timings = ElectionConfig::default();
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: timings.lease_duration,
            renew_deadline: timings.renew_deadline,
            retry_period: timings.retry_period,
        }
    }

    /// The timings, as the core takes them.
    pub fn election(&self) -> ElectionConfig {
        ElectionConfig {
            lease_duration: self.lease_duration,
            renew_deadline: self.renew_deadline,
            retry_period: self.retry_period,
        }
    }

    /// Checks the configuration, and returns the `leaseDurationSeconds` to write.
    pub fn check(&self) -> Result<i32, LeaseError> {
        if self.identity.is_empty() {
            // An empty holder means a released Lease: every peer would take it over.
            return Err(LeaseError::EmptyIdentity);
        }
        self.election().check()?;
        // Rounded up: peers then wait at least as long as we promise.
        let d = self.lease_duration;
        let seconds = d.as_secs() + u64::from(d.subsec_nanos() > 0);
        i32::try_from(seconds.max(1)).map_err(|_| LeaseError::DurationOutOfRange(d))
    }
}

/// What went wrong with the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Unsafe timings.
    #[error("lease timings: {0}")]
    Config(#[from] ConfigError),
    /// The identity is empty.
    #[error("the lease holder identity must not be empty")]
    EmptyIdentity,
    /// The lease duration does not fit `leaseDurationSeconds`.
    #[error("lease duration {0:?} does not fit leaseDurationSeconds")]
    DurationOutOfRange(Duration),
    /// The Lease was created or changed by someone else since we read it.
    #[error("lease {0} changed since it was read")]
    Conflict(String),
    /// A call to the API server failed.
    #[error("lease {name}: Kubernetes API: {source}")]
    Api {
        /// Name of the Lease.
        name: String,
        /// The client's error.
        source: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("lease {name}: no answer within {after:?}")]
    Timeout {
        /// Name of the Lease.
        name: String,
        /// How long we waited.
        after: Duration,
    },
}

/// The running election, as its caller sees it.
///
/// Dropping the handle stops the election as [`LeaderHandle::release`] does, without waiting.
#[derive(Debug)]
pub struct LeaderHandle {
    leading: watch::Receiver<bool>,
    epoch: Arc<AtomicU32>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LeaderHandle {
    /// Whether we lead now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// This leadership's epoch: the Lease's `leaseTransitions` when we acquired it. Every
    /// acquisition increments it, so a later leader's epoch is always higher; the media nodes'
    /// assignment lists carry it (see [`ruche_crds::admin`]).
    pub fn epoch(&self) -> u32 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// A receiver of leadership changes: `true` while we lead. Closed when the election ends.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Waits until we lead. Returns `false` if the election ended first (released, or an
    /// invalid configuration).
    pub async fn acquired(&self) -> bool {
        self.leading
            .clone()
            .wait_for(|leading| *leading)
            .await
            .is_ok()
    }

    /// Waits until we have led and lead no more; also returns if the election ends without
    /// us ever leading.
    pub async fn lost(&self) {
        let mut leading = self.leading.clone();
        if leading.wait_for(|leading| *leading).await.is_ok() {
            // An error is the election ending, which also means we lead no more.
            leading.wait_for(|leading| !*leading).await.ok();
        }
    }

    /// Stops the election. If we hold the Lease, clears its holder so that a peer takes over
    /// at once: call it once the controllers have stopped.
    pub async fn release(self) {
        // An error means the task has ended already.
        self.stop.send(()).ok();
        if let Err(error) = self.task.await {
            error!(%error, "the leader election task failed");
        }
    }
}

/// Starts the election for `config` in a new task; must be called within a Tokio runtime.
///
/// An invalid configuration (see [`LeaseConfig::check`]) is logged and ends the election at
/// once: [`LeaderHandle::acquired`] then returns `false`.
pub fn spawn(client: Client, config: LeaseConfig) -> LeaderHandle {
    let (leading_tx, leading) = watch::channel(false);
    let (stop, stop_rx) = oneshot::channel();
    let epoch = Arc::new(AtomicU32::new(0));
    let epoch_tx = epoch.clone();
    let task = tokio::spawn(async move {
        match config.check() {
            Ok(seconds) => {
                let mut elector = Elector::new(client, config, seconds, leading_tx);
                elector.epoch = epoch_tx;
                elector.run(stop_rx).await;
            }
            Err(error) => error!(%error, lease = %config.name, "leader election not started"),
        }
    });
    LeaderHandle {
        leading,
        epoch,
        stop,
        task,
    }
}

/// How a round ended.
enum Step {
    Continue,
    Lost,
}

/// The election's state, owned by its task.
struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    timings: ElectionConfig,
    lease_seconds: i32,
    /// What the core knows of the Lease.
    observed: Observed,
    /// The Lease as last read or written: the base of conditional writes.
    known: Option<Lease>,
    role: Role,
    leading: watch::Sender<bool>,
    /// The Lease's transitions when we acquired it.
    epoch: Arc<AtomicU32>,
    /// The holder last logged, so that a follower logs changes only.
    holder_logged: Option<String>,
}

impl Elector {
    fn new(
        client: Client,
        config: LeaseConfig,
        lease_seconds: i32,
        leading: watch::Sender<bool>,
    ) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            timings: config.election(),
            config,
            lease_seconds,
            observed: Observed::Absent,
            known: None,
            role: Role::Follower,
            leading,
            epoch: Arc::new(AtomicU32::new(0)),
            holder_logged: None,
        }
    }

    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        info!(lease = %self.config.name, identity = %self.config.identity, "leader election started");
        loop {
            // A round is not cancelled by a stop: a write cut short would leave us unsure of
            // the resourceVersion that release needs.
            if let Step::Lost = self.round().await {
                self.role = Role::Follower;
                self.leading.send_replace(false);
                warn!(lease = %self.config.name, identity = %self.config.identity, "lost leadership");
                return;
            }
            tokio::select! {
                // A stop or a dropped handle alike.
                _ = &mut stop => break,
                () = tokio::time::sleep(self.timings.retry_period) => {}
            }
        }
        self.release().await;
    }

    /// One read and the write it calls for, bounded in time: a leader must not be kept
    /// waiting on the API server past its renew deadline.
    async fn round(&mut self) -> Step {
        let started = Instant::now();
        let deadline = match self.role {
            Role::Leader { last_renew } => last_renew + self.timings.renew_deadline,
            Role::Follower => started + self.timings.renew_deadline,
        };
        let bounded =
            tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), self.attempt());
        if let Ok(step) = bounded.await {
            return step;
        }
        let error = LeaseError::Timeout {
            name: self.config.name.clone(),
            after: deadline.saturating_duration_since(started),
        };
        warn!(%error, "lease round cut short");
        match self.role {
            Role::Leader { .. } => Step::Lost,
            Role::Follower => Step::Continue,
        }
    }

    async fn attempt(&mut self) -> Step {
        match self.read().await {
            Ok(lease) => self.observe(lease),
            Err(error) => {
                warn!(%error, "cannot read the lease");
                // Nothing to write from a failed read; only the deadline still matters.
                return match self.decide() {
                    Decision::StepDown => Step::Lost,
                    _ => Step::Continue,
                };
            }
        }
        match self.decide() {
            Decision::Wait => {}
            Decision::StepDown => return Step::Lost,
            Decision::Create => self.create().await,
            Decision::Renew => self.write(false).await,
            Decision::TakeOver => self.write(true).await,
        }
        Step::Continue
    }

    fn decide(&self) -> Decision {
        leader::decide(
            &self.observed,
            &self.config.identity,
            self.role,
            Instant::now(),
            &self.timings,
        )
    }

    /// Folds a read into what we know; the instant is taken after the read returned.
    fn observe(&mut self, lease: Option<Lease>) {
        let record = lease.as_ref().map(record);
        if matches!(self.role, Role::Follower) {
            let holder = record.as_ref().and_then(|r| r.holder.clone());
            if holder != self.holder_logged {
                info!(lease = %self.config.name, holder = holder.as_deref().unwrap_or("<none>"), "lease holder changed");
                self.holder_logged = holder;
            }
        }
        self.observed = self.observed.update(record, Instant::now());
        self.known = lease;
    }

    async fn create(&mut self) {
        let now = MicroTime(Timestamp::now());
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                lease_duration_seconds: Some(self.lease_seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        };
        // Sent before the request: the record cannot have changed earlier, so the deadline
        // counted from here expires before any peer's view of the lease does.
        let sent = Instant::now();
        match self
            .call(self.api.create(&PostParams::default(), &lease))
            .await
        {
            Ok(created) => self.won(created, sent, "created the lease"),
            // Another replica created it first: the next read shows who.
            Err(LeaseError::Conflict(_)) => {
                debug!(lease = %self.config.name, "lease created by another replica");
            }
            Err(error) => warn!(%error, "cannot create the lease"),
        }
    }

    /// Renews the Lease, or takes it over, by a replace conditional on the version read.
    async fn write(&mut self, take_over: bool) {
        let Some(mut lease) = self.known.clone() else {
            return;
        };
        let acquiring = take_over || matches!(self.role, Role::Follower);
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let previous = spec.holder_identity.clone();
        let now = MicroTime(Timestamp::now());
        spec.holder_identity = Some(self.config.identity.clone());
        spec.lease_duration_seconds = Some(self.lease_seconds);
        if acquiring {
            spec.acquire_time = Some(now.clone());
        }
        if acquiring {
            // Every acquisition, even by a restarted replica of the same name, starts a new
            // epoch: the lists it writes to media nodes must outrank its predecessor's.
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        spec.renew_time = Some(now);
        let sent = Instant::now();
        let params = PostParams::default();
        let replace = self.api.replace(&self.config.name, &params, &lease);
        match self.call(replace).await {
            Ok(written) if take_over => {
                let from = previous.filter(|h| !h.is_empty());
                info!(lease = %self.config.name, from = from.as_deref().unwrap_or("<none>"), "took the lease over");
                self.won(written, sent, "acquired leadership");
            }
            Ok(written) => self.won(written, sent, "acquired leadership"),
            // Someone wrote first; the next read tells whether we still hold it.
            Err(LeaseError::Conflict(_)) => {
                debug!(lease = %self.config.name, "lease changed under our write");
            }
            Err(error) => warn!(%error, "cannot write the lease"),
        }
    }

    /// A write went through: we lead, renewed as of `sent`.
    fn won(&mut self, lease: Lease, sent: Instant, message: &str) {
        self.observed = self.observed.update(Some(record(&lease)), Instant::now());
        self.known = Some(lease);
        if matches!(self.role, Role::Follower) {
            let transitions = self
                .known
                .as_ref()
                .and_then(|l| l.spec.as_ref())
                .and_then(|s| s.lease_transitions)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(0);
            self.epoch.store(transitions, Ordering::SeqCst);
            info!(lease = %self.config.name, identity = %self.config.identity, epoch = transitions, "{message}");
            self.holder_logged = Some(self.config.identity.clone());
            self.leading.send_replace(true);
        }
        self.role = Role::Leader { last_renew: sent };
    }

    /// Stops acting, then clears the holder if it is still us, so a peer need not wait.
    async fn release(&mut self) {
        self.leading.send_replace(false);
        self.role = Role::Follower;
        let Some(mut lease) = self.known.take() else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        let params = PostParams::default();
        let replace = self.api.replace(&self.config.name, &params, &lease);
        let bounded = tokio::time::timeout(self.timings.renew_deadline, self.call(replace));
        match bounded.await {
            Ok(Ok(_)) => {
                info!(lease = %self.config.name, identity = %self.config.identity, "released the lease");
            }
            Ok(Err(LeaseError::Conflict(_))) => {
                info!(lease = %self.config.name, "lease changed since our last write: not ours to release");
            }
            Ok(Err(error)) => warn!(%error, "cannot release the lease"),
            Err(_) => {
                let error = LeaseError::Timeout {
                    name: self.config.name.clone(),
                    after: self.timings.renew_deadline,
                };
                warn!(%error, "cannot release the lease");
            }
        }
    }

    async fn read(&self) -> Result<Option<Lease>, LeaseError> {
        self.call(self.api.get_opt(&self.config.name)).await
    }

    /// Runs a call, telling a lost race (409) from other errors.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<T, LeaseError> {
        request.await.map_err(|source| match &source {
            // A replace on a stale version answers Conflict; a create of an existing Lease,
            // AlreadyExists: both 409.
            kube::Error::Api(status)
                if status.code == 409 || status.is_conflict() || status.is_already_exists() =>
            {
                LeaseError::Conflict(self.config.name.clone())
            }
            _ => LeaseError::Api {
                name: self.config.name.clone(),
                source,
            },
        })
    }
}

/// The core's view of a Lease object.
fn record(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.as_ref();
    LeaseRecord {
        holder: spec
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty()),
        lease_duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .filter(|&s| s > 0)
            .map(Duration::from_secs),
        version: lease.metadata.resource_version.clone().unwrap_or_default(),
    }
}
