//! The operator installed as the README says, `kubectl apply -k manifests`: the shipped CRDs,
//! the cluster-wide RBAC of `manifests/rbac/` and the operator Deployment of
//! `manifests/operator/` (2 replicas in `ruche-system`, Lease `ruche-system/ruche-operator`),
//! its pods run by the pod runner as a kubelet would, with the in-cluster configuration
//! kube-rs reads (see [`crate::runner`]).
//!
//! [`Installed`] is the fixture of cluster-wide scenarios. A cluster-wide operator acts on
//! every namespace, so such scenarios must never overlap with each other (a static lock
//! serialises them within a test process) nor with the namespace-scoped scenarios of
//! `tests/e2e.rs`, which is why they live in their own test binary (`tests/install.rs`:
//! `cargo test` runs test binaries one after the other). Dropping the fixture kills the
//! processes, prints the operator pods' logs and the objects if the scenario failed, and
//! deletes the tenant namespaces, the manifests' namespaces and cluster-scoped RBAC, but not
//! the CRDs, which other test binaries share.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, ResourceExt as _};
use ruche_crds::{MediaFleet, Room, RoomPhase};
use serde_json::{Value, json};
use tokio::sync::{Mutex, MutexGuard};

use crate::cluster::{self, Cluster, Connection, KUBECONFIG_ENV};
use crate::crds::MANAGER;
use crate::error::{Error, Result, is_not_found};
use crate::harness::{self, FleetView};
use crate::runner::{
    ApiServer, MEDIA_NODE_APP, OPERATOR_APP, OPERATOR_SELECTOR, PodRunner, Program, RunnerConfig,
    Scope,
};
use crate::{http, process, rbac, wait};

/// The namespace `manifests/operator/` installs the operator in.
pub const SYSTEM_NAMESPACE: &str = "ruche-system";
/// The operator Deployment's name.
pub const DEPLOYMENT: &str = "ruche-operator";
/// The leader election Lease, in [`SYSTEM_NAMESPACE`].
pub const LEASE: &str = "ruche-operator";
/// The operator's HTTP port (`http`: probes and metrics).
pub const HTTP_PORT: u16 = 8080;
/// The environment variable naming the `kubectl` to use (default: `kubectl` on `PATH`).
pub const KUBECTL_ENV: &str = "RUCHE_KUBECTL";
/// The label the suite puts on the namespaces it installed, so that a later run may delete
/// what a killed run left behind (and never an install of someone else's).
pub const INSTALL_LABEL: &str = "e2e.ruche.dev/installed-by";
/// How long the clean-up may take (the namespace controller must delete `ruche-system`
/// before the next install).
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// One cluster-wide install at a time in a test process.
static INSTALLS: Mutex<()> = Mutex::const_new(());

/// Waits for any other install of this test process to end; the guard lets the next one in.
pub(crate) async fn serialise() -> MutexGuard<'static, ()> {
    INSTALLS.lock().await
}

/// `kubectl`, always with the suite's kubeconfig and never `KUBECONFIG`'s.
#[derive(Clone, Debug)]
pub struct Kubectl {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    /// The `kubectl` [`KUBECTL_ENV`] names (a relative path is the workspace's), else the
    /// one on `PATH`, with `kubeconfig`.
    pub fn from_env(kubeconfig: &Path) -> Self {
        let program = match std::env::var_os(KUBECTL_ENV).filter(|p| !p.is_empty()) {
            Some(p) if Path::new(&p).components().count() > 1 => crate::workspace().join(p),
            Some(p) => PathBuf::from(p),
            None => PathBuf::from("kubectl"),
        };
        Self {
            program,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// Runs `kubectl --kubeconfig <kubeconfig> <args>`; returns its standard output, or an
    /// error with its standard error.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .env_remove("KUBECONFIG")
            .kill_on_drop(true);
        let shown = format!("{} {}", self.program.display(), args.join(" "));
        let output = command
            .output()
            .await
            .map_err(|e| Error::io(format!("cannot run {shown} (set {KUBECTL_ENV})"), e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Setup(format!(
                "{shown} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                if stdout.is_empty() {
                    String::new()
                } else {
                    format!("\n{}", stdout.trim())
                }
            )))
        }
    }

