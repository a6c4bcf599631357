//! The pod runner: a stand-in kubelet for media node pods.
//!
//! A bare API server runs no pods, and a kind cluster cannot pull Ruche's image (and, pinned
//! by the operator to zones its nodes do not have, would never schedule them anyway). So the
//! runner watches the test namespace's media node pods and, for each new one:
//!
//! - allocates a loopback address 127.0.0.N (N from 10 upward, then 127.0.1.x and on, never
//!   reused in a process);
//! - fetches the Secrets and ConfigMaps the pod refers to (with the harness's credentials),
//!   writes its volumes to a temporary directory, and resolves its container's environment
//!   the Kubernetes way (`valueFrom`, `$(VAR)` expansion), with `status.hostIP` and
//!   `status.podIP` both 127.0.0.N;
//! - rewrites every `0.0.0.0:P` bind address to `127.0.0.N:Q`, Q being container port P's
//!   `hostPort` if it has one (a CNI port map), else P; and every path under a volume's
//!   `mountPath` to where that volume was written;
//! - starts a real `ruche-media-node` with that environment, its output in a log file;
//! - reports the pod Running and Ready through the status subresource, and again whenever
//!   something (a scheduler marking it Unschedulable) overwrites that;
//! - reports it Failed (Succeeded on exit code 0) when the process exits: the pods' restart
//!   policy is Never;
//! - on the pod's deletion, sends SIGTERM (the node drains) and SIGKILL a few seconds later.
//!
//! Tests can SIGKILL a pod's process by pod name ([`PodRunner::kill`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Container, ContainerPort, EnvVar, Pod, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client, ResourceExt as _};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::error::{Error, Result, is_not_found};
use crate::process::{Supervised, exit_code, tail};

/// The label selector of the pods the runner runs.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=ruche-media-node";
/// The first loopback host number handed out (127.0.0.10).
pub const FIRST_HOST: u32 = 10;
/// The last one (127.0.255.254): room for the thousand nodes of a scale run.
const LAST_HOST: u32 = 0xFFFE;
/// How long a pod's Secrets may take to appear before the runner gives up on it.
pub const SECRET_WAIT: Duration = Duration::from_secs(120);
/// Between SIGTERM (pod deleted) and SIGKILL.
pub const TERMINATION_GRACE: Duration = Duration::from_secs(5);
/// How long the runner waits for a new process's readiness probe before reporting it.
pub const READINESS_WAIT: Duration = Duration::from_secs(20);
/// The fewest time between two status writes for one pod.
const PATCH_SPACING: Duration = Duration::from_secs(1);

static NEXT_HOST: AtomicU32 = AtomicU32::new(FIRST_HOST);

/// One media node process the runner started.
#[derive(Clone, Debug)]
pub struct ProcessInfo {
    /// Pod name.
    pub pod: String,
    /// Pod UID.
    pub uid: String,
    /// The pod's loopback address (its pod IP and host IP).
    pub ip: Ipv4Addr,
    /// Process id.
    pub pid: u32,
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
    namespace: String,
    dir: PathBuf,
    binary: PathBuf,
    records: Mutex<Vec<Record>>,
}

