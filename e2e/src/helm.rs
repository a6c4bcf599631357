//! Ministries installing Ruche with Helm, as the chart's README says: each release in its own
//! namespace, serving its own namespaces, the operator's pods (and the media pods of the
//! served namespaces) run by the pod runner.
//!
//! [`Ministries`] is the fixture of `tests/helm.rs`. The CRDs are cluster-scoped and shared
//! with the other test binaries: the first release adopts them (the ownership labels and
//! annotations Helm looks for, as an administrator moving from `kubectl apply` to Helm would
//! set), with `crds.keep` so that uninstalling it leaves them. Installs are serialised with
//! `tests/install.rs`'s (one lock per test process; test binaries run one after the other).
//! Dropping the fixture uninstalls what is left, kills the processes, prints the operators'
//! logs if the scenario failed and deletes the namespaces.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::MutexGuard;

use crate::cluster::{Cluster, KUBECONFIG_ENV};
use crate::error::{Error, Result, is_not_found};
use crate::install::{INSTALL_LABEL, Kubectl};
use crate::runner::{ApiServer, PodRunner, Program, RunnerConfig, Scope};
use crate::{harness, process};

/// The CRDs the chart carries.
pub const CRDS: [&str; 3] = [
    "mediafleets.ruche.dev",
    "medianodes.ruche.dev",
    "rooms.ruche.dev",
];
/// The environment variable naming Helm 4 (default: `.tools/bin/helm` of the workspace).
pub const HELM_ENV: &str = "RUCHE_HELM";
/// The environment variable naming Helm 3 (default: `.tools/bin/helm3` of the workspace).
pub const HELM3_ENV: &str = "RUCHE_HELM3";

/// A `helm` binary, always with the suite's kubeconfig.
#[derive(Clone, Debug)]
pub struct Helm {
    program: PathBuf,
    kubeconfig: PathBuf,
}

