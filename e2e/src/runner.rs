//! The pod runner: a stand-in kubelet for Ruche's pods.
//!
//! A bare API server runs no pods, and a kind cluster cannot pull Ruche's images (and, pinned
//! by the operator to zones its nodes do not have, would never schedule media pods anyway).
//! So the runner watches pods by their `app.kubernetes.io/name` label, each name mapped to a
//! [`Program`] (a local binary), in one namespace, several (more can be added while it runs:
//! [`PodRunner::watch_namespace`]) or all of them. For each new pod it:
//!
//! - allocates a loopback address 127.0.0.N (N from 10 upward, then 127.0.1.x and on, never
//!   reused in a process), kept across restarts of the pod's container;
//! - fetches the Secrets and ConfigMaps the pod refers to (with the harness's credentials),
//!   and writes its volumes to a temporary directory as a kubelet does, the projected
//!   `kube-api-access-*` volume included: a ServiceAccount token from the TokenRequest API
//!   bound to the pod (name and UID), `ca.crt` from the `kube-root-ca.crt` ConfigMap, the
//!   namespace from the downward API; a projected ConfigMap that does not exist is skipped
//!   (this API server build adds `openshift-service-ca.crt`, which nothing publishes);
//! - resolves its container's environment the Kubernetes way (`valueFrom`, `$(VAR)`
//!   expansion), with `status.hostIP` and `status.podIP` both 127.0.0.N, on top of what a
//!   kubelet gives every container: `HOSTNAME`, `HOME=/`, and, when the runner knows the API
//!   server ([`RunnerConfig::api_server`]), `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`
//!   pointing at it (the `kubernetes` Service of a bare API server has no endpoints);
//! - rewrites every `0.0.0.0:P` bind address in env and args to `127.0.0.N:Q`, Q being
//!   container port P's `hostPort` if it has one (a CNI port map), else P;
//! - makes the volumes appear at their `mountPath`: either by rewriting every path under a
//!   mount path in env and args to where the volume was written (media nodes), or, for a
//!   program that reads fixed paths (kube-rs reads the ServiceAccount's files at
//!   `/var/run/secrets/kubernetes.io/serviceaccount`), by running the process in a private
//!   mount namespace (`unshare --mount --propagation private`, as root) where each volume is
//!   bind-mounted at its mount path, read-only if the mount is;
//! - starts the program with that environment only (plus `PATH`), its output in a log file;
//! - reports the pod through the status subresource as a kubelet does: phase Running,
//!   `podIP`/`hostIP` 127.0.0.N, conditions PodScheduled, Initialized, ContainersReady and
//!   Ready, a container status with `ready`, `started` and `restartCount`; and again whenever
//!   something (a scheduler marking it Unschedulable) overwrites that;
//! - probes it: a program with [`Program::probe_periodically`] gets its readiness and liveness
//!   probes (HTTP GET or TCP, with the pod's periods and thresholds) for its whole life, Ready
//!   following the readiness probe, and its container restarted when the liveness probe
//!   fails; otherwise (media nodes: a scale run has a thousand of them) the readiness probe is
//!   awaited once and the pod stays Ready until its process exits;
//! - when the process exits, follows the pod's `restartPolicy`: Never (media pods) reports the
//!   pod Failed, or Succeeded on exit code 0; Always restarts the container after a back-off
//!   (10 s, doubling, at most 5 min), the pod Running and not ready meanwhile
//!   (CrashLoopBackOff), then one more in `restartCount`;
//! - on the pod's deletion, sends SIGTERM and SIGKILL after the grace period (the pod's
//!   `terminationGracePeriodSeconds`, or the program's own). A ReplicaSet's replacement pod
//!   is a new pod: the runner runs it like any other.
//!
//! Tests can SIGKILL a pod's process by pod name ([`PodRunner::kill`]).

mod env;
mod probe;
mod status;
mod volumes;

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod};
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt as _};
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Interval, MissedTickBehavior};

pub use env::{expand, kubelet_env, resolve_env, resolve_env_with, rewrite};
pub use probe::{ProbeAction, ProbeSpec, ProbeState};
pub use status::Desired;
pub use volumes::{
    Mount, Objects, ROOT_CA_CONFIG_MAP, VolumeFile, VolumePlan, plan_volume, token_key,
};

use crate::error::{Error, Result, is_not_found};
use crate::process::{Supervised, exit_code, tail};

/// The label that says which program runs a pod.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// The label value of media node pods.
pub const MEDIA_NODE_APP: &str = "ruche-media-node";
/// The label value of the operator Deployment's pods.
pub const OPERATOR_APP: &str = "ruche-operator";
/// The label selector of media node pods.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=ruche-media-node";
/// The label selector of the operator Deployment's pods.
pub const OPERATOR_SELECTOR: &str = "app.kubernetes.io/name=ruche-operator";
/// The first loopback host number handed out (127.0.0.10).
pub const FIRST_HOST: u32 = 10;
/// The last one (127.0.255.254): room for the thousand nodes of a scale run.
const LAST_HOST: u32 = 0xFFFE;
/// How long a pod's Secrets may take to appear before the runner gives up on it.
pub const SECRET_WAIT: Duration = Duration::from_secs(120);
/// Between SIGTERM (pod deleted) and SIGKILL, for media node pods.
pub const TERMINATION_GRACE: Duration = Duration::from_secs(5);
/// How long the runner waits for a new process's readiness probe before reporting it, for
/// programs probed once.
pub const READINESS_WAIT: Duration = Duration::from_secs(20);
/// The first restart back-off of a container; it doubles at each restart.
pub const RESTART_BACKOFF: Duration = Duration::from_secs(10);
/// The longest restart back-off.
pub const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts after the first back-off again.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// Kubernetes' default `terminationGracePeriodSeconds`.
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// The fewest time between two status writes for one pod.
const PATCH_SPACING: Duration = Duration::from_secs(1);

/// Run in a pod's private mount namespace: bind-mounts `n` (source, target, `ro`|`rw`)
/// triples, then executes the rest of its arguments (same pid: signals reach the program).
const MOUNT_SCRIPT: &str = r#"set -e
n=$1; shift
while [ "$n" -gt 0 ]; do
  mount --bind "$1" "$2"
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2"; fi
  shift 3; n=$((n - 1))
