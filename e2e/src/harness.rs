//! One scenario's world: a fresh namespace, the operator's RBAC and identity, the pod runner
//! and the operator, all torn down by a guard when the test ends, passed or failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::{StreamExt as _, TryStreamExt as _};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt as _};
use ruche_crds::{MediaFleet, MediaNode, NodePhase, Room, RoomPhase};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::cluster::{self, Cluster, Connection};
use crate::crds::{self, MANAGER};
use crate::error::{Error, Result, is_conflict};
use crate::fixtures::{self, ADMIN_PORT};
use crate::operator::{Operator, READY_TIMEOUT};
use crate::process::{self, tail};
use crate::rbac::{self, TEST_LABEL};
use crate::runner::{POD_SELECTOR, PodRunner, Program, RunnerConfig, Scope};
use crate::wait;

/// Scenarios running at once (each has its own operator and media nodes); the
/// `RUCHE_E2E_PARALLEL` environment variable changes it.
pub const DEFAULT_PARALLEL: usize = 3;
/// How long the clean-up may take.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(90);

static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();

fn slots() -> Arc<Semaphore> {
    SLOTS
        .get_or_init(|| {
            let n = std::env::var("RUCHE_E2E_PARALLEL")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(DEFAULT_PARALLEL)
                .max(1);
            Arc::new(Semaphore::new(n))
        })
        .clone()
}

/// What the pod runner starts for each media node pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeProgram {
    /// `ruche-media-node`, the real one (`RUCHE_MEDIA_NODE_BIN` overrides where it is).
    MediaNode,
    /// The real one, its readiness and liveness probed for its whole life as a kubelet does
    /// (so that a hung node's pod stops being Ready), for the chaos suite.
    ProbedMediaNode,
    /// `ruche-admin-stand-in`: the admin API only, for scale runs of the operator
    /// (`RUCHE_ADMIN_STAND_IN_BIN` overrides where it is).
    AdminStandIn,
}

impl NodeProgram {
    /// Where the program's binary is.
    pub fn binary(self) -> Result<PathBuf> {
        match self {
            Self::MediaNode | Self::ProbedMediaNode => {
                process::binary("RUCHE_MEDIA_NODE_BIN", "ruche-media-node")
            }
            Self::AdminStandIn => {
                process::binary("RUCHE_ADMIN_STAND_IN_BIN", "ruche-admin-stand-in")
            }
        }
    }
}

/// A namespaced kind the harness reads and writes: any of Kubernetes' or Ruche's.
pub trait Namespaced:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
{
}

/// A fleet as the operator reports it, with its media nodes.
#[derive(Clone, Debug)]
pub struct FleetView {
    /// The fleet.
    pub fleet: MediaFleet,
    /// Its media nodes.
    pub nodes: Vec<MediaNode>,
}

/// One scenario's namespace, operator and media nodes. Dropping it kills the processes,
/// prints their logs if the test failed, and deletes the namespace and the cluster-scoped
/// RBAC objects, whatever happened.
pub struct TestEnv {
    /// The test's name.
    pub test: String,
    /// The test's namespace.
    pub namespace: String,
    /// A client with the harness's (administrator) credentials.
    pub client: Client,
    /// The test's temporary directory: kubeconfig, logs, media nodes' files.
    pub dir: PathBuf,
    /// The pod runner, when the operator runs.
    pub runner: Option<PodRunner>,
    /// The operator, while it runs.
    pub operator: Option<Operator>,
    cluster: Cluster,
    kubeconfig: Option<PathBuf>,
    operator_binary: Option<PathBuf>,
    operator_starts: u32,
    failed: bool,
    started: Instant,
    _slot: OwnedSemaphorePermit,
}

/// A DNS-label-safe namespace name for `test`, with a random suffix.
pub(crate) fn namespace_for(test: &str) -> Result<String> {
    let mut slug: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    slug.truncate(36);
    let slug = slug.trim_matches('-').to_string();
    let mut random = [0u8; 4];
    getrandom::fill(&mut random)
        .map_err(|e| Error::Setup(format!("no randomness for a namespace name: {e}")))?;
    let suffix = random.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok(format!("ruche-e2e-{slug}-{suffix}"))
}

