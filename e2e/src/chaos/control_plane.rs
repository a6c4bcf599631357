//! The chaos suite's own control plane, started by `../shared/k8s/up --dir DIR` (through
//! `scripts/audited-k8s.sh`), which records each component's PID in DIR. A component is
//! stopped by that PID (SIGKILL, as a crash), and started again as a supervisor would: the
//! same binary with the same arguments, environment and working directory, read from `/proc`
//! when the suite began, its output appended to its log and its PID recorded. (Running `up`
//! again also restarts what stopped, but it restarts every component and may pick new ports,
//! which the clients already connected would not follow.)

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::ffi::OsStringExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// The variable naming the control plane's directory.
pub const DIR_ENV: &str = "RUCHE_CHAOS_K8S_DIR";
/// How long a restarted component gets to listen again.
pub const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A component of the control plane.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    ApiServer,
    /// kube-controller-manager.
    ControllerManager,
}

impl Component {
    /// Every component, in the order they start.
    pub const ALL: [Self; 3] = [Self::Etcd, Self::ApiServer, Self::ControllerManager];

    /// Its name, as `up` names its PID and log files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Etcd => "etcd",
            Self::ApiServer => "kube-apiserver",
            Self::ControllerManager => "kube-controller-manager",
        }
    }

    /// The flag whose value says where it listens, if the suite waits for it.
    fn listen_flag(self) -> Option<&'static str> {
        match self {
            Self::Etcd => Some("--listen-client-urls="),
            Self::ApiServer => Some("--secure-port="),
            Self::ControllerManager => None,
        }
    }
}

/// How a component was started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Launch {
    /// The binary and its arguments.
    pub argv: Vec<OsString>,
    /// Its environment.
    pub env: Vec<(OsString, OsString)>,
    /// Its working directory.
    pub cwd: PathBuf,
}

impl Launch {
    /// The loopback address it listens on, from its arguments (`--secure-port=P`, or the
    /// first of `--listen-client-urls=https://127.0.0.1:P,...`).
    pub fn listens_on(&self, component: Component) -> Option<SocketAddr> {
        let flag = component.listen_flag()?;
        let value = self.argv.iter().find_map(|a| {
            let a = a.to_str()?;
            a.strip_prefix(flag).map(str::to_string)
        })?;
        let first = value.split(',').next()?;
        let port = first
            .rsplit(':')
            .next()?
            .trim_end_matches('/')
            .parse()
            .ok()?;
        Some(SocketAddr::from(([127, 0, 0, 1], port)))
    }
}

fn split_nul(bytes: &[u8]) -> Vec<OsString> {
    bytes
        .split(|b| *b == 0)
        .filter(|part| !part.is_empty())
        .map(|part| OsString::from_vec(part.to_vec()))
        .collect()
}