done
exec "$@""#;

static NEXT_HOST: AtomicU32 = AtomicU32::new(FIRST_HOST);

/// What the runner runs for the pods of one `app.kubernetes.io/name`.
#[derive(Clone, Debug)]
pub struct Program {
    /// The `app.kubernetes.io/name` of its pods.
    pub app: String,
    /// The binary started for them (in place of the image's entrypoint, with the container's
    /// args).
    pub binary: PathBuf,
    /// The container to run, by name; the pod's first container when absent or not found.
    pub container: Option<String>,
    /// Bind-mount the volumes at their mount paths in a private mount namespace (needs root),
    /// rather than rewriting paths in env and args.
    pub mount_volumes: bool,
    /// Probe readiness and liveness for the process's whole life, rather than awaiting the
    /// readiness probe once.
    pub probe_periodically: bool,
    /// Between SIGTERM and SIGKILL when the pod is deleted; the pod's own grace period when
    /// absent.
    pub termination_grace: Option<Duration>,
}

impl Program {
    /// Media node pods (or the admin API stand-in, for scale runs): paths rewritten, the
    /// readiness probe awaited once, SIGKILL [`TERMINATION_GRACE`] after SIGTERM.
    pub fn media_node(binary: &Path) -> Self {
        Self {
            app: MEDIA_NODE_APP.into(),
            binary: binary.to_path_buf(),
            container: Some("media-node".into()),
            mount_volumes: false,
            probe_periodically: false,
            termination_grace: Some(TERMINATION_GRACE),
        }
    }

    /// The operator Deployment's pods: `ruche-operator` with the in-cluster configuration
    /// kube-rs reads (its volumes at their mount paths), probed as a kubelet does, with the
    /// pod's grace period.
    pub fn operator(binary: &Path) -> Self {
        Self {
            app: OPERATOR_APP.into(),
            binary: binary.to_path_buf(),
            container: Some("operator".into()),
            mount_volumes: true,
            probe_periodically: true,
            termination_grace: None,
        }
    }
}

/// The API server pods are told about (`KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiServer {
    /// Host name or address (an IPv6 address without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ApiServer {
    /// The API server a client configuration talks to (port 443 if its URL names none).
    pub fn of(config: &kube::Config) -> Option<Self> {
        let url = &config.cluster_url;
        let host = url.host()?.trim_start_matches('[').trim_end_matches(']');
        Some(Self {
            host: host.to_string(),
            port: url.port_u16().unwrap_or(443),
        })
    }
}

/// Which namespaces the runner watches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scope {
    /// These (more can be added with [`PodRunner::watch_namespace`]).
    Namespaces(Vec<String>),
    /// Every namespace.
    All,
}

/// What a runner runs, where.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// The namespaces watched.
    pub scope: Scope,
    /// The programs, one per `app.kubernetes.io/name`.
    pub programs: Vec<Program>,
    /// Where pods' files and logs go.
    pub dir: PathBuf,
    /// The API server given to pods, if any.
    pub api_server: Option<ApiServer>,
}

/// One process the runner started (a restarted container is a new process).
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    pub namespace: String,
    /// The pod's `app.kubernetes.io/name`.
    pub app: String,
    /// Pod UID.
    pub uid: String,
    /// The pod's loopback address (its pod IP and host IP).
    pub ip: Ipv4Addr,
    /// Process id.
    pub pid: u32,
    /// How many times the pod's container had been restarted when this process started.
    pub restart: u32,
    /// The command line, environment first.
    pub command: String,
    /// Where its output goes.
    pub log: PathBuf,
    /// How it ended, if it has.
    pub exit: Option<String>,
}

struct Record {
    info: ProcessInfo,
    process: Arc<Supervised>,
}

impl Record {
    fn snapshot(&self) -> ProcessInfo {
        let mut info = self.info.clone();
        info.exit = self.process.exit_status().map(|s| s.to_string());
        info
    }
}

struct Shared {
    client: Client,
    dir: PathBuf,
    programs: Vec<Program>,
    api_server: Option<ApiServer>,
    records: Mutex<Vec<Record>>,
}