impl TestEnv {
    /// The full set-up: namespace, CRDs, the operator's RBAC and token, the pod runner, and
    /// the operator, ready. `None` (after printing why) when there is no cluster.
    pub async fn start(test: &str) -> Result<Option<Self>> {
        Self::setup(test, Some(NodeProgram::MediaNode)).await
    }

    /// [`TestEnv::start`], with the pod runner starting `nodes` for media node pods.
    pub async fn start_with(test: &str, nodes: NodeProgram) -> Result<Option<Self>> {
        Self::setup(test, Some(nodes)).await
    }

    /// A namespace and the CRDs only: no operator, no pods.
    pub async fn start_without_operator(test: &str) -> Result<Option<Self>> {
        Self::setup(test, None).await
    }

    async fn setup(test: &str, nodes: Option<NodeProgram>) -> Result<Option<Self>> {
        let cluster = match cluster::connect().await? {
            Connection::Ready(c) => *c,
            Connection::Skip(why) => {
                cluster::print_skip(test, &why);
                return Ok(None);
            }
        };
        // Binaries are looked for before anything is created on the cluster.
        let binaries = match nodes {
            Some(program) => Some((
                process::binary("RUCHE_OPERATOR_BIN", "ruche-operator")?,
                program.binary()?,
                program == NodeProgram::ProbedMediaNode,
            )),
            None => None,
        };
        let waited = Instant::now();
        let slot = slots()
            .acquire_owned()
            .await
            .map_err(|e| Error::Setup(format!("scenario slots closed: {e}")))?;
        let namespace = namespace_for(test)?;
        let dir = std::env::temp_dir().join(&namespace);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        eprintln!(
            "e2e [{test}]: namespace {namespace}, files in {} (waited {:?} for a slot)",
            dir.display(),
            waited.elapsed()
        );
        let mut env = Self {
            test: test.to_string(),
            namespace,
            client: cluster.client.clone(),
            dir,
            runner: None,
            operator: None,
            cluster,
            kubeconfig: None,
            operator_binary: None,
            operator_starts: 0,
            failed: false,
            started: Instant::now(),
            _slot: slot,
        };
        // From here on, the guard cleans up whatever was created, set-up failure included.
        match env.prepare(binaries).await {
            Ok(()) => Ok(Some(env)),
            Err(e) => {
                env.failed = true;
                eprintln!("e2e [{test}]: set-up failed: {e}");
                Err(e)
            }
        }
    }

    async fn prepare(&mut self, binaries: Option<(PathBuf, PathBuf, bool)>) -> Result<()> {
        crds::install(&self.client).await?;
        self.create_namespace().await?;
        let Some((operator_binary, media_node_binary, probed)) = binaries else {
            return Ok(());
        };
        let rbac = rbac::load(&self.namespace)?;
        rbac::create(&self.client, &self.namespace, &rbac).await?;
        if !rbac::enforced(&self.client, &self.namespace).await? {
            eprintln!(
                "\n**********************************************************************\n\
                 WARNING: this API server does not enforce RBAC (is it running with\n\
                 --authorization-mode=AlwaysAllow?): the operator's ServiceAccount may delete\n\
                 a MediaFleet, which manifests/rbac does not grant. The scenarios still run,\n\
                 but they prove nothing about the RBAC. Start it with\n\
                 --authorization-mode=Node,RBAC to check it.\n\
                 **********************************************************************\n"
            );
        }
        let token = rbac::token(&self.client, &self.namespace).await?;
        let kubeconfig = self.dir.join("operator.kubeconfig");
        rbac::write_kubeconfig(
            &kubeconfig,
            &self.cluster.cluster_entry,
            &token,
            &self.namespace,
        )?;
        eprintln!(
            "e2e [{}]: operator identity: ServiceAccount {}/{} (manifests/rbac, namespace-scoped), kubeconfig {}",
            self.test,
            self.namespace,
            rbac::SERVICE_ACCOUNT,
            kubeconfig.display()
        );
        self.kubeconfig = Some(kubeconfig);
        self.operator_binary = Some(operator_binary);
        self.runner = Some(PodRunner::with_config(
            self.client.clone(),
            RunnerConfig {
                scope: Scope::Namespaces(vec![self.namespace.clone()]),
                programs: vec![Program {
                    probe_periodically: probed,
                    ..Program::media_node(&media_node_binary)
                }],
                dir: self.dir.clone(),
                api_server: None,
            },
        ));
        self.start_operator().await
    }