    /// The program, for messages.
    pub fn program(&self) -> &Path {
        &self.program
    }
}

/// What `kubectl kustomize manifests` renders, by kind and name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rendered {
    /// CustomResourceDefinitions.
    pub crds: Vec<String>,
    /// Namespaces.
    pub namespaces: Vec<String>,
    /// ClusterRoles.
    pub cluster_roles: Vec<String>,
    /// ClusterRoleBindings.
    pub cluster_role_bindings: Vec<String>,
    /// Deployments, as `namespace/name`.
    pub deployments: Vec<String>,
    /// Every object, as `Kind namespace/name` (or `Kind name`).
    pub objects: Vec<String>,
}

impl Rendered {
    /// Reads kustomize's output (multi-document YAML).
    pub fn parse(yaml: &str) -> Result<Self> {
        let docs = serde_saphyr::from_multiple::<Value>(yaml)
            .map_err(|e| Error::Setup(format!("kustomize's output is not YAML: {e}")))?;
        let mut rendered = Self::default();
        for doc in docs.into_iter().filter(|d| !d.is_null()) {
            let field = |pointer: &str| {
                doc.pointer(pointer)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (kind, name, namespace) = (
                field("/kind"),
                field("/metadata/name"),
                field("/metadata/namespace"),
            );
            match kind.as_str() {
                "CustomResourceDefinition" => rendered.crds.push(name.clone()),
                "Namespace" => rendered.namespaces.push(name.clone()),
                "ClusterRole" => rendered.cluster_roles.push(name.clone()),
                "ClusterRoleBinding" => rendered.cluster_role_bindings.push(name.clone()),
                "Deployment" => rendered.deployments.push(format!("{namespace}/{name}")),
                _ => {}
            }
            rendered.objects.push(if namespace.is_empty() {
                format!("{kind} {name}")
            } else {
                format!("{kind} {namespace}/{name}")
            });
        }
        Ok(rendered)
    }
}

/// Which replica leads, as checked from outside: the Lease's holder, and each replica's
/// `/readyz`.
#[derive(Clone, Debug)]
pub struct Leadership {
    /// The pod the Lease names.
    pub leader: String,
    /// Its address.
    pub leader_ip: Ipv4Addr,
    /// The other replica.
    pub standby: String,
    /// Its address.
    pub standby_ip: Ipv4Addr,
    /// What was checked, one line each.
    pub checks: Vec<String>,
}

/// The operator installed by `kubectl apply -k manifests`, its pods (and the media pods of
/// the tenant namespaces) run by a pod runner. Cleaned up when dropped (see the module
/// documentation).
pub struct Installed {
    /// The test's name.
    pub test: String,
    /// A client with the harness's (administrator) credentials.
    pub client: Client,
    /// The test's directory: pods' files and logs.
    pub dir: PathBuf,
    /// The pod runner: the operator's pods, and media pods of the tenant namespaces.
    pub runner: PodRunner,
    /// `kubectl` with the suite's kubeconfig.
    pub kubectl: Kubectl,
    /// What the manifests hold.
    pub rendered: Rendered,
    tenants: Vec<String>,
    cluster: Cluster,
    failed: bool,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

/// The cluster, if there is one and it runs no kubelet; `None` after printing why not. The
/// runner plays the kubelet for the operator's pods, which the Deployment does not pin
/// anywhere: a real kubelet would run them too (and fail to pull the image).
pub(crate) async fn connect_without_kubelets(test: &str) -> Result<Option<Cluster>> {
    let cluster = match cluster::connect().await? {
        Connection::Ready(c) => *c,
        Connection::Skip(why) => {
            cluster::print_skip(test, &why);
            return Ok(None);
        }
    };
    let nodes = Api::<Node>::all(cluster.client.clone())
        .list(&ListParams::default().limit(1))
        .await?;
    if let Some(node) = nodes.items.first() {
        cluster::print_skip_as(
            test,
            "cluster has nodes",
            &format!(
                "{} has Kubernetes nodes ({} among them), whose kubelets would run the \
                 operator's pods too; the install scenarios need a control plane without \
                 kubelets, such as ../shared/k8s/up starts",
                cluster.server,
                node.name_any()
            ),
        );
        return Ok(None);
    }
    Ok(Some(cluster))
}

/// `<workspace>/manifests`, the argument of `kubectl apply -k`.
fn manifests_dir() -> PathBuf {
    crate::workspace().join("manifests")
}

impl Installed {
    /// Installs the operator with `kubectl apply -k manifests` and starts the pod runner for
    /// its pods. `None` (after printing why) when there is no cluster. Waits for any other
    /// install of this test process to be cleaned up first.
    pub async fn install(test: &str) -> Result<Option<Self>> {
        let Some(cluster) = connect_without_kubelets(test).await? else {
            return Ok(None);
        };
        let kubeconfig = std::env::var_os(KUBECONFIG_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| Error::Setup(format!("{KUBECONFIG_ENV} is no longer set")))?;
        // Binaries and tools are looked for before anything is created on the cluster.
        let operator = process::binary("RUCHE_OPERATOR_BIN", "ruche-operator")?;
        let media_node = process::binary("RUCHE_MEDIA_NODE_BIN", "ruche-media-node")?;
        let kubectl = Kubectl::from_env(&kubeconfig);
        let version = kubectl.run(&["version", "--client"]).await?;
        let waited = Instant::now();
        let serial = INSTALLS.lock().await;
        let manifests = manifests_dir();
        let rendered = Rendered::parse(
            &kubectl
                .run(&["kustomize", &manifests.display().to_string()])
                .await?,
        )?;
        let deployment = format!("{SYSTEM_NAMESPACE}/{DEPLOYMENT}");
        if !rendered.deployments.contains(&deployment) {
            return Err(Error::Setup(format!(
                "{} renders no Deployment {deployment}: {:?}",
                manifests.display(),
                rendered.deployments
            )));
        }
        remove_leftovers(&cluster.client, &rendered).await?;
        let dir = std::env::temp_dir().join(harness::namespace_for(test)?);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        eprintln!(
            "e2e [{test}]: files in {} (waited {:?} for other installs); kubectl {} ({})",
            dir.display(),
            waited.elapsed(),
            kubectl.program().display(),
            version.lines().next().unwrap_or_default().trim()
        );
        let runner = PodRunner::with_config(
            cluster.client.clone(),
            RunnerConfig {
                scope: Scope::Namespaces(vec![SYSTEM_NAMESPACE.to_string()]),
                programs: vec![
                    Program::operator(&operator),
                    Program::media_node(&media_node),
                ],
                dir: dir.clone(),
                api_server: ApiServer::of(&cluster.config),
            },
        );
        let mut installed = Self {
            test: test.to_string(),
            client: cluster.client.clone(),
            dir,
            runner,
            kubectl,
            rendered,
            tenants: Vec::new(),
            cluster,
            failed: false,
            started: Instant::now(),
            _serial: serial,
        };
        // From here on, the guard cleans up whatever was created, a failed set-up included.
        match installed.apply().await {
            Ok(()) => Ok(Some(installed)),
            Err(e) => {
                installed.failed = true;
                eprintln!("e2e [{test}]: install failed: {e}");
                Err(e)
            }
        }
    }

