//! Operator replicas as a Deployment with two replicas runs them: each in a slot that a
//! supervisor refills when its process exits (a replica that loses its Lease exits on
//! purpose), after [`RESTART_DELAY`], as a kubelet restarts a container. The leader is the
//! replica whose `/readyz` answers 200.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::error::Result;
use crate::operator::Operator;

/// How long an exited replica waits before it starts again (a kubelet's first back-off is
/// 10 s; a shorter one keeps the suite short without changing what it tests).
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// How often the supervisor looks.
const SUPERVISE_EVERY: Duration = Duration::from_millis(250);

struct Slot {
    name: char,
    operator: Option<Arc<Operator>>,
    starts: u32,
    exited_at: Option<Instant>,
}

struct Inner {
    binary: PathBuf,
    kubeconfig: PathBuf,
    namespace: String,
    dir: PathBuf,
    gid: u32,
    slots: Mutex<Vec<Slot>>,
}

impl Inner {
    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, name: char, start: u32) -> PathBuf {
        self.dir.join(format!("chaos-operator-{name}-{start}.log"))
    }

    /// Starts every empty slot whose delay has passed.
    fn refill(&self) {
        let mut slots = self.slots();
        for slot in slots.iter_mut() {
            if let Some(op) = &slot.operator
                && !op.running()
            {
                slot.operator = None;
                slot.exited_at = Some(Instant::now());
                eprintln!("chaos: operator replica {} exited", slot.name);
            }
            let due = slot.exited_at.is_none_or(|t| t.elapsed() >= RESTART_DELAY);
            if slot.operator.is_none() && due {
                slot.starts += 1;
                let log = self.log(slot.name, slot.starts);
                match Operator::start_in_group(
                    &self.binary,
                    &self.kubeconfig,
                    &self.namespace,
                    &log,
                    Some(self.gid),
                ) {
                    Ok(op) => {
                        slot.operator = Some(Arc::new(op));
                        slot.exited_at = None;
                    }
                    Err(e) => {
                        eprintln!("chaos: replica {} did not start: {e}", slot.name);
                        slot.exited_at = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// The replicas and their supervisor.
pub struct Replicas {
    inner: Arc<Inner>,
    supervisor: JoinHandle<()>,
}

impl Replicas {
    /// Starts `count` replicas of `binary run` for `namespace`, in group `gid`, logging in
    /// `dir`, and the supervisor that restarts them.
    pub fn start(
        (binary, kubeconfig): (PathBuf, PathBuf),
        namespace: &str,
        dir: &Path,
        gid: u32,
        count: usize,
    ) -> Result<Self> {
        let slots = ('a'..='z')
            .take(count)
            .map(|name| Slot {
                name,
                operator: None,
                starts: 0,
                exited_at: None,
            })
            .collect();
        let inner = Arc::new(Inner {
            binary,
            kubeconfig,
            namespace: namespace.to_string(),
            dir: dir.to_path_buf(),
            gid,
            slots: Mutex::new(slots),
        });
        inner.refill();
        let supervised = inner.clone();
        let supervisor = tokio::spawn(async move {
            loop {
                tokio::time::sleep(SUPERVISE_EVERY).await;
                supervised.refill();
            }
        });
        Ok(Self { inner, supervisor })
    }

    fn running(&self) -> Vec<(char, Arc<Operator>)> {
        self.inner
            .slots()
            .iter()
            .filter_map(|s| s.operator.clone().map(|o| (s.name, o)))
            .collect()
    }

    /// The replica that leads (answers `/readyz` with 200), if one does.
    pub async fn leader(&self) -> Option<char> {
        for (name, op) in self.running() {
            if op.running()
                && let Ok(r) = op.get("/readyz").await
                && r.status == 200
            {
                return Some(name);
            }
        }
        None
    }

    /// SIGKILLs replica `name` (the supervisor starts it again); returns whether it ran.
    pub fn kill(&self, name: char) -> bool {
        let found = self.running().into_iter().find(|(n, _)| *n == name);
        found.is_some_and(|(_, op)| {
            op.kill_now();
            eprintln!(
                "chaos: SIGKILL sent to operator replica {name} (pid {})",
                op.pid()
            );
            true
        })
    }

    /// SIGKILLs every replica at once.
    pub fn kill_all(&self) -> usize {
        let running = self.running();
        for (_, op) in &running {
            op.kill_now();
        }
        eprintln!("chaos: SIGKILL sent to {} operator replicas", running.len());
        running.len()
    }

    /// Stops supervising and stops every replica (SIGTERM: each releases its Lease), waiting
    /// for each to exit.
    pub async fn stop(&self) {
        self.supervisor.abort();
        for (_, op) in self.running() {
            op.stop(Duration::from_secs(10)).await;
        }
    }

    /// Processes started so far, first starts included.
    pub fn starts(&self) -> u32 {
        self.inner.slots().iter().map(|s| s.starts).sum()
    }

    /// Every log written so far.
    pub fn logs(&self) -> Vec<PathBuf> {
        self.inner
            .slots()
            .iter()
            .flat_map(|s| (1..=s.starts).map(|n| self.inner.log(s.name, n)))
            .collect()
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.supervisor.abort();
        for slot in self.inner.slots().iter() {
            if let Some(op) = &slot.operator {
                op.kill_now();
            }
        }
    }
}