    async fn create_namespace(&self) -> Result<()> {
        create_namespace(&self.client, &self.namespace).await
    }

    /// Starts an operator (again) and waits until it is ready.
    pub async fn start_operator(&mut self) -> Result<()> {
        let (Some(binary), Some(kubeconfig)) = (&self.operator_binary, &self.kubeconfig) else {
            return Err(Error::Setup(
                "this scenario was set up without an operator".into(),
            ));
        };
        self.operator_starts += 1;
        let log = self
            .dir
            .join(format!("operator-{}.log", self.operator_starts));
        let operator = Operator::start(binary, kubeconfig, &self.namespace, &log)?;
        let ready = operator.wait_ready(READY_TIMEOUT).await;
        self.operator = Some(operator);
        ready.map(|_| ())
    }

    /// Kills the operator (SIGKILL) and starts a new one, ready.
    pub async fn restart_operator(&mut self) -> Result<()> {
        if let Some(old) = self.operator.take() {
            old.kill().await;
        }
        self.start_operator().await
    }

    /// The operator's binary and its ServiceAccount's kubeconfig, to run more replicas.
    pub fn operator_files(&self) -> Result<(PathBuf, PathBuf)> {
        match (&self.operator_binary, &self.kubeconfig) {
            (Some(binary), Some(kubeconfig)) => Ok((binary.clone(), kubeconfig.clone())),
            _ => Err(Error::Setup(
                "this scenario was set up without an operator".into(),
            )),
        }
    }

    /// The running operator.
    pub fn operator(&self) -> Result<&Operator> {
        self.operator
            .as_ref()
            .ok_or_else(|| Error::Setup("no operator runs".into()))
    }

    /// The API server's address, as the harness's kubeconfig gives it.
    pub fn server(&self) -> &str {
        &self.cluster.server
    }

    /// The pod runner.
    pub fn runner(&self) -> Result<&PodRunner> {
        self.runner
            .as_ref()
            .ok_or_else(|| Error::Setup("no pod runner in this scenario".into()))
    }