    async fn apply(&mut self) -> Result<()> {
        let manifests = manifests_dir().display().to_string();
        eprintln!(
            "e2e [{}]: {} --kubeconfig {} apply -k {manifests}",
            self.test,
            self.kubectl.program().display(),
            self.kubectl.kubeconfig.display()
        );
        let out = self.kubectl.run(&["apply", "-k", &manifests]).await?;
        for line in out.lines() {
            eprintln!("    {line}");
        }
        let mark = json!({ "metadata": { "labels": { INSTALL_LABEL: "ruche-e2e" } } });
        for namespace in &self.rendered.namespaces {
            Api::<Namespace>::all(self.client.clone())
                .patch(namespace, &PatchParams::default(), &Patch::Merge(&mark))
                .await?;
        }
        if !rbac::enforced(&self.client, SYSTEM_NAMESPACE).await? {
            eprintln!(
                "\n**********************************************************************\n\
                 WARNING: this API server does not enforce RBAC: the scenario proves\n\
                 nothing about manifests/rbac. Start it with --authorization-mode=Node,RBAC.\n\
                 **********************************************************************\n"
            );
        }
        Ok(())
    }

    /// The operator's pods that are not being deleted.
    pub async fn operator_pods(&self) -> Result<Vec<Pod>> {
        let pods = Api::<Pod>::namespaced(self.client.clone(), SYSTEM_NAMESPACE)
            .list(&ListParams::default().labels(OPERATOR_SELECTOR))
            .await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect())
    }