impl Helm {
    /// The helm `env` names (a relative path is the workspace's), else `default` in the
    /// workspace.
    pub fn from_env(env: &str, default: &str, kubeconfig: &Path) -> Self {
        let program = std::env::var_os(env)
            .filter(|p| !p.is_empty())
            .map_or_else(|| PathBuf::from(default), PathBuf::from);
        let program = if program.is_relative() {
            crate::workspace().join(program)
        } else {
            program
        };
        Self {
            program,
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// Runs `helm --kubeconfig <kubeconfig> <args>` in the workspace; returns its standard
    /// output, or an error with its standard error.
    pub async fn run(&self, args: &[&str]) -> Result<String> {
        let output = tokio::process::Command::new(&self.program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .current_dir(crate::workspace())
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| Error::io(format!("cannot run {}", self.program.display()), e))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            Ok(stdout)
        } else {
            Err(Error::Setup(format!(
                "{} {} failed ({}): {}",
                self.program.display(),
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// `helm version --short`.
    pub async fn version(&self) -> Result<String> {
        Ok(self.run(&["version", "--short"]).await?.trim().to_string())
    }
}

/// A release the scenario installed: uninstalled at clean-up if it still exists.
#[derive(Clone, Debug)]
struct Release {
    helm: Helm,
    name: String,
    namespace: String,
}

/// Several ministries' Helm releases on one cluster, their pods run by one pod runner.
pub struct Ministries {
    /// The test's name.
    pub test: String,
    /// A client with the harness's (administrator) credentials.
    pub client: Client,
    /// The test's directory: pods' files and logs.
    pub dir: PathBuf,
    /// The pod runner.
    pub runner: PodRunner,
    /// `kubectl` with the suite's kubeconfig.
    pub kubectl: Kubectl,
    /// Helm 4.
    pub helm: Helm,
    /// Helm 3.
    pub helm3: Helm,
    /// The suite's kubeconfig.
    pub kubeconfig: PathBuf,
    prefix: String,
    namespaces: Vec<String>,
    releases: Vec<Release>,
    cluster: Cluster,
    failed: bool,
    started: Instant,
    _serial: MutexGuard<'static, ()>,
}

impl Ministries {
    /// Connects, checks the tools, and starts the pod runner. `None` (after printing why)
    /// when there is no cluster, or one with kubelets.
    pub async fn start(test: &str) -> Result<Option<Self>> {
        let Some(cluster) = crate::install::connect_without_kubelets(test).await? else {
            return Ok(None);
        };
        let kubeconfig = std::env::var_os(KUBECONFIG_ENV)
            .map(PathBuf::from)
            .ok_or_else(|| Error::Setup(format!("{KUBECONFIG_ENV} is no longer set")))?;
        let operator = process::binary("RUCHE_OPERATOR_BIN", "ruche-operator")?;
        let media_node = process::binary("RUCHE_MEDIA_NODE_BIN", "ruche-media-node")?;
        let kubectl = Kubectl::from_env(&kubeconfig);
        let helm = Helm::from_env(HELM_ENV, ".tools/bin/helm", &kubeconfig);
        let helm3 = Helm::from_env(HELM3_ENV, ".tools/bin/helm3", &kubeconfig);
        let versions = format!(
            "helm {}, helm3 {}",
            helm.version().await?,
            helm3.version().await?
        );
        let serial = crate::install::serialise().await;
        let prefix = harness::namespace_for(test)?;
        let dir = std::env::temp_dir().join(&prefix);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        eprintln!("e2e [{test}]: files in {}; {versions}", dir.display());
        let runner = PodRunner::with_config(
            cluster.client.clone(),
            RunnerConfig {
                scope: Scope::Namespaces(Vec::new()),
                programs: vec![
                    Program::operator(&operator),
                    Program::media_node(&media_node),
                ],
                dir: dir.clone(),
                api_server: ApiServer::of(&cluster.config),
            },
        );
        Ok(Some(Self {
            test: test.to_string(),
            client: cluster.client.clone(),
            dir,
            runner,
            kubectl,
            helm,
            helm3,
            kubeconfig,
            prefix,
            namespaces: Vec::new(),
            releases: Vec::new(),
            cluster,
            failed: false,
            started: Instant::now(),
            _serial: serial,
        }))
    }

    /// Creates the namespace `<test prefix>-<suffix>` with Pod Security `level` enforced, its
    /// pods run by the runner; deleted at clean-up. Returns its name.
    pub async fn namespace(&mut self, suffix: &str, level: &str) -> Result<String> {
        let name = format!("{}-{suffix}", self.prefix);
        harness::create_namespace_at(&self.client, &name, level, &[(INSTALL_LABEL, "ruche-e2e")])
            .await?;
        self.namespaces.push(name.clone());
        self.runner.watch_namespace(&name);
        eprintln!(
            "e2e [{}]: namespace {name} (Pod Security {level} enforced)",
            self.test
        );
        Ok(name)
    }

    /// Marks the CRDs as the release's (Helm's ownership label and annotations), so that the
    /// release adopts them rather than refusing to overwrite them.
    pub async fn adopt_crds(&self, release: &str, namespace: &str) -> Result<()> {
        let mark = json!({ "metadata": {
            "labels": { "app.kubernetes.io/managed-by": "Helm" },
            "annotations": {
                "meta.helm.sh/release-name": release,
                "meta.helm.sh/release-namespace": namespace,
            },
        }});
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for crd in CRDS {
            api.patch(crd, &PatchParams::default(), &Patch::Merge(&mark))
                .await?;
        }
        Ok(())
    }

    /// `helm install <release> charts/ruche -n <namespace> -f <values>` with `helm`; the
    /// values are written to the test's directory. Returns helm's output (NOTES included).
    pub async fn install(
        &mut self,
        helm: &Helm,
        release: &str,
        namespace: &str,
        values: &serde_json::Value,
    ) -> Result<String> {
        let file = self.values_file(release, namespace, values)?;
        self.releases.push(Release {
            helm: helm.clone(),
            name: release.to_string(),
            namespace: namespace.to_string(),
        });
        self.helm_release(helm, "install", release, namespace, &file)
            .await
    }

    /// `helm upgrade <release> charts/ruche -n <namespace> -f <values>`.
    pub async fn upgrade(
        &self,
        helm: &Helm,
        release: &str,
        namespace: &str,
        values: &serde_json::Value,
    ) -> Result<String> {
        let file = self.values_file(release, namespace, values)?;
        self.helm_release(helm, "upgrade", release, namespace, &file)
            .await
    }

    /// `helm uninstall <release> -n <namespace> --wait`.
    pub async fn uninstall(
        &mut self,
        helm: &Helm,
        release: &str,
        namespace: &str,
    ) -> Result<String> {
        let out = helm
            .run(&[
                "uninstall",
                release,
                "-n",
                namespace,
                "--wait",
                "--timeout",
                "2m",
            ])
            .await?;
        self.releases
            .retain(|r| !(r.name == release && r.namespace == namespace));
        eprintln!(
            "e2e [{}]: helm uninstall {release} -n {namespace}: {}",
            self.test,
            out.trim()
        );
        Ok(out)
    }

    fn values_file(
        &self,
        release: &str,
        namespace: &str,
        values: &serde_json::Value,
    ) -> Result<PathBuf> {
        let file = self.dir.join(format!("{namespace}-{release}-values.json"));
        let text = serde_json::to_string_pretty(values)
            .map_err(|e| Error::Setup(format!("values of {release}: {e}")))?;
        std::fs::write(&file, text)
            .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
        Ok(file)
    }

    async fn helm_release(
        &self,
        helm: &Helm,
        verb: &str,
        release: &str,
        namespace: &str,
        values: &Path,
    ) -> Result<String> {
        let started = Instant::now();
        let values = values.display().to_string();
        let out = helm
            .run(&[
                verb,
                release,
                "charts/ruche",
                "-n",
                namespace,
                "-f",
                &values,
            ])
            .await?;
        eprintln!(
            "e2e [{}]: {} {verb} {release} charts/ruche -n {namespace} -f {values} ({:?}):",
            self.test,
            helm.program.display(),
            started.elapsed()
        );
        for line in out.lines() {
            eprintln!("    {line}");
        }
        Ok(out)
    }

    /// Marks the scenario failed (logs are printed and files kept even without a panic).
    pub fn fail(&mut self) {
        self.failed = true;
    }
}

/// Deletes a release's cluster-scoped RBAC by name (the chart names it after the release and
/// its namespace), for a release `helm uninstall` could not remove.
async fn delete_cluster_rbac(client: &Client, release: &str, namespace: &str) -> Vec<String> {
    let base = if release.contains("ruche") {
        release.to_string()
    } else {
        format!("{release}-ruche")
    };
    let base = if base.ends_with(namespace) {
        base
    } else {
        format!("{base}-{namespace}")
    };
    let dp = DeleteParams::default();
    let mut errors = Vec::new();
    for name in [base.clone(), format!("{base}-nodes")] {
        for r in [
            Api::<ClusterRoleBinding>::all(client.clone())
                .delete(&name, &dp)
                .await
                .map(|_| ()),
            Api::<ClusterRole>::all(client.clone())
                .delete(&name, &dp)
                .await
                .map(|_| ()),
        ] {
            if let Err(e) = r
                && !is_not_found(&e)
            {
                errors.push(format!("{name}: {e}"));
            }
        }
    }
    errors
}

impl Drop for Ministries {
    fn drop(&mut self) {
        let failed = self.failed || std::thread::panicking();
        if failed {
            crate::install::print_failure(&self.test, self.started, &self.dir, &self.runner);
        }
        let (config, namespaces, releases) = (
            self.cluster.config.clone(),
            self.namespaces.clone(),
            self.releases.clone(),
        );
        let test = self.test.clone();
        harness::clean_up_on_own_thread(
            &self.test,
            Duration::from_secs(240),
            format!("namespaces {namespaces:?} deleted"),
            format!("delete namespaces {namespaces:?} by hand"),
            move || async move {
                let client = Client::try_from(config.clone())?;
                let mut errors = Vec::new();
                for r in &releases {
                    if let Err(e) = r
                        .helm
                        .run(&["uninstall", &r.name, "-n", &r.namespace, "--timeout", "1m"])
                        .await
                    {
                        eprintln!("e2e [{test}]: {e}");
                    }
                    errors.extend(delete_cluster_rbac(&client, &r.name, &r.namespace).await);
                }
                for ns in &namespaces {
                    if let Err(e) = harness::clean_up(config.clone(), ns, failed).await {
                        errors.push(format!("{ns}: {e}"));
                    }
                }
                crate::install::wait_namespaces_gone(&client, &namespaces).await?;
                Error::all_or_none(&errors)
            },
        );
        harness::keep_or_remove(&self.test, &self.dir, failed);
    }
}