    /// An API of kind `K` in the test namespace, with the harness's credentials.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Namespaced,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Creates or updates an object by server-side apply (it must carry apiVersion and kind).
    pub async fn apply<K>(&self, name: &str, object: &serde_json::Value) -> Result<K>
    where
        K: Namespaced,
    {
        Ok(self
            .api::<K>()
            .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(object))
            .await?)
    }

    /// Creates rooms, `parallel` requests at a time.
    pub async fn create_rooms(&self, rooms: Vec<Room>, parallel: usize) -> Result<()> {
        let api = self.api::<Room>();
        futures::stream::iter(rooms)
            .map(|room| {
                let api = api.clone();
                async move { api.create(&PostParams::default(), &room).await }
            })
            .buffer_unordered(parallel.max(1))
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(())
    }

    /// The fleet's media nodes.
    pub async fn nodes(&self, fleet: &str) -> Result<Vec<MediaNode>> {
        let nodes = self.api::<MediaNode>().list(&ListParams::default()).await?;
        Ok(nodes
            .items
            .into_iter()
            .filter(|n| n.spec.fleet == fleet)
            .collect())
    }

    /// Every room of the namespace.
    pub async fn rooms(&self) -> Result<Vec<Room>> {
        Ok(self.api::<Room>().list(&ListParams::default()).await?.items)
    }

    /// Waits until the fleet runs `per_zone` Ready nodes in each of its zones: the
    /// fleet's status counts them, and every node is Ready with the addresses its pod's
    /// loopback address and host port give.
    pub async fn wait_fleet_ready(
        &self,
        fleet: &str,
        per_zone: u32,
        timeout: Duration,
    ) -> Result<FleetView> {
        wait_fleet_ready(
            &self.client,
            &self.namespace,
            self.runner()?,
            fleet,
            per_zone,
            timeout,
        )
        .await
    }

    /// Waits until every room of `names` is placed (see [`fixtures::check_placed`]) with a
    /// phase in `phases`; returns them.
    pub async fn wait_rooms_placed(
        &self,
        names: &[String],
        phases: &[RoomPhase],
        timeout: Duration,
    ) -> Result<Vec<Room>> {
        wait_rooms_placed(&self.client, &self.namespace, names, phases, timeout).await
    }

    /// A join token for `identity` in `room`, signed with the fleet's key.
    pub async fn token(&self, fleet: &str, room: &str, identity: &str) -> Result<String> {
        let key = fixtures::join_key(&self.client, &self.namespace, fleet).await?;
        fixtures::mint(&key, room, identity)
    }

    /// Marks the scenario failed (logs are printed and files kept even without a panic).
    pub fn fail(&mut self) {
        self.failed = true;
    }

    fn print_failure(&self) {
        let mut out = format!(
            "\n======== e2e [{}] FAILED after {:?}: namespace {}, files kept in {}\n",
            self.test,
            self.started.elapsed(),
            self.namespace,
            self.dir.display()
        );
        for n in 1..=self.operator_starts {
            let log = self.dir.join(format!("operator-{n}.log"));
            let _ = write!(
                out,
                "-------- operator log {} (last 300 lines):\n{}\n",
                log.display(),
                tail(&log, 300)
            );
        }
        if let Some(runner) = &self.runner {
            out.push_str("-------- media node processes (last 40 lines of each log):\n");
            out.push_str(&runner.report(40));
        }
        eprintln!("{out}");
    }
}

/// Runs a fixture's clean-up `work` on a thread of its own, with its own runtime (the test's
/// runtime may be going away: a panic unwinds through it), within `limit`, and waits for it.
/// Prints `done` when it succeeds; otherwise what went wrong and `by_hand`, what to delete
/// by hand.
pub(crate) fn clean_up_on_own_thread<W, F>(
    test: &str,
    limit: Duration,
    done: String,
    by_hand: String,
    work: W,
) where
    W: FnOnce() -> F + Send + 'static,
    F: Future<Output = Result<()>>,
{
    let test = test.to_string();
    let cleaner = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            eprintln!("e2e [{test}]: no runtime for clean-up: {by_hand}");
            return;
        };
        runtime.block_on(async {
            match tokio::time::timeout(limit, work()).await {
                Ok(Ok(())) => eprintln!("e2e [{test}]: {done}"),
                Ok(Err(e)) => eprintln!("e2e [{test}]: clean-up incomplete: {e} ({by_hand})"),
                Err(_) => eprintln!("e2e [{test}]: clean-up timed out after {limit:?} ({by_hand})"),
            }
        });
    });
    let _ = cleaner.join();
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let failed = self.failed || std::thread::panicking();
        if let Some(operator) = &self.operator {
            operator.kill_now();
        }
        if let Some(runner) = &self.runner {
            runner.shutdown();
        }
        if failed {
            self.print_failure();
        }
        let (config, namespace) = (self.cluster.config.clone(), self.namespace.clone());
        clean_up_on_own_thread(
            &self.test,
            CLEANUP_TIMEOUT,
            format!("namespace {namespace} deleted"),
            format!(
                "kubectl delete namespace {namespace}; kubectl delete \
                 clusterrole,clusterrolebinding -l {TEST_LABEL}={namespace}"
            ),
            move || async move { clean_up(config, &namespace, failed).await },
        );
        keep_or_remove(&self.test, &self.dir, failed);
    }
}