    /// Waits until the Deployment has rolled out all its replicas, ready and available, and
    /// runs no other pod. Returns it.
    pub async fn wait_deployment_ready(&self, timeout: Duration) -> Result<Deployment> {
        let started = Instant::now();
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        let deployment = wait::until(
            &format!("Deployment {SYSTEM_NAMESPACE}/{DEPLOYMENT} to have all its replicas ready and available"),
            timeout,
            || async {
                let d = api.get(DEPLOYMENT).await.map_err(|e| e.to_string())?;
                let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let s = d.status.clone().unwrap_or_default();
                let pods = self.operator_pods().await.map_err(|e| e.to_string())?;
                let seen = format!(
                    "replicas {:?}, updated {:?}, ready {:?}, available {:?} (want {want}), \
                     observedGeneration {:?} of {:?}, {} pods",
                    s.replicas,
                    s.updated_replicas,
                    s.ready_replicas,
                    s.available_replicas,
                    s.observed_generation,
                    d.metadata.generation,
                    pods.len()
                );
                let seen = if pods.is_empty() {
                    format!(
                        "{seen} (no pod at all: the install needs a kube-controller-manager, \
                         whose Deployment and ReplicaSet controllers create them)"
                    )
                } else {
                    seen
                };
                let done = s.observed_generation >= d.metadata.generation
                    && s.replicas == Some(want)
                    && s.updated_replicas == Some(want)
                    && s.ready_replicas == Some(want)
                    && s.available_replicas == Some(want)
                    && pods.len() == usize::try_from(want).unwrap_or(0);
                if done { Ok(d) } else { Err(seen) }
            },
        )
        .await?;
        let s = deployment.status.clone().unwrap_or_default();
        eprintln!(
            "e2e [{}]: Deployment {SYSTEM_NAMESPACE}/{DEPLOYMENT}: {} replicas, {} ready, {} available, {} up to date ({:?})",
            self.test,
            s.replicas.unwrap_or(0),
            s.ready_replicas.unwrap_or(0),
            s.available_replicas.unwrap_or(0),
            s.updated_replicas.unwrap_or(0),
            started.elapsed()
        );
        Ok(deployment)
    }

