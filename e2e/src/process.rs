//! Child processes the harness starts (the operator, media nodes): signalled by pid, reaped
//! by a task, killed when the harness lets go of them.

use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// A running (or finished) child process.
pub struct Supervised {
    pid: u32,
    exited: Arc<AtomicBool>,
    status: watch::Receiver<Option<ExitStatus>>,
}

impl Supervised {
    /// Starts `command` with stdout and stderr appended to `log`, and a task that reaps it.
    /// The process is killed if that task is dropped (its runtime shuts down).
    pub fn spawn(mut command: tokio::process::Command, log: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| Error::io(format!("cannot open log {}", log.display()), e))?;
        let err = file
            .try_clone()
            .map_err(|e| Error::io(format!("cannot open log {}", log.display()), e))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(file))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Error::io(format!("cannot start {command:?}"), e))?;
        let pid = child
            .id()
            .ok_or_else(|| Error::Setup(format!("{command:?} exited at once")))?;
        let exited = Arc::new(AtomicBool::new(false));
        let (tx, status) = watch::channel(None);
        let flag = exited.clone();
        tokio::spawn(async move {
            let result = child.wait().await;
            flag.store(true, Ordering::SeqCst);
            // A wait that fails (it does not in practice) is reported as a kill.
            let status = result.unwrap_or_else(|_| ExitStatus::from_raw(9));
            let _ = tx.send(Some(status));
        });
        Ok(Self {
            pid,
            exited,
            status,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `signal` unless the process has already been reaped (its pid may be reused).
    /// Returns whether it was sent.
    pub fn signal(&self, signal: Signal) -> bool {
        if self.exited.load(Ordering::SeqCst) {
            return false;
        }
        let Ok(raw) = i32::try_from(self.pid) else {
            return false;
        };
        kill(Pid::from_raw(raw), signal).is_ok()
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&self) -> bool {
        self.signal(Signal::SIGKILL)
    }

    /// How the process ended, if it has.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.status.borrow()
    }

    /// Waits up to `within` for the process to end.
    pub async fn wait(&self, within: Duration) -> Option<ExitStatus> {
        let mut rx = self.status.clone();
        let ended = tokio::time::timeout(within, rx.wait_for(Option::is_some)).await;
        match ended {
            Ok(Ok(status)) => *status,
            _ => self.exit_status(),
        }
    }

    /// A receiver that changes when the process ends.
    pub fn watch_exit(&self) -> watch::Receiver<Option<ExitStatus>> {
        self.status.clone()
    }

    /// SIGTERM, then SIGKILL if the process is still there after `grace`.
    pub async fn terminate(&self, grace: Duration) -> Option<ExitStatus> {
        self.signal(Signal::SIGTERM);
        if let Some(status) = self.wait(grace).await {
            return Some(status);
        }
        self.kill();
        self.wait(Duration::from_secs(5)).await
    }
}

/// The exit code a kubelet reports for `status`: the code, or 128 + the signal number.
pub fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// The last `lines` lines of a text file (empty if it cannot be read).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(text) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&text);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// A free TCP port on 127.0.0.1 (free when this returns; someone may take it after).
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("cannot find a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("cannot find a free port", e))
}

/// Where a binary of this workspace is: the environment variable `env` if set, else
/// `$CARGO_TARGET_DIR/debug/<name>` or `<workspace>/target/debug/<name>`.
pub fn binary(env: &str, name: &str) -> Result<PathBuf> {
    let path = match std::env::var_os(env) {
        // `cargo test` runs in the package's directory: a relative path is the workspace's.
        Some(p) if !p.is_empty() => crate::workspace().join(p),
        _ => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .filter(|t| !t.is_empty())
                .map_or_else(|| crate::workspace().join("target"), PathBuf::from);
            target.join("debug").join(name)
        }
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(Error::Setup(format!(
            "{name} not found at {} (set {env}, or build it first: \
             cargo test --workspace --all-targets --locked --no-run; `make e2e` does)",
            path.display()
        )))
    }
}