impl Shared {
    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The label selector of every program's pods.
fn selector(programs: &[Program]) -> String {
    match programs {
        [one] => format!("{NAME_LABEL}={}", one.app),
        many => format!(
            "{NAME_LABEL} in ({})",
            many.iter()
                .map(|p| p.app.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// The program that runs `pod`, by its `app.kubernetes.io/name`.
fn program_for<'a>(programs: &'a [Program], pod: &Pod) -> Option<&'a Program> {
    let app = pod.labels().get(NAME_LABEL)?;
    programs.iter().find(|p| p.app == *app)
}

/// The runner. Dropping it does not stop the processes: call [`PodRunner::shutdown`].
pub struct PodRunner {
    shared: Arc<Shared>,
    all: bool,
    watches: Mutex<Vec<(String, JoinHandle<()>)>>,
}

impl PodRunner {
    /// Starts watching the pods of `config`'s programs in its scope.
    pub fn with_config(client: Client, config: RunnerConfig) -> Self {
        let shared = Arc::new(Shared {
            client,
            dir: config.dir,
            programs: config.programs,
            api_server: config.api_server,
            records: Mutex::new(Vec::new()),
        });
        let runner = Self {
            shared,
            all: config.scope == Scope::All,
            watches: Mutex::new(Vec::new()),
        };
        match config.scope {
            Scope::All => {
                let api = Api::all(runner.shared.client.clone());
                let task = tokio::spawn(watch_pods(runner.shared.clone(), api));
                runner.watches().push((String::new(), task));
            }
            Scope::Namespaces(namespaces) => {
                for namespace in namespaces {
                    runner.watch_namespace(&namespace);
                }
            }
        }
        runner
    }

    fn watches(&self) -> std::sync::MutexGuard<'_, Vec<(String, JoinHandle<()>)>> {
        self.watches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the pods of `namespace` too (nothing to do if the runner watches every namespace
    /// or this one already).
    pub fn watch_namespace(&self, namespace: &str) {
        if self.all {
            return;
        }
        let mut watches = self.watches();
        if watches.iter().any(|(ns, _)| ns == namespace) {
            return;
        }
        let api = Api::namespaced(self.shared.client.clone(), namespace);
        let task = tokio::spawn(watch_pods(self.shared.clone(), api));
        watches.push((namespace.to_string(), task));
    }

    /// Every process started so far, oldest first.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.shared.records().iter().map(Record::snapshot).collect()
    }

    /// The loopback address of the latest process of pod `pod` in `namespace`.
    pub fn address_in(&self, namespace: &str, pod: &str) -> Option<Ipv4Addr> {
        self.shared
            .records()
            .iter()
            .rev()
            .find(|r| r.info.pod == pod && r.info.namespace == namespace)
            .map(|r| r.info.ip)
    }

    /// The loopback address of the latest process of a pod named `pod`, in any namespace the
    /// runner serves (see [`PodRunner::address_in`] when names repeat across namespaces).
    pub fn address_of(&self, pod: &str) -> Option<Ipv4Addr> {
        self.shared
            .records()
            .iter()
            .rev()
            .find(|r| r.info.pod == pod)
            .map(|r| r.info.ip)
    }

    /// SIGKILLs the running process of `pod`, as a crash would. Returns what was killed.
    pub fn kill(&self, pod: &str) -> Result<ProcessInfo> {
        self.signal(pod, Signal::SIGKILL)
    }

    /// Sends `signal` to the running process of `pod` (SIGSTOP hangs it, SIGCONT resumes
    /// it). Returns what was signalled.
    pub fn signal(&self, pod: &str, signal: Signal) -> Result<ProcessInfo> {
        let records = self.shared.records();
        let record = records
            .iter()
            .rev()
            .find(|r| r.info.pod == pod && r.process.exit_status().is_none())
            .ok_or_else(|| Error::Setup(format!("no running process for pod {pod}")))?;
        if !record.process.signal(signal) {
            return Err(Error::Setup(format!(
                "pod {pod}: process {} had already exited",
                record.info.pid
            )));
        }
        eprintln!(
            "e2e runner: {signal} sent to pod {pod} (pid {}, {})",
            record.info.pid, record.info.ip
        );
        Ok(record.snapshot())
    }

    /// Stops watching and SIGKILLs every process. Synchronous, for clean-up paths.
    pub fn shutdown(&self) {
        for (_, task) in self.watches().iter() {
            task.abort();
        }
        for r in self.shared.records().iter() {
            r.process.kill();
        }
    }

    /// A report of every process, with the last `lines` lines of each log.
    pub fn report(&self, lines: usize) -> String {
        self.report_where(|_| true, lines)
    }

    /// [`PodRunner::report`] for the pods of one `app.kubernetes.io/name`.
    pub fn report_app(&self, app: &str, lines: usize) -> String {
        self.report_where(|p| p.app == app, lines)
    }

    fn report_where(&self, keep: impl Fn(&ProcessInfo) -> bool, lines: usize) -> String {
        let mut out = String::new();
        for p in self.processes().into_iter().filter(|p| keep(p)) {
            let _ = write!(
                out,
                "--- {} pod {}/{} ({}) pid {} restart {} exit {}\n    command: {}\n    log: {}\n",
                p.app,
                p.namespace,
                p.pod,
                p.ip,
                p.pid,
                p.restart,
                p.exit.as_deref().unwrap_or("(running)"),
                p.command,
                p.log.display()
            );
            let t = tail(&p.log, lines);
            if !t.is_empty() {
                out.push_str(&t);
                out.push('\n');
            }
        }
        out
    }
}

/// Watches the pods `api` reaches; starts a supervising task per new pod and feeds it the
/// pod's updates (`None` once it is deleted).
async fn watch_pods(shared: Arc<Shared>, api: Api<Pod>) {
    let config = watcher::Config::default().labels(&selector(&shared.programs));
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut pods: std::collections::HashMap<String, watch::Sender<Option<Arc<Pod>>>> =
        std::collections::HashMap::new();
    let mut tasks = JoinSet::new();
    let mut listing: Option<std::collections::HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(std::collections::HashSet::new()),
            Ok(Event::InitApply(pod)) => {
                if let Some(seen) = listing.as_mut() {
                    seen.insert(pod.uid().unwrap_or_default());
                }
                on_pod(&shared, &mut pods, &mut tasks, pod);
            }
            Ok(Event::InitDone) => {
                // Pods deleted while the watch was down never get a Delete event.
                if let Some(seen) = listing.take() {
                    pods.retain(|uid, tx| {
                        let keep = seen.contains(uid);
                        if !keep {
                            tx.send_replace(None);
                        }
                        keep
                    });
                }
            }
            Ok(Event::Apply(pod)) => on_pod(&shared, &mut pods, &mut tasks, pod),
            Ok(Event::Delete(pod)) => {
                if let Some(tx) = pods.remove(&pod.uid().unwrap_or_default()) {
                    tx.send_replace(None);
                }
            }
            Err(e) => eprintln!("e2e runner: watching pods: {e} (retrying)"),
        }
        while tasks.try_join_next().is_some() {}
    }
}

fn on_pod(
    shared: &Arc<Shared>,
    pods: &mut std::collections::HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
    tasks: &mut JoinSet<()>,
    pod: Pod,
) {
    let uid = pod.uid().unwrap_or_default();
    let pod = Arc::new(pod);
    if let Some(tx) = pods.get(&uid) {
        tx.send_replace(Some(pod));
        return;
    }
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Failed" | "Succeeded")
    );
    if pod.metadata.deletion_timestamp.is_some() || terminal || uid.is_empty() {
        return;
    }
    let Some(program) = program_for(&shared.programs, &pod).cloned() else {
        return;
    };
    let (tx, rx) = watch::channel(Some(pod.clone()));
    pods.insert(uid, tx);
    tasks.spawn(run_pod(shared.clone(), program, pod, rx));
}