/// A scenario's files: kept (and said where) when it failed, removed when it passed.
pub(crate) fn keep_or_remove(test: &str, dir: &std::path::Path, failed: bool) {
    if failed {
        eprintln!("e2e [{test}]: files kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Creates a scenario's namespace `namespace` (labelled for the suite, Pod Security
/// `privileged`) and its `default` ServiceAccount if none exists yet.
pub(crate) async fn create_namespace(client: &Client, namespace: &str) -> Result<()> {
    // Media pods use host ports, which stricter Pod Security levels refuse.
    create_namespace_at(client, namespace, "privileged", &[]).await
}

/// Creates `namespace` with its `default` ServiceAccount, Pod Security `level` enforced, and
/// `labels` besides the suite's own.
pub(crate) async fn create_namespace_at(
    client: &Client,
    namespace: &str,
    level: &str,
    labels: &[(&str, &str)],
) -> Result<()> {
    let mut all = BTreeMap::from([
        (
            "app.kubernetes.io/part-of".to_string(),
            "ruche-e2e".to_string(),
        ),
        (TEST_LABEL.to_string(), namespace.to_string()),
        (
            "pod-security.kubernetes.io/enforce".to_string(),
            level.to_string(),
        ),
    ]);
    all.extend(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string())),
    );
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(namespace.to_string()),
            labels: Some(all),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    // A bare API server has no controller-manager, so nothing creates the namespace's
    // `default` ServiceAccount, without which the ServiceAccount admission plugin refuses
    // pods. Where a controller runs it may win the race: either way one exists.
    let default_sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some("default".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    match Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &default_sa)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits until the fleet `fleet` of `namespace` runs `per_zone` Ready nodes in each of its
/// zones: the fleet's status counts them, and every node is Ready with the addresses its
/// pod's loopback address (given by `runner`) and host port give.
pub async fn wait_fleet_ready(
    client: &Client,
    namespace: &str,
    runner: &PodRunner,
    fleet: &str,
    per_zone: u32,
    timeout: Duration,
) -> Result<FleetView> {
    let started = Instant::now();
    let view = wait::until(
        &format!("fleet {namespace}/{fleet} to run {per_zone} Ready nodes in each zone"),
        timeout,
        || async { check_fleet(client, namespace, runner, fleet, per_zone).await },
    )
    .await?;
    eprintln!(
        "e2e: fleet {namespace}/{fleet} ready with {} nodes after {:?}",
        view.nodes.len(),
        started.elapsed()
    );
    Ok(view)
}

async fn check_fleet(
    client: &Client,
    namespace: &str,
    runner: &PodRunner,
    fleet: &str,
    per_zone: u32,
) -> Result<FleetView, String> {
    let f = Api::<MediaFleet>::namespaced(client.clone(), namespace)
        .get(fleet)
        .await
        .map_err(|e| e.to_string())?;
    let zones: Vec<String> = f.spec.zones.iter().map(|z| z.name.clone()).collect();
    let total = per_zone * zones.len() as u32;
    let node_slots = f.spec.capacity.slots;
    let nodes: Vec<MediaNode> = list::<MediaNode>(client, namespace)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|n| n.spec.fleet == fleet)
        .collect();
    let mut problems = Vec::new();
    let status = f.status.clone().unwrap_or_default();
    if status.replicas != total || status.ready_replicas != total || status.phases.ready != total {
        problems.push(format!(
            "fleet status: replicas {}, readyReplicas {}, phases.ready {} (want {total})",
            status.replicas, status.ready_replicas, status.phases.ready
        ));
    }
    for zone in &zones {
        match status.zones.iter().find(|z| &z.name == zone) {
            Some(z)
                if z.nodes == per_zone
                    && z.ready_nodes == per_zone
                    && z.slots == per_zone * node_slots => {}
            other => problems.push(format!("zone {zone} status: {other:?}")),
        }
    }
    if nodes.len() != total as usize {
        problems.push(format!("{} MediaNodes (want {total})", nodes.len()));
    }
    let pods: BTreeMap<String, Pod> = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default().labels(POD_SELECTOR))
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .map(|p| (p.name_any(), p))
        .collect();
    for node in &nodes {
        if let Err(p) = check_node(runner, namespace, node, &pods) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(FleetView { fleet: f, nodes })
    } else {
        Err(problems.join("; "))
    }
}

