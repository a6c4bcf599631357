//! The operator process: `ruche-operator run`, scoped to the test namespace, with the
//! ServiceAccount's kubeconfig, its output in a log file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::http;
use crate::process::{Supervised, free_port, tail};

/// How long the operator gets to answer `/readyz` with 200 (it must win the Lease first: after
/// a killed predecessor, that takes the Lease's duration).
pub const READY_TIMEOUT: Duration = Duration::from_secs(180);
/// The `--node-failure-timeout` the suite runs the operator with.
pub const NODE_FAILURE_TIMEOUT: &str = "5s";

/// Environment variables the operator reads that are not passed on to it.
const INHERITED_SETTINGS: [&str; 6] = [
    "POD_NAME",
    "POD_NAMESPACE",
    "RUCHE_NAMESPACE",
    "RUCHE_LEASE_NAMESPACE",
    "RUCHE_HTTP_BIND",
    "KUBE_RS_DEBUG_OVERRIDE_URL",
];

/// A running operator.
pub struct Operator {
    process: Supervised,
    /// Its HTTP address (probes and metrics).
    pub http: SocketAddr,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    /// The command line it was started with.
    pub command: String,
}

impl Operator {
    /// Starts `binary run` for `namespace` with `kubeconfig`, logging to `log`.
    pub fn start(binary: &Path, kubeconfig: &Path, namespace: &str, log: &Path) -> Result<Self> {
        Self::start_in_group(binary, kubeconfig, namespace, log, None)
    }

    /// [`Operator::start`], the process running with group id `gid` when given: a firewall
    /// rule matching that group (`-m owner --gid-owner`) then cuts this operator alone off.
    pub fn start_in_group(
        binary: &Path,
        kubeconfig: &Path,
        namespace: &str,
        log: &Path,
        gid: Option<u32>,
    ) -> Result<Self> {
        let port = free_port()?;
        let http: SocketAddr = SocketAddr::from(([127, 0, 0, 1], port));
        let args = [
            "run".to_string(),
            "--namespace".into(),
            namespace.into(),
            "--lease-namespace".into(),
            namespace.into(),
            "--http-bind".into(),
            http.to_string(),
            "--node-failure-timeout".into(),
            NODE_FAILURE_TIMEOUT.into(),
        ];
        let mut command = tokio::process::Command::new(binary);
        command
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info");
        // Settings the harness's own environment may carry (in a CI pod, say) must not reach
        // the operator: its flags say everything, and each start is a new replica.
        for inherited in INHERITED_SETTINGS {
            command.env_remove(inherited);
        }
        if let Some(gid) = gid {
            command.gid(gid);
        }
        let printed = format!(
            "KUBECONFIG={} RUST_LOG=info {} {}",
            kubeconfig.display(),
            binary.display(),
            args.join(" ")
        );
        let process = Supervised::spawn(command, log)?;
        eprintln!(
            "e2e: operator started, pid {}\n    command: {printed}\n    log: {}",
            process.pid(),
            log.display()
        );
        Ok(Self {
            process,
            http,
            log: log.to_path_buf(),
            command: printed,
        })
    }

    /// Waits until `GET /readyz` answers 200 (it leads and its caches are synced). Fails at
    /// once if the process exits.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        while start.elapsed() < timeout {
            if let Some(status) = self.process.exit_status() {
                return Err(Error::Setup(format!(
                    "the operator exited ({status}) before it was ready; last lines of {}:\n{}",
                    self.log.display(),
                    tail(&self.log, 60)
                )));
            }
            match http::get(self.http, "/readyz", Duration::from_secs(3)).await {
                Ok(r) if r.status == 200 => {
                    eprintln!("e2e: operator ready after {:?}", start.elapsed());
                    return Ok(start.elapsed());
                }
                Ok(r) => last = format!("HTTP {}: {}", r.status, r.body.trim()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(Error::Timeout {
            what: format!("the operator's /readyz on {}", self.http),
            after: start.elapsed(),
            last: format!(
                "{last}; last lines of {}:\n{}",
                self.log.display(),
                tail(&self.log, 60)
            ),
        })
    }

    /// `GET path` on the operator's HTTP address.
    pub async fn get(&self, path: &str) -> Result<http::Response> {
        http::get(self.http, path, Duration::from_secs(5)).await
    }

    /// Kills the operator with SIGKILL (no graceful Lease release) and waits for it to go.
    pub async fn kill(&self) {
        self.process.kill();
        let status = self.process.wait(Duration::from_secs(10)).await;
        eprintln!(
            "e2e: operator pid {} killed ({})",
            self.process.pid(),
            status.map_or_else(|| "still there?".to_string(), |s| s.to_string())
        );
    }

    /// Stops the operator as Kubernetes does (SIGTERM: it releases its Lease), SIGKILL after
    /// `grace`.
    pub async fn stop(&self, grace: Duration) {
        self.process.terminate(grace).await;
    }

    /// Kills the operator without waiting (for clean-up paths).
    pub fn kill_now(&self) {
        self.process.kill();
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Whether the process is still running.
    pub fn running(&self) -> bool {
        self.process.exit_status().is_none()
    }
}