    /// Checks once that exactly one of two ready replicas leads: the Lease names it, its
    /// `/readyz` answers 200; the other's `/readyz` answers 503 and its
    /// `/readyz?standby=true` 200.
    pub async fn leadership(&self) -> Result<Leadership, String> {
        let lease = Api::<Lease>::namespaced(self.client.clone(), SYSTEM_NAMESPACE)
            .get_opt(LEASE)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no Lease {SYSTEM_NAMESPACE}/{LEASE} yet"))?;
        let holder = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("the Lease {SYSTEM_NAMESPACE}/{LEASE} has no holder"))?;
        let pods = self.operator_pods().await.map_err(|e| e.to_string())?;
        let ready: Vec<(String, Ipv4Addr)> = pods
            .iter()
            .filter(|p| is_ready(p))
            .filter_map(|p| Some((p.name_any(), pod_ip(p)?)))
            .collect();
        let [first, second] = ready.as_slice() else {
            return Err(format!(
                "{} ready operator pods with an address of {} (want 2); Lease holder {holder}",
                ready.len(),
                pods.len()
            ));
        };
        let ((leader, leader_ip), (standby, standby_ip)) = if first.0 == holder {
            (first.clone(), second.clone())
        } else if second.0 == holder {
            (second.clone(), first.clone())
        } else {
            return Err(format!(
                "the Lease holder {holder} is neither ready pod ({}, {})",
                first.0, second.0
            ));
        };
        let probe = |ip: Ipv4Addr, path: &'static str| async move {
            let addr = SocketAddr::from((ip, HTTP_PORT));
            match http::get(addr, path, Duration::from_secs(3)).await {
                Ok(r) => Ok((
                    r.status,
                    format!("GET http://{addr}{path} -> {} {}", r.status, r.body.trim()),
                )),
                Err(e) => Err(format!("GET http://{addr}{path}: {e}")),
            }
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mut checks = vec![format!(
            "Lease {SYSTEM_NAMESPACE}/{LEASE}: holder {leader} (one of the 2 ready pods {leader}, {standby}), acquired {}, {} transitions",
            spec.acquire_time
                .map_or_else(|| "(unknown)".to_string(), |t| t.0.to_string()),
            spec.lease_transitions.unwrap_or(0)
        )];
        for (ip, path, want, who) in [
            (leader_ip, "/readyz", 200, "leader"),
            (standby_ip, "/readyz", 503, "standby"),
            (standby_ip, "/readyz?standby=true", 200, "standby"),
        ] {
            let (status, line) = probe(ip, path).await?;
            if status != want {
                return Err(format!("{who}: {line} (want {want})"));
            }
            checks.push(format!("{who}: {line}"));
        }
        Ok(Leadership {
            leader,
            leader_ip,
            standby,
            standby_ip,
            checks,
        })
    }

    /// Waits until [`Installed::leadership`] holds and `accept` approves it; prints what was
    /// checked.
    pub async fn wait_leadership(
        &self,
        timeout: Duration,
        accept: impl Fn(&Leadership) -> Result<(), String>,
    ) -> Result<Leadership> {
        let started = Instant::now();
        let leadership = wait::until("one leading and one standby replica", timeout, || async {
            let l = self.leadership().await?;
            accept(&l)?;
            Ok(l)
        })
        .await?;
        eprintln!(
            "e2e [{}]: one replica leads ({:?}):",
            self.test,
            started.elapsed()
        );
        for check in &leadership.checks {
            eprintln!("    {check}");
        }
        Ok(leadership)
    }

    /// Deletes an operator pod with `kubectl delete pod`, as an administrator would.
    pub async fn delete_pod(&self, pod: &str) -> Result<()> {
        let out = self
            .kubectl
            .run(&["-n", SYSTEM_NAMESPACE, "delete", "pod", pod, "--wait=false"])
            .await?;
        eprintln!("e2e [{}]: kubectl delete pod: {}", self.test, out.trim());
        Ok(())
    }

    /// Creates a tenant namespace (Pod Security `privileged`: media pods use host ports) with
    /// its `default` ServiceAccount, whose media pods the runner runs. Deleted at clean-up.
    pub async fn create_tenant(&mut self) -> Result<String> {
        let namespace = harness::namespace_for(&self.test)?;
        self.tenants.push(namespace.clone());
        harness::create_namespace(&self.client, &namespace).await?;
        self.runner.watch_namespace(&namespace);
        eprintln!("e2e [{}]: tenant namespace {namespace}", self.test);
        Ok(namespace)
    }