async fn run_pod(
    shared: Arc<Shared>,
    program: Program,
    pod: Arc<Pod>,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
) {
    let name = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    match Worker::start(shared, program, pod, &updates).await {
        Ok(Some(worker)) => worker.supervise(&mut updates).await,
        Ok(None) => eprintln!("e2e runner: pod {name} was deleted before it started"),
        Err(e) => eprintln!("e2e runner: ERROR: pod {name} not started: {e}"),
    }
}

/// The container `program` runs: the one it names, else the pod's first.
fn program_container<'a>(pod: &'a Pod, program: &Program) -> Option<&'a Container> {
    let containers = &pod.spec.as_ref()?.containers;
    program
        .container
        .as_ref()
        .and_then(|name| containers.iter().find(|c| c.name == *name))
        .or_else(|| containers.first())
}

/// A pod's process, ready to start: what [`prepare`] makes of a pod.
pub struct Prepared {
    /// The pod's loopback address (its pod IP and host IP).
    pub ip: Ipv4Addr,
    /// The command, with its environment and working directory.
    pub command: tokio::process::Command,
    /// The command line as printed, environment first.
    pub printed: String,
    /// The environment given to the process.
    pub env: Vec<(String, String)>,
    /// Where the process's output goes.
    pub log: PathBuf,
    /// The container's name.
    pub container: String,
    /// Its image.
    pub image: String,
    /// Where its readiness probe (HTTP GET) goes, if it has one: address and path.
    pub readiness: Option<(SocketAddr, String)>,
    /// Its readiness probe.
    pub readiness_probe: Option<ProbeSpec>,
    /// Its liveness probe.
    pub liveness_probe: Option<ProbeSpec>,
    /// Its volumes: where they were written, and where they are mounted.
    pub mounts: Vec<Mount>,
    /// Whether the process runs in a private mount namespace with its volumes at their mount
    /// paths (see [`make_mount_points`]).
    pub isolated: bool,
    /// What the runner left out or cannot do as a kubelet would, each with why.
    pub notes: Vec<String>,
}

/// Turns a media node pod into a process running `binary`: allocates its loopback address,
/// writes its volumes under `dir/pods/<pod>-<uid>/`, and resolves its environment. `objects`
/// holds the Secrets and ConfigMaps the pod refers to.
pub fn prepare(pod: &Pod, objects: &Objects, dir: &Path, binary: &Path) -> Result<Prepared> {
    prepare_with(pod, objects, dir, &Program::media_node(binary), None, None)
}

/// Turns a pod into a process running `program`, at `ip` (allocated when `None`), told about
/// `api_server`. `objects` holds what the pod refers to (Secrets, ConfigMaps, tokens).
pub fn prepare_with(
    pod: &Pod,
    objects: &Objects,
    dir: &Path,
    program: &Program,
    ip: Option<Ipv4Addr>,
    api_server: Option<&ApiServer>,
) -> Result<Prepared> {
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let container = program_container(pod, program)
        .ok_or_else(|| Error::Setup(format!("pod {name} has no container")))?;
    let ports = container.ports.clone().unwrap_or_default();
    let ip = match ip {
        Some(ip) => ip,
        None => allocate_address(&ports)?,
    };
    let short_uid: String = uid.chars().take(8).collect();
    let pod_dir = dir.join("pods").join(format!("{name}-{short_uid}"));
    std::fs::create_dir_all(&pod_dir)
        .map_err(|e| Error::io(format!("cannot create {}", pod_dir.display()), e))?;
    let (mounts, mut notes) =
        volumes::write_volumes(pod, container, objects, &pod_dir.join("volumes"), ip)?;
    // In a private mount namespace the paths are real; otherwise they point at the files.
    let rewrites: Vec<(String, PathBuf)> = if program.mount_volumes {
        Vec::new()
    } else {
        mounts
            .iter()
            .map(|m| (m.mount_path.clone(), m.local.clone()))
            .collect()
    };
    let base = kubelet_env(pod, api_server);
    let env = resolve_env_with(&base, pod, container, ip, &ports, &rewrites, objects)
        .map_err(|e| Error::Setup(format!("pod {name}: {e}")))?;
    let vars: std::collections::HashMap<String, String> = env.iter().cloned().collect();
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| rewrite(&expand(a, &vars), ip, &ports, &rewrites))
        .collect();
    let binary = &program.binary;
    let isolated = program.mount_volumes && !mounts.is_empty();
    let (mut command, isolation) = if isolated {
        isolated_command(binary, &args, &mounts)
    } else {
        let mut command = tokio::process::Command::new(binary);
        command.args(&args);
        (command, String::new())
    };
    command.env_clear().envs(env.iter().cloned());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.current_dir(&pod_dir);
    let printed = format!(
        "{isolation}{} {} {}",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        binary.display(),
        args.join(" ")
    );
    let mut probe = |kind: &str, probe: Option<&k8s_openapi::api::core::v1::Probe>| {
        probe.and_then(|p| match ProbeSpec::parse(p, ip, &ports) {
            Ok(spec) => Some(spec),
            Err(why) => {
                notes.push(format!("{kind} probe ignored: {why}"));
                None
            }
        })
    };
    let readiness_probe = probe("readiness", container.readiness_probe.as_ref());
    let liveness_probe = probe("liveness", container.liveness_probe.as_ref());
    let readiness = readiness_probe.as_ref().and_then(|p| match &p.action {
        ProbeAction::HttpGet { addr, path } => Some((*addr, path.clone())),
        ProbeAction::TcpSocket { .. } => None,
    });
    Ok(Prepared {
        ip,
        command,
        printed,
        env,
        log: pod_dir.join(format!("{}.log", container.name)),
        container: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        readiness,
        readiness_probe,
        liveness_probe,
        mounts,
        isolated,
        notes,
    })
}

/// Before a [`Prepared::isolated`] process starts: checks that the runner may make a mount
/// namespace (root only) and creates the mount points on the host (a bind mount needs one).
pub fn make_mount_points(prepared: &Prepared) -> Result<()> {
    if !prepared.isolated {
        return Ok(());
    }
    let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !root {
        return Err(Error::Setup(
            "a pod whose volumes must appear at their mount paths runs in a private mount \
             namespace, which needs root"
                .into(),
        ));
    }
    for m in &prepared.mounts {
        mount_point(&m.local, Path::new(&m.mount_path))?;
    }
    Ok(())
}