/// A node is Ready with the addresses its pod's loopback address and host port give.
fn check_node(
    runner: &PodRunner,
    namespace: &str,
    node: &MediaNode,
    pods: &BTreeMap<String, Pod>,
) -> Result<(), String> {
    let name = node.name_any();
    let status = node.status.clone().unwrap_or_default();
    if status.phase != NodePhase::Ready {
        return Err(format!("node {name} is {}", status.phase));
    }
    let pod_name = status.pod.clone().unwrap_or_else(|| name.clone());
    let ip = runner
        .address_in(namespace, &pod_name)
        .ok_or_else(|| format!("node {name}: the runner runs no pod {pod_name}"))?;
    let host_port = pods
        .get(&pod_name)
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|ports| {
            ports
                .iter()
                .find(|p| p.protocol.as_deref() == Some("UDP"))
                .and_then(|p| p.host_port)
        })
        .ok_or_else(|| format!("node {name}: pod {pod_name} has no UDP host port"))?;
    let want = (
        Some(format!("ws://{ip}:{host_port}/ws")),
        Some(format!("{ip}:{host_port}")),
        Some(format!("http://{ip}:{ADMIN_PORT}")),
    );
    let addresses = status.addresses.unwrap_or_default();
    let got = (addresses.signaling, addresses.media, addresses.admin);
    if got == want {
        Ok(())
    } else {
        Err(format!("node {name}: addresses {got:?}, want {want:?}"))
    }
}

/// Waits until every room of `names` in `namespace` is placed (see
/// [`fixtures::check_placed`]) with a phase in `phases`; returns them.
pub async fn wait_rooms_placed(
    client: &Client,
    namespace: &str,
    names: &[String],
    phases: &[RoomPhase],
    timeout: Duration,
) -> Result<Vec<Room>> {
    wait::until_every(
        &format!("{} rooms to be placed", names.len()),
        timeout,
        Duration::from_secs(1),
        || async {
            let rooms = list::<Room>(client, namespace)
                .await
                .map_err(|e| e.to_string())?;
            let mut placed = Vec::new();
            let mut missing = Vec::new();
            for name in names {
                match rooms.iter().find(|r| r.name_any() == *name) {
                    Some(r) => match fixtures::check_placed(r, phases) {
                        Ok(()) => placed.push(r.clone()),
                        Err(why) => missing.push(why),
                    },
                    None => missing.push(format!("{name}: not found")),
                }
            }
            if missing.is_empty() {
                Ok(placed)
            } else {
                let shown: Vec<_> = missing.iter().take(5).cloned().collect();
                Err(format!(
                    "{} of {} not placed, e.g. {}",
                    missing.len(),
                    names.len(),
                    shown.join("; ")
                ))
            }
        },
    )
    .await
}