    /// Applies a fleet (a full object, apiVersion and kind included) in `namespace`.
    pub async fn apply_fleet(&self, namespace: &str, fleet: &Value) -> Result<MediaFleet> {
        let name = fleet
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Setup("the fleet has no name".into()))?;
        Ok(
            Api::<MediaFleet>::namespaced(self.client.clone(), namespace)
                .patch(name, &PatchParams::apply(MANAGER), &Patch::Apply(fleet))
                .await?,
        )
    }

    /// Waits until the fleet runs `per_zone` Ready nodes in each zone (real media node
    /// processes run by the runner).
    pub async fn wait_fleet_ready(
        &self,
        namespace: &str,
        fleet: &str,
        per_zone: u32,
        timeout: Duration,
    ) -> Result<FleetView> {
        harness::wait_fleet_ready(
            &self.client,
            namespace,
            &self.runner,
            fleet,
            per_zone,
            timeout,
        )
        .await
    }

    /// Creates `room` in `namespace` and waits until it is Scheduled, with node and endpoint.
    pub async fn place_room(
        &self,
        namespace: &str,
        room: &Room,
        timeout: Duration,
    ) -> Result<Room> {
        let started = Instant::now();
        Api::<Room>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), room)
            .await?;
        let name = room.name_any();
        let placed = harness::wait_rooms_placed(
            &self.client,
            namespace,
            std::slice::from_ref(&name),
            &[RoomPhase::Scheduled],
            timeout,
        )
        .await?;
        let placed = placed
            .into_iter()
            .next()
            .ok_or_else(|| Error::Setup(format!("room {name} vanished")))?;
        let status = placed.status.clone().unwrap_or_default();
        eprintln!(
            "e2e [{}]: room {namespace}/{name} Scheduled on node {} (zone {}), endpoint {}, {:?} after its creation",
            self.test,
            status.node.as_deref().unwrap_or_default(),
            status.zone.as_deref().unwrap_or_default(),
            status.endpoint.as_deref().unwrap_or_default(),
            started.elapsed()
        );
        Ok(placed)
    }

    /// Marks the scenario failed (logs are printed and files kept even without a panic).
    pub fn fail(&mut self) {
        self.failed = true;
    }

    fn print_failure(&self) {
        print_failure(&self.test, self.started, &self.dir, &self.runner);
    }
}

/// Prints that `test` failed, with the end of its operator and media node pods' logs.
pub(crate) fn print_failure(test: &str, started: Instant, dir: &Path, runner: &PodRunner) {
    let mut out = format!(
        "\n======== e2e [{test}] FAILED after {:?}; files kept in {}\n",
        started.elapsed(),
        dir.display()
    );
    out.push_str("-------- operator pods (last 300 lines of each log):\n");
    out.push_str(&runner.report_app(OPERATOR_APP, 300));
    out.push_str("-------- media node pods (last 40 lines of each log):\n");
    out.push_str(&runner.report_app(MEDIA_NODE_APP, 40));
    eprintln!("{out}");
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<Ipv4Addr> {
    pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()
}

/// Makes room for an install: a namespace of the manifests that exists must be one the suite
/// installed (a killed run's leftover, deleted here), or one being deleted (awaited). Any other
/// is someone's install: the suite refuses to touch it.
async fn remove_leftovers(client: &Client, rendered: &Rendered) -> Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in &rendered.namespaces {
        let Some(ns) = api.get_opt(name).await? else {
            continue;
        };
        let ours = ns.labels().contains_key(INSTALL_LABEL);
        let terminating = ns.metadata.deletion_timestamp.is_some();
        if !ours && !terminating {
            return Err(Error::Setup(format!(
                "namespace {name} exists and was not installed by the suite (no label \
                 {INSTALL_LABEL}): is the operator installed on this cluster? The install \
                 scenarios need a cluster without it (kubectl delete namespace {name})"
            )));
        }
        eprintln!("e2e: namespace {name} is left from an earlier run: deleting it first");
        uninstall(client, rendered).await?;
    }
    Ok(())
}