/// The control plane in one directory.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    launches: BTreeMap<Component, Launch>,
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
        let mut plane = Self {
            dir,
            launches: BTreeMap::new(),
        };
        for component in Component::ALL {
            let pid = plane.pid(component)?;
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let read = |what: &str| {
                std::fs::read(proc.join(what))
                    .map_err(|e| Error::io(format!("cannot read /proc/{pid}/{what}"), e))
            };
            let env = split_nul(&read("environ")?)
                .into_iter()
                .filter_map(|kv| {
                    let kv = kv.into_vec();
                    let eq = kv.iter().position(|b| *b == b'=')?;
                    Some((
                        OsString::from_vec(kv[..eq].to_vec()),
                        OsString::from_vec(kv[eq + 1..].to_vec()),
                    ))
                })
                .collect();
            let cwd = std::fs::read_link(proc.join("cwd"))
                .map_err(|e| Error::io(format!("cannot read /proc/{pid}/cwd"), e))?;
            let launch = Launch {
                argv: split_nul(&read("cmdline")?),
                env,
                cwd,
            };
            plane.launches.insert(component, launch);
        }
        Ok(plane)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The recorded PID of `component`, checked to be alive and this directory's.
    pub fn pid(&self, component: Component) -> Result<u32> {
        let file = self.dir.join(format!("{}.pid", component.name()));
        let text = std::fs::read_to_string(&file)
            .map_err(|e| Error::io(format!("cannot read {}", file.display()), e))?;
        let pid: u32 = text.trim().parse().map_err(|_| {
            Error::Setup(format!("{}: not a PID: {:?}", file.display(), text.trim()))
        })?;
        if !self.ours(pid) {
            return Err(Error::Setup(format!(
                "{} (pid {pid}) is not running from {}",
                component.name(),
                self.dir.display()
            )));
        }
        Ok(pid)
    }

    fn ours(&self, pid: u32) -> bool {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let marker = format!("{}/", self.dir.display());
        String::from_utf8_lossy(&cmdline).contains(&marker)
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
        while self.ours(pid) {
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

    /// Starts again every component that is not running, in order, each as it was launched,
    /// and waits until each listens again; returns the components started.
    pub async fn start(&self) -> Result<Vec<Component>> {
        let mut started = Vec::new();
        for component in Component::ALL {
            if self.pid(component).is_ok() {
                continue;
            }
            let launch = self.launches.get(&component).ok_or_else(|| {
                Error::Setup(format!("no recorded launch of {}", component.name()))
            })?;
            self.launch(component, launch)?;
            if let Some(addr) = launch.listens_on(component) {
                let began = Instant::now();
                while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
                    if began.elapsed() > START_TIMEOUT {
                        return Err(Error::Setup(format!(
                            "{} does not listen on {addr} {START_TIMEOUT:?} after its start",
                            component.name()
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            started.push(component);
        }
        Ok(started)
    }

    fn launch(&self, component: Component, launch: &Launch) -> Result<()> {
        let (program, args) = launch
            .argv
            .split_first()
            .ok_or_else(|| Error::Setup(format!("{}: empty command line", component.name())))?;
        let log_path = self.dir.join(format!("{}.log", component.name()));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| Error::io(format!("cannot open {}", log_path.display()), e))?;
        // Its own process group: it outlives the suite's process as `up`'s children do, and
        // `down` stops it by the PID recorded below.
        let child = std::process::Command::new(program)
            .args(args)
            .env_clear()
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&launch.cwd)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| Error::io(format!("cannot start {}", component.name()), e))?;
        let pid_file = self.dir.join(format!("{}.pid", component.name()));
        std::fs::write(&pid_file, format!("{}\n", child.id()))
            .map_err(|e| Error::io(format!("cannot write {}", pid_file.display()), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(args: &[&str]) -> Launch {
        Launch {
            argv: args.iter().map(OsString::from).collect(),
            env: Vec::new(),
            cwd: PathBuf::from("/"),
        }
    }

    #[test]
    fn where_a_component_listens_is_read_from_its_arguments() {
        let etcd = launch(&[
            "etcd",
            "--listen-client-urls=https://127.0.0.1:29100",
            "--listen-peer-urls=https://127.0.0.1:21477",
        ]);
        assert_eq!(
            etcd.listens_on(Component::Etcd),
            Some(SocketAddr::from(([127, 0, 0, 1], 29100)))
        );
        let api = launch(&[
            "kube-apiserver",
            "--bind-address=127.0.0.1",
            "--secure-port=23658",
        ]);
        assert_eq!(
            api.listens_on(Component::ApiServer),
            Some(SocketAddr::from(([127, 0, 0, 1], 23658)))
        );
        assert_eq!(api.listens_on(Component::ControllerManager), None);
        assert_eq!(launch(&["etcd"]).listens_on(Component::Etcd), None);
    }

    #[test]
    fn a_command_line_is_split_on_nul_bytes() {
        assert_eq!(
            split_nul(b"etcd\0--name=x\0"),
            vec![OsString::from("etcd"), OsString::from("--name=x")]
        );
    }
}