/// `unshare --mount --propagation private -- sh -c MOUNT_SCRIPT ...`: the program in a private
/// mount namespace with each volume bind-mounted at its mount path (parents first). Returns
/// the command and how the printed command line says so.
fn isolated_command(
    binary: &Path,
    args: &[String],
    mounts: &[Mount],
) -> (tokio::process::Command, String) {
    let mut command = tokio::process::Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
    command
        .arg(MOUNT_SCRIPT)
        .arg("sh")
        .arg(mounts.len().to_string());
    let mut shown = Vec::new();
    // `mounts` is longest mount path first: a parent must be mounted before what it holds.
    for m in mounts.iter().rev() {
        command
            .arg(&m.local)
            .arg(&m.mount_path)
            .arg(if m.read_only { "ro" } else { "rw" });
        shown.push(format!(
            "{} on {}{}",
            m.local.display(),
            m.mount_path,
            if m.read_only { " (ro)" } else { "" }
        ));
    }
    command.arg(binary).args(args);
    let shown = format!("[private mount namespace: {}] ", shown.join(", "));
    (command, shown)
}

/// Creates the mount point of `local` at `target` on the host: a directory, or an empty file
/// for a file (a `subPath` mount).
fn mount_point(local: &Path, target: &Path) -> Result<()> {
    if local.is_dir() {
        return std::fs::create_dir_all(target)
            .map_err(|e| Error::io(format!("cannot create mount point {}", target.display()), e));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    if !target.exists() {
        std::fs::File::create(target)
            .map_err(|e| Error::io(format!("cannot create mount point {}", target.display()), e))?;
    }
    Ok(())
}

/// Waits, as a kubelet's readiness probe would, until the probe passes (or the process exits,
/// or `within` passes: the pod is then reported anyway, with a warning).
async fn probe_ready(
    name: &str,
    process: &Supervised,
    probe: Option<&ProbeSpec>,
    within: Duration,
) {
    let Some(probe) = probe else {
        return;
    };
    let start = Instant::now();
    while start.elapsed() < within {
        if process.exit_status().is_some() {
            return;
        }
        if probe.check().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "e2e runner: WARNING: pod {name}: readiness probe {} did not pass within {within:?}; \
         reporting the pod Ready anyway",
        probe.target()
    );
}

/// A probe run periodically, with its verdict so far and its timer.
struct Periodic {
    spec: ProbeSpec,
    state: ProbeState,
    timer: Interval,
}

impl Periodic {
    fn new(spec: ProbeSpec, state: ProbeState) -> Self {
        let first = tokio::time::Instant::now() + spec.initial_delay;
        let mut timer = tokio::time::interval_at(first, spec.period);
        timer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Self { spec, state, timer }
    }
}

/// Completes at the probe's next period; never if there is no probe.
async fn tick(probe: &mut Option<Periodic>) {
    match probe {
        Some(p) => {
            p.timer.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Completes when the process ends; never if there is none.
async fn exited(rx: &mut Option<watch::Receiver<Option<ExitStatus>>>) -> Option<ExitStatus> {
    let Some(rx) = rx else {
        return std::future::pending().await;
    };
    // A reaper gone without a word (`Err`) counts as a kill.
    let ended: Result<Option<ExitStatus>, _> =
        rx.wait_for(Option::is_some).await.map(|status| *status);
    ended.unwrap_or_default()
}

/// Completes at `at`; never if `None`.
async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// One pod, played as a kubelet plays it: its process (restarted as its restart policy
/// says), probes and status.
struct Worker {
    shared: Arc<Shared>,
    program: Program,
    /// The pod as last seen.
    pod: Arc<Pod>,
    /// `namespace/name`, for messages.
    name: String,
    api: Api<Pod>,
    objects: Objects,
    ip: Ipv4Addr,
    process: Option<Arc<Supervised>>,
    exit: Option<watch::Receiver<Option<ExitStatus>>>,
    launched: Instant,
    launches: u32,
    desired: Desired,
    readiness_spec: Option<ProbeSpec>,
    readiness: Option<Periodic>,
    liveness: Option<Periodic>,
    backoff: Duration,
    restart_at: Option<tokio::time::Instant>,
    last_patch: Option<Instant>,
}

impl Worker {
    /// Fetches what the pod needs and starts its process. `None` if the pod was deleted
    /// while its Secrets were awaited.
    async fn start(
        shared: Arc<Shared>,
        program: Program,
        pod: Arc<Pod>,
        updates: &watch::Receiver<Option<Arc<Pod>>>,
    ) -> Result<Option<Self>> {
        let namespace = pod.namespace().unwrap_or_default();
        let name = format!("{namespace}/{}", pod.name_any());
        let container = program_container(&pod, &program)
            .ok_or_else(|| Error::Setup(format!("pod {name} has no container")))?;
        let Some(objects) = volumes::fetch(&shared.client, &pod, container, updates).await? else {
            return Ok(None);
        };
        let ip = allocate_address(&container.ports.clone().unwrap_or_default())?;
        let desired = Desired::starting(
            ip,
            &container.name,
            container.image.as_deref().unwrap_or_default(),
        );
        let api = Api::namespaced(shared.client.clone(), &namespace);
        let mut worker = Self {
            shared,
            program,
            pod,
            name,
            api,
            objects,
            ip,
            process: None,
            exit: None,
            launched: Instant::now(),
            launches: 0,
            desired,
            readiness_spec: None,
            readiness: None,
            liveness: None,
            backoff: RESTART_BACKOFF,
            restart_at: None,
            last_patch: None,
        };
        worker.launch()?;
        worker.after_launch().await;
        Ok(Some(worker))
    }

    /// Starts the pod's process (again).
    fn launch(&mut self) -> Result<()> {
        let prepared = prepare_with(
            &self.pod,
            &self.objects,
            &self.shared.dir,
            &self.program,
            Some(self.ip),
            self.shared.api_server.as_ref(),
        )?;
        if self.launches == 0 {
            for note in &prepared.notes {
                eprintln!("e2e runner: pod {}: {note}", self.name);
            }
        } else if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(&prepared.log) {
            // The restarted container's output follows its predecessor's in the same file.
            let _ = writeln!(
                log,
                "-------- e2e runner: container restarted ({})",
                self.launches
            );
        }
        make_mount_points(&prepared)?;
        let process = Arc::new(Supervised::spawn(prepared.command, &prepared.log)?);
        eprintln!(
            "e2e runner: pod {} runs as {}, pid {}{}\n    command: {}\n    log: {}",
            self.name,
            self.ip,
            process.pid(),
            if self.launches > 0 {
                format!(" (restart {})", self.launches)
            } else {
                String::new()
            },
            prepared.printed,
            prepared.log.display()
        );
        self.shared.records().push(Record {
            info: ProcessInfo {
                pod: self.pod.name_any(),
                namespace: self.pod.namespace().unwrap_or_default(),
                app: self.program.app.clone(),
                uid: self.pod.uid().unwrap_or_default(),
                ip: self.ip,
                pid: process.pid(),
                restart: self.launches,
                command: prepared.printed,
                log: prepared.log,
                exit: None,
            },
            process: process.clone(),
        });
        self.exit = Some(process.watch_exit());
        self.process = Some(process);
        self.launched = Instant::now();
        self.launches += 1;
        self.readiness_spec.clone_from(&prepared.readiness_probe);
        if self.program.probe_periodically {
            self.readiness = prepared
                .readiness_probe
                .map(|spec| Periodic::new(spec, ProbeState::readiness()));
            self.liveness = prepared
                .liveness_probe
                .map(|spec| Periodic::new(spec, ProbeState::liveness()));
        }
        Ok(())
    }

    /// Readiness right after a launch: awaited once, or left to the periodic probe (a
    /// container without a readiness probe is ready once it runs).
    async fn after_launch(&mut self) {
        if self.program.probe_periodically {
            let ready = self.readiness.is_none();
            self.desired = self.desired.clone().with_ready(ready);
        } else if let Some(process) = self.process.clone() {
            probe_ready(
                &self.name,
                &process,
                self.readiness_spec.as_ref(),
                READINESS_WAIT,
            )
            .await;
            self.desired = self.desired.clone().with_ready(true);
        }
    }

    /// Keeps the pod's status true to its process until the pod is deleted.
    async fn supervise(mut self, updates: &mut watch::Receiver<Option<Arc<Pod>>>) {
        self.patch().await;
        loop {
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The runner stopped.
                        if let Some(process) = &self.process {
                            process.kill();
                        }
                        return;
                    }
                    let current = updates.borrow_and_update().clone();
                    match current {
                        Some(p) if p.metadata.deletion_timestamp.is_none() => {
                            if !self.desired.holds(&p) {
                                eprintln!(
                                    "e2e runner: pod {}: status was overwritten ({}), re-asserting",
                                    self.name,
                                    describe_status(&p)
                                );
                                self.patch().await;
                            }
                            self.pod = p;
                        }
                        _ => {
                            self.stop().await;
                            return;
                        }
                    }
                }
                status = exited(&mut self.exit) => self.on_exit(status).await,
                () = wait_until(self.restart_at) => self.restart().await,
                () = tick(&mut self.readiness) => self.probe_readiness().await,
                () = tick(&mut self.liveness) => self.probe_liveness().await,
            }
        }
    }

    /// The grace period between SIGTERM and SIGKILL.
    fn grace(&self) -> Duration {
        self.program.termination_grace.unwrap_or_else(|| {
            let seconds = self.pod.metadata.deletion_grace_period_seconds.or_else(|| {
                self.pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.termination_grace_period_seconds)
            });
            seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(DEFAULT_GRACE, Duration::from_secs)
        })
    }

    /// The pod was deleted: SIGTERM, SIGKILL after the grace period.
    async fn stop(&mut self) {
        self.restart_at = None;
        let Some(process) = self.process.take() else {
            eprintln!("e2e runner: pod {} deleted (no process running)", self.name);
            return;
        };
        let grace = self.grace();
        eprintln!(
            "e2e runner: pod {} deleted: SIGTERM to pid {} (SIGKILL after {grace:?})",
            self.name,
            process.pid()
        );
        let status = process.terminate(grace).await;
        eprintln!(
            "e2e runner: pod {}: process ended ({})",
            self.name,
            status.map_or_else(|| "unknown".to_string(), |s| s.to_string())
        );
    }

    /// The process ended: report it, and restart it if the pod's restart policy says so.
    async fn on_exit(&mut self, status: Option<ExitStatus>) {
        let code = status.map_or(137, exit_code);
        let pid = self.process.take().map_or(0, |p| p.pid());
        self.exit = None;
        self.readiness = None;
        self.liveness = None;
        let policy = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.clone())
            .unwrap_or_else(|| "Always".into());
        let restart = match policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => true,
        };
        if restart {
            if self.launched.elapsed() >= BACKOFF_RESET {
                self.backoff = RESTART_BACKOFF;
            }
            let delay = self.backoff;
            self.backoff = (self.backoff * 2).min(MAX_RESTART_BACKOFF);
            eprintln!(
                "e2e runner: pod {}: process {pid} exited with code {code}; restart in {delay:?} \
                 (restartPolicy {policy})",
                self.name
            );
            self.desired = self.desired.clone().backing_off(code, delay);
            self.restart_at = Some(tokio::time::Instant::now() + delay);
        } else {
            eprintln!(
                "e2e runner: pod {}: process {pid} exited with code {code}",
                self.name
            );
            self.desired = self.desired.clone().terminated(code);
        }
        self.patch().await;
    }

    /// The back-off is over: start the container again.
    async fn restart(&mut self) {
        self.restart_at = None;
        match self.launch() {
            Ok(()) => {
                self.desired = self.desired.clone().restarted();
                self.after_launch().await;
            }
            Err(e) => {
                let delay = self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_RESTART_BACKOFF);
                eprintln!(
                    "e2e runner: ERROR: pod {}: restart failed: {e}; trying again in {delay:?}",
                    self.name
                );
                self.restart_at = Some(tokio::time::Instant::now() + delay);
            }
        }
        self.patch().await;
    }

    async fn probe_readiness(&mut self) {
        let Some(spec) = self.readiness.as_ref().map(|p| p.spec.clone()) else {
            return;
        };
        let result = spec.check().await;
        let Some(probe) = self.readiness.as_mut() else {
            return;
        };
        if let Some(ready) = probe.state.record(&spec, result.is_ok()) {
            eprintln!(
                "e2e runner: pod {}: {} (readiness probe {}{})",
                self.name,
                if ready { "ready" } else { "not ready" },
                spec.target(),
                result.err().map(|e| format!(": {e}")).unwrap_or_default()
            );
            self.desired = self.desired.clone().with_ready(ready);
            self.patch().await;
        }
    }

    async fn probe_liveness(&mut self) {
        let Some(spec) = self.liveness.as_ref().map(|p| p.spec.clone()) else {
            return;
        };
        let result = spec.check().await;
        let Some(probe) = self.liveness.as_mut() else {
            return;
        };
        if probe.state.record(&spec, result.is_ok()) == Some(false) {
            let grace = self.grace();
            eprintln!(
                "e2e runner: pod {}: liveness probe {} failed {} times ({}): killing the \
                 container (SIGTERM, SIGKILL after {grace:?})",
                self.name,
                spec.target(),
                spec.failure_threshold,
                result.err().unwrap_or_default()
            );
            self.liveness = None;
            if let Some(process) = self.process.clone() {
                // The exit is handled as any other: the restart policy decides.
                tokio::spawn(async move {
                    process.terminate(grace).await;
                });
            }
        }
    }

    /// Writes the desired status through the status subresource, a few times if the API
    /// fails. The pod's UID in the patch makes it fail rather than touch a new pod of the same
    /// name.
    async fn patch(&mut self) {
        if let Some(at) = self.last_patch {
            let since = at.elapsed();
            if since < PATCH_SPACING {
                tokio::time::sleep(PATCH_SPACING.saturating_sub(since)).await;
            }
        }
        let name = self.pod.name_any();
        let uid = self.pod.uid().unwrap_or_default();
        let body = json!({ "metadata": { "uid": uid }, "status": self.desired.status() });
        for attempt in 1..=5 {
            self.last_patch = Some(Instant::now());
            match self
                .api
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&body))
                .await
            {
                Ok(_) => return,
                Err(e) if is_not_found(&e) => return,
                Err(e) => {
                    eprintln!(
                        "e2e runner: pod {}: status write {attempt}/5 failed: {e}",
                        self.name
                    );
                    if matches!(&e, kube::Error::Api(s) if s.code == 409 || s.code == 422) {
                        // A new pod of the same name, or a status the API refuses: retrying
                        // the same write will not help.
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

fn describe_status(pod: &Pod) -> String {
    let Some(s) = &pod.status else {
        return "no status".into();
    };
    let conditions: Vec<String> = s
        .conditions
        .iter()
        .flatten()
        .map(|c| format!("{}={}", c.type_, c.status))
        .collect();
    format!(
        "phase {:?}, podIP {:?}, conditions [{}]",
        s.phase,
        s.pod_ip,
        conditions.join(", ")
    )
}

/// The loopback address of host number `n`: 127.0.0.10 upward, past 127.0.0.254 into
/// 127.0.1.x and on (all of 127/8 reaches the loopback interface), skipping .0 and .255.
fn host_address(n: u32) -> Option<Ipv4Addr> {
    let [_, _, high, low] = n.to_be_bytes();
    (n <= LAST_HOST && low != 0 && low != 255).then(|| Ipv4Addr::new(127, 0, high, low))
}

/// The next loopback address on which every port of the container can be bound.
fn allocate_address(ports: &[ContainerPort]) -> Result<Ipv4Addr> {
    loop {
        let n = NEXT_HOST.fetch_add(1, Ordering::SeqCst);
        if n > LAST_HOST {
            return Err(Error::Setup(
                "out of loopback addresses 127.0.0.10-127.0.255.254 for pods".into(),
            ));
        }
        let Some(ip) = host_address(n) else {
            continue;
        };
        let free = ports.iter().all(|p| {
            let port = exposed_port(p);
            if p.protocol.as_deref() == Some("UDP") {
                UdpSocket::bind((ip, port)).is_ok()
            } else {
                TcpListener::bind((ip, port)).is_ok()
            }
        });
        if free {
            return Ok(ip);
        }
        eprintln!("e2e runner: {ip} has a port in use, trying the next address");
    }
}

/// The port a container port is reached at: its `hostPort`, else its `containerPort`.
fn exposed_port(p: &ContainerPort) -> u16 {
    let port = p.host_port.filter(|h| *h > 0).unwrap_or(p.container_port);
    u16::try_from(port).unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn host_numbers_map_to_loopback_addresses_past_254() {
        assert_eq!(host_address(10), Some(Ipv4Addr::new(127, 0, 0, 10)));
        assert_eq!(host_address(254), Some(Ipv4Addr::new(127, 0, 0, 254)));
        assert_eq!(host_address(255), None);
        assert_eq!(host_address(256), None);
        assert_eq!(host_address(257), Some(Ipv4Addr::new(127, 0, 1, 1)));
        assert_eq!(host_address(1010), Some(Ipv4Addr::new(127, 0, 3, 242)));
        assert_eq!(
            host_address(LAST_HOST),
            Some(Ipv4Addr::new(127, 0, 255, 254))
        );
        assert_eq!(host_address(LAST_HOST + 1), None);
    }

    #[test]
    fn one_watch_selects_every_programs_pods() {
        let media = Program::media_node(Path::new("/bin/m"));
        let operator = Program::operator(Path::new("/bin/o"));
        assert_eq!(selector(std::slice::from_ref(&media)), POD_SELECTOR);
        assert_eq!(selector(std::slice::from_ref(&operator)), OPERATOR_SELECTOR);
        let both = [media, operator];
        assert_eq!(
            selector(&both),
            "app.kubernetes.io/name in (ruche-media-node,ruche-operator)"
        );
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "p", "labels": { "app.kubernetes.io/name": "ruche-operator" } }
        }))
        .unwrap();
        assert_eq!(
            program_for(&both, &pod).map(|p| p.app.as_str()),
            Some("ruche-operator")
        );
        let other: Pod = serde_json::from_value(json!({
            "metadata": { "name": "p", "labels": { "app.kubernetes.io/name": "other" } }
        }))
        .unwrap();
        assert!(program_for(&both, &other).is_none());
    }

    #[test]
    fn the_api_server_comes_from_the_client_configuration() {
        let config = kube::Config::new("https://127.0.0.1:28689".parse().unwrap());
        assert_eq!(
            ApiServer::of(&config),
            Some(ApiServer {
                host: "127.0.0.1".into(),
                port: 28689
            })
        );
        let config = kube::Config::new("https://[::1]/".parse().unwrap());
        assert_eq!(
            ApiServer::of(&config),
            Some(ApiServer {
                host: "::1".into(),
                port: 443
            })
        );
    }

    /// The operator Deployment's pod as the controller-manager and admission leave it.
    fn operator_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {
                "name": "ruche-operator-67996875c4-g6v76",
                "namespace": "ruche-system",
                "uid": "536e7895-35d6-407f-90f5-51b90f7370ba",
                "labels": { "app.kubernetes.io/name": "ruche-operator" }
            },
            "spec": {
                "serviceAccountName": "ruche-operator",
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "name": "operator",
                    "image": "registry.example.gouv.fr/ruche/operator:0.1.0",
                    "args": ["run"],
                    "env": [
                        { "name": "POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
                        { "name": "POD_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                        { "name": "RUCHE_HTTP_BIND", "value": "0.0.0.0:8080" }
                    ],
                    "ports": [{ "name": "http", "containerPort": 8080, "protocol": "TCP" }],
                    "readinessProbe": { "httpGet": { "path": "/readyz?standby=true", "port": "http" }, "periodSeconds": 5 },
                    "livenessProbe": { "httpGet": { "path": "/livez", "port": "http" }, "periodSeconds": 10 },
                    "volumeMounts": [{
                        "name": "kube-api-access-s2mz9",
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                        "readOnly": true
                    }]
                }],
                "volumes": [{
                    "name": "kube-api-access-s2mz9",
                    "projected": { "defaultMode": 420, "sources": [
                        { "serviceAccountToken": { "expirationSeconds": 3607, "path": "token" } },
                        { "configMap": { "name": "kube-root-ca.crt", "items": [{ "key": "ca.crt", "path": "ca.crt" }] } },
                        { "downwardAPI": { "items": [{ "path": "namespace", "fieldRef": { "fieldPath": "metadata.namespace" } }] } },
                        { "configMap": { "name": "openshift-service-ca.crt", "items": [{ "key": "service-ca.crt", "path": "service-ca.crt" }] } }
                    ] }
                }]
            }
        }))
        .unwrap()
    }

    #[test]
    fn an_operator_pod_runs_in_cluster_in_its_own_mount_namespace() {
        let pod = operator_pod();
        let mut objects = Objects::default();
        objects.config_maps.insert(
            ROOT_CA_CONFIG_MAP.into(),
            std::collections::BTreeMap::from([("ca.crt".to_string(), b"CA".to_vec())]),
        );
        objects
            .tokens
            .insert(token_key("kube-api-access-s2mz9", "token"), "tok".into());
        let dir = std::env::temp_dir().join(format!("ruche-e2e-prepare-{}", std::process::id()));
        let server = ApiServer {
            host: "127.0.0.1".into(),
            port: 28689,
        };
        let ip = Ipv4Addr::new(127, 0, 0, 44);
        let program = Program::operator(Path::new("/opt/ruche-operator"));
        let prepared =
            prepare_with(&pod, &objects, &dir, &program, Some(ip), Some(&server)).unwrap();
        assert!(prepared.isolated);
        let env: std::collections::BTreeMap<_, _> = prepared.env.iter().cloned().collect();
        assert_eq!(env["RUCHE_HTTP_BIND"], "127.0.0.44:8080");
        assert_eq!(env["POD_NAME"], "ruche-operator-67996875c4-g6v76");
        assert_eq!(env["POD_NAMESPACE"], "ruche-system");
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "127.0.0.1");
        assert_eq!(env["KUBERNETES_SERVICE_PORT"], "28689");
        assert_eq!(env["HOME"], "/");
        assert!(!env.contains_key("KUBECONFIG"));
        assert_eq!(prepared.container, "operator");
        assert_eq!(
            prepared.readiness_probe.as_ref().map(ProbeSpec::target),
            Some("http://127.0.0.44:8080/readyz?standby=true".into())
        );
        assert_eq!(
            prepared.liveness_probe.as_ref().map(ProbeSpec::target),
            Some("http://127.0.0.44:8080/livez".into())
        );
        assert_eq!(
            prepared.notes,
            vec![
                "kube-api-access-s2mz9: ConfigMap openshift-service-ca.crt does not exist: \
                 source skipped"
                    .to_string()
            ]
        );
        let volume = &prepared.mounts[0];
        assert_eq!(
            volume.mount_path,
            "/var/run/secrets/kubernetes.io/serviceaccount"
        );
        assert!(volume.read_only);
        for (file, content) in [
            ("token", "tok"),
            ("ca.crt", "CA"),
            ("namespace", "ruche-system"),
        ] {
            assert_eq!(
                std::fs::read_to_string(volume.local.join(file)).unwrap(),
                content
            );
        }
        let command = prepared.command.as_std();
        assert_eq!(command.get_program(), "unshare");
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args[..6],
            ["--mount", "--propagation", "private", "--", "sh", "-c"]
        );
        assert_eq!(args[6], MOUNT_SCRIPT);
        assert_eq!(
            args[7..],
            [
                "sh".to_string(),
                "1".into(),
                volume.local.display().to_string(),
                "/var/run/secrets/kubernetes.io/serviceaccount".into(),
                "ro".into(),
                "/opt/ruche-operator".into(),
                "run".into(),
            ]
        );
        assert!(
            prepared.printed.starts_with("[private mount namespace: "),
            "{}",
            prepared.printed
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