impl Shared {
    fn records(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The runner of one namespace's media node pods. Dropping it does not stop the processes:
/// call [`PodRunner::shutdown`].
pub struct PodRunner {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl PodRunner {
    /// Starts watching `namespace`'s media node pods; processes run `binary`, and their files
    /// and logs go under `dir`.
    pub fn start(client: Client, namespace: &str, dir: &Path, binary: &Path) -> Self {
        let shared = Arc::new(Shared {
            client,
            namespace: namespace.to_string(),
            dir: dir.to_path_buf(),
            binary: binary.to_path_buf(),
            records: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(watch_pods(shared.clone()));
        Self { shared, task }
    }

    /// Every process started so far, oldest first.
    pub fn processes(&self) -> Vec<ProcessInfo> {
        self.shared.records().iter().map(Record::snapshot).collect()
    }

    /// The loopback address of the latest process of `pod`.
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
        let records = self.shared.records();
        let record = records
            .iter()
            .rev()
            .find(|r| r.info.pod == pod && r.process.exit_status().is_none())
            .ok_or_else(|| Error::Setup(format!("no running media node process for pod {pod}")))?;
        if !record.process.kill() {
            return Err(Error::Setup(format!(
                "pod {pod}: process {} had already exited",
                record.info.pid
            )));
        }
        eprintln!(
            "e2e runner: SIGKILL sent to pod {pod} (pid {}, {})",
            record.info.pid, record.info.ip
        );
        Ok(record.snapshot())
    }

    /// Stops watching and SIGKILLs every process. Synchronous, for clean-up paths.
    pub fn shutdown(&self) {
        self.task.abort();
        for r in self.shared.records().iter() {
            r.process.kill();
        }
    }

    /// A report of every process, with the last `lines` lines of each log.
    pub fn report(&self, lines: usize) -> String {
        let mut out = String::new();
        for p in self.processes() {
            let _ = write!(
                out,
                "--- media node pod {} ({}) pid {} exit {}\n    command: {}\n    log: {}\n",
                p.pod,
                p.ip,
                p.pid,
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

/// Watches the pods; starts a supervising task per new pod and feeds it the pod's updates
/// (`None` once it is deleted).
async fn watch_pods(shared: Arc<Shared>) {
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let config = watcher::Config::default().labels(POD_SELECTOR);
    let mut events = watcher(api, config).default_backoff().boxed();
    let mut pods: HashMap<String, watch::Sender<Option<Arc<Pod>>>> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut listing: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Init) => listing = Some(HashSet::new()),
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
    pods: &mut HashMap<String, watch::Sender<Option<Arc<Pod>>>>,
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
    let (tx, rx) = watch::channel(Some(pod.clone()));
    pods.insert(uid, tx);
    tasks.spawn(run_pod(shared.clone(), pod, rx));
}

async fn run_pod(
    shared: Arc<Shared>,
    pod: Arc<Pod>,
    mut updates: watch::Receiver<Option<Arc<Pod>>>,
) {
    let name = pod.name_any();
    match start(&shared, &pod, &updates).await {
        Ok(Some((record, desired))) => {
            supervise(&shared, &pod, record, desired, &mut updates).await;
        }
        Ok(None) => eprintln!("e2e runner: pod {name} was deleted before it started"),
        Err(e) => eprintln!(
            "e2e runner: ERROR: pod {}/{name} not started: {e}",
            shared.namespace
        ),
    }
}

/// The media container: the one named `media-node`, else the first.
fn media_container(pod: &Pod) -> Option<&Container> {
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .find(|c| c.name == "media-node")
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
    /// The media container's name.
    pub container: String,
    /// Its image.
    pub image: String,
    /// Where its readiness probe (HTTP GET) goes, if it has one: address and path.
    pub readiness: Option<(SocketAddr, String)>,
}

/// Turns a pod into a process running `binary`: allocates its loopback address, writes its
/// volumes under `dir/pods/<pod>-<uid>/`, and resolves its environment. `objects` holds the
/// Secrets and ConfigMaps the pod refers to.
pub fn prepare(pod: &Pod, objects: &Objects, dir: &Path, binary: &Path) -> Result<Prepared> {
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let container =
        media_container(pod).ok_or_else(|| Error::Setup(format!("pod {name} has no container")))?;
    let ports = container.ports.clone().unwrap_or_default();
    let ip = allocate_address(&ports)?;
    let short_uid: String = uid.chars().take(8).collect();
    let pod_dir = dir.join("pods").join(format!("{name}-{short_uid}"));
    std::fs::create_dir_all(&pod_dir)
        .map_err(|e| Error::io(format!("cannot create {}", pod_dir.display()), e))?;
    let mounts = write_volumes(pod, container, objects, &pod_dir.join("volumes"))?;
    let env = resolve_env(pod, container, ip, &ports, &mounts, objects)
        .map_err(|e| Error::Setup(format!("pod {name}: {e}")))?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let args: Vec<String> = container
        .args
        .iter()
        .flatten()
        .map(|a| rewrite(&expand(a, &vars), ip, &ports, &mounts))
        .collect();
    let mut command = tokio::process::Command::new(binary);
    command.args(&args).env_clear().envs(env.iter().cloned());
    if let Some(path) = std::env::var_os("PATH") {
        command.env("PATH", path);
    }
    command.current_dir(&pod_dir);
    let printed = format!(
        "{} {} {}",
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        binary.display(),
        args.join(" ")
    );
    Ok(Prepared {
        ip,
        command,
        printed,
        env,
        log: pod_dir.join("media-node.log"),
        container: container.name.clone(),
        image: container.image.clone().unwrap_or_default(),
        readiness: readiness_target(container, ip, &ports),
    })
}

/// Where the container's HTTP readiness probe goes on this machine.
fn readiness_target(
    container: &Container,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
) -> Option<(SocketAddr, String)> {
    let get = container.readiness_probe.as_ref()?.http_get.as_ref()?;
    let port = match &get.port {
        IntOrString::Int(p) => *p,
        IntOrString::String(name) => {
            ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    let mapped = ports
        .iter()
        .filter(|p| p.container_port == port)
        .find_map(|p| p.host_port.filter(|h| *h > 0))
        .unwrap_or(port);
    let path = get.path.clone().unwrap_or_else(|| "/".into());
    Some((SocketAddr::from((ip, u16::try_from(mapped).ok()?)), path))
}

/// Waits, as a kubelet's readiness probe would, until the probe answers 200 (or the process
/// exits, or `within` passes: the pod is then reported anyway, with a warning).
async fn probe_ready(
    name: &str,
    process: &Supervised,
    target: Option<&(SocketAddr, String)>,
    within: Duration,
) {
    let Some((addr, path)) = target else {
        return;
    };
    let start = Instant::now();
    while start.elapsed() < within {
        if process.exit_status().is_some() {
            return;
        }
        if let Ok(r) = crate::http::get(*addr, path, Duration::from_secs(2)).await
            && r.status == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "e2e runner: WARNING: pod {name}: readiness probe http://{addr}{path} did not pass \
         within {within:?}; reporting the pod Ready anyway"
    );
}

/// Starts the pod's process. `None` if the pod was deleted while its Secrets were awaited.
async fn start(
    shared: &Shared,
    pod: &Pod,
    updates: &watch::Receiver<Option<Arc<Pod>>>,
) -> Result<Option<(Arc<Supervised>, Desired)>> {
    let name = pod.name_any();
    let container =
        media_container(pod).ok_or_else(|| Error::Setup(format!("pod {name} has no container")))?;
    let Some(objects) = fetch_objects(shared, pod, container, updates).await? else {
        return Ok(None);
    };
    let prepared = prepare(pod, &objects, &shared.dir, &shared.binary)?;
    let process = Arc::new(Supervised::spawn(prepared.command, &prepared.log)?);
    let ip = prepared.ip;
    eprintln!(
        "e2e runner: pod {}/{name} runs as {ip}, pid {}\n    command: {}\n    log: {}",
        shared.namespace,
        process.pid(),
        prepared.printed,
        prepared.log.display()
    );
    shared.records().push(Record {
        info: ProcessInfo {
            pod: name.clone(),
            uid: pod.uid().unwrap_or_default(),
            ip,
            pid: process.pid(),
            command: prepared.printed,
            log: prepared.log,
            exit: None,
        },
        process: process.clone(),
    });
    probe_ready(&name, &process, prepared.readiness.as_ref(), READINESS_WAIT).await;
    let desired = Desired::running(ip, &prepared.container, &prepared.image);
    Ok(Some((process, desired)))
}

/// Keeps the pod's status true to its process until the pod is deleted.
async fn supervise(
    shared: &Shared,
    pod: &Pod,
    process: Arc<Supervised>,
    mut desired: Desired,
    updates: &mut watch::Receiver<Option<Arc<Pod>>>,
) {
    let name = pod.name_any();
    let uid = pod.uid().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let mut exit = process.watch_exit();
    let mut last_patch: Option<Instant> = None;
    patch_status(&api, &name, &uid, &desired, &mut last_patch).await;
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() {
                    // The runner stopped.
                    process.kill();
                    return;
                }
                let current = updates.borrow_and_update().clone();
                match current {
                    Some(p) if p.metadata.deletion_timestamp.is_none() => {
                        if !desired.holds(&p) {
                            eprintln!(
                                "e2e runner: pod {name}: status was overwritten ({}), re-asserting",
                                describe_status(&p)
                            );
                            patch_status(&api, &name, &uid, &desired, &mut last_patch).await;
                        }
                    }
                    _ => {
                        eprintln!("e2e runner: pod {name} deleted: SIGTERM to pid {}", process.pid());
                        let status = process.terminate(TERMINATION_GRACE).await;
                        eprintln!(
                            "e2e runner: pod {name}: process ended ({})",
                            status.map_or_else(|| "unknown".to_string(), |s| s.to_string())
                        );
                        return;
                    }
                }
            }
            status = exited(&mut exit), if desired.running => {
                let code = status.map_or(137, exit_code);
                eprintln!(
                    "e2e runner: pod {name}: process {} exited with code {code}",
                    process.pid()
                );
                desired = desired.terminated(code);
                patch_status(&api, &name, &uid, &desired, &mut last_patch).await;
            }
        }
    }
}

async fn exited(rx: &mut watch::Receiver<Option<ExitStatus>>) -> Option<ExitStatus> {
    match rx.wait_for(Option::is_some).await {
        Ok(status) => *status,
        Err(_) => None,
    }
}

/// Writes `desired` through the status subresource, a few times if the API fails. The pod's
/// UID in the patch makes it fail rather than touch a new pod of the same name.
async fn patch_status(
    api: &Api<Pod>,
    name: &str,
    uid: &str,
    desired: &Desired,
    last: &mut Option<Instant>,
) {
    if let Some(at) = *last {
        let since = at.elapsed();
        if since < PATCH_SPACING {
            tokio::time::sleep(PATCH_SPACING.saturating_sub(since)).await;
        }
    }
    let body = json!({ "metadata": { "uid": uid }, "status": desired.status() });
    for attempt in 1..=5 {
        *last = Some(Instant::now());
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => return,
            Err(e) if is_not_found(&e) => return,
            Err(e) => {
                eprintln!("e2e runner: pod {name}: status write {attempt}/5 failed: {e}");
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

/// The status the runner wants a pod to have.
#[derive(Clone, Debug)]
pub struct Desired {
    ip: Ipv4Addr,
    container: String,
    image: String,
    started: String,
    running: bool,
    exit_code: i32,
    finished: String,
}

/// The current time as the API writes it.
fn now() -> String {
    k8s_openapi::jiff::fmt::strtime::format("%Y-%m-%dT%H:%M:%SZ", Timestamp::now())
        .unwrap_or_default()
}

impl Desired {
    /// A pod whose container runs and is ready.
    pub fn running(ip: Ipv4Addr, container: &str, image: &str) -> Self {
        Self {
            ip,
            container: container.to_string(),
            image: image.to_string(),
            started: now(),
            running: true,
            exit_code: 0,
            finished: String::new(),
        }
    }

    /// The same pod once its container exited with `code`.
    #[must_use]
    pub fn terminated(mut self, code: i32) -> Self {
        self.running = false;
        self.exit_code = code;
        self.finished = now();
        self
    }

    fn phase(&self) -> &'static str {
        match (self.running, self.exit_code) {
            (true, _) => "Running",
            (false, 0) => "Succeeded",
            (false, _) => "Failed",
        }
    }

    /// The `status` to write.
    pub fn status(&self) -> Value {
        let ip = self.ip.to_string();
        let t = &self.started;
        // The readiness conditions last changed when the container stopped, if it has.
        let changed = if self.running { t } else { &self.finished };
        let condition = |type_: &str, ok: bool, reason: &str| {
            let at = if type_ == "ContainersReady" || type_ == "Ready" {
                changed
            } else {
                t
            };
            let mut c = json!({ "type": type_, "status": if ok { "True" } else { "False" }, "lastTransitionTime": at });
            if !reason.is_empty() {
                c["reason"] = json!(reason);
            }
            c
        };
        let ready_reason = match (self.running, self.exit_code) {
            (true, _) => "",
            (false, 0) => "PodCompleted",
            (false, _) => "ContainersNotReady",
        };
        let state = if self.running {
            json!({ "running": { "startedAt": t } })
        } else {
            json!({ "terminated": {
                "exitCode": self.exit_code,
                "reason": if self.exit_code == 0 { "Completed" } else { "Error" },
                "startedAt": t,
                "finishedAt": self.finished,
            } })
        };
        json!({
            "phase": self.phase(),
            "hostIP": ip,
            "hostIPs": [{ "ip": ip }],
            "podIP": ip,
            "podIPs": [{ "ip": ip }],
            "startTime": t,
            "conditions": [
                condition("PodScheduled", true, ""),
                condition("Initialized", true, ""),
                condition("ContainersReady", self.running, ready_reason),
                condition("Ready", self.running, ready_reason),
            ],
            "containerStatuses": [{
                "name": self.container,
                "image": self.image,
                "imageID": "",
                "ready": self.running,
                "started": self.running,
                "restartCount": 0,
                "state": state,
            }],
        })
    }

    /// Whether `pod`'s status says what this one does (phase, addresses, readiness, scheduling).
    pub fn holds(&self, pod: &Pod) -> bool {
        let Some(s) = &pod.status else {
            return false;
        };
        let ip = self.ip.to_string();
        let condition = |type_: &str| {
            s.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == type_)
                .map(|c| c.status.as_str())
        };
        let want = if self.running { "True" } else { "False" };
        s.phase.as_deref() == Some(self.phase())
            && s.pod_ip.as_deref() == Some(ip.as_str())
            && s.host_ip.as_deref() == Some(ip.as_str())
            && condition("PodScheduled") == Some("True")
            && condition("Ready") == Some(want)
            && s.container_statuses
                .iter()
                .flatten()
                .any(|c| c.name == self.container && c.ready == self.running)
    }
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
                "out of loopback addresses 127.0.0.10-127.0.255.254 for media nodes".into(),
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

/// The Secrets and ConfigMaps a pod refers to, keyed by name.
#[derive(Default, Debug)]
pub struct Objects {
    /// Secret data by Secret name.
    pub secrets: HashMap<String, BTreeMap<String, Vec<u8>>>,
    /// ConfigMap data (and binary data) by ConfigMap name.
    pub config_maps: HashMap<String, BTreeMap<String, Vec<u8>>>,
}

/// What the pod refers to: (is a Secret, name, required).
fn references(pod: &Pod, container: &Container) -> Vec<(bool, String, bool)> {
    let mut refs = Vec::new();
    let required = |optional: Option<bool>| !optional.unwrap_or(false);
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(s) = &v.secret {
            refs.push((
                true,
                s.secret_name.clone().unwrap_or_default(),
                required(s.optional),
            ));
        }
        if let Some(c) = &v.config_map {
            refs.push((false, c.name.clone(), required(c.optional)));
        }
    }
    for e in container.env.iter().flatten() {
        let Some(from) = &e.value_from else { continue };
        if let Some(s) = &from.secret_key_ref {
            refs.push((true, s.name.clone(), required(s.optional)));
        }
        if let Some(c) = &from.config_map_key_ref {
            refs.push((false, c.name.clone(), required(c.optional)));
        }
    }
    for e in container.env_from.iter().flatten() {
        if let Some(s) = &e.secret_ref {
            refs.push((true, s.name.clone(), required(s.optional)));
        }
        if let Some(c) = &e.config_map_ref {
            refs.push((false, c.name.clone(), required(c.optional)));
        }
    }
    refs.sort();
    refs.dedup();
    refs
}

/// Fetches what the pod refers to, waiting up to [`SECRET_WAIT`] for required objects (the
/// operator may create a fleet's Secrets after its first pods). `None` if the pod is deleted
/// meanwhile.
async fn fetch_objects(
    shared: &Shared,
    pod: &Pod,
    container: &Container,
    updates: &watch::Receiver<Option<Arc<Pod>>>,
) -> Result<Option<Objects>> {
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let config_maps: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &shared.namespace);
    let deadline = Instant::now() + SECRET_WAIT;
    let mut objects = Objects::default();
    for (is_secret, name, required) in references(pod, container) {
        loop {
            let found = if is_secret {
                secrets.get_opt(&name).await.map(|s| {
                    s.map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect::<BTreeMap<_, _>>()
                    })
                })
            } else {
                config_maps.get_opt(&name).await.map(|c| {
                    c.map(|c| {
                        let mut data: BTreeMap<String, Vec<u8>> = c
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        data.extend(
                            c.binary_data
                                .unwrap_or_default()
                                .into_iter()
                                .map(|(k, v)| (k, v.0)),
                        );
                        data
                    })
                })
            };
            let what = if is_secret { "Secret" } else { "ConfigMap" };
            match found {
                Ok(Some(data)) => {
                    if is_secret {
                        objects.secrets.insert(name.clone(), data);
                    } else {
                        objects.config_maps.insert(name.clone(), data);
                    }
                    break;
                }
                Ok(None) if !required => break,
                Ok(None) | Err(_) if Instant::now() < deadline => {
                    if updates.borrow().is_none() {
                        return Ok(None);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok(None) => {
                    return Err(Error::Setup(format!(
                        "{what} {name} still missing after {SECRET_WAIT:?}"
                    )));
                }
                Err(e) => {
                    return Err(Error::Setup(format!("reading {what} {name}: {e}")));
                }
            }
        }
    }
    Ok(Some(objects))
}

/// Writes the container's mounted volumes under `root`; returns (mountPath, local path) pairs,
/// longest mount path first.
fn write_volumes(
    pod: &Pod,
    container: &Container,
    objects: &Objects,
    root: &Path,
) -> Result<Vec<(String, PathBuf)>> {
    let volumes: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .collect();
    let mut mounts = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let Some(volume) = volumes.iter().find(|v| v.name == m.name) else {
            return Err(Error::Setup(format!(
                "volume mount {} names no volume",
                m.name
            )));
        };
        let dir = root.join(&volume.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let (data, items) = if let Some(s) = &volume.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            (objects.secrets.get(&name), s.items.clone())
        } else if let Some(c) = &volume.config_map {
            (objects.config_maps.get(&c.name), c.items.clone())
        } else {
            if volume.empty_dir.is_none() {
                eprintln!(
                    "e2e runner: volume {} is neither a Secret, a ConfigMap nor an emptyDir: \
                     mounted as an empty directory",
                    volume.name
                );
            }
            (None, None)
        };
        if let Some(data) = data {
            let files: Vec<(String, String)> = match items {
                Some(items) => items.into_iter().map(|i| (i.key, i.path)).collect(),
                None => data.keys().map(|k| (k.clone(), k.clone())).collect(),
            };
            for (key, path) in files {
                let Some(bytes) = data.get(&key) else {
                    return Err(Error::Setup(format!(
                        "volume {}: key {key} not found",
                        volume.name
                    )));
                };
                let file = dir.join(&path);
                if let Some(parent) = file.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
                }
                std::fs::write(&file, bytes)
                    .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
            }
        }
        let local = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.join(sub),
            None => dir,
        };
        let mount_path = m.mount_path.trim_end_matches('/');
        if !mount_path.is_empty() {
            mounts.push((mount_path.to_string(), local));
        }
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    Ok(mounts)
}

/// The value of a `fieldRef`, as a kubelet resolves it, with `ip` as pod and host IP.
fn field_value(pod: &Pod, path: &str, ip: Ipv4Addr) -> Result<String, String> {
    let meta = &pod.metadata;
    let from_map = |map: Option<&BTreeMap<String, String>>, prefix: &str| {
        let key = path
            .strip_prefix(prefix)
            .and_then(|k| k.strip_suffix("']"))
            .unwrap_or_default();
        map.and_then(|m| m.get(key)).cloned().unwrap_or_default()
    };
    Ok(match path {
        "status.hostIP" | "status.hostIPs" | "status.podIP" | "status.podIPs" => ip.to_string(),
        "metadata.name" => pod.name_any(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        p if p.starts_with("metadata.labels['") => {
            from_map(meta.labels.as_ref(), "metadata.labels['")
        }
        p if p.starts_with("metadata.annotations['") => {
            from_map(meta.annotations.as_ref(), "metadata.annotations['")
        }
        other => {
            return Err(format!(
                "fieldRef {other} is not supported by the e2e runner"
            ));
        }
    })
}

fn lookup(
    source: &HashMap<String, BTreeMap<String, Vec<u8>>>,
    what: &str,
    name: &str,
    key: &str,
    optional: Option<bool>,
) -> Result<Option<String>, String> {
    match source.get(name).and_then(|d| d.get(key)) {
        Some(v) => Ok(Some(String::from_utf8_lossy(v).into_owned())),
        None if optional.unwrap_or(false) => Ok(None),
        None => Err(format!("{what} {name} has no key {key}")),
    }
}

/// The container's environment as a kubelet builds it (`envFrom`, then `env` in order with
/// `$(VAR)` expansion), then bind addresses and volume paths rewritten for this machine.
pub fn resolve_env(
    pod: &Pod,
    container: &Container,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
    mounts: &[(String, PathBuf)],
    objects: &Objects,
) -> Result<Vec<(String, String)>, String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut vars: HashMap<String, String> = HashMap::new();
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(s) = &from.secret_ref {
            objects.secrets.get(&s.name)
        } else if let Some(c) = &from.config_map_ref {
            objects.config_maps.get(&c.name)
        } else {
            None
        };
        for (k, v) in data.into_iter().flatten() {
            let value = String::from_utf8_lossy(v).into_owned();
            define(&mut env, &mut vars, format!("{prefix}{k}"), value);
        }
    }
    for EnvVar {
        name,
        value,
        value_from,
    } in container.env.iter().flatten()
    {
        let resolved = if let Some(from) = value_from {
            if let Some(f) = &from.field_ref {
                Some(field_value(pod, &f.field_path, ip)?)
            } else if let Some(s) = &from.secret_key_ref {
                lookup(&objects.secrets, "Secret", &s.name, &s.key, s.optional)?
            } else if let Some(c) = &from.config_map_key_ref {
                lookup(
                    &objects.config_maps,
                    "ConfigMap",
                    &c.name,
                    &c.key,
                    c.optional,
                )?
            } else {
                eprintln!("e2e runner: env {name}: resourceFieldRef is given as 0");
                Some("0".to_string())
            }
        } else {
            Some(expand(value.as_deref().unwrap_or_default(), &vars))
        };
        if let Some(v) = resolved {
            define(&mut env, &mut vars, name.clone(), v);
        }
    }
    Ok(env
        .into_iter()
        .map(|(k, v)| {
            let v = rewrite(&v, ip, ports, mounts);
            (k, v)
        })
        .collect())
}

/// Defines (or redefines, in place) a variable.
fn define(
    env: &mut Vec<(String, String)>,
    vars: &mut HashMap<String, String>,
    name: String,
    value: String,
) {
    vars.insert(name.clone(), value.clone());
    match env.iter_mut().find(|(n, _)| *n == name) {
        Some(slot) => slot.1 = value,
        None => env.push((name, value)),
    }
}

/// Kubernetes' `$(VAR)` expansion: `$$` is a literal `$`; `$(NAME)` is NAME's value if it
/// is defined, else left as written; any other `$` is literal.
pub fn expand<S: std::hash::BuildHasher>(input: &str, vars: &HashMap<String, String, S>) -> String {
    let bytes = input.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'$' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'$' => {
                    out.push(b'$');
                    i += 2;
                }
                b'(' => {
                    if let Some(close) = bytes[i + 2..].iter().position(|b| *b == b')') {
                        let name = &input[i + 2..i + 2 + close];
                        match vars.get(name) {
                            Some(v) => out.extend_from_slice(v.as_bytes()),
                            None => out.extend_from_slice(&bytes[i..i + 3 + close]),
                        }
                        i += 3 + close;
                    } else {
                        out.extend_from_slice(b"$(");
                        i += 2;
                    }
                }
                other => {
                    out.push(b'$');
                    out.push(other);
                    i += 2;
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites a wildcard bind address (`0.0.0.0:P`, `[::]:P`) to `ip:Q` (Q: container port P's
/// host port, else P), and a path under a volume's mount path to where the volume was written.
pub fn rewrite(
    value: &str,
    ip: Ipv4Addr,
    ports: &[ContainerPort],
    mounts: &[(String, PathBuf)],
) -> String {
    let wildcard = value
        .strip_prefix("0.0.0.0:")
        .or_else(|| value.strip_prefix("[::]:"));
    if let Some(port) = wildcard.and_then(|p| p.parse::<i32>().ok()) {
        let mapped = ports
            .iter()
            .filter(|p| p.container_port == port)
            .find_map(|p| p.host_port.filter(|h| *h > 0))
            .unwrap_or(port);
        return format!("{ip}:{mapped}");
    }
    for (mount, local) in mounts {
        if value == mount {
            return local.display().to_string();
        }
        if let Some(rest) = value
            .strip_prefix(mount.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            return local.join(rest).display().to_string();
        }
    }
    value.to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

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
    fn expansion_follows_kubernetes() {
        let v = vars(&[("A", "x"), ("HOST", "127.0.0.10")]);
        assert_eq!(expand("$(HOST):21000", &v), "127.0.0.10:21000");
        assert_eq!(expand("$(A)$(A)", &v), "xx");
        assert_eq!(expand("$(MISSING)", &v), "$(MISSING)");
        assert_eq!(expand("$$(A)", &v), "$(A)");
        assert_eq!(expand("$$", &v), "$");
        assert_eq!(expand("a$b", &v), "a$b");
        assert_eq!(expand("$(A", &v), "$(A");
        assert_eq!(expand("end$", &v), "end$");
        assert_eq!(expand("é$(A)é", &v), "éxé");
    }

    fn port(container: i32, host: Option<i32>, protocol: &str) -> ContainerPort {
        ContainerPort {
            container_port: container,
            host_port: host,
            protocol: Some(protocol.into()),
            ..Default::default()
        }
    }

    #[test]
    fn bind_addresses_and_mount_paths_are_rewritten() {
        let ip = Ipv4Addr::new(127, 0, 0, 12);
        let ports = [
            port(7882, Some(21003), "UDP"),
            port(7880, Some(21003), "TCP"),
            port(7881, None, "TCP"),
        ];
        let mounts = vec![(
            "/etc/ruche/join-key".to_string(),
            PathBuf::from("/tmp/x/join-key"),
        )];
        assert_eq!(
            rewrite("0.0.0.0:7882", ip, &ports, &mounts),
            "127.0.0.12:21003"
        );
        assert_eq!(
            rewrite("0.0.0.0:7880", ip, &ports, &mounts),
            "127.0.0.12:21003"
        );
        assert_eq!(
            rewrite("0.0.0.0:7881", ip, &ports, &mounts),
            "127.0.0.12:7881"
        );
        assert_eq!(
            rewrite("0.0.0.0:9999", ip, &ports, &mounts),
            "127.0.0.12:9999"
        );
        assert_eq!(
            rewrite("/etc/ruche/join-key/token-key", ip, &ports, &mounts),
            "/tmp/x/join-key/token-key"
        );
        assert_eq!(
            rewrite("/etc/ruche/join-keys", ip, &ports, &mounts),
            "/etc/ruche/join-keys"
        );
        assert_eq!(rewrite("100", ip, &ports, &mounts), "100");
    }

    #[test]
    fn environment_resolves_like_a_kubelet() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": { "name": "n1", "namespace": "ns", "uid": "u1", "labels": { "zone": "a" } },
            "spec": {
                "containers": [{
                    "name": "media-node",
                    "image": "img",
                    "ports": [
                        { "containerPort": 7882, "hostPort": 21001, "protocol": "UDP" },
                        { "containerPort": 7880, "hostPort": 21001, "protocol": "TCP" }
                    ],
                    "env": [
                        { "name": "RUCHE_HOST_IP", "valueFrom": { "fieldRef": { "fieldPath": "status.hostIP" } } },
                        { "name": "RUCHE_MEDIA_BIND", "value": "0.0.0.0:7882" },
                        { "name": "RUCHE_ADVERTISE", "value": "$(RUCHE_HOST_IP):21001" },
                        { "name": "RUCHE_HTTP_BIND", "value": "0.0.0.0:7880" },
                        { "name": "EARLY", "value": "$(LATE)" },
                        { "name": "LATE", "value": "l" },
                        { "name": "ZONE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.labels['zone']" } } },
                        { "name": "KEY", "value": "/etc/ruche/join-key/token-key" },
                        { "name": "FROM_SECRET", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }
                    ],
                    "volumeMounts": [{ "name": "join-key", "mountPath": "/etc/ruche/join-key" }]
                }],
                "volumes": [{ "name": "join-key", "secret": { "secretName": "s" } }]
            }
        }))
        .unwrap();
        let container = media_container(&pod).unwrap();
        let ports = container.ports.clone().unwrap();
        let mut objects = Objects::default();
        objects.secrets.insert(
            "s".into(),
            BTreeMap::from([("k".to_string(), b"v".to_vec())]),
        );
        let mounts = vec![(
            "/etc/ruche/join-key".to_string(),
            PathBuf::from("/t/join-key"),
        )];
        let ip = Ipv4Addr::new(127, 0, 0, 10);
        let env = resolve_env(&pod, container, ip, &ports, &mounts, &objects).unwrap();
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("RUCHE_HOST_IP"), Some("127.0.0.10"));
        assert_eq!(get("RUCHE_MEDIA_BIND"), Some("127.0.0.10:21001"));
        assert_eq!(get("RUCHE_ADVERTISE"), Some("127.0.0.10:21001"));
        assert_eq!(get("RUCHE_HTTP_BIND"), Some("127.0.0.10:21001"));
        assert_eq!(
            get("EARLY"),
            Some("$(LATE)"),
            "only earlier variables expand"
        );
        assert_eq!(get("ZONE"), Some("a"));
        assert_eq!(get("KEY"), Some("/t/join-key/token-key"));
        assert_eq!(get("FROM_SECRET"), Some("v"));
        assert_eq!(
            references(&pod, container),
            vec![(true, "s".to_string(), true)]
        );
    }

    #[test]
    fn status_round_trips_through_the_pod_type() {
        let d = Desired::running(Ipv4Addr::new(127, 0, 0, 11), "media-node", "img");
        let pod: Pod =
            serde_json::from_value(json!({ "metadata": { "name": "p" }, "status": d.status() }))
                .unwrap();
        assert!(d.holds(&pod));
        let mut overwritten = pod.clone();
        if let Some(c) = overwritten
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|c| c.iter_mut().find(|c| c.type_ == "PodScheduled"))
        {
            c.status = "False".into();
        }
        assert!(!d.holds(&overwritten), "an Unschedulable mark is noticed");
        let done = d.terminated(137);
        let pod: Pod =
            serde_json::from_value(json!({ "metadata": { "name": "p" }, "status": done.status() }))
                .unwrap();
        assert!(done.holds(&pod));
        assert_eq!(pod.status.unwrap().phase.as_deref(), Some("Failed"));
    }
}
