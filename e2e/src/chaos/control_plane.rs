//! The chaos suite's own control plane, started by `../shared/k8s/up --dir DIR` (through
//! `scripts/audited-k8s.sh`). `up` records each component's PID in DIR; a component is
//! stopped by that PID, and started again by running `up` on DIR, which restarts whatever
//! stopped and keeps the certificates, the ports and etcd's data.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The variable naming the control plane's directory.
pub const DIR_ENV: &str = "RUCHE_CHAOS_K8S_DIR";
/// The variable naming the `up` script (default: `../shared/k8s/up` beside the workspace).
pub const UP_ENV: &str = "RUCHE_CHAOS_K8S_UP";
/// How long `up` may take to bring stopped components back.
pub const START_TIMEOUT: Duration = Duration::from_secs(180);

/// A component of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
}

impl Component {
    /// Its name, as `up` names its PID file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::ApiServer => "kube-apiserver",
            Self::ControllerManager => "kube-controller-manager",
        }
    }
}

/// The control plane in one directory.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    up: PathBuf,
}

impl ControlPlane {
    /// The control plane `RUCHE_CHAOS_K8S_DIR` names, if it is set. It must be the one
    /// `kubeconfig` (the suite's `RUCHE_E2E_KUBECONFIG`) points at: the suite stops only a
    /// control plane it was given for that.
    pub fn from_env(kubeconfig: Option<&Path>) -> Option<Result<Self>> {
        let dir = PathBuf::from(std::env::var_os(DIR_ENV)?);
        Some(Self::at(dir, kubeconfig))
    }

    fn at(dir: PathBuf, kubeconfig: Option<&Path>) -> Result<Self> {
        let own = dir.join("kubeconfig");
        let same = kubeconfig
            .is_some_and(|k| std::fs::canonicalize(k).ok() == std::fs::canonicalize(&own).ok());
        if !same {
            return Err(Error::Setup(format!(
                "{DIR_ENV}={} but RUCHE_E2E_KUBECONFIG is {:?}: the chaos suite stops the control plane it runs on, so both must name the same one ({})",
                dir.display(),
                kubeconfig,
                own.display()
            )));
        }
        let up = std::env::var_os(UP_ENV).map_or_else(
            || crate::workspace().join("../shared/k8s/up"),
            PathBuf::from,
        );
        if !up.exists() {
            return Err(Error::Setup(format!(
                "no control plane script at {} (set {UP_ENV})",
                up.display()
            )));
        }
        Ok(Self { dir, up })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The running PID of `component`, checked to be this directory's.
    pub fn pid(&self, component: Component) -> Result<u32> {
        let file = self.dir.join(format!("{}.pid", component.name()));
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
        let pid: u32 = text.trim().parse().map_err(|_| {
            Error::Setup(format!("{}: not a PID: {:?}", file.display(), text.trim()))
        })?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let marker = format!("{}/", self.dir.display());
        if !String::from_utf8_lossy(&cmdline).contains(&marker) {
            return Err(Error::Setup(format!(
                "{} (pid {pid}) is not running from {}",
                component.name(),
                self.dir.display()
            )));
        }
        Ok(pid)
    }

    /// Stops `component` as a crash would (SIGKILL) and waits until it is gone; returns its
    /// PID.
    pub async fn stop(&self, component: Component) -> Result<u32> {
        let pid = self.pid(component)?;
        let raw =
            i32::try_from(pid).map_err(|_| Error::Setup(format!("pid {pid} out of range")))?;
        kill(Pid::from_raw(raw), Signal::SIGKILL)
            .map_err(|e| Error::Setup(format!("cannot kill {} ({pid}): {e}", component.name())))?;
        let start = Instant::now();
        while Path::new(&format!("/proc/{pid}/cmdline")).exists()
            && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| !c.is_empty())
        {
            if start.elapsed() > Duration::from_secs(10) {
                return Err(Error::Setup(format!(
                    "{} ({pid}) still there 10 s after SIGKILL",
                    component.name()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(pid)
    }

    /// Runs `up` on the directory: it starts whatever stopped and waits until the API server
    /// answers. An audited control plane (`scripts/audited-k8s.sh`) comes back audited.
    pub async fn start(&self) -> Result<Duration> {
        let began = Instant::now();
        let mut command = tokio::process::Command::new(&self.up);
        command.arg("--dir").arg(&self.dir).kill_on_drop(true);
        let audited = self.dir.join("audited-bin");
        if audited.is_dir() {
            command.env("RUCHE_K8S_BIN", &audited);
        }
        let output = tokio::time::timeout(START_TIMEOUT, command.output())
            .await
            .map_err(|_| {
                Error::Setup(format!(
                    "{} --dir {} did not finish within {START_TIMEOUT:?}",
                    self.up.display(),
                    self.dir.display()
                ))
            })?
            .map_err(|e| Error::io(format!("cannot run {}", self.up.display()), e))?;
        if !output.status.success() {
            return Err(Error::Setup(format!(
                "{} --dir {} failed ({}): {}",
                self.up.display(),
                self.dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(began.elapsed())
    }
}