/// Deletes what the manifests created but the CRDs: the ClusterRoleBindings, ClusterRoles
/// and namespaces, by name; waits until the namespaces are gone (a new install could not
/// create objects in a terminating one).
async fn uninstall(client: &Client, rendered: &Rendered) -> Result<()> {
    let dp = DeleteParams::default();
    let mut errors = Vec::new();
    let gone = |r: std::result::Result<_, kube::Error>, what: String, errors: &mut Vec<String>| {
        if let Err(e) = r
            && !is_not_found(&e)
        {
            errors.push(format!("{what}: {e}"));
        }
    };
    for name in &rendered.cluster_role_bindings {
        let r = Api::<ClusterRoleBinding>::all(client.clone())
            .delete(name, &dp)
            .await
            .map(|_| ());
        gone(r, format!("ClusterRoleBinding {name}"), &mut errors);
    }
    for name in &rendered.cluster_roles {
        let r = Api::<ClusterRole>::all(client.clone())
            .delete(name, &dp)
            .await
            .map(|_| ());
        gone(r, format!("ClusterRole {name}"), &mut errors);
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in &rendered.namespaces {
        let r = namespaces.delete(name, &dp).await.map(|_| ());
        gone(r, format!("namespace {name}"), &mut errors);
    }
    Error::all_or_none(&errors)?;
    wait_namespaces_gone(client, &rendered.namespaces).await
}

/// Waits until the namespace controller has deleted `names` (a new install could not create
/// objects in a terminating one); says what holds the ones left.
pub(crate) async fn wait_namespaces_gone(client: &Client, names: &[String]) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    wait::until(
        &format!("namespaces {names:?} to be deleted"),
        CLEANUP_TIMEOUT,
        || async {
            let mut left = Vec::new();
            for name in names {
                if let Some(ns) = namespaces.get_opt(name).await.map_err(|e| e.to_string())? {
                    let conditions: Vec<String> = ns
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|c| c.status == "True")
                        .map(|c| format!("{}: {}", c.type_, c.message.unwrap_or_default()))
                        .collect();
                    left.push(format!("{name} ({})", conditions.join("; ")));
                }
            }
            if left.is_empty() {
                Ok(())
            } else {
                Err(left.join(", "))
            }
        },
    )
    .await
}

/// Prints the operator's Deployment, Lease and pods, for a failed scenario.
async fn dump_install(client: &Client) {
    let mut out = format!("-------- the install in {SYSTEM_NAMESPACE}:\n");
    match Api::<Deployment>::namespaced(client.clone(), SYSTEM_NAMESPACE)
        .get_opt(DEPLOYMENT)
        .await
    {
        Ok(Some(d)) => {
            let _ = writeln!(
                out,
                "Deployment {DEPLOYMENT}: {}",
                serde_json::to_string(&d.status).unwrap_or_default()
            );
        }
        other => {
            let _ = writeln!(out, "Deployment {DEPLOYMENT}: {other:?}");
        }
    }
    match Api::<Lease>::namespaced(client.clone(), SYSTEM_NAMESPACE)
        .get_opt(LEASE)
        .await
    {
        Ok(Some(l)) => {
            let _ = writeln!(
                out,
                "Lease {LEASE}: {}",
                serde_json::to_string(&l.spec).unwrap_or_default()
            );
        }
        other => {
            let _ = writeln!(out, "Lease {LEASE}: {other:?}");
        }
    }
    if let Ok(pods) = Api::<Pod>::namespaced(client.clone(), SYSTEM_NAMESPACE)
        .list(&ListParams::default())
        .await
    {
        for p in pods.items {
            let restarts: i32 = p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            let _ = writeln!(
                out,
                "Pod {}: phase {:?} podIP {:?} ready {} restarts {restarts} deleting {}",
                p.name_any(),
                p.status.as_ref().and_then(|s| s.phase.clone()),
                p.status.as_ref().and_then(|s| s.pod_ip.clone()),
                is_ready(&p),
                p.metadata.deletion_timestamp.is_some()
            );
        }
    }
    eprintln!("{out}");
    // Events of the operator's namespace (the ReplicaSet's, among others).
    harness::dump(client, SYSTEM_NAMESPACE).await;
}