/// Deletes what a scenario created: its objects (finalizers removed first, since no operator
/// is left to remove them), the namespace, and the cluster-scoped RBAC objects. On failure,
/// prints the namespace's Ruche objects and events first.
pub(crate) async fn clean_up(config: kube::Config, namespace: &str, failed: bool) -> Result<()> {
    let client = Client::try_from(config)?;
    if failed {
        dump(&client, namespace).await;
    }
    let mut errors = Vec::new();
    let mut note = |outcome: Result<()>| {
        if let Err(e) = outcome {
            errors.push(e.to_string());
        }
    };
    note(strip_finalizers::<Room>(&client, namespace).await);
    note(strip_finalizers::<MediaNode>(&client, namespace).await);
    note(strip_finalizers::<MediaFleet>(&client, namespace).await);
    // A bare API server has no namespace controller or garbage collector: delete the
    // objects themselves, then the namespace.
    note(delete_all::<Room>(&client, namespace).await);
    note(delete_all::<MediaNode>(&client, namespace).await);
    note(delete_all::<MediaFleet>(&client, namespace).await);
    note(delete_all::<Pod>(&client, namespace).await);
    match Api::<Namespace>::all(client.clone())
        .delete(namespace, &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(e) if crate::error::is_not_found(&e) => {}
        Err(e) => errors.push(format!("namespace: {e}")),
    }
    if let Err(e) = rbac::delete_cluster_scoped(&client, namespace).await {
        errors.push(format!("cluster-scoped RBAC: {e}"));
    }
    Error::all_or_none(&errors)
}

/// Every object of kind `K` in `namespace` (none if the namespace is gone).
async fn list<K>(client: &Client, namespace: &str) -> Result<Vec<K>>
where
    K: Namespaced,
{
    match Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
    {
        Ok(list) => Ok(list.items),
        Err(e) if crate::error::is_not_found(&e) => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes every object of kind `K` in `namespace`.
async fn delete_all<K>(client: &Client, namespace: &str) -> Result<()>
where
    K: Namespaced,
{
    match Api::<K>::namespaced(client.clone(), namespace)
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn strip_finalizers<K>(client: &Client, namespace: &str) -> Result<()>
where
    K: Namespaced,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let patch = json!({ "metadata": { "finalizers": null } });
    for object in list::<K>(client, namespace).await? {
        if object.finalizers().is_empty() {
            continue;
        }
        match api
            .patch(
                &object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if crate::error::is_not_found(&e) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Prints the namespace's fleets, nodes, rooms (a few), pods and events, for a failed
/// scenario. What cannot be listed is left out: this is a report, not a check.
pub(crate) async fn dump(client: &Client, namespace: &str) {
    let mut out = format!("-------- objects in {namespace}:\n");
    for f in list::<MediaFleet>(client, namespace)
        .await
        .unwrap_or_default()
    {
        let _ = writeln!(
            out,
            "MediaFleet {}: {}",
            f.name_any(),
            serde_json::to_string(&f.status).unwrap_or_default()
        );
    }
    for n in list::<MediaNode>(client, namespace)
        .await
        .unwrap_or_default()
    {
        let _ = writeln!(
            out,
            "MediaNode {} zone {}: {}",
            n.name_any(),
            n.spec.zone,
            serde_json::to_string(&n.status).unwrap_or_default()
        );
    }
    let rooms = list::<Room>(client, namespace).await.unwrap_or_default();
    let _ = writeln!(out, "{} Rooms; the first 20:", rooms.len());
    for r in rooms.iter().take(20) {
        let _ = writeln!(
            out,
            "Room {}: {}",
            r.name_any(),
            serde_json::to_string(&r.status).unwrap_or_default()
        );
    }
    for p in list::<Pod>(client, namespace).await.unwrap_or_default() {
        let s = p.status.clone().unwrap_or_default();
        let _ = writeln!(
            out,
            "Pod {}: phase {:?} podIP {:?} deleting {}",
            p.name_any(),
            s.phase,
            s.pod_ip,
            p.metadata.deletion_timestamp.is_some()
        );
    }
    let events = list::<Event>(client, namespace).await.unwrap_or_default();
    let _ = writeln!(out, "-------- {} events; the last 60:", events.len());
    for e in &events[events.len().saturating_sub(60)..] {
        let _ = writeln!(
            out,
            "{} {} {}/{}: {}",
            e.type_.as_deref().unwrap_or_default(),
            e.reason.as_deref().unwrap_or_default(),
            e.regarding
                .as_ref()
                .and_then(|r| r.kind.as_deref())
                .unwrap_or_default(),
            e.regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .unwrap_or_default(),
            e.note.as_deref().unwrap_or_default()
        );
    }
    eprintln!("{out}");
}