impl Drop for Installed {
    fn drop(&mut self) {
        let failed = self.failed || std::thread::panicking();
        self.runner.shutdown();
        if failed {
            self.print_failure();
        }
        let (config, tenants, rendered, test) = (
            self.cluster.config.clone(),
            self.tenants.clone(),
            self.rendered.clone(),
            self.test.clone(),
        );
        let by_hand = format!(
            "delete namespaces {tenants:?} and {:?}, ClusterRoles {:?} and ClusterRoleBindings \
             {:?} by hand",
            rendered.namespaces, rendered.cluster_roles, rendered.cluster_role_bindings
        );
        let done = format!(
            "uninstalled: namespaces {:?} gone, ClusterRoles {:?} and ClusterRoleBindings {:?} \
             deleted (CRDs kept)",
            rendered.namespaces, rendered.cluster_roles, rendered.cluster_role_bindings
        );
        harness::clean_up_on_own_thread(
            &self.test,
            CLEANUP_TIMEOUT + Duration::from_secs(30),
            done,
            by_hand,
            move || async move {
                let client = Client::try_from(config.clone())?;
                if failed {
                    dump_install(&client).await;
                }
                let mut errors = Vec::new();
                for tenant in &tenants {
                    match harness::clean_up(config.clone(), tenant, failed).await {
                        Ok(()) => eprintln!("e2e [{test}]: namespace {tenant} deleted"),
                        Err(e) => errors.push(format!("{tenant}: {e}")),
                    }
                }
                if let Err(e) = uninstall(&client, &rendered).await {
                    errors.push(e.to_string());
                }
                Error::all_or_none(&errors)
            },
        );
        harness::keep_or_remove(&self.test, &self.dir, failed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn kustomize_output_is_read_by_kind() {
        let yaml = "\
apiVersion: v1
kind: Namespace
metadata:
  name: ruche-system
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: rooms.ruche.dev
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: ruche-operator
  namespace: ruche-system
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: ruche-operator
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: ruche-operator-nodes
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ruche-operator
  namespace: ruche-system
";
        let r = Rendered::parse(yaml).unwrap();
        assert_eq!(r.namespaces, ["ruche-system"]);
        assert_eq!(r.crds, ["rooms.ruche.dev"]);
        assert_eq!(r.cluster_roles, ["ruche-operator"]);
        assert_eq!(r.cluster_role_bindings, ["ruche-operator-nodes"]);
        assert_eq!(r.deployments, ["ruche-system/ruche-operator"]);
        assert_eq!(r.objects.len(), 6);
        assert_eq!(r.objects[2], "ServiceAccount ruche-system/ruche-operator");
    }

    #[test]
    fn kubectl_comes_from_the_environment_variable_or_the_path() {
        // The variable is read, never set, by this test: it may be set for the whole run.
        let k = Kubectl::from_env(Path::new("/tmp/kubeconfig"));
        match std::env::var_os(KUBECTL_ENV).filter(|p| !p.is_empty()) {
            None => assert_eq!(k.program(), Path::new("kubectl")),
            Some(p) if Path::new(&p).is_absolute() => assert_eq!(k.program(), Path::new(&p)),
            Some(_) => {}
        }
    }
}
